/*
 * latchkey-device simulate: a fleet of devices in one process, for load
 * tests (docs/device.md, "latchkey-device simulate").
 *
 * One thread: every client's socket is in one epoll set, and every client's
 * next deadline (lk_dev_next_ms, or its next event to publish) is in one
 * min-heap, so a wake-up touches only the clients that have work. Device i
 * (1..N) is PREFIX followed by i in five digits, with the key of the same
 * name in a software key store.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "device_tool.h"
#include "sim.h"
#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_softstore.h"

static const char sim_usage[] =
    "usage: latchkey-device simulate --devices N --store FILE [--prefix sim-] --create-keys IMPORT.jsonl\n"
    "       latchkey-device simulate --devices N --store FILE [--prefix sim-]\n"
    "                                --host H [--port 8883] --ca FILE\n"
    "                                --project P --region L --registry R\n"
    "                                [--rate EVENTS_PER_S] [--payload-bytes B] [--duration S]\n"
    "                                [--parallel K] [--token-lifetime S] [--format text|json]\n"
    "\n"
    "A fleet of N simulated devices in one process, for load tests of a broker with\n"
    "latchkey's plugin (or IoT Core's MQTT bridge). Device i (1..N) is PREFIX followed\n"
    "by i in five digits (sim-00001, sim-00002, ...) and signs its tokens with the key\n"
    "of the same name in the software key store FILE (development keys only).\n"
    "\n"
    "Step 1, once: make the keys and the registry's import file, then import it:\n"
    "  latchkey-device simulate --devices 1000 --store sim.lks --create-keys sim.jsonl\n"
    "  latchkey --db registry.db devices import sim.jsonl --registry R --project P --region L\n"
    "--create-keys makes the keys that are missing (one write of the store) and writes\n"
    "FILE (- for standard output) in the `latchkey devices import` format, then exits.\n"
    "\n"
    "Step 2: run the fleet:\n"
    "  latchkey-device simulate --devices 1000 --store sim.lks --host broker.example --ca ca.pem \\\n"
    "      --project P --region L --registry R --rate 0.1 --duration 300\n"
    "Every device connects (TLS, a fresh token), at most K connection attempts in\n"
    "progress at once while the fleet ramps up or retries; once connected it publishes events and\n"
    "refreshes its token before it expires, as the agent does.\n"
    "\n"
    "  --devices N          fleet size, 1..99999\n"
    "  --store FILE         software key store holding the devices' keys\n"
    "  --prefix P           device id prefix (default sim-); ids follow IoT Core's rules\n"
    "  --host H, --port N   the broker (port default 8883); H must match its certificate\n"
    "  --ca FILE            PEM roots that the broker's certificate must chain to\n"
    "  --project P --region L --registry R   where the devices are registered (--location = --region)\n"
    "  --rate R             events per second per device, e.g. 0.05 = one every 20 s (default 0)\n"
    "  --payload-bytes B    bytes per event, 0..262144 (default 64)\n"
    "  --duration S         run S seconds, then stop every device (flushing its queue);\n"
    "                       default: stop as soon as every device has connected once\n"
    "  --parallel K         connection attempts in progress at once (default 64): the ramp-up, and\n"
    "                       retries after failures (a fleet that lost its broker), which wait for a slot\n"
    "  --token-lifetime S   token lifetime, 10..86400 s (default 3600; refreshed lifetime/10 before exp)\n"
    "  --format text|json   the summary on standard output (default text)\n"
    "\n"
    "Progress and failures go to standard error. The summary gives the devices that\n"
    "connected, the time until all had connected (connect_s), connection attempts,\n"
    "refusals, TLS failures, disconnects, token refreshes, tokens signed, events\n"
    "published, delivered (acknowledged) and undelivered, configs and commands\n"
    "received, devices that gave up\n"
    "(failed), the peak memory and the elapsed time. SIGINT/SIGTERM stop the fleet\n"
    "early, with a summary.\n"
    "\n"
    "The simulator raises its open-file limit to the hard limit (it needs about\n"
    "3N+64 descriptors: each connection's libmosquitto object holds a socket pair\n"
    "besides its socket); the broker needs N+64 (`ulimit -n`, LimitNOFILE=).\n"
    "Exit status: 0 when every device connected and every event was delivered,\n"
    "35 otherwise; 2 for a bad command line; 3 for a missing store, key or --ca file,\n"
    "7 for a corrupt or too open store, 24 for a --ca file that cannot be read or holds\n"
    "no certificate; 1 for anything else (exit codes: docs/cli.md).\n";

static volatile sig_atomic_t sim_signal;

static void sim_on_signal(int sig)
{
    sim_signal = sig;
}

/* --- the deadline heap (indexed binary min-heap on key_ms) --- */

static void heap_swap(struct sim *s, unsigned a, unsigned b)
{
    int t = s->heap[a];
    s->heap[a] = s->heap[b];
    s->heap[b] = t;
    s->devs[s->heap[a]].heap_pos = (int)a;
    s->devs[s->heap[b]].heap_pos = (int)b;
}

static int64_t heap_key(const struct sim *s, unsigned i)
{
    return s->devs[s->heap[i]].key_ms;
}

static void heap_up(struct sim *s, unsigned i)
{
    while (i > 0 && heap_key(s, (i - 1) / 2) > heap_key(s, i)) {
        heap_swap(s, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct sim *s, unsigned i)
{
    for (;;) {
        unsigned l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->heap_len && heap_key(s, l) < heap_key(s, m))
            m = l;
        if (r < s->heap_len && heap_key(s, r) < heap_key(s, m))
            m = r;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

static void heap_set(struct sim *s, struct sim_dev *d, int64_t key)
{
    int64_t old = d->key_ms;
    d->key_ms = key;
    if (d->heap_pos < 0) {
        d->heap_pos = (int)s->heap_len;
        s->heap[s->heap_len++] = (int)(d - s->devs);
        heap_up(s, (unsigned)d->heap_pos);
    } else if (key < old) {
        heap_up(s, (unsigned)d->heap_pos);
    } else if (key > old) {
        heap_down(s, (unsigned)d->heap_pos);
    }
}

static void heap_remove(struct sim *s, struct sim_dev *d)
{
    unsigned i = (unsigned)d->heap_pos;
    if (d->heap_pos < 0)
        return;
    d->heap_pos = -1;
    s->heap_len--;
    if (i == s->heap_len)
        return;
    s->heap[i] = s->heap[s->heap_len];
    s->devs[s->heap[i]].heap_pos = (int)i;
    heap_up(s, i);
    heap_down(s, (unsigned)s->devs[s->heap[i]].heap_pos);
}

/* --- epoll registration --- */

static int fd_owner_grow(struct sim *s, int fd)
{
    size_t n = s->fd_owner_len ? s->fd_owner_len : 1024, i;
    int *p;
    if ((size_t)fd < s->fd_owner_len)
        return 0;
    while (n <= (size_t)fd)
        n *= 2;
    p = realloc(s->fd_owner, n * sizeof *p);
    if (p == NULL)
        return -1;
    for (i = s->fd_owner_len; i < n; i++)
        p[i] = -1;
    s->fd_owner = p;
    s->fd_owner_len = n;
    return 0;
}

/* Forget d's registration; the kernel has dropped it already if the socket
 * was closed, and the fd may now belong to another device's socket. */
static void unregister_fd(struct sim *s, struct sim_dev *d)
{
    int idx = (int)(d - s->devs);
    if (d->reg_fd < 0)
        return;
    if ((size_t)d->reg_fd < s->fd_owner_len && s->fd_owner[d->reg_fd] == idx) {
        (void)epoll_ctl(s->ep, EPOLL_CTL_DEL, d->reg_fd, NULL); /* ENOENT/EBADF: closed */
        s->fd_owner[d->reg_fd] = -1;
    }
    d->reg_fd = -1;
    d->reg_events = 0;
}

/* Make the epoll set watch d's current socket for what it wants. */
static void register_fd(struct sim *s, struct sim_dev *d)
{
    int idx = (int)(d - s->devs);
    int fd = lk_dev_fd(d->dev);
    uint32_t want = fd < 0 ? 0 : EPOLLIN | (lk_dev_want_write(d->dev) ? EPOLLOUT : 0u);
    lk_dev_stats st;
    int fresh;

    lk_dev_get_stats(d->dev, &st);
    /* A new attempt may reuse the number of the socket just closed: the
     * kernel dropped that registration with the old socket. */
    fresh = st.attempts != d->attempts_seen;
    d->attempts_seen = st.attempts;
    if (fd != d->reg_fd || fresh)
        unregister_fd(s, d);
    if (fd < 0)
        return;
    if (fd_owner_grow(s, fd) != 0) {
        s->epoll_errors++;
        return;
    }
    if (d->reg_fd == fd && s->fd_owner[fd] == idx && d->reg_events == want)
        return;
    {
        struct epoll_event ev;
        int op = (d->reg_fd == fd && s->fd_owner[fd] == idx) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        memset(&ev, 0, sizeof ev);
        ev.events = want;
        ev.data.u32 = (uint32_t)idx;
        if (epoll_ctl(s->ep, op, fd, &ev) != 0) {
            int e = errno;
            if (e == ENOENT)
                e = epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
            else if (e == EEXIST)
                e = epoll_ctl(s->ep, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : errno;
            if (e != 0) {
                s->epoll_errors++;
                return;
            }
        }
    }
    s->fd_owner[fd] = idx;
    d->reg_fd = fd;
    d->reg_events = want;
}

/* --- events from the clients --- */

static void end_first_attempt(struct sim *s, struct sim_dev *d)
{
    if (d->first_attempt) {
        d->first_attempt = 0;
        s->inflight--;
    }
}

/* A retry (counted against --parallel) is over: connected, failed again or
 * stopped. */
static void end_retry(struct sim *s, struct sim_dev *d)
{
    if (d->reconnecting) {
        d->reconnecting = 0;
        s->retrying--;
    }
}

static void sim_on_event(void *user, const lk_dev_event *ev)
{
    struct sim_dev *d = user;
    struct sim *s = d->sim;
    int64_t now;

    switch (ev->type) {
    case LK_DEV_EV_CONNECTED:
        end_first_attempt(s, d);
        end_retry(s, d);
        if (!d->connected_once) {
            d->connected_once = 1;
            s->connected++;
            now = lk_dev_now_ms();
            if (s->connected == s->n) {
                s->all_connected_ms = now;
                fprintf(stderr, "%s: simulate: all %u devices connected in %.2f s\n", tool_name,
                        s->n, (double)(now - s->t0_ms) / 1000.0);
            }
            if (s->period_us > 0 && !s->stopping) {
                /* spread the devices' events over the period */
                d->publishing = 1;
                d->next_pub_us = now * 1000 + (int64_t)(drand48() * (double)s->period_us);
            }
        }
        break;
    case LK_DEV_EV_BACKOFF:
        end_first_attempt(s, d);
        end_retry(s, d);
        break;
    case LK_DEV_EV_REFUSED:
        if (s->reported_refusal++ == 0)
            fprintf(stderr, "%s: simulate: %s: refused (CONNACK %d): %s\n", tool_name, d->id,
                    ev->code, ev->detail);
        break;
    case LK_DEV_EV_TLS_FAILED:
        if (s->reported_tls++ == 0)
            fprintf(stderr, "%s: simulate: %s: server not authenticated: %s\n", tool_name,
                    d->id, ev->detail);
        break;
    case LK_DEV_EV_FAILED:
        end_first_attempt(s, d);
        end_retry(s, d);
        if (s->reported_failures++ < SIM_REPORT_MAX)
            fprintf(stderr, "%s: simulate: %s: gave up: %s (%s)\n", tool_name, d->id,
                    ev->detail, lk_errname(ev->err));
        break;
    case LK_DEV_EV_STOPPED:
        end_first_attempt(s, d);
        end_retry(s, d);
        break;
    default:
        break;
    }
}

/* --- stepping one device --- */

static void make_payload(struct sim *s, struct sim_dev *d)
{
    char head[64];
    int n;
    if (s->payload_bytes == 0)
        return;
    /* "DEVICE SEQ " then 'x' up to the size: a backend can check that none
     * is missing (SEQ counts the events queued, from 1) */
    n = snprintf(head, sizeof head, "%s %llu ", d->id, (unsigned long long)d->seq + 1);
    if (n < 0)
        n = 0;
    memcpy(s->payload, head, (size_t)n < s->payload_bytes ? (size_t)n : s->payload_bytes);
}

static void publish_due(struct sim *s, struct sim_dev *d, int64_t now_ms)
{
    int64_t now_us = now_ms * 1000;
    int burst = 0;
    while (d->next_pub_us <= now_us && burst < SIM_PUBLISH_BURST) {
        lk_err err;
        make_payload(s, d);
        err = lk_dev_publish_event(d->dev, NULL, s->payload, s->payload_bytes, NULL);
        if (err == LK_OK) {
            d->seq++;
        } else if (err == LK_ERR_QUEUE_FULL) {
            s->not_queued++;
        } else {
            d->publishing = 0; /* stopping or failed */
            return;
        }
        d->next_pub_us += s->period_us;
        burst++;
    }
    if (d->next_pub_us <= now_us) /* too far behind: do not burst forever */
        d->next_pub_us = now_us + s->period_us;
}

/* Count a device that ended (once). */
static void mark_done(struct sim *s, struct sim_dev *d, int failed)
{
    if (d->done)
        return;
    d->done = 1;
    s->done++;
    end_first_attempt(s, d);
    end_retry(s, d);
    if (!d->connected_once)
        s->done_unconnected++;
    if (failed)
        s->failed++;
}

/* After lk_dev_step (or start, or stop): mark a device that ended, refresh
 * its epoll registration and its place in the heap. */
static void sync_dev(struct sim *s, struct sim_dev *d, int64_t now)
{
    lk_dev_state st = lk_dev_get_state(d->dev);
    int64_t key;

    if (st == LK_DEV_STOPPED || st == LK_DEV_FAILED) {
        unregister_fd(s, d);
        heap_remove(s, d);
        mark_done(s, d, st == LK_DEV_FAILED);
        return;
    }
    register_fd(s, d);
    key = lk_dev_next_ms(d->dev);
    if (d->publishing && !s->stopping) {
        int64_t pub = (d->next_pub_us + 999) / 1000;
        if (pub < key)
            key = pub;
    }
    if (key < now)
        key = now;
    heap_set(s, d, key);
}

static void service(struct sim *s, struct sim_dev *d, int readable, int writable)
{
    int64_t now = lk_dev_now_ms();
    int was_backoff;
    if (d->done)
        return;
    /* (a first attempt, counted in inflight, starts from the backoff state) */
    was_backoff = !d->first_attempt && lk_dev_get_state(d->dev) == LK_DEV_BACKOFF;
    /* --parallel bounds retries too (a fleet that lost its broker comes
     * back at once): a due retry beyond it waits for a slot, in order. */
    if (was_backoff && !s->stopping && lk_dev_next_ms(d->dev) <= now &&
        s->inflight + s->retrying >= s->parallel) {
        heap_remove(s, d);
        if (!d->waiting) {
            d->waiting = 1;
            s->waitq[(s->waitq_head + s->waitq_len++) % s->n] = (int)(d - s->devs);
        }
        return;
    }
    if (d->publishing && !s->stopping)
        publish_due(s, d, now);
    (void)lk_dev_step(d->dev, readable, writable); /* a failure arrives as LK_DEV_EV_FAILED */
    if (was_backoff && !d->reconnecting && lk_dev_get_state(d->dev) == LK_DEV_CONNECTING) {
        d->reconnecting = 1;
        s->retrying++;
    }
    sync_dev(s, d, lk_dev_now_ms());
}

/* Retries that waited for a slot, oldest first, while slots are free (all
 * of them once stopping: a stopped device only tidies up). */
static void resume_waiting(struct sim *s)
{
    while (s->waitq_len > 0 && (s->stopping || s->inflight + s->retrying < s->parallel)) {
        struct sim_dev *d = &s->devs[s->waitq[s->waitq_head]];
        s->waitq_head = (s->waitq_head + 1) % s->n;
        s->waitq_len--;
        d->waiting = 0;
        service(s, d, 0, 0);
    }
}

/* --- setup --- */

static void raise_nofile(const struct sim *s)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Three descriptors a connected device: its socket and the socket pair
     * libmosquitto opens for every client object (its wake-up channel). */
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 3 * (rlim_t)s->n + 64)
        fprintf(stderr,
                "%s: simulate: the open-file limit is %llu, below the %u this fleet needs (3 x devices + 64): "
                "the devices beyond it cannot connect; raise the hard limit (ulimit -Hn, LimitNOFILE=)\n",
                tool_name, (unsigned long long)rl.rlim_cur, 3 * s->n + 64);
}

/* Check that every device has its key, then create every client (no
 * traffic yet). */
static int make_clients(struct sim *s)
{
    char detail[256];
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t i, nkeys = 0, pub_len = 0;
    struct key_entry *keys;
    int64_t t0;
    lk_alg *algs = calloc(s->n, sizeof *algs);
    lk_err err;
    int rc = EXIT_OK;

    if (algs == NULL) {
        tool_error("simulate", LK_ERR_NOMEM, "%u devices: out of memory", s->n);
        return EXIT_FAIL;
    }
    keys = key_index(s->store, &nkeys);
    if (keys == NULL) {
        free(algs);
        tool_error("simulate", LK_ERR_NOMEM, "%u devices: out of memory", s->n);
        return EXIT_FAIL;
    }
    for (i = 0; i < s->n && rc == EXIT_OK; i++) {
        const char *id = dev_id(s, i);
        algs[i] = key_lookup(keys, nkeys, id);
        if (algs[i] == LK_ALG_NONE) {
            tool_error("simulate", LK_ERR_KEY_NOT_FOUND,
                       "no key '%s' in %s (make the keys with --create-keys FILE)", id,
                       tool_shown(s->store_path));
            rc = tool_exit_code(LK_ERR_KEY_NOT_FOUND);
        }
    }
    free(keys);
    /* Load (decode) every key now, so that the fleet's connect time is the
     * network's and the broker's, not the store's first use of each key. */
    t0 = lk_dev_now_ms();
    for (i = 0; i < s->n && rc == EXIT_OK; i++) {
        err = lk_se_public_key(&s->se, dev_id(s, i), &algs[i], pub, sizeof pub, &pub_len);
        if (err != LK_OK) {
            tool_error("simulate", err, "key %s in %s: %s", dev_id(s, i), tool_shown(s->store_path),
                       lk_strerror(err));
            rc = tool_exit_code(err);
        }
    }
    if (rc == EXIT_OK)
        fprintf(stderr, "%s: simulate: %u keys loaded from %s in %.2f s\n", tool_name, s->n,
                tool_shown(s->store_path), (double)(lk_dev_now_ms() - t0) / 1000.0);
    if (rc == EXIT_OK) {
        detail[0] = '\0';
        err = lk_dev_tls_new(s->ca, s->host, &s->tls, detail, sizeof detail);
        if (err != LK_OK) {
            tool_error("simulate", err, "--ca %s: %s", tool_shown(s->ca), detail[0] ? detail : lk_strerror(err));
            rc = tool_exit_code(err);
        }
    }
    for (i = 0; i < s->n && rc == EXIT_OK; i++) {
        struct sim_dev *d = &s->devs[i];
        lk_dev_config cfg;

        d->sim = s;
        d->id = dev_id(s, i);
        d->heap_pos = -1;
        d->reg_fd = -1;
        memset(&cfg, 0, sizeof cfg);
        cfg.host = s->host;
        cfg.port = s->port;
        cfg.ca_file = s->ca;
        cfg.tls = s->tls;
        cfg.project = s->project;
        cfg.location = s->region;
        cfg.registry = s->registry;
        cfg.device = d->id;
        cfg.se = &s->se;
        cfg.key = d->id;
        cfg.alg = algs[i];
        cfg.token_lifetime_s = s->token_lifetime;
        cfg.user = d;
        cfg.on_event = sim_on_event;
        detail[0] = '\0';
        err = lk_dev_new(&cfg, &d->dev, detail, sizeof detail);
        if (err == LK_ERR_ARG)
            rc = tool_usage_error("simulate: %s", detail[0] ? detail : lk_strerror(err));
        else if (err != LK_OK) {
            tool_error("simulate", err, "%s: %s", d->id, detail[0] ? detail : lk_strerror(err));
            rc = tool_exit_code(err);
        }
    }
    free(algs);
    return rc;
}

static void start_more(struct sim *s)
{
    /* First attempts and retries share the --parallel slots. */
    while (!s->stopping && s->started < s->n && s->inflight + s->retrying < s->parallel) {
        struct sim_dev *d = &s->devs[s->started++];
        d->first_attempt = 1;
        s->inflight++;
        if (lk_dev_start(d->dev) != LK_OK) {
            mark_done(s, d, 1);
            continue;
        }
        heap_set(s, d, lk_dev_now_ms()); /* the first attempt happens in the next step */
    }
}

static void stop_all(struct sim *s)
{
    unsigned i;
    int64_t now = lk_dev_now_ms();
    s->stopping = 1;
    for (i = 0; i < s->started; i++) {
        struct sim_dev *d = &s->devs[i];
        if (d->done)
            continue;
        d->publishing = 0;
        lk_dev_stop(d->dev);
        sync_dev(s, d, now);
    }
}

/* Run timers that are due and the sockets that are ready until the fleet
 * has stopped (or the stop ran out of time). */
static int run_fleet(struct sim *s)
{
    struct epoll_event evs[SIM_EVENTS];
    int64_t end_ms = 0, stop_deadline = 0, next_progress;

    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->ep < 0) {
        tool_error("simulate", LK_ERR_IO, "epoll_create1: %s", strerror(errno));
        return EXIT_FAIL;
    }
    fprintf(stderr, "%s: simulate: %u devices (%s..%s) to %s:%u, %u connection attempts at once\n",
            tool_name, s->n, dev_id(s, 0), dev_id(s, s->n - 1), tool_shown(s->host), s->port, s->parallel);
    s->t0_ms = lk_dev_now_ms();
    next_progress = s->t0_ms + SIM_PROGRESS_MS;
    if (s->duration_s > 0)
        end_ms = s->t0_ms + s->duration_s * 1000;
    start_more(s);

    for (;;) {
        int64_t now = lk_dev_now_ms(), wait_ms;
        unsigned budget = s->heap_len;
        int n, i;

        /* timers that are due; each device at most about once per round */
        while (s->heap_len > 0 && budget-- > 0 && heap_key(s, 0) <= now)
            service(s, &s->devs[s->heap[0]], 0, 0);
        resume_waiting(s);
        start_more(s);

        now = lk_dev_now_ms();
        if (!s->stopping) {
            /* default: until every device has connected once (or given up) */
            int finished = end_ms ? now >= end_ms : s->connected + s->done_unconnected >= s->n;
            if (sim_signal) {
                fprintf(stderr, "%s: simulate: %s: stopping the fleet\n", tool_name,
                        strsignal(sim_signal));
                sim_signal = 0;
                finished = 1;
            }
            if (finished || s->done == s->n) {
                stop_all(s);
                stop_deadline = lk_dev_now_ms() + SIM_DRAIN_MS + SIM_STOP_EXTRA_MS;
            }
        } else if (sim_signal) {
            fprintf(stderr, "%s: simulate: %s again: not waiting for the queues\n", tool_name,
                    strsignal(sim_signal));
            break;
        }
        if (s->stopping && (s->done >= s->started || lk_dev_now_ms() >= stop_deadline))
            break;

        if (now >= next_progress) {
            fprintf(stderr, "%s: simulate: %.0f s: %u/%u connected, %u connecting for the first time, "
                            "%u failed\n",
                    tool_name, (double)(now - s->t0_ms) / 1000.0, s->connected, s->n, s->inflight,
                    s->failed);
            next_progress += SIM_PROGRESS_MS;
        }

        wait_ms = 1000;
        if (s->heap_len > 0) {
            int64_t k = heap_key(s, 0) - now;
            if (k < wait_ms)
                wait_ms = k < 0 ? 0 : k;
        }
        if (end_ms && !s->stopping && end_ms - now < wait_ms)
            wait_ms = end_ms - now < 0 ? 0 : end_ms - now;
        if (s->stopping && stop_deadline - now < wait_ms)
            wait_ms = stop_deadline - now < 0 ? 0 : stop_deadline - now;

        n = epoll_wait(s->ep, evs, SIM_EVENTS, (int)wait_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            tool_error("simulate", LK_ERR_IO, "epoll_wait: %s", strerror(errno));
            break;
        }
        for (i = 0; i < n; i++) {
            uint32_t e = evs[i].events;
            unsigned idx = evs[i].data.u32;
            if (idx < s->n)
                service(s, &s->devs[idx], (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0,
                        (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0);
        }
    }
    return EXIT_OK;
}

/* --- the summary --- */

static int summarize(struct sim *s)
{
    lk_dev_stats t, st;
    uint64_t undelivered = 0;
    unsigned i;
    struct rusage ru;
    double elapsed = (double)(lk_dev_now_ms() - s->t0_ms) / 1000.0;
    double connect_s = s->connected == s->n ? (double)(s->all_connected_ms - s->t0_ms) / 1000.0 : -1;
    long peak_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
    int ok;

    memset(&t, 0, sizeof t);
    for (i = 0; i < s->n; i++) {
        if (s->devs[i].dev == NULL)
            continue;
        lk_dev_get_stats(s->devs[i].dev, &st);
        t.attempts += st.attempts;
        t.refusals += st.refusals;
        t.tls_failures += st.tls_failures;
        t.disconnects += st.disconnects;
        t.refreshes += st.refreshes;
        t.tokens += st.tokens;
        t.published += st.published;
        t.delivered += st.delivered;
        t.configs += st.configs;
        t.commands += st.commands;
        undelivered += st.queued;
    }
    if (s->not_queued > 0)
        fprintf(stderr, "%s: simulate: %llu events were not queued (a device's queue was full)\n",
                tool_name, (unsigned long long)s->not_queued);
    if (s->reported_failures > SIM_REPORT_MAX)
        fprintf(stderr, "%s: simulate: %u more devices gave up\n", tool_name,
                s->reported_failures - SIM_REPORT_MAX);
    if (s->done < s->started)
        fprintf(stderr, "%s: simulate: %u devices had not stopped %u s after they were asked to\n",
                tool_name, s->started - s->done, (SIM_DRAIN_MS + SIM_STOP_EXTRA_MS) / 1000);
    if (s->epoll_errors > 0)
        fprintf(stderr, "%s: simulate: %llu sockets could not be watched (epoll_ctl failed)\n",
                tool_name, (unsigned long long)s->epoll_errors);

    if (s->json) {
        printf("{\"devices\": %u, \"connected\": %u, \"connect_s\": ", s->n, s->connected);
        if (connect_s >= 0)
            printf("%.3f", connect_s);
        else
            printf("null");
        printf(", \"attempts\": %llu, \"refusals\": %llu, \"tls_failures\": %llu, \"disconnects\": %llu, "
               "\"refreshes\": %llu, \"tokens\": %llu, \"published\": %llu, \"delivered\": %llu, "
               "\"undelivered\": %llu, \"configs\": %llu, \"commands\": %llu, \"failed\": %u, "
               "\"peak_rss_kb\": %ld, \"elapsed_s\": %.3f}\n",
               (unsigned long long)t.attempts, (unsigned long long)t.refusals,
               (unsigned long long)t.tls_failures, (unsigned long long)t.disconnects,
               (unsigned long long)t.refreshes, (unsigned long long)t.tokens,
               (unsigned long long)t.published, (unsigned long long)t.delivered,
               (unsigned long long)undelivered, (unsigned long long)t.configs,
               (unsigned long long)t.commands, s->failed, peak_kb, elapsed);
    } else {
        printf("devices       %u\n", s->n);
        if (connect_s >= 0)
            printf("connected     %u (all within %.2f s)\n", s->connected, connect_s);
        else
            printf("connected     %u (%u never connected)\n", s->connected, s->n - s->connected);
        printf("attempts      %llu\n", (unsigned long long)t.attempts);
        printf("refusals      %llu\n", (unsigned long long)t.refusals);
        printf("tls failures  %llu\n", (unsigned long long)t.tls_failures);
        printf("disconnects   %llu\n", (unsigned long long)t.disconnects);
        printf("refreshes     %llu\n", (unsigned long long)t.refreshes);
        printf("tokens        %llu\n", (unsigned long long)t.tokens);
        printf("published     %llu\n", (unsigned long long)t.published);
        printf("delivered     %llu\n", (unsigned long long)t.delivered);
        printf("undelivered   %llu\n", (unsigned long long)undelivered);
        printf("configs       %llu\n", (unsigned long long)t.configs);
        printf("commands      %llu\n", (unsigned long long)t.commands);
        printf("failed        %u\n", s->failed);
        printf("peak memory   %ld kB\n", peak_kb);
        printf("elapsed       %.2f s\n", elapsed);
    }
    fflush(stdout);
    ok = s->connected == s->n && s->failed == 0 && undelivered == 0 && s->not_queued == 0 &&
         s->done >= s->started;
    return ok ? EXIT_OK : EXIT_DEV_SIM_INCOMPLETE;
}

/* --- the command --- */

static int parse_opts(struct sim *s, int argc, char **argv)
{
    enum { O_DEVICES = 256, O_STORE, O_PREFIX, O_HOST, O_PORT, O_CA, O_PROJECT, O_REGION, O_REGISTRY,
           O_CREATE, O_RATE, O_DURATION, O_PARALLEL, O_LIFETIME, O_PAYLOAD, O_FORMAT, O_HELP };
    static const struct option opts[] = {
        {"devices", required_argument, 0, O_DEVICES}, {"store", required_argument, 0, O_STORE},
        {"prefix", required_argument, 0, O_PREFIX}, {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT}, {"ca", required_argument, 0, O_CA},
        {"project", required_argument, 0, O_PROJECT}, {"region", required_argument, 0, O_REGION},
        {"location", required_argument, 0, O_REGION}, {"registry", required_argument, 0, O_REGISTRY},
        {"create-keys", required_argument, 0, O_CREATE}, {"rate", required_argument, 0, O_RATE},
        {"duration", required_argument, 0, O_DURATION}, {"parallel", required_argument, 0, O_PARALLEL},
        {"token-lifetime", required_argument, 0, O_LIFETIME},
        {"payload-bytes", required_argument, 0, O_PAYLOAD}, {"format", required_argument, 0, O_FORMAT},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    long long v;
    int c;

    optind = 0; /* glibc: start over, whatever parsed argv before */
    opterr = 0; /* our own message: getopt's would echo a value given with '=' */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_DEVICES:
            if (tool_parse_i64(optarg, 1, SIM_DEVICES_MAX, &v) != 0)
                return tool_usage_error("simulate: --devices takes a number of devices, 1 to %d (ids have "
                                        "five digits; run several simulators with other --prefix for more)",
                                           SIM_DEVICES_MAX);
            s->n = (unsigned)v;
            break;
        case O_STORE: s->store_path = optarg; break;
        case O_PREFIX: s->prefix = optarg; break;
        case O_HOST: s->host = optarg; break;
        case O_PORT:
            if (tool_parse_i64(optarg, 1, 65535, &v) != 0)
                return tool_usage_error("simulate: --port takes a TCP port, 1 to 65535");
            s->port = (unsigned)v;
            break;
        case O_CA: s->ca = optarg; break;
        case O_PROJECT: s->project = optarg; break;
        case O_REGION: s->region = optarg; break;
        case O_REGISTRY: s->registry = optarg; break;
        case O_CREATE: s->create_keys = optarg; break;
        case O_RATE: {
            char *end = NULL;
            errno = 0;
            s->rate = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !(s->rate >= 0 && s->rate <= 1000))
                return tool_usage_error("simulate: --rate takes events per second per device, 0 to 1000 "
                                        "(e.g. 0.05: one every 20 s)");
            break;
        }
        case O_DURATION:
            if (tool_parse_i64(optarg, 1, 366LL * 86400, &v) != 0)
                return tool_usage_error("simulate: --duration takes seconds, 1 to 31622400");
            s->duration_s = v;
            break;
        case O_PARALLEL:
            if (tool_parse_i64(optarg, 1, 100000, &v) != 0)
                return tool_usage_error("simulate: --parallel takes a number of connection attempts, 1 to 100000");
            s->parallel = (unsigned)v;
            break;
        case O_LIFETIME:
            if (tool_parse_i64(optarg, 10, 86400, &v) != 0)
                return tool_usage_error("simulate: --token-lifetime takes seconds, 10 to 86400");
            s->token_lifetime = (unsigned)v;
            break;
        case O_PAYLOAD:
            if (tool_parse_i64(optarg, 0, SIM_PAYLOAD_MAX, &v) != 0)
                return tool_usage_error("simulate: --payload-bytes takes a size, 0 to %d", SIM_PAYLOAD_MAX);
            s->payload_bytes = (size_t)v;
            break;
        case O_FORMAT:
            if (tool_parse_format("simulate", optarg, &s->json) != EXIT_OK)
                return EXIT_USAGE;
            break;
        case O_HELP: fputs(sim_usage, stdout); return -1;
        default: return tool_bad_option(argc, argv, optind);
        }
    }
    if (optind < argc)
        return tool_usage_error("simulate: unexpected argument '%s' (see --help)",
                                tool_shown(argv[optind]));
    if (s->n == 0)
        return tool_usage_error("simulate: --devices N is required (see --help)");
    if (s->store_path == NULL)
        return tool_usage_error("simulate: --store FILE is required: the software key store of the devices' keys");
    if (strlen(s->prefix) > SIM_PREFIX_MAX)
        return tool_usage_error("simulate: --prefix is longer than %d characters", SIM_PREFIX_MAX);
    if (s->create_keys != NULL)
        return EXIT_OK;
    if (s->host == NULL || s->ca == NULL || s->project == NULL || s->region == NULL || s->registry == NULL)
        return tool_usage_error("simulate: --host, --ca, --project, --region and --registry are required "
                                "to run the fleet (or --create-keys FILE to make the keys; see --help)");
    return EXIT_OK;
}

int devtool_simulate(int argc, char **argv)
{
    struct sim s;
    struct sigaction sa;
    int rc;
    unsigned i;

    memset(&s, 0, sizeof s);
    s.ep = -1;
    s.prefix = "sim-";
    s.port = 8883;
    s.parallel = 64;
    s.payload_bytes = 64;
    rc = parse_opts(&s, argc, argv);
    if (rc != EXIT_OK)
        return rc < 0 ? EXIT_OK : rc;
    rc = make_ids(&s);
    if (rc != EXIT_OK) {
        free(s.ids);
        return rc;
    }
    if (s.create_keys != NULL) {
        rc = create_keys(&s);
        lk_softstore_close(s.store);
        free(s.ids);
        return rc;
    }

    raise_nofile(&s);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sim_on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand48((long)lk_dev_now_ms() ^ (long)getpid());

    s.devs = calloc(s.n, sizeof *s.devs);
    s.heap = calloc(s.n, sizeof *s.heap);
    s.waitq = calloc(s.n, sizeof *s.waitq);
    s.payload = malloc(s.payload_bytes ? s.payload_bytes : 1);
    if (s.devs == NULL || s.heap == NULL || s.waitq == NULL || s.payload == NULL) {
        tool_error("simulate", LK_ERR_NOMEM, "%u devices: out of memory", s.n);
        rc = EXIT_FAIL;
        goto exit;
    }
    memset(s.payload, 'x', s.payload_bytes);
    if (s.rate > 0) /* at most 1000: the period is at least 1 ms */
        s.period_us = (int64_t)llround(1e6 / s.rate);

    rc = open_store(&s, 0);
    if (rc != EXIT_OK)
        goto exit;
    rc = make_clients(&s);
    if (rc != EXIT_OK)
        goto exit;
    rc = run_fleet(&s);
    if (rc != EXIT_OK)
        goto exit;
    rc = summarize(&s);

exit:
    if (s.devs != NULL)
        for (i = 0; i < s.n; i++)
            lk_dev_free(s.devs[i].dev);
    lk_dev_tls_free(s.tls);
    lk_softstore_close(s.store);
    if (s.ep >= 0)
        close(s.ep);
    free(s.fd_owner);
    free(s.payload);
    free(s.heap);
    free(s.waitq);
    free(s.devs);
    free(s.ids);
    return rc;
}
