/*
 * The record parsers of `latchkey devices import` and `registries import`:
 * one JSON record as IoT Core's tools printed it into a registry spec. Every
 * field IoT Core had is known; anything else is refused (docs/cli.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "import.h"

/* ---- fields ---- */

/* Every member of o must be one of known (used) or ignored (IoT Core's
 * output-only fields); otherwise the record is refused, naming what is
 * allowed. */
static int check_members(struct import *im, const char *id, json_t *o, const char *what,
                         const char *const *known, const char *const *ignored)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        const char *const *p;
        int ok = 0;
        for (p = known; !ok && *p != NULL; p++)
            ok = strcmp(k, *p) == 0;
        for (p = ignored; !ok && p != NULL && *p != NULL; p++)
            ok = strcmp(k, *p) == 0;
        if (!ok) {
            char list[512];
            size_t o2 = 0;
            for (p = known; *p != NULL && o2 < sizeof list; p++)
                o2 += (size_t)snprintf(list + o2, sizeof list - o2, "%s%s", o2 ? ", " : "", *p);
            refuse(im, id, LK_ERR_REG_INVALID, "%sunknown field '%s' (%s)", what, k, list);
            return -1;
        }
    }
    return 0;
}

/* A time: RFC 3339 (fractions dropped) or seconds since 1970. */
/* "credentials" (v) must be an array of at most max items (what: "CA
 * certificates"; of a device or a registry, owner); else -1, refused. */
static int check_credentials(struct import *im, const char *id, json_t *v, unsigned max, const char *what,
                             const char *owner)
{
    if (!json_is_array(v)) {
        refuse(im, id, LK_ERR_REG_INVALID, "\"credentials\" must be an array");
        return -1;
    }
    if (json_array_size(v) > max) {
        refuse(im, id, LK_ERR_REG_LIMIT, "%zu %s: a %s has at most %u", json_array_size(v), what, owner, max);
        return -1;
    }
    return 0;
}

static int parse_time_field(json_t *v, int64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v))
        return admin_parse_time(json_string_value(v), out);
    return -1;
}

/* An int64/uint64 as IoT Core's JSON writes it (a string of digits) or a
 * JSON integer, 0..max. */
static int parse_uint_field(json_t *v, unsigned long long max, unsigned long long *out)
{
    const char *s;
    unsigned long long n = 0;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0 || (unsigned long long)json_integer_value(v) > max)
            return -1;
        *out = (unsigned long long)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -1;
    s = json_string_value(v);
    if (*s == '\0' || strlen(s) > 20)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > (max - (unsigned long long)(*s - '0')) / 10)
            return -1;
        n = n * 10 + (unsigned long long)(*s - '0');
    }
    *out = n;
    return 0;
}

/* An enum as IoT Core's name ("GATEWAY") or its number. */
static int parse_enum(struct import *im, const char *id, json_t *v, enum admin_enum e, const char *field,
                      int *out)
{
    char names[256];
    if ((json_is_string(v) && admin_enum_value(e, json_string_value(v), out) == 0) ||
        (json_is_integer(v) && admin_enum_number(e, json_integer_value(v), out) == 0))
        return 0;
    admin_enum_names(e, names, sizeof names);
    if (json_is_string(v))
        refuse(im, id, LK_ERR_REG_INVALID, "%s '%s' is none of %s", field, json_string_value(v), names);
    else
        refuse(im, id, LK_ERR_REG_INVALID, "%s must be one of %s", field, names);
    return -1;
}

/* ---- devices ---- */


void dev_rec_free(struct dev_rec *d)
{
    unsigned i;
    for (i = 0; i < LK_DEVICE_CREDENTIALS_MAX; i++)
        free(d->converted[i]);
    free(d->meta);
    free(d->config);
}

static int parse_credential(struct import *im, const char *id, json_t *c, unsigned i, struct dev_rec *d)
{
    static const char *const nested[] = {"publicKey", "expirationTime", NULL};
    static const char *const flat[] = {"format", "key", "expirationTime", NULL};
    static const char *const out_only[] = {"sha256", NULL}; /* 'devices describe --format json' */
    static const char *const pk_fields[] = {"format", "key", NULL};
    json_t *pk = json_object_get(c, "publicKey"), *fmt, *key, *exp = json_object_get(c, "expirationTime");
    lk_reg_credential *out = &d->creds[i];
    char what[64], when[48];

    if (!json_is_object(c)) {
        refuse(im, id, LK_ERR_REG_INVALID, "credential %u is not an object", i);
        return -1;
    }
    snprintf(what, sizeof what, "credential %u: ", i);
    if (check_members(im, id, c, what, pk != NULL ? nested : flat, out_only) != 0)
        return -1;
    if (pk != NULL) {
        if (!json_is_object(pk)) {
            refuse(im, id, LK_ERR_REG_INVALID, "credential %u: publicKey must be an object {format, key}", i);
            return -1;
        }
        snprintf(what, sizeof what, "credential %u: publicKey: ", i);
        if (check_members(im, id, pk, what, pk_fields, NULL) != 0)
            return -1;
        c = pk;
    }
    fmt = json_object_get(c, "format");
    key = json_object_get(c, "key");
    if (!json_is_string(fmt) || !json_is_string(key)) {
        refuse(im, id, LK_ERR_REG_INVALID, "credential %u needs format and key strings", i);
        return -1;
    }
    out->format = admin_cred_type(json_string_value(fmt));
    if (out->format == LK_CRED_UNSPECIFIED) {
        refuse(im, id, LK_ERR_REG_INVALID,
               "credential %u: unknown format '%s' (RSA_PEM, RSA_X509_PEM, ES256_PEM, ES256_X509_PEM)", i,
               json_string_value(fmt));
        return -1;
    }
    out->pem = (char *)json_string_value(key);
    if (admin_pem_is_pkcs1(out->pem, json_string_length(key))) {
        char why[160];
        size_t n = 0;
        if (out->format != LK_CRED_RSA_PEM) {
            refuse(im, id, LK_ERR_CRED_INVALID,
                   "credential %u: an RSA PUBLIC KEY (PKCS#1), but the format says %s", i,
                   lk_cred_format_name(out->format));
            return -1;
        }
        if (admin_pkcs1_to_spki(out->pem, json_string_length(key), &d->converted[i], &n, why, sizeof why) != 1) {
            refuse(im, id, LK_ERR_CRED_INVALID, "credential %u: %s", i, why);
            return -1;
        }
        out->pem = d->converted[i];
        if (note_add(im, &im->converted, id, 0, 0,
                     "credential %u: an RSA PUBLIC KEY (PKCS#1) was stored as the same key in a PUBLIC "
                     "KEY block (SubjectPublicKeyInfo)", i) != 0)
            return -2;
    }
    out->expires = 0;
    if (exp != NULL && !json_is_null(exp) && parse_time_field(exp, &out->expires) != 0) {
        refuse(im, id, LK_ERR_REG_INVALID,
               "credential %u: expirationTime must be RFC 3339 (2030-01-02T03:04:05Z) or seconds since 1970", i);
        return -1;
    }
    if (admin_cred_expired(out->expires, when, sizeof when) &&
        note_add(im, &im->expired, id, 0, 0,
                 "credential %u expired at %s: imported (IoT Core accepted it), but the broker never "
                 "accepts a token it verifies", i, when) != 0)
        return -2;
    return 0;
}

static int parse_config(struct import *im, const char *id, json_t *v, struct dev_rec *d)
{
    static const char *const fields[] = {"binaryData", "version", "cloudUpdateTime", NULL};
    static const char *const out_only[] = {"deviceAckTime", NULL};
    json_t *b = v, *f;
    size_t len = 0;

    if (json_is_object(v)) {
        unsigned long long ver = 0;
        int64_t t = 0;
        if (check_members(im, id, v, "config: ", fields, out_only) != 0)
            return -1;
        b = json_object_get(v, "binaryData");
        if ((f = json_object_get(v, "version")) != NULL &&
            parse_uint_field(f, (unsigned long long)LK_REG_CONFIG_VERSION_MAX, &ver) != 0) {
            refuse(im, id, LK_ERR_REG_INVALID, "config: version must be a number from 1 to %lld (as a string, "
                                               "as IoT Core writes it)", (long long)LK_REG_CONFIG_VERSION_MAX);
            return -1;
        }
        if ((f = json_object_get(v, "cloudUpdateTime")) != NULL && parse_time_field(f, &t) != 0) {
            refuse(im, id, LK_ERR_REG_INVALID, "config: cloudUpdateTime must be RFC 3339 or seconds since 1970");
            return -1;
        }
        d->spec.config_version = (int64_t)ver; /* 0 (IoT Core's "not yet"): 1 */
        d->spec.config_cloud_update_time = t;
    }
    if (b != NULL && !json_is_string(b)) {
        refuse(im, id, LK_ERR_REG_INVALID, "\"config\" must be a base64 string or IoT Core's DeviceConfig object");
        return -1;
    }
    if (b != NULL && out_b64_decode(json_string_value(b), json_string_length(b), &d->config, &len) != 0) {
        refuse(im, id, LK_ERR_REG_INVALID, "config: binaryData is not base64 (RFC 4648, standard or URL alphabet)");
        return -1;
    }
    d->spec.config = d->config;
    d->spec.config_len = len;
    return 0;
}

static int parse_gateway(struct import *im, const char *id, json_t *v, struct dev_rec *d)
{
    static const char *const fields[] = {"gatewayType", "gatewayAuthMethod", "lastAccessedGatewayId",
                                         "lastAccessedGatewayTime", NULL};
    json_t *f;
    int e;
    if (!json_is_object(v)) {
        refuse(im, id, LK_ERR_REG_INVALID, "gatewayConfig must be an object");
        return -1;
    }
    if (check_members(im, id, v, "gatewayConfig: ", fields, NULL) != 0)
        return -1;
    if ((f = json_object_get(v, "gatewayType")) != NULL) {
        if (parse_enum(im, id, f, ADMIN_ENUM_GATEWAY_TYPE, "gatewayConfig.gatewayType", &e) != 0)
            return -1;
        d->spec.gateway_type = (lk_reg_gateway_type)e;
    }
    if ((f = json_object_get(v, "gatewayAuthMethod")) != NULL) {
        if (parse_enum(im, id, f, ADMIN_ENUM_GATEWAY_AUTH, "gatewayConfig.gatewayAuthMethod", &e) != 0)
            return -1;
        d->spec.gateway_auth_method = (lk_reg_gateway_auth)e;
    }
    if ((f = json_object_get(v, "lastAccessedGatewayId")) != NULL && !json_is_null(f)) {
        if (!json_is_string(f)) {
            refuse(im, id, LK_ERR_REG_INVALID, "gatewayConfig.lastAccessedGatewayId must be a string");
            return -1;
        }
        if (json_string_length(f) > 0)
            d->spec.last_accessed_gateway_id = json_string_value(f);
    }
    if ((f = json_object_get(v, "lastAccessedGatewayTime")) != NULL &&
        parse_time_field(f, &d->spec.last_accessed_gateway_time) != 0) {
        refuse(im, id, LK_ERR_REG_INVALID,
               "gatewayConfig.lastAccessedGatewayTime must be RFC 3339 or seconds since 1970");
        return -1;
    }
    return 0;
}

/* Fill d from the object o; reports and returns -1 when the record is bad
 * (-2: out of memory). */
int parse_device(struct import *im, json_t *o, struct dev_rec *d)
{
    static const char *const fields[] = {"id", "numId", "credentials", "blocked", "metadata", "config",
                                         "logLevel", "gatewayConfig", NULL};
    static const char *const out_only[] = {
        "name", "state", "lastHeartbeatTime", "lastEventTime", "lastStateTime", "lastConfigAckTime",
        "lastConfigSendTime", "lastErrorTime", "lastErrorStatus", NULL};
    json_t *id = json_object_get(o, "id"), *v;
    const char *k, *ids;
    size_t i;
    int rc, e;

    if (!json_is_string(id)) {
        refuse(im, NULL, LK_ERR_REG_INVALID, "\"id\" (a string) is required");
        return -1;
    }
    ids = json_string_value(id);
    d->spec.id = ids;
    if (check_members(im, ids, o, "", fields, out_only) != 0)
        return -1;
    if ((v = json_object_get(o, "numId")) != NULL && !json_is_null(v)) {
        unsigned long long n = 0;
        if (parse_uint_field(v, ~0ULL, &n) != 0) {
            refuse(im, ids, LK_ERR_REG_INVALID, "numId must be an unsigned 64-bit number (a string of digits, "
                                                "as IoT Core writes it)");
            return -1;
        }
        d->spec.num_id = n;
    }
    if ((v = json_object_get(o, "blocked")) != NULL) {
        if (!json_is_boolean(v)) {
            refuse(im, ids, LK_ERR_REG_INVALID, "\"blocked\" must be true or false");
            return -1;
        }
        d->spec.blocked = json_is_true(v);
    }
    if ((v = json_object_get(o, "credentials")) != NULL && !json_is_null(v)) {
        json_t *c;
        if (check_credentials(im, ids, v, LK_DEVICE_CREDENTIALS_MAX, "credentials", "device") != 0)
            return -1;
        json_array_foreach(v, i, c) {
            if ((rc = parse_credential(im, ids, c, (unsigned)i, d)) != 0)
                return rc;
        }
        d->spec.creds = d->creds;
        d->spec.ncreds = (unsigned)json_array_size(v);
    }
    if ((v = json_object_get(o, "metadata")) != NULL && !json_is_null(v)) {
        json_t *mv;
        unsigned n = 0;
        if (!json_is_object(v)) {
            refuse(im, ids, LK_ERR_REG_INVALID, "\"metadata\" must be an object of strings");
            return -1;
        }
        d->meta = calloc(json_object_size(v) + 1, sizeof *d->meta);
        if (d->meta == NULL)
            return -2;
        json_object_foreach(v, k, mv) {
            if (!json_is_string(mv)) {
                refuse(im, ids, LK_ERR_REG_INVALID, "metadata '%s': values are strings", k);
                return -1;
            }
            if (memchr(json_string_value(mv), '\0', json_string_length(mv)) != NULL) {
                refuse(im, ids, LK_ERR_REG_INVALID, "metadata '%s': the value contains a NUL character", k);
                return -1;
            }
            d->meta[n].key = (char *)k;
            d->meta[n].value = (char *)json_string_value(mv);
            d->meta[n].value_len = json_string_length(mv);
            n++;
        }
        d->spec.metadata = d->meta;
        d->spec.nmetadata = n;
    }
    if ((v = json_object_get(o, "config")) != NULL && !json_is_null(v) && parse_config(im, ids, v, d) != 0)
        return -1;
    if ((v = json_object_get(o, "logLevel")) != NULL && !json_is_null(v)) {
        if (parse_enum(im, ids, v, ADMIN_ENUM_LOG_LEVEL, "logLevel", &e) != 0)
            return -1;
        d->spec.log_level = (lk_reg_log_level)e;
    }
    if ((v = json_object_get(o, "gatewayConfig")) != NULL && !json_is_null(v) &&
        parse_gateway(im, ids, v, d) != 0)
        return -1;
    return 0;
}

/* ---- registries ---- */


void reg_rec_free(struct reg_rec *r)
{
    free(r->events);
    free(r->state);
}

static int parse_state_enum(struct import *im, const char *id, json_t *v, const char *obj, const char *field,
                            enum admin_enum e, lk_reg_state *out)
{
    const char *const fields[] = {field, NULL};
    char what[64], full[64];
    json_t *f;
    int x;
    if (!json_is_object(v)) {
        refuse(im, id, LK_ERR_REG_INVALID, "%s must be an object {%s}", obj, field);
        return -1;
    }
    snprintf(what, sizeof what, "%s: ", obj);
    if (check_members(im, id, v, what, fields, NULL) != 0)
        return -1;
    if ((f = json_object_get(v, field)) == NULL)
        return 0;
    snprintf(full, sizeof full, "%s.%s", obj, field);
    if (parse_enum(im, id, f, e, full, &x) != 0)
        return -1;
    *out = (lk_reg_state)x;
    return 0;
}

/* A registry exported from IoT Core project Q ("name": "projects/Q/...")
 * is created in P, and so are the topics it routes to: each pubsubTopicName
 * "projects/Q/topics/T" of cfg (an object, or an array of them) becomes
 * "projects/P/topics/T". Other projects' topics are left for the registry to
 * refuse (it takes only P's). -2 when out of memory. */
static int move_topics(struct import *im, json_t *o, json_t *cfg)
{
    json_t *name = json_object_get(o, "name"), *item;
    const char *n = json_string_value(name), *p = im->a->name.project, *slash;
    size_t i, qlen;
    if (n == NULL || p == NULL || strncmp(n, "projects/", 9) != 0 || (slash = strchr(n + 9, '/')) == NULL)
        return 0;
    qlen = (size_t)(slash - (n + 9));
    for (i = 0; i < (json_is_array(cfg) ? json_array_size(cfg) : 1); i++) {
        const char *t;
        char buf[512];
        item = json_is_array(cfg) ? json_array_get(cfg, i) : cfg;
        t = json_string_value(json_object_get(item, "pubsubTopicName"));
        if (t == NULL || strncmp(t, "projects/", 9) != 0 || strncmp(t + 9, n + 9, qlen) != 0 ||
            strncmp(t + 9 + qlen, "/topics/", 8) != 0 || (strlen(p) == qlen && strncmp(p, n + 9, qlen) == 0))
            continue;
        if ((size_t)snprintf(buf, sizeof buf, "projects/%s/topics/%s", p, t + 9 + qlen + 8) >= sizeof buf)
            continue;
        if (json_object_set_new(item, "pubsubTopicName", json_string(buf)) != 0)
            return -2;
        im->moved_topics++;
    }
    return 0;
}

int parse_registry(struct import *im, json_t *o, struct reg_rec *r)
{
    static const char *const fields[] = {"id", "credentials", "eventNotificationConfigs",
                                         "stateNotificationConfig", "mqttConfig", "httpConfig", "logLevel",
                                         NULL};
    static const char *const out_only[] = {"name", NULL};
    static const char *const cred_fields[] = {"publicKeyCertificate", NULL};
    static const char *const pkc_fields[] = {"format", "certificate", NULL};
    static const char *const pkc_out_only[] = {"x509Details", NULL};
    json_t *id = json_object_get(o, "id"), *v;
    const char *ids;
    size_t i;
    int e;

    if (!json_is_string(id)) {
        refuse(im, NULL, LK_ERR_REG_INVALID, "\"id\" (a string) is required");
        return -1;
    }
    ids = r->id = json_string_value(id);
    if (check_members(im, ids, o, "", fields, out_only) != 0)
        return -1;
    if ((v = json_object_get(o, "credentials")) != NULL && !json_is_null(v)) {
        json_t *c;
        if (check_credentials(im, ids, v, LK_REGISTRY_CERTS_MAX, "CA certificates", "registry") != 0)
            return -1;
        json_array_foreach(v, i, c) {
            json_t *pkc = json_object_get(c, "publicKeyCertificate"), *fmt, *crt;
            char what[80];
            snprintf(what, sizeof what, "credential %zu: ", i);
            if (!json_is_object(c) || check_members(im, ids, c, what, cred_fields, NULL) != 0) {
                if (!json_is_object(c))
                    refuse(im, ids, LK_ERR_REG_INVALID, "credential %zu is not an object", i);
                return -1;
            }
            if (!json_is_object(pkc)) {
                refuse(im, ids, LK_ERR_REG_INVALID,
                       "credential %zu: publicKeyCertificate {format, certificate} is required", i);
                return -1;
            }
            snprintf(what, sizeof what, "credential %zu: publicKeyCertificate: ", i);
            if (check_members(im, ids, pkc, what, pkc_fields, pkc_out_only) != 0)
                return -1;
            fmt = json_object_get(pkc, "format");
            crt = json_object_get(pkc, "certificate");
            if (fmt != NULL && !(json_is_string(fmt) && strcmp(json_string_value(fmt), "X509_CERTIFICATE_PEM") == 0)) {
                refuse(im, ids, LK_ERR_REG_INVALID,
                       "credential %zu: format must be X509_CERTIFICATE_PEM (IoT Core's only one)", i);
                return -1;
            }
            if (!json_is_string(crt)) {
                refuse(im, ids, LK_ERR_REG_INVALID, "credential %zu: certificate (a PEM string) is required", i);
                return -1;
            }
            r->pems[i] = json_string_value(crt);
            r->lens[i] = json_string_length(crt);
        }
        r->spec.ca_pems = r->pems;
        r->spec.ca_lens = r->lens;
        r->spec.ncas = (unsigned)json_array_size(v);
    }
    if ((v = json_object_get(o, "eventNotificationConfigs")) != NULL && !json_is_null(v)) {
        if (!json_is_array(v)) {
            refuse(im, ids, LK_ERR_REG_INVALID, "eventNotificationConfigs must be an array");
            return -1;
        }
        if (json_array_size(v) > 0) {
            if (move_topics(im, o, v) != 0 ||
                (r->events = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
                return -2;
            r->spec.event_notification_json = r->events;
        }
    }
    if ((v = json_object_get(o, "stateNotificationConfig")) != NULL && !json_is_null(v)) {
        json_t *t = json_object_get(v, "pubsubTopicName");
        if (!json_is_object(v)) {
            refuse(im, ids, LK_ERR_REG_INVALID, "stateNotificationConfig must be an object");
            return -1;
        }
        /* {} or an empty topic (as gcloud may print an unset one): none. */
        if (json_object_size(v) > 0 && !(json_object_size(v) == 1 && json_is_string(t) &&
                                         json_string_length(t) == 0)) {
            if (move_topics(im, o, v) != 0 ||
                (r->state = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
                return -2;
            r->spec.state_notification_json = r->state;
        }
    }
    if ((v = json_object_get(o, "mqttConfig")) != NULL && !json_is_null(v) &&
        parse_state_enum(im, ids, v, "mqttConfig", "mqttEnabledState", ADMIN_ENUM_MQTT_STATE, &r->spec.mqtt) != 0)
        return -1;
    if ((v = json_object_get(o, "httpConfig")) != NULL && !json_is_null(v) &&
        parse_state_enum(im, ids, v, "httpConfig", "httpEnabledState", ADMIN_ENUM_HTTP_STATE, &r->spec.http) != 0)
        return -1;
    if ((v = json_object_get(o, "logLevel")) != NULL && !json_is_null(v)) {
        if (parse_enum(im, ids, v, ADMIN_ENUM_LOG_LEVEL, "logLevel", &e) != 0)
            return -1;
        r->spec.log_level = (lk_reg_log_level)e;
    }
    return 0;
}
