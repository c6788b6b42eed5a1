#!/usr/bin/env bash
# 10-concurrent.t - three sites sync at the same time, repeatedly, while the hub
# serves them all; then one big push (5000 rows).  Every sync succeeds, every
# push that changed something is exactly one version and one commit, and all
# replicas converge with the hub.  Then three pushes batched by the hub's
# writer (group commit): three versions, three commits, fewer packs.
. "$(dirname "$0")/lib.sh"

SITES="alpha beta gamma"
ROUNDS=5
setup_hub_and_sites $SITES
v0=$(hub_max_seq)
is "$v0" 4 "hub at version 4 (catalogue + three sites)"

# One site's loop: ROUNDS x (insert 20 resources, update its metric value, sync).
# Runs in the background: results go to files, not TAP.
site_loop() {
    local id=$1 db r
    db=$(site_db "$id")
    for r in $(seq 1 "$ROUNDS"); do
        sq "$db" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
INSERT INTO resource(id, title, added_by_site) SELECT lower(hex(randomblob(16))), '$id round $r item ' || i, '$id' FROM n;
INSERT OR REPLACE INTO metric_value(site_id, metric, period, value)
  SELECT '$id', code, '2026-Q3', $r FROM metric ORDER BY code LIMIT 1;" \
            >>"$E2E_TMP/$id.loop.log" 2>&1 || echo "round $r: sqlite3 failed" >>"$E2E_TMP/$id.loop.fail"
        timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" sync "$db" >>"$E2E_TMP/$id.loop.log" 2>&1 ||
            echo "round $r: empact sync exit $?" >>"$E2E_TMP/$id.loop.fail"
    done
}

pids=""
for id in $SITES; do
    site_loop "$id" &
    pids="$pids $!"
done
for p in $pids; do wait_bounded "$p" $((ROUNDS * E2E_TIMEOUT + 30)); done
for id in $SITES; do
    fails=$(cat "$E2E_TMP/$id.loop.fail" 2>/dev/null)
    is "$fails" "" "$id: $ROUNDS concurrent rounds of edit + sync all succeeded"
    [ -n "$fails" ] && diag "$(tail -n 20 "$E2E_TMP/$id.loop.log")"
    check_sanitizer_file "$E2E_TMP/$id.loop.log" "$id's sync loop"
done

expected=$((v0 + 3 * ROUNDS))
is "$(hub_max_seq)" "$expected" "one version per push: $v0 + 3 x $ROUNDS = $expected"
for id in $SITES; do
    is "$(hub_git log --format=%an HEAD 2>&1 | grep -cx "$id")" "$ROUNDS" "$id authored $ROUNDS commits"
done
is "$(hub_sql "SELECT count(*) FROM resource")" $((3 * ROUNDS * 20)) "the hub holds all $((3 * ROUNDS * 20)) resources"

# Everyone catches up, then all replicas equal the hub.
for id in $SITES; do site_sync "$id" "$id catches up"; done
is "$(hub_max_seq)" "$expected" "catching up made no version"
assert_converged $SITES
for id in $SITES; do
    is "$(sq "$(site_db "$id")" "PRAGMA integrity_check")" ok "$id replica integrity_check ok"
done

# ---- one big push -------------------------------------------------------------------------
ok_cmd "alpha inserts 5000 resources in one transaction" sq "$(site_db alpha)" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO resource(id, title, summary, kind, oht_block)
SELECT lower(hex(randomblob(16))), 'Bulk resource ' || i, 'Imported from the 2026 library, item ' || i, 'report', 1 + i % 8 FROM n;"
is "$(status_get alpha 'pending changes')" 5000 "5000 pending changes"
t0=$(date +%s)
site_sync alpha "alpha pushes 5000 rows in one sync"
t1=$(date +%s)
diag "5000-row sync took $((t1 - t0)) s: $RUN_OUT"
is "$(hub_max_seq)" $((expected + 1)) "one version for the big push"
is "$(hub_sql "SELECT count(*) FROM resource")" $((3 * ROUNDS * 20 + 5000)) "the hub holds them all"
for id in beta gamma; do site_sync "$id" "$id pulls the big version"; done
assert_converged $SITES
n_rows=0
for t in $REPL_TABLES; do n_rows=$((n_rows + $(hub_sql "SELECT count(*) FROM $t"))); done
is "$(hub_git ls-tree -r --name-only HEAD 2>&1 | wc -l)" "$n_rows" "git tree: one file per row ($n_rows)"
ok_cmd "git fsck --strict is clean" git -C "$HUB_DIR/history.git" fsck --strict

# ---- group commit ----------------------------------------------------------------------------
# Pushes that wait for the hub's writer are applied together, each its own
# version, in one transaction with one pack.  A test build's hub holds each
# batch open EMPACT_BATCH_WAIT_MS before it takes the queue, so the three
# pushes below meet in one batch.
stop_hub
EMPACT_BATCH_WAIT_MS=300 start_hub "$HUB_DIR" || BAIL_OUT "the hub did not start again"
sites_follow_hub $SITES
packs0=$(ls "$HUB_DIR/history.git/objects/pack/" | grep -c '\.pack$')
v1=$(hub_max_seq)
pids=""
for id in $SITES; do
    sq "$(site_db "$id")" "INSERT INTO resource(id, title, added_by_site) VALUES (lower(hex(randomblob(16))), '$id batched', '$id')"
    (timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" sync "$(site_db "$id")" >"$E2E_TMP/$id.batch.log" 2>&1
     echo $? >"$E2E_TMP/$id.batch.rc") &
    pids="$pids $!"
done
for p in $pids; do wait_bounded "$p" $((E2E_TIMEOUT + 30)); done
for id in $SITES; do
    is "$(cat "$E2E_TMP/$id.batch.rc")" 0 "$id: its push, batched with the others', succeeded" ||
        diag "$(cat "$E2E_TMP/$id.batch.log")"
done
is "$(hub_max_seq)" $((v1 + 3)) "three pushes, three versions"
packs1=$(ls "$HUB_DIR/history.git/objects/pack/" | grep -c '\.pack$')
ok $([ $((packs1 - packs0)) -ge 1 ] && [ $((packs1 - packs0)) -lt 3 ]; echo $?) \
    "the three versions came in fewer packs than versions ($((packs1 - packs0)) new)"
is "$(hub_git rev-list --count HEAD 2>&1)" "$(hub_max_seq)" "still one commit per version"
for k in 0 1 2; do
    seq=$((v1 + 3 - k))
    is "$(hub_git rev-parse "HEAD~$k" 2>&1)" "$(hub_sql "SELECT commit_id FROM _empact_version WHERE seq = $seq")" \
        "version $seq is HEAD~$k, its own commit"
done
ok_cmd "git fsck --strict is clean after a batch" git -C "$HUB_DIR/history.git" fsck --strict
for id in $SITES; do site_sync "$id" "$id catches up after the batch"; done
assert_converged $SITES

stop_hub
done_testing
