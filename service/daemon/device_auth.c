/*
 * device_auth.c — who calls the device bridge: a device, by its own token,
 * under the rules of its MQTT connection (docs/daemon.md, "The device
 * bridge"): the verifier and its token cache with the broker plugin's
 * policy (skew, lifetime, length, padding: the same keys and defaults),
 * audience = the project, the device's registered credentials and their
 * expiry; a blocked device, or a registry whose httpConfig is disabled, is
 * refused once the token has proven who calls.
 *
 * What a request needs of a device (its numId, flags and parsed keys) is
 * cached, as the plugin caches it, so that a device posting every second
 * costs neither a registry read nor a PEM parse. The cache follows the
 * registry's change feed as the plugin does: when the registry's
 * generation moves, the changes since the last read drop the devices they
 * name, and a registry's change (httpConfig, deletion) or a feed that
 * cannot be read drops everything. States and activity times are not in
 * the feed, so the broker's writes cost the cache nothing. Direct-mapped:
 * a collision replaces.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_util.h"
#include "daemon.h"

struct dev_entry {
    char *key;                         /* "P/L/R/DEV" as the path gave it (id or numId) */
    lk_device_name name;
    uint64_t num_id;
    int blocked;
    lk_reg_state http;
    int jit;                           /* the registry allows JIT: x5c let through, the JIT cap */
    lk_reg_gateway_type gateway_type;  /* gatewayInfo (device_gateway.c) */
    lk_reg_gateway_auth gateway_auth;
    lk_cred *creds[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncreds;
};

/* A registry's httpConfig and JIT setting, apart: reading a registry counts its devices. */
struct reg_entry {
    char key[LK_PROJECT_MAX + LK_LOCATION_MAX + LK_ID_MAX + 4];
    lk_reg_state http;
    int jit;
    int64_t read_at;                   /* the feed drops it on a change; read again after REG_TTL s anyway */
};
#define REG_ENTRIES 64u
#define REG_TTL 60                     /* a backstop: the change feed is what keeps it fresh */
#define DROPS_MAX 256u                 /* devices dropped one by one per feed read; more: all */

struct lkd_devcache {
    struct dev_entry **e;              /* allocated as used: a table of pointers */
    size_t mask;
    struct reg_entry reg[REG_ENTRIES];
    uint64_t gen;                      /* the registry generation the feed was read at */
    int64_t since;                     /* the change feed's position */
    int synced;                        /* since is known */
    uint64_t drop[DROPS_MAX];          /* devices named by the changes being read */
    unsigned ndrop;
    int drop_all;
    int64_t jit_ms;                    /* the JIT token bucket: last filled ... */
    double jit_bucket;                 /* ... and attempts it holds */
};

static void entry_clear(struct dev_entry **slot)
{
    struct dev_entry *e = *slot;
    if (e == NULL)
        return;
    for (unsigned i = 0; i < e->ncreds; i++)
        lk_cred_free(e->creds[i]);
    free(e->key);
    free(e);
    *slot = NULL;
}

lk_err lkd_devcache_new(size_t entries, struct lkd_devcache **out)
{
    size_t n = 16;
    while (n < entries)
        n <<= 1;
    struct lkd_devcache *dc = calloc(1, sizeof *dc);
    if (dc == NULL || (dc->e = calloc(n, sizeof *dc->e)) == NULL) {
        free(dc);
        return LK_ERR_NOMEM;
    }
    dc->mask = n - 1;
    *out = dc;
    return LK_OK;
}

void lkd_devcache_free(struct lkd_devcache *dc)
{
    if (dc == NULL)
        return;
    for (size_t i = 0; i <= dc->mask; i++)
        entry_clear(&dc->e[i]);
    free(dc->e);
    free(dc);
}

static size_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 29));
}

static int change_cb(void *arg, const lk_reg_change *ch)
{
    struct lkd_devcache *dc = arg;
    switch (ch->kind) {
    case LK_CHANGE_DEVICE:
    case LK_CHANGE_DEVICE_DELETED:
        if (dc->ndrop < DROPS_MAX)
            dc->drop[dc->ndrop++] = ch->num_id;
        else
            dc->drop_all = 1;
        return 0;
    case LK_CHANGE_REGISTRY:
    case LK_CHANGE_RESYNC:
        dc->drop_all = 1;
        return 0;
    default:
        return 0;                      /* configs, commands, backends: not what auth reads */
    }
}

/* Bring the cache up to the registry: drop what the changes since the last
 * read name. Nothing read (the feed failed): drop everything, and read the
 * feed again next time. */
static void sync_feed(struct lkd *d)
{
    struct lkd_devcache *dc = d->devcache;
    uint64_t gen = lkd_registry_gen(d);
    if (dc->synced && gen == dc->gen)
        return;
    dc->ndrop = 0;
    dc->drop_all = !dc->synced;
    lk_err err = dc->synced ? lk_registry_changes(d->reg, &dc->since, change_cb, dc)
                            : lk_registry_change_head(d->reg, &dc->since);
    if (err != LK_OK) {
        dc->drop_all = 1;
        dc->synced = 0;
    } else {
        dc->synced = 1;
        dc->gen = gen;
    }
    if (!dc->drop_all && dc->ndrop == 0)
        return;
    for (size_t i = 0; i <= dc->mask; i++) {
        const struct dev_entry *e = dc->e[i];
        if (e == NULL)
            continue;
        int drop = dc->drop_all;
        for (unsigned j = 0; !drop && j < dc->ndrop; j++)
            drop = dc->drop[j] == e->num_id;
        if (drop)
            entry_clear(&dc->e[i]);
    }
    if (dc->drop_all)
        memset(dc->reg, 0, sizeof dc->reg);
}

static lk_err registry_http(struct lkd *d, const lk_reg_name *n, lk_reg_state *http, int *jit, char *why,
                            size_t why_size)
{
    char key[sizeof d->devcache->reg[0].key];
    snprintf(key, sizeof key, "%s/%s/%s", n->project, n->location, n->registry);
    struct reg_entry *r = &d->devcache->reg[hash_key(key) % REG_ENTRIES];
    int64_t now = lkd_now();
    if (strcmp(r->key, key) == 0 && now >= r->read_at && now - r->read_at < REG_TTL) {
        *http = r->http;
        *jit = r->jit;
        return LK_OK;
    }
    lk_reg_registry rr;
    lk_reg_jit j;
    lk_err err = lk_registry_get_registry(d->reg, n, &rr, why, why_size);
    if (err != LK_OK)
        return err;
    *http = rr.http;
    lk_reg_registry_free(&rr);
    memset(&j, 0, sizeof j);
    if ((err = lk_registry_get_jit(d->reg, n, &j, why, why_size)) != LK_OK)
        return err;
    *jit = j.enabled != 0;
    snprintf(r->key, sizeof r->key, "%s", key);
    r->http = *http;
    r->jit = *jit;
    r->read_at = now;
    return LK_OK;
}

/* Read the device into e (e->key set by the caller): 0, or an lk_err with
 * why. A device named by numId is read by it first, for its string id. */
static lk_err entry_load(struct lkd *d, struct dev_entry *e, const lk_reg_name *n, const char *dev, char *why,
                         size_t why_size)
{
    char id[LK_ID_MAX + 1];
    lk_err err;
    uint64_t v;
    if (lkd_num_id(dev, &v)) {
        lk_reg_device rd;
        if (v == 0)
            return LK_ERR_REG_NOT_FOUND;
        err = lk_registry_get_device(d->reg, n, NULL, v, &rd, why, why_size);
        if (err != LK_OK)
            return err;
        snprintf(id, sizeof id, "%s", rd.id);
        lk_reg_device_free(&rd);
    } else {
        if (!lk_id_valid(dev, strlen(dev)))
            return LK_ERR_REG_NOT_FOUND;
        snprintf(id, sizeof id, "%s", dev);
    }
    err = registry_http(d, n, &e->http, &e->jit, why, why_size);
    if (err != LK_OK)
        return err;
    lk_reg_auth a;
    err = lk_registry_auth_lookup(d->reg, n, id, &a);
    if (err != LK_OK)
        return err;
    e->num_id = a.num_id;
    e->blocked = a.blocked;
    e->gateway_type = a.gateway_type;
    e->gateway_auth = a.gateway_auth_method;
    snprintf(e->name.project, sizeof e->name.project, "%s", n->project);
    snprintf(e->name.location, sizeof e->name.location, "%s", n->location);
    snprintf(e->name.registry, sizeof e->name.registry, "%s", n->registry);
    snprintf(e->name.device, sizeof e->name.device, "%s", id);
    for (unsigned i = 0; i < a.ncreds && i < LK_DEVICE_CREDENTIALS_MAX; i++) {
        lk_cred *cred = NULL;
        err = lk_cred_parse(a.creds[i].format, a.creds[i].pem, strlen(a.creds[i].pem), a.creds[i].expires, &cred);
        if (err == LK_ERR_CRED_INVALID) {
            /* The registry checked it when it was added: skip, and say so. */
            char dp_[LK_DEVICE_PATH_MAX + 1];
            lkd_log("%s: credential %u does not parse; ignored", lkd_device_path(n, id, dp_, sizeof dp_), i);
            continue;
        }
        if (err != LK_OK) {
            lk_reg_auth_free(&a);
            return err;
        }
        e->creds[e->ncreds++] = cred;
    }
    lk_reg_auth_free(&a);
    return LK_OK;
}

/* The cached entry of the device, loaded when absent or stale. */
static struct dev_entry *device_get(struct lkd *d, const lk_reg_name *n, const char *dev, lk_err *err, char *why,
                                    size_t why_size)
{
    char key[LK_PROJECT_MAX + LK_LOCATION_MAX + 2 * LK_ID_MAX + 8];
    snprintf(key, sizeof key, "%s/%s/%s/%s", n->project, n->location, n->registry, dev);
    sync_feed(d);
    struct dev_entry **slot = &d->devcache->e[hash_key(key) & d->devcache->mask];
    if (*slot != NULL && strcmp((*slot)->key, key) == 0)
        return *slot;
    entry_clear(slot);
    struct dev_entry *e = calloc(1, sizeof *e);
    if (e == NULL || (e->key = strdup(key)) == NULL) {
        free(e);
        *err = LK_ERR_NOMEM;
        return NULL;
    }
    *slot = e;
    *err = entry_load(d, e, n, dev, why, why_size);
    if (*err != LK_OK) {
        entry_clear(slot);
        return NULL;
    }
    return e;
}

/* The token of "Bearer TOKEN", or NULL. */
static const char *bearer(const char *h, size_t *len)
{
    if (h == NULL || evutil_ascii_strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    *len = strlen(h);
    return *len ? h : NULL;
}

/* One JIT attempt from the daemon's bucket (jit_burst, refilled at
 * jit_per_minute), before any signature or chain is checked. */
static int jit_take(struct lkd *d)
{
    struct lkd_devcache *dc = d->devcache;
    int64_t now = lkd_now_ms();
    double burst = (double)d->cfg.jit_burst;
    if (dc->jit_ms == 0 || now < dc->jit_ms)
        dc->jit_bucket = burst;
    else if ((dc->jit_bucket += (double)(now - dc->jit_ms) * d->cfg.jit_per_minute / 60000.0) > burst)
        dc->jit_bucket = burst;
    dc->jit_ms = now;
    if (dc->jit_bucket < 1.0)
        return 0;
    dc->jit_bucket -= 1.0;
    return 1;
}

/* An unknown device of a registry with JIT on: register it from its token's
 * x5c (docs/provisioning.md), as the broker does on a first connection. 0,
 * or -1 with the reply sent. */
static int device_jit(struct lkd_call *c, const lk_reg_name *n, const char *dev, const char *token, size_t len)
{
    struct lkd *d = c->d;
    char why[256] = "";
    lk_verify_policy pol;
    lk_token_info info;
    uint64_t num_id = 0;
    lk_x5c_certs *certs;
    lk_err err;

    /* Only a token that could register spends from the bucket (as the broker). */
    if (!lk_jwt_has_x5c(token, len, d->cfg.jit_max_token_length,
                        d->cfg.base64_padding ? LK_VERIFY_ALLOW_PADDING : 0u)) {
        lkd_log_device(c, "info", "refused", "no such device (and no x5c in the token to register it just in time)");
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "the token is not valid for this device");
        return -1;
    }
    if (!jit_take(d)) {
        lkd_log_device(c, "info", "refused",
                       "just-in-time registration refused: faster than jit_per_minute (%u, burst %u)",
                       d->cfg.jit_per_minute, d->cfg.jit_burst);
        lkd_reply_error(c, LKD_UNAVAILABLE, "just-in-time registrations arrive too fast; try again later");
        return -1;
    }
    if ((certs = malloc(sizeof *certs)) == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory; try again");
        return -1;
    }
    lk_verify_policy_init(&pol, n->project, strlen(n->project), lkd_now());
    pol.skew = d->cfg.skew;
    pol.max_lifetime = d->cfg.max_token_lifetime;
    pol.max_len = d->cfg.jit_max_token_length;
    pol.flags = (d->cfg.base64_padding ? LK_VERIFY_ALLOW_PADDING : 0) | LK_VERIFY_ALLOW_X5C;
    err = lk_verify_jit_token(d->ver, token, len, &pol, &info, certs, why, sizeof why);
    if (err == LK_OK)
        err = lk_registry_jit_register(d->reg, n, dev, certs->leaf, certs->leaf_len, certs->chain,
                                       certs->chain_len, &num_id, why, sizeof why);
    free(certs);
    if (err == LK_OK) {
        lkd_log_device(c, "info", "registered", "registered just in time (numId %llu)", (unsigned long long)num_id);
        return 0;
    }
    lkd_log_device(c, "info", "refused", "just-in-time registration refused: %s (%s)", why[0] ? why : lk_strerror(err),
                   lk_errname(err));
    if (err == LK_ERR_NOMEM || err == LK_ERR_CRYPTO || err == LK_ERR_REG_BUSY || err == LK_ERR_REG_STORAGE)
        lkd_reply_error(c, LKD_UNAVAILABLE, "the device could not be registered (%s); try again", lk_errname(err));
    else
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "just-in-time registration refused: %s%s%s", lk_strerror(err),
                        why[0] ? ": " : "", why);
    return -1;
}

static int device_authenticate(struct lkd_call *c, const lk_reg_name *n, const char *dev, const char *token,
                               size_t len, struct lkd_device_id *out)
{
    struct lkd *d = c->d;
    char why[256] = "";
    if (token == NULL) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "an Authorization: Bearer header with the device's JWT is required");
        return -1;
    }
    lk_err err;
    struct dev_entry *e = device_get(d, n, dev, &err, why, sizeof why);
    uint64_t v;
    lk_reg_state http;
    int jit = 0;
    /* An unknown device by its string id in a registry with JIT on. */
    if (e == NULL && err == LK_ERR_REG_NOT_FOUND && !lkd_num_id(dev, &v) &&
        registry_http(d, n, &http, &jit, why, sizeof why) == LK_OK && jit) {
        if (device_jit(c, n, dev, token, len) != 0)
            return -1;
        e = device_get(d, n, dev, &err, why, sizeof why);
    }
    if (e == NULL) {
        if (err == LK_ERR_REG_NOT_FOUND) {
            /* Not told apart from a bad token: the caller has proven nothing. */
            lkd_log_device(c, "info", "refused", "no such device (%s)", why[0] ? why : "not found");
            lkd_reply_error(c, LKD_UNAUTHENTICATED, "the token is not valid for this device");
        } else if (err == LK_ERR_REG_BUSY || err == LK_ERR_NOMEM) {
            lkd_reply_error(c, LKD_UNAVAILABLE, "the registry could not be read (%s); try again", lk_errname(err));
        } else {
            lkd_reply_error(c, LKD_INTERNAL, "the device could not be read (%s)", lk_errname(err));
        }
        return -1;
    }
    lk_verify_policy pol;
    lk_verify_policy_init(&pol, e->name.project, strlen(e->name.project), lkd_now());
    pol.skew = d->cfg.skew;
    pol.max_lifetime = d->cfg.max_token_lifetime;
    pol.max_len = e->jit ? d->cfg.jit_max_token_length : d->cfg.max_token_length;
    pol.flags = (d->cfg.base64_padding ? LK_VERIFY_ALLOW_PADDING : 0) | (e->jit ? LK_VERIFY_ALLOW_X5C : 0u);
    pol.subject = e->num_id;
    lk_token_info info;
    int hit = 0;
    err = lk_verify_token_cached(d->ver, d->vcache, token, len, (lk_cred *const *)e->creds, e->ncreds, &pol, &info,
                                 &hit, why, sizeof why);
    if (err == LK_ERR_NOMEM || err == LK_ERR_CRYPTO) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "the token could not be checked (%s); try again", lk_errname(err));
        return -1;
    }
    if (err != LK_OK) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "%s%s%s", lk_strerror(err), why[0] ? ": " : "", why);
        return -1;
    }
    if (e->blocked) {
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "The device `%s` is blocked", e->name.device);
        return -1;
    }
    if (e->http == LK_REG_STATE_DISABLED) {
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "HTTP is disabled for registry `%s` (its httpConfig)",
                        e->name.registry);
        return -1;
    }
    out->name = e->name;
    out->num_id = e->num_id;
    out->gateway_type = e->gateway_type;
    out->gateway_auth = e->gateway_auth;
    return 0;
}

int lkd_device_authenticate(struct lkd_call *c, const lk_reg_name *n, const char *dev, struct lkd_device_id *out)
{
    /* The device's token (good for up to a day) is taken out of evhttp's
     * headers and wiped after, as the admin listener does with its own. A
     * header too long for any token reads as none: the verifier's length
     * rule would refuse it anyway. */
    size_t hlen = 0, len = 0;
    int present = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Authorization") != NULL;
    /* the longer cap of a registry with JIT on; the verifier applies each registry's own */
    unsigned cap = c->d->cfg.max_token_length > c->d->cfg.jit_max_token_length ? c->d->cfg.max_token_length
                                                                                 : c->d->cfg.jit_max_token_length;
    char *h = lkd_take_authorization(c, cap, &hlen);
    snprintf(c->who.email, sizeof c->who.email, "device %s/%s", n->registry, dev);
    if (present && h == NULL) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "the Authorization header is longer than any token (max_token_length %u)",
                        cap);
        return -1;
    }
    const char *token = bearer(h, &len);
    int rc = device_authenticate(c, n, dev, token, len, out);
    lkd_wipe_authorization(h, hlen);
    return rc;
}
