#!/usr/bin/env bash
# 25-report.t - `empact-hub report`: two sites publish metric values (one of
# them suppressed) and resources; a third site never syncs.  The report in
# text, CSV and JSON holds the values, totals that add only what was
# published (a suppressed cell is counted, never filled in), each site's last
# sync with the silent site marked stale, and the library's growth by site.
# The HTML report is one self-contained file: headless Chromium loads it with
# no console message (a control page proves such a message would be seen),
# renders a screenshot, and every number in its DOM matches the CSV.
. "$(dirname "$0")/lib.sh"

command -v chromium >/dev/null || skip_all "chromium is not installed (make deps installs it)"
setup_hub_and_sites toronto ottawa
"$EMPACT_HUB" add-site "$HUB_DIR" kingston --address "127.0.0.1:$HUB_PORT" -o "$E2E_TMP/kingston.join" >/dev/null 2>&1
ok $? "a third site, kingston, is enrolled (and never syncs)"
publish() { # SITE PERIOD "metric value ..." ; a value of s is published suppressed
    local site=$1 period=$2 sql="" m v
    set -- $3
    while [ $# -ge 2 ]; do
        m=$1 v=$2; shift 2
        if [ "$v" = s ]; then
            sql="$sql INSERT INTO metric_value VALUES ('$site', '$m', '$period', NULL, 1, NULL);"
        else
            sql="$sql INSERT INTO metric_value VALUES ('$site', '$m', '$period', $v, 0, NULL);"
        fi
    done
    sq "$(site_db "$site")" "$sql"
}
publish toronto 2026-Q2 "heas_completed 4 members_engaged 35 compensation_paid 1250.5 feedback_share 0.75 decisions_hospital 2"
publish toronto 2026-Q3 "heas_completed 6 members_engaged 20 compensation_paid 900 feedback_share 0.5 decisions_national 1"
publish ottawa 2026-Q3 "heas_completed 1 members_engaged s compensation_paid 150 decisions_hospital 1"
publish ottawa 2025-Q4 "heas_completed 9"
for i in 1 2 3; do run "$EMPACT" resource add "$(site_db toronto)" --title "Toronto resource $i"; done
run "$EMPACT" resource add "$(site_db ottawa)" --title "Ottawa resource"
site_sync toronto "toronto publishes"
site_sync ottawa "ottawa publishes"
R() { run "$EMPACT_HUB" report "$HUB_DIR" "$@"; }

# ---- text ------------------------------------------------------------------------------------
R --from 2026-Q1 --to 2026-Q4
is "$RUN_RC" 0 "report (text)"
site_line() { printf '%s\n' "$RUN_OUT" | grep -E "^  $1 .* last sync "; }
like "$(site_line kingston)" "last sync never  STALE$" "a site that never synced is marked stale"
like "$(site_line toronto)" "last sync 20[0-9-]+T[0-9:]+Z \(0 days ago\)$" "a site that just synced is not"
like "$RUN_OUT" "Members engaged +- +suppressed +20 +20 \(\+1 suppressed\)" \
    "2026-Q3 members engaged: ottawa's suppressed cell is counted, not filled in"
unlike "$RUN_OUT" "2025-Q4" "--from leaves out earlier periods"
like "$RUN_OUT" "Resource library" "the library section is there"

# ---- CSV and JSON -------------------------------------------------------------------------------
R --from 2026-Q1 --to 2026 --format csv -o "$E2E_TMP/r.csv"
is "$RUN_RC" 0 "report --format csv -o FILE"
csv=$(tr -d '\r' <"$E2E_TMP/r.csv")
is "$(printf '%s\n' "$csv" | head -n 1)" "kind,site,period,metric,value,note" "the CSV header"
like "$csv" $'\nvalue,ottawa,2026-Q3,members_engaged,,suppressed\n' "a suppressed value has no number"
like "$csv" $'\ntotal,,2026-Q3,members_engaged,20,1 suppressed\n' "the total adds only what was published, and says 1 was suppressed"
like "$csv" $'\ntotal,,2026-Q3,heas_completed,7,\n' "heas completed in 2026-Q3: 6 + 1"
like "$csv" $'\ntotal,,2026-Q2,compensation_paid,1250.5,\n' "compensation keeps its cents"
unlike "$csv" 'total,,[^,]*,feedback_share' "ratios are not added across sites"
like "$csv" $'\nlast_sync,kingston,,last_sync,,stale' "kingston's last sync: never, stale"
like "$csv" $'\nlibrary,toronto,20[0-9][0-9]-Q[1-4],resources_added,3,' "toronto added 3 resources"
like "$csv" $'\nlibrary,ottawa,20[0-9][0-9]-Q[1-4],resources_added,1,' "ottawa added 1"
R --format json
is "$(printf '%s' "$RUN_OUT" | json_eval '(map { $_ } @{$j->{periods}}), scalar(grep { $_->{stale} } @{$j->{sites}})')" \
    "2025-Q4 2026-Q2 2026-Q3 1" "report --format json: every period by default, one stale site"
is "$(printf '%s' "$RUN_OUT" | json_eval 'map { "$_->{value}/$_->{suppressed}" } grep { $_->{period} eq "2026-Q3" && $_->{metric} eq "members_engaged" } @{$j->{totals}}')" \
    "20/1" "... with the same totals"

# ---- HTML in a real browser -------------------------------------------------------------------------
R --from 2026-Q1 --to 2026-Q4 --format html -o "$E2E_TMP/r.html"
is "$RUN_RC" 0 "report --format html -o FILE"
is "$(grep -Eci '<script|src=|href=|@import|url\(' "$E2E_TMP/r.html")" 0 \
    "the page is self-contained: no script, no src, href, @import or url()"
like "$(grep -c '<svg' "$E2E_TMP/r.html")" '^[4-9]$' "it draws its charts as inline SVG"
browser() { # FILE ARGS...: headless Chromium on FILE, its log in $E2E_TMP/chromium.log
    local f=$1; shift
    E2E_TIMEOUT=60 run chromium --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$E2E_TMP/chromium-profile" --enable-logging=stderr --v=0 \
        --window-size=1200,3000 "$@" "file://$f"
    printf '%s\n' "$RUN_ERR" >"$E2E_TMP/chromium.log"
}
printf '<!DOCTYPE html><html><body><script>console.error("CONTROL-MESSAGE")</script></body></html>' >"$E2E_TMP/control.html"
browser "$E2E_TMP/control.html" --dump-dom
like "$(grep -c 'CONSOLE.*CONTROL-MESSAGE' "$E2E_TMP/chromium.log")" '^[1-9]' \
    "control: a page's console message shows in Chromium's log"
browser "$E2E_TMP/r.html" --screenshot="$E2E_TMP/r.png"
is "$RUN_RC" 0 "Chromium renders the report"
is "$(grep -c 'CONSOLE' "$E2E_TMP/chromium.log")" 0 "... with no console message" || diag "$(grep CONSOLE "$E2E_TMP/chromium.log")"
is "$(head -c 8 "$E2E_TMP/r.png" | od -An -tx1 | tr -d ' \n')" 89504e470d0a1a0a "... into a PNG screenshot"
like "$(stat -c %s "$E2E_TMP/r.png")" '^[0-9]{5,}$' "... of some size ($(stat -c %s "$E2E_TMP/r.png") bytes)"
browser "$E2E_TMP/r.html" --dump-dom
dom=$(printf '%s' "$RUN_OUT" | grep -o 'data-kind="[a-z_]*"\( data-site="[^"]*"\)\? data-period="[^"]*" data-metric="[^"]*" data-value="[^"]*"' |
    sed -E 's/data-kind="([^"]*)"( data-site="([^"]*)")? data-period="([^"]*)" data-metric="([^"]*)" data-value="([^"]*)"/\1,\3,\4,\5,\6/' | sort)
want=$(printf '%s\n' "$csv" | awk -F, '$1 == "value" || $1 == "total" || $1 == "library" { print $1 "," $2 "," $3 "," $4 "," $5 }' |
    grep -v ',2025-Q4,' | sort)
is "$(printf '%s\n' "$dom" | wc -l)" "$(printf '%s\n' "$want" | wc -l)" "the page's DOM holds as many numbers as the CSV ($(printf '%s\n' "$want" | wc -l))"
is "$dom" "$want" "... and they are the same numbers"

# ---- bad input ------------------------------------------------------------------------------------------
R --from 2026-Q5
is "$RUN_RC" 65 "a period that does not exist is refused"
like "$RUN_ERR" "--from '2026-Q5' is not a period" "... by name"
R --format pdf
is "$RUN_RC" 64 "an unknown format is a usage error"
run "$EMPACT_HUB" report "$E2E_TMP/nowhere"
is "$RUN_RC" 74 "a missing hub directory is an i/o error"
run "$EMPACT_HUB" report --help
like "$RUN_RC:$RUN_OUT" "^0:usage: empact-hub report HUBDIR" "report --help"
stop_hub
done_testing
