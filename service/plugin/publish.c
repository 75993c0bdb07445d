/*
 * publish.c — the checks of a device's publish to its events or state,
 * whether it came on its own connection (acl.c) or through a gateway's
 * (gateway.c): QoS, the device's message rate, sizes, its state rate; and
 * a retained publish, which the plugin sends on itself (docs/plugin.md,
 * "Topics", "Limits per device").
 */
#include "plugin.h"

/* publish__republish sent a retained publish on itself (for the log) */
static int publish__sent_on;

/* A retained publish is never stored: what a device sends is routed
 * downstream only. Its will is checked here too, indistinguishable from a
 * publish (Mosquitto 2.0.11 gives a plugin no other view of a will), so a
 * retained one must be denied in the check itself: the plugin sends the
 * message downstream itself, not retained, and denies the original. A
 * genuine retained publish is thus delivered (its QoS 1 PUBACK is sent by
 * the broker, which has no reason code in MQTT 3.1.1); a will is denied and
 * what the plugin queued is never sent, since Mosquitto checks wills only
 * on takeover (denied in acl.c: superseded), after the disconnect event
 * (no record: denied) and at shutdown, after its last delivery round. The
 * spool copy of a retained will at shutdown does stay, and is pushed: it
 * cannot be told from a publish here, whose copy must be stored before its
 * PUBACK (docs/plugin.md, "Downstream"). */
static int publish__republish(struct plg_conn *c, enum plg_topic t, const char *sub,
                              const struct mosquitto_evt_acl_check *ed, int64_t now)
{
    char *topic = NULL;
    mosquitto_property *props = NULL;
    const char *gw = c->gateway ? conn__device(c->gateway) : NULL;
    lk_device_name p;
    int rc;

    conn__name(c, &p);
    /* Stored for push subscriptions first: an error other than a denial
     * closes the connection without a PUBACK (route.c). */
    rc = message__downstream(&p, c->num_id, gw, t, sub, &topic, &props);

    if (rc || route__spool(&p, c->num_id, gw, t, sub, ed->payload, ed->payloadlen)) {
        mosquitto_property_free_all(&props);
        mosquitto_free(topic);
        return rc == -1 ? MOSQ_ERR_NOMEM : MOSQ_ERR_UNKNOWN;
    }
    if (message__publish(topic, ed->payload, ed->payloadlen, ed->qos, props)) {
        mosquitto_property_free_all(&props);
        plog__dev(c, PLOG_ERROR, "publish_lost", "a retained publish was lost: out of memory");
    } else {
        message__accepted(&p, c->num_id, t, ed->payload, ed->payloadlen, now);
        publish__sent_on = 1;
    }
    mosquitto_free(topic);
    return MOSQ_ERR_ACL_DENIED;
}

/* A device at DEBUG: each publish, what it is and how big (never the
 * payload), and what was done with it. */
static void publish__log(const struct plg_conn *c, enum plg_topic t, const char *sub,
                         const struct mosquitto_evt_acl_check *ed, const char *outcome)
{
    struct kvlog l;

    plog__begin(&l, PLOG_DEBUG, "publish");
    kvlog_str(&l, "device", c->client_id);
    if (c->gateway)
        kvlog_str(&l, "gateway", c->gateway->client_id);
    kvlog_str(&l, "topic", t == TOPIC_STATE ? "state" : "events");
    kvlog_str(&l, "subfolder", sub && *sub ? sub : NULL);
    kvlog_int(&l, "bytes", ed->payloadlen);
    kvlog_int(&l, "qos", ed->qos);
    kvlog_int(&l, "retained", ed->retain ? 1 : 0);
    kvlog_str(&l, "outcome", outcome);
    plog__emit(&l, PLOG_DEBUG);
}

static int publish__judge(struct plg_conn *c, enum plg_topic t, const char *sub,
                          const struct mosquitto_evt_acl_check *ed, int64_t now)
{
    if (ed->qos > 1) {
        /* IoT Core closed the connection; the listener's max_qos 1 does too */
        conn__kick(c, "it published with QoS 2");
        return MOSQ_ERR_ACL_DENIED;
    }
    switch (limits__message(c->limit, now)) {
    case RATE_OK:
        break;
    case RATE_CLOSE:
        conn__kick(c, "the message rate stayed over twice the limit");
        return MOSQ_ERR_ACL_DENIED;
    case RATE_DROP:
        return MOSQ_ERR_ACL_DENIED;
    }
    if (t == TOPIC_STATE) {
        if (ed->payloadlen > LK_STATE_MAX) {
            plog__dev(c, PLOG_INFO, "state_dropped", "state of %u bytes dropped (limit %u)", ed->payloadlen,
                      LK_STATE_MAX);
            return MOSQ_ERR_ACL_DENIED;
        }
        if (!limits__state(c->limit, clock__now_ms()))
            return MOSQ_ERR_ACL_DENIED;
    } else if (ed->payloadlen > LK_EVENT_MAX) {
        return MOSQ_ERR_ACL_DENIED;
    }
    if (ed->retain)
        return publish__republish(c, t, sub, ed, now);
    return MOSQ_ERR_SUCCESS;
}

int publish__check(struct plg_conn *c, enum plg_topic t, const char *sub,
                 const struct mosquitto_evt_acl_check *ed, int64_t now)
{
    int rc;

    publish__sent_on = 0;
    rc = publish__judge(c, t, sub, ed, now);
    if (plog__on(plog__level(c), PLOG_DEBUG))
        publish__log(c, t, sub, ed, rc == MOSQ_ERR_SUCCESS ? "accepted" : publish__sent_on ? "sent_on"
                     : c->kick_reason ? "closed" : "dropped");
    return rc;
}
