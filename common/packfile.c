/*
 * packfile.c - git pack files and their indexes as bytes (format in
 * packfile.h).
 */
#include "packfile.h"

#include "gittree.h"

#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_MAX 0xffffffu /* three size bytes */
#define INSERT_MAX 127

/* ---- writing -------------------------------------------------------------------- */

size_t packfile_entry_header(uint8_t out[PACKFILE_HDR_MAX], int type, uint64_t size)
{
    size_t n = 0;

    out[n] = (uint8_t)((type << 4) | (int)(size & 0x0f));
    size >>= 4;
    while (size != 0) {
        out[n++] |= 0x80;
        out[n] = (uint8_t)(size & 0x7f);
        size >>= 7;
    }
    return n + 1;
}

size_t packfile_ofs_encode(uint8_t out[PACKFILE_HDR_MAX], uint64_t distance)
{
    uint8_t tmp[PACKFILE_HDR_MAX];
    size_t pos = sizeof(tmp) - 1;

    tmp[pos] = (uint8_t)(distance & 0x7f);
    while (distance >>= 7)
        tmp[--pos] = (uint8_t)(0x80 | (--distance & 0x7f));
    memcpy(out, tmp + pos, sizeof(tmp) - pos);
    return sizeof(tmp) - pos;
}

int packfile_stored(struct buf *out, const void *data, size_t len, struct errctx *e)
{
    const uint8_t *p = data;
    size_t left = len, blocks = len / 65535 + 1;
    uint32_t adler = libdeflate_adler32(1, p, len);
    uint8_t *w;
    int rc;

    if ((rc = buf_reserve(out, 2 + 5 * blocks + len + 4, e)) != SYNC_OK)
        return rc;
    w = out->data + out->len;
    *w++ = 0x78; /* deflate, 32 KiB window */
    *w++ = 0x01; /* fastest; the header's check bits make 0x7801 divisible by 31 */
    do {
        size_t n = left < 65535 ? left : 65535;
        *w++ = left == n; /* BFINAL on the last block, BTYPE 00: stored */
        w[0] = (uint8_t)n;
        w[1] = (uint8_t)(n >> 8);
        w[2] = (uint8_t)~n;
        w[3] = (uint8_t)(~n >> 8);
        if (n > 0)
            memcpy(w + 4, p, n);
        w += 4 + n;
        p += n;
        left -= n;
    } while (left > 0);
    for (int k = 3; k >= 0; k--)
        *w++ = (uint8_t)(adler >> (8 * k));
    out->len = (size_t)(w - out->data);
    return SYNC_OK;
}

int packfile_is_stored(const uint8_t *p, size_t n)
{
    /* CM 8 in the low nibble, no preset dictionary, then BTYPE (bits 1-2) 00 */
    return n >= 3 && (p[0] & 0x0f) == 8 && (p[1] & 0x20) == 0 && (p[2] & 0x06) == 0;
}

/* A delta being built: pending instructions are flushed as they end. */
struct delta {
    struct buf *out;
    const uint8_t *ins; /* pending insert: ins[0..nins) */
    size_t nins;
    uint64_t coff, clen; /* pending copy from the base */
};

static int put_varint(struct buf *out, uint64_t v, struct errctx *e)
{
    uint8_t b[10];
    size_t n = 0;

    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            b[n] |= 0x80;
        n++;
    } while (v != 0);
    return buf_put(out, b, n, e);
}

static int flush_insert(struct delta *d, struct errctx *e)
{
    int rc = SYNC_OK;

    while (d->nins > 0 && rc == SYNC_OK) {
        size_t n = d->nins < INSERT_MAX ? d->nins : INSERT_MAX;
        if ((rc = buf_put_u8(d->out, (uint8_t)n, e)) == SYNC_OK)
            rc = buf_put(d->out, d->ins, n, e);
        d->ins += n;
        d->nins -= n;
    }
    return rc;
}

static int flush_copy(struct delta *d, struct errctx *e)
{
    while (d->clen > 0) {
        uint64_t n = d->clen < COPY_MAX ? d->clen : COPY_MAX;
        uint8_t b[8], op = 0x80;
        size_t k = 1;
        int rc;

        for (int i = 0; i < 4; i++) {
            uint8_t v = (uint8_t)(d->coff >> (8 * i));
            if (v != 0) {
                op |= (uint8_t)(1u << i);
                b[k++] = v;
            }
        }
        for (int i = 0; i < 3; i++) {
            uint8_t v = (uint8_t)(n >> (8 * i));
            if (v != 0) {
                op |= (uint8_t)(0x10u << i);
                b[k++] = v;
            }
        }
        b[0] = op;
        if ((rc = buf_put(d->out, b, k, e)) != SYNC_OK)
            return rc;
        d->coff += n;
        d->clen -= n;
    }
    return SYNC_OK;
}

static int delta_copy(struct delta *d, uint64_t off, uint64_t len, struct errctx *e)
{
    int rc;

    if (len == 0)
        return SYNC_OK;
    if (d->clen > 0 && d->coff + d->clen == off) {
        d->clen += len;
        return SYNC_OK;
    }
    if ((rc = flush_insert(d, e)) != SYNC_OK || (rc = flush_copy(d, e)) != SYNC_OK)
        return rc;
    d->coff = off;
    d->clen = len;
    return SYNC_OK;
}

static int delta_insert(struct delta *d, const uint8_t *p, size_t len, struct errctx *e)
{
    int rc;

    if (len == 0)
        return SYNC_OK;
    if (d->nins > 0 && d->ins + d->nins == p) {
        d->nins += len;
        return SYNC_OK;
    }
    if ((rc = flush_copy(d, e)) != SYNC_OK || (rc = flush_insert(d, e)) != SYNC_OK)
        return rc;
    d->ins = p;
    d->nins = len;
    return SYNC_OK;
}

/* Trees: each target entry found unchanged in the base (same bytes, same
 * name) is copied from it, every other entry inserted.  Both bodies are
 * sorted by name, so one pass over each finds them. */
static int delta_tree(struct delta *d, const uint8_t *base, size_t blen, const uint8_t *target,
                      size_t tlen, struct errctx *e)
{
    struct gittree_iter bi, ti;
    struct gittree_entry be, te;
    int bhas, thas, rc = SYNC_OK;

    gittree_iter_init(&bi, base, blen);
    gittree_iter_init(&ti, target, tlen);
    if ((bhas = gittree_next(&bi, &be, e)) < 0)
        return bhas;
    while ((thas = gittree_next(&ti, &te, e)) == 1) {
        int c = 1;
        while (bhas == 1 && (c = gittree_cmp(be.name, be.len, be.dir, te.name, te.len, te.dir)) < 0)
            if ((bhas = gittree_next(&bi, &be, e)) < 0)
                return bhas;
        if (bhas == 1 && c == 0 && be.rawlen == te.rawlen && memcmp(be.raw, te.raw, te.rawlen) == 0)
            rc = delta_copy(d, (uint64_t)(be.raw - base), be.rawlen, e);
        else
            rc = delta_insert(d, te.raw, te.rawlen, e);
        if (rc != SYNC_OK)
            return rc;
    }
    return thas;
}

/* Anything else: the common head and tail are copied, the middle inserted. */
static int delta_plain(struct delta *d, const uint8_t *base, size_t blen, const uint8_t *target,
                       size_t tlen, struct errctx *e)
{
    size_t head = 0, tail = 0, most = blen < tlen ? blen : tlen;
    int rc;

    while (head < most && base[head] == target[head])
        head++;
    while (tail < most - head && base[blen - 1 - tail] == target[tlen - 1 - tail])
        tail++;
    if ((rc = delta_copy(d, 0, head, e)) != SYNC_OK ||
        (rc = delta_insert(d, target + head, tlen - head - tail, e)) != SYNC_OK)
        return rc;
    return delta_copy(d, blen - tail, tail, e);
}

int packfile_delta(struct buf *out, const void *base, size_t blen, const void *target, size_t tlen,
                   int tree, struct errctx *e)
{
    struct delta d = {out, NULL, 0, 0, 0};
    size_t start = out->len;
    int rc;

    if ((rc = put_varint(out, blen, e)) != SYNC_OK || (rc = put_varint(out, tlen, e)) != SYNC_OK)
        return rc;
    if (tree) {
        struct errctx ignored = {0, ""};
        size_t mark = out->len;
        if (delta_tree(&d, base, blen, target, tlen, &ignored) == SYNC_OK)
            goto done;
        if (ignored.code == SYNC_ENOMEM || ignored.code == SYNC_ELIMIT) {
            *e = ignored;
            out->len = start;
            return ignored.code;
        }
        out->len = mark; /* not a tree after all: start again the plain way */
        memset(&d, 0, sizeof(d));
        d.out = out;
    }
    if ((rc = delta_plain(&d, base, blen, target, tlen, e)) != SYNC_OK)
        return rc;
done:
    if ((rc = flush_insert(&d, e)) != SYNC_OK || (rc = flush_copy(&d, e)) != SYNC_OK)
        return rc;
    return SYNC_OK;
}

static int get_varint(uint64_t *v, const uint8_t **p, const uint8_t *end, struct errctx *e)
{
    int shift = 0;

    *v = 0;
    for (;;) {
        if (*p == end || shift > 63)
            return errctx_set(e, SYNC_EDATA, "a delta's size is cut short or too large");
        *v |= (uint64_t)(**p & 0x7f) << shift;
        shift += 7;
        if (!(*(*p)++ & 0x80))
            return SYNC_OK;
    }
}

int packfile_delta_apply(struct buf *out, const void *base, size_t blen, const void *d, size_t dlen,
                         struct errctx *e)
{
    const uint8_t *p = d, *end = p + dlen;
    uint64_t bsize, want;
    int rc;

    out->len = 0;
    if ((rc = get_varint(&bsize, &p, end, e)) != SYNC_OK ||
        (rc = get_varint(&want, &p, end, e)) != SYNC_OK)
        return rc;
    if (bsize != blen)
        return errctx_set(e, SYNC_EDATA, "a delta is for a base of %llu bytes, not %zu",
                          (unsigned long long)bsize, blen);
    while (p < end) {
        uint8_t op = *p++;
        const uint8_t *from;
        uint64_t n;

        if (op & 0x80) {
            uint64_t off = 0;
            n = 0;
            for (int i = 0; i < 4; i++)
                if (op & (1u << i)) {
                    if (p == end)
                        return errctx_set(e, SYNC_EDATA, "a delta's copy is cut short");
                    off |= (uint64_t)*p++ << (8 * i);
                }
            for (int i = 0; i < 3; i++)
                if (op & (0x10u << i)) {
                    if (p == end)
                        return errctx_set(e, SYNC_EDATA, "a delta's copy is cut short");
                    n |= (uint64_t)*p++ << (8 * i);
                }
            if (n == 0)
                n = 0x10000;
            if (off > blen || n > blen - off)
                return errctx_set(e, SYNC_EDATA, "a delta copies past the end of its base");
            from = (const uint8_t *)base + off;
        } else if (op != 0) {
            n = op;
            if ((size_t)(end - p) < n)
                return errctx_set(e, SYNC_EDATA, "a delta's insert is cut short");
            from = p;
            p += n;
        } else {
            return errctx_set(e, SYNC_EDATA, "a delta holds the reserved instruction 0");
        }
        if (n > want - out->len)
            return errctx_set(e, SYNC_EDATA, "a delta makes more than the %llu bytes it names",
                              (unsigned long long)want);
        if ((rc = buf_put(out, from, (size_t)n, e)) != SYNC_OK)
            return rc;
    }
    if (out->len != want)
        return errctx_set(e, SYNC_EDATA, "a delta makes %zu bytes, not the %llu it names", out->len,
                          (unsigned long long)want);
    return SYNC_OK;
}

int packfile_index(struct buf *idx, const struct packfile_obj *o, uint32_t n,
                   const uint8_t packsum[PACKFILE_ID_LEN], struct errctx *e)
{
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned int shalen = 0;
    uint32_t i, k = 0, large = 0;
    int rc;

    if ((rc = buf_put(idx, "\377tOc", 4, e)) != SYNC_OK || (rc = buf_put_u32(idx, 2, e)) != SYNC_OK)
        return rc;
    for (int b = 0; b < 256; b++) {
        while (k < n && o[k].id[0] <= b)
            k++;
        if ((rc = buf_put_u32(idx, k, e)) != SYNC_OK)
            return rc;
    }
    for (i = 0; i < n && rc == SYNC_OK; i++)
        rc = buf_put(idx, o[i].id, PACKFILE_ID_LEN, e);
    for (i = 0; i < n && rc == SYNC_OK; i++)
        rc = buf_put_u32(idx, o[i].crc, e);
    for (i = 0; i < n && rc == SYNC_OK; i++)
        rc = buf_put_u32(idx, o[i].off < 0x80000000u ? (uint32_t)o[i].off : 0x80000000u | large++,
                         e);
    for (i = 0; i < n && rc == SYNC_OK; i++)
        if (o[i].off >= 0x80000000u)
            rc = buf_put_u64(idx, o[i].off, e);
    if (rc != SYNC_OK || (rc = buf_put(idx, packsum, PACKFILE_ID_LEN, e)) != SYNC_OK)
        return rc;
    if (EVP_Digest(idx->data, idx->len, sha, &shalen, gittree_sha1(), NULL) != 1 || shalen != 20)
        return errctx_set(e, SYNC_ENOMEM, "cannot checksum a pack index");
    return buf_put(idx, sha, PACKFILE_ID_LEN, e);
}

int packfile_put_durable(const char *dir, const char *name, const void *p, size_t n,
                         struct errctx *e)
{
    char tmp[4200], path[4200];
    size_t done = 0;
    int fd, rc = SYNC_OK;

    snprintf(tmp, sizeof(tmp), "%s/tmp_empact_XXXXXX", dir);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((fd = mkstemp(tmp)) < 0)
        return errctx_set(e, SYNC_EIO, "cannot create a file in %s: %s", dir, strerror(errno));
    while (done < n && rc == SYNC_OK) {
        ssize_t w = write(fd, (const uint8_t *)p + done, n - done);
        if (w < 0 && errno != EINTR)
            rc = errctx_set(e, SYNC_EIO, "cannot write %s: %s", path, strerror(errno));
        else if (w > 0)
            done += (size_t)w;
    }
    if (rc == SYNC_OK && (fchmod(fd, 0444) != 0 || fsync(fd) != 0))
        rc = errctx_set(e, SYNC_EIO, "cannot write %s: %s", path, strerror(errno));
    if (close(fd) != 0 && rc == SYNC_OK)
        rc = errctx_set(e, SYNC_EIO, "cannot write %s: %s", path, strerror(errno));
    if (rc == SYNC_OK && rename(tmp, path) != 0)
        rc = errctx_set(e, SYNC_EIO, "cannot rename %s into place: %s", path, strerror(errno));
    if (rc != SYNC_OK)
        (void)unlink(tmp);
    return rc;
}

/* ---- reading -------------------------------------------------------------------- */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t packfile_idx_off(const struct packfile_idx *x, uint32_t i)
{
    uint32_t v = get_u32(x->offs + 4 * (size_t)i);
    const uint8_t *l;

    if (!(v & 0x80000000u))
        return v;
    l = x->large + 8 * (size_t)(v & 0x7fffffffu);
    return (uint64_t)get_u32(l) << 32 | get_u32(l + 4);
}

int packfile_idx_parse(struct packfile_idx *x, const void *p, size_t n, uint64_t packlen,
                       struct errctx *e)
{
    const uint8_t *b = p;
    uint32_t prev = 0, count;
    size_t need;

    memset(x, 0, sizeof(*x));
    if (n < 8 + 256 * 4 + 2 * PACKFILE_ID_LEN || memcmp(b, "\377tOc", 4) != 0 ||
        get_u32(b + 4) != 2)
        return errctx_set(e, SYNC_EDATA, "a pack index is not a version 2 index");
    for (int k = 0; k < 256; k++) {
        uint32_t v = get_u32(b + 8 + 4 * k);
        if (v < prev)
            return errctx_set(e, SYNC_EDATA, "a pack index's fan-out table goes backwards");
        prev = v;
    }
    count = prev;
    need = 8 + 256 * 4 + 2 * PACKFILE_ID_LEN;
    if ((n - need) / 28 < count)
        return errctx_set(e, SYNC_EDATA, "a pack index names %u objects but is %zu bytes long",
                          count, n);
    x->n = count;
    x->ids = b + 8 + 256 * 4;
    x->crcs = x->ids + (size_t)count * PACKFILE_ID_LEN;
    x->offs = x->crcs + (size_t)count * 4;
    x->large = x->offs + (size_t)count * 4;
    for (uint32_t i = 0; i < count; i++)
        if (get_u32(x->offs + 4 * (size_t)i) & 0x80000000u)
            x->nlarge++;
    need += (size_t)count * 28 + (size_t)x->nlarge * 8;
    if (n != need)
        return errctx_set(e, SYNC_EDATA, "a pack index of %u objects is %zu bytes, not %zu", count,
                          n, need);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t v = get_u32(x->offs + 4 * (size_t)i);
        uint64_t off;
        int first;

        if ((v & 0x80000000u) && (v & 0x7fffffffu) >= x->nlarge)
            return errctx_set(e, SYNC_EDATA, "a pack index points past its table of offsets");
        off = packfile_idx_off(x, i);
        if (off < 12 || packlen < 12 + PACKFILE_ID_LEN || off >= packlen - PACKFILE_ID_LEN)
            return errctx_set(e, SYNC_EDATA,
                              "a pack index puts an object at byte %llu of a %llu-byte pack",
                              (unsigned long long)off, (unsigned long long)packlen);
        if (i > 0 && memcmp(x->ids + (size_t)(i - 1) * PACKFILE_ID_LEN,
                            x->ids + (size_t)i * PACKFILE_ID_LEN, PACKFILE_ID_LEN) >= 0)
            return errctx_set(e, SYNC_EDATA, "a pack index's ids are not in order");
        first = x->ids[(size_t)i * PACKFILE_ID_LEN];
        if ((first > 0 && i < get_u32(b + 8 + 4 * (first - 1))) || i >= get_u32(b + 8 + 4 * first))
            return errctx_set(e, SYNC_EDATA, "a pack index's fan-out table disagrees with its ids");
    }
    return SYNC_OK;
}

int packfile_entry_parse(int *type, uint64_t *size, size_t *used, const uint8_t *p, size_t avail,
                         struct errctx *e)
{
    uint64_t v;
    size_t n = 0;
    int shift = 4;

    if (avail == 0)
        return errctx_set(e, SYNC_EDATA, "a pack entry is cut short");
    *type = (p[0] >> 4) & 7;
    v = p[0] & 0x0f;
    while (p[n] & 0x80) {
        if (++n >= avail || shift > 57)
            return errctx_set(e, SYNC_EDATA, "a pack entry's size is cut short or too large");
        v |= (uint64_t)(p[n] & 0x7f) << shift;
        shift += 7;
    }
    if (*type == 0 || *type == 5)
        return errctx_set(e, SYNC_EDATA, "a pack entry has type %d, which git does not use", *type);
    *size = v;
    *used = n + 1;
    return SYNC_OK;
}

int packfile_ofs_decode(uint64_t *distance, size_t *used, const uint8_t *p, size_t avail,
                        struct errctx *e)
{
    uint64_t v;
    size_t n = 0;

    if (avail == 0)
        return errctx_set(e, SYNC_EDATA, "a pack entry's base distance is cut short");
    v = p[0] & 0x7f;
    while (p[n] & 0x80) {
        if (++n >= avail || v >= (UINT64_C(1) << 56))
            return errctx_set(e, SYNC_EDATA,
                              "a pack entry's base distance is cut short or too large");
        v = ((v + 1) << 7) | (p[n] & 0x7f);
    }
    if (v == 0)
        return errctx_set(e, SYNC_EDATA, "a pack entry is its own base");
    *distance = v;
    *used = n + 1;
    return SYNC_OK;
}
