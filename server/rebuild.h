/*
 * rebuild.h - `empact-hub rebuild`: a new hub.db from history.git alone.
 *
 * Each commit of the branch, oldest first, becomes one version again: the
 * rows that differ between its tree and its parent's are read back
 * (rowtext.h) and applied to the replicated tables under a session, whose
 * changeset is the version's canonical changeset; the tree the rows give
 * must be the commit's tree, or the rebuild stops.  What git does not hold
 * is handled so (README.md, "Operating the hub: verify and rebuild"):
 *   _empact_push        one row per commit with a push-id line (site, version,
 *                       counts from the summary line); pushes that changed
 *                       nothing made no commit and are not restored
 *   _empact_rowmeta_T,  re-derived: each row's insert or delete, and each
 *   _empact_colmeta_T   column an update changed, stamped with the commit's
 *                       author and time (ms), an upper bound of the real edit
 *                       time
 *   _empact_conflict    empty, but the next entry's id starts above any id a
 *                       site can hold (a marker row with id = now in ms that
 *                       no site receives), so sites miss no new conflict
 *   _empact_site_cert   only for the certificates given (join bundles or PEM
 *                       certificates signed by HUBDIR's CA); other sites must
 *                       be enrolled again
 *   _empact_site_seen   empty (last syncs are unknown until sites sync)
 */
#ifndef EMPACT_REBUILD_H
#define EMPACT_REBUILD_H

#include "errctx.h"
#include "schema.h"

struct rebuild_opts {
    const char *dir;    /* HUBDIR: ca.pem stays; hub.db is created */
    const char *from;   /* the repository; must be HUBDIR/history.git */
    int force;          /* move an existing hub.db aside (never deleted) */
    char *const *certs; /* files to register sites from, or NULL */
    int ncerts;
    int progress_every; /* a progress line on stderr every N commits */
};

/* Rebuilds hub.db (see above).  Builds into HUBDIR/hub.db.rebuilding and
 * renames it to hub.db only when complete.  SYNC_EUSAGE if hub.db exists
 * without force or from is another repository; SYNC_EDATA if the history is
 * not one chain or a commit's rows do not give its tree; SYNC_EIO if a file
 * cannot be read or written.  Prints its summary on stdout. */
int hub_rebuild(const struct rebuild_opts *o, const struct schema *s, struct errctx *e) SYNC_WUR;

#endif
