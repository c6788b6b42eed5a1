/*
 * buf.h - a growable byte buffer for building messages, and a bounded reader
 * for parsing them.  All integers on the wire are big-endian.
 *
 * The reader never reads past its end: every get checks the remaining length
 * first and returns SYNC_EPROTO with a sentence naming the field.
 */
#ifndef EMPACT_BUF_H
#define EMPACT_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "errctx.h"

struct buf {
    uint8_t *data; /* owned; NULL while empty */
    size_t len;
    size_t cap;
};

/* An empty buffer needs no allocation: struct buf b = {0}. Frees data; safe on empty. */
void buf_free(struct buf *b);

/* Ensures room for n more bytes; SYNC_ENOMEM or SYNC_ELIMIT past FRAME_MAX*8. */
int buf_reserve(struct buf *b, size_t n, struct errctx *e) SYNC_WUR;

int buf_put(struct buf *b, const void *p, size_t n, struct errctx *e) SYNC_WUR;
int buf_put_u8(struct buf *b, uint8_t v, struct errctx *e) SYNC_WUR;
int buf_put_u16(struct buf *b, uint16_t v, struct errctx *e) SYNC_WUR;
int buf_put_u32(struct buf *b, uint32_t v, struct errctx *e) SYNC_WUR;
int buf_put_u64(struct buf *b, uint64_t v, struct errctx *e) SYNC_WUR;
/* A string as u16 length + bytes (no NUL); SYNC_ELIMIT if longer than 65535. */
int buf_put_str(struct buf *b, const char *s, struct errctx *e) SYNC_WUR;

struct buf_reader {
    const uint8_t *p; /* borrowed */
    size_t left;
};

void buf_reader_init(struct buf_reader *r, const void *p, size_t n);
int buf_get_u8(struct buf_reader *r, uint8_t *v, struct errctx *e) SYNC_WUR;
int buf_get_u16(struct buf_reader *r, uint16_t *v, struct errctx *e) SYNC_WUR;
int buf_get_u32(struct buf_reader *r, uint32_t *v, struct errctx *e) SYNC_WUR;
int buf_get_u64(struct buf_reader *r, uint64_t *v, struct errctx *e) SYNC_WUR;
/* Points *p at the next n bytes (borrowed from the reader's buffer). */
int buf_get_bytes(struct buf_reader *r, const uint8_t **p, size_t n, struct errctx *e) SYNC_WUR;
/* Reads a u16-length string of at most max bytes into out (size max+1), NUL-terminated;
 * refuses embedded NUL bytes. */
int buf_get_str(struct buf_reader *r, char *out, size_t max, struct errctx *e) SYNC_WUR;
/* SYNC_EPROTO if bytes remain: a message must be consumed exactly. */
int buf_reader_done(const struct buf_reader *r, struct errctx *e) SYNC_WUR;

#endif
