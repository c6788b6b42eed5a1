/*
 * tls.c - TLS 1.3 with mutual certificate authentication (OpenSSL 3).
 *
 * A tls_ctx wraps one SSL_CTX for one side:
 *   - hub:  TLS_server_method, requires a client certificate
 *           (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT), purpose
 *           sslclient (so a site certificate needs extendedKeyUsage
 *           clientAuth), and a verify callback that refuses a leaf whose CN
 *           is not a valid site id, so the site learns of it from an alert
 *           during the handshake rather than from a silent close;
 *   - site: TLS_client_method, purpose sslserver, host name TLS_HUB_NAME
 *           checked against the hub certificate's subjectAltName.
 *
 * Invariants:
 *   - TLS 1.3 only: minimum and maximum protocol version are both 1.3.
 *   - The only trust anchors are the certificates of the CA PEM given to
 *     tls_ctx_new_*: the context's X509_STORE starts empty and default
 *     verify paths are never loaded.
 *   - No session tickets and no session cache: every connection is a full
 *     handshake, so the peer certificate is verified on every connection and
 *     a site whose certificate the hub stops accepting cannot resume.
 *   - A tls_conn's peer id and fingerprint come from the verified peer
 *     certificate only, and are set before tls_accept/tls_connect return.
 *   - Sockets owned by a tls_conn are non-blocking; every wait is a poll()
 *     bounded by a timeout (the handshake by one deadline, reads and writes
 *     by the connection's inactivity timeout, default IDLE_TIMEOUT_MS), so
 *     SSL_ERROR_WANT_READ/WANT_WRITE are handled in one place and a silent
 *     peer can never hang a thread.
 *   - With a frame timeout set (the hub's, FRAME_DEADLINE_MS), a frame read
 *     through tls_conn_io() must also arrive whole by its deadline: its
 *     clock starts when the first byte of it reaches the socket (TLS record
 *     bytes count, so trickling the record itself does not help) and the
 *     frame's announced length adds time at FRAME_MIN_RATE.  The inactivity
 *     timeout restarts on every byte; this one does not, so a peer that
 *     trickles cannot hold a thread for ever.
 *   - Writes go through a socket BIO that sends with MSG_NOSIGNAL: a peer
 *     that resets the connection gives EPIPE (SYNC_ENET), never SIGPIPE, so
 *     callers need not ignore SIGPIPE for this module's sake.
 *   - TCP_NODELAY is set: frames are written as a header and a payload, and
 *     Nagle's algorithm would delay the second small record by an RTT.
 *
 * Threads: a tls_ctx is read-only after tls_ctx_new_*, so one context may be
 * shared by any number of threads (OpenSSL 3 reference-counts and locks the
 * SSL_CTX).  A tls_conn is used by one thread at a time.  OpenSSL's error
 * queue is per thread; every SSL call here is preceded by ERR_clear_error().
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

enum tls_side {
    TLS_SIDE_HUB,  /* accepts sites */
    TLS_SIDE_SITE, /* connects to the hub */
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method; /* socket BIO whose writes use MSG_NOSIGNAL */
    enum tls_side side;
    int handshake_ms; /* TCP connect and TLS handshake bound */
};

/* How a certificate CN is kept for error messages: printable, truncated. */
#define CN_SHOWN_MAX 64

/* "host:port" in messages: a DNS name (253) or an IPv6 literal, brackets, port. */
#define CONN_ADDR_MAX 272

struct tls_conn {
    SSL *ssl;
    int fd;
    enum tls_side side;
    int timeout_ms;         /* inactivity bound for reads and writes; 0 = none */
    int frame_ms;           /* bound on one incoming frame, from its first byte; 0 = none */
    int64_t frame_start;    /* CLOCK_MONOTONIC ms the current frame's clock started; -1 = idle */
    int64_t frame_deadline; /* frame_start + frame_ms + time its length buys; -1 = none */
    int failed;             /* a fatal TLS or socket error: no close_notify may follow */
    int bad_cn;             /* the verify callback refused the leaf's CN */
    uint64_t app_in;        /* plaintext bytes read and written (frames) */
    uint64_t app_out;
    char peer_id[SITE_ID_MAX + 1];
    char fingerprint[65];
    char peer_cn[CN_SHOWN_MAX + 1]; /* leaf CN seen during the handshake, for messages */
    char addr[CONN_ADDR_MAX];       /* "host:port", host as given or numeric */
    char where[CONN_ADDR_MAX + SITE_ID_MAX + 16]; /* "hub at ADDR", "site ID at ADDR", ... */
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Waits until fd is ready for events or deadline (CLOCK_MONOTONIC ms; -1 =
 * none) passes.  Returns 1 when ready (or in error: the next SSL or socket
 * call reports it), 0 on timeout, -1 with errno set if poll() fails.
 */
static int wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events};

    for (;;) {
        int ms = -1;

        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return 0;
            ms = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        int n = poll(&p, 1, ms);
        if (n > 0)
            return 1;
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* The deadline for one wait of a connection's read or write. */
static int64_t conn_deadline(const struct tls_conn *c)
{
    return c->timeout_ms > 0 ? now_ms() + c->timeout_ms : -1;
}

/* Starts the clock of the incoming frame now, unless it already runs. */
static void frame_clock_start(struct tls_conn *c)
{
    if (c->frame_ms <= 0 || c->frame_start >= 0)
        return;
    c->frame_start = now_ms();
    c->frame_deadline = c->frame_start + c->frame_ms;
}

/* Checks a borrowed PEM string against PEM_MAX before OpenSSL parses it. */
static int pem_check(const char *pem, const char *what, struct errctx *e)
{
    if (pem == NULL || pem[0] == '\0')
        return errctx_set(e, SYNC_EUSAGE, "no %s was given", what);
    if (strnlen(pem, (size_t)PEM_MAX + 1) > PEM_MAX)
        return errctx_set(e, SYNC_ELIMIT, "the %s is longer than the limit of %d bytes", what,
                          PEM_MAX);
    return SYNC_OK;
}

/* The reason string of the oldest error in this thread's OpenSSL queue. */
static const char *ssl_reason(void)
{
    unsigned long err = ERR_peek_error();
    const char *s = err != 0 ? ERR_reason_error_string(err) : NULL;

    return s != NULL ? s : "unknown OpenSSL error";
}

/* The first certificate of a PEM string, or NULL. */
static X509 *pem_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = NULL;

    if (bio != NULL)
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return x;
}

/* Copies s into out, replacing anything not printable ASCII by '?' so a
 * hostile CN cannot forge log lines. */
static void copy_printable(char *out, size_t outsz, const char *s)
{
    size_t i;

    for (i = 0; i + 1 < outsz && s[i] != '\0'; i++) {
        if (s[i] >= 0x20 && s[i] < 0x7f)
            out[i] = s[i];
        else
            out[i] = '?';
    }
    out[i] = '\0';
}

/*
 * The single subject CN of x as UTF-8 into out.  SYNC_ETLS if there is no
 * CN, more than one, or one with an embedded NUL; SYNC_ELIMIT if it does not
 * fit in outsz.
 */
static int cert_cn(const X509 *x, char *out, size_t outsz, struct errctx *e)
{
    const X509_NAME *name = X509_get_subject_name(x);
    unsigned char *utf8 = NULL;
    int idx, len, rc;

    if (outsz > 0)
        out[0] = '\0';
    idx = name != NULL ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (idx < 0)
        return errctx_set(e, SYNC_ETLS, "the certificate has no subject CN");
    if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
        return errctx_set(e, SYNC_ETLS, "the certificate has more than one subject CN");
    len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    if (len < 0)
        return errctx_set(e, SYNC_ETLS, "the certificate's subject CN cannot be decoded: %s",
                          ssl_reason());
    if (strlen((char *)utf8) != (size_t)len) {
        rc = errctx_set(e, SYNC_ETLS, "the certificate's subject CN contains a NUL byte");
    } else if ((size_t)len >= outsz) {
        rc = errctx_set(e, SYNC_ELIMIT,
                        "the certificate's subject CN is %d bytes, more than the %zu allowed", len,
                        outsz > 0 ? outsz - 1 : 0);
    } else {
        memcpy(out, utf8, (size_t)len + 1);
        rc = SYNC_OK;
    }
    OPENSSL_free(utf8);
    return rc;
}

/* SHA-256 of x's DER as lowercase hex. */
static int cert_fingerprint(const X509 *x, char out[65], struct errctx *e)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        return errctx_set(e, SYNC_ETLS, "cannot hash the certificate: %s", ssl_reason());
    for (size_t i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[64] = '\0';
    return SYNC_OK;
}

/* "host:port", or "[host]:port" for an IPv6 literal. */
static void format_hostport(char *out, size_t outsz, const char *host, const char *port)
{
    snprintf(out, outsz, strchr(host, ':') != NULL ? "[%s]:%s" : "%s:%s", host, port);
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    return 0;
}

/* ---- a socket BIO that never raises SIGPIPE ----------------------------- */

/* Like OpenSSL's sock_write, with MSG_NOSIGNAL. */
static int bio_nosig_write(BIO *b, const char *buf, int len)
{
    int fd = -1;
    ssize_t n;

    BIO_get_fd(b, &fd);
    errno = 0;
    n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    BIO_clear_retry_flags(b);
    if (n <= 0 && BIO_sock_should_retry((int)n))
        BIO_set_retry_write(b);
    return (int)n;
}

/*
 * BIO_s_socket() with its write replaced; the rest is OpenSSL's own, so the
 * BIO keeps the socket BIO's type and layout (and SSL_get_fd works).  Not a
 * BIO_get_new_index() type: OpenSSL 3.0 has only 127 of those per process,
 * and a hub may create contexts again and again.
 */
static BIO_METHOD *bio_nosig_method_new(void)
{
    const BIO_METHOD *sock = BIO_s_socket();
    BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOCKET, "empact socket");

    if (m == NULL)
        return NULL;
    if (BIO_meth_set_write(m, bio_nosig_write) != 1 ||
        BIO_meth_set_read(m, BIO_meth_get_read(sock)) != 1 ||
        BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) != 1 ||
        BIO_meth_set_create(m, BIO_meth_get_create(sock)) != 1 ||
        BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock)) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---- contexts ----------------------------------------------------------- */

/*
 * Hub side: refuses, during the handshake, a leaf certificate whose CN is not
 * a valid site id, and records the leaf CN for error messages either way.
 */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
    char cn[CN_SHOWN_MAX + 1];

    if (c == NULL || leaf == NULL || X509_STORE_CTX_get_error_depth(xs) != 0)
        return ok;
    if (cert_cn(leaf, cn, sizeof(cn), NULL) != SYNC_OK)
        snprintf(cn, sizeof(cn), "(none usable)");
    copy_printable(c->peer_cn, sizeof(c->peer_cn), cn);
    if (ok && c->side == TLS_SIDE_HUB && !tls_site_id_valid(cn)) {
        /* OpenSSL sends this as a bad_certificate alert, which the site
         * reports as the hub refusing its certificate. */
        c->bad_cn = 1;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    return ok;
}

/* Loads every certificate of ca_pem as a trust anchor; at least one. */
static int ctx_load_ca(SSL_CTX *sctx, const char *ca_pem, struct errctx *e)
{
    X509_STORE *store = SSL_CTX_get_cert_store(sctx);
    BIO *bio = BIO_new_mem_buf(ca_pem, -1);
    X509 *x = NULL;
    int n = 0, rc = SYNC_OK;

    if (bio == NULL || store == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory loading the CA certificate");
        goto out;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) != 1) {
            rc = errctx_set(e, SYNC_ETLS, "cannot use the CA certificate: %s", ssl_reason());
            goto out;
        }
        X509_free(x);
        x = NULL;
        n++;
    }
    if (n == 0)
        rc = errctx_set(e, SYNC_ETLS, "the CA PEM holds no certificate: %s", ssl_reason());
out:
    X509_free(x);
    BIO_free(bio);
    ERR_clear_error(); /* the loop ends on "no start line" */
    return rc;
}

/* Loads the own certificate and key and checks that they match. */
static int ctx_load_identity(SSL_CTX *sctx, const char *cert_pem, const char *key_pem,
                             struct errctx *e)
{
    BIO *bio = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    int rc = SYNC_ETLS;

    if ((cert = pem_cert(cert_pem)) == NULL) {
        errctx_set(e, rc, "the certificate is not a PEM certificate: %s", ssl_reason());
        goto out;
    }
    if ((bio = BIO_new_mem_buf(key_pem, -1)) == NULL ||
        (key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL) {
        errctx_set(e, rc, "the private key is not an unencrypted PEM key: %s", ssl_reason());
        goto out;
    }
    if (SSL_CTX_use_certificate(sctx, cert) != 1 || SSL_CTX_use_PrivateKey(sctx, key) != 1) {
        errctx_set(e, rc, "cannot use the certificate and key: %s", ssl_reason());
        goto out;
    }
    if (SSL_CTX_check_private_key(sctx) != 1) {
        errctx_set(e, rc, "the private key does not belong to the certificate");
        goto out;
    }
    rc = SYNC_OK;
out:
    EVP_PKEY_free(key); /* the SSL_CTX holds its own reference */
    X509_free(cert);
    BIO_free(bio);
    return rc;
}

/* Side-specific verification: who must present what. */
static int ctx_set_verify(SSL_CTX *sctx, enum tls_side side, struct errctx *e)
{
    if (side == TLS_SIDE_HUB) {
        SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
        if (SSL_CTX_set_purpose(sctx, X509_PURPOSE_SSL_CLIENT) != 1)
            return errctx_set(e, SYNC_ETLS, "cannot require client certificates: %s", ssl_reason());
        SSL_CTX_set_num_tickets(sctx, 0);
        SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
        return SYNC_OK;
    }
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_purpose(sctx, X509_PURPOSE_SSL_SERVER) != 1 ||
        X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(sctx), TLS_HUB_NAME, 0) != 1)
        return errctx_set(e, SYNC_ETLS, "cannot require the hub's name %s: %s", TLS_HUB_NAME,
                          ssl_reason());
    /* The name must be in subjectAltName: no CN fallback, no wildcards. */
    X509_VERIFY_PARAM_set_hostflags(SSL_CTX_get0_param(sctx),
                                    X509_CHECK_FLAG_NO_WILDCARDS |
                                        X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
    return SYNC_OK;
}

static int ctx_new(struct tls_ctx **out, enum tls_side side, const char *cert_pem,
                   const char *key_pem, const char *ca_pem, struct errctx *e)
{
    struct tls_ctx *ctx = NULL;
    int rc;

    *out = NULL;
    if ((rc = pem_check(cert_pem, "certificate", e)) != SYNC_OK ||
        (rc = pem_check(key_pem, "private key", e)) != SYNC_OK ||
        (rc = pem_check(ca_pem, "CA certificate", e)) != SYNC_OK)
        return rc;
    ERR_clear_error();
    if ((ctx = calloc(1, sizeof(*ctx))) == NULL ||
        (ctx->ssl_ctx = SSL_CTX_new(side == TLS_SIDE_HUB ? TLS_server_method()
                                                         : TLS_client_method())) == NULL ||
        (ctx->bio_method = bio_nosig_method_new()) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "cannot create a TLS context: %s", ssl_reason());
        goto out;
    }
    ctx->side = side;
    ctx->handshake_ms = TLS_HANDSHAKE_TIMEOUT_MS;
    if (SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx->ssl_ctx, TLS1_3_VERSION) != 1) {
        rc = errctx_set(e, SYNC_ETLS, "this OpenSSL cannot speak TLS 1.3: %s", ssl_reason());
        goto out;
    }
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    if ((rc = ctx_load_identity(ctx->ssl_ctx, cert_pem, key_pem, e)) != SYNC_OK ||
        (rc = ctx_load_ca(ctx->ssl_ctx, ca_pem, e)) != SYNC_OK ||
        (rc = ctx_set_verify(ctx->ssl_ctx, side, e)) != SYNC_OK)
        goto out;
    *out = ctx;
    ctx = NULL;
out:
    tls_ctx_free(ctx);
    ERR_clear_error();
    return rc;
}

int tls_ctx_new_server(struct tls_ctx **out, const char *cert_pem, const char *key_pem,
                       const char *ca_pem, struct errctx *e)
{
    return ctx_new(out, TLS_SIDE_HUB, cert_pem, key_pem, ca_pem, e);
}

int tls_ctx_new_client(struct tls_ctx **out, const char *cert_pem, const char *key_pem,
                       const char *ca_pem, struct errctx *e)
{
    return ctx_new(out, TLS_SIDE_SITE, cert_pem, key_pem, ca_pem, e);
}

void tls_ctx_set_handshake_timeout(struct tls_ctx *ctx, int timeout_ms)
{
    if (ctx != NULL && timeout_ms > 0)
        ctx->handshake_ms = timeout_ms;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    /* SSL_CTX_free frees the private key; OpenSSL clears EC key material
     * when it frees it.  The PEM text was borrowed and never copied. */
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->bio_method);
    free(ctx);
}

/* ---- connections: errors ------------------------------------------------ */

/* The TLS alert the peer sent, from an OpenSSL error code, or -1. */
static int received_alert(unsigned long err)
{
    int reason = ERR_GET_REASON(err);

    if (err == 0 || ERR_GET_LIB(err) != ERR_LIB_SSL || reason <= SSL_AD_REASON_OFFSET ||
        reason >= SSL_AD_REASON_OFFSET + 256)
        return -1;
    return reason - SSL_AD_REASON_OFFSET;
}

/* An alert saying the receiver refused the sender's certificate. */
static int is_certificate_alert(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return 1;
    default:
        return 0;
    }
}

static const char *alert_text(int alert, unsigned long err)
{
    const char *s = SSL_alert_desc_string_long(alert);

    if (s == NULL || strcmp(s, "unknown") == 0)
        s = ERR_reason_error_string(err);
    return s != NULL ? s : "unknown alert";
}

/* Network failures: the site retries on its next sync. */
static int conn_fail_net(struct tls_conn *c, const char *what, struct errctx *e)
{
    c->failed = 1;
    if (c->side == TLS_SIDE_SITE)
        return errctx_set(e, SYNC_ENET, "connection to %s %s; will retry on the next sync",
                          c->where, what);
    return errctx_set(e, SYNC_ENET, "connection from %s %s", c->where, what);
}

/* A verification failure of the peer certificate (we sent the alert). */
static int conn_fail_verify(struct tls_conn *c, struct errctx *e)
{
    long v = SSL_get_verify_result(c->ssl);
    const char *why = X509_verify_cert_error_string(v);

    if (c->side == TLS_SIDE_SITE)
        return errctx_set(e, SYNC_ETLS,
                          "hub certificate not trusted: %s (%s); check that the hub at %s is "
                          "the one this site joined and that its hub CA is current",
                          ssl_reason(), why, c->addr);
    if (c->bad_cn)
        return errctx_set(e, SYNC_ETLS,
                          "refused the certificate of %s: its CN '%s' is not a valid site id",
                          c->where, c->peer_cn);
    return errctx_set(e, SYNC_ETLS, "refused the certificate of %s (CN '%s'): %s", c->where,
                      c->peer_cn[0] != '\0' ? c->peer_cn : "?", why);
}

/*
 * Writes the sentence for an SSL call that returned ret <= 0 and is not to
 * be retried, marks c failed when no close_notify may follow, and returns
 * the code: SYNC_ENET for EOF, reset or a closed connection, SYNC_ETLS for
 * alerts, verification and other TLS failures.  doing names the operation
 * ("while reading", "during the TLS handshake").
 */
static int conn_fail(struct tls_conn *c, int ret, const char *doing, struct errctx *e)
{
    int ssl_err = SSL_get_error(c->ssl, ret);
    int sys = errno;
    unsigned long err = ERR_peek_error();
    int alert = received_alert(err);
    char what[160];

    if (ssl_err == SSL_ERROR_ZERO_RETURN) {
        snprintf(what, sizeof(what), "was closed by the peer %s", doing);
        return conn_fail_net(c, what, e);
    }
    if (ssl_err == SSL_ERROR_SYSCALL ||
        (ERR_GET_LIB(err) == ERR_LIB_SSL &&
         ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        snprintf(what, sizeof(what), "was lost %s: %s", doing,
                 (ssl_err == SSL_ERROR_SYSCALL && sys != 0) ? strerror(sys)
                                                            : "unexpected end of stream");
        return conn_fail_net(c, what, e);
    }
    c->failed = 1;
    if (alert >= 0 && is_certificate_alert(alert)) {
        if (c->side == TLS_SIDE_SITE)
            return errctx_set(e, SYNC_ETLS,
                              "%s refused this site's certificate (%s); ask the hub "
                              "coordinator for a new join bundle",
                              c->where, alert_text(alert, err));
        return errctx_set(e, SYNC_ETLS,
                          "%s refused the hub's certificate (%s); the site holds another "
                          "hub CA or the hub certificate is not valid",
                          c->where, alert_text(alert, err));
    }
    if (alert >= 0)
        return errctx_set(e, SYNC_ETLS, "%s ended the connection %s: TLS alert '%s'", c->where,
                          doing, alert_text(alert, err));
    if (ERR_GET_LIB(err) == ERR_LIB_SSL && ERR_GET_REASON(err) == SSL_R_CERTIFICATE_VERIFY_FAILED)
        return conn_fail_verify(c, e);
    return errctx_set(
        e, SYNC_ETLS, "TLS failure with %s %s: %s%s", c->where, doing, ssl_reason(),
        ERR_GET_REASON(err) == SSL_R_UNSUPPORTED_PROTOCOL ? " (only TLS 1.3 is accepted)" : "");
}

/* ---- connections -------------------------------------------------------- */

/* A connection over fd (owned by the result on success only). */
static int conn_new(struct tls_conn **out, struct tls_ctx *ctx, int fd, struct errctx *e)
{
    struct tls_conn *c = NULL;
    BIO *bio = NULL;
    int one = 1;

    *out = NULL;
    ERR_clear_error();
    if ((c = calloc(1, sizeof(*c))) == NULL || (c->ssl = SSL_new(ctx->ssl_ctx)) == NULL ||
        (bio = BIO_new(ctx->bio_method)) == NULL) {
        if (c != NULL)
            SSL_free(c->ssl);
        free(c);
        ERR_clear_error();
        errctx_set(e, SYNC_ENOMEM, "out of memory for a TLS connection");
        return SYNC_ENOMEM;
    }
    BIO_set_fd(bio, fd, BIO_NOCLOSE);
    SSL_set_bio(c->ssl, bio, bio);
    SSL_set_app_data(c->ssl, c);
    c->fd = fd;
    c->side = ctx->side;
    c->timeout_ms = IDLE_TIMEOUT_MS;
    c->frame_start = -1;
    c->frame_deadline = -1;
    /* Best effort: without it small frames only wait longer. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *out = c;
    return SYNC_OK;
}

void tls_conn_bytes(const struct tls_conn *c, uint64_t *in, uint64_t *out)
{
    BIO *b = c ? SSL_get_rbio(c->ssl) : NULL;

    /* one BIO reads and writes the socket: its counters are the bytes on
     * the wire, TLS records and handshake included */
    *in = b ? (uint64_t)BIO_number_read(b) : 0;
    *out = b ? (uint64_t)BIO_number_written(b) : 0;
}

void tls_conn_app_bytes(const struct tls_conn *c, uint64_t *in, uint64_t *out)
{
    *in = c ? c->app_in : 0;
    *out = c ? c->app_out : 0;
}

/* Frees c without close_notify; the fd stays open. */
static void conn_free(struct tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    free(c);
}

/* Runs the handshake step (SSL_accept or SSL_connect) until done or deadline. */
static int conn_handshake(struct tls_conn *c, int (*step)(SSL *), int timeout_ms, struct errctx *e)
{
    int64_t deadline = now_ms() + timeout_ms;

    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = step(c->ssl);
        if (r == 1)
            return SYNC_OK;
        int ssl_err = SSL_get_error(c->ssl, r);
        if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE)
            return conn_fail(c, r, "during the TLS handshake", e);
        int w = wait_fd(c->fd, ssl_err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (w == 0) {
            char what[96];
            snprintf(what, sizeof(what), "did not complete the TLS handshake within %d ms",
                     timeout_ms);
            return conn_fail_net(c, what, e);
        }
        if (w < 0)
            return conn_fail_net(c, "could not be polled", e);
    }
}

/* Fills peer_id (hub side: the CN, a valid site id) and the fingerprint. */
static int conn_identify_peer(struct tls_conn *c, struct errctx *e)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    int rc;

    if (peer == NULL) {
        c->failed = 1;
        return errctx_set(e, SYNC_ETLS, "%s presented no certificate", c->where);
    }
    if ((rc = cert_fingerprint(peer, c->fingerprint, e)) != SYNC_OK)
        return rc;
    if (c->side == TLS_SIDE_SITE) {
        snprintf(c->peer_id, sizeof(c->peer_id), "%s", TLS_HUB_NAME);
        return SYNC_OK;
    }
    if (cert_cn(peer, c->peer_id, sizeof(c->peer_id), NULL) != SYNC_OK ||
        !tls_site_id_valid(c->peer_id)) {
        /* The verify callback refuses these; this is a second line. */
        c->peer_id[0] = '\0';
        return errctx_set(e, SYNC_ETLS, "%s presented a certificate without a valid site id",
                          c->where);
    }
    return SYNC_OK;
}

int tls_accept(struct tls_conn **out, struct tls_ctx *ctx, int fd, struct errctx *e)
{
    struct tls_conn *c = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
    int rc;

    *out = NULL;
    if (ctx == NULL || ctx->side != TLS_SIDE_HUB || fd < 0) {
        rc = errctx_set(e, SYNC_EUSAGE, "tls_accept needs a hub TLS context and a socket");
        goto out;
    }
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        (void)getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
                          NI_NUMERICHOST | NI_NUMERICSERV);
    if (set_nonblocking(fd) < 0) {
        rc = errctx_set(e, SYNC_ENET, "cannot use the socket of a new connection: %s",
                        strerror(errno));
        goto out;
    }
    if ((rc = conn_new(&c, ctx, fd, e)) != SYNC_OK)
        goto out;
    fd = -1;
    format_hostport(c->addr, sizeof(c->addr), host, port);
    snprintf(c->where, sizeof(c->where), "peer %s", c->addr);
    SSL_set_accept_state(c->ssl);
    if ((rc = conn_handshake(c, SSL_accept, ctx->handshake_ms, e)) != SYNC_OK ||
        (rc = conn_identify_peer(c, e)) != SYNC_OK)
        goto out;
    snprintf(c->where, sizeof(c->where), "site %s at %s", c->peer_id, c->addr);
    *out = c;
    c = NULL;
out:
    tls_conn_close(c);
    if (fd >= 0)
        close(fd);
    ERR_clear_error();
    return rc;
}

/* One TCP connect attempt to ai, bounded by deadline; the fd or -1 with errno. */
static int tcp_connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int fd, err = 0;
    socklen_t len = sizeof(err);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS && errno != EINTR) {
        err = errno;
        goto fail;
    }
    switch (wait_fd(fd, POLLOUT, deadline)) {
    case 0:
        err = ETIMEDOUT;
        goto fail;
    case -1:
        err = errno;
        goto fail;
    default:
        break;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0)
        return fd;
fail:
    close(fd);
    errno = err;
    return -1;
}

/* TCP connect to host:port, each address tried within timeout_ms. */
static int tcp_connect(int *out, const char *host, const char *port, int timeout_ms,
                       struct errctx *e)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char hp[300];
    int gai, fd = -1, err = EHOSTUNREACH;

    *out = -1;
    format_hostport(hp, sizeof(hp), host, port);
    if ((gai = getaddrinfo(host, port, &hints, &res)) != 0)
        return errctx_set(e, SYNC_ENET, "cannot reach hub at %s: %s; will retry on the next sync",
                          hp, gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
    for (const struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        if ((fd = tcp_connect_one(ai, now_ms() + timeout_ms)) < 0)
            err = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return errctx_set(e, SYNC_ENET, "cannot reach hub at %s: %s; will retry on the next sync",
                          hp, strerror(err));
    *out = fd;
    return SYNC_OK;
}

int tls_connect(struct tls_conn **out, struct tls_ctx *ctx, const char *host, const char *port,
                struct errctx *e)
{
    struct tls_conn *c = NULL;
    int fd = -1, rc;

    *out = NULL;
    if (ctx == NULL || ctx->side != TLS_SIDE_SITE || host == NULL || port == NULL)
        return errctx_set(e, SYNC_EUSAGE, "tls_connect needs a site TLS context, host and port");
    if ((rc = tcp_connect(&fd, host, port, ctx->handshake_ms, e)) != SYNC_OK)
        goto out;
    if ((rc = conn_new(&c, ctx, fd, e)) != SYNC_OK)
        goto out;
    fd = -1;
    format_hostport(c->addr, sizeof(c->addr), host, port);
    snprintf(c->where, sizeof(c->where), "the hub at %s", c->addr);
    SSL_set_connect_state(c->ssl);
    (void)SSL_set_tlsext_host_name(c->ssl, TLS_HUB_NAME);
    if ((rc = conn_handshake(c, SSL_connect, ctx->handshake_ms, e)) != SYNC_OK ||
        (rc = conn_identify_peer(c, e)) != SYNC_OK)
        goto out;
    *out = c;
    c = NULL;
out:
    tls_conn_close(c);
    if (fd >= 0)
        close(fd);
    ERR_clear_error();
    return rc;
}

const char *tls_conn_peer_id(const struct tls_conn *c)
{
    return c->peer_id;
}

const char *tls_conn_peer_fingerprint(const struct tls_conn *c)
{
    return c->fingerprint;
}

void tls_conn_set_timeout(struct tls_conn *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
}

void tls_conn_set_frame_timeout(struct tls_conn *c, int frame_ms)
{
    c->frame_ms = frame_ms > 0 ? frame_ms : 0;
    c->frame_start = -1;
    c->frame_deadline = -1;
}

void tls_conn_start_frame_clock(struct tls_conn *c)
{
    frame_clock_start(c);
}

/* frame_io hook: the announced length buys time at FRAME_MIN_RATE. */
static void frame_sized(void *ctx, uint32_t len)
{
    struct tls_conn *c = ctx;

    if (c->frame_start >= 0)
        c->frame_deadline = c->frame_start + c->frame_ms + (int64_t)len * 1000 / FRAME_MIN_RATE;
}

/* frame_io hook: the frame is in (or failed); the next one's clock starts
 * at its first byte. */
static void frame_done(void *ctx)
{
    struct tls_conn *c = ctx;

    c->frame_start = -1;
    c->frame_deadline = -1;
}

/*
 * Waits for what the last SSL call asked for; SYNC_OK to retry it.  A read
 * wait ends at the inactivity timeout or at the frame deadline, whichever
 * comes first.
 */
static int conn_wait(struct tls_conn *c, int ssl_err, const char *doing, struct errctx *e)
{
    char what[160];
    int reading = ssl_err == SSL_ERROR_WANT_READ;
    int64_t idle = conn_deadline(c), deadline = idle;
    int by_frame = 0, w;

    if (reading && c->frame_deadline >= 0 && (idle < 0 || c->frame_deadline <= idle)) {
        deadline = c->frame_deadline;
        by_frame = 1;
    }
    w = wait_fd(c->fd, reading ? POLLIN : POLLOUT, deadline);
    if (w > 0)
        return SYNC_OK;
    if (w < 0)
        snprintf(what, sizeof(what), "could not be polled %s: %s", doing, strerror(errno));
    else if (by_frame)
        snprintf(what, sizeof(what),
                 "did not send a whole frame within %lld ms (the deadline for one frame; "
                 "slower than the hub allows)",
                 (long long)(c->frame_deadline - c->frame_start));
    else
        snprintf(what, sizeof(what), "timed out after %d ms without progress %s", c->timeout_ms,
                 doing);
    return conn_fail_net(c, what, e);
}

int tls_read(struct tls_conn *c, void *buf, size_t n, struct errctx *e)
{
    unsigned char *p = buf;
    size_t got = 0;
    int rc;

    if (c->failed)
        return errctx_set(e, SYNC_ENET, "the connection with %s already failed", c->where);
    while (got < n) {
        size_t k = 0;
        ERR_clear_error();
        errno = 0;
        int r = SSL_read_ex(c->ssl, p + got, n - got, &k);
        if (r == 1) {
            frame_clock_start(c);
            got += k;
            c->app_in += k;
            continue;
        }
        int ssl_err = SSL_get_error(c->ssl, r);
        if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE)
            return conn_fail(c, r, "while reading", e);
        if ((rc = conn_wait(c, ssl_err, "while reading", e)) != SYNC_OK)
            return rc;
        frame_clock_start(c); /* bytes came: the frame's clock runs from now */
    }
    return SYNC_OK;
}

/*
 * After a write failed on a reset socket: with TLS 1.3 a site learns that the
 * hub refused its certificate only from the alert the hub sent after the
 * handshake, which may already wait in the receive buffer.  Explains the
 * failure by that alert if there is one; SYNC_OK if not.
 */
static int conn_explain_by_alert(struct tls_conn *c, struct errctx *e)
{
    unsigned char byte;
    size_t k = 0;

    ERR_clear_error();
    int r = SSL_peek_ex(c->ssl, &byte, 1, &k);
    if (r != 1 && SSL_get_error(c->ssl, r) == SSL_ERROR_SSL &&
        received_alert(ERR_peek_error()) >= 0)
        return conn_fail(c, r, "while writing", e);
    ERR_clear_error();
    return SYNC_OK;
}

int tls_write(struct tls_conn *c, const void *buf, size_t n, struct errctx *e)
{
    int rc;

    if (c->failed)
        return errctx_set(e, SYNC_ENET, "the connection with %s already failed", c->where);
    if (n == 0)
        return SYNC_OK;
    for (;;) {
        size_t k = 0;
        ERR_clear_error();
        errno = 0;
        /* Without SSL_MODE_ENABLE_PARTIAL_WRITE a success means all n bytes;
         * a retry repeats the same call, as OpenSSL requires. */
        int r = SSL_write_ex(c->ssl, buf, n, &k);
        if (r == 1) {
            c->app_out += n;
            return SYNC_OK;
        }
        int ssl_err = SSL_get_error(c->ssl, r);
        if (ssl_err != SSL_ERROR_WANT_READ && ssl_err != SSL_ERROR_WANT_WRITE) {
            rc = conn_fail(c, r, "while writing", e);
            if (rc == SYNC_ENET && c->side == TLS_SIDE_SITE) {
                int why = conn_explain_by_alert(c, e);
                if (why != SYNC_OK)
                    rc = why;
            }
            return rc;
        }
        if ((rc = conn_wait(c, ssl_err, "while writing", e)) != SYNC_OK)
            return rc;
    }
}

static int io_read(void *ctx, void *buf, size_t n, struct errctx *e)
{
    return tls_read(ctx, buf, n, e);
}

static int io_write(void *ctx, const void *buf, size_t n, struct errctx *e)
{
    return tls_write(ctx, buf, n, e);
}

struct frame_io tls_conn_io(struct tls_conn *c)
{
    struct frame_io io = {.read = io_read,
                          .write = io_write,
                          .ctx = c,
                          .frame_sized = frame_sized,
                          .frame_done = frame_done};

    return io;
}

void tls_conn_close(struct tls_conn *c)
{
    if (c == NULL)
        return;
    /* One close_notify, without waiting for the peer's: the socket is
     * non-blocking, so a full send buffer only loses the courtesy. */
    if (!c->failed && SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    close(c->fd);
    conn_free(c);
}

/* ---- certificates without a connection ---------------------------------- */

int tls_cert_fingerprint(char out[65], const char *cert_pem, struct errctx *e)
{
    X509 *x = NULL;
    int rc;

    out[0] = '\0';
    if ((rc = pem_check(cert_pem, "certificate", e)) != SYNC_OK)
        return rc;
    if ((x = pem_cert(cert_pem)) == NULL)
        rc = errctx_set(e, SYNC_ETLS, "not a PEM certificate: %s", ssl_reason());
    else
        rc = cert_fingerprint(x, out, e);
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int tls_cert_cn(char *out, size_t outsz, const char *cert_pem, struct errctx *e)
{
    X509 *x = NULL;
    int rc;

    if (outsz > 0)
        out[0] = '\0';
    if ((rc = pem_check(cert_pem, "certificate", e)) != SYNC_OK)
        return rc;
    if ((x = pem_cert(cert_pem)) == NULL)
        rc = errctx_set(e, SYNC_ETLS, "not a PEM certificate: %s", ssl_reason());
    else
        rc = cert_cn(x, out, outsz, e);
    X509_free(x);
    ERR_clear_error();
    return rc;
}

int tls_site_id_valid(const char *s)
{
    size_t i;

    if (s == NULL)
        return 0;
    for (i = 0; s[i] != '\0'; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (i >= SITE_ID_MAX || !(alnum || (ch == '-' && i > 0)))
            return 0;
    }
    return i > 0;
}
