/*
 * devices.c — devices and their credentials (lk_registry.h): metadata and
 * spec checks, credential checks against the registry's CA certificates,
 * and the transactions that create, read, update and delete devices.
 */
#include <stdlib.h>
#include <string.h>

#include "facade.h"
#include "latchkey/lk_util.h"

/* Well-formed UTF-8 without NUL. */
static int utf8_text(const unsigned char *s, size_t n)
{
    return lk_utf8_valid(s, n) && memchr(s, '\0', n) == NULL;
}

static lk_err check_metadata(const lk_reg_metadata *m, unsigned n, char *why, size_t why_size)
{
    size_t total = 0;
    unsigned i, j;
    char b[80];

    if (n > 0 && m == NULL)
        return failf(why, why_size, LK_ERR_ARG, "metadata count %u without metadata", n);
    if (n > LK_METADATA_PAIRS_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "%u metadata pairs given; a device has at most %u", n,
                     LK_METADATA_PAIRS_MAX);
    for (i = 0; i < n; i++) {
        size_t klen;
        if (m[i].key == NULL || (m[i].value == NULL && m[i].value_len > 0))
            return failf(why, why_size, LK_ERR_ARG, "metadata pair %u has no key or value", i);
        klen = strlen(m[i].key);
        if (!lk_metadata_key_valid(m[i].key, klen))
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "metadata key '%s' is invalid: a metadata key is 1 to %u characters, "
                         "a letter followed by letters, digits or - . _ + ~ %%",
                         lk_reg__shown(m[i].key, b, sizeof b), LK_METADATA_KEY_MAX);
        if (m[i].value_len > LK_METADATA_VALUE_MAX)
            return failf(why, why_size, LK_ERR_REG_LIMIT,
                         "metadata value of '%s' is %zu bytes; the limit is %u", m[i].key,
                         m[i].value_len, LK_METADATA_VALUE_MAX);
        if (!utf8_text((const unsigned char *)m[i].value, m[i].value_len))
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "metadata value of '%s' is not text: a metadata value is UTF-8 "
                         "without NUL bytes", m[i].key);
        for (j = 0; j < i; j++)
            if (strcmp(m[j].key, m[i].key) == 0)
                return failf(why, why_size, LK_ERR_REG_INVALID,
                             "metadata key '%s' is given twice; keys are unique", m[i].key);
        total += klen + m[i].value_len;
    }
    if (total >= LK_METADATA_TOTAL_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "metadata keys and values total %zu bytes; the total must be under %u",
                     total, LK_METADATA_TOTAL_MAX);
    return LK_OK;
}

static lk_err check_gateway_auth(lk_reg_gateway_auth m, char *why, size_t why_size)
{
    if ((int)m < (int)LK_GATEWAY_AUTH_UNSPECIFIED ||
        (int)m > (int)LK_GATEWAY_AUTH_ASSOCIATION_AND_DEVICE_AUTH_TOKEN)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "gateway auth method %d is invalid: use UNSPECIFIED (0), ASSOCIATION_ONLY "
                     "(1), DEVICE_AUTH_TOKEN_ONLY (2) or ASSOCIATION_AND_DEVICE_AUTH_TOKEN (3)",
                     (int)m);
    return LK_OK;
}

/* Everything about the fields of a device spec that mask names that needs
 * no database. LK_REG_SET_CREDS: the credential count (the credentials
 * themselves are checked in the transaction, against the registry's CA
 * certificates). */
static lk_err check_spec(const lk_reg_device_spec *spec, unsigned mask, char *why,
                         size_t why_size)
{
    lk_err err;
    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no device given");
    if ((err = lk_reg__check_device_id(spec->id, why, why_size)) != LK_OK)
        return err;
    if (mask & LK_REG_SET_CREDS) {
        if (spec->ncreds > LK_DEVICE_CREDENTIALS_MAX)
            return failf(why, why_size, LK_ERR_REG_LIMIT,
                         "%u credentials given; a device has at most %u credentials",
                         spec->ncreds, LK_DEVICE_CREDENTIALS_MAX);
        if (spec->ncreds > 0 && spec->creds == NULL)
            return failf(why, why_size, LK_ERR_ARG, "credential count %u without credentials",
                         spec->ncreds);
    }
    if ((mask & LK_REG_SET_METADATA) &&
        (err = check_metadata(spec->metadata, spec->nmetadata, why, why_size)) != LK_OK)
        return err;
    if ((mask & LK_REG_SET_LOG_LEVEL) &&
        (err = lk_reg__check_log_level("device", spec->log_level, why, why_size)) != LK_OK)
        return err;
    if ((mask & LK_REG_SET_GATEWAY_AUTH) &&
        (err = check_gateway_auth(spec->gateway_auth_method, why, why_size)) != LK_OK)
        return err;
    return LK_OK;
}

/* Check each credential of c[0..n) that is not in keep[0..nkeep) (a
 * device's current credentials, kept without a new check). */
static lk_err check_creds_ck(lk_reg_checker *ck, int64_t now, const lk_reg_cas *cas,
                             const lk_reg_credential *c, unsigned n,
                             const lk_reg_credential *keep, unsigned nkeep,
                             const lk_reg_device_spec *chain, char *why, size_t why_size)
{
    unsigned i, j;
    lk_err err;
    for (i = 0; i < n; i++) {
        int kept = 0;
        for (j = 0; j < nkeep && !kept; j++)
            kept = c[i].pem != NULL && keep[j].format == c[i].format &&
                   keep[j].expires == c[i].expires && strcmp(keep[j].pem, c[i].pem) == 0;
        if (kept)
            continue;
        err = chain != NULL ? lk_reg__cred_check_chain(ck, cas, &c[i], i, now, chain->chain_pem,
                                                       chain->chain_pem != NULL ? chain->chain_len
                                                                                : 0,
                                                       chain->cert_checks, why, why_size)
                            : lk_reg__cred_check(ck, cas, &c[i], i, now, why, why_size);
        if (err != LK_OK)
            return err;
    }
    return LK_OK;
}

static lk_err check_creds(lk_registry *reg, const lk_reg_cas *cas, const lk_reg_credential *c,
                          unsigned n, const lk_reg_credential *keep, unsigned nkeep,
                          const lk_reg_device_spec *chain, char *why, size_t why_size)
{
    return check_creds_ck(reg->ck, lk_reg__now(reg), cas, c, n, keep, nkeep, chain, why,
                          why_size);
}

lk_err lk_reg__check_spec_creds_ck(lk_reg_checker *ck, int64_t now, const lk_reg_cas *cas,
                                   const lk_reg_device_spec *spec, char *why, size_t why_size)
{
    return check_creds_ck(ck, now, cas, spec->creds, spec->ncreds, NULL, 0, spec, why, why_size);
}

lk_err lk_reg__check_spec_creds(lk_registry *reg, const lk_reg_cas *cas,
                                const lk_reg_device_spec *spec, char *why, size_t why_size)
{
    return check_creds(reg, cas, spec->creds, spec->ncreds, NULL, 0, spec, why, why_size);
}

lk_err lk_reg__device_absent(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                             const char *id, char *why, size_t why_size)
{
    char p[400];
    lk_err err = reg->ops->device_find(reg->be, rid, id, NULL, NULL);
    if (err == LK_OK)
        return failf(why, why_size, LK_ERR_REG_EXISTS, "device '%s' already exists in %s", id,
                     name != NULL ? lk_reg__path(name, p, sizeof p) : reg->import_name);
    return err == LK_ERR_REG_NOT_FOUND ? LK_OK : lk_reg__be_fail(reg, err, why, why_size);
}

/* Create a device inside the current write transaction, once
 * lk_reg__device_absent() has said it is not there. */
lk_err lk_reg__insert_device(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                             const lk_reg_cas *cas, const lk_reg_device_spec *spec, int checked,
                             uint64_t *num_id, char *why, size_t why_size)
{
    lk_reg_config cfg;
    char p[400];
    int64_t now = lk_reg__now(reg);
    lk_reg_device_spec ins = *spec;
    lk_err err;

    /* checked: lk_registry_import_check proved these credentials against
     * this same trust set outside the write transaction. */
    if (!checked &&
        (err = check_creds(reg, cas, spec->creds, spec->ncreds, NULL, 0, spec, why, why_size)) !=
            LK_OK)
        return err;
    /* The numId asked for, if no device has it (numIds are unique in the
     * database); otherwise the next one. */
    if (ins.num_id > LK_REG_NUM_ID_MAX) {
        ins.num_id = 0;
    } else if (ins.num_id != 0) {
        int taken = 0;
        if ((err = reg->ops->device_num_taken(reg->be, ins.num_id, &taken)) != LK_OK)
            return lk_reg__be_fail(reg, err, why, why_size);
        if (taken)
            ins.num_id = 0;
    }
    err = reg->ops->device_insert(reg->be, rid, &ins, now, num_id);
    if (err == LK_ERR_REG_EXISTS)
        return failf(why, why_size, err, "device '%s' already exists in %s", spec->id,
                     name != NULL ? lk_reg__path(name, p, sizeof p) : reg->import_name);
    if (err == LK_OK && spec->nmetadata > 0)
        err = reg->ops->metadata_set(reg->be, *num_id, spec->metadata, spec->nmetadata);
    if (err == LK_OK) {
        /* One version: nothing to prune (LK_CONFIG_VERSIONS_KEPT >= 1). */
        cfg.version = spec->config_version != 0 ? spec->config_version : 1;
        cfg.cloud_update_time =
            spec->config_cloud_update_time != 0 ? spec->config_cloud_update_time : now;
        cfg.device_ack_time = 0;
        cfg.data = (uint8_t *)spec->config;
        cfg.len = spec->config != NULL ? spec->config_len : 0;
        err = reg->ops->device_fill(reg->be, *num_id, spec->creds, spec->ncreds, &cfg);
    }
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__append_change(reg, LK_CHANGE_DEVICE, *num_id, why, why_size);
}

lk_err lk_reg__check_create_spec(const lk_reg_device_spec *spec, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    lk_err err = check_spec(spec, LK_REG_SET_CREDS | LK_REG_SET_METADATA, why, why_size);
    if (err == LK_OK)
        err = lk_reg__check_config_size(spec->config, spec->config_len, why, why_size);
    if (err == LK_OK)
        err = lk_reg__check_log_level("device", spec->log_level, why, why_size);
    if (err != LK_OK)
        return err;
    if (spec->config_version < 0 || spec->config_version > LK_REG_CONFIG_VERSION_MAX)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "config version %lld is out of range: 1 to %lld", (long long)spec->config_version,
                     (long long)LK_REG_CONFIG_VERSION_MAX);
    if (spec->config_cloud_update_time < 0 || spec->last_accessed_gateway_time < 0)
        return failf(why, why_size, LK_ERR_REG_INVALID, "a time before 1970 is invalid");
    if ((err = lk_reg__check_gateway_type(spec->gateway_type, why, why_size)) != LK_OK ||
        (err = check_gateway_auth(spec->gateway_auth_method, why, why_size)) != LK_OK)
        return err;
    if (spec->last_accessed_gateway_id != NULL &&
        (w = lk_id_why("gateway id", spec->last_accessed_gateway_id,
                       strlen(spec->last_accessed_gateway_id), r, sizeof r)) != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "last accessed gateway id '%s' is invalid: %s",
                     lk_reg__shown(spec->last_accessed_gateway_id, b, sizeof b), w);
    return LK_OK;
}

lk_err lk_registry_create_device(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_spec *spec, uint64_t *num_id, char *why,
                                 size_t why_size)
{
    lk_reg_cas *cas = NULL;
    uint64_t n = 0;
    int64_t rid;
    lk_err err;

    if (num_id != NULL)
        *num_id = 0;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_create_spec(spec, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && spec->ncreds > 0)
        err = lk_reg__load_cas(reg, rid, &cas, why, why_size);
    /* An existing id before the credentials are checked: a caller skipping
     * existing devices learns it whatever credentials the spec holds. */
    if (err == LK_OK)
        err = lk_reg__device_absent(reg, name, rid, spec->id, why, why_size);
    if (err == LK_OK)
        err = lk_reg__insert_device(reg, name, rid, cas, spec, 0, &n, why, why_size);
    lk_reg__cas_free(cas);
    err = lk_reg__leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK && num_id != NULL)
        *num_id = n;
    return err;
}

/* get_device, and (cfg not NULL) its newest config in the same read
 * transaction: one snapshot, one lock round trip. */
static lk_err get_device(lk_registry *reg, const lk_reg_name *name, const char *id, uint64_t num_id,
                         lk_reg_device *out, lk_reg_config *cfg, char *why, size_t why_size)
{
    int64_t rid = 0;
    uint64_t n = num_id;
    char p[400];
    lk_err err;

    if (cfg != NULL)
        memset(cfg, 0, sizeof *cfg);
    if (out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no output given");
    memset(out, 0, sizeof *out);
    if (id != NULL || name != NULL) {
        if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK)
            return err;
    }
    if (id != NULL && (err = lk_reg__check_device_id(id, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if (name != NULL)
        err = lk_reg__find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && id != NULL)
        err = lk_reg__find_device(reg, name, rid, id, &n, NULL, why, why_size);
    if (err == LK_OK) {
        err = reg->ops->device_get(reg->be, n, out);
        if (err == LK_ERR_REG_NOT_FOUND)
            err = failf(why, why_size, err, "no device has num_id %llu", (unsigned long long)n);
        else if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK && name != NULL && id == NULL &&
        (strcmp(out->project, name->project) != 0 || strcmp(out->location, name->location) != 0 ||
         strcmp(out->registry, name->registry) != 0))
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND, "no device of %s has num_id %llu",
                    lk_reg__path(name, p, sizeof p), (unsigned long long)n);
    if (err == LK_OK && cfg != NULL) {
        struct lk_reg__latest nw = {cfg, LK_ERR_REG_NOT_FOUND}; /* every device has a config */
        err = reg->ops->config_list(reg->be, n, 1, lk_reg__latest_cb, &nw);
        if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
        else if (nw.err != LK_OK)
            err = failf(why, why_size, nw.err, "the device's newest config could not be read");
    }
    err = lk_reg__leave(reg, err, TX_READ, why, why_size);
    if (err != LK_OK) {
        lk_reg_device_free(out);
        if (cfg != NULL)
            lk_reg_config_free(cfg);
    }
    return err;
}

lk_err lk_registry_get_device(lk_registry *reg, const lk_reg_name *name, const char *id,
                              uint64_t num_id, lk_reg_device *out, char *why, size_t why_size)
{
    return get_device(reg, name, id, num_id, out, NULL, why, why_size);
}

lk_err lk_registry_get_device_config(lk_registry *reg, const lk_reg_name *name, const char *id,
                                     uint64_t num_id, lk_reg_device *out, lk_reg_config *cfg,
                                     char *why, size_t why_size)
{
    if (cfg == NULL) {
        if (out != NULL) /* outputs are zeroed on every failure */
            memset(out, 0, sizeof *out);
        return failf(why, why_size, LK_ERR_ARG, "no config output given");
    }
    return get_device(reg, name, id, num_id, out, cfg, why, why_size);
}

struct dev_list_ctx {
    lk_registry *reg;
    int (*cb)(void *arg, const lk_reg_device *d);
    void *arg;
    lk_err err;
};

static int dev_list_cb(void *arg, uint64_t num_id)
{
    struct dev_list_ctx *ctx = arg;
    lk_reg_device d;
    int stop;
    ctx->err = ctx->reg->ops->device_get(ctx->reg->be, num_id, &d);
    if (ctx->err != LK_OK)
        return 1;
    stop = ctx->cb(ctx->arg, &d);
    lk_reg_device_free(&d);
    return stop;
}

lk_err lk_registry_list_devices(lk_registry *reg, const lk_reg_name *name,
                                int (*cb)(void *arg, const lk_reg_device *d), void *arg,
                                char *why, size_t why_size)
{
    struct dev_list_ctx ctx = {reg, cb, arg, LK_OK};
    int64_t rid;
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->device_list(reg->be, rid, dev_list_cb, &ctx)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && ctx.err != LK_OK)
        err = lk_reg__be_fail(reg, ctx.err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_update_device(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_spec *spec, unsigned mask, char *why,
                                 size_t why_size)
{
    lk_reg_credential cur[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncur = 0;
    lk_reg_cas *cas = NULL;
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (mask == 0 || (mask & ~(LK_REG_SET_BLOCKED | LK_REG_SET_METADATA | LK_REG_SET_CREDS |
                               LK_REG_SET_LOG_LEVEL | LK_REG_SET_GATEWAY_AUTH)))
        return failf(why, why_size, LK_ERR_ARG,
                     "the update mask must name fields to change: LK_REG_SET_BLOCKED, "
                     "LK_REG_SET_METADATA, LK_REG_SET_CREDS, LK_REG_SET_LOG_LEVEL, "
                     "LK_REG_SET_GATEWAY_AUTH");
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = check_spec(spec, mask, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__find_both(reg, name, spec->id, &rid, &num_id, NULL, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_CREDS)) {
        if ((err = reg->ops->creds_get(reg->be, num_id, cur, &ncur)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
        if (err == LK_OK)
            err = lk_reg__load_cas(reg, rid, &cas, why, why_size);
        if (err == LK_OK)
            err = check_creds(reg, cas, spec->creds, spec->ncreds, cur, ncur, spec, why,
                              why_size);
        if (err == LK_OK &&
            (err = reg->ops->creds_set(reg->be, num_id, spec->creds, spec->ncreds)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK && (mask & LK_REG_SET_BLOCKED) &&
        (err = reg->ops->device_set_blocked(reg->be, num_id, spec->blocked != 0)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_METADATA) &&
        (err = reg->ops->metadata_set(reg->be, num_id, spec->metadata, spec->nmetadata)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_LOG_LEVEL) &&
        (err = reg->ops->device_set_log_level(reg->be, num_id, spec->log_level)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_GATEWAY_AUTH) &&
        (err = reg->ops->device_set_gateway_auth(reg->be, num_id, spec->gateway_auth_method)) !=
            LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    lk_reg__creds_free(cur, ncur);
    lk_reg__cas_free(cas);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_DEVICE, num_id, why, why_size);
}

lk_err lk_registry_delete_device(lk_registry *reg, const lk_reg_name *name, const char *id,
                                 char *why, size_t why_size)
{
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    err = lk_reg__enter_device(reg, TX_WRITE, name, id, &rid, &num_id, why, why_size);
    if (err != LK_OK)
        return err;
    /* The tombstone first: it reads the device's path from its row. */
    err = lk_reg__presence_tombstone(reg, num_id, why, why_size);
    if (err == LK_OK && (err = reg->ops->device_delete(reg->be, num_id)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_DEVICE_DELETED, num_id, why, why_size);
}

/* add_credential and delete_credential: enter a write transaction on the
 * device and read its credentials into cur[0..*ncur) (malloc'd pems). On
 * failure the transaction is already left. */
static lk_err enter_creds(lk_registry *reg, const lk_reg_name *name, const char *id,
                          int64_t *rid, uint64_t *num_id, lk_reg_credential *cur,
                          unsigned *ncur, char *why, size_t why_size)
{
    lk_err err = lk_reg__enter_device(reg, TX_WRITE, name, id, rid, num_id, why, why_size);
    if (err != LK_OK)
        return err;
    if ((err = reg->ops->creds_get(reg->be, *num_id, cur, ncur)) != LK_OK)
        return lk_reg__leave(reg, lk_reg__be_fail(reg, err, why, why_size), TX_WRITE, why,
                             why_size);
    return LK_OK;
}

lk_err lk_registry_add_credential(lk_registry *reg, const lk_reg_name *name, const char *id,
                                  const lk_reg_credential *cred, char *why, size_t why_size)
{
    lk_reg_credential cur[LK_DEVICE_CREDENTIALS_MAX + 1];
    unsigned ncur = 0;
    lk_reg_cas *cas = NULL;
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (cred == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no credential given");
    err = enter_creds(reg, name, id, &rid, &num_id, cur, &ncur, why, why_size);
    if (err != LK_OK)
        return err;
    if (ncur >= LK_DEVICE_CREDENTIALS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "device '%s' already has %u credentials; a device has at most %u", id, ncur,
                    LK_DEVICE_CREDENTIALS_MAX);
    if (err == LK_OK)
        err = lk_reg__load_cas(reg, rid, &cas, why, why_size);
    if (err == LK_OK)
        err = lk_reg__cred_check(reg->ck, cas, cred, ncur, lk_reg__now(reg), why, why_size);
    if (err == LK_OK) {
        cur[ncur] = *cred; /* borrowed: not freed below */
        if ((err = reg->ops->creds_set(reg->be, num_id, cur, ncur + 1)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    lk_reg__creds_free(cur, ncur);
    lk_reg__cas_free(cas);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_DEVICE, num_id, why, why_size);
}

lk_err lk_registry_delete_credential(lk_registry *reg, const lk_reg_name *name, const char *id,
                                     unsigned index, char *why, size_t why_size)
{
    lk_reg_credential cur[LK_DEVICE_CREDENTIALS_MAX], rest[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncur = 0, i, n = 0;
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    err = enter_creds(reg, name, id, &rid, &num_id, cur, &ncur, why, why_size);
    if (err != LK_OK)
        return err;
    if (index >= ncur)
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND,
                    "device '%s' has %u credential%s; there is no credential %u (numbered from "
                    "0)", id, ncur, ncur == 1 ? "" : "s", index);
    if (err == LK_OK) {
        for (i = 0; i < ncur; i++)
            if (i != index)
                rest[n++] = cur[i];
        if ((err = reg->ops->creds_set(reg->be, num_id, rest, n)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    lk_reg__creds_free(cur, ncur);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_DEVICE, num_id, why, why_size);
}
