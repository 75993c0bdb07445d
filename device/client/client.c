/*
 * The device client (lk_device.h): one IoT Core connection kept alive over
 * libmosquitto, with tokens from a secure element.
 *
 * Shape: a small state machine driven by lk_dev_step. Each connection
 * attempt gets a fresh libmosquitto object, destroyed when the connection
 * ends; libmosquitto's callbacks only record what happened (flags, counts)
 * or call the user, and the step acts on them afterwards, so nothing is
 * freed under libmosquitto's feet. The outgoing queue is ours: an entry
 * stays until its PUBACK, whatever happens to connections.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_util.h"

#define DEFAULT_LIFETIME_S 3600u
#define MIN_LIFETIME_S 10u
#define DEFAULT_KEEPALIVE_S 60u
#define DEFAULT_BACKOFF_MAX_S 64u
#define DEFAULT_CONNECT_TIMEOUT_S 30u
#define DEFAULT_DRAIN_MS 5000u
#define DEFAULT_MAX_REFUSALS 3u
#define DEFAULT_QUEUE_MAX 1000u
#define DEFAULT_QUEUE_BYTES (16u * 1024u * 1024u)
/* A connection that lasted this long resets the backoff exponent. */
#define STABLE_MS 60000
/* How often libmosquitto's housekeeping (keep-alive) runs. */
#define MISC_MS 1000
#define PACKETS_PER_STEP 64
#define DETAIL_MAX 256
/* IoT Core allows one state report a second per device; a little more, so
 * a slow clock on either side never gets one dropped. */
#define STATE_GAP_MS 1100
#define DEFAULT_MAX_RATE 80u
/* The claims JSON is at most {"iat":-9223372036854775808,"exp":...,"aud":"<30>"}. */
#define TOKEN_SIZE LK_JWT_TOKEN_SIZE(128u, LK_SIG_MAX_BYTES)

struct lk_dev_tls {
    SSL_CTX *ctx;
};

struct msg {
    struct msg *next;
    uint64_t id;
    int is_state;
    int mid;        /* libmosquitto's id on the current connection, 0 = not sent */
    size_t len;
    uint8_t *data;  /* points into the same allocation, after the topic */
    char topic[];   /* NUL-terminated */
};

struct lk_dev {
    /* configuration (strings owned) */
    char *host;
    unsigned port;
    const lk_se *se;
    const char *key;
    lk_alg alg;
    char *project;
    unsigned lifetime_s, margin_s, keepalive_s, backoff_max_s, connect_timeout_s;
    unsigned drain_ms, max_refusals, max_attempts;
    size_t queue_max, queue_bytes_max;
    void *user;
    void (*on_event)(void *, const lk_dev_event *);
    void (*on_config)(void *, const uint8_t *, size_t);
    void (*on_command)(void *, const char *, const uint8_t *, size_t);

    char *client_id;
    char *device;
    char *topic_events, *topic_state, *topic_config, *topic_commands;

    lk_dev_tls *tls;
    int own_tls;

    /* the connection */
    struct mosquitto *mosq;
    lk_dev_state state;
    int ended;          /* set by callbacks: the connection is over */
    int connack;        /* -1 none yet, else the CONNACK code */
    int lost_rc;        /* libmosquitto's reason from on_disconnect */
    int lost_errno;     /* errno behind lost_rc == MOSQ_ERR_ERRNO */
    long verify_err;    /* the first certificate error of this attempt */
    int in_callback;
    int64_t deadline_ms;  /* CONNECTING: connect timeout; REFRESHING/STOPPING: drain */
    int64_t retry_ms;     /* BACKOFF: next attempt */
    int64_t misc_ms;
    int64_t connected_ms;
    int64_t refresh_ms;
    unsigned failures;    /* consecutive failed attempts */
    unsigned refusals;    /* consecutive refusals of fresh tokens */

    /* the token */
    char token[TOKEN_SIZE];
    size_t token_len;
    int64_t token_exp;      /* Unix time */
    int64_t token_mono;     /* lk_dev_now_ms when signed */
    int token_fresh;        /* signed for the attempt under way */

    /* the queue */
    struct msg *head, *tail;
    size_t queued, queued_bytes, inflight;
    uint64_t next_id;

    /* pacing: the server drops (and still acknowledges) what goes over its
     * rates, so the client keeps under them */
    unsigned max_rate;        /* messages in any 1000 ms */
    int64_t *sent_ms;         /* ring of the last max_rate send times */
    unsigned sent_i, sent_n;
    int64_t pump_wait_ms;     /* when pacing lets the next message go, 0 if none waits */
    int state_inflight;       /* a state message awaits its PUBACK */
    int64_t state_ready_ms;   /* the next state may go at this time */

    lk_err fail_err;
    char fail_detail[DETAIL_MAX];
    char detail[DETAIL_MAX];
    lk_dev_stats stats;
};

int64_t lk_dev_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lk_dev_backoff_ms(unsigned failures, unsigned max_s, unsigned jitter_ms)
{
    int64_t s = max_s;
    if (failures < 31 && ((int64_t)1 << failures) < s)
        s = (int64_t)1 << failures;
    return s * 1000 + (jitter_ms % 1000u);
}

static unsigned jitter(void)
{
    uint16_t r = 0;
    /* Jitter only spreads reconnects; a failing DRBG must not stop the
     * client, so a zero draw is acceptable. */
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = 0;
    return r % 1000u;
}

/* ---------------------------------------------------------------- events */

static void emit(lk_dev *d, lk_dev_event_type type, lk_err err, int code, int64_t delay,
                 uint64_t id, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void emit(lk_dev *d, lk_dev_event_type type, lk_err err, int code, int64_t delay,
                 uint64_t id, const char *fmt, ...)
{
    lk_dev_event ev;
    va_list ap;
    if (d->on_event == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(d->detail, sizeof d->detail, fmt, ap);
    va_end(ap);
    ev.type = type;
    ev.err = err;
    ev.code = code;
    ev.attempt = d->failures;
    ev.delay_ms = delay;
    ev.id = id;
    ev.detail = d->detail;
    d->in_callback++;
    d->on_event(d->user, &ev);
    d->in_callback--;
}

static void fail(lk_dev *d, lk_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void fail(lk_dev *d, lk_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->fail_detail, sizeof d->fail_detail, fmt, ap);
    va_end(ap);
    d->fail_err = err;
    d->state = LK_DEV_FAILED;
    emit(d, LK_DEV_EV_FAILED, err, 0, 0, 0, "%s", d->fail_detail);
}

/* ------------------------------------------------------------------- TLS */

/* The client being stepped on this thread: the verify callback runs inside
 * libmosquitto's read and write calls for exactly that client, and records
 * the certificate verdict there, because libmosquitto frees the SSL object
 * (and its verify result) as soon as the handshake fails. */
static __thread lk_dev *stepping;

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok && stepping != NULL && stepping->verify_err == X509_V_OK) {
        stepping->verify_err = X509_STORE_CTX_get_error(x);
        if (stepping->verify_err == X509_V_OK)
            stepping->verify_err = X509_V_ERR_UNSPECIFIED;
    }
    return ok;
}

static void tls_reason(char *detail, size_t size, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[160] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    if (detail != NULL && size > 0)
        snprintf(detail, size, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

/* A file name as messages show it: through lk_key_ref_redact, as anything
 * the user typed may be a key reference pasted into the wrong option. */
static const char *shown_path(const char *path, char *buf, size_t size)
{
    (void)lk_key_ref_redact(path, buf, size);
    return buf;
}

lk_err lk_dev_tls_new(const char *ca_file, const char *host, lk_dev_tls **out, char *detail,
                      size_t detail_size)
{
    lk_dev_tls *t;
    X509_VERIFY_PARAM *param;
    unsigned char ip[16];
    char shown[300];
    FILE *f;

    if (detail != NULL && detail_size > 0)
        detail[0] = '\0';
    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    if (ca_file == NULL || ca_file[0] == '\0' || host == NULL || host[0] == '\0') {
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "a CA file and a server host name are required");
        return LK_ERR_ARG;
    }
    f = fopen(ca_file, "r");
    if (f == NULL) {
        int e = errno;
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "cannot read the CA file %s: %s",
                     shown_path(ca_file, shown, sizeof shown), strerror(e));
        /* Missing or forbidden: a configuration error that no retry
         * fixes; anything else may be the system's moment. */
        if (e == ENOENT || e == ENOTDIR)
            return LK_ERR_FILE_MISSING;
        if (e == EACCES || e == EPERM || e == ELOOP || e == EISDIR || e == ENXIO || e == ENAMETOOLONG)
            return LK_ERR_FILE_UNUSABLE;
        return LK_ERR_IO;
    }
    fclose(f);
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return LK_ERR_NOMEM;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL) {
        tls_reason(detail, detail_size, "SSL_CTX_new");
        free(t);
        return LK_ERR_CRYPTO;
    }
    /* IoT Core's floor; 1.3 is taken when the server offers it. */
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* Thousands of idle connections in the simulator: no idle buffers. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_file(t->ctx, ca_file) != 1) {
        char what[sizeof shown + 64];
        snprintf(what, sizeof what, "no usable certificate in the CA file %s",
                 shown_path(ca_file, shown, sizeof shown));
        tls_reason(detail, detail_size, what);
        lk_dev_tls_free(t);
        return LK_ERR_FILE_UNUSABLE;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_cb);
    param = SSL_CTX_get0_param(t->ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
            tls_reason(detail, detail_size, "cannot check the server's IP address");
            lk_dev_tls_free(t);
            return LK_ERR_CRYPTO;
        }
    } else if (X509_VERIFY_PARAM_set1_host(param, host, 0) != 1) {
        tls_reason(detail, detail_size, "cannot check the server's host name");
        lk_dev_tls_free(t);
        return LK_ERR_CRYPTO;
    }
    *out = t;
    return LK_OK;
}

void lk_dev_tls_free(lk_dev_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls);
}

/* ---------------------------------------------------------------- config */

static char *dupstr(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* The device's topic of this kind, allocated; NULL when out of memory. */
static char *topic_dup(const char *device, lk_topic kind)
{
    char buf[LK_DEVICE_TOPIC_MAX + 1];
    return lk_device_topic(device, kind, NULL, buf, sizeof buf, NULL) == LK_OK ? strdup(buf) : NULL;
}

/* A DNS name, an IPv4 address or an IPv6 address (with an optional
 * %zone): nothing else can name a server, and a string with other
 * characters (a key URI pasted into --host) is never echoed back. */
static int host_chars_ok(const char *h)
{
    for (; *h != '\0'; h++) {
        char ch = *h;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == ':' || ch == '_' || ch == '%'))
            return 0;
    }
    return 1;
}

static const char *check_config(const lk_dev_config *c, char *why, size_t size)
{
    char buf[160];
    const char *w;
#define BAD(...) (snprintf(why, size, __VA_ARGS__), why)
    if (c->host == NULL || c->host[0] == '\0' || strlen(c->host) > 253)
        return BAD("the server host is missing or longer than 253 characters");
    if (!host_chars_ok(c->host))
        return BAD("the server host is not a host name or an IP address (letters, digits, '-', '.', "
                   "and ':' for IPv6)");
    if (c->port < 1 || c->port > 65535)
        return BAD("the port must be 1 to 65535, not %u", c->port);
    if (c->tls == NULL && (c->ca_file == NULL || c->ca_file[0] == '\0'))
        return BAD("a CA file is required: the server is always authenticated");
    if (c->project == NULL || !lk_project_valid(c->project, strlen(c->project)))
        return BAD("the project id is missing or invalid");
    if (c->location == NULL || !lk_location_valid(c->location, strlen(c->location)))
        return BAD("the location (region) is missing or invalid");
    if (c->registry == NULL)
        return BAD("the registry id is missing");
    if ((w = lk_id_why("registry id", c->registry, strlen(c->registry), buf, sizeof buf)) != NULL)
        return BAD("%s", w);
    if (c->device == NULL)
        return BAD("the device id is missing");
    if ((w = lk_id_why("device id", c->device, strlen(c->device), buf, sizeof buf)) != NULL)
        return BAD("%s", w);
    if (c->se == NULL || c->se->ops == NULL)
        return BAD("no secure element");
    if (c->key == NULL || c->key[0] == '\0')
        return BAD("no key reference");
    if (c->alg != LK_ALG_ES256 && c->alg != LK_ALG_RS256)
        return BAD("the algorithm must be ES256 or RS256");
    if (c->token_lifetime_s != 0 &&
        (c->token_lifetime_s < MIN_LIFETIME_S || c->token_lifetime_s > LK_JWT_MAX_LIFETIME))
        return BAD("the token lifetime must be %u to %u seconds, not %u", MIN_LIFETIME_S,
                   (unsigned)LK_JWT_MAX_LIFETIME, c->token_lifetime_s);
    if (c->keepalive_s != 0 && (c->keepalive_s < 10 || c->keepalive_s > 1200))
        return BAD("the keep-alive must be 10 to 1200 seconds (IoT Core closes idle connections "
                   "after 20 minutes), not %u", c->keepalive_s);
    if (c->backoff_max_s > 3600)
        return BAD("the backoff cap must be 1 to 3600 seconds, not %u", c->backoff_max_s);
    if (c->connect_timeout_s > 600)
        return BAD("the connect timeout must be 1 to 600 seconds, not %u", c->connect_timeout_s);
    if (c->max_messages_per_s > 10000)
        return BAD("the message rate must be at most 10000 per second, not %u", c->max_messages_per_s);
    if (c->drain_timeout_ms > 600000)
        return BAD("the drain timeout must be at most 600000 ms, not %u", c->drain_timeout_ms);
    return NULL;
#undef BAD
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

lk_err lk_dev_new(const lk_dev_config *c, lk_dev **out, char *detail, size_t detail_size)
{
    char why[DETAIL_MAX];
    const char *bad;
    lk_dev *d;
    unsigned margin;

    if (detail != NULL && detail_size > 0)
        detail[0] = '\0';
    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    if (c == NULL)
        return LK_ERR_ARG;
    bad = check_config(c, why, sizeof why);
    if (bad == NULL) {
        unsigned life = c->token_lifetime_s ? c->token_lifetime_s : DEFAULT_LIFETIME_S;
        margin = c->refresh_margin_s;
        if (margin == 0) {
            margin = life / 10;
            margin = margin < 5 ? 5 : margin > 600 ? 600 : margin;
        }
        if (margin >= life)
            bad = (snprintf(why, sizeof why, "the refresh margin (%u s) must be shorter than the "
                            "token lifetime (%u s)", margin, life), why);
    }
    if (bad != NULL) {
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "%s", bad);
        return LK_ERR_ARG;
    }

    pthread_once(&lib_once, lib_init);
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return LK_ERR_NOMEM;
    d->port = c->port;
    d->se = c->se;
    d->key = c->key;
    d->alg = c->alg;
    d->lifetime_s = c->token_lifetime_s ? c->token_lifetime_s : DEFAULT_LIFETIME_S;
    d->margin_s = margin;
    d->keepalive_s = c->keepalive_s ? c->keepalive_s : DEFAULT_KEEPALIVE_S;
    d->backoff_max_s = c->backoff_max_s ? c->backoff_max_s : DEFAULT_BACKOFF_MAX_S;
    d->connect_timeout_s = c->connect_timeout_s ? c->connect_timeout_s : DEFAULT_CONNECT_TIMEOUT_S;
    d->drain_ms = c->drain_timeout_ms ? c->drain_timeout_ms : DEFAULT_DRAIN_MS;
    d->max_refusals = c->max_refusals ? c->max_refusals : DEFAULT_MAX_REFUSALS;
    d->max_attempts = c->max_attempts;
    d->queue_max = c->queue_max ? c->queue_max : DEFAULT_QUEUE_MAX;
    d->max_rate = c->max_messages_per_s ? c->max_messages_per_s : DEFAULT_MAX_RATE;
    d->queue_bytes_max = c->queue_bytes_max ? c->queue_bytes_max : DEFAULT_QUEUE_BYTES;
    d->user = c->user;
    d->on_event = c->on_event;
    d->on_config = c->on_config;
    d->on_command = c->on_command;
    d->connack = -1;
    d->next_id = 1;
    d->state = LK_DEV_IDLE;
    d->host = dupstr(c->host);
    d->project = dupstr(c->project);
    {
        char path[LK_DEVICE_PATH_MAX + 1];
        if (lk_device_path(c->project, c->location, c->registry, c->device, path, sizeof path,
                           NULL) == LK_OK)
            d->client_id = strdup(path);
    }
    d->device = dupstr(c->device);
    d->topic_events = topic_dup(c->device, LK_TOPIC_EVENTS);
    d->topic_state = topic_dup(c->device, LK_TOPIC_STATE);
    d->topic_config = topic_dup(c->device, LK_TOPIC_CONFIG);
    d->topic_commands = topic_dup(c->device, LK_TOPIC_COMMANDS_ALL);
    if (d->host == NULL || d->project == NULL || d->client_id == NULL || d->device == NULL ||
        d->topic_events == NULL || d->topic_state == NULL || d->topic_config == NULL ||
        d->topic_commands == NULL) {
        lk_dev_free(d);
        return LK_ERR_NOMEM;
    }
    d->sent_ms = calloc(d->max_rate, sizeof *d->sent_ms);
    if (d->sent_ms == NULL) {
        lk_dev_free(d);
        return LK_ERR_NOMEM;
    }
    if (c->tls != NULL) {
        d->tls = c->tls;
    } else {
        lk_err err = lk_dev_tls_new(c->ca_file, c->host, &d->tls, detail, detail_size);
        if (err != LK_OK) {
            lk_dev_free(d);
            return err;
        }
        d->own_tls = 1;
    }
    *out = d;
    return LK_OK;
}

/* ----------------------------------------------------------------- queue */

static void queue_reset_sent(lk_dev *d)
{
    struct msg *m;
    for (m = d->head; m != NULL; m = m->next) {
        if (m->mid != 0) {
            m->mid = 0;
            d->stats.resent++;
        }
    }
    d->inflight = 0;
    d->state_inflight = 0;
}

static void msg_free(struct msg *m)
{
    if (m == NULL)
        return;
    lk_wipe(m->data, m->len);
    free(m);
}

/* 1 when one more message may go now without exceeding max_rate in any
 * 1000 ms; else 0 and *when says from when on. */
static int rate_allows(const lk_dev *d, int64_t now, int64_t *when)
{
    int64_t oldest;
    if (d->sent_n < d->max_rate)
        return 1;
    oldest = d->sent_ms[d->sent_i]; /* the ring is full: sent_i is the oldest */
    if (now - oldest >= 1000)
        return 1;
    *when = oldest + 1000;
    return 0;
}

static void rate_record(lk_dev *d, int64_t now)
{
    d->sent_ms[d->sent_i] = now;
    d->sent_i = (d->sent_i + 1) % d->max_rate;
    if (d->sent_n < d->max_rate)
        d->sent_n++;
}

/* Hand the unsent messages to the connection, in order, as fast as the
 * server's rates allow: events and state together within max_rate per
 * second, and state reports one at a time, each STATE_GAP_MS after the
 * previous one's PUBACK (IoT Core measures the state rate from its last
 * acknowledgement). A state report that must wait does not hold up the
 * events behind it. */
static void pump(lk_dev *d)
{
    struct msg *m;
    int64_t now, when = 0;
    int state_blocked;
    d->pump_wait_ms = 0;
    if (d->state != LK_DEV_CONNECTED && d->state != LK_DEV_STOPPING)
        return;
    if (d->mosq == NULL || d->connack != 0)
        return;
    now = lk_dev_now_ms();
    state_blocked = d->state_inflight || now < d->state_ready_ms;
    for (m = d->head; m != NULL; m = m->next) {
        int mid = 0, rc;
        if (m->mid != 0)
            continue;
        if (m->is_state && state_blocked) {
            if (!d->state_inflight && (when == 0 || d->state_ready_ms < when))
                when = d->state_ready_ms;
            continue;
        }
        if (!rate_allows(d, now, &when))
            break;
        rc = mosquitto_publish(d->mosq, &mid, m->topic, (int)m->len, m->data, 1, false);
        if (rc != MOSQ_ERR_SUCCESS) {
            /* The connection is failing; what was not handed over waits for the next one. */
            break;
        }
        rate_record(d, now);
        m->mid = mid != 0 ? mid : -1;
        d->inflight++;
        if (m->is_state) {
            d->state_inflight = 1;
            state_blocked = 1;
        }
    }
    d->pump_wait_ms = when;
}

static lk_err enqueue(lk_dev *d, const char *topic, const void *data, size_t len, size_t max,
                      uint64_t *id)
{
    struct msg *m;
    size_t tlen;

    if (id != NULL)
        *id = 0;
    if (d->state == LK_DEV_STOPPING || d->state == LK_DEV_STOPPED || d->state == LK_DEV_FAILED)
        return LK_ERR_STATE;
    if (len > max)
        return LK_ERR_TOO_LARGE;
    if (len > 0 && data == NULL)
        return LK_ERR_ARG;
    if (d->queued >= d->queue_max || len > d->queue_bytes_max - d->queued_bytes)
        return LK_ERR_QUEUE_FULL;
    tlen = strlen(topic);
    m = malloc(sizeof *m + tlen + 1 + len);
    if (m == NULL)
        return LK_ERR_NOMEM;
    m->next = NULL;
    m->is_state = topic == d->topic_state;
    m->id = d->next_id++;
    m->mid = 0;
    m->len = len;
    memcpy(m->topic, topic, tlen + 1);
    m->data = (uint8_t *)m->topic + tlen + 1;
    if (len > 0)
        memcpy(m->data, data, len);
    if (d->tail != NULL)
        d->tail->next = m;
    else
        d->head = m;
    d->tail = m;
    d->queued++;
    d->queued_bytes += len;
    d->stats.published++;
    if (id != NULL)
        *id = m->id;
    if (!d->in_callback)
        pump(d);
    return LK_OK;
}

lk_err lk_dev_publish_event(lk_dev *d, const char *subfolder, const void *data, size_t len,
                            uint64_t *id)
{
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    if (d == NULL)
        return LK_ERR_ARG;
    if (subfolder == NULL || subfolder[0] == '\0')
        return enqueue(d, d->topic_events, data, len, LK_EVENT_MAX, id);
    if (!lk_subfolder_valid(subfolder, strlen(subfolder)) ||
        lk_device_topic(d->device, LK_TOPIC_EVENTS, subfolder, topic, sizeof topic, NULL) != LK_OK)
        return LK_ERR_ARG;
    return enqueue(d, topic, data, len, LK_EVENT_MAX, id);
}

lk_err lk_dev_publish_state(lk_dev *d, const void *data, size_t len, uint64_t *id)
{
    if (d == NULL)
        return LK_ERR_ARG;
    return enqueue(d, d->topic_state, data, len, LK_STATE_MAX, id);
}

/* ------------------------------------------------ libmosquitto callbacks */

static void cb_connect(struct mosquitto *mosq, void *obj, int rc)
{
    lk_dev *d = obj;
    (void)mosq;
    d->connack = rc;
    if (rc != 0)
        d->ended = 1;
}

static void cb_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    lk_dev *d = obj;
    (void)mosq;
    d->ended = 1;
    if (d->lost_rc == 0) {
        d->lost_rc = rc;
        d->lost_errno = rc == MOSQ_ERR_ERRNO ? errno : 0;
    }
}

static void cb_publish(struct mosquitto *mosq, void *obj, int mid)
{
    lk_dev *d = obj;
    struct msg *m, *prev = NULL;
    (void)mosq;
    /* PUBACKs come in order, so this almost always stops at the head. */
    for (m = d->head; m != NULL; prev = m, m = m->next) {
        if (m->mid != mid)
            continue;
        if (prev != NULL)
            prev->next = m->next;
        else
            d->head = m->next;
        if (d->tail == m)
            d->tail = prev;
        d->queued--;
        d->queued_bytes -= m->len;
        if (d->inflight > 0)
            d->inflight--;
        if (m->is_state) {
            d->state_inflight = 0;
            d->state_ready_ms = lk_dev_now_ms() + STATE_GAP_MS;
        }
        d->stats.delivered++;
        emit(d, LK_DEV_EV_DELIVERED, LK_OK, 0, 0, m->id, "message %llu delivered",
             (unsigned long long)m->id);
        msg_free(m);
        return;
    }
}

static void cb_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted)
{
    lk_dev *d = obj;
    int i;
    (void)mosq;
    (void)mid;
    for (i = 0; i < n; i++) {
        if (granted[i] > 1) {
            emit(d, LK_DEV_EV_WARNING, LK_ERR_REFUSED, granted[i], 0, 0,
                 "the server refused a subscription (SUBACK %d)", granted[i]);
            return;
        }
    }
    emit(d, LK_DEV_EV_SUBSCRIBED, LK_OK, 0, 0, 0, "subscribed to config and commands");
}

static void cb_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    lk_dev *d = obj;
    const char *sub = NULL;
    lk_topic kind;
    size_t len;
    (void)mosq;
    kind = msg->topic == NULL ? LK_TOPIC_NONE
                              : lk_device_topic_parse(d->device, msg->topic, strlen(msg->topic), &sub);
    if (kind == LK_TOPIC_NONE) {
        emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0, "ignored a message on a topic not ours");
        return;
    }
    len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    d->in_callback++;
    if (kind == LK_TOPIC_CONFIG) {
        if (len > LK_CONFIG_MAX) {
            d->in_callback--;
            emit(d, LK_DEV_EV_WARNING, LK_ERR_TOO_LARGE, 0, 0, 0,
                 "ignored a config of %zu bytes (the limit is %u)", len, LK_CONFIG_MAX);
            return;
        }
        d->stats.configs++;
        if (d->on_config)
            d->on_config(d->user, msg->payload, len);
    } else if (kind == LK_TOPIC_COMMANDS) {
        if (len > LK_COMMAND_MAX) {
            d->in_callback--;
            emit(d, LK_DEV_EV_WARNING, LK_ERR_TOO_LARGE, 0, 0, 0,
                 "ignored a command of %zu bytes (the limit is %u)", len, LK_COMMAND_MAX);
            return;
        }
        d->stats.commands++;
        if (d->on_command)
            d->on_command(d->user, sub != NULL ? sub : "", msg->payload, len);
    } else {
        d->in_callback--;
        emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0, "ignored a message on an unexpected topic");
        return;
    }
    d->in_callback--;
}

/* ------------------------------------------------------------ connecting */

static void drop_token(lk_dev *d)
{
    lk_wipe(d->token, sizeof d->token);
    d->token_len = 0;
    d->token_exp = 0;
    d->token_mono = 0;
    d->token_fresh = 0;
}

/* A token with more than the refresh margin left is reused (the server's
 * verified-token cache then answers); otherwise a new one is signed. */
static lk_err ensure_token(lk_dev *d, int64_t now)
{
    int64_t iat, left_ms;
    lk_err err;
    char until[32];

    d->token_fresh = 0;
    if (d->token_len > 0) {
        left_ms = d->token_mono + (int64_t)d->lifetime_s * 1000 - now;
        if (left_ms > (int64_t)d->margin_s * 1000)
            return LK_OK;
    }
    drop_token(d);
    iat = (int64_t)time(NULL);
    if (iat < 1600000000)
        emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0,
             "the system clock says %lld, before 2020: the server will refuse tokens until "
             "the clock is set", (long long)iat);
    err = lk_jwt_iotcore(d->se, d->key, d->alg, d->project, strlen(d->project), iat,
                         iat + d->lifetime_s, d->token, sizeof d->token, &d->token_len);
    if (err != LK_OK) {
        drop_token(d);
        return err;
    }
    d->token_exp = iat + d->lifetime_s;
    d->token_mono = now;
    d->token_fresh = 1;
    d->stats.tokens++;
    lk_time_rfc3339(d->token_exp, until, sizeof until);
    emit(d, LK_DEV_EV_TOKEN, LK_OK, 0, 0, 0, "signed a new %s token, valid until %s",
         lk_alg_name(d->alg), until);
    return LK_OK;
}

static void destroy_connection(lk_dev *d)
{
    if (d->mosq != NULL) {
        mosquitto_destroy(d->mosq);
        d->mosq = NULL;
    }
    d->ended = 0;
    d->lost_rc = 0;
    d->lost_errno = 0;
    d->verify_err = X509_V_OK;
    d->connack = -1;
    d->connected_ms = 0;
    queue_reset_sent(d);
}

static void schedule_retry(lk_dev *d, int64_t now, lk_err why)
{
    int64_t delay;
    d->failures++;
    if (d->max_attempts != 0 && d->failures >= d->max_attempts) {
        char last[DETAIL_MAX];
        snprintf(last, sizeof last, "%s", d->fail_detail[0] ? d->fail_detail : lk_strerror(why));
        fail(d, why, "gave up after %u failed attempts in a row (last: %s)", d->failures, last);
        return;
    }
    delay = lk_dev_backoff_ms(d->failures - 1, d->backoff_max_s, jitter());
    d->retry_ms = now + delay;
    d->state = LK_DEV_BACKOFF;
    emit(d, LK_DEV_EV_BACKOFF, why, 0, delay, 0, "next attempt in %.3f s (attempt %u)",
         (double)delay / 1000.0, d->failures + 1);
}

static void attempt(lk_dev *d, int64_t now)
{
    int rc;
    lk_err err;

    d->stats.attempts++;
    d->fail_detail[0] = '\0';
    err = ensure_token(d, now);
    if (err != LK_OK) {
        /* A missing or locked key will not come back by itself; a signing
         * hiccup of the element might. */
        if (err == LK_ERR_SIGN || err == LK_ERR_DEVICE || err == LK_ERR_RNG || err == LK_ERR_NOMEM) {
            snprintf(d->fail_detail, sizeof d->fail_detail, "the secure element failed to sign: %s",
                     lk_strerror(err));
            emit(d, LK_DEV_EV_WARNING, err, 0, 0, 0, "%s", d->fail_detail);
            schedule_retry(d, now, err);
        } else {
            char shown[2 * LK_KEY_REF_MAX + 8];
            /* The key reference may carry a PIN (pkcs11: pin-value). */
            (void)lk_key_ref_redact(d->key, shown, sizeof shown);
            fail(d, err, "cannot sign a token with key %s: %s", shown, lk_strerror(err));
        }
        return;
    }
    d->mosq = mosquitto_new(d->client_id, true, d);
    if (d->mosq == NULL) {
        snprintf(d->fail_detail, sizeof d->fail_detail, "out of memory for a connection");
        schedule_retry(d, now, LK_ERR_NOMEM);
        return;
    }
    mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(d->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(d->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    mosquitto_void_option(d->mosq, MOSQ_OPT_SSL_CTX, d->tls->ctx);
    mosquitto_connect_callback_set(d->mosq, cb_connect);
    mosquitto_disconnect_callback_set(d->mosq, cb_disconnect);
    mosquitto_publish_callback_set(d->mosq, cb_publish);
    mosquitto_subscribe_callback_set(d->mosq, cb_subscribe);
    mosquitto_message_callback_set(d->mosq, cb_message);
    /* libmosquitto keeps its own copy of the password until the object is
     * destroyed, at the end of this connection. */
    rc = mosquitto_username_pw_set(d->mosq, "unused", d->token);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_connect_async(d->mosq, d->host, (int)d->port, (int)d->keepalive_s);
    d->state = LK_DEV_CONNECTING;
    d->deadline_ms = now + (int64_t)d->connect_timeout_s * 1000;
    d->misc_ms = now + MISC_MS;
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) {
        d->ended = 1;
        d->lost_rc = rc;
        d->lost_errno = errno;
    }
}

/* The connection is over: say why, tidy up, decide what comes next. */
static void connection_ended(lk_dev *d, int64_t now, int loop_rc)
{
    lk_dev_state was = d->state;
    int connack = d->connack;
    int rc = d->lost_rc ? d->lost_rc : loop_rc;
    int saved_errno = d->lost_errno;
    long verify = d->verify_err;
    int tls_failed = 0;
    lk_err why = LK_ERR_NET;
    SSL *ssl;

    if (d->mosq != NULL) {
        ssl = mosquitto_ssl_get(d->mosq);
        /* A refused TCP connection also ends a handshake: only a
         * certificate verdict or a TLS protocol error is a TLS failure. */
        if (ssl != NULL && connack < 0 && verify == X509_V_OK)
            verify = SSL_get_verify_result(ssl);
        if (connack < 0) {
            tls_failed = verify != X509_V_OK ||
                         ((rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE) && saved_errno == 0);
        }
    }
    if (was == LK_DEV_CONNECTED || was == LK_DEV_REFRESHING || was == LK_DEV_STOPPING) {
        d->stats.disconnects++;
        if (d->connected_ms != 0 && now - d->connected_ms >= STABLE_MS)
            d->failures = 0;
    }
    destroy_connection(d);

    if (was == LK_DEV_STOPPING) {
        d->state = LK_DEV_STOPPED;
        emit(d, LK_DEV_EV_STOPPED, LK_OK, (int)d->queued, 0, 0,
             "stopped; %zu message(s) not delivered", d->queued);
        return;
    }
    if (was == LK_DEV_REFRESHING) {
        emit(d, LK_DEV_EV_DISCONNECTED, LK_OK, 0, 0, 0, "disconnected to replace the token");
        attempt(d, now);
        return;
    }

    if (connack > 0) {
        why = LK_ERR_REFUSED;
        d->stats.refusals++;
        snprintf(d->fail_detail, sizeof d->fail_detail, "refused by the server (CONNACK %d: %s)",
                 connack, mosquitto_connack_string(connack));
        if (connack == 4 || connack == 5 || connack == 1 || connack == 2) {
            int fresh = d->token_fresh;
            /* Never retry a refused token. */
            drop_token(d);
            if (fresh)
                d->refusals++;
            emit(d, LK_DEV_EV_REFUSED, LK_ERR_REFUSED, connack, 0, 0, "%s%s", d->fail_detail,
                 fresh ? "" : "; the token was reused, trying a new one");
            if (fresh && d->max_refusals != UINT_MAX && d->refusals >= d->max_refusals) {
                char msg[DETAIL_MAX];
                snprintf(msg, sizeof msg,
                         "the server refused %u freshly signed tokens in a row (CONNACK %d: %s): "
                         "the key may be revoked, the device blocked or unknown, the "
                         "project/region/registry wrong, or the clock far off",
                         d->refusals, connack, mosquitto_connack_string(connack));
                fail(d, LK_ERR_REFUSED, "%s", msg);
                return;
            }
        } else {
            emit(d, LK_DEV_EV_REFUSED, LK_ERR_REFUSED, connack, 0, 0, "%s", d->fail_detail);
        }
    } else if (tls_failed) {
        why = LK_ERR_TLS;
        d->stats.tls_failures++;
        if (verify != X509_V_OK)
            snprintf(d->fail_detail, sizeof d->fail_detail,
                     "server not authenticated: certificate verify failed: %s (nothing was sent)",
                     X509_verify_cert_error_string(verify));
        else
            snprintf(d->fail_detail, sizeof d->fail_detail,
                     "TLS handshake with %s:%u failed (%s)", d->host, d->port,
                     rc == MOSQ_ERR_ERRNO ? strerror(saved_errno) : mosquitto_strerror(rc));
        emit(d, LK_DEV_EV_TLS_FAILED, LK_ERR_TLS, 0, 0, 0, "%s", d->fail_detail);
    } else {
        const char *reason = rc == MOSQ_ERR_ERRNO ? strerror(saved_errno) : mosquitto_strerror(rc);
        if (rc == MOSQ_ERR_ERRNO && saved_errno == 0)
            reason = "closed by the server";
        if (was == LK_DEV_CONNECTED)
            snprintf(d->fail_detail, sizeof d->fail_detail, "connection lost: %s", reason);
        else
            snprintf(d->fail_detail, sizeof d->fail_detail, "cannot connect to %s:%u: %s",
                     d->host, d->port, reason);
        emit(d, LK_DEV_EV_DISCONNECTED, LK_ERR_NET, 0, 0, 0, "%s", d->fail_detail);
    }
    schedule_retry(d, now, why);
}

static void connected(lk_dev *d, int64_t now)
{
    char until[32];
    int64_t at;

    d->state = LK_DEV_CONNECTED;
    d->connected_ms = now;
    d->refusals = 0;
    d->token_fresh = 0;
    d->stats.connects++;
    at = d->token_mono + (int64_t)(d->lifetime_s - d->margin_s) * 1000;
    d->refresh_ms = at;
    lk_time_rfc3339(d->token_exp, until, sizeof until);
    {
        /* One SUBSCRIBE for both: one SUBACK says whether the device can
         * hear its config and its commands. */
        char *topics[2];
        topics[0] = d->topic_config;
        topics[1] = d->topic_commands;
        mosquitto_subscribe_multiple(d->mosq, NULL, 2, topics, 1, 0, NULL);
    }
    emit(d, LK_DEV_EV_CONNECTED, LK_OK, 0, 0, 0, "connected to %s:%u as %s (token valid until %s)",
         d->host, d->port, d->client_id, until);
    pump(d);
}

/* ------------------------------------------------------------------ step */

lk_err lk_dev_start(lk_dev *d)
{
    if (d == NULL)
        return LK_ERR_ARG;
    if (d->state != LK_DEV_IDLE)
        return LK_ERR_STATE;
    d->state = LK_DEV_BACKOFF;
    d->retry_ms = lk_dev_now_ms();
    return LK_OK;
}

void lk_dev_stop(lk_dev *d)
{
    if (d == NULL)
        return;
    switch (d->state) {
    case LK_DEV_CONNECTED:
    case LK_DEV_REFRESHING:
        /* Flush what is queued on this connection, then say goodbye. */
        d->state = LK_DEV_STOPPING;
        d->deadline_ms = lk_dev_now_ms() + d->drain_ms;
        if (!d->in_callback)
            pump(d);
        break;
    case LK_DEV_IDLE:
    case LK_DEV_CONNECTING:
    case LK_DEV_BACKOFF:
        if (d->in_callback) {
            /* Defer: the connection is torn down by the next step. */
            d->state = LK_DEV_STOPPING;
            d->deadline_ms = 0;
            break;
        }
        destroy_connection(d);
        d->state = LK_DEV_STOPPED;
        emit(d, LK_DEV_EV_STOPPED, LK_OK, (int)d->queued, 0, 0,
             "stopped; %zu message(s) not delivered", d->queued);
        break;
    default:
        break;
    }
}

static void say_goodbye(lk_dev *d)
{
    if (d->mosq != NULL && d->connack == 0) {
        mosquitto_disconnect(d->mosq);
        mosquitto_loop_write(d->mosq, 1);
    }
}

static lk_err step(lk_dev *d, int readable, int writable);

lk_err lk_dev_step(lk_dev *d, int readable, int writable)
{
    lk_dev *outer;
    lk_err err;
    if (d == NULL)
        return LK_ERR_ARG;
    if (d->in_callback)
        return LK_ERR_STATE;
    outer = stepping;
    stepping = d;
    err = step(d, readable, writable);
    stepping = outer;
    return err;
}

static lk_err step(lk_dev *d, int readable, int writable)
{
    int64_t now = lk_dev_now_ms();
    int rc = MOSQ_ERR_SUCCESS;

    if (d->mosq != NULL && !d->ended && d->state == LK_DEV_CONNECTING && d->connack < 0 &&
        (readable || writable)) {
        /* libmosquitto keeps retrying the handshake on a socket whose TCP
         * connect failed (it takes SSL_ERROR_SYSCALL for "try again"), so
         * the socket itself is asked: a hang-up or error while connecting
         * ends the attempt. */
        int fd = mosquitto_socket(d->mosq);
        struct pollfd p;
        p.fd = fd;
        p.events = POLLOUT;
        p.revents = 0;
        if (fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP))) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr == 0)
                soerr = ECONNREFUSED; /* consumed by an earlier write: by far the likeliest */
            d->ended = 1;
            d->lost_rc = MOSQ_ERR_ERRNO;
            d->lost_errno = soerr;
        }
    }
    if (d->mosq != NULL && !d->ended) {
        if (readable)
            rc = mosquitto_loop_read(d->mosq, PACKETS_PER_STEP);
        if (rc == MOSQ_ERR_SUCCESS && !d->ended && d->connack == 0 && d->state == LK_DEV_CONNECTING)
            connected(d, now);
        if (rc == MOSQ_ERR_SUCCESS && !d->ended && (writable || mosquitto_want_write(d->mosq)))
            rc = mosquitto_loop_write(d->mosq, PACKETS_PER_STEP);
        if (rc == MOSQ_ERR_SUCCESS && !d->ended && now >= d->misc_ms) {
            rc = mosquitto_loop_misc(d->mosq);
            d->misc_ms = now + MISC_MS;
        }
        if (rc != MOSQ_ERR_SUCCESS && (rc != MOSQ_ERR_NO_CONN || d->state != LK_DEV_CONNECTING)) {
            if (!d->ended && rc == MOSQ_ERR_ERRNO)
                d->lost_errno = errno;
            d->ended = 1;
        }
    }
    if (d->mosq != NULL && (d->ended || (d->state == LK_DEV_CONNECTING && now >= d->deadline_ms))) {
        if (!d->ended) {
            d->lost_rc = MOSQ_ERR_ERRNO;
            d->lost_errno = ETIMEDOUT;
        }
        connection_ended(d, now, rc);
        return d->state == LK_DEV_FAILED ? d->fail_err : LK_OK;
    }

    switch (d->state) {
    case LK_DEV_BACKOFF:
        if (now >= d->retry_ms)
            attempt(d, now);
        break;
    case LK_DEV_CONNECTED:
        if (d->connected_ms != 0 && now - d->connected_ms >= STABLE_MS)
            d->failures = 0;
        if (now >= d->refresh_ms) {
            d->state = LK_DEV_REFRESHING;
            d->deadline_ms = now + d->drain_ms;
            d->stats.refreshes++;
            emit(d, LK_DEV_EV_REFRESH, LK_OK, 0, 0, 0,
                 "token expires soon: reconnecting with a new one (%zu message(s) in flight)",
                 d->inflight);
        } else {
            pump(d);
        }
        break;
    case LK_DEV_REFRESHING:
        if (d->inflight == 0 || now >= d->deadline_ms) {
            say_goodbye(d);
            d->ended = 1;
            connection_ended(d, now, MOSQ_ERR_SUCCESS);
        }
        break;
    case LK_DEV_STOPPING:
        pump(d);
        if (d->mosq == NULL || d->connack != 0 || d->queued == 0 || now >= d->deadline_ms) {
            say_goodbye(d);
            connection_ended(d, now, MOSQ_ERR_SUCCESS);
        }
        break;
    default:
        break;
    }
    return d->state == LK_DEV_FAILED ? d->fail_err : LK_OK;
}

int lk_dev_fd(const lk_dev *d)
{
    if (d == NULL || d->mosq == NULL)
        return -1;
    return mosquitto_socket(d->mosq);
}

int lk_dev_want_write(const lk_dev *d)
{
    if (d == NULL || d->mosq == NULL)
        return 0;
    return mosquitto_want_write(d->mosq) ? 1 : 0;
}

int64_t lk_dev_next_ms(const lk_dev *d)
{
    int64_t next = INT64_MAX;
    if (d == NULL)
        return next;
    if (d->ended)
        return lk_dev_now_ms(); /* a connection ended synchronously: tidy up at once */
    switch (d->state) {
    case LK_DEV_BACKOFF:
        return d->retry_ms;
    case LK_DEV_CONNECTING:
        next = d->deadline_ms;
        break;
    case LK_DEV_CONNECTED:
        next = d->refresh_ms;
        if (d->pump_wait_ms != 0 && d->pump_wait_ms < next)
            next = d->pump_wait_ms;
        break;
    case LK_DEV_REFRESHING:
    case LK_DEV_STOPPING:
        next = d->deadline_ms;
        /* Drains end on a PUBACK, seen on the next read; poll briskly. */
        if (next > lk_dev_now_ms() + 100)
            next = lk_dev_now_ms() + 100;
        break;
    default:
        return next;
    }
    if (d->mosq != NULL && d->misc_ms < next)
        next = d->misc_ms;
    return next;
}

lk_err lk_dev_run(lk_dev *d, int timeout_ms)
{
    int64_t end, now;
    if (d == NULL)
        return LK_ERR_ARG;
    now = lk_dev_now_ms();
    end = timeout_ms < 0 ? INT64_MAX : now + timeout_ms;
    for (;;) {
        struct pollfd p;
        int64_t wait;
        int n;
        lk_err err;
        if (d->state == LK_DEV_STOPPED || d->state == LK_DEV_IDLE)
            return LK_OK;
        if (d->state == LK_DEV_FAILED)
            return d->fail_err;
        now = lk_dev_now_ms();
        if (now >= end)
            return LK_OK;
        wait = lk_dev_next_ms(d);
        if (wait > end)
            wait = end;
        wait -= now;
        if (wait < 0)
            wait = 0;
        if (wait > 1000)
            wait = 1000;
        p.fd = lk_dev_fd(d);
        p.events = (short)(POLLIN | (lk_dev_want_write(d) ? POLLOUT : 0));
        p.revents = 0;
        n = poll(&p, p.fd >= 0 ? 1 : 0, (int)wait);
        if (n < 0 && errno == EINTR)
            return LK_OK; /* a signal: let the caller look at its flags */
        err = lk_dev_step(d, (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0,
                          (p.revents & POLLOUT) != 0);
        if (err != LK_OK)
            return err;
    }
}

/* -------------------------------------------------------------- the rest */

void lk_dev_free(lk_dev *d)
{
    struct msg *m, *next;
    if (d == NULL)
        return;
    if (d->mosq != NULL)
        mosquitto_destroy(d->mosq);
    for (m = d->head; m != NULL; m = next) {
        next = m->next;
        msg_free(m);
    }
    lk_wipe(d->token, sizeof d->token);
    if (d->own_tls)
        lk_dev_tls_free(d->tls);
    free(d->host);
    free(d->project);
    free(d->client_id);
    free(d->device);
    free(d->topic_events);
    free(d->topic_state);
    free(d->topic_config);
    free(d->topic_commands);
    free(d->sent_ms);
    free(d);
}

lk_dev_state lk_dev_get_state(const lk_dev *d)
{
    return d ? d->state : LK_DEV_FAILED;
}

const char *lk_dev_state_name(lk_dev_state s)
{
    switch (s) {
    case LK_DEV_IDLE: return "idle";
    case LK_DEV_CONNECTING: return "connecting";
    case LK_DEV_CONNECTED: return "connected";
    case LK_DEV_REFRESHING: return "refreshing";
    case LK_DEV_BACKOFF: return "backoff";
    case LK_DEV_STOPPING: return "stopping";
    case LK_DEV_STOPPED: return "stopped";
    case LK_DEV_FAILED: return "failed";
    }
    return "unknown";
}

lk_err lk_dev_error(const lk_dev *d, const char **detail)
{
    if (detail != NULL)
        *detail = d && d->state == LK_DEV_FAILED ? d->fail_detail : "";
    if (d == NULL)
        return LK_ERR_ARG;
    return d->state == LK_DEV_FAILED ? d->fail_err : LK_OK;
}

const char *lk_dev_client_id(const lk_dev *d)
{
    return d ? d->client_id : "";
}

void lk_dev_get_stats(const lk_dev *d, lk_dev_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (d == NULL)
        return;
    *out = d->stats;
    out->queued = d->queued;
    out->queued_bytes = d->queued_bytes;
    out->connected_ms = d->state == LK_DEV_CONNECTED ? d->connected_ms : 0;
    out->token_exp = d->token_exp;
}
