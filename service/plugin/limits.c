/*
 * limits.c — per-device limits that outlive a connection (docs/plugin.md,
 * "Limits"): the message rate, the state rate and the connect rate.
 *
 * Counting per connection let a device reset every limit by reconnecting
 * (one token-cache hit), so the counters live here, keyed by the device's
 * num_id, in bounded memory: an entry is pinned while the device has a
 * connection; unpinned entries wait in least-recently-used order and the
 * oldest is reused when the table is full. An unpinned entry matters for at
 * most the connect bucket's refill time (a minute by default), so eviction
 * loses nothing unless more devices than the table holds reconnect within
 * that time.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define NONE UINT32_MAX

struct plg_limit {
    uint64_t num_id;
    int64_t msg_window;          /* the second being counted */
    uint32_t msg_count;
    uint32_t strikes;            /* consecutive seconds over twice the limit */
    int64_t last_state_ms;
    int64_t connect_tat_ms;      /* GCRA: theoretical arrival time of the next connect */
    uint32_t pins;               /* connections holding the entry */
    uint32_t hnext;              /* hash chain */
    uint32_t lru_prev, lru_next; /* unpinned entries only, oldest at the head */
};

static struct plg_limit *lim;
static size_t lim_n, lim_cap, lim_max;
static uint32_t *buckets;
static size_t nbuckets;
static uint32_t lru_head = NONE, lru_tail = NONE;

static size_t limits__hash(uint64_t num_id)
{
    return hash__num(num_id, nbuckets - 1);
}

int limits__init(size_t max_entries)
{
    nbuckets = pow2__at_least(1024, max_entries);
    buckets = malloc(nbuckets * sizeof *buckets);
    if (!buckets)
        return -1;
    memset(buckets, 0xff, nbuckets * sizeof *buckets); /* NONE */
    lim_max = max_entries;
    lim = NULL;
    lim_n = lim_cap = 0;
    lru_head = lru_tail = NONE;
    return 0;
}

void limits__cleanup(void)
{
    free(lim);
    free(buckets);
    lim = NULL;
    buckets = NULL;
    lim_n = lim_cap = lim_max = nbuckets = 0;
    lru_head = lru_tail = NONE;
}

static void lru__unlink(uint32_t i)
{
    struct plg_limit *e = &lim[i];
    if (e->lru_prev != NONE)
        lim[e->lru_prev].lru_next = e->lru_next;
    else
        lru_head = e->lru_next;
    if (e->lru_next != NONE)
        lim[e->lru_next].lru_prev = e->lru_prev;
    else
        lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NONE;
}

static void lru__append(uint32_t i)
{
    struct plg_limit *e = &lim[i];
    e->lru_prev = lru_tail;
    e->lru_next = NONE;
    if (lru_tail != NONE)
        lim[lru_tail].lru_next = i;
    else
        lru_head = i;
    lru_tail = i;
}

static void hash__remove(uint32_t i)
{
    uint32_t *p = &buckets[limits__hash(lim[i].num_id)];
    while (*p != NONE && *p != i)
        p = &lim[*p].hnext;
    if (*p == i)
        *p = lim[i].hnext;
}

static uint32_t limits__find(uint64_t num_id)
{
    uint32_t i;
    for (i = buckets[limits__hash(num_id)]; i != NONE; i = lim[i].hnext)
        if (lim[i].num_id == num_id)
            return i;
    return NONE;
}

/* A slot for a new entry: a fresh one while the table may grow, else the
 * least recently used unpinned one. NONE when every entry is pinned. */
static uint32_t limits__slot(void)
{
    uint32_t i;

    if (lim_n < lim_max) {
        if (lim_n == lim_cap) {
            size_t ncap = lim_cap ? lim_cap * 2 : 1024;
            struct plg_limit *nv;
            if (ncap > lim_max)
                ncap = lim_max;
            nv = realloc(lim, ncap * sizeof *nv);
            if (nv) {
                lim = nv;
                lim_cap = ncap;
            }
        }
        if (lim_n < lim_cap)
            return (uint32_t)lim_n++;
    }
    if (lru_head == NONE)
        return NONE;
    i = lru_head;
    lru__unlink(i);
    hash__remove(i);
    return i;
}

/* The entry of num_id, made if needed, pinned by one more connection. */
uint32_t limits__pin(uint64_t num_id)
{
    uint32_t i = limits__find(num_id);
    size_t h;

    if (i != NONE) {
        if (lim[i].pins++ == 0)
            lru__unlink(i);
        return i;
    }
    i = limits__slot();
    if (i == NONE)
        return NONE;
    memset(&lim[i], 0, sizeof lim[i]);
    lim[i].num_id = num_id;
    lim[i].pins = 1;
    lim[i].lru_prev = lim[i].lru_next = NONE;
    h = limits__hash(num_id);
    lim[i].hnext = buckets[h];
    buckets[h] = i;
    return i;
}

void limits__unpin(uint32_t i)
{
    if (i == NONE || i >= lim_n || lim[i].pins == 0)
        return;
    if (--lim[i].pins == 0)
        lru__append(i);
}

/* GCRA: a burst of `burst` connects, then one per 60000/per_minute ms. */
int limits__connect(uint32_t i, int64_t now_ms)
{
    struct plg_limit *e = &lim[i];
    int64_t t = 60000 / (int64_t)plg.opt.connects_per_minute;
    int64_t tat = e->connect_tat_ms > now_ms ? e->connect_tat_ms : now_ms;

    if (tat - now_ms > (int64_t)(plg.opt.connect_burst - 1) * t)
        return 0;
    e->connect_tat_ms = tat + t;
    return 1;
}

enum plg_rate limits__message(uint32_t i, int64_t now)
{
    struct plg_limit *e = &lim[i];
    uint32_t limit = plg.opt.messages_per_second;

    if (now != e->msg_window) {
        if (e->msg_window && now == e->msg_window + 1 && e->msg_count > 2 * limit)
            e->strikes++;
        else
            e->strikes = 0;
        e->msg_window = now;
        e->msg_count = 0;
    }
    e->msg_count++;
    if (e->msg_count == 2 * limit + 1 && e->strikes >= 2)
        return RATE_CLOSE;
    return e->msg_count <= limit ? RATE_OK : RATE_DROP;
}

int limits__state(uint32_t i, int64_t now_ms)
{
    struct plg_limit *e = &lim[i];
    if (e->last_state_ms && now_ms - e->last_state_ms < 1000 / (int64_t)plg.opt.state_per_second)
        return 0;
    e->last_state_ms = now_ms;
    return 1;
}
