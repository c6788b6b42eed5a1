/*
 * sitecmd.h - what the site's data commands (hea.c, metrics.c, library.c)
 * share: opening the replica once the command line is known good, binding
 * and running statements, checking ids and dates, and uniform errors
 * ("empact: ..." on stderr, the exit status of cli.h).
 */
#ifndef EMPACT_SITECMD_H
#define EMPACT_SITECMD_H

#include <stddef.h>

#include <sqlite3.h>

#include "errctx.h"
#include "schema.h"

/* A data command's context: the schema, and the replica once opened. */
struct sc_ctx {
    const struct schema *s;
    sqlite3 *db;
};

/* Prints e's sentence; returns the exit status for rc. */
int sc_fail(int rc, const struct errctx *e);

/* Prints "empact: <message>"; returns EXIT_DATA (bad input). */
int sc_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The index of v in a NULL-terminated list, or -1. */
int sc_index_of(const char *const *list, const char *v);

/* A positive decimal id; -1 for anything else. */
int sc_parse_id(const char *text, sqlite3_int64 *id);

/* Prepares sql and binds its parameters from types: 'i' a sqlite3_int64,
 * 'd' a double, 't' a string (NULL binds NULL).  NULL with e set on error. */
sqlite3_stmt *sc_prepare(sqlite3 *db, struct errctx *e, const char *sql, const char *types, ...);

/* Steps a statement that returns no rows, then finalizes it (NULL: e holds
 * the error of sc_prepare). */
int sc_run(sqlite3_stmt *st, struct errctx *e);

/* The first column of the first row as text into out ("" for none or
 * NULL), then finalizes; returns 1 if there was a row. */
int sc_first_text(sqlite3_stmt *st, char *out, size_t size);

/* Checks text is a YYYY-MM-DD calendar date (what names the option in the
 * error), or, for NULL, writes today's local date; 0 on success. */
int sc_date_arg(sqlite3 *db, const char *what, const char *text, char out[11]);

/* Opens the replica at path into c->db: -1 when open, else the exit status
 * (the error printed). */
int sc_site(struct sc_ctx *c, const char *path);

/* Checks text is the id of a row of table (what names it); 0 on success. */
int sc_need_row(sqlite3 *db, const char *table, const char *what, const char *text,
                sqlite3_int64 *id);

/* BEGIN IMMEDIATE; and the matching COMMIT (rc == SYNC_OK) or ROLLBACK. */
int sc_begin(sqlite3 *db, struct errctx *e);
int sc_end(sqlite3 *db, int rc, struct errctx *e);

/* One subcommand of a group ("hea add", "resource search", ...); group NULL
 * matches any group. */
struct sc_command {
    const char *group, *name;
    int (*run)(int argc, char **argv, struct sc_ctx *c);
};

/* Runs the command argv[0] argv[1] (group and name) from cmds; usage goes
 * to stdout for --help, to stderr when the command is missing or unknown.
 * Closes the replica the command opened.  Returns the exit status. */
int sc_dispatch(int argc, char **argv, const struct schema *s, const struct sc_command *cmds,
                size_t n, const char *usage);

/* Prints st's rows as JSON or a table (tabular.h), then finalizes it. */
int sc_print_query(sqlite3_stmt *st, int json, const char *empty, struct errctx *e);

#endif
