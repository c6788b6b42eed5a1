/*
 * backup.c - online backup of a hub directory (see backup.h).
 *
 * Order, and why it is consistent while pushes go on:
 *   1. hub.db -> DEST.tmp/hub.db with sqlite3_backup_step(-1): one read
 *      snapshot; its newest _empact_version row is version V, commit C.
 *   2. history.git objects: every loose object, then every pack.  Objects of
 *      C were written before V's row was committed, so each was then loose
 *      or packed; gc packs an object (pack renamed into place, fsynced)
 *      before it removes the loose copy or the pack it came from, so one that
 *      vanishes during step 2 is in a pack listed after it (a pack that
 *      vanishes makes the pack copy pass again; one whose .idx is in place
 *      but not yet its .pack is being written, and is left out).  Objects
 *      newer than V come along unreachable, which is harmless.
 *   3. refs/heads/main = C in the copy; every version's commit and root tree,
 *      and every object of C's tree, are checked to be present.
 *   4. ca.pem, ca.key, hub.pem, hub.key (keys 0600, certificates as they are).
 *   5. syncfs, rename DEST.tmp -> DEST, fsync DEST's parent.
 */
#include "backup.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <git2.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitmap.h"
#include "hub.h"

#define PATH_LEN 4096
/* hubdir and dest are refused when longer, so every path built from them fits. */
#define ARG_PATH_MAX 2048

/* snprintf for paths under hubdir or dest (their length was checked). */
static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void pathf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    assert(len >= 0 && (size_t)len < n);
    (void)len;
}

struct copy_ctx {
    const char *src, *dst; /* history.git of the hub and of the copy */
    struct backup_result *r;
    struct errctx *e;
};

static int git_fail(struct errctx *e, const char *what)
{
    const git_error *ge = git_error_last();
    return errctx_set(e, SYNC_EIO, "git: %s: %s", what, ge && ge->message ? ge->message : "failed");
}

/* Copies src to dst (created, mode), adding the bytes to *bytes.
 * SYNC_EDATA when src does not exist (the caller decides if that is fine). */
static int file_copy(const char *src, const char *dst, mode_t mode, long long *bytes,
                     struct errctx *e)
{
    char buf[65536];
    int in = -1, out = -1, rc = SYNC_OK;
    ssize_t n;

    if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT
                   ? SYNC_EDATA
                   : errctx_set(e, SYNC_EIO, "cannot read %s: %s", src, strerror(errno));
    if ((out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)) < 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot create %s: %s", dst, strerror(errno));
        goto out;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            rc = errctx_set(e, SYNC_EIO, "cannot write %s: %s", dst, strerror(errno));
            goto out;
        }
        *bytes += n;
    }
    if (n < 0)
        rc = errctx_set(e, SYNC_EIO, "cannot read %s: %s", src, strerror(errno));
    else if (fchmod(out, mode) != 0) /* O_CREAT's mode is cut by the umask */
        rc = errctx_set(e, SYNC_EIO, "cannot set the mode of %s: %s", dst, strerror(errno));
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* ---- 1. hub.db ------------------------------------------------------------- */

static int db_copy(const char *hubdir, const char *tmp, struct backup_result *r, struct errctx *e)
{
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b = NULL;
    sqlite3_stmt *st = NULL;
    char path[PATH_LEN];
    struct stat sb;
    int rc, step;

    pathf(path, sizeof(path), "%s/%s", tmp, HUB_DB);
    if ((rc = hub_reader_open(&src, hubdir, e)) != SYNC_OK)
        return rc;
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        (b = sqlite3_backup_init(dst, "main", src, "main")) == NULL) {
        rc = errctx_set(e, SYNC_EIO, "cannot start the backup of hub.db: %s",
                        dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    /* -1: every page in one step, inside one read transaction of src, so a
     * push committed meanwhile does not restart the copy. */
    while ((step = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || step == SQLITE_LOCKED)
        sqlite3_sleep(50);
    if (sqlite3_backup_finish(b) != SQLITE_OK || step != SQLITE_DONE) {
        b = NULL;
        rc = errctx_set(e, SYNC_EIO, "cannot back up hub.db: %s", sqlite3_errmsg(dst));
        goto out;
    }
    b = NULL;
    if (sqlite3_exec(dst, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(dst, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        rc = errctx_set(e, SYNC_EDATA, "the copy of hub.db fails its integrity check: %s",
                        st ? (const char *)sqlite3_column_text(st, 0) : sqlite3_errmsg(dst));
        goto out;
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(dst,
                           "SELECT seq, commit_id FROM _empact_version ORDER BY seq DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW || sqlite3_column_bytes(st, 1) != 40) {
        rc = errctx_set(e, SYNC_EDATA, "the copy of hub.db has no version log: %s",
                        sqlite3_errmsg(dst));
        goto out;
    }
    r->version = (uint64_t)sqlite3_column_int64(st, 0);
    snprintf(r->commit, sizeof(r->commit), "%s", (const char *)sqlite3_column_text(st, 1));
out:
    sqlite3_finalize(st);
    if (b != NULL)
        (void)sqlite3_backup_finish(b);
    sqlite3_close(dst);
    sqlite3_close(src);
    if (rc == SYNC_OK && stat(path, &sb) == 0)
        r->db_bytes = (long long)sb.st_size;
    return rc;
}

/* ---- 2. git objects ---------------------------------------------------------- */

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return s[n] == '\0';
}

/* Every loose object; one that is gone was packed meanwhile (step 2 above). */
static int loose_copy(struct copy_ctx *c)
{
    char sdir[PATH_LEN], ddir[PATH_LEN], s[PATH_LEN + 64], d[PATH_LEN + 64];
    int rc = SYNC_OK;

    for (int i = 0; i < 256 && rc == SYNC_OK; i++) {
        DIR *dir;
        struct dirent *de;

        pathf(sdir, sizeof(sdir), "%s/objects/%02x", c->src, i);
        pathf(ddir, sizeof(ddir), "%s/objects/%02x", c->dst, i);
        if ((dir = opendir(sdir)) == NULL) {
            if (errno == ENOENT)
                continue;
            return errctx_set(c->e, SYNC_EIO, "cannot read %s: %s", sdir, strerror(errno));
        }
        while (rc == SYNC_OK && (de = readdir(dir)) != NULL) {
            if (strlen(de->d_name) != 38 || !is_hex(de->d_name, 38))
                continue;
            if (mkdir(ddir, 0755) != 0 && errno != EEXIST) {
                rc = errctx_set(c->e, SYNC_EIO, "cannot create %s: %s", ddir, strerror(errno));
                break;
            }
            pathf(s, sizeof(s), "%s/%s", sdir, de->d_name);
            pathf(d, sizeof(d), "%s/%s", ddir, de->d_name);
            rc = file_copy(s, d, 0444, &c->r->git_bytes, c->e);
            if (rc == SYNC_OK)
                c->r->loose++;
            else if (rc == SYNC_EDATA)
                rc = SYNC_OK;
        }
        closedir(dir);
    }
    return rc;
}

/* 1 if dir/name (pack-<hash>.idx) is there but its .pack is not. */
static int idx_without_pack(const char *dir, const char *name)
{
    char p[PATH_LEN + 300];

    pathf(p, sizeof(p), "%s/%.45s.pack", dir, name);
    if (access(p, F_OK) == 0 || errno != ENOENT)
        return 0;
    pathf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* One pass over the packs listed now: its .pack, then its .idx, of each one
 * not copied yet.  *vanished = 1 if one went (folded by gc meanwhile: its
 * objects are in a newer pack, which the next pass finds). */
static int packs_pass(struct copy_ctx *c, int *vanished)
{
    char sdir[PATH_LEN], s[PATH_LEN + 300], d[PATH_LEN + 300];
    DIR *dir;
    struct dirent *de;
    int rc = SYNC_OK;

    *vanished = 0;
    pathf(sdir, sizeof(sdir), "%s/objects/pack", c->src);
    if ((dir = opendir(sdir)) == NULL)
        return errno == ENOENT
                   ? SYNC_OK
                   : errctx_set(c->e, SYNC_EIO, "cannot read %s: %s", sdir, strerror(errno));
    while (rc == SYNC_OK && (de = readdir(dir)) != NULL) {
        size_t n = strlen(de->d_name);
        static const char *const ext[2] = {"pack", "idx"};

        /* pack-<40 hex>.idx; temporary files of a pack being written differ */
        if (n != 49 || strncmp(de->d_name, "pack-", 5) != 0 || strcmp(de->d_name + 45, ".idx"))
            continue;
        pathf(d, sizeof(d), "%s/objects/pack/%.45s.idx", c->dst, de->d_name);
        if (access(d, F_OK) == 0)
            continue; /* copied in an earlier pass */
        for (int k = 0; k < 2 && rc == SYNC_OK; k++) {
            pathf(s, sizeof(s), "%s/%.45s.%s", sdir, de->d_name, ext[k]);
            pathf(d, sizeof(d), "%s/objects/pack/%.45s.%s", c->dst, de->d_name, ext[k]);
            rc = file_copy(s, d, 0444, &c->r->git_bytes, c->e);
        }
        if (rc == SYNC_EDATA && idx_without_pack(sdir, de->d_name)) {
            /* Being written: libgit2's indexer, which writes a fold's pack
             * (and wrote every version's before the hub wrote their
             * indexes itself), renames the .idx into place before the
             * .pack.  A fold's pack holds objects of packs that are removed
             * only after it is whole (a pass that sees one of them vanish
             * runs again); a version's pack belongs to a version newer than
             * the copied hub.db (V's objects were in place before V's row
             * was committed). */
            rc = SYNC_OK;
        } else if (rc == SYNC_EDATA) {
            for (int k = 0; k < 2; k++) {
                pathf(d, sizeof(d), "%s/objects/pack/%.45s.%s", c->dst, de->d_name, ext[k]);
                (void)unlink(d);
            }
            *vanished = 1;
            rc = SYNC_OK;
        } else if (rc == SYNC_OK) {
            c->r->packs++;
        }
    }
    closedir(dir);
    return rc;
}

/* Every pack (after the loose copy).  gc writes the pack it folds others
 * into before it removes them, so a pass that saw one vanish is followed by
 * another that copies the new one. */
static int packs_copy(struct copy_ctx *c)
{
    int vanished = 0, rc;

    for (int pass = 0; pass < 5; pass++) {
        if ((rc = packs_pass(c, &vanished)) != SYNC_OK || !vanished)
            return rc;
        /* a fold removes its packs one by one once its own pack is whole */
        (void)sqlite3_sleep(100);
    }
    return errctx_set(c->e, SYNC_EIO,
                      "history.git's packs kept changing during five passes of the copy; "
                      "run the backup again");
}

/* ---- 3. the branch, and what must be there ----------------------------------------- */

static int tree_entry_check(const char *root, const git_tree_entry *te, void *payload)
{
    git_odb *odb = payload;

    (void)root;
    return git_odb_exists(odb, git_tree_entry_id(te)) ? 0 : -1;
}

/* Every version's commit and root tree, and C's whole tree, are in the copy. */
static int objects_check(git_repository *repo, const char *dbpath, const git_oid *head,
                         struct errctx *e)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    git_odb *odb = NULL;
    git_commit *c = NULL;
    git_tree *t = NULL;
    int rc = SYNC_OK, step;

    if (git_repository_odb(&odb, repo) != 0)
        return git_fail(e, "opening the copied objects");
    /* read-write, so closing it removes the -wal and -shm files again */
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT seq, commit_id, tree_id FROM _empact_version", -1, &st,
                           NULL) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "cannot read the copy of hub.db: %s", sqlite3_errmsg(db));
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        for (int col = 1; col <= 2; col++) {
            git_oid id;
            if (git_oid_fromstr(&id, (const char *)sqlite3_column_text(st, col)) != 0 ||
                !git_odb_exists(odb, &id)) {
                rc = errctx_set(e, SYNC_EIO,
                                "version %lld: %s %s is missing from the copied history",
                                (long long)sqlite3_column_int64(st, 0),
                                col == 1 ? "commit" : "tree", sqlite3_column_text(st, col));
                goto out;
            }
        }
    }
    if (step != SQLITE_DONE) {
        rc = errctx_set(e, SYNC_EIO, "cannot read the copy of hub.db: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (git_commit_lookup(&c, repo, head) != 0 || git_commit_tree(&t, c) != 0 ||
        git_tree_walk(t, GIT_TREEWALK_PRE, tree_entry_check, odb) != 0)
        rc = errctx_set(e, SYNC_EIO, "the copied history lacks objects of the head commit");
out:
    git_tree_free(t);
    git_commit_free(c);
    sqlite3_finalize(st);
    sqlite3_close(db);
    git_odb_free(odb);
    return rc;
}

static int git_copy(const char *hubdir, const char *tmp, struct backup_result *r, struct errctx *e)
{
    char src[PATH_LEN], dst[PATH_LEN], dbpath[PATH_LEN];
    struct copy_ctx c = {src, dst, r, e};
    git_repository *repo = NULL;
    git_reference *ref = NULL;
    git_oid head;
    int rc;

    pathf(src, sizeof(src), "%s/%s", hubdir, HUB_GIT);
    pathf(dst, sizeof(dst), "%s/%s", tmp, HUB_GIT);
    pathf(dbpath, sizeof(dbpath), "%s/%s", tmp, HUB_DB);
    if ((rc = gitmap_init(dst, e)) != SYNC_OK || (rc = loose_copy(&c)) != SYNC_OK ||
        (rc = packs_copy(&c)) != SYNC_OK)
        return rc;
    if (git_repository_open_bare(&repo, dst) != 0)
        return git_fail(e, "opening the copied history");
    if (git_oid_fromstr(&head, r->commit) != 0) {
        rc = errctx_set(e, SYNC_EDATA, "hub.db names commit %s, not an object id", r->commit);
        goto out;
    }
    if ((rc = objects_check(repo, dbpath, &head, e)) != SYNC_OK)
        goto out;
    if (git_reference_create(&ref, repo, GITMAP_BRANCH, &head, 1, "empact-hub backup") != 0)
        rc = git_fail(e, "setting the copied branch");
out:
    git_reference_free(ref);
    git_repository_free(repo);
    return rc;
}

/* ---- 4. certificates and keys -------------------------------------------------- */

static int pki_copy(const char *hubdir, const char *tmp, struct backup_result *r, struct errctx *e)
{
    static const char *const names[4] = {HUB_CA_CERT, HUB_CA_KEY, HUB_CERT, HUB_KEY};
    static const int secret[4] = {0, 1, 0, 1};
    char s[PATH_LEN], d[PATH_LEN];
    long long bytes = 0;
    struct stat sb;
    int rc;

    for (int i = 0; i < 4; i++) {
        pathf(s, sizeof(s), "%s/%s", hubdir, names[i]);
        pathf(d, sizeof(d), "%s/%s", tmp, names[i]);
        if (stat(s, &sb) != 0)
            return errctx_set(e, SYNC_EIO, "cannot read %s: %s", s, strerror(errno));
        rc = file_copy(s, d, secret[i] ? 0600 : (sb.st_mode & 0777), &bytes, e);
        if (rc == SYNC_EDATA)
            rc = errctx_set(e, SYNC_EIO, "%s vanished while it was copied", s);
        if (rc != SYNC_OK)
            return rc;
        r->key_files++;
    }
    return SYNC_OK;
}

/* ---- the whole ------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* dest must not exist, or be an empty directory. */
static int dest_check(const char *dest, const char *tmp, struct errctx *e)
{
    struct stat sb;
    DIR *dir;
    struct dirent *de;
    int empty = 1;

    if (lstat(tmp, &sb) == 0)
        return errctx_set(e, SYNC_EUSAGE,
                          "%s exists: an earlier backup was interrupted; remove it and retry", tmp);
    if (lstat(dest, &sb) != 0)
        return errno == ENOENT
                   ? SYNC_OK
                   : errctx_set(e, SYNC_EIO, "cannot look at %s: %s", dest, strerror(errno));
    if (!S_ISDIR(sb.st_mode) || (dir = opendir(dest)) == NULL)
        return errctx_set(e, SYNC_EUSAGE, "%s exists and is not an empty directory", dest);
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            empty = 0;
    }
    closedir(dir);
    return empty
               ? SYNC_OK
               : errctx_set(e, SYNC_EUSAGE, "%s is not empty; back up into a new directory", dest);
}

/* syncfs on the copy, rename it into place, fsync the parent directory. */
static int publish(const char *tmp, const char *dest, struct errctx *e)
{
    char parent[PATH_LEN];
    int fd, rc = SYNC_OK;

    if ((fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || syncfs(fd) != 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot flush %s to disk: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(fd);
    if (rename(tmp, dest) != 0)
        return errctx_set(e, SYNC_EIO, "cannot rename %s to %s: %s", tmp, dest, strerror(errno));
    pathf(parent, sizeof(parent), "%s", dest);
    if ((fd = open(dirname(parent), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        if (fsync(fd) != 0)
            rc = errctx_set(e, SYNC_EIO, "cannot fsync the directory of %s: %s", dest,
                            strerror(errno));
        close(fd);
    }
    return rc;
}

int backup_run(const char *hubdir, const char *dest, struct backup_result *r, struct errctx *e)
{
    char tmp[PATH_LEN], probe[PATH_LEN];
    struct stat sb;
    int rc;

    memset(r, 0, sizeof(*r));
    if (strlen(dest) > ARG_PATH_MAX || strlen(hubdir) > ARG_PATH_MAX)
        return errctx_set(e, SYNC_EUSAGE, "path too long (over %d bytes)", ARG_PATH_MAX);
    pathf(probe, sizeof(probe), "%s/%s", hubdir, HUB_DB);
    if (stat(probe, &sb) != 0)
        return errctx_set(e, SYNC_EUSAGE, "%s is not a hub directory (no %s)", hubdir, HUB_DB);
    pathf(tmp, sizeof(tmp), "%s.tmp", dest);
    if ((rc = dest_check(dest, tmp, e)) != SYNC_OK)
        return rc;
    if (mkdir(tmp, 0700) != 0)
        return errctx_set(e, SYNC_EIO, "cannot create %s: %s", tmp, strerror(errno));
    if ((rc = db_copy(hubdir, tmp, r, e)) != SYNC_OK || (rc = git_copy(hubdir, tmp, r, e)) ||
        (rc = pki_copy(hubdir, tmp, r, e)) != SYNC_OK || (rc = publish(tmp, dest, e)) != SYNC_OK)
        (void)nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
