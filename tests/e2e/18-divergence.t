#!/usr/bin/env bash
# A site whose base copy no longer matches the hub (damaged by hand here) must
# not go on silently: the sync says so, rebuilds base from the hub, keeps the
# coordinator's pending edits and sends them.
. "$(dirname "$0")/lib.sh"
setup_hub_and_sites toronto ottawa
T=$(site_db toronto); O=$(site_db ottawa)
R1=$(new_uuid); R2=$(new_uuid); R3=$(new_uuid)
ok_cmd "toronto adds three resources" sq "$T" \
    "INSERT INTO resource(id, title) VALUES ('$R1', 'one'), ('$R2', 'two'), ('$R3', 'three')"
site_sync toronto "toronto syncs"
site_sync ottawa "ottawa syncs"

# 1. base damaged so that the hash no longer matches
ok_cmd "damage toronto's base copy of one row" sq "$T" \
    "UPDATE _empact_base_resource SET title = 'damaged' WHERE id = '$R2'"
ok_cmd "toronto edits another row meanwhile" sq "$T" \
    "UPDATE resource SET title = 'one, edited' WHERE id = '$R1'"
# A sync rehashes only the rows it changes (the tree store holds the rest);
# `empact verify` rehashes every row, offline.
TREE_BEFORE=$(sq "$T" "SELECT value FROM _empact_meta WHERE key = 'base_tree'")
expect_rc 65 "empact verify finds the damaged row (exit 65)" "$EMPACT" verify "$T"
like "$RUN_ERR" "changed outside a sync" "... says the base copy was changed outside a sync"
like "$RUN_ERR" "rebuilds it from the hub" "... and what the next sync does about it"
is "$(sq "$T" "SELECT count(*) FROM _empact_tree")" 0 "... and empties the tree store"
isnt "$(sq "$T" "SELECT value FROM _empact_meta WHERE key = 'base_tree'")" "$TREE_BEFORE" \
    "... and no longer claims the proved hash"
run "$EMPACT" sync "$T"
is "$RUN_RC" 0 "the sync still succeeds"
like "$RUN_ERR" "diverged" "... and says the replica had diverged"
like "$RUN_OUT" "rebuilt from the hub" "... and that it was rebuilt"
is "$(hub_sql "SELECT title FROM resource WHERE id = '$R1'")" "one, edited" \
    "the pending edit reached the hub"
is "$(sq "$T" "SELECT title FROM _empact_base_resource WHERE id = '$R2'")" "two" \
    "the damaged base row was rebuilt from the hub"

# 2. base damaged so that a pulled version cannot apply
ok_cmd "ottawa updates a row" sq "$O" "UPDATE resource SET title = 'three, by ottawa' WHERE id = '$R3'"
site_sync ottawa "ottawa pushes"
ok_cmd "delete that row from toronto's base by hand" sq "$T" \
    "DELETE FROM _empact_base_resource WHERE id = '$R3'"
ok_cmd "toronto adds a row meanwhile" sq "$T" \
    "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'four')"
run "$EMPACT" sync "$T"
is "$RUN_RC" 0 "the sync succeeds"
like "$RUN_ERR" "diverge" "... after reporting that a hub version did not apply"
is "$(sq "$T" "SELECT title FROM resource WHERE id = '$R3'")" "three, by ottawa" \
    "toronto now holds ottawa's update"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title = 'four'")" 1 "toronto's new row is on the hub once"

site_sync ottawa "ottawa syncs again"
site_sync toronto "toronto syncs again"
ok_cmd "empact verify: toronto's base copy is the hub's again" "$EMPACT" verify "$T"
like "$RUN_OUT" "hashes to $(hub_git rev-parse 'HEAD^{tree}'), the hub's dataset hash" \
    "... the hash it prints is the hub's tree at HEAD"
for site in toronto ottawa; do
    db=$(site_db "$site")
    is "$(sq "$db" "PRAGMA integrity_check")" ok "$site: integrity_check ok"
    for t in resource metric_value metric site; do
        is "$(sqldiff --table "$t" "$HUB_DIR/hub.db" "$db")" "" "$site: $t equals the hub's"
    done
    is "$(status_get "$site" 'pending changes')" 0 "$site: nothing pending"
done
done_testing
