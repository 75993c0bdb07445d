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
 * libmosquitto runs its own thread (mosquitto_loop_start): it reconnects
 * with backoff and does the TLS handshake without ever holding the event
 * loop. Its callbacks only queue outcomes and wake the loop through a pipe;
 * every request is answered on the loop's thread. A publish that no PUBACK
 * answers within publish_wait_ms is answered 503: the broker may still
 * deliver it (libmosquitto resends it after a reconnect), so a device that
 * retries may be seen twice, never lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/rand.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_util.h"
#include "daemon.h"

#define MIDS 65536u

struct pub {
    lkd_pub_done done;
    void *arg;
    uint16_t mid;
    int64_t deadline_ms;
    struct pub *prev, *next;           /* oldest first: deadlines come in order */
};

struct outcome {
    int mid;
    int reason;
};

struct lkd_bridge {
    struct lkd *d;
    struct mosquitto *mosq;
    char user[LK_ID_MAX + 16];
    struct pub *by_mid[MIDS];
    struct pub *head, *tail;
    unsigned pending;
    struct event *wake, *tick;
    int pipe_r, pipe_w;
    /* shared with libmosquitto's thread */
    pthread_mutex_t lock;
    struct outcome *q;
    size_t qlen, qcap;
    int connected;                     /* CONNACK 0 seen, no disconnect since */
    int refused;                       /* the last CONNACK refused us (its reason logged) */
    int stopping;                      /* latchkeyd stops: the disconnect is its own */
};

/* ---- libmosquitto's thread: queue and wake ---- */

static void wake_loop(struct lkd_bridge *b)
{
    char c = 1;
    ssize_t n = write(b->pipe_w, &c, 1); /* full pipe: the loop is already woken */
    (void)n;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)m;
    (void)flags;
    (void)props;
    struct lkd_bridge *b = obj;
    pthread_mutex_lock(&b->lock);
    b->connected = rc == 0;
    int was_refused = b->refused;
    b->refused = rc != 0;
    pthread_mutex_unlock(&b->lock);
    if (rc == 0)
        lkd_log("bridge: connected to the broker as %s", b->user);
    else if (!was_refused)
        lkd_log("bridge: the broker refused %s: %s (is latchkey_plugin loaded, on the same registry?); "
                "retrying", b->user, mosquitto_reason_string(rc));
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct lkd_bridge *b = obj;
    pthread_mutex_lock(&b->lock);
    int was = b->connected && !b->stopping;
    b->connected = 0;
    pthread_mutex_unlock(&b->lock);
    if (was)
        lkd_log("bridge: disconnected from the broker (%s); reconnecting", mosquitto_strerror(rc));
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *props)
{
    (void)m;
    (void)props;
    struct lkd_bridge *b = obj;
    pthread_mutex_lock(&b->lock);
    if (b->qlen == b->qcap) {
        size_t cap = b->qcap ? b->qcap * 2 : 256;
        struct outcome *q = realloc(b->q, cap * sizeof *q);
        if (q == NULL) {
            /* The request times out to 503 instead: nothing is lost. */
            pthread_mutex_unlock(&b->lock);
            return;
        }
        b->q = q;
        b->qcap = cap;
    }
    b->q[b->qlen++] = (struct outcome){mid, reason};
    pthread_mutex_unlock(&b->lock);
    wake_loop(b);
}

/* ---- the loop's thread ---- */

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

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct lkd_bridge *b = arg;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    for (;;) {
        struct outcome batch[64];
        size_t n;
        pthread_mutex_lock(&b->lock);
        n = b->qlen < 64 ? b->qlen : 64;
        memcpy(batch, b->q, n * sizeof *batch);
        memmove(b->q, b->q + n, (b->qlen - n) * sizeof *b->q);
        b->qlen -= n;
        pthread_mutex_unlock(&b->lock);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            struct pub *p = b->by_mid[(uint16_t)batch[i].mid];
            if (p == NULL)
                continue; /* answered 503 already */
            int r = batch[i].reason;
            finish(b, p, r < 0x80 ? LKD_PUB_OK : r == MQTT_RC_NOT_AUTHORIZED ? LKD_PUB_REFUSED : LKD_PUB_FAILED, r);
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lkd_bridge *b = arg;
    int64_t now = lkd_now_ms();
    while (b->head != NULL && b->head->deadline_ms <= now)
        finish(b, b->head, LKD_PUB_TIMEOUT, 0);
}

int lkd_bridge_connected(const struct lkd *d)
{
    struct lkd_bridge *b = d->bridge;
    if (b == NULL)
        return 0;
    pthread_mutex_lock(&b->lock);
    int c = b->connected;
    pthread_mutex_unlock(&b->lock);
    return c;
}

int lkd_bridge_publish(struct lkd *d, const char *topic, const void *payload, size_t len, lkd_pub_done done,
                       void *arg)
{
    struct lkd_bridge *b = d->bridge;
    if (b == NULL || !lkd_bridge_connected(d) || b->pending >= d->cfg.bridge_max_pending)
        return -1;
    struct pub *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    int mid = 0;
    int rc = mosquitto_publish_v5(b->mosq, &mid, topic, (int)len, payload, 1, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        free(p);
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
    char host[256];
    int port;
    if (lkd_hostport(cfg->broker, host, sizeof host, &port) != 0 || port == 0) {
        lkd_log("broker \"%s\" is not HOST:PORT", cfg->broker);
        return -1;
    }
    if (cfg->broker_ca == NULL && !cfg->broker_plain) {
        lkd_log("the bridge needs broker_ca (the CA of the broker's certificate), or broker_plain on (loopback "
                "only)");
        return -1;
    }
    if (cfg->broker_ca == NULL && !lkd_is_loopback(host)) {
        lkd_log("broker_plain is allowed only for a broker on a loopback address, not %s: set broker_ca", host);
        return -1;
    }
    struct lkd_bridge *b = calloc(1, sizeof *b);
    if (b == NULL)
        return -1;
    b->d = d;
    b->pipe_r = b->pipe_w = -1;
    d->bridge = b;
    pthread_mutex_init(&b->lock, NULL);
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        lkd_log("bridge: pipe: %s", strerror(errno));
        return -1;
    }
    b->pipe_r = fds[0];
    b->pipe_w = fds[1];
    b->wake = event_new(d->base, b->pipe_r, EV_READ | EV_PERSIST, on_wake, b);
    b->tick = event_new(d->base, -1, EV_PERSIST, on_tick, b);
    struct timeval tv = {0, 50 * 1000};
    if (b->wake == NULL || b->tick == NULL || event_add(b->wake, NULL) != 0 || event_add(b->tick, &tv) != 0)
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
    mosquitto_reconnect_delay_set(b->mosq, 1, 30, true);
    /* The first connect's failure is retried by the loop thread like any
     * other: latchkeyd starts before the broker as well as after it. */
    rc = mosquitto_connect_async(b->mosq, host, port, 60);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO)
        lkd_log("bridge: connecting to %s: %s; retrying", cfg->broker, mosquitto_strerror(rc));
    rc = mosquitto_loop_start(b->mosq);
    if (rc != MOSQ_ERR_SUCCESS) {
        lkd_log("bridge: %s", mosquitto_strerror(rc));
        return -1;
    }
    lkd_log("bridge: to the broker at %s (%s) as %s", cfg->broker, cfg->broker_ca ? "TLS" : "plain, loopback",
            b->user);
    return 0;
}

void lkd_bridge_stop(struct lkd *d)
{
    struct lkd_bridge *b = d->bridge;
    if (b == NULL)
        return;
    while (b->head != NULL)
        finish(b, b->head, LKD_PUB_TIMEOUT, 0);
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_mutex_unlock(&b->lock);
    if (b->mosq != NULL) {
        mosquitto_disconnect_v5(b->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        mosquitto_loop_stop(b->mosq, false);
        mosquitto_destroy(b->mosq);
        mosquitto_lib_cleanup();
    }
    if (b->wake)
        event_free(b->wake);
    if (b->tick)
        event_free(b->tick);
    if (b->pipe_r >= 0)
        close(b->pipe_r);
    if (b->pipe_w >= 0)
        close(b->pipe_w);
    pthread_mutex_destroy(&b->lock);
    free(b->q);
    free(b);
    d->bridge = NULL;
}
