/*
 * state.c — the plugin's ground floor: its one shared state and its clock.
 * Every other file builds on this one; it builds on none of them.
 */
#include <time.h>

#include "plugin.h"

struct plg_state plg;

/* Mosquitto's tick carries no time; the wall clock, because token times
 * (iat, exp) and registry times are wall-clock times. */
int64_t clock__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

int64_t clock__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
