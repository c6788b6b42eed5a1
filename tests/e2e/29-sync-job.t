#!/usr/bin/env bash
# 29-sync-job.t - `empact sync` as an unattended job (issue #7): the lock that
# keeps two syncs (or a join and a sync) of one replica apart, --retry with
# --backoff against a hub that is down and then comes back on the same port,
# no retry on a refusal, one log line per attempt (JSON), every documented
# exit code of `empact sync`, the new `empact status` fields, and the shipped
# systemd units and cron line.  Needs a test build (HOOKS=1) for
# EMPACT_RETRY_BASE_MS / EMPACT_RETRY_CAP_MS, which shorten the waits.
. "$(dirname "$0")/lib.sh"

require_test_hooks
command -v flock >/dev/null 2>&1 || skip_all "flock(1) (util-linux) is needed to hold a lock from the shell"
export EMPACT_RETRY_BASE_MS=200 EMPACT_RETRY_CAP_MS=2000

setup_hub_and_sites toronto ottawa
T=$(site_db toronto) O=$(site_db ottawa)
PORT=$HUB_PORT
U=$RANDOM$$

# jl FILE N EXPR: perl EXPR on the N-th JSON line of FILE ($j), via json_eval.
jl() { sed -n "$2p" "$1" | json_eval "$3"; }

# ---- 0: a plain sync, and a sync with --log-format json ------------------------------
expect_rc 0 "sync: 0" "$EMPACT" sync "$T"
expect_rc 0 "sync --log-format json: 0" "$EMPACT" sync "$T" --log-format json
printf '%s\n' "$RUN_ERR" >"$E2E_TMP/ok.log"
is "$(wc -l <"$E2E_TMP/ok.log")" 1 "... one log line on stderr"
is "$(jl "$E2E_TMP/ok.log" 1 '@$j{qw(site attempt attempts outcome exit_code message next_retry_s)}')" \
    "toronto 1 1 ok 0 null null" "... JSON: site, attempt 1/1, outcome ok, exit_code 0, no message, no retry"
is "$(jl "$E2E_TMP/ok.log" 1 '($j->{bytes_sent} > 1000 && $j->{bytes_received} > 1000 && $j->{bytes_sent} < 100000) ? "yes" : "$j->{bytes_sent}\/$j->{bytes_received}"')" yes \
    "... bytes_sent and bytes_received: the TLS handshake's certificates each way, over 1 KB, under 100 KB"
like "$(jl "$E2E_TMP/ok.log" 1 '$j->{time}')" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z$' "... time is ISO 8601 UTC"
is "$(jl "$E2E_TMP/ok.log" 1 '$j->{version}')" "$(hub_max_seq)" "... version = hub max(seq)"
like "$RUN_OUT" 'now at version' "... and the usual summary on stdout"

# ---- 64: usage --------------------------------------------------------------------------
expect_rc 64 "sync --retry abc: 64" "$EMPACT" sync "$T" --retry abc
expect_rc 64 "sync --retry 101 (above the maximum): 64" "$EMPACT" sync "$T" --retry 101
expect_rc 64 "sync --log-format xml: 64" "$EMPACT" sync "$T" --log-format xml
like "$RUN_ERR" 'text or json' "... says which formats exist"
expect_rc 64 "sync with two replicas: 64" "$EMPACT" sync "$T" "$O"
run "$EMPACT" sync --help
like "$RUN_OUT" '73 another' "sync --help documents exit code 73"
like "$RUN_OUT" '--retry N' "... and --retry"

# ---- 65: not a replica (also in 01-cli.t) -------------------------------------------------
sq "$E2E_TMP/plain.db" "CREATE TABLE t(x)"
expect_rc 65 "sync of an SQLite file that is not a replica: 65" "$EMPACT" sync "$E2E_TMP/plain.db" --retry 3 --log-format json
is "$(printf '%s\n' "$RUN_ERR" | wc -l)" 1 "... one attempt only: bad data is not retried"
is "$(printf '%s\n' "$RUN_ERR" | json_eval '"$j->{outcome} $j->{exit_code}"')" "failed 65" "... logged as failed, exit_code 65"
expect_fail "sync of a missing file fails" "$EMPACT" sync "$E2E_TMP/nothing.db"
[ ! -e "$E2E_TMP/nothing.db.lock" ]; ok $? "... and leaves no lock file behind"

# ---- 74: the lock file cannot be opened (a directory in its place) -------------------------
cp "$T" "$E2E_TMP/copy.db"
mkdir "$E2E_TMP/copy.db.lock"
expect_rc 74 "sync when SITE.db.lock cannot be opened: 74 (local i/o)" "$EMPACT" sync "$E2E_TMP/copy.db"
like "$RUN_ERR" 'copy\.db\.lock' "... and names the lock file"
rmdir "$E2E_TMP/copy.db.lock"

# ---- 73: the lock is held -----------------------------------------------------------------
# a subshell that locks fd 9 and becomes `sleep`: killing $holder releases it
( exec 9>>"$T.lock" && flock 9 && touch "$E2E_TMP/held" && exec sleep 30 ) &
holder=$!
track_pid "$holder"
for _ in $(seq 1 250); do [ -e "$E2E_TMP/held" ] && break; sleep 0.02; done
t0=$(date +%s%N)
expect_rc 73 "sync while another process holds toronto.db.lock: 73" "$EMPACT" sync "$T" --log-format json
t1=$(date +%s%N)
ok $(( (t1 - t0) / 1000000 > 2000 )) "... at once ($(( (t1 - t0) / 1000000 )) ms), without waiting"
is "$(printf '%s\n' "$RUN_ERR" | json_eval '"$j->{outcome} $j->{exit_code}"')" "locked 73" "... logged: outcome locked, exit_code 73"
expect_rc 73 "a plain sync too: 73" "$EMPACT" sync "$T"
like "$RUN_ERR" 'another sync or join' "... and says another sync or join is running"
expect_rc 73 "join of a path whose lock is held: 73 (join and sync do not race)" \
    "$EMPACT" join "$T" "$(site_join_file toronto)"
[ -s "$T" ]; ok $? "... and the replica is untouched"
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; untrack_pid "$holder"
expect_rc 0 "once the holder is gone, sync: 0" "$EMPACT" sync "$T"

# ---- a killed sync leaves no stale lock ---------------------------------------------------
stop_hub
"$EMPACT" sync "$T" --retry 50 >/dev/null 2>"$E2E_TMP/killed.log" </dev/null &
victim=$!
track_pid "$victim"
for _ in $(seq 1 250); do [ -s "$E2E_TMP/killed.log" ] && break; sleep 0.02; done
expect_rc 73 "while a retrying sync waits for the hub, a second sync: 73" "$EMPACT" sync "$T"
like "$RUN_ERR" "process $victim " "... and names the process that holds the lock"
kill -KILL "$victim"; wait "$victim" 2>/dev/null; untrack_pid "$victim"
expect_rc 75 "after SIGKILL of that sync, the next one is not locked out (75: hub still down)" "$EMPACT" sync "$T"

# ---- 75: the hub is down; --retry without --backoff waits the base delay -----------------
expect_rc 75 "sync --retry 2 --log-format json with the hub down: 75" \
    "$EMPACT" sync "$T" --retry 2 --log-format json
printf '%s\n' "$RUN_ERR" >"$E2E_TMP/down.log"
is "$(wc -l <"$E2E_TMP/down.log")" 3 "... three attempts, one line each"
is "$(for n in 1 2 3; do jl "$E2E_TMP/down.log" $n '@$j{qw(attempt attempts outcome exit_code next_retry_s)}'; echo; done)" \
    $'1 3 retry 75 0.2\n2 3 retry 75 0.2\n3 3 failed 75 null' "... retry, retry, failed; a fixed 0.2 s wait (the test base delay)"
like "$(jl "$E2E_TMP/down.log" 3 '$j->{message}')" "127\\.0\\.0\\.1:$PORT" "... the message names the hub"
is "$(status_json toronto last_error)" "$(jl "$E2E_TMP/down.log" 3 '$j->{message}')" "status: last_error is the last attempt's message"

# ---- --retry --backoff: the hub comes back on the same port during the retries ------------
R1=$(new_uuid)
sq "$T" "INSERT INTO resource(id, title) VALUES ('$R1', 'sent after the outage $U')"
"$EMPACT" sync "$T" --retry 8 --backoff --log-format json >"$E2E_TMP/retry.out" 2>"$E2E_TMP/retry.log" </dev/null &
job=$!
track_pid "$job"
for _ in $(seq 1 500); do [ "$(wc -l <"$E2E_TMP/retry.log")" -ge 2 ] && break; sleep 0.02; done
diag "attempts before the hub is back: $(wc -l <"$E2E_TMP/retry.log")"
start_hub "$HUB_DIR" "$PORT" || give_up "hub restart on port $PORT"
wait_bounded "$job" 40; untrack_pid "$job"
check_sanitizer_file "$E2E_TMP/retry.log" "sync --retry 8 --backoff"
is "$WAIT_RC" 0 "sync --retry 8 --backoff succeeds once the hub is back: 0"
n=$(wc -l <"$E2E_TMP/retry.log")
ok $(( n < 2 )) "... after $n attempts (at least one retry), one JSON line each"
is "$(jl "$E2E_TMP/retry.log" "$n" '"$j->{attempt} $j->{outcome} $j->{exit_code}"')" "$n ok 0" "... the last attempt: ok, exit 0"
bad=""
for ((i = 1; i < n; i++)); do
    line=$(jl "$E2E_TMP/retry.log" $i '"$j->{attempt} $j->{attempts} $j->{outcome} $j->{exit_code} $j->{site}"')
    [ "$line" = "$i 9 retry 75 toronto" ] || bad="$bad [$i: $line]"
    cap=$(perl -e 'my $c = 0.2 * 2 ** ($ARGV[0] - 1); print $c > 2 ? 2 : $c' "$i")
    d=$(jl "$E2E_TMP/retry.log" $i '$j->{next_retry_s}')
    perl -e 'exit !($ARGV[0] >= 0 && $ARGV[0] <= $ARGV[1] + 0.0005)' "$d" "$cap" || bad="$bad [$i: wait $d > $cap]"
done
is "$bad" "" "... the earlier ones: retry, exit 75, site toronto, wait within [0, min(2, 0.2*2^(n-1))] s"
is "$(hub_sql "SELECT title FROM resource WHERE id = '$R1'")" "sent after the outage $U" "... and the edit made during the outage is on the hub"
like "$(cat "$E2E_TMP/retry.out")" 'now at version' "... summary on stdout"

# ---- status: hub head as of the last contact, last failure kept ---------------------------
v=$(hub_max_seq)
is "$(status_json toronto hub_head_version)" "$v" "status --json: hub_head_version = hub max(seq) after a sync"
like "$(status_json toronto hub_contact_at)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "... hub_contact_at is a time"
is "$(status_json toronto last_error)" null "... last_error is null after a success"
like "$(status_json toronto last_failure)" "127\\.0\\.0\\.1:$PORT" "... last_failure still says why the hub could not be reached"
like "$(status_json toronto last_failure_at)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "... and when"
like "$(status_get toronto 'hub head version')" "^$v \\(as of " "status (text): hub head version"
is "$(status_json ottawa hub_head_version)" "$((v - 1))" "ottawa's status: the head as of its own last contact (before toronto's push)"
is "$(status_json ottawa synced_version)" "$((v - 1))" "... = its synced version"
site_sync ottawa "ottawa syncs"
is "$(status_json ottawa hub_head_version)" "$v" "... then its hub_head_version catches up"

# ---- unread conflicts ----------------------------------------------------------------------
sq "$T" "UPDATE resource SET title = 'toronto title $U' WHERE id = '$R1'"
sq "$O" "UPDATE resource SET title = 'ottawa title $U' WHERE id = '$R1'"
site_sync toronto "toronto pushes its title first"
site_sync ottawa "ottawa pushes its title second (wins)"
site_sync toronto "toronto syncs again and receives its lost edit"
c=$(status_json toronto conflicts)
ok $(( c < 1 )) "toronto has $c conflict(s)"
is "$(status_json toronto unread_conflicts)" "$c" "... all unread"
is "$(status_get toronto 'unread conflicts')" "$c" "... (text status too)"
ok_cmd "empact conflicts toronto.db" "$EMPACT" conflicts "$T"
is "$(status_json toronto unread_conflicts)" 0 "after 'empact conflicts': unread_conflicts 0"
is "$(status_json toronto conflicts)" "$c" "... conflicts still $c"
is "$(status_json toronto pending_changes)|$(status_json toronto site)|$(status_json toronto hub)" \
    "0|toronto|127.0.0.1:$PORT" "... the older fields are unchanged (pending_changes, site, hub)"

# ---- 77: a revoked site; a refusal is never retried ----------------------------------------
ok_cmd "empact-hub revoke-site ottawa" "$EMPACT_HUB" revoke-site "$HUB_DIR" ottawa
expect_rc 77 "ottawa's sync --retry 3 --backoff: 77" "$EMPACT" sync "$O" --retry 3 --backoff --log-format json
is "$(printf '%s\n' "$RUN_ERR" | wc -l)" 1 "... after one attempt: a refusal is not retried"
is "$(printf '%s\n' "$RUN_ERR" | json_eval '@$j{qw(attempt outcome exit_code next_retry_s)}')" \
    "1 failed 77 null" "... logged: failed, exit_code 77, no retry"
run "$EMPACT" sync "$O" --retry 1
like "$RUN_ERR" '^[0-9T:.Z-]+ empact sync: db=[^ ]*ottawa\.db site=ottawa attempt=1/2 outcome=failed exit=77: ' \
    "the text log line: time, db, site, attempt, outcome, exit, message"

# ---- the shipped systemd units and cron line ---------------------------------------------
SVC=$E2E_REPO/contrib/systemd/empact-sync@.service TMR=$E2E_REPO/contrib/systemd/empact-sync@.timer
CRON=$E2E_REPO/contrib/empact-sync.cron
exec_start=$(sed -n 's/^ExecStart=//p' "$SVC")
like "$exec_start" '^/usr/local/bin/empact sync /var/lib/empact/%i\.db --retry 5 --backoff --log-format json$' \
    "the service runs empact sync --retry 5 --backoff --log-format json on /var/lib/empact/%i.db"
like "$(cat "$TMR")" $'\nPersistent=true\n' "the timer is Persistent (catches up after sleep)"
like "$(cat "$TMR")" $'\nRandomizedDelaySec=' "... and spreads sites with RandomizedDelaySec"
ini_ok() {   # every line: blank, comment, [Section] or Key=Value
    perl -ne 'next if /^\s*(#.*)?$/ || /^\[[A-Za-z]+\]$/ || /^[A-Za-z]+=.*$/; print "$.: $_"; $bad = 1;
              END { exit($bad ? 1 : 0) }' "$1"
}
for f in "$SVC" "$TMR"; do
    out=$(ini_ok "$f"); ok $? "$(basename "$f") parses as INI" || diag "$out"
done
if command -v systemd-analyze >/dev/null 2>&1; then
    mkdir -p "$E2E_TMP/units"
    sed "s#/usr/local/bin/empact#$EMPACT#" "$SVC" >"$E2E_TMP/units/empact-sync@.service"
    cp "$TMR" "$E2E_TMP/units/"
    run systemd-analyze verify "$E2E_TMP/units/empact-sync@toronto.service" "$E2E_TMP/units/empact-sync@toronto.timer"
    is "$RUN_RC $RUN_ERR" "0 " "systemd-analyze verify: no complaint about either unit" || _diag_run_output
else
    skip "systemd-analyze not installed"
fi
# The unit's and the cron line's command, pointed at this test's binary and replica, works.
cmd=${exec_start//\/usr\/local\/bin\/empact/$EMPACT}
cmd=${cmd//\/var\/lib\/empact\/%i.db/$T}
# shellcheck disable=SC2086
expect_rc 0 "the service's ExecStart command syncs toronto: 0" $cmd
is "$(printf '%s\n' "$RUN_ERR" | json_eval '$j->{outcome}')" ok "... and logs one JSON line"
cron=$(grep -v '^#' "$CRON" | grep -v '=' | grep .)
like "$cron" '^\*/15 \* \* \* \* empact empact sync /var/lib/empact/toronto\.db --retry 5 --backoff --log-format json ' \
    "the cron line: every 15 minutes, as user empact, same options"

done_testing
