/*
 * errctx.h - one error convention for every module.
 *
 * A function that can fail returns 0 (SYNC_OK) or a negative enum sync_rc and,
 * when it is the first to see the failure, writes a sentence a coordinator can
 * act on into the caller's struct errctx.  Callers pass the code up unchanged.
 */
#ifndef EMPACT_ERRCTX_H
#define EMPACT_ERRCTX_H

#include "limits.h"

#define SYNC_WUR __attribute__((warn_unused_result))

enum sync_rc {
    SYNC_OK = 0,
    SYNC_EIO = -1,      /* a local file or database could not be read or written */
    SYNC_EPROTO = -2,   /* the peer broke the protocol (bad frame, bad message) */
    SYNC_ELIMIT = -3,   /* outside bytes exceeded a named limit */
    SYNC_ENOMEM = -4,   /* allocation failed */
    SYNC_ETLS = -5,     /* TLS set-up or certificate problem */
    SYNC_ESCHEMA = -6,  /* schema fingerprint or table shape mismatch */
    SYNC_ENET = -7,     /* network unreachable or connection lost: retry later */
    SYNC_EREFUSED = -8, /* the hub refused the request: retrying will not help */
    SYNC_EDATA = -9,    /* local data problem: bad input file, diverged replica */
    SYNC_EUSAGE = -10,  /* the caller asked for something impossible */
    SYNC_ELOCKED = -11, /* another sync or join of the same replica is running */
};

struct errctx {
    int code;
    char msg[ERRCTX_MSG_MAX];
};

/* Records code and a printf-style sentence in e (e may be NULL); returns code. */
int errctx_set(struct errctx *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with a printf-style context; returns e->code. */
int errctx_wrap(struct errctx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resets e to "no error". */
void errctx_clear(struct errctx *e);

/* A short name for a code ("network", "refused", ...), never NULL. */
const char *errctx_code_name(int code);

#endif
