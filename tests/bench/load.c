/*
 * load.c - many sites pushing small changes to one hub at once, for
 * `make bench` (issue #8: hub throughput, latency and memory).
 *
 *   load [--wire] [--rate R] SECONDS ROWS SITE.db...
 *   load --hold SECONDS SITE.db...
 *
 * One thread per replica (each already joined, each its own site).  Until
 * SECONDS have passed, each thread inserts 1..ROWS resources and syncs,
 * timing it.  At the end prints
 *
 *   syncs=N errors=E seconds=S per_s=R p50_ms=.. p95_ms=.. p99_ms=.. max_ms=..
 *
 * and, per thread with failures, one line "error SITE: N failed, first: sentence".
 * rows= is every row inserted; the driver counts them on the hub afterwards
 * (ids "load-<run>-<thread>-<attempt>-<i>", <run> the start time, so the
 * tool can run again over the same replicas).
 *
 * A sync is, by default, a full `empact sync` (sync_run: a new TLS
 * connection, push, pull of every version since, applied and proved): the
 * rows go into the replica and a failed sync leaves them pending for the
 * next.  That measures the clients as much as the hub: on one 2-core
 * machine the simulated sites' own work (applying what the other sites
 * pushed, the proof, SQLite) took three times the hub's CPU.
 *
 * --wire: each sync speaks the protocol itself, as a site would, without
 * the site's own bookkeeping: a new TLS connection (full handshake, both
 * certificates checked; the client context is made once per thread, the
 * session never resumed) with the site's certificate (HELLO, WELCOME), one PUSH of the rows'
 * session changeset (taken inside a transaction on the replica that is
 * rolled back) with their edit times, PULL of every version since the
 * thread's last sync (received, not applied), BYE.  The hub does all it
 * does for a real site; a push that fails is sent again, same push id, by
 * the next sync (and at the end), so every row counts.
 *
 * --rate R: open loop.  The threads together start R syncs a second, each
 * thread at even intervals from a random phase, and a sync's time counts
 * from when it was due, not when it started (a hub that falls behind is
 * charged for the wait, as its sites would be).  Without it each thread
 * syncs again as soon as its last one ended (closed loop: the rate is
 * the most the hub and the clients manage together).
 *
 * --hold: each thread opens a connection to the hub as its site (TLS
 * handshake, HELLO, WELCOME) and keeps it open, idle, for SECONDS, so the
 * driver can read the hub's memory with that many sites connected; prints
 * "held=N failed=F".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "db.h"
#include "frame.h"
#include "proto.h"
#include "replica.h"
#include "schema.h"
#include "sync.h"
#include "tls.h"
#include "zcodec.h"

struct worker {
    pthread_t th;
    int idx;
    const char *path;
    const struct schema *s;
    double until;
    int rows;
    double *lat; /* ms per successful sync */
    size_t n, cap;
    long errors;
    long attempts;
    long sent_rows; /* inserted, whether their sync succeeded or not */
    char first_error[256];
    int wire;      /* --wire */
    double period; /* --rate: seconds between this thread's syncs; 0: closed loop */
    double phase;
};

static long run_stamp; /* seconds since the epoch at start: part of every id */

static double now_wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int add_rows(sqlite3 *db, struct worker *w, int k)
{
    char *sql = sqlite3_mprintf(
        "WITH RECURSIVE j(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM j WHERE i < %d) "
        "INSERT INTO resource (id, title, summary, kind) SELECT printf('load-%ld-%d-%ld-%%d', i), "
        "'Load ' || i, 'A small change from a load-test site', 'guide' FROM j",
        k, run_stamp, w->idx, w->attempts);
    int rc = sql && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    sqlite3_free(sql);
    return rc;
}

static void note_latency(struct worker *w, double ms)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        double *p = realloc(w->lat, cap * sizeof(*p));
        if (p == NULL)
            abort();
        w->lat = p;
        w->cap = cap;
    }
    w->lat[w->n++] = ms;
}

static void note_error(struct worker *w, const char *msg)
{
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof(w->first_error), "%s", msg);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    unsigned int seed = (unsigned int)w->idx * 2654435761u;

    while (now_s() < w->until) {
        sqlite3 *db = NULL;
        struct sync_result r;
        struct errctx e = {0, ""};
        int k = 1 + (int)(rand_r(&seed) % (unsigned int)w->rows), rc;
        double t0;

        w->attempts++;
        if (replica_open(&db, w->path, w->s, &e) != SYNC_OK || add_rows(db, w, k) != 0) {
            char msg[200];
            snprintf(msg, sizeof(msg), "cannot edit the replica: %s",
                     db ? sqlite3_errmsg(db) : e.msg);
            note_error(w, msg);
            replica_close(db);
            break;
        }
        w->sent_rows += k;
        t0 = now_s();
        rc = sync_run(db, w->s, &r, &e);
        if (rc == SYNC_OK)
            note_latency(w, (now_s() - t0) * 1000.0);
        else
            note_error(w, e.msg);
        replica_close(db);
    }
    return NULL;
}

/* The push a --wire thread has yet to see acknowledged. */
struct wire_push {
    uint8_t id[PUSH_ID_LEN];
    struct buf payload; /* edit times then the changeset, compressed */
    uint32_t raw_len, ntimes;
    int pending;
};

/* Builds the push of k new rows: their session changeset, taken inside a
 * transaction on the replica that is then rolled back. */
static int wire_build(struct wire_push *p, struct worker *w, sqlite3 *db, int k, unsigned *seed,
                      struct errctx *e)
{
    sqlite3_session *sess = NULL;
    struct buf times = {0};
    void *cs = NULL;
    int ncs = 0, rc = SYNC_OK;
    uint64_t now = (uint64_t)(now_wall_ms());

    p->payload.len = 0;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
    if (sqlite3session_create(db, "main", &sess) != SQLITE_OK ||
        sqlite3session_attach(sess, "resource") != SQLITE_OK || add_rows(db, w, k) != 0 ||
        sqlite3session_changeset(sess, &ncs, &cs) != SQLITE_OK)
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
    sqlite3session_delete(sess);
    (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < k && rc == SYNC_OK; i++)
        rc = buf_put_u64(&times, now, e);
    if (rc == SYNC_OK) {
        const void *parts[2] = {times.data, cs};
        size_t lens[2] = {times.len, (size_t)ncs};
        rc = zcodec_compress_parts(&p->payload, parts, lens, 2, NULL, e);
        p->raw_len = (uint32_t)(times.len + (size_t)ncs);
        p->ntimes = (uint32_t)k;
    }
    for (int i = 0; i < PUSH_ID_LEN; i++)
        p->id[i] = (uint8_t)rand_r(seed);
    p->pending = rc == SYNC_OK;
    buf_free(&times);
    sqlite3_free(cs);
    return rc;
}

/* One sync at the protocol level: connect, push p, pull from *base, bye. */
static int wire_sync(struct wire_push *p, uint64_t *base, sqlite3 *db, const struct schema *s,
                     struct tls_ctx *ctx, struct errctx *e)
{
    struct sync_link *l = NULL;
    struct msg_push m;
    struct msg_push_ok ok;
    struct msg_pull_end end;
    struct buf b = {0};
    struct frame *f = NULL;
    uint64_t head = 0;
    int rc;

    if ((rc = sync_link_open_ctx(&l, db, s, ctx, &head, e)) != SYNC_OK)
        return rc;
    if (*base == 0 || *base > head)
        *base = head;
    memcpy(m.push_id, p->id, PUSH_ID_LEN);
    m.base = *base;
    m.raw_len = p->raw_len;
    m.ntimes = p->ntimes;
    m.times = NULL;
    m.z = p->payload.data;
    m.zlen = (uint32_t)p->payload.len;
    if ((rc = msg_push_encode(&b, &m, e)) != SYNC_OK ||
        (rc = sync_link_send(l, MSG_PUSH, &b, e)) != SYNC_OK ||
        (rc = sync_link_read(l, &f, e)) != SYNC_OK ||
        (rc = msg_push_ok_decode(&ok, f, e)) != SYNC_OK)
        goto out;
    p->pending = 0;
    do {
        struct msg_pull req = {*base, 0, 0};
        frame_free(f);
        f = NULL;
        b.len = 0;
        if ((rc = msg_pull_encode(&b, &req, e)) != SYNC_OK ||
            (rc = sync_link_send(l, MSG_PULL, &b, e)) != SYNC_OK)
            goto out;
        for (;;) {
            if ((rc = sync_link_read(l, &f, e)) != SYNC_OK)
                goto out;
            if (f->type != MSG_VERSION && f->type != MSG_CONFLICT)
                break;
            frame_free(f);
            f = NULL;
        }
        if ((rc = msg_pull_end_decode(&end, f, e)) != SYNC_OK)
            goto out;
        *base = end.head;
    } while (end.more);
out:
    frame_free(f);
    buf_free(&b);
    sync_link_close(l, rc == SYNC_OK);
    return rc;
}

/* The TLS client context of the replica's site, made once per thread: a
 * real site makes it once per `empact sync`; parsing the key again for each
 * simulated sync was two fifths of the load tool's CPU. */
static int client_ctx(struct tls_ctx **out, sqlite3 *db, struct errctx *e)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    int rc;

    if ((rc = replica_meta_get(&ca, db, "ca_cert", e)) == SYNC_OK &&
        (rc = replica_meta_get(&cert, db, "site_cert", e)) == SYNC_OK &&
        (rc = replica_meta_get(&key, db, "site_key", e)) == SYNC_OK)
        rc = tls_ctx_new_client(out, cert, key, ca, e);
    sqlite3_free(ca);
    sqlite3_free(cert);
    sqlite3_free(key);
    return rc;
}

static void *run_wire(void *arg)
{
    struct worker *w = arg;
    unsigned int seed = (unsigned int)w->idx * 2654435761u + (unsigned int)run_stamp;
    struct wire_push p = {{0}, {0}, 0, 0, 0};
    struct errctx e = {0, ""};
    sqlite3 *db = NULL;
    struct tls_ctx *ctx = NULL;
    uint64_t base = 0;
    double due = w->until - 1e9;

    if (replica_open(&db, w->path, w->s, &e) != SYNC_OK || client_ctx(&ctx, db, &e) != SYNC_OK) {
        note_error(w, e.msg);
        replica_close(db);
        return NULL;
    }
    if (w->period > 0)
        due = now_s() + w->phase;
    while (now_s() < w->until) {
        double t0;
        if (w->period > 0) {
            double wait = due - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
            if (now_s() >= w->until)
                break;
        }
        t0 = w->period > 0 ? due : now_s();
        due += w->period;
        if (!p.pending) {
            int k = 1 + (int)(rand_r(&seed) % (unsigned int)w->rows);
            w->attempts++;
            if (wire_build(&p, w, db, k, &seed, &e) != SYNC_OK) {
                note_error(w, e.msg);
                break;
            }
            w->sent_rows += k;
        }
        if (wire_sync(&p, &base, db, w->s, ctx, &e) == SYNC_OK) {
            note_latency(w, (now_s() - t0) * 1000.0);
        } else { /* as a site's retry would, not at once */
            struct timespec ts = {0, 100 * 1000 * 1000};
            note_error(w, e.msg);
            nanosleep(&ts, NULL);
        }
    }
    /* a push not yet acknowledged is sent again (same id: applied once) */
    for (int i = 0; i < 10 && p.pending; i++) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        if (wire_sync(&p, &base, db, w->s, ctx, &e) != SYNC_OK) {
            note_error(w, e.msg);
            nanosleep(&ts, NULL);
        }
    }
    if (p.pending)
        note_error(w, "a push was never acknowledged");
    buf_free(&p.payload);
    tls_ctx_free(ctx);
    replica_close(db);
    return NULL;
}

static void *hold(void *arg)
{
    struct worker *w = arg;
    struct sync_link *l = NULL;
    sqlite3 *db = NULL;
    struct errctx e = {0, ""};
    uint64_t head = 0;

    if (replica_open(&db, w->path, w->s, &e) != SYNC_OK ||
        sync_link_open(&l, db, w->s, &head, &e) != SYNC_OK) {
        w->errors++;
        snprintf(w->first_error, sizeof(w->first_error), "%s", e.msg);
    } else {
        w->n = 1;
        while (now_s() < w->until) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    sync_link_close(l, 1);
    replica_close(db);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    struct schema *s = NULL;
    struct errctx e = {0, ""};
    struct worker *w;
    double seconds, t0, t1, *all;
    size_t total = 0, k = 0;
    long errors = 0, rows = 0;
    int nw, per;

    int holding = 0, wire = 0;
    double rate = 0;

    db_global_init();
    run_stamp = (long)time(NULL);
    while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
        if (strcmp(argv[1], "--hold") == 0) {
            holding = 1;
        } else if (strcmp(argv[1], "--wire") == 0) {
            wire = 1;
        } else if (strcmp(argv[1], "--rate") == 0 && argc > 2 && (rate = atof(argv[2])) > 0) {
            argv++;
            argc--;
        } else {
            argc = 0; /* usage */
            break;
        }
        argv++;
        argc--;
    }
    if (argc < 3 + !holding || (seconds = atof(argv[1])) <= 0 ||
        (per = holding ? 1 : atoi(argv[2])) <= 0) {
        fprintf(stderr, "usage: load [--wire] [--rate SYNCS_PER_S] SECONDS ROWS SITE.db...\n"
                        "       load --hold SECONDS SITE.db...\n");
        return 64;
    }
    if (schema_load(&s, &e) != SYNC_OK) {
        fprintf(stderr, "load: %s\n", e.msg);
        return 70;
    }
    nw = argc - 3 + holding;
    if ((w = calloc((size_t)nw, sizeof(*w))) == NULL)
        return 70;
    t0 = now_s();
    for (int i = 0; i < nw; i++) {
        w[i].idx = i;
        w[i].path = argv[3 - holding + i];
        w[i].s = s;
        w[i].until = t0 + seconds;
        w[i].rows = per;
        w[i].wire = wire;
        if (rate > 0) {
            w[i].period = (double)nw / rate;
            w[i].phase = w[i].period * (double)i / (double)nw;
        }
        if (pthread_create(&w[i].th, NULL, holding ? hold : wire ? run_wire : run, &w[i]) != 0) {
            fprintf(stderr, "load: cannot start thread %d\n", i);
            return 70;
        }
    }
    for (int i = 0; i < nw; i++) {
        pthread_join(w[i].th, NULL);
        total += w[i].n;
        errors += w[i].errors;
        rows += w[i].sent_rows;
    }
    t1 = now_s();
    if (holding) {
        printf("held=%zu failed=%ld\n", total, errors);
        for (int i = 0; i < nw; i++)
            if (w[i].errors)
                printf("error %s: %s\n", w[i].path, w[i].first_error);
        for (int i = 0; i < nw; i++)
            free(w[i].lat);
        free(w);
        schema_free(s);
        return errors ? 1 : 0;
    }
    if ((all = malloc((total ? total : 1) * sizeof(*all))) == NULL)
        return 70;
    for (int i = 0; i < nw; i++) {
        memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
        k += w[i].n;
    }
    qsort(all, total, sizeof(*all), cmp_double);
#define PCT(p) (total ? all[(size_t)((double)(total - 1) * (p))] : 0.0)
    printf("syncs=%zu errors=%ld rows=%ld seconds=%.3f per_s=%.1f p50_ms=%.1f p95_ms=%.1f "
           "p99_ms=%.1f max_ms=%.1f\n",
           total, errors, rows, t1 - t0, (double)total / (t1 - t0), PCT(0.50), PCT(0.95), PCT(0.99),
           total ? all[total - 1] : 0.0);
    for (int i = 0; i < nw; i++) {
        if (w[i].errors)
            printf("error %s: %ld failed, first: %s\n", w[i].path, w[i].errors, w[i].first_error);
        free(w[i].lat);
    }
    free(all);
    free(w);
    schema_free(s);
    return errors ? 1 : 0;
}
