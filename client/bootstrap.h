/*
 * bootstrap.h - a new replica's first data: a snapshot of the hub's
 * replicated tables at its head version, instead of a replay of every
 * version since the first (common/PROTOCOL.md, "Joining").
 */
#ifndef EMPACT_BOOTSTRAP_H
#define EMPACT_BOOTSTRAP_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

#include "errctx.h"
#include "schema.h"

struct bootstrap_result {
    uint64_t version; /* the hub version the replica now holds */
    uint64_t rows;    /* rows installed */
    uint64_t wire;    /* compressed bytes received */
    uint64_t raw;     /* changeset bytes they decompressed to */
};

/* Installs the hub's snapshot into db, a replica just made by
 * replica_create() that has never synced: every row goes into the base copy
 * and the table, the base's dataset hash must equal the tree the hub
 * announced, and base_version becomes the snapshot's version; all in one
 * transaction, so a failure leaves db as it was.  Progress goes to progress
 * (NULL: none): a bar redrawn in place when it is a terminal, otherwise a
 * plain line at each tenth of the rows. */
int bootstrap_run(sqlite3 *db, const struct schema *s, FILE *progress, struct bootstrap_result *r,
                  struct errctx *e) SYNC_WUR;

#endif
