/*
 * dict.h - the hub's compression dictionaries (hub.db _empact_dict).
 *
 * `empact-hub train-dict` trains a zstd dictionary from the hub's own rows
 * of the replicated tables (data every site holds anyway; a local table is
 * never read, and the hub has none), each row sampled as the one-row
 * changeset a small sync would carry.  Each training adds a dictionary (the
 * newest is the one in use): a site names the one it holds in HELLO, the hub
 * announces its newest in WELCOME, a site with another fetches the newest
 * with DICT_GET before it pushes, and both sides compress with it only when
 * the two ids agree (PROTOCOL.md, "Dictionaries").
 */
#ifndef EMPACT_DICT_H
#define EMPACT_DICT_H

#include <sqlite3.h>
#include <stdint.h>

#include "errctx.h"
#include "schema.h"
#include "zcodec.h"

#define DICT_DDL                                                                                   \
    "CREATE TABLE IF NOT EXISTS _empact_dict ("                                                    \
    " seq INTEGER PRIMARY KEY, dict_id INTEGER NOT NULL UNIQUE, bytes BLOB NOT NULL,"              \
    " sample_rows INTEGER NOT NULL, created_at INTEGER NOT NULL);"

struct dict_stats {
    uint32_t id;
    size_t size;
    unsigned rows;   /* sample rows trained on */
    unsigned tables; /* replicated tables they came from */
};

/* Trains a dictionary of at most cap bytes from db's replicated tables and
 * stores it as the newest.  SYNC_EDATA with a sentence when the hub holds too
 * few rows to train on. */
int dict_train(sqlite3 *db, const struct schema *s, size_t cap, struct dict_stats *st,
               struct errctx *e) SYNC_WUR;

/* The newest dictionary's id, 0 when the hub has none. */
int dict_newest(sqlite3 *db, uint32_t *id, struct errctx *e) SYNC_WUR;

/* Loads dictionary id from db; *out = NULL (and SYNC_OK) when there is no
 * such dictionary. */
int dict_get(sqlite3 *db, uint32_t id, struct zdict **out, struct errctx *e) SYNC_WUR;

/* A cache of loaded dictionaries shared by the hub's connection threads
 * (each zdict is read-only); entries live until dict_cache_free(). */
struct dict_cache;

int dict_cache_new(struct dict_cache **out, struct errctx *e) SYNC_WUR;
void dict_cache_free(struct dict_cache *c);

/* Dictionary id, loaded through db on first use; *out = NULL when the hub
 * has no such dictionary.  The zdict belongs to the cache. */
int dict_cache_get(struct dict_cache *c, sqlite3 *db, uint32_t id, const struct zdict **out,
                   struct errctx *e) SYNC_WUR;

#endif
