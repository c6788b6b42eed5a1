/*
 * bundle.c - reading and writing join bundles (format in bundle.h).
 *
 * The bundle is outside input (it travels by mail or USB stick), so the
 * reader bounds the file size before reading, lets cJSON parse it, then
 * checks each field's type and length before copying it.
 */
#include "bundle.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls.h"

void bundle_free(struct bundle *b)
{
    if (b == NULL)
        return;
    free(b->ca_cert);
    free(b->site_cert);
    if (b->site_key != NULL) {
        explicit_bzero(b->site_key, strlen(b->site_key));
        free(b->site_key);
    }
    free(b);
}

static int get_str(const cJSON *root, const char *name, const char **out, size_t max,
                   struct errctx *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!cJSON_IsString(it) || it->valuestring == NULL)
        return errctx_set(e, SYNC_EDATA, "join bundle: field \"%s\" is missing or not text", name);
    if (strlen(it->valuestring) > max)
        return errctx_set(e, SYNC_EDATA, "join bundle: field \"%s\" is longer than %zu bytes", name,
                          max);
    *out = it->valuestring;
    return SYNC_OK;
}

static int get_pem(const cJSON *root, const char *name, const char *marker, char **out,
                   struct errctx *e)
{
    const char *s;
    int rc = get_str(root, name, &s, PEM_MAX, e);
    if (rc != SYNC_OK)
        return rc;
    if (strstr(s, "-----BEGIN ") == NULL || strstr(s, marker) == NULL)
        return errctx_set(e, SYNC_EDATA, "join bundle: field \"%s\" is not a PEM %s", name, marker);
    if ((*out = strdup(s)) == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    return SYNC_OK;
}

static int copy_field(char *dst, size_t dstsz, const cJSON *root, const char *name,
                      struct errctx *e)
{
    const char *s;
    int rc = get_str(root, name, &s, dstsz - 1, e);
    if (rc == SYNC_OK)
        memcpy(dst, s, strlen(s) + 1);
    return rc;
}

/* 1 if the n bytes at p are all JSON white space. */
static int only_space(const char *p, size_t n)
{
    for (size_t i = 0; p != NULL && i < n; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
            return 0;
    }
    return 1;
}

int bundle_parse(struct bundle **out, const char *text, size_t n, struct errctx *e)
{
    cJSON *root = NULL;
    struct bundle *b = NULL;
    const cJSON *v;
    const char *fmt;
    char host[HUB_ADDRESS_MAX + 1], port[16];
    int rc;

    *out = NULL;
    if (n > JOIN_BUNDLE_MAX)
        return errctx_set(e, SYNC_EDATA,
                          "join bundle is %zu bytes, more than the %d a bundle can be", n,
                          JOIN_BUNDLE_MAX);
    const char *end = NULL;

    /* cJSON ends a string at an escaped NUL (\u0000): a field would be
     * silently cut short, so no bundle may hold one */
    if (memchr(text, '\0', n) != NULL)
        return errctx_set(e, SYNC_EDATA,
                          "join bundle holds a NUL byte; ask the central team for a new one");
    for (size_t i = 0; i + 6 <= n; i++) {
        if (text[i] == '\\' && text[i + 1] == 'u' && memcmp(text + i + 2, "0000", 4) == 0)
            return errctx_set(e, SYNC_EDATA,
                              "join bundle holds a NUL character (\\u0000); ask the central "
                              "team for a new one");
        if (text[i] == '\\')
            i++; /* an escaped backslash cannot start an escape */
    }
    if ((root = cJSON_ParseWithLengthOpts(text, n, &end, 0)) == NULL || !cJSON_IsObject(root) ||
        !only_space(end, (size_t)(text + n - end))) {
        rc = errctx_set(e, SYNC_EDATA,
                        "join bundle is not valid JSON (truncated or damaged?); ask the central "
                        "team for a new one");
        goto out;
    }
    if ((rc = get_str(root, "format", &fmt, 32, e)) != SYNC_OK)
        goto out;
    if (strcmp(fmt, BUNDLE_FORMAT) != 0) {
        rc = errctx_set(e, SYNC_EDATA, "not a join bundle (format is \"%s\")", fmt);
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(v) || v->valuedouble != BUNDLE_VERSION) {
        rc = errctx_set(e, SYNC_EDATA, "join bundle version is not %d; update this client",
                        BUNDLE_VERSION);
        goto out;
    }
    if ((b = calloc(1, sizeof(*b))) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = copy_field(b->site_id, sizeof(b->site_id), root, "site_id", e)) != SYNC_OK ||
        (rc = copy_field(b->hub_address, sizeof(b->hub_address), root, "hub_address", e)) !=
            SYNC_OK ||
        (rc = copy_field(b->schema, sizeof(b->schema), root, "schema", e)) != SYNC_OK ||
        (rc = get_pem(root, "ca_cert", "CERTIFICATE", &b->ca_cert, e)) != SYNC_OK ||
        (rc = get_pem(root, "site_cert", "CERTIFICATE", &b->site_cert, e)) != SYNC_OK ||
        (rc = get_pem(root, "site_key", "PRIVATE KEY", &b->site_key, e)) != SYNC_OK)
        goto out;
    if (!tls_site_id_valid(b->site_id)) {
        rc = errctx_set(e, SYNC_EDATA, "join bundle: site_id \"%s\" is not a valid site id",
                        b->site_id);
        goto out;
    }
    if (strlen(b->schema) != 64 || strspn(b->schema, "0123456789abcdef") != 64) {
        rc = errctx_set(e, SYNC_EDATA, "join bundle: schema is not a 64-digit fingerprint");
        goto out;
    }
    if (address_split(b->hub_address, host, sizeof(host), port, sizeof(port), e) != SYNC_OK) {
        rc = errctx_set(e, SYNC_EDATA, "join bundle: hub_address \"%s\" is not HOST:PORT",
                        b->hub_address);
        goto out;
    }
    *out = b;
    b = NULL;
    rc = SYNC_OK;
out:
    cJSON_Delete(root);
    bundle_free(b);
    return rc;
}

int bundle_read_file(struct bundle **out, const char *path, struct errctx *e)
{
    struct stat st;
    char *text = NULL;
    ssize_t got;
    int fd, rc;

    *out = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return errctx_set(e, SYNC_EIO, "cannot open join bundle %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = errctx_set(e, SYNC_EDATA, "join bundle %s is not a regular file", path);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = errctx_set(e, SYNC_EDATA,
                        "join bundle %s is readable by others (mode %03o) but holds a private "
                        "key; run: chmod 600 %s",
                        path, (unsigned)(st.st_mode & 0777), path);
        goto out;
    }
    if (st.st_size > JOIN_BUNDLE_MAX) {
        rc = errctx_set(e, SYNC_EDATA, "join bundle %s is %lld bytes, more than the %d allowed",
                        path, (long long)st.st_size, JOIN_BUNDLE_MAX);
        goto out;
    }
    if ((text = malloc((size_t)st.st_size + 1)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    got = read(fd, text, (size_t)st.st_size);
    if (got != st.st_size) {
        rc = errctx_set(e, SYNC_EIO, "cannot read join bundle %s", path);
        goto out;
    }
    rc = bundle_parse(out, text, (size_t)got, e);
    if (rc != SYNC_OK)
        errctx_wrap(e, "%s", path);
out:
    if (text != NULL) {
        explicit_bzero(text, (size_t)st.st_size);
        free(text);
    }
    close(fd);
    return rc;
}

int bundle_write_file(const struct bundle *b, const char *path, struct errctx *e)
{
    cJSON *root = cJSON_CreateObject();
    char *text = NULL;
    int fd = -1, rc = SYNC_OK;
    size_t len;

    if (root == NULL || !cJSON_AddStringToObject(root, "format", BUNDLE_FORMAT) ||
        !cJSON_AddNumberToObject(root, "version", BUNDLE_VERSION) ||
        !cJSON_AddStringToObject(root, "site_id", b->site_id) ||
        !cJSON_AddStringToObject(root, "hub_address", b->hub_address) ||
        !cJSON_AddStringToObject(root, "schema", b->schema) ||
        !cJSON_AddStringToObject(root, "ca_cert", b->ca_cert) ||
        !cJSON_AddStringToObject(root, "site_cert", b->site_cert) ||
        !cJSON_AddStringToObject(root, "site_key", b->site_key) ||
        (text = cJSON_Print(root)) == NULL) {
        rc = errctx_set(e, SYNC_ENOMEM, "out of memory writing the join bundle");
        goto out;
    }
    len = strlen(text);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot create join bundle %s: %s", path, strerror(errno));
        goto out;
    }
    if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot write join bundle %s: %s", path, strerror(errno));
        unlink(path);
    }
out:
    if (fd >= 0)
        close(fd);
    if (text != NULL) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    cJSON_Delete(root);
    return rc;
}

int address_split(const char *addr, char *host, size_t hostsz, char *port, size_t portsz,
                  struct errctx *e)
{
    const char *colon, *h = addr;
    size_t hlen;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return errctx_set(e, SYNC_EUSAGE, "address \"%s\" is not [HOST]:PORT", addr);
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        if ((colon = strrchr(addr, ':')) == NULL)
            return errctx_set(e, SYNC_EUSAGE, "address \"%s\" is not HOST:PORT", addr);
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= hostsz || strlen(colon + 1) == 0 || strlen(colon + 1) >= portsz ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) > 5 /* atoi() on more digits could overflow into range */ ||
        atoi(colon + 1) > 65535)
        return errctx_set(e, SYNC_EUSAGE, "address \"%s\" is not HOST:PORT", addr);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, portsz, "%s", colon + 1);
    return SYNC_OK;
}
