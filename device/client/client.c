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
#include "client_internal.h"

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
    {
        lk_err err = lk_dev__keys_init(d, c, why, sizeof why);
        if (err != LK_OK) {
            if (err == LK_ERR_ARG && detail != NULL && detail_size > 0)
                snprintf(detail, detail_size, "%s", why);
            lk_dev_free(d);
            return err;
        }
    }
    if (lk_dev__rate_init(&d->self_rate, d->max_rate) != LK_OK) {
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
        lk_dev__quiet_commands(d);
        if (!d->in_callback)
            lk_dev__pump(d);
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
        lk_dev__destroy_connection(d);
        d->state = LK_DEV_STOPPED;
        lk_dev__emit(d, LK_DEV_EV_STOPPED, LK_OK, (int)d->queued, 0, 0,
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
    outer = lk_dev__stepping;
    lk_dev__stepping = d;
    err = step(d, readable, writable);
    lk_dev__stepping = outer;
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
            lk_dev__connected(d, now);
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
        lk_dev__connection_ended(d, now, rc);
        return d->state == LK_DEV_FAILED ? d->fail_err : LK_OK;
    }

    switch (d->state) {
    case LK_DEV_BACKOFF:
        if (now >= d->retry_ms)
            lk_dev__attempt(d, now);
        break;
    case LK_DEV_CONNECTED:
        if (d->connected_ms != 0 && now - d->connected_ms >= STABLE_MS)
            d->failures = 0;
        if (now >= d->refresh_ms) {
            d->state = LK_DEV_REFRESHING;
            d->deadline_ms = now + d->drain_ms;
            d->stats.refreshes++;
            lk_dev__quiet_commands(d);
            lk_dev__emit(d, LK_DEV_EV_REFRESH, LK_OK, 0, 0, 0,
                         "token expires soon: reconnecting with a new one (%zu message(s) in flight)",
                         d->inflight);
        } else {
            lk_dev__gw_tick(d, now);
            lk_dev__pump(d);
        }
        break;
    case LK_DEV_REFRESHING:
        if ((d->inflight == 0 && !lk_dev__quieting(d)) || now >= d->deadline_ms) {
            say_goodbye(d);
            d->ended = 1;
            lk_dev__connection_ended(d, now, MOSQ_ERR_SUCCESS);
        }
        break;
    case LK_DEV_STOPPING:
        lk_dev__pump(d);
        if (d->mosq == NULL || d->connack != 0 || (d->queued == 0 && !lk_dev__quieting(d)) ||
            now >= d->deadline_ms) {
            say_goodbye(d);
            lk_dev__connection_ended(d, now, MOSQ_ERR_SUCCESS);
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
        if (lk_dev__gw_next_ms(d) < next)
            next = lk_dev__gw_next_ms(d);
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
        lk_dev__msg_free(m);
    }
    lk_dev__keys_free(d);
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
    lk_dev__rate_free(&d->self_rate);
    lk_dev__gw_free(d);
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
