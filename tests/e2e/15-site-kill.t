#!/usr/bin/env bash
# 15-site-kill.t - a site killed with SIGKILL at every test point of a sync.
#
# A reference sync (one push, two versions pulled) is run with
# EMPACT_TESTPOINT_LOG to count its test points (N, at least 20).  Then for
# every k = 1..N, in the same situation, toronto makes fresh edits (inserts,
# updates, deletes of resources and of its own metric values, with the sqlite3
# shell), notes them in a ledger, and runs `EMPACT_KILL_AFTER=k empact sync`,
# which must die at its k-th point (exit 137).  Then:
#   - the replica passes integrity_check and still holds every edit;
#   - if the push reached the hub, ottawa deletes a row it inserted and retitles
#     another (so a push re-sent as new would resurrect the row: only the
#     outbox, re-sent under the same push id, keeps the delete);
#   - toronto edits more, and its next plain sync succeeds;
#   - every edit made before and after the kill is on the hub, once: the ledger
#     holds, the replica equals hub.db (sqldiff), each logical push made one
#     version and one push row, no push id appears twice.
# Then two cases of a row in the killed push that toronto edits again after the
# kill: ottawa's later edit of another column must survive toronto's resumed
# sync, and ottawa's delete must stand (toronto's edit logged update-of-deleted).
# And three cases of a row edited only after the kill, whose resumed sync pulls
# ottawa's concurrent change under it: toronto's later update, same-key insert
# and delete win, and ottawa's overwritten value is in the conflict log.
# Requires a build with test hooks (build-test/, build-asan/); skipped otherwise.
. "$(dirname "$0")/lib.sh"
require_test_hooks

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
O=$(site_db ottawa)
exec 3>&2 2>>"$E2E_TMP/job-notices.txt"   # bash reports each killed job on stderr

# ---- seed: rows toronto edits in every round ---------------------------------------------
POOL=()
for i in 1 2 3 4 5 6; do POOL+=("$(new_uuid)"); done
ok_cmd "toronto inserts 6 resources and 2 metric values" sq "$T" "
INSERT INTO resource(id, title, summary, kind) VALUES
  ('${POOL[0]}', 'seed 1', 'seed summary 1', 'guide'), ('${POOL[1]}', 'seed 2', 'seed summary 2', 'report'),
  ('${POOL[2]}', 'seed 3', NULL, NULL), ('${POOL[3]}', 'seed 4', 'seed summary 4', 'toolkit'),
  ('${POOL[4]}', 'seed 5', 'seed summary 5', NULL), ('${POOL[5]}', 'seed 6', NULL, 'video');
INSERT INTO metric_value(site_id, metric, period, value) VALUES
  ('toronto', 'impact_partners', 'live', 0), ('toronto', 'heas_completed', 'r0', 1);"
site_sync toronto "toronto pushes the seed rows"
site_sync ottawa "ottawa pulls them"

# Pool rows in use this round: A retitled, Y edited (and later retitled by
# ottawa), D deleted, B edited and edited back (no change), C edited after the kill.
pick_rows() {
    A=${POOL[0]} Y=${POOL[1]} D=${POOL[2]} B=${POOL[3]} C=${POOL[4]}
    POOL=("${POOL[@]:5}" "$A" "$Y" "$B" "$C")
}

# round_edits R: ottawa adds a version, then toronto's fresh edits for round R, noted in the ledger.
round_edits() {
    local r=$1
    X=$(new_uuid) Z=$(new_uuid) W=$(new_uuid) TMP=$(new_uuid)
    pick_rows
    POOL+=("$Z" "$W")
    sq "$O" "INSERT INTO resource(id, title, added_by_site) VALUES ('$(new_uuid)', 'ottawa note $r', 'ottawa')" &&
        run "$EMPACT" sync "$O" && [ "$RUN_RC" -eq 0 ] ||
        { fail "round $r: ottawa adds a version first"; diag "  exit $RUN_RC"; _diag_run_output; }
    # autocommit statements, one edit time each
    sq "$T" "
INSERT INTO resource(id, title, summary, kind, oht_block, added_by_site)
  VALUES ('$X', 'x $r', 'inserted in round $r', 'toolkit', $((r % 8 + 1)), 'toronto');
INSERT INTO resource(id, title, url, language, population_group)
  VALUES ('$Z', 'z $r', 'https://example.org/z/$r', 'fr', 'older adults'), ('$W', 'w $r', NULL, 'en', NULL);
UPDATE resource SET title = 'a retitled in round $r' WHERE id = '$A';" || fail "round $r: toronto's inserts and update"
    # one explicit transaction: several columns, a delete, an insert undone, an edit undone
    sq "$T" "BEGIN;
UPDATE resource SET summary = 'y summary $r', url = 'https://example.org/y/$r', oht_block = $(((r + 3) % 8 + 1)),
  phm_component = 'monitoring and evaluation', updated_at = '2026-07-$(printf %02d $((r % 28 + 1)))' WHERE id = '$Y';
DELETE FROM resource WHERE id = '$D';
INSERT INTO resource(id, title) VALUES ('$TMP', 'gone before the sync');
DELETE FROM resource WHERE id = '$TMP';
UPDATE resource SET title = title || ' (draft)' WHERE id = '$B';
UPDATE resource SET title = substr(title, 1, length(title) - 8) WHERE id = '$B';
COMMIT;" || fail "round $r: toronto's transaction"
    # own metric values: insert, upsert, update to suppressed, delete
    sq "$T" "
INSERT INTO metric_value(site_id, metric, period, value, updated_at) VALUES ('toronto', 'heas_completed', 'r$r', $r, 'round $r');
INSERT INTO metric_value(site_id, metric, period, value) VALUES ('toronto', 'impact_partners', 'live', $((r * 10)))
  ON CONFLICT (site_id, metric, period) DO UPDATE SET value = excluded.value;
UPDATE metric_value SET value = NULL, suppressed = 1 WHERE site_id = 'toronto' AND metric = 'heas_completed' AND period = 'r$((r - 1))';
DELETE FROM metric_value WHERE site_id = 'toronto' AND metric = 'heas_completed' AND period = 'r$((r - 2))';" ||
        fail "round $r: toronto's metric values"
    ledger_note toronto "$r" "$T" resource:"$X" resource:"$Z" resource:"$W" resource:"$A" resource:"$Y" \
        resource:"$D" resource:"$TMP" resource:"$B" metric_value:"toronto|heas_completed|r$r" \
        metric_value:"toronto|impact_partners|live" metric_value:"toronto|heas_completed|r$((r - 1))" \
        metric_value:"toronto|heas_completed|r$((r - 2))"
}

count_site() { hub_sql "SELECT (SELECT count(*) FROM _empact_version WHERE site_id = '$1') || ' ' ||
                               (SELECT count(*) FROM _empact_push WHERE site_id = '$1')"; }
dup_ids() { hub_sql "SELECT (SELECT count(*) FROM (SELECT 1 FROM _empact_version WHERE push_id IS NOT NULL
                                                   GROUP BY push_id HAVING count(*) > 1)) || ' ' ||
                            (SELECT count(*) FROM (SELECT 1 FROM _empact_push GROUP BY site_id, push_id
                                                   HAVING count(*) > 1))"; }

# round R K: one round; K = 0 is the reference (no kill, points logged to $E2E_TMP/ref.tp).
round() {
    local r=$1 k=$2 tp="$E2E_TMP/kill.$2.tp" name applied before after vd pd want
    local tag="k=$k"
    [ "$k" -eq 0 ] && tag="reference" && tp="$E2E_TMP/ref.tp"
    round_edits "$r"
    before=$(count_site toronto)
    rm -f "$tp"
    if [ "$k" -eq 0 ]; then
        EMPACT_TESTPOINT_LOG=$tp run "$EMPACT" sync "$T"
        is "$RUN_RC" 0 "reference sync (one push, two versions pulled) succeeds" || _diag_run_output
    else
        EMPACT_KILL_AFTER=$k EMPACT_TESTPOINT_LOG=$tp run "$EMPACT" sync "$T"
        name=$(tp_name "$tp" "$k")
        KILLED_AT[$k]=$name
        is "$RUN_RC:$(tail -n 1 "$tp" 2>/dev/null)" "137:$k $(tp_name "$E2E_TMP/ref.tp" "$k")" \
            "$tag: the sync dies by SIGKILL at its point $k ($(tp_name "$E2E_TMP/ref.tp" "$k"))" || _diag_run_output
        is "$(sq "$T" 'PRAGMA integrity_check' 2>&1)" ok "$tag: the replica passes integrity_check"
        ledger_ok "$T" "$tag: the replica still holds every edit made before the kill"
    fi
    # Did the push reach the hub?  Then ottawa deletes x and retitles y.
    run "$EMPACT" sync "$O"
    [ "$RUN_RC" -eq 0 ] || { fail "$tag: ottawa syncs"; _diag_run_output; }
    applied=$(sq "$O" "SELECT count(*) FROM resource WHERE id = '$X'")
    if [ "$k" -ge "${ACK_K:-0}" ] && [ "$k" -ne 0 ]; then
        is "$applied" 1 "$tag: killed after 'push acknowledged': the push is on the hub"
    fi
    if [ "$applied" = 1 ]; then
        sq "$O" "DELETE FROM resource WHERE id = '$X'; UPDATE resource SET title = 'y retitled by ottawa $r' WHERE id = '$Y'" ||
            fail "$tag: ottawa's edits"
        ledger_note ottawa "$r" "$O" resource:"$X" resource:"$Y"
        run "$EMPACT" sync "$O"
        [ "$RUN_RC" -eq 0 ] || { fail "$tag: ottawa pushes its delete of x"; _diag_run_output; }
    fi
    # More edits at toronto after the kill, then a plain sync.
    local q=$(new_uuid)
    sq "$T" "INSERT INTO resource(id, title, kind) VALUES ('$q', 'q $r, after the kill', 'note');
UPDATE resource SET summary = 'c summary $r, after the kill' WHERE id = '$C';
UPDATE metric_value SET value = value + 1 WHERE site_id = 'toronto' AND metric = 'impact_partners' AND period = 'live';" ||
        fail "$tag: toronto edits after the kill"
    ledger_note toronto "$r" "$T" resource:"$q" resource:"$C" metric_value:"toronto|impact_partners|live"
    site_sync toronto "$tag: the next plain sync succeeds"
    ledger_ok "$HUB_DIR/hub.db" "$tag: every edit (toronto's before and after the kill, ottawa's) is on the hub"
    replica_matches_hub "$tag: toronto's resource and metric_value equal hub.db's" toronto resource metric_value
    after=$(count_site toronto)
    vd=$((${after% *} - ${before% *}))
    pd=$((${after#* } - ${before#* }))
    # Killed before the outbox was committed: one push carries both batches.
    want=2
    [ "$k" -ne 0 ] && [ "$k" -lt "$OUTBOX_K" ] && want=1
    is "$vd $pd" "$want $want" "$tag: toronto's versions and push rows grew by $want each (one per logical push)"
    is "$(dup_ids)" "0 0" "$tag: no push id twice in _empact_version, no (site, push id) twice in _empact_push"
    is "$(status_json toronto pending_changes)" 0 "$tag: toronto has nothing pending"
}

declare -A KILLED_AT
OUTBOX_K=0
round 1 0
N=$(wc -l <"$E2E_TMP/ref.tp")
diag "a reference sync reaches $N test points:" "$(paste -sd, "$E2E_TMP/ref.tp" | sed 's/,/, /g')"
ok $([ "$N" -ge 20 ]; echo $?) "the reference sync reaches at least 20 test points ($N)"
# The first "after commit" ends the transaction that stores the outbox.
OUTBOX_K=$(grep -m 1 -n ' after commit$' "$E2E_TMP/ref.tp" | cut -d: -f1)
ACK_K=$(sed -n 's/^\([0-9]*\) push acknowledged$/\1/p' "$E2E_TMP/ref.tp" | head -n 1)
[ -n "$OUTBOX_K" ] && [ -n "$ACK_K" ] || give_up "the reference sync has the points 'after commit' and 'push acknowledged'"
diag "the outbox is committed at point $OUTBOX_K; the push is acknowledged at point $ACK_K"

for ((k = 1; k <= N; k++)); do
    round $((k + 1)) "$k"
done

covered=$(for ((k = 1; k <= N; k++)); do echo "${KILLED_AT[$k]:-}"; done | sort -u | paste -sd, -)
diag "killed at: $covered"
like ",$covered," ",before commit,.*,push acknowledged," "the kills include the first transaction (outbox built) and 'push acknowledged'"

# ---- a row of the killed push, edited again after the kill: another site's later edit of
# a column this site never touched must survive, and another site's delete must stand -------
R=$(new_uuid)
ok_cmd "toronto adds a resource r" sq "$T" "INSERT INTO resource(id, title, summary, url) VALUES ('$R', 'r title', 'r summary', 'https://example.org/r')"
site_sync toronto "toronto pushes r"
site_sync ottawa "ottawa pulls r"
ok_cmd "toronto retitles r" sq "$T" "UPDATE resource SET title = 'r title by toronto' WHERE id = '$R'"
EMPACT_KILL_AFTER=$ACK_K run "$EMPACT" sync "$T"
is "$RUN_RC" 137 "toronto's sync is killed right after 'push acknowledged'"
site_sync ottawa "ottawa pulls toronto's title"
ok_cmd "ottawa changes r's summary" sq "$O" "UPDATE resource SET summary = 'r summary by ottawa' WHERE id = '$R'"
site_sync ottawa "ottawa pushes it"
ok_cmd "toronto changes r's url (its replica still shows the old summary)" sq "$T" "UPDATE resource SET url = 'https://example.org/r/toronto' WHERE id = '$R'"
site_sync toronto "toronto syncs (resumed outbox, then the url)"
is "$(hub_sql "SELECT title || ' | ' || summary || ' | ' || url FROM resource WHERE id = '$R'")" \
    "r title by toronto | r summary by ottawa | https://example.org/r/toronto" \
    "the hub keeps toronto's title and url and ottawa's later summary (toronto never edited the summary)" ||
    diag "conflict log for r: $(hub_sql "SELECT kind || ' ' || col || ' loser ' || loser_site || ' lost ' || lost_value FROM _empact_conflict WHERE row_key = '\"$R\"'" | paste -sd';')"
R2=$(new_uuid)
ok_cmd "toronto adds a resource r2" sq "$T" "INSERT INTO resource(id, title) VALUES ('$R2', 'r2 title')"
site_sync toronto "toronto pushes r2"
site_sync ottawa "ottawa pulls r2"
ok_cmd "toronto retitles r2" sq "$T" "UPDATE resource SET title = 'r2 title by toronto' WHERE id = '$R2'"
EMPACT_KILL_AFTER=$ACK_K run "$EMPACT" sync "$T"
is "$RUN_RC" 137 "toronto's sync is killed right after 'push acknowledged'"
site_sync ottawa "ottawa pulls toronto's title"
ok_cmd "ottawa deletes r2" sq "$O" "DELETE FROM resource WHERE id = '$R2'"
site_sync ottawa "ottawa pushes the delete"
ok_cmd "toronto sets r2's url (its replica still has r2)" sq "$T" "UPDATE resource SET url = 'https://example.org/r2' WHERE id = '$R2'"
site_sync toronto "toronto syncs (resumed outbox, then the url)"
is "$(hub_sql "SELECT count(*) FROM resource WHERE id = '$R2'")" 0 "ottawa's delete of r2 stands (a delete wins over a concurrent update)"
is "$(hub_sql "SELECT count(*) FROM _empact_conflict WHERE row_key = '\"$R2\"' AND loser_site = 'toronto'
               AND kind = 'update-of-deleted' AND col = 'url' AND lost_value = '\"https://example.org/r2\"'")" \
    1 "toronto's url edit is in the conflict log as update-of-deleted"

# ---- rows edited after the kill and not in the killed push: the resumed sync pulls other
# sites' changes under them first; the next push must still say what toronto saw, so the
# hub sees the concurrent change and logs what it overwrites ------------------------------
cut_sync() {   # toronto pushes a throwaway retitle and is killed once the hub has it
    local x; x=$(new_uuid)
    sq "$T" "INSERT INTO resource(id, title) VALUES ('$x', 'throwaway $1')" &&
        run "$EMPACT" sync "$T" && [ "$RUN_RC" -eq 0 ] &&
        sq "$T" "UPDATE resource SET title = 'throwaway $1 again' WHERE id = '$x'" ||
        fail "$1: set-up of a killed push"
    EMPACT_KILL_AFTER=$ACK_K run "$EMPACT" sync "$T"
    is "$RUN_RC" 137 "$1: toronto's sync is killed right after 'push acknowledged'"
}
conflicts_for() {   # KEY: the hub's log for that row, one "kind col loser lost" a line
    hub_sql "SELECT kind || ' ' || col || ' ' || loser_site || ' ' || lost_value FROM _empact_conflict
             WHERE row_key = '\"$1\"' ORDER BY id"
}
R3=$(new_uuid)
ok_cmd "toronto adds r3" sq "$T" "INSERT INTO resource(id, title, summary) VALUES ('$R3', 'r3 title', 'r3 summary')"
site_sync toronto "toronto pushes r3"
site_sync ottawa "ottawa pulls r3"
cut_sync r3
ok_cmd "ottawa changes r3's summary" sq "$O" "UPDATE resource SET summary = 'r3 summary by ottawa' WHERE id = '$R3'"
site_sync ottawa "ottawa pushes it"
ok_cmd "toronto changes r3's summary later (its replica shows the old one)" \
    sq "$T" "UPDATE resource SET summary = 'r3 summary by toronto' WHERE id = '$R3'"
site_sync toronto "toronto syncs (resumed outbox, then r3)"
is "$(hub_sql "SELECT summary FROM resource WHERE id = '$R3'")" "r3 summary by toronto" \
    "r3: toronto's later summary wins"
is "$(conflicts_for "$R3")" 'overwritten summary ottawa "r3 summary by ottawa"' \
    "r3: ottawa's summary, replaced by an edit that never saw it, is in the conflict log"

R4=$(new_uuid)
cut_sync r4
ok_cmd "ottawa inserts r4" sq "$O" "INSERT INTO resource(id, title, summary) VALUES ('$R4', 'r4 by ottawa', 'r4 summary')"
site_sync ottawa "ottawa pushes r4"
ok_cmd "toronto inserts a row with the same key later" sq "$T" "INSERT INTO resource(id, title, summary) VALUES ('$R4', 'r4 by toronto', 'r4 summary')"
site_sync toronto "toronto syncs (resumed outbox, then r4)"
is "$(hub_sql "SELECT title || ' | ' || summary FROM resource WHERE id = '$R4'")" "r4 by toronto | r4 summary" \
    "r4: the two inserts merge column by column, toronto's later title wins"
is "$(conflicts_for "$R4")" 'overwritten title ottawa "r4 by ottawa"' \
    "r4: ottawa's title is in the conflict log (toronto's insert went out as an insert)"

R5=$(new_uuid)
ok_cmd "toronto adds r5" sq "$T" "INSERT INTO resource(id, title, summary) VALUES ('$R5', 'r5 title', 'r5 summary')"
site_sync toronto "toronto pushes r5"
site_sync ottawa "ottawa pulls r5"
cut_sync r5
ok_cmd "ottawa changes r5's summary" sq "$O" "UPDATE resource SET summary = 'r5 summary by ottawa' WHERE id = '$R5'"
site_sync ottawa "ottawa pushes it"
ok_cmd "toronto deletes r5 (its replica shows the old summary)" sq "$T" "DELETE FROM resource WHERE id = '$R5'"
site_sync toronto "toronto syncs (resumed outbox, then the delete)"
is "$(hub_sql "SELECT count(*) FROM resource WHERE id = '$R5'")" 0 "r5: toronto's delete stands"
is "$(conflicts_for "$R5")" 'deleted summary ottawa "r5 summary by ottawa"' \
    "r5: ottawa's summary, deleted by a site that never saw it, is in the conflict log"

R6=$(new_uuid)
ok_cmd "toronto adds r6" sq "$T" "INSERT INTO resource(id, title) VALUES ('$R6', 'r6 title')"
site_sync toronto "toronto pushes r6"
site_sync ottawa "ottawa pulls r6"
cut_sync r6
ok_cmd "ottawa deletes r6" sq "$O" "DELETE FROM resource WHERE id = '$R6'"
site_sync ottawa "ottawa pushes the delete"
ok_cmd "toronto sets r6's title to what it already is (an edit that changes nothing)" \
    sq "$T" "UPDATE resource SET title = 'r6 title' WHERE id = '$R6'"
site_sync toronto "toronto syncs (resumed outbox, then nothing for r6)"
is "$(site_sql toronto "SELECT count(*) FROM resource WHERE id = '$R6'")|$(site_sql toronto "SELECT count(*) FROM _empact_dirty_resource")" \
    "0|0" "r6: ottawa's delete reaches toronto's table (no lingering row, nothing left dirty)"
exec 2>&3

# ---- the end ------------------------------------------------------------------------------
site_sync ottawa "ottawa syncs"
site_sync toronto "toronto syncs"
assert_converged toronto ottawa
ok_cmd "git fsck --strict is clean" git -C "$HUB_DIR/history.git" fsck --strict
is "$(hub_git rev-list --count HEAD 2>&1)" "$(hub_max_seq)" "one commit per version"
assert_tree_matches_hub "hub.db's replicated tables equal the tree at HEAD"
stop_hub
done_testing
