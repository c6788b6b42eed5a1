#!/usr/bin/env bash
# 03-foreign-ca.t - a certificate from another CA, even with a registered site's
# CN, is refused during the TLS handshake: `empact join` exits 77, the hub logs
# the refusal, openssl s_client gets an alert, and the hub keeps serving.
. "$(dirname "$0")/lib.sh"

hub_init || give_up "hub init"
start_hub "$HUB_DIR" || give_up "hub start"
site_add toronto || give_up "add-site toronto"

# ---- a foreign CA and a client certificate for CN=toronto ------------------------------
ossl() { run openssl "$@"; [ "$RUN_RC" -eq 0 ] || { diag "openssl $*" "$RUN_ERR"; return 1; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout foreign-ca.key -out foreign-ca.pem -subj /CN=foreign-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign &&
    ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout foreign.key -out foreign.csr -subj /CN=toronto &&
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext &&
    ossl x509 -req -in foreign.csr -CA foreign-ca.pem -CAkey foreign-ca.key -set_serial 4242 \
        -days 30 -extfile client.ext -out foreign.pem
ok $? "openssl made a foreign CA and a clientAuth certificate with CN=toronto" || give_up "openssl"
expect_fail "the foreign certificate does not verify against the hub CA (sanity)" \
    openssl verify -CAfile "$HUB_DIR/ca.pem" foreign.pem

bundle_set "$(site_join_file toronto)" foreign.join site_cert=@foreign.pem site_key=@foreign.key
ok $? "a join bundle with the foreign certificate and key"

# ---- empact join with it: refused ---------------------------------------------------------
log0=$(hub_log_lines)
expect_rc 77 "join with a foreign-CA certificate: 77 (refused)" "$EMPACT" join foreign.db foreign.join
[ ! -e foreign.db ]; ok $? "... and leaves no SITE.db behind"
like "$RUN_ERR" '.' "... and says why on stderr"
sleep 0.3
newlog=$(hub_log_since "$log0")
like "$newlog" '[Rr]efus|[Rr]eject|[Vv]erif|[Cc]ertificate|[Hh]andshake|[Uu]nknown ca|[Dd]enied' \
    "the hub log mentions the refused handshake"
is "$(hub_max_seq)" 2 "nothing reached the hub"

# ---- openssl s_client with the foreign certificate -----------------------------------------
# In TLS 1.3 the client finishes its side of the handshake before the hub has
# checked the client certificate: -ign_eof makes s_client wait for the hub's
# verdict (an alert) instead of leaving at once on its empty stdin.
log0=$(hub_log_lines)
E2E_TIMEOUT=20 run openssl s_client -ign_eof -connect "127.0.0.1:$HUB_PORT" -servername empact-hub \
    -cert foreign.pem -key foreign.key -CAfile "$HUB_DIR/ca.pem"
sc="$RUN_OUT
$RUN_ERR"
isnt "$RUN_RC" 0 "s_client with the foreign certificate fails"
isnt "$RUN_RC" 124 "... without hanging"
like "$sc" '[Aa]lert|[Cc]onnection reset|errno=104|unexpected eof' \
    "... the hub aborts the session (s_client sees an alert)"
diag "s_client: $(printf '%s\n' "$sc" | grep -iE 'alert|error|New,' | head -n 3)"
sleep 0.3
like "$(hub_log_since "$log0")" '[Rr]efus|[Rr]eject|[Vv]erif|[Cc]ertificate|[Hh]andshake|[Uu]nknown ca|[Dd]enied' \
    "the hub log shows the refused handshake"

# Same again, but try to send a frame after the handshake: no reply may come back.
# (Positive control: with the real site certificate the hub answers that
# malformed frame with an error frame, so "no reply" is meaningful.)
send_frame() {
    run bash -c "{ sleep 1; printf '\\000\\000\\000\\001\\001x'; sleep 1; } | openssl s_client -quiet \\
        -connect 127.0.0.1:$HUB_PORT -servername empact-hub -cert '$1' -key '$2' \\
        -CAfile '$HUB_DIR/ca.pem'"
}
bundle_get "$(site_join_file toronto)" site_cert >good.pem && bundle_get "$(site_join_file toronto)" site_key >good.key
send_frame good.pem good.key
isnt "$RUN_OUT_BYTES" 0 "control: with the real certificate the hub answers a malformed frame"
send_frame foreign.pem foreign.key
isnt "$RUN_RC" 0 "s_client sending data with the foreign certificate fails"
is "$RUN_OUT_BYTES" 0 "... and receives no application data"

# ---- no client certificate at all ---------------------------------------------------------------
E2E_TIMEOUT=20 run openssl s_client -ign_eof -connect "127.0.0.1:$HUB_PORT" -servername empact-hub -CAfile "$HUB_DIR/ca.pem"
isnt "$RUN_RC" 0 "s_client with no client certificate fails"
like "$RUN_OUT$RUN_ERR" '[Aa]lert|[Cc]onnection reset|errno=104|unexpected eof' "... with an alert"

# ---- certificates from the hub's own CA that the hub never issued to a site ----------------
# Made with the hub's ca.key, as an attacker holding a copy of it (or a bug in
# add-site) could: the hub must still refuse a site id it never registered and a
# second certificate for a registered site (it pins each site's certificate).
mk_hub_signed() { # CN OUTBASE
    ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$2.key" -out "$2.csr" -subj "/CN=$1" &&
        ossl x509 -req -in "$2.csr" -CA "$HUB_DIR/ca.pem" -CAkey "$HUB_DIR/ca.key" \
            -set_serial "$RANDOM$RANDOM" -days 30 -extfile client.ext -out "$2.pem"
}
mk_hub_signed rogue rogue && mk_hub_signed toronto toronto2
ok $? "openssl signed a CN=rogue and a second CN=toronto certificate with the hub CA"
ok_cmd "sanity: they verify against the hub CA" openssl verify -CAfile "$HUB_DIR/ca.pem" rogue.pem toronto2.pem

bundle_set "$(site_join_file toronto)" rogue.join site_id=rogue site_cert=@rogue.pem site_key=@rogue.key
log0=$(hub_log_lines)
expect_rc 77 "join as an unregistered site id (CA-signed): 77" "$EMPACT" join rogue.db rogue.join
[ ! -e rogue.db ]; ok $? "... and leaves no SITE.db behind"
sleep 0.3
like "$(hub_log_since "$log0")" 'rogue' "the hub log names the refused site"

bundle_set "$(site_join_file toronto)" toronto2.join site_cert=@toronto2.pem site_key=@toronto2.key
expect_rc 77 "join as toronto with a certificate the hub did not issue to toronto: 77" \
    "$EMPACT" join toronto2.db toronto2.join
is "$(hub_max_seq)" 2 "still nothing reached the hub"

# ---- the hub still serves the good site -----------------------------------------------------
kill -0 "$HUB_PID" 2>/dev/null; ok $? "the hub is still running"
site_join toronto
ok_cmd "toronto adds a resource" sq "$(site_db toronto)" \
    "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'After the foreign CA')"
site_sync toronto "toronto syncs after the refusals"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title='After the foreign CA'")" 1 "the good site's push reached the hub"
assert_converged toronto

stop_hub
done_testing
