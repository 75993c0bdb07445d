/*
 * import.c — bulk import (lk_registry.h): one write transaction for the
 * whole import, one savepoint per item, so that a refused device or
 * registry leaves the rest intact.
 */
#include "facade.h"

lk_err lk_registry_import_begin(lk_registry *reg, const lk_reg_name *name, char *why,
                                size_t why_size)
{
    int64_t rid;
    lk_err err;

    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__load_cas(reg, rid, &reg->import_cas, why, why_size);
    if (err != LK_OK)
        return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
    lk_reg__path(name, reg->import_name, sizeof reg->import_name);
    reg->import_rid = rid;
    reg->importing = IMPORT_DEVICES;
    reg->busy = 0;
    return LK_OK;
}

lk_err lk_registry_import_registries_begin(lk_registry *reg, char *why, size_t why_size)
{
    lk_err err = lk_reg__enter(reg, TX_WRITE, why, why_size);
    if (err != LK_OK)
        return err;
    reg->import_name[0] = '\0';
    reg->import_rid = 0;
    reg->importing = IMPORT_REGISTRIES;
    reg->busy = 0;
    return LK_OK;
}

/* Run one item of an open import under a savepoint: add(reg, arg) inside,
 * released when it succeeds, undone when it fails. A database that ended
 * the transaction ends the import (see import_add). */
static lk_err import_item(lk_registry *reg, lk_err (*add)(lk_registry *reg, void *arg, char *why,
                                                          size_t why_size),
                          void *arg, char *why, size_t why_size)
{
    lk_err err = reg->ops->savepoint(reg->be);
    if (err != LK_OK) {
        err = lk_reg__be_fail(reg, err, why, why_size);
    } else {
        err = add(reg, arg, why, why_size);
        if (err == LK_OK && (err = reg->ops->release(reg->be)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
        if (err != LK_OK && reg->ops->in_transaction(reg->be))
            (void)reg->ops->rollback_to(reg->be);
    }
    /* A refused item leaves the import going; a database that ended the
     * transaction (full disk, I/O error) ends the import: everything added
     * so far is gone, and later adds must not run outside a transaction. */
    if (err != LK_OK && !reg->ops->in_transaction(reg->be))
        reg->import_failed = err;
    return err;
}

/* The state checks of import_add and import_add_registry. */
static lk_err import_ready(lk_registry *reg, int kind, char *why, size_t why_size)
{
    if (reg == NULL)
        return LK_ERR_ARG;
    if (reg->importing == 0 || reg->busy)
        return failf(why, why_size, LK_ERR_STATE, "no import in progress (call import_begin)");
    if (reg->importing != kind)
        return failf(why, why_size, LK_ERR_STATE, "this import adds %s, not %s",
                     reg->importing == IMPORT_DEVICES ? "devices" : "registries",
                     kind == IMPORT_DEVICES ? "devices" : "registries");
    if (reg->import_failed != LK_OK)
        return failf(why, why_size, reg->import_failed,
                     "the import was rolled back after a database failure; nothing of it will "
                     "be written (abort it and start again)");
    return LK_OK;
}

struct reg_item {
    const lk_reg_name *name;
    const lk_reg_registry_spec *spec;
};

static lk_err add_registry_item(lk_registry *reg, void *arg, char *why, size_t why_size)
{
    struct reg_item *it = arg;
    return lk_reg__insert_registry(reg, it->name, it->spec, why, why_size);
}

lk_err lk_registry_import_add_registry(lk_registry *reg, const lk_reg_name *name,
                                       const lk_reg_registry_spec *spec, char *why,
                                       size_t why_size)
{
    struct reg_item it = {name, spec};
    lk_err err;
    /* An existing registry first, whatever the spec holds (a caller may
     * skip it): a read inside the import's transaction. */
    if ((err = import_ready(reg, IMPORT_REGISTRIES, why, why_size)) != LK_OK ||
        (err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__registry_absent(reg, name, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__check_registry_spec(reg, name, spec, why, why_size)) != LK_OK)
        return err;
    return import_item(reg, add_registry_item, &it, why, why_size);
}

struct dev_item {
    const lk_reg_device_spec *spec;
    uint64_t num_id;
};

static lk_err add_device_item(lk_registry *reg, void *arg, char *why, size_t why_size)
{
    struct dev_item *it = arg;
    return lk_reg__insert_device(reg, NULL, reg->import_rid, reg->import_cas, it->spec, 0,
                                 &it->num_id, why, why_size);
}

lk_err lk_registry_import_add(lk_registry *reg, const lk_reg_device_spec *spec, uint64_t *num_id,
                              char *why, size_t why_size)
{
    struct dev_item it = {spec, 0};
    lk_err err;

    if (num_id != NULL)
        *num_id = 0;
    if ((err = import_ready(reg, IMPORT_DEVICES, why, why_size)) != LK_OK)
        return err;
    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no device given");
    /* An existing id first, whatever else the spec holds (a caller may skip
     * it): a read inside the import's transaction. */
    if ((err = lk_reg__check_device_id(spec->id, why, why_size)) != LK_OK ||
        (err = lk_reg__device_absent(reg, NULL, reg->import_rid, spec->id, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__check_create_spec(spec, why, why_size)) != LK_OK)
        return err;
    err = import_item(reg, add_device_item, &it, why, why_size);
    if (err == LK_OK && num_id != NULL)
        *num_id = it.num_id;
    return err;
}

lk_err lk_registry_import_bind(lk_registry *reg, const char *gateway, const char *device, char *why,
                               size_t why_size)
{
    struct lk_reg__bind_item it = {gateway, device};
    lk_err err;
    if ((err = import_ready(reg, IMPORT_DEVICES, why, why_size)) != LK_OK)
        return err;
    if (gateway == NULL || device == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a gateway and a device are required");
    return import_item(reg, lk_reg__import_bind_item, &it, why, why_size);
}

lk_err lk_registry_import_commit(lk_registry *reg, char *why, size_t why_size)
{
    lk_err failed;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (!reg->importing || reg->busy)
        return failf(why, why_size, LK_ERR_STATE, "no import in progress (call import_begin)");
    failed = reg->import_failed;
    lk_reg__import_end(reg);
    if (failed != LK_OK) {
        reg->ops->rollback(reg->be);
        return failf(why, why_size, failed, "the import was rolled back after a database "
                                            "failure; nothing of it was written");
    }
    reg->busy = 1; /* lk_reg__leave() expects lk_reg__enter()'s state */
    return lk_reg__leave(reg, LK_OK, TX_WRITE, why, why_size);
}

void lk_registry_import_abort(lk_registry *reg)
{
    if (reg == NULL || !reg->importing)
        return;
    reg->ops->rollback(reg->be);
    lk_reg__import_end(reg);
}
