#!/usr/bin/env bash
# 11-crash.t - SIGKILL at awkward moments.  A site killed in the middle of a
# sync keeps an intact replica and its edits; a hub killed in the middle of a
# push comes back consistent (hub.db and history.git agree, fsck clean).
# Either way the next sync converges and no row is applied twice.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa
T=$(site_db toronto)
bulk() { # SITE N TAG: N new resources in one transaction
    sq "$(site_db "$1")" "
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
INSERT INTO resource(id, title, summary) SELECT '$3-' || i, '$3 ' || i, hex(randomblob(64)) FROM n;"
}
N=${E2E_CRASH_ROWS:-2000}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# How long does one sync of N rows take here (plain or sanitizer build, this
# machine)?  The kill moments below are fractions of it.
ok_cmd "ottawa inserts $N rows (calibration)" bulk ottawa "$N" calib
t0=$(now_ms)
site_sync ottawa "calibration: one sync of $N rows"
D=$(($(now_ms) - t0))
diag "one sync of $N rows takes $D ms"
site_sync toronto "toronto pulls the calibration rows"
at() { printf '%d.%03d' $((D * $1 / 100 / 1000)) $((D * $1 / 100 % 1000)); }  # PERCENT -> seconds

# ---- the site dies during its sync, at a few different moments ----------------------------
# (bash would report each killed job on stderr: keep that out of the test output)
exec 3>&2 2>>"$E2E_TMP/job-notices.txt"
for pct in 5 30 60 90 120; do
    delay=$(at "$pct")
    tag="site-kill-$pct"
    ok_cmd "toronto inserts $N rows ($tag: SIGKILL at ${delay}s, $pct% of a sync)" bulk toronto "$N" "$tag"
    v_before=$(hub_max_seq)
    "$EMPACT" sync "$T" >/dev/null 2>"$E2E_TMP/kill.err" </dev/null &   # bounded by the kill below
    p=$!
    sleep "$delay"
    kill -KILL "$p" 2>/dev/null
    wait_bounded "$p" 10
    diag "$tag: sync exit status $WAIT_RC (137 = killed)"
    is "$(sq "$T" 'PRAGMA integrity_check')" ok "$tag: the replica passes integrity_check"
    n=$(sq "$T" "SELECT count(*) FROM resource WHERE id LIKE '$tag-%'")
    is "$n" "$N" "$tag: the $N rows are still in the replica"
    site_sync toronto "$tag: the next sync succeeds"
    is "$(status_get toronto 'pending changes')" 0 "$tag: nothing pending"
    is "$(hub_sql "SELECT count(*) FROM resource WHERE id LIKE '$tag-%'")" "$N" "$tag: the hub holds each row once"
    v_after=$(hub_max_seq)
    is "$v_after" $((v_before + 1)) "$tag: exactly one new version"
    is "$(hub_git rev-list --count HEAD 2>&1)" "$v_after" "$tag: one commit per version"
done
exec 2>&3
site_sync ottawa "ottawa catches up"
assert_converged toronto ottawa

# ---- the hub dies during a push ---------------------------------------------------------
exec 3>&2 2>>"$E2E_TMP/job-notices.txt"
for pct in 30 60 90; do
    delay=$(at "$pct")
    tag="hub-kill-$pct"
    ok_cmd "ottawa inserts $N rows ($tag: SIGKILL of the hub at ${delay}s, $pct% of a sync)" bulk ottawa "$N" "$tag"
    v_before=$(hub_max_seq)
    timeout -k 5 "$E2E_TIMEOUT" "$EMPACT" sync "$(site_db ottawa)" >"$E2E_TMP/hk.out" 2>&1 &
    p=$!
    sleep "$delay"
    # SIGKILL the hub process itself (HUB_PID is the `timeout` wrapper around it).
    hubproc=$(ps -o pid= --ppid "$HUB_PID")
    for c in $hubproc; do kill -KILL "$c" 2>/dev/null; done
    wait_bounded "$HUB_PID" 10
    untrack_pid "$HUB_PID"
    HUB_PID=""
    wait_bounded "$p" "$E2E_TIMEOUT"
    diag "$tag: ottawa's sync exit $WAIT_RC: $(tr -d '\000' <"$E2E_TMP/hk.out" | head -n 2)"
    like "$WAIT_RC" '^(0|75)$' "$tag: the interrupted sync exits 0 (made it) or 75 (retry later)"
    ok_cmd "$tag: hub.db integrity_check" sq "$HUB_DIR/hub.db" "PRAGMA integrity_check"
    is "$RUN_OUT" ok "$tag: hub.db is intact"
    start_hub "$HUB_DIR" || give_up "hub restart"
    for id in toronto ottawa; do
        sq "$(site_db "$id")" "UPDATE _empact_meta SET value='127.0.0.1:$HUB_PORT' WHERE key='hub_address'"
    done
    ok_cmd "$tag: git fsck --strict after the restart" git -C "$HUB_DIR/history.git" fsck --strict
    site_sync ottawa "$tag: ottawa's next sync succeeds"
    v_after=$(hub_max_seq)
    is "$v_after" $((v_before + 1)) "$tag: exactly one new version for the push"
    is "$(hub_sql "SELECT count(*) FROM resource WHERE id LIKE '$tag-%'")" "$N" "$tag: the hub holds each row once"
    is "$(hub_git rev-list --count HEAD 2>&1)" "$v_after" "$tag: one commit per version"
    is "$(hub_git rev-parse HEAD 2>&1)" "$(hub_sql "SELECT commit_id FROM _empact_version WHERE seq = $v_after")" \
        "$tag: HEAD is the last version's commit"
    is "$(hub_git ls-tree -r --name-only HEAD 2>&1 | grep -c '^resource/')" "$(hub_sql 'SELECT count(*) FROM resource')" \
        "$tag: the git tree has one file per resource"
done
exec 2>&3
site_sync toronto "toronto catches up"
site_sync ottawa "ottawa syncs again"
assert_converged toronto ottawa

stop_hub
done_testing
