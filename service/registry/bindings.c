/*
 * bindings.c — gateway bindings (lk_registry_bind, lk_registry_unbind: IoT
 * Core's bindDeviceToGateway and unbindDeviceFromGateway). The rules are
 * IoT Core's: both devices of the registry, the gateway a GATEWAY, the
 * device not one, 10 gateways per device and 10,000 devices per gateway.
 * Each change appends LK_CHANGE_DEVICE for the device, so a broker that
 * acts on bindings later reloads it.
 */
#include <stdio.h>
#include <string.h>

#include "facade.h"

/* Enter a write transaction and find the registry, the gateway and the
 * device in it. On failure the transaction is already left. */
static lk_err enter_pair(lk_registry *reg, const lk_reg_name *name, const char *gateway,
                         const char *device, uint64_t *gw, lk_reg_gateway_type *gw_type,
                         uint64_t *dev, lk_reg_gateway_type *dev_type, char *why,
                         size_t why_size)
{
    int64_t rid;
    lk_err err;
    if (gateway == NULL || device == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a gateway and a device are required");
    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__find_ref(reg, name, rid, "gateway", gateway, gw, gw_type, why, why_size);
    if (err == LK_OK)
        err = lk_reg__find_ref(reg, name, rid, "device", device, dev, dev_type, why, why_size);
    return err != LK_OK ? lk_reg__leave(reg, err, TX_WRITE, why, why_size) : LK_OK;
}

/* IoT Core's rules for one binding, inside the caller's write transaction
 * (the pair already found): the types, already bound (nothing written,
 * *wrote 0), the limits, then the row. */
static lk_err bind_found(lk_registry *reg, const char *gateway, const char *device, uint64_t gw,
                         lk_reg_gateway_type gt, uint64_t dev, lk_reg_gateway_type dt, int *wrote,
                         char *why, size_t why_size)
{
    uint64_t ndev = 0, ngw = 0;
    int bound = 0;
    char b[80], c[80];
    lk_err err = LK_OK;

    *wrote = 0;
    if (gt != LK_GATEWAY_TYPE_GATEWAY)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "'%s' is not a gateway (its gateway type is not GATEWAY); only a gateway "
                     "can have devices bound to it", lk_reg__shown(gateway, b, sizeof b));
    if (dt == LK_GATEWAY_TYPE_GATEWAY)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "'%s' is a gateway; a gateway cannot be bound to another gateway",
                     lk_reg__shown(device, b, sizeof b));
    if ((err = reg->ops->binding_exists(reg->be, gw, dev, &bound)) != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    if (bound) /* already bound: nothing to write */
        return LK_OK;
    if ((err = reg->ops->binding_counts(reg->be, gw, dev, &ndev, &ngw)) != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    if (ngw >= LK_GATEWAYS_PER_DEVICE_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "device '%s' is already bound to %llu gateways; a device can be bound to at "
                     "most %u", lk_reg__shown(device, b, sizeof b), (unsigned long long)ngw,
                     LK_GATEWAYS_PER_DEVICE_MAX);
    if (ndev >= LK_DEVICES_PER_GATEWAY_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "gateway '%s' already has %llu devices bound; a gateway can have at most %u",
                     lk_reg__shown(gateway, c, sizeof c), (unsigned long long)ndev,
                     LK_DEVICES_PER_GATEWAY_MAX);
    if ((err = reg->ops->binding_insert(reg->be, gw, dev, lk_reg__now(reg))) != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    *wrote = 1;
    return LK_OK;
}

lk_err lk_registry_bind(lk_registry *reg, const lk_reg_name *name, const char *gateway,
                        const char *device, char *why, size_t why_size)
{
    lk_reg_gateway_type gt, dt;
    uint64_t gw, dev;
    int wrote = 0;
    lk_err err;

    err = enter_pair(reg, name, gateway, device, &gw, &gt, &dev, &dt, why, why_size);
    if (err != LK_OK)
        return err;
    err = bind_found(reg, gateway, device, gw, gt, dev, dt, &wrote, why, why_size);
    if (err == LK_OK && !wrote)
        return lk_reg__leave(reg, LK_OK, TX_WRITE, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_DEVICE, dev, why, why_size);
}

/* One binding of an open devices import (import.c runs it under its
 * savepoint): the pair found in the import's registry, devices this import
 * added included. */
lk_err lk_reg__import_bind_item(lk_registry *reg, void *arg, char *why, size_t why_size)
{
    const struct lk_reg__bind_item *it = arg;
    char path[sizeof reg->import_name], *parts[6] = {0}, *save = NULL, *t;
    lk_reg_gateway_type gt, dt;
    uint64_t gw, dev;
    int wrote = 0, i = 0;
    lk_err err;

    /* The name only words the refusals: "projects/P/locations/L/registries/R". */
    snprintf(path, sizeof path, "%s", reg->import_name);
    for (t = strtok_r(path, "/", &save); t != NULL && i < 6; t = strtok_r(NULL, "/", &save))
        parts[i++] = t;
    lk_reg_name name = {parts[1] ? parts[1] : "", parts[3] ? parts[3] : "", parts[5] ? parts[5] : ""};
    if ((err = lk_reg__find_ref(reg, &name, reg->import_rid, "gateway", it->gateway, &gw, &gt, why,
                                why_size)) != LK_OK ||
        (err = lk_reg__find_ref(reg, &name, reg->import_rid, "device", it->device, &dev, &dt, why,
                                why_size)) != LK_OK ||
        (err = bind_found(reg, it->gateway, it->device, gw, gt, dev, dt, &wrote, why, why_size)) != LK_OK)
        return err;
    return wrote ? lk_reg__append_change(reg, LK_CHANGE_DEVICE, dev, why, why_size) : LK_OK;
}

lk_err lk_registry_unbind(lk_registry *reg, const lk_reg_name *name, const char *gateway,
                          const char *device, char *why, size_t why_size)
{
    lk_reg_gateway_type gt, dt;
    uint64_t gw, dev;
    char b[80], c[80];
    lk_err err;

    err = enter_pair(reg, name, gateway, device, &gw, &gt, &dev, &dt, why, why_size);
    if (err != LK_OK)
        return err;
    err = reg->ops->binding_delete(reg->be, gw, dev);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = failf(why, why_size, err, "device '%s' is not bound to gateway '%s'",
                    lk_reg__shown(device, b, sizeof b), lk_reg__shown(gateway, c, sizeof c));
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_DEVICE, dev, why, why_size);
}
