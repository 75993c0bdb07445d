/*
 * acl.c — MOSQ_EVT_ACL_CHECK: what devices and backends may publish, read
 * and subscribe to (docs/plugin.md, "Topics").
 *
 * Three states, as in Mosquitto's dynamic-security plugin: SUCCESS,
 * ACL_DENIED, or PLUGIN_DEFER for a client this plugin did not log in (no
 * other plugin is configured, so the broker denies it). Topics are compared
 * literally: device ids may contain '+' and '%', so no topic matcher is used
 * on them.
 *
 * In Mosquitto 2.0.11 the WRITE check runs before MOSQ_EVT_MESSAGE (checked:
 * handle__publish calls mosquitto_acl_check, then plugin__handle_message), so
 * it sees the topic the device sent; message.c rewrites it afterwards. A
 * will is checked only here (context__send_will): see acl__republish. The
 * READ check sees the topic a message is delivered on: downstream topics for
 * backends, and the plugin's own config and command topics for devices.
 * latchkeyd's bridge is checked in bridge.c.
 */
#include <string.h>

#include "plugin.h"

/* # Devices */

/* Another device's topic, or an attach or detach: a gateway's business
 * (gateway.c), and closes a device that is not one. -1: none of these. */
static int acl__other(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed)
{
    char device[LK_ID_MAX + 1];
    const char *sub;
    lk_topic k = lk_device_topic_split(ed->topic, strlen(ed->topic), device, &sub);

    if (k == LK_TOPIC_ATTACH || k == LK_TOPIC_DETACH ||
        (k != LK_TOPIC_NONE && strcmp(device, conn__device(c))))
        return gateway__acl(c, ed, k, device, sub);
    return -1;
}

static int acl__device_write(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed)
{
    const char *sub;
    int64_t now = clock__now();
    enum plg_topic t;
    int rc;

    /* Nothing from a connection that is superseded or being closed: this is
     * where a takeover's will would pass. */
    if (c->superseded || c->kick_reason)
        return MOSQ_ERR_ACL_DENIED;
    t = message__topic(c, ed->topic, &sub);
    c->last_seen = now;
    if (t == TOPIC_BAD) {
        if ((rc = acl__other(c, ed)) >= 0)
            return rc;
        plog__dev(c, PLOG_INFO, "denied", "published to %s: not its events or state topic", ed->topic);
        conn__kick(c, "it published to a topic it may not");
        return MOSQ_ERR_ACL_DENIED;
    }
    return publish__check(c, t, sub, ed, now);
}

static int acl__device(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed)
{
    const char *sub;
    lk_topic t;

    switch (ed->access) {
    case MOSQ_ACL_WRITE:
        return acl__device_write(c, ed);
    case MOSQ_ACL_SUBSCRIBE:
    case MOSQ_ACL_UNSUBSCRIBE:
    case MOSQ_ACL_READ:
        break;
    default:
        return MOSQ_ERR_ACL_DENIED;
    }
    t = lk_device_topic_parse(conn__device(c), ed->topic, strlen(ed->topic), &sub);
    if (t == LK_TOPIC_NONE) {
        int rc = acl__other(c, ed);
        return rc >= 0 ? rc : MOSQ_ERR_ACL_DENIED;
    }
    if (ed->access == MOSQ_ACL_READ) {
        /* what the plugin itself sends this device (a gateway: its errors) */
        if (t == LK_TOPIC_CONFIG || t == LK_TOPIC_COMMANDS || t == LK_TOPIC_COMMANDS_ALL ||
            t == LK_TOPIC_ERRORS)
            return MOSQ_ERR_SUCCESS;
        return MOSQ_ERR_ACL_DENIED;
    }
    c->last_seen = clock__now();
    if (t == LK_TOPIC_ERRORS) {
        /* only a gateway has errors to be told; QoS 0 as IoT Core sent them */
        if (c->gateway_type != LK_GATEWAY_TYPE_GATEWAY)
            return MOSQ_ERR_ACL_DENIED;
        c->errors_qos = ed->access == MOSQ_ACL_SUBSCRIBE ? 0 : -1;
        return MOSQ_ERR_SUCCESS;
    }
    return conn__subscription(c, t, ed->access, ed->qos);
}

/* # Backends */

/* c: the backend's live connection, NULL for an offline session's READ.
 * A shared subscription ($share/GROUP/FILTER, share.c) is judged on its
 * FILTER exactly as a plain subscription is. */
static int acl__backend(struct plg_conn *c, const char *project,
                        const struct mosquitto_evt_acl_check *ed)
{
    const char *topic = ed->topic, *group = NULL, *why = NULL;
    size_t n, glen = 0;
    int sub = ed->access == MOSQ_ACL_SUBSCRIBE || ed->access == MOSQ_ACL_UNSUBSCRIBE;

    if (ed->access == MOSQ_ACL_WRITE)
        return MOSQ_ERR_ACL_DENIED;
    if (sub && share__parse(ed->topic, &group, &glen, &topic, &why) < 0)
        return c ? share__refuse(c, ed->topic, why) : MOSQ_ERR_ACL_DENIED;
    /* "latchkey/P/..." or exactly "latchkey/P/#"-style: the first two levels
     * literal (no wildcard there), anything below. */
    n = lk_backend_topic_in_project(project, topic, strlen(topic));
    if (n == 0)
        return MOSQ_ERR_ACL_DENIED;
    if (ed->access == MOSQ_ACL_READ && topic[n] == '\0')
        return MOSQ_ERR_ACL_DENIED;
    if (sub && c)
        return share__subscription(c, ed->access, ed->topic, group, glen, topic);
    return MOSQ_ERR_SUCCESS;
}

/* A message queued for a backend's offline session: as if it were
 * connected. Devices have no offline sessions (clean session only). */
static int acl__offline(const struct mosquitto_evt_acl_check *ed)
{
    const char *u = mosquitto_client_username(ed->client);
    const char *id = mosquitto_client_id(ed->client);
    const char *name;
    char project[LK_PROJECT_MAX + 1];
    lk_device_name p;

    if (!u || strncmp(u, BACKEND_PREFIX, strlen(BACKEND_PREFIX)))
        return MOSQ_ERR_PLUGIN_DEFER;
    name = u + strlen(BACKEND_PREFIX);
    if (!lk_id_valid(name, strlen(name)) || !backends__id_ok(name, id)
        || (id && lk_device_path_parse(id, strlen(id), &p) == LK_OK)
        || backends__project(name, project))
        return MOSQ_ERR_ACL_DENIED;
    return acl__backend(NULL, project, ed);
}

int acl__check(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_acl_check *ed = event_data;
    struct plg_conn *c;

    (void)event;
    (void)userdata;
    if (!ed->topic)
        return MOSQ_ERR_ACL_DENIED;
    /* Mosquitto's own copy of a message the plugin dealt to a shared
     * subscription's member itself (share.c). */
    if (ed->access == MOSQ_ACL_READ && share__read_denied(ed))
        return MOSQ_ERR_ACL_DENIED;
    c = conn__find(ed->client);
    if (!c) {
        /* Not connected: an offline persistent session being queued for
         * (backends.c). No one else may write (this is also a will after
         * its disconnect event). */
        if (ed->access == MOSQ_ACL_READ)
            return acl__offline(ed);
        return ed->access == MOSQ_ACL_WRITE ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_PLUGIN_DEFER;
    }
    if (c->kick_reason)
        return MOSQ_ERR_ACL_DENIED;
    if (c->kind == CONN_DEVICE)
        return acl__device(c, ed);
    if (c->kind == CONN_BRIDGE)
        return bridge__acl(c, ed);
    return acl__backend(c, c->be->project, ed);
}
