/*
 * zcodec.c - zstd compression of changesets with a hard bound on output.
 *
 * Byte format: standard zstd (RFC 8878).  A payload is one or more zstd
 * frames back to back, possibly with skippable frames among them; the
 * output is the concatenation of the frames' contents.  Our compressor writes
 * a single frame at level ZSTD_LEVEL with the content size in its header.
 *
 * Decompression trusts nothing in the input:
 *  - if a frame header states a content size larger than what is left of
 *    max_out, the payload is refused with SYNC_ELIMIT before any output is
 *    allocated;
 *  - the size may also be absent or false, so the data is decoded with the
 *    streaming API into an output window that never extends past max_out;
 *    when max_out bytes have been produced, one more byte is asked for in a
 *    scratch byte on the stack, and getting it means the content is too big;
 *  - the output buffer grows with the data produced, not with the claim, so
 *    a few bytes of input cannot make us allocate max_out;
 *  - the decoder's window is capped at ZCODEC_WINDOW_LOG_MAX, so a frame
 *    cannot ask for a large history buffer either.
 * On any failure out is truncated back to its length on entry.
 *
 * Test builds log what goes into the compressor and comes out of the
 * decompressor to $EMPACT_FRAME_LOG (testpoint.h): with the frames that
 * frame.c logs, that is every plaintext byte a connection carries.
 */
#include "zcodec.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <zdict.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "testpoint.h"

struct zdict {
    uint32_t id;
    void *bytes;
    size_t size;
    ZSTD_CDict *cdict; /* level ZSTD_LEVEL */
    ZSTD_DDict *ddict;
};

int zdict_load(struct zdict **out, const void *p, size_t n, struct errctx *e)
{
    struct zdict *d;
    unsigned id;

    *out = NULL;
    if (n < ZDICT_SIZE_MIN || n > ZDICT_SIZE_MAX)
        return errctx_set(e, SYNC_EPROTO,
                          "a compression dictionary of %zu bytes is outside %u..%u bytes", n,
                          ZDICT_SIZE_MIN, ZDICT_SIZE_MAX);
    if ((id = ZDICT_getDictID(p, n)) == 0)
        return errctx_set(e, SYNC_EPROTO, "not a zstd dictionary (no dictionary id)");
    if ((d = calloc(1, sizeof(*d))) == NULL || (d->bytes = malloc(n)) == NULL) {
        free(d);
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    }
    memcpy(d->bytes, p, n);
    d->size = n;
    d->id = id;
    d->cdict = ZSTD_createCDict(d->bytes, n, ZSTD_LEVEL);
    d->ddict = ZSTD_createDDict(d->bytes, n);
    if (d->cdict == NULL || d->ddict == NULL) {
        zdict_free(d);
        return errctx_set(e, SYNC_EPROTO, "zstd dictionary %u is damaged", id);
    }
    *out = d;
    return SYNC_OK;
}

uint32_t zdict_id(const struct zdict *d)
{
    return d ? d->id : 0;
}

const void *zdict_bytes(const struct zdict *d)
{
    return d->bytes;
}

size_t zdict_size(const struct zdict *d)
{
    return d->size;
}

void zdict_free(struct zdict *d)
{
    if (d == NULL)
        return;
    ZSTD_freeCDict(d->cdict);
    ZSTD_freeDDict(d->ddict);
    free(d->bytes);
    free(d);
}

uint32_t zcodec_frame_dict(const void *p, size_t n)
{
    return n >= 4 ? ZSTD_getDictID_fromFrame(p, n) : 0;
}

int zdict_train(struct buf *out, size_t cap, const void *samples, const size_t *sizes,
                unsigned nsamples, struct errctx *e)
{
    size_t got;
    int rc;

    if (nsamples < ZDICT_MIN_SAMPLES)
        return errctx_set(e, SYNC_EDATA, "%u sample rows are too few to train on (at least %d)",
                          nsamples, ZDICT_MIN_SAMPLES);
    if ((rc = buf_reserve(out, cap, e)) != SYNC_OK)
        return rc;
    got = ZDICT_trainFromBuffer(out->data + out->len, cap, samples, sizes, nsamples);
    if (ZDICT_isError(got))
        return errctx_set(e, SYNC_EDATA, "zstd could not train a dictionary from %u rows: %s",
                          nsamples, ZDICT_getErrorName(got));
    if (got < ZDICT_SIZE_MIN)
        return errctx_set(e, SYNC_EDATA,
                          "the %u sample rows gave a %zu-byte dictionary, too small to use",
                          nsamples, got);
    out->len += got;
    return SYNC_OK;
}

/* zcodec_compress_parts() through cctx (fresh, or reset by the caller). */
static int compress_with(ZSTD_CCtx *cctx, struct buf *out, const void *const *parts,
                         const size_t *lens, int nparts, const struct zdict *d, struct errctx *e)
{
    ZSTD_outBuffer ob;
    size_t total = 0, bound, r = 0;
    int rc;

    for (int i = 0; i < nparts; i++) {
        testpoint_frame_log("zstd-in", -1, parts[i], lens[i]);
        if (total + lens[i] < total)
            return errctx_set(e, SYNC_ELIMIT, "cannot compress that many bytes");
        total += lens[i];
    }
    bound = ZSTD_compressBound(total);
    if (nparts < 1 || ZSTD_isError(bound))
        return errctx_set(e, SYNC_ELIMIT, "cannot compress %zu bytes: too large for zstd", total);
    /* reserved, not touched: only the pages the frame fills become resident */
    if ((rc = buf_reserve(out, bound, e)) != SYNC_OK)
        return rc;
    if (ZSTD_isError(r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
        ZSTD_isError(r = ZSTD_CCtx_setPledgedSrcSize(cctx, total)) ||
        (d != NULL && ZSTD_isError(r = ZSTD_CCtx_refCDict(cctx, d->cdict))))
        goto out;
    ob.dst = out->data + out->len;
    ob.size = bound;
    ob.pos = 0;
    for (int i = 0; i < nparts; i++) {
        ZSTD_inBuffer ib = {lens[i] > 0 ? parts[i] : "", lens[i], 0};
        ZSTD_EndDirective end = i == nparts - 1 ? ZSTD_e_end : ZSTD_e_continue;
        do {
            r = ZSTD_compressStream2(cctx, &ob, &ib, end);
        } while (!ZSTD_isError(r) && (end == ZSTD_e_end ? r != 0 : ib.pos < ib.size));
        if (ZSTD_isError(r))
            break;
    }
out:
    if (ZSTD_isError(r))
        return errctx_set(e, SYNC_ENOMEM, "zstd could not compress %zu bytes: %s", total,
                          ZSTD_getErrorName(r));
    out->len += ob.pos;
    return SYNC_OK;
}

struct zenc {
    ZSTD_CCtx *cctx;
};

int zenc_new(struct zenc **out, struct errctx *e)
{
    if ((*out = calloc(1, sizeof(**out))) == NULL || ((*out)->cctx = ZSTD_createCCtx()) == NULL) {
        free(*out);
        *out = NULL;
        return errctx_set(e, SYNC_ENOMEM, "out of memory creating a zstd encoder");
    }
    return SYNC_OK;
}

void zenc_free(struct zenc *z)
{
    if (z == NULL)
        return;
    ZSTD_freeCCtx(z->cctx);
    free(z);
}

/* A one-shot frame: a fresh encoder, used once. */
int zcodec_compress_parts(struct buf *out, const void *const *parts, const size_t *lens, int nparts,
                          const struct zdict *d, struct errctx *e)
{
    struct zenc *z = NULL;
    int rc = zenc_new(&z, e);

    if (rc == SYNC_OK)
        rc = compress_with(z->cctx, out, parts, lens, nparts, d, e);
    zenc_free(z);
    return rc;
}

int zenc_compress(struct zenc *z, struct buf *out, const void *p, size_t n, const struct zdict *d,
                  struct errctx *e)
{
    size_t r = ZSTD_CCtx_reset(z->cctx, ZSTD_reset_session_and_parameters);

    if (ZSTD_isError(r))
        return errctx_set(e, SYNC_ENOMEM, "cannot reset a zstd encoder: %s", ZSTD_getErrorName(r));
    return compress_with(z->cctx, out, &p, &n, 1, d, e);
}

int zcodec_compress_dict(struct buf *out, const void *p, size_t n, const struct zdict *d,
                         struct errctx *e)
{
    return zcodec_compress_parts(out, &p, &n, 1, d, e);
}

int zcodec_compress(struct buf *out, const void *p, size_t n, struct errctx *e)
{
    return zcodec_compress_dict(out, p, n, NULL, e);
}

/* Refuses the frame at p early if its header claims more than budget bytes.
 * An absent size is fine here: the streaming loop enforces the bound. */
static int claim_check(const uint8_t *p, size_t n, size_t budget, struct errctx *e)
{
    unsigned long long claim = ZSTD_getFrameContentSize(p, n);

    if (claim == ZSTD_CONTENTSIZE_ERROR)
        return errctx_set(e, SYNC_EPROTO,
                          "compressed payload is not valid zstd: bad or truncated frame header");
    if (claim != ZSTD_CONTENTSIZE_UNKNOWN && claim > budget)
        return errctx_set(e, SYNC_ELIMIT,
                          "compressed payload claims %llu bytes, more than the %zu bytes allowed",
                          claim, budget);
    return SYNC_OK;
}

/* Turns a zstd error from the decoder into our code and a sentence. */
static int decode_error(size_t zrc, struct errctx *e)
{
    switch (ZSTD_getErrorCode(zrc)) {
    case ZSTD_error_frameParameter_windowTooLarge:
        return errctx_set(e, SYNC_ELIMIT,
                          "compressed payload needs a zstd window above the limit of %d MiB",
                          1 << (ZCODEC_WINDOW_LOG_MAX - 20));
    case ZSTD_error_memory_allocation:
        return errctx_set(e, SYNC_ENOMEM, "out of memory decompressing a payload");
    default:
        return errctx_set(e, SYNC_EPROTO, "compressed payload is not valid zstd: %s",
                          ZSTD_getErrorName(zrc));
    }
}

/* Room for the next decoder call: what the buffer already has, grown when
 * full, but never past max_out. Sets *room to the usable byte count. */
static int make_room(struct buf *out, size_t produced, size_t max_out, size_t *room,
                     struct errctx *e)
{
    size_t left = max_out - produced;
    int rc;

    if (out->cap == out->len) {
        size_t step = ZSTD_DStreamOutSize();
        if ((rc = buf_reserve(out, step < left ? step : left, e)) != SYNC_OK)
            return rc;
    }
    *room = out->cap - out->len < left ? out->cap - out->len : left;
    return SYNC_OK;
}

/* At the start of a frame: the dictionary it names must be d's (or none). */
static int frame_dict(ZSTD_DCtx *dctx, const uint8_t *p, size_t n, const struct zdict *d,
                      struct errctx *e)
{
    unsigned want = ZSTD_getDictID_fromFrame(p, n);
    size_t zrc;

    if (want != 0 && (d == NULL || d->id != want))
        return errctx_set(e, SYNC_EPROTO,
                          "compressed payload needs zstd dictionary %u, which this side does "
                          "not have",
                          want);
    zrc = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_only);
    if (!ZSTD_isError(zrc))
        zrc = ZSTD_DCtx_refDDict(dctx, want != 0 ? d->ddict : NULL);
    if (ZSTD_isError(zrc))
        return errctx_set(e, SYNC_ENOMEM, "cannot set the zstd decoder's dictionary: %s",
                          ZSTD_getErrorName(zrc));
    return SYNC_OK;
}

/* The streaming loop; the caller owns dctx and restores out on failure. */
static int decode(ZSTD_DCtx *dctx, struct buf *out, const uint8_t *p, size_t n, size_t max_out,
                  const struct zdict *d, struct errctx *e)
{
    ZSTD_inBuffer in = {p, n, 0};
    size_t produced = 0;
    size_t zrc = 1; /* 0 once the current frame is complete */
    int rc;

    for (;;) {
        uint8_t probe;
        ZSTD_outBuffer ob;
        size_t room;

        if (zrc == 0 && in.pos == in.size)
            return SYNC_OK;
        if (zrc == 0 &&
            ((rc = claim_check(p + in.pos, n - in.pos, max_out - produced, e)) != SYNC_OK ||
             (rc = frame_dict(dctx, p + in.pos, n - in.pos, d, e)) != SYNC_OK))
            return rc;
        if (produced < max_out) {
            if ((rc = make_room(out, produced, max_out, &room, e)) != SYNC_OK)
                return rc;
            ob = (ZSTD_outBuffer){out->data + out->len, room, 0};
        } else {
            /* At the bound: any further byte means the content is too large. */
            ob = (ZSTD_outBuffer){&probe, 1, 0};
        }
        size_t in_before = in.pos;
        zrc = ZSTD_decompressStream(dctx, &ob, &in);
        if (ZSTD_isError(zrc))
            return decode_error(zrc, e);
        if (produced == max_out && ob.pos > 0)
            return errctx_set(e, SYNC_ELIMIT,
                              "compressed payload expands to more than the %zu bytes allowed",
                              max_out);
        if (produced < max_out) {
            out->len += ob.pos;
            produced += ob.pos;
        }
        /* No input left, no output made although there was room: the frame
         * can never be finished. */
        if (zrc != 0 && in.pos == in.size && in.pos == in_before && ob.pos == 0)
            return errctx_set(e, SYNC_EPROTO,
                              "compressed payload is truncated: its last zstd frame is incomplete");
    }
}

/* A decoder configured for our frames (window bounded). */
static ZSTD_DCtx *dctx_new(struct errctx *e)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t zrc;

    if (dctx == NULL) {
        (void)errctx_set(e, SYNC_ENOMEM, "out of memory creating a zstd decoder");
        return NULL;
    }
    zrc = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZCODEC_WINDOW_LOG_MAX);
    if (ZSTD_isError(zrc)) {
        (void)errctx_set(e, SYNC_ENOMEM, "cannot configure the zstd decoder: %s",
                         ZSTD_getErrorName(zrc));
        ZSTD_freeDCtx(dctx);
        return NULL;
    }
    return dctx;
}

/* zcodec_decompress_dict() through dctx (each frame resets its session). */
static int decompress_with(ZSTD_DCtx *dctx, struct buf *out, const void *p, size_t n,
                           size_t max_out, const struct zdict *d, struct errctx *e)
{
    size_t len0 = out->len;
    int rc;

    assert(max_out <= (size_t)CHANGESET_MAX);
    if (max_out > (size_t)CHANGESET_MAX)
        max_out = (size_t)CHANGESET_MAX;
    if (n == 0)
        return errctx_set(e, SYNC_EPROTO, "compressed payload is empty");
    if ((rc = claim_check(p, n, max_out, e)) != SYNC_OK)
        return rc;
    if ((rc = frame_dict(dctx, p, n, d, e)) == SYNC_OK)
        rc = decode(dctx, out, p, n, max_out, d, e);
    if (rc != SYNC_OK)
        out->len = len0;
    else
        testpoint_frame_log("zstd-out", -1, out->data + len0, out->len - len0);
    return rc;
}

struct zdec {
    ZSTD_DCtx *dctx;
};

int zdec_new(struct zdec **out, struct errctx *e)
{
    if ((*out = calloc(1, sizeof(**out))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory creating a zstd decoder");
    if (((*out)->dctx = dctx_new(e)) == NULL) {
        free(*out);
        *out = NULL;
        return e->code;
    }
    return SYNC_OK;
}

void zdec_free(struct zdec *z)
{
    if (z == NULL)
        return;
    ZSTD_freeDCtx(z->dctx);
    free(z);
}

int zdec_decompress(struct zdec *z, struct buf *out, const void *p, size_t n, size_t max_out,
                    const struct zdict *d, struct errctx *e)
{
    return decompress_with(z->dctx, out, p, n, max_out, d, e);
}

/* A one-shot decode: a fresh decoder, used once. */
int zcodec_decompress_dict(struct buf *out, const void *p, size_t n, size_t max_out,
                           const struct zdict *d, struct errctx *e)
{
    struct zdec *z = NULL;
    int rc = zdec_new(&z, e);

    if (rc == SYNC_OK)
        rc = zdec_decompress(z, out, p, n, max_out, d, e);
    zdec_free(z);
    return rc;
}

int zcodec_decompress(struct buf *out, const void *p, size_t n, size_t max_out, struct errctx *e)
{
    return zcodec_decompress_dict(out, p, n, max_out, NULL, e);
}
