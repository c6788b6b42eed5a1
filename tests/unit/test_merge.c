/*
 * test_merge.c - the hub's reconciliation policy (server/merge.c), one test
 * per rule of common/PROTOCOL.md, "Reconciliation policy".
 *
 * Every test runs against a fresh in-memory "hub" holding the real schema's
 * replicated tables, the row-meta tables of merge_tables_create() and the
 * conflict log (its DDL copied from hub_ddl in server/hub.c).  The hub state
 * is seeded with plain SQL: rows plus row-meta stamps with chosen edit times
 * and sites.  The pushed changeset is made with a sqlite3session on a scratch
 * in-memory database that holds the pushing site's base rows, then the site's
 * edit; edit times are given explicitly per key.  merge_apply() runs inside a
 * transaction, as hub.c runs it.
 *
 * Each test asserts the hub row(s), the row's stamp, the merge_stats, the
 * exact conflict log rows and the notes (one "conflict: ..." line per logged
 * conflict, never a value).  Temp triggers count the writes merge_apply()
 * makes to the replicated tables, so "nothing written" is checked directly.
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
#include "db.h"
#include "merge.h"
#include "schema.h"

#define PUSH_ID "00112233445566778899aabbccddeeff"

/* Copied from hub_ddl in server/hub.c. */
#define CONFLICT_DDL                                                                               \
    "CREATE TABLE IF NOT EXISTS _empact_conflict ("                                                \
    " id INTEGER PRIMARY KEY, version INTEGER NOT NULL, push_id TEXT, tbl TEXT NOT NULL,"          \
    " row_key TEXT NOT NULL, col TEXT NOT NULL, kind TEXT NOT NULL, loser_site TEXT NOT NULL,"     \
    " lost_value TEXT NOT NULL, lost_at INTEGER NOT NULL, winner_site TEXT NOT NULL,"              \
    " kept_value TEXT NOT NULL, won_at INTEGER NOT NULL, created_at INTEGER NOT NULL);"            \
    "CREATE INDEX IF NOT EXISTS _empact_conflict_loser ON _empact_conflict (loser_site, id);"

/* Counts every write to the replicated tables the merge may touch. */
#define WRITES_DDL                                                                                 \
    "CREATE TEMP TABLE writes (tbl TEXT, op TEXT);"                                                \
    "CREATE TEMP TRIGGER w_res_i AFTER INSERT ON main.resource BEGIN"                              \
    " INSERT INTO writes VALUES ('resource', 'insert'); END;"                                      \
    "CREATE TEMP TRIGGER w_res_u AFTER UPDATE ON main.resource BEGIN"                              \
    " INSERT INTO writes VALUES ('resource', 'update'); END;"                                      \
    "CREATE TEMP TRIGGER w_res_d AFTER DELETE ON main.resource BEGIN"                              \
    " INSERT INTO writes VALUES ('resource', 'delete'); END;"                                      \
    "CREATE TEMP TRIGGER w_mv_i AFTER INSERT ON main.metric_value BEGIN"                           \
    " INSERT INTO writes VALUES ('metric_value', 'insert'); END;"                                  \
    "CREATE TEMP TRIGGER w_mv_u AFTER UPDATE ON main.metric_value BEGIN"                           \
    " INSERT INTO writes VALUES ('metric_value', 'update'); END;"                                  \
    "CREATE TEMP TRIGGER w_mv_d AFTER DELETE ON main.metric_value BEGIN"                           \
    " INSERT INTO writes VALUES ('metric_value', 'delete'); END;"

/* A resource row as row_of() prints it: id, title, url, summary, kind,
 * language, phm_component, oht_block, population_group, added_by_site,
 * updated_at; only title and summary vary in these tests. */
#define RES(id, title, summary)                                                                    \
    "'" id "'|'" title "'|NULL|'" summary "'|NULL|'en'|NULL|NULL|NULL|NULL|NULL"

static struct schema *g_s; /* the compiled-in schema, loaded once per group */

struct fx {
    sqlite3 *db; /* the hub */
    struct merge_stats st;
    struct buf notes;
    struct stmtcache sc; /* kept across the test's pushes, as the hub's writer does */
    int cached;          /* pushes use sc (fx_setup_cached) */
};

/* Edit time of the change to one key (primary key values joined by ','). */
struct at {
    const char *key;
    uint64_t at;
};

/* One expected _empact_conflict row; kept NULL: not compared here. */
struct cf {
    const char *tbl, *key, *col, *kind, *loser, *lost;
    int64_t lost_at;
    const char *winner, *kept;
    int64_t won_at;
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

/* The first column of the only row of sql (malloc'd), or NULL when no row. */
static char *q_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    int step;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        print_error("prepare failed: %s\n  in: %s\n", sqlite3_errmsg(db), sql);
        fail();
    }
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        out = strdup(s ? s : "<null>");
        assert_non_null(out);
        step = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        free(out);
        print_error("expected at most one row from: %s\n", sql);
        fail();
    }
    return out;
}

static void assert_text(char *got, const char *want, const char *what)
{
    if (want == NULL && got == NULL)
        return;
    if (want == NULL || got == NULL || strcmp(got, want) != 0) {
        print_error("%s:\n  got  %s\n  want %s\n", what, got ? got : "(no row)",
                    want ? want : "(no row)");
        free(got);
        fail();
    }
    free(got);
}

/* The hub's row of table matching where, every column as quote() joined by
 * '|' (NULL: expect no such row). */
static void assert_row(sqlite3 *db, const char *table, const char *where, const char *want)
{
    const struct schema_table *t = schema_find(g_s, table);
    char *cols = sqlite3_mprintf("%s", ""), *sql;

    assert_non_null(t);
    for (int i = 0; cols != NULL && i < t->ncol; i++) {
        char *next =
            sqlite3_mprintf("%s%squote(\"%w\")", cols, i ? " || '|' || " : "", t->cols[i].name);
        sqlite3_free(cols);
        cols = next;
    }
    assert_non_null(cols);
    sql = sqlite3_mprintf("SELECT %s FROM \"%w\" WHERE %s", cols, table, where);
    assert_non_null(sql);
    assert_text(q_text(db, sql), want, sql);
    sqlite3_free(cols);
    sqlite3_free(sql);
}

/* The row's stamp as "time/site" (NULL: expect none). */
/* The row's newest stamp: its insert/delete stamp or a column's, whichever is
 * later (the greater site on a tie). */
static void assert_stamp(sqlite3 *db, const char *table, const char *where, const char *want)
{
    char *sql = sqlite3_mprintf(
        "SELECT a || '/' || s FROM (SELECT _empact_edited_at a, _empact_site s FROM "
        "\"" ROWMETA_PREFIX
        "%w\" WHERE %s UNION ALL SELECT _empact_edited_at, _empact_site FROM \"" COLMETA_PREFIX
        "%w\" WHERE %s) ORDER BY a DESC, s DESC LIMIT 1",
        table, where, table, where);
    assert_non_null(sql);
    assert_text(q_text(db, sql), want, sql);
    sqlite3_free(sql);
}

static void assert_stats(const struct fx *f, uint32_t applied, uint32_t lost, uint32_t logged)
{
    assert_int_equal(f->st.applied, applied);
    assert_int_equal(f->st.lost, lost);
    assert_int_equal(f->st.logged, logged);
}

/* Writes merge_apply() made to the replicated tables in the last push. */
static long long writes(struct fx *f)
{
    return q_int(f->db, "SELECT count(*) FROM temp.writes");
}

/* Builds a changeset on a scratch database: ddl (NULL: the real schema's
 * resource and metric_value), the pushing site's base rows, then its edit. */
static void make_cs(struct buf *out, const char *ddl, const char *base, const char *edit)
{
    sqlite3 *db = NULL;
    sqlite3_session *sess = NULL;
    void *p = NULL;
    int n = 0;
    struct errctx e = {0};

    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    if (ddl != NULL) {
        exec(db, ddl);
    } else {
        exec(db, schema_find(g_s, "resource")->create_sql);
        exec(db, schema_find(g_s, "metric_value")->create_sql);
    }
    exec(db, base);
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

/* Edit times in the changeset's own order, looked up by key in map
 * (terminated by a NULL key); returns the number of changes. */
static uint32_t times_for(const struct buf *cs, const struct at *map, uint64_t *times, uint32_t max)
{
    sqlite3_changeset_iter *it = NULL;
    uint32_t n = 0;

    assert_int_equal(sqlite3changeset_start(&it, (int)cs->len, cs->data), SQLITE_OK);
    while (sqlite3changeset_next(it) == SQLITE_ROW) {
        const char *tab;
        unsigned char *pk;
        int ncol, op, indirect, npk;
        char key[256] = "";
        size_t len = 0;
        const struct at *a;

        assert_int_equal(sqlite3changeset_op(it, &tab, &ncol, &op, &indirect), SQLITE_OK);
        assert_int_equal(sqlite3changeset_pk(it, &pk, &npk), SQLITE_OK);
        for (int i = 0; i < ncol; i++) {
            sqlite3_value *v = NULL;
            if (!pk[i])
                continue;
            if (op == SQLITE_INSERT)
                assert_int_equal(sqlite3changeset_new(it, i, &v), SQLITE_OK);
            else
                assert_int_equal(sqlite3changeset_old(it, i, &v), SQLITE_OK);
            assert_non_null(v);
            len += (size_t)snprintf(key + len, sizeof(key) - len, "%s%s", len ? "," : "",
                                    (const char *)sqlite3_value_text(v));
            assert_true(len < sizeof(key));
        }
        for (a = map; a->key != NULL && strcmp(a->key, key) != 0; a++)
            ;
        if (a->key == NULL) {
            print_error("no edit time given for key %s\n", key);
            fail();
        }
        assert_true(n < max);
        times[n++] = a->at;
    }
    assert_int_equal(sqlite3changeset_finalize(it), SQLITE_OK);
    return n;
}

/* merge_apply() inside BEGIN, as hub.c runs it; COMMIT when it succeeds,
 * ROLLBACK when it fails.  It must leave the caller's transaction open. */
static int push_raw(struct fx *f, const char *site, const struct buf *cs, const uint64_t *times,
                    uint32_t ntimes, struct errctx *e)
{
    int rc;

    exec(f->db, "DELETE FROM temp.writes");
    f->notes.len = 0;
    exec(f->db, "BEGIN");
    rc = merge_apply(f->db, f->cached ? &f->sc : NULL, g_s, site, PUSH_ID, cs->data, cs->len, times,
                     ntimes, &f->st, &f->notes, e);
    assert_int_equal(sqlite3_get_autocommit(f->db), 0);
    exec(f->db, rc == SYNC_OK ? "COMMIT" : "ROLLBACK");
    return rc;
}

static void push(struct fx *f, const char *site, const struct buf *cs, const struct at *map)
{
    uint64_t times[16];
    uint32_t n = times_for(cs, map, times, 16);
    struct errctx e = {0};
    int rc = push_raw(f, site, cs, times, n, &e);

    if (rc != SYNC_OK) {
        print_error("merge_apply: %s\n", e.msg);
        fail();
    }
}

/* The whole conflict log, ordered by row key then log order (within a
 * change: schema column order). */
static void assert_conflicts(struct fx *f, const struct cf *want, int n)
{
    sqlite3_stmt *st = NULL;
    int i = 0;

    assert_int_equal(sqlite3_prepare_v2(f->db,
                                        "SELECT tbl, row_key, col, kind, loser_site, lost_value, "
                                        "lost_at, winner_site, kept_value, won_at, version, "
                                        "push_id, created_at FROM _empact_conflict "
                                        "ORDER BY row_key, id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const struct cf *w = &want[i];
        if (i >= n) {
            print_error("unexpected conflict row: %s %s %s %s lost %s\n",
                        sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
                        sqlite3_column_text(st, 3), sqlite3_column_text(st, 4),
                        sqlite3_column_text(st, 5));
            sqlite3_finalize(st);
            fail();
        }
        assert_string_equal(sqlite3_column_text(st, 0), w->tbl);
        assert_string_equal(sqlite3_column_text(st, 1), w->key);
        assert_string_equal(sqlite3_column_text(st, 2), w->col);
        assert_string_equal(sqlite3_column_text(st, 3), w->kind);
        assert_string_equal(sqlite3_column_text(st, 4), w->loser);
        assert_string_equal(sqlite3_column_text(st, 5), w->lost);
        assert_int_equal(sqlite3_column_int64(st, 6), w->lost_at);
        assert_string_equal(sqlite3_column_text(st, 7), w->winner);
        if (w->kept != NULL)
            assert_string_equal(sqlite3_column_text(st, 8), w->kept);
        assert_int_equal(sqlite3_column_int64(st, 9), w->won_at);
        assert_int_equal(sqlite3_column_int64(st, 10), 0);
        assert_string_equal(sqlite3_column_text(st, 11), PUSH_ID);
        assert_true(sqlite3_column_int64(st, 12) > 0);
        i++;
    }
    sqlite3_finalize(st);
    assert_int_equal(i, n);
}

/* 1 if s holds the non-empty needle. */
static int holds(const char *s, const char *needle)
{
    return needle[0] != '\0' && strstr(s, needle) != NULL;
}

/* The notes of the last push: exactly the expected lines (any order; NULL
 * terminated), one per conflict it logged, and none of the values in the
 * conflict log. */
static void assert_notes(struct fx *f, const char *const *want)
{
    char *notes = calloc(f->notes.len + 1, 1);
    sqlite3_stmt *st = NULL;
    size_t nwant = 0, nlines = 0;

    assert_non_null(notes);
    if (f->notes.len > 0)
        memcpy(notes, f->notes.data, f->notes.len);
    assert_int_equal(strlen(notes), f->notes.len); /* no NUL inside */
    for (char *p = notes; *p != '\0'; nlines++) {
        char *nl = strchr(p, '\n');
        if (nl == NULL || strncmp(p, "conflict: ", 10) != 0) {
            print_error("malformed notes line in:\n%s\n", notes);
            free(notes);
            fail();
        }
        p = nl + 1;
    }
    for (; want[nwant] != NULL; nwant++) {
        char line[512];
        snprintf(line, sizeof(line), "\n%s\n", want[nwant]);
        /* a whole line: at the start, or after a newline */
        if (strncmp(notes, line + 1, strlen(line + 1)) != 0 && strstr(notes, line) == NULL) {
            print_error("notes lack the line\n  %s\nnotes:\n%s\n", want[nwant], notes);
            free(notes);
            fail();
        }
    }
    assert_int_equal(nlines, nwant);
    assert_int_equal(nlines, f->st.logged);
    /* No value of any logged conflict: text values are checked without their
     * quotes, other values (SQLite's reason, "col: value" lines) whole. */
    assert_int_equal(sqlite3_prepare_v2(f->db,
                                        "SELECT lost_value FROM _empact_conflict UNION ALL "
                                        "SELECT kept_value FROM _empact_conflict",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        char v[512];
        const char *s = (const char *)sqlite3_column_text(st, 0);
        size_t n = strlen(s);
        if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
            snprintf(v, sizeof(v), "%.*s", (int)(n - 2), s + 1);
        else if (s[0] >= '0' && s[0] <= '9')
            v[0] = '\0'; /* a bare number would match the key or a time */
        else
            snprintf(v, sizeof(v), "%s", s);
        if (strcmp(v, "null") != 0 && holds(notes, v)) {
            print_error("notes hold the value %s:\n%s\n", s, notes);
            sqlite3_finalize(st);
            free(notes);
            fail();
        }
    }
    sqlite3_finalize(st);
    free(notes);
}

static const char *const no_notes[] = {NULL};

/* ---- fixture --------------------------------------------------------------- */

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct errctx e = {0};

    if (f == NULL || sqlite3_open(":memory:", &f->db) != SQLITE_OK)
        goto fail;
    for (int i = 0; i < g_s->ntable; i++) {
        if (schema_class_replicated(g_s->tables[i].cls) &&
            sqlite3_exec(f->db, g_s->tables[i].create_sql, NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
    }
    if (merge_tables_create(f->db, g_s, &e) != SYNC_OK) {
        print_error("merge_tables_create: %s\n", e.msg);
        goto fail;
    }
    if (sqlite3_exec(f->db, CONFLICT_DDL WRITES_DDL, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    *state = f;
    return 0;
fail:
    if (f != NULL) {
        print_error("setup: %s\n", f->db ? sqlite3_errmsg(f->db) : "out of memory");
        sqlite3_close(f->db);
        free(f);
    }
    return -1;
}

/* The same, with one statement cache for all the test's pushes: a push
 * must not see anything an earlier one left in a cached statement. */
static int fx_setup_cached(void **state)
{
    struct fx *f;

    if (fx_setup(state) != 0)
        return -1;
    f = *state;
    stmtcache_init(&f->sc, f->db);
    f->cached = 1;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    sqlite3_stmt *st;

    buf_free(&f->notes);
    /* whatever the test did, no statement may be left running in the cache
     * kept across its pushes (the hub's writer would keep it for good) */
    for (st = sqlite3_next_stmt(f->db, NULL); f->cached && st; st = sqlite3_next_stmt(f->db, st))
        if (sqlite3_stmt_busy(st)) {
            print_error("a cached statement was left running: %s\n", sqlite3_sql(st));
            return -1;
        }
    stmtcache_free(&f->sc);
    /* a failed assertion may have left a statement open */
    while ((st = sqlite3_next_stmt(f->db, NULL)) != NULL)
        sqlite3_finalize(st);
    if (sqlite3_close(f->db) != SQLITE_OK)
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

/* The row every site synced: r1 "Toolkit" / "old". */
#define BASE_R1 "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit', 'old');"

/* ---- the rules --------------------------------------------------------------- */

/* 1. A column the hub still has at the pusher's old value takes the new value. */
static void test_update_unchanged_column_applied(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 200}, {NULL, 0}};

    exec(f->db, BASE_R1 "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 100, 'a');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit", "Sum B"));
    assert_stamp(f->db, "resource", "id = 'r1'", "200/b");
    assert_stats(f, 1, 0, 0);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, NULL, 0);
    assert_notes(f, no_notes);
    buf_free(&cs);
}

/* 2. Two sites change different columns of one row: both changes are kept. */
static void test_different_columns_both_kept(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {NULL, 0}};

    /* a changed the title at 200; b's base still has the old title */
    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit 2', 'old');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit 2", "Sum B"));
    assert_stamp(f->db, "resource", "id = 'r1'", "300/b");
    assert_stats(f, 1, 0, 0);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, NULL, 0);
    assert_notes(f, no_notes);
    buf_free(&cs);
}

/* 3. Same column changed on both sides, the pusher's edit later: the pusher's
 * value; the earlier editor is told it was overwritten. */
static void test_same_column_later_push_wins(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {NULL, 0}};
    const struct cf want[] = {{"resource", "\"r1\"", "summary", CONFLICT_OVERWRITTEN, "a",
                               "\"Sum A\"", 200, "b", "\"Sum B\"", 300}};
    const char *const notes[] = {"conflict: resource \"r1\" summary: overwritten; a's input lost "
                                 "to b",
                                 NULL};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit', 'Sum A');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit", "Sum B"));
    assert_stamp(f->db, "resource", "id = 'r1'", "300/b");
    assert_stats(f, 1, 0, 1);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, want, 1);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 3b. Conflicts are attributed per column: the loser of an overwritten title
 * is the site that typed the title, not the site that edited the row last
 * (another column), and the title's time, not the row's, decides. */
static void test_conflict_names_the_columns_typist(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {NULL, 0}};
    const struct cf want[] = {{"resource", "\"r1\"", "title", CONFLICT_OVERWRITTEN, "sa",
                               "\"v-by-sa\"", 200, "st", "\"v-by-st\"", 300}};

    /* sa typed the title at 200, su the summary at 350 (later than st's 300) */
    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'v-by-sa', 'v-by-su');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 100, 'a');"
                "INSERT INTO _empact_colmeta_resource VALUES ('r1', 1, 200, 'sa'),"
                " ('r1', 3, 350, 'su');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET title = 'v-by-st' WHERE id = 'r1'");
    push(f, "st", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "v-by-st", "v-by-su"));
    assert_stats(f, 1, 0, 1);
    assert_conflicts(f, want, 1);
    assert_text(q_text(f->db, "SELECT group_concat(_empact_col || ':' || _empact_edited_at || '/' "
                              "|| _empact_site, ' ') FROM (SELECT * FROM _empact_colmeta_resource "
                              "ORDER BY _empact_col)"),
                "1:300/st 3:350/su", "column stamps");
    buf_free(&cs);
}

/* 4. Same column, the pusher's edit older: the hub keeps its value, the row is
 * not written, and the pusher is told it was overridden. */
static void test_same_column_older_push_loses(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 150}, {NULL, 0}};
    const struct cf want[] = {{"resource", "\"r1\"", "summary", CONFLICT_OVERRIDDEN, "b",
                               "\"Sum B\"", 150, "a", "\"Sum A\"", 200}};
    const char *const notes[] = {"conflict: resource \"r1\" summary: overridden; b's input lost "
                                 "to a",
                                 NULL};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit', 'Sum A');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit", "Sum A"));
    assert_stamp(f->db, "resource", "id = 'r1'", "200/a");
    assert_stats(f, 0, 1, 1);
    assert_int_equal(writes(f), 0);
    assert_conflicts(f, want, 1);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 5. Same column, equal edit times: the greater site id (byte order) wins,
 * both when the pusher's id is the greater and when it is the smaller. */
static void test_equal_times_greater_site_wins(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map1[] = {{"r1", 200}, {NULL, 0}};
    const struct at map2[] = {{"r2", 200}, {NULL, 0}};
    const struct cf want1[] = {{"resource", "\"r1\"", "summary", CONFLICT_OVERWRITTEN, "a",
                                "\"Sum A\"", 200, "b", "\"Sum B\"", 200}};
    const struct cf want2[] = {
        want1[0],
        {"resource", "\"r2\"", "summary", CONFLICT_OVERRIDDEN, "a", "\"Sum A2\"", 200, "b",
         "\"Sum B2\"", 200},
    };
    const char *const notes1[] = {"conflict: resource \"r1\" summary: overwritten; a's input "
                                  "lost to b",
                                  NULL};
    const char *const notes2[] = {"conflict: resource \"r2\" summary: overridden; a's input lost "
                                  "to b",
                                  NULL};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit', 'Sum A'),"
                " ('r2', 'Toolkit', 'Sum B2');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a'), ('r2', 200, 'b');");

    /* pusher "b" against a stamp by "a" at the same time: b wins */
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map1);
    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit", "Sum B"));
    assert_stamp(f->db, "resource", "id = 'r1'", "200/b");
    assert_stats(f, 1, 0, 1);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, want1, 1);
    assert_notes(f, notes1);

    /* pusher "a" against a stamp by "b" at the same time: a loses */
    make_cs(&cs, NULL, "INSERT INTO resource (id, title, summary) VALUES ('r2', 'Toolkit', 'old');",
            "UPDATE resource SET summary = 'Sum A2' WHERE id = 'r2'");
    push(f, "a", &cs, map2);
    assert_row(f->db, "resource", "id = 'r2'", RES("r2", "Toolkit", "Sum B2"));
    assert_stamp(f->db, "resource", "id = 'r2'", "200/b");
    assert_stats(f, 0, 1, 1);
    assert_int_equal(writes(f), 0);
    assert_conflicts(f, want2, 2);
    assert_notes(f, notes2);
    buf_free(&cs);
}

/* 6. Both sides set the same new value: nothing to do, no conflict. */
static void test_same_value_no_conflict(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {NULL, 0}};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit 2', 'old');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET title = 'Toolkit 2' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit 2", "old"));
    assert_stamp(f->db, "resource", "id = 'r1'", "200/a"); /* nothing was applied */
    assert_stats(f, 0, 0, 0);
    assert_int_equal(writes(f), 0);
    assert_conflicts(f, NULL, 0);
    assert_notes(f, no_notes);
    buf_free(&cs);
}

/* 7. Update of a row deleted at the hub: the delete stands (even against a
 * later edit); one update-of-deleted entry per pushed column. */
static void test_update_of_deleted_row(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {NULL, 0}};
    const struct cf want[] = {
        {"resource", "\"r1\"", "title", CONFLICT_UPDATE_DELETED, "b", "\"Title B\"", 300, "a", "",
         200},
        {"resource", "\"r1\"", "summary", CONFLICT_UPDATE_DELETED, "b", "\"Sum B\"", 300, "a", "",
         200},
    };
    const char *const notes[] = {
        "conflict: resource \"r1\" title: update-of-deleted; b's input lost to a",
        "conflict: resource \"r1\" summary: update-of-deleted; b's input lost to a", NULL};

    /* a deleted r1 at 200: no row, a tombstone */
    exec(f->db, "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1,
            "UPDATE resource SET title = 'Title B', summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", NULL);
    assert_stamp(f->db, "resource", "id = 'r1'", "200/a");
    assert_stats(f, 0, 1, 2);
    assert_int_equal(writes(f), 0);
    assert_conflicts(f, want, 2);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 8. Delete of a row another site changed since the pusher's base: deleted
 * (a delete wins); each changed column is logged for its editor, and the
 * tombstone names the deleter. */
static void test_delete_wins_over_update(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {"r2", 300}, {NULL, 0}};
    const struct cf want[] = {
        {"resource", "\"r1\"", "title", CONFLICT_DELETED, "a", "\"Toolkit 2\"", 200, "b", "", 300},
        {"resource", "\"r1\"", "summary", CONFLICT_DELETED, "a", "\"Sum A\"", 200, "b", "", 300},
    };
    const char *const notes[] = {"conflict: resource \"r1\" title: deleted; a's input lost to b",
                                 "conflict: resource \"r1\" summary: deleted; a's input lost to b",
                                 NULL};

    /* a changed r1 at 200; r2 was last changed by b itself (another of its
     * tools): deleting its own value is nobody's loss */
    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit 2', 'Sum A'),"
                " ('r2', 'Toolkit', 'Sum B own');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a'), ('r2', 250, 'b');");
    make_cs(&cs, NULL,
            BASE_R1 "INSERT INTO resource (id, title, summary) VALUES ('r2', 'Toolkit', 'old');",
            "DELETE FROM resource WHERE id IN ('r1', 'r2')");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", NULL);
    assert_stamp(f->db, "resource", "id = 'r1'", "300/b");
    assert_row(f->db, "resource", "id = 'r2'", NULL);
    assert_stamp(f->db, "resource", "id = 'r2'", "300/b");
    assert_stats(f, 2, 0, 2);
    assert_int_equal(writes(f), 2);
    assert_conflicts(f, want, 2);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 8b. A delete wins even when it is older than the edit it removes, and the
 * tombstone names the deleter (a later update-of-deleted entry names it). */
static void test_older_delete_still_wins(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 100}, {NULL, 0}};
    const struct cf want[] = {
        {"resource", "\"r1\"", "title", CONFLICT_DELETED, "a", "\"Toolkit 2\"", 200, "b", "", 100},
    };
    const char *const notes[] = {"conflict: resource \"r1\" title: deleted; a's input lost to b",
                                 NULL};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit 2', 'old');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1, "DELETE FROM resource WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", NULL);
    assert_stamp(f->db, "resource", "id = 'r1'", "100/b");
    assert_stats(f, 1, 0, 1);
    assert_conflicts(f, want, 1);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 9. Delete of a row already gone: nothing to do, no conflict. */
static void test_delete_of_gone_row(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {NULL, 0}};

    exec(f->db, "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1, "DELETE FROM resource WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", NULL);
    assert_stamp(f->db, "resource", "id = 'r1'", "200/a");
    assert_stats(f, 0, 0, 0);
    assert_int_equal(writes(f), 0);
    assert_conflicts(f, NULL, 0);
    assert_notes(f, no_notes);
    buf_free(&cs);
}

/* 10. Insert of a new key: inserted as pushed, stamped. */
static void test_insert_new_key(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r5", 300}, {NULL, 0}};

    exec(f->db, BASE_R1 "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 100, 'a');");
    make_cs(&cs, NULL, BASE_R1,
            "INSERT INTO resource (id, title, url, summary, kind, language, oht_block, "
            "added_by_site) VALUES ('r5', 'New', 'https://example.org/5', 'S5', 'guide', 'fr', "
            "3, 'b')");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r5'",
               "'r5'|'New'|'https://example.org/5'|'S5'|'guide'|'fr'|NULL|3|NULL|'b'|NULL");
    assert_stamp(f->db, "resource", "id = 'r5'", "300/b");
    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit", "old"));
    assert_stamp(f->db, "resource", "id = 'r1'", "100/a");
    assert_stats(f, 1, 0, 0);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, NULL, 0);
    assert_notes(f, no_notes);
    buf_free(&cs);
}

/* 11. Insert of a key another site inserted first: merged column by column
 * as an update with no base; each differing column goes to the later edit.
 * One push, two keys: b's insert is later than a's for r9, older for r8. */
static void test_insert_existing_key_merged(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r9", 300}, {"r8", 300}, {NULL, 0}};
    const struct cf want[] = {
        {"resource", "\"r8\"", "title", CONFLICT_OVERRIDDEN, "b", "\"B eight\"", 300, "a",
         "\"A eight\"", 400},
        {"resource", "\"r8\"", "url", CONFLICT_OVERRIDDEN, "b", "\"https://b.example/8\"", 300, "a",
         "null", 400},
        {"resource", "\"r9\"", "title", CONFLICT_OVERWRITTEN, "a", "\"A nine\"", 200, "b",
         "\"B nine\"", 300},
    };
    const char *const notes[] = {
        "conflict: resource \"r8\" title: overridden; b's input lost to a",
        "conflict: resource \"r8\" url: overridden; b's input lost to a",
        "conflict: resource \"r9\" title: overwritten; a's input lost to b", NULL};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r9', 'A nine', 'same'),"
                " ('r8', 'A eight', 'same');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r9', 200, 'a'), ('r8', 400, 'a');");
    make_cs(&cs, NULL, "",
            "INSERT INTO resource (id, title, summary) VALUES ('r9', 'B nine', 'same');"
            "INSERT INTO resource (id, title, url, summary) VALUES ('r8', 'B eight', "
            "'https://b.example/8', 'same');");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r9'", RES("r9", "B nine", "same"));
    assert_stamp(f->db, "resource", "id = 'r9'", "300/b");
    assert_row(f->db, "resource", "id = 'r8'", RES("r8", "A eight", "same"));
    assert_stamp(f->db, "resource", "id = 'r8'", "400/a");
    assert_stats(f, 1, 1, 3);
    assert_int_equal(writes(f), 1); /* r9 updated in place; r8 untouched */
    assert_conflicts(f, want, 3);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 12. A change that breaks a constraint (a tool without the CHECK wrote
 * oht_block 9) is undone with everything it logged, and logged as rejected;
 * the other change of the same push still applies. */
static void test_constraint_failure_rejected(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {"r2", 300}, {NULL, 0}};
    const struct cf want[] = {{"resource", "\"r1\"", "", CONFLICT_REJECTED, "b",
                               "title: \"Title B\"\noht_block: 9\n", 300, "", NULL, 0}};
    const char *const notes[] = {"conflict: resource \"r1\": rejected; b's input lost to the hub",
                                 NULL};
    char *kept;

    /* the hub's table has the CHECK; the pushing tool's copy does not */
    assert_non_null(strstr(schema_find(g_s, "resource")->create_sql, "BETWEEN 1 AND 8"));
    /* a changed r1's title at 200: b's title edit alone would overwrite it */
    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit 2', 'old'),"
                " ('r2', 'Toolkit', 'old');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a'), ('r2', 100, 'a');");
    make_cs(&cs,
            "CREATE TABLE resource (id TEXT NOT NULL PRIMARY KEY, title TEXT NOT NULL, url TEXT,"
            " summary TEXT, kind TEXT, language TEXT NOT NULL DEFAULT 'en', phm_component TEXT,"
            " oht_block INTEGER, population_group TEXT, added_by_site TEXT, updated_at TEXT)"
            " WITHOUT ROWID;",
            "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit', 'old'),"
            " ('r2', 'Toolkit', 'old');",
            "UPDATE resource SET title = 'Title B', oht_block = 9 WHERE id = 'r1';"
            "UPDATE resource SET summary = 'Sum B' WHERE id = 'r2';");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit 2", "old"));
    assert_stamp(f->db, "resource", "id = 'r1'", "200/a");
    assert_row(f->db, "resource", "id = 'r2'", RES("r2", "Toolkit", "Sum B"));
    assert_stamp(f->db, "resource", "id = 'r2'", "300/b");
    assert_stats(f, 1, 1, 1);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, want, 1); /* no overwritten entry for a: undone with the change */
    kept = q_text(f->db, "SELECT kept_value FROM _empact_conflict");
    assert_non_null(kept);
    if (strncmp(kept, "not applied: CHECK constraint failed", 36) != 0 ||
        strstr(kept, "oht_block") == NULL) {
        print_error("kept_value is not SQLite's reason: %s\n", kept);
        free(kept);
        fail();
    }
    free(kept);
    assert_notes(f, notes);
    buf_free(&cs);
}

/* 13. An older edit that applies cleanly to a column does not move time
 * backwards: the column is stamped with the newer time, but as the pusher's
 * (it typed the value now there); the row's insert stamp is untouched. */
static void test_older_clean_edit_keeps_stamp(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 100}, {NULL, 0}};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit 2', 'old');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 300, 'a');");
    make_cs(&cs, NULL, BASE_R1, "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1'");
    push(f, "b", &cs, map);

    assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit 2", "Sum B"));
    assert_text(q_text(f->db, "SELECT _empact_edited_at || '/' || _empact_site FROM "
                              "_empact_rowmeta_resource WHERE id = 'r1'"),
                "300/a", "the row's insert stamp");
    assert_text(q_text(f->db, "SELECT group_concat(_empact_col || ':' || _empact_edited_at || '/' "
                              "|| _empact_site) FROM _empact_colmeta_resource WHERE id = 'r1'"),
                "3:300/b", "the summary column's stamp");
    assert_stats(f, 1, 0, 0);
    assert_int_equal(writes(f), 1);
    assert_conflicts(f, NULL, 0);
    assert_notes(f, no_notes);
    buf_free(&cs);
}

/* 14. A push whose edit-time count differs from its change count is refused
 * and, rolled back by the caller, leaves nothing behind: fewer times, more
 * times, and times for an empty changeset. */
static void test_time_count_mismatch_refused(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"r1", 300}, {"r2", 300}, {NULL, 0}};
    const uint64_t more[3] = {300, 300, 300};
    uint64_t times[16];
    uint32_t n;
    struct errctx e = {0};

    exec(f->db, "INSERT INTO resource (id, title, summary) VALUES ('r1', 'Toolkit', 'Sum A');"
                "INSERT INTO _empact_rowmeta_resource VALUES ('r1', 200, 'a');");
    make_cs(&cs, NULL, BASE_R1,
            "UPDATE resource SET summary = 'Sum B' WHERE id = 'r1';"
            "INSERT INTO resource (id, title) VALUES ('r2', 'New');");
    n = times_for(&cs, map, times, 16);
    assert_int_equal(n, 2);

    for (int round = 0; round < 3; round++) {
        errctx_clear(&e);
        if (round == 0) {
            assert_int_equal(push_raw(f, "b", &cs, times, n - 1, &e), SYNC_EREFUSED);
        } else if (round == 1) {
            assert_int_equal(push_raw(f, "b", &cs, more, n + 1, &e), SYNC_EREFUSED);
        } else {
            struct buf empty = {0};
            assert_int_equal(push_raw(f, "b", &empty, more, 1, &e), SYNC_EREFUSED);
        }
        assert_non_null(strstr(e.msg, "edit times"));
        assert_row(f->db, "resource", "id = 'r1'", RES("r1", "Toolkit", "Sum A"));
        assert_stamp(f->db, "resource", "id = 'r1'", "200/a");
        assert_row(f->db, "resource", "id = 'r2'", NULL);
        assert_stamp(f->db, "resource", "id = 'r2'", NULL);
        assert_int_equal(q_int(f->db, "SELECT count(*) FROM resource"), 1);
        assert_int_equal(q_int(f->db, "SELECT count(*) FROM _empact_rowmeta_resource"), 1);
        assert_int_equal(q_int(f->db, "SELECT count(*) FROM _empact_conflict"), 0);
        assert_int_equal(writes(f), 0); /* temp.writes is rolled back too */
    }
    buf_free(&cs);
}

/* 15. Owned table: a site's edits of its own metric_value rows merge like a
 * shared row's (composite key, REAL values). */
static void test_owned_table_merges(void **state)
{
    struct fx *f = *state;
    struct buf cs = {0};
    const struct at map[] = {{"b,heas_completed,2026-Q1", 200},
                             {"b,heas_completed,2026-Q2", 200},
                             {"b,heas_completed,2026-Q3", 250},
                             {NULL, 0}};
    const struct cf want[] = {{"metric_value", "\"b\", \"heas_completed\", \"2026-Q3\"", "value",
                               CONFLICT_OVERRIDDEN, "b", "7.5", 250, "b", "6.5", 300}};
    const char *const notes[] = {"conflict: metric_value \"b\", \"heas_completed\", \"2026-Q3\" "
                                 "value: overridden; b's input lost to b",
                                 NULL};
    const char *base = "INSERT INTO metric_value VALUES ('b', 'heas_completed', '2026-Q1', 3.0, 0,"
                       " NULL), ('b', 'heas_completed', '2026-Q3', 1.0, 0, NULL);";

    /* Q3 holds a later edit of b's own (another of its tools) than the one
     * pushed now from a stale base */
    exec(f->db, "INSERT INTO metric_value VALUES ('b', 'heas_completed', '2026-Q1', 3.0, 0, NULL),"
                " ('b', 'heas_completed', '2026-Q3', 6.5, 0, NULL);"
                "INSERT INTO _empact_rowmeta_metric_value VALUES"
                " ('b', 'heas_completed', '2026-Q1', 100, 'b'),"
                " ('b', 'heas_completed', '2026-Q3', 300, 'b');");
    make_cs(&cs, NULL, base,
            "UPDATE metric_value SET value = 4.0, updated_at = '2026-04-02' WHERE period = "
            "'2026-Q1';"
            "INSERT INTO metric_value VALUES ('b', 'heas_completed', '2026-Q2', NULL, 1, NULL);"
            "UPDATE metric_value SET value = 7.5 WHERE period = '2026-Q3';");
    push(f, "b", &cs, map);

    assert_row(f->db, "metric_value", "period = '2026-Q1'",
               "'b'|'heas_completed'|'2026-Q1'|4.0|0|'2026-04-02'");
    assert_stamp(f->db, "metric_value", "period = '2026-Q1'", "200/b");
    assert_row(f->db, "metric_value", "period = '2026-Q2'",
               "'b'|'heas_completed'|'2026-Q2'|NULL|1|NULL");
    assert_stamp(f->db, "metric_value", "period = '2026-Q2'", "200/b");
    assert_row(f->db, "metric_value", "period = '2026-Q3'",
               "'b'|'heas_completed'|'2026-Q3'|6.5|0|NULL");
    assert_stamp(f->db, "metric_value", "period = '2026-Q3'", "300/b");
    assert_stats(f, 2, 1, 1);
    assert_int_equal(writes(f), 2);
    assert_conflicts(f, want, 1);
    assert_notes(f, notes);
    buf_free(&cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_update_unchanged_column_applied, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_different_columns_both_kept, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_column_later_push_wins, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_names_the_columns_typist, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_column_older_push_loses, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_equal_times_greater_site_wins, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_value_no_conflict, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_update_of_deleted_row, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_wins_over_update, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_older_delete_still_wins, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_of_gone_row, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_insert_new_key, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_insert_existing_key_merged, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_constraint_failure_rejected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_older_clean_edit_keeps_stamp, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_time_count_mismatch_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_owned_table_merges, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_update_unchanged_column_applied, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_different_columns_both_kept, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_column_later_push_wins, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_names_the_columns_typist, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_column_older_push_loses, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_equal_times_greater_site_wins, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_same_value_no_conflict, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(test_update_of_deleted_row, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_wins_over_update, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(test_older_delete_still_wins, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_of_gone_row, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(test_insert_new_key, fx_setup_cached, fx_teardown),
        cmocka_unit_test_setup_teardown(test_insert_existing_key_merged, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_constraint_failure_rejected, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_older_clean_edit_keeps_stamp, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_time_count_mismatch_refused, fx_setup_cached,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_owned_table_merges, fx_setup_cached, fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
