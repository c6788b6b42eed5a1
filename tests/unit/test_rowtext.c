/*
 * test_rowtext.c - the row-text reader is the exact inverse of
 * gitmap_row_text(): awkward values written by the writer read back to the
 * same value and type and are written again to the same bytes; damaged or
 * non-canonical text is refused with a sentence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "gitmap.h"
#include "rowtext.h"
#include "schema.h"

/* Untyped columns keep every storage class as it was written. */
static const char test_schema[] =
    "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a, b, c) WITHOUT ROWID;\n"
    "INSERT INTO schema_class VALUES ('t', 'shared');\n";

static struct schema *g_s;

static int group_setup(void **state)
{
    struct errctx e = {0};
    (void)state;
    if (schema_load_text(&g_s, test_schema, &e) != SYNC_OK) {
        print_error("schema_load_text: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    schema_free(g_s);
    return 0;
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        print_error("SQL failed: %s\n  in: %s\n", err ? err : sqlite3_errmsg(db), sql);
        sqlite3_free(err);
        fail();
    }
}

/* The canonical text of the row of table tbl whose id is id. */
static void text_of(struct buf *out, sqlite3 *db, const char *tbl, const char *id)
{
    const struct schema_table *t = schema_find(g_s, "t");
    struct errctx e = {0};
    sqlite3_stmt *st = NULL;
    char *q = sqlite3_mprintf("SELECT * FROM %s WHERE id = %Q", tbl, id);

    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    out->len = 0;
    assert_int_equal(gitmap_row_text(out, st, 0, t, &e), SYNC_OK);
    sqlite3_finalize(st);
    sqlite3_free(q);
}

/* Writes each row of t, reads the text back into t2, and checks the copy is
 * the same value, type and text. */
static void test_round_trip(void **state)
{
    const struct schema_table *t = schema_find(g_s, "t");
    sqlite3 *db = NULL;
    sqlite3_stmt *ids = NULL, *ins = NULL;
    struct buf a = {0}, b = {0};
    struct errctx e = {0};
    int n = 0;

    (void)state;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    exec(db,
         "CREATE TABLE t (id TEXT PRIMARY KEY NOT NULL, a, b, c) WITHOUT ROWID;"
         "CREATE TABLE t2 (id TEXT PRIMARY KEY NOT NULL, a, b, c) WITHOUT ROWID;"
         "INSERT INTO t VALUES ('nulls', NULL, NULL, NULL);"
         "INSERT INTO t VALUES ('ints', 0, -9223372036854775808, 9223372036854775807);"
         "INSERT INTO t VALUES ('reals', 0.1, -1.5e-300, 1e300);"
         "INSERT INTO t VALUES ('reals2', 3.0, -0.0, 123456789012345678.0);"
         "INSERT INTO t VALUES ('inf', 9e999, -9e999, 2.5);"
         "INSERT INTO t VALUES ('quotes', 'say \"hi\" \\ back', '''single''', '');"
         "INSERT INTO t VALUES ('ctl', 'a' || char(10) || 'b' || char(13) || char(9) || "
         "  char(1) || char(127) || char(31), 'null', '42');"
         "INSERT INTO t VALUES ('unicode', 'Équité – 日本語 🙂', 'x''00''', '\\u0041');"
         "INSERT INTO t VALUES ('blobs', x'', x'00ff10', zeroblob(3));"
         "INSERT INTO t VALUES ('nul', CAST(x'610062' AS TEXT), CAST(x'ff' AS TEXT), '1.0');"
         "INSERT INTO t VALUES ('', 'empty key', 1.0, -7);");
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT id FROM t", -1, &ids, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t2 VALUES (?, ?, ?, ?)", -1, &ins, NULL),
                     SQLITE_OK);
    while (sqlite3_step(ids) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(ids, 0);
        struct rowtext *r = NULL;

        text_of(&a, db, "t", id);
        if (rowtext_parse(&r, a.data, a.len, t, &e) != SYNC_OK)
            fail_msg("row %s: %s\n%.*s", id, e.msg, (int)a.len, (const char *)a.data);
        assert_int_equal(r->ncol, 4);
        for (int i = 0; i < 4; i++)
            assert_int_equal(rowtext_bind(ins, i + 1, &r->v[i]), SQLITE_OK);
        assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
        sqlite3_reset(ins);
        rowtext_free(r);
        text_of(&b, db, "t2", id);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.data, b.data, a.len);
        n++;
    }
    assert_int_equal(n, 11);
    sqlite3_finalize(ids);
    sqlite3_finalize(ins);
    /* same values and storage classes, compared by SQLite itself */
    exec(db, "CREATE TEMP VIEW d AS SELECT * FROM t EXCEPT SELECT * FROM t2 "
             "UNION ALL SELECT id, typeof(a), typeof(b), typeof(c) FROM t "
             "EXCEPT SELECT id, typeof(a), typeof(b), typeof(c) FROM t2");
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM d", -1, &ids, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(ids), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(ids, 0), 0);
    sqlite3_finalize(ids);
    buf_free(&a);
    buf_free(&b);
    sqlite3_close(db);
}

static void test_values(void **state)
{
    const struct schema_table *t = schema_find(g_s, "t");
    static const char text[] = "id: \"k\"\na: \"\\u0000x\\\"\"\nb: x'0a'\nc: -inf\n";
    struct rowtext *r = NULL;
    struct errctx e = {0};

    (void)state;
    assert_int_equal(rowtext_parse(&r, text, strlen(text), t, &e), SYNC_OK);
    assert_int_equal(r->v[0].type, SQLITE_TEXT);
    assert_int_equal(r->v[1].type, SQLITE_TEXT);
    assert_int_equal(r->v[1].n, 3);
    assert_memory_equal(r->v[1].p, "\0x\"", 3);
    assert_int_equal(r->v[2].type, SQLITE_BLOB);
    assert_int_equal(r->v[2].n, 1);
    assert_int_equal(r->v[2].p[0], '\n');
    assert_int_equal(r->v[3].type, SQLITE_FLOAT);
    assert_true(r->v[3].d < -1e308);
    assert_true(rowtext_val_eq(&r->v[0], &r->v[0]));
    assert_false(rowtext_val_eq(&r->v[0], &r->v[1]));
    rowtext_free(r);
    rowtext_free(NULL);
}

/* Damaged or non-canonical text: refused, with the line named. */
static void test_refused(void **state)
{
    static const char *const bad[] = {
        "",                                                       /* no columns at all */
        "id: \"k\"\na: null\nb: null\n",                          /* a column missing */
        "id: \"k\"\na: null\nb: null\nc: null",                   /* no final newline */
        "id: \"k\"\na: null\nb: null\nc: null\nd: 1\n",           /* one line too many */
        "id: \"k\"\nb: null\na: null\nc: null\n",                 /* columns out of order */
        "id:\"k\"\na: null\nb: null\nc: null\n",                  /* no space after ':' */
        "id: \"k\na: null\nb: null\nc: null\n",                   /* unterminated string */
        "id: \"k\"x\na: null\nb: null\nc: null\n",                /* text after a string */
        "id: \"\\q\"\na: null\nb: null\nc: null\n",               /* unknown escape */
        "id: \"\\u0041\"\na: null\nb: null\nc: null\n",           /* \u of a printable byte */
        "id: \"\\u0100\"\na: null\nb: null\nc: null\n",           /* \u beyond a byte */
        "id: \"a\tb\"\na: null\nb: null\nc: null\n",              /* raw control byte */
        "id: \"k\"\na: 007\nb: null\nc: null\n",                  /* not canonical */
        "id: \"k\"\na: -0\nb: null\nc: null\n",                   /* not canonical */
        "id: \"k\"\na: 99999999999999999999\nb: null\nc: null\n", /* over 64 bits */
        "id: \"k\"\na: 1.50\nb: null\nc: null\n",                 /* not canonical */
        "id: \"k\"\na: 1.\nb: null\nc: null\n",                   /* not canonical */
        "id: \"k\"\na: nan\nb: null\nc: null\n",                  /* never written */
        "id: \"k\"\na: NULL\nb: null\nc: null\n",                 /* not a value */
        "id: \"k\"\na: x'0'\nb: null\nc: null\n",                 /* odd hex */
        "id: \"k\"\na: x'0G'\nb: null\nc: null\n",                /* not hex */
        "id: \"k\"\na: x'AB'\nb: null\nc: null\n",                /* uppercase hex */
        "id: \"k\"\na: x'00\nb: null\nc: null\n",                 /* unterminated blob */
        "id: \"k\"\na: \nb: null\nc: null\n",                     /* empty value */
        "id: \"k\"\na: 1 \nb: null\nc: null\n",                   /* trailing space */
    };
    const struct schema_table *t = schema_find(g_s, "t");

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct rowtext *r = NULL;
        struct errctx e = {0};
        int rc = rowtext_parse(&r, bad[i], strlen(bad[i]), t, &e);
        if (rc != SYNC_EDATA)
            fail_msg("case %zu accepted: %s", i, bad[i]);
        assert_null(r);
        assert_non_null(strstr(e.msg, "row text"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
