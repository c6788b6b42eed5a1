#!/usr/bin/env bash
# 04-tls12.t - the hub speaks TLS 1.3 only: a TLS 1.2 client with a good site
# certificate is refused; TLS 1.3 with the same certificate works (positive control).
. "$(dirname "$0")/lib.sh"

hub_init || give_up "hub init"
start_hub "$HUB_DIR" || give_up "hub start"
site_add toronto || give_up "add-site toronto"
bundle=$(site_join_file toronto)
bundle_get "$bundle" site_cert >site.pem && bundle_get "$bundle" site_key >site.key &&
    bundle_get "$bundle" ca_cert >ca.pem
ok $? "site certificate, key and CA extracted from the join bundle"
chmod 600 site.key

sclient() {
    run openssl s_client -connect "127.0.0.1:$HUB_PORT" -servername empact-hub \
        -cert site.pem -key site.key -CAfile ca.pem "$@"
    SC="$RUN_OUT
$RUN_ERR"
}

# ---- TLS 1.2: refused ------------------------------------------------------------------
log0=$(hub_log_lines)
sclient -tls1_2
isnt "$RUN_RC" 0 "s_client -tls1_2 fails"
isnt "$RUN_RC" 124 "... without hanging"
like "$SC" 'alert protocol version|unsupported protocol|no protocols available|wrong version number|handshake failure|unexpected eof|errno=104' \
    "... with a protocol-version refusal"
like "$SC" 'Cipher is \(NONE\)' "... no cipher negotiated"
unlike "$SC" 'New, TLSv1\.2' "... no TLS 1.2 session"
diag "s_client -tls1_2: $(printf '%s\n' "$SC" | grep -iE 'alert|error' | head -n 2)"
sleep 0.3
like "$(hub_log_since "$log0")" '.' "the hub logs the refused connection"

# TLS 1.1 / 1.0 are refused too (OpenSSL may refuse them client-side already).
sclient -tls1_1
isnt "$RUN_RC" 0 "s_client -tls1_1 fails"
unlike "$RUN_OUT" 'New, TLSv1(\.1)?,' "... no TLS 1.1 session"

# ---- TLS 1.3 with the same certificate: accepted ----------------------------------
sclient -tls1_3
is "$RUN_RC" 0 "s_client -tls1_3 with the site certificate completes"
like "$SC" 'New, TLSv1\.3, Cipher is TLS_' "... negotiating TLS 1.3"
like "$SC" 'Verify return code: 0 \(ok\)' "... and the hub certificate verifies against the hub CA"
sclient -tls1_3 -verify_hostname empact-hub -verify_return_error
is "$RUN_RC" 0 "the hub certificate is valid for the DNS name empact-hub"

# The hub still serves a real client after all that.
site_join toronto
assert_converged toronto

stop_hub
done_testing
