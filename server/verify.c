/*
 * verify.c - `empact-hub verify` (contract in verify.h).
 *
 * Each check collects problems as sentences naming the table, row or object;
 * at most VERIFY_SHOWN of them are kept for the report, the rest counted.
 * Objects are read through the object database (loose and packed alike):
 * git_odb_foreach lists every stored object, each is read and hashed again;
 * then the branch is walked, trees recursively, each tree visited once.
 */
#include "verify.h"

#include <git2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "gitmap.h"
#include "hub.h"
#include "rowtext.h"

#define VERIFY_SHOWN 20 /* problems listed per check; the rest are counted */

struct check {
    const char *name;
    char detail[160];
    char *shown[VERIFY_SHOWN];
    int nproblems;
};

/* A set of object ids (open addressing), for visiting each tree once. */
struct oidset {
    git_oid *slot;
    unsigned char *used;
    size_t cap, n;
};

struct vctx {
    const struct schema *s;
    sqlite3 *db;
    git_repository *repo;
    git_oid *chain; /* the branch's commits, oldest first */
    size_t nchain;
    struct oidset seen;
    struct check *cur;
};

static void problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct check *c, const char *fmt, ...)
{
    va_list ap;

    if (c->nproblems < VERIFY_SHOWN) {
        char *s = NULL;
        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
            s = NULL;
        va_end(ap);
        c->shown[c->nproblems] = s;
    }
    c->nproblems++;
}

static const char *git_msg(void)
{
    const git_error *ge = git_error_last();
    return ge && ge->message ? ge->message : "unknown error";
}

static int oidset_add(struct oidset *set, const git_oid *id)
{
    size_t i;

    if ((set->n + 1) * 2 > set->cap) {
        struct oidset bigger = {NULL, NULL, set->cap ? set->cap * 2 : 1024, 0};
        if ((bigger.slot = calloc(bigger.cap, sizeof(*bigger.slot))) == NULL ||
            (bigger.used = calloc(bigger.cap, 1)) == NULL) {
            free(bigger.slot);
            return -1;
        }
        for (i = 0; i < set->cap; i++) {
            if (set->used[i])
                (void)oidset_add(&bigger, &set->slot[i]);
        }
        free(set->slot);
        free(set->used);
        *set = bigger;
    }
    /* ids are SHA-1 output: their first bytes are already well spread */
    i = ((size_t)id->id[0] << 24 | (size_t)id->id[1] << 16 | (size_t)id->id[2] << 8 | id->id[3]) %
        set->cap;
    for (; set->used[i]; i = (i + 1) % set->cap) {
        if (git_oid_equal(&set->slot[i], id))
            return 0;
    }
    set->used[i] = 1;
    git_oid_cpy(&set->slot[i], id);
    set->n++;
    return 1;
}

/* ---- hub.db ------------------------------------------------------------------ */

static void check_db(struct vctx *v, struct check *c)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(v->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
        problem(c, "integrity_check cannot run: %s", sqlite3_errmsg(v->db));
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        if (r == NULL || strcmp(r, "ok") != 0)
            problem(c, "integrity_check: %s", r ? r : "(null)");
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(v->db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK) {
        problem(c, "foreign_key_check cannot run: %s", sqlite3_errmsg(v->db));
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        problem(c, "foreign key: table %s row %lld refers to a missing row of %s",
                (const char *)sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1),
                (const char *)sqlite3_column_text(st, 2));
    }
    sqlite3_finalize(st);
    snprintf(c->detail, sizeof(c->detail), "integrity_check and foreign_key_check");
}

/* ---- git ---------------------------------------------------------------------- */

struct oidlist {
    git_oid *ids;
    size_t n, cap;
};

static int collect_oid(const git_oid *id, void *arg)
{
    struct oidlist *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        git_oid *grown = reallocarray(l->ids, cap, sizeof(*grown));
        if (grown == NULL)
            return -1;
        l->ids = grown;
        l->cap = cap;
    }
    git_oid_cpy(&l->ids[l->n++], id);
    return 0;
}

/* Every stored object reads back and hashes to its id. */
static size_t check_stored(struct vctx *v, struct check *c)
{
    struct oidlist l = {NULL, 0, 0};
    git_odb *odb = NULL;
    char hex[GIT_OID_HEXSZ + 1];

    if (git_repository_odb(&odb, v->repo) != 0) {
        problem(c, "cannot open the object database: %s", git_msg());
        return 0;
    }
    if (git_odb_foreach(odb, collect_oid, &l) != 0)
        problem(c, "cannot list the objects: %s", git_msg());
    for (size_t i = 0; i < l.n; i++) {
        git_odb_object *o = NULL;
        git_oid h;
        git_oid_tostr(hex, sizeof(hex), &l.ids[i]);
        if (git_odb_read(&o, odb, &l.ids[i]) != 0) {
            problem(c, "object %s cannot be read: %s", hex, git_msg());
            continue;
        }
        if (git_odb_hash(&h, git_odb_object_data(o), git_odb_object_size(o),
                         git_odb_object_type(o)) != 0 ||
            !git_oid_equal(&h, &l.ids[i]))
            problem(c, "object %s does not hash to its id (damaged)", hex);
        git_odb_object_free(o);
    }
    free(l.ids);
    git_odb_free(odb);
    return l.n;
}

/* Visits tree id (at path) and everything under it, once per tree. */
static void walk_tree(struct vctx *v, struct check *c, const git_oid *id, const char *path,
                      const char *commit_hex)
{
    git_tree *t = NULL;
    char hex[GIT_OID_HEXSZ + 1];
    git_odb *odb = NULL;

    if (oidset_add(&v->seen, id) == 0)
        return;
    git_oid_tostr(hex, sizeof(hex), id);
    if (git_tree_lookup(&t, v->repo, id) != 0) {
        problem(c, "tree %s (%s) of commit %.12s is missing or unreadable: %s", hex,
                path[0] ? path : "root", commit_hex, git_msg());
        return;
    }
    if (git_repository_odb(&odb, v->repo) != 0) {
        git_tree_free(t);
        problem(c, "cannot open the object database: %s", git_msg());
        return;
    }
    for (size_t i = 0; i < git_tree_entrycount(t); i++) {
        const git_tree_entry *te = git_tree_entry_byindex(t, i);
        char sub[1024];
        snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "/" : "", git_tree_entry_name(te));
        if (git_tree_entry_type(te) == GIT_OBJECT_TREE) {
            walk_tree(v, c, git_tree_entry_id(te), sub, commit_hex);
        } else if (!git_odb_exists(odb, git_tree_entry_id(te))) {
            git_oid_tostr(hex, sizeof(hex), git_tree_entry_id(te));
            problem(c, "blob %s (%s) of commit %.12s is missing", hex, sub, commit_hex);
        }
    }
    git_odb_free(odb);
    git_tree_free(t);
}

/* Walks the branch back to its root: one parent each, all present.  Fills
 * v->chain oldest first. */
static void check_chain(struct vctx *v, struct check *c)
{
    git_oid id;
    char hex[GIT_OID_HEXSZ + 1];
    int r = git_reference_name_to_id(&id, v->repo, GITMAP_BRANCH);

    if (r != 0) {
        problem(c, "the branch %s cannot be read: %s", GITMAP_BRANCH, git_msg());
        return;
    }
    for (;;) {
        git_commit *cm = NULL;
        git_oid *grown = reallocarray(v->chain, v->nchain + 1, sizeof(*grown));

        if (grown == NULL) {
            problem(c, "out of memory walking the history");
            return;
        }
        v->chain = grown;
        git_oid_tostr(hex, sizeof(hex), &id);
        if (git_commit_lookup(&cm, v->repo, &id) != 0) {
            problem(c, "commit %s is missing or unreadable (the history has a gap): %s", hex,
                    git_msg());
            return;
        }
        git_oid_cpy(&v->chain[v->nchain++], &id);
        walk_tree(v, c, git_commit_tree_id(cm), "", hex);
        if (git_commit_parentcount(cm) > 1)
            problem(c, "commit %s is a merge; the history must be one chain", hex);
        if (git_commit_parentcount(cm) == 0) {
            git_commit_free(cm);
            break;
        }
        git_oid_cpy(&id, git_commit_parent_id(cm, 0));
        git_commit_free(cm);
    }
    for (size_t i = 0; i < v->nchain / 2; i++) { /* oldest first */
        git_oid tmp = v->chain[i];
        v->chain[i] = v->chain[v->nchain - 1 - i];
        v->chain[v->nchain - 1 - i] = tmp;
    }
}

static void check_git(struct vctx *v, struct check *c)
{
    size_t nobj = check_stored(v, c);
    check_chain(v, c);
    snprintf(c->detail, sizeof(c->detail), "%zu objects stored, %zu commits, %zu trees reachable",
             nobj, v->nchain, v->seen.n);
}

/* ---- the version log ------------------------------------------------------------ */

/* The newest version row's commit and tree; *found = 0 if the log is empty. */
static int newest_version(struct vctx *v, git_oid *commit, git_oid *tree, long long *seq)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (sqlite3_prepare_v2(v->db,
                           "SELECT seq, commit_id, tree_id FROM _empact_version "
                           "ORDER BY seq DESC LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *ch = (const char *)sqlite3_column_text(st, 1);
        const char *th = (const char *)sqlite3_column_text(st, 2);
        *seq = sqlite3_column_int64(st, 0);
        found = ch && th && git_oid_fromstr(commit, ch) == 0 && git_oid_fromstr(tree, th) == 0;
    }
    sqlite3_finalize(st);
    return found;
}

/* The hub moves the branch just before COMMIT: a commit whose version row is
 * not in our snapshot may be a push being written.  It is if, in a fresh
 * snapshot a moment later, the log has caught up with the branch. */
static int branch_in_flight(struct vctx *v, long long last)
{
    sqlite3_stmt *st = NULL;
    long long now = last;

    if ((size_t)last + 1 != v->nchain)
        return 0;
    (void)sqlite3_exec(v->db, "COMMIT", NULL, NULL, NULL);
    sleep(1);
    if (sqlite3_prepare_v2(v->db, "SELECT coalesce(max(seq), 0) FROM _empact_version", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        now = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return now > last;
}

static void check_versions(struct vctx *v, struct check *c)
{
    sqlite3_stmt *st = NULL;
    long long expect = 1, last = 0;
    char hex[GIT_OID_HEXSZ + 1], ahead[96] = "";

    if (sqlite3_prepare_v2(v->db,
                           "SELECT seq, commit_id, tree_id FROM _empact_version ORDER BY seq", -1,
                           &st, NULL) != SQLITE_OK) {
        problem(c, "the version log cannot be read: %s", sqlite3_errmsg(v->db));
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        long long seq = sqlite3_column_int64(st, 0);
        const char *ch = (const char *)sqlite3_column_text(st, 1);
        const char *th = (const char *)sqlite3_column_text(st, 2);
        git_oid cid, tid;
        git_commit *cm = NULL;

        for (; expect < seq; expect++)
            problem(c, "version %lld is missing from _empact_version", expect);
        expect = seq + 1;
        last = seq;
        if (ch == NULL || th == NULL || git_oid_fromstr(&cid, ch) != 0 ||
            git_oid_fromstr(&tid, th) != 0) {
            problem(c, "version %lld: commit_id or tree_id is not an object id", seq);
            continue;
        }
        if (git_commit_lookup(&cm, v->repo, &cid) != 0) {
            problem(c, "version %lld: commit %s is not in history.git", seq, ch);
            continue;
        }
        if (!git_oid_equal(git_commit_tree_id(cm), &tid))
            problem(c, "version %lld: commit %.12s has tree %.12s, the log says %.12s", seq, ch,
                    git_oid_tostr(hex, sizeof(hex), git_commit_tree_id(cm)), th);
        if (seq < 1 || (size_t)seq > v->nchain || !git_oid_equal(&v->chain[seq - 1], &cid))
            problem(c, "version %lld: commit %.12s is not commit %lld of the branch", seq, ch, seq);
        git_commit_free(cm);
    }
    sqlite3_finalize(st);
    if (v->nchain > 0 && (size_t)last < v->nchain && !branch_in_flight(v, last)) {
        problem(c,
                "the branch has %zu commits but the version log ends at %lld (the hub moves "
                "the branch back at its next start or write)",
                v->nchain, last);
    } else if ((size_t)last < v->nchain) {
        snprintf(ahead, sizeof(ahead), "; a push was being written");
    } else if ((size_t)last > v->nchain) {
        problem(c, "the version log reaches %lld but the branch has %zu commits", last, v->nchain);
    }
    snprintf(c->detail, sizeof(c->detail), "%lld versions, one commit each%s", last, ahead);
}

/* ---- tables against the tree ----------------------------------------------------- */

/* Names the rows of table t that differ from the tree `root`. */
/* The blobs below tree t, levels shard levels down. */
static size_t count_blobs(git_repository *repo, const git_tree *t, int levels)
{
    size_t n = 0;

    if (levels == 0)
        return git_tree_entrycount(t);
    for (size_t i = 0; i < git_tree_entrycount(t); i++) {
        git_tree *sub = NULL;
        if (git_tree_lookup(&sub, repo, git_tree_entry_id(git_tree_entry_byindex(t, i))) == 0)
            n += count_blobs(repo, sub, levels - 1);
        git_tree_free(sub);
    }
    return n;
}

static void diff_table(struct vctx *v, struct check *c, const struct schema_table *t,
                       git_tree *root, int layout)
{
    sqlite3_stmt *st = NULL;
    struct buf name = {0}, text = {0};
    struct errctx e = {0, ""};
    char *q = sqlite3_mprintf("SELECT * FROM \"%w\"", t->name);
    size_t nrows = 0, nblobs = 0;
    git_tree_entry *te = NULL;
    git_tree *tt = NULL;

    if (q == NULL || sqlite3_prepare_v2(v->db, q, -1, &st, NULL) != SQLITE_OK) {
        problem(c, "table %s cannot be read: %s", t->name, sqlite3_errmsg(v->db));
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        char shard[GITMAP_SHARD_MAX], path[1024];
        git_blob *b = NULL;

        nrows++;
        name.len = text.len = 0;
        if (gitmap_row_name(&name, st, 0, t, &e) != SYNC_OK ||
            gitmap_row_text(&text, st, 0, t, &e) != SYNC_OK) {
            problem(c, "table %s: a row cannot be encoded: %s", t->name, e.msg);
            continue;
        }
        gitmap_row_shard(shard, layout, (const char *)name.data);
        snprintf(path, sizeof(path), "%s/%s/%s", t->name, shard, (const char *)name.data);
        if (git_tree_entry_bypath(&te, root, path) != 0) {
            problem(c, "table %s row %s: in hub.db, not in git", t->name, name.data);
            continue;
        }
        if (git_blob_lookup(&b, v->repo, git_tree_entry_id(te)) != 0)
            problem(c, "table %s row %s: its blob cannot be read", t->name, name.data);
        else if ((size_t)git_blob_rawsize(b) != text.len ||
                 memcmp(git_blob_rawcontent(b), text.data, text.len) != 0)
            problem(c, "table %s row %s: hub.db and git hold different values", t->name, name.data);
        git_blob_free(b);
        git_tree_entry_free(te);
        te = NULL;
    }
    /* rows git has that hub.db lacks: count the blobs */
    if (git_tree_entry_bypath(&te, root, t->name) == 0 &&
        git_tree_lookup(&tt, v->repo, git_tree_entry_id(te)) == 0)
        nblobs = count_blobs(v->repo, tt, layout);
    if (nblobs > nrows)
        problem(c, "table %s: git has %zu rows that hub.db lacks (%zu in git, %zu in hub.db)",
                t->name, nblobs - nrows, nblobs, nrows);
out:
    git_tree_free(tt);
    git_tree_entry_free(te);
    sqlite3_finalize(st);
    sqlite3_free(q);
    buf_free(&name);
    buf_free(&text);
}

static void check_tables(struct vctx *v, struct check *c)
{
    struct gitmap *mem = NULL;
    struct errctx e = {0, ""};
    uint8_t ours[GITMAP_OID_LEN];
    git_oid commit, tree, mine;
    git_commit *cm = NULL;
    git_tree *root = NULL;
    long long seq = 0;
    char hex[GIT_OID_HEXSZ + 1], theirs[GIT_OID_HEXSZ + 1];
    int layout;

    if (!newest_version(v, &commit, &tree, &seq)) {
        problem(c, "the version log has no usable newest row to compare with");
        return;
    }
    if (git_commit_lookup(&cm, v->repo, &commit) != 0 || git_commit_tree(&root, cm) != 0) {
        problem(c, "the newest version's commit cannot be read: %s", git_msg());
        goto out;
    }
    /* hash in the layout of the newest version (a hub not yet moved to
     * layout 2 keeps layout 1 until its next write) */
    layout = gitmap_layout_of(v->repo, root);
    if (gitmap_new_memory(&mem, &e) == SYNC_OK)
        gitmap_set_layout(mem, layout);
    if (mem == NULL || gitmap_tree_full(ours, mem, v->db, v->s, "", &e) != SYNC_OK) {
        problem(c, "the tables cannot be hashed: %s", e.msg);
        goto out;
    }
    memcpy(mine.id, ours, GITMAP_OID_LEN);
    git_oid_tostr(hex, sizeof(hex), &mine);
    snprintf(c->detail, sizeof(c->detail), "tree %.12s = version %lld", hex, seq);
    if (git_oid_equal(&mine, git_commit_tree_id(cm)))
        goto out;
    problem(c, "the tables hash to tree %.12s but version %lld's commit has tree %.12s", hex, seq,
            git_oid_tostr(theirs, sizeof(theirs), git_commit_tree_id(cm)));
    for (int i = 0; i < v->s->ntable; i++) {
        if (schema_class_replicated(v->s->tables[i].cls))
            diff_table(v, c, &v->s->tables[i], root, layout);
    }
out:
    gitmap_free(mem);
    git_tree_free(root);
    git_commit_free(cm);
}

/* ---- report -------------------------------------------------------------------- */

static void print_text(FILE *out, const struct check *c)
{
    if (c->nproblems == 0) {
        fprintf(out, "%s: ok (%s)\n", c->name, c->detail);
        return;
    }
    fprintf(out, "%s: FAILED, %d problem%s: %s\n", c->name, c->nproblems,
            c->nproblems == 1 ? "" : "s", c->shown[0] ? c->shown[0] : "(out of memory)");
    for (int i = 1; i < c->nproblems && i < VERIFY_SHOWN; i++)
        fprintf(out, "  %s: %s\n", c->name, c->shown[i] ? c->shown[i] : "(out of memory)");
    if (c->nproblems > VERIFY_SHOWN)
        fprintf(out, "  %s: and %d more\n", c->name, c->nproblems - VERIFY_SHOWN);
}

static void print_json(FILE *out, const struct check *checks, int n, int failed)
{
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "checks");
    char *s;

    cJSON_AddBoolToObject(root, "ok", failed == 0);
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject(), *p;
        cJSON_AddStringToObject(o, "check", checks[i].name);
        cJSON_AddBoolToObject(o, "ok", checks[i].nproblems == 0);
        cJSON_AddStringToObject(o, "detail", checks[i].detail);
        cJSON_AddNumberToObject(o, "problems", checks[i].nproblems);
        p = cJSON_AddArrayToObject(o, "shown");
        for (int j = 0; j < checks[i].nproblems && j < VERIFY_SHOWN; j++)
            cJSON_AddItemToArray(
                p, cJSON_CreateString(checks[i].shown[j] ? checks[i].shown[j] : "(out of memory)"));
        cJSON_AddItemToArray(arr, o);
    }
    if ((s = cJSON_Print(root)) != NULL)
        fprintf(out, "%s\n", s);
    free(s);
    cJSON_Delete(root);
}

static int open_ro(struct vctx *v, const char *dir, struct errctx *e)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, HUB_DB);
    if (sqlite3_open_v2(path, &v->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_exec(v->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "cannot read %s: %s", path,
                          v->db ? sqlite3_errmsg(v->db) : "out of memory");
    sqlite3_busy_timeout(v->db, 10000);
    snprintf(path, sizeof(path), "%s/%s", dir, HUB_GIT);
    if (git_repository_open_ext(&v->repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) != 0 ||
        !git_repository_is_bare(v->repo))
        return errctx_set(e, SYNC_EIO, "cannot open the bare repository %s: %s", path, git_msg());
    /* one snapshot of hub.db for every check */
    if (sqlite3_exec(v->db, "BEGIN; SELECT count(*) FROM _empact_version", NULL, NULL, NULL) !=
        SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "%s/%s is not a hub database: %s", dir, HUB_DB,
                          sqlite3_errmsg(v->db));
    return SYNC_OK;
}

int hub_verify(const char *dir, const struct schema *s, int json, FILE *out, int *failed,
               struct errctx *e)
{
    struct vctx v = {s, NULL, NULL, NULL, 0, {NULL, NULL, 0, 0}, NULL};
    struct check checks[4] = {
        {"hub.db", "", {NULL}, 0},
        {"git", "", {NULL}, 0},
        {"tables", "", {NULL}, 0},
        {"version log", "", {NULL}, 0},
    };
    int rc;

    *failed = 0;
    git_libgit2_init();
    if ((rc = open_ro(&v, dir, e)) == SYNC_OK) {
        check_db(&v, &checks[0]);
        check_git(&v, &checks[1]);
        check_tables(&v, &checks[2]);
        check_versions(&v, &checks[3]);
        for (int i = 0; i < 4; i++) {
            *failed += checks[i].nproblems > 0;
            if (!json)
                print_text(out, &checks[i]);
        }
        if (json)
            print_json(out, checks, 4, *failed);
        (void)sqlite3_exec(v.db, "COMMIT", NULL, NULL, NULL);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < checks[i].nproblems && j < VERIFY_SHOWN; j++)
            free(checks[i].shown[j]);
    }
    free(v.seen.slot);
    free(v.seen.used);
    free(v.chain);
    git_repository_free(v.repo);
    git_libgit2_shutdown();
    sqlite3_close(v.db);
    return rc;
}
