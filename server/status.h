/*
 * status.h - `empact-hub status`: per site, the last successful sync, how far
 * behind the hub's head it is, and its pushes, conflicts and refusals in the
 * last 24 hours; sites silent for too long are flagged stale.
 */
#ifndef EMPACT_STATUS_H
#define EMPACT_STATUS_H

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "errctx.h"

/* Exit status of `empact-hub status` when a site is stale.  1, apart from
 * the sysexits codes (64..77) that mean the command itself failed, so a
 * monitoring check can tell "a site is behind" from "could not look". */
#define EXIT_STALE 1

/* The window of the per-site counts, in seconds. */
#define STATUS_WINDOW_SECONDS 86400

/*
 * Builds the status of every enrolled site from hub.db (rdb borrowed; one
 * read snapshot) as of now (seconds UTC): an object
 *   {"head_version", "generated_at", "stale_hours", "stale_sites", "sites": [
 *     {"site_id", "name", "revoked", "last_sync", "hours_since_sync",
 *      "synced_version", "lag", "pushes_24h", "conflicts_24h", "refusals_24h",
 *      "stale"}, ...]}
 * A site is stale when it is not revoked and its last successful sync is
 * older than stale_hours or it never synced.  *nstale = number of stale
 * sites.  Returns NULL with e set on failure; caller frees with cJSON_Delete.
 */
cJSON *status_build(sqlite3 *rdb, long long now, int stale_hours, int *nstale, struct errctx *e);

/* 1 if a site last synced at synced_at (< 0: never) is stale at now. */
int status_is_stale(long long synced_at, long long now, int stale_hours);

/* Prints the status object as a table on stdout. */
void status_print(const cJSON *st);

#endif
