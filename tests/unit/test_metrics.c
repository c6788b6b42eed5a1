/*
 * test_metrics.c - the publication rule for counts of people and the
 * period parser of `empact metrics`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "metrics.h"

static double pub(double v, long long t, int *s)
{
    return metrics_publish(v, t, s);
}

static void test_no_threshold_is_exact(void **state)
{
    int s;
    (void)state;
    assert_true(pub(3, 0, &s) == 3 && s == 0);
    assert_true(pub(0.25, 0, &s) == 0.25 && s == 0);
    assert_true(pub(12500, 0, &s) == 12500 && s == 0);
}

static void test_zero_is_published(void **state)
{
    int s;
    (void)state;
    assert_true(pub(0, 5, &s) == 0 && s == 0);
}

static void test_below_threshold_is_suppressed(void **state)
{
    int s;
    (void)state;
    for (int v = 1; v < 5; v++) {
        pub(v, 5, &s);
        assert_int_equal(s, 1);
    }
    pub(9, 10, &s);
    assert_int_equal(s, 1);
}

static void test_at_or_above_is_rounded_to_5(void **state)
{
    static const double in[] = {5, 6, 7, 8, 9, 10, 12, 13, 24, 25, 1002};
    static const double out[] = {5, 5, 5, 10, 10, 10, 10, 15, 25, 25, 1000};
    int s;
    (void)state;
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        assert_true(pub(in[i], 5, &s) == out[i]);
        assert_int_equal(s, 0);
    }
}

static void test_periods(void **state)
{
    char a[11], b[11];
    (void)state;
    assert_int_equal(metrics_period("2026-Q3", a, b), 0);
    assert_string_equal(a, "2026-07-01");
    assert_string_equal(b, "2026-09-30");
    assert_int_equal(metrics_period("2026-Q1", a, b), 0);
    assert_string_equal(b, "2026-03-31");
    assert_int_equal(metrics_period("2026", a, b), 0);
    assert_string_equal(a, "2026-01-01");
    assert_string_equal(b, "2026-12-31");
    static const char *const bad[] = {"",        "26",       "2026-Q0", "2026-Q5",
                                      "2026-q3", "2026-Q3x", "20x6",    "2026-03",
                                      "1800",    "abcd-Q1",  "2026-Q"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(metrics_period(bad[i], a, b), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_threshold_is_exact),
        cmocka_unit_test(test_zero_is_published),
        cmocka_unit_test(test_below_threshold_is_suppressed),
        cmocka_unit_test(test_at_or_above_is_rounded_to_5),
        cmocka_unit_test(test_periods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
