/*
 * share.c — shared subscriptions of backends, $share/GROUP/FILTER
 * (docs/plugin.md, "Shared subscriptions").
 *
 * Mosquitto 2.0.11 deals each message of a group to the first member of
 * its list and moves that member to the end (src/subs.c,
 * subs__shared_process), whether the member is connected or an offline
 * persistent session: a dead member's share waits for it. A READ denial
 * there drops that group's copy; it is not dealt again. So, while a group
 * has live members, the plugin deals instead: after a device message's
 * rewrite is final (plugin.c), for each group whose filter matches and that
 * has a live member it sends one copy to the member chosen by the device's
 * numId (rendezvous hashing: the same member while the live members stay
 * the same) with mosquitto_broker_publish(client id), and it denies
 * Mosquitto's own copy of that message to the group's members at the READ
 * check. With no live member Mosquitto's dealing stands.
 *
 * The READ checks of a PUBLISH run synchronously right after its
 * MOSQ_EVT_MESSAGE, inside handle__publish → sub__messages_queue →
 * subs__send, with the message store's own topic and payload pointers (the
 * topic being the one the plugin's rewrite allocated). The denial is keyed
 * by those pointers, the length and the topic text, and is disarmed at the
 * next message event, tick or (un)subscribe check: while the message is
 * alive no other message has its pointers, and no message is created
 * between its queueing and one of those events (a publish has its message
 * event first; the plugin's own publishes are queued at the start of the
 * broker's next loop, after the tick). QoS 2 messages (queued at PUBREL,
 * later) never reach here: listeners allow QoS 1 at most.
 *
 * A READ check does not say which of a client's subscriptions it is for,
 * so a client id may not hold a share and another subscription (plain or
 * shared) whose filters overlap: the second is refused. For that the plugin
 * remembers each backend client id's plain filters too.
 *
 * A member takes part in the plugin's dealing from its SUBSCRIBE in its
 * current connection on (a session resumed without one may be one the
 * broker let expire); it stays a member, offline, until it unsubscribes or
 * its session ends (a clean start, or an MQTT 3.1.1 clean session's
 * disconnect). All in memory, bounded by plugin_opt_share_max_per_client
 * and plugin_opt_share_max_members.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define SHARE_PREFIX "$share"
#define SHARE_PLAIN_MAX 64        /* plain filters remembered per client id */
#define SHARE_CLIENT_BUCKETS 1024 /* a power of two */
/* The longest filter remembered: as long as the longest topic a backend
 * receives (longer ones serve no purpose), so memory stays bounded. */
#define SHARE_FILTER_MAX LK_ROUTED_TOPIC_MAX

struct share_group;

struct share_member {
    struct share_group *g;
    struct share_client *cl;
    int live;                     /* subscribed in its current connection */
    struct share_member *gnext;   /* the group's members */
};

struct share_group {
    char *name, *filter;
    struct share_member *members;
    unsigned nmembers, nlive;
    uint64_t dealt;               /* the message generation it was last dealt by the plugin */
    struct share_group *next;
};

struct share_client {
    char *id;
    uint64_t id_hash;
    const struct plg_conn *conn;  /* its current connection, NULL = offline */
    int ends;                     /* its session ends at disconnect (MQTT 3.1.1 clean session) */
    int untracked;                /* more plain filters than remembered: no share */
    struct share_member *shares[SHARE_MAX_PER_CLIENT_LIMIT];
    unsigned nshares;
    char *plain[SHARE_PLAIN_MAX];
    unsigned nplain;
    struct share_client *hnext;
};

static struct {
    struct share_group *groups;
    unsigned live_groups;         /* groups with a live member */
    size_t nmembers, nplain, nclients;
    int overflowed;               /* a client id was not remembered: its plain filters unknown */
    struct share_client *clients[SHARE_CLIENT_BUCKETS];
    /* the device message being handled (share__note) */
    int noted;
    lk_device_name path;
    uint64_t num_id;
    char *sub;
    char gateway[LK_ID_MAX + 1];  /* "" when no gateway sent it */
    /* the armed denial */
    uint64_t gen;
    int armed;
    const char *a_topic;
    const void *a_payload;
    uint32_t a_len;
    int64_t fail_logged;
    /* message.c's attributes, given at init (an import of message.c here
     * would make a circle: it calls share__note) */
    int (*attributes)(const lk_device_name *path, uint64_t num_id, const char *gateway,
                      const char *sub, mosquitto_property **props);
} sh;

void share__init(int (*attributes)(const lk_device_name *path, uint64_t num_id, const char *gateway,
                                   const char *sub, mosquitto_property **props))
{
    sh.attributes = attributes;
}

/* # Filters */

/* "$share/GROUP/FILTER": 1 with the group and the filter behind it; 0 for a
 * topic that is not a share; -1 (why set) for a malformed share. */
int share__parse(const char *topic, const char **group, size_t *glen, const char **filter,
                 const char **why)
{
    const char *g, *slash;
    size_t n = strlen(SHARE_PREFIX);

    if (strncmp(topic, SHARE_PREFIX, n) || (topic[n] != '/' && topic[n] != '\0'))
        return 0;
    if (topic[n] == '\0') {
        *why = "a shared subscription is $share/GROUP/FILTER";
        return -1;
    }
    g = topic + n + 1;
    slash = strchr(g, '/');
    if (!slash) {
        *why = "a shared subscription is $share/GROUP/FILTER: no filter after the group";
        return -1;
    }
    if (slash == g) {
        *why = "the group name of a shared subscription is empty";
        return -1;
    }
    if (memchr(g, '+', (size_t)(slash - g)) || memchr(g, '#', (size_t)(slash - g))) {
        *why = "the group name of a shared subscription holds '+' or '#'";
        return -1;
    }
    *group = g;
    *glen = (size_t)(slash - g);
    *filter = slash + 1;
    return 1;
}

/* Whether some topic matches both filters (valid MQTT filters). */
static int share__overlap(const char *a, const char *b)
{
    for (;;) {
        const char *ea = strchr(a, '/'), *eb = strchr(b, '/');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);

        if ((la == 1 && a[0] == '#') || (lb == 1 && b[0] == '#'))
            return 1;
        if (!(la == 1 && a[0] == '+') && !(lb == 1 && b[0] == '+')
            && (la != lb || memcmp(a, b, la)))
            return 0;
        if (!ea || !eb) {
            /* one ended: the other matches too only with exactly "/#" left */
            if (!ea && !eb)
                return 1;
            return !strcmp(ea ? ea : eb, "/#");
        }
        a = ea + 1;
        b = eb + 1;
    }
}

/* # Clients and groups */

static struct share_client **share__slot(const char *id)
{
    uint64_t h = hash__str(HASH_STR_SEED, id);
    struct share_client **pp = &sh.clients[h & (SHARE_CLIENT_BUCKETS - 1)];

    while (*pp && strcmp((*pp)->id, id))
        pp = &(*pp)->hnext;
    return pp;
}

static struct share_client *share__client(const char *id, int create)
{
    struct share_client **pp = share__slot(id), *cl;

    if (*pp || !create)
        return *pp;
    if (sh.nclients >= plg.opt.share_max_members) {
        sh.overflowed = 1;
        return NULL;
    }
    cl = calloc(1, sizeof *cl);
    if (!cl || !(cl->id = strdup(id))) {
        free(cl);
        return NULL;
    }
    cl->id_hash = hash__str(HASH_STR_SEED, id);
    *pp = cl;
    sh.nclients++;
    return cl;
}

static void share__set_live(struct share_member *m, int live)
{
    if (m->live == live)
        return;
    m->live = live;
    if (live && m->g->nlive++ == 0)
        sh.live_groups++;
    else if (!live && --m->g->nlive == 0)
        sh.live_groups--;
}

static void share__member_free(struct share_member *m)
{
    struct share_group *g = m->g, **gp;
    struct share_member **mp;
    struct share_client *cl = m->cl;
    unsigned i;

    share__set_live(m, 0);
    for (mp = &g->members; *mp != m; mp = &(*mp)->gnext)
        ;
    *mp = m->gnext;
    g->nmembers--;
    for (i = 0; i < cl->nshares && cl->shares[i] != m; i++)
        ;
    cl->shares[i] = cl->shares[--cl->nshares];
    sh.nmembers--;
    free(m);
    if (!g->members) {
        for (gp = &sh.groups; *gp != g; gp = &(*gp)->next)
            ;
        *gp = g->next;
        free(g->name);
        free(g->filter);
        free(g);
    }
}

/* Forget the client entirely when it holds nothing worth remembering. */
static void share__client_gc(struct share_client *cl)
{
    struct share_client **pp;

    if (cl->nshares || cl->nplain || cl->untracked || cl->conn)
        return;
    pp = share__slot(cl->id);
    *pp = cl->hnext;
    free(cl->id);
    free(cl);
    sh.nclients--;
}

/* Its session is gone: every share and plain filter with it. */
static void share__client_reset(struct share_client *cl)
{
    while (cl->nshares)
        share__member_free(cl->shares[0]);
    while (cl->nplain) {
        free(cl->plain[--cl->nplain]);
        sh.nplain--;
    }
    cl->untracked = 0;
    cl->ends = 0;
}

static struct share_member *share__find(struct share_client *cl, const char *group, size_t glen,
                                        const char *filter)
{
    unsigned i;

    for (i = 0; i < cl->nshares; i++) {
        const struct share_group *g = cl->shares[i]->g;
        if (strlen(g->name) == glen && !memcmp(g->name, group, glen) && !strcmp(g->filter, filter))
            return cl->shares[i];
    }
    return NULL;
}

static struct share_member *share__join(struct share_client *cl, const char *group, size_t glen,
                                        const char *filter)
{
    struct share_group *g;
    struct share_member *m = calloc(1, sizeof *m);

    if (!m)
        return NULL;
    for (g = sh.groups; g; g = g->next)
        if (strlen(g->name) == glen && !memcmp(g->name, group, glen) && !strcmp(g->filter, filter))
            break;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g || !(g->name = strndup(group, glen)) || !(g->filter = strdup(filter))) {
            if (g)
                free(g->name);
            free(g);
            free(m);
            return NULL;
        }
        g->next = sh.groups;
        sh.groups = g;
    }
    m->g = g;
    m->cl = cl;
    m->gnext = g->members;
    g->members = m;
    g->nmembers++;
    cl->shares[cl->nshares++] = m;
    sh.nmembers++;
    return m;
}

/* # Subscribe and unsubscribe checks */

int share__refuse(const struct plg_conn *c, const char *topic, const char *why)
{
    const char *addr = mosquitto_client_address(c->client);

    if (refusals__allow(addr ? addr : "", "share", clock__now()))
        plog__msg(PLOG_INFO, "share_refused", NULL, "backend %s (client id %s): "
                             "subscription to %s refused: %s", c->be ? c->be->name : "?", c->client_id,
                             topic, why);
    return MOSQ_ERR_ACL_DENIED;
}

static void share__plain_forget(struct share_client *cl, const char *filter)
{
    unsigned i;

    for (i = 0; i < cl->nplain; i++)
        if (!strcmp(cl->plain[i], filter)) {
            free(cl->plain[i]);
            cl->plain[i] = cl->plain[--cl->nplain];
            sh.nplain--;
            return;
        }
}

static int share__plain_subscribe(struct plg_conn *c, struct share_client *cl, const char *topic)
{
    unsigned i;
    char *copy;

    for (i = 0; i < cl->nshares; i++)
        if (share__overlap(topic, cl->shares[i]->g->filter)) {
            char why[600];
            snprintf(why, sizeof why, "this client id holds the shared subscription $share/%.100s/"
                     "%.300s, which overlaps it (unsubscribe that first)", cl->shares[i]->g->name,
                     cl->shares[i]->g->filter);
            return share__refuse(c, topic, why);
        }
    for (i = 0; i < cl->nplain; i++)
        if (!strcmp(cl->plain[i], topic))
            return MOSQ_ERR_SUCCESS;
    /* Not remembered: the plain subscription stands, but this client id may
     * then hold no share (its filters cannot be checked). */
    if (cl->untracked || cl->nplain == SHARE_PLAIN_MAX || sh.nplain >= plg.opt.share_max_members
        || strlen(topic) > SHARE_FILTER_MAX || !(copy = strdup(topic))) {
        cl->untracked = 1;
        return MOSQ_ERR_SUCCESS;
    }
    cl->plain[cl->nplain++] = copy;
    sh.nplain++;
    return MOSQ_ERR_SUCCESS;
}

static int share__share_subscribe(struct plg_conn *c, struct share_client *cl, const char *topic,
                                  const char *group, size_t glen, const char *filter)
{
    struct share_member *m = share__find(cl, group, glen, filter);
    char why[600];
    unsigned i;

    if (strlen(filter) > SHARE_FILTER_MAX || glen > SHARE_FILTER_MAX)
        return share__refuse(c, topic, "the filter or group name is longer than any latchkey "
                             "topic");
    if (cl->untracked)
        return share__refuse(c, topic, "this client id holds more plain subscriptions than the "
                             "plugin remembers, so a share's overlap cannot be checked (use "
                             "another client id, or connect with a clean start)");
    for (i = 0; i < cl->nplain; i++)
        if (share__overlap(filter, cl->plain[i])) {
            snprintf(why, sizeof why, "this client id holds the plain subscription %.300s, which "
                     "overlaps it (unsubscribe that first)", cl->plain[i]);
            return share__refuse(c, topic, why);
        }
    for (i = 0; i < cl->nshares; i++)
        if (cl->shares[i] != m && share__overlap(filter, cl->shares[i]->g->filter)) {
            snprintf(why, sizeof why, "this client id holds the shared subscription $share/%.100s/"
                     "%.300s, which overlaps it", cl->shares[i]->g->name, cl->shares[i]->g->filter);
            return share__refuse(c, topic, why);
        }
    if (!m) {
        if (cl->nshares >= plg.opt.share_max_per_client) {
            snprintf(why, sizeof why, "this client id holds %u shared subscriptions, the limit "
                     "(plugin_opt_share_max_per_client)", cl->nshares);
            return share__refuse(c, topic, why);
        }
        if (sh.nmembers >= plg.opt.share_max_members)
            return share__refuse(c, topic, "the broker holds plugin_opt_share_max_members shared "
                                 "subscriptions");
        m = share__join(cl, group, glen, filter);
        if (!m)
            return share__refuse(c, topic, "out of memory");
    }
    share__set_live(m, 1);
    return MOSQ_ERR_SUCCESS;
}

int share__subscription(struct plg_conn *c, int access, const char *topic, const char *group,
                        size_t glen, const char *filter)
{
    struct share_client *cl;
    struct share_member *m;
    int rc;

    sh.armed = 0; /* no message is being queued now */
    cl = share__client(c->client_id, 0);
    /* A client id not remembered while the table was full may hold plain
     * subscriptions the plugin never saw. */
    if (!cl && group && access == MOSQ_ACL_SUBSCRIBE && sh.overflowed)
        return share__refuse(c, topic, "the plugin could not remember this client id's "
                             "subscriptions (plugin_opt_share_max_members client ids were "
                             "remembered at once): connect it with a clean start");
    if (!cl && access == MOSQ_ACL_SUBSCRIBE)
        cl = share__client(c->client_id, 1);
    if (!cl) {
        if (access == MOSQ_ACL_SUBSCRIBE && group)
            return share__refuse(c, topic, sh.overflowed ? "plugin_opt_share_max_members client "
                                 "ids are remembered" : "out of memory");
        return MOSQ_ERR_SUCCESS; /* nothing remembered: nothing to check or forget */
    }
    cl->conn = c;
    cl->ends = mosquitto_client_protocol_version(c->client) != 5
               && mosquitto_client_clean_session(c->client);
    if (access == MOSQ_ACL_UNSUBSCRIBE) {
        if (!group)
            share__plain_forget(cl, filter);
        else if ((m = share__find(cl, group, glen, filter)))
            share__member_free(m);
        rc = MOSQ_ERR_SUCCESS;
    } else if (!group) {
        rc = share__plain_subscribe(c, cl, filter);
    } else {
        rc = share__share_subscribe(c, cl, topic, group, glen, filter);
    }
    return rc;
}

/* # Connections */

void share__connect(struct plg_conn *c)
{
    struct share_client *cl = share__client(c->client_id, 0);
    unsigned i;

    /* Once a client id could not be remembered, one that is not is known
     * to hold nothing only after a clean start. */
    if (!cl && (!sh.overflowed || !mosquitto_client_clean_session(c->client)
                || !(cl = share__client(c->client_id, 1))))
        return;
    /* A clean start discards the old session (with its subscriptions); so
     * does a takeover of an MQTT 3.1.1 clean session. Otherwise the session
     * resumes, but its members deal again only after they subscribe. */
    if (mosquitto_client_clean_session(c->client) || cl->ends)
        share__client_reset(cl);
    for (i = 0; i < cl->nshares; i++)
        share__set_live(cl->shares[i], 0);
    cl->conn = c;
    share__client_gc(cl);
}

void share__gone(const struct plg_conn *c)
{
    struct share_client *cl;
    unsigned i;

    if (c->kind != CONN_BACKEND || !c->client_id)
        return;
    cl = share__client(c->client_id, 0);
    if (!cl || cl->conn != c)
        return;
    cl->conn = NULL;
    if (cl->ends)
        share__client_reset(cl);
    for (i = 0; i < cl->nshares; i++)
        share__set_live(cl->shares[i], 0);
    share__client_gc(cl);
}

/* # Messages */

void share__begin(void)
{
    sh.armed = 0;
    sh.noted = 0;
}

void share__tick(void)
{
    sh.armed = 0;
}

void share__note(const lk_device_name *path, uint64_t num_id, const char *gateway, const char *sub)
{
    if (!sh.live_groups)
        return;
    free(sh.sub);
    sh.sub = NULL;
    if (sub && !(sh.sub = strdup(sub)))
        return;
    sh.path = *path;
    sh.num_id = num_id;
    snprintf(sh.gateway, sizeof sh.gateway, "%s", gateway ? gateway : "");
    sh.noted = 1;
}

/* A 64-bit mix (splitmix64's finaliser). */
static uint64_t share__mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Rendezvous hashing: the live member with the highest score for num_id. */
static struct share_member *share__pick(const struct share_group *g, uint64_t num_id)
{
    struct share_member *m, *best = NULL;
    uint64_t k = share__mix(num_id), s, top = 0;

    for (m = g->members; m; m = m->gnext) {
        if (!m->live || !m->cl->conn || m->cl->conn->kick_reason)
            continue;
        s = share__mix(m->cl->id_hash ^ k);
        if (!best || s > top || (s == top && strcmp(m->cl->id, best->cl->id) < 0)) {
            best = m;
            top = s;
        }
    }
    return best;
}

static int share__send(const char *client_id, const struct mosquitto_evt_message *ed)
{
    mosquitto_property *props = NULL;
    void *copy;
    int rc;

    if (!sh.attributes || sh.attributes(&sh.path, sh.num_id, sh.gateway[0] ? sh.gateway : NULL, sh.sub, &props)) {
        mosquitto_property_free_all(&props);
        return MOSQ_ERR_NOMEM;
    }
    copy = mosquitto_malloc(ed->payloadlen ? ed->payloadlen : 1);
    if (!copy) {
        mosquitto_property_free_all(&props);
        return MOSQ_ERR_NOMEM;
    }
    if (ed->payloadlen)
        memcpy(copy, ed->payload, ed->payloadlen);
    rc = mosquitto_broker_publish(client_id, ed->topic, (int)ed->payloadlen, copy, 1, false, props);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_free(copy);
        mosquitto_property_free_all(&props);
    }
    return rc;
}

void share__message(const struct mosquitto_evt_message *ed)
{
    struct share_group *g;
    struct share_member *m;
    int dealt = 0;
    bool match;

    if (!sh.noted || !sh.live_groups || ed->qos > 1 || !ed->topic)
        return;
    sh.gen++;
    for (g = sh.groups; g; g = g->next) {
        if (!g->nlive || mosquitto_topic_matches_sub(g->filter, ed->topic, &match) || !match)
            continue;
        m = share__pick(g, sh.num_id);
        if (!m)
            continue;
        if (share__send(m->cl->id, ed) != MOSQ_ERR_SUCCESS) {
            /* Mosquitto's own dealing delivers this group's copy. */
            int64_t now = clock__now();
            if (now != sh.fail_logged) {
                sh.fail_logged = now;
                plog__msg(PLOG_WARN, "share_failed", NULL, "shared subscription "
                                     "$share/%s/%s: out of memory; Mosquitto deals this message",
                                     g->name, g->filter);
            }
            continue;
        }
        g->dealt = sh.gen;
        dealt = 1;
    }
    if (dealt) {
        sh.armed = 1;
        sh.a_topic = ed->topic;
        sh.a_payload = ed->payload;
        sh.a_len = ed->payloadlen;
    }
}

int share__read_denied(const struct mosquitto_evt_acl_check *ed)
{
    const struct share_client *cl;
    const char *id;
    unsigned i;

    if (!sh.armed || ed->topic != sh.a_topic || ed->payload != sh.a_payload
        || ed->payloadlen != sh.a_len || strcmp(ed->topic, sh.a_topic))
        return 0;
    id = mosquitto_client_id(ed->client);
    if (!id || !(cl = share__client(id, 0)))
        return 0;
    /* Its one subscription that matches (none overlap) is in that group. */
    for (i = 0; i < cl->nshares; i++)
        if (cl->shares[i]->g->dealt == sh.gen)
            return 1;
    return 0;
}

void share__cleanup(void)
{
    size_t i;

    for (i = 0; i < SHARE_CLIENT_BUCKETS; i++)
        while (sh.clients[i]) {
            struct share_client *cl = sh.clients[i];
            cl->conn = NULL;
            share__client_reset(cl);
            share__client_gc(cl);
        }
    free(sh.sub);
    memset(&sh, 0, sizeof sh);
}
