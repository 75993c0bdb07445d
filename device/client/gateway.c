/*
 * gateway.c — a client that is a gateway (lk_device.h, "Gateways"): the
 * table of attached devices, their attach (with the device's own token) on
 * every connection before any of their messages, the tokens' refresh,
 * per-device pacing under the connection's cap, detaches, and the errors
 * topic. The queue stays queue.c's: a device's messages are ordinary
 * entries that name their owner.
 */
#include "client_internal.h"

#define GW_BUCKETS 1024u          /* a power of two; chains stay short up to 1000 devices */
#define GW_DEFAULT_RATE 800u      /* under the server's default cap of 1000 */
/* {"authorization":"TOKEN"} */
#define ATTACH_PAYLOAD_MAX (TOKEN_SIZE + 24u)

struct gw {
    lk_dev_gateway_config cfg;
    struct lk_rate conn;          /* everything the connection publishes */
    struct gw_dev *buckets[GW_BUCKETS];
    struct gw_dev *first, *last;
    size_t n;
    char *topic_errors;
    unsigned gen;                 /* pump passes */
    int want_control;             /* some device may need an attach sent */
    int64_t next_refresh_ms;      /* the earliest token refresh, 0 = none */
};

static unsigned hash_id(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h & (GW_BUCKETS - 1u);
}

static struct gw_dev *find(const struct gw *g, const char *id)
{
    struct gw_dev *o;
    if (g == NULL || id == NULL)
        return NULL;
    for (o = g->buckets[hash_id(id)]; o != NULL; o = o->hnext)
        if (strcmp(o->id, id) == 0)
            return o;
    return NULL;
}

/* An event about device o: the detail is formatted here, ev.device set. */
static void gw_emit(lk_dev *d, struct gw_dev *o, lk_dev_event_type type, lk_err err, int code,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void gw_emit(lk_dev *d, struct gw_dev *o, lk_dev_event_type type, lk_err err, int code,
                    const char *fmt, ...)
{
    char buf[DETAIL_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    d->ev_device = o->id;
    lk_dev__emit(d, type, err, code, 0, 0, "%s", buf);
    d->ev_device = NULL;
}

static void drop_token(struct gw_dev *o)
{
    if (o->token != NULL)
        lk_wipe(o->token, TOKEN_SIZE);
    o->token_len = 0;
    o->token_exp = 0;
    o->token_mono = 0;
}

static void dev_free(struct gw_dev *o)
{
    drop_token(o);
    free(o->token);
    lk_dev__rate_free(&o->rate);
    free(o);
}

/* Forget o: its messages still queued are dropped (the count is returned),
 * then it leaves the table. */
static size_t forget(lk_dev *d, struct gw_dev *o)
{
    struct gw *g = d->gw;
    struct gw_dev **pp;
    struct msg *m, *prev = NULL, *next;
    size_t dropped = 0;

    for (m = d->head; m != NULL; m = next) {
        next = m->next;
        if (m->owner != o) {
            prev = m;
            continue;
        }
        lk_dev__unlink(d, m, prev);
        if (m->kind == MSG_DATA)
            dropped++;
        lk_dev__msg_free(m);
    }
    for (pp = &g->buckets[hash_id(o->id)]; *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == o) {
            *pp = o->hnext;
            break;
        }
    }
    if (o->prev != NULL)
        o->prev->next = o->next;
    else
        g->first = o->next;
    if (o->next != NULL)
        o->next->prev = o->prev;
    else
        g->last = o->prev;
    g->n--;
    return dropped;
}

/* Forget o and say so (LK_DEV_EV_DETACHED, code = messages dropped). */
static void forget_detached(lk_dev *d, struct gw_dev *o, const char *how)
{
    size_t dropped = forget(d, o);
    gw_emit(d, o, LK_DEV_EV_DETACHED, LK_OK, (int)dropped, "%s %s%s", how, o->id,
            dropped ? "; its unsent messages were dropped" : "");
    dev_free(o);
}

/* ---------------------------------------------------------------- the API */

lk_err lk_dev_gateway(lk_dev *d, const lk_dev_gateway_config *c)
{
    struct gw *g;
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    unsigned rate;

    if (d == NULL || c == NULL)
        return LK_ERR_ARG;
    if (d->state != LK_DEV_IDLE || d->gw != NULL)
        return LK_ERR_STATE;
    if (c->gateway_messages_per_s > 100000)
        return LK_ERR_ARG;
    rate = c->gateway_messages_per_s ? c->gateway_messages_per_s : GW_DEFAULT_RATE;
    if (lk_device_topic(d->device, LK_TOPIC_ERRORS, NULL, topic, sizeof topic, NULL) != LK_OK)
        return LK_ERR_ARG;
    g = calloc(1, sizeof *g);
    if (g == NULL)
        return LK_ERR_NOMEM;
    g->cfg = *c;
    g->cfg.gateway_messages_per_s = rate;
    g->topic_errors = strdup(topic);
    if (g->topic_errors == NULL || lk_dev__rate_init(&g->conn, rate) != LK_OK) {
        free(g->topic_errors);
        lk_dev__rate_free(&g->conn);
        free(g);
        return LK_ERR_NOMEM;
    }
    d->gw = g;
    return LK_OK;
}

/* ------------------------------------------------ for gateway_api.c */

struct gw_dev *lk_dev__gw_find(const lk_dev *d, const char *id)
{
    return find(d->gw, id);
}

lk_err lk_dev__gw_add(lk_dev *d, const char *id, int with_token, struct gw_dev **out)
{
    struct gw *g = d->gw;
    struct gw_dev *o;
    unsigned h;

    *out = NULL;
    if (g->n >= LK_GATEWAY_ATTACHED_MAX)
        return LK_ERR_TOO_MANY;
    o = calloc(1, sizeof *o);
    if (o == NULL)
        return LK_ERR_NOMEM;
    if ((with_token && (o->token = malloc(TOKEN_SIZE)) == NULL) ||
        lk_dev__rate_init(&o->rate, d->max_rate) != LK_OK) {
        dev_free(o);
        return LK_ERR_NOMEM;
    }
    memcpy(o->id, id, strlen(id) + 1);
    h = hash_id(id);
    o->hnext = g->buckets[h];
    g->buckets[h] = o;
    o->prev = g->last;
    if (g->last != NULL)
        g->last->next = o;
    else
        g->first = o;
    g->last = o;
    g->n++;
    o->status = GW_PENDING;
    *out = o;
    return LK_OK;
}

lk_err lk_dev__gw_rekey(struct gw_dev *o, int with_token)
{
    if (with_token && o->token == NULL && (o->token = malloc(TOKEN_SIZE)) == NULL)
        return LK_ERR_NOMEM;
    drop_token(o);
    return LK_OK;
}

void lk_dev__gw_want_control(lk_dev *d)
{
    d->gw->want_control = 1;
}

void lk_dev__gw_forget(lk_dev *d, struct gw_dev *o)
{
    forget_detached(d, o, "detached");
}

/* ------------------------------------------------------- inside the client */

void lk_dev__gw_free(lk_dev *d)
{
    struct gw *g = d->gw;
    struct gw_dev *o, *next;
    if (g == NULL)
        return;
    for (o = g->first; o != NULL; o = next) {
        next = o->next;
        dev_free(o);
    }
    lk_dev__rate_free(&g->conn);
    free(g->topic_errors);
    free(g);
    d->gw = NULL;
}

void lk_dev__gw_reset(lk_dev *d)
{
    struct gw *g = d->gw;
    struct gw_dev *o;
    if (g == NULL)
        return;
    for (o = g->first; o != NULL; o = o->next) {
        o->attach_mid = 0;
        o->sub_mid = 0;
        o->reattach = 0;
        o->state_inflight = 0;
        if (o->status != GW_HELD)
            o->status = GW_PENDING;
    }
    g->want_control = 1;
    /* A device being detached whose detach alone was left: the server dropped
     * it with the connection. Forgotten one at a time, from the start again:
     * the event's callback may detach others. */
    for (o = g->first; o != NULL;) {
        if (o->detaching && o->queued <= 1) {
            forget_detached(d, o, "detached (with the connection)");
            o = g->first;
        } else {
            o = o->next;
        }
    }
}

int lk_dev__gw_own_topics(lk_dev *d, char **topics)
{
    if (d->gw == NULL)
        return 0;
    topics[0] = d->gw->topic_errors;
    return 1;
}

static int64_t refresh_at(const lk_dev *d, const struct gw_dev *o)
{
    return o->token_mono + (int64_t)(d->lifetime_s - d->margin_s) * 1000;
}

/* o's token, reused while it has more than the refresh margin left (the
 * server's verified-token cache then answers), else signed anew. */
static lk_err device_token(lk_dev *d, struct gw_dev *o, int64_t now)
{
    int64_t iat;
    lk_err err;
    struct gw *g = d->gw;

    if (o->token_len > 0 && now < refresh_at(d, o))
        return LK_OK;
    drop_token(o);
    iat = (int64_t)time(NULL);
    err = lk_jwt_iotcore(o->se, o->key, o->alg, d->project, strlen(d->project), iat,
                         iat + d->lifetime_s, o->token, TOKEN_SIZE, &o->token_len);
    if (err != LK_OK) {
        drop_token(o);
        return err;
    }
    o->token_exp = iat + d->lifetime_s;
    o->token_mono = now;
    d->stats.tokens++;
    if (g->next_refresh_ms == 0 || refresh_at(d, o) < g->next_refresh_ms)
        g->next_refresh_ms = refresh_at(d, o);
    return LK_OK;
}

/* Publish o's attach, with its token when it has a key. 1 sent, 0 not (o
 * held when its token could not be made). */
static int send_attach(lk_dev *d, struct gw_dev *o, int64_t now)
{
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    char payload[ATTACH_PAYLOAD_MAX];
    size_t plen = 2;
    int mid = 0, rc;

    memcpy(payload, "{}", 3);
    if (o->se != NULL) {
        lk_err err = device_token(d, o, now);
        if (err != LK_OK) {
            char shown[2 * LK_KEY_REF_MAX + 8];
            (void)lk_key_ref_redact(o->key, shown, sizeof shown);
            o->status = GW_HELD;
            o->reattach = 0;
            gw_emit(d, o, LK_DEV_EV_WARNING, err, 0, "cannot sign a token for %s with key %s: %s",
                    o->id, shown, lk_strerror(err));
            return 0;
        }
        plen = (size_t)snprintf(payload, sizeof payload, "{\"authorization\":\"%.*s\"}",
                                (int)o->token_len, o->token);
    }
    if (lk_device_topic(o->id, LK_TOPIC_ATTACH, NULL, topic, sizeof topic, NULL) != LK_OK)
        return 0;
    /* libmosquitto copies the payload (and frees it, unwiped, with its
     * packet): as the password, the token lives there for a while. */
    rc = mosquitto_publish(d->mosq, &mid, topic, (int)plen, payload, 1, false);
    lk_wipe(payload, sizeof payload);
    if (rc != MOSQ_ERR_SUCCESS)
        return 0;
    lk_dev__rate_record(&d->gw->conn, now);
    o->attach_mid = mid != 0 ? mid : -1;
    if (o->status == GW_PENDING)
        o->status = GW_ATTACHING;
    o->reattach = 0;
    return 1;
}

int lk_dev__gw_pump_control(lk_dev *d, int64_t now, int64_t *when)
{
    struct gw *g = d->gw;
    struct gw_dev *o;
    if (g == NULL || !g->want_control)
        return 1;
    for (o = g->first; o != NULL; o = o->next) {
        int64_t t;
        if (!(o->status == GW_PENDING || (o->status == GW_ATTACHED && o->reattach)))
            continue;
        if ((t = lk_dev__rate_wait(&g->conn, now)) != 0) {
            if (*when == 0 || t < *when)
                *when = t;
            return 0;
        }
        if (!send_attach(d, o, now) && o->status != GW_HELD)
            return 0; /* the connection is failing */
    }
    g->want_control = 0;
    return 1;
}

void lk_dev__gw_tick(lk_dev *d, int64_t now)
{
    struct gw *g = d->gw;
    struct gw_dev *o;
    int64_t next = 0;
    if (g == NULL || g->next_refresh_ms == 0 || now < g->next_refresh_ms)
        return;
    for (o = g->first; o != NULL; o = o->next) {
        if (o->se == NULL || o->token_len == 0)
            continue;
        if (now >= refresh_at(d, o)) {
            if (o->status == GW_ATTACHED && !o->reattach) {
                o->reattach = 1;
                g->want_control = 1;
            }
            continue; /* its next time is known once signed */
        }
        if (next == 0 || refresh_at(d, o) < next)
            next = refresh_at(d, o);
    }
    g->next_refresh_ms = next;
}

int64_t lk_dev__gw_next_ms(const lk_dev *d)
{
    if (d->gw == NULL || d->gw->next_refresh_ms == 0)
        return INT64_MAX;
    return d->gw->next_refresh_ms;
}

unsigned lk_dev__gw_pump_gen(lk_dev *d)
{
    if (d->gw == NULL)
        return 0;
    if (++d->gw->gen == 0)
        d->gw->gen = 1;
    return d->gw->gen;
}

int64_t lk_dev__gw_conn_wait(const lk_dev *d, int64_t now)
{
    return d->gw != NULL ? lk_dev__rate_wait(&d->gw->conn, now) : 0;
}

int lk_dev__gw_may_send(lk_dev *d, struct msg *m, int64_t now, unsigned gen, int64_t *when)
{
    struct gw_dev *o = m->owner;
    int64_t t;
    (void)d;
    if (o->skip_gen == gen)
        return 0;
    if (o->status != GW_ATTACHED) {
        o->skip_gen = o->unsent_gen = gen;
        return 0;
    }
    if (m->kind == MSG_DETACH)
        return o->unsent_gen != gen; /* after every message of its device */
    if (m->is_state && (o->state_inflight || now < o->state_ready_ms)) {
        o->unsent_gen = gen;
        if (!o->state_inflight && (*when == 0 || o->state_ready_ms < *when))
            *when = o->state_ready_ms;
        return 0;
    }
    if ((t = lk_dev__rate_wait(&o->rate, now)) != 0) {
        o->skip_gen = o->unsent_gen = gen;
        if (*when == 0 || t < *when)
            *when = t;
        return 0;
    }
    return 1;
}

void lk_dev__gw_sent(lk_dev *d, struct msg *m, int64_t now)
{
    struct gw_dev *o = m->owner;
    lk_dev__rate_record(&d->gw->conn, now);
    if (o == NULL)
        return;
    if (m->kind == MSG_DATA)
        lk_dev__rate_record(&o->rate, now);
    if (m->is_state)
        o->state_inflight = 1;
}

void lk_dev__gw_acked(lk_dev *d, struct msg *m)
{
    struct gw_dev *o = m->owner;
    (void)d;
    if (o->queued > 0)
        o->queued--;
    if (m->is_state) {
        o->state_inflight = 0;
        o->state_ready_ms = lk_dev_now_ms() + STATE_GAP_MS;
    }
}

void lk_dev__gw_detached(lk_dev *d, struct gw_dev *o)
{
    forget_detached(d, o, "detached");
}

int lk_dev__gw_puback(lk_dev *d, int mid)
{
    struct gw_dev *o;
    if (d->gw == NULL)
        return 0;
    for (o = d->gw->first; o != NULL; o = o->next) {
        if (o->attach_mid != mid)
            continue;
        o->attach_mid = 0;
        if (o->status == GW_ATTACHING) {
            /* The server has handled the attach: the subscriptions say whether
             * it took it (a device not attached is refused them). */
            char cfg[LK_DEVICE_TOPIC_MAX + 1], cmd[LK_DEVICE_TOPIC_MAX + 1];
            char *topics[2] = {cfg, cmd};
            int smid = 0;
            if (lk_device_topic(o->id, LK_TOPIC_CONFIG, NULL, cfg, sizeof cfg, NULL) == LK_OK &&
                lk_device_topic(o->id, LK_TOPIC_COMMANDS_ALL, NULL, cmd, sizeof cmd, NULL) == LK_OK &&
                mosquitto_subscribe_multiple(d->mosq, &smid, 2, topics, 1, 0, NULL) == MOSQ_ERR_SUCCESS) {
                o->sub_mid = smid != 0 ? smid : -1;
                o->status = GW_SUBSCRIBING;
            }
        }
        return 1;
    }
    return 0;
}

int lk_dev__gw_suback(lk_dev *d, int mid, int n, const int *granted)
{
    struct gw_dev *o;
    int i;
    if (d->gw == NULL)
        return 0;
    for (o = d->gw->first; o != NULL; o = o->next) {
        if (o->sub_mid != mid)
            continue;
        o->sub_mid = 0;
        if (o->status != GW_SUBSCRIBING)
            return 1;
        for (i = 0; i < n; i++) {
            if (granted[i] > 1) {
                o->status = GW_HELD;
                gw_emit(d, o, LK_DEV_EV_WARNING, LK_ERR_REFUSED, granted[i],
                        "the server did not attach %s (its subscriptions were refused, SUBACK %d; "
                        "the errors topic says why): its messages wait", o->id, granted[i]);
                return 1;
            }
        }
        o->status = GW_ATTACHED;
        gw_emit(d, o, LK_DEV_EV_ATTACHED, LK_OK, 0, "attached %s%s", o->id,
                o->se != NULL ? " with its own token" : "");
        return 1;
    }
    return 0;
}

static void on_errors(lk_dev *d, const struct mosquitto_message *msg)
{
    struct gw *g = d->gw;
    lk_dev_gateway_error e;
    struct gw_dev *o;
    lk_err err;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;

    err = lk_dev_gateway_error_parse(msg->payload, len, &e);
    if (err != LK_OK) {
        lk_dev__emit(d, LK_DEV_EV_WARNING, err, 0, 0, 0,
                     "ignored a message on the errors topic that is not an error (%zu bytes): %s",
                     len, lk_strerror(err));
        return;
    }
    o = e.device_id[0] != '\0' ? find(g, e.device_id) : NULL;
    if (o != NULL && (o->status == GW_SUBSCRIBING || o->status == GW_HELD) &&
        strcmp(e.error_type, "GATEWAY_DEVICE_NOT_ATTACHED") == 0 &&
        strcmp(e.message_type, "SUBSCRIBE") == 0)
        return; /* the refusal of the client's own probe (after an attach refused): not news */
    if (o != NULL && (strcmp(e.error_type, "GATEWAY_ATTACHMENT_ERROR") == 0 ||
                      strcmp(e.error_type, "GATEWAY_DEVICE_DETACHED") == 0)) {
        if (o->detaching) {
            forget_detached(d, o, "the server dropped");
            o = NULL;
        } else {
            /* Not attached: its messages wait until the caller attaches it again. */
            o->status = GW_HELD;
            o->reattach = 0;
        }
    }
    d->in_callback++;
    if (g->cfg.on_error != NULL)
        g->cfg.on_error(g->cfg.user, &e);
    d->in_callback--;
}

int lk_dev__gw_message(lk_dev *d, const struct mosquitto_message *msg)
{
    char id[LK_ID_MAX + 1];
    const char *sub = NULL;
    struct gw *g = d->gw;
    struct gw_dev *o;
    lk_topic kind;
    size_t len;
    unsigned max;

    if (g == NULL || msg->topic == NULL)
        return 0;
    kind = lk_device_topic_split(msg->topic, strlen(msg->topic), id, &sub);
    if (kind == LK_TOPIC_NONE)
        return 0;
    if (strcmp(id, d->device) == 0) {
        if (kind != LK_TOPIC_ERRORS)
            return 0; /* the gateway's own config and commands */
        on_errors(d, msg);
        return 1;
    }
    o = find(g, id);
    if (o == NULL || (kind != LK_TOPIC_CONFIG && kind != LK_TOPIC_COMMANDS)) {
        lk_dev__emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0,
                     "ignored a message on a topic of no device attached");
        return 1;
    }
    len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    max = kind == LK_TOPIC_CONFIG ? LK_CONFIG_MAX : LK_COMMAND_MAX;
    if (len > max) {
        gw_emit(d, o, LK_DEV_EV_WARNING, LK_ERR_TOO_LARGE, 0, "ignored a %s of %zu bytes for %s",
                kind == LK_TOPIC_CONFIG ? "config" : "command", len, o->id);
        return 1;
    }
    /* The callback may detach the device: it gets a copy of the id. */
    memcpy(id, o->id, sizeof id);
    d->in_callback++;
    if (kind == LK_TOPIC_CONFIG) {
        d->stats.configs++;
        if (g->cfg.on_config != NULL)
            g->cfg.on_config(g->cfg.user, id, msg->payload, len);
    } else {
        d->stats.commands++;
        if (g->cfg.on_command != NULL)
            g->cfg.on_command(g->cfg.user, id, sub != NULL ? sub : "", msg->payload, len);
    }
    d->in_callback--;
    return 1;
}
