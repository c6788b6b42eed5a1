/*
 * db.c - SQLite helpers: statement runners whose failures become sentences.
 */
#include "db.h"

#include <stddef.h>

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
