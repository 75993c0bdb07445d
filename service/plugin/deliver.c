/*
 * deliver.c — what the plugin sends devices (docs/plugin.md, "Config,
 * commands, state"): the latest config to a device subscribed to
 * /devices/D/config, and commands to one subscribed to
 * /devices/D/commands/#. Both go to the one client
 * (mosquitto_broker_publish with its client id; for a device attached to a
 * gateway, the gateway's), never through topic matching, at the QoS the
 * device subscribed with.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* What was sent to c's device (never the payload): at INFO. */
static void deliver__log(const struct plg_conn *c, const char *event, const char *key, int64_t id,
                         size_t len, int qos, const char *subfolder)
{
    struct kvlog l;

    if (!plog__on(plog__level(c), PLOG_INFO))
        return;
    plog__begin(&l, PLOG_INFO, event);
    kvlog_str(&l, "device", c->client_id);
    if (c->gateway)
        kvlog_str(&l, "gateway", c->gateway->client_id);
    kvlog_int(&l, key, id);
    kvlog_str(&l, "subfolder", subfolder && *subfolder ? subfolder : NULL);
    kvlog_int(&l, "bytes", (int64_t)len);
    kvlog_int(&l, "qos", qos);
    plog__emit(&l, PLOG_INFO);
}

/* # Config */

struct deliver__latest {
    int64_t version;
    uint8_t *data;
    size_t len;
    int failed;
};

static int deliver__config_cb(void *arg, const lk_reg_config *c)
{
    struct deliver__latest *l = arg;
    l->version = c->version;
    l->len = c->len;
    l->data = c->len ? mosquitto_malloc(c->len) : NULL;
    if (c->len && !l->data)
        l->failed = 1;
    else if (c->len)
        memcpy(l->data, c->data, c->len);
    return 1; /* newest only */
}

void deliver__config(struct plg_conn *c)
{
    struct deliver__latest l = {0};
    lk_reg_config cfg;
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    int64_t now = clock__now();
    lk_err err;

    if ((c->kind != CONN_DEVICE && c->kind != CONN_ATTACHED) || c->config_qos < 0 || c->superseded ||
        c->kick_reason)
        return;
    /* By the num_id it authenticated as (its names were checked then). */
    err = lk_registry_latest_config(plg.reg, c->num_id, &cfg);
    if (!err) {
        deliver__config_cb(&l, &cfg);
        lk_reg_config_free(&cfg);
    }
    if (err || l.failed || l.version == 0) {
        mosquitto_free(l.data);
        /* No such device (deleted meanwhile) or no config yet: nothing to send. */
        if ((err && err != LK_ERR_REG_NOT_FOUND) || l.failed) {
            plog__dev(c, PLOG_WARN, "config_failed", "reading its config failed (%s); retrying on the next "
                      "tick", err ? lk_errname(err) : "out of memory");
            conn__want_config(c, 0); /* else it would wait for the next config change */
        }
        return;
    }
    if (!c->config_force && l.version <= c->config_sent) {
        mosquitto_free(l.data);
        return;
    }
    if (lk_device_topic(conn__device(c), LK_TOPIC_CONFIG, NULL, topic, sizeof topic, NULL)
        || mosquitto_broker_publish(conn__target(c), topic, (int)l.len, l.data, c->config_qos, false,
                                    NULL)) {
        mosquitto_free(l.data);
        plog__dev(c, PLOG_WARN, "config_failed", "sending config version %" PRId64 " failed; retrying on "
                  "the next tick", l.version);
        conn__want_config(c, 0);
        return;
    }
    c->config_force = 0;
    c->config_sent = l.version;
    activity__note(c->num_id, ACT_CONFIG_SEND, now, NULL);
    {
        lk_device_name p;
        conn__name(c, &p);
        metrics__message(&p, METRIC_CONFIG);
    }
    deliver__log(c, "config_sent", "version", l.version, l.len, c->config_qos, NULL);
}

/* # Commands */

struct deliver__cmd {
    int64_t id;
    uint64_t num_id;
    char *subfolder;
    uint8_t *data;
    size_t len;
    int64_t created;
};

/* The longest a sender waits (latchkey devices commands send --timeout).
 * A command still pending after that has no one waiting for it (its sender
 * was killed): it is expired, never delivered late. */
#define COMMAND_MAX_AGE 3600

struct deliver__cmds {
    struct deliver__cmd *v;
    size_t n, cap;
    int stopped;                 /* out of memory: commands left pending */
};

static int deliver__command_cb(void *arg, const lk_reg_command *c)
{
    struct deliver__cmds *q = arg;
    struct deliver__cmd *d;

    if (q->n == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 16;
        struct deliver__cmd *nv = realloc(q->v, ncap * sizeof *nv);
        if (!nv) {
            q->stopped = 1;
            return 1;
        }
        q->v = nv;
        q->cap = ncap;
    }
    d = &q->v[q->n];
    memset(d, 0, sizeof *d);
    d->id = c->id;
    d->num_id = c->num_id;
    d->len = c->len;
    d->created = c->created;
    if (c->subfolder && !(d->subfolder = strdup(c->subfolder))) {
        q->stopped = 1;
        return 1;
    }
    if (c->len) {
        d->data = mosquitto_malloc(c->len);
        if (!d->data) {
            free(d->subfolder);
            q->stopped = 1;
            return 1;
        }
        memcpy(d->data, c->data, c->len);
    }
    q->n++;
    return 0;
}

void deliver__commands(int64_t now)
{
    struct deliver__cmds q = {0};
    size_t i;
    lk_err err;

    err = lk_registry_commands_pending(plg.reg, deliver__command_cb, &q);
    if (q.stopped)
        plg.commands_due = 1; /* the rest on the next tick, not at the next command */
    if (err) {
        plg.commands_due = 1; /* try again next tick */
        plog__msg(PLOG_WARN, "commands_failed", NULL, "reading pending commands failed (%s)",
                  lk_errname(err));
    }
    for (i = 0; i < q.n; i++) {
        struct deliver__cmd *d = &q.v[i];
        struct plg_conn *c = conn__find_device(d->num_id);
        int subscribed = c && c->commands_qos >= 0;
        int stale = now - d->created > COMMAND_MAX_AGE;
        int won = 0;

        if (stale)
            subscribed = 0;
        err = lk_registry_command_decide(plg.reg, d->id, stale ? LK_CMD_EXPIRED
                                         : subscribed ? LK_CMD_DELIVERED : LK_CMD_NOT_CONNECTED,
                                         now, &won);
        if (err) {
            plg.commands_due = 1;
        } else if (won && subscribed) {
            char topic[LK_DEVICE_TOPIC_MAX + 1];
            /* Decided before publishing, so a racing sender's EXPIRED and
             * our delivery never both happen; a publish the broker refuses
             * (out of memory) is logged as lost, not as delivered. */
            if (lk_device_topic(conn__device(c), LK_TOPIC_COMMANDS, d->subfolder, topic,
                                sizeof topic, NULL) == LK_OK
                && mosquitto_broker_publish(conn__target(c), topic, (int)d->len, d->data,
                                         c->commands_qos, false, NULL) == MOSQ_ERR_SUCCESS) {
                d->data = NULL; /* the broker owns it now */
                lk_device_name p;
                conn__name(c, &p);
                metrics__message(&p, METRIC_COMMAND);
                deliver__log(c, "command_sent", "command", d->id, d->len, c->commands_qos, d->subfolder);
            } else {
                plog__dev(c, PLOG_ERROR, "command_lost", "command %" PRId64 " lost: the broker refused to "
                          "queue it", d->id);
            }
        }
        mosquitto_free(d->data);
        free(d->subfolder);
    }
    free(q.v);
}
