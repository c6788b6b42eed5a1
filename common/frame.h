/*
 * frame.h - the frame codec: how messages travel inside TLS.
 *
 * A frame is a 5-byte header followed by the payload:
 *     offset 0  u32 big-endian  payload length (0 .. max_len)
 *     offset 4  u8              frame type (see proto.h)
 * The length is checked against the caller's limit (at most FRAME_MAX)
 * before anything is allocated.
 */
#ifndef EMPACT_FRAME_H
#define EMPACT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "errctx.h"

/*
 * A byte stream: read exactly n bytes or fail; write all n bytes or fail.
 * The two frame_ hooks are optional (NULL: not called); they let a stream
 * bound the time a whole incoming frame may take (tls.c, FRAME_DEADLINE_MS):
 * frame_read calls frame_sized with the payload length once it has the
 * header, and frame_done when it returns, whatever the result.
 */
struct frame_io {
    int (*read)(void *ctx, void *buf, size_t n, struct errctx *e);
    int (*write)(void *ctx, const void *buf, size_t n, struct errctx *e);
    void *ctx;
    void (*frame_sized)(void *ctx, uint32_t len);
    void (*frame_done)(void *ctx);
};

struct frame {
    uint8_t type;
    uint32_t len;
    uint8_t *payload; /* owned; len bytes, plus a NUL after them for convenience */
};

/* Parses a header.  SYNC_ELIMIT if the length exceeds max_len (which must be
 * <= FRAME_MAX), naming both numbers. */
int frame_header_parse(const uint8_t hdr[FRAME_HEADER_LEN], uint32_t max_len, uint8_t *type,
                       uint32_t *len, struct errctx *e) SYNC_WUR;

/* Writes a header for a payload of len bytes into hdr. */
void frame_header_write(uint8_t hdr[FRAME_HEADER_LEN], uint8_t type, uint32_t len);

/* Reads one frame from io.  On success *out is a new frame the caller frees
 * with frame_free().  Errors from io are passed up; an over-long length gives
 * SYNC_ELIMIT without reading the payload.  Test builds log the frame to
 * $EMPACT_FRAME_LOG (testpoint.h), as frame_write does. */
int frame_read(struct frame **out, struct frame_io *io, uint32_t max_len,
               struct errctx *e) SYNC_WUR;

/* Writes one frame (header + payload, payload may be NULL when len is 0).
 * SYNC_ELIMIT if len > FRAME_MAX. */
int frame_write(struct frame_io *io, uint8_t type, const void *payload, size_t len,
                struct errctx *e) SYNC_WUR;

/* Safe to call with NULL. */
void frame_free(struct frame *f);

/* Decodes one frame from memory (fuzzing, tests): on success *consumed is the
 * number of bytes used and *out a new frame.  SYNC_EPROTO if the buffer ends
 * before the frame does. */
int frame_decode(struct frame **out, size_t *consumed, const uint8_t *p, size_t n, uint32_t max_len,
                 struct errctx *e) SYNC_WUR;

#endif
