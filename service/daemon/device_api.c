/*
 * device_api.c — IoT Core's HTTP bridge (cloudiotdevice v1), for devices
 * that never hold an MQTT connection (docs/daemon.md, "The device bridge"):
 *
 *   POST /v1/projects/P/locations/L/registries/R/devices/D:publishEvent
 *   POST /v1/projects/P/locations/L/registries/R/devices/D:setState
 *   GET  /v1/projects/P/locations/L/registries/R/devices/D/config?localVersion=N
 *
 * D is the device's id or its numId. Served on the device listener only,
 * which takes device tokens only (device_auth.c). Events and states go to
 * the broker through the bridge (bridge.c), so backends get them on the
 * topics and with the attributes of the device's own MQTT publishes, and
 * the device's rate is one across both; the request waits for the
 * broker's PUBACK: 200 means the broker has it, 429 that the device is over
 * its rate, 503 that the broker could not take it (nothing was taken, or
 * its fate is unknown: the device retries, at least once, never lost).
 * gatewayInfo (device_gateway.c) names the device a request acts for when
 * it comes from or through a gateway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

/* How long a device should wait before it retries a 429 or a 503. */
#define RETRY_AFTER "1"

/* 429s are the device's doing and come in floods: one log line a second,
 * with how many were not logged. */
static void log_rate_refusal(struct lkd_call *c, const char *what)
{
    static int64_t second;
    static unsigned unlogged;
    int64_t now = lkd_now();
    if (now == second) {
        unlogged++;
        return;
    }
    second = now;
    if (unlogged)
        lkd_log_device(c, "info", "refused", "%s refused: over the device's message rate (MQTT and HTTP together); %u "
                       "more such refusals since the last line", what, unlogged);
    else
        lkd_log_device(c, "info", "refused", "%s refused: over the device's message rate (MQTT and HTTP together)",
                       what);
    unlogged = 0;
}

static void reply_retry(struct lkd_call *c, lkd_code code, const char *msg)
{
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", RETRY_AFTER);
    if (code == LKD_RESOURCE_EXHAUSTED) {
        lkd_send_error(c->req, code, msg);
        lkd_call_free(c);
        return;
    }
    lkd_reply_error(c, code, "%s", msg);
}

/* ---- publish through the broker ---- */

struct pub_call {
    struct lkd_call *c;
    int state;               /* 1 for setState: names it in messages */
    uint64_t num_id;         /* the device acted for, and the gateway it came */
    char gateway[LK_ID_MAX + 1]; /* from or through ("" = none) */
};

static void published(void *arg, enum lkd_pub_outcome o, int reason)
{
    struct pub_call *p = arg;
    struct lkd_call *c = p->c;
    int state = p->state;
    const char *what = state ? "setState" : "publishEvent";
    if (o == LKD_PUB_OK)
        lkd_gateway_record(c->d, p->num_id, p->gateway);
    free(p);
    switch (o) {
    case LKD_PUB_OK:
        if (c->d->cfg.verbose)
            lkd_log_device(c, "debug", "publish", "%s", what);
        lkd_reply_json(c, 200, json_object());
        return;
    case LKD_PUB_REFUSED:
        log_rate_refusal(c, what);
        reply_retry(c, LKD_RESOURCE_EXHAUSTED,
                    state ? "the device reports state too often (its MQTT and HTTP reports count together)"
                             : "the device publishes too fast (its MQTT and HTTP messages count together)");
        return;
    case LKD_PUB_FAILED: {
        char msg[128];
        snprintf(msg, sizeof msg, "the broker refused the message (reason 0x%02x); try again", (unsigned)reason);
        reply_retry(c, LKD_UNAVAILABLE, msg);
        return;
    }
    case LKD_PUB_TIMEOUT:
        reply_retry(c, LKD_UNAVAILABLE, "the broker did not acknowledge the message in time; try again");
        return;
    }
}

static void publish(struct lkd_call *c, const struct lkd_acting *act, lk_topic kind, const char *subfolder,
                    const uint8_t *data, size_t len)
{
    char topic[LK_BRIDGE_TOPIC_MAX + 1];
    size_t tlen = 0;
    if (lk_bridge_topic(&act->dev.name, kind, subfolder, topic, sizeof topic, &tlen) != LK_OK) {
        /* MQTT topics cannot carry '+' or '#': a device id or subfolder with
         * one cannot reach backends (docs/daemon.md). */
        lkd_reply_error(c, LKD_FAILED_PRECONDITION,
                        "the device id or subFolder cannot be carried on an MQTT topic (it contains '+' or '#')");
        return;
    }
    struct pub_call *p = calloc(1, sizeof *p);
    if (p == NULL) {
        reply_retry(c, LKD_UNAVAILABLE, "out of memory; try again");
        return;
    }
    p->c = c;
    p->state = kind == LK_TOPIC_STATE;
    p->num_id = act->dev.num_id;
    snprintf(p->gateway, sizeof p->gateway, "%s", act->gateway);
    if (lkd_bridge_publish(c->d, topic, data, len, act->gateway[0] ? act->gateway : NULL, published, p) != 0) {
        free(p);
        reply_retry(c, LKD_UNAVAILABLE, lkd_bridge_connected(c->d)
                                            ? "too many messages wait for the broker; try again"
                                            : "the broker cannot be reached; try again");
    }
}

static void publish_event(struct lkd_call *c, const struct lkd_device_id *dev)
{
    static const char *const f[] = {"binaryData", "subFolder", "gatewayInfo", NULL};
    struct lkd_acting act;
    if (lkd_known_fields(c, c->body, "publish_device_event_request", f) != 0 ||
        lkd_gateway_info_body(c, dev, &act) != 0)
        return;
    uint8_t *bytes;
    size_t len;
    const char *subfolder;
    if (lkd_payload(c, c->body, "subFolder", LK_EVENT_MAX, &bytes, &len, &subfolder) != 0)
        return;
    publish(c, &act, LK_TOPIC_EVENTS, subfolder, bytes, len);
    free(bytes);
}

static void set_state(struct lkd_call *c, const struct lkd_device_id *dev)
{
    static const char *const f[] = {"state", "gatewayInfo", NULL};
    static const char *const fs[] = {"binaryData", NULL};
    int bad = 0;
    struct lkd_acting act;
    if (lkd_known_fields(c, c->body, "set_device_state_request", f) != 0 ||
        lkd_gateway_info_body(c, dev, &act) != 0)
        return;
    json_t *st = lkd_field(c, c->body, "state", NULL, &bad);
    if (bad)
        return;
    if (st == NULL || !json_is_object(st)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "state is required: {\"state\": {\"binaryData\": ...}}");
        return;
    }
    if (lkd_known_fields(c, st, "device_state", fs) != 0)
        return;
    uint8_t *bytes;
    size_t len;
    if (lkd_payload(c, st, NULL, LK_STATE_MAX, &bytes, &len, NULL) != 0)
        return;
    publish(c, &act, LK_TOPIC_STATE, NULL, bytes, len);
    free(bytes);
}

/* ---- config ---- */

static void get_config(struct lkd_call *c, const struct lkd_device_id *caller)
{
    struct lkd_acting act;
    if (lkd_gateway_info_query(c, caller, &act) != 0)
        return;
    const struct lkd_device_id *dev = &act.dev;
    const char *camel = lkd_query(c, "localVersion"), *snake = lkd_query(c, "local_version");
    if (camel != NULL && snake != NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "give localVersion or local_version, not both");
        return;
    }
    int64_t local = 0;
    if (lkd_query_int(c, camel != NULL ? "localVersion" : "local_version", 0, INT64_MAX, 0, &local) != 0)
        return;
    lk_reg_config cfg;
    lk_err err = lk_registry_latest_config(c->d->reg, dev->num_id, &cfg);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, err == LK_ERR_REG_NOT_FOUND ? "the device was deleted" : NULL);
        return;
    }
    if (local > cfg.version) {
        lkd_reply_error(c, LKD_OUT_OF_RANGE, "localVersion %lld is newer than the device's latest config version %lld",
                        (long long)local, (long long)cfg.version);
        lk_reg_config_free(&cfg);
        return;
    }
    /* Up to date: the same version again, with its data (docs/daemon.md:
     * a client that applies what it gets must never be handed an empty
     * config), and no send recorded. */
    if (local < cfg.version) {
        lk_reg_activity a = {.num_id = dev->num_id, .last_config_send = lkd_now()};
        lk_err e = lk_registry_record_activity(c->d->reg, &a, 1);
        if (e != LK_OK)
            lkd_log_device(c, "info", "activity_failed", "lastConfigSendTime not recorded (%s)", lk_errname(e));
    }
    lkd_gateway_record(c->d, dev->num_id, act.gateway);
    json_t *j = lkd_config_json(&cfg);
    lk_reg_config_free(&cfg);
    lkd_reply_json(c, 200, j);
}

/* ---- routing ---- */

void lkd_device_dispatch(struct lkd_call *c)
{
    /* projects P locations L registries R devices D[:verb] [config] */
    int config = c->nseg == 9 && strcmp(c->seg[8], "config") == 0 && c->verb == NULL;
    if (!((c->nseg == 8 && c->verb != NULL) || config) || strcmp(c->seg[0], "projects") != 0 ||
        strcmp(c->seg[2], "locations") != 0 || strcmp(c->seg[4], "registries") != 0 ||
        strcmp(c->seg[6], "devices") != 0) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such path: the device bridge serves "
                                          "projects/P/locations/L/registries/R/devices/D:publishEvent, "
                                          ":setState and /config");
        return;
    }
    int event = !config && strcmp(c->verb, "publishEvent") == 0;
    int state = !config && strcmp(c->verb, "setState") == 0;
    if (!config && !event && !state) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no method :%.64s for devices (publishEvent, setState)", c->verb);
        return;
    }
    if (config ? c->method != EVHTTP_REQ_GET : c->method != EVHTTP_REQ_POST) {
        lkd_reply_error(c, LKD_NOT_FOUND, config ? "config takes GET" : ":%s takes POST", c->verb);
        return;
    }
    lk_reg_name n;
    if (lkd_name(c, &n, 6) != 0)
        return;
    struct lkd_device_id dev;
    if (lkd_device_authenticate(c, &n, c->seg[7], &dev) != 0 || (!config && lkd_read_body(c) != 0))
        return;
    if (config)
        get_config(c, &dev);
    else if (event)
        publish_event(c, &dev);
    else
        set_state(c, &dev);
}
