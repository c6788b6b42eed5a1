/*
 * gitpack.c - folds history.git's loose objects and small packs into one
 * pack (see gitpack.h).
 *
 * Steps, each finished before the next starts:
 *   1. list objects/XX/YYYY... (the loose objects) and choose the packs to
 *      fold: sorted by how many objects they hold, every pack below the
 *      smallest one that holds at least twice as many as all smaller ones
 *      together (and the loose objects).  The packs kept so grow
 *      geometrically, so an object is repacked O(log n) times over the life
 *      of the repository, and a fold costs what the recent versions hold,
 *      not the whole history.  Objects, not bytes: a version's own pack
 *      holds its objects uncompressed (gitmap.c) and a fold's pack
 *      compressed, against one another, so by bytes a hundred small
 *      versions outweighed the history folded before them and every fold
 *      compressed it all again;
 *   2. git_packbuilder_insert every object of those, git_packbuilder_write
 *      into objects/pack (libgit2's indexer writes pack and index to
 *      temporary files and renames them into place);
 *   3. fsync the new .pack, .idx and objects/pack, so the pack survives a
 *      power cut before any old copy goes;
 *   4. open the new pack's index alone; remove each loose object it names,
 *      and each folded pack (its .idx first, then its .pack) all of whose
 *      objects it holds.
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

/* A list of object ids. */
struct ids {
    git_oid *v;
    size_t n, cap;
};

static int ids_add(struct ids *l, const git_oid *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        git_oid *p = reallocarray(l->v, cap, sizeof(*p));
        if (p == NULL)
            return -1;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = *id;
    return 0;
}

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

/* Appends the ids of the loose objects under gitdir/objects to l. */
static int loose_list(struct ids *l, const char *gitdir, struct errctx *e)
{
    char path[4096], hex[41];
    int rc = SYNC_OK;

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
            git_oid id;
            if (strlen(de->d_name) != 38 || !is_hex(de->d_name, 38))
                continue; /* tmp_obj_* and the like: not ours to touch */
            snprintf(hex, sizeof(hex), "%02x", d);
            memcpy(hex + 2, de->d_name, 38);
            hex[40] = '\0';
            if (git_oid_fromstr(&id, hex) == 0 && ids_add(l, &id) != 0) {
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
                break;
            }
        }
        closedir(dir);
    }
    return rc;
}

/* One pack of objects/pack: its name ("pack-<hash>") and how many objects
 * it holds. */
struct pack {
    char name[64];
    long long objects;
};

static int pack_cmp(const void *a, const void *b)
{
    const struct pack *x = a, *y = b;
    return x->objects < y->objects ? -1 : x->objects > y->objects;
}

/* The number of objects in a version 2 pack index: the last entry of its
 * fan-out table (big-endian, after the 8-byte header); -1 if unreadable. */
static long long idx_objects(const char *path)
{
    unsigned char b[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? pread(fd, b, 4, 8 + 255 * 4) : -1;

    if (fd >= 0)
        close(fd);
    if (got != 4)
        return -1;
    return (long long)b[0] << 24 | (long long)b[1] << 16 | (long long)b[2] << 8 | b[3];
}

/* Lists the packs of gitdir that have an index and no .keep file, smallest
 * first. */
static int pack_list(struct pack **out, size_t *n, const char *gitdir, struct errctx *e)
{
    char dir[4096], path[4200];
    struct dirent *de;
    struct pack *v = NULL;
    size_t cap = 0;
    DIR *d;

    *out = NULL;
    *n = 0;
    snprintf(dir, sizeof(dir), "%s/objects/pack", gitdir);
    if ((d = opendir(dir)) == NULL)
        return errno == ENOENT
                   ? SYNC_OK
                   : errctx_set(e, SYNC_EIO, "cannot read %s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        long long objects;

        if (len != 5 + 40 + 5 || strncmp(de->d_name, "pack-", 5) != 0 ||
            strcmp(de->d_name + 45, ".pack") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%.45s.keep", dir, de->d_name);
        if (access(path, F_OK) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%.45s.idx", dir, de->d_name);
        if ((objects = idx_objects(path)) < 0)
            continue; /* no index (being written: not ours yet) */
        if (*n == cap) {
            struct pack *p = reallocarray(v, cap ? cap * 2 : 16, sizeof(*p));
            if (p == NULL) {
                closedir(d);
                free(v);
                return errctx_set(e, SYNC_ENOMEM, "out of memory");
            }
            v = p;
            cap = cap ? cap * 2 : 16;
        }
        snprintf(v[*n].name, sizeof(v[*n].name), "%.45s", de->d_name);
        v[(*n)++].objects = objects;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof(*v), pack_cmp);
    *out = v;
    return SYNC_OK;
}

/* How many of the packs (fewest objects first) to fold, given the loose
 * objects: all below the first pack from which on each pack holds at least
 * twice as many objects as everything before it. */
static size_t fold_count(const struct pack *p, size_t n, long long loose)
{
    size_t m = n;
    long long before = loose;

    for (size_t j = 0; j < n; j++)
        before += p[j].objects;
    /* walk down from the largest while the progression holds */
    while (m > 0) {
        before -= p[m - 1].objects;
        if (p[m - 1].objects < 2 * before)
            break;
        m--;
    }
    return m;
}

static int add_one(const git_oid *id, void *payload)
{
    return ids_add(payload, id) == 0 ? 0 : -1;
}

/* Opens the pack gitdir/objects/pack/name.idx alone, in a new object store. */
static int pack_odb(git_odb **out, const char *gitdir, const char *name, struct errctx *e)
{
    git_odb_backend *one = NULL;
    char path[4200];

    *out = NULL;
    snprintf(path, sizeof(path), "%s/objects/pack/%s.idx", gitdir, name);
    if (git_odb_new(out) != 0 || git_odb_backend_one_pack(&one, path) != 0 ||
        git_odb_add_backend(*out, one, 1) != 0) {
        int rc = git_fail(e, "opening a pack");
        if (one != NULL && *out != NULL && !git_odb_num_backends(*out))
            one->free(one);
        git_odb_free(*out);
        *out = NULL;
        return rc;
    }
    return SYNC_OK;
}

/* Appends the ids of every object of pack name to l. */
static int pack_objects(struct ids *l, const char *gitdir, const char *name, struct errctx *e)
{
    git_odb *odb = NULL;
    int rc;

    if ((rc = pack_odb(&odb, gitdir, name, e)) != SYNC_OK)
        return rc;
    if (git_odb_foreach(odb, add_one, l) != 0)
        rc = git_fail(e, "listing a pack's objects");
    git_odb_free(odb);
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
static int pack_write(git_repository *repo, const char *gitdir, const struct ids *l,
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
    for (size_t i = 0; i < l->n; i++) {
        if (git_packbuilder_insert(pb, &l->v[i], NULL) != 0) {
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

/* Removes each loose object of l that the new pack holds. */
static int loose_prune(const char *gitdir, git_odb *packed, const struct ids *l,
                       struct gitpack_stats *st, struct errctx *e)
{
    char path[4200], hex[GIT_OID_HEXSZ + 1];

    for (size_t i = 0; i < l->n; i++) {
        if (!git_odb_exists(packed, &l->v[i]))
            continue; /* not in the new pack: stays loose */
        git_oid_tostr(hex, sizeof(hex), &l->v[i]);
        snprintf(path, sizeof(path), "%s/objects/%.2s/%s", gitdir, hex, hex + 2);
        if (unlink(path) == 0)
            st->removed++;
        else if (errno != ENOENT)
            return errctx_set(e, SYNC_EIO, "cannot remove %s: %s", path, strerror(errno));
        snprintf(path, sizeof(path), "%s/objects/%.2s", gitdir, hex);
        (void)rmdir(path); /* only succeeds once the fan-out directory is empty */
    }
    return SYNC_OK;
}

/* Removes the folded pack name if the new pack holds every object of it:
 * its index first, so no reader finds an index without its pack. */
static int pack_prune(const char *gitdir, git_odb *packed, const char *name,
                      struct gitpack_stats *st, struct errctx *e)
{
    struct ids l = {0};
    char path[4200];
    int rc;

    if ((rc = pack_objects(&l, gitdir, name, e)) != SYNC_OK)
        return rc;
    for (size_t i = 0; i < l.n; i++) {
        if (!git_odb_exists(packed, &l.v[i])) {
            free(l.v);
            return SYNC_OK; /* cannot happen; keep it rather than lose an object */
        }
    }
    free(l.v);
    for (int k = 0; k < 3; k++) {
        static const char *const ext[] = {".idx", ".rev", ".pack"};
        snprintf(path, sizeof(path), "%s/objects/pack/%s%s", gitdir, name, ext[k]);
        if (unlink(path) != 0 && errno != ENOENT)
            return errctx_set(e, SYNC_EIO, "cannot remove %s: %s", path, strerror(errno));
    }
    st->packs_removed++;
    return SYNC_OK;
}

int gitpack_compact(const char *gitdir, struct gitpack_stats *st, struct errctx *e)
{
    git_repository *repo = NULL;
    git_odb *packed = NULL;
    struct ids l = {0};
    struct pack *packs = NULL;
    size_t npacks = 0, nloose, fold = 0;
    int rc;

    memset(st, 0, sizeof(*st));
    git_libgit2_init();
    if ((rc = loose_list(&l, gitdir, e)) != SYNC_OK ||
        (rc = pack_list(&packs, &npacks, gitdir, e)) != SYNC_OK)
        goto out;
    nloose = l.n;
    fold = fold_count(packs, npacks, (long long)nloose);
    if (nloose == 0 && fold < 2)
        goto out; /* nothing loose, and folding one pack alone gains nothing */
    for (size_t i = 0; i < fold && rc == SYNC_OK; i++)
        rc = pack_objects(&l, gitdir, packs[i].name, e);
    if (rc != SYNC_OK)
        goto out;
    st->loose = nloose;
    st->packs_folded = fold;
    if (git_repository_open_bare(&repo, gitdir) != 0) {
        rc = git_fail(e, "opening the history repository");
        goto out;
    }
    if ((rc = pack_write(repo, gitdir, &l, st, e)) != SYNC_OK ||
        (rc = pack_odb(&packed, gitdir, st->pack, e)) != SYNC_OK)
        goto out;
    git_repository_free(repo); /* done reading the old packs */
    repo = NULL;
    rc = loose_prune(gitdir, packed, &l, st, e);
    for (size_t i = 0; i < fold && rc == SYNC_OK; i++) {
        if (strcmp(packs[i].name, st->pack) != 0) /* the same objects again: same name */
            rc = pack_prune(gitdir, packed, packs[i].name, st, e);
    }
out:
    git_odb_free(packed);
    git_repository_free(repo);
    free(l.v);
    free(packs);
    git_libgit2_shutdown();
    return rc;
}
