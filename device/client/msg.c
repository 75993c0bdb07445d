/*
 * msg.c — the floor of the device client's queue: making, appending,
 * unlinking and freeing an entry, and the pacing ring (at most N messages
 * in any 1000 ms). Used by the queue (queue.c) and by a gateway's devices
 * (gateway.c, gateway_api.c); calls nothing above it.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

void lk_dev__msg_free(struct msg *m)
{
    if (m == NULL)
        return;
    lk_wipe(m->data, m->len);
    free(m);
}

lk_err lk_dev__rate_init(struct lk_rate *r, unsigned max)
{
    r->ms = calloc(max, sizeof *r->ms);
    r->max = max;
    r->i = r->n = 0;
    return r->ms != NULL ? LK_OK : LK_ERR_NOMEM;
}

void lk_dev__rate_free(struct lk_rate *r)
{
    free(r->ms);
    r->ms = NULL;
}

int64_t lk_dev__rate_wait(const struct lk_rate *r, int64_t now)
{
    int64_t oldest;
    if (r->n < r->max)
        return 0;
    oldest = r->ms[r->i]; /* the ring is full: i is the oldest */
    return now - oldest >= 1000 ? 0 : oldest + 1000;
}

void lk_dev__rate_record(struct lk_rate *r, int64_t now)
{
    r->ms[r->i] = now;
    r->i = (r->i + 1) % r->max;
    if (r->n < r->max)
        r->n++;
}

struct msg *lk_dev__msg_new(struct gw_dev *owner, int kind, const char *topic, const void *data,
                            size_t len)
{
    size_t tlen = strlen(topic);
    struct msg *m = malloc(sizeof *m + tlen + 1 + len);

    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    m->owner = owner;
    m->kind = kind;
    m->len = len;
    memcpy(m->topic, topic, tlen + 1);
    m->data = (uint8_t *)m->topic + tlen + 1;
    if (len > 0)
        memcpy(m->data, data, len);
    return m;
}

void lk_dev__append(lk_dev *d, struct msg *m)
{
    if (d->tail != NULL)
        d->tail->next = m;
    else
        d->head = m;
    d->tail = m;
    d->queued++;
    d->queued_bytes += m->len;
}

void lk_dev__unlink(lk_dev *d, struct msg *m, struct msg *prev)
{
    if (prev != NULL)
        prev->next = m->next;
    else
        d->head = m->next;
    if (d->tail == m)
        d->tail = prev;
    d->queued--;
    d->queued_bytes -= m->len;
    if (m->mid != 0 && d->inflight > 0)
        d->inflight--;
}

