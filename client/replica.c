/*
 * replica.c - creating and opening a site's replica (layout in replica.h).
 *
 * Triggers make "any SQLite tool may edit" true: an insert, update or delete
 * on a shared or owned table records the affected primary keys (old and new)
 * in _empact_dirty_T, so the next sync sees edits made with the sqlite3 shell
 * exactly like edits made by our own commands.  Owned tables refuse rows of
 * another site; hub tables refuse every edit; sync itself writes while
 * _empact_syncing holds a row, and the triggers stand aside.
 */
#include "replica.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "changeset.h"
#include "db.h"
#include "gitmap.h"

static const char meta_ddl[] =
    "CREATE TABLE _empact_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE _empact_syncing (x INTEGER);"
    "CREATE TABLE _empact_conflict (id INTEGER PRIMARY KEY, version INTEGER NOT NULL,"
    " tbl TEXT NOT NULL, row_key TEXT NOT NULL, col TEXT NOT NULL, kind TEXT NOT NULL,"
    " winner_site TEXT NOT NULL, lost_value TEXT NOT NULL, kept_value TEXT NOT NULL,"
    " lost_at INTEGER NOT NULL, won_at INTEGER NOT NULL, received_at TEXT NOT NULL);"
    "CREATE TABLE _empact_outbox (one INTEGER PRIMARY KEY CHECK (one = 1),"
    " push_id BLOB NOT NULL, base INTEGER NOT NULL, changeset BLOB NOT NULL,"
    " times BLOB NOT NULL);" GITMAP_STORE_DDL;

/* Milliseconds since the Unix epoch, in SQL. */
#define EDIT_NOW_SQL "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)"

/* A key already dirty keeps its row and takes the newer edit time. */
#define ON_DIRTY                                                                                   \
    " ON CONFLICT DO UPDATE SET " EDITED_AT_COL " = max(" EDITED_AT_COL                            \
    ", excluded." EDITED_AT_COL ")"

/* "NEW."k1", NEW."k2"" for the key columns; sqlite3_free it. */
static char *key_values(const struct schema_table *t, const char *which)
{
    return schema_sql_cols(t, SCHEMA_COLS_PK, which);
}

static int dirty_triggers(sqlite3 *db, const struct schema_table *t, struct errctx *e)
{
    char *keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL);
    char *nk = key_values(t, "NEW"), *ok = key_values(t, "OLD");
    int rc;

    if (keys == NULL || nk == NULL || ok == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    /* Each firing stamps the key with the edit time (ms since the epoch): the
     * hub orders concurrent edits of a column by it. */
    rc = db_exec_free(
        db,
        sqlite3_mprintf(
            "CREATE TABLE \"" DIRTY_PREFIX "%w\" (%s, " EDITED_AT_COL " INTEGER NOT NULL,"
            " PRIMARY KEY (%s)) WITHOUT ROWID;"
            "CREATE TRIGGER \"_empact_%w_ins\" AFTER INSERT ON \"%w\" "
            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) BEGIN"
            " INSERT INTO \"" DIRTY_PREFIX "%w\" VALUES (%s, " EDIT_NOW_SQL ")" ON_DIRTY "; END;"
            "CREATE TRIGGER \"_empact_%w_upd\" AFTER UPDATE ON \"%w\" "
            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) BEGIN"
            " INSERT INTO \"" DIRTY_PREFIX "%w\" VALUES (%s, " EDIT_NOW_SQL ")" ON_DIRTY ";"
            " INSERT INTO \"" DIRTY_PREFIX "%w\" VALUES (%s, " EDIT_NOW_SQL ")" ON_DIRTY "; END;"
            "CREATE TRIGGER \"_empact_%w_del\" AFTER DELETE ON \"%w\" "
            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) BEGIN"
            " INSERT INTO \"" DIRTY_PREFIX "%w\" VALUES (%s, " EDIT_NOW_SQL ")" ON_DIRTY "; END;",
            t->name, keys, keys, t->name, t->name, t->name, nk, t->name, t->name, t->name, ok,
            t->name, nk, t->name, t->name, t->name, ok),
        "replica", e);
out:
    sqlite3_free(keys);
    sqlite3_free(nk);
    sqlite3_free(ok);
    return rc;
}

/* _empact_insert_T (see changeset.h): added in replica format 3. */
static int inserted_table(sqlite3 *db, const struct schema_table *t, struct errctx *e)
{
    char *keys = schema_sql_cols(t, SCHEMA_COLS_PK, NULL);
    int rc = keys ? db_exec_free(db,
                                 sqlite3_mprintf("CREATE TABLE \"" INSERTED_PREFIX
                                                 "%w\" (%s, PRIMARY KEY (%s)) WITHOUT ROWID",
                                                 t->name, keys, keys),
                                 "replica", e)
                  : errctx_set(e, SYNC_ENOMEM, "out of memory");
    sqlite3_free(keys);
    return rc;
}

/* Owned tables: a site writes only rows whose site_id is its own. */
static int owner_triggers(sqlite3 *db, const struct schema_table *t, struct errctx *e)
{
    const char *col = t->cols[t->site_col].name;
    return db_exec_free(
        db,
        sqlite3_mprintf(
            "CREATE TRIGGER \"_empact_%w_own_ins\" BEFORE INSERT ON \"%w\" "
            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) AND NEW.\"%w\" IS NOT "
            " (SELECT value FROM _empact_meta WHERE key = 'site_id') BEGIN"
            " SELECT RAISE(ABORT, 'rows of %q belong to the site named in %q; this replica may "
            "write only its own site''s rows'); END;"
            "CREATE TRIGGER \"_empact_%w_own_upd\" BEFORE UPDATE ON \"%w\" "
            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) AND (OLD.\"%w\" IS NOT "
            " (SELECT value FROM _empact_meta WHERE key = 'site_id') OR NEW.\"%w\" IS NOT "
            " (SELECT value FROM _empact_meta WHERE key = 'site_id')) BEGIN"
            " SELECT RAISE(ABORT, 'rows of %q belong to the site named in %q; this replica may "
            "change only its own site''s rows'); END;"
            "CREATE TRIGGER \"_empact_%w_own_del\" BEFORE DELETE ON \"%w\" "
            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) AND OLD.\"%w\" IS NOT "
            " (SELECT value FROM _empact_meta WHERE key = 'site_id') BEGIN"
            " SELECT RAISE(ABORT, 'rows of %q belong to the site named in %q; this replica may "
            "delete only its own site''s rows'); END;",
            t->name, t->name, col, t->name, col, t->name, t->name, col, col, t->name, col, t->name,
            t->name, col, t->name, col),
        "replica", e);
}

/* Hub tables: kept by the central team; edits here would be overwritten. */
static int readonly_triggers(sqlite3 *db, const struct schema_table *t, struct errctx *e)
{
    static const char *const ops[] = {"INSERT", "UPDATE", "DELETE"};
    for (int i = 0; i < 3; i++) {
        int rc = db_exec_free(
            db,
            sqlite3_mprintf("CREATE TRIGGER \"_empact_%w_ro_%d\" BEFORE %s ON \"%w\" "
                            " WHEN NOT EXISTS (SELECT 1 FROM _empact_syncing) BEGIN"
                            " SELECT RAISE(ABORT, 'table %q is kept by the central team at the "
                            "hub and is read-only at sites'); END;",
                            t->name, i, ops[i], t->name, t->name),
            "replica", e);
        if (rc != SYNC_OK)
            return rc;
    }
    return SYNC_OK;
}

/* The base copy: the same columns and constraints under another name. */
/* A copy of T's columns and constraints under the name prefix||T. */
static int copy_table(sqlite3 *db, const struct schema_table *t, const char *prefix,
                      struct errctx *e)
{
    const char *cols = strchr(t->create_sql, '(');
    if (cols == NULL)
        return errctx_set(e, SYNC_ESCHEMA, "schema: cannot read the columns of %s", t->name);
    return db_exec_free(db, sqlite3_mprintf("CREATE TABLE \"%w%w\" %s", prefix, t->name, cols),
                        "replica", e);
}

static int schema_install(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    int rc = db_exec(db, meta_ddl, "replica", e);
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        rc = db_exec(db, t->create_sql, "replica", e);
        if (rc != SYNC_OK || !schema_class_replicated(t->cls))
            continue;
        if ((rc = copy_table(db, t, BASE_PREFIX, e)) != SYNC_OK)
            break;
        if (t->cls == CLASS_HUB)
            rc = readonly_triggers(db, t, e);
        else if ((rc = copy_table(db, t, SNAP_PREFIX, e)) == SYNC_OK &&
                 (rc = inserted_table(db, t, e)) == SYNC_OK &&
                 (rc = dirty_triggers(db, t, e)) == SYNC_OK && t->cls == CLASS_OWNED)
            rc = owner_triggers(db, t, e);
    }
    return rc;
}

int replica_meta_set(sqlite3 *db, const char *key, const char *value, struct errctx *e)
{
    return db_exec_free(db,
                        sqlite3_mprintf("INSERT INTO _empact_meta VALUES (%Q, %Q) "
                                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                        key, value),
                        "replica", e);
}

int replica_meta_get(char **out, sqlite3 *db, const char *key, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int rc;

    *out = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM _empact_meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return errctx_set(e, SYNC_EDATA, "not an EMPaCT replica (%s)", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        *out = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(st, 0));
        rc = *out ? SYNC_OK : errctx_set(e, SYNC_ENOMEM, "out of memory");
    } else {
        rc = errctx_set(e, SYNC_EDATA, "replica has no %s; it is damaged or not a replica", key);
    }
    sqlite3_finalize(st);
    return rc;
}

static int db_open(sqlite3 **out, const char *path, int flags, struct errctx *e)
{
    if (sqlite3_open_v2(path, out, flags, NULL) != SQLITE_OK) {
        int rc = errctx_set(e, SYNC_EIO, "cannot open %s: %s", path,
                            *out ? sqlite3_errmsg(*out) : "out of memory");
        sqlite3_close(*out);
        *out = NULL;
        return rc;
    }
    sqlite3_busy_timeout(*out, 5000);
    return SYNC_OK;
}

void replica_close(sqlite3 *db)
{
    sqlite3_close(db);
}

int replica_create(sqlite3 **out, const char *path, const struct schema *s, const struct bundle *b,
                   const char *hub_address, struct errctx *e)
{
    sqlite3 *db = NULL;
    int fd, rc;

    *out = NULL;
    /* Create the file ourselves so it is 0600 from the first byte: it will
     * hold confidential tables and the site's private key. */
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return errctx_set(e, errno == EEXIST ? SYNC_EUSAGE : SYNC_EIO, "cannot create %s: %s", path,
                          strerror(errno));
    close(fd);
    if ((rc = db_open(&db, path, SQLITE_OPEN_READWRITE, e)) != SYNC_OK)
        return rc;
    if ((rc = db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; BEGIN", "replica",
                      e)) ||
        (rc = schema_install(db, s, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "schema", s->fingerprint_hex, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "format", REPLICA_FORMAT, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "site_id", b->site_id, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "hub_address", hub_address ? hub_address : b->hub_address, e)) !=
            SYNC_OK ||
        (rc = replica_meta_set(db, "base_version", "0", e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "base_tree", "", e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "ca_cert", b->ca_cert, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "site_cert", b->site_cert, e)) != SYNC_OK ||
        (rc = replica_meta_set(db, "site_key", b->site_key, e)) != SYNC_OK ||
        (rc = db_exec(db, "COMMIT", "replica", e)) != SYNC_OK) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return SYNC_OK;
}

int replica_set_credentials(sqlite3 *db, const struct bundle *b, const char *hub_address,
                            struct errctx *e)
{
    int rc = db_exec(db, "BEGIN IMMEDIATE", "replica", e);

    if (rc != SYNC_OK)
        return rc;
    if ((rc = replica_meta_set(db, "site_cert", b->site_cert, e)) == SYNC_OK &&
        (rc = replica_meta_set(db, "site_key", b->site_key, e)) == SYNC_OK &&
        (rc = replica_meta_set(db, "hub_address", hub_address, e)) == SYNC_OK)
        rc = db_exec(db, "COMMIT", "replica", e);
    if (rc != SYNC_OK)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Format 2 -> 3: adds _empact_insert_T; nothing else changed. */
static int upgrade_from_2(sqlite3 *db, const struct schema *s, struct errctx *e)
{
    int rc = db_exec(db, "BEGIN IMMEDIATE", "replica", e);

    if (rc != SYNC_OK)
        return rc;
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++)
        if (s->tables[i].cls == CLASS_SHARED || s->tables[i].cls == CLASS_OWNED)
            rc = inserted_table(db, &s->tables[i], e);
    if (rc == SYNC_OK && (rc = replica_meta_set(db, "format", REPLICA_FORMAT, e)) == SYNC_OK)
        rc = db_exec(db, "COMMIT", "replica", e);
    if (rc != SYNC_OK)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* A replica made before the tree store gets an empty one: its next proof
 * hashes every row and fills it. */
static int tree_store_ensure(sqlite3 *db, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = "
                           "'" GITMAP_STORE_TABLE "'",
                           -1, &st, NULL) == SQLITE_OK)
        found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found ? SYNC_OK : db_exec(db, GITMAP_STORE_DDL, "replica", e);
}

int replica_base_hash(uint8_t got[20], enum replica_hash *how, sqlite3 *db, const struct schema *s,
                      const uint8_t *from, const uint8_t want[20], struct errctx *e)
{
    struct gitmap *g = NULL;
    uint8_t held[20];
    int found = 0, rc;

    if ((rc = gitmap_open_store(&g, db, e)) != SYNC_OK)
        return rc;
    if (from != NULL && (rc = gitmap_store_root(held, &found, g, e)) != SYNC_OK)
        goto out;
    if (found && memcmp(held, from, 20) == 0) {
        struct errctx ignored = {0, ""};
        *how = REPLICA_HASH_TOUCHED;
        /* a store that cannot answer is only a cache: hash every row instead */
        if (gitmap_tree_update(got, g, from, db, s, BASE_PREFIX, &ignored) == SYNC_OK &&
            memcmp(got, want, 20) == 0) {
            rc = gitmap_store_save(g, e);
            goto out;
        }
    }
    *how = REPLICA_HASH_FULL;
    if ((rc = gitmap_tree_full(got, g, db, s, BASE_PREFIX, e)) == SYNC_OK &&
        memcmp(got, want, 20) == 0)
        rc = gitmap_store_save(g, e);
out:
    gitmap_free(g);
    return rc;
}

int replica_verify(int *match, uint64_t *version, char got_hex[41], char want_hex[41], sqlite3 *db,
                   const struct schema *s, struct errctx *e)
{
    uint8_t want[20], got[20];
    enum replica_hash how;
    char *v = NULL;
    int rc;

    *match = 0;
    if ((rc = db_exec(db, "BEGIN IMMEDIATE", "replica", e)) != SYNC_OK)
        return rc;
    if ((rc = replica_meta_get(&v, db, "base_version", e)) != SYNC_OK)
        goto out;
    *version = strtoull(v, NULL, 10);
    sqlite3_free(v);
    v = NULL;
    if (replica_meta_get(&v, db, "base_tree", e) != SYNC_OK ||
        gitmap_oid_parse(want, v, e) != SYNC_OK) {
        rc = errctx_set(e, SYNC_EDATA,
                        "this replica holds no proved dataset hash yet; run 'empact sync'");
        goto out;
    }
    gitmap_oid_hex(want_hex, want);
    if ((rc = replica_base_hash(got, &how, db, s, NULL, want, e)) != SYNC_OK)
        goto out;
    gitmap_oid_hex(got_hex, got);
    *match = memcmp(got, want, 20) == 0;
    if (!*match &&
        ((rc = db_exec(db, "DELETE FROM " GITMAP_STORE_TABLE, "replica", e)) != SYNC_OK ||
         (rc = replica_meta_set(db, "base_tree", got_hex, e)) != SYNC_OK))
        goto out;
    rc = db_exec(db, "COMMIT", "replica", e);
out:
    sqlite3_free(v);
    if (rc != SYNC_OK)
        (void)sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int replica_open(sqlite3 **out, const char *path, const struct schema *s, struct errctx *e)
{
    sqlite3 *db = NULL;
    char *fp = NULL;
    int rc;

    *out = NULL;
    if (access(path, F_OK) != 0)
        return errctx_set(e, SYNC_EIO, "no replica at %s: %s (create one with 'empact join')", path,
                          strerror(errno));
    if ((rc = db_open(&db, path, SQLITE_OPEN_READWRITE, e)) != SYNC_OK)
        return rc;
    if ((rc = replica_meta_get(&fp, db, "schema", e)) != SYNC_OK) {
        rc = errctx_set(e, SYNC_EDATA, "%s is not an EMPaCT replica (or it is damaged)", path);
        goto out;
    }
    sqlite3_free(fp);
    fp = NULL;
    if ((rc = replica_meta_get(&fp, db, "format", e)) == SYNC_OK && strcmp(fp, "2") == 0) {
        sqlite3_free(fp);
        fp = NULL;
        if ((rc = upgrade_from_2(db, s, e)) != SYNC_OK)
            goto out;
        rc = replica_meta_get(&fp, db, "format", e);
    }
    if (rc != SYNC_OK || strcmp(fp, REPLICA_FORMAT) != 0) {
        rc = errctx_set(e, SYNC_EDATA,
                        "%s was made by an older version of empact; join the site again into a "
                        "new file",
                        path);
        goto out;
    }
    sqlite3_free(fp);
    fp = NULL;
    if ((rc = replica_meta_get(&fp, db, "schema", e)) != SYNC_OK)
        goto out;
    if (strcmp(fp, s->fingerprint_hex) != 0) {
        rc = errctx_set(e, SYNC_ESCHEMA,
                        "%s was made for schema %.12s but this client has schema %.12s", path, fp,
                        s->fingerprint_hex);
        goto out;
    }
    rc = tree_store_ensure(db, e);
out:
    sqlite3_free(fp);
    if (rc != SYNC_OK) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return SYNC_OK;
}

static void meta_copy(char *dst, size_t n, sqlite3 *db, const char *key)
{
    char *v = NULL;
    struct errctx ignored;
    if (replica_meta_get(&v, db, key, &ignored) == SYNC_OK)
        snprintf(dst, n, "%s", v);
    else
        dst[0] = '\0';
    sqlite3_free(v);
}

int replica_status(struct replica_status *st, sqlite3 *db, const struct schema *s, struct errctx *e)
{
    char version[32];
    int rc = SYNC_OK;

    memset(st, 0, sizeof(*st));
    meta_copy(st->site, sizeof(st->site), db, "site_id");
    meta_copy(st->hub, sizeof(st->hub), db, "hub_address");
    meta_copy(st->tree, sizeof(st->tree), db, "base_tree");
    meta_copy(st->last_sync, sizeof(st->last_sync), db, "last_sync");
    meta_copy(st->last_error, sizeof(st->last_error), db, "last_error");
    meta_copy(st->last_error_at, sizeof(st->last_error_at), db, "last_error_at");
    meta_copy(st->last_failure, sizeof(st->last_failure), db, "last_failure");
    meta_copy(st->hub_contact_at, sizeof(st->hub_contact_at), db, "hub_contact_at");
    meta_copy(version, sizeof(version), db, "hub_head");
    st->hub_head = strtoull(version, NULL, 10);
    meta_copy(version, sizeof(version), db, "base_version");
    st->version = strtoull(version, NULL, 10);
    {
        sqlite3_stmt *q = NULL;
        if (sqlite3_prepare_v2(db,
                               "SELECT count(*), count(*) FILTER (WHERE id > coalesce((SELECT "
                               "CAST(value AS INTEGER) FROM _empact_meta WHERE key = "
                               "'" REPLICA_CONFLICTS_READ "'), 0)) FROM _empact_conflict",
                               -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW) {
            st->conflicts = sqlite3_column_int64(q, 0);
            st->unread = sqlite3_column_int64(q, 1);
        }
        sqlite3_finalize(q);
    }
    for (int i = 0; rc == SYNC_OK && i < s->ntable; i++) {
        const struct schema_table *t = &s->tables[i];
        sqlite3_stmt *q = NULL;
        char *sql;

        if (t->cls != CLASS_SHARED && t->cls != CLASS_OWNED)
            continue;
        sql = sqlite3_mprintf("SELECT count(*) FROM \"" DIRTY_PREFIX "%w\"", t->name);
        if (sql == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW)
            rc = errctx_set(e, SYNC_EDATA, "replica: %s", sqlite3_errmsg(db));
        else
            st->pending += sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        sqlite3_free(sql);
    }
    return rc;
}
