/*
 * latchkey-device simulate: what the fleet (simulate.c) and its setup of
 * ids and keys (sim_keys.c) share.
 */
#ifndef LK_TOOL_SIM_H
#define LK_TOOL_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_softstore.h"

#define SIM_DEVICES_MAX 99999       /* five digits */
#define SIM_PREFIX_MAX 200          /* + 5 digits stays under 255 */
#define SIM_PAYLOAD_MAX (256 * 1024)
#define SIM_PUBLISH_BURST 16        /* events one device catches up at once */
#define SIM_DRAIN_MS 5000           /* lk_dev_config.drain_timeout_ms default */
#define SIM_STOP_EXTRA_MS 5000      /* beyond the drain timeout, for DISCONNECT */
#define SIM_PROGRESS_MS 10000
#define SIM_REPORT_MAX 10           /* failures printed one by one */
#define SIM_EVENTS 256              /* epoll_wait batch */

/* One simulated device. */
struct sim_dev {
    struct sim *sim;
    lk_dev *dev;
    const char *id;          /* also the key name */
    int heap_pos;            /* -1 when not in the heap */
    int reg_fd;              /* the fd registered in epoll for it, -1 if none */
    uint32_t reg_events;
    uint64_t attempts_seen;  /* a new attempt means a new socket */
    int64_t key_ms;          /* heap key: when to step it again */
    int64_t next_pub_us;     /* next event, in microseconds of lk_dev_now_ms */
    uint64_t seq;            /* events queued so far */
    unsigned first_attempt : 1, connected_once : 1, publishing : 1, done : 1;
    unsigned reconnecting : 1;   /* a retry after a failure, counted in sim.retrying */
    unsigned waiting : 1;        /* its retry is due, queued for a --parallel slot */
};

struct sim {
    /* options */
    unsigned n;
    const char *store_path, *prefix, *host, *ca, *project, *region, *registry, *create_keys;
    unsigned port, parallel, token_lifetime;
    double rate;
    size_t payload_bytes;
    long long duration_s;        /* 0 = until all have connected once */
    int json;

    /* state */
    char *ids;                   /* n ids, id_size bytes each */
    size_t id_size;
    struct sim_dev *devs;
    int *heap;                   /* device indices, by key_ms */
    int *waitq;                  /* devices whose retry waits for a slot (ring of n) */
    unsigned waitq_head, waitq_len;
    unsigned heap_len;
    int *fd_owner;               /* fd -> device index registered for it, -1 */
    size_t fd_owner_len;
    int ep;
    lk_softstore *store;
    lk_se se;
    lk_dev_tls *tls;
    uint8_t *payload;
    int64_t period_us;           /* between two events of one device; 0 = none */
    int stopping;

    /* counters */
    unsigned started, inflight, connected, failed, done;
    unsigned retrying;           /* retries in progress (within --parallel with inflight) */
    unsigned done_unconnected;   /* ended without ever connecting */
    uint64_t not_queued;         /* publish refused (queue full) */
    int64_t t0_ms, all_connected_ms;
    unsigned reported_failures, reported_tls, reported_refusal;
    uint64_t epoll_errors;
};

/* The store's key names and algorithms, sorted by name. Looking a device up
 * here costs no key decoding (lk_se_public_key decodes the private key:
 * about 0.7 ms a key, seconds for a fleet). The names point into the
 * store: valid until a key is added. */
struct key_entry {
    const char *name;
    lk_alg alg;
};

/* The n device ids (PREFIX + five digits) into s->ids. Returns an exit code. */
int make_ids(struct sim *s);
/* Device i's id (and key name). */
const char *dev_id(const struct sim *s, size_t i);
/* Open --store with lk_softstore_open's flags. Returns an exit code. */
int open_store(struct sim *s, unsigned flags);
/* The store's keys sorted by name (malloc'ed; *count of them), NULL when
 * out of memory; key_lookup finds one (LK_ALG_NONE when absent). */
struct key_entry *key_index(const lk_softstore *store, size_t *count);
lk_alg key_lookup(const struct key_entry *e, size_t count, const char *name);
/* --create-keys: a key for every device that has none, and the import file
 * of their public keys. Returns an exit code. */
int create_keys(struct sim *s);

#endif
