/*
 * tabular.c - query results as JSON or an aligned text table (tabular.h).
 */
#include "tabular.h"

#include <stdlib.h>
#include <string.h>

cJSON *tabular_rows(sqlite3_stmt *st, struct errctx *e)
{
    cJSON *rows = cJSON_CreateArray();
    int n = sqlite3_column_count(st), step;

    if (rows == NULL) {
        errctx_set(e, SYNC_ENOMEM, "out of memory");
        return NULL;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *row = cJSON_CreateObject(), *v = NULL;
        if (row == NULL || !cJSON_AddItemToArray(rows, row))
            goto oom;
        for (int i = 0; i < n; i++) {
            switch (sqlite3_column_type(st, i)) {
            case SQLITE_NULL:
                v = cJSON_CreateNull();
                break;
            case SQLITE_INTEGER:
            case SQLITE_FLOAT:
                v = cJSON_CreateNumber(sqlite3_column_double(st, i));
                break;
            default:
                v = cJSON_CreateString((const char *)sqlite3_column_text(st, i));
                break;
            }
            if (v == NULL || !cJSON_AddItemToObject(row, sqlite3_column_name(st, i), v))
                goto oom;
        }
    }
    if (step != SQLITE_DONE) {
        errctx_set(e, SYNC_EIO, "reading the database: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
        cJSON_Delete(rows);
        return NULL;
    }
    return rows;
oom:
    cJSON_Delete(rows);
    errctx_set(e, SYNC_ENOMEM, "out of memory");
    return NULL;
}

/* A cell as text: "-" for null, integers without a fraction.  buf holds
 * numbers; strings are returned as they are. */
static const char *cell_text(const cJSON *v, char *buf, size_t size)
{
    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == (double)(long long)d && d > -9e15 && d < 9e15)
            snprintf(buf, size, "%lld", (long long)d);
        else
            snprintf(buf, size, "%.4g", d);
        return buf;
    }
    return "-";
}

void tabular_print(FILE *out, sqlite3_stmt *st, const cJSON *rows, const char *empty_note)
{
    int n = sqlite3_column_count(st);
    size_t *w = calloc((size_t)(n > 0 ? n : 1), sizeof(*w));
    const cJSON *row;
    char buf[64];

    if (cJSON_GetArraySize(rows) == 0 && empty_note != NULL) {
        fprintf(out, "%s\n", empty_note);
        free(w);
        return;
    }
    if (w == NULL)
        return;
    for (int i = 0; i < n; i++)
        w[i] = strlen(sqlite3_column_name(st, i));
    cJSON_ArrayForEach(row, rows)
    {
        for (int i = 0; i < n; i++) {
            size_t l =
                strlen(cell_text(cJSON_GetObjectItemCaseSensitive(row, sqlite3_column_name(st, i)),
                                 buf, sizeof(buf)));
            if (l > w[i])
                w[i] = l;
        }
    }
    for (int i = 0; i < n; i++)
        fprintf(out, "%-*s%s", i + 1 < n ? (int)w[i] : 0, sqlite3_column_name(st, i),
                i + 1 < n ? "  " : "\n");
    cJSON_ArrayForEach(row, rows)
    {
        for (int i = 0; i < n; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, sqlite3_column_name(st, i));
            fprintf(out, "%-*s%s", i + 1 < n ? (int)w[i] : 0, cell_text(v, buf, sizeof(buf)),
                    i + 1 < n ? "  " : "\n");
        }
    }
    free(w);
}

int tabular_query(FILE *out, sqlite3_stmt *st, int json, const char *empty_note, struct errctx *e)
{
    cJSON *rows = tabular_rows(st, e);
    char *text;

    if (rows == NULL)
        return e->code;
    if (json) {
        if ((text = cJSON_Print(rows)) == NULL) {
            cJSON_Delete(rows);
            return errctx_set(e, SYNC_ENOMEM, "out of memory");
        }
        fprintf(out, "%s\n", text);
        free(text);
    } else {
        tabular_print(out, st, rows, empty_note);
    }
    cJSON_Delete(rows);
    return SYNC_OK;
}
