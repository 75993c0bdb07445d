/*
 * import.c — bulk import (lk_registry.h): one write transaction for the
 * whole import, one savepoint per item, so that a refused device or
 * registry leaves the rest intact.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

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
    /* import_check's verdicts hold if they were reached against the trust
     * set this transaction sees. */
    reg->import_checked = 0;
    if (reg->checked != NULL && reg->checked->rid == rid) {
        char stamp[LK_REG_STAMP_MAX];
        if ((err = reg->ops->trust_stamp(reg->be, rid, stamp, sizeof stamp)) != LK_OK)
            return lk_reg__leave(reg, lk_reg__be_fail(reg, err, why, why_size), TX_WRITE, why,
                                 why_size);
        reg->import_checked = strcmp(stamp, reg->checked->stamp) == 0;
    }
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

/* Devices a staged import writes in one transaction before it lets the
 * broker's writes in. */
#define LK_REG_STAGE_CHUNK 500u
/* A staging registry that has had no device added for this long (a live
 * import adds LK_REG_STAGE_CHUNK in well under a second) is taken as left
 * by a process that died, and removed by the next staged import of its
 * registry (docs/registry.md). */
#define LK_REG_STAGE_STALE_S 600
#define LK_REG_STAGE_SWEEP 16u

struct dev_item {
    const lk_reg_device_spec *spec;
    uint64_t num_id;
    int checked;
};

static lk_err add_device_item(lk_registry *reg, void *arg, char *why, size_t why_size)
{
    struct dev_item *it = arg;
    return lk_reg__insert_device(reg, NULL, reg->staged ? reg->stage_rid : reg->import_rid,
                                 reg->import_cas, it->spec, it->checked, &it->num_id, why,
                                 why_size);
}

lk_err lk_registry_import_check(lk_registry *reg, const lk_reg_name *name,
                                const lk_reg_device_spec *spec, char *why, size_t why_size)
{
    char stamp[LK_REG_STAMP_MAX];
    lk_reg_cas *cas = NULL;
    uint8_t d[32];
    int64_t rid;
    lk_err err;

    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no device given");
    if ((err = lk_reg__check_device_id(spec->id, why, why_size)) != LK_OK ||
        (err = lk_reg__check_create_spec(spec, why, why_size)) != LK_OK)
        return err;
    /* A read snapshot for the trust set alone: parsed again only when it
     * changed since the last call. */
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->trust_stamp(reg->be, rid, stamp, sizeof stamp)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (reg->checked == NULL || reg->checked->rid != rid ||
                         strcmp(reg->checked->stamp, stamp) != 0)) {
        if (reg->checked == NULL && (reg->checked = lk_reg__checked_new()) == NULL)
            err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        if (err == LK_OK)
            err = lk_reg__load_cas(reg, rid, &cas, why, why_size);
        if (err == LK_OK)
            lk_reg__checked_reset(reg->checked, rid, stamp, cas);
    }
    if ((err = lk_reg__leave(reg, err, TX_READ, why, why_size)) != LK_OK)
        return err;
    /* The costly part, with no transaction open. */
    if ((err = lk_reg__check_spec_creds(reg, reg->checked->cas, spec, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__spec_digest(reg->checked, spec, d)) != LK_OK ||
        (err = lk_reg__checked_add(reg->checked, d)) != LK_OK)
        return failf(why, why_size, err, "the check could not be remembered: %s",
                     lk_strerror(err));
    return LK_OK;
}

lk_err lk_registry_import_add(lk_registry *reg, const lk_reg_device_spec *spec, uint64_t *num_id,
                              char *why, size_t why_size)
{
    struct dev_item it = {spec, 0, 0};
    uint8_t d[32];
    lk_err err;

    if (num_id != NULL)
        *num_id = 0;
    if ((err = import_ready(reg, IMPORT_DEVICES, why, why_size)) != LK_OK)
        return err;
    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no device given");
    if (reg->staged && !reg->stage_open) {
        if ((err = reg->ops->begin(reg->be, 1)) != LK_OK)
            return lk_reg__be_fail(reg, err, why, why_size);
        reg->stage_open = 1;
    }
    /* An existing id first, whatever else the spec holds (a caller may skip
     * it): a read inside the import's transaction. */
    if ((err = lk_reg__check_device_id(spec->id, why, why_size)) != LK_OK)
        return err;
    it.checked = reg->import_checked && lk_reg__spec_digest(reg->checked, spec, d) == LK_OK &&
                 lk_reg__checked_has(reg->checked, d);
    /* A checked spec can fail only on its id, which the insert's UNIQUE
     * constraint reports with the same reason: no read first. */
    if ((!it.checked || reg->staged) &&
        (err = lk_reg__device_absent(reg, NULL, reg->import_rid, spec->id, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__check_create_spec(spec, why, why_size)) != LK_OK)
        return err;
    if (it.checked) {
        /* No savepoint: a checked device is refused only when its id is
         * taken, by its first write (a failed statement leaves nothing);
         * anything else is the database failing, which ends the import
         * as a failure that ends its transaction would. */
        err = add_device_item(reg, &it, why, why_size);
        if (err != LK_OK && (err != LK_ERR_REG_EXISTS || it.num_id != 0)) {
            if (reg->ops->in_transaction(reg->be))
                reg->ops->rollback(reg->be);
            reg->import_failed = err;
        }
    } else {
        err = import_item(reg, add_device_item, &it, why, why_size);
    }
    if (err == LK_OK && num_id != NULL)
        *num_id = it.num_id;
    /* A staged import lets the broker in between its chunks. */
    if (reg->staged && reg->stage_open && reg->import_failed == LK_OK &&
        (err == LK_OK || err == LK_ERR_REG_EXISTS) && ++reg->stage_n % LK_REG_STAGE_CHUNK == 0) {
        lk_err e2 = reg->ops->commit(reg->be);
        reg->stage_open = 0;
        if (e2 != LK_OK) {
            reg->ops->rollback(reg->be);
            reg->import_failed = e2;
            return lk_reg__be_fail(reg, e2, why, why_size);
        }
    }
    return err;
}

lk_err lk_registry_import_bind(lk_registry *reg, const char *gateway, const char *device, char *why,
                               size_t why_size)
{
    struct lk_reg__bind_item it = {gateway, device};
    lk_err err;
    if ((err = import_ready(reg, IMPORT_DEVICES, why, why_size)) != LK_OK)
        return err;
    if (reg->staged)
        return failf(why, why_size, LK_ERR_STATE, "a staged import adds devices only, not bindings");
    if (gateway == NULL || device == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a gateway and a device are required");
    return import_item(reg, lk_reg__import_bind_item, &it, why, why_size);
}

/* Remove a staged import's hidden registry and what it holds (best effort:
 * one that stays is invisible, see docs/registry.md). */
static void stage_drop(lk_registry *reg, int64_t srid)
{
    if (reg->ops->begin(reg->be, 1) != LK_OK)
        return;
    if (reg->ops->registry_delete(reg->be, srid) != LK_OK || reg->ops->commit(reg->be) != LK_OK)
        reg->ops->rollback(reg->be);
}

lk_err lk_registry_import_begin_staged(lk_registry *reg, const lk_reg_name *name, char *why,
                                       size_t why_size)
{
    lk_reg_registry st;
    unsigned char nonce[8];
    char sid[64];
    int64_t rid, srid = 0;
    lk_err err;

    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    /* An id no valid registry id can equal ('~'), so no name reaches it,
     * and listings skip it. */
    if (RAND_bytes(nonce, sizeof nonce) != 1)
        err = failf(why, why_size, LK_ERR_CRYPTO, "no random bytes for the staging registry");
    snprintf(sid, sizeof sid, "~import-%lld-%02x%02x%02x%02x%02x%02x%02x%02x", (long long)rid,
             nonce[0], nonce[1], nonce[2], nonce[3], nonce[4], nonce[5], nonce[6], nonce[7]);
    memset(&st, 0, sizeof st);
    st.project = (char *)name->project;
    st.location = (char *)name->location;
    st.id = sid;
    st.mqtt = st.http = LK_REG_STATE_DISABLED;
    st.created = lk_reg__now(reg);
    if (err == LK_OK) {
        /* Leftovers of crashed staged imports of this registry: invisible,
         * but their rows take room. Removed in this transaction. */
        int64_t stale[LK_REG_STAGE_SWEEP];
        size_t nstale = 0;
        err = reg->ops->stage_stale(reg->be, rid, st.created - LK_REG_STAGE_STALE_S, stale,
                                    LK_REG_STAGE_SWEEP, &nstale);
        for (size_t i = 0; err == LK_OK && i < nstale; i++)
            err = reg->ops->registry_delete(reg->be, stale[i]);
        if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK && (err = reg->ops->registry_insert(reg->be, &st, &srid)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (err = reg->ops->trust_stamp(reg->be, rid, reg->stage_stamp,
                                                     sizeof reg->stage_stamp)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = lk_reg__load_cas(reg, rid, &reg->import_cas, why, why_size);
    /* The hidden staging registry is bookkeeping: the switch (stage_commit)
     * is the change the audit record shows (a dry run then shows none). */
    reg->audit_skip = 1;
    if ((err = lk_reg__leave(reg, err, TX_WRITE, why, why_size)) != LK_OK) {
        lk_reg__cas_free(reg->import_cas);
        reg->import_cas = NULL;
        return err;
    }
    reg->import_checked = reg->checked != NULL && reg->checked->rid == rid &&
                          strcmp(reg->checked->stamp, reg->stage_stamp) == 0;
    lk_reg__path(name, reg->import_name, sizeof reg->import_name);
    reg->import_rid = rid;
    reg->importing = IMPORT_DEVICES;
    reg->staged = 1;
    reg->stage_open = 0;
    reg->stage_rid = srid;
    reg->stage_n = 0;
    return LK_OK;
}

/* The switch: every staged device into the registry in one short
 * transaction, if the registry and its trust set are as they were. */
static lk_err stage_commit(lk_registry *reg, char *why, size_t why_size)
{
    int64_t rid = reg->import_rid, srid = reg->stage_rid, now_rid = 0;
    lk_err err = reg->import_failed;
    char stamp[LK_REG_STAMP_MAX], was[LK_REG_STAMP_MAX], path[400];

    snprintf(was, sizeof was, "%s", reg->stage_stamp);
    snprintf(path, sizeof path, "%s", reg->import_name);
    if (err == LK_OK && reg->stage_open && (err = reg->ops->commit(reg->be)) != LK_OK) {
        reg->ops->rollback(reg->be);
        err = lk_reg__be_fail(reg, err, why, why_size);
    } else if (err != LK_OK) {
        err = failf(why, why_size, err, "the import was rolled back after a database failure; "
                                        "nothing of it was written");
    }
    reg->stage_open = 0;
    lk_reg__import_end(reg);
    if (err != LK_OK) {
        stage_drop(reg, srid);
        return err;
    }
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK) {
        stage_drop(reg, srid);
        return err;
    }
    {
        /* the registry by its id: deleted meanwhile, it is gone */
        lk_reg_registry r;
        memset(&r, 0, sizeof r);
        err = reg->ops->registry_get(reg->be, rid, &r);
        now_rid = err == LK_OK ? rid : 0;
        lk_reg_registry_free(&r);
    }
    if (now_rid == 0)
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND, "%s was deleted during the import", path);
    else if ((err = reg->ops->trust_stamp(reg->be, rid, stamp, sizeof stamp)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    else if (strcmp(stamp, was) != 0)
        err = failf(why, why_size, LK_ERR_STATE,
                    "the CA certificates or CRLs of %s changed during the import, which was "
                    "checked against the earlier ones: nothing of it was written; import again",
                    path);
    if (err == LK_OK) {
        /* Still ours: one idle for LK_REG_STAGE_STALE_S may have been swept */
        lk_reg_registry r;
        memset(&r, 0, sizeof r);
        err = reg->ops->registry_get(reg->be, srid, &r);
        lk_reg_registry_free(&r);
        if (err == LK_ERR_REG_NOT_FOUND)
            err = failf(why, why_size, LK_ERR_STATE, "the import's staged devices were removed "
                                                     "as abandoned (idle over %d s): nothing of "
                                                     "it was written; import again",
                        LK_REG_STAGE_STALE_S);
        else if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK) {
        err = reg->ops->devices_move(reg->be, srid, rid, LK_CHANGE_DEVICE, lk_reg__now(reg));
        if (err == LK_ERR_REG_EXISTS)
            err = failf(why, why_size, err, "a device of the import was created in %s during the "
                                            "import: nothing of it was written", path);
        else if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
        else
            reg->appended = 1;
    }
    if (err == LK_OK && (err = reg->ops->registry_delete(reg->be, srid)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    err = lk_reg__leave(reg, err, TX_WRITE, why, why_size);
    if (err != LK_OK)
        stage_drop(reg, srid);
    return err;
}

lk_err lk_registry_import_commit(lk_registry *reg, char *why, size_t why_size)
{
    lk_err failed;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (!reg->importing || reg->busy)
        return failf(why, why_size, LK_ERR_STATE, "no import in progress (call import_begin)");
    if (reg->staged)
        return stage_commit(reg, why, why_size);
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
    int64_t srid;
    int staged;
    if (reg == NULL || !reg->importing)
        return;
    staged = reg->staged;
    srid = reg->stage_rid;
    reg->ops->rollback(reg->be);
    lk_reg__import_end(reg);
    if (staged)
        stage_drop(reg, srid);
}
