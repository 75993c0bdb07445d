/*
 * resources.c — registries, devices, configs and states as the cloudiot v1
 * JSON shows them (docs/daemon.md, "Resources"): camelCase names, int64 as
 * strings, bytes as base64, enums by name (or by number on request).
 * Activity times never set are left out; a credential without expiry shows
 * 1970-01-01T00:00:00Z, as IoT Core did (and as `latchkey devices describe`
 * does: the tool and the API print the same shapes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

/* Enum names with the numbers of google.cloud.iot.v1's protos. */
const char *const lkd_cred_format_names[] = {"UNSPECIFIED_PUBLIC_KEY_FORMAT", "RSA_PEM", "RSA_X509_PEM",
                                             "ES256_PEM", "ES256_X509_PEM"};
const int lkd_cred_format_values[] = {0, 3, 1, 2, 4};
const char *const lkd_log_level_names[] = {"LOG_LEVEL_UNSPECIFIED", "NONE", "ERROR", "INFO", "DEBUG"};
const int lkd_log_level_values[] = {0, 10, 20, 30, 40};
const char *const lkd_gw_type_names[] = {"GATEWAY_TYPE_UNSPECIFIED", "GATEWAY", "NON_GATEWAY"};
const int lkd_gw_type_values[] = {0, 1, 2};
const char *const lkd_gw_auth_names[] = {"GATEWAY_AUTH_METHOD_UNSPECIFIED", "ASSOCIATION_ONLY",
                                         "DEVICE_AUTH_TOKEN_ONLY", "ASSOCIATION_AND_DEVICE_AUTH_TOKEN"};
const int lkd_gw_auth_values[] = {0, 1, 2, 3};
const char *const lkd_mqtt_state_names[] = {"MQTT_STATE_UNSPECIFIED", "MQTT_ENABLED", "MQTT_DISABLED"};
const char *const lkd_http_state_names[] = {"HTTP_STATE_UNSPECIFIED", "HTTP_ENABLED", "HTTP_DISABLED"};
const int lkd_state_values[] = {0, 1, 2};

static void put(json_t *o, const char *k, json_t *v)
{
    if (v != NULL)
        json_object_set_new(o, k, v);
}

static void put_time(json_t *o, const char *k, int64_t t)
{
    if (t != 0)
        put(o, k, lkd_jtime(t));
}

/* The proto number of an lk_cred_format, by name. */
static int cred_proto_number(lk_cred_format f)
{
    const char *n = lk_cred_format_name(f);
    for (size_t i = 0; i < LKD_CRED_FORMATS; i++)
        if (strcmp(n, lkd_cred_format_names[i]) == 0)
            return lkd_cred_format_values[i];
    return 0;
}

json_t *lkd_credential_json(const struct lkd_call *c, const lk_reg_credential *cr)
{
    json_t *pk = json_object();
    json_t *j = json_object();
    if (pk == NULL || j == NULL) {
        json_decref(pk);
        json_decref(j);
        return NULL;
    }
    put(pk, "format",
        lkd_jenum(c, lkd_cred_format_names, lkd_cred_format_values, LKD_CRED_FORMATS, cred_proto_number(cr->format)));
    put(pk, "key", json_string(cr->pem ? cr->pem : ""));
    put(j, "publicKey", pk);
    put(j, "expirationTime", lkd_jtime(cr->expires));
    return j;
}

json_t *lkd_config_json(const lk_reg_config *cfg)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    put(j, "version", lkd_ji64(cfg->version));
    put_time(j, "cloudUpdateTime", cfg->cloud_update_time);
    put_time(j, "deviceAckTime", cfg->device_ack_time);
    put(j, "binaryData", lkd_jbytes(cfg->data, cfg->len));
    return j;
}

json_t *lkd_state_json(const lk_reg_state_entry *s)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    put_time(j, "updateTime", s->update_time);
    put(j, "binaryData", lkd_jbytes(s->data, s->len));
    return j;
}

static int wanted(char mask[][48], int nmask, const char *field)
{
    if (nmask <= 0)
        return 1;
    for (int i = 0; i < nmask; i++)
        if (lkd_path_is(mask[i], field))
            return 1;
    return 0;
}

static json_t *text_json(const char *p, size_t n)
{
    /* Metadata values are text in IoT Core; bytes that are not UTF-8 (never
     * accepted by the API, but an import could hold them) come out as
     * jansson refuses them: replaced, not dropped silently. */
    json_t *s = json_stringn(p, n);
    return s ? s : json_string("\xef\xbf\xbd");
}

json_t *lkd_device_json(const struct lkd_call *c, const lk_reg_device *d, const lk_reg_config *cfg,
                        const lk_reg_state_entry *st, char mask[][48], int nmask)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    char path[LK_DEVICE_PATH_MAX + 1], num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)d->num_id);
    put(j, "id", json_string(d->id));
    if (lk_device_path(d->project, d->location, d->registry, num, path, sizeof path, NULL) == LK_OK)
        put(j, "name", json_string(path));
    put(j, "numId", lkd_ju64(d->num_id));
    if (wanted(mask, nmask, "credentials")) {
        json_t *a = json_array();
        for (unsigned i = 0; a != NULL && i < d->ncreds; i++)
            json_array_append_new(a, lkd_credential_json(c, &d->creds[i]));
        put(j, "credentials", a);
    }
    if (wanted(mask, nmask, "lastHeartbeatTime"))
        put_time(j, "lastHeartbeatTime", d->last_heartbeat);
    if (wanted(mask, nmask, "lastEventTime"))
        put_time(j, "lastEventTime", d->last_event);
    if (wanted(mask, nmask, "lastStateTime"))
        put_time(j, "lastStateTime", d->last_state);
    if (wanted(mask, nmask, "lastConfigAckTime"))
        put_time(j, "lastConfigAckTime", d->last_config_ack);
    if (wanted(mask, nmask, "lastConfigSendTime"))
        put_time(j, "lastConfigSendTime", d->last_config_send);
    if (wanted(mask, nmask, "blocked"))
        put(j, "blocked", json_boolean(d->blocked));
    if (wanted(mask, nmask, "lastErrorTime"))
        put_time(j, "lastErrorTime", d->last_error);
    if (wanted(mask, nmask, "lastErrorStatus") && d->last_error_status != NULL)
        put(j, "lastErrorStatus", json_pack("{s:i,s:s%}", "code", 0, "message", d->last_error_status,
                                            strlen(d->last_error_status)));
    if (cfg != NULL && wanted(mask, nmask, "config"))
        put(j, "config", lkd_config_json(cfg));
    if (st != NULL && wanted(mask, nmask, "state"))
        put(j, "state", lkd_state_json(st));
    if (wanted(mask, nmask, "logLevel") && d->log_level != LK_LOG_LEVEL_UNSPECIFIED)
        put(j, "logLevel", lkd_jenum(c, lkd_log_level_names, lkd_log_level_values, LKD_LOG_LEVELS, (int)d->log_level));
    if (wanted(mask, nmask, "metadata") && d->nmetadata > 0) {
        json_t *m = json_object();
        for (unsigned i = 0; m != NULL && i < d->nmetadata; i++)
            put(m, d->metadata[i].key, text_json(d->metadata[i].value, d->metadata[i].value_len));
        put(j, "metadata", m);
    }
    /* latchkey's extension, only when the mask names it (a plain GET shows
     * what IoT Core's did). */
    if (nmask > 0 && wanted(mask, nmask, "presence")) {
        json_t *pr = json_object();
        if (pr != NULL) {
            put(pr, "online", json_boolean(d->presence == LK_PRESENCE_ONLINE));
            put_time(pr, "time", d->presence_time);
            if (d->presence_detail != NULL)
                put(pr, d->presence == LK_PRESENCE_ONLINE ? "address" : "reason", json_string(d->presence_detail));
            put(j, "presence", pr);
        }
    }
    if (wanted(mask, nmask, "gatewayConfig")) {
        json_t *g = json_object();
        if (g != NULL) {
            put(g, "gatewayType", lkd_jenum(c, lkd_gw_type_names, lkd_gw_type_values, LKD_GW_TYPES,
                                            d->gateway_type == LK_GATEWAY_TYPE_GATEWAY ? 1 : 2));
            put(g, "gatewayAuthMethod", lkd_jenum(c, lkd_gw_auth_names, lkd_gw_auth_values, LKD_GW_AUTHS,
                                                  (int)d->gateway_auth_method));
            if (d->last_accessed_gateway_id != NULL)
                put(g, "lastAccessedGatewayId", json_string(d->last_accessed_gateway_id));
            put_time(g, "lastAccessedGatewayTime", d->last_accessed_gateway_time);
            put(j, "gatewayConfig", g);
        }
    }
    return j;
}

struct certs_acc {
    const struct lkd_call *c;
    json_t *a;
};

static int cert_cb(void *arg, const lk_reg_cert *ce)
{
    struct certs_acc *acc = arg;
    json_t *x = json_object();
    json_t *pkc = json_object();
    json_t *cred = json_object();
    if (x == NULL || pkc == NULL || cred == NULL) {
        json_decref(x);
        json_decref(pkc);
        json_decref(cred);
        return 0;
    }
    put(x, "issuer", json_string(ce->issuer ? ce->issuer : ""));
    put(x, "subject", json_string(ce->subject ? ce->subject : ""));
    put(x, "startTime", lkd_jtime(ce->not_before));
    put(x, "expiryTime", lkd_jtime(ce->not_after));
    put(x, "publicKeyType", json_string(ce->key_type ? ce->key_type : ""));
    static const char *const fmt_names[] = {"UNSPECIFIED_PUBLIC_KEY_CERTIFICATE_FORMAT", "X509_CERTIFICATE_PEM"};
    static const int fmt_values[] = {0, 1};
    put(pkc, "format", lkd_jenum(acc->c, fmt_names, fmt_values, 2, 1));
    put(pkc, "certificate", json_string(ce->pem ? ce->pem : ""));
    put(pkc, "x509Details", x);
    put(cred, "publicKeyCertificate", pkc);
    json_array_append_new(acc->a, cred);
    return 0;
}

/* latchkey's extension (docs/provisioning.md), shown once it differs from a
 * registry that never used JIT (so that IoT Core's look as they did, and
 * what is hidden is exactly the default). A second read: never from inside a
 * list callback. */
void lkd_registry_jit_json(json_t *j, lk_registry *reg, const char *project, const char *location, const char *id)
{
    lk_reg_name n = {project, location, id};
    lk_reg_jit jit;
    char why[256], max[24], got[24];
    if (lk_registry_get_jit(reg, &n, &jit, why, sizeof why) == LK_OK &&
        (jit.enabled || jit.registered || jit.max_devices != LK_REG_JIT_MAX_DEFAULT)) {
        snprintf(max, sizeof max, "%llu", (unsigned long long)jit.max_devices);
        snprintf(got, sizeof got, "%llu", (unsigned long long)jit.registered);
        put(j, "latchkeyJitConfig", json_pack("{s:b, s:s, s:s}", "enabled", jit.enabled != 0,
                                              "maxDevices", max, "registered", got));
    }
}

json_t *lkd_registry_json(const struct lkd_call *c, const lk_reg_registry *r, lk_registry *reg)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    char path[LK_REGISTRY_PATH_MAX + 1];
    put(j, "id", json_string(r->id));
    if (lk_registry_path(r->project, r->location, r->id, path, sizeof path, NULL) == LK_OK)
        put(j, "name", json_string(path));
    if (r->event_notification_json != NULL) {
        json_t *e = json_loads(r->event_notification_json, 0, NULL);
        if (e != NULL && json_array_size(e) > 0)
            put(j, "eventNotificationConfigs", e);
        else
            json_decref(e);
    }
    if (r->state_notification_json != NULL)
        put(j, "stateNotificationConfig", json_loads(r->state_notification_json, 0, NULL));
    put(j, "mqttConfig", json_pack("{s:o}", "mqttEnabledState",
                                   lkd_jenum(c, lkd_mqtt_state_names, lkd_state_values, LKD_STATES, (int)r->mqtt)));
    put(j, "httpConfig", json_pack("{s:o}", "httpEnabledState",
                                   lkd_jenum(c, lkd_http_state_names, lkd_state_values, LKD_STATES, (int)r->http)));
    if (r->log_level != LK_LOG_LEVEL_UNSPECIFIED)
        put(j, "logLevel", lkd_jenum(c, lkd_log_level_names, lkd_log_level_values, LKD_LOG_LEVELS, (int)r->log_level));
    if (r->ncerts > 0) {
        lk_reg_name n = {r->project, r->location, r->id};
        struct certs_acc acc = {c, json_array()};
        char why[256];
        if (acc.a != NULL && lk_registry_list_certs(reg, &n, cert_cb, &acc, why, sizeof why) == LK_OK)
            put(j, "credentials", acc.a);
        else
            json_decref(acc.a);
    }
    if (reg != NULL)
        lkd_registry_jit_json(j, reg, r->project, r->location, r->id);
    return j;
}
