/*
 * status.c - per-site sync status for the central team and for monitoring
 * (see status.h).
 *
 * Sources in hub.db: _empact_site_cert (who is enrolled, revoked), site
 * (names), _empact_site_seen (when the last sync ended, the head the site
 * pulled to then), _empact_push (pushes, by created_at), _empact_conflict
 * (entries where the site's input lost, by created_at) and _empact_refusal
 * (refused pushes and connections).  Lag = the hub's head version minus the
 * version the site pulled to: how many versions it has not seen.
 */
#include "status.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hub.h"

int status_is_stale(long long synced_at, long long now, int stale_hours)
{
    return synced_at < 0 || now - synced_at > (long long)stale_hours * 3600;
}

static void iso_time(char out[32], long long t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One site row of the query in status_build() into a JSON object. */
static int site_add(cJSON *arr, sqlite3_stmt *st, uint64_t head, long long now, int stale_hours,
                    int *nstale)
{
    cJSON *o = cJSON_CreateObject();
    int revoked = sqlite3_column_int(st, 2), stale;
    long long synced = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
    char when[32];

    if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return SYNC_ENOMEM;
    }
    stale = !revoked && status_is_stale(synced, now, stale_hours);
    *nstale += stale;
    cJSON_AddStringToObject(o, "site_id", (const char *)sqlite3_column_text(st, 0));
    if (sqlite3_column_type(st, 1) == SQLITE_NULL)
        cJSON_AddNullToObject(o, "name");
    else
        cJSON_AddStringToObject(o, "name", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddBoolToObject(o, "revoked", revoked);
    if (synced < 0) {
        cJSON_AddNullToObject(o, "last_sync");
        cJSON_AddNullToObject(o, "hours_since_sync");
    } else {
        iso_time(when, synced);
        cJSON_AddStringToObject(o, "last_sync", when);
        cJSON_AddNumberToObject(o, "hours_since_sync", (double)((now - synced) / 360) / 10.0);
    }
    if (sqlite3_column_type(st, 4) == SQLITE_NULL) {
        cJSON_AddNullToObject(o, "synced_version");
        cJSON_AddNullToObject(o, "lag");
    } else {
        uint64_t v = (uint64_t)sqlite3_column_int64(st, 4);
        cJSON_AddNumberToObject(o, "synced_version", (double)v);
        cJSON_AddNumberToObject(o, "lag", v < head ? (double)(head - v) : 0.0);
    }
    cJSON_AddNumberToObject(o, "pushes_24h", (double)sqlite3_column_int64(st, 5));
    cJSON_AddNumberToObject(o, "conflicts_24h", (double)sqlite3_column_int64(st, 6));
    cJSON_AddNumberToObject(o, "refusals_24h", (double)sqlite3_column_int64(st, 7));
    cJSON_AddBoolToObject(o, "stale", stale);
    return SYNC_OK;
}

cJSON *status_build(sqlite3 *rdb, long long now, int stale_hours, int *nstale, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    cJSON *root = NULL, *arr;
    uint64_t head = 0;
    char when[32];
    int rc, step;

    *nstale = 0;
    if (sqlite3_exec(rdb, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        errctx_set(e, SYNC_EIO, "hub database: %s", sqlite3_errmsg(rdb));
        return NULL;
    }
    if ((rc = hub_head(rdb, &head, e)) != SYNC_OK)
        goto out;
    if (sqlite3_prepare_v2(
            rdb,
            "SELECT c.site_id, s.name, c.revoked, ss.synced_at, ss.version,"
            " (SELECT count(*) FROM _empact_push p WHERE p.site_id = c.site_id AND"
            "  p.created_at > ?1),"
            " (SELECT count(*) FROM _empact_conflict k WHERE k.loser_site = c.site_id AND"
            "  k.created_at > ?1),"
            " (SELECT count(*) FROM _empact_refusal r WHERE r.site_id = c.site_id AND r.at > ?1)"
            " FROM _empact_site_cert c LEFT JOIN site s ON s.site_id = c.site_id"
            " LEFT JOIN _empact_site_seen ss ON ss.site_id = c.site_id ORDER BY c.site_id",
            -1, &st, NULL) != SQLITE_OK) {
        errctx_set(e, SYNC_EIO, "hub database: reading the sites: %s", sqlite3_errmsg(rdb));
        goto out;
    }
    sqlite3_bind_int64(st, 1, now - STATUS_WINDOW_SECONDS);
    if ((root = cJSON_CreateObject()) == NULL ||
        cJSON_AddNumberToObject(root, "head_version", (double)head) == NULL)
        goto nomem;
    iso_time(when, now);
    cJSON_AddStringToObject(root, "generated_at", when);
    cJSON_AddNumberToObject(root, "stale_hours", stale_hours);
    if ((arr = cJSON_AddArrayToObject(root, "sites")) == NULL)
        goto nomem;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (site_add(arr, st, head, now, stale_hours, nstale) != SYNC_OK)
            goto nomem;
    }
    if (step != SQLITE_DONE) {
        errctx_set(e, SYNC_EIO, "hub database: reading the sites: %s", sqlite3_errmsg(rdb));
        cJSON_Delete(root);
        root = NULL;
        goto out;
    }
    cJSON_AddNumberToObject(root, "stale_sites", *nstale);
    goto out;
nomem:
    errctx_set(e, SYNC_ENOMEM, "out of memory");
    cJSON_Delete(root);
    root = NULL;
out:
    sqlite3_finalize(st);
    (void)sqlite3_exec(rdb, "COMMIT", NULL, NULL, NULL);
    return root;
}

#define STATUS_NCOL 8

/* The text of column col for one site object. */
static const char *cell(const cJSON *o, int col, char *num, size_t numsz)
{
    static const char *const keys[STATUS_NCOL] = {"site_id",      "last_sync",  "synced_version",
                                                  "lag",          "pushes_24h", "conflicts_24h",
                                                  "refusals_24h", "stale"};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[col]);

    if (col == STATUS_NCOL - 1) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "revoked")))
            return "revoked";
        return cJSON_IsTrue(v) ? "STALE" : "ok";
    }
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        snprintf(num, numsz, "%.0f", v->valuedouble);
        return num;
    }
    return col == 1 ? "never" : "-";
}

void status_print(const cJSON *st)
{
    static const char *const head[STATUS_NCOL] = {"SITE",         "LAST SYNC",  "VERSION",
                                                  "LAG",          "PUSHES/24H", "CONFLICTS/24H",
                                                  "REFUSALS/24H", "STATE"};
    const cJSON *sites = cJSON_GetObjectItemCaseSensitive(st, "sites"), *o;
    int width[STATUS_NCOL];
    char num[32];

    printf("hub head version %.0f; a site is stale after %.0f hours without a successful sync\n",
           cJSON_GetObjectItemCaseSensitive(st, "head_version")->valuedouble,
           cJSON_GetObjectItemCaseSensitive(st, "stale_hours")->valuedouble);
    if (cJSON_GetArraySize(sites) == 0) {
        printf("no sites enrolled\n");
        return;
    }
    for (int c = 0; c < STATUS_NCOL; c++)
        width[c] = (int)strlen(head[c]);
    cJSON_ArrayForEach(o, sites)
    {
        for (int c = 0; c < STATUS_NCOL; c++) {
            int w = (int)strlen(cell(o, c, num, sizeof(num)));
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (int c = 0; c < STATUS_NCOL; c++)
        printf("%s%-*s", c ? "  " : "", c < STATUS_NCOL - 1 ? width[c] : 0, head[c]);
    printf("\n");
    cJSON_ArrayForEach(o, sites)
    {
        for (int c = 0; c < STATUS_NCOL; c++)
            printf("%s%-*s", c ? "  " : "", c < STATUS_NCOL - 1 ? width[c] : 0,
                   cell(o, c, num, sizeof(num)));
        printf("\n");
    }
    printf("%.0f of %d sites stale\n",
           cJSON_GetObjectItemCaseSensitive(st, "stale_sites")->valuedouble,
           cJSON_GetArraySize(sites));
}
