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
#include <unistd.h>

#include "bundle.h"
#include "cli.h"
#include "hub.h"
#include "pki.h"
#include "schema.h"
#include "serve.h"
#include "tls.h"

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
    "usage: empact-hub serve HUBDIR [--listen HOST:PORT]\n"
    "\n"
    "Serves sites.  --listen defaults to 127.0.0.1:0 (port 0 picks a free port).\n"
    "The first line on stdout is 'listening on HOST:PORT'; the log goes to stderr.\n"
    "SIGTERM or SIGINT stops the hub after open connections finish.\n";

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

static int add_site(const char *dir, const char *site, const char *addr, const char *outpath,
                    const char *name, const char *jur, const struct schema *s, struct errctx *e)
{
    char *ca_cert = NULL, *ca_key = NULL;
    struct bundle b;
    char fp[65], host[HUB_ADDRESS_MAX + 1], port[16];
    struct hub *h = NULL;
    struct stat st;
    int rc;

    memset(&b, 0, sizeof(b));
    if (strcmp(site, HUB_AUTHOR) == 0)
        return errctx_set(e, SYNC_EUSAGE,
                          "site id \"%s\" is reserved for the central team's own changes", site);
    if (!tls_site_id_valid(site))
        return errctx_set(e, SYNC_EUSAGE,
                          "site id \"%s\" is not valid: use 1-%d lowercase letters, digits or "
                          "'-', starting with a letter or digit",
                          site, SITE_ID_MAX);
    if ((rc = address_split(addr, host, sizeof(host), port, sizeof(port), e)) != SYNC_OK)
        return rc;
    if (strlen(addr) > HUB_ADDRESS_MAX)
        return errctx_set(e, SYNC_EUSAGE, "address is too long");
    if (stat(outpath, &st) == 0)
        return errctx_set(e, SYNC_EUSAGE, "%s exists; refusing to overwrite it", outpath);
    if ((rc = hub_read_pem(&ca_cert, dir, HUB_CA_CERT, e)) != SYNC_OK ||
        (rc = hub_read_pem(&ca_key, dir, HUB_CA_KEY, e)) != SYNC_OK ||
        (rc = pki_issue(&b.site_cert, &b.site_key, ca_cert, ca_key, site, PKI_ROLE_SITE, CERT_DAYS,
                        e)) != SYNC_OK ||
        (rc = tls_cert_fingerprint(fp, b.site_cert, e)) != SYNC_OK ||
        (rc = hub_open(&h, dir, s, e)) != SYNC_OK)
        goto out;
    /* The bundle is written first and removed if registering fails, so a
     * site is never registered with a certificate nobody holds. */
    snprintf(b.site_id, sizeof(b.site_id), "%s", site);
    snprintf(b.hub_address, sizeof(b.hub_address), "%s", addr);
    snprintf(b.schema, sizeof(b.schema), "%s", s->fingerprint_hex);
    b.ca_cert = ca_cert;
    rc = bundle_write_file(&b, outpath, e);
    b.ca_cert = NULL;
    if (rc != SYNC_OK)
        goto out;
    if ((rc = hub_add_site(h, site, name ? name : site, jur, fp, e)) != SYNC_OK)
        unlink(outpath);
out:
    hub_close(h);
    pki_pem_free(ca_cert);
    pki_pem_free(ca_key);
    pki_pem_free(b.site_cert);
    pki_pem_free(b.site_key);
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

static int cmd_serve(int argc, char **argv, const struct schema *s)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {NULL, 0, NULL, 0}};
    const char *listen_addr = "127.0.0.1:0";
    struct errctx e = {0, ""};
    struct sigaction sa;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hl:", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage_serve, stdout);
            return EXIT_OK;
        case 'l':
            listen_addr = optarg;
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
    if ((rc = serve_run(argv[optind], listen_addr, s, &g_stop, &e)) != SYNC_OK)
        return fail(rc, &e);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct errctx e = {0, ""};
    struct schema *s = NULL;
    const char *cmd;
    int rc;

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
    else
        rc = usage_error(usage_main, "unknown command");
    schema_free(s);
    return rc;
}
