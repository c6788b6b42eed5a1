/*
 * merge.h - the hub's reconciliation policy (common/PROTOCOL.md,
 * "Reconciliation").  Applies one checked push to the hub's tables change by
 * change, column by column, and records every input that lost in the
 * conflict log, so that nothing a coordinator typed disappears silently.
 */
#ifndef EMPACT_MERGE_H
#define EMPACT_MERGE_H

#include <sqlite3.h>
#include <stdint.h>

#include "buf.h"
#include "errctx.h"
#include "schema.h"

struct stmtcache;

/* Hub tables the merge keeps besides the replicated ones:
 *   _empact_rowmeta_T(key..., _empact_edited_at, _empact_site)  the row's
 *       insert or delete (kept after a delete, as a tombstone)
 *   _empact_colmeta_T(key..., _empact_col, _empact_edited_at, _empact_site)
 *       the edit that typed each column's current value, when not the insert
 *   _empact_conflict(...)  the conflict log; see hub.c for the columns */
#define ROWMETA_PREFIX "_empact_rowmeta_"
#define COLMETA_PREFIX "_empact_colmeta_"

/* Conflict kinds, as stored and sent to sites. */
#define CONFLICT_OVERRIDDEN "overridden"   /* your edit lost to a later edit of the column */
#define CONFLICT_OVERWRITTEN "overwritten" /* your earlier value was replaced by a later edit */
#define CONFLICT_UPDATE_DELETED "update-of-deleted" /* you updated a row deleted at the hub */
#define CONFLICT_DELETED "deleted"   /* your value went with a row another site deleted */
#define CONFLICT_REJECTED "rejected" /* your change broke a constraint */

struct merge_stats {
    uint32_t applied; /* changes that changed the hub's data */
    uint32_t lost;    /* changes of the pusher that lost, wholly or in part */
    uint32_t logged;  /* conflict log entries written */
};

/* Creates the row-meta tables for the schema's shared and owned tables. */
int merge_tables_create(sqlite3 *db, const struct schema *s, struct errctx *e) SYNC_WUR;

/* Applies cs, pushed by site with times[i] the edit time (ms) of its i-th
 * change, inside the caller's write transaction.  Each change runs in its own
 * savepoint: a change that breaks a constraint is undone and logged, the rest
 * go on.  Conflict rows get version 0 and push_id; one line per conflict (no
 * values) is appended to notes for the commit message.  cs must have passed
 * changeset_check_push().  sc, when not NULL, is a statement cache on db that
 * outlives the push (the hub's writer keeps its statements across pushes);
 * NULL prepares them for this push alone. */
int merge_apply(sqlite3 *db, struct stmtcache *sc, const struct schema *s, const char *site,
                const char *push_id, const void *cs, size_t n, const uint64_t *times,
                uint32_t ntimes, struct merge_stats *st, struct buf *notes,
                struct errctx *e) SYNC_WUR;

#endif
