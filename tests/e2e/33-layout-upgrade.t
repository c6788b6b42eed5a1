#!/usr/bin/env bash
# 33-layout-upgrade.t - a hub whose history was written with one shard level
# (<table>/<ab>/<row>, before protocol 5) moves to two (<table>/<ab>/<cd>/<row>)
# when it is next opened for writing: one version of its own, the same rows in
# the new tree, no changeset.  Its sites follow at their next sync (the version
# changes no row; they prove it by hashing every row once), `empact-hub
# rebuild` replays the move, and nothing moves twice.
# Needs a test build: EMPACT_TREE_LAYOUT=1 makes binaries write layout 1.
. "$(dirname "$0")/lib.sh"
require_test_hooks

export EMPACT_TREE_LAYOUT=1
setup_hub_and_sites toronto ottawa
PORT0=$HUB_PORT # the sites' bundles name it: every restart serves it again
ok_cmd "toronto adds 60 resources (layout 1)" sq "$(site_db toronto)" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60)
INSERT INTO resource(id, title, kind) SELECT printf('r-%03d', i), 'Resource ' || i, 'guide' FROM n;"
site_sync toronto "toronto syncs"
site_sync ottawa "ottawa syncs"
paths() { hub_git ls-tree -r --name-only HEAD; }
is "$(paths | grep -Evc '^[a-z_]+/[0-9a-f]{2}/[^/]+$')" 0 "the hub's tree has one shard level"
stop_hub
unset EMPACT_TREE_LAYOUT

# ---- the hub moves its history ------------------------------------------------------------
NVER=$(hub_max_seq)
OLD_TREE=$(hub_git rev-parse 'HEAD^{tree}')
start_hub "$HUB_DIR" "$PORT0" || give_up "hub restart"
like "$(hub_log)" "history.git moved to the two-level shard layout in version $((NVER + 1))" \
    "the hub logs that it moved its history, in version $((NVER + 1))"
is "$(hub_max_seq)" $((NVER + 1)) "... one new version"
is "$(hub_sql "SELECT site_id || ' ' || length(changeset) FROM _empact_version WHERE seq = $((NVER + 1))")" \
    "hub 0" "... by the hub, with an empty changeset"
is "$(hub_git log -1 --format='%an %s')" "hub relayout: every row moves to <table>/<ab>/<cd>/<row>" \
    "... committed as the hub's relayout"
is "$(paths | grep -Evc '^[a-z_]+/[0-9a-f]{2}/[0-9a-f]{2}/[^/]+$')" 0 "the tree now has two shard levels"
is "$(hub_git diff -M --name-status HEAD~1 HEAD | grep -vc '^R100')" 0 \
    "git diff -M: every row file was renamed, none changed"
is "$(paths | wc -l)" "$(hub_git ls-tree -r --name-only HEAD~1 | wc -l)" "... and none was added or lost"
isnt "$(hub_git rev-parse 'HEAD^{tree}')" "$OLD_TREE" "the dataset hash changed"
assert_tree_matches_hub "tree2sql.pl reads every row back from the new tree"
expect_rc 0 "empact-hub verify passes" "$EMPACT_HUB" verify "$HUB_DIR"

# ---- sites follow ---------------------------------------------------------------------------
for id in toronto ottawa; do
    sync_json "$id"; ok $? "$id syncs"
    is "$(field pulled) $(field base_hash)" "1 full" "... pulls the relayout and hashes every row once"
    is "$(site_sql "$id" "SELECT value FROM _empact_meta WHERE key = 'base_tree'")" \
        "$(hub_git rev-parse 'HEAD^{tree}')" "... its dataset hash is the hub's new tree"
done
ok_cmd "ottawa edits a resource" sq "$(site_db ottawa)" "UPDATE resource SET title = 'Edited' WHERE id = 'r-007'"
sync_json ottawa; ok $? "ottawa syncs the edit"
is "$(field base_hash)" touched "... proved from the touched shards"
sync_json toronto; ok $? "toronto pulls it"
is "$(field base_hash)" touched "... proved from the touched shards"
is "$(hub_git show "HEAD:resource/$(printf 'r-007' | sha256sum | sed 's|^\(..\)\(..\).*|\1/\2|')/r-007" |
    grep '^title')" 'title: "Edited"' "the edited row is a file at <ab>/<cd> of SHA-256 of its name"

# ---- once only, and rebuild replays it -------------------------------------------------
stop_hub
NVER=$(hub_max_seq)
start_hub "$HUB_DIR" "$PORT0" || give_up "hub restart"
is "$(hub_max_seq)" "$NVER" "a second start moves nothing"
stop_hub
mkdir -p "$E2E_TMP/old"
for f in hub.db hub.db-wal hub.db-shm; do [ -e "$HUB_DIR/$f" ] && mv "$HUB_DIR/$f" "$E2E_TMP/old/"; done
expect_rc 0 "rebuild from a history with both layouts" "$EMPACT_HUB" rebuild "$HUB_DIR" \
    --from "$HUB_DIR/history.git" "$(site_join_file toronto)" "$(site_join_file ottawa)"
like "$RUN_OUT" "$NVER versions" "... replays all $NVER versions"
for t in $REPL_TABLES; do
    is "$(sqldiff --table "$t" "$E2E_TMP/old/hub.db" "$HUB_DIR/hub.db")" "" "rebuilt $t equals the old hub.db's"
done
expect_rc 0 "empact-hub verify passes on the rebuilt hub" "$EMPACT_HUB" verify "$HUB_DIR"
start_hub "$HUB_DIR" "$PORT0" || give_up "hub start after rebuild"
is "$(hub_max_seq)" "$NVER" "the rebuilt hub moves nothing either"
site_sync toronto "toronto syncs with the rebuilt hub"
site_sync ottawa "ottawa syncs with the rebuilt hub"
assert_converged toronto ottawa
stop_hub
done_testing
