/*
 * testpoint.h - crash injection for tests.
 *
 * Builds made with -DEMPACT_TEST_HOOKS (build-test/ and build-asan/, never
 * bin/) count every testpoint() a process reaches.  When the count reaches
 * the number in $EMPACT_KILL_AFTER, the process kills itself with SIGKILL,
 * so a test can stop a sync or a push after every step in turn.  With
 * $EMPACT_TESTPOINT_LOG set, each point reached appends its number and name
 * to that file, so a test can count the points of a normal run.  In other
 * builds testpoint() compiles to nothing.
 *
 * The same builds let a test shorten a limit through the environment
 * (testpoint_limit(), e.g. EMPACT_IDLE_TIMEOUT_MS) and log the plaintext of
 * every frame to $EMPACT_FRAME_LOG (testpoint_frame_log()); in other builds
 * the limit is the compiled one and nothing is logged.
 */
#ifndef EMPACT_TESTPOINT_H
#define EMPACT_TESTPOINT_H

#include <stddef.h>

#ifdef EMPACT_TEST_HOOKS
void testpoint(const char *name);

/* The value of environment variable env if it is a whole number in 1 ..
 * INT32_MAX, otherwise dflt. */
int testpoint_limit(const char *env, int dflt);

/*
 * With $EMPACT_FRAME_LOG set, appends one record to that file: a line
 * "PID WHAT type=0xTT len=N" (type < 0: none), the n bytes at p, and a
 * newline, in one write so threads do not interleave.  p is borrowed; WHAT
 * says where the bytes were seen ("send", "recv", "zstd-in", "zstd-out").
 */
void testpoint_frame_log(const char *what, int type, const void *p, size_t n);
#else
#define testpoint(name) ((void)0)
#define testpoint_limit(env, dflt) (dflt)
#define testpoint_frame_log(what, type, p, n) ((void)0)
#endif

#endif
