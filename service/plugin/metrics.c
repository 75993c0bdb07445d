/*
 * metrics.c — the plugin's counters in a shared-memory file
 * (plugin_opt_metrics_file; docs/metrics.md): latchkeyd maps it read-only
 * and serves /metrics, the per-minute series and each device's recent
 * refusals. The layout is service/common/lk_metrics_shm.h.
 *
 * Why this way: counting must cost the broker's thread next to nothing and
 * must not write the registry or call Mosquitto from another thread. A
 * counter here is a relaxed load and store into a MAP_SHARED page (one
 * writer: this thread), read by another process whenever it likes; nothing
 * waits, nothing is flushed. With the option unset every call returns at
 * its first test.
 *
 * The file is made anew at each start (a temporary file renamed over the
 * path), never truncated under a reader: a reader that still maps the old
 * one keeps reading it until it sees the path's inode change.
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

#include "plugin.h"
#include "../common/lk_metrics_shm.h"

static struct lk_mshm *m;
static dev_t m_dev;              /* the file made, to remove at cleanup */
static ino_t m_ino;
/* The hash of each slot's registry, kept here (this process only): a
 * lookup compares 64-bit hashes, not paths. 0 = free. */
static uint64_t slot_hash[LK_MSHM_REGISTRIES];

static uint64_t metrics__hash(const lk_device_name *p)
{
    uint64_t h = hash__str(hash__str(hash__str(HASH_STR_SEED, p->project), "/"), p->location);
    h = hash__str(hash__str(h, "/"), p->registry);
    return h ? h : 1;
}

/* p's registry's slot: found, or (with take) taken (its path written
 * first, then marked used for readers); else "other": the probed slots
 * are taken, or take is 0 and the registry has none yet. */
static struct lk_mshm_registry *metrics__slot(const lk_device_name *p, int take)
{
    uint64_t h = metrics__hash(p);
    unsigned i, s;

    for (i = 0; i < LK_MSHM_PROBE; i++) {
        s = (unsigned)((h >> 8) + i) & (LK_MSHM_REGISTRIES - 1);
        if (slot_hash[s] == h)
            return &m->reg[s];
        if (!slot_hash[s]) {
            if (!take)
                break;
            slot_hash[s] = h;
            snprintf(m->reg[s].path, sizeof m->reg[s].path, "projects/%s/locations/%s/registries/%s",
                     p->project, p->location, p->registry);
            atomic_store_explicit(&m->reg[s].used, 1, memory_order_release);
            return &m->reg[s];
        }
    }
    return &m->reg[LK_MSHM_OTHER];
}

int metrics__init(void)
{
    const char *path = plg.opt.metrics_file;
    char tmp[4200];
    struct lk_mshm *map;
    struct stat st;
    int fd;

    if (!path)
        return 0;
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp) {
        plog__msg(PLOG_ERROR, "metrics", NULL, "plugin_opt_metrics_file: path too long");
        return -1;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        plog__msg(PLOG_ERROR, "metrics", NULL, "plugin_opt_metrics_file %s: cannot create "
                             "a file beside it: %s (the broker's user needs write access to the "
                             "directory)", path, strerror(errno));
        return -1;
    }
    /* Group-readable: latchkeyd runs as another user of the file's group. */
    if (fchmod(fd, 0640) != 0 || ftruncate(fd, (off_t)sizeof *m) != 0) {
        plog__msg(PLOG_ERROR, "metrics", NULL, "plugin_opt_metrics_file %s: %s", path,
                             strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    map = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fstat(fd, &st) == 0) {
        m_dev = st.st_dev;
        m_ino = st.st_ino;
    }
    close(fd);
    if (map == MAP_FAILED) {
        plog__msg(PLOG_ERROR, "metrics", NULL, "plugin_opt_metrics_file %s: mmap: %s",
                             path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    /* ftruncate gave zeroes: only the header is written. */
    map->version = LK_MSHM_VERSION;
    map->size = (uint32_t)sizeof *m;
    map->started = clock__now();
    map->registries = LK_MSHM_REGISTRIES;
    map->ring = LK_MSHM_RING;
    atomic_thread_fence(memory_order_release);
    map->magic = LK_MSHM_MAGIC;
    if (rename(tmp, path) != 0) {
        plog__msg(PLOG_ERROR, "metrics", NULL, "plugin_opt_metrics_file %s: %s", path,
                             strerror(errno));
        munmap(map, sizeof *m);
        unlink(tmp);
        return -1;
    }
    m = map;
    memset(slot_hash, 0, sizeof slot_hash);
    plog__msg(PLOG_INFO, "metrics", NULL, "metrics in %s (%zu bytes, mode 0640)", path,
                         sizeof *m);
    return 0;
}

void metrics__cleanup(void)
{
    struct stat st;

    /* The broker stops: its file goes (latchkeyd then reports the plugin's
     * metrics down rather than its last figures as if live) — unless
     * another broker has put its own file at the path since. */
    if (m && plg.opt.metrics_file && stat(plg.opt.metrics_file, &st) == 0 && st.st_dev == m_dev
        && st.st_ino == m_ino)
        unlink(plg.opt.metrics_file);
    if (m)
        munmap(m, sizeof *m);
    m = NULL;
}

void metrics__connected(struct plg_conn *c, const lk_device_name *p)
{
    struct lk_mshm_registry *r;

    if (!m)
        return;
    r = metrics__slot(p, 1);
    lk_mshm_add(&r->connects, 1);
    lk_mshm_add(&r->connections, 1);
    c->mslot = (uint32_t)(r - m->reg) + 1;
}

void metrics__gone(struct plg_conn *c)
{
    lk_mshm_u64 *g;

    if (!m || !c->mslot || c->mslot > LK_MSHM_SLOTS)
        return;
    g = &m->reg[c->mslot - 1].connections;
    if (atomic_load_explicit(g, memory_order_relaxed))
        lk_mshm_add(g, (uint64_t)-1);
    c->mslot = 0;
}

void metrics__refused(const char *device, unsigned reason, const char *detail, int64_t now)
{
    lk_device_name p;
    struct lk_mshm_refusal *e;
    uint64_t n;

    if (!m)
        return;
    if (reason >= LK_MSHM_REASONS)
        reason = LK_MSHM_R_PROTOCOL;
    if (!device || lk_device_path_parse(device, strlen(device), &p) != LK_OK) {
        lk_mshm_add(&m->reg[LK_MSHM_OTHER].refusals[reason], 1);
        return;
    }
    /* Only a device that exists may give its registry a slot: anyone can
     * make up paths, and must not use the table up with them. */
    lk_mshm_add(&metrics__slot(&p, reason == LK_MSHM_R_BLOCKED || reason == LK_MSHM_R_MQTT_DISABLED
                                   || reason == LK_MSHM_R_INVALID_TOKEN
                                   || reason == LK_MSHM_R_EXPIRED_TOKEN
                                   || reason == LK_MSHM_R_RATE_LIMITED)->refusals[reason], 1);
    /* The ring: the entry's sequence odd while it is written (seqlock). */
    n = atomic_load_explicit(&m->ring_next, memory_order_relaxed);
    e = &m->refusal[n % LK_MSHM_RING];
    atomic_store_explicit(&e->seq, 2 * n + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    e->time = now;
    e->reason = reason;
    snprintf(e->device, sizeof e->device, "%s", device);
    snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
    atomic_store_explicit(&e->seq, 2 * n + 2, memory_order_release);
    atomic_store_explicit(&m->ring_next, n + 1, memory_order_release);
}

void metrics__message(const lk_device_name *p, enum plg_metric what)
{
    struct lk_mshm_registry *r;

    if (!m)
        return;
    r = metrics__slot(p, 1);
    switch (what) {
    case METRIC_EVENT: lk_mshm_add(&r->events, 1); break;
    case METRIC_STATE: lk_mshm_add(&r->states, 1); break;
    case METRIC_CONFIG: lk_mshm_add(&r->config_sends, 1); break;
    case METRIC_COMMAND: lk_mshm_add(&r->commands, 1); break;
    }
}

void metrics__cache(int hit)
{
    if (m)
        lk_mshm_add(hit ? &m->cache_hits : &m->cache_misses, 1);
}

int64_t metrics__start(void)
{
    struct timespec ts;

    if (!m || clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void metrics__lookup(int64_t start)
{
    int64_t ns = metrics__start() - start;
    unsigned i;

    if (!m || !start || ns < 0)
        return;
    for (i = 0; i < LK_MSHM_LAT_BUCKETS && (double)ns > lk_mshm_lat_bound(i) * 1e9; i++)
        ;
    lk_mshm_add(&m->lat_count[i], 1);
    lk_mshm_add(&m->lat_sum_ns, (uint64_t)ns);
}
