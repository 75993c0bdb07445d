/*
 * message.c — MOSQ_EVT_MESSAGE: what a device publishes goes downstream
 * (docs/plugin.md, "Downstream"): the topic is rewritten to
 * latchkey/P/L/R/D/events[/SUB] or .../state before any subscriber sees it,
 * the device's own MQTT 5 properties are replaced by IoT Core's Pub/Sub
 * attributes, retain is cleared, and a state report is stored. The WRITE ACL
 * check (acl.c) ran before this event and has already enforced topics, sizes
 * and rates; it sends retained publishes downstream itself
 * (acl__republish), with the same topic and attributes from here.
 * latchkeyd's bridge's publishes for HTTP devices go to bridge.c instead
 * (plugin.c picks by connection) and share message__downstream and
 * message__accepted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "plugin.h"

int message__attributes(const lk_device_name *path, uint64_t num_id, const char *gateway,
                        const char *subfolder, mosquitto_property **props)
{
    char num[24];

    snprintf(num, sizeof num, "%" PRIu64, num_id);
    if (mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "deviceId", path->device)
        || mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "deviceNumId", num)
        || mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "deviceRegistryLocation",
                                              path->location)
        || mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "deviceRegistryId",
                                              path->registry)
        || mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "projectId",
                                              path->project))
        return -1;
    if (subfolder && mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "subFolder",
                                                        subfolder))
        return -1;
    if (gateway && mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, "gatewayId",
                                                      gateway))
        return -1;
    return 0;
}

int message__downstream(const lk_device_name *path, uint64_t num_id, const char *gateway,
                        enum plg_topic t, const char *sub, char **topic, mosquitto_property **props)
{
    char buf[LK_ROUTED_TOPIC_MAX + 1];
    size_t n;
    int rc;

    *props = NULL;
    *topic = NULL;
    /* The registry's notification configs may route it (route.c). */
    if ((rc = route__topic(path, t, sub, buf, sizeof buf, &n)) != 0)
        return rc;
    *topic = mosquitto_malloc(n + 1);
    if (!*topic)
        return -1;
    memcpy(*topic, buf, n + 1);
    if (message__attributes(path, num_id, gateway, sub, props)) {
        mosquitto_property_free_all(props);
        mosquitto_free(*topic);
        *topic = NULL;
        return -1;
    }
    return 0;
}

void message__accepted(const lk_device_name *path, uint64_t num_id, enum plg_topic t,
                       const void *payload, uint32_t len, int64_t now)
{
    if (t == TOPIC_STATE) {
        /* written now, or kept until the registry is free again (stateq.c) */
        stateq__add(path, num_id, payload, len, now);
        activity__note(num_id, ACT_STATE, now, NULL);
        metrics__message(path, METRIC_STATE);
    } else {
        activity__note(num_id, ACT_EVENT, now, NULL);
        metrics__message(path, METRIC_EVENT);
    }
}

/* What a device publishes to: its events (with a subfolder) or its state. */
enum plg_topic message__topic(const struct plg_conn *c, const char *topic, const char **subfolder)
{
    switch (lk_device_topic_parse(conn__device(c), topic, strlen(topic), subfolder)) {
    case LK_TOPIC_STATE: return TOPIC_STATE;
    case LK_TOPIC_EVENTS: return TOPIC_EVENTS;
    default: return TOPIC_BAD;
    }
}

int message__device(struct plg_conn *c, struct mosquitto_evt_message *ed)
{
    const char *sub;
    enum plg_topic t;
    lk_device_name p;

    if (!c || c->kind != CONN_DEVICE || c->superseded || c->kick_reason)
        return MOSQ_ERR_ACL_DENIED; /* the ACL let nothing else through */
    t = message__topic(c, ed->topic, &sub);
    if (t == TOPIC_BAD)
        return MOSQ_ERR_ACL_DENIED; /* a gateway's for its devices: plugin.c */
    /* Any error but ACL_DENIED closes the connection without a PUBACK
     * (handle__publish in 2.0.11): the device sends it again. */
    conn__name(c, &p);
    switch (message__rewrite(ed, &p, c->num_id, NULL, t, sub)) {
    case 0: return MOSQ_ERR_SUCCESS;
    case -1: return MOSQ_ERR_NOMEM;
    default: return MOSQ_ERR_UNKNOWN;
    }
}

int message__rewrite(struct mosquitto_evt_message *ed, const lk_device_name *path, uint64_t num_id,
                     const char *gateway, enum plg_topic t, const char *sub)
{
    char *topic;
    mosquitto_property *props;
    int rc;

    if ((rc = message__downstream(path, num_id, gateway, t, sub, &topic, &props)) != 0)
        return rc;
    /* Stored for push subscriptions before the broker may acknowledge it. */
    if (route__spool(path, num_id, gateway, t, sub, ed->payload, ed->payloadlen)) {
        mosquitto_property_free_all(&props);
        mosquitto_free(topic);
        return -2;
    }
    share__note(path, num_id, gateway, sub);
    message__accepted(path, num_id, t, ed->payload, ed->payloadlen, clock__now());
    mosquitto_free(ed->topic);
    ed->topic = topic;
    mosquitto_property_free_all(&ed->properties);
    ed->properties = props;
    ed->retain = false;
    return 0;
}

int message__publish(const char *topic, const void *payload, size_t len, int qos,
                     mosquitto_property *props)
{
    /* Not mosquitto_broker_publish_copy: in 2.0.11 it loses its copy when the
     * publish fails for want of memory. This copy the broker frees on
     * success; on failure it is still ours. */
    void *copy = mosquitto_malloc(len ? len : 1);
    int rc;

    if (!copy)
        return MOSQ_ERR_NOMEM;
    if (len)
        memcpy(copy, payload, len);
    rc = mosquitto_broker_publish(NULL, topic, (int)len, copy, qos, false, props);
    if (rc != MOSQ_ERR_SUCCESS)
        mosquitto_free(copy);
    return rc;
}

void message__presence(struct plg_conn *c, int online, const char *detail)
{
    char num[24], when[32], topic[LK_BACKEND_TOPIC_MAX + 1];
    lk_device_name p;
    json_t *o;
    char *text;

    presence__note(c, online, detail); /* the retained one (presence.c) */
    /* Presence is for backends, connected or holding a persistent session:
     * with none registered, skip making it (a reconnect storm then costs
     * only authentication). */
    if ((c->kind != CONN_DEVICE && c->kind != CONN_ATTACHED) || !backends__any())
        return;
    snprintf(num, sizeof num, "%" PRIu64, c->num_id);
    conn__name(c, &p);
    if (lk_backend_topic(&p, online ? LK_TOPIC_ONLINE : LK_TOPIC_OFFLINE, NULL, topic,
                         sizeof topic, NULL))
        return;
    lk_time_rfc3339(clock__now(), when, sizeof when);
    o = json_pack("{s:s, s:s, s:s, s:s}", "deviceId", conn__device(c), "deviceNumId", num,
                  "time", when, online ? "address" : "reason", detail);
    if (o && c->kind == CONN_ATTACHED &&
        json_object_set_new(o, "gatewayId", json_string(conn__device(c->gateway)))) {
        json_decref(o);
        o = NULL;
    }
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return;
    message__publish(topic, text, strlen(text), 1, NULL);
    free(text);
}

void message__registered(const struct plg_conn *c, const char *via)
{
    char num[24], when[32], fp[65], topic[LK_BACKEND_TOPIC_MAX + 1];
    lk_device_name p;
    json_t *o;
    char *text;
    int i;

    /* Not retained: the registry (and its change feed) is the record; this
     * tells the backends listening now, as online does. */
    if (!backends__any())
        return;
    conn__name(c, &p);
    if (lk_backend_topic(&p, LK_TOPIC_REGISTERED, NULL, topic, sizeof topic, NULL))
        return;
    snprintf(num, sizeof num, "%" PRIu64, c->num_id);
    lk_time_rfc3339(clock__now(), when, sizeof when);
    for (i = 0; i < 32; i++)
        snprintf(fp + 2 * i, 3, "%02x", c->cred_fp[i]);
    o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "deviceId", conn__device(c), "deviceNumId", num,
                  "time", when, "via", via, "credentialSha256", fp);
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text)
        return;
    message__publish(topic, text, strlen(text), 1, NULL);
    free(text);
}

void message__offline(struct plg_conn *c, const char *why)
{
    message__presence(c, 0, why);
}
