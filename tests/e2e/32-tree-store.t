#!/usr/bin/env bash
# 32-tree-store.t - a site proves its dataset hash from what changed.
#  - The replica's tree store (_empact_tree) holds the git trees of the hash the
#    site last proved, one row per directory: after every sync it is exactly
#    the hub's tree at that version (checked against `git ls-tree -r -d`).
#  - A sync rehashes only the shards of the keys it touched ("touched" in the
#    JSON log), a no-op keeps the proof ("kept"); a store that is damaged,
#    missing or out of step is only a cache: the sync hashes every row
#    ("full"), succeeds, and rewrites it.
#  - `empact verify` hashes every row offline and prints the hub's tree.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
site_sync toronto "toronto learns of ottawa's registration"

# store_is_hub_tree ID DESC: the site's store is the hub's tree at HEAD,
# directory for directory (the root as path "").
store_is_hub_tree() {
    local want got
    want=$( { printf ' %s\n' "$(hub_git rev-parse 'HEAD^{tree}')"
              hub_git ls-tree -r -d HEAD | awk -F'\t' '{split($1, a, " "); print $2 " " a[3]}'; } | sort)
    got=$(site_sql "$1" "SELECT path || ' ' || lower(hex(oid)) FROM _empact_tree" | sort)
    [ -n "$got" ] && [ "$got" = "$want" ]
    ok $? "$2" || diag "store of $1:" "$(printf '%s\n' "$got" | head -n 5)" "hub:" \
        "$(printf '%s\n' "$want" | head -n 5)"
}
add_rows() {
    sq "$(site_db "$1")" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
INSERT INTO resource(id, title, summary, kind, added_by_site)
SELECT printf('00000000-0000-4000-8000-%s%09d', '$3', i), 'Toolkit ' || i, 'Part ' || i,
       'toolkit', '$1' FROM n;"
}

# ---- the store follows the hub -----------------------------------------------------------
store_is_hub_tree toronto "after join and sync, toronto's store is the hub's tree at HEAD"
add_rows toronto 300 100
sync_json toronto; ok $? "toronto syncs 300 new resources"
is "$(field base_hash)" touched "... proving its hash from the touched keys' shards"
store_is_hub_tree toronto "... and its store is the hub's tree at HEAD"
sync_json ottawa; ok $? "ottawa pulls them"
is "$(field pulled) $(field base_hash)" "1 touched" "... one version, hashed from the touched shards"
store_is_hub_tree ottawa "... and its store is the hub's tree at HEAD"
sync_json ottawa; ok $? "ottawa syncs with nothing new"
is "$(field base_hash)" kept "... and keeps its proof (nothing applied)"
[ "$(hub_git ls-tree -r -d HEAD | grep -c '^040000 tree [0-9a-f]*	resource/../..$')" -gt 250 ]
ok $? "the 300 rows spread over more than 250 leaf shard directories"

# deletes and updates, from both sites
sq "$(site_db toronto)" "DELETE FROM resource WHERE CAST(substr(id, -9) AS INTEGER) BETWEEN 1 AND 9"
sq "$(site_db ottawa)" "UPDATE resource SET title = 'Renamed by ottawa'
    WHERE CAST(substr(id, -9) AS INTEGER) BETWEEN 10 AND 19"
sync_json toronto && sync_json ottawa && sync_json toronto
ok $? "toronto deletes 9 rows, ottawa renames 10; both sync"
is "$(field base_hash)" touched "... toronto proves the result from the touched shards"
store_is_hub_tree toronto "... its store is the hub's tree at HEAD"
store_is_hub_tree ottawa "... and so is ottawa's"

# ---- a damaged store is only a cache -----------------------------------------------------
# a row's first-level shard: the first byte of the SHA-256 of its file name (here its id)
# (the first new id whose shard already holds rows)
for i in $(seq 1 100); do
    NEW=$(printf '00000000-0000-4000-8000-200%09d' "$i")
    SHARD=$(printf '%s' "$NEW" | sha256sum | cut -c1-2)
    [ -n "$(hub_git ls-tree HEAD "resource/$SHARD")" ] && break
done
is "$(site_sql ottawa "DELETE FROM _empact_tree WHERE path = 'resource/$SHARD' RETURNING path")" \
    "resource/$SHARD" "ottawa's store loses shard $SHARD, where the next new row goes"
sq "$(site_db toronto)" "INSERT INTO resource(id, title) VALUES ('$NEW', 'In a lost shard')"
sync_json toronto && sync_json ottawa
ok $? "the shard of a new row missing from ottawa's store: the next sync still succeeds"
is "$(field base_hash)" full "... by hashing every row"
store_is_hub_tree ottawa "... and the store is whole again"
add_rows toronto 5 300
sync_json toronto && sync_json ottawa; ok $? "the next pull"
is "$(field base_hash)" touched "... is proved from the touched shards again"

sq "$(site_db ottawa)" "UPDATE _empact_tree SET body = x'00' WHERE path = 'resource'"
add_rows toronto 5 400
sync_json toronto && sync_json ottawa
ok $? "a table tree in ottawa's store that git cannot read: the sync succeeds"
is "$(field base_hash)" full "... by hashing every row"
store_is_hub_tree ottawa "... and the store is the hub's tree again"

sq "$(site_db ottawa)" "UPDATE _empact_tree SET oid = x'$(printf '%040d' 0)' WHERE path = ''"
add_rows toronto 5 500
sync_json toronto && sync_json ottawa
ok $? "a store whose root is not the proved tree: the sync succeeds"
is "$(field base_hash)" full "... by hashing every row"

# a replica made before the tree store
sq "$(site_db ottawa)" "DROP TABLE _empact_tree"
ok_cmd "empact status opens a replica without a tree store" "$EMPACT" status "$(site_db ottawa)"
is "$(site_sql ottawa "SELECT count(*) FROM _empact_tree")" 0 "... and gives it an empty one"
add_rows toronto 5 600
sync_json toronto && sync_json ottawa; ok $? "its next pull"
is "$(field base_hash)" full "... hashes every row and fills the store"
store_is_hub_tree ottawa "... with the hub's tree"

# ---- only replicated tables ----------------------------------------------------------------
in=$(printf "'%s'," $REPL_TABLES)
is "$(site_sql ottawa "SELECT count(*) FROM _empact_tree WHERE path <> '' AND
    (CASE WHEN instr(path, '/') > 0 THEN substr(path, 1, instr(path, '/') - 1) ELSE path END)
    NOT IN (${in%,})")" 0 "the store names replicated tables only (no local table)"

# ---- empact verify -------------------------------------------------------------------------
ok_cmd "empact verify: toronto's base is the hub's" "$EMPACT" verify "$(site_db toronto)"
like "$RUN_OUT" "version $(hub_max_seq) hashes to $(hub_git rev-parse 'HEAD^{tree}')" \
    "... it prints the version and the hub's tree at HEAD"
store_is_hub_tree toronto "... and leaves the store the hub's tree"
ok_cmd "empact verify --help" "$EMPACT" verify --help
like "$RUN_OUT" "usage: empact verify SITE.db" "... prints its usage"
expect_rc 64 "empact verify without a replica is a usage error" "$EMPACT" verify
expect_rc 65 "empact verify of a file that is not a replica exits 65" "$EMPACT" verify "$HUB_DIR/hub.db"

assert_converged toronto ottawa
done_testing
