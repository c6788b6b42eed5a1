/*
 * gitmap.h - the dataset <-> git mapping.
 *
 * The replicated tables at a version are one git tree:
 *     <table>/<ab>/<cd>/<row name>    one blob per row, its canonical text
 * where <row name> encodes the primary key (gitmap_row_name()) and <ab>, <cd>
 * are the first two bytes, in hex, of the SHA-256 of the row name (layout 2;
 * history written before it has one level, <table>/<ab>/<row name>: layout
 * 1, which a hub moves to layout 2 with one version).  Empty shards and empty
 * tables have no entry.  The tree id is the dataset hash: the hub
 * commits it, and a site computes it from its base copies to prove it holds
 * what the hub holds.  Trees are built as bytes (gittree.h), rewriting only
 * the shards whose rows changed.
 */
#ifndef EMPACT_GITMAP_H
#define EMPACT_GITMAP_H

#include <sqlite3.h>
#include <stdint.h>

#include "buf.h"
#include "errctx.h"
#include "schema.h"

#define GITMAP_OID_LEN 20
#define GITMAP_LAYOUT 2    /* shard levels of the trees this release writes */
#define GITMAP_SHARD_MAX 6 /* "ab/cd" and its NUL */

struct git_repository;
struct git_tree;
#define GITMAP_BRANCH "refs/heads/main"

struct gitmap;

/* Creates a bare repository at path whose HEAD names GITMAP_BRANCH. */
int gitmap_init(const char *path, struct errctx *e) SYNC_WUR;

/* Opens the bare repository at path.  Caller frees with gitmap_free().
 * Objects written through it wait in memory until gitmap_set_head(), which
 * writes them to disk as one pack before it moves the branch; objects of a
 * commit that never becomes the head are never written. */
int gitmap_open(struct gitmap **out, const char *path, struct errctx *e) SYNC_WUR;

/* An object store in memory only (sites: computing dataset hashes). */
int gitmap_new_memory(struct gitmap **out, struct errctx *e) SYNC_WUR;

/* A site's tree store: the trees of the dataset hash its base copies last
 * proved, one row per directory in GITMAP_STORE_TABLE of db (created with
 * GITMAP_STORE_DDL), so that the next hash rewrites only the directories
 * whose rows changed.  Blobs are never kept (a tree needs only their ids).
 * Trees are read from the table; new ones wait in memory until
 * gitmap_store_save().  db is borrowed and must outlive the gitmap. */
#define GITMAP_STORE_TABLE "_empact_tree"
#define GITMAP_STORE_DDL                                                                           \
    "CREATE TABLE IF NOT EXISTS " GITMAP_STORE_TABLE " (path TEXT NOT NULL UNIQUE,"                \
    " oid BLOB NOT NULL, body BLOB NOT NULL);"                                                     \
    "CREATE INDEX IF NOT EXISTS " GITMAP_STORE_TABLE "_oid ON " GITMAP_STORE_TABLE " (oid);"
int gitmap_open_store(struct gitmap **out, sqlite3 *db, struct errctx *e) SYNC_WUR;

/* The root tree the store holds; *found = 0 when it holds none. */
int gitmap_store_root(uint8_t out[GITMAP_OID_LEN], int *found, struct gitmap *g,
                      struct errctx *e) SYNC_WUR;

/* Writes the directories the last tree build on g rewrote (every one, and
 * nothing else kept, after gitmap_tree_full()) into the store, in the
 * caller's transaction, and empties the memory they waited in. */
int gitmap_store_save(struct gitmap *g, struct errctx *e) SYNC_WUR;

/* The shard levels g builds trees with: GITMAP_LAYOUT unless set. */
int gitmap_layout(const struct gitmap *g);

/* Tree builds on sc's connection prepare their row queries through sc (it
 * outlives them: the hub's writer); NULL, or another connection, prepares
 * them for each build.  sc is borrowed. */
struct stmtcache;
void gitmap_use_stmtcache(struct gitmap *g, struct stmtcache *sc);

/* Hands what from keeps between builds (its statement cache, the trees it
 * read and wrote recently) to to, a fresh gitmap of the same repository
 * that replaces it (the hub reopens its history after a fold). */
void gitmap_carry(struct gitmap *to, struct gitmap *from);
void gitmap_set_layout(struct gitmap *g, int layout);

/* Whether a build writes row blobs into an on-disk repository's stage (the
 * default there) or only hashes them: a tree of rows whose blobs the history
 * holds already (a relayout) needs no second copy of each. */
void gitmap_set_keep_blobs(struct gitmap *g, int keep);

/* The layout of a dataset tree: 1 or 2 shard levels, 0 for the empty tree
 * (either), -1 for neither (not a dataset tree). */
int gitmap_layout_of(struct git_repository *repo, const struct git_tree *root);
int gitmap_tree_layout(int *layout, struct gitmap *g, const uint8_t tree[GITMAP_OID_LEN],
                       struct errctx *e) SYNC_WUR;

/* Safe to call with NULL. */
void gitmap_free(struct gitmap *g);

/* New tree = base_tree (NULL: the empty tree) with every key listed in
 * temp._touched_T rewritten from the current row of prefix||T, or removed
 * when that row no longer exists.  db and s are borrowed. */
int gitmap_tree_update(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t *base_tree,
                       sqlite3 *db, const struct schema *s, const char *prefix,
                       struct errctx *e) SYNC_WUR;

/* The tree of every row of every replicated table prefix||T.  On an
 * in-memory store the objects are dropped afterwards (only the id is kept),
 * so that id cannot seed a later gitmap_tree_update() on the same store;
 * on a tree store they wait for gitmap_store_save(). */
int gitmap_tree_full(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, sqlite3 *db,
                     const struct schema *s, const char *prefix, struct errctx *e) SYNC_WUR;

/* Writes a commit (author = committer = author <author@sites.empact>, at
 * time seconds UTC) with parent (NULL for none).  Does not move any ref. */
int gitmap_commit(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t tree[GITMAP_OID_LEN],
                  const uint8_t *parent, const char *author, int64_t time, const char *msg,
                  struct errctx *e) SYNC_WUR;

/* Writes the objects waiting in memory (gitmap_open()) as one pack, durably,
 * then points GITMAP_BRANCH at commit. */
int gitmap_set_head(struct gitmap *g, const uint8_t commit[GITMAP_OID_LEN], const char *why,
                    struct errctx *e) SYNC_WUR;

/* Drops the objects waiting in memory (gitmap_open()) without writing them:
 * for a caller that only checks trees (rebuild), after each check. */
int gitmap_discard(struct gitmap *g, struct errctx *e) SYNC_WUR;

/* Removes GITMAP_BRANCH's lock file if one is left (a writer that died while
 * moving the branch).  Call only while holding the hub's write lock, when no
 * other writer can be moving it. */
int gitmap_clear_stale_lock(struct gitmap *g, struct errctx *e) SYNC_WUR;

/* The commit GITMAP_BRANCH names; *found = 0 when the branch has no commit yet. */
int gitmap_head(uint8_t out[GITMAP_OID_LEN], int *found, struct gitmap *g,
                struct errctx *e) SYNC_WUR;

/* The canonical text of one row: for each column in schema order a line
 * `name: value`, value being null, an integer, a real (always with a '.' or
 * an exponent), a JSON-style quoted string, or x'hex' for a blob.  The row's
 * columns are st's columns first .. first+t->ncol-1.  Appends to out. */
int gitmap_row_text(struct buf *out, sqlite3_stmt *st, int first, const struct schema_table *t,
                    struct errctx *e) SYNC_WUR;

/* The canonical text of one value, as in a row's text (null, 42, 0.5, "text",
 * x'00ff'); appended to out. */
int gitmap_value_text(struct buf *out, sqlite3_value *v, struct errctx *e) SYNC_WUR;

/* The file name of a row: its key values joined by ',', text percent-encoded
 * outside [A-Za-z0-9_-] (and '.' encoded), integers in decimal, blobs as x<hex>;
 * a name over ROW_NAME_MAX bytes becomes its first ROW_NAME_KEEP bytes, '~'
 * and the SHA-256 of the whole name in hex.  NUL-terminated in out. */
int gitmap_row_name(struct buf *out, sqlite3_stmt *st, int first, const struct schema_table *t,
                    struct errctx *e) SYNC_WUR;

/* The shard path of a row name in the given layout (NUL-terminated): the
 * first two bytes of its SHA-256 in lowercase hex, "ab/cd" (layout 1: the
 * first byte, "ab"). */
void gitmap_row_shard(char out[GITMAP_SHARD_MAX], int layout, const char *name);

/* Lowercase hex of a 20-byte id into out[41]. */
void gitmap_oid_hex(char out[41], const uint8_t oid[GITMAP_OID_LEN]);

/* Parses 40 hex digits; SYNC_EPROTO if s is not one. */
int gitmap_oid_parse(uint8_t out[GITMAP_OID_LEN], const char *s, struct errctx *e) SYNC_WUR;

#endif
