/*
 * metrics.c — GET /metrics (Prometheus text format 0.0.4) over the broker
 * plugin's shared counters (metrics_file, service/common/lk_metrics_shm.h)
 * and latchkeyd's own (API requests, the push queue), and the console's
 * two metric endpoints: a project's per-minute series (series.c) and a
 * device's recent refusals (docs/metrics.md).
 *
 * The metrics file is input: it is mapped read-only and used only once
 * lk_mshm_check has passed; its size is checked again before each use (a
 * file cut short under the mapping would fault), and a new file at the
 * path (the broker restarted) is mapped anew.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "daemon.h"
#include "../common/lk_metrics_shm.h"

struct lkd_metrics {
    const struct lk_mshm *m;     /* the mapping, once checked */
    int fd;
    dev_t dev;
    ino_t ino;
    char why[384];               /* the last refusal of the file, logged once */
    struct lkd_series *series;
    struct event *timer;
};

/* ---- latchkeyd's API requests (both listeners) ---- */

#define API_BUCKETS 10
static const double api_bounds[API_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
static uint64_t api_codes[600];  /* by HTTP status */
static uint64_t api_lat[API_BUCKETS + 1];
static double api_lat_sum;

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u + 1u;
}

uint64_t lkd_metrics_clock(void)
{
    return mono_us();
}

void lkd_metrics_answered(struct evhttp_request *req, uint64_t start)
{
    uint64_t now = mono_us();
    int code = evhttp_request_get_response_code(req);
    double s = now > start ? (double)(now - start) / 1e6 : 0;
    unsigned i;

    if (code >= 100 && code < 600)
        api_codes[code]++;
    for (i = 0; i < API_BUCKETS && s > api_bounds[i]; i++)
        ;
    api_lat[i]++;
    api_lat_sum += s;
}

/* ---- the metrics file ---- */

static void unmap(struct lkd_metrics *mt)
{
    if (mt->m != NULL)
        munmap((void *)mt->m, sizeof *mt->m);
    if (mt->fd >= 0)
        close(mt->fd);
    mt->m = NULL;
    mt->fd = -1;
}

static void refuse(struct lkd *d, struct lkd_metrics *mt, const char *why)
{
    unmap(mt);
    if (strcmp(why, mt->why) != 0) {
        snprintf(mt->why, sizeof mt->why, "%s", why);
        lkd_log("metrics_file %s: %s; the plugin's figures are left out of /metrics until it is right",
                d->cfg.metrics_file, why);
    }
}

/* The checked mapping of metrics_file, (re)made when the path names
 * another file; NULL when there is none good. */
static const struct lk_mshm *mapped(struct lkd *d)
{
    struct lkd_metrics *mt = d->metrics;
    char why[300];
    struct stat st;

    if (mt == NULL || d->cfg.metrics_file == NULL)
        return NULL;
    if (stat(d->cfg.metrics_file, &st) != 0) {
        snprintf(why, sizeof why, "%s (is the broker's plugin_opt_metrics_file the same path?)", strerror(errno));
        refuse(d, mt, why);
        return NULL;
    }
    if (mt->m != NULL && st.st_dev == mt->dev && st.st_ino == mt->ino) {
        struct stat now;
        if (fstat(mt->fd, &now) == 0 && now.st_size >= (off_t)sizeof *mt->m)
            return mt->m;
        refuse(d, mt, "the file was cut short");
        return NULL;
    }
    unmap(mt);
    /* O_NONBLOCK: a FIFO put at the path must not hold the loop in open(). */
    int fd = open(d->cfg.metrics_file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, sizeof why, "%s", fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        refuse(d, mt, why);
        return NULL;
    }
    /* Mapped whole even when shorter: only the header's first 16 bytes
     * are read until the size is known to be enough. */
    const void *p = NULL;
    if (st.st_size >= 16) {
        p = mmap(NULL, sizeof *mt->m, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(why, sizeof why, "mmap: %s", strerror(errno));
            close(fd);
            refuse(d, mt, why);
            return NULL;
        }
    }
    if (lk_mshm_check(p, (size_t)st.st_size, why, sizeof why) != 0) {
        if (p != NULL)
            munmap((void *)p, sizeof *mt->m);
        close(fd);
        refuse(d, mt, why);
        return NULL;
    }
    mt->m = p;
    mt->fd = fd;
    mt->dev = st.st_dev;
    mt->ino = st.st_ino;
    if (mt->why[0] != '\0')
        lkd_log("metrics_file %s: read again", d->cfg.metrics_file);
    mt->why[0] = '\0';
    return mt->m;
}

static void on_sample(evutil_socket_t fd, short what, void *arg)
{
    struct lkd *d = arg;
    (void)fd;
    (void)what;
    lkd_series_sample(d->metrics->series, mapped(d), (int64_t)time(NULL));
}

int lkd_metrics_start(struct lkd *d)
{
    struct lkd_metrics *mt = calloc(1, sizeof *mt);
    if (mt == NULL)
        return -1;
    mt->fd = -1;
    d->metrics = mt;
    if (d->cfg.metrics_file == NULL)
        return 0;
    unsigned step = d->cfg.metrics_sample_seconds;
    struct timeval tv = {(time_t)step, 0};
    if (lkd_series_new(step, (int64_t)time(NULL), &mt->series) != 0 ||
        (mt->timer = event_new(d->base, -1, EV_PERSIST, on_sample, d)) == NULL || event_add(mt->timer, &tv) != 0)
        return -1;
    lkd_series_sample(mt->series, mapped(d), (int64_t)time(NULL));
    lkd_log("metrics: the plugin's counters from %s, sampled every %u s", d->cfg.metrics_file, step);
    return 0;
}

void lkd_metrics_stop(struct lkd *d)
{
    struct lkd_metrics *mt = d->metrics;
    if (mt == NULL)
        return;
    if (mt->timer)
        event_free(mt->timer);
    lkd_series_free(mt->series);
    unmap(mt);
    free(mt);
    d->metrics = NULL;
}

/* ---- GET /metrics ---- */

static uint64_t ld(const lk_mshm_u64 *x)
{
    return atomic_load_explicit(x, memory_order_relaxed);
}

/* The registry label of slot k ("(other)" for the last), escaped; 0 when
 * the slot is unused. */
static int label(const struct lk_mshm *m, unsigned k, char *out, size_t size)
{
    char path[LK_REGISTRY_PATH_MAX + 1];
    size_t o = 0;

    if (k == LK_MSHM_OTHER) {
        snprintf(out, size, "(other)");
        return 1;
    }
    if (!atomic_load_explicit(&m->reg[k].used, memory_order_acquire) ||
        lk_mshm_str(m->reg[k].path, sizeof m->reg[k].path, path) == 0)
        return 0;
    for (const char *p = path; *p && o + 3 < size; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = '\0';
    return 1;
}

static void head(struct evbuffer *b, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One per-registry family: which selects the counter. */
enum fam { F_CONNECTIONS, F_CONNECTS, F_EVENTS, F_STATES, F_CONFIG, F_COMMANDS };

static void registry_family(struct evbuffer *b, const struct lk_mshm *m, const char *name, const char *type,
                            const char *help, enum fam which)
{
    char lab[2 * LK_REGISTRY_PATH_MAX + 8];
    head(b, name, type, help);
    for (unsigned k = 0; k < LK_MSHM_SLOTS; k++) {
        const struct lk_mshm_registry *g = &m->reg[k];
        const lk_mshm_u64 *v[] = {&g->connections, &g->connects, &g->events, &g->states, &g->config_sends,
                                  &g->commands};
        if (label(m, k, lab, sizeof lab))
            evbuffer_add_printf(b, "%s{registry=\"%s\"} %llu\n", name, lab, (unsigned long long)ld(v[which]));
    }
}

static void plugin_metrics(struct evbuffer *b, const struct lk_mshm *m)
{
    char lab[2 * LK_REGISTRY_PATH_MAX + 8];
    registry_family(b, m, "latchkey_connections", "gauge", "Device MQTT connections open now.", F_CONNECTIONS);
    registry_family(b, m, "latchkey_connects_total", "counter", "Device MQTT connects accepted.", F_CONNECTS);
    head(b, "latchkey_refusals_total", "counter", "Connects refused, by reason.");
    for (unsigned k = 0; k < LK_MSHM_SLOTS; k++)
        if (label(m, k, lab, sizeof lab))
            for (unsigned r = 0; r < LK_MSHM_REASONS; r++)
                evbuffer_add_printf(b, "latchkey_refusals_total{registry=\"%s\",reason=\"%s\"} %llu\n", lab,
                                    lk_mshm_reason_name(r), (unsigned long long)ld(&m->reg[k].refusals[r]));
    registry_family(b, m, "latchkey_events_total", "counter", "Telemetry events accepted (MQTT).", F_EVENTS);
    registry_family(b, m, "latchkey_states_total", "counter", "State reports accepted (MQTT).", F_STATES);
    registry_family(b, m, "latchkey_config_sends_total", "counter", "Configs sent to devices.", F_CONFIG);
    registry_family(b, m, "latchkey_commands_delivered_total", "counter", "Commands delivered to devices.",
                    F_COMMANDS);
    head(b, "latchkey_token_cache_hits_total", "counter", "Verified-token cache hits on connect.");
    evbuffer_add_printf(b, "latchkey_token_cache_hits_total %llu\n", (unsigned long long)ld(&m->cache_hits));
    head(b, "latchkey_token_cache_misses_total", "counter", "Verified-token cache misses on connect.");
    evbuffer_add_printf(b, "latchkey_token_cache_misses_total %llu\n", (unsigned long long)ld(&m->cache_misses));
    head(b, "latchkey_registry_lookup_seconds", "histogram", "The device lookup of a connect (cache or registry).");
    uint64_t cum = 0;
    for (unsigned i = 0; i <= LK_MSHM_LAT_BUCKETS; i++) {
        cum += ld(&m->lat_count[i]);
        if (i < LK_MSHM_LAT_BUCKETS)
            evbuffer_add_printf(b, "latchkey_registry_lookup_seconds_bucket{le=\"%g\"} %llu\n", lk_mshm_lat_bound(i),
                                (unsigned long long)cum);
    }
    evbuffer_add_printf(b,
                        "latchkey_registry_lookup_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "latchkey_registry_lookup_seconds_sum %.9f\nlatchkey_registry_lookup_seconds_count %llu\n",
                        (unsigned long long)cum, (double)ld(&m->lat_sum_ns) / 1e9, (unsigned long long)cum);
    head(b, "latchkey_plugin_start_time_seconds", "gauge", "When the broker plugin started (Unix time).");
    evbuffer_add_printf(b, "latchkey_plugin_start_time_seconds %lld\n", (long long)m->started);
}

static void api_metrics(struct evbuffer *b)
{
    head(b, "latchkey_api_requests_total", "counter", "HTTP requests answered by latchkeyd, by status code.");
    for (int i = 100; i < 600; i++)
        if (api_codes[i])
            evbuffer_add_printf(b, "latchkey_api_requests_total{code=\"%d\"} %llu\n", i,
                                (unsigned long long)api_codes[i]);
    head(b, "latchkey_api_request_duration_seconds", "histogram", "From a request's arrival to its answer sent.");
    uint64_t cum = 0;
    for (unsigned i = 0; i <= API_BUCKETS; i++) {
        cum += api_lat[i];
        if (i < API_BUCKETS)
            evbuffer_add_printf(b, "latchkey_api_request_duration_seconds_bucket{le=\"%g\"} %llu\n", api_bounds[i],
                                (unsigned long long)cum);
    }
    evbuffer_add_printf(b,
                        "latchkey_api_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "latchkey_api_request_duration_seconds_sum %.6f\n"
                        "latchkey_api_request_duration_seconds_count %llu\n",
                        (unsigned long long)cum, api_lat_sum, (unsigned long long)cum);
}

/* A call for the endpoints here, as http.c makes one for /v1 (no body):
 * NULL after answering. */
static struct lkd_call *call_new(struct lkd *d, struct evhttp_request *req, const char *path)
{
    struct lkd_call *c = calloc(1, sizeof *c);

    if (c == NULL || (c->path = strdup(path)) == NULL) {
        free(c);
        lkd_send_error(req, LKD_UNAVAILABLE, "out of memory");
        return NULL;
    }
    c->d = d;
    c->req = req;
    c->method = evhttp_request_get_command(req);
    lkd_peer(req, c->peer, sizeof c->peer, 1);
    TAILQ_INIT(&c->query);
    return c;
}

static int peer_loopback(struct evhttp_request *req)
{
    char host[72];
    lkd_peer(req, host, sizeof host, 0);
    return lkd_is_loopback(host) || strncmp(host, "::ffff:127.", 11) == 0;
}

void lkd_metrics_serve(struct lkd *d, struct evhttp_request *req)
{
    struct lkd_call *c = call_new(d, req, "/metrics");
    if (c == NULL)
        return;
    if (c->method != EVHTTP_REQ_GET) {
        lkd_reply_error(c, LKD_NOT_FOUND, "/metrics takes GET");
        return;
    }
    /* Any role's credentials, or none where the operator allows it. */
    int open = d->cfg.metrics_unauthenticated == 2 || (d->cfg.metrics_unauthenticated == 1 && peer_loopback(req));
    if (!open && lkd_authenticate(c) != 0)
        return;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL || lkd_push_metrics(d, b) != 0) {
        if (b)
            evbuffer_free(b);
        lkd_reply_error(c, LKD_UNAVAILABLE, "the metrics cannot be read now");
        return;
    }
    const struct lk_mshm *m = mapped(d);
    head(b, "latchkey_plugin_metrics_up", "gauge", "1 when the broker plugin's metrics file is read.");
    evbuffer_add_printf(b, "latchkey_plugin_metrics_up %d\n", m != NULL);
    if (m != NULL)
        plugin_metrics(b, m);
    api_metrics(b);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    lkd_call_free(c);
}

/* ---- the console's endpoints ---- */

#define REFUSALS_MAX 100

static void refusals(struct lkd_call *c, const char *device)
{
    const struct lk_mshm *m = mapped(c->d);
    json_t *arr = json_array(), *o = json_object();
    int bad = arr == NULL || o == NULL;

    if (m != NULL && !bad) {
        /* newest first; a torn or overwritten entry is skipped */
        uint64_t next = atomic_load_explicit(&m->ring_next, memory_order_acquire);
        struct lk_mshm_refusal e;
        for (uint64_t k = 0; k < LK_MSHM_RING && k < next && json_array_size(arr) < REFUSALS_MAX && !bad; k++) {
            if (lk_mshm_refusal_read(m, next - 1 - k, &e) != 0 || strcmp(e.device, device) != 0)
                continue;
            char t[LK_TIME_MAX];
            json_t *r = json_pack("{s:s,s:s,s:s}", "time", lk_time_rfc3339(e.time, t, sizeof t), "reason",
                                  lk_mshm_reason_name(e.reason), "detail", e.detail);
            bad |= r == NULL || json_array_append_new(arr, r) != 0;
        }
    }
    if (bad || json_object_set_new(o, "refusals", arr) != 0) {
        json_decref(o);
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    lkd_reply_json(c, 200, o);
}

static void series(struct lkd_call *c, const char *project)
{
    int64_t minutes;
    if (lkd_query_int(c, "minutes", 1, LKD_SERIES_LEN, 60, &minutes) != 0)
        return;
    if (c->d->metrics == NULL || c->d->metrics->series == NULL) {
        lkd_reply_error(c, LKD_FAILED_PRECONDITION, "no series: metrics_file is not set (docs/metrics.md)");
        return;
    }
    json_t *o = lkd_series_json(c->d->metrics->series, project, (unsigned)minutes);
    if (o == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    lkd_reply_json(c, 200, o);
}

int lkd_metrics_console(struct lkd *d, struct evhttp_request *req, const char *path)
{
    /* projects/P/series, projects/P/locations/L/registries/R/devices/D/refusals */
    char buf[LK_DEVICE_PATH_MAX + 32], *seg[10], *save = NULL;
    unsigned n = 0;
    const char *rest = path + strlen("/console/api/");

    if (strlen(rest) >= sizeof buf)
        return 0;
    strcpy(buf, rest);
    /* Each segment percent-decoded in place (ids may hold '%', '+', '~');
     * one that decodes to '/' or NUL names nothing here. */
    for (char *s = strtok_r(buf, "/", &save); s != NULL; s = strtok_r(NULL, "/", &save)) {
        size_t dlen = 0;
        char *dec = evhttp_uridecode(s, 0, &dlen);
        int bad = dec == NULL || dlen != strlen(dec) || strchr(dec, '/') != NULL || dlen > strlen(s);
        if (!bad)
            memcpy(s, dec, dlen + 1);
        free(dec);
        if (bad || n == 10)
            return 0;
        seg[n++] = s;
    }
    int is_series = n == 3 && strcmp(seg[0], "projects") == 0 && strcmp(seg[2], "series") == 0;
    int is_refusals = n == 9 && strcmp(seg[0], "projects") == 0 && strcmp(seg[2], "locations") == 0 &&
                      strcmp(seg[4], "registries") == 0 && strcmp(seg[6], "devices") == 0 &&
                      strcmp(seg[8], "refusals") == 0;
    if (!is_series && !is_refusals)
        return 0;
    struct lkd_call *c = call_new(d, req, path);
    if (c == NULL)
        return 1;
    if (lkd_authenticate(c) != 0)
        return 1;
    if (c->method != EVHTTP_REQ_GET) {
        lkd_reply_error(c, LKD_NOT_FOUND, "%s takes GET", path);
        return 1;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    if (q != NULL && evhttp_parse_query_str(q, &c->query) != 0) {
        evhttp_clear_headers(&c->query);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "malformed query string");
        return 1;
    }
    c->query_ok = 1;
    if (!lk_project_valid(seg[1], strlen(seg[1]))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "not a valid project id");
        return 1;
    }
    if (lkd_require(c, seg[1], LKD_ROLE_VIEWER) != 0)
        return 1;
    if (is_series) {
        series(c, seg[1]);
        return 1;
    }
    char dev[LK_DEVICE_PATH_MAX + 1];
    lk_device_name p;
    snprintf(dev, sizeof dev, "projects/%s/locations/%s/registries/%s/devices/%s", seg[1], seg[3], seg[5], seg[7]);
    if (lk_device_path_parse(dev, strlen(dev), &p) != LK_OK) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "not a valid device path");
        return 1;
    }
    refusals(c, dev);
    return 1;
}
