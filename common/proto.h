/*
 * proto.h - the sync protocol's messages (see common/PROTOCOL.md).
 *
 * Each message is one frame (frame.h); its payload layout, all integers
 * big-endian, strings as u16 length + bytes:
 *
 *   HELLO      0x01  u16 proto, 32B schema fingerprint,
 *                    u32 dictionary id (0: none)                     site -> hub
 *   WELCOME    0x02  u16 proto, u64 head version,
 *                    u32 newest dictionary id (0: none)              hub -> site
 *   PUSH       0x10  32B push id, u64 base version, u32 raw length,
 *                    u32 n, zstd(n x u64 edit time (ms) || changeset);
 *                    raw length = 8n + changeset length            site -> hub
 *   PUSH_OK    0x11  u64 version (0: nothing applied), u8 duplicate,
 *                    u32 changes applied, u32 changes overridden      hub -> site
 *   PULL       0x20  u64 since, u64 conflicts since, u64 own version
 *                    (0: none)                                       site -> hub
 *   VERSION    0x21  u64 seq, 20B commit id, 20B tree id, u64 time,
 *                    str author site, u32 raw length, zstd changeset hub -> site
 *   CONFLICT   0x23  u64 id, u64 version, str table, str column, str kind,
 *                    str winner, u64 lost at, u64 won at, b32 row key,
 *                    b32 lost value, b32 kept value                 hub -> site
 *   PULL_END   0x22  u64 head version, 20B tree id, u8 more           hub -> site
 *   OWN_VERSION 0x24 u64 seq, 20B commit id, 20B tree id, u64 time    hub -> site
 *   BYE        0x30  (empty)                                         site -> hub
 *   SNAPSHOT   0x40  (empty)                                         site -> hub
 *   SNAP_HEAD  0x41  u64 version, 20B tree id, u64 rows, u32 tables   hub -> site
 *   SNAP_DATA  0x42  u32 rows, u32 raw length, zstd changeset of
 *                    inserts                                         hub -> site
 *   SNAP_END   0x43  u64 rows, u64 raw bytes (totals sent)           hub -> site
 *   DICT_GET   0x50  (empty)                                         site -> hub
 *   DICT       0x51  u32 dictionary id, dictionary bytes (rest)      hub -> site
 *   ERROR      0x7f  u16 code, str sentence                          either way
 * (b32: u32 length + bytes.)
 */
#ifndef EMPACT_PROTO_H
#define EMPACT_PROTO_H

#include <stdint.h>

#include "buf.h"
#include "errctx.h"
#include "frame.h"

#define PROTO_VERSION 5

enum msg_type {
    MSG_HELLO = 0x01,
    MSG_WELCOME = 0x02,
    MSG_PUSH = 0x10,
    MSG_PUSH_OK = 0x11,
    MSG_PULL = 0x20,
    MSG_VERSION = 0x21,
    MSG_PULL_END = 0x22,
    MSG_CONFLICT = 0x23,
    MSG_OWN_VERSION = 0x24,
    MSG_BYE = 0x30,
    MSG_SNAPSHOT = 0x40,
    MSG_SNAP_HEAD = 0x41,
    MSG_SNAP_DATA = 0x42,
    MSG_SNAP_END = 0x43,
    MSG_DICT_GET = 0x50,
    MSG_DICT = 0x51,
    MSG_ERROR = 0x7f,
};

/* Error codes carried in ERROR frames. */
enum wire_err {
    WERR_PROTO_VERSION = 1,  /* protocol versions differ */
    WERR_SCHEMA = 2,         /* schema fingerprints differ */
    WERR_NOT_AUTHORISED = 3, /* site unknown, revoked or certificate replaced */
    WERR_PUSH_REFUSED = 4,   /* the push breaks a table-class rule or the schema */
    WERR_BAD_FRAME = 5,      /* malformed or unexpected frame */
    WERR_TOO_LARGE = 6,      /* a length over a limit */
    WERR_INTERNAL = 7,       /* the hub failed; retry later */
    WERR_BASE_AHEAD = 8,     /* the site claims a version the hub does not have */
};

#define OID_RAW_LEN 20
#define PUSH_ID_LEN 32

struct msg_hello {
    uint16_t proto;
    uint8_t schema[32];
    uint32_t dict; /* the site's dictionary, 0: none (and in an older HELLO) */
};

struct msg_welcome {
    uint16_t proto;
    uint64_t head;
    uint32_t dict; /* the hub's newest dictionary, 0: none */
};

struct msg_push {
    uint8_t push_id[PUSH_ID_LEN];
    uint64_t base;
    uint32_t raw_len;     /* of the compressed payload: 8 x ntimes + changeset */
    uint32_t ntimes;      /* one edit time per change, in changeset order */
    const uint8_t *times; /* ntimes x u64 big-endian, the payload's start once
                             decompressed (the decoder leaves it NULL); borrowed */
    const uint8_t *z;     /* borrowed from the frame */
    uint32_t zlen;
};

struct msg_pull {
    uint64_t since;
    uint64_t conflicts_since;
    uint64_t own; /* a version made of this site's push applied as sent: the
                     hub may send it as OWN_VERSION, without its changeset */
};

/* One entry of the hub's conflict log, for the site whose input lost. */
struct msg_conflict {
    uint64_t id;
    uint64_t version; /* the version that decided it; 0 if the push made none */
    char table[64];
    char column[64]; /* "" for a whole row */
    char kind[32];
    char winner[SITE_ID_MAX + 8];
    uint64_t lost_at; /* edit times, ms since the epoch */
    uint64_t won_at;
    const uint8_t *key; /* borrowed byte strings */
    uint32_t nkey;
    const uint8_t *lost;
    uint32_t nlost;
    const uint8_t *kept;
    uint32_t nkept;
};

struct msg_push_ok {
    uint64_t version;
    uint8_t duplicate;
    uint32_t applied;
    uint32_t overridden;
};

struct msg_version {
    uint64_t seq;
    uint8_t commit[OID_RAW_LEN];
    uint8_t tree[OID_RAW_LEN];
    uint64_t time;
    char author[SITE_ID_MAX + 8];
    uint32_t raw_len;
    const uint8_t *z; /* borrowed from the frame */
    uint32_t zlen;
};

/* A dictionary sent to a site (DICT). */
struct msg_dict {
    uint32_t id;
    const uint8_t *bytes; /* borrowed from the frame */
    uint32_t n;
};

struct msg_pull_end {
    uint64_t head;
    uint8_t tree[OID_RAW_LEN];
    uint8_t more;
};

/* A snapshot of the replicated tables at one version (a new site's join). */
struct msg_snap_head {
    uint64_t version;
    uint8_t tree[OID_RAW_LEN];
    uint64_t rows;   /* rows in all the snapshot's SNAP_DATA frames */
    uint32_t tables; /* replicated tables it covers */
};

struct msg_snap_data {
    uint32_t rows;    /* inserts in the changeset */
    uint32_t raw_len; /* changeset length before compression */
    const uint8_t *z; /* borrowed from the frame */
    uint32_t zlen;
};

struct msg_snap_end {
    uint64_t rows;  /* rows sent in all SNAP_DATA frames */
    uint64_t bytes; /* raw changeset bytes sent in all SNAP_DATA frames */
};

struct msg_error {
    uint16_t code;
    char msg[WIRE_MSG_MAX + 1];
};

/* Encoders append the payload to out; the caller sends it with frame_write. */
int msg_hello_encode(struct buf *out, const struct msg_hello *m, struct errctx *e) SYNC_WUR;
int msg_welcome_encode(struct buf *out, const struct msg_welcome *m, struct errctx *e) SYNC_WUR;
int msg_push_encode(struct buf *out, const struct msg_push *m, struct errctx *e) SYNC_WUR;
int msg_push_ok_encode(struct buf *out, const struct msg_push_ok *m, struct errctx *e) SYNC_WUR;
int msg_pull_encode(struct buf *out, const struct msg_pull *m, struct errctx *e) SYNC_WUR;
int msg_conflict_encode(struct buf *out, const struct msg_conflict *m, struct errctx *e) SYNC_WUR;
int msg_version_encode(struct buf *out, const struct msg_version *m, struct errctx *e) SYNC_WUR;
/* OWN_VERSION uses seq, commit, tree and time of struct msg_version. */
int msg_own_version_encode(struct buf *out, const struct msg_version *m, struct errctx *e) SYNC_WUR;
int msg_dict_encode(struct buf *out, const struct msg_dict *m, struct errctx *e) SYNC_WUR;
int msg_pull_end_encode(struct buf *out, const struct msg_pull_end *m, struct errctx *e) SYNC_WUR;
int msg_snap_head_encode(struct buf *out, const struct msg_snap_head *m, struct errctx *e) SYNC_WUR;
int msg_snap_data_encode(struct buf *out, const struct msg_snap_data *m, struct errctx *e) SYNC_WUR;
int msg_snap_end_encode(struct buf *out, const struct msg_snap_end *m, struct errctx *e) SYNC_WUR;
int msg_error_encode(struct buf *out, uint16_t code, const char *msg, struct errctx *e) SYNC_WUR;

/* Decoders check the frame type and every length; byte pointers in the
 * result borrow from f.  SYNC_EPROTO names the field that was wrong. */
int msg_hello_decode(struct msg_hello *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_welcome_decode(struct msg_welcome *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_push_decode(struct msg_push *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_push_ok_decode(struct msg_push_ok *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_pull_decode(struct msg_pull *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_conflict_decode(struct msg_conflict *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_version_decode(struct msg_version *m, const struct frame *f, struct errctx *e) SYNC_WUR;
/* Leaves author empty and raw_len, z, zlen zero. */
int msg_own_version_decode(struct msg_version *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_dict_decode(struct msg_dict *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_pull_end_decode(struct msg_pull_end *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_snap_head_decode(struct msg_snap_head *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_snap_data_decode(struct msg_snap_data *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_snap_end_decode(struct msg_snap_end *m, const struct frame *f, struct errctx *e) SYNC_WUR;
int msg_error_decode(struct msg_error *m, const struct frame *f, struct errctx *e) SYNC_WUR;

/* Encodes and sends one message in a frame. */
int msg_send(struct frame_io *io, uint8_t type, const struct buf *payload,
             struct errctx *e) SYNC_WUR;

/* Sends an ERROR frame (best effort: failures are ignored, the connection is
 * being closed anyway). */
void msg_send_error(struct frame_io *io, uint16_t code, const char *msg);

/* The name of a message type, for logs ("PUSH"). */
const char *msg_type_name(uint8_t type);

#endif
