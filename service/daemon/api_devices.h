/*
 * api_devices.h — what the device handlers share (api_devices.c,
 * api_device_ops.c, device_body.c).
 */
#ifndef LKD_API_DEVICES_H
#define LKD_API_DEVICES_H

#include "daemon.h"

/* A Device request body as the registry takes it. Strings point into the
 * call's JSON or into the struct's own allocations. */
struct lkd_device_body {
    lk_reg_device_spec spec;
    lk_reg_credential creds[LK_DEVICE_CREDENTIALS_MAX];
    lk_reg_metadata *meta;
    uint8_t *config;
};
/* Read a Device object (create: id and config allowed). 0, or -1 after
 * replying INVALID_ARGUMENT. Free with lkd_device_body_free either way. */
int lkd_device_body_read(struct lkd_call *c, json_t *o, struct lkd_device_body *b, int create);
void lkd_device_body_free(struct lkd_device_body *b);

/* The device named by the path's last segment (an id, or a numId), and
 * (cfg not NULL) its newest config from the same snapshot: 0, or -1 after
 * replying (NOT_FOUND, INVALID_ARGUMENT). */
int lkd_device_load(struct lkd_call *c, const lk_reg_name *n, const char *dev, lk_reg_device *out,
                    lk_reg_config *cfg);

/* Device page tokens (devices.list, the console's search): base64url of
 * "d:" and the last id given, opaque to clients. decode: 0 with the id in
 * id[id_size], or -1 when tok is not one (not base64url, not "d:", not a
 * device id). encode: a JSON string, or NULL (out of memory). */
int lkd_page_token_decode(const char *tok, char *id, size_t id_size);
json_t *lkd_page_token_encode(const char *id);

/* :modifyCloudToDeviceConfig, :sendCommandToDevice, /configVersions, /states. */
void lkd_api_device_ops(struct lkd_call *c, const lk_reg_name *n, const char *dev, const char *sub);

#endif
