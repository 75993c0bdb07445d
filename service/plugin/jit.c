/*
 * jit.c — just-in-time registration at connect (docs/provisioning.md,
 * "Just-in-time registration"): which registries allow it (a small cache
 * the change feed clears), the global rate of attempts, and the
 * registration of a device whose token carries its certificate chain.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define JIT_SLOTS 256u /* registries remembered; a collision just reads again */
/* The change feed drops a setting when it changes (lk_registry_set_jit
 * appends LK_CHANGE_REGISTRY); a setting is also read again after this many
 * seconds, a cheap backstop (one read a registry a minute). */
#define JIT_TTL 60

struct jit_slot {
    char *key;                   /* "P/L/R", or NULL */
    int enabled;
    int64_t read_at;
};
static struct jit_slot slots[JIT_SLOTS];
static lk_registry *writer;      /* opened on first use when plg.reg may not write */
static int64_t bucket_ms;        /* the token bucket: when it was last filled ... */
static double bucket;            /* ... and how many attempts it holds */

void jit__forget(void)
{
    size_t i;

    for (i = 0; i < JIT_SLOTS; i++) {
        free(slots[i].key);
        slots[i].key = NULL;
    }
}

void jit__cleanup(void)
{
    jit__forget();
    if (writer)
        lk_registry_close(writer);
    writer = NULL;
    bucket_ms = 0;
    bucket = 0;
}

int jit__enabled(const lk_device_name *p, lk_err *err)
{
    char key[LK_PROJECT_MAX + LK_LOCATION_MAX + LK_ID_MAX + 4];
    lk_reg_name name = {p->project, p->location, p->registry};
    struct jit_slot *s;
    lk_reg_jit j;
    char *dup;
    int64_t now = clock__now();

    *err = LK_OK;
    snprintf(key, sizeof key, "%s/%s/%s", p->project, p->location, p->registry);
    s = &slots[hash__str(HASH_STR_SEED, key) & (JIT_SLOTS - 1)];
    if (s->key && !strcmp(s->key, key) && !devices__stale(now) && now - s->read_at < JIT_TTL &&
        now >= s->read_at)
        return s->enabled;
    memset(&j, 0, sizeof j);
    *err = lk_registry_get_jit(plg.reg, &name, &j, NULL, 0);
    if (*err == LK_ERR_REG_NOT_FOUND) {
        *err = LK_OK; /* no such registry: nothing to register in */
        j.enabled = 0;
    } else if (*err) {
        /* A setting read before stands in (at most one TTL late) rather
         * than refusing every device of the registry while the file is
         * busy; the change feed's own failure handling still applies. */
        if (s->key && !strcmp(s->key, key) && !devices__stale(now)) {
            *err = LK_OK;
            return s->enabled;
        }
        return -1;
    }
    if (s->key && !strcmp(s->key, key)) {
        s->enabled = j.enabled != 0;
        s->read_at = now;
    } else if ((dup = strdup(key)) != NULL) {
        free(s->key);
        s->key = dup;
        s->enabled = j.enabled != 0;
        s->read_at = now;
    }
    return j.enabled != 0;
}

/* One attempt from the global bucket (jit_burst, refilled at jit_per_minute):
 * taken before any signature or chain is checked, so that a flood of first
 * connections costs the broker a hash lookup each, not a verification. */
static int jit__take(void)
{
    int64_t now = clock__now_ms();
    double burst = (double)plg.opt.jit_burst;

    if (bucket_ms == 0 || now < bucket_ms) {
        bucket = burst;
    } else {
        bucket += (double)(now - bucket_ms) * (double)plg.opt.jit_per_minute / 60000.0;
        if (bucket > burst)
            bucket = burst;
    }
    bucket_ms = now;
    if (bucket < 1.0)
        return 0;
    bucket -= 1.0;
    return 1;
}

/* The broker's handle may refuse writes (LK_REG_READONLY): registration
 * then goes through a writable handle of the same file, opened once. */
static lk_err jit__write(const lk_reg_name *name, const char *id, const lk_x5c_certs *certs,
                         uint64_t *num_id, char *why, size_t why_size)
{
    lk_err err = lk_registry_jit_register(plg.reg, name, id, certs->leaf, certs->leaf_len,
                                          certs->chain, certs->chain_len, num_id, why, why_size);

    if (err != LK_ERR_STATE)
        return err;
    if (!writer) {
        err = lk_registry_open(plg.opt.registry, 0, &writer, why, why_size);
        if (err)
            return err;
        lk_registry_set_busy_timeout(writer, 200);
    }
    return lk_registry_jit_register(writer, name, id, certs->leaf, certs->leaf_len, certs->chain,
                                    certs->chain_len, num_id, why, why_size);
}

enum jit_result jit__register(const lk_device_name *p, const char *password, int64_t now,
                              char *reason, size_t reason_size, lk_err *err)
{
    lk_reg_name name = {p->project, p->location, p->registry};
    lk_verify_policy pol;
    lk_token_info info;
    lk_x5c_certs *certs;
    uint64_t num_id = 0;
    char why[200] = "";

    *err = LK_OK;
    /* Only a token that could register spends from the bucket: a flood of
     * unknown ids with plain tokens must not starve real first connections.
     * The presence of x5c is all this reads; lk_verify_jit_token checks the rest. */
    if (!lk_jwt_has_x5c(password, strlen(password), plg.opt.jit_max_token_length,
                        plg.opt.verify_flags)) {
        snprintf(reason, reason_size, "no such device (and no x5c in the token to register "
                 "it just in time)");
        return JIT_REFUSED;
    }
    if (!jit__take()) {
        snprintf(reason, reason_size, "just-in-time registrations arrive faster than "
                 "plugin_opt_jit_per_minute (%u, burst %u)", plg.opt.jit_per_minute,
                 plg.opt.jit_burst);
        return JIT_UNAVAILABLE;
    }
    certs = malloc(sizeof *certs);
    if (!certs) {
        *err = LK_ERR_NOMEM;
        snprintf(reason, reason_size, "out of memory");
        return JIT_UNAVAILABLE;
    }
    lk_verify_policy_init(&pol, p->project, strlen(p->project), now);
    pol.skew = plg.opt.skew;
    pol.max_lifetime = plg.opt.max_token_lifetime;
    pol.max_len = plg.opt.jit_max_token_length;
    pol.flags = plg.opt.verify_flags | LK_VERIFY_ALLOW_X5C;
    *err = lk_verify_jit_token(plg.verifier, password, strlen(password), &pol, &info, certs,
                               why, sizeof why);
    if (*err == LK_OK)
        *err = jit__write(&name, p->device, certs, &num_id, why, sizeof why);
    free(certs); /* public certificates: nothing to wipe */
    if (*err == LK_OK) {
        snprintf(reason, reason_size, "registered just in time (numId %llu)",
                 (unsigned long long)num_id);
        return JIT_REGISTERED;
    }
    snprintf(reason, reason_size, "just-in-time registration refused: %s%s%s",
             lk_strerror(*err), why[0] ? ": " : "", why);
    switch (*err) {
    case LK_ERR_NOMEM:
    case LK_ERR_CRYPTO:
    case LK_ERR_REG_BUSY:
    case LK_ERR_REG_STORAGE:
    case LK_ERR_IO:
    case LK_ERR_STATE:
        return JIT_UNAVAILABLE;
    default:
        return JIT_REFUSED;
    }
}
