#!/usr/bin/env bash
# 09-retry-idempotent.t - a push is never applied twice.  We simulate a site
# that crashed after the hub committed its push but before the replica
# committed: the replica is put back (sqlite3 .restore) to its state before
# the sync, so the next sync sends the very same push again.  The hub must
# recognise it (same push id), make no new version, and the site must end up
# converged with nothing pending.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
U=$RANDOM$$
R1=$(new_uuid) R2=$(new_uuid) R3=$(new_uuid)
ok_cmd "toronto adds and edits offline" sq "$T" "
INSERT INTO resource(id, title) VALUES ('$R1', 'Retry one $U'), ('$R2', 'Retry two $U'), ('$R3', 'Retry three $U');
INSERT INTO metric_value(site_id, metric, period, value) SELECT 'toronto', code, '2026-Q3', 1 FROM metric ORDER BY code LIMIT 1;"
ok_cmd "snapshot of toronto's replica before the sync (sqlite3 .backup)" sq "$T" ".backup '$E2E_TMP/before.db'"
is "$(status_get toronto 'pending changes')" 4 "4 pending changes"
v_base=$(status_get toronto 'synced version')

site_sync toronto "toronto pushes (the hub commits it)"
v_push=$(hub_max_seq)
is "$v_push" 4 "the push made version 4"

ok_cmd "ottawa adds a resource" sq "$(site_db ottawa)" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'Ottawa meanwhile $U')"
site_sync ottawa "ottawa pushes meanwhile (version 5)"
v_head=$(hub_max_seq)

# ---- the crash: toronto's replica loses the sync it just made ---------------------------
ok_cmd "put toronto's replica back as it was before its sync (sqlite3 .restore)" sq "$T" ".restore '$E2E_TMP/before.db'"
is "$(status_get toronto 'pending changes')" 4 "toronto shows the same 4 pending changes again"
is "$(status_get toronto 'synced version')" "$v_base" "... and its old synced version ($v_base)"

site_sync toronto "toronto retries the same push"
diag "retry said: $RUN_OUT"
is "$(hub_max_seq)" "$v_head" "the retried push made no new version"
is "$(hub_git rev-list --count HEAD 2>&1)" "$v_head" "... and no new commit"
is "$(hub_git log --format=%an HEAD 2>&1 | grep -c '^toronto$')" 1 "toronto authored exactly one commit"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title LIKE 'Retry % $U'")" 3 "the hub holds each row once"
is "$(status_get toronto 'pending changes')" 0 "toronto: nothing pending"
is "$(status_get toronto 'synced version')" "$v_head" "toronto: synced version = hub head"
is "$(sq "$T" "SELECT count(*) FROM resource WHERE title = 'Ottawa meanwhile $U'")" 1 "toronto pulled ottawa's row"
site_sync ottawa "ottawa syncs"
assert_converged toronto ottawa
ok_cmd "git fsck --strict is clean" git -C "$HUB_DIR/history.git" fsck --strict

# ---- the same, twice in a row, with the hub restarted in between --------------------------
ok_cmd "toronto edits again" sq "$T" "UPDATE resource SET title = 'Retry one, edited $U' WHERE id = '$R1'"
ok_cmd "snapshot" sq "$T" ".backup '$E2E_TMP/before2.db'"
site_sync toronto "toronto pushes the edit"
v2=$(hub_max_seq)
stop_hub
start_hub "$HUB_DIR" || give_up "hub restart"
ok_cmd "point toronto at the new port" sq "$T" "UPDATE _empact_meta SET value='127.0.0.1:$HUB_PORT' WHERE key='hub_address'"
ok_cmd "point ottawa at the new port" sq "$(site_db ottawa)" "UPDATE _empact_meta SET value='127.0.0.1:$HUB_PORT' WHERE key='hub_address'"
for i in 1 2; do
    ok_cmd "restore toronto's pre-sync replica (round $i)" sq "$T" ".restore '$E2E_TMP/before2.db'"
    ok_cmd "point it at the new port" sq "$T" "UPDATE _empact_meta SET value='127.0.0.1:$HUB_PORT' WHERE key='hub_address'"
    site_sync toronto "toronto retries after a hub restart (round $i)"
    is "$(hub_max_seq)" "$v2" "... no new version (round $i)"
done
site_sync ottawa "ottawa syncs"
assert_converged toronto ottawa

stop_hub
done_testing
