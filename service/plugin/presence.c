/*
 * presence.c — one retained message per device that says whether it is
 * connected (docs/plugin.md, "Presence"), so that a backend that starts
 * late learns the online set from its subscription alone:
 * latchkey/P/presence/L/R/D, JSON {"deviceId","deviceNumId","online",
 * "time","address"|"reason"}, published at every connect and disconnect
 * and recorded in the registry with the activity flush.
 *
 * A broker that stops without a clean shutdown leaves "online" retained
 * (and recorded): at its first tick after a start the plugin resets every
 * record to offline ("the broker restarted") and publishes each device's
 * record again — those that connected before that tick keep their
 * "online". A deleted device's retained message is cleared (an empty
 * retained publish) from its tombstone, which the registry keeps until the
 * plugin says it is done — also for a device deleted while the broker was
 * down. Mosquitto restores its persistence (db__open) before it loads
 * plugins, so these publishes land after the restored retained messages.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "plugin.h"

#define RESTART_REASON "the broker restarted"
#define CLEARED_RING 1024u
#define LOG_EVERY_S 60

struct presence_rec {
    uint64_t num_id;
    int online;
    int64_t time;
    char *detail;
};

static struct presence_rec *recs;
static size_t nrecs, recs_cap;
static int reset_done, tombstones_due;
/* The registry's presence layout (lk_registry_presence_layout): 1 is
 * latchkey/P/presence/L/R/D. Before it (0), latchkey/P/L/R/D/presence: a
 * broker with persistence restores those retained messages, so the first
 * start clears them (migrating) before it stores 1. */
#define LAYOUT 1
static int migrating;
static size_t migrated;
static int64_t failed_logged;
/* The num_ids whose retained message was cleared lately: a deleted
 * device's connection closed after its tombstone was handled must not put
 * its presence back. */
static uint64_t cleared[CLEARED_RING];
static size_t cleared_at;

/* The old place, latchkey/P/L/R/D/presence: the online topic's level renamed. */
static void presence__clear_old(const lk_device_name *p)
{
    char topic[LK_BACKEND_TOPIC_MAX + 8];
    size_t n;

    if (lk_backend_topic(p, LK_TOPIC_ONLINE, NULL, topic, sizeof topic, &n) || n < 6
        || n - 6 + sizeof "presence" > sizeof topic)
        return;
    memcpy(topic + n - 6, "presence", sizeof "presence");
    if (mosquitto_broker_publish(NULL, topic, 0, NULL, 1, true, NULL) == MOSQ_ERR_SUCCESS)
        migrated++;
}

/* A retained publish of text (NULL: empty, which clears it). */
static void presence__publish(const lk_device_name *p, const char *text)
{
    char topic[LK_PRESENCE_TOPIC_MAX + 1];
    size_t len = text ? strlen(text) : 0;
    void *copy = NULL;

    if (lk_presence_topic(p, topic, sizeof topic, NULL) != LK_OK)
        return;
    if (len && !(copy = mosquitto_malloc(len)))
        return;
    if (len)
        memcpy(copy, text, len);
    if (mosquitto_broker_publish(NULL, topic, (int)len, copy, 1, true, NULL) != MOSQ_ERR_SUCCESS)
        mosquitto_free(copy);
}

static void presence__publish_state(const lk_device_name *p, uint64_t num_id, int online, int64_t t,
                                    const char *detail)
{
    char num[24], when[32];
    json_t *o;
    char *text;

    snprintf(num, sizeof num, "%" PRIu64, num_id);
    lk_time_rfc3339(t, when, sizeof when);
    o = json_pack("{s:s, s:s, s:b, s:s}", "deviceId", p->device, "deviceNumId", num, "online", online,
                  "time", when);
    if (o && detail && json_object_set_new(o, online ? "address" : "reason", json_string(detail))) {
        json_decref(o);
        return;
    }
    text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text)
        presence__publish(p, text);
    free(text);
}

void presence__note(const struct plg_conn *c, int online, const char *detail)
{
    int64_t now = clock__now();
    lk_device_name p;
    size_t i;

    if (c->kind != CONN_DEVICE && c->kind != CONN_ATTACHED)
        return;
    for (i = 0; i < CLEARED_RING; i++)
        if (cleared[i] == c->num_id)
            return;
    conn__name(c, &p);
    presence__publish_state(&p, c->num_id, online, now, detail);
    if (nrecs == recs_cap) {
        size_t ncap = recs_cap ? recs_cap * 2 : 256;
        struct presence_rec *nv = realloc(recs, ncap * sizeof *nv);
        if (!nv)
            return; /* the record is lost, the retained message stands */
        recs = nv;
        recs_cap = ncap;
    }
    recs[nrecs].num_id = c->num_id;
    recs[nrecs].online = online;
    recs[nrecs].time = now;
    recs[nrecs].detail = detail ? strdup(detail) : NULL;
    nrecs++;
}

/* Writes the records to the registry and frees their details: 0, or -1
 * with the records kept for the next flush. */
static int presence__write(void)
{
    lk_reg_presence_update *u;
    size_t i;
    lk_err err;

    /* Before the reset, a record would be undone by it. */
    if (!reset_done)
        return -1;
    u = malloc(nrecs * sizeof *u);
    if (!u)
        return -1;
    for (i = 0; i < nrecs; i++) {
        u[i].num_id = recs[i].num_id;
        u[i].presence = recs[i].online ? LK_PRESENCE_ONLINE : LK_PRESENCE_OFFLINE;
        u[i].time = recs[i].time;
        u[i].detail = recs[i].detail;
    }
    err = lk_registry_presence_record(plg.reg, u, nrecs);
    free(u);
    if (err) {
        plog__msg(PLOG_WARN, "presence_failed", NULL, "writing presence failed (%s); "
                             "retrying in %" PRId64 " s", lk_errname(err), plg.opt.activity_flush);
        return -1;
    }
    for (i = 0; i < nrecs; i++)
        free(recs[i].detail);
    return 0;
}

void presence__flush(void)
{
    if (nrecs && presence__write())
        return;
    if (flush__give_back(nrecs, recs_cap)) {
        free(recs);
        recs = NULL;
        recs_cap = 0;
    }
    nrecs = 0;
}

static int presence__reset_cb(void *arg, const lk_reg_device *d)
{
    lk_device_name p;

    (void)arg;
    if (snprintf(p.project, sizeof p.project, "%s", d->project) < 0
        || snprintf(p.location, sizeof p.location, "%s", d->location) < 0
        || snprintf(p.registry, sizeof p.registry, "%s", d->registry) < 0
        || snprintf(p.device, sizeof p.device, "%s", d->id) < 0)
        return 0;
    if (migrating)
        presence__clear_old(&p);
    /* Connected before this first tick: its "online" was published then. */
    if (conn__find_device(d->num_id))
        return 0;
    presence__publish_state(&p, d->num_id, d->presence == LK_PRESENCE_ONLINE, d->presence_time,
                            d->presence_detail);
    return 0;
}

struct presence_ids {
    uint64_t *v;
    size_t n, cap;
    int stopped;                 /* out of memory: the rest next tick */
};

static int presence__tomb_cb(void *arg, const lk_reg_tombstone *t)
{
    struct presence_ids *ids = arg;
    lk_device_name p;

    if (ids->n == ids->cap) {
        size_t ncap = ids->cap ? ids->cap * 2 : 64;
        uint64_t *nv = realloc(ids->v, ncap * sizeof *nv);
        if (!nv) {
            ids->stopped = 1;
            return 1;
        }
        ids->v = nv;
        ids->cap = ncap;
    }
    snprintf(p.project, sizeof p.project, "%s", t->project);
    snprintf(p.location, sizeof p.location, "%s", t->location);
    snprintf(p.registry, sizeof p.registry, "%s", t->registry);
    snprintf(p.device, sizeof p.device, "%s", t->id);
    presence__publish(&p, NULL);
    if (migrating)
        presence__clear_old(&p);
    ids->v[ids->n++] = t->num_id;
    cleared[cleared_at] = t->num_id;
    cleared_at = (cleared_at + 1) % CLEARED_RING;
    return 0;
}

static void presence__failed(const char *what, lk_err err, const char *why, int64_t now)
{
    if (now - failed_logged < LOG_EVERY_S)
        return;
    failed_logged = now;
    plog__msg(PLOG_WARN, "presence_failed", NULL, "%s failed (%s%s%s); retrying on every "
                         "tick", what, lk_errname(err), why[0] ? ": " : "", why);
}

/* Once every old retained message was cleared: the layout stored. */
static void presence__migrated(int64_t now)
{
    char why[200] = "";
    lk_err err;

    if (!migrating)
        return;
    err = lk_registry_presence_layout_set(plg.reg, LAYOUT, why, sizeof why);
    if (err) {
        presence__failed("storing the presence layout", err, why, now);
        return;
    }
    migrating = 0;
    if (migrated)
        plog__msg(PLOG_INFO, "presence_moved", NULL, "presence is now retained on latchkey/P/presence/L/R/D; the "
                  "old place, latchkey/P/L/R/D/presence, cleared for %zu devices", migrated);
}

void presence__tick(int64_t now)
{
    struct presence_ids ids = {0};
    char why[200] = "";
    lk_err err;

    if (!reset_done) {
        int layout = 0;
        err = lk_registry_presence_layout(plg.reg, &layout, why, sizeof why);
        if (err) {
            presence__failed("reading the presence layout", err, why, now);
            return;
        }
        migrating = layout < LAYOUT;
        err = lk_registry_presence_reset(plg.reg, now, RESTART_REASON, presence__reset_cb, NULL,
                                         why, sizeof why);
        if (err) {
            presence__failed("resetting presence after the start", err, why, now);
            return;
        }
        reset_done = 1;
        tombstones_due = 1;
    }
    if (!tombstones_due) {
        presence__migrated(now);
        return;
    }
    err = lk_registry_presence_tombstones(plg.reg, presence__tomb_cb, &ids, why, sizeof why);
    if (!err && ids.n)
        err = lk_registry_presence_tombstones_done(plg.reg, ids.v, ids.n, why, sizeof why);
    free(ids.v);
    /* Cleared again next time if _done failed: an empty retained publish
     * twice is harmless. */
    if (err)
        presence__failed("clearing deleted devices' presence", err, why, now);
    else if (!ids.stopped) {
        tombstones_due = 0;
        presence__migrated(now);
    }
}

void presence__tombstones_due(void)
{
    tombstones_due = 1;
}

void presence__cleanup(void)
{
    size_t i;

    for (i = 0; i < nrecs; i++)
        free(recs[i].detail);
    free(recs);
    recs = NULL;
    nrecs = recs_cap = 0;
    reset_done = tombstones_due = migrating = 0;
    migrated = 0;
    failed_logged = 0;
    memset(cleared, 0, sizeof cleared);
    cleared_at = 0;
}
