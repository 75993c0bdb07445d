/*
 * series.c — the per-minute series the console plots (docs/metrics.md,
 * "Series"): the plugin's counters sampled every metrics_sample_seconds
 * (60) into a ring of LKD_SERIES_LEN samples (24 h of minutes), per
 * registry, so that a project's series is the sum of its registries.
 *
 * Bounded memory: one row per registry the metrics file names (at most
 * LK_MSHM_SLOTS), each LKD_SERIES_LEN × LKD_SERIES_VALUES 32-bit counts
 * (about 80 KB), made when the registry first appears.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "../common/lk_metrics_shm.h"

/* connects, events, states, then refusals by reason */
#define V_CONNECTS 0
#define V_EVENTS 1
#define V_STATES 2
#define V_REFUSALS 3
#define LKD_SERIES_VALUES (V_REFUSALS + LK_MSHM_REASONS)

struct srow {
    char path[LK_REGISTRY_PATH_MAX + 1];
    uint64_t last[LKD_SERIES_VALUES];
    uint32_t *ring;              /* LKD_SERIES_LEN × LKD_SERIES_VALUES */
};

struct lkd_series {
    unsigned step;               /* seconds between samples */
    int64_t born;                /* latchkeyd's start */
    int64_t end;                 /* time of the last sample (0: none) */
    uint64_t samples;            /* columns written: the next is samples % LKD_SERIES_LEN */
    int64_t run;                 /* the plugin run (its start) the rows' last values are of */
    struct srow *row[LK_MSHM_SLOTS];
    unsigned nrow;
};

int lkd_series_new(unsigned step, int64_t now, struct lkd_series **out)
{
    struct lkd_series *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -1;
    s->step = step;
    s->born = now;
    *out = s;
    return 0;
}

void lkd_series_free(struct lkd_series *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 0; i < s->nrow; i++) {
        free(s->row[i]->ring);
        free(s->row[i]);
    }
    free(s);
}

static struct srow *row_of(struct lkd_series *s, const char *path)
{
    for (unsigned i = 0; i < s->nrow; i++)
        if (strcmp(s->row[i]->path, path) == 0)
            return s->row[i];
    if (s->nrow == LK_MSHM_SLOTS)
        return NULL;
    struct srow *r = calloc(1, sizeof *r);
    if (r == NULL || (r->ring = calloc((size_t)LKD_SERIES_LEN * LKD_SERIES_VALUES, sizeof *r->ring)) == NULL) {
        free(r);
        return NULL;
    }
    snprintf(r->path, sizeof r->path, "%s", path);
    s->row[s->nrow++] = r;
    return r;
}

void lkd_series_sample(struct lkd_series *s, const struct lk_mshm *m, int64_t now)
{
    /* A plugin run seen for the first time: when it began before latchkeyd,
     * its counts so far are not of any minute here (a baseline); when it
     * began since (the broker restarted), every count is new. */
    int first = m != NULL && m->started != s->run;
    int baseline = first && m->started < s->born;
    unsigned col = (unsigned)(s->samples % LKD_SERIES_LEN);
    int wrote = 0;

    for (unsigned i = 0; i < s->nrow; i++) {
        memset(&s->row[i]->ring[(size_t)col * LKD_SERIES_VALUES], 0, LKD_SERIES_VALUES * sizeof(uint32_t));
        if (first)
            memset(s->row[i]->last, 0, sizeof s->row[i]->last);
    }
    if (m != NULL) {
        s->run = m->started;
        for (unsigned k = 0; k < LK_MSHM_REGISTRIES; k++) {
            const struct lk_mshm_registry *g = &m->reg[k];
            char path[LK_REGISTRY_PATH_MAX + 1];
            uint64_t v[LKD_SERIES_VALUES];
            if (!atomic_load_explicit(&g->used, memory_order_acquire) ||
                lk_mshm_str(g->path, sizeof g->path, path) == 0)
                continue;
            struct srow *r = row_of(s, path);
            if (r == NULL)
                continue;
            v[V_CONNECTS] = atomic_load_explicit(&g->connects, memory_order_relaxed);
            v[V_EVENTS] = atomic_load_explicit(&g->events, memory_order_relaxed);
            v[V_STATES] = atomic_load_explicit(&g->states, memory_order_relaxed);
            for (unsigned j = 0; j < LK_MSHM_REASONS; j++)
                v[V_REFUSALS + j] = atomic_load_explicit(&g->refusals[j], memory_order_relaxed);
            for (unsigned j = 0; j < LKD_SERIES_VALUES; j++) {
                uint64_t d = v[j] >= r->last[j] ? v[j] - r->last[j] : v[j];
                if (!baseline)
                    r->ring[(size_t)col * LKD_SERIES_VALUES + j] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
                r->last[j] = v[j];
            }
            wrote = 1;
        }
    }
    /* The first sample of a run older than latchkeyd is only its baseline. */
    if (baseline && wrote && s->end == 0) {
        s->end = now;
        return;
    }
    s->samples++;
    s->end = now;
}

/* Whether registry path is of project: "projects/P/locations/...". */
static int of_project(const char *path, const char *project)
{
    size_t n = strlen(project);
    return strncmp(path, "projects/", 9) == 0 && strncmp(path + 9, project, n) == 0 && path[9 + n] == '/';
}

json_t *lkd_series_json(const struct lkd_series *s, const char *project, unsigned minutes)
{
    uint64_t sum[LKD_SERIES_VALUES];
    json_t *arr[LKD_SERIES_VALUES];
    json_t *o = json_object(), *ref = json_object();
    int bad = o == NULL || ref == NULL;

    for (unsigned j = 0; j < LKD_SERIES_VALUES; j++)
        bad |= (arr[j] = json_array()) == NULL;
    /* oldest first: column samples - minutes .. samples - 1; before the
     * first sample, zeros */
    for (unsigned k = 0; k < minutes && !bad; k++) {
        uint64_t idx = s->samples + k;
        memset(sum, 0, sizeof sum);
        if (idx >= minutes) {
            unsigned col = (unsigned)((idx - minutes) % LKD_SERIES_LEN);
            for (unsigned i = 0; i < s->nrow; i++)
                if (of_project(s->row[i]->path, project))
                    for (unsigned j = 0; j < LKD_SERIES_VALUES; j++)
                        sum[j] += s->row[i]->ring[(size_t)col * LKD_SERIES_VALUES + j];
        }
        for (unsigned j = 0; j < LKD_SERIES_VALUES; j++)
            bad |= json_array_append_new(arr[j], json_integer((json_int_t)sum[j])) != 0;
    }
    if (!bad) {
        bad |= json_object_set_new(o, "step", json_integer(s->step)) != 0;
        bad |= json_object_set_new(o, "end", json_integer(s->end)) != 0;
        bad |= json_object_set(o, "connects", arr[V_CONNECTS]) != 0;
        bad |= json_object_set(o, "events", arr[V_EVENTS]) != 0;
        bad |= json_object_set(o, "states", arr[V_STATES]) != 0;
        for (unsigned j = 0; j < LK_MSHM_REASONS; j++)
            bad |= json_object_set(ref, lk_mshm_reason_name(j), arr[V_REFUSALS + j]) != 0;
        bad |= json_object_set(o, "refusals", ref) != 0;
    }
    for (unsigned j = 0; j < LKD_SERIES_VALUES; j++)
        json_decref(arr[j]);
    json_decref(ref);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}
