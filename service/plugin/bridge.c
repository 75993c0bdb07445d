/*
 * bridge.c — latchkeyd's HTTP device bridge (docs/plugin.md, "latchkeyd's
 * bridge").
 *
 * latchkeyd serves IoT Core's HTTP device API and passes what HTTP devices
 * send to the broker: it connects as "latchkeyd:NAME" (auth.c) and publishes
 * QoS 1 to latchkeyd/<device path>/events[/SUBFOLDER] or .../state
 * (lk_bridge_topic). Here the WRITE check applies what a device's own
 * publish gets — the device exists and is not blocked, its rates (the same
 * per-device entries of limits.c, so MQTT and HTTP share one limit) and the
 * sizes — and MOSQ_EVT_MESSAGE rewrites the publish to the device's
 * downstream topic with the same attributes, stores a state and notes the
 * activity (message.c).
 *
 * latchkeyd reads the PUBACK: 0x87 (not authorised, any denial here) is its
 * 429. So everything refused is ACL_DENIED, never a closed connection (a
 * plugin error from MOSQ_EVT_MESSAGE would close it: out of memory there is
 * a denial too). Whether the registry allows HTTP is latchkeyd's to check.
 *
 * Denials are logged at most once a second per device and at most
 * log_refusals_per_second lines a second in all; rate denials (expected
 * under load) are only counted. What was not logged is reported every
 * REPORT_S seconds.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "plugin.h"

#define REPORT_S 10
#define LOG_SLOTS 256u

static struct {
    uint64_t key;       /* hash of the device path, 0 = free */
    int64_t second;     /* last logged */
} log_slots[LOG_SLOTS];
static int64_t log_second, next_report;
static uint32_t log_this_second;
static uint64_t denied_rate, denied_unlogged;

static uint64_t bridge__key(const char *s)
{
    uint64_t h = hash__str(HASH_STR_SEED, s);

    return h ? h : 1;
}

/* One line for a denial other than the rate, within the limits above. */
static int bridge__deny(const struct plg_conn *c, const char *device, const char *why, lk_err err)
{
    uint64_t key = bridge__key(device);
    int64_t now = clock__now();
    unsigned slot = (unsigned)(key & (LOG_SLOTS - 1));
    struct kvlog l;

    if (now != log_second) {
        log_second = now;
        log_this_second = 0;
    }
    if ((log_slots[slot].key == key && log_slots[slot].second == now)
        || log_this_second >= plg.opt.log_refusals_per_second) {
        denied_unlogged++;
        return MOSQ_ERR_ACL_DENIED;
    }
    log_slots[slot].key = key;
    log_slots[slot].second = now;
    log_this_second++;
    /* A topic that did not parse is the client's text: kvlog escapes and
     * cuts it. */
    if (!plog__on(plg.opt.log_level, PLOG_INFO))
        return MOSQ_ERR_ACL_DENIED;
    plog__begin(&l, PLOG_INFO, "bridge_denied");
    kvlog_str(&l, "bridge", c->be ? c->be->name : "?");
    kvlog_str(&l, "target", device);
    kvlog_str(&l, "reason", why);
    if (err)
        kvlog_str(&l, "err", lk_errname(err));
    plog__emit(&l, PLOG_INFO);
    return MOSQ_ERR_ACL_DENIED;
}

void bridge__tick(int64_t now)
{
    if (now < next_report)
        return;
    if (next_report && (denied_rate || denied_unlogged))
        plog__msg(PLOG_INFO, "bridge_denied_summary", NULL, "latchkeyd bridge: %" PRIu64 " publishes denied "
                  "over their device's rate and %" PRIu64 " other denials not logged one by one in the "
                  "last %d s", denied_rate, denied_unlogged, REPORT_S);
    denied_rate = denied_unlogged = 0;
    next_report = now + REPORT_S;
}

/* The device named p, existing and not blocked: its path into path and its
 * num_id, or a logged denial. fresh: read the registry (devices__get). */
static int bridge__device(const struct plg_conn *c, const lk_device_name *p, char *path, size_t size,
                          int fresh, uint64_t *num_id)
{
    struct plg_device *d;
    lk_err err;

    if (lk_device_path(p->project, p->location, p->registry, p->device, path, size, NULL))
        return bridge__deny(c, "?", "the device path could not be formed", LK_OK);
    d = devices__get(p, path, fresh, &err);
    if (!d) {
        if (err == LK_ERR_REG_NOT_FOUND)
            return bridge__deny(c, path, "no such device", err);
        return bridge__deny(c, path, "the registry could not be read", err);
    }
    if (d->blocked)
        return bridge__deny(c, path, "the device is blocked", LK_OK);
    *num_id = d->num_id;
    return MOSQ_ERR_SUCCESS;
}

int bridge__acl(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed)
{
    char path[LK_DEVICE_PATH_MAX + 1];
    const char *sub;
    lk_device_name p;
    lk_topic t;
    uint64_t num_id = 0;
    uint32_t limit;
    int64_t now = clock__now();
    int rc;

    if (ed->access != MOSQ_ACL_WRITE)
        return bridge__deny(c, ed->topic, ed->access == MOSQ_ACL_SUBSCRIBE
                            ? "latchkeyd's bridge may not subscribe" : "latchkeyd's bridge only publishes",
                            LK_OK);
    c->last_seen = now;
    t = lk_bridge_topic_parse(ed->topic, strlen(ed->topic), &p, &sub);
    if (t == LK_TOPIC_NONE)
        return bridge__deny(c, ed->topic, "not a bridge topic (latchkeyd/projects/P/locations/L/"
                            "registries/R/devices/D/events[/SUBFOLDER] or .../state)", LK_OK);
    if (ed->qos > 1)
        return bridge__deny(c, ed->topic, "QoS 2", LK_OK);
    if (ed->retain)
        return bridge__deny(c, ed->topic, "retained (nothing a device sends is retained)", LK_OK);
    /* As fresh as a device's own connect (auth.c): the cache follows the
     * change feed, and is bypassed once the feed has failed too long. */
    if ((rc = bridge__device(c, &p, path, sizeof path, devices__stale(now), &num_id))
        != MOSQ_ERR_SUCCESS)
        return rc;
    /* The device's own entry, pinned only for the check: the bridge holds
     * no connection of the device, and a device connected over MQTT keeps
     * its pin. */
    limit = limits__pin(num_id);
    if (limit == LIMIT_NONE)
        return bridge__deny(c, path, "every entry of the limit table is in use "
                            "(plugin_opt_limit_table)", LK_OK);
    /* As acl.c checks a device's publish: the message rate counts every
     * publish, then the size, then the state rate. Over twice the rate is
     * only a denial here: the bridge is many devices' connection. */
    rc = MOSQ_ERR_SUCCESS;
    if (limits__message(limit, now) != RATE_OK) {
        denied_rate++;
        rc = MOSQ_ERR_ACL_DENIED;
    } else if (t == LK_TOPIC_STATE) {
        if (ed->payloadlen > LK_STATE_MAX)
            rc = bridge__deny(c, path, "a state over 64 KB", LK_OK);
        else if (!limits__state(limit, clock__now_ms())) {
            denied_rate++;
            rc = MOSQ_ERR_ACL_DENIED;
        }
    } else if (ed->payloadlen > LK_EVENT_MAX) {
        rc = bridge__deny(c, path, "an event over 256 KB", LK_OK);
    }
    limits__unpin(limit);
    return rc;
}

/* latchkeyd names the gateway an HTTP device's request came through
 * (gatewayInfo, checked by latchkeyd) in the user property gatewayId; it is
 * believed from the bridge only. 0 with out "" (none) or the id; -1 for a
 * value that is not a device id, or a second one. */
static int bridge__gateway(const mosquitto_property *props, char out[LK_ID_MAX + 1])
{
    const mosquitto_property *p = props;
    char *name = NULL, *value = NULL;
    int skip = 0, rc = 0;

    out[0] = '\0';
    while (rc == 0 && (p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name,
                                                               &value, skip)) != NULL) {
        skip = 1;
        if (name && !strcmp(name, "gatewayId")) {
            if (out[0] || !value || !lk_id_valid(value, strlen(value)))
                rc = -1;
            else
                snprintf(out, LK_ID_MAX + 1, "%s", value);
        }
        mosquitto_free(name);
        mosquitto_free(value);
        name = value = NULL;
    }
    return rc;
}

int bridge__message(struct plg_conn *c, struct mosquitto_evt_message *ed)
{
    char gateway[LK_ID_MAX + 1];
    char path[LK_DEVICE_PATH_MAX + 1];
    const char *sub;
    lk_device_name p;
    enum plg_topic t;
    uint64_t num_id = 0;
    int rc;

    /* The WRITE check just passed this topic, in the same handle__publish
     * call: it is parsed again, and the cache answers for the device (that
     * check read the registry already if the cache was stale; a second read
     * per publish while the feed fails would only double the load). */
    switch (lk_bridge_topic_parse(ed->topic, strlen(ed->topic), &p, &sub)) {
    case LK_TOPIC_EVENTS: t = TOPIC_EVENTS; break;
    case LK_TOPIC_STATE: t = TOPIC_STATE; break;
    default: return MOSQ_ERR_ACL_DENIED;
    }
    if ((rc = bridge__device(c, &p, path, sizeof path, 0, &num_id)) != MOSQ_ERR_SUCCESS)
        return rc;
    /* Not stored for a push subscription: denied too (0x87, latchkeyd's
     * 429), so the HTTP device sends it again; the bridge stays connected. */
    if (bridge__gateway(ed->properties, gateway))
        return bridge__deny(c, path, "its gatewayId property is not one device id", LK_OK);
    switch (message__rewrite(ed, &p, num_id, gateway[0] ? gateway : NULL, t, sub)) {
    case 0: break;
    case -1: return bridge__deny(c, path, "out of memory", LK_ERR_NOMEM);
    default: return bridge__deny(c, path, "it could not be routed or stored in the spool", LK_OK);
    }
    return MOSQ_ERR_SUCCESS;
}
