#!/usr/bin/env bash
# 26-impact.t - the whole impact chain with generated data: two sites (an
# established one and a new one, tests/sample/sample-site.sh) compute their
# metrics for eight quarters and sync; the hub report's totals equal the sums
# of each site's local facts, counted again here, independently, with the
# sqlite3 shell (and, for members engaged, the publication rule applied by
# hand).  Then a canary goes into every text column of every local table with
# all this data in place, both sites sync, and the canary is nowhere at the
# hub: not in hub.db, not in any git object, not in the log, not on the wire.
SAMPLE=$(cd "$(dirname "$0")/../sample" && pwd)/sample-site.sh
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
O=$(site_db ottawa)
ok_cmd "toronto's sample data (22 HEAs, 140 resources)" bash "$SAMPLE" "$EMPACT" "$T" toronto 7
ok_cmd "ottawa's sample data (5 HEAs, 60 resources)" bash "$SAMPLE" "$EMPACT" "$O" new 8
QUARTERS="2025-Q1 2025-Q2 2025-Q3 2025-Q4 2026-Q1 2026-Q2 2026-Q3 2026-Q4"
for s in "$T" "$O"; do
    for p in $QUARTERS; do "$EMPACT" metrics compute "$s" --period "$p" >/dev/null || fail "metrics compute $s $p"; done
done
site_sync toronto "toronto publishes"
site_sync ottawa "ottawa publishes"
site_sync toronto "toronto pulls ottawa's"
run "$EMPACT_HUB" report "$HUB_DIR" --from 2025-Q1 --to 2026-Q4 --format csv -o "$E2E_TMP/report.csv"
is "$RUN_RC" 0 "the hub's report as CSV"
total() { tr -d '\r' <"$E2E_TMP/report.csv" | awk -F, -v p="$1" -v m="$2" '$1 == "total" && $3 == p && $4 == m { print $5 }'; }

# ---- each site's facts, counted again with the sqlite3 shell -------------------------------------
# quarter bounds of P as two SQL date literals
bounds() { local y=${1%-Q*} q=${1#*-Q}; printf "'%s-%02d-01' AND date('%s-%02d-01', '+3 months', '-1 day')" "$y" $((3 * q - 2)) "$y" $((3 * q - 2)); }
fact() { # SITE.db SQL: the SQL with @Q@ replaced by the quarter's bounds
    local sql=${2//@Q@/$(bounds "$P")}
    sq "$1" "$sql"
}
both() { echo $(($(fact "$T" "$1") + $(fact "$O" "$1"))); }
for P in $QUARTERS; do
    want=$(both "SELECT count(*) FROM hea_step WHERE step = 'report' AND skipped_because IS NULL AND done_on BETWEEN @Q@")
    is "$(total "$P" heas_completed)" "$want" "$P: HEAs completed at the hub = the sites' validated reports ($want)"
    for lv in hospital:decisions_hospital provincial-regional:decisions_provincial national:decisions_national; do
        want=$(both "SELECT count(*) FROM hea_decision d, impact_partner p WHERE p.id = d.partner_id AND p.level = '${lv%%:*}' AND d.decided_on BETWEEN @Q@")
        is "$(total "$P" "${lv#*:}")" "$want" "$P: ${lv#*:} = the sites' decisions at level ${lv%%:*} ($want)"
    done
    want=$(sq "$T" "SELECT total(amount_cents) FROM compensation WHERE paid_on BETWEEN $(bounds "$P")" | cut -d. -f1)
    want=$((want + $(sq "$O" "SELECT total(amount_cents) FROM compensation WHERE paid_on BETWEEN $(bounds "$P")" | cut -d. -f1)))
    got=$(total "$P" compensation_paid)
    is "$(awk -v g="$got" 'BEGIN { printf "%d", g * 100 + 0.5 }')" "$want" "$P: compensation paid = the sites' payments ($want cents)"
    # members engaged: distinct members of engagements done in the quarter, then the
    # publication rule by hand (0; 1-4 suppressed; else the nearest multiple of 5)
    sum=0 nsup=0
    for s in "$T" "$O"; do
        n=$(fact "$s" "SELECT count(DISTINCT hm.member_id) FROM hea_member hm JOIN hea_step st ON st.hea_id = hm.hea_id AND st.step = 'engagement' AND st.skipped_because IS NULL WHERE st.done_on BETWEEN @Q@")
        if [ "$n" -ge 1 ] && [ "$n" -le 4 ]; then nsup=$((nsup + 1)); else sum=$((sum + (n + 2) / 5 * 5)); fi
    done
    note=$(tr -d '\r' <"$E2E_TMP/report.csv" | awk -F, -v p="$P" '$1 == "total" && $3 == p && $4 == "members_engaged" { print $6 }')
    is "$(total "$P" members_engaged)|$note" "$sum|$([ "$nsup" -gt 0 ] && echo "$nsup suppressed")" \
        "$P: members engaged = the sites' rounded counts ($sum, $nsup suppressed)"
done

# ---- the canary, with all of it in place --------------------------------------------------------------
CANARY="CANARY-$RANDOM$RANDOM-impact"
for s in "$T" "$O"; do
    sql=""
    for t in $LOCAL_TABLES; do
        cols=$(sq "$s" "SELECT name FROM pragma_table_info('$t') WHERE upper(type) LIKE '%TEXT%'
                        AND name NOT IN ('level', 'step', 'done_on', 'opened_on', 'decided_on', 'paid_on')")
        for c in $cols; do sql="$sql UPDATE $t SET $c = '$CANARY-$t-$c-' || rowid;"; done
    done
    ok_cmd "the canary goes into every free-text column of every local table at $(basename "$s")" sq "$s" "$sql"
done
is "$(sq "$T" "SELECT count(*) FROM member WHERE name LIKE '$CANARY%'")" 70 "toronto's 70 members carry it"
export EMPACT_FRAME_LOG="$E2E_TMP/frames.log"
for p in 2026-Q3 2026-Q4; do "$EMPACT" metrics compute "$T" --period "$p" >/dev/null; done
run "$EMPACT" resource add "$T" --title "PUBLIC-CONTROL-$RANDOM"
CONTROL=$(sq "$T" "SELECT title FROM resource WHERE title LIKE 'PUBLIC-CONTROL-%'")
site_sync toronto "toronto syncs with the canary in place"
site_sync ottawa "ottawa syncs with the canary in place"
unset EMPACT_FRAME_LOG
is "$(grep -rl --binary-files=text -F "$CANARY" "$HUB_DIR" | wc -l)" 0 "the canary is in no file under the hub's directory (hub.db, WAL, log, git)"
is "$(hub_git cat-file --batch-all-objects --batch 2>/dev/null | grep -a -c -F "$CANARY")" 0 "... in no git object"
is "$(hub_git cat-file --batch-all-objects --batch 2>/dev/null | grep -a -c -F "$CONTROL")" 1 "(the public control is in one)"
if [ -s "$E2E_TMP/frames.log" ]; then
    is "$(grep -a -c -F "$CANARY" "$E2E_TMP/frames.log")" 0 "... and not on the wire (the site's frame log)"
    like "$(grep -a -c -F "$CONTROL" "$E2E_TMP/frames.log")" '^[1-9]' "(where the public control is)"
else
    skip "the frame log needs a build with test hooks"
    skip "the frame log needs a build with test hooks"
fi
stop_hub
done_testing
