/*
 * main.c - empact-hub: options, commands and exit codes for the hub.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "backup.h"
#include "bundle.h"
#include "cli.h"
#include "db.h"
#include "dict.h"
#include "hub.h"
#include "pki.h"
#include "rebuild.h"
#include "report.h"
#include "schema.h"
#include "serve.h"
#include "status.h"
#include "tls.h"
#include "verify.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static const char usage_main[] =
    "usage: empact-hub COMMAND [ARGS]\n"
    "\n"
    "The EMPaCT Sync hub: keeps the authoritative shared data, versions every\n"
    "accepted change in a git repository, and serves sites over TLS 1.3.\n"
    "\n"
    "commands:\n"
    "  init HUBDIR                      create a hub (database, git history, CA)\n"
    "  add-site HUBDIR SITE_ID --address HOST:PORT -o FILE.join\n"
    "                                   register a site and write its join bundle\n"
    "  serve HUBDIR [--listen HOST:PORT] serve sites until SIGTERM or SIGINT\n"
    "  sites HUBDIR [--json]            list enrolled sites, certificates, last syncs\n"
    "  revoke-site HUBDIR SITE_ID       refuse the site from its next connection on\n"
    "  renew-site HUBDIR SITE_ID -o FILE.join [--address HOST:PORT]\n"
    "                                   new certificate and join bundle for a site\n"
    "  report HUBDIR [--from P] [--to P] [--format text|csv|json|html] [-o FILE]\n"
    "                                   the cross-site impact report\n"
    "  verify HUBDIR [--json]           check hub.db, history.git and that they agree\n"
    "  rebuild HUBDIR --from HUBDIR/history.git [--force] [SITE.join|CERT.pem ...]\n"
    "                                   a lost hub.db again from the git history\n"
    "  status HUBDIR [--json] [--stale-hours H]\n"
    "                                   per site: last sync, lag, 24 h activity; exit 1 if stale\n"
    "  backup HUBDIR DEST               consistent online backup (restore: cp -a DEST NEWHUBDIR)\n"
    "  gc HUBDIR                        pack history.git's loose objects\n"
    "  train-dict HUBDIR [--size BYTES] train a compression dictionary for small syncs\n"
    "\n"
    "Run 'empact-hub COMMAND --help' for a command's options.\n"
    "Exit codes: 0 ok, 64 usage, 65 bad data, 70 internal, 74 i/o, 77 refused.\n";

static const char usage_init[] =
    "usage: empact-hub init HUBDIR\n"
    "\n"
    "Creates HUBDIR with hub.db, the bare git repository history.git, a certificate\n"
    "authority (ca.pem, ca.key) and the hub's certificate (hub.pem, hub.key), and\n"
    "seeds the metric catalogue as version 1.  Refuses a directory that already\n"
    "holds a hub.  Keep ca.key secret: it can enrol sites.\n";

static const char usage_add_site[] =
    "usage: empact-hub add-site HUBDIR SITE_ID --address HOST:PORT -o FILE.join\n"
    "                           [--name NAME] [--jurisdiction TEXT]\n"
    "\n"
    "Registers SITE_ID (lowercase letters, digits and '-', at most 32) and writes\n"
    "its join bundle (mode 0600): the site's key and certificate, the hub CA, the\n"
    "hub address sites should dial, and the schema fingerprint.  Give the bundle\n"
    "to the site's coordinator privately; it holds a private key.\n";

static const char usage_serve[] =
    "usage: empact-hub serve HUBDIR [--listen HOST:PORT] [--max-per-ip N]\n"
    "\n"
    "Serves sites.  --listen defaults to 127.0.0.1:0 (port 0 picks a free port).\n"
    "--max-per-ip bounds the connections served at once from one address (default\n"
    "32, at most 256): raise it when many sites share one NAT address.\n"
    "The first line on stdout is 'listening on HOST:PORT'; the log goes to stderr.\n"
    "SIGTERM or SIGINT stops the hub after open connections finish.\n";

static const char usage_sites[] =
    "usage: empact-hub sites HUBDIR [--json]\n"
    "\n"
    "Lists every enrolled site: site id, name, jurisdiction, the SHA-256\n"
    "fingerprint of its registered certificate (lowercase hex of the DER, as\n"
    "'openssl x509 -noout -fingerprint -sha256' shows it without the colons),\n"
    "when that certificate expires (ISO 8601 UTC), whether the site is revoked,\n"
    "when its last sync ended successfully (ISO 8601 UTC, 'never' if not yet), and\n"
    "its conflicts: every entry of the hub's conflict log where this site's input\n"
    "lost.  The hub does not track which entries a site has already received, so\n"
    "this is the total since the site joined, not only the undelivered ones.\n"
    "--json prints a JSON array with one object per site instead of a table.\n"
    "Exit codes: 0 ok, 64 usage, 65 not a hub, 74 i/o.\n";

static const char usage_revoke_site[] =
    "usage: empact-hub revoke-site HUBDIR SITE_ID\n"
    "\n"
    "Revokes SITE_ID: the hub refuses its next connection (exit 77 at the site),\n"
    "also when the hub is already serving, without a restart.  The site's data\n"
    "at the hub stays.  Revoking a revoked site changes nothing and says so.\n"
    "There is no un-revoke: enrol the site again under a new site id.\n"
    "Exit codes: 0 revoked (or already revoked), 64 usage or unknown site id,\n"
    "65 not a hub, 74 i/o.\n";

static const char usage_renew_site[] =
    "usage: empact-hub renew-site HUBDIR SITE_ID -o FILE.join [--address HOST:PORT]\n"
    "\n"
    "Issues a new key and certificate for the enrolled, non-revoked SITE_ID and\n"
    "writes them as a new join bundle (mode 0600) for 'empact rejoin'.  The new\n"
    "certificate replaces the registered one at once: the site's old certificate\n"
    "is refused from its next connection, so hand over the bundle promptly.\n"
    "--address sets the hub address written into the bundle; it defaults to the\n"
    "address given when the site was enrolled or last renewed.\n"
    "Exit codes: 0 ok, 64 usage, FILE.join exists, unknown or revoked site,\n"
    "65 not a hub, 74 i/o.\n";

static int fail(int rc, const struct errctx *e)
{
    fprintf(stderr, "empact-hub: %s\n", e->msg[0] ? e->msg : errctx_code_name(rc));
    return cli_exit_code(rc);
}

static int usage_error(const char *usage, const char *why)
{
    return cli_usage_error("empact-hub", usage, why);
}

static int cmd_init(int argc, char **argv, const struct schema *s)
{
    struct errctx e = {0, ""};
    int rc = cli_only_help(argc, argv, "empact-hub", usage_init);

    if (rc >= 0)
        return rc;
    if (argc - optind != 1)
        return usage_error(usage_init, "init takes one argument, HUBDIR");
    if ((rc = hub_create(argv[optind], s, &e)) != SYNC_OK)
        return fail(rc, &e);
    printf("created hub in %s\n", argv[optind]);
    printf("  database  %s/%s\n  history   %s/%s (bare git repository)\n", argv[optind], HUB_DB,
           argv[optind], HUB_GIT);
    printf("  CA        %s/%s (keep %s secret)\n", argv[optind], HUB_CA_CERT, HUB_CA_KEY);
    printf("  schema    %s\n", s->fingerprint_hex);
    return EXIT_OK;
}

/* Checks a site id given on the command line. */
static int site_id_check(const char *site, struct errctx *e)
{
    if (strcmp(site, HUB_AUTHOR) == 0)
        return errctx_set(e, SYNC_EUSAGE,
                          "site id \"%s\" is reserved for the central team's own changes", site);
    if (!tls_site_id_valid(site))
        return errctx_set(e, SYNC_EUSAGE,
                          "site id \"%s\" is not valid: use 1-%d lowercase letters, digits or "
                          "'-', starting with a letter or digit",
                          site, SITE_ID_MAX);
    return SYNC_OK;
}

/* Checks the hub address for a bundle and that its output file is new. */
static int bundle_target_check(const char *addr, const char *outpath, struct errctx *e)
{
    char host[HUB_ADDRESS_MAX + 1], port[16];
    struct stat st;
    int rc;

    if ((rc = address_split(addr, host, sizeof(host), port, sizeof(port), e)) != SYNC_OK)
        return rc;
    if (strlen(addr) > HUB_ADDRESS_MAX)
        return errctx_set(e, SYNC_EUSAGE, "address is too long");
    if (stat(outpath, &st) == 0)
        return errctx_set(e, SYNC_EUSAGE, "%s exists; refusing to overwrite it", outpath);
    return SYNC_OK;
}

/* What issue_bundle() hands back about the certificate it issued. */
struct issued {
    char fingerprint[65];
    char not_after[PKI_TIME_LEN];
};

/* Issues a new key and certificate for site (CN = site id) with the hub's CA
 * and writes them, with the CA and addr, as a join bundle to outpath (0600).
 * The private key is wiped and freed here; it only ever reaches the file. */
static int issue_bundle(const char *dir, const char *site, const char *addr, const char *outpath,
                        const struct schema *s, struct issued *out, struct errctx *e)
{
    char *ca_cert = NULL, *ca_key = NULL;
    struct bundle b;
    int rc;

    memset(&b, 0, sizeof(b));
    if ((rc = hub_read_pem(&ca_cert, dir, HUB_CA_CERT, e)) != SYNC_OK ||
        (rc = hub_read_pem(&ca_key, dir, HUB_CA_KEY, e)) != SYNC_OK ||
        (rc = pki_issue(&b.site_cert, &b.site_key, ca_cert, ca_key, site, PKI_ROLE_SITE, CERT_DAYS,
                        e)) != SYNC_OK ||
        (rc = tls_cert_fingerprint(out->fingerprint, b.site_cert, e)) != SYNC_OK ||
        (rc = pki_cert_not_after(out->not_after, b.site_cert, e)) != SYNC_OK)
        goto out;
    snprintf(b.site_id, sizeof(b.site_id), "%s", site);
    snprintf(b.hub_address, sizeof(b.hub_address), "%s", addr);
    snprintf(b.schema, sizeof(b.schema), "%s", s->fingerprint_hex);
    b.ca_cert = ca_cert;
    rc = bundle_write_file(&b, outpath, e);
    b.ca_cert = NULL;
out:
    pki_pem_free(ca_cert);
    pki_pem_free(ca_key);
    pki_pem_free(b.site_cert);
    pki_pem_free(b.site_key);
    return rc;
}

static int add_site(const char *dir, const char *site, const char *addr, const char *outpath,
                    const char *name, const char *jur, const struct schema *s, struct errctx *e)
{
    struct issued is;
    struct hub_cert cert = {is.fingerprint, is.not_after, addr};
    struct hub *h = NULL;
    int rc;

    if ((rc = site_id_check(site, e)) != SYNC_OK ||
        (rc = bundle_target_check(addr, outpath, e)) != SYNC_OK ||
        (rc = hub_open(&h, dir, s, e)) != SYNC_OK)
        goto out;
    /* The bundle is written first and removed if registering fails, so a
     * site is never registered with a certificate nobody holds. */
    if ((rc = issue_bundle(dir, site, addr, outpath, s, &is, e)) != SYNC_OK)
        goto out;
    if ((rc = hub_add_site(h, site, name ? name : site, jur, &cert, e)) != SYNC_OK)
        unlink(outpath);
out:
    hub_close(h);
    return rc;
}

static int cmd_add_site(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"address", required_argument, NULL, 'a'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"jurisdiction", required_argument, NULL, 'j'},
                                         {NULL, 0, NULL, 0}};
    const char *addr = NULL, *out = NULL, *name = NULL, *jur = NULL;
    struct errctx e = {0, ""};
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "ha:o:n:j:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_add_site, stdout);
            return EXIT_OK;
        case 'a':
            addr = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'j':
            jur = optarg;
            break;
        default:
            return usage_error(usage_add_site, "unknown option");
        }
    }
    if (argc - optind != 2)
        return usage_error(usage_add_site, "add-site takes HUBDIR and SITE_ID");
    if (addr == NULL || out == NULL)
        return usage_error(usage_add_site, "add-site needs --address and -o");
    if ((rc = add_site(argv[optind], argv[optind + 1], addr, out, name, jur, s, &e)) != SYNC_OK)
        return fail(rc, &e);
    printf("registered site %s; join bundle written to %s (mode 0600)\n", argv[optind + 1], out);
    return EXIT_OK;
}

/* What renew_site() needs to know about the site before it issues. */
struct site_found {
    int revoked;
    char address[HUB_ADDRESS_MAX + 1]; /* "" when none was recorded */
};

static int site_found_copy(void *arg, const struct hub_site *hs)
{
    struct site_found *f = arg;

    f->revoked = hs->revoked;
    snprintf(f->address, sizeof(f->address), "%s", hs->address ? hs->address : "");
    return SYNC_OK;
}

static int renew_site(const char *dir, const char *site, const char *addr, const char *outpath,
                      const struct schema *s, struct errctx *e)
{
    struct site_found f = {0, ""};
    struct issued is;
    struct hub_cert cert = {is.fingerprint, is.not_after, NULL};
    struct hub *h = NULL;
    int found, rc;

    if ((rc = site_id_check(site, e)) != SYNC_OK || (rc = hub_open(&h, dir, s, e)) != SYNC_OK ||
        (rc = hub_sites(h, site, site_found_copy, &f, &found, e)) != SYNC_OK)
        goto out;
    if (!found || f.revoked) {
        rc = errctx_set(e, SYNC_EUSAGE,
                        found ? "site %s is revoked; a revoked site gets no new certificate "
                                "(enrol it again under a new site id if it should come back)"
                              : "site %s is not registered at this hub; enrol it with add-site",
                        site);
        goto out;
    }
    if (addr == NULL && f.address[0] == '\0') {
        rc = errctx_set(e, SYNC_EUSAGE,
                        "the hub has no address recorded for site %s (enrolled by an older "
                        "release); give --address HOST:PORT",
                        site);
        goto out;
    }
    cert.address = addr != NULL ? addr : f.address;
    if ((rc = bundle_target_check(cert.address, outpath, e)) != SYNC_OK ||
        (rc = issue_bundle(dir, site, cert.address, outpath, s, &is, e)) != SYNC_OK)
        goto out;
    /* As in add-site: the bundle exists before the hub trusts its certificate. */
    if ((rc = hub_site_renew(h, site, &cert, e)) != SYNC_OK)
        unlink(outpath);
out:
    hub_close(h);
    return rc;
}

static int cmd_renew_site(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"address", required_argument, NULL, 'a'},
                                         {"output", required_argument, NULL, 'o'},
                                         {NULL, 0, NULL, 0}};
    const char *addr = NULL, *out = NULL;
    struct errctx e = {0, ""};
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "ha:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_renew_site, stdout);
            return EXIT_OK;
        case 'a':
            addr = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        default:
            return usage_error(usage_renew_site, "unknown option");
        }
    }
    if (argc - optind != 2)
        return usage_error(usage_renew_site, "renew-site takes HUBDIR and SITE_ID");
    if (out == NULL)
        return usage_error(usage_renew_site, "renew-site needs -o FILE.join");
    if ((rc = renew_site(argv[optind], argv[optind + 1], addr, out, s, &e)) != SYNC_OK)
        return fail(rc, &e);
    printf("renewed the certificate of site %s; join bundle written to %s (mode 0600)\n"
           "the old certificate is refused from now on: the site installs the bundle with\n"
           "  empact rejoin SITE.db %s\n",
           argv[optind + 1], out, out);
    return EXIT_OK;
}

static int cmd_revoke_site(int argc, char **argv, const struct schema *s)
{
    struct errctx e = {0, ""};
    struct hub *h = NULL;
    int already = 0, rc = cli_only_help(argc, argv, "empact-hub", usage_revoke_site);

    if (rc >= 0)
        return rc;
    if (argc - optind != 2)
        return usage_error(usage_revoke_site, "revoke-site takes HUBDIR and SITE_ID");
    if ((rc = site_id_check(argv[optind + 1], &e)) == SYNC_OK &&
        (rc = hub_open(&h, argv[optind], s, &e)) == SYNC_OK)
        rc = hub_site_revoke(h, argv[optind + 1], &already, &e);
    hub_close(h);
    if (rc != SYNC_OK)
        return fail(rc, &e);
    if (already)
        printf("site %s was already revoked; nothing changed\n", argv[optind + 1]);
    else
        printf("revoked site %s: the hub refuses its next connection\n", argv[optind + 1]);
    return EXIT_OK;
}

/* ---- sites: one JSON array feeds both the --json output and the table ---- */

static void json_add_text(cJSON *o, const char *key, const char *v)
{
    if (v != NULL)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static int site_to_json(void *arg, const struct hub_site *hs)
{
    cJSON *o = cJSON_CreateObject();

    if (o == NULL || !cJSON_AddItemToArray(arg, o)) {
        cJSON_Delete(o);
        return SYNC_ENOMEM;
    }
    json_add_text(o, "site_id", hs->site_id);
    json_add_text(o, "name", hs->name);
    json_add_text(o, "jurisdiction", hs->jurisdiction);
    json_add_text(o, "cert_sha256", hs->fingerprint);
    json_add_text(o, "cert_not_after", hs->not_after);
    json_add_text(o, "hub_address", hs->address);
    cJSON_AddBoolToObject(o, "revoked", hs->revoked);
    json_add_text(o, "last_sync", hs->last_sync);
    cJSON_AddNumberToObject(o, "conflicts", (double)hs->conflicts);
    if (hs->synced_version < 0) {
        cJSON_AddNullToObject(o, "synced_version");
        cJSON_AddNullToObject(o, "lag");
    } else {
        cJSON_AddNumberToObject(o, "synced_version", (double)hs->synced_version);
        cJSON_AddNumberToObject(o, "lag", (double)hs->lag);
    }
    return SYNC_OK;
}

#define SITES_NCOL 8

/* The text of column col for one site object (NULL shown as dflt). */
static const char *site_cell(const cJSON *o, int col, char *num, size_t numsz)
{
    static const char *const keys[SITES_NCOL] = {"site_id",     "name",           "jurisdiction",
                                                 "cert_sha256", "cert_not_after", "revoked",
                                                 "last_sync",   "conflicts"};
    static const char *const dflt[SITES_NCOL] = {"-", "-", "-", "-", "unknown", "-", "never", "-"};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[col]);

    if (cJSON_IsString(v))
        return v->valuestring;
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v) ? "yes" : "no";
    if (cJSON_IsNumber(v)) {
        snprintf(num, numsz, "%.0f", v->valuedouble);
        return num;
    }
    return dflt[col];
}

/* Characters, not bytes, so names in UTF-8 line up. */
static int text_width(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static void sites_print_table(const cJSON *arr)
{
    static const char *const head[SITES_NCOL] = {"SITE",         "NAME",         "JURISDICTION",
                                                 "CERT SHA-256", "CERT EXPIRES", "REVOKED",
                                                 "LAST SYNC",    "CONFLICTS"};
    int width[SITES_NCOL];
    const cJSON *o;
    char num[32];

    if (cJSON_GetArraySize(arr) == 0) {
        printf("no sites enrolled; add one with 'empact-hub add-site'\n");
        return;
    }
    for (int c = 0; c < SITES_NCOL; c++)
        width[c] = text_width(head[c]);
    cJSON_ArrayForEach(o, arr)
    {
        for (int c = 0; c < SITES_NCOL; c++) {
            int w = text_width(site_cell(o, c, num, sizeof(num)));
            width[c] = w > width[c] ? w : width[c];
        }
    }
    for (int c = 0; c < SITES_NCOL; c++)
        printf("%s%-*s", c ? "  " : "", c < SITES_NCOL - 1 ? width[c] : 0, head[c]);
    printf("\n");
    cJSON_ArrayForEach(o, arr)
    {
        for (int c = 0; c < SITES_NCOL; c++) {
            const char *cell = site_cell(o, c, num, sizeof(num));
            int pad = c < SITES_NCOL - 1 ? width[c] - text_width(cell) : 0;
            printf("%s%s%*s", c ? "  " : "", cell, pad, "");
        }
        printf("\n");
    }
}

static int cmd_sites(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    struct errctx e = {0, ""};
    struct hub *h = NULL;
    cJSON *arr = NULL;
    char *text = NULL;
    int c, rc, json = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_sites, stdout);
            return EXIT_OK;
        case 'j':
            json = 1;
            break;
        default:
            return usage_error(usage_sites, "unknown option");
        }
    }
    if (argc - optind != 1)
        return usage_error(usage_sites, "sites takes one argument, HUBDIR");
    if ((arr = cJSON_CreateArray()) == NULL) {
        rc = errctx_set(&e, SYNC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = hub_open(&h, argv[optind], s, &e)) != SYNC_OK ||
        (rc = hub_sites(h, NULL, site_to_json, arr, NULL, &e)) != SYNC_OK)
        goto out;
    if (!json) {
        sites_print_table(arr);
    } else if ((text = cJSON_Print(arr)) != NULL) {
        printf("%s\n", text);
    } else {
        rc = errctx_set(&e, SYNC_ENOMEM, "out of memory");
    }
out:
    if (rc == SYNC_ENOMEM && e.msg[0] == '\0')
        errctx_set(&e, rc, "out of memory");
    cJSON_free(text);
    cJSON_Delete(arr);
    hub_close(h);
    return rc == SYNC_OK ? EXIT_OK : fail(rc, &e);
}

static int cmd_serve(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"max-per-ip", required_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    const char *listen_addr = "127.0.0.1:0";
    struct errctx e = {0, ""};
    struct sigaction sa;
    int c, rc, max_per_ip = 0;
    char *end;
    long v;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hl:m:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_serve, stdout);
            return EXIT_OK;
        case 'l':
            listen_addr = optarg;
            break;
        case 'm':
            v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || v < 1 || v > HUB_MAX_CONNS)
                return usage_error(usage_serve, "--max-per-ip takes a number from 1 to 256");
            max_per_ip = (int)v;
            break;
        default:
            return usage_error(usage_serve, "unknown option");
        }
    }
    if (argc - optind != 1)
        return usage_error(usage_serve, "serve takes one argument, HUBDIR");
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if ((rc = serve_run(argv[optind], listen_addr, s, max_per_ip, &g_stop, &e)) != SYNC_OK)
        return fail(rc, &e);
    return EXIT_OK;
}

static const char usage_report[] =
    "usage: empact-hub report HUBDIR [--from PERIOD] [--to PERIOD]\n"
    "                         [--format text|csv|json|html] [-o FILE] [--stale-days N]\n"
    "\n"
    "The cross-site impact report, from what the sites have published: each\n"
    "site's metric values per period (YYYY-Qn or YYYY, from --from to --to),\n"
    "totals across sites (a value a site published suppressed is never filled in:\n"
    "the total adds only published values and says how many were suppressed),\n"
    "each site's last successful sync (a site not synced for more than N days,\n"
    "default 7, is marked stale), and the resource library's growth by site.\n"
    "--format html writes one self-contained page with charts (no scripts, no\n"
    "network fetches).  -o writes FILE (replaced whole) instead of standard output.\n"
    "Reads hub.db only; safe while the hub serves.\n"
    "Exit codes: 0 written, 64 usage, 65 bad period, 74 i/o.\n";

static int cmd_report(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *format = "text", *out = NULL, *stale = "7";
    const struct cli_opt opts[] = {{"from", 0, 1, &from},        {"to", 0, 1, &to},
                                   {"format", 'f', 1, &format},  {"output", 'o', 1, &out},
                                   {"stale-days", 0, 1, &stale}, {NULL, 0, 0, NULL}};
    struct report_opts ro = {NULL, NULL, 7, (long long)time(NULL)};
    struct errctx e = {0, ""};
    sqlite3 *db = NULL;
    cJSON *data = NULL;
    char *text = NULL, tmp[4096], *end;
    long days;
    int rc = cli_parse(argc, argv, "empact-hub", usage_report, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (strcmp(format, "text") != 0 && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0 &&
        strcmp(format, "html") != 0)
        return usage_error(usage_report, "--format is one of text, csv, json, html");
    if ((from && !report_period_ok(from)) || (to && !report_period_ok(to))) {
        fprintf(stderr,
                "empact-hub: --%s '%s' is not a period: write a quarter as 2026-Q3 or a "
                "year as 2026\n",
                from && !report_period_ok(from) ? "from" : "to",
                from && !report_period_ok(from) ? from : to);
        return EXIT_DATA;
    }
    errno = 0;
    days = strtol(stale, &end, 10);
    if (errno || end == stale || *end || days < 0 || days > 3650)
        return usage_error(usage_report, "--stale-days is a number of days from 0 to 3650");
    ro.from = from;
    ro.to = to;
    ro.stale_days = (int)days;
    if ((rc = hub_reader_open(&db, argv[optind], &e)) != SYNC_OK ||
        (data = report_build(db, &ro, &e)) == NULL ||
        (text = report_render(data, format, &e)) == NULL) {
        rc = rc ? rc : e.code;
        goto out;
    }
    if (out == NULL) {
        fputs(text, stdout);
        rc = fflush(stdout) == 0 ? SYNC_OK
                                 : errctx_set(&e, SYNC_EIO, "cannot write: %s", strerror(errno));
    } else {
        FILE *fp;
        snprintf(tmp, sizeof(tmp), "%s.tmp", out);
        if ((fp = fopen(tmp, "w")) == NULL) {
            rc = errctx_set(&e, SYNC_EIO, "cannot create %s: %s", tmp, strerror(errno));
            goto out;
        }
        if (fputs(text, fp) == EOF || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
            rc = errctx_set(&e, SYNC_EIO, "cannot write %s: %s", tmp, strerror(errno));
            fclose(fp);
        } else if (fclose(fp) != 0 || rename(tmp, out) != 0) {
            rc = errctx_set(&e, SYNC_EIO, "cannot write %s: %s", out, strerror(errno));
        }
        if (rc != SYNC_OK)
            unlink(tmp);
        else
            fprintf(stderr, "empact-hub: report written to %s (%s)\n", out, format);
    }
out:
    sqlite3_free(text);
    cJSON_Delete(data);
    sqlite3_close(db);
    return rc == SYNC_OK ? EXIT_OK : fail(rc, &e);
}

static const char usage_verify[] =
    "usage: empact-hub verify HUBDIR [--json]\n"
    "\n"
    "Checks a hub without changing it (safe while the hub serves): hub.db's\n"
    "integrity_check and foreign_key_check; that every object in history.git reads\n"
    "back and hashes to its id and every commit, tree and blob of the branch is\n"
    "present, in one chain; that the replicated tables equal the tree of the newest\n"
    "version (differing rows are named); and that the version log _empact_version\n"
    "has one row per commit of the branch, in order, with the commit's tree.\n"
    "One line per check, 'ok' or what is wrong; --json prints one JSON object.\n"
    "Exit codes: 0 all checks pass, 64 usage, 65 a check failed, 74 hub.db or\n"
    "history.git cannot be opened.\n";

static int cmd_verify(int argc, char **argv, const struct schema *s)
{
    const char *json = NULL;
    const struct cli_opt opts[] = {{"json", 0, 0, &json}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    int failed = 0, rc = cli_parse(argc, argv, "empact-hub", usage_verify, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = hub_verify(argv[optind], s, json != NULL, stdout, &failed, &e)) != SYNC_OK)
        return fail(rc, &e);
    if (fflush(stdout) != 0)
        return EXIT_IO;
    return failed ? EXIT_DATA : EXIT_OK;
}

static const char usage_rebuild[] =
    "usage: empact-hub rebuild HUBDIR --from HUBDIR/history.git [--force]\n"
    "                          [SITE.join|CERT.pem ...]\n"
    "\n"
    "Rebuilds a lost hub.db from the git history alone; stop the hub first.  Every\n"
    "commit becomes its version again (rows, canonical changeset, commit id, tree,\n"
    "author, time), checked against the commit's tree; push ids come back from the\n"
    "commit messages, so a site re-sending a push is told it is a duplicate.  Merge\n"
    "stamps are re-derived from commit authors and times; the conflict log starts\n"
    "empty.  Site certificates are not in git: each SITE.join (or PEM certificate)\n"
    "given, issued by HUBDIR's CA to a site in the table `site`, registers that\n"
    "site again; the others are listed and must be enrolled again.  The CA files\n"
    "stay.  An existing hub.db is refused unless --force, which moves it aside to\n"
    "hub.db.before-rebuild-TIME (never deleted).  --from must name HUBDIR's own\n"
    "history.git (copy another one there first with git clone --mirror).\n"
    "A progress line goes to stderr every 100 commits.\n"
    "Exit codes: 0 rebuilt, 64 usage or hub.db exists, 65 history damaged or a\n"
    "certificate refused, 74 i/o.\n";

static int cmd_rebuild(int argc, char **argv, const struct schema *s)
{
    const char *from = NULL, *force = NULL;
    const struct cli_opt opts[] = {
        {"from", 0, 1, &from}, {"force", 0, 0, &force}, {NULL, 0, 0, NULL}};
    struct rebuild_opts ro = {NULL, NULL, 0, NULL, 0, 100};
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact-hub", usage_rebuild, opts, 1, 1000);

    if (rc >= 0)
        return rc;
    if (from == NULL)
        return usage_error(usage_rebuild, "rebuild needs --from HUBDIR/history.git");
    ro.dir = argv[optind];
    ro.from = from;
    ro.force = force != NULL;
    ro.certs = argv + optind + 1;
    ro.ncerts = argc - optind - 1;
    if ((rc = hub_rebuild(&ro, s, &e)) != SYNC_OK)
        return fail(rc, &e);
    return EXIT_OK;
}

/* ---- operating the hub: backup, gc, status ---------------------------------- */

static const char usage_backup[] =
    "usage: empact-hub backup HUBDIR DEST\n"
    "\n"
    "Makes a consistent copy of the hub in DEST while it serves: hub.db through\n"
    "SQLite's online backup, history.git up to the commit of the copied hub.db's\n"
    "newest version (its branch points there, so database and history agree),\n"
    "and ca.pem, ca.key, hub.pem, hub.key (keys mode 0600).  DEST must not exist\n"
    "or be empty; the copy is built in DEST.tmp and renamed at the end, so a\n"
    "failed backup leaves nothing.  Restore: cp -a DEST NEWHUBDIR, then\n"
    "empact-hub serve NEWHUBDIR.  DEST holds the CA key: keep it as safe.\n"
    "Exit codes: 0 ok, 64 usage or DEST not empty, 65 bad hub.db, 74 i/o.\n";

static int cmd_backup(int argc, char **argv)
{
    const struct cli_opt opts[] = {{NULL, 0, 0, NULL}};
    struct backup_result r;
    struct errctx e = {0, ""};
    int rc = cli_parse(argc, argv, "empact-hub", usage_backup, opts, 2, 2);

    if (rc >= 0)
        return rc;
    if ((rc = backup_run(argv[optind], argv[optind + 1], &r, &e)) != SYNC_OK)
        return fail(rc, &e);
    printf("backed up %s to %s at version %llu (commit %.12s)\n", argv[optind], argv[optind + 1],
           (unsigned long long)r.version, r.commit);
    printf("  hub.db       %lld bytes\n  history.git  %lld bytes (%zu loose objects, %zu "
           "packs)\n  keys         %d files (CA and hub certificate)\n",
           r.db_bytes, r.git_bytes, r.loose, r.packs, r.key_files);
    return EXIT_OK;
}

static const char usage_gc[] =
    "usage: empact-hub gc HUBDIR [--all]\n"
    "\n"
    "Folds the small packs of history.git (each version adds one) and any loose\n"
    "objects into one pack, then removes what it folded; packs at least twice\n"
    "as many objects as all smaller ones together stay, so the work follows the\n"
    "recent versions, not the whole history.  Objects of older folds are copied\n"
    "as they are; a version's objects are compressed, each tree and row against\n"
    "the next newer one at the same path.  Safe while the hub serves (one fold\n"
    "at a time: a lock file in history.git); the hub also does it by itself\n"
    "after every 100th version.\n"
    "  --all   fold every pack into one\n"
    "Exit codes: 0 ok, 64 usage, 65 not a hub or a damaged pack, 74 i/o.\n";

static int cmd_gc(int argc, char **argv, const struct schema *s)
{
    const char *all = NULL;
    const struct cli_opt opts[] = {{"all", 0, 0, &all}, {NULL, 0, 0, NULL}};
    struct gitpack_stats st;
    struct errctx e = {0, ""};
    struct hub *h = NULL;
    int rc = cli_parse(argc, argv, "empact-hub", usage_gc, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if ((rc = hub_open(&h, argv[optind], s, &e)) == SYNC_OK)
        rc = hub_gc(h, all != NULL, &st, &e);
    hub_close(h);
    if (rc != SYNC_OK)
        return fail(rc, &e);
    if (st.packed == 0)
        printf("history.git has no loose objects and no packs to fold; nothing to pack\n");
    else
        printf("packed %zu objects (%zu loose, %zu packs) into %s (%lld bytes, %zu as "
               "deltas); removed %zu loose files and %zu packs\n",
               st.packed, st.loose, st.packs_folded, st.pack, st.bytes, st.deltas, st.removed,
               st.packs_removed);
    return EXIT_OK;
}

static const char usage_train_dict[] =
    "usage: empact-hub train-dict HUBDIR [--size BYTES]\n"
    "\n"
    "Trains a zstd compression dictionary from the hub's rows of the replicated\n"
    "tables (up to 4000 random rows of each, written as the one-row changesets a\n"
    "small sync carries) and makes it the hub's newest.  Each site fetches it at\n"
    "its next sync (once, about the dictionary's size) and from then on its pushes\n"
    "and the versions it pulls are compressed with it: a sync of a few rows\n"
    "carries fewer bytes.  Train again when the data has changed in kind (new\n"
    "tables, other languages); each site moves to the newest at its next sync.\n"
    "Needs at least 100 rows.\n"
    "Safe while the hub serves.\n"
    "  --size BYTES   the dictionary's largest size (256 to 114688; default 16384)\n"
    "Exit codes: 0 trained, 64 usage, 65 too few rows or not a hub, 74 i/o.\n";

static int cmd_train_dict(int argc, char **argv, const struct schema *s)
{
    const char *size = NULL;
    const struct cli_opt opts[] = {{"size", 0, 1, &size}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    struct dict_stats st;
    struct hub *h = NULL;
    sqlite3 *db = NULL;
    char *end = NULL;
    long cap = ZDICT_SIZE_DEFAULT;
    int rc = cli_parse(argc, argv, "empact-hub", usage_train_dict, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (size != NULL) {
        errno = 0;
        cap = strtol(size, &end, 10);
        if (errno || end == size || *end || cap < (long)ZDICT_SIZE_MIN ||
            cap > (long)ZDICT_SIZE_MAX)
            return usage_error(usage_train_dict, "--size is a byte count from 256 to 114688");
    }
    /* hub_open brings an older hub.db's tables up to date */
    if ((rc = hub_open(&h, argv[optind], s, &e)) == SYNC_OK &&
        (rc = hub_reader_open(&db, argv[optind], &e)) == SYNC_OK)
        rc = dict_train(db, s, (size_t)cap, &st, &e);
    sqlite3_close(db);
    hub_close(h);
    if (rc != SYNC_OK)
        return fail(rc, &e);
    printf("trained dictionary %u: %zu bytes from %u rows of %u tables; sites fetch it at their "
           "next sync\n",
           st.id, st.size, st.rows, st.tables);
    return EXIT_OK;
}

static const char usage_status[] =
    "usage: empact-hub status HUBDIR [--json] [--stale-hours H]\n"
    "\n"
    "Per enrolled site: when its last sync ended successfully, the version it\n"
    "pulled to then and its lag behind the hub's head, and its pushes, conflicts\n"
    "(entries where its input lost) and refusals in the last 24 hours.  A site\n"
    "that is not revoked and has not synced for more than H hours (default 24),\n"
    "or never, is stale.  --json prints one JSON object.  Safe while the hub serves.\n"
    "Exit codes: 0 all sites fresh, 1 a site is stale (for monitoring checks),\n"
    "64 usage, 65 not a hub, 74 i/o.\n";

static int cmd_status(int argc, char **argv, const struct schema *s)
{
    const char *json = NULL, *hours = NULL;
    const struct cli_opt opts[] = {
        {"json", 0, 0, &json}, {"stale-hours", 0, 1, &hours}, {NULL, 0, 0, NULL}};
    struct errctx e = {0, ""};
    struct hub *h = NULL;
    sqlite3 *db = NULL;
    cJSON *st = NULL;
    char *text = NULL, *end = NULL;
    long stale = STALE_HOURS_DEFAULT;
    int nstale = 0, rc = cli_parse(argc, argv, "empact-hub", usage_status, opts, 1, 1);

    if (rc >= 0)
        return rc;
    if (hours != NULL) {
        errno = 0;
        stale = strtol(hours, &end, 10);
        if (errno || end == hours || *end || stale < 1 || stale > STALE_HOURS_MAX)
            return usage_error(usage_status, "--stale-hours is a whole number of hours >= 1");
    }
    /* hub_open brings an older hub.db's tables up to date; then read a snapshot */
    if ((rc = hub_open(&h, argv[optind], s, &e)) != SYNC_OK ||
        (rc = hub_reader_open(&db, argv[optind], &e)) != SYNC_OK)
        goto out;
    hub_close(h);
    h = NULL;
    if ((st = status_build(db, (long long)time(NULL), (int)stale, &nstale, &e)) == NULL) {
        rc = e.code;
        goto out;
    }
    if (json == NULL)
        status_print(st);
    else if ((text = cJSON_Print(st)) != NULL)
        printf("%s\n", text);
    else
        rc = errctx_set(&e, SYNC_ENOMEM, "out of memory");
out:
    cJSON_free(text);
    cJSON_Delete(st);
    sqlite3_close(db);
    hub_close(h);
    if (rc != SYNC_OK)
        return fail(rc, &e);
    return nstale > 0 ? EXIT_STALE : EXIT_OK;
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
    if (strcmp(cmd, "init") == 0)
        rc = cmd_init(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "add-site") == 0)
        rc = cmd_add_site(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "serve") == 0)
        rc = cmd_serve(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "report") == 0)
        rc = cmd_report(argc - 1, argv + 1);
    else if (strcmp(cmd, "sites") == 0)
        rc = cmd_sites(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "revoke-site") == 0)
        rc = cmd_revoke_site(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "renew-site") == 0)
        rc = cmd_renew_site(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "verify") == 0)
        rc = cmd_verify(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "rebuild") == 0)
        rc = cmd_rebuild(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "backup") == 0)
        rc = cmd_backup(argc - 1, argv + 1);
    else if (strcmp(cmd, "gc") == 0)
        rc = cmd_gc(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(argc - 1, argv + 1, s);
    else if (strcmp(cmd, "train-dict") == 0)
        rc = cmd_train_dict(argc - 1, argv + 1, s);
    else
        rc = usage_error(usage_main, "unknown command");
    schema_free(s);
    return rc;
}
