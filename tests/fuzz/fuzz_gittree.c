/*
 * fuzz_gittree.c - libFuzzer target for the reader and merger of git tree
 * bodies (common/gittree.c): a site's tree store is a table any SQLite tool
 * can edit, and a hub's history may be damaged.
 *
 * The first input byte picks up to 7 changes (low 3 bits) and whether they
 * are directories (bit 3); each change's name is one of a few that share
 * prefixes, its removal and id come from the next bytes.  The rest is the old
 * tree body.  A refusal must come with a message; an accepted merge must
 * give a body that reads back entry by entry without a complaint, in which
 * every kept change is found with its id and every removed one is gone.
 * Any broken invariant aborts.
 *
 * fuzz-sources: common/gittree.c common/buf.c common/errctx.c
 * fuzz-pkgs: openssl
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "gittree.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_gittree: invariant failed at line %d: %s\n", __LINE__, #c);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[8] = {"a", "a.b", "a0", "ab", "b", "ff", "z", "a-"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gittree_change ch[7];
    struct buf out = {0};
    struct errctx e = {0, ""};
    size_t n, i;
    int dir, rc;
    uint8_t *old;

    if (size < 1)
        return 0;
    n = data[0] & 7;
    dir = (data[0] >> 3) & 1;
    data++;
    size--;
    if (size < n * 2)
        return 0;
    for (i = 0; i < n; i++) {
        ch[i].name = names[data[2 * i] & 7];
        ch[i].len = strlen(ch[i].name);
        ch[i].dir = dir;
        ch[i].remove = (data[2 * i] >> 3) & 1;
        memset(ch[i].id, data[2 * i + 1], GITTREE_ID_LEN);
    }
    data += 2 * n;
    size -= 2 * n;
    /* sorted, stable: of changes to one name, the last stays last */
    for (i = 1; i < n; i++)
        for (size_t k = i; k > 0 && gittree_cmp(ch[k - 1].name, ch[k - 1].len, dir, ch[k].name,
                                                ch[k].len, dir) > 0;
             k--) {
            struct gittree_change t = ch[k];
            ch[k] = ch[k - 1];
            ch[k - 1] = t;
        }
    /* an exact-size copy, so a read past the end is caught */
    if ((old = malloc(size ? size : 1)) == NULL)
        return 0;
    memcpy(old, data, size);
    rc = gittree_merge(&out, old, size, ch, n, &e);
    if (rc != SYNC_OK) {
        CHECK(rc == SYNC_EDATA || rc == SYNC_ENOMEM || rc == SYNC_ELIMIT);
        CHECK(e.msg[0] != '\0');
    } else {
        struct gittree_iter it;
        struct gittree_entry en;
        int got;

        gittree_iter_init(&it, out.data, out.len);
        while ((got = gittree_next(&it, &en, &e)) == 1)
            ;
        CHECK(got == 0);
        for (i = 0; i < n; i++) {
            size_t last = i;
            int found = 0;
            for (size_t k = i + 1; k < n; k++)
                if (strcmp(ch[k].name, ch[i].name) == 0)
                    last = k;
            if (last != i)
                continue; /* a later change to the same name counts */
            gittree_iter_init(&it, out.data, out.len);
            while (gittree_next(&it, &en, &e) == 1)
                if (en.len == ch[i].len && memcmp(en.name, ch[i].name, en.len) == 0) {
                    found = 1;
                    CHECK(memcmp(en.id, ch[i].id, GITTREE_ID_LEN) == 0);
                    CHECK(en.dir == ch[i].dir);
                }
            CHECK(found == !ch[i].remove);
        }
    }
    free(old);
    buf_free(&out);
    return 0;
}
