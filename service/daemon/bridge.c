/*
 * bridge.c — latchkeyd's own connection to the broker, through which what
 * HTTP devices send enters it (docs/daemon.md, "The device bridge").
 *
 * latchkeyd is an MQTT 5 client "latchkeyd:NAME" with a secret it makes at
 * each start and whose hash it stores in the registry (the broker plugin
 * checks it there), so that no one else holds the identity and nothing has
 * to be configured or rotated. It publishes QoS 1 on the bridge topic of
 * the device (lk_bridge_topic); the plugin applies the device's limits and
 * routes it as it routes the device's own publishes. The PUBACK says what
 * happened: 0 (or 0x10, no subscriber) the broker has it; 0x87 the plugin
 * refused it (the device's rate, counted across MQTT and HTTP).
 *
 * libmosquitto is driven from latchkeyd's event loop, not from a thread of
 * its own: its socket is one more event (read always, write while it has
 * something to send), a publish is written at once from the request's own
 * turn of the loop, and a PUBACK answers its request from the same turn
 * that reads it — no hand-off between threads (measured: a third of the
 * bridge's CPU when libmosquitto had its own thread). The connection is
 * made without blocking (TCP, then the TLS handshake, both driven by the
 * socket's events) and made again with backoff (1 s doubling to 30 s)
 * whenever it is lost. A publish that no PUBACK answers within
 * publish_wait_ms is answered 503: the broker may still deliver it
 * (libmosquitto resends it after a reconnect), so a device that retries
 * may be seen twice, never lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/rand.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_util.h"
#include "daemon.h"

#define MIDS 65536u
#define TICK_MS 100
#define BACKOFF_MAX_S 30
#define KEEPALIVE_S 30
#define CONNECT_TIMEOUT_MS 10000

struct pub {
    lkd_pub_done done;
    void *arg;
    uint16_t mid;
    int64_t deadline_ms;
    struct pub *prev, *next;           /* oldest first: deadlines come in order */
};

struct lkd_bridge {
    struct lkd *d;
    struct mosquitto *mosq;
    char user[LK_ID_MAX + 16];
    char host[256];
    int port;
    struct pub *by_mid[MIDS];
    struct pub *head, *tail;
    unsigned pending;
    struct event *rd, *wr, *tick;
    evutil_socket_t fd;                /* the socket rd and wr watch, or -1 */
    int connected;                     /* CONNACK 0 seen, no disconnect since */
    int started;                       /* the first connect was asked for */
    int refused;                       /* the last CONNACK refused us (logged once) */
    int stopping;                      /* latchkeyd stops: the disconnect is its own */
    int down;                          /* lost: unwatched until the next connect */
    int dropped;                       /* a connection that was up has just ended */
    int64_t connecting_ms;             /* when the current connect began */
    unsigned backoff_s;
    int64_t retry_ms;                  /* when to connect again (socket closed) */
    int64_t logged_ms;                 /* libmosquitto's last error line let through */
};

/* ---- libmosquitto's callbacks (on the loop's thread, from loop_read) ---- */

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)m;
    (void)flags;
    (void)props;
    struct lkd_bridge *b = obj;
    b->connected = rc == 0;
    if (rc == 0) {
        b->backoff_s = 1;
        b->refused = 0;
        lkd_log("bridge: connected to the broker as %s", b->user);
    } else if (!b->refused) {
        b->refused = 1;
        lkd_log("bridge: the broker refused %s: %s (is latchkey_plugin loaded, on the same registry?); retrying",
                b->user, mosquitto_reason_string(rc));
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct lkd_bridge *b = obj;
    if (b->connected && !b->stopping)
        lkd_log("bridge: disconnected from the broker (%s); reconnecting",
                rc >= 0x80 ? mosquitto_reason_string(rc) : mosquitto_strerror(rc));
    /* libmosquitto may call this twice for one end (the broker's
     * DISCONNECT, then the closed socket): remember the first. */
    if (b->connected)
        b->dropped = 1;
    b->connected = 0;
}

/* Why a connection cannot be made (TLS, refused, unreachable) is only in
 * libmosquitto's log: its errors, one line a minute at most while it
 * retries. */
static void on_log(struct mosquitto *m, void *obj, int level, const char *text)
{
    (void)m;
    struct lkd_bridge *b = obj;
    int64_t now = lkd_now_ms();
    if (!(level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING)) || b->stopping ||
        (b->logged_ms != 0 && now - b->logged_ms < 60000))
        return;
    b->logged_ms = now;
    lkd_log("bridge: %s (retrying; such lines at most once a minute)", text);
}

static void unlink_pub(struct lkd_bridge *b, struct pub *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        b->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        b->tail = p->prev;
    if (b->by_mid[p->mid] == p)
        b->by_mid[p->mid] = NULL;
    b->pending--;
    b->d->waiting--;
}

static void finish(struct lkd_bridge *b, struct pub *p, enum lkd_pub_outcome o, int reason)
{
    unlink_pub(b, p);
    lkd_pub_done done = p->done;
    void *arg = p->arg;
    free(p);
    done(arg, o, reason);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct lkd_bridge *b = obj;
    struct pub *p = b->by_mid[(uint16_t)mid];
    if (p == NULL)
        return; /* answered 503 already */
    finish(b, p, reason < 0x80 ? LKD_PUB_OK : reason == MQTT_RC_NOT_AUTHORIZED ? LKD_PUB_REFUSED : LKD_PUB_FAILED,
           reason);
}

/* ---- the socket as events ---- */

static void on_socket(evutil_socket_t fd, short what, void *arg);

static void unwatch(struct lkd_bridge *b)
{
    if (b->rd) {
        event_free(b->rd);
        b->rd = NULL;
    }
    if (b->wr) {
        event_free(b->wr);
        b->wr = NULL;
    }
    b->fd = -1;
}

/* The connection is gone or stuck: stop watching its socket (a socket in
 * error would wake the loop without end) and connect again after the
 * backoff; libmosquitto closes the old socket then. */
static void lost(struct lkd_bridge *b)
{
    if (b->stopping || b->down)
        return;
    /* A connection that was up (the broker's max_connection, a restart)
     * is made again at once; failed attempts back off. */
    int was_up = b->connected || b->dropped;
    b->connected = 0;
    b->dropped = 0;
    b->down = 1;
    unwatch(b);
    b->retry_ms = lkd_now_ms() + (was_up ? 0 : (int64_t)b->backoff_s * 1000);
    if (!was_up)
        b->backoff_s = b->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : b->backoff_s * 2;
}

/* Watch libmosquitto's current socket: always for reading, for writing
 * while it has something queued (or a handshake that wants to write). */
static void watch(struct lkd_bridge *b)
{
    if (b->down || b->stopping)
        return;
    evutil_socket_t fd = mosquitto_socket(b->mosq);
    if (fd < 0) {
        lost(b);
        return;
    }
    if (fd != b->fd) {
        unwatch(b);
        b->rd = event_new(b->d->base, fd, EV_READ | EV_PERSIST, on_socket, b);
        b->wr = event_new(b->d->base, fd, EV_WRITE, on_socket, b);
        if (b->rd == NULL || b->wr == NULL || event_add(b->rd, NULL) != 0) {
            lost(b); /* out of memory: the tick tries again */
            return;
        }
        b->fd = fd;
    }
    if (mosquitto_want_write(b->mosq) && !event_pending(b->wr, EV_WRITE, NULL))
        event_add(b->wr, NULL);
}

/* Reading also drives the TLS handshake while it is under way (which is
 * why a write event calls it too: a handshake may wait to write);
 * libmosquitto answers MOSQ_ERR_SUCCESS when there was nothing to do. */
static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lkd_bridge *b = arg;
    int rc = mosquitto_loop_read(b->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_loop_write(b->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        lost(b);
    else
        watch(b);
}

static void connect_now(struct lkd_bridge *b)
{
    b->down = 0;
    b->connecting_ms = lkd_now_ms();
    int rc = b->started ? mosquitto_reconnect_async(b->mosq)
                        : mosquitto_connect_async(b->mosq, b->host, b->port, KEEPALIVE_S);
    b->started = 1;
    if (rc != MOSQ_ERR_SUCCESS) {
        on_log(b->mosq, b, MOSQ_LOG_ERR, mosquitto_strerror(rc));
        lost(b);
        return;
    }
    watch(b);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lkd_bridge *b = arg;
    int64_t now = lkd_now_ms();
    while (b->head != NULL && b->head->deadline_ms <= now)
        finish(b, b->head, LKD_PUB_TIMEOUT, 0);
    if (b->stopping)
        return;
    if (b->down) {
        if (now >= b->retry_ms)
            connect_now(b);
        return;
    }
    if (!b->connected && now - b->connecting_ms > CONNECT_TIMEOUT_MS) {
        on_log(b->mosq, b, MOSQ_LOG_ERR, "no CONNACK within 10 s");
        lost(b);
        return;
    }
    /* Keep-alive: PINGREQ when quiet; a broker that stays silent is lost. */
    if (b->connected && mosquitto_loop_misc(b->mosq) != MOSQ_ERR_SUCCESS) {
        lost(b);
        return;
    }
    watch(b);
}

/* ---- the API ---- */

int lkd_bridge_connected(const struct lkd *d)
{
    return d->bridge != NULL && d->bridge->connected;
}

int lkd_bridge_publish(struct lkd *d, const char *topic, const void *payload, size_t len, const char *gateway,
                       lkd_pub_done done, void *arg)
{
    struct lkd_bridge *b = d->bridge;
    if (b == NULL || !b->connected || b->pending >= d->cfg.bridge_max_pending)
        return -1;
    struct pub *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    int mid = 0;
    /* Written at once when the socket takes it; what does not fit waits
     * for the write event (watch). */
    mosquitto_property *props = NULL;
    if (gateway != NULL &&
        mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "gatewayId", gateway) != MOSQ_ERR_SUCCESS) {
        mosquitto_property_free_all(&props);
        free(p);
        return -1;
    }
    int rc = mosquitto_publish_v5(b->mosq, &mid, topic, (int)len, payload, 1, false, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        free(p);
        watch(b); /* a socket that is gone is lost */
        return -1;
    }
    p->done = done;
    p->arg = arg;
    p->mid = (uint16_t)mid;
    p->deadline_ms = lkd_now_ms() + d->cfg.publish_wait_ms;
    /* Message ids wrap at 65535: one still waiting under this id has
     * waited that many publishes; its outcome is no longer knowable. */
    if (b->by_mid[p->mid] != NULL)
        finish(b, b->by_mid[p->mid], LKD_PUB_TIMEOUT, 0);
    b->by_mid[p->mid] = p;
    p->prev = b->tail;
    if (b->tail)
        b->tail->next = p;
    else
        b->head = p;
    b->tail = p;
    b->pending++;
    d->waiting++;
    watch(b);
    return 0;
}

/* A fresh secret, its hash stored under the bridge's name: the broker
 * admits whoever presents the secret, and only this process has it. */
static int make_secret(struct lkd *d, char secret[64])
{
    uint8_t raw[32], hash[32];
    size_t n = 0;
    char why[256] = "";
    if (RAND_bytes(raw, sizeof raw) != 1 || lk_b64url_encode(raw, sizeof raw, secret, 64, &n) != LK_OK) {
        lk_wipe(raw, sizeof raw);
        lkd_log("bridge: no random bytes for its secret");
        return -1;
    }
    lk_wipe(raw, sizeof raw);
    secret[n] = '\0';
    lk_backend_secret_hash(secret, n, hash);
    lk_err err = lk_registry_bridge_set(d->reg, d->cfg.bridge_name, hash, lkd_now(), why, sizeof why);
    lk_wipe(hash, sizeof hash);
    if (err != LK_OK) {
        lkd_log("bridge: cannot store its identity in the registry: %s (%s)", why[0] ? why : lk_strerror(err),
                lk_errname(err));
        return -1;
    }
    return 0;
}

int lkd_bridge_start(struct lkd *d)
{
    struct lkd_config *cfg = &d->cfg;
    struct lkd_bridge *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -1;
    b->d = d;
    b->fd = -1;
    b->backoff_s = 1;
    d->bridge = b;
    if (lkd_hostport(cfg->broker, b->host, sizeof b->host, &b->port) != 0 || b->port == 0) {
        lkd_log("broker \"%s\" is not HOST:PORT", cfg->broker);
        return -1;
    }
    if (cfg->broker_ca == NULL && !cfg->broker_plain) {
        lkd_log("the bridge needs broker_ca (the CA of the broker's certificate), or broker_plain on (loopback "
                "only)");
        return -1;
    }
    if (cfg->broker_ca == NULL && !lkd_is_loopback(b->host)) {
        lkd_log("broker_plain is allowed only for a broker on a loopback address, not %s: set broker_ca", b->host);
        return -1;
    }
    b->tick = event_new(d->base, -1, EV_PERSIST, on_tick, b);
    struct timeval tv = {0, TICK_MS * 1000};
    if (b->tick == NULL || event_add(b->tick, &tv) != 0)
        return -1;
    snprintf(b->user, sizeof b->user, "latchkeyd:%s", cfg->bridge_name);
    char secret[64];
    if (make_secret(d, secret) != 0)
        return -1;
    mosquitto_lib_init();
    b->mosq = mosquitto_new(b->user, true, b);
    int rc = b->mosq ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_int_option(b->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_int_option(b->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_username_pw_set(b->mosq, b->user, secret);
    lk_wipe(secret, sizeof secret);
    if (rc == MOSQ_ERR_SUCCESS && cfg->broker_ca != NULL) {
        rc = mosquitto_tls_set(b->mosq, cfg->broker_ca, NULL, NULL, NULL, NULL);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_tls_opts_set(b->mosq, 1 /* SSL_VERIFY_PEER */, "tlsv1.2", NULL);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        lkd_log("bridge: %s", mosquitto_strerror(rc));
        return -1;
    }
    mosquitto_connect_v5_callback_set(b->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(b->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(b->mosq, on_publish);
    mosquitto_log_callback_set(b->mosq, on_log);
    /* A first connect that fails is retried like any other: latchkeyd
     * starts before the broker as well as after it. */
    connect_now(b);
    lkd_log("bridge: to the broker at %s (%s) as %s", cfg->broker, cfg->broker_ca ? "TLS" : "plain, loopback",
            b->user);
    return 0;
}

void lkd_bridge_stop(struct lkd *d)
{
    struct lkd_bridge *b = d->bridge;
    if (b == NULL)
        return;
    b->stopping = 1;
    while (b->head != NULL)
        finish(b, b->head, LKD_PUB_TIMEOUT, 0);
    unwatch(b);
    if (b->tick)
        event_free(b->tick);
    if (b->mosq != NULL) {
        if (b->connected)
            mosquitto_disconnect_v5(b->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        mosquitto_destroy(b->mosq);
        mosquitto_lib_cleanup();
    }
    free(b);
    d->bridge = NULL;
}
