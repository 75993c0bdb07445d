/*
 * presence.c — devices' presence as the broker records it, and the
 * tombstones of deleted devices that had a presence record (lk_registry.h,
 * schema 6). The broker's writes (TX_BROKER): a LK_REG_READONLY handle may
 * make them. The tombstones themselves are written by the device delete
 * (devices.c), in its transaction.
 */
#include <string.h>

#include "facade.h"

/* Longest presence detail (an address, or a reason) stored. */
#define PRESENCE_DETAIL_MAX 1024u

lk_err lk_registry_presence_record(lk_registry *reg, const lk_reg_presence_update *u, size_t n)
{
    size_t i;
    lk_err err;
    if (reg == NULL || (u == NULL && n > 0))
        return LK_ERR_ARG;
    for (i = 0; i < n; i++)
        if ((u[i].presence != LK_PRESENCE_ONLINE && u[i].presence != LK_PRESENCE_OFFLINE) ||
            u[i].time < 0 ||
            (u[i].detail != NULL && strlen(u[i].detail) > PRESENCE_DETAIL_MAX))
            return LK_ERR_ARG;
    if (n == 0)
        return LK_OK;
    if ((err = lk_reg__enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    for (i = 0; i < n && err == LK_OK; i++)
        err = reg->ops->presence_set(reg->be, &u[i]);
    return lk_reg__leave(reg, err, TX_BROKER, NULL, 0);
}

lk_err lk_registry_presence_reset(lk_registry *reg, int64_t t, const char *reason,
                                  int (*cb)(void *arg, const lk_reg_device *d), void *arg,
                                  char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (cb == NULL || t < 0 || (reason != NULL && strlen(reason) > PRESENCE_DETAIL_MAX))
        return failf(why, why_size, LK_ERR_ARG,
                     "presence reset needs a callback, a time >= 0 and a reason of at most %u "
                     "bytes", PRESENCE_DETAIL_MAX);
    if ((err = lk_reg__enter(reg, TX_BROKER, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->presence_reset(reg->be, t, reason)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if ((err = lk_reg__leave(reg, err, TX_BROKER, why, why_size)) != LK_OK)
        return err;
    /* The list in a read transaction of its own: the callback (the broker
     * publishing each record) must not hold the write lock. */
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->presence_list(reg->be, cb, arg)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_presence_tombstones(lk_registry *reg,
                                       int (*cb)(void *arg, const lk_reg_tombstone *t), void *arg,
                                       char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->tombstone_list(reg->be, cb, arg)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_presence_tombstones_done(lk_registry *reg, const uint64_t *num_ids, size_t n,
                                            char *why, size_t why_size)
{
    size_t i;
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (num_ids == NULL && n > 0)
        return failf(why, why_size, LK_ERR_ARG, "%zu num_ids without an array", n);
    if (n == 0)
        return LK_OK;
    if ((err = lk_reg__enter(reg, TX_BROKER, why, why_size)) != LK_OK)
        return err;
    for (i = 0; i < n && err == LK_OK; i++)
        if ((err = reg->ops->tombstone_delete(reg->be, num_ids[i])) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_BROKER, why, why_size);
}

lk_err lk_registry_presence_layout(lk_registry *reg, int *layout, char *why, size_t why_size)
{
    lk_err err;
    if (layout != NULL)
        *layout = 0;
    if (reg == NULL || layout == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry or no layout given");
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->presence_layout_get(reg->be, layout)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_presence_layout_set(lk_registry *reg, int layout, char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL || layout < 0 || layout >= 1000)
        return failf(why, why_size, LK_ERR_ARG, "a layout is 0..999");
    if ((err = lk_reg__enter(reg, TX_BROKER, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->presence_layout_set(reg->be, layout)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_BROKER, why, why_size);
}

lk_err lk_reg__presence_tombstone(lk_registry *reg, uint64_t num_id, char *why, size_t why_size)
{
    int made = 0;
    lk_err err = reg->ops->tombstone_make(reg->be, num_id, lk_reg__now(reg), &made);
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    return made ? lk_reg__append_change(reg, LK_CHANGE_PRESENCE_CLEAR, num_id, why, why_size)
                : LK_OK;
}
