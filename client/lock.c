/*
 * lock.c - the replica's lock file (see lock.h).
 *
 * Invariant: a process holds the lock only on the inode that is at
 * SITE.db.lock when it checks after flock(); a process that locked a file
 * unlinked meanwhile by lock_release() drops it and tries again.  The file
 * holds the holder's pid as text, for messages only.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct lock {
    int fd;
    char db[PATH_MAX];
    char path[PATH_MAX];
};

/* Tries a few times when the file is replaced under us: each round means
 * another process removed a lock file it held, which happens once per join. */
#define LOCK_ATTEMPTS 8

/* The pid written in the lock file, or 0. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    long pid;
    char *end;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    pid = strtol(buf, &end, 10);
    return pid > 0 && (*end == '\n' || *end == '\0') ? pid : 0;
}

static void write_pid(int fd)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

    if (ftruncate(fd, 0) == 0 && n > 0)
        (void)!pwrite(fd, buf, (size_t)n, 0);
}

/* 1 when fd is still the file at path. */
static int still_there(int fd, const char *path)
{
    struct stat a, b;

    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int lock_acquire(struct lock **out, const char *db_path, struct errctx *e)
{
    struct lock *l;
    int n;

    *out = NULL;
    if ((l = calloc(1, sizeof(*l))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    l->fd = -1;
    n = snprintf(l->path, sizeof(l->path), "%s.lock", db_path);
    if (n < 0 || (size_t)n >= sizeof(l->path) ||
        (size_t)snprintf(l->db, sizeof(l->db), "%s", db_path) >= sizeof(l->db)) {
        free(l);
        return errctx_set(e, SYNC_EUSAGE, "the replica's path is too long");
    }
    for (int i = 0; i < LOCK_ATTEMPTS; i++) {
        l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (l->fd < 0) {
            int rc = errctx_set(e, SYNC_EIO, "cannot open the lock file %s: %s", l->path,
                                strerror(errno));
            free(l);
            return rc;
        }
        if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            long pid = err == EWOULDBLOCK ? holder_pid(l->fd) : 0;
            int rc;
            if (err != EWOULDBLOCK)
                rc = errctx_set(e, SYNC_EIO, "cannot lock %s: %s", l->path, strerror(err));
            else if (pid > 0)
                rc = errctx_set(e, SYNC_ELOCKED,
                                "another sync or join of %s is running (process %ld holds %s); "
                                "this one did nothing",
                                db_path, pid, l->path);
            else
                rc = errctx_set(e, SYNC_ELOCKED,
                                "another sync or join of %s is running (%s is locked); this one "
                                "did nothing",
                                db_path, l->path);
            close(l->fd);
            free(l);
            return rc;
        }
        if (still_there(l->fd, l->path)) {
            write_pid(l->fd);
            *out = l;
            return SYNC_OK;
        }
        close(l->fd); /* its holder removed it before we locked it: take the new one */
        l->fd = -1;
    }
    free(l);
    return errctx_set(e, SYNC_ELOCKED, "the lock file %s.lock keeps being replaced; try again",
                      db_path);
}

void lock_release(struct lock *l)
{
    if (l == NULL)
        return;
    if (access(l->db, F_OK) != 0 && errno == ENOENT)
        unlink(l->path);
    else
        (void)!ftruncate(l->fd, 0); /* no stale pid for a later message */
    close(l->fd);
    free(l);
}
