/*
 * snapshot.h - the hub's side of a new site's join: every replicated table
 * as of the head version, in one read snapshot, streamed as SNAP_HEAD,
 * SNAP_DATA ... and SNAP_END frames (common/PROTOCOL.md, "Joining").
 */
#ifndef EMPACT_SNAPSHOT_H
#define EMPACT_SNAPSHOT_H

#include <sqlite3.h>
#include <stdint.h>

#include "errctx.h"
#include "frame.h"
#include "schema.h"

struct snapshot_stats {
    uint64_t version; /* the version the snapshot is of */
    uint64_t rows;
    uint64_t raw;    /* changeset bytes before compression */
    uint64_t wire;   /* compressed bytes sent in SNAP_DATA frames */
    uint32_t chunks; /* SNAP_DATA frames */
};

/* Sends the snapshot over io, reading rdb (a hub_reader_open() connection,
 * not inside a transaction) in one read transaction, so the rows are exactly
 * the tree of the version announced.  Memory stays near SNAPSHOT_CHUNK_RAW
 * whatever the size of the tables. */
int snapshot_send(sqlite3 *rdb, const struct schema *s, struct frame_io *io,
                  struct snapshot_stats *st, struct errctx *e) SYNC_WUR;

#endif
