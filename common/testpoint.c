/*
 * testpoint.c - crash injection points; see testpoint.h.  Empty unless the
 * build defines EMPACT_TEST_HOOKS.
 */
#include "testpoint.h"

#ifdef EMPACT_TEST_HOOKS

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#else
/* ISO C wants a translation unit to declare something. */
typedef int testpoint_unused;
#endif
