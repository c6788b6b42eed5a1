/*
 * metrics.h - the site's aggregated impact metrics (`empact metrics ...`):
 * derived from the confidential local tables into the site's own
 * metric_value rows, the only thing about HEA work that leaves the site.
 */
#ifndef EMPACT_METRICS_H
#define EMPACT_METRICS_H

#include "schema.h"

#include "limits.h" /* PEOPLE_ROUND_BASE */

/* Runs `empact metrics ...`; argv[0] is "metrics".  Returns the exit status. */
int metrics_main(int argc, char **argv, const struct schema *s);

/* The published form of an exact count v for a metric with threshold t
 * (t <= 0: no protection): *suppressed set when 0 < v < t, else the value to
 * publish (v itself, or v rounded half up to PEOPLE_ROUND_BASE when t > 0). */
double metrics_publish(double v, long long t, int *suppressed);

/* Parses "YYYY" or "YYYY-Qn" into its first and last dates (YYYY-MM-DD). */
int metrics_period(const char *p, char start[11], char end[11]);

#endif
