/*
 * What the devices commands (cmd_devices.c, cmd_device_data.c) share: IoT
 * Core's JSON of a device and its parts, the device a command names, reading
 * a credential, and what is said after a change.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "regops.h"
#include "devices.h"

/* ---- JSON shapes ---- */

json_t *admin_cred_json(const lk_reg_credential *c)
{
    json_t *pk = json_pack("{s:s,s:s}", "format", lk_cred_format_name(c->format), "key", c->pem ? c->pem : "");
    json_t *j = json_object();
    if (pk == NULL || j == NULL) {
        json_decref(pk);
        json_decref(j);
        return NULL;
    }
    json_object_set_new(j, "publicKey", pk);
    /* gcloud showed a credential without expiry as 1970-01-01T00:00:00Z. */
    json_object_set_new(j, "expirationTime", out_jtime(c->expires));
    /* Not IoT Core's: what tells credentials apart (and what 'token verify'
     * names), SHA-256 of the DER public key. Ignored by 'devices import'. */
    {
        char hex[65];
        if (admin_cred_sha256(c->format, c->pem, hex) == 0)
            json_object_set_new(j, "sha256", json_string(hex));
    }
    return j;
}

static json_t *device_name(const lk_reg_device *d)
{
    char s[LK_DEVICE_PATH_MAX + 1], num[24];
    snprintf(num, sizeof num, "%llu", (unsigned long long)d->num_id);
    if (lk_device_path(d->project, d->location, d->registry, num, s, sizeof s, NULL) != LK_OK)
        return NULL;
    return json_string(s);
}

static void set_time(json_t *j, const char *key, int64_t t)
{
    if (t != 0)
        json_object_set_new(j, key, out_jtime(t));
}

json_t *admin_device_json(const lk_reg_device *d)
{
    json_t *j = json_object(), *creds = json_array();
    unsigned i;
    if (j == NULL || creds == NULL) {
        json_decref(j);
        json_decref(creds);
        return NULL;
    }
    json_object_set_new(j, "id", json_string(d->id));
    json_object_set_new(j, "name", device_name(d));
    json_object_set_new(j, "numId", out_ju64(d->num_id));
    for (i = 0; i < d->ncreds && i < LK_DEVICE_CREDENTIALS_MAX; i++)
        json_array_append_new(creds, admin_cred_json(&d->creds[i]));
    json_object_set_new(j, "credentials", creds);
    set_time(j, "lastHeartbeatTime", d->last_heartbeat);
    set_time(j, "lastEventTime", d->last_event);
    set_time(j, "lastStateTime", d->last_state);
    set_time(j, "lastConfigAckTime", d->last_config_ack);
    set_time(j, "lastConfigSendTime", d->last_config_send);
    json_object_set_new(j, "blocked", json_boolean(d->blocked));
    set_time(j, "lastErrorTime", d->last_error);
    if (d->last_error_status != NULL)
        json_object_set_new(j, "lastErrorStatus",
                            json_pack("{s:o}", "message",
                                      out_jtext(d->last_error_status, strlen(d->last_error_status))));
    if (d->log_level != LK_LOG_LEVEL_UNSPECIFIED)
        json_object_set_new(j, "logLevel", json_string(admin_enum_name(ADMIN_ENUM_LOG_LEVEL, (int)d->log_level)));
    if (d->nmetadata > 0) {
        json_t *m = json_object();
        for (i = 0; m != NULL && i < d->nmetadata; i++)
            json_object_set_new(m, d->metadata[i].key, out_jtext(d->metadata[i].value, d->metadata[i].value_len));
        json_object_set_new(j, "metadata", m);
    }
    if (d->gateway_type != LK_GATEWAY_TYPE_UNSPECIFIED || d->gateway_auth_method != LK_GATEWAY_AUTH_UNSPECIFIED ||
        d->last_accessed_gateway_id != NULL || d->last_accessed_gateway_time != 0) {
        json_t *g = json_object();
        if (g != NULL) {
            json_object_set_new(g, "gatewayType",
                                json_string(admin_enum_name(ADMIN_ENUM_GATEWAY_TYPE, (int)d->gateway_type)));
            if (d->gateway_auth_method != LK_GATEWAY_AUTH_UNSPECIFIED)
                json_object_set_new(g, "gatewayAuthMethod",
                                    json_string(admin_enum_name(ADMIN_ENUM_GATEWAY_AUTH,
                                                                (int)d->gateway_auth_method)));
            if (d->last_accessed_gateway_id != NULL)
                json_object_set_new(g, "lastAccessedGatewayId", json_string(d->last_accessed_gateway_id));
            set_time(g, "lastAccessedGatewayTime", d->last_accessed_gateway_time);
            json_object_set_new(j, "gatewayConfig", g);
        }
    }
    return j;
}

json_t *admin_config_json(const lk_reg_config *c)
{
    /* o* leaves out deviceAckTime when NULL (never acknowledged); NULL
     * where a member must be (out of memory): no object at all. */
    return json_pack("{s:o,s:o,s:o*,s:o}", "version", out_ji64(c->version), "cloudUpdateTime",
                     out_jtime(c->cloud_update_time), "deviceAckTime",
                     c->device_ack_time != 0 ? out_jtime(c->device_ack_time) : NULL, "binaryData",
                     out_jb64(c->data, c->len));
}

json_t *admin_state_json(const lk_reg_state_entry *s)
{
    return json_pack("{s:o,s:o}", "updateTime", out_jtime(s->update_time), "binaryData",
                     out_jb64(s->data, s->len));
}

/* ---- reading the newest config / state for describe ---- */

int first_config_cb(void *arg, const lk_reg_config *c)
{
    json_t **out = arg;
    *out = admin_config_json(c);
    return 1;
}

static int first_state_cb(void *arg, const lk_reg_state_entry *s)
{
    json_t **out = arg;
    *out = admin_state_json(s);
    return 1;
}

/* Print the device as IoT Core's GetDevice returns it (with config and state). */
int print_device(struct admin *a, const char *id, uint64_t num_id)
{
    char why[512] = "";
    lk_reg_device d;
    json_t *j, *cfg = NULL, *st = NULL;
    lk_err err;

    memset(&d, 0, sizeof d);
    err = rop_get_device(a, &a->name, id, num_id, &d, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    j = admin_device_json(&d);
    err = rop_list_configs(a, &a->name, d.id, 1, first_config_cb, &cfg, why, sizeof why);
    if (err == LK_OK)
        err = rop_list_states(a, &a->name, d.id, 1, first_state_cb, &st, why, sizeof why);
    lk_reg_device_free(&d);
    if (err != LK_OK || j == NULL) {
        json_decref(j);
        json_decref(cfg);
        json_decref(st);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    if (cfg != NULL) {
        /* IoT Core's order: config and state after the activity times. */
        static const char *const after[] = {"logLevel", "metadata", "gatewayConfig"};
        json_t *moved[3];
        unsigned k;
        for (k = 0; k < 3; k++) {
            moved[k] = json_incref(json_object_get(j, after[k]));
            json_object_del(j, after[k]);
        }
        json_object_set_new(j, "config", cfg);
        if (st != NULL)
            json_object_set_new(j, "state", st);
        for (k = 0; k < 3; k++)
            if (moved[k] != NULL)
                json_object_set_new(j, after[k], moved[k]);
    } else {
        json_decref(st);
    }
    return a->json ? out_json(j) : out_yaml(j);
}

int device_changed(struct admin *a, lk_err err, const char *why, const char *id, const char *fmt, ...)
{
    va_list ap;
    if (err != LK_OK)
        return admin_fail(a, err, why);
    if (a->json)
        return print_device(a, id, 0);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    return EXIT_OK;
}

/* ---- the device a command names ---- */

/* The device named by the first positional argument or --device, resolved
 * to its string id (numIds and full names accepted). Opens the database. */
int target_device(struct dev_opts *o, int mode, const char **id, char **buf)
{
    struct admin *a = o->a;
    const char *arg = NULL, *leaf = NULL;
    int rc;

    *buf = NULL;
    if (a->device != NULL)
        arg = a->device;
    else if (o->npos > 0)
        arg = o->pos[0];
    if (arg == NULL)
        return tool_usage_error("%s: which device? (DEVICE or --device)", a->cmd);
    if ((rc = admin_resolve(a, arg, 1, &leaf)) != EXIT_OK)
        return rc;
    if ((rc = admin_open(a, mode)) != EXIT_OK)
        return rc;
    return admin_device_id(a, leaf, buf, id);
}

/* Positional arguments after the device (INDEX of credentials delete). */
const char *after_device(const struct dev_opts *o, unsigned k)
{
    unsigned first = o->a->device != NULL ? 0 : 1;
    return first + k < o->npos ? o->pos[first + k] : NULL;
}

int check_extra(const struct dev_opts *o, unsigned want_after)
{
    unsigned first = o->a->device != NULL ? 0 : 1;
    if (o->npos > first + want_after)
        return tool_usage_error("%s: unexpected argument '%s'", o->a->cmd, o->pos[first + want_after]);
    return EXIT_OK;
}

/* ---- credentials ---- */

/* Read one credential: the PEM file, its format and expiry. */
int load_credential(const struct admin *a, const char *path, const char *type, const char *exp,
                    lk_reg_credential *cred)
{
    uint8_t *pem = NULL;
    size_t len = 0;
    int64_t t = 0;
    int rc;

    memset(cred, 0, sizeof *cred);
    if (path == NULL || path[0] == '\0')
        return tool_usage_error("%s: a public key needs path=FILE", a->cmd);
    if (type == NULL)
        return tool_usage_error("%s: public key %s: type is required (es256, es256-x509, rsa, rsa-x509)",
                                a->cmd, path);
    cred->format = admin_cred_type(type);
    if (cred->format == LK_CRED_UNSPECIFIED)
        return tool_usage_error("%s: public key %s: unknown type '%s' (es256, es256-x509, rsa, rsa-x509)",
                                a->cmd, path, type);
    if (exp != NULL && admin_parse_time(exp, &t) != 0)
        return tool_usage_error("%s: public key %s: expiration time '%s' is neither RFC 3339 "
                                "(2030-01-02T03:04:05Z) nor seconds since 1970",
                                a->cmd, path, exp);
    rc = admin_read_file(a, "public key", path, LK_CRED_PEM_MAX, LK_ERR_REG_INVALID, &pem, &len);
    if (rc != EXIT_OK)
        return rc;
    if (admin_pem_is_pkcs1((const char *)pem, len)) {
        /* An RSA PUBLIC KEY (PKCS#1, 'openssl rsa -RSAPublicKey_out'): the
         * same key the registry stores as PUBLIC KEY. */
        char why[160], *spki = NULL;
        size_t n = 0;
        if (cred->format != LK_CRED_RSA_PEM) {
            free(pem);
            tool_error(a->cmd, LK_ERR_CRED_INVALID,
                       "public key %s is an RSA PUBLIC KEY (PKCS#1), but its type says %s", path,
                       lk_cred_format_name(cred->format));
            return EXIT_REG_INVALID;
        }
        if (admin_pkcs1_to_spki((const char *)pem, len, &spki, &n, why, sizeof why) != 1) {
            free(pem);
            tool_error(a->cmd, LK_ERR_CRED_INVALID,
                       "public key %s: %s; a PKCS#1 key converts to the PUBLIC KEY form with "
                       "'openssl rsa -RSAPublicKey_in -in %s -pubout'", path, why, path);
            return EXIT_REG_INVALID;
        }
        free(pem);
        pem = (uint8_t *)spki;
        fprintf(stderr, "latchkey: %s: note: %s holds an RSA PUBLIC KEY (PKCS#1): registered as the same key "
                        "in a PUBLIC KEY block (SubjectPublicKeyInfo), the form of IoT Core's RSA_PEM\n",
                a->cmd, path);
    }
    cred->pem = (char *)pem;
    cred->expires = t;
    return EXIT_OK;
}

/* After a credential was stored: a word if it has expired already. */
void warn_expired(const struct admin *a, const char *path, const lk_reg_credential *c)
{
    char when[48];
    if (admin_cred_expired(c->expires, when, sizeof when))
        fprintf(stderr, "latchkey: %s: warning: the credential from %s expired at %s: stored (IoT Core "
                        "accepted expired credentials too), but the broker accepts no token it verifies\n",
                a->cmd, path, when);
}
