/*
 * Device events over MQTT (issue 14): the baseline of bench/http_bridge.sh.
 * C connections, each a device on its own MQTT 3.1.1 client over TLS,
 * publish QoS 1 events to /devices/D/events, each waiting for its PUBACK
 * before it sends the next: what wrk's keep-alive connections do against
 * latchkeyd's publishEvent (one request, its 200, the next).
 *
 *   bench_publish --port N --ca FILE --devices FILE --payload FILE
 *                 --project P --region L --registry R
 *                 [--connections C] [--threads T] [--seconds S]
 *
 *   --devices FILE   lines "DEVICE_ID TOKEN" (the tokens the HTTP run uses);
 *                    connection i is the device of line i mod the line count
 *   --payload FILE   the event's bytes (the same bytes the HTTP run sends)
 *   --connections C  (default 32), --threads T (default 2): as wrk's -c, -t;
 *                    each thread drives C/T connections with poll(), so the
 *                    client costs what wrk's event loops cost, not C threads
 *   --seconds S      the timed part (default 5)
 *
 * Every connection is connected (CONNACK accepted) before the clock starts.
 * Prints one line "RATE COUNTED TOTAL": PUBACKs per second received within
 * the S seconds (as wrk counts answers within its duration), their number,
 * and every event acknowledged, the ones in flight at the end included
 * (waited for, so that a subscriber's count can be checked against it). A
 * refused connect, a lost connection or an event not acknowledged within 5
 * s is an error (exit 1, the reason on stderr): no figure is printed.
 */
#include <errno.h>
#include <poll.h>
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

#define HOST "127.0.0.1"
#define LINE_MAX_ 4096
#define MAX_CONN 4096
#define MAX_THREADS 64

static struct {
    int port;
    const char *ca, *devices, *payload_file, *project, *region, *registry;
    int connections, threads;
    double seconds;
} o = {0, NULL, NULL, NULL, NULL, NULL, NULL, 32, 2, 5.0};

struct dev {
    char *id, *token;
};

struct conn {
    struct mosquitto *m;
    char client_id[512];
    char topic[320];
    int connected; /* 1 CONNACK accepted, -1 refused */
    int waiting;   /* a publish not yet acknowledged */
    long counted, total;
};

static SSL_CTX *ssl_ctx;
static struct dev *devs;
static long ndevs;
static unsigned char *payload;
static long payload_len;
static struct conn conns[MAX_CONN];
static pthread_barrier_t ready;
static volatile double t_start, t_deadline;
static volatile int failed;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "bench_publish: WHAT: WHY" (the first failure only), and stop. */
static int fail(const char *what, const char *why)
{
    if (!failed)
        fprintf(stderr, "bench_publish: %s: %s\n", what, why);
    failed = 1;
    return -1;
}

static int read_devices(void)
{
    FILE *f = fopen(o.devices, "r");
    char line[LINE_MAX_];
    long cap = 0;

    if (f == NULL)
        return fail(o.devices, strerror(errno));
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' '), *nl;
        if (sp == NULL)
            continue;
        *sp = '\0';
        if ((nl = strchr(sp + 1, '\n')) != NULL)
            *nl = '\0';
        if (ndevs == cap) {
            cap = cap ? cap * 2 : 64;
            struct dev *d = realloc(devs, (size_t)cap * sizeof *d);
            if (d == NULL) {
                fclose(f);
                return fail("devices", "out of memory");
            }
            devs = d;
        }
        devs[ndevs].id = strdup(line);
        devs[ndevs].token = strdup(sp + 1);
        if (devs[ndevs].id == NULL || devs[ndevs].token == NULL) {
            fclose(f);
            return fail("devices", "out of memory");
        }
        ndevs++;
    }
    fclose(f);
    return ndevs > 0 ? 0 : fail(o.devices, "no \"DEVICE_ID TOKEN\" lines");
}

static int read_payload(void)
{
    FILE *f = fopen(o.payload_file, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (payload_len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (payload = malloc((size_t)payload_len + 1)) == NULL ||
        fread(payload, 1, (size_t)payload_len, f) != (size_t)payload_len) {
        if (f)
            fclose(f);
        return fail(o.payload_file, "cannot be read");
    }
    fclose(f);
    return 0;
}

static int make_ssl_ctx(void)
{
    ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ssl_ctx == NULL || SSL_CTX_load_verify_locations(ssl_ctx, o.ca, NULL) != 1 ||
        SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ssl_ctx), HOST) != 1)
        return fail(o.ca, "cannot be loaded as the CA");
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

static int publish_next(struct conn *c)
{
    int rc = mosquitto_publish(c->m, NULL, c->topic, (int)payload_len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS)
        return fail(c->client_id, mosquitto_strerror(rc));
    c->waiting = 1;
    return 0;
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct conn *c = obj;
    (void)m;
    c->connected = rc == 0 ? 1 : -1;
    if (rc)
        fail(c->client_id, mosquitto_connack_string(rc));
}

/* The PUBACK: count it, then the next event while the clock runs. */
static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    struct conn *c = obj;
    double t = now_s();
    (void)m;
    (void)mid;
    c->waiting = 0;
    c->total++;
    if (t < t_deadline) {
        c->counted++;
        publish_next(c);
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    struct conn *c = obj;
    (void)m;
    if (rc != 0)
        fail(c->client_id, rc == MOSQ_ERR_CONN_LOST ? "connection lost" : mosquitto_strerror(rc));
    c->connected = -1;
}

static int open_conn(struct conn *c, long i)
{
    const struct dev *d = &devs[i % ndevs];
    int rc;

    snprintf(c->client_id, sizeof c->client_id, "projects/%s/locations/%s/registries/%s/devices/%s",
             o.project, o.region, o.registry, d->id);
    snprintf(c->topic, sizeof c->topic, "/devices/%s/events", d->id);
    c->m = mosquitto_new(c->client_id, true, c);
    if (c->m == NULL)
        return fail(c->client_id, "mosquitto_new failed");
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_void_option(c->m, MOSQ_OPT_SSL_CTX, ssl_ctx);
    mosquitto_int_option(c->m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    if (mosquitto_username_pw_set(c->m, "unused", d->token) != MOSQ_ERR_SUCCESS)
        return fail(c->client_id, "bad token");
    rc = mosquitto_connect(c->m, HOST, o.port, 60);
    if (rc != MOSQ_ERR_SUCCESS)
        return fail(c->client_id, mosquitto_strerror(rc));
    return 0;
}

/* One poll() turn over the connections [lo, hi): read, write, keep-alive. */
static int turn(long lo, long hi, int ms)
{
    struct pollfd pfd[MAX_CONN];
    long i, n = hi - lo;

    for (i = 0; i < n; i++) {
        pfd[i].fd = mosquitto_socket(conns[lo + i].m);
        pfd[i].events = POLLIN | (mosquitto_want_write(conns[lo + i].m) ? POLLOUT : 0);
        pfd[i].revents = 0;
    }
    if (poll(pfd, (nfds_t)n, ms) < 0 && errno != EINTR)
        return fail("poll", strerror(errno));
    for (i = 0; i < n; i++) {
        struct conn *c = &conns[lo + i];
        int rc = MOSQ_ERR_SUCCESS;
        if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) {
            rc = mosquitto_loop_read(c->m, 1);
            /* TLS may hold a whole record already read from the socket */
            SSL *ssl = mosquitto_ssl_get(c->m);
            while (rc == MOSQ_ERR_SUCCESS && ssl && SSL_pending(ssl) > 0)
                rc = mosquitto_loop_read(c->m, 1);
        }
        if (rc == MOSQ_ERR_SUCCESS && ((pfd[i].revents & POLLOUT) || mosquitto_want_write(c->m)))
            rc = mosquitto_loop_write(c->m, 1);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_loop_misc(c->m);
        if (rc != MOSQ_ERR_SUCCESS)
            return fail(c->client_id, mosquitto_strerror(rc));
    }
    return failed ? -1 : 0;
}

static void *worker(void *arg)
{
    long t = (long)(intptr_t)arg;
    long lo = o.connections * t / o.threads, hi = o.connections * (t + 1) / o.threads, i;
    double until = now_s() + 10.0;
    int all;

    for (i = lo; i < hi && !failed; i++)
        open_conn(&conns[i], i);
    /* every connection's CONNACK before the clock starts */
    do {
        all = 1;
        for (i = lo; i < hi; i++)
            all &= conns[i].connected == 1;
        if (!all && !failed && turn(lo, hi, 10) != 0)
            break;
    } while (!all && !failed && now_s() < until);
    if (!all && !failed)
        fail("connect", "not every connection accepted within 10 s");
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&ready); /* the main thread has set the clock */
    if (failed)
        return NULL;
    for (i = lo; i < hi; i++)
        if (publish_next(&conns[i]) != 0)
            return NULL;
    while (!failed && now_s() < t_deadline)
        if (turn(lo, hi, 100) != 0)
            return NULL;
    /* the events in flight at the deadline: acknowledged too, or it is an error */
    until = now_s() + 5.0;
    for (;;) {
        int busy = 0;
        for (i = lo; i < hi; i++)
            busy |= conns[i].waiting;
        if (!busy || failed)
            break;
        if (now_s() >= until) {
            fail("end", "events not acknowledged within 5 s of the deadline");
            break;
        }
        if (turn(lo, hi, 10) != 0)
            break;
    }
    return NULL;
}

/* The options (all with a value). */
static const struct bench_option options[] = {
    {"--port", 'i', &o.port}, {"--ca", 's', &o.ca}, {"--devices", 's', &o.devices},
    {"--payload", 's', &o.payload_file}, {"--project", 's', &o.project},
    {"--region", 's', &o.region}, {"--registry", 's', &o.registry},
    {"--connections", 'i', &o.connections}, {"--threads", 'i', &o.threads},
    {"--seconds", 'd', &o.seconds},
};

static int usage(void)
{
    fprintf(stderr, "usage: bench_publish --port N --ca FILE --devices FILE --payload FILE --project P "
                    "--region L --registry R [--connections C] [--threads T] [--seconds S]\n");
    return 2;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_THREADS];
    long counted = 0, total = 0, i;
    int t;

    for (i = 1; i + 1 < argc; i += 2) {
        if (bench_set_option(options, sizeof options / sizeof options[0], argv[i], argv[i + 1]))
            return usage();
    }
    if (i != argc || o.port <= 0 || o.port > 65535 || !o.ca || !o.devices || !o.payload_file ||
        !o.project || !o.region || !o.registry || o.connections < 1 || o.connections > MAX_CONN ||
        o.threads < 1 || o.threads > MAX_THREADS || o.threads > o.connections || o.seconds <= 0)
        return usage();
    mosquitto_lib_init();
    if (read_devices() || read_payload() || make_ssl_ctx())
        return 1;
    if (pthread_barrier_init(&ready, NULL, (unsigned)o.threads + 1) != 0)
        return 1;
    t_deadline = 1e300;
    for (t = 0; t < o.threads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) != 0)
            return 1;
    pthread_barrier_wait(&ready);
    t_start = now_s();
    t_deadline = t_start + o.seconds;
    pthread_barrier_wait(&ready);
    for (t = 0; t < o.threads; t++)
        pthread_join(th[t], NULL);
    for (i = 0; i < o.connections; i++) {
        counted += conns[i].counted;
        total += conns[i].total;
        if (conns[i].m) {
            mosquitto_disconnect(conns[i].m);
            mosquitto_loop_write(conns[i].m, 1);
            mosquitto_destroy(conns[i].m);
        }
    }
    SSL_CTX_free(ssl_ctx);
    mosquitto_lib_cleanup();
    if (failed || counted == 0) {
        if (!failed)
            fprintf(stderr, "bench_publish: no event acknowledged\n");
        return 1;
    }
    printf("%.0f %ld %ld\n", (double)counted / o.seconds, counted, total);
    return 0;
}
