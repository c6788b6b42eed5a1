/*
 * fuzz_rowtext.c - libFuzzer target for the reader of a row's canonical
 * text in history.git (common/rowtext.c), which `empact-hub rebuild` runs on
 * a repository that may be damaged.
 *
 * The first input byte picks a replicated table of the schema; the rest is
 * the row blob.  A refusal must come with a message.  An accepted row must
 * be exactly canonical: its values, inserted into that table in an
 * in-memory database and written back with gitmap_row_text(), give the very
 * same bytes.  Any broken invariant aborts.
 *
 * fuzz-sources: common/rowtext.c common/gitmap.c common/gittree.c common/packfile.c
 * fuzz-sources: common/schema.c common/db.c
 * fuzz-sources: common/buf.c common/errctx.c build/schema_sql.c
 * fuzz-pkgs: sqlite3 libgit2 openssl zlib libdeflate
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "gitmap.h"
#include "rowtext.h"
#include "schema.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_rowtext: invariant failed at line %d: %s\n", __LINE__, #c);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct schema *g_schema;
static sqlite3 *g_db;
static const struct schema_table *g_tables[32];
static int g_ntables;

static void setup(void)
{
    struct errctx e = {0, ""};
    CHECK(schema_load(&g_schema, &e) == SYNC_OK);
    CHECK(sqlite3_open(":memory:", &g_db) == SQLITE_OK);
    for (int i = 0; i < g_schema->ntable && g_ntables < 32; i++) {
        const struct schema_table *t = &g_schema->tables[i];
        if (!schema_class_replicated(t->cls))
            continue;
        CHECK(sqlite3_exec(g_db, t->create_sql, NULL, NULL, NULL) == SQLITE_OK);
        g_tables[g_ntables++] = t;
    }
}

/* Inserts r into t (emptied first), reads it back, writes its text; 1 when
 * the table kept every value with its type (no constraint refused it and no
 * column affinity converted it), so the text must come back unchanged. */
static int write_back(const struct schema_table *t, const struct rowtext *r, struct buf *out)
{
    int same = 1;
    char sql[512];
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    struct errctx e = {0, ""};

    snprintf(sql, sizeof(sql), "DELETE FROM \"%s\"", t->name);
    CHECK(sqlite3_exec(g_db, sql, NULL, NULL, NULL) == SQLITE_OK);
    n = (size_t)snprintf(sql, sizeof(sql), "INSERT INTO \"%s\" VALUES (", t->name);
    for (int i = 0; i < t->ncol && n < sizeof(sql) - 4; i++)
        n += (size_t)snprintf(sql + n, sizeof(sql) - n, "%s?", i ? ", " : "");
    snprintf(sql + n, sizeof(sql) - n, ")");
    CHECK(sqlite3_prepare_v2(g_db, sql, -1, &st, NULL) == SQLITE_OK);
    for (int i = 0; i < t->ncol; i++)
        CHECK(rowtext_bind(st, i + 1, &r->v[i]) == SQLITE_OK);
    if (sqlite3_step(st) != SQLITE_DONE) { /* a value the table's constraints refuse */
        sqlite3_finalize(st);
        return 0;
    }
    sqlite3_finalize(st);
    snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", t->name);
    CHECK(sqlite3_prepare_v2(g_db, sql, -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    for (int i = 0; i < t->ncol; i++)
        same &= sqlite3_column_type(st, i) == r->v[i].type;
    CHECK(gitmap_row_text(out, st, 0, t, &e) == SYNC_OK);
    sqlite3_finalize(st);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rowtext *r = NULL;
    struct errctx e = {0, ""};
    const struct schema_table *t;
    struct buf out = {0};
    int rc;

    if (g_schema == NULL)
        setup();
    if (size < 1)
        return 0;
    t = g_tables[data[0] % g_ntables];
    rc = rowtext_parse(&r, data + 1, size - 1, t, &e);
    if (rc != SYNC_OK) {
        CHECK(r == NULL && e.msg[0] != '\0');
        return 0;
    }
    CHECK(r != NULL && r->ncol == t->ncol);
    for (int i = 0; i < r->ncol; i++)
        if (r->v[i].type == SQLITE_TEXT || r->v[i].type == SQLITE_BLOB)
            CHECK(r->v[i].p != NULL && r->v[i].p[r->v[i].n] == '\0');
    if (write_back(t, r, &out))
        CHECK(out.len == size - 1 && memcmp(out.data, data + 1, out.len) == 0);
    buf_free(&out);
    rowtext_free(r);
    return 0;
}
