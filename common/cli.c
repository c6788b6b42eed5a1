/*
 * cli.c - exit codes shared by empact and empact-hub.
 */
#include "cli.h"

#include "errctx.h"

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
    case SYNC_EPROTO:
    case SYNC_ELIMIT:
        return EXIT_TEMPFAIL;
    default:
        return EXIT_SOFTWARE;
    }
}
