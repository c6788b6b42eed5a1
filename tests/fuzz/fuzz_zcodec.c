/*
 * fuzz_zcodec.c - libFuzzer target for bounded zstd decompression.
 *
 * The input is decompressed with a bound of 1 MiB.  Whatever it holds, the
 * output must stay within the bound and a failure must leave the output
 * empty with a known code and a message.  Output that decodes is compressed
 * again and must come back unchanged.  Any broken invariant aborts.
 *
 * fuzz-sources: common/zcodec.c common/buf.c common/errctx.c
 * fuzz-pkgs: libzstd
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "zcodec.h"

#define FUZZ_MAX_OUT ((size_t)1024 * 1024)

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_zcodec: invariant failed at line %d: %s\n", __LINE__, #c);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out = {0}, z = {0}, back = {0};
    struct errctx e = {0};
    int rc = zcodec_decompress(&out, data, size, FUZZ_MAX_OUT, &e);

    CHECK(out.len <= FUZZ_MAX_OUT);
    if (rc != SYNC_OK) {
        CHECK(rc == SYNC_EPROTO || rc == SYNC_ELIMIT || rc == SYNC_ENOMEM);
        CHECK(e.code == rc && e.msg[0] != '\0' && out.len == 0);
        goto out;
    }
    CHECK(zcodec_compress(&z, out.data, out.len, &e) == SYNC_OK);
    CHECK(zcodec_decompress(&back, z.data, z.len, out.len, &e) == SYNC_OK);
    CHECK(back.len == out.len);
    CHECK(out.len == 0 || memcmp(back.data, out.data, out.len) == 0);
out:
    buf_free(&out);
    buf_free(&z);
    buf_free(&back);
    return 0;
}
