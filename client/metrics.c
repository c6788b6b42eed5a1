/*
 * metrics.c - the site's impact metrics (metrics.h).
 *
 * `metrics compute` derives each metric of the hub's catalogue that this
 * client knows how to count from the local tables, for one period, and
 * writes the site's metric_value rows: the only trace of HEA work that
 * leaves the site.  A metric whose catalogue row has suppress_below (a count
 * of people) is protected before it is written: 0 stays 0, a count below
 * the threshold is published suppressed (NULL), any other count is rounded
 * to a multiple of PEOPLE_ROUND_BASE; and it is published per quarter only
 * (a year is published suppressed), so no published count of people is a
 * total of others and none can be recovered by subtraction.  Each value is
 * protected on its own, when it is published, because the hub keeps every
 * published value in its history and nothing published can be taken back
 * (README.md, "Small-cell protection").
 */
#include "metrics.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "replica.h"
#include "sitecmd.h"
#include "tabular.h"

/* Each metric's exact value for the period ?1 .. ?2 (dates, inclusive). */
static const struct {
    const char *code, *sql;
} counts[] = {
    {"heas_completed", "SELECT count(*) FROM hea_step WHERE step = 'report' AND skipped_because IS "
                       "NULL AND done_on BETWEEN ?1 AND ?2"},
    {"heas_in_progress",
     "SELECT count(*) FROM hea h WHERE EXISTS (SELECT 1 FROM hea_step s WHERE s.hea_id = h.id AND "
     "s.step = 'intake' AND s.done_on <= ?2) AND NOT EXISTS (SELECT 1 FROM hea_step s WHERE "
     "s.hea_id = h.id AND s.step = 'report' AND s.done_on <= ?2)"},
    {"decisions_hospital",
     "SELECT count(*) FROM hea_decision d JOIN impact_partner p ON p.id = "
     "d.partner_id WHERE p.level = 'hospital' AND d.decided_on BETWEEN ?1 AND "
     "?2"},
    {"decisions_provincial", "SELECT count(*) FROM hea_decision d JOIN impact_partner p ON p.id = "
                             "d.partner_id WHERE p.level = 'provincial-regional' AND d.decided_on "
                             "BETWEEN ?1 AND ?2"},
    {"decisions_national",
     "SELECT count(*) FROM hea_decision d JOIN impact_partner p ON p.id = "
     "d.partner_id WHERE p.level = 'national' AND d.decided_on BETWEEN ?1 AND "
     "?2"},
    /* HEAs active in the period: opened by its end, not closed before it */
    {"impact_partnerships",
     "SELECT count(DISTINCT p.organisation) FROM hea h JOIN hea_partner x ON x.hea_id = h.id JOIN "
     "impact_partner p ON p.id = x.partner_id WHERE h.opened_on <= ?2 AND (h.step <> 'closed' OR "
     "(SELECT max(done_on) FROM hea_step s WHERE s.hea_id = h.id) >= ?1)"},
    {"impact_partners",
     "SELECT count(DISTINCT x.partner_id) FROM hea h JOIN hea_partner x ON x.hea_id = h.id WHERE "
     "h.opened_on <= ?2 AND (h.step <> 'closed' OR (SELECT max(done_on) FROM hea_step s WHERE "
     "s.hea_id = h.id) >= ?1)"},
    {"members_engaged", "SELECT count(DISTINCT m.member_id) FROM hea_member m JOIN hea_step s ON "
                        "s.hea_id = m.hea_id AND s.step = 'engagement' AND s.skipped_because IS "
                        "NULL WHERE s.done_on BETWEEN ?1 AND ?2"},
    {"compensation_paid", "SELECT ifnull(sum(amount_cents), 0) / 100.0 FROM compensation WHERE "
                          "paid_on BETWEEN ?1 AND ?2"},
    /* of the HEAs reported by the period's end, the share with feedback */
    {"feedback_share",
     "SELECT CAST(sum(EXISTS (SELECT 1 FROM hea_step f WHERE f.hea_id = r.hea_id AND f.step = "
     "'feedback' AND f.skipped_because IS NULL AND f.done_on <= ?2)) AS REAL) / count(*) FROM "
     "hea_step r WHERE r.step = 'report' AND r.skipped_because IS NULL AND r.done_on <= ?2 "
     "HAVING count(*) > 0"},
};

static const char usage_group[] =
    "usage: empact metrics compute SITE.db --period PERIOD [--json]\n"
    "       empact metrics list SITE.db [--period PERIOD] [--json]\n"
    "\n"
    "The site's aggregated impact metrics, the only part of its HEA work that is\n"
    "sent to the hub.  Run 'empact metrics COMMAND --help' for details.\n";

static const char usage_compute[] =
    "usage: empact metrics compute SITE.db --period PERIOD [--json]\n"
    "\n"
    "Counts, from this site's confidential tables, every metric of the hub's\n"
    "catalogue for PERIOD (YYYY-Qn or YYYY) and writes the site's metric values;\n"
    "the next sync publishes them.  Counts of people (metrics with a threshold in\n"
    "the catalogue, such as members_engaged) are protected: 0 stays 0, a count\n"
    "below the threshold is published as suppressed, and any other count is\n"
    "rounded to a multiple of 5.  Prints each metric's exact value (seen only\n"
    "here) and what is published.  Running it again for a period replaces the\n"
    "values.\n"
    "Exit codes: 0 computed, 64 usage, 65 bad period, 74 i/o.\n";

static const char usage_list[] =
    "usage: empact metrics list SITE.db [--period PERIOD] [--json]\n"
    "\n"
    "Lists this site's published metric values (what the hub receives), for one\n"
    "period or all.\n";

double metrics_publish(double v, long long t, int year, int *suppressed)
{
    *suppressed = 0;
    if (t <= 0)
        return v;
    /* a count of people is published per quarter only: a year's figure
     * would be a total of published quarters, and subtracting the others
     * from it could give a suppressed quarter away */
    if (year) {
        *suppressed = 1;
        return 0;
    }
    if (v == 0)
        return v;
    if (v < (double)t) {
        *suppressed = 1;
        return 0;
    }
    return floor(v / PEOPLE_ROUND_BASE + 0.5) * PEOPLE_ROUND_BASE;
}

int metrics_period(const char *p, char start[11], char end[11])
{
    static const char *const q_start[] = {"01-01", "04-01", "07-01", "10-01"};
    static const char *const q_end[] = {"03-31", "06-30", "09-30", "12-31"};
    size_t n = strlen(p);
    int year, q;

    for (int i = 0; i < 4; i++)
        if (p[i] < '0' || p[i] > '9')
            return -1;
    year = atoi(p);
    if (year < 1900 || year > 2999)
        return -1;
    if (n == 4) {
        snprintf(start, 11, "%04d-01-01", year);
        snprintf(end, 11, "%04d-12-31", year);
        return 0;
    }
    if (n != 7 || p[4] != '-' || p[5] != 'Q' || p[6] < '1' || p[6] > '4')
        return -1;
    q = p[6] - '1';
    snprintf(start, 11, "%04d-%s", year, q_start[q]);
    snprintf(end, 11, "%04d-%s", year, q_end[q]);
    return 0;
}

/* The catalogue's threshold of a metric (0 when none), -1 if the hub's
 * catalogue (as last synced) does not have the metric. */
static long long threshold(sqlite3 *db, const char *code, struct errctx *e)
{
    sqlite3_stmt *st = sc_prepare(db, e,
                                  "SELECT ifnull(suppress_below, 0) FROM metric WHERE "
                                  "code = ?",
                                  "t", code);
    long long t = -1;

    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        t = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return t;
}

int metrics_compute(sqlite3 *db, const char *site, const char *period, cJSON *out, struct errctx *e)
{
    char start[11], end[11];
    int rc = SYNC_OK;

    if (metrics_period(period, start, end) != 0)
        return errctx_set(e, SYNC_EUSAGE, "'%s' is not a period (YYYY-Qn or YYYY)", period);

    for (size_t i = 0; rc == SYNC_OK && i < sizeof(counts) / sizeof(counts[0]); i++) {
        long long t = threshold(db, counts[i].code, e);
        sqlite3_stmt *st;
        int has, suppressed = 0;
        double exact = 0, pub;
        cJSON *row;

        if (t < 0)
            continue; /* not in the catalogue this site has seen */
        if ((st = sc_prepare(db, e, counts[i].sql, "tt", start, end)) == NULL)
            return e->code;
        has = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
        if (has)
            exact = sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
        pub = metrics_publish(exact, t, strlen(period) == 4, &suppressed);
        /* a ratio with nothing to divide is published as no value */
        st = sc_prepare(db, e,
                        "INSERT INTO metric_value (site_id, metric, period, value, suppressed, "
                        "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, strftime('%Y-%m-%dT%H:%M:%SZ')) "
                        "ON CONFLICT (site_id, metric, period) DO UPDATE SET value = "
                        "excluded.value, suppressed = excluded.suppressed, updated_at = "
                        "excluded.updated_at WHERE value IS NOT excluded.value OR suppressed IS "
                        "NOT excluded.suppressed",
                        "ttt", site, counts[i].code, period);
        if (st != NULL && has && !suppressed)
            sqlite3_bind_double(st, 4, pub);
        if (st != NULL)
            sqlite3_bind_int(st, 5, suppressed);
        if ((rc = sc_run(st, e)) != SYNC_OK)
            break;
        if ((row = cJSON_CreateObject()) == NULL || !cJSON_AddItemToArray(out, row) ||
            !cJSON_AddStringToObject(row, "metric", counts[i].code) ||
            !(has ? cJSON_AddNumberToObject(row, "exact", exact)
                  : cJSON_AddNullToObject(row, "exact")) ||
            !(has && !suppressed ? cJSON_AddNumberToObject(row, "published", pub)
                                 : cJSON_AddNullToObject(row, "published")) ||
            !cJSON_AddBoolToObject(row, "suppressed", suppressed) ||
            !(t > 0 ? cJSON_AddNumberToObject(row, "threshold", (double)t)
                    : cJSON_AddNullToObject(row, "threshold")))
            rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
    }
    return rc;
}

static void print_number(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        printf("%-12s", "-");
    else if (v->valuedouble == floor(v->valuedouble))
        printf("%-12.0f", v->valuedouble);
    else
        printf("%-12.4g", v->valuedouble);
}

static int cmd_compute(int argc, char **argv, struct sc_ctx *c)
{
    const char *period = NULL, *json = NULL;
    const struct cli_opt opts[] = {
        {"period", 'p', 1, &period}, {"json", 'j', 0, &json}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    char start[11], end[11], site[128];
    cJSON *out = NULL, *row;
    int rc = cli_parse(argc, argv, "empact", usage_compute, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (period == NULL)
        return cli_usage_error("empact", usage_compute, "needs --period");
    if (metrics_period(period, start, end) != 0)
        return sc_bad("--period '%s' is not a period: write a quarter as 2026-Q3 or a year as "
                      "2026",
                      period);
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    if ((out = cJSON_CreateArray()) == NULL)
        return sc_fail(errctx_set(&e, SYNC_ENOMEM, "out of memory"), &e);
    sc_first_text(sc_prepare(c->db, &e, "SELECT value FROM _empact_meta WHERE key = 'site_id'", ""),
                  site, sizeof(site));
    if ((rc = sc_begin(c->db, &e)) == SYNC_OK)
        rc = metrics_compute(c->db, site, period, out, &e);
    if ((rc = sc_end(c->db, rc, &e)) != SYNC_OK) {
        cJSON_Delete(out);
        return sc_fail(rc, &e);
    }
    if (json != NULL) {
        char *text = cJSON_Print(out);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    } else {
        printf("%s (%s to %s), site %s:\n", period, start, end, site);
        printf("%-22s %-12s %-12s %s\n", "metric", "exact", "published", "");
        cJSON_ArrayForEach(row, out)
        {
            const cJSON *t = cJSON_GetObjectItem(row, "threshold");
            printf("%-22s ", cJSON_GetObjectItem(row, "metric")->valuestring);
            print_number(cJSON_GetObjectItem(row, "exact"));
            putchar(' ');
            if (cJSON_IsTrue(cJSON_GetObjectItem(row, "suppressed")))
                printf("%-12s", "suppressed");
            else
                print_number(cJSON_GetObjectItem(row, "published"));
            if (cJSON_IsNumber(t))
                printf(" (people: under %.0f suppressed, else rounded to %d)", t->valuedouble,
                       PEOPLE_ROUND_BASE);
            putchar('\n');
        }
        if (cJSON_GetArraySize(out) == 0)
            printf("(the metric catalogue is empty: sync with the hub first)\n");
        printf("the next 'empact sync' publishes the 'published' column\n");
    }
    cJSON_Delete(out);
    return EXIT_OK;
}

static int cmd_list(int argc, char **argv, struct sc_ctx *c)
{
    const char *period = NULL, *json = NULL;
    const struct cli_opt opts[] = {
        {"period", 'p', 1, &period}, {"json", 'j', 0, &json}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    char start[11], end[11];
    int rc = cli_parse(argc, argv, "empact", usage_list, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (period != NULL && metrics_period(period, start, end) != 0)
        return sc_bad("--period '%s' is not a period: write a quarter as 2026-Q3 or a year as "
                      "2026",
                      period);
    if ((rc = sc_site(c, argv[optind])) >= 0)
        return rc;
    rc = sc_print_query(sc_prepare(c->db, &e,
                                   "SELECT v.period, v.metric, v.value, v.suppressed, v.updated_at "
                                   "AS updated FROM metric_value v WHERE v.site_id = (SELECT value "
                                   "FROM _empact_meta WHERE key = 'site_id') AND (?1 IS NULL OR "
                                   "v.period = ?1) ORDER BY v.period, v.metric",
                                   "t", period),
                        json != NULL,
                        "no metric values (compute them with 'empact metrics compute')", &e);
    return rc == SYNC_OK ? EXIT_OK : sc_fail(rc, &e);
}

int metrics_main(int argc, char **argv, const struct schema *s)
{
    static const struct sc_command commands[] = {{NULL, "compute", cmd_compute},
                                                 {NULL, "list", cmd_list}};
    return sc_dispatch(argc, argv, s, commands, sizeof(commands) / sizeof(commands[0]),
                       usage_group);
}
