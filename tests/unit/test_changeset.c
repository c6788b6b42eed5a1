/*
 * test_changeset.c - the local changeset built from dirty keys, strict apply
 * to base copies, touched keys, and the hub's class check of a push.
 *
 * Every test runs against a real replica (replica_create() on a file in a
 * fresh mkdtemp directory) with the compiled-in schema, so triggers, base
 * copies and dirty-key tables are the product's own.  Rows are edited with
 * plain SQL, as a coordinator using the sqlite3 shell would.  Changesets that
 * a well-behaved client never produces (a local table, a hub table, a wrong
 * shape) are made with a sqlite3session on a scratch in-memory database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bundle.h"
#include "changeset.h"
#include "db.h"
#include "replica.h"
#include "schema.h"

#define SITE "site-a"
#define OTHER_SITE "site-b"

static struct schema *g_s; /* the compiled-in schema, loaded once per group */

struct fx {
    char dir[64];
    char path[128];
    sqlite3 *db;
};

/* ---- helpers ------------------------------------------------------------ */

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        print_error("SQL failed: %s\n  in: %s\n", err ? err : sqlite3_errmsg(db), sql);
        sqlite3_free(err);
        fail();
    }
}

static long long q_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long v;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
        fail();
    }
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Rows in one table and not in the other, both ways: 0 when equal as sets. */
static long long diff_rows(sqlite3 *db, const char *a, const char *b)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM (SELECT * FROM \"%s\" EXCEPT SELECT * FROM \"%s\")) + "
             "(SELECT count(*) FROM (SELECT * FROM \"%s\" EXCEPT SELECT * FROM \"%s\"))",
             a, b, b, a);
    return q_int(db, sql);
}

static int fx_make_replica(struct fx *f, const char *name)
{
    struct bundle b = {0};
    struct errctx e = {0};

    snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, name);
    snprintf(b.site_id, sizeof(b.site_id), "%s", SITE);
    snprintf(b.hub_address, sizeof(b.hub_address), "127.0.0.1:1");
    snprintf(b.schema, sizeof(b.schema), "%s", g_s->fingerprint_hex);
    b.ca_cert = (char *)"ca";
    b.site_cert = (char *)"cert";
    b.site_key = (char *)"key";
    if (replica_create(&f->db, f->path, g_s, &b, NULL, &e) != SYNC_OK) {
        print_error("replica_create: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static void remove_db_files(const char *path)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        (void)unlink(p);
    }
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_changeset.XXXXXX");
    if (mkdtemp(f->dir) == NULL || fx_make_replica(f, "replica.db") != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    replica_close(f->db);
    remove_db_files(f->path);
    if (rmdir(f->dir) != 0)
        return -1;
    free(f);
    return 0;
}

static int group_setup(void **state)
{
    struct errctx e = {0};
    (void)state;
    if (schema_load(&g_s, &e) != SYNC_OK) {
        print_error("schema_load: %s\n", e.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    schema_free(g_s);
    g_s = NULL;
    return 0;
}

/* n resources r-1..r-n in T and in base, as after a sync: no dirty keys. */
static void seed_resources(sqlite3 *db, int n)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "INSERT INTO _empact_syncing VALUES (1);"
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < %d) "
             "INSERT INTO resource (id, title, url, summary, language, oht_block) "
             "SELECT 'r-' || i, 'title ' || i, 'https://example.org/' || i, 'summary ' || i, "
             "'en', 1 + i %% 8 FROM c;"
             "INSERT INTO " BASE_PREFIX "resource SELECT * FROM resource;"
             "DELETE FROM _empact_syncing;",
             n);
    exec(db, sql);
}

/* Metric values of this site and of another one, in T and base. */
static void seed_metric_values(sqlite3 *db)
{
    exec(db, "INSERT INTO _empact_syncing VALUES (1);"
             "INSERT INTO metric_value VALUES ('" SITE "', 'heas', '2026-Q1', 3, 0, NULL),"
             " ('" SITE "', 'heas', '2026-Q2', 4, 0, NULL),"
             " ('" OTHER_SITE "', 'heas', '2026-Q1', 7, 0, NULL);"
             "INSERT INTO " BASE_PREFIX "metric_value SELECT * FROM metric_value;"
             "DELETE FROM _empact_syncing;");
}

static void build(struct buf *out, sqlite3 *db)
{
    struct errctx e = {0};
    out->len = 0;
    if (changeset_build_local(out, db, g_s, &e) != SYNC_OK) {
        print_error("changeset_build_local: %s\n", e.msg);
        fail();
    }
}

static int count(const struct buf *cs)
{
    struct errctx e = {0};
    int n = -1;
    if (changeset_count(cs->data, cs->len, &n, &e) != SYNC_OK) {
        print_error("changeset_count: %s\n", e.msg);
        fail();
    }
    return n;
}

struct change {
    char table[64];
    int op;
    char key[128]; /* key values as text, joined by '|' */
};

/* Walks cs with the SQLite iterator; returns the number of changes. */
static int collect(const struct buf *cs, struct change *out, int max)
{
    sqlite3_changeset_iter *it = NULL;
    int n = 0, step;

    if (cs->len == 0)
        return 0;
    assert_int_equal(sqlite3changeset_start(&it, (int)cs->len, cs->data), SQLITE_OK);
    while ((step = sqlite3changeset_next(it)) == SQLITE_ROW) {
        const char *tab;
        int ncol, op, ind;
        const struct schema_table *t;
        struct change *c = &out[n];

        assert_true(n < max);
        assert_int_equal(sqlite3changeset_op(it, &tab, &ncol, &op, &ind), SQLITE_OK);
        snprintf(c->table, sizeof(c->table), "%s", tab);
        c->op = op;
        c->key[0] = '\0';
        t = schema_find(g_s, tab);
        for (int k = 0; t != NULL && k < t->npk; k++) {
            sqlite3_value *v = NULL;
            if (op == SQLITE_INSERT)
                assert_int_equal(sqlite3changeset_new(it, t->pk[k], &v), SQLITE_OK);
            else
                assert_int_equal(sqlite3changeset_old(it, t->pk[k], &v), SQLITE_OK);
            assert_non_null(v);
            size_t len = strlen(c->key);
            snprintf(c->key + len, sizeof(c->key) - len, "%s%s", k ? "|" : "",
                     (const char *)sqlite3_value_text(v));
        }
        n++;
    }
    assert_int_equal(step, SQLITE_DONE);
    assert_int_equal(sqlite3changeset_finalize(it), SQLITE_OK);
    return n;
}

/* The op of the change to table/key, or -1 when there is none. */
static int op_of(const struct change *c, int n, const char *table, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(c[i].table, table) == 0 && strcmp(c[i].key, key) == 0)
            return c[i].op;
    return -1;
}

/* A changeset made by a session on a scratch in-memory database: setup runs
 * before the session starts, edit while it records. */
static void scratch_cs(struct buf *out, const char *setup, const char *edit)
{
    sqlite3 *db = NULL;
    sqlite3_session *sess = NULL;
    void *p = NULL;
    int n = 0;
    struct errctx e = {0};

    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    exec(db, setup);
    assert_int_equal(sqlite3session_create(db, "main", &sess), SQLITE_OK);
    assert_int_equal(sqlite3session_attach(sess, NULL), SQLITE_OK);
    exec(db, edit);
    assert_int_equal(sqlite3session_changeset(sess, &n, &p), SQLITE_OK);
    assert_true(n > 0);
    out->len = 0;
    assert_int_equal(buf_put(out, p, (size_t)n, &e), SYNC_OK);
    sqlite3_free(p);
    sqlite3session_delete(sess);
    sqlite3_close(db);
}

static const char *ddl(const char *table)
{
    const struct schema_table *t = schema_find(g_s, table);
    assert_non_null(t);
    return t->create_sql;
}

static int memfind(const struct buf *b, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; b->len >= n && i <= b->len - n; i++)
        if (memcmp(b->data + i, needle, n) == 0)
            return 1;
    return 0;
}

/* ---- building ------------------------------------------------------------ */

static void test_build_empty(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};

    build(&cs, f->db);
    assert_int_equal(cs.len, 0);
    assert_int_equal(count(&cs), 0);

    /* Synced rows with no edits since: still nothing to send. */
    seed_resources(f->db, 10);
    seed_metric_values(f->db);
    build(&cs, f->db);
    assert_int_equal(cs.len, 0);
    buf_free(&cs);
}

static void test_build_insert_update_delete(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct change c[8];
    sqlite3_changeset_iter *it = NULL;
    int n, seen_update = 0;

    seed_resources(f->db, 5);
    exec(f->db, "INSERT INTO resource (id, title) VALUES ('r-new', 'A new guide');"
                "UPDATE resource SET title = 'Renamed' WHERE id = 'r-1';"
                "DELETE FROM resource WHERE id = 'r-2';");
    build(&cs, f->db);
    assert_int_equal(count(&cs), 3);
    n = collect(&cs, c, 8);
    assert_int_equal(n, 3);
    assert_int_equal(op_of(c, n, "resource", "r-new"), SQLITE_INSERT);
    assert_int_equal(op_of(c, n, "resource", "r-1"), SQLITE_UPDATE);
    assert_int_equal(op_of(c, n, "resource", "r-2"), SQLITE_DELETE);

    /* The update carries the old and new title, and no unchanged column. */
    assert_int_equal(sqlite3changeset_start(&it, (int)cs.len, cs.data), SQLITE_OK);
    while (sqlite3changeset_next(it) == SQLITE_ROW) {
        const struct schema_table *t = schema_find(g_s, "resource");
        const char *tab;
        int ncol, op, ind;
        assert_int_equal(sqlite3changeset_op(it, &tab, &ncol, &op, &ind), SQLITE_OK);
        assert_int_equal(ncol, t->ncol);
        if (op != SQLITE_UPDATE)
            continue;
        seen_update = 1;
        for (int i = 0; i < ncol; i++) {
            sqlite3_value *ov = NULL, *nv = NULL;
            assert_int_equal(sqlite3changeset_new(it, i, &nv), SQLITE_OK);
            assert_int_equal(sqlite3changeset_old(it, i, &ov), SQLITE_OK);
            if (strcmp(t->cols[i].name, "title") == 0) {
                assert_string_equal(sqlite3_value_text(ov), "title 1");
                assert_string_equal(sqlite3_value_text(nv), "Renamed");
            } else if (strcmp(t->cols[i].name, "id") == 0) {
                assert_string_equal(sqlite3_value_text(ov), "r-1");
            } else {
                assert_null(nv);
            }
        }
    }
    assert_int_equal(sqlite3changeset_finalize(it), SQLITE_OK);
    assert_true(seen_update);

    /* Owned rows of this site are changes too. */
    seed_metric_values(f->db);
    exec(f->db,
         "UPDATE metric_value SET value = 5 WHERE site_id = '" SITE "' AND period = '2026-Q1'");
    build(&cs, f->db);
    n = collect(&cs, c, 8);
    assert_int_equal(n, 4);
    assert_int_equal(op_of(c, n, "metric_value", SITE "|heas|2026-Q1"), SQLITE_UPDATE);
    buf_free(&cs);
}

static void test_build_undone_edit(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};

    seed_resources(f->db, 5);
    exec(f->db, "UPDATE resource SET title = 'Draft' WHERE id = 'r-3';"
                "UPDATE resource SET title = 'title 3' WHERE id = 'r-3';"
                "INSERT INTO resource (id, title) VALUES ('r-tmp', 'gone again');"
                "DELETE FROM resource WHERE id = 'r-tmp';");
    /* The keys are dirty, but nothing differs from base. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " DIRTY_PREFIX "resource"), 2);
    build(&cs, f->db);
    assert_int_equal(cs.len, 0);
    assert_int_equal(count(&cs), 0);

    /* A delete then re-insert of the same row is no change either. */
    exec(f->db, "DELETE FROM resource WHERE id = 'r-4';"
                "INSERT INTO resource SELECT * FROM " BASE_PREFIX "resource WHERE id = 'r-4';");
    build(&cs, f->db);
    assert_int_equal(cs.len, 0);
    buf_free(&cs);
}

/* Privacy guard 1: local tables never reach the changeset, whatever happens
 * in them, and no byte of their contents does. */
static void test_build_never_reads_local(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct change c[8];
    int n;

    exec(f->db,
         "INSERT INTO impact_partner VALUES (1, 'CANARY-ORG-51ab', 'hospital', 'x', 'n');"
         "INSERT INTO hea (id, title, opened_on, notes) VALUES "
         " (1, 'CANARY-ENG-51ab', '2026-01-01', 'CANARY-NOTE-51ab');"
         "INSERT INTO member VALUES (1, 'CANARY-MEMBER-51ab', 'c', 'n');"
         "INSERT INTO compensation VALUES (1, 1, 1, 5000, '2026-01-01', 'CANARY-PAY-51ab');");
    build(&cs, f->db);
    assert_int_equal(cs.len, 0);

    exec(f->db, "UPDATE member SET notes = 'CANARY-MEMBER2-51ab';"
                "INSERT INTO resource (id, title) VALUES ('r-1', 'public');"
                "DELETE FROM compensation;");
    build(&cs, f->db);
    n = collect(&cs, c, 8);
    assert_int_equal(n, 1);
    for (int i = 0; i < n; i++) {
        const struct schema_table *t = schema_find(g_s, c[i].table);
        assert_non_null(t);
        assert_true(t->cls == CLASS_SHARED || t->cls == CLASS_OWNED);
    }
    assert_false(memfind(&cs, "CANARY"));
    assert_true(memfind(&cs, "public"));
    buf_free(&cs);
}

/* The cost follows the dirty keys: 5000 synced rows and one edit give one
 * change; a row changed behind the triggers' back is not even looked at. */
static void test_build_follows_dirty_keys(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct change c[4];
    int n;

    seed_resources(f->db, 5000);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX "resource"), 5000);
    exec(f->db, "UPDATE resource SET summary = 'edited' WHERE id = 'r-4321'");
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " DIRTY_PREFIX "resource"), 1);
    build(&cs, f->db);
    n = collect(&cs, c, 4);
    assert_int_equal(n, 1);
    assert_int_equal(op_of(c, n, "resource", "r-4321"), SQLITE_UPDATE);

    /* Written while the sync flag is up: no dirty key, so no change (a
     * whole-table diff would have found it). */
    exec(f->db, "INSERT INTO _empact_syncing VALUES (1);"
                "UPDATE resource SET summary = 'unseen' WHERE id = 'r-17';"
                "DELETE FROM _empact_syncing;");
    build(&cs, f->db);
    assert_int_equal(count(&cs), 1);
    buf_free(&cs);
}

/* ---- strict apply ---------------------------------------------------------- */

static void test_apply_to_base(void **state)
{
    struct fx *f = *state;
    struct fx g = {0};
    struct buf cs = {0};
    struct errctx e = {0};

    seed_resources(f->db, 20);
    seed_metric_values(f->db);
    exec(f->db, "INSERT INTO resource (id, title, oht_block) VALUES ('r-new', 'New', 3);"
                "UPDATE resource SET title = 'T', url = NULL, oht_block = 8 WHERE id = 'r-1';"
                "DELETE FROM resource WHERE id = 'r-2';"
                "INSERT INTO metric_value VALUES ('" SITE "', 'partners', '2026-Q1', 1.5, 0, 'x');"
                "UPDATE metric_value SET value = NULL, suppressed = 1 WHERE period = '2026-Q2';"
                "DELETE FROM metric_value WHERE site_id = '" SITE "' AND period = '2026-Q1' "
                " AND metric = 'heas';");
    assert_true(diff_rows(f->db, "resource", BASE_PREFIX "resource") > 0);
    build(&cs, f->db);
    assert_int_equal(count(&cs), 6);

    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e), SYNC_OK);
    assert_int_equal(diff_rows(f->db, "resource", BASE_PREFIX "resource"), 0);
    assert_int_equal(diff_rows(f->db, "metric_value", BASE_PREFIX "metric_value"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX "resource"), 20);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX "metric_value"), 3);

    /* Base now equals T: the dirty keys remain but there is nothing to send. */
    {
        struct buf again = {0};
        build(&again, f->db);
        assert_int_equal(again.len, 0);
        buf_free(&again);
    }

    /* Applying the same changeset twice is divergence: the insert finds its row. */
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_EDATA);

    /* The same changeset applies to the tables themselves (prefix "") of a
     * replica that held the same synced rows. */
    memcpy(g.dir, f->dir, sizeof(g.dir));
    assert_int_equal(fx_make_replica(&g, "second.db"), 0);
    seed_resources(g.db, 20);
    seed_metric_values(g.db);
    assert_int_equal(changeset_apply_strict(g.db, g_s, cs.data, cs.len, "", &e), SYNC_OK);
    {
        char sql[256];
        snprintf(sql, sizeof(sql), "ATTACH DATABASE '%s' AS other", f->path);
        exec(g.db, sql);
        assert_int_equal(q_int(g.db, "SELECT count(*) FROM (SELECT * FROM main.resource EXCEPT "
                                     "SELECT * FROM other.resource)"),
                         0);
        assert_int_equal(q_int(g.db, "SELECT count(*) FROM (SELECT * FROM other.resource EXCEPT "
                                     "SELECT * FROM main.resource)"),
                         0);
        assert_int_equal(q_int(g.db, "SELECT count(*) FROM (SELECT * FROM main.metric_value "
                                     "EXCEPT SELECT * FROM other.metric_value)"),
                         0);
        exec(g.db, "DETACH other");
    }
    replica_close(g.db);
    remove_db_files(g.path);
    buf_free(&cs);
}

/* A hub table change (a canonical changeset from the hub) applies to base. */
static void test_apply_hub_table(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct errctx e = {0};

    scratch_cs(&cs, ddl("metric"),
               "INSERT INTO metric VALUES ('heas', 'HEAs completed', 'count', NULL, 5)");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e), SYNC_OK);
    assert_int_equal(
        q_int(f->db, "SELECT suppress_below FROM " BASE_PREFIX "metric WHERE code = 'heas'"), 5);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM metric"), 0);
    buf_free(&cs);
}

static void test_apply_insert_exists(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct errctx e = {0};

    seed_resources(f->db, 3);
    exec(f->db, "INSERT INTO resource (id, title) VALUES ('r-x', 'mine')");
    build(&cs, f->db);
    exec(f->db, "INSERT INTO " BASE_PREFIX "resource (id, title) VALUES ('r-x', 'theirs')");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_EDATA);
    assert_int_equal(e.code, SYNC_EDATA);
    assert_non_null(strstr(e.msg, "resource"));
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX
                                  "resource WHERE id = 'r-x' AND title = 'theirs'"),
                     1);
    buf_free(&cs);
}

static void test_apply_update_mismatch(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct errctx e = {0};

    seed_resources(f->db, 3);
    exec(f->db, "UPDATE resource SET title = 'B' WHERE id = 'r-1'");
    build(&cs, f->db);
    /* The old value the update names is no longer in base. */
    exec(f->db, "UPDATE " BASE_PREFIX "resource SET title = 'Z' WHERE id = 'r-1'");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_EDATA);
    assert_non_null(strstr(e.msg, "resource"));
    assert_int_equal(
        q_int(f->db, "SELECT title = 'Z' FROM " BASE_PREFIX "resource WHERE id = 'r-1'"), 1);

    /* An update of a row base does not have at all. */
    exec(f->db, "DELETE FROM " BASE_PREFIX "resource WHERE id = 'r-1'");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_EDATA);

    /* Restored: it applies. */
    exec(f->db, "INSERT INTO " BASE_PREFIX "resource SELECT * FROM resource WHERE id = 'r-1';"
                "UPDATE " BASE_PREFIX "resource SET title = 'title 1' WHERE id = 'r-1'");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e), SYNC_OK);
    assert_int_equal(diff_rows(f->db, "resource", BASE_PREFIX "resource"), 0);
    buf_free(&cs);
}

static void test_apply_delete_missing(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct errctx e = {0};

    seed_resources(f->db, 3);
    exec(f->db, "DELETE FROM resource WHERE id = 'r-2'");
    build(&cs, f->db);
    exec(f->db, "DELETE FROM " BASE_PREFIX "resource WHERE id = 'r-2'");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_EDATA);
    assert_non_null(strstr(e.msg, "resource"));

    /* A delete names every old value: a row that differs in any column is
     * not the row the hub deleted. */
    exec(f->db, "INSERT INTO " BASE_PREFIX "resource (id, title, url, summary, language, "
                "oht_block) VALUES ('r-2', 'title 2', 'https://example.org/2', 'DIFFERENT', "
                "'en', 3)");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_EDATA);
    exec(f->db, "UPDATE " BASE_PREFIX "resource SET summary = 'summary 2' WHERE id = 'r-2'");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e), SYNC_OK);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX "resource"), 2);
    buf_free(&cs);
}

static void test_apply_malformed(void **state)
{
    struct fx *f = *state;
    static const char garbage[] = "this is not a changeset, only some bytes \x01\x02\xff";
    struct buf cs = {0};
    struct errctx e = {0};
    int n = 0;

    assert_int_equal(
        changeset_apply_strict(f->db, g_s, garbage, sizeof(garbage) - 1, BASE_PREFIX, &e),
        SYNC_EPROTO);
    assert_int_equal(changeset_count(garbage, sizeof(garbage) - 1, &n, &e), SYNC_EPROTO);

    /* A real changeset cut in the middle of its only record. */
    seed_resources(f->db, 2);
    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r-9', 'nine', "
                "'a long enough summary to cut through')");
    build(&cs, f->db);
    assert_true(cs.len > 20);
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len - 10, BASE_PREFIX, &e),
                     SYNC_EPROTO);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX "resource"), 2);
    assert_int_equal(changeset_count(cs.data, cs.len - 10, &n, &e), SYNC_EPROTO);

    /* Empty is a valid, empty changeset. */
    assert_int_equal(changeset_apply_strict(f->db, g_s, NULL, 0, BASE_PREFIX, &e), SYNC_OK);
    buf_free(&cs);
}

static void test_apply_refuses_local_table(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct errctx e = {0};

    scratch_cs(&cs, ddl("member"),
               "INSERT INTO member VALUES (7, 'CANARY-MEMBER-77', 'contact', 'notes')");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_ESCHEMA);
    assert_non_null(strstr(e.msg, "member"));
    assert_null(strstr(e.msg, "CANARY"));
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, "", &e), SYNC_ESCHEMA);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM member"), 0);

    /* An unknown table and a known table of the wrong shape are refused too. */
    scratch_cs(&cs, "CREATE TABLE bogus (k TEXT PRIMARY KEY, v TEXT)",
               "INSERT INTO bogus VALUES ('a', 'b')");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_ESCHEMA);
    scratch_cs(&cs, "CREATE TABLE resource (id TEXT PRIMARY KEY, title TEXT)",
               "INSERT INTO resource VALUES ('r-1', 'short')");
    assert_int_equal(changeset_apply_strict(f->db, g_s, cs.data, cs.len, BASE_PREFIX, &e),
                     SYNC_ESCHEMA);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM " BASE_PREFIX "resource"), 0);
    buf_free(&cs);
}

/* ---- touched keys ------------------------------------------------------------ */

static void test_touched(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0}, loc = {0};
    struct errctx e = {0};

    seed_resources(f->db, 5);
    seed_metric_values(f->db);
    exec(f->db,
         "INSERT INTO resource (id, title) VALUES ('r-new', 'x');"
         "UPDATE resource SET title = 'y' WHERE id = 'r-1';"
         "DELETE FROM resource WHERE id = 'r-2';"
         "UPDATE metric_value SET value = 9 WHERE site_id = '" SITE "' AND period = '2026-Q2';");
    build(&cs, f->db);

    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    /* One temp table per replicated table, none for local tables. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp.sqlite_schema WHERE type = 'table' "
                                  "AND name LIKE '" TOUCHED_PREFIX "%'"),
                     4);
    assert_int_equal(q_int(f->db,
                           "SELECT count(*) FROM temp.sqlite_schema WHERE name = '" TOUCHED_PREFIX
                           "member'"),
                     0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"), 0);

    assert_int_equal(changeset_touched_add(f->db, NULL, g_s, cs.data, cs.len, &e), SYNC_OK);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"), 3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX
                                  "resource WHERE id IN ('r-new', 'r-1', 'r-2')"),
                     3);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric_value"), 1);
    assert_int_equal(q_int(f->db,
                           "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric_value "
                           "WHERE site_id = '" SITE "' AND metric = 'heas' AND period = '2026-Q2'"),
                     1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric"), 0);

    /* Adding again is idempotent; a hub changeset adds its keys. */
    assert_int_equal(changeset_touched_add(f->db, NULL, g_s, cs.data, cs.len, &e), SYNC_OK);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"), 3);
    scratch_cs(&loc, ddl("metric"), "INSERT INTO metric VALUES ('heas', 'HEAs', 'count', NULL, 0)");
    assert_int_equal(changeset_touched_add(f->db, NULL, g_s, loc.data, loc.len, &e), SYNC_OK);
    assert_int_equal(
        q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric WHERE code = 'heas'"), 1);

    /* A local table is refused and records nothing. */
    scratch_cs(&loc, ddl("member"), "INSERT INTO member VALUES (1, 'n', 'c', 'x')");
    assert_int_equal(changeset_touched_add(f->db, NULL, g_s, loc.data, loc.len, &e), SYNC_ESCHEMA);
    assert_int_equal(changeset_touched_add(f->db, NULL, g_s, "junk", 4, &e), SYNC_EPROTO);

    /* Reset empties every table. */
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric_value"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric"), 0);

    /* With a statement cache kept across rounds (the hub's writer), each
     * round starts empty and records its own keys. */
    struct stmtcache sc;
    stmtcache_init(&sc, f->db);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(changeset_touched_reset(f->db, &sc, g_s, &e), SYNC_OK);
        assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"), 0);
        assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric"), 0);
        if (round == 1) {
            assert_int_equal(changeset_touched_add(f->db, &sc, g_s, cs.data, cs.len, &e), SYNC_OK);
            assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"),
                             3);
        } else {
            scratch_cs(&loc, ddl("metric"),
                       "INSERT INTO metric VALUES ('heas', 'HEAs', 'count', NULL, 0)");
            assert_int_equal(changeset_touched_add(f->db, &sc, g_s, loc.data, loc.len, &e),
                             SYNC_OK);
            assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "resource"),
                             0);
            assert_int_equal(q_int(f->db, "SELECT count(*) FROM temp." TOUCHED_PREFIX "metric"), 1);
        }
    }
    /* nothing is left running: the connection can close */
    for (sqlite3_stmt *st = sqlite3_next_stmt(f->db, NULL); st; st = sqlite3_next_stmt(f->db, st))
        assert_false(sqlite3_stmt_busy(st));
    assert_true(sc.n > 0);
    stmtcache_free(&sc);
    assert_null(sqlite3_next_stmt(f->db, NULL));
    buf_free(&cs);
    buf_free(&loc);
}

/* ---- the hub's check of a push ------------------------------------------------ */

/* The push must be refused, the message must name table and must not carry
 * any of the row's values. */
static void expect_refused(const struct buf *cs, const char *table, const char *secret)
{
    struct errctx e = {0};
    int n = -1;

    assert_int_equal(changeset_check_push(g_s, cs->data, cs->len, SITE, &n, &e), SYNC_EREFUSED);
    assert_int_equal(e.code, SYNC_EREFUSED);
    if (strstr(e.msg, table) == NULL)
        fail_msg("message does not name table %s: %s", table, e.msg);
    if (strstr(e.msg, secret) != NULL)
        fail_msg("message leaks a row value (%s): %s", secret, e.msg);
}

static void test_check_push_accepts(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    struct errctx e = {0};
    int n = -1;

    seed_resources(f->db, 5);
    seed_metric_values(f->db);
    exec(f->db,
         "INSERT INTO resource (id, title) VALUES ('r-new', 'x');"
         "UPDATE resource SET title = 'y' WHERE id = 'r-1';"
         "DELETE FROM resource WHERE id = 'r-2';"
         "INSERT INTO metric_value VALUES ('" SITE "', 'm2', '2026-Q3', 1, 0, NULL);"
         "UPDATE metric_value SET value = 9 WHERE site_id = '" SITE "' AND period = '2026-Q2';"
         "DELETE FROM metric_value WHERE site_id = '" SITE "' AND period = '2026-Q1';");
    build(&cs, f->db);
    assert_int_equal(changeset_check_push(g_s, cs.data, cs.len, SITE, &n, &e), SYNC_OK);
    assert_int_equal(n, 6);

    /* The same owned rows pushed by another site are refused. */
    assert_int_equal(changeset_check_push(g_s, cs.data, cs.len, OTHER_SITE, &n, &e), SYNC_EREFUSED);
    assert_non_null(strstr(e.msg, "metric_value"));

    assert_int_equal(changeset_check_push(g_s, NULL, 0, SITE, &n, &e), SYNC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(changeset_check_push(g_s, "garbage!", 8, SITE, &n, &e), SYNC_EPROTO);
    buf_free(&cs);
}

static void test_check_push_refuses_classes(void **state)
{
    struct buf cs = {0};
    char setup[2048];

    (void)state;
    scratch_cs(&cs, ddl("member"),
               "INSERT INTO member VALUES (1, 'CANARY-MEMBER-93', 'CANARY-CONTACT', 'n')");
    expect_refused(&cs, "member", "CANARY");
    scratch_cs(&cs, ddl("hea"),
               "INSERT INTO hea (id, title, opened_on) VALUES (1, 'CANARY-ENG-93', '2026-01-01')");
    expect_refused(&cs, "hea", "CANARY");

    /* Updates and deletes of a local table, not only inserts. */
    snprintf(setup, sizeof(setup), "%s; INSERT INTO member VALUES (1, 'CANARY-M', 'c', 'n');",
             ddl("member"));
    scratch_cs(&cs, setup, "UPDATE member SET notes = 'CANARY-NEW' WHERE id = 1");
    expect_refused(&cs, "member", "CANARY");
    scratch_cs(&cs, setup, "DELETE FROM member");
    expect_refused(&cs, "member", "CANARY");

    scratch_cs(&cs, ddl("metric"),
               "INSERT INTO metric VALUES ('CANARY-HUB-93', 'n', 'count', NULL, 5)");
    expect_refused(&cs, "metric", "CANARY");
    scratch_cs(&cs, ddl("site"), "INSERT INTO site VALUES ('CANARY-SITE', 'n', NULL, NULL)");
    expect_refused(&cs, "site", "CANARY");

    scratch_cs(&cs, "CREATE TABLE no_such_table (k TEXT PRIMARY KEY, v TEXT)",
               "INSERT INTO no_such_table VALUES ('CANARY-K', 'CANARY-V')");
    expect_refused(&cs, "no_such_table", "CANARY");
    buf_free(&cs);
}

static void test_check_push_refuses_other_sites_rows(void **state)
{
    struct buf cs = {0};
    char setup[2048];
    struct errctx e = {0};
    int n = -1;

    (void)state;
    /* Insert of another site's row. */
    scratch_cs(&cs, ddl("metric_value"),
               "INSERT INTO metric_value VALUES ('" OTHER_SITE "', 'CANARY-MET', '2026-Q1', "
               "12345.5, 0, 'CANARY-TIME')");
    expect_refused(&cs, "metric_value", "CANARY");
    expect_refused(&cs, "metric_value", OTHER_SITE);

    /* Update and delete of another site's row. */
    snprintf(setup, sizeof(setup),
             "%s; INSERT INTO metric_value VALUES ('" OTHER_SITE "', 'CANARY-MET', '2026-Q1', "
             "1, 0, 'CANARY-TIME'), ('" SITE "', 'CANARY-MET', '2026-Q1', 2, 0, NULL);",
             ddl("metric_value"));
    scratch_cs(&cs, setup, "UPDATE metric_value SET value = 99 WHERE site_id = '" OTHER_SITE "'");
    expect_refused(&cs, "metric_value", "CANARY");
    expect_refused(&cs, "metric_value", OTHER_SITE);
    scratch_cs(&cs, setup, "DELETE FROM metric_value WHERE site_id = '" OTHER_SITE "'");
    expect_refused(&cs, "metric_value", "CANARY");

    /* Moving an own row to another site (a delete and an insert). */
    scratch_cs(&cs, setup, "UPDATE metric_value SET site_id = 'site-c' WHERE site_id = '" SITE "'");
    expect_refused(&cs, "metric_value", "CANARY");

    /* The same edits on the site's own rows pass. */
    scratch_cs(&cs, setup, "UPDATE metric_value SET value = 3 WHERE site_id = '" SITE "'");
    assert_int_equal(changeset_check_push(g_s, cs.data, cs.len, SITE, &n, &e), SYNC_OK);
    assert_int_equal(n, 1);
    scratch_cs(&cs, setup, "DELETE FROM metric_value WHERE site_id = '" SITE "'");
    assert_int_equal(changeset_check_push(g_s, cs.data, cs.len, SITE, &n, &e), SYNC_OK);

    /* A site_id that is not text is nobody's. */
    scratch_cs(&cs, ddl("metric_value"),
               "INSERT INTO metric_value VALUES (x'736974652d61', 'm', 'p', 1, 0, NULL)");
    expect_refused(&cs, "metric_value", "CANARY");

    /* One bad change among good ones refuses the whole push. */
    snprintf(setup, sizeof(setup), "%s; %s;", ddl("resource"), ddl("metric_value"));
    scratch_cs(&cs, setup,
               "INSERT INTO resource (id, title) VALUES ('r-1', 'ok');"
               "INSERT INTO metric_value VALUES ('" SITE "', 'm', 'p', 1, 0, NULL);"
               "INSERT INTO metric_value VALUES ('" OTHER_SITE "', 'CANARY', 'p', 1, 0, NULL);");
    expect_refused(&cs, "metric_value", "CANARY");
    buf_free(&cs);
}

/* Replaces the first TEXT field holding SITE in cs (type 0x03, length, bytes)
 * by an "undefined" field (0x00): what a hand-made changeset may send. */
static void forge_undefined_site(struct buf *cs)
{
    const size_t n = strlen(SITE);
    for (size_t i = 0; i + 2 + n <= cs->len; i++) {
        if (cs->data[i] == 0x03 && cs->data[i + 1] == n && memcmp(cs->data + i + 2, SITE, n) == 0) {
            cs->data[i] = 0x00;
            memmove(cs->data + i + 1, cs->data + i + 2 + n, cs->len - (i + 2 + n));
            cs->len -= 1 + n;
            return;
        }
    }
    fail_msg("no site_id field to forge");
}

/* An owned row whose site_id is missing from the changeset belongs to no
 * site: refused, for an insert (new image) and an update (old image). */
static void test_check_push_refuses_missing_owner(void **state)
{
    struct buf cs = {0};
    char setup[2048];
    struct errctx e = {0};
    int n = -1;

    (void)state;
    scratch_cs(&cs, ddl("metric_value"),
               "INSERT INTO metric_value VALUES ('" SITE "', 'CANARY-MET', 'p', 1, 0, NULL)");
    assert_int_equal(changeset_check_push(g_s, cs.data, cs.len, SITE, &n, &e), SYNC_OK);
    forge_undefined_site(&cs);
    assert_int_equal(changeset_count(cs.data, cs.len, &n, &e), SYNC_OK); /* still well-formed */
    assert_int_equal(n, 1);
    expect_refused(&cs, "metric_value", "CANARY");

    snprintf(setup, sizeof(setup),
             "%s; INSERT INTO metric_value VALUES ('" SITE "', 'CANARY-MET', 'p', 1, 0, NULL);",
             ddl("metric_value"));
    scratch_cs(&cs, setup, "UPDATE metric_value SET value = 2");
    assert_int_equal(changeset_check_push(g_s, cs.data, cs.len, SITE, &n, &e), SYNC_OK);
    forge_undefined_site(&cs);
    assert_int_equal(changeset_count(cs.data, cs.len, &n, &e), SYNC_OK);
    expect_refused(&cs, "metric_value", "CANARY");

    scratch_cs(&cs, setup, "DELETE FROM metric_value");
    forge_undefined_site(&cs);
    assert_int_equal(changeset_count(cs.data, cs.len, &n, &e), SYNC_OK);
    expect_refused(&cs, "metric_value", "CANARY");
    buf_free(&cs);
}

static void test_check_push_refuses_shape(void **state)
{
    struct buf cs = {0};

    (void)state;
    /* Fewer columns than the schema's resource. */
    scratch_cs(&cs, "CREATE TABLE resource (id TEXT PRIMARY KEY, title TEXT)",
               "INSERT INTO resource VALUES ('CANARY-ID', 'CANARY-TITLE')");
    expect_refused(&cs, "resource", "CANARY");

    /* More columns. */
    scratch_cs(&cs,
               "CREATE TABLE metric_value (site_id TEXT, metric TEXT, period TEXT, value REAL, "
               "suppressed INTEGER, updated_at TEXT, extra TEXT, "
               "PRIMARY KEY (site_id, metric, period))",
               "INSERT INTO metric_value VALUES ('" SITE "', 'm', 'p', 1, 0, NULL, 'CANARY')");
    expect_refused(&cs, "metric_value", "CANARY");

    /* The right number of columns but another primary key. */
    scratch_cs(&cs,
               "CREATE TABLE resource (id TEXT, title TEXT PRIMARY KEY, url, summary, kind, "
               "language, phm_component, oht_block, population_group, added_by_site, "
               "updated_at)",
               "INSERT INTO resource (id, title) VALUES ('CANARY-ID', 'CANARY-TITLE')");
    assert_int_equal(schema_find(g_s, "resource")->ncol, 11);
    expect_refused(&cs, "resource", "CANARY");
    buf_free(&cs);
}

/* Bytes that made SQLite 3.40's changeset iterator spin forever (found by
 * fuzz_changeset_check), and other malformed shapes: all refused up front. */
static void test_validate_refuses_malformed(void **state)
{
    static const struct {
        const char *bytes;
        size_t n;
    } bad[] = {
        {"T", 1},                            /* header cut after the marker */
        {"T\x02\x01", 3},                    /* cut inside the key flags */
        {"T\x01\x01res", 6},                 /* name without its NUL */
        {"T\x01\x01\0", 4},                  /* empty name */
        {"T\x00r\0", 4},                     /* no columns */
        {"P\x01\x01r\0", 6},                 /* a patchset */
        {"\x12\x00\x05", 3},                 /* a change before any table */
        {"T\x01\x01r\0\x12\x00\x03\x7f", 9}, /* text longer than the input */
        {"T\x01\x01r\0\x12\x02\x05", 8},     /* indirect flag not 0/1 */
        {"T\x01\x01r\0\x12\x00\x09", 8},     /* unknown value type */
        {"T\x01\x01r\0\x17\x00\x05", 8},     /* update without its new record */
    };
    struct errctx e = {0};
    int count = -1;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errctx_clear(&e);
        assert_int_equal(changeset_validate(bad[i].bytes, bad[i].n, &e), SYNC_EPROTO);
        assert_non_null(strstr(e.msg, "malformed"));
        assert_int_equal(changeset_count(bad[i].bytes, bad[i].n, &count, &e), SYNC_EPROTO);
    }
    /* well-formed: one table, an insert of (NULL) and an update of an integer */
    assert_int_equal(changeset_validate("T\x01\x01r\0\x12\x00\x05"
                                        "\x17\x01\x01\0\0\0\0\0\0\0\x01\x00",
                                        20, &e),
                     SYNC_OK);
}

/* ---- insert-only changesets (join snapshots) ------------------------------ */

/* A table with a two-column key in an order unlike the columns', and every
 * value type SQLite has, including a 9-byte varint length is out of reach
 * but a two-byte one is not (a 300-byte text). */
static const char put_schema[] =
    "CREATE TABLE kinds (a TEXT, k2 INTEGER NOT NULL, r REAL, b BLOB, k1 TEXT NOT NULL, n,"
    " PRIMARY KEY (k1, k2)) WITHOUT ROWID;"
    "INSERT INTO schema_class VALUES ('kinds', 'shared');";

/* Our encoder's changeset of every row of kinds in db, in key order. */
static void put_all(struct buf *out, sqlite3 *db, const struct schema_table *t)
{
    sqlite3_stmt *st = NULL;
    struct errctx e = {0};

    assert_int_equal(sqlite3_prepare_v2(db, "SELECT a, k2, r, b, k1, n FROM kinds ORDER BY k1, k2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(changeset_put_table(out, t, &e), SYNC_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        assert_int_equal(changeset_put_insert(out, st, t, &e), SYNC_OK);
    sqlite3_finalize(st);
}

static void test_put_inserts(void **state)
{
    static const char *rows[] = {
        "INSERT INTO kinds VALUES ('text', 7, 2.5, x'00ff10', 'key-a', NULL)",
        "INSERT INTO kinds VALUES (NULL, -9223372036854775807 - 1, -0.0, x'', 'key-b', 42)",
        "INSERT INTO kinds VALUES (printf('%.300c', 'x'), 0, 1e300, zeroblob(200), 'key-c', 'n')",
    };
    struct schema *s = NULL;
    struct errctx e = {0};
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_session *sess = NULL;
    const struct schema_table *t;
    struct buf ours = {0};
    void *theirs = NULL;
    int ntheirs = 0, count = 0;

    (void)state;
    assert_int_equal(schema_load_text(&s, put_schema, &e), SYNC_OK);
    assert_non_null(t = schema_find(s, "kinds"));
    assert_int_equal(sqlite3_open(":memory:", &src), SQLITE_OK);
    exec(src, t->create_sql);
    /* One row: byte for byte what the session extension writes. */
    assert_int_equal(sqlite3session_create(src, "main", &sess), SQLITE_OK);
    assert_int_equal(sqlite3session_attach(sess, "kinds"), SQLITE_OK);
    exec(src, rows[0]);
    assert_int_equal(sqlite3session_changeset(sess, &ntheirs, &theirs), SQLITE_OK);
    sqlite3session_delete(sess);
    put_all(&ours, src, t);
    assert_int_equal(ours.len, (size_t)ntheirs);
    assert_memory_equal(ours.data, theirs, ours.len);
    sqlite3_free(theirs);
    /* Every type: valid, and applying it to an empty copy gives the table. */
    exec(src, rows[1]);
    exec(src, rows[2]);
    ours.len = 0;
    put_all(&ours, src, t);
    assert_int_equal(changeset_validate(ours.data, ours.len, &e), SYNC_OK);
    assert_int_equal(changeset_count(ours.data, ours.len, &count, &e), SYNC_OK);
    assert_int_equal(count, 3);
    assert_int_equal(sqlite3_open(":memory:", &dst), SQLITE_OK);
    exec(dst, t->create_sql);
    assert_int_equal(changeset_apply_strict(dst, s, ours.data, ours.len, "", &e), SYNC_OK);
    exec(dst, "ATTACH ':memory:' AS unused");
    assert_int_equal(q_int(dst, "SELECT count(*) FROM kinds"), 3);
    assert_int_equal(q_int(dst, "SELECT count(*) FROM kinds WHERE k1 = 'key-a' AND a = 'text' AND "
                                "k2 = 7 AND r = 2.5 AND b = x'00ff10' AND n IS NULL"),
                     1);
    assert_int_equal(q_int(dst, "SELECT count(*) FROM kinds WHERE k1 = 'key-b' AND a IS NULL AND "
                                "k2 = -9223372036854775807 - 1 AND typeof(r) = 'real' AND "
                                "b = x'' AND n = 42"),
                     1);
    assert_int_equal(q_int(dst, "SELECT count(*) FROM kinds WHERE k1 = 'key-c' AND length(a) = "
                                "300 AND r = 1e300 AND b = zeroblob(200) AND n = 'n'"),
                     1);
    buf_free(&ours);
    sqlite3_close(src);
    sqlite3_close(dst);
    schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_refuses_malformed),
        cmocka_unit_test(test_put_inserts),
        cmocka_unit_test_setup_teardown(test_build_empty, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_build_insert_update_delete, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_build_undone_edit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_build_never_reads_local, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_build_follows_dirty_keys, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_to_base, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_hub_table, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_insert_exists, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_update_mismatch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_delete_missing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_malformed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_apply_refuses_local_table, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_touched, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_check_push_accepts, fx_setup, fx_teardown),
        cmocka_unit_test(test_check_push_refuses_classes),
        cmocka_unit_test(test_check_push_refuses_other_sites_rows),
        cmocka_unit_test(test_check_push_refuses_missing_owner),
        cmocka_unit_test(test_check_push_refuses_shape),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
