/*
 * changeset.h - SQLite session changesets: building a site's local changes
 * from its dirty keys, applying canonical changesets to base copies,
 * recording which keys a changeset touches, and checking a pushed changeset
 * against the table classes.
 *
 * Names used in a database (see schema/README.md):
 *   T                  a replicated table, as the user sees and edits it
 *   _empact_base_T     site only: T as of the last hub version synced
 *   _empact_dirty_T    site only: primary keys of T changed since then
 *   temp._touched_T    keys touched by the changesets of one sync
 */
#ifndef EMPACT_CHANGESET_H
#define EMPACT_CHANGESET_H

#include <sqlite3.h>

#include "buf.h"
#include "errctx.h"
#include "schema.h"

#define BASE_PREFIX "_empact_base_"
#define DIRTY_PREFIX "_empact_dirty_"
#define TOUCHED_PREFIX "_touched_"
/* Site only: for a dirty key, the row its pending edits are based on (the
 * row as the outbox carried it, or base's row from before a pull that came
 * while the key was dirty); the next push is built against it, so the hub
 * sees what the coordinator saw and logs any concurrent change it overwrites. */
#define SNAP_PREFIX "_empact_snap_"
/* Site only: dirty keys the coordinator created while base had no row, and
 * whose row a later pull brought from another site: the next push still
 * carries them as inserts, so the hub merges and logs them as such. */
#define INSERTED_PREFIX "_empact_insert_"
/* The column of _empact_dirty_T holding the key's last edit time (ms). */
#define EDITED_AT_COL "_empact_edited_at"

/* Builds the site's local changeset L: for every shared and owned table, the
 * difference base -> T over the dirty keys only (local and hub tables are
 * never read).  The cost follows the number of dirty keys.  Appends L to out
 * (empty when nothing changed).  db is borrowed. */
int changeset_build_local(struct buf *out, sqlite3 *db, const struct schema *s,
                          struct errctx *e) SYNC_WUR;

/* Applies a canonical changeset to the tables named prefix||T ("" for the
 * tables themselves, BASE_PREFIX for a site's base copies), strictly: every
 * insert must find no row, every update and delete must find the row with the
 * old values the changeset names.  Anything else means the copy diverged from
 * the hub: SYNC_EDATA.  SYNC_EPROTO for a malformed changeset. */
int changeset_apply_strict(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                           const char *prefix, struct errctx *e) SYNC_WUR;
/* The same, setting *count to the number of changes applied (a snapshot
 * chunk's rows, checked without a second walk of the changeset). */
int changeset_apply_strict_count(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                                 const char *prefix, int *count, struct errctx *e) SYNC_WUR;

/* Applies a site's own changeset (its push) as the hub applies a push that
 * loses nothing: each insert sets the whole row (replacing one with its key),
 * each update sets its new values on the row with its key, which must exist,
 * each delete removes the row with its key, if any.  Old values are not
 * compared: they are what the coordinator saw, not necessarily base's.
 * SYNC_EDATA when an update finds no row. */
int changeset_apply_as_sent(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                            const char *prefix, struct errctx *e) SYNC_WUR;

struct stmtcache;

/* Creates (if needed) and empties temp._touched_T for every replicated table.
 * sc, when not NULL, is a statement cache on db to keep the statements in
 * (the hub's writer runs this once a version). */
int changeset_touched_reset(sqlite3 *db, struct stmtcache *sc, const struct schema *s,
                            struct errctx *e) SYNC_WUR;

/* Adds the primary key of every row cs changes to temp._touched_T (sc as
 * for changeset_touched_reset()). */
int changeset_touched_add(sqlite3 *db, struct stmtcache *sc, const struct schema *s, const void *cs,
                          size_t n, struct errctx *e) SYNC_WUR;

/* Checks a changeset pushed by site_id before the hub applies it: each change
 * must name a shared or owned table of the schema with the schema's columns
 * and key; owned rows must carry site_id == the pushing site in their old and
 * new values.  SYNC_EREFUSED with a sentence naming the table (never a row's
 * values) on the first violation; SYNC_EPROTO if cs is not a valid changeset.
 * *nchanges receives the number of changes. */
int changeset_check_push(const struct schema *s, const void *cs, size_t n, const char *site_id,
                         int *nchanges, struct errctx *e) SYNC_WUR;

/* For each change of the local changeset cs, in iteration order, appends the
 * key's edit time (u64 big-endian, ms since the epoch) from _empact_dirty_T.
 * The hub pairs times with changes by position. */
int changeset_edit_times(struct buf *out, sqlite3 *db, const struct schema *s, const void *cs,
                         size_t n, struct errctx *e) SYNC_WUR;

/* After the hub took the local changeset cs (edit times times, as built by
 * changeset_edit_times): removes each of its keys from _empact_dirty_T unless
 * the key was edited again after its recorded time. */
int changeset_dirty_done(sqlite3 *db, const struct schema *s, const void *cs, size_t n,
                         const uint8_t *times, size_t ntimes, struct errctx *e) SYNC_WUR;

/* Checks that cs follows SQLite's changeset byte format (table headers, change
 * headers, values with their lengths) before any SQLite code walks it: SQLite's
 * iterator does not defend against every malformed input.  SYNC_EPROTO naming
 * what is wrong, SYNC_ELIMIT over CHANGESET_MAX.  Patchsets are refused. */
int changeset_validate(const void *cs, size_t n, struct errctx *e) SYNC_WUR;

/* Writing a changeset of INSERTs only (a join snapshot of whole tables):
 * changeset_put_table() appends the table header for t (column count,
 * primary-key flags and name, as the session extension writes them); each
 * changeset_put_insert() after it appends an INSERT of st's current row,
 * whose columns 0 .. t->ncol - 1 are t's in declaration order. */
int changeset_put_table(struct buf *out, const struct schema_table *t, struct errctx *e) SYNC_WUR;
int changeset_put_insert(struct buf *out, sqlite3_stmt *st, const struct schema_table *t,
                         struct errctx *e) SYNC_WUR;

/* Counts the changes in cs; SYNC_EPROTO if malformed. */
int changeset_count(const void *cs, size_t n, int *count, struct errctx *e) SYNC_WUR;

#endif
