/*
 * cli.h - what both command-line programs share: exit codes (sysexits
 * meanings, documented in README.md) and the mapping from error codes.
 */
#ifndef EMPACT_CLI_H
#define EMPACT_CLI_H

#define EXIT_OK 0
#define EXIT_USAGE 64    /* EX_USAGE: bad command line */
#define EXIT_DATA 65     /* EX_DATAERR: bad input file, replica diverged or damaged */
#define EXIT_SOFTWARE 70 /* EX_SOFTWARE: internal error */
#define EXIT_LOCKED 73   /* EX_CANTCREAT: the replica's lock is held by another sync or join */
#define EXIT_IO 74       /* EX_IOERR: a local file could not be created, read or written */
#define EXIT_TEMPFAIL 75 /* EX_TEMPFAIL: hub unreachable or connection lost; retry later */
#define EXIT_REFUSED 77  /* EX_NOPERM: the hub refused (certificate, schema, push) */

/* The exit status for a negative enum sync_rc. */
int cli_exit_code(int rc);

/* Prints "PROG: WHY" and the usage text to stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *prog, const char *usage, const char *why);

/* For a command whose only option is --help: returns EXIT_OK after printing
 * usage for --help, EXIT_USAGE for any other option, or -1 to go on with
 * optind at the first operand. */
int cli_only_help(int argc, char **argv, const char *prog, const char *usage);

/* One option of a subcommand: --name (and -c when c is not 0).  A flag
 * (has_arg 0) sets *value to "1"; an option with an argument sets it to the
 * argument (given twice, the last wins). */
struct cli_opt {
    const char *name;
    char c;
    int has_arg;
    const char **value;
};

#define CLI_OPTS_MAX 16

/* Parses argv (argv[0] is the subcommand) with opts (terminated by a NULL
 * name; --help is always known and prints usage).  Returns EXIT_OK after
 * --help, EXIT_USAGE (with the reason on stderr) for an unknown option or an
 * operand count outside [min, max], or -1 to go on with optind at the first
 * operand. */
int cli_parse(int argc, char **argv, const char *prog, const char *usage,
              const struct cli_opt *opts, int min, int max);

#endif
