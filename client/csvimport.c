/*
 * csvimport.c - CSV to validated resource rows (csvimport.h).
 *
 * libcsv (strict mode) splits records and fields and undoes the quoting;
 * this file keeps line numbers (libcsv counts none: a record starts on the
 * line after the previous record's terminator plus the line breaks inside
 * its quoted fields), maps header names to columns, and checks every value
 * before anything is written anywhere.
 */
#include "csvimport.h"

#include <csv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const res_col_names[RES_NCOL + 1] = {"id",
                                                 "title",
                                                 "url",
                                                 "summary",
                                                 "kind",
                                                 "language",
                                                 "phm_component",
                                                 "oht_block",
                                                 "population_group",
                                                 "added_by_site",
                                                 "updated_at",
                                                 NULL};

const char *const res_phm_components[] = {"population identification",
                                          "segmentation for needs, risks and barriers",
                                          "co-designing care models and service mix",
                                          "implementation and reach",
                                          "monitoring and evaluation",
                                          NULL};

const char *const res_population_groups[] = {"older adults", "people with chronic conditions",
                                             "mental health and addictions", "palliative approach",
                                             NULL};

static int in_list(const char *const *list, const char *v)
{
    for (int i = 0; list[i] != NULL; i++)
        if (strcmp(list[i], v) == 0)
            return 1;
    return 0;
}

static int is_uuid(const char *v)
{
    if (strlen(v) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        char c = v[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

const char *res_check_value(enum res_col c, const char *v)
{
    size_t n = v ? strlen(v) : 0;

    switch (c) {
    case RES_ID:
        return v == NULL || is_uuid(v)
                   ? NULL
                   : "is not a UUID (like 7c0f9a3e-0001-4d1a-9b1e-000000000001)";
    case RES_TITLE:
        if (v == NULL)
            return "is empty: every resource needs a title";
        return n > 500 ? "is longer than 500 bytes" : NULL;
    case RES_URL:
        if (v == NULL)
            return NULL;
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
            return "is not a web address starting with http:// or https://";
        for (const char *p = v; *p; p++)
            if ((unsigned char)*p <= ' ')
                return "has a space or control character in it";
        return n > 2048 ? "is longer than 2048 bytes" : NULL;
    case RES_SUMMARY:
        return n > 10000 ? "is longer than 10000 bytes" : NULL;
    case RES_KIND:
    case RES_ADDED_BY_SITE:
        return n > 64 ? "is longer than 64 bytes" : NULL;
    case RES_LANGUAGE:
        if (v == NULL)
            return NULL;
        if (n < 2 || n > 3 || strspn(v, "abcdefghijklmnopqrstuvwxyz") != n)
            return "is not a language code of 2 or 3 lower-case letters (like en or fr)";
        return NULL;
    case RES_PHM_COMPONENT:
        return v == NULL || in_list(res_phm_components, v)
                   ? NULL
                   : "is not one of the five population-health-management components (see "
                     "'empact resource add --help')";
    case RES_OHT_BLOCK:
        return v == NULL || (n == 1 && v[0] >= '1' && v[0] <= '8')
                   ? NULL
                   : "is not an OHT building block number from 1 to 8";
    case RES_POPULATION_GROUP:
        return v == NULL || in_list(res_population_groups, v)
                   ? NULL
                   : "is not one of the population groups (see 'empact resource add --help')";
    case RES_UPDATED_AT:
        return n > 32 ? "is longer than 32 bytes" : NULL;
    default:
        return "is not a column";
    }
}

/* Well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
static int utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        unsigned int cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            k = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            k = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            k = 3, cp = c & 0x07;
        else
            return 0;
        if (n - i <= k) /* the sequence runs past the end */
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return 0;
        i += k + 1;
    }
    return 1;
}

#define MAX_FIELDS 64 /* in one record */

struct state {
    struct csv_import *im;
    long line, rec_line; /* the current line; where the record began */
    int last_term;       /* the previous record's terminator */
    char *f[MAX_FIELDS]; /* the record's fields (NULL: empty) */
    size_t flen[MAX_FIELDS];
    int nf, too_many, too_big, bad_utf8;
    int map[MAX_FIELDS]; /* header position -> column */
    int ncols, header_done, header_bad, oom, over;
    size_t cap;
};

static void add_error(struct state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(struct state *st, const char *fmt, ...)
{
    struct csv_import *im = st->im;
    char buf[512], *copy, **grown;
    va_list ap;

    if (im->nerrors >= CSV_IMPORT_MAX_ERRORS) {
        im->more_errors++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if ((copy = strdup(buf)) == NULL ||
        (grown = realloc(im->errors, (im->nerrors + 1) * sizeof(*grown))) == NULL) {
        free(copy);
        st->oom = 1;
        return;
    }
    im->errors = grown;
    im->errors[im->nerrors++] = copy;
}

static void on_field(void *data, size_t len, void *arg)
{
    struct state *st = arg;
    const char *s = data;

    for (size_t i = 0; i < len; i++)
        if (s[i] == '\n')
            st->line++;
    if (st->nf >= MAX_FIELDS) {
        st->too_many = 1;
        return;
    }
    st->flen[st->nf] = len;
    st->f[st->nf] = NULL;
    if (len > CSV_IMPORT_MAX_FIELD) {
        st->too_big = 1;
    } else if (len > 0) {
        if (memchr(s, '\0', len) != NULL || !utf8_ok((const unsigned char *)s, len))
            st->bad_utf8 |= 1 << (st->nf < 30 ? st->nf : 30);
        if ((st->f[st->nf] = malloc(len + 1)) == NULL) {
            st->oom = 1;
        } else {
            memcpy(st->f[st->nf], s, len);
            st->f[st->nf][len] = '\0';
        }
    }
    st->nf++;
}

static void trim(char *s)
{
    size_t n = strlen(s), a = strspn(s, " \t");
    while (n > a && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
}

static void do_header(struct state *st)
{
    int seen[RES_NCOL] = {0};

    st->header_done = 1;
    st->ncols = st->nf;
    for (int i = 0; i < st->nf; i++) {
        int c = -1;
        st->map[i] = -1;
        if (st->f[i] == NULL) {
            add_error(st, "line %ld, column %d: the header names no column here", st->rec_line,
                      i + 1);
            st->header_bad = 1;
            continue;
        }
        trim(st->f[i]);
        for (int k = 0; k < RES_NCOL; k++)
            if (strcasecmp(st->f[i], res_col_names[k]) == 0)
                c = k;
        if (c < 0) {
            add_error(st,
                      "line %ld, column %d: '%.60s' is not a column of resource (the columns "
                      "are id, title, url, summary, kind, language, phm_component, oht_block, "
                      "population_group, added_by_site, updated_at)",
                      st->rec_line, i + 1, st->f[i]);
            st->header_bad = 1;
        } else if (seen[c]++) {
            add_error(st, "line %ld, column %d: column %s is named twice", st->rec_line, i + 1,
                      res_col_names[c]);
            st->header_bad = 1;
        }
        st->map[i] = c;
    }
    if (!seen[RES_TITLE]) {
        add_error(st, "line %ld: the header has no title column", st->rec_line);
        st->header_bad = 1;
    }
}

static void do_row(struct state *st)
{
    struct csv_import *im = st->im;
    struct csv_row row;
    int bad = 0;

    if (st->nf == 1 && st->f[0] == NULL)
        return; /* a blank line */
    if (st->nf != st->ncols) {
        add_error(st, "line %ld: %d field%s, but the header has %d", st->rec_line, st->nf,
                  st->nf == 1 ? "" : "s", st->ncols);
        return;
    }
    if (im->nrows >= CSV_IMPORT_MAX_ROWS) {
        if (!st->over++)
            add_error(st, "line %ld: more than %u rows; split the file", st->rec_line,
                      CSV_IMPORT_MAX_ROWS);
        return;
    }
    memset(&row, 0, sizeof(row));
    row.line = st->rec_line;
    for (int i = 0; i < st->nf; i++) {
        int c = st->map[i];
        const char *why;
        if (st->bad_utf8 & (1 << (i < 30 ? i : 30))) {
            add_error(st, "line %ld, column %s: not valid UTF-8 text", st->rec_line,
                      res_col_names[c]);
            bad = 1;
            continue;
        }
        if ((why = res_check_value((enum res_col)c, st->f[i])) != NULL) {
            add_error(st, "line %ld, column %s: '%.60s' %s", st->rec_line, res_col_names[c],
                      st->f[i] ? st->f[i] : "", why);
            bad = 1;
        }
        row.has[c] = 1;
        row.val[c] = st->f[i];
    }
    if (row.val[RES_ID] != NULL) {
        for (size_t k = 0; k < im->nrows; k++) {
            if (im->rows[k].val[RES_ID] != NULL &&
                strcasecmp(im->rows[k].val[RES_ID], row.val[RES_ID]) == 0) {
                add_error(st, "line %ld, column id: %s is also on line %ld", st->rec_line,
                          row.val[RES_ID], im->rows[k].line);
                bad = 1;
                break;
            }
        }
    }
    if (bad)
        return;
    if (im->nrows == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        struct csv_row *grown = realloc(im->rows, cap * sizeof(*grown));
        if (grown == NULL) {
            st->oom = 1;
            return;
        }
        im->rows = grown;
        st->cap = cap;
    }
    im->rows[im->nrows++] = row;
    for (int i = 0; i < st->nf; i++)
        st->f[i] = NULL; /* owned by the row now */
}

static void on_record(int term, void *arg)
{
    struct state *st = arg;

    if (st->nf == 0) { /* an empty line, reported in CSV_REPALL_NL mode */
        if (!(term == '\n' && st->last_term == '\r'))
            st->line++;
        st->last_term = term;
        st->rec_line = st->line;
        return;
    }
    if (st->too_many)
        add_error(st, "line %ld: more than %d fields", st->rec_line, MAX_FIELDS);
    else if (st->too_big)
        add_error(st, "line %ld: a value longer than %u bytes", st->rec_line, CSV_IMPORT_MAX_FIELD);
    else if (!st->header_done)
        do_header(st);
    else if (!st->header_bad)
        do_row(st);
    for (int i = 0; i < st->nf && i < MAX_FIELDS; i++) {
        free(st->f[i]);
        st->f[i] = NULL;
    }
    st->nf = st->too_many = st->too_big = st->bad_utf8 = 0;
    if (term != -1)
        st->line++;
    st->last_term = term;
    st->rec_line = st->line;
}

int csv_import_parse(struct csv_import *im, const char *data, size_t len)
{
    struct csv_parser p;
    struct state st;
    int rc;

    memset(im, 0, sizeof(*im));
    memset(&st, 0, sizeof(st));
    st.im = im;
    st.line = st.rec_line = 1;
    if (len > CSV_IMPORT_MAX_BYTES) {
        add_error(&st, "the file is larger than %u MiB; split it", CSV_IMPORT_MAX_BYTES >> 20);
        return st.oom ? -2 : -1;
    }
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) { /* a UTF-8 byte order mark */
        data += 3;
        len -= 3;
    }
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_REPALL_NL) != 0)
        return -2;
    if (csv_parse(&p, data, len, on_field, on_record, &st) != len ||
        csv_fini(&p, on_field, on_record, &st) != 0) {
        if (csv_error(&p) == CSV_ENOMEM)
            st.oom = 1;
        else
            add_error(&st,
                      "line %ld: not valid CSV (%s; a quote inside a quoted value is "
                      "written twice, \"\")",
                      st.line, csv_strerror(csv_error(&p)));
    }
    for (int i = 0; i < st.nf && i < MAX_FIELDS; i++)
        free(st.f[i]);
    csv_free(&p);
    if (!st.header_done && im->nerrors == 0)
        add_error(&st, "the file is empty: it needs a header line naming the columns");
    rc = st.oom ? -2 : im->nerrors > 0 ? -1 : 0;
    return rc;
}

void csv_import_free(struct csv_import *im)
{
    for (size_t i = 0; i < im->nrows; i++)
        for (int c = 0; c < RES_NCOL; c++)
            free(im->rows[i].val[c]);
    free(im->rows);
    for (size_t i = 0; i < im->nerrors; i++)
        free(im->errors[i]);
    free(im->errors);
    memset(im, 0, sizeof(*im));
}
