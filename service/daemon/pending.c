/* TEMPORARY stubs until the branches land. */
#include "pending.h"
lk_err lk_registry_query_devices(lk_registry *reg, const lk_reg_name *name, const lk_reg_device_query *q,
                                 int (*cb)(void *arg, const lk_reg_device *d), void *arg, int *more,
                                 char *why, size_t why_size) { (void)reg;(void)name;(void)q;(void)cb;(void)arg;(void)more;(void)why;(void)why_size; return LK_ERR_UNSUPPORTED; }
lk_err lk_registry_bind(lk_registry *reg, const lk_reg_name *name, const char *gateway, const char *device,
                        char *why, size_t why_size) { (void)reg;(void)name;(void)gateway;(void)device;(void)why;(void)why_size; return LK_ERR_UNSUPPORTED; }
lk_err lk_registry_unbind(lk_registry *reg, const lk_reg_name *name, const char *gateway, const char *device,
                          char *why, size_t why_size) { (void)reg;(void)name;(void)gateway;(void)device;(void)why;(void)why_size; return LK_ERR_UNSUPPORTED; }
lk_err lk_registry_patch_registry(lk_registry *reg, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                  unsigned mask, char *why, size_t why_size) { (void)reg;(void)name;(void)spec;(void)mask;(void)why;(void)why_size; return LK_ERR_UNSUPPORTED; }
const char *lk_reg_sa_role_name(lk_reg_sa_role r) { (void)r; return "viewer"; }
void lk_reg_sa_key_free(lk_reg_sa_key *k) { (void)k; }
lk_err lk_registry_sa_lookup(lk_registry *reg, const char *key_id, lk_reg_sa_key *out) { (void)reg;(void)key_id;(void)out; return LK_ERR_REG_NOT_FOUND; }
lk_err lk_registry_sa_list(lk_registry *reg, const char *project,
                           int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg, char *why, size_t why_size) { (void)reg;(void)project;(void)cb;(void)arg;(void)why;(void)why_size; return LK_OK; }
lk_err lk_registry_sa_key_set_disabled(lk_registry *reg, const char *key_id, int disabled, char *why,
                                       size_t why_size) { (void)reg;(void)key_id;(void)disabled;(void)why;(void)why_size; return LK_ERR_UNSUPPORTED; }
lk_err lk_registry_sa_key_delete(lk_registry *reg, const char *key_id, char *why, size_t why_size) { (void)reg;(void)key_id;(void)why;(void)why_size; return LK_ERR_UNSUPPORTED; }
lk_err lk_jwt_peek_kid(const char *token, size_t len, char *kid, size_t kid_size) { (void)token;(void)len;(void)kid;(void)kid_size; return LK_ERR_TOKEN_MALFORMED; }
lk_err lk_verify_sa_token(lk_verifier *v, const char *token, size_t len, const lk_cred *cred,
                          const lk_sa_policy *pol, lk_token_info *info, char *why, size_t why_size) { (void)v;(void)token;(void)len;(void)cred;(void)pol;(void)info;(void)why;(void)why_size; return LK_ERR_TOKEN_SIGNATURE; }
