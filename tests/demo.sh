#!/usr/bin/env bash
# tests/demo.sh BINDIR - the `make demo` walk-through.
#
# In a temporary directory: create a hub, serve it on a free local port, register
# two sites (Toronto and Ottawa), join both, add sample data with nothing but the
# sqlite3 shell, sync both sites twice, then show what happened: each site's
# status, the hub's git history, row counts on the hub and at each site, and
# whether the replicas equal the hub.  Exits non-zero if any step fails.
#
# DEMO_KEEP=1 keeps the temporary directory so you can look around afterwards.
set -euo pipefail
export LC_ALL=C TZ=UTC

BINDIR=${1:-bin}
case $BINDIR in /*) ;; *) BINDIR=$(pwd)/$BINDIR ;; esac
EMPACT="$BINDIR/empact"
HUB="$BINDIR/empact-hub"
for b in "$EMPACT" "$HUB"; do
    [ -x "$b" ] || { echo "demo: $b not found: build first (make all)" >&2; exit 1; }
done
for t in sqlite3 sqldiff git timeout; do
    command -v "$t" >/dev/null || { echo "demo: '$t' is required but not installed" >&2; exit 1; }
done

HERE=$(cd "$(dirname "$0")" && pwd)
REPORT_HTML=${EMPACT_DEMO_REPORT:-$(pwd)/build/demo-report.html}
W=$(mktemp -d "${TMPDIR:-/tmp}/empact-demo.XXXXXX")
HUB_PID=""
cleanup() {
    local rc=$?
    [ "$BASHPID" = "$$" ] || exit "$rc"   # not in a subshell that inherited the trap
    trap - EXIT
    if [ -n "$HUB_PID" ]; then stop_pid "$HUB_PID" || true; fi
    if [ "$rc" -ne 0 ]; then
        echo
        echo "DEMO FAILED (exit $rc)."
        if [ -s "$W/hub/hub.log" ]; then echo "Last lines of the hub log:"; tail -n 15 "$W/hub/hub.log" | sed 's/^/    /'; fi
    fi
    if [ "${DEMO_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
        echo "Files kept in $W"
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cd "$W"

heading() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
indent() { sed 's/^/     /'; }
# run_empact CMD...: an empact command, bounded to 30 s, output (and errors) indented.
run_empact() {
    local rc
    set +e
    timeout -k 5 30 "$@" 2>&1 | indent
    rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "   FAILED (exit $rc): $(basename "$1") ${*:2}" >&2
        return "$rc"
    fi
}
# alive PID: running (a finished child that was not waited for yet does not count).
alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
# stop_pid PID: SIGTERM, wait at most 10 s (then SIGKILL); returns its exit status.
stop_pid() {
    local pid=$1 i rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" || rc=$?
    return "$rc"
}
sq() { local db=$1; shift; timeout -k 5 30 sqlite3 -batch -bail -cmd '.timeout 5000' "$db" "$@"; }

cat <<'EOF'
EMPaCT Sync demo
================
One hub (the central team) and two sites (Toronto, Ottawa).  Each site keeps a
SQLite replica it can edit offline with any SQLite tool; `empact sync` pushes its
changes to the hub and pulls everyone else's.  Confidential tables never leave
the site.  Every accepted push becomes a commit in the hub's git repository.
EOF
say "working directory: $W"

# ---------------------------------------------------------------------------
heading "1. Create the hub"
run_empact "$HUB" init hub
say "hub/hub.db, hub/history.git, and the hub's own certificate authority"
say "metric catalogue (kept by the central team):"
sq hub/hub.db "SELECT '  ' || code || ' - ' || name || ' (' || ifnull(unit, '') || ')' FROM metric ORDER BY code" | indent

heading "2. Serve the hub on a free local port"
timeout -k 5 900 "$HUB" serve hub --listen 127.0.0.1:0 >hub/serve.out 2>hub/hub.log </dev/null &
HUB_PID=$!
PORT=""
for _ in $(seq 1 100); do
    line=$(head -n 1 hub/serve.out 2>/dev/null || true)
    if [[ "$line" =~ ^listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then PORT=${BASH_REMATCH[1]}; break; fi
    alive "$HUB_PID" || break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "   the hub did not start" >&2; exit 1; }
say "$line   (log: hub/hub.log)"

heading "3. Register two sites (each gets a join bundle: certificate + key + hub address)"
run_empact "$HUB" add-site hub toronto --name "EMPaCT Toronto" --jurisdiction Toronto \
    --address "127.0.0.1:$PORT" -o toronto.join
run_empact "$HUB" add-site hub ottawa --name "EMPaCT Ottawa" --jurisdiction Ottawa \
    --address "127.0.0.1:$PORT" -o ottawa.join
say "toronto.join, ottawa.join (mode $(stat -c %a toronto.join): they hold a private key)"

heading "4. Each site joins (creates its replica and syncs once)"
run_empact "$EMPACT" join toronto.db toronto.join
run_empact "$EMPACT" join ottawa.db ottawa.join

heading "5. Sites record their work offline (seeded sample data, made with empact's own commands)"
say "toronto, an established site: partners, members, 22 HEAs through the five steps, decisions, payments, resources"
bash "$HERE/sample/sample-site.sh" "$EMPACT" toronto.db toronto 2026 | indent
say "ottawa, a newer site in a second jurisdiction:"
bash "$HERE/sample/sample-site.sh" "$EMPACT" ottawa.db new 613 | indent
check() { [ "$2" = "$3" ] || { echo "   demo check failed: $1: got '$2', expected '$3'" >&2; exit 1; }; }
check "toronto's HEAs" "$(sq toronto.db "SELECT count(*) FROM hea")" 22
check "toronto's decisions by level" "$(sq toronto.db "SELECT group_concat(n, '/') FROM (SELECT p.level, count(*) AS n FROM hea_decision d JOIN impact_partner p ON p.id = d.partner_id GROUP BY p.level ORDER BY p.level DESC)")" "4/2/6"
check "toronto's partners and organisations at least 40 and 15" "$(sq toronto.db "SELECT count(*) >= 40 AND count(DISTINCT organisation) >= 15 FROM impact_partner")" 1
say "toronto's HEAs (confidential: they stay in toronto.db):"
run_empact "$EMPACT" hea list toronto.db --step report
say "a search in the shared library, offline:"
"$EMPACT" resource search toronto.db "lived experience" --block 3 --limit 3 | indent
say "each site computes its metrics for every quarter and year (only these aggregates leave the site):"
for s in toronto ottawa; do
    for p in 2025-Q1 2025-Q2 2025-Q3 2025-Q4 2025 2026-Q1 2026-Q2 2026-Q3 2026; do
        "$EMPACT" metrics compute "$s.db" --period "$p" >/dev/null || { echo "   metrics compute $s $p failed" >&2; exit 1; }
    done
done
run_empact "$EMPACT" metrics compute ottawa.db --period 2026-Q3
say "toronto also edits one of its resources with the sqlite3 shell (any SQLite tool may edit)"
sq toronto.db "UPDATE resource SET summary = 'Checklist for step 1 of a Health Equity Analysis' WHERE id = (SELECT min(id) FROM resource)"

heading "6. Status before syncing"
for s in toronto ottawa; do say "$s:"; run_empact "$EMPACT" status "$s.db"; done

heading "7. Sync both sites, twice (the second round pulls what the other site pushed)"
for round in 1 2; do
    for s in toronto ottawa; do
        say "round $round, $s:"
        run_empact "$EMPACT" sync "$s.db"
    done
done

heading "8. Status after syncing"
for s in toronto ottawa; do say "$s:"; run_empact "$EMPACT" status "$s.db"; done

heading "9. The hub's history: one git commit per change (author = who made it)"
git -C hub/history.git log --format='%h %an %s' | indent
if git -C hub/history.git fsck --strict >/dev/null 2>&1; then say "git fsck: clean"; else say "git fsck: PROBLEMS"; exit 1; fi
row=$(git -C hub/history.git ls-tree -r --name-only HEAD | grep -m 1 '^resource/' || true)
if [ -n "$row" ]; then
    say "the tree holds one file per row; e.g. $row:"
    git -C hub/history.git show "HEAD:$row" | indent
fi

heading "10. Rows per table: hub vs each site"
count() { sq "$1" "SELECT count(*) FROM $2" 2>/dev/null || echo "-"; }
printf '     %-16s %-8s %6s %8s %8s\n' table class hub toronto ottawa
for t in resource metric_value metric site; do
    printf '     %-16s %-8s %6s %8s %8s\n' "$t" replicated "$(count hub/hub.db "$t")" "$(count toronto.db "$t")" "$(count ottawa.db "$t")"
done
for t in impact_partner hea hea_step hea_partner hea_decision member hea_member compensation; do
    has=$(sq hub/hub.db "SELECT count(*) FROM sqlite_master WHERE name = '$t'")
    hubn="-"; [ "$has" = 0 ] || hubn=$(count hub/hub.db "$t")
    printf '     %-16s %-8s %6s %8s %8s\n' "$t" local "$hubn" "$(count toronto.db "$t")" "$(count ottawa.db "$t")"
done
say "(local tables are confidential: '-' means the hub does not even have the table)"

heading "11. Are the replicas equal to the hub? (sqldiff, table by table)"
same=1
for s in toronto ottawa; do
    for t in resource metric_value metric site; do
        d=$(timeout 30 sqldiff --table "$t" hub/hub.db "$s.db") || { same=0; say "sqldiff failed for $s/$t"; continue; }
        if [ -n "$d" ]; then same=0; say "$s differs from the hub in $t:"; printf '%s\n' "$d" | head -n 5 | indent; fi
    done
done
if [ "$same" = 1 ]; then say "replicas equal to hub: toronto and ottawa hold exactly what the hub holds"; else exit 1; fi

heading "12. Stop the hub"
rc=0
stop_pid "$HUB_PID" || rc=$?
HUB_PID=""
[ "$rc" -eq 0 ] || { echo "   the hub exited with status $rc" >&2; exit 1; }
say "hub stopped cleanly"

heading "13. What the central team sees: the cross-site impact report (from hub.db)"
run_empact "$HUB" report hub --from 2026-Q2 --to 2026-Q4
check "resources on the hub" "$(sq hub/hub.db "SELECT count(*) FROM resource")" 200
mkdir -p "$(dirname "$REPORT_HTML")" &&
    "$HUB" report hub --format html -o "$REPORT_HTML" 2>/dev/null || { echo "   cannot write $REPORT_HTML" >&2; exit 1; }
say "the same report as one HTML page with charts: $REPORT_HTML"

printf '\nDemo finished: all steps succeeded.\n'
