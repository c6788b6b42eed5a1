/*
 * test_syncjob.c - the parts of the unattended sync job that need no hub:
 * the wait before each retry (fixed, and exponential backoff with full
 * jitter, capped), which failures are retried, the option parser, the
 * attempt lines (text and JSON) and the replica's lock file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "lock.h"
#include "syncjob.h"
#include "synclog.h"

static void test_delay_fixed(void **state)
{
    (void)state;
    for (int retry = 1; retry < 10; retry++)
        assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_FIXED, retry, 1000, 60000, 12345), 1000);
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_FIXED, 1, 5000, 2000, 0), 2000); /* capped */
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_FIXED, 1, 0, 2000, 7), 0);
}

static void test_delay_backoff_bounds(void **state)
{
    (void)state;
    /* the largest random number reaches the ceiling, 0 gives 0 */
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 1, 1000, 60000, UINT32_MAX), 1000);
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 2, 1000, 60000, UINT32_MAX), 2000);
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 5, 1000, 60000, UINT32_MAX), 16000);
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 7, 1000, 60000, UINT32_MAX), 60000);
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 100, 1000, 60000, UINT32_MAX), 60000);
    assert_int_equal(syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 3, 1000, 60000, 0), 0);
    /* half the range gives about half the ceiling */
    long mid = syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, 3, 1000, 60000, UINT32_MAX / 2);
    assert_true(mid >= 1999 && mid <= 2001);
    /* every draw stays in [0, ceiling] */
    for (uint32_t r = 0; r < UINT32_MAX - 99999999u; r += 99999989u)
        for (int retry = 1; retry < 12; retry++) {
            long d = syncjob_delay_ms(SYNCJOB_WAIT_BACKOFF, retry, 1000, 60000, r);
            long ceiling = 1000L << (retry - 1);
            assert_true(d >= 0 && d <= (ceiling < 60000 ? ceiling : 60000));
        }
}

static void test_transient(void **state)
{
    (void)state;
    assert_true(syncjob_transient(SYNC_ENET));
    assert_true(syncjob_transient(SYNC_EPROTO));
    assert_false(syncjob_transient(SYNC_OK));
    assert_false(syncjob_transient(SYNC_EREFUSED));
    assert_false(syncjob_transient(SYNC_ETLS));
    assert_false(syncjob_transient(SYNC_ESCHEMA));
    assert_false(syncjob_transient(SYNC_EDATA));
    assert_false(syncjob_transient(SYNC_EIO));
    assert_false(syncjob_transient(SYNC_ELOCKED));
}

static void test_options(void **state)
{
    struct syncjob j;
    struct errctx e = {0, ""};
    (void)state;

    assert_int_equal(syncjob_options(&j, "a.db", NULL, NULL, NULL, NULL, &e), SYNC_OK);
    assert_int_equal(j.log, SYNCLOG_OFF);
    assert_int_equal(j.retries, 0);
    assert_int_equal(syncjob_options(&j, "a.db", "5", "1", NULL, NULL, &e), SYNC_OK);
    assert_int_equal(j.retries, 5);
    assert_int_equal(j.wait, SYNCJOB_WAIT_BACKOFF);
    assert_int_equal(j.log, SYNCLOG_TEXT);
    assert_int_equal(syncjob_options(&j, "a.db", NULL, NULL, "json", NULL, &e), SYNC_OK);
    assert_int_equal(j.log, SYNCLOG_JSON);
    assert_int_equal(syncjob_options(&j, "a.db", NULL, NULL, NULL, "1", &e), SYNC_OK);
    assert_int_equal(j.log, SYNCLOG_TEXT);
    assert_true(j.to_syslog);
    assert_int_equal(syncjob_options(&j, "a.db", "-1", NULL, NULL, NULL, &e), SYNC_EUSAGE);
    assert_int_equal(syncjob_options(&j, "a.db", "101", NULL, NULL, NULL, &e), SYNC_EUSAGE);
    assert_int_equal(syncjob_options(&j, "a.db", "3x", NULL, NULL, NULL, &e), SYNC_EUSAGE);
    assert_int_equal(syncjob_options(&j, "a.db", "", NULL, NULL, NULL, &e), SYNC_EUSAGE);
    assert_int_equal(syncjob_options(&j, "a.db", NULL, NULL, "xml", NULL, &e), SYNC_EUSAGE);
    assert_non_null(strstr(e.msg, "text or json"));
}

static struct synclog_entry entry(void)
{
    struct synclog_entry en;
    memset(&en, 0, sizeof(en));
    en.when.tv_sec = 1777888999; /* 2026-05-04T10:03:19Z */
    en.when.tv_nsec = 45000000;
    en.db = "/var/lib/empact/toronto.db";
    en.site = "toronto";
    en.attempt = 2;
    en.attempts = 6;
    en.outcome = SYNCLOG_RETRY;
    en.exit_code = 75;
    en.message = "cannot reach the hub \"x\"";
    en.next_retry_ms = 1500;
    return en;
}

static void test_line_json(void **state)
{
    struct synclog_entry en = entry();
    struct sync_result r;
    char *line;
    cJSON *o;
    (void)state;

    assert_non_null(line = synclog_line(SYNCLOG_JSON, &en));
    assert_null(strchr(line, '\n'));
    assert_non_null(o = cJSON_Parse(line));
    assert_string_equal(cJSON_GetObjectItem(o, "time")->valuestring, "2026-05-04T10:03:19.045Z");
    assert_string_equal(cJSON_GetObjectItem(o, "site")->valuestring, "toronto");
    assert_string_equal(cJSON_GetObjectItem(o, "outcome")->valuestring, "retry");
    assert_string_equal(cJSON_GetObjectItem(o, "message")->valuestring, en.message);
    assert_int_equal(cJSON_GetObjectItem(o, "attempt")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(o, "attempts")->valueint, 6);
    assert_int_equal(cJSON_GetObjectItem(o, "exit_code")->valueint, 75);
    assert_true(cJSON_GetObjectItem(o, "next_retry_s")->valuedouble == 1.5);
    assert_null(cJSON_GetObjectItem(o, "version"));
    cJSON_Delete(o);
    free(line);

    memset(&r, 0, sizeof(r));
    r.version = 42;
    r.pushed = 3;
    en.outcome = SYNCLOG_OK;
    en.exit_code = 0;
    en.message = NULL;
    en.site = NULL;
    en.next_retry_ms = -1;
    en.result = &r;
    assert_non_null(line = synclog_line(SYNCLOG_JSON, &en));
    assert_non_null(o = cJSON_Parse(line));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "site")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "message")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "next_retry_s")));
    assert_int_equal(cJSON_GetObjectItem(o, "version")->valueint, 42);
    assert_int_equal(cJSON_GetObjectItem(o, "pushed")->valueint, 3);
    cJSON_Delete(o);
    free(line);
}

static void test_line_text(void **state)
{
    struct synclog_entry en = entry();
    char *line;
    (void)state;

    assert_non_null(line = synclog_line(SYNCLOG_TEXT, &en));
    assert_string_equal(line, "2026-05-04T10:03:19.045Z empact sync: db=/var/lib/empact/toronto.db "
                              "site=toronto attempt=2/6 outcome=retry exit=75 next_retry_s=1.5: "
                              "cannot reach the hub \"x\"");
    free(line);
    en.outcome = SYNCLOG_LOCKED;
    en.site = NULL;
    en.next_retry_ms = -1;
    en.exit_code = 73;
    assert_non_null(line = synclog_line(SYNCLOG_TEXT, &en));
    assert_non_null(strstr(line, " site=- attempt=2/6 outcome=locked exit=73: "));
    free(line);
}

static void test_format_parse(void **state)
{
    enum synclog_format f = SYNCLOG_OFF;
    struct errctx e = {0, ""};
    (void)state;
    assert_int_equal(synclog_format_parse(&f, "json", &e), SYNC_OK);
    assert_int_equal(f, SYNCLOG_JSON);
    assert_int_equal(synclog_format_parse(&f, "text", &e), SYNC_OK);
    assert_int_equal(f, SYNCLOG_TEXT);
    assert_int_equal(synclog_format_parse(&f, "JSON", &e), SYNC_EUSAGE);
    assert_string_equal(synclog_outcome_name(SYNCLOG_FAILED), "failed");
}

static void test_lock(void **state)
{
    char dir[] = "/tmp/test_syncjob.XXXXXX", db[128], lockpath[160];
    struct lock *a = NULL, *b = NULL;
    struct errctx e = {0, ""};
    struct stat st;
    FILE *f;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/site.db", dir);
    snprintf(lockpath, sizeof(lockpath), "%s.lock", db);
    assert_non_null(f = fopen(db, "w"));
    fclose(f);

    assert_int_equal(lock_acquire(&a, db, &e), SYNC_OK);
    assert_int_equal(stat(lockpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* a second open file description is refused at once, naming this process */
    assert_int_equal(lock_acquire(&b, db, &e), SYNC_ELOCKED);
    assert_null(b);
    assert_non_null(strstr(e.msg, "another sync or join"));
    {
        char pid[32];
        snprintf(pid, sizeof(pid), "process %ld ", (long)getpid());
        assert_non_null(strstr(e.msg, pid));
    }
    lock_release(a);
    assert_int_equal(stat(lockpath, &st), 0); /* kept next to a replica */
    assert_int_equal(lock_acquire(&b, db, &e), SYNC_OK);
    lock_release(b);

    /* no replica: the lock file goes when released */
    unlink(db);
    assert_int_equal(lock_acquire(&a, db, &e), SYNC_OK);
    lock_release(a);
    assert_int_not_equal(stat(lockpath, &st), 0);

    /* the lock file cannot be opened: an i/o error, not "locked" */
    assert_int_equal(mkdir(lockpath, 0700), 0);
    assert_int_equal(lock_acquire(&a, db, &e), SYNC_EIO);
    assert_null(a);
    rmdir(lockpath);
    lock_release(NULL);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_fixed),  cmocka_unit_test(test_delay_backoff_bounds),
        cmocka_unit_test(test_transient),    cmocka_unit_test(test_options),
        cmocka_unit_test(test_line_json),    cmocka_unit_test(test_line_text),
        cmocka_unit_test(test_format_parse), cmocka_unit_test(test_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
