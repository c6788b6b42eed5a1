/*
 * fuzz_csv.c - libFuzzer target for the CSV reader of `empact resource
 * import` (client/csvimport.c).
 *
 * Any input must end in either good rows or errors, never both silently:
 * a success has no errors and every stored value passes res_check_value()
 * again, with ids unique (case-insensitively) and a line number that grows
 * from row to row; a failure has at least one error, each a sentence that
 * starts with "line " or "the file".  Any broken invariant aborts.
 *
 * fuzz-sources: client/csvimport.c
 * fuzz-libs: -lcsv
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "csvimport.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_csv: invariant failed at line %d: %s\n", __LINE__, #c);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct csv_import im;
    int rc = csv_import_parse(&im, (const char *)data, size);

    CHECK(rc == 0 || rc == -1 || rc == -2);
    if (rc == 0) {
        CHECK(im.nerrors == 0 && im.more_errors == 0);
        CHECK(im.nrows <= CSV_IMPORT_MAX_ROWS);
        for (size_t i = 0; i < im.nrows; i++) {
            const struct csv_row *r = &im.rows[i];
            CHECK(r->line >= 2);
            CHECK(i == 0 || r->line > im.rows[i - 1].line);
            CHECK(r->has[RES_TITLE] && r->val[RES_TITLE] != NULL);
            for (int c = 0; c < RES_NCOL; c++) {
                CHECK(res_check_value((enum res_col)c, r->val[c]) == NULL);
                CHECK(r->val[c] == NULL || r->has[c]);
            }
            for (size_t k = 0; r->val[RES_ID] != NULL && k < i; k++)
                CHECK(im.rows[k].val[RES_ID] == NULL ||
                      strcasecmp(im.rows[k].val[RES_ID], r->val[RES_ID]) != 0);
        }
    } else if (rc == -1) {
        CHECK(im.nerrors > 0 && im.nerrors <= CSV_IMPORT_MAX_ERRORS);
        for (size_t i = 0; i < im.nerrors; i++)
            CHECK(strncmp(im.errors[i], "line ", 5) == 0 ||
                  strncmp(im.errors[i], "the file", 8) == 0);
    }
    csv_import_free(&im);
    return 0;
}
