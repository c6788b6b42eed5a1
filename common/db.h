/*
 * db.h - small helpers over SQLite shared by hub and site code.
 */
#ifndef EMPACT_DB_H
#define EMPACT_DB_H

#include <sqlite3.h>
#include <stdint.h>

#include "errctx.h"

/* Call first in main(), before any other SQLite call: turns off SQLite's
 * memory statistics, whose global mutex every allocation of every thread
 * takes (the hub's connection threads, the load tool's sites), and
 * initializes the library. */
void db_global_init(void);

/* Runs sql (one or more statements).  On failure SYNC_EIO with the sentence
 * "<what>: <SQLite's message>". */
int db_exec(sqlite3 *db, const char *sql, const char *what, struct errctx *e) SYNC_WUR;

/* As db_exec, then sqlite3_free(sql); a NULL sql (an sqlite3_mprintf() that
 * ran out of memory) gives SYNC_ENOMEM. */
int db_exec_free(sqlite3 *db, char *sql, const char *what, struct errctx *e) SYNC_WUR;

/*
 * A cache of prepared statements on one connection, for one piece of work
 * (the changes of one push, the chunks of one apply) or for the life of the
 * connection (the hub's writer): a statement whose SQL text was prepared
 * before is reset and handed out again instead of being parsed and planned
 * once per row.  When all STMTCACHE_MAX entries are taken, the least
 * recently used one not handed out makes room (texts that vary with the
 * data, such as an UPDATE of the columns a change names, cannot crowd out
 * the rest for good).  stmtcache_prepare() returns SQLite's code (the
 * message is sqlite3_errmsg(c->db)); stmtcache_release() resets a statement
 * and clears its bindings for the next use (a statement it does not hold,
 * when every entry was handed out, is finalized), and takes NULL.  A
 * statement handed out is not handed out again before it is released.
 * stmtcache_free() finalizes everything: call it before the work ends.
 */
#define STMTCACHE_MAX 64

struct stmtcache {
    sqlite3 *db;
    int n;
    uint64_t tick; /* uses so far: an entry's used is the tick of its last use */
    struct {
        char *sql;
        sqlite3_stmt *st;
        int busy;
        uint64_t used;
    } e[STMTCACHE_MAX];
};

void stmtcache_init(struct stmtcache *c, sqlite3 *db);
int stmtcache_prepare(struct stmtcache *c, const char *sql, sqlite3_stmt **st) SYNC_WUR;
void stmtcache_release(struct stmtcache *c, sqlite3_stmt *st);
void stmtcache_free(struct stmtcache *c);

#endif
