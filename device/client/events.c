/*
 * events.c — the device client tells its user what happens (lk_dev_event),
 * and the clock it measures with.
 */
#include "client_internal.h"

int64_t lk_dev_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- events */

void lk_dev__emit(lk_dev *d, lk_dev_event_type type, lk_err err, int code, int64_t delay,
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
    ev.device = d->ev_device;
    d->in_callback++;
    d->on_event(d->user, &ev);
    d->in_callback--;
}

void lk_dev__fail(lk_dev *d, lk_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->fail_detail, sizeof d->fail_detail, fmt, ap);
    va_end(ap);
    d->fail_err = err;
    d->state = LK_DEV_FAILED;
    lk_dev__emit(d, LK_DEV_EV_FAILED, err, 0, 0, 0, "%s", d->fail_detail);
}
