/*
 * cli.c - exit codes shared by empact and empact-hub.
 */
#include "cli.h"

#include "errctx.h"

#include <getopt.h>
#include <stdio.h>

int cli_exit_code(int rc)
{
    switch (rc) {
    case SYNC_OK:
        return EXIT_OK;
    case SYNC_EUSAGE:
        return EXIT_USAGE;
    case SYNC_EDATA:
        return EXIT_DATA;
    case SYNC_EIO:
        return EXIT_IO;
    case SYNC_ENET:
        return EXIT_TEMPFAIL;
    case SYNC_EREFUSED:
    case SYNC_ESCHEMA:
    case SYNC_ETLS:
        return EXIT_REFUSED;
    case SYNC_ELIMIT:
        return EXIT_DATA; /* retrying the same data will not fit either */
    case SYNC_EPROTO:
        return EXIT_TEMPFAIL;
    default:
        return EXIT_SOFTWARE;
    }
}

int cli_usage_error(const char *prog, const char *usage, const char *why)
{
    fprintf(stderr, "%s: %s\n%s", prog, why, usage);
    return EXIT_USAGE;
}

int cli_only_help(int argc, char **argv, const char *prog, const char *usage)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        return cli_usage_error(prog, usage, "unknown option");
    }
    return -1;
}
