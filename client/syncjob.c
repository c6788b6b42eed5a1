/*
 * syncjob.c - the lock, the retry loop and its log lines (see syncjob.h).
 *
 * The lock is held from before the first attempt until after the last, so a
 * timer that fires again while this job waits between attempts starts a
 * second job that exits at once (73) instead of syncing alongside.  Between
 * attempts the replica is closed: the coordinator may edit it meanwhile, and
 * the next attempt sends those edits too.
 */
#include "syncjob.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "limits.h"
#include "lock.h"
#include "replica.h"
#include "testpoint.h"

long syncjob_delay_ms(enum syncjob_wait w, int retry, long base_ms, long cap_ms, uint32_t rnd)
{
    long ceiling = base_ms < cap_ms ? base_ms : cap_ms;

    if (ceiling <= 0)
        return 0;
    if (w == SYNCJOB_WAIT_FIXED)
        return ceiling;
    for (int i = 1; i < retry && ceiling < cap_ms; i++)
        ceiling = ceiling > cap_ms / 2 ? cap_ms : ceiling * 2;
    /* uniform in [0, ceiling]: scale rnd instead of rnd % n, which favours small values */
    return (long)(((uint64_t)rnd * (uint64_t)(ceiling + 1)) >> 32);
}

int syncjob_transient(int rc)
{
    return rc != SYNC_OK && cli_exit_code(rc) == EXIT_TEMPFAIL;
}

int syncjob_options(struct syncjob *j, const char *db, const char *retry, const char *backoff,
                    const char *log_format, const char *to_syslog, struct errctx *e)
{
    memset(j, 0, sizeof(*j));
    j->db = db;
    j->wait = backoff != NULL ? SYNCJOB_WAIT_BACKOFF : SYNCJOB_WAIT_FIXED;
    j->to_syslog = to_syslog != NULL;
    if (retry != NULL) {
        char *end;
        long n;

        errno = 0;
        n = strtol(retry, &end, 10);
        if (errno != 0 || end == retry || *end != '\0' || n < 0 || n > SYNC_RETRY_MAX)
            return errctx_set(e, SYNC_EUSAGE, "--retry takes a number of retries from 0 to %d",
                              SYNC_RETRY_MAX);
        j->retries = (int)n;
    }
    if (log_format != NULL)
        return synclog_format_parse(&j->log, log_format, e);
    if (retry != NULL || to_syslog != NULL)
        j->log = SYNCLOG_TEXT;
    return SYNC_OK;
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

/* One attempt: open, sync, close.  *site gets the site id once known. */
static int attempt_once(const struct syncjob *j, const struct schema *s, char **site,
                        struct sync_result *r, struct errctx *e)
{
    sqlite3 *db = NULL;
    int rc;

    if ((rc = replica_open(&db, j->db, s, e)) != SYNC_OK)
        return rc;
    if (*site == NULL) {
        struct errctx ignored;
        if (replica_meta_get(site, db, "site_id", &ignored) != SYNC_OK)
            *site = NULL;
    }
    rc = sync_run(db, s, r, e);
    replica_close(db);
    return rc;
}

static void log_attempt(const struct syncjob *j, const char *site, int attempt,
                        enum synclog_outcome o, int rc, const struct errctx *e, long next_ms,
                        const struct sync_result *r)
{
    struct synclog_entry en;

    memset(&en, 0, sizeof(en));
    clock_gettime(CLOCK_REALTIME, &en.when);
    en.db = j->db;
    en.site = site;
    en.attempt = attempt;
    en.attempts = j->retries + 1;
    en.outcome = o;
    en.exit_code = cli_exit_code(rc);
    en.message = rc != SYNC_OK ? e->msg : NULL;
    en.next_retry_ms = next_ms;
    en.result = rc == SYNC_OK ? r : NULL;
    synclog_emit(j->log, j->to_syslog, &en);
}

int syncjob_run(const struct syncjob *j, const struct schema *s, struct sync_result *r,
                struct errctx *e)
{
    long base = testpoint_limit("EMPACT_RETRY_BASE_MS", SYNC_RETRY_BASE_MS);
    long cap = testpoint_limit("EMPACT_RETRY_CAP_MS", SYNC_RETRY_CAP_MS);
    struct lock *lk = NULL;
    char *site = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    if ((rc = lock_acquire(&lk, j->db, e)) != SYNC_OK) {
        if (rc == SYNC_ELOCKED)
            log_attempt(j, NULL, 1, SYNCLOG_LOCKED, rc, e, -1, NULL);
        return rc;
    }
    for (int attempt = 1;; attempt++) {
        long next = -1;

        errctx_clear(e);
        rc = attempt_once(j, s, &site, r, e);
        if (rc == SYNC_OK) {
            log_attempt(j, site, attempt, SYNCLOG_OK, rc, e, -1, r);
            break;
        }
        if (syncjob_transient(rc) && attempt <= j->retries)
            next = syncjob_delay_ms(j->wait, attempt, base, cap, arc4random());
        log_attempt(j, site, attempt, next >= 0 ? SYNCLOG_RETRY : SYNCLOG_FAILED, rc, e, next,
                    NULL);
        if (next < 0)
            break;
        sleep_ms(next);
    }
    sqlite3_free(site);
    lock_release(lk);
    return rc;
}
