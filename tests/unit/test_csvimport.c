/*
 * test_csvimport.c - the CSV reader of `empact resource import`: line
 * numbers (CRLF, blank lines, line breaks inside quoted values), header
 * mapping, value checks, and that the value lists match the schema's CHECK
 * constraints (each allowed value inserts, anything else does not).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "csvimport.h"
#include "schema.h"

static int parse(struct csv_import *im, const char *text)
{
    return csv_import_parse(im, text, strlen(text));
}

/* The joined errors, for substring checks. */
static const char *errors(const struct csv_import *im)
{
    static char buf[8192];
    buf[0] = '\0';
    for (size_t i = 0; i < im->nerrors; i++) {
        strncat(buf, im->errors[i], sizeof(buf) - strlen(buf) - 2);
        strcat(buf, "\n");
    }
    return buf;
}

static void test_rows_and_lines(void **state)
{
    struct csv_import im;
    (void)state;
    assert_int_equal(parse(&im, "\xef\xbb\xbfTitle , summary\r\n"
                                "\"A, b\",\"two\nlines\"\r\n"
                                "\r\n"
                                "C,\r\n"
                                "\"D \"\"quoted\"\"\",x\n"),
                     0);
    assert_int_equal(im.nrows, 3);
    assert_int_equal(im.rows[0].line, 2);
    assert_string_equal(im.rows[0].val[RES_TITLE], "A, b");
    assert_string_equal(im.rows[0].val[RES_SUMMARY], "two\nlines");
    assert_int_equal(im.rows[1].line, 5); /* after the two-line record and a blank line */
    assert_null(im.rows[1].val[RES_SUMMARY]);
    assert_true(im.rows[1].has[RES_SUMMARY]);
    assert_false(im.rows[1].has[RES_URL]);
    assert_int_equal(im.rows[2].line, 6);
    assert_string_equal(im.rows[2].val[RES_TITLE], "D \"quoted\"");
    csv_import_free(&im);
}

static void test_errors_name_line_and_column(void **state)
{
    struct csv_import im;
    (void)state;
    assert_int_equal(parse(&im, "title,oht_block,language\n"
                                "ok,1,en\n"
                                "bad,9,en\n"
                                "\"two\nlines\",2,English\n"
                                ",3,fr\n"
                                "x,y\n"),
                     -1);
    assert_non_null(strstr(errors(&im), "line 3, column oht_block: '9' is not an OHT"));
    assert_non_null(strstr(errors(&im), "line 4, column language: 'English'"));
    assert_non_null(strstr(errors(&im), "line 6, column title: '' is empty"));
    assert_non_null(strstr(errors(&im), "line 7: 2 fields, but the header has 3"));
    csv_import_free(&im);
}

static void test_header(void **state)
{
    struct csv_import im;
    (void)state;
    assert_int_equal(parse(&im, "summary\nx\n"), -1);
    assert_non_null(strstr(errors(&im), "the header has no title column"));
    csv_import_free(&im);
    assert_int_equal(parse(&im, "title,Title\nx,y\n"), -1);
    assert_non_null(strstr(errors(&im), "column title is named twice"));
    csv_import_free(&im);
    assert_int_equal(parse(&im, "title,colour\nx,y\n"), -1);
    assert_non_null(strstr(errors(&im), "'colour' is not a column of resource"));
    csv_import_free(&im);
    assert_int_equal(parse(&im, ""), -1);
    assert_non_null(strstr(errors(&im), "the file is empty"));
    csv_import_free(&im);
    assert_int_equal(parse(&im, "title\n\"open\n"), -1);
    assert_non_null(strstr(errors(&im), "not valid CSV"));
    csv_import_free(&im);
}

static void test_ids_and_bytes(void **state)
{
    struct csv_import im;
    (void)state;
    assert_int_equal(parse(&im, "id,title\n"
                                "7c0f9a3e-0001-4d1a-9b1e-000000000001,a\n"
                                "7C0F9A3E-0001-4D1A-9B1E-000000000001,b\n"
                                "not-a-uuid,c\n"),
                     -1);
    assert_non_null(strstr(errors(&im), "line 3, column id: 7C0F9A3E-0001-4D1A-9B1E-000000000001 "
                                        "is also on line 2"));
    assert_non_null(strstr(errors(&im), "line 4, column id: 'not-a-uuid' is not a UUID"));
    csv_import_free(&im);
    assert_int_equal(csv_import_parse(&im, "title\na\0b\n", 10), -1);
    assert_non_null(strstr(errors(&im), "line 2, column title: not valid UTF-8"));
    csv_import_free(&im);
    assert_int_equal(parse(&im, "title\n\xc3\xa9t\xc3\xa9 \xf0\x9f\x8c\xb3\n"), 0); /* été 🌳 */
    csv_import_free(&im);
    assert_int_equal(parse(&im, "title\n\xed\xa0\x80\n"), -1); /* a UTF-16 surrogate */
    csv_import_free(&im);
    assert_int_equal(parse(&im, "title\n\xc0\xaf\n"), -1); /* an overlong '/' */
    csv_import_free(&im);
}

/* Every allowed value passes res_check_value and the schema's CHECK; an
 * unknown one fails both. */
static void test_lists_match_schema(void **state)
{
    struct schema *s = NULL;
    struct errctx e = {0, ""};
    sqlite3 *db = NULL;
    char sql[512];
    (void)state;

    assert_int_equal(schema_load(&s, &e), SYNC_OK);
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, schema_find(s, "resource")->create_sql, NULL, NULL, NULL),
                     SQLITE_OK);
    for (int i = 0; res_phm_components[i] != NULL; i++) {
        assert_null(res_check_value(RES_PHM_COMPONENT, res_phm_components[i]));
        snprintf(sql, sizeof(sql),
                 "INSERT INTO resource (id, title, phm_component) VALUES ('c%d', 't', '%s')", i,
                 res_phm_components[i]);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    for (int i = 0; res_population_groups[i] != NULL; i++) {
        assert_null(res_check_value(RES_POPULATION_GROUP, res_population_groups[i]));
        snprintf(sql, sizeof(sql),
                 "INSERT INTO resource (id, title, population_group) VALUES ('g%d', 't', '%s')", i,
                 res_population_groups[i]);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    assert_non_null(res_check_value(RES_PHM_COMPONENT, "teenagers"));
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO resource (id, title, phm_component) "
                                      "VALUES ('x', 't', 'teenagers')",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    assert_non_null(res_check_value(RES_OHT_BLOCK, "9"));
    assert_int_not_equal(sqlite3_exec(db,
                                      "INSERT INTO resource (id, title, oht_block) "
                                      "VALUES ('y', 't', 9)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    for (int i = 0; res_col_names[i] != NULL; i++) {
        const struct schema_table *t = schema_find(s, "resource");
        int found = 0;
        for (int k = 0; k < t->ncol; k++)
            found |= strcmp(t->cols[k].name, res_col_names[i]) == 0;
        assert_true(found);
    }
    sqlite3_close(db);
    schema_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_and_lines),
        cmocka_unit_test(test_errors_name_line_and_column),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_ids_and_bytes),
        cmocka_unit_test(test_lists_match_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
