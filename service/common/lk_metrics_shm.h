/*
 * lk_metrics_shm.h — the broker plugin's counters as a shared-memory file
 * (docs/metrics.md, "How the plugin's counters leave the broker").
 *
 * The plugin (plugin_opt_metrics_file) makes the file, maps it MAP_SHARED
 * and counts into it on the broker's thread with relaxed C11 atomics: a
 * load and a store, no lock, no registry write, no thread. latchkeyd
 * (metrics_file) maps it read-only and renders /metrics, the per-minute
 * series and the refusals of a device. One writer (the broker's thread),
 * any number of readers.
 *
 * The reader treats the file as input: the magic, the version and the
 * size are checked before anything else is read (lk_mshm_check), every
 * string is read within its array (lk_mshm_str), every index is reduced
 * modulo its table, and a refusal entry the writer is changing is skipped
 * (its sequence number, a seqlock per entry: odd while written).
 *
 * Internal to the service side (service/common): shared by the plugin and
 * latchkeyd, exported by neither. Header-only, so that neither links the
 * other and the unit test reads the same code.
 */
#ifndef LK_METRICS_SHM_H
#define LK_METRICS_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"

#define LK_MSHM_MAGIC 0x3152544d4b4c0a00ull /* "\0\nLKMTR1" little-endian */
#define LK_MSHM_VERSION 1u
/* Registries counted one by one (hashed by path, probed LK_MSHM_PROBE
 * slots); the rest count together in the last slot, "other". */
#define LK_MSHM_REGISTRIES 256u
#define LK_MSHM_SLOTS (LK_MSHM_REGISTRIES + 1u)
#define LK_MSHM_OTHER LK_MSHM_REGISTRIES
#define LK_MSHM_PROBE 8u
/* The ring of recent refusals (a power of two). */
#define LK_MSHM_RING 4096u
#define LK_MSHM_DETAIL_MAX 160u

/* Why a connect was refused: the label `reason` (lk_mshm_reason_name). */
enum lk_mshm_reason {
    LK_MSHM_R_PROTOCOL = 0,     /* MQTT 3.1 or 5, no clean session, a client id that names nothing */
    LK_MSHM_R_NO_PASSWORD,      /* no token (or backend secret) */
    LK_MSHM_R_NO_SUCH_DEVICE,
    LK_MSHM_R_BLOCKED,
    LK_MSHM_R_MQTT_DISABLED,
    LK_MSHM_R_INVALID_TOKEN,    /* signature, claims, format, audience */
    LK_MSHM_R_EXPIRED_TOKEN,    /* exp passed, iat in the future, lifetime too long */
    LK_MSHM_R_JIT_REFUSED,      /* just-in-time registration refused the token's chain */
    LK_MSHM_R_BACKEND,          /* a backend or latchkeyd's bridge: no such, wrong secret, bad id */
    LK_MSHM_R_RATE_LIMITED,     /* connects too often (closed without CONNACK) */
    LK_MSHM_R_UNAVAILABLE,      /* the server's failure: registry unreadable, memory (no CONNACK) */
    LK_MSHM_REASONS
};

static inline const char *lk_mshm_reason_name(unsigned r)
{
    static const char *const names[LK_MSHM_REASONS] = {
        "protocol", "no_password", "no_such_device", "blocked", "mqtt_disabled", "invalid_token",
        "expired_token", "jit_refused", "backend", "rate_limited", "unavailable"};
    return r < LK_MSHM_REASONS ? names[r] : "unknown";
}

/* Registry lookup on connect, seconds: upper bounds of the histogram's
 * buckets (the last bucket of the counts is +Inf). */
#define LK_MSHM_LAT_BUCKETS 12u
static inline double lk_mshm_lat_bound(unsigned i)
{
    static const double b[LK_MSHM_LAT_BUCKETS] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                  0.005,   0.01,   0.025,   0.05,   0.1,   1.0};
    return i < LK_MSHM_LAT_BUCKETS ? b[i] : 0;
}

typedef _Atomic uint64_t lk_mshm_u64;

struct lk_mshm_registry {
    lk_mshm_u64 used;              /* 1 once path is written (release): then never changes */
    char path[LK_REGISTRY_PATH_MAX + 1]; /* projects/P/locations/L/registries/R; "" in "other" */
    lk_mshm_u64 connections;       /* device connections open now (gauge) */
    lk_mshm_u64 connects;          /* device connects accepted */
    lk_mshm_u64 refusals[LK_MSHM_REASONS];
    lk_mshm_u64 events, states;    /* publishes accepted */
    lk_mshm_u64 config_sends, commands;
};

struct lk_mshm_refusal {
    lk_mshm_u64 seq;               /* 2n+1 while entry n is written, 2n+2 once done; 0 = empty */
    int64_t time;                  /* Unix seconds */
    uint32_t reason;               /* enum lk_mshm_reason */
    uint32_t pad;
    char device[LK_DEVICE_PATH_MAX + 1]; /* the device's path (the client id) */
    char detail[LK_MSHM_DETAIL_MAX];     /* the log line's reason: never a token */
};

struct lk_mshm {
    uint64_t magic;                /* LK_MSHM_MAGIC */
    uint32_t version;              /* LK_MSHM_VERSION */
    uint32_t size;                 /* sizeof (struct lk_mshm) */
    int64_t started;               /* the plugin's start, Unix seconds: counters restart with it */
    uint32_t registries, ring;     /* LK_MSHM_REGISTRIES, LK_MSHM_RING */
    lk_mshm_u64 cache_hits, cache_misses;  /* the verified-token cache */
    lk_mshm_u64 lat_count[LK_MSHM_LAT_BUCKETS + 1];
    lk_mshm_u64 lat_sum_ns;
    lk_mshm_u64 ring_next;         /* refusals written in all: the next goes to ring_next % ring */
    struct lk_mshm_registry reg[LK_MSHM_SLOTS];
    struct lk_mshm_refusal refusal[LK_MSHM_RING];
};

/* # The writer's side: one thread */

static inline void lk_mshm_add(lk_mshm_u64 *x, uint64_t n)
{
    /* One writer: a relaxed load and store, no locked instruction. */
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n, memory_order_relaxed);
}

/* # The reader's side */

/* Whether the len bytes mapped at p are a metrics file of this version: 0,
 * or -1 with why. */
static inline int lk_mshm_check(const void *p, size_t len, char *why, size_t why_size)
{
    const struct lk_mshm *m = p;

    if (p == NULL || len < offsetof(struct lk_mshm, started)) {
        snprintf(why, why_size, "%zu bytes: too short for a metrics file's header", len);
        return -1;
    }
    if (m->magic != LK_MSHM_MAGIC) {
        snprintf(why, why_size, "not a latchkey metrics file (wrong magic)");
        return -1;
    }
    if (m->version != LK_MSHM_VERSION) {
        snprintf(why, why_size, "version %u, this latchkeyd reads version %u (plugin and latchkeyd "
                 "of different releases?)", (unsigned)m->version, LK_MSHM_VERSION);
        return -1;
    }
    if (m->size != sizeof *m || len < sizeof *m) {
        snprintf(why, why_size, "size %u in its header and %zu bytes in the file, expected %zu",
                 (unsigned)m->size, len, sizeof *m);
        return -1;
    }
    if (m->registries != LK_MSHM_REGISTRIES || m->ring != LK_MSHM_RING) {
        snprintf(why, why_size, "tables of %u registries and %u refusals, expected %u and %u",
                 (unsigned)m->registries, (unsigned)m->ring, LK_MSHM_REGISTRIES, LK_MSHM_RING);
        return -1;
    }
    return 0;
}

/* A string field of size cap copied into out (cap bytes), always
 * terminated, only printable ASCII kept (anything else ends it): its
 * length. */
static inline size_t lk_mshm_str(const char *field, size_t cap, char *out)
{
    size_t i;

    for (i = 0; i + 1 < cap; i++) {
        char ch = ((const volatile char *)field)[i];
        if (ch < 0x20 || ch > 0x7e)
            break;
        out[i] = ch;
    }
    out[i] = '\0';
    return i;
}

/* Refusal number n (0-based, n < ring_next) copied into out: 0, or -1 when
 * it was overwritten, is being written or is not there. */
static inline int lk_mshm_refusal_read(const struct lk_mshm *m, uint64_t n, struct lk_mshm_refusal *out)
{
    const struct lk_mshm_refusal *e = &m->refusal[n % LK_MSHM_RING];
    uint64_t want = 2 * n + 2, s1, s2;

    s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
    if (s1 != want)
        return -1;
    out->time = e->time;
    out->reason = e->reason;
    lk_mshm_str(e->device, sizeof e->device, out->device);
    lk_mshm_str(e->detail, sizeof e->detail, out->detail);
    atomic_thread_fence(memory_order_acquire);
    s2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if (s2 != want)
        return -1;
    atomic_store_explicit(&out->seq, s1, memory_order_relaxed);
    return 0;
}

#endif /* LK_METRICS_SHM_H */
