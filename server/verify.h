/*
 * verify.h - `empact-hub verify`: checks a hub directory without writing to
 * it, so it may run while the hub serves.
 *
 * Four checks, each reported on one line (or as one object with --json):
 *   hub.db       PRAGMA integrity_check and foreign_key_check
 *   git          every object in history.git reads back and hashes to its id;
 *                every commit, tree and blob reachable from the branch is
 *                present; the commits form one chain with no merge or gap
 *   tables       the replicated tables equal the tree of the newest version
 *                (rows that differ are named)
 *   version log  _empact_version has seq 1..N with no gap, each row's commit
 *                is the seq-th commit of the branch and has that row's tree,
 *                and the branch ends at the newest row's commit
 * hub.db is read inside one read transaction; history.git is opened read
 * only and nothing is written to it (trees are rebuilt in memory).
 */
#ifndef EMPACT_VERIFY_H
#define EMPACT_VERIFY_H

#include <stdio.h>

#include "errctx.h"
#include "schema.h"

/* Runs every check on the hub in dir and prints the report to out (text, or
 * one JSON object when json is non-zero).  *failed = number of checks that
 * found a problem.  SYNC_EIO (with a sentence) when hub.db or history.git
 * cannot be opened at all; then nothing was checked. */
int hub_verify(const char *dir, const struct schema *s, int json, FILE *out, int *failed,
               struct errctx *e) SYNC_WUR;

#endif
