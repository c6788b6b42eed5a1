/*
 * merge.c - applying a push by the reconciliation policy.
 *
 * The hub walks the pushed changeset itself (rather than handing it to
 * sqlite3changeset_apply) so that each column of each change gets its own
 * decision, and every input that loses is written to the conflict log:
 *
 *   update, row present   a column the hub still has at the pusher's old value
 *                         takes the new value; a column changed on both sides
 *                         goes to the later edit (edit time, then the greater
 *                         site id); the loser is logged (overridden or
 *                         overwritten)
 *   update, row deleted   the delete stands; each pushed column is logged
 *                         (update-of-deleted)
 *   insert, key free      inserted
 *   insert, key taken     merged column by column as an update with no base:
 *                         differing columns go to the later edit
 *   delete, row present   deleted, even when another site changed it since the
 *                         pusher's base; the values that go with it are logged
 *                         for their editor (deleted)
 *   delete, row gone      nothing to do
 *   constraint failure    that change is undone (savepoint) and logged
 *                         (rejected, with SQLite's reason); the rest go on
 *
 * Edit times are per row: the site stamps a key each time a program edits
 * it; the hub keeps the time and site of the last accepted edit of each row
 * in _empact_rowmeta_T, kept after a delete as a tombstone.
 */
#include "merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "changeset.h"
#include "db.h"
#include "gitmap.h"

#define NOTES_MAX 50 /* conflict lines in one commit message */

struct mctx {
    sqlite3 *db;
    const char *site;
    const char *push_id;
    struct merge_stats *st;
    struct buf *notes;
    struct stmtcache *sc; /* the statements, prepared once each (the caller's or own) */
    const struct schema *s;
    char **q; /* Q_COUNT texts per table of s (msql()), built once per push */
};

/* The statements whose text depends only on the table. */
enum msql {
    Q_ROW,         /* the hub's row, by key */
    Q_ROWMETA,     /* the row's edit time and site */
    Q_COLMETA,     /* its columns' edit times and sites */
    Q_ROWMETA_PUT, /* stamp the row */
    Q_COLMETA_DEL, /* forget its columns' stamps */
    Q_COLMETA_PUT, /* stamp one column */
    Q_INSERT,      /* the whole row */
    Q_DELETE,      /* the row, by key */
    Q_COUNT
};

/* n "?" separated by ", ", and one more ", " after them if tail. */
static char *marks(int n, int tail)
{
    char *p = sqlite3_malloc64((uint64_t)n * 3 + 1), *w = p;

    for (int i = 0; p != NULL && i < n; i++) {
        memcpy(w, "?, ", 3);
        w += i + 1 < n || tail ? 3 : 1;
    }
    if (p != NULL)
        *w = '\0';
    return p;
}

static char *msql_build(const struct schema_table *t, enum msql k)
{
    char *keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL), *where = schema_sql_pk_where(t);
    char *kq = marks(t->npk, 1), *all = marks(t->ncol, 0), *sql = NULL;

    if (keys != NULL && where != NULL && kq != NULL && all != NULL) {
        switch (k) {
        case Q_ROW:
            sql = sqlite3_mprintf("SELECT * FROM \"%w\" WHERE %s", t->name, where);
            break;
        case Q_ROWMETA:
            sql = sqlite3_mprintf("SELECT _empact_edited_at, _empact_site FROM \"" ROWMETA_PREFIX
                                  "%w\" WHERE %s",
                                  t->name, where);
            break;
        case Q_COLMETA:
            sql = sqlite3_mprintf(
                "SELECT _empact_col, _empact_edited_at, _empact_site FROM \"" COLMETA_PREFIX
                "%w\" WHERE %s",
                t->name, where);
            break;
        case Q_ROWMETA_PUT:
            sql =
                sqlite3_mprintf("INSERT INTO \"" ROWMETA_PREFIX "%w\" VALUES (%s?, ?) ON CONFLICT "
                                "(%s) DO UPDATE SET _empact_edited_at = excluded._empact_edited_at,"
                                " _empact_site = excluded._empact_site",
                                t->name, kq, keys);
            break;
        case Q_COLMETA_DEL:
            sql = sqlite3_mprintf("DELETE FROM \"" COLMETA_PREFIX "%w\" WHERE %s", t->name, where);
            break;
        case Q_COLMETA_PUT:
            sql =
                sqlite3_mprintf("INSERT INTO \"" COLMETA_PREFIX "%w\" VALUES (%s?, ?, ?) ON "
                                "CONFLICT (%s, _empact_col) DO UPDATE SET _empact_edited_at = "
                                "excluded._empact_edited_at, _empact_site = excluded._empact_site",
                                t->name, kq, keys);
            break;
        case Q_INSERT:
            sql = sqlite3_mprintf("INSERT INTO \"%w\" VALUES (%s)", t->name, all);
            break;
        case Q_DELETE:
            sql = sqlite3_mprintf("DELETE FROM \"%w\" WHERE %s", t->name, where);
            break;
        case Q_COUNT:
            break;
        }
    }
    sqlite3_free(keys);
    sqlite3_free(where);
    sqlite3_free(kq);
    sqlite3_free(all);
    return sql;
}

/* The text of statement k for table t (NULL: out of memory). */
static const char *msql(struct mctx *m, const struct schema_table *t, enum msql k)
{
    char **slot = &m->q[(t - m->s->tables) * Q_COUNT + k];

    if (*slot == NULL)
        *slot = msql_build(t, k);
    return *slot;
}

struct change {
    const struct schema_table *t;
    int op;
    uint64_t at;
    sqlite3_value **oldv; /* borrowed from the iterator; NULL entries: absent */
    sqlite3_value **newv;
    sqlite3_value **row; /* the hub's current row (owned copies), or NULL */
    int64_t meta_at;     /* the row's insert or delete: time and site */
    char meta_site[SITE_ID_MAX + 8];
    struct stamp *col; /* per column: the edit that typed its current value */
};

struct stamp {
    int64_t at;
    char site[SITE_ID_MAX + 8];
};

static int sql_err(struct errctx *e, sqlite3 *db, const char *what)
{
    return errctx_set(e, SYNC_EIO, "merging a push: %s: %s", what, sqlite3_errmsg(db));
}

int merge_tables_create(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    for (int i = 0; i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        char *keys;
        int rc;

        if (t->cls != CLASS_SHARED && t->cls != CLASS_OWNED)
            continue;
        if ((keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL)) == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        rc = db_exec_free(
            db,
            sqlite3_mprintf("CREATE TABLE IF NOT EXISTS \"" ROWMETA_PREFIX "%w\" "
                            "(%s, _empact_edited_at INTEGER NOT NULL, "
                            "_empact_site TEXT NOT NULL, PRIMARY KEY (%s)) "
                            "WITHOUT ROWID;"
                            "CREATE TABLE IF NOT EXISTS \"" COLMETA_PREFIX "%w\" "
                            "(%s, _empact_col INTEGER NOT NULL, "
                            "_empact_edited_at INTEGER NOT NULL, "
                            "_empact_site TEXT NOT NULL, PRIMARY KEY (%s, _empact_col)) "
                            "WITHOUT ROWID",
                            t->name, keys, keys, t->name, keys, keys),
            "hub database", e);
        sqlite3_free(keys);
        if (rc != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

/* ---- values ------------------------------------------------------------------ */

static int value_eq(sqlite3_value *a, sqlite3_value *b)
{
    int ta = sqlite3_value_type(a), tb = sqlite3_value_type(b);

    if (ta == SQLITE_NULL || tb == SQLITE_NULL)
        return ta == tb;
    if ((ta == SQLITE_INTEGER || ta == SQLITE_FLOAT) &&
        (tb == SQLITE_INTEGER || tb == SQLITE_FLOAT)) {
        if (ta == SQLITE_INTEGER && tb == SQLITE_INTEGER)
            return sqlite3_value_int64(a) == sqlite3_value_int64(b);
        return sqlite3_value_double(a) == sqlite3_value_double(b);
    }
    if (ta != tb || sqlite3_value_bytes(a) != sqlite3_value_bytes(b))
        return 0;
    return memcmp(ta == SQLITE_TEXT ? (const void *)sqlite3_value_text(a) : sqlite3_value_blob(a),
                  tb == SQLITE_TEXT ? (const void *)sqlite3_value_text(b) : sqlite3_value_blob(b),
                  (size_t)sqlite3_value_bytes(a)) == 0;
}

/* The key of the change: new image for an insert, old otherwise. */
static sqlite3_value *key_value(const struct change *c, int k)
{
    int col = c->t->pk[k];
    return c->op == SQLITE_INSERT ? c->newv[col] : c->oldv[col];
}

static void bind_key(sqlite3_stmt *st, const struct change *c, int first)
{
    for (int k = 0; k < c->t->npk; k++)
        sqlite3_bind_value(st, first + k, key_value(c, k));
}

/* ---- reading the hub's state --------------------------------------------------- */

static void row_free(sqlite3_value **row, int n)
{
    if (row == NULL)
        return;
    for (int i = 0; i < n; i++)
        sqlite3_value_free(row[i]);
    free(row);
}

/* Loads the hub's current row and its meta into c. */
static int state_load(struct mctx *m, struct change *c, struct errctx *e)
{
    const struct schema_table *t = c->t;
    const char *q_row = msql(m, t, Q_ROW), *q_meta = msql(m, t, Q_ROWMETA);
    const char *q_col = msql(m, t, Q_COLMETA);
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    c->row = NULL;
    c->meta_at = 0;
    c->meta_site[0] = '\0';
    if (q_row == NULL || q_meta == NULL || q_col == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (stmtcache_prepare(m->sc, q_row, &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "reading a row");
        goto out;
    }
    bind_key(st, c, 1);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if ((c->row = calloc((size_t)t->ncol, sizeof(*c->row))) == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < t->ncol; i++) {
            if ((c->row[i] = sqlite3_value_dup(sqlite3_column_value(st, i))) == NULL) {
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
                goto out;
            }
        }
    } else if (step != SQLITE_DONE) {
        rc = sql_err(e, m->db, "reading a row");
        goto out;
    }
    stmtcache_release(m->sc, st);
    if (stmtcache_prepare(m->sc, q_meta, &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "reading row times");
        goto out;
    }
    bind_key(st, c, 1);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        c->meta_at = sqlite3_column_int64(st, 0);
        snprintf(c->meta_site, sizeof(c->meta_site), "%s",
                 (const char *)sqlite3_column_text(st, 1));
    } else if (step != SQLITE_DONE) {
        rc = sql_err(e, m->db, "reading row times");
        goto out;
    }
    stmtcache_release(m->sc, st);
    st = NULL;
    if ((c->col = calloc((size_t)t->ncol, sizeof(*c->col))) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < t->ncol; i++) { /* by default, the row's insert typed it */
        c->col[i].at = c->meta_at;
        memcpy(c->col[i].site, c->meta_site, sizeof(c->col[i].site));
    }
    if (stmtcache_prepare(m->sc, q_col, &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "reading column times");
        goto out;
    }
    bind_key(st, c, 1);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int i = sqlite3_column_int(st, 0);
        if (i < 0 || i >= t->ncol)
            continue;
        c->col[i].at = sqlite3_column_int64(st, 1);
        snprintf(c->col[i].site, sizeof(c->col[i].site), "%s",
                 (const char *)sqlite3_column_text(st, 2));
    }
    if (step != SQLITE_DONE)
        rc = sql_err(e, m->db, "reading column times");
out:
    stmtcache_release(m->sc, st);
    return rc;
}

/* 1 if the pusher's edit is later than the edit that typed column i. */
static int pusher_later(const struct mctx *m, const struct change *c, int i)
{
    if ((int64_t)c->at != c->col[i].at)
        return (int64_t)c->at > c->col[i].at;
    return strcmp(m->site, c->col[i].site) > 0;
}

/* ---- the conflict log ------------------------------------------------------------ */

static int text_of(struct buf *b, sqlite3_value *v, struct errctx *e)
{
    b->len = 0;
    if (v == NULL)
        return buf_put_u8(b, 0, e);
    int rc = gitmap_value_text(b, v, e);
    return rc ? rc : buf_put_u8(b, 0, e);
}

static int key_text(struct buf *b, const struct change *c, struct errctx *e)
{
    int rc = SYNC_OK;
    b->len = 0;
    for (int k = 0; rc == SYNC_OK && k < c->t->npk; k++) {
        if (k > 0 && (rc = buf_put(b, ", ", 2, e)) != SYNC_OK)
            break;
        rc = gitmap_value_text(b, key_value(c, k), e);
    }
    return rc ? rc : buf_put_u8(b, 0, e);
}

struct entry {
    const char *kind;
    int col; /* -1: the whole row */
    const char *loser;
    const char *lost; /* canonical text, NUL-terminated */
    int64_t lost_at;
    const char *winner;
    const char *kept;
    int64_t won_at;
};

static int note(struct mctx *m, const struct change *c, const char *key, const struct entry *en,
                struct errctx *e)
{
    char line[512];
    int n;

    if (m->st->logged > NOTES_MAX)
        return SYNC_OK;
    if (m->st->logged == NOTES_MAX)
        n = snprintf(line, sizeof(line), "conflict: (more in the hub's conflict log)\n");
    else
        n = snprintf(line, sizeof(line), "conflict: %s %.120s%s%s: %s; %s's input lost to %s\n",
                     c->t->name, key, en->col >= 0 ? " " : "",
                     en->col >= 0 ? c->t->cols[en->col].name : "", en->kind, en->loser,
                     en->winner[0] ? en->winner : "the hub");
    if (n < 0)
        return SYNC_OK;
    return buf_put(m->notes, line, strlen(line), e);
}

static int conflict_log(struct mctx *m, const struct change *c, const struct entry *en,
                        struct errctx *e)
{
    struct buf key = {0};
    sqlite3_stmt *st = NULL;
    int rc;

    if (en->loser[0] == '\0')
        return SYNC_OK; /* no site typed the losing value (seed data) */
    if ((rc = key_text(&key, c, e)) != SYNC_OK)
        goto out;
    if (stmtcache_prepare(m->sc,
                          "INSERT INTO _empact_conflict (version, push_id, tbl, row_key, col, "
                          "kind, loser_site, lost_value, lost_at, winner_site, kept_value, "
                          "won_at, created_at) VALUES (0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "logging a conflict");
        goto out;
    }
    sqlite3_bind_text(st, 1, m->push_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->t->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, (const char *)key.data, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, en->col >= 0 ? c->t->cols[en->col].name : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, en->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, en->loser, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, en->lost, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, en->lost_at);
    sqlite3_bind_text(st, 9, en->winner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, en->kept, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, en->won_at);
    sqlite3_bind_int64(st, 12, (sqlite3_int64)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sql_err(e, m->db, "logging a conflict");
        goto out;
    }
    m->st->logged++;
    rc = note(m, c, (const char *)key.data, en, e);
out:
    stmtcache_release(m->sc, st);
    buf_free(&key);
    return rc;
}

/* Logs column col of c: lost value lv (by loser at lat) against kept value kv. */
static int log_column(struct mctx *m, const struct change *c, const char *kind, int col,
                      const char *loser, sqlite3_value *lv, int64_t lat, const char *winner,
                      sqlite3_value *kv, int64_t wat, struct errctx *e)
{
    struct buf lost = {0}, kept = {0};
    int rc;

    if ((rc = text_of(&lost, lv, e)) == SYNC_OK && (rc = text_of(&kept, kv, e)) == SYNC_OK) {
        struct entry en = {kind,
                           col,
                           loser,
                           (const char *)lost.data,
                           lat,
                           winner,
                           kv ? (const char *)kept.data : "",
                           wat};
        rc = conflict_log(m, c, &en, e);
    }
    buf_free(&lost);
    buf_free(&kept);
    return rc;
}

/* ---- writing ---------------------------------------------------------------------- */

/* Stamps the row with the pusher's insert or delete (a delete wins whatever
 * its time: the tombstone is the deleter's) and forgets column stamps. */
static int meta_put(struct mctx *m, const struct change *c, struct errctx *e)
{
    const struct schema_table *t = c->t;
    const char *put = msql(m, t, Q_ROWMETA_PUT), *del = msql(m, t, Q_COLMETA_DEL);
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (put == NULL || del == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (stmtcache_prepare(m->sc, put, &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "stamping a row");
        goto out;
    }
    bind_key(st, c, 1);
    sqlite3_bind_int64(st, t->npk + 1, (sqlite3_int64)c->at);
    sqlite3_bind_text(st, t->npk + 2, m->site, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sql_err(e, m->db, "stamping a row");
        goto out;
    }
    stmtcache_release(m->sc, st);
    st = NULL;
    if (stmtcache_prepare(m->sc, del, &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "stamping a row");
        goto out;
    }
    bind_key(st, c, 1);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sql_err(e, m->db, "stamping a row");
out:
    stmtcache_release(m->sc, st);
    return rc;
}

/* Stamps each chosen column with the pusher's edit (the time never moves
 * back: an edit that applied cleanly after a newer-clocked one keeps that
 * time, but the value is now the pusher's). */
static int col_stamp(struct mctx *m, const struct change *c, const int *chosen, struct errctx *e)
{
    const struct schema_table *t = c->t;
    const char *sql = msql(m, t, Q_COLMETA_PUT);
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (sql == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (stmtcache_prepare(m->sc, sql, &st) != SQLITE_OK) {
        rc = sql_err(e, m->db, "stamping a column");
        goto out;
    }
    for (int i = 0; rc == SYNC_OK && i < t->ncol; i++) {
        int64_t at = (int64_t)c->at > c->col[i].at ? (int64_t)c->at : c->col[i].at;
        if (!chosen[i])
            continue;
        bind_key(st, c, 1);
        sqlite3_bind_int(st, t->npk + 1, i);
        sqlite3_bind_int64(st, t->npk + 2, at);
        sqlite3_bind_text(st, t->npk + 3, m->site, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sql_err(e, m->db, "stamping a column");
        sqlite3_reset(st);
    }
out:
    stmtcache_release(m->sc, st);
    return rc;
}

/* Runs sql with the chosen new values then the key bound; *constraint is set
 * (and SYNC_OK returned) when SQLite refused it for a constraint, with its
 * reason in why. */
static int write_row(struct mctx *m, const struct change *c, const char *sql, const int *chosen,
                     int *constraint, char *why, size_t whysz, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int nb = 0, rc = SYNC_OK, step;

    *constraint = 0;
    if (stmtcache_prepare(m->sc, sql, &st) != SQLITE_OK)
        return sql_err(e, m->db, "writing a row");
    for (int i = 0; chosen != NULL && i < c->t->ncol; i++) {
        if (chosen[i])
            sqlite3_bind_value(st, ++nb, c->newv[i]);
    }
    if (c->op != SQLITE_INSERT || c->row != NULL) /* UPDATE or DELETE: the key follows */
        bind_key(st, c, nb + 1);
    step = sqlite3_step(st);
    if ((step & 0xff) == SQLITE_CONSTRAINT) {
        *constraint = 1;
        snprintf(why, whysz, "not applied: %s", sqlite3_errmsg(m->db));
    } else if (step != SQLITE_DONE) {
        rc = sql_err(e, m->db, "writing a row");
    }
    stmtcache_release(m->sc, st);
    return rc;
}

/* "col: value" lines for the columns in chosen (all when NULL), for a
 * rejected change's log entry. */
static int intended_text(struct buf *b, const struct change *c, const int *chosen, struct errctx *e)
{
    int rc = SYNC_OK;
    b->len = 0;
    for (int i = 0; rc == SYNC_OK && i < c->t->ncol; i++) {
        const char *name = c->t->cols[i].name;
        if ((chosen && !chosen[i]) || c->newv[i] == NULL)
            continue;
        if ((rc = buf_put(b, name, strlen(name), e)) == SYNC_OK &&
            (rc = buf_put(b, ": ", 2, e)) == SYNC_OK &&
            (rc = gitmap_value_text(b, c->newv[i], e)) == SYNC_OK)
            rc = buf_put_u8(b, '\n', e);
    }
    return rc ? rc : buf_put_u8(b, 0, e);
}

/* An update, or an insert whose key the hub already has (no old values: every
 * differing column is a conflict decided by edit time). */
static int merge_update(struct mctx *m, struct change *c, int *constraint, char *why, size_t whysz,
                        struct errctx *e)
{
    const struct schema_table *t = c->t;
    int *chosen = calloc((size_t)t->ncol, sizeof(int));
    int nchosen = 0, lost = 0, rc = SYNC_OK;
    char *set = sqlite3_mprintf("%s", ""), *where = schema_sql_pk_where(t), *sql = NULL;

    *constraint = 0;
    if (chosen == NULL || set == NULL || where == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (c->row == NULL) { /* deleted at the hub: the delete stands */
        for (int i = 0; rc == SYNC_OK && i < t->ncol; i++) {
            if (c->newv[i] != NULL && t->cols[i].pk == 0)
                rc = log_column(m, c, CONFLICT_UPDATE_DELETED, i, m->site, c->newv[i],
                                (int64_t)c->at, c->meta_site, NULL, c->meta_at, e);
        }
        m->st->lost++;
        goto out;
    }
    for (int i = 0; rc == SYNC_OK && i < t->ncol; i++) {
        sqlite3_value *nv = c->newv[i], *hv = c->row[i];
        if (nv == NULL || t->cols[i].pk != 0 || value_eq(hv, nv))
            continue;
        if (c->op == SQLITE_UPDATE && c->oldv[i] != NULL && value_eq(hv, c->oldv[i])) {
            chosen[i] = 1; /* only this site changed it since its base */
        } else if (pusher_later(m, c, i)) {
            chosen[i] = 1;
            rc = log_column(m, c, CONFLICT_OVERWRITTEN, i, c->col[i].site, hv, c->col[i].at,
                            m->site, nv, (int64_t)c->at, e);
        } else {
            lost = 1;
            rc = log_column(m, c, CONFLICT_OVERRIDDEN, i, m->site, nv, (int64_t)c->at,
                            c->col[i].site, hv, c->col[i].at, e);
        }
        if (chosen[i]) {
            char *next =
                sqlite3_mprintf("%s%s\"%w\" = ?", set, nchosen++ ? ", " : "", t->cols[i].name);
            sqlite3_free(set);
            if ((set = next) == NULL)
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        }
    }
    if (rc != SYNC_OK)
        goto out;
    m->st->lost += (uint32_t)lost;
    if (nchosen == 0)
        goto out;
    if ((sql = sqlite3_mprintf("UPDATE \"%w\" SET %s WHERE %s", t->name, set, where)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_row(m, c, sql, chosen, constraint, why, whysz, e)) != SYNC_OK || *constraint)
        goto out;
    m->st->applied++;
    rc = col_stamp(m, c, chosen, e);
out:
    free(chosen);
    sqlite3_free(set);
    sqlite3_free(where);
    sqlite3_free(sql);
    return rc;
}

static int merge_insert(struct mctx *m, struct change *c, int *constraint, char *why, size_t whysz,
                        struct errctx *e)
{
    const char *sql;
    int *all, rc;

    if (c->row != NULL)
        return merge_update(m, c, constraint, why, whysz, e);
    all = calloc((size_t)c->t->ncol, sizeof(int));
    for (int i = 0; all != NULL && i < c->t->ncol; i++)
        all[i] = 1;
    if (all == NULL || (sql = msql(m, c->t, Q_INSERT)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = write_row(m, c, sql, all, constraint, why, whysz, e)) != SYNC_OK || *constraint)
        goto out;
    m->st->applied++;
    rc = meta_put(m, c, e);
out:
    free(all);
    return rc;
}

static int merge_delete(struct mctx *m, struct change *c, int *constraint, char *why, size_t whysz,
                        struct errctx *e)
{
    const char *sql;
    int rc = SYNC_OK;

    if (c->row == NULL) /* already gone: the site agrees with the hub */
        return SYNC_OK;
    /* A delete wins over edits made since the pusher's base; what goes with
     * the row is logged for whoever typed it. */
    for (int i = 0; rc == SYNC_OK && i < c->t->ncol; i++) {
        if (c->t->cols[i].pk == 0 && c->oldv[i] != NULL && !value_eq(c->row[i], c->oldv[i]) &&
            strcmp(c->col[i].site, m->site) != 0)
            rc = log_column(m, c, CONFLICT_DELETED, i, c->col[i].site, c->row[i], c->col[i].at,
                            m->site, NULL, (int64_t)c->at, e);
    }
    if (rc != SYNC_OK)
        return rc;
    if ((sql = msql(m, c->t, Q_DELETE)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if ((rc = write_row(m, c, sql, NULL, constraint, why, whysz, e)) != SYNC_OK || *constraint)
        return rc;
    m->st->applied++;
    return meta_put(m, c, e);
}

/* One change inside its own savepoint; a constraint failure undoes it (and
 * anything it logged) and logs the rejection instead. */
static int merge_one(struct mctx *m, struct change *c, struct errctx *e)
{
    char why[256] = "";
    size_t notes_len = m->notes->len;
    struct merge_stats before = *m->st;
    int constraint = 0, rc;

    if ((rc = state_load(m, c, e)) != SYNC_OK ||
        (rc = db_exec(m->db, "SAVEPOINT merge_one", "hub database", e)) != SYNC_OK)
        return rc;
    if (c->op == SQLITE_INSERT)
        rc = merge_insert(m, c, &constraint, why, sizeof(why), e);
    else if (c->op == SQLITE_UPDATE)
        rc = merge_update(m, c, &constraint, why, sizeof(why), e);
    else
        rc = merge_delete(m, c, &constraint, why, sizeof(why), e);
    if (rc == SYNC_OK && constraint) {
        struct buf lost = {0};
        struct entry en = {CONFLICT_REJECTED, -1, m->site, "", (int64_t)c->at, "", why, 0};

        (void)sqlite3_exec(m->db, "ROLLBACK TO merge_one", NULL, NULL, NULL);
        m->notes->len = notes_len;
        *m->st = before;
        m->st->lost++;
        if ((rc = intended_text(&lost, c, NULL, e)) == SYNC_OK) {
            en.lost = (const char *)lost.data;
            rc = conflict_log(m, c, &en, e);
        }
        buf_free(&lost);
    }
    if (rc == SYNC_OK)
        rc = db_exec(m->db, "RELEASE merge_one", "hub database", e);
    return rc;
}

int merge_apply(sqlite3 *db, struct stmtcache *sc, const struct schema *s, const char *site,
                const char *push_id, const void *cs, size_t n, const uint64_t *times,
                uint32_t ntimes, struct merge_stats *st, struct buf *notes, struct errctx *e)
{
    struct stmtcache own = {0};
    struct mctx m = {db, site, push_id, st, notes, sc != NULL ? sc : &own, s, NULL};
    sqlite3_changeset_iter *it = NULL;
    sqlite3_value **oldv = NULL, **newv = NULL;
    uint32_t i = 0;
    int rc = SYNC_OK, step;

    memset(st, 0, sizeof(*st));
    if (n == 0)
        return ntimes == 0 ? SYNC_OK
                           : errctx_set(e, SYNC_EREFUSED,
                                        "push carries %u edit times for 0 changes", ntimes);
    if ((rc = changeset_validate(cs, n, e)) != SYNC_OK)
        return rc;
    if ((m.q = calloc((size_t)s->ntable * Q_COUNT + 1, sizeof(*m.q))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (sqlite3changeset_start(&it, (int)n, (void *)cs) != SQLITE_OK) {
        free(m.q);
        return errctx_set(e, SYNC_EPROTO, "changeset is malformed");
    }
    if (sc == NULL)
        stmtcache_init(&own, db);
    while ((step = sqlite3changeset_next(it)) == SQLITE_ROW) {
        struct change c;
        const char *tab;
        int ncol, indirect;

        memset(&c, 0, sizeof(c));
        if (sqlite3changeset_op(it, &tab, &ncol, &c.op, &indirect) != SQLITE_OK ||
            (c.t = schema_find(s, tab)) == NULL || ncol != c.t->ncol) {
            rc = errctx_set(e, SYNC_EPROTO, "changeset is malformed");
            break;
        }
        if (i >= ntimes) {
            rc =
                errctx_set(e, SYNC_EREFUSED, "push carries %u edit times for more changes", ntimes);
            break;
        }
        free(oldv);
        free(newv);
        oldv = calloc((size_t)ncol, sizeof(*oldv));
        newv = calloc((size_t)ncol, sizeof(*newv));
        if (oldv == NULL || newv == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
            break;
        }
        for (int k = 0; k < ncol; k++) {
            if (c.op != SQLITE_INSERT)
                (void)sqlite3changeset_old(it, k, &oldv[k]);
            if (c.op != SQLITE_DELETE)
                (void)sqlite3changeset_new(it, k, &newv[k]);
        }
        /* changeset_check_push() refuses these; checked again so that this
         * module never binds a missing value */
        for (int k = 0; k < ncol && rc == SYNC_OK; k++) {
            int need = c.op != SQLITE_UPDATE || c.t->cols[k].pk > 0;
            if (need && (c.op == SQLITE_INSERT ? newv[k] : oldv[k]) == NULL)
                rc = errctx_set(e, SYNC_EREFUSED,
                                "push changes a row of %s without giving its "
                                "column %s",
                                c.t->name, c.t->cols[k].name);
        }
        if (rc != SYNC_OK)
            break;
        c.oldv = oldv;
        c.newv = newv;
        c.at = times[i++];
        rc = merge_one(&m, &c, e);
        row_free(c.row, ncol);
        free(c.col);
        if (rc != SYNC_OK)
            break;
    }
    free(oldv);
    free(newv);
    if (rc == SYNC_OK && i != ntimes)
        rc = errctx_set(e, SYNC_EREFUSED, "push carries %u edit times for %u changes", ntimes, i);
    if (sqlite3changeset_finalize(it) != SQLITE_OK && rc == SYNC_OK)
        rc = errctx_set(e, SYNC_EPROTO, "changeset is malformed");
    if (sc == NULL)
        stmtcache_free(&own);
    for (int k = 0; k < s->ntable * Q_COUNT; k++)
        sqlite3_free(m.q[k]);
    free(m.q);
    (void)step;
    return rc;
}
