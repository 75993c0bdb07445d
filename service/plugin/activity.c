/*
 * activity.c — the devices' activity times (heartbeat, event, state, config
 * sent, error, the gateway last attached through, the key last connected
 * with), kept in memory and written to the registry together every
 * activity_flush seconds: one transaction a flush instead of one a message.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

struct plg_act {
    lk_reg_activity a;
    char status[160];
    char gateway[LK_ID_MAX + 1];
    uint8_t key[32];
};

static struct plg_act *act_v;
static size_t act_n, act_cap;
static uint32_t *act_idx;          /* open addressing: slot -> index + 1 */
static size_t act_idx_cap;

static size_t activity__hash(uint64_t num_id)
{
    return hash__num(num_id, act_idx_cap - 1);
}

static int activity__grow(void)
{
    size_t ncap = act_cap ? act_cap * 2 : 256, i;
    struct plg_act *nv = realloc(act_v, ncap * sizeof *nv);
    uint32_t *ni;

    if (!nv)
        return -1;
    act_v = nv;
    ni = calloc(ncap * 2, sizeof *ni);
    if (!ni)
        return -1;
    free(act_idx);
    act_idx = ni;
    act_idx_cap = ncap * 2;
    act_cap = ncap;
    for (i = 0; i < act_n; i++) {
        size_t h = activity__hash(act_v[i].a.num_id);
        while (act_idx[h])
            h = (h + 1) & (act_idx_cap - 1);
        act_idx[h] = (uint32_t)(i + 1);
    }
    return 0;
}

/* The entry of num_id, made when absent; NULL out of memory. */
static struct plg_act *activity__entry(uint64_t num_id)
{
    struct plg_act *e;
    size_t h;

    if (act_idx_cap) {
        for (h = activity__hash(num_id); act_idx[h]; h = (h + 1) & (act_idx_cap - 1)) {
            if (act_v[act_idx[h] - 1].a.num_id == num_id)
                return &act_v[act_idx[h] - 1];
        }
    }
    if (act_n == act_cap && activity__grow())
        return NULL;
    e = &act_v[act_n];
    memset(e, 0, sizeof *e);
    e->a.num_id = num_id;
    for (h = activity__hash(num_id); act_idx[h]; h = (h + 1) & (act_idx_cap - 1))
        ;
    act_idx[h] = (uint32_t)(++act_n);
    return e;
}

void activity__note_key(uint64_t num_id, int64_t t, const uint8_t fp[32])
{
    struct plg_act *e = activity__entry(num_id);
    if (!e)
        return; /* out of memory: a time is lost, nothing else */
    if (t >= e->a.last_key_time) {
        e->a.last_key_time = t;
        memcpy(e->key, fp, sizeof e->key);
    }
}

void activity__note(uint64_t num_id, enum plg_activity what, int64_t t, const char *status)
{
    struct plg_act *e = activity__entry(num_id);

    if (!e)
        return; /* out of memory: a time is lost, nothing else */
    switch (what) {
    case ACT_HEARTBEAT: if (t > e->a.last_heartbeat) e->a.last_heartbeat = t; break;
    case ACT_EVENT: if (t > e->a.last_event) e->a.last_event = t; break;
    case ACT_STATE: if (t > e->a.last_state) e->a.last_state = t; break;
    case ACT_CONFIG_SEND: if (t > e->a.last_config_send) e->a.last_config_send = t; break;
    case ACT_ERROR:
        e->a.last_error = t;
        snprintf(e->status, sizeof e->status, "%s", status ? status : "");
        break;
    case ACT_GATEWAY:
        if (t >= e->a.last_gateway_time && status) {
            e->a.last_gateway_time = t;
            snprintf(e->gateway, sizeof e->gateway, "%s", status);
        }
        break;
    }
    if (what != ACT_HEARTBEAT && t > e->a.last_heartbeat)
        e->a.last_heartbeat = t;
}

/* Writes the table's times to the registry: 0, or -1 with the table kept
 * for the next flush. */
static int activity__write(void)
{
    lk_reg_activity *v;
    size_t i;
    lk_err err;

    v = malloc(act_n * sizeof *v);
    if (!v)
        return -1;
    for (i = 0; i < act_n; i++) {
        v[i] = act_v[i].a;
        v[i].last_error_status = act_v[i].a.last_error ? act_v[i].status : NULL;
        v[i].last_gateway_id = act_v[i].a.last_gateway_time ? act_v[i].gateway : NULL;
        v[i].last_key = act_v[i].a.last_key_time ? act_v[i].key : NULL;
    }
    err = lk_registry_record_activity(plg.reg, v, act_n);
    free(v);
    if (err) {
        plog__msg(PLOG_WARN, "activity_failed", NULL, "writing activity times failed (%s); retrying in %"
                  PRId64 " s", lk_errname(err), plg.opt.activity_flush);
        return -1;
    }
    return 0;
}

void activity__flush(void)
{
    size_t used = act_n;

    if (used && activity__write())
        return;
    act_n = 0;
    if (flush__give_back(used, act_cap))
        activity__cleanup();
    else if (used) /* with nothing written, no index entry was set since the last clear */
        memset(act_idx, 0, act_idx_cap * sizeof *act_idx);
}

void activity__cleanup(void)
{
    free(act_v);
    free(act_idx);
    act_v = NULL;
    act_idx = NULL;
    act_n = act_cap = act_idx_cap = 0;
}
