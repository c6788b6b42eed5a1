/*
 * rowtext.c - reads the canonical row text gitmap_row_text() writes (format
 * in rowtext.h).
 *
 * Numbers are accepted only in the exact form the writer produces: after
 * parsing, the value is written again the writer's way and must give the
 * same bytes, so a hand-edited "007" or "1.50" is refused rather than read
 * as a different canonical row.  Text escapes are the writer's only.
 */
#include "rowtext.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cursor {
    const unsigned char *p, *end;
    int line;
};

static int bad(struct errctx *e, const struct cursor *c, const char *what)
{
    return errctx_set(e, SYNC_EDATA, "row text, line %d: %s", c->line, what);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The token up to the end of the line (not included); *len its length. */
static const unsigned char *token(struct cursor *c, size_t *len)
{
    const unsigned char *nl = memchr(c->p, '\n', (size_t)(c->end - c->p));
    if (nl == NULL)
        return NULL;
    *len = (size_t)(nl - c->p);
    return c->p;
}

static int parse_quoted(struct rowtext_val *v, struct cursor *c, struct errctx *e)
{
    const unsigned char *s = c->p + 1; /* after the opening quote */
    size_t cap = (size_t)(c->end - s), n = 0;
    unsigned char *out;

    /* the decoded text is never longer than its escaped form */
    if ((out = malloc(cap + 1)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory reading a row");
    while (s < c->end && *s != '"') {
        unsigned char ch = *s++;
        if (ch == '\n' || ch < 0x20 || ch == 0x7f) {
            free(out);
            return bad(e, c, "a control byte inside a quoted string");
        }
        if (ch != '\\') {
            out[n++] = ch;
            continue;
        }
        if (s >= c->end)
            break;
        ch = *s++;
        if (ch == '"' || ch == '\\') {
            out[n++] = ch;
        } else if (ch == 'n') {
            out[n++] = '\n';
        } else if (ch == 't') {
            out[n++] = '\t';
        } else if (ch == 'r') {
            out[n++] = '\r';
        } else if (ch == 'u' && c->end - s >= 4 && s[0] == '0' && s[1] == '0' &&
                   hexval(s[2]) >= 0 && hexval(s[3]) >= 0) {
            unsigned char b = (unsigned char)(hexval(s[2]) << 4 | hexval(s[3]));
            if (b >= 0x20 && b != 0x7f) {
                free(out);
                return bad(e, c, "a \\u escape of a byte that is written as it is");
            }
            out[n++] = b;
            s += 4;
        } else {
            free(out);
            return bad(e, c, "an unknown escape in a quoted string");
        }
    }
    if (s >= c->end || s + 1 >= c->end || s[1] != '\n') {
        free(out);
        return bad(e, c, "a quoted string that does not end with '\"' and the line");
    }
    out[n] = '\0';
    v->type = SQLITE_TEXT;
    v->p = out;
    v->n = n;
    c->p = s + 1;
    return SYNC_OK;
}

static int parse_blob(struct rowtext_val *v, struct cursor *c, const unsigned char *tok, size_t len,
                      struct errctx *e)
{
    size_t nhex;

    if (len < 3 || tok[1] != '\'' || tok[len - 1] != '\'' || (len - 3) % 2 != 0)
        return bad(e, c, "a blob is written x'hex'");
    nhex = len - 3;
    if ((v->p = malloc(nhex / 2 + 1)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory reading a row");
    for (size_t i = 0; i < nhex; i += 2) {
        int hi = hexval(tok[2 + i]), lo = hexval(tok[3 + i]);
        if (hi < 0 || lo < 0)
            return bad(e, c, "a blob holds a byte that is not lowercase hex");
        v->p[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    v->p[nhex / 2] = '\0';
    v->n = nhex / 2;
    v->type = SQLITE_BLOB;
    c->p = tok + len;
    return SYNC_OK;
}

/* The writer's form of a real (gitmap.c put_real). */
static void real_text(char *out, size_t sz, double d)
{
    int n = snprintf(out, sz, "%.17g", d);
    if (n > 0 && (size_t)n < sz && strspn(out, "-0123456789") == (size_t)n)
        snprintf(out + n, sz - (size_t)n, ".0");
}

static int parse_number(struct rowtext_val *v, struct cursor *c, const unsigned char *tok,
                        size_t len, struct errctx *e)
{
    char num[48], again[48], *end;

    if (len == 0 || len >= sizeof(num))
        return bad(e, c, "a value is missing or too long for a number");
    memcpy(num, tok, len);
    num[len] = '\0';
    errno = 0;
    if (strspn(num, "-0123456789") == len) {
        long long i = strtoll(num, &end, 10);
        snprintf(again, sizeof(again), "%lld", i);
        if (errno != 0 || *end != '\0' || strcmp(again, num) != 0)
            return bad(e, c, "an integer not in canonical form (or outside 64 bits)");
        v->type = SQLITE_INTEGER;
        v->i = i;
    } else {
        double d = strtod(num, &end);
        if (*end != '\0' || isnan(d))
            return bad(e, c, "a value that is not null, a number, a string or a blob");
        real_text(again, sizeof(again), d);
        if (strcmp(again, num) != 0)
            return bad(e, c, "a real not in canonical form (%.17g)");
        v->type = SQLITE_FLOAT;
        v->d = d;
    }
    c->p = tok + len;
    return SYNC_OK;
}

static int parse_value(struct rowtext_val *v, struct cursor *c, struct errctx *e)
{
    const unsigned char *tok;
    size_t len;

    if (c->p < c->end && *c->p == '"')
        return parse_quoted(v, c, e);
    if ((tok = token(c, &len)) == NULL)
        return bad(e, c, "the line does not end with a newline");
    if (len == 4 && memcmp(tok, "null", 4) == 0) {
        v->type = SQLITE_NULL;
        c->p = tok + len;
        return SYNC_OK;
    }
    if (len > 0 && tok[0] == 'x')
        return parse_blob(v, c, tok, len, e);
    return parse_number(v, c, tok, len, e);
}

int rowtext_parse(struct rowtext **out, const void *text, size_t n, const struct schema_table *t,
                  struct errctx *e)
{
    struct cursor c = {text, (const unsigned char *)text + n, 1};
    struct rowtext *r;
    int rc = SYNC_OK;

    *out = NULL;
    if ((r = calloc(1, sizeof(*r))) == NULL ||
        (r->v = calloc((size_t)t->ncol, sizeof(*r->v))) == NULL) {
        free(r);
        return errctx_set(e, SYNC_ENOMEM, "out of memory reading a row");
    }
    r->ncol = t->ncol;
    for (int i = 0; i < t->ncol; i++, c.line++) {
        const char *name = t->cols[i].name;
        size_t nl = strlen(name);

        if ((size_t)(c.end - c.p) < nl + 2 || memcmp(c.p, name, nl) != 0 || c.p[nl] != ':' ||
            c.p[nl + 1] != ' ') {
            rc = errctx_set(e, SYNC_EDATA, "row text, line %d: expected column '%s: ' of %s",
                            c.line, name, t->name);
            goto out;
        }
        c.p += nl + 2;
        if ((rc = parse_value(&r->v[i], &c, e)) != SYNC_OK)
            goto out;
        if (c.p >= c.end || *c.p != '\n') {
            rc = bad(e, &c, "text after the value");
            goto out;
        }
        c.p++;
    }
    if (c.p != c.end)
        rc = errctx_set(e, SYNC_EDATA, "row text has more than the %d columns of %s", t->ncol,
                        t->name);
out:
    if (rc != SYNC_OK) {
        rowtext_free(r);
        return rc;
    }
    *out = r;
    return SYNC_OK;
}

void rowtext_free(struct rowtext *r)
{
    if (r == NULL)
        return;
    for (int i = 0; r->v != NULL && i < r->ncol; i++)
        free(r->v[i].p);
    free(r->v);
    free(r);
}

int rowtext_bind(sqlite3_stmt *st, int idx, const struct rowtext_val *v)
{
    switch (v->type) {
    case SQLITE_INTEGER:
        return sqlite3_bind_int64(st, idx, v->i);
    case SQLITE_FLOAT:
        return sqlite3_bind_double(st, idx, v->d);
    case SQLITE_TEXT:
        return sqlite3_bind_text64(st, idx, (const char *)v->p, v->n, SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    case SQLITE_BLOB:
        return sqlite3_bind_blob64(st, idx, v->n ? (const void *)v->p : "", v->n, SQLITE_TRANSIENT);
    default:
        return sqlite3_bind_null(st, idx);
    }
}

int rowtext_val_eq(const struct rowtext_val *a, const struct rowtext_val *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SQLITE_INTEGER:
        return a->i == b->i;
    case SQLITE_FLOAT:
        return memcmp(&a->d, &b->d, sizeof(a->d)) == 0;
    case SQLITE_TEXT:
    case SQLITE_BLOB:
        return a->n == b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
    default:
        return 1;
    }
}
