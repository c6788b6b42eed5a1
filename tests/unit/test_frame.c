/*
 * test_frame.c - the frame codec over a memory-backed frame_io: round trips,
 * damaged streams (short header, short payload), lengths over the limit
 * refused before the payload is read, and frame_decode on every prefix of a
 * frame.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "frame.h"

/* A byte stream in memory: reads come from in, writes go to out. */
struct memio {
    const uint8_t *in;
    size_t in_len;
    size_t in_pos;
    int reads;         /* read calls made */
    size_t bytes_read; /* bytes handed out by read */
    int writes;
    size_t bytes_written;
    int keep_writes; /* 0: count written bytes but drop them */
    int fail_write;  /* 1: every write fails as a lost connection would */
    struct buf out;
    int sized;          /* frame_sized calls */
    uint32_t sized_len; /* the length the last one gave */
    int done;           /* frame_done calls */
};

static void mem_frame_sized(void *ctx, uint32_t len)
{
    struct memio *m = ctx;

    m->sized++;
    m->sized_len = len;
}

static void mem_frame_done(void *ctx)
{
    struct memio *m = ctx;

    m->done++;
}

static int mem_read(void *ctx, void *dst, size_t n, struct errctx *e)
{
    struct memio *m = ctx;

    m->reads++;
    if (m->in_len - m->in_pos < n) {
        m->in_pos = m->in_len;
        return errctx_set(e, SYNC_ENET, "connection closed by the peer");
    }
    memcpy(dst, m->in + m->in_pos, n);
    m->in_pos += n;
    m->bytes_read += n;
    return SYNC_OK;
}

static int mem_write(void *ctx, const void *src, size_t n, struct errctx *e)
{
    struct memio *m = ctx;

    m->writes++;
    if (m->fail_write)
        return errctx_set(e, SYNC_ENET, "connection lost while sending");
    m->bytes_written += n;
    if (!m->keep_writes)
        return SYNC_OK;
    return buf_put(&m->out, src, n, e);
}

static struct frame_io memio_io(struct memio *m)
{
    return (struct frame_io){.read = mem_read, .write = mem_write, .ctx = m};
}

static void memio_input(struct memio *m, const void *p, size_t n)
{
    m->in = p;
    m->in_len = n;
    m->in_pos = 0;
    m->reads = 0;
    m->bytes_read = 0;
}

static void test_header(void **state)
{
    uint8_t hdr[FRAME_HEADER_LEN];
    struct errctx e = {0};
    uint32_t len = 0;
    uint8_t type = 0;

    (void)state;
    frame_header_write(hdr, 0xfe, 0x01020304);
    assert_memory_equal(hdr, "\x01\x02\x03\x04\xfe", FRAME_HEADER_LEN);
    assert_int_equal(frame_header_parse(hdr, FRAME_MAX, &type, &len, &e), SYNC_OK);
    assert_int_equal(type, 0xfe);
    assert_int_equal(len, 0x01020304);
    /* The caller's limit applies, to the byte. */
    frame_header_write(hdr, 1, 1024);
    assert_int_equal(frame_header_parse(hdr, 1024, &type, &len, &e), SYNC_OK);
    assert_int_equal(frame_header_parse(hdr, 1023, &type, &len, &e), SYNC_ELIMIT);
    assert_string_equal(e.msg, "frame of 1024 bytes exceeds the limit of 1023 bytes");
}

static void test_round_trip(void **state)
{
    static const char *const payloads[] = {"hello", "", "a longer payload\nwith two lines", "x"};
    const size_t n = sizeof(payloads) / sizeof(payloads[0]);
    struct memio m = {.keep_writes = 1};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};

    (void)state;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(frame_write(&io, (uint8_t)(i + 1), payloads[i], strlen(payloads[i]), &e),
                         SYNC_OK);
    memio_input(&m, m.out.data, m.out.len);
    for (size_t i = 0; i < n; i++) {
        struct frame *f = NULL;
        assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_OK);
        assert_non_null(f);
        assert_int_equal(f->type, i + 1);
        assert_int_equal(f->len, strlen(payloads[i]));
        assert_memory_equal(f->payload, payloads[i], f->len);
        assert_int_equal(f->payload[f->len], '\0');
        frame_free(f);
    }
    assert_int_equal(m.in_pos, m.in_len);
    buf_free(&m.out);
    frame_free(NULL);
}

static void test_zero_length(void **state)
{
    struct memio m = {.keep_writes = 1};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    struct frame *f = NULL;

    (void)state;
    assert_int_equal(frame_write(&io, 7, NULL, 0, &e), SYNC_OK);
    assert_int_equal(m.out.len, FRAME_HEADER_LEN);
    assert_int_equal(m.writes, 1); /* no empty payload write */
    memio_input(&m, m.out.data, m.out.len);
    assert_int_equal(frame_read(&f, &io, 0, &e), SYNC_OK);
    assert_int_equal(f->type, 7);
    assert_int_equal(f->len, 0);
    assert_non_null(f->payload);
    assert_int_equal(f->payload[0], '\0');
    assert_int_equal(m.reads, 1);
    frame_free(f);
    buf_free(&m.out);
}

static void test_truncated_header(void **state)
{
    static const uint8_t bytes[] = {0, 0, 0};
    struct memio m = {0};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    struct frame sentinel = {0};
    struct frame *f = &sentinel; /* frame_read must reset it to NULL */

    (void)state;
    memio_input(&m, bytes, sizeof(bytes));
    assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_ENET);
    assert_null(f);
    assert_string_equal(e.msg, "connection closed by the peer"); /* io's sentence, passed up */
}

/* The frame hooks: sized once the header is in, done whatever the result. */
static void test_frame_hooks(void **state)
{
    static const uint8_t good[] = {0, 0, 0, 2, 1, 'a', 'b'};
    static const uint8_t cut[] = {0, 0, 0, 10, 1, 'a'};
    static const uint8_t big[] = {0, 0, 1, 0, 1};
    struct memio m = {0};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    struct frame *f = NULL;

    (void)state;
    io.frame_sized = mem_frame_sized;
    io.frame_done = mem_frame_done;
    memio_input(&m, good, sizeof(good));
    assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_OK);
    frame_free(f);
    assert_int_equal(m.sized, 1);
    assert_int_equal(m.sized_len, 2);
    assert_int_equal(m.done, 1);
    memio_input(&m, cut, sizeof(cut));
    assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_ENET);
    assert_int_equal(m.sized, 2);
    assert_int_equal(m.sized_len, 10);
    assert_int_equal(m.done, 2);
    memio_input(&m, big, sizeof(big)); /* over the limit: never sized */
    assert_int_equal(frame_read(&f, &io, 16, &e), SYNC_ELIMIT);
    assert_int_equal(m.sized, 2);
    assert_int_equal(m.done, 3);
}

static void test_truncated_payload(void **state)
{
    static const uint8_t bytes[] = {0, 0, 0, 10, 1, 'a', 'b', 'c', 'd'};
    struct memio m = {0};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    struct frame *f = NULL;

    (void)state;
    memio_input(&m, bytes, sizeof(bytes));
    assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_ENET);
    assert_null(f);
    assert_int_equal(m.reads, 2);
}

/* An over-long length is refused after the header: nothing allocated, the
 * payload never read. */
static void test_oversized(void **state)
{
    uint8_t bytes[FRAME_HEADER_LEN + 16] = {0};
    struct memio m = {0};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    struct frame *f = NULL;

    (void)state;
    frame_header_write(bytes, 1, 40000000);
    memio_input(&m, bytes, sizeof(bytes));
    assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_ELIMIT);
    assert_null(f);
    assert_int_equal(e.code, SYNC_ELIMIT);
    assert_string_equal(e.msg, "frame of 40000000 bytes exceeds the limit of 33554432 bytes");
    assert_int_equal(m.reads, 1);
    assert_int_equal(m.bytes_read, FRAME_HEADER_LEN);

    /* The largest u32 too, and the caller's smaller limit. */
    frame_header_write(bytes, 1, UINT32_MAX);
    memio_input(&m, bytes, sizeof(bytes));
    assert_int_equal(frame_read(&f, &io, FRAME_MAX, &e), SYNC_ELIMIT);
    assert_int_equal(m.reads, 1);
    frame_header_write(bytes, 1, 16);
    memio_input(&m, bytes, sizeof(bytes));
    assert_int_equal(frame_read(&f, &io, 15, &e), SYNC_ELIMIT);
    assert_int_equal(m.bytes_read, FRAME_HEADER_LEN);
    memio_input(&m, bytes, sizeof(bytes));
    assert_int_equal(frame_read(&f, &io, 16, &e), SYNC_OK);
    assert_int_equal(f->len, 16);
    frame_free(f);
}

static void test_write_limit(void **state)
{
    static const uint8_t small[8];
    struct memio m = {0};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    uint8_t *big;

    (void)state;
    /* Refused before a byte is written (and before the payload is touched). */
    assert_int_equal(frame_write(&io, 1, small, (size_t)FRAME_MAX + 1, &e), SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "33554433"));
    assert_int_equal(m.writes, 0);
    /* Exactly FRAME_MAX goes out. */
    big = calloc((size_t)FRAME_MAX, 1);
    assert_non_null(big);
    assert_int_equal(frame_write(&io, 1, big, (size_t)FRAME_MAX, &e), SYNC_OK);
    assert_int_equal(m.bytes_written, FRAME_HEADER_LEN + (size_t)FRAME_MAX);
    free(big);
}

static void test_write_error(void **state)
{
    struct memio m = {.fail_write = 1};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};

    (void)state;
    assert_int_equal(frame_write(&io, 1, "abc", 3, &e), SYNC_ENET);
    assert_int_equal(m.writes, 1);
    assert_string_equal(e.msg, "connection lost while sending");
}

static void test_decode(void **state)
{
    struct memio m = {.keep_writes = 1};
    struct frame_io io = memio_io(&m);
    struct errctx e = {0};
    struct frame *f = NULL;
    size_t used = 99, one;

    (void)state;
    assert_int_equal(frame_write(&io, 3, "0123456789", 10, &e), SYNC_OK);
    assert_int_equal(frame_write(&io, 4, "ab", 2, &e), SYNC_OK);
    one = FRAME_HEADER_LEN + 10;

    /* Every proper prefix of the first frame is incomplete. */
    for (size_t k = 0; k < one; k++) {
        uint8_t *copy = malloc(k > 0 ? k : 1); /* exact size, so ASan sees over-reads */
        assert_non_null(copy);
        memcpy(copy, m.out.data, k);
        used = 99;
        assert_int_equal(frame_decode(&f, &used, copy, k, FRAME_MAX, &e), SYNC_EPROTO);
        assert_null(f);
        assert_int_equal(used, 0);
        assert_non_null(strstr(e.msg, k < FRAME_HEADER_LEN ? "header" : "payload of 10 bytes"));
        free(copy);
    }
    assert_int_equal(frame_decode(&f, &used, m.out.data, m.out.len, FRAME_MAX, &e), SYNC_OK);
    assert_int_equal(used, one);
    assert_int_equal(f->type, 3);
    assert_int_equal(f->len, 10);
    assert_string_equal((char *)f->payload, "0123456789");
    frame_free(f);
    assert_int_equal(frame_decode(&f, &used, m.out.data + one, m.out.len - one, FRAME_MAX, &e),
                     SYNC_OK);
    assert_int_equal(used, FRAME_HEADER_LEN + 2);
    assert_int_equal(f->type, 4);
    assert_string_equal((char *)f->payload, "ab");
    frame_free(f);
    buf_free(&m.out);
}

/* The limit is checked as soon as the header is there, even if the payload is not. */
static void test_decode_oversized(void **state)
{
    uint8_t hdr[FRAME_HEADER_LEN];
    struct errctx e = {0};
    struct frame *f = NULL;
    size_t used = 99;

    (void)state;
    frame_header_write(hdr, 1, 40000000);
    assert_int_equal(frame_decode(&f, &used, hdr, sizeof(hdr), FRAME_MAX, &e), SYNC_ELIMIT);
    assert_string_equal(e.msg, "frame of 40000000 bytes exceeds the limit of 33554432 bytes");
    assert_null(f);
    assert_int_equal(used, 0);
    frame_header_write(hdr, 1, 0);
    assert_int_equal(frame_decode(&f, &used, hdr, sizeof(hdr), 0, &e), SYNC_OK);
    assert_int_equal(used, FRAME_HEADER_LEN);
    assert_int_equal(f->len, 0);
    frame_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_payload),
        cmocka_unit_test(test_frame_hooks),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_write_limit),
        cmocka_unit_test(test_write_error),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_decode_oversized),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
