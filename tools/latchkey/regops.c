/*
 * Each registry operation to the database (lk_registry_*) or, with --api,
 * to its REST form in regops_remote.c (regops.h).
 */
#include "regops.h"
#include "regops_remote.h"
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* admin.h's admin_device_id lives here, with the operation it makes (admin.c
 * stays below the operations: the API side uses its helpers). */

int admin_device_id(struct admin *a, const char *arg, char **buf, const char **id_out)
{
    char why[512] = "";
    lk_reg_device d;
    unsigned long long num;
    char *end = NULL;
    lk_err err;

    *buf = NULL;
    *id_out = arg;
    if (!admin_all_digits(arg))
        return EXIT_OK;
    errno = 0;
    num = strtoull(arg, &end, 10);
    if (errno != 0 || *end != '\0' || num == 0) {
        tool_error(a->cmd, LK_ERR_REG_NOT_FOUND, "no device has numId %s", arg);
        return EXIT_REG_NOT_FOUND;
    }
    memset(&d, 0, sizeof d);
    err = rop_get_device(a, &a->name, NULL, (uint64_t)num, &d, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    *buf = strdup(d.id);
    lk_reg_device_free(&d);
    if (*buf == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    *id_out = *buf;
    return EXIT_OK;
}


lk_err rop_get_registry(struct admin *a, const lk_reg_name *name, lk_reg_registry *out, char *why,
                        size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_get_registry(a, name, out, why, why_size);
    return lk_registry_get_registry(a->reg, name, out, why, why_size);
}

lk_err rop_list_registries(struct admin *a, const char *project, const char *location,
                           int (*cb)(void *arg, const lk_reg_registry *r), void *arg, char *why,
                           size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_list_registries(a, project, location, cb, arg, why, why_size);
    return lk_registry_list_registries(a->reg, project, location, cb, arg, why, why_size);
}

lk_err rop_create_registry_full(struct admin *a, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_create_registry_full(a, name, spec, why, why_size);
    admin_audit_target(a, name, NULL);
    return lk_registry_create_registry_full(a->reg, name, spec, why, why_size);
}

lk_err rop_update_registry(struct admin *a, const lk_reg_name *name, lk_reg_state mqtt, lk_reg_state http,
                           const char *event_notification_json, const char *state_notification_json,
                           char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_update_registry(a, name, mqtt, http, event_notification_json, state_notification_json,
                                    why, why_size);
    return lk_registry_update_registry(a->reg, name, mqtt, http, event_notification_json,
                                       state_notification_json, why, why_size);
}

lk_err rop_set_registry_log_level(struct admin *a, const lk_reg_name *name, lk_reg_log_level level, char *why,
                                  size_t why_size)
{
    lk_reg_registry_spec spec;
    if (ROP_REMOTE(a))
        return ropr_set_registry_log_level(a, name, level, why, why_size);
    memset(&spec, 0, sizeof spec);
    spec.log_level = level;
    return lk_registry_patch_registry(a->reg, name, &spec, LK_REG_SET_REG_LOG_LEVEL, why, why_size);
}

lk_err rop_delete_registry(struct admin *a, const lk_reg_name *name, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_delete_registry(a, name, why, why_size);
    admin_audit_target(a, name, NULL);
    return lk_registry_delete_registry(a->reg, name, why, why_size);
}

lk_err rop_list_certs(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_cert *c),
                      void *arg, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_list_certs(a, name, cb, arg, why, why_size);
    return lk_registry_list_certs(a->reg, name, cb, arg, why, why_size);
}

lk_err rop_add_cert(struct admin *a, const lk_reg_name *name, const char *pem, size_t pem_len,
                    unsigned *index, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_add_cert(a, name, pem, pem_len, index, why, why_size);
    return lk_registry_add_cert(a->reg, name, pem, pem_len, index, why, why_size);
}

lk_err rop_delete_cert(struct admin *a, const lk_reg_name *name, unsigned index, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_delete_cert(a, name, index, why, why_size);
    return lk_registry_delete_cert(a->reg, name, index, why, why_size);
}

lk_err rop_get_device(struct admin *a, const lk_reg_name *name, const char *id, uint64_t num_id,
                      lk_reg_device *out, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_get_device(a, name, id, num_id, out, why, why_size);
    return lk_registry_get_device(a->reg, name, id, num_id, out, why, why_size);
}

lk_err rop_list_devices(struct admin *a, const lk_reg_name *name,
                        int (*cb)(void *arg, const lk_reg_device *d), void *arg, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_list_devices(a, name, cb, arg, why, why_size);
    return lk_registry_list_devices(a->reg, name, cb, arg, why, why_size);
}

lk_err rop_create_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec,
                         uint64_t *num_id, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_create_device(a, name, spec, num_id, why, why_size);
    admin_audit_target(a, name, spec != NULL ? spec->id : NULL);
    return lk_registry_create_device(a->reg, name, spec, num_id, why, why_size);
}

lk_err rop_update_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec,
                         unsigned mask, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_update_device(a, name, spec, mask, why, why_size);
    admin_audit_target(a, name, spec != NULL ? spec->id : NULL);
    return lk_registry_update_device(a->reg, name, spec, mask, why, why_size);
}

lk_err rop_delete_device(struct admin *a, const lk_reg_name *name, const char *id, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_delete_device(a, name, id, why, why_size);
    admin_audit_target(a, name, id);
    return lk_registry_delete_device(a->reg, name, id, why, why_size);
}

lk_err rop_add_credential(struct admin *a, const lk_reg_name *name, const char *id,
                          const lk_reg_credential *cred, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_add_credential(a, name, id, cred, why, why_size);
    admin_audit_target(a, name, id);
    return lk_registry_add_credential(a->reg, name, id, cred, why, why_size);
}

lk_err rop_delete_credential(struct admin *a, const lk_reg_name *name, const char *id, unsigned index,
                             char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_delete_credential(a, name, id, index, why, why_size);
    admin_audit_target(a, name, id);
    return lk_registry_delete_credential(a->reg, name, id, index, why, why_size);
}

lk_err rop_update_config(struct admin *a, const lk_reg_name *name, const char *id, const uint8_t *data,
                         size_t len, int64_t version_to_update, lk_reg_config *out, char *why,
                         size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_update_config(a, name, id, data, len, version_to_update, out, why, why_size);
    admin_audit_target(a, name, id);
    return lk_registry_update_config(a->reg, name, id, data, len, version_to_update, out, why, why_size);
}

lk_err rop_list_configs(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                        int (*cb)(void *arg, const lk_reg_config *c), void *arg, char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_list_configs(a, name, id, max, cb, arg, why, why_size);
    return lk_registry_list_configs(a->reg, name, id, max, cb, arg, why, why_size);
}

lk_err rop_list_states(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                       int (*cb)(void *arg, const lk_reg_state_entry *s), void *arg, char *why,
                       size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_list_states(a, name, id, max, cb, arg, why, why_size);
    return lk_registry_list_states(a->reg, name, id, max, cb, arg, why, why_size);
}

/* ---- gateways ---- */

struct query_page {
    int (*cb)(void *arg, const lk_reg_device *d);
    void *arg;
    char last[LK_ID_MAX + 1];
    int stopped;
};

static int query_page_cb(void *arg, const lk_reg_device *d)
{
    struct query_page *p = arg;
    snprintf(p->last, sizeof p->last, "%s", d->id);
    p->stopped = p->cb(p->arg, d);
    return p->stopped;
}

lk_err rop_query_devices(struct admin *a, const lk_reg_name *name, lk_reg_gateway_type type,
                         const char *assoc_gateway, const char *assoc_device,
                         int (*cb)(void *arg, const lk_reg_device *d), void *arg, char *why, size_t why_size)
{
    if (ROP_REMOTE(a)) {
        const char *v = assoc_gateway ? assoc_gateway : assoc_device;
        char *esc = v ? api_seg(v) : NULL;
        char filter[LK_ID_MAX * 3 + 64];
        if (v != NULL && esc == NULL)
            return LK_ERR_NOMEM;
        if (v != NULL)
            snprintf(filter, sizeof filter, "gatewayListOptions.associations%sId=%s",
                     assoc_gateway ? "Gateway" : "Device", esc);
        else
            snprintf(filter, sizeof filter, "gatewayListOptions.gatewayType=%s",
                     admin_enum_name(ADMIN_ENUM_GATEWAY_TYPE, type));
        free(esc);
        return ropr_query_devices(a, name, v != NULL || type != LK_GATEWAY_TYPE_UNSPECIFIED ? filter : NULL, cb,
                                  arg, why, why_size);
    }
    /* Keyset pages of the registry's own query, until one says no more. */
    struct query_page p = {cb, arg, "", 0};
    lk_reg_device_query q;
    int more = 1;
    lk_err err = LK_OK;
    memset(&q, 0, sizeof q);
    q.gateway_type = type;
    q.associations_gateway_id = assoc_gateway;
    q.associations_device_id = assoc_device;
    q.limit = 1000;
    q.full = 1;
    while (err == LK_OK && more && !p.stopped) {
        err = lk_registry_query_devices(a->reg, name, &q, query_page_cb, &p, &more, why, why_size);
        q.after_id = p.last;
    }
    return err;
}

lk_err rop_bind(struct admin *a, const lk_reg_name *name, const char *gateway, const char *device, int unbind,
                char *why, size_t why_size)
{
    if (ROP_REMOTE(a))
        return ropr_bind(a, name, gateway, device, unbind, why, why_size);
    return unbind ? lk_registry_unbind(a->reg, name, gateway, device, why, why_size)
                  : lk_registry_bind(a->reg, name, gateway, device, why, why_size);
}
