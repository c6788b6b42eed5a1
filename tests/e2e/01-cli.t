#!/usr/bin/env bash
# 01-cli.t - the command-line contract: --help, usage errors (64), exit codes for
# missing / bad files, what `init` and `add-site` leave on disk.  No hub is served.
. "$(dirname "$0")/lib.sh"

# ---- --help everywhere: exit 0, usage on stdout --------------------------------
check_help() {
    run "$@" --help
    is "$RUN_RC" 0 "'$(basename "$1")${2:+ }${*:2} --help' exits 0" || _diag_run_output
    like "$RUN_OUT" '[Uu][Ss][Aa][Gg][Ee]' "'$(basename "$1")${2:+ }${*:2} --help' prints usage on stdout"
}
check_help "$EMPACT"
for sub in join sync status; do check_help "$EMPACT" "$sub"; done
check_help "$EMPACT_HUB"
for sub in init add-site serve; do check_help "$EMPACT_HUB" "$sub"; done

# ---- usage errors: 64 ------------------------------------------------------------
expect_rc 64 "empact with no arguments: 64" "$EMPACT"
expect_rc 64 "empact-hub with no arguments: 64" "$EMPACT_HUB"
expect_rc 64 "empact unknown command: 64" "$EMPACT" frobnicate
expect_rc 64 "empact-hub unknown command: 64" "$EMPACT_HUB" frobnicate
expect_rc 64 "empact unknown global option: 64" "$EMPACT" --no-such-option
expect_rc 64 "empact-hub unknown global option: 64" "$EMPACT_HUB" --no-such-option
expect_rc 64 "empact sync unknown option: 64" "$EMPACT" sync x.db --no-such-option
expect_rc 64 "empact status unknown option: 64" "$EMPACT" status x.db --no-such-option
expect_rc 64 "empact join unknown option: 64" "$EMPACT" join x.db x.join --no-such-option
[ ! -e x.db ]; ok $? "a usage error creates no replica"
expect_rc 64 "empact sync without SITE.db: 64" "$EMPACT" sync
expect_rc 64 "empact join without a bundle: 64" "$EMPACT" join x.db
expect_rc 64 "empact-hub init unknown option: 64" "$EMPACT_HUB" init "$E2E_TMP/h0" --no-such-option
[ ! -e "$E2E_TMP/h0/hub.db" ]; ok $? "a usage error creates no hub"
expect_rc 64 "empact-hub init without HUBDIR: 64" "$EMPACT_HUB" init
expect_rc 64 "empact-hub serve unknown option: 64" "$EMPACT_HUB" serve "$E2E_TMP/h0" --no-such-option
for bad in 0 257 abc ""; do
    expect_rc 64 "empact-hub serve --max-per-ip '$bad': 64" "$EMPACT_HUB" serve "$E2E_TMP/h0" --max-per-ip "$bad"
done
like "$RUN_ERR" "max-per-ip takes a number from 1 to 256" "... and says what it takes"
expect_rc 64 "empact-hub add-site unknown option: 64" \
    "$EMPACT_HUB" add-site "$E2E_TMP/h0" toronto --address 127.0.0.1:1 -o t.join --no-such-option
expect_rc 64 "empact-hub add-site --address without its value: 64" \
    "$EMPACT_HUB" add-site "$E2E_TMP/h0" toronto -o t.join --address

# ---- status / sync on files that are not replicas ----------------------------------
missing="$E2E_TMP/no-such-site.db"
expect_fail "empact status on a missing file fails" "$EMPACT" status "$missing"
isnt "$RUN_RC" 64 "... and it is not reported as a usage error"
like "$RUN_ERR" 'no-such-site\.db' "... and stderr names the file"
[ ! -e "$missing" ]; ok $? "... and the missing file was not created"
expect_fail "empact sync on a missing file fails" "$EMPACT" sync "$missing"
like "$RUN_ERR" 'no-such-site\.db' "... and stderr names the file"
[ ! -e "$missing" ]; ok $? "... and the missing file was not created"

sq "$E2E_TMP/plain.db" "CREATE TABLE t(x); INSERT INTO t VALUES (1);"
expect_rc 65 "empact status on an SQLite file that is not a replica: 65" "$EMPACT" status "$E2E_TMP/plain.db"
like "$RUN_ERR" 'plain\.db' "... and stderr names the file"
expect_rc 65 "empact sync on an SQLite file that is not a replica: 65" "$EMPACT" sync "$E2E_TMP/plain.db"
is "$(sq "$E2E_TMP/plain.db" "SELECT group_concat(name) FROM sqlite_master")" "t" \
    "... and the file was left as it was (no tables added)"
printf 'this is not a database, just text\n%.0s' $(seq 1 200) >"$E2E_TMP/text.db"
expect_rc 65 "empact status on a text file: 65" "$EMPACT" status "$E2E_TMP/text.db"

# ---- hub init ----------------------------------------------------------------------------
hub_init || give_up "hub init"
for f in hub.db ca.pem ca.key hub.pem hub.key; do
    [ -s "$HUB_DIR/$f" ]; ok $? "init created $f"
done
[ -d "$HUB_DIR/history.git" ]; ok $? "init created history.git"
is "$(file_mode "$HUB_DIR/ca.key")" 600 "ca.key has mode 0600"
is "$(file_mode "$HUB_DIR/hub.key")" 600 "hub.key has mode 0600"
is "$(hub_sql 'PRAGMA journal_mode')" wal "hub.db is in WAL mode"
is "$(hub_git rev-parse --is-bare-repository 2>&1)" true "history.git is a bare repository"
is "$(hub_git symbolic-ref HEAD 2>&1)" refs/heads/main "HEAD points to refs/heads/main"
is "$(hub_git rev-list --count HEAD 2>&1)" 1 "init made one commit"
is "$(hub_git log -1 --format=%an HEAD 2>&1)" hub "... authored by 'hub'"
is "$(hub_sql 'SELECT group_concat(seq) FROM _empact_version')" 1 "the metric catalogue is version 1"
is "$(hub_sql 'SELECT commit_id FROM _empact_version WHERE seq=1')" "$(hub_git rev-parse HEAD 2>&1)" \
    "version 1's commit_id is HEAD"
is "$(hub_sql 'SELECT tree_id FROM _empact_version WHERE seq=1')" "$(hub_git rev-parse 'HEAD^{tree}' 2>&1)" \
    "version 1's tree_id is HEAD's tree"
nmetric=$(hub_sql 'SELECT count(*) FROM metric')
[ "${nmetric:-0}" -gt 0 ] 2>/dev/null; ok $? "the metric catalogue is seeded ($nmetric metrics)"
is "$(hub_git ls-tree -r --name-only HEAD 2>/dev/null | grep -c '^metric/')" "$nmetric" \
    "the git tree holds one file per metric"
ok_cmd "git fsck --strict on a new hub is clean" git -C "$HUB_DIR/history.git" fsck --strict

sum_before=$(cksum <"$HUB_DIR/hub.db")
expect_fail "init again on the same HUBDIR fails" "$EMPACT_HUB" init "$HUB_DIR"
is "$(cksum <"$HUB_DIR/hub.db")" "$sum_before" "... and hub.db is untouched"
is "$(hub_git rev-list --count HEAD 2>&1)" 1 "... and history.git is untouched"

# ---- add-site (hub not serving) ----------------------------------------------------------
HUB_PORT=1   # nothing listens on port 1: joins against this bundle find the hub down
site_add toronto --name "EMPaCT Toronto" --jurisdiction Toronto || give_up "add-site toronto"
bundle=$(site_join_file toronto)
is "$(file_mode "$bundle")" 600 "the join bundle has mode 0600"
is "$(bundle_get "$bundle" format 2>&1)" empact-join "bundle format is empact-join"
is "$(bundle_get "$bundle" version 2>&1)" 1 "bundle version is 1"
is "$(bundle_get "$bundle" site_id 2>&1)" toronto "bundle site_id is toronto"
is "$(bundle_get "$bundle" hub_address 2>&1)" 127.0.0.1:1 "bundle hub_address is the --address given"
like "$(bundle_get "$bundle" schema 2>&1)" '^[0-9a-f]{64}$' "bundle schema is a 64-hex fingerprint"
for k in ca_cert site_cert site_key; do
    bundle_get "$bundle" "$k" >"$E2E_TMP/b.$k.pem" 2>&1
    like "$(head -n 1 "$E2E_TMP/b.$k.pem")" '^-----BEGIN ' "bundle $k is PEM"
done
is "$(cat "$E2E_TMP/b.ca_cert.pem")" "$(cat "$HUB_DIR/ca.pem")" "bundle ca_cert is the hub's ca.pem"
like "$(openssl x509 -in "$E2E_TMP/b.site_cert.pem" -noout -subject 2>&1)" 'CN ?= ?toronto' \
    "site certificate CN is toronto"
ok_cmd "site certificate verifies against the hub CA for clientAuth" \
    openssl verify -purpose sslclient -CAfile "$HUB_DIR/ca.pem" "$E2E_TMP/b.site_cert.pem"
is "$(openssl pkey -in "$E2E_TMP/b.site_key.pem" -pubout 2>&1)" \
    "$(openssl x509 -in "$E2E_TMP/b.site_cert.pem" -noout -pubkey 2>&1)" "site key matches the site certificate"
is "$(hub_sql "SELECT name || '|' || jurisdiction FROM site WHERE site_id='toronto'")" \
    "EMPaCT Toronto|Toronto" "add-site registered toronto in the site table"
is "$(hub_max_seq)" 2 "add-site made version 2"
is "$(hub_git rev-list --count HEAD 2>&1)" 2 "add-site made one more commit"
is "$(hub_git log -1 --format=%an HEAD 2>&1)" hub "... authored by 'hub'"
expect_fail "add-site with an id already registered fails" \
    "$EMPACT_HUB" add-site "$HUB_DIR" toronto --address 127.0.0.1:1 -o "$E2E_TMP/dup.join"
[ ! -e "$E2E_TMP/dup.join" ]; ok $? "... and writes no bundle"
expect_fail "add-site with an invalid site id fails" \
    "$EMPACT_HUB" add-site "$HUB_DIR" "Bad_Site!" --address 127.0.0.1:1 -o "$E2E_TMP/bad.join"
is "$(hub_max_seq)" 2 "failed add-sites made no version"

# ---- join with bad bundles -----------------------------------------------------------------
db="$E2E_TMP/site.db"
expect_rc 74 "join with a missing bundle: 74" "$EMPACT" join "$db" "$E2E_TMP/no-such.join"
like "$RUN_ERR" 'no-such\.join' "... and stderr names the bundle"
[ ! -e "$db" ]; ok $? "... and no SITE.db is left behind"

size=$(stat -c %s "$bundle")
head -c $((size / 2)) "$bundle" >"$E2E_TMP/half.join"
expect_rc 65 "join with a bundle cut in half: 65" "$EMPACT" join "$db" "$E2E_TMP/half.join"
[ ! -e "$db" ]; ok $? "... and no SITE.db is left behind"
ls "$E2E_TMP"/site.db-* >/dev/null 2>&1; ok $(( ! $? )) "... nor any -wal/-shm/-journal file"

printf 'not json at all\n' >"$E2E_TMP/text.join"
expect_rc 65 "join with a bundle that is not JSON: 65" "$EMPACT" join "$db" "$E2E_TMP/text.join"
[ ! -e "$db" ]; ok $? "... and no SITE.db is left behind"

bundle_set "$bundle" "$E2E_TMP/fmt.join" format=something-else
expect_rc 65 "join with a bundle of another format: 65" "$EMPACT" join "$db" "$E2E_TMP/fmt.join"
[ ! -e "$db" ]; ok $? "... and no SITE.db is left behind"

bundle_set "$bundle" "$E2E_TMP/nokey.join" site_key=garbage
expect_rc 65 "join with a bundle whose site_key is not PEM: 65" "$EMPACT" join "$db" "$E2E_TMP/nokey.join"
[ ! -e "$db" ]; ok $? "... and no SITE.db is left behind"

printf 'precious\n' >"$E2E_TMP/exists.db"
expect_fail "join onto an existing file fails" "$EMPACT" join "$E2E_TMP/exists.db" "$bundle"
is "$(cat "$E2E_TMP/exists.db")" precious "... and leaves that file untouched"

done_testing
