#!/usr/bin/env bash
# 22-hea.t - a coordinator's confidential HEA work, offline in the replica:
# partners, members, an HEA taken through the five steps (a step skipped only
# with a reason), decisions, payments; list and show in text and JSON; bad
# input refused with a clear message and nothing written; and none of it
# reaches the hub when the site syncs.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto
DB=$(site_db toronto)
E() { run "$EMPACT" "$@"; }
count() { sq "$DB" "SELECT count(*) FROM $1"; }

# ---- partners and members ------------------------------------------------------------------
E partner add "$DB" --organisation "Toronto General Hospital" --level hospital --contact "pat@example.org"
is "$RUN_RC:$RUN_OUT" "0:partner 1: Toronto General Hospital (hospital)" "partner add prints the new partner"
E partner add "$DB" --organisation "Ontario Health" --level provincial-regional
E partner add "$DB" --organisation "Health Canada" --level national
is "$(count impact_partner)" 3 "three partners recorded"
E partner add "$DB" --organisation "Somewhere" --level city
is "$RUN_RC" 65 "a level that is not hospital, provincial-regional or national is refused (exit 65)"
like "$RUN_ERR" "level 'city' is not one of hospital, provincial-regional, national" "... naming the bad level"
E partner add "$DB" --level hospital
is "$RUN_RC" 64 "partner add without --organisation is a usage error"
like "$RUN_ERR" "needs --organisation and --level" "... saying what is missing"
is "$(count impact_partner)" 3 "... and nothing was written"
for n in A B C D E F; do E member add "$DB" --name "Member $n"; done
is "$(count member)" 6 "six members recorded"

# ---- an HEA through its steps ----------------------------------------------------------------
E hea add "$DB" --title "Emergency department wait times" --opened 2026-04-02
is "$RUN_RC:$RUN_OUT" "0:hea 1 opened on 2026-04-02: Emergency department wait times (step: intake)" "hea add opens at intake"
E hea partner "$DB" 1 1
like "$RUN_OUT" "partner 1 linked" "hea partner links a partner"
E hea partner "$DB" 1 1
like "$RUN_OUT" "partner 1 was already linked" "... once"
E hea advance "$DB" 1 --on 2026-04-10
is "$RUN_OUT" "hea 1: intake done on 2026-04-10; now at preparation" "advance finishes intake"
E hea advance "$DB" 1 --on 2026-04-01
is "$RUN_RC" 65 "a date before the HEA's last date is refused"
like "$RUN_ERR" "2026-04-01 is before this HEA's last date, 2026-04-10" "... naming both dates"
E hea advance "$DB" 1 --skip
is "$RUN_RC" 64 "skipping a step without --because is refused"
like "$RUN_ERR" "a step is skipped only with --because WHY" "... saying a reason is needed"
E hea advance "$DB" 1 --on 2026-02-30
is "$RUN_RC" 65 "a date that does not exist is refused"
like "$RUN_ERR" "'2026-02-30' is not a date" "... naming it"
E hea advance "$DB" 1 --skip --because "partner asked to meet members directly" --on 2026-04-20
is "$RUN_OUT" "hea 1: skipped 1 step from preparation on 2026-04-20 (partner asked to meet members directly); now at engagement" \
    "advance --skip --because passes over preparation"
for m in 1 2 3; do E hea member "$DB" 1 $m; done
E hea pay "$DB" 1 --member 4 --amount 150.5 --on 2026-05-01
is "$RUN_OUT" "hea 1: paid member 4 \$150.50 on 2026-05-01" "hea pay records a payment (and links the member)"
E hea pay "$DB" 1 --member 1 --amount 100 --on 2026-05-01
for bad in 0 -5 1.234 abc 12,50 2000000; do
    E hea pay "$DB" 1 --member 1 --amount "$bad"
    is "$RUN_RC" 65 "amount '$bad' is refused"
done
like "$RUN_ERR" "is not an amount of dollars above 0" "... with a clear message"
E hea pay "$DB" 1 --member 99 --amount 10
is "$RUN_RC:$RUN_ERR" "65:empact: there is no member 99 in this replica" "paying an unknown member is refused"
E hea advance "$DB" 1 --on 2026-05-01
E hea decision "$DB" 1 --partner 1 --what "Triage protocol translated into five languages" --on 2026-06-15
is "$RUN_OUT" "hea 1: decision 1 by partner 1 on 2026-06-15" "hea decision records a decision"
E hea decision "$DB" 1 --partner 2 --what "Regional interpreter funding" --on 2026-06-20
like "$RUN_OUT" "decision 2 by partner 2" "a decision by a second partner (linked on the way)"
E hea advance "$DB" 1 --to closed --because "partner feedback folded into the report meeting" --on 2026-07-01
is "$RUN_OUT" "hea 1: skipped 2 steps from report on 2026-07-01 (partner feedback folded into the report meeting); now at closed" \
    "advance --to closed skips the remaining steps with the reason"
E hea advance "$DB" 1
is "$RUN_RC" 65 "a closed HEA does not advance"
like "$RUN_ERR" "HEA 1 is closed" "... and says so"
E hea advance "$DB" 7
is "$RUN_RC:$RUN_ERR" "65:empact: there is no HEA 7 in this replica" "an unknown HEA is refused"

E hea add "$DB" --title "Mental health navigation" --opened 2026-05-05
E hea advance "$DB" 2 --on 2026-05-06
E hea advance "$DB" 2 --to report --because "scope agreed at intake"
is "$RUN_RC" 0 "advance --to report"

# ---- list and show -----------------------------------------------------------------------------
E hea list "$DB"
like "$RUN_OUT" "^id  title +step +opened +partners  members  decisions" "hea list has a header"
like "$RUN_OUT" "1   Emergency department wait times  closed +2026-04-02  2 +4 +2" "... and HEA 1's row"
E hea list "$DB" --json
is "$(printf '%s' "$RUN_OUT" | json_eval 'scalar(@$j), $j->[1]{step}, $j->[0]{members}')" \
    "2 report 4" "hea list --json is a JSON array with the same rows"
E hea list "$DB" --step report
like "$RUN_OUT" "Mental health navigation" "hea list --step report lists HEA 2"
unlike "$RUN_OUT" "Emergency" "... and not HEA 1"
E hea list "$DB" --step nowhere
is "$RUN_RC" 65 "an unknown step is refused"
E hea show "$DB" 1
like "$RUN_OUT" "preparation +skipped +2026-04-20 +partner asked to meet members directly" "hea show lists a skipped step with its reason"
like "$RUN_OUT" "engagement +done +2026-05-01" "... a done step with its date"
like "$RUN_OUT" "Triage protocol translated into five languages" "... the decisions"
E hea show "$DB" 1 --json
is "$(printf '%s' "$RUN_OUT" | json_eval '$j->{hea}{step}, (map { $_->{status} } @{$j->{steps}}), scalar(@{$j->{partners}}), scalar(@{$j->{members}}), map { $_->{amount} } @{$j->{payments}}')" \
    "closed done skipped done skipped skipped 2 4 150.50 100.00" \
    "hea show --json holds the HEA, its steps, partners, members and payments"
E partner list "$DB" --json
is "$(printf '%s' "$RUN_OUT" | json_eval 'map { $_->{heas} } @$j')" \
    "1 1 0" "partner list --json counts each partner's HEAs"
E member list "$DB"
like "$RUN_OUT" "Member D" "member list"

# ---- help and usage ---------------------------------------------------------------------------------
for c in "partner add" "partner list" "member add" "member list" "hea add" "hea advance" "hea partner" \
    "hea member" "hea decision" "hea pay" "hea list" "hea show"; do
    # shellcheck disable=SC2086
    E $c --help
    like "$RUN_RC:$RUN_OUT" "^0:usage: empact $c" "empact $c --help"
done
E hea frobnicate "$DB"
is "$RUN_RC" 64 "an unknown hea command is a usage error"
E hea add "$DB" --title x --bogus
like "$RUN_RC:$RUN_ERR" "^64:empact: unknown option --bogus" "an unknown option is named"
E hea add "$E2E_TMP/nowhere.db" --title x
is "$RUN_RC" 74 "a missing replica is an i/o error"
is "$(sq "$DB" 'PRAGMA foreign_key_check; PRAGMA integrity_check')" ok "the replica's keys and pages are sound"

# ---- none of it leaves the site ------------------------------------------------------------------
site_sync toronto "toronto syncs"
is "$(site_sql toronto "SELECT count(*) FROM _empact_outbox")" 0 "nothing is waiting to be sent"
for word in "Emergency department" "Toronto General" "pat@example.org" "Member A" "Triage protocol" "partner asked"; do
    is "$(grep -rl --binary-files=text "$word" "$HUB_DIR" | wc -l)" 0 "'$word' is nowhere under the hub's directory"
done
stop_hub
done_testing
