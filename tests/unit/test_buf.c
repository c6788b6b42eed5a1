/*
 * test_buf.c - the growable buffer and the bounded big-endian reader:
 * round trips, the byte order on the wire, and every getter refusing to read
 * past the end without moving the reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_round_trip(void **state)
{
    struct buf b = {0};
    struct errctx e = {0};
    struct buf_reader r;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    const uint8_t *raw;
    char s[16];

    (void)state;
    assert_int_equal(buf_put_u8(&b, 0xab, &e), SYNC_OK);
    assert_int_equal(buf_put_u16(&b, 0x1234, &e), SYNC_OK);
    assert_int_equal(buf_put_u32(&b, 0xdeadbeef, &e), SYNC_OK);
    assert_int_equal(buf_put_u64(&b, 0x0102030405060708ull, &e), SYNC_OK);
    assert_int_equal(buf_put_str(&b, "hello", &e), SYNC_OK);
    assert_int_equal(buf_put_str(&b, "", &e), SYNC_OK);
    assert_int_equal(buf_put(&b, "xyz", 3, &e), SYNC_OK);
    assert_int_equal(buf_put(&b, NULL, 0, &e), SYNC_OK);
    assert_int_equal(b.len, 1 + 2 + 4 + 8 + 2 + 5 + 2 + 3);

    buf_reader_init(&r, b.data, b.len);
    assert_int_equal(buf_get_u8(&r, &u8, &e), SYNC_OK);
    assert_int_equal(u8, 0xab);
    assert_int_equal(buf_get_u16(&r, &u16, &e), SYNC_OK);
    assert_int_equal(u16, 0x1234);
    assert_int_equal(buf_get_u32(&r, &u32, &e), SYNC_OK);
    assert_int_equal(u32, 0xdeadbeef);
    assert_int_equal(buf_get_u64(&r, &u64, &e), SYNC_OK);
    assert_true(u64 == 0x0102030405060708ull);
    assert_int_equal(buf_get_str(&r, s, sizeof(s) - 1, &e), SYNC_OK);
    assert_string_equal(s, "hello");
    assert_int_equal(buf_get_str(&r, s, sizeof(s) - 1, &e), SYNC_OK);
    assert_string_equal(s, "");
    assert_int_equal(buf_get_bytes(&r, &raw, 3, &e), SYNC_OK);
    assert_memory_equal(raw, "xyz", 3);
    assert_int_equal(buf_reader_done(&r, &e), SYNC_OK);
    buf_free(&b);
}

/* Big-endian on the wire, whatever the host order. */
static void test_byte_order(void **state)
{
    static const uint8_t want[] = {0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03,
                                   0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0x02, 'h',  'i'};
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(buf_put_u16(&b, 0x1234, &e), SYNC_OK);
    assert_int_equal(buf_put_u32(&b, 0xdeadbeef, &e), SYNC_OK);
    assert_int_equal(buf_put_u64(&b, 0x0102030405060708ull, &e), SYNC_OK);
    assert_int_equal(buf_put_str(&b, "hi", &e), SYNC_OK);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    buf_free(&b);
}

/* Many small puts grow the buffer and keep every byte. */
static void test_growth(void **state)
{
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    for (uint32_t i = 0; i < 10000; i++)
        assert_int_equal(buf_put_u32(&b, i, &e), SYNC_OK);
    assert_int_equal(b.len, 40000);
    assert_true(b.cap >= b.len);
    for (uint32_t i = 0; i < 10000; i += 997) {
        const uint8_t *p = b.data + (size_t)4 * i;
        assert_int_equal(((uint32_t)p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3], i);
    }
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    buf_free(&b); /* twice is fine */
    buf_free(NULL);
}

static void test_reserve_limit(void **state)
{
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(buf_reserve(&b, (size_t)FRAME_MAX * 8 + 1, &e), SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "limit"));
    assert_null(b.data);
    assert_int_equal(buf_put_u8(&b, 1, &e), SYNC_OK);
    assert_int_equal(buf_reserve(&b, SIZE_MAX, &e), SYNC_ELIMIT); /* no overflow */
    assert_int_equal(b.len, 1);
    buf_free(&b);
}

/* Each getter on a reader one byte short: SYNC_EPROTO, reader unmoved. */
static void test_short_reads(void **state)
{
    static const uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct errctx e = {0};
    struct buf_reader r;
    uint8_t u8 = 0x55;
    uint16_t u16 = 0x5555;
    uint32_t u32 = 0x55555555;
    uint64_t u64 = 0x5555555555555555ull;
    const uint8_t *raw = NULL;

    (void)state;
    buf_reader_init(&r, bytes, 0);
    assert_int_equal(buf_get_u8(&r, &u8, &e), SYNC_EPROTO);
    assert_int_equal(e.code, SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "u8"));
    assert_int_equal(u8, 0x55);

    buf_reader_init(&r, bytes, 1);
    assert_int_equal(buf_get_u16(&r, &u16, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "needs 2 bytes but only 1 remain"));
    assert_int_equal(u16, 0x5555);
    assert_int_equal(r.left, 1);

    buf_reader_init(&r, bytes, 3);
    assert_int_equal(buf_get_u32(&r, &u32, &e), SYNC_EPROTO);
    assert_int_equal(u32, 0x55555555);
    assert_int_equal(r.left, 3);

    buf_reader_init(&r, bytes, 7);
    assert_int_equal(buf_get_u64(&r, &u64, &e), SYNC_EPROTO);
    assert_true(u64 == 0x5555555555555555ull);
    assert_int_equal(r.left, 7);

    buf_reader_init(&r, bytes, 8);
    assert_int_equal(buf_get_bytes(&r, &raw, 9, &e), SYNC_EPROTO);
    assert_null(raw);
    assert_int_equal(r.left, 8);
    assert_int_equal(buf_get_bytes(&r, &raw, 8, &e), SYNC_OK);
    assert_ptr_equal(raw, bytes);
    assert_int_equal(buf_get_bytes(&r, &raw, 0, &e), SYNC_OK);
    assert_int_equal(buf_get_u8(&r, &u8, &e), SYNC_EPROTO);

    /* An empty reader over NULL is valid and reads nothing. */
    buf_reader_init(&r, NULL, 0);
    assert_int_equal(buf_get_bytes(&r, &raw, 0, &e), SYNC_OK);
    assert_int_equal(buf_reader_done(&r, &e), SYNC_OK);
}

static void test_str_short(void **state)
{
    static const uint8_t no_len[1] = {0};
    static const uint8_t short_body[] = {0x00, 0x05, 'a', 'b'};
    struct errctx e = {0};
    struct buf_reader r;
    char s[16];

    (void)state;
    buf_reader_init(&r, no_len, sizeof(no_len));
    assert_int_equal(buf_get_str(&r, s, sizeof(s) - 1, &e), SYNC_EPROTO);
    assert_int_equal(r.left, 1);

    buf_reader_init(&r, short_body, sizeof(short_body));
    assert_int_equal(buf_get_str(&r, s, sizeof(s) - 1, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "string of 5 bytes"));
    assert_string_equal(s, "");
    assert_int_equal(r.left, sizeof(short_body));
}

/* A string longer than the caller's max is refused before it is copied. */
static void test_str_too_long(void **state)
{
    struct buf b = {0};
    struct errctx e = {0};
    struct buf_reader r;
    char s[6];

    (void)state;
    assert_int_equal(buf_put_str(&b, "abcde", &e), SYNC_OK);
    buf_reader_init(&r, b.data, b.len);
    assert_int_equal(buf_get_str(&r, s, 4, &e), SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "5 bytes"));
    assert_non_null(strstr(e.msg, "limit of 4 bytes"));
    assert_int_equal(r.left, b.len);
    /* Exactly max fits, with the NUL in the extra byte. */
    assert_int_equal(buf_get_str(&r, s, 5, &e), SYNC_OK);
    assert_string_equal(s, "abcde");
    assert_int_equal(buf_reader_done(&r, &e), SYNC_OK);
    buf_free(&b);
}

static void test_put_str_too_long(void **state)
{
    char *big = test_malloc(UINT16_MAX + 2);
    struct buf b = {0};
    struct errctx e = {0};
    struct buf_reader r;
    char *back = test_malloc(UINT16_MAX + 1);

    (void)state;
    memset(big, 'x', UINT16_MAX + 1);
    big[UINT16_MAX + 1] = '\0';
    assert_int_equal(buf_put_str(&b, big, &e), SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "65536"));
    assert_int_equal(b.len, 0);
    big[UINT16_MAX] = '\0'; /* exactly 65535 is allowed */
    assert_int_equal(buf_put_str(&b, big, &e), SYNC_OK);
    buf_reader_init(&r, b.data, b.len);
    assert_int_equal(buf_get_str(&r, back, UINT16_MAX, &e), SYNC_OK);
    assert_int_equal(strlen(back), UINT16_MAX);
    assert_int_equal(buf_reader_done(&r, &e), SYNC_OK);
    test_free(back);
    test_free(big);
    buf_free(&b);
}

static void test_str_embedded_nul(void **state)
{
    static const uint8_t bytes[] = {0x00, 0x03, 'a', '\0', 'b'};
    struct errctx e = {0};
    struct buf_reader r;
    char s[8];

    (void)state;
    buf_reader_init(&r, bytes, sizeof(bytes));
    assert_int_equal(buf_get_str(&r, s, sizeof(s) - 1, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "NUL"));
    assert_int_equal(r.left, sizeof(bytes));
}

static void test_reader_done(void **state)
{
    static const uint8_t bytes[] = {1, 2, 3};
    struct errctx e = {0};
    struct buf_reader r;
    uint8_t u8;

    (void)state;
    buf_reader_init(&r, bytes, sizeof(bytes));
    assert_int_equal(buf_get_u8(&r, &u8, &e), SYNC_OK);
    assert_int_equal(buf_reader_done(&r, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "2 unexpected bytes"));
    assert_int_equal(buf_get_u8(&r, &u8, &e), SYNC_OK);
    assert_int_equal(buf_get_u8(&r, &u8, &e), SYNC_OK);
    assert_int_equal(buf_reader_done(&r, &e), SYNC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_byte_order),
        cmocka_unit_test(test_growth),           cmocka_unit_test(test_reserve_limit),
        cmocka_unit_test(test_short_reads),      cmocka_unit_test(test_str_short),
        cmocka_unit_test(test_str_too_long),     cmocka_unit_test(test_put_str_too_long),
        cmocka_unit_test(test_str_embedded_nul), cmocka_unit_test(test_reader_done),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
