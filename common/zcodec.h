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

#include "buf.h"
#include "errctx.h"

/* Compresses n bytes at p (zstd level ZSTD_LEVEL) and appends them to out. */
int zcodec_compress(struct buf *out, const void *p, size_t n, struct errctx *e) SYNC_WUR;

/* Decompresses one or more zstd frames at p into out (appended), producing at
 * most max_out bytes.  SYNC_ELIMIT if the content is larger, SYNC_EPROTO if it
 * is not valid zstd or is truncated. */
int zcodec_decompress(struct buf *out, const void *p, size_t n, size_t max_out,
                      struct errctx *e) SYNC_WUR;

#endif
