/*
 * schema.c - reads schema/schema.sql back through SQLite.
 *
 * The SQL is executed in a private in-memory database that first gets a
 * schema_class(name, class) table; schema.sql fills it with one row per
 * table.  Invariants checked here, so the rest of the code may rely on them:
 * every table has exactly one known class; every replicated table has an
 * explicit primary key of NOT NULL columns; owned tables have a site_id
 * column.  The canonical text is, per table in name order:
 *     table NAME CLASS\n<CREATE TABLE text>\n
 * and the fingerprint is its SHA-256.
 */
#include "schema.h"

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const class_names[] = {"shared", "owned", "hub", "local"};

const char *schema_class_name(enum table_class c)
{
    if ((unsigned)c < sizeof(class_names) / sizeof(class_names[0]))
        return class_names[c];
    return "?";
}

int schema_class_replicated(enum table_class c)
{
    return c == CLASS_SHARED || c == CLASS_OWNED || c == CLASS_HUB;
}

static int class_parse(const char *s, enum table_class *out)
{
    for (size_t i = 0; i < sizeof(class_names) / sizeof(class_names[0]); i++) {
        if (strcmp(s, class_names[i]) == 0) {
            *out = (enum table_class)i;
            return 0;
        }
    }
    return -1;
}

static void table_clear(struct schema_table *t)
{
    free(t->name);
    free(t->create_sql);
    for (int i = 0; i < t->ncol; i++) {
        free(t->cols[i].name);
        free(t->cols[i].type);
    }
    free(t->cols);
    free(t->pk);
}

void schema_free(struct schema *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->ntable; i++)
        table_clear(&s->tables[i]);
    free(s->tables);
    free(s);
}

const struct schema_table *schema_find(const struct schema *s, const char *name)
{
    int lo = 0, hi = s->ntable - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, s->tables[mid].name);
        if (c == 0)
            return &s->tables[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Reads the columns of t from PRAGMA table_info and checks the key rules. */
static int table_columns(sqlite3 *db, struct schema_table *t, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_ESCHEMA, n = 0;

    if (sqlite3_prepare_v2(db, "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)", -1,
                           &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_ESCHEMA, "schema: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct schema_column *c;
        struct schema_column *grown = reallocarray(t->cols, (size_t)n + 1, sizeof(*grown));
        if (grown == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory reading the schema");
            goto out;
        }
        t->cols = grown;
        c = &t->cols[n];
        memset(c, 0, sizeof(*c));
        t->ncol = ++n;
        c->name = strdup((const char *)sqlite3_column_text(st, 0));
        c->type = strdup((const char *)sqlite3_column_text(st, 1));
        c->notnull = sqlite3_column_int(st, 2);
        c->pk = sqlite3_column_int(st, 3);
        if (c->name == NULL || c->type == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory reading the schema");
            goto out;
        }
        if (c->pk > 0)
            t->npk++;
    }
    t->pk = calloc((size_t)(t->npk > 0 ? t->npk : 1), sizeof(int));
    if (t->pk == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory reading the schema");
        goto out;
    }
    t->site_col = -1;
    for (int i = 0; i < t->ncol; i++) {
        if (t->cols[i].pk > 0)
            t->pk[t->cols[i].pk - 1] = i;
        if (strcmp(t->cols[i].name, "site_id") == 0)
            t->site_col = i;
    }
    if (schema_class_replicated(t->cls)) {
        if (t->npk == 0) {
            rc = errctx_set(e, SYNC_ESCHEMA, "schema: replicated table %s has no PRIMARY KEY",
                            t->name);
            goto out;
        }
        for (int i = 0; i < t->npk; i++) {
            if (!t->cols[t->pk[i]].notnull) {
                rc = errctx_set(e, SYNC_ESCHEMA,
                                "schema: key column %s.%s of a replicated table must be NOT NULL",
                                t->name, t->cols[t->pk[i]].name);
                goto out;
            }
        }
    }
    if (t->cls == CLASS_OWNED && (t->site_col < 0 || t->cols[t->site_col].pk == 0)) {
        /* in the key, so that two sites can never write the same row */
        rc =
            errctx_set(e, SYNC_ESCHEMA,
                       "schema: owned table %s needs a site_id column in its primary key", t->name);
        goto out;
    }
    rc = SYNC_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

static int tables_read(sqlite3 *db, struct schema *s, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_ESCHEMA;
    const char *q = "SELECT m.name, m.sql, c.class FROM sqlite_schema m "
                    "LEFT JOIN schema_class c ON c.name = m.name "
                    "WHERE m.type = 'table' AND m.name <> 'schema_class' "
                    "AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name";

    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_ESCHEMA, "schema: %s", sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *cls = (const char *)sqlite3_column_text(st, 2);
        struct schema_table *t;
        struct schema_table *grown = reallocarray(s->tables, (size_t)s->ntable + 1, sizeof(*grown));

        if (grown == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory reading the schema");
            goto out;
        }
        s->tables = grown;
        t = &s->tables[s->ntable++];
        memset(t, 0, sizeof(*t));
        t->name = strdup(name);
        t->create_sql = strdup((const char *)sqlite3_column_text(st, 1));
        if (t->name == NULL || t->create_sql == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory reading the schema");
            goto out;
        }
        if (cls == NULL || class_parse(cls, &t->cls) != 0) {
            rc = errctx_set(e, SYNC_ESCHEMA, "schema: table %s has no valid class (got %s)", name,
                            cls ? cls : "none");
            goto out;
        }
        if ((rc = table_columns(db, t, e)) != SYNC_OK)
            goto out;
    }
    rc = SYNC_OK;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Every schema_class row must name a table that exists. */
static int classes_check(sqlite3 *db, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM schema_class WHERE name NOT IN "
                           "(SELECT name FROM sqlite_schema WHERE type = 'table')",
                           -1, &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_ESCHEMA, "schema: %s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = errctx_set(e, SYNC_ESCHEMA, "schema: class given for unknown table %s",
                        (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc;
}

char *schema_canonical_text(const struct schema *s)
{
    size_t len = 1;
    char *out, *p;

    for (int i = 0; i < s->ntable; i++)
        len += strlen(s->tables[i].name) + strlen(s->tables[i].create_sql) + 32;
    if ((out = malloc(len)) == NULL)
        return NULL;
    p = out;
    for (int i = 0; i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        p += sprintf(p, "table %s %s\n%s\n", t->name, schema_class_name(t->cls), t->create_sql);
    }
    *p = '\0';
    return out;
}

static int fingerprint(struct schema *s, struct errctx *e)
{
    char *text = schema_canonical_text(s);
    unsigned int n = 0;

    if (text == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory hashing the schema");
    if (EVP_Digest(text, strlen(text), s->fingerprint, &n, EVP_sha256(), NULL) != 1 || n != 32) {
        free(text);
        return errctx_set(e, SYNC_ESCHEMA, "schema: SHA-256 unavailable");
    }
    free(text);
    for (int i = 0; i < 32; i++)
        sprintf(&s->fingerprint_hex[i * 2], "%02x", s->fingerprint[i]);
    return SYNC_OK;
}

int schema_load_text(struct schema **out, const char *sql, struct errctx *e)
{
    sqlite3 *db = NULL;
    struct schema *s = NULL;
    char *err = NULL;
    int rc;

    *out = NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory loading the schema");
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_ESCHEMA, "schema: cannot open an in-memory database");
        goto out;
    }
    if (sqlite3_exec(db, "CREATE TABLE schema_class(name TEXT PRIMARY KEY, class TEXT NOT NULL)",
                     NULL, NULL, &err) != SQLITE_OK ||
        sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_ESCHEMA, "schema: %s", err ? err : sqlite3_errmsg(db));
        goto out;
    }
    if ((rc = classes_check(db, e)) != SYNC_OK || (rc = tables_read(db, s, e)) != SYNC_OK ||
        (rc = fingerprint(s, e)) != SYNC_OK)
        goto out;
    if (s->ntable == 0) {
        rc = errctx_set(e, SYNC_ESCHEMA, "schema: no tables");
        goto out;
    }
    *out = s;
    s = NULL;
out:
    sqlite3_free(err);
    sqlite3_close(db);
    schema_free(s);
    return rc;
}

int schema_load(struct schema **out, struct errctx *e)
{
    return schema_load_text(out, schema_sql_text, e);
}

int schema_select_rows(sqlite3_stmt **out, sqlite3 *db, const struct schema_table *t,
                       const char *tail)
{
    char *cols = schema_sql_cols(t, SCHEMA_COLS_ALL, NULL);
    char *sql =
        cols ? sqlite3_mprintf("SELECT %s FROM \"%w\" %s", cols, t->name, tail ? tail : "") : NULL;
    int rc = sql ? sqlite3_prepare_v2(db, sql, -1, out, NULL) : SQLITE_NOMEM;

    if (rc != SQLITE_OK)
        *out = NULL;
    sqlite3_free(sql);
    sqlite3_free(cols);
    return rc;
}

char *schema_sql_cols(const struct schema_table *t, enum schema_cols which, const char *alias)
{
    char *out = sqlite3_mprintf("%s", "");
    int n = which == SCHEMA_COLS_PK ? t->npk : t->ncol;

    for (int i = 0; out != NULL && i < n; i++) {
        int ci = which == SCHEMA_COLS_PK ? t->pk[i] : i;
        char *next = sqlite3_mprintf("%s%s%s%s\"%w\"", out, i ? ", " : "", alias ? alias : "",
                                     alias ? "." : "", t->cols[ci].name);
        sqlite3_free(out);
        out = next;
    }
    return out;
}

char *schema_sql_pk_match(const struct schema_table *t, const char *a, const char *b)
{
    char *out = sqlite3_mprintf("%s", "");

    for (int i = 0; out != NULL && i < t->npk; i++) {
        const char *c = t->cols[t->pk[i]].name;
        char *next =
            sqlite3_mprintf("%s%s%s.\"%w\" = %s.\"%w\"", out, i ? " AND " : "", a, c, b, c);
        sqlite3_free(out);
        out = next;
    }
    return out;
}

char *schema_sql_pk_where(const struct schema_table *t)
{
    char *out = sqlite3_mprintf("%s", "");

    for (int i = 0; out != NULL && i < t->npk; i++) {
        char *next =
            sqlite3_mprintf("%s%s\"%w\" = ?", out, i ? " AND " : "", t->cols[t->pk[i]].name);
        sqlite3_free(out);
        out = next;
    }
    return out;
}
