/*
 * test_proto.c - every message's encoder and decoder: round trips with the
 * exact byte layout proto.h writes out, and damaged payloads (wrong frame
 * type, every truncation, trailing bytes, over-limit lengths, control
 * characters in an error sentence).
 *
 * Truncated payloads are copied into buffers of exactly their length, so
 * that ASan reports a decoder that reads one byte too far.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "proto.h"

/* Decodes payload p (n bytes) as a frame of the given type with the
 * message's decoder; out receives the decoded message. */
typedef int (*decode_fn)(void *out, const struct frame *f, struct errctx *e);

static int dec_hello(void *m, const struct frame *f, struct errctx *e)
{
    return msg_hello_decode(m, f, e);
}
static int dec_welcome(void *m, const struct frame *f, struct errctx *e)
{
    return msg_welcome_decode(m, f, e);
}
static int dec_push(void *m, const struct frame *f, struct errctx *e)
{
    return msg_push_decode(m, f, e);
}
static int dec_push_ok(void *m, const struct frame *f, struct errctx *e)
{
    return msg_push_ok_decode(m, f, e);
}
static int dec_pull(void *m, const struct frame *f, struct errctx *e)
{
    return msg_pull_decode(m, f, e);
}
static int dec_version(void *m, const struct frame *f, struct errctx *e)
{
    return msg_version_decode(m, f, e);
}
static int dec_conflict(void *m, const struct frame *f, struct errctx *e)
{
    return msg_conflict_decode(m, f, e);
}

static int dec_own_version(void *m, const struct frame *f, struct errctx *e)
{
    return msg_own_version_decode(m, f, e);
}

static int dec_dict(void *m, const struct frame *f, struct errctx *e)
{
    return msg_dict_decode(m, f, e);
}

static int dec_pull_end(void *m, const struct frame *f, struct errctx *e)
{
    return msg_pull_end_decode(m, f, e);
}
static int dec_snap_head(void *m, const struct frame *f, struct errctx *e)
{
    return msg_snap_head_decode(m, f, e);
}
static int dec_snap_data(void *m, const struct frame *f, struct errctx *e)
{
    return msg_snap_data_decode(m, f, e);
}
static int dec_snap_end(void *m, const struct frame *f, struct errctx *e)
{
    return msg_snap_end_decode(m, f, e);
}
static int dec_error(void *m, const struct frame *f, struct errctx *e)
{
    return msg_error_decode(m, f, e);
}

/* Runs dec on a private copy of p[0..n) (exactly n bytes, so over-reads are
 * caught), as a frame of type type. */
static int decode_copy(decode_fn dec, void *m, uint8_t type, const uint8_t *p, size_t n,
                       struct errctx *e)
{
    uint8_t *copy = malloc(n ? n : 1);
    struct frame f = {.type = type, .len = (uint32_t)n, .payload = copy};
    int rc;

    assert_non_null(copy);
    if (n)
        memcpy(copy, p, n);
    rc = dec(m, &f, e);
    free(copy);
    return rc;
}

union any_msg {
    struct msg_hello hello;
    struct msg_welcome welcome;
    struct msg_push push;
    struct msg_push_ok push_ok;
    struct msg_pull pull;
    struct msg_conflict conflict;
    struct msg_version version;
    struct msg_pull_end pull_end;
    struct msg_snap_head snap_head;
    struct msg_snap_data snap_data;
    struct msg_snap_end snap_end;
    struct msg_error error;
    struct msg_dict dict;
};

/* The damage every decoder must refuse: another frame type, every prefix of
 * the payload shorter than fixed (the bytes before a variable tail), and one
 * byte too many when the message has no variable tail (tail_ok == 0). */
static void refuse_damage(decode_fn dec, uint8_t type, const struct buf *good, size_t fixed,
                          int tail_ok)
{
    static const uint8_t types[] = {
        MSG_HELLO,     MSG_WELCOME,  MSG_PUSH,     MSG_PUSH_OK,  MSG_PULL,
        MSG_VERSION,   MSG_PULL_END, MSG_CONFLICT, MSG_SNAPSHOT, MSG_SNAP_HEAD,
        MSG_SNAP_DATA, MSG_SNAP_END, MSG_BYE,      MSG_ERROR,    MSG_OWN_VERSION,
        MSG_DICT_GET,  MSG_DICT,     0x00,         0xff};
    union any_msg m;
    struct errctx e = {0};
    uint8_t *longer;

    assert_int_equal(decode_copy(dec, &m, type, good->data, good->len, &e), SYNC_OK);
    for (size_t i = 0; i < sizeof(types); i++) {
        if (types[i] == type)
            continue;
        errctx_clear(&e);
        assert_int_equal(decode_copy(dec, &m, types[i], good->data, good->len, &e), SYNC_EPROTO);
        assert_non_null(strstr(e.msg, msg_type_name(type)));
    }
    for (size_t n = 0; n < fixed; n++) {
        errctx_clear(&e);
        int rc = decode_copy(dec, &m, type, good->data, n, &e);
        if (rc != SYNC_EPROTO)
            fail_msg("%s payload cut to %zu of %zu bytes: rc %d, want SYNC_EPROTO",
                     msg_type_name(type), n, good->len, rc);
        assert_int_equal(e.code, SYNC_EPROTO);
        assert_true(e.msg[0] != '\0');
    }
    longer = malloc(good->len + 1);
    assert_non_null(longer);
    memcpy(longer, good->data, good->len);
    longer[good->len] = 0;
    errctx_clear(&e);
    if (tail_ok)
        assert_int_equal(decode_copy(dec, &m, type, longer, good->len + 1, &e), SYNC_OK);
    else
        assert_int_equal(decode_copy(dec, &m, type, longer, good->len + 1, &e), SYNC_EPROTO);
    free(longer);
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 7);
}

/* ---- round trips and layouts -------------------------------------------- */

static void test_hello(void **state)
{
    struct msg_hello in = {.proto = 0x0102, .dict = 0xa1b2c3d4}, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    fill(in.schema, sizeof(in.schema), 3);
    assert_int_equal(msg_hello_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 2 + 32 + 4);
    assert_memory_equal(b.data, "\x01\x02", 2);
    assert_memory_equal(b.data + 2, in.schema, 32);
    assert_memory_equal(b.data + 34, "\xa1\xb2\xc3\xd4", 4);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_hello, &out, MSG_HELLO, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.proto, 0x0102);
    assert_memory_equal(out.schema, in.schema, 32);
    assert_true(out.dict == 0xa1b2c3d4);
    refuse_damage(dec_hello, MSG_HELLO, &b, b.len, 0);
    /* A protocol-3 HELLO (no dictionary field) still decodes, so the hub can
     * answer it with PROTO_VERSION rather than BAD_FRAME. */
    b.data[0] = 0;
    b.data[1] = 3;
    memset(&out, 0xee, sizeof(out));
    assert_int_equal(decode_copy(dec_hello, &out, MSG_HELLO, b.data, 34, &e), SYNC_OK);
    assert_int_equal(out.proto, 3);
    assert_true(out.dict == 0);
    buf_free(&b);
}

static void test_welcome(void **state)
{
    struct msg_welcome in = {.proto = PROTO_VERSION, .head = 0x0102030405060708ull, .dict = 77},
                       out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_welcome_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 14);
    assert_memory_equal(b.data, "\x00\x05\x01\x02\x03\x04\x05\x06\x07\x08\0\0\0\x4d", 14);
    memset(&out, 0xee, sizeof(out));
    assert_int_equal(decode_copy(dec_welcome, &out, MSG_WELCOME, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.proto, PROTO_VERSION);
    assert_true(out.head == in.head);
    assert_true(out.dict == 77);
    refuse_damage(dec_welcome, MSG_WELCOME, &b, b.len, 0);
    buf_free(&b);
}

static void test_push(void **state)
{
    static const uint8_t z[] = "compressed times and changeset";
    struct msg_push in = {
        .base = UINT64_MAX, .raw_len = 1234, .ntimes = 2, .z = z, .zlen = sizeof(z) - 1};
    struct msg_push out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    fill(in.push_id, PUSH_ID_LEN, 9);
    assert_int_equal(msg_push_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 32 + 8 + 4 + 4 + in.zlen);
    assert_memory_equal(b.data, in.push_id, 32);
    assert_memory_equal(b.data + 32, "\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x04\xd2\0\0\0\x02",
                        16);
    memset(&out, 0xee, sizeof(out));
    {
        struct frame f = {.type = MSG_PUSH, .len = (uint32_t)b.len, .payload = b.data};
        assert_int_equal(msg_push_decode(&out, &f, &e), SYNC_OK);
        assert_memory_equal(out.push_id, in.push_id, 32);
        assert_true(out.base == UINT64_MAX);
        assert_int_equal(out.raw_len, 1234);
        assert_int_equal(out.ntimes, 2);
        assert_null(out.times); /* the times are inside the compressed payload */
        assert_int_equal(out.zlen, in.zlen);
        assert_ptr_equal(out.z, b.data + 48); /* borrowed from the frame */
        assert_memory_equal(out.z, z, out.zlen);
    }
    /* The payload is the rest of the frame: an extra byte is part of it. */
    refuse_damage(dec_push, MSG_PUSH, &b, 48, 1);

    /* More edit times announced than the payload can hold (8 bytes each). */
    b.data[44] = 0x7f; /* 0x7f000002 times: over 1234 / 8 */
    assert_int_equal(decode_copy(dec_push, &out, MSG_PUSH, b.data, b.len, &e), SYNC_EPROTO);
    assert_non_null(strstr(e.msg, "edit times"));

    /* An empty changeset is a valid push. */
    b.len = 0;
    in.zlen = 0;
    in.z = NULL;
    in.raw_len = 0;
    in.ntimes = 0;
    assert_int_equal(msg_push_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 48);
    assert_int_equal(decode_copy(dec_push, &out, MSG_PUSH, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.zlen, 0);
    buf_free(&b);
}

static void test_push_raw_len_limit(void **state)
{
    struct msg_push in = {
        .base = 1, .raw_len = CHANGESET_MAX, .z = (const uint8_t *)"z", .zlen = 1};
    struct msg_push out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_push_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(decode_copy(dec_push, &out, MSG_PUSH, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.raw_len, CHANGESET_MAX);

    b.len = 0;
    in.raw_len = CHANGESET_MAX + 1;
    assert_int_equal(msg_push_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(decode_copy(dec_push, &out, MSG_PUSH, b.data, b.len, &e), SYNC_ELIMIT);
    assert_int_equal(e.code, SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "268435457"));

    b.len = 0;
    in.raw_len = UINT32_MAX;
    assert_int_equal(msg_push_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(decode_copy(dec_push, &out, MSG_PUSH, b.data, b.len, &e), SYNC_ELIMIT);
    buf_free(&b);
}

static void test_push_ok(void **state)
{
    struct msg_push_ok in = {.version = 77, .duplicate = 1, .applied = 0x01020304, .overridden = 5};
    struct msg_push_ok out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_push_ok_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 8 + 1 + 4 + 4);
    assert_memory_equal(b.data, "\0\0\0\0\0\0\0\x4d\x01\x01\x02\x03\x04\0\0\0\x05", 17);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_push_ok, &out, MSG_PUSH_OK, b.data, b.len, &e), SYNC_OK);
    assert_true(out.version == 77);
    assert_int_equal(out.duplicate, 1);
    assert_int_equal(out.applied, 0x01020304);
    assert_int_equal(out.overridden, 5);
    refuse_damage(dec_push_ok, MSG_PUSH_OK, &b, b.len, 0);
    buf_free(&b);
}

static void test_pull(void **state)
{
    struct msg_pull in = {0x8000000000000001ull, 7, 9}, out = {0, 0, 0};
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_pull_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 24);
    assert_memory_equal(b.data, "\x80\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x07\0\0\0\0\0\0\0\x09", 24);
    assert_int_equal(decode_copy(dec_pull, &out, MSG_PULL, b.data, b.len, &e), SYNC_OK);
    assert_true(out.since == 0x8000000000000001ull);
    assert_true(out.conflicts_since == 7);
    assert_true(out.own == 9);
    refuse_damage(dec_pull, MSG_PULL, &b, b.len, 0);
    buf_free(&b);
}

static void test_conflict(void **state)
{
    struct msg_conflict in, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    memset(&in, 0, sizeof(in));
    in.id = 12;
    in.version = 40;
    strcpy(in.table, "resource");
    strcpy(in.column, "title");
    strcpy(in.kind, "overridden");
    strcpy(in.winner, "ottawa");
    in.lost_at = 1767225600123ull;
    in.won_at = 1767225600999ull;
    in.key = (const uint8_t *)"\"r1\"";
    in.nkey = 4;
    in.lost = (const uint8_t *)"\"Toolkit\"";
    in.nlost = 9;
    in.kept = (const uint8_t *)"";
    in.nkept = 0;
    assert_int_equal(msg_conflict_encode(&b, &in, &e), SYNC_OK);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_conflict, &out, MSG_CONFLICT, b.data, b.len, &e), SYNC_OK);
    assert_true(out.id == 12 && out.version == 40);
    assert_string_equal(out.table, "resource");
    assert_string_equal(out.column, "title");
    assert_string_equal(out.kind, "overridden");
    assert_string_equal(out.winner, "ottawa");
    assert_true(out.lost_at == in.lost_at && out.won_at == in.won_at);
    assert_int_equal(out.nkey, 4);
    assert_int_equal(out.nlost, 9);
    assert_int_equal(out.nkept, 0);
    /* every field is fixed-size or length-prefixed: any prefix is refused */
    refuse_damage(dec_conflict, MSG_CONFLICT, &b, b.len, 0);
    buf_free(&b);
}

static void test_version(void **state)
{
    static const uint8_t z[] = "zstd bytes of a canonical changeset";
    struct msg_version in = {
        .seq = 42, .time = 1767225600, .raw_len = 999, .z = z, .zlen = sizeof(z) - 1};
    struct msg_version out;
    struct buf b = {0};
    struct errctx e = {0};
    size_t fixed;

    (void)state;
    fill(in.commit, OID_RAW_LEN, 1);
    fill(in.tree, OID_RAW_LEN, 100);
    snprintf(in.author, sizeof(in.author), "site-toronto");
    assert_int_equal(msg_version_encode(&b, &in, &e), SYNC_OK);
    fixed = 8 + 20 + 20 + 8 + 2 + strlen(in.author) + 4;
    assert_int_equal(b.len, fixed + in.zlen);
    assert_memory_equal(b.data + 56, "\x00\x0csite-toronto\x00\x00\x03\xe7", 18);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_version, &out, MSG_VERSION, b.data, b.len, &e), SYNC_OK);
    assert_true(out.seq == 42);
    assert_memory_equal(out.commit, in.commit, 20);
    assert_memory_equal(out.tree, in.tree, 20);
    assert_true(out.time == 1767225600);
    assert_string_equal(out.author, "site-toronto");
    assert_int_equal(out.raw_len, 999);
    assert_int_equal(out.zlen, in.zlen);
    refuse_damage(dec_version, MSG_VERSION, &b, fixed, 1);

    /* The author is bounded by the site id's limit. */
    {
        char longest[sizeof(in.author)];
        memset(longest, 'a', sizeof(longest) - 1);
        longest[sizeof(longest) - 1] = '\0';
        b.len = 0;
        memcpy(in.author, longest, sizeof(longest));
        assert_int_equal(msg_version_encode(&b, &in, &e), SYNC_OK);
        assert_int_equal(decode_copy(dec_version, &out, MSG_VERSION, b.data, b.len, &e), SYNC_OK);
        assert_string_equal(out.author, longest);
        /* One byte more, written by hand. */
        b.len = 0;
        assert_int_equal(buf_put_u64(&b, 1, &e), SYNC_OK);
        assert_int_equal(buf_put(&b, in.commit, 20, &e), SYNC_OK);
        assert_int_equal(buf_put(&b, in.tree, 20, &e), SYNC_OK);
        assert_int_equal(buf_put_u64(&b, 1, &e), SYNC_OK);
        assert_int_equal(buf_put_u16(&b, (uint16_t)sizeof(longest), &e), SYNC_OK);
        assert_int_equal(buf_put(&b, longest, sizeof(longest) - 1, &e), SYNC_OK);
        assert_int_equal(buf_put_u8(&b, 'a', &e), SYNC_OK);
        assert_int_equal(buf_put_u32(&b, 0, &e), SYNC_OK);
        assert_int_not_equal(decode_copy(dec_version, &out, MSG_VERSION, b.data, b.len, &e),
                             SYNC_OK);
        assert_true(strlen(out.author) < sizeof(out.author));
    }

    /* raw_len over the changeset limit. */
    snprintf(in.author, sizeof(in.author), "site-a");
    b.len = 0;
    in.raw_len = CHANGESET_MAX + 1;
    assert_int_equal(msg_version_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(decode_copy(dec_version, &out, MSG_VERSION, b.data, b.len, &e), SYNC_ELIMIT);
    buf_free(&b);
}

static void test_pull_end(void **state)
{
    struct msg_pull_end in = {.head = 5, .more = 1}, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    fill(in.tree, OID_RAW_LEN, 50);
    assert_int_equal(msg_pull_end_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 8 + 20 + 1);
    assert_memory_equal(b.data + 8, in.tree, 20);
    assert_int_equal(b.data[28], 1);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_pull_end, &out, MSG_PULL_END, b.data, b.len, &e), SYNC_OK);
    assert_true(out.head == 5);
    assert_memory_equal(out.tree, in.tree, 20);
    assert_int_equal(out.more, 1);
    refuse_damage(dec_pull_end, MSG_PULL_END, &b, b.len, 0);
    buf_free(&b);
}

static void test_snap_head(void **state)
{
    struct msg_snap_head in = {.version = 0x0102030405060708ull, .rows = 100000, .tables = 4}, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    fill(in.tree, OID_RAW_LEN, 9);
    assert_int_equal(msg_snap_head_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 8 + 20 + 8 + 4);
    assert_memory_equal(b.data, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_memory_equal(b.data + 8, in.tree, 20);
    assert_memory_equal(b.data + 28, "\x00\x00\x00\x00\x00\x01\x86\xa0\x00\x00\x00\x04", 12);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_snap_head, &out, MSG_SNAP_HEAD, b.data, b.len, &e), SYNC_OK);
    assert_true(out.version == in.version && out.rows == 100000 && out.tables == 4);
    assert_memory_equal(out.tree, in.tree, 20);
    refuse_damage(dec_snap_head, MSG_SNAP_HEAD, &b, b.len, 0);
    buf_free(&b);
}

static void test_snap_data(void **state)
{
    static const uint8_t z[] = {0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3};
    struct msg_snap_data in = {.rows = 7, .raw_len = 4096, .z = z, .zlen = sizeof(z)}, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_snap_data_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 4 + 4 + sizeof(z));
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_snap_data, &out, MSG_SNAP_DATA, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.rows, 7);
    assert_int_equal(out.raw_len, 4096);
    assert_int_equal(out.zlen, sizeof(z));
    refuse_damage(dec_snap_data, MSG_SNAP_DATA, &b, 8, 1);
    /* a chunk announcing more than SNAPSHOT_CHUNK_MAX is refused before any
     * decompression */
    b.len = 0;
    in.raw_len = SNAPSHOT_CHUNK_MAX + 1;
    assert_int_equal(msg_snap_data_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(decode_copy(dec_snap_data, &out, MSG_SNAP_DATA, b.data, b.len, &e),
                     SYNC_ELIMIT);
    assert_non_null(strstr(e.msg, "snapshot chunk"));
    buf_free(&b);
}

static void test_snap_end(void **state)
{
    struct msg_snap_end in = {.rows = 3, .bytes = 0x1122334455ull}, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_snap_end_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 16);
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_snap_end, &out, MSG_SNAP_END, b.data, b.len, &e), SYNC_OK);
    assert_true(out.rows == 3 && out.bytes == 0x1122334455ull);
    refuse_damage(dec_snap_end, MSG_SNAP_END, &b, b.len, 0);
    buf_free(&b);
}

static void test_error(void **state)
{
    static const char sentence[] = "hub refused push: schema 3f2a differs from hub's 91c0";
    struct msg_error out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    assert_int_equal(msg_error_encode(&b, WERR_SCHEMA, sentence, &e), SYNC_OK);
    assert_int_equal(b.len, 2 + 2 + strlen(sentence));
    assert_memory_equal(b.data, "\x00\x02", 2);
    assert_int_equal((b.data[2] << 8) | b.data[3], strlen(sentence));
    memset(&out, 0, sizeof(out));
    assert_int_equal(decode_copy(dec_error, &out, MSG_ERROR, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.code, WERR_SCHEMA);
    assert_string_equal(out.msg, sentence);
    refuse_damage(dec_error, MSG_ERROR, &b, b.len, 0);
    buf_free(&b);
}

static void test_error_limits_and_control_chars(void **state)
{
    char longmsg[WIRE_MSG_MAX + 100];
    struct msg_error out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    /* The encoder cuts a long sentence to WIRE_MSG_MAX. */
    memset(longmsg, 'x', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    assert_int_equal(msg_error_encode(&b, WERR_INTERNAL, longmsg, &e), SYNC_OK);
    assert_int_equal(b.len, 4 + WIRE_MSG_MAX);
    assert_int_equal(decode_copy(dec_error, &out, MSG_ERROR, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(strlen(out.msg), WIRE_MSG_MAX);

    /* A peer that sends more is refused. */
    b.len = 0;
    assert_int_equal(buf_put_u16(&b, 7, &e), SYNC_OK);
    assert_int_equal(buf_put_str(&b, longmsg, &e), SYNC_OK);
    assert_int_not_equal(decode_copy(dec_error, &out, MSG_ERROR, b.data, b.len, &e), SYNC_OK);

    /* Control characters (a terminal escape, a fake log line) become '?'. */
    b.len = 0;
    assert_int_equal(buf_put_u16(&b, 3, &e), SYNC_OK);
    assert_int_equal(buf_put_str(&b,
                                 "bad\x1b[31mred\nFAKE LOG\r\ttab\x7f"
                                 "end\x01\xc3\xa9",
                                 &e),
                     SYNC_OK);
    assert_int_equal(decode_copy(dec_error, &out, MSG_ERROR, b.data, b.len, &e), SYNC_OK);
    assert_int_equal(out.code, 3);
    assert_string_equal(out.msg, "bad?[31mred?FAKE LOG??tab?end?\xc3\xa9");

    /* An embedded NUL is refused, not cut short. */
    b.len = 0;
    assert_int_equal(buf_put_u16(&b, 3, &e), SYNC_OK);
    assert_int_equal(buf_put_u16(&b, 3, &e), SYNC_OK);
    assert_int_equal(buf_put(&b, "a\0b", 3, &e), SYNC_OK);
    assert_int_equal(decode_copy(dec_error, &out, MSG_ERROR, b.data, b.len, &e), SYNC_EPROTO);
    buf_free(&b);
}

static void test_own_version(void **state)
{
    struct msg_version in, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    memset(&in, 0, sizeof(in));
    in.seq = 43;
    in.time = 1767225600;
    fill(in.commit, OID_RAW_LEN, 5);
    fill(in.tree, OID_RAW_LEN, 50);
    assert_int_equal(msg_own_version_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 8 + 20 + 20 + 8);
    memset(&out, 0xee, sizeof(out));
    assert_int_equal(decode_copy(dec_own_version, &out, MSG_OWN_VERSION, b.data, b.len, &e),
                     SYNC_OK);
    assert_true(out.seq == 43 && out.time == 1767225600);
    assert_memory_equal(out.commit, in.commit, 20);
    assert_memory_equal(out.tree, in.tree, 20);
    assert_string_equal(out.author, "");
    assert_true(out.raw_len == 0 && out.z == NULL && out.zlen == 0);
    refuse_damage(dec_own_version, MSG_OWN_VERSION, &b, b.len, 0);
    buf_free(&b);
}

static void test_dict(void **state)
{
    uint8_t bytes[ZDICT_SIZE_MIN + 10];
    struct msg_dict in = {0x01020304, bytes, sizeof(bytes)}, out;
    struct buf b = {0};
    struct errctx e = {0};

    (void)state;
    fill(bytes, sizeof(bytes), 9);
    assert_int_equal(msg_dict_encode(&b, &in, &e), SYNC_OK);
    assert_int_equal(b.len, 4 + sizeof(bytes));
    assert_int_equal(decode_copy(dec_dict, &out, MSG_DICT, b.data, b.len, &e), SYNC_OK);
    assert_true(out.id == 0x01020304 && out.n == sizeof(bytes)); /* bytes: borrowed, gone */
    refuse_damage(dec_dict, MSG_DICT, &b, 4 + ZDICT_SIZE_MIN, 1);
    /* id 0 and a dictionary too large are refused */
    memset(b.data, 0, 4);
    assert_int_equal(decode_copy(dec_dict, &out, MSG_DICT, b.data, b.len, &e), SYNC_EPROTO);
    {
        size_t n = 4 + ZDICT_SIZE_MAX + 1;
        uint8_t *big = calloc(1, n);
        assert_non_null(big);
        big[3] = 1;
        assert_int_equal(decode_copy(dec_dict, &out, MSG_DICT, big, n, &e), SYNC_EPROTO);
        assert_non_null(strstr(e.msg, "outside"));
        free(big);
    }
    buf_free(&b);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(msg_type_name(MSG_HELLO), "HELLO");
    assert_string_equal(msg_type_name(MSG_PUSH), "PUSH");
    assert_string_equal(msg_type_name(MSG_PULL_END), "PULL_END");
    assert_string_equal(msg_type_name(MSG_SNAPSHOT), "SNAPSHOT");
    assert_string_equal(msg_type_name(MSG_SNAP_DATA), "SNAP_DATA");
    assert_string_equal(msg_type_name(MSG_ERROR), "ERROR");
    assert_string_equal(msg_type_name(MSG_OWN_VERSION), "OWN_VERSION");
    assert_string_equal(msg_type_name(MSG_DICT_GET), "DICT_GET");
    assert_string_equal(msg_type_name(MSG_DICT), "DICT");
    assert_string_equal(msg_type_name(0x55), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),      cmocka_unit_test(test_welcome),
        cmocka_unit_test(test_push),       cmocka_unit_test(test_push_raw_len_limit),
        cmocka_unit_test(test_push_ok),    cmocka_unit_test(test_pull),
        cmocka_unit_test(test_conflict),   cmocka_unit_test(test_version),
        cmocka_unit_test(test_pull_end),   cmocka_unit_test(test_snap_head),
        cmocka_unit_test(test_snap_data),  cmocka_unit_test(test_snap_end),
        cmocka_unit_test(test_error),      cmocka_unit_test(test_error_limits_and_control_chars),
        cmocka_unit_test(test_type_names), cmocka_unit_test(test_own_version),
        cmocka_unit_test(test_dict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
