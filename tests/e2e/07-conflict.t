#!/usr/bin/env bash
# 07-conflict.t - two sites change the same column of the same resource offline.
# Expected, deterministic outcome: for a same-row, same-column conflict the later
# push wins (here ottawa, which pushes second).  After everyone syncs again, both
# replicas and the hub converge and both replicas pass integrity_check.
# A delete racing an update must converge too (the outcome is reported, not fixed here).
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
U=$RANDOM$$
R=$(new_uuid) D=$(new_uuid)
ok_cmd "toronto creates two shared resources" sq "$(site_db toronto)" "
INSERT INTO resource(id, title, summary) VALUES ('$R', 'Original title $U', 'original summary'),
                                               ('$D', 'Doomed or kept $U', 'original');"
site_sync toronto "toronto pushes them"
site_sync ottawa "ottawa pulls them"
is "$(sq "$(site_db ottawa)" "SELECT title FROM resource WHERE id='$R'")" "Original title $U" "ottawa has the row"
v_before=$(hub_max_seq)

# ---- same row, same column, both offline -------------------------------------------
ok_cmd "toronto changes the title offline" sq "$(site_db toronto)" \
    "UPDATE resource SET title = 'Toronto title $U' WHERE id = '$R'"
ok_cmd "ottawa changes the same title offline" sq "$(site_db ottawa)" \
    "UPDATE resource SET title = 'Ottawa title $U' WHERE id = '$R'"
# ... and a delete racing an update on another row.
ok_cmd "toronto deletes the second row offline" sq "$(site_db toronto)" "DELETE FROM resource WHERE id = '$D'"
ok_cmd "ottawa updates the second row offline" sq "$(site_db ottawa)" \
    "UPDATE resource SET summary = 'ottawa edit' WHERE id = '$D'"

site_sync toronto "toronto (A) syncs first"
is "$(hub_sql "SELECT title FROM resource WHERE id='$R'")" "Toronto title $U" "the hub took toronto's title"
site_sync ottawa "ottawa (B) syncs second: a conflict is not an error"
diag "ottawa's sync said: $RUN_OUT"
is "$(hub_sql "SELECT title FROM resource WHERE id='$R'")" "Ottawa title $U" \
    "same-row conflict: the later push (ottawa) wins on the hub"
is "$(sq "$(site_db ottawa)" "SELECT title FROM resource WHERE id='$R'")" "Ottawa title $U" "ottawa keeps its title"
site_sync toronto "toronto syncs again"
is "$(sq "$(site_db toronto)" "SELECT title FROM resource WHERE id='$R'")" "Ottawa title $U" "toronto now has ottawa's title"
site_sync ottawa "ottawa syncs again"

assert_converged toronto ottawa
for id in toronto ottawa; do
    is "$(sq "$(site_db "$id")" "PRAGMA integrity_check")" ok "$id replica integrity_check ok"
    is "$(status_get "$id" 'pending changes')" 0 "$id: pending changes 0"
    is "$(status_get "$id" 'synced version')" "$(hub_max_seq)" "$id: synced version = hub max(seq)"
done
d_state=$(hub_sql "SELECT CASE WHEN count(*) = 0 THEN 'deleted' ELSE 'kept: ' || max(summary) END FROM resource WHERE id='$D'")
diag "delete (toronto, first) vs update (ottawa, later) ended as: $d_state"
like "$d_state" '^(deleted|kept: ottawa edit)$' "delete vs update: one of the two edits wins as a whole"
v_after=$(hub_max_seq)
[ "$v_after" -gt "$v_before" ] && [ "$v_after" -le $((v_before + 2)) ]
ok $? "the two conflicting pushes made at most two versions ($v_before -> $v_after)"
ok_cmd "git fsck --strict is clean" git -C "$HUB_DIR/history.git" fsck --strict
is "$(hub_git rev-list --count HEAD 2>&1)" "$v_after" "still one commit per version"

# The same conflict a second time, the other way round: the later push wins again.
ok_cmd "ottawa changes the title offline" sq "$(site_db ottawa)" \
    "UPDATE resource SET title = 'Ottawa again $U' WHERE id = '$R'"
ok_cmd "toronto changes the same title offline" sq "$(site_db toronto)" \
    "UPDATE resource SET title = 'Toronto again $U' WHERE id = '$R'"
site_sync ottawa "ottawa syncs first this time"
site_sync toronto "toronto syncs second"
site_sync ottawa "ottawa syncs again"
is "$(hub_sql "SELECT title FROM resource WHERE id='$R'")" "Toronto again $U" "the later push (toronto) wins this time"
assert_converged toronto ottawa

stop_hub
done_testing
