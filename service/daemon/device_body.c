/*
 * device_body.c — a Device request body (devices.create, devices.patch)
 * into the registry's lk_reg_device_spec. Output-only fields (name, numId,
 * the activity times, state, lastErrorStatus) are accepted and ignored, as
 * Google's API does; unknown fields are refused. The registry applies IoT
 * Core's rules (ids, limits, credential and CA checks) and says why.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "api_devices.h"

static const char *const device_fields[] = {
    "id", "name", "numId", "credentials", "lastHeartbeatTime", "lastEventTime", "lastStateTime",
    "lastConfigAckTime", "lastConfigSendTime", "blocked", "lastErrorTime", "lastErrorStatus", "config", "state",
    "logLevel", "metadata", "gatewayConfig", NULL};

void lkd_device_body_free(struct lkd_device_body *b)
{
    free(b->meta);
    free(b->config);
    memset(b, 0, sizeof *b);
}

static int read_credential(struct lkd_call *c, json_t *e, size_t i, lk_reg_credential *out)
{
    static const char *const cf[] = {"publicKey", "expirationTime", NULL};
    static const char *const pf[] = {"format", "key", NULL};
    int bad = 0;
    if (!json_is_object(e)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu] must be an object", i);
        return -1;
    }
    if (lkd_known_fields(c, e, "credentials", cf) != 0)
        return -1;
    json_t *pk = lkd_field(c, e, "publicKey", NULL, &bad);
    if (bad)
        return -1;
    if (!json_is_object(pk)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu].publicKey is required", i);
        return -1;
    }
    if (lkd_known_fields(c, pk, "publicKey", pf) != 0)
        return -1;
    json_t *f = lkd_field(c, pk, "format", NULL, &bad);
    json_t *k = bad ? NULL : lkd_field(c, pk, "key", NULL, &bad);
    if (bad)
        return -1;
    if (f == NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu].publicKey.format is required", i);
        return -1;
    }
    int fmt = lkd_enum(c, f, "publicKey.format", lkd_cred_format_names, lkd_cred_format_values, LKD_CRED_FORMATS);
    if (fmt < 0)
        return -1;
    const char *name = NULL;
    for (size_t j = 0; j < LKD_CRED_FORMATS; j++)
        if (lkd_cred_format_values[j] == fmt)
            name = lkd_cred_format_names[j];
    out->format = name ? lk_cred_format_from_name(name, strlen(name)) : LK_CRED_UNSPECIFIED;
    if (out->format == LK_CRED_UNSPECIFIED) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                        "credentials[%zu].publicKey.format must be RSA_PEM, RSA_X509_PEM, ES256_PEM or "
                        "ES256_X509_PEM", i);
        return -1;
    }
    if (!json_is_string(k) || json_string_length(k) == 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu].publicKey.key must be PEM text", i);
        return -1;
    }
    if (json_string_length(k) != strlen(json_string_value(k))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu].publicKey.key holds a NUL", i);
        return -1;
    }
    out->pem = (char *)json_string_value(k);
    out->expires = 0;
    json_t *x = lkd_field(c, e, "expirationTime", NULL, &bad);
    if (bad || (x != NULL && lkd_timestamp(c, x, "expirationTime", &out->expires) != 0))
        return -1;
    if (out->expires < 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu].expirationTime is before 1970", i);
        return -1;
    }
    return 0;
}

static int read_metadata(struct lkd_call *c, json_t *m, struct lkd_device_body *b)
{
    if (!json_is_object(m)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "metadata must be an object of strings");
        return -1;
    }
    size_t n = json_object_size(m);
    if (n > LK_METADATA_PAIRS_MAX) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "metadata has %zu pairs; at most %u", n, LK_METADATA_PAIRS_MAX);
        return -1;
    }
    b->meta = calloc(n ? n : 1, sizeof *b->meta);
    if (b->meta == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return -1;
    }
    const char *key;
    json_t *v;
    unsigned i = 0;
    json_object_foreach(m, key, v) {
        if (!json_is_string(v)) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "metadata value of \"%.64s\" must be a string", key);
            return -1;
        }
        b->meta[i].key = (char *)key;
        b->meta[i].value = (char *)json_string_value(v);
        b->meta[i].value_len = json_string_length(v);
        i++;
    }
    b->spec.metadata = b->meta;
    b->spec.nmetadata = i;
    return 0;
}

static int read_config(struct lkd_call *c, json_t *cf, struct lkd_device_body *b)
{
    static const char *const f[] = {"version", "cloudUpdateTime", "deviceAckTime", "binaryData", NULL};
    int bad = 0;
    if (!json_is_object(cf)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "config must be an object");
        return -1;
    }
    if (lkd_known_fields(c, cf, "config", f) != 0)
        return -1;
    json_t *v = lkd_field(c, cf, "version", NULL, &bad);
    int64_t ver = 0;
    if (bad || (v != NULL && lkd_int64(c, v, "config.version", INT64_MIN, INT64_MAX, &ver) != 0))
        return -1;
    if (ver != 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "config.version must be 0 (or absent) when a device is created");
        return -1;
    }
    json_t *d = lkd_field(c, cf, "binaryData", NULL, &bad);
    if (bad)
        return -1;
    if (d != NULL) {
        size_t len;
        if (lkd_bytes(c, d, "config.binaryData", LK_CONFIG_MAX, &b->config, &len) != 0)
            return -1;
        b->spec.config = b->config;
        b->spec.config_len = len;
    }
    return 0;
}

static int read_gateway(struct lkd_call *c, json_t *g, struct lkd_device_body *b)
{
    static const char *const f[] = {"gatewayType", "gatewayAuthMethod", "lastAccessedGatewayId",
                                    "lastAccessedGatewayTime", NULL};
    if (!json_is_object(g)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "gatewayConfig must be an object");
        return -1;
    }
    if (lkd_known_fields(c, g, "gatewayConfig", f) != 0)
        return -1;
    int e;
    int got = lkd_enum_field(c, g, "gatewayType", lkd_gw_type_names, lkd_gw_type_values, LKD_GW_TYPES, &e);
    if (got < 0)
        return -1;
    if (got > 0)
        b->spec.gateway_type = (lk_reg_gateway_type)e;
    got = lkd_enum_field(c, g, "gatewayAuthMethod", lkd_gw_auth_names, lkd_gw_auth_values, LKD_GW_AUTHS, &e);
    if (got < 0)
        return -1;
    if (got > 0)
        b->spec.gateway_auth_method = (lk_reg_gateway_auth)e;
    return 0;
}

int lkd_device_body_read(struct lkd_call *c, json_t *o, struct lkd_device_body *b, int create)
{
    int bad = 0;
    memset(b, 0, sizeof *b);
    if (lkd_known_fields(c, o, "device", device_fields) != 0)
        return -1;
    json_t *v = lkd_field(c, o, "id", NULL, &bad);
    if (bad)
        return -1;
    if (v != NULL && !json_is_string(v)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "id must be a string");
        return -1;
    }
    if (v != NULL) {
        const char *id = json_string_value(v);
        char why[200];
        if (!lk_id_valid(id, json_string_length(v))) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s", lk_id_why("device id", id, json_string_length(v), why,
                                                                  sizeof why));
            return -1;
        }
        b->spec.id = id;
    }
    if (lkd_array_field(c, o, "credentials", LK_DEVICE_CREDENTIALS_MAX, &v) != 0)
        return -1;
    if (v != NULL) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (read_credential(c, e, i, &b->creds[i]) != 0)
                return -1;
        }
        b->spec.creds = b->creds;
        b->spec.ncreds = (unsigned)json_array_size(v);
    }
    v = lkd_field(c, o, "blocked", NULL, &bad);
    if (bad)
        return -1;
    if (v != NULL) {
        if (!json_is_boolean(v)) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "blocked must be true or false");
            return -1;
        }
        b->spec.blocked = json_is_true(v);
    }
    v = lkd_field(c, o, "metadata", NULL, &bad);
    if (bad || (v != NULL && read_metadata(c, v, b) != 0))
        return -1;
    int level;
    int got = lkd_enum_field(c, o, "logLevel", lkd_log_level_names, lkd_log_level_values, LKD_LOG_LEVELS, &level);
    if (got < 0)
        return -1;
    if (got > 0)
        b->spec.log_level = (lk_reg_log_level)level;
    v = lkd_field(c, o, "gatewayConfig", NULL, &bad);
    if (bad || (v != NULL && read_gateway(c, v, b) != 0))
        return -1;
    if (create) {
        v = lkd_field(c, o, "config", NULL, &bad);
        if (bad || (v != NULL && read_config(c, v, b) != 0))
            return -1;
    }
    return 0;
}

/* ---- the device named in the path ---- */

int lkd_num_id(const char *seg, uint64_t *out)
{
    size_t len = strlen(seg);
    if (len == 0 || len > 20)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)seg[i]))
            return 0;
    *out = strtoull(seg, NULL, 10);
    return 1;
}

int lkd_device_load(struct lkd_call *c, const lk_reg_name *n, const char *dev, lk_reg_device *out,
                    lk_reg_config *cfg)
{
    char why[512] = "";
    size_t len = strlen(dev);
    lk_err err;
    uint64_t v;
    if (lkd_num_id(dev, &v)) {
        err = v == 0 ? LK_ERR_REG_NOT_FOUND
              : cfg ? lk_registry_get_device_config(c->d->reg, n, NULL, v, out, cfg, why, sizeof why)
                    : lk_registry_get_device(c->d->reg, n, NULL, v, out, why, sizeof why);
        if (err == LK_ERR_REG_NOT_FOUND || err == LK_ERR_ARG)
            snprintf(why, sizeof why, "no device with numId %.24s in registry %s", dev, n->registry);
    } else {
        if (!lk_id_valid(dev, len)) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s", lk_id_why("device id", dev, len, why, sizeof why));
            return -1;
        }
        err = cfg ? lk_registry_get_device_config(c->d->reg, n, dev, 0, out, cfg, why, sizeof why)
                  : lk_registry_get_device(c->d->reg, n, dev, 0, out, why, sizeof why);
    }
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return -1;
    }
    return 0;
}
