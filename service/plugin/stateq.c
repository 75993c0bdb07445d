/*
 * stateq.c — state reports that could not be written yet (docs/plugin.md,
 * "Config, commands, state"). A state is written to the registry when it
 * arrives; when the registry is locked longer than the broker's busy timeout
 * (a large import, a backup) the write fails with LK_ERR_REG_BUSY, or with
 * LK_ERR_REG_STORAGE when its disk is full, and the report waits here and is written again on a later tick instead of being
 * lost.
 *
 * Bounded: one report a device (a newer one replaces the waiting one, so an
 * older state is never written over a newer), at most
 * plugin_opt_state_wait_max reports and STATEQ_BYTES of payload; beyond that
 * the arriving report is dropped with a log line. While any report waits,
 * new ones queue behind it rather than trying the write themselves: one
 * blocked write a retry, not one a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

#define STATEQ_BYTES (16u * 1024u * 1024u)     /* their payloads together */
#define STATEQ_RETRY_MS 1000                   /* between two attempts */

struct stateq_entry {
    uint64_t num_id;
    int64_t t;
    uint8_t *data;
    uint32_t len;
    char path[LK_PROJECT_MAX + LK_LOCATION_MAX + 2 * LK_ID_MAX + 48]; /* for the log */
};

static struct stateq_entry *q;       /* in arrival order (of each device's first waiting report) */
static size_t q_n, q_cap, q_bytes;
static int64_t retry_ms;             /* the next attempt, in clock__now_ms() */
static uint64_t dropped;             /* dropped since the last log line about it */
static int64_t dropped_logged;       /* when that line was written (s) */

/* Errors worth waiting out: the lock, memory, or storage (a full disk gets
 * space back; a broken one only fills the bounded wait); the others (the
 * device deleted meanwhile) are final. */
static int stateq__transient(lk_err err)
{
    return err == LK_ERR_REG_BUSY || err == LK_ERR_NOMEM || err == LK_ERR_REG_STORAGE;
}

static void stateq__drop_log(const char *path, int64_t now)
{
    dropped++;
    /* at most one line a second, saying how many */
    if (now == dropped_logged)
        return;
    plog__msg(PLOG_WARN, "state_dropped", path, "its state report was dropped: "
                         "%zu reports (%zu bytes) already wait for the registry (at most "
                         "plugin_opt_state_wait_max %u, %u bytes); %" PRIu64 " dropped since the last "
                         "such line", q_n, q_bytes, plg.opt.state_wait_max, STATEQ_BYTES, dropped);
    dropped = 0;
    dropped_logged = now;
}

/* Keep the report for later: 0, or -1 when it was dropped (logged). */
static int stateq__keep(const lk_device_name *p, uint64_t num_id, const void *data, uint32_t len,
                        int64_t t)
{
    struct stateq_entry *e = NULL;
    uint8_t *copy;
    size_t i;
    char path[sizeof q->path];

    snprintf(path, sizeof path, "projects/%s/locations/%s/registries/%s/devices/%s", p->project,
             p->location, p->registry, p->device);
    for (i = 0; i < q_n; i++) {
        if (q[i].num_id == num_id) {
            e = &q[i];
            break;
        }
    }
    if (q_bytes - (e ? e->len : 0) + len > STATEQ_BYTES || (!e && q_n >= plg.opt.state_wait_max)) {
        stateq__drop_log(path, clock__now());
        return -1;
    }
    copy = malloc(len ? len : 1);
    if (!copy) {
        stateq__drop_log(path, clock__now());
        return -1;
    }
    memcpy(copy, data, len);
    if (!e) {
        if (q_n == q_cap) {
            size_t ncap = q_cap ? q_cap * 2 : 64;
            struct stateq_entry *nq = realloc(q, ncap * sizeof *nq);
            if (!nq) {
                free(copy);
                stateq__drop_log(path, clock__now());
                return -1;
            }
            q = nq;
            q_cap = ncap;
        }
        e = &q[q_n++];
        memset(e, 0, sizeof *e);
        e->num_id = num_id;
    } else {
        /* the newer report replaces the older: never written after it */
        q_bytes -= e->len;
        free(e->data);
    }
    e->data = copy;
    e->len = len;
    e->t = t;
    snprintf(e->path, sizeof e->path, "%s", path);
    q_bytes += len;
    return 0;
}

void stateq__add(const lk_device_name *p, uint64_t num_id, const void *data, uint32_t len,
                 int64_t t)
{
    lk_err err = LK_OK;

    if (q_n == 0) {
        err = lk_registry_add_state(plg.reg, num_id, data, len, t);
        if (err == LK_OK)
            return;
        if (!stateq__transient(err)) {
            char path[LK_DEVICE_PATH_MAX + 1];
            snprintf(path, sizeof path, "projects/%s/locations/%s/registries/%s/devices/%s", p->project,
                     p->location, p->registry, p->device);
            plog__msg(PLOG_WARN, "state_failed", path, "storing its state failed (%s)", lk_errname(err));
            return;
        }
        retry_ms = clock__now_ms() + STATEQ_RETRY_MS;
    }
    if (stateq__keep(p, num_id, data, len, t) == 0 && err != LK_OK)
        plog__msg(PLOG_INFO, "registry_busy", NULL, "the registry cannot take them now (%s): state "
                             "reports wait and are written again every %d ms", lk_errname(err),
                  STATEQ_RETRY_MS);
}

void stateq__flush(int force)
{
    size_t i, done = 0;
    lk_err err = LK_OK;

    if (q_n == 0 || (!force && clock__now_ms() < retry_ms))
        return;
    /* In arrival order; the first transient failure stops the round. */
    for (i = 0; i < q_n; i++) {
        err = lk_registry_add_state(plg.reg, q[i].num_id, q[i].data, q[i].len, q[i].t);
        if (stateq__transient(err))
            break;
        if (err != LK_OK)
            plog__msg(PLOG_WARN, "state_failed", q[i].path, "storing its state failed (%s)", lk_errname(err));
        q_bytes -= q[i].len;
        free(q[i].data);
        done++;
    }
    memmove(q, q + done, (q_n - done) * sizeof *q);
    q_n -= done;
    retry_ms = clock__now_ms() + STATEQ_RETRY_MS;
    if (q_n == 0 && done)
        plog__msg(PLOG_INFO, "registry_busy", NULL, "the registry took the %zu waiting "
                             "state report%s", done, done == 1 ? "" : "s");
}

void stateq__cleanup(void)
{
    size_t i;

    for (i = 0; i < q_n; i++)
        free(q[i].data);
    free(q);
    q = NULL;
    q_n = q_cap = q_bytes = 0;
    retry_ms = 0;
    dropped = 0;
    dropped_logged = 0;
}
