/*
 * schema.h - the replicated schema and each table's class.
 *
 * schema/schema.sql is compiled into both binaries.  schema_load() runs it in
 * a private in-memory database and reads back tables, columns, primary keys
 * and classes, so both sides see one description.  The fingerprint is the
 * SHA-256 of the canonical schema text (see schema_canonical_text()).
 */
#ifndef EMPACT_SCHEMA_H
#define EMPACT_SCHEMA_H

#include <sqlite3.h>
#include <stdint.h>

#include "errctx.h"

enum table_class {
    CLASS_SHARED = 0, /* any site writes; replicated */
    CLASS_OWNED,      /* only the site named in site_id writes; replicated */
    CLASS_HUB,        /* only the hub writes; replicated hub -> sites */
    CLASS_LOCAL,      /* one site only; never leaves it */
};

struct schema_column {
    char *name;
    char *type; /* declared type, "" when none */
    int pk;     /* 1-based position in the primary key, 0 if not part of it */
    int notnull;
};

struct schema_table {
    char *name;
    enum table_class cls;
    char *create_sql; /* the CREATE TABLE statement as written in schema.sql */
    int ncol;
    struct schema_column *cols; /* in declaration order, as a changeset orders them */
    int npk;
    int *pk;      /* column indices, in primary-key order */
    int site_col; /* owned tables: index of site_id; otherwise -1 */
};

struct schema {
    int ntable;
    struct schema_table *tables; /* sorted by name */
    uint8_t fingerprint[32];
    char fingerprint_hex[65];
};

/* Loads the compiled-in schema.  Caller frees with schema_free(). */
int schema_load(struct schema **out, struct errctx *e) SYNC_WUR;

/* Loads a schema from SQL text in the schema.sql form (tests, tools). */
int schema_load_text(struct schema **out, const char *sql, struct errctx *e) SYNC_WUR;

/* Safe to call with NULL. */
void schema_free(struct schema *s);

/* The table called name, or NULL. */
const struct schema_table *schema_find(const struct schema *s, const char *name);

/* 1 if the class is copied between hub and sites (shared, owned, hub). */
int schema_class_replicated(enum table_class c);

/* "shared", "owned", "hub", "local". */
const char *schema_class_name(enum table_class c);

/* The canonical schema text the fingerprint hashes; caller frees with free(). */
char *schema_canonical_text(const struct schema *s);

/* The compiled-in schema.sql text. */
extern const char schema_sql_text[];

/* SQL helpers for the schema's own identifiers.  Each returns text from
 * sqlite3_mprintf() (caller frees with sqlite3_free()), NULL when out of memory.
 *   schema_sql_cols(t, which, alias): the columns as `alias."c1", alias."c2"`
 *     (alias may be NULL); which is SCHEMA_COLS_ALL or SCHEMA_COLS_PK.
 *   schema_sql_pk_match(t, a, b): `a."k1" = b."k1" AND ...` over the key.
 *   schema_sql_pk_where(t): `"k1" = ? AND "k2" = ?` over the key. */
enum schema_cols { SCHEMA_COLS_ALL, SCHEMA_COLS_PK };
char *schema_sql_cols(const struct schema_table *t, enum schema_cols which, const char *alias);
char *schema_sql_pk_match(const struct schema_table *t, const char *a, const char *b);
char *schema_sql_pk_where(const struct schema_table *t);

/* Prepares `SELECT <every column of t, schema order> FROM "T" <tail>` on db
 * (tail: NULL, or SQL appended such as an ORDER BY).  SQLITE_OK, or SQLite's
 * code (SQLITE_NOMEM when the text could not be built; sqlite3_errmsg(db)
 * says the rest) with *out NULL. */
int schema_select_rows(sqlite3_stmt **out, sqlite3 *db, const struct schema_table *t,
                       const char *tail);

#endif
