/*
 * db.c - SQLite helpers: statement runners whose failures become sentences.
 */
#include "db.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void db_global_init(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* SQLITE_MISUSE if too late: harmless */
    (void)sqlite3_initialize();
}

int db_exec(sqlite3 *db, const char *sql, const char *what, struct errctx *e)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        int rc = errctx_set(e, SYNC_EIO, "%s: %s", what, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return rc;
    }
    return SYNC_OK;
}

int db_exec_free(sqlite3 *db, char *sql, const char *what, struct errctx *e)
{
    int rc;

    if (sql == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    rc = db_exec(db, sql, what, e);
    sqlite3_free(sql);
    return rc;
}

void stmtcache_init(struct stmtcache *c, sqlite3 *db)
{
    memset(c, 0, sizeof(*c));
    c->db = db;
}

int stmtcache_prepare(struct stmtcache *c, const char *sql, sqlite3_stmt **st)
{
    int rc;

    int slot = -1;
    char *copy;

    *st = NULL;
    c->tick++;
    for (int i = 0; i < c->n; i++) {
        if (!c->e[i].busy && strcmp(c->e[i].sql, sql) == 0) {
            c->e[i].busy = 1;
            c->e[i].used = c->tick;
            *st = c->e[i].st;
            return SQLITE_OK;
        }
    }
    if ((rc = sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL)) != SQLITE_OK)
        return rc;
    if (c->n < STMTCACHE_MAX) {
        slot = c->n;
    } else { /* full: the least recently used entry not handed out, if any */
        for (int i = 0; i < c->n; i++)
            if (!c->e[i].busy && (slot < 0 || c->e[i].used < c->e[slot].used))
                slot = i;
    }
    if (slot < 0 || (copy = strdup(sql)) == NULL)
        return SQLITE_OK; /* not kept: finalized when released */
    if (slot < c->n) {
        sqlite3_finalize(c->e[slot].st);
        free(c->e[slot].sql);
    } else {
        c->n++;
    }
    c->e[slot].sql = copy;
    c->e[slot].st = *st;
    c->e[slot].busy = 1;
    c->e[slot].used = c->tick;
    return SQLITE_OK;
}

void stmtcache_release(struct stmtcache *c, sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < c->n; i++) {
        if (c->e[i].st == st) {
            (void)sqlite3_reset(st);
            (void)sqlite3_clear_bindings(st);
            c->e[i].busy = 0;
            return;
        }
    }
    sqlite3_finalize(st);
}

void stmtcache_free(struct stmtcache *c)
{
    for (int i = 0; i < c->n; i++) {
        sqlite3_finalize(c->e[i].st);
        free(c->e[i].sql);
    }
    c->n = 0;
}
