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

/* A cache kept for a connection's life: texts that vary with the data go
 * through it one after another; the statements used all along stay cached
 * (least recently used goes first) and every text still gives its rows. */
static void test_lru_keeps_hot_statements(void **state)
{
    struct stmtcache c;
    sqlite3 *db = open_db();
    sqlite3_stmt *st = NULL, *hot = NULL, *first_hot = NULL;
    char sql[64];

    (void)state;
    stmtcache_init(&c, db);
    for (int i = 0; i < 10 * STMTCACHE_MAX; i++) {
        assert_int_equal(stmtcache_prepare(&c, "SELECT v FROM t WHERE k = ?", &hot), SQLITE_OK);
        if (first_hot == NULL)
            first_hot = hot;
        assert_ptr_equal(hot, first_hot); /* never evicted: used every round */
        sqlite3_bind_int(hot, 1, 1);
        assert_int_equal(sqlite3_step(hot), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(hot, 0), "one");
        stmtcache_release(&c, hot);
        snprintf(sql, sizeof(sql), "SELECT %d, v FROM t WHERE k = 2", i);
        assert_int_equal(stmtcache_prepare(&c, sql, &st), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), i);
        assert_string_equal((const char *)sqlite3_column_text(st, 1), "two");
        stmtcache_release(&c, st);
        assert_true(c.n <= STMTCACHE_MAX);
    }
    assert_int_equal(c.n, STMTCACHE_MAX);
    /* the latest variable text is still cached: the same statement again */
    assert_int_equal(stmtcache_prepare(&c, sql, &hot), SQLITE_OK);
    assert_ptr_equal(hot, st);
    stmtcache_release(&c, hot);
    stmtcache_free(&c);
    assert_int_equal(sqlite3_close(db), SQLITE_OK); /* evicted ones were finalized */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_errors_and_overflow),
        cmocka_unit_test(test_lru_keeps_hot_statements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
