/*
 * csvimport.h - reading resources from a CSV file (RFC 4180, parsed with
 * libcsv) into validated rows, without touching a database: the part of
 * `empact resource import` that sees outside bytes, fuzzed on its own
 * (tests/fuzz/fuzz_csv.c).
 *
 * The first record is a header naming columns of the resource table in any
 * order (title is required; unknown or repeated names are errors).  Each
 * later record becomes one row, or one or more errors naming the line the
 * record starts on, the column, and what is wrong.
 */
#ifndef EMPACT_CSVIMPORT_H
#define EMPACT_CSVIMPORT_H

#include <stddef.h>

/* The columns of resource an import may set, in table order. */
enum res_col {
    RES_ID,
    RES_TITLE,
    RES_URL,
    RES_SUMMARY,
    RES_KIND,
    RES_LANGUAGE,
    RES_PHM_COMPONENT,
    RES_OHT_BLOCK,
    RES_POPULATION_GROUP,
    RES_ADDED_BY_SITE,
    RES_UPDATED_AT,
    RES_NCOL
};

extern const char *const res_col_names[RES_NCOL + 1];
/* The values the schema's CHECK constraints allow (NULL-terminated). */
extern const char *const res_phm_components[];
extern const char *const res_population_groups[];

#define CSV_IMPORT_MAX_BYTES (64u << 20) /* a file */
#define CSV_IMPORT_MAX_ROWS 200000u
#define CSV_IMPORT_MAX_FIELD 65536u /* one value, in bytes */
#define CSV_IMPORT_MAX_ERRORS 100u  /* reported; the import fails on the first */

struct csv_row {
    long line;                   /* where the record starts (the header is line 1) */
    char *val[RES_NCOL];         /* NULL: column absent or empty */
    unsigned char has[RES_NCOL]; /* the column is in the file (empty clears it) */
};

struct csv_import {
    struct csv_row *rows;
    size_t nrows;
    char **errors; /* "line L, column C: what was wrong" */
    size_t nerrors, more_errors;
};

/* Parses and checks data (len bytes).  Returns 0 when every record is a
 * good row, -1 when im->errors holds at least one error, -2 when out of
 * memory.  im is zeroed first; release with csv_import_free either way. */
int csv_import_parse(struct csv_import *im, const char *data, size_t len);
void csv_import_free(struct csv_import *im);

/* Checks one value for column c; NULL when good, else what is wrong (a
 * static sentence).  Shared with `resource add|edit`. */
const char *res_check_value(enum res_col c, const char *v);

#endif
