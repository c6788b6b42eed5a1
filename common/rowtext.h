/*
 * rowtext.h - reading back the canonical text of a row (the inverse of
 * gitmap_row_text(), common/gitmap.c).
 *
 * A row blob in history.git is one line per column, in schema order:
 *     name: value\n
 * value being one of
 *     null                      SQL NULL
 *     -12                       an integer (decimal, 64-bit)
 *     0.5  1e+300  -inf  3.0    a real (%.17g; a '.' or an exponent, or inf)
 *     "a \"b\"\n\u0001"         text: \" \\ \n \t \r and \u00XX for the other
 *                               bytes below 0x20 and 0x7f; every other byte,
 *                               UTF-8 or not, as it is
 *     x'00ff'                   a blob, lowercase hex
 * The reader is strict: column names and count must match the table, every
 * line ends with '\n', and nothing follows the last line.  It reads outside
 * bytes (a repository may be damaged), so lengths are checked before use.
 */
#ifndef EMPACT_ROWTEXT_H
#define EMPACT_ROWTEXT_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "errctx.h"
#include "schema.h"

/* One value of a row: type is SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT,
 * SQLITE_TEXT or SQLITE_BLOB; p holds n bytes for text and blobs (text may
 * hold NUL bytes; p is NUL-terminated after n). */
struct rowtext_val {
    int type;
    int64_t i;
    double d;
    unsigned char *p;
    size_t n;
};

struct rowtext {
    int ncol;
    struct rowtext_val *v; /* ncol values, in schema order */
};

/* Parses the n bytes of text (a row blob, need not be NUL-terminated) as a
 * row of table t.  SYNC_EDATA with a sentence naming the line if it is not
 * the canonical text of such a row.  Caller frees *out with rowtext_free(). */
int rowtext_parse(struct rowtext **out, const void *text, size_t n, const struct schema_table *t,
                  struct errctx *e) SYNC_WUR;

/* Safe to call with NULL. */
void rowtext_free(struct rowtext *r);

/* Binds value v to parameter idx of st (copied: v may be freed afterwards). */
int rowtext_bind(sqlite3_stmt *st, int idx, const struct rowtext_val *v);

/* 1 if a and b are the same value (same type and bytes; reals by bits). */
int rowtext_val_eq(const struct rowtext_val *a, const struct rowtext_val *b);

#endif
