#!/usr/bin/env bash
# 23-metrics.t - `empact metrics compute` derives the site's metric values from
# its confidential HEA tables, for quarters and a year: each metric checked
# against a hand count of the data below; members engaged (a count of people,
# threshold 5 in the hub's catalogue) is published suppressed below 5,
# rounded to a multiple of 5 otherwise, and per quarter only (the year is
# suppressed, so no total can be subtracted from); after a sync the hub holds
# exactly the published values; a modified client's small counts are refused.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto
DB=$(site_db toronto)
must() { run "$EMPACT" "$@"; [ "$RUN_RC" = 0 ] || { fail "empact $*"; _diag_run_output; }; }

# ---- a year of HEA work (2026) ------------------------------------------------------------------
must partner add "$DB" --organisation "Org H" --level hospital               # 1
must partner add "$DB" --organisation "Org P" --level provincial-regional    # 2
must partner add "$DB" --organisation "Org N" --level national               # 3
must partner add "$DB" --organisation "Org H" --level hospital               # 4: a second person at Org H
for i in $(seq 1 24); do must member add "$DB" --name "Member $i"; done
# steps: HEA ID then "DATE" (done) or "DATE:why" (skipped), in order
steps() {
    local id=$1 d; shift
    for d in "$@"; do
        case $d in
        *:*) must hea advance "$DB" "$id" --skip --because "${d#*:}" --on "${d%%:*}" ;;
        *) must hea advance "$DB" "$id" --on "$d" ;;
        esac
    done
}
members() { local id=$1 m; shift; for m in "$@"; do must hea member "$DB" "$id" "$m"; done; }
# HEA 1 (Q1): 7 members engaged in February, reported in March, feedback in May.
must hea add "$DB" --title "HEA one" --opened 2026-01-05
members 1 1 2 3 4 5 6 7
must hea partner "$DB" 1 1
steps 1 2026-01-10 2026-01-20 2026-02-15 2026-03-20 2026-05-01
must hea decision "$DB" 1 --partner 2 --what "decision 1" --on 2026-02-01
must hea decision "$DB" 1 --partner 1 --what "decision 2" --on 2026-04-10
# HEA 2 (Q2): 6 members, reported in June, no feedback yet.
must hea add "$DB" --title "HEA two" --opened 2026-04-01
members 2 8 9 10 11 12 13
must hea partner "$DB" 2 2
steps 2 2026-04-05 2026-04-10 2026-05-20 2026-06-25
# HEA 3 (Q3): preparation skipped, 3 members engaged in August, report pending.
must hea add "$DB" --title "HEA three" --opened 2026-07-01
members 3 14 15 16
must hea partner "$DB" 3 3
must hea partner "$DB" 3 4
steps 3 2026-07-02 "2026-07-02:members asked to start at once" 2026-08-01
for m in 14 15 16; do must hea pay "$DB" 3 --member "$m" --amount 50 --on 2026-08-01; done
must hea decision "$DB" 3 --partner 3 --what "decision 3" --on 2026-09-01
# HEA 4 (Q4): 8 members, reported and fed back in December.
must hea add "$DB" --title "HEA four" --opened 2026-10-01
members 4 17 18 19 20 21 22 23 24
steps 4 2026-10-02 2026-10-03 2026-11-01 2026-12-15 2026-12-20

# ---- compute, quarter by quarter and the year ----------------------------------------------------------
for p in 2026-Q1 2026-Q2 2026-Q3 2026-Q4 2026; do must metrics compute "$DB" --period "$p"; done
like "$RUN_OUT" "members_engaged +24 +suppressed +\(people" "compute prints the exact count beside what is published (a year of people: suppressed)"
mv() {   # PERIOD METRIC -> value|suppressed as the site stores it
    sq "$DB" "SELECT ifnull(value, 'NULL') || '|' || suppressed FROM metric_value
              WHERE site_id = 'toronto' AND period = '$1' AND metric = '$2'"
}
is "$(mv 2026-Q3 heas_completed)" "0.0|0" "Q3 heas_completed: no report in Q3"
is "$(mv 2026-Q1 heas_completed)" "1.0|0" "Q1 heas_completed: HEA 1's report"
is "$(mv 2026-Q3 heas_in_progress)" "1.0|0" "Q3 heas_in_progress: HEA 3 (past intake, not reported)"
is "$(mv 2026-Q2 decisions_hospital)|$(mv 2026-Q1 decisions_provincial)|$(mv 2026-Q3 decisions_national)" \
    "1.0|0|1.0|0|1.0|0" "decisions informed by level, in the quarter they were taken"
is "$(mv 2026-Q3 impact_partnerships)" "3.0|0" "Q3 impact partnerships: the organisations of HEAs 2 and 3 (Org P, Org N, Org H)"
is "$(mv 2026-Q3 impact_partners)" "3.0|0" "Q3 impact partners: partners 2, 3, 4 (HEA 1 closed in May)"
is "$(mv 2026-Q3 compensation_paid)" "150.0|0" "Q3 compensation paid: 3 x \$50"
is "$(mv 2026-Q3 feedback_share)" "0.5|0" "Q3 feedback share: 1 of the 2 reported HEAs"
is "$(mv 2026-Q1 members_engaged)|$(mv 2026-Q2 members_engaged)|$(mv 2026-Q4 members_engaged)" \
    "5.0|0|5.0|0|10.0|0" "members engaged 7, 6 and 8 in a quarter are published rounded to 5: 5, 5, 10"
is "$(mv 2026 members_engaged)|$(mv 2026 heas_completed)" "NULL|1|3.0|0" \
    "a year's count of people (24) is published suppressed; a year's HEAs are not"
is "$(mv 2026-Q3 members_engaged)" "NULL|1" "members engaged 3 (below the threshold 5) is published suppressed"

must metrics list "$DB" --period 2026-Q3 --json
is "$(printf '%s' "$RUN_OUT" | json_eval 'map { "$_->{metric}=" . ($_->{suppressed} ? "s" : $_->{value}) } grep { $_->{metric} =~ /^(members_engaged|feedback_share)$/ } @$j')" \
    "feedback_share=0.5 members_engaged=s" "metrics list --json shows what is published"
run "$EMPACT" metrics compute "$DB" --period 2026-Q5
is "$RUN_RC" 65 "a period that does not exist is refused"
like "$RUN_ERR" "'2026-Q5' is not a period" "... naming it"
run "$EMPACT" metrics compute "$DB"
is "$RUN_RC" 64 "compute without --period is a usage error"

# ---- the hub receives the published values only --------------------------------------------------
site_sync toronto "toronto publishes its metrics"
hv() { hub_sql "SELECT ifnull(value, 'NULL') || '|' || suppressed FROM metric_value WHERE site_id = 'toronto' AND period = '$1' AND metric = '$2'"; }
is "$(hv 2026-Q3 members_engaged)|$(hv 2026 members_engaged)|$(hv 2026-Q4 members_engaged)" "NULL|1|NULL|1|10.0|0" \
    "the hub holds the suppressed quarter, the suppressed year and the rounded quarters"
is "$(hub_sql "SELECT count(*) FROM metric_value WHERE site_id = 'toronto'")" 50 "the hub holds 10 metrics x 5 periods"
must metrics compute "$DB" --period 2026-Q3
must sync "$DB"
like "$RUN_OUT" "nothing to send" "computing a period again with unchanged data changes nothing"

# ---- differencing: can the suppressed quarter be recovered from what the hub holds? ----------------
# Members are distinct across quarters here, so year = Q1 + Q2 + Q3 + Q4 exactly: with the exact
# figures (7, 6, ?, 8 and 24) subtraction gives Q3 = 3.  Rounding alone would not always prevent
# it (a year of 32 published as 30 with quarters 13, 13, 5 published as 15, 15, 5 pins the last
# one to 1), so a count of people is never published as a total of others: the year is suppressed.
pub=$(hub_sql "SELECT period || '=' || ifnull(value, 's') FROM metric_value WHERE site_id = 'toronto'
               AND metric = 'members_engaged' ORDER BY period" | paste -sd' ')
is "$pub" "2026=s 2026-Q1=5.0 2026-Q2=5.0 2026-Q3=s 2026-Q4=10.0" "published members engaged: $pub"
totals=$(hub_sql "SELECT count(*) FROM metric_value WHERE site_id = 'toronto' AND metric = 'members_engaged'
                  AND length(period) = 4 AND suppressed = 0")
is "$totals" 0 "no yearly total of people is published, so there is nothing to subtract the quarters from"
is "$((24 - 7 - 6 - 8))" 3 "(while the exact figures would have given it away: 24 - 7 - 6 - 8 = 3)"
me_values() { hub_git log -p --all 2>/dev/null | grep -A3 'metric: "members_engaged' | grep -E "^\+value: ($1)(\.0)?$" | wc -l; }
is "$(me_values '1|2|3|4|6|7|8|24')" 0 "no exact members-engaged count (7, 6, 3, 8, 24) appears anywhere in the hub's git history"
is "$(me_values '10')" 1 "(the same search finds the published 10 of 2026-Q4)"
# ---- a modified client cannot publish a small count: the hub refuses it -----------------------------
sq "$DB" "INSERT INTO metric_value VALUES ('toronto', 'members_engaged', '2027-Q1', 3, 0, NULL),
                                           ('toronto', 'members_engaged', '2027-Q2', 7, 0, NULL),
                                           ('toronto', 'members_engaged', '2027-Q3', 10, 0, NULL)"
ok $? "the sqlite3 shell writes members engaged 3, 7 and 10 unprotected (bypassing empact metrics)"
must sync "$DB"
like "$RUN_OUT" "lost in conflicts" "the sync reports lost input"
is "$(hub_sql "SELECT period || '=' || value FROM metric_value WHERE site_id = 'toronto' AND period LIKE '2027-%' ORDER BY period")" \
    "2027-Q3=10.0" "the hub keeps 10 (a multiple of 5 at or above the threshold) and refuses 3 and 7"
is "$(hub_sql "SELECT count(*) FROM _empact_conflict WHERE loser_site = 'toronto' AND kind = 'rejected' AND kept_value LIKE '%count of people%'")" \
    2 "both refusals are in the conflict log with the reason"
in_git() { hub_git log -p --all | grep -A1 "^+period: \"$1\"" | grep -c '^+value: '; }
is "$(in_git 2027-Q1)|$(in_git 2027-Q2)|$(in_git 2027-Q3)" "0|0|1" "neither small count is in git (the accepted 10 is)"
must conflicts "$DB"
like "$RUN_OUT" "count of people must be published" "empact conflicts tells the coordinator why"
stop_hub
done_testing
