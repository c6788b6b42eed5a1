/*
 * library.c - the shared resource library at a site (library.h).
 *
 * Full-text search uses an FTS5 table, _empact_fts_resource(title, summary),
 * with _empact_fts_resource_map giving each resource id its rowid there, that
 * only this site has: triggers on resource keep both current whoever writes
 * the table (these commands, the sqlite3 shell, or a sync applying other
 * sites' changes), each by key, so a sync costs what it changes.  It is made the first time a
 * resource command runs, from the rows the replica holds then.
 */
#include "library.h"

#include <csv.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli.h"
#include "csvimport.h"
#include "db.h"
#include "replica.h"
#include "sitecmd.h"
#include "tabular.h"

#define FTS "_empact_fts_resource"

static const char usage_group[] =
    "usage: empact resource add|edit|list|search|import|export SITE.db ...\n"
    "\n"
    "The shared resource library, kept offline in SITE.db; the next sync sends\n"
    "every change to the hub and the other sites.  Run 'empact resource COMMAND\n"
    "--help' for each command.\n";

#define FIELDS_HELP                                                                                \
    "  --title TEXT            the title (required for add)\n"                                     \
    "  --url URL               a web address (http:// or https://)\n"                              \
    "  --summary TEXT          a summary (searched with the title)\n"                              \
    "  --kind TEXT             toolkit, report, guide, video, ...\n"                               \
    "  --language CODE         en (default), fr, ...\n"                                            \
    "  --component NAME        the population-health-management component: population\n"           \
    "                          identification | segmentation for needs, risks and barriers |\n"    \
    "                          co-designing care models and service mix | implementation and\n"    \
    "                          reach | monitoring and evaluation\n"                                \
    "  --block N               the OHT building block, 1 to 8\n"                                   \
    "  --group NAME            the population group: older adults | people with chronic\n"         \
    "                          conditions | mental health and addictions | palliative approach\n"

static const char usage_add[] =
    "usage: empact resource add SITE.db --title TEXT [OPTIONS]\n"
    "\n"
    "Adds a resource to the shared library and prints its new id.\n" FIELDS_HELP
    "Exit codes: 0 added, 64 usage, 65 bad value, 74 i/o.\n";

static const char usage_edit[] =
    "usage: empact resource edit SITE.db ID [OPTIONS]\n"
    "\n"
    "Changes the given fields of a resource; an empty value (--url '') clears an\n"
    "optional field.\n" FIELDS_HELP "Exit codes: 0 changed, 64 usage, 65 bad value or unknown id, "
    "74 i/o.\n";

static const char usage_list[] =
    "usage: empact resource list SITE.db [--component NAME] [--block N] [--group NAME]\n"
    "                            [--json]\n"
    "\n"
    "Lists the library's resources by title, optionally only those of a\n"
    "population-health-management component, an OHT building block (1-8) or a\n"
    "population group.\n";

static const char usage_search[] =
    "usage: empact resource search SITE.db WORDS [--component NAME] [--block N]\n"
    "                              [--group NAME] [--limit N] [--json]\n"
    "\n"
    "Full-text search over titles and summaries, offline; best matches first.\n"
    "Every word must appear (in any form of letter case and accents); a word\n"
    "ending in * matches every word it begins ('equit*').  At most N results\n"
    "(default 50).\n";

static const char usage_import[] =
    "usage: empact resource import SITE.db FILE.csv\n"
    "\n"
    "Adds or updates resources from a CSV file (RFC 4180, UTF-8).  Its first line\n"
    "names the columns, in any order: id, title, url, summary, kind, language,\n"
    "phm_component, oht_block, population_group, added_by_site, updated_at; title\n"
    "is required.  A row whose id is in the library updates it (an empty value\n"
    "clears the field); a row without an id is a new resource.  Every row is\n"
    "checked first: if any is wrong, each problem is listed with its line and\n"
    "column, and nothing is imported.\n"
    "Exit codes: 0 imported, 64 usage, 65 bad rows (nothing imported), 74 i/o.\n";

static const char usage_export[] =
    "usage: empact resource export SITE.db [-o FILE.csv]\n"
    "\n"
    "Writes the whole library as CSV (to FILE.csv, or standard output), with a\n"
    "header line; 'empact resource import' reads it back.\n";

int library_fts_ensure(sqlite3 *db, struct errctx *e)
{
    char have[8];
    struct errctx ignore = {0, ""};

    if (sc_first_text(
            sc_prepare(db, &ignore, "SELECT 1 FROM sqlite_schema WHERE name = '" FTS "'", ""), have,
            sizeof(have)))
        return SYNC_OK;
    /* The FTS rowid of each resource is kept in FTS_map (resource has no
     * rowid of its own), so every trigger finds its index entry by key
     * instead of scanning the index. */
    return db_exec(
        db,
        "BEGIN IMMEDIATE;"
        "CREATE TABLE " FTS "_map (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);"
        "CREATE VIRTUAL TABLE " FTS " USING fts5(title, summary,"
        " tokenize = 'unicode61 remove_diacritics 2');"
        "CREATE TRIGGER " FTS "_ins AFTER INSERT ON resource BEGIN"
        " INSERT INTO " FTS "_map (id) VALUES (NEW.id);"
        " INSERT INTO " FTS " (rowid, title, summary) VALUES"
        " ((SELECT rid FROM " FTS "_map WHERE id = NEW.id), NEW.title, NEW.summary); END;"
        "CREATE TRIGGER " FTS "_del AFTER DELETE ON resource BEGIN"
        " DELETE FROM " FTS " WHERE rowid = (SELECT rid FROM " FTS "_map WHERE id = OLD.id);"
        " DELETE FROM " FTS "_map WHERE id = OLD.id; END;"
        "CREATE TRIGGER " FTS "_upd AFTER UPDATE ON resource BEGIN"
        " UPDATE " FTS "_map SET id = NEW.id WHERE id = OLD.id;"
        " UPDATE " FTS " SET title = NEW.title, summary = NEW.summary"
        " WHERE rowid = (SELECT rid FROM " FTS "_map WHERE id = NEW.id); END;"
        "INSERT INTO " FTS "_map (id) SELECT id FROM resource;"
        "INSERT INTO " FTS " (rowid, title, summary) SELECT m.rid, r.title, r.summary"
        " FROM " FTS "_map m JOIN resource r ON r.id = m.id;"
        "COMMIT;",
        "replica", e);
}

/* A random (version 4) UUID. */
static int new_uuid(char out[37])
{
    unsigned char b[16];
    size_t got = 0;

    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n > 0)
            got += (size_t)n;
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
    return 0;
}

/* The options of add and edit, each a column of resource. */
struct fields {
    const char *v[RES_NCOL];
};

static const struct {
    const char *opt;
    enum res_col col;
} field_opts[] = {
    {"title", RES_TITLE},       {"url", RES_URL},
    {"summary", RES_SUMMARY},   {"kind", RES_KIND},
    {"language", RES_LANGUAGE}, {"component", RES_PHM_COMPONENT},
    {"block", RES_OHT_BLOCK},   {"group", RES_POPULATION_GROUP},
};
#define NFIELD_OPTS (sizeof(field_opts) / sizeof(field_opts[0]))

/* Checks each given field ("" clears an optional one); 0 when all good. */
static int check_fields(const struct fields *f)
{
    for (size_t i = 0; i < NFIELD_OPTS; i++) {
        const char *v = f->v[field_opts[i].col], *why;
        if (v == NULL)
            continue;
        if ((why = res_check_value(field_opts[i].col, v[0] ? v : NULL)) != NULL)
            return sc_bad("--%s '%.60s' %s", field_opts[i].opt, v, why);
    }
    return 0;
}

static void site_and_today(sqlite3 *db, char site[128], char today[11])
{
    struct errctx e = {0, ""};
    sc_first_text(sc_prepare(db, &e, "SELECT value FROM _empact_meta WHERE key = 'site_id'", ""),
                  site, 128);
    sc_date_arg(db, "", NULL, today);
}

/* Parses add/edit options into f; returns -1 to go on. */
static int parse_fields(int argc, char **argv, const char *usage, struct fields *f, int nargs)
{
    struct cli_opt opts[NFIELD_OPTS + 1];

    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < NFIELD_OPTS; i++)
        opts[i] = (struct cli_opt){field_opts[i].opt, 0, 1, &f->v[field_opts[i].col]};
    opts[NFIELD_OPTS] = (struct cli_opt){NULL, 0, 0, NULL};
    return cli_parse(argc, argv, "empact", usage, opts, nargs, nargs);
}

static int cmd_add(int argc, char **argv, struct sc_ctx *c)
{
    struct fields f;
    struct errctx e = {0, ""};
    char id[37], site[128], today[11];
    sqlite3_stmt *st;
    int rc = parse_fields(argc, argv, usage_add, &f, 1);

    if (rc >= 0)
        return rc;
    if (f.v[RES_TITLE] == NULL)
        return cli_usage_error("empact", usage_add, "needs --title");
    if (check_fields(&f) != 0)
        return EXIT_DATA;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    if (new_uuid(id) != 0)
        return sc_bad("cannot draw random bytes for a new id: %s", strerror(errno));
    site_and_today(c->db, site, today);
    if ((rc = library_fts_ensure(c->db, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    st = sc_prepare(c->db, &e,
                    "INSERT INTO resource (id, title, url, summary, kind, language, "
                    "phm_component, oht_block, population_group, added_by_site, updated_at) "
                    "VALUES (?1, ?2, nullif(?3, ''), nullif(?4, ''), nullif(?5, ''), "
                    "ifnull(nullif(?6, ''), 'en'), nullif(?7, ''), CAST(nullif(?8, '') AS "
                    "INTEGER), nullif(?9, ''), ?10, ?11)",
                    "ttttttttttt", id, f.v[RES_TITLE], f.v[RES_URL], f.v[RES_SUMMARY],
                    f.v[RES_KIND], f.v[RES_LANGUAGE], f.v[RES_PHM_COMPONENT], f.v[RES_OHT_BLOCK],
                    f.v[RES_POPULATION_GROUP], site, today);
    if ((rc = sc_run(st, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    printf("resource %s: %s\n", id, f.v[RES_TITLE]);
    return EXIT_OK;
}

static int cmd_edit(int argc, char **argv, struct sc_ctx *c)
{
    struct fields f;
    struct errctx e = {0, ""};
    char site[128], today[11], have[8], *sql;
    const char *id;
    int rc = parse_fields(argc, argv, usage_edit, &f, 2), n = 0;

    if (rc >= 0)
        return rc;
    for (size_t i = 0; i < NFIELD_OPTS; i++)
        n += f.v[field_opts[i].col] != NULL;
    if (n == 0)
        return cli_usage_error("empact", usage_edit, "give at least one field to change");
    if (check_fields(&f) != 0)
        return EXIT_DATA;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    id = argv[optind + 1];
    if (!sc_first_text(sc_prepare(c->db, &e, "SELECT 1 FROM resource WHERE id = ?", "t", id), have,
                       sizeof(have)))
        return sc_bad("there is no resource %s in this replica", id);
    site_and_today(c->db, site, today);
    if ((rc = library_fts_ensure(c->db, &e)) != SYNC_OK)
        return sc_fail(rc, &e);
    /* one UPDATE naming only the given columns; ?N is the column's value */
    sql = sqlite3_mprintf("UPDATE resource SET updated_at = ?12");
    for (size_t i = 0; sql != NULL && i < NFIELD_OPTS; i++) {
        int col = field_opts[i].col;
        char *next;
        if (f.v[col] == NULL)
            continue;
        next = sqlite3_mprintf(col == RES_OHT_BLOCK  ? "%s, %s = CAST(nullif(?%d, '') AS INTEGER)"
                               : col == RES_LANGUAGE ? "%s, %s = ifnull(nullif(?%d, ''), 'en')"
                                                     : "%s, %s = nullif(?%d, '')",
                               sql, res_col_names[col], col + 1);
        sqlite3_free(sql);
        sql = next;
    }
    if (sql == NULL || (sql = sqlite3_mprintf("%z WHERE id = ?1", sql)) == NULL)
        return sc_fail(errctx_set(&e, SYNC_ENOMEM, "out of memory"), &e);
    rc = sc_run(sc_prepare(c->db, &e, sql, "tttttttttttt", id, f.v[RES_TITLE], f.v[RES_URL],
                           f.v[RES_SUMMARY], f.v[RES_KIND], f.v[RES_LANGUAGE],
                           f.v[RES_PHM_COMPONENT], f.v[RES_OHT_BLOCK], f.v[RES_POPULATION_GROUP],
                           (const char *)NULL, (const char *)NULL, today),
                &e);
    sqlite3_free(sql);
    if (rc != SYNC_OK)
        return sc_fail(rc, &e);
    printf("resource %s: %d field%s changed\n", id, n, n == 1 ? "" : "s");
    return EXIT_OK;
}

/* The --component/--block/--group filters of list and search. */
struct filters {
    const char *component, *block, *group;
};

static int check_filters(const struct filters *f)
{
    const char *why;
    if (f->component && (why = res_check_value(RES_PHM_COMPONENT, f->component)) != NULL)
        return sc_bad("--component '%.60s' %s", f->component, why);
    if (f->block && (why = res_check_value(RES_OHT_BLOCK, f->block)) != NULL)
        return sc_bad("--block '%.60s' %s", f->block, why);
    if (f->group && (why = res_check_value(RES_POPULATION_GROUP, f->group)) != NULL)
        return sc_bad("--group '%.60s' %s", f->group, why);
    return 0;
}

#define RES_SELECT                                                                                 \
    "SELECT r.id, r.title, r.kind, r.phm_component AS component, r.oht_block AS block, "           \
    "r.population_group AS \"group\", r.added_by_site AS site"
#define RES_FILTER                                                                                 \
    " (?1 IS NULL OR r.phm_component = ?1) AND (?2 IS NULL OR r.oht_block = CAST(?2 AS "           \
    "INTEGER)) AND (?3 IS NULL OR r.population_group = ?3)"

static int cmd_list(int argc, char **argv, struct sc_ctx *c)
{
    struct filters f = {NULL, NULL, NULL};
    const char *json = NULL;
    const struct cli_opt opts[] = {{"component", 0, 1, &f.component},
                                   {"block", 0, 1, &f.block},
                                   {"group", 0, 1, &f.group},
                                   {"json", 'j', 0, &json},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact", usage_list, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (check_filters(&f) != 0)
        return EXIT_DATA;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    rc = sc_print_query(sc_prepare(c->db, &e,
                                   RES_SELECT " FROM resource r WHERE" RES_FILTER
                                              " ORDER BY r.title COLLATE NOCASE, r.id",
                                   "ttt", f.component, f.block, f.group),
                        json != NULL, "no resources", &e);
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

/* The words of a search (split at white space) as an FTS5 query: each word
 * quoted, so none is taken for an operator, a trailing * kept as a prefix
 * search; all must match.  NULL when there is no word; sqlite3_free it. */
static char *fts_query(char **args, int n)
{
    sqlite3_str *q = sqlite3_str_new(NULL);
    int any = 0;
    char *out;

    for (int i = 0; i < n; i++) {
        for (const char *w = args[i]; *w != '\0';) {
            size_t len = strcspn(w, " \t\r\n");
            int prefix = len > 1 && w[len - 1] == '*';
            if (len - (size_t)prefix > 0) {
                sqlite3_str_appendall(q, any ? " \"" : "\"");
                for (size_t k = 0; k < len - (size_t)prefix; k++)
                    sqlite3_str_appendchar(q, w[k] == '"' ? 2 : 1, w[k]);
                sqlite3_str_appendall(q, prefix ? "\"*" : "\"");
                any = 1;
            }
            w += len;
            w += strspn(w, " \t\r\n");
        }
    }
    out = sqlite3_str_finish(q);
    if (!any) {
        sqlite3_free(out);
        return NULL;
    }
    return out;
}

static int cmd_search(int argc, char **argv, struct sc_ctx *c)
{
    struct filters f = {NULL, NULL, NULL};
    const char *json = NULL, *limit = "50";
    const struct cli_opt opts[] = {{"component", 0, 1, &f.component}, {"block", 0, 1, &f.block},
                                   {"group", 0, 1, &f.group},         {"limit", 0, 1, &limit},
                                   {"json", 'j', 0, &json},           {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    sqlite3_int64 n;
    char *q;
    int rc = cli_parse(argc, argv, "empact", usage_search, opts, 2, 64);

    if (rc >= 0)
        return rc;
    if (check_filters(&f) != 0)
        return EXIT_DATA;
    if (sc_parse_id(limit, &n) != 0 || n > 100000)
        return sc_bad("--limit '%s' is not a number from 1 to 100000", limit);
    if ((q = fts_query(argv + optind + 1, argc - optind - 1)) == NULL)
        return sc_bad("nothing to search for: give one or more words");
    if ((rc = sc_site(c, argv[optind])) >= 0 ||
        (rc = library_fts_ensure(c->db, &e) != SYNC_OK ? sc_fail(e.code, &e) : -1) >= 0) {
        sqlite3_free(q);
        return rc;
    }
    rc = sc_print_query(sc_prepare(c->db, &e,
                                   RES_SELECT " FROM " FTS " s JOIN " FTS "_map m ON m.rid = "
                                              "s.rowid JOIN resource r ON r.id = m.id WHERE " FTS
                                              " MATCH ?4 AND" RES_FILTER " ORDER BY bm25(" FTS
                                              "), r.title LIMIT ?5",
                                   "ttttt", f.component, f.block, f.group, q, limit),
                        json != NULL, "no resource matches", &e);
    sqlite3_free(q);
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

static int cmd_export(int argc, char **argv, struct sc_ctx *c)
{
    const char *out = NULL;
    const struct cli_opt opts[] = {{"output", 'o', 1, &out}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    char tmp[4096];
    sqlite3_stmt *st;
    FILE *fp = stdout;
    long rows = 0;
    int rc = cli_parse(argc, argv, "empact", usage_export, opts, 1, 1), step;

    if (rc >= 0)
        return rc;
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    if (out != NULL) {
        /* written aside and renamed: a failed export leaves no half file */
        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", out) >= sizeof(tmp))
            return sc_bad("output path too long");
        if ((fp = fopen(tmp, "w")) == NULL)
            return sc_fail(errctx_set(&e, SYNC_EIO, "cannot create %s: %s", tmp, strerror(errno)),
                           &e);
    }
    for (int i = 0; i < RES_NCOL; i++)
        fprintf(fp, "%s%s", res_col_names[i], i + 1 < RES_NCOL ? "," : "\n");
    st = sc_prepare(c->db, &e,
                    "SELECT id, title, url, summary, kind, language, phm_component, oht_block, "
                    "population_group, added_by_site, updated_at FROM resource ORDER BY id",
                    "");
    while (st != NULL && (step = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < RES_NCOL; i++) {
            if (sqlite3_column_type(st, i) != SQLITE_NULL)
                csv_fwrite(fp, sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i));
            fputs(i + 1 < RES_NCOL ? "," : "\r\n", fp);
        }
        rows++;
    }
    rc = st == NULL ? e.code
         : step != SQLITE_DONE
             ? errctx_set(&e, SYNC_EIO, "reading the replica: %s", sqlite3_errmsg(c->db))
             : SYNC_OK;
    sqlite3_finalize(st);
    if (fflush(fp) != 0 || ferror(fp))
        rc = rc ? rc
                : errctx_set(&e, SYNC_EIO, "cannot write %s: %s", out ? tmp : "output",
                             strerror(errno));
    if (out != NULL) {
        if ((fsync(fileno(fp)) != 0 || fclose(fp) != 0) && rc == SYNC_OK)
            rc = errctx_set(&e, SYNC_EIO, "cannot write %s: %s", tmp, strerror(errno));
        if (rc == SYNC_OK && rename(tmp, out) != 0)
            rc = errctx_set(&e, SYNC_EIO, "cannot create %s: %s", out, strerror(errno));
        if (rc != SYNC_OK)
            unlink(tmp);
        else
            fprintf(stderr, "empact: exported %ld resource%s to %s\n", rows, rows == 1 ? "" : "s",
                    out);
    }
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

/* The whole file, at most CSV_IMPORT_MAX_BYTES + 1 bytes of it. */
static char *read_file(const char *path, size_t *len, struct errctx *e)
{
    FILE *fp = fopen(path, "rb");
    size_t cap = 1 << 16, n = 0;
    char *buf = NULL;

    if (fp == NULL) {
        errctx_set(e, SYNC_EIO, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        char *grown;
        size_t got;
        if ((grown = realloc(buf, cap)) == NULL) {
            errctx_set(e, SYNC_ENOMEM, "out of memory reading %s", path);
            break;
        }
        buf = grown;
        got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0 || n > CSV_IMPORT_MAX_BYTES) {
            if (ferror(fp))
                errctx_set(e, SYNC_EIO, "cannot read %s: %s", path, strerror(errno));
            break;
        }
        if (n == cap)
            cap *= 2;
    }
    fclose(fp);
    if (e->code != SYNC_OK) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Writes the parsed rows in the current transaction: an update for an id
 * the library has, an insert otherwise. */
static int import_rows(sqlite3 *db, const struct csv_import *im, const char *path, long *added,
                       long *updated, struct errctx *e)
{
    char site[128], today[11], have[8], id[37];

    site_and_today(db, site, today);
    for (size_t i = 0; i < im->nrows; i++) {
        const struct csv_row *r = &im->rows[i];
        const char *rid = r->val[RES_ID];
        char *sql = NULL;
        int exists = 0, rc;

        if (rid != NULL)
            exists =
                sc_first_text(sc_prepare(db, e, "SELECT 1 FROM resource WHERE id = ?", "t", rid),
                              have, sizeof(have));
        if (rid == NULL) {
            if (new_uuid(id) != 0)
                return errctx_set(e, SYNC_EIO, "cannot draw random bytes for a new id");
            rid = id;
        }
        if (exists) {
            sql = sqlite3_mprintf("UPDATE resource SET updated_at = ifnull(?11, ?13)");
            for (int col = RES_TITLE; sql != NULL && col < RES_NCOL; col++) {
                char *next;
                if (!r->has[col] || col == RES_UPDATED_AT)
                    continue;
                next = sqlite3_mprintf(col == RES_LANGUAGE ? "%s, %s = ifnull(?%d, 'en')"
                                                           : "%s, %s = ?%d",
                                       sql, res_col_names[col], col + 1);
                sqlite3_free(sql);
                sql = next;
            }
            if (sql != NULL)
                sql = sqlite3_mprintf("%z WHERE id = ?1", sql);
        } else {
            sql = sqlite3_mprintf("INSERT INTO resource (id, title, url, summary, kind, language, "
                                  "phm_component, oht_block, population_group, added_by_site, "
                                  "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ifnull(?6, 'en'), ?7, "
                                  "CAST(?8 AS INTEGER), ?9, ifnull(?10, ?12), ifnull(?11, ?13))");
        }
        if (sql == NULL)
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        rc = sc_run(sc_prepare(db, e, sql, "ttttttttttttt", rid, r->val[RES_TITLE], r->val[RES_URL],
                               r->val[RES_SUMMARY], r->val[RES_KIND], r->val[RES_LANGUAGE],
                               r->val[RES_PHM_COMPONENT], r->val[RES_OHT_BLOCK],
                               r->val[RES_POPULATION_GROUP], r->val[RES_ADDED_BY_SITE],
                               r->val[RES_UPDATED_AT], site, today),
                    e);
        sqlite3_free(sql);
        if (rc != SYNC_OK)
            return errctx_wrap(e, "%s: line %ld", path, r->line);
        *(exists ? updated : added) += 1;
    }
    return SYNC_OK;
}

static int cmd_import(int argc, char **argv, struct sc_ctx *c)
{
    const struct cli_opt opts[] = {{NULL, 0, 0, NULL}};
    struct csv_import im;
    struct errctx e = {0, ""};
    const char *path;
    long added = 0, updated = 0;
    size_t len = 0;
    char *data;
    int rc = cli_parse(argc, argv, "empact", usage_import, opts, 2, 2), prc;

    if (rc >= 0)
        return rc;
    path = argv[optind + 1];
    if ((data = read_file(path, &len, &e)) == NULL)
        return sc_fail(e.code, &e);
    prc = csv_import_parse(&im, data, len);
    free(data);
    if (prc == -2) {
        csv_import_free(&im);
        return sc_fail(errctx_set(&e, SYNC_ENOMEM, "out of memory reading %s", path), &e);
    }
    if (prc != 0) {
        for (size_t i = 0; i < im.nerrors; i++)
            fprintf(stderr, "empact: %s: %s\n", path, im.errors[i]);
        if (im.more_errors)
            fprintf(stderr, "empact: %s: ... and %zu more problems\n", path, im.more_errors);
        fprintf(stderr, "empact: %s: nothing was imported; fix the rows above and import again\n",
                path);
        csv_import_free(&im);
        return EXIT_DATA;
    }
    if ((rc = sc_site(c, argv[optind])) >= 0) {
        csv_import_free(&im);
        return rc;
    }
    if ((rc = library_fts_ensure(c->db, &e)) == SYNC_OK && (rc = sc_begin(c->db, &e)) == SYNC_OK)
        rc = sc_end(c->db, import_rows(c->db, &im, path, &added, &updated, &e), &e);
    csv_import_free(&im);
    if (rc != SYNC_OK) {
        fprintf(stderr, "empact: %s\nempact: %s: nothing was imported\n", e.msg, path);
        return cli_exit_code(rc == SYNC_EIO ? SYNC_EDATA : rc);
    }
    printf("imported %ld resource%s from %s: %ld new, %ld updated\n", added + updated,
           added + updated == 1 ? "" : "s", path, added, updated);
    return EXIT_OK;
}

int library_main(int argc, char **argv, const struct schema *s)
{
    static const struct sc_command commands[] = {
        {NULL, "add", cmd_add},       {NULL, "edit", cmd_edit},     {NULL, "list", cmd_list},
        {NULL, "search", cmd_search}, {NULL, "import", cmd_import}, {NULL, "export", cmd_export}};
    return sc_dispatch(argc, argv, s, commands, sizeof(commands) / sizeof(commands[0]),
                       usage_group);
}
