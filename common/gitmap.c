/*
 * gitmap.c - canonical row text, row paths, and tree/commit writing with
 * libgit2 (layout in gitmap.h).
 *
 * A tree update visits only the shards that hold a touched key: it collects
 * the edits of one table, sorts them by shard path and name, and rewrites
 * each touched leaf shard by merging its old tree body with its edits
 * (gittree_merge(): untouched entries are copied as bytes), then each
 * touched first-level shard, then the table tree, then the root.  A tree
 * whose bytes come out unchanged is not written again.  Untouched shards
 * keep their ids, so the cost follows the number of changed rows (plus the
 * size of the touched shards: about 15 rows per leaf and 256 leaves per
 * first-level shard at a million rows).  Object ids are SHA-1 through
 * OpenSSL, which uses the CPU's SHA instructions where it has them.
 */
#include "gitmap.h"

#include "db.h"
#include "gittree.h"
#include "packfile.h"
#include "testpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
#include <libdeflate.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct gitmap {
    git_repository *repo;
    git_odb_backend *mempack; /* non-NULL for an in-memory store (owned by the odb) */
    git_odb_backend *stage;   /* on-disk repositories: where new objects wait for
                                 gitmap_set_head() to write them as one pack */
    git_oid *staged;          /* ids of the objects written to the stage */
    size_t nstaged, capstaged;
    int stage_lost;        /* an id could not be remembered (out of memory) */
    int keep_blobs;        /* on-disk history: blobs are content; elsewhere only their ids count */
    sqlite3 *store;        /* a site's tree store (gitmap_open_store()), borrowed */
    struct placed *placed; /* directories the last tree build rewrote, for the store */
    size_t nplaced, capplaced;
    int placed_lost;      /* a directory could not be remembered (out of memory) */
    int placed_all;       /* the last build was a full one: the store is replaced */
    int layout;           /* GITMAP_LAYOUT, or 1 (one shard level) for older history */
    struct stmtcache *sc; /* gitmap_use_stmtcache(), borrowed, or NULL */
    struct tslot *tcache; /* on-disk history: recent trees by id (TCACHE_SLOTS), or NULL */
    size_t tcache_bytes;  /* bodies held in tcache */
};

/* Trees of an on-disk history the last builds wrote or read, direct-mapped
 * by id: a version rewrites the trees the one before it wrote (the root,
 * the table, the shards its rows fall in), and reading them back through
 * the odb (find the pack, inflate) was a tenth of the hub's CPU under load.
 * A tree's body is fixed by its id, so an entry is never stale; at most
 * TCACHE_BYTES of bodies are kept, none over TCACHE_BODY_MAX. */
#define TCACHE_SLOTS 65536
#define TCACHE_BYTES (24u * 1024 * 1024)
#define TCACHE_BODY_MAX (64u * 1024)

struct tslot {
    uint8_t id[GITMAP_OID_LEN];
    uint8_t *body; /* NULL: empty */
    size_t len;
};

/* One directory of the dataset tree that a build rewrote: path "" is the
 * root, "T" a table, "T/ab" and "T/ab/cd" shards; removed when it became
 * empty. */
struct placed {
    char *path;
    git_oid id;
    int removed;
};

/* Above libgit2's loose (1) and pack (2) backends: every object written goes
 * to the stage, every read finds it there or on disk. */
#define STAGE_PRIORITY 1000

struct edit {
    char shard[GITMAP_SHARD_MAX]; /* "ab/cd" (layout 2) or "ab" (layout 1) */
    unsigned key;                 /* the shard as a number, for sorting */
    char *name;
    int remove;
    git_oid blob;
};

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

static void git_boot(void)
{
    git_libgit2_init();
    /* An acknowledged push must survive a power cut: hub.db is synchronous=FULL,
     * so the objects and refs it points to must be on disk as well. */
    git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, 1);
    /* Every tree we build names objects we have just hashed (a row's blob,
     * a shard we wrote): looking each one up again proves nothing, and a
     * site, which keeps no blobs, could not answer it. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 0);
    /* A build reads each old tree once; cached, a bulk change that touches
     * every leaf would keep every leaf parsed in memory. */
    git_libgit2_opts(GIT_OPT_SET_CACHE_OBJECT_LIMIT, GIT_OBJECT_TREE, (size_t)0);
    /* What is left in the cache is commits: each version reads its parent
     * once, so by default (256 MiB) a busy hub kept every commit it ever
     * wrote, its heap growing with its history. */
    git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, (ssize_t)GIT_CACHE_BYTES);
    /* libgit2 hashes every object it reads again to check its id (git does
     * not, outside fsck): a tenth of the hub's CPU under load, for objects
     * whose pack entries zlib's checksum and the index's CRC already guard;
     * `empact-hub verify` and git fsck check ids. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
}

static int git_err(struct errctx *e, const char *what)
{
    const git_error *ge = git_error_last();
    return errctx_set(e, SYNC_EIO, "git: %s: %s", what, ge && ge->message ? ge->message : "failed");
}

void gitmap_oid_hex(char out[41], const uint8_t oid[GITMAP_OID_LEN])
{
    for (int i = 0; i < GITMAP_OID_LEN; i++)
        snprintf(out + i * 2, 3, "%02x", oid[i]);
}

int gitmap_oid_parse(uint8_t out[GITMAP_OID_LEN], const char *s, struct errctx *e)
{
    git_oid oid;
    if (s == NULL || strlen(s) != 40 || git_oid_fromstr(&oid, s) != 0)
        return errctx_set(e, SYNC_EPROTO, "not a 40-digit object id: %.48s", s ? s : "(null)");
    memcpy(out, oid.id, GITMAP_OID_LEN);
    return SYNC_OK;
}

/* GITMAP_LAYOUT; test builds take EMPACT_TREE_LAYOUT=1 to make history the
 * way releases before the two-level layout did (tests of the upgrade). */
static int default_layout(void)
{
    return testpoint_limit("EMPACT_TREE_LAYOUT", GITMAP_LAYOUT) == 1 ? 1 : GITMAP_LAYOUT;
}

void gitmap_use_stmtcache(struct gitmap *g, struct stmtcache *sc)
{
    g->sc = sc;
}

void gitmap_carry(struct gitmap *to, struct gitmap *from)
{
    to->sc = from->sc;
    if (to->tcache != NULL && from->tcache != NULL) {
        struct tslot *t = to->tcache;
        to->tcache = from->tcache;
        from->tcache = t; /* to's empty one, freed with from */
        to->tcache_bytes = from->tcache_bytes;
        from->tcache_bytes = 0;
    }
}

int gitmap_layout(const struct gitmap *g)
{
    return g->layout;
}

void gitmap_set_layout(struct gitmap *g, int layout)
{
    g->layout = layout == 1 ? 1 : GITMAP_LAYOUT;
}

void gitmap_set_keep_blobs(struct gitmap *g, int keep)
{
    g->keep_blobs = keep && g->store == NULL && g->mempack == NULL;
}

int gitmap_layout_of(struct git_repository *repo, const struct git_tree *root)
{
    const git_tree *t = root;
    git_tree *owned[2] = {NULL, NULL};
    int depth = -1; /* shard levels between a table and its first blob */

    for (int level = 0; level < 4; level++) {
        const git_tree_entry *te = git_tree_entrycount(t) ? git_tree_entry_byindex(t, 0) : NULL;
        git_tree *next = NULL;

        if (te == NULL) { /* only the root may be empty */
            depth = level == 0 ? 0 : -1;
            break;
        }
        if (git_tree_entry_type(te) == GIT_OBJECT_BLOB) {
            depth = level >= 2 ? level - 1 : -1;
            break;
        }
        if (git_tree_lookup(&next, repo, git_tree_entry_id(te)) != 0)
            break;
        git_tree_free(owned[level % 2]);
        owned[level % 2] = next;
        t = next;
    }
    git_tree_free(owned[0]);
    git_tree_free(owned[1]);
    return depth >= 0 && depth <= 2 ? depth : -1;
}

int gitmap_tree_layout(int *layout, struct gitmap *g, const uint8_t tree[GITMAP_OID_LEN],
                       struct errctx *e)
{
    git_tree *root = NULL;
    git_oid id;

    memcpy(id.id, tree, GITMAP_OID_LEN);
    if (git_tree_lookup(&root, g->repo, &id) != 0)
        return git_err(e, "reading a dataset tree");
    *layout = gitmap_layout_of(g->repo, root);
    git_tree_free(root);
    if (*layout < 0)
        return errctx_set(e, SYNC_EDATA, "a dataset tree of neither layout (not a hub's)");
    return SYNC_OK;
}

int gitmap_init(const char *path, struct errctx *e)
{
    git_repository *repo = NULL;
    git_repository_init_options opts;

    pthread_once(&git_once, git_boot);
    git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    opts.flags =
        GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
    opts.initial_head = "main";
    if (git_repository_init_ext(&repo, path, &opts) != 0)
        return git_err(e, "creating the history repository");
    git_repository_free(repo);
    return SYNC_OK;
}

int gitmap_open(struct gitmap **out, const char *path, struct errctx *e)
{
    struct gitmap *g;
    git_odb *odb = NULL;

    pthread_once(&git_once, git_boot);
    *out = NULL;
    if ((g = calloc(1, sizeof(*g))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (git_repository_open_bare(&g->repo, path) != 0) {
        free(g);
        return git_err(e, "opening the history repository");
    }
    if (git_repository_odb(&odb, g->repo) != 0 || git_mempack_new(&g->stage) != 0 ||
        git_odb_add_backend(odb, g->stage, STAGE_PRIORITY) != 0) {
        int rc = git_err(e, "opening the history repository's object store");
        if (g->stage != NULL)
            g->stage->free(g->stage); /* not added (the last step failed): still ours */
        git_odb_free(odb);
        git_repository_free(g->repo);
        free(g);
        return rc;
    }
    git_odb_free(odb); /* the repository holds its own reference, and the stage */
    g->keep_blobs = 1;
    g->tcache = calloc(TCACHE_SLOTS, sizeof(*g->tcache)); /* NULL: builds read the odb */
    g->layout = default_layout();
    *out = g;
    return SYNC_OK;
}

int gitmap_new_memory(struct gitmap **out, struct errctx *e)
{
    struct gitmap *g;
    git_odb *odb = NULL;

    pthread_once(&git_once, git_boot);
    *out = NULL;
    if ((g = calloc(1, sizeof(*g))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (git_odb_new(&odb) != 0 || git_mempack_new(&g->mempack) != 0 ||
        git_odb_add_backend(odb, g->mempack, 1) != 0 ||
        git_repository_wrap_odb(&g->repo, odb) != 0) {
        int rc = git_err(e, "creating an in-memory object store");
        git_odb_free(odb); /* frees the backend too once it was added */
        free(g);
        return rc;
    }
    git_odb_free(odb); /* the repository holds its own reference */
    g->layout = default_layout();
    *out = g;
    return SYNC_OK;
}

static void placed_clear(struct gitmap *g)
{
    for (size_t i = 0; i < g->nplaced; i++)
        free(g->placed[i].path);
    g->nplaced = 0;
    g->placed_lost = 0;
    g->placed_all = 0;
}

/* ---- a site's tree store ---------------------------------------------------
 * A read-only odb backend over GITMAP_STORE_TABLE: it finds a tree by id.
 * Writes go to the mempack stage above it and reach the table only through
 * gitmap_store_save(), inside the caller's transaction. */

struct store_backend {
    git_odb_backend parent;
    sqlite3_stmt *get; /* SELECT body WHERE oid = ? */
};

/* Steps b's statement for id; SQLITE_ROW when the store holds it. */
static int store_find(struct store_backend *b, const git_oid *id)
{
    sqlite3_reset(b->get);
    if (sqlite3_bind_blob(b->get, 1, id->id, GITMAP_OID_LEN, SQLITE_STATIC) != SQLITE_OK)
        return SQLITE_ERROR;
    return sqlite3_step(b->get);
}

static int store_read(void **data, size_t *len, git_object_t *type, git_odb_backend *be,
                      const git_oid *id)
{
    struct store_backend *b = (struct store_backend *)be;
    int step = store_find(b, id), rc = 0;

    if (step == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(b->get, 0);
        void *p = git_odb_backend_data_alloc(be, n ? n : 1);
        if (p == NULL) {
            rc = -1;
        } else {
            if (n > 0)
                memcpy(p, sqlite3_column_blob(b->get, 0), n);
            *data = p;
            *len = n;
            *type = GIT_OBJECT_TREE;
        }
    } else {
        rc = step == SQLITE_DONE ? GIT_ENOTFOUND : -1;
    }
    sqlite3_reset(b->get);
    return rc;
}

static int store_read_header(size_t *len, git_object_t *type, git_odb_backend *be,
                             const git_oid *id)
{
    struct store_backend *b = (struct store_backend *)be;
    int step = store_find(b, id);

    if (step == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(b->get, 0);
        *type = GIT_OBJECT_TREE;
    }
    sqlite3_reset(b->get);
    return step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? GIT_ENOTFOUND : -1;
}

static int store_exists(git_odb_backend *be, const git_oid *id)
{
    struct store_backend *b = (struct store_backend *)be;
    int found = store_find(b, id) == SQLITE_ROW;
    sqlite3_reset(b->get);
    return found;
}

static void store_free(git_odb_backend *be)
{
    struct store_backend *b = (struct store_backend *)be;
    sqlite3_finalize(b->get);
    free(b);
}

int gitmap_open_store(struct gitmap **out, sqlite3 *db, struct errctx *e)
{
    struct gitmap *g;
    struct store_backend *b;
    git_odb *odb = NULL;
    int rc;

    pthread_once(&git_once, git_boot);
    *out = NULL;
    if ((g = calloc(1, sizeof(*g))) == NULL || (b = calloc(1, sizeof(*b))) == NULL) {
        free(g);
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    }
    if (sqlite3_prepare_v2(db, "SELECT body FROM " GITMAP_STORE_TABLE " WHERE oid = ? LIMIT 1", -1,
                           &b->get, NULL) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "reading the tree store: %s", sqlite3_errmsg(db));
        free(b);
        free(g);
        return rc;
    }
    git_odb_init_backend(&b->parent, GIT_ODB_BACKEND_VERSION);
    b->parent.read = store_read;
    b->parent.read_header = store_read_header;
    b->parent.exists = store_exists;
    b->parent.free = store_free;
    if (git_odb_new(&odb) != 0 || git_odb_add_backend(odb, &b->parent, 1) != 0) {
        rc = git_err(e, "opening the tree store");
        if (odb == NULL)
            store_free(&b->parent);
        git_odb_free(odb); /* frees the backend once it was added */
        free(g);
        return rc;
    }
    if (git_mempack_new(&g->stage) != 0 ||
        git_odb_add_backend(odb, g->stage, STAGE_PRIORITY) != 0) {
        rc = git_err(e, "opening the tree store");
        if (g->stage != NULL)
            g->stage->free(g->stage); /* not added: still ours */
        git_odb_free(odb);
        free(g);
        return rc;
    }
    if (git_repository_wrap_odb(&g->repo, odb) != 0) {
        rc = git_err(e, "opening the tree store");
        git_odb_free(odb); /* frees both backends */
        free(g);
        return rc;
    }
    git_odb_free(odb); /* the repository holds its own reference */
    g->store = db;
    g->layout = default_layout();
    *out = g;
    return SYNC_OK;
}

int gitmap_store_root(uint8_t out[GITMAP_OID_LEN], int *found, struct gitmap *g, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int step;

    *found = 0;
    if (sqlite3_prepare_v2(g->store, "SELECT oid FROM " GITMAP_STORE_TABLE " WHERE path = ''", -1,
                           &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "reading the tree store: %s", sqlite3_errmsg(g->store));
    if ((step = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == GITMAP_OID_LEN) {
        memcpy(out, sqlite3_column_blob(st, 0), GITMAP_OID_LEN);
        *found = 1;
    }
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return errctx_set(e, SYNC_EIO, "reading the tree store: %s", sqlite3_errmsg(g->store));
    return SYNC_OK;
}

/* Runs st (bound by the caller) to completion and resets it. */
static int store_run(struct gitmap *g, sqlite3_stmt *st, struct errctx *e)
{
    int step = sqlite3_step(st);
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        return errctx_set(e, SYNC_EIO, "writing the tree store: %s", sqlite3_errmsg(g->store));
    return SYNC_OK;
}

int gitmap_store_save(struct gitmap *g, struct errctx *e)
{
    sqlite3_stmt *put = NULL, *del = NULL;
    git_odb_object **obj = NULL;
    git_odb *odb = NULL;
    int rc = SYNC_OK;

    if (g->store == NULL)
        return errctx_set(e, SYNC_EUSAGE, "not a tree store");
    if (g->placed_lost)
        return errctx_set(e, SYNC_ENOMEM, "out of memory: a rewritten tree was not remembered");
    if (g->nplaced > 0 && (obj = calloc(g->nplaced, sizeof(*obj))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (git_repository_odb(&odb, g->repo) != 0) {
        rc = git_err(e, "reading the new trees");
        goto out;
    }
    /* A tree the odb did not write again (the store held it already) is read
     * first, from the row that still has it, before rows change; the others
     * wait in the stage and are read one at a time below. */
    for (size_t i = 0; i < g->nplaced; i++)
        if (!g->placed[i].removed && !g->stage->exists(g->stage, &g->placed[i].id) &&
            git_odb_read(&obj[i], odb, &g->placed[i].id) != 0) {
            rc = git_err(e, "reading a new tree");
            goto out;
        }
    if (g->placed_all &&
        (rc = db_exec(g->store, "DELETE FROM " GITMAP_STORE_TABLE, "tree store", e)) != SYNC_OK)
        goto out;
    if (sqlite3_prepare_v2(g->store,
                           "INSERT INTO " GITMAP_STORE_TABLE
                           " (path, oid, body) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT (path) DO UPDATE SET oid = ?2, body = ?3",
                           -1, &put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(g->store,
                           "DELETE FROM " GITMAP_STORE_TABLE " WHERE path = ?1 OR "
                           "substr(path, 1, length(?1) + 1) = ?1 || '/'",
                           -1, &del, NULL) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "writing the tree store: %s", sqlite3_errmsg(g->store));
        goto out;
    }
    for (size_t i = 0; rc == SYNC_OK && i < g->nplaced; i++) {
        const struct placed *p = &g->placed[i];
        sqlite3_stmt *st = p->removed ? del : put;
        void *data = NULL;
        size_t len = 0;
        git_object_t type;

        if (!p->removed && obj[i] == NULL &&
            g->stage->read(&data, &len, &type, g->stage, &p->id) != 0) {
            rc = git_err(e, "reading a new tree");
            break;
        }
        if (obj[i] != NULL) {
            data = (void *)git_odb_object_data(obj[i]);
            len = git_odb_object_size(obj[i]);
        }
        if (sqlite3_bind_text(st, 1, p->path, -1, SQLITE_STATIC) != SQLITE_OK ||
            (!p->removed &&
             (sqlite3_bind_blob(put, 2, p->id.id, GITMAP_OID_LEN, SQLITE_STATIC) != SQLITE_OK ||
              sqlite3_bind_blob64(put, 3, data, len, SQLITE_STATIC) != SQLITE_OK)))
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        else
            rc = store_run(g, st, e);
        sqlite3_clear_bindings(st);
        if (obj[i] == NULL)
            git_odb_backend_data_free(g->stage, data);
    }
out:
    sqlite3_finalize(put);
    sqlite3_finalize(del);
    for (size_t i = 0; obj != NULL && i < g->nplaced; i++)
        git_odb_object_free(obj[i]);
    free(obj);
    git_odb_free(odb);
    if (rc == SYNC_OK) {
        placed_clear(g);
        if (git_mempack_reset(g->stage) != 0)
            rc = git_err(e, "emptying the object stage");
    }
    return rc;
}

/* Remembers that a build rewrote directory [dir/]name as id (NULL: it
 * became empty and was removed), for gitmap_store_save(). */
static void placed_note(struct gitmap *g, const char *dir, const char *name, const git_oid *id)
{
    struct placed *p;
    size_t n;

    if (g->store == NULL)
        return;
    if (g->nplaced == g->capplaced) {
        size_t cap = g->capplaced ? g->capplaced * 2 : 64;
        struct placed *grown = reallocarray(g->placed, cap, sizeof(*grown));
        if (grown == NULL) {
            g->placed_lost = 1;
            return;
        }
        g->placed = grown;
        g->capplaced = cap;
    }
    n = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
    p = &g->placed[g->nplaced];
    if ((p->path = malloc(n)) == NULL) {
        g->placed_lost = 1;
        return;
    }
    if (dir != NULL)
        snprintf(p->path, n, "%s/%s", dir, name);
    else
        snprintf(p->path, n, "%s", name);
    p->removed = id == NULL;
    if (id != NULL)
        p->id = *id;
    g->nplaced++;
}

void gitmap_free(struct gitmap *g)
{
    if (g == NULL)
        return;
    git_repository_free(g->repo); /* frees the store backend and its statement */
    for (size_t i = 0; g->tcache != NULL && i < TCACHE_SLOTS; i++)
        free(g->tcache[i].body);
    free(g->tcache);
    free(g->staged);
    placed_clear(g);
    free(g->placed);
    free(g);
}

/* ---- canonical text ------------------------------------------------------ */

static int put_quoted(struct buf *out, const unsigned char *s, int n, struct errctx *e)
{
    static const char hex[] = "0123456789abcdef";
    size_t need = 2;
    uint8_t *w;
    int rc;

    /* the exact room first, then no check per byte: a row's text is written
     * for every row a tree build reads */
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        need += c == '"' || c == '\\' || c == '\n' || c == '\t' || c == '\r' ? 2
                : c < 0x20 || c == 0x7f                                      ? 6
                                                                             : 1;
    }
    if ((rc = buf_reserve(out, need, e)) != SYNC_OK)
        return rc;
    w = out->data + out->len;
    *w++ = '"';
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = c;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            *w++ = '\\';
            *w++ = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(w, "\\u00", 4);
            w[4] = (uint8_t)hex[c >> 4];
            w[5] = (uint8_t)hex[c & 15];
            w += 6;
        } else {
            *w++ = c;
        }
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return SYNC_OK;
}

static int put_hex(struct buf *out, const unsigned char *p, int n, struct errctx *e)
{
    static const char hex[] = "0123456789abcdef";
    int rc;

    if ((rc = buf_reserve(out, 2 * (size_t)n, e)) != SYNC_OK)
        return rc;
    for (int i = 0; i < n; i++) {
        out->data[out->len++] = (uint8_t)hex[p[i] >> 4];
        out->data[out->len++] = (uint8_t)hex[p[i] & 15];
    }
    return SYNC_OK;
}

static int put_real(struct buf *out, double d, struct errctx *e)
{
    char num[40];
    int n = snprintf(num, sizeof(num), "%.17g", d);
    if (strspn(num, "-0123456789") == (size_t)n)
        n += snprintf(num + n, sizeof(num) - (size_t)n, ".0");
    return buf_put(out, num, (size_t)n, e);
}

static int put_value(struct buf *out, sqlite3_value *v, struct errctx *e)
{
    char num[32];
    int n;

    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
        n = snprintf(num, sizeof(num), "%lld", (long long)sqlite3_value_int64(v));
        return buf_put(out, num, (size_t)n, e);
    case SQLITE_FLOAT:
        return put_real(out, sqlite3_value_double(v), e);
    case SQLITE_TEXT:
        return put_quoted(out, sqlite3_value_text(v), sqlite3_value_bytes(v), e);
    case SQLITE_BLOB: {
        int rc = buf_put(out, "x'", 2, e);
        if (rc == SYNC_OK)
            rc = put_hex(out, sqlite3_value_blob(v), sqlite3_value_bytes(v), e);
        return rc == SYNC_OK ? buf_put_u8(out, '\'', e) : rc;
    }
    default:
        return buf_put(out, "null", 4, e);
    }
}

int gitmap_value_text(struct buf *out, sqlite3_value *v, struct errctx *e)
{
    return put_value(out, v, e);
}

int gitmap_row_text(struct buf *out, sqlite3_stmt *st, int first, const struct schema_table *t,
                    struct errctx *e)
{
    int rc = SYNC_OK;
    for (int i = 0; rc == SYNC_OK && i < t->ncol; i++) {
        const char *name = t->cols[i].name;
        if ((rc = buf_put(out, name, strlen(name), e)) != SYNC_OK ||
            (rc = buf_put(out, ": ", 2, e)) != SYNC_OK ||
            (rc = put_value(out, sqlite3_column_value(st, first + i), e)) != SYNC_OK)
            break;
        rc = buf_put_u8(out, '\n', e);
    }
    return rc;
}

static int put_name_part(struct buf *out, sqlite3_value *v, struct errctx *e)
{
    const unsigned char *s;
    int n, rc = SYNC_OK;

    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
        return put_value(out, v, e);
    case SQLITE_BLOB:
        if ((rc = buf_put_u8(out, 'x', e)) != SYNC_OK)
            return rc;
        return put_hex(out, sqlite3_value_blob(v), sqlite3_value_bytes(v), e);
    case SQLITE_TEXT:
        s = sqlite3_value_text(v);
        n = sqlite3_value_bytes(v);
        if (n == 0)
            return buf_put(out, "%", 1, e); /* a lone '%' is never produced otherwise */
        for (int i = 0; rc == SYNC_OK && i < n; i++) {
            unsigned char c = s[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-') {
                rc = buf_put_u8(out, c, e);
            } else {
                char h[4];
                snprintf(h, sizeof(h), "%%%02X", c);
                rc = buf_put(out, h, 3, e);
            }
        }
        return rc;
    default:
        return errctx_set(e, SYNC_EDATA, "a key value is NULL");
    }
}

/* Shortens the name that starts at out->data + start when it is longer than
 * ROW_NAME_MAX: its first ROW_NAME_KEEP bytes, '~', and the SHA-256 of the
 * whole name in hex.  '~' never appears in an encoded name, so a shortened
 * name cannot equal a plain one. */
static int name_shorten(struct buf *out, size_t start, struct errctx *e)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    size_t len = out->len - start;

    if (len <= ROW_NAME_MAX)
        return SYNC_OK;
    if (EVP_Digest(out->data + start, len, md, &n, gittree_sha256(), NULL) != 1)
        return errctx_set(e, SYNC_ENOMEM, "cannot hash a long row name");
    out->len = start + ROW_NAME_KEEP;
    /* do not cut inside a %XX escape */
    for (size_t i = 1; i <= 2; i++) {
        if (out->data[out->len - i] == '%') {
            out->len -= i;
            break;
        }
    }
    int rc = buf_put_u8(out, '~', e);
    return rc == SYNC_OK ? put_hex(out, md, (int)n, e) : rc;
}

int gitmap_row_name(struct buf *out, sqlite3_stmt *st, int first, const struct schema_table *t,
                    struct errctx *e)
{
    size_t start = out->len;
    int rc = SYNC_OK;

    for (int k = 0; rc == SYNC_OK && k < t->npk; k++) {
        if (k > 0 && (rc = buf_put_u8(out, ',', e)) != SYNC_OK)
            break;
        rc = put_name_part(out, sqlite3_column_value(st, first + k), e);
    }
    if (rc == SYNC_OK)
        rc = name_shorten(out, start, e);
    return rc == SYNC_OK ? buf_put_u8(out, '\0', e) : rc;
}

/* ---- trees ---------------------------------------------------------------- */

static int edit_cmp(const void *a, const void *b)
{
    const struct edit *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void edits_free(struct edit *ed, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ed[i].name);
    free(ed);
}

/* The shard path of a row name ("ab/cd": the first two bytes of its
 * SHA-256 in hex; "ab" in layout 1); *key orders shard paths as strcmp
 * would, as a number. */
static void shard_of(char out[GITMAP_SHARD_MAX], unsigned *key, int layout, const char *name)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(name, strlen(name), md, &n, gittree_sha256(), NULL) != 1)
        md[0] = md[1] = 0;
    out[0] = hex[md[0] >> 4];
    out[1] = hex[md[0] & 15];
    if (layout == 1) {
        out[2] = '\0';
        *key = md[0];
        return;
    }
    out[2] = '/';
    out[3] = hex[md[1] >> 4];
    out[4] = hex[md[1] & 15];
    out[5] = '\0';
    *key = (unsigned)md[0] << 8 | md[1];
}

void gitmap_row_shard(char out[GITMAP_SHARD_MAX], int layout, const char *name)
{
    unsigned key;
    shard_of(out, &key, layout, name);
}

/* Remembers an object written while an on-disk repository's stage is in
 * use, for stage_flush().  Out of memory, the id is not remembered and
 * stage_flush() refuses to move the branch. */
static void stage_note(struct gitmap *g, const git_oid *id)
{
    if (g->stage == NULL || g->store != NULL)
        return;
    if (g->nstaged == g->capstaged) {
        size_t cap = g->capstaged ? g->capstaged * 2 : 1024;
        git_oid *p = reallocarray(g->staged, cap, sizeof(*p));
        if (p == NULL) {
            g->stage_lost = 1;
            return;
        }
        g->staged = p;
        g->capstaged = cap;
    }
    g->staged[g->nstaged++] = *id;
}

/* Writes a row's blob.  With an object store in memory (a site's, or the
 * stage of an on-disk one) straight into it: the odb's write would first
 * look for the object in every backend and, not finding it (a new row
 * almost never exists yet), rescan objects/pack; once per row, that costs
 * more than the row.  A blob that was already on disk is stored again in the
 * next pack, which git allows (and the next fold drops). */
static int blob_write(git_oid *id, struct gitmap *g, const void *p, size_t n)
{
    git_odb_backend *b = g->stage ? g->stage : g->mempack;
    struct errctx e = {0, ""};

    if (gittree_object_id(id->id, "blob", p, n, &e) != SYNC_OK) {
        git_error_set_str(GIT_ERROR_NOMEMORY, e.msg);
        return -1;
    }
    if (!g->keep_blobs)
        return 0;
    if (b == NULL)
        return git_blob_create_from_buffer(id, g->repo, p, n);
    if (b->write(b, id, p, n, GIT_OBJECT_BLOB) != 0)
        return -1;
    stage_note(g, id);
    return 0;
}

/* Runs q, whose rows are: key columns (npk), "row absent" flag, row columns
 * (ncol); turns each into an edit. */
static int collect_edits(struct edit **out, size_t *nout, struct gitmap *g, sqlite3 *db,
                         const struct schema_table *t, const char *q, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    struct edit *ed = NULL;
    size_t n = 0, cap = 0;
    struct buf text = {0}, name = {0};
    struct stmtcache *sc = g->sc != NULL && g->sc->db == db ? g->sc : NULL;
    int rc = SYNC_OK, step;

    if ((sc != NULL ? stmtcache_prepare(sc, q, &st) : sqlite3_prepare_v2(db, q, -1, &st, NULL)) !=
        SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "reading rows of %s: %s", t->name, sqlite3_errmsg(db));
        goto out;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct edit *x;
        if (n == cap) {
            struct edit *grown = reallocarray(ed, cap ? cap * 2 : 64, sizeof(*ed));
            if (grown == NULL) {
                rc = errctx_set(e, SYNC_ENOMEM, "out of memory building the dataset tree");
                goto out;
            }
            ed = grown;
            cap = cap ? cap * 2 : 64;
        }
        x = &ed[n];
        memset(x, 0, sizeof(*x));
        name.len = 0;
        text.len = 0;
        if ((rc = gitmap_row_name(&name, st, 0, t, e)) != SYNC_OK)
            goto out;
        if ((x->name = strdup((const char *)name.data)) == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory building the dataset tree");
            goto out;
        }
        n++;
        shard_of(x->shard, &x->key, g->layout, x->name);
        x->remove = sqlite3_column_int(st, t->npk);
        if (!x->remove) {
            if ((rc = gitmap_row_text(&text, st, t->npk + 1, t, e)) != SYNC_OK)
                goto out;
            if (blob_write(&x->blob, g, text.data, text.len) != 0) {
                rc = git_err(e, "writing a row");
                goto out;
            }
        }
    }
    if (step != SQLITE_DONE)
        rc = errctx_set(e, SYNC_EIO, "reading rows of %s: %s", t->name, sqlite3_errmsg(db));
out:
    if (sc != NULL)
        stmtcache_release(sc, st);
    else
        sqlite3_finalize(st);
    buf_free(&text);
    buf_free(&name);
    if (rc != SYNC_OK) {
        edits_free(ed, n);
        return rc;
    }
    if (n > 1)
        qsort(ed, n, sizeof(*ed), edit_cmp);
    *out = ed;
    *nout = n;
    return SYNC_OK;
}

/* What a tree build shares down the directories. */
struct build {
    struct gitmap *g;
    git_odb *odb; /* g->repo's: old trees are read from it */
    struct errctx *e;
};

/* Reads the old tree id (its body stays in *obj until freed). */
static struct tslot *tcache_slot(struct gitmap *g, const uint8_t id[GITMAP_OID_LEN])
{
    uint32_t h =
        (uint32_t)id[0] | (uint32_t)id[1] << 8 | (uint32_t)id[2] << 16 | (uint32_t)id[3] << 24;
    return &g->tcache[h & (TCACHE_SLOTS - 1)];
}

/* Forgets tree id, replaced in the head by a new one (the cache then holds
 * the head's trees rather than every version's). */
static void tcache_drop(struct gitmap *g, const uint8_t id[GITMAP_OID_LEN])
{
    struct tslot *t;

    if (g->tcache == NULL || (t = tcache_slot(g, id))->body == NULL ||
        memcmp(t->id, id, GITMAP_OID_LEN) != 0)
        return;
    g->tcache_bytes -= t->len;
    free(t->body);
    t->body = NULL;
    t->len = 0;
}

/* Keeps a copy of tree id's body (best effort: out of memory or over the
 * budget, the slot is only emptied). */
static void tcache_put(struct gitmap *g, const uint8_t id[GITMAP_OID_LEN], const void *body,
                       size_t len)
{
    struct tslot *t;

    if (g->tcache == NULL)
        return;
    t = tcache_slot(g, id);
    if (t->body != NULL && memcmp(t->id, id, GITMAP_OID_LEN) == 0)
        return;
    g->tcache_bytes -= t->len;
    free(t->body);
    t->body = NULL;
    t->len = 0;
    if (len == 0 || len > TCACHE_BODY_MAX || g->tcache_bytes + len > TCACHE_BYTES ||
        (t->body = malloc(len)) == NULL)
        return;
    memcpy(t->body, body, len);
    memcpy(t->id, id, GITMAP_OID_LEN);
    t->len = len;
    g->tcache_bytes += len;
}

/* The body of tree id into out (replaced): from the cache, else the odb. */
static int tree_read(struct build *b, const uint8_t id[GITMAP_OID_LEN], struct buf *out)
{
    struct gitmap *g = b->g;
    git_odb_object *obj = NULL;
    git_oid oid;
    int rc;

    out->len = 0;
    if (g->tcache != NULL) {
        const struct tslot *t = tcache_slot(g, id);
        if (t->body != NULL && memcmp(t->id, id, GITMAP_OID_LEN) == 0)
            return buf_put(out, t->body, t->len, b->e);
    }
    memcpy(oid.id, id, GITMAP_OID_LEN);
    if (git_odb_read(&obj, b->odb, &oid) != 0)
        return git_err(b->e, "reading the previous dataset tree");
    if (git_odb_object_type(obj) != GIT_OBJECT_TREE)
        rc = errctx_set(b->e, SYNC_EDATA, "the previous dataset tree names a %s as a directory",
                        git_object_type2string(git_odb_object_type(obj)));
    else if ((rc = buf_put(out, git_odb_object_data(obj), git_odb_object_size(obj), b->e)) ==
             SYNC_OK)
        tcache_put(g, id, git_odb_object_data(obj), git_odb_object_size(obj));
    git_odb_object_free(obj);
    return rc;
}

/* Hashes the new tree body of [dir/]name and, unless it is the old one
 * again, writes it to the stage (or the in-memory store) and notes it. */
static int tree_put(struct build *b, const char *dir, const char *name, const struct buf *body,
                    const uint8_t *old, uint8_t out[GITMAP_OID_LEN])
{
    struct gitmap *g = b->g;
    git_odb_backend *be = g->stage ? g->stage : g->mempack;
    git_oid id;
    int rc;

    if ((rc = gittree_object_id(id.id, "tree", body->data ? (const void *)body->data : "",
                                body->len, b->e)) != SYNC_OK)
        return rc;
    memcpy(out, id.id, GITMAP_OID_LEN);
    if (old != NULL && memcmp(old, id.id, GITMAP_OID_LEN) == 0)
        return SYNC_OK; /* unchanged: on disk (or in the store) already */
    if (be->write(be, &id, body->data ? (const void *)body->data : "", body->len,
                  GIT_OBJECT_TREE) != 0)
        return git_err(b->e, "writing the dataset tree");
    if (old != NULL)
        tcache_drop(g, old);
    tcache_put(g, id.id, body->data, body->len);
    stage_note(g, &id);
    placed_note(g, dir, name, &id);
    return SYNC_OK;
}

/* Rewrites directory [dir/]name, whose tree was old (NULL: a new one), with
 * the sorted edits ed[0..n), which all lie under it, and sets what becomes
 * of it in its parent: ch->id, or ch->remove when it ends up empty.  level
 * counts the shard levels above: at level g->layout the edits are its rows;
 * above, each group of edits with the same shard component is a
 * subdirectory, whose old tree is found in old as the walk goes. */
static int dir_apply(struct build *b, const uint8_t *old, const char *dir, const char *name,
                     struct edit *ed, size_t n, int level, struct gittree_change *ch)
{
    struct gitmap *g = b->g;
    struct buf oldb = {0};
    const void *body = NULL;
    size_t blen = 0, nsub = 0;
    struct gittree_change *sub = NULL;
    struct buf out = {0};
    char *path = NULL;
    int rc = SYNC_OK;

    if (old != NULL) {
        if ((rc = tree_read(b, old, &oldb)) != SYNC_OK)
            goto out;
        body = oldb.data;
        blen = oldb.len;
    }
    if ((sub = calloc(n, sizeof(*sub))) == NULL) {
        rc = errctx_set(b->e, SYNC_ENOMEM, "out of memory building the dataset tree");
        goto out;
    }
    if (level == g->layout) {
        for (size_t i = 0; i < n; i++, nsub++) {
            sub[nsub].name = ed[i].name;
            sub[nsub].len = strlen(ed[i].name);
            sub[nsub].remove = ed[i].remove;
            memcpy(sub[nsub].id, ed[i].blob.id, GITMAP_OID_LEN);
        }
    } else {
        struct gittree_iter it;
        struct gittree_entry cur;
        int have;
        size_t len = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;

        if ((path = malloc(len)) == NULL) {
            rc = errctx_set(b->e, SYNC_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(path, len, "%s%s%s", dir ? dir : "", dir ? "/" : "", name);
        gittree_iter_init(&it, body, blen);
        if ((have = gittree_next(&it, &cur, b->e)) < 0) {
            rc = have;
            goto out;
        }
        for (size_t i = 0; i < n;) {
            const char *part = ed[i].shard + 3 * level; /* "ab" of "ab/cd" */
            char sname[3] = {part[0], part[1], '\0'};
            const uint8_t *oldsub = NULL;
            size_t j = i + 1;

            while (j < n && memcmp(ed[j].shard + 3 * level, sname, 2) == 0)
                j++;
            while (have && gittree_cmp(cur.name, cur.len, cur.dir, sname, 2, 1) < 0)
                if ((have = gittree_next(&it, &cur, b->e)) < 0) {
                    rc = have;
                    goto out;
                }
            if (have && cur.len == 2 && memcmp(cur.name, sname, 2) == 0 && cur.dir)
                oldsub = cur.id;
            sub[nsub].name = part;
            sub[nsub].len = 2;
            sub[nsub].dir = 1;
            if ((rc = dir_apply(b, oldsub, path, sname, ed + i, j - i, level + 1, &sub[nsub])) !=
                SYNC_OK)
                goto out;
            nsub++;
            i = j;
        }
    }
    if ((rc = gittree_merge(&out, body, blen, sub, nsub, b->e)) != SYNC_OK)
        goto out;
    ch->remove = out.len == 0;
    if (ch->remove && old != NULL)
        tcache_drop(g, old);
    if (ch->remove)
        placed_note(g, dir, name, NULL);
    else
        rc = tree_put(b, dir, name, &out, old, ch->id);
out:
    buf_free(&out);
    buf_free(&oldb);
    free(path);
    free(sub);
    return rc;
}

enum rows_from { ROWS_TOUCHED, ROWS_ALL };

static char *rows_query(const struct schema_table *t, const char *prefix, enum rows_from from)
{
    char *q = NULL;
    char *k = schema_sql_cols(t, SCHEMA_COLS_PK, from == ROWS_TOUCHED ? "k" : "t");
    char *match = schema_sql_pk_match(t, "k", "t");

    if (k != NULL && match != NULL) {
        if (from == ROWS_TOUCHED)
            q = sqlite3_mprintf("SELECT %s, t.\"%w\" IS NULL, t.* FROM temp.\"_touched_%w\" k "
                                "LEFT JOIN \"%w%w\" t ON %s",
                                k, t->cols[t->pk[0]].name, t->name, prefix, t->name, match);
        else
            q = sqlite3_mprintf("SELECT %s, 0, t.* FROM \"%w%w\" t", k, prefix, t->name);
    }
    sqlite3_free(k);
    sqlite3_free(match);
    return q;
}

static int change_cmp(const void *a, const void *b)
{
    const struct gittree_change *x = a, *y = b;
    return gittree_cmp(x->name, x->len, x->dir, y->name, y->len, y->dir);
}

/* The old id of table directory name in the root body, or NULL. */
static int root_find(const uint8_t **out, const void *body, size_t len, const char *name,
                     struct errctx *e)
{
    struct gittree_iter it;
    struct gittree_entry cur;
    int have;

    *out = NULL;
    gittree_iter_init(&it, body, len);
    while ((have = gittree_next(&it, &cur, e)) == 1)
        if (cur.dir && cur.len == strlen(name) && memcmp(cur.name, name, cur.len) == 0) {
            *out = cur.id;
            break;
        }
    return have < 0 ? have : SYNC_OK;
}

static int tree_build(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t *base_tree,
                      sqlite3 *db, const struct schema *s, const char *prefix, enum rows_from from,
                      struct errctx *e)
{
    struct build b = {g, NULL, e};
    struct buf root = {0};
    const void *body = NULL;
    size_t blen = 0, nch = 0;
    struct gittree_change *ch = NULL;
    struct buf tree = {0};
    int rc = SYNC_OK;

    placed_clear(g);
    g->placed_all = from == ROWS_ALL;
    if (git_repository_odb(&b.odb, g->repo) != 0)
        return git_err(e, "opening the object store");
    if (base_tree != NULL) {
        if ((rc = tree_read(&b, base_tree, &root)) != SYNC_OK)
            goto out;
        body = root.data;
        blen = root.len;
    }
    if ((ch = calloc((size_t)s->ntable + 1, sizeof(*ch))) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        const uint8_t *old = NULL;
        struct edit *ed = NULL;
        size_t n = 0;
        char *q;

        if (!schema_class_replicated(t->cls))
            continue;
        if ((q = rows_query(t, prefix, from)) == NULL) {
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
            goto out;
        }
        rc = collect_edits(&ed, &n, g, db, t, q, e);
        sqlite3_free(q);
        if (rc == SYNC_OK && n > 0 && (rc = root_find(&old, body, blen, t->name, e)) == SYNC_OK) {
            ch[nch].name = t->name;
            ch[nch].len = strlen(t->name);
            ch[nch].dir = 1;
            rc = dir_apply(&b, old, NULL, t->name, ed, n, 0, &ch[nch]);
            nch++;
        }
        edits_free(ed, n);
        if (rc != SYNC_OK)
            goto out;
    }
    if (nch > 1)
        qsort(ch, nch, sizeof(*ch), change_cmp);
    if ((rc = gittree_merge(&tree, body, blen, ch, nch, e)) == SYNC_OK)
        rc = tree_put(&b, NULL, "", &tree, base_tree, out);
out:
    buf_free(&tree);
    free(ch);
    buf_free(&root);
    git_odb_free(b.odb);
    return rc;
}

int gitmap_tree_update(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t *base_tree,
                       sqlite3 *db, const struct schema *s, const char *prefix, struct errctx *e)
{
    return tree_build(out, g, base_tree, db, s, prefix, ROWS_TOUCHED, e);
}

int gitmap_tree_full(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, sqlite3 *db,
                     const struct schema *s, const char *prefix, struct errctx *e)
{
    int rc = tree_build(out, g, NULL, db, s, prefix, ROWS_ALL, e);
    if (g->mempack != NULL)
        (void)git_mempack_reset(g->mempack); /* the id is all a site keeps */
    return rc;
}

/* ---- commits and the branch ------------------------------------------------ */

int gitmap_commit(uint8_t out[GITMAP_OID_LEN], struct gitmap *g, const uint8_t tree[GITMAP_OID_LEN],
                  const uint8_t *parent, const char *author, int64_t time, const char *msg,
                  struct errctx *e)
{
    git_signature *sig = NULL;
    git_tree *t = NULL;
    git_commit *p = NULL;
    git_oid id;
    char email[SITE_ID_MAX + 32];
    int rc = SYNC_OK;

    snprintf(email, sizeof(email), "%s@sites.empact", author);
    memcpy(id.id, tree, GITMAP_OID_LEN);
    if (git_signature_new(&sig, author, email, (git_time_t)time, 0) != 0 ||
        git_tree_lookup(&t, g->repo, &id) != 0) {
        rc = git_err(e, "preparing a commit");
        goto out;
    }
    if (parent != NULL) {
        memcpy(id.id, parent, GITMAP_OID_LEN);
        if (git_commit_lookup(&p, g->repo, &id) != 0) {
            rc = git_err(e, "reading the parent commit");
            goto out;
        }
    }
    if (git_commit_create(&id, g->repo, NULL, sig, sig, NULL, msg, t, p ? 1 : 0,
                          (const git_commit **)&p) != 0) {
        rc = git_err(e, "writing a commit");
        goto out;
    }
    stage_note(g, &id);
    memcpy(out, id.id, GITMAP_OID_LEN);
out:
    git_commit_free(p);
    git_tree_free(t);
    git_signature_free(sig);
    return rc;
}

static int oid_cmp(const void *a, const void *b)
{
    return git_oid_cmp(a, b);
}

/* A version's pack is built in memory (at most BUF_MAX bytes): past this
 * many bytes its rows are deflated after all, so that a version that fitted
 * when every row was deflated still fits. */
#define PACK_STORED_MAX (64 * 1024 * 1024) /* test builds: $EMPACT_PACK_STORED_MAX */

/* Appends one object to a pack being built: the type-and-size header
 * (3 type bits, then the size 4 bits and 7 bits at a time, low bits first),
 * then the object as a zlib stream of stored blocks.  Deflating rows and
 * trees (mostly 20-byte ids it cannot shrink) was the largest cost of a
 * version: a third of the hub's CPU for 100,000 new rows, most of it
 * setting up zlib once per object.  The next fold (gitpack.c) compresses
 * them with the rest.  Sets o's offset and CRC. */
static int pack_put(struct buf *pk, struct packfile_obj *o, git_object_t type, const void *data,
                    size_t len, struct errctx *e)
{
    uint8_t hdr[PACKFILE_HDR_MAX];
    size_t n = packfile_entry_header(hdr, (int)type, len);
    int rc;

    o->off = pk->len;
    if ((rc = buf_put(pk, hdr, n, e)) != SYNC_OK)
        return rc;
    if (type == GIT_OBJECT_BLOB &&
        pk->len > (size_t)testpoint_limit("EMPACT_PACK_STORED_MAX", PACK_STORED_MAX)) {
        uLongf zlen = compressBound((uLong)len);
        if ((rc = buf_reserve(pk, zlen, e)) != SYNC_OK)
            return rc;
        if (compress2(pk->data + pk->len, &zlen, data, (uLong)len, Z_BEST_SPEED) != Z_OK)
            return errctx_set(e, SYNC_ENOMEM, "cannot deflate a git object");
        pk->len += zlen;
    } else if ((rc = packfile_stored(pk, data, len, e)) != SYNC_OK) {
        return rc;
    }
    o->crc = libdeflate_crc32(0, pk->data + o->off, pk->len - o->off);
    return SYNC_OK;
}

/* Builds, in pk, a pack (version 2, no deltas: a fold makes those later) of
 * the staged objects still in the stage, in id order; *obj receives where
 * each one went and *count how many. */
static int pack_build(struct buf *pk, struct packfile_obj **obj, uint32_t *count, struct gitmap *g,
                      struct errctx *e)
{
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned int shalen = 0;
    int rc;

    *count = 0;
    if (g->nstaged > 1)
        qsort(g->staged, g->nstaged, sizeof(*g->staged), oid_cmp);
    if ((*obj = calloc(g->nstaged ? g->nstaged : 1, sizeof(**obj))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory writing a pack");
    if ((rc = buf_put(pk, "PACK", 4, e)) != SYNC_OK || (rc = buf_put_u32(pk, 2, e)) != SYNC_OK ||
        (rc = buf_put_u32(pk, 0, e)) != SYNC_OK) /* the count, set below */
        return rc;
    for (size_t i = 0; i < g->nstaged; i++) {
        void *data = NULL;
        size_t len = 0;
        git_object_t type;

        if (i > 0 && git_oid_equal(&g->staged[i], &g->staged[i - 1]))
            continue;
        /* not in the stage: it was on disk already when it was written */
        if (g->stage->read(&data, &len, &type, g->stage, &g->staged[i]) != 0)
            continue;
        memcpy((*obj)[*count].id, g->staged[i].id, GITMAP_OID_LEN);
        rc = pack_put(pk, &(*obj)[*count], type, data, len, e);
        git_odb_backend_data_free(g->stage, data);
        if (rc != SYNC_OK)
            return rc;
        (*count)++;
    }
    for (int k = 0; k < 4; k++)
        pk->data[8 + k] = (uint8_t)(*count >> (24 - 8 * k));
    if (EVP_Digest(pk->data, pk->len, sha, &shalen, gittree_sha1(), NULL) != 1 || shalen != 20)
        return errctx_set(e, SYNC_ENOMEM, "cannot checksum a pack");
    return buf_put(pk, sha, 20, e);
}

/* Writes the objects staged since the last flush as one pack in objects/pack,
 * with the index we write ourselves (libgit2's indexer would inflate and
 * hash every object again), then empties the stage.  The .pack goes into
 * place before its .idx, both fsynced, then the directory: a reader never
 * finds an index whose pack is missing, and the pack survives a power cut
 * before the branch moves.  One pack per version, not one file per object,
 * and only the new objects: a version's pack weighs what it changed. */
static int stage_flush(struct gitmap *g, struct errctx *e)
{
    struct buf pk = {0}, idx = {0};
    struct packfile_obj *obj = NULL;
    git_odb *odb = NULL;
    char dir[4096], name[64], hex[41];
    uint32_t count = 0;
    int rc, fd;

    if (g->stage == NULL)
        return SYNC_OK;
    if (g->stage_lost)
        return errctx_set(e, SYNC_ENOMEM, "out of memory: an object of this version was lost");
    if ((rc = pack_build(&pk, &obj, &count, g, e)) != SYNC_OK || count == 0)
        goto out;
    if ((rc = packfile_index(&idx, obj, count, pk.data + pk.len - 20, e)) != SYNC_OK)
        goto out;
    gitmap_oid_hex(hex, pk.data + pk.len - 20);
    snprintf(dir, sizeof(dir), "%sobjects/pack", git_repository_path(g->repo));
    snprintf(name, sizeof(name), "pack-%s.pack", hex);
    if ((rc = packfile_put_durable(dir, name, pk.data, pk.len, e)) != SYNC_OK)
        goto out;
    snprintf(name, sizeof(name), "pack-%s.idx", hex);
    if ((rc = packfile_put_durable(dir, name, idx.data, idx.len, e)) != SYNC_OK)
        goto out;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(fd) != 0)
        rc = errctx_set(e, SYNC_EIO, "cannot fsync %s: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    /* libgit2 finds the new pack now rather than on its first miss */
    if (rc == SYNC_OK && (git_repository_odb(&odb, g->repo) != 0 || git_odb_refresh(odb) != 0))
        rc = git_err(e, "reading the new pack");
out:
    git_odb_free(odb);
    free(obj);
    buf_free(&pk);
    buf_free(&idx);
    if (rc == SYNC_OK) {
        g->nstaged = 0;
        if (git_mempack_reset(g->stage) != 0)
            rc = git_err(e, "emptying the object stage");
    }
    return rc;
}

int gitmap_set_head(struct gitmap *g, const uint8_t commit[GITMAP_OID_LEN], const char *why,
                    struct errctx *e)
{
    git_reference *ref = NULL;
    git_oid id;
    int rc;

    if ((rc = stage_flush(g, e)) != SYNC_OK)
        return rc;
    memcpy(id.id, commit, GITMAP_OID_LEN);
    if (git_reference_create(&ref, g->repo, GITMAP_BRANCH, &id, 1, why) != 0)
        return git_err(e, "moving the history branch");
    git_reference_free(ref);
    return SYNC_OK;
}

int gitmap_discard(struct gitmap *g, struct errctx *e)
{
    /* the discarded trees never reach the disk: the cache forgets them, so a
     * build can only ever find there what the history holds (all of it when
     * an id was not remembered) */
    for (size_t i = 0; g->tcache != NULL && i < (g->stage_lost ? TCACHE_SLOTS : g->nstaged); i++)
        if (g->stage_lost)
            tcache_drop(g, g->tcache[i].id);
        else
            tcache_drop(g, g->staged[i].id);
    g->nstaged = 0;
    g->stage_lost = 0;
    if (g->stage != NULL && git_mempack_reset(g->stage) != 0)
        return git_err(e, "emptying the object stage");
    return SYNC_OK;
}

int gitmap_clear_stale_lock(struct gitmap *g, struct errctx *e)
{
    char path[4096];
    const char *dir = git_repository_path(g->repo);

    if (dir == NULL || g->mempack != NULL)
        return SYNC_OK;
    snprintf(path, sizeof(path), "%s%s.lock", dir, GITMAP_BRANCH);
    if (unlink(path) == 0) {
        fprintf(stderr, "hub: removed a stale %s left by a writer that died\n", path);
        return SYNC_OK;
    }
    if (errno == ENOENT)
        return SYNC_OK;
    return errctx_set(e, SYNC_EIO, "cannot remove the stale lock %s: %s", path, strerror(errno));
}

int gitmap_head(uint8_t out[GITMAP_OID_LEN], int *found, struct gitmap *g, struct errctx *e)
{
    git_oid id;
    int r = git_reference_name_to_id(&id, g->repo, GITMAP_BRANCH);

    *found = 0;
    if (r == GIT_ENOTFOUND)
        return SYNC_OK;
    if (r != 0)
        return git_err(e, "reading the history branch");
    memcpy(out, id.id, GITMAP_OID_LEN);
    *found = 1;
    return SYNC_OK;
}
