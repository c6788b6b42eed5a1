/*
 * hub.c - the hub's store (see hub.h for the contract and write order).
 *
 * Tables in hub.db besides the replicated ones (schema/README.md):
 *   _empact_version(seq, commit_id, tree_id, site_id, push_id, changeset, created_at)
 *   _empact_push(push_id, site_id, version, applied, overridden, created_at)
 *   _empact_site_cert(site_id, fingerprint, revoked, added_at, not_after, address)
 *   _empact_site_seen(site_id, synced_at, version)  when each site's last sync
 *                                            ended and the head it pulled to
 *   _empact_refusal(site_id, at, reason)     refused pushes and connections of
 *                                            registered sites (REFUSAL_KEEP_DAYS)
 *
 * Each site has exactly one registered certificate (its fingerprint): renewing
 * replaces it, so the old certificate stops working at once.  not_after and
 * address (the hub address written into the site's bundle) were added after
 * the first release; hub_open() adds the columns to an older hub.db, where
 * they stay NULL for sites enrolled before.
 *
 * Reconciliation (issue-3 rule, documented in PROTOCOL.md): a push is applied
 * with sqlite3changeset_apply_v2 onto the hub's current rows; when a row was
 * changed by someone else since the pusher's base, the pusher's values for
 * the columns it changed win (the later push wins); an update or delete of a
 * row the hub no longer has is dropped; an insert of a key that exists
 * replaces the row; a change that breaks a constraint is dropped.  Dropped
 * changes are counted as "overridden" in the reply.  The hub records and
 * commits what a session saw it apply, not the bytes it was sent.
 */
#include "hub.h"
#include "dict.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "buf.h"
#include "changeset.h"
#include "db.h"
#include "gitmap.h"
#include "gitpack.h"
#include "limits.h"
#include "merge.h"
#include "pki.h"
#include "testpoint.h"
#include "tls.h"

#define FOLD_NICE 10 /* the folding thread's nice value */

/* A write waiting for the writer: a push (hub_push), or the mark of a
 * site's finished sync (hub_site_synced, m NULL). */
struct push_req {
    const char *site_id;
    const struct msg_push *m;
    const void *cs;
    size_t n;
    const uint64_t *times;
    struct msg_push_ok *res;
    uint64_t synced; /* a mark: the version the site pulled to, or 0 */
    struct errctx *e;
    int rc, done;
    struct push_req *next;
};

struct hub {
    char *dir;
    sqlite3 *db;
    struct gitmap *git;
    const struct schema *schema;
    pthread_mutex_t lock;
    int pack_every; /* HUB_PACK_EVERY, or a test build's EMPACT_PACK_EVERY */
    /* group commit: pushes queue here; one thread at a time (the leader)
     * applies all that wait, each its own version, in one transaction */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    struct push_req *qhead, **qtail;
    int leading;
    int batch_wait_ms; /* a test build's EMPACT_BATCH_WAIT_MS; 0 */
    /* while a batch runs, version_commit() leaves the branch to the end */
    int batching, batch_moved;
    uint8_t batch_commit[20];
    char batch_why[160];
    struct stmtcache sc; /* the writer's statements on db (h->lock held) */
    /* the folding thread (housekeep, fold_main) */
    pthread_t fold_th;
    pthread_mutex_t fold_mu;
    pthread_cond_t fold_cv;
    int fold_started, fold_wanted, fold_stop;
};

/* When each site's last sync ended (hub_site_synced). */
#define SITE_SEEN_DDL                                                                              \
    "CREATE TABLE IF NOT EXISTS _empact_site_seen ("                                               \
    " site_id TEXT PRIMARY KEY, synced_at INTEGER NOT NULL) WITHOUT ROWID;"

/* Refused pushes and connections of registered sites (hub_site_refused),
 * for `empact-hub status`; rows older than REFUSAL_KEEP_DAYS are dropped
 * on every write, and at most REFUSAL_KEEP_MAX kept per site. */
#define REFUSAL_DDL                                                                                \
    "CREATE TABLE IF NOT EXISTS _empact_refusal ("                                                 \
    " id INTEGER PRIMARY KEY, site_id TEXT NOT NULL, at INTEGER NOT NULL, reason TEXT NOT NULL);"  \
    "CREATE INDEX IF NOT EXISTS _empact_refusal_site ON _empact_refusal (site_id, at);"

/* Counts of people (metrics with suppress_below) reach hub.db only as a
 * site publishes them (client/metrics.c): per quarter (a year suppressed),
 * as 0, suppressed with no value, or a multiple of PEOPLE_ROUND_BASE at or
 * above the threshold.  Anything else is
 * refused by this trigger, which the merge reports as a rejected change: a
 * modified client cannot put a small count into hub.db or git. */
#define PEOPLE_STR_(x) #x
#define PEOPLE_STR(x) PEOPLE_STR_(x)
#define PEOPLE_ROUND_BASE_SQL PEOPLE_STR(PEOPLE_ROUND_BASE)
#define PEOPLE_RULE(row)                                                                           \
    " WHEN (SELECT suppress_below FROM metric WHERE code = " row ".metric) > 0 AND NOT ("          \
    "(" row ".suppressed = 1 AND " row ".value IS NULL) OR (" row ".suppressed = 0 AND "           \
    "length(" row ".period) <> 4 AND " row ".value IS NOT NULL AND (" row ".value = 0 OR (" row    \
    ".value >= (SELECT suppress_below FROM "                                                       \
    "metric WHERE code = " row ".metric) AND " row ".value = CAST(" row ".value AS INTEGER) AND "  \
    "CAST(" row ".value AS INTEGER) % " PEOPLE_ROUND_BASE_SQL                                      \
    " = 0)))) BEGIN SELECT RAISE(ABORT, "                                                          \
    "'a count of people must be published as 0, as suppressed (no value), or rounded to a "        \
    "multiple of " PEOPLE_ROUND_BASE_SQL " at or above the metric''s threshold'); END;"
#define PEOPLE_GUARD_DDL                                                                           \
    "CREATE TRIGGER IF NOT EXISTS _empact_people_ins BEFORE INSERT ON metric_value" PEOPLE_RULE(   \
        "NEW") "CREATE TRIGGER IF NOT EXISTS _empact_people_upd BEFORE UPDATE ON "                 \
               "metric_value" PEOPLE_RULE("NEW")

static const char hub_ddl[] =
    "CREATE TABLE IF NOT EXISTS _empact_version ("
    " seq INTEGER PRIMARY KEY, commit_id TEXT NOT NULL, tree_id TEXT NOT NULL,"
    " site_id TEXT NOT NULL, push_id TEXT, changeset BLOB NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS _empact_push ("
    " push_id TEXT NOT NULL, site_id TEXT NOT NULL, version INTEGER NOT NULL,"
    " applied INTEGER NOT NULL, overridden INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " PRIMARY KEY (site_id, push_id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS _empact_site_cert ("
    " site_id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0,"
    " added_at INTEGER NOT NULL, not_after TEXT, address TEXT);" SITE_SEEN_DDL
    "CREATE TABLE IF NOT EXISTS _empact_conflict ("
    " id INTEGER PRIMARY KEY, version INTEGER NOT NULL, push_id TEXT, tbl TEXT NOT NULL,"
    " row_key TEXT NOT NULL, col TEXT NOT NULL, kind TEXT NOT NULL, loser_site TEXT NOT NULL,"
    " lost_value TEXT NOT NULL, lost_at INTEGER NOT NULL, winner_site TEXT NOT NULL,"
    " kept_value TEXT NOT NULL, won_at INTEGER NOT NULL, created_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS _empact_conflict_loser ON _empact_conflict (loser_site, id);";

/* The metric catalogue every hub starts with (hub-class table `metric`). */
static const char seed_sql[] =
    "INSERT INTO metric VALUES"
    " ('heas_completed', 'HEAs completed', 'count', 'Health Equity Analyses whose report was "
    "validated in the period', NULL),"
    " ('heas_in_progress', 'HEAs in progress', 'count', 'HEAs past intake and not yet reported', "
    "NULL),"
    " ('decisions_hospital', 'Decisions informed: hospital', 'count', 'Hospital decisions "
    "informed by an HEA', NULL),"
    " ('decisions_provincial', 'Decisions informed: provincial or regional', 'count', "
    "'Provincial or regional decisions informed by an HEA', NULL),"
    " ('decisions_national', 'Decisions informed: national', 'count', 'National decisions "
    "informed by an HEA', NULL),"
    " ('impact_partnerships', 'Impact partnerships', 'count', 'Active partnerships with "
    "decision-makers', NULL),"
    " ('impact_partners', 'Impact partners', 'count', 'People at partner organisations', NULL),"
    " ('members_engaged', 'Members engaged', 'people', 'Community members who took part', 5),"
    " ('compensation_paid', 'Compensation paid', 'CAD', 'Compensation paid to members', NULL),"
    " ('feedback_share', 'Partner feedback returned', 'ratio', 'Share of completed HEAs whose "
    "partner reported what they changed', NULL);";

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int sql_err(struct errctx *e, sqlite3 *db, const char *what)
{
    return errctx_set(e, SYNC_EIO, "hub database: %s: %s", what, sqlite3_errmsg(db));
}

static int db_open(sqlite3 **out, const char *dir, int flags, struct errctx *e)
{
    char *path = path_join(dir, HUB_DB);
    int rc = SYNC_OK;

    *out = NULL;
    if (path == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if (sqlite3_open_v2(path, out, flags, NULL) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "cannot open %s: %s", path,
                        *out ? sqlite3_errmsg(*out) : "out of memory");
        sqlite3_close(*out);
        *out = NULL;
    } else {
        sqlite3_busy_timeout(*out, 10000);
        rc = db_exec(*out, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", "hub database", e);
        if (rc != SYNC_OK) {
            sqlite3_close(*out);
            *out = NULL;
        }
    }
    free(path);
    return rc;
}

int hub_reader_open(sqlite3 **out, const char *dir, struct errctx *e)
{
    return db_open(out, dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, e);
}

int hub_head(sqlite3 *db, uint64_t *head, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK;

    *head = 0;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(seq), 0) FROM _empact_version", -1, &st,
                           NULL) != SQLITE_OK)
        return sql_err(e, db, "reading the head version");
    if (sqlite3_step(st) == SQLITE_ROW)
        *head = (uint64_t)sqlite3_column_int64(st, 0);
    else
        rc = sql_err(e, db, "reading the head version");
    sqlite3_finalize(st);
    return rc;
}

int hub_head_ids(sqlite3 *db, uint64_t *seq, uint8_t commit[20], uint8_t tree[20], int *found,
                 struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    *found = 0;
    *seq = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT seq, commit_id, tree_id FROM _empact_version "
                           "ORDER BY seq DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_err(e, db, "reading the head version");
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        if ((rc = gitmap_oid_parse(commit, (const char *)sqlite3_column_text(st, 1), e)) ==
                SYNC_OK &&
            (rc = gitmap_oid_parse(tree, (const char *)sqlite3_column_text(st, 2), e)) == SYNC_OK)
            *found = 1;
    } else if (step != SQLITE_DONE) {
        rc = sql_err(e, db, "reading the head version");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Moves the branch to the newest version's commit if it points elsewhere (a
 * crash between moving it and COMMIT, or a hub.db restored from backup). */
static int branch_repair(struct hub *h, struct errctx *e)
{
    uint8_t commit[20], tree[20], at[20];
    uint64_t seq;
    int found, on_branch, rc;

    /* Every ref update happens under SQLite's write lock, which we hold: a ref
     * lock file now is left over from a writer that died. */
    if ((rc = gitmap_clear_stale_lock(h->git, e)) != SYNC_OK)
        return rc;
    if ((rc = hub_head_ids(h->db, &seq, commit, tree, &found, e)) != SYNC_OK || !found)
        return rc;
    if ((rc = gitmap_head(at, &on_branch, h->git, e)) != SYNC_OK)
        return rc;
    if (on_branch && memcmp(at, commit, 20) == 0)
        return SYNC_OK;
    fprintf(stderr, "hub: history branch did not match version %llu; moved it back\n",
            (unsigned long long)seq);
    return gitmap_set_head(h->git, commit, "empact: repair to hub.db head", e);
}

/* ---- committing one version ------------------------------------------------ */

/* Records the effect changeset eff (from author, for push_id or NULL) as the
 * next version: git tree and commit, version row, branch.  Runs inside the
 * caller's write transaction.  relayout: eff is empty and the tree is every
 * row again in the gitmap's layout (layout_upgrade()). */
static int version_commit(struct hub *h, const char *author, const char *push_hex, const void *eff,
                          size_t neff, const char *summary, int relayout, uint64_t *out_seq,
                          struct errctx *e)
{
    uint8_t commit[20], tree[20], new_tree[20], new_commit[20];
    char commit_hex[41], tree_hex[41];
    uint64_t seq;
    int found, rc;
    sqlite3_stmt *st = NULL;
    char *msg = NULL;
    int64_t now = (int64_t)time(NULL);

    if ((rc = hub_head_ids(h->db, &seq, commit, tree, &found, e)) != SYNC_OK)
        return rc;
    if (relayout)
        rc = gitmap_tree_full(new_tree, h->git, h->db, h->schema, "", e);
    else if ((rc = changeset_touched_reset(h->db, &h->sc, h->schema, e)) == SYNC_OK &&
             (rc = changeset_touched_add(h->db, &h->sc, h->schema, eff, neff, e)) == SYNC_OK)
        rc = gitmap_tree_update(new_tree, h->git, found ? tree : NULL, h->db, h->schema, "", e);
    if (rc != SYNC_OK)
        return rc;
    seq++;
    msg = sqlite3_mprintf("%s\n\nversion: %llu\n%s%s%s", summary, (unsigned long long)seq,
                          push_hex ? "push-id: " : "", push_hex ? push_hex : "",
                          push_hex ? "\n" : "");
    if (msg == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    testpoint("hub: tree written");
    rc = gitmap_commit(new_commit, h->git, new_tree, found ? commit : NULL, author, now, msg, e);
    sqlite3_free(msg);
    if (rc != SYNC_OK)
        return rc;
    testpoint("hub: commit written");
    gitmap_oid_hex(commit_hex, new_commit);
    gitmap_oid_hex(tree_hex, new_tree);
    if (stmtcache_prepare(&h->sc,
                          "INSERT INTO _empact_version (seq, commit_id, tree_id, site_id, "
                          "push_id, changeset, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          &st) != SQLITE_OK)
        return sql_err(e, h->db, "recording a version");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 2, commit_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, tree_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, author, -1, SQLITE_STATIC);
    if (push_hex)
        sqlite3_bind_text(st, 5, push_hex, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, eff, (int)neff, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, now);
    rc = sqlite3_step(st) == SQLITE_DONE ? SYNC_OK : sql_err(e, h->db, "recording a version");
    stmtcache_release(&h->sc, st);
    if (rc != SYNC_OK)
        return rc;
    /* Move the branch while we hold the write lock: another writer cannot
     * slip a newer version in between.  If COMMIT then fails, branch_repair()
     * moves it back on the next write or open. */
    testpoint("hub: version row written");
    if (h->batching) { /* the batch moves it once, to its newest version */
        memcpy(h->batch_commit, new_commit, 20);
        snprintf(h->batch_why, sizeof(h->batch_why), "%s", summary);
        h->batch_moved = 1;
    } else {
        if ((rc = gitmap_set_head(h->git, new_commit, summary, e)) != SYNC_OK)
            return rc;
        testpoint("hub: branch moved");
    }
    *out_seq = seq;
    return SYNC_OK;
}

static int begin(struct hub *h, struct errctx *e)
{
    int rc = db_exec(h->db, "BEGIN IMMEDIATE", "hub database", e);
    if (rc == SYNC_OK && (rc = branch_repair(h, e)) != SYNC_OK)
        (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int finish(struct hub *h, int rc, struct errctx *e)
{
    testpoint("hub: before commit");
    if (rc == SYNC_OK)
        rc = db_exec(h->db, "COMMIT", "hub database", e);
    testpoint("hub: after commit");
    if (rc != SYNC_OK && !sqlite3_get_autocommit(h->db)) {
        struct errctx ignored;
        (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
        /* the branch may point at the commit just rolled back */
        (void)branch_repair(h, &ignored);
    }
    return rc;
}

static int session_start(sqlite3_session **out, struct hub *h, struct errctx *e)
{
    if (sqlite3session_create(h->db, "main", out) != SQLITE_OK)
        return sql_err(e, h->db, "starting a session");
    for (int i = 0; i < h->schema->ntable; i++) {
        const struct schema_table *t = &h->schema->tables[i];
        if (schema_class_replicated(t->cls) && sqlite3session_attach(*out, t->name) != SQLITE_OK) {
            sqlite3session_delete(*out);
            *out = NULL;
            return sql_err(e, h->db, "starting a session");
        }
    }
    return SYNC_OK;
}

/* Runs sql (hub-authored change) and commits its effect as one version. */
static int commit_sql(struct hub *h, const char *sql, const char *summary, struct errctx *e)
{
    sqlite3_session *sess = NULL;
    void *eff = NULL;
    int neff = 0, rc;
    uint64_t seq = 0;

    pthread_mutex_lock(&h->lock);
    if ((rc = begin(h, e)) != SYNC_OK)
        goto unlock;
    if ((rc = session_start(&sess, h, e)) != SYNC_OK ||
        (rc = db_exec(h->db, sql, "hub database", e)) != SYNC_OK)
        goto out;
    if (sqlite3session_changeset(sess, &neff, &eff) != SQLITE_OK) {
        rc = sql_err(e, h->db, "taking a changeset");
        goto out;
    }
    if (neff > 0)
        rc = version_commit(h, HUB_AUTHOR, NULL, eff, (size_t)neff, summary, 0, &seq, e);
out:
    if (sess != NULL)
        sqlite3session_delete(sess);
    sqlite3_free(eff);
    rc = finish(h, rc, e);
unlock:
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* ---- pushes ------------------------------------------------------------------ */

/* Looks up a push id; *found = 1 and res filled when it was seen before. */
static int push_lookup(struct hub *h, const char *site_id, const char *push_hex,
                       struct msg_push_ok *res, int *found, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    *found = 0;
    if (stmtcache_prepare(&h->sc,
                          "SELECT version, applied, overridden FROM _empact_push "
                          "WHERE site_id = ? AND push_id = ?",
                          &st) != SQLITE_OK)
        return sql_err(e, h->db, "looking up a push");
    sqlite3_bind_text(st, 1, site_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, push_hex, -1, SQLITE_STATIC);
    if ((step = sqlite3_step(st)) == SQLITE_ROW) {
        *found = 1;
        res->version = (uint64_t)sqlite3_column_int64(st, 0);
        res->applied = (uint32_t)sqlite3_column_int64(st, 1);
        res->overridden = (uint32_t)sqlite3_column_int64(st, 2);
        res->duplicate = 1;
    } else if (step != SQLITE_DONE) {
        rc = sql_err(e, h->db, "looking up a push");
    }
    stmtcache_release(&h->sc, st);
    return rc;
}

static int push_record(struct hub *h, const char *push_hex, const char *site_id,
                       const struct msg_push_ok *res, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (stmtcache_prepare(&h->sc,
                          "INSERT INTO _empact_push (push_id, site_id, version, applied, "
                          "overridden, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                          &st) != SQLITE_OK)
        return sql_err(e, h->db, "recording a push");
    sqlite3_bind_text(st, 1, push_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, site_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)res->version);
    sqlite3_bind_int64(st, 4, res->applied);
    sqlite3_bind_int64(st, 5, res->overridden);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(st) == SQLITE_DONE ? SYNC_OK : sql_err(e, h->db, "recording a push");
    stmtcache_release(&h->sc, st);
    return rc;
}

/* Gives the conflicts logged for push push_hex its version. */
static int conflicts_versioned(struct hub *h, const char *push_hex, uint64_t version,
                               struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (stmtcache_prepare(
            &h->sc, "UPDATE _empact_conflict SET version = ? WHERE push_id = ? AND version = 0",
            &st) != SQLITE_OK)
        return sql_err(e, h->db, "numbering conflicts");
    sqlite3_bind_int64(st, 1, (sqlite3_int64)version);
    sqlite3_bind_text(st, 2, push_hex, -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? SYNC_OK : sql_err(e, h->db, "numbering conflicts");
    stmtcache_release(&h->sc, st);
    return rc;
}

/* Applies a checked push inside the write transaction by the merge policy
 * and commits its effect; conflicts logged for it get the new version. */
static int push_apply(struct hub *h, const char *site_id, const char *push_hex, const void *cs,
                      size_t n, const uint64_t *times, uint32_t ntimes, struct msg_push_ok *res,
                      struct errctx *e)
{
    sqlite3_session *sess = NULL;
    struct merge_stats st = {0, 0, 0};
    struct buf msg = {0};
    void *eff = NULL;
    int neff = 0, rc;
    char summary[160];

    if ((rc = session_start(&sess, h, e)) != SYNC_OK)
        return rc;
    if ((rc = merge_apply(h->db, &h->sc, h->schema, site_id, push_hex, cs, n, times, ntimes, &st,
                          &msg, e)) != SYNC_OK)
        goto out;
    testpoint("hub: push merged");
    if (sqlite3session_changeset(sess, &neff, &eff) != SQLITE_OK) {
        rc = sql_err(e, h->db, "taking the applied changeset");
        goto out;
    }
    res->applied = st.applied;
    res->overridden = st.lost;
    res->duplicate = 0;
    res->version = 0;
    if (neff > 0) {
        struct buf full = {0};
        snprintf(summary, sizeof(summary), "push from %s: %u applied, %u lost in conflicts",
                 site_id, st.applied, st.lost);
        while (msg.len > 0 && msg.data[msg.len - 1] == '\n')
            msg.len--;
        if ((rc = buf_put(&full, summary, strlen(summary), e)) == SYNC_OK && msg.len > 0)
            rc = buf_put(&full, "\n\n", 2, e);
        if (rc == SYNC_OK && (rc = buf_put(&full, msg.data, msg.len, e)) == SYNC_OK &&
            (rc = buf_put_u8(&full, 0, e)) == SYNC_OK)
            rc = version_commit(h, site_id, push_hex, eff, (size_t)neff, (const char *)full.data, 0,
                                &res->version, e);
        buf_free(&full);
        if (rc != SYNC_OK)
            goto out;
    }
    if ((rc = conflicts_versioned(h, push_hex, res->version, e)) != SYNC_OK)
        goto out;
    rc = push_record(h, push_hex, site_id, res, e);
out:
    sqlite3session_delete(sess);
    sqlite3_free(eff);
    buf_free(&msg);
    return rc;
}

/* ---- git housekeeping ------------------------------------------------------- */

/* Folds history.git's packs (gitpack_fold, no lock but the fold lock: the
 * pushes go on meanwhile), then, holding the writer lock, removes what the
 * new pack holds and reopens our repository handle, which may hold a folded
 * pack open, or list it. */
static int gc_run(struct hub *h, int all, struct gitpack_stats *st, struct errctx *e)
{
    struct gitpack_plan *plan = NULL;
    char *gitpath = path_join(h->dir, HUB_GIT);
    int rc;

    memset(st, 0, sizeof(*st));
    if (gitpath == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if ((rc = gitpack_fold(&plan, gitpath, all, st, e)) == SYNC_OK && st->packed > 0) {
        pthread_mutex_lock(&h->lock);
        rc = gitpack_prune(plan, st, e);
        if (st->packs_removed > 0) {
            struct gitmap *fresh = NULL;
            struct errctx e2 = {0, ""};
            if (gitmap_open(&fresh, gitpath, &e2) == SYNC_OK) {
                gitmap_carry(fresh, h->git);
                gitmap_free(h->git);
                h->git = fresh;
            } else if (rc == SYNC_OK) {
                *e = e2;
                rc = e2.code;
            }
        }
        pthread_mutex_unlock(&h->lock);
    }
    gitpack_plan_free(plan);
    free(gitpath);
#ifdef __GLIBC__
    /* a fold's tables (tens of MiB for a large one) raise glibc's mmap
     * threshold and stay in its heap once freed: give them back */
    malloc_trim(0);
#endif
    return rc;
}

int hub_gc(struct hub *h, int all, struct gitpack_stats *st, struct errctx *e)
{
    return gc_run(h, all, st, e);
}

/* The hub's folding thread: folds whenever housekeep() asks, until
 * hub_close().  A failure is logged, not returned: the pushes are durable
 * already, and the next fold tries again. */
static void *fold_main(void *arg)
{
    struct hub *h = arg;

    /* folding can wait; the sites' syncs should not wait for it: on Linux
     * a thread has its own nice value (best effort: ignored if refused) */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), FOLD_NICE);
    pthread_mutex_lock(&h->fold_mu);
    while (!h->fold_stop) {
        struct gitpack_stats st;
        struct errctx e = {0, ""};
        if (!h->fold_wanted) {
            pthread_cond_wait(&h->fold_cv, &h->fold_mu);
            continue;
        }
        h->fold_wanted = 0;
        pthread_mutex_unlock(&h->fold_mu);
        if (gc_run(h, 0, &st, &e) != SYNC_OK)
            fprintf(stderr,
                    "hub: compacting history.git failed (objects stay where they are): %s\n",
                    e.msg);
        else if (st.packed > 0)
            fprintf(stderr,
                    "hub: compacted history.git: %zu objects (%zu loose, %zu packs) into %s "
                    "(%lld bytes, %zu as deltas)\n",
                    st.packed, st.loose, st.packs_folded, st.pack, st.bytes, st.deltas);
        pthread_mutex_lock(&h->fold_mu);
    }
    pthread_mutex_unlock(&h->fold_mu);
    return NULL;
}

/* Asks the folding thread (started on first use) for a fold; the caller
 * (a batch, holding h->lock) does not wait for it. */
static void housekeep(struct hub *h)
{
    pthread_mutex_lock(&h->fold_mu);
    if (!h->fold_started && pthread_create(&h->fold_th, NULL, fold_main, h) == 0)
        h->fold_started = 1;
    if (h->fold_started) {
        h->fold_wanted = 1;
        pthread_cond_signal(&h->fold_cv);
    } else {
        fprintf(stderr, "hub: cannot start the thread that compacts history.git; "
                        "run empact-hub gc\n");
    }
    pthread_mutex_unlock(&h->fold_mu);
}

/* Records that site_id's sync ended now, having pulled to version (0: the
 * last known version stays); inside the writer's transaction. */
static int seen_write(struct hub *h, const char *site_id, uint64_t version, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (stmtcache_prepare(&h->sc,
                          "INSERT INTO _empact_site_seen (site_id, synced_at, version) "
                          "VALUES (?1, strftime('%s','now'), nullif(?2, 0)) "
                          "ON CONFLICT (site_id) DO UPDATE SET synced_at = excluded.synced_at, "
                          "version = coalesce(excluded.version, version)",
                          &st) != SQLITE_OK)
        return sql_err(e, h->db, "updating a site");
    sqlite3_bind_text(st, 1, site_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)version);
    rc = sqlite3_step(st) == SQLITE_DONE ? SYNC_OK : sql_err(e, h->db, "updating a site");
    stmtcache_release(&h->sc, st);
    return rc;
}

/* One push of a batch, in its own savepoint of the batch's transaction: a
 * push refused (or failing) is rolled back alone and the others go on.
 * Returns the push's own result in q->rc; SYNC_OK, or an error when the
 * transaction itself cannot go on. */
static int batch_one(struct hub *h, struct push_req *q)
{
    char push_hex[PUSH_ID_LEN * 2 + 1];
    uint8_t moved_to[20];
    char moved_why[sizeof(h->batch_why)];
    int moved = h->batch_moved, found, rc;
    uint64_t head;

    /* what a rollback of this one must put back: where the batch moves the branch */
    memcpy(moved_to, h->batch_commit, sizeof(moved_to));
    memcpy(moved_why, h->batch_why, sizeof(moved_why));
    if ((rc = db_exec(h->db, "SAVEPOINT push", "hub database", q->e)) != SYNC_OK)
        return q->rc = rc;
    if (q->m == NULL) { /* a mark */
        rc = seen_write(h, q->site_id, q->synced, q->e);
    } else {
        for (int i = 0; i < PUSH_ID_LEN; i++)
            snprintf(push_hex + i * 2, 3, "%02x", q->m->push_id[i]);
        if ((rc = push_lookup(h, q->site_id, push_hex, q->res, &found, q->e)) == SYNC_OK &&
            !found && (rc = hub_head(h->db, &head, q->e)) == SYNC_OK) {
            if (q->m->base > head)
                rc = errctx_set(q->e, SYNC_EREFUSED,
                                "site claims version %llu but the hub's newest is %llu; the hub "
                                "may have been restored from a backup",
                                (unsigned long long)q->m->base, (unsigned long long)head);
            else
                rc = push_apply(h, q->site_id, push_hex, q->cs, q->n, q->times, q->m->ntimes,
                                q->res, q->e);
        }
    }
    q->rc = rc;
    if (rc == SYNC_OK)
        return db_exec(h->db, "RELEASE push", "hub database", q->e);
    if (q->res != NULL)
        memset(q->res, 0, sizeof(*q->res));
    h->batch_moved = moved; /* its version, if it made one, is gone */
    memcpy(h->batch_commit, moved_to, sizeof(moved_to));
    memcpy(h->batch_why, moved_why, sizeof(moved_why));
    if (sqlite3_exec(h->db, "ROLLBACK TO push; RELEASE push", NULL, NULL, NULL) != SQLITE_OK)
        return rc; /* the transaction is gone with it */
    return SYNC_OK;
}

/* Applies the pushes of batch (h->lock held) in one transaction, each its
 * own version: one pack for all their objects, one move of the branch, one
 * COMMIT.  Every push gets its own result; a failure of the whole (the
 * pack, the branch, COMMIT) is every applied push's. */
static void batch_run(struct hub *h, struct push_req *batch)
{
    struct errctx e = {0, ""};
    uint64_t first = 0, last = 0;
    int rc;

    if ((rc = begin(h, &e)) == SYNC_OK && (rc = hub_head(h->db, &first, &e)) == SYNC_OK) {
        h->batching = 1;
        h->batch_moved = 0;
        for (struct push_req *q = batch; q != NULL && rc == SYNC_OK; q = q->next) {
            if ((rc = batch_one(h, q)) != SYNC_OK)
                e = *q->e;
            else if (q->m != NULL && q->rc == SYNC_OK && !q->res->duplicate &&
                     q->res->version > last)
                last = q->res->version;
        }
        h->batching = 0;
        if (rc == SYNC_OK && h->batch_moved) {
            if ((rc = gitmap_set_head(h->git, h->batch_commit, h->batch_why, &e)) == SYNC_OK)
                testpoint("hub: branch moved");
        }
    }
    rc = finish(h, rc, &e);
    if (rc != SYNC_OK) {
        /* objects of versions that were not kept stay out of the next pack */
        struct errctx ignored = {0, ""};
        if (gitmap_discard(h->git, &ignored) != SYNC_OK)
            fprintf(stderr, "hub: %s\n", ignored.msg);
    }
    for (struct push_req *q = batch; q != NULL; q = q->next) {
        if (rc != SYNC_OK && q->rc == SYNC_OK) { /* nothing of the batch was kept */
            *q->e = e;
            q->rc = rc;
            if (q->res != NULL)
                memset(q->res, 0, sizeof(*q->res));
        }
    }
    /* fold when the batch passed a multiple of pack_every */
    if (rc == SYNC_OK && last > 0 &&
        last / (uint64_t)h->pack_every > first / (uint64_t)h->pack_every)
        housekeep(h);
}

/* Takes the pushes waiting (at most PUSH_BATCH_MAX, and PUSH_BATCH_BYTES of
 * changesets unless it is the first) off the queue; h->qlock held. */
static struct push_req *batch_take(struct hub *h)
{
    struct push_req *batch = h->qhead, *q = batch, *prev = NULL;
    size_t count = 0, bytes = 0;

    while (q != NULL && count < PUSH_BATCH_MAX &&
           (count == 0 || bytes + q->n <= PUSH_BATCH_BYTES)) {
        bytes += q->n;
        count++;
        prev = q;
        q = q->next;
    }
    if (prev != NULL)
        prev->next = NULL;
    h->qhead = q;
    if (q == NULL)
        h->qtail = &h->qhead;
    return batch;
}

/* Group commit: queues q, and leads a batch whenever no one else does.
 * The leader's own request is in the batch it takes, so it leaves with its
 * answer; a waiter wakes when its batch is done or the lead is free.
 * Returns with q->rc set. */
static void writer_submit(struct hub *h, struct push_req *q)
{
    pthread_mutex_lock(&h->qlock);
    *h->qtail = q;
    h->qtail = &q->next;
    while (!q->done) {
        struct push_req *batch;
        if (h->leading) {
            pthread_cond_wait(&h->qcond, &h->qlock);
            continue;
        }
        h->leading = 1;
        if (h->batch_wait_ms > 0) { /* test builds: let others queue up behind */
            struct timespec ts = {h->batch_wait_ms / 1000,
                                  (long)(h->batch_wait_ms % 1000) * 1000000};
            pthread_mutex_unlock(&h->qlock);
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&h->qlock);
        }
        batch = batch_take(h);
        pthread_mutex_unlock(&h->qlock);
        pthread_mutex_lock(&h->lock);
        batch_run(h, batch);
        pthread_mutex_unlock(&h->lock);
        pthread_mutex_lock(&h->qlock);
        for (struct push_req *b = batch, *next; b != NULL; b = next) {
            next = b->next; /* b may be gone once done is seen */
            b->done = 1;
        }
        h->leading = 0;
        pthread_cond_broadcast(&h->qcond);
    }
    pthread_mutex_unlock(&h->qlock);
}

int hub_push(struct hub *h, const char *site_id, const struct msg_push *m, const void *cs, size_t n,
             struct msg_push_ok *res, struct errctx *e)
{
    struct push_req me = {site_id, m, cs, n, NULL, res, 0, e, SYNC_OK, 0, NULL};
    uint64_t *times = NULL;
    int nchanges, rc;

    memset(res, 0, sizeof(*res));
    /* Class and shape checks need no lock: they read only the changeset. */
    if ((rc = changeset_check_push(h->schema, cs, n, site_id, &nchanges, e)) != SYNC_OK)
        return rc;
    if ((uint32_t)nchanges != m->ntimes)
        return errctx_set(e, SYNC_EREFUSED, "push carries %u edit times for %d changes", m->ntimes,
                          nchanges);
    if ((times = calloc(m->ntimes ? m->ntimes : 1, sizeof(*times))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < m->ntimes; i++) {
        for (int b = 0; b < 8; b++)
            times[i] = (times[i] << 8) | m->times[i * 8 + (uint32_t)b];
    }
    me.times = times;
    writer_submit(h, &me);
    free(times);
    return me.rc;
}

/* ---- sites --------------------------------------------------------------------- */

int hub_add_site(struct hub *h, const char *site_id, const char *name, const char *jurisdiction,
                 const struct hub_cert *cert, struct errctx *e)
{
    char *sql;
    char summary[96];
    int rc;

    sql = sqlite3_mprintf("INSERT INTO _empact_site_cert (site_id, fingerprint, added_at, "
                          "not_after, address) VALUES (%Q, %Q, strftime('%%s','now'), %Q, %Q);"
                          "INSERT INTO site (site_id, name, jurisdiction, added_at) "
                          "VALUES (%Q, %Q, %Q, strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ','now'));",
                          site_id, cert->fingerprint, cert->not_after, cert->address, site_id, name,
                          jurisdiction);
    if (sql == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    snprintf(summary, sizeof(summary), "hub: register site %s", site_id);
    rc = commit_sql(h, sql, summary, e);
    sqlite3_free(sql);
    if (rc != SYNC_OK && strstr(e->msg, "UNIQUE") != NULL)
        rc = errctx_set(e, SYNC_EUSAGE, "site %s is already registered at this hub", site_id);
    return rc;
}

/* Runs one statement with site_id bound as ?1 (and text values as ?2..)
 * under the writer lock; *changed = rows changed. */
static int site_update(struct hub *h, const char *sql, const char *site_id, const char *const *vals,
                       int nvals, int *changed, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    pthread_mutex_lock(&h->lock);
    if (sqlite3_prepare_v2(h->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = sql_err(e, h->db, "updating a site");
        goto out;
    }
    sqlite3_bind_text(st, 1, site_id, -1, SQLITE_STATIC);
    for (int i = 0; i < nvals; i++)
        sqlite3_bind_text(st, i + 2, vals[i], -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        rc = sql_err(e, h->db, "updating a site");
        goto out;
    }
    *changed = sqlite3_changes(h->db);
    rc = SYNC_OK;
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

/* For hub_site_renew and hub_site_revoke: the site's revoked flag. */
static int site_state(void *arg, const struct hub_site *s)
{
    *(int *)arg = s->revoked;
    return SYNC_OK;
}

int hub_site_renew(struct hub *h, const char *site_id, const struct hub_cert *cert,
                   struct errctx *e)
{
    const char *vals[3] = {cert->fingerprint, cert->not_after, cert->address};
    int found, revoked = 0, changed = 0, rc;

    /* The revoked test is in the UPDATE itself, so a revoke that lands
     * between the look-up and the write still wins. */
    if ((rc = site_update(h,
                          "UPDATE _empact_site_cert SET fingerprint = ?2, not_after = ?3, "
                          "address = ?4 WHERE site_id = ?1 AND revoked = 0",
                          site_id, vals, 3, &changed, e)) != SYNC_OK ||
        changed == 1)
        return rc;
    if ((rc = hub_sites(h, site_id, site_state, &revoked, &found, e)) != SYNC_OK)
        return rc;
    if (!found)
        return errctx_set(e, SYNC_EUSAGE, "site %s is not registered at this hub", site_id);
    return errctx_set(e, SYNC_EUSAGE,
                      "site %s is revoked; a revoked site gets no new certificate (enrol it "
                      "again under a new site id if it should come back)",
                      site_id);
}

int hub_site_revoke(struct hub *h, const char *site_id, int *already, struct errctx *e)
{
    int found, revoked = 0, changed = 0, rc;

    *already = 0;
    if ((rc = hub_sites(h, site_id, site_state, &revoked, &found, e)) != SYNC_OK)
        return rc;
    if (!found)
        return errctx_set(e, SYNC_EUSAGE, "site %s is not registered at this hub", site_id);
    if (revoked) {
        *already = 1;
        return SYNC_OK;
    }
    return site_update(h, "UPDATE _empact_site_cert SET revoked = 1 WHERE site_id = ?1", site_id,
                       NULL, 0, &changed, e);
}

int hub_site_synced(struct hub *h, const char *site_id, uint64_t version, struct errctx *e)
{
    struct push_req me = {site_id, NULL, NULL, 0, NULL, NULL, version, e, SYNC_OK, 0, NULL};

    /* through the writer's queue: it rides in the transaction of the pushes
     * waiting with it (its own was a second fsynced commit per sync) */
    writer_submit(h, &me);
    return me.rc;
}

int hub_site_refused(struct hub *h, const char *site_id, const char *reason, struct errctx *e)
{
    int rc;

    /* A site that is not registered is not recorded (nobody would look for
     * it); the clean-up in the same transaction keeps the table bounded. */
    pthread_mutex_lock(&h->lock);
    rc = db_exec_free(
        h->db,
        sqlite3_mprintf("BEGIN IMMEDIATE;"
                        "INSERT INTO _empact_refusal (site_id, at, reason) "
                        "SELECT %Q, strftime('%%s','now'), substr(%Q, 1, %d) "
                        "WHERE EXISTS (SELECT 1 FROM _empact_site_cert WHERE site_id = %Q);"
                        "DELETE FROM _empact_refusal WHERE at < strftime('%%s','now') - %d;"
                        "DELETE FROM _empact_refusal WHERE site_id = %Q AND id <= (SELECT id FROM "
                        "_empact_refusal WHERE site_id = %Q ORDER BY id DESC LIMIT 1 OFFSET %d);"
                        "COMMIT;",
                        site_id, reason, REFUSAL_REASON_MAX, site_id, REFUSAL_KEEP_DAYS * 86400,
                        site_id, site_id, REFUSAL_KEEP_MAX),
        "hub database", e);
    if (!sqlite3_get_autocommit(h->db))
        (void)sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

int hub_sites(struct hub *h, const char *site_id, int (*fn)(void *arg, const struct hub_site *s),
              void *arg, int *found, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step, n = 0;

    pthread_mutex_lock(&h->lock);
    if (sqlite3_prepare_v2(
            h->db,
            "SELECT c.site_id, s.name, s.jurisdiction, c.fingerprint, c.not_after, c.address,"
            " (SELECT strftime('%Y-%m-%dT%H:%M:%SZ', synced_at, 'unixepoch')"
            "  FROM _empact_site_seen WHERE site_id = c.site_id),"
            " c.revoked,"
            " (SELECT count(*) FROM _empact_conflict WHERE loser_site = c.site_id),"
            " ss.version, (SELECT max(seq) FROM _empact_version) - ss.version"
            " FROM _empact_site_cert c LEFT JOIN site s ON s.site_id = c.site_id"
            " LEFT JOIN _empact_site_seen ss ON ss.site_id = c.site_id"
            " WHERE ?1 IS NULL OR c.site_id = ?1 ORDER BY c.site_id",
            -1, &st, NULL) != SQLITE_OK) {
        rc = sql_err(e, h->db, "listing sites");
        goto out;
    }
    if (site_id != NULL)
        sqlite3_bind_text(st, 1, site_id, -1, SQLITE_STATIC);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct hub_site s;
        s.site_id = (const char *)sqlite3_column_text(st, 0);
        s.name = (const char *)sqlite3_column_text(st, 1);
        s.jurisdiction = (const char *)sqlite3_column_text(st, 2);
        s.fingerprint = (const char *)sqlite3_column_text(st, 3);
        s.not_after = (const char *)sqlite3_column_text(st, 4);
        s.address = (const char *)sqlite3_column_text(st, 5);
        s.last_sync = (const char *)sqlite3_column_text(st, 6);
        s.revoked = sqlite3_column_int(st, 7) != 0;
        s.conflicts = sqlite3_column_int64(st, 8);
        s.synced_version =
            sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 9);
        s.lag = sqlite3_column_type(st, 10) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 10);
        n++;
        if ((rc = fn(arg, &s)) != SYNC_OK)
            goto out;
    }
    if (step != SQLITE_DONE)
        rc = sql_err(e, h->db, "listing sites");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&h->lock);
    if (found != NULL)
        *found = n > 0;
    return rc;
}

int hub_site_check(sqlite3 *rdb, const char *site_id, const char *fingerprint, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc, step;

    if (sqlite3_prepare_v2(rdb,
                           "SELECT fingerprint, revoked FROM _empact_site_cert "
                           "WHERE site_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_err(e, rdb, "looking up a site");
    sqlite3_bind_text(st, 1, site_id, -1, SQLITE_STATIC);
    step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        rc = errctx_set(e, SYNC_EREFUSED, "site %s is not registered at this hub", site_id);
    else if (step != SQLITE_ROW)
        rc = sql_err(e, rdb, "looking up a site");
    else if (sqlite3_column_int(st, 1) != 0)
        rc = errctx_set(e, SYNC_EREFUSED, "site %s has been revoked by the central team", site_id);
    else if (strcmp((const char *)sqlite3_column_text(st, 0), fingerprint) != 0)
        rc = errctx_set(e, SYNC_EREFUSED,
                        "site %s presented a certificate the hub did not issue to it (replaced "
                        "or copied); ask the central team for a new join bundle",
                        site_id);
    else
        rc = SYNC_OK;
    sqlite3_finalize(st);
    return rc;
}

/* ---- pulls ----------------------------------------------------------------------- */

int hub_versions(sqlite3 *rdb, uint64_t since, int (*fn)(void *arg, const struct hub_version *v),
                 void *arg, uint64_t *head, uint8_t head_tree[20], int *more, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    uint8_t commit[20];
    uint64_t sent = 0;
    int found, rc, step;

    *more = 0;
    if ((rc = db_exec(rdb, "BEGIN", "hub database", e)) != SYNC_OK)
        return rc;
    if ((rc = hub_head_ids(rdb, head, commit, head_tree, &found, e)) != SYNC_OK)
        goto out;
    if (!found)
        memset(head_tree, 0, 20);
    if (since > *head) {
        rc = errctx_set(e, SYNC_EREFUSED,
                        "this site is at version %llu but the hub's newest is %llu; the hub may "
                        "have been restored from a backup",
                        (unsigned long long)since, (unsigned long long)*head);
        goto out;
    }
    if (sqlite3_prepare_v2(rdb,
                           "SELECT seq, commit_id, tree_id, created_at, site_id, changeset "
                           "FROM _empact_version WHERE seq > ? ORDER BY seq LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = sql_err(e, rdb, "reading versions");
        goto out;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)since);
    sqlite3_bind_int(st, 2, PULL_BATCH_MAX);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct hub_version v;
        v.seq = (uint64_t)sqlite3_column_int64(st, 0);
        if ((rc = gitmap_oid_parse(v.commit, (const char *)sqlite3_column_text(st, 1), e)) ||
            (rc = gitmap_oid_parse(v.tree, (const char *)sqlite3_column_text(st, 2), e)))
            goto out;
        v.time = sqlite3_column_int64(st, 3);
        snprintf(v.site, sizeof(v.site), "%s", (const char *)sqlite3_column_text(st, 4));
        v.cs = sqlite3_column_blob(st, 5);
        v.ncs = (size_t)sqlite3_column_bytes(st, 5);
        if ((rc = fn(arg, &v)) != SYNC_OK)
            goto out;
        sent = v.seq;
    }
    if (step != SQLITE_DONE) {
        rc = sql_err(e, rdb, "reading versions");
        goto out;
    }
    if (sent != 0 && sent < *head) {
        /* A full batch: the site asks again from `sent`. */
        *more = 1;
        *head = sent;
        rc = SYNC_OK;
        sqlite3_finalize(st);
        st = NULL;
        if (sqlite3_prepare_v2(rdb, "SELECT tree_id FROM _empact_version WHERE seq = ?", -1, &st,
                               NULL) != SQLITE_OK ||
            (sqlite3_bind_int64(st, 1, (sqlite3_int64)sent), sqlite3_step(st)) != SQLITE_ROW) {
            rc = sql_err(e, rdb, "reading versions");
            goto out;
        }
        rc = gitmap_oid_parse(head_tree, (const char *)sqlite3_column_text(st, 0), e);
    }
out:
    sqlite3_finalize(st);
    (void)sqlite3_exec(rdb, "COMMIT", NULL, NULL, NULL);
    return rc;
}

int hub_read_pem(char **out, const char *dir, const char *name, struct errctx *e)
{
    char path[4096];
    FILE *fp;
    long n;

    *out = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((fp = fopen(path, "re")) == NULL)
        return errctx_set(e, SYNC_EIO, "cannot open %s: %s", path, strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || n > PEM_MAX ||
        fseek(fp, 0, SEEK_SET) != 0 || (*out = calloc(1, (size_t)n + 1)) == NULL ||
        fread(*out, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        free(*out);
        *out = NULL;
        return errctx_set(e, SYNC_EIO, "cannot read %s (or it is over %d bytes)", path, PEM_MAX);
    }
    fclose(fp);
    return SYNC_OK;
}

/* ---- create and open --------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const char *text, mode_t mode,
                      struct errctx *e)
{
    char *path = path_join(dir, name);
    int fd, rc = SYNC_OK;
    size_t len = strlen(text);

    if (path == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)) < 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot create %s: %s", path, strerror(errno));
    } else {
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
            rc = errctx_set(e, SYNC_EIO, "cannot write %s: %s", path, strerror(errno));
        close(fd);
    }
    free(path);
    return rc;
}

static int pki_create(const char *dir, struct errctx *e)
{
    char *ca_cert = NULL, *ca_key = NULL, *cert = NULL, *key = NULL;
    int rc;

    if ((rc = pki_ca_new(&ca_cert, &ca_key, "EMPaCT Sync hub CA", e)) != SYNC_OK ||
        (rc = pki_issue(&cert, &key, ca_cert, ca_key, TLS_HUB_NAME, PKI_ROLE_HUB, CERT_DAYS, e)) !=
            SYNC_OK)
        goto out;
    if ((rc = write_file(dir, HUB_CA_KEY, ca_key, 0600, e)) != SYNC_OK ||
        (rc = write_file(dir, HUB_CA_CERT, ca_cert, 0644, e)) != SYNC_OK ||
        (rc = write_file(dir, HUB_KEY, key, 0600, e)) != SYNC_OK ||
        (rc = write_file(dir, HUB_CERT, cert, 0644, e)) != SYNC_OK)
        goto out;
out:
    pki_pem_free(ca_cert);
    pki_pem_free(ca_key);
    pki_pem_free(cert);
    pki_pem_free(key);
    return rc;
}

static int schema_create(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    int rc = db_exec(db, hub_ddl, "hub database", e);
    if (rc == SYNC_OK)
        rc = merge_tables_create(db, s, e);
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++) {
        if (schema_class_replicated(s->tables[i].cls))
            rc = db_exec(db, s->tables[i].create_sql, "hub database", e);
    }
    if (rc == SYNC_OK) {
        char *sql = sqlite3_mprintf("PRAGMA user_version = 1; CREATE TABLE _empact_hub_meta "
                                    "(key TEXT PRIMARY KEY, value TEXT);"
                                    "INSERT INTO _empact_hub_meta VALUES ('schema', %Q);",
                                    s->fingerprint_hex);
        rc =
            sql ? db_exec(db, sql, "hub database", e) : errctx_set(e, SYNC_ENOMEM, "out of memory");
        sqlite3_free(sql);
    }
    return rc;
}

int hub_db_create(sqlite3 **out, const char *path, const struct schema *s, struct errctx *e)
{
    struct stat st;
    int rc;

    *out = NULL;
    if (stat(path, &st) == 0)
        return errctx_set(e, SYNC_EUSAGE, "%s exists; refusing to overwrite it", path);
    if (sqlite3_open_v2(path, out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        rc = errctx_set(e, SYNC_EIO, "cannot create %s: %s", path,
                        *out ? sqlite3_errmsg(*out) : "out of memory");
    } else if ((rc = db_exec(*out, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
                             "hub database", e)) == SYNC_OK) {
        rc = schema_create(*out, s, e);
    }
    if (rc != SYNC_OK) {
        sqlite3_close(*out);
        *out = NULL;
    }
    return rc;
}

int hub_create(const char *dir, const struct schema *s, struct errctx *e)
{
    char *dbpath = path_join(dir, HUB_DB), *gitpath = path_join(dir, HUB_GIT);
    sqlite3 *db = NULL;
    struct hub *h = NULL;
    struct stat st;
    int rc;

    if (dbpath == NULL || gitpath == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        rc = errctx_set(e, SYNC_EIO, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    if (stat(dbpath, &st) == 0 || stat(gitpath, &st) == 0) {
        rc = errctx_set(e, SYNC_EUSAGE, "%s already holds a hub; refusing to overwrite it", dir);
        goto out;
    }
    if ((rc = pki_create(dir, e)) != SYNC_OK || (rc = gitmap_init(gitpath, e)) != SYNC_OK ||
        (rc = db_open(&db, dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, e)) != SYNC_OK ||
        (rc = schema_create(db, s, e)) != SYNC_OK)
        goto out;
    sqlite3_close(db);
    db = NULL;
    if ((rc = hub_open(&h, dir, s, e)) != SYNC_OK)
        goto out;
    rc = commit_sql(h, seed_sql, "hub: seed the metric catalogue", e);
out:
    hub_close(h);
    sqlite3_close(db);
    free(dbpath);
    free(gitpath);
    return rc;
}

/* Refuses a hub.db made for another schema. */
static int schema_check(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT value FROM _empact_hub_meta WHERE key = 'schema'", -1, &st,
                           NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EDATA, "hub.db is not an EMPaCT hub database");
    if (sqlite3_step(st) != SQLITE_ROW)
        rc = errctx_set(e, SYNC_EDATA, "hub.db has no schema fingerprint");
    else if (strcmp((const char *)sqlite3_column_text(st, 0), s->fingerprint_hex) != 0)
        rc = errctx_set(e, SYNC_ESCHEMA,
                        "hub.db was made for schema %.12s but this binary has schema %.12s",
                        (const char *)sqlite3_column_text(st, 0), s->fingerprint_hex);
    else
        rc = SYNC_OK;
    sqlite3_finalize(st);
    return rc;
}

/* Adds column col (with its type, e.g. "version INTEGER") to table unless
 * the table has it: hub.db files made by an older release gain it. */
static int column_add(sqlite3 *db, const char *table, const char *col, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    size_t namelen = strcspn(col, " ");
    int has, rc;

    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2", -1,
                           &st, NULL) != SQLITE_OK)
        return sql_err(e, db, "reading the site tables");
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, col, (int)namelen, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return sql_err(e, db, "reading the site tables");
    }
    has = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (has)
        return SYNC_OK;
    rc = db_exec_free(db, sqlite3_mprintf("ALTER TABLE \"%w\" ADD COLUMN %s", table, col),
                      "hub database", e);
    return rc;
}

/* Brings the site tables of a hub.db made by an older release up to date
 * (see the file header); inside the caller's write transaction. */
static int site_tables_upgrade(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    int rc;

    if ((rc = column_add(db, "_empact_site_cert", "not_after TEXT", e)) != SYNC_OK ||
        (rc = column_add(db, "_empact_site_cert", "address TEXT", e)) != SYNC_OK ||
        (rc = db_exec(db, SITE_SEEN_DDL REFUSAL_DDL DICT_DDL, "hub database", e)) != SYNC_OK ||
        (rc = column_add(db, "_empact_site_seen", "version INTEGER", e)) != SYNC_OK)
        return rc;
    /* the guard on counts of people, for a schema that has them */
    if (schema_find(s, "metric") == NULL || schema_find(s, "metric_value") == NULL)
        return SYNC_OK;
    return db_exec(db, PEOPLE_GUARD_DDL, "hub database", e);
}

/* History written in layout 1 (one shard level, before this release) moves
 * to the gitmap's layout with one version of the hub's own: every row, the
 * new tree, an empty changeset.  Sites follow at their next sync: the
 * version changes no row, and their proof of it hashes every row once. */
static int layout_upgrade(struct hub *h, struct errctx *e)
{
    uint8_t commit[20], tree[20];
    uint64_t seq = 0;
    int found, layout, rc;
    static const uint8_t none[1];

    if ((rc = hub_head_ids(h->db, &seq, commit, tree, &found, e)) != SYNC_OK || !found ||
        (rc = gitmap_tree_layout(&layout, h->git, tree, e)) != SYNC_OK)
        return rc;
    if (layout == 0 || layout == gitmap_layout(h->git))
        return SYNC_OK;
    /* the same rows: their blobs are in history.git already */
    gitmap_set_keep_blobs(h->git, 0);
    rc = version_commit(h, HUB_AUTHOR, NULL, none, 0,
                        "relayout: every row moves to <table>/<ab>/<cd>/<row>", 1, &seq, e);
    gitmap_set_keep_blobs(h->git, 1);
    if (rc != SYNC_OK)
        return rc;
    fprintf(stderr,
            "hub: history.git moved to the two-level shard layout in version %llu (the same "
            "rows; sites follow at their next sync)\n",
            (unsigned long long)seq);
    return SYNC_OK;
}

int hub_open(struct hub **out, const char *dir, const struct schema *s, struct errctx *e)
{
    struct hub *h;
    char *gitpath = NULL, *dbpath = NULL;
    struct stat st;
    int rc;

    *out = NULL;
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->qlock, NULL);
    pthread_cond_init(&h->qcond, NULL);
    pthread_mutex_init(&h->fold_mu, NULL);
    pthread_cond_init(&h->fold_cv, NULL);
    h->qtail = &h->qhead;
    h->schema = s;
    h->pack_every = testpoint_limit("EMPACT_PACK_EVERY", HUB_PACK_EVERY);
    h->batch_wait_ms = testpoint_limit("EMPACT_BATCH_WAIT_MS", 0);
    if ((h->dir = strdup(dir)) == NULL || (gitpath = path_join(dir, HUB_GIT)) == NULL ||
        (dbpath = path_join(dir, HUB_DB)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if (stat(dbpath, &st) != 0) {
        rc = errctx_set(e, SYNC_EIO, "%s is not a hub directory (no %s); run empact-hub init", dir,
                        HUB_DB);
        goto out;
    }
    if ((rc = db_open(&h->db, dir, SQLITE_OPEN_READWRITE, e)) != SYNC_OK)
        goto out;
    stmtcache_init(&h->sc, h->db);
    if ((rc = schema_check(h->db, s, e)) != SYNC_OK ||
        (rc = gitmap_open(&h->git, gitpath, e)) != SYNC_OK)
        goto out;
    gitmap_use_stmtcache(h->git, &h->sc);
    pthread_mutex_lock(&h->lock);
    if ((rc = begin(h, e)) == SYNC_OK) {
        rc = site_tables_upgrade(h->db, s, e);
        if (rc == SYNC_OK)
            rc = layout_upgrade(h, e);
        rc = finish(h, rc, e);
    }
    pthread_mutex_unlock(&h->lock);
out:
    free(gitpath);
    free(dbpath);
    if (rc != SYNC_OK) {
        hub_close(h);
        return rc;
    }
    *out = h;
    return SYNC_OK;
}

void hub_close(struct hub *h)
{
    if (h == NULL)
        return;
    if (h->fold_started) { /* a fold under way is finished first */
        pthread_mutex_lock(&h->fold_mu);
        h->fold_stop = 1;
        pthread_cond_signal(&h->fold_cv);
        pthread_mutex_unlock(&h->fold_mu);
        pthread_join(h->fold_th, NULL);
    }
    gitmap_free(h->git);
    stmtcache_free(&h->sc); /* zeroed (nothing held) when db never opened */
    sqlite3_close(h->db);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->qlock);
    pthread_cond_destroy(&h->qcond);
    pthread_mutex_destroy(&h->fold_mu);
    pthread_cond_destroy(&h->fold_cv);
    free(h->dir);
    free(h);
}

int hub_conflicts(sqlite3 *rdb, const char *site, uint64_t since,
                  int (*fn)(void *arg, const struct hub_conflict *c), void *arg, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc = SYNC_OK, step;

    if (sqlite3_prepare_v2(rdb,
                           "SELECT id, version, tbl, row_key, col, kind, winner_site, lost_value, "
                           "kept_value, lost_at, won_at FROM _empact_conflict "
                           "WHERE loser_site = ? AND id > ? ORDER BY id LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return sql_err(e, rdb, "reading the conflict log");
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)since);
    sqlite3_bind_int(st, 3, PULL_BATCH_MAX);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct hub_conflict c;
        c.id = (uint64_t)sqlite3_column_int64(st, 0);
        c.version = (uint64_t)sqlite3_column_int64(st, 1);
        c.table = (const char *)sqlite3_column_text(st, 2);
        c.key = (const char *)sqlite3_column_text(st, 3);
        c.column = (const char *)sqlite3_column_text(st, 4);
        c.kind = (const char *)sqlite3_column_text(st, 5);
        c.winner = (const char *)sqlite3_column_text(st, 6);
        c.lost = (const char *)sqlite3_column_text(st, 7);
        c.kept = (const char *)sqlite3_column_text(st, 8);
        c.lost_at = sqlite3_column_int64(st, 9);
        c.won_at = sqlite3_column_int64(st, 10);
        if ((rc = fn(arg, &c)) != SYNC_OK)
            break;
    }
    if (rc == SYNC_OK && step != SQLITE_DONE)
        rc = sql_err(e, rdb, "reading the conflict log");
    sqlite3_finalize(st);
    return rc;
}
