/*
 * test_schema.c - the compiled-in schema and the rules schema_load_text()
 * enforces on any schema text.
 *
 * About the fingerprint: it is the SHA-256 of schema_canonical_text(), which
 * holds each table's CREATE TABLE statement exactly as written (SQLite keeps
 * the statement's text in sqlite_schema).  So any edit inside a CREATE TABLE,
 * even whitespace or a comment, changes the fingerprint and hub and sites must
 * be updated together; text outside the statements (comments between them,
 * the order of the tables) does not count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schema.h"

static const struct schema_column *column(const struct schema_table *t, const char *name)
{
    for (int i = 0; i < t->ncol; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return &t->cols[i];
    return NULL;
}

static void test_load_builtin(void **state)
{
    struct schema *s = NULL;
    struct errctx e = {0};
    const struct schema_table *t;

    (void)state;
    assert_int_equal(schema_load(&s, &e), SYNC_OK);
    assert_non_null(s);

    t = schema_find(s, "resource");
    assert_non_null(t);
    assert_int_equal(t->cls, CLASS_SHARED);
    assert_int_equal(t->npk, 1);
    assert_string_equal(t->cols[t->pk[0]].name, "id");
    assert_int_equal(t->site_col, -1);

    t = schema_find(s, "metric_value");
    assert_non_null(t);
    assert_int_equal(t->cls, CLASS_OWNED);
    assert_int_equal(t->npk, 3);
    assert_string_equal(t->cols[t->pk[0]].name, "site_id");
    assert_string_equal(t->cols[t->pk[1]].name, "metric");
    assert_string_equal(t->cols[t->pk[2]].name, "period");
    assert_true(t->site_col >= 0);
    assert_string_equal(t->cols[t->site_col].name, "site_id");
    assert_string_equal(column(t, "value")->type, "REAL");
    assert_int_equal(column(t, "value")->notnull, 0);

    t = schema_find(s, "metric");
    assert_non_null(t);
    assert_int_equal(t->cls, CLASS_HUB);

    t = schema_find(s, "hea");
    assert_non_null(t);
    assert_int_equal(t->cls, CLASS_LOCAL);
    assert_false(schema_class_replicated(t->cls));

    assert_null(schema_find(s, "schema_class"));
    assert_null(schema_find(s, "no_such_table"));
    for (int i = 1; i < s->ntable; i++)
        assert_true(strcmp(s->tables[i - 1].name, s->tables[i].name) < 0);
    schema_free(s);
    schema_free(NULL);
}

static void test_fingerprint_stable(void **state)
{
    struct schema *a = NULL, *b = NULL;
    struct errctx e = {0};

    (void)state;
    assert_int_equal(schema_load(&a, &e), SYNC_OK);
    assert_int_equal(schema_load(&b, &e), SYNC_OK);
    assert_int_equal(strlen(a->fingerprint_hex), 64);
    assert_int_equal(strspn(a->fingerprint_hex, "0123456789abcdef"), 64);
    assert_string_equal(a->fingerprint_hex, b->fingerprint_hex);
    assert_memory_equal(a->fingerprint, b->fingerprint, sizeof(a->fingerprint));
    schema_free(a);
    schema_free(b);
}

static void test_canonical_text(void **state)
{
    struct schema *s = NULL;
    struct errctx e = {0};
    char *text;

    (void)state;
    assert_int_equal(schema_load(&s, &e), SYNC_OK);
    text = schema_canonical_text(s);
    assert_non_null(text);
    assert_non_null(strstr(text, "table resource shared\nCREATE TABLE resource ("));
    assert_non_null(strstr(text, "table metric_value owned\n"));
    assert_non_null(strstr(text, "table hea local\n"));
    free(text);
    schema_free(s);
}

static void test_class_names(void **state)
{
    (void)state;
    assert_string_equal(schema_class_name(CLASS_SHARED), "shared");
    assert_string_equal(schema_class_name(CLASS_OWNED), "owned");
    assert_string_equal(schema_class_name(CLASS_HUB), "hub");
    assert_string_equal(schema_class_name(CLASS_LOCAL), "local");
    assert_true(schema_class_replicated(CLASS_SHARED));
    assert_true(schema_class_replicated(CLASS_OWNED));
    assert_true(schema_class_replicated(CLASS_HUB));
    assert_false(schema_class_replicated(CLASS_LOCAL));
}

/* schema_load_text(sql) must fail with SYNC_ESCHEMA and a message containing want. */
static void expect_schema_error(const char *sql, const char *want)
{
    static struct schema sentinel;
    struct schema *s = &sentinel; /* must be reset to NULL */
    struct errctx e = {0};

    assert_int_equal(schema_load_text(&s, sql, &e), SYNC_ESCHEMA);
    assert_null(s);
    assert_int_equal(e.code, SYNC_ESCHEMA);
    if (strstr(e.msg, want) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", e.msg, want);
}

static void test_errors(void **state)
{
    (void)state;
    expect_schema_error("CREATE TABLE orphan (id TEXT NOT NULL PRIMARY KEY);",
                        "table orphan has no valid class");
    expect_schema_error("CREATE TABLE odd (id TEXT NOT NULL PRIMARY KEY);"
                        "INSERT INTO schema_class VALUES ('odd', 'weird');",
                        "table odd has no valid class (got weird)");
    expect_schema_error("CREATE TABLE real_one (id TEXT NOT NULL PRIMARY KEY);"
                        "INSERT INTO schema_class VALUES ('real_one', 'shared');"
                        "INSERT INTO schema_class VALUES ('ghost', 'shared');",
                        "unknown table ghost");
    expect_schema_error("CREATE TABLE nokey (a TEXT, b TEXT);"
                        "INSERT INTO schema_class VALUES ('nokey', 'hub');",
                        "replicated table nokey has no PRIMARY KEY");
    expect_schema_error("CREATE TABLE mine (id TEXT NOT NULL PRIMARY KEY, v TEXT);"
                        "INSERT INTO schema_class VALUES ('mine', 'owned');",
                        "owned table mine needs a site_id column in its primary key");
    /* site_id present but outside the key: two sites could write one row */
    expect_schema_error("CREATE TABLE mine (id TEXT NOT NULL PRIMARY KEY, site_id TEXT);"
                        "INSERT INTO schema_class VALUES ('mine', 'owned');",
                        "owned table mine needs a site_id column in its primary key");
    expect_schema_error("CREATE TABLE loose (id TEXT PRIMARY KEY, v TEXT);"
                        "INSERT INTO schema_class VALUES ('loose', 'shared');",
                        "key column loose.id");
    expect_schema_error("CREATE TABLE half (a TEXT NOT NULL, b TEXT, PRIMARY KEY (a, b));"
                        "INSERT INTO schema_class VALUES ('half', 'owned');",
                        "key column half.b");
    expect_schema_error("CREATE TABLE broken (", "schema: ");
    expect_schema_error("-- nothing here\n", "no tables");
}

/* Local tables need neither a key nor NOT NULL. */
static void test_local_rules(void **state)
{
    struct schema *s = NULL;
    struct errctx e = {0};

    (void)state;
    assert_int_equal(schema_load_text(&s,
                                      "CREATE TABLE notes (body TEXT);"
                                      "INSERT INTO schema_class VALUES ('notes', 'local');",
                                      &e),
                     SYNC_OK);
    assert_int_equal(schema_find(s, "notes")->npk, 0);
    schema_free(s);
}

static void fingerprint_of(const char *sql, char hex[65])
{
    struct schema *s = NULL;
    struct errctx e = {0};

    if (schema_load_text(&s, sql, &e) != SYNC_OK)
        fail_msg("schema_load_text: %s", e.msg);
    memcpy(hex, s->fingerprint_hex, 65);
    schema_free(s);
}

/* The fingerprint hashes the CREATE TABLE text as written: a whitespace-only
 * edit inside it changes the fingerprint; comments and order between the
 * statements do not. */
static void test_fingerprint_hashes_sql_text(void **state)
{
    static const char base[] = "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY, v TEXT);"
                               "INSERT INTO schema_class VALUES ('a', 'shared');"
                               "CREATE TABLE b (id INTEGER PRIMARY KEY);"
                               "INSERT INTO schema_class VALUES ('b', 'local');";
    static const char spaced[] = "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY,  v TEXT);"
                                 "INSERT INTO schema_class VALUES ('a', 'shared');"
                                 "CREATE TABLE b (id INTEGER PRIMARY KEY);"
                                 "INSERT INTO schema_class VALUES ('b', 'local');";
    static const char commented[] = "-- a comment between statements\n"
                                    "CREATE TABLE b (id INTEGER PRIMARY KEY);\n\n"
                                    "INSERT INTO schema_class VALUES ('b', 'local');"
                                    "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY, v TEXT);"
                                    "INSERT INTO schema_class VALUES ('a', 'shared');";
    static const char reclassed[] = "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY, v TEXT);"
                                    "INSERT INTO schema_class VALUES ('a', 'hub');"
                                    "CREATE TABLE b (id INTEGER PRIMARY KEY);"
                                    "INSERT INTO schema_class VALUES ('b', 'local');";
    char fa[65], fb[65], fc[65], fd[65];

    (void)state;
    fingerprint_of(base, fa);
    fingerprint_of(spaced, fb);
    fingerprint_of(commented, fc);
    fingerprint_of(reclassed, fd);
    assert_string_not_equal(fa, fb);
    assert_string_equal(fa, fc);
    assert_string_not_equal(fa, fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_builtin),
        cmocka_unit_test(test_fingerprint_stable),
        cmocka_unit_test(test_canonical_text),
        cmocka_unit_test(test_class_names),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_local_rules),
        cmocka_unit_test(test_fingerprint_hashes_sql_text),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
