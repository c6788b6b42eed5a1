/*
 * sync.h - one sync of a site's replica with its hub (DESIGN.md "The replica").
 */
#ifndef EMPACT_SYNC_H
#define EMPACT_SYNC_H

#include <sqlite3.h>
#include <stdint.h>

#include "buf.h"
#include "errctx.h"
#include "frame.h"
#include "schema.h"

struct sync_result {
    int pushed;            /* changes in the local changeset sent */
    uint64_t push_version; /* version the hub made of it (0: none) */
    int duplicate;         /* the hub had applied this push already */
    uint32_t overridden;   /* local changes that lost in conflicts at the hub */
    uint64_t conflicts;    /* conflict log entries received for this site */
    int rebuilt;           /* the base had diverged and was rebuilt from the hub */
    uint64_t pulled;       /* versions applied from the hub */
    uint64_t version;      /* synced version after the sync */
    char tree[41];         /* dataset hash of that version */
    uint64_t hub_head;     /* the hub's head version as of this contact (0: no contact) */
    uint64_t wire_in;      /* bytes received from the hub on the network (TLS included) */
    uint64_t wire_out;     /* bytes sent to the hub on the network (TLS included) */
    uint64_t frames_in;    /* of which the protocol's frames (no TLS) */
    uint64_t frames_out;
    uint32_t dict;      /* compression dictionary used (0: none) */
    int dict_fetched;   /* this sync fetched it from the hub */
    int own_versions;   /* versions applied from this site's own push (no changeset pulled) */
    const char *hashed; /* how base's hash was proved: "kept" (nothing applied), "touched"
                           (the touched keys' shards rehashed), "full" (every row); NULL:
                           not reached */
};

/* Runs one sync inside one write transaction on db: build the local
 * changeset, push it, pull and apply every newer version to the base copies,
 * make the touched rows of each table equal to base, clear the dirty keys,
 * and check the base's dataset hash against the hub's.  Any failure rolls
 * everything back: local edits stay pending.  The outcome (success time or
 * failure sentence) is recorded in _empact_meta after the transaction. */
int sync_run(sqlite3 *db, const struct schema *s, struct sync_result *r, struct errctx *e) SYNC_WUR;

/* A bare connection to the replica's hub, past HELLO and WELCOME, for the
 * join snapshot (bootstrap.h).  sync_link_read() turns an ERROR frame from
 * the hub into the error it names; sync_link_close() says BYE first when bye
 * is non-zero (the site finished what it asked for), and takes NULL. */
struct sync_link;
int sync_link_open(struct sync_link **out, sqlite3 *db, const struct schema *s, uint64_t *hub_head,
                   struct errctx *e) SYNC_WUR;
int sync_link_send(struct sync_link *l, uint8_t type, const struct buf *payload,
                   struct errctx *e) SYNC_WUR;
int sync_link_read(struct sync_link *l, struct frame **f, struct errctx *e) SYNC_WUR;
void sync_link_close(struct sync_link *l, int bye);

/* As sync_link_open(), through ctx (borrowed; the client context the
 * replica's certificate, key and CA make), so many connections made one
 * after another need not each parse them again: tests/bench/load.c. */
struct tls_ctx;
int sync_link_open_ctx(struct sync_link **out, sqlite3 *db, const struct schema *s,
                       struct tls_ctx *ctx, uint64_t *hub_head, struct errctx *e) SYNC_WUR;

#endif
