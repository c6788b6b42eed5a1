/*
 * test_tls.c - TLS 1.3 mutual authentication over real loopback TCP, with
 * certificates made by pki.c.
 *
 * The group set-up makes a CA, a hub certificate, site certificates (good,
 * expired, from a foreign CA) and a site certificate whose CN is not a site
 * id.  Each connection test runs the hub side in a thread (accept +
 * tls_accept) on 127.0.0.1 port 0 and the site side in the test: a good site
 * round-trips frames; every refused certificate is refused by tls_accept and
 * reported to the site as SYNC_ETLS; an unreachable hub is SYNC_ENET; silent
 * peers time out (handshake bounded through the test hook
 * tls_ctx_set_handshake_timeout, reads through tls_conn_set_timeout); a
 * TLS 1.2 client and a client without a certificate are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "frame.h"
#include "pki.h"
#include "tls.h"

/* Test hook in tls.c, not in tls.h. */

#define SITE_ID "hospital-a"
#define SHORT_MS 300

struct pem_pair {
    char *cert;
    char *key;
};

struct fixture {
    struct pem_pair ca, hub, site, expired, foreign_ca, foreign_site, bad_cn, nameless_hub;
};

/* ---- helpers ------------------------------------------------------------ */

static void pair_free(struct pem_pair *p)
{
    pki_pem_free(p->cert);
    pki_pem_free(p->key);
    p->cert = p->key = NULL;
}

/* Fails the test unless e holds code and a message containing want. */
static void expect_error(const struct errctx *e, int rc, int code, const char *want)
{
    print_message("    [%s] %s\n", errctx_code_name(rc), e->msg);
    if (rc != code)
        fail_msg("expected code %s, got %s: %s", errctx_code_name(code), errctx_code_name(rc),
                 e->msg);
    if (want != NULL && strstr(e->msg, want) == NULL)
        fail_msg("expected '%s' in: %s", want, e->msg);
}

static X509 *pem_x509(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

    BIO_free(bio);
    assert_non_null(x);
    return x;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A certificate with any CN and extendedKeyUsage eku, no subjectAltName:
 * pki refuses bad site ids and always names the hub, so the hub's CN check
 * and the site's host name check are reached only with one made by hand. */
static void issue_raw_cert(struct pem_pair *out, const struct pem_pair *ca, const char *cn,
                           const char *eku)
{
    X509 *cacert = pem_x509(ca->cert);
    BIO *bio = BIO_new_mem_buf(ca->key, -1);
    EVP_PKEY *cakey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    BUF_MEM *bm;

    BIO_free(bio);
    assert_non_null(cakey);
    assert_non_null(key);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(cacert));
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&v3, cacert, x, NULL, NULL, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &v3, NID_ext_key_usage, eku);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, x);
    BIO_get_mem_ptr(bio, &bm);
    out->cert = strndup(bm->data, bm->length);
    BIO_free(bio);
    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
    BIO_get_mem_ptr(bio, &bm);
    out->key = strndup(bm->data, bm->length);
    BIO_free(bio);
    assert_non_null(out->cert);
    assert_non_null(out->key);
    X509_free(x);
    X509_free(cacert);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
}

static int group_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct errctx e = {0};

    if (f == NULL)
        return -1;
    if (pki_ca_new(&f->ca.cert, &f->ca.key, "EMPaCT test CA", &e) != SYNC_OK ||
        pki_issue(&f->hub.cert, &f->hub.key, f->ca.cert, f->ca.key, TLS_HUB_NAME, PKI_ROLE_HUB,
                  CERT_DAYS, &e) != SYNC_OK ||
        pki_issue(&f->site.cert, &f->site.key, f->ca.cert, f->ca.key, SITE_ID, PKI_ROLE_SITE,
                  CERT_DAYS, &e) != SYNC_OK ||
        pki_issue(&f->expired.cert, &f->expired.key, f->ca.cert, f->ca.key, "clinic-old",
                  PKI_ROLE_SITE, -1, &e) != SYNC_OK ||
        pki_ca_new(&f->foreign_ca.cert, &f->foreign_ca.key, "Someone else's CA", &e) != SYNC_OK ||
        pki_issue(&f->foreign_site.cert, &f->foreign_site.key, f->foreign_ca.cert,
                  f->foreign_ca.key, SITE_ID, PKI_ROLE_SITE, CERT_DAYS, &e) != SYNC_OK) {
        print_error("fixture: %s\n", e.msg);
        return -1;
    }
    issue_raw_cert(&f->bad_cn, &f->ca, "Not_A_Site", "clientAuth");
    issue_raw_cert(&f->nameless_hub, &f->ca, TLS_HUB_NAME, "serverAuth");
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    struct fixture *f = *state;

    if (f == NULL)
        return 0;
    pair_free(&f->ca);
    pair_free(&f->hub);
    pair_free(&f->site);
    pair_free(&f->expired);
    pair_free(&f->foreign_ca);
    pair_free(&f->foreign_site);
    pair_free(&f->bad_cn);
    pair_free(&f->nameless_hub);
    free(f);
    return 0;
}

/* A listening socket on 127.0.0.1 and a free port. */
static int listen_local(char port[16])
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(port, 16, "%u", (unsigned)ntohs(sin.sin_port));
    return fd;
}

/* A TCP connection to 127.0.0.1:port, no TLS. */
static int tcp_local(const char *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)atoi(port));
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* ---- the hub side, in a thread ------------------------------------------ */

enum hub_mode {
    HUB_ECHO,     /* echo frames until the site closes */
    HUB_HANDSHAKE /* handshake only, then read until the site closes */
};

struct hub {
    int lfd;
    char port[16];
    struct tls_ctx *ctx;
    enum hub_mode mode;
    pthread_t th;
    int rc;          /* tls_accept's result */
    int io_rc;       /* the first error after the handshake */
    int echoed;      /* frames echoed */
    int frame_ms;    /* > 0: tls_conn_set_frame_timeout() after the handshake */
    int hello_clock; /* start the first frame's clock at the handshake's end */
    struct errctx e;
    struct errctx io_e;
    char peer_id[SITE_ID_MAX + 1];
    char fingerprint[65];
};

static void *hub_main(void *arg)
{
    struct hub *h = arg;
    struct tls_conn *c = NULL;
    int fd = accept(h->lfd, NULL, NULL);

    if (fd < 0) {
        h->rc = errctx_set(&h->e, SYNC_ENET, "accept failed");
        return NULL;
    }
    if ((h->rc = tls_accept(&c, h->ctx, fd, &h->e)) != SYNC_OK)
        return NULL;
    snprintf(h->peer_id, sizeof(h->peer_id), "%s", tls_conn_peer_id(c));
    snprintf(h->fingerprint, sizeof(h->fingerprint), "%s", tls_conn_peer_fingerprint(c));
    tls_conn_set_timeout(c, 5000);
    if (h->frame_ms > 0)
        tls_conn_set_frame_timeout(c, h->frame_ms);
    if (h->hello_clock)
        tls_conn_start_frame_clock(c);
    struct frame_io io = tls_conn_io(c);
    for (;;) {
        struct frame *fr = NULL;
        if ((h->io_rc = frame_read(&fr, &io, FRAME_MAX, &h->io_e)) != SYNC_OK)
            break;
        if (h->mode == HUB_ECHO)
            h->io_rc = frame_write(&io, fr->type, fr->payload, fr->len, &h->io_e);
        frame_free(fr);
        if (h->io_rc != SYNC_OK)
            break;
        h->echoed++;
    }
    tls_conn_close(c);
    return NULL;
}

/* Starts a hub thread with a server context made of cert/key and ca, whose
 * connection has a frame bound of frame_ms (0: none), clock started at the
 * handshake's end if hello_clock. */
static void hub_start_framed(struct hub *h, const struct pem_pair *id, const char *ca_cert,
                             int frame_ms, int hello_clock)
{
    struct errctx e = {0};

    memset(h, 0, sizeof(*h));
    h->mode = HUB_ECHO;
    h->frame_ms = frame_ms;
    h->hello_clock = hello_clock;
    h->lfd = listen_local(h->port);
    if (tls_ctx_new_server(&h->ctx, id->cert, id->key, ca_cert, &e) != SYNC_OK)
        fail_msg("tls_ctx_new_server: %s", e.msg);
    assert_int_equal(pthread_create(&h->th, NULL, hub_main, h), 0);
}

/* Starts a hub thread with a server context made of cert/key and ca. */
static void hub_start(struct hub *h, const struct pem_pair *id, const char *ca_cert,
                      enum hub_mode mode, int handshake_ms)
{
    struct errctx e = {0};

    memset(h, 0, sizeof(*h));
    h->mode = mode;
    h->lfd = listen_local(h->port);
    if (tls_ctx_new_server(&h->ctx, id->cert, id->key, ca_cert, &e) != SYNC_OK)
        fail_msg("tls_ctx_new_server: %s", e.msg);
    if (handshake_ms > 0)
        tls_ctx_set_handshake_timeout(h->ctx, handshake_ms);
    assert_int_equal(pthread_create(&h->th, NULL, hub_main, h), 0);
}

static void hub_join(struct hub *h)
{
    assert_int_equal(pthread_join(h->th, NULL), 0);
    close(h->lfd);
    tls_ctx_free(h->ctx);
    h->ctx = NULL;
}

static struct tls_ctx *site_ctx(const struct pem_pair *id, const char *ca_cert)
{
    struct tls_ctx *ctx = NULL;
    struct errctx e = {0};

    if (tls_ctx_new_client(&ctx, id->cert, id->key, ca_cert, &e) != SYNC_OK)
        fail_msg("tls_ctx_new_client: %s", e.msg);
    return ctx;
}

/*
 * What a site does first: connect, send a frame of n bytes, read the echo.
 * Returns the first error (with TLS 1.3 a refused site certificate shows on
 * the first read or write, not in tls_connect).
 */
static int site_exchange(const struct pem_pair *id, const char *ca_cert, const char *port, size_t n,
                         struct errctx *e)
{
    struct tls_ctx *ctx = site_ctx(id, ca_cert);
    struct tls_conn *c = NULL;
    struct frame *fr = NULL;
    unsigned char *payload = malloc(n + 1);
    int rc;

    assert_non_null(payload);
    for (size_t i = 0; i < n; i++)
        payload[i] = (unsigned char)(i * 31 + 7);
    if ((rc = tls_connect(&c, ctx, "127.0.0.1", port, e)) != SYNC_OK)
        goto out;
    assert_string_equal(tls_conn_peer_id(c), TLS_HUB_NAME);
    tls_conn_set_timeout(c, 5000);
    struct frame_io io = tls_conn_io(c);
    if ((rc = frame_write(&io, 0x42, payload, n, e)) != SYNC_OK ||
        (rc = frame_read(&fr, &io, FRAME_MAX, e)) != SYNC_OK)
        goto out;
    assert_int_equal(fr->type, 0x42);
    assert_int_equal(fr->len, n);
    assert_memory_equal(fr->payload, payload, n);
out:
    frame_free(fr);
    free(payload);
    tls_conn_close(c);
    tls_ctx_free(ctx);
    return rc;
}

/* ---- tests: names and certificates --------------------------------------- */

static void test_site_id_valid(void **state)
{
    char max[SITE_ID_MAX + 2];

    (void)state;
    assert_true(tls_site_id_valid("a"));
    assert_true(tls_site_id_valid("hospital-a"));
    assert_true(tls_site_id_valid("0clinic"));
    assert_true(tls_site_id_valid("a--b-"));
    memset(max, 'a', SITE_ID_MAX);
    max[SITE_ID_MAX] = '\0';
    assert_true(tls_site_id_valid(max));
    max[SITE_ID_MAX] = 'a';
    max[SITE_ID_MAX + 1] = '\0';
    assert_false(tls_site_id_valid(max));
    assert_false(tls_site_id_valid(NULL));
    assert_false(tls_site_id_valid(""));
    assert_false(tls_site_id_valid("-a"));
    assert_false(tls_site_id_valid("Hospital"));
    assert_false(tls_site_id_valid("a_b"));
    assert_false(tls_site_id_valid("a b"));
    assert_false(tls_site_id_valid("a.b"));
    assert_false(tls_site_id_valid("h\xc3\xb4pital"));
}

static void test_cert_cn(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    char cn[SITE_ID_MAX + 1];
    char small[4];

    assert_int_equal(tls_cert_cn(cn, sizeof(cn), f->site.cert, &e), SYNC_OK);
    assert_string_equal(cn, SITE_ID);
    assert_int_equal(tls_cert_cn(cn, sizeof(cn), f->hub.cert, &e), SYNC_OK);
    assert_string_equal(cn, TLS_HUB_NAME);
    expect_error(&e, tls_cert_cn(small, sizeof(small), f->site.cert, &e), SYNC_ELIMIT,
                 "subject CN");
    assert_string_equal(small, "");
    expect_error(&e, tls_cert_cn(cn, sizeof(cn), "not a certificate", &e), SYNC_ETLS,
                 "not a PEM certificate");
    expect_error(&e, tls_cert_cn(cn, sizeof(cn), f->site.key, &e), SYNC_ETLS, NULL);
    expect_error(&e, tls_cert_cn(cn, sizeof(cn), "", &e), SYNC_EUSAGE, NULL);
}

static void test_cert_fingerprint(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    char fp[65], fp2[65], want[65];
    unsigned char *der = NULL, md[32];
    X509 *x = pem_x509(f->site.cert);
    int len = i2d_X509(x, &der);

    /* Independently: SHA-256 of the DER, lowercase hex. */
    assert_true(len > 0);
    assert_int_equal(EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL), 1);
    for (size_t i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", md[i]);
    OPENSSL_free(der);
    X509_free(x);

    assert_int_equal(tls_cert_fingerprint(fp, f->site.cert, &e), SYNC_OK);
    assert_string_equal(fp, want);
    assert_int_equal(strlen(fp), 64);
    assert_int_equal(tls_cert_fingerprint(fp2, f->hub.cert, &e), SYNC_OK);
    assert_string_not_equal(fp, fp2);
    expect_error(&e, tls_cert_fingerprint(fp, "-----BEGIN CERTIFICATE-----\nAAAA\n", &e), SYNC_ETLS,
                 "not a PEM certificate");
    assert_string_equal(fp, "");
}

static void test_pki_certificates(void **state)
{
    struct fixture *f = *state;
    X509 *ca = pem_x509(f->ca.cert), *hub = pem_x509(f->hub.cert);
    X509 *site = pem_x509(f->site.cert), *expired = pem_x509(f->expired.cert);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(site);
    time_t now = time(NULL), skew = now - 3000;

    assert_non_null(strstr(f->site.key, "-----BEGIN PRIVATE KEY-----"));
    assert_int_equal(X509_get_version(site), X509_VERSION_3);
    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(X509_check_ca(site), 0);
    assert_int_equal(X509_check_issued(ca, site), X509_V_OK);
    assert_int_equal(X509_check_issued(ca, hub), X509_V_OK);
    assert_int_equal(X509_check_purpose(site, X509_PURPOSE_SSL_CLIENT, 0), 1);
    assert_int_equal(X509_check_purpose(site, X509_PURPOSE_SSL_SERVER, 0), 0);
    assert_int_equal(X509_check_purpose(hub, X509_PURPOSE_SSL_SERVER, 0), 1);
    assert_int_equal(X509_check_purpose(hub, X509_PURPOSE_SSL_CLIENT, 0), 0);
    assert_int_equal(X509_check_host(hub, TLS_HUB_NAME, 0, 0, NULL), 1);
    assert_int_not_equal(X509_check_host(site, TLS_HUB_NAME, 0, 0, NULL), 1);
    assert_non_null(X509_get0_authority_key_id(site));
    assert_non_null(X509_get0_subject_key_id(ca));
    /* 128-bit positive serial, notBefore set back for clock skew. */
    assert_int_equal(serial->type, V_ASN1_INTEGER);
    assert_int_equal(serial->length, 16);
    assert_true(X509_cmp_time(X509_get0_notBefore(site), &skew) < 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(site), &now) > 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(expired), &now) < 0);
    assert_true(X509_cmp_time(X509_get0_notBefore(expired), &now) < 0);
    X509_free(ca);
    X509_free(hub);
    X509_free(site);
    X509_free(expired);
}

static void test_pki_refusals(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    char *cert = NULL, *key = NULL;

    expect_error(
        &e, pki_issue(&cert, &key, f->ca.cert, f->ca.key, "Bad_Site", PKI_ROLE_SITE, CERT_DAYS, &e),
        SYNC_EUSAGE, "'Bad_Site' is not a valid site id");
    assert_null(cert);
    assert_null(key);
    expect_error(&e,
                 pki_issue(&cert, &key, f->ca.cert, f->ca.key, "", PKI_ROLE_SITE, CERT_DAYS, &e),
                 SYNC_EUSAGE, NULL);
    expect_error(&e, pki_issue(&cert, &key, f->ca.cert, f->ca.key, "site-b", PKI_ROLE_SITE, 0, &e),
                 SYNC_EUSAGE, "lifetime");
    expect_error(
        &e, pki_issue(&cert, &key, f->ca.cert, f->site.key, "site-b", PKI_ROLE_SITE, CERT_DAYS, &e),
        SYNC_ETLS, "does not belong");
    expect_error(
        &e, pki_issue(&cert, &key, f->hub.cert, f->hub.key, "site-b", PKI_ROLE_SITE, CERT_DAYS, &e),
        SYNC_ETLS, "not a CA");
    expect_error(
        &e, pki_issue(&cert, &key, "garbage", f->ca.key, "site-b", PKI_ROLE_SITE, CERT_DAYS, &e),
        SYNC_ETLS, "not a PEM certificate");
    expect_error(&e, pki_ca_new(&cert, &key, NULL, &e), SYNC_EUSAGE, NULL);
    assert_null(cert);
    assert_null(key);
    pki_pem_free(NULL);
}

static void test_ctx_errors(void **state)
{
    struct fixture *f = *state;
    struct tls_ctx *ctx = NULL;
    struct errctx e = {0};
    char *huge = malloc(PEM_MAX + 2);

    assert_non_null(huge);
    memset(huge, 'A', PEM_MAX + 1);
    huge[PEM_MAX + 1] = '\0';
    expect_error(&e, tls_ctx_new_server(&ctx, "junk", f->hub.key, f->ca.cert, &e), SYNC_ETLS,
                 "not a PEM certificate");
    expect_error(&e, tls_ctx_new_server(&ctx, f->hub.cert, "junk", f->ca.cert, &e), SYNC_ETLS,
                 "private key");
    expect_error(&e, tls_ctx_new_server(&ctx, f->hub.cert, f->site.key, f->ca.cert, &e), SYNC_ETLS,
                 NULL);
    expect_error(&e, tls_ctx_new_client(&ctx, f->site.cert, f->site.key, "junk", &e), SYNC_ETLS,
                 "no certificate");
    expect_error(&e, tls_ctx_new_client(&ctx, f->site.cert, f->site.key, NULL, &e), SYNC_EUSAGE,
                 NULL);
    expect_error(&e, tls_ctx_new_client(&ctx, huge, f->site.key, f->ca.cert, &e), SYNC_ELIMIT,
                 "limit");
    assert_null(ctx);
    /* Contexts can be made again and again (certificate reloads). */
    for (int i = 0; i < 300; i++) {
        assert_int_equal(tls_ctx_new_client(&ctx, f->site.cert, f->site.key, f->ca.cert, &e),
                         SYNC_OK);
        tls_ctx_free(ctx);
        ctx = NULL;
    }
    tls_ctx_free(NULL);
    tls_conn_close(NULL);
    free(huge);
}

/* ---- tests: connections ------------------------------------------------- */

static void test_good_site(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;
    char site_fp[65], hub_fp[65];
    struct tls_ctx *ctx = site_ctx(&f->site, f->ca.cert);
    struct tls_conn *c = NULL;
    struct frame *fr = NULL;

    assert_int_equal(tls_cert_fingerprint(site_fp, f->site.cert, &e), SYNC_OK);
    assert_int_equal(tls_cert_fingerprint(hub_fp, f->hub.cert, &e), SYNC_OK);
    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, 0);
    if (tls_connect(&c, ctx, "127.0.0.1", h.port, &e) != SYNC_OK)
        fail_msg("tls_connect: %s", e.msg);
    assert_string_equal(tls_conn_peer_id(c), TLS_HUB_NAME);
    assert_string_equal(tls_conn_peer_fingerprint(c), hub_fp);

    struct frame_io io = tls_conn_io(c);
    assert_int_equal(frame_write(&io, 0x01, "hello", 5, &e), SYNC_OK);
    assert_int_equal(frame_read(&fr, &io, FRAME_MAX, &e), SYNC_OK);
    assert_int_equal(fr->type, 0x01);
    assert_int_equal(fr->len, 5);
    assert_memory_equal(fr->payload, "hello", 5);
    frame_free(fr);
    fr = NULL;
    assert_int_equal(frame_write(&io, 0x30, NULL, 0, &e), SYNC_OK);
    assert_int_equal(frame_read(&fr, &io, FRAME_MAX, &e), SYNC_OK);
    assert_int_equal(fr->type, 0x30);
    assert_int_equal(fr->len, 0);
    frame_free(fr);
    /* Plain bytes, both directions, through tls_write/tls_read. */
    unsigned char hdr[FRAME_HEADER_LEN], back[FRAME_HEADER_LEN + 3];
    frame_header_write(hdr, 0x7f, 3);
    assert_int_equal(tls_write(c, hdr, sizeof(hdr), &e), SYNC_OK);
    assert_int_equal(tls_write(c, "abc", 3, &e), SYNC_OK);
    assert_int_equal(tls_read(c, back, sizeof(back), &e), SYNC_OK);
    assert_memory_equal(back, hdr, sizeof(hdr));
    assert_memory_equal(back + FRAME_HEADER_LEN, "abc", 3);
    tls_conn_close(c);
    hub_join(&h);

    assert_int_equal(h.rc, SYNC_OK);
    assert_string_equal(h.peer_id, SITE_ID);
    assert_string_equal(h.fingerprint, site_fp);
    assert_int_equal(h.echoed, 3);
    /* The site closed cleanly: the hub's next read is a network end. */
    expect_error(&h.io_e, h.io_rc, SYNC_ENET, "closed");
    tls_ctx_free(ctx);
}

static void test_large_frame(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;

    /* Larger than the socket buffers: partial writes and WANT_WRITE. */
    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, 0);
    if (site_exchange(&f->site, f->ca.cert, h.port, (size_t)8 * 1024 * 1024, &e) != SYNC_OK)
        fail_msg("exchange: %s", e.msg);
    hub_join(&h);
    assert_int_equal(h.rc, SYNC_OK);
    assert_int_equal(h.echoed, 1);
}

/* A site certificate the hub refuses: tls_accept fails, the site gets
 * SYNC_ETLS naming the refusal. */
static void refused_site(const struct fixture *f, const struct pem_pair *id, size_t n,
                         const char *hub_says)
{
    struct errctx e = {0};
    struct hub h;

    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, 0);
    int rc = site_exchange(id, f->ca.cert, h.port, n, &e);
    hub_join(&h);
    expect_error(&e, rc, SYNC_ETLS, "refused this site's certificate");
    expect_error(&h.e, h.rc, SYNC_ETLS, hub_says);
    assert_string_equal(h.peer_id, "");
}

static void test_foreign_ca_site_refused(void **state)
{
    struct fixture *f = *state;

    refused_site(f, &f->foreign_site, 16, "unable to get local issuer certificate");
}

static void test_hub_cert_as_site_refused(void **state)
{
    struct fixture *f = *state;

    /* serverAuth only: not valid for the purpose SSL client. */
    refused_site(f, &f->hub, 16, "unsuitable certificate purpose");
}

static void test_expired_site_refused(void **state)
{
    struct fixture *f = *state;

    refused_site(f, &f->expired, 16, "certificate has expired");
    /* A large first write: the hub's reset may come before the alert is
     * read; the alert still explains the failure. */
    refused_site(f, &f->expired, (size_t)4 * 1024 * 1024, "certificate has expired");
}

static void test_bad_cn_refused(void **state)
{
    struct fixture *f = *state;

    refused_site(f, &f->bad_cn, 16, "'Not_A_Site' is not a valid site id");
}

static void test_site_distrusts_hub(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;

    /* The site holds another CA: it must refuse the hub. */
    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, 0);
    int rc = site_exchange(&f->site, f->foreign_ca.cert, h.port, 16, &e);
    hub_join(&h);
    expect_error(&e, rc, SYNC_ETLS, "hub certificate not trusted");
    expect_error(&h.e, h.rc, SYNC_ETLS, "refused the hub's certificate");
}

static void test_site_cert_as_hub_refused(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;

    /* clientAuth only and no DNS:empact-hub: the site refuses it. */
    hub_start(&h, &f->site, f->ca.cert, HUB_ECHO, 0);
    int rc = site_exchange(&f->site, f->ca.cert, h.port, 16, &e);
    hub_join(&h);
    expect_error(&e, rc, SYNC_ETLS, "hub certificate not trusted");
    assert_int_equal(h.rc, SYNC_ETLS);
}

static void test_hub_without_name_refused(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;

    /* Signed by the right CA for serverAuth, but without DNS:empact-hub. */
    hub_start(&h, &f->nameless_hub, f->ca.cert, HUB_ECHO, 0);
    int rc = site_exchange(&f->site, f->ca.cert, h.port, 16, &e);
    hub_join(&h);
    expect_error(&e, rc, SYNC_ETLS, "hostname mismatch");
    assert_int_equal(h.rc, SYNC_ETLS);
}

static void test_closed_port(void **state)
{
    struct fixture *f = *state;
    struct tls_ctx *ctx = site_ctx(&f->site, f->ca.cert);
    struct tls_conn *c = NULL;
    struct errctx e = {0};
    char port[16], want[96];
    int lfd = listen_local(port);

    close(lfd); /* nothing listens there now */
    snprintf(want, sizeof(want), "cannot reach hub at 127.0.0.1:%s: Connection refused", port);
    expect_error(&e, tls_connect(&c, ctx, "127.0.0.1", port, &e), SYNC_ENET, want);
    assert_null(c);
    expect_error(&e, tls_connect(&c, ctx, "127.0.0.1", "no-such-service", &e), SYNC_ENET,
                 "cannot reach hub");
    tls_ctx_free(ctx);
}

static void test_silent_hub_times_out(void **state)
{
    struct fixture *f = *state;
    struct tls_ctx *ctx = site_ctx(&f->site, f->ca.cert);
    struct tls_conn *c = NULL;
    struct errctx e = {0};
    char port[16];
    int lfd = listen_local(port); /* the kernel completes TCP; nobody speaks TLS */
    int64_t t0 = now_ms();

    tls_ctx_set_handshake_timeout(ctx, SHORT_MS);
    expect_error(&e, tls_connect(&c, ctx, "127.0.0.1", port, &e), SYNC_ENET,
                 "did not complete the TLS handshake within 300 ms");
    assert_true(now_ms() - t0 < 3000);
    assert_null(c);
    close(lfd);
    tls_ctx_free(ctx);
}

static void test_silent_site_times_out(void **state)
{
    struct fixture *f = *state;
    struct hub h;
    int64_t t0 = now_ms();

    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, SHORT_MS);
    int fd = tcp_local(h.port); /* connects, never says hello */
    hub_join(&h);
    close(fd);
    expect_error(&h.e, h.rc, SYNC_ENET, "did not complete the TLS handshake within 300 ms");
    assert_true(now_ms() - t0 < 3000);
}

static void test_read_timeout(void **state)
{
    struct fixture *f = *state;
    struct tls_ctx *ctx = site_ctx(&f->site, f->ca.cert);
    struct tls_conn *c = NULL;
    struct errctx e = {0};
    struct hub h;
    unsigned char b;

    hub_start(&h, &f->hub, f->ca.cert, HUB_HANDSHAKE, 0);
    if (tls_connect(&c, ctx, "127.0.0.1", h.port, &e) != SYNC_OK)
        fail_msg("tls_connect: %s", e.msg);
    tls_conn_set_timeout(c, 200);
    int64_t t0 = now_ms();
    expect_error(&e, tls_read(c, &b, 1, &e), SYNC_ENET, "timed out after 200 ms");
    assert_true(now_ms() - t0 >= 150);
    expect_error(&e, tls_read(c, &b, 1, &e), SYNC_ENET, "already failed");
    tls_conn_close(c); /* the hub's pending read ends */
    hub_join(&h);
    assert_int_equal(h.rc, SYNC_OK);
    assert_int_equal(h.io_rc, SYNC_ENET);
    tls_ctx_free(ctx);
}

/* Sends n bytes one TLS record at a time, pause_ms apart; stops at an error. */
static void trickle(struct tls_conn *c, const unsigned char *p, size_t n, int pause_ms)
{
    struct errctx e = {0};

    for (size_t i = 0; i < n; i++) {
        if (tls_write(c, p + i, 1, &e) != SYNC_OK)
            return;
        poll(NULL, 0, pause_ms);
    }
}

/*
 * The frame deadline: a frame that comes whole after a pause longer than the
 * bound is fine (the clock starts at its first byte), a frame trickled a byte
 * at a time is dropped at the bound although each byte beats the idle timeout.
 */
static void test_frame_deadline(void **state)
{
    struct fixture *f = *state;
    struct tls_ctx *ctx = site_ctx(&f->site, f->ca.cert);
    struct tls_conn *c = NULL;
    struct frame *fr = NULL;
    struct errctx e = {0};
    unsigned char frame[FRAME_HEADER_LEN + 10];
    struct hub h;

    hub_start_framed(&h, &f->hub, f->ca.cert, SHORT_MS, 0);
    if (tls_connect(&c, ctx, "127.0.0.1", h.port, &e) != SYNC_OK)
        fail_msg("tls_connect: %s", e.msg);
    tls_conn_set_timeout(c, 5000);
    struct frame_io io = tls_conn_io(c);
    poll(NULL, 0, 2 * SHORT_MS);
    assert_int_equal(frame_write(&io, 0x01, "hello", 5, &e), SYNC_OK);
    assert_int_equal(frame_read(&fr, &io, FRAME_MAX, &e), SYNC_OK);
    frame_free(fr);
    frame_header_write(frame, 0x01, 10);
    memset(frame + FRAME_HEADER_LEN, 'x', 10);
    int64_t t0 = now_ms();
    trickle(c, frame, sizeof(frame), 100);
    tls_conn_close(c);
    hub_join(&h);
    assert_int_equal(h.rc, SYNC_OK);
    assert_int_equal(h.echoed, 1);
    expect_error(&h.io_e, h.io_rc, SYNC_ENET, "did not send a whole frame within 300 ms");
    assert_true(now_ms() - t0 < 3000);
    tls_ctx_free(ctx);
}

/* With the clock started at the handshake's end, a silent site is dropped at
 * the frame bound, well before the idle timeout. */
static void test_first_frame_deadline(void **state)
{
    struct fixture *f = *state;
    struct tls_ctx *ctx = site_ctx(&f->site, f->ca.cert);
    struct tls_conn *c = NULL;
    struct errctx e = {0};
    struct hub h;
    unsigned char b;

    hub_start_framed(&h, &f->hub, f->ca.cert, SHORT_MS, 1);
    int64_t t0 = now_ms();
    if (tls_connect(&c, ctx, "127.0.0.1", h.port, &e) != SYNC_OK)
        fail_msg("tls_connect: %s", e.msg);
    tls_conn_set_timeout(c, 5000);
    expect_error(&e, tls_read(c, &b, 1, &e), SYNC_ENET, "while reading");
    tls_conn_close(c);
    hub_join(&h);
    expect_error(&h.io_e, h.io_rc, SYNC_ENET, "did not send a whole frame within 300 ms");
    assert_true(now_ms() - t0 < 3000);
    tls_ctx_free(ctx);
}

/* A raw OpenSSL client: TLS 1.2 at most, or TLS 1.3 without a certificate. */
static int raw_client(const char *port, int max_version, struct errctx *e)
{
    SSL_CTX *sctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    int fd = tcp_local(port), r;
    char b;

    assert_non_null(sctx);
    SSL_CTX_set_verify(sctx, SSL_VERIFY_NONE, NULL);
    assert_int_equal(SSL_CTX_set_max_proto_version(sctx, max_version), 1);
    ssl = SSL_new(sctx);
    SSL_set_fd(ssl, fd);
    r = SSL_connect(ssl);
    if (r == 1) /* TLS 1.3: the refusal arrives after the client's Finished */
        r = SSL_read(ssl, &b, 1);
    errctx_set(e, r == 1 ? SYNC_OK : SYNC_ETLS, "raw client: %s",
               ERR_reason_error_string(ERR_peek_error()) != NULL
                   ? ERR_reason_error_string(ERR_peek_error())
                   : "connection closed");
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(sctx);
    close(fd);
    return r == 1 ? SYNC_OK : SYNC_ETLS;
}

static void test_tls12_client_refused(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;

    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, 0);
    int rc = raw_client(h.port, TLS1_2_VERSION, &e);
    hub_join(&h);
    expect_error(&e, rc, SYNC_ETLS, "protocol version");
    expect_error(&h.e, h.rc, SYNC_ETLS, "only TLS 1.3 is accepted");
}

static void test_no_client_cert_refused(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0};
    struct hub h;

    hub_start(&h, &f->hub, f->ca.cert, HUB_ECHO, 0);
    int rc = raw_client(h.port, TLS1_3_VERSION, &e);
    hub_join(&h);
    expect_error(&e, rc, SYNC_ETLS, "certificate required");
    expect_error(&h.e, h.rc, SYNC_ETLS, "certificate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_id_valid),
        cmocka_unit_test(test_cert_cn),
        cmocka_unit_test(test_cert_fingerprint),
        cmocka_unit_test(test_pki_certificates),
        cmocka_unit_test(test_pki_refusals),
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_good_site),
        cmocka_unit_test(test_large_frame),
        cmocka_unit_test(test_foreign_ca_site_refused),
        cmocka_unit_test(test_hub_cert_as_site_refused),
        cmocka_unit_test(test_expired_site_refused),
        cmocka_unit_test(test_bad_cn_refused),
        cmocka_unit_test(test_site_distrusts_hub),
        cmocka_unit_test(test_site_cert_as_hub_refused),
        cmocka_unit_test(test_hub_without_name_refused),
        cmocka_unit_test(test_closed_port),
        cmocka_unit_test(test_silent_hub_times_out),
        cmocka_unit_test(test_silent_site_times_out),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_frame_deadline),
        cmocka_unit_test(test_first_frame_deadline),
        cmocka_unit_test(test_tls12_client_refused),
        cmocka_unit_test(test_no_client_cert_refused),
    };

    /* tls.c never raises SIGPIPE; ignoring it here would hide a regression. */
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
