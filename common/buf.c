/*
 * buf.c - a growable byte buffer for building messages, and a bounded reader
 * for parsing them.
 *
 * Byte format written by the put functions and read by the get functions:
 *     u8       1 byte
 *     u16      2 bytes, big-endian
 *     u32      4 bytes, big-endian
 *     u64      8 bytes, big-endian
 *     str      u16 big-endian length N, then N bytes; no NUL on the wire, and
 *              a NUL among the N bytes is refused when reading
 *
 * Invariants: a buffer never holds more than BUF_MAX bytes, so a length that
 * came from outside cannot make it grow without bound; data is NULL exactly
 * when cap is 0.  A failed get leaves the reader where it was, so the caller
 * may report the error without worrying about half-consumed fields.
 */
#include "buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* First allocation, so that small messages do not realloc byte by byte. */
#define BUF_MIN_CAP 64

void buf_free(struct buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

int buf_reserve(struct buf *b, size_t n, struct errctx *e)
{
    size_t want, cap;
    uint8_t *grown;

    assert(b->len <= b->cap);
    if (n > BUF_MAX - b->len)
        return errctx_set(e, SYNC_ELIMIT,
                          "a message of %zu + %zu bytes would exceed the buffer limit of %zu bytes",
                          b->len, n, BUF_MAX);
    want = b->len + n;
    if (want <= b->cap)
        return SYNC_OK;
    /* Double so that appending byte by byte stays linear overall. */
    cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < want)
        cap = cap > BUF_MAX / 2 ? BUF_MAX : cap * 2;
    grown = realloc(b->data, cap);
    if (grown == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = grown;
    b->cap = cap;
    return SYNC_OK;
}

int buf_put(struct buf *b, const void *p, size_t n, struct errctx *e)
{
    int rc;

    if (n == 0)
        return SYNC_OK;
    if ((rc = buf_reserve(b, n, e)) != SYNC_OK)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return SYNC_OK;
}

int buf_put_u8(struct buf *b, uint8_t v, struct errctx *e)
{
    return buf_put(b, &v, 1, e);
}

int buf_put_u16(struct buf *b, uint16_t v, struct errctx *e)
{
    uint8_t be[2] = {(uint8_t)(v >> 8), (uint8_t)v};

    return buf_put(b, be, sizeof(be), e);
}

int buf_put_u32(struct buf *b, uint32_t v, struct errctx *e)
{
    uint8_t be[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    return buf_put(b, be, sizeof(be), e);
}

int buf_put_u64(struct buf *b, uint64_t v, struct errctx *e)
{
    uint8_t be[8];

    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (56 - 8 * i));
    return buf_put(b, be, sizeof(be), e);
}

int buf_put_str(struct buf *b, const char *s, struct errctx *e)
{
    size_t n = strlen(s);
    int rc;

    if (n > UINT16_MAX)
        return errctx_set(e, SYNC_ELIMIT,
                          "a string of %zu bytes is longer than the %u a message field can hold", n,
                          (unsigned)UINT16_MAX);
    /* Reserve both parts first so a failure leaves b unchanged. */
    if ((rc = buf_reserve(b, 2 + n, e)) != SYNC_OK ||
        (rc = buf_put_u16(b, (uint16_t)n, e)) != SYNC_OK)
        return rc;
    return buf_put(b, s, n, e);
}

void buf_reader_init(struct buf_reader *r, const void *p, size_t n)
{
    assert(p != NULL || n == 0);
    r->p = p;
    r->left = n;
}

/* SYNC_EPROTO unless n more bytes remain; what names the field being read. */
static int need(const struct buf_reader *r, size_t n, const char *what, struct errctx *e)
{
    if (r->left < n)
        return errctx_set(e, SYNC_EPROTO,
                          "message ends early: %s needs %zu bytes but only %zu remain", what, n,
                          r->left);
    return SYNC_OK;
}

/* Reads an n-byte big-endian unsigned integer (n <= 8). */
static int get_be(struct buf_reader *r, size_t n, const char *what, uint64_t *v, struct errctx *e)
{
    uint64_t x = 0;
    int rc;

    if ((rc = need(r, n, what, e)) != SYNC_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | r->p[i];
    r->p += n;
    r->left -= n;
    *v = x;
    return SYNC_OK;
}

int buf_get_u8(struct buf_reader *r, uint8_t *v, struct errctx *e)
{
    uint64_t x;
    int rc = get_be(r, 1, "a u8 field", &x, e);

    if (rc == SYNC_OK)
        *v = (uint8_t)x;
    return rc;
}

int buf_get_u16(struct buf_reader *r, uint16_t *v, struct errctx *e)
{
    uint64_t x;
    int rc = get_be(r, 2, "a u16 field", &x, e);

    if (rc == SYNC_OK)
        *v = (uint16_t)x;
    return rc;
}

int buf_get_u32(struct buf_reader *r, uint32_t *v, struct errctx *e)
{
    uint64_t x;
    int rc = get_be(r, 4, "a u32 field", &x, e);

    if (rc == SYNC_OK)
        *v = (uint32_t)x;
    return rc;
}

int buf_get_u64(struct buf_reader *r, uint64_t *v, struct errctx *e)
{
    return get_be(r, 8, "a u64 field", v, e);
}

int buf_get_bytes(struct buf_reader *r, const uint8_t **p, size_t n, struct errctx *e)
{
    int rc;

    if ((rc = need(r, n, "a byte field", e)) != SYNC_OK)
        return rc;
    *p = r->p;
    if (n == 0)
        return SYNC_OK; /* r->p may be NULL for an empty reader; no arithmetic on it */
    r->p += n;
    r->left -= n;
    return SYNC_OK;
}

int buf_get_str(struct buf_reader *r, char *out, size_t max, struct errctx *e)
{
    size_t n;
    int rc;

    out[0] = '\0';
    /* Peek at the length so that a refused string leaves the reader unmoved. */
    if ((rc = need(r, 2, "a string length", e)) != SYNC_OK)
        return rc;
    n = ((size_t)r->p[0] << 8) | r->p[1];
    if (n > max)
        return errctx_set(e, SYNC_ELIMIT,
                          "a string field of %zu bytes is longer than the limit of %zu bytes", n,
                          max);
    if (r->left - 2 < n)
        return errctx_set(e, SYNC_EPROTO,
                          "message ends early: a string of %zu bytes has only %zu bytes left", n,
                          r->left - 2);
    if (memchr(r->p + 2, '\0', n) != NULL)
        return errctx_set(e, SYNC_EPROTO, "a string field of %zu bytes contains a NUL byte", n);
    memcpy(out, r->p + 2, n);
    out[n] = '\0';
    r->p += 2 + n;
    r->left -= 2 + n;
    return SYNC_OK;
}

int buf_reader_done(const struct buf_reader *r, struct errctx *e)
{
    if (r->left != 0)
        return errctx_set(e, SYNC_EPROTO, "message has %zu unexpected bytes after its last field",
                          r->left);
    return SYNC_OK;
}
