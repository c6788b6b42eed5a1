#!/usr/bin/env bash
# 30-bootstrap.t - a new site joins from a snapshot, not a replay (issue #7):
# a hub holding ROWS resources over several versions (with updates and
# deletes among them) serves `empact join` one snapshot of its head version;
# the join prints progress (plain lines when stdout is not a terminal, a bar
# redrawn in place on one), the hub replays no version to it, the new
# replica's tables and base copies equal hub.db, and it syncs on.  A join
# killed after its first snapshot chunk leaves no replica and the next join
# succeeds.  ROWS is 100,000 (E2E_ROWS=N for another size).
. "$(dirname "$0")/lib.sh"

require_test_hooks
E2E_TIMEOUT=120
ROWS=${E2E_ROWS:-100000}
BATCH=25000

setup_hub_and_sites seed
S=$(site_db seed)

# ---- the hub's data: ROWS resources in batches, then edits ---------------------------
i=0
while [ "$i" -lt "$ROWS" ]; do
    n=$((ROWS - i < BATCH ? ROWS - i : BATCH))
    site_sql seed "WITH RECURSIVE k(j) AS (SELECT $((i + 1)) UNION ALL SELECT j + 1 FROM k WHERE j < $((i + n)))
        INSERT INTO resource (id, title, url, summary, kind, oht_block, added_by_site, updated_at)
        SELECT printf('boot-%07d', j), 'Resource ' || j, 'https://example.org/r/' || j,
               'Summary of resource ' || j || ', written for the bootstrap test: ' || hex(randomblob(16)),
               CASE j % 3 WHEN 0 THEN 'guide' WHEN 1 THEN 'report' ELSE NULL END,
               1 + j % 8, 'seed', '2026-12-01T00:00:00Z' FROM k" ||
        give_up "cannot insert rows into seed"
    run "$EMPACT" sync "$S"
    [ "$RUN_RC" -eq 0 ] || { diag "$RUN_ERR"; give_up "sync of batch at $i failed"; }
    i=$((i + n))
done
site_sql seed "UPDATE resource SET title = title || ' (revised)' WHERE id IN
                 (SELECT id FROM resource WHERE id LIKE 'boot-%' ORDER BY id LIMIT 200)" &&
    site_sql seed "DELETE FROM resource WHERE id IN
                 (SELECT id FROM resource WHERE id LIKE 'boot-%' ORDER BY id DESC LIMIT 100)" ||
    give_up "cannot edit seed"
site_sync seed "seed: $ROWS rows pushed in batches of $BATCH, then 200 updates and 100 deletes"

# hub_rows: rows in hub.db's replicated tables.
hub_rows() {
    hub_sql "SELECT (SELECT count(*) FROM resource) + (SELECT count(*) FROM metric_value) +
                    (SELECT count(*) FROM metric) + (SELECT count(*) FROM site)"
}
is "$(hub_sql "SELECT count(*) FROM resource WHERE id LIKE 'boot-%'")" $((ROWS - 100)) \
    "hub holds $((ROWS - 100)) of the generated resources"
V=$(hub_max_seq)
[ "$V" -gt 3 ] && pass "hub history has $V versions" || fail "hub history has more than 3 versions (got $V)"

# ---- join from a snapshot, stdout not a terminal --------------------------------------
site_add fresh || give_up "add-site fresh"
HEAD=$(hub_max_seq) TOTAL=$(hub_rows)
F=$(site_db fresh)
LOG0=$(hub_log_lines)
expect_rc 0 "join fresh: 0" "$EMPACT" join "$F" "$(site_join_file fresh)"
printf '%s\n' "$RUN_OUT" >"$E2E_TMP/join.out"
like "$(sed -n 1p "$E2E_TMP/join.out")" "^join: the hub's snapshot of version $HEAD: $TOTAL rows in 4 tables\$" \
    "first line: the snapshot's version ($HEAD) and rows ($TOTAL, as hub.db counts them)"
grep -E '^join: [0-9]+%: [0-9]+ of [0-9]+ rows, [0-9.]+ MiB received$' "$E2E_TMP/join.out" >"$E2E_TMP/pct"
n_pct=$(wc -l <"$E2E_TMP/pct")
[ "$n_pct" -ge 3 ] && [ "$n_pct" -le 10 ] && pass "plain progress lines, one per tenth reached: $n_pct" ||
    { fail "3 to 10 plain progress lines (got $n_pct)"; diag "$RUN_OUT"; }
perl -e '$t = shift; $p = -1; $r = -1; $ok = 1;
    while (<>) { next unless /^join: (\d+)%: (\d+) of (\d+) rows, ([0-9.]+) MiB/;
        $ok = 0 if $1 <= $p || $2 <= $r || $3 != $t || $1 != int($2 * 100 / $3); ($p, $r) = ($1, $2) }
    exit !($ok && $p == 100 && $r == $t)' "$TOTAL" "$E2E_TMP/pct"
ok $? "percentages and row counts rise, agree with each other and end at 100% of $TOTAL rows"
like "$RUN_OUT" "join: installed version $HEAD: $TOTAL rows, [0-9.]+ MiB received \\([0-9.]+ MiB uncompressed\\) in [0-9.]+ s" \
    "a closing line: version, rows, bytes and time"
like "$RUN_OUT" "received 0 versions; now at version $HEAD" "the sync after the snapshot had nothing left to replay"
like "$(hub_log_since "$LOG0")" "site fresh: sent a snapshot of version $HEAD: $TOTAL rows" "hub log: one snapshot"
unlike "$(hub_log_since "$LOG0")" "site fresh: sent [0-9]+ versions" "hub log: no version replayed to fresh"
n_chunks=$(hub_log_since "$LOG0" | sed -n 's/.*site fresh: sent a snapshot.* (\([0-9]*\) compressed, \([0-9]*\) frames).*/\2/p')
[ "${n_chunks:-0}" -ge 2 ] && pass "the snapshot came in $n_chunks frames (streamed, not one buffer)" ||
    fail "the snapshot came in 2 or more frames (got '${n_chunks:-}')"

# ---- what the new replica holds --------------------------------------------------------
replica_matches_hub "fresh's tables equal hub.db's (sqldiff)" fresh
for t in $REPL_TABLES; do
    d=$(sq "$F" "ATTACH '$HUB_DIR/hub.db' AS h;
        SELECT (SELECT count(*) FROM (SELECT * FROM \"_empact_base_$t\" EXCEPT SELECT * FROM h.\"$t\")) +
               (SELECT count(*) FROM (SELECT * FROM h.\"$t\" EXCEPT SELECT * FROM \"_empact_base_$t\"))")
    is "$d" 0 "fresh's base copy of $t equals hub.db's $t"
done
is "$(site_sql fresh 'PRAGMA integrity_check')" ok "integrity_check of fresh: ok"
is "$(status_get fresh 'pending changes')" 0 "fresh: no pending changes (the snapshot is not a local edit)"
is "$(status_json fresh synced_version)" "$HEAD" "fresh: status says version $HEAD"
is "$(status_json fresh dataset)" "$(hub_sql "SELECT tree_id FROM _empact_version WHERE seq = $HEAD")" \
    "fresh: dataset hash = the tree of version $HEAD"
is "$(file_mode "$F")" 600 "fresh.db is mode 0600"
[ ! -e "$F.joining" ] && pass "no fresh.db.joining left" || fail "no fresh.db.joining left"

# ---- it syncs on, both ways ------------------------------------------------------------
site_sql fresh "UPDATE resource SET summary = 'edited at fresh' WHERE id = 'boot-0000001';
                INSERT INTO resource (id, title) VALUES ('fresh-1', 'From the new site')" ||
    fail "edit fresh"
site_sync fresh "fresh syncs its first edits"
site_sync seed "seed syncs"
is "$(site_sql seed "SELECT summary FROM resource WHERE id = 'boot-0000001'")" "edited at fresh" \
    "seed has fresh's update"
is "$(site_sql seed "SELECT title FROM resource WHERE id = 'fresh-1'")" "From the new site" \
    "seed has fresh's insert"
site_sync fresh "fresh syncs again"
replica_matches_hub "fresh equals the hub after syncing on" fresh
replica_matches_hub "seed equals the hub" seed

# ---- a join killed mid-snapshot leaves nothing behind, and the next one works ----------
site_add late || give_up "add-site late"
L=$(site_db late)
TP="$E2E_TMP/late.tp"
# count the test points of a join to the first snapshot chunk, on a probe site
site_add probe || give_up "add-site probe"
EMPACT_TESTPOINT_LOG=$TP run "$EMPACT" join "$(site_db probe)" "$(site_join_file probe)"
is "$RUN_RC" 0 "a probe join with the test point log: 0"
K=$(grep -n ' snapshot chunk applied$' "$TP" | head -n 1 | cut -d: -f1)
[ -n "$K" ] && pass "the first 'snapshot chunk applied' is test point $K" ||
    { fail "a 'snapshot chunk applied' test point"; diag "$(cat "$TP")"; K=1; }
EMPACT_KILL_AFTER=$K run "$EMPACT" join "$L" "$(site_join_file late)" 2>/dev/null # no "Killed" notice
is "$RUN_RC" 137 "join killed (SIGKILL) after the first snapshot chunk: 137"
[ ! -e "$L" ] && pass "no late.db after the killed join" || fail "no late.db after the killed join"
KT=$(grep -n ' snapshot installed$' "$TP" | head -n 1 | cut -d: -f1)
EMPACT_KILL_AFTER=$KT run "$EMPACT" join "$L" "$(site_join_file late)" 2>/dev/null
is "$RUN_RC" 137 "join killed after the snapshot was installed, before the first sync ended: 137"
[ ! -e "$L" ] && pass "still no late.db" || fail "still no late.db"
expect_rc 0 "the next join of late: 0" "$EMPACT" join "$L" "$(site_join_file late)"
like "$RUN_OUT" "join: installed version" "... from a snapshot"
[ ! -e "$L.joining" ] && pass "no late.db.joining left" || fail "no late.db.joining left"
replica_matches_hub "late equals the hub" late
is "$(site_sql late 'PRAGMA integrity_check')" ok "integrity_check of late: ok"

# ---- on a terminal: a bar redrawn in place ---------------------------------------------
if command -v script >/dev/null 2>&1; then
    site_add tty || give_up "add-site tty"
    TOTAL=$(hub_rows)
    run script -qec "$EMPACT join $(site_db tty) $(site_join_file tty)" /dev/null
    is "$RUN_RC" 0 "join on a pseudo-terminal (script): 0"
    like "$RUN_OUT" $'\r''join: \[#+ *\] +100%  '"$TOTAL/$TOTAL"' rows  [0-9.]+ MiB' \
        "a progress bar redrawn with carriage returns, ending at 100% and $TOTAL/$TOTAL rows"
    unlike "$RUN_OUT" 'join: [0-9]+%: ' "no plain progress lines on a terminal"
else
    skip "script(1) not installed: no pseudo-terminal check"
    skip "script(1) not installed"
    skip "script(1) not installed"
fi

# ---- the hub --------------------------------------------------------------------------
like "$(hub_log)" "sent a snapshot of version" "hub logged every snapshot"
unlike "$(hub_log)" "AddressSanitizer|runtime error" "no sanitizer report in the hub log"
stop_hub

# ---- a chunk announcing more rows than it holds is refused ------------------------------
# (the site counts the rows as it applies them; the whole join rolls back)
EMPACT_SNAP_EXTRA_ROWS=1 start_hub "$HUB_DIR"
site_add liar || give_up "add-site liar"
expect_rc 75 "a join whose snapshot chunk announces one row too many fails (75)" \
    "$EMPACT" join "$(site_db liar)" "$(site_join_file liar)"
like "$RUN_ERR" "a snapshot chunk holds [0-9]+ rows, not the [0-9]+ announced" "... and says so"
[ ! -e "$(site_db liar)" ] && [ ! -e "$(site_db liar).joining" ] && pass "no liar.db left" ||
    fail "no liar.db left"
stop_hub
done_testing
