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
 */
#ifndef EMPACT_TESTPOINT_H
#define EMPACT_TESTPOINT_H

#ifdef EMPACT_TEST_HOOKS
void testpoint(const char *name);
#else
#define testpoint(name) ((void)0)
#endif

#endif
