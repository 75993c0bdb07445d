/*
 * The registry operations through latchkeyd's admin API (regops.h): each a
 * cloudiot v1 REST call (api.c), its JSON turned back into the lk_reg_*
 * structs the database gives, so that the commands print the same things
 * either way. Strings in the structs are malloc'd as the registry's are,
 * and freed by the same lk_reg_*_free.
 *
 * What the API shows differently is made up for here: a listing leaves out
 * registries' certificates and devices' config versions, so those are read
 * one by one where a command shows them; a credential change is the whole
 * list written back (devices.patch with updateMask=credentials), as
 * gcloud does it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_iotcore.h"
#include "api.h"
#include "regops.h"
#include "regops_remote.h"

#define PAGE "1000"

/* ---- JSON into structs ---- */

static char *dup_str(json_t *v)
{
    const char *s = json_string_value(v);
    return strdup(s != NULL ? s : "");
}

/* RFC 3339 into seconds; IoT Core's 1970-01-01T00:00:00Z (never) and
 * absent are 0. */
static int64_t jtime(json_t *v)
{
    int64_t t = 0;
    const char *s = json_string_value(v);
    if (s == NULL || admin_parse_time(s, &t) != 0)
        return 0;
    return t;
}

static int64_t ji64(json_t *v)
{
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    return json_string_value(v) ? strtoll(json_string_value(v), NULL, 10) : 0;
}

/* The name's components after "projects/", "locations/", "registries/". */
static void name_parts(json_t *name, char **project, char **location, char **registry)
{
    const char *s = json_string_value(name);
    char *copy = strdup(s != NULL ? s : ""), *save = NULL, *p;
    char *parts[8] = {0};
    unsigned n = 0;
    for (p = copy ? strtok_r(copy, "/", &save) : NULL; p != NULL && n < 8; p = strtok_r(NULL, "/", &save))
        parts[n++] = p;
    *project = strdup(n > 1 ? parts[1] : "");
    *location = strdup(n > 3 ? parts[3] : "");
    if (registry != NULL)
        *registry = strdup(n > 5 ? parts[5] : "");
    free(copy);
}

static lk_reg_state state_of(json_t *cfg, const char *field, const char *on, const char *off)
{
    const char *s = json_string_value(json_object_get(cfg, field));
    if (s != NULL && strcmp(s, on) == 0)
        return LK_REG_STATE_ENABLED;
    if (s != NULL && strcmp(s, off) == 0)
        return LK_REG_STATE_DISABLED;
    return LK_REG_STATE_UNSPECIFIED;
}

static int enum_of(enum admin_enum e, json_t *v)
{
    int out = 0;
    if (json_is_string(v) && admin_enum_value(e, json_string_value(v), &out) == 0)
        return out;
    return 0;
}

static lk_err registry_from_json(json_t *j, lk_reg_registry *r, char *why, size_t why_size)
{
    json_t *ev = json_object_get(j, "eventNotificationConfigs");
    json_t *st = json_object_get(j, "stateNotificationConfig");
    memset(r, 0, sizeof *r);
    name_parts(json_object_get(j, "name"), &r->project, &r->location, NULL);
    r->id = dup_str(json_object_get(j, "id"));
    r->mqtt = state_of(json_object_get(j, "mqttConfig"), "mqttEnabledState", "MQTT_ENABLED", "MQTT_DISABLED");
    r->http = state_of(json_object_get(j, "httpConfig"), "httpEnabledState", "HTTP_ENABLED", "HTTP_DISABLED");
    if (json_is_array(ev) && json_array_size(ev) > 0)
        r->event_notification_json = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (json_is_object(st) && json_object_size(st) > 0)
        r->state_notification_json = json_dumps(st, JSON_COMPACT | JSON_PRESERVE_ORDER);
    r->ncerts = (unsigned)json_array_size(json_object_get(j, "credentials"));
    r->log_level = (lk_reg_log_level)enum_of(ADMIN_ENUM_LOG_LEVEL, json_object_get(j, "logLevel"));
    if (r->project == NULL || r->location == NULL || r->id == NULL) {
        lk_reg_registry_free(r);
        snprintf(why, why_size, "out of memory");
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

static lk_err cert_from_json(json_t *j, unsigned index, lk_reg_cert *c)
{
    json_t *pkc = json_object_get(j, "publicKeyCertificate"), *x = json_object_get(pkc, "x509Details");
    memset(c, 0, sizeof *c);
    c->index = index;
    c->pem = dup_str(json_object_get(pkc, "certificate"));
    c->subject = dup_str(json_object_get(x, "subject"));
    c->issuer = dup_str(json_object_get(x, "issuer"));
    c->key_type = dup_str(json_object_get(x, "publicKeyType"));
    c->not_before = jtime(json_object_get(x, "startTime"));
    c->not_after = jtime(json_object_get(x, "expiryTime"));
    if (c->pem == NULL || c->subject == NULL || c->issuer == NULL || c->key_type == NULL) {
        lk_reg_cert_free(c);
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

static lk_err device_from_json(json_t *j, lk_reg_device *d, char *why, size_t why_size)
{
    json_t *creds = json_object_get(j, "credentials"), *meta = json_object_get(j, "metadata"), *v;
    json_t *gw = json_object_get(j, "gatewayConfig"), *err = json_object_get(j, "lastErrorStatus");
    const char *key;
    size_t i;
    int bad = 0;

    memset(d, 0, sizeof *d);
    name_parts(json_object_get(j, "name"), &d->project, &d->location, &d->registry);
    d->id = dup_str(json_object_get(j, "id"));
    d->num_id = (uint64_t)strtoull(json_string_value(json_object_get(j, "numId")) ?
                                   json_string_value(json_object_get(j, "numId")) : "0", NULL, 10);
    json_array_foreach(creds, i, v) {
        json_t *pk = json_object_get(v, "publicKey");
        const char *f = json_string_value(json_object_get(pk, "format"));
        if (i >= LK_DEVICE_CREDENTIALS_MAX)
            break;
        d->creds[i].format = f ? lk_cred_format_from_name(f, strlen(f)) : LK_CRED_UNSPECIFIED;
        d->creds[i].pem = dup_str(json_object_get(pk, "key"));
        d->creds[i].expires = jtime(json_object_get(v, "expirationTime"));
        bad |= d->creds[i].pem == NULL;
        d->ncreds = (unsigned)i + 1;
    }
    d->blocked = json_is_true(json_object_get(j, "blocked"));
    d->last_heartbeat = jtime(json_object_get(j, "lastHeartbeatTime"));
    d->last_event = jtime(json_object_get(j, "lastEventTime"));
    d->last_state = jtime(json_object_get(j, "lastStateTime"));
    d->last_config_ack = jtime(json_object_get(j, "lastConfigAckTime"));
    d->last_config_send = jtime(json_object_get(j, "lastConfigSendTime"));
    d->last_error = jtime(json_object_get(j, "lastErrorTime"));
    if (json_is_string(json_object_get(err, "message")))
        bad |= (d->last_error_status = dup_str(json_object_get(err, "message"))) == NULL;
    d->config_version = ji64(json_object_get(json_object_get(j, "config"), "version"));
    /* latchkey's extension (fieldMask "presence"); a server without it
     * leaves it out: never recorded. */
    if (json_is_object(json_object_get(j, "presence"))) {
        json_t *p = json_object_get(j, "presence"), *det = json_object_get(p, "address");
        d->presence_time = jtime(json_object_get(p, "time"));
        if (det == NULL)
            det = json_object_get(p, "reason");
        /* Not online, no time, no reason: never recorded. */
        d->presence = json_is_true(json_object_get(p, "online")) ? LK_PRESENCE_ONLINE
                      : d->presence_time != 0 || det != NULL   ? LK_PRESENCE_OFFLINE
                                                               : LK_PRESENCE_NEVER;
        if (json_is_string(det))
            bad |= (d->presence_detail = dup_str(det)) == NULL;
    }
    d->log_level = (lk_reg_log_level)enum_of(ADMIN_ENUM_LOG_LEVEL, json_object_get(j, "logLevel"));
    if (json_is_object(gw)) {
        d->gateway_type = (lk_reg_gateway_type)enum_of(ADMIN_ENUM_GATEWAY_TYPE, json_object_get(gw, "gatewayType"));
        d->gateway_auth_method =
            (lk_reg_gateway_auth)enum_of(ADMIN_ENUM_GATEWAY_AUTH, json_object_get(gw, "gatewayAuthMethod"));
        if (json_is_string(json_object_get(gw, "lastAccessedGatewayId")))
            bad |= (d->last_accessed_gateway_id = dup_str(json_object_get(gw, "lastAccessedGatewayId"))) == NULL;
        d->last_accessed_gateway_time = jtime(json_object_get(gw, "lastAccessedGatewayTime"));
        /* The API shows NON_GATEWAY for a device never given a type. */
        if (d->gateway_type == LK_GATEWAY_TYPE_NON_GATEWAY && d->gateway_auth_method == LK_GATEWAY_AUTH_UNSPECIFIED &&
            d->last_accessed_gateway_id == NULL && d->last_accessed_gateway_time == 0)
            d->gateway_type = LK_GATEWAY_TYPE_UNSPECIFIED;
    }
    if (json_object_size(meta) > 0 && (d->metadata = calloc(json_object_size(meta), sizeof *d->metadata)) == NULL)
        bad = 1;
    if (d->metadata != NULL) {
        json_object_foreach(meta, key, v) {
            lk_reg_metadata *m = &d->metadata[d->nmetadata++];
            m->key = strdup(key);
            m->value_len = json_string_length(v);
            m->value = malloc(m->value_len + 1);
            if (m->key == NULL || m->value == NULL) {
                bad = 1;
                continue;
            }
            memcpy(m->value, json_string_value(v) ? json_string_value(v) : "", m->value_len);
            m->value[m->value_len] = '\0';
        }
    }
    if (bad || d->id == NULL || d->project == NULL || d->location == NULL || d->registry == NULL) {
        lk_reg_device_free(d);
        snprintf(why, why_size, "out of memory");
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

static lk_err bytes_of(json_t *v, uint8_t **out, size_t *len)
{
    const char *s = json_string_value(v);
    *out = NULL;
    *len = 0;
    if (s == NULL || s[0] == '\0') {
        *out = calloc(1, 1);
        return *out != NULL ? LK_OK : LK_ERR_NOMEM;
    }
    if (out_b64_decode(s, strlen(s), out, len) != 0)
        return LK_ERR_ENCODING;
    return LK_OK;
}

static lk_err config_from_json(json_t *j, lk_reg_config *c, char *why, size_t why_size)
{
    lk_err err;
    memset(c, 0, sizeof *c);
    c->version = ji64(json_object_get(j, "version"));
    c->cloud_update_time = jtime(json_object_get(j, "cloudUpdateTime"));
    c->device_ack_time = jtime(json_object_get(j, "deviceAckTime"));
    if ((err = bytes_of(json_object_get(j, "binaryData"), &c->data, &c->len)) != LK_OK)
        snprintf(why, why_size, "the API's config is not base64");
    return err;
}

/* ---- JSON out of structs ---- */

static json_t *cred_json(const lk_reg_credential *c)
{
    json_t *j = json_pack("{s:{s:s,s:s}}", "publicKey", "format", lk_cred_format_name(c->format), "key",
                          c->pem ? c->pem : "");
    if (j != NULL && c->expires != 0)
        json_object_set_new(j, "expirationTime", out_jtime(c->expires));
    return j;
}

static json_t *creds_json(const lk_reg_credential *c, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; a != NULL && i < n; i++)
        if (json_array_append_new(a, cred_json(&c[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *metadata_json(const lk_reg_metadata *m, unsigned n)
{
    json_t *o = json_object();
    for (unsigned i = 0; o != NULL && i < n; i++)
        json_object_set_new(o, m[i].key, json_stringn(m[i].value, m[i].value_len));
    return o;
}

static json_t *certs_body(const char *const *pems, const size_t *lens, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_pack("{s:{s:s,s:s%}}", "publicKeyCertificate", "format",
                                           "X509_CERTIFICATE_PEM", "certificate", pems[i], lens[i]));
    return a;
}

/* ---- limits the API's request reader checks before the registry ----
 *
 * latchkeyd refuses an over-long array or value while it reads the request
 * (INVALID_ARGUMENT), before the registry would say LK_ERR_REG_LIMIT: the
 * registry's own checks and words, made here first, keep the exit code and
 * message of the --db way. */

static lk_err check_creds(unsigned n, char *why, size_t why_size)
{
    if (n <= LK_DEVICE_CREDENTIALS_MAX)
        return LK_OK;
    snprintf(why, why_size, "%u credentials given; a device has at most %u credentials", n,
             LK_DEVICE_CREDENTIALS_MAX);
    return LK_ERR_REG_LIMIT;
}

static lk_err check_meta(unsigned n, char *why, size_t why_size)
{
    if (n <= LK_METADATA_PAIRS_MAX)
        return LK_OK;
    snprintf(why, why_size, "%u metadata pairs given; a device has at most %u", n, LK_METADATA_PAIRS_MAX);
    return LK_ERR_REG_LIMIT;
}

/* A device id as the registry checks it, in its words (latchkeyd's own
 * check says less: the path's segment has no name). */
static lk_err check_id(const char *id, char *why, size_t why_size)
{
    char r[160];
    const char *w = lk_id_why("device id", id, strlen(id), r, sizeof r);
    if (w == NULL)
        return LK_OK;
    snprintf(why, why_size, "device id '%.64s%s' is invalid: %s", id, strlen(id) > 64 ? "..." : "", w);
    return LK_ERR_REG_INVALID;
}

static lk_err check_size(const char *what, size_t len, size_t max, char *why, size_t why_size)
{
    if (len <= max)
        return LK_OK;
    snprintf(why, why_size, "%s is %zu bytes; the limit is %zu", what, len, max);
    return LK_ERR_REG_LIMIT;
}

/* ---- registries ---- */

static lk_err get_registry_json(struct admin *a, const lk_reg_name *name, json_t **out, char *why, size_t why_size)
{
    return ropr_call(a, "GET", ropr_path(name, 1, NULL, NULL), NULL, NULL, out, why, why_size);
}

lk_err ropr_get_registry(struct admin *a, const lk_reg_name *name, lk_reg_registry *out, char *why, size_t why_size)
{
    json_t *j = NULL;
    lk_err err = get_registry_json(a, name, &j, why, why_size);
    if (err == LK_OK)
        err = registry_from_json(j, out, why, why_size);
    json_decref(j);
    return err;
}

/* A listing walked page by page: item is called with each element of the
 * page's array key, until it fails or sets *stop; nextPageToken is followed
 * whole (a token that cannot be carried is an error, never a short list). */
typedef lk_err (*page_item)(struct admin *a, json_t *e, void *arg, int *stop, char *why, size_t why_size);

static lk_err walk_pages(struct admin *a, const lk_reg_name *name, int with_registry, const char *tail,
                         const char *query, const char *key, page_item item, void *arg, char *why,
                         size_t why_size)
{
    char *tok = NULL, *q = NULL;
    lk_err err = LK_OK;
    int stop = 0;
    do {
        json_t *j = NULL, *e, *next;
        size_t i, qlen = strlen(query) + (tok ? strlen(tok) + 12 : 0) + 1;
        if ((q = malloc(qlen)) == NULL) {
            snprintf(why, why_size, "out of memory");
            err = LK_ERR_NOMEM;
            break;
        }
        snprintf(q, qlen, "%s%s%s", query, tok ? "&pageToken=" : "", tok ? tok : "");
        free(tok);
        tok = NULL;
        err = ropr_call(a, "GET", ropr_path(name, with_registry, NULL, tail), q, NULL, &j, why, why_size);
        free(q);
        if (err != LK_OK)
            break;
        json_array_foreach(json_object_get(j, key), i, e)
            if ((err = item(a, e, arg, &stop, why, why_size)) != LK_OK || stop)
                break;
        next = json_object_get(j, "nextPageToken");
        if (err == LK_OK && !stop && json_is_string(next) && json_string_length(next) > 0 &&
            (tok = api_seg(json_string_value(next))) == NULL) {
            snprintf(why, why_size, "out of memory");
            err = LK_ERR_NOMEM;
        }
        json_decref(j);
    } while (tok != NULL);
    free(tok);
    return err;
}

static lk_err count_item(struct admin *a, json_t *e, void *arg, int *stop, char *why, size_t why_size)
{
    (void)a, (void)e, (void)stop, (void)why, (void)why_size;
    ++*(uint64_t *)arg;
    return LK_OK;
}

/* How many devices the registry has: its device listing walked. */
static lk_err count_devices(struct admin *a, const lk_reg_name *name, uint64_t *n, char *why, size_t why_size)
{
    *n = 0;
    return walk_pages(a, name, 1, "/devices", "pageSize=10000", "devices", count_item, n, why, why_size);
}

struct reg_walk {
    int (*cb)(void *arg, const lk_reg_registry *r);
    void *arg;
};

static lk_err registry_item(struct admin *a, json_t *e, void *arg, int *stop, char *why, size_t why_size)
{
    struct reg_walk *w = arg;
    lk_reg_registry r;
    lk_reg_name n;
    json_t *full = NULL;
    lk_err err = registry_from_json(e, &r, why, why_size);
    if (err != LK_OK)
        return err;
    n.project = r.project;
    n.location = r.location;
    n.registry = r.id;
    /* The listing leaves the CA certificates out: their count from a get. */
    if ((err = get_registry_json(a, &n, &full, why, why_size)) == LK_OK)
        r.ncerts = (unsigned)json_array_size(json_object_get(full, "credentials"));
    json_decref(full);
    if (err == LK_OK && !a->json)
        err = count_devices(a, &n, &r.ndevices, why, why_size);
    if (err == LK_OK)
        *stop = w->cb(w->arg, &r);
    lk_reg_registry_free(&r);
    return err;
}

lk_err ropr_list_registries(struct admin *a, const char *project, const char *location,
                            int (*cb)(void *arg, const lk_reg_registry *r), void *arg, char *why, size_t why_size)
{
    lk_reg_name all = {project != NULL ? project : api_project(a->api), location != NULL ? location : "-", NULL};
    struct reg_walk w = {cb, arg};
    return walk_pages(a, &all, 0, NULL, "pageSize=" PAGE, "deviceRegistries", registry_item, &w, why, why_size);
}

static const char *mqtt_name(lk_reg_state s)
{
    return s == LK_REG_STATE_DISABLED ? "MQTT_DISABLED" : "MQTT_ENABLED";
}

static const char *http_name(lk_reg_state s)
{
    return s == LK_REG_STATE_DISABLED ? "HTTP_DISABLED" : "HTTP_ENABLED";
}

/* Notification JSON text (as the registry stores it) into the body. */
static lk_err put_notify(json_t *body, const char *key, const char *text, char *why, size_t why_size)
{
    json_t *v;
    if (text == NULL || text[0] == '\0')
        return LK_OK;
    if ((v = json_loads(text, 0, NULL)) == NULL) {
        snprintf(why, why_size, "%s is not JSON", key);
        return LK_ERR_REG_INVALID;
    }
    json_object_set_new(body, key, v);
    return LK_OK;
}

lk_err ropr_create_registry_full(struct admin *a, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                 char *why, size_t why_size)
{
    json_t *body = json_pack("{s:s,s:{s:s},s:{s:s}}", "id", name->registry, "mqttConfig", "mqttEnabledState",
                             mqtt_name(spec->mqtt), "httpConfig", "httpEnabledState", http_name(spec->http));
    lk_err err;
    if (body == NULL)
        return LK_ERR_NOMEM;
    if ((err = put_notify(body, "eventNotificationConfigs", spec->event_notification_json, why, why_size)) != LK_OK ||
        (err = put_notify(body, "stateNotificationConfig", spec->state_notification_json, why, why_size)) != LK_OK) {
        json_decref(body);
        return err;
    }
    if (spec->log_level != LK_LOG_LEVEL_UNSPECIFIED)
        json_object_set_new(body, "logLevel", json_string(admin_enum_name(ADMIN_ENUM_LOG_LEVEL, (int)spec->log_level)));
    if (spec->ncas > 0)
        json_object_set_new(body, "credentials", certs_body(spec->ca_pems, spec->ca_lens, spec->ncas));
    return ropr_call(a, "POST", ropr_path(name, 0, NULL, NULL), NULL, body, NULL, why, why_size);
}

lk_err ropr_update_registry(struct admin *a, const lk_reg_name *name, lk_reg_state mqtt, lk_reg_state http,
                            const char *event_notification_json, const char *state_notification_json, char *why,
                            size_t why_size)
{
    json_t *body = json_object();
    char mask[160] = "updateMask=";
    lk_err err = LK_OK;
    if (body == NULL)
        return LK_ERR_NOMEM;
    if (mqtt != LK_REG_STATE_UNSPECIFIED) {
        strcat(mask, "mqttConfig,");
        json_object_set_new(body, "mqttConfig", json_pack("{s:s}", "mqttEnabledState", mqtt_name(mqtt)));
    }
    if (http != LK_REG_STATE_UNSPECIFIED) {
        strcat(mask, "httpConfig,");
        json_object_set_new(body, "httpConfig", json_pack("{s:s}", "httpEnabledState", http_name(http)));
    }
    if (event_notification_json != NULL) {
        strcat(mask, "eventNotificationConfigs,");
        err = put_notify(body, "eventNotificationConfigs", event_notification_json, why, why_size);
    }
    if (err == LK_OK && state_notification_json != NULL) {
        strcat(mask, "stateNotificationConfig,");
        err = put_notify(body, "stateNotificationConfig", state_notification_json, why, why_size);
    }
    if (err != LK_OK) {
        json_decref(body);
        return err;
    }
    mask[strlen(mask) - 1] = '\0';
    return ropr_call(a, "PATCH", ropr_path(name, 1, NULL, NULL), mask, body, NULL, why, why_size);
}

lk_err ropr_set_registry_log_level(struct admin *a, const lk_reg_name *name, lk_reg_log_level level, char *why,
                                   size_t why_size)
{
    json_t *body = json_pack("{s:s}", "logLevel", admin_enum_name(ADMIN_ENUM_LOG_LEVEL, (int)level));
    if (body == NULL)
        return LK_ERR_NOMEM;
    return ropr_call(a, "PATCH", ropr_path(name, 1, NULL, NULL), "updateMask=logLevel", body, NULL, why, why_size);
}

lk_err ropr_delete_registry(struct admin *a, const lk_reg_name *name, char *why, size_t why_size)
{
    return ropr_call(a, "DELETE", ropr_path(name, 1, NULL, NULL), NULL, NULL, NULL, why, why_size);
}

lk_err ropr_list_certs(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_cert *c),
                       void *arg, char *why, size_t why_size)
{
    json_t *j = NULL, *e;
    size_t i;
    lk_err err = get_registry_json(a, name, &j, why, why_size);
    json_array_foreach(err == LK_OK ? json_object_get(j, "credentials") : NULL, i, e) {
        lk_reg_cert c;
        int stop;
        if ((err = cert_from_json(e, (unsigned)i, &c)) != LK_OK)
            break;
        stop = cb(arg, &c);
        lk_reg_cert_free(&c);
        if (stop)
            break;
    }
    json_decref(j);
    return err;
}

/* Write the registry's CA list back: certs (the registry's "credentials"
 * array as the API gave it) without index skip (-1: none) and with pem
 * added (NULL: none). */
static lk_err put_certs(struct admin *a, const lk_reg_name *name, json_t *certs, long skip, const char *pem,
                        size_t pem_len, char *why, size_t why_size)
{
    json_t *arr = json_array(), *e;
    size_t i;
    if (arr == NULL)
        return LK_ERR_NOMEM;
    json_array_foreach(certs, i, e) {
        json_t *pkc = json_object_get(e, "publicKeyCertificate");
        if ((long)i != skip)
            json_array_append_new(arr, json_pack("{s:{s:s,s:O}}", "publicKeyCertificate", "format",
                                                 "X509_CERTIFICATE_PEM", "certificate",
                                                 json_object_get(pkc, "certificate")));
    }
    if (pem != NULL)
        json_array_append_new(arr, json_pack("{s:{s:s,s:s%}}", "publicKeyCertificate", "format",
                                             "X509_CERTIFICATE_PEM", "certificate", pem, pem_len));
    return ropr_call(a, "PATCH", ropr_path(name, 1, NULL, NULL), "updateMask=credentials",
                json_pack("{s:o}", "credentials", arr), NULL, why, why_size);
}

/* The DER of a PEM certificate (OPENSSL_malloc'd), or NULL. */
static unsigned char *cert_der(const char *pem, size_t len, int *der_len)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    *der_len = x ? i2d_X509(x, &der) : -1;
    X509_free(x);
    BIO_free(b);
    return *der_len > 0 ? der : NULL;
}

lk_err ropr_add_cert(struct admin *a, const lk_reg_name *name, const char *pem, size_t pem_len, unsigned *index,
                     char *why, size_t why_size)
{
    char path[LK_REGISTRY_PATH_MAX + 1] = "";
    json_t *j = NULL, *certs, *e;
    unsigned char *der;
    int der_len = 0;
    size_t i;
    lk_err err = get_registry_json(a, name, &j, why, why_size);
    if (err != LK_OK)
        return err;
    (void)lk_registry_path(name->project, name->location, name->registry, path, sizeof path, NULL);
    certs = json_object_get(j, "credentials");
    /* The registry's own refusals of add_cert, which a whole list written
     * back would word differently: a certificate it has, an 11th. */
    der = cert_der(pem, pem_len, &der_len);
    json_array_foreach(der != NULL ? certs : NULL, i, e) {
        const char *c = json_string_value(json_object_get(json_object_get(e, "publicKeyCertificate"), "certificate"));
        int n = 0;
        unsigned char *d = c ? cert_der(c, strlen(c), &n) : NULL;
        int same = d != NULL && n == der_len && memcmp(d, der, (size_t)n) == 0;
        OPENSSL_free(d);
        if (same) {
            snprintf(why, why_size, "this certificate is already registry CA certificate %zu of %s", i, path);
            err = LK_ERR_REG_EXISTS;
            break;
        }
    }
    OPENSSL_free(der);
    if (err == LK_OK && json_array_size(certs) >= LK_REGISTRY_CERTS_MAX) {
        snprintf(why, why_size, "%s already has %zu CA certificates; a registry has at most %u", path,
                 json_array_size(certs), LK_REGISTRY_CERTS_MAX);
        err = LK_ERR_REG_LIMIT;
    }
    if (err == LK_OK) {
        *index = (unsigned)json_array_size(certs);
        err = put_certs(a, name, certs, -1, pem, pem_len, why, why_size);
    }
    json_decref(j);
    return err;
}

lk_err ropr_delete_cert(struct admin *a, const lk_reg_name *name, unsigned index, char *why, size_t why_size)
{
    json_t *j = NULL, *certs;
    lk_err err = get_registry_json(a, name, &j, why, why_size);
    if (err == LK_OK) {
        certs = json_object_get(j, "credentials");
        if (index >= json_array_size(certs)) {
            char path[LK_REGISTRY_PATH_MAX + 1] = "";
            (void)lk_registry_path(name->project, name->location, name->registry, path, sizeof path, NULL);
            snprintf(why, why_size, "%s has no CA certificate %u (it has %zu, numbered from 0)", path, index,
                     json_array_size(certs));
            err = LK_ERR_REG_NOT_FOUND;
        } else {
            err = put_certs(a, name, certs, (long)index, NULL, 0, why, why_size);
        }
    }
    json_decref(j);
    return err;
}

/* ---- devices ---- */

static lk_err get_device_json(struct admin *a, const lk_reg_name *name, const char *id, uint64_t num_id,
                              const char *query, json_t **out, char *why, size_t why_size)
{
    char num[24];
    lk_err err;
    if (id != NULL && (err = check_id(id, why, why_size)) != LK_OK)
        return err;
    if (id == NULL)
        snprintf(num, sizeof num, "%llu", (unsigned long long)num_id);
    return ropr_call(a, "GET", ropr_path(name, 1, id != NULL ? id : num, NULL), query, NULL, out, why, why_size);
}

lk_err ropr_get_device(struct admin *a, const lk_reg_name *name, const char *id, uint64_t num_id, lk_reg_device *out,
                       char *why, size_t why_size)
{
    json_t *j = NULL;
    lk_err err = get_device_json(a, name, id, num_id, NULL, &j, why, why_size);
    if (err == LK_OK)
        err = device_from_json(j, out, why, why_size);
    json_decref(j);
    return err;
}

/* Every field of a device but config and state, which a listing leaves out. */
#define LIST_FIELDS                                                                                        \
    "fieldMask=credentials,blocked,metadata,lastHeartbeatTime,lastEventTime,lastStateTime,lastConfigAckTime," \
    "lastConfigSendTime,lastErrorTime,lastErrorStatus,logLevel,gatewayConfig,presence"

struct dev_walk {
    const lk_reg_name *name;
    int (*cb)(void *arg, const lk_reg_device *d);
    void *arg;
};

static lk_err device_item(struct admin *a, json_t *e, void *arg, int *stop, char *why, size_t why_size)
{
    struct dev_walk *w = arg;
    lk_reg_device d;
    lk_err err = device_from_json(e, &d, why, why_size);
    if (err != LK_OK)
        return err;
    if (!a->json) { /* the table's CONFIG_VERSION: the listing leaves configs out */
        json_t *one = NULL;
        err = get_device_json(a, w->name, d.id, 0, "fieldMask=config", &one, why, why_size);
        d.config_version = ji64(json_object_get(json_object_get(one, "config"), "version"));
        json_decref(one);
    }
    if (err == LK_OK)
        *stop = w->cb(w->arg, &d);
    lk_reg_device_free(&d);
    return err;
}

lk_err ropr_list_devices(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_device *d),
                         void *arg, char *why, size_t why_size)
{
    return ropr_query_devices(a, name, NULL, cb, arg, why, why_size);
}

lk_err ropr_query_devices(struct admin *a, const lk_reg_name *name, const char *filter,
                          int (*cb)(void *arg, const lk_reg_device *d), void *arg, char *why, size_t why_size)
{
    struct dev_walk w = {name, cb, arg};
    size_t n = sizeof LIST_FIELDS + 32 + (filter ? strlen(filter) : 0);
    char *q = malloc(n);
    if (q == NULL)
        return LK_ERR_NOMEM;
    snprintf(q, n, LIST_FIELDS "&pageSize=" PAGE "%s%s", filter ? "&" : "", filter ? filter : "");
    lk_err err = walk_pages(a, name, 1, "/devices", q, "devices", device_item, &w, why, why_size);
    free(q);
    return err;
}

lk_err ropr_bind(struct admin *a, const lk_reg_name *name, const char *gateway, const char *device, int unbind,
                 char *why, size_t why_size)
{
    json_t *body = json_pack("{s:s,s:s}", "gatewayId", gateway, "deviceId", device);
    if (body == NULL)
        return LK_ERR_NOMEM;
    return ropr_call(a, "POST", ropr_path(name, 1, NULL, unbind ? ":unbindDeviceFromGateway" : ":bindDeviceToGateway"),
                NULL, body, NULL, why, why_size);
}

lk_err ropr_create_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec, uint64_t *num_id,
                          char *why, size_t why_size)
{
    json_t *body, *j = NULL;
    lk_err err;
    if ((err = check_id(spec->id, why, why_size)) != LK_OK ||
        (err = check_creds(spec->ncreds, why, why_size)) != LK_OK ||
        (err = check_meta(spec->nmetadata, why, why_size)) != LK_OK ||
        (spec->config != NULL &&
         (err = check_size("config", spec->config_len, LK_CONFIG_MAX, why, why_size)) != LK_OK))
        return err;
    if ((body = json_pack("{s:s,s:b}", "id", spec->id, "blocked", spec->blocked != 0)) == NULL)
        return LK_ERR_NOMEM;
    if (spec->ncreds > 0)
        json_object_set_new(body, "credentials", creds_json(spec->creds, spec->ncreds));
    if (spec->nmetadata > 0)
        json_object_set_new(body, "metadata", metadata_json(spec->metadata, spec->nmetadata));
    if (spec->config != NULL)
        json_object_set_new(body, "config", json_pack("{s:o}", "binaryData", out_jb64(spec->config, spec->config_len)));
    if (spec->gateway_type != LK_GATEWAY_TYPE_UNSPECIFIED || spec->gateway_auth_method != LK_GATEWAY_AUTH_UNSPECIFIED)
        json_object_set_new(body, "gatewayConfig", json_pack("{s:s,s:s}", "gatewayType",
                            admin_enum_name(ADMIN_ENUM_GATEWAY_TYPE, spec->gateway_type), "gatewayAuthMethod",
                            admin_enum_name(ADMIN_ENUM_GATEWAY_AUTH, spec->gateway_auth_method)));
    err = ropr_call(a, "POST", ropr_path(name, 1, NULL, "/devices"), NULL, body, &j, why, why_size);
    if (err == LK_OK)
        *num_id = (uint64_t)strtoull(json_string_value(json_object_get(j, "numId")) ?
                                     json_string_value(json_object_get(j, "numId")) : "0", NULL, 10);
    json_decref(j);
    return err;
}

lk_err ropr_update_device(struct admin *a, const lk_reg_name *name, const lk_reg_device_spec *spec, unsigned mask,
                          char *why, size_t why_size)
{
    json_t *body;
    char q[120] = "updateMask=";
    lk_err err;
    if ((err = check_id(spec->id, why, why_size)) != LK_OK ||
        ((mask & LK_REG_SET_CREDS) && (err = check_creds(spec->ncreds, why, why_size)) != LK_OK) ||
        ((mask & LK_REG_SET_METADATA) && (err = check_meta(spec->nmetadata, why, why_size)) != LK_OK))
        return err;
    if ((body = json_object()) == NULL)
        return LK_ERR_NOMEM;
    if (mask & LK_REG_SET_BLOCKED) {
        strcat(q, "blocked,");
        json_object_set_new(body, "blocked", json_boolean(spec->blocked));
    }
    if (mask & LK_REG_SET_METADATA) {
        strcat(q, "metadata,");
        json_object_set_new(body, "metadata", metadata_json(spec->metadata, spec->nmetadata));
    }
    if (mask & LK_REG_SET_CREDS) {
        strcat(q, "credentials,");
        json_object_set_new(body, "credentials", creds_json(spec->creds, spec->ncreds));
    }
    if ((mask & LK_REG_SET_GATEWAY_AUTH) && strcat(q, "gatewayConfig.gatewayAuthMethod,"))
        json_object_set_new(body, "gatewayConfig", json_pack("{s:s}", "gatewayAuthMethod",
                            admin_enum_name(ADMIN_ENUM_GATEWAY_AUTH, spec->gateway_auth_method)));
    if ((mask & LK_REG_SET_LOG_LEVEL) && strcat(q, "logLevel,"))
        json_object_set_new(body, "logLevel", json_string(admin_enum_name(ADMIN_ENUM_LOG_LEVEL, spec->log_level)));
    q[strlen(q) - 1] = '\0';
    return ropr_call(a, "PATCH", ropr_path(name, 1, spec->id, NULL), q, body, NULL, why, why_size);
}

lk_err ropr_delete_device(struct admin *a, const lk_reg_name *name, const char *id, char *why, size_t why_size)
{
    lk_err err = check_id(id, why, why_size);
    if (err != LK_OK)
        return err;
    return ropr_call(a, "DELETE", ropr_path(name, 1, id, NULL), NULL, NULL, NULL, why, why_size);
}

/* The device's credentials written back: without index skip (-1: none) and
 * with add (NULL: none). */
static lk_err put_creds(struct admin *a, const lk_reg_name *name, const lk_reg_device *d, long skip,
                        const lk_reg_credential *add, char *why, size_t why_size)
{
    lk_reg_credential list[LK_DEVICE_CREDENTIALS_MAX + 1];
    lk_reg_device_spec spec;
    unsigned i, n = 0;
    for (i = 0; i < d->ncreds; i++)
        if ((long)i != skip)
            list[n++] = d->creds[i];
    if (add != NULL)
        list[n++] = *add;
    memset(&spec, 0, sizeof spec);
    spec.id = d->id;
    spec.creds = list;
    spec.ncreds = n;
    return ropr_update_device(a, name, &spec, LK_REG_SET_CREDS, why, why_size);
}

lk_err ropr_add_credential(struct admin *a, const lk_reg_name *name, const char *id, const lk_reg_credential *cred,
                           char *why, size_t why_size)
{
    lk_reg_device d;
    lk_err err = ropr_get_device(a, name, id, 0, &d, why, why_size);
    if (err != LK_OK)
        return err;
    if (d.ncreds >= LK_DEVICE_CREDENTIALS_MAX) {
        snprintf(why, why_size, "device '%s' already has %u credentials; a device has at most %u", id, d.ncreds,
                 LK_DEVICE_CREDENTIALS_MAX);
        err = LK_ERR_REG_LIMIT;
    } else {
        err = put_creds(a, name, &d, -1, cred, why, why_size);
    }
    lk_reg_device_free(&d);
    return err;
}

lk_err ropr_delete_credential(struct admin *a, const lk_reg_name *name, const char *id, unsigned index, char *why,
                              size_t why_size)
{
    lk_reg_device d;
    lk_err err = ropr_get_device(a, name, id, 0, &d, why, why_size);
    if (err != LK_OK)
        return err;
    if (index >= d.ncreds) {
        snprintf(why, why_size, "device '%s' has %u credential%s; there is no credential %u (numbered from 0)", id,
                 d.ncreds, d.ncreds == 1 ? "" : "s", index);
        err = LK_ERR_REG_NOT_FOUND;
    } else {
        err = put_creds(a, name, &d, (long)index, NULL, why, why_size);
    }
    lk_reg_device_free(&d);
    return err;
}

/* ---- configs, states, commands ---- */

lk_err ropr_update_config(struct admin *a, const lk_reg_name *name, const char *id, const uint8_t *data, size_t len,
                          int64_t version_to_update, lk_reg_config *out, char *why, size_t why_size)
{
    json_t *body, *j = NULL;
    lk_err err;
    if ((err = check_id(id, why, why_size)) != LK_OK ||
        (err = check_size("config", len, LK_CONFIG_MAX, why, why_size)) != LK_OK)
        return err;
    if ((body = json_pack("{s:o}", "binaryData", out_jb64(data, len))) == NULL)
        return LK_ERR_NOMEM;
    if (version_to_update != 0)
        json_object_set_new(body, "versionToUpdate", out_ji64(version_to_update));
    /* A version that is not the current one is the API's FAILED_PRECONDITION,
     * which api_call already returns as LK_ERR_REG_CONFLICT. */
    err = ropr_call(a, "POST", ropr_path(name, 1, id, ":modifyCloudToDeviceConfig"), NULL, body, &j, why, why_size);
    if (err == LK_OK)
        err = config_from_json(j, out, why, why_size);
    json_decref(j);
    return err;
}

static lk_err history(struct admin *a, const lk_reg_name *name, const char *id, unsigned max, int states,
                      int (*ccb)(void *arg, const lk_reg_config *c), int (*scb)(void *arg, const lk_reg_state_entry *s),
                      void *arg, char *why, size_t why_size)
{
    char q[64];
    json_t *j = NULL, *e;
    size_t i;
    lk_err err;
    if ((err = check_id(id, why, why_size)) != LK_OK)
        return err;
    /* The API takes at most what is kept; more is all of it, as with --db. */
    if (max > (states ? LK_STATES_KEPT : LK_CONFIG_VERSIONS_KEPT))
        max = 0;
    if (max > 0)
        snprintf(q, sizeof q, "%s=%u", states ? "numStates" : "numVersions", max);
    err = ropr_call(a, "GET", ropr_path(name, 1, id, states ? "/states" : "/configVersions"), max > 0 ? q : NULL, NULL, &j,
               why, why_size);
    json_array_foreach(err == LK_OK ? json_object_get(j, states ? "deviceStates" : "deviceConfigs") : NULL, i, e) {
        int stop;
        if (states) {
            lk_reg_state_entry s;
            memset(&s, 0, sizeof s);
            s.update_time = jtime(json_object_get(e, "updateTime"));
            if ((err = bytes_of(json_object_get(e, "binaryData"), &s.data, &s.len)) != LK_OK)
                break;
            stop = scb(arg, &s);
            lk_reg_state_entry_free(&s);
        } else {
            lk_reg_config c;
            if ((err = config_from_json(e, &c, why, why_size)) != LK_OK)
                break;
            stop = ccb(arg, &c);
            lk_reg_config_free(&c);
        }
        if (stop)
            break;
    }
    json_decref(j);
    return err;
}

lk_err ropr_list_configs(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                         int (*cb)(void *arg, const lk_reg_config *c), void *arg, char *why, size_t why_size)
{
    return history(a, name, id, max, 0, cb, NULL, arg, why, why_size);
}

lk_err ropr_list_states(struct admin *a, const lk_reg_name *name, const char *id, unsigned max,
                        int (*cb)(void *arg, const lk_reg_state_entry *s), void *arg, char *why, size_t why_size)
{
    return history(a, name, id, max, 1, NULL, cb, arg, why, why_size);
}

lk_err rop_remote_command(struct admin *a, const lk_reg_name *name, const char *id, const char *subfolder,
                          const uint8_t *data, size_t len, lk_reg_command_status *status, char *why,
                          size_t why_size)
{
    json_t *body;
    lk_err err;
    *status = LK_CMD_PENDING;
    if ((err = check_id(id, why, why_size)) != LK_OK ||
        (err = check_size("command", len, LK_COMMAND_MAX, why, why_size)) != LK_OK)
        return err;
    if ((body = json_pack("{s:o}", "binaryData", out_jb64(data, len))) == NULL)
        return LK_ERR_NOMEM;
    if (subfolder != NULL)
        json_object_set_new(body, "subfolder", json_string(subfolder));
    err = ropr_call(a, "POST", ropr_path(name, 1, id, ":sendCommandToDevice"), NULL, body, NULL, why, why_size);
    /* The outcomes come without an ErrorInfo reason; a refusal with one is
     * the registry's (busy, a blocked device: the command was never sent),
     * returned as such. */
    if (err == LK_OK) {
        *status = LK_CMD_DELIVERED;
    } else if (api_last_reasoned(a->api)) {
        return err;
    } else if (strcmp(api_last_status(a->api), "FAILED_PRECONDITION") == 0) {
        *status = LK_CMD_NOT_CONNECTED;
        err = LK_OK;
    } else if (strcmp(api_last_status(a->api), "UNAVAILABLE") == 0) {
        *status = LK_CMD_EXPIRED;
        err = LK_OK;
    }
    return err;
}
