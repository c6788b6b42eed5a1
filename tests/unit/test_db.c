/*
 * test_db.c - the statement cache (common/db.h): a statement is handed out
 * again after release, never twice at once, comes back reset with its
 * bindings cleared, and a full cache still works (the extra statements are
 * finalized on release).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "db.h"

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES "
                     "(1, 'one'), (2, 'two')",
                     NULL, NULL, NULL),
        SQLITE_OK);
    return db;
}

static void test_reuse(void **state)
{
    struct stmtcache c;
    sqlite3 *db = open_db();
    sqlite3_stmt *a = NULL, *b = NULL, *again = NULL;

    (void)state;
    stmtcache_init(&c, db);
    assert_int_equal(stmtcache_prepare(&c, "SELECT v FROM t WHERE k = ?", &a), SQLITE_OK);
    sqlite3_bind_int(a, 1, 2);
    assert_int_equal(sqlite3_step(a), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(a, 0), "two");
    /* the same SQL while a is out: another statement */
    assert_int_equal(stmtcache_prepare(&c, "SELECT v FROM t WHERE k = ?", &b), SQLITE_OK);
    assert_ptr_not_equal(a, b);
    stmtcache_release(&c, a);
    stmtcache_release(&c, b);
    /* after release: handed out again, reset, bindings cleared (NULL: no row) */
    assert_int_equal(stmtcache_prepare(&c, "SELECT v FROM t WHERE k = ?", &again), SQLITE_OK);
    assert_true(again == a || again == b);
    assert_int_equal(sqlite3_step(again), SQLITE_DONE);
    stmtcache_release(&c, again);
    assert_int_equal(c.n, 2);
    stmtcache_release(&c, NULL);
    stmtcache_free(&c);
    assert_int_equal(sqlite3_close(db), SQLITE_OK); /* nothing left unfinalized */
}

static void test_errors_and_overflow(void **state)
{
    struct stmtcache c;
    sqlite3 *db = open_db();
    sqlite3_stmt *st = NULL, *held[STMTCACHE_MAX + 3];
    char sql[64];

    (void)state;
    stmtcache_init(&c, db);
    assert_int_equal(stmtcache_prepare(&c, "SELECT nope FROM t", &st), SQLITE_ERROR);
    assert_null(st);
    /* more distinct statements than the cache holds, all out at once */
    for (int i = 0; i < STMTCACHE_MAX + 3; i++) {
        snprintf(sql, sizeof(sql), "SELECT %d FROM t", i);
        assert_int_equal(stmtcache_prepare(&c, sql, &held[i]), SQLITE_OK);
        assert_int_equal(sqlite3_step(held[i]), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(held[i], 0), i);
    }
    assert_int_equal(c.n, STMTCACHE_MAX);
    for (int i = 0; i < STMTCACHE_MAX + 3; i++)
        stmtcache_release(&c, held[i]); /* the last three are finalized */
    stmtcache_free(&c);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_errors_and_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
