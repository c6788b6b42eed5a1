/*
 * gitpack.c - folds history.git's loose objects and small packs into one
 * pack (see gitpack.h).
 *
 * Steps, each finished before the next starts:
 *   1. list objects/XX/YYYY... (the loose objects) and choose the packs to
 *      fold: sorted by how many objects they hold, every pack below the
 *      smallest one that holds at least twice as many as all smaller ones
 *      together (and the loose objects).  The packs kept so grow
 *      geometrically, so an object is repacked O(log n) times over the life
 *      of the repository, and a fold costs what the recent versions hold,
 *      not the whole history.  Objects, not bytes: a version's own pack
 *      holds its objects uncompressed (gitmap.c) and a fold's pack
 *      compressed, against one another, so by bytes a hundred small
 *      versions outweighed the history folded before them and every fold
 *      compressed it all again;
 *   2. git_packbuilder_insert every object of those, git_packbuilder_write
 *      into objects/pack (libgit2's indexer writes pack and index to
 *      temporary files and renames them into place);
 *   3. fsync the new .pack, .idx and objects/pack, so the pack survives a
 *      power cut before any old copy goes;
 *   4. open the new pack's index alone; remove each loose object it names,
 *      and each folded pack (its .idx first, then its .pack) all of whose
 *      objects it holds.
 */
#include "gitpack.h"

#include "gitmap.h"
#include "gittree.h"
#include "packfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <libdeflate.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A list of object ids. */
struct ids {
    git_oid *v;
    size_t n, cap;
};

static int ids_add(struct ids *l, const git_oid *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        git_oid *p = reallocarray(l->v, cap, sizeof(*p));
        if (p == NULL)
            return -1;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = *id;
    return 0;
}

static int git_fail(struct errctx *e, const char *what)
{
    const git_error *ge = git_error_last();
    return errctx_set(e, SYNC_EIO, "git: %s: %s", what, ge && ge->message ? ge->message : "failed");
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return s[n] == '\0';
}

/* Appends the ids of the loose objects under gitdir/objects to l. */
static int loose_list(struct ids *l, const char *gitdir, struct errctx *e)
{
    char path[4096], hex[41];
    int rc = SYNC_OK;

    for (int d = 0; d < 256 && rc == SYNC_OK; d++) {
        DIR *dir;
        struct dirent *de;

        snprintf(path, sizeof(path), "%s/objects/%02x", gitdir, d);
        if ((dir = opendir(path)) == NULL) {
            if (errno == ENOENT)
                continue;
            return errctx_set(e, SYNC_EIO, "cannot read %s: %s", path, strerror(errno));
        }
        while ((de = readdir(dir)) != NULL) {
            git_oid id;
            if (strlen(de->d_name) != 38 || !is_hex(de->d_name, 38))
                continue; /* tmp_obj_* and the like: not ours to touch */
            snprintf(hex, sizeof(hex), "%02x", d);
            memcpy(hex + 2, de->d_name, 38);
            hex[40] = '\0';
            if (git_oid_fromstr(&id, hex) == 0 && ids_add(l, &id) != 0) {
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
                break;
            }
        }
        closedir(dir);
    }
    return rc;
}

/* One pack of objects/pack: its name ("pack-<hash>") and how many objects
 * it holds. */
struct pack {
    char name[64];
    long long objects;
};

static int pack_cmp(const void *a, const void *b)
{
    const struct pack *x = a, *y = b;
    return x->objects < y->objects ? -1 : x->objects > y->objects;
}

/* The number of objects in a version 2 pack index: the last entry of its
 * fan-out table (big-endian, after the 8-byte header); -1 if unreadable. */
static long long idx_objects(const char *path)
{
    unsigned char b[4];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? pread(fd, b, 4, 8 + 255 * 4) : -1;

    if (fd >= 0)
        close(fd);
    if (got != 4)
        return -1;
    return (long long)b[0] << 24 | (long long)b[1] << 16 | (long long)b[2] << 8 | b[3];
}

/* Lists the packs of gitdir that have an index and no .keep file, smallest
 * first. */
static int pack_list(struct pack **out, size_t *n, const char *gitdir, struct errctx *e)
{
    char dir[4096], path[4200];
    struct dirent *de;
    struct pack *v = NULL;
    size_t cap = 0;
    DIR *d;

    *out = NULL;
    *n = 0;
    snprintf(dir, sizeof(dir), "%s/objects/pack", gitdir);
    if ((d = opendir(dir)) == NULL)
        return errno == ENOENT
                   ? SYNC_OK
                   : errctx_set(e, SYNC_EIO, "cannot read %s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        long long objects;

        if (len != 5 + 40 + 5 || strncmp(de->d_name, "pack-", 5) != 0 ||
            strcmp(de->d_name + 45, ".pack") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%.45s.keep", dir, de->d_name);
        if (access(path, F_OK) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%.45s.idx", dir, de->d_name);
        if ((objects = idx_objects(path)) < 0)
            continue; /* no index (being written: not ours yet) */
        if (*n == cap) {
            struct pack *p = reallocarray(v, cap ? cap * 2 : 16, sizeof(*p));
            if (p == NULL) {
                closedir(d);
                free(v);
                return errctx_set(e, SYNC_ENOMEM, "out of memory");
            }
            v = p;
            cap = cap ? cap * 2 : 16;
        }
        snprintf(v[*n].name, sizeof(v[*n].name), "%.45s", de->d_name);
        v[(*n)++].objects = objects;
    }
    closedir(d);
    if (*n > 1)
        qsort(v, *n, sizeof(*v), pack_cmp);
    *out = v;
    return SYNC_OK;
}

/* How many of the packs (fewest objects first) to fold, given the loose
 * objects: all below the first pack from which on each pack holds at least
 * twice as many objects as everything before it. */
static size_t fold_count(const struct pack *p, size_t n, long long loose)
{
    size_t m = n;
    long long before = loose;

    for (size_t j = 0; j < n; j++)
        before += p[j].objects;
    /* walk down from the largest while the progression holds */
    while (m > 0) {
        before -= p[m - 1].objects;
        if (p[m - 1].objects < 2 * before)
            break;
        m--;
    }
    return m;
}

static int add_one(const git_oid *id, void *payload)
{
    return ids_add(payload, id) == 0 ? 0 : -1;
}

/* Opens the pack gitdir/objects/pack/name.idx alone, in a new object store. */
static int pack_odb(git_odb **out, const char *gitdir, const char *name, struct errctx *e)
{
    git_odb_backend *one = NULL;
    char path[4200];

    *out = NULL;
    snprintf(path, sizeof(path), "%s/objects/pack/%s.idx", gitdir, name);
    if (git_odb_new(out) != 0 || git_odb_backend_one_pack(&one, path) != 0 ||
        git_odb_add_backend(*out, one, 1) != 0) {
        int rc = git_fail(e, "opening a pack");
        if (one != NULL && *out != NULL && !git_odb_num_backends(*out))
            one->free(one);
        git_odb_free(*out);
        *out = NULL;
        return rc;
    }
    return SYNC_OK;
}

/* Appends the ids of every object of pack name to l. */
static int pack_objects(struct ids *l, const char *gitdir, const char *name, struct errctx *e)
{
    git_odb *odb = NULL;
    int rc;

    if ((rc = pack_odb(&odb, gitdir, name, e)) != SYNC_OK)
        return rc;
    if (git_odb_foreach(odb, add_one, l) != 0)
        rc = git_fail(e, "listing a pack's objects");
    git_odb_free(odb);
    return rc;
}

/* ---- the fold: one pack written by hand ------------------------------------ */

/* Longest delta chain a fold makes (git's pack.depth), and the largest
 * object it tries a delta for. */
#define FOLD_DEPTH_MAX 50
#define FOLD_LEVEL 6 /* libdeflate's level for what a fold compresses */
#define FOLD_DELTA_MAX (16u * 1024 * 1024)
#define OUT_BUF (256 * 1024)
#define WRITEBACK_STEP (8u * 1024 * 1024)
#define TINY_OBJECT 128 /* bytes (most deltas, leaf trees): stored, not deflated */

/* A pack being folded, mapped read-only. */
struct src {
    const char *name;
    uint8_t *pack, *idxmap;
    size_t packlen, idxlen;
    struct packfile_idx idx;
    uint64_t *offs; /* its entries' offsets, ascending */
    uint32_t *objs; /* the fold's object number of each (parallel to offs) */
};

/* One object of the fold. */
struct fobj {
    uint8_t id[PACKFILE_ID_LEN];
    int32_t src;             /* its pack (index into srcs), or -1: a loose object */
    int32_t base;            /* its new delta base (object number), or -1 */
    uint8_t type;            /* its entry's type in its pack; a loose object's type */
    uint8_t fresh;           /* stored or loose: written anew (deflated), perhaps as a delta */
    uint8_t whole;           /* not a delta in its pack: may take a delta base, or be one */
    uint8_t is_base;         /* a copied delta's base: keeps its form (chain bound) */
    uint8_t state;           /* 0 not written, 1 being written, 2 written */
    uint64_t off, end, size; /* its entry in its pack; size inflated */
    uint32_t crc;            /* that entry's CRC-32 in the pack's index */
    uint32_t newcrc;
    uint64_t newoff;
};

struct fold {
    git_odb *odb; /* the repository's objects, for loose objects and older trees */
    struct src *srcs;
    size_t nsrcs;
    struct fobj *o;
    uint32_t n, cap;
    uint32_t *slot; /* open addressing by id: object number + 1, 0 empty */
    size_t nslot;
    struct libdeflate_decompressor *inf;
    struct libdeflate_compressor *def;
    struct buf body, body2, delta, check, z; /* scratch */
    /* the pack being written */
    int fd;
    char tmp[4200];
    EVP_MD_CTX *md;
    uint8_t *wbuf;
    size_t nw;
    uint64_t woff, synced; /* bytes written; of those, handed to writeback */
    uint32_t wcrc;
    size_t deltas; /* entries written as deltas */
    int deep;      /* walk every commit, not only the versions' own (walked()) */
};

static size_t slot_of(const struct fold *f, const uint8_t *id)
{
    uint64_t h;
    memcpy(&h, id, sizeof(h)); /* ids are uniform: their first bytes hash well */
    return (size_t)h & (f->nslot - 1);
}

/* The object number of id, or -1. */
static int32_t fold_find(const struct fold *f, const uint8_t *id)
{
    for (size_t k = slot_of(f, id);; k = (k + 1) & (f->nslot - 1)) {
        uint32_t v = f->slot[k];
        if (v == 0)
            return -1;
        if (memcmp(f->o[v - 1].id, id, PACKFILE_ID_LEN) == 0)
            return (int32_t)(v - 1);
    }
}

/* Adds id (not yet present) and returns its number in *num; the table is
 * sized for every object before the first add. */
static int fold_add(struct fold *f, const uint8_t *id, uint32_t *num, struct errctx *e)
{
    size_t k = slot_of(f, id);

    if (f->n == f->cap || f->n >= INT32_MAX)
        return errctx_set(e, SYNC_ENOMEM, "out of memory folding packs");
    while (f->slot[k] != 0)
        k = (k + 1) & (f->nslot - 1);
    memset(&f->o[f->n], 0, sizeof(f->o[f->n]));
    memcpy(f->o[f->n].id, id, PACKFILE_ID_LEN);
    f->o[f->n].src = -1;
    f->o[f->n].base = -1;
    f->slot[k] = f->n + 1;
    *num = f->n++;
    return SYNC_OK;
}

static int map_file(uint8_t **p, size_t *n, const char *path, struct errctx *e)
{
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = SYNC_OK;

    *p = NULL;
    *n = 0;
    if (fd < 0 || fstat(fd, &sb) != 0)
        rc = errctx_set(e, SYNC_EIO, "cannot read %s: %s", path, strerror(errno));
    else if (sb.st_size > 0 &&
             (*p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        *p = NULL;
        rc = errctx_set(e, SYNC_EIO, "cannot map %s: %s", path, strerror(errno));
    } else {
        *n = (size_t)sb.st_size;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static int off_cmp(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return *x < *y ? -1 : *x > *y;
}

/* The object number of the base of the delta entry k of s (at off..end,
 * header used bytes), if it is in the fold already (an OFS_DELTA's base is
 * earlier in its pack); -1 otherwise. */
static int32_t delta_base(const struct fold *f, const struct src *s, uint32_t k, uint64_t off,
                          uint64_t end, size_t used, int type)
{
    uint64_t dist;
    size_t n, lo = 0, hi = k;
    struct errctx ignored = {0, ""};

    if (type == PACKFILE_REF_DELTA)
        return end - off - used >= PACKFILE_ID_LEN ? fold_find(f, s->pack + off + used) : -1;
    if (packfile_ofs_decode(&dist, &n, s->pack + off + used, (size_t)(end - off - used),
                            &ignored) != SYNC_OK ||
        dist > off)
        return -1;
    while (lo < hi) { /* offs[0..k) are sorted */
        size_t mid = lo + (hi - lo) / 2;
        if (s->offs[mid] < off - dist)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < k && s->offs[lo] == off - dist ? (int32_t)s->objs[lo] : -1;
}

/* Maps pack name, checks its index and header, and adds its objects to the
 * fold (an object already there stays with its first pack). */
static int src_open(struct fold *f, struct src *s, const char *gitdir, const char *name,
                    struct errctx *e)
{
    char path[4200];
    uint64_t *pairs = NULL;
    int rc;

    s->name = name;
    snprintf(path, sizeof(path), "%s/objects/pack/%s.pack", gitdir, name);
    if ((rc = map_file(&s->pack, &s->packlen, path, e)) != SYNC_OK)
        return rc;
    snprintf(path, sizeof(path), "%s/objects/pack/%s.idx", gitdir, name);
    if ((rc = map_file(&s->idxmap, &s->idxlen, path, e)) != SYNC_OK)
        return rc;
    if ((rc = packfile_idx_parse(&s->idx, s->idxmap, s->idxlen, s->packlen, e)) != SYNC_OK)
        return errctx_set(e, rc, "%s.idx: %s", name, e->msg);
    if (s->pack == NULL || s->packlen < 12 + PACKFILE_ID_LEN || memcmp(s->pack, "PACK", 4) != 0 ||
        ((uint32_t)s->pack[8] << 24 | (uint32_t)s->pack[9] << 16 | (uint32_t)s->pack[10] << 8 |
         s->pack[11]) != s->idx.n)
        return errctx_set(e, SYNC_EDATA, "%s.pack does not hold the %u objects its index names",
                          name, s->idx.n);
    /* offset and index position, sorted by offset: an entry ends where the next begins */
    if ((pairs = calloc((size_t)s->idx.n + 1, 2 * sizeof(*pairs))) == NULL ||
        (s->offs = calloc((size_t)s->idx.n + 1, sizeof(*s->offs))) == NULL ||
        (s->objs = calloc((size_t)s->idx.n + 1, sizeof(*s->objs))) == NULL) {
        free(pairs);
        return errctx_set(e, SYNC_ENOMEM, "out of memory folding packs");
    }
    for (uint32_t i = 0; i < s->idx.n; i++) {
        pairs[2 * i] = packfile_idx_off(&s->idx, i);
        pairs[2 * i + 1] = i;
    }
    qsort(pairs, s->idx.n, 2 * sizeof(*pairs), off_cmp);
    for (uint32_t k = 0; k < s->idx.n && rc == SYNC_OK; k++) {
        uint32_t i = (uint32_t)pairs[2 * k + 1], num;
        const uint8_t *id = s->idx.ids + (size_t)i * PACKFILE_ID_LEN;
        uint64_t off = pairs[2 * k], end = k + 1 < s->idx.n ? pairs[2 * k + 2] : s->packlen - 20;
        const uint8_t *crc = s->idx.crcs + 4 * (size_t)i;
        struct fobj *o;
        int type;
        uint64_t size;
        size_t used;

        s->offs[k] = off;
        if (k > 0 && off == pairs[2 * k - 2]) {
            rc = errctx_set(e, SYNC_EDATA, "%s.idx puts two objects at byte %llu", name,
                            (unsigned long long)off);
            break;
        }
        if ((rc = packfile_entry_parse(&type, &size, &used, s->pack + off, (size_t)(end - off),
                                       e)) != SYNC_OK) {
            rc = errctx_set(e, rc, "%s.pack at byte %llu: %s", name, (unsigned long long)off,
                            e->msg);
            break;
        }
        if (type == PACKFILE_OFS_DELTA || type == PACKFILE_REF_DELTA) {
            /* its base keeps its form: a new base under it would make the
             * chain of this copied delta longer than any bound */
            int32_t b = delta_base(f, s, k, off, end, used, type);
            if (b >= 0)
                f->o[b].is_base = 1;
        }
        if (fold_find(f, id) >= 0) {
            s->objs[k] = (uint32_t)fold_find(f, id);
            continue; /* in an earlier pack too: written from there */
        }
        if ((rc = fold_add(f, id, &num, e)) != SYNC_OK)
            break;
        s->objs[k] = num;
        o = &f->o[num];
        o->src = (int32_t)(s - f->srcs);
        o->type = (uint8_t)type;
        o->off = off;
        o->end = end;
        o->size = size;
        o->crc = (uint32_t)crc[0] << 24 | (uint32_t)crc[1] << 16 | (uint32_t)crc[2] << 8 | crc[3];
        o->whole = type >= PACKFILE_COMMIT && type <= PACKFILE_BLOB;
        o->fresh = o->whole && packfile_is_stored(s->pack + off + used, (size_t)(end - off - used));
    }
    free(pairs);
    return rc;
}

/* The inflated bytes of object num into b and its type into *type (a loose
 * object, or a delta whose base is not in the fold: through libgit2). */
static int body_get(struct fold *f, uint32_t num, struct buf *b, int *type, struct errctx *e)
{
    struct fobj *o = &f->o[num];
    const struct src *s;
    int t;
    uint64_t size;
    size_t used, got;

    b->len = 0;
    *type = o->type;
    if (o->src < 0 || o->type >= PACKFILE_OFS_DELTA) {
        git_odb_object *obj = NULL;
        git_oid id;
        int rc;
        memcpy(id.id, o->id, PACKFILE_ID_LEN);
        if (git_odb_read(&obj, f->odb, &id) != 0)
            return git_fail(e, "reading an object to fold");
        *type = (int)git_odb_object_type(obj);
        rc = buf_put(b, git_odb_object_data(obj), git_odb_object_size(obj), e);
        git_odb_object_free(obj);
        return rc;
    }
    s = &f->srcs[o->src];
    if (packfile_entry_parse(&t, &size, &used, s->pack + o->off, (size_t)(o->end - o->off), e) !=
            SYNC_OK ||
        size >= UINT_MAX || o->end - o->off - used >= UINT_MAX)
        return errctx_set(e, SYNC_EDATA, "%s.pack: the entry at byte %llu cannot be read", s->name,
                          (unsigned long long)o->off);
    if (buf_reserve(b, (size_t)size + 1, e) != SYNC_OK)
        return e->code;
    /* exactly size bytes, and the stream's own check (adler32) must hold */
    if (libdeflate_zlib_decompress(f->inf, s->pack + o->off + used,
                                   (size_t)(o->end - o->off - used), b->data, (size_t)size,
                                   &got) != LIBDEFLATE_SUCCESS ||
        got != size)
        return errctx_set(e, SYNC_EDATA,
                          "%s.pack: the object at byte %llu does not inflate to %llu bytes",
                          s->name, (unsigned long long)o->off, (unsigned long long)size);
    b->len = (size_t)size;
    return SYNC_OK;
}

/* Any object's bytes (in the fold or older): *type 0 when it cannot be read. */
static int read_any(struct fold *f, const uint8_t *id, struct buf *b, int *type, struct errctx *e)
{
    int32_t num = fold_find(f, id);
    git_odb_object *obj = NULL;
    git_oid oid;
    int rc;

    *type = 0;
    if (num >= 0 && f->o[num].whole)
        return body_get(f, (uint32_t)num, b, type, e);
    memcpy(oid.id, id, PACKFILE_ID_LEN);
    if (git_odb_read(&obj, f->odb, &oid) != 0)
        return SYNC_OK; /* no base then; the object is written whole */
    b->len = 0;
    *type = (int)git_odb_object_type(obj);
    rc = buf_put(b, git_odb_object_data(obj), git_odb_object_size(obj), e);
    git_odb_object_free(obj);
    return rc;
}

/* Makes object base the delta base of old unless that would close a cycle
 * or pass the depth limit. */
static void try_base(struct fold *f, int32_t old, int32_t base)
{
    int depth = 0;

    if (old < 0 || base < 0 || old == base || !f->o[old].whole || !f->o[base].whole ||
        f->o[old].is_base || f->o[old].base >= 0 || f->o[old].type != f->o[base].type ||
        f->o[old].size > FOLD_DELTA_MAX || f->o[base].size > FOLD_DELTA_MAX)
        return;
    for (int32_t k = base; k >= 0; k = f->o[k].base) {
        if (k == old || ++depth >= FOLD_DEPTH_MAX)
            return;
    }
    f->o[old].base = base;
}

/* Paths of the dataset tree ("", "resource", "resource/ab", ...) and the
 * newest object of the fold seen at each, while commits are walked newest
 * first.  Keys live in one arena. */
struct pathmap {
    struct buf keys;
    size_t *koff;
    uint32_t *klen, *val; /* val: object number + 1, 0 for an empty slot */
    size_t n, cap;
};

static uint64_t path_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static size_t path_slot(const struct pathmap *m, const char *p, size_t n)
{
    size_t k = (size_t)path_hash(p, n) & (m->cap - 1);
    while (m->val[k] != 0 && !(m->klen[k] == n && memcmp(m->keys.data + m->koff[k], p, n) == 0))
        k = (k + 1) & (m->cap - 1);
    return k;
}

static int path_grow(struct pathmap *m, struct errctx *e)
{
    struct pathmap old = *m;
    size_t cap = m->cap ? m->cap * 2 : 1024;

    m->koff = calloc(cap, sizeof(*m->koff));
    m->klen = calloc(cap, sizeof(*m->klen));
    m->val = calloc(cap, sizeof(*m->val));
    m->cap = cap;
    if (m->koff == NULL || m->klen == NULL || m->val == NULL) {
        free(m->koff);
        free(m->klen);
        free(m->val);
        *m = old;
        return errctx_set(e, SYNC_ENOMEM, "out of memory folding packs");
    }
    for (size_t i = 0; i < old.cap; i++) {
        size_t k;
        if (old.val[i] == 0)
            continue;
        k = path_slot(m, (const char *)old.keys.data + old.koff[i], old.klen[i]);
        m->koff[k] = old.koff[i];
        m->klen[k] = old.klen[i];
        m->val[k] = old.val[i];
    }
    free(old.koff);
    free(old.klen);
    free(old.val);
    return SYNC_OK;
}

static void path_free(struct pathmap *m)
{
    buf_free(&m->keys);
    free(m->koff);
    free(m->klen);
    free(m->val);
}

/* Object num is at path p (n bytes) in an older commit than any noted so
 * far: the newer object noted there becomes its base, and it the one noted
 * (unless remember is 0: nothing older can be at p). */
static int path_note(struct fold *f, struct pathmap *m, const char *p, size_t n, int32_t num,
                     int remember, struct errctx *e)
{
    size_t k;
    int rc;

    if (num < 0 || !f->o[num].whole)
        return SYNC_OK;
    if (m->n * 2 >= m->cap && (rc = path_grow(m, e)) != SYNC_OK)
        return rc;
    k = path_slot(m, p, n);
    if (m->val[k] != 0)
        try_base(f, num, (int32_t)m->val[k] - 1);
    if (!remember)
        return SYNC_OK;
    if (m->val[k] == 0) {
        m->koff[k] = m->keys.len;
        m->klen[k] = (uint32_t)n;
        if ((rc = buf_put(&m->keys, p, n, e)) != SYNC_OK)
            return rc;
        m->n++;
    }
    m->val[k] = (uint32_t)num + 1;
    return SYNC_OK;
}

/* Notes each object of tree newer (at path, whose bytes are path->data[0..
 * plen)) that older (NULL: none) does not hold at the same name, and walks
 * into the directories that changed. */
static int pair_dir(struct fold *f, struct pathmap *m, struct buf *path, const uint8_t *newer,
                    const uint8_t *older, int level, struct errctx *e)
{
    struct buf nb = {0}, ob = {0};
    struct gittree_iter ni, oi;
    struct gittree_entry ne, oe;
    struct errctx ignored = {0, ""};
    size_t plen = path->len;
    int nt, ot = 0, ohas = 0, rc;

    if (level > 8)
        return SYNC_OK; /* deeper than any layout: leave it */
    if ((rc = read_any(f, newer, &nb, &nt, e)) != SYNC_OK || nt != GIT_OBJECT_TREE ||
        (older != NULL && (rc = read_any(f, older, &ob, &ot, e)) != SYNC_OK))
        goto out;
    if (ot != GIT_OBJECT_TREE)
        ob.len = 0;
    gittree_iter_init(&ni, nb.data, nb.len);
    gittree_iter_init(&oi, ob.data, ob.len);
    ohas = gittree_next(&oi, &oe, &ignored);
    while (rc == SYNC_OK && gittree_next(&ni, &ne, &ignored) == 1) {
        int c = 1;
        const uint8_t *sub = NULL;
        while (ohas == 1 && (c = gittree_cmp(oe.name, oe.len, oe.dir, ne.name, ne.len, ne.dir)) < 0)
            ohas = gittree_next(&oi, &oe, &ignored);
        if (ohas == 1 && c == 0 && memcmp(oe.id, ne.id, PACKFILE_ID_LEN) == 0)
            continue; /* unchanged */
        if (ohas == 1 && c == 0 && oe.dir)
            sub = oe.id;
        path->len = plen;
        if ((plen > 0 && (rc = buf_put_u8(path, '/', e)) != SYNC_OK) ||
            (rc = buf_put(path, ne.name, ne.len, e)) != SYNC_OK ||
            (rc = path_note(f, m, (const char *)path->data, path->len, fold_find(f, ne.id),
                            older != NULL, e)) != SYNC_OK)
            break;
        if (ne.dir)
            rc = pair_dir(f, m, path, ne.id, sub, level + 1, e);
    }
out:
    path->len = plen;
    buf_free(&nb);
    buf_free(&ob);
    return rc;
}

/* The tree and first parent a commit's text names (parent zeroed if none). */
static int commit_links(const struct buf *b, uint8_t tree[PACKFILE_ID_LEN],
                        uint8_t parent[PACKFILE_ID_LEN], int *has_parent)
{
    git_oid id;
    const char *p = (const char *)b->data;

    *has_parent = 0;
    if (b->len < 46 || memcmp(p, "tree ", 5) != 0 || p[45] != '\n' ||
        git_oid_fromstrn(&id, p + 5, 40) != 0)
        return -1;
    memcpy(tree, id.id, PACKFILE_ID_LEN);
    if (b->len >= 46 + 48 && memcmp(p + 46, "parent ", 7) == 0 && p[46 + 47] == '\n' &&
        git_oid_fromstrn(&id, p + 53, 40) == 0) {
        memcpy(parent, id.id, PACKFILE_ID_LEN);
        *has_parent = 1;
    }
    return 0;
}

/* Whether commit i's tree is walked for bases: a version's own commit
 * (stored), or with deep any commit not stored as a delta.  Walking older
 * folds' commits pairs what they left whole with newer objects at the same
 * path (a third of the history's bytes over many folds), but reads their
 * trees, most of them deltas: for `gc --all`, not for every fold. */
static int walked(const struct fold *f, uint32_t i)
{
    const struct fobj *o = &f->o[i];
    return o->type == PACKFILE_COMMIT && (f->deep ? o->whole : o->fresh);
}

/* Chooses delta bases: for each new commit, newest first, its tree against
 * its parent's. */
static int choose_bases(struct fold *f, struct errctx *e)
{
    uint32_t *commits = NULL, nc = 0;
    uint8_t(*trees)[PACKFILE_ID_LEN] = NULL, (*parents)[PACKFILE_ID_LEN] = NULL;
    uint8_t *has = NULL, *child = NULL;
    int32_t *cof = NULL; /* object number -> commit number, or -1 */
    struct buf b = {0};
    int rc = SYNC_OK;

    for (uint32_t i = 0; i < f->n; i++)
        nc += walked(f, i);
    if (nc == 0)
        return SYNC_OK;
    commits = calloc(nc, sizeof(*commits));
    trees = calloc(nc, sizeof(*trees));
    parents = calloc(nc, sizeof(*parents));
    has = calloc(nc, 1);
    child = calloc(nc, 1);
    cof = malloc((size_t)f->n * sizeof(*cof));
    if (commits == NULL || trees == NULL || parents == NULL || has == NULL || child == NULL ||
        cof == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory folding packs");
        goto out;
    }
    nc = 0;
    for (uint32_t i = 0; i < f->n && rc == SYNC_OK; i++) {
        int hp;
        cof[i] = -1;
        if (!walked(f, i))
            continue;
        if ((rc = body_get(f, i, &b, &(int){0}, e)) != SYNC_OK)
            break;
        if (commit_links(&b, trees[nc], parents[nc], &hp) != 0)
            continue; /* not one of ours: written whole */
        has[nc] = (uint8_t)hp;
        cof[i] = (int32_t)nc;
        commits[nc++] = i;
    }
    /* a commit whose parent is in the fold is not the newest of its line */
    for (uint32_t c = 0; c < nc && rc == SYNC_OK; c++) {
        int32_t p = has[c] ? fold_find(f, parents[c]) : -1;
        if (p >= 0 && cof[p] >= 0)
            child[cof[p]] = 1;
    }
    /* from each newest commit down its first parents while they are in the
     * fold, each commit's new objects against its parent: an object's base
     * is the next newer one at the same path */
    for (uint32_t h = 0; h < nc && rc == SYNC_OK; h++) {
        struct pathmap m = {0};
        struct buf path = {0};
        uint32_t c = h, steps = 0;
        if (child[h])
            continue;
        while (rc == SYNC_OK && steps++ < nc) {
            int32_t p = has[c] ? fold_find(f, parents[c]) : -1;
            uint8_t ptree[PACKFILE_ID_LEN], pparent[PACKFILE_ID_LEN];
            const uint8_t *older = NULL;
            struct buf pb = {0};
            int pt = 0;
            if (p >= 0 && cof[p] >= 0) {
                older = trees[cof[p]];
            } else if (has[c] && (rc = read_any(f, parents[c], &pb, &pt, e)) == SYNC_OK &&
                       pt == GIT_OBJECT_COMMIT &&
                       commit_links(&pb, ptree, pparent, &(int){0}) == 0) {
                older = ptree; /* the parent is older than the fold */
            }
            buf_free(&pb);
            if (rc != SYNC_OK ||
                (rc = path_note(f, &m, "", 0, fold_find(f, trees[c]), older != NULL, e)) !=
                    SYNC_OK ||
                (rc = pair_dir(f, &m, &path, trees[c], older, 0, e)) != SYNC_OK)
                break;
            if (p < 0 || cof[p] < 0)
                break;
            c = (uint32_t)cof[p];
        }
        path_free(&m);
        buf_free(&path);
    }
out:
    buf_free(&b);
    free(commits);
    free(trees);
    free(parents);
    free(has);
    free(child);
    free(cof);
    return rc;
}

/* ---- writing the new pack ---- */

static int out_flush(struct fold *f, struct errctx *e)
{
    size_t done = 0;

    if (EVP_DigestUpdate(f->md, f->wbuf, f->nw) != 1)
        return errctx_set(e, SYNC_ENOMEM, "cannot checksum the new pack");
    while (done < f->nw) {
        ssize_t w = write(f->fd, f->wbuf + done, f->nw - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errctx_set(e, SYNC_EIO, "cannot write %s: %s", f->tmp, strerror(errno));
        done += (size_t)w;
    }
    f->nw = 0;
#ifdef SYNC_FILE_RANGE_WRITE
    /* start writing back what is written, a few MiB at a time, so the
     * fsync at the end does not put hundreds of MiB before the pushes' own
     * fsyncs at once (best effort) */
    if (f->woff - f->synced >= WRITEBACK_STEP) {
        (void)sync_file_range(f->fd, (off_t)f->synced, (off_t)(f->woff - f->synced),
                              SYNC_FILE_RANGE_WRITE);
        f->synced = f->woff;
    }
#endif
    return SYNC_OK;
}

/* Appends p[0..n) to the pack, into the running CRC of the entry. */
static int out_put(struct fold *f, const void *p, size_t n, struct errctx *e)
{
    const uint8_t *b = p;

    while (n > 0) {
        size_t k = OUT_BUF - f->nw < n ? OUT_BUF - f->nw : n;
        size_t c = k < 0x40000000u ? k : 0x40000000u;
        int rc;
        f->wcrc = libdeflate_crc32(f->wcrc, b, c);
        memcpy(f->wbuf + f->nw, b, c);
        f->nw += c;
        f->woff += c;
        b += c;
        n -= c;
        if (f->nw == OUT_BUF && (rc = out_flush(f, e)) != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

/* Appends p[0..n) deflated, by libdeflate: most objects are a few hundred
 * bytes, and zlib's deflate cost ~15 us a call whatever the size (its
 * stream set-up and block finishing), libdeflate's whole-buffer compressor
 * about half. */
static int out_deflate(struct fold *f, const void *p, size_t n, struct errctx *e)
{
    size_t bound, got;
    int rc;

    f->z.len = 0;
    if (n < TINY_OBJECT) /* a few bytes to save: stored */
        rc = packfile_stored(&f->z, p, n, e);
    else if ((rc = buf_reserve(&f->z, bound = libdeflate_zlib_compress_bound(f->def, n), e)) ==
             SYNC_OK) {
        if ((got = libdeflate_zlib_compress(f->def, p, n, f->z.data, bound)) == 0)
            return errctx_set(e, SYNC_ENOMEM, "cannot deflate a git object");
        f->z.len = got;
    }
    if (rc != SYNC_OK)
        return rc;
    return out_put(f, f->z.data, f->z.len, e);
}

static int entry_start(struct fold *f, struct fobj *o)
{
    o->newoff = f->woff;
    f->wcrc = 0;
    return SYNC_OK;
}

/* An object of the fold, written anew: whole, or as a delta against its
 * base (written before it). */
static int write_fresh(struct fold *f, uint32_t num, struct errctx *e)
{
    struct fobj *o = &f->o[num];
    uint8_t hdr[2 * PACKFILE_HDR_MAX];
    size_t h;
    int type, rc;

    if ((rc = body_get(f, num, &f->body, &type, e)) != SYNC_OK)
        return rc;
    f->delta.len = 0;
    if (o->base >= 0) {
        if ((rc = body_get(f, (uint32_t)o->base, &f->body2, &(int){0}, e)) != SYNC_OK ||
            (rc = packfile_delta(&f->delta, f->body2.data, f->body2.len, f->body.data, f->body.len,
                                 type == PACKFILE_TREE, e)) != SYNC_OK)
            return rc;
        if (f->delta.len * 2 > f->body.len)
            f->delta.len = 0; /* not worth a delta */
        /* a wrong delta would lose the object for good: apply it once to be sure */
        else if (packfile_delta_apply(&f->check, f->body2.data, f->body2.len, f->delta.data,
                                      f->delta.len, &(struct errctx){0, ""}) != SYNC_OK ||
                 f->check.len != f->body.len ||
                 memcmp(f->check.data, f->body.data, f->body.len) != 0)
            f->delta.len = 0;
    }
    entry_start(f, o);
    if (f->delta.len > 0) {
        f->deltas++;
        h = packfile_entry_header(hdr, PACKFILE_OFS_DELTA, f->delta.len);
        h += packfile_ofs_encode(hdr + h, o->newoff - f->o[o->base].newoff);
        if ((rc = out_put(f, hdr, h, e)) != SYNC_OK)
            return rc;
        return out_deflate(f, f->delta.data, f->delta.len, e);
    }
    h = packfile_entry_header(hdr, type, f->body.len);
    if ((rc = out_put(f, hdr, h, e)) != SYNC_OK)
        return rc;
    return out_deflate(f, f->body.data, f->body.len, e);
}

static int write_obj(struct fold *f, uint32_t num, int level, struct errctx *e);

/* An object of an older fold, copied as it is (a delta pointed at where its
 * base went), after its bytes are checked against the CRC in its index. */
static int write_copy(struct fold *f, uint32_t num, int level, struct errctx *e)
{
    struct fobj *o = &f->o[num];
    const struct src *s = &f->srcs[o->src];
    const uint8_t *p = s->pack + o->off;
    size_t len = (size_t)(o->end - o->off), used, oused = 0;
    uint8_t hdr[2 * PACKFILE_HDR_MAX];
    int32_t base = -1;
    uint64_t size, dist;
    int type, rc;

    if (libdeflate_crc32(0, p, len) != o->crc)
        return errctx_set(e, SYNC_EDATA,
                          "%s.pack is damaged: the object at byte %llu does not match the CRC "
                          "its index holds",
                          s->name, (unsigned long long)o->off);
    if ((rc = packfile_entry_parse(&type, &size, &used, p, len, e)) != SYNC_OK)
        return rc;
    if (type == PACKFILE_OFS_DELTA) {
        size_t lo = 0, hi = s->idx.n;
        if ((rc = packfile_ofs_decode(&dist, &oused, p + used, len - used, e)) != SYNC_OK)
            return rc;
        while (lo < hi) { /* the entry that starts dist bytes before this one */
            size_t mid = lo + (hi - lo) / 2;
            if (s->offs[mid] < o->off - dist)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (dist > o->off || lo == s->idx.n || s->offs[lo] != o->off - dist)
            return errctx_set(e, SYNC_EDATA, "%s.pack: a delta at byte %llu has no base", s->name,
                              (unsigned long long)o->off);
        base = (int32_t)s->objs[lo];
    } else if (type == PACKFILE_REF_DELTA) {
        if (len - used < PACKFILE_ID_LEN)
            return errctx_set(e, SYNC_EDATA, "%s.pack: a delta is cut short", s->name);
        base = fold_find(f, p + used);
        if (base < 0)
            return write_fresh(f, num, e); /* base elsewhere: whole, through libgit2 */
    }
    if (base >= 0 && (rc = write_obj(f, (uint32_t)base, level + 1, e)) != SYNC_OK)
        return rc;
    entry_start(f, o);
    f->deltas += type >= PACKFILE_OFS_DELTA;
    if (type != PACKFILE_OFS_DELTA)
        return out_put(f, p, len, e);
    {
        size_t h = packfile_entry_header(hdr, type, size);
        h += packfile_ofs_encode(hdr + h, o->newoff - f->o[base].newoff);
        if ((rc = out_put(f, hdr, h, e)) != SYNC_OK)
            return rc;
        return out_put(f, p + used + oused, len - used - oused, e);
    }
}

static int write_obj(struct fold *f, uint32_t num, int level, struct errctx *e)
{
    struct fobj *o = &f->o[num];
    int rc;

    if (o->state == 2)
        return SYNC_OK;
    if (o->state == 1 || level > 4 * FOLD_DEPTH_MAX)
        return errctx_set(e, SYNC_EDATA, "the packs to fold hold a delta chain that loops");
    o->state = 1;
    if (o->fresh || o->src < 0 || o->base >= 0) {
        if (o->base >= 0 && (rc = write_obj(f, (uint32_t)o->base, level + 1, e)) != SYNC_OK)
            return rc;
        rc = write_fresh(f, num, e);
    } else {
        rc = write_copy(f, num, level, e);
    }
    o->newcrc = f->wcrc;
    o->state = 2;
    return rc;
}

static int pobj_cmp(const void *a, const void *b)
{
    return memcmp(((const struct packfile_obj *)a)->id, ((const struct packfile_obj *)b)->id,
                  PACKFILE_ID_LEN);
}

/* Writes every object of the fold into dir as one pack and its index, each
 * fsynced and renamed into place (.pack first), then fsyncs dir. */
static int fold_write(struct fold *f, const char *dir, struct gitpack_stats *st, struct errctx *e)
{
    uint8_t head[12] = {'P', 'A', 'C', 'K', 0, 0, 0, 2}, sum[EVP_MAX_MD_SIZE];
    unsigned int sumlen = 0;
    struct packfile_obj *po = NULL;
    struct buf idx = {0};
    char hex[41], path[4200];
    int rc, dfd = -1;

    for (int k = 0; k < 4; k++)
        head[8 + k] = (uint8_t)(f->n >> (24 - 8 * k));
    snprintf(f->tmp, sizeof(f->tmp), "%s/tmp_empact_XXXXXX", dir);
    if ((f->fd = mkstemp(f->tmp)) < 0) {
        f->tmp[0] = '\0';
        return errctx_set(e, SYNC_EIO, "cannot create a file in %s: %s", dir, strerror(errno));
    }
    if ((f->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(f->md, gittree_sha1(), NULL) != 1)
        return errctx_set(e, SYNC_ENOMEM, "cannot checksum the new pack");
    if ((rc = out_put(f, head, sizeof(head), e)) != SYNC_OK)
        return rc;
    /* each pack's entries in its order (an older fold's deltas follow their
     * bases), then the loose objects; a new delta's base goes just before it */
    for (size_t i = 0; i < f->nsrcs && rc == SYNC_OK; i++)
        for (uint32_t k = 0; k < f->srcs[i].idx.n && rc == SYNC_OK; k++)
            rc = write_obj(f, f->srcs[i].objs[k], 0, e);
    for (uint32_t i = 0; i < f->n && rc == SYNC_OK; i++)
        rc = write_obj(f, i, 0, e);
    if (rc != SYNC_OK || (rc = out_flush(f, e)) != SYNC_OK)
        return rc;
    if (EVP_DigestFinal_ex(f->md, sum, &sumlen) != 1 || sumlen != PACKFILE_ID_LEN)
        return errctx_set(e, SYNC_ENOMEM, "cannot checksum the new pack");
    if (write(f->fd, sum, PACKFILE_ID_LEN) != PACKFILE_ID_LEN || fchmod(f->fd, 0444) != 0 ||
        fsync(f->fd) != 0)
        return errctx_set(e, SYNC_EIO, "cannot write %s: %s", f->tmp, strerror(errno));
    st->bytes = (long long)(f->woff + PACKFILE_ID_LEN);
    gitmap_oid_hex(hex, sum);
    snprintf(st->pack, sizeof(st->pack), "pack-%s", hex);
    snprintf(path, sizeof(path), "%s/%s.pack", dir, st->pack);
    if (rename(f->tmp, path) != 0)
        return errctx_set(e, SYNC_EIO, "cannot rename %s into place: %s", path, strerror(errno));
    /* from here a failure removes the pack again: without its index nothing
     * reads it, and nothing would ever remove it */
    snprintf(f->tmp, sizeof(f->tmp), "%s", path);
    if ((po = calloc(f->n ? f->n : 1, sizeof(*po))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory folding packs");
    for (uint32_t i = 0; i < f->n; i++) {
        memcpy(po[i].id, f->o[i].id, PACKFILE_ID_LEN);
        po[i].off = f->o[i].newoff;
        po[i].crc = f->o[i].newcrc;
    }
    qsort(po, f->n, sizeof(*po), pobj_cmp);
    snprintf(path, sizeof(path), "%s.idx", st->pack);
    if ((rc = packfile_index(&idx, po, f->n, sum, e)) == SYNC_OK &&
        (rc = packfile_put_durable(dir, path, idx.data, idx.len, e)) == SYNC_OK &&
        ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(dfd) != 0))
        rc = errctx_set(e, SYNC_EIO, "cannot fsync %s: %s", dir, strerror(errno));
    if (dfd >= 0)
        close(dfd);
    if (rc == SYNC_OK)
        f->tmp[0] = '\0'; /* in place with its index: keep it */
    st->packed = f->n;
    st->deltas = f->deltas;
    free(po);
    buf_free(&idx);
    return rc;
}

static void fold_free(struct fold *f)
{
    for (size_t i = 0; i < f->nsrcs; i++) {
        if (f->srcs[i].pack != NULL)
            munmap(f->srcs[i].pack, f->srcs[i].packlen);
        if (f->srcs[i].idxmap != NULL)
            munmap(f->srcs[i].idxmap, f->srcs[i].idxlen);
        free(f->srcs[i].offs);
        free(f->srcs[i].objs);
    }
    free(f->srcs);
    free(f->o);
    free(f->slot);
    libdeflate_free_decompressor(f->inf);
    libdeflate_free_compressor(f->def);
    buf_free(&f->body);
    buf_free(&f->body2);
    buf_free(&f->delta);
    buf_free(&f->check);
    buf_free(&f->z);
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp[0] != '\0')
        (void)unlink(f->tmp);
    EVP_MD_CTX_free(f->md);
    free(f->wbuf);
    git_odb_free(f->odb);
}

/* Folds the loose objects l[0..nloose) and the packs p[0..np) of gitdir
 * into one new pack; st says which. */
static int fold_pack(git_repository *repo, const char *gitdir, const struct ids *loose,
                     const struct pack *p, size_t np, int deep, struct gitpack_stats *st,
                     struct errctx *e)
{
    struct fold f;
    char dir[4096];
    size_t total = loose->n;
    int rc = SYNC_OK;

    memset(&f, 0, sizeof(f));
    f.fd = -1;
    f.deep = deep;
    for (size_t i = 0; i < np; i++)
        total += (size_t)p[i].objects;
    for (f.nslot = 1024; f.nslot < 2 * total + 2; f.nslot *= 2)
        ;
    f.cap = total > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)total;
    if (git_repository_odb(&f.odb, repo) != 0) {
        rc = git_fail(e, "opening the history repository's objects");
        goto out;
    }
    if ((f.srcs = calloc(np ? np : 1, sizeof(*f.srcs))) == NULL ||
        (f.o = calloc(f.cap ? f.cap : 1, sizeof(*f.o))) == NULL ||
        (f.slot = calloc(f.nslot, sizeof(*f.slot))) == NULL || (f.wbuf = malloc(OUT_BUF)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory folding packs");
        goto out;
    }
    if ((f.inf = libdeflate_alloc_decompressor()) == NULL ||
        (f.def = libdeflate_alloc_compressor(FOLD_LEVEL)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "cannot start libdeflate");
        goto out;
    }
    for (size_t i = 0; i < np && rc == SYNC_OK; i++, f.nsrcs++)
        rc = src_open(&f, &f.srcs[i], gitdir, p[i].name, e);
    for (size_t i = 0; i < loose->n && rc == SYNC_OK; i++) {
        size_t len;
        git_object_t type;
        git_oid id = loose->v[i];
        uint32_t num;
        if (fold_find(&f, id.id) >= 0)
            continue;
        if (git_odb_read_header(&len, &type, f.odb, &id) != 0) {
            rc = git_fail(e, "reading a loose object");
            break;
        }
        if ((rc = fold_add(&f, id.id, &num, e)) == SYNC_OK) {
            f.o[num].type = (uint8_t)type;
            f.o[num].size = len;
            f.o[num].fresh = 1;
            f.o[num].whole = 1;
        }
    }
    if (rc != SYNC_OK || (rc = choose_bases(&f, e)) != SYNC_OK)
        goto out;
    snprintf(dir, sizeof(dir), "%s/objects/pack", gitdir);
    rc = fold_write(&f, dir, st, e);
out:
    fold_free(&f);
    return rc;
}
/* Removes each loose object of l marked in ok (the new pack holds it). */
static int loose_prune(const char *gitdir, const struct ids *l, const uint8_t *ok,
                       struct gitpack_stats *st, struct errctx *e)
{
    char path[4200], hex[GIT_OID_HEXSZ + 1];

    for (size_t i = 0; i < l->n; i++) {
        if (!ok[i])
            continue; /* not in the new pack: stays loose */
        git_oid_tostr(hex, sizeof(hex), &l->v[i]);
        snprintf(path, sizeof(path), "%s/objects/%.2s/%s", gitdir, hex, hex + 2);
        if (unlink(path) == 0)
            st->removed++;
        else if (errno != ENOENT)
            return errctx_set(e, SYNC_EIO, "cannot remove %s: %s", path, strerror(errno));
        snprintf(path, sizeof(path), "%s/objects/%.2s", gitdir, hex);
        (void)rmdir(path); /* only succeeds once the fan-out directory is empty */
    }
    return SYNC_OK;
}

/* 1 if the new pack (packed) holds every object of the pack name. */
static int pack_covered(int *yes, const char *gitdir, git_odb *packed, const char *name,
                        struct errctx *e)
{
    struct ids l = {0};
    int rc;

    *yes = 0;
    if ((rc = pack_objects(&l, gitdir, name, e)) != SYNC_OK)
        return rc;
    *yes = 1;
    for (size_t i = 0; i < l.n && *yes; i++)
        *yes = git_odb_exists(packed, &l.v[i]);
    free(l.v);
    return SYNC_OK;
}

/* Removes a folded pack: its index first, so no reader finds an index
 * without its pack. */
static int pack_prune(const char *gitdir, const char *name, struct gitpack_stats *st,
                      struct errctx *e)
{
    char path[4200];

    for (int k = 0; k < 3; k++) {
        static const char *const ext[] = {".idx", ".rev", ".pack"};
        snprintf(path, sizeof(path), "%s/objects/pack/%s%s", gitdir, name, ext[k]);
        if (unlink(path) != 0 && errno != ENOENT)
            return errctx_set(e, SYNC_EIO, "cannot remove %s: %s", path, strerror(errno));
    }
    st->packs_removed++;
    return SYNC_OK;
}

/* A fold written and not yet pruned (gitpack_fold). */
struct gitpack_plan {
    char *gitdir;
    int lockfd; /* flock()ed gitdir/FOLD_LOCK, held until the plan is freed */
    struct ids loose;
    struct pack *packs; /* the folded ones: packs[0..nfold) */
    size_t nfold;
    /* checked before the prune, without the writer's lock: which loose
     * objects and folded packs the new pack holds in full */
    uint8_t *loose_ok, *pack_ok;
    char pack[48]; /* the new one */
};

#define FOLD_LOCK "empact-fold.lock"

void gitpack_plan_free(struct gitpack_plan *p)
{
    if (p == NULL)
        return;
    if (p->lockfd >= 0)
        close(p->lockfd); /* releases the flock */
    free(p->gitdir);
    free(p->loose.v);
    free(p->packs);
    free(p->loose_ok);
    free(p->pack_ok);
    free(p);
}

/* Notes the new pack st->pack in p and which loose objects and folded packs
 * it holds in full (a lookup per object: for a large fold, too long to do
 * while the pushes wait). */
static int plan_check(struct gitpack_plan *p, const struct gitpack_stats *st, struct errctx *e)
{
    git_odb *packed = NULL;
    int rc;

    snprintf(p->pack, sizeof(p->pack), "%s", st->pack);
    if ((p->loose_ok = calloc(p->loose.n + 1, 1)) == NULL ||
        (p->pack_ok = calloc(p->nfold + 1, 1)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if ((rc = pack_odb(&packed, p->gitdir, p->pack, e)) != SYNC_OK)
        return rc;
    for (size_t i = 0; i < p->loose.n; i++)
        p->loose_ok[i] = (uint8_t)git_odb_exists(packed, &p->loose.v[i]);
    for (size_t i = 0; i < p->nfold && rc == SYNC_OK; i++) {
        int yes = 0;
        /* the same objects again make the same name: that one stays */
        if (strcmp(p->packs[i].name, p->pack) != 0 &&
            (rc = pack_covered(&yes, p->gitdir, packed, p->packs[i].name, e)) == SYNC_OK)
            p->pack_ok[i] = (uint8_t)yes;
    }
    git_odb_free(packed);
    return rc;
}

int gitpack_fold(struct gitpack_plan **out, const char *gitdir, int all, struct gitpack_stats *st,
                 struct errctx *e)
{
    git_repository *repo = NULL;
    struct gitpack_plan *p;
    char path[4200];
    size_t npacks = 0, nloose;
    int rc;

    *out = NULL;
    memset(st, 0, sizeof(*st));
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    p->lockfd = -1;
    if ((p->gitdir = strdup(gitdir)) == NULL) {
        gitpack_plan_free(p);
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    }
    snprintf(path, sizeof(path), "%s/%s", gitdir, FOLD_LOCK);
    if ((p->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
        flock(p->lockfd, LOCK_EX) != 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot lock %s: %s", path, strerror(errno));
        gitpack_plan_free(p);
        return rc;
    }
    git_libgit2_init();
    if ((rc = loose_list(&p->loose, gitdir, e)) != SYNC_OK ||
        (rc = pack_list(&p->packs, &npacks, gitdir, e)) != SYNC_OK)
        goto out;
    nloose = p->loose.n;
    p->nfold = all ? npacks : fold_count(p->packs, npacks, (long long)nloose);
    if (nloose == 0 && p->nfold < 2)
        goto out; /* nothing loose, and folding one pack alone gains nothing */
    st->loose = nloose;
    st->packs_folded = p->nfold;
    if (git_repository_open_bare(&repo, gitdir) != 0)
        rc = git_fail(e, "opening the history repository");
    else if ((rc = fold_pack(repo, gitdir, &p->loose, p->packs, p->nfold, all, st, e)) == SYNC_OK)
        rc = plan_check(p, st, e);
out:
    git_repository_free(repo);
    git_libgit2_shutdown();
    if (rc != SYNC_OK) {
        gitpack_plan_free(p);
        return rc;
    }
    *out = p;
    return SYNC_OK;
}

int gitpack_prune(struct gitpack_plan *p, struct gitpack_stats *st, struct errctx *e)
{
    int rc;

    if (p->pack[0] == '\0')
        return SYNC_OK; /* nothing was folded */
    rc = loose_prune(p->gitdir, &p->loose, p->loose_ok, st, e);
    for (size_t i = 0; i < p->nfold && rc == SYNC_OK; i++)
        if (p->pack_ok[i])
            rc = pack_prune(p->gitdir, p->packs[i].name, st, e);
    return rc;
}

int gitpack_compact(const char *gitdir, int all, struct gitpack_stats *st, struct errctx *e)
{
    struct gitpack_plan *p = NULL;
    int rc;

    if ((rc = gitpack_fold(&p, gitdir, all, st, e)) == SYNC_OK)
        rc = gitpack_prune(p, st, e);
    gitpack_plan_free(p);
    return rc;
}
