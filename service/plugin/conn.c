/*
 * conn.c — the live connections, keyed by the broker's client pointer (a
 * reconnect with the same client id is authenticated before the old
 * connection's disconnect event, so the client id is not a key), indexed by
 * device num_id, with a min-heap of deadlines (token expiry, connection age,
 * idleness) and the queues the tick works through: kicks and config sends.
 * Devices attached on a gateway's connection have records here too (kind
 * CONN_ATTACHED, no client of their own), indexed by num_id and by
 * (gateway, device id), listed under their gateway, freed with it.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_util.h"
#include "plugin.h"

/* The three hash tables grow with the connections (a bucket each, at least
 * MIN_BUCKETS): a fixed size for the largest fleet would hold 1.5 MB
 * resident, 150 bytes a device for 10,000. Small, so that the tests' fleets
 * of a few hundred make them grow. */
#define MIN_BUCKETS 64u

/* One allocation of 3 * nbuckets: by_client, then by_num, then by_att. */
static struct plg_conn **by_client, **by_num, **by_att;
static size_t nbuckets, nconns;
static struct plg_conn *all;

static struct plg_conn **heap;
static size_t heap_n, heap_cap;

/* The queues the tick works through: kicks, config sends and re-checks.
 * Intrusive lists (links in each connection) so that queueing can never fail
 * for want of memory — a kick that could not be queued would leave a revoked
 * connection open — and a connection leaves its queues in O(1). */
/* Told when a device connection goes offline (superseded or kicked): the
 * caller above publishes the notice, so this file needs nothing above it. */
static void (*on_offline)(struct plg_conn *c, const char *why);
static void (*on_detach)(struct plg_conn *c, const char *why);

static struct plg_conn *q_head[Q_COUNT], *q_tail[Q_COUNT];
static size_t q_len[Q_COUNT];

static size_t conn__hash_ptr(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= 0xed5ad4bbu;
    x ^= x >> 11;
    return (size_t)x & (nbuckets - 1);
}

static size_t conn__hash_num(uint64_t n)
{
    return hash__num(n, nbuckets - 1);
}

static size_t conn__hash_att(const struct plg_conn *gw, const char *device);

/* Twice the buckets, every connection indexed again (device connections are
 * always in by_num, attached ones in by_att). Out of memory: the old tables
 * stay, with longer chains. */
static void conn__grow(void)
{
    size_t n = nbuckets * 2, h;
    struct plg_conn **t = calloc(3 * n, sizeof *t), *c;

    if (!t)
        return;
    free(by_client);
    by_client = t;
    by_num = t + n;
    by_att = t + 2 * n;
    nbuckets = n;
    for (c = all; c; c = c->next) {
        h = conn__hash_ptr(c->client);
        c->hnext_client = by_client[h];
        by_client[h] = c;
        if (c->kind == CONN_DEVICE || c->kind == CONN_ATTACHED) {
            h = conn__hash_num(c->num_id);
            c->hnext_num = by_num[h];
            by_num[h] = c;
        }
        if (c->kind == CONN_ATTACHED) {
            h = conn__hash_att(c->gateway, conn__device(c));
            c->hnext_att = by_att[h];
            by_att[h] = c;
        }
    }
}

int conn__init(void (*offline)(struct plg_conn *c, const char *why),
               void (*detach)(struct plg_conn *c, const char *why))
{
    on_offline = offline;
    on_detach = detach;
    nbuckets = MIN_BUCKETS;
    nconns = 0;
    if (!(by_client = calloc(3 * nbuckets, sizeof *by_client)))
        return -1;
    by_num = by_client + nbuckets;
    by_att = by_client + 2 * nbuckets;
    return 0;
}

/* (gateway, device id): the gateway's pointer mixed into the id's hash. */
static size_t conn__hash_att(const struct plg_conn *gw, const char *device)
{
    return (size_t)(hash__str(HASH_STR_SEED ^ (uint64_t)(uintptr_t)gw, device) >> 17) & (nbuckets - 1);
}

/* # Heap */

static int conn__less(size_t a, size_t b)
{
    return heap[a]->deadline < heap[b]->deadline;
}

static void conn__swap(size_t a, size_t b)
{
    struct plg_conn *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_idx = a;
    heap[b]->heap_idx = b;
}

static void conn__up(size_t i)
{
    while (i > 0 && conn__less(i, (i - 1) / 2)) {
        conn__swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void conn__down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && conn__less(l, m))
            m = l;
        if (r < heap_n && conn__less(r, m))
            m = r;
        if (m == i)
            return;
        conn__swap(i, m);
        i = m;
    }
}

static void conn__heap_remove(struct plg_conn *c)
{
    size_t i = c->heap_idx;

    if (i == SIZE_MAX)
        return;
    c->heap_idx = SIZE_MAX;
    heap_n--;
    if (i == heap_n)
        return;
    heap[i] = heap[heap_n];
    heap[i]->heap_idx = i;
    conn__up(i);
    conn__down(heap[i]->heap_idx);
}

static int conn__heap_push(struct plg_conn *c)
{
    if (heap_n == heap_cap) {
        size_t ncap = heap_cap ? heap_cap * 2 : 1024;
        struct plg_conn **nh = realloc(heap, ncap * sizeof *nh);
        if (!nh)
            return -1;
        heap = nh;
        heap_cap = ncap;
    }
    heap[heap_n] = c;
    c->heap_idx = heap_n++;
    conn__up(c->heap_idx);
    return 0;
}

static int64_t conn__due(const struct plg_conn *c, const char **why)
{
    int64_t t = INT64_MAX;
    *why = NULL;
    if (c->kind == CONN_ATTACHED) {
        /* Its gateway's connection bounds its age and idleness; its own
         * token, when it was attached with one, bounds it too. */
        if (c->token_used) {
            t = c->token_until;
            *why = "the device's authorization token expired";
            if (c->cred_expires > 0 && c->cred_expires < t) {
                t = c->cred_expires;
                *why = "the credential that authenticated the device expired";
            }
        }
        return t;
    }
    if (c->kind == CONN_DEVICE) {
        t = c->token_until;
        *why = "the authorization token expired";
        if (c->cred_expires > 0 && c->cred_expires < t) {
            t = c->cred_expires;
            *why = "the credential that authenticated it expired";
        }
    }
    /* connected_at and last_seen are whole seconds, truncated: + 1 so that
     * these limits are never applied early. (Token and credential expiries
     * are exact times already.) */
    if (c->connected_at + plg.opt.max_connection + 1 < t) {
        t = c->connected_at + plg.opt.max_connection + 1;
        *why = "the maximum connection time was reached";
    }
    if (c->keepalive == 0 && c->last_seen + plg.opt.idle_timeout + 1 < t) {
        t = c->last_seen + plg.opt.idle_timeout + 1;
        *why = "idle (keep-alive 0) for longer than the idle timeout";
    }
    return t;
}

void conn__schedule(struct plg_conn *c)
{
    const char *why;
    conn__heap_remove(c);
    c->deadline = conn__due(c, &why);
    if (c->deadline != INT64_MAX && conn__heap_push(c))
        conn__kick(c, "out of memory");
}

/* # Queues */

static void queue__push(int k, struct plg_conn *c)
{
    if (c->queued & (1u << k))
        return;
    c->queued |= (uint8_t)(1u << k);
    c->q[k].next = NULL;
    c->q[k].prev = q_tail[k];
    if (q_tail[k])
        q_tail[k]->q[k].next = c;
    else
        q_head[k] = c;
    q_tail[k] = c;
    q_len[k]++;
}

static void queue__remove(int k, struct plg_conn *c)
{
    if (!(c->queued & (1u << k)))
        return;
    if (c->q[k].prev)
        c->q[k].prev->q[k].next = c->q[k].next;
    else
        q_head[k] = c->q[k].next;
    if (c->q[k].next)
        c->q[k].next->q[k].prev = c->q[k].prev;
    else
        q_tail[k] = c->q[k].prev;
    c->q[k].prev = c->q[k].next = NULL;
    c->queued &= (uint8_t) ~(1u << k);
    q_len[k]--;
}

static struct plg_conn *queue__pop(int k)
{
    struct plg_conn *c = q_head[k];
    if (c)
        queue__remove(k, c);
    return c;
}

void conn__kick(struct plg_conn *c, const char *reason)
{
    if (c->kick_reason || c->superseded)
        return;
    c->kick_reason = reason;
    queue__push(Q_KICK, c);
}

void conn__want_config(struct plg_conn *c, int force)
{
    if (force)
        c->config_force = 1;
    queue__push(Q_CONFIG, c);
}

void conn__drain_config(void (*fn)(struct plg_conn *c))
{
    size_t n = q_len[Q_CONFIG];
    struct plg_conn *c;

    /* fn queues its connection again when the config could not be read or
     * sent: take only the ones queued before this tick. */
    while (n-- && (c = queue__pop(Q_CONFIG)))
        fn(c);
}

void conn__want_recheck(struct plg_conn *c)
{
    queue__push(Q_RECHECK, c);
}

int conn__subscription(struct plg_conn *c, lk_topic t, int access, int qos)
{
    int sub = access == MOSQ_ACL_SUBSCRIBE;

    if (plog__on(plog__level(c), PLOG_DEBUG)) {
        struct kvlog l;
        plog__begin(&l, PLOG_DEBUG, sub ? "subscribe" : "unsubscribe");
        kvlog_str(&l, "device", c->client_id);
        kvlog_str(&l, "topic", t == LK_TOPIC_CONFIG ? "config" : t == LK_TOPIC_COMMANDS_ALL ? "commands"
                                                                                      : "other");
        kvlog_int(&l, "qos", qos);
        kvlog_str(&l, "outcome", t == LK_TOPIC_CONFIG || t == LK_TOPIC_COMMANDS_ALL ? "granted" : "denied");
        plog__emit(&l, PLOG_DEBUG);
    }
    if (t == LK_TOPIC_CONFIG) {
        c->config_qos = sub ? (qos > 1 ? 1 : qos) : -1;
        if (sub)
            conn__want_config(c, 1); /* the latest, on the next tick */
        return MOSQ_ERR_SUCCESS;
    }
    if (t == LK_TOPIC_COMMANDS_ALL) {
        c->commands_qos = sub ? (qos > 1 ? 1 : qos) : -1;
        return MOSQ_ERR_SUCCESS;
    }
    return MOSQ_ERR_ACL_DENIED;
}

void conn__unconfirmed(struct plg_conn *c, lk_err err)
{
    int64_t now = clock__now();

    if (!c->unconfirmed_since)
        c->unconfirmed_since = now;
    if (now - c->unconfirmed_since < plg.opt.confirm_timeout) {
        queue__push(Q_RECHECK, c);
        return;
    }
    plog__dev(c, PLOG_WARN, "unconfirmed", "the registry could not be read for %" PRId64 " s (%s)",
              now - c->unconfirmed_since, lk_errname(err));
    conn__kick(c, "its standing could not be confirmed: the registry could not be read");
}

const char *conn__standing(struct plg_conn *c, const struct plg_device *d, int cred)
{
    int i;

    if (d->num_id != c->num_id)
        return "the device was deleted";
    if (d->blocked)
        return "the device was blocked";
    if (d->mqtt == LK_REG_STATE_DISABLED)
        return "MQTT was disabled for the registry";
    if (cred) {
        i = devices__find_cred(d, c->cred_fp, c->cred_expires);
        if (i < 0)
            return "the credential that authenticated it was removed";
        if (lk_cred_expires(d->creds[i]) != c->cred_expires) {
            /* the same key with a new expiry keeps the connection */
            c->cred_expires = lk_cred_expires(d->creds[i]);
            conn__schedule(c);
        }
    }
    if (c->config_qos >= 0 && d->config_version > c->config_sent)
        conn__want_config(c, 0);
    return NULL;
}

void conn__drain_recheck(void (*fn)(struct plg_conn *c, void *arg))
{
    size_t n = q_len[Q_RECHECK];
    struct plg_conn *c;

    /* fn may queue its connection again (still unreadable): take only the
     * ones queued before this tick. */
    while (n-- && (c = queue__pop(Q_RECHECK)))
        fn(c, NULL);
}

/* # Table */

struct plg_conn *conn__new(struct mosquitto *client, enum plg_conn_kind kind, const char *client_id)
{
    struct plg_conn *c;
    size_t h, n = strlen(client_id ? client_id : "") + 1;

    /* Before c is linked: conn__grow indexes every device connection in
     * by_num, and c gets its num_id later (conn__index_num). */
    if (nconns >= nbuckets)
        conn__grow();
    /* The client id in the same allocation, after the record. */
    if (!(c = calloc(1, sizeof *c + n)))
        return NULL;
    c->client_id = (char *)(c + 1);
    memcpy(c->client_id, client_id ? client_id : "", n);
    c->client = client;
    c->kind = kind;
    c->config_qos = -1;
    c->commands_qos = -1;
    c->errors_qos = -1;
    c->heap_idx = SIZE_MAX;
    c->limit = LIMIT_NONE;
    h = conn__hash_ptr(client);
    c->hnext_client = by_client[h];
    by_client[h] = c;
    c->next = all;
    if (all)
        all->prev = c;
    all = c;
    nconns++;
    return c;
}

void conn__index_num(struct plg_conn *c)
{
    size_t h = conn__hash_num(c->num_id);
    c->hnext_num = by_num[h];
    by_num[h] = c;
}

struct plg_conn *conn__find(const struct mosquitto *client)
{
    struct plg_conn *c;
    if (!by_client || !client) /* attached devices have none */
        return NULL;
    for (c = by_client[conn__hash_ptr(client)]; c; c = c->hnext_client)
        if (c->client == client)
            return c;
    return NULL;
}

struct plg_conn *conn__find_device(uint64_t num_id)
{
    struct plg_conn *c;
    for (c = by_num[conn__hash_num(num_id)]; c; c = c->hnext_num)
        if (c->num_id == num_id && (c->kind == CONN_DEVICE || c->kind == CONN_ATTACHED) &&
            !c->superseded && !c->kick_reason)
            return c;
    return NULL;
}

void conn__each_num(uint64_t num_id, void (*fn)(struct plg_conn *c, void *arg), void *arg)
{
    struct plg_conn *c, *next;
    for (c = by_num[conn__hash_num(num_id)]; c; c = next) {
        next = c->hnext_num;
        if (c->num_id == num_id && (c->kind == CONN_DEVICE || c->kind == CONN_ATTACHED))
            fn(c, arg);
    }
}

struct plg_conn *conn__attach_new(struct plg_conn *gw, const lk_device_name *p, const char *path,
                                  uint64_t num_id)
{
    /* No client of its own: conn__find never answers with it. */
    struct plg_conn *c = conn__new(NULL, CONN_ATTACHED, path);
    size_t h;

    if (!c)
        return NULL;
    c->gateway = gw;
    c->num_id = num_id;
    conn__index_num(c);
    h = conn__hash_att(gw, p->device);
    c->hnext_att = by_att[h];
    by_att[h] = c;
    c->att_next = gw->att_head;
    if (gw->att_head)
        gw->att_head->att_prev = c;
    gw->att_head = c;
    gw->attached++;
    return c;
}

struct plg_conn *conn__find_attached(const struct plg_conn *gw, const char *device)
{
    struct plg_conn *c;
    for (c = by_att[conn__hash_att(gw, device)]; c; c = c->hnext_att)
        if (c->gateway == gw && !strcmp(conn__device(c), device))
            return c;
    return NULL;
}

const char *conn__target(const struct plg_conn *c)
{
    return c->gateway ? c->gateway->client_id : c->client_id;
}

void conn__name(const struct plg_conn *c, lk_device_name *p)
{
    /* Parsed when it connected (auth.c) or built from a name (attach): this
     * parse cannot fail, and a name left empty would match nothing. */
    (void)lk_device_path_parse(c->client_id, strlen(c->client_id), p);
}

const char *conn__device(const struct plg_conn *c)
{
    const char *s = strrchr(c->client_id, '/');
    return s ? s + 1 : c->client_id;
}

void conn__supersede(struct plg_conn *nc)
{
    struct plg_conn *c;
    for (c = by_num[conn__hash_num(nc->num_id)]; c; c = c->hnext_num) {
        if (c != nc && c->kind == CONN_DEVICE && !c->superseded && !strcmp(c->client_id, nc->client_id)) {
            c->superseded = 1;
            conn__heap_remove(c);
            queue__remove(Q_KICK, c);
            queue__remove(Q_CONFIG, c);
            queue__remove(Q_RECHECK, c);
            if (!c->offline_sent) {
                c->offline_sent = 1;
                on_offline(c, "replaced by a new connection of the same device");
            }
        }
    }
}

void conn__free(struct plg_conn *c)
{
    struct plg_conn **pp;

    metrics__gone(c);
    /* A gateway's devices go with it (gateway__gone told them offline). */
    while (c->att_head)
        conn__free(c->att_head);
    if (c->kind == CONN_ATTACHED) {
        for (pp = &by_att[conn__hash_att(c->gateway, conn__device(c))]; *pp; pp = &(*pp)->hnext_att)
            if (*pp == c) {
                *pp = c->hnext_att;
                break;
            }
        if (c->att_prev)
            c->att_prev->att_next = c->att_next;
        else
            c->gateway->att_head = c->att_next;
        if (c->att_next)
            c->att_next->att_prev = c->att_prev;
        c->gateway->attached--;
    }
    share__gone(c);

    for (pp = &by_client[conn__hash_ptr(c->client)]; *pp; pp = &(*pp)->hnext_client)
        if (*pp == c) {
            *pp = c->hnext_client;
            break;
        }
    if (c->kind == CONN_DEVICE || c->kind == CONN_ATTACHED) {
        for (pp = &by_num[conn__hash_num(c->num_id)]; *pp; pp = &(*pp)->hnext_num)
            if (*pp == c) {
                *pp = c->hnext_num;
                break;
            }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nconns--;
    conn__heap_remove(c);
    queue__remove(Q_KICK, c);
    queue__remove(Q_CONFIG, c);
    queue__remove(Q_RECHECK, c);
    limits__unpin(c->limit);
    if (c->be) {
        lk_wipe(c->be->hash, sizeof c->be->hash);
        free(c->be);
    }
    free(c);
}

struct plg_ident *conn__backend_new(const char *name)
{
    size_t n = strlen(name) + 1;
    struct plg_ident *b = calloc(1, sizeof *b + n);

    if (b)
        memcpy(b->name, name, n);
    return b;
}

void conn__each(void (*fn)(struct plg_conn *c, void *arg), void *arg)
{
    struct plg_conn *c, *next;
    for (c = all; c; c = next) {
        next = c->next;
        fn(c, arg);
    }
}

void conn__cleanup(void)
{
    while (all)
        conn__free(all);
    free(by_client);
    free(heap);
    by_client = by_num = by_att = NULL;
    heap = NULL;
    heap_n = heap_cap = 0;
}

/* # Tick */

/* The close's line: a device at its level, a backend or bridge at the
 * plugin's. */
static void conn__log_close(const struct plg_conn *c)
{
    struct kvlog l;
    const char *addr = c->client ? mosquitto_client_address(c->client) : NULL;

    if (!plog__on(plog__level(c), PLOG_INFO))
        return;
    plog__begin(&l, PLOG_INFO, "close");
    if (c->kind == CONN_DEVICE) {
        kvlog_str(&l, "device", c->client_id);
    } else {
        kvlog_str(&l, c->kind == CONN_BRIDGE ? "bridge" : "backend", c->be ? c->be->name : "?");
        kvlog_str(&l, "client", c->client_id);
    }
    kvlog_str(&l, "addr", addr ? addr : "?");
    kvlog_str(&l, "reason", c->kick_reason);
    plog__emit(&l, PLOG_INFO);
}

void conn__tick(int64_t now)
{
    struct plg_conn *c;

    /* Deadlines: recompute the earliest; kick it if due, else put it back. */
    /* A deadline is the first second at which the connection may no longer
     * stand (the verifier calls a token expired at exp + skew itself). */
    while (heap_n && heap[0]->deadline <= now) {
        const char *why;
        int64_t due;
        c = heap[0];
        due = conn__due(c, &why);
        conn__heap_remove(c);
        if (due <= now) {
            conn__kick(c, why);
        } else {
            c->deadline = due;
            if (conn__heap_push(c))
                conn__kick(c, "out of memory"); /* a deadline is never dropped */
        }
    }
    /* Kicking calls the disconnect event at once, which frees the
     * connection: each is off the queue before it is kicked. */
    while ((c = queue__pop(Q_KICK))) {
        if (c->superseded)
            continue;
        if (c->kind == CONN_ATTACHED) {
            on_detach(c, c->kick_reason); /* frees c */
            continue;
        }
        if (c->kind == CONN_DEVICE) {
            conn__log_close(c);
            activity__note(c->num_id, ACT_ERROR, now, c->kick_reason);
            if (!c->offline_sent) {
                c->offline_sent = 1;
                on_offline(c, c->kick_reason);
            }
        } else {
            conn__log_close(c);
        }
        /* Mosquitto reads the id only to find the client, before the
         * disconnect event frees c. */
        mosquitto_kick_client_by_clientid(c->client_id, false);
    }
}
