#!/usr/bin/env bash
# 13-busy.t - contention and refusals around the edges: two syncs of one
# replica at once, a replica held locked by a sqlite3 shell, a hub asked to
# listen on a port already taken, commands pointed at a HUBDIR that is not one.
# Nothing may hang past its bound, lose an edit, or apply a push twice.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto
T=$(site_db toronto)
U=$RANDOM$$

# ---- two syncs of the same replica at the same time ------------------------------------
ok_cmd "toronto inserts 2000 rows" sq "$T" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO resource(id, title) SELECT 'twin-$U-' || i, 'twin ' || i FROM n;"
v0=$(hub_max_seq)
timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" sync "$T" >"$E2E_TMP/s1.out" 2>&1 &
p1=$!
timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" sync "$T" >"$E2E_TMP/s2.out" 2>&1 &
p2=$!
wait "$p1"; r1=$?
wait "$p2"; r2=$?
diag "concurrent syncs: exit $r1 ($(head -n 1 "$E2E_TMP/s1.out")), exit $r2 ($(head -n 1 "$E2E_TMP/s2.out"))"
check_sanitizer_file "$E2E_TMP/s1.out" "concurrent sync 1"
check_sanitizer_file "$E2E_TMP/s2.out" "concurrent sync 2"
like "$r1 $r2" '^(0|73|74|75) (0|73|74|75)$' "both end cleanly: 0, or 73 (locked; 29-sync-job.t) / 74/75 for the one that found the replica busy"
like "$r1 $r2" '(^| )0( |$)' "at least one of them succeeded"
is "$(hub_max_seq)" $((v0 + 1)) "exactly one new version"
site_sync toronto "a later sync succeeds"
is "$(hub_max_seq)" $((v0 + 1)) "... and makes no version"
is "$(hub_sql "SELECT count(*) FROM resource WHERE id LIKE 'twin-$U-%'")" 2000 "the hub holds each row once"
is "$(status_get toronto 'pending changes')" 0 "nothing pending"
is "$(sq "$T" 'PRAGMA integrity_check')" ok "replica integrity_check ok"

# ---- a sqlite3 shell holds the replica's write lock for 6 seconds -----------------------
{ echo "BEGIN IMMEDIATE; INSERT INTO resource(id, title) VALUES ('held-$U', 'written under a held lock');"
  sleep 6
  echo "COMMIT;"; } | sqlite3 "$T" >"$E2E_TMP/holder.out" 2>&1 &
holder=$!
track_pid "$holder"
sleep 1
t0=$(date +%s)
run "$EMPACT" sync "$T"
t1=$(date +%s)
diag "sync during the held lock: exit $RUN_RC after $((t1 - t0)) s: $RUN_OUT $RUN_ERR"
like "$RUN_RC" '^(0|74|75)$' "sync while another program holds the write lock ends cleanly (0 after waiting, or 74/75)"
isnt "$RUN_RC" 124 "... and does not hang"
if [ "$RUN_RC" -ne 0 ]; then
    like "$RUN_ERR" '[Bb]usy|[Ll]ock|[Rr]etry|[Ii]n use' "... and says the replica is busy"
fi
wait_bounded "$holder" 20
untrack_pid "$holder"
is "$WAIT_RC" 0 "the sqlite3 shell committed its transaction"
site_sync toronto "sync after the lock is released"
is "$(hub_sql "SELECT title FROM resource WHERE id='held-$U'")" "written under a held lock" "the shell's edit reached the hub"
assert_converged toronto

# ---- the hub cannot listen / HUBDIR is not a hub -------------------------------------------
expect_fail "a second serve on a port already in use fails" \
    "$EMPACT_HUB" serve "$HUB_DIR" --listen "127.0.0.1:$HUB_PORT"
isnt "$RUN_RC" 124 "... at once, without hanging"
isnt "$RUN_RC" 64 "... and not as a usage error"
like "$RUN_ERR" "$HUB_PORT|[Aa]ddress|[Ii]n use" "... and says which address is taken"
kill -0 "$HUB_PID" 2>/dev/null; ok $? "the first hub is still serving"

expect_fail "serve on a directory that is not a hub fails" "$EMPACT_HUB" serve "$E2E_TMP/not-a-hub"
like "$RUN_ERR" 'not-a-hub' "... naming it"
[ ! -e "$E2E_TMP/not-a-hub" ]; ok $? "... and does not create it"
expect_fail "add-site on a directory that is not a hub fails" \
    "$EMPACT_HUB" add-site "$E2E_TMP/not-a-hub" ottawa --address 127.0.0.1:1 -o "$E2E_TMP/ottawa.join"
[ ! -e "$E2E_TMP/ottawa.join" ]; ok $? "... and writes no bundle"
expect_fail "add-site writing its bundle into a missing directory fails" \
    "$EMPACT_HUB" add-site "$HUB_DIR" ottawa --address 127.0.0.1:1 -o "$E2E_TMP/no/such/dir/ottawa.join"
is "$RUN_RC" 74 "... with 74 (file cannot be created)"
is "$(hub_sql "SELECT count(*) FROM site WHERE site_id='ottawa'")" 0 "... and registers nothing (no orphan site without a bundle)"
expect_rc 74 "join creating SITE.db in a missing directory: 74" \
    "$EMPACT" join "$E2E_TMP/no/such/dir/x.db" "$(site_join_file toronto)"

stop_hub
done_testing
