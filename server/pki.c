/*
 * pki.c - the hub's own certificate authority (OpenSSL 3, ECDSA P-256).
 *
 * Every certificate is X.509 v3, signed with ECDSA/SHA-256, with a serial of
 * 128 random bits (top bit set, so it is positive, non-zero and always 16
 * bytes in DER) and these extensions:
 *
 *   CA    basicConstraints critical CA:TRUE
 *         keyUsage critical keyCertSign, cRLSign
 *         subjectKeyIdentifier hash                      (self-signed, CN = cn)
 *   hub   basicConstraints critical CA:FALSE
 *         keyUsage critical digitalSignature
 *         extendedKeyUsage serverAuth
 *         subjectAltName DNS:TLS_HUB_NAME
 *         authorityKeyIdentifier keyid                   (CN = cn)
 *   site  as hub, but extendedKeyUsage clientAuth and no subjectAltName;
 *         CN = the site id, which must pass tls_site_id_valid().
 *
 * Validity: notBefore = now - 1 h, so a peer whose clock is a little behind
 * still accepts a fresh certificate; notAfter = now + days.  Negative days
 * (tests only) give an expired certificate: notBefore = now - 2|days| days,
 * notAfter = now + days days.
 *
 * Keys are fresh P-256 keys written as unencrypted PKCS#8 PEM ("BEGIN
 * PRIVATE KEY") through a secure-heap memory BIO, which OpenSSL wipes when it
 * is freed; the copy handed out is wiped by pki_pem_free().
 */
#include "pki.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls.h"

/* X.509's upper bound for a CN (RFC 5280, ub-common-name). */
#define PKI_CN_MAX 64

/* Seconds notBefore is set back for clock skew between hub and sites. */
#define PKI_SKEW_SECONDS 3600

/* The reason string of the oldest error in this thread's OpenSSL queue. */
static const char *ssl_reason(void)
{
    unsigned long err = ERR_peek_error();
    const char *s = err != 0 ? ERR_reason_error_string(err) : NULL;

    return s != NULL ? s : "unknown OpenSSL error";
}

/* Checks the CN for a role: a site id for sites, short printable text else. */
static int check_cn(const char *cn, enum pki_role role, const char *what, struct errctx *e)
{
    size_t len;

    if (cn == NULL || cn[0] == '\0')
        return errctx_set(e, SYNC_EUSAGE, "a %s needs a name", what);
    len = strnlen(cn, PKI_CN_MAX + 1);
    if (role == PKI_ROLE_SITE && !tls_site_id_valid(cn))
        return errctx_set(e, SYNC_EUSAGE,
                          "'%.*s%s' is not a valid site id: use 1 to %d characters of a-z, 0-9 "
                          "and '-', starting with a letter or a digit",
                          PKI_CN_MAX, cn, len > PKI_CN_MAX ? "..." : "", SITE_ID_MAX);
    if (len > PKI_CN_MAX)
        return errctx_set(e, SYNC_EUSAGE, "the %s name is longer than %d characters", what,
                          PKI_CN_MAX);
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)cn[i] < 0x20 || cn[i] == 0x7f)
            return errctx_set(e, SYNC_EUSAGE, "the %s name contains a control character", what);
    }
    return SYNC_OK;
}

static int check_days(int days, struct errctx *e)
{
    if (days == 0 || days > CA_DAYS || days < -CA_DAYS)
        return errctx_set(e, SYNC_EUSAGE,
                          "a certificate lifetime of %d days is not possible: use 1 to %d days "
                          "(or -1 to -%d for an expired test certificate)",
                          days, CA_DAYS, CA_DAYS);
    return SYNC_OK;
}

static int key_new(EVP_PKEY **out, struct errctx *e)
{
    if ((*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL)
        return errctx_set(e, SYNC_ETLS, "cannot generate a P-256 key: %s", ssl_reason());
    return SYNC_OK;
}

/* A random positive 128-bit serial. */
static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn != NULL && BN_rand(bn, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;

    BN_free(bn);
    return ok;
}

static int set_validity(X509 *x, int days)
{
    if (days > 0)
        return X509_time_adj_ex(X509_getm_notBefore(x), 0, -PKI_SKEW_SECONDS, NULL) != NULL &&
               X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) != NULL;
    return X509_time_adj_ex(X509_getm_notBefore(x), 2 * days, 0, NULL) != NULL &&
           X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) != NULL;
}

/* An unsigned certificate for key with subject CN = cn, issued by issuer
 * (NULL: self-issued). */
static int cert_new(X509 **out, EVP_PKEY *key, const char *cn, const X509 *issuer, int days,
                    struct errctx *e)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int rc = SYNC_ETLS;

    *out = NULL;
    if (x == NULL || name == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory for a certificate");
        goto out;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || !set_serial(x) || !set_validity(x, days) ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name) != 1 ||
        X509_set_pubkey(x, key) != 1) {
        errctx_set(e, rc, "cannot fill in the certificate for '%s': %s", cn, ssl_reason());
        goto out;
    }
    *out = x;
    x = NULL;
    rc = SYNC_OK;
out:
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

/* Adds one extension given in openssl.cnf syntax; issuer for key ids. */
static int add_ext(X509 *x, X509 *issuer, int nid, const char *value, struct errctx *e)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    if (!ok)
        return errctx_set(e, SYNC_ETLS, "cannot add %s = %s to a certificate: %s", OBJ_nid2sn(nid),
                          value, ssl_reason());
    return SYNC_OK;
}

/* The extensions of a hub or site certificate (see the file header). */
static int add_leaf_exts(X509 *x, X509 *ca, enum pki_role role, struct errctx *e)
{
    int rc;

    if ((rc = add_ext(x, ca, NID_basic_constraints, "critical,CA:FALSE", e)) != SYNC_OK ||
        (rc = add_ext(x, ca, NID_key_usage, "critical,digitalSignature", e)) != SYNC_OK ||
        (rc = add_ext(x, ca, NID_ext_key_usage, role == PKI_ROLE_HUB ? "serverAuth" : "clientAuth",
                      e)) != SYNC_OK ||
        (rc = add_ext(x, ca, NID_authority_key_identifier, "keyid:always", e)) != SYNC_OK)
        return rc;
    if (role == PKI_ROLE_HUB)
        return add_ext(x, ca, NID_subject_alt_name, "DNS:" TLS_HUB_NAME, e);
    return SYNC_OK;
}

static int cert_sign(X509 *x, EVP_PKEY *key, struct errctx *e)
{
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        return errctx_set(e, SYNC_ETLS, "cannot sign the certificate: %s", ssl_reason());
    return SYNC_OK;
}

/* The contents of a memory BIO as a new NUL-terminated string. */
static int bio_to_string(char **out, BIO *bio, struct errctx *e)
{
    BUF_MEM *bm = NULL;

    *out = NULL;
    BIO_get_mem_ptr(bio, &bm);
    if (bm == NULL || bm->length == 0)
        return errctx_set(e, SYNC_ETLS, "PEM encoding produced nothing: %s", ssl_reason());
    if ((*out = malloc(bm->length + 1)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory for PEM text");
    memcpy(*out, bm->data, bm->length);
    (*out)[bm->length] = '\0';
    return SYNC_OK;
}

static int cert_to_pem(char **out, X509 *x, struct errctx *e)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int rc;

    *out = NULL;
    if (bio == NULL || PEM_write_bio_X509(bio, x) != 1)
        rc = errctx_set(e, SYNC_ETLS, "cannot write the certificate as PEM: %s", ssl_reason());
    else
        rc = bio_to_string(out, bio, e);
    BIO_free(bio);
    return rc;
}

/* PKCS#8, unencrypted; the BIO lives on OpenSSL's secure heap and is wiped. */
static int key_to_pem(char **out, EVP_PKEY *key, struct errctx *e)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    int rc;

    *out = NULL;
    if (bio == NULL || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
        rc = errctx_set(e, SYNC_ETLS, "cannot write the private key as PEM: %s", ssl_reason());
    else
        rc = bio_to_string(out, bio, e);
    BIO_free(bio);
    return rc;
}

/* Both PEM outputs, or neither. */
static int write_pair(char **cert_pem, char **key_pem, X509 *x, EVP_PKEY *key, struct errctx *e)
{
    int rc;

    if ((rc = cert_to_pem(cert_pem, x, e)) != SYNC_OK)
        return rc;
    if ((rc = key_to_pem(key_pem, key, e)) != SYNC_OK) {
        pki_pem_free(*cert_pem);
        *cert_pem = NULL;
    }
    return rc;
}

int pki_ca_new(char **cert_pem, char **key_pem, const char *cn, struct errctx *e)
{
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    int rc;

    *cert_pem = NULL;
    *key_pem = NULL;
    ERR_clear_error();
    if ((rc = check_cn(cn, PKI_ROLE_HUB, "CA", e)) != SYNC_OK ||
        (rc = key_new(&key, e)) != SYNC_OK ||
        (rc = cert_new(&x, key, cn, NULL, CA_DAYS, e)) != SYNC_OK ||
        (rc = add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE", e)) != SYNC_OK ||
        (rc = add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign", e)) != SYNC_OK ||
        (rc = add_ext(x, x, NID_subject_key_identifier, "hash", e)) != SYNC_OK ||
        (rc = cert_sign(x, key, e)) != SYNC_OK)
        goto out;
    rc = write_pair(cert_pem, key_pem, x, key, e);
out:
    X509_free(x);
    EVP_PKEY_free(key); /* OpenSSL clears the private scalar when it frees it */
    ERR_clear_error();
    return rc;
}

/* Parses the CA (PEM, borrowed) and checks that key and certificate belong
 * together and that the certificate may sign. */
static int ca_load(X509 **cert, EVP_PKEY **key, const char *cert_pem, const char *key_pem,
                   struct errctx *e)
{
    BIO *bio = NULL;
    int rc = SYNC_ETLS;

    *cert = NULL;
    *key = NULL;
    if (cert_pem == NULL || key_pem == NULL || strnlen(cert_pem, (size_t)PEM_MAX + 1) > PEM_MAX ||
        strnlen(key_pem, (size_t)PEM_MAX + 1) > PEM_MAX)
        return errctx_set(e, SYNC_EUSAGE,
                          "the CA certificate and key must be PEM text of at most %d bytes each",
                          PEM_MAX);
    if ((bio = BIO_new_mem_buf(cert_pem, -1)) == NULL ||
        (*cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
        errctx_set(e, rc, "the CA certificate is not a PEM certificate: %s", ssl_reason());
        goto out;
    }
    BIO_free(bio);
    if ((bio = BIO_new_mem_buf(key_pem, -1)) == NULL ||
        (*key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL) {
        errctx_set(e, rc, "the CA key is not an unencrypted PEM key: %s", ssl_reason());
        goto out;
    }
    if (X509_check_private_key(*cert, *key) != 1) {
        errctx_set(e, rc, "the CA key does not belong to the CA certificate");
        goto out;
    }
    if (X509_check_ca(*cert) == 0) {
        errctx_set(e, rc, "the CA certificate is not a CA: it cannot sign certificates");
        goto out;
    }
    rc = SYNC_OK;
out:
    BIO_free(bio);
    if (rc != SYNC_OK) {
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
    }
    return rc;
}

int pki_issue(char **cert_pem, char **key_pem, const char *ca_cert_pem, const char *ca_key_pem,
              const char *cn, enum pki_role role, int days, struct errctx *e)
{
    X509 *ca = NULL, *x = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    int rc;

    *cert_pem = NULL;
    *key_pem = NULL;
    ERR_clear_error();
    if (role != PKI_ROLE_HUB && role != PKI_ROLE_SITE)
        return errctx_set(e, SYNC_EUSAGE, "unknown certificate role %d", (int)role);
    if ((rc = check_cn(cn, role, role == PKI_ROLE_HUB ? "hub certificate" : "site certificate",
                       e)) != SYNC_OK ||
        (rc = check_days(days, e)) != SYNC_OK ||
        (rc = ca_load(&ca, &ca_key, ca_cert_pem, ca_key_pem, e)) != SYNC_OK ||
        (rc = key_new(&key, e)) != SYNC_OK ||
        (rc = cert_new(&x, key, cn, ca, days, e)) != SYNC_OK ||
        (rc = add_leaf_exts(x, ca, role, e)) != SYNC_OK ||
        (rc = cert_sign(x, ca_key, e)) != SYNC_OK)
        goto out;
    rc = write_pair(cert_pem, key_pem, x, key, e);
out:
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();
    return rc;
}

int pki_cert_not_after(char out[PKI_TIME_LEN], const char *cert_pem, struct errctx *e)
{
    BIO *bio = NULL;
    X509 *x = NULL;
    struct tm tm;
    int rc;

    out[0] = '\0';
    ERR_clear_error();
    if (cert_pem == NULL || strnlen(cert_pem, (size_t)PEM_MAX + 1) > PEM_MAX)
        return errctx_set(e, SYNC_ETLS, "a certificate must be PEM text of at most %d bytes",
                          PEM_MAX);
    memset(&tm, 0, sizeof(tm));
    if ((bio = BIO_new_mem_buf(cert_pem, -1)) == NULL ||
        (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL)
        rc = errctx_set(e, SYNC_ETLS, "not a PEM certificate: %s", ssl_reason());
    else if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1 ||
             strftime(out, PKI_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) != PKI_TIME_LEN - 1)
        rc = errctx_set(e, SYNC_ETLS, "the certificate's expiry time cannot be read");
    else
        rc = SYNC_OK;
    if (rc != SYNC_OK)
        out[0] = '\0';
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

void pki_pem_free(char *pem)
{
    if (pem == NULL)
        return;
    explicit_bzero(pem, strlen(pem));
    free(pem);
}
