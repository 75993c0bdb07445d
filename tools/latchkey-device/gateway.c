/*
 * latchkey-device run --attach ...: the agent as a gateway (docs/device.md,
 * "Gateways"). The devices named by --attach DEVICE[:KEYREF] are attached on
 * the agent's connection (with their own token when KEYREF names their key
 * in the same store or token as --key); input lines "@DEVICE[/state|/events
 * [/SUBFOLDER]] PAYLOAD" are their events and state; their config, commands
 * and the errors topic go to standard output. A device the server refused
 * or dropped is attached again after a backoff (2^n s, the agent's cap).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"
#include "device_tool.h"

/* see device_tool.h */
int devtool_gw_add(struct devtool_gw *g, const char *arg)
{
    const char *colon = strchr(arg, ':');
    size_t n = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
    struct devtool_gw_dev *v;
    char why[160];
    const char *w;

    if (n == 0 || n > LK_ID_MAX)
        return tool_usage_error("--attach DEVICE[:KEYREF]: '%s' does not start with a device id",
                                tool_shown(arg));
    if ((w = lk_id_why("device id", arg, n, why, sizeof why)) != NULL)
        return tool_usage_error("--attach '%s': %s", tool_shown(arg), w);
    if (colon != NULL && colon[1] == '\0')
        return tool_usage_error("--attach '%s': an empty key reference after ':'", tool_shown(arg));
    if (g->n >= LK_GATEWAY_ATTACHED_MAX)
        return tool_usage_error("--attach: at most %u devices", LK_GATEWAY_ATTACHED_MAX);
    for (size_t i = 0; i < g->n; i++) {
        if (strlen(g->devs[i].id) == n && memcmp(g->devs[i].id, arg, n) == 0)
            return tool_usage_error("--attach: device %.*s is named twice", (int)n, arg);
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        v = realloc(g->devs, cap * sizeof *v);
        if (v == NULL) {
            tool_error("--attach", LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
            return EXIT_FAIL;
        }
        g->devs = v;
        g->cap = cap;
    }
    v = &g->devs[g->n++];
    memset(v, 0, sizeof *v);
    memcpy(v->id, arg, n);
    v->keyref = colon != NULL ? colon + 1 : NULL;
    return EXIT_OK;
}

void devtool_gw_free(struct devtool_gw *g)
{
    free(g->devs);
    memset(g, 0, sizeof *g);
}

static struct devtool_gw_dev *gw_find(struct devtool_gw *g, const char *id)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->devs[i].id, id) == 0)
            return &g->devs[i];
    return NULL;
}

static void on_dev_config(void *user, const char *device, const uint8_t *data, size_t len)
{
    struct devtool_gw *g = user;
    devtool_print_message(g->json, device, "config", NULL, data, len);
}

static void on_dev_command(void *user, const char *device, const char *subfolder,
                           const uint8_t *data, size_t len)
{
    struct devtool_gw *g = user;
    devtool_print_message(g->json, device, "command", subfolder, data, len);
}

static void put_json_field(const char *name, const char *value)
{
    printf(",\"%s\":", name);
    devtool_put_json_string(stdout, (const uint8_t *)value, strlen(value));
}

static void on_error(void *user, const lk_dev_gateway_error *e)
{
    struct devtool_gw *g = user;
    struct devtool_gw_dev *v = e->device_id[0] ? gw_find(g, e->device_id) : NULL;

    if (g->json) {
        printf("{\"type\":\"error\"");
        put_json_field("error_type", e->error_type);
        put_json_field("device", e->device_id);
        put_json_field("description", e->description);
        put_json_field("message_type", e->message_type);
        put_json_field("topic", e->topic);
        fputs("}\n", stdout);
    } else {
        printf("error: %s", e->error_type);
        if (e->device_id[0] != '\0')
            printf(" @%s", e->device_id);
        fputs(": ", stdout);
        devtool_put_escaped((const uint8_t *)e->description, strlen(e->description));
        if (e->topic[0] != '\0') {
            printf(" (%s ", e->message_type[0] ? e->message_type : "on");
            devtool_put_escaped((const uint8_t *)e->topic, strlen(e->topic));
            putchar(')');
        }
        putchar('\n');
    }
    fflush(stdout);
    /* Not attached any more: the client holds the device; try again later. */
    if (v != NULL && !v->detached && (strcmp(e->error_type, "GATEWAY_ATTACHMENT_ERROR") == 0 ||
                      strcmp(e->error_type, "GATEWAY_DEVICE_DETACHED") == 0)) {
        int64_t delay = lk_dev_backoff_ms(v->failures, g->backoff_max_s, (unsigned)(rand() % 1000));
        if (v->failures < 31)
            v->failures++;
        v->retry_ms = lk_dev_now_ms() + delay;
        if (!g->quiet)
            fprintf(stderr, "%s: attaching %s again in %.3f s\n", tool_name, v->id,
                    (double)delay / 1000.0);
    }
}

/* see device_tool.h */
void devtool_gw_attached(struct devtool_gw *g, const char *device)
{
    struct devtool_gw_dev *v = device != NULL ? gw_find(g, device) : NULL;
    if (v != NULL)
        v->failures = 0;
}

/* see device_tool.h */
int devtool_gw_setup(struct devtool_gw *g, lk_dev *dev, const struct tool_key *key)
{
    lk_dev_gateway_config c;
    lk_err err;

    memset(&c, 0, sizeof c);
    c.gateway_messages_per_s = g->rate;
    c.user = g;
    c.on_config = on_dev_config;
    c.on_command = on_dev_command;
    c.on_error = on_error;
    err = lk_dev_gateway(dev, &c);
    if (err != LK_OK) {
        tool_error("gateway", err, "%s", lk_strerror(err));
        return tool_exit_code(err);
    }
    for (size_t i = 0; i < g->n; i++) {
        struct devtool_gw_dev *v = &g->devs[i];
        if (v->keyref != NULL) {
            /* The device's own key, in the same store or token as --key:
             * its algorithm now, so that a missing key is found at start. */
            uint8_t pub[LK_PUBKEY_DER_MAX];
            size_t pub_len = 0;
            err = lk_se_public_key(&key->se, v->keyref, &v->alg, pub, sizeof pub, &pub_len);
            if (err != LK_OK) {
                struct tool_key k = *key;
                k.key = v->keyref;
                tool_key_error(&k, "--attach", err);
                return tool_exit_code(err);
            }
        }
        err = lk_dev_attach(dev, v->id, v->keyref != NULL ? &key->se : NULL, v->keyref, v->alg);
        if (err != LK_OK) {
            tool_error("--attach", err, "%s: %s", v->id, lk_strerror(err));
            return err == LK_ERR_ARG ? EXIT_USAGE : tool_exit_code(err);
        }
    }
    return EXIT_OK;
}

/* see device_tool.h */
void devtool_gw_tick(struct devtool_gw *g, lk_dev *dev, int64_t now, int64_t *next)
{
    for (size_t i = 0; i < g->n; i++) {
        struct devtool_gw_dev *v = &g->devs[i];
        if (v->retry_ms == 0)
            continue;
        if (now >= v->retry_ms) {
            v->retry_ms = 0;
            if (lk_dev_attach(dev, v->id, v->keyref != NULL ? g->se : NULL, v->keyref, v->alg) !=
                LK_OK)
                v->retry_ms = now + 1000;
        }
        if (v->retry_ms != 0 && v->retry_ms < *next)
            *next = v->retry_ms;
    }
}

static int state_id_seen(struct devtool_gw *g, uint64_t id)
{
    for (size_t i = 0; i < sizeof g->state_ids / sizeof g->state_ids[0]; i++) {
        if (g->state_ids[i] == id && id != 0) {
            g->state_ids[i] = 0;
            return 1;
        }
    }
    return 0;
}

/* see device_tool.h */
int devtool_gw_is_state(struct devtool_gw *g, uint64_t id)
{
    return state_id_seen(g, id);
}

/* @DEVICE/attach: attach DEVICE (again), with the key --attach gave it, or
 * association only for a device not named by --attach. */
static lk_err attach_line(struct devtool_gw *g, lk_dev *dev, const char *own, const char *id)
{
    struct devtool_gw_dev *v = gw_find(g, id);
    lk_err err;
    if (strcmp(id, own) == 0) {
        fprintf(stderr, "%s: @%s/attach: a gateway cannot attach itself: skipped\n", tool_name, id);
        return LK_OK;
    }
    if (v == NULL) {
        char arg[LK_ID_MAX + 1];
        snprintf(arg, sizeof arg, "%s", id);
        if (devtool_gw_add(g, arg) != EXIT_OK)
            return LK_OK; /* the reason is printed */
        v = gw_find(g, id);
    }
    v->detached = 0;
    v->retry_ms = 0;
    err = lk_dev_attach(dev, v->id, v->keyref != NULL ? g->se : NULL, v->keyref, v->alg);
    if (err != LK_OK)
        fprintf(stderr, "%s: @%s/attach: %s (%s): skipped\n", tool_name, id, lk_strerror(err),
                lk_errname(err));
    return LK_OK;
}

/* @DEVICE/detach: detach DEVICE after what was queued for it. */
static lk_err detach_line(struct devtool_gw *g, lk_dev *dev, const char *id)
{
    struct devtool_gw_dev *v = gw_find(g, id);
    lk_err err = v != NULL && !v->detached ? lk_dev_detach(dev, id) : LK_ERR_STATE;
    if (err != LK_OK) {
        fprintf(stderr, "%s: @%s/detach: not attached: skipped\n", tool_name, id);
        return LK_OK;
    }
    v->detached = 1;
    v->retry_ms = 0;
    return LK_OK;
}

/* see device_tool.h */
lk_err devtool_gw_line(struct devtool_gw *g, lk_dev *dev, const char *own, const char *line,
                       size_t len, const char *subfolder)
{
    char id[LK_ID_MAX + 1], sub[LK_SUBFOLDER_MAX + 1];
    const char *sp = memchr(line, ' ', len), *slash;
    size_t tlen = sp != NULL ? (size_t)(sp - line) : len, idlen;
    const uint8_t *payload = sp != NULL ? (const uint8_t *)sp + 1 : (const uint8_t *)line + len;
    size_t plen = sp != NULL ? len - tlen - 1 : 0;
    int state = 0;
    uint64_t mid = 0;
    lk_err err;

    /* @DEVICE[/state|/events[/SUBFOLDER]] */
    slash = memchr(line + 1, '/', tlen - 1);
    idlen = (slash != NULL ? (size_t)(slash - line) : tlen) - 1;
    if (idlen == 0 || idlen > LK_ID_MAX || !lk_id_valid(line + 1, idlen))
        goto bad;
    memcpy(id, line + 1, idlen);
    id[idlen] = '\0';
    if (slash != NULL) {
        size_t rest = tlen - (size_t)(slash - line);
        if ((rest == 7 && memcmp(slash, "/attach", 7) == 0) ||
            (rest == 7 && memcmp(slash, "/detach", 7) == 0)) {
            memcpy(id, line + 1, idlen);
            id[idlen] = '\0';
            return slash[1] == 'a' ? attach_line(g, dev, own, id) : detach_line(g, dev, id);
        }
        if (rest == 6 && memcmp(slash, "/state", 6) == 0) {
            state = 1;
        } else if (rest == 7 && memcmp(slash, "/events", 7) == 0) {
            subfolder = NULL;
        } else if (rest > 8 && rest - 8 <= LK_SUBFOLDER_MAX && memcmp(slash, "/events/", 8) == 0 &&
                   lk_subfolder_valid(slash + 8, rest - 8)) {
            memcpy(sub, slash + 8, rest - 8);
            sub[rest - 8] = '\0';
            subfolder = sub;
        } else {
            goto bad;
        }
    }
    if (strcmp(id, own) == 0) {
        err = state ? lk_dev_publish_state(dev, payload, plen, &mid)
                    : lk_dev_publish_event(dev, subfolder, payload, plen, NULL);
    } else if (gw_find(g, id) == NULL || gw_find(g, id)->detached) {
        fprintf(stderr, "%s: a line for %s, which is not attached (--attach): skipped\n", tool_name,
                id);
        return LK_OK;
    } else {
        err = state ? lk_dev_publish_state_for(dev, id, payload, plen, &mid)
                    : lk_dev_publish_event_for(dev, id, subfolder, payload, plen, NULL);
    }
    if (err == LK_OK && state) {
        g->state_ids[g->state_i] = mid;
        g->state_i = (g->state_i + 1) % (sizeof g->state_ids / sizeof g->state_ids[0]);
    }
    return err;
bad:
    fprintf(stderr, "%s: a line starting with '@' must start with @DEVICE, @DEVICE/state, "
            "@DEVICE/events/SUBFOLDER and a space, or be @DEVICE/attach or @DEVICE/detach: skipped\n",
            tool_name);
    return LK_OK;
}
