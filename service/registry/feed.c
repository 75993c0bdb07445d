/*
 * feed.c — the broker's calls (lk_registry.h): authentication lookup,
 * activity times, the database check, and the change feed it follows.
 */
#include <string.h>

#include "facade.h"

lk_err lk_registry_auth_lookup(lk_registry *reg, const lk_reg_name *name, const char *id,
                               lk_reg_auth *out)
{
    lk_err err;
    if (out == NULL)
        return LK_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (name == NULL || name->project == NULL || name->location == NULL ||
        name->registry == NULL || id == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* One statement: its own read snapshot, no BEGIN needed. */
    err = reg->ops->auth_lookup(reg->be, name, id, out);
    return err;
}

lk_err lk_registry_bound(lk_registry *reg, uint64_t gateway, uint64_t device, int *bound)
{
    lk_err err;
    if (bound == NULL)
        return LK_ERR_ARG;
    *bound = 0;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    return reg->ops->binding_exists(reg->be, gateway, device, bound);
}

lk_err lk_registry_record_activity(lk_registry *reg, const lk_reg_activity *a, size_t n)
{
    size_t i;
    lk_err err;
    if (reg == NULL || (a == NULL && n > 0))
        return LK_ERR_ARG;
    for (i = 0; i < n; i++)
        if (a[i].last_heartbeat < 0 || a[i].last_event < 0 || a[i].last_state < 0 ||
            a[i].last_config_send < 0 || a[i].last_error < 0 || a[i].last_gateway_time < 0 ||
            a[i].last_key_time < 0 || (a[i].last_key != NULL && a[i].last_key_time == 0) ||
            (a[i].last_gateway_time != 0 &&
             (a[i].last_gateway_id == NULL ||
              !lk_id_valid(a[i].last_gateway_id, strnlen(a[i].last_gateway_id, LK_ID_MAX + 1)))))
            return LK_ERR_ARG;
    if (n == 0)
        return LK_OK;
    if ((err = lk_reg__enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    for (i = 0; i < n && err == LK_OK; i++)
        err = reg->ops->activity(reg->be, &a[i]);
    return lk_reg__leave(reg, err, TX_BROKER, NULL, 0);
}

lk_err lk_registry_poll(lk_registry *reg, int *changed)
{
    uint64_t dv;
    lk_err err;
    if (changed != NULL)
        *changed = 0;
    if (changed == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    if ((err = reg->ops->data_version(reg->be, &dv)) != LK_OK)
        return err;
    *changed = dv != reg->poll_dv || reg->own_commits != reg->poll_own;
    reg->poll_dv = dv;
    reg->poll_own = reg->own_commits;
    return LK_OK;
}

struct feed_ctx {
    int64_t *since;
    int (*cb)(void *arg, const lk_reg_change *c);
    void *arg;
    int stopped;
};

/* *since moves only past a change the caller took: a refusal (e.g. out of
 * memory) must not lose it, so the next call starts with it again. */
static int feed_cb(void *arg, const lk_reg_change *c)
{
    struct feed_ctx *ctx = arg;
    if (ctx->cb(ctx->arg, c)) {
        ctx->stopped = 1;
        return 1;
    }
    *ctx->since = c->seq;
    return 0;
}

lk_err lk_registry_changes(lk_registry *reg, int64_t *since,
                           int (*cb)(void *arg, const lk_reg_change *c), void *arg)
{
    struct feed_ctx ctx = {since, cb, arg, 0};
    int64_t oldest = 0, newest = 0;
    uint64_t dv;
    lk_err err;

    if (since == NULL || cb == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    if ((err = reg->ops->data_version(reg->be, &dv)) != LK_OK)
        return err;
    /* Nothing committed anywhere since the last look, and the caller has
     * seen everything up to then: answer without reading the feed. */
    if (reg->feed_valid && dv == reg->feed_dv && reg->own_commits == reg->feed_own &&
        *since == reg->feed_head)
        return LK_OK;
    if ((err = lk_reg__enter(reg, TX_READ, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->change_bounds(reg->be, &oldest, &newest);
    if (err == LK_OK) {
        if (*since > newest || (oldest > 0 && *since < oldest - 1)) {
            /* Changes the caller has not seen were pruned (or the database
             * was replaced): it must reload everything. */
            lk_reg_change c = {newest, LK_CHANGE_RESYNC, 0};
            if (cb(arg, &c))
                ctx.stopped = 1; /* not taken: the next call says it again */
            else
                *since = newest;
        } else if (*since < newest) {
            err = reg->ops->change_list(reg->be, *since, feed_cb, &ctx);
        }
    }
    err = lk_reg__leave(reg, err, TX_READ, NULL, 0);
    if (err == LK_OK && !ctx.stopped && *since == newest) {
        reg->feed_valid = 1;
        reg->feed_dv = dv;
        reg->feed_own = reg->own_commits;
        reg->feed_head = newest;
    } else {
        reg->feed_valid = 0;
    }
    return err;
}

lk_err lk_registry_check(lk_registry *reg, char *why, size_t why_size)
{
    lk_err err;
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->check(reg->be);
    if (err != LK_OK)
        (void)lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_change_head(lk_registry *reg, int64_t *seq)
{
    int64_t oldest = 0;
    lk_err err;
    if (seq == NULL)
        return LK_ERR_ARG;
    *seq = 0;
    if ((err = lk_reg__enter(reg, TX_READ, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->change_bounds(reg->be, &oldest, seq);
    return lk_reg__leave(reg, err, TX_READ, NULL, 0);
}
