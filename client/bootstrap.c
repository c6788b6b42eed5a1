/*
 * bootstrap.c - installing a join snapshot from the hub.
 *
 * Each SNAP_DATA frame is one changeset of INSERTs, applied to the base
 * copies with the strict apply every pulled version goes through (so the
 * same schema and class checks hold); the tables are then copied from base
 * with the triggers standing aside, and the dataset hash of base must be the
 * tree of the version the hub announced.  Nothing is committed before that.
 */
#include "bootstrap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "changeset.h"
#include "db.h"
#include "gitmap.h"
#include "proto.h"
#include "replica.h"
#include "sync.h"
#include "testpoint.h"
#include "zcodec.h"

#define BAR_WIDTH 30

struct progress {
    FILE *out;
    int tty;
    uint64_t total;
    uint64_t rows;
    uint64_t wire;
    int tenth; /* the last tenth reported on a plain line */
    struct timespec t0;
};

static double mib(uint64_t n)
{
    return (double)n / (1024.0 * 1024.0);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void progress_show(struct progress *p)
{
    int pct = p->total ? (int)(p->rows * 100 / p->total) : 100;

    if (p->out == NULL)
        return;
    if (p->tty) {
        int fill = pct * BAR_WIDTH / 100;
        fprintf(p->out, "\rjoin: [%.*s%*s] %3d%%  %llu/%llu rows  %.1f MiB", fill,
                "##############################", BAR_WIDTH - fill, "", pct,
                (unsigned long long)p->rows, (unsigned long long)p->total, mib(p->wire));
    } else {
        int tenth = pct / 10;
        if (tenth <= p->tenth)
            return;
        p->tenth = tenth;
        fprintf(p->out, "join: %d%%: %llu of %llu rows, %.1f MiB received\n", pct,
                (unsigned long long)p->rows, (unsigned long long)p->total, mib(p->wire));
    }
    fflush(p->out);
}

/* Decompresses and applies one SNAP_DATA frame to the base copies. */
static int apply_chunk(sqlite3 *db, const struct schema *s, const struct frame *f,
                       struct progress *p, struct bootstrap_result *r, struct errctx *e)
{
    struct msg_snap_data m;
    struct buf raw = {0};
    int rc, n = 0;

    if ((rc = msg_snap_data_decode(&m, f, e)) != SYNC_OK ||
        (rc = zcodec_decompress(&raw, m.z, m.zlen, m.raw_len, e)) != SYNC_OK)
        goto out;
    if (raw.len != m.raw_len) {
        rc = errctx_set(e, SYNC_EPROTO, "a snapshot chunk decompressed to %zu bytes, not %u",
                        raw.len, m.raw_len);
        goto out;
    }
    /* counted as it applies; a wrong count rolls the whole join back */
    if ((rc = changeset_apply_strict_count(db, s, raw.data, raw.len, BASE_PREFIX, &n, e)) !=
        SYNC_OK) {
        errctx_wrap(e, "installing the hub's snapshot");
        goto out;
    }
    if ((uint32_t)n != m.rows) {
        rc = errctx_set(e, SYNC_EPROTO, "a snapshot chunk holds %d rows, not the %u announced", n,
                        m.rows);
        goto out;
    }
    testpoint("snapshot chunk applied");
    r->rows += m.rows;
    r->raw += raw.len;
    r->wire += m.zlen;
    p->rows = r->rows;
    p->wire = r->wire;
    progress_show(p);
out:
    buf_free(&raw);
    return rc;
}

/* Receives SNAP_HEAD, the SNAP_DATA frames and SNAP_END. */
static int receive(struct sync_link *l, sqlite3 *db, const struct schema *s, struct progress *p,
                   uint8_t tree[20], struct bootstrap_result *r, struct errctx *e)
{
    struct msg_snap_head head;
    struct msg_snap_end end;
    struct frame *f = NULL;
    int rc;

    if ((rc = sync_link_read(l, &f, e)) != SYNC_OK || (rc = msg_snap_head_decode(&head, f, e)))
        goto out;
    r->version = head.version;
    memcpy(tree, head.tree, 20);
    p->total = head.rows;
    if (p->out != NULL)
        fprintf(p->out, "join: the hub's snapshot of version %llu: %llu rows in %u tables\n",
                (unsigned long long)head.version, (unsigned long long)head.rows, head.tables);
    for (;;) {
        frame_free(f);
        f = NULL;
        if ((rc = sync_link_read(l, &f, e)) != SYNC_OK)
            goto out;
        if (f->type != MSG_SNAP_DATA)
            break;
        if ((rc = apply_chunk(db, s, f, p, r, e)) != SYNC_OK)
            goto out;
        if (r->rows > head.rows) {
            rc = errctx_set(e, SYNC_EPROTO, "the hub sent more than the %llu rows it announced",
                            (unsigned long long)head.rows);
            goto out;
        }
    }
    if ((rc = msg_snap_end_decode(&end, f, e)) != SYNC_OK)
        goto out;
    if (end.rows != r->rows || end.rows != head.rows || end.bytes != r->raw)
        rc = errctx_set(e, SYNC_EPROTO,
                        "the snapshot ended after %llu rows (%llu bytes), but the hub "
                        "announced %llu and says it sent %llu (%llu bytes)",
                        (unsigned long long)r->rows, (unsigned long long)r->raw,
                        (unsigned long long)head.rows, (unsigned long long)end.rows,
                        (unsigned long long)end.bytes);
out:
    frame_free(f);
    return rc;
}

/* Copies base copy B into table T with T's triggers dropped meanwhile and
 * then created again from their own text: SQLite copies records as they are
 * (its transfer optimisation) only into a table without triggers. */
static int table_from_base(sqlite3 *db, const struct schema_table *t, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    char **sql = NULL;
    int n = 0, cap = 0, rc = SYNC_OK, step;

    if (sqlite3_prepare_v2(db,
                           "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND "
                           "tbl_name = ?1 ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            char **grown = realloc(sql, (size_t)(cap = cap ? cap * 2 : 8) * sizeof(*sql));
            if (grown == NULL) {
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
                goto out;
            }
            sql = grown;
        }
        if ((sql[n] = sqlite3_mprintf("%s", sqlite3_column_text(st, 1))) == NULL ||
            (rc = db_exec_free(db,
                               sqlite3_mprintf("DROP TRIGGER \"%w\"", sqlite3_column_text(st, 0)),
                               "replica", e)) != SYNC_OK) {
            if (sql[n] == NULL)
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
            else
                n++;
            goto out;
        }
        n++;
    }
    if (step != SQLITE_DONE) {
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = db_exec_free(db,
                      sqlite3_mprintf("DELETE FROM \"%w\"; INSERT INTO \"%w\" SELECT * FROM "
                                      "\"" BASE_PREFIX "%w\";",
                                      t->name, t->name, t->name),
                      "replica", e);
out:
    sqlite3_finalize(st);
    /* The triggers come back within the transaction.  After a failure the
     * join is rolled back and its file removed: they are created again only
     * while the transaction lasts (SQLite may have rolled it back itself, on
     * a full disk), and the first error is the one reported. */
    for (int i = 0; i < n; i++) {
        struct errctx again = {0, ""};
        if (!sqlite3_get_autocommit(db) &&
            db_exec(db, sql[i], "replica", rc == SYNC_OK ? e : &again) != SYNC_OK && rc == SYNC_OK)
            rc = e->code;
        sqlite3_free(sql[i]);
    }
    free(sql);
    return rc;
}

/* Copies every base copy into its table (the rows are the hub's, not local
 * edits: no dirty keys). */
static int tables_from_base(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    int rc = db_exec(db, "PRAGMA defer_foreign_keys = ON", "replica", e);

    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++)
        if (schema_class_replicated(s->tables[i].cls))
            rc = table_from_base(db, &s->tables[i], e);
    return rc;
}

/* Base must hash to the tree the hub announced; the tree store starts
 * from it. */
static int check_tree(sqlite3 *db, const struct schema *s, const uint8_t want[20], char hex[41],
                      struct errctx *e)
{
    uint8_t got[20];
    char wh[41];
    enum replica_hash how;
    int rc;

    if ((rc = replica_base_hash(got, &how, db, s, NULL, want, e)) != SYNC_OK)
        return rc;
    gitmap_oid_hex(hex, got);
    if (memcmp(got, want, 20) != 0) {
        gitmap_oid_hex(wh, want);
        return errctx_set(e, SYNC_EPROTO,
                          "the hub's snapshot hashes to %.12s, not to the %.12s it announced; "
                          "nothing was installed",
                          hex, wh);
    }
    return SYNC_OK;
}

static int install(sqlite3 *db, const struct schema *s, struct progress *p,
                   struct bootstrap_result *r, struct sync_link **link, struct errctx *e)
{
    uint8_t tree[20];
    char hex[41], num[32];
    uint64_t head = 0;
    struct buf none = {0};
    int rc;

    if ((rc = sync_link_open(link, db, s, &head, e)) != SYNC_OK ||
        (rc = sync_link_send(*link, MSG_SNAPSHOT, &none, e)) != SYNC_OK ||
        (rc = receive(*link, db, s, p, tree, r, e)) != SYNC_OK)
        return rc;
    if ((rc = tables_from_base(db, s, e)) != SYNC_OK || (rc = check_tree(db, s, tree, hex, e)))
        return rc;
    snprintf(num, sizeof(num), "%llu", (unsigned long long)r->version);
    if ((rc = replica_meta_set(db, "base_version", num, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "base_tree", hex, e)) != SYNC_OK)
        return rc;
    testpoint("snapshot installed");
    return SYNC_OK;
}

/* Back to WAL and synchronous=FULL (the pragma answers with the mode it is
 * in, which must be "wal"). */
static int wal_again(sqlite3 *db, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int wal = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        wal = sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal)
        return errctx_set(e, SYNC_EIO, "replica: cannot return to WAL mode after the snapshot: %s",
                          sqlite3_errmsg(db));
    return db_exec(db, "PRAGMA synchronous=FULL", "replica", e);
}

/* The replica's file, written without fsync, onto the disk. */
static int file_sync(const char *path, struct errctx *e)
{
    int fd = path != NULL ? open(path, O_RDONLY | O_CLOEXEC) : -1, rc = SYNC_OK;

    if (fd < 0 || fsync(fd) != 0)
        rc = errctx_set(e, SYNC_EIO, "cannot write %s to disk: %s", path ? path : "the replica",
                        strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

int bootstrap_run(sqlite3 *db, const struct schema *s, FILE *progress, struct bootstrap_result *r,
                  struct errctx *e)
{
    struct progress p;
    struct sync_link *link = NULL;
    char *base = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    memset(&p, 0, sizeof(p));
    p.out = progress;
    p.tty = progress != NULL && isatty(fileno(progress));
    clock_gettime(CLOCK_MONOTONIC, &p.t0);
    if ((rc = replica_meta_get(&base, db, "base_version", e)) != SYNC_OK)
        return rc;
    if (strcmp(base, "0") != 0) {
        rc = errctx_set(e, SYNC_EUSAGE,
                        "the replica has synced before; a snapshot is only for "
                        "a new one");
        sqlite3_free(base);
        return rc;
    }
    sqlite3_free(base);
    /* The replica is new, and the caller removes it if the join fails: no
     * write-ahead log (every page would be written twice) and no fsync
     * until the snapshot is in; then WAL again and one fsync of the file. */
    if ((rc = db_exec(db, "PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF", "replica", e)) !=
        SYNC_OK)
        return rc;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
    testpoint("snapshot transaction begun");
    rc = install(db, s, &p, r, &link, e);
    if (rc == SYNC_OK)
        rc = db_exec(db, "COMMIT", "replica", e);
    if (rc != SYNC_OK && !sqlite3_get_autocommit(db))
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    if (rc == SYNC_OK && (rc = wal_again(db, e)) == SYNC_OK)
        rc = file_sync(sqlite3_db_filename(db, "main"), e);
    sync_link_close(link, rc == SYNC_OK);
    if (p.tty)
        fputc('\n', p.out);
    if (rc == SYNC_OK && p.out != NULL) {
        fprintf(p.out,
                "join: installed version %llu: %llu rows, %.1f MiB received (%.1f MiB "
                "uncompressed) in %.1f s\n",
                (unsigned long long)r->version, (unsigned long long)r->rows, mib(r->wire),
                mib(r->raw), seconds_since(&p.t0));
        fflush(p.out);
    }
    return rc;
}
