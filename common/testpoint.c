/*
 * testpoint.c - crash injection points, limits shortened for tests and the
 * frame log; see testpoint.h.  Empty unless the build defines
 * EMPACT_TEST_HOOKS.
 */
#include "testpoint.h"

#ifdef EMPACT_TEST_HOOKS

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned long hits; /* updated atomically: the hub calls from many threads */

void testpoint(const char *name)
{
    unsigned long n = __atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST);
    const char *log = getenv("EMPACT_TESTPOINT_LOG");
    const char *kill_after = getenv("EMPACT_KILL_AFTER");

    if (log != NULL && *log != '\0') {
        char line[128];
        int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
            int len = snprintf(line, sizeof(line), "%lu %s\n", n, name);
            if (len > 0)
                (void)!write(fd, line, (size_t)len);
            close(fd);
        }
    }
    if (kill_after != NULL && strtoul(kill_after, NULL, 10) == n)
        raise(SIGKILL);
}

int testpoint_limit(const char *env, int dflt)
{
    const char *s = getenv(env);
    char *end = NULL;
    long v;

    if (s == NULL || *s == '\0')
        return dflt;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > INT32_MAX)
        return dflt;
    return (int)v;
}

void testpoint_frame_log(const char *what, int type, const void *p, size_t n)
{
    const char *path = getenv("EMPACT_FRAME_LOG");
    char head[96];
    struct iovec iov[3];
    int fd, len;

    if (path == NULL || *path == '\0')
        return;
    if (type >= 0)
        len = snprintf(head, sizeof(head), "%ld %s type=0x%02x len=%zu\n", (long)getpid(), what,
                       (unsigned)type, n);
    else
        len = snprintf(head, sizeof(head), "%ld %s len=%zu\n", (long)getpid(), what, n);
    if (len <= 0 || (size_t)len >= sizeof(head))
        return;
    if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return;
    iov[0].iov_base = head;
    iov[0].iov_len = (size_t)len;
    iov[1].iov_base = (void *)(uintptr_t)p;
    iov[1].iov_len = p != NULL ? n : 0;
    iov[2].iov_base = "\n";
    iov[2].iov_len = 1;
    (void)!writev(fd, iov, 3);
    close(fd);
}

#else
/* ISO C wants a translation unit to declare something. */
typedef int testpoint_unused;
#endif
