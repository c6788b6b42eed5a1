/*
 * gittree.c - git tree objects as bytes (see gittree.h).
 */
#include "gittree.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MODE_DIR "40000"
#define MODE_ROW "100644"

static EVP_MD *md_sha1, *md_sha256;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_fetch(void)
{
    md_sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *gittree_sha1(void)
{
    pthread_once(&md_once, md_fetch);
    return md_sha1 != NULL ? md_sha1 : EVP_sha1();
}

const EVP_MD *gittree_sha256(void)
{
    pthread_once(&md_once, md_fetch);
    return md_sha256 != NULL ? md_sha256 : EVP_sha256();
}

void gittree_iter_init(struct gittree_iter *it, const void *body, size_t len)
{
    memset(it, 0, sizeof(*it));
    it->p = body;
    it->end = body != NULL ? it->p + len : it->p; /* no arithmetic on NULL */
}

int gittree_cmp(const char *a, size_t alen, int adir, const char *b, size_t blen, int bdir)
{
    size_t n = alen < blen ? alen : blen;
    int c = memcmp(a, b, n);
    unsigned char ca, cb;

    if (c != 0)
        return c;
    ca = n < alen ? (unsigned char)a[n] : adir ? '/' : '\0';
    cb = n < blen ? (unsigned char)b[n] : bdir ? '/' : '\0';
    return ca < cb ? -1 : ca > cb ? 1 : 0;
}

int gittree_next(struct gittree_iter *it, struct gittree_entry *out, struct errctx *e)
{
    const uint8_t *p = it->p, *sp, *nul;
    size_t left = (size_t)(it->end - p);

    if (left == 0)
        return 0;
    if ((sp = memchr(p, ' ', left < 8 ? left : 8)) == NULL)
        return errctx_set(e, SYNC_EDATA, "malformed git tree: an entry has no mode");
    if ((size_t)(sp - p) == strlen(MODE_DIR) && memcmp(p, MODE_DIR, strlen(MODE_DIR)) == 0)
        out->dir = 1;
    else if ((size_t)(sp - p) == strlen(MODE_ROW) && memcmp(p, MODE_ROW, strlen(MODE_ROW)) == 0)
        out->dir = 0;
    else
        return errctx_set(e, SYNC_EDATA, "malformed git tree: mode \"%.*s\" is not %s or %s",
                          (int)(sp - p), (const char *)p, MODE_DIR, MODE_ROW);
    sp++;
    if ((nul = memchr(sp, '\0', (size_t)(it->end - sp))) == NULL ||
        (size_t)(it->end - nul) < 1 + GITTREE_ID_LEN)
        return errctx_set(e, SYNC_EDATA, "malformed git tree: the last entry is cut short");
    out->name = (const char *)sp;
    out->len = (size_t)(nul - sp);
    out->id = nul + 1;
    out->raw = p;
    out->rawlen = (size_t)(nul + 1 + GITTREE_ID_LEN - p);
    if (out->len == 0 || memchr(out->name, '/', out->len) != NULL)
        return errctx_set(e, SYNC_EDATA,
                          "malformed git tree: an entry's name is empty or has a '/'");
    if (it->started &&
        gittree_cmp(it->prev.name, it->prev.len, it->prev.dir, out->name, out->len, out->dir) >= 0)
        return errctx_set(e, SYNC_EDATA, "malformed git tree: \"%.*s\" is out of order",
                          (int)(out->len > 200 ? 200 : out->len), out->name);
    it->prev = *out;
    it->started = 1;
    it->p = nul + 1 + GITTREE_ID_LEN;
    return 1;
}

static int put_entry(struct buf *out, const char *name, size_t len, int dir, const uint8_t *id,
                     struct errctx *e)
{
    const char *mode = dir ? MODE_DIR " " : MODE_ROW " ";
    size_t mlen = strlen(mode);
    int rc;

    if ((rc = buf_reserve(out, mlen + len + 1 + GITTREE_ID_LEN, e)) != SYNC_OK)
        return rc;
    memcpy(out->data + out->len, mode, mlen);
    memcpy(out->data + out->len + mlen, name, len);
    out->data[out->len + mlen + len] = '\0';
    memcpy(out->data + out->len + mlen + len + 1, id, GITTREE_ID_LEN);
    out->len += mlen + len + 1 + GITTREE_ID_LEN;
    return SYNC_OK;
}

int gittree_merge(struct buf *out, const void *old, size_t len, const struct gittree_change *ch,
                  size_t n, struct errctx *e)
{
    struct gittree_iter it;
    struct gittree_entry cur;
    int have, rc = SYNC_OK;
    size_t j = 0;

    gittree_iter_init(&it, old, len);
    if ((have = gittree_next(&it, &cur, e)) < 0)
        return have;
    while (have || j < n) {
        const struct gittree_change *c;
        int cmp;

        /* of several changes to one name, the last */
        while (j + 1 < n && ch[j].len == ch[j + 1].len &&
               memcmp(ch[j].name, ch[j + 1].name, ch[j].len) == 0)
            j++;
        c = j < n ? &ch[j] : NULL;
        if (c != NULL && have && c->dir != cur.dir)
            return errctx_set(e, SYNC_EDATA,
                              "git tree: \"%.*s\" would mix rows and directories in one tree",
                              (int)(c->len > 200 ? 200 : c->len), c->name);
        cmp = c == NULL ? -1
              : !have   ? 1
                        : gittree_cmp(cur.name, cur.len, cur.dir, c->name, c->len, c->dir);
        if (cmp < 0) /* an old entry no change names: as it was */
            rc = buf_put(out, cur.raw, cur.rawlen, e);
        else if (!c->remove)
            rc = put_entry(out, c->name, c->len, c->dir, c->id, e);
        if (rc != SYNC_OK)
            return rc;
        if (cmp <= 0 && (have = gittree_next(&it, &cur, e)) < 0)
            return have;
        if (cmp >= 0)
            j++;
    }
    return SYNC_OK;
}

int gittree_object_id(uint8_t out[GITTREE_ID_LEN], const char *type, const void *p, size_t n,
                      struct errctx *e)
{
    char hdr[64];
    int h = snprintf(hdr, sizeof(hdr), "%s %zu", type, n);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = ctx != NULL && h > 0 && (size_t)h < sizeof(hdr) &&
             EVP_DigestInit_ex(ctx, gittree_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, hdr, (size_t)h + 1) == 1 && EVP_DigestUpdate(ctx, p, n) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == GITTREE_ID_LEN;

    EVP_MD_CTX_free(ctx);
    return ok ? SYNC_OK : errctx_set(e, SYNC_ENOMEM, "cannot compute a git object id");
}
