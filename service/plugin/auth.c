/*
 * auth.c — MOSQ_EVT_BASIC_AUTH: devices by JWT (docs/plugin.md,
 * "Authentication"), backends by secret; MOSQ_EVT_DISCONNECT; and the
 * re-checks the change feed asks for.
 *
 * Only MOSQ_ERR_AUTH gives CONNACK 5 ("not authorised"); every refusal
 * returns it and logs one line naming the client, its address and the
 * reason — never the password.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "latchkey/lk_util.h"
#include "plugin.h"

#define BACKEND_PREFIX "backend:"

static const char *auth__addr(struct mosquitto *client)
{
    const char *a = mosquitto_client_address(client);
    return a ? a : "?";
}

static int auth__refuse(struct mosquitto *client, const char *who, const char *reason, lk_err err)
{
    if (err)
        mosquitto_log_printf(MOSQ_LOG_NOTICE, PLG_LOG_PREFIX "refused %s from %s: %s (%s)",
                             who, auth__addr(client), reason, lk_errname(err));
    else
        mosquitto_log_printf(MOSQ_LOG_NOTICE, PLG_LOG_PREFIX "refused %s from %s: %s",
                             who, auth__addr(client), reason);
    return MOSQ_ERR_AUTH;
}

/* # Devices */

static int auth__device(struct mosquitto *client, const char *id, const struct plg_path *p,
                        const char *password)
{
    struct plg_device *d;
    struct plg_conn *c;
    lk_verify_policy pol;
    lk_token_info info;
    char why[200] = "", reason[300], until[32];
    int64_t now = plugin__now();
    int hit = 0;
    lk_err err;
    size_t n;

    if (!password)
        return auth__refuse(client, id, "no password (the token)", LK_OK);
    if (plg.ticks == 0 && now - plg.started > 3)
        return auth__refuse(client, id, "the broker's tick does not arrive "
                            "(per_listener_settings must be false)", LK_OK);
    d = devices__get(p, id, 0, &err);
    if (!d) {
        if (err == LK_ERR_REG_NOT_FOUND)
            return auth__refuse(client, id, "no such device", err);
        return auth__refuse(client, id, "the registry could not be read", err);
    }
    if (d->blocked)
        return auth__refuse(client, id, "the device is blocked", LK_OK);
    if (d->mqtt == LK_REG_STATE_DISABLED)
        return auth__refuse(client, id, "MQTT is disabled for the registry", LK_OK);

    lk_verify_policy_init(&pol, p->project, strlen(p->project), now);
    pol.skew = plg.opt.skew;
    pol.max_lifetime = plg.opt.max_token_lifetime;
    pol.max_len = plg.opt.max_token_length;
    pol.flags = plg.opt.verify_flags;
    err = lk_verify_token_cached(plg.verifier, plg.vcache, password, strlen(password),
                                 (lk_cred *const *)d->creds, d->ncreds, &pol, &info, &hit,
                                 why, sizeof why);
    if (err) {
        snprintf(reason, sizeof reason, "%s%s%s", lk_strerror(err), why[0] ? ": " : "", why);
        return auth__refuse(client, id, reason, err);
    }

    /* The connection's own record: a copy of what it needs, since the cache
     * entry may be evicted while it is connected. */
    c = conn__new(client, CONN_DEVICE, id);
    if (!c)
        return auth__refuse(client, id, "out of memory", LK_ERR_NOMEM);
    c->path = *p;
    /* re-point the parts into the copy */
    c->path.project = c->path.buf + (p->project - p->buf);
    c->path.location = c->path.buf + (p->location - p->buf);
    c->path.registry = c->path.buf + (p->registry - p->buf);
    c->path.device = c->path.buf + (p->device - p->buf);
    c->num_id = d->num_id;
    conn__index_num(c);
    n = strlen(p->device);
    c->topic_prefix_len = 9 + n + 1;  /* "/devices/" D "/" */
    c->topic_prefix = malloc(c->topic_prefix_len + 1);
    c->downstream_len = strlen(p->project) + strlen(p->location) + strlen(p->registry) + n + 13;
    c->downstream = malloc(c->downstream_len + 1);
    if (!c->topic_prefix || !c->downstream) {
        conn__free(c);
        return auth__refuse(client, id, "out of memory", LK_ERR_NOMEM);
    }
    snprintf(c->topic_prefix, c->topic_prefix_len + 1, "/devices/%s/", p->device);
    snprintf(c->downstream, c->downstream_len + 1, "latchkey/%s/%s/%s/%s/", p->project,
             p->location, p->registry, p->device);
    lk_cred_fingerprint(d->creds[info.cred_index], c->cred_fp);
    c->cred_expires = lk_cred_expires(d->creds[info.cred_index]);
    c->token_until = info.valid_until;
    c->connected_at = now;
    c->last_seen = now;
    c->keepalive = mosquitto_client_keepalive(client);
    c->config_sent = 0;

    conn__supersede(c);
    conn__schedule(c, now);
    activity__note(c->num_id, ACT_HEARTBEAT, now, NULL);
    message__presence(c, 1, auth__addr(client));
    lk_time_rfc3339(info.valid_until, until, sizeof until);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, PLG_LOG_PREFIX "%s connected from %s (key %u, token "
                         "valid until %s%s)", id, auth__addr(client), info.cred_index, until,
                         hit ? ", cached" : "");
    return MOSQ_ERR_SUCCESS;
}

/* # Backends */

static int auth__backend(struct mosquitto *client, const char *id, const char *username,
                         const char *password)
{
    const char *name = username + strlen(BACKEND_PREFIX);
    char project[LK_PROJECT_MAX + 1] = "", who[300];
    uint8_t stored[32], got[32];
    struct plg_conn *c;
    lk_err err;
    int match;

    snprintf(who, sizeof who, "backend %s (client id %s)", name, id ? id : "");
    if (!id || !strncmp(id, "projects/", 9))
        return auth__refuse(client, who, "a backend's client id must not look like a device path",
                            LK_OK);
    if (!lk_id_valid(name, strlen(name)))
        return auth__refuse(client, who, "not a valid backend name", LK_OK);
    if (!password)
        return auth__refuse(client, who, "no password (the secret)", LK_OK);
    err = lk_registry_backend_lookup(plg.reg, name, project, stored);
    if (err == LK_ERR_REG_NOT_FOUND)
        return auth__refuse(client, who, "no such backend", err);
    if (err)
        return auth__refuse(client, who, "the registry could not be read", err);
    SHA256((const unsigned char *)password, strlen(password), got);
    match = lk_ct_equal(got, stored, sizeof got);
    lk_wipe(got, sizeof got);
    if (!match) {
        lk_wipe(stored, sizeof stored);
        return auth__refuse(client, who, "wrong secret", LK_OK);
    }

    c = conn__new(client, CONN_BACKEND, id);
    if (!c || !(c->backend_name = strdup(name))) {
        lk_wipe(stored, sizeof stored);
        if (c)
            conn__free(c);
        return auth__refuse(client, who, "out of memory", LK_ERR_NOMEM);
    }
    snprintf(c->backend_project, sizeof c->backend_project, "%s", project);
    memcpy(c->backend_hash, stored, 32);
    lk_wipe(stored, sizeof stored);
    c->connected_at = c->last_seen = plugin__now();
    c->keepalive = mosquitto_client_keepalive(client);
    conn__schedule(c, c->connected_at);
    mosquitto_log_printf(MOSQ_LOG_NOTICE, PLG_LOG_PREFIX "backend %s (project %s) connected from %s",
                         name, project, auth__addr(client));
    return MOSQ_ERR_SUCCESS;
}

int auth__basic(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = event_data;
    const char *id = mosquitto_client_id(ed->client);
    struct plg_path p;
    struct plg_conn *old;

    (void)event;
    (void)userdata;
    /* The same client pointer authenticating again: forget the old record. */
    old = conn__find(ed->client);
    if (old)
        conn__free(old);
    if (id && devices__parse_path(id, &p))
        return auth__device(ed->client, id, &p, ed->password);
    if (ed->username && !strncmp(ed->username, BACKEND_PREFIX, strlen(BACKEND_PREFIX)))
        return auth__backend(ed->client, id, ed->username, ed->password);
    return auth__refuse(ed->client, id && *id ? id : "(no client id)",
                        "neither a device path (projects/P/locations/L/registries/R/devices/D) "
                        "nor a backend", LK_OK);
}

/* # Disconnect */

static const char *auth__reason(int reason)
{
    switch (reason) {
    case MOSQ_ERR_SUCCESS: return "the client disconnected";
    case MOSQ_ERR_KEEPALIVE: return "keep-alive timeout";
    case MOSQ_ERR_CONN_LOST: return "the connection was lost";
    case MOSQ_ERR_ADMINISTRATIVE_ACTION: return "closed by the broker";
    case MOSQ_ERR_PROTOCOL: return "protocol error";
    case MOSQ_ERR_MALFORMED_PACKET: return "malformed packet";
    case MOSQ_ERR_OVERSIZE_PACKET: return "packet too large";
    case MOSQ_ERR_QOS_NOT_SUPPORTED: return "QoS not supported";
    case MOSQ_ERR_NOT_SUPPORTED: return "not supported";
    case MOSQ_ERR_NOMEM: return "out of memory";
    default: return "the connection was closed";
    }
}

int auth__disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ed = event_data;
    struct plg_conn *c;

    (void)event;
    (void)userdata;
    c = conn__find(ed->client);
    if (!c)
        return MOSQ_ERR_SUCCESS; /* a refused login, or not ours */
    if (c->kind == CONN_DEVICE) {
        if (!c->offline_sent) {
            c->offline_sent = 1;
            message__presence(c, 0, c->kick_reason ? c->kick_reason : auth__reason(ed->reason));
        }
        activity__note(c->num_id, ACT_HEARTBEAT, plugin__now(), NULL);
    }
    conn__free(c);
    return MOSQ_ERR_SUCCESS;
}

/* # Re-checks */

void auth__recheck(struct plg_conn *c, void *arg)
{
    struct plg_device *d;
    lk_err err;
    int i;

    (void)arg;
    if (c->kind != CONN_DEVICE || c->superseded || c->kick_reason)
        return;
    d = devices__get(&c->path, c->client_id, 1, &err);
    if (!d) {
        if (err == LK_ERR_REG_NOT_FOUND)
            conn__kick(c, "the device was deleted");
        /* a read error: keep the connection, the next change retries */
        return;
    }
    if (d->num_id != c->num_id) {
        conn__kick(c, "the device was deleted");
        return;
    }
    if (d->blocked) {
        conn__kick(c, "the device was blocked");
        return;
    }
    if (d->mqtt == LK_REG_STATE_DISABLED) {
        conn__kick(c, "MQTT was disabled for the registry");
        return;
    }
    i = devices__find_cred(d, c->cred_fp, c->cred_expires);
    if (i < 0) {
        conn__kick(c, "the credential that authenticated it was removed");
        return;
    }
    if (lk_cred_expires(d->creds[i]) != c->cred_expires) {
        /* the same key with a new expiry keeps the connection */
        c->cred_expires = lk_cred_expires(d->creds[i]);
        conn__schedule(c, plugin__now());
    }
    if (c->config_qos >= 0 && d->config_version > c->config_sent)
        conn__want_config(c, 0);
}

void auth__recheck_backend(struct plg_conn *c, void *arg)
{
    char project[LK_PROJECT_MAX + 1];
    uint8_t h[32];
    lk_err err;

    (void)arg;
    if (c->kind != CONN_BACKEND || c->kick_reason)
        return;
    err = lk_registry_backend_lookup(plg.reg, c->backend_name, project, h);
    if (err == LK_ERR_REG_NOT_FOUND || (!err && (!lk_ct_equal(h, c->backend_hash, 32)
                                                 || strcmp(project, c->backend_project))))
        conn__kick(c, "the backend was deleted or changed");
    lk_wipe(h, sizeof h);
}
