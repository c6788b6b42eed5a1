/*
 * tls.h - TLS 1.3 with mutual certificate authentication (OpenSSL 3).
 *
 * Both sides pin the hub's own CA: nothing else is trusted.  The hub
 * certificate carries extendedKeyUsage serverAuth and the DNS name
 * TLS_HUB_NAME; a site certificate carries clientAuth and its site id as the
 * subject CN.  The site id of a connection comes from the verified peer
 * certificate only.  TLS 1.2 and below are refused on both sides.  Sockets
 * are non-blocking underneath, bounded with poll(); writes never raise
 * SIGPIPE.  A tls_ctx may be shared by threads; a tls_conn belongs to one.
 */
#ifndef EMPACT_TLS_H
#define EMPACT_TLS_H

#include <stddef.h>

#include <stdint.h>

#include "errctx.h"
#include "frame.h"

/* The DNS name every hub certificate carries and every client checks. */
#define TLS_HUB_NAME "empact-hub"

struct tls_ctx;
struct tls_conn;

/* A hub context: its certificate and key, and the CA that signs sites.  All
 * three are PEM text, borrowed for the call.  Caller frees with tls_ctx_free(). */
int tls_ctx_new_server(struct tls_ctx **out, const char *cert_pem, const char *key_pem,
                       const char *ca_pem, struct errctx *e) SYNC_WUR;

/* A site context: the site certificate and key, and the hub CA (PEM, borrowed). */
int tls_ctx_new_client(struct tls_ctx **out, const char *cert_pem, const char *key_pem,
                       const char *ca_pem, struct errctx *e) SYNC_WUR;

/* Safe to call with NULL; wipes key material. */
void tls_ctx_free(struct tls_ctx *ctx);

/* Bounds the TCP connect and TLS handshake of later connections made from ctx
 * to timeout_ms (> 0) instead of TLS_HANDSHAKE_TIMEOUT_MS (tests use it). */
void tls_ctx_set_handshake_timeout(struct tls_ctx *ctx, int timeout_ms);

/* Hub side: runs the handshake on an accepted socket (takes ownership of fd,
 * closes it on failure) within TLS_HANDSHAKE_TIMEOUT_MS.  The peer must present
 * a certificate signed by the CA with a valid site id as CN. */
int tls_accept(struct tls_conn **out, struct tls_ctx *ctx, int fd, struct errctx *e) SYNC_WUR;

/* Site side: connects to host:port (TCP, then TLS) and verifies the hub.
 * SYNC_ENET when the hub cannot be reached (retry later), SYNC_ETLS when the
 * handshake or verification fails. */
int tls_connect(struct tls_conn **out, struct tls_ctx *ctx, const char *host, const char *port,
                struct errctx *e) SYNC_WUR;

/* The verified peer's site id (hub side) or TLS_HUB_NAME (site side); borrowed. */
const char *tls_conn_peer_id(const struct tls_conn *c);

/* Lowercase hex SHA-256 of the peer certificate's DER (64 chars + NUL); borrowed. */
const char *tls_conn_peer_fingerprint(const struct tls_conn *c);

/* Sets the inactivity timeout for later reads and writes (0: none). */
void tls_conn_set_timeout(struct tls_conn *c, int timeout_ms);

/*
 * Bounds each frame read through tls_conn_io(c) (0: no bound, the default):
 * it must arrive whole within frame_ms of its first byte reaching the socket,
 * plus one second per FRAME_MIN_RATE bytes of its announced payload length;
 * otherwise the read fails with SYNC_ENET and a sentence saying so.
 */
void tls_conn_set_frame_timeout(struct tls_conn *c, int frame_ms);

/* Starts the next frame's clock now instead of at its first byte (the hub
 * does so after the handshake: the HELLO must follow within the bound). */
void tls_conn_start_frame_clock(struct tls_conn *c);

/* Reads exactly n bytes / writes all n bytes.  A timeout, reset or EOF is SYNC_ENET. */
/* Bytes received and sent on c's socket so far: TLS records and handshake
 * included, as they crossed the network (c may be NULL: 0 and 0). */
void tls_conn_bytes(const struct tls_conn *c, uint64_t *in, uint64_t *out);

/* Plaintext bytes read and written on c: the protocol's frames, without the
 * TLS handshake and record overhead that tls_conn_bytes() includes. */
void tls_conn_app_bytes(const struct tls_conn *c, uint64_t *in, uint64_t *out);

int tls_read(struct tls_conn *c, void *buf, size_t n, struct errctx *e) SYNC_WUR;
int tls_write(struct tls_conn *c, const void *buf, size_t n, struct errctx *e) SYNC_WUR;

/* A frame_io over this connection (borrows c), with the frame hooks that
 * tls_conn_set_frame_timeout() needs. */
struct frame_io tls_conn_io(struct tls_conn *c);

/* Sends close_notify (best effort), closes the socket, frees c.  NULL is fine. */
void tls_conn_close(struct tls_conn *c);

/* SHA-256 fingerprint of a PEM certificate as lowercase hex into out[65]. */
int tls_cert_fingerprint(char out[65], const char *cert_pem, struct errctx *e) SYNC_WUR;

/* The subject CN of a PEM certificate into out (size outsz). */
int tls_cert_cn(char *out, size_t outsz, const char *cert_pem, struct errctx *e) SYNC_WUR;

/* 1 if s is a valid site id: 1..SITE_ID_MAX chars of [a-z0-9-], starting alnum. */
int tls_site_id_valid(const char *s);

#endif
