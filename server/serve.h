/*
 * serve.h - the hub's network service: accepts TLS connections and speaks
 * the sync protocol (common/PROTOCOL.md), one thread per connection.
 */
#ifndef EMPACT_SERVE_H
#define EMPACT_SERVE_H

#include <signal.h>

#include "errctx.h"
#include "schema.h"

/* Serves dir until *stop becomes non-zero (set from a signal handler).
 * listen_addr is "HOST:PORT" (port 0 picks a free one).  max_per_ip bounds
 * the connections from one address (0: MAX_CONN_PER_IP).  Prints
 * "listening on HOST:PORT" as the first line on stdout once ready.  Logs one
 * line per event to stderr, never a row's values. */
int serve_run(const char *dir, const char *listen_addr, const struct schema *s, int max_per_ip,
              volatile sig_atomic_t *stop, struct errctx *e) SYNC_WUR;

#endif
