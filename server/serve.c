/*
 * serve.c - accept loop and per-connection protocol for the hub.
 *
 * State machine of one connection (PROTOCOL.md): TLS handshake -> HELLO ->
 * WELCOME -> any number of PUSH / PULL -> BYE or close.  Every read has the
 * idle timeout, and every frame a deadline from its first byte (the HELLO:
 * from the end of the handshake), so a peer that trickles is dropped too;
 * every frame length is checked against FRAME_MAX before allocation; every
 * changeset is decompressed with a bound.  One IP address holds at most
 * MAX_CONN_PER_IP of the HUB_MAX_CONNS connections.
 *
 * Test builds (EMPACT_TEST_HOOKS) read shorter limits from the environment
 * so the end-to-end tests run in seconds: EMPACT_IDLE_TIMEOUT_MS,
 * EMPACT_FRAME_DEADLINE_MS and EMPACT_MAX_CONN_PER_IP (testpoint.h).  Pushes go
 * through hub_push(), which serialises writers; pulls read a snapshot on the
 * connection's own database handle, so they run concurrently.
 *
 * Shutdown: the accept loop polls the stop flag; on stop it shuts down the
 * sockets of live connections (waking blocked reads), waits for their
 * threads, and only then frees the shared state.
 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "dict.h"
#include "hub.h"
#include "pki.h"
#include "proto.h"
#include "snapshot.h"
#include "testpoint.h"
#include "tls.h"
#include "vcache.h"
#include "zcodec.h"

#define READER_POOL 16 /* idle hub.db read connections kept */

struct server {
    const char *dir;
    const struct schema *schema;
    struct hub *hub;
    struct tls_ctx *tls;
    struct dict_cache *dicts;
    struct vcache *versions; /* compressed versions, shared by the connections */
    pthread_mutex_t lock;    /* guards fds[], ips[] and nlive */
    pthread_cond_t idle;
    int fds[HUB_MAX_CONNS];
    char ips[HUB_MAX_CONNS][NI_MAXHOST]; /* numeric peer address of each live slot */
    int nlive;
    int nmarking; /* threads, their socket closed, waiting to record a sync's mark */
    sqlite3 *readers[READER_POOL]; /* idle hub.db read connections, kept for the next */
    int nreaders;
    int idle_ms;    /* IDLE_TIMEOUT_MS, or a test build's override */
    int frame_ms;   /* FRAME_DEADLINE_MS, or a test build's override */
    int max_per_ip; /* MAX_CONN_PER_IP, or a test build's override */
};

struct conn {
    struct server *srv;
    int fd;
    int slot;
    struct tls_conn *tls;
    struct frame_io io;
    sqlite3 *rdb;
    uint64_t pulled_to;       /* head of the last PULL_END sent (0: none yet) */
    int bye;                  /* the site said BYE: its sync ended well */
    const struct zdict *dict; /* the dictionary both sides hold, or NULL */
    struct zenc *enc;         /* compresses a pull's versions (made at the first) */
    char site[SITE_ID_MAX + 1];
    char peer[NI_MAXHOST + NI_MAXSERV + 2];
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A hub.db read connection for a site's connection: an idle one kept by an
 * earlier connection, else a new one (opening one and reading hub.db's
 * schema cost more than many a small sync's queries). */
static int reader_take(struct server *srv, sqlite3 **out, struct errctx *e)
{
    *out = NULL;
    pthread_mutex_lock(&srv->lock);
    if (srv->nreaders > 0)
        *out = srv->readers[--srv->nreaders];
    pthread_mutex_unlock(&srv->lock);
    return *out != NULL ? SYNC_OK : hub_reader_open(out, srv->dir, e);
}

/* Keeps db for the next connection if it is idle (no transaction, no
 * statement) and the pool has room; closes it otherwise.  Takes NULL. */
static void reader_give(struct server *srv, sqlite3 *db)
{
    if (db == NULL)
        return;
    if (sqlite3_get_autocommit(db) && sqlite3_next_stmt(db, NULL) == NULL) {
        pthread_mutex_lock(&srv->lock);
        if (srv->nreaders < READER_POOL) {
            srv->readers[srv->nreaders++] = db;
            db = NULL;
        }
        pthread_mutex_unlock(&srv->lock);
    }
    sqlite3_close(db);
}

static void logf_(const char *fmt, ...)
{
    char when[32], line[1024];
    time_t now = time(NULL);
    struct tm tm;
    va_list ap;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s empact-hub: %s\n", when, line);
}

/* Maps a hub-side failure to the error frame a site sees. */
static uint16_t wire_code(int rc)
{
    switch (rc) {
    case SYNC_EREFUSED:
        return WERR_PUSH_REFUSED;
    case SYNC_ELIMIT:
        return WERR_TOO_LARGE;
    case SYNC_EPROTO:
        return WERR_BAD_FRAME;
    case SYNC_ESCHEMA:
        return WERR_PUSH_REFUSED;
    default:
        return WERR_INTERNAL;
    }
}

/* Records a refusal of this site (a decision, not a hub failure) for
 * `empact-hub status`; a failure to record is logged only. */
static void note_refusal(struct conn *c, int rc, const char *why)
{
    struct errctx e = {0, ""};

    if (wire_code(rc) == WERR_INTERNAL)
        return;
    if (hub_site_refused(c->srv->hub, c->site, why, &e) != SYNC_OK)
        logf_("site %s: cannot record a refusal: %s", c->site, e.msg);
}

static int handle_hello(struct conn *c, struct errctx *e)
{
    struct frame *f = NULL;
    struct msg_hello hello;
    struct msg_welcome w = {PROTO_VERSION, 0, 0};
    struct buf b = {0};
    int rc;

    /* Nothing is authorised yet: a HELLO is 34 bytes, so allow no more. */
    if ((rc = frame_read(&f, &c->io, HELLO_FRAME_MAX, e)) != SYNC_OK)
        goto out;
    if ((rc = msg_hello_decode(&hello, f, e)) != SYNC_OK) {
        msg_send_error(&c->io, WERR_BAD_FRAME, e->msg);
        goto out;
    }
    if (hello.proto != PROTO_VERSION) {
        rc = errctx_set(e, SYNC_EREFUSED,
                        "hub speaks protocol %d but this client speaks %u; update the client",
                        PROTO_VERSION, hello.proto);
        msg_send_error(&c->io, WERR_PROTO_VERSION, e->msg);
        goto out;
    }
    if (memcmp(hello.schema, c->srv->schema->fingerprint, 32) != 0) {
        char theirs[65];
        for (int i = 0; i < 32; i++)
            snprintf(theirs + i * 2, 3, "%02x", hello.schema[i]);
        rc = errctx_set(e, SYNC_ESCHEMA,
                        "hub refused: this client's schema %.12s differs from the hub's %.12s; "
                        "install the client version that matches the hub",
                        theirs, c->srv->schema->fingerprint_hex);
        msg_send_error(&c->io, WERR_SCHEMA, e->msg);
        goto out;
    }
    if ((rc = hub_site_check(c->rdb, c->site, tls_conn_peer_fingerprint(c->tls), e)) != SYNC_OK) {
        msg_send_error(&c->io, WERR_NOT_AUTHORISED, e->msg);
        goto out;
    }
    /* both sides compress with a dictionary only when the site holds the
     * hub's newest (a site with another fetches it, DICT_GET) */
    if ((rc = dict_newest(c->rdb, &w.dict, e)) != SYNC_OK ||
        (hello.dict == w.dict &&
         (rc = dict_cache_get(c->srv->dicts, c->rdb, w.dict, &c->dict, e)) != SYNC_OK))
        goto out;
    if ((rc = hub_head(c->rdb, &w.head, e)) != SYNC_OK ||
        (rc = msg_welcome_encode(&b, &w, e)) != SYNC_OK)
        goto out;
    rc = msg_send(&c->io, MSG_WELCOME, &b, e);
out:
    buf_free(&b);
    frame_free(f);
    return rc;
}

static int handle_push(struct conn *c, const struct frame *f, struct errctx *e)
{
    struct msg_push m;
    struct msg_push_ok ok;
    struct buf raw = {0}, b = {0};
    int rc;

    if ((rc = msg_push_decode(&m, f, e)) != SYNC_OK)
        goto refuse;
    if (m.raw_len == 0) {
        rc = errctx_set(e, SYNC_EPROTO, "empty push");
        goto refuse;
    }
    if ((rc = zcodec_decompress_dict(&raw, m.z, m.zlen, m.raw_len, c->dict, e)) != SYNC_OK)
        goto refuse;
    if (raw.len != m.raw_len) {
        rc = errctx_set(e, SYNC_EPROTO, "push decompressed to %zu bytes, not the %u announced",
                        raw.len, m.raw_len);
        goto refuse;
    }
    /* msg_push_decode() checked that the times fit in raw_len */
    m.times = raw.data;
    if ((rc = hub_push(c->srv->hub, c->site, &m, raw.data + (size_t)m.ntimes * 8,
                       raw.len - (size_t)m.ntimes * 8, &ok, e)) != SYNC_OK)
        goto refuse;
    if (ok.duplicate)
        logf_("site %s: push repeated (already applied as version %llu)", c->site,
              (unsigned long long)ok.version);
    else if (ok.version)
        logf_("site %s: push accepted as version %llu (%u applied, %u lost in conflicts)", c->site,
              (unsigned long long)ok.version, ok.applied, ok.overridden);
    else
        logf_("site %s: push changed nothing (%u lost in conflicts)", c->site, ok.overridden);
    if ((rc = msg_push_ok_encode(&b, &ok, e)) == SYNC_OK)
        rc = msg_send(&c->io, MSG_PUSH_OK, &b, e);
    goto out;
refuse:
    logf_("site %s: push refused: %s", c->site, e->msg);
    msg_send_error(&c->io, wire_code(rc), e->msg);
    note_refusal(c, rc, e->msg);
out:
    buf_free(&raw);
    buf_free(&b);
    return rc;
}

struct pull_ctx {
    struct conn *c;
    struct errctx *e;
    uint64_t own; /* PULL's own version: sent without its changeset */
    uint64_t count;
    uint64_t nown;
    uint64_t nconflicts;
};

static int send_version(void *arg, const struct hub_version *v)
{
    struct pull_ctx *p = arg;
    struct msg_version m;
    struct buf z = {0}, b = {0};
    uint32_t dict;
    int rc;

    memset(&m, 0, sizeof(m));
    m.seq = v->seq;
    memcpy(m.commit, v->commit, 20);
    memcpy(m.tree, v->tree, 20);
    m.time = (uint64_t)v->time;
    snprintf(m.author, sizeof(m.author), "%s", v->site);
    p->count++;
    /* the site's own push, which it applies from its outbox: only a version
     * this site authored qualifies; the site checks the tree id after */
    if (v->seq == p->own && strcmp(v->site, p->c->site) == 0) {
        p->nown++;
        if ((rc = msg_own_version_encode(&b, &m, p->e)) == SYNC_OK)
            rc = msg_send(&p->c->io, MSG_OWN_VERSION, &b, p->e);
        buf_free(&b);
        return rc;
    }
    m.raw_len = (uint32_t)v->ncs;
    dict = p->c->dict != NULL ? zdict_id(p->c->dict) : 0;
    if ((rc = vcache_get(p->c->srv->versions, v->seq, v->commit, dict, &z, p->e)) == 0 &&
        (p->c->enc != NULL || (rc = zenc_new(&p->c->enc, p->e)) == SYNC_OK) &&
        (rc = zenc_compress(p->c->enc, &z, v->cs, v->ncs, p->c->dict, p->e)) == SYNC_OK)
        vcache_put(p->c->srv->versions, v->seq, v->commit, dict, z.data, z.len);
    if (rc >= 0) {
        rc = SYNC_OK;
        m.z = z.data;
        m.zlen = (uint32_t)z.len;
        if ((rc = msg_version_encode(&b, &m, p->e)) == SYNC_OK)
            rc = msg_send(&p->c->io, MSG_VERSION, &b, p->e);
    }
    buf_free(&z);
    buf_free(&b);
    return rc;
}

static int send_conflict(void *arg, const struct hub_conflict *hc)
{
    struct pull_ctx *p = arg;
    struct msg_conflict m;
    struct buf b = {0};
    int rc;

    memset(&m, 0, sizeof(m));
    m.id = hc->id;
    m.version = hc->version;
    snprintf(m.table, sizeof(m.table), "%s", hc->table);
    snprintf(m.column, sizeof(m.column), "%s", hc->column);
    snprintf(m.kind, sizeof(m.kind), "%s", hc->kind);
    snprintf(m.winner, sizeof(m.winner), "%s", hc->winner);
    m.lost_at = (uint64_t)hc->lost_at;
    m.won_at = (uint64_t)hc->won_at;
    m.key = (const uint8_t *)hc->key;
    m.nkey = (uint32_t)strlen(hc->key);
    m.lost = (const uint8_t *)hc->lost;
    m.nlost = (uint32_t)strlen(hc->lost);
    m.kept = (const uint8_t *)hc->kept;
    m.nkept = (uint32_t)strlen(hc->kept);
    if ((rc = msg_conflict_encode(&b, &m, p->e)) == SYNC_OK)
        rc = msg_send(&p->c->io, MSG_CONFLICT, &b, p->e);
    buf_free(&b);
    p->nconflicts++;
    return rc;
}

static int handle_pull(struct conn *c, const struct frame *f, struct errctx *e)
{
    struct pull_ctx p = {c, e, 0, 0, 0, 0};
    struct msg_pull_end end;
    struct msg_pull pull;
    struct buf b = {0};
    int more, rc;

    if ((rc = msg_pull_decode(&pull, f, e)) != SYNC_OK) {
        msg_send_error(&c->io, WERR_BAD_FRAME, e->msg);
        return rc;
    }
    memset(&end, 0, sizeof(end));
    p.own = pull.own;
    rc = hub_versions(c->rdb, pull.since, send_version, &p, &end.head, end.tree, &more, e);
    /* the encoder's workspace grows with the largest version sent: not kept idle */
    zenc_free(c->enc);
    c->enc = NULL;
    if (rc != SYNC_OK || (rc = hub_conflicts(c->rdb, c->site, pull.conflicts_since, send_conflict,
                                             &p, e)) != SYNC_OK) {
        if (rc == SYNC_EREFUSED)
            msg_send_error(&c->io, WERR_BASE_AHEAD, e->msg);
        else if (rc != SYNC_ENET)
            msg_send_error(&c->io, WERR_INTERNAL, "the hub could not read its versions");
        return rc;
    }
    end.more = (uint8_t)more;
    if ((rc = msg_pull_end_encode(&b, &end, e)) == SYNC_OK)
        rc = msg_send(&c->io, MSG_PULL_END, &b, e);
    buf_free(&b);
    if (rc == SYNC_OK)
        c->pulled_to = end.head;
    if (rc == SYNC_OK && (p.count > 0 || p.nconflicts > 0))
        logf_("site %s: sent %llu versions (%llu..%llu; %llu its own, without changeset) and %llu "
              "conflict log entries",
              c->site, (unsigned long long)p.count, (unsigned long long)pull.since + 1,
              (unsigned long long)end.head, (unsigned long long)p.nown,
              (unsigned long long)p.nconflicts);
    return rc;
}

/* A site without the hub's newest dictionary asks for it; from then on this
 * connection's payloads use it both ways. */
static int handle_dict_get(struct conn *c, const struct frame *f, struct errctx *e)
{
    const struct zdict *d = NULL;
    struct msg_dict m;
    struct buf b = {0};
    uint32_t id;
    int rc;

    if (f->len != 0) {
        rc = errctx_set(e, SYNC_EPROTO, "DICT_GET: %u unexpected payload bytes", f->len);
        msg_send_error(&c->io, WERR_BAD_FRAME, e->msg);
        return rc;
    }
    if ((rc = dict_newest(c->rdb, &id, e)) != SYNC_OK ||
        (rc = dict_cache_get(c->srv->dicts, c->rdb, id, &d, e)) != SYNC_OK) {
        msg_send_error(&c->io, WERR_INTERNAL, "the hub could not read its dictionary");
        return rc;
    }
    if (d == NULL) {
        rc = errctx_set(e, SYNC_EPROTO, "DICT_GET: the hub has no dictionary");
        msg_send_error(&c->io, WERR_BAD_FRAME, e->msg);
        return rc;
    }
    m.id = zdict_id(d);
    m.bytes = zdict_bytes(d);
    m.n = (uint32_t)zdict_size(d);
    if ((rc = msg_dict_encode(&b, &m, e)) == SYNC_OK &&
        (rc = msg_send(&c->io, MSG_DICT, &b, e)) == SYNC_OK) {
        c->dict = d;
        logf_("site %s: sent dictionary %u (%u bytes)", c->site, m.id, m.n);
    }
    buf_free(&b);
    return rc;
}

/* A joining site asks for the replicated tables as of the head version. */
static int handle_snapshot(struct conn *c, const struct frame *f, struct errctx *e)
{
    struct snapshot_stats st;
    struct timespec t0, t1;
    int rc;

    if (f->len != 0) {
        rc = errctx_set(e, SYNC_EPROTO, "SNAPSHOT: %u unexpected payload bytes", f->len);
        msg_send_error(&c->io, WERR_BAD_FRAME, e->msg);
        return rc;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = snapshot_send(c->rdb, c->srv->schema, &c->io, &st, e)) != SYNC_OK) {
        if (rc != SYNC_ENET)
            msg_send_error(&c->io, WERR_INTERNAL, "the hub could not read its tables; retry later");
        return rc;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->pulled_to = st.version;
    logf_("site %s: sent a snapshot of version %llu: %llu rows, %llu bytes (%llu compressed, %u "
          "frames) in %lld ms",
          c->site, (unsigned long long)st.version, (unsigned long long)st.rows,
          (unsigned long long)st.raw, (unsigned long long)st.wire, st.chunks,
          (long long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
    return SYNC_OK;
}

static void session(struct conn *c)
{
    struct errctx e = {0, ""};
    struct frame *f = NULL;
    int rc;

    if ((rc = tls_accept(&c->tls, c->srv->tls, c->fd, &e)) != SYNC_OK) {
        c->fd = -1; /* tls_accept closed it */
        logf_("connection from %s refused: %s", c->peer, e.msg);
        return;
    }
    c->fd = -1;
    snprintf(c->site, sizeof(c->site), "%s", tls_conn_peer_id(c->tls));
    c->io = tls_conn_io(c->tls);
    tls_conn_set_timeout(c->tls, c->srv->idle_ms);
    tls_conn_set_frame_timeout(c->tls, c->srv->frame_ms);
    tls_conn_start_frame_clock(c->tls); /* the HELLO is due from now */
    if ((rc = reader_take(c->srv, &c->rdb, &e)) != SYNC_OK) {
        msg_send_error(&c->io, WERR_INTERNAL, "the hub cannot open its database; retry later");
        logf_("site %s: %s", c->site, e.msg);
        return;
    }
    if ((rc = handle_hello(c, &e)) != SYNC_OK) {
        logf_("site %s (from %s): refused at hello: %s", c->site, c->peer, e.msg);
        note_refusal(c, rc, e.msg);
        return;
    }
    for (;;) {
        frame_free(f);
        f = NULL;
        if ((rc = frame_read(&f, &c->io, FRAME_MAX, &e)) != SYNC_OK) {
            if (rc == SYNC_ELIMIT)
                msg_send_error(&c->io, WERR_TOO_LARGE, e.msg);
            logf_("site %s: connection ended: %s", c->site, e.msg);
            break;
        }
        if (f->type == MSG_BYE) {
            c->bye = 1; /* a site says BYE only after its sync succeeded */
            break;
        }
        if (f->type == MSG_PUSH)
            rc = handle_push(c, f, &e);
        else if (f->type == MSG_PULL)
            rc = handle_pull(c, f, &e);
        else if (f->type == MSG_SNAPSHOT)
            rc = handle_snapshot(c, f, &e);
        else if (f->type == MSG_DICT_GET)
            rc = handle_dict_get(c, f, &e);
        else {
            rc = errctx_set(&e, SYNC_EPROTO, "unexpected %s message", msg_type_name(f->type));
            msg_send_error(&c->io, WERR_BAD_FRAME, e.msg);
        }
        if (rc != SYNC_OK) {
            if (f->type != MSG_PUSH)
                logf_("site %s: %s", c->site, e.msg);
            break;
        }
    }
    frame_free(f);
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct server *srv = c->srv;

    session(c);
    tls_conn_close(c->tls);
    if (c->fd >= 0)
        close(c->fd);
    reader_give(srv, c->rdb);
    zenc_free(c->enc);
    /* the socket is closed: its slot is free for the site's next connection
     * while the mark below waits for the writer (the thread still counts
     * in nlive, so a stopping hub waits for it) */
    pthread_mutex_lock(&srv->lock);
    srv->fds[c->slot] = -1;
    srv->ips[c->slot][0] = '\0';
    pthread_mutex_unlock(&srv->lock);
    if (c->bye) {
        struct errctx e = {0, ""};
        int room;
        /* threads waiting to record a mark hold no slot: bound them too,
         * for a writer that stalls (a mark is only the time shown by
         * `empact-hub status`; the site's next sync records it again) */
        pthread_mutex_lock(&srv->lock);
        if ((room = srv->nmarking < HUB_MAX_CONNS))
            srv->nmarking++;
        pthread_mutex_unlock(&srv->lock);
        if (!room)
            logf_("site %s: its sync's time is not recorded: %d others wait for the writer",
                  c->site, HUB_MAX_CONNS);
        else if (hub_site_synced(srv->hub, c->site, c->pulled_to, &e) != SYNC_OK)
            logf_("site %s: cannot record the time of its sync: %s", c->site, e.msg);
        if (room) {
            pthread_mutex_lock(&srv->lock);
            srv->nmarking--;
            pthread_mutex_unlock(&srv->lock);
        }
    }
    pthread_mutex_lock(&srv->lock);
    if (--srv->nlive == 0)
        pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    free(c);
    return NULL;
}

/* Binds and listens on addr; *out is the socket, shown the bound address. */
static int listen_on(int *out, const char *addr, char *shown, size_t shownsz, struct errctx *e)
{
    char host[HUB_ADDRESS_MAX + 1], port[16], nhost[NI_MAXHOST], nport[NI_MAXSERV];
    struct addrinfo hints, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = -1, one = 1, rc;

    if ((rc = address_split(addr, host, sizeof(host), port, sizeof(port), e)) != SYNC_OK)
        return rc;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0)
        return errctx_set(e, SYNC_EUSAGE, "cannot listen on %s: %s", addr, gai_strerror(rc));
    if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, nhost, sizeof(nhost), nport, sizeof(nport),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    snprintf(shown, shownsz, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", nhost, nport);
    *out = fd;
    return SYNC_OK;
}

/* Hands an accepted socket to a new thread, or refuses it when full. */
static void conn_start(struct server *srv, int fd, const struct sockaddr_storage *ss, socklen_t sl)
{
    struct conn *c = calloc(1, sizeof(*c));
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    pthread_attr_t attr;
    pthread_t tid;
    int slot = -1, same_ip = 0;

    (void)getnameinfo((const struct sockaddr *)ss, sl, host, sizeof(host), port, sizeof(port),
                      NI_NUMERICHOST | NI_NUMERICSERV);
    pthread_mutex_lock(&srv->lock);
    for (int i = 0; i < HUB_MAX_CONNS; i++) {
        if (srv->fds[i] >= 0 && strcmp(srv->ips[i], host) == 0)
            same_ip++;
    }
    for (int i = 0; i < HUB_MAX_CONNS && c != NULL && same_ip < srv->max_per_ip; i++) {
        if (srv->fds[i] < 0) {
            slot = i;
            srv->fds[i] = fd;
            snprintf(srv->ips[i], sizeof(srv->ips[i]), "%s", host);
            srv->nlive++;
            break;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    if (c != NULL && same_ip >= srv->max_per_ip) {
        logf_("connection from %s:%s refused: %d connections from %s already open (the limit "
              "per address)",
              host, port, same_ip, host);
        close(fd);
        free(c);
        return;
    }
    if (c == NULL || slot < 0) {
        logf_("connection from %s:%s refused: %d connections already open", host, port,
              HUB_MAX_CONNS);
        close(fd);
        free(c);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    c->slot = slot;
    snprintf(c->peer, sizeof(c->peer), "%s:%s", host, port);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&tid, &attr, conn_main, c) != 0) {
        logf_("connection from %s refused: cannot start a thread", c->peer);
        close(fd);
        free(c);
        pthread_mutex_lock(&srv->lock);
        srv->fds[slot] = -1;
        srv->ips[slot][0] = '\0';
        if (--srv->nlive == 0)
            pthread_cond_broadcast(&srv->idle);
        pthread_mutex_unlock(&srv->lock);
    }
    pthread_attr_destroy(&attr);
}

/* Wakes every live connection and waits until their threads are gone. */
static void drain(struct server *srv)
{
    pthread_mutex_lock(&srv->lock);
    for (int i = 0; i < HUB_MAX_CONNS; i++) {
        if (srv->fds[i] >= 0)
            shutdown(srv->fds[i], SHUT_RDWR);
    }
    while (srv->nlive > 0)
        pthread_cond_wait(&srv->idle, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
}

static int tls_load(struct tls_ctx **out, const char *dir, struct errctx *e)
{
    char *cert = NULL, *key = NULL, *ca = NULL;
    int rc;

    if ((rc = hub_read_pem(&cert, dir, HUB_CERT, e)) == SYNC_OK &&
        (rc = hub_read_pem(&key, dir, HUB_KEY, e)) == SYNC_OK &&
        (rc = hub_read_pem(&ca, dir, HUB_CA_CERT, e)) == SYNC_OK)
        rc = tls_ctx_new_server(out, cert, key, ca, e);
    pki_pem_free(cert);
    pki_pem_free(key);
    pki_pem_free(ca);
    return rc;
}

int serve_run(const char *dir, const char *listen_addr, const struct schema *s, int max_per_ip,
              volatile sig_atomic_t *stop, struct errctx *e)
{
    struct server srv;
    char shown[HUB_ADDRESS_MAX + 16];
    int lfd = -1, rc;

    /* One thread per connection: glibc would give up to 8 arenas per core
     * to hundreds of short-lived threads, each keeping what its threads
     * freed; a few arenas keep the heap near what is in use (a 200-site
     * soak: anonymous RSS flat within ~10% instead of growing by half). */
#ifdef M_ARENA_MAX
    (void)mallopt(M_ARENA_MAX, HUB_MALLOC_ARENAS);
#endif
    memset(&srv, 0, sizeof(srv));
    srv.dir = dir;
    srv.schema = s;
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.idle, NULL);
    for (int i = 0; i < HUB_MAX_CONNS; i++)
        srv.fds[i] = -1;
    srv.idle_ms = testpoint_limit("EMPACT_IDLE_TIMEOUT_MS", IDLE_TIMEOUT_MS);
    srv.frame_ms = testpoint_limit("EMPACT_FRAME_DEADLINE_MS", FRAME_DEADLINE_MS);
    srv.max_per_ip =
        max_per_ip > 0 ? max_per_ip : testpoint_limit("EMPACT_MAX_CONN_PER_IP", MAX_CONN_PER_IP);
    if ((rc = hub_open(&srv.hub, dir, s, e)) != SYNC_OK || (rc = tls_load(&srv.tls, dir, e)) ||
        (rc = dict_cache_new(&srv.dicts, e)) != SYNC_OK ||
        (rc = vcache_new(&srv.versions, e)) != SYNC_OK ||
        (rc = listen_on(&lfd, listen_addr, shown, sizeof(shown), e)) != SYNC_OK)
        goto out;
    printf("listening on %s\n", shown);
    fflush(stdout);
    logf_("serving %s on %s (schema %.12s)", dir, shown, s->fingerprint_hex);
    while (!*stop) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd;

        if (poll(&pfd, 1, 200) <= 0)
            continue;
        if ((fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC)) < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                logf_("accept failed: %s", strerror(errno));
                /* out of descriptors: give live connections time to finish
                 * rather than spin on a listen socket that stays readable */
                poll(NULL, 0, ACCEPT_BACKOFF_MS);
            }
            continue;
        }
        conn_start(&srv, fd, &ss, sl);
    }
    logf_("stopping: waiting for %d open connections", srv.nlive);
    drain(&srv);
    logf_("stopped");
out:
    if (lfd >= 0)
        close(lfd);
    tls_ctx_free(srv.tls);
    dict_cache_free(srv.dicts);
    vcache_free(srv.versions);
    for (int i = 0; i < srv.nreaders; i++)
        sqlite3_close(srv.readers[i]);
    hub_close(srv.hub);
    pthread_cond_destroy(&srv.idle);
    pthread_mutex_destroy(&srv.lock);
    return rc;
}
