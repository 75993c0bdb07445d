/*
 * gateway.c — devices attached on a gateway's connection (docs/plugin.md,
 * "Gateways"; the rules are IoT Core's, in lk_iotcore.h).
 *
 * A gateway (a device whose gatewayType is GATEWAY, connected with its own
 * token) publishes /devices/D/attach to take device D on, then publishes
 * and subscribes on D's topics as D would; /devices/D/detach lets it go.
 * Each attached device has a record in conn.c (CONN_ATTACHED) that pins
 * D's own limits and carries its subscriptions, token deadline and config
 * state, so delivery, deadlines and re-checks treat it as a connection whose
 * messages go through the gateway's. What the broker has to tell the gateway
 * goes to /devices/GW/errors as IoT Core's JSON.
 *
 * Decisions (docs/protocol.md): a refused attach is still acknowledged
 * (MQTT 3.1.1 has no way to refuse a publish) and explained on the errors
 * topic; a device's direct connection wins over its attachment; of two
 * gateways the newest attach wins; a publish for a device not attached is
 * dropped with an error, the gateway stays connected.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "latchkey/lk_util.h"
#include "attach.h"
#include "plugin.h"


static int gateway__is(const struct plg_conn *c)
{
    return c->kind == CONN_DEVICE && c->gateway_type == LK_GATEWAY_TYPE_GATEWAY;
}

/* IoT Core's error message to the gateway, when it subscribed to its
 * errors topic. QoS 0, to that client only. */
static void gateway__error(struct plg_conn *gw, const char *type, const char *description,
                           const char *device, const char *message_type, const char *topic)
{
    char et[LK_DEVICE_TOPIC_MAX + 1];
    json_t *o;
    char *text;
    size_t len;
    void *copy;

    if (gw->errors_qos < 0 || gw->superseded || gw->kick_reason)
        return;
    if (lk_device_topic(conn__device(gw), LK_TOPIC_ERRORS, NULL, et, sizeof et, NULL))
        return;
    o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:i}}", "error_type", type, "description",
                  description, "device_id", device ? device : "", "mqtt_message_info",
                  "message_type", message_type, "topic", topic ? topic : "",
                  /* Mosquitto does not give plugins the packet id */
                  "packet_id", 0);
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return;
    len = strlen(text);
    copy = mosquitto_malloc(len);
    if (copy) {
        memcpy(copy, text, len);
        if (mosquitto_broker_publish(gw->client_id, et, (int)len, copy, 0, false, NULL))
            mosquitto_free(copy);
    }
    free(text);
}

/* Refusals are logged within refusals.c's limits; the gateway is told. */
static void gateway__refuse(struct plg_conn *gw, const char *device, const char *topic,
                            const char *why)
{
    const char *addr = mosquitto_client_address(gw->client);

    if (plog__on(plog__level(gw), PLOG_INFO) && refusals__allow(addr ? addr : "?", "gateway attach",
                                                                  clock__now())) {
        struct kvlog l;
        plog__begin(&l, PLOG_INFO, "attach_refused");
        kvlog_str(&l, "device", gw->client_id); /* the gateway: the device id is its client's text */
        kvlog_str(&l, "attach", device);
        kvlog_str(&l, "reason", why);
        plog__emit(&l, PLOG_INFO);
    }
    gateway__error(gw, "GATEWAY_ATTACHMENT_ERROR", why, device, "PUBLISH", topic);
}

struct gateway__token {
    int verified;
    uint8_t cred_fp[32];
    int64_t cred_expires, valid_until;
    char why[300];
};

/* Verify the device's own token exactly as auth.c does a direct connect's. */
static int gateway__verify(const struct plg_device *d, const lk_device_name *p, const char *token,
                           struct gateway__token *t)
{
    lk_verify_policy pol;
    lk_token_info info;
    char why[200] = "";
    int hit = 0;
    lk_err err;

    if (!token) {
        snprintf(t->why, sizeof t->why, "no token for the device in the attach payload");
        return 0;
    }
    lk_verify_policy_init(&pol, p->project, strlen(p->project), clock__now());
    pol.skew = plg.opt.skew;
    pol.max_lifetime = plg.opt.max_token_lifetime;
    pol.max_len = plg.opt.max_token_length;
    pol.flags = plg.opt.verify_flags;
    pol.subject = d->num_id;
    err = lk_verify_token_cached(plg.verifier, plg.vcache, token, strlen(token),
                                 (lk_cred *const *)d->creds, d->ncreds, &pol, &info, &hit, why,
                                 sizeof why);
    devices__release_keys(d);
    if (err) {
        snprintf(t->why, sizeof t->why, "the device's token was refused: %s%s%s", lk_strerror(err),
                 why[0] ? ": " : "", why);
        return err == LK_ERR_NOMEM || err == LK_ERR_CRYPTO ? -1 : 0;
    }
    t->verified = 1;
    lk_cred_fingerprint(d->creds[info.cred_index], t->cred_fp);
    t->cred_expires = lk_cred_expires(d->creds[info.cred_index]);
    t->valid_until = info.valid_until;
    return 0;
}

static void gateway__attach(struct plg_conn *gw, const struct mosquitto_evt_acl_check *ed,
                            const char *device)
{
    char path[LK_DEVICE_PATH_MAX + 1], why[400];
    const char *w = NULL;
    struct gateway__token tok;
    struct plg_conn *a, *other;
    struct plg_device *d;
    lk_device_name p;
    char *token = NULL;
    unsigned needs = lk_gateway_needs((int)gw->gateway_auth);
    uint64_t num_id;
    uint32_t limit;
    int bound = 0, level = 0;
    int64_t now = clock__now();
    lk_err err;

    conn__name(gw, &p);
    memset(&tok, 0, sizeof tok);
    if (attach__payload(ed->payload, ed->payloadlen, plg.opt.max_token_length, &token, &w))
        goto refuse;
    if (!strcmp(device, conn__device(gw))) {
        w = "a gateway cannot attach itself";
        goto refuse;
    }
    a = conn__find_attached(gw, device);
    if (!a && gw->attached >= plg.opt.gateway_max_attached) {
        snprintf(why, sizeof why, "the gateway has %zu devices attached, the most it may have",
                 gw->attached);
        w = why;
        goto refuse;
    }
    /* The device is of the gateway's own registry: the topic names only an
     * id, so another registry's device cannot even be named. */
    snprintf(p.device, sizeof p.device, "%s", device);
    if (lk_device_path(p.project, p.location, p.registry, p.device, path, sizeof path, NULL)) {
        w = "not a valid device id";
        goto refuse;
    }
    d = devices__get(&p, path, devices__stale(now), &err);
    if (!d) {
        w = err == LK_ERR_REG_NOT_FOUND ? "no such device in the gateway's registry"
                                        : "the registry could not be read; attach again later";
        goto refuse;
    }
    if (d->blocked)
        w = "the device is blocked";
    else if (d->mqtt == LK_REG_STATE_DISABLED)
        w = "MQTT is disabled for the registry";
    else if (d->gateway_type == LK_GATEWAY_TYPE_GATEWAY)
        w = "the device is a gateway: a gateway cannot be attached to another";
    if (w)
        goto refuse;
    num_id = d->num_id;
    level = plog__effective(d->log_level, d->reg_log_level);
    /* Only what the method needs is looked at: a token sent to an
     * association-only gateway is not even parsed. */
    if ((needs & LK_GATEWAY_NEEDS_TOKEN) && gateway__verify(d, &p, token, &tok)) {
        w = "the device's token could not be checked; attach again later";
        goto refuse;
    }
    if ((needs & LK_GATEWAY_NEEDS_BINDING) && (err = lk_registry_bound(plg.reg, gw->num_id, num_id,
                                                                        &bound))) {
        w = "the registry could not be read; attach again later";
        goto refuse;
    }
    if (lk_gateway_admit((int)gw->gateway_auth, bound, tok.verified, &w) != LK_OK) {
        if ((needs & LK_GATEWAY_NEEDS_TOKEN) && !tok.verified && (!(needs & LK_GATEWAY_NEEDS_BINDING) || bound)) {
            snprintf(why, sizeof why, "%s (%s)", w, tok.why);
            w = why;
        }
        goto refuse;
    }
    other = conn__find_device(num_id);
    if (other && other->kind == CONN_DEVICE) {
        w = "the device is connected directly; its own connection comes first";
        goto refuse;
    }
    if (other && other != a)
        gateway__drop(other, "the device was attached through another gateway");
    if (!a) {
        limit = limits__pin(num_id);
        if (limit == LIMIT_NONE) {
            w = "every entry of the limit table is in use (plugin_opt_limit_table)";
            goto refuse;
        }
        if (!limits__connect(limit, clock__now_ms())) {
            limits__unpin(limit);
            w = "the device is attached too often (plugin_opt_connect_burst, "
                "plugin_opt_connects_per_minute)";
            goto refuse;
        }
        a = conn__attach_new(gw, &p, path, num_id);
        if (!a) {
            limits__unpin(limit);
            w = "out of memory";
            goto refuse;
        }
        a->limit = limit;
        a->connected_at = now;
        a->last_seen = now;
        message__presence(a, 1, mosquitto_client_address(gw->client)
                          ? mosquitto_client_address(gw->client) : "?");
    }
    /* Attached again: the new token (or none) is what counts from now. */
    a->log_level = level;
    a->token_used = tok.verified;
    memcpy(a->cred_fp, tok.cred_fp, sizeof a->cred_fp);
    a->cred_expires = tok.cred_expires;
    a->token_until = tok.valid_until;
    conn__schedule(a);
    activity__note(num_id, ACT_GATEWAY, now, conn__device(gw));
    if (tok.verified)
        activity__note_key(num_id, now, tok.cred_fp);
    if (plog__on(level, PLOG_INFO)) {
        struct kvlog l;
        plog__begin(&l, PLOG_INFO, "attach");
        kvlog_str(&l, "device", path);
        kvlog_str(&l, "gateway", gw->client_id);
        kvlog_str(&l, "by", tok.verified ? "token" : "binding");
        plog__emit(&l, PLOG_INFO);
    }
    if (token) {
        lk_wipe(token, strlen(token));
        free(token);
    }
    return;
refuse:
    if (token) {
        lk_wipe(token, strlen(token));
        free(token);
    }
    /* A refused attach of a device already attached ends its attachment:
     * what let it in no longer holds. */
    if ((a = conn__find_attached(gw, device)) != NULL)
        gateway__drop(a, w);
    gateway__refuse(gw, device, ed->topic, w);
}

static void gateway__detach(struct plg_conn *gw, const struct mosquitto_evt_acl_check *ed,
                            const char *device)
{
    struct plg_conn *a = conn__find_attached(gw, device);

    if (!a) {
        gateway__error(gw, "GATEWAY_DETACHMENT_ERROR", "the device is not attached to this gateway",
                       device, "PUBLISH", ed->topic);
        return;
    }
    plog__dev(a, PLOG_INFO, "detach", "detached by gateway %s", conn__device(gw));
    if (!a->offline_sent) {
        a->offline_sent = 1;
        message__presence(a, 0, "detached by its gateway");
    }
    conn__free(a);
}

/* The gateway's own cap on what it publishes for its devices. */
static int gateway__over_cap(struct plg_conn *gw, int64_t now)
{
    if (gw->gw_second != now) {
        gw->gw_second = now;
        gw->gw_count = 0;
    }
    return ++gw->gw_count > plg.opt.gateway_messages_per_second;
}

static int gateway__publish(struct plg_conn *gw, struct plg_conn *a,
                            const struct mosquitto_evt_acl_check *ed, lk_topic kind,
                            const char *sub)
{
    int64_t now = clock__now();
    enum plg_topic t;

    if (kind == LK_TOPIC_EVENTS)
        t = TOPIC_EVENTS;
    else if (kind == LK_TOPIC_STATE)
        t = TOPIC_STATE;
    else {
        plog__dev(gw, PLOG_INFO, "denied", "published to %s: not an attached device's events or state topic",
                  ed->topic);
        conn__kick(gw, "it published to a topic it may not");
        return MOSQ_ERR_ACL_DENIED;
    }
    if (ed->qos > 1) {
        conn__kick(gw, "it published with QoS 2");
        return MOSQ_ERR_ACL_DENIED;
    }
    if (gateway__over_cap(gw, now)) {
        if (gw->gw_count == plg.opt.gateway_messages_per_second + 1)
            gateway__error(gw, "GATEWAY_RATE_EXCEEDED", "the gateway published more for its devices "
                           "than plugin_opt_gateway_messages_per_second allows: dropped",
                           conn__device(a), "PUBLISH", ed->topic);
        return MOSQ_ERR_ACL_DENIED;
    }
    a->last_seen = now;
    /* The device's own limits, as if it were connected itself. */
    return publish__check(a, t, sub, ed, now);
}

int gateway__acl(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed, lk_topic kind,
                 const char *device, const char *sub)
{
    struct plg_conn *a;

    if (kind == LK_TOPIC_ATTACH || kind == LK_TOPIC_DETACH) {
        if (ed->access != MOSQ_ACL_WRITE)
            return MOSQ_ERR_ACL_DENIED;
        if (!gateway__is(c)) {
            /* IoT Core closed it */
            plog__dev(c, PLOG_INFO, "denied", "sent %s for %s: it is not a gateway",
                      kind == LK_TOPIC_ATTACH ? "attach" : "detach", device);
            conn__kick(c, "it sent attach or detach and is not a gateway");
            return MOSQ_ERR_ACL_DENIED;
        }
        if (ed->qos > 1) {
            conn__kick(c, "it published with QoS 2");
            return MOSQ_ERR_ACL_DENIED;
        }
        if (kind == LK_TOPIC_ATTACH)
            gateway__attach(c, ed, device);
        else
            gateway__detach(c, ed, device);
        /* Handled here: nothing goes further (the PUBACK still comes). */
        return MOSQ_ERR_ACL_DENIED;
    }
    if (!gateway__is(c)) {
        if (ed->access == MOSQ_ACL_WRITE) {
            plog__dev(c, PLOG_INFO, "denied", "published to %s: not its events or state topic", ed->topic);
            conn__kick(c, "it published to a topic it may not");
        }
        return MOSQ_ERR_ACL_DENIED;
    }
    a = conn__find_attached(c, device);
    if (!a || a->kick_reason) {
        /* An unsubscribe is harmless; a delivery queued before a detach is
         * dropped (READ). */
        if (ed->access == MOSQ_ACL_UNSUBSCRIBE)
            return MOSQ_ERR_SUCCESS;
        if (ed->access == MOSQ_ACL_WRITE || ed->access == MOSQ_ACL_SUBSCRIBE)
            gateway__error(c, "GATEWAY_DEVICE_NOT_ATTACHED", "the device is not attached to this "
                           "gateway: attach it first", device,
                           ed->access == MOSQ_ACL_WRITE ? "PUBLISH" : "SUBSCRIBE", ed->topic);
        return MOSQ_ERR_ACL_DENIED;
    }
    switch (ed->access) {
    case MOSQ_ACL_WRITE:
        return gateway__publish(c, a, ed, kind, sub);
    case MOSQ_ACL_READ:
        return kind == LK_TOPIC_CONFIG || kind == LK_TOPIC_COMMANDS || kind == LK_TOPIC_COMMANDS_ALL
               ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
    case MOSQ_ACL_SUBSCRIBE:
    case MOSQ_ACL_UNSUBSCRIBE:
        break;
    default:
        return MOSQ_ERR_ACL_DENIED;
    }
    a->last_seen = clock__now();
    return conn__subscription(a, kind, ed->access, ed->qos);
}

int gateway__message(struct plg_conn *c, struct mosquitto_evt_message *ed)
{
    char device[LK_ID_MAX + 1];
    const char *sub;
    struct plg_conn *a;
    enum plg_topic t;
    lk_device_name p;

    switch (lk_device_topic_split(ed->topic, strlen(ed->topic), device, &sub)) {
    case LK_TOPIC_EVENTS: t = TOPIC_EVENTS; break;
    case LK_TOPIC_STATE: t = TOPIC_STATE; break;
    default: return MOSQ_ERR_ACL_DENIED;
    }
    a = conn__find_attached(c, device);
    if (!a || a->kick_reason)
        return MOSQ_ERR_ACL_DENIED;
    /* As message__device: any error but a denial closes the gateway's
     * connection without a PUBACK, and it sends the message again. */
    conn__name(a, &p);
    switch (message__rewrite(ed, &p, a->num_id, conn__device(c), t, sub)) {
    case 0: return MOSQ_ERR_SUCCESS;
    case -1: return MOSQ_ERR_NOMEM;
    default: return MOSQ_ERR_UNKNOWN;
    }
}

void gateway__drop(struct plg_conn *a, const char *why)
{
    struct plg_conn *gw = a->gateway;

    plog__dev(a, PLOG_INFO, "detach", "detached from gateway %s: %s", conn__device(gw), why);
    activity__note(a->num_id, ACT_ERROR, clock__now(), why);
    gateway__error(gw, "GATEWAY_DEVICE_DETACHED", why, conn__device(a), "PUBLISH", "");
    if (!a->offline_sent) {
        a->offline_sent = 1;
        message__presence(a, 0, why);
    }
    conn__free(a);
}

/* Tell gw's devices offline with why, then let them go. */
static void gateway__release(struct plg_conn *gw, const char *why)
{
    struct plg_conn *a;

    for (a = gw->att_head; a; a = a->att_next)
        if (!a->offline_sent) {
            a->offline_sent = 1;
            message__presence(a, 0, why);
        }
    while (gw->att_head)
        conn__free(gw->att_head);
}

static void gateway__direct_one(struct plg_conn *o, void *arg)
{
    struct plg_conn *c = arg;

    if (o->kind == CONN_ATTACHED && !o->kick_reason)
        gateway__drop(o, "the device connected directly");
    else if (o != c && o->superseded && o->att_head)
        /* the gateway itself reconnected: its old connection's devices
         * are the new one's to attach again */
        gateway__release(o, "its gateway reconnected");
}

void gateway__direct(struct plg_conn *c)
{
    conn__each_num(c->num_id, gateway__direct_one, c);
}

void gateway__gone(struct plg_conn *gw)
{
    gateway__release(gw, "its gateway disconnected");
}

void gateway__recheck(struct plg_conn *a)
{
    struct plg_conn *gw = a->gateway;
    struct plg_device *d;
    const char *why;
    unsigned needs = lk_gateway_needs((int)gw->gateway_auth);
    int bound = 0;
    lk_device_name p;
    lk_err err;

    if (a->kick_reason)
        return;
    conn__name(a, &p);
    d = devices__get(&p, a->client_id, 1, &err);
    if (!d) {
        if (err == LK_ERR_REG_NOT_FOUND)
            conn__kick(a, "the device was deleted");
        else
            conn__unconfirmed(a, err);
        return;
    }
    /* deleted, blocked, MQTT disabled, its own credential (when a token
     * attached it) removed: as for a direct connection */
    a->log_level = plog__effective(d->log_level, d->reg_log_level);
    if ((why = conn__standing(a, d, a->token_used)) != NULL) {
        conn__kick(a, why);
        return;
    }
    if (d->gateway_type == LK_GATEWAY_TYPE_GATEWAY) {
        conn__kick(a, "the device became a gateway");
        return;
    }
    if (needs & LK_GATEWAY_REFUSES) {
        conn__kick(a, "the gateway's gatewayAuthMethod no longer lets devices use it");
        return;
    }
    if ((needs & LK_GATEWAY_NEEDS_TOKEN) && !a->token_used) {
        conn__kick(a, "the gateway's gatewayAuthMethod now needs the device's own token");
        return;
    }
    if (needs & LK_GATEWAY_NEEDS_BINDING) {
        err = lk_registry_bound(plg.reg, gw->num_id, a->num_id, &bound);
        if (err) {
            conn__unconfirmed(a, err);
            return;
        }
        if (!bound) {
            conn__kick(a, "the device was unbound from the gateway");
            return;
        }
    }
    a->unconfirmed_since = 0;
}

void gateway__changed(struct plg_conn *gw, lk_reg_gateway_type type, lk_reg_gateway_auth auth)
{
    struct plg_conn *a, *next;
    int changed = gw->gateway_auth != auth;

    gw->gateway_type = type;
    gw->gateway_auth = auth;
    for (a = gw->att_head; a; a = next) {
        next = a->att_next;
        if (type != LK_GATEWAY_TYPE_GATEWAY)
            conn__kick(a, "its gateway is no longer a gateway");
        else if (changed)
            gateway__recheck(a);
    }
}
