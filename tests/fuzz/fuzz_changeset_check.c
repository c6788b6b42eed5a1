/*
 * fuzz_changeset_check.c - libFuzzer target for the hub's check of a push.
 *
 * The input is a changeset as a site pushes it (raw bytes off the wire),
 * checked by changeset_check_push() against the compiled-in schema for site
 * "toronto".  A refusal must come with a known code and a message.  When the
 * check accepts, the bytes go on as the hub would take them:
 * changeset_count() must agree with the number of changes the check saw, and
 * sqlite3changeset_apply_v2() (conflicts omitted) runs on a scratch
 * in-memory database holding every table of the schema, inside a
 * transaction that is rolled back afterwards.  The apply may refuse, but
 * must not crash, and must leave no row in a local or hub table and no row
 * of an owned table whose site_id is not "toronto".  Any broken invariant
 * aborts.
 *
 * fuzz-sources: common/changeset.c common/schema.c common/db.c common/buf.c common/errctx.c
 * fuzz-sources: build/schema_sql.c
 * fuzz-pkgs: sqlite3 openssl
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "changeset.h"
#include "db.h"
#include "schema.h"

#define SITE "toronto"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_changeset_check: invariant failed at line %d: %s\n", __LINE__,   \
                    #c);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct schema *schema;
static sqlite3 *scratch;
/* One statement per table that counts the rows the push must not have made. */
static sqlite3_stmt **forbidden;

static void setup(void)
{
    struct errctx e = {0};

    CHECK(schema_load(&schema, &e) == SYNC_OK);
    CHECK(sqlite3_open(":memory:", &scratch) == SQLITE_OK);
    CHECK((forbidden = calloc((size_t)schema->ntable, sizeof(*forbidden))) != NULL);
    for (int i = 0; i < schema->ntable; i++) {
        const struct schema_table *t = &schema->tables[i];
        char *sql = NULL;

        CHECK(db_exec(scratch, t->create_sql, "creating a table", &e) == SYNC_OK);
        if (t->cls == CLASS_LOCAL || t->cls == CLASS_HUB)
            sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", t->name);
        else if (t->cls == CLASS_OWNED)
            sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\" WHERE \"%w\" IS NOT '" SITE "'",
                                  t->name, t->cols[t->site_col].name);
        if (sql == NULL)
            continue;
        CHECK(sqlite3_prepare_v2(scratch, sql, -1, &forbidden[i], NULL) == SQLITE_OK);
        sqlite3_free(sql);
    }
}

static int omit_conflict(void *ctx, int conflict, sqlite3_changeset_iter *it)
{
    (void)ctx;
    (void)conflict;
    (void)it;
    return SQLITE_CHANGESET_OMIT;
}

static void apply_scratch(const uint8_t *data, size_t size)
{
    struct errctx e = {0};

    CHECK(db_exec(scratch, "BEGIN", "starting", &e) == SYNC_OK);
    /* A refusal here is the hub's "does not fit the hub's tables": allowed. */
    (void)sqlite3changeset_apply_v2(scratch, (int)size, (void *)data, NULL, omit_conflict, NULL,
                                    NULL, NULL, 0);
    for (int i = 0; i < schema->ntable; i++) {
        sqlite3_stmt *st = forbidden[i];

        if (st == NULL)
            continue;
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        if (sqlite3_column_int64(st, 0) != 0) {
            fprintf(stderr, "fuzz_changeset_check: accepted push wrote a forbidden row to %s\n",
                    schema->tables[i].name);
            abort();
        }
        sqlite3_reset(st);
    }
    CHECK(db_exec(scratch, "ROLLBACK", "rolling back", &e) == SYNC_OK);
    CHECK(sqlite3_get_autocommit(scratch));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct errctx e = {0};
    int nchanges = -1, count = -1, rc;

    if (schema == NULL)
        setup();
    rc = changeset_check_push(schema, data, size, SITE, &nchanges, &e);
    if (rc != SYNC_OK) {
        CHECK(rc == SYNC_EPROTO || rc == SYNC_ELIMIT || rc == SYNC_EREFUSED);
        CHECK(e.code == rc && e.msg[0] != '\0');
        CHECK(strnlen(e.msg, sizeof(e.msg)) < sizeof(e.msg));
        return 0;
    }
    CHECK(nchanges >= 0 && (size > 0 || nchanges == 0));
    CHECK(changeset_count(data, size, &count, &e) == SYNC_OK);
    CHECK(count == nchanges);
    if (size > 0)
        apply_scratch(data, size);
    return 0;
}
