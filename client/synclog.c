/*
 * synclog.c - attempt lines of `empact sync` (see synclog.h).
 *
 * Text:  2026-05-01T10:00:00.123Z empact sync: db=toronto.db site=toronto
 *        attempt=1/6 outcome=retry exit=75 next_retry_s=0.8: cannot reach ...
 * JSON:  {"time":"2026-05-01T10:00:00.123Z","program":"empact","command":"sync",
 *        "db":"toronto.db","site":"toronto","attempt":1,"attempts":6,
 *        "outcome":"retry","exit_code":75,"message":"cannot reach ...",
 *        "next_retry_s":0.8}
 * JSON keys are always present (null when unknown or not applicable); a
 * successful attempt adds "version", "pushed", "pulled", "conflicts", and
 * "bytes_sent" / "bytes_received" (on the network, TLS included),
 * "frame_bytes_sent" / "frame_bytes_received" (the protocol's frames alone),
 * "dictionary" (the compression dictionary's id, 0: none),
 * "own_versions" (versions made of this site's push, not pulled back) and
 * "base_hash" (how base's dataset hash was proved: "kept", "touched", "full").
 */
#include "synclog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <cjson/cJSON.h>

int synclog_format_parse(enum synclog_format *out, const char *s, struct errctx *e)
{
    if (strcmp(s, "text") == 0)
        *out = SYNCLOG_TEXT;
    else if (strcmp(s, "json") == 0)
        *out = SYNCLOG_JSON;
    else
        return errctx_set(e, SYNC_EUSAGE, "--log-format takes text or json, not \"%s\"", s);
    return SYNC_OK;
}

const char *synclog_outcome_name(enum synclog_outcome o)
{
    switch (o) {
    case SYNCLOG_OK:
        return "ok";
    case SYNCLOG_RETRY:
        return "retry";
    case SYNCLOG_FAILED:
        return "failed";
    case SYNCLOG_LOCKED:
        return "locked";
    }
    return "unknown";
}

/* ISO 8601 UTC with milliseconds. */
static void format_time(char out[32], const struct timespec *t)
{
    struct tm tm;
    char sec[24];

    gmtime_r(&t->tv_sec, &tm);
    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", sec, (int)(t->tv_nsec / 1000000) % 1000);
}

static char *json_line(const struct synclog_entry *en, const char *when)
{
    cJSON *o = cJSON_CreateObject();
    char *text, *copy = NULL;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "time", when);
    cJSON_AddStringToObject(o, "program", "empact");
    cJSON_AddStringToObject(o, "command", "sync");
    cJSON_AddStringToObject(o, "db", en->db);
    if (en->site != NULL)
        cJSON_AddStringToObject(o, "site", en->site);
    else
        cJSON_AddNullToObject(o, "site");
    cJSON_AddNumberToObject(o, "attempt", en->attempt);
    cJSON_AddNumberToObject(o, "attempts", en->attempts);
    cJSON_AddStringToObject(o, "outcome", synclog_outcome_name(en->outcome));
    cJSON_AddNumberToObject(o, "exit_code", en->exit_code);
    if (en->message != NULL && en->message[0])
        cJSON_AddStringToObject(o, "message", en->message);
    else
        cJSON_AddNullToObject(o, "message");
    if (en->next_retry_ms >= 0)
        cJSON_AddNumberToObject(o, "next_retry_s", (double)en->next_retry_ms / 1000.0);
    else
        cJSON_AddNullToObject(o, "next_retry_s");
    if (en->result != NULL) {
        cJSON_AddNumberToObject(o, "version", (double)en->result->version);
        cJSON_AddNumberToObject(o, "pushed", en->result->pushed);
        cJSON_AddNumberToObject(o, "pulled", (double)en->result->pulled);
        cJSON_AddNumberToObject(o, "conflicts", (double)en->result->conflicts);
        cJSON_AddNumberToObject(o, "bytes_sent", (double)en->result->wire_out);
        cJSON_AddNumberToObject(o, "bytes_received", (double)en->result->wire_in);
        cJSON_AddNumberToObject(o, "frame_bytes_sent", (double)en->result->frames_out);
        cJSON_AddNumberToObject(o, "frame_bytes_received", (double)en->result->frames_in);
        cJSON_AddNumberToObject(o, "dictionary", (double)en->result->dict);
        cJSON_AddNumberToObject(o, "own_versions", en->result->own_versions);
        if (en->result->hashed != NULL)
            cJSON_AddStringToObject(o, "base_hash", en->result->hashed);
        else
            cJSON_AddNullToObject(o, "base_hash");
    }
    text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (text != NULL)
        copy = strdup(text); /* the caller frees with free(), not cJSON_free() */
    cJSON_free(text);
    return copy;
}

static char *text_line(const struct synclog_entry *en, const char *when)
{
    char retry[48] = "", result[96] = "";
    const char *msg = en->message != NULL ? en->message : "";
    char *out = NULL;

    if (en->next_retry_ms >= 0)
        snprintf(retry, sizeof(retry), " next_retry_s=%.1f", (double)en->next_retry_ms / 1000.0);
    if (en->result != NULL)
        snprintf(result, sizeof(result), " version=%llu pushed=%d pulled=%llu",
                 (unsigned long long)en->result->version, en->result->pushed,
                 (unsigned long long)en->result->pulled);
    if (asprintf(&out, "%s empact sync: db=%s site=%s attempt=%d/%d outcome=%s exit=%d%s%s%s%s",
                 when, en->db, en->site != NULL ? en->site : "-", en->attempt, en->attempts,
                 synclog_outcome_name(en->outcome), en->exit_code, retry, result,
                 msg[0] ? ": " : "", msg) < 0)
        return NULL;
    return out;
}

char *synclog_line(enum synclog_format f, const struct synclog_entry *en)
{
    char when[32];

    format_time(when, &en->when);
    if (f == SYNCLOG_JSON)
        return json_line(en, when);
    return text_line(en, when);
}

static int priority(enum synclog_outcome o)
{
    switch (o) {
    case SYNCLOG_OK:
        return LOG_INFO;
    case SYNCLOG_RETRY:
    case SYNCLOG_LOCKED:
        return LOG_WARNING;
    case SYNCLOG_FAILED:
        break;
    }
    return LOG_ERR;
}

void synclog_emit(enum synclog_format f, int to_syslog, const struct synclog_entry *en)
{
    char *line;

    if (f == SYNCLOG_OFF)
        return;
    if ((line = synclog_line(f, en)) == NULL) {
        fprintf(stderr, "empact: out of memory writing a log line\n");
        return;
    }
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    if (to_syslog) {
        openlog("empact", LOG_PID, LOG_USER);
        syslog(priority(en->outcome), "%s", line);
        closelog();
    }
    free(line);
}
