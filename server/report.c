/*
 * report.c - the cross-site impact report (report.h).
 *
 * report_build() reads hub.db once into a cJSON document; each format is a
 * rendering of that document, so text, CSV, JSON and HTML always hold the
 * same numbers.  Totals add the published values of one period across sites
 * for counts, people and money (never ratios); a site whose value was
 * published suppressed adds nothing and is counted in the total's
 * "suppressed" field, so a total never reveals a suppressed cell.
 *
 * The HTML file is self-contained: inline CSS and SVG drawn here, no script,
 * no external fetch.  Every number in its tables carries data-* attributes
 * naming what it is, so a test can compare the page with the CSV.
 */
#include "report.h"

#include "tabular.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int report_period_ok(const char *p)
{
    size_t n = strlen(p);
    for (int i = 0; i < 4; i++)
        if (p[i] < '0' || p[i] > '9')
            return 0;
    return n == 4 || (n == 7 && p[4] == '-' && p[5] == 'Q' && p[6] >= '1' && p[6] <= '4');
}

/* ---- the data ---------------------------------------------------------- */

/* The catalogue's metrics in the order the EMPaCT model tells them (the
 * table has no order of its own); metrics added later follow by code. */
#define METRIC_LIST                                                                                \
    "' heas_completed heas_in_progress decisions_hospital decisions_provincial "                   \
    "decisions_national "                                                                          \
    "impact_partnerships impact_partners members_engaged compensation_paid feedback_share '"
#define METRIC_ORDER                                                                               \
    "instr(" METRIC_LIST ", ' ' || code || ' ') = 0, instr(" METRIC_LIST                           \
    ", ' ' || code || ' '), code"

/* Appends every row of sql (bound with up to two texts) to arr as objects
 * (tabular.h); a column named is_X becomes the boolean X. */
static int rows_into(sqlite3 *db, cJSON *arr, const char *sql, const char *a, const char *b,
                     struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    cJSON *rows, *row;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EIO, "hub.db: %s", sqlite3_errmsg(db));
    if (a)
        sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    rows = tabular_rows(st, e);
    sqlite3_finalize(st);
    if (rows == NULL)
        return e->code;
    while ((row = cJSON_DetachItemFromArray(rows, 0)) != NULL) {
        cJSON *v;
        cJSON_ArrayForEach(v, row)
        {
            if (strncmp(v->string, "is_", 3) == 0 && cJSON_IsNumber(v)) {
                memmove(v->string, v->string + 3, strlen(v->string + 3) + 1);
                v->type = v->valuedouble != 0 ? cJSON_True : cJSON_False;
            }
        }
        cJSON_AddItemToArray(arr, row);
    }
    cJSON_Delete(rows);
    return SYNC_OK;
}

cJSON *report_build(sqlite3 *db, const struct report_opts *o, struct errctx *e)
{
    cJSON *r = cJSON_CreateObject(), *periods, *metrics, *sites, *values, *totals, *library;
    char from[16], to[16], now[32], stale[32], nowsec[32];
    time_t t = (time_t)o->now;
    struct tm tm;
    int rc;

    /* a year as the upper bound takes in its quarters ("2026-Q4" < "2026-Q9") */
    snprintf(from, sizeof(from), "%s", o->from ? o->from : "0000");
    snprintf(to, sizeof(to), "%s%s", o->to ? o->to : "9999",
             o->to && strlen(o->to) == 4 ? "-Q9" : "");
    snprintf(stale, sizeof(stale), "%lld", o->now - (long long)o->stale_days * 86400);
    snprintf(nowsec, sizeof(nowsec), "%lld", o->now);
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (r == NULL || !cJSON_AddStringToObject(r, "generated_at", now) ||
        !(o->from ? cJSON_AddStringToObject(r, "from", o->from)
                  : cJSON_AddNullToObject(r, "from")) ||
        !(o->to ? cJSON_AddStringToObject(r, "to", o->to) : cJSON_AddNullToObject(r, "to")) ||
        !cJSON_AddNumberToObject(r, "stale_days", o->stale_days) ||
        (periods = cJSON_AddArrayToObject(r, "periods")) == NULL ||
        (metrics = cJSON_AddArrayToObject(r, "metrics")) == NULL ||
        (sites = cJSON_AddArrayToObject(r, "sites")) == NULL ||
        (values = cJSON_AddArrayToObject(r, "values")) == NULL ||
        (totals = cJSON_AddArrayToObject(r, "totals")) == NULL ||
        (library = cJSON_AddArrayToObject(r, "library")) == NULL) {
        cJSON_Delete(r);
        errctx_set(e, SYNC_ENOMEM, "out of memory");
        return NULL;
    }
    if ((rc = rows_into(db, periods,
                        "SELECT DISTINCT period FROM metric_value WHERE period >= ?1 AND period "
                        "<= ?2 ORDER BY period",
                        from, to, e)) != SYNC_OK ||
        (rc =
             rows_into(db, metrics,
                       "SELECT code, name, unit, suppress_below FROM metric ORDER BY " METRIC_ORDER,
                       NULL, NULL, e)) != SYNC_OK ||
        (rc = rows_into(db, sites,
                        "SELECT s.site_id, s.name, s.jurisdiction, strftime('%Y-%m-%dT%H:%M:%SZ', "
                        "seen.synced_at, 'unixepoch') AS last_sync, (CAST(?1 AS INTEGER) - "
                        "seen.synced_at) / 86400 AS days_since_sync, (seen.synced_at IS NULL OR "
                        "seen.synced_at < CAST(?2 AS INTEGER)) AS is_stale FROM site s LEFT JOIN "
                        "_empact_site_seen seen ON seen.site_id = s.site_id ORDER BY s.site_id",
                        nowsec, stale, e)) != SYNC_OK)
        goto fail;
    {
        /* the periods as plain strings */
        cJSON *p, *flat = cJSON_CreateArray();
        if (flat == NULL)
            goto oom;
        cJSON_ArrayForEach(p, periods)
        {
            cJSON_AddItemToArray(flat,
                                 cJSON_CreateString(cJSON_GetObjectItem(p, "period")->valuestring));
        }
        cJSON_ReplaceItemInObjectCaseSensitive(r, "periods", flat);
        periods = flat;
    }
    if ((rc = rows_into(db, values,
                        "SELECT v.site_id AS site, v.period, v.metric, CASE WHEN v.suppressed "
                        "THEN NULL ELSE v.value END AS value, v.suppressed AS is_suppressed FROM "
                        "metric_value v JOIN metric m ON m.code = v.metric WHERE v.period >= ?1 "
                        "AND v.period <= ?2 ORDER BY v.site_id, v.period, " METRIC_ORDER,
                        from, to, e)) != SYNC_OK ||
        (rc = rows_into(db, totals,
                        "SELECT v.period, v.metric, total(CASE WHEN v.suppressed THEN 0 ELSE "
                        "v.value END) AS value, count(*) AS sites, sum(v.suppressed) AS "
                        "suppressed FROM metric_value v JOIN metric m ON m.code = v.metric WHERE "
                        "m.unit <> 'ratio' AND v.period >= ?1 AND v.period <= ?2 GROUP BY "
                        "v.period, v.metric ORDER BY v.period, " METRIC_ORDER,
                        from, to, e)) != SYNC_OK ||
        /* resources in the library by the site that added them and the
         * quarter of that edit (the hub's row stamp of the insert) */
        (rc = rows_into(db, library,
                        "SELECT m._empact_site AS site, strftime('%Y', m._empact_edited_at / 1000, "
                        "'unixepoch') || '-Q' || ((CAST(strftime('%m', m._empact_edited_at / "
                        "1000, 'unixepoch') AS INTEGER) + 2) / 3) AS period, count(*) AS added "
                        "FROM resource r JOIN _empact_rowmeta_resource m ON m.id = r.id GROUP BY "
                        "1, 2 HAVING period >= ?1 AND period <= ?2 ORDER BY 1, 2",
                        from, to, e)) != SYNC_OK)
        goto fail;
    return r;
oom:
    errctx_set(e, SYNC_ENOMEM, "out of memory");
fail:
    cJSON_Delete(r);
    return NULL;
}

/* ---- rendering ----------------------------------------------------------- */

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int flag(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The value row of (site, period, metric), or NULL when not reported. */
static const cJSON *cell(const cJSON *r, const char *site, const char *period, const char *metric)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "values"))
    {
        if (strcmp(str(v, "site"), site) == 0 && strcmp(str(v, "period"), period) == 0 &&
            strcmp(str(v, "metric"), metric) == 0)
            return v;
    }
    return NULL;
}

static const cJSON *total(const cJSON *r, const char *period, const char *metric)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "totals"))
    {
        if (strcmp(str(v, "period"), period) == 0 && strcmp(str(v, "metric"), metric) == 0)
            return v;
    }
    return NULL;
}

/* A number as data (CSV, data-value): shortest exact-enough form. */
static void raw(char *out, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, n, "%.0f", v);
    else
        snprintf(out, n, "%.10g", v);
}

/* A number for people: by the metric's unit. */
static void shown(char *out, size_t n, double v, const char *unit)
{
    if (unit != NULL && strcmp(unit, "ratio") == 0)
        snprintf(out, n, "%.0f%%", v * 100);
    else if (unit != NULL && strcmp(unit, "CAD") == 0)
        snprintf(out, n, "$%.2f", v);
    else
        raw(out, n, v);
}

/* A cell's text: the shown value, "suppressed", or "-" when not reported. */
static void cell_text(char *out, size_t n, const cJSON *c, const char *unit)
{
    if (c == NULL)
        snprintf(out, n, "-");
    else if (flag(c, "suppressed"))
        snprintf(out, n, "suppressed");
    else if (isnan(num(c, "value")))
        snprintf(out, n, "n/a");
    else
        shown(out, n, num(c, "value"), unit);
}

static void total_text(char *out, size_t n, const cJSON *t, const char *unit)
{
    char v[64];
    if (t == NULL) {
        snprintf(out, n, "-");
        return;
    }
    shown(v, sizeof(v), num(t, "value"), unit);
    if (num(t, "suppressed") > 0)
        snprintf(out, n, "%s (+%.0f suppressed)", v, num(t, "suppressed"));
    else
        snprintf(out, n, "%s", v);
}

static void render_text(sqlite3_str *o, const cJSON *r)
{
    const cJSON *p, *m, *s, *sites = cJSON_GetObjectItem(r, "sites");
    char buf[96];

    sqlite3_str_appendf(o, "EMPaCT cross-site impact report, generated %s\n",
                        str(r, "generated_at"));
    sqlite3_str_appendf(o, "Periods: %s to %s\n\n", str(r, "from") ? str(r, "from") : "first",
                        str(r, "to") ? str(r, "to") : "last");
    sqlite3_str_appendf(o, "Sites (stale: no successful sync for more than %.0f days)\n",
                        num(r, "stale_days"));
    cJSON_ArrayForEach(s, sites)
    {
        if (str(s, "last_sync"))
            snprintf(buf, sizeof(buf), "%s (%.0f days ago)", str(s, "last_sync"),
                     num(s, "days_since_sync"));
        else
            snprintf(buf, sizeof(buf), "never");
        sqlite3_str_appendf(o, "  %-16s %-28s last sync %s%s\n", str(s, "site_id"),
                            str(s, "name") ? str(s, "name") : "", buf,
                            flag(s, "stale") ? "  STALE" : "");
    }
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r, "periods"))
    {
        sqlite3_str_appendf(o, "\n%s\n  %-44s", p->valuestring, "metric");
        cJSON_ArrayForEach(s, sites)
        {
            sqlite3_str_appendf(o, " %14.14s", str(s, "site_id"));
        }
        sqlite3_str_appendf(o, " %24s\n", "all sites");
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(r, "metrics"))
        {
            const char *code = str(m, "code");
            sqlite3_str_appendf(o, "  %-44.44s", str(m, "name"));
            cJSON_ArrayForEach(s, sites)
            {
                cell_text(buf, sizeof(buf), cell(r, str(s, "site_id"), p->valuestring, code),
                          str(m, "unit"));
                sqlite3_str_appendf(o, " %14s", buf);
            }
            total_text(buf, sizeof(buf), total(r, p->valuestring, code), str(m, "unit"));
            sqlite3_str_appendf(o, " %24s\n", buf);
        }
    }
    sqlite3_str_appendall(o, "\nResource library: resources added, by site and quarter\n");
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r, "library"))
    {
        sqlite3_str_appendf(o, "  %-16s %-8s %6.0f\n", str(p, "site"), str(p, "period"),
                            num(p, "added"));
    }
    if (cJSON_GetArraySize(cJSON_GetObjectItem(r, "library")) == 0)
        sqlite3_str_appendall(o, "  (none in these periods)\n");
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(sqlite3_str *o, const char *v, int last)
{
    if (v != NULL && strpbrk(v, ",\"\r\n") != NULL) {
        sqlite3_str_appendchar(o, 1, '"');
        for (; *v; v++)
            sqlite3_str_appendchar(o, *v == '"' ? 2 : 1, *v);
        sqlite3_str_appendchar(o, 1, '"');
    } else if (v != NULL) {
        sqlite3_str_appendall(o, v);
    }
    sqlite3_str_appendall(o, last ? "\r\n" : ",");
}

static void csv_row(sqlite3_str *o, const char *kind, const char *site, const char *period,
                    const char *metric, const char *value, const char *note)
{
    csv_field(o, kind, 0);
    csv_field(o, site, 0);
    csv_field(o, period, 0);
    csv_field(o, metric, 0);
    csv_field(o, value, 0);
    csv_field(o, note, 1);
}

static void render_csv(sqlite3_str *o, const cJSON *r)
{
    const cJSON *v;
    char val[64], note[64];

    csv_row(o, "kind", "site", "period", "metric", "value", "note");
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "sites"))
    {
        csv_row(o, "last_sync", str(v, "site_id"), "", "last_sync", str(v, "last_sync"),
                flag(v, "stale") ? "stale" : "");
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "values"))
    {
        val[0] = '\0';
        if (!flag(v, "suppressed") && !isnan(num(v, "value")))
            raw(val, sizeof(val), num(v, "value"));
        csv_row(o, "value", str(v, "site"), str(v, "period"), str(v, "metric"), val,
                flag(v, "suppressed") ? "suppressed" : "");
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "totals"))
    {
        raw(val, sizeof(val), num(v, "value"));
        snprintf(note, sizeof(note), "%.0f suppressed", num(v, "suppressed"));
        csv_row(o, "total", "", str(v, "period"), str(v, "metric"), val,
                num(v, "suppressed") > 0 ? note : "");
    }
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(r, "library"))
    {
        raw(val, sizeof(val), num(v, "added"));
        csv_row(o, "library", str(v, "site"), str(v, "period"), "resources_added", val, "");
    }
}

static void html_esc(sqlite3_str *o, const char *s)
{
    for (; s != NULL && *s; s++) {
        switch (*s) {
        case '&':
            sqlite3_str_appendall(o, "&amp;");
            break;
        case '<':
            sqlite3_str_appendall(o, "&lt;");
            break;
        case '>':
            sqlite3_str_appendall(o, "&gt;");
            break;
        case '"':
            sqlite3_str_appendall(o, "&quot;");
            break;
        case '\'':
            sqlite3_str_appendall(o, "&#39;");
            break;
        default:
            sqlite3_str_appendchar(o, 1, *s);
        }
    }
}

static const char *const palette[] = {"#1b6ca8", "#e07a1f", "#2e8b57", "#b03a5b",
                                      "#6a4c93", "#8a6d1d", "#3d8fb0", "#777777"};
#define NPALETTE (sizeof(palette) / sizeof(palette[0]))

/* A grouped bar chart: ncat categories (x), nser series (one bar each per
 * category) with values v[s * ncat + c] (NAN: no bar). */
static void svg_bars(sqlite3_str *o, const char *title, const char *const *cats, int ncat,
                     const char *const *sers, int nser, const double *v, int percent)
{
    const double W = 720, H = 280, L = 60, R = 150, T = 20, B = 40;
    double max = 0, step, plot_w = W - L - R, plot_h = H - T - B;
    int nb = nser > 0 ? nser : 1;

    for (int i = 0; i < ncat * nser; i++)
        if (!isnan(v[i]) && v[i] > max)
            max = v[i];
    if (percent)
        max = 1;
    else if (max <= 8) /* small counts: whole-number ticks */
        max = max <= 4 ? 4 : 8;
    else { /* a round top: 1, 2 or 5 times a power of ten */
        double mag = pow(10, floor(log10(max))), f = max / mag;
        max = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
    }
    step = ncat > 0 ? plot_w / ncat : plot_w;
    sqlite3_str_appendf(o,
                        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"%.0f\" "
                        "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\"><title>",
                        W, H, W, H);
    html_esc(o, title);
    sqlite3_str_appendall(o, "</title>");
    for (int k = 0; k <= 4; k++) { /* grid and y labels */
        double y = T + plot_h - plot_h * k / 4, val = max * k / 4;
        char lab[32];
        if (percent)
            snprintf(lab, sizeof(lab), "%.0f%%", val * 100);
        else
            raw(lab, sizeof(lab), val);
        sqlite3_str_appendf(o,
                            "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" "
                            "stroke=\"#ddd\"/><text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" "
                            "text-anchor=\"end\">%s</text>",
                            L, y, L + plot_w, y, L - 6, y + 4, lab);
    }
    for (int c = 0; c < ncat; c++) {
        double x0 = L + step * c, bw = step * 0.8 / nb;
        for (int s = 0; s < nser; s++) {
            double val = v[s * ncat + c], h;
            if (isnan(val))
                continue;
            h = plot_h * (val > max ? 1 : val < 0 ? 0 : val / max);
            sqlite3_str_appendf(o,
                                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                                "fill=\"%s\"><title>",
                                x0 + step * 0.1 + bw * s, T + plot_h - h, bw > 1 ? bw - 1 : bw, h,
                                palette[s % NPALETTE]);
            html_esc(o, sers[s]);
            sqlite3_str_appendf(o, ", ");
            html_esc(o, cats[c]);
            if (percent)
                sqlite3_str_appendf(o, ": %.0f%%</title></rect>", val * 100);
            else
                sqlite3_str_appendf(o, ": %g</title></rect>", val);
        }
        sqlite3_str_appendf(o,
                            "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" "
                            "text-anchor=\"middle\">",
                            x0 + step / 2, T + plot_h + 16);
        html_esc(o, cats[c]);
        sqlite3_str_appendall(o, "</text>");
    }
    for (int s = 0; s < nser; s++) { /* legend */
        sqlite3_str_appendf(o,
                            "<rect x=\"%.0f\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                            "<text x=\"%.0f\" y=\"%d\" font-size=\"12\">",
                            W - R + 16, (int)T + 18 * s, palette[s % NPALETTE], W - R + 34,
                            (int)T + 18 * s + 10);
        html_esc(o, sers[s]);
        sqlite3_str_appendall(o, "</text>");
    }
    if (ncat == 0)
        sqlite3_str_appendf(o, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"13\">no data</text>",
                            L + 10, T + plot_h / 2);
    sqlite3_str_appendall(o, "</svg>\n");
}

/* Names of the array's items (key of each object, or the strings). */
static int names(const cJSON *arr, const char *key, const char **out, int max)
{
    const cJSON *v;
    int n = 0;
    cJSON_ArrayForEach(v, arr)
    {
        if (n < max)
            out[n++] = key ? str(v, key) : v->valuestring;
    }
    return n;
}

#define MAXN 256

/* The periods the charts show: the quarters when there are any, else the
 * years, so no chart adds a year to its own quarters. */
static int chart_periods(const cJSON *r, const char **out, int max)
{
    const char *all[MAXN];
    int n = names(cJSON_GetObjectItem(r, "periods"), NULL, all, MAXN), k = 0, quarters = 0;

    for (int i = 0; i < n; i++)
        quarters |= strlen(all[i]) == 7;
    for (int i = 0; i < n && k < max; i++)
        if ((strlen(all[i]) == 7) == quarters)
            out[k++] = all[i];
    return k;
}

static int in_list(const char *const *list, int n, const char *v)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], v) == 0)
            return 1;
    return 0;
}

/* One chart of a metric: periods on x, a bar per site. */
static void chart_metric(sqlite3_str *o, const cJSON *r, const char *title, const char *metric,
                         int percent)
{
    const char *cats[MAXN], *sers[MAXN];
    int nc = chart_periods(r, cats, MAXN);
    int ns = names(cJSON_GetObjectItem(r, "sites"), "site_id", sers, MAXN);
    double *v = calloc((size_t)(nc * ns + 1), sizeof(*v));

    if (v == NULL)
        return;
    for (int s = 0; s < ns; s++) {
        for (int c = 0; c < nc; c++) {
            const cJSON *x = cell(r, sers[s], cats[c], metric);
            v[s * nc + c] = x && !flag(x, "suppressed") ? num(x, "value") : NAN;
        }
    }
    sqlite3_str_appendall(o, "<h3>");
    html_esc(o, title);
    sqlite3_str_appendall(o, "</h3>\n");
    svg_bars(o, title, cats, nc, sers, ns, v, percent);
    free(v);
}

/* Decisions informed by level: a bar per level for each site, added over
 * the chart periods (decisions are counted in the period they were taken). */
static void chart_decisions(sqlite3_str *o, const cJSON *r)
{
    static const char *const codes[] = {"decisions_hospital", "decisions_provincial",
                                        "decisions_national"};
    static const char *const levels[] = {"hospital", "provincial-regional", "national"};
    const char *sites[MAXN], *periods[MAXN];
    int ns = names(cJSON_GetObjectItem(r, "sites"), "site_id", sites, MAXN);
    int np = chart_periods(r, periods, MAXN);
    double *v = calloc((size_t)(3 * ns + 1), sizeof(*v));
    const cJSON *x;

    if (v == NULL)
        return;
    for (int i = 0; i < 3 * ns; i++)
        v[i] = NAN;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(r, "values"))
    {
        for (int l = 0; l < 3; l++) {
            if (strcmp(str(x, "metric"), codes[l]) != 0 || flag(x, "suppressed") ||
                !in_list(periods, np, str(x, "period")))
                continue;
            for (int s = 0; s < ns; s++)
                if (strcmp(str(x, "site"), sites[s]) == 0)
                    v[l * ns + s] = (isnan(v[l * ns + s]) ? 0 : v[l * ns + s]) + num(x, "value");
        }
    }
    sqlite3_str_appendall(o, "<h3>Decisions informed, by level (the periods charted)</h3>\n");
    svg_bars(o, "Decisions informed by level", sites, ns, levels, 3, v, 0);
    free(v);
}

static void render_html(sqlite3_str *o, const cJSON *r)
{
    const cJSON *p, *m, *s, *sites = cJSON_GetObjectItem(r, "sites");
    char buf[96], rv[64];

    sqlite3_str_appendall(
        o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<title>EMPaCT cross-site impact report</title><style>"
           "body{font-family:sans-serif;margin:2em;color:#222}"
           "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
           "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}"
           "th:first-child,td:first-child{text-align:left}"
           ".stale{color:#b00020;font-weight:bold}.suppressed{color:#888;font-style:italic}"
           "</style></head><body>\n<h1>EMPaCT cross-site impact report</h1>\n<p>Generated ");
    html_esc(o, str(r, "generated_at"));
    sqlite3_str_appendall(o, "; periods ");
    html_esc(o, str(r, "from") ? str(r, "from") : "from the first");
    sqlite3_str_appendall(o, " to ");
    html_esc(o, str(r, "to") ? str(r, "to") : "the last");
    sqlite3_str_appendall(o, ". Counts of people below the catalogue's threshold are published "
                             "suppressed by the sites and never shown; totals add only what was "
                             "published.</p>\n<h2>Sites</h2>\n<table><tr><th>site</th><th>name"
                             "</th><th>jurisdiction</th><th>last successful sync</th></tr>\n");
    cJSON_ArrayForEach(s, sites)
    {
        sqlite3_str_appendall(o, "<tr><td>");
        html_esc(o, str(s, "site_id"));
        sqlite3_str_appendall(o, "</td><td>");
        html_esc(o, str(s, "name"));
        sqlite3_str_appendall(o, "</td><td>");
        html_esc(o, str(s, "jurisdiction"));
        sqlite3_str_appendf(o, "</td><td data-kind=\"last_sync\" data-site=\"");
        html_esc(o, str(s, "site_id"));
        sqlite3_str_appendall(o, "\" data-value=\"");
        html_esc(o, str(s, "last_sync") ? str(s, "last_sync") : "");
        sqlite3_str_appendf(o, "\"%s>", flag(s, "stale") ? " class=\"stale\"" : "");
        html_esc(o, str(s, "last_sync") ? str(s, "last_sync") : "never");
        if (flag(s, "stale"))
            sqlite3_str_appendall(o, " (stale)");
        sqlite3_str_appendall(o, "</td></tr>\n");
    }
    sqlite3_str_appendall(o, "</table>\n<h2>Charts</h2>\n");
    chart_metric(o, r, "HEAs completed, per site and period", "heas_completed", 0);
    chart_decisions(o, r);
    chart_metric(o, r, "Compensation paid to members (CAD), per site and period",
                 "compensation_paid", 0);
    chart_metric(o, r, "Partner feedback returned (share of reported HEAs)", "feedback_share", 1);
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r, "periods"))
    {
        sqlite3_str_appendall(o, "<h2>");
        html_esc(o, p->valuestring);
        sqlite3_str_appendall(o, "</h2>\n<table><tr><th>metric</th>");
        cJSON_ArrayForEach(s, sites)
        {
            sqlite3_str_appendall(o, "<th>");
            html_esc(o, str(s, "site_id"));
            sqlite3_str_appendall(o, "</th>");
        }
        sqlite3_str_appendall(o, "<th>all sites</th></tr>\n");
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(r, "metrics"))
        {
            const char *code = str(m, "code");
            const cJSON *t = total(r, p->valuestring, code);
            sqlite3_str_appendall(o, "<tr><td>");
            html_esc(o, str(m, "name"));
            sqlite3_str_appendall(o, "</td>");
            cJSON_ArrayForEach(s, sites)
            {
                const cJSON *c = cell(r, str(s, "site_id"), p->valuestring, code);
                cell_text(buf, sizeof(buf), c, str(m, "unit"));
                rv[0] = '\0';
                if (c != NULL && !flag(c, "suppressed") && !isnan(num(c, "value")))
                    raw(rv, sizeof(rv), num(c, "value"));
                if (c == NULL) {
                    sqlite3_str_appendall(o, "<td>-</td>");
                    continue;
                }
                sqlite3_str_appendall(o, "<td data-kind=\"value\" data-site=\"");
                html_esc(o, str(s, "site_id"));
                sqlite3_str_appendall(o, "\" data-period=\"");
                html_esc(o, p->valuestring);
                sqlite3_str_appendf(o, "\" data-metric=\"%s\" data-value=\"%s\"%s>", code, rv,
                                    flag(c, "suppressed") ? " class=\"suppressed\"" : "");
                html_esc(o, buf);
                sqlite3_str_appendall(o, "</td>");
            }
            total_text(buf, sizeof(buf), t, str(m, "unit"));
            if (t != NULL) {
                raw(rv, sizeof(rv), num(t, "value"));
                sqlite3_str_appendall(o, "<td data-kind=\"total\" data-period=\"");
                html_esc(o, p->valuestring);
                sqlite3_str_appendf(o, "\" data-metric=\"%s\" data-value=\"%s\">", code, rv);
            } else {
                sqlite3_str_appendall(o, "<td>");
            }
            html_esc(o, buf);
            sqlite3_str_appendall(o, "</td></tr>\n");
        }
        sqlite3_str_appendall(o, "</table>\n");
    }
    sqlite3_str_appendall(o, "<h2>Resource library: resources added by site and quarter</h2>\n"
                             "<table><tr><th>site</th><th>quarter</th><th>added</th></tr>\n");
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(r, "library"))
    {
        raw(rv, sizeof(rv), num(p, "added"));
        sqlite3_str_appendall(o, "<tr><td>");
        html_esc(o, str(p, "site"));
        sqlite3_str_appendall(o, "</td><td>");
        html_esc(o, str(p, "period"));
        sqlite3_str_appendall(o, "</td><td data-kind=\"library\" data-site=\"");
        html_esc(o, str(p, "site"));
        sqlite3_str_appendall(o, "\" data-period=\"");
        html_esc(o, str(p, "period"));
        sqlite3_str_appendf(
            o, "\" data-metric=\"resources_added\" data-value=\"%s\">%s</td></tr>\n", rv, rv);
    }
    sqlite3_str_appendall(o, "</table>\n</body></html>\n");
}

char *report_render(const cJSON *r, const char *format, struct errctx *e)
{
    sqlite3_str *o = sqlite3_str_new(NULL);
    char *out;

    if (strcmp(format, "json") == 0) {
        char *j = cJSON_Print(r);
        if (j != NULL)
            sqlite3_str_appendf(o, "%s\n", j);
        free(j);
    } else if (strcmp(format, "csv") == 0) {
        render_csv(o, r);
    } else if (strcmp(format, "html") == 0) {
        render_html(o, r);
    } else {
        render_text(o, r);
    }
    if (sqlite3_str_errcode(o) != SQLITE_OK) {
        sqlite3_free(sqlite3_str_finish(o));
        errctx_set(e, SYNC_ENOMEM, "out of memory writing the report");
        return NULL;
    }
    out = sqlite3_str_finish(o);
    if (out == NULL)
        errctx_set(e, SYNC_ENOMEM, "out of memory writing the report");
    return out;
}
