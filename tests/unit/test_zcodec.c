/*
 * test_zcodec.c - zstd with a bound: round trips, decompression bombs with
 * and without a content size in the frame header, headers that lie, garbage,
 * every truncation of a frame, and concatenated frames.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "buf.h"
#include "zcodec.h"

#define MiB ((size_t)1024 * 1024)

/* Deterministic noise that zstd cannot compress. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;

    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

/* Text-like data that compresses well. */
static void fill_text(uint8_t *p, size_t n)
{
    static const char line[] =
        "INSERT INTO metric_value VALUES ('site-%d', 'wait_days', '2026-Q3', ";

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)line[(i + i / 997) % (sizeof(line) - 1)];
}

/* Compresses repeat copies of p[0..n) with the streaming API so that the
 * frame header carries no content size, as a hostile peer could send it.
 * window_log 0 keeps zstd's choice for the level. */
static void compress_unknown_size(struct buf *out, const void *p, size_t n, size_t repeat,
                                  int window_log)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    struct errctx e = {0};
    size_t step = ZSTD_CStreamOutSize();
    size_t rem;

    assert_non_null(cctx);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL)));
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
    if (window_log > 0)
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log)));
    for (size_t r = 0; r < repeat; r++) {
        ZSTD_inBuffer in = {p, n, 0};
        while (in.pos < in.size) {
            assert_int_equal(buf_reserve(out, step, &e), SYNC_OK);
            ZSTD_outBuffer ob = {out->data + out->len, out->cap - out->len, 0};
            assert_false(ZSTD_isError(ZSTD_compressStream2(cctx, &ob, &in, ZSTD_e_continue)));
            out->len += ob.pos;
        }
    }
    do {
        ZSTD_inBuffer in = {NULL, 0, 0};
        assert_int_equal(buf_reserve(out, step, &e), SYNC_OK);
        ZSTD_outBuffer ob = {out->data + out->len, out->cap - out->len, 0};
        rem = ZSTD_compressStream2(cctx, &ob, &in, ZSTD_e_end);
        assert_false(ZSTD_isError(rem));
        out->len += ob.pos;
    } while (rem != 0);
    ZSTD_freeCCtx(cctx);
}

static void round_trip(const uint8_t *p, size_t n)
{
    struct buf z = {0}, back = {0};
    struct errctx e = {0};

    assert_int_equal(zcodec_compress(&z, p, n, &e), SYNC_OK);
    assert_int_equal(ZSTD_getFrameContentSize(z.data, z.len), n);
    assert_int_equal(zcodec_decompress(&back, z.data, z.len, n, &e), SYNC_OK);
    assert_int_equal(back.len, n);
    if (n > 0)
        assert_memory_equal(back.data, p, n);
    /* Output grows with what is produced, not to max_out. */
    assert_int_equal(zcodec_decompress(&back, z.data, z.len, (size_t)CHANGESET_MAX, &e), SYNC_OK);
    assert_int_equal(back.len, 2 * n);
    assert_true(back.cap <= 4 * n + 2 * ZSTD_DStreamOutSize());
    buf_free(&z);
    buf_free(&back);
}

static void test_round_trip(void **state)
{
    const size_t n = 4 * MiB;
    uint8_t *p = malloc(n);

    (void)state;
    assert_non_null(p);
    fill_random(p, n, 42);
    round_trip(p, 1);
    round_trip(p, 1000);
    round_trip(p, n);
    fill_text(p, n);
    round_trip(p, n);
    round_trip(p, 0);
    round_trip(NULL, 0);
    free(p);
}

/* Larger than our window limit of 8 MiB: content over the window must still
 * decode, since level 3 keeps a 2 MiB window whatever the size. */
static void test_large(void **state)
{
    const size_t n = 24 * MiB;
    uint8_t *p = malloc(n);

    (void)state;
    assert_non_null(p);
    fill_text(p, n);
    fill_random(p + n / 2, MiB, 7);
    round_trip(p, n);
    free(p);
}

/* Pieces compressed as one frame decode to the pieces end to end, the frame
 * names its content size, and it is as small as the pieces copied together
 * and compressed at once.  (With a dictionary: tests/e2e/31-small-syncs.t.) */
/* 2 MiB of text with a stretch of noise (seeded) in it, for the encoder
 * and decoder tests. */
static uint8_t *mixed_2mib(uint64_t seed)
{
    uint8_t *p = malloc(2 * MiB);

    assert_non_null(p);
    fill_text(p, 2 * MiB);
    fill_random(p + 1000 * seed, 3000, seed);
    return p;
}

/* One encoder for many frames, large and small in turn, with and without a
 * dictionary: each frame is the very bytes a fresh encoder gives, and a
 * frame made with the dictionary is not left to the next one. */
static void test_encoder(void **state)
{
    static const size_t sizes[] = {2 * MiB, 10, 0, 300000, 1, 64 * 1024};
    uint8_t *p = mixed_2mib(9), samples[64 * 200];
    size_t ssz[200];
    struct buf dict = {0};
    struct zdict *d = NULL;
    struct zenc *z = NULL;
    struct errctx e = {0};

    (void)state;
    for (int i = 0; i < 200; i++) { /* rows alike enough to train on */
        int n =
            snprintf((char *)samples + 64 * i, 64, "resource %d: a guide for site %d", i, i % 7);
        ssz[i] = 64;
        memset(samples + 64 * i + n, ' ', (size_t)(64 - n));
    }
    assert_int_equal(zdict_train(&dict, 2048, samples, ssz, 200, &e), SYNC_OK);
    assert_int_equal(zdict_load(&d, dict.data, dict.len, &e), SYNC_OK);
    assert_int_equal(zenc_new(&z, &e), SYNC_OK);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            const struct zdict *with = (i + (size_t)round) % 2 ? d : NULL;
            struct buf a = {0}, b = {0}, out = {0};

            assert_int_equal(zenc_compress(z, &a, p, sizes[i], with, &e), SYNC_OK);
            assert_int_equal(zcodec_compress_dict(&b, p, sizes[i], with, &e), SYNC_OK);
            assert_int_equal(a.len, b.len);
            assert_memory_equal(a.data, b.data, a.len);
            assert_int_equal(zcodec_frame_dict(a.data, a.len), with ? zdict_id(d) : 0);
            assert_int_equal(zcodec_decompress_dict(&out, a.data, a.len, sizes[i], d, &e), SYNC_OK);
            assert_int_equal(out.len, sizes[i]);
            if (sizes[i] > 0)
                assert_memory_equal(out.data, p, sizes[i]);
            buf_free(&a);
            buf_free(&b);
            buf_free(&out);
        }
    }
    zenc_free(z);
    zenc_free(NULL);
    zdict_free(d);
    buf_free(&dict);
    free(p);
}

/* One decoder for many frames: garbage and a frame past its bound in
 * between leave it able to decode the next frame. */
static void test_decoder(void **state)
{
    static const size_t sizes[] = {300000, 10, 1, 2 * MiB};
    uint8_t *p = mixed_2mib(5);
    struct zdec *z = NULL;
    struct errctx e = {0};

    (void)state;
    assert_int_equal(zdec_new(&z, &e), SYNC_OK);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct buf c = {0}, out = {0};
        static const uint8_t garbage[] = "not zstd at all";

        assert_int_equal(zcodec_compress(&c, p, sizes[i], &e), SYNC_OK);
        assert_int_equal(zdec_decompress(z, &out, c.data, c.len, sizes[i], NULL, &e), SYNC_OK);
        assert_int_equal(out.len, sizes[i]);
        assert_memory_equal(out.data, p, sizes[i]);
        out.len = 0;
        assert_int_equal(zdec_decompress(z, &out, garbage, sizeof(garbage) - 1, 100, NULL, &e),
                         SYNC_EPROTO);
        if (sizes[i] > 1)
            assert_int_equal(zdec_decompress(z, &out, c.data, c.len, sizes[i] - 1, NULL, &e),
                             SYNC_ELIMIT);
        assert_int_equal(out.len, 0);
        buf_free(&c);
        buf_free(&out);
    }
    zdec_free(z);
    zdec_free(NULL);
    free(p);
}

static void test_parts(void **state)
{
    const size_t n = 3 * MiB;
    uint8_t *p = malloc(n);
    struct buf one = {0}, parts = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_non_null(p);
    fill_text(p, n);
    fill_random(p + 1000, 5000, 3);
    {
        const void *pp[3] = {p, p + 17, p + 100000};
        size_t ll[3] = {17, 100000 - 17, n - 100000};
        assert_int_equal(zcodec_compress_parts(&parts, pp, ll, 3, NULL, &e), SYNC_OK);
    }
    assert_int_equal(zcodec_compress(&one, p, n, &e), SYNC_OK);
    assert_int_equal(ZSTD_getFrameContentSize(parts.data, parts.len), n);
    assert_true(parts.len < n / 2);
    assert_true(parts.len <= one.len + one.len / 100 + 64); /* as small as one piece */
    assert_int_equal(zcodec_decompress(&out, parts.data, parts.len, n, &e), SYNC_OK);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, p, n);
    /* an empty piece and a lone empty piece */
    {
        const void *pp[2] = {NULL, p};
        size_t ll[2] = {0, 10};
        parts.len = out.len = 0;
        assert_int_equal(zcodec_compress_parts(&parts, pp, ll, 2, NULL, &e), SYNC_OK);
        assert_int_equal(zcodec_decompress(&out, parts.data, parts.len, 10, &e), SYNC_OK);
        assert_int_equal(out.len, 10);
        assert_memory_equal(out.data, p, 10);
        parts.len = out.len = 0;
        assert_int_equal(zcodec_compress_parts(&parts, pp, ll, 1, NULL, &e), SYNC_OK);
        assert_int_equal(zcodec_decompress(&out, parts.data, parts.len, 10, &e), SYNC_OK);
        assert_int_equal(out.len, 0);
        assert_int_equal(zcodec_compress_parts(&parts, pp, ll, 0, NULL, &e), SYNC_ELIMIT);
    }
    buf_free(&one);
    buf_free(&parts);
    buf_free(&out);
    free(p);
}

/* Appends to what is there; a failure leaves the earlier bytes alone. */
static void test_append(void **state)
{
    struct buf z = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(buf_put(&out, "prefix", 6, &e), SYNC_OK);
    assert_int_equal(zcodec_compress(&z, "payload", 7, &e), SYNC_OK);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 7, &e), SYNC_OK);
    assert_int_equal(out.len, 13);
    assert_memory_equal(out.data, "prefixpayload", 13);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 6, &e), SYNC_ELIMIT);
    assert_int_equal(out.len, 13);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len - 1, 7, &e), SYNC_EPROTO);
    assert_int_equal(out.len, 13);
    assert_memory_equal(out.data, "prefixpayload", 13);
    buf_free(&z);
    buf_free(&out);
}

/* 64 MiB of zeros that say so in the header: refused before any output. */
static void test_bomb_with_size(void **state)
{
    const size_t n = 64 * MiB;
    uint8_t *zeros = calloc(n, 1);
    struct buf z = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_non_null(zeros);
    assert_int_equal(zcodec_compress(&z, zeros, n, &e), SYNC_OK);
    free(zeros);
    assert_true(z.len < (size_t)64 * 1024);
    assert_int_equal(ZSTD_getFrameContentSize(z.data, z.len), n);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, MiB, &e), SYNC_ELIMIT);
    assert_int_equal(e.code, SYNC_ELIMIT);
    assert_string_equal(e.msg,
                        "compressed payload claims 67108864 bytes, more than the 1048576 bytes "
                        "allowed");
    assert_int_equal(out.len, 0);
    assert_int_equal(out.cap, 0); /* nothing allocated */
    buf_free(&z);
}

/* The same bomb with no size in the header: caught while decoding, with the
 * output never past max_out. */
static void test_bomb_without_size(void **state)
{
    uint8_t *zeros = calloc(MiB, 1);
    struct buf z = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_non_null(zeros);
    compress_unknown_size(&z, zeros, MiB, 64, 0);
    free(zeros);
    assert_true(z.len < (size_t)64 * 1024);
    assert_true(ZSTD_getFrameContentSize(z.data, z.len) == ZSTD_CONTENTSIZE_UNKNOWN);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, MiB, &e), SYNC_ELIMIT);
    assert_string_equal(e.msg, "compressed payload expands to more than the 1048576 bytes allowed");
    assert_int_equal(out.len, 0);
    assert_true(out.cap <= 2 * MiB);
    buf_free(&out);
    buf_free(&z);
}

/* Exactly max_out is fine, one byte less is not, with and without a size. */
static void test_bound_exact(void **state)
{
    const size_t n = 300000;
    uint8_t *p = malloc(n);
    struct buf known = {0}, unknown = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_non_null(p);
    fill_text(p, n);
    assert_int_equal(zcodec_compress(&known, p, n, &e), SYNC_OK);
    compress_unknown_size(&unknown, p, n, 1, 0);
    assert_true(ZSTD_getFrameContentSize(unknown.data, unknown.len) == ZSTD_CONTENTSIZE_UNKNOWN);

    assert_int_equal(zcodec_decompress(&out, known.data, known.len, n, &e), SYNC_OK);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, p, n);
    out.len = 0;
    assert_int_equal(zcodec_decompress(&out, unknown.data, unknown.len, n, &e), SYNC_OK);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, p, n);
    out.len = 0;
    assert_int_equal(zcodec_decompress(&out, known.data, known.len, n - 1, &e), SYNC_ELIMIT);
    assert_int_equal(zcodec_decompress(&out, unknown.data, unknown.len, n - 1, &e), SYNC_ELIMIT);
    assert_int_equal(zcodec_decompress(&out, unknown.data, unknown.len, 0, &e), SYNC_ELIMIT);
    assert_int_equal(out.len, 0);
    free(p);
    buf_free(&known);
    buf_free(&unknown);
    buf_free(&out);
}

/* A frame with nothing in it decodes to nothing, even with max_out 0. */
static void test_empty_content(void **state)
{
    struct buf z = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(zcodec_compress(&z, NULL, 0, &e), SYNC_OK);
    assert_true(z.len > 0);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 0, &e), SYNC_OK);
    assert_int_equal(out.len, 0);
    z.len = 0;
    compress_unknown_size(&z, "", 0, 1, 0);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 0, &e), SYNC_OK);
    assert_int_equal(out.len, 0);
    buf_free(&z);
    buf_free(&out);
}

/* Byte offset and width of the frame content size field (RFC 8878 3.1.1.1). */
static void fcs_field(const uint8_t *frame, size_t *off, size_t *width)
{
    uint8_t fhd = frame[4];
    int single = (fhd >> 5) & 1;
    static const size_t dict_width[] = {0, 1, 2, 4};
    static const size_t fcs_width[] = {0, 2, 4, 8};

    *off = 5 + (single ? 0 : 1) + dict_width[fhd & 3];
    *width = (fhd >> 6) == 0 ? (size_t)single : fcs_width[fhd >> 6];
}

/* A header whose size is smaller or larger than the real content: refused,
 * output within the bound. */
static void test_lying_header(void **state)
{
    const size_t n = 100000;
    uint8_t *p = malloc(n);
    struct buf z = {0}, out = {0};
    struct errctx e = {0};
    size_t off, width;

    (void)state;
    assert_non_null(p);
    fill_text(p, n);
    assert_int_equal(zcodec_compress(&z, p, n, &e), SYNC_OK);
    fcs_field(z.data, &off, &width);
    assert_int_equal(width, 4); /* 100000 needs the 4-byte field */

    z.data[off] = 1; /* little-endian: claim 1 byte */
    memset(z.data + off + 1, 0, 3);
    assert_int_equal(ZSTD_getFrameContentSize(z.data, z.len), 1);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, n, &e), SYNC_EPROTO);
    assert_int_equal(out.len, 0);

    z.data[off] = 0x00; /* claim 0x00030000 = 196608 bytes */
    z.data[off + 2] = 0x03;
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 4 * n, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "not valid zstd"));
    assert_int_equal(out.len, 0);
    free(p);
    buf_free(&z);
    buf_free(&out);
}

/* A frame that asks for a 16 MiB window is refused as over our limit. */
static void test_window_too_large(void **state)
{
    struct buf z = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    compress_unknown_size(&z, "some data some data some data", 29, 1, 24);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, MiB, &e), SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "window"));
    buf_free(&z);
    buf_free(&out);
}

static void test_garbage(void **state)
{
    uint8_t junk[512];
    struct buf out = {0};
    struct errctx e = {0};

    (void)state;
    fill_random(junk, sizeof(junk), 3);
    assert_int_equal(zcodec_decompress(&out, junk, sizeof(junk), MiB, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "not valid zstd"));
    /* The zstd magic (0xFD2FB528, little-endian) followed by noise. */
    junk[0] = 0x28;
    junk[1] = 0xb5;
    junk[2] = 0x2f;
    junk[3] = 0xfd;
    assert_int_equal(zcodec_decompress(&out, junk, sizeof(junk), MiB, &e), SYNC_EPROTO);
    assert_int_equal(zcodec_decompress(&out, junk, 3, MiB, &e), SYNC_EPROTO);
    assert_int_equal(zcodec_decompress(&out, junk, 0, MiB, &e), SYNC_EPROTO);
    assert_string_equal(e.msg, "compressed payload is empty");
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

/* Every proper prefix of a frame, with and without a content size, is refused. */
static void test_truncated(void **state)
{
    const size_t n = 20000;
    uint8_t *p = malloc(n);
    struct buf frames[2] = {{0}, {0}}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_non_null(p);
    fill_text(p, n / 2);
    fill_random(p + n / 2, n / 2, 5);
    assert_int_equal(zcodec_compress(&frames[0], p, n, &e), SYNC_OK);
    compress_unknown_size(&frames[1], p, n, 1, 0);
    for (int i = 0; i < 2; i++) {
        for (size_t k = 1; k < frames[i].len; k++) {
            uint8_t *copy = malloc(k); /* exact size, so ASan sees over-reads */
            assert_non_null(copy);
            memcpy(copy, frames[i].data, k);
            int rc = zcodec_decompress(&out, copy, k, n, &e);
            if (rc != SYNC_EPROTO)
                fail_msg("frame %d cut at %zu of %zu: rc %d (%s)", i, k, frames[i].len, rc, e.msg);
            assert_int_equal(out.len, 0);
            free(copy);
        }
        assert_int_equal(zcodec_decompress(&out, frames[i].data, frames[i].len, n, &e), SYNC_OK);
        assert_int_equal(out.len, n);
        out.len = 0;
    }
    free(p);
    buf_free(&frames[0]);
    buf_free(&frames[1]);
    buf_free(&out);
}

/* Frames back to back decode to their contents back to back; skippable frames
 * add nothing; the bound applies to the total. */
static void test_concatenated(void **state)
{
    static const uint8_t skippable[] = {0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'x', 'y', 'z'};
    const size_t n = (size_t)600 * 1024;
    uint8_t *p = malloc(n);
    struct buf z = {0}, out = {0};
    struct errctx e = {0};

    (void)state;
    assert_non_null(p);
    fill_text(p, n);
    assert_int_equal(zcodec_compress(&z, "first,", 6, &e), SYNC_OK);
    assert_int_equal(buf_put(&z, skippable, sizeof(skippable), &e), SYNC_OK);
    compress_unknown_size(&z, "second,", 7, 1, 0);
    assert_int_equal(zcodec_compress(&z, "third", 5, &e), SYNC_OK);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, MiB, &e), SYNC_OK);
    assert_int_equal(out.len, 18);
    assert_memory_equal(out.data, "first,second,third", 18);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 17, &e), SYNC_ELIMIT);
    assert_int_equal(out.len, 18);

    /* Trailing bytes that are not a frame. */
    assert_int_equal(buf_put(&z, "\x01\x02", 2, &e), SYNC_OK);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, MiB, &e), SYNC_EPROTO);
    assert_int_equal(out.len, 18);

    /* Two frames each within the bound, together over it: the second frame's
     * claim is checked against what is left. */
    z.len = 0;
    out.len = 0;
    assert_int_equal(zcodec_compress(&z, p, n, &e), SYNC_OK);
    assert_int_equal(zcodec_compress(&z, p, n, &e), SYNC_OK);
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, 2 * n, &e), SYNC_OK);
    assert_int_equal(out.len, 2 * n);
    out.len = 0;
    assert_int_equal(zcodec_decompress(&out, z.data, z.len, MiB, &e), SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "claims 614400 bytes, more than the 434176 bytes allowed"));
    assert_int_equal(out.len, 0);
    free(p);
    buf_free(&z);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_large),
        cmocka_unit_test(test_append),         cmocka_unit_test(test_parts),
        cmocka_unit_test(test_bomb_with_size), cmocka_unit_test(test_bomb_without_size),
        cmocka_unit_test(test_bound_exact),    cmocka_unit_test(test_empty_content),
        cmocka_unit_test(test_lying_header),   cmocka_unit_test(test_window_too_large),
        cmocka_unit_test(test_garbage),        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_concatenated),   cmocka_unit_test(test_encoder),
        cmocka_unit_test(test_decoder),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
