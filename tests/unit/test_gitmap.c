/*
 * test_gitmap.c - canonical row text and row names, dataset trees built in
 * full and incrementally, commits and the branch, checked against the real
 * git CLI.
 *
 * Trees are built from the schema's real tables, created in an in-memory
 * SQLite database (prefix ""), into a bare repository in a fresh mkdtemp
 * directory and into an in-memory object store; both must give the same ids.
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "changeset.h"
#include "gitmap.h"
#include "schema.h"

#define EMPTY_TREE "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

static struct schema *g_s;

struct fx {
    char dir[64];
    char repo[96];
    sqlite3 *db;
    struct gitmap *disk;
    struct gitmap *mem;
};

/* ---- helpers --------------------------------------------------------------- */

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        print_error("SQL failed: %s\n  in: %s\n", err ? err : sqlite3_errmsg(db), sql);
        sqlite3_free(err);
        fail();
    }
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Runs cmd and returns its whole stdout (caller frees); NULL on failure. */
static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    char *out = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[4096];

    if (p == NULL)
        return NULL;
    while ((got = fread(chunk, 1, sizeof(chunk), p)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        memcpy(out + len, chunk, got);
        len += got;
    }
    if (out == NULL)
        out = calloc(1, 1);
    else
        out[len] = '\0';
    *status = pclose(p);
    return out;
}

/* "ab/cd": the first two bytes of SHA-256(name), computed here on its own. */
static void shard_hex(char out[6], const char *name)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(name, strlen(name), md, &n, EVP_sha256(), NULL), 1);
    snprintf(out, 6, "%02x/%02x", md[0], md[1]);
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
    return 0;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct errctx e = {0};

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_gitmap.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->repo, sizeof(f->repo), "%s/history.git", f->dir);
    if (gitmap_init(f->repo, &e) != SYNC_OK || gitmap_open(&f->disk, f->repo, &e) != SYNC_OK ||
        gitmap_new_memory(&f->mem, &e) != SYNC_OK) {
        print_error("gitmap set-up: %s\n", e.msg);
        return -1;
    }
    if (sqlite3_open(":memory:", &f->db) != SQLITE_OK)
        return -1;
    for (int i = 0; i < g_s->ntable; i++)
        if (sqlite3_exec(f->db, g_s->tables[i].create_sql, NULL, NULL, NULL) != SQLITE_OK)
            return -1;
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;

    sqlite3_close(f->db);
    gitmap_free(f->disk);
    gitmap_free(f->mem);
    if (nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return -1;
    free(f);
    return 0;
}

static void seed(sqlite3 *db)
{
    exec(db, "INSERT INTO resource (id, title, url, oht_block) VALUES "
             " ('r-1', 'Equity toolkit', 'https://example.org/1', 2),"
             " ('r-2', 'Co-design guide', NULL, NULL),"
             " ('r/3 odd.name', 'Odd key', NULL, 5);"
             "INSERT INTO metric VALUES ('heas', 'HEAs completed', 'count', NULL, 5);"
             "INSERT INTO site VALUES ('site-a', 'Toronto', 'ON', '2026-01-01');"
             "INSERT INTO metric_value VALUES ('site-a', 'heas', '2026-Q1', 22.0, 0, NULL),"
             " ('site-a', 'heas', '2026-Q2', 0.1, 0, NULL);"
             "INSERT INTO member VALUES (1, 'CANARY-MEMBER-gm', 'c', 'n');"
             "INSERT INTO hea (id, title, opened_on, notes) VALUES (1, 'CANARY-ENG-gm', "
             "'2026-01-01', 'x');");
}

static void full(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, sqlite3 *db)
{
    struct errctx e = {0};
    if (gitmap_tree_full(out, g, db, g_s, "", &e) != SYNC_OK) {
        print_error("gitmap_tree_full: %s\n", e.msg);
        fail();
    }
}

static void update(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t *base, sqlite3 *db)
{
    struct errctx e = {0};
    if (gitmap_tree_update(out, g, base, db, g_s, "", &e) != SYNC_OK) {
        print_error("gitmap_tree_update: %s\n", e.msg);
        fail();
    }
}

static void assert_oid_hex(const uint8_t oid[GITMAP_OID_LEN], const char *want)
{
    char hex[41];
    gitmap_oid_hex(hex, oid);
    assert_string_equal(hex, want);
}

/* A statement whose columns are the given values, for the text functions. */
static sqlite3_stmt *row(sqlite3 *db, const char *select)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, select, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    return st;
}

/* ---- canonical text and names ----------------------------------------------- */

static void test_row_text(void **state)
{
    struct fx *f = *state;
    struct schema_column cols[] = {{.name = "n"},  {.name = "i"},   {.name = "neg"}, {.name = "r1"},
                                   {.name = "r2"}, {.name = "big"}, {.name = "s"},   {.name = "u"},
                                   {.name = "b"},  {.name = "e"}};
    struct schema_table t = {.name = "t", .ncol = 10, .cols = cols};
    struct buf out = {0};
    struct errctx e = {0};
    sqlite3_stmt *st;

    st = row(f->db, "SELECT 'skip me', NULL, 42, -9223372036854775808, 1.0, 0.1, 1e300, "
                    "'q\"b\\s' || char(10) || 'n' || char(1) || 'c' || char(9) || 't' || "
                    "char(13) || char(127) || 'z', 'caf' || char(233), x'00ff10', x''");
    assert_int_equal(gitmap_row_text(&out, st, 1, &t, &e), SYNC_OK);
    assert_int_equal(buf_put_u8(&out, 0, &e), SYNC_OK);
    assert_string_equal((const char *)out.data, "n: null\n"
                                                "i: 42\n"
                                                "neg: -9223372036854775808\n"
                                                "r1: 1.0\n"
                                                "r2: 0.10000000000000001\n"
                                                "big: 1.0000000000000001e+300\n"
                                                "s: \"q\\\"b\\\\s\\nn\\u0001c\\tt\\r\\u007fz\"\n"
                                                "u: \"caf\xc3\xa9\"\n"
                                                "b: x'00ff10'\n"
                                                "e: x''\n");
    sqlite3_finalize(st);

    /* Reals that print as integers still get a '.'; negative ones too. */
    out.len = 0;
    t.ncol = 3;
    st = row(f->db, "SELECT -2.0, 100.0, 0.0");
    assert_int_equal(gitmap_row_text(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(buf_put_u8(&out, 0, &e), SYNC_OK);
    assert_string_equal((const char *)out.data, "n: -2.0\ni: 100.0\nneg: 0.0\n");
    sqlite3_finalize(st);

    /* Appends, never truncates. */
    out.len = 0;
    t.ncol = 1;
    assert_int_equal(buf_put(&out, "pre\n", 4, &e), SYNC_OK);
    st = row(f->db, "SELECT 'x'");
    assert_int_equal(gitmap_row_text(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(out.len, strlen("pre\nn: \"x\"\n"));
    assert_memory_equal(out.data, "pre\nn: \"x\"\n", out.len);
    sqlite3_finalize(st);
    buf_free(&out);
}

static void expect_name(sqlite3 *db, const char *select, int npk, const char *want)
{
    struct schema_column cols[3] = {
        {.name = "a", .pk = 1}, {.name = "b", .pk = 2}, {.name = "c", .pk = 3}};
    int pk[3] = {0, 1, 2};
    struct schema_table t = {.name = "t", .ncol = 3, .cols = cols, .npk = npk, .pk = pk};
    struct buf out = {0};
    struct errctx e = {0};
    sqlite3_stmt *st = row(db, select);

    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(out.len, strlen(want) + 1); /* NUL-terminated */
    assert_string_equal((const char *)out.data, want);
    sqlite3_finalize(st);
    buf_free(&out);
}

static void test_row_name(void **state)
{
    struct fx *f = *state;
    struct schema_column cols[1] = {{.name = "a", .pk = 1}};
    int pk[1] = {0};
    struct schema_table t = {.name = "t", .ncol = 1, .cols = cols, .npk = 1, .pk = pk};
    struct buf out = {0};
    struct errctx e = {0};
    sqlite3_stmt *st;

    expect_name(f->db, "SELECT 'plain-Name_09'", 1, "plain-Name_09");
    expect_name(f->db, "SELECT 'a/b.c d'", 1, "a%2Fb%2Ec%20d");
    expect_name(f->db, "SELECT '..'", 1, "%2E%2E");
    expect_name(f->db, "SELECT 'caf' || char(233)", 1, "caf%C3%A9");
    expect_name(f->db, "SELECT '100%,x'", 1, "100%25%2Cx");
    expect_name(f->db, "SELECT ''", 1, "%");
    expect_name(f->db, "SELECT 42", 1, "42");
    expect_name(f->db, "SELECT -7", 1, "-7");
    expect_name(f->db, "SELECT x'0aff'", 1, "x0aff");
    expect_name(f->db, "SELECT 'site-a', 'heas', '2026-Q1'", 3, "site-a,heas,2026-Q1");
    expect_name(f->db, "SELECT 'a,b', '', 3", 3, "a%2Cb,%,3");

    /* A name of exactly ROW_NAME_MAX bytes is kept; one byte more is cut to
     * ROW_NAME_KEEP bytes + '~' + 64 hex digits, never inside a %XX escape,
     * and two long keys that share their first bytes get different names. */
    st = row(f->db, "SELECT printf('%.*c', 200, 'k')");
    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(strlen((const char *)out.data), ROW_NAME_MAX);
    sqlite3_finalize(st);
    out.len = 0;
    st = row(f->db, "SELECT printf('%.*c', 201, 'k')");
    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(strlen((const char *)out.data), ROW_NAME_KEEP + 1 + 64);
    assert_int_equal(out.data[ROW_NAME_KEEP], '~');
    char first[300];
    snprintf(first, sizeof(first), "%s", (const char *)out.data);
    sqlite3_finalize(st);
    out.len = 0;
    st = row(f->db, "SELECT printf('%.*c', 202, 'k')");
    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_OK);
    assert_string_not_equal((const char *)out.data, first);
    sqlite3_finalize(st);
    out.len = 0;
    /* 127 plain bytes then escapes: byte 128 is the '%' of "%2F", so the cut
     * drops it rather than leave a partial escape */
    st = row(f->db, "SELECT printf('%.*c', 127, 'k') || printf('%.*c', 100, '/')");
    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(strlen((const char *)out.data), 127 + 1 + 64);
    assert_int_equal(out.data[127], '~');
    assert_null(strchr((const char *)out.data, '%'));
    sqlite3_finalize(st);
    out.len = 0;
    /* 126 plain bytes then escapes: bytes 127-128 are "%2", dropped too */
    st = row(f->db, "SELECT printf('%.*c', 126, 'k') || printf('%.*c', 100, '/')");
    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_OK);
    assert_int_equal(strlen((const char *)out.data), 126 + 1 + 64);
    assert_int_equal(out.data[126], '~');
    sqlite3_finalize(st);
    out.len = 0;

    /* A NULL key has no name. */
    st = row(f->db, "SELECT NULL");
    assert_int_equal(gitmap_row_name(&out, st, 0, &t, &e), SYNC_EDATA);
    sqlite3_finalize(st);
    buf_free(&out);
}

static void test_oid(void **state)
{
    uint8_t oid[GITMAP_OID_LEN], back[GITMAP_OID_LEN];
    char hex[41];
    struct errctx e = {0};

    (void)state;
    assert_int_equal(gitmap_oid_parse(oid, EMPTY_TREE, &e), SYNC_OK);
    gitmap_oid_hex(hex, oid);
    assert_string_equal(hex, EMPTY_TREE);
    assert_int_equal(oid[0], 0x4b);
    assert_int_equal(oid[19], 0x04);
    assert_int_equal(gitmap_oid_parse(back, hex, &e), SYNC_OK);
    assert_memory_equal(oid, back, GITMAP_OID_LEN);

    assert_int_equal(gitmap_oid_parse(oid, NULL, &e), SYNC_EPROTO);
    assert_int_equal(gitmap_oid_parse(oid, "", &e), SYNC_EPROTO);
    assert_int_equal(gitmap_oid_parse(oid, "4b825dc642cb6eb9a060e54bf8d69288fbee490", &e),
                     SYNC_EPROTO);
    assert_int_equal(gitmap_oid_parse(oid, "4b825dc642cb6eb9a060e54bf8d69288fbee49044", &e),
                     SYNC_EPROTO);
    assert_int_equal(gitmap_oid_parse(oid, "4b825dc642cb6eb9a060e54bf8d69288fbee490g", &e),
                     SYNC_EPROTO);
    assert_int_equal(gitmap_oid_parse(oid, " 4b825dc642cb6eb9a060e54bf8d69288fbee490", &e),
                     SYNC_EPROTO);
    assert_int_equal(gitmap_oid_parse(oid, "4b825dc642cb6eb9a060e54bf8d69288fbee490\n", &e),
                     SYNC_EPROTO);
    assert_int_equal(e.code, SYNC_EPROTO);
}

/* ---- trees ------------------------------------------------------------------- */

static void test_empty_dataset(void **state)
{
    struct fx *f = *state;
    uint8_t t[GITMAP_OID_LEN];

    full(t, f->disk, f->db);
    assert_oid_hex(t, EMPTY_TREE);
    full(t, f->mem, f->db);
    assert_oid_hex(t, EMPTY_TREE);

    /* Local rows alone are not part of the dataset. */
    exec(f->db, "INSERT INTO member VALUES (1, 'CANARY', 'c', 'n')");
    full(t, f->disk, f->db);
    assert_oid_hex(t, EMPTY_TREE);
}

static void test_full_disk_equals_memory(void **state)
{
    struct fx *f = *state;
    uint8_t a[GITMAP_OID_LEN], b[GITMAP_OID_LEN], c[GITMAP_OID_LEN];

    seed(f->db);
    full(a, f->disk, f->db);
    full(b, f->mem, f->db);
    assert_memory_equal(a, b, GITMAP_OID_LEN);
    full(c, f->mem, f->db); /* stable when repeated */
    assert_memory_equal(a, c, GITMAP_OID_LEN);

    /* Any change to a replicated row changes the id; a local one does not. */
    exec(f->db, "UPDATE metric_value SET value = 0.2 WHERE period = '2026-Q2'");
    full(c, f->mem, f->db);
    assert_memory_not_equal(a, c, GITMAP_OID_LEN);
    exec(f->db, "UPDATE metric_value SET value = 0.1 WHERE period = '2026-Q2';"
                "UPDATE member SET notes = 'changed'; DELETE FROM hea");
    full(c, f->mem, f->db);
    assert_memory_equal(a, c, GITMAP_OID_LEN);

    /* The integer 22 written to a REAL column is stored as 22.0: same tree. */
    exec(f->db, "UPDATE metric_value SET value = 22 WHERE period = '2026-Q1'");
    full(c, f->mem, f->db);
    assert_memory_equal(a, c, GITMAP_OID_LEN);
}

/* Marks keys of resource as touched: a fresh temp._touched_* set-up. */
static void touch_resource(sqlite3 *db, const char *ids_sql)
{
    struct errctx e = {0};
    char sql[512];

    assert_int_equal(changeset_touched_reset(db, NULL, g_s, &e), SYNC_OK);
    snprintf(sql, sizeof(sql), "INSERT INTO temp." TOUCHED_PREFIX "resource %s", ids_sql);
    exec(db, sql);
}

static void test_incremental_equals_full(void **state)
{
    struct fx *f = *state;
    uint8_t t0[GITMAP_OID_LEN], t1[GITMAP_OID_LEN], want[GITMAP_OID_LEN];
    struct errctx e = {0};

    seed(f->db);
    exec(f->db, "WITH RECURSIVE c(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM c WHERE i < 400) "
                "INSERT INTO resource (id, title) SELECT 'r-' || i, 'title ' || i FROM c");
    full(t0, f->disk, f->db);

    /* Nothing touched: the same tree. */
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    update(t1, f->disk, t0, f->db);
    assert_memory_equal(t0, t1, GITMAP_OID_LEN);

    /* One row changed. */
    exec(f->db, "UPDATE resource SET title = 'Renamed' WHERE id = 'r-1'");
    touch_resource(f->db, "VALUES ('r-1')");
    update(t1, f->disk, t0, f->db);
    full(want, f->disk, f->db);
    assert_memory_equal(t1, want, GITMAP_OID_LEN);
    assert_memory_not_equal(t0, t1, GITMAP_OID_LEN);

    /* A delete, an insert, and a touched key whose row never existed. */
    memcpy(t0, t1, GITMAP_OID_LEN);
    exec(f->db, "DELETE FROM resource WHERE id = 'r-200';"
                "INSERT INTO resource (id, title) VALUES ('r-new', 'New')");
    touch_resource(f->db, "VALUES ('r-200'), ('r-new'), ('r-never')");
    update(t1, f->disk, t0, f->db);
    full(want, f->disk, f->db);
    assert_memory_equal(t1, want, GITMAP_OID_LEN);

    /* A whole table emptied, through touched keys: the table disappears. */
    memcpy(t0, t1, GITMAP_OID_LEN);
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    exec(f->db, "INSERT INTO temp." TOUCHED_PREFIX "metric_value "
                "SELECT site_id, metric, period FROM metric_value;"
                "DELETE FROM metric_value");
    update(t1, f->disk, t0, f->db);
    full(want, f->disk, f->db);
    assert_memory_equal(t1, want, GITMAP_OID_LEN);

    /* An incremental build from the empty tree (NULL base) with every key
     * touched, in memory, equals the full tree too. */
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    exec(f->db, "INSERT INTO temp." TOUCHED_PREFIX "resource SELECT id FROM resource;"
                "INSERT INTO temp." TOUCHED_PREFIX "metric SELECT code FROM metric;"
                "INSERT INTO temp." TOUCHED_PREFIX "site SELECT site_id FROM site;");
    update(t1, f->mem, NULL, f->db);
    assert_memory_equal(t1, want, GITMAP_OID_LEN);

    /* Everything deleted: the empty tree. */
    memcpy(t0, want, GITMAP_OID_LEN);
    exec(f->db, "DELETE FROM resource; DELETE FROM metric; DELETE FROM site;");
    update(t1, f->disk, t0, f->db);
    assert_oid_hex(t1, EMPTY_TREE);
    full(t1, f->disk, f->db);
    assert_oid_hex(t1, EMPTY_TREE);
}

static void test_update_bad_base(void **state)
{
    struct fx *f = *state;
    uint8_t t[GITMAP_OID_LEN], bogus[GITMAP_OID_LEN];
    struct errctx e = {0};

    memset(bogus, 0xab, sizeof(bogus));
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    assert_int_equal(gitmap_tree_update(t, f->disk, bogus, f->db, g_s, "", &e), SYNC_EIO);
    assert_non_null(strstr(e.msg, "tree"));
    /* No temp._touched_* tables at all: an error, not a crash. */
    {
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
        assert_int_equal(gitmap_tree_update(t, f->disk, NULL, db, g_s, "", &e), SYNC_EIO);
        assert_int_equal(gitmap_tree_full(t, f->disk, db, g_s, "", &e), SYNC_EIO);
        sqlite3_close(db);
    }
}

/* An incremental update from base into out must equal the full tree. */
static void update_equals_full(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t *base,
                               sqlite3 *db)
{
    uint8_t want[GITMAP_OID_LEN];
    update(out, g, base, db);
    full(want, g, db);
    assert_memory_equal(out, want, GITMAP_OID_LEN);
}

/* ---- layouts ---------------------------------------------------------------------- */

static void test_layouts(void **state)
{
    struct fx *f = *state;
    uint8_t t1[GITMAP_OID_LEN], t2[GITMAP_OID_LEN], u[GITMAP_OID_LEN];
    char shard[GITMAP_SHARD_MAX], two[6];
    struct errctx e = {0};
    int layout = -5;

    /* shard paths: "ab/cd" in layout 2, "ab" in layout 1 */
    shard_hex(two, "r-1");
    gitmap_row_shard(shard, 2, "r-1");
    assert_string_equal(shard, two);
    gitmap_row_shard(shard, 1, "r-1");
    assert_int_equal(strlen(shard), 2);
    assert_memory_equal(shard, two, 2);

    seed(f->db);
    exec(f->db, "WITH RECURSIVE c(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM c WHERE i < 400) "
                "INSERT INTO resource (id, title) SELECT 'r-' || i, 'title ' || i FROM c");
    assert_int_equal(gitmap_layout(f->disk), GITMAP_LAYOUT);
    full(t2, f->disk, f->db);
    assert_int_equal(gitmap_tree_layout(&layout, f->disk, t2, &e), SYNC_OK);
    assert_int_equal(layout, 2);

    gitmap_set_layout(f->disk, 1);
    assert_int_equal(gitmap_layout(f->disk), 1);
    full(t1, f->disk, f->db);
    assert_memory_not_equal(t1, t2, GITMAP_OID_LEN); /* the same rows, another hash */
    assert_int_equal(gitmap_tree_layout(&layout, f->disk, t1, &e), SYNC_OK);
    assert_int_equal(layout, 1);

    /* incremental equals full in layout 1 as in layout 2 */
    exec(f->db, "UPDATE resource SET title = 'Renamed' WHERE id = 'r-1';"
                "DELETE FROM resource WHERE id = 'r-200'");
    touch_resource(f->db, "VALUES ('r-1'), ('r-200')");
    update_equals_full(u, f->disk, t1, f->db);
    gitmap_set_layout(f->disk, 2);
    update_equals_full(u, f->disk, t2, f->db);

    /* the empty tree is either layout */
    exec(f->db, "DELETE FROM resource; DELETE FROM metric; DELETE FROM site; "
                "DELETE FROM metric_value");
    full(u, f->disk, f->db);
    assert_oid_hex(u, EMPTY_TREE);
    assert_int_equal(gitmap_tree_layout(&layout, f->disk, u, &e), SYNC_OK);
    assert_int_equal(layout, 0);
    /* an unknown id is an error */
    memset(u, 0xab, sizeof(u));
    assert_int_equal(gitmap_tree_layout(&layout, f->disk, u, &e), SYNC_EIO);
}

/* ---- a site's tree store ----------------------------------------------------- */

static long long count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long n;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Every row of the store is a git tree whose id is the SHA-1 of its body
 * with git's header, and the root row names root. */
static void assert_store_sound(sqlite3 *db, const uint8_t root[GITMAP_OID_LEN])
{
    sqlite3_stmt *st = NULL;
    int rows = 0, roots = 0;

    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT path, oid, body FROM " GITMAP_STORE_TABLE, -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        char hdr[32];
        int hl = snprintf(hdr, sizeof(hdr), "tree %d", sqlite3_column_bytes(st, 2)) + 1;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        assert_non_null(c);
        assert_int_equal(EVP_DigestInit_ex(c, EVP_sha1(), NULL), 1);
        assert_int_equal(EVP_DigestUpdate(c, hdr, (size_t)hl), 1);
        assert_int_equal(
            EVP_DigestUpdate(c, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2)),
            1);
        assert_int_equal(EVP_DigestFinal_ex(c, md, &n), 1);
        EVP_MD_CTX_free(c);
        assert_int_equal(sqlite3_column_bytes(st, 1), GITMAP_OID_LEN);
        assert_memory_equal(md, sqlite3_column_blob(st, 1), GITMAP_OID_LEN);
        if (strcmp((const char *)sqlite3_column_text(st, 0), "") == 0) {
            roots++;
            assert_memory_equal(sqlite3_column_blob(st, 1), root, GITMAP_OID_LEN);
        }
        rows++;
    }
    sqlite3_finalize(st);
    assert_int_equal(roots, 1);
    assert_true(rows > 1);
}

static void test_tree_store(void **state)
{
    struct fx *f = *state;
    struct gitmap *st = NULL;
    uint8_t t0[GITMAP_OID_LEN], t1[GITMAP_OID_LEN], want[GITMAP_OID_LEN], held[GITMAP_OID_LEN];
    struct errctx e = {0};
    int found = 1;
    long long before;

    exec(f->db, GITMAP_STORE_DDL);
    seed(f->db);
    exec(f->db, "WITH RECURSIVE c(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM c WHERE i < 600) "
                "INSERT INTO resource (id, title) SELECT 'r-' || i, 'title ' || i FROM c");

    /* Empty store: no root.  A full build fills it; the root matches. */
    assert_int_equal(gitmap_open_store(&st, f->db, &e), SYNC_OK);
    assert_int_equal(gitmap_store_root(held, &found, st, &e), SYNC_OK);
    assert_int_equal(found, 0);
    full(t0, st, f->db);
    full(want, f->mem, f->db);
    assert_memory_equal(t0, want, GITMAP_OID_LEN);
    assert_int_equal(count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE), 0); /* not yet */
    assert_int_equal(gitmap_store_save(st, &e), SYNC_OK);
    assert_store_sound(f->db, t0);
    /* root, four tables, and more than 200 shards of resource's 600 rows */
    assert_true(count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE
                             " WHERE path LIKE 'resource/%'") > 200);
    assert_int_equal(count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE
                                  " WHERE path NOT LIKE '%/%' AND path <> ''"),
                     4);
    assert_int_equal(count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE
                                  " WHERE path LIKE 'member%' OR path LIKE 'hea%'"),
                     0); /* local tables never */
    gitmap_free(st);
    st = NULL;

    /* A fresh gitmap over the same store: the trees come from the table. */
    assert_int_equal(gitmap_open_store(&st, f->db, &e), SYNC_OK);
    assert_int_equal(gitmap_store_root(held, &found, st, &e), SYNC_OK);
    assert_int_equal(found, 1);
    assert_memory_equal(held, t0, GITMAP_OID_LEN);
    before = count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE);
    exec(f->db, "UPDATE resource SET title = 'Renamed' WHERE id = 'r-1';"
                "DELETE FROM resource WHERE id = 'r-300';"
                "INSERT INTO resource (id, title) VALUES ('r-new', 'New')");
    touch_resource(f->db, "VALUES ('r-1'), ('r-300'), ('r-new')");
    update(t1, st, t0, f->db);
    full(want, f->mem, f->db);
    assert_memory_equal(t1, want, GITMAP_OID_LEN);
    assert_int_equal(gitmap_store_save(st, &e), SYNC_OK);
    assert_store_sound(f->db, t1);
    assert_true(count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE) >= before - 1);

    /* A table emptied: its row and its shards' rows leave the store. */
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    exec(f->db, "INSERT INTO temp." TOUCHED_PREFIX "metric_value "
                "SELECT site_id, metric, period FROM metric_value;"
                "DELETE FROM metric_value");
    memcpy(t0, t1, GITMAP_OID_LEN);
    update(t1, st, t0, f->db);
    full(want, f->mem, f->db);
    assert_memory_equal(t1, want, GITMAP_OID_LEN);
    assert_int_equal(gitmap_store_save(st, &e), SYNC_OK);
    assert_store_sound(f->db, t1);
    assert_int_equal(
        count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE " WHERE path LIKE 'metric_value%'"),
        0);

    /* A full build replaces the store: nothing stale is left. */
    exec(f->db, "INSERT INTO " GITMAP_STORE_TABLE " (path, oid, body) VALUES ('stale/00', "
                "x'00', x'00')");
    full(t0, st, f->db);
    assert_int_equal(gitmap_store_save(st, &e), SYNC_OK);
    assert_store_sound(f->db, t0);
    assert_int_equal(
        count(f->db, "SELECT count(*) FROM " GITMAP_STORE_TABLE " WHERE path LIKE 'stale%'"), 0);

    /* A shard missing from the store: the update says so, it does not guess. */
    exec(f->db, "DELETE FROM " GITMAP_STORE_TABLE
                " WHERE path = (SELECT min(path) FROM " GITMAP_STORE_TABLE
                " WHERE path LIKE 'resource/%')");
    gitmap_free(st);
    assert_int_equal(gitmap_open_store(&st, f->db, &e), SYNC_OK);
    assert_int_equal(changeset_touched_reset(f->db, NULL, g_s, &e), SYNC_OK);
    exec(f->db, "INSERT INTO temp." TOUCHED_PREFIX "resource SELECT id FROM resource");
    assert_int_equal(gitmap_tree_update(t1, st, t0, f->db, g_s, "", &e), SYNC_EIO);
    gitmap_free(st);

    /* Not a store: saving is refused. */
    assert_int_equal(gitmap_store_save(f->mem, &e), SYNC_EUSAGE);
}

/* ---- commits, the branch, and the git CLI ------------------------------------- */

static void test_commit_and_git_cli(void **state)
{
    struct fx *f = *state;
    uint8_t tree[GITMAP_OID_LEN], c1[GITMAP_OID_LEN], c2[GITMAP_OID_LEN], h[GITMAP_OID_LEN];
    char cmd[512], hex[41], shard[6];
    struct errctx e = {0};
    int found = -1, status = -1;
    char *out;

    assert_int_equal(gitmap_head(h, &found, f->disk, &e), SYNC_OK);
    assert_int_equal(found, 0);

    seed(f->db);
    full(tree, f->disk, f->db);
    assert_int_equal(
        gitmap_commit(c1, f->disk, tree, NULL, "site-a", 1767225600, "push 1 from site-a\n", &e),
        SYNC_OK);
    /* The branch does not move by itself. */
    assert_int_equal(gitmap_head(h, &found, f->disk, &e), SYNC_OK);
    assert_int_equal(found, 0);
    assert_int_equal(gitmap_set_head(f->disk, c1, "test: first", &e), SYNC_OK);
    assert_int_equal(gitmap_head(h, &found, f->disk, &e), SYNC_OK);
    assert_int_equal(found, 1);
    assert_memory_equal(h, c1, GITMAP_OID_LEN);

    exec(f->db, "UPDATE resource SET title = 'Equity toolkit v2' WHERE id = 'r-1'");
    full(tree, f->disk, f->db);
    assert_int_equal(gitmap_commit(c2, f->disk, tree, c1, "site-b", 1767229200, "push 2\n", &e),
                     SYNC_OK);
    assert_int_equal(gitmap_set_head(f->disk, c2, "test: second", &e), SYNC_OK);
    assert_int_equal(gitmap_head(h, &found, f->disk, &e), SYNC_OK);
    assert_memory_equal(h, c2, GITMAP_OID_LEN);

    /* The same commit made again (another process, same inputs) has the same id. */
    assert_int_equal(gitmap_commit(h, f->disk, tree, c1, "site-b", 1767229200, "push 2\n", &e),
                     SYNC_OK);
    assert_memory_equal(h, c2, GITMAP_OID_LEN);

    /* A parent that does not exist is refused. */
    memset(h, 0x11, sizeof(h));
    assert_int_equal(gitmap_commit(c1, f->disk, tree, h, "site-b", 1, "x\n", &e), SYNC_EIO);

    /* git itself finds a valid repository. */
    snprintf(cmd, sizeof(cmd), "git -C '%s' fsck --strict --no-progress 2>&1", f->repo);
    out = run(cmd, &status);
    if (status != 0)
        fail_msg("git fsck --strict failed: %s", out);
    free(out);

    snprintf(cmd, sizeof(cmd), "git -C '%s' rev-parse HEAD 2>&1", f->repo);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    gitmap_oid_hex(hex, c2);
    assert_int_equal(strncmp(out, hex, 40), 0);
    free(out);

    snprintf(cmd, sizeof(cmd), "git -C '%s' cat-file -p 'HEAD^{tree}' 2>&1", f->repo);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    gitmap_oid_hex(hex, tree);
    assert_non_null(strstr(out, "\tmetric\n"));
    assert_non_null(strstr(out, "\tmetric_value\n"));
    assert_non_null(strstr(out, "\tresource\n"));
    assert_non_null(strstr(out, "\tsite\n"));
    assert_null(strstr(out, "member"));
    assert_null(strstr(out, "hea/"));
    assert_null(strstr(out, "impact_partner"));
    assert_null(strstr(out, "compensation"));
    free(out);

    snprintf(cmd, sizeof(cmd), "git -C '%s' rev-parse 'HEAD^{tree}' 2>&1", f->repo);
    out = run(cmd, &status);
    assert_int_equal(strncmp(out, hex, 40), 0);
    free(out);

    /* The commit's author, time and parent are as given. */
    snprintf(cmd, sizeof(cmd), "git -C '%s' cat-file -p HEAD 2>&1", f->repo);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "author site-b <site-b@sites.empact> 1767229200 +0000\n"));
    assert_non_null(strstr(out, "committer site-b <site-b@sites.empact> 1767229200 +0000\n"));
    gitmap_oid_hex(hex, c1);
    assert_non_null(strstr(out, hex));
    assert_non_null(strstr(out, "\n\npush 2\n"));
    free(out);

    /* A row is a file in its shard, holding its canonical text. */
    shard_hex(shard, "r-1");
    snprintf(cmd, sizeof(cmd), "git -C '%s' show 'HEAD:resource/%s/r-1' 2>&1", f->repo, shard);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    assert_string_equal(out, "id: \"r-1\"\n"
                             "title: \"Equity toolkit v2\"\n"
                             "url: \"https://example.org/1\"\n"
                             "summary: null\n"
                             "kind: null\n"
                             "language: \"en\"\n"
                             "phm_component: null\n"
                             "oht_block: 2\n"
                             "population_group: null\n"
                             "added_by_site: null\n"
                             "updated_at: null\n");
    free(out);
    shard_hex(shard, "site-a,heas,2026-Q2");
    snprintf(cmd, sizeof(cmd), "git -C '%s' show 'HEAD:metric_value/%s/site-a,heas,2026-Q2' 2>&1",
             f->repo, shard);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    assert_non_null(strstr(out, "value: 0.10000000000000001\n"));
    free(out);

    /* Every path: table/ab/cd/name, and no local row anywhere. */
    snprintf(cmd, sizeof(cmd), "git -C '%s' ls-tree -r --name-only HEAD 2>&1", f->repo);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    shard_hex(shard, "r%2F3%20odd%2Ename");
    {
        char want[128];
        snprintf(want, sizeof(want), "resource/%s/r%%2F3%%20odd%%2Ename\n", shard);
        assert_non_null(strstr(out, want));
    }
    {
        int lines = 0;
        for (char *p = out; *p; p++)
            lines += *p == '\n';
        assert_int_equal(lines, 3 + 1 + 1 + 2);
    }
    assert_null(strstr(out, "CANARY"));
    free(out);

    /* The canary is in no object of the repository. */
    snprintf(cmd, sizeof(cmd),
             "git -C '%s' cat-file --batch-all-objects --batch 2>&1 | grep -c CANARY", f->repo);
    out = run(cmd, &status);
    assert_string_equal(out, "0\n");
    free(out);

    /* The repository reopens with the same head. */
    gitmap_free(f->disk);
    f->disk = NULL;
    assert_int_equal(gitmap_open(&f->disk, f->repo, &e), SYNC_OK);
    assert_int_equal(gitmap_head(h, &found, f->disk, &e), SYNC_OK);
    assert_int_equal(found, 1);
    assert_memory_equal(h, c2, GITMAP_OID_LEN);
}

/* The on-disk history keeps the trees it wrote and read (a cache by id):
 * versions built one on another, a build retried from the version before
 * (a batch rolled back), and the history reopened with the cache carried
 * over (as the hub does after a fold) must all give the tree a full build
 * of the same rows gives. */
static void test_tree_cache_versions(void **state)
{
    struct fx *f = *state;
    uint8_t t0[GITMAP_OID_LEN], t1[GITMAP_OID_LEN], again[GITMAP_OID_LEN], want[GITMAP_OID_LEN];
    struct errctx e = {0};
    char sql[600];
    unsigned seed_r = 7;

    seed(f->db);
    exec(f->db, "WITH RECURSIVE c(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM c WHERE i < 3000) "
                "INSERT INTO resource (id, title) SELECT 'r-' || i, 'title ' || i FROM c");
    full(t0, f->disk, f->db);
    for (int round = 0; round < 40; round++) {
        int a = (int)(rand_r(&seed_r) % 3000) + 10, b = (int)(rand_r(&seed_r) % 3000) + 10;
        snprintf(sql, sizeof(sql),
                 "UPDATE resource SET title = 'v%d' WHERE id = 'r-%d';"
                 "DELETE FROM resource WHERE id = 'r-%d';"
                 "INSERT OR REPLACE INTO resource (id, title) VALUES ('n-%d', 'new');",
                 round, a, b, round);
        exec(f->db, sql);
        snprintf(sql, sizeof(sql), "VALUES ('r-%d'), ('r-%d'), ('n-%d')", a, b, round);
        touch_resource(f->db, sql);
        update(t1, f->disk, t0, f->db);
        full(want, f->mem, f->db);
        assert_memory_equal(t1, want, GITMAP_OID_LEN);
        if (round % 7 == 3) { /* the same build again from the version before */
            update(again, f->disk, t0, f->db);
            assert_memory_equal(again, want, GITMAP_OID_LEN);
        }
        if (round % 10 == 5) { /* reopened, the cache carried over */
            struct gitmap *fresh = NULL;
            uint8_t c[GITMAP_OID_LEN];
            assert_int_equal(gitmap_commit(c, f->disk, t1, NULL, "site-a", 1767225600, "v\n", &e),
                             SYNC_OK);
            assert_int_equal(gitmap_set_head(f->disk, c, "test", &e), SYNC_OK);
            assert_int_equal(gitmap_open(&fresh, f->repo, &e), SYNC_OK);
            gitmap_carry(fresh, f->disk);
            gitmap_free(f->disk);
            f->disk = fresh;
        }
        memcpy(t0, t1, GITMAP_OID_LEN);
    }
    /* A version built then discarded (its batch failed): its trees are not
     * on disk, so they are not in the cache either: a build on it fails as it
     * would without the cache, and the version before (on disk) still
     * builds. */
    {
        uint8_t c[GITMAP_OID_LEN];
        assert_int_equal(gitmap_commit(c, f->disk, t0, NULL, "site-a", 1767225600, "v\n", &e),
                         SYNC_OK);
        assert_int_equal(gitmap_set_head(f->disk, c, "test", &e), SYNC_OK);
    }
    exec(f->db, "UPDATE resource SET title = 'gone' WHERE id = 'r-77'");
    touch_resource(f->db, "VALUES ('r-77')");
    update(t1, f->disk, t0, f->db);
    assert_int_equal(gitmap_discard(f->disk, &e), SYNC_OK);
    assert_int_equal(gitmap_tree_update(again, f->disk, t1, f->db, g_s, "", &e), SYNC_EIO);
    update(again, f->disk, t0, f->db);
    assert_memory_equal(again, t1, GITMAP_OID_LEN);
}

static void test_repo_errors(void **state)
{
    struct fx *f = *state;
    struct gitmap *g = NULL;
    struct errctx e = {0};
    char path[128];

    /* An existing repository is not initialised again. */
    assert_int_equal(gitmap_init(f->repo, &e), SYNC_EIO);
    snprintf(path, sizeof(path), "%s/missing.git", f->dir);
    assert_int_equal(gitmap_open(&g, path, &e), SYNC_EIO);
    assert_null(g);
    assert_non_null(strstr(e.msg, "history repository"));
    gitmap_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_row_text, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_row_name, fx_setup, fx_teardown),
        cmocka_unit_test(test_oid),
        cmocka_unit_test_setup_teardown(test_empty_dataset, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_equals_memory, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tree_cache_versions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_incremental_equals_full, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_update_bad_base, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tree_store, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_layouts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_commit_and_git_cli, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_repo_errors, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
