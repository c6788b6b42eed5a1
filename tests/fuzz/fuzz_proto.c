/*
 * fuzz_proto.c - libFuzzer target for the decoders of every protocol message.
 *
 * The first input byte is a frame type, the rest the payload.  The payload is
 * handed to every decoder of common/proto.c (each one seeing a frame of its own
 * type, so every decoder parses every input), then again with the type the
 * input names: every decoder but that type's must refuse it.
 * A message that decodes is encoded again: for every message but ERROR the
 * bytes must come back unchanged (decoders consume the payload exactly);
 * ERROR replaces control characters in the sentence, so its re-encoding must
 * decode to the same message; a HELLO or WELCOME of protocol 3 (no dictionary
 * field) re-encodes with the field added, as zero.  A refusal must carry SYNC_EPROTO or
 * SYNC_ELIMIT and a sentence.  Any broken invariant aborts.
 *
 * fuzz-sources: common/proto.c common/frame.c common/buf.c common/errctx.c
 * fuzz-pkgs:
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"
#include "proto.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_proto: invariant failed at line %d: %s\n", __LINE__, #c);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The frame's payload must come back from the encoder byte for byte. */
static void check_same(const struct frame *f, const struct buf *b)
{
    CHECK(b->len == f->len);
    CHECK(b->len == 0 || memcmp(b->data, f->payload, b->len) == 0);
}

/* A protocol-3 HELLO or WELCOME: the payload, then the dictionary id 0. */
static void check_same_older(const struct frame *f, const struct buf *b, uint16_t proto)
{
    if (proto >= 4 || b->len != f->len + 4) {
        check_same(f, b);
        return;
    }
    CHECK(memcmp(b->data, f->payload, f->len) == 0);
    CHECK(memcmp(b->data + f->len, "\0\0\0\0", 4) == 0);
}

static void check_refusal(int rc, const struct errctx *e)
{
    CHECK(rc == SYNC_EPROTO || rc == SYNC_ELIMIT);
    CHECK(e->code == rc && e->msg[0] != '\0');
}

/* Decodes f as type t and re-encodes it; returns the decoder's result. */
static int decode_one(const struct frame *f, uint8_t t)
{
    struct errctx e = {0};
    struct buf b = {0};
    int rc;

    switch (t) {
    case MSG_HELLO: {
        struct msg_hello m;
        if ((rc = msg_hello_decode(&m, f, &e)) == SYNC_OK) {
            CHECK(msg_hello_encode(&b, &m, &e) == SYNC_OK);
            check_same_older(f, &b, m.proto);
            buf_free(&b);
            return rc;
        }
        break;
    }
    case MSG_WELCOME: {
        struct msg_welcome m;
        if ((rc = msg_welcome_decode(&m, f, &e)) == SYNC_OK) {
            CHECK(msg_welcome_encode(&b, &m, &e) == SYNC_OK);
            check_same_older(f, &b, m.proto);
            buf_free(&b);
            return rc;
        }
        break;
    }
    case MSG_OWN_VERSION: {
        struct msg_version m;
        if ((rc = msg_own_version_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_own_version_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    case MSG_DICT: {
        struct msg_dict m;
        if ((rc = msg_dict_decode(&m, f, &e)) == SYNC_OK) {
            CHECK(m.id != 0 && m.n >= ZDICT_SIZE_MIN && m.n <= ZDICT_SIZE_MAX);
            CHECK(m.bytes + m.n == f->payload + f->len);
            CHECK(msg_dict_encode(&b, &m, &e) == SYNC_OK);
        }
        break;
    }
    case MSG_PUSH: {
        struct msg_push m;
        if ((rc = msg_push_decode(&m, f, &e)) == SYNC_OK) {
            CHECK(m.raw_len <= CHANGESET_MAX);
            CHECK(m.zlen == 0 || (m.z >= f->payload && m.z + m.zlen == f->payload + f->len));
            CHECK(msg_push_encode(&b, &m, &e) == SYNC_OK);
        }
        break;
    }
    case MSG_PUSH_OK: {
        struct msg_push_ok m;
        if ((rc = msg_push_ok_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_push_ok_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    case MSG_PULL: {
        struct msg_pull m;
        if ((rc = msg_pull_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_pull_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    case MSG_VERSION: {
        struct msg_version m;
        if ((rc = msg_version_decode(&m, f, &e)) == SYNC_OK) {
            CHECK(m.raw_len <= CHANGESET_MAX);
            CHECK(strlen(m.author) < sizeof(m.author));
            CHECK(msg_version_encode(&b, &m, &e) == SYNC_OK);
        }
        break;
    }
    case MSG_PULL_END: {
        struct msg_pull_end m;
        if ((rc = msg_pull_end_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_pull_end_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    case MSG_CONFLICT: {
        struct msg_conflict m;
        if ((rc = msg_conflict_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_conflict_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    case MSG_SNAP_HEAD: {
        struct msg_snap_head m;
        if ((rc = msg_snap_head_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_snap_head_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    case MSG_SNAP_DATA: {
        struct msg_snap_data m;
        if ((rc = msg_snap_data_decode(&m, f, &e)) == SYNC_OK) {
            CHECK(m.raw_len <= SNAPSHOT_CHUNK_MAX);
            CHECK(m.zlen == 0 || (m.z >= f->payload && m.z + m.zlen == f->payload + f->len));
            CHECK(msg_snap_data_encode(&b, &m, &e) == SYNC_OK);
        }
        break;
    }
    case MSG_SNAP_END: {
        struct msg_snap_end m;
        if ((rc = msg_snap_end_decode(&m, f, &e)) == SYNC_OK)
            CHECK(msg_snap_end_encode(&b, &m, &e) == SYNC_OK);
        break;
    }
    default: { /* MSG_ERROR */
        struct msg_error m, again;
        struct frame g;
        if ((rc = msg_error_decode(&m, f, &e)) != SYNC_OK) {
            check_refusal(rc, &e);
            return rc;
        }
        for (const char *c = m.msg; *c; c++)
            CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
        CHECK(msg_error_encode(&b, m.code, m.msg, &e) == SYNC_OK);
        g.type = MSG_ERROR;
        g.len = (uint32_t)b.len;
        g.payload = b.data;
        CHECK(msg_error_decode(&again, &g, &e) == SYNC_OK);
        CHECK(again.code == m.code && strcmp(again.msg, m.msg) == 0);
        buf_free(&b);
        return rc;
    }
    }
    if (rc == SYNC_OK)
        check_same(f, &b);
    else
        check_refusal(rc, &e);
    buf_free(&b);
    return rc;
}

static const uint8_t types[] = {MSG_HELLO,     MSG_WELCOME,   MSG_PUSH,     MSG_PUSH_OK,
                                MSG_PULL,      MSG_VERSION,   MSG_PULL_END, MSG_CONFLICT,
                                MSG_SNAP_HEAD, MSG_SNAP_DATA, MSG_SNAP_END, MSG_OWN_VERSION,
                                MSG_DICT,      MSG_ERROR};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct frame f;
    uint8_t *payload;

    if (size < 1)
        return 0;
    /* A copy of exactly the payload's size (and the NUL frame.c adds), so a
     * read past it is caught by ASan. */
    if ((payload = malloc(size)) == NULL)
        return 0;
    memcpy(payload, data + 1, size - 1);
    payload[size - 1] = '\0';
    f.len = (uint32_t)(size - 1);
    f.payload = payload;
    for (size_t i = 0; i < sizeof(types); i++) {
        f.type = types[i];
        (void)decode_one(&f, types[i]);
    }
    /* The type as given: every decoder but its own must refuse the frame. */
    f.type = data[0];
    for (size_t i = 0; i < sizeof(types); i++) {
        int rc = decode_one(&f, types[i]);
        CHECK(types[i] == data[0] || rc == SYNC_EPROTO);
    }
    CHECK(msg_type_name(data[0]) != NULL);
    free(payload);
    return 0;
}
