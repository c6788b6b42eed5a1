#!/usr/bin/env bash
# 06-hub-down.t - the hub is down: `empact sync` exits 75 (retry later), says the
# hub cannot be reached, and loses nothing; after a restart (new port) the same
# edits sync.  Also: a peer that drops the connection or never answers gives 75
# within a bounded time, and a join against a dead hub can simply be retried.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto
DB=$(site_db toronto)
U=$RANDOM$$
R0=$(new_uuid)
ok_cmd "toronto adds a resource" sq "$DB" "INSERT INTO resource(id, title) VALUES ('$R0', 'Synced before the outage $U')"
site_sync toronto "toronto syncs while the hub is up"
v0=$(status_get toronto 'synced version')

# ---- pending edits, then the hub goes away -------------------------------------------
R1=$(new_uuid) R2=$(new_uuid) R3=$(new_uuid)
ok_cmd "toronto edits offline: 3 inserts, 1 update, 1 metric value" sq "$DB" "
INSERT INTO resource(id, title) VALUES ('$R1', 'Offline one $U'), ('$R2', 'Offline two $U'), ('$R3', 'Offline three $U');
UPDATE resource SET summary = 'edited during the outage $U' WHERE id = '$R0';
INSERT INTO metric_value(site_id, metric, period, value)
  SELECT 'toronto', code, '2026-Q3', 5 FROM metric ORDER BY code LIMIT 1;"
pending=$(status_get toronto 'pending changes')
is "$pending" 5 "status: 5 pending changes"
snapshot() { sq "$DB" "SELECT id, title, ifnull(summary,'') FROM resource ORDER BY id; SELECT * FROM metric_value ORDER BY 1,2,3;"; }
before=$(snapshot)

old_port=$HUB_PORT
stop_hub INT

for attempt in 1 2; do
    expect_rc 75 "sync with the hub down exits 75 (attempt $attempt)" "$EMPACT" sync "$DB"
    like "$RUN_ERR" '[Rr]each|[Cc]onnect|[Uu]navailable|[Dd]own|[Rr]efused|[Rr]etry' \
        "... stderr says the hub cannot be reached"
    like "$RUN_ERR" "127\.0\.0\.1:$old_port|hub" "... and names the hub"
    is "$(snapshot)" "$before" "... the edited rows are still there, unchanged"
    is "$(status_get toronto 'pending changes')" "$pending" "... status still shows $pending pending changes"
    is "$(status_get toronto 'synced version')" "$v0" "... and the same synced version"
done
ok_cmd "replica integrity_check after failed syncs" sq "$DB" "PRAGMA integrity_check"
is "$RUN_OUT" ok "... says ok"

# ---- the hub comes back on a new port --------------------------------------------------
start_hub "$HUB_DIR" || give_up "hub restart"
ok_cmd "point the replica at the new port" sq "$DB" \
    "UPDATE _empact_meta SET value='127.0.0.1:$HUB_PORT' WHERE key='hub_address'"
is "$(status_get toronto hub)" "127.0.0.1:$HUB_PORT" "status shows the new hub address"
site_sync toronto "sync after the restart succeeds"
is "$(status_get toronto 'pending changes')" 0 "status: pending changes 0"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title LIKE 'Offline % $U'")" 3 "the 3 offline resources are on the hub"
is "$(hub_sql "SELECT summary FROM resource WHERE id = '$R0'")" "edited during the outage $U" "the offline update is on the hub"
is "$(hub_sql "SELECT count(*) FROM metric_value WHERE site_id = 'toronto' AND period = '2026-Q3'")" 1 "the metric value is on the hub"
is "$(status_get toronto 'synced version')" "$(hub_max_seq)" "synced version = hub max(seq)"
assert_converged toronto
site_sync toronto "one more sync"
is "$(hub_git log --format=%an HEAD 2>&1 | grep -c '^toronto$')" 2 "two toronto commits (before and after the outage), no duplicate"

# ---- a peer that accepts and closes, and one that never answers ------------------------
# fake_peer MODE: a TCP listener on 127.0.0.1:0 (perl core IO::Socket::INET);
# MODE close = accept and close at once, silent = accept and say nothing.
fake_peer() {
    local mode=$1 pf="$E2E_TMP/fake-$1.port" i
    : >"$pf"
    perl -MIO::Socket::INET -e '
        my ($mode, $pf) = @ARGV;
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 5, ReuseAddr => 1) or die "listen: $!";
        open my $f, ">", $pf or die; print $f $s->sockport, "\n"; close $f;
        my @keep; alarm 120;
        while (my $c = $s->accept) { if ($mode eq "close") { close $c } else { push @keep, $c } }
    ' "$mode" "$pf" >/dev/null 2>&1 </dev/null &
    FAKE_PID=$!
    track_pid "$FAKE_PID"
    FAKE_PORT=""
    for i in $(seq 1 50); do
        FAKE_PORT=$(cat "$pf" 2>/dev/null)
        [ -n "$FAKE_PORT" ] && break
        sleep 0.1
    done
}

ok_cmd "a new pending edit" sq "$DB" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'Pending for fake peers $U')"
pending=$(status_get toronto 'pending changes')
before=$(snapshot)

fake_peer close
ok_cmd "point the replica at a peer that closes every connection" sq "$DB" \
    "UPDATE _empact_meta SET value='127.0.0.1:$FAKE_PORT' WHERE key='hub_address'"
expect_rc 75 "sync against a peer that drops the connection exits 75" "$EMPACT" sync "$DB"
is "$(snapshot)" "$before" "... nothing lost"
is "$(status_get toronto 'pending changes')" "$pending" "... still $pending pending"

fake_peer silent
ok_cmd "point the replica at a peer that never answers" sq "$DB" \
    "UPDATE _empact_meta SET value='127.0.0.1:$FAKE_PORT' WHERE key='hub_address'"
t0=$(date +%s)
E2E_TIMEOUT=60 expect_rc 75 "sync against a silent peer exits 75 (handshake timeout)" "$EMPACT" sync "$DB"
t1=$(date +%s)
[ $((t1 - t0)) -le 45 ]; ok $? "... within 45 s (took $((t1 - t0)) s)"
is "$(snapshot)" "$before" "... nothing lost"

ok_cmd "point the replica back at the hub" sq "$DB" \
    "UPDATE _empact_meta SET value='127.0.0.1:$HUB_PORT' WHERE key='hub_address'"
site_sync toronto "sync against the real hub again"
is "$(status_get toronto 'pending changes')" 0 "pending changes 0"
assert_converged toronto

# ---- join against a dead hub, then retry ------------------------------------------------
ok_cmd "add-site ottawa with a dead address" \
    "$EMPACT_HUB" add-site "$HUB_DIR" ottawa --address 127.0.0.1:1 -o "$(site_join_file ottawa)"
expect_rc 75 "join against a dead hub exits 75" "$EMPACT" join "$(site_db ottawa)" "$(site_join_file ottawa)"
[ ! -e "$(site_db ottawa)" ]; ok $? "... and leaves no SITE.db behind, so join can be retried"
rm -f "$(site_db ottawa)" "$(site_db ottawa)"-*
ok_cmd "join --hub overrides the bundle's address" \
    "$EMPACT" join "$(site_db ottawa)" "$(site_join_file ottawa)" --hub "127.0.0.1:$HUB_PORT"
is "$(status_get ottawa hub)" "127.0.0.1:$HUB_PORT" "ottawa's status shows the --hub address"
is "$(sq "$(site_db ottawa)" "SELECT count(*) FROM resource WHERE title LIKE '%$U'")" 5 "ottawa pulled toronto's resources"
assert_converged ottawa

stop_hub
done_testing
