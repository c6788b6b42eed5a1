/*
 * test_gittree.c - tree bodies written by gittree_merge() against libgit2's
 * own treebuilder: random directories edited at random give the very same
 * bytes and ids; git's order of names ("a.b" before the directory "a");
 * changes to one name, the last wins; removing every entry; and malformed
 * old trees (bad mode, cut short, a '/' in a name, out of order, duplicate)
 * refused with a sentence, never read past their end.
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
#include <git2/sys/mempack.h>

#include "buf.h"
#include "gittree.h"

static git_repository *repo;

static int setup(void **state)
{
    git_odb *odb = NULL;
    git_odb_backend *mem = NULL;

    (void)state;
    git_libgit2_init();
    /* the entries name made-up ids */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 0);
    /* the treebuilder writes what it builds: into memory */
    if (git_odb_new(&odb) != 0 || git_mempack_new(&mem) != 0 ||
        git_odb_add_backend(odb, mem, 1) != 0 || git_repository_wrap_odb(&repo, odb) != 0)
        return -1;
    git_odb_free(odb);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    git_repository_free(repo);
    git_libgit2_shutdown();
    return 0;
}

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fake_id(uint8_t id[GITTREE_ID_LEN], uint32_t v)
{
    for (int i = 0; i < GITTREE_ID_LEN; i++)
        id[i] = (uint8_t)(v >> (8 * (i % 4))) ^ (uint8_t)i;
}

/* The body of the tree bld holds, as libgit2 writes it. */
static void body_of(struct buf *out, git_treebuilder *bld)
{
    git_oid id;
    git_odb *odb = NULL;
    git_odb_object *obj = NULL;
    struct errctx e = {0, ""};

    assert_int_equal(git_treebuilder_write(&id, bld), 0);
    assert_int_equal(git_repository_odb(&odb, repo), 0);
    assert_int_equal(git_odb_read(&obj, odb, &id), 0);
    out->len = 0;
    assert_int_equal(buf_put(out, git_odb_object_data(obj), git_odb_object_size(obj), &e), SYNC_OK);
    git_odb_object_free(obj);
    git_odb_free(odb);
}

static int change_cmp(const void *a, const void *b)
{
    const struct gittree_change *x = a, *y = b;
    return gittree_cmp(x->name, x->len, x->dir, y->name, y->len, y->dir);
}

/* Random directories of rows (or of subdirectories), edited at random:
 * merge == treebuilder, byte for byte, and so are the ids. */
static void test_against_treebuilder(void **state)
{
    uint32_t seed = 12345;
    char names[400][16];
    struct errctx e = {0, ""};

    (void)state;
    for (int round = 0; round < 200; round++) {
        int dir = round % 2, nold = (int)(rnd(&seed) % 60), nch = (int)(rnd(&seed) % 40);
        git_treebuilder *bld = NULL;
        struct buf old = {0}, want = {0}, got = {0};
        struct gittree_change ch[64];
        git_oid id;
        uint8_t ours[GITTREE_ID_LEN];

        for (int i = 0; i < 400; i++) /* names that share prefixes: "a", "a.b", "a-c"... */
            snprintf(names[i], sizeof(names[i]), "%c%s%u", 'a' + (int)(rnd(&seed) % 3),
                     (rnd(&seed) % 2) ? "." : "", rnd(&seed) % 50);
        assert_int_equal(git_treebuilder_new(&bld, repo, NULL), 0);
        for (int i = 0; i < nold; i++) {
            fake_id(id.id, rnd(&seed));
            assert_int_equal(git_treebuilder_insert(NULL, bld, names[i], &id,
                                                    dir ? GIT_FILEMODE_TREE : GIT_FILEMODE_BLOB),
                             0);
        }
        body_of(&old, bld);
        for (int i = 0; i < nch; i++) {
            const char *nm = names[rnd(&seed) % 400];
            ch[i].name = nm;
            ch[i].len = strlen(nm);
            ch[i].dir = dir;
            ch[i].remove = rnd(&seed) % 4 == 0;
            fake_id(ch[i].id, rnd(&seed));
        }
        /* stable for equal names: the last of them must win, as in the builder */
        for (int i = 1; i < nch; i++)
            for (int k = i; k > 0 && change_cmp(&ch[k - 1], &ch[k]) > 0; k--) {
                struct gittree_change t = ch[k];
                ch[k] = ch[k - 1];
                ch[k - 1] = t;
            }
        for (int i = 0; i < nch; i++) {
            memcpy(id.id, ch[i].id, GITTREE_ID_LEN);
            if (ch[i].remove) {
                if (git_treebuilder_get(bld, ch[i].name) != NULL)
                    assert_int_equal(git_treebuilder_remove(bld, ch[i].name), 0);
            } else {
                assert_int_equal(
                    git_treebuilder_insert(NULL, bld, ch[i].name, &id,
                                           dir ? GIT_FILEMODE_TREE : GIT_FILEMODE_BLOB),
                    0);
            }
        }
        body_of(&want, bld);
        assert_int_equal(gittree_merge(&got, old.data, old.len, ch, (size_t)nch, &e), SYNC_OK);
        assert_int_equal(got.len, want.len);
        if (got.len > 0)
            assert_memory_equal(got.data, want.data, got.len);
        assert_int_equal(
            git_odb_hash(&id, want.data ? (void *)want.data : "", want.len, GIT_OBJECT_TREE), 0);
        assert_int_equal(
            gittree_object_id(ours, "tree", got.data ? (void *)got.data : "", got.len, &e),
            SYNC_OK);
        assert_memory_equal(ours, id.id, GITTREE_ID_LEN);
        git_treebuilder_free(bld);
        buf_free(&old);
        buf_free(&want);
        buf_free(&got);
    }
}

/* git's order: the row "a.b" comes before the directory "a" (read as "a/"),
 * the row "a" before "a.b". */
static void test_order(void **state)
{
    (void)state;
    assert_true(gittree_cmp("a.b", 3, 1, "a", 1, 1) < 0);
    assert_true(gittree_cmp("a", 1, 0, "a.b", 3, 0) < 0);
    assert_true(gittree_cmp("a", 1, 1, "a0", 2, 1) < 0); /* '/' < '0' */
    assert_int_equal(gittree_cmp("ab", 2, 1, "ab", 2, 1), 0);
}

/* Two changes to one name: the last counts; removing all: an empty body;
 * turning a row into a directory is refused. */
static void test_edges(void **state)
{
    struct gittree_change ch[3] = {{"x", 1, 0, 0, {1}}, {"x", 1, 0, 0, {2}}, {"y", 1, 0, 1, {0}}};
    struct buf one = {0}, none = {0};
    struct gittree_iter it;
    struct gittree_entry en;
    struct errctx e = {0, ""};

    (void)state;
    assert_int_equal(gittree_merge(&one, NULL, 0, ch, 3, &e), SYNC_OK);
    gittree_iter_init(&it, one.data, one.len);
    assert_int_equal(gittree_next(&it, &en, &e), 1);
    assert_int_equal(en.len, 1);
    assert_int_equal(en.id[0], 2);
    assert_int_equal(gittree_next(&it, &en, &e), 0);
    ch[0].remove = ch[1].remove = 1;
    assert_int_equal(gittree_merge(&none, one.data, one.len, ch, 3, &e), SYNC_OK);
    assert_int_equal(none.len, 0);
    ch[1].remove = 0;
    ch[1].dir = 1;
    ch[0].dir = 1;
    assert_int_equal(gittree_merge(&none, one.data, one.len, ch, 2, &e), SYNC_EDATA);
    assert_non_null(strstr(e.msg, "mix rows and directories"));
    buf_free(&one);
    buf_free(&none);
}

/* Malformed old trees: refused, with a sentence. */
static void test_malformed(void **state)
{
    static const struct {
        const char *body;
        size_t len;
        const char *says;
    } bad[] = {
        {"100755 a\0aaaaaaaaaaaaaaaaaaaa", 29, "mode"},
        {"100644a\0aaaaaaaaaaaaaaaaaaaa", 28, "no mode"},
        {"100644 a\0aaaaaaaaaa", 19, "cut short"},
        {"100644 a", 8, "cut short"},
        {"100644 \0aaaaaaaaaaaaaaaaaaaa", 28, "empty"},
        {"100644 a/b\0aaaaaaaaaaaaaaaaaaaa", 31, "'/'"},
        {"100644 b\0aaaaaaaaaaaaaaaaaaaa100644 a\0aaaaaaaaaaaaaaaaaaaa", 58, "out of order"},
        {"100644 a\0aaaaaaaaaaaaaaaaaaaa100644 a\0aaaaaaaaaaaaaaaaaaaa", 58, "out of order"},
    };
    struct gittree_change ch = {"zz", 2, 0, 0, {0}};

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf out = {0};
        struct errctx e = {0, ""};
        /* a copy of exactly len bytes, so ASan catches a read past the end */
        char *copy = malloc(bad[i].len);
        assert_non_null(copy);
        memcpy(copy, bad[i].body, bad[i].len);
        assert_int_equal(gittree_merge(&out, copy, bad[i].len, &ch, 1, &e), SYNC_EDATA);
        assert_non_null(strstr(e.msg, bad[i].says));
        free(copy);
        buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_treebuilder),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
