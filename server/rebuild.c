/*
 * rebuild.c - `empact-hub rebuild` (what it restores, and how, in rebuild.h).
 *
 * Per commit: git_diff_tree_to_tree gives the row blobs that changed; they
 * are applied deletes first, then updates, then inserts (so a key or unique
 * value freed by a delete is free for an insert), each under the session
 * that records the version's changeset.  The touched keys then update the
 * previous tree with gitmap_tree_update(), exactly as the hub does for a
 * push, and the result must be the commit's tree: a rebuilt hub.db is proven
 * to hold, version by version, what git holds.
 */
#include "rebuild.h"

#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bundle.h"
#include "changeset.h"
#include "db.h"
#include "gitmap.h"
#include "hub.h"
#include "merge.h"
#include "pki.h"
#include "rowtext.h"
#include "tls.h"

struct rb {
    const struct schema *s;
    sqlite3 *db;
    git_repository *repo;
    struct gitmap *gm;
    int64_t at_ms; /* the commit's time, for merge stamps */
    const char *author;
    uint64_t pushes;
};

static int git_fail(struct errctx *e, const char *what)
{
    const git_error *ge = git_error_last();
    return errctx_set(e, SYNC_EIO, "git: %s: %s", what, ge && ge->message ? ge->message : "failed");
}

static int sql_fail(struct errctx *e, sqlite3 *db, const char *what)
{
    return errctx_set(e, SYNC_EIO, "rebuilding hub.db: %s: %s", what, sqlite3_errmsg(db));
}

/* ---- one row ------------------------------------------------------------------ */

/* Binds the key of r from parameter first on. */
static void bind_key(sqlite3_stmt *st, const struct schema_table *t, const struct rowtext *r,
                     int first)
{
    for (int k = 0; k < t->npk; k++)
        (void)rowtext_bind(st, first + k, &r->v[t->pk[k]]);
}

/* Runs sql, with the key of r bound from parameter first and, before it,
 * each column i with cols[i] set (in order) from 1; then extra binds. */
static int run_row(struct rb *b, const struct schema_table *t, const char *sql,
                   const struct rowtext *r, const int *cols, int nfirst, int64_t at,
                   const char *site, int col, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int p = 1, rc = SYNC_OK;

    if (sql == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (sqlite3_prepare_v2(b->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(e, b->db, t->name);
    for (int i = 0; cols != NULL && i < t->ncol; i++) {
        if (cols[i])
            (void)rowtext_bind(st, p++, &r->v[i]);
    }
    if (nfirst) {
        bind_key(st, t, r, p);
        p += t->npk;
    }
    if (col >= 0)
        sqlite3_bind_int(st, p++, col);
    if (site != NULL) {
        sqlite3_bind_int64(st, p++, at);
        sqlite3_bind_text(st, p++, site, -1, SQLITE_STATIC);
    }
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sql_fail(e, b->db, t->name);
    sqlite3_finalize(st);
    return rc;
}

static int has_meta(const struct schema_table *t)
{
    return t->cls == CLASS_SHARED || t->cls == CLASS_OWNED;
}

/* The row's insert or delete: a row stamp, no column stamps. */
static int stamp_row(struct rb *b, const struct schema_table *t, const struct rowtext *r,
                     struct errctx *e)
{
    char *where, *ph = NULL, *sql;
    int rc;

    if (!has_meta(t))
        return SYNC_OK;
    if ((where = schema_sql_pk_where(t)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    ph = sqlite3_mprintf("%.*c", 2 * t->npk, '?');
    for (int i = 1; ph != NULL && i < 2 * t->npk; i += 2)
        ph[i] = ',';
    sql = ph ? sqlite3_mprintf("INSERT OR REPLACE INTO \"" ROWMETA_PREFIX "%w\" VALUES (%s ?, ?)",
                               t->name, ph)
             : NULL;
    rc = run_row(b, t, sql, r, NULL, 1, b->at_ms, b->author, -1, e);
    sqlite3_free(sql);
    if (rc == SYNC_OK) {
        sql = sqlite3_mprintf("DELETE FROM \"" COLMETA_PREFIX "%w\" WHERE %s", t->name, where);
        rc = run_row(b, t, sql, r, NULL, 1, 0, NULL, -1, e);
        sqlite3_free(sql);
    }
    sqlite3_free(ph);
    sqlite3_free(where);
    return rc;
}

static int stamp_col(struct rb *b, const struct schema_table *t, const struct rowtext *r, int col,
                     struct errctx *e)
{
    char *ph = sqlite3_mprintf("%.*c", 2 * t->npk, '?'), *sql;
    int rc;

    for (int i = 1; ph != NULL && i < 2 * t->npk; i += 2)
        ph[i] = ',';
    sql =
        ph ? sqlite3_mprintf("INSERT OR REPLACE INTO \"" COLMETA_PREFIX "%w\" VALUES (%s ?, ?, ?)",
                             t->name, ph)
           : NULL;
    rc = run_row(b, t, sql, r, NULL, 1, b->at_ms, b->author, col, e);
    sqlite3_free(sql);
    sqlite3_free(ph);
    return rc;
}

static int row_delete(struct rb *b, const struct schema_table *t, const struct rowtext *old,
                      struct errctx *e)
{
    char *where = schema_sql_pk_where(t);
    char *sql = where ? sqlite3_mprintf("DELETE FROM \"%w\" WHERE %s", t->name, where) : NULL;
    int rc = run_row(b, t, sql, old, NULL, 1, 0, NULL, -1, e);

    sqlite3_free(sql);
    sqlite3_free(where);
    return rc == SYNC_OK ? stamp_row(b, t, old, e) : rc;
}

static int row_insert(struct rb *b, const struct schema_table *t, const struct rowtext *r,
                      struct errctx *e)
{
    char *ph = sqlite3_mprintf("%.*c", 2 * t->ncol - 1, '?'), *sql;
    int *all = calloc((size_t)t->ncol, sizeof(*all)), rc;

    for (int i = 1; ph != NULL && i < 2 * t->ncol - 1; i += 2)
        ph[i] = ',';
    for (int i = 0; all != NULL && i < t->ncol; i++)
        all[i] = 1;
    sql = ph && all ? sqlite3_mprintf("INSERT INTO \"%w\" VALUES (%s)", t->name, ph) : NULL;
    rc = run_row(b, t, sql, r, all, 0, 0, NULL, -1, e);
    sqlite3_free(sql);
    sqlite3_free(ph);
    free(all);
    return rc == SYNC_OK ? stamp_row(b, t, r, e) : rc;
}

/* Sets the columns that differ between old and r; stamps each of them. */
static int row_update(struct rb *b, const struct schema_table *t, const struct rowtext *old,
                      const struct rowtext *r, struct errctx *e)
{
    int *changed = calloc((size_t)t->ncol, sizeof(*changed)), n = 0, rc = SYNC_OK;
    char *set = sqlite3_mprintf("%s", ""), *where = schema_sql_pk_where(t), *sql = NULL;

    for (int i = 0; changed != NULL && set != NULL && i < t->ncol; i++) {
        char *next;
        if (rowtext_val_eq(&old->v[i], &r->v[i]))
            continue;
        changed[i] = 1;
        next = sqlite3_mprintf("%s%s\"%w\" = ?", set, n++ ? ", " : "", t->cols[i].name);
        sqlite3_free(set);
        set = next;
    }
    if (changed == NULL || set == NULL || where == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (n > 0) {
        sql = sqlite3_mprintf("UPDATE \"%w\" SET %s WHERE %s", t->name, set, where);
        rc = run_row(b, t, sql, r, changed, 1, 0, NULL, -1, e);
    }
    for (int i = 0; rc == SYNC_OK && has_meta(t) && i < t->ncol; i++) {
        if (changed[i])
            rc = stamp_col(b, t, r, i, e);
    }
out:
    sqlite3_free(sql);
    sqlite3_free(set);
    sqlite3_free(where);
    free(changed);
    return rc;
}

/* ---- one commit ------------------------------------------------------------------- */

static int blob_row(struct rowtext **out, struct rb *b, const git_diff_file *f,
                    const struct schema_table *t, struct errctx *e)
{
    git_blob *blob = NULL;
    int rc;

    if (git_blob_lookup(&blob, b->repo, &f->id) != 0)
        return git_fail(e, "reading a row");
    rc = rowtext_parse(out, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), t, e);
    if (rc != SYNC_OK)
        errctx_wrap(e, "%s", f->path);
    git_blob_free(blob);
    return rc;
}

static int apply_delta(struct rb *b, const git_diff_delta *d, struct errctx *e)
{
    const char *path = d->status == GIT_DELTA_DELETED ? d->old_file.path : d->new_file.path;
    const char *slash = strchr(path, '/');
    char table[128];
    const struct schema_table *t;
    struct rowtext *old = NULL, *r = NULL;
    int rc;

    if (slash == NULL || (size_t)(slash - path) >= sizeof(table))
        return errctx_set(e, SYNC_EDATA, "history.git holds %s, which is not a row", path);
    snprintf(table, sizeof(table), "%.*s", (int)(slash - path), path);
    if ((t = schema_find(b->s, table)) == NULL || !schema_class_replicated(t->cls))
        return errctx_set(e, SYNC_EDATA, "history.git holds %s, not a replicated table", path);
    if (d->status != GIT_DELTA_ADDED && (rc = blob_row(&old, b, &d->old_file, t, e)) != SYNC_OK)
        return rc;
    if (d->status != GIT_DELTA_DELETED && (rc = blob_row(&r, b, &d->new_file, t, e)) != SYNC_OK)
        goto out;
    if (d->status == GIT_DELTA_DELETED)
        rc = row_delete(b, t, old, e);
    else if (d->status == GIT_DELTA_ADDED)
        rc = row_insert(b, t, r, e);
    else if (d->status == GIT_DELTA_MODIFIED)
        rc = row_update(b, t, old, r, e);
    else
        rc = errctx_set(e, SYNC_EDATA, "%s: an unexpected kind of change in git", path);
out:
    rowtext_free(old);
    rowtext_free(r);
    return rc;
}

static int apply_diff(struct rb *b, git_tree *old, git_tree *tree, struct errctx *e)
{
    static const git_delta_t order[] = {GIT_DELTA_DELETED, GIT_DELTA_MODIFIED, GIT_DELTA_ADDED};
    git_diff *diff = NULL;
    int rc = SYNC_OK;

    if (git_diff_tree_to_tree(&diff, b->repo, old, tree, NULL) != 0)
        return git_fail(e, "comparing two versions");
    for (size_t k = 0; rc == SYNC_OK && k < 3; k++) {
        for (size_t i = 0; rc == SYNC_OK && i < git_diff_num_deltas(diff); i++) {
            const git_diff_delta *d = git_diff_get_delta(diff, i);
            if (d->status == order[k])
                rc = apply_delta(b, d, e);
            else if (k == 0 && d->status != GIT_DELTA_MODIFIED && d->status != GIT_DELTA_ADDED &&
                     d->status != GIT_DELTA_DELETED)
                rc = errctx_set(e, SYNC_EDATA, "%s: an unexpected kind of change in git",
                                d->new_file.path);
        }
    }
    git_diff_free(diff);
    return rc;
}

/* "push from SITE: N applied, M lost..." and "push-id: HEX" of a message. */
static int push_restore(struct rb *b, const char *msg, uint64_t seq, int64_t when,
                        char push_hex[PUSH_ID_LEN * 2 + 1], struct errctx *e)
{
    const char *p = strstr(msg, "\npush-id: ");
    unsigned applied = 0, lost = 0;
    sqlite3_stmt *st = NULL;
    int rc;

    push_hex[0] = '\0';
    if (p == NULL)
        return SYNC_OK;
    p += strlen("\npush-id: ");
    if (strspn(p, "0123456789abcdef") != PUSH_ID_LEN * 2)
        return errctx_set(e, SYNC_EDATA, "version %llu: a malformed push-id line",
                          (unsigned long long)seq);
    memcpy(push_hex, p, PUSH_ID_LEN * 2);
    push_hex[PUSH_ID_LEN * 2] = '\0';
    if ((p = strstr(msg, ": ")) != NULL)
        (void)sscanf(p, ": %u applied, %u", &applied, &lost);
    if (sqlite3_prepare_v2(b->db,
                           "INSERT OR REPLACE INTO _empact_push (push_id, site_id, version, "
                           "applied, overridden, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(e, b->db, "restoring a push id");
    sqlite3_bind_text(st, 1, push_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b->author, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
    sqlite3_bind_int64(st, 4, applied);
    sqlite3_bind_int64(st, 5, lost);
    sqlite3_bind_int64(st, 6, when);
    rc = sqlite3_step(st) == SQLITE_DONE ? SYNC_OK : sql_fail(e, b->db, "restoring a push id");
    sqlite3_finalize(st);
    b->pushes += rc == SYNC_OK;
    return rc;
}

static int version_row(struct rb *b, uint64_t seq, const git_oid *commit, const git_oid *tree,
                       const char *push_hex, const void *cs, int ncs, int64_t when,
                       struct errctx *e)
{
    char ch[GIT_OID_HEXSZ + 1], th[GIT_OID_HEXSZ + 1];
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(b->db,
                           "INSERT INTO _empact_version (seq, commit_id, tree_id, site_id, "
                           "push_id, changeset, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_fail(e, b->db, "writing a version");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 2, git_oid_tostr(ch, sizeof(ch), commit), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, git_oid_tostr(th, sizeof(th), tree), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, b->author, -1, SQLITE_STATIC);
    if (push_hex[0])
        sqlite3_bind_text(st, 5, push_hex, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, ncs > 0 ? cs : "", ncs, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, when);
    rc = sqlite3_step(st) == SQLITE_DONE ? SYNC_OK : sql_fail(e, b->db, "writing a version");
    sqlite3_finalize(st);
    return rc;
}

static int session_new(sqlite3_session **out, struct rb *b, struct errctx *e)
{
    if (sqlite3session_create(b->db, "main", out) != SQLITE_OK)
        return sql_fail(e, b->db, "starting a session");
    for (int i = 0; i < b->s->ntable; i++) {
        const struct schema_table *t = &b->s->tables[i];
        if (schema_class_replicated(t->cls) && sqlite3session_attach(*out, t->name) != SQLITE_OK)
            return sql_fail(e, b->db, "starting a session");
    }
    return SYNC_OK;
}

/* Replays commit number seq (parent: prev, NULL for the first). */
static int replay(struct rb *b, uint64_t seq, git_commit *c, git_commit *prev, struct errctx *e)
{
    git_tree *tree = NULL, *old = NULL;
    sqlite3_session *sess = NULL;
    void *cs = NULL;
    int ncs = 0, rc;
    uint8_t got[GITMAP_OID_LEN];
    char push_hex[PUSH_ID_LEN * 2 + 1] = "", hex[GIT_OID_HEXSZ + 1];
    int64_t when = (int64_t)git_commit_time(c);
    int lnew, lold, moved;

    b->author = git_commit_author(c)->name;
    b->at_ms = when * 1000;
    if (git_commit_tree(&tree, c) != 0 || (prev != NULL && git_commit_tree(&old, prev) != 0)) {
        rc = git_fail(e, "reading a version's tree");
        goto out;
    }
    /* a version that moved the rows to another layout changes no row: its
     * rows must give its tree in its own layout */
    lnew = gitmap_layout_of(b->repo, tree);
    lold = old != NULL ? gitmap_layout_of(b->repo, old) : 0;
    if (lnew < 0 || lold < 0) {
        rc = errctx_set(e, SYNC_EDATA,
                        "version %llu (commit %s): its tree is not a dataset tree; history.git is "
                        "damaged or not a hub's",
                        (unsigned long long)seq, git_oid_tostr(hex, sizeof(hex), git_commit_id(c)));
        goto out;
    }
    moved = lold != 0 && lnew != 0 && lold != lnew;
    gitmap_set_layout(b->gm, lnew != 0 ? lnew : lold);
    if ((rc = session_new(&sess, b, e)) != SYNC_OK ||
        (!moved && (rc = apply_diff(b, old, tree, e)) != SYNC_OK))
        goto out;
    if (sqlite3session_changeset(sess, &ncs, &cs) != SQLITE_OK) {
        rc = sql_fail(e, b->db, "taking a changeset");
        goto out;
    }
    /* the rows must give the commit's tree, as the hub computed it */
    if (moved)
        rc = gitmap_tree_full(got, b->gm, b->db, b->s, "", e);
    else if ((rc = changeset_touched_reset(b->db, NULL, b->s, e)) == SYNC_OK &&
             (rc = changeset_touched_add(b->db, NULL, b->s, cs, (size_t)ncs, e)) == SYNC_OK)
        rc = gitmap_tree_update(got, b->gm, old ? git_tree_id(old)->id : NULL, b->db, b->s, "", e);
    if (rc != SYNC_OK)
        goto out;
    if (memcmp(got, git_tree_id(tree)->id, GITMAP_OID_LEN) != 0) {
        rc = errctx_set(e, SYNC_EDATA,
                        "version %llu (commit %s): its rows give another tree than the commit's; "
                        "history.git is damaged or not a hub's",
                        (unsigned long long)seq, git_oid_tostr(hex, sizeof(hex), git_commit_id(c)));
        goto out;
    }
    /* the trees just built are the commit's, on disk already: drop them */
    if ((rc = gitmap_discard(b->gm, e)) == SYNC_OK &&
        (rc = push_restore(b, git_commit_message(c), seq, when, push_hex, e)) == SYNC_OK)
        rc = version_row(b, seq, git_commit_id(c), git_tree_id(tree), push_hex, cs, ncs, when, e);
out:
    if (sess != NULL)
        sqlite3session_delete(sess);
    sqlite3_free(cs);
    git_tree_free(tree);
    git_tree_free(old);
    return rc;
}

/* The branch's commits, oldest first; SYNC_EDATA unless they form one chain. */
static int chain(git_oid **out, size_t *n, git_repository *repo, struct errctx *e)
{
    git_oid id, *ids = NULL;
    size_t cnt = 0;

    *out = NULL;
    *n = 0;
    if (git_reference_name_to_id(&id, repo, GITMAP_BRANCH) != 0)
        return git_fail(e, "reading the branch " GITMAP_BRANCH);
    for (;;) {
        git_commit *c = NULL;
        git_oid *grown = reallocarray(ids, cnt + 1, sizeof(*ids));
        unsigned np;

        if (grown == NULL) {
            free(ids);
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        }
        ids = grown;
        if (git_commit_lookup(&c, repo, &id) != 0) {
            free(ids);
            return git_fail(e, "reading the history (run empact-hub verify)");
        }
        ids[cnt++] = id;
        np = git_commit_parentcount(c);
        if (np == 1)
            id = *git_commit_parent_id(c, 0);
        git_commit_free(c);
        if (np > 1) {
            free(ids);
            return errctx_set(e, SYNC_EDATA,
                              "history.git has a merge commit; a hub's is one chain");
        }
        if (np == 0)
            break;
    }
    for (size_t i = 0; i < cnt / 2; i++) {
        git_oid t = ids[i];
        ids[i] = ids[cnt - 1 - i];
        ids[cnt - 1 - i] = t;
    }
    *out = ids;
    *n = cnt;
    return SYNC_OK;
}

/* ---- what git does not hold ------------------------------------------------------------ */

/* Registers the site whose certificate (a join bundle or a PEM certificate)
 * is in path, if HUBDIR's CA signed it and the site is in table `site`. */
static int cert_register(struct rb *b, const char *dir, const char *path, struct errctx *e)
{
    struct bundle *bd = NULL;
    char *pem = NULL, *ca_pem = NULL, fp[65], cn[SITE_ID_MAX + 1], na[PKI_TIME_LEN];
    X509 *ca = NULL, *x = NULL;
    BIO *bio = NULL;
    sqlite3_stmt *st = NULL;
    int rc;

    if (bundle_read_file(&bd, path, e) == SYNC_OK) {
        pem = strdup(bd->site_cert);
    } else {
        FILE *fp_in = fopen(path, "re");
        char buf[PEM_MAX + 1];
        size_t n = fp_in ? fread(buf, 1, PEM_MAX, fp_in) : 0;
        if (fp_in == NULL) {
            rc = errctx_set(e, SYNC_EIO, "cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        fclose(fp_in);
        buf[n] = '\0';
        pem = strdup(buf);
    }
    if (pem == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = hub_read_pem(&ca_pem, dir, HUB_CA_CERT, e)) != SYNC_OK)
        goto out;
    if ((bio = BIO_new_mem_buf(ca_pem, -1)) == NULL ||
        (ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL || BIO_free(bio) != 1 ||
        (bio = BIO_new_mem_buf(pem, -1)) == NULL ||
        (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) == NULL) {
        rc = errctx_set(e, SYNC_EDATA, "%s: not a join bundle or a PEM certificate", path);
        goto out;
    }
    if (X509_verify(x, X509_get0_pubkey(ca)) != 1) {
        rc = errctx_set(e, SYNC_EDATA, "%s: the certificate was not issued by this hub's CA", path);
        goto out;
    }
    if ((rc = tls_cert_cn(cn, sizeof(cn), pem, e)) != SYNC_OK ||
        (rc = tls_cert_fingerprint(fp, pem, e)) != SYNC_OK ||
        (rc = pki_cert_not_after(na, pem, e)) != SYNC_OK)
        goto out;
    if (sqlite3_prepare_v2(b->db,
                           "INSERT INTO _empact_site_cert (site_id, fingerprint, added_at, "
                           "not_after, address) SELECT ?1, ?2, strftime('%s','now'), ?3, ?4 "
                           "WHERE EXISTS (SELECT 1 FROM site WHERE site_id = ?1) "
                           "ON CONFLICT (site_id) DO UPDATE SET fingerprint = excluded.fingerprint,"
                           " not_after = excluded.not_after, address = excluded.address",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sql_fail(e, b->db, "registering a site");
        goto out;
    }
    sqlite3_bind_text(st, 1, cn, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, fp, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, na, -1, SQLITE_STATIC);
    if (bd != NULL)
        sqlite3_bind_text(st, 4, bd->hub_address, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sql_fail(e, b->db, "registering a site");
    else if (sqlite3_changes(b->db) == 0)
        rc = errctx_set(e, SYNC_EDATA, "%s: site %s is not in the rebuilt table `site`", path, cn);
    else
        printf("  site %s registered again from %s\n", cn, path);
out:
    sqlite3_finalize(st);
    BIO_free(bio);
    X509_free(x);
    X509_free(ca);
    pki_pem_free(ca_pem);
    pki_pem_free(pem);
    bundle_free(bd);
    return rc;
}

/* Lists the sites of table `site` that have no certificate now. */
static void report_sites(struct rb *b)
{
    sqlite3_stmt *st = NULL;
    int n = 0;

    if (sqlite3_prepare_v2(b->db,
                           "SELECT site_id FROM site WHERE site_id NOT IN "
                           "(SELECT site_id FROM _empact_site_cert) ORDER BY site_id",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n++ == 0)
            printf("  NOT registered (certificate fingerprints are not in git; give each site's "
                   "join bundle or certificate to rebuild, or enrol it again):");
        printf(" %s", (const char *)sqlite3_column_text(st, 0));
    }
    if (n > 0)
        printf("\n");
    sqlite3_finalize(st);
}

static int finish_extras(struct rb *b, const struct rebuild_opts *o, struct errctx *e)
{
    struct timespec ts;
    int rc;

    /* Sites ask for conflict entries with an id above the newest they hold;
     * new ids start above any id the lost log can have given. */
    clock_gettime(CLOCK_REALTIME, &ts);
    rc = db_exec_free(
        b->db,
        sqlite3_mprintf("INSERT INTO _empact_conflict (id, version, push_id, tbl, row_key, col, "
                        "kind, loser_site, lost_value, lost_at, winner_site, kept_value, won_at, "
                        "created_at) VALUES (%lld, 0, NULL, '', '', '', 'rebuild', '', '', 0, '', "
                        "'', 0, %lld)",
                        (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, (long long)ts.tv_sec),
        "hub database", e);
    for (int i = 0; rc == SYNC_OK && i < o->ncerts; i++)
        rc = cert_register(b, o->dir, o->certs[i], e);
    if (rc == SYNC_OK)
        report_sites(b);
    return rc;
}

/* ---- the command -------------------------------------------------------------------- */

/* Moves hub.db (and its -wal and -shm) aside with a time suffix. */
static int move_aside(const char *dir, struct errctx *e)
{
    static const char *const ext[] = {"", "-wal", "-shm"};
    char from[4096], to[4096], stamp[32];
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof(from), "%s/%s%s", dir, HUB_DB, ext[i]);
        snprintf(to, sizeof(to), "%s/%s.before-rebuild-%s%s", dir, HUB_DB, stamp, ext[i]);
        if (rename(from, to) != 0 && errno != ENOENT)
            return errctx_set(e, SYNC_EIO, "cannot move %s aside: %s", from, strerror(errno));
        if (i == 0)
            printf("moved the old %s/%s to %s\n", dir, HUB_DB, to);
    }
    return SYNC_OK;
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int replay_all(struct rb *b, const struct rebuild_opts *o, struct errctx *e)
{
    git_oid *ids = NULL;
    size_t n = 0;
    git_commit *prev = NULL;
    int rc;

    if ((rc = chain(&ids, &n, b->repo, e)) != SYNC_OK)
        return rc;
    for (size_t i = 0; rc == SYNC_OK && i < n; i++) {
        git_commit *c = NULL;
        if (git_commit_lookup(&c, b->repo, &ids[i]) != 0) {
            rc = git_fail(e, "reading a commit");
            break;
        }
        rc = replay(b, i + 1, c, prev, e);
        git_commit_free(prev);
        prev = c;
        if (o->progress_every > 0 && ((i + 1) % (size_t)o->progress_every == 0 || i + 1 == n))
            fprintf(stderr, "empact-hub: rebuild: %zu of %zu commits\n", i + 1, n);
    }
    git_commit_free(prev);
    free(ids);
    if (rc == SYNC_OK)
        printf("  %zu versions, %llu push ids restored\n", n, (unsigned long long)b->pushes);
    return rc;
}

int hub_rebuild(const struct rebuild_opts *o, const struct schema *s, struct errctx *e)
{
    char dbpath[4096], tmp[4096], gitpath[4096];
    struct rb b = {s, NULL, NULL, NULL, 0, NULL, 0};
    struct hub *h = NULL;
    struct stat st;
    int rc;

    snprintf(dbpath, sizeof(dbpath), "%s/%s", o->dir, HUB_DB);
    snprintf(tmp, sizeof(tmp), "%s/%s.rebuilding", o->dir, HUB_DB);
    snprintf(gitpath, sizeof(gitpath), "%s/%s", o->dir, HUB_GIT);
    if (!same_file(o->from, gitpath))
        return errctx_set(e, SYNC_EUSAGE,
                          "--from must be %s (the hub's own repository); to use another copy, "
                          "first: git clone --mirror %s %s",
                          gitpath, o->from, gitpath);
    if (stat(dbpath, &st) == 0 && !o->force)
        return errctx_set(e, SYNC_EUSAGE,
                          "%s exists; rebuild replaces a lost hub.db (--force moves it aside)",
                          dbpath);
    (void)unlink(tmp); /* a rebuild that stopped half way; never a hub.db */
    if ((rc = gitmap_open(&b.gm, gitpath, e)) != SYNC_OK)
        return rc;
    gitmap_set_keep_blobs(b.gm, 0); /* it only checks trees: every blob is in the history */
    if (git_repository_open_bare(&b.repo, gitpath) != 0) {
        rc = git_fail(e, "opening the history repository");
        goto out;
    }
    printf("rebuilding %s from %s\n", dbpath, gitpath);
    if ((rc = hub_db_create(&b.db, tmp, s, e)) != SYNC_OK ||
        (rc = db_exec(b.db, "BEGIN", "hub database", e)) != SYNC_OK ||
        (rc = replay_all(&b, o, e)) != SYNC_OK || (rc = finish_extras(&b, o, e)) != SYNC_OK ||
        (rc = db_exec(b.db, "COMMIT", "hub database", e)) != SYNC_OK)
        goto out;
    if (sqlite3_close(b.db) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "cannot close %s", tmp);
        goto out;
    }
    b.db = NULL;
    if ((stat(dbpath, &st) == 0 && (rc = move_aside(o->dir, e)) != SYNC_OK))
        goto out;
    if (rename(tmp, dbpath) != 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot rename %s to %s: %s", tmp, dbpath, strerror(errno));
        goto out;
    }
    /* what hub_open adds to every hub.db (guards, tables of later releases) */
    if ((rc = hub_open(&h, o->dir, s, e)) == SYNC_OK)
        printf("rebuilt %s; run empact-hub verify %s\n", dbpath, o->dir);
out:
    hub_close(h);
    sqlite3_close(b.db);
    if (rc != SYNC_OK)
        (void)unlink(tmp);
    git_repository_free(b.repo);
    gitmap_free(b.gm);
    return rc;
}
