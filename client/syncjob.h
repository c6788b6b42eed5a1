/*
 * syncjob.h - `empact sync` as an unattended job: the replica's lock, then
 * one sync, retried after network failures with a wait between attempts,
 * and one log line per attempt (synclog.h).
 */
#ifndef EMPACT_SYNCJOB_H
#define EMPACT_SYNCJOB_H

#include <stdint.h>

#include "errctx.h"
#include "schema.h"
#include "sync.h"
#include "synclog.h"

/* How long to wait before a retry. */
enum syncjob_wait {
    SYNCJOB_WAIT_FIXED,   /* the base delay every time */
    SYNCJOB_WAIT_BACKOFF, /* exponential backoff with full jitter */
};

struct syncjob {
    const char *db;          /* the replica's path (borrowed) */
    int retries;             /* attempts after the first, for network failures only */
    enum syncjob_wait wait;  /* how to wait between attempts */
    enum synclog_format log; /* attempt lines on stderr; SYNCLOG_OFF for none */
    int to_syslog;           /* the same lines to syslog(3) too */
};

/* Fills j from the option values of `empact sync` (each NULL when not
 * given): retry "N" (0 .. SYNC_RETRY_MAX), backoff, log_format "text" or
 * "json", to_syslog.  Attempt lines are on when any of --retry, --log-format
 * or --syslog is given (text unless --log-format json); otherwise off, and a
 * plain `empact sync` prints only its error, as it always did.  SYNC_EUSAGE
 * with the reason for a bad value. */
int syncjob_options(struct syncjob *j, const char *db, const char *retry, const char *backoff,
                    const char *log_format, const char *to_syslog, struct errctx *e) SYNC_WUR;

/* Takes the replica's lock (SYNC_ELOCKED at once if another sync or join
 * holds it), then syncs; a failure of the network class (exit 75: hub
 * unreachable, timeout, connection lost) is tried again up to j->retries
 * times, the replica closed while waiting.  A refusal, bad data or local
 * error is never retried.  *r is the successful attempt's result; e the
 * last failure's sentence.  The lock is released before returning. */
int syncjob_run(const struct syncjob *j, const struct schema *s, struct sync_result *r,
                struct errctx *e) SYNC_WUR;

/* The wait in milliseconds before retry number `retry` (1 = the first):
 * fixed: min(base, cap); backoff: uniform in [0, min(cap, base * 2^(retry-1))]
 * ("full jitter"), drawn from rnd, a uniformly random 32-bit number. */
long syncjob_delay_ms(enum syncjob_wait w, int retry, long base_ms, long cap_ms, uint32_t rnd);

/* 1 when a sync that failed with rc may succeed if tried again soon: the
 * codes that exit 75 (EX_TEMPFAIL). */
int syncjob_transient(int rc);

#endif
