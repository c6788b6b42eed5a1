/*
 * proto.c - encoders and decoders for the sync protocol's messages.
 *
 * Layouts are written out in proto.h.  Decoders take a whole frame, check
 * its type, read every field through the bounded buf_reader and insist the
 * payload is consumed exactly, so a message with trailing bytes is refused.
 */
#include "proto.h"

#include <stdio.h>
#include <string.h>

static int expect(const struct frame *f, uint8_t type, struct errctx *e)
{
    if (f->type != type)
        return errctx_set(e, SYNC_EPROTO, "expected a %s message, got %s (0x%02x)",
                          msg_type_name(type), msg_type_name(f->type), f->type);
    return SYNC_OK;
}

int msg_hello_encode(struct buf *out, const struct msg_hello *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u16(out, m->proto, e)) != 0 ||
        (rc = buf_put(out, m->schema, sizeof(m->schema), e)) != 0)
        return rc;
    return buf_put_u32(out, m->dict, e);
}

int msg_hello_decode(struct msg_hello *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    const uint8_t *p;
    int rc;

    if ((rc = expect(f, MSG_HELLO, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u16(&r, &m->proto, e)) != 0 ||
        (rc = buf_get_bytes(&r, &p, sizeof(m->schema), e)) != 0)
        return rc;
    memcpy(m->schema, p, sizeof(m->schema));
    m->dict = 0;
    /* a HELLO of protocol 3 ends here: decoded, so that the hub can answer
     * with PROTO_VERSION rather than BAD_FRAME */
    if (m->proto < 4 && r.left == 0)
        return SYNC_OK;
    if ((rc = buf_get_u32(&r, &m->dict, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_welcome_encode(struct buf *out, const struct msg_welcome *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u16(out, m->proto, e)) != 0 || (rc = buf_put_u64(out, m->head, e)) != 0)
        return rc;
    return buf_put_u32(out, m->dict, e);
}

int msg_welcome_decode(struct msg_welcome *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_WELCOME, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u16(&r, &m->proto, e)) != 0 || (rc = buf_get_u64(&r, &m->head, e)) != 0)
        return rc;
    m->dict = 0;
    if (m->proto < 4 && r.left == 0) /* an older hub: the caller refuses it by proto */
        return SYNC_OK;
    if ((rc = buf_get_u32(&r, &m->dict, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_push_encode(struct buf *out, const struct msg_push *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put(out, m->push_id, PUSH_ID_LEN, e)) != 0 ||
        (rc = buf_put_u64(out, m->base, e)) != 0 || (rc = buf_put_u32(out, m->raw_len, e)) != 0 ||
        (rc = buf_put_u32(out, m->ntimes, e)) != 0)
        return rc;
    return buf_put(out, m->z, m->zlen, e);
}

int msg_push_decode(struct msg_push *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    const uint8_t *p;
    int rc;

    if ((rc = expect(f, MSG_PUSH, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_bytes(&r, &p, PUSH_ID_LEN, e)) != 0)
        return rc;
    memcpy(m->push_id, p, PUSH_ID_LEN);
    if ((rc = buf_get_u64(&r, &m->base, e)) != 0 || (rc = buf_get_u32(&r, &m->raw_len, e)) != 0 ||
        (rc = buf_get_u32(&r, &m->ntimes, e)) != 0)
        return rc;
    if (m->raw_len > CHANGESET_MAX)
        return errctx_set(e, SYNC_ELIMIT, "pushed changeset of %u bytes exceeds the limit of %u",
                          m->raw_len, CHANGESET_MAX);
    if (m->ntimes > m->raw_len / 8)
        return errctx_set(e, SYNC_EPROTO,
                          "push announces %u edit times but only %u bytes with its changeset",
                          m->ntimes, m->raw_len);
    m->times = NULL; /* inside the compressed payload: the receiver points it there */
    m->zlen = (uint32_t)r.left;
    return buf_get_bytes(&r, &m->z, r.left, e);
}

int msg_push_ok_encode(struct buf *out, const struct msg_push_ok *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->version, e)) != 0 || (rc = buf_put_u8(out, m->duplicate, e)) ||
        (rc = buf_put_u32(out, m->applied, e)) != 0)
        return rc;
    return buf_put_u32(out, m->overridden, e);
}

int msg_push_ok_decode(struct msg_push_ok *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_PUSH_OK, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u64(&r, &m->version, e)) != 0 ||
        (rc = buf_get_u8(&r, &m->duplicate, e)) != 0 ||
        (rc = buf_get_u32(&r, &m->applied, e)) != 0 ||
        (rc = buf_get_u32(&r, &m->overridden, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_pull_encode(struct buf *out, const struct msg_pull *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->since, e)) != 0 ||
        (rc = buf_put_u64(out, m->conflicts_since, e)) != 0)
        return rc;
    return buf_put_u64(out, m->own, e);
}

int msg_pull_decode(struct msg_pull *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_PULL, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u64(&r, &m->since, e)) != 0 ||
        (rc = buf_get_u64(&r, &m->conflicts_since, e)) != 0 ||
        (rc = buf_get_u64(&r, &m->own, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

static int put_b32(struct buf *out, const uint8_t *p, uint32_t n, struct errctx *e)
{
    int rc = buf_put_u32(out, n, e);
    return rc ? rc : buf_put(out, p, n, e);
}

static int get_b32(struct buf_reader *r, const uint8_t **p, uint32_t *n, struct errctx *e)
{
    int rc = buf_get_u32(r, n, e);
    return rc ? rc : buf_get_bytes(r, p, *n, e);
}

int msg_conflict_encode(struct buf *out, const struct msg_conflict *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->id, e)) != 0 || (rc = buf_put_u64(out, m->version, e)) != 0 ||
        (rc = buf_put_str(out, m->table, e)) != 0 || (rc = buf_put_str(out, m->column, e)) != 0 ||
        (rc = buf_put_str(out, m->kind, e)) != 0 || (rc = buf_put_str(out, m->winner, e)) != 0 ||
        (rc = buf_put_u64(out, m->lost_at, e)) != 0 || (rc = buf_put_u64(out, m->won_at, e)) != 0 ||
        (rc = put_b32(out, m->key, m->nkey, e)) != 0 ||
        (rc = put_b32(out, m->lost, m->nlost, e)) != 0)
        return rc;
    return put_b32(out, m->kept, m->nkept, e);
}

int msg_conflict_decode(struct msg_conflict *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_CONFLICT, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u64(&r, &m->id, e)) != 0 || (rc = buf_get_u64(&r, &m->version, e)) != 0 ||
        (rc = buf_get_str(&r, m->table, sizeof(m->table) - 1, e)) != 0 ||
        (rc = buf_get_str(&r, m->column, sizeof(m->column) - 1, e)) != 0 ||
        (rc = buf_get_str(&r, m->kind, sizeof(m->kind) - 1, e)) != 0 ||
        (rc = buf_get_str(&r, m->winner, sizeof(m->winner) - 1, e)) != 0 ||
        (rc = buf_get_u64(&r, &m->lost_at, e)) != 0 || (rc = buf_get_u64(&r, &m->won_at, e)) != 0 ||
        (rc = get_b32(&r, &m->key, &m->nkey, e)) != 0 ||
        (rc = get_b32(&r, &m->lost, &m->nlost, e)) != 0 ||
        (rc = get_b32(&r, &m->kept, &m->nkept, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

/* seq, commit, tree, time: the head VERSION and OWN_VERSION share. */
static int put_version_head(struct buf *out, const struct msg_version *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->seq, e)) != 0 || (rc = buf_put(out, m->commit, 20, e)) != 0 ||
        (rc = buf_put(out, m->tree, 20, e)) != 0)
        return rc;
    return buf_put_u64(out, m->time, e);
}

static int get_version_head(struct buf_reader *r, struct msg_version *m, struct errctx *e)
{
    const uint8_t *p;
    int rc;

    if ((rc = buf_get_u64(r, &m->seq, e)) != 0 || (rc = buf_get_bytes(r, &p, 20, e)) != 0)
        return rc;
    memcpy(m->commit, p, 20);
    if ((rc = buf_get_bytes(r, &p, 20, e)) != 0)
        return rc;
    memcpy(m->tree, p, 20);
    return buf_get_u64(r, &m->time, e);
}

int msg_version_encode(struct buf *out, const struct msg_version *m, struct errctx *e)
{
    int rc;
    if ((rc = put_version_head(out, m, e)) != 0 || (rc = buf_put_str(out, m->author, e)) != 0 ||
        (rc = buf_put_u32(out, m->raw_len, e)) != 0)
        return rc;
    return buf_put(out, m->z, m->zlen, e);
}

int msg_version_decode(struct msg_version *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_VERSION, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = get_version_head(&r, m, e)) != 0 ||
        (rc = buf_get_str(&r, m->author, sizeof(m->author) - 1, e)) != 0 ||
        (rc = buf_get_u32(&r, &m->raw_len, e)) != 0)
        return rc;
    if (m->raw_len > CHANGESET_MAX)
        return errctx_set(e, SYNC_ELIMIT, "version changeset of %u bytes exceeds the limit of %u",
                          m->raw_len, CHANGESET_MAX);
    m->zlen = (uint32_t)r.left;
    return buf_get_bytes(&r, &m->z, r.left, e);
}

int msg_own_version_encode(struct buf *out, const struct msg_version *m, struct errctx *e)
{
    return put_version_head(out, m, e);
}

int msg_own_version_decode(struct msg_version *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_OWN_VERSION, e)) != 0)
        return rc;
    memset(m, 0, sizeof(*m));
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = get_version_head(&r, m, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_dict_encode(struct buf *out, const struct msg_dict *m, struct errctx *e)
{
    int rc = buf_put_u32(out, m->id, e);
    return rc ? rc : buf_put(out, m->bytes, m->n, e);
}

int msg_dict_decode(struct msg_dict *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_DICT, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u32(&r, &m->id, e)) != 0)
        return rc;
    if (m->id == 0)
        return errctx_set(e, SYNC_EPROTO, "DICT: dictionary id 0");
    if (r.left < ZDICT_SIZE_MIN || r.left > ZDICT_SIZE_MAX)
        return errctx_set(e, SYNC_EPROTO, "DICT: a dictionary of %zu bytes is outside %u..%u",
                          (size_t)r.left, ZDICT_SIZE_MIN, ZDICT_SIZE_MAX);
    m->n = (uint32_t)r.left;
    return buf_get_bytes(&r, &m->bytes, r.left, e);
}

int msg_pull_end_encode(struct buf *out, const struct msg_pull_end *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->head, e)) != 0 || (rc = buf_put(out, m->tree, 20, e)) != 0)
        return rc;
    return buf_put_u8(out, m->more, e);
}

int msg_pull_end_decode(struct msg_pull_end *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    const uint8_t *p;
    int rc;

    if ((rc = expect(f, MSG_PULL_END, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u64(&r, &m->head, e)) != 0 || (rc = buf_get_bytes(&r, &p, 20, e)) != 0)
        return rc;
    memcpy(m->tree, p, 20);
    if ((rc = buf_get_u8(&r, &m->more, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_snap_head_encode(struct buf *out, const struct msg_snap_head *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->version, e)) != 0 || (rc = buf_put(out, m->tree, 20, e)) != 0 ||
        (rc = buf_put_u64(out, m->rows, e)) != 0)
        return rc;
    return buf_put_u32(out, m->tables, e);
}

int msg_snap_head_decode(struct msg_snap_head *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    const uint8_t *p;
    int rc;

    if ((rc = expect(f, MSG_SNAP_HEAD, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u64(&r, &m->version, e)) != 0 || (rc = buf_get_bytes(&r, &p, 20, e)) != 0)
        return rc;
    memcpy(m->tree, p, 20);
    if ((rc = buf_get_u64(&r, &m->rows, e)) != 0 || (rc = buf_get_u32(&r, &m->tables, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_snap_data_encode(struct buf *out, const struct msg_snap_data *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u32(out, m->rows, e)) != 0 || (rc = buf_put_u32(out, m->raw_len, e)) != 0)
        return rc;
    return buf_put(out, m->z, m->zlen, e);
}

int msg_snap_data_decode(struct msg_snap_data *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_SNAP_DATA, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u32(&r, &m->rows, e)) != 0 || (rc = buf_get_u32(&r, &m->raw_len, e)) != 0)
        return rc;
    if (m->raw_len > SNAPSHOT_CHUNK_MAX)
        return errctx_set(e, SYNC_ELIMIT, "snapshot chunk of %u bytes exceeds the limit of %u",
                          m->raw_len, SNAPSHOT_CHUNK_MAX);
    m->zlen = (uint32_t)r.left;
    return buf_get_bytes(&r, &m->z, r.left, e);
}

int msg_snap_end_encode(struct buf *out, const struct msg_snap_end *m, struct errctx *e)
{
    int rc;
    if ((rc = buf_put_u64(out, m->rows, e)) != 0)
        return rc;
    return buf_put_u64(out, m->bytes, e);
}

int msg_snap_end_decode(struct msg_snap_end *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_SNAP_END, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u64(&r, &m->rows, e)) != 0 || (rc = buf_get_u64(&r, &m->bytes, e)) != 0)
        return rc;
    return buf_reader_done(&r, e);
}

int msg_error_encode(struct buf *out, uint16_t code, const char *msg, struct errctx *e)
{
    char cut[WIRE_MSG_MAX + 1];
    int rc;

    snprintf(cut, sizeof(cut), "%s", msg);
    if (strlen(msg) >= sizeof(cut)) {
        /* do not end inside a UTF-8 sequence: drop trailing continuation
         * bytes and the lead byte they belong to */
        size_t n = strlen(cut);
        while (n > 0 && ((unsigned char)cut[n - 1] & 0xc0) == 0x80)
            n--;
        if (n > 0 && ((unsigned char)cut[n - 1] & 0x80))
            n--;
        cut[n] = '\0';
    }
    if ((rc = buf_put_u16(out, code, e)) != 0)
        return rc;
    return buf_put_str(out, cut, e);
}

int msg_error_decode(struct msg_error *m, const struct frame *f, struct errctx *e)
{
    struct buf_reader r;
    int rc;

    if ((rc = expect(f, MSG_ERROR, e)) != 0)
        return rc;
    buf_reader_init(&r, f->payload, f->len);
    if ((rc = buf_get_u16(&r, &m->code, e)) != 0 ||
        (rc = buf_get_str(&r, m->msg, WIRE_MSG_MAX, e)) != 0)
        return rc;
    for (char *c = m->msg; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?'; /* the sentence goes to a terminal or a log */
    }
    return buf_reader_done(&r, e);
}

int msg_send(struct frame_io *io, uint8_t type, const struct buf *payload, struct errctx *e)
{
    return frame_write(io, type, payload ? payload->data : NULL, payload ? payload->len : 0, e);
}

void msg_send_error(struct frame_io *io, uint16_t code, const char *msg)
{
    struct buf b = {0};
    struct errctx ignored;

    if (msg_error_encode(&b, code, msg, &ignored) == 0)
        (void)!msg_send(io, MSG_ERROR, &b, &ignored);
    buf_free(&b);
}

const char *msg_type_name(uint8_t type)
{
    switch (type) {
    case MSG_HELLO:
        return "HELLO";
    case MSG_WELCOME:
        return "WELCOME";
    case MSG_PUSH:
        return "PUSH";
    case MSG_PUSH_OK:
        return "PUSH_OK";
    case MSG_PULL:
        return "PULL";
    case MSG_VERSION:
        return "VERSION";
    case MSG_PULL_END:
        return "PULL_END";
    case MSG_OWN_VERSION:
        return "OWN_VERSION";
    case MSG_DICT_GET:
        return "DICT_GET";
    case MSG_DICT:
        return "DICT";
    case MSG_BYE:
        return "BYE";
    case MSG_SNAPSHOT:
        return "SNAPSHOT";
    case MSG_SNAP_HEAD:
        return "SNAP_HEAD";
    case MSG_SNAP_DATA:
        return "SNAP_DATA";
    case MSG_SNAP_END:
        return "SNAP_END";
    case MSG_ERROR:
        return "ERROR";
    default:
        return "unknown";
    }
}
