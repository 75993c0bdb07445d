/*
 * auth.c — MOSQ_EVT_BASIC_AUTH: devices by JWT (docs/plugin.md,
 * "Authentication"), backends and latchkeyd's bridge by secret;
 * MOSQ_EVT_DISCONNECT; and the re-checks the change feed asks for.
 *
 * Only MOSQ_ERR_AUTH gives CONNACK 5 ("not authorised"): every refusal
 * that is the client's doing returns it. A refusal that is the server's
 * (the registry cannot be read, out of memory, the device connects too
 * often) returns another error, which Mosquitto answers by closing the
 * connection without a CONNACK: devices then back off and retry, instead of
 * taking their token for refused (Google's clients and ours stop signing
 * new tokens after a few CONNACK 5s). Each refusal logs one line naming the
 * client, its address and the reason — never the password — within the
 * rate limits of refusals.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_util.h"
#include "plugin.h"
#include "../common/lk_metrics_shm.h"

static const char *auth__addr(struct mosquitto *client)
{
    const char *a = mosquitto_client_address(client);
    return a ? a : "?";
}

/* Who is being authenticated, for the refusal's line: a device (device=
 * its path) at its own log level once its record is read, else at the
 * plugin's; a backend or latchkeyd's bridge by name (client= its id). Set
 * by auth__basic: one login at a time on the broker's thread. */
static struct {
    const char *field;   /* "device", "backend", "bridge" or NULL */
    const char *name;
    int level;           /* 0: the plugin's */
} auth__who;

/* who: the client id (the value escaped by kvlog); kind: what the rate
 * limit of refusal logs counts by (a literal, or the error's symbol);
 * transient: the server's failure, not the client's; metric: the refusal's
 * reason in the metrics (enum lk_mshm_reason); dev: the device's path when
 * a device was refused (its ring of refusals). Counted whatever the log
 * level. */
static int auth__deny(struct mosquitto *client, const char *who, const char *dev, const char *reason,
                      lk_err err, int transient, unsigned metric)
{
    const char *addr = auth__addr(client);
    int level = auth__who.level ? auth__who.level : plg.opt.log_level;
    int64_t now = clock__now();
    struct kvlog l;

    metrics__refused(dev, metric, reason, now);
    if (plog__on(level, PLOG_INFO) && refusals__allow(addr, err ? lk_errname(err) : reason, now)) {
        plog__begin(&l, PLOG_INFO, "refused");
        if (auth__who.field && !strcmp(auth__who.field, "device")) {
            kvlog_str(&l, "device", who);
        } else {
            kvlog_str(&l, auth__who.field, auth__who.name);
            kvlog_str(&l, "client", who);
        }
        kvlog_str(&l, "addr", addr);
        kvlog_str(&l, "reason", reason);
        if (err)
            kvlog_str(&l, "err", lk_errname(err));
        if (transient)
            kvlog_str(&l, "retry", "1"); /* closed without CONNACK, so that it retries */
        if (auth__who.level && plog__on(level, PLOG_DEBUG)) {
            /* a device at DEBUG: what its CONNECT asked for */
            kvlog_int(&l, "protocol", mosquitto_client_protocol_version(client));
            kvlog_int(&l, "clean", mosquitto_client_clean_session(client) ? 1 : 0);
            kvlog_int(&l, "keepalive", mosquitto_client_keepalive(client));
        }
        plog__emit(&l, PLOG_INFO);
    }
    return transient ? MOSQ_ERR_UNKNOWN : MOSQ_ERR_AUTH;
}

/* The client's doing: CONNACK 5. */
static int auth__refuse(struct mosquitto *client, const char *who, const char *reason, lk_err err,
                        unsigned metric)
{
    return auth__deny(client, who, NULL, reason, err, 0, metric);
}

/* The server's: no CONNACK, the client backs off and retries. */
static int auth__unavailable(struct mosquitto *client, const char *who, const char *reason,
                             lk_err err)
{
    return auth__deny(client, who, NULL, reason, err, 1, LK_MSHM_R_UNAVAILABLE);
}

/* A device's refusal: the client's doing, or with metric RATE_LIMITED or
 * UNAVAILABLE the server's. */
static int auth__device_deny(struct mosquitto *client, const char *id, const char *reason, lk_err err,
                             unsigned metric)
{
    int transient = metric == LK_MSHM_R_RATE_LIMITED || metric == LK_MSHM_R_UNAVAILABLE;

    return auth__deny(client, id, id, reason, err, transient, metric);
}

/* What a token's refusal counts as. */
static unsigned auth__token_metric(lk_err err)
{
    switch (err) {
    case LK_ERR_TOKEN_EXPIRED:
    case LK_ERR_TOKEN_FUTURE:
    case LK_ERR_TOKEN_LIFETIME: return LK_MSHM_R_EXPIRED_TOKEN;
    default: return LK_MSHM_R_INVALID_TOKEN;
    }
}

/* # Devices */

/* The connect's line: the credential by its fingerprint, as `latchkey
 * devices describe` shows it (an index shifts when another credential is
 * removed), and the token's times — never the token. */
static void auth__connected(const struct plg_conn *c, const char *addr, const lk_token_info *info,
                            int hit)
{
    int level = plog__level(c);
    char t[32];
    struct kvlog l;

    if (!plog__on(level, PLOG_INFO))
        return;
    plog__begin(&l, PLOG_INFO, "connect");
    kvlog_str(&l, "device", c->client_id);
    kvlog_str(&l, "addr", addr);
    kvlog_fmt(&l, "cred", "sha256:%02x%02x%02x%02x%02x%02x%02x%02x", c->cred_fp[0], c->cred_fp[1],
              c->cred_fp[2], c->cred_fp[3], c->cred_fp[4], c->cred_fp[5], c->cred_fp[6], c->cred_fp[7]);
    lk_time_rfc3339(info->valid_until, t, sizeof t);
    kvlog_str(&l, "until", t);
    kvlog_int(&l, "cached", hit);
    if (plog__on(level, PLOG_DEBUG)) {
        kvlog_str(&l, "alg", lk_alg_name(info->alg));
        lk_time_rfc3339(info->iat, t, sizeof t);
        kvlog_str(&l, "iat", t);
        lk_time_rfc3339(info->exp, t, sizeof t);
        kvlog_str(&l, "exp", t);
        kvlog_int(&l, "keepalive", c->keepalive);
        kvlog_int(&l, "num_id", (int64_t)c->num_id);
    }
    plog__emit(&l, PLOG_INFO);
}

static int auth__device(struct mosquitto *client, const char *id, const lk_device_name *p,
                        const char *password)
{
    struct plg_device *d;
    struct plg_conn *c;
    lk_verify_policy pol;
    lk_token_info info;
    char why[200] = "", reason[300];
    int64_t now = clock__now();
    int hit = 0, jit, registered = 0;
    int64_t lookup;
    lk_err err;
    uint32_t limit;

    if (!password)
        return auth__device_deny(client, id, "no password (the token)", LK_OK, LK_MSHM_R_NO_PASSWORD);
    /* IoT Core's devices spoke MQTT 3.1.1 with a clean session only. A
     * persistent session would bring back subscriptions the plugin never
     * saw (config and commands go only to subscriptions it saw) and keep
     * messages for a device that is gone; MQTT 5 would add will delays and
     * session expiry that a plugin cannot see. */
    if (mosquitto_client_protocol_version(client) != 4)
        return auth__device_deny(client, id, mosquitto_client_protocol_version(client) == 5
                                 ? "MQTT 5: devices must use MQTT 3.1.1, as IoT Core required"
                                 : "MQTT 3.1: devices must use MQTT 3.1.1, as IoT Core required",
                                 LK_OK, LK_MSHM_R_PROTOCOL);
    if (!mosquitto_client_clean_session(client))
        return auth__device_deny(client, id, "clean session off: devices must connect with a "
                                 "clean session, as IoT Core required", LK_OK, LK_MSHM_R_PROTOCOL);
    if (plg.ticks == 0 && now - plg.started > 3)
        return auth__device_deny(client, id, "the broker's tick does not arrive "
                                 "(per_listener_settings must be false)", LK_OK,
                                 LK_MSHM_R_UNAVAILABLE);
    /* A registry with JIT on lets x5c through (ignored for known devices)
     * and takes longer tokens, room for a chain. */
    jit = jit__enabled(p, &err);
    if (jit < 0)
        return auth__device_deny(client, id, "the registry could not be read", err,
                                 LK_MSHM_R_UNAVAILABLE);
    /* Cached device data is as fresh as the change feed: once the feed has
     * been unreadable for longer than confirm_timeout, read the device. */
    lookup = metrics__start();
    d = devices__get(p, id, devices__stale(now), &err);
    metrics__lookup(lookup);
    if (!d && err == LK_ERR_REG_NOT_FOUND && jit) {
        switch (jit__register(p, password, now, reason, sizeof reason, &err)) {
        case JIT_REFUSED:
            return auth__device_deny(client, id, reason, err, LK_MSHM_R_JIT_REFUSED);
        case JIT_UNAVAILABLE:
            return auth__device_deny(client, id, reason, err, LK_MSHM_R_UNAVAILABLE);
        case JIT_REGISTERED:
            plog__msg(PLOG_INFO, "registered", id, "from %s: %s", auth__addr(client), reason);
            registered = 1;
            break;
        }
        /* Now a device like any other: its one credential verifies below. */
        d = devices__get(p, id, 1, &err);
    }
    if (!d) {
        if (err == LK_ERR_REG_NOT_FOUND)
            return auth__device_deny(client, id, "no such device", err, LK_MSHM_R_NO_SUCH_DEVICE);
        return auth__device_deny(client, id, "the registry could not be read", err,
                                 LK_MSHM_R_UNAVAILABLE);
    }
    auth__who.level = plog__effective(d->log_level, d->reg_log_level);
    if (d->blocked)
        return auth__device_deny(client, id, "the device is blocked", LK_OK, LK_MSHM_R_BLOCKED);
    if (d->mqtt == LK_REG_STATE_DISABLED)
        return auth__device_deny(client, id, "MQTT is disabled for the registry", LK_OK,
                                 LK_MSHM_R_MQTT_DISABLED);

    lk_verify_policy_init(&pol, p->project, strlen(p->project), now);
    pol.skew = plg.opt.skew;
    pol.max_lifetime = plg.opt.max_token_lifetime;
    pol.max_len = jit ? plg.opt.jit_max_token_length : plg.opt.max_token_length;
    pol.flags = plg.opt.verify_flags | (jit ? LK_VERIFY_ALLOW_X5C : 0u);
    pol.subject = d->num_id;
    err = lk_verify_token_cached(plg.verifier, plg.vcache, password, strlen(password),
                                 (lk_cred *const *)d->creds, d->ncreds, &pol, &info, &hit,
                                 why, sizeof why);
    devices__release_keys(d);
    /* The server's failure, not a judgement of the token: no CONNACK. */
    if (plg.vcache)
        metrics__cache(hit);
    if (err == LK_ERR_NOMEM || err == LK_ERR_CRYPTO)
        return auth__device_deny(client, id, "the token could not be checked", err,
                                 LK_MSHM_R_UNAVAILABLE);
    if (err) {
        snprintf(reason, sizeof reason, "%s%s%s", lk_strerror(err), why[0] ? ": " : "", why);
        return auth__device_deny(client, id, reason, err, auth__token_metric(err));
    }
    /* Counted only once the token is good, so that no one but the device
     * can use up its connects; every takeover costs a TLS handshake. */
    limit = limits__pin(d->num_id);
    if (limit == LIMIT_NONE)
        return auth__device_deny(client, id, "every entry of the limit table is in use "
                                 "(plugin_opt_limit_table)", LK_OK, LK_MSHM_R_UNAVAILABLE);
    if (!limits__connect(limit, clock__now_ms())) {
        limits__unpin(limit);
        return auth__device_deny(client, id, "it connects too often (plugin_opt_connect_burst, "
                                 "plugin_opt_connects_per_minute)", LK_OK, LK_MSHM_R_RATE_LIMITED);
    }

    /* The connection's own record: a copy of what it needs, since the cache
     * entry may be evicted while it is connected. */
    c = conn__new(client, CONN_DEVICE, id);
    if (!c) {
        limits__unpin(limit);
        return auth__device_deny(client, id, "out of memory", LK_ERR_NOMEM, LK_MSHM_R_UNAVAILABLE);
    }
    c->limit = limit;
    c->num_id = d->num_id;
    conn__index_num(c);
    lk_cred_fingerprint(d->creds[info.cred_index], c->cred_fp);
    c->cred_expires = lk_cred_expires(d->creds[info.cred_index]);
    c->token_until = info.valid_until;
    c->connected_at = now;
    c->last_seen = now;
    c->keepalive = mosquitto_client_keepalive(client);
    c->config_sent = 0;
    c->gateway_type = d->gateway_type;
    c->gateway_auth = d->gateway_auth;
    c->log_level = auth__who.level;

    metrics__connected(c, p);
    conn__supersede(c);
    gateway__direct(c);
    conn__schedule(c);
    activity__note(c->num_id, ACT_HEARTBEAT, now, NULL);
    activity__note_key(c->num_id, now, c->cred_fp);
    if (registered)
        message__registered(c, "mqtt");
    message__presence(c, 1, auth__addr(client));
    auth__connected(c, auth__addr(client), &info, hit);
    return MOSQ_ERR_SUCCESS;
}

/* # Backends */

/* Whether password is the secret whose hash is stored (backends and
 * latchkeyd's bridge): constant-time, the computed hash wiped. */
static int auth__secret_ok(const char *password, const uint8_t stored[32])
{
    uint8_t got[32];
    int match;

    lk_backend_secret_hash(password, strlen(password), got);
    match = lk_ct_equal(got, stored, sizeof got);
    lk_wipe(got, sizeof got);
    return match;
}

static int auth__backend(struct mosquitto *client, const char *id, const char *username,
                         const char *password)
{
    const char *name = username + strlen(BACKEND_PREFIX);
    char project[LK_PROJECT_MAX + 1] = "";
    const char *who = id ? id : "";
    uint8_t stored[32];
    struct plg_conn *c;
    lk_err err;
    size_t nlen = strlen(name);

    if (!lk_id_valid(name, nlen))
        return auth__refuse(client, who, "not a valid backend name", LK_OK, LK_MSHM_R_BACKEND);
    /* Mosquitto closes the older connection of a client id: a backend that
     * could take any id could close another project's backend. Names are
     * unique and hold no '/', so NAME and NAME/... are this backend's alone
     * (and never a device path). */
    if (!backends__id_ok(name, id))
        return auth__refuse(client, who, "a backend's client id must be its name, or its name "
                            "followed by '/' and anything (NAME/worker-1)", LK_OK, LK_MSHM_R_BACKEND);
    if (!password)
        return auth__refuse(client, who, "no password (the secret)", LK_OK, LK_MSHM_R_BACKEND);
    err = lk_registry_backend_lookup(plg.reg, name, project, stored);
    if (err == LK_ERR_REG_NOT_FOUND)
        return auth__refuse(client, who, "no such backend", err, LK_MSHM_R_BACKEND);
    if (err)
        return auth__unavailable(client, who, "the registry could not be read", err);
    if (!auth__secret_ok(password, stored)) {
        lk_wipe(stored, sizeof stored);
        return auth__refuse(client, who, "wrong secret", LK_OK, LK_MSHM_R_BACKEND);
    }

    c = conn__new(client, CONN_BACKEND, id);
    if (!c || !(c->be = conn__backend_new(name))) {
        lk_wipe(stored, sizeof stored);
        if (c)
            conn__free(c);
        return auth__unavailable(client, who, "out of memory", LK_ERR_NOMEM);
    }
    snprintf(c->be->project, sizeof c->be->project, "%s", project);
    memcpy(c->be->hash, stored, 32);
    lk_wipe(stored, sizeof stored);
    c->connected_at = c->last_seen = clock__now();
    c->keepalive = mosquitto_client_keepalive(client);
    conn__schedule(c);
    share__connect(c);
    if (plog__on(plg.opt.log_level, PLOG_INFO)) {
        struct kvlog l;
        plog__begin(&l, PLOG_INFO, "connect");
        kvlog_str(&l, "backend", name);
        kvlog_str(&l, "project", project);
        kvlog_str(&l, "client", id);
        kvlog_str(&l, "addr", auth__addr(client));
        plog__emit(&l, PLOG_INFO);
    }
    return MOSQ_ERR_SUCCESS;
}

/* # latchkeyd's bridge (docs/plugin.md, "latchkeyd's bridge") */

static int auth__bridge(struct mosquitto *client, const char *id, const char *username,
                        const char *password)
{
    const char *name = username + strlen(BRIDGE_PREFIX);
    const char *who = id ? id : "";
    uint8_t stored[32];
    struct plg_conn *c;
    lk_err err;
    int match, proto = mosquitto_client_protocol_version(client);

    if (!lk_id_valid(name, strlen(name)))
        return auth__refuse(client, who, "not a valid bridge name", LK_OK, LK_MSHM_R_BACKEND);
    /* One id per bridge: another client cannot take it over (Mosquitto
     * closes the older connection of a client id) without the secret. */
    if (!id || strcmp(id, username))
        return auth__refuse(client, who, "a bridge's client id must be its username "
                            "(latchkeyd:NAME)", LK_OK, LK_MSHM_R_BACKEND);
    /* latchkeyd reads the PUBACK's reason code (0x87: the device's rate),
     * which only MQTT 5 has; a persistent session would keep what the
     * plugin never saw. */
    if (proto != 5)
        return auth__refuse(client, who, "not MQTT 5: latchkeyd's bridge must use MQTT 5 "
                            "(it reads PUBACK reason codes)", LK_OK, LK_MSHM_R_BACKEND);
    if (!mosquitto_client_clean_session(client))
        return auth__refuse(client, who, "clean start off: latchkeyd's bridge must connect with "
                            "a clean start", LK_OK, LK_MSHM_R_BACKEND);
    if (!password)
        return auth__refuse(client, who, "no password (the secret)", LK_OK, LK_MSHM_R_BACKEND);
    err = lk_registry_bridge_lookup(plg.reg, name, stored);
    if (err == LK_ERR_REG_NOT_FOUND)
        return auth__refuse(client, who, "no such bridge", err, LK_MSHM_R_BACKEND);
    if (err)
        return auth__unavailable(client, who, "the registry could not be read", err);
    match = auth__secret_ok(password, stored);
    lk_wipe(stored, sizeof stored);
    if (!match)
        return auth__refuse(client, who, "wrong secret", LK_OK, LK_MSHM_R_BACKEND);

    c = conn__new(client, CONN_BRIDGE, id);
    if (!c || !(c->be = conn__backend_new(name))) {
        if (c)
            conn__free(c);
        return auth__unavailable(client, who, "out of memory", LK_ERR_NOMEM);
    }
    /* The deadlines a backend has (max_connection; idle with keep-alive 0),
     * no more: a denied publish never closes it. */
    c->connected_at = c->last_seen = clock__now();
    c->keepalive = mosquitto_client_keepalive(client);
    conn__schedule(c);
    plog__msg(PLOG_INFO, "connect_bridge", NULL, "latchkeyd bridge %s connected from %s", name,
              auth__addr(client));
    return MOSQ_ERR_SUCCESS;
}

int auth__basic(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = event_data;
    const char *id = mosquitto_client_id(ed->client);
    lk_device_name p;
    struct plg_conn *old;

    (void)event;
    (void)userdata;
    /* The same client pointer authenticating again: forget the old record. */
    old = conn__find(ed->client);
    if (old)
        conn__free(old);
    memset(&auth__who, 0, sizeof auth__who);
    if (id && lk_device_path_parse(id, strlen(id), &p) == LK_OK) {
        auth__who.field = "device";
        return auth__device(ed->client, id, &p, ed->password);
    }
    if (ed->username && !strncmp(ed->username, BACKEND_PREFIX, strlen(BACKEND_PREFIX))) {
        auth__who.field = "backend";
        auth__who.name = ed->username + strlen(BACKEND_PREFIX);
        return auth__backend(ed->client, id, ed->username, ed->password);
    }
    if (ed->username && !strncmp(ed->username, BRIDGE_PREFIX, strlen(BRIDGE_PREFIX))) {
        auth__who.field = "bridge";
        auth__who.name = ed->username + strlen(BRIDGE_PREFIX);
        return auth__bridge(ed->client, id, ed->username, ed->password);
    }
    return auth__refuse(ed->client, id && *id ? id : "(no client id)",
                        "neither a device path (projects/P/locations/L/registries/R/devices/D) "
                        "nor a backend nor latchkeyd's bridge", LK_OK, LK_MSHM_R_PROTOCOL);
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
        if (!c->superseded)
            plog__dev(c, PLOG_DEBUG, "disconnect", "%s",
                      c->kick_reason ? c->kick_reason : auth__reason(ed->reason));
        if (!c->offline_sent) {
            c->offline_sent = 1;
            message__presence(c, 0, c->kick_reason ? c->kick_reason : auth__reason(ed->reason));
        }
        activity__note(c->num_id, ACT_HEARTBEAT, clock__now(), NULL);
        gateway__gone(c);
    }
    conn__free(c);
    return MOSQ_ERR_SUCCESS;
}

/* # Re-checks */

void auth__recheck(struct plg_conn *c, void *arg)
{
    struct plg_device *d;
    lk_device_name p;
    const char *why;
    lk_err err;

    (void)arg;
    if (c->kind == CONN_ATTACHED) {
        gateway__recheck(c);
        return;
    }
    if (c->kind != CONN_DEVICE || c->superseded || c->kick_reason)
        return;
    conn__name(c, &p);
    d = devices__get(&p, c->client_id, 1, &err);
    if (!d) {
        if (err == LK_ERR_REG_NOT_FOUND)
            conn__kick(c, "the device was deleted");
        else
            conn__unconfirmed(c, err);
        return;
    }
    c->unconfirmed_since = 0;
    /* a PATCH of its logLevel, or its registry's, takes effect now */
    c->log_level = plog__effective(d->log_level, d->reg_log_level);
    if ((why = conn__standing(c, d, 1)) != NULL) {
        conn__kick(c, why);
        return;
    }
    if (d->gateway_type != c->gateway_type || d->gateway_auth != c->gateway_auth)
        gateway__changed(c, d->gateway_type, d->gateway_auth); /* last: it reads devices */
}

void auth__recheck_backend(struct plg_conn *c, void *arg)
{
    char project[LK_PROJECT_MAX + 1];
    uint8_t h[32];
    lk_err err;

    (void)arg;
    if (c->kind != CONN_BACKEND || c->kick_reason)
        return;
    err = lk_registry_backend_lookup(plg.reg, c->be->name, project, h);
    if (err == LK_ERR_REG_NOT_FOUND || (!err && (!lk_ct_equal(h, c->be->hash, 32)
                                                 || strcmp(project, c->be->project))))
        conn__kick(c, "the backend was deleted or changed");
    else if (err)
        conn__unconfirmed(c, err);
    else
        c->unconfirmed_since = 0;
    lk_wipe(h, sizeof h);
}

void auth__recheck_any(struct plg_conn *c, void *arg)
{
    if (c->kind == CONN_BACKEND)
        auth__recheck_backend(c, arg);
    else
        auth__recheck(c, arg);
}
