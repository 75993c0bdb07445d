/*
 * query.c — devices a page at a time (lk_registry_query_devices, for
 * latchkeyd's devices.list), and finding a device by id or decimal numId
 * (also for the gateway bindings, bindings.c).
 *
 * Pages are keyset pages: the caller passes the last id it was given
 * (after_id) and the backend seeks the (registry, device id) index there, so
 * page 1000 costs what page 1 does, and devices created or deleted between
 * pages neither repeat nor hide the others (an offset would do both).
 */
#include <string.h>

#include "facade.h"

/* ref as a numId: all digits, at most 20 of them, no overflow. 0 when it is
 * not (0 is no device's numId). */
static uint64_t decimal_num_id(const char *ref)
{
    uint64_t v = 0;
    size_t i;
    if (ref[0] == '\0')
        return 0;
    for (i = 0; ref[i] != '\0'; i++) {
        unsigned dgt;
        if (ref[i] < '0' || ref[i] > '9')
            return 0;
        dgt = (unsigned)(ref[i] - '0');
        if (v > (UINT64_MAX - dgt) / 10)
            return 0;
        v = v * 10 + dgt;
    }
    return v;
}

lk_err lk_reg__find_ref(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                        const char *what, const char *ref, uint64_t *num_id,
                        lk_reg_gateway_type *type, char *why, size_t why_size)
{
    char p[400], b[80];
    int digits = ref[0] >= '0' && ref[0] <= '9';
    uint64_t n = digits ? decimal_num_id(ref) : 0;
    lk_err err;

    /* An id starts with a letter: one that starts with a digit is a numId
     * (or nothing), and an invalid id is no device's. */
    if (digits ? n == 0 : !lk_id_valid(ref, strlen(ref)))
        err = LK_ERR_REG_NOT_FOUND;
    else
        err = reg->ops->device_ref(reg->be, rid, digits ? NULL : ref, n, num_id, type);
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "%s '%s' does not exist in %s (give a device id or a "
                     "numId in decimal)", what, lk_reg__shown(ref, b, sizeof b),
                     lk_reg__path(name, p, sizeof p));
    return err != LK_OK ? lk_reg__be_fail(reg, err, why, why_size) : LK_OK;
}

struct query_ctx {
    lk_registry *reg;
    const lk_reg_name *name;
    int full;
    unsigned limit, given;
    int more;
    int (*cb)(void *arg, const lk_reg_device *d);
    void *arg;
    lk_err err;
};

static int query_cb(void *arg, const lk_reg_device *d)
{
    struct query_ctx *ctx = arg;
    lk_reg_device v;
    int stop;

    if (ctx->given == ctx->limit) { /* the one asked for past the page */
        ctx->more = 1;
        return 1;
    }
    ctx->given++;
    if (!ctx->full) {
        v = *d; /* borrowed strings: nothing to free */
        v.project = (char *)ctx->name->project;
        v.location = (char *)ctx->name->location;
        v.registry = (char *)ctx->name->registry;
        return ctx->cb(ctx->arg, &v);
    }
    ctx->err = ctx->reg->ops->device_get(ctx->reg->be, d->num_id, &v);
    if (ctx->err != LK_OK)
        return 1;
    stop = ctx->cb(ctx->arg, &v);
    lk_reg_device_free(&v);
    return stop;
}

static lk_err check_query(const lk_reg_device_query *q, char *why, size_t why_size)
{
    size_t i;
    lk_err err;
    if (q->nids > LK_REG_QUERY_MAX || q->nnum_ids > LK_REG_QUERY_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "%zu device ids and %zu numIds given; a query takes at most %u of each",
                     q->nids, q->nnum_ids, LK_REG_QUERY_MAX);
    if ((q->nids > 0 && q->ids == NULL) || (q->nnum_ids > 0 && q->num_ids == NULL))
        return failf(why, why_size, LK_ERR_ARG, "an id count without its ids");
    for (i = 0; i < q->nids; i++)
        if (q->ids[i] == NULL)
            return failf(why, why_size, LK_ERR_ARG, "device id %zu of the filter is NULL", i);
    if (q->limit == 0 || q->limit > LK_REG_QUERY_MAX)
        return failf(why, why_size, LK_ERR_ARG, "page size %u is out of range: 1 to %u",
                     q->limit, LK_REG_QUERY_MAX);
    if ((err = lk_reg__check_gateway_type(q->gateway_type, why, why_size)) != LK_OK)
        return err;
    if (q->associations_gateway_id != NULL && q->associations_device_id != NULL)
        return failf(why, why_size, LK_ERR_ARG,
                     "give at most one of associationsGatewayId and associationsDeviceId");
    return LK_OK;
}

lk_err lk_registry_query_devices(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_query *q,
                                 int (*cb)(void *arg, const lk_reg_device *d), void *arg,
                                 int *more, char *why, size_t why_size)
{
    struct query_ctx ctx;
    uint64_t gw = 0, dev = 0;
    lk_reg_gateway_type type;
    int64_t rid;
    lk_err err;

    if (more != NULL)
        *more = 0;
    if (q == NULL || cb == NULL || more == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no query, callback or more flag given");
    if ((err = check_query(q, why, why_size)) != LK_OK ||
        (err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if (q->associations_gateway_id != NULL)
        err = lk_reg__find_ref(reg, name, rid, "gateway", q->associations_gateway_id, &gw, &type,
                               why, why_size);
    else if (q->associations_device_id != NULL)
        err = lk_reg__find_ref(reg, name, rid, "device", q->associations_device_id, &dev, &type,
                               why, why_size);
    memset(&ctx, 0, sizeof ctx);
    ctx.reg = reg;
    ctx.name = name;
    ctx.full = q->full != 0;
    ctx.limit = q->limit;
    ctx.cb = cb;
    ctx.arg = arg;
    /* One more than the page: whether there is a next page, without a
     * second query. */
    if (err == LK_OK &&
        (err = reg->ops->device_query(reg->be, rid, q, gw, dev, q->limit + 1, query_cb, &ctx)) !=
            LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && ctx.err != LK_OK)
        err = lk_reg__be_fail(reg, ctx.err, why, why_size);
    err = lk_reg__leave(reg, err, TX_READ, why, why_size);
    if (err == LK_OK)
        *more = ctx.more;
    return err;
}
