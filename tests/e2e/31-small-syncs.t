#!/usr/bin/env bash
# 31-small-syncs.t - what a small sync carries.
#  - A push the hub makes the next version as sent comes back as OWN_VERSION
#    (no changeset): the site applies its own outbox to base, and its dataset
#    hash still equals the hub's tree.  A push that lost a conflict, or one
#    with another site's version in between, is pulled in full.
#  - `empact-hub train-dict` trains a zstd dictionary from the hub's rows; each
#    site fetches it once and from then on compresses with it: the same edit
#    costs fewer frame bytes; a newer dictionary replaces the site's at its next
#    sync; too few rows is a clear error.  Every replica stays equal to the hub.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
site_sync toronto "toronto learns of ottawa's registration"

head_tree() { hub_git rev-parse 'HEAD^{tree}'; }
base_tree() { site_sql "$1" "SELECT value FROM _empact_meta WHERE key = 'base_tree'"; }

# ---- a hub with no rows cannot train ------------------------------------------------
expect_rc 65 "train-dict on a hub with a handful of rows exits 65" "$EMPACT_HUB" train-dict "$HUB_DIR"
like "$RUN_ERR" 'a dictionary needs at least 100' "... and says how many rows it needs"
is "$(hub_sql "SELECT count(*) FROM _empact_dict")" 0 "... and stores nothing"
expect_rc 64 "train-dict --size 10 is a usage error" "$EMPACT_HUB" train-dict "$HUB_DIR" --size 10

# ---- own versions ---------------------------------------------------------------------
ok_cmd "toronto inserts 300 resources" sq "$(site_db toronto)" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO resource(id, title, summary, kind, url, added_by_site)
SELECT printf('00000000-0000-4000-8000-%012d', i), 'Community toolkit ' || i,
       'How to run an engagement session, part ' || i, 'toolkit',
       'https://empact.example.org/resources/' || i, 'toronto' FROM n;"
sync_json toronto; ok $? "toronto syncs the 300 rows"
is "$(field pushed) $(field own_versions)" "300 1" \
    "its push was the next version and came back as its own (no changeset pulled)"
TOR_RX=$(field frame_bytes_received)
is "$(base_tree toronto)" "$(head_tree)" "toronto's dataset hash equals the hub's tree at HEAD"
like "$(hub_log)" 'site toronto: sent 1 versions \([0-9]+\.\.[0-9]+; 1 its own, without changeset\)' \
    "the hub logs the version it sent without its changeset"
sync_json ottawa; ok $? "ottawa pulls them"
is "$(field pulled) $(field own_versions)" "1 0" "ottawa pulls toronto's version in full"
# ottawa's pull carries the 300 rows; toronto's carried none of them
[ "$(field frame_bytes_received)" -gt $((5 * TOR_RX)) ]
ok $? "... $(field frame_bytes_received) frame bytes received, toronto only $TOR_RX"

R1=00000000-0000-4000-8000-000000000001
R2=00000000-0000-4000-8000-000000000002
# a conflict: ottawa edits a summary, toronto edits it earlier; ottawa syncs first
sq "$(site_db toronto)" "UPDATE resource SET summary = 'toronto wrote this first' WHERE id = '$R1'"
sleep 0.05
sq "$(site_db ottawa)" "UPDATE resource SET summary = 'ottawa wrote this later' WHERE id = '$R1'"
sync_json ottawa; ok $? "ottawa syncs its later edit"
is "$(field own_versions)" 1 "... as its own version"
sync_json toronto; ok $? "toronto syncs its older edit of the same column"
like "$SYNC_OUT" '1 lost in conflicts' "... which loses"
is "$(field own_versions)" 0 "a push that lost something is pulled in full, not taken as sent"
is "$(site_sql toronto "SELECT summary FROM resource WHERE id = '$R1'")" "ottawa wrote this later" \
    "toronto holds the winning value"
# another site's version between base and the push
sq "$(site_db ottawa)" "UPDATE resource SET title = 'retitled by ottawa' WHERE id = '$R2'"
site_sync ottawa "ottawa pushes a version toronto has not seen"
sq "$(site_db toronto)" "UPDATE resource SET kind = 'guide' WHERE id = '$R2'"
sync_json toronto; ok $? "toronto pushes on an older base"
is "$(field pulled) $(field own_versions)" "2 0" \
    "with ottawa's version in between, toronto pulls both versions in full"
is "$(site_sql toronto "SELECT title || '|' || kind FROM resource WHERE id = '$R2'")" \
    "retitled by ottawa|guide" "... and holds both edits"
# inserts, an update and a delete in one push, as sent
sq "$(site_db toronto)" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'new one');
    UPDATE resource SET oht_block = 3 WHERE id = '00000000-0000-4000-8000-000000000003';
    DELETE FROM resource WHERE id = '00000000-0000-4000-8000-000000000004'"
sync_json toronto; ok $? "toronto pushes an insert, an update and a delete"
is "$(field pushed) $(field own_versions)" "3 1" "... made the next version as sent"
is "$(base_tree toronto)" "$(head_tree)" "toronto's dataset hash equals the hub's tree at HEAD"
site_sync ottawa "ottawa catches up"
assert_converged toronto ottawa

# ---- the dictionary ---------------------------------------------------------------------
# small_edit ID N: the same kind of one-row edit each time (same lengths)
small_edit() {
    sq "$(site_db "$1")" "UPDATE resource SET summary = 'Revised guidance for session $2, reviewed by the site team'
        WHERE id = '00000000-0000-4000-8000-0000000001$2'"
}
small_edit toronto 10
sync_json toronto; ok $? "a one-row sync without a dictionary"
is "$(field dictionary)" 0 "... uses none"
PLAIN=$(field frame_bytes_sent)

run "$EMPACT_HUB" train-dict "$HUB_DIR"
is "$RUN_RC" 0 "train-dict with 300 rows exits 0"
like "$RUN_OUT" '^trained dictionary [0-9]+: [0-9]+ bytes from [0-9]+ rows of [0-9]+ tables' \
    "... and says what it trained"
D1=$(hub_sql "SELECT dict_id FROM _empact_dict ORDER BY seq DESC LIMIT 1")
like "$RUN_OUT" "dictionary $D1:" "... the id stored in hub.db"
is "$(hub_sql "SELECT count(*) FROM _empact_dict")" 1 "hub.db holds one dictionary"

small_edit toronto 11
sync_json toronto; ok $? "toronto's next sync"
like "$SYNC_OUT" "fetched the hub's compression dictionary $D1" "... fetches the dictionary"
is "$(field dictionary)" "$D1" "... and uses it"
is "$(site_sql toronto "SELECT length(value) FROM _empact_meta WHERE key = 'zdict'")" \
    "$(hub_sql "SELECT length(bytes) FROM _empact_dict WHERE dict_id = $D1")" \
    "the replica keeps the dictionary's bytes"
like "$(hub_log)" "site toronto: sent dictionary $D1" "the hub logs sending it"
small_edit toronto 12
sync_json toronto; ok $? "a one-row sync with the dictionary"
unlike "$SYNC_OUT" 'fetched' "... fetches nothing"
WITH=$(field frame_bytes_sent)
[ "$WITH" -lt "$PLAIN" ]; ok $? "the same one-row edit sends fewer frame bytes with the dictionary ($WITH < $PLAIN)"
[ $((WITH + $(field frame_bytes_received))) -le 1024 ]; ok $? "... at most 1 KB of frames both ways"

sync_json ottawa; ok $? "ottawa syncs"
like "$SYNC_OUT" "fetched the hub's compression dictionary $D1" "... and fetches the dictionary too"
is "$(field pulled)" 3 "... pulling toronto's three versions compressed with it"

run "$EMPACT_HUB" train-dict "$HUB_DIR" --size 4096
is "$RUN_RC" 0 "a second, smaller dictionary"
D2=$(hub_sql "SELECT dict_id FROM _empact_dict ORDER BY seq DESC LIMIT 1")
isnt "$D2" "$D1" "... with its own id"
small_edit toronto 13
sync_json toronto; ok $? "toronto syncs"
like "$SYNC_OUT" "fetched the hub's compression dictionary $D2" "... and moves to the newer dictionary"
is "$(field dictionary)" "$D2" "... which it uses"
[ "$(site_sql toronto "SELECT length(value) FROM _empact_meta WHERE key = 'zdict'")" -le 4096 ]
ok $? "the replica's dictionary is the new one (at most 4096 bytes)"

# a dictionary the hub no longer has (hub.db restored without it): sync without one
hub_sql "DELETE FROM _empact_dict"
small_edit ottawa 14
sync_json ottawa; ok $? "ottawa syncs with a dictionary the hub no longer has"
is "$(field dictionary)" 0 "... and compresses without one"
sync_json toronto; ok $? "toronto too"
assert_converged toronto ottawa
is "$(base_tree ottawa)" "$(head_tree)" "ottawa's dataset hash equals the hub's tree at HEAD"
expect_rc 0 "empact-hub verify: hub.db and history.git agree" "$EMPACT_HUB" verify "$HUB_DIR"

stop_hub
done_testing
