/*
 * api_device_ops.c — what is done to one device beyond its record:
 * modifyCloudToDeviceConfig (versionToUpdate: optimistic concurrency),
 * sendCommandToDevice (through the broker; the request waits, suspended,
 * for the broker's answer), configVersions.list and states.list.
 *
 * A command goes the way the tool's does: queued in the registry, taken by
 * the broker plugin from the change feed, delivered to the connected
 * device, and its outcome recorded. latchkeyd polls that outcome from a
 * timer, holding only the request; if no broker answers within
 * command_wait_ms, it withdraws the command (EXPIRED: the first decision
 * wins, so it can never be delivered after the caller was told it was not)
 * and answers UNAVAILABLE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "latchkey/lk_iotcore.h"
#include "api_devices.h"

#define POLL_MS 10

/* ---- modifyCloudToDeviceConfig ---- */

static void modify_config(struct lkd_call *c, const lk_reg_name *n, const lk_reg_device *d)
{
    static const char *const f[] = {"versionToUpdate", "binaryData", NULL};
    int bad = 0;
    if (lkd_known_fields(c, c->body, "modify_cloud_to_device_config_request", f) != 0)
        return;
    json_t *v = lkd_field(c, c->body, "versionToUpdate", NULL, &bad);
    json_t *data = bad ? NULL : lkd_field(c, c->body, "binaryData", NULL, &bad);
    if (bad)
        return;
    int64_t ver = 0;
    if (v != NULL && lkd_int64(c, v, "versionToUpdate", 0, INT64_MAX, &ver) != 0)
        return;
    if (data == NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "binaryData is required");
        return;
    }
    uint8_t *bytes;
    size_t len;
    if (lkd_bytes(c, data, "binaryData", LK_CONFIG_MAX, &bytes, &len) != 0)
        return;
    lk_reg_config out = {0};
    char why[512] = "";
    lk_err err = lk_registry_update_config(c->d->reg, n, d->id, bytes, len, ver, &out, why, sizeof why);
    free(bytes);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char dp_[LK_DEVICE_PATH_MAX + 1];
    lkd_log_change(c, "set_config", "device", lkd_device_path(n, d->id, dp_, sizeof dp_), "config version %lld",
                   (long long)out.version);
    json_t *j = lkd_config_json(&out);
    lk_reg_config_free(&out);
    lkd_reply_json(c, 200, j);
}

/* ---- sendCommandToDevice ---- */

struct cmd_wait {
    struct lkd_call *c;
    int64_t id;
    uint64_t gen;            /* the registry generation its outcome was last read at */
    int64_t deadline_ms;
    struct event *timer;
    char device[LK_ID_MAX + 1];
};

static void cmd_finish(struct cmd_wait *w)
{
    struct lkd_call *c = w->c;
    event_free(w->timer);
    c->d->waiting--;
    free(w);
}

static void cmd_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct cmd_wait *w = arg;
    struct lkd_call *c = w->c;
    int late = lkd_now_ms() >= w->deadline_ms;
    uint64_t gen = lkd_registry_gen(c->d);
    if (gen == w->gen && !late)
        return; /* nothing was written since its outcome was last read */
    w->gen = gen;
    lk_reg_command_status st = LK_CMD_PENDING;
    lk_err err = lk_registry_command_status(c->d->reg, w->id, &st, NULL);
    if (err == LK_OK && st == LK_CMD_PENDING && !late)
        return;
    if (err == LK_OK && st == LK_CMD_PENDING) {
        int won = 0;
        err = lk_registry_command_decide(c->d->reg, w->id, LK_CMD_EXPIRED, lkd_now(), &won);
        if (err == LK_OK && !won)
            err = lk_registry_command_status(c->d->reg, w->id, &st, NULL);
        else if (err == LK_OK)
            st = LK_CMD_EXPIRED;
    }
    char device[LK_ID_MAX + 1];
    snprintf(device, sizeof device, "%s", w->device);
    cmd_finish(w);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, "the command's outcome could not be read");
        return;
    }
    switch (st) {
    case LK_CMD_DELIVERED:
        lkd_reply_json(c, 200, json_object());
        return;
    case LK_CMD_NOT_CONNECTED:
        lkd_reply_error(c, LKD_FAILED_PRECONDITION, "Device `%s` is not connected or not subscribed to commands",
                        device);
        return;
    default:
        lkd_reply_error(c, LKD_UNAVAILABLE,
                        "no broker took the command within %u ms; it was withdrawn and will not be delivered",
                        c->d->cfg.command_wait_ms);
        return;
    }
}

static void send_command(struct lkd_call *c, const lk_reg_name *n, const lk_reg_device *d)
{
    static const char *const f[] = {"binaryData", "subfolder", NULL};
    if (lkd_known_fields(c, c->body, "send_command_to_device_request", f) != 0)
        return;
    uint8_t *bytes;
    size_t len;
    const char *subfolder;
    if (lkd_payload(c, c->body, "subfolder", LK_COMMAND_MAX, &bytes, &len, &subfolder) != 0)
        return;
    int64_t id = 0;
    char why[512] = "";
    lk_err err = lk_registry_command_send(c->d->reg, n, d->id, subfolder, bytes, len, &id, why, sizeof why);
    free(bytes);
    if (err == LK_ERR_REG_INVALID && d->blocked) {
        /* The registry refuses a blocked device; IoT Core called that a
         * failed precondition. */
        lkd_reply_reason(c, LKD_FAILED_PRECONDITION, err, "%s", why);
        return;
    }
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char dp_[LK_DEVICE_PATH_MAX + 1];
    lkd_log_change(c, "send_command", "device", lkd_device_path(n, d->id, dp_, sizeof dp_), "command %lld (%zu bytes)",
                   (long long)id, len);
    struct cmd_wait *w = calloc(1, sizeof *w);
    if (w != NULL)
        w->timer = event_new(c->d->base, -1, EV_PERSIST, cmd_tick, w);
    struct timeval tv = {0, POLL_MS * 1000};
    if (w == NULL || w->timer == NULL || event_add(w->timer, &tv) != 0) {
        if (w && w->timer)
            event_free(w->timer);
        free(w);
        (void)lk_registry_command_decide(c->d->reg, id, LK_CMD_EXPIRED, lkd_now(), NULL);
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    w->c = c;
    w->id = id;
    w->gen = lkd_registry_gen(c->d) - 1; /* the first tick reads the outcome */
    w->deadline_ms = lkd_now_ms() + c->d->cfg.command_wait_ms;
    snprintf(w->device, sizeof w->device, "%s", d->id);
    /* If the caller goes away meanwhile, libevent keeps the request until it
     * is answered (and then frees it unsent); the command still gets its
     * outcome. */
    c->d->waiting++;
}

/* ---- histories ---- */

static int config_cb(void *arg, const lk_reg_config *cf)
{
    json_array_append_new(arg, lkd_config_json(cf));
    return 0;
}

static int state_cb(void *arg, const lk_reg_state_entry *s)
{
    json_array_append_new(arg, lkd_state_json(s));
    return 0;
}

static void list_history(struct lkd_call *c, const lk_reg_name *n, const lk_reg_device *d, int states)
{
    int64_t num;
    if (lkd_query_int(c, states ? "numStates" : "numVersions", 0, states ? LK_STATES_KEPT : LK_CONFIG_VERSIONS_KEPT,
                      0, &num) != 0)
        return;
    json_t *a = json_array();
    char why[512] = "";
    lk_err err = states ? lk_registry_list_states(c->d->reg, n, d->id, (unsigned)num, state_cb, a, why, sizeof why)
                        : lk_registry_list_configs(c->d->reg, n, d->id, (unsigned)num, config_cb, a, why,
                                                   sizeof why);
    if (err != LK_OK) {
        json_decref(a);
        lkd_reply_lk(c, err, why);
        return;
    }
    lkd_reply_json(c, 200, json_pack("{s:o}", states ? "deviceStates" : "deviceConfigs", a));
}

void lkd_api_device_ops(struct lkd_call *c, const lk_reg_name *n, const char *dev, const char *sub)
{
    int cfg = 0, cmd = 0, hist_states = -1;
    lkd_role need = LKD_ROLE_VIEWER;
    if (sub == NULL) {
        cfg = strcmp(c->verb, "modifyCloudToDeviceConfig") == 0;
        cmd = strcmp(c->verb, "sendCommandToDevice") == 0;
        if (!cfg && !cmd) {
            lkd_reply_error(c, LKD_NOT_FOUND, "no method :%.64s on a device", c->verb);
            return;
        }
        if (c->method != EVHTTP_REQ_POST) {
            lkd_reply_error(c, LKD_NOT_FOUND, ":%s takes POST", c->verb);
            return;
        }
        need = LKD_ROLE_DEVICE_CONTROLLER;
    } else {
        if (c->verb != NULL || c->method != EVHTTP_REQ_GET ||
            (strcmp(sub, "configVersions") != 0 && strcmp(sub, "states") != 0)) {
            lkd_reply_error(c, LKD_NOT_FOUND, "no such path under a device (configVersions and states take GET)");
            return;
        }
        hist_states = strcmp(sub, "states") == 0;
    }
    if (lkd_require(c, n->project, need) != 0)
        return;
    lk_reg_device d;
    if (lkd_device_load(c, n, dev, &d, NULL) != 0)
        return;
    if (cfg)
        modify_config(c, n, &d);
    else if (cmd)
        send_command(c, n, &d);
    else
        list_history(c, n, &d, hist_states);
    lk_reg_device_free(&d);
}
