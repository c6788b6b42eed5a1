# tests/e2e/lib.sh - helpers sourced by every end-to-end test (tests/e2e/*.t).
#
# A test is a bash script that prints TAP; `prove` runs it from the repo root:
#
#     EMPACT_BIN=/path/to/bin prove -v tests/e2e/
#
# EMPACT_BIN   directory holding `empact` and `empact-hub` (default: <repo>/bin)
# E2E_TIMEOUT  seconds allowed for one client command (default 30)
# E2E_KEEP=1   keep the per-test temp dir (its path is printed as a diag line)
#
# Only bash, coreutils, sqlite3, sqldiff, git, openssl and perl (core JSON::PP)
# are used: no python3, no jq.
#
# TAP helpers:  ok STATUS DESC | ok_cmd DESC CMD... | pass | fail | is | isnt |
#               like | unlike | diag | note | skip | bail | done_testing
# Runs:         run CMD...           bounded; sets RUN_RC, RUN_OUT, RUN_ERR
#               expect_rc RC DESC CMD...
# Hub:          hub_init, start_hub DIR [PORT], stop_hub, hub_sql SQL
# Sites:        site_add ID [opts], site_join ID, site_sync ID, setup_hub_and_sites ID...
#               site_db ID, site_sql ID SQL, status_get ID KEY, status_json ID KEY
# Checks:       assert_converged ID..., new_uuid, bundle_get, bundle_set
# Crashes:      skip_all, require_test_hooks, tp_name, hub_alive, hub_reap, hub_kill,
#               sites_follow_hub, replica_matches_hub, assert_tree_matches_hub (tree2sql.pl),
#               ledger_note, ledger_diff, ledger_ok

set -u

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(cd "$E2E_LIB_DIR/../.." && pwd)
EMPACT_BIN=${EMPACT_BIN:-$E2E_REPO/bin}
# Absolute, since tests cd into their temp dir.
case $EMPACT_BIN in /*) ;; *) EMPACT_BIN=$(pwd)/$EMPACT_BIN ;; esac
EMPACT="$EMPACT_BIN/empact"
EMPACT_HUB="$EMPACT_BIN/empact-hub"
E2E_TIMEOUT=${E2E_TIMEOUT:-30}
# Safety net: a hub never outlives this many seconds even if the test is killed.
E2E_HUB_MAX=${E2E_HUB_MAX:-900}

# Tables by class, as in schema/schema.sql.
REPL_TABLES="resource metric_value metric site"
LOCAL_TABLES=$(sed -n "s/^INSERT INTO schema_class VALUES ('\([a-z_]*\)', 'local');\$/\1/p" \
    "$(dirname "${BASH_SOURCE[0]}")/../../schema/schema.sql" | tr '\n' ' ')

# Keep messages from the tools stable.
export LC_ALL=C TZ=UTC

# ---- TAP -----------------------------------------------------------------
_TAP_N=0
_TAP_FAILED=0
_TAP_PLANNED=""

plan() { _TAP_PLANNED=$1; echo "1..$1"; }

diag() {
    local line
    # To stdout so the lines stay next to the test they explain under prove -v.
    printf '%s\n' "$@" | while IFS= read -r line; do printf '# %s\n' "$line"; done
}
note() { diag "$@"; }

# ok STATUS DESC: STATUS is a shell status, 0 = pass.   e.g.  [ -f x ]; ok $? "x exists"
ok() {
    local st=$1; shift
    _TAP_N=$((_TAP_N + 1))
    if [ "$st" -eq 0 ] 2>/dev/null; then
        printf 'ok %d - %s\n' "$_TAP_N" "$*"
        return 0
    fi
    _TAP_FAILED=$((_TAP_FAILED + 1))
    printf 'not ok %d - %s\n' "$_TAP_N" "$*"
    local i=1
    while [ "${BASH_SOURCE[$i]:-}" = "${BASH_SOURCE[0]}" ]; do i=$((i + 1)); done
    local caller_file=${BASH_SOURCE[$i]:-?} caller_line=${BASH_LINENO[$((i - 1))]:-?}
    diag "  Failed test '$*'" "  at $(basename "$caller_file") line $caller_line."
    return 1
}
pass() { ok 0 "$@"; }

fail() { ok 1 "$@"; }

# ok_cmd DESC CMD...: passes when CMD (bounded by timeout) exits 0.
ok_cmd() {
    local desc=$1; shift
    run "$@"
    if [ "$RUN_RC" -eq 0 ]; then pass "$desc"; return 0; fi
    fail "$desc"
    diag "  command: $*" "  exit: $RUN_RC"
    _diag_run_output
    return 1
}

is() {
    local got=$1 want=$2; shift 2
    if [ "$got" == "$want" ]; then pass "$@"; return 0; fi
    fail "$@"
    diag "         got: '$got'" "    expected: '$want'"
    return 1
}

isnt() {
    local got=$1 bad=$2; shift 2
    if [ "$got" != "$bad" ]; then pass "$@"; return 0; fi
    fail "$@"
    diag "         got: '$got'" "    expected anything else"
    return 1
}

# like GOT ERE DESC (bash =~, extended regex).
like() {
    local got=$1 re=$2; shift 2
    if [[ "$got" =~ $re ]]; then pass "$@"; return 0; fi
    fail "$@"
    diag "    '$(printf '%s' "$got" | head -c 2000)'" "    doesn't match '$re'"
    return 1
}

unlike() {
    local got=$1 re=$2; shift 2
    if ! [[ "$got" =~ $re ]]; then pass "$@"; return 0; fi
    fail "$@"
    diag "    '$(printf '%s' "$got" | head -c 2000)'" "    matches '$re'"
    return 1
}

skip() { _TAP_N=$((_TAP_N + 1)); printf 'ok %d # skip %s\n' "$_TAP_N" "$*"; }

bail() { echo "Bail out! $*"; exit 255; }

# Ends the test: one last check that no sanitizer report was seen, the plan,
# and the exit status (0 only if every test passed).
done_testing() {
    if [ -n "$HUB_PID" ]; then   # a hub left running: stop it so its log is complete
        kill -TERM "$HUB_PID" 2>/dev/null; wait_bounded "$HUB_PID" 10; untrack_pid "$HUB_PID"; HUB_PID=""
    fi
    [ -n "$HUB_DIR" ] && check_sanitizer_file "$HUB_DIR/hub.log" "the hub log"
    local san=0
    [ -f "$E2E_TMP/.sanitizer" ] && san=$(wc -l <"$E2E_TMP/.sanitizer")
    is "$san" 0 "no AddressSanitizer/UBSan report from any empact or hub process"
    if [ -z "$_TAP_PLANNED" ]; then echo "1..$_TAP_N"; fi
    if [ "$_TAP_FAILED" -ne 0 ]; then
        diag "$_TAP_FAILED of $_TAP_N tests failed"
        exit 1
    fi
    exit 0
}

# Stops a test early (setup failed): says why, closes the plan.
give_up() {
    fail "$*"
    diag "giving up: the remaining checks depend on this step"
    [ -n "${HUB_DIR:-}" ] && [ -f "$HUB_DIR/hub.log" ] && { diag "hub log (tail):"; diag "$(tail -n 20 "$HUB_DIR/hub.log")"; }
    done_testing
}

# ---- temp dir and clean-up -------------------------------------------------
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/empact-e2e.XXXXXX") || bail "mktemp failed"
E2E_PIDS=""   # background processes this test started (hubs, fake servers)
HUB_PID=""
HUB_PORT=""
HUB_DIR=""

track_pid() { E2E_PIDS="$E2E_PIDS $1"; }
untrack_pid() {
    local p out=""
    for p in $E2E_PIDS; do [ "$p" = "$1" ] || out="$out $p"; done
    E2E_PIDS=$out
}

# Waits for child PID at most SECS seconds; sets WAIT_RC (124 if it had to be killed).
wait_bounded() {
    local pid=$1 secs=$2 i killed=0
    for ((i = 0; i < secs * 50; i++)); do
        _pid_running "$pid" || break
        sleep 0.02
    done
    if _pid_running "$pid"; then kill -KILL "$pid" 2>/dev/null; killed=1; fi
    wait "$pid" 2>/dev/null
    WAIT_RC=$?
    [ "$killed" = 1 ] && WAIT_RC=124
    return 0
}
# _pid_running PID: alive and not a zombie waiting to be reaped.
_pid_running() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

_e2e_cleanup() {
    local rc=$? p
    # A subshell killed right after its fork may still run this trap: only the
    # test itself cleans up its processes and files.
    [ "$BASHPID" = "$$" ] || exit "$rc"
    trap - EXIT INT TERM HUP
    local kids=""
    for p in $E2E_PIDS; do kids="$kids $(ps -o pid= --ppid "$p" 2>/dev/null)"; done
    for p in $E2E_PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $E2E_PIDS; do wait_bounded "$p" 5; done
    for p in $kids; do kill -KILL "$p" 2>/dev/null; done   # e.g. a hub whose `timeout` was killed
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "# kept temp dir $E2E_TMP"
    else
        rm -rf "$E2E_TMP"
    fi
    exit "$rc"
}
trap _e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- running commands ------------------------------------------------------
# Sanitizer reports in a file count as a failure at done_testing.
_SAN_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|SUMMARY: AddressSanitizer'
check_sanitizer_file() {
    local f=$1 what=$2
    if [ -f "$f" ] && grep -Eaq "$_SAN_RE" "$f"; then
        echo "$what" >>"$E2E_TMP/.sanitizer"   # a file: counts survive subshells
        diag "sanitizer report from $what:"
        diag "$(grep -Ea -A 12 "$_SAN_RE" "$f" | head -n 40)"
    fi
}

_RUN_SEQ=0
# run CMD...: runs CMD with stdin from /dev/null, bounded by E2E_TIMEOUT.
# Sets RUN_RC (124 = timed out), RUN_OUT, RUN_ERR, RUN_OUT_BYTES (stdout size).
run() {
    _RUN_SEQ=$((_RUN_SEQ + 1))
    local o="$E2E_TMP/.run.$_RUN_SEQ.out" e="$E2E_TMP/.run.$_RUN_SEQ.err"
    if declare -F "$1" >/dev/null; then
        "$@" >"$o" 2>"$e" </dev/null   # a helper such as sq: bounded inside
    else
        timeout -k 5 "$E2E_TIMEOUT" "$@" >"$o" 2>"$e" </dev/null
    fi
    RUN_RC=$?
    RUN_OUT_BYTES=$(stat -c %s "$o")
    RUN_OUT=$(tr -d '\000' <"$o")   # NUL bytes cannot live in a shell variable
    RUN_ERR=$(tr -d '\000' <"$e")
    [ "$RUN_RC" -eq 124 ] && diag "TIMED OUT after ${E2E_TIMEOUT}s: $*"
    check_sanitizer_file "$e" "$*"
    rm -f "$o" "$e"
    return 0
}

_diag_run_output() {
    [ -n "$RUN_OUT" ] && diag "  stdout:" "$(printf '%s\n' "$RUN_OUT" | head -n 20 | sed 's/^/    /')"
    [ -n "$RUN_ERR" ] && diag "  stderr:" "$(printf '%s\n' "$RUN_ERR" | head -n 20 | sed 's/^/    /')"
    return 0
}

# expect_rc RC DESC CMD...: runs CMD, passes when its exit status is RC.
expect_rc() {
    local want=$1 desc=$2; shift 2
    run "$@"
    if [ "$RUN_RC" -eq "$want" ]; then pass "$desc"; return 0; fi
    fail "$desc"
    diag "  command: $*" "  exit: $RUN_RC (expected $want)"
    _diag_run_output
    return 1
}

# expect_fail DESC CMD...: passes when CMD exits non-zero (and did not time out).
expect_fail() {
    local desc=$1; shift
    run "$@"
    if [ "$RUN_RC" -ne 0 ] && [ "$RUN_RC" -ne 124 ]; then pass "$desc"; return 0; fi
    fail "$desc"
    diag "  command: $*" "  exit: $RUN_RC (expected a failure)"
    _diag_run_output
    return 1
}

# sq DB SQL...: the plain sqlite3 shell, bounded; stops at the first error.
sq() {
    local db=$1; shift
    timeout -k 5 "$E2E_TIMEOUT" sqlite3 -batch -bail -cmd '.timeout 5000' "$db" "$@" </dev/null
}

new_uuid() { cat /proc/sys/kernel/random/uuid; }

file_mode() { stat -c '%a' "$1" 2>/dev/null; }

# ---- the hub ---------------------------------------------------------------
# hub_init [DIR]: `empact-hub init`, sets HUB_DIR (default $E2E_TMP/hub).
hub_init() {
    HUB_DIR=${1:-$E2E_TMP/hub}
    ok_cmd "empact-hub init $(basename "$HUB_DIR")" "$EMPACT_HUB" init "$HUB_DIR"
}

hub_sql() { sq "$HUB_DIR/hub.db" "$@"; }
hub_git() { timeout -k 5 "$E2E_TIMEOUT" git -C "$HUB_DIR/history.git" "$@"; }
hub_max_seq() { hub_sql "SELECT coalesce(max(seq),0) FROM _empact_version"; }

_HUB_START_SEQ=0
# start_hub DIR [PORT]: serves DIR on 127.0.0.1:PORT (default 0: a free port)
# in the background.  stderr is appended to DIR/hub.log; the port is read from
# the first stdout line within ~10 s.  Exports HUB_PORT and HUB_PID; returns
# non-zero (after a failed TAP line) if the hub did not come up.
start_hub() {
    local dir=$1 port=${2:-0} out line i
    _HUB_START_SEQ=$((_HUB_START_SEQ + 1))
    out="$dir/hub.stdout.$_HUB_START_SEQ"
    : >"$out"
    echo "---- e2e: serve start #$_HUB_START_SEQ" >>"$dir/hub.log"
    timeout -k 5 "$E2E_HUB_MAX" "$EMPACT_HUB" serve "$dir" --listen "127.0.0.1:$port" \
        >"$out" 2>>"$dir/hub.log" </dev/null &
    HUB_PID=$!
    track_pid "$HUB_PID"
    HUB_PORT=""
    for i in $(seq 1 500); do
        line=$(head -n 1 "$out" 2>/dev/null)
        if [[ "$line" =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
            HUB_PORT=${BASH_REMATCH[1]}
            break
        fi
        _pid_running "$HUB_PID" || break
        sleep 0.02
    done
    export HUB_PORT HUB_PID
    if [ -n "$HUB_PORT" ] && [ "$HUB_PORT" -gt 0 ]; then
        pass "hub serving $(basename "$dir") on 127.0.0.1:$HUB_PORT (first stdout line)"
        return 0
    fi
    fail "hub serving $(basename "$dir"): first stdout line 'listening on 127.0.0.1:PORT' within 10 s"
    diag "  first stdout line: '$(head -n 1 "$out" 2>/dev/null)'"
    diag "  hub log (tail):" "$(tail -n 20 "$dir/hub.log")"
    return 1
}

# stop_hub [SIG]: sends SIG (default TERM) to the hub process itself (not to
# the `timeout` safety net around it), waits at most 10 s, expects exit status 0.
stop_hub() {
    local sig=${1:-TERM} pid=$HUB_PID target
    if [ -z "$pid" ]; then fail "stop_hub: no hub running"; return 1; fi
    target=$(ps -o pid= --ppid "$pid" 2>/dev/null | head -n 1)
    kill -"$sig" ${target:-$pid} 2>/dev/null
    wait_bounded "$pid" 10
    [ "$WAIT_RC" -eq 124 ] && [ -n "$target" ] && kill -KILL "$target" 2>/dev/null
    untrack_pid "$pid"
    HUB_PID=""
    if [ "$WAIT_RC" -eq 0 ]; then pass "hub stops cleanly on SIG$sig (exit 0)"; return 0; fi
    fail "hub stops cleanly on SIG$sig (exit 0)"
    diag "  exit status: $WAIT_RC (124 = still running after 10 s, killed)"
    diag "  hub log (tail):" "$(tail -n 20 "$HUB_DIR/hub.log")"
    return 1
}

hub_log() { cat "$HUB_DIR/hub.log" 2>/dev/null; }
hub_log_lines() { wc -l <"$HUB_DIR/hub.log" 2>/dev/null || echo 0; }
# hub_log_since N: the log after its first N lines.
hub_log_since() { tail -n "+$(($1 + 1))" "$HUB_DIR/hub.log" 2>/dev/null; }

# ---- sites -------------------------------------------------------------------
site_db() { echo "$E2E_TMP/$1.db"; }
site_join_file() { echo "$E2E_TMP/$1.join"; }
site_sql() { local id=$1; shift; sq "$(site_db "$id")" "$@"; }

# site_add ID [extra add-site options]: registers ID, bundle at $E2E_TMP/ID.join.
site_add() {
    local id=$1; shift
    ok_cmd "add-site $id" "$EMPACT_HUB" add-site "$HUB_DIR" "$id" \
        --address "127.0.0.1:$HUB_PORT" -o "$(site_join_file "$id")" "$@"
}

# site_join ID: creates $E2E_TMP/ID.db from its bundle (first sync included).
site_join() {
    local id=$1
    ok_cmd "join $id" "$EMPACT" join "$(site_db "$id")" "$(site_join_file "$id")"
}

# site_sync ID [DESC]: one `empact sync`, must exit 0.
site_sync() {
    local id=$1
    ok_cmd "${2:-sync $id}" "$EMPACT" sync "$(site_db "$id")"
}

# setup_hub_and_sites ID...: init + serve a hub, then add and join each site.
# Gives up the test if any step fails.
setup_hub_and_sites() {
    local id
    hub_init || give_up "hub init"
    start_hub "$HUB_DIR" || give_up "hub start"
    for id in "$@"; do
        site_add "$id" --name "Site $id" --jurisdiction "Jurisdiction $id" || give_up "add-site $id"
        site_join "$id" || give_up "join $id"
    done
    return 0
}

# status_get ID KEY: the value of line "KEY: value" of `empact status`.
status_get() {
    local id=$1 key=$2
    run "$EMPACT" status "$(site_db "$id")"
    printf '%s\n' "$RUN_OUT" | sed -n "s/^$key: *//p" | head -n 1
}

# status_json ID KEY: one key of `empact status --json` (null -> "null").
status_json() {
    local id=$1 key=$2
    run "$EMPACT" status "$(site_db "$id")" --json
    printf '%s' "$RUN_OUT" | perl -MJSON::PP -e '
        local $/; my $j = eval { JSON::PP->new->allow_nonref->decode(<STDIN>) };
        exit 2 unless ref $j eq "HASH";
        my $v = $j->{$ARGV[0]};
        print defined $v ? (JSON::PP::is_bool($v) ? ($v ? "true" : "false") : $v) : "null";
    ' "$key"
}

# json_eval EXPR: decodes JSON from stdin into $j and prints the perl expression
# EXPR (lists joined with spaces, undef as "null", booleans as true/false).
json_eval() {
    perl -MJSON::PP -e '
        local $/; our $j = eval { JSON::PP->new->allow_nonref->decode(<STDIN>) };
        defined $j or do { print "not JSON"; exit 2 };
        sub show { my $v = shift; !defined $v ? "null" : JSON::PP::is_bool($v) ? ($v ? "true" : "false") : $v }
        my @r = eval $ARGV[0]; die $@ if $@;
        print join " ", map { show($_) } @r;
    ' "$1"
}

# sync_json ID: one `empact sync --log-format json`; SYNC is its JSON line,
# SYNC_OUT its stdout; field KEY prints one key of SYNC.
sync_json() {
    run "$EMPACT" sync "$(site_db "$1")" --log-format json
    SYNC=$(printf '%s\n' "$RUN_ERR" | grep '^{' | tail -n 1)
    SYNC_OUT=$RUN_OUT
    [ "$RUN_RC" -eq 0 ] || { diag "sync $1 exit $RUN_RC"; _diag_run_output; }
    return "$RUN_RC"
}
field() { printf '%s' "$SYNC" | json_eval "\$j->{$1}"; }

# assert_converged ID...: sqldiff of every replicated table, hub vs each site.
assert_converged() {
    local id t
    for id in "$@"; do
        for t in $REPL_TABLES; do
            run sqldiff --table "$t" "$HUB_DIR/hub.db" "$(site_db "$id")"
            if [ "$RUN_RC" -eq 0 ] && [ -z "$RUN_OUT" ]; then
                pass "sqldiff --table $t hub.db $id.db prints nothing"
            else
                fail "sqldiff --table $t hub.db $id.db prints nothing"
                diag "  exit $RUN_RC"; _diag_run_output
            fi
        done
    done
}

# ---- join bundles (perl core JSON::PP only) ----------------------------------
# bundle_get FILE FIELD: prints one field of a join bundle.
bundle_get() {
    perl -MJSON::PP -e '
        my ($f, $k) = @ARGV; local $/;
        open my $fh, "<", $f or die "$f: $!\n";
        my $j = JSON::PP->new->decode(<$fh>);
        die "no field $k\n" unless exists $j->{$k};
        print $j->{$k};
    ' "$1" "$2"
}

# bundle_set IN OUT FIELD=VALUE|FIELD=@FILE ...: a copy of IN with fields replaced
# (VALUE taken from FILE when it starts with @), written with mode 0600.
bundle_set() {
    perl -MJSON::PP -e '
        my ($in, $out, @kv) = @ARGV; local $/;
        open my $fh, "<", $in or die "$in: $!\n";
        my $j = JSON::PP->new->decode(<$fh>);
        for (@kv) {
            my ($k, $v) = split /=/, $_, 2;
            if ($v =~ s/^@//) { open my $g, "<", $v or die "$v: $!\n"; $v = <$g>; }
            $j->{$k} = $v;
        }
        umask 077;
        open my $o, ">", $out or die "$out: $!\n";
        print $o JSON::PP->new->canonical->pretty->encode($j);
        close $o or die "$out: $!\n";
    ' "$@"
}

# ---- crash injection (test builds only; see common/testpoint.h) ---------------
# Test builds (HOOKS=1: build-test/, build-asan/) honour EMPACT_KILL_AFTER=N
# (SIGKILL at the N-th test point reached) and EMPACT_TESTPOINT_LOG=FILE ("N
# name" per point reached); release builds (bin/) ignore both.

# skip_all REASON: skips the whole test (TAP "1..0 # SKIP"); call before any test line.
skip_all() { echo "1..0 # SKIP $*"; exit 0; }

# require_test_hooks: skip_all unless both binaries log their test points.  No
# hub is served: `empact-hub init` commits the seed data, and a join to a port
# nobody listens on builds its (empty) outbox before it fails to connect.
require_test_hooks() {
    local d="$E2E_TMP/.hook-probe"
    mkdir -p "$d"
    EMPACT_TESTPOINT_LOG="$d/hub.tp" timeout -k 5 "$E2E_TIMEOUT" "$EMPACT_HUB" init "$d/hub" \
        >/dev/null 2>"$d/err.1" </dev/null
    timeout -k 5 "$E2E_TIMEOUT" "$EMPACT_HUB" add-site "$d/hub" probe --address 127.0.0.1:1 \
        -o "$d/probe.join" >/dev/null 2>"$d/err.2" </dev/null
    EMPACT_TESTPOINT_LOG="$d/site.tp" timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" join "$d/probe.db" \
        "$d/probe.join" >/dev/null 2>"$d/err.3" </dev/null
    check_sanitizer_file "$d/err.1" "empact-hub init (hook probe)"
    check_sanitizer_file "$d/err.3" "empact join (hook probe)"
    if [ -s "$d/hub.tp" ] && [ -s "$d/site.tp" ]; then rm -rf "$d"; return 0; fi
    rm -rf "$d"
    skip_all "no test hooks in EMPACT_BIN=$EMPACT_BIN (EMPACT_TESTPOINT_LOG ignored: a release build); use a HOOKS=1 build such as build-test/bin"
}

# tp_name LOG N: the name of the N-th point in a test point log.
tp_name() { sed -n "s/^$2 //p" "$1" 2>/dev/null | head -n 1; }

# hub_alive: the hub of the last start_hub still runs.
hub_alive() { [ -n "$HUB_PID" ] && _pid_running "$HUB_PID"; }

# hub_reap: waits at most 10 s for the hub to end (it killed itself, or was
# killed) and forgets it; WAIT_RC is its status (137: SIGKILL, 124: had to be killed).
hub_reap() {
    local pid=$HUB_PID c
    [ -n "$pid" ] || return 0
    wait_bounded "$pid" 10
    if [ "$WAIT_RC" -eq 124 ]; then   # the `timeout` wrapper was killed: its child too
        for c in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
    fi
    untrack_pid "$pid"
    HUB_PID=""
}

# hub_kill: SIGKILL to the hub process itself (not its `timeout` wrapper), then hub_reap.
hub_kill() {
    local c
    [ -n "$HUB_PID" ] || return 0
    for c in $(ps -o pid= --ppid "$HUB_PID" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
    hub_reap
}

# sites_follow_hub ID...: points each replica at 127.0.0.1:$HUB_PORT (a hub
# started again listens on a new port).
sites_follow_hub() {
    local id
    for id in "$@"; do
        sq "$(site_db "$id")" "UPDATE _empact_meta SET value = '127.0.0.1:$HUB_PORT' WHERE key = 'hub_address'" ||
            { fail "point $id at the hub on port $HUB_PORT"; return 1; }
    done
}

# replica_matches_hub DESC ID [TABLE...]: one TAP line, sqldiff --table of each
# TABLE (default: every replicated table) between hub.db and the replica prints nothing.
replica_matches_hub() {
    local desc=$1 id=$2 t d out="" ; shift 2
    for t in ${*:-$REPL_TABLES}; do
        d=$(timeout -k 5 "$E2E_TIMEOUT" sqldiff --table "$t" "$HUB_DIR/hub.db" "$(site_db "$id")" 2>&1) ||
            d="sqldiff failed (exit $?): $d"
        [ -z "$d" ] || out="$out$t:"$'\n'"$(printf '%s\n' "$d" | head -n 10)"$'\n'
    done
    [ -z "$out" ]
    ok $? "$desc" || diag "sqldiff hub.db $id.db:" "$out"
}

# assert_tree_matches_hub DESC [REV]: rebuilds every replicated table from the
# tree of REV (default HEAD) of history.git with tree2sql.pl (own parser of the
# row files, checks paths and shards too) into a scratch database made with
# hub.db's own CREATE TABLE statements; one TAP line: each table equals hub.db's
# (sqldiff --table prints nothing).
assert_tree_matches_hub() {
    local desc=$1 rev=${2:-HEAD} db="$E2E_TMP/.tree.db" t specs out="" in
    rm -f "$db" "$db-wal" "$db-shm"
    in=$(printf "('%s')," $REPL_TABLES)
    specs=$(hub_sql "SELECT t.column1 || '=' ||
        (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info(t.column1) ORDER BY cid)) || ';' ||
        (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_table_info(t.column1) WHERE pk > 0 ORDER BY pk))
        FROM (VALUES ${in%,}) t") || { fail "$desc"; diag "cannot read hub.db's columns"; return 1; }
    if ! hub_sql "SELECT sql || ';' FROM sqlite_schema WHERE type = 'table' AND name IN ($(printf "'%s'," $REPL_TABLES | sed 's/,$//'))" \
            >"$db.schema.sql" || ! timeout -k 5 "$E2E_TIMEOUT" sqlite3 -bail "$db" <"$db.schema.sql" >/dev/null 2>"$db.err"; then
        fail "$desc"; diag "cannot make the scratch database:" "$(cat "$db.err" 2>/dev/null)"; return 1
    fi
    # shellcheck disable=SC2086
    if ! timeout -k 5 "$E2E_TIMEOUT" perl "$E2E_LIB_DIR/tree2sql.pl" "$HUB_DIR/history.git" "$rev" $specs \
            >"$db.rows.sql" 2>"$db.err"; then
        out="tree2sql.pl: $(head -n 20 "$db.err")"$'\n'
    fi
    if ! timeout -k 5 "$E2E_TIMEOUT" sqlite3 -bail "$db" <"$db.rows.sql" >/dev/null 2>>"$db.err"; then
        out="${out}loading the rows: $(tail -n 5 "$db.err")"$'\n'
    fi
    for t in $REPL_TABLES; do
        run sqldiff --table "$t" "$db" "$HUB_DIR/hub.db"
        if [ "$RUN_RC" -ne 0 ] || [ -n "$RUN_OUT$RUN_ERR" ]; then
            out="${out}table $t differs (tree -> hub.db, exit $RUN_RC):"$'\n'"$(printf '%s\n%s' "$RUN_OUT" "$RUN_ERR" | head -n 10)"$'\n'
        fi
    done
    [ -z "$out" ]
    ok $? "$desc" || diag "$out"
}

# ---- a ledger of expected rows ---------------------------------------------------
# Tests that kill processes note, right after making edits, what each edited
# key must end up as (its whole row, or no row) in $E2E_TMP/ledger.db, read from
# the replica that made the edits; later they check any database against it.
#   ledger_note WHO ROUND DB TABLE:KEY...  KEY: the primary key values joined by '|'
#   ledger_diff DB [CONDITION]              prints one line per ledger row DB does not hold
#   ledger_ok DB DESC [CONDITION]           one TAP line: ledger_diff prints nothing
# CONDITION is SQL on the ledger's columns tbl, key, who, round, row.
LEDGER_DB="$E2E_TMP/ledger.db"
LEDGER_TABLES="resource metric_value"
declare -A _LEDGER_KEY _LEDGER_ROW
_ledger_init() {
    local t
    [ -f "$LEDGER_DB" ] && return 0
    sq "$LEDGER_DB" "CREATE TABLE ledger (tbl TEXT NOT NULL, key TEXT NOT NULL, who TEXT NOT NULL,
        round INTEGER NOT NULL, row TEXT, PRIMARY KEY (tbl, key))" || bail "cannot create $LEDGER_DB"
    for t in $LEDGER_TABLES; do
        _LEDGER_KEY[$t]=$(hub_sql "SELECT group_concat('x.\"' || name || '\"', ' || ''|'' || ') FROM
            (SELECT name FROM pragma_table_info('$t') WHERE pk > 0 ORDER BY pk)")
        _LEDGER_ROW[$t]=$(hub_sql "SELECT group_concat('quote(x.\"' || name || '\")', ' || ''|'' || ') FROM
            (SELECT name FROM pragma_table_info('$t') ORDER BY cid)")
        [ -n "${_LEDGER_KEY[$t]}" ] && [ -n "${_LEDGER_ROW[$t]}" ] || bail "cannot read the columns of $t from hub.db"
    done
}
ledger_note() {
    local who=$1 round=$2 db=$3 k t sql=""; shift 3
    _ledger_init
    for k in "$@"; do
        t=${k%%:*} k=${k#*:}
        [ -n "${_LEDGER_ROW[$t]:-}" ] || { fail "ledger_note: table '$t' is not in LEDGER_TABLES"; return 1; }
        sql="$sql INSERT OR REPLACE INTO L.ledger (tbl, key, who, round, row) VALUES ('$t', '${k//\'/\'\'}', '$who', $round,
            (SELECT ${_LEDGER_ROW[$t]} FROM main.\"$t\" x WHERE ${_LEDGER_KEY[$t]} = '${k//\'/\'\'}'));"
    done
    sq "$db" "ATTACH '$LEDGER_DB' AS L; BEGIN; $sql COMMIT;" ||
        fail "note the rows $who edited in $(basename "$db") in the ledger"
}
ledger_diff() {
    local db=$1 cond=${2:-1} t cases=""
    _ledger_init
    for t in $LEDGER_TABLES; do
        cases="$cases WHEN '$t' THEN (SELECT ${_LEDGER_ROW[$t]} FROM main.\"$t\" x WHERE ${_LEDGER_KEY[$t]} = l.key)"
    done
    sq "$db" "ATTACH '$LEDGER_DB' AS L;
        SELECT tbl || ' ' || key || ' (' || who || ', round ' || round || '): want ' ||
               coalesce(row, 'no row') || '; got ' || coalesce(got, 'no row')
        FROM (SELECT l.*, CASE l.tbl $cases END AS got FROM L.ledger l WHERE $cond)
        WHERE row IS NOT got ORDER BY round, tbl, key;" 2>&1
}
ledger_ok() {
    local db=$1 desc=$2 out
    out=$(ledger_diff "$db" "${3:-1}")
    [ -z "$out" ]
    ok $? "$desc" || diag "$(printf '%s\n' "$out" | head -n 15)"
}

# ---- preconditions -------------------------------------------------------------
if [ ! -x "$EMPACT" ] || [ ! -x "$EMPACT_HUB" ]; then
    bail "empact and empact-hub not found in EMPACT_BIN=$EMPACT_BIN (build first, or set EMPACT_BIN)"
fi
for _tool in sqlite3 sqldiff git openssl perl timeout; do
    command -v "$_tool" >/dev/null 2>&1 || bail "required tool not found: $_tool"
done
unset _tool
[ "${E2E_KEEP:-0}" = 1 ] && diag "temp dir: $E2E_TMP"
cd "$E2E_TMP" || bail "cannot cd to $E2E_TMP"
