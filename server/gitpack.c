/*
 * gitpack.c - packs history.git's loose objects (see gitpack.h).
 *
 * Steps, each finished before the next starts:
 *   1. list objects/XX/YYYY... (the loose objects; nothing else is touched);
 *   2. git_packbuilder_insert each one, git_packbuilder_write into
 *      objects/pack (libgit2's indexer writes pack and index to temporary
 *      files and renames them into place);
 *   3. fsync the new .pack, .idx and objects/pack, so the pack survives a
 *      power cut before any loose copy goes;
 *   4. open the new pack's index alone and remove each loose object it names.
 */
#include "gitpack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int git_fail(struct errctx *e, const char *what)
{
    const git_error *ge = git_error_last();
    return errctx_set(e, SYNC_EIO, "git: %s: %s", what, ge && ge->message ? ge->message : "failed");
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return s[n] == '\0';
}

/* Appends the ids of the loose objects under gitdir/objects to *ids. */
static int loose_list(git_oid **ids, size_t *n, const char *gitdir, struct errctx *e)
{
    char path[4096], hex[41];
    size_t cap = 0;
    int rc = SYNC_OK;

    *ids = NULL;
    *n = 0;
    for (int d = 0; d < 256 && rc == SYNC_OK; d++) {
        DIR *dir;
        struct dirent *de;

        snprintf(path, sizeof(path), "%s/objects/%02x", gitdir, d);
        if ((dir = opendir(path)) == NULL) {
            if (errno == ENOENT)
                continue;
            return errctx_set(e, SYNC_EIO, "cannot read %s: %s", path, strerror(errno));
        }
        while ((de = readdir(dir)) != NULL) {
            if (strlen(de->d_name) != 38 || !is_hex(de->d_name, 38))
                continue; /* tmp_obj_* and the like: not ours to touch */
            if (*n == cap) {
                git_oid *p = reallocarray(*ids, cap ? cap * 2 : 256, sizeof(**ids));
                if (p == NULL) {
                    rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
                    break;
                }
                *ids = p;
                cap = cap ? cap * 2 : 256;
            }
            snprintf(hex, sizeof(hex), "%02x", d);
            memcpy(hex + 2, de->d_name, 38);
            hex[40] = '\0';
            if (git_oid_fromstr(&(*ids)[*n], hex) == 0)
                (*n)++;
        }
        closedir(dir);
    }
    return rc;
}

static int fsync_path(const char *path, struct errctx *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = SYNC_OK;

    if (fd < 0 || fsync(fd) != 0)
        rc = errctx_set(e, SYNC_EIO, "cannot fsync %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Writes the pack and makes it durable; st->pack names it. */
static int pack_write(git_repository *repo, const char *gitdir, const git_oid *ids, size_t n,
                      struct gitpack_stats *st, struct errctx *e)
{
    git_packbuilder *pb = NULL;
    char dir[4096], path[4200];
    struct stat sb;
    int rc = SYNC_OK;

    snprintf(dir, sizeof(dir), "%s/objects/pack", gitdir);
    if (git_packbuilder_new(&pb, repo) != 0)
        return git_fail(e, "starting a pack");
    git_packbuilder_set_threads(pb, 1);
    for (size_t i = 0; i < n; i++) {
        if (git_packbuilder_insert(pb, &ids[i], NULL) != 0) {
            rc = git_fail(e, "adding an object to the pack");
            goto out;
        }
    }
    if (git_packbuilder_write(pb, dir, 0, NULL, NULL) != 0) {
        rc = git_fail(e, "writing the pack");
        goto out;
    }
    snprintf(st->pack, sizeof(st->pack), "pack-%s", git_packbuilder_name(pb));
    st->packed = git_packbuilder_written(pb);
    snprintf(path, sizeof(path), "%s/%s.pack", dir, st->pack);
    if ((rc = fsync_path(path, e)) != SYNC_OK)
        goto out;
    st->bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
    snprintf(path, sizeof(path), "%s/%s.idx", dir, st->pack);
    if ((rc = fsync_path(path, e)) == SYNC_OK)
        rc = fsync_path(dir, e);
out:
    git_packbuilder_free(pb);
    return rc;
}

/* Removes each loose object of ids that the pack st->pack holds. */
static int loose_prune(const char *gitdir, const git_oid *ids, size_t n, struct gitpack_stats *st,
                       struct errctx *e)
{
    git_odb_backend *one = NULL;
    git_odb *odb = NULL;
    char path[4200], hex[GIT_OID_HEXSZ + 1];
    int rc = SYNC_OK;

    snprintf(path, sizeof(path), "%s/objects/pack/%s.idx", gitdir, st->pack);
    if (git_odb_new(&odb) != 0 || git_odb_backend_one_pack(&one, path) != 0 ||
        git_odb_add_backend(odb, one, 1) != 0) {
        rc = git_fail(e, "opening the new pack");
        if (one != NULL && odb != NULL && !git_odb_num_backends(odb))
            one->free(one);
        git_odb_free(odb);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (!git_odb_exists(odb, &ids[i]))
            continue; /* not in this pack: stays loose */
        git_oid_tostr(hex, sizeof(hex), &ids[i]);
        snprintf(path, sizeof(path), "%s/objects/%.2s/%s", gitdir, hex, hex + 2);
        if (unlink(path) == 0)
            st->removed++;
        else if (errno != ENOENT) {
            rc = errctx_set(e, SYNC_EIO, "cannot remove %s: %s", path, strerror(errno));
            break;
        }
        snprintf(path, sizeof(path), "%s/objects/%.2s", gitdir, hex);
        (void)rmdir(path); /* only succeeds once the fan-out directory is empty */
    }
    git_odb_free(odb);
    return rc;
}

int gitpack_loose(const char *gitdir, struct gitpack_stats *st, struct errctx *e)
{
    git_repository *repo = NULL;
    git_oid *ids = NULL;
    size_t n = 0;
    int rc;

    memset(st, 0, sizeof(*st));
    git_libgit2_init();
    if ((rc = loose_list(&ids, &n, gitdir, e)) != SYNC_OK || n == 0)
        goto out;
    if (git_repository_open_bare(&repo, gitdir) != 0) {
        rc = git_fail(e, "opening the history repository");
        goto out;
    }
    if ((rc = pack_write(repo, gitdir, ids, n, st, e)) == SYNC_OK)
        rc = loose_prune(gitdir, ids, n, st, e);
out:
    git_repository_free(repo);
    free(ids);
    git_libgit2_shutdown();
    return rc;
}
