/*
 * changeset.c - building, applying, checking SQLite session changesets.
 *
 * The local changeset is built the way DESIGN.md describes, so that its cost
 * follows the number of changed rows and not the size of the table: in a
 * scratch in-memory database we create each replicated table, insert the
 * base rows of the dirty keys, start a session, then write the current rows
 * of those keys (upsert, or delete when the row is gone) and take the
 * session's changeset.  Unchanged rows produce nothing, so an edit undone
 * before the sync costs nothing on the wire.
 *
 * Base copies cannot take sqlite3changeset_apply() (it writes to tables of
 * the changeset's names in main), so changeset_apply_strict() walks the
 * changeset itself and turns each change into one statement whose WHERE
 * clause names the old values.  A change that does not hit exactly one row
 * is divergence, not a conflict: base is the hub's state at a version, and
 * the hub's canonical changesets apply to it cleanly by construction.
 */
#include "changeset.h"

#include "db.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int sql_err(struct errctx *e, sqlite3 *db, const char *what)
{
    return errctx_set(e, SYNC_EIO, "%s: %s", what, sqlite3_errmsg(db));
}

/* "?, ?, ?" with n placeholders; sqlite3_free() it. */
static char *placeholders(int n)
{
    char *out = sqlite3_mprintf("%s", "");
    for (int i = 0; out != NULL && i < n; i++) {
        char *next = sqlite3_mprintf("%s%s?", out, i ? ", " : "");
        sqlite3_free(out);
        out = next;
    }
    return out;
}

/* Binds the key of the change at it (old image, or new for an insert) to
 * st's parameters 1..npk. */
static int bind_key(sqlite3_stmt *st, sqlite3_changeset_iter *it, const struct schema_table *t,
                    int op, struct errctx *e)
{
    for (int k = 0; k < t->npk; k++) {
        sqlite3_value *v = NULL;
        int got = op == SQLITE_INSERT ? sqlite3changeset_new(it, t->pk[k], &v)
                                      : sqlite3changeset_old(it, t->pk[k], &v);
        if (got != SQLITE_OK || v == NULL)
            return errctx_set(e, SYNC_EPROTO, "change to %s lacks its key", t->name);
        sqlite3_bind_value(st, k + 1, v);
    }
    return SYNC_OK;
}

/* ---- building the local changeset ------------------------------------- */

static int table_dirty(sqlite3 *db, const struct schema_table *t, int *dirty, struct errctx *e)
{
    char *sql = sqlite3_mprintf("SELECT 1 FROM \"" DIRTY_PREFIX "%w\" LIMIT 1", t->name);
    sqlite3_stmt *st = NULL;
    int rc;

    if (sql == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = sql_err(e, db, "reading dirty keys");
        goto out;
    }
    rc = sqlite3_step(st);
    *dirty = rc == SQLITE_ROW;
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? SYNC_OK : sql_err(e, db, "reading dirty keys");
out:
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return rc;
}

/* Runs src (a SELECT on db) and feeds each row's columns [first, first+ncol)
 * to dst (a prepared statement on the scratch database). */
static int copy_rows(sqlite3_stmt *src, int first, int ncol, sqlite3_stmt *dst, sqlite3 *scratch,
                     struct errctx *e)
{
    int rc;
    while ((rc = sqlite3_step(src)) == SQLITE_ROW) {
        for (int i = 0; i < ncol; i++)
            sqlite3_bind_value(dst, i + 1, sqlite3_column_value(src, first + i));
        if (sqlite3_step(dst) != SQLITE_DONE) {
            int r = sql_err(e, scratch, "building the local changeset");
            sqlite3_reset(dst);
            return r;
        }
        sqlite3_reset(dst);
    }
    if (rc != SQLITE_DONE)
        return errctx_set(e, SYNC_EIO, "reading the replica: %s",
                          sqlite3_errmsg(sqlite3_db_handle(src)));
    return SYNC_OK;
}

/* Loads the base rows of t's dirty keys into the scratch copy of t. */
static int load_old_rows(sqlite3 *db, sqlite3 *scratch, const struct schema_table *t,
                         struct errctx *e)
{
    sqlite3_stmt *src = NULL, *dst = NULL;
    char *match = schema_sql_pk_match(t, "d", "b");
    char *smatch = schema_sql_pk_match(t, "d", "s");
    char *imatch = schema_sql_pk_match(t, "d", "i");
    char *ph = placeholders(t->ncol);
    char *q_src = NULL, *q_dst = NULL;
    int rc = SYNC_ENOMEM;

    if (match == NULL || smatch == NULL || imatch == NULL || ph == NULL)
        goto oom;
    /* The old row is the one the pending edits were made on: the key's
     * snapshot when a pull moved base under it (or the hub deleted it), none
     * for a row the coordinator created before the hub had one, else base's. */
    q_src = sqlite3_mprintf("SELECT s.* FROM \"" DIRTY_PREFIX "%w\" d JOIN \"" SNAP_PREFIX
                            "%w\" s ON %s UNION ALL SELECT b.* FROM \"" DIRTY_PREFIX
                            "%w\" d JOIN \"" BASE_PREFIX "%w\" b ON %s WHERE NOT EXISTS "
                            "(SELECT 1 FROM \"" SNAP_PREFIX "%w\" s WHERE %s) AND NOT EXISTS "
                            "(SELECT 1 FROM \"" INSERTED_PREFIX "%w\" i WHERE %s)",
                            t->name, t->name, smatch, t->name, t->name, match, t->name, smatch,
                            t->name, imatch);
    q_dst = sqlite3_mprintf("INSERT INTO \"%w\" VALUES (%s)", t->name, ph);
    if (q_src == NULL || q_dst == NULL)
        goto oom;
    if (sqlite3_prepare_v2(db, q_src, -1, &src, NULL) != SQLITE_OK) {
        rc = sql_err(e, db, "reading base rows");
        goto out;
    }
    if (sqlite3_prepare_v2(scratch, q_dst, -1, &dst, NULL) != SQLITE_OK) {
        rc = sql_err(e, scratch, "building the local changeset");
        goto out;
    }
    rc = copy_rows(src, 0, t->ncol, dst, scratch, e);
    goto out;
oom:
    rc = errctx_set(e, SYNC_ENOMEM, "out of memory building the local changeset");
out:
    sqlite3_finalize(src);
    sqlite3_finalize(dst);
    sqlite3_free(smatch);
    sqlite3_free(imatch);
    sqlite3_free(match);
    sqlite3_free(ph);
    sqlite3_free(q_src);
    sqlite3_free(q_dst);
    return rc;
}

/* Writes the current rows of t's dirty keys into the scratch copy, where the
 * session records them: an upsert for a row that exists, a delete otherwise. */
static int write_new_rows(sqlite3 *db, sqlite3 *scratch, const struct schema_table *t,
                          struct errctx *e)
{
    sqlite3_stmt *src = NULL, *up = NULL, *del = NULL;
    char *match = schema_sql_pk_match(t, "d", "t");
    char *dkeys = schema_sql_cols(t, SCHEMA_COLS_PK, "d");
    char *keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL);
    char *ph = placeholders(t->ncol);
    char *set = sqlite3_mprintf("%s", "");
    char *where = schema_sql_pk_where(t);
    char *q_src = NULL, *q_up = NULL, *q_del = NULL;
    int rc, step;

    for (int i = 0; set != NULL && i < t->ncol; i++) {
        char *next = sqlite3_mprintf("%s%s\"%w\" = excluded.\"%w\"", set, i ? ", " : "",
                                     t->cols[i].name, t->cols[i].name);
        sqlite3_free(set);
        set = next;
    }
    if (match == NULL || dkeys == NULL || keys == NULL || ph == NULL || set == NULL ||
        where == NULL)
        goto oom;
    q_src = sqlite3_mprintf("SELECT %s, t.\"%w\" IS NULL, t.* FROM \"" DIRTY_PREFIX
                            "%w\" d LEFT JOIN \"%w\" t ON %s ORDER BY %s",
                            dkeys, t->cols[t->pk[0]].name, t->name, t->name, match, dkeys);
    q_up = sqlite3_mprintf("INSERT INTO \"%w\" VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s",
                           t->name, ph, keys, set);
    q_del = sqlite3_mprintf("DELETE FROM \"%w\" WHERE %s", t->name, where);
    if (q_src == NULL || q_up == NULL || q_del == NULL)
        goto oom;
    if (sqlite3_prepare_v2(db, q_src, -1, &src, NULL) != SQLITE_OK) {
        rc = sql_err(e, db, "reading changed rows");
        goto out;
    }
    if (sqlite3_prepare_v2(scratch, q_up, -1, &up, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(scratch, q_del, -1, &del, NULL) != SQLITE_OK) {
        rc = sql_err(e, scratch, "building the local changeset");
        goto out;
    }
    while ((step = sqlite3_step(src)) == SQLITE_ROW) {
        sqlite3_stmt *dst = sqlite3_column_int(src, t->npk) ? del : up;
        int first = dst == del ? 0 : t->npk + 1;
        int n = dst == del ? t->npk : t->ncol;
        for (int i = 0; i < n; i++)
            sqlite3_bind_value(dst, i + 1, sqlite3_column_value(src, first + i));
        if (sqlite3_step(dst) != SQLITE_DONE) {
            rc = sql_err(e, scratch, "building the local changeset");
            sqlite3_reset(dst);
            goto out;
        }
        sqlite3_reset(dst);
    }
    rc = step == SQLITE_DONE ? SYNC_OK : sql_err(e, db, "reading changed rows");
    goto out;
oom:
    rc = errctx_set(e, SYNC_ENOMEM, "out of memory building the local changeset");
out:
    sqlite3_finalize(src);
    sqlite3_finalize(up);
    sqlite3_finalize(del);
    sqlite3_free(match);
    sqlite3_free(dkeys);
    sqlite3_free(keys);
    sqlite3_free(ph);
    sqlite3_free(set);
    sqlite3_free(where);
    sqlite3_free(q_src);
    sqlite3_free(q_up);
    sqlite3_free(q_del);
    return rc;
}

int changeset_build_local(struct buf *out, sqlite3 *db, const struct schema *s, struct errctx *e)
{
    sqlite3 *scratch = NULL;
    sqlite3_session *sess = NULL;
    void *cs = NULL;
    int ncs = 0, rc;
    int *dirty = calloc((size_t)s->ntable, sizeof(int));

    if (dirty == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory building the local changeset");
    if (sqlite3_open(":memory:", &scratch) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_ENOMEM, "cannot open a scratch database");
        goto out;
    }
    /* Guard 1 of the privacy boundary: only shared and owned tables are read. */
    for (int i = 0; i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        if (t->cls != CLASS_SHARED && t->cls != CLASS_OWNED)
            continue;
        if ((rc = table_dirty(db, t, &dirty[i], e)) != SYNC_OK)
            goto out;
        if (!dirty[i])
            continue;
        if ((rc = db_exec(scratch, t->create_sql, "building the local changeset", e)) != SYNC_OK ||
            (rc = load_old_rows(db, scratch, t, e)) != SYNC_OK)
            goto out;
    }
    if (sqlite3session_create(scratch, "main", &sess) != SQLITE_OK ||
        sqlite3session_attach(sess, NULL) != SQLITE_OK) {
        rc = sql_err(e, scratch, "starting a session");
        goto out;
    }
    for (int i = 0; i < s->ntable; i++) {
        if (dirty[i] && (rc = write_new_rows(db, scratch, &s->tables[i], e)) != SYNC_OK)
            goto out;
    }
    if (sqlite3session_changeset(sess, &ncs, &cs) != SQLITE_OK) {
        rc = sql_err(e, scratch, "taking the local changeset");
        goto out;
    }
    rc = buf_put(out, cs, (size_t)ncs, e);
out:
    sqlite3_free(cs);
    if (sess != NULL)
        sqlite3session_delete(sess);
    sqlite3_close(scratch);
    free(dirty);
    return rc;
}

/* ---- walking changesets ----------------------------------------------- */

/* ---- validating the byte format ------------------------------------------ */

/* Reads an SQLite varint (1-9 bytes, 7 bits each, the ninth byte whole). */
static int varint_get(const uint8_t *p, size_t n, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;

    for (int i = 0; i < 9; i++) {
        if (*pos >= n)
            return -1;
        uint8_t b = p[(*pos)++];
        if (i == 8) {
            *out = (v << 8) | b;
            return 0;
        }
        v = (v << 7) | (b & 0x7f);
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* One record: ncol values, each a type byte and its data. */
static int record_check(const uint8_t *p, size_t n, size_t *pos, uint64_t ncol)
{
    for (uint64_t c = 0; c < ncol; c++) {
        uint64_t len;

        if (*pos >= n)
            return -1;
        switch (p[(*pos)++]) {
        case 0x00: /* undefined */
        case 0x05: /* NULL */
            break;
        case SQLITE_INTEGER:
        case SQLITE_FLOAT:
            if (n - *pos < 8)
                return -1;
            *pos += 8;
            break;
        case SQLITE_TEXT:
        case SQLITE_BLOB:
            if (varint_get(p, n, pos, &len) != 0 || len > n - *pos)
                return -1;
            *pos += (size_t)len;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

int changeset_validate(const void *cs, size_t n, struct errctx *e)
{
    const uint8_t *p = cs;
    uint64_t ncol = 0;
    size_t pos = 0;
    int have_table = 0;

    if (n > CHANGESET_MAX)
        return errctx_set(e, SYNC_ELIMIT, "changeset of %zu bytes exceeds the limit of %u", n,
                          CHANGESET_MAX);
    while (pos < n) {
        uint8_t b = p[pos++];
        if (b == 'T') {
            size_t name;
            if (varint_get(p, n, &pos, &ncol) != 0 || ncol == 0 || ncol > CHANGESET_COLUMNS_MAX ||
                ncol > n - pos)
                return errctx_set(e, SYNC_EPROTO, "changeset is malformed (table header)");
            pos += (size_t)ncol; /* one primary-key flag per column */
            name = pos;
            while (pos < n && p[pos] != '\0')
                pos++;
            if (pos >= n || pos == name || pos - name > CHANGESET_NAME_MAX)
                return errctx_set(e, SYNC_EPROTO, "changeset is malformed (table name)");
            pos++;
            have_table = 1;
        } else if (b == SQLITE_INSERT || b == SQLITE_DELETE || b == SQLITE_UPDATE) {
            if (!have_table || pos >= n || p[pos] > 1)
                return errctx_set(e, SYNC_EPROTO, "changeset is malformed (change header)");
            pos++;
            if (record_check(p, n, &pos, ncol) != 0 ||
                (b == SQLITE_UPDATE && record_check(p, n, &pos, ncol) != 0))
                return errctx_set(e, SYNC_EPROTO, "changeset is malformed (values)");
        } else {
            /* 'P' (a patchset) and anything else */
            return errctx_set(e, SYNC_EPROTO, "changeset is malformed (byte 0x%02x at %zu)", b,
                              pos - 1);
        }
    }
    return SYNC_OK;
}

static int iter_start(sqlite3_changeset_iter **it, const void *cs, size_t n, struct errctx *e)
{
    int rc;

    /* SQLite's iterator trusts its input (a truncated header can make it spin
     * forever): every changeset is checked against the format first. */
    if ((rc = changeset_validate(cs, n, e)) != SYNC_OK)
        return rc;
    if (sqlite3changeset_start(it, (int)n, (void *)cs) != SQLITE_OK)
        return errctx_set(e, SYNC_EPROTO, "changeset is malformed");
    return SYNC_OK;
}

static int iter_end(sqlite3_changeset_iter *it, int step, struct errctx *e)
{
    int frc = sqlite3changeset_finalize(it);
    if (step != SQLITE_DONE || frc != SQLITE_OK)
        return errctx_set(e, SYNC_EPROTO, "changeset is malformed (%s)",
                          sqlite3_errstr(frc != SQLITE_OK ? frc : step));
    return SYNC_OK;
}

int changeset_count(const void *cs, size_t n, int *count, struct errctx *e)
{
    sqlite3_changeset_iter *it = NULL;
    int rc, step;

    *count = 0;
    if (n == 0)
        return SYNC_OK;
    if ((rc = iter_start(&it, cs, n, e)) != SYNC_OK)
        return rc;
    while ((step = sqlite3changeset_next(it)) == SQLITE_ROW)
        (*count)++;
    return iter_end(it, step, e);
}

/* Checks that the change's table shape matches the schema's t. */
static int shape_check(sqlite3_changeset_iter *it, const struct schema_table *t, int ncol,
                       struct errctx *e)
{
    unsigned char *pk = NULL;
    int npkcol = 0;

    if (ncol != t->ncol)
        return errctx_set(e, SYNC_ESCHEMA, "change to table %s has %d columns, schema has %d",
                          t->name, ncol, t->ncol);
    if (sqlite3changeset_pk(it, &pk, &npkcol) != SQLITE_OK || npkcol != t->ncol)
        return errctx_set(e, SYNC_EPROTO, "change to table %s has no valid key", t->name);
    for (int i = 0; i < t->ncol; i++) {
        if ((pk[i] != 0) != (t->cols[i].pk > 0))
            return errctx_set(e, SYNC_ESCHEMA,
                              "change to table %s has a primary key that differs from the schema",
                              t->name);
    }
    return SYNC_OK;
}

/* Calls fn for each change of cs whose table is a replicated table of s with
 * the schema's shape; stops at the first error.  SYNC_ESCHEMA for another
 * table, SYNC_EPROTO for malformed bytes. */
typedef int (*change_fn)(void *ctx, sqlite3_changeset_iter *it, const struct schema_table *t,
                         int op, struct errctx *e);

static int walk_replicated(const struct schema *s, const void *cs, size_t n, change_fn fn,
                           void *ctx, struct errctx *e)
{
    sqlite3_changeset_iter *it = NULL;
    int rc = SYNC_OK, step;

    if (n == 0)
        return SYNC_OK;
    if ((rc = iter_start(&it, cs, n, e)) != SYNC_OK)
        return rc;
    while ((step = sqlite3changeset_next(it)) == SQLITE_ROW) {
        const char *tab;
        int ncol, op, indirect;
        const struct schema_table *t;

        if (sqlite3changeset_op(it, &tab, &ncol, &op, &indirect) != SQLITE_OK) {
            step = SQLITE_CORRUPT;
            break;
        }
        if ((t = schema_find(s, tab)) == NULL || !schema_class_replicated(t->cls)) {
            rc = errctx_set(e, SYNC_ESCHEMA, "changeset names table %s, which is not replicated",
                            tab);
            break;
        }
        if ((rc = shape_check(it, t, ncol, e)) != SYNC_OK || (rc = fn(ctx, it, t, op, e)) != 0)
            break;
    }
    if (rc != SYNC_OK) {
        sqlite3changeset_finalize(it);
        return rc;
    }
    return iter_end(it, step, e);
}

/* ---- strict apply to base copies ---------------------------------------- */

/* The INSERT of a row into prefix+t; sqlite3_free() it. */
static char *insert_sql(const struct schema_table *t, const char *prefix, int as_sent)
{
    char *ph = placeholders(t->ncol);
    char *sql = ph ? sqlite3_mprintf("INSERT %s INTO \"%w%w\" VALUES (%s)",
                                     as_sent ? "OR REPLACE" : "", prefix, t->name, ph)
                   : NULL;
    sqlite3_free(ph);
    return sql;
}

/* Builds and runs the statement for one change; *hit is the number of rows
 * hit.  as_sent: the WHERE clause names the key only, and an insert replaces
 * a row with its key (changeset_apply_as_sent).  ins: the table's INSERT,
 * built once by the caller (the text is the same for every row). */
static int apply_one(sqlite3 *db, struct stmtcache *sc, sqlite3_changeset_iter *it,
                     const struct schema_table *t, const char *prefix, int op, int as_sent,
                     const char *ins, int *hit, struct errctx *e)
{
    sqlite3_value *v;
    sqlite3_stmt *st = NULL;
    char *sql = NULL, *where = NULL, *set = NULL;
    int rc, nb = 0;

    if (op != SQLITE_INSERT) {
        where = sqlite3_mprintf("%s", "");
        /* WHERE names every old value the changeset carries: the key always,
         * for an update the changed columns, for a delete every column. */
        set = sqlite3_mprintf("%s", "");
        for (int i = 0; where != NULL && set != NULL && i < t->ncol; i++) {
            char *next;
            if ((!as_sent || t->cols[i].pk != 0) && sqlite3changeset_old(it, i, &v) == SQLITE_OK &&
                v != NULL) {
                next = sqlite3_mprintf("%s%s\"%w\" IS ?", where, *where ? " AND " : "",
                                       t->cols[i].name);
                sqlite3_free(where);
                where = next;
            }
            if (op == SQLITE_UPDATE && sqlite3changeset_new(it, i, &v) == SQLITE_OK && v != NULL) {
                next = sqlite3_mprintf("%s%s\"%w\" = ?", set, *set ? ", " : "", t->cols[i].name);
                sqlite3_free(set);
                set = next;
            }
        }
        if (where != NULL && set != NULL) {
            if (op == SQLITE_DELETE)
                sql = sqlite3_mprintf("DELETE FROM \"%w%w\" WHERE %s", prefix, t->name, where);
            else if (*set == '\0')
                sql = sqlite3_mprintf("SELECT 1 FROM \"%w%w\" WHERE %s", prefix, t->name, where);
            else
                sql =
                    sqlite3_mprintf("UPDATE \"%w%w\" SET %s WHERE %s", prefix, t->name, set, where);
        }
    }
    if ((op == SQLITE_INSERT ? ins : sql) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory applying a changeset");
        goto out;
    }
    if (stmtcache_prepare(sc, op == SQLITE_INSERT ? ins : sql, &st) != SQLITE_OK) {
        rc = sql_err(e, db, "applying a changeset");
        goto out;
    }
    /* Bind in the order the placeholders were written: SET values first. */
    if (op == SQLITE_INSERT) {
        for (int i = 0; i < t->ncol; i++) {
            if (sqlite3changeset_new(it, i, &v) != SQLITE_OK || v == NULL) {
                rc = errctx_set(e, SYNC_EPROTO, "insert into %s lacks column %s", t->name,
                                t->cols[i].name);
                goto out;
            }
            sqlite3_bind_value(st, ++nb, v);
        }
    } else {
        for (int i = 0; op == SQLITE_UPDATE && i < t->ncol; i++) {
            if (sqlite3changeset_new(it, i, &v) == SQLITE_OK && v != NULL)
                sqlite3_bind_value(st, ++nb, v);
        }
        for (int i = 0; i < t->ncol; i++) {
            if ((!as_sent || t->cols[i].pk != 0) && sqlite3changeset_old(it, i, &v) == SQLITE_OK &&
                v != NULL)
                sqlite3_bind_value(st, ++nb, v);
        }
    }
    rc = sqlite3_step(st);
    if (op == SQLITE_UPDATE && set != NULL && *set == '\0') {
        *hit = rc == SQLITE_ROW;
        rc = SYNC_OK;
    } else if (rc == SQLITE_DONE) {
        *hit = sqlite3_changes(db);
        rc = SYNC_OK;
    } else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        *hit = 0;
        rc = SYNC_OK;
    } else {
        rc = sql_err(e, db, "applying a changeset");
    }
out:
    stmtcache_release(sc, st);
    sqlite3_free(sql);
    sqlite3_free(where);
    sqlite3_free(set);
    return rc;
}

struct apply_ctx {
    sqlite3 *db;
    const struct schema *s;
    const char *prefix;
    int as_sent;
    struct stmtcache sc;
    char **ins; /* per table of s: its INSERT, once one was needed */
    int count;  /* changes applied */
};

static int apply_checked(void *ctx, sqlite3_changeset_iter *it, const struct schema_table *t,
                         int op, struct errctx *e)
{
    struct apply_ctx *a = ctx;
    char **ins = &a->ins[t - a->s->tables];
    int hit = 0, rc;

    if (op == SQLITE_INSERT && *ins == NULL &&
        (*ins = insert_sql(t, a->prefix, a->as_sent)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory applying a changeset");
    if ((rc = apply_one(a->db, &a->sc, it, t, a->prefix, op, a->as_sent, *ins, &hit, e)) != SYNC_OK)
        return rc;
    a->count++;
    if (a->as_sent && op == SQLITE_DELETE && hit == 0) /* gone already: the hub agreed */
        return SYNC_OK;
    if (hit != 1)
        return errctx_set(e, SYNC_EDATA,
                          "the local copy of %s has diverged from the hub's (%s found %d "
                          "matching rows)",
                          t->name,
                          op == SQLITE_INSERT   ? "an insert"
                          : op == SQLITE_DELETE ? "a delete"
                                                : "an update",
                          op == SQLITE_INSERT ? 1 - hit : hit);
    return SYNC_OK;
}

static int apply_walk(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                      const char *prefix, int as_sent, int *count, struct errctx *e)
{
    struct apply_ctx a = {db, s, prefix, as_sent, {0}, NULL, 0};
    int rc;

    if ((a.ins = calloc((size_t)s->ntable + 1, sizeof(*a.ins))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory applying a changeset");
    stmtcache_init(&a.sc, db);
    rc = walk_replicated(s, cs, n, apply_checked, &a, e);
    stmtcache_free(&a.sc);
    for (int i = 0; i < s->ntable; i++)
        sqlite3_free(a.ins[i]);
    free(a.ins);
    if (count != NULL)
        *count = a.count;
    return rc;
}

int changeset_apply_strict(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                           const char *prefix, struct errctx *e)
{
    return apply_walk(db, s, cs, n, prefix, 0, NULL, e);
}

int changeset_apply_strict_count(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                                 const char *prefix, int *count, struct errctx *e)
{
    return apply_walk(db, s, cs, n, prefix, 0, count, e);
}

int changeset_apply_as_sent(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                            const char *prefix, struct errctx *e)
{
    return apply_walk(db, s, cs, n, prefix, 1, NULL, e);
}

/* ---- touched keys ------------------------------------------------------- */

/* Runs one statement of no rows through sc. */
static int cached_run(struct stmtcache *sc, const char *sql, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (stmtcache_prepare(sc, sql, &st) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
        rc = sql_err(e, sc->db, "recording touched keys");
    stmtcache_release(sc, st);
    return rc;
}

int changeset_touched_reset(sqlite3 *db, struct stmtcache *sc, const struct schema *s,
                            struct errctx *e)
{
    struct stmtcache own = {0};
    int rc = SYNC_OK;

    if (sc == NULL)
        stmtcache_init(sc = &own, db);
    for (int i = 0; i < s->ntable && rc == SYNC_OK; i++) {
        const struct schema_table *t = &s->tables[i];
        char *keys, *make = NULL, *empty = NULL;

        if (!schema_class_replicated(t->cls))
            continue;
        if ((keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL)) != NULL) {
            make = sqlite3_mprintf("CREATE TEMP TABLE IF NOT EXISTS \"" TOUCHED_PREFIX
                                   "%w\" (%s, PRIMARY KEY (%s)) WITHOUT ROWID",
                                   t->name, keys, keys);
            empty = sqlite3_mprintf("DELETE FROM temp.\"" TOUCHED_PREFIX "%w\"", t->name);
        }
        if (make == NULL || empty == NULL)
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        else if ((rc = cached_run(sc, make, e)) == SYNC_OK)
            rc = cached_run(sc, empty, e);
        sqlite3_free(keys);
        sqlite3_free(make);
        sqlite3_free(empty);
    }
    if (sc == &own)
        stmtcache_free(&own);
    return rc;
}

struct touched_ctx {
    sqlite3 *db;
    struct stmtcache *sc;
};

static int touched_one(void *ctx, sqlite3_changeset_iter *it, const struct schema_table *t, int op,
                       struct errctx *e)
{
    struct touched_ctx *c = ctx;
    sqlite3 *db = c->db;
    char *ph = placeholders(t->npk);
    char *sql =
        ph ? sqlite3_mprintf("INSERT OR IGNORE INTO temp.\"" TOUCHED_PREFIX "%w\" VALUES (%s)",
                             t->name, ph)
           : NULL;
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (sql == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (stmtcache_prepare(c->sc, sql, &st) != SQLITE_OK) {
        rc = sql_err(e, db, "recording touched keys");
        goto out;
    }
    if ((rc = bind_key(st, it, t, op, e)) != SYNC_OK)
        goto out;
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sql_err(e, db, "recording touched keys");
out:
    stmtcache_release(c->sc, st);
    sqlite3_free(ph);
    sqlite3_free(sql);
    return rc;
}

int changeset_touched_add(sqlite3 *db, struct stmtcache *sc, const struct schema *s, const void *cs,
                          size_t n, struct errctx *e)
{
    struct stmtcache own = {0};
    struct touched_ctx c = {db, sc};
    int rc;

    if (sc == NULL)
        stmtcache_init(c.sc = &own, db);
    rc = walk_replicated(s, cs, n, touched_one, &c, e);
    if (sc == NULL)
        stmtcache_free(&own);
    return rc;
}

/* ---- edit times ----------------------------------------------------------- */

struct times_ctx {
    sqlite3 *db;
    struct buf *out;
    struct stmtcache sc;
};

static int time_one(void *ctx, sqlite3_changeset_iter *it, const struct schema_table *t, int op,
                    struct errctx *e)
{
    struct times_ctx *c = ctx;
    sqlite3_stmt *st = NULL;
    char *where = schema_sql_pk_where(t);
    char *sql = NULL;
    int rc;

    if (where == NULL ||
        (sql = sqlite3_mprintf("SELECT " EDITED_AT_COL " FROM \"" DIRTY_PREFIX "%w\" WHERE %s",
                               t->name, where)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (stmtcache_prepare(&c->sc, sql, &st) != SQLITE_OK) {
        rc = sql_err(e, c->db, "reading edit times");
        goto out;
    }
    if ((rc = bind_key(st, it, t, op, e)) != SYNC_OK)
        goto out;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = errctx_set(e, SYNC_EDATA, "a changed row of %s has no edit time", t->name);
        goto out;
    }
    rc = buf_put_u64(c->out, (uint64_t)sqlite3_column_int64(st, 0), e);
out:
    stmtcache_release(&c->sc, st);
    sqlite3_free(where);
    sqlite3_free(sql);
    return rc;
}

struct done_ctx {
    sqlite3 *db;
    const uint8_t *times;
    size_t ntimes, i;
    struct stmtcache sc;
};

static int done_one(void *ctx, sqlite3_changeset_iter *it, const struct schema_table *t, int op,
                    struct errctx *e)
{
    struct done_ctx *c = ctx;
    char *where = schema_sql_pk_where(t), *sql = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t at = 0;
    int rc;

    if (c->i >= c->ntimes) {
        rc = errctx_set(e, SYNC_EDATA, "the outbox has fewer edit times than changes");
        goto out;
    }
    for (int b = 0; b < 8; b++)
        at = (at << 8) | c->times[c->i * 8 + (size_t)b];
    c->i++;
    if (where == NULL || (sql = sqlite3_mprintf("DELETE FROM \"" DIRTY_PREFIX
                                                "%w\" WHERE %s AND " EDITED_AT_COL " <= ?",
                                                t->name, where)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (stmtcache_prepare(&c->sc, sql, &st) != SQLITE_OK) {
        rc = sql_err(e, c->db, "clearing dirty keys");
        goto out;
    }
    if ((rc = bind_key(st, it, t, op, e)) != SYNC_OK)
        goto out;
    sqlite3_bind_int64(st, t->npk + 1, (sqlite3_int64)at);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sql_err(e, c->db, "clearing dirty keys");
out:
    stmtcache_release(&c->sc, st);
    sqlite3_free(where);
    sqlite3_free(sql);
    return rc;
}

int changeset_dirty_done(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                         const uint8_t *times, size_t ntimes, struct errctx *e)
{
    struct done_ctx c = {db, times, ntimes, 0, {0}};
    int rc;

    stmtcache_init(&c.sc, db);
    rc = walk_replicated(s, cs, n, done_one, &c, e);
    stmtcache_free(&c.sc);
    return rc;
}

int changeset_edit_times(struct buf *out, sqlite3 *db, const struct schema *s, const void *cs,
                         size_t n, struct errctx *e)
{
    struct times_ctx c = {db, out, {0}};
    int rc;

    stmtcache_init(&c.sc, db);
    rc = walk_replicated(s, cs, n, time_one, &c, e);
    stmtcache_free(&c.sc);
    return rc;
}

/* ---- the hub's class check ---------------------------------------------- */

/* For an owned table: the site_id value in this change's old or new image must
 * be the pushing site's; NULL v means "not in this image". */
static int owner_ok(sqlite3_value *v, const char *site_id)
{
    if (v == NULL)
        return 1;
    /* compare lengths too: a text with an embedded NUL is not the site id */
    return sqlite3_value_type(v) == SQLITE_TEXT &&
           (size_t)sqlite3_value_bytes(v) == strlen(site_id) &&
           memcmp(sqlite3_value_text(v), site_id, strlen(site_id)) == 0;
}

static int check_one(sqlite3_changeset_iter *it, const struct schema *s, const char *site_id,
                     struct errctx *e)
{
    const char *tab;
    int ncol, op, indirect, rc;
    const struct schema_table *t;
    sqlite3_value *ov = NULL, *nv = NULL;

    if (sqlite3changeset_op(it, &tab, &ncol, &op, &indirect) != SQLITE_OK)
        return errctx_set(e, SYNC_EPROTO, "changeset is malformed");
    if ((t = schema_find(s, tab)) == NULL) {
        char shown[65];
        size_t i;
        /* the name is outside input bound for a log: show identifiers only */
        for (i = 0; i < sizeof(shown) - 1 && tab[i] != '\0'; i++)
            shown[i] = (isalnum((unsigned char)tab[i]) || tab[i] == '_') ? tab[i] : '?';
        shown[i] = '\0';
        return errctx_set(e, SYNC_EREFUSED, "push names unknown table \"%s\"", shown);
    }
    if (t->cls == CLASS_LOCAL)
        return errctx_set(e, SYNC_EREFUSED,
                          "push changes table %s, which is confidential to the site and "
                          "must never leave it",
                          t->name);
    if (t->cls == CLASS_HUB)
        return errctx_set(e, SYNC_EREFUSED,
                          "push changes table %s, which only the central team may change", t->name);
    if ((rc = shape_check(it, t, ncol, e)) != SYNC_OK) {
        if (rc == SYNC_ESCHEMA && e != NULL)
            e->code = rc = SYNC_EREFUSED; /* a push that does not fit the schema is refused */
        return rc;
    }
    /* The image that identifies the row must be whole: an insert carries
     * every value, a delete every old value, an update its old key.  SQLite's
     * own apply, and our merge, read these without checking. */
    for (int k = 0; k < t->ncol; k++) {
        sqlite3_value *v = NULL;
        int need = op == SQLITE_INSERT || op == SQLITE_DELETE || t->cols[k].pk > 0;
        int got =
            op == SQLITE_INSERT ? sqlite3changeset_new(it, k, &v) : sqlite3changeset_old(it, k, &v);
        if (need && (got != SQLITE_OK || v == NULL))
            return errctx_set(e, SYNC_EREFUSED,
                              "push changes a row of %s without giving its column %s", t->name,
                              t->cols[k].name);
    }
    if (t->cls == CLASS_OWNED) {
        if (op != SQLITE_INSERT)
            (void)sqlite3changeset_old(it, t->site_col, &ov);
        if (op != SQLITE_DELETE)
            (void)sqlite3changeset_new(it, t->site_col, &nv);
        if ((op != SQLITE_INSERT && ov == NULL) || (op == SQLITE_INSERT && nv == NULL) ||
            !owner_ok(ov, site_id) || !owner_ok(nv, site_id))
            return errctx_set(e, SYNC_EREFUSED,
                              "push changes a row of %s that belongs to another site; "
                              "a site may change only rows whose site_id is its own",
                              t->name);
    }
    return SYNC_OK;
}

int changeset_check_push(const struct schema *s, const void *cs, size_t n, const char *site_id,
                         int *nchanges, struct errctx *e)
{
    sqlite3_changeset_iter *it = NULL;
    int rc = SYNC_OK, step;

    *nchanges = 0;
    if (n == 0)
        return SYNC_OK;
    if ((rc = iter_start(&it, cs, n, e)) != SYNC_OK)
        return rc;
    while ((step = sqlite3changeset_next(it)) == SQLITE_ROW) {
        if ((rc = check_one(it, s, site_id, e)) != SYNC_OK)
            break;
        (*nchanges)++;
    }
    if (rc != SYNC_OK) {
        sqlite3changeset_finalize(it);
        return rc;
    }
    return iter_end(it, step, e);
}

/* ---- writing insert-only changesets (join snapshots) -------------------- */

/* Appends v as an SQLite varint: 7 bits a byte, most significant first, the
 * high bit set on every byte but the last; a ninth byte, when needed, holds
 * 8 bits (the inverse of varint_get). */
static int varint_put(struct buf *out, uint64_t v, struct errctx *e)
{
    uint8_t tmp[9];
    int n = 0;

    if (v >> 56) {
        tmp[8] = (uint8_t)v;
        v >>= 8;
        for (int i = 7; i >= 0; i--, v >>= 7)
            tmp[i] = (uint8_t)((v & 0x7f) | 0x80);
        return buf_put(out, tmp, 9, e);
    }
    do {
        tmp[n++] = (uint8_t)(v & 0x7f);
        v >>= 7;
    } while (v != 0);
    for (int i = 0; i < n / 2; i++) {
        uint8_t t = tmp[i];
        tmp[i] = tmp[n - 1 - i];
        tmp[n - 1 - i] = t;
    }
    for (int i = 0; i < n - 1; i++)
        tmp[i] |= 0x80;
    return buf_put(out, tmp, (size_t)n, e);
}

int changeset_put_table(struct buf *out, const struct schema_table *t, struct errctx *e)
{
    int rc;

    if ((rc = buf_put_u8(out, 'T', e)) != SYNC_OK ||
        (rc = varint_put(out, (uint64_t)t->ncol, e)) != SYNC_OK)
        return rc;
    /* as the session extension writes it: each column's 1-based position in
     * the primary key, 0 for the others */
    for (int i = 0; i < t->ncol; i++)
        if ((rc = buf_put_u8(out, (uint8_t)t->cols[i].pk, e)) != SYNC_OK)
            return rc;
    return buf_put(out, t->name, strlen(t->name) + 1, e);
}

int changeset_put_insert(struct buf *out, sqlite3_stmt *st, const struct schema_table *t,
                         struct errctx *e)
{
    int rc;

    if ((rc = buf_put_u8(out, SQLITE_INSERT, e)) != SYNC_OK ||
        (rc = buf_put_u8(out, 0, e)) != SYNC_OK) /* not indirect */
        return rc;
    for (int i = 0; rc == SYNC_OK && i < t->ncol; i++) {
        int type = sqlite3_column_type(st, i);
        uint64_t bits;

        switch (type) {
        case SQLITE_INTEGER:
            bits = (uint64_t)sqlite3_column_int64(st, i);
            if ((rc = buf_put_u8(out, SQLITE_INTEGER, e)) == SYNC_OK)
                rc = buf_put_u64(out, bits, e);
            break;
        case SQLITE_FLOAT: {
            double d = sqlite3_column_double(st, i);
            memcpy(&bits, &d, sizeof(bits));
            if ((rc = buf_put_u8(out, SQLITE_FLOAT, e)) == SYNC_OK)
                rc = buf_put_u64(out, bits, e);
            break;
        }
        case SQLITE_TEXT:
        case SQLITE_BLOB: {
            const void *p = type == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, i)
                                                : sqlite3_column_blob(st, i);
            int len = sqlite3_column_bytes(st, i);
            if ((rc = buf_put_u8(out, (uint8_t)type, e)) == SYNC_OK &&
                (rc = varint_put(out, (uint64_t)len, e)) == SYNC_OK && len > 0)
                rc = buf_put(out, p, (size_t)len, e);
            break;
        }
        default:
            rc = buf_put_u8(out, SQLITE_NULL, e);
            break;
        }
    }
    return rc;
}
