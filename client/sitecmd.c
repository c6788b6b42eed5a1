/*
 * sitecmd.c - helpers of the site's data commands (sitecmd.h).
 */
#include "sitecmd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "db.h"
#include "replica.h"
#include "tabular.h"

int sc_fail(int rc, const struct errctx *e)
{
    fprintf(stderr, "empact: %s\n", e->msg[0] ? e->msg : errctx_code_name(rc));
    return cli_exit_code(rc);
}

int sc_bad(const char *fmt, ...)
{
    va_list ap;
    fputs("empact: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_DATA;
}

int sc_index_of(const char *const *list, const char *v)
{
    for (int i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], v) == 0)
            return i;
    return -1;
}

int sc_parse_id(const char *text, sqlite3_int64 *id)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v <= 0)
        return -1;
    *id = v;
    return 0;
}

/* A statement with its parameters bound from a type string: 'i' for a
 * sqlite3_int64, 't' for a string (NULL binds NULL). */
sqlite3_stmt *sc_prepare(sqlite3 *db, struct errctx *e, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(db));
        return NULL;
    }
    va_start(ap, types);
    for (int i = 0; types[i]; i++) {
        if (types[i] == 'i') {
            sqlite3_bind_int64(st, i + 1, va_arg(ap, sqlite3_int64));
        } else if (types[i] == 'd') {
            sqlite3_bind_double(st, i + 1, va_arg(ap, double));
        } else {
            const char *t = va_arg(ap, const char *);
            if (t != NULL)
                sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    return st;
}

/* Runs a statement that returns nothing. */
int sc_run(sqlite3_stmt *st, struct errctx *e)
{
    int rc = st == NULL ? e->code
             : sqlite3_step(st) == SQLITE_DONE
                 ? SYNC_OK
                 : errctx_set(e, SYNC_EIO, "replica: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
    sqlite3_finalize(st);
    return rc;
}

/* The first column of the statement's first row as text into out (empty for
 * no row or NULL); returns 1 if there was a row. */
int sc_first_text(sqlite3_stmt *st, char *out, size_t size)
{
    int row = st != NULL && sqlite3_step(st) == SQLITE_ROW;
    const unsigned char *t = row ? sqlite3_column_text(st, 0) : NULL;
    snprintf(out, size, "%s", t ? (const char *)t : "");
    sqlite3_finalize(st);
    return row;
}

/* Checks a YYYY-MM-DD calendar date (what names the option), or writes
 * today's local date into out when text is NULL. */
int sc_date_arg(sqlite3 *db, const char *what, const char *text, char out[11])
{
    char got[32];
    struct errctx e = {0, ""};

    if (text == NULL) {
        sc_first_text(sc_prepare(db, &e, "SELECT date('now', 'localtime')", ""), out, 11);
        return 0;
    }
    sc_first_text(sc_prepare(db, &e, "SELECT ?1 WHERE date(julianday(?1)) IS ?1", "t", text), got,
                  sizeof(got));
    if (got[0] == '\0')
        return sc_bad("%s '%s' is not a date: write it as YYYY-MM-DD", what, text), -1;
    memcpy(out, got, 10); /* length 10, checked by the query */
    out[10] = '\0';
    return 0;
}

int sc_site(struct sc_ctx *c, const char *path)
{
    struct errctx e = {0, ""};
    int rc = replica_open(&c->db, path, c->s, &e);
    if (rc != SYNC_OK)
        return sc_fail(rc, &e);
    sqlite3_exec(c->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
    return -1;
}

/* Checks that table holds a row with this id; what names it in the error. */
int sc_need_row(sqlite3 *db, const char *table, const char *what, const char *text,
                sqlite3_int64 *id)
{
    char sql[96], got[8];
    struct errctx e = {0, ""};

    if (sc_parse_id(text, id) != 0)
        return sc_bad("%s '%s' is not an id (a positive whole number)", what, text), -1;
    snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE id = ?1", table);
    if (!sc_first_text(sc_prepare(db, &e, sql, "i", *id), got, sizeof(got)))
        return sc_bad("there is no %s %lld in this replica", what, (long long)*id), -1;
    return 0;
}

/* Runs the statements of one command in a transaction. */
int sc_begin(sqlite3 *db, struct errctx *e)
{
    return db_exec(db, "BEGIN IMMEDIATE", "replica", e);
}

int sc_end(sqlite3 *db, int rc, struct errctx *e)
{
    if (rc == SYNC_OK)
        return db_exec(db, "COMMIT", "replica", e);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int sc_print_query(sqlite3_stmt *st, int json, const char *empty, struct errctx *e)
{
    int rc = st ? tabular_query(stdout, st, json, empty, e) : e->code;
    sqlite3_finalize(st);
    return rc;
}

int sc_dispatch(int argc, char **argv, const struct schema *s, const struct sc_command *cmds,
                size_t n, const char *usage)
{
    struct sc_ctx c = {s, NULL};
    char why[128];
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if ((cmds[i].group != NULL && strcmp(cmds[i].group, argv[0]) != 0) ||
            strcmp(cmds[i].name, argv[1]) != 0)
            continue;
        rc = cmds[i].run(argc - 1, argv + 1, &c);
        replica_close(c.db);
        return rc;
    }
    snprintf(why, sizeof(why), "unknown command '%s %s'", argv[0], argv[1]);
    return cli_usage_error("empact", usage, why);
}
