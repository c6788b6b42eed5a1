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
    case SYNC_ELOCKED:
        return EXIT_LOCKED;
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

int cli_parse(int argc, char **argv, const char *prog, const char *usage,
              const struct cli_opt *opts, int min, int max)
{
    struct option lo[CLI_OPTS_MAX + 2];
    char shorts[2 * CLI_OPTS_MAX + 4] = ":h"; /* ':': a missing value returns ':' */
    char why[160];
    size_t ns = 2;
    int n = 0, c, idx;

    for (; n < CLI_OPTS_MAX && opts[n].name != NULL; n++) {
        lo[n] = (struct option){opts[n].name, opts[n].has_arg ? required_argument : no_argument,
                                NULL, 0x100 + n};
        if (opts[n].c) {
            shorts[ns++] = opts[n].c;
            if (opts[n].has_arg)
                shorts[ns++] = ':';
        }
    }
    shorts[ns] = '\0';
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shorts, lo, &idx)) != -1) {
        int k = -1;
        if (c == 'h') {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (c >= 0x100 && c < 0x100 + n)
            k = c - 0x100;
        for (int i = 0; k < 0 && i < n; i++)
            if (opts[i].c && opts[i].c == c)
                k = i;
        if (k < 0) {
            if (c == ':')
                snprintf(why, sizeof(why), "option %s needs a value", argv[optind - 1]);
            else
                snprintf(why, sizeof(why), "unknown option %s", argv[optind - 1]);
            return cli_usage_error(prog, usage, why);
        }
        *opts[k].value = opts[k].has_arg ? optarg : "1";
    }
    if (argc - optind < min || argc - optind > max) {
        snprintf(why, sizeof(why), "%s takes %s%d argument%s", argv[0],
                 min == max ? "" : (argc - optind < min ? "at least " : "at most "),
                 argc - optind < min ? min : max,
                 (argc - optind < min ? min : max) == 1 ? "" : "s");
        return cli_usage_error(prog, usage, why);
    }
    return -1;
}
