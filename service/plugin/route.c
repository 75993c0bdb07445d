/*
 * route.c — where a device's events and states go (docs/plugin.md,
 * "Routing"), and the durable copies for push subscriptions.
 *
 * A registry's eventNotificationConfigs and stateNotificationConfig name
 * Pub/Sub topics "projects/P/topics/T" of its own project. They are read
 * from the registry once per registry and kept, parsed, until the change
 * feed reports a registry change (LK_CHANGE_REGISTRY, or a resync: plugin.c
 * calls route__forget_registries). An event goes to the topic of the first
 * config whose subfolderMatches equals its subfolder exactly ("" or a
 * missing one matches every event); with no match — or no configs — it
 * goes where it always went, latchkey/P/L/R/D/events[/SUB]: nothing is
 * dropped that IoT Core would have dropped for want of a matching config.
 *
 * A message routed to T is also stored in the spool (lk_spool.h) for each
 * push subscription of T, before the message event returns — so before
 * Mosquitto acknowledges the device's PUBLISH. The subscriptions are read
 * once and again on LK_CHANGE_SUBSCRIPTION. A failure to store (or to learn
 * the routing or the subscriptions) is reported to the caller, which does
 * not let the message be acknowledged.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "latchkey/lk_spool.h"
#include "plugin.h"

#define REG_BUCKETS 256u
#define LOG_EVERY_S 60
#define SPOOL_BUSY_MS 250

/* # Registries' notification configs */

struct route_cfg {
    char *match;                 /* subfolderMatches; "" = every event */
    char *topic;                 /* T */
};

struct route_reg {
    char *key;                   /* "P/L/R" */
    struct route_cfg ev[LK_NOTIFY_CONFIGS_MAX];
    unsigned nev;
    char *state_topic;           /* T or NULL */
    struct route_reg *next;
};

static struct route_reg *regs[REG_BUCKETS];

/* # Push subscriptions */

struct route_sub {
    char *project, *topic;       /* P, T */
    char *name;                  /* "projects/P/subscriptions/S" */
};

static struct route_sub *subs;
static size_t nsubs, subs_cap;
static int subs_loaded;

static lk_spool *spool;
static int64_t full_logged, nospool_logged, bad_logged, fail_logged;
static uint64_t full_unlogged, fail_unlogged;

static void route__free_reg(struct route_reg *r)
{
    unsigned i;

    for (i = 0; i < r->nev; i++) {
        free(r->ev[i].match);
        free(r->ev[i].topic);
    }
    free(r->state_topic);
    free(r->key);
    free(r);
}

void route__forget_registries(void)
{
    size_t i;

    for (i = 0; i < REG_BUCKETS; i++)
        while (regs[i]) {
            struct route_reg *r = regs[i];
            regs[i] = r->next;
            route__free_reg(r);
        }
}

/* T of "projects/<project>/topics/T", or NULL when name is anything else:
 * the registry checks this at every change, so only a database written
 * otherwise gets here (logged once a minute, the config ignored). */
static char *route__topic_id(const char *project, const char *name, const char *key)
{
    size_t pl = strlen(project);
    const char *t;

    if (name && !strncmp(name, "projects/", 9) && !strncmp(name + 9, project, pl)
        && !strncmp(name + 9 + pl, "/" LK_TOPICS_LEVEL "/", sizeof LK_TOPICS_LEVEL + 1)) {
        t = name + 9 + pl + sizeof LK_TOPICS_LEVEL + 1;
        if (lk_pubsub_name_valid(t, strlen(t)))
            return strdup(t);
    }
    if (clock__now() - bad_logged >= LOG_EVERY_S) {
        bad_logged = clock__now();
        plog__msg(PLOG_WARN, "route_config", NULL, "registry %s: a notification config "
                             "names no topic of its project (\"projects/%s/topics/T\"); ignored",
                             key, project);
    }
    return NULL;
}

/* Parses the registry's JSON into r: 0, or -1 out of memory. A config that
 * does not parse is skipped (the registry refuses such text). */
static int route__parse(struct route_reg *r, const lk_device_name *p, const lk_reg_registry *g)
{
    json_t *a, *o;
    size_t i;

    if (g->event_notification_json && g->event_notification_json[0]
        && (a = json_loads(g->event_notification_json, 0, NULL)) != NULL) {
        json_array_foreach(a, i, o) {
            const char *m = json_string_value(json_object_get(o, "subfolderMatches"));
            char *t;
            if (r->nev == LK_NOTIFY_CONFIGS_MAX)
                break;
            t = route__topic_id(p->project, json_string_value(json_object_get(o, "pubsubTopicName")),
                                r->key);
            if (!t)
                continue;
            r->ev[r->nev].topic = t;
            if (!(r->ev[r->nev].match = strdup(m ? m : ""))) {
                free(t);
                json_decref(a);
                return -1;
            }
            r->nev++;
        }
        json_decref(a);
    }
    if (g->state_notification_json && g->state_notification_json[0]
        && (o = json_loads(g->state_notification_json, 0, NULL)) != NULL) {
        r->state_topic = route__topic_id(p->project,
                                         json_string_value(json_object_get(o, "pubsubTopicName")),
                                         r->key);
        json_decref(o);
    }
    return 0;
}

/* The registry of p, from the cache or read: NULL when it cannot be read. */
static struct route_reg *route__registry(const lk_device_name *p)
{
    char key[LK_PROJECT_MAX + LK_LOCATION_MAX + LK_ID_MAX + 3];
    lk_reg_name name = { p->project, p->location, p->registry };
    lk_reg_registry g;
    struct route_reg *r;
    size_t b;
    char why[200] = "";
    lk_err err;

    snprintf(key, sizeof key, "%s/%s/%s", p->project, p->location, p->registry);
    b = (size_t)hash__str(HASH_STR_SEED, key) & (REG_BUCKETS - 1);
    for (r = regs[b]; r; r = r->next)
        if (!strcmp(r->key, key))
            return r;
    memset(&g, 0, sizeof g);
    err = lk_registry_get_registry(plg.reg, &name, &g, why, sizeof why);
    if (err && err != LK_ERR_REG_NOT_FOUND) {
        plog__msg(PLOG_WARN, "route_config", NULL, "registry %s: its notification "
                             "configs could not be read (%s%s%s)", key, lk_errname(err),
                             why[0] ? ": " : "", why);
        return NULL;
    }
    r = calloc(1, sizeof *r);
    if (!r || !(r->key = strdup(key)) || (!err && route__parse(r, p, &g))) {
        if (r)
            route__free_reg(r);
        lk_reg_registry_free(&g);
        plog__msg(PLOG_WARN, "route_config", NULL, "registry %s: its notification "
                             "configs could not be read (out of memory)", key);
        return NULL;
    }
    lk_reg_registry_free(&g);
    r->next = regs[b];
    regs[b] = r;
    return r;
}

/* T for what p sent (NULL: the default topic); -1 when unknown. */
static int route__find(const lk_device_name *p, enum plg_topic t, const char *sub, const char **topic)
{
    const struct route_reg *r = route__registry(p);
    unsigned i;

    *topic = NULL;
    if (!r)
        return -1;
    if (t == TOPIC_STATE) {
        *topic = r->state_topic;
        return 0;
    }
    for (i = 0; i < r->nev; i++)
        if (!r->ev[i].match[0] || (sub && !strcmp(sub, r->ev[i].match))) {
            *topic = r->ev[i].topic;
            break;
        }
    return 0;
}

int route__topic(const lk_device_name *p, enum plg_topic t, const char *sub, char *buf, size_t size,
                 size_t *len)
{
    const char *topic;
    lk_topic kind = t == TOPIC_STATE ? LK_TOPIC_STATE : LK_TOPIC_EVENTS;

    if (route__find(p, t, sub, &topic))
        return -2;
    if (topic ? lk_routed_topic(p, topic, kind, sub, buf, size, len)
              : lk_backend_topic(p, kind, sub, buf, size, len))
        return -1;
    return 0;
}

/* # Push subscriptions */

static void route__subs_clear(void)
{
    size_t i;

    for (i = 0; i < nsubs; i++) {
        free(subs[i].project);
        free(subs[i].topic);
        free(subs[i].name);
    }
    nsubs = 0;
}

void route__forget_subscriptions(void)
{
    route__subs_clear();
    subs_loaded = 0;
}

static int route__sub_cb(void *arg, const lk_reg_subscription *s)
{
    struct route_sub *e;
    size_t n;

    if (nsubs == subs_cap) {
        size_t ncap = subs_cap ? subs_cap * 2 : 16;
        struct route_sub *nv = realloc(subs, ncap * sizeof *nv);
        if (!nv)
            goto nomem;
        subs = nv;
        subs_cap = ncap;
    }
    e = &subs[nsubs];
    n = strlen(s->project) + strlen(s->name) + sizeof "projects//subscriptions/";
    e->project = strdup(s->project);
    e->topic = strdup(s->topic);
    e->name = malloc(n);
    if (!e->project || !e->topic || !e->name) {
        free(e->project);
        free(e->topic);
        free(e->name);
        goto nomem;
    }
    snprintf(e->name, n, "projects/%s/subscriptions/%s", s->project, s->name);
    nsubs++;
    return 0;
nomem:
    *(int *)arg = 1;
    return 1;
}

/* 0 when the list of push subscriptions is known. */
static int route__subs_load(void)
{
    char why[200] = "";
    int nomem = 0;
    lk_err err;

    if (subs_loaded)
        return 0;
    route__subs_clear();
    err = lk_registry_subscription_list(plg.reg, NULL, route__sub_cb, &nomem, why, sizeof why);
    if (err || nomem) {
        route__subs_clear();
        plog__msg(PLOG_WARN, "subscriptions_failed", NULL, "the push subscriptions could not be "
                             "read (%s%s%s)", nomem ? "out of memory" : lk_errname(err),
                             why[0] ? ": " : "", why);
        return -1;
    }
    subs_loaded = 1;
    return 0;
}

/* Pub/Sub's attributes, as IoT Core set them. */
static char *route__attributes(const lk_device_name *p, const char *num, const char *gateway,
                               const char *sub)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "deviceId", p->device, "deviceNumId", num,
                          "deviceRegistryId", p->registry, "deviceRegistryLocation", p->location,
                          "projectId", p->project);
    char *text = NULL;

    if (o && (!sub || !json_object_set_new(o, "subFolder", json_string(sub))) &&
        (!gateway || !json_object_set_new(o, "gatewayId", json_string(gateway))))
        text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

/* A full queue drops that subscription's copy (the spool counts it): one
 * line a minute names one, with how many were not logged. */
static void route__full(const char *const *names, size_t n, uint32_t full)
{
    int64_t now = clock__now();
    size_t i, first = SIZE_MAX;
    uint64_t count = 0;

    for (i = 0; i < n && i < 32; i++)
        if (full & (1u << i)) {
            count++;
            if (first == SIZE_MAX)
                first = i;
        }
    if (!count)
        return;
    if (now - full_logged < LOG_EVERY_S) {
        full_unlogged += count;
        return;
    }
    full_logged = now;
    plog__msg(PLOG_WARN, "spool_full", NULL, "push subscription %s is full "
                         "(plugin_opt_spool_max_messages, plugin_opt_spool_max_bytes): its copy "
                         "was dropped and counted in its \"dropped\" figure; %" PRIu64 " other "
                         "drops in the last %d s not logged one by one", names[first],
                         full_unlogged + count - 1, LOG_EVERY_S);
    full_unlogged = 0;
}

int route__spool(const lk_device_name *p, uint64_t num_id, const char *gateway, enum plg_topic t,
                 const char *sub,
                 const void *payload, size_t len)
{
    const char *topic, **names;
    char num[24], pubsub[LK_PROJECT_MAX + LK_PUBSUB_NAME_MAX + 20], why[200] = "";
    char *attrs;
    size_t i, n = 0;
    uint32_t full = 0;
    lk_spool_limits lim = { plg.opt.spool_max_messages, plg.opt.spool_max_bytes };
    lk_spool_msg m;
    lk_err err;

    if (route__find(p, t, sub, &topic))
        return -1;
    if (!topic)
        return 0; /* the default topic has no push subscriptions */
    if (route__subs_load())
        return -1;
    for (i = 0; i < nsubs; i++)
        if (!strcmp(subs[i].topic, topic) && !strcmp(subs[i].project, p->project))
            n++;
    if (!n)
        return 0;
    snprintf(pubsub, sizeof pubsub, "projects/%s/" LK_TOPICS_LEVEL "/%s", p->project, topic);
    if (!spool) {
        if (clock__now() - nospool_logged >= LOG_EVERY_S) {
            nospool_logged = clock__now();
            plog__msg(PLOG_WARN, "spool_missing", NULL, "%s has push subscriptions but "
                                 "the broker has no plugin_opt_spool: their copies are not made",
                                 pubsub);
        }
        return 0;
    }
    names = malloc(n * sizeof *names);
    snprintf(num, sizeof num, "%" PRIu64, num_id);
    attrs = route__attributes(p, num, gateway, t == TOPIC_EVENTS && sub && sub[0] ? sub : NULL);
    if (!names || !attrs) {
        free(names);
        free(attrs);
        plog__msg(PLOG_ERROR, "spool_failed", NULL, "%s: a message for %s was not stored: "
                             "out of memory", pubsub, num);
        return -1;
    }
    for (i = 0, n = 0; i < nsubs; i++)
        if (!strcmp(subs[i].topic, topic) && !strcmp(subs[i].project, p->project))
            names[n++] = subs[i].name;
    memset(&m, 0, sizeof m);
    m.topic = pubsub;
    m.ordering_key = num;
    m.data = payload;
    m.data_len = len;
    m.attributes_json = attrs;
    m.publish_time_ms = clock__now_ms();
    err = lk_spool_enqueue(spool, &m, names, n, &lim, NULL, &full, why, sizeof why);
    if (err && clock__now() == fail_logged) {
        fail_unlogged++; /* a failing disk fails every device: one line a second */
    } else if (err) {
        fail_logged = clock__now();
        plog__msg(PLOG_ERROR, "spool_failed", NULL, "the spool %s could not store a message "
                             "of device %s for %s (%s%s%s): the publish is not acknowledged and the "
                             "connection closed (and %" PRIu64 " more in the last second)",
                             plg.opt.spool, num, pubsub, lk_errname(err), why[0] ? ": " : "", why,
                             fail_unlogged);
        fail_unlogged = 0;
    } else
        route__full(names, n, full);
    free(names);
    free(attrs);
    return err ? -1 : 0;
}

/* # Start and end */

int route__init(void)
{
    char why[256] = "";
    lk_err err;

    if (!plg.opt.spool)
        return 0;
    err = lk_spool_open(plg.opt.spool, LK_SPOOL_CREATE | (plg.opt.spool_sync_full ? LK_SPOOL_SYNC_FULL : 0),
                        SPOOL_BUSY_MS, &spool, why, sizeof why);
    if (err) {
        plog__msg(PLOG_ERROR, "spool_open", NULL, "cannot open the spool %s: %s (%s); the "
                             "broker's user needs read and write access to the file, its -wal and "
                             "-shm files and their directory", plg.opt.spool,
                             why[0] ? why : lk_strerror(err), lk_errname(err));
        return -1;
    }
    return 0;
}

void route__cleanup(void)
{
    route__forget_registries();
    route__forget_subscriptions();
    free(subs);
    subs = NULL;
    subs_cap = 0;
    if (spool)
        lk_spool_close(spool);
    spool = NULL;
    full_logged = nospool_logged = bad_logged = fail_logged = 0;
    full_unlogged = fail_unlogged = 0;
}
