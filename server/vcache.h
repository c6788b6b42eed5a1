/*
 * vcache.h - the versions a hub sends, compressed once: each pull used to
 * compress every version it sent again, so a version made one site's push
 * was compressed anew for each of the other sites (a tenth of the hub's CPU
 * with 40 sites).  Shared by the connections of one `empact-hub serve`.
 *
 * An entry is keyed by the version's number, its commit id and the
 * dictionary it was compressed with (0: none), and lives in the slot
 * seq % slots: the newest versions, which the sites pull, stay; an older
 * one is compressed again when a late site asks.  The bytes held are
 * bounded (VCACHE_BYTES); a version too large for a fair share of them is
 * not kept.  Thread-safe.
 */
#ifndef EMPACT_VCACHE_H
#define EMPACT_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "errctx.h"

#define VCACHE_SLOTS 4096
#define VCACHE_BYTES (16u * 1024u * 1024u)

struct vcache;

/* A new, empty cache; free with vcache_free() (takes NULL). */
int vcache_new(struct vcache **out, struct errctx *e) SYNC_WUR;
void vcache_free(struct vcache *c);

/* 1 and the compressed bytes appended to out when version seq (commit id
 * commit, dictionary dict) is held; 0 when it is not; SYNC_ENOMEM. */
int vcache_get(struct vcache *c, uint64_t seq, const uint8_t commit[20], uint32_t dict,
               struct buf *out, struct errctx *e) SYNC_WUR;

/* Keeps a copy of z[0..n), the version compressed (nothing if it is too
 * large or memory runs short: a cache only). */
void vcache_put(struct vcache *c, uint64_t seq, const uint8_t commit[20], uint32_t dict,
                const void *z, size_t n);

#endif
