/*
 * The API side of regops.h (regops_remote.c): the same operations as REST
 * calls. Only regops.c calls these.
 */
#ifndef LK_TOOL_REGOPS_REMOTE_H
#define LK_TOOL_REGOPS_REMOTE_H

#include "admin.h"

/* (regops_trust.c) "/v1/projects/P/locations/L/registries[/R[/devices/D]]"
 * + tail, each segment escaped; NULL out of memory. */
char *ropr_path(const lk_reg_name *n, int with_registry, const char *dev, const char *tail);
/* api_call on path (taken and freed, NULL = out of memory) and body (taken);
 * out NULL when the answer is not wanted. */
lk_err ropr_call(struct admin *a, const char *method, char *path, const char *query, json_t *body, json_t **out,
                 char *why, size_t why_size);

lk_err ropr_get_registry(struct admin *a, const lk_reg_name *name, lk_reg_registry *out, char *why,
                         size_t why_size);
lk_err ropr_list_registries(struct admin *a, const char *project, const char *location,
                            int (*cb)(void *arg, const lk_reg_registry *r), void *arg, char *why,
                            size_t why_size);
lk_err ropr_create_registry_full(struct admin *a, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                 char *why, size_t why_size);
lk_err ropr_update_registry(struct admin *a, const lk_reg_name *name, lk_reg_state mqtt, lk_reg_state http,
                            const char *event_notification_json, const char *state_notification_json,
                            char *why, size_t why_size);
lk_err ropr_set_registry_log_level(struct admin *a, const lk_reg_name *name, lk_reg_log_level level, char *why,
                                   size_t why_size);
lk_err ropr_delete_registry(struct admin *a, const lk_reg_name *name, char *why, size_t why_size);
lk_err ropr_list_certs(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_cert *c),
                       void *arg, char *why, size_t why_size);
lk_err ropr_add_cert(struct admin *a, const lk_reg_name *name, const char *pem, size_t pem_len,
                     unsigned *index, char *why, size_t why_size);
lk_err ropr_delete_cert(struct admin *a, const lk_reg_name *name, unsigned index, char *why, size_t why_size);
lk_err ropr_get_device(struct admin *a, const lk_reg_name *name, const char *id, uint64_t num_id,
                       lk_reg_device *out, char *why, size_t why_size);
lk_err ropr_list_devices(struct admin *a, const lk_reg_name *name,
                         int (*cb)(void *arg, const lk_reg_device *d), void *arg, char *why, size_t why_size);
/* filter: gatewayListOptions.* query parameters (escaped), or NULL. */
lk_err ropr_query_devices(struct admin *a, const lk_reg_name *name, const char *filter,
                          int (*cb)(void *arg, const lk_reg_device *d), void *arg, char *why, size_t why_size);
lk_err ropr_bind(struct admin *a, const lk_reg_name *name, const char *gateway, const char *device, int unbind,
                 char *why, size_t why_size);
lk_err ropr_create_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec,
                          uint64_t *num_id, char *why, size_t why_size);
lk_err ropr_update_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec,
                          unsigned mask, char *why, size_t why_size);
lk_err ropr_delete_device(struct admin *a, const lk_reg_name *name, const char *id, char *why,
                          size_t why_size);
lk_err ropr_add_credential(struct admin *a, const lk_reg_name *name, const char *id,
                           const lk_reg_credential *cred, char *why, size_t why_size);
lk_err ropr_delete_credential(struct admin *a, const lk_reg_name *name, const char *id, unsigned index,
                              char *why, size_t why_size);
lk_err ropr_update_config(struct admin *a, const lk_reg_name *name, const char *id, const uint8_t *data,
                          size_t len, int64_t version_to_update, lk_reg_config *out, char *why,
                          size_t why_size);
lk_err ropr_list_configs(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                         int (*cb)(void *arg, const lk_reg_config *c), void *arg, char *why, size_t why_size);
lk_err ropr_list_states(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                        int (*cb)(void *arg, const lk_reg_state_entry *s), void *arg, char *why,
                        size_t why_size);

#endif
