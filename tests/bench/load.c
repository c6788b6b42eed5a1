/*
 * load.c - many sites pushing small changes to one hub at once, for
 * `make bench` (issue #8: hub throughput, latency and memory).
 *
 *   load SECONDS ROWS SITE.db...
 *   load --hold SECONDS SITE.db...
 *
 * One thread per replica (each already joined, each its own site).  Until
 * SECONDS have passed, each thread inserts 1..ROWS resources into its replica
 * and runs one full `empact sync` (sync_run: a new TLS connection, push, pull,
 * verify), timing it.  At the end prints
 *
 *   syncs=N errors=E seconds=S per_s=R p50_ms=.. p95_ms=.. p99_ms=.. max_ms=..
 *
 * and, per thread with failures, one line "error SITE: N failed, first: sentence"
 * (a failed sync leaves its rows pending: the next one sends them).  rows= is
 * every row inserted; the driver syncs each site once more afterwards and
 * counts them on the hub (ids "load-<run>-<thread>-<attempt>-<i>", <run> the
 * start time, so the tool can run again over the same replicas).
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

#include "db.h"
#include "replica.h"
#include "schema.h"
#include "sync.h"

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
};

static long run_stamp; /* seconds since the epoch at start: part of every id */

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
            if (w->errors++ == 0)
                snprintf(w->first_error, sizeof(w->first_error), "cannot edit the replica: %s",
                         db ? sqlite3_errmsg(db) : e.msg);
            replica_close(db);
            break;
        }
        w->sent_rows += k;
        t0 = now_s();
        rc = sync_run(db, w->s, &r, &e);
        if (rc == SYNC_OK) {
            if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 256;
                double *p = realloc(w->lat, cap * sizeof(*p));
                if (p == NULL)
                    abort();
                w->lat = p;
                w->cap = cap;
            }
            w->lat[w->n++] = (now_s() - t0) * 1000.0;
        } else if (w->errors++ == 0) {
            snprintf(w->first_error, sizeof(w->first_error), "%s", e.msg);
        }
        replica_close(db);
    }
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

    int holding;

    db_global_init();
    run_stamp = (long)time(NULL);
    holding = argc > 1 && strcmp(argv[1], "--hold") == 0;

    if (holding) {
        argv++;
        argc--;
    }
    if (argc < 3 + !holding || (seconds = atof(argv[1])) <= 0 ||
        (per = holding ? 1 : atoi(argv[2])) <= 0) {
        fprintf(stderr,
                "usage: load SECONDS ROWS SITE.db...\n       load --hold SECONDS SITE.db...\n");
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
        if (pthread_create(&w[i].th, NULL, holding ? hold : run, &w[i]) != 0) {
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
