/*
 * snapshot.c - a join snapshot of the hub's replicated tables.
 *
 * Each SNAP_DATA frame carries one self-contained SQLite changeset of
 * INSERTs (a table header before the first row of each table in it), cut
 * after the row that takes it past SNAPSHOT_CHUNK_RAW bytes, so the site
 * applies it with the same strict apply and schema checks as any version.
 */
#include "snapshot.h"

#include <string.h>

#include "buf.h"
#include "changeset.h"
#include "hub.h"
#include "proto.h"
#include "testpoint.h"
#include "zcodec.h"

struct snap {
    struct frame_io *io;
    struct buf chunk;
    uint32_t chunk_rows;
    int header; /* the current table's header is in the chunk */
    struct snapshot_stats *st;
};

static int sql_fail(struct errctx *e, sqlite3 *db, const char *what)
{
    return errctx_set(e, SYNC_EIO, "hub.db: %s: %s", what, sqlite3_errmsg(db));
}

/* Compresses and sends the chunk built so far, if any. */
static int flush(struct snap *p, struct errctx *e)
{
    struct msg_snap_data m;
    struct buf z = {0}, b = {0};
    int rc;

    if (p->chunk.len == 0)
        return SYNC_OK;
    if ((rc = zcodec_compress(&z, p->chunk.data, p->chunk.len, e)) == SYNC_OK) {
        /* a test build can be told to announce more rows than it sends */
        m.rows = p->chunk_rows + (uint32_t)testpoint_limit("EMPACT_SNAP_EXTRA_ROWS", 0);
        m.raw_len = (uint32_t)p->chunk.len;
        m.z = z.data;
        m.zlen = (uint32_t)z.len;
        if ((rc = msg_snap_data_encode(&b, &m, e)) == SYNC_OK)
            rc = msg_send(p->io, MSG_SNAP_DATA, &b, e);
    }
    if (rc == SYNC_OK) {
        p->st->raw += p->chunk.len;
        p->st->wire += z.len;
        p->st->chunks++;
        p->chunk.len = 0;
        p->chunk_rows = 0;
        p->header = 0;
    }
    buf_free(&z);
    buf_free(&b);
    return rc;
}

static int send_table(struct snap *p, sqlite3 *db, const struct schema_table *t, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    if ((step = schema_select_rows(&st, db, t, NULL)) != SQLITE_OK)
        return step == SQLITE_NOMEM ? errctx_set(e, SYNC_ENOMEM, "out of memory")
                                    : sql_fail(e, db, "reading a table for a snapshot");
    p->header = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (!p->header && (rc = changeset_put_table(&p->chunk, t, e)) != SYNC_OK)
            break;
        p->header = 1;
        if ((rc = changeset_put_insert(&p->chunk, st, t, e)) != SYNC_OK)
            break;
        p->chunk_rows++;
        p->st->rows++;
        if (p->chunk.len >= SNAPSHOT_CHUNK_RAW && (rc = flush(p, e)) != SYNC_OK)
            break;
    }
    if (rc == SYNC_OK && step != SQLITE_DONE)
        rc = sql_fail(e, db, "reading a table for a snapshot");
    sqlite3_finalize(st);
    return rc;
}

/* Rows in every replicated table, for SNAP_HEAD (the progress a site shows). */
static int count_rows(sqlite3 *db, const struct schema *s, uint64_t *rows, uint32_t *tables,
                      struct errctx *e)
{
    int rc = SYNC_OK;

    *rows = 0;
    *tables = 0;
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        sqlite3_stmt *st = NULL;
        char *sql;

        if (!schema_class_replicated(t->cls))
            continue;
        if ((sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", t->name)) == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW)
            rc = sql_fail(e, db, "counting a table's rows");
        else
            *rows += (uint64_t)sqlite3_column_int64(st, 0);
        (*tables)++;
        sqlite3_finalize(st);
        sqlite3_free(sql);
    }
    return rc;
}

int snapshot_send(sqlite3 *rdb, const struct schema *s, struct frame_io *io,
                  struct snapshot_stats *st, struct errctx *e)
{
    struct snap p;
    struct msg_snap_head head;
    struct msg_snap_end end;
    struct buf b = {0};
    uint8_t commit[20];
    int rc, found = 0;

    memset(st, 0, sizeof(*st));
    memset(&head, 0, sizeof(head));
    memset(&p, 0, sizeof(p));
    p.io = io;
    p.st = st;
    if (sqlite3_exec(rdb, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return sql_fail(e, rdb, "starting a read");
    if ((rc = hub_head_ids(rdb, &head.version, commit, head.tree, &found, e)) != SYNC_OK)
        goto out;
    if (!found) {
        rc = errctx_set(e, SYNC_EDATA, "the hub has no version yet");
        goto out;
    }
    if ((rc = count_rows(rdb, s, &head.rows, &head.tables, e)) != SYNC_OK ||
        (rc = msg_snap_head_encode(&b, &head, e)) != SYNC_OK ||
        (rc = msg_send(io, MSG_SNAP_HEAD, &b, e)) != SYNC_OK)
        goto out;
    st->version = head.version;
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++)
        if (schema_class_replicated(s->tables[i].cls))
            rc = send_table(&p, rdb, &s->tables[i], e);
    if (rc == SYNC_OK)
        rc = flush(&p, e);
    if (rc == SYNC_OK && st->rows != head.rows)
        rc = errctx_set(e, SYNC_EIO, "hub.db: the snapshot read %llu rows, not the %llu counted",
                        (unsigned long long)st->rows, (unsigned long long)head.rows);
    if (rc != SYNC_OK)
        goto out;
    end.rows = st->rows;
    end.bytes = st->raw;
    b.len = 0;
    if ((rc = msg_snap_end_encode(&b, &end, e)) == SYNC_OK)
        rc = msg_send(io, MSG_SNAP_END, &b, e);
out:
    (void)sqlite3_exec(rdb, "COMMIT", NULL, NULL, NULL);
    buf_free(&p.chunk);
    buf_free(&b);
    return rc;
}
