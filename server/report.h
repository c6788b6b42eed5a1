/*
 * report.h - the central team's cross-site impact report (`empact-hub
 * report`): every site's published metric values per period, totals across
 * sites (a suppressed cell stays suppressed and is never filled in), each
 * site's last sync (so a stale site shows), and the resource library's
 * growth by site.  One data model, rendered as text, CSV, JSON or one
 * self-contained HTML file with inline SVG charts.
 */
#ifndef EMPACT_REPORT_H
#define EMPACT_REPORT_H

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "errctx.h"

struct report_opts {
    const char *from, *to; /* periods (YYYY or YYYY-Qn), NULL: open */
    int stale_days;        /* a site not synced for longer is flagged */
    long long now;         /* seconds since the epoch, for "days since" */
};

/* Builds the report's data from hub.db (a read connection) as a cJSON
 * object (see README.md, "The impact report"); NULL with e set on error. */
cJSON *report_build(sqlite3 *db, const struct report_opts *o, struct errctx *e);

/* Renders the data as "text", "csv", "json" or "html" into a new string
 * (sqlite3_free it); NULL with e set. */
char *report_render(const cJSON *r, const char *format, struct errctx *e);

/* Checks a period bound: "YYYY" or "YYYY-Qn". */
int report_period_ok(const char *p);

#endif
