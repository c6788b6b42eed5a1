/*
 * fuzz_bundle.c - libFuzzer target for the join bundle reader.
 *
 * The input is handed to bundle_parse() as it is (not NUL-terminated, so
 * cJSON must stay within the n bytes it is given).  A refused bundle must
 * leave *out NULL with a known code and a message.  An accepted one must
 * hold every field within its bounds: a valid site id, a 64-digit lower-case
 * hex schema, a HUB_ADDRESS that address_split() takes, and PEM texts of at
 * most PEM_MAX bytes that carry their markers.  It is then written back as
 * bundle_write_file() writes it (cJSON_Print of the same fields) and parsed
 * again, which must give the same fields.  Any broken invariant aborts.
 *
 * fuzz-sources: common/bundle.c common/tls.c common/errctx.c
 * fuzz-pkgs: libcjson openssl
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "tls.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_bundle: invariant failed at line %d: %s\n", __LINE__, #c);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_pem(const char *pem, const char *marker)
{
    CHECK(pem != NULL);
    CHECK(strlen(pem) <= PEM_MAX);
    CHECK(strstr(pem, "-----BEGIN ") != NULL && strstr(pem, marker) != NULL);
}

static void check_fields(const struct bundle *b)
{
    char host[HUB_ADDRESS_MAX + 1], port[16];
    struct errctx e = {0};

    CHECK(strnlen(b->site_id, sizeof(b->site_id)) < sizeof(b->site_id));
    CHECK(tls_site_id_valid(b->site_id));
    CHECK(strnlen(b->hub_address, sizeof(b->hub_address)) < sizeof(b->hub_address));
    CHECK(strlen(b->schema) == 64 && strspn(b->schema, "0123456789abcdef") == 64);
    CHECK(address_split(b->hub_address, host, sizeof(host), port, sizeof(port), &e) == SYNC_OK);
    CHECK(host[0] != '\0' && strlen(port) >= 1 && strlen(port) <= 5 && atoi(port) <= 65535);
    check_pem(b->ca_cert, "CERTIFICATE");
    check_pem(b->site_cert, "CERTIFICATE");
    check_pem(b->site_key, "PRIVATE KEY");
}

/* The text bundle_write_file() would write for b (caller frees), or NULL. */
static char *print_bundle(const struct bundle *b)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;

    if (root != NULL && cJSON_AddStringToObject(root, "format", BUNDLE_FORMAT) &&
        cJSON_AddNumberToObject(root, "version", BUNDLE_VERSION) &&
        cJSON_AddStringToObject(root, "site_id", b->site_id) &&
        cJSON_AddStringToObject(root, "hub_address", b->hub_address) &&
        cJSON_AddStringToObject(root, "schema", b->schema) &&
        cJSON_AddStringToObject(root, "ca_cert", b->ca_cert) &&
        cJSON_AddStringToObject(root, "site_cert", b->site_cert) &&
        cJSON_AddStringToObject(root, "site_key", b->site_key))
        text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

static void check_round_trip(const struct bundle *b)
{
    struct bundle *again = NULL;
    struct errctx e = {0};
    char *text = print_bundle(b);
    size_t n;
    int rc;

    CHECK(text != NULL);
    n = strlen(text);
    rc = bundle_parse(&again, text, n, &e);
    /* Escaping can make the printed text longer than the input was. */
    if (n > JOIN_BUNDLE_MAX) {
        CHECK(rc == SYNC_EDATA && again == NULL);
    } else {
        CHECK(rc == SYNC_OK && again != NULL);
        CHECK(strcmp(again->site_id, b->site_id) == 0);
        CHECK(strcmp(again->hub_address, b->hub_address) == 0);
        CHECK(strcmp(again->schema, b->schema) == 0);
        CHECK(strcmp(again->ca_cert, b->ca_cert) == 0);
        CHECK(strcmp(again->site_cert, b->site_cert) == 0);
        CHECK(strcmp(again->site_key, b->site_key) == 0);
    }
    bundle_free(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bundle *b = (struct bundle *)1; /* must be reset even on refusal */
    struct errctx e = {0};
    int rc = bundle_parse(&b, (const char *)data, size, &e);

    if (rc != SYNC_OK) {
        CHECK(rc == SYNC_EDATA || rc == SYNC_ENOMEM);
        CHECK(b == NULL && e.code == rc && e.msg[0] != '\0');
        CHECK(strnlen(e.msg, sizeof(e.msg)) < sizeof(e.msg));
        return 0;
    }
    CHECK(b != NULL && size <= JOIN_BUNDLE_MAX);
    check_fields(b);
    check_round_trip(b);
    bundle_free(b);
    return 0;
}
