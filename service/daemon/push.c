/*
 * push.c — the push worker (docs/daemon.md, "Push subscriptions"): one
 * thread with its own spool and registry handles and one libcurl multi
 * handle. Every second it reads the registry's subscriptions (a few rows;
 * simpler than following the change feed and as quick for an operator); for
 * each it takes the due deliveries (lk_spool_next, at most
 * push_max_in_flight at once, one per ordering key so that a device's
 * messages go in order), POSTs them, acknowledges the 2xx ones in one
 * lk_spool_ack per turn, and schedules the others again (exponential backoff
 * with jitter) or dead-letters them. The spool is the only state that
 * matters: a kill -9 loses nothing but the POSTs in flight, which are sent
 * again after the restart (at least once).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/buffer.h>

#include "daemon.h"

#define RELOAD_MS 1000
#define EXPIRE_MS 60000
#define IDLE_MS 50               /* how often an idle worker looks for new deliveries */
#define LOG_EVERY_MS 10000       /* at most one failure line per subscription this often */
#define NBUCKETS 11
static const double buckets[NBUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct psub {
    char *name;                  /* projects/P/subscriptions/S */
    lk_reg_subscription s;
    char **dl;                   /* the dead-letter topic's subscriptions */
    size_t ndl;
    int seen, gone;
    unsigned inflight;
    uint64_t *acks;
    size_t nacks;
    char *tok, *tok_aud;         /* the cached OIDC token and its audience */
    int64_t tok_exp;
    int64_t next_expire;
    int64_t log_ms, cfg_log_ms;
    unsigned fails_unlogged;
    char last_err[640];          /* a path and SQLite's reason fit: "disk is full" must not be cut */
    /* Devices whose oldest delivery must wait although the spool has it due:
     * its failure could not be written (lk_spool_retry or lk_spool_dead_letter
     * failed) or its POST could not be made. Without this it would be taken
     * again on the next turn, 50 ms later, without any backoff. */
    struct hold {
        char *key;               /* the ordering key */
        int64_t until;           /* wall-clock ms */
    } *holds;
    size_t nholds;
    int64_t hold_all_until;      /* no memory for a hold: the whole subscription waits */
    int64_t hold_log_ms;
    unsigned holds_unlogged;
    /* the metrics (under mu) */
    uint64_t ok, failed, lat_n, lat_b[NBUCKETS];
    double lat_sum;
};

struct xfer {
    CURL *easy;
    struct psub *sub;
    lk_spool_delivery dl;
    struct curl_slist *hdrs;
    char *body;
    int64_t start_ms;
    char err[CURL_ERROR_SIZE];
    struct xfer *next, *prev;    /* the worker's list of POSTs in flight */
};

struct lkd_push {
    struct lkd *d;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    atomic_int stopping, busy;
    int64_t drain_deadline;
    CURLM *multi;
    lk_spool *sp;
    lk_registry *reg;
    struct psub **subs;
    size_t nsubs;
    struct xfer *xfers;
    int64_t oidc_log_ms, reg_log_ms;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void psub_free(struct psub *ps)
{
    if (ps == NULL)
        return;
    free(ps->name);
    lk_reg_subscription_free(&ps->s);
    for (size_t i = 0; i < ps->ndl; i++)
        free(ps->dl[i]);
    free(ps->dl);
    free(ps->acks);
    for (size_t i = 0; i < ps->nholds; i++)
        free(ps->holds[i].key);
    free(ps->holds);
    wipe_free(ps->tok);
    free(ps->tok_aud);
    free(ps);
}

/* ---- the subscriptions, from the registry ---- */

struct loaded {
    lk_reg_subscription *v;
    size_t n, cap;
    int oom;
};

static int load_cb(void *arg, const lk_reg_subscription *s)
{
    struct loaded *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        lk_reg_subscription *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL) {
            l->oom = 1;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    lk_reg_subscription *c = &l->v[l->n++];
    *c = *s;
    c->project = dup_or_null(s->project);
    c->name = dup_or_null(s->name);
    c->topic = dup_or_null(s->topic);
    c->push_endpoint = dup_or_null(s->push_endpoint);
    c->auth_header_name = dup_or_null(s->auth_header_name);
    c->auth_header_value = dup_or_null(s->auth_header_value);
    c->oidc_email = dup_or_null(s->oidc_email);
    c->oidc_audience = dup_or_null(s->oidc_audience);
    c->dead_letter_topic = dup_or_null(s->dead_letter_topic);
    if (!c->project || !c->name || !c->topic || !c->push_endpoint)
        l->oom = 1;
    return l->oom;
}

static struct psub *find(struct lkd_push *p, const char *name)
{
    for (size_t i = 0; i < p->nsubs; i++)
        if (!p->subs[i]->gone && strcmp(p->subs[i]->name, name) == 0)
            return p->subs[i];
    return NULL;
}

static int forget_cb(void *arg, const char *sub, const lk_spool_stats *st)
{
    (void)st;
    struct lkd_push *p = arg;
    if (find(p, sub) == NULL) {
        char why[256] = "";
        if (lk_spool_forget(p->sp, sub, why, sizeof why) == LK_OK)
            lkd_log("push: %s is no longer a subscription: its queue is gone", sub);
        else
            lkd_log("push: forgetting %s: %s", sub, why);
    }
    return 0;
}

static void reload(struct lkd_push *p)
{
    struct loaded l = {0};
    char why[512] = "";
    lk_err err = lk_registry_subscription_list(p->reg, NULL, load_cb, &l, why, sizeof why);
    if (err != LK_OK || l.oom) {
        for (size_t i = 0; i < l.n; i++)
            lk_reg_subscription_free(&l.v[i]);
        free(l.v);
        int64_t now = lkd_now_ms();
        if (now - p->reg_log_ms >= LOG_EVERY_MS) {
            p->reg_log_ms = now;
            lkd_log("push: reading the subscriptions: %s", l.oom ? "out of memory" : why);
        }
        return; /* keep what was known: never forget queues on a failed read */
    }
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nsubs; i++)
        p->subs[i]->seen = 0;
    for (size_t i = 0; i < l.n; i++) {
        char *name = NULL;
        if (asprintf(&name, "projects/%s/subscriptions/%s", l.v[i].project, l.v[i].name) < 0) {
            lk_reg_subscription_free(&l.v[i]);
            continue;
        }
        struct psub *ps = find(p, name);
        if (ps == NULL) {
            struct psub **v = realloc(p->subs, (p->nsubs + 1) * sizeof *v);
            ps = calloc(1, sizeof *ps);
            if (v == NULL || ps == NULL) {
                if (v)
                    p->subs = v;
                free(ps);
                free(name);
                lk_reg_subscription_free(&l.v[i]);
                continue;
            }
            p->subs = v;
            p->subs[p->nsubs++] = ps;
            ps->name = name;
        } else {
            free(name);
            lk_reg_subscription_free(&ps->s);
        }
        ps->s = l.v[i];
        ps->seen = 1;
    }
    free(l.v);
    /* Gone from the registry: no new deliveries; freed once nothing is in flight. */
    for (size_t i = 0; i < p->nsubs; i++)
        if (!p->subs[i]->seen)
            p->subs[i]->gone = 1;
    size_t k = 0;
    for (size_t i = 0; i < p->nsubs; i++) {
        struct psub *ps = p->subs[i];
        if (ps->gone && ps->inflight == 0)
            psub_free(ps);
        else
            p->subs[k++] = ps;
    }
    p->nsubs = k;
    /* Each subscription's dead-letter subscriptions: those of its dead-letter topic in its project. */
    for (size_t i = 0; i < p->nsubs; i++) {
        struct psub *ps = p->subs[i];
        for (size_t j = 0; j < ps->ndl; j++)
            free(ps->dl[j]);
        free(ps->dl);
        ps->dl = NULL;
        ps->ndl = 0;
        if (ps->gone || ps->s.dead_letter_topic == NULL)
            continue;
        ps->dl = calloc(p->nsubs, sizeof *ps->dl);
        for (size_t j = 0; ps->dl != NULL && j < p->nsubs; j++) {
            struct psub *o = p->subs[j];
            if (!o->gone && strcmp(o->s.project, ps->s.project) == 0 &&
                strcmp(o->s.topic, ps->s.dead_letter_topic) == 0 && (ps->dl[ps->ndl] = strdup(o->name)) != NULL)
                ps->ndl++;
        }
    }
    pthread_mutex_unlock(&p->mu);
    /* Queues of subscriptions the registry no longer has (deleted while we
     * were down too, or enqueued by a broker that had not yet seen the delete). */
    if (lk_spool_stats_list(p->sp, forget_cb, p, why, sizeof why) != LK_OK) {
        int64_t now = lkd_now_ms();
        if (now - p->reg_log_ms >= LOG_EVERY_MS) {
            p->reg_log_ms = now;
            lkd_log("push: reading the spool: %s", why);
        }
    }
}

/* ---- one POST ---- */

static void note_failure(struct psub *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_failure(struct psub *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->last_err, sizeof ps->last_err, fmt, ap);
    va_end(ap);
    ps->fails_unlogged++;
    int64_t now = lkd_now_ms();
    if (now - ps->log_ms >= LOG_EVERY_MS) {
        lkd_log("push: %s: %u failed attempt(s) since the last line; the last: %s", ps->name, ps->fails_unlogged,
                ps->last_err);
        ps->log_ms = now;
        ps->fails_unlogged = 0;
    }
}

/* A subscription that cannot be pushed as configured: one line a minute. */
static void note_config(struct psub *ps, const char *why)
{
    int64_t now = lkd_now_ms();
    if (now - ps->cfg_log_ms >= 60000) {
        ps->cfg_log_ms = now;
        lkd_log("push: %s: not pushed: %s", ps->name, why);
    }
}

/* Holds dl's device until the backoff its next attempt would have had (see
 * struct hold); one line per subscription every LOG_EVERY_MS at most. */
static void hold(struct psub *ps, const lk_spool_delivery *dl, const char *what, const char *why)
{
    int64_t until = wall_ms() + lkd_push_backoff(ps->s.min_backoff_ms, ps->s.max_backoff_ms, dl->attempts);
    const char *key = dl->ordering_key ? dl->ordering_key : "";
    size_t i = 0;
    while (i < ps->nholds && strcmp(ps->holds[i].key, key) != 0)
        i++;
    if (i == ps->nholds && key[0] != '\0') {
        struct hold *v = realloc(ps->holds, (ps->nholds + 1) * sizeof *v);
        char *k = strdup(key);
        if (v != NULL)
            ps->holds = v;
        if (v != NULL && k != NULL)
            ps->holds[ps->nholds++] = (struct hold){k, 0};
        else
            free(k);
    }
    if (i < ps->nholds)
        ps->holds[i].until = until;
    else
        ps->hold_all_until = until;
    ps->holds_unlogged++;
    int64_t now = lkd_now_ms();
    if (now - ps->hold_log_ms >= LOG_EVERY_MS) {
        lkd_log("push: %s: %s message %llu: %s; %u delivery(ies) held in memory since the last line, this one for "
                "%lld ms", ps->name, what, (unsigned long long)dl->message_id, why, ps->holds_unlogged,
                (long long)(until - wall_ms()));
        ps->hold_log_ms = now;
        ps->holds_unlogged = 0;
    }
}

/* Drops the holds that are over; 1 if the whole subscription still waits. */
static int holds_expire(struct psub *ps, int64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < ps->nholds; i++) {
        if (ps->holds[i].until > now)
            ps->holds[k++] = ps->holds[i];
        else
            free(ps->holds[i].key);
    }
    ps->nholds = k;
    return now < ps->hold_all_until;
}

static size_t discard(char *ptr, size_t size, size_t n, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * n;
}

/* The Authorization header's token for ps: cached, renewed 5 min before it expires. */
static const char *oidc_token(struct lkd_push *p, struct psub *ps)
{
    const struct lkd_oidc *o = p->d->oidc;
    const char *aud = ps->s.oidc_audience && ps->s.oidc_audience[0] ? ps->s.oidc_audience : ps->s.push_endpoint;
    int64_t now = lkd_now();
    if (ps->tok != NULL && ps->tok_aud != NULL && strcmp(ps->tok_aud, aud) == 0 && now < ps->tok_exp - 300)
        return ps->tok;
    wipe_free(ps->tok);
    free(ps->tok_aud);
    ps->tok = NULL;
    ps->tok_aud = strdup(aud);
    if (o == NULL || ps->s.oidc_email == NULL || ps->tok_aud == NULL)
        return NULL;
    ps->tok = lkd_oidc_sign(o, aud, ps->s.oidc_email, now, &ps->tok_exp);
    return ps->tok;
}

static void xfer_free(struct xfer *x)
{
    if (x == NULL)
        return;
    if (x->easy)
        curl_easy_cleanup(x->easy);
    /* The header list may hold a static secret or a token. */
    for (struct curl_slist *h = x->hdrs; h != NULL; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(x->hdrs);
    wipe_free(x->body); /* the device's data, as lk_spool_delivery_free wipes it */
    lk_spool_delivery_free(&x->dl);
    free(x);
}

static int header_add(struct curl_slist **l, const char *name, const char *value)
{
    char *h = NULL;
    if (strpbrk(value, "\r\n") != NULL || asprintf(&h, "%s: %s", name, value) < 0)
        return -1;
    struct curl_slist *n = curl_slist_append(*l, h);
    explicit_bzero(h, strlen(h));
    free(h);
    if (n == NULL)
        return -1;
    *l = n;
    return 0;
}

/* Start the POST of dl (taken); 0, or -1 with dl freed (it stays queued and
 * its device is held). */
static int start_post(struct lkd_push *p, struct psub *ps, lk_spool_delivery *dl)
{
    struct xfer *x = calloc(1, sizeof *x);
    if (x == NULL) {
        hold(ps, dl, "not pushing", "out of memory");
        lk_spool_delivery_free(dl);
        return -1;
    }
    x->dl = *dl;
    memset(dl, 0, sizeof *dl);
    x->sub = ps;
    size_t len = 0;
    x->body = lkd_push_body(&x->dl, ps->name, ps->s.dead_letter_topic != NULL, &len);
    x->easy = curl_easy_init();
    /* curl_slist_append leaves the list as it was when it fails: kept in
     * x->hdrs, so that xfer_free frees it (it was lost, a leak). */
    static const char *const fixed[] = {"Content-Type: application/json", "User-Agent: latchkeyd/" LK_VERSION,
                                        "Expect:" /* curl would send 100-continue and wait for it */};
    int ok = x->body != NULL && x->easy != NULL;
    for (size_t i = 0; ok && i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *n = curl_slist_append(x->hdrs, fixed[i]);
        if (n != NULL)
            x->hdrs = n;
        ok = n != NULL;
    }
    if (ok && ps->s.auth == LK_PUSH_AUTH_HEADER && ps->s.auth_header_name && ps->s.auth_header_value)
        ok = header_add(&x->hdrs, ps->s.auth_header_name, ps->s.auth_header_value) == 0;
    if (ok && ps->s.auth == LK_PUSH_AUTH_OIDC) {
        const char *tok = oidc_token(p, ps);
        char *bearer = NULL;
        ok = tok != NULL && asprintf(&bearer, "Bearer %s", tok) > 0 && header_add(&x->hdrs, "Authorization", bearer) == 0;
        wipe_free(bearer);
    }
    if (!ok) {
        hold(ps, &x->dl, "not pushing", "out of memory, or the header or token could not be made");
        xfer_free(x);
        return -1;
    }
    CURL *e = x->easy;
    long tmo = ps->s.ack_deadline_ms > 0 ? (long)ps->s.ack_deadline_ms : 10000;
    curl_easy_setopt(e, CURLOPT_URL, ps->s.push_endpoint);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, tmo);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, tmo < 10000 ? tmo : 10000L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (p->d->cfg.push_ca != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, p->d->cfg.push_ca);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    x->start_ms = lkd_now_ms();
    if (curl_multi_add_handle(p->multi, e) != CURLM_OK) {
        hold(ps, &x->dl, "not pushing", "libcurl refused the transfer");
        xfer_free(x);
        return -1;
    }
    ps->inflight++;
    atomic_fetch_add(&p->busy, 1);
    x->next = p->xfers;
    if (p->xfers)
        p->xfers->prev = x;
    p->xfers = x;
    return 0;
}

/* ---- taking deliveries ---- */

static void fill(struct lkd_push *p, struct psub *ps, int64_t now)
{
    unsigned max = p->d->cfg.push_max_in_flight;
    if (ps->gone || ps->inflight >= max || ps->nacks > 0)
        return; /* unwritten acks first: their deliveries would be offered again */
    char why[512] = "";
    if (lkd_push_endpoint_ok(ps->s.push_endpoint, why, sizeof why) != 0) {
        note_config(ps, why);
        return;
    }
    if (ps->s.auth == LK_PUSH_AUTH_OIDC && p->d->oidc == NULL) {
        note_config(ps, "an OIDC subscription needs push_oidc_key in latchkeyd's config");
        return;
    }
    if (holds_expire(ps, now))
        return;
    int64_t ret = ps->s.retention_ms > 0 ? ps->s.retention_ms : 7LL * 86400 * 1000;
    if (now >= ps->next_expire) {
        uint64_t n = 0;
        if (lk_spool_expire(p->sp, ps->name, now - ret, &n, why, sizeof why) == LK_OK) {
            ps->next_expire = now + EXPIRE_MS;
            if (n > 0)
                lkd_log("push: %s: %llu message(s) older than the retention expired", ps->name, (unsigned long long)n);
        }
    }
    /* The keys in flight: each one's next delivery waits for the answer. */
    const char **skip = calloc(ps->inflight + ps->nholds + 1, sizeof *skip);
    size_t want = max - ps->inflight, nskip = 0, n = 0;
    lk_spool_delivery *out = calloc(want, sizeof *out);
    if (skip == NULL || out == NULL) {
        free(skip);
        free(out);
        return;
    }
    for (struct xfer *x = p->xfers; x != NULL && nskip < ps->inflight; x = x->next)
        if (x->sub == ps)
            skip[nskip++] = x->dl.ordering_key ? x->dl.ordering_key : "";
    for (size_t i = 0; i < ps->nholds; i++)
        skip[nskip++] = ps->holds[i].key;
    lk_err err = lk_spool_next(p->sp, ps->name, now, skip, nskip, out, want, &n, why, sizeof why);
    if (err != LK_OK)
        note_failure(ps, "taking deliveries from the spool: %s (%s)", why, lk_errname(err));
    for (size_t i = 0; i < n; i++) {
        /* Past the retention since the last expiry pass: never sent; expired on the next turn. */
        if (out[i].publish_time_ms < now - ret) {
            lk_spool_delivery_free(&out[i]);
            ps->next_expire = 0;
            continue;
        }
        (void)start_post(p, ps, &out[i]); /* a failure holds the device and says why */
    }
    free(out);
    free(skip);
}

/* ---- answers ---- */

static int is_ack(long code)
{
    return code == 200 || code == 201 || code == 202 || code == 204 || code == 102;
}

static void done(struct lkd_push *p, struct xfer *x, CURLcode rc)
{
    struct psub *ps = x->sub;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    int64_t ms = lkd_now_ms() - x->start_ms;
    char why[512] = "";
    if (rc == CURLE_OK && is_ack(code)) {
        uint64_t *v = realloc(ps->acks, (ps->nacks + 1) * sizeof *v);
        if (v != NULL) {
            ps->acks = v;
            ps->acks[ps->nacks++] = x->dl.message_id;
        } /* else: not acknowledged, so sent again (at least once) */
        pthread_mutex_lock(&p->mu);
        ps->ok++;
        ps->lat_n++;
        ps->lat_sum += (double)ms / 1000.0;
        for (int i = 0; i < NBUCKETS; i++)
            if ((double)ms / 1000.0 <= buckets[i])
                ps->lat_b[i]++;
        pthread_mutex_unlock(&p->mu);
    } else {
        pthread_mutex_lock(&p->mu);
        ps->failed++;
        pthread_mutex_unlock(&p->mu);
        if (rc == CURLE_OK)
            note_failure(ps, "HTTP %ld from the endpoint", code);
        else
            note_failure(ps, "%s", x->err[0] ? x->err : curl_easy_strerror(rc));
        if (ps->gone || atomic_load(&p->stopping)) {
            /* nothing to write: it stays queued as it was */
        } else if (ps->s.dead_letter_topic != NULL && ps->s.max_delivery_attempts > 0 &&
                   x->dl.attempts + 1 >= (uint32_t)ps->s.max_delivery_attempts) {
            lk_err err = lk_spool_dead_letter(p->sp, ps->name, x->dl.message_id, (const char *const *)ps->dl, ps->ndl,
                                              NULL, why, sizeof why);
            if (err != LK_OK)
                hold(ps, &x->dl, "dead-lettering", why);
        } else {
            int64_t next = wall_ms() + lkd_push_backoff(ps->s.min_backoff_ms, ps->s.max_backoff_ms, x->dl.attempts);
            lk_err err = lk_spool_retry(p->sp, ps->name, x->dl.message_id, next, why, sizeof why);
            if (err != LK_OK)
                hold(ps, &x->dl, "scheduling again", why);
        }
    }
    curl_multi_remove_handle(p->multi, x->easy);
    if (x->prev)
        x->prev->next = x->next;
    else
        p->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    ps->inflight--;
    atomic_fetch_sub(&p->busy, 1);
    xfer_free(x);
}

static void flush_acks(struct lkd_push *p, struct psub *ps)
{
    if (ps->nacks == 0)
        return;
    char why[512] = "";
    lk_err err = lk_spool_ack(p->sp, ps->name, ps->acks, ps->nacks, why, sizeof why);
    if (err == LK_OK)
        ps->nacks = 0;
    else
        note_failure(ps, "writing %zu acknowledgement(s) to the spool: %s (kept, tried again)", ps->nacks, why);
}

/* ---- the thread ---- */

static void *run(void *arg)
{
    struct lkd_push *p = arg;
    int64_t next_reload = 0;
    for (;;) {
        int stopping = atomic_load(&p->stopping);
        if (stopping && (p->xfers == NULL || lkd_now_ms() >= p->drain_deadline))
            break;
        if (!stopping && lkd_now_ms() >= next_reload) {
            reload(p);
            next_reload = lkd_now_ms() + RELOAD_MS;
        }
        if (!stopping) {
            int64_t now = wall_ms();
            for (size_t i = 0; i < p->nsubs; i++)
                fill(p, p->subs[i], now);
        }
        curl_multi_poll(p->multi, NULL, 0, IDLE_MS, NULL);
        int running = 0;
        curl_multi_perform(p->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(p->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            struct xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            done(p, x, m->data.result);
        }
        for (size_t i = 0; i < p->nsubs; i++)
            flush_acks(p, p->subs[i]);
    }
    /* Cut short at the drain deadline: those stay queued, sent again at the next start. */
    unsigned cut = 0;
    while (p->xfers != NULL) {
        struct xfer *x = p->xfers;
        p->xfers = x->next;
        curl_multi_remove_handle(p->multi, x->easy);
        x->sub->inflight--;
        xfer_free(x);
        cut++;
    }
    atomic_store(&p->busy, 0);
    for (size_t i = 0; i < p->nsubs; i++)
        flush_acks(p, p->subs[i]);
    if (cut)
        lkd_log("push: drain: %u POST(s) cut short; they stay queued", cut);
    return NULL;
}

int lkd_push_start(struct lkd *d)
{
    char why[512] = "";
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        lkd_log("libcurl could not start");
        return -1;
    }
    struct lkd_push *p = calloc(1, sizeof *p);
    if (p == NULL)
        return -1;
    d->push = p;
    p->d = d;
    pthread_mutex_init(&p->mu, NULL);
    lk_err err = lk_spool_open(d->cfg.spool, LK_SPOOL_CREATE, 5000, &p->sp, why, sizeof why);
    if (err != LK_OK) {
        lkd_log("spool %s: %s (%s)", d->cfg.spool, why, lk_errname(err));
        return -1;
    }
    /* The API's :stats and /metrics read on the loop's thread: a handle of their own. */
    err = lk_spool_open(d->cfg.spool, 0, 1000, &d->spool, why, sizeof why);
    if (err != LK_OK) {
        lkd_log("spool %s: %s (%s)", d->cfg.spool, why, lk_errname(err));
        return -1;
    }
    err = lk_registry_open(d->cfg.registry, LK_REG_READONLY, &p->reg, why, sizeof why);
    if (err != LK_OK) {
        lkd_log("push: registry %s: %s (%s)", d->cfg.registry, why, lk_errname(err));
        return -1;
    }
    p->multi = curl_multi_init();
    if (p->multi == NULL)
        return -1;
    /* curl's multi keeps few idle connections by default: when fewer POSTs are in flight it closes
     * endpoint connections that the next burst opens again, a TLS handshake each. */
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)d->cfg.push_max_in_flight * 4);
    if (pthread_create(&p->th, NULL, run, p) != 0) {
        lkd_log("push: cannot start the worker thread");
        return -1;
    }
    p->started = 1;
    lkd_log("push: worker started (spool %s, at most %u POSTs in flight per subscription, %s)", d->cfg.spool,
            d->cfg.push_max_in_flight, d->cfg.push_ca ? "push_ca" : "the system's CA store");
    return 0;
}

void lkd_push_drain(struct lkd *d)
{
    struct lkd_push *p = d->push;
    if (p == NULL || !p->started)
        return;
    p->drain_deadline = lkd_now_ms() + (int64_t)d->cfg.drain_seconds * 1000;
    atomic_store(&p->stopping, 1);
    curl_multi_wakeup(p->multi);
}

int lkd_push_busy(const struct lkd *d)
{
    struct lkd_push *p = d->push;
    return p != NULL && p->started && atomic_load(&p->busy) > 0;
}

void lkd_push_stop(struct lkd *d)
{
    struct lkd_push *p = d->push;
    if (p == NULL)
        return;
    if (p->started) {
        if (!atomic_load(&p->stopping)) {
            p->drain_deadline = lkd_now_ms();
            atomic_store(&p->stopping, 1);
            curl_multi_wakeup(p->multi);
        }
        pthread_join(p->th, NULL);
    }
    for (size_t i = 0; i < p->nsubs; i++)
        psub_free(p->subs[i]);
    free(p->subs);
    if (p->multi)
        curl_multi_cleanup(p->multi);
    lk_spool_close(p->sp);
    lk_registry_close(p->reg);
    pthread_mutex_destroy(&p->mu);
    free(p);
    d->push = NULL;
    lk_spool_close(d->spool);
    d->spool = NULL;
    curl_global_cleanup();
}

/* ---- metrics (GET /metrics) ---- */

struct mrow {
    char *sub;
    lk_spool_stats s;
};
struct mctx {
    struct mrow *v;
    size_t n, cap;
};

static int metrics_cb(void *arg, const char *sub, const lk_spool_stats *s)
{
    struct mctx *m = arg;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct mrow *v = realloc(m->v, cap * sizeof *v);
        if (v == NULL)
            return 1;
        m->v = v;
        m->cap = cap;
    }
    if ((m->v[m->n].sub = strdup(sub)) == NULL)
        return 1;
    m->v[m->n++].s = *s;
    return 0;
}

/* One family: its HELP and TYPE, then a sample per subscription (the text
 * format wants a family's samples together). */
static void family(struct evbuffer *b, const struct mctx *m, const char *name, const char *type, const char *help,
                   int which, int64_t now)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i < m->n; i++) {
        const lk_spool_stats *s = &m->v[i].s;
        uint64_t v[] = {s->depth, s->bytes, 0, s->enqueued, s->acked, s->dead_lettered, s->dropped, s->expired};
        if (which == 2)
            evbuffer_add_printf(b, "%s{subscription=\"%s\"} %.3f\n", name, m->v[i].sub,
                                s->oldest_ms > 0 && now > s->oldest_ms ? (double)(now - s->oldest_ms) / 1000.0 : 0.0);
        else
            evbuffer_add_printf(b, "%s{subscription=\"%s\"} %llu\n", name, m->v[i].sub, (unsigned long long)v[which]);
    }
}

int lkd_push_metrics(struct lkd *d, struct evbuffer *b)
{
    struct lkd_push *p = d->push;
    if (p == NULL || d->spool == NULL)
        return 0;
    char why[512] = "";
    struct mctx m = {0};
    int rc = 0;
    if (lk_spool_stats_list(d->spool, metrics_cb, &m, why, sizeof why) != LK_OK) {
        lkd_log("metrics: the spool: %s", why);
        rc = -1;
    } else {
        int64_t now = wall_ms();
        family(b, &m, "latchkey_push_queue_depth", "gauge", "Deliveries queued in the spool.", 0, now);
        family(b, &m, "latchkey_push_queue_bytes", "gauge", "Data bytes of the queued deliveries.", 1, now);
        family(b, &m, "latchkey_push_oldest_unacked_age_seconds", "gauge",
               "Age of the oldest queued delivery (from its publish time).", 2, now);
        family(b, &m, "latchkey_push_enqueued_total", "counter", "Deliveries queued (since the first message).", 3,
               now);
        family(b, &m, "latchkey_push_acked_total", "counter", "Deliveries the endpoint acknowledged.", 4, now);
        family(b, &m, "latchkey_push_dead_lettered_total", "counter", "Deliveries moved to the dead-letter topic.",
               5, now);
        family(b, &m, "latchkey_push_dropped_total", "counter", "Copies not queued: the queue was full.", 6, now);
        family(b, &m, "latchkey_push_expired_total", "counter", "Deliveries older than the retention, removed.", 7,
               now);
    }
    for (size_t i = 0; i < m.n; i++)
        free(m.v[i].sub);
    free(m.v);
    if (rc != 0)
        return rc;
    evbuffer_add_printf(b, "# HELP latchkey_push_attempts_total POSTs answered (or failed) since latchkeyd started.\n"
                           "# TYPE latchkey_push_attempts_total counter\n");
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nsubs; i++) {
        const struct psub *ps = p->subs[i];
        if (!ps->gone)
            evbuffer_add_printf(b, "latchkey_push_attempts_total{subscription=\"%s\",outcome=\"ok\"} %llu\n"
                                   "latchkey_push_attempts_total{subscription=\"%s\",outcome=\"failed\"} %llu\n",
                                ps->name, (unsigned long long)ps->ok, ps->name, (unsigned long long)ps->failed);
    }
    evbuffer_add_printf(b, "# HELP latchkey_push_latency_seconds Time to a 2xx answer.\n"
                           "# TYPE latchkey_push_latency_seconds histogram\n");
    for (size_t i = 0; i < p->nsubs; i++) {
        const struct psub *ps = p->subs[i];
        if (ps->gone)
            continue;
        for (int k = 0; k < NBUCKETS; k++)
            evbuffer_add_printf(b, "latchkey_push_latency_seconds_bucket{subscription=\"%s\",le=\"%g\"} %llu\n",
                                ps->name, buckets[k], (unsigned long long)ps->lat_b[k]);
        evbuffer_add_printf(b,
                            "latchkey_push_latency_seconds_bucket{subscription=\"%s\",le=\"+Inf\"} %llu\n"
                            "latchkey_push_latency_seconds_sum{subscription=\"%s\"} %.6f\n"
                            "latchkey_push_latency_seconds_count{subscription=\"%s\"} %llu\n",
                            ps->name, (unsigned long long)ps->lat_n, ps->name, ps->lat_sum, ps->name,
                            (unsigned long long)ps->lat_n);
    }
    pthread_mutex_unlock(&p->mu);
    return 0;
}
