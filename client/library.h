/*
 * library.h - the shared resource library at a site (`empact resource ...`):
 * add, edit, list and search resources offline (SQLite FTS5 over title and
 * summary), import and export CSV.  Resources are shared: the next sync
 * sends every change to the hub.
 */
#ifndef EMPACT_LIBRARY_H
#define EMPACT_LIBRARY_H

#include <sqlite3.h>

#include "errctx.h"
#include "schema.h"

/* Runs `empact resource ...`; argv[0] is "resource".  Returns the exit
 * status. */
int library_main(int argc, char **argv, const struct schema *s);

/* Creates the site's full-text index of resource (_empact_fts_resource and
 * the triggers that keep it current) if the replica does not have it yet. */
int library_fts_ensure(sqlite3 *db, struct errctx *e) SYNC_WUR;

#endif
