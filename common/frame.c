/*
 * frame.c - the frame codec: how messages travel inside TLS.
 *
 * Byte format of one frame:
 *
 *     offset 0  u32 big-endian  payload length L (0 .. max_len, max_len <= FRAME_MAX)
 *     offset 4  u8              frame type
 *     offset 5  L bytes         payload
 *
 * There is no padding, checksum or trailer: TLS already protects integrity.
 *
 * Invariants: a length from the wire is compared with the caller's limit
 * before a byte is allocated or another byte is read, so a peer cannot make
 * us allocate more than max_len + 1 bytes per frame.  Every frame handed out
 * has a payload of len + 1 bytes, the last one NUL, so text payloads can be
 * used as C strings without another copy (an embedded NUL is still possible;
 * parsers use len, not strlen).
 */
#include "frame.h"

#include "testpoint.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* The effective limit: the caller's, never above FRAME_MAX. */
static uint32_t limit_of(uint32_t max_len)
{
    assert(max_len <= FRAME_MAX);
    return max_len < FRAME_MAX ? max_len : FRAME_MAX;
}

int frame_header_parse(const uint8_t hdr[FRAME_HEADER_LEN], uint32_t max_len, uint8_t *type,
                       uint32_t *len, struct errctx *e)
{
    uint32_t n = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) |
                 (uint32_t)hdr[3];
    uint32_t limit = limit_of(max_len);

    if (n > limit)
        return errctx_set(e, SYNC_ELIMIT, "frame of %lu bytes exceeds the limit of %lu bytes",
                          (unsigned long)n, (unsigned long)limit);
    *type = hdr[4];
    *len = n;
    return SYNC_OK;
}

void frame_header_write(uint8_t hdr[FRAME_HEADER_LEN], uint8_t type, uint32_t len)
{
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
    hdr[4] = type;
}

/* A frame with room for len payload bytes and the trailing NUL already set,
 * or NULL after writing the error into e. */
static struct frame *frame_alloc(uint8_t type, uint32_t len, struct errctx *e)
{
    struct frame *f = calloc(1, sizeof(*f));

    if (f == NULL || (f->payload = malloc((size_t)len + 1)) == NULL) {
        free(f);
        errctx_set(e, SYNC_ENOMEM, "out of memory for a frame of %lu bytes", (unsigned long)len);
        return NULL;
    }
    f->type = type;
    f->len = len;
    f->payload[len] = '\0';
    return f;
}

void frame_free(struct frame *f)
{
    if (f == NULL)
        return;
    free(f->payload);
    free(f);
}

int frame_read(struct frame **out, struct frame_io *io, uint32_t max_len, struct errctx *e)
{
    uint8_t hdr[FRAME_HEADER_LEN] = {0};
    struct frame *f = NULL;
    uint32_t len = 0;
    uint8_t type = 0;
    int rc;

    *out = NULL;
    if ((rc = io->read(io->ctx, hdr, sizeof(hdr), e)) != SYNC_OK)
        goto out;
    if ((rc = frame_header_parse(hdr, max_len, &type, &len, e)) != SYNC_OK)
        goto out;
    if (io->frame_sized != NULL)
        io->frame_sized(io->ctx, len);
    if ((f = frame_alloc(type, len, e)) == NULL) {
        rc = SYNC_ENOMEM;
        goto out;
    }
    if (len > 0 && (rc = io->read(io->ctx, f->payload, len, e)) != SYNC_OK)
        goto out;
    testpoint("frame received");
    testpoint_frame_log("recv", f->type, f->payload, f->len);
    *out = f;
    f = NULL;
out:
    if (io->frame_done != NULL)
        io->frame_done(io->ctx);
    frame_free(f);
    return rc;
}

int frame_write(struct frame_io *io, uint8_t type, const void *payload, size_t len,
                struct errctx *e)
{
    uint8_t hdr[FRAME_HEADER_LEN];
    int rc;

    if (len > (size_t)FRAME_MAX)
        return errctx_set(e, SYNC_ELIMIT,
                          "cannot send a frame of %zu bytes: the limit is %lu bytes", len,
                          (unsigned long)FRAME_MAX);
    assert(payload != NULL || len == 0);
    testpoint_frame_log("send", type, payload, len);
    frame_header_write(hdr, type, (uint32_t)len);
    if ((rc = io->write(io->ctx, hdr, sizeof(hdr), e)) != SYNC_OK)
        return rc;
    testpoint("frame header sent");
    if (len > 0 && (rc = io->write(io->ctx, payload, len, e)) != SYNC_OK)
        return rc;
    testpoint("frame sent");
    return SYNC_OK;
}

int frame_decode(struct frame **out, size_t *consumed, const uint8_t *p, size_t n, uint32_t max_len,
                 struct errctx *e)
{
    struct frame *f;
    uint32_t len = 0;
    uint8_t type = 0;
    int rc;

    *out = NULL;
    *consumed = 0;
    if (n < FRAME_HEADER_LEN)
        return errctx_set(e, SYNC_EPROTO,
                          "input ends inside a frame header: %zu of %d bytes present", n,
                          FRAME_HEADER_LEN);
    if ((rc = frame_header_parse(p, max_len, &type, &len, e)) != SYNC_OK)
        return rc;
    if (n - FRAME_HEADER_LEN < len)
        return errctx_set(e, SYNC_EPROTO,
                          "input ends inside a frame: payload of %lu bytes but only %zu present",
                          (unsigned long)len, n - FRAME_HEADER_LEN);
    if ((f = frame_alloc(type, len, e)) == NULL)
        return SYNC_ENOMEM;
    if (len > 0)
        memcpy(f->payload, p + FRAME_HEADER_LEN, len);
    *consumed = FRAME_HEADER_LEN + (size_t)len;
    *out = f;
    return SYNC_OK;
}
