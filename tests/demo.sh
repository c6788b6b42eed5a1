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

heading "5. Sites add data offline, with nothing but the sqlite3 shell"
sq toronto.db <<'SQL'
INSERT INTO resource(id, title, kind, phm_component, oht_block, population_group, added_by_site, updated_at) VALUES
 ('7c0f9a3e-0001-4d1a-9b1e-000000000001', 'Health Equity Analysis: intake and scoping checklist', 'toolkit', 'population identification', 1, 'older adults', 'toronto', '2026-07-02'),
 ('7c0f9a3e-0002-4d1a-9b1e-000000000002', 'Mapping barriers for people with chronic conditions', 'guide', 'segmentation for needs, risks and barriers', 2, 'people with chronic conditions', 'toronto', '2026-07-03'),
 ('7c0f9a3e-0003-4d1a-9b1e-000000000003', 'Co-designing services with community tables', 'guide', 'co-designing care models and service mix', 3, 'mental health and addictions', 'toronto', '2026-07-04'),
 ('7c0f9a3e-0004-4d1a-9b1e-000000000004', 'Reaching older adults at home', 'report', 'implementation and reach', 4, 'older adults', 'toronto', '2026-07-05'),
 ('7c0f9a3e-0005-4d1a-9b1e-000000000005', 'Measuring what partners changed after an HEA', 'toolkit', 'monitoring and evaluation', 8, NULL, 'toronto', '2026-07-06'),
 ('7c0f9a3e-0006-4d1a-9b1e-000000000006', 'A palliative approach in primary care', 'video', 'co-designing care models and service mix', 5, 'palliative approach', 'toronto', '2026-07-07');
-- metric values for 2026-Q3 (codes from the hub's catalogue; counts below a
-- metric's suppress_below are published suppressed, as NULL)
WITH v(code, val) AS (VALUES ('heas_completed', 22), ('heas_in_progress', 3),
  ('decisions_hospital', 6), ('decisions_provincial', 4), ('decisions_national', 2),
  ('impact_partnerships', 15), ('impact_partners', 40), ('members_engaged', 35),
  ('compensation_paid', 12500), ('feedback_share', 0.8))
INSERT INTO metric_value(site_id, metric, period, value, suppressed, updated_at)
SELECT 'toronto', m.code, '2026-Q3',
       CASE WHEN v.val < m.suppress_below THEN NULL ELSE v.val END,
       CASE WHEN v.val < m.suppress_below THEN 1 ELSE 0 END, '2026-09-30'
FROM v JOIN metric m ON m.code = v.code;
SQL
say "toronto: 6 resources and $(sq toronto.db "SELECT count(*) FROM metric_value") metric values"
say "toronto records its confidential HEA work offline (it stays in toronto.db):"
run_empact "$EMPACT" partner add toronto.db --organisation "A Toronto hospital" --level hospital --contact lead@hospital.example
run_empact "$EMPACT" partner add toronto.db --organisation "Ontario Health region" --level provincial-regional
run_empact "$EMPACT" member add toronto.db --name "Community member A" --contact a@example.org
run_empact "$EMPACT" member add toronto.db --name "Community member B"
run_empact "$EMPACT" hea add toronto.db --title "Discharge planning HEA" --opened 2026-05-01
run_empact "$EMPACT" hea partner toronto.db 1 1
run_empact "$EMPACT" hea advance toronto.db 1 --on 2026-05-08
run_empact "$EMPACT" hea advance toronto.db 1 --on 2026-05-20
run_empact "$EMPACT" hea pay toronto.db 1 --member 1 --amount 100 --on 2026-06-01
run_empact "$EMPACT" hea pay toronto.db 1 --member 2 --amount 100 --on 2026-06-01
run_empact "$EMPACT" hea advance toronto.db 1 --on 2026-06-01
run_empact "$EMPACT" hea decision toronto.db 1 --partner 1 --what "Discharge letters in plain language" --on 2026-07-15
run_empact "$EMPACT" hea add toronto.db --title "Regional wait-list HEA" --opened 2026-08-15
run_empact "$EMPACT" hea partner toronto.db 2 2
run_empact "$EMPACT" hea list toronto.db

sq ottawa.db <<'SQL'
INSERT INTO resource(id, title, kind, phm_component, oht_block, population_group, added_by_site, updated_at) VALUES
 ('7c0f9a3e-0007-4d1a-9b1e-000000000007', 'Population health data for Ottawa neighbourhoods', 'report', 'population identification', 6, NULL, 'ottawa', '2026-07-08'),
 ('7c0f9a3e-0008-4d1a-9b1e-000000000008', 'Segmenting mental health and addictions needs', 'guide', 'segmentation for needs, risks and barriers', 2, 'mental health and addictions', 'ottawa', '2026-07-09'),
 ('7c0f9a3e-0009-4d1a-9b1e-000000000009', 'Bilingual engagement guide / Guide de participation bilingue', 'guide', 'co-designing care models and service mix', 3, NULL, 'ottawa', '2026-07-10'),
 ('7c0f9a3e-0010-4d1a-9b1e-000000000010', 'Scaling a community table to a new jurisdiction', 'toolkit', 'implementation and reach', 7, NULL, 'ottawa', '2026-07-11'),
 ('7c0f9a3e-0011-4d1a-9b1e-000000000011', 'Evaluating partnerships with people with chronic conditions', 'report', 'monitoring and evaluation', 8, 'people with chronic conditions', 'ottawa', '2026-07-12'),
 ('7c0f9a3e-0012-4d1a-9b1e-000000000012', 'Advance care planning conversations', 'video', 'implementation and reach', 5, 'palliative approach', 'ottawa', '2026-07-13');
WITH v(code, val) AS (VALUES ('heas_completed', 3), ('heas_in_progress', 2),
  ('decisions_hospital', 1), ('decisions_provincial', 1), ('decisions_national', 0),
  ('impact_partnerships', 2), ('impact_partners', 5), ('members_engaged', 4),
  ('compensation_paid', 1800), ('feedback_share', 0.5))
INSERT INTO metric_value(site_id, metric, period, value, suppressed, updated_at)
SELECT 'ottawa', m.code, '2026-Q3',
       CASE WHEN v.val < m.suppress_below THEN NULL ELSE v.val END,
       CASE WHEN v.val < m.suppress_below THEN 1 ELSE 0 END, '2026-09-30'
FROM v JOIN metric m ON m.code = v.code;
SQL
say "ottawa: 6 resources, $(sq ottawa.db "SELECT count(*) FROM metric_value") metric values, and its own confidential HEA"
run_empact "$EMPACT" partner add ottawa.db --organisation "An Ottawa hospital" --level hospital
run_empact "$EMPACT" member add ottawa.db --name "Community member C"
run_empact "$EMPACT" hea add ottawa.db --title "Emergency department HEA" --opened 2026-08-20
say "toronto also adds a summary to one of its resources (an UPDATE)"
sq toronto.db "UPDATE resource SET summary = 'Checklist for step 1 of a Health Equity Analysis' WHERE id = '7c0f9a3e-0001-4d1a-9b1e-000000000001'"

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

heading "10. What the central team sees on the hub: 2026-Q3 metrics per site"
sq -header -column hub/hub.db "
SELECT m.name AS metric,
       ifnull(max(CASE WHEN v.site_id = 'toronto' THEN CASE WHEN v.suppressed THEN 'suppressed' WHEN v.value = CAST(v.value AS INTEGER) THEN CAST(v.value AS INTEGER) ELSE v.value END END), '-') AS toronto,
       ifnull(max(CASE WHEN v.site_id = 'ottawa' THEN CASE WHEN v.suppressed THEN 'suppressed' WHEN v.value = CAST(v.value AS INTEGER) THEN CAST(v.value AS INTEGER) ELSE v.value END END), '-') AS ottawa
FROM metric m LEFT JOIN metric_value v ON v.metric = m.code AND v.period = '2026-Q3'
GROUP BY m.code ORDER BY m.code" | indent
say "('suppressed': a person count below the metric's threshold is published without its value)"

heading "11. Rows per table: hub vs each site"
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

heading "12. Are the replicas equal to the hub? (sqldiff, table by table)"
same=1
for s in toronto ottawa; do
    for t in resource metric_value metric site; do
        d=$(timeout 30 sqldiff --table "$t" hub/hub.db "$s.db") || { same=0; say "sqldiff failed for $s/$t"; continue; }
        if [ -n "$d" ]; then same=0; say "$s differs from the hub in $t:"; printf '%s\n' "$d" | head -n 5 | indent; fi
    done
done
if [ "$same" = 1 ]; then say "replicas equal to hub: toronto and ottawa hold exactly what the hub holds"; else exit 1; fi

heading "13. Stop the hub"
rc=0
stop_pid "$HUB_PID" || rc=$?
HUB_PID=""
[ "$rc" -eq 0 ] || { echo "   the hub exited with status $rc" >&2; exit 1; }
say "hub stopped cleanly"

printf '\nDemo finished: all steps succeeded.\n'
