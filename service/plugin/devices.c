/*
 * devices.c — what authentication needs about a device, kept in memory:
 * its num_id, blocked flag, registry MQTT state and parsed credentials, so
 * that a reconnect costs no database read and no PEM parsing. Bounded (least
 * recently used entries go first), and dropped by the change feed
 * (plugin.c) when the registry changes the device.
 */
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* The tables grow with the cache (a bucket an entry, from MIN_BUCKETS to
 * the capacity's power of two): allocated whole for 65,536 devices they
 * would hold 1 MB resident once a fleet has touched them. Small, so that the
 * tests' fleets of a few hundred make them grow. */
#define MIN_BUCKETS 64u

/* One allocation of 2 * nbuckets: by_path, then by_num. */
static struct plg_device **by_path, **by_num;
static size_t nbuckets, max_buckets, count, capacity;
static struct plg_device *lru_head, *lru_tail;

/* # Table */

static size_t devices__hash_str(const char *s)
{
    uint64_t h = hash__str(HASH_STR_SEED, s);

    return (size_t)(h ^ (h >> 29)) & (nbuckets - 1);
}

static size_t devices__hash_num(uint64_t n)
{
    return hash__num(n, nbuckets - 1);
}

int devices__init(size_t cap)
{
    max_buckets = pow2__at_least(16, cap);
    nbuckets = max_buckets < MIN_BUCKETS ? max_buckets : MIN_BUCKETS;
    capacity = cap;
    count = 0;
    lru_head = lru_tail = NULL;
    if (!(by_path = calloc(2 * nbuckets, sizeof *by_path)))
        return -1;
    by_num = by_path + nbuckets;
    return 0;
}

static void devices__free_one(struct plg_device *d)
{
    unsigned i;
    for (i = 0; i < d->ncreds; i++)
        lk_cred_free(d->creds[i]);
    free(d);
}

/* The LRU list: most recently used at the head, evicted from the tail. */
static void lru__remove(struct plg_device *d)
{
    if (d->lru_prev)
        d->lru_prev->lru_next = d->lru_next;
    else
        lru_head = d->lru_next;
    if (d->lru_next)
        d->lru_next->lru_prev = d->lru_prev;
    else
        lru_tail = d->lru_prev;
    d->lru_prev = d->lru_next = NULL;
}

static void lru__push(struct plg_device *d)
{
    d->lru_prev = NULL;
    d->lru_next = lru_head;
    if (lru_head)
        lru_head->lru_prev = d;
    lru_head = d;
    if (!lru_tail)
        lru_tail = d;
}

static void devices__unlink(struct plg_device *d)
{
    struct plg_device **pp;

    for (pp = &by_path[devices__hash_str(d->path)]; *pp; pp = &(*pp)->hnext_path)
        if (*pp == d) {
            *pp = d->hnext_path;
            break;
        }
    for (pp = &by_num[devices__hash_num(d->num_id)]; *pp; pp = &(*pp)->hnext_num)
        if (*pp == d) {
            *pp = d->hnext_num;
            break;
        }
    lru__remove(d);
    count--;
}

static void devices__touch(struct plg_device *d)
{
    if (lru_head == d)
        return;
    lru__remove(d);
    lru__push(d);
}

void devices__clear(void)
{
    while (lru_head) {
        struct plg_device *d = lru_head;
        devices__unlink(d);
        devices__free_one(d);
    }
}

void devices__cleanup(void)
{
    devices__clear();
    free(by_path);
    by_path = by_num = NULL;
    nbuckets = 0;
}

void devices__forget(uint64_t num_id)
{
    struct plg_device *d, *next;

    if (!nbuckets)
        return;
    for (d = by_num[devices__hash_num(num_id)]; d; d = next) {
        next = d->hnext_num;
        if (d->num_id == num_id) {
            devices__unlink(d);
            devices__free_one(d);
        }
    }
}

/* # Lookup */

static struct plg_device *devices__load(const lk_device_name *p, const char *path, lk_err *err)
{
    lk_reg_name name = {p->project, p->location, p->registry};
    lk_reg_auth a;
    struct plg_device *d;
    unsigned i;
    size_t n;

    memset(&a, 0, sizeof a);
    *err = lk_registry_auth_lookup(plg.reg, &name, p->device, &a);
    if (*err)
        return NULL;
    /* The path in the same allocation, after the record. */
    n = strlen(path) + 1;
    d = calloc(1, sizeof *d + n);
    if (!d) {
        lk_reg_auth_free(&a);
        *err = LK_ERR_NOMEM;
        return NULL;
    }
    d->path = (char *)(d + 1);
    memcpy(d->path, path, n);
    d->num_id = a.num_id;
    d->blocked = a.blocked;
    d->mqtt = a.mqtt;
    d->config_version = a.config_version;
    d->gateway_type = a.gateway_type;
    d->gateway_auth = a.gateway_auth_method;
    d->log_level = a.log_level;
    d->reg_log_level = a.registry_log_level;
    for (i = 0; i < a.ncreds && i < LK_DEVICE_CREDENTIALS_MAX; i++) {
        const lk_reg_credential *rc = &a.creds[i];
        lk_cred *cred = NULL;
        lk_err e = lk_cred_parse(rc->format, rc->pem, strlen(rc->pem), rc->expires, &cred);
        if (e != LK_OK && e != LK_ERR_CRED_INVALID) {
            /* Out of memory, or OpenSSL failed: nothing is cached, or the
             * device would be refused for a key it has until it changes. */
            devices__free_one(d);
            lk_reg_auth_free(&a);
            *err = e;
            return NULL;
        }
        if (e) {
            /* The registry checked it when it was added: skip, and say so. */
            plog__msg(PLOG_WARN, "credential", path, "credential %u does not parse (%s); ignored", i,
                      lk_errname(e));
            continue;
        }
        d->creds[d->ncreds++] = cred;
    }
    lk_reg_auth_free(&a);
    return d;
}

int devices__stale(int64_t now)
{
    return plg.feed_failing_since != 0 && now - plg.feed_failing_since >= plg.opt.confirm_timeout;
}

/* Twice the buckets, every entry (all are on the LRU list) indexed again;
 * out of memory: the old tables stay. */
static void devices__grow(void)
{
    size_t n = nbuckets * 2, h;
    struct plg_device **t = calloc(2 * n, sizeof *t), *d;

    if (!t)
        return;
    free(by_path);
    by_path = t;
    by_num = t + n;
    nbuckets = n;
    for (d = lru_head; d; d = d->lru_next) {
        h = devices__hash_str(d->path);
        d->hnext_path = by_path[h];
        by_path[h] = d;
        h = devices__hash_num(d->num_id);
        d->hnext_num = by_num[h];
        by_num[h] = d;
    }
}

struct plg_device *devices__get(const lk_device_name *p, const char *path, int fresh, lk_err *err)
{
    struct plg_device *d;
    size_t h = devices__hash_str(path);

    *err = LK_OK;
    for (d = by_path[h]; d; d = d->hnext_path)
        if (!strcmp(d->path, path))
            break;
    if (d && !fresh) {
        devices__touch(d);
        return d;
    }
    if (d) {
        devices__unlink(d);
        devices__free_one(d);
    }
    d = devices__load(p, path, err);
    if (!d)
        return NULL;
    while (count >= capacity && lru_tail) {
        struct plg_device *old = lru_tail;
        devices__unlink(old);
        devices__free_one(old);
    }
    if (count >= nbuckets && nbuckets < max_buckets) {
        devices__grow();
        h = devices__hash_str(path);
    }
    d->hnext_path = by_path[h];
    by_path[h] = d;
    h = devices__hash_num(d->num_id);
    d->hnext_num = by_num[h];
    by_num[h] = d;
    lru__push(d);
    count++;
    return d;
}

int devices__find_cred(const struct plg_device *d, const uint8_t fp[32], int64_t expires)
{
    unsigned i;
    uint8_t f[32];
    int same_key = -1;

    for (i = 0; i < d->ncreds; i++) {
        lk_cred_fingerprint(d->creds[i], f);
        if (memcmp(f, fp, 32))
            continue;
        if (lk_cred_expires(d->creds[i]) == expires)
            return (int)i;
        if (same_key < 0)
            same_key = (int)i;
    }
    return same_key;
}

void devices__release_keys(const struct plg_device *d)
{
    unsigned i;
    for (i = 0; i < d->ncreds; i++)
        lk_cred_release_key(d->creds[i]);
}
