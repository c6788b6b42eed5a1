/*
 * synclog.h - one structured line per attempt of `empact sync`, for the
 * logs of an unattended job: plain text or JSON on stderr (which journald
 * keeps for a systemd service), and optionally the same line to syslog(3).
 */
#ifndef EMPACT_SYNCLOG_H
#define EMPACT_SYNCLOG_H

#include <time.h>

#include "errctx.h"
#include "sync.h"

enum synclog_format {
    SYNCLOG_OFF = 0, /* no attempt lines: a plain `empact sync` prints its error only */
    SYNCLOG_TEXT,    /* TIME empact sync: key=value ...: message */
    SYNCLOG_JSON,    /* one JSON object per line */
};

enum synclog_outcome {
    SYNCLOG_OK,     /* the attempt synced */
    SYNCLOG_RETRY,  /* a network failure; another attempt follows after next_retry_ms */
    SYNCLOG_FAILED, /* the last attempt failed; the job exits with exit_code */
    SYNCLOG_LOCKED, /* another sync or join held the replica's lock; nothing was tried */
};

struct synclog_entry {
    struct timespec when; /* CLOCK_REALTIME of the line */
    const char *db;       /* the replica's path (borrowed) */
    const char *site;     /* site id, NULL when unknown (borrowed) */
    int attempt;          /* 1-based */
    int attempts;         /* the most attempts this run may make */
    enum synclog_outcome outcome;
    int exit_code;                    /* the exit status this attempt stands for */
    const char *message;              /* the error sentence; NULL or "" on success */
    long next_retry_ms;               /* the wait before the next attempt; -1: none */
    const struct sync_result *result; /* on success, else NULL (borrowed) */
};

/* Parses "text" or "json"; SYNC_EUSAGE for anything else. */
int synclog_format_parse(enum synclog_format *out, const char *s, struct errctx *e) SYNC_WUR;

/* The outcome's name in a line: "ok", "retry", "failed", "locked". */
const char *synclog_outcome_name(enum synclog_outcome o);

/* One line for en in format f (not SYNCLOG_OFF), without a newline, in a new
 * string the caller frees with free(); NULL when out of memory. */
char *synclog_line(enum synclog_format f, const struct synclog_entry *en);

/* Writes synclog_line() and a newline to stderr, and with to_syslog also to
 * syslog(3) (ident "empact", facility LOG_USER; LOG_INFO for ok, LOG_WARNING
 * for retry and locked, LOG_ERR for failed).  Nothing for SYNCLOG_OFF. */
void synclog_emit(enum synclog_format f, int to_syslog, const struct synclog_entry *en);

#endif
