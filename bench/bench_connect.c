/*
 * MQTT connects and publishes against a broker (issue 5): bench/broker.sh
 * runs it against Mosquitto with latchkey's plugin and against the same
 * Mosquitto, same configuration, without the plugin and anonymous.
 *
 *   bench_connect connect [options]   N connect/CONNACK/disconnect cycles of
 *                                     MQTT 3.1.1 clean-session clients,
 *                                     --parallel P at a time
 *   bench_connect publish [options]   N events from one client, counted when
 *                                     a subscriber receives them
 *
 * Options:
 *   --port N            broker port on 127.0.0.1 (required)
 *   --ca FILE           TLS, server certificate checked against FILE (one
 *                       SSL_CTX made before timing and shared by all clients)
 *   --count N           connects or messages (default 2000)
 *   --seconds S         stop early after S seconds (default 10)
 *   --parallel P        connect: clients in flight at once (default 1)
 *   --store FILE --key NAME --project P --region L --registry R
 *                       sign tokens with this software-store key (lk_jwt_iotcore,
 *                       ES256, iat = now, 1 hour), all before timing; the client
 *                       ids are the device paths of --prefix + number
 *   --prefix S          device id prefix (default "device-"), ids S%06d
 *   --devices N         device numbers 0..N-1 are used (default 2000)
 *   --first I           first device number (default 0; wraps at --devices)
 *   --tokens fresh|cached
 *                       fresh: every connect has its own newly signed token
 *                       (the broker's verified-token cache misses); cached: P
 *                       devices reconnect with one token each, connected once
 *                       before timing (cache hits). Default fresh.
 *   --anonymous         no username/password (client ids as above)
 *   --pid PID           also report the broker's CPU time (/proc/PID/schedstat)
 *   publish only:
 *   --qos 0|1           publisher QoS (default 1); the subscription is QoS 1
 *   --window W          at most W messages sent and not yet received (default 100)
 *   --size B            payload bytes (default 64)
 *   --topic T           publish topic (default /devices/D/events of the device)
 *   --sub-topic T       subscriber topic (default the same as --topic)
 *   --sub-user U --sub-pass S
 *                       subscriber credentials (a latchkey backend)
 *
 * Prints one line: "RATE BROKER_US" — operations per second (connects with
 * CONNACK, or messages received by the subscriber) and the broker's CPU
 * microseconds per operation (0 without --pid). Any refused connect, lost
 * message or timeout is an error (exit 1): a figure is only printed when
 * every operation succeeded.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_options.h"

#include "latchkey/lk_jwt.h"
#include "latchkey/lk_softstore.h"

#define HOST "127.0.0.1"
#define TOKEN_MAX 512
#define ID_MAX 320

static struct {
    int port;
    const char *ca;
    long count;
    double seconds;
    int parallel;
    const char *store, *key, *project, *region, *registry;
    const char *prefix;
    long devices, first;
    int cached, anonymous;
    long pid;
    int qos, window, size;
    const char *topic, *sub_topic, *sub_user, *sub_pass;
} o = {0, NULL, 2000, 10.0, 1, NULL, NULL, NULL, NULL, NULL, "device-", 2000, 0, 0, 0,
       0, 1, 100, 64, NULL, NULL, NULL, NULL};

static SSL_CTX *ssl_ctx;
static char (*tokens)[TOKEN_MAX]; /* one per operation slot */
static long ntokens;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The broker's CPU time in ns (it is single-threaded), or 0. */
static unsigned long long broker_cpu_ns(void)
{
    char path[64];
    unsigned long long ns = 0;
    FILE *f;

    if (o.pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/schedstat", o.pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    fclose(f);
    return ns;
}

static void device_id(long n, char *out, size_t size)
{
    long d = (o.first + n) % o.devices;
    if (o.project)
        snprintf(out, size, "projects/%s/locations/%s/registries/%s/devices/%s%06ld",
                 o.project, o.region, o.registry, o.prefix, d);
    else
        snprintf(out, size, "bench-%s%06ld", o.prefix, d);
}

static void device_name(long n, char *out, size_t size)
{
    snprintf(out, size, "%s%06ld", o.prefix, (o.first + n) % o.devices);
}

/* Sign n tokens (one software-store key, as broker.sh registers it for every device). */
static int make_tokens(long n)
{
    lk_softstore *s = NULL;
    lk_se se;
    lk_err err;
    int64_t iat = (int64_t)time(NULL);
    size_t len;
    long i;

    tokens = calloc((size_t)n, sizeof *tokens);
    if (tokens == NULL)
        return -1;
    ntokens = n;
    if (o.anonymous || o.store == NULL)
        return 0;
    err = lk_softstore_open(o.store, 0, &s);
    if (err != LK_OK) {
        fprintf(stderr, "bench_connect: %s: %s\n", o.store, lk_strerror(err));
        return -1;
    }
    se = lk_softstore_se(s);
    for (i = 0; i < n; i++) {
        err = lk_jwt_iotcore(&se, o.key, LK_ALG_ES256, o.project, strlen(o.project), iat,
                             iat + 3600, tokens[i], TOKEN_MAX, &len);
        if (err != LK_OK) {
            fprintf(stderr, "bench_connect: token: %s\n", lk_strerror(err));
            lk_softstore_close(s);
            return -1;
        }
    }
    lk_softstore_close(s);
    return 0;
}

static int make_ssl_ctx(void)
{
    X509_VERIFY_PARAM *vp;

    if (o.ca == NULL)
        return 0;
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ssl_ctx == NULL || SSL_CTX_load_verify_locations(ssl_ctx, o.ca, NULL) != 1 ||
        SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) != 1) {
        fprintf(stderr, "bench_connect: cannot load %s\n", o.ca);
        return -1;
    }
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
    vp = SSL_CTX_get0_param(ssl_ctx);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, HOST) != 1)
        return -1;
    return 0;
}

/* A client set up as every client here is: 3.1.1, TCP_NODELAY, the shared TLS context. */
static struct mosquitto *new_client(const char *id, void *obj, const char *user,
                                    const char *pass)
{
    struct mosquitto *m = mosquitto_new(id, true, obj);

    if (m == NULL)
        return NULL;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    if (ssl_ctx) {
        mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, ssl_ctx);
        mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    }
    if ((user || pass) && mosquitto_username_pw_set(m, user, pass) != MOSQ_ERR_SUCCESS) {
        mosquitto_destroy(m);
        return NULL;
    }
    return m;
}

/* ---- connect ---- */

struct slot {
    int done;
    int rc;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long next_op, ok_ops, failed_ops;
static double deadline;
static int first_error_reported;

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct slot *s = obj;
    (void)m;
    s->rc = rc;
    s->done = 1;
}

/* One connect/CONNACK/disconnect; 0 when CONNACK said accepted. */
static int one_connect(long op, long dev, const char *token)
{
    char id[ID_MAX];
    struct slot s = {0, -1};
    struct mosquitto *m;
    int rc;
    double limit = now_s() + 5.0;

    (void)op;
    device_id(dev, id, sizeof id);
    m = new_client(id, &s, o.anonymous ? NULL : "unused", o.anonymous ? NULL : token);
    if (m == NULL)
        return -1;
    mosquitto_connect_callback_set(m, on_connect);
    rc = mosquitto_connect(m, HOST, o.port, 60);
    while (rc == MOSQ_ERR_SUCCESS && !s.done && now_s() < limit)
        rc = mosquitto_loop(m, 1000, 1);
    if (s.done && s.rc == 0)
        mosquitto_disconnect(m);
    mosquitto_destroy(m);
    if (!(s.done && s.rc == 0)) {
        pthread_mutex_lock(&lock);
        if (!first_error_reported++)
            fprintf(stderr, "bench_connect: %s: %s\n", id,
                    s.done ? mosquitto_connack_string(s.rc) : mosquitto_strerror(rc));
        pthread_mutex_unlock(&lock);
        return -1;
    }
    return 0;
}

static void *connect_worker(void *arg)
{
    long w = (long)(intptr_t)arg;

    for (;;) {
        long op, dev;
        const char *tok;

        pthread_mutex_lock(&lock);
        op = next_op < o.count && now_s() < deadline && !failed_ops ? next_op++ : -1;
        pthread_mutex_unlock(&lock);
        if (op < 0)
            break;
        /* fresh: device op (ids spread over --devices), its own token;
         * cached: the worker's own device and token */
        dev = o.cached ? w : op;
        tok = tokens[o.cached ? w : op];
        if (one_connect(op, dev, tok) == 0) {
            pthread_mutex_lock(&lock);
            ok_ops++;
            pthread_mutex_unlock(&lock);
        } else {
            pthread_mutex_lock(&lock);
            failed_ops++;
            pthread_mutex_unlock(&lock);
        }
    }
    return NULL;
}

static int run_connect(void)
{
    pthread_t th[64];
    double t0, t1;
    unsigned long long c0, c1;
    int i;

    if (o.parallel < 1 || o.parallel > 64)
        return -1;
    if (make_tokens(o.cached ? o.parallel : o.count))
        return -1;
    if (o.cached) {
        /* fill the broker's caches: each worker's device connects once */
        for (i = 0; i < o.parallel; i++)
            if (one_connect(i, i, tokens[i]))
                return -1;
    }
    c0 = broker_cpu_ns();
    t0 = now_s();
    deadline = t0 + o.seconds;
    for (i = 0; i < o.parallel; i++)
        if (pthread_create(&th[i], NULL, connect_worker, (void *)(intptr_t)i))
            return -1;
    for (i = 0; i < o.parallel; i++)
        pthread_join(th[i], NULL);
    t1 = now_s();
    c1 = broker_cpu_ns();
    if (failed_ops || ok_ops == 0) {
        fprintf(stderr, "bench_connect: %ld of %ld connects failed\n", failed_ops,
                failed_ops + ok_ops);
        return -1;
    }
    printf("%.0f %.2f\n", (double)ok_ops / (t1 - t0),
           c1 > c0 ? (double)(c1 - c0) / 1e3 / (double)ok_ops : 0.0);
    return 0;
}

/* ---- publish ---- */

static long sent, received, acked;
static int sub_ready = -1, pub_ready = -1;

static void on_sub_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)obj;
    if (rc == 0 && mosquitto_subscribe(m, NULL, o.sub_topic, 1) == MOSQ_ERR_SUCCESS)
        return;
    pthread_mutex_lock(&lock);
    sub_ready = 0;
    fprintf(stderr, "bench_connect: subscriber: %s\n", mosquitto_connack_string(rc));
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted)
{
    (void)m;
    (void)obj;
    (void)mid;
    pthread_mutex_lock(&lock);
    sub_ready = n == 1 && granted[0] <= 2;
    if (!sub_ready)
        fprintf(stderr, "bench_connect: subscription to %s refused\n", o.sub_topic);
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    (void)obj;
    (void)msg;
    pthread_mutex_lock(&lock);
    received++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_pub_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)obj;
    pthread_mutex_lock(&lock);
    pub_ready = rc == 0;
    if (rc)
        fprintf(stderr, "bench_connect: publisher: %s\n", mosquitto_connack_string(rc));
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)obj;
    (void)mid;
    pthread_mutex_lock(&lock);
    acked++;
    pthread_mutex_unlock(&lock);
}

/* Wait (lock held) on cond for at most ms milliseconds. */
static void cond_wait_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&cond, &lock, &ts);
}

/* Wait (lock held) until *flag is set or the deadline passes. */
static int wait_flag(const int *flag, double until)
{
    while (*flag < 0 && now_s() < until)
        cond_wait_ms(10);
    return *flag == 1 ? 0 : -1;
}

static int run_publish(void)
{
    char id[ID_MAX], name[ID_MAX], topic[ID_MAX + 32], sub_id[ID_MAX + 16] = "";
    struct mosquitto *pub = NULL, *sub = NULL;
    unsigned char *payload;
    double t0, t1, until;
    unsigned long long c0, c1;
    long i;
    int rc = -1;

    if (make_tokens(1))
        return -1;
    payload = malloc((size_t)o.size + 1);
    if (payload == NULL)
        return -1;
    memset(payload, 'x', (size_t)o.size);
    device_id(0, id, sizeof id);
    device_name(0, name, sizeof name);
    if (o.topic)
        snprintf(topic, sizeof topic, "%s", o.topic);
    else
        snprintf(topic, sizeof topic, "/devices/%s/events", name);
    if (o.sub_topic == NULL)
        o.sub_topic = topic;

    /* a backend's client id is its name or NAME/... (docs/plugin.md) */
    if (o.sub_user && !strncmp(o.sub_user, "backend:", 8))
        snprintf(sub_id, sizeof sub_id, "%s/bench-sub", o.sub_user + 8);
    sub = new_client(sub_id[0] ? sub_id : NULL, NULL, o.sub_user, o.sub_pass);
    pub = new_client(id, NULL, o.anonymous ? NULL : "unused", o.anonymous ? NULL : tokens[0]);
    if (sub == NULL || pub == NULL)
        goto out;
    mosquitto_connect_callback_set(sub, on_sub_connect);
    mosquitto_subscribe_callback_set(sub, on_subscribe);
    mosquitto_message_callback_set(sub, on_message);
    mosquitto_connect_callback_set(pub, on_pub_connect);
    mosquitto_publish_callback_set(pub, on_publish);
    mosquitto_max_inflight_messages_set(pub, (unsigned)o.window);
    if (mosquitto_connect(sub, HOST, o.port, 60) || mosquitto_loop_start(sub) ||
        mosquitto_connect(pub, HOST, o.port, 60) || mosquitto_loop_start(pub)) {
        fprintf(stderr, "bench_connect: cannot connect to port %d\n", o.port);
        goto out;
    }
    pthread_mutex_lock(&lock);
    until = now_s() + 5.0;
    if (wait_flag(&sub_ready, until) || wait_flag(&pub_ready, until)) {
        pthread_mutex_unlock(&lock);
        fprintf(stderr, "bench_connect: clients not ready\n");
        goto out;
    }
    pthread_mutex_unlock(&lock);

    c0 = broker_cpu_ns();
    t0 = now_s();
    deadline = t0 + o.seconds;
    for (i = 0; i < o.count; i++) {
        pthread_mutex_lock(&lock);
        while (sent - received >= o.window && now_s() < deadline)
            cond_wait_ms(1);
        if (now_s() >= deadline) {
            pthread_mutex_unlock(&lock);
            break;
        }
        sent++;
        pthread_mutex_unlock(&lock);
        if (mosquitto_publish(pub, NULL, topic, o.size, payload, o.qos, false) !=
            MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "bench_connect: publish failed\n");
            goto out;
        }
    }
    /* everything sent must arrive (QoS 1 end to end: nothing may be lost) */
    pthread_mutex_lock(&lock);
    until = now_s() + 5.0;
    while (received < sent && now_s() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cond, &lock, &ts);
    }
    t1 = now_s();
    c1 = broker_cpu_ns();
    if (received != sent || sent == 0) {
        fprintf(stderr, "bench_connect: %ld sent, %ld received\n", sent, received);
        pthread_mutex_unlock(&lock);
        goto out;
    }
    pthread_mutex_unlock(&lock);
    printf("%.0f %.2f\n", (double)received / (t1 - t0),
           c1 > c0 ? (double)(c1 - c0) / 1e3 / (double)received : 0.0);
    rc = 0;
out:
    if (pub) {
        mosquitto_disconnect(pub);
        mosquitto_loop_stop(pub, rc != 0);
        mosquitto_destroy(pub);
    }
    if (sub) {
        mosquitto_disconnect(sub);
        mosquitto_loop_stop(sub, rc != 0);
        mosquitto_destroy(sub);
    }
    free(payload);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_connect connect|publish --port N [options] (see the source)\n");
    return 2;
}

/* The options with a value. */
static const struct bench_option options[] = {
    {"--port", 'i', &o.port}, {"--ca", 's', &o.ca}, {"--count", 'l', &o.count},
    {"--seconds", 'd', &o.seconds}, {"--parallel", 'i', &o.parallel}, {"--store", 's', &o.store},
    {"--key", 's', &o.key}, {"--project", 's', &o.project}, {"--region", 's', &o.region},
    {"--registry", 's', &o.registry}, {"--prefix", 's', &o.prefix}, {"--devices", 'l', &o.devices},
    {"--first", 'l', &o.first}, {"--pid", 'l', &o.pid}, {"--qos", 'i', &o.qos},
    {"--window", 'i', &o.window}, {"--size", 'i', &o.size}, {"--topic", 's', &o.topic},
    {"--sub-topic", 's', &o.sub_topic}, {"--sub-user", 's', &o.sub_user},
    {"--sub-pass", 's', &o.sub_pass},
};

int main(int argc, char **argv)
{
    int i, rc, mode;

    if (argc < 2)
        return usage();
    if (!strcmp(argv[1], "connect"))
        mode = 0;
    else if (!strcmp(argv[1], "publish"))
        mode = 1;
    else
        return usage();
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--anonymous")) {
            o.anonymous = 1;
            continue;
        }
        if (v == NULL)
            return usage();
        i++;
        if (!strcmp(a, "--tokens")) {
            if (!strcmp(v, "cached"))
                o.cached = 1;
            else if (strcmp(v, "fresh"))
                return usage();
        } else if (bench_set_option(options, sizeof options / sizeof options[0], a, v)) {
            return usage();
        }
    }
    if (o.port <= 0 || o.port > 65535 || o.count < 1 || o.seconds <= 0 || o.devices < 1 ||
        o.first < 0 || (o.qos != 0 && o.qos != 1) || o.window < 1 || o.size < 0 ||
        (!o.anonymous && o.store && (!o.key || !o.project || !o.region || !o.registry)))
        return usage();
    if (o.project && (!o.region || !o.registry))
        return usage();
    mosquitto_lib_init();
    rc = make_ssl_ctx() ? -1 : mode == 0 ? run_connect() : run_publish();
    SSL_CTX_free(ssl_ctx);
    mosquitto_lib_cleanup();
    free(tokens);
    return rc ? 1 : 0;
}
