/*
 * main.c - empact: the site client's commands, options and exit codes.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bootstrap.h"
#include "bundle.h"
#include "cli.h"
#include "db.h"
#include "hea.h"
#include "library.h"
#include "lock.h"
#include "metrics.h"
#include "replica.h"
#include "schema.h"
#include "sync.h"
#include "syncjob.h"
#include "tls.h"

static const char usage_main[] =
    "usage: empact COMMAND [ARGS]\n"
    "\n"
    "The EMPaCT Sync site client: keeps this site's replica of the shared resource\n"
    "library and metrics in step with the hub, next to the site's confidential\n"
    "tables, which never leave the site.\n"
    "\n"
    "commands:\n"
    "  join SITE.db FILE.join [--hub HOST:PORT]   create the replica and sync it\n"
    "  sync SITE.db [--retry N [--backoff]]       push local changes, pull the hub's\n"
    "  status SITE.db [--json]                    what this replica holds and owes\n"
    "  verify SITE.db                             prove base holds the hub's data, offline\n"
    "  conflicts SITE.db [--json]                 this site's edits that lost at the hub\n"
    "  rejoin SITE.db FILE.join [--hub HOST:PORT] install a renewed join bundle\n"
    "  resource add|edit|list|search|import|export SITE.db ...\n"
    "                                             the shared resource library, offline\n"
    "\n"
    "the site's confidential work (never sent to the hub):\n"
    "  partner add|list SITE.db ...               impact partners\n"
    "  member add|list SITE.db ...                community members\n"
    "  hea add|advance|partner|member|decision|pay|list|show SITE.db ...\n"
    "                                             Health Equity Analyses, step by step\n"
    "  metrics compute|list SITE.db ...           the aggregates the hub receives\n"
    "\n"
    "Run 'empact COMMAND --help' for a command's options.\n"
    "Exit codes: 0 ok, 64 usage, 65 bad data or diverged replica, 70 internal,\n"
    "73 another sync or join of the replica is running, 74 local i/o, 75 hub\n"
    "unreachable (retry later; nothing lost), 77 refused by hub.\n";

static const char usage_join[] =
    "usage: empact join SITE.db FILE.join [--hub HOST:PORT]\n"
    "\n"
    "Creates the replica SITE.db (mode 0600) from the join bundle the central team\n"
    "sent, installs a snapshot of the hub's shared data as of its newest version\n"
    "(progress on stdout: a bar on a terminal, a line per tenth otherwise), and\n"
    "syncs.  A failed or interrupted join leaves no SITE.db behind: run it again.\n"
    "--hub overrides the hub address written in the bundle.\n"
    "Exit codes: 0 joined, 64 usage or SITE.db exists, 65 bad bundle, 73 a sync or\n"
    "join of SITE.db is running, 74 i/o, 75 hub unreachable (retry later), 77\n"
    "refused by the hub.\n";

static const char usage_sync[] =
    "usage: empact sync SITE.db [--retry N [--backoff]] [--log-format text|json] [--syslog]\n"
    "\n"
    "Sends this site's changes to the hub and applies everything newer from the\n"
    "hub, in one transaction: if anything fails, the replica stays as it was and\n"
    "local changes wait for the next sync.  Safe to run from cron or a timer:\n"
    "a second sync (or join) of the same replica exits at once with 73 while one\n"
    "runs (lock file SITE.db.lock, released by the kernel however a sync ends).\n"
    "\n"
    "  --retry N          after a network failure (75), try again up to N times\n"
    "                     (0-100); a refusal (77), bad data (65) or a local error\n"
    "                     is never retried.  Waits 1 s between attempts, or with\n"
    "  --backoff          up to 1 s, 2 s, 4 s ... (at most 60 s), chosen at random\n"
    "                     (exponential backoff with full jitter)\n"
    "  --log-format F     one line per attempt on stderr: text (the default when\n"
    "                     --retry or --syslog is given) or json (time, db, site,\n"
    "                     attempt, attempts, outcome ok|retry|failed|locked,\n"
    "                     exit_code, message, next_retry_s)\n"
    "  --syslog           the same lines to syslog(3) too (ident empact)\n"
    "\n"
    "Exit codes: 0 synced, 64 usage, 65 replica damaged or diverged, 73 another\n"
    "sync or join of this replica is running (nothing done; not an error for a\n"
    "timer), 74 i/o or replica busy, 75 hub unreachable or connection lost (retry\n"
    "later; nothing lost), 77 refused by the hub (certificate, schema or push\n"
    "rejected).  With --retry, the exit code is the last attempt's.\n";

static const char usage_conflicts[] =
    "usage: empact conflicts SITE.db [--json]\n"
    "\n"
    "Lists this site's input that lost at the hub: an edit overridden by a later\n"
    "edit of the same column elsewhere, a value replaced or deleted by another\n"
    "site, an update of a row deleted at the hub, a change the hub rejected.\n"
    "Each entry names the table, row, column, what was lost, what was kept and\n"
    "who won; the hub's data already holds the winner, so to restore your value,\n"
    "edit the row again and sync.  Listing them marks them read for 'empact status'.\n";

static const char usage_status[] =
    "usage: empact status SITE.db [--json]\n"
    "\n"
    "Prints the site id, the hub address, the synced version, the hub's head\n"
    "version as of the last contact (and when that was), the number of local\n"
    "changes waiting to be sent, the conflicts received and how many of them are\n"
    "unread (received since 'empact conflicts' last listed them), the time of the\n"
    "last successful sync, and the last failure with its reason.  Reads only.\n";

static const char usage_verify[] =
    "usage: empact verify SITE.db\n"
    "\n"
    "Hashes every row of the replica's base copy of the shared tables (what the\n"
    "site last received from the hub) and compares the result with the dataset\n"
    "hash the last sync proved, without contacting the hub.  A sync rehashes only\n"
    "the rows it changed and trusts the rest to its earlier proof; this command\n"
    "checks the rest too (run it now and then, e.g. weekly from cron).  If the\n"
    "hashes differ the base copy was changed outside a sync: the next 'empact\n"
    "sync' rebuilds it from the hub and keeps the coordinator's pending edits.\n"
    "Exit codes: 0 equal, 64 usage, 65 different (or never synced) or not a\n"
    "replica, 73 a sync or join of the replica is running, 74 i/o.\n";

static const char usage_rejoin[] =
    "usage: empact rejoin SITE.db FILE.join [--hub HOST:PORT]\n"
    "\n"
    "Installs a renewed join bundle (from 'empact-hub renew-site') into the\n"
    "existing replica SITE.db: its new certificate and key replace the old ones,\n"
    "in one transaction; the replica's data and pending changes stay as they are.\n"
    "The bundle must be for this replica's site id and from this replica's hub\n"
    "(same CA), and readable by its owner only.  The hub address becomes the\n"
    "bundle's; --hub sets another.  Nothing is sent: run 'empact sync' next.\n"
    "Exit codes: 0 installed, 64 usage, 65 bad bundle (other site, other hub,\n"
    "readable by others) or not a replica, 74 i/o or replica busy.\n";

static int fail(int rc, const struct errctx *e)
{
    fprintf(stderr, "empact: %s\n", e->msg[0] ? e->msg : errctx_code_name(rc));
    return cli_exit_code(rc);
}

static int usage_error(const char *usage, const char *why)
{
    return cli_usage_error("empact", usage, why);
}

static const char *plural(unsigned long long n)
{
    return n == 1 ? "" : "s";
}

static void print_result(const char *path, const struct sync_result *r)
{
    unsigned long long n = (unsigned long long)r->pushed;

    if (r->pushed == 0)
        printf("%s: nothing to send", path);
    else if (r->duplicate)
        printf("%s: sent %llu change%s (the hub already had them as version %llu)", path, n,
               plural(n), (unsigned long long)r->push_version);
    else if (r->push_version)
        printf("%s: sent %llu change%s, accepted as version %llu", path, n, plural(n),
               (unsigned long long)r->push_version);
    else
        printf("%s: sent %llu change%s, the hub's data already had them", path, n, plural(n));
    if (r->overridden)
        printf(" (%u lost in conflicts)", r->overridden);
    printf("; received %llu version%s; now at version %llu (dataset %.12s)\n",
           (unsigned long long)r->pulled, plural(r->pulled), (unsigned long long)r->version,
           r->tree);
    if (r->dict_fetched)
        printf("%s: fetched the hub's compression dictionary %u\n", path, r->dict);
    if (r->rebuilt)
        printf("%s: the replica's copy of the hub's data had diverged and was rebuilt from the "
               "hub; local changes were kept\n",
               path);
    if (r->conflicts)
        printf("%s: %llu new conflict%s: some of this site's input lost at the hub; run "
               "'empact conflicts %s'\n",
               path, (unsigned long long)r->conflicts, plural(r->conflicts), path);
}

static void remove_replica_files(const char *path)
{
    char p[4096];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

/* The checks join and rejoin share: hub (may be NULL) is HOST:PORT, and the
 * bundle at path is private to its owner, well formed and for schema s. */
static int bundle_load(struct bundle **out, const char *path, const char *hub,
                       const struct schema *s, struct errctx *e)
{
    char host[HUB_ADDRESS_MAX + 1], port[16];
    int rc;

    *out = NULL;
    if (hub != NULL && (rc = address_split(hub, host, sizeof(host), port, sizeof(port), e)))
        return rc;
    if ((rc = bundle_read_file(out, path, e)) != SYNC_OK)
        return rc;
    if (strcmp((*out)->schema, s->fingerprint_hex) != 0) {
        rc = errctx_set(e, SYNC_ESCHEMA,
                        "the join bundle is for schema %.12s but this client has schema %.12s; "
                        "install the client version that matches the hub",
                        (*out)->schema, s->fingerprint_hex);
        bundle_free(*out);
        *out = NULL;
    }
    return rc;
}

/* Builds the replica under a temporary name, installs the hub's snapshot,
 * syncs what came after it, then links it into place: a failed or killed
 * join leaves no SITE.db, and the next join starts again from scratch. */
static int join(const char *path, const char *bundle_path, const char *hub, const struct schema *s,
                struct sync_result *r, struct errctx *e)
{
    struct bundle *b = NULL;
    struct bootstrap_result boot;
    sqlite3 *db = NULL;
    char tmp[4096];
    int rc;

    if (access(path, F_OK) == 0)
        return errctx_set(e, SYNC_EUSAGE, "%s exists; a replica is joined only once", path);
    if ((rc = bundle_load(&b, bundle_path, hub, s, e)) != SYNC_OK)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.joining", path);
    remove_replica_files(tmp); /* a join that died earlier */
    if ((rc = replica_create(&db, tmp, s, b, hub, e)) != SYNC_OK ||
        (rc = bootstrap_run(db, s, stdout, &boot, e)) != SYNC_OK ||
        (rc = sync_run(db, s, r, e)) != SYNC_OK)
        goto out;
    replica_close(db);
    db = NULL;
    if (link(tmp, path) != 0) {
        rc = errctx_set(e, SYNC_EIO, "cannot create %s: %s", path, strerror(errno));
        goto out;
    }
    unlink(tmp);
out:
    replica_close(db);
    if (rc != SYNC_OK)
        remove_replica_files(tmp);
    bundle_free(b);
    return rc;
}

static int cmd_join(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"hub", required_argument, NULL, 'H'},
                                         {NULL, 0, NULL, 0}};
    const char *hub = NULL;
    struct errctx e = {0, ""};
    struct sync_result r;
    struct lock *lk = NULL;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hH:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_join, stdout);
            return EXIT_OK;
        case 'H':
            hub = optarg;
            break;
        default:
            return usage_error(usage_join, "unknown option");
        }
    }
    if (argc - optind != 2)
        return usage_error(usage_join, "join takes SITE.db and FILE.join");
    if ((rc = lock_acquire(&lk, argv[optind], &e)) == SYNC_OK)
        rc = join(argv[optind], argv[optind + 1], hub, s, &r, &e);
    lock_release(lk); /* removes SITE.db.lock when there is no SITE.db */
    if (rc != SYNC_OK)
        return fail(rc, &e);
    print_result(argv[optind], &r);
    return EXIT_OK;
}

static int cmd_sync(int argc, char **argv, const struct schema *s)
{
    const char *retry = NULL, *backoff = NULL, *log_format = NULL, *to_syslog = NULL;
    const struct cli_opt opts[] = {{"retry", 0, 1, &retry},
                                   {"backoff", 0, 0, &backoff},
                                   {"log-format", 0, 1, &log_format},
                                   {"syslog", 0, 0, &to_syslog},
                                   {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    struct sync_result r;
    struct syncjob j;
    int rc = cli_parse(argc, argv, "empact", usage_sync, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (syncjob_options(&j, argv[optind], retry, backoff, log_format, to_syslog, &e) != SYNC_OK)
        return usage_error(usage_sync, e.msg);
    if ((rc = syncjob_run(&j, s, &r, &e)) != SYNC_OK)
        return j.log != SYNCLOG_OFF ? cli_exit_code(rc) : fail(rc, &e); /* logged already */
    print_result(argv[optind], &r);
    return EXIT_OK;
}

/* *same = 1 when the replica's credential `key` (a PEM certificate) is the
 * certificate pem (same SHA-256 fingerprint); what names it in messages. */
static int same_cert(int *same, sqlite3 *db, const char *key, const char *pem, const char *what,
                     struct errctx *e)
{
    char *have = NULL, fa[65], fb[65];
    int rc;

    *same = 0;
    if ((rc = replica_meta_get(&have, db, key, e)) != SYNC_OK)
        return rc;
    if (tls_cert_fingerprint(fa, have, e) != SYNC_OK)
        rc = errctx_set(e, SYNC_EDATA, "this replica's %s cannot be read; it is damaged", what);
    else if (tls_cert_fingerprint(fb, pem, e) != SYNC_OK)
        rc = errctx_set(e, SYNC_EDATA, "the join bundle's %s is not a valid certificate", what);
    else
        *same = strcmp(fa, fb) == 0;
    sqlite3_free(have);
    return rc;
}

/* Refuses a bundle not made for this replica: another site id, another hub
 * (CA), a certificate for another site id, a key that is not the
 * certificate's.  *unchanged = 1 when its certificate is already installed. */
static int rejoin_check(sqlite3 *db, const struct bundle *b, int *unchanged, struct errctx *e)
{
    struct tls_ctx *ctx = NULL;
    char *site = NULL, cn[SITE_ID_MAX + 1];
    int same_ca = 0, rc;

    if ((rc = replica_meta_get(&site, db, "site_id", e)) != SYNC_OK)
        return rc;
    if (strcmp(site, b->site_id) != 0) {
        rc = errctx_set(e, SYNC_EDATA,
                        "the join bundle is for site %s but this replica is site %s; ask the "
                        "central team for site %s's renewed bundle",
                        b->site_id, site, site);
        goto out;
    }
    if ((rc = same_cert(&same_ca, db, "ca_cert", b->ca_cert, "hub CA", e)) != SYNC_OK)
        goto out;
    if (!same_ca) {
        rc = errctx_set(e, SYNC_EDATA,
                        "the join bundle comes from another hub: its CA certificate is not the "
                        "one this replica trusts; ask this replica's central team for a bundle");
        goto out;
    }
    if ((rc = tls_cert_cn(cn, sizeof(cn), b->site_cert, e)) != SYNC_OK ||
        strcmp(cn, b->site_id) != 0) {
        rc = errctx_set(e, SYNC_EDATA,
                        "the join bundle's certificate is not issued to site %s; ask the "
                        "central team for a new bundle",
                        b->site_id);
        goto out;
    }
    if (tls_ctx_new_client(&ctx, b->site_cert, b->site_key, b->ca_cert, e) != SYNC_OK) {
        e->code = rc = SYNC_EDATA;
        errctx_wrap(e, "the join bundle's certificate and key are unusable");
        goto out;
    }
    rc = same_cert(unchanged, db, "site_cert", b->site_cert, "certificate", e);
out:
    tls_ctx_free(ctx);
    sqlite3_free(site);
    return rc;
}

static int rejoin(const char *path, const char *bundle_path, const char *hub,
                  const struct schema *s, struct errctx *e)
{
    struct bundle *b = NULL;
    sqlite3 *db = NULL;
    char *old_hub = NULL;
    int unchanged = 0, rc;

    if ((rc = bundle_load(&b, bundle_path, hub, s, e)) != SYNC_OK ||
        (rc = replica_open(&db, path, s, e)) != SYNC_OK ||
        (rc = rejoin_check(db, b, &unchanged, e)) != SYNC_OK ||
        (rc = replica_meta_get(&old_hub, db, "hub_address", e)) != SYNC_OK)
        goto out;
    if (hub == NULL)
        hub = b->hub_address;
    if ((rc = replica_set_credentials(db, b, hub, e)) != SYNC_OK)
        goto out;
    if (unchanged)
        printf("%s: this bundle's certificate was already installed for site %s\n", path,
               b->site_id);
    else
        printf("%s: installed the renewed certificate for site %s\n", path, b->site_id);
    if (strcmp(old_hub, hub) != 0)
        printf("%s: hub address changed from %s to %s\n", path, old_hub, hub);
    printf("%s: run 'empact sync %s' to connect with it\n", path, path);
out:
    sqlite3_free(old_hub);
    replica_close(db);
    bundle_free(b);
    return rc;
}

static int cmd_rejoin(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"hub", required_argument, NULL, 'H'},
                                         {NULL, 0, NULL, 0}};
    const char *hub = NULL;
    struct errctx e = {0, ""};
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hH:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_rejoin, stdout);
            return EXIT_OK;
        case 'H':
            hub = optarg;
            break;
        default:
            return usage_error(usage_rejoin, "unknown option");
        }
    }
    if (argc - optind != 2)
        return usage_error(usage_rejoin, "rejoin takes SITE.db and FILE.join");
    if ((rc = rejoin(argv[optind], argv[optind + 1], hub, s, &e)) != SYNC_OK)
        return fail(rc, &e);
    return EXIT_OK;
}

/* Adds key: s, or null when s is "". */
static void json_add_text(cJSON *o, const char *key, const char *s)
{
    if (s[0])
        cJSON_AddStringToObject(o, key, s);
    else
        cJSON_AddNullToObject(o, key);
}

static void print_status_json(const struct replica_status *st)
{
    cJSON *o = cJSON_CreateObject();
    char *text;

    cJSON_AddStringToObject(o, "site", st->site);
    cJSON_AddStringToObject(o, "hub", st->hub);
    cJSON_AddNumberToObject(o, "synced_version", (double)st->version);
    cJSON_AddStringToObject(o, "dataset", st->tree);
    cJSON_AddNumberToObject(o, "pending_changes", (double)st->pending);
    cJSON_AddNumberToObject(o, "conflicts", (double)st->conflicts);
    if (st->last_sync[0])
        cJSON_AddStringToObject(o, "last_sync", st->last_sync);
    else
        cJSON_AddNullToObject(o, "last_sync");
    if (st->last_error[0]) {
        cJSON_AddStringToObject(o, "last_error", st->last_error);
        cJSON_AddStringToObject(o, "last_error_at", st->last_error_at);
    } else {
        cJSON_AddNullToObject(o, "last_error");
    }
    if (st->hub_head)
        cJSON_AddNumberToObject(o, "hub_head_version", (double)st->hub_head);
    else
        cJSON_AddNullToObject(o, "hub_head_version");
    json_add_text(o, "hub_contact_at", st->hub_contact_at);
    cJSON_AddNumberToObject(o, "unread_conflicts", (double)st->unread);
    json_add_text(o, "last_failure", st->last_failure);
    json_add_text(o, "last_failure_at", st->last_failure[0] ? st->last_error_at : "");
    if ((text = cJSON_Print(o)) != NULL)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(o);
}

static int cmd_status(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    struct errctx e = {0, ""};
    struct replica_status st;
    sqlite3 *db = NULL;
    int c, rc, json = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_status, stdout);
            return EXIT_OK;
        case 'j':
            json = 1;
            break;
        default:
            return usage_error(usage_status, "unknown option");
        }
    }
    if (argc - optind != 1)
        return usage_error(usage_status, "status takes one argument, SITE.db");
    if ((rc = replica_open(&db, argv[optind], s, &e)) != SYNC_OK ||
        (rc = replica_status(&st, db, s, &e)) != SYNC_OK) {
        replica_close(db);
        return fail(rc, &e);
    }
    replica_close(db);
    if (!st.last_failure[0] && st.last_error[0]) /* recorded by an older release */
        snprintf(st.last_failure, sizeof(st.last_failure), "%s", st.last_error);
    if (json) {
        print_status_json(&st);
        return EXIT_OK;
    }
    printf("site: %s\nhub: %s\nsynced version: %llu\ndataset: %s\npending changes: %lld\n"
           "last sync: %s\n",
           st.site, st.hub, (unsigned long long)st.version, st.tree[0] ? st.tree : "-", st.pending,
           st.last_sync[0] ? st.last_sync : "never");
    if (st.hub_head)
        printf("hub head version: %llu (as of %s)\n", (unsigned long long)st.hub_head,
               st.hub_contact_at);
    else
        printf("hub head version: unknown (no contact yet)\n");
    printf("conflicts: %lld\nunread conflicts: %lld\n", st.conflicts, st.unread);
    if (st.last_failure[0])
        printf("last failure: %s (%s)%s\n", st.last_failure, st.last_error_at,
               st.last_error[0] ? "" : "; synced since");
    return EXIT_OK;
}

static int cmd_verify(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct errctx e = {0, ""};
    struct lock *lk = NULL;
    sqlite3 *db = NULL;
    char got[41], want[41];
    uint64_t version = 0;
    int c, rc, match = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage_verify, stdout);
            return EXIT_OK;
        }
        return usage_error(usage_verify, "unknown option");
    }
    if (argc - optind != 1)
        return usage_error(usage_verify, "verify takes one argument, SITE.db");
    if ((rc = lock_acquire(&lk, argv[optind], &e)) == SYNC_OK &&
        (rc = replica_open(&db, argv[optind], s, &e)) == SYNC_OK)
        rc = replica_verify(&match, &version, got, want, db, s, &e);
    replica_close(db);
    lock_release(lk);
    if (rc != SYNC_OK)
        return fail(rc, &e);
    if (!match) {
        fprintf(stderr,
                "empact: %s: the base copy at version %llu hashes to %.12s, not to %.12s, the "
                "hub's; it was changed outside a sync.  The next 'empact sync' rebuilds it from "
                "the hub (pending edits are kept).\n",
                argv[optind], (unsigned long long)version, got, want);
        return EXIT_DATA;
    }
    printf("%s: the base copy at version %llu hashes to %s, the hub's dataset hash: every "
           "shared row is the hub's\n",
           argv[optind], (unsigned long long)version, got);
    return EXIT_OK;
}

/* Lists the conflicts; *newest receives the greatest id listed (0: none). */
static int conflicts_print(sqlite3 *db, int json, long long *newest, struct errctx *e)
{
    sqlite3_stmt *st = NULL;
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    int step, n = 0;

    *newest = 0;

    if (sqlite3_prepare_v2(db,
                           "SELECT id, version, tbl, row_key, col, kind, winner_site, lost_value, "
                           "kept_value, lost_at, won_at, received_at FROM _empact_conflict "
                           "ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return errctx_set(e, SYNC_EDATA, "replica: %s", sqlite3_errmsg(db));
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *col = (const char *)sqlite3_column_text(st, 4);
        const char *winner = (const char *)sqlite3_column_text(st, 6);
        n++;
        *newest = sqlite3_column_int64(st, 0);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", (double)sqlite3_column_int64(st, 0));
            cJSON_AddNumberToObject(o, "version", (double)sqlite3_column_int64(st, 1));
            cJSON_AddStringToObject(o, "table", (const char *)sqlite3_column_text(st, 2));
            cJSON_AddStringToObject(o, "key", (const char *)sqlite3_column_text(st, 3));
            cJSON_AddStringToObject(o, "column", col);
            cJSON_AddStringToObject(o, "kind", (const char *)sqlite3_column_text(st, 5));
            cJSON_AddStringToObject(o, "winner", winner);
            cJSON_AddStringToObject(o, "lost_value", (const char *)sqlite3_column_text(st, 7));
            cJSON_AddStringToObject(o, "kept_value", (const char *)sqlite3_column_text(st, 8));
            cJSON_AddNumberToObject(o, "lost_at_ms", (double)sqlite3_column_int64(st, 9));
            cJSON_AddNumberToObject(o, "won_at_ms", (double)sqlite3_column_int64(st, 10));
            cJSON_AddStringToObject(o, "received_at", (const char *)sqlite3_column_text(st, 11));
            cJSON_AddItemToArray(arr, o);
        } else {
            const char *kept = (const char *)sqlite3_column_text(st, 8);
            const char *kind = (const char *)sqlite3_column_text(st, 5);
            if (kept[0] == '\0')
                kept = strstr(kind, "delete") ? "(the row was deleted)" : "(nothing)";
            printf("#%lld %s %s %s%s%s: %s\n    lost: %s\n    kept: %s, by %s\n",
                   (long long)sqlite3_column_int64(st, 0), sqlite3_column_text(st, 11),
                   sqlite3_column_text(st, 2), sqlite3_column_text(st, 3), col[0] ? " " : "", col,
                   kind, sqlite3_column_text(st, 7), kept, winner[0] ? winner : "the hub");
        }
    }
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        cJSON_Delete(arr);
        return errctx_set(e, SYNC_EDATA, "replica: %s", sqlite3_errmsg(db));
    }
    if (json) {
        char *text = cJSON_Print(arr);
        if (text != NULL)
            printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(arr);
    } else if (n == 0) {
        printf("no conflicts: every edit this site sent is on the hub\n");
    }
    return SYNC_OK;
}

/* Records that the conflicts up to id newest were listed, for the unread
 * count of `empact status`.  Best effort: a replica busy with a sync leaves
 * them unread, which is said, and the listing still succeeded. */
static void conflicts_mark_read(sqlite3 *db, long long newest)
{
    struct errctx e = {0, ""};
    char num[32];

    snprintf(num, sizeof(num), "%lld", newest);
    if (replica_meta_set(db, REPLICA_CONFLICTS_READ, num, &e) != SYNC_OK)
        fprintf(stderr,
                "empact: could not mark these conflicts read (%s); 'empact status' "
                "still counts them as unread\n",
                e.msg);
}

static int cmd_conflicts(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    struct errctx e = {0, ""};
    sqlite3 *db = NULL;
    long long newest = 0;
    int c, rc, json = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_conflicts, stdout);
            return EXIT_OK;
        case 'j':
            json = 1;
            break;
        default:
            return usage_error(usage_conflicts, "unknown option");
        }
    }
    if (argc - optind != 1)
        return usage_error(usage_conflicts, "conflicts takes one argument, SITE.db");
    if ((rc = replica_open(&db, argv[optind], s, &e)) == SYNC_OK &&
        (rc = conflicts_print(db, json, &newest, &e)) == SYNC_OK && newest > 0)
        conflicts_mark_read(db, newest);
    replica_close(db);
    return rc == SYNC_OK ? EXIT_OK : fail(rc, &e);
}

int main(int argc, char **argv)
{
    struct errctx e = {0, ""};
    struct schema *s = NULL;
    const char *cmd;
    int rc;

    db_global_init();
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    if (argc < 2)
        return usage_error(usage_main, "no command given");
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return EXIT_OK;
    }
    if ((rc = schema_load(&s, &e)) != SYNC_OK)
        return fail(rc, &e);
    if (strcmp(cmd, "join") == 0)
        rc = cmd_join(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "sync") == 0)
        rc = cmd_sync(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "conflicts") == 0)
        rc = cmd_conflicts(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "verify") == 0)
        rc = cmd_verify(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "rejoin") == 0)
        rc = cmd_rejoin(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "hea") == 0 || strcmp(cmd, "partner") == 0 || strcmp(cmd, "member") == 0)
        rc = hea_main(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "resource") == 0)
        rc = library_main(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "metrics") == 0)
        rc = metrics_main(argc - 1, argv + 1, s);
    else
        rc = usage_error(usage_main, "unknown command");
    schema_free(s);
    return rc;
}
