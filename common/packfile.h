/*
 * packfile.h - git pack files (version 2) and their indexes (version 2), as
 * bytes: what the hub needs to write a version's pack (gitmap.c) and to fold
 * packs into one (server/gitpack.c) without libgit2's packbuilder.
 *
 * A pack is "PACK", the version (2) and the object count (32-bit big-endian
 * each), then the entries, then the SHA-1 of everything before it.  An entry
 * is a header (type in bits 4-6 of the first byte, the inflated size 4 bits
 * and then 7 bits at a time, low bits first, bit 7 saying another byte
 * follows), for an OFS_DELTA the distance back to its base entry (7 bits at a
 * time, high bits first, each continuation adding one), for a REF_DELTA the
 * base's 20-byte id, then a zlib stream of the object or of the delta.
 *
 * A delta is the base's size and the result's size (7 bits at a time, low
 * bits first), then instructions: a byte with bit 7 set copies from the base
 * (bits 0-3 say which of 4 offset bytes follow, bits 4-6 which of 3 size
 * bytes, low byte first; no size bytes means 0x10000); a byte 1..127 inserts
 * that many bytes that follow it.
 *
 * The index is "\377tOc", version 2, a fan-out table of 256 cumulative
 * counts by an id's first byte, the sorted ids, the CRC-32 of each entry's
 * bytes, each entry's offset (31 bits, or bit 31 and the position in a table
 * of 64-bit offsets that follows), the pack's SHA-1 and the index's own.
 *
 * The readers check every length and offset against the bytes they were
 * given: a damaged index or pack is refused with SYNC_EDATA and a sentence,
 * never read past its end.
 */
#ifndef EMPACT_PACKFILE_H
#define EMPACT_PACKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "errctx.h"

#define PACKFILE_ID_LEN 20
#define PACKFILE_HDR_MAX 16 /* room for an entry header or an OFS_DELTA distance */

/* Entry types, as git numbers them. */
enum packfile_type {
    PACKFILE_COMMIT = 1,
    PACKFILE_TREE = 2,
    PACKFILE_BLOB = 3,
    PACKFILE_TAG = 4,
    PACKFILE_OFS_DELTA = 6,
    PACKFILE_REF_DELTA = 7
};

/* An object written into a pack, for its index. */
struct packfile_obj {
    uint8_t id[PACKFILE_ID_LEN];
    uint64_t off;
    uint32_t crc; /* CRC-32 of its bytes in the pack, header included */
};

/* ---- writing -------------------------------------------------------------------- */

/* Writes an entry header for type and size into out; returns its length. */
size_t packfile_entry_header(uint8_t out[PACKFILE_HDR_MAX], int type, uint64_t size);

/* Writes an OFS_DELTA's distance back to its base (> 0) into out; returns its length. */
size_t packfile_ofs_encode(uint8_t out[PACKFILE_HDR_MAX], uint64_t distance);

/* Appends data as a zlib stream of stored (uncompressed) blocks. */
int packfile_stored(struct buf *out, const void *data, size_t len, struct errctx *e) SYNC_WUR;

/* 1 if the zlib stream at p (n bytes) starts with a stored block: what
 * packfile_stored() writes. */
int packfile_is_stored(const uint8_t *p, size_t n);

/* Appends to out a delta that makes target from base.  tree: both are git
 * tree bodies, matched entry by entry (a malformed one falls back to the
 * plain way); otherwise the common head and tail are copied and the middle
 * inserted.  The caller compares out's length with the target's. */
int packfile_delta(struct buf *out, const void *base, size_t blen, const void *target, size_t tlen,
                   int tree, struct errctx *e) SYNC_WUR;

/* Makes in out (emptied first) the result of delta d (dlen bytes) applied to
 * base: every instruction checked against the base and the sizes the delta
 * names; SYNC_EDATA with a sentence for a malformed one. */
int packfile_delta_apply(struct buf *out, const void *base, size_t blen, const void *d, size_t dlen,
                         struct errctx *e) SYNC_WUR;

/* Appends the index of a pack to idx: o[0..n) sorted by id, packsum the
 * pack's trailing SHA-1. */
int packfile_index(struct buf *idx, const struct packfile_obj *o, uint32_t n,
                   const uint8_t packsum[PACKFILE_ID_LEN], struct errctx *e) SYNC_WUR;

/* Writes p[0..n) to dir/name (mode 0444) through a temporary file
 * dir/tmp_empact_XXXXXX, fsynced before it is renamed into place.  The
 * directory itself is not fsynced: the caller does that once for all. */
int packfile_put_durable(const char *dir, const char *name, const void *p, size_t n,
                         struct errctx *e) SYNC_WUR;

/* ---- reading -------------------------------------------------------------------- */

/* A pack's index, borrowed from the bytes given to packfile_idx_parse(). */
struct packfile_idx {
    const uint8_t *ids, *crcs, *offs, *large;
    uint32_t n, nlarge;
};

/* Checks the index bytes p[0..n) against a pack of packlen bytes (magic,
 * version, fan-out order, length, every offset inside the pack's entries,
 * ids strictly ascending) and fills x. */
int packfile_idx_parse(struct packfile_idx *x, const void *p, size_t n, uint64_t packlen,
                       struct errctx *e) SYNC_WUR;

/* The offset of the i-th object (i < x->n) of a parsed index. */
uint64_t packfile_idx_off(const struct packfile_idx *x, uint32_t i);

/* Reads the entry header at p (avail bytes): *type, the inflated *size and
 * the header's length *used. */
int packfile_entry_parse(int *type, uint64_t *size, size_t *used, const uint8_t *p, size_t avail,
                         struct errctx *e) SYNC_WUR;

/* Reads an OFS_DELTA's distance at p (avail bytes) into *distance, its length into *used. */
int packfile_ofs_decode(uint64_t *distance, size_t *used, const uint8_t *p, size_t avail,
                        struct errctx *e) SYNC_WUR;

#endif
