/*
 * dict.c - training, storing and caching the hub's compression dictionaries.
 *
 * A sample is one row of a replicated table written as the one-row INSERT
 * changeset a site would push for it (table header and values, as the
 * session extension writes them); every other sample starts with an edit time
 * as a PUSH payload does.  At most ZDICT_SAMPLES_PER_TABLE rows are taken
 * from each table, at random, so a large table does not crowd out the small
 * ones whose headers every small sync carries too.
 */
#include "dict.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "changeset.h"

static int sql_fail(struct errctx *e, sqlite3 *db, const char *what)
{
    return errctx_set(e, SYNC_EIO, "hub.db: %s: %s", what, sqlite3_errmsg(db));
}

struct samples {
    struct buf data;
    size_t *sizes;
    unsigned n, cap;
};

static int sample_add(struct samples *sm, size_t len, struct errctx *e)
{
    if (sm->n == sm->cap) {
        unsigned cap = sm->cap ? sm->cap * 2 : 256;
        size_t *p = realloc(sm->sizes, cap * sizeof(*p));
        if (p == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        sm->sizes = p;
        sm->cap = cap;
    }
    sm->sizes[sm->n++] = len;
    return SYNC_OK;
}

static int sample_table(struct samples *sm, sqlite3 *db, const struct schema_table *t,
                        uint64_t now_ms, unsigned *rows, struct errctx *e)
{
    char tail[64];
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    *rows = 0;
    snprintf(tail, sizeof(tail), "ORDER BY random() LIMIT %d", ZDICT_SAMPLES_PER_TABLE);
    if ((step = schema_select_rows(&st, db, t, tail)) != SQLITE_OK)
        return step == SQLITE_NOMEM ? errctx_set(e, SYNC_ENOMEM, "out of memory")
                                    : sql_fail(e, db, "sampling rows for a dictionary");
    while (rc == SYNC_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
        size_t start = sm->data.len;
        if (sm->n % 2 == 0)
            rc = buf_put_u64(&sm->data, now_ms + sm->n, e);
        if (rc == SYNC_OK && (rc = changeset_put_table(&sm->data, t, e)) == SYNC_OK &&
            (rc = changeset_put_insert(&sm->data, st, t, e)) == SYNC_OK)
            rc = sample_add(sm, sm->data.len - start, e);
        (*rows)++;
    }
    if (rc == SYNC_OK && step != SQLITE_DONE)
        rc = sql_fail(e, db, "sampling rows for a dictionary");
    sqlite3_finalize(st);
    return rc;
}

static int dict_store(sqlite3 *db, const struct zdict *d, unsigned rows, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (sqlite3_prepare_v2(db,
                           "INSERT INTO _empact_dict (dict_id, bytes, sample_rows, created_at) "
                           "VALUES (?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(e, db, "storing a dictionary");
    sqlite3_bind_int64(st, 1, zdict_id(d));
    sqlite3_bind_blob(st, 2, zdict_bytes(d), (int)zdict_size(d), SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, rows);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = (sqlite3_errcode(db) & 0xff) == SQLITE_CONSTRAINT
                 ? errctx_set(e, SYNC_EDATA,
                              "the new dictionary has the id %u of one the hub already has; "
                              "train again",
                              zdict_id(d))
                 : sql_fail(e, db, "storing a dictionary");
    sqlite3_finalize(st);
    return rc;
}

int dict_train(sqlite3 *db, const struct schema *s, size_t cap, struct dict_stats *out,
               struct errctx *e)
{
    struct samples sm = {{0}, NULL, 0, 0};
    struct buf dict = {0};
    struct zdict *d = NULL;
    struct timespec now;
    uint64_t now_ms;
    int rc = SYNC_OK;

    clock_gettime(CLOCK_REALTIME, &now);
    now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    memset(out, 0, sizeof(*out));
    /* no transaction: the samples need not be one snapshot, and training
     * (seconds) must not hold the writer lock that pushes wait for */
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++) {
        unsigned rows = 0;
        if (!schema_class_replicated(s->tables[i].cls))
            continue;
        if ((rc = sample_table(&sm, db, &s->tables[i], now_ms, &rows, e)) == SYNC_OK && rows) {
            out->rows += rows;
            out->tables++;
        }
    }
    if (rc == SYNC_OK && sm.n < ZDICT_MIN_SAMPLES)
        rc = errctx_set(e, SYNC_EDATA,
                        "the hub holds %u rows in its replicated tables; a dictionary needs at "
                        "least %d (train one once the sites have synced their data)",
                        sm.n, ZDICT_MIN_SAMPLES);
    if (rc == SYNC_OK &&
        (rc = zdict_train(&dict, cap, sm.data.data, sm.sizes, sm.n, e)) == SYNC_OK &&
        (rc = zdict_load(&d, dict.data, dict.len, e)) == SYNC_OK &&
        (rc = dict_store(db, d, out->rows, e)) == SYNC_OK) {
        out->id = zdict_id(d);
        out->size = zdict_size(d);
    }
    zdict_free(d);
    buf_free(&dict);
    buf_free(&sm.data);
    free(sm.sizes);
    return rc;
}

int dict_newest(sqlite3 *db, uint32_t *id, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    *id = 0;
    if (sqlite3_prepare_v2(db, "SELECT dict_id FROM _empact_dict ORDER BY seq DESC LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_fail(e, db, "reading dictionaries");
    if ((step = sqlite3_step(st)) == SQLITE_ROW)
        *id = (uint32_t)sqlite3_column_int64(st, 0);
    else if (step != SQLITE_DONE)
        rc = sql_fail(e, db, "reading dictionaries");
    sqlite3_finalize(st);
    return rc;
}

int dict_get(sqlite3 *db, uint32_t id, struct zdict **out, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    *out = NULL;
    if (sqlite3_prepare_v2(db, "SELECT bytes FROM _empact_dict WHERE dict_id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return sql_fail(e, db, "reading dictionaries");
    sqlite3_bind_int64(st, 1, id);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        rc = zdict_load(out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), e);
        if (rc == SYNC_OK && zdict_id(*out) != id) {
            zdict_free(*out);
            *out = NULL;
            rc = errctx_set(e, SYNC_EDATA, "hub.db: dictionary %u is stored under another id", id);
        }
    } else if (step != SQLITE_DONE) {
        rc = sql_fail(e, db, "reading dictionaries");
    }
    sqlite3_finalize(st);
    return rc;
}

struct dict_cache {
    pthread_mutex_t lock;
    struct zdict **d;
    size_t n, cap;
};

int dict_cache_new(struct dict_cache **out, struct errctx *e)
{
    if ((*out = calloc(1, sizeof(**out))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    pthread_mutex_init(&(*out)->lock, NULL);
    return SYNC_OK;
}

void dict_cache_free(struct dict_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        zdict_free(c->d[i]);
    free(c->d);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const struct zdict *cache_find(struct dict_cache *c, uint32_t id)
{
    for (size_t i = 0; i < c->n; i++) {
        if (zdict_id(c->d[i]) == id)
            return c->d[i];
    }
    return NULL;
}

/* The cache grows by the dictionaries sites ask for, which are rows of
 * _empact_dict: only `empact-hub train-dict` adds those. */
int dict_cache_get(struct dict_cache *c, sqlite3 *db, uint32_t id, const struct zdict **out,
                   struct errctx *e)
{
    struct zdict *d = NULL;
    int rc = SYNC_OK;

    pthread_mutex_lock(&c->lock);
    *out = cache_find(c, id);
    pthread_mutex_unlock(&c->lock);
    if (*out != NULL || id == 0)
        return SYNC_OK;
    if ((rc = dict_get(db, id, &d, e)) != SYNC_OK || d == NULL)
        return rc;
    pthread_mutex_lock(&c->lock);
    if ((*out = cache_find(c, id)) != NULL) { /* another thread was first */
        zdict_free(d);
    } else if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        struct zdict **p = realloc(c->d, cap * sizeof(*p));
        if (p == NULL) {
            zdict_free(d);
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        } else {
            c->d = p;
            c->cap = cap;
        }
    }
    if (rc == SYNC_OK && *out == NULL) {
        c->d[c->n++] = d;
        *out = d;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}
