/*
 * log.c — clocks, the registry's generation and the log: the leaf every other file of latchkeyd
 * uses. The log is stderr, one line per event (journald stamps it).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

int lkd_log_quiet;

/* One line per event: what a client sent (a field name, a path) may hold
 * control characters, which must not forge log lines or terminal escapes. */
__attribute__((format(printf, 1, 0))) static void vlog(const char *fmt, va_list ap)
{
    char line[2048];
    if (lkd_log_quiet)
        return;
    vsnprintf(line, sizeof line, fmt, ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "latchkeyd: %s\n", line);
}

void lkd_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void lkd_debug(const struct lkd *d, const char *fmt, ...)
{
    if (!d->cfg.verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}
