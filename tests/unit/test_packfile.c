/*
 * test_packfile.c - git packs as bytes (common/packfile.c): entry headers and
 * OFS_DELTA distances read back as written, at every width; stored zlib
 * streams inflate to their data and are told from deflated ones; deltas of
 * random trees and rows rebuild their targets (applied here, and by libgit2
 * from a pack written with them); a tree edited in one entry makes a small
 * delta; indexes read back, and damaged ones (cut short, bad magic, a
 * fan-out going backwards, an offset past the pack, ids out of order) are
 * refused with a sentence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <git2.h>
#include <git2/sys/odb_backend.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "gittree.h"
#include "packfile.h"

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Applies a delta, which must be well formed. */
static void apply_delta(struct buf *out, const uint8_t *base, size_t blen, const struct buf *d)
{
    struct errctx e = {0, ""};

    assert_int_equal(packfile_delta_apply(out, base, blen, d->data, d->len, &e), SYNC_OK);
}

static void test_headers(void **state)
{
    static const uint64_t sizes[] = {0,
                                     1,
                                     15,
                                     16,
                                     127,
                                     128,
                                     2047,
                                     2048,
                                     65535,
                                     1u << 20,
                                     UINT64_C(1) << 32,
                                     UINT64_C(0xffffffffffff)};
    static const uint64_t dists[] = {
        1, 127, 128, 129, 16511, 16512, 16513, 1u << 24, UINT64_C(1) << 40};
    struct errctx e = {0, ""};

    (void)state;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (int type = 1; type <= 7; type++) {
            uint8_t h[PACKFILE_HDR_MAX];
            uint64_t size = 0;
            size_t n, used = 0;
            int t = 0;
            if (type == 5)
                continue;
            n = packfile_entry_header(h, type, sizes[i]);
            assert_true(n <= PACKFILE_HDR_MAX);
            assert_int_equal(packfile_entry_parse(&t, &size, &used, h, n, &e), SYNC_OK);
            assert_int_equal(t, type);
            assert_int_equal(size, sizes[i]);
            assert_int_equal(used, n);
            if (n > 1) /* cut short */
                assert_int_equal(packfile_entry_parse(&t, &size, &used, h, n - 1, &e), SYNC_EDATA);
        }
    }
    for (size_t i = 0; i < sizeof(dists) / sizeof(dists[0]); i++) {
        uint8_t h[PACKFILE_HDR_MAX];
        uint64_t d = 0;
        size_t n = packfile_ofs_encode(h, dists[i]), used = 0;
        assert_int_equal(packfile_ofs_decode(&d, &used, h, n, &e), SYNC_OK);
        assert_int_equal(d, dists[i]);
        assert_int_equal(used, n);
        if (n > 1)
            assert_int_equal(packfile_ofs_decode(&d, &used, h, n - 1, &e), SYNC_EDATA);
    }
    {
        uint8_t h[2] = {0x50, 0}; /* type 5 */
        uint64_t size;
        size_t used;
        int t;
        assert_int_equal(packfile_entry_parse(&t, &size, &used, h, 2, &e), SYNC_EDATA);
        assert_non_null(strstr(e.msg, "type 5"));
    }
}

static void test_stored(void **state)
{
    static const size_t lens[] = {0, 1, 100, 65535, 65536, 200000};
    struct errctx e = {0, ""};

    (void)state;
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint8_t *data = malloc(lens[i] + 1), *back = malloc(lens[i] + 1), *z;
        struct buf out = {0};
        uLongf n = (uLongf)lens[i] + 1, zn;
        assert_non_null(data);
        assert_non_null(back);
        for (size_t k = 0; k < lens[i]; k++)
            data[k] = (uint8_t)(k * 7 + k / 300);
        assert_int_equal(packfile_stored(&out, data, lens[i], &e), SYNC_OK);
        assert_true(packfile_is_stored(out.data, out.len));
        assert_int_equal(uncompress(back, &n, out.data, out.len), Z_OK);
        assert_int_equal(n, lens[i]);
        assert_memory_equal(back, data, lens[i]);
        zn = compressBound((uLong)lens[i]);
        z = malloc(zn);
        assert_non_null(z);
        assert_int_equal(compress2(z, &zn, data, (uLong)lens[i], 6), Z_OK);
        if (lens[i] >= 65535) /* zlib stores what it cannot shrink: re-encoded then, no harm */
            assert_false(packfile_is_stored(z, zn));
        free(z);
        free(data);
        free(back);
        buf_free(&out);
    }
}

/* A tree body of n entries "100644 <name>\0<id>" (or directories), sorted. */
static void make_tree(struct buf *out, uint32_t *names, int n, uint32_t *ids, int dirs)
{
    struct errctx e = {0, ""};
    char nm[32];

    out->len = 0;
    for (int i = 0; i < n; i++) { /* names are "n" + 6 digits: byte order is git's order */
        uint8_t id[GITTREE_ID_LEN];
        snprintf(nm, sizeof(nm), "%s n%06u", dirs ? "40000" : "100644", names[i] % 1000000);
        for (int k = 0; k < GITTREE_ID_LEN; k++)
            id[k] = (uint8_t)(ids[i] >> (k % 4 * 8)) ^ (uint8_t)k;
        assert_int_equal(buf_put(out, nm, strlen(nm) + 1, &e), SYNC_OK);
        assert_int_equal(buf_put(out, id, sizeof(id), &e), SYNC_OK);
    }
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a % 1000000, y = *(const uint32_t *)b % 1000000;
    return x < y ? -1 : x > y;
}

static void test_delta_trees(void **state)
{
    uint32_t seed = 4242, names[300], ids[300];
    struct errctx e = {0, ""};

    (void)state;
    for (int round = 0; round < 300; round++) {
        struct buf base = {0}, target = {0}, d = {0}, back = {0};
        int n = 1 + (int)(rnd(&seed) % 280), edits = (int)(rnd(&seed) % 6), dirs = round % 2, m;
        for (int i = 0; i < n; i++) {
            names[i] = (uint32_t)i * 1000 + rnd(&seed) % 1000;
            ids[i] = rnd(&seed);
        }
        make_tree(&base, names, n, ids, dirs);
        /* change ids, drop entries, add entries */
        m = n;
        for (int k = 0; k < edits; k++) {
            uint32_t r = rnd(&seed) % 3, at = rnd(&seed) % (uint32_t)m;
            if (r == 0) {
                ids[at] ^= 0x5a5a5a5au;
            } else if (r == 1 && m > 1) {
                memmove(&names[at], &names[at + 1], (size_t)(m - 1 - (int)at) * sizeof(*names));
                memmove(&ids[at], &ids[at + 1], (size_t)(m - 1 - (int)at) * sizeof(*ids));
                m--;
            } else if (m < 299) {
                names[m] = names[at] + 1; /* a new name just after an old one */
                ids[m] = rnd(&seed);
                m++;
            }
        }
        qsort(names, (size_t)m, sizeof(*names), u32_cmp); /* ids follow only loosely: fine */
        {
            int k = 0; /* a duplicate name would be no tree */
            for (int i = 0; i < m; i++)
                if (k == 0 || names[i] % 1000000 != names[k - 1] % 1000000) {
                    ids[k] = ids[i];
                    names[k++] = names[i];
                }
            m = k;
        }
        make_tree(&target, names, m, ids, dirs);
        assert_int_equal(packfile_delta(&d, base.data, base.len, target.data, target.len, 1, &e),
                         SYNC_OK);
        apply_delta(&back, base.data, base.len, &d);
        assert_int_equal(back.len, target.len);
        assert_memory_equal(back.data, target.data, target.len);
        buf_free(&base);
        buf_free(&target);
        buf_free(&d);
        buf_free(&back);
    }
}

/* One entry of 256 changed: the delta copies the rest in at most two
 * pieces and inserts the one entry. */
static void test_delta_small(void **state)
{
    uint32_t names[256], ids[256];
    struct buf base = {0}, target = {0}, d = {0}, back = {0};
    struct errctx e = {0, ""};

    (void)state;
    for (int i = 0; i < 256; i++) {
        names[i] = (uint32_t)i;
        ids[i] = (uint32_t)i * 2654435761u;
    }
    make_tree(&base, names, 256, ids, 1);
    ids[100] ^= 1;
    make_tree(&target, names, 256, ids, 1);
    assert_int_equal(packfile_delta(&d, base.data, base.len, target.data, target.len, 1, &e),
                     SYNC_OK);
    assert_true(d.len < 64);
    apply_delta(&back, base.data, base.len, &d);
    assert_memory_equal(back.data, target.data, target.len);
    /* a row with one field changed: head and tail copied */
    {
        const char *a = "title\tA guide to community engagement\nsummary\tOld text here\n";
        const char *b = "title\tA guide to community engagement\nsummary\tNew text here\n";
        d.len = 0;
        assert_int_equal(packfile_delta(&d, a, strlen(a), b, strlen(b), 0, &e), SYNC_OK);
        assert_true(d.len < 16);
        apply_delta(&back, (const uint8_t *)a, strlen(a), &d);
        assert_memory_equal(back.data, b, strlen(b));
    }
    /* not a tree after all: falls back to head and tail, still right */
    d.len = 0;
    assert_int_equal(packfile_delta(&d, "not a tree", 10, "not a tree!", 11, 1, &e), SYNC_OK);
    apply_delta(&back, (const uint8_t *)"not a tree", 10, &d);
    assert_memory_equal(back.data, "not a tree!", 11);
    buf_free(&base);
    buf_free(&target);
    buf_free(&d);
    buf_free(&back);
}

static void test_delta_blobs(void **state)
{
    uint32_t seed = 99;
    uint8_t a[3000], b[3000];
    struct errctx e = {0, ""};

    (void)state;
    for (int round = 0; round < 200; round++) {
        size_t na = rnd(&seed) % 3000, nb;
        struct buf d = {0}, back = {0};
        for (size_t i = 0; i < na; i++)
            a[i] = (uint8_t)(rnd(&seed) % 4 + 'a');
        nb = na;
        memcpy(b, a, na);
        if (na > 0 && round % 3 != 0) { /* one stretch replaced */
            size_t at = rnd(&seed) % na, len = rnd(&seed) % (na - at + 1);
            for (size_t i = at; i < at + len; i++)
                b[i] = (uint8_t)(rnd(&seed) % 4 + 'a');
        }
        if (round % 5 == 0)
            nb = rnd(&seed) % 3000; /* cut or grown */
        for (size_t i = na; i < nb; i++)
            b[i] = 'z';
        assert_int_equal(packfile_delta(&d, a, na, b, nb, round % 7 == 0, &e), SYNC_OK);
        apply_delta(&back, a, na, &d);
        assert_int_equal(back.len, nb);
        if (nb > 0)
            assert_memory_equal(back.data, b, nb);
        buf_free(&d);
        buf_free(&back);
    }
}

static void test_delta_malformed(void **state)
{
    static const struct {
        const char *d;
        size_t len;
        const char *says;
    } bad[] = {
        {"\x05\x03\x91\x00\x03", 5, "base of 5"},    /* base is 4 bytes */
        {"\x04\x03\x91\x02\x03", 5, "past the end"}, /* copy 3 from 2 */
        {"\x04\x03\x91\x00", 4, "cut short"},        /* size byte missing */
        {"\x04\x03\x05"
         "ab",
         5, "insert is cut short"},      /* 5 promised, 2 there */
        {"\x04\x03\x00", 3, "reserved"}, /* instruction 0 */
        {"\x04\x02\x03"
         "abc",
         6, "more than"}, /* 3 made, 2 named */
        {"\x04\x05\x02"
         "ab",
         5, "not the 5"},         /* 2 made, 5 named */
        {"\x84", 1, "cut short"}, /* size cut short */
    };
    struct errctx e = {0, ""};
    struct buf out = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *copy = malloc(bad[i].len); /* exactly len bytes, for ASan */
        assert_non_null(copy);
        memcpy(copy, bad[i].d, bad[i].len);
        assert_int_equal(packfile_delta_apply(&out, "abcd", 4, copy, bad[i].len, &e), SYNC_EDATA);
        assert_non_null(strstr(e.msg, bad[i].says));
        free(copy);
    }
    assert_int_equal(packfile_delta_apply(&out, "abcd", 4, "\x04\x04\x91\x01\x03\x01z", 7, &e),
                     SYNC_OK);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "bcdz", 4);
    buf_free(&out);
}

static void put_deflated(struct buf *pk, const void *p, size_t n)
{
    struct errctx e = {0, ""};
    uLongf zn = compressBound((uLong)n);

    assert_int_equal(buf_reserve(pk, zn, &e), SYNC_OK);
    assert_int_equal(compress2(pk->data + pk->len, &zn, p, (uLong)n, 6), Z_OK);
    pk->len += zn;
}

static int obj_cmp(const void *a, const void *b)
{
    return memcmp(((const struct packfile_obj *)a)->id, ((const struct packfile_obj *)b)->id,
                  PACKFILE_ID_LEN);
}

/* A pack of a tree and, as an OFS_DELTA against it, an edited tree, with our
 * index: libgit2 reads the edited tree back whole. */
static void test_pack_libgit2(void **state)
{
    uint32_t names[200], ids[200];
    struct buf base = {0}, target = {0}, d = {0}, pk = {0}, idx = {0};
    struct packfile_obj o[2];
    struct errctx e = {0, ""};
    char dir[] = "/tmp/test_packfile_XXXXXX", path[256];
    uint8_t h[2 * PACKFILE_HDR_MAX], sum[EVP_MAX_MD_SIZE];
    unsigned int sumlen = 0;
    size_t n;
    git_odb *odb = NULL;
    git_odb_backend *one = NULL;
    git_odb_object *obj = NULL;
    git_oid id;
    struct packfile_idx x;

    (void)state;
    for (int i = 0; i < 200; i++) {
        names[i] = (uint32_t)i;
        ids[i] = (uint32_t)i * 40503u + 7;
    }
    make_tree(&base, names, 200, ids, 0);
    ids[3] ^= 1;
    ids[150] ^= 1;
    make_tree(&target, names, 199, ids, 0);
    assert_int_equal(packfile_delta(&d, base.data, base.len, target.data, target.len, 1, &e),
                     SYNC_OK);
    assert_int_equal(buf_put(&pk, "PACK\0\0\0\2\0\0\0\2", 12, &e), SYNC_OK);
    assert_int_equal(gittree_object_id(o[0].id, "tree", base.data, base.len, &e), SYNC_OK);
    o[0].off = pk.len;
    n = packfile_entry_header(h, PACKFILE_TREE, base.len);
    assert_int_equal(buf_put(&pk, h, n, &e), SYNC_OK);
    put_deflated(&pk, base.data, base.len);
    o[0].crc = (uint32_t)crc32(0L, pk.data + o[0].off, (uInt)(pk.len - o[0].off));
    assert_int_equal(gittree_object_id(o[1].id, "tree", target.data, target.len, &e), SYNC_OK);
    o[1].off = pk.len;
    n = packfile_entry_header(h, PACKFILE_OFS_DELTA, d.len);
    n += packfile_ofs_encode(h + n, o[1].off - o[0].off);
    assert_int_equal(buf_put(&pk, h, n, &e), SYNC_OK);
    put_deflated(&pk, d.data, d.len);
    o[1].crc = (uint32_t)crc32(0L, pk.data + o[1].off, (uInt)(pk.len - o[1].off));
    assert_int_equal(EVP_Digest(pk.data, pk.len, sum, &sumlen, EVP_sha1(), NULL), 1);
    assert_int_equal(buf_put(&pk, sum, 20, &e), SYNC_OK);
    qsort(o, 2, sizeof(o[0]), obj_cmp);
    assert_int_equal(packfile_index(&idx, o, 2, sum, &e), SYNC_OK);
    assert_int_equal(packfile_idx_parse(&x, idx.data, idx.len, pk.len, &e), SYNC_OK);
    assert_int_equal(x.n, 2);
    assert_int_equal(packfile_idx_off(&x, 0), o[0].off);
    assert_int_equal(packfile_idx_off(&x, 1), o[1].off);

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/pack-test.pack", dir);
    assert_int_equal(packfile_put_durable(dir, "pack-test.pack", pk.data, pk.len, &e), SYNC_OK);
    assert_int_equal(packfile_put_durable(dir, "pack-test.idx", idx.data, idx.len, &e), SYNC_OK);
    assert_int_equal(access(path, R_OK), 0);
    snprintf(path, sizeof(path), "%s/pack-test.idx", dir);
    git_libgit2_init();
    assert_int_equal(git_odb_new(&odb), 0);
    assert_int_equal(git_odb_backend_one_pack(&one, path), 0);
    assert_int_equal(git_odb_add_backend(odb, one, 1), 0);
    assert_int_equal(gittree_object_id(id.id, "tree", target.data, target.len, &e), SYNC_OK);
    assert_int_equal(git_odb_read(&obj, odb, &id), 0);
    assert_int_equal(git_odb_object_size(obj), target.len);
    assert_memory_equal(git_odb_object_data(obj), target.data, target.len);
    git_odb_object_free(obj);
    git_odb_free(odb);
    git_libgit2_shutdown();
    unlink(path);
    snprintf(path, sizeof(path), "%s/pack-test.pack", dir);
    unlink(path);
    rmdir(dir);
    buf_free(&base);
    buf_free(&target);
    buf_free(&d);
    buf_free(&pk);
    buf_free(&idx);
}

static void test_idx_damaged(void **state)
{
    struct packfile_obj o[3];
    struct buf idx = {0};
    struct packfile_idx x;
    struct errctx e = {0, ""};
    uint8_t sum[20] = {0}, *copy;

    (void)state;
    for (int i = 0; i < 3; i++) {
        memset(o[i].id, 0x10 * (i + 1), PACKFILE_ID_LEN);
        o[i].off = 12 + 100 * (uint64_t)i;
        o[i].crc = (uint32_t)i;
    }
    o[2].off = UINT64_C(0x90000000); /* in the table of 64-bit offsets */
    assert_int_equal(packfile_index(&idx, o, 3, sum, &e), SYNC_OK);
    assert_int_equal(packfile_idx_parse(&x, idx.data, idx.len, UINT64_C(0xa0000000), &e), SYNC_OK);
    assert_int_equal(x.nlarge, 1);
    assert_int_equal(packfile_idx_off(&x, 2), UINT64_C(0x90000000));
    /* the same index, for a pack too short for its last object */
    assert_int_equal(packfile_idx_parse(&x, idx.data, idx.len, 1000, &e), SYNC_EDATA);
    assert_non_null(strstr(e.msg, "byte"));
    /* cut short, one byte at a time from the end (a copy, for ASan) */
    for (size_t cut = 1; cut < idx.len; cut += 37) {
        copy = malloc(idx.len - cut);
        assert_non_null(copy);
        memcpy(copy, idx.data, idx.len - cut);
        assert_int_equal(packfile_idx_parse(&x, copy, idx.len - cut, UINT64_C(0xa0000000), &e),
                         SYNC_EDATA);
        free(copy);
    }
    copy = malloc(idx.len);
    assert_non_null(copy);
    memcpy(copy, idx.data, idx.len);
    copy[0] = 'X';
    assert_int_equal(packfile_idx_parse(&x, copy, idx.len, UINT64_C(0xa0000000), &e), SYNC_EDATA);
    assert_non_null(strstr(e.msg, "version 2"));
    memcpy(copy, idx.data, idx.len);
    copy[8 + 4 * 0x10 + 3] = 9; /* fan-out for 0x10: 9, then 1 for 0x11 */
    assert_int_equal(packfile_idx_parse(&x, copy, idx.len, UINT64_C(0xa0000000), &e), SYNC_EDATA);
    assert_non_null(strstr(e.msg, "fan-out"));
    memcpy(copy, idx.data, idx.len);
    copy[8 + 1024 + 20] = 0x05; /* second id now sorts before the first */
    assert_int_equal(packfile_idx_parse(&x, copy, idx.len, UINT64_C(0xa0000000), &e), SYNC_EDATA);
    memcpy(copy, idx.data, idx.len);
    copy[8 + 1024 + 3 * 28 - 4 * 3 + 3] = 5; /* first offset: byte 5, inside the header */
    assert_int_equal(packfile_idx_parse(&x, copy, idx.len, UINT64_C(0xa0000000), &e), SYNC_EDATA);
    free(copy);
    buf_free(&idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers),     cmocka_unit_test(test_stored),
        cmocka_unit_test(test_delta_trees), cmocka_unit_test(test_delta_small),
        cmocka_unit_test(test_delta_blobs), cmocka_unit_test(test_pack_libgit2),
        cmocka_unit_test(test_idx_damaged), cmocka_unit_test(test_delta_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
