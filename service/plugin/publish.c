/*
 * publish.c — the checks of a device's publish to its events or state,
 * whether it came on its own connection (acl.c) or through a gateway's
 * (gateway.c): QoS, the device's message rate, sizes, its state rate; and
 * a retained publish, which the plugin sends on itself (docs/plugin.md,
 * "Topics", "Limits per device").
 */
#include "plugin.h"

/* A retained publish is never stored: what a device sends is routed
 * downstream only. Its will is checked here too, indistinguishable from a
 * publish (Mosquitto 2.0.11 gives a plugin no other view of a will), so a
 * retained one must be denied in the check itself: the plugin sends the
 * message downstream itself, not retained, and denies the original. A
 * genuine retained publish is thus delivered (its QoS 1 PUBACK is sent by
 * the broker, which has no reason code in MQTT 3.1.1); a will is denied and
 * what the plugin queued is never sent, since Mosquitto checks wills only
 * on takeover (denied below: superseded), after the disconnect event (no
 * record: denied) and at shutdown, after its last delivery round. */
static int publish__republish(struct plg_conn *c, enum plg_topic t, const char *sub,
                              const struct mosquitto_evt_acl_check *ed, int64_t now)
{
    char *topic = NULL;
    mosquitto_property *props = NULL;
    const char *gw = c->gateway ? c->gateway->path.device : NULL;
    /* Stored for push subscriptions first: an error other than a denial
     * closes the connection without a PUBACK (route.c). */
    int rc = message__downstream(&c->path, c->num_id, gw, t, sub, &topic, &props);

    if (rc || route__spool(&c->path, c->num_id, gw, t, sub, ed->payload, ed->payloadlen)) {
        mosquitto_property_free_all(&props);
        mosquitto_free(topic);
        return rc == -1 ? MOSQ_ERR_NOMEM : MOSQ_ERR_UNKNOWN;
    }
    if (message__publish(topic, ed->payload, ed->payloadlen, ed->qos, props)) {
        mosquitto_property_free_all(&props);
        mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "%s: a retained publish was lost: out "
                             "of memory", c->client_id);
    } else {
        message__accepted(&c->path, c->num_id, t, ed->payload, ed->payloadlen, now);
    }
    mosquitto_free(topic);
    return MOSQ_ERR_ACL_DENIED;
}

int publish__check(struct plg_conn *c, enum plg_topic t, const char *sub,
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
            mosquitto_log_printf(MOSQ_LOG_NOTICE, PLG_LOG_PREFIX "%s: state of %u bytes dropped "
                                 "(limit %u)", c->client_id, ed->payloadlen, LK_STATE_MAX);
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
