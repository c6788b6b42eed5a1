/*
 * test_vcache.c - the hub's cache of compressed versions (server/vcache.c):
 * a version put is found with its number, commit and dictionary and with no
 * other; a newer version in the same slot replaces it; a version too large
 * for its share is not kept; threads putting and getting at once find only
 * what was put.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vcache.h"

static void commit_of(uint8_t c[20], uint64_t seq)
{
    for (int i = 0; i < 20; i++)
        c[i] = (uint8_t)(seq * 31 + (uint64_t)i);
}

static void test_get_put(void **state)
{
    struct vcache *c = NULL;
    struct errctx e = {0, ""};
    struct buf out = {0};
    uint8_t c7[20], c8[20];
    char *big;

    (void)state;
    assert_int_equal(vcache_new(&c, &e), SYNC_OK);
    commit_of(c7, 7);
    commit_of(c8, 8);
    assert_int_equal(vcache_get(c, 7, c7, 0, &out, &e), 0);
    vcache_put(c, 7, c7, 0, "seven", 5);
    assert_int_equal(vcache_get(c, 7, c7, 0, &out, &e), 1);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "seven", 5);
    out.len = 0;
    assert_int_equal(vcache_get(c, 7, c7, 42, &out, &e), 0); /* other dictionary */
    assert_int_equal(vcache_get(c, 7, c8, 0, &out, &e), 0);  /* other commit */
    assert_int_equal(vcache_get(c, 8, c8, 0, &out, &e), 0);
    /* the same slot, a newer version: the older is gone */
    vcache_put(c, 7 + VCACHE_SLOTS, c8, 0, "later", 5);
    assert_int_equal(vcache_get(c, 7, c7, 0, &out, &e), 0);
    assert_int_equal(vcache_get(c, 7 + VCACHE_SLOTS, c8, 0, &out, &e), 1);
    assert_memory_equal(out.data, "later", 5);
    /* too large for its share: not kept */
    big = calloc(1, VCACHE_BYTES / 64 + 1);
    assert_non_null(big);
    vcache_put(c, 9, c7, 0, big, VCACHE_BYTES / 64 + 1);
    out.len = 0;
    assert_int_equal(vcache_get(c, 9, c7, 0, &out, &e), 0);
    free(big);
    buf_free(&out);
    vcache_free(c);
    vcache_free(NULL);
}

struct worker {
    struct vcache *c;
    int id, bad;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    struct errctx e = {0, ""};
    struct buf out = {0};

    for (uint64_t i = 0; i < 20000; i++) {
        uint64_t seq = (i * 7 + (uint64_t)w->id) % 6000;
        uint8_t cm[20];
        char val[32];
        int n;
        commit_of(cm, seq);
        n = snprintf(val, sizeof(val), "v%llu", (unsigned long long)seq);
        out.len = 0;
        if (vcache_get(w->c, seq, cm, 0, &out, &e) == 1) {
            if (out.len != (size_t)n || memcmp(out.data, val, (size_t)n) != 0)
                w->bad++;
        } else {
            vcache_put(w->c, seq, cm, 0, val, (size_t)n);
        }
    }
    buf_free(&out);
    return NULL;
}

static void test_threads(void **state)
{
    struct vcache *c = NULL;
    struct errctx e = {0, ""};
    struct worker w[4];
    pthread_t th[4];

    (void)state;
    assert_int_equal(vcache_new(&c, &e), SYNC_OK);
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){c, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
    }
    vcache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
