/*
 * bundle.h - the join bundle: everything a new site needs to reach its hub.
 *
 * A JSON object (written and read with cJSON), at most JOIN_BUNDLE_MAX bytes:
 *   {"format": "empact-join", "version": 1, "site_id": "...",
 *    "hub_address": "HOST:PORT", "schema": "<64 hex>",
 *    "ca_cert": "<PEM>", "site_cert": "<PEM>", "site_key": "<PEM>"}
 * The file holds a private key: it is written with mode 0600 and a reader
 * refuses one that others can read.
 */
#ifndef EMPACT_BUNDLE_H
#define EMPACT_BUNDLE_H

#include <stddef.h>

#include "errctx.h"

#define BUNDLE_FORMAT "empact-join"
#define BUNDLE_VERSION 1
#define HUB_ADDRESS_MAX 255

struct bundle {
    char site_id[SITE_ID_MAX + 1];
    char hub_address[HUB_ADDRESS_MAX + 1];
    char schema[65];
    char *ca_cert;   /* owned PEM */
    char *site_cert; /* owned PEM */
    char *site_key;  /* owned PEM; wiped by bundle_free() */
};

/* Parses bundle text (n bytes, need not be NUL-terminated).  Every field is
 * checked (presence, type, length, site id syntax, PEM markers); SYNC_EDATA
 * names the first bad field.  Caller frees with bundle_free(). */
int bundle_parse(struct bundle **out, const char *text, size_t n, struct errctx *e) SYNC_WUR;

/* Reads and parses the file at path: SYNC_EIO if unreadable, SYNC_EDATA if
 * group/other may read it (a private key inside) or it is not a bundle. */
int bundle_read_file(struct bundle **out, const char *path, struct errctx *e) SYNC_WUR;

/* Writes b to path with mode 0600 (refuses to overwrite an existing file). */
int bundle_write_file(const struct bundle *b, const char *path, struct errctx *e) SYNC_WUR;

/* Splits "HOST:PORT" (or "[v6]:PORT") into host and port; SYNC_EUSAGE if not one. */
int address_split(const char *addr, char *host, size_t hostsz, char *port, size_t portsz,
                  struct errctx *e) SYNC_WUR;

/* Safe to call with NULL; wipes the key. */
void bundle_free(struct bundle *b);

#endif
