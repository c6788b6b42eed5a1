/*
 * lock.h - one sync or join at a time per replica.
 *
 * The lock is an advisory flock(2) on SITE.db.lock, next to the replica,
 * held for as long as the process wants it (in practice its lifetime).  The
 * kernel drops it when the process ends in any way, SIGKILL and power loss
 * included, so there is no stale lock to detect or clean up; the file itself
 * may stay and means nothing on its own.
 *
 * Why not SQLite's own locking: a sync is two transactions (prepare, then
 * the exchange) with a gap between them, and `--retry` waits minutes between
 * attempts with the replica closed, so the coordinator can keep editing.  A
 * SQLite write lock held across all of that would block those edits; a lock
 * file excludes other syncs only.  And SQLite's "busy" cannot tell another
 * sync from a sqlite3 shell in the middle of a transaction.
 */
#ifndef EMPACT_LOCK_H
#define EMPACT_LOCK_H

#include "errctx.h"

struct lock;

/* Takes the lock of the replica at db_path without waiting: creates
 * db_path + ".lock" (mode 0600) if needed and flock()s it.  On success *out
 * holds it (release with lock_release).  SYNC_ELOCKED when another process
 * holds it (the message names that process when it wrote its pid), SYNC_EIO
 * when the file cannot be created or opened, SYNC_EUSAGE for a path too long. */
int lock_acquire(struct lock **out, const char *db_path, struct errctx *e) SYNC_WUR;

/* Releases the lock and frees l (NULL is fine).  When the replica db_path
 * does not exist (a failed join, a sync of a mistyped path), the lock file is
 * removed first, while still held, so no lock file is left without a replica:
 * lock_acquire checks that the file it locked is still the one at the path. */
void lock_release(struct lock *l);

#endif
