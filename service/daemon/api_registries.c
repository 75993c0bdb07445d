/*
 * api_registries.c — projects.locations.registries: list, create, get,
 * patch, delete, bindDeviceToGateway, unbindDeviceFromGateway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

#define REG_PAGE_MAX 1000

/* ---- reading a DeviceRegistry body ---- */

struct reg_body {
    lk_reg_registry_spec spec;
    char *event_json, *state_json;
    const char *pems[LK_REGISTRY_CERTS_MAX];
    size_t lens[LK_REGISTRY_CERTS_MAX];
    int has_event, has_state, has_mqtt, has_http, has_log, has_certs;
    lk_reg_jit jit;               /* latchkeyJitConfig, latchkey's extension */
    int has_jit;
};

static void reg_body_free(struct reg_body *b)
{
    free(b->event_json);
    free(b->state_json);
}

/* {subfolderMatches, pubsubTopicName} with either spelling, into the
 * stored camelCase form. */
static json_t *notify_obj(struct lkd_call *c, json_t *o, int with_subfolder, int *bad)
{
    static const char *const ev[] = {"subfolderMatches", "pubsubTopicName", NULL};
    static const char *const st[] = {"pubsubTopicName", NULL};
    if (!json_is_object(o)) {
        *bad = 1;
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "a notification config must be an object");
        return NULL;
    }
    if (lkd_known_fields(c, o, with_subfolder ? "eventNotificationConfigs" : "stateNotificationConfig",
                         with_subfolder ? ev : st) != 0) {
        *bad = 1;
        return NULL;
    }
    json_t *out = json_object();
    json_t *t = lkd_field(c, o, "pubsubTopicName", NULL, bad);
    if (*bad) {
        json_decref(out);
        return NULL;
    }
    if (t != NULL && !json_is_string(t)) {
        *bad = 1;
        json_decref(out);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pubsubTopicName must be a string");
        return NULL;
    }
    json_t *s = NULL;
    if (with_subfolder) {
        s = lkd_field(c, o, "subfolderMatches", NULL, bad);
        if (*bad || (s != NULL && !json_is_string(s))) {
            if (!*bad)
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "subfolderMatches must be a string");
            *bad = 1;
            json_decref(out);
            return NULL;
        }
    }
    /* Stored in the request's order, as the tool stores what it is given:
     * a registry shows the same whichever way it was made. */
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (v == t)
            json_object_set(out, "pubsubTopicName", t);
        else if (s != NULL && v == s)
            json_object_set(out, "subfolderMatches", s);
    }
    return out;
}

static int state_of(struct lkd_call *c, json_t *cfg, const char *obj, const char *field, const char *const *names,
                    lk_reg_state *out)
{
    static const char *const mq[] = {"mqttEnabledState", NULL};
    static const char *const ht[] = {"httpEnabledState", NULL};
    int bad = 0;
    if (!json_is_object(cfg)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be an object", obj);
        return -1;
    }
    if (lkd_known_fields(c, cfg, obj, field[0] == 'm' ? mq : ht) != 0)
        return -1;
    json_t *v = lkd_field(c, cfg, field, NULL, &bad);
    if (bad)
        return -1;
    if (v == NULL) {
        *out = LK_REG_STATE_UNSPECIFIED;
        return 0;
    }
    int e = lkd_enum(c, v, field, names, lkd_state_values, LKD_STATES);
    if (e < 0)
        return -1;
    *out = (lk_reg_state)e;
    return 0;
}

static int read_registry_body(struct lkd_call *c, json_t *o, struct reg_body *b)
{
    static const char *const fields[] = {"id", "name", "eventNotificationConfigs", "stateNotificationConfig",
                                         "mqttConfig", "httpConfig", "logLevel", "credentials",
                                         "latchkeyJitConfig", NULL};
    int bad = 0;
    memset(b, 0, sizeof *b);
    if (lkd_known_fields(c, o, "device_registry", fields) != 0)
        return -1;
    json_t *v;
    if (lkd_array_field(c, o, "eventNotificationConfigs", 10, &v) != 0)
        return -1;
    if (v != NULL) {
        json_t *a = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            json_t *x = notify_obj(c, e, 1, &bad);
            if (bad) {
                json_decref(a);
                return -1;
            }
            json_array_append_new(a, x);
        }
        b->event_json = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        b->has_event = 1;
    }
    v = lkd_field(c, o, "stateNotificationConfig", NULL, &bad);
    if (bad)
        return -1;
    if (v != NULL) {
        json_t *x = notify_obj(c, v, 0, &bad);
        if (bad)
            return -1;
        b->state_json = json_object_size(x) ? json_dumps(x, JSON_COMPACT) : strdup("");
        json_decref(x);
        b->has_state = 1;
    }
    v = lkd_field(c, o, "latchkeyJitConfig", "latchkey_jit_config", &bad);
    if (bad)
        return -1;
    if (v != NULL) {
        /* {"enabled": bool, "maxDevices": int64}; "registered" is the server's */
        static const char *const jf[] = {"enabled", "maxDevices", "registered", NULL};
        int64_t max = 0;
        json_t *x;
        if (!json_is_object(v)) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "latchkeyJitConfig must be an object");
            return -1;
        }
        if (lkd_known_fields(c, v, "latchkeyJitConfig", jf) != 0)
            return -1;
        x = lkd_field(c, v, "enabled", NULL, &bad);
        if (bad || (x != NULL && !json_is_boolean(x))) {
            if (!bad)
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "latchkeyJitConfig.enabled must be true or false");
            return -1;
        }
        b->jit.enabled = x != NULL && json_is_true(x);
        x = lkd_field(c, v, "maxDevices", "max_devices", &bad);
        if (bad || (x != NULL && lkd_int64(c, x, "latchkeyJitConfig.maxDevices", 1, LK_REG_JIT_MAX_LIMIT, &max) != 0))
            return -1;
        b->jit.max_devices = (uint64_t)max;
        b->has_jit = 1;
    }
    v = lkd_field(c, o, "mqttConfig", NULL, &bad);
    if (bad || (v != NULL && state_of(c, v, "mqttConfig", "mqttEnabledState", lkd_mqtt_state_names,
                                      &b->spec.mqtt) != 0))
        return -1;
    b->has_mqtt = v != NULL;
    v = lkd_field(c, o, "httpConfig", NULL, &bad);
    if (bad || (v != NULL && state_of(c, v, "httpConfig", "httpEnabledState", lkd_http_state_names,
                                      &b->spec.http) != 0))
        return -1;
    b->has_http = v != NULL;
    int level;
    int got = lkd_enum_field(c, o, "logLevel", lkd_log_level_names, lkd_log_level_values, LKD_LOG_LEVELS, &level);
    if (got < 0)
        return -1;
    if (got > 0) {
        b->spec.log_level = (lk_reg_log_level)level;
        b->has_log = 1;
    }
    if (lkd_array_field(c, o, "credentials", LK_REGISTRY_CERTS_MAX, &v) != 0)
        return -1;
    if (v != NULL) {
        size_t i;
        json_t *e;
        static const char *const cf[] = {"publicKeyCertificate", NULL};
        static const char *const pf[] = {"format", "certificate", "x509Details", NULL};
        static const char *const fmt_names[] = {"UNSPECIFIED_PUBLIC_KEY_CERTIFICATE_FORMAT", "X509_CERTIFICATE_PEM"};
        static const int fmt_values[] = {0, 1};
        json_array_foreach(v, i, e) {
            if (!json_is_object(e) || lkd_known_fields(c, e, "credentials", cf) != 0) {
                if (!json_is_object(e))
                    lkd_reply_error(c, LKD_INVALID_ARGUMENT, "each registry credential must be an object");
                return -1;
            }
            json_t *pkc = lkd_field(c, e, "publicKeyCertificate", NULL, &bad);
            if (bad)
                return -1;
            if (!json_is_object(pkc) || lkd_known_fields(c, pkc, "publicKeyCertificate", pf) != 0) {
                if (!json_is_object(pkc))
                    lkd_reply_error(c, LKD_INVALID_ARGUMENT, "credentials[%zu].publicKeyCertificate is missing", i);
                return -1;
            }
            /* lkd_enum answers only what it refuses; the UNSPECIFIED value
             * (by name or number) and a missing format are ours to refuse. */
            json_t *f = lkd_field(c, pkc, "format", NULL, &bad);
            int fmt = (bad || f == NULL) ? 0 : lkd_enum(c, f, "publicKeyCertificate.format", fmt_names, fmt_values, 2);
            if (bad || fmt < 0)
                return -1;
            if (fmt != 1) {
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "publicKeyCertificate.format must be X509_CERTIFICATE_PEM");
                return -1;
            }
            json_t *pem = lkd_field(c, pkc, "certificate", NULL, &bad);
            if (bad || !json_is_string(pem)) {
                if (!bad)
                    lkd_reply_error(c, LKD_INVALID_ARGUMENT, "publicKeyCertificate.certificate must be PEM text");
                return -1;
            }
            b->pems[i] = json_string_value(pem);
            b->lens[i] = json_string_length(pem);
        }
        b->spec.ca_pems = b->pems;
        b->spec.ca_lens = b->lens;
        b->spec.ncas = (unsigned)json_array_size(v);
        b->has_certs = 1;
    }
    b->spec.event_notification_json = b->event_json;
    b->spec.state_notification_json = b->state_json;
    return 0;
}

/* ---- methods ---- */

static void reply_registry(struct lkd_call *c, const lk_reg_name *n)
{
    lk_reg_registry r;
    char why[512] = "";
    lk_err err = lk_registry_get_registry(c->d->reg, n, &r, why, sizeof why);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    json_t *j = lkd_registry_json(c, &r, c->d->reg);
    lk_reg_registry_free(&r);
    if (j == NULL)
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
    else
        lkd_reply_json(c, 200, j);
}

struct reg_page {
    const struct lkd_call *c;
    json_t *a;
    const char *after;
    unsigned limit, n;
    int more;
    lk_registry *reg;
    int all_locations;
    char last[LK_LOCATION_MAX + LK_ID_MAX + 2];
};

/* The page token: the last registry's id, or with every location listed
 * "LOCATION/ID" (the listing's order is location, then id). */
static int reg_page_key(const lk_reg_registry *r, int all_locations, char *key, size_t size)
{
    return snprintf(key, size, "%s%s%s", all_locations ? r->location : "", all_locations ? "/" : "", r->id) <
           (int)size ? 0 : -1;
}

/* a against the n bytes at b, as SQLite's BINARY collation orders them. */
static int cmp_n(const char *a, const char *b, size_t n)
{
    size_t an = strlen(a);
    int d = memcmp(a, b, an < n ? an : n);
    return d != 0 ? d : (an > n) - (an < n);
}

/* Whether r comes after the page token in the listing's order (location,
 * then id). Not one strcmp of "LOCATION/ID": '-' sorts before '/', so
 * "us-central1/a" would sort before "us/z" though location "us" lists
 * first, and the registries of "us-central1" would never be listed. */
static int after_token(const struct reg_page *p, const lk_reg_registry *r)
{
    if (!p->all_locations)
        return strcmp(r->id, p->after) > 0;
    const char *slash = strchr(p->after, '/');
    int d = cmp_n(r->location, p->after, (size_t)(slash - p->after));
    return d != 0 ? d > 0 : strcmp(r->id, slash + 1) > 0;
}

static int reg_page_cb(void *arg, const lk_reg_registry *r)
{
    struct reg_page *p = arg;
    char key[LK_LOCATION_MAX + LK_ID_MAX + 2];
    if (reg_page_key(r, p->all_locations, key, sizeof key) != 0)
        return 0;
    if (p->after != NULL && !after_token(p, r))
        return 0;
    if (p->n == p->limit) {
        p->more = 1;
        return 1;
    }
    /* Registry CA details need a second read on this handle, which a list
     * callback must not make: the list shows them from a get; the JIT
     * setting is added after the list (list_registries). */
    lk_reg_registry copy = *r;
    copy.ncerts = 0;
    json_array_append_new(p->a, lkd_registry_json(p->c, &copy, NULL));
    p->n++;
    memcpy(p->last, key, sizeof key);
    return 0;
}

static void list_registries(struct lkd_call *c, const lk_reg_name *n)
{
    int64_t size = REG_PAGE_MAX;
    const char *tok = lkd_query(c, "pageToken");
    if (lkd_query_int(c, "pageSize", 0, REG_PAGE_MAX, REG_PAGE_MAX, &size) != 0)
        return;
    if (size == 0)
        size = REG_PAGE_MAX;
    int all = n->location == NULL;
    const char *slash = tok != NULL ? strchr(tok, '/') : NULL;
    if (tok != NULL && tok[0] != '\0' &&
        (all ? slash == NULL || !lk_location_valid(tok, (size_t)(slash - tok)) || !lk_id_valid(slash + 1, strlen(slash + 1))
             : !lk_id_valid(tok, strlen(tok)))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pageToken is not one this API gave");
        return;
    }
    struct reg_page p = {c, json_array(), (tok && tok[0]) ? tok : NULL, (unsigned)size, 0, 0, c->d->reg, all, ""};
    char why[512] = "";
    lk_err err = lk_registry_list_registries(c->d->reg, n->project, n->location, reg_page_cb, &p, why, sizeof why);
    if (err != LK_OK) {
        json_decref(p.a);
        lkd_reply_lk(c, err, why);
        return;
    }
    size_t i;
    json_t *item;
    json_array_foreach(p.a, i, item) {
        const char *path = json_string_value(json_object_get(item, "name"));
        /* widths: LK_PROJECT_MAX, LK_LOCATION_MAX, LK_ID_MAX */
        char proj[LK_PROJECT_MAX + 1], loc[LK_LOCATION_MAX + 1], id[LK_ID_MAX + 1];
        if (path != NULL && sscanf(path, "projects/%30[^/]/locations/%63[^/]/registries/%255[^/]", proj, loc, id) == 3)
            lkd_registry_jit_json(item, c->d->reg, proj, loc, id);
    }
    json_t *j = json_object();
    json_object_set_new(j, "deviceRegistries", p.a);
    if (p.more && p.n > 0)
        json_object_set_new(j, "nextPageToken", json_string(p.last));
    lkd_reply_json(c, 200, j);
}

static void create_registry(struct lkd_call *c, const lk_reg_name *parent)
{
    struct reg_body b;
    int bad = 0;
    if (read_registry_body(c, c->body, &b) != 0) {
        reg_body_free(&b);
        return;
    }
    json_t *id = lkd_field(c, c->body, "id", NULL, &bad);
    if (bad) {
        reg_body_free(&b);
        return;
    }
    if (b.has_jit) {
        /* every change is one transaction: the registry first, then its JIT setting */
        reg_body_free(&b);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "latchkeyJitConfig is set after creation "
                        "(PATCH with updateMask=latchkeyJitConfig)");
        return;
    }
    if (!json_is_string(id)) {
        reg_body_free(&b);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "the registry's id is required");
        return;
    }
    lk_reg_name n = *parent;
    n.registry = json_string_value(id);
    char why[512] = "";
    if (!lk_id_valid(n.registry, json_string_length(id))) {
        reg_body_free(&b);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s",
                        lk_id_why("registry id", n.registry, json_string_length(id), why, sizeof why));
        return;
    }
    lk_err err = lk_registry_create_registry_full(c->d->reg, &n, &b.spec, why, sizeof why);
    reg_body_free(&b);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char rp_[LK_REGISTRY_PATH_MAX + 1];
    lkd_log_change(c, "create", "registry", lkd_registry_path(&n, rp_, sizeof rp_), NULL);
    reply_registry(c, &n);
}

static void patch_registry(struct lkd_call *c, const lk_reg_name *n)
{
    char mask[16][48];
    int nm = lkd_mask(c, "updateMask", mask, 16);
    if (nm < 0)
        return;
    if (nm == 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "updateMask is required (e.g. updateMask=mqttConfig)");
        return;
    }
    struct reg_body b;
    if (read_registry_body(c, c->body, &b) != 0) {
        reg_body_free(&b);
        return;
    }
    unsigned set = 0;
    int jit = 0;
    for (int i = 0; i < nm; i++) {
        const char *f = mask[i];
        if (lkd_path_is(f, "latchkeyJitConfig"))
            jit = 1;
        else if (strcmp(f, "eventNotificationConfigs") == 0 || strcmp(f, "eventNotificationConfig") == 0)
            set |= LK_REG_SET_EVENT_NOTIFY;
        else if (strcmp(f, "stateNotificationConfig") == 0)
            set |= LK_REG_SET_STATE_NOTIFY;
        else if (lkd_path_is(f, "mqttConfig"))
            set |= LK_REG_SET_MQTT;
        else if (lkd_path_is(f, "httpConfig"))
            set |= LK_REG_SET_HTTP;
        else if (strcmp(f, "logLevel") == 0)
            set |= LK_REG_SET_REG_LOG_LEVEL;
        else if (strcmp(f, "credentials") == 0)
            set |= LK_REG_SET_CERTS;
        else {
            reg_body_free(&b);
            lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                            "updateMask: %s cannot be changed (only eventNotificationConfigs, "
                            "stateNotificationConfig, mqttConfig, httpConfig, logLevel, credentials, "
                            "latchkeyJitConfig)", f);
            return;
        }
    }
    if (jit) {
        char why[512] = "";
        lk_err err;
        if (set != 0) {
            reg_body_free(&b);
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "updateMask: latchkeyJitConfig is changed alone "
                            "(one change, one transaction)");
            return;
        }
        /* absent from the body: off (proto3); the cap kept unless given */
        lk_reg_jit cur;
        err = lk_registry_get_jit(c->d->reg, n, &cur, why, sizeof why);
        if (err == LK_OK) {
            cur.enabled = b.has_jit && b.jit.enabled;
            if (b.has_jit && b.jit.max_devices)
                cur.max_devices = b.jit.max_devices;
            err = lk_registry_set_jit(c->d->reg, n, &cur, why, sizeof why);
        }
        reg_body_free(&b);
        if (err != LK_OK) {
            lkd_reply_lk(c, err, why);
            return;
        }
        char rp_[LK_REGISTRY_PATH_MAX + 1];
        lkd_log_change(c, "set_jit", "registry", lkd_registry_path(n, rp_, sizeof rp_),
                       "%s just-in-time registration", cur.enabled ? "enabled" : "disabled");
        reply_registry(c, n);
        return;
    }
    /* A field in the mask but absent from the body is cleared (proto3). */
    if ((set & LK_REG_SET_MQTT) && !b.has_mqtt)
        b.spec.mqtt = LK_REG_STATE_ENABLED;
    if ((set & LK_REG_SET_HTTP) && !b.has_http)
        b.spec.http = LK_REG_STATE_ENABLED;
    char why[512] = "";
    lk_err err = lk_registry_patch_registry(c->d->reg, n, &b.spec, set, why, sizeof why);
    reg_body_free(&b);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char rp_[LK_REGISTRY_PATH_MAX + 1];
    lkd_log_change(c, "update", "registry", lkd_registry_path(n, rp_, sizeof rp_), NULL);
    reply_registry(c, n);
}

static void bind_gateway(struct lkd_call *c, const lk_reg_name *n, int unbind)
{
    static const char *const fields[] = {"gatewayId", "deviceId", NULL};
    int bad = 0;
    if (lkd_known_fields(c, c->body, unbind ? "unbind_request" : "bind_request", fields) != 0)
        return;
    json_t *g = lkd_field(c, c->body, "gatewayId", NULL, &bad);
    json_t *dv = bad ? NULL : lkd_field(c, c->body, "deviceId", NULL, &bad);
    if (bad)
        return;
    if (!json_is_string(g) || !json_is_string(dv)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "gatewayId and deviceId are required (ids or numIds)");
        return;
    }
    char why[512] = "";
    lk_err err = unbind ? lk_registry_unbind(c->d->reg, n, json_string_value(g), json_string_value(dv), why,
                                             sizeof why)
                        : lk_registry_bind(c->d->reg, n, json_string_value(g), json_string_value(dv), why,
                                           sizeof why);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char rp_[LK_REGISTRY_PATH_MAX + 1];
    lkd_log_change(c, unbind ? "unbind" : "bind", "registry", lkd_registry_path(n, rp_, sizeof rp_),
                   "%s %s and %s", unbind ? "unbound" : "bound", json_string_value(g), json_string_value(dv));
    lkd_reply_json(c, 200, json_object());
}

void lkd_api_registries(struct lkd_call *c, const lk_reg_name *n, int has_registry)
{
    char why[512] = "";
    if (!has_registry) {
        if (c->verb != NULL) {
            lkd_reply_error(c, LKD_NOT_FOUND, "no method :%.64s on registries", c->verb);
            return;
        }
        if (c->method == EVHTTP_REQ_GET) {
            if (lkd_require(c, n->project, LKD_ROLE_VIEWER) == 0)
                list_registries(c, n);
        } else if (c->method == EVHTTP_REQ_POST) {
            if (lkd_require(c, n->project, LKD_ROLE_EDITOR) == 0)
                create_registry(c, n);
        } else {
            lkd_reply_error(c, LKD_NOT_FOUND, "registries take GET (list) or POST (create)");
        }
        return;
    }
    if (c->verb != NULL) {
        int unbind = strcmp(c->verb, "unbindDeviceFromGateway") == 0;
        if (!unbind && strcmp(c->verb, "bindDeviceToGateway") != 0) {
            lkd_reply_error(c, LKD_NOT_FOUND, "no method :%.64s on a registry", c->verb);
            return;
        }
        if (c->method != EVHTTP_REQ_POST) {
            lkd_reply_error(c, LKD_NOT_FOUND, ":%s takes POST", c->verb);
            return;
        }
        if (lkd_require(c, n->project, LKD_ROLE_PROVISIONER) == 0)
            bind_gateway(c, n, unbind);
        return;
    }
    switch (c->method) {
    case EVHTTP_REQ_GET:
        if (lkd_require(c, n->project, LKD_ROLE_VIEWER) == 0)
            reply_registry(c, n);
        return;
    case EVHTTP_REQ_PATCH:
        if (lkd_require(c, n->project, LKD_ROLE_EDITOR) == 0)
            patch_registry(c, n);
        return;
    case EVHTTP_REQ_DELETE:
        if (lkd_require(c, n->project, LKD_ROLE_EDITOR) != 0)
            return;
        {
            lk_err err = lk_registry_delete_registry(c->d->reg, n, why, sizeof why);
            if (err != LK_OK) {
                lkd_reply_lk(c, err, why);
                return;
            }
        }
        char rp_[LK_REGISTRY_PATH_MAX + 1];
        lkd_log_change(c, "delete", "registry", lkd_registry_path(n, rp_, sizeof rp_), NULL);
        lkd_reply_json(c, 200, json_object());
        return;
    default:
        lkd_reply_error(c, LKD_NOT_FOUND, "a registry takes GET, PATCH or DELETE");
        return;
    }
}
