/*
 * hub.h - the hub's store: hub.db (authoritative tables, version log, push
 * ids, site certificates) and history.git (one commit per accepted change).
 *
 * One writer: hub_push() and hub_commit_sql() serialise on a mutex inside
 * struct hub and, across processes, on SQLite's write lock.  Readers open
 * their own connections with hub_reader_open() and read WAL snapshots.
 *
 * Write order for one version (see common/PROTOCOL.md, "Hub durability"):
 * apply + git objects + commit object, version row, move the branch, COMMIT.
 * hub.db is the truth: a branch that disagrees with the last version row is
 * moved back to it when the hub opens and before every write.
 */
#ifndef EMPACT_HUB_H
#define EMPACT_HUB_H

#include <sqlite3.h>
#include <stdint.h>

#include "errctx.h"
#include "gitpack.h"
#include "proto.h"
#include "schema.h"

#define HUB_DB "hub.db"
#define HUB_GIT "history.git"
#define HUB_CA_CERT "ca.pem"
#define HUB_CA_KEY "ca.key"
#define HUB_CERT "hub.pem"
#define HUB_KEY "hub.key"
#define HUB_AUTHOR "hub"

struct hub;

/* Creates HUBDIR with hub.db, history.git, the CA and the hub certificate,
 * and commits the seed metric catalogue as version 1.  Refuses an existing
 * hub.db. */
int hub_create(const char *dir, const struct schema *s, struct errctx *e) SYNC_WUR;

/* Creates a new, empty hub database at path (a file name, not HUBDIR) laid
 * out as hub_create() lays out hub.db, with no version, CA or repository,
 * and leaves it open in *out (caller closes with sqlite3_close).  For
 * `empact-hub rebuild`; refuses an existing file. */
int hub_db_create(sqlite3 **out, const char *path, const struct schema *s,
                  struct errctx *e) SYNC_WUR;

/* Opens an existing hub for writing.  Caller frees with hub_close(). */
int hub_open(struct hub **out, const char *dir, const struct schema *s, struct errctx *e) SYNC_WUR;

/* Safe to call with NULL. */
void hub_close(struct hub *h);

/* A site certificate as the hub registers it (strings borrowed). */
struct hub_cert {
    const char *fingerprint; /* lowercase hex SHA-256 of the DER (tls_cert_fingerprint) */
    const char *not_after;   /* expiry, ISO 8601 UTC (pki_cert_not_after) */
    const char *address;     /* the hub address written into the site's bundle */
};

/* Registers a site: its certificate (hub.db _empact_site_cert) and its row in
 * the hub-class table `site` (a new version authored by the hub).
 * SYNC_EUSAGE if site_id is already registered. */
int hub_add_site(struct hub *h, const char *site_id, const char *name, const char *jurisdiction,
                 const struct hub_cert *cert, struct errctx *e) SYNC_WUR;

/* Replaces the registered certificate of an existing, non-revoked site with
 * cert: from then on only the new certificate is accepted.  SYNC_EUSAGE with a
 * sentence if site_id is unknown or revoked. */
int hub_site_renew(struct hub *h, const char *site_id, const struct hub_cert *cert,
                   struct errctx *e) SYNC_WUR;

/* Marks site_id revoked: its next connection is refused, also by a hub that
 * is already serving (hub_site_check reads the flag per connection).
 * *already = 1 if it was revoked before (nothing changes).  SYNC_EUSAGE if
 * site_id is not registered. */
int hub_site_revoke(struct hub *h, const char *site_id, int *already, struct errctx *e) SYNC_WUR;

/* Records now as the time site_id's last sync ended successfully, and
 * version as the head the site pulled to on that connection (0: it pulled
 * nothing; the version recorded before stays). */
int hub_site_synced(struct hub *h, const char *site_id, uint64_t version,
                    struct errctx *e) SYNC_WUR;

/* Records that the hub refused a push or a connection of site_id, with the
 * reason (cut to REFUSAL_REASON_MAX bytes), for `empact-hub status`.  Does
 * nothing for a site that is not registered.  Drops refusals older than
 * REFUSAL_KEEP_DAYS and keeps at most REFUSAL_KEEP_MAX per site. */
int hub_site_refused(struct hub *h, const char *site_id, const char *reason,
                     struct errctx *e) SYNC_WUR;

/* Folds history.git's small packs and loose objects into one pack
 * (gitpack_fold(); all: every pack) under the fold lock only, then removes
 * what the new pack holds under this process's writer mutex and reopens its
 * repository handle.  A hub serving in another process keeps its handle:
 * libgit2 keeps the packs it has open readable after they are removed and
 * looks for new packs when an object is missing.  The hub's folding thread
 * does this after every HUB_PACK_EVERY-th version. */
int hub_gc(struct hub *h, int all, struct gitpack_stats *st, struct errctx *e) SYNC_WUR;

/* One enrolled site, for listing (strings borrowed until the callback
 * returns; those marked "or NULL" may be NULL). */
struct hub_site {
    const char *site_id;
    const char *name;         /* or NULL: no row in `site` */
    const char *jurisdiction; /* or NULL */
    const char *fingerprint;
    const char *not_after; /* or NULL: registered before expiry was recorded */
    const char *address;   /* or NULL: registered before the address was recorded */
    const char *last_sync; /* ISO 8601 UTC, or NULL: never synced */
    int revoked;
    int64_t conflicts;      /* entries of the conflict log whose loser is this site */
    int64_t synced_version; /* head pulled to at the last sync, or -1: unknown */
    int64_t lag;            /* head version - synced_version, or -1: unknown */
};

/* Calls fn for each registered site in site id order, or only for site_id
 * when it is not NULL (*found tells whether it exists; found may be NULL).
 * A non-zero return from fn stops and is returned. */
int hub_sites(struct hub *h, const char *site_id, int (*fn)(void *arg, const struct hub_site *s),
              void *arg, int *found, struct errctx *e) SYNC_WUR;

/* Applies one push from site_id (authenticated by TLS): m carries the push
 * id, base version and edit times, cs the decompressed changeset.  A push id
 * seen before returns the original result with duplicate = 1.  A push that
 * breaks a class rule is refused whole (SYNC_EREFUSED, nothing written);
 * otherwise it is merged by the policy in merge.h. */
int hub_push(struct hub *h, const char *site_id, const struct msg_push *m, const void *cs, size_t n,
             struct msg_push_ok *res, struct errctx *e) SYNC_WUR;

/* Opens a read connection to dir/hub.db (caller closes with sqlite3_close). */
int hub_reader_open(sqlite3 **out, const char *dir, struct errctx *e) SYNC_WUR;

/* SYNC_OK if site_id is registered with this certificate fingerprint and not
 * revoked; SYNC_EREFUSED with a sentence otherwise. */
int hub_site_check(sqlite3 *rdb, const char *site_id, const char *fingerprint,
                   struct errctx *e) SYNC_WUR;

/* One row of the version log, for pulls. */
struct hub_version {
    uint64_t seq;
    uint8_t commit[20];
    uint8_t tree[20];
    int64_t time;
    char site[SITE_ID_MAX + 8];
    const void *cs; /* borrowed until the next callback returns */
    size_t ncs;
};

/* Calls fn for each version after since (at most PULL_BATCH_MAX), in order,
 * inside one read snapshot; then reports the snapshot's head and its tree,
 * and whether more versions remain.  A non-zero return from fn stops. */
int hub_versions(sqlite3 *rdb, uint64_t since, int (*fn)(void *arg, const struct hub_version *v),
                 void *arg, uint64_t *head, uint8_t head_tree[20], int *more,
                 struct errctx *e) SYNC_WUR;

/* One entry of the conflict log, for pulls (strings borrowed until the
 * callback returns). */
struct hub_conflict {
    uint64_t id, version;
    const char *table, *key, *column, *kind, *winner, *lost, *kept;
    int64_t lost_at, won_at;
};

/* Calls fn for each conflict entry whose loser is site, with id > since, in
 * id order (at most PULL_BATCH_MAX); inside the caller's snapshot if any. */
int hub_conflicts(sqlite3 *rdb, const char *site, uint64_t since,
                  int (*fn)(void *arg, const struct hub_conflict *c), void *arg,
                  struct errctx *e) SYNC_WUR;

/* Reads dir/name (a PEM certificate or key, at most PEM_MAX bytes) into a new
 * NUL-terminated string; caller wipes and frees it (pki_pem_free). */
int hub_read_pem(char **out, const char *dir, const char *name, struct errctx *e) SYNC_WUR;

/* The newest version's number, commit and tree; *found = 0 when there is
 * none.  Inside the caller's read snapshot if any. */
int hub_head_ids(sqlite3 *db, uint64_t *seq, uint8_t commit[20], uint8_t tree[20], int *found,
                 struct errctx *e) SYNC_WUR;

/* The newest version number (0 when none). */
int hub_head(sqlite3 *db, uint64_t *head, struct errctx *e) SYNC_WUR;

#endif
