/*
 * tabular.h - query results as data: a JSON array of objects (one per row,
 * keyed by column name, SQLite types kept) or an aligned text table.  Used
 * by every command that lists data, so --json and the text form always hold
 * the same rows.
 */
#ifndef EMPACT_TABULAR_H
#define EMPACT_TABULAR_H

#include <stdio.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "errctx.h"

/* Steps st (prepared and bound by the caller, not finalized) to the end and
 * returns its rows as a new cJSON array, or NULL with e set. */
cJSON *tabular_rows(sqlite3_stmt *st, struct errctx *e);

/* Prints rows (from tabular_rows) under a header of st's column names, each
 * column as wide as its widest cell; NULL prints as "-".  With no rows,
 * prints empty_note (when not NULL) instead. */
void tabular_print(FILE *out, sqlite3_stmt *st, const cJSON *rows, const char *empty_note);

/* The whole of a list command: rows of st as JSON (json != 0) or text. */
int tabular_query(FILE *out, sqlite3_stmt *st, int json, const char *empty_note,
                  struct errctx *e) SYNC_WUR;

#endif
