/*
 * test_status.c - `empact-hub status` (server/status.c) and the records it
 * reads (hub_site_synced, hub_site_refused in server/hub.c), on a real hub
 * made with hub_create() in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hub.h"
#include "limits.h"
#include "schema.h"
#include "status.h"

struct fx {
    char dir[64];
    struct schema *s;
    struct hub *h;
    sqlite3 *db;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct errctx e = {0, ""};
    struct hub_cert cert = {"00", "2030-01-01T00:00:00Z", "127.0.0.1:1"};

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_status.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(schema_load(&f->s, &e), SYNC_OK);
    assert_int_equal(hub_create(f->dir, f->s, &e), SYNC_OK);
    assert_int_equal(hub_open(&f->h, f->dir, f->s, &e), SYNC_OK);
    assert_int_equal(hub_add_site(f->h, "alpha", "Alpha", NULL, &cert, &e), SYNC_OK);
    assert_int_equal(hub_add_site(f->h, "beta", "Beta", NULL, &cert, &e), SYNC_OK);
    assert_int_equal(hub_reader_open(&f->db, f->dir, &e), SYNC_OK);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    sqlite3_close(f->db);
    hub_close(f->h);
    schema_free(f->s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* The site object of id in a status object. */
static const cJSON *site_of(const cJSON *st, const char *id)
{
    const cJSON *o;

    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(st, "sites"))
    {
        if (strcmp(cJSON_GetObjectItemCaseSensitive(o, "site_id")->valuestring, id) == 0)
            return o;
    }
    fail_msg("no site %s in the status", id);
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_stale_rule(void **state)
{
    (void)state;
    assert_true(status_is_stale(-1, 1000000, 24));                   /* never synced */
    assert_false(status_is_stale(1000000, 1000000, 24));             /* just now */
    assert_false(status_is_stale(1000000 - 24 * 3600, 1000000, 24)); /* exactly H hours */
    assert_true(status_is_stale(1000000 - 24 * 3600 - 1, 1000000, 24));
    assert_false(status_is_stale(1000000 - 2 * 3600, 1000000, 3));
}

static void test_never_synced_is_stale(void **state)
{
    struct fx *f = *state;
    struct errctx e = {0, ""};
    int nstale = -1;
    cJSON *st = status_build(f->db, (long long)time(NULL), 24, &nstale, &e);

    assert_non_null(st);
    assert_int_equal(nstale, 2);
    assert_int_equal((int)num(st, "stale_sites"), 2);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(site_of(st, "alpha"), "lag")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(site_of(st, "alpha"), "last_sync")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(site_of(st, "beta"), "stale")));
    cJSON_Delete(st);
}

static void test_synced_version_and_lag(void **state)
{
    struct fx *f = *state;
    struct errctx e = {0, ""};
    uint64_t head;
    int nstale;
    cJSON *st;

    assert_int_equal(hub_head(f->db, &head, &e), SYNC_OK);
    assert_true(head >= 3);
    assert_int_equal(hub_site_synced(f->h, "alpha", head - 2, &e), SYNC_OK);
    /* a connection that pulled nothing keeps the version known before */
    assert_int_equal(hub_site_synced(f->h, "alpha", 0, &e), SYNC_OK);
    st = status_build(f->db, (long long)time(NULL), 24, &nstale, &e);
    assert_non_null(st);
    assert_int_equal(nstale, 1); /* beta still never synced */
    assert_int_equal((int)num(site_of(st, "alpha"), "synced_version"), (int)(head - 2));
    assert_int_equal((int)num(site_of(st, "alpha"), "lag"), 2);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(site_of(st, "alpha"), "stale")));
    cJSON_Delete(st);
    /* 25 hours later alpha is stale by the default rule, fresh with H = 48 */
    st = status_build(f->db, (long long)time(NULL) + 25 * 3600, 24, &nstale, &e);
    assert_int_equal(nstale, 2);
    cJSON_Delete(st);
    st = status_build(f->db, (long long)time(NULL) + 25 * 3600, 48, &nstale, &e);
    assert_int_equal(nstale, 1);
    cJSON_Delete(st);
}

static void test_refusals_counted_and_bounded(void **state)
{
    struct fx *f = *state;
    struct errctx e = {0, ""};
    int nstale;
    cJSON *st;
    sqlite3_stmt *q;

    /* a refusal older than REFUSAL_KEEP_DAYS, written by hand */
    assert_int_equal(sqlite3_exec(f->db,
                                  "INSERT INTO _empact_refusal (site_id, at, reason) VALUES "
                                  "('beta', strftime('%s','now') - 31 * 86400, 'old')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(hub_site_refused(f->h, "alpha", "push refused: owned row", &e), SYNC_OK);
    assert_int_equal(hub_site_refused(f->h, "alpha", "revoked", &e), SYNC_OK);
    assert_int_equal(hub_site_refused(f->h, "nobody", "not registered", &e), SYNC_OK);
    st = status_build(f->db, (long long)time(NULL), 24, &nstale, &e);
    assert_non_null(st);
    assert_int_equal((int)num(site_of(st, "alpha"), "refusals_24h"), 2);
    assert_int_equal((int)num(site_of(st, "beta"), "refusals_24h"), 0);
    cJSON_Delete(st);
    assert_int_equal(
        sqlite3_prepare_v2(f->db,
                           "SELECT count(*) FILTER (WHERE site_id = 'nobody'), "
                           "count(*) FILTER (WHERE reason = 'old') FROM _empact_refusal",
                           -1, &q, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 0); /* unregistered: not recorded */
    assert_int_equal(sqlite3_column_int(q, 1), 0); /* over 30 days: dropped */
    sqlite3_finalize(q);
}

static void test_revoked_site_is_not_stale(void **state)
{
    struct fx *f = *state;
    struct errctx e = {0, ""};
    int already, nstale;
    cJSON *st;

    assert_int_equal(hub_site_revoke(f->h, "beta", &already, &e), SYNC_OK);
    st = status_build(f->db, (long long)time(NULL), 24, &nstale, &e);
    assert_non_null(st);
    assert_int_equal(nstale, 1); /* alpha only */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(site_of(st, "beta"), "revoked")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(site_of(st, "beta"), "stale")));
    cJSON_Delete(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_rule),
        cmocka_unit_test_setup_teardown(test_never_synced_is_stale, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_synced_version_and_lag, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refusals_counted_and_bounded, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_revoked_site_is_not_stale, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
