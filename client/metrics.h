/*
 * metrics.h - the site's aggregated impact metrics (`empact metrics ...`):
 * derived from the confidential local tables into the site's own
 * metric_value rows, the only thing about HEA work that leaves the site.
 */
#ifndef EMPACT_METRICS_H
#define EMPACT_METRICS_H

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "errctx.h"
#include "schema.h"

#include "limits.h" /* PEOPLE_ROUND_BASE */

/* Runs `empact metrics ...`; argv[0] is "metrics".  Returns the exit status. */
int metrics_main(int argc, char **argv, const struct schema *s);

/* The published form of an exact value v of a metric with threshold t
 * (t <= 0: not a count of people) for a quarter or, when year, a whole
 * year: *suppressed set when 0 < v < t, or for any count of people over a
 * year; else the value to publish (v itself, or for people v rounded half
 * up to PEOPLE_ROUND_BASE). */
double metrics_publish(double v, long long t, int year, int *suppressed);

/* Computes every metric of db's catalogue for period ("YYYY" or
 * "YYYY-Qn") from the local tables and writes site's metric_value rows
 * (inside the caller's transaction); appends one object per metric to out
 * (metric, exact, published, suppressed, threshold). */
int metrics_compute(sqlite3 *db, const char *site, const char *period, cJSON *out,
                    struct errctx *e) SYNC_WUR;

/* Parses "YYYY" or "YYYY-Qn" into its first and last dates (YYYY-MM-DD). */
int metrics_period(const char *p, char start[11], char end[11]);

#endif
