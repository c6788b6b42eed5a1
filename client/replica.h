/*
 * replica.h - a site's replica: one SQLite file in WAL mode holding the
 * replicated tables, their base copies, dirty-key tables and triggers, the
 * site's local (confidential) tables, and _empact_meta.
 *
 * Names (see schema/README.md):
 *   T, _empact_base_T, _empact_dirty_T   replicated table, base copy, dirty keys
 *   _empact_meta(key, value)             site id, hub address, synced version,
 *                                        dataset hash, credentials, last sync
 *   _empact_syncing                      non-empty only while a sync writes T;
 *                                        triggers stand aside then
 *   _empact_conflict                     this site's inputs that lost at the hub
 *                                        (received from the hub's conflict log)
 *   _empact_outbox                       the push being sent: kept until the hub's
 *                                        version of it is applied, so a retry
 *                                        sends the very same push
 *   _empact_snap_T                       for dirty keys: the row the pending
 *                                        edits are based on (the outbox's row,
 *                                        or base's from before a pull)
 *   _empact_insert_T                     dirty keys created here before the hub
 *                                        had them (format 3)
 *   _empact_tree                         the git trees of the dataset hash base
 *                                        last proved, one row per directory, so
 *                                        that the next proof rehashes only what
 *                                        changed (gitmap.h; created when missing)
 */
#ifndef EMPACT_REPLICA_H
#define EMPACT_REPLICA_H

#include <sqlite3.h>
#include <stdint.h>

#include "bundle.h"
#include "errctx.h"
#include "schema.h"

/* The layout version of the replica's own tables, in _empact_meta 'format'. */
#define REPLICA_FORMAT "3"

/* Creates a new replica at path (mode 0600; refuses an existing file) for
 * the site in bundle b; hub_address overrides the bundle's when non-NULL.
 * On success *out is the open database (caller closes with replica_close). */
int replica_create(sqlite3 **out, const char *path, const struct schema *s, const struct bundle *b,
                   const char *hub_address, struct errctx *e) SYNC_WUR;

/* Opens an existing replica and checks it was made for schema s. */
int replica_open(sqlite3 **out, const char *path, const struct schema *s,
                 struct errctx *e) SYNC_WUR;

/* Closes db (NULL is fine). */
void replica_close(sqlite3 *db);

/* Reads _empact_meta[key] into a new string (caller frees with sqlite3_free);
 * SYNC_EDATA when the key is missing. */
int replica_meta_get(char **out, sqlite3 *db, const char *key, struct errctx *e) SYNC_WUR;

/* Sets _empact_meta[key] = value. */
int replica_meta_set(sqlite3 *db, const char *key, const char *value, struct errctx *e) SYNC_WUR;

/* Installs the credentials of bundle b (site certificate and key) and
 * hub_address in _empact_meta, in one transaction.  The caller has checked
 * that b belongs to this replica (same site id and CA): this only writes. */
int replica_set_credentials(sqlite3 *db, const struct bundle *b, const char *hub_address,
                            struct errctx *e) SYNC_WUR;

struct replica_status {
    char site[SITE_ID_MAX + 1];
    char hub[HUB_ADDRESS_MAX + 1];
    uint64_t version;
    char tree[41];
    long long pending;
    long long conflicts;     /* entries in _empact_conflict */
    long long unread;        /* of those, received since `empact conflicts` listed them */
    uint64_t hub_head;       /* the hub's head version as of the last contact (0: none yet) */
    char hub_contact_at[32]; /* when that was, ISO-8601 UTC, or "" */
    char last_sync[32];      /* ISO-8601 UTC, or "" for never */
    char last_error[256];    /* "" when the last attempt succeeded */
    char last_error_at[32];  /* time of the last failure, or "" */
    char last_failure[256];  /* the last failure's reason, kept after a success; or "" */
};

/* _empact_meta key: the newest _empact_conflict id `empact conflicts` listed. */
#define REPLICA_CONFLICTS_READ "conflicts_read"

int replica_status(struct replica_status *st, sqlite3 *db, const struct schema *s,
                   struct errctx *e) SYNC_WUR;

/* How replica_base_hash() found its answer. */
enum replica_hash {
    REPLICA_HASH_TOUCHED = 1, /* from the tree store, rehashing the touched keys' shards */
    REPLICA_HASH_FULL = 2     /* every row of every base copy */
};

/* The dataset hash of the base copies, into got, for comparison with want
 * (the hub's tree for base's version).  from is the tree base held before
 * the keys listed in temp._touched_T changed, or NULL.  When the tree store
 * holds from, only the shards of touched keys are rehashed; otherwise, or
 * when that answer is not want (a store out of step with base), every row
 * is.  When got equals want the store is updated, in the caller's
 * transaction.  SYNC_OK whether or not got equals want. */
int replica_base_hash(uint8_t got[20], enum replica_hash *how, sqlite3 *db, const struct schema *s,
                      const uint8_t *from, const uint8_t want[20], struct errctx *e) SYNC_WUR;

/* `empact verify`: hashes every row of the base copies, in one write
 * transaction, and compares the result with the tree the last sync proved
 * (version and that tree in *version, want_hex).  Equal: *match = 1 and the
 * tree store is rewritten from the rows.  Different: *match = 0, the store
 * is emptied and base_tree becomes got_hex, so the next sync cannot trust
 * either and rebuilds base from the hub (pending edits are kept).
 * SYNC_EDATA when the replica has never been synced. */
int replica_verify(int *match, uint64_t *version, char got_hex[41], char want_hex[41], sqlite3 *db,
                   const struct schema *s, struct errctx *e) SYNC_WUR;

#endif
