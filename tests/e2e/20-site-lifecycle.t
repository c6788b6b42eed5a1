#!/usr/bin/env bash
# 20-site-lifecycle.t - enrolled sites over their lifetime, on one running hub:
# `empact-hub sites` (table and --json; fingerprint and expiry as openssl sees
# them; last sync; conflicts), `revoke-site` (the next connection is refused
# without a restart, other sites go on), `renew-site` + `empact rejoin` (the
# old certificate stops working, the new one works; bundles for another site
# or from another hub, or readable by others, are refused), and no private
# key in the hub log or in any command's output.
. "$(dirname "$0")/lib.sh"

setup_hub_and_sites toronto ottawa

# json_sites FILTER: perl over `empact-hub sites --json` ($j: the array; %s: by site id).
json_sites() {
    run "$EMPACT_HUB" sites "$HUB_DIR" --json
    [ "$RUN_RC" -eq 0 ] || { diag "sites --json exited $RUN_RC: $RUN_ERR"; return 1; }
    printf '%s' "$RUN_OUT" | perl -MJSON::PP -e '
        local $/; my $j = eval { JSON::PP->new->decode(<STDIN>) };
        exit 2 unless ref $j eq "ARRAY";
        my %s = map { $_->{site_id} => $_ } @$j;
        my $v = eval $ARGV[0]; die $@ if $@;
        print defined $v ? (JSON::PP::is_bool($v) ? ($v ? "true" : "false") : $v) : "null";
    ' "$1"
}
# cert_fp PEMFILE: openssl's SHA-256 fingerprint, in hub.db's form (lowercase hex, no colons).
cert_fp() { openssl x509 -noout -fingerprint -sha256 -in "$1" | sed 's/^.*=//; s/://g' | tr 'A-F' 'a-f'; }
# cert_end PEMFILE: openssl's notAfter as ISO 8601 UTC.
cert_end() { date -u -d "$(openssl x509 -noout -enddate -in "$1" | sed 's/^notAfter=//')" +%Y-%m-%dT%H:%M:%SZ; }
ISO_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'

# ---- command line: --help, usage errors ---------------------------------------------
for sub in sites revoke-site renew-site; do
    run "$EMPACT_HUB" "$sub" --help
    is "$RUN_RC" 0 "empact-hub $sub --help exits 0"
    like "$RUN_OUT" '^usage: empact-hub '"$sub"'.*Exit codes' "... and prints its usage with exit codes"
done
run "$EMPACT" rejoin --help
is "$RUN_RC" 0 "empact rejoin --help exits 0"
like "$RUN_OUT" '^usage: empact rejoin.*Exit codes' "... and prints its usage with exit codes"
run "$EMPACT_HUB" --help
like "$RUN_OUT" 'sites HUBDIR.*revoke-site HUBDIR.*renew-site HUBDIR' "empact-hub --help lists the new commands"
run "$EMPACT" --help
like "$RUN_OUT" 'rejoin SITE\.db FILE\.join' "empact --help lists rejoin"

expect_rc 64 "sites without HUBDIR: 64" "$EMPACT_HUB" sites
expect_rc 64 "sites with an unknown option: 64" "$EMPACT_HUB" sites "$HUB_DIR" --no-such-option
expect_rc 64 "revoke-site without SITE_ID: 64" "$EMPACT_HUB" revoke-site "$HUB_DIR"
expect_rc 64 "revoke-site with an unknown option: 64" "$EMPACT_HUB" revoke-site "$HUB_DIR" ottawa --force
expect_rc 64 "renew-site without -o: 64" "$EMPACT_HUB" renew-site "$HUB_DIR" toronto
expect_rc 64 "renew-site with an unknown option: 64" "$EMPACT_HUB" renew-site "$HUB_DIR" toronto -o x.join --days 3
expect_rc 64 "renew-site -o without its value: 64" "$EMPACT_HUB" renew-site "$HUB_DIR" toronto -o
expect_rc 64 "rejoin without a bundle: 64" "$EMPACT" rejoin "$(site_db toronto)"
expect_rc 64 "rejoin with an unknown option: 64" "$EMPACT" rejoin "$(site_db toronto)" x.join --force
[ ! -e x.join ]; ok $? "usage errors write no bundle"
expect_fail "sites on a directory that is not a hub fails" "$EMPACT_HUB" sites "$E2E_TMP/no-hub"
like "$RUN_ERR" 'no-hub' "... and names it"

# ---- a conflict, so that the conflicts column has something to count ----------------------
rid=$(new_uuid)
ok_cmd "toronto adds a resource" sq "$(site_db toronto)" "INSERT INTO resource(id, title) VALUES ('$rid', 'Toolkit')"
site_sync toronto
site_sync ottawa
ok_cmd "toronto edits its title" sq "$(site_db toronto)" "UPDATE resource SET title = 'Toolkit (Toronto)' WHERE id = '$rid'"
sleep 0.05
ok_cmd "ottawa edits the same title later" sq "$(site_db ottawa)" "UPDATE resource SET title = 'Toolkit (Ottawa)' WHERE id = '$rid'"
site_sync toronto
site_sync ottawa
site_sync toronto "toronto syncs again (receives its conflict)"
nconf=$(hub_sql "SELECT count(*) FROM _empact_conflict")
ok $([ "$nconf" -ge 1 ]; echo $?) "the hub logged the conflict ($nconf entries)"

# ---- sites: table ----------------------------------------------------------------------------
bundle_get "$(site_join_file toronto)" site_cert >toronto1.pem
bundle_get "$(site_join_file ottawa)" site_cert >ottawa1.pem
log_before_sites=$(hub_log_lines)
ok_cmd "empact-hub sites (hub running)" "$EMPACT_HUB" sites "$HUB_DIR"
table=$RUN_OUT
header=$(printf '%s\n' "$table" | head -n 1)
like "$header" '^SITE +NAME +JURISDICTION +CERT SHA-256 +CERT EXPIRES +REVOKED +LAST SYNC +CONFLICTS$' \
    "the table has a header naming every column"
is "$(printf '%s\n' "$table" | wc -l)" 3 "... and one row per site"
trow=$(printf '%s\n' "$table" | grep '^toronto ')
like "$trow" "^toronto +Site toronto +Jurisdiction toronto +$(cert_fp toronto1.pem) +$(cert_end toronto1.pem) +no +[0-9T:-]+Z +[0-9]+$" \
    "toronto's row: name, jurisdiction, fingerprint and expiry as openssl shows them, not revoked, a last sync"
orow=$(printf '%s\n' "$table" | grep '^ottawa ')
like "$orow" "^ottawa +Site ottawa +Jurisdiction ottawa +$(cert_fp ottawa1.pem) " "ottawa's row names its own certificate"
# Aligned: every column of every row starts where its header starts.
aligned=$(printf '%s\n' "$table" | perl -ne '
    chomp; if ($. == 1) { while (/(\S+(?: \S+)*)/g) { push @s, $-[1] } next }
    my @c; while (/(\S+(?: \S+)*)/g) { push @c, $-[1] }
    print "row $.: @c vs @s\n" unless "@c" eq "@s";')
is "$aligned" "" "the table's columns line up under the header"

# ---- sites --json ------------------------------------------------------------------------------
is "$(json_sites 'scalar @$j')" 2 "sites --json: a JSON array of 2 objects"
is "$(json_sites 'join ",", map { $_->{site_id} } @$j')" "ottawa,toronto" "... in site id order"
is "$(json_sites '$s{toronto}{name}')" "Site toronto" "... toronto's name"
is "$(json_sites '$s{toronto}{jurisdiction}')" "Jurisdiction toronto" "... toronto's jurisdiction"
is "$(json_sites '$s{toronto}{cert_sha256}')" "$(cert_fp toronto1.pem)" \
    "... toronto's fingerprint equals openssl x509 -fingerprint -sha256 of the bundle's certificate"
is "$(json_sites '$s{ottawa}{cert_sha256}')" "$(cert_fp ottawa1.pem)" "... so does ottawa's"
is "$(json_sites '$s{toronto}{cert_sha256}')" \
    "$(hub_sql "SELECT fingerprint FROM _empact_site_cert WHERE site_id = 'toronto'")" "... and hub.db's"
is "$(json_sites '$s{toronto}{cert_not_after}')" "$(cert_end toronto1.pem)" \
    "... toronto's expiry equals openssl x509 -enddate of the bundle's certificate"
is "$(json_sites '$s{toronto}{revoked}')" false "... toronto is not revoked (a JSON boolean)"
like "$(json_sites '$s{toronto}{last_sync}')" "$ISO_RE" "... toronto's last sync is an ISO 8601 UTC time"
like "$(json_sites '$s{ottawa}{last_sync}')" "$ISO_RE" "... so is ottawa's"
for id in toronto ottawa; do
    is "$(json_sites "\$s{$id}{conflicts}")" "$(hub_sql "SELECT count(*) FROM _empact_conflict WHERE loser_site = '$id'")" \
        "... $id's conflicts: the conflict log entries it lost"
done
is "$(json_sites '$s{toronto}{conflicts} + $s{ottawa}{conflicts}')" "$nconf" "... every logged conflict is counted once"
is "$(json_sites '$s{toronto}{hub_address}')" "127.0.0.1:$HUB_PORT" "... and the hub address in its bundle"

# A site that never synced shows "never" / null.
site_add lima
is "$(json_sites '$s{lima}{last_sync}')" null "a site that never synced: last_sync is null"
like "$(run "$EMPACT_HUB" sites "$HUB_DIR"; printf '%s\n' "$RUN_OUT" | grep '^lima ')" ' never +0$' "... and 'never' in the table"

# ---- revoke-site while the hub runs -----------------------------------------------------------------
expect_rc 64 "revoke-site of an unknown site id: 64" "$EMPACT_HUB" revoke-site "$HUB_DIR" nowhere
like "$RUN_ERR" 'nowhere.*not registered' "... saying the site is not registered"
expect_rc 64 "revoke-site of an invalid site id: 64" "$EMPACT_HUB" revoke-site "$HUB_DIR" 'No Such/Site'
ok_cmd "revoke-site ottawa (hub running)" "$EMPACT_HUB" revoke-site "$HUB_DIR" ottawa
like "$RUN_OUT" 'revoked site ottawa' "... says so"
ok_cmd "revoke-site ottawa again: still exit 0" "$EMPACT_HUB" revoke-site "$HUB_DIR" ottawa
like "$RUN_OUT" 'already revoked' "... and says it was already revoked"
is "$(json_sites '$s{ottawa}{revoked}')" true "sites --json: ottawa revoked"
like "$(run "$EMPACT_HUB" sites "$HUB_DIR"; printf '%s\n' "$RUN_OUT" | grep '^ottawa ')" ' yes ' "... and 'yes' in the table"

log0=$(hub_log_lines)
ok_cmd "ottawa adds a resource" sq "$(site_db ottawa)" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'After revocation')"
expect_rc 77 "ottawa's next sync is refused by the running hub: 77" "$EMPACT" sync "$(site_db ottawa)"
like "$RUN_ERR" 'revoked' "... with a message saying the site is revoked"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title = 'After revocation'")" 0 "... and nothing of ottawa's reached the hub"
is "$(site_sql ottawa "SELECT count(*) FROM _empact_dirty_resource")" 1 "... its edit is still pending at the site"
sleep 0.3
like "$(hub_log_since "$log0")" 'ottawa.*revoked' "the hub log shows the refusal"
ok_cmd "toronto adds a resource" sq "$(site_db toronto)" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'Toronto after revocation')"
site_sync toronto "toronto still syncs with the same hub"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title = 'Toronto after revocation'")" 1 "... and its push reached the hub"
hub_alive; ok $? "the hub kept running"

# ---- renew-site -----------------------------------------------------------------------------------------
expect_rc 64 "renew-site of a revoked site: 64" "$EMPACT_HUB" renew-site "$HUB_DIR" ottawa -o ottawa2.join
like "$RUN_ERR" 'ottawa is revoked' "... saying it is revoked"
[ ! -e ottawa2.join ]; ok $? "... and writes no bundle"
expect_rc 64 "renew-site of an unknown site: 64" "$EMPACT_HUB" renew-site "$HUB_DIR" nowhere -o nowhere.join
like "$RUN_ERR" 'nowhere.*not registered' "... saying it is not registered"
: >exists.join
expect_rc 64 "renew-site onto an existing file: 64" "$EMPACT_HUB" renew-site "$HUB_DIR" toronto -o exists.join
is "$(json_sites '$s{toronto}{cert_sha256}')" "$(cert_fp toronto1.pem)" "... and toronto's certificate is unchanged"

ok_cmd "renew-site toronto (hub running)" "$EMPACT_HUB" renew-site "$HUB_DIR" toronto -o toronto2.join
renew_out="$RUN_OUT$RUN_ERR"
like "$renew_out" 'rejoin' "... tells how the site installs it"
is "$(file_mode toronto2.join)" 600 "the renewed bundle is mode 0600"
is "$(bundle_get toronto2.join site_id)" toronto "... for site toronto"
is "$(bundle_get toronto2.join hub_address)" "127.0.0.1:$HUB_PORT" "... with the address recorded at enrolment"
bundle_get toronto2.join site_cert >toronto2.pem
isnt "$(cert_fp toronto2.pem)" "$(cert_fp toronto1.pem)" "... holding a new certificate"
isnt "$(bundle_get toronto2.join site_key)" "$(bundle_get "$(site_join_file toronto)" site_key)" "... and a new key"
like "$(openssl x509 -noout -subject -in toronto2.pem)" 'CN *= *toronto' "... issued to CN=toronto"
ok_cmd "... signed by the hub CA" openssl verify -CAfile "$HUB_DIR/ca.pem" toronto2.pem
is "$(json_sites '$s{toronto}{cert_sha256}')" "$(cert_fp toronto2.pem)" "sites: toronto's registered fingerprint is the new one"
is "$(json_sites '$s{toronto}{cert_not_after}')" "$(cert_end toronto2.pem)" "... with the new expiry"

expect_rc 77 "toronto's old certificate is refused: 77" "$EMPACT" sync "$(site_db toronto)"
like "$RUN_ERR" 'did not issue|new join bundle' "... with a message saying the certificate is not the registered one"

# ---- rejoin: refusals first ----------------------------------------------------------------------------
key_before=$(site_sql toronto "SELECT value FROM _empact_meta WHERE key = 'site_key'")
cp toronto2.join open.join && chmod 644 open.join
expect_rc 65 "rejoin with a bundle readable by others (0644): 65" "$EMPACT" rejoin "$(site_db toronto)" open.join
like "$RUN_ERR" 'readable by others.*chmod 600' "... saying so, with the fix"
expect_rc 65 "rejoin toronto's replica with ottawa's bundle: 65" "$EMPACT" rejoin "$(site_db toronto)" "$(site_join_file ottawa)"
like "$RUN_ERR" 'for site ottawa.*replica is site toronto' "... naming both site ids"
# Another hub, with its own CA, that also enrolled a site called toronto.
other="$E2E_TMP/other-hub"
ok_cmd "another hub" "$EMPACT_HUB" init "$other"
ok_cmd "... enrols its own toronto" "$EMPACT_HUB" add-site "$other" toronto --address "127.0.0.1:$HUB_PORT" -o other.join
expect_rc 65 "rejoin with a bundle from another hub's CA: 65" "$EMPACT" rejoin "$(site_db toronto)" other.join
like "$RUN_ERR" 'another hub.*CA' "... saying it comes from another hub's CA"
bundle_set toronto2.join swapped.join site_cert=@ottawa1.pem
expect_rc 65 "rejoin with toronto's site id but ottawa's certificate: 65" "$EMPACT" rejoin "$(site_db toronto)" swapped.join
like "$RUN_ERR" 'not issued to site toronto' "... saying the certificate is not toronto's"
bundle_get "$(site_join_file toronto)" site_key >oldkey.pem
bundle_set toronto2.join mixed.join site_key=@oldkey.pem
expect_rc 65 "rejoin with a key that is not the certificate's: 65" "$EMPACT" rejoin "$(site_db toronto)" mixed.join
head -c 300 toronto2.join >cut.join
expect_rc 65 "rejoin with a truncated bundle: 65" "$EMPACT" rejoin "$(site_db toronto)" cut.join
expect_fail "rejoin into a missing replica fails" "$EMPACT" rejoin "$E2E_TMP/none.db" toronto2.join
[ ! -e "$E2E_TMP/none.db" ]; ok $? "... and creates no file"
is "$(site_sql toronto "SELECT value FROM _empact_meta WHERE key = 'site_key'")" "$key_before" \
    "after the refusals the replica still holds its old key"

# ---- rejoin, then sync --------------------------------------------------------------------------------------
ok_cmd "empact rejoin with the renewed bundle" "$EMPACT" rejoin "$(site_db toronto)" toronto2.join
rejoin_out="$RUN_OUT$RUN_ERR"
like "$rejoin_out" 'installed the renewed certificate' "... says what it did"
is "$(site_sql toronto "SELECT value FROM _empact_meta WHERE key = 'site_cert'")" "$(bundle_get toronto2.join site_cert)" \
    "... the replica now holds the new certificate"
is "$(site_sql toronto "SELECT value FROM _empact_meta WHERE key = 'site_key'")" "$(bundle_get toronto2.join site_key)" \
    "... and the new key"
ok_cmd "rejoin again with the same bundle: exit 0" "$EMPACT" rejoin "$(site_db toronto)" toronto2.join
like "$RUN_OUT" 'already installed' "... saying it was already installed"
ok_cmd "toronto adds a resource" sq "$(site_db toronto)" "INSERT INTO resource(id, title) VALUES ('$(new_uuid)', 'After renewal')"
site_sync toronto "toronto syncs with its renewed certificate"
is "$(hub_sql "SELECT count(*) FROM resource WHERE title = 'After renewal'")" 1 "... and its push reached the hub"
expect_rc 77 "ottawa is still refused" "$EMPACT" sync "$(site_db ottawa)"

# ---- renew-site --address, rejoin --hub ----------------------------------------------------------------------
ok_cmd "renew-site --address writes that address" "$EMPACT_HUB" renew-site "$HUB_DIR" toronto -o toronto3.join \
    --address "localhost:$HUB_PORT"
is "$(bundle_get toronto3.join hub_address)" "localhost:$HUB_PORT" "... into the bundle"
is "$(json_sites '$s{toronto}{hub_address}')" "localhost:$HUB_PORT" "... and remembers it"
ok_cmd "rejoin --hub keeps the address given" "$EMPACT" rejoin "$(site_db toronto)" toronto3.join --hub "127.0.0.1:$HUB_PORT"
is "$(site_sql toronto "SELECT value FROM _empact_meta WHERE key = 'hub_address'")" "127.0.0.1:$HUB_PORT" "... in the replica"
expect_rc 64 "rejoin --hub with a bad address: 64" "$EMPACT" rejoin "$(site_db toronto)" toronto3.join --hub nonsense
site_sync toronto "toronto syncs after a second renewal"

# ---- last sync moves; keys stay private ---------------------------------------------------------------------------
is "$(json_sites '$s{toronto}{last_sync}')" "$(hub_sql "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', synced_at, 'unixepoch') FROM _empact_site_seen WHERE site_id = 'toronto'")" \
    "toronto's last sync is the time hub.db recorded"
for f in "$(site_join_file toronto)" "$(site_join_file ottawa)" toronto2.join toronto3.join "$(site_db toronto)" \
    "$HUB_DIR/ca.key" "$HUB_DIR/hub.key"; do
    is "$(file_mode "$f")" 600 "$(basename "$f") is mode 0600"
done
unlike "$table$renew_out$rejoin_out" 'PRIVATE KEY' "no command printed a private key"
stop_hub
unlike "$(hub_log)" 'PRIVATE KEY' "the hub log holds no private key material"
unlike "$(hub_log)" "$(bundle_get toronto2.join site_key | sed -n 2p)" "... nor a line of toronto's key"

done_testing
