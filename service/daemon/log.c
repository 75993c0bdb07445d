/*
 * log.c — clocks, the registry's generation and the log: the leaf every other file of latchkeyd
 * uses. The log is stderr, one key=value line per event (journald stamps it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/http.h>

#include "../common/kvlog.h"
#include "daemon.h"

int64_t lkd_now(void)
{
    return (int64_t)time(NULL);
}

int64_t lkd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One cheap poll (SQLite's data_version) a millisecond at most, however
 * many callers ask, instead of a read per waiting command or cached device. */
uint64_t lkd_registry_gen(struct lkd *d)
{
    int64_t now = lkd_now_ms();
    if (now != d->reg_polled_ms) {
        int changed = 1;
        if (lk_registry_poll(d->reg, &changed) != LK_OK || changed)
            d->reg_gen++;
        d->reg_polled_ms = now;
    }
    return d->reg_gen;
}

int lkd_is_loopback(const char *addr)
{
    return strcmp(addr, "localhost") == 0 || strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0;
}

const char *lkd_peer(struct evhttp_request *req, char *buf, size_t size, int with_port)
{
    char *host = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *con = evhttp_request_get_connection(req);
    if (con != NULL)
        evhttp_connection_get_peer(con, &host, &port);
    if (with_port)
        snprintf(buf, size, "%s:%u", host ? host : "?", (unsigned)port);
    else
        snprintf(buf, size, "%s", host ? host : "?");
    return buf;
}

int lkd_log_quiet;

/* One line per event, in the key=value form of service/common/kvlog.h
 * (docs/daemon.md, "Logs"): what a client sent (a field name, a path) is
 * escaped there, so it can forge no line, field or terminal escape. */
void lkd_log_kv(struct kvlog *l)
{
    if (!lkd_log_quiet)
        fprintf(stderr, "latchkeyd: %s\n", kvlog_end(l));
}

__attribute__((format(printf, 3, 0))) static void vlog(const char *event, const char *level, const char *fmt,
                                                       va_list ap)
{
    struct kvlog l;
    if (lkd_log_quiet)
        return;
    kvlog_begin(&l, event, level);
    kvlog_vfmt(&l, "msg", fmt, ap);
    lkd_log_kv(&l);
}

void lkd_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("notice", "info", fmt, ap);
    va_end(ap);
}

void lkd_debug(const struct lkd *d, const char *fmt, ...)
{
    if (!d->cfg.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog("notice", "debug", fmt, ap);
    va_end(ap);
}

void lkd_log_device(const struct lkd_call *c, const char *level, const char *event, const char *fmt, ...)
{
    struct kvlog l;
    va_list ap;
    if (lkd_log_quiet)
        return;
    kvlog_begin(&l, event, level);
    kvlog_str(&l, "device", c->who.email);
    kvlog_str(&l, "addr", c->peer);
    va_start(ap, fmt);
    kvlog_vfmt(&l, "msg", fmt, ap);
    va_end(ap);
    lkd_log_kv(&l);
}

void lkd_log_change(const struct lkd_call *c, const char *action, const char *key, const char *value,
                    const char *fmt, ...)
{
    struct kvlog l;
    va_list ap;
    if (lkd_log_quiet)
        return;
    kvlog_begin(&l, "change", "info");
    kvlog_str(&l, "who", c->who.email[0] ? c->who.email : "(unauthenticated)");
    kvlog_str(&l, "action", action);
    kvlog_str(&l, key, value);
    if (fmt != NULL) {
        va_start(ap, fmt);
        kvlog_vfmt(&l, "msg", fmt, ap);
        va_end(ap);
    }
    lkd_log_kv(&l);
}

const char *lkd_device_path(const lk_reg_name *n, const char *id, char *buf, size_t size)
{
    snprintf(buf, size, "projects/%s/locations/%s/registries/%s/devices/%s", n->project, n->location,
             n->registry, id);
    return buf;
}

const char *lkd_registry_path(const lk_reg_name *n, char *buf, size_t size)
{
    snprintf(buf, size, "projects/%s/locations/%s/registries/%s", n->project, n->location, n->registry);
    return buf;
}
