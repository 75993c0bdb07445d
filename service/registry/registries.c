/*
 * registries.c — registries and their CA certificates (lk_registry.h): the
 * rules for notification JSON, states, log levels and CA certificates, and
 * the transactions that create, read, update and delete them.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h> /* OPENSSL_free, for the DER certs.c returns */

#include "facade.h"

#define NOTIFICATION_JSON_MAX (64u * 1024u)
#define EVENT_NOTIFICATIONS_MAX LK_NOTIFY_CONFIGS_MAX

/* One notification config's members (what names it for the reason): a
 * pubsubTopicName of the registry's project (required), and for an event
 * config a subfolderMatches that is "" or a valid subfolder. */
static lk_err check_config(const char *project, const char *what, json_t *item, int array,
                           char *why, size_t why_size)
{
    json_t *t = json_object_get(item, "pubsubTopicName");
    json_t *sub = json_object_get(item, "subfolderMatches");
    lk_err err;
    char b[80];
    /* A state config {} is none (as IoT Core shows an unset one); an event
     * config without a topic could route nothing. */
    if (t == NULL && !array)
        return LK_OK;
    if (t == NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s has no pubsubTopicName (projects/%s/topics/TOPIC)", what, project);
    if ((err = lk_reg__check_topic_path(project, what, json_string_value(t), why, why_size)) !=
        LK_OK)
        return err;
    if (array && sub != NULL && json_string_length(sub) > 0 &&
        (strlen(json_string_value(sub)) != json_string_length(sub) ||
         !lk_subfolder_valid(json_string_value(sub), json_string_length(sub))))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s: subfolderMatches '%s' is not a valid subfolder (1 to 256 characters, "
                     "no '+' or '#', not starting or ending with '/', no empty level; \"\" "
                     "matches every event)", what,
                     lk_reg__shown(json_string_value(sub), b, sizeof b));
    return LK_OK;
}

static lk_err check_json(const char *project, const char *what, const char *text, int array,
                         char *why, size_t why_size)
{
    json_t *j, *item;
    json_error_t jerr;
    size_t i, len = strlen(text), n;
    lk_err err = LK_OK;

    if (len > NOTIFICATION_JSON_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "%s is %zu bytes; the limit is %u", what,
                     len, NOTIFICATION_JSON_MAX);
    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s is not valid JSON (line %d, column %d)", what, jerr.line, jerr.column);
    if (array && (!json_is_array(j) || json_array_size(j) > EVENT_NOTIFICATIONS_MAX)) {
        err = failf(why, why_size, LK_ERR_REG_INVALID,
                    "%s must be a JSON array of at most %u objects", what,
                    EVENT_NOTIFICATIONS_MAX);
        goto exit;
    }
    if (!array && !json_is_object(j)) {
        err = failf(why, why_size, LK_ERR_REG_INVALID, "%s must be a JSON object", what);
        goto exit;
    }
    n = array ? json_array_size(j) : 1;
    for (i = 0; i < n; i++) {
        const char *key;
        json_t *v;
        item = array ? json_array_get(j, i) : j;
        if (!json_is_object(item)) {
            err = failf(why, why_size, LK_ERR_REG_INVALID,
                        "%s[%zu] must be a JSON object", what, i);
            goto exit;
        }
        json_object_foreach(item, key, v) {
            int known = strcmp(key, "pubsubTopicName") == 0 ||
                        (array && strcmp(key, "subfolderMatches") == 0);
            char b[80];
            if (!known) {
                err = failf(why, why_size, LK_ERR_REG_INVALID,
                            "%s has member '%s'; allowed: pubsubTopicName%s", what,
                            lk_reg__shown(key, b, sizeof b), array ? ", subfolderMatches" : "");
                goto exit;
            }
            if (!json_is_string(v)) {
                err = failf(why, why_size, LK_ERR_REG_INVALID, "%s: %s must be a string", what,
                            key);
                goto exit;
            }
        }
        if (array) {
            char w[64];
            snprintf(w, sizeof w, "%s[%zu]", what, i);
            err = check_config(project, w, item, 1, why, why_size);
        } else {
            err = check_config(project, what, item, 0, why, why_size);
        }
        if (err != LK_OK)
            goto exit;
    }
exit:
    json_decref(j);
    return err;
}

/* Both notification texts (NULL or "": none) of a registry of project. */
static lk_err check_notifications(const char *project, const char *event, const char *state,
                                  char *why, size_t why_size)
{
    lk_err err = LK_OK;
    if (event != NULL && event[0] != '\0')
        err = check_json(project, "eventNotificationConfigs", event, 1, why, why_size);
    if (err == LK_OK && state != NULL && state[0] != '\0')
        err = check_json(project, "stateNotificationConfig", state, 0, why, why_size);
    return err;
}

/* *field = a copy of text ("": none); NULL text leaves it as it is. */
static lk_err set_json(char **field, const char *text)
{
    if (text == NULL)
        return LK_OK;
    free(*field);
    *field = text[0] != '\0' ? strdup(text) : NULL;
    return text[0] != '\0' && *field == NULL ? LK_ERR_NOMEM : LK_OK;
}

/* The CA list's size: at most LK_REGISTRY_CERTS_MAX, and certificates when
 * any are counted. */
static lk_err check_ca_count(const lk_reg_registry_spec *spec, char *why, size_t why_size)
{
    if (spec->ncas > LK_REGISTRY_CERTS_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "%u CA certificates given; a registry has at most %u", spec->ncas,
                     LK_REGISTRY_CERTS_MAX);
    if (spec->ncas > 0 && (spec->ca_pems == NULL || spec->ca_lens == NULL))
        return failf(why, why_size, LK_ERR_ARG, "CA certificate count %u without certificates",
                     spec->ncas);
    return LK_OK;
}

/* DER of the certificates a registry has. */
struct stored_ders {
    unsigned char *der[LK_REGISTRY_CERTS_MAX];
    size_t len[LK_REGISTRY_CERTS_MAX];
    unsigned n;
};

/* 1 when pem is one of kept's certificates (same DER). */
static int is_kept(const struct stored_ders *kept, const char *pem, size_t len)
{
    unsigned char *d = NULL;
    size_t dl = 0;
    unsigned j;
    int had = 0;
    if (lk_reg__cert_der(pem, len, &d, &dl) != LK_OK)
        return 0;
    for (j = 0; j < kept->n && !had; j++)
        had = kept->len[j] == dl && memcmp(kept->der[j], d, dl) == 0;
    OPENSSL_free(d);
    return had;
}

/* Each CA certificate of a counted spec as add_cert checks it (the CA rules
 * at now, no two alike), except that one kept has (kept not NULL: a patch)
 * is not refused for having expired since: a patch that keeps it must not
 * fail on it. */
static lk_err check_cas(lk_registry *reg, const lk_reg_registry_spec *spec,
                        const struct stored_ders *kept, char *why, size_t why_size)
{
    unsigned char *der[LK_REGISTRY_CERTS_MAX];
    size_t dl[LK_REGISTRY_CERTS_MAX];
    unsigned i, j, n = 0;
    lk_err err = LK_OK;

    for (i = 0; i < spec->ncas && err == LK_OK; i++) {
        char w[400] = "";
        int64_t at = lk_reg__now(reg);
        if (kept != NULL && spec->ca_pems[i] != NULL &&
            is_kept(kept, spec->ca_pems[i], spec->ca_lens[i]))
            at = INT64_MIN; /* every rule but the expiry */
        err = spec->ca_pems[i] == NULL
                  ? LK_ERR_ARG
                  : lk_reg__ca_check(spec->ca_pems[i], spec->ca_lens[i], at, &der[n], &dl[n], w,
                                     sizeof w);
        if (err != LK_OK) {
            (void)failf(why, why_size, err, "CA certificate %u: %s", i,
                        w[0] != '\0' ? w : "missing");
            break;
        }
        n++;
        for (j = 0; j + 1 < n; j++)
            if (dl[j] == dl[n - 1] && memcmp(der[j], der[n - 1], dl[j]) == 0) {
                err = failf(why, why_size, LK_ERR_REG_INVALID,
                            "CA certificates %u and %u are the same certificate", j, i);
                break;
            }
    }
    for (j = 0; j < n; j++)
        OPENSSL_free(der[j]);
    return err;
}

/* Everything about a registry spec that needs no database: states, log
 * level, notification JSON, and each CA certificate (as add_cert: the CA
 * rules at now, no two alike, at most LK_REGISTRY_CERTS_MAX). */
lk_err lk_reg__check_registry_spec(lk_registry *reg, const lk_reg_name *name,
                                   const lk_reg_registry_spec *spec, char *why, size_t why_size)
{
    lk_err err;

    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry given");
    /* A new registry only: one made earlier keeps its location. */
    if (strcmp(name->location, LK_TOPICS_LEVEL) == 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "location '%s' is reserved: it is a level of the MQTT topics that carry "
                     "messages routed to Pub/Sub topics (latchkey/P/topics/...)",
                     LK_TOPICS_LEVEL);
    if (strcmp(name->location, LK_PRESENCE_LEVEL) == 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "location '%s' is reserved: it is a level of the MQTT topics that carry "
                     "devices' presence (latchkey/P/presence/...)",
                     LK_PRESENCE_LEVEL);
    if ((err = lk_reg__check_state("mqtt", spec->mqtt, why, why_size)) != LK_OK ||
        (err = lk_reg__check_state("http", spec->http, why, why_size)) != LK_OK ||
        (err = lk_reg__check_log_level("registry", spec->log_level, why, why_size)) != LK_OK)
        return err;
    if ((err = check_notifications(name->project, spec->event_notification_json,
                                   spec->state_notification_json, why, why_size)) != LK_OK ||
        (err = check_ca_count(spec, why, why_size)) != LK_OK)
        return err;
    return check_cas(reg, spec, NULL, why, why_size);
}

lk_err lk_reg__registry_absent(lk_registry *reg, const lk_reg_name *name, char *why,
                               size_t why_size)
{
    int64_t rid;
    char p[400];
    lk_err err = reg->ops->registry_find(reg->be, name, &rid);
    if (err == LK_OK)
        return failf(why, why_size, LK_ERR_REG_EXISTS, "%s already exists",
                     lk_reg__path(name, p, sizeof p));
    return err == LK_ERR_REG_NOT_FOUND ? LK_OK : lk_reg__be_fail(reg, err, why, why_size);
}

/* Create the registry of a checked spec inside the current write
 * transaction, once lk_reg__registry_absent() has said it is not there. */
lk_err lk_reg__insert_registry(lk_registry *reg, const lk_reg_name *name,
                               const lk_reg_registry_spec *spec, char *why, size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    char p[400];
    unsigned i;
    lk_err err;

    memset(&r, 0, sizeof r);
    r.project = (char *)name->project;
    r.location = (char *)name->location;
    r.id = (char *)name->registry;
    r.mqtt = spec->mqtt == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : spec->mqtt;
    r.http = spec->http == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : spec->http;
    if (spec->event_notification_json != NULL && spec->event_notification_json[0] != '\0')
        r.event_notification_json = (char *)spec->event_notification_json;
    if (spec->state_notification_json != NULL && spec->state_notification_json[0] != '\0')
        r.state_notification_json = (char *)spec->state_notification_json;
    r.log_level = spec->log_level;
    r.created = lk_reg__now(reg);
    err = reg->ops->registry_insert(reg->be, &r, &rid);
    if (err == LK_ERR_REG_EXISTS)
        return failf(why, why_size, err, "%s already exists", lk_reg__path(name, p, sizeof p));
    for (i = 0; err == LK_OK && i < spec->ncas; i++)
        err = reg->ops->cert_insert(reg->be, rid, spec->ca_pems[i], spec->ca_lens[i]);
    return err != LK_OK ? lk_reg__be_fail(reg, err, why, why_size) : LK_OK;
}

lk_err lk_registry_create_registry_full(lk_registry *reg, const lk_reg_name *name,
                                        const lk_reg_registry_spec *spec, char *why,
                                        size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_registry_spec(reg, name, spec, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__registry_absent(reg, name, why, why_size);
    if (err == LK_OK)
        err = lk_reg__insert_registry(reg, name, spec, why, why_size);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_create_registry(lk_registry *reg, const lk_reg_name *name, lk_reg_state mqtt,
                                   lk_reg_state http, char *why, size_t why_size)
{
    lk_reg_registry_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.mqtt = mqtt;
    spec.http = http;
    return lk_registry_create_registry_full(reg, name, &spec, why, why_size);
}

lk_err lk_registry_get_registry(lk_registry *reg, const lk_reg_name *name, lk_reg_registry *out,
                                char *why, size_t why_size)
{
    int64_t rid;
    lk_err err;

    if (out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no output given");
    memset(out, 0, sizeof *out);
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->registry_get(reg->be, rid, out)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    err = lk_reg__leave(reg, err, TX_READ, why, why_size);
    if (err != LK_OK)
        lk_reg_registry_free(out);
    return err;
}

lk_err lk_registry_list_registries(lk_registry *reg, const char *project, const char *location,
                                   int (*cb)(void *arg, const lk_reg_registry *r), void *arg,
                                   char *why, size_t why_size)
{
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__check_place(project, location, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->registry_list(reg->be, project, location, cb, arg);
    if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_update_registry(lk_registry *reg, const lk_reg_name *name, lk_reg_state mqtt,
                                   lk_reg_state http, const char *event_notification_json,
                                   const char *state_notification_json, char *why,
                                   size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    lk_err err;

    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_state("mqtt", mqtt, why, why_size)) != LK_OK ||
        (err = lk_reg__check_state("http", http, why, why_size)) != LK_OK ||
        (err = check_notifications(name->project, event_notification_json,
                                   state_notification_json, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    memset(&r, 0, sizeof r);
    err = lk_reg__find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->registry_get(reg->be, rid, &r)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK) {
        if (mqtt != LK_REG_STATE_UNSPECIFIED)
            r.mqtt = mqtt;
        if (http != LK_REG_STATE_UNSPECIFIED)
            r.http = http;
        if (set_json(&r.event_notification_json, event_notification_json) != LK_OK ||
            set_json(&r.state_notification_json, state_notification_json) != LK_OK)
            err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
    }
    if (err == LK_OK && (err = reg->ops->registry_update(reg->be, rid, &r)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    lk_reg_registry_free(&r);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_REGISTRY, 0, why, why_size);
}

lk_err lk_registry_delete_registry(lk_registry *reg, const lk_reg_name *name, char *why,
                                   size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    char p[400];
    lk_err err;

    memset(&r, 0, sizeof r);
    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->registry_get(reg->be, rid, &r)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && r.ndevices > 0)
        err = failf(why, why_size, LK_ERR_REG_NOT_EMPTY,
                    "%s still has %llu device%s; delete them first (a registry must be empty "
                    "to be deleted)", lk_reg__path(name, p, sizeof p),
                    (unsigned long long)r.ndevices, r.ndevices == 1 ? "" : "s");
    if (err == LK_OK && (err = reg->ops->registry_delete(reg->be, rid)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    lk_reg_registry_free(&r);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_REGISTRY, 0, why, why_size);
}

/* ------------------------------------------------------------------ */
/* Registry CA certificates                                            */

struct dup_scan {
    const unsigned char *der;
    size_t der_len;
    unsigned count;
    int dup;          /* index + 1 of an identical certificate */
    lk_err err;
};

static int dup_scan_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    struct dup_scan *ds = arg;
    unsigned char *der = NULL;
    size_t dl = 0;
    ds->count = index + 1;
    ds->err = lk_reg__cert_der(pem, len, &der, &dl);
    if (ds->err != LK_OK)
        return 1;
    if (dl == ds->der_len && memcmp(der, ds->der, dl) == 0 && ds->dup == 0)
        ds->dup = (int)index + 1;
    OPENSSL_free(der);
    return 0;
}

lk_err lk_registry_add_cert(lk_registry *reg, const lk_reg_name *name, const char *pem,
                            size_t pem_len, unsigned *index, char *why, size_t why_size)
{
    struct dup_scan ds;
    unsigned char *der = NULL;
    size_t dl = 0;
    int64_t rid;
    char p[400];
    lk_err err;

    if (index != NULL)
        *index = 0;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK)
        return err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__ca_check(pem, pem_len, lk_reg__now(reg), &der, &dl, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK) {
        OPENSSL_free(der);
        return err;
    }
    memset(&ds, 0, sizeof ds);
    ds.der = der;
    ds.der_len = dl;
    err = lk_reg__find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->cert_list(reg->be, rid, dup_scan_cb, &ds)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && ds.err != LK_OK)
        err = failf(why, why_size, ds.err, "a stored registry CA certificate cannot be read");
    if (err == LK_OK && ds.dup != 0)
        err = failf(why, why_size, LK_ERR_REG_EXISTS,
                    "this certificate is already registry CA certificate %d of %s", ds.dup - 1,
                    lk_reg__path(name, p, sizeof p));
    if (err == LK_OK && ds.count >= LK_REGISTRY_CERTS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "%s already has %u CA certificates; a registry has at most %u",
                    lk_reg__path(name, p, sizeof p), ds.count, LK_REGISTRY_CERTS_MAX);
    if (err == LK_OK && (err = reg->ops->cert_insert(reg->be, rid, pem, pem_len)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    OPENSSL_free(der);
    err = lk_reg__leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK && index != NULL)
        *index = ds.count;
    return err;
}

struct cert_list_ctx {
    int (*cb)(void *arg, const lk_reg_cert *c);
    void *arg;
    lk_err err;
};

static int cert_list_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    struct cert_list_ctx *ctx = arg;
    lk_reg_cert c;
    int stop;
    memset(&c, 0, sizeof c);
    c.index = index;
    ctx->err = lk_reg__cert_details(pem, len, &c);
    if (ctx->err != LK_OK) {
        lk_reg_cert_free(&c);
        return 1;
    }
    stop = ctx->cb(ctx->arg, &c);
    lk_reg_cert_free(&c);
    return stop;
}

lk_err lk_registry_list_certs(lk_registry *reg, const lk_reg_name *name,
                              int (*cb)(void *arg, const lk_reg_cert *c), void *arg, char *why,
                              size_t why_size)
{
    struct cert_list_ctx ctx = {cb, arg, LK_OK};
    int64_t rid;
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->cert_list(reg->be, rid, cert_list_cb, &ctx)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && ctx.err != LK_OK)
        err = failf(why, why_size, ctx.err, "a stored registry CA certificate cannot be read");
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_delete_cert(lk_registry *reg, const lk_reg_name *name, unsigned index,
                               char *why, size_t why_size)
{
    int64_t rid;
    char p[400];
    lk_err err;

    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->cert_delete(reg->be, rid, index);
    if (err == LK_ERR_REG_NOT_FOUND) {
        lk_reg_registry r;
        unsigned n = 0;
        if (reg->ops->registry_get(reg->be, rid, &r) == LK_OK) {
            n = r.ncerts;
            lk_reg_registry_free(&r);
        }
        err = failf(why, why_size, err, "%s has no CA certificate %u (it has %u, numbered from 0)",
                    lk_reg__path(name, p, sizeof p), index, n);
    } else if (err != LK_OK) {
        err = lk_reg__be_fail(reg, err, why, why_size);
    }
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

/* ------------------------------------------------------------------ */
/* Patch (REST registries.patch)                                       */

#define PATCH_MASK                                                                           \
    (LK_REG_SET_MQTT | LK_REG_SET_HTTP | LK_REG_SET_EVENT_NOTIFY | LK_REG_SET_STATE_NOTIFY |  \
     LK_REG_SET_REG_LOG_LEVEL | LK_REG_SET_CERTS)
/* The fields the registry's own row holds (registry_update). */
#define ROW_MASK \
    (LK_REG_SET_MQTT | LK_REG_SET_HTTP | LK_REG_SET_EVENT_NOTIFY | LK_REG_SET_STATE_NOTIFY)

static int stored_der_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    struct stored_ders *s = arg;
    (void)index;
    if (s->n == LK_REGISTRY_CERTS_MAX)
        return 0; /* more than the limit (stored by hand): not "had" */
    /* One that no longer parses is simply not among those kept. */
    if (lk_reg__cert_der(pem, len, &s->der[s->n], &s->len[s->n]) == LK_OK)
        s->n++;
    return 0;
}

/* The new CA list, checked against what registry rid has (check_cas). */
static lk_err check_patch_cas(lk_registry *reg, int64_t rid, const lk_reg_registry_spec *spec,
                              char *why, size_t why_size)
{
    struct stored_ders st;
    unsigned j;
    lk_err err;

    memset(&st, 0, sizeof st);
    if ((err = reg->ops->cert_list(reg->be, rid, stored_der_cb, &st)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = check_cas(reg, spec, &st, why, why_size);
    for (j = 0; j < st.n; j++)
        OPENSSL_free(st.der[j]);
    return err;
}

/* What needs no database. */
static lk_err check_patch(const char *project, const lk_reg_registry_spec *spec, unsigned mask,
                          char *why, size_t why_size)
{
    lk_err err = LK_OK;
    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry given");
    if (mask == 0 || (mask & ~PATCH_MASK))
        return failf(why, why_size, LK_ERR_ARG,
                     "the patch mask must name fields to change: LK_REG_SET_MQTT, "
                     "LK_REG_SET_HTTP, LK_REG_SET_EVENT_NOTIFY, LK_REG_SET_STATE_NOTIFY, "
                     "LK_REG_SET_REG_LOG_LEVEL, LK_REG_SET_CERTS");
    if (mask & LK_REG_SET_MQTT)
        err = lk_reg__check_state("mqtt", spec->mqtt, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_HTTP))
        err = lk_reg__check_state("http", spec->http, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_REG_LOG_LEVEL))
        err = lk_reg__check_log_level("registry", spec->log_level, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_EVENT_NOTIFY))
        err = check_notifications(project, spec->event_notification_json, NULL, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_STATE_NOTIFY))
        err = check_notifications(project, NULL, spec->state_notification_json, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_CERTS))
        err = check_ca_count(spec, why, why_size);
    return err;
}

lk_err lk_registry_patch_registry(lk_registry *reg, const lk_reg_name *name,
                                  const lk_reg_registry_spec *spec, unsigned mask, char *why,
                                  size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    unsigned i;
    lk_err err;

    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = check_patch(name->project, spec, mask, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    memset(&r, 0, sizeof r);
    err = lk_reg__find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_CERTS))
        err = check_patch_cas(reg, rid, spec, why, why_size);
    /* The registry's row (read with its certificate and device counts) only
     * for a field it holds. */
    if (err == LK_OK && (mask & ROW_MASK) &&
        (err = reg->ops->registry_get(reg->be, rid, &r)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (mask & ROW_MASK)) {
        /* UNSPECIFIED means enabled, as at creation */
        if (mask & LK_REG_SET_MQTT)
            r.mqtt = spec->mqtt == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : spec->mqtt;
        if (mask & LK_REG_SET_HTTP)
            r.http = spec->http == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : spec->http;
        if (((mask & LK_REG_SET_EVENT_NOTIFY) &&
             set_json(&r.event_notification_json, spec->event_notification_json != NULL
                                                      ? spec->event_notification_json
                                                      : "") != LK_OK) ||
            ((mask & LK_REG_SET_STATE_NOTIFY) &&
             set_json(&r.state_notification_json, spec->state_notification_json != NULL
                                                      ? spec->state_notification_json
                                                      : "") != LK_OK))
            err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        if (err == LK_OK && (err = reg->ops->registry_update(reg->be, rid, &r)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK && (mask & LK_REG_SET_REG_LOG_LEVEL) &&
        (err = reg->ops->registry_set_log_level(reg->be, rid, spec->log_level)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_CERTS)) {
        if ((err = reg->ops->cert_clear(reg->be, rid)) != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
        for (i = 0; err == LK_OK && i < spec->ncas; i++)
            if ((err = reg->ops->cert_insert(reg->be, rid, spec->ca_pems[i], spec->ca_lens[i])) !=
                LK_OK)
                err = lk_reg__be_fail(reg, err, why, why_size);
    }
    lk_reg_registry_free(&r);
    /* who may connect, or where events and states go (the broker caches the
     * notification configs), may change; and how much the broker logs of
     * its devices (it keeps each connection's log level) */
    if (mask & (LK_REG_SET_MQTT | LK_REG_SET_HTTP | LK_REG_SET_EVENT_NOTIFY | LK_REG_SET_STATE_NOTIFY |
                LK_REG_SET_REG_LOG_LEVEL))
        return lk_reg__leave_changed(reg, err, LK_CHANGE_REGISTRY, 0, why, why_size);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}
