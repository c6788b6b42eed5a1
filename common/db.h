/*
 * db.h - small helpers over SQLite shared by hub and site code.
 */
#ifndef EMPACT_DB_H
#define EMPACT_DB_H

#include <sqlite3.h>

#include "errctx.h"

/* Runs sql (one or more statements).  On failure SYNC_EIO with the sentence
 * "<what>: <SQLite's message>". */
int db_exec(sqlite3 *db, const char *sql, const char *what, struct errctx *e) SYNC_WUR;

/* As db_exec, then sqlite3_free(sql); a NULL sql (an sqlite3_mprintf() that
 * ran out of memory) gives SYNC_ENOMEM. */
int db_exec_free(sqlite3 *db, char *sql, const char *what, struct errctx *e) SYNC_WUR;

#endif
