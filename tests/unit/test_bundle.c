/*
 * test_bundle.c - the join bundle: write/read round trip and file mode, the
 * checks on every field of a damaged or hostile bundle, the size limit, and
 * address_split().
 *
 * Bundles are files in a fresh mkdtemp directory; damaged ones are made by
 * editing a good bundle's JSON with cJSON, so that each case breaks exactly
 * one thing.
 */
#include <ftw.h>
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

#include "bundle.h"

#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIBCA==\n-----END CERTIFICATE-----\n"
#define CERT_PEM "-----BEGIN CERTIFICATE-----\nMIIBsite==\n-----END CERTIFICATE-----\n"
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----\n"
#define SCHEMA_HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct fx {
    char dir[64];
    int seq; /* for unique file names */
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_bundle.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    int rc = nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void new_path(struct fx *f, char *out, size_t n)
{
    snprintf(out, n, "%s/bundle-%d.json", f->dir, f->seq++);
}

/* Writes n bytes of text to a new file with the given mode. */
static void write_raw(const char *path, const char *text, size_t n, mode_t mode)
{
    FILE *fp = fopen(path, "wx");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* A good bundle as a cJSON object, to be damaged by the caller. */
static cJSON *good_json(void)
{
    cJSON *o = cJSON_CreateObject();
    assert_non_null(o);
    assert_non_null(cJSON_AddStringToObject(o, "format", BUNDLE_FORMAT));
    assert_non_null(cJSON_AddNumberToObject(o, "version", BUNDLE_VERSION));
    assert_non_null(cJSON_AddStringToObject(o, "site_id", "site-ottawa"));
    assert_non_null(cJSON_AddStringToObject(o, "hub_address", "hub.example.org:7443"));
    assert_non_null(cJSON_AddStringToObject(o, "schema", SCHEMA_HEX));
    assert_non_null(cJSON_AddStringToObject(o, "ca_cert", CA_PEM));
    assert_non_null(cJSON_AddStringToObject(o, "site_cert", CERT_PEM));
    assert_non_null(cJSON_AddStringToObject(o, "site_key", KEY_PEM));
    return o;
}

/* Writes o (consumed) as a 0600 file and reads it back with bundle_read_file. */
static int read_json(struct fx *f, cJSON *o, struct bundle **out, struct errctx *e)
{
    char path[128];
    char *text = cJSON_Print(o);
    int rc;

    assert_non_null(text);
    new_path(f, path, sizeof(path));
    write_raw(path, text, strlen(text), 0600);
    free(text);
    cJSON_Delete(o);
    errctx_clear(e);
    rc = bundle_read_file(out, path, e);
    if (rc != SYNC_OK)
        assert_null(*out);
    return rc;
}

/* o (consumed) must be refused with SYNC_EDATA and a message naming what. */
static void expect_refused(struct fx *f, cJSON *o, const char *what)
{
    struct bundle *b = NULL;
    struct errctx e = {0};
    int rc = read_json(f, o, &b, &e);

    if (rc != SYNC_EDATA)
        fail_msg("bundle with bad %s: rc %d (%s), want SYNC_EDATA", what, rc, e.msg);
    assert_int_equal(e.code, SYNC_EDATA);
    if (strstr(e.msg, what) == NULL)
        fail_msg("message does not name %s: %s", what, e.msg);
    bundle_free(b);
}

static cJSON *with_string(const char *field, const char *value)
{
    cJSON *o = good_json();
    assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, field, cJSON_CreateString(value)));
    return o;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    struct bundle in = {0}, *out = NULL;
    struct errctx e = {0};
    struct stat st;
    char path[128];

    snprintf(in.site_id, sizeof(in.site_id), "site-toronto-2");
    snprintf(in.hub_address, sizeof(in.hub_address), "[2001:db8::1]:443");
    snprintf(in.schema, sizeof(in.schema), SCHEMA_HEX);
    in.ca_cert = (char *)CA_PEM;
    in.site_cert = (char *)CERT_PEM;
    in.site_key = (char *)KEY_PEM "\"quoted\" \\ and\ttab";
    new_path(f, path, sizeof(path));
    assert_int_equal(bundle_write_file(&in, path, &e), SYNC_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_OK);
    assert_non_null(out);
    assert_string_equal(out->site_id, in.site_id);
    assert_string_equal(out->hub_address, in.hub_address);
    assert_string_equal(out->schema, in.schema);
    assert_string_equal(out->ca_cert, in.ca_cert);
    assert_string_equal(out->site_cert, in.site_cert);
    assert_string_equal(out->site_key, in.site_key);
    bundle_free(out);
    out = NULL;

    /* Never overwrites: the existing bundle stays as it was. */
    in.site_key = (char *)KEY_PEM;
    assert_int_equal(bundle_write_file(&in, path, &e), SYNC_EIO);
    assert_non_null(strstr(e.msg, path));
    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_OK);
    assert_non_null(strstr(out->site_key, "quoted"));
    bundle_free(out);
    bundle_free(NULL);

    /* A stricter mode than 0600 is fine. */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_OK);
    bundle_free(out);
}

static void test_file_mode(void **state)
{
    struct fx *f = *state;
    static const mode_t modes[] = {0644, 0640, 0604, 0660, 0606};
    struct bundle in = {0}, *out = NULL;
    struct errctx e = {0};
    char path[128];

    snprintf(in.site_id, sizeof(in.site_id), "site-a");
    snprintf(in.hub_address, sizeof(in.hub_address), "127.0.0.1:7443");
    snprintf(in.schema, sizeof(in.schema), SCHEMA_HEX);
    in.ca_cert = (char *)CA_PEM;
    in.site_cert = (char *)CERT_PEM;
    in.site_key = (char *)KEY_PEM;
    new_path(f, path, sizeof(path));
    assert_int_equal(bundle_write_file(&in, path, &e), SYNC_OK);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        assert_int_equal(chmod(path, modes[i]), 0);
        errctx_clear(&e);
        assert_int_equal(bundle_read_file(&out, path, &e), SYNC_EDATA);
        assert_null(out);
        assert_non_null(strstr(e.msg, "chmod 600"));
        assert_non_null(strstr(e.msg, path));
        /* The refusal does not echo the key. */
        assert_null(strstr(e.msg, "MC4CAQAw"));
    }
}

static void test_unreadable(void **state)
{
    struct fx *f = *state;
    struct bundle *out = NULL;
    struct errctx e = {0};
    char path[128];

    new_path(f, path, sizeof(path));
    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_EIO);
    assert_null(out);
    assert_non_null(strstr(e.msg, path));
    /* A directory is not a bundle. */
    assert_int_equal(bundle_read_file(&out, f->dir, &e), SYNC_EDATA);
    assert_null(out);
}

static void test_not_json(void **state)
{
    struct fx *f = *state;
    struct bundle *out = NULL;
    struct errctx e = {0};
    char path[128];
    cJSON *o = good_json();
    char *text = cJSON_Print(o);
    size_t n = strlen(text);

    /* Cut anywhere, the text is not a bundle. */
    for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
        new_path(f, path, sizeof(path));
        write_raw(path, text, cut, 0600);
        errctx_clear(&e);
        if (bundle_read_file(&out, path, &e) != SYNC_EDATA)
            fail_msg("bundle cut to %zu of %zu bytes was not refused: %s", cut, n, e.msg);
        assert_null(out);
        assert_non_null(strstr(e.msg, path));
    }
    free(text);
    cJSON_Delete(o);

    /* JSON that is not an object, and garbage. */
    static const char *const bad[] = {"[1, 2, 3]", "\"empact-join\"", "null", "{",
                                      "}{",        "\xff\xfe{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        new_path(f, path, sizeof(path));
        write_raw(path, bad[i], strlen(bad[i]), 0600);
        assert_int_equal(bundle_read_file(&out, path, &e), SYNC_EDATA);
        assert_null(out);
    }
}

static void test_missing_fields(void **state)
{
    struct fx *f = *state;
    static const char *const fields[] = {"format", "version", "site_id",   "hub_address",
                                         "schema", "ca_cert", "site_cert", "site_key"};

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        cJSON *o = good_json();
        cJSON_DeleteItemFromObjectCaseSensitive(o, fields[i]);
        expect_refused(f, o, fields[i]);
    }
}

static void test_wrong_types(void **state)
{
    struct fx *f = *state;
    static const char *const fields[] = {"format",  "site_id",   "hub_address", "schema",
                                         "ca_cert", "site_cert", "site_key"};
    cJSON *o;

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        o = good_json();
        assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, fields[i], cJSON_CreateNumber(7)));
        expect_refused(f, o, fields[i]);
        o = good_json();
        assert_true(cJSON_ReplaceItemInObjectCaseSensitive(
            o, fields[i], cJSON_CreateStringArray((const char *[]){"a"}, 1)));
        expect_refused(f, o, fields[i]);
        o = good_json();
        assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, fields[i], cJSON_CreateNull()));
        expect_refused(f, o, fields[i]);
    }
    o = good_json();
    assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, "version", cJSON_CreateString("1")));
    expect_refused(f, o, "version");
    o = good_json();
    assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, "version", cJSON_CreateNumber(2)));
    expect_refused(f, o, "version");
    o = good_json();
    assert_true(cJSON_ReplaceItemInObjectCaseSensitive(o, "version", cJSON_CreateNumber(1.5)));
    expect_refused(f, o, "version");
    expect_refused(f, with_string("format", "empact-backup"), "format");
}

static void test_bad_values(void **state)
{
    struct fx *f = *state;
    static const char *const site_ids[] = {
        "",       "Site-A", "-site",       "site_a",
        "site a", "site.a", "s\xc3\xa9te", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 33 */};
    static const char *const schemas[] = {
        "", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",
        "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef"};
    static const char *const addresses[] = {"",          "hub.example.org", "hub:",   ":7443",
                                            "hub:port",  "hub:70000",       "hub:-1", "[::1]",
                                            "[::1]7443", "hub:4294967296"};
    static const char *const not_pem[] = {"", "hello", "-----BEGIN PUBLIC KEY-----\nx\n",
                                          "CERTIFICATE without a begin line"};

    for (size_t i = 0; i < sizeof(site_ids) / sizeof(site_ids[0]); i++)
        expect_refused(f, with_string("site_id", site_ids[i]), "site_id");
    for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
        expect_refused(f, with_string("schema", schemas[i]), "schema");
    for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++)
        expect_refused(f, with_string("hub_address", addresses[i]), "hub_address");
    for (size_t i = 0; i < sizeof(not_pem) / sizeof(not_pem[0]); i++) {
        expect_refused(f, with_string("ca_cert", not_pem[i]), "ca_cert");
        expect_refused(f, with_string("site_cert", not_pem[i]), "site_cert");
        expect_refused(f, with_string("site_key", not_pem[i]), "site_key");
    }
    /* A certificate where the key belongs, and the other way round. */
    expect_refused(f, with_string("site_key", CERT_PEM), "site_key");
    expect_refused(f, with_string("site_cert", KEY_PEM), "site_cert");

    /* A longest valid site id passes. */
    {
        struct bundle *b = NULL;
        struct errctx e = {0};
        assert_int_equal(
            read_json(f, with_string("site_id", "a2345678901234567890123456789012"), &b, &e),
            SYNC_OK);
        assert_string_equal(b->site_id, "a2345678901234567890123456789012");
        bundle_free(b);
    }
}

/* cJSON would end a string at an escaped or raw NUL and cut the field short:
 * both are refused outright. */
static void test_nul(void **state)
{
    struct fx *f = *state;
    struct bundle *b = NULL;
    struct errctx e = {0};
    cJSON *o = good_json();
    char *text = cJSON_PrintUnformatted(o), *at;
    size_t n = strlen(text);

    cJSON_Delete(o);
    (void)f;
    assert_int_equal(bundle_parse(&b, text, n, &e), SYNC_OK);
    bundle_free(b);
    b = NULL;
    at = strstr(text, "\"hub_address\":\"") + strlen("\"hub_address\":\"");
    memcpy(at, "\\u0000", 6); /* overwrites six bytes of the address */
    assert_int_equal(bundle_parse(&b, text, n, &e), SYNC_EDATA);
    assert_null(b);
    assert_non_null(strstr(e.msg, "NUL"));
    at[0] = '\0';
    assert_int_equal(bundle_parse(&b, text, n, &e), SYNC_EDATA);
    assert_non_null(strstr(e.msg, "NUL byte"));
    cJSON_free(text);
}

static void test_too_large(void **state)
{
    struct fx *f = *state;
    struct bundle *out = NULL;
    struct errctx e = {0};
    char path[128];
    size_t big = JOIN_BUNDLE_MAX + 1;
    char *text = malloc(big);
    cJSON *o;
    char *good;
    size_t n;

    /* A valid bundle padded with whitespace past the limit. */
    assert_non_null(text);
    o = good_json();
    good = cJSON_PrintUnformatted(o);
    n = strlen(good);
    memcpy(text, good, n);
    memset(text + n, ' ', big - n);
    new_path(f, path, sizeof(path));
    write_raw(path, text, big, 0600);
    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_EDATA);
    assert_null(out);
    assert_non_null(strstr(e.msg, "65537"));

    /* A huge (sparse) file is refused from its size, before any allocation. */
    new_path(f, path, sizeof(path));
    write_raw(path, "", 0, 0600);
    assert_int_equal(truncate(path, (off_t)1 << 34), 0);
    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_EDATA);
    assert_null(out);
    assert_non_null(strstr(e.msg, "17179869184"));
    assert_int_equal(unlink(path), 0);

    /* At the limit exactly it is read. */
    new_path(f, path, sizeof(path));
    write_raw(path, text, JOIN_BUNDLE_MAX, 0600);
    assert_int_equal(bundle_read_file(&out, path, &e), SYNC_OK);
    bundle_free(out);
    out = NULL;

    /* bundle_parse applies the same limit to text in memory. */
    assert_int_equal(bundle_parse(&out, text, big, &e), SYNC_EDATA);
    assert_null(out);
    assert_int_equal(bundle_parse(&out, good, n, &e), SYNC_OK);
    bundle_free(out);
    out = NULL;
    /* Not NUL-terminated: only n bytes are looked at. */
    text[n] = 'X';
    assert_int_equal(bundle_parse(&out, text, n, &e), SYNC_OK);
    bundle_free(out);
    out = NULL;
    /* ... but bytes after the object other than white space are refused. */
    assert_int_equal(bundle_parse(&out, text, n + 1, &e), SYNC_EDATA);
    assert_null(out);

    /* A PEM field over PEM_MAX is refused, naming the field. */
    {
        char *pem = malloc(PEM_MAX + 100);
        assert_non_null(pem);
        snprintf(pem, PEM_MAX + 100, "%s", CA_PEM);
        memset(pem + strlen(pem), 'A', PEM_MAX + 100 - strlen(pem) - 1);
        pem[PEM_MAX + 99] = '\0';
        expect_refused(f, with_string("ca_cert", pem), "ca_cert");
        free(pem);
    }
    cJSON_free(good);
    cJSON_Delete(o);
    free(text);
}

static void expect_split(const char *addr, const char *host, const char *port)
{
    char h[HUB_ADDRESS_MAX + 1], p[16];
    struct errctx e = {0};

    if (address_split(addr, h, sizeof(h), p, sizeof(p), &e) != SYNC_OK)
        fail_msg("address_split(\"%s\") failed: %s", addr, e.msg);
    assert_string_equal(h, host);
    assert_string_equal(p, port);
}

static void expect_split_fails(const char *addr)
{
    char h[HUB_ADDRESS_MAX + 1], p[16];
    struct errctx e = {0};
    int rc = address_split(addr, h, sizeof(h), p, sizeof(p), &e);

    if (rc != SYNC_EUSAGE)
        fail_msg("address_split(\"%s\"): rc %d, want SYNC_EUSAGE", addr, rc);
    assert_non_null(strstr(e.msg, addr));
}

static void test_address_split(void **state)
{
    char h[8], p[4];
    struct errctx e = {0};

    (void)state;
    expect_split("hub.example.org:7443", "hub.example.org", "7443");
    expect_split("127.0.0.1:1", "127.0.0.1", "1");
    expect_split("[::1]:443", "::1", "443");
    expect_split("[2001:db8::1]:65535", "2001:db8::1", "65535");
    expect_split("localhost:0", "localhost", "0"); /* the hub listens on any free port */

    expect_split_fails("hub.example.org");
    expect_split_fails("hub:");
    expect_split_fails(":443");
    expect_split_fails("hub:https");
    expect_split_fails("hub:44a");
    expect_split_fails("hub: 443");
    expect_split_fails("hub:+443");
    expect_split_fails("hub:-1");
    expect_split_fails("hub:65536");
    expect_split_fails("hub:99999");
    expect_split_fails("hub:4294967296"); /* wraps to 0 in an int */
    expect_split_fails("hub:4294967739"); /* wraps to 443 */
    expect_split_fails("[::1]");
    expect_split_fails("[::1]443");
    expect_split_fails("[::1:443");
    expect_split_fails("[]:443");
    expect_split_fails("");

    /* Results that do not fit the caller's buffers are refused. */
    assert_int_equal(address_split("a-long-host-name:1", h, sizeof(h), p, sizeof(p), &e),
                     SYNC_EUSAGE);
    assert_int_equal(address_split("host:4430", h, sizeof(h), p, sizeof(p), &e), SYNC_EUSAGE);
    assert_int_equal(address_split("1234567:443", h, sizeof(h), p, sizeof(p), &e), SYNC_OK);
    assert_string_equal(h, "1234567");
    assert_string_equal(p, "443");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_file_mode, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_not_json, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_missing_fields, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_nul, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_too_large, fx_setup, fx_teardown),
        cmocka_unit_test(test_address_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
