/*
 * fuzz_frame.c - libFuzzer target for the frame codec and the bounded reader.
 *
 * The input is decoded as back-to-back frames with frame_decode(); the
 * payload of each frame that decodes is then read as a script of fields:
 * a u8 opcode, then the field it names (low 3 bits: u8, u16, u32, u64,
 * bytes, short string, done, long string; the high 5 bits give a byte count
 * or a string limit).  Each field read is encoded again with the buf_put
 * functions and must give back the bytes consumed; a refused read must leave
 * the reader where it was.  Any broken invariant aborts.
 *
 * fuzz-sources: common/frame.c common/buf.c common/errctx.c
 * fuzz-pkgs:
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_frame: invariant failed at line %d: %s\n", __LINE__, #c);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads one field chosen by op, re-encodes it into echo. */
static int read_field(struct buf_reader *r, uint8_t op, struct buf *echo, struct errctx *e)
{
    static char long_str[UINT16_MAX + 1];
    char short_str[32];
    const uint8_t *raw;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    size_t arg = op >> 3;
    int rc;

    switch (op & 7) {
    case 0:
        if ((rc = buf_get_u8(r, &u8, e)) == SYNC_OK)
            CHECK(buf_put_u8(echo, u8, e) == SYNC_OK);
        return rc;
    case 1:
        if ((rc = buf_get_u16(r, &u16, e)) == SYNC_OK)
            CHECK(buf_put_u16(echo, u16, e) == SYNC_OK);
        return rc;
    case 2:
        if ((rc = buf_get_u32(r, &u32, e)) == SYNC_OK)
            CHECK(buf_put_u32(echo, u32, e) == SYNC_OK);
        return rc;
    case 3:
        if ((rc = buf_get_u64(r, &u64, e)) == SYNC_OK)
            CHECK(buf_put_u64(echo, u64, e) == SYNC_OK);
        return rc;
    case 4:
        if ((rc = buf_get_bytes(r, &raw, arg, e)) == SYNC_OK)
            CHECK(buf_put(echo, raw, arg, e) == SYNC_OK);
        return rc;
    case 5:
        if ((rc = buf_get_str(r, short_str, arg, e)) == SYNC_OK) {
            CHECK(strlen(short_str) <= arg);
            CHECK(buf_put_str(echo, short_str, e) == SYNC_OK);
        }
        return rc;
    case 6:
        rc = buf_reader_done(r, e);
        CHECK((rc == SYNC_OK) == (r->left == 0));
        return rc;
    default:
        if ((rc = buf_get_str(r, long_str, UINT16_MAX, e)) == SYNC_OK)
            CHECK(buf_put_str(echo, long_str, e) == SYNC_OK);
        return rc;
    }
}

static void read_fields(const uint8_t *p, size_t n)
{
    struct buf echo = {0};
    struct errctx e = {0};
    struct buf_reader r;
    uint8_t op;

    buf_reader_init(&r, p, n);
    while (buf_get_u8(&r, &op, &e) == SYNC_OK) {
        struct buf_reader before = r;
        int rc;

        echo.len = 0;
        rc = read_field(&r, op, &echo, &e);
        if (rc != SYNC_OK) {
            CHECK(rc == SYNC_EPROTO || rc == SYNC_ELIMIT);
            CHECK(e.code == rc && e.msg[0] != '\0');
            CHECK(r.p == before.p && r.left == before.left);
            break;
        }
        CHECK(before.left - r.left == echo.len);
        CHECK(echo.len == 0 || memcmp(before.p, echo.data, echo.len) == 0);
        if ((op & 7) == 6)
            break;
    }
    buf_free(&echo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    while (off < size) {
        struct errctx e = {0};
        struct frame *f = NULL;
        size_t used = 1;
        int rc = frame_decode(&f, &used, data + off, size - off, FRAME_MAX, &e);

        if (rc != SYNC_OK) {
            CHECK(rc == SYNC_EPROTO || rc == SYNC_ELIMIT);
            CHECK(f == NULL && used == 0 && e.code == rc && e.msg[0] != '\0');
            break;
        }
        CHECK(used == FRAME_HEADER_LEN + (size_t)f->len && used <= size - off);
        CHECK(f->type == data[off + 4] && f->payload[f->len] == '\0');
        CHECK(f->len == 0 || memcmp(f->payload, data + off + FRAME_HEADER_LEN, f->len) == 0);
        read_fields(f->payload, f->len);
        frame_free(f);
        off += used;
    }
    return 0;
}
