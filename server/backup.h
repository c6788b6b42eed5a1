/*
 * backup.h - a consistent online backup of a hub directory.
 *
 * hub.db is copied with SQLite's online backup API (one read snapshot, so a
 * hub that keeps serving is never blocked for long); the newest version row
 * of that copy names a commit, and history.git is copied so that it holds at
 * least every object that commit reaches (objects are append-only: loose
 * objects first, then packs, so an object the hub packs meanwhile is still
 * found), with refs/heads/main set to that commit rather than the live
 * branch: the copy's database and history agree.  The CA and hub
 * certificates and keys come along (keys 0600).  Everything is written into
 * DEST.tmp and renamed to DEST at the end, after syncfs().
 */
#ifndef EMPACT_BACKUP_H
#define EMPACT_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "errctx.h"

/* What backup_run() copied. */
struct backup_result {
    uint64_t version;    /* newest version in the copied hub.db */
    char commit[41];     /* its commit, which refs/heads/main names in the copy */
    long long db_bytes;  /* size of the copied hub.db */
    long long git_bytes; /* bytes of git objects and packs copied */
    size_t loose, packs; /* loose objects and packs copied */
    int key_files;       /* CA / hub certificate and key files copied */
};

/*
 * Backs up hubdir into dest, which must not exist or be an empty directory
 * (SYNC_EUSAGE otherwise, or when dest.tmp exists: an interrupted backup,
 * to be removed by hand).  Safe while the hub serves.  On failure dest.tmp is
 * removed and dest is left as it was.  Restore: cp -a dest NEWHUBDIR.
 */
int backup_run(const char *hubdir, const char *dest, struct backup_result *r,
               struct errctx *e) SYNC_WUR;

#endif
