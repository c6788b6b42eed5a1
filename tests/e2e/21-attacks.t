#!/usr/bin/env bash
# 21-attacks.t - hostile peers (issue #5): each is refused with a clear error
# (the hub's log line, and the error frame or message the peer gets), and the
# hub goes on serving another site normally.
#
# Crafted frames are sent over mutual TLS 1.3 with `openssl s_client` as site
# alpha (its certificate and key taken from its join bundle); site beta is the
# well-behaved one.  Cases: no client certificate, an expired certificate
# (registered, so only the date can refuse it), a first frame over the HELLO
# limit, a wrong schema fingerprint, a frame over FRAME_MAX, a frame cut short,
# a zstd bomb, a changeset of garbage bytes, an idle and a trickling
# (slowloris) connection while beta syncs, more connections from one address
# than MAX_CONN_PER_IP, a world-readable join bundle, and well-formed
# changesets for a local table, a hub table and another site's owned row.  (A
# truncated join bundle is in 01-cli.t; a foreign CA in 03; TLS 1.2 in 04; the
# site-side triggers against owned and hub writes in 08.)
#
# Test builds shorten the hub's limits through the environment
# (common/testpoint.h), so the timeouts take seconds: idle 2 s, frame 3 s.
. "$(dirname "$0")/lib.sh"

require_test_hooks

export EMPACT_IDLE_TIMEOUT_MS=2000 EMPACT_FRAME_DEADLINE_MS=3000 EMPACT_MAX_CONN_PER_IP=6
setup_hub_and_sites alpha beta

bundle_get "$(site_join_file alpha)" site_cert >alpha.pem &&
    bundle_get "$(site_join_file alpha)" site_key >alpha.key && chmod 600 alpha.key
ok $? "alpha's certificate and key from its join bundle" || give_up "alpha's credentials"

# ---- bytes and frames --------------------------------------------------------------
# bytes N...: the bytes of these values; u32 / u64 N: big-endian.
bytes() {
    local b
    for b in "$@"; do printf "\\x$(printf %02x "$b")"; done
}
u32() { bytes $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
u64() { u32 $(($1 >> 32)); u32 $(($1 & 0xffffffff)); }
# frame TYPE FILE: a frame carrying FILE as its payload (common/PROTOCOL.md).
frame() { u32 "$(stat -c %s "$2")"; bytes "$1"; cat "$2"; }

# HELLO: protocol 5, the schema fingerprint of the bundle (or 32 zero bytes),
# no dictionary; the same from a protocol-4 client (same bytes, one-level
# shard trees); and as a protocol-3 client sent it (no dictionary id).
FP=$(bundle_get "$(site_join_file alpha)" schema | sed 's/../\\x&/g')
{ bytes 0 5; printf '%b' "$FP"; u32 0; } >hello.pl
{ bytes 0 5; head -c 32 /dev/zero; u32 0; } >hello-zero.pl
{ bytes 0 4; printf '%b' "$FP"; u32 0; } >hello-v4.pl
{ bytes 0 3; printf '%b' "$FP"; } >hello-v3.pl
frame 1 hello.pl >hello.bin
frame 1 hello-zero.pl >hello-zero.bin
frame 1 hello-v4.pl >hello-v4.bin
frame 1 hello-v3.pl >hello-v3.bin
is "$(stat -c %s hello.bin)" 43 "a HELLO frame is 43 bytes"
# A zstd frame (RFC 8878) without content size: 16 RLE blocks of 128 KiB of 'A'
# (2 MiB); and a one-segment frame holding a raw block of the bytes given.
{ bytes 0x28 0xb5 0x2f 0xfd 0 0x38; for i in $(seq 15); do bytes 2 0 0x10 0x41; done; bytes 3 0 0x10 0x41; } >bomb.zst
# PUSH: 32-byte push id, base 0, raw length, n, then one zstd frame of the n
# edit times (u64 each) followed by the changeset.
push() { # RAWLEN N ZFILE
    { head -c 32 /dev/urandom; u64 0; u32 "$1"; u32 "$2"; cat "$3"; } >push.pl
    frame 16 push.pl
}
# payload N CHANGESET OUT: the zstd frame of N edit times and the changeset file.
payload() {
    { for ((i = 0; i < $1; i++)); do u64 1700000000000; done; cat "$2"; } >"$3.raw"
    zstd -q -c --no-check "$3.raw" >"$3"
}
GARBAGE='this is not a changeset'
printf '%s' "$GARBAGE" >garbage.cs
payload 1 garbage.cs garbage.zst
push 4096 0 bomb.zst >push-bomb.bin
push $((8 + ${#GARBAGE})) 1 garbage.zst >push-garbage.bin
{ u64 0; u64 0; u64 0; } >pull.pl
frame 32 pull.pl >pull.bin
{ u32 $((32 * 1024 * 1024 + 1)); bytes 16; } >over-frame-max.bin
{ u32 1000; bytes 1; head -c 100 /dev/zero; } >over-hello-max.bin
{ u32 100; bytes 32; head -c 10 /dev/zero; } >cut-short.bin

# as_site CERT KEY STEP...: s_client (TLS 1.3; client certificate CERT/KEY,
# none if CERT is -) fed by the STEPs: a file (sent as is) or +SECS (a pause).
# Its stdin closes 1 s after the last step, and s_client closes with it.
# RUN_OUT is what the hub sent back (NUL bytes dropped), RUN_RC its status.
as_site() {
    local cert=$1 key=$2 s feed="sleep 0.5;" auth=""
    shift 2
    for s in "$@"; do
        case $s in +*) feed="$feed sleep ${s#+};" ;; *) feed="$feed cat '$s';" ;; esac
    done
    [ "$cert" = - ] || auth="-cert '$cert' -key '$key'"
    E2E_TIMEOUT=20 run bash -c "{ $feed sleep 1; } | openssl s_client -quiet -no_ign_eof -tls1_3 \
        -connect 127.0.0.1:$HUB_PORT -servername empact-hub -CAfile '$HUB_DIR/ca.pem' $auth"
}

# hub_says LOG0 ERE DESC: the hub's log after its first LOG0 lines matches ERE.
hub_says() { sleep 0.3; like "$(hub_log_since "$1")" "$2" "$3"; }

# still_serves WHAT: beta edits and syncs, and its row reaches the hub.
NSERVED=0
still_serves() {
    NSERVED=$((NSERVED + 1))
    sq "$(site_db beta)" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'served $NSERVED')" ||
        fail "beta edits a resource"
    site_sync beta "the hub still serves beta after $1"
    is "$(hub_sql "SELECT count(*) FROM resource WHERE title = 'served $NSERVED'")" 1 \
        "... and beta's edit is on the hub"
}

# ---- control: a well-formed HELLO as alpha gets a WELCOME ---------------------------
as_site alpha.pem alpha.key hello.bin
is "$RUN_OUT_BYTES" 19 "control: s_client as alpha gets a 19-byte WELCOME frame for its HELLO"

# ---- clients of protocols 3 and 4 ---------------------------------------------------
# (protocol 3 had no dictionary field; protocol 4 the same bytes as 5 and
# one-level shard trees)
for v in 3 4; do
    log0=$(hub_log_lines)
    as_site alpha.pem alpha.key "hello-v$v.bin"
    like "$RUN_OUT" "hub speaks protocol 5 but this client speaks $v; update the client" \
        "a protocol-$v HELLO gets an ERROR naming both protocols (not a bad frame)"
    hub_says "$log0" "alpha .*refused at hello: hub speaks protocol 5 but this client speaks $v" \
        "the hub logs the protocol-$v mismatch"
done

# ---- no client certificate -----------------------------------------------------------
log0=$(hub_log_lines)
as_site - - hello.bin
isnt "$RUN_RC" 0 "no client certificate: s_client fails"
like "$RUN_OUT$RUN_ERR" 'certificate required|alert' "... the hub's alert says a certificate is required"
is "$RUN_OUT_BYTES" 0 "... and no frame comes back"
hub_says "$log0" 'refused: .*(did not return a certificate|presented no certificate)' \
    "the hub logs the connection without a certificate"
still_serves "a peer without a certificate"

# ---- an expired certificate (signed by the hub CA, registered for site old) -----------
site_add old || give_up "add-site old"
printf '%s\n' '[ca]' 'default_ca = c' '[c]' 'database = index.txt' 'new_certs_dir = .' \
    'serial = serial' 'default_md = sha256' 'policy = p' '[p]' 'commonName = supplied' \
    '[ext]' 'basicConstraints = CA:FALSE' 'keyUsage = critical, digitalSignature' \
    'extendedKeyUsage = clientAuth' >ca.cnf
: >index.txt
echo 1001 >serial
run openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout old.key \
    -out old.csr -subj /CN=old
rc=$RUN_RC
[ "$rc" -eq 0 ] && run openssl ca -batch -notext -config ca.cnf -cert "$HUB_DIR/ca.pem" \
    -keyfile "$HUB_DIR/ca.key" -in old.csr -out old.pem -extensions ext \
    -startdate 20200101000000Z -enddate 20200201000000Z && rc=$RUN_RC
ok "$rc" "openssl ca made a clientAuth certificate for CN=old valid only in January 2020" ||
    diag "$RUN_ERR"
like "$(openssl x509 -in old.pem -noout -enddate 2>&1)" 'Feb  1 00:00:00 2020' "... it expired in 2020"
fp=$(openssl x509 -in old.pem -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
hub_sql "UPDATE _empact_site_cert SET fingerprint = '$fp' WHERE site_id = 'old'"
ok $? "the hub registers that certificate for old (so only its dates can refuse it)"
bundle_set "$(site_join_file old)" old-expired.join site_cert=@old.pem site_key=@old.key
log0=$(hub_log_lines)
expect_rc 77 "join with the expired certificate: 77 (refused by the hub)" \
    "$EMPACT" join old.db old-expired.join
like "$RUN_ERR" 'refused this site.s certificate|certificate' "... and says the hub refused the certificate"
[ ! -e old.db ]; ok $? "... and leaves no SITE.db behind"
hub_says "$log0" 'refused: .*expired' "the hub logs that the certificate has expired"
still_serves "an expired certificate"

# ---- a first frame over the HELLO limit ------------------------------------------------
log0=$(hub_log_lines)
as_site alpha.pem alpha.key over-hello-max.bin
is "$RUN_OUT_BYTES" 0 "a 1000-byte first frame gets no WELCOME"
hub_says "$log0" 'refused at hello: frame of 1000 bytes exceeds the limit of 64 bytes' \
    "the hub logs the first frame over the 64-byte limit"
still_serves "a first frame over the HELLO limit"

# ---- a wrong schema fingerprint --------------------------------------------------------
log0=$(hub_log_lines)
as_site alpha.pem alpha.key hello-zero.bin
like "$RUN_OUT" "schema 000000000000 differs from the hub's" \
    "a HELLO with a wrong schema gets an ERROR frame naming both fingerprints"
hub_says "$log0" 'alpha .*refused at hello: .*schema 000000000000 differs' \
    "the hub logs the schema mismatch"
still_serves "a wrong schema fingerprint"

# ---- a frame over FRAME_MAX --------------------------------------------------------------
log0=$(hub_log_lines)
as_site alpha.pem alpha.key hello.bin +0.3 over-frame-max.bin
like "$RUN_OUT" 'frame of 33554433 bytes exceeds the limit of 33554432 bytes' \
    "a frame over 32 MiB gets an ERROR frame (TOO_LARGE) saying so"
hub_says "$log0" 'site alpha: connection ended: frame of 33554433 bytes exceeds the limit' \
    "the hub logs the frame over the limit"
still_serves "a frame over the size limit"

# ---- a frame cut short -------------------------------------------------------------------
log0=$(hub_log_lines)
as_site alpha.pem alpha.key hello.bin +0.3 cut-short.bin
hub_says "$log0" 'site alpha: connection ended: .*(closed by the peer|lost) while reading' \
    "a frame cut short by the peer closing: the hub logs the connection lost mid-frame"
still_serves "a frame cut short"

# ---- a zstd bomb -------------------------------------------------------------------------------
log0=$(hub_log_lines)
v0=$(hub_max_seq)
as_site alpha.pem alpha.key hello.bin +0.3 push-bomb.bin
like "$RUN_OUT" 'expands to more than the 4096 bytes allowed' \
    "a PUSH whose 100-byte zstd payload expands to 2 MiB (4096 announced) gets an ERROR frame"
hub_says "$log0" 'site alpha: push refused: compressed payload expands to more than the 4096 bytes' \
    "the hub logs the refused zstd bomb"
is "$(hub_max_seq)" "$v0" "... and made no version of it"
still_serves "a zstd bomb"

# ---- a changeset of garbage bytes ------------------------------------------------------------
log0=$(hub_log_lines)
v0=$(hub_max_seq)
as_site alpha.pem alpha.key hello.bin +0.3 push-garbage.bin
like "$RUN_OUT" '[Cc]hangeset|refused|not valid' "a PUSH of garbage bytes gets an ERROR frame"
hub_says "$log0" 'site alpha: push refused: ' "the hub logs the refused garbage changeset"
is "$(hub_max_seq)" "$v0" "... and made no version of it"
still_serves "a changeset of garbage bytes"

# ---- well-formed changesets a site may not push ------------------------------------------------
# Made with the sqlite3 shell's session extension on a scratch copy of alpha's
# tables, so only the hub's class and owner guard stands between them and hub.db:
# a row of a confidential (local) table, a row of a hub-class table, and an owned
# row of another site.  Each must be refused whole, logged, and leave no version.
crafted() { # NAME TABLE SQL: a PUSH frame of the changeset SQL makes on TABLE
    local db=$1.db
    rm -f "$db" "$1.cs"
    sq "$db" "$(sq "$(site_db alpha)" "SELECT sql FROM sqlite_schema WHERE name = '$2'");" &&
        sq "$db" ".session open main s" ".session s attach $2" "$3" ".session s changeset $1.cs" ||
        fail "crafting the $1 changeset"
    payload 1 "$1.cs" "$1.zst"
    push $((8 + $(stat -c %s "$1.cs"))) 1 "$1.zst" >"$1.bin"
}
crafted local member "INSERT INTO member (id, name) VALUES (1, 'LOCALCANARY-$$')"
crafted hubclass metric "INSERT INTO metric (code, name, unit) VALUES ('forged', 'Forged metric', 'count')"
crafted owned metric_value "INSERT INTO metric_value (site_id, metric, period, value) VALUES ('beta', 'heas_completed', '2099-Q1', 99)"
for c in "local|confidential to the site and must never leave it" \
    "hubclass|only the central team may change" \
    "owned|belongs to another site"; do
    name=${c%%|*} why=${c#*|}
    log0=$(hub_log_lines)
    v0=$(hub_max_seq)
    as_site alpha.pem alpha.key hello.bin +0.3 "$name.bin"
    like "$RUN_OUT" "$why" "a PUSH of a well-formed $name-row changeset gets an ERROR frame saying why"
    hub_says "$log0" "site alpha: push refused: .*$why" "... the hub logs it"
    is "$(hub_max_seq)" "$v0" "... and made no version of it"
done
is "$(hub_sql "SELECT count(*) FROM metric WHERE code = 'forged'")|$(hub_sql "SELECT count(*) FROM metric_value WHERE period = '2099-Q1'")" \
    "0|0" "neither the forged metric nor beta's forged row is in hub.db"
is "$(grep -rl --binary-files=text "LOCALCANARY-$$" "$HUB_DIR" | wc -l)" 0 "the local row's text is nowhere under the hub's directory"
still_serves "refused class and owner writes"

# ---- idle and trickling connections while beta syncs ------------------------------------------
# idle: handshake, then nothing; trickle: HELLO, then a PULL frame one byte a
# second (21 s in all if the hub let it).  Both must be dropped at the hub's
# bounds (idle 2 s, frame 3 s) while beta syncs normally.
# Each s_client's feeder stops once s_client has ended (FILE.end, in ns).
log0=$(hub_log_lines)
ns() { date +%s%N; }
(
    while [ ! -e idle.end ]; do sleep 0.2; done |
        { timeout 20 openssl s_client -quiet -tls1_3 -connect "127.0.0.1:$HUB_PORT" \
            -servername empact-hub -CAfile "$HUB_DIR/ca.pem" -cert alpha.pem -key alpha.key \
            >idle.out 2>&1; ns >idle.end; }
) &
idle_pid=$!
track_pid "$idle_pid"
ns >idle.start
(
    { sleep 0.5; cat hello.bin; sleep 0.5; ns >trickle.start
      for ((i = 0; i < 21; i++)); do
          [ -e trickle.end ] && break
          head -c $((i + 1)) pull.bin | tail -c 1; sleep 1
      done; } |
        { timeout 30 openssl s_client -quiet -tls1_3 -connect "127.0.0.1:$HUB_PORT" \
            -servername empact-hub -CAfile "$HUB_DIR/ca.pem" -cert alpha.pem -key alpha.key \
            >trickle.out 2>&1; ns >trickle.end; }
) &
trickle_pid=$!
track_pid "$trickle_pid"
sleep 1.2
kill -0 "$idle_pid" 2>/dev/null && kill -0 "$trickle_pid" 2>/dev/null
ok $? "an idle and a trickling connection are open"
still_serves "(while) an idle and a trickling connection are open"
wait_bounded "$idle_pid" 25
untrack_pid "$idle_pid"
wait_bounded "$trickle_pid" 35
untrack_pid "$trickle_pid"
elapsed_ms() { # NAME: NAME.end - NAME.start in ms, -1 if unknown
    local a b
    a=$(cat "$1.start" 2>/dev/null) && b=$(cat "$1.end" 2>/dev/null) && echo $(((b - a) / 1000000)) || echo -1
}
idle_ms=$(elapsed_ms idle)
trickle_ms=$(elapsed_ms trickle)
[ "$idle_ms" -ge 1500 ] && [ "$idle_ms" -lt 8000 ]
ok $? "the idle connection is closed by the hub after the 2 s idle timeout (${idle_ms} ms)"
[ "$trickle_ms" -ge 2500 ] && [ "$trickle_ms" -lt 9000 ]
ok $? "the trickling connection is closed at the 3 s frame deadline, not after 21 s (${trickle_ms} ms)"
hub_says "$log0" 'timed out after 2000 ms without progress while reading' \
    "the hub logs the idle connection's timeout"
like "$(hub_log_since "$log0")" 'site alpha: connection ended: .*did not send a whole frame within 3000 ms' \
    "the hub logs the trickling connection's frame deadline"
still_serves "an idle and a trickling connection"

# ---- more connections from one address than MAX_CONN_PER_IP (6 here) ---------------------------
log0=$(hub_log_lines)
fds=()
for i in 1 2 3 4 5 6; do
    exec {fd}<>"/dev/tcp/127.0.0.1/$HUB_PORT" && fds+=("$fd")
done
is "${#fds[@]}" 6 "six TCP connections to the hub from 127.0.0.1 (silent)"
sleep 0.5
expect_rc 75 "a sync while they are open is refused at once: 75 (retry later)" \
    "$EMPACT" sync "$(site_db beta)"
like "$RUN_ERR" 'hub' "... and says the hub connection failed"
hub_says "$log0" 'refused: 6 connections from 127\.0\.0\.1 already open' \
    "the hub logs the refusal over the per-address limit"
for fd in "${fds[@]}"; do exec {fd}>&-; done
sleep 0.5
still_serves "the per-address limit"

# ---- a join bundle others can read ------------------------------------------------------------
site_add gamma || give_up "add-site gamma"
chmod 644 "$(site_join_file gamma)"
expect_rc 65 "join with a world-readable bundle: 65" "$EMPACT" join gamma.db "$(site_join_file gamma)"
like "$RUN_ERR" '[Rr]eadable|permission|mode|0600' "... and says the bundle's permissions are wrong"
[ ! -e gamma.db ]; ok $? "... and leaves no SITE.db behind"
chmod 600 "$(site_join_file gamma)"
site_join gamma
site_sync beta "beta syncs once more"

kill -0 "$HUB_PID" 2>/dev/null; ok $? "the hub is still running"
assert_converged beta gamma
stop_hub
done_testing
