/*
 * gitpack.h - git housekeeping for the hub's history.git: every accepted
 * version adds one small pack (gitmap_set_head()); this folds the small packs
 * and any loose objects into one pack, geometrically (see gitpack.c).
 *
 * Git objects are append-only and named by their content, so packing never
 * changes what the repository holds, only where: a loose object or an old
 * pack is removed only after the pack and its index that hold it are written,
 * fsynced and renamed into objects/pack, and only if that pack's index names
 * every object removed.  A crash at any point leaves every object readable
 * (in the new pack, the old place, or both).
 */
#ifndef EMPACT_GITPACK_H
#define EMPACT_GITPACK_H

#include <stddef.h>

#include "errctx.h"

/* What one gitpack_compact() did. */
struct gitpack_stats {
    size_t packed;        /* objects written into the new pack (0: nothing to do) */
    size_t deltas;        /* of those, written as a delta against another */
    size_t loose;         /* of the objects folded, how many were loose */
    size_t packs_folded;  /* packs whose objects went into the new pack */
    size_t removed;       /* loose files removed afterwards */
    size_t packs_removed; /* folded packs removed afterwards */
    char pack[48];        /* "pack-<hash>" of the new pack, or "" */
    long long bytes;      /* size of the new .pack file */
};

/*
 * Writes one pack of every loose object of the bare repository at gitdir and
 * of every object of the packs chosen to fold (all: every pack; otherwise
 * geometrically, see gitpack.c), then removes the loose objects and the
 * folded packs the new pack holds; does nothing when nothing is loose and
 * fewer than two packs would fold.  The caller holds the hub's writer lock,
 * so no other writer adds objects meanwhile, and reopens its own repository
 * handles afterwards (a folded pack is gone).  Unreachable objects (of a
 * version that was rolled back) are packed too: harmless, as in "Hub
 * durability".  Returns SYNC_OK, SYNC_EDATA for a damaged pack (named in
 * e), or SYNC_EIO / SYNC_ENOMEM with a sentence in e; on failure nothing has
 * been removed that is not in a complete pack.
 */
int gitpack_compact(const char *gitdir, int all, struct gitpack_stats *st,
                    struct errctx *e) SYNC_WUR;

/*
 * gitpack_compact() in two steps, for a hub that folds while it serves:
 * gitpack_fold() takes the fold lock (an flock() on gitdir/empact-fold.lock,
 * so two folds never run at once, in one process or two), chooses and writes
 * the new pack (fsynced; nothing removed), and needs no other lock: packs
 * are never changed, and a version's pack written meanwhile is not among
 * those chosen.  gitpack_prune() then removes what the new pack holds; the
 * caller runs it while no one reads through a repository handle it will not
 * reopen.  gitpack_plan_free() releases the fold lock (takes NULL).  *out is
 * set on success, also when there was nothing to fold (st->packed 0).
 */
struct gitpack_plan;
int gitpack_fold(struct gitpack_plan **out, const char *gitdir, int all, struct gitpack_stats *st,
                 struct errctx *e) SYNC_WUR;
int gitpack_prune(struct gitpack_plan *p, struct gitpack_stats *st, struct errctx *e) SYNC_WUR;
void gitpack_plan_free(struct gitpack_plan *p);

#endif
