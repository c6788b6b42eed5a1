/*
 * test_pki.c - pki_cert_not_after(): the expiry `empact-hub sites` shows.
 *
 * Certificates come from pki.c itself (a CA, a site certificate, an expired
 * one); the expected times are computed from the clock around the issue, so
 * a second that ticks during the test cannot make it flaky.  Damaged input
 * (not PEM, a key instead of a certificate, over PEM_MAX, NULL) is refused
 * with SYNC_ETLS and leaves the output empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <time.h>

#include "pki.h"

struct fixture {
    char *ca_cert, *ca_key;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct errctx e = {0, ""};

    if (f == NULL || pki_ca_new(&f->ca_cert, &f->ca_key, "test CA", &e) != SYNC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    pki_pem_free(f->ca_cert);
    pki_pem_free(f->ca_key);
    free(f);
    return 0;
}

/* now + secs as ISO 8601 UTC. */
static void iso_at(char out[PKI_TIME_LEN], time_t now, long secs)
{
    struct tm tm;
    time_t t = now + secs;

    gmtime_r(&t, &tm);
    strftime(out, PKI_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Issues a site certificate valid for days and checks its notAfter lies
 * between now + days before and after the issue. */
static void check_issued(struct fixture *f, int days)
{
    struct errctx e = {0, ""};
    char *cert = NULL, *key = NULL, got[PKI_TIME_LEN], lo[PKI_TIME_LEN], hi[PKI_TIME_LEN];
    time_t before = time(NULL), after;

    assert_int_equal(
        pki_issue(&cert, &key, f->ca_cert, f->ca_key, "site-a", PKI_ROLE_SITE, days, &e), SYNC_OK);
    after = time(NULL);
    assert_int_equal(pki_cert_not_after(got, cert, &e), SYNC_OK);
    iso_at(lo, before, days * 86400L);
    iso_at(hi, after, days * 86400L);
    assert_int_equal(strlen(got), PKI_TIME_LEN - 1);
    /* ISO 8601 with fixed widths sorts as text */
    assert_true(strcmp(got, lo) >= 0);
    assert_true(strcmp(got, hi) <= 0);
    pki_pem_free(cert);
    pki_pem_free(key);
}

static void test_site_cert_expiry(void **state)
{
    check_issued(*state, CERT_DAYS);
    check_issued(*state, 1);
}

static void test_expired_cert(void **state)
{
    check_issued(*state, -1);
}

static void test_ca_expiry(void **state)
{
    struct fixture *f = *state;
    struct errctx e = {0, ""};
    char got[PKI_TIME_LEN], now[PKI_TIME_LEN];

    assert_int_equal(pki_cert_not_after(got, f->ca_cert, &e), SYNC_OK);
    iso_at(now, time(NULL), (CA_DAYS - 1) * 86400L);
    assert_true(strcmp(got, now) > 0);
}

static void expect_refused(const char *pem)
{
    struct errctx e = {0, ""};
    char got[PKI_TIME_LEN];

    memset(got, 'x', sizeof(got));
    assert_int_equal(pki_cert_not_after(got, pem, &e), SYNC_ETLS);
    assert_string_equal(got, "");
    assert_true(e.msg[0] != '\0');
}

static void test_bad_input(void **state)
{
    struct fixture *f = *state;
    char *big = malloc((size_t)PEM_MAX + 2);

    expect_refused(NULL);
    expect_refused("");
    expect_refused("garbage");
    expect_refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect_refused(f->ca_key); /* a key is not a certificate */
    /* the CA certificate cut in half */
    {
        size_t n = strlen(f->ca_cert) / 2;
        char *half = strndup(f->ca_cert, n);
        assert_non_null(half);
        expect_refused(half);
        free(half);
    }
    assert_non_null(big);
    memset(big, 'A', (size_t)PEM_MAX + 1);
    big[PEM_MAX + 1] = '\0';
    expect_refused(big);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_cert_expiry),
        cmocka_unit_test(test_expired_cert),
        cmocka_unit_test(test_ca_expiry),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
