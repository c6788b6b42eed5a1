/*
 * errctx.c - the error context: a code plus one sentence, written by whoever
 * sees the failure first.  Messages are truncated, never overflowed.
 */
#include "errctx.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int errctx_set(struct errctx *e, int code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return code;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return code;
}

int errctx_wrap(struct errctx *e, const char *fmt, ...)
{
    char old[ERRCTX_MSG_MAX];
    va_list ap;
    int n;

    if (e == NULL)
        return SYNC_EIO;
    memcpy(old, e->msg, sizeof(old));
    va_start(ap, fmt);
    n = vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 2 < sizeof(e->msg)) {
        size_t used = (size_t)n;
        e->msg[used++] = ':';
        e->msg[used++] = ' ';
        size_t room = sizeof(e->msg) - used - 1;
        size_t len = strnlen(old, room);
        memcpy(e->msg + used, old, len);
        e->msg[used + len] = '\0';
    }
    return e->code;
}

void errctx_clear(struct errctx *e)
{
    if (e == NULL)
        return;
    e->code = SYNC_OK;
    e->msg[0] = '\0';
}

const char *errctx_code_name(int code)
{
    switch (code) {
    case SYNC_OK:
        return "ok";
    case SYNC_EIO:
        return "io";
    case SYNC_EPROTO:
        return "protocol";
    case SYNC_ELIMIT:
        return "limit";
    case SYNC_ENOMEM:
        return "memory";
    case SYNC_ETLS:
        return "tls";
    case SYNC_ESCHEMA:
        return "schema";
    case SYNC_ENET:
        return "network";
    case SYNC_EREFUSED:
        return "refused";
    case SYNC_EDATA:
        return "data";
    case SYNC_EUSAGE:
        return "usage";
    case SYNC_ELOCKED:
        return "locked";
    default:
        return "unknown";
    }
}
