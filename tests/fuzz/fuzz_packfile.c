/*
 * fuzz_packfile.c - libFuzzer target for the readers of git packs and pack
 * indexes (common/packfile.c), which the hub's fold runs on history.git's
 * files, and for its delta writer.
 *
 * The first input byte picks what is fuzzed (its value mod 4):
 *   0: the rest is an index; the next 4 bytes (big-endian) the pack's
 *      length.  An accepted index must name every offset inside the pack's
 *      entries, ids strictly ascending;
 *   1: the rest is an entry header, then an OFS_DELTA distance; what is read
 *      must fit in the bytes given;
 *   2: the second byte splits the rest into a base and a target (bit 2 of the
 *      first byte: as trees); the delta, applied, must give the target;
 *   3: the second byte is the length of a base that follows, then a delta
 *      to apply to it: refused with a sentence, or applied within bounds.
 * A refusal must come with a message.  Any broken invariant aborts.
 *
 * fuzz-sources: common/packfile.c common/gittree.c common/buf.c common/errctx.c
 * fuzz-pkgs: openssl zlib libdeflate
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "packfile.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_packfile: invariant failed at line %d: %s\n", __LINE__, #c);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The delta of base and target, applied to base, gives target. */
static void check_delta(const uint8_t *base, size_t blen, const uint8_t *target, size_t tlen,
                        int tree)
{
    struct buf d = {0}, out = {0};
    struct errctx e = {0, ""};

    CHECK(packfile_delta(&d, base, blen, target, tlen, tree, &e) == SYNC_OK);
    CHECK(packfile_delta_apply(&out, base, blen, d.data, d.len, &e) == SYNC_OK);
    CHECK(out.len == tlen);
    CHECK(tlen == 0 || memcmp(out.data, target, tlen) == 0);
    buf_free(&d);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct errctx e = {0, ""};

    if (size < 2)
        return 0;
    switch (data[0] % 4) {
    case 0: {
        struct packfile_idx x;
        uint64_t packlen;
        if (size < 5)
            return 0;
        packlen =
            (uint64_t)data[1] << 24 | (uint64_t)data[2] << 16 | (uint64_t)data[3] << 8 | data[4];
        if (packfile_idx_parse(&x, data + 5, size - 5, packlen, &e) != SYNC_OK) {
            CHECK(e.code == SYNC_EDATA && e.msg[0] != '\0');
            return 0;
        }
        for (uint32_t i = 0; i < x.n; i++) {
            uint64_t off = packfile_idx_off(&x, i);
            CHECK(off >= 12 && off < packlen - 20);
            CHECK(i == 0 || memcmp(x.ids + (size_t)(i - 1) * 20, x.ids + (size_t)i * 20, 20) < 0);
        }
        break;
    }
    case 1: {
        uint64_t v;
        size_t used;
        int type;
        if (packfile_entry_parse(&type, &v, &used, data + 1, size - 1, &e) != SYNC_OK) {
            CHECK(e.msg[0] != '\0');
            return 0;
        }
        CHECK(used >= 1 && used <= size - 1 && type >= 1 && type <= 7 && type != 5);
        if (packfile_ofs_decode(&v, &used, data + 1 + used, size - 1 - used, &e) != SYNC_OK) {
            CHECK(e.msg[0] != '\0');
            return 0;
        }
        CHECK(v > 0);
        break;
    }
    case 2: {
        size_t rest = size - 2, cut = rest * data[1] / 255;
        check_delta(data + 2, cut, data + 2 + cut, rest - cut, data[0] & 4);
        break;
    }
    default: {
        /* a delta of outside bytes, applied to a base of the second byte's length */
        struct buf out = {0};
        size_t blen = data[1] < size - 2 ? data[1] : size - 2;
        if (packfile_delta_apply(&out, data + 2, blen, data + 2 + blen, size - 2 - blen, &e) !=
            SYNC_OK)
            CHECK(e.code == SYNC_EDATA && e.msg[0] != '\0');
        buf_free(&out);
        break;
    }
    }
    return 0;
}
