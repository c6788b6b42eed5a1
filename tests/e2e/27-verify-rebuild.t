#!/usr/bin/env bash
# 27-verify-rebuild.t - `empact-hub verify` passes on a live hub and names
# each kind of damage (a table row that is not the tree, a missing or damaged
# git object, a missing version row); `empact-hub rebuild` makes a lost hub.db
# again from history.git: verify passes, every replicated table, the version
# log and the push ids equal the old hub.db's, and both sites sync on without
# noticing (no divergence rebuild) and keep exchanging edits.
. "$(dirname "$0")/lib.sh"

REPL_TABLES="metric metric_value resource site"

setup_hub_and_sites toronto ottawa
T1=$(new_uuid) T2=$(new_uuid) T3=$(new_uuid) O1=$(new_uuid) O2=$(new_uuid)

# ---- edits from both sites: inserts, updates, deletes, awkward values ------
ok_cmd "toronto inserts awkward values" sq "$(site_db toronto)" "
INSERT INTO resource(id, title, summary, oht_block) VALUES
  ('$T1', 'Say \"hi\" \\ it''s', 'line one' || char(10) || 'line two' || char(9) || 'tab', 3),
  ('$T2', 'Équité – 日本語 🙂', NULL, NULL),
  ('$T3', 'to be deleted', 'x', 1);
INSERT INTO resource(id, title) VALUES ('blob-title', X'00FF41'), ('a/b,c%d', 42), ('', 'empty key');
INSERT INTO metric_value(site_id, metric, period, value) VALUES
  ('toronto', 'compensation_paid', '2026-Q3', 150.25), ('toronto', 'decisions_hospital', '2026-Q3', 6);"
site_sync toronto
ok_cmd "ottawa inserts" sq "$(site_db ottawa)" "
INSERT INTO resource(id, title, url) VALUES ('$O1', 'Ottawa report', 'https://example.org/o?a=1&b=\"2\"'),
  ('$O2', 'Ottawa guide', NULL);
INSERT INTO metric_value(site_id, metric, period, value) VALUES ('ottawa', 'compensation_paid', '2026-Q3', 1e-7);"
site_sync ottawa
site_sync toronto "toronto pulls ottawa's rows"
ok_cmd "ottawa updates and deletes toronto's rows" sq "$(site_db ottawa)" "
UPDATE resource SET summary = 'ottawa''s note', oht_block = 8 WHERE id = '$T1';
DELETE FROM resource WHERE id = '$T3';
UPDATE resource SET url = NULL WHERE id = '$O1';"
site_sync ottawa
ok_cmd "toronto updates and deletes" sq "$(site_db toronto)" "
UPDATE resource SET title = 'renamed' || char(13) || char(10) WHERE id = '$T2';
DELETE FROM resource WHERE id = 'a/b,c%d';
UPDATE metric_value SET value = -0.5 WHERE site_id = 'toronto' AND metric = 'compensation_paid';"
site_sync toronto
site_sync ottawa "ottawa pulls toronto's last edits"
NVER=$(hub_max_seq)
[ "$NVER" -ge 7 ]; ok $? "the hub has $NVER versions"

# ---- verify on the live hub ------------------------------------------------
expect_rc 0 "verify passes while the hub serves" "$EMPACT_HUB" verify "$HUB_DIR"
is "$(printf '%s\n' "$RUN_OUT" | grep -c ': ok (')" 4 "four checks, each ok"
like "$RUN_OUT" "version log: ok \\($NVER versions" "the version log check counts $NVER versions"
expect_rc 0 "verify --json passes" "$EMPACT_HUB" verify "$HUB_DIR" --json
like "$RUN_OUT" '"ok":[[:space:]]+true' "--json says ok: true"
expect_rc 74 "verify of a directory without a hub: exit 74" "$EMPACT_HUB" verify "$E2E_TMP/nohub"
expect_rc 64 "verify without HUBDIR: exit 64" "$EMPACT_HUB" verify

stop_hub

# ---- damage, one kind at a time, each in its own copy ------------------------
# damaged NAME: a copy of the hub whose history.git holds every object loose
# (the hub writes packs; `git unpack-objects` explodes them), so that one
# object file can be deleted or overwritten.
damaged() {
    local d="$E2E_TMP/$1" p
    rm -rf "$d"
    cp -a "$HUB_DIR" "$d"
    for p in "$d"/history.git/objects/pack/pack-*.pack; do
        [ -e "$p" ] || continue
        mv "$p" "$d/unpack.tmp"
        rm -f "${p%.pack}.idx" "${p%.pack}.rev"
        git -C "$d/history.git" unpack-objects -q <"$d/unpack.tmp"
        rm -f "$d/unpack.tmp"
    done
    echo "$d"
}

D=$(damaged d-row)
sq "$D/hub.db" "UPDATE resource SET title = 'tampered' WHERE id = '$O2'"
expect_rc 65 "a changed row in hub.db: verify exits 65" "$EMPACT_HUB" verify "$D"
like "$RUN_OUT" "tables: FAILED" "the tables check fails"
like "$RUN_OUT" "table resource row $O2: hub.db and git hold different values" "and names the row"
like "$RUN_OUT" "git: ok" "git itself is fine"

D=$(damaged d-missing)
TREE=$(git -C "$D/history.git" rev-parse HEAD:resource)
rm -f "$D/history.git/objects/${TREE:0:2}/${TREE:2}"
[ ! -e "$D/history.git/objects/${TREE:0:2}/${TREE:2}" ]; ok $? "deleted the loose tree object of table resource"
expect_rc 65 "a missing git object: verify exits 65" "$EMPACT_HUB" verify "$D"
like "$RUN_OUT" "git: FAILED.*tree $TREE \\(resource\\)" "the git check names the missing tree and its path"

D=$(damaged d-corrupt)
BLOB=$(git -C "$D/history.git" ls-tree -r HEAD resource | awk 'NR==1 {print $3}')
F="$D/history.git/objects/${BLOB:0:2}/${BLOB:2}"
chmod u+w "$F" && printf 'not a zlib stream' >"$F"
expect_rc 65 "a damaged git object: verify exits 65" "$EMPACT_HUB" verify "$D"
like "$RUN_OUT" "object $BLOB cannot be read" "the git check names the damaged object"

D=$(damaged d-version)
sq "$D/hub.db" "DELETE FROM _empact_version WHERE seq = 2"
expect_rc 65 "a deleted version row: verify exits 65" "$EMPACT_HUB" verify "$D"
like "$RUN_OUT" "version log: FAILED.*version 2 is missing from _empact_version" "the version log check names it"

# ---- hub.db lost: rebuild -----------------------------------------------------
OLD=$E2E_TMP/old
mkdir -p "$OLD"
for f in hub.db hub.db-wal hub.db-shm; do [ -e "$HUB_DIR/$f" ] && mv "$HUB_DIR/$f" "$OLD/"; done
[ ! -e "$HUB_DIR/hub.db" ]; ok $? "hub.db moved away"
expect_rc 64 "rebuild without --from: exit 64" "$EMPACT_HUB" rebuild "$HUB_DIR"
expect_rc 0 "rebuild from history.git with both sites' join bundles" "$EMPACT_HUB" rebuild "$HUB_DIR" \
    --from "$HUB_DIR/history.git" "$(site_join_file toronto)" "$(site_join_file ottawa)"
like "$RUN_OUT" "$NVER versions" "rebuild replayed $NVER versions"
like "$RUN_OUT" "site ottawa registered again" "ottawa registered again from its bundle"
like "$RUN_ERR" "rebuild: $NVER of $NVER commits" "a progress line on stderr"
expect_rc 64 "a second rebuild without --force refuses the new hub.db" "$EMPACT_HUB" rebuild "$HUB_DIR" \
    --from "$HUB_DIR/history.git"
expect_rc 0 "verify passes on the rebuilt hub" "$EMPACT_HUB" verify "$HUB_DIR"

for t in $REPL_TABLES; do
    is "$(sqldiff --table "$t" "$OLD/hub.db" "$HUB_DIR/hub.db" 2>&1)" "" "table $t: rebuilt = old (sqldiff)"
done
Q="SELECT seq, commit_id, tree_id, site_id, coalesce(push_id, ''), created_at FROM _empact_version ORDER BY seq"
is "$(sq "$HUB_DIR/hub.db" "$Q")" "$(sq "$OLD/hub.db" "$Q")" "the version log: same seq, commit, tree, site, push id, time"
Q="SELECT push_id, site_id, version, applied, overridden FROM _empact_push WHERE version > 0 ORDER BY 1, 2"
is "$(sq "$HUB_DIR/hub.db" "$Q")" "$(sq "$OLD/hub.db" "$Q")" "the push ids that made versions are restored"
Q="SELECT site_id, fingerprint FROM _empact_site_cert ORDER BY 1"
is "$(sq "$HUB_DIR/hub.db" "$Q")" "$(sq "$OLD/hub.db" "$Q")" "both sites registered with their certificates"

# ---- the sites sync on ----------------------------------------------------------
start_hub "$HUB_DIR" || give_up "hub start after rebuild"
sites_follow_hub toronto ottawa
for id in toronto ottawa; do
    ok_cmd "$id syncs with the rebuilt hub" "$EMPACT" sync "$(site_db "$id")"
    unlike "$RUN_OUT$RUN_ERR" "rebuilt|diverged" "$id did not have to rebuild its copy"
done
N1=$(new_uuid)
ok_cmd "toronto adds a resource" sq "$(site_db toronto)" "INSERT INTO resource(id, title) VALUES ('$N1', 'after the rebuild')"
site_sync toronto
site_sync ottawa
is "$(site_sql ottawa "SELECT title FROM resource WHERE id = '$N1'")" "after the rebuild" \
    "toronto's new edit reached ottawa"
is "$(hub_max_seq)" "$((NVER + 1))" "one new version after the rebuilt head"
expect_rc 0 "verify passes after syncing on" "$EMPACT_HUB" verify "$HUB_DIR"
stop_hub
done_testing
