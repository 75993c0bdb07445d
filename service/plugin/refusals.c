/*
 * refusals.c — refusal log lines, rate-limited (docs/plugin.md, "Logs").
 *
 * Every refused CONNECT used to log one line: 98,000 refusals wrote 37 MB.
 * Now the first log_refusals_per_source refusals of one (source address,
 * reason) pair in log_refusals_window seconds are logged in full and the
 * rest counted;
 * the count is logged once when the pair's window closes. Above
 * log_refusals_per_second lines a second in all (a flood from many sources)
 * lines are counted instead, and the count is logged every REFUSAL_REPORT
 * seconds. Fixed
 * memory: a direct-mapped table where a new pair takes over a slot (after
 * logging what its previous owner had suppressed).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "plugin.h"

#define SLOTS 1024u
#define REFUSAL_REPORT 10

struct slot {
    uint64_t key;                /* 0 = free */
    int64_t window;              /* start of the pair's window */
    uint32_t logged, suppressed;
    char addr[48];
    const char *reason;          /* a string literal: the reason's kind */
};

static struct slot slots[SLOTS];
static int64_t second;
static uint32_t this_second;
static uint64_t over_total;       /* lines over REFUSALS_PER_S not yet reported */
static int64_t next_report, last_scan;

static uint64_t refusals__key(const char *addr, const char *reason)
{
    uint64_t h = hash__str(hash__str(HASH_STR_SEED, addr), reason);

    return h ? h : 1;
}

static void refusals__report(struct slot *s)
{
    if (s->suppressed)
        plog__msg(PLOG_INFO, "refused_summary", NULL, "refused %" PRIu32 " more connections "
                             "from %s (%s) in %" PRId64 " s; not logged one by one", s->suppressed,
                             s->addr, s->reason, plg.opt.log_refusals_window);
    s->suppressed = 0;
}

int refusals__allow(const char *addr, const char *reason, int64_t now)
{
    uint64_t key = refusals__key(addr, reason);
    struct slot *s = &slots[key & (SLOTS - 1)];

    if (s->key != key) {
        if (s->key)
            refusals__report(s);
        memset(s, 0, sizeof *s);
        s->key = key;
        s->window = now;
        snprintf(s->addr, sizeof s->addr, "%s", addr);
        s->reason = reason;
    } else if (now - s->window >= plg.opt.log_refusals_window) {
        refusals__report(s);
        s->window = now;
        s->logged = 0;
    }
    if (s->logged >= plg.opt.log_refusals_per_source) {
        s->suppressed++;
        return 0;
    }
    if (now != second) {
        second = now;
        this_second = 0;
    }
    if (this_second >= plg.opt.log_refusals_per_second) {
        over_total++;
        return 0;
    }
    this_second++;
    s->logged++;
    return 1;
}

void refusals__tick(int64_t now)
{
    size_t i;

    if (now == last_scan)
        return;
    last_scan = now;
    if (now >= next_report) {
        next_report = now + REFUSAL_REPORT;
        if (over_total)
            plog__msg(PLOG_INFO, "refused_summary", NULL, "%" PRIu64 " refusals were not "
                                 "logged in the last %d s (over %u lines a second)", over_total,
                                 REFUSAL_REPORT, plg.opt.log_refusals_per_second);
        over_total = 0;
    }
    /* once a second: the counts of pairs whose window has closed */
    for (i = 0; i < SLOTS; i++)
        if (slots[i].key && now - slots[i].window >= plg.opt.log_refusals_window) {
            refusals__report(&slots[i]);
            slots[i].key = 0;
        }
}

void refusals__cleanup(void)
{
    memset(slots, 0, sizeof slots);
    second = 0;
    this_second = 0;
    over_total = 0;
    next_report = 0;
    last_scan = 0;
}
