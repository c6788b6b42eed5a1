/*
 * hea.h - the site coordinator's confidential work, offline in the replica:
 * impact partners, members, and Health Equity Analyses through the five steps
 * of the EMPaCT model (`empact partner|member|hea ...`).  Everything here is
 * in local tables, which never leave the site.
 */
#ifndef EMPACT_HEA_H
#define EMPACT_HEA_H

#include "schema.h"

/* Runs `empact GROUP ...` for GROUP "hea", "partner" or "member"; argv[0] is
 * GROUP.  Returns the exit status (cli.h). */
int hea_main(int argc, char **argv, const struct schema *s);

/* The steps of an HEA in order, NULL-terminated. */
extern const char *const hea_steps[];

#endif
