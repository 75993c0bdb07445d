/*
 * configs.c — a device's configs and states (lk_registry.h): versioned
 * config updates (version_to_update), the latest config the broker
 * pushes, the states it records.
 */
#include <stdlib.h>
#include <string.h>

#include "facade.h"

/* A malloc'd, NUL-terminated copy of data[0..len), or NULL. */
static uint8_t *data_dup(const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    if (len > 0)
        memcpy(copy, data, len);
    copy[len] = 0;
    return copy;
}

/* *out = c with a copy of its data (data_dup). */
static lk_err config_copy(lk_reg_config *out, const lk_reg_config *c)
{
    *out = *c;
    out->data = data_dup(c->data, c->len);
    if (out->data == NULL) {
        memset(out, 0, sizeof *out);
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

lk_err lk_registry_update_config(lk_registry *reg, const lk_reg_name *name, const char *id,
                                 const uint8_t *data, size_t len, int64_t version_to_update,
                                 lk_reg_config *out, char *why, size_t why_size)
{
    lk_reg_config cfg;
    uint64_t num_id;
    int64_t rid, cur = 0;
    uint8_t *copy = NULL;
    lk_err err;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_device_id(id, why, why_size)) != LK_OK ||
        (err = lk_reg__check_config_size(data, len, why, why_size)) != LK_OK)
        return err;
    if (version_to_update < 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "version_to_update %lld is invalid: use 0 (replace unconditionally) or "
                     "the current version", (long long)version_to_update);
    /* out's copy is made before anything is written: running out of memory
     * for it must refuse the change, not follow a commit. */
    if (out != NULL && (copy = data_dup(data, len)) == NULL)
        return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK) {
        free(copy);
        return err;
    }
    err = lk_reg__find_both(reg, name, id, &rid, &num_id, &cur, why, why_size);
    if (err == LK_OK && version_to_update != 0 && version_to_update != cur)
        err = failf(why, why_size, LK_ERR_REG_CONFLICT,
                    "version conflict: the current version is %lld, not %lld", (long long)cur,
                    (long long)version_to_update);
    memset(&cfg, 0, sizeof cfg);
    if (err == LK_OK) {
        cfg.version = cur + 1;
        cfg.cloud_update_time = lk_reg__now(reg);
        cfg.data = (uint8_t *)data;
        cfg.len = len;
        err = reg->ops->config_add(reg->be, num_id, &cfg, LK_CONFIG_VERSIONS_KEPT);
        if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    err = lk_reg__leave_changed(reg, err, LK_CHANGE_CONFIG, num_id, why, why_size);
    if (err == LK_OK && out != NULL) {
        *out = cfg;
        out->data = copy;
        copy = NULL;
    }
    free(copy);
    return err;
}

/* list_configs and list_states: the device's rows to whichever callback is
 * given, newest first. */
static lk_err list_rows(lk_registry *reg, const lk_reg_name *name, const char *id, unsigned max,
                        int (*ccb)(void *arg, const lk_reg_config *c),
                        int (*scb)(void *arg, const lk_reg_state_entry *s), void *arg, char *why,
                        size_t why_size)
{
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (ccb == NULL && scb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    err = lk_reg__enter_device(reg, TX_READ, name, id, &rid, &num_id, why, why_size);
    if (err != LK_OK)
        return err;
    err = ccb != NULL ? reg->ops->config_list(reg->be, num_id, max, ccb, arg)
                      : reg->ops->state_list(reg->be, num_id, max, scb, arg);
    if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_list_configs(lk_registry *reg, const lk_reg_name *name, const char *id,
                                unsigned max, int (*cb)(void *arg, const lk_reg_config *c),
                                void *arg, char *why, size_t why_size)
{
    return list_rows(reg, name, id, max, cb, NULL, arg, why, why_size);
}

int lk_reg__latest_cb(void *arg, const lk_reg_config *c)
{
    struct lk_reg__latest *l = arg;
    l->err = config_copy(l->out, c);
    return 1; /* the newest only */
}

lk_err lk_registry_latest_config(lk_registry *reg, uint64_t num_id, lk_reg_config *out)
{
    struct lk_reg__latest l = {out, LK_ERR_REG_NOT_FOUND}; /* every device has a config */
    lk_err err;

    if (out == NULL)
        return LK_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (num_id == 0)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* One statement: its own read snapshot, no BEGIN needed. */
    err = reg->ops->config_list(reg->be, num_id, 1, lk_reg__latest_cb, &l);
    if (err == LK_OK)
        err = l.err;
    if (err != LK_OK)
        lk_reg_config_free(out);
    return err;
}

lk_err lk_registry_add_state(lk_registry *reg, uint64_t num_id, const uint8_t *data, size_t len,
                             int64_t t)
{
    lk_reg_state_entry e;
    lk_err err;
    if (reg == NULL || num_id == 0 || (data == NULL && len > 0) || t < 0)
        return LK_ERR_ARG;
    if (len > LK_STATE_MAX)
        return LK_ERR_REG_LIMIT;
    if ((err = lk_reg__enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    e.update_time = t;
    e.data = (uint8_t *)data;
    e.len = len;
    err = reg->ops->state_add(reg->be, num_id, &e, LK_STATES_KEPT);
    return lk_reg__leave(reg, err, TX_BROKER, NULL, 0);
}

lk_err lk_registry_list_states(lk_registry *reg, const lk_reg_name *name, const char *id,
                               unsigned max, int (*cb)(void *arg, const lk_reg_state_entry *s),
                               void *arg, char *why, size_t why_size)
{
    return list_rows(reg, name, id, max, NULL, cb, arg, why, why_size);
}
