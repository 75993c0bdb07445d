/*
 * The registry operations the registry commands make, once for both ways
 * of reaching a registry: the database itself (--db: the lk_registry_*
 * call, regops.c) or latchkeyd's admin API (--api: REST calls whose JSON
 * comes back as the same lk_reg_* structs, regops_remote.c). Each takes
 * the command's struct admin where lk_registry_* takes the handle, and
 * otherwise has that function's parameters, results and lk_err/why (the
 * API's refusals mapped back to the lk_err the registry gives), so that
 * the commands print the same output and exit with the same codes either
 * way.
 */
#ifndef LK_TOOL_REGOPS_H
#define LK_TOOL_REGOPS_H

#include "admin.h"

/* 1 when the command goes through the API. */
#define ROP_REMOTE(a) ((a)->api != NULL)

lk_err rop_get_registry(struct admin *a, const lk_reg_name *name, lk_reg_registry *out, char *why,
                        size_t why_size);
/* Remote: project NULL = the key file's project; location NULL = all the
 * project's locations. r->ndevices is filled only when a->json is 0 (the
 * table shows it; one devices listing per registry). */
lk_err rop_list_registries(struct admin *a, const char *project, const char *location,
                           int (*cb)(void *arg, const lk_reg_registry *r), void *arg, char *why,
                           size_t why_size);
lk_err rop_create_registry_full(struct admin *a, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                char *why, size_t why_size);
lk_err rop_update_registry(struct admin *a, const lk_reg_name *name, lk_reg_state mqtt, lk_reg_state http,
                           const char *event_notification_json, const char *state_notification_json,
                           char *why, size_t why_size);
/* The registry's logLevel alone (one change; UNSPECIFIED clears it). */
lk_err rop_set_registry_log_level(struct admin *a, const lk_reg_name *name, lk_reg_log_level level, char *why,
                                  size_t why_size);
lk_err rop_delete_registry(struct admin *a, const lk_reg_name *name, char *why, size_t why_size);
lk_err rop_list_certs(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_cert *c),
                      void *arg, char *why, size_t why_size);
/* Remote: the registry's certificates read and written back whole with one
 * more or one less (registries.patch, updateMask=credentials). */
lk_err rop_add_cert(struct admin *a, const lk_reg_name *name, const char *pem, size_t pem_len,
                    unsigned *index, char *why, size_t why_size);
lk_err rop_delete_cert(struct admin *a, const lk_reg_name *name, unsigned index, char *why, size_t why_size);

lk_err rop_get_device(struct admin *a, const lk_reg_name *name, const char *id, uint64_t num_id,
                      lk_reg_device *out, char *why, size_t why_size);
/* Remote: d->config_version is filled only when a->json is 0 (the table
 * shows it; one more call per device). */
lk_err rop_list_devices(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_device *d),
                        void *arg, char *why, size_t why_size);
lk_err rop_create_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec,
                         uint64_t *num_id, char *why, size_t why_size);
lk_err rop_update_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec, unsigned mask,
                         char *why, size_t why_size);
lk_err rop_delete_device(struct admin *a, const lk_reg_name *name, const char *id, char *why, size_t why_size);
/* Remote: the device's credentials read and written back whole with one
 * more or one less (devices.patch, updateMask=credentials). */
lk_err rop_add_credential(struct admin *a, const lk_reg_name *name, const char *id, const lk_reg_credential *cred,
                          char *why, size_t why_size);
lk_err rop_delete_credential(struct admin *a, const lk_reg_name *name, const char *id, unsigned index, char *why,
                             size_t why_size);
lk_err rop_update_config(struct admin *a, const lk_reg_name *name, const char *id, const uint8_t *data,
                         size_t len, int64_t version_to_update, lk_reg_config *out, char *why, size_t why_size);
lk_err rop_list_configs(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                        int (*cb)(void *arg, const lk_reg_config *c), void *arg, char *why, size_t why_size);
lk_err rop_list_states(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                       int (*cb)(void *arg, const lk_reg_state_entry *s), void *arg, char *why, size_t why_size);

/* Devices of the registry that pass IoT Core's gatewayListOptions: type
 * (UNSPECIFIED = any; NON_GATEWAY also matches unspecified), or those bound
 * to assoc_gateway, or the gateways assoc_device is bound to (ids or
 * decimal numIds; at most one of the three). Ordered by id, every page
 * walked; cb returns non-zero to stop. */
lk_err rop_query_devices(struct admin *a, const lk_reg_name *name, lk_reg_gateway_type type,
                         const char *assoc_gateway, const char *assoc_device,
                         int (*cb)(void *arg, const lk_reg_device *d), void *arg, char *why, size_t why_size);
/* bindDeviceToGateway / unbindDeviceFromGateway (lk_registry_bind, _unbind). */
lk_err rop_bind(struct admin *a, const lk_reg_name *name, const char *gateway, const char *device, int unbind,
                char *why, size_t why_size);

/* ---- provisioning settings (regops_trust.c) ---- */

/* lk_registry_get_jit / _set_jit; remote: the registry's latchkeyJitConfig
 * (absent: off, the default cap), PATCH updateMask=latchkeyJitConfig. */
lk_err rop_get_jit(struct admin *a, const lk_reg_name *name, lk_reg_jit *out, char *why, size_t why_size);
lk_err rop_set_jit(struct admin *a, const lk_reg_name *name, const lk_reg_jit *jit, char *why, size_t why_size);
/* lk_registry_list_signers, _add_signer, _list_crls, _add_crl; remote:
 * .../manifestSigners and .../crls (the structs' strings are the answer's,
 * valid during the callback only). */
lk_err rop_list_signers(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_signer *s),
                        void *arg, char *why, size_t why_size);
lk_err rop_add_signer(struct admin *a, const lk_reg_name *name, const char *label, const char *pem, size_t pem_len,
                      unsigned *index, char *why, size_t why_size);
lk_err rop_list_crls(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_crl *c), void *arg,
                     char *why, size_t why_size);
lk_err rop_add_crl(struct admin *a, const lk_reg_name *name, const char *pem, size_t pem_len, const char *chain,
                   size_t chain_len, char *why, size_t why_size);
/* lk_registry_delete_crl (crl 1) or _delete_signer (crl 0); remote: DELETE .../INDEX. */
lk_err rop_delete_trust(struct admin *a, const lk_reg_name *name, int crl, unsigned index, char *why,
                        size_t why_size);

/* lk_manifest_import (dry: LK_MANIFEST_DRY_RUN); remote: POST
 * .../devices:importManifest with the file as the body and jws in
 * X-Latchkey-Manifest-Signature (?validateOnly=true when dry), the
 * daemon's report (the answer, or the refusal's ManifestReport detail) back
 * in *r as the library fills it. */
struct lk_manifest_report;
lk_err rop_import_manifest(struct admin *a, const lk_reg_name *name, const void *data, size_t len, const char *jws,
                           size_t jws_len, int dry, struct lk_manifest_report *r, char *why, size_t why_size);

/* ---- through the API only (regops_remote.c) ---- */

/* sendCommandToDevice, which waits for the broker itself: *status is
 * DELIVERED, NOT_CONNECTED (FAILED_PRECONDITION) or EXPIRED (UNAVAILABLE:
 * no broker answered in the daemon's wait); another refusal, or one that
 * names its lk_err (the registry busy: nothing was sent), is returned as the
 * registry's lk_err. */
lk_err rop_remote_command(struct admin *a, const lk_reg_name *name, const char *id, const char *subfolder,
                          const uint8_t *data, size_t len, lk_reg_command_status *status, char *why,
                          size_t why_size);

#endif
