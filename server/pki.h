/*
 * pki.h - the hub's own certificate authority (OpenSSL 3, ECDSA P-256).
 *
 * The hub creates one CA at init, signs its own server certificate with it
 * (serverAuth, DNS:TLS_HUB_NAME) and one client certificate per site
 * (clientAuth, CN = site id).  All output is PEM text the caller frees with
 * pki_pem_free(), which wipes it first.
 */
#ifndef EMPACT_PKI_H
#define EMPACT_PKI_H

#include "errctx.h"

enum pki_role {
    PKI_ROLE_HUB,  /* server certificate for the hub */
    PKI_ROLE_SITE, /* client certificate for one site */
};

/* A self-signed CA (CN = cn) valid for CA_DAYS. */
int pki_ca_new(char **cert_pem, char **key_pem, const char *cn, struct errctx *e) SYNC_WUR;

/* A new key and a certificate for it signed by the CA (PEM, borrowed), valid
 * for `days` days from now (negative days give an already-expired certificate,
 * for tests). */
int pki_issue(char **cert_pem, char **key_pem, const char *ca_cert_pem, const char *ca_key_pem,
              const char *cn, enum pki_role role, int days, struct errctx *e) SYNC_WUR;

/* Length of an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SSZ" plus its NUL. */
#define PKI_TIME_LEN 21

/* The notAfter time of a PEM certificate (borrowed) as ISO 8601 UTC into
 * out.  SYNC_ETLS with a sentence if cert_pem is not a certificate. */
int pki_cert_not_after(char out[PKI_TIME_LEN], const char *cert_pem, struct errctx *e) SYNC_WUR;

/* Wipes and frees PEM text; NULL is fine. */
void pki_pem_free(char *pem);

#endif
