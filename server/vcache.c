/*
 * vcache.c - the versions a hub sends, compressed once (see vcache.h).
 */
#include "vcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    uint64_t seq;
    uint8_t commit[20];
    uint32_t dict;
    uint8_t *z; /* NULL: empty */
    size_t n;
};

struct vcache {
    pthread_mutex_t lock;
    struct slot s[VCACHE_SLOTS];
    size_t bytes; /* held in all slots */
};

int vcache_new(struct vcache **out, struct errctx *e)
{
    struct vcache *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return errctx_set(e, SYNC_ENOMEM, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return SYNC_OK;
}

void vcache_free(struct vcache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < VCACHE_SLOTS; i++)
        free(c->s[i].z);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int vcache_get(struct vcache *c, uint64_t seq, const uint8_t commit[20], uint32_t dict,
               struct buf *out, struct errctx *e)
{
    struct slot *s = &c->s[seq % VCACHE_SLOTS];
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    if (s->z != NULL && s->seq == seq && s->dict == dict && memcmp(s->commit, commit, 20) == 0)
        rc = buf_put(out, s->z, s->n, e) == SYNC_OK ? 1 : e->code;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

void vcache_put(struct vcache *c, uint64_t seq, const uint8_t commit[20], uint32_t dict,
                const void *z, size_t n)
{
    struct slot *s = &c->s[seq % VCACHE_SLOTS];
    uint8_t *copy;

    if (n == 0 || n > VCACHE_BYTES / 64 || (copy = malloc(n)) == NULL)
        return;
    memcpy(copy, z, n);
    pthread_mutex_lock(&c->lock);
    if (s->z != NULL) {
        c->bytes -= s->n;
        free(s->z);
        s->z = NULL;
    }
    if (c->bytes + n <= VCACHE_BYTES) {
        s->seq = seq;
        memcpy(s->commit, commit, 20);
        s->dict = dict;
        s->z = copy;
        s->n = n;
        c->bytes += n;
        copy = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    free(copy);
}
