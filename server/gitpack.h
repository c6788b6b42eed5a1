/*
 * gitpack.h - git housekeeping for the hub's history.git: packs the loose
 * objects every accepted push leaves behind into one pack.
 *
 * Git objects are append-only and named by their content, so packing never
 * changes what the repository holds, only where: a loose object is removed
 * only after the pack and its index that hold it are written, fsynced and
 * renamed into objects/pack, and only if that pack's index names it.  A crash
 * at any point leaves every object readable (in the pack, loose, or both).
 */
#ifndef EMPACT_GITPACK_H
#define EMPACT_GITPACK_H

#include <stddef.h>

#include "errctx.h"

/* What one gitpack_loose() did. */
struct gitpack_stats {
    size_t packed;   /* loose objects written into the new pack (0: nothing to do) */
    size_t removed;  /* loose files removed afterwards */
    char pack[48];   /* "pack-<hash>" of the new pack, or "" */
    long long bytes; /* size of the new .pack file */
};

/*
 * Writes one pack of every loose object of the bare repository at gitdir
 * (objects/pack/pack-<hash>.pack and .idx), then removes the loose objects
 * the new pack holds.  The caller holds the hub's writer lock, so no other
 * writer adds loose objects meanwhile (one that did would only keep its
 * objects loose until the next run).  Unreachable objects (of a version that
 * was rolled back) are packed too: harmless, as in "Hub durability".
 * Returns SYNC_OK, or SYNC_EIO / SYNC_ENOMEM with a sentence in e; on failure
 * no loose object has been removed unless it is in a complete pack.
 */
int gitpack_loose(const char *gitdir, struct gitpack_stats *st, struct errctx *e) SYNC_WUR;

#endif
