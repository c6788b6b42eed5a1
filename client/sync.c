/*
 * sync.c - the client side of the protocol, as one transaction.
 *
 * The push id is SHA-256(u64 big-endian base version || local changeset).
 * The changeset is a deterministic function of base and the dirty rows, so
 * a retry after a lost reply sends the same id and the hub answers with the
 * original result instead of applying it twice.
 */
#include "sync.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "bundle.h"
#include "changeset.h"
#include "db.h"
#include "gitmap.h"
#include "proto.h"
#include "replica.h"
#include "testpoint.h"
#include "tls.h"
#include "zcodec.h"

struct sync {
    sqlite3 *db;
    const struct schema *s;
    struct tls_ctx *tls_ctx;
    struct tls_conn *tls;
    struct frame_io io;
    uint64_t base;
    char site[SITE_ID_MAX + 1];
    struct sync_result *r;
    int diverged;        /* base disagreed with the hub's versions or hash */
    struct zdict *dict;  /* the dictionary both sides hold, or NULL */
    uint32_t local_dict; /* the one stored in the replica (0: none) */
    /* this sync's push, when the hub made it version own applied as sent:
     * PULL asks for it as OWN_VERSION and cs is applied to base instead */
    uint64_t own;
    const struct buf *own_cs;
    struct zdec *dec; /* decodes the pulled versions (made at the first) */
};

/* Turns an ERROR frame from the hub into our error. */
static int hub_error(const struct frame *f, struct errctx *e)
{
    struct msg_error m;
    int rc;

    if ((rc = msg_error_decode(&m, f, e)) != SYNC_OK)
        return rc;
    switch (m.code) {
    case WERR_INTERNAL:
        rc = SYNC_ENET;
        break;
    case WERR_SCHEMA:
        rc = SYNC_ESCHEMA;
        break;
    case WERR_BAD_FRAME:
        rc = SYNC_EPROTO;
        break;
    case WERR_TOO_LARGE:
        rc = SYNC_ELIMIT;
        break;
    default:
        rc = SYNC_EREFUSED;
        break;
    }
    return errctx_set(e, rc, "hub refused: %s", m.msg);
}

/* Reads the next frame, turning an ERROR frame into an error. */
static int expect_frame(struct frame **f, struct sync *y, struct errctx *e)
{
    int rc = frame_read(f, &y->io, FRAME_MAX, e);
    if (rc == SYNC_OK && (*f)->type == MSG_ERROR) {
        rc = hub_error(*f, e);
        frame_free(*f);
        *f = NULL;
    }
    return rc;
}

static int connect_hub(struct sync *y, struct errctx *e)
{
    char *addr = NULL, *ca = NULL, *cert = NULL, *key = NULL;
    char host[HUB_ADDRESS_MAX + 1], port[16];
    int rc;

    if ((rc = replica_meta_get(&addr, y->db, "hub_address", e)) != SYNC_OK ||
        (rc = replica_meta_get(&ca, y->db, "ca_cert", e)) != SYNC_OK ||
        (rc = replica_meta_get(&cert, y->db, "site_cert", e)) != SYNC_OK ||
        (rc = replica_meta_get(&key, y->db, "site_key", e)) != SYNC_OK)
        goto out;
    if ((rc = address_split(addr, host, sizeof(host), port, sizeof(port), e)) != SYNC_OK) {
        rc = errctx_set(e, SYNC_EDATA, "the replica's hub address \"%s\" is not HOST:PORT", addr);
        goto out;
    }
    if ((y->tls_ctx == NULL &&
         (rc = tls_ctx_new_client(&y->tls_ctx, cert, key, ca, e)) != SYNC_OK) ||
        (rc = tls_connect(&y->tls, y->tls_ctx, host, port, e)) != SYNC_OK)
        goto out;
    /* the same bounds the hub puts on sites: a hub (or a box in between)
     * that trickles cannot hold a sync and its replica lock for ever */
    tls_conn_set_timeout(y->tls, IDLE_TIMEOUT_MS);
    tls_conn_set_frame_timeout(y->tls, FRAME_DEADLINE_MS);
    y->io = tls_conn_io(y->tls);
out:
    sqlite3_free(addr);
    sqlite3_free(ca);
    sqlite3_free(cert);
    if (key != NULL) {
        explicit_bzero(key, strlen(key));
        sqlite3_free(key);
    }
    return rc;
}

/* The dictionary stored in the replica (_empact_meta 'zdict', a blob), if
 * any; a damaged one is dropped (fetched again), never fatal. */
static int dict_load_local(struct sync *y, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    struct errctx ignored;
    int step;

    if (sqlite3_prepare_v2(y->db, "SELECT value FROM _empact_meta WHERE key = 'zdict'", -1, &st,
                           NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
    if ((step = sqlite3_step(st)) == SQLITE_ROW &&
        zdict_load(&y->dict, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                   &ignored) == SYNC_OK)
        y->local_dict = zdict_id(y->dict);
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
    return SYNC_OK;
}

/* Fetches the hub's newest dictionary (id want) and keeps it in the replica,
 * in the sync's transaction. */
static int dict_fetch(struct sync *y, uint32_t want, struct errctx *e)
{
    struct frame *f = NULL;
    struct msg_dict m;
    struct zdict *d = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = frame_write(&y->io, MSG_DICT_GET, NULL, 0, e)) != SYNC_OK ||
        (rc = expect_frame(&f, y, e)) != SYNC_OK || (rc = msg_dict_decode(&m, f, e)) != SYNC_OK ||
        (rc = zdict_load(&d, m.bytes, m.n, e)) != SYNC_OK)
        goto out;
    if (zdict_id(d) != m.id || m.id != want) {
        rc = errctx_set(e, SYNC_EPROTO, "hub announced dictionary %u but sent %u (id %u inside)",
                        want, m.id, zdict_id(d));
        goto out;
    }
    if (sqlite3_prepare_v2(y->db, "INSERT OR REPLACE INTO _empact_meta VALUES ('zdict', ?)", -1,
                           &st, NULL) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
        goto out;
    }
    sqlite3_bind_blob(st, 1, m.bytes, (int)m.n, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
        goto out;
    }
    zdict_free(y->dict);
    y->dict = d;
    d = NULL;
    y->r->dict_fetched = 1;
out:
    sqlite3_finalize(st);
    zdict_free(d);
    frame_free(f);
    return rc;
}

/* HELLO / WELCOME.  With fetch, a site whose dictionary is not the hub's
 * newest fetches that one; without (a join), it only uses the one it has
 * when the hub has it too. */
static int hello_ex(struct sync *y, int fetch, struct errctx *e)
{
    struct msg_hello h;
    struct msg_welcome w;
    struct buf b = {0};
    struct frame *f = NULL;
    int rc;

    zdict_free(y->dict);
    y->dict = NULL;
    y->local_dict = 0;
    if ((rc = dict_load_local(y, e)) != SYNC_OK)
        return rc;
    h.proto = PROTO_VERSION;
    h.dict = y->local_dict;
    memcpy(h.schema, y->s->fingerprint, 32);
    if ((rc = msg_hello_encode(&b, &h, e)) != SYNC_OK ||
        (rc = msg_send(&y->io, MSG_HELLO, &b, e)) || (rc = expect_frame(&f, y, e)) != SYNC_OK ||
        (rc = msg_welcome_decode(&w, f, e)) != SYNC_OK)
        goto out;
    y->r->hub_head = w.head;
    if (w.proto != PROTO_VERSION) {
        rc = errctx_set(e, SYNC_EREFUSED, "hub speaks protocol %u, this client %d", w.proto,
                        PROTO_VERSION);
        goto out;
    }
    /* both sides compress with a dictionary only when the site holds the
     * hub's newest: a site with another fetches it (a join does not: its
     * snapshot is not compressed with one) */
    if (w.dict != y->local_dict && w.dict != 0 && fetch)
        rc = dict_fetch(y, w.dict, e);
    else if (w.dict != y->local_dict) {
        zdict_free(y->dict);
        y->dict = NULL;
    }
    y->r->dict = zdict_id(y->dict);
out:
    buf_free(&b);
    frame_free(f);
    return rc;
}

static int hello(struct sync *y, struct errctx *e)
{
    return hello_ex(y, 1, e);
}

/* The push being sent: built once, kept in _empact_outbox until the hub's
 * version of it has been applied, so that a retry sends the very same bytes
 * and id even if the coordinator edited more in between. */
struct outbox {
    int present;
    uint8_t id[PUSH_ID_LEN];
    uint64_t base;
    struct buf cs;
    struct buf times;
};

static void outbox_free(struct outbox *ob)
{
    buf_free(&ob->cs);
    buf_free(&ob->times);
}

/* Push id = SHA-256(site id, NUL, u64 BE base, changeset, edit times). */
static int outbox_id(struct outbox *ob, const char *site, struct errctx *e)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int mdlen = 0;
    uint8_t be[8];
    int ok;

    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(ob->base >> (56 - 8 * i));
    ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(md, site, strlen(site) + 1) == 1 && EVP_DigestUpdate(md, be, 8) == 1 &&
         EVP_DigestUpdate(md, ob->cs.data, ob->cs.len) == 1 &&
         EVP_DigestUpdate(md, ob->times.data, ob->times.len) == 1 &&
         EVP_DigestFinal_ex(md, ob->id, &mdlen) == 1;
    EVP_MD_CTX_free(md);
    return ok ? SYNC_OK : errctx_set(e, SYNC_ENOMEM, "cannot compute the push id");
}

static int outbox_load(struct outbox *ob, sqlite3 *db, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    ob->present = 0;
    if (sqlite3_prepare_v2(db, "SELECT push_id, base, changeset, times FROM _empact_outbox", -1,
                           &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EDATA, "replica: %s", sqlite3_errmsg(db));
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != PUSH_ID_LEN) {
            rc = errctx_set(e, SYNC_EDATA, "the replica's outbox is damaged");
        } else {
            memcpy(ob->id, sqlite3_column_blob(st, 0), PUSH_ID_LEN);
            ob->base = (uint64_t)sqlite3_column_int64(st, 1);
            if ((rc = buf_put(&ob->cs, sqlite3_column_blob(st, 2),
                              (size_t)sqlite3_column_bytes(st, 2), e)) == SYNC_OK &&
                (rc = buf_put(&ob->times, sqlite3_column_blob(st, 3),
                              (size_t)sqlite3_column_bytes(st, 3), e)) == SYNC_OK)
                ob->present = 1;
        }
    } else if (step != SQLITE_DONE) {
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return rc;
}

static int outbox_store(const struct outbox *ob, sqlite3 *db, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (sqlite3_prepare_v2(db,
                           "INSERT INTO _empact_outbox (one, push_id, base, changeset, times) "
                           "VALUES (1, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
    sqlite3_bind_blob(st, 1, ob->id, PUSH_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)ob->base);
    sqlite3_bind_blob(st, 3, ob->cs.data, (int)ob->cs.len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, ob->times.data ? (const void *)ob->times.data : "", (int)ob->times.len,
                      SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

/* Drops dirty keys that are not in cs (edits undone before the sync, or
 * that change nothing against the row they were made on) and gives their
 * rows base's (a row the hub deleted or changed under an edit that came to
 * nothing must not linger), then snapshots the rows of the keys that are in
 * cs: if the coordinator edits them again before the hub's version of this
 * push is applied, the snapshot tells which columns were edited since. */
static int dirty_drop_noops(struct sync *y, const struct outbox *ob, struct errctx *e)
{
    int rc = changeset_touched_reset(y->db, NULL, y->s, e);
    if (rc == SYNC_OK)
        rc = changeset_touched_add(y->db, NULL, y->s, ob->cs.data, ob->cs.len, e);
    if (rc == SYNC_OK)
        rc = db_exec(y->db, "INSERT INTO _empact_syncing VALUES (1)", "replica", e);
    for (int i = 0; rc == SYNC_OK && i < y->s->ntable; i++) {
        const struct schema_table *t = &y->s->tables[i];
        char *keys, *match;

        if (t->cls != CLASS_SHARED && t->cls != CLASS_OWNED)
            continue;
        keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL);
        match = schema_sql_pk_match(t, "k", "t");
        rc = keys && match
                 ? db_exec_free(y->db,
                                sqlite3_mprintf("CREATE TEMP TABLE _dropped AS SELECT %s FROM "
                                                "\"" DIRTY_PREFIX "%w\" WHERE (%s) NOT IN "
                                                "(SELECT %s FROM temp.\"" TOUCHED_PREFIX "%w\");"
                                                "DELETE FROM \"%w\" WHERE (%s) IN (SELECT * FROM "
                                                "temp._dropped);"
                                                "INSERT INTO \"%w\" SELECT * FROM \"" BASE_PREFIX
                                                "%w\" WHERE (%s) IN (SELECT * FROM temp._dropped);"
                                                "DELETE FROM \"" DIRTY_PREFIX "%w\" WHERE (%s) IN "
                                                "(SELECT * FROM temp._dropped);"
                                                "DROP TABLE temp._dropped;"
                                                "DELETE FROM \"" SNAP_PREFIX "%w\";"
                                                "DELETE FROM \"" INSERTED_PREFIX "%w\";"
                                                "INSERT INTO \"" SNAP_PREFIX
                                                "%w\" SELECT t.* FROM temp.\"" TOUCHED_PREFIX
                                                "%w\" k JOIN \"%w\" t ON %s;",
                                                keys, t->name, keys, keys, t->name, /* dropped */
                                                t->name, keys, t->name, t->name, keys, t->name,
                                                keys, /* settled, undirtied */
                                                t->name, t->name, t->name, t->name, t->name, match),
                                "replica", e)
                 : errctx_set(e, SYNC_ENOMEM, "out of memory");
        sqlite3_free(keys);
        sqlite3_free(match);
    }
    if (rc == SYNC_OK)
        rc = db_exec(y->db, "DELETE FROM _empact_syncing", "replica", e);
    return rc;
}

/* First transaction: the outbox left by an interrupted sync, or a new one
 * built from the dirty keys (none when nothing changed).  Committed before
 * any byte is sent. */
static int outbox_prepare(struct sync *y, struct outbox *ob, int *resumed, struct errctx *e)
{
    int rc;

    *resumed = 0;
    if ((rc = outbox_load(ob, y->db, e)) != SYNC_OK)
        return rc;
    if (ob->present) {
        if (ob->base == y->base) {
            *resumed = 1;
            return SYNC_OK;
        }
        /* cannot happen: base only moves in the transaction that empties the
         * outbox; rebuild rather than send a push for another base */
        ob->present = 0;
        ob->cs.len = ob->times.len = 0;
        if ((rc = db_exec(y->db, "DELETE FROM _empact_outbox", "replica", e)) != SYNC_OK)
            return rc;
    }
    ob->base = y->base;
    if ((rc = changeset_build_local(&ob->cs, y->db, y->s, e)) != SYNC_OK ||
        (rc = dirty_drop_noops(y, ob, e)) != SYNC_OK || ob->cs.len == 0)
        return rc;
    if (ob->cs.len > CHANGESET_MAX)
        return errctx_set(e, SYNC_ELIMIT,
                          "local changes make a changeset of %zu bytes, over the limit of %u; "
                          "sync more often",
                          ob->cs.len, CHANGESET_MAX);
    if ((rc = changeset_edit_times(&ob->times, y->db, y->s, ob->cs.data, ob->cs.len, e)) ||
        (rc = outbox_id(ob, y->site, e)) != SYNC_OK || (rc = outbox_store(ob, y->db, e)))
        return rc;
    ob->present = 1;
    return SYNC_OK;
}

static int push(struct sync *y, const struct outbox *ob, struct errctx *e)
{
    struct msg_push m;
    struct msg_push_ok ok;
    struct buf z = {0}, b = {0};
    struct frame *f = NULL;
    const void *parts[2] = {ob->times.data, ob->cs.data};
    size_t lens[2] = {ob->times.len, ob->cs.len};
    int rc;

    memcpy(m.push_id, ob->id, PUSH_ID_LEN);
    m.base = ob->base;
    m.ntimes = (uint32_t)(ob->times.len / 8);
    m.times = NULL;
    /* the edit times go inside the compressed payload, ahead of the changeset
     * (times made in one session differ in their last bytes only), streamed
     * into one frame without a copy of the two */
    if (lens[0] + lens[1] > CHANGESET_MAX) {
        rc = errctx_set(e, SYNC_ELIMIT,
                        "the push is %zu bytes, over the limit of %u; sync more often",
                        lens[0] + lens[1], CHANGESET_MAX);
        goto out;
    }
    m.raw_len = (uint32_t)(lens[0] + lens[1]);
    if ((rc = zcodec_compress_parts(&z, parts, lens, 2, y->dict, e)) != SYNC_OK)
        goto out;
    m.z = z.data;
    m.zlen = (uint32_t)z.len;
    if ((rc = msg_push_encode(&b, &m, e)) != SYNC_OK || (rc = msg_send(&y->io, MSG_PUSH, &b, e)))
        goto out;
    tls_conn_set_timeout(y->tls, PUSH_REPLY_TIMEOUT_MS);
    rc = expect_frame(&f, y, e);
    tls_conn_set_timeout(y->tls, IDLE_TIMEOUT_MS);
    if (rc != SYNC_OK || (rc = msg_push_ok_decode(&ok, f, e)) != SYNC_OK)
        goto out;
    testpoint("push acknowledged");
    y->r->push_version = ok.version;
    y->r->duplicate = ok.duplicate;
    y->r->overridden = ok.overridden;
    /* Made into the version right after base, with nothing lost: the hub
     * merged it into exactly this site's base, every change as sent, so the
     * version is base plus the outbox's new values; the site applies that
     * itself instead of pulling the same bytes back (the tree id checks it). */
    if (ok.version != 0 && ok.version == ob->base + 1 && ok.overridden == 0) {
        y->own = ok.version;
        y->own_cs = &ob->cs;
    }
out:
    buf_free(&z);
    buf_free(&b);
    frame_free(f);
    return rc;
}

/* Applies one VERSION frame to the base copies. */
static int apply_version(struct sync *y, const struct frame *f, struct errctx *e)
{
    struct msg_version v;
    struct buf raw = {0};
    char tree[41];
    int rc;

    if ((rc = msg_version_decode(&v, f, e)) != SYNC_OK)
        return rc;
    if (v.seq != y->base + 1) {
        return errctx_set(e, SYNC_EPROTO, "hub sent version %llu after %llu",
                          (unsigned long long)v.seq, (unsigned long long)y->base);
    }
    if ((y->dec == NULL && (rc = zdec_new(&y->dec, e)) != SYNC_OK) ||
        (rc = zdec_decompress(y->dec, &raw, v.z, v.zlen, v.raw_len, y->dict, e)) != SYNC_OK)
        goto out;
    if (raw.len != v.raw_len) {
        rc = errctx_set(e, SYNC_EPROTO, "version %llu decompressed to %zu bytes, not %u",
                        (unsigned long long)v.seq, raw.len, v.raw_len);
        goto out;
    }
    if ((rc = changeset_apply_strict(y->db, y->s, raw.data, raw.len, BASE_PREFIX, e)) != SYNC_OK) {
        y->diverged = rc == SYNC_EDATA;
        errctx_wrap(e, "applying hub version %llu", (unsigned long long)v.seq);
        goto out;
    }
    if ((rc = changeset_touched_add(y->db, NULL, y->s, raw.data, raw.len, e)) != SYNC_OK)
        goto out;
    testpoint("version applied to base");
    y->base = v.seq;
    gitmap_oid_hex(tree, v.tree);
    memcpy(y->r->tree, tree, sizeof(tree));
    y->r->pulled++;
out:
    buf_free(&raw);
    return rc;
}

/* Applies an OWN_VERSION frame: this site's push, which the hub made that
 * version as sent (push() decided so, and asked for it in PULL). */
static int apply_own_version(struct sync *y, const struct frame *f, struct errctx *e)
{
    struct msg_version v;
    int rc;

    if ((rc = msg_own_version_decode(&v, f, e)) != SYNC_OK)
        return rc;
    if (v.seq != y->own || v.seq != y->base + 1 || y->own_cs == NULL)
        return errctx_set(e, SYNC_EPROTO, "hub sent version %llu as this site's own, after %llu",
                          (unsigned long long)v.seq, (unsigned long long)y->base);
    if ((rc = changeset_apply_as_sent(y->db, y->s, y->own_cs->data, y->own_cs->len, BASE_PREFIX,
                                      e)) != SYNC_OK) {
        y->diverged = rc == SYNC_EDATA;
        errctx_wrap(e, "applying this site's own version %llu", (unsigned long long)v.seq);
        return rc;
    }
    /* its keys are in temp._touched_T already (exchange() put the outbox's) */
    testpoint("version applied to base");
    y->base = v.seq;
    gitmap_oid_hex(y->r->tree, v.tree);
    y->r->pulled++;
    y->r->own_versions++;
    return SYNC_OK;
}

/* The newest conflict log id this replica holds. */
static int conflicts_seen(struct sync *y, uint64_t *id, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    if (sqlite3_prepare_v2(y->db, "SELECT coalesce(max(id), 0) FROM _empact_conflict", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
    else
        *id = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* Keeps one CONFLICT entry from the hub in _empact_conflict. */
static int store_conflict(struct sync *y, const struct frame *f, struct errctx *e)
{
    struct msg_conflict m;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = msg_conflict_decode(&m, f, e)) != SYNC_OK)
        return rc;
    if (sqlite3_prepare_v2(
            y->db,
            "INSERT OR IGNORE INTO _empact_conflict (id, version, tbl, row_key, col, "
            "kind, winner_site, lost_value, kept_value, lost_at, won_at, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
            -1, &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)m.id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)m.version);
    sqlite3_bind_text(st, 3, m.table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, (const char *)m.key, (int)m.nkey, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m.column, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, m.kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, m.winner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, (const char *)m.lost, (int)m.nlost, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, (const char *)m.kept, (int)m.nkept, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)m.lost_at);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)m.won_at);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
    else
        y->r->conflicts++;
    sqlite3_finalize(st);
    return rc;
}

/* Pulls every version after base; *end_tree receives the hub's head tree. */
static int pull(struct sync *y, uint8_t end_tree[20], struct errctx *e)
{
    struct msg_pull_end end;
    int rc;

    do {
        struct buf b = {0};
        struct frame *f = NULL;
        struct msg_pull req = {y->base, 0, y->own};

        if ((rc = conflicts_seen(y, &req.conflicts_since, e)) != SYNC_OK)
            return rc;
        if ((rc = msg_pull_encode(&b, &req, e)) == SYNC_OK)
            rc = msg_send(&y->io, MSG_PULL, &b, e);
        buf_free(&b);
        if (rc != SYNC_OK)
            return rc;
        for (;;) {
            if ((rc = expect_frame(&f, y, e)) != SYNC_OK)
                return rc;
            if (f->type == MSG_VERSION)
                rc = apply_version(y, f, e);
            else if (f->type == MSG_OWN_VERSION)
                rc = apply_own_version(y, f, e);
            else if (f->type == MSG_CONFLICT)
                rc = store_conflict(y, f, e);
            else
                break;
            frame_free(f);
            f = NULL;
            if (rc != SYNC_OK)
                return rc;
        }
        rc = msg_pull_end_decode(&end, f, e);
        frame_free(f);
        if (rc != SYNC_OK)
            return rc;
        if (end.head != y->base)
            return errctx_set(e, SYNC_EPROTO,
                              "hub ended a pull at version %llu, but sent up to %llu",
                              (unsigned long long)end.head, (unsigned long long)y->base);
    } while (end.more);
    y->r->hub_head = end.head;
    memcpy(end_tree, end.tree, 20);
    return SYNC_OK;
}

/* For keys still dirty after the pull (edited after the outbox was built, or
 * edited meanwhile and not in it): columns not edited since the snapshot take
 * the hub's new value, in the row and in the snapshot; edited columns keep
 * the coordinator's value and, in the snapshot, the value it replaced.  The
 * next push is built against the snapshot (see changeset_build_local), so it
 * carries only the coordinator's edits, each with the value the coordinator
 * saw: the hub tells a concurrent change from a knowing one and logs what
 * loses.  A row the hub deleted meanwhile keeps its whole snapshot: the hub
 * sees an update of a deleted row, keeps the delete and logs the edit.
 * Snapshots and insert marks of keys no longer dirty go. */
/* *any = 1 if the query (an mprintf'd "SELECT EXISTS ...", freed here)
 * answers 1.  Lets a sync skip a table's statements that would change
 * nothing (parsing them was a fifth of a small sync's CPU). */
static int any_rows(struct sync *y, char *sql, int *any, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    *any = 1;
    if (sql == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (sqlite3_prepare_v2(y->db, sql, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        rc = errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(y->db));
    else
        *any = sqlite3_column_int(st, 0) != 0;
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return rc;
}

static int refresh_redirtied(struct sync *y, const struct schema_table *t, struct errctx *e)
{
    char *keys, *tkeys, *skeys, *m_ts, *m_sb, *m_tb, *set, *sset;
    int rc, any;

    /* no dirty key, no snapshot, no insert mark: every statement below is a no-op */
    if ((rc = any_rows(y,
                       sqlite3_mprintf("SELECT EXISTS (SELECT 1 FROM \"" DIRTY_PREFIX
                                       "%w\") OR EXISTS (SELECT 1 FROM \"" SNAP_PREFIX
                                       "%w\") OR EXISTS (SELECT 1 FROM \"" INSERTED_PREFIX "%w\")",
                                       t->name, t->name, t->name),
                       &any, e)) != SYNC_OK ||
        !any)
        return rc;
    keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL);
    tkeys = schema_sql_cols(t, SCHEMA_COLS_PK, "t");
    skeys = schema_sql_cols(t, SCHEMA_COLS_PK, "s");
    m_ts = schema_sql_pk_match(t, "t", "s");
    m_sb = schema_sql_pk_match(t, "s", "b");
    m_tb = schema_sql_pk_match(t, "t", "b");
    set = sqlite3_mprintf("%s", "");
    sset = sqlite3_mprintf("%s", "");

    for (int i = 0; set != NULL && sset != NULL && i < t->ncol; i++) {
        const char *c = t->cols[i].name;
        char *next, *snext;
        if (t->cols[i].pk)
            continue;
        next = sqlite3_mprintf("%s%s\"%w\" = CASE WHEN t.\"%w\" IS s.\"%w\" THEN b.\"%w\" ELSE "
                               "t.\"%w\" END",
                               set, *set ? ", " : "", c, c, c, c, c);
        snext = sqlite3_mprintf("%s%s\"%w\" = CASE WHEN t.\"%w\" IS b.\"%w\" THEN b.\"%w\" ELSE "
                                "s.\"%w\" END",
                                sset, *sset ? ", " : "", c, c, c, c, c);
        sqlite3_free(set);
        sqlite3_free(sset);
        set = next;
        sset = snext;
    }
    if (keys == NULL || tkeys == NULL || skeys == NULL || m_ts == NULL || m_sb == NULL ||
        m_tb == NULL || set == NULL || sset == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    /* The row first (against the old snapshot), then the snapshot (against
     * the refreshed row: a column now equal to base's is not an edit). */
    rc = db_exec_free(
        y->db,
        sqlite3_mprintf(
            "UPDATE \"%w\" AS t SET %s FROM \"" SNAP_PREFIX "%w\" s JOIN \"" BASE_PREFIX
            "%w\" b ON %s WHERE %s AND (%s) IN (SELECT %s FROM \"" DIRTY_PREFIX "%w\");"
            "UPDATE \"" SNAP_PREFIX "%w\" AS s SET %s FROM \"%w\" t JOIN \"" BASE_PREFIX
            "%w\" b ON %s WHERE %s AND (%s) IN (SELECT %s FROM \"" DIRTY_PREFIX "%w\");"
            "DELETE FROM \"" SNAP_PREFIX "%w\" WHERE (%s) NOT IN (SELECT %s FROM \"" DIRTY_PREFIX
            "%w\");"
            "DELETE FROM \"" INSERTED_PREFIX
            "%w\" WHERE (%s) NOT IN (SELECT %s FROM \"" DIRTY_PREFIX "%w\");",
            t->name, set, t->name, t->name, m_sb, m_ts, tkeys, keys, t->name,  /* the row */
            t->name, sset, t->name, t->name, m_tb, m_ts, skeys, keys, t->name, /* snapshot */
            t->name, keys, keys, t->name,                                      /* done */
            t->name, keys, keys, t->name),
        "replica", e);
out:
    sqlite3_free(keys);
    sqlite3_free(tkeys);
    sqlite3_free(skeys);
    sqlite3_free(m_ts);
    sqlite3_free(m_sb);
    sqlite3_free(m_tb);
    sqlite3_free(set);
    sqlite3_free(sset);
    return rc;
}

static int settle(struct sync *y, struct errctx *e)
{
    int rc = db_exec(y->db, "INSERT INTO _empact_syncing VALUES (1)", "replica", e);

    for (int i = 0; rc == SYNC_OK && i < y->s->ntable; i++) {
        const struct schema_table *t = &y->s->tables[i];
        if (t->cls == CLASS_SHARED || t->cls == CLASS_OWNED)
            rc = refresh_redirtied(y, t, e);
    }

    for (int i = 0; rc == SYNC_OK && i < y->s->ntable; i++) {
        const struct schema_table *t = &y->s->tables[i];
        char *keys, *match, *sql = NULL;
        int any;

        if (!schema_class_replicated(t->cls))
            continue;
        /* no key touched by this sync: nothing to copy from base */
        if ((rc = any_rows(y,
                           sqlite3_mprintf("SELECT EXISTS (SELECT 1 FROM temp.\"" TOUCHED_PREFIX
                                           "%w\")",
                                           t->name),
                           &any, e)) != SYNC_OK ||
            !any)
            continue;
        keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL);
        match = schema_sql_pk_match(t, "k", "b");
        if (keys && match && t->cls != CLASS_HUB)
            sql = sqlite3_mprintf("DELETE FROM temp.\"" TOUCHED_PREFIX "%w\" WHERE (%s) IN "
                                  "(SELECT %s FROM \"" DIRTY_PREFIX "%w\");",
                                  t->name, keys, keys, t->name);
        else if (keys && match)
            sql = sqlite3_mprintf("%s", "");
        if (sql != NULL) {
            char *more = sqlite3_mprintf(
                "%sDELETE FROM \"%w\" WHERE (%s) IN (SELECT %s FROM temp.\"" TOUCHED_PREFIX "%w\");"
                "INSERT INTO \"%w\" SELECT b.* FROM temp.\"" TOUCHED_PREFIX
                "%w\" k JOIN \"" BASE_PREFIX "%w\" b ON %s;",
                sql, t->name, keys, keys, t->name, t->name, t->name, t->name, match);
            sqlite3_free(sql);
            sql = more;
        }
        rc = sql ? db_exec(y->db, sql, "replica", e) : errctx_set(e, SYNC_ENOMEM, "out of memory");
        sqlite3_free(keys);
        sqlite3_free(match);
        sqlite3_free(sql);
    }
    if (rc == SYNC_OK)
        rc = db_exec(y->db, "DELETE FROM _empact_syncing", "replica", e);
    return rc;
}

/* Step 5: base must hash to the hub's tree.  When this sync applied no
 * version, base is what the last sync verified, and the hash that sync
 * stored stands in for hashing every row again (a no-op sync, and the first
 * sync after a join, cost what they change, not what the replica weighs).
 * Otherwise the tree store rehashes only the shards of the keys this sync
 * touched, starting from the tree the last sync proved (from_scratch: every
 * row, as after a rebuild). */
static int verify(struct sync *y, const uint8_t want[20], int from_scratch, struct errctx *e)
{
    uint8_t got[20], from[20];
    char gh[41], wh[41];
    char *known = NULL;
    struct errctx ignored;
    enum replica_hash how = REPLICA_HASH_FULL;
    int have_from, rc;

    have_from = !from_scratch &&
                replica_meta_get(&known, y->db, "base_tree", &ignored) == SYNC_OK &&
                gitmap_oid_parse(from, known, &ignored) == SYNC_OK;
    sqlite3_free(known);
    if (y->r->pulled == 0 && have_from && memcmp(from, want, 20) == 0) {
        gitmap_oid_hex(y->r->tree, from);
        y->r->hashed = "kept";
        return SYNC_OK;
    }
    if ((rc = replica_base_hash(got, &how, y->db, y->s, have_from ? from : NULL, want, e)) !=
        SYNC_OK)
        return rc;
    y->r->hashed = how == REPLICA_HASH_TOUCHED ? "touched" : "full";
    if (memcmp(got, want, 20) != 0) {
        gitmap_oid_hex(gh, got);
        gitmap_oid_hex(wh, want);
        y->diverged = 1;
        return errctx_set(e, SYNC_EDATA,
                          "this replica's data at version %llu hashes to %.12s but the hub's is "
                          "%.12s; the replica has diverged and must be rebuilt from the hub",
                          (unsigned long long)y->base, gh, wh);
    }
    gitmap_oid_hex(y->r->tree, got);
    return SYNC_OK;
}

/* What `empact status` shows as the hub's head version "as of the last
 * contact": the head the hub announced (WELCOME, then each PULL_END), kept
 * also when the sync fails after the hub answered. */
static int record_hub_head(sqlite3 *db, const struct sync_result *r, const char *when,
                           struct errctx *e)
{
    char num[32];
    int rc;

    if (r->hub_head == 0)
        return SYNC_OK;
    snprintf(num, sizeof(num), "%llu", (unsigned long long)r->hub_head);
    if ((rc = replica_meta_set(db, "hub_head", num, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "hub_contact_at", when, e)) != SYNC_OK)
        return rc;
    return SYNC_OK;
}

static int meta_after(struct sync *y, struct errctx *e)
{
    char num[32], when[32];
    time_t now = time(NULL);
    struct tm tm;
    int rc;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)y->base);
    if ((rc = replica_meta_set(y->db, "base_version", num, e)) != SYNC_OK ||
        (rc = replica_meta_set(y->db, "base_tree", y->r->tree, e)) != SYNC_OK ||
        (rc = replica_meta_set(y->db, "last_sync", when, e)) != SYNC_OK ||
        (rc = replica_meta_set(y->db, "last_error", "", e)) != SYNC_OK ||
        (rc = record_hub_head(y->db, y->r, when, e)) != SYNC_OK)
        return rc;
    return SYNC_OK;
}

static int read_meta(struct sync *y, struct errctx *e)
{
    char *v = NULL;
    int rc;

    if ((rc = replica_meta_get(&v, y->db, "site_id", e)) != SYNC_OK)
        return rc;
    snprintf(y->site, sizeof(y->site), "%s", v);
    sqlite3_free(v);
    if ((rc = replica_meta_get(&v, y->db, "base_version", e)) != SYNC_OK)
        return rc;
    y->base = strtoull(v, NULL, 10);
    sqlite3_free(v);
    return SYNC_OK;
}

/* Before base moves: every dirty key that is not in the outbox and has no
 * snapshot yet gets its base row as one (the row its edits were made on), or
 * an insert mark when base has no row (the coordinator created it), so that
 * after the pull the columns the coordinator did not touch can take the hub's
 * new values and the next push still says what the coordinator saw.  Keys of
 * the outbox keep the outbox's own snapshot, or none when the outbox deleted
 * the row: a row this site deleted and typed again is a new insert, not an
 * update of a row the hub deleted.  (temp._touched_T holds the outbox keys.) */
static int snapshot_dirty_base(struct sync *y, struct errctx *e)
{
    int rc = SYNC_OK;

    for (int i = 0; rc == SYNC_OK && i < y->s->ntable; i++) {
        const struct schema_table *t = &y->s->tables[i];
        char *keys;

        if (t->cls != CLASS_SHARED && t->cls != CLASS_OWNED)
            continue;
        if ((keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL)) == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        rc = db_exec_free(
            y->db,
            sqlite3_mprintf("INSERT OR IGNORE INTO \"" SNAP_PREFIX "%w\" SELECT * "
                            "FROM \"" BASE_PREFIX "%w\" WHERE (%s) IN (SELECT %s "
                            "FROM \"" DIRTY_PREFIX "%w\") AND (%s) NOT IN (SELECT "
                            "%s FROM temp.\"" TOUCHED_PREFIX "%w\");"
                            "INSERT OR IGNORE INTO \"" INSERTED_PREFIX "%w\" SELECT %s FROM "
                            "\"" DIRTY_PREFIX "%w\" WHERE (%s) NOT IN (SELECT %s FROM "
                            "temp.\"" TOUCHED_PREFIX "%w\") AND (%s) NOT IN (SELECT %s FROM "
                            "\"" BASE_PREFIX "%w\") AND (%s) NOT IN (SELECT %s FROM "
                            "\"" SNAP_PREFIX "%w\")",
                            t->name, t->name, keys, keys, t->name, keys, keys, t->name, /* snap */
                            t->name, keys, t->name, keys, keys, t->name, keys, keys, t->name, keys,
                            keys, t->name), /* insert marks */
            "replica", e);
        sqlite3_free(keys);
    }
    return rc;
}

/* Second transaction: push the outbox, pull, settle, verify, empty the
 * outbox.  Holds the replica's write lock while it talks to the hub. */
static int exchange(struct sync *y, const struct outbox *ob, struct errctx *e)
{
    uint8_t tree[20];
    int rc;

    if ((rc = read_meta(y, e)) != SYNC_OK)
        return rc;
    if (ob->present && ob->base != y->base)
        return errctx_set(e, SYNC_EDATA, "the replica changed under the sync; run it again");
    if ((rc = changeset_touched_reset(y->db, NULL, y->s, e)) != SYNC_OK ||
        (rc = changeset_touched_add(y->db, NULL, y->s, ob->cs.data, ob->cs.len, e)) != SYNC_OK ||
        (rc = changeset_count(ob->cs.data, ob->cs.len, &y->r->pushed, e)) != SYNC_OK)
        return rc;
    if ((rc = connect_hub(y, e)) != SYNC_OK || (rc = hello(y, e)) != SYNC_OK)
        return rc;
    if (ob->present && (rc = push(y, ob, e)) != SYNC_OK)
        return rc;
    if ((rc = snapshot_dirty_base(y, e)) != SYNC_OK || (rc = pull(y, tree, e)) != SYNC_OK)
        return rc;
    testpoint("pull done");
    if (ob->present &&
        ((rc = changeset_dirty_done(y->db, y->s, ob->cs.data, ob->cs.len, ob->times.data,
                                    ob->times.len / 8, e)) != SYNC_OK ||
         (rc = db_exec(y->db, "DELETE FROM _empact_outbox", "replica", e)) != SYNC_OK))
        return rc;
    testpoint("dirty keys cleared");
    if ((rc = settle(y, e)) != SYNC_OK)
        return rc;
    testpoint("settled");
    if ((rc = verify(y, tree, 0, e)) != SYNC_OK)
        return rc;
    testpoint("verified");
    y->r->version = y->base;
    if ((rc = meta_after(y, e)) != SYNC_OK)
        return rc;
    (void)!frame_write(&y->io, MSG_BYE, NULL, 0, NULL);
    return SYNC_OK;
}

/* Recovery from divergence, in one transaction: empty the base copies, pull
 * every version from the hub again, check the hash, then make each table
 * equal to the new base except for keys still dirty (local edits, which stay
 * pending and go out in the next round).  The outbox was built on the old
 * base, so it is dropped; its keys are still dirty. */
static int rebuild_base(struct sync *y, struct errctx *e)
{
    uint8_t tree[20];
    int rc;

    if ((rc = read_meta(y, e)) != SYNC_OK ||
        (rc = db_exec(y->db, "DELETE FROM _empact_outbox", "replica", e)) != SYNC_OK ||
        (rc = changeset_touched_reset(y->db, NULL, y->s, e)) != SYNC_OK)
        return rc;
    for (int i = 0; rc == SYNC_OK && i < y->s->ntable; i++) {
        const struct schema_table *t = &y->s->tables[i];
        char *keys;

        if (!schema_class_replicated(t->cls))
            continue;
        if ((keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL)) == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        /* every key either copy holds will be settled */
        rc =
            db_exec_free(y->db,
                         sqlite3_mprintf("INSERT OR IGNORE INTO temp.\"" TOUCHED_PREFIX "%w\" "
                                         "SELECT %s FROM \"%w\" UNION SELECT %s FROM \"" BASE_PREFIX
                                         "%w\"; DELETE FROM \"" BASE_PREFIX "%w\";",
                                         t->name, keys, t->name, keys, t->name, t->name),
                         "replica", e);
        sqlite3_free(keys);
    }
    if (rc != SYNC_OK)
        return rc;
    y->base = 0;
    y->own = 0; /* the outbox is gone: every version comes from the hub */
    y->own_cs = NULL;
    if ((rc = connect_hub(y, e)) != SYNC_OK || (rc = hello(y, e)) != SYNC_OK ||
        (rc = pull(y, tree, e)) != SYNC_OK || (rc = verify(y, tree, 1, e)) != SYNC_OK ||
        (rc = settle(y, e)) != SYNC_OK)
        return rc;
    y->r->version = y->base;
    rc = meta_after(y, e);
    if (rc == SYNC_OK)
        (void)!frame_write(&y->io, MSG_BYE, NULL, 0, NULL);
    return rc;
}

static int step_rebuild(struct sync *y, struct outbox *ob, int *unused, struct errctx *e)
{
    (void)ob;
    (void)unused;
    return rebuild_base(y, e);
}

/* Runs f inside BEGIN IMMEDIATE .. COMMIT, rolling back on failure. */
static int in_transaction(struct sync *y,
                          int (*f)(struct sync *, struct outbox *, int *, struct errctx *),
                          struct outbox *ob, int *flag, struct errctx *e)
{
    int rc;

    if (sqlite3_exec(y->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO,
                          "the replica is busy (another sync or program is writing it): %s",
                          sqlite3_errmsg(y->db));
    rc = f(y, ob, flag, e);
    testpoint("before commit");
    if (rc == SYNC_OK)
        rc = db_exec(y->db, "COMMIT", "replica", e);
    testpoint("after commit");
    if (rc != SYNC_OK && !sqlite3_get_autocommit(y->db))
        (void)sqlite3_exec(y->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int step_prepare(struct sync *y, struct outbox *ob, int *resumed, struct errctx *e)
{
    int rc = read_meta(y, e);
    return rc ? rc : outbox_prepare(y, ob, resumed, e);
}

static int step_exchange(struct sync *y, struct outbox *ob, int *unused, struct errctx *e)
{
    (void)unused;
    return exchange(y, ob, e);
}

static void record_failure(sqlite3 *db, const struct sync_result *r, const struct errctx *e)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    struct errctx ignored;

    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return;
    /* last_error is cleared by the next success; last_failure stays */
    if (replica_meta_set(db, "last_error", e->msg, &ignored) != SYNC_OK ||
        replica_meta_set(db, "last_error_at", when, &ignored) != SYNC_OK ||
        replica_meta_set(db, "last_failure", e->msg, &ignored) != SYNC_OK ||
        record_hub_head(db, r, when, &ignored) != SYNC_OK)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    else
        (void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* Adds the bytes of y's connection (if any) to its result. */
static void count_wire(struct sync *y)
{
    uint64_t in = 0, out = 0;

    tls_conn_bytes(y->tls, &in, &out);
    y->r->wire_in += in;
    y->r->wire_out += out;
    tls_conn_app_bytes(y->tls, &in, &out);
    y->r->frames_in += in;
    y->r->frames_out += out;
}

int sync_run(sqlite3 *db, const struct schema *s, struct sync_result *r, struct errctx *e)
{
    struct sync y;
    struct sync_result first;
    int rc, resumed = 0, round = 0;

    memset(r, 0, sizeof(*r));
    memset(&first, 0, sizeof(first));
    /* A resumed outbox is sent first; edits made since go out in a second
     * round, so one sync leaves nothing behind that it could have sent. */
    do {
        struct outbox ob;
        int ignored = 0;

        memset(&ob, 0, sizeof(ob));
        memset(&y, 0, sizeof(y));
        y.db = db;
        y.s = s;
        y.r = r;
        if (round == 1) {
            first = *r;
            memset(r, 0, sizeof(*r));
        }
        rc = in_transaction(&y, step_prepare, &ob, &resumed, e);
        if (rc == SYNC_OK)
            rc = in_transaction(&y, step_exchange, &ob, &ignored, e);
        count_wire(&y);
        tls_conn_close(y.tls);
        tls_ctx_free(y.tls_ctx);
        y.tls = NULL;
        y.tls_ctx = NULL;
        r->dict = zdict_id(y.dict);
        if (rc == SYNC_EDATA && y.diverged && !r->rebuilt) {
            /* never continue silently on a diverged base: rebuild it from
             * the hub, keep the local edits, and sync them in a new round */
            fprintf(stderr, "empact: %s\n", e->msg);
            fprintf(stderr, "empact: rebuilding this replica's copy of the hub's data from the "
                            "hub; local changes are kept and will be sent\n");
            y.diverged = 0;
            rc = in_transaction(&y, step_rebuild, &ob, &ignored, e);
            count_wire(&y);
            tls_conn_close(y.tls);
            tls_ctx_free(y.tls_ctx);
            r->dict = zdict_id(y.dict);
            r->rebuilt = 1;
            resumed = rc == SYNC_OK; /* run another round for the kept edits */
        }
        outbox_free(&ob);
        zdict_free(y.dict);
        y.dict = NULL;
        zdec_free(y.dec);
        y.dec = NULL;
    } while (rc == SYNC_OK && resumed && ++round < 2);
    if (round == 1 && rc == SYNC_OK) {
        /* report both rounds as one sync */
        r->pulled += first.pulled;
        r->rebuilt |= first.rebuilt;
        r->conflicts += first.conflicts;
        r->overridden += first.overridden;
        r->wire_in += first.wire_in;
        r->wire_out += first.wire_out;
        r->frames_in += first.frames_in;
        r->frames_out += first.frames_out;
        r->dict_fetched |= first.dict_fetched;
        r->own_versions += first.own_versions;
        if (r->pushed == 0) {
            r->pushed = first.pushed;
            r->push_version = first.push_version;
            r->duplicate = first.duplicate;
        }
    }
    if (rc != SYNC_OK)
        record_failure(db, r, e);
    return rc;
}

/* ---- a bare connection, for the join snapshot (bootstrap.c) -------------- */

struct sync_link {
    struct sync y;
    struct sync_result r;
    int ctx_borrowed; /* y.tls_ctx is the caller's */
};

int sync_link_open(struct sync_link **out, sqlite3 *db, const struct schema *s, uint64_t *hub_head,
                   struct errctx *e)
{
    return sync_link_open_ctx(out, db, s, NULL, hub_head, e);
}

int sync_link_open_ctx(struct sync_link **out, sqlite3 *db, const struct schema *s,
                       struct tls_ctx *ctx, uint64_t *hub_head, struct errctx *e)
{
    struct sync_link *l = calloc(1, sizeof(*l));
    int rc;

    *out = NULL;
    if (l == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    l->y.tls_ctx = ctx;
    l->ctx_borrowed = ctx != NULL;
    l->y.db = db;
    l->y.s = s;
    l->y.r = &l->r;
    if ((rc = read_meta(&l->y, e)) != SYNC_OK || (rc = connect_hub(&l->y, e)) != SYNC_OK ||
        (rc = hello_ex(&l->y, 0, e)) != SYNC_OK) {
        sync_link_close(l, 0);
        return rc;
    }
    *hub_head = l->r.hub_head;
    *out = l;
    return SYNC_OK;
}

int sync_link_send(struct sync_link *l, uint8_t type, const struct buf *payload, struct errctx *e)
{
    return msg_send(&l->y.io, type, payload, e);
}

int sync_link_read(struct sync_link *l, struct frame **f, struct errctx *e)
{
    return expect_frame(f, &l->y, e);
}

void sync_link_close(struct sync_link *l, int bye)
{
    if (l == NULL)
        return;
    if (bye && l->y.tls != NULL)
        (void)!frame_write(&l->y.io, MSG_BYE, NULL, 0, NULL);
    tls_conn_close(l->y.tls);
    if (!l->ctx_borrowed)
        tls_ctx_free(l->y.tls_ctx);
    zdict_free(l->y.dict);
    free(l);
}
