/*
 * gittree.h - git tree objects as bytes: read one entry at a time, and write
 * a directory's new tree by merging its old tree with sorted changes.
 *
 * A tree body is a run of entries "<octal mode> <name>\0<20-byte id>",
 * sorted by name as git compares them: byte by byte, a directory's name
 * taken as if it ended in '/'.  gitmap builds the dataset tree with these
 * instead of libgit2's treebuilder: a first-level shard of a million-row
 * table has 256 entries, and a version that changes four of them should
 * copy the other 252 as they are, not parse, allocate, sort and write each
 * one again.
 *
 * The old tree may come from a site's tree store, which any SQLite tool can
 * edit: every entry is checked (mode, name, order), and a malformed tree is
 * refused with SYNC_EDATA and a sentence, never read past its end.
 */
#ifndef EMPACT_GITTREE_H
#define EMPACT_GITTREE_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "errctx.h"

#define GITTREE_ID_LEN 20

/* One entry of a tree body; name and id point into it. */
struct gittree_entry {
    const char *name;
    size_t len;
    int dir; /* mode 40000 (a tree); otherwise 100644 (a row's blob) */
    const uint8_t *id;
    const uint8_t *raw; /* the whole entry, mode to id */
    size_t rawlen;
};

/* Reads a tree body entry by entry, checking each and its order. */
struct gittree_iter {
    const uint8_t *p, *end;
    struct gittree_entry prev; /* the entry before, for the order check */
    int started;
};

void gittree_iter_init(struct gittree_iter *it, const void *body, size_t len);
/* 1 and *out: the next entry; 0: the end; SYNC_EDATA: malformed. */
int gittree_next(struct gittree_iter *it, struct gittree_entry *out, struct errctx *e) SYNC_WUR;

/* git's order of two entry names (<0, 0, >0). */
int gittree_cmp(const char *a, size_t alen, int adir, const char *b, size_t blen, int bdir);

/* What becomes of one name in a directory. */
struct gittree_change {
    const char *name; /* borrowed; no '/' and no NUL in its len bytes */
    size_t len;
    int dir;    /* the new entry is a tree (40000), else a blob (100644) */
    int remove; /* the name goes (absent already: nothing happens) */
    uint8_t id[GITTREE_ID_LEN];
};

/* Appends to out the body of old (len bytes; NULL, 0 for a new directory)
 * with the changes ch[0..n) applied: n sorted by gittree_cmp; of changes to
 * the same name the last one counts.  SYNC_EDATA for a malformed old tree,
 * or a change that turns a row into a directory or back. */
int gittree_merge(struct buf *out, const void *old, size_t len, const struct gittree_change *ch,
                  size_t n, struct errctx *e) SYNC_WUR;

/* The object id git gives "tree" or "blob" bytes p[0..n): SHA-1 of
 * "<type> <n>\0" and the bytes. */
int gittree_object_id(uint8_t out[GITTREE_ID_LEN], const char *type, const void *p, size_t n,
                      struct errctx *e) SYNC_WUR;

/* OpenSSL's SHA-1 and SHA-256, fetched once: the implicit fetch that
 * EVP_sha1() makes on every use cost more than hashing a row's text. */
const EVP_MD *gittree_sha1(void);
const EVP_MD *gittree_sha256(void);

#endif
