/*
 * test_metrics.c - `empact metrics`: the publication rule for counts of
 * people (including the subtraction attack it must defeat), the period
 * parser, and each aggregation counted from a small set of HEA rows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"
#include "schema.h"

static void test_no_threshold_is_exact(void **state)
{
    int s;
    (void)state;
    assert_true(metrics_publish(3, 0, 0, &s) == 3 && s == 0);
    assert_true(metrics_publish(0.25, 0, 0, &s) == 0.25 && s == 0);
    assert_true(metrics_publish(12500, 0, 1, &s) == 12500 && s == 0); /* a year of money */
}

static void test_people(void **state)
{
    static const double in[] = {5, 6, 7, 8, 9, 10, 12, 13, 24, 25, 1002};
    static const double out[] = {5, 5, 5, 10, 10, 10, 10, 15, 25, 25, 1000};
    int s;
    (void)state;
    assert_true(metrics_publish(0, 5, 0, &s) == 0 && s == 0); /* 0 is published */
    for (int v = 1; v < 5; v++) {
        metrics_publish(v, 5, 0, &s);
        assert_int_equal(s, 1);
    }
    metrics_publish(9, 10, 0, &s);
    assert_int_equal(s, 1);
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        assert_true(metrics_publish(in[i], 5, 0, &s) == out[i]);
        assert_int_equal(s, 0);
    }
    metrics_publish(40, 5, 1, &s); /* a year of people: suppressed */
    assert_int_equal(s, 1);
}

/* What a published cell allows the true value to be: [lo, hi]. */
static void allowed(double v, int suppressed, int *lo, int *hi)
{
    int s;
    *lo = 1000, *hi = -1;
    for (int x = 0; x < 200; x++) {
        double p = metrics_publish(x, 5, 0, &s);
        if (s == suppressed && (suppressed || p == v)) {
            *lo = x < *lo ? x : *lo;
            *hi = x > *hi ? x : *hi;
        }
    }
}

/* Members distinct across quarters (the worst case: the year is the sum).
 * For every four quarters with one of them suppressed, count the cases where
 * the published figures pin the suppressed one down to a single value.  With
 * a year published like a quarter (rounded) there are such cases; with the
 * rule (a year of people is suppressed) there are none. */
static void test_subtraction_attack(void **state)
{
    int pinned_if_rounded = 0, pinned = 0;
    (void)state;
    for (int q = 0; q < 16 * 16 * 16 * 16; q++) {
        int v[4] = {q & 15, (q >> 4) & 15, (q >> 8) & 15, q >> 12}, sup = -1, n = 0, y = 0;
        for (int i = 0; i < 4; i++) {
            y += v[i];
            if (v[i] >= 1 && v[i] <= 4)
                sup = i, n++;
        }
        if (n != 1)
            continue;
        for (int rule = 0; rule < 2; rule++) {
            int s, ylo, yhi, lo = 0, hi = 0, cands = 0;
            double yp = metrics_publish(y, 5, rule, &s);
            if (s) { /* nothing to subtract from: any of 1..4 */
                cands = 4;
            } else {
                allowed(yp, 0, &ylo, &yhi);
                for (int i = 0; i < 4; i++) {
                    int a, b, si;
                    double p;
                    if (i == sup)
                        continue;
                    p = metrics_publish(v[i], 5, 0, &si);
                    allowed(p, si, &a, &b);
                    lo += a;
                    hi += b;
                }
                for (int c = 1; c <= 4; c++)
                    cands += c >= ylo - hi && c <= yhi - lo;
            }
            assert_true(cands >= 1); /* the truth always fits */
            if (cands == 1)
                *(rule ? &pinned : &pinned_if_rounded) += 1;
        }
    }
    assert_true(pinned_if_rounded > 0); /* why a year of people is not published */
    assert_int_equal(pinned, 0);
}

static void test_periods(void **state)
{
    char a[11], b[11];
    static const char *const bad[] = {"",        "26",       "2026-Q0", "2026-Q5",
                                      "2026-q3", "2026-Q3x", "20x6",    "2026-03",
                                      "1800",    "abcd-Q1",  "2026-Q"};
    (void)state;
    assert_int_equal(metrics_period("2026-Q3", a, b), 0);
    assert_string_equal(a, "2026-07-01");
    assert_string_equal(b, "2026-09-30");
    assert_int_equal(metrics_period("2026-Q1", a, b), 0);
    assert_string_equal(b, "2026-03-31");
    assert_int_equal(metrics_period("2026", a, b), 0);
    assert_string_equal(a, "2026-01-01");
    assert_string_equal(b, "2026-12-31");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(metrics_period(bad[i], a, b), -1);
}

/* ---- the aggregations ------------------------------------------------------ */

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

/* Q3 2026 (July to September) of a small site; comments give the counts. */
static const char data[] =
    "INSERT INTO metric (code, name, unit, suppress_below) VALUES"
    " ('heas_completed', 'x', 'count', NULL), ('heas_in_progress', 'x', 'count', NULL),"
    " ('decisions_hospital', 'x', 'count', NULL), ('decisions_provincial', 'x', 'count', NULL),"
    " ('decisions_national', 'x', 'count', NULL), ('impact_partnerships', 'x', 'count', NULL),"
    " ('impact_partners', 'x', 'count', NULL), ('members_engaged', 'x', 'people', 5),"
    " ('compensation_paid', 'x', 'CAD', NULL), ('feedback_share', 'x', 'ratio', NULL);"
    "INSERT INTO impact_partner (id, organisation, level) VALUES (1, 'H', 'hospital'),"
    " (2, 'H', 'hospital'), (3, 'P', 'provincial-regional'), (4, 'N', 'national');"
    /* 1: reported in Q3 with feedback; 2: reported in Q2, no feedback, still
     * open; 3: past intake in Q3, in progress; 4: closed in Q1 (inactive);
     * 5: opened after Q3 */
    "INSERT INTO hea (id, title, opened_on, step) VALUES (1, 'a', '2026-05-01', 'closed'),"
    " (2, 'b', '2026-03-01', 'feedback'), (3, 'c', '2026-07-10', 'preparation'),"
    " (4, 'd', '2025-10-01', 'closed'), (5, 'e', '2026-10-05', 'intake');"
    "INSERT INTO hea_step (hea_id, step, done_on, skipped_because) VALUES"
    " (1, 'intake', '2026-05-05', NULL), (1, 'preparation', '2026-05-20', NULL),"
    " (1, 'engagement', '2026-07-15', NULL), (1, 'report', '2026-08-01', NULL),"
    " (1, 'feedback', '2026-09-01', NULL),"
    " (2, 'intake', '2026-03-05', NULL), (2, 'preparation', '2026-03-20', 'skipped'),"
    " (2, 'engagement', '2026-04-15', NULL), (2, 'report', '2026-06-01', NULL),"
    " (3, 'intake', '2026-07-20', NULL),"
    " (4, 'intake', '2025-10-05', NULL), (4, 'preparation', '2025-11-05', NULL),"
    " (4, 'engagement', '2025-12-05', NULL), (4, 'report', '2026-01-05', NULL),"
    " (4, 'feedback', '2026-02-05', NULL);"
    /* partnerships in Q3: HEAs 1, 2, 3 -> organisations H, P (2); partners 1, 2, 3 (3) */
    "INSERT INTO hea_partner VALUES (1, 1), (2, 2), (2, 3), (3, 1), (4, 4), (5, 4);"
    /* decisions in Q3: hospital 2, provincial 1, national 0 (one is in Q2) */
    "INSERT INTO hea_decision (hea_id, partner_id, decided_on, description) VALUES"
    " (1, 1, '2026-08-10', 'x'), (1, 2, '2026-09-30', 'x'), (2, 3, '2026-07-01', 'x'),"
    " (2, 3, '2026-06-30', 'x'), (4, 4, '2026-02-01', 'x');"
    "INSERT INTO member (id, name) VALUES (1, 'm'), (2, 'm'), (3, 'm'), (4, 'm'), (5, 'm'),"
    " (6, 'm'), (7, 'm');"
    /* engaged in Q3: HEA 1's six members (HEA 2 engaged in Q2) */
    "INSERT INTO hea_member VALUES (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (2, 6),"
    " (2, 7);"
    /* paid in Q3: 150.00 + 99.50; feedback by the end of Q3: HEAs 1 and 4
     * of the three reported (1, 2, 4) */
    "INSERT INTO compensation (hea_id, member_id, amount_cents, paid_on) VALUES"
    " (1, 1, 15000, '2026-07-15'), (1, 2, 9950, '2026-09-30'), (2, 7, 5000, '2026-04-15');";

static double published(sqlite3 *db, const char *metric, const char *period, int *suppressed)
{
    sqlite3_stmt *st;
    double v = -1;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT ifnull(value, -1), suppressed FROM metric_value "
                                        "WHERE site_id = 'x' AND metric = ?1 AND period = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, metric, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, period, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_double(st, 0);
    *suppressed = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    return v;
}

static void test_aggregations(void **state)
{
    static const struct {
        const char *metric;
        double want;
    } q3[] = {{"heas_completed", 1},       {"heas_in_progress", 1},   {"decisions_hospital", 2},
              {"decisions_provincial", 1}, {"decisions_national", 0}, {"impact_partnerships", 2},
              {"impact_partners", 3},      {"members_engaged", 5},    {"compensation_paid", 249.5},
              {"feedback_share", 2.0 / 3}};
    struct schema *s = NULL;
    struct errctx e = {0, ""};
    sqlite3 *db = NULL;
    cJSON *out = cJSON_CreateArray();
    int sup;
    (void)state;

    assert_int_equal(schema_load(&s, &e), SYNC_OK);
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    for (int i = 0; i < s->ntable; i++)
        exec_ok(db, s->tables[i].create_sql);
    exec_ok(db, data);
    assert_int_equal(metrics_compute(db, "x", "2026-Q3", out, &e), SYNC_OK);
    assert_int_equal(cJSON_GetArraySize(out), 10);
    for (size_t i = 0; i < sizeof(q3) / sizeof(q3[0]); i++) {
        double got = published(db, q3[i].metric, "2026-Q3", &sup);
        if (got < q3[i].want - 1e-9 || got > q3[i].want + 1e-9)
            fail_msg("%s: got %g, want %g", q3[i].metric, got, q3[i].want);
        assert_int_equal(sup, 0);
    }
    /* six members engaged in Q3 are published rounded (5); the exact 6
     * stays in the command's output only */
    assert_int_equal(metrics_compute(db, "x", "2026-Q2", out, &e), SYNC_OK);
    assert_true(published(db, "members_engaged", "2026-Q2", &sup) == -1 && sup == 1); /* 2 */
    assert_true(published(db, "heas_completed", "2026-Q2", &sup) == 1 && sup == 0);
    assert_true(published(db, "decisions_provincial", "2026-Q2", &sup) == 1);
    assert_true(published(db, "feedback_share", "2026-Q2", &sup) == 0.5); /* of HEAs 2, 4: 4 */
    assert_int_equal(metrics_compute(db, "x", "2026", out, &e), SYNC_OK);
    assert_true(published(db, "members_engaged", "2026", &sup) == -1 && sup == 1);
    assert_true(published(db, "heas_completed", "2026", &sup) == 3 && sup == 0);
    assert_true(published(db, "compensation_paid", "2026", &sup) == 299.5);
    /* a period with nothing to divide publishes no ratio */
    assert_int_equal(metrics_compute(db, "x", "2020-Q1", out, &e), SYNC_OK);
    assert_true(published(db, "feedback_share", "2020-Q1", &sup) == -1 && sup == 0);
    assert_int_equal(metrics_compute(db, "x", "2026-Q9", out, &e), SYNC_EUSAGE);
    cJSON_Delete(out);
    sqlite3_close(db);
    schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_threshold_is_exact), cmocka_unit_test(test_people),
        cmocka_unit_test(test_subtraction_attack),    cmocka_unit_test(test_periods),
        cmocka_unit_test(test_aggregations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
