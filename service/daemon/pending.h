/* TEMPORARY: declarations of the registry and verifier additions being written on other branches. */
#ifndef LKD_PENDING_H
#define LKD_PENDING_H
#include "latchkey/lk_registry.h"
#include "latchkey/lk_verify.h"
typedef struct lk_reg_device_query {
    const char *const *ids;   size_t nids;
    const uint64_t *num_ids;  size_t nnum_ids;
    lk_reg_gateway_type gateway_type;
    const char *associations_gateway_id;
    const char *associations_device_id;
    const char *after_id;
    unsigned limit;
    int full;
} lk_reg_device_query;
lk_err lk_registry_query_devices(lk_registry *reg, const lk_reg_name *name, const lk_reg_device_query *q,
                                 int (*cb)(void *arg, const lk_reg_device *d), void *arg, int *more,
                                 char *why, size_t why_size);
lk_err lk_registry_bind(lk_registry *reg, const lk_reg_name *name, const char *gateway, const char *device,
                        char *why, size_t why_size);
lk_err lk_registry_unbind(lk_registry *reg, const lk_reg_name *name, const char *gateway, const char *device,
                          char *why, size_t why_size);
#define LK_REG_SET_LOG_LEVEL    8u
#define LK_REG_SET_GATEWAY_AUTH 16u
#define LK_REG_SET_MQTT          1u
#define LK_REG_SET_HTTP          2u
#define LK_REG_SET_EVENT_NOTIFY  4u
#define LK_REG_SET_STATE_NOTIFY  8u
#define LK_REG_SET_REG_LOG_LEVEL 16u
#define LK_REG_SET_CERTS         32u
lk_err lk_registry_patch_registry(lk_registry *reg, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                  unsigned mask, char *why, size_t why_size);
typedef enum lk_reg_sa_role {
    LK_ROLE_NONE = 0, LK_ROLE_VIEWER = 1, LK_ROLE_DEVICE_CONTROLLER = 2, LK_ROLE_PROVISIONER = 3,
    LK_ROLE_EDITOR = 4, LK_ROLE_ADMIN = 5
} lk_reg_sa_role;
const char *lk_reg_sa_role_name(lk_reg_sa_role r);
typedef struct lk_reg_sa_key {
    char *key_id; char *email; char *project, *name; lk_reg_sa_role role; char *public_pem; int disabled;
    int64_t created;
} lk_reg_sa_key;
void lk_reg_sa_key_free(lk_reg_sa_key *k);
lk_err lk_registry_sa_lookup(lk_registry *reg, const char *key_id, lk_reg_sa_key *out);
lk_err lk_registry_sa_list(lk_registry *reg, const char *project,
                           int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg, char *why, size_t why_size);
lk_err lk_registry_sa_key_set_disabled(lk_registry *reg, const char *key_id, int disabled, char *why,
                                       size_t why_size);
lk_err lk_registry_sa_key_delete(lk_registry *reg, const char *key_id, char *why, size_t why_size);
lk_err lk_jwt_peek_kid(const char *token, size_t len, char *kid, size_t kid_size);
typedef struct lk_sa_policy {
    const char *email; int64_t now, skew; int64_t max_lifetime;
    const char *const *audiences; size_t naudiences;
    const char *const *scopes; size_t nscopes;
    size_t max_len;
} lk_sa_policy;
lk_err lk_verify_sa_token(lk_verifier *v, const char *token, size_t len, const lk_cred *cred,
                          const lk_sa_policy *pol, lk_token_info *info, char *why, size_t why_size);
#endif
