#!/usr/bin/env bash
# 28-hub-ops.t - operating the hub: `empact-hub backup` while the hub serves
# and a site syncs, restored with cp -a and served; git housekeeping (packing
# every EMPACT_PACK_EVERY versions and `empact-hub gc`); `empact-hub status`
# with a fresh, a lagging, a never-synced and a refused site.
. "$(dirname "$0")/lib.sh"

json_of() { printf '%s' "$RUN_OUT" | json_eval "$1"; }
loose_count() { git -C "$1/history.git" count-objects -v | sed -n 's/^count: //p'; }
pack_count() { git -C "$1/history.git" count-objects -v | sed -n 's/^packs: //p'; }
add_resource() { site_sql "$1" "INSERT INTO resource(id, title, oht_block) VALUES ('$(new_uuid)', '$2', 3)"; }

export EMPACT_PACK_EVERY=25   # test builds: pack every 25 versions instead of 100
export EMPACT_PACK_STORED_MAX=100000 # ... and deflate rows past 100 kB of a version's pack
setup_hub_and_sites toronto ottawa
ORIG=$HUB_DIR

# ---- backup while the hub serves and toronto syncs ---------------------------
for i in 1 2 3; do add_resource toronto "before backup $i"; done
site_sync toronto "toronto pushes three resources"
# the hub writes each version's pack and index itself: git must agree with
# both, also for an object longer than one stored zlib block (65535 bytes)
# and for rows deflated once the pack passed EMPACT_PACK_STORED_MAX (set
# above: the first long row is stored, the second deflated)
for i in 1 2; do
    site_sql toronto "INSERT INTO resource(id, title, summary, oht_block)
        VALUES ('$(new_uuid)', 'a long one', printf('%.*c', 150000, 'x'), 3)"
done
site_sync toronto "toronto pushes two resources with a 150,000-byte summary"
NEWPACK=$(ls -t "$ORIG/history.git/objects/pack/"pack-*.pack | head -1)
cp "$NEWPACK" "$E2E_TMP/check.pack"
ok_cmd "git index-pack reads the newest version's pack" \
    git index-pack -o "$E2E_TMP/check.idx" "$E2E_TMP/check.pack"
ok $(cmp -s "$E2E_TMP/check.idx" "${NEWPACK%.pack}.idx"; echo $?) \
    "... and makes the very .idx the hub wrote"
is "$(file_mode "$NEWPACK") $(file_mode "${NEWPACK%.pack}.idx")" "444 444" \
    "pack and index are read-only (0444)"
is "$(find "$ORIG/history.git/objects/pack" -name 'tmp_*' | wc -l)" 0 "no temporary pack file is left"
(
    for i in $(seq 1 12); do
        add_resource toronto "during backup $i" || exit 1
        timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" sync "$(site_db toronto)" >/dev/null 2>&1 || exit 1
    done
) &
LOOP=$!
track_pid "$LOOP"
# back up once the live hub has moved on from the loop's first push
v0=$(hub_max_seq)
for i in $(seq 1 250); do [ "$(hub_max_seq)" -gt "$v0" ] && break; sleep 0.02; done
BK=$E2E_TMP/backup
run "$EMPACT_HUB" backup "$ORIG" "$BK"
is "$RUN_RC" 0 "empact-hub backup while the hub serves and toronto syncs exits 0" || _diag_run_output
like "$RUN_OUT" "at version [0-9]+ \(commit [0-9a-f]{12}\)" "backup says which version it copied"
like "$RUN_OUT" "hub.db +[0-9]+ bytes" "... and the sizes"
wait_bounded "$LOOP" 60
untrack_pid "$LOOP"
is "$WAIT_RC" 0 "toronto's twelve syncs around the backup all succeeded"
ok $([ ! -e "$BK.tmp" ]; echo $?) "no backup.tmp is left"
is "$(file_mode "$BK/ca.key")" 600 "ca.key in the backup has mode 0600"
is "$(file_mode "$BK/hub.key")" 600 "hub.key in the backup has mode 0600"
ok $([ -f "$BK/ca.pem" ] && [ -f "$BK/hub.pem" ]; echo $?) "ca.pem and hub.pem are in the backup"
ok $([ ! -e "$BK/hub.db-wal" ]; echo $?) "the backup has no WAL file left over"
expect_rc 64 "a second backup into the same (non-empty) DEST is refused (64)" \
    "$EMPACT_HUB" backup "$ORIG" "$BK"
mkdir "$E2E_TMP/broken" && cp -a "$ORIG/hub.db" "$ORIG/history.git" "$ORIG/ca.pem" "$E2E_TMP/broken/"
expect_rc 74 "a backup of a hub directory without its keys fails (74)" \
    "$EMPACT_HUB" backup "$E2E_TMP/broken" "$E2E_TMP/bk-broken"
ok $([ ! -e "$E2E_TMP/bk-broken" ] && [ ! -e "$E2E_TMP/bk-broken.tmp" ]; echo $?) \
    "... and leaves neither DEST nor DEST.tmp behind"
# libgit2's indexer puts a new pack's .idx in place before its .pack: a backup
# that meets such a pack (a newer version being written) goes on without it
PK=$ORIG/history.git/objects/pack
WRITING=pack-$(printf 'writing' | sha1sum | cut -c1-40)
cp "$(ls "$PK"/pack-*.idx | head -1)" "$PK/$WRITING.idx"
ok_cmd "a backup meeting a pack whose .idx is there before its .pack exits 0" \
    "$EMPACT_HUB" backup "$ORIG" "$E2E_TMP/bk-writing"
ok $([ ! -e "$E2E_TMP/bk-writing/history.git/objects/pack/$WRITING.idx" ]; echo $?) \
    "... and leaves that pack out"
rm -f "$PK/$WRITING.idx"

# ---- restore: cp -a, check, serve --------------------------------------------
stop_hub
R=$E2E_TMP/restored
ok_cmd "restore with cp -a" cp -a "$BK" "$R"
HUB_DIR=$R
is "$(hub_sql "PRAGMA integrity_check")" ok "restored hub.db: PRAGMA integrity_check is ok"
run git -C "$R/history.git" fsck --strict
is "$RUN_RC" 0 "restored history.git: git fsck --strict is clean" || _diag_run_output
V=$(hub_max_seq)
is "$(hub_git rev-parse main)" "$(hub_sql "SELECT commit_id FROM _empact_version WHERE seq = $V")" \
    "restored main is the commit of the restored hub.db's newest version ($V)"
ok $([ "$V" -gt "$v0" ]; echo $?) "the backup holds a version pushed while it was taken ($V > $v0)"
is "$(hub_git rev-parse main)" "$(sq "$ORIG/hub.db" "SELECT commit_id FROM _empact_version WHERE seq = $V")" \
    "... and it is the live hub's commit of that version"
diag "backup at version $V; the live hub went on to $(sq "$ORIG/hub.db" "SELECT max(seq) FROM _empact_version")"
assert_tree_matches_hub "restored tables equal the tree of the restored main" main
run "$EMPACT_HUB" verify "$R"
is "$RUN_RC" 0 "empact-hub verify passes on the restored hub" || _diag_run_output
start_hub "$R" || give_up "serve the restored hub"
sites_follow_hub ottawa
site_sync ottawa "ottawa syncs against the restored hub"
add_resource ottawa "after restore"
site_sync ottawa "ottawa pushes to the restored hub"
replica_matches_hub "ottawa's replica equals the restored hub's tables" ottawa
site_add kingston --name "Site kingston"
site_join kingston
site_add never --name "Never synced"

# ---- git housekeeping ------------------------------------------------------------
log0=$(hub_log_lines)
for i in $(seq 1 30); do
    add_resource ottawa "gc round $i" && "$EMPACT" sync "$(site_db ottawa)" >/dev/null 2>&1 ||
        { fail "ottawa push $i"; break; }
done
pass "ottawa pushed 30 more resources"
like "$(hub_log_since "$log0")" "compacted history.git: [0-9]+ objects \([0-9]+ loose, [0-9]+ packs\) into pack-" \
    "the hub packed history.git by itself after its 25th-version mark"
loose_before=$(loose_count "$R")
packs_before=$(pack_count "$R")
ok $([ "$packs_before" -ge 2 ] && [ "$loose_before" -eq 0 ]; echo $?) \
    "each version since the hub's last compaction left one pack, and no loose object ($packs_before packs, $loose_before loose)"
run "$EMPACT_HUB" gc "$R"
is "$RUN_RC" 0 "empact-hub gc while the hub serves exits 0" || _diag_run_output
like "$RUN_OUT" "packed [0-9]+ objects \([0-9]+ loose, [0-9]+ packs\) into pack-[0-9a-f]{40}" "gc says what it packed"
diag "loose objects before gc: $loose_before; after: $(loose_count "$R"); packs: $(pack_count "$R")"
is "$(loose_count "$R")" 0 "no loose objects remain (count-objects)"
np=$(pack_count "$R") nv=$(hub_max_seq)
ok $([ "$np" -ge 1 ] && [ "$np" -le 4 ]; echo $?) \
    "history.git holds 1 to 4 packs for its $nv versions after gc (count-objects: $np)"
run git -C "$R/history.git" fsck --strict
is "$RUN_RC" 0 "git fsck --strict is clean after packing" || _diag_run_output
run "$EMPACT_HUB" verify "$R"
is "$RUN_RC" 0 "empact-hub verify reads the packed objects and passes" || _diag_run_output
run "$EMPACT_HUB" gc "$R"
like "$RUN_OUT" "nothing to pack" "a second gc has nothing to pack"

# gc --all: every pack into one, written by the hub itself (older folds'
# entries copied, a version's objects compressed against the next newer
# object at the same path); the same objects before and after, and git
# agrees with the pack and its index
RID=$(new_uuid)
site_sql ottawa "INSERT INTO resource(id, title, summary, oht_block) VALUES ('$RID', 'edited', 'v0 $(printf 'long text %.0s' $(seq 40))', 3)"
site_sync ottawa "ottawa pushes a resource it will edit"
for i in 1 2 3 4 5 6; do
    site_sql ottawa "UPDATE resource SET summary = replace(summary, 'v$((i - 1)) ', 'v$i ') WHERE id = '$RID'"
    "$EMPACT" sync "$(site_db ottawa)" >/dev/null 2>&1 || fail "ottawa edit $i"
done
git -C "$R/history.git" cat-file --batch-all-objects --batch-check >"$E2E_TMP/objects-before"
run "$EMPACT_HUB" gc --all "$R"
is "$RUN_RC" 0 "empact-hub gc --all exits 0" || _diag_run_output
like "$RUN_OUT" "packed [0-9]+ objects \(0 loose, [0-9]+ packs\) into pack-[0-9a-f]{40} \([0-9]+ bytes, [1-9][0-9]* as deltas\)" \
    "gc --all says what it packed, some objects as deltas"
is "$(pack_count "$R")" 1 "history.git holds one pack after gc --all"
git -C "$R/history.git" cat-file --batch-all-objects --batch-check >"$E2E_TMP/objects-after"
ok $(cmp -s "$E2E_TMP/objects-before" "$E2E_TMP/objects-after"; echo $?) \
    "the same objects, types and sizes before and after ($(wc -l <"$E2E_TMP/objects-after") objects)"
run git -C "$R/history.git" fsck --strict
is "$RUN_RC" 0 "git fsck --strict is clean after gc --all" || _diag_run_output
ALLPACK=$(ls "$R/history.git/objects/pack/"pack-*.pack)
cp "$ALLPACK" "$E2E_TMP/all.pack"
ok_cmd "git index-pack reads the folded pack" git index-pack -o "$E2E_TMP/all.idx" "$E2E_TMP/all.pack"
ok $(cmp -s "$E2E_TMP/all.idx" "${ALLPACK%.pack}.idx"; echo $?) "... and makes the very .idx the hub wrote"
git verify-pack -v "${ALLPACK%.pack}.idx" >"$E2E_TMP/verify" 2>&1
ok $(awk '$2 == "tree" && NF >= 7 { t++ } $2 == "blob" && NF >= 7 { b++ } END { exit !(t > 0 && b > 0) }' \
    "$E2E_TMP/verify"; echo $?) \
    "trees and the edited row are stored as deltas ($(awk 'NF >= 7 && ($2 == "tree" || $2 == "blob")' "$E2E_TMP/verify" | wc -l) deltas)"
ok $(awk '/^chain length = / { split($0, a, "= "); split(a[2], b, ":"); if (b[1] + 0 > 50) bad = 1 } END { exit bad }' \
    "$E2E_TMP/verify"; echo $?) "no delta chain longer than 50"
run "$EMPACT_HUB" verify "$R"
is "$RUN_RC" 0 "empact-hub verify reads the folded pack and passes" || _diag_run_output

# a damaged pack: gc refuses with the pack's name, removes nothing, leaves no temporary file
for i in 1 2; do add_resource ottawa "before damage $i" && site_sync ottawa "ottawa push $i before damage"; done
rm -rf "$E2E_TMP/damaged" && cp -a "$R" "$E2E_TMP/damaged"
DP=$(ls -S "$E2E_TMP/damaged/history.git/objects/pack/"pack-*.pack | head -1)
chmod u+w "$DP"
printf '\xff\x00\xff' | dd of="$DP" bs=1 seek=$(($(stat -c %s "$DP") / 2)) conv=notrunc status=none
npacks=$(pack_count "$E2E_TMP/damaged")
run "$EMPACT_HUB" gc --all "$E2E_TMP/damaged"
is "$RUN_RC" 65 "gc --all over a damaged pack exits 65" || _diag_run_output
like "$RUN_ERR" "pack-[0-9a-f]{40}\.pack.*(damaged|does not inflate)" "... naming the damaged pack"
is "$(pack_count "$E2E_TMP/damaged")" "$npacks" "... and removes no pack"
is "$(find "$E2E_TMP/damaged/history.git/objects/pack" -name 'tmp_*' | wc -l)" 0 "... and leaves no temporary file"
add_resource kingston "after gc"
site_sync kingston "kingston pushes after gc"
site_sync ottawa "ottawa syncs after gc"
assert_tree_matches_hub "tables equal the tree of main after packing" main
assert_converged ottawa kingston

# ---- status ---------------------------------------------------------------------
run "$EMPACT_HUB" status "$R"
is "$RUN_RC" 1 "status exits 1 when a site is stale (site 'never' has never synced)"
like "$RUN_OUT" "never +never .*STALE" "... and flags it STALE in the table"
like "$RUN_OUT" "ottawa .* ok" "ottawa is ok"
for i in 1 2; do add_resource ottawa "lag $i"; site_sync ottawa "ottawa pushes (lag $i)"; done
run "$EMPACT_HUB" status "$R" --json
is "$RUN_RC" 1 "status --json exits 1 too"
HEAD=$(hub_max_seq)
is "$(json_of '$j->{head_version}')" "$HEAD" "head_version is the hub's newest version"
is "$(json_of '$j->{stale_sites}')" 1 "one stale site"
is "$(json_of 'map { $_->{site_id} } grep { $_->{stale} } @{$j->{sites}}')" never "the stale one is never"
is "$(json_of '(grep { $_->{site_id} eq "never" } @{$j->{sites}})[0]->{last_sync}')" null \
    "never: last_sync is null"
is "$(json_of '(grep { $_->{site_id} eq "ottawa" } @{$j->{sites}})[0]->{lag}')" 0 "ottawa: lag 0"
is "$(json_of '(grep { $_->{site_id} eq "kingston" } @{$j->{sites}})[0]->{lag}')" 2 \
    "kingston: lag 2 after ottawa's two pushes"
is "$(json_of '(grep { $_->{site_id} eq "kingston" } @{$j->{sites}})[0]->{synced_version}')" \
    "$((HEAD - 2))" "kingston: synced_version is the head it pulled to"
is "$(json_of '(grep { $_->{site_id} eq "ottawa" } @{$j->{sites}})[0]->{pushes_24h}')" \
    "$(hub_sql "SELECT count(*) FROM _empact_push WHERE site_id = 'ottawa'")" \
    "ottawa: pushes_24h counts its pushes"
ok $([ "$(json_of '(grep { $_->{site_id} eq "ottawa" } @{$j->{sites}})[0]->{pushes_24h}')" -ge 33 ]; echo $?) \
    "... at least the 33 made in this test"
like "$(json_of 'join ",", sort keys %{$j->{sites}[0]}')" \
    "^conflicts_24h,hours_since_sync,lag,last_sync,name,pushes_24h,refusals_24h,revoked,site_id,stale,synced_version$" \
    "each site has every status field"
run "$EMPACT_HUB" sites "$R" --json
is "$(json_of '(grep { $_->{site_id} eq "kingston" } @$j)[0]->{lag}')" 2 "sites --json: kingston's lag is 2 too"
is "$(json_of '(grep { $_->{site_id} eq "never" } @$j)[0]->{synced_version}')" null \
    "sites --json: never's synced_version is null"
expect_rc 0 "with the never-synced site revoked, status exits 0" \
    bash -c "'$EMPACT_HUB' revoke-site '$R' never >/dev/null && '$EMPACT_HUB' status '$R'"
like "$RUN_OUT" "never .*revoked" "a revoked site is shown revoked, not stale"
expect_rc 64 "--stale-hours 0 is a usage error" "$EMPACT_HUB" status "$R" --stale-hours 0

# a refused push: ottawa writes kingston's owned row with its guard triggers dropped
O=$(site_db ottawa)
M=$(hub_sql "SELECT code FROM metric WHERE suppress_below IS NULL ORDER BY code LIMIT 1")
guards=$(sq "$O" "SELECT group_concat('DROP TRIGGER \"' || name || '\";', ' ') FROM sqlite_master
    WHERE type = 'trigger' AND tbl_name = 'metric_value' AND sql LIKE '%RAISE%'")
ok_cmd "ottawa drops its guards and writes a metric value for kingston" sq "$O" \
    "$guards INSERT INTO metric_value(site_id, metric, period, value) VALUES ('kingston', '$M', '2026-Q1', 3)"
expect_rc 77 "the hub refuses ottawa's push (77)" "$EMPACT" sync "$O"
run "$EMPACT_HUB" status "$R" --json
is "$(json_of '(grep { $_->{site_id} eq "ottawa" } @{$j->{sites}})[0]->{refusals_24h}')" 1 \
    "ottawa: refusals_24h is 1"
is "$(json_of '(grep { $_->{site_id} eq "kingston" } @{$j->{sites}})[0]->{refusals_24h}')" 0 \
    "kingston: refusals_24h is 0"
is "$(hub_sql "SELECT site_id FROM _empact_refusal")" ottawa "the refusal is recorded for ottawa"

stop_hub
done_testing
