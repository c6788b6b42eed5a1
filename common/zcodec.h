/*
 * zcodec.h - zstd compression of changesets with a hard bound on output.
 *
 * Compressed payloads come from the network, so decompression never trusts
 * the size the frame header claims: the output is capped at the caller's
 * bound (at most CHANGESET_MAX) and a payload that would exceed it is
 * refused with SYNC_ELIMIT before or while decompressing.
 */
#ifndef EMPACT_ZCODEC_H
#define EMPACT_ZCODEC_H

#include <stddef.h>

#include <stdint.h>

#include "buf.h"
#include "errctx.h"

/* A zstd dictionary (`empact-hub train-dict`): small changesets share table
 * headers and typical values that a dictionary holds, so a one-row push
 * compresses to a fraction of its plain zstd size.  Read-only once loaded,
 * so one zdict may be used by many threads at once. */
struct zdict;

/* Loads a dictionary from n bytes at p (copied).  SYNC_EPROTO with a
 * sentence if it is not a zstd dictionary with a non-zero id, or its size is
 * outside ZDICT_SIZE_MIN..ZDICT_SIZE_MAX. */
int zdict_load(struct zdict **out, const void *p, size_t n, struct errctx *e) SYNC_WUR;

/* The dictionary's id (as zstd frames compressed with it name it), its
 * bytes and size. */
uint32_t zdict_id(const struct zdict *d);
const void *zdict_bytes(const struct zdict *d);
size_t zdict_size(const struct zdict *d);

/* Safe to call with NULL. */
void zdict_free(struct zdict *d);

/* The dictionary id a zstd payload's first frame names (0: none, or not a
 * zstd frame). */
uint32_t zcodec_frame_dict(const void *p, size_t n);

/* Trains a dictionary of at most cap bytes from nsamples samples laid end to
 * end at samples (sizes[i] bytes each) and appends it to out.  SYNC_EDATA
 * with a sentence when the samples are too few or too alike to train on. */
int zdict_train(struct buf *out, size_t cap, const void *samples, const size_t *sizes,
                unsigned nsamples, struct errctx *e) SYNC_WUR;

/* Compresses n bytes at p (zstd level ZSTD_LEVEL) and appends them to out. */
int zcodec_compress(struct buf *out, const void *p, size_t n, struct errctx *e) SYNC_WUR;

/* The same with dictionary d (NULL: none, as zcodec_compress). */
int zcodec_compress_dict(struct buf *out, const void *p, size_t n, const struct zdict *d,
                         struct errctx *e) SYNC_WUR;

/* One zstd frame of nparts pieces laid end to end (as if they were one
 * buffer, content size in the header), without copying them together;
 * dictionary d or NULL. */
int zcodec_compress_parts(struct buf *out, const void *const *parts, const size_t *lens, int nparts,
                          const struct zdict *d, struct errctx *e) SYNC_WUR;

/* An encoder kept for many frames (one thread at a time): the hub sends a
 * pull's versions through one, instead of setting zstd up per version. */
struct zenc;
int zenc_new(struct zenc **out, struct errctx *e) SYNC_WUR;
void zenc_free(struct zenc *z); /* NULL: nothing */
/* zcodec_compress_dict() through z. */
int zenc_compress(struct zenc *z, struct buf *out, const void *p, size_t n, const struct zdict *d,
                  struct errctx *e) SYNC_WUR;

/* A decoder kept for many frames (one thread at a time): a site decodes a
 * pull's versions through one. */
struct zdec;
int zdec_new(struct zdec **out, struct errctx *e) SYNC_WUR;
void zdec_free(struct zdec *z); /* NULL: nothing */
/* zcodec_decompress_dict() through z. */
int zdec_decompress(struct zdec *z, struct buf *out, const void *p, size_t n, size_t max_out,
                    const struct zdict *d, struct errctx *e) SYNC_WUR;

/* Decompresses one or more zstd frames at p into out (appended), producing at
 * most max_out bytes.  SYNC_ELIMIT if the content is larger, SYNC_EPROTO if it
 * is not valid zstd or is truncated. */
int zcodec_decompress(struct buf *out, const void *p, size_t n, size_t max_out,
                      struct errctx *e) SYNC_WUR;

/* The same, where frames may be compressed with dictionary d (NULL: none).
 * A frame naming another dictionary is refused with SYNC_EPROTO. */
int zcodec_decompress_dict(struct buf *out, const void *p, size_t n, size_t max_out,
                           const struct zdict *d, struct errctx *e) SYNC_WUR;

#endif
