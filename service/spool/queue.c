/*
 * queue.c — the spool's queues (lk_spool.h): enqueue, next, ack, retry,
 * dead-letter, expire, forget and the figures. Every call is one
 * transaction; a failed call writes nothing.
 *
 * Tables (spool.c): messages (stored once), deliveries (one per
 * subscription and message, WITHOUT ROWID keyed (subscription, message), so
 * a subscription's queue is one ordered range of the table) and queues (the
 * figures per subscription, kept up to date by every change rather than
 * counted, so that the bound check of an enqueue is one row read). A message
 * is deleted with its last delivery.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "latchkey/lk_util.h"

static void zero_why(char *why, size_t why_size)
{
    if (why != NULL && why_size > 0)
        why[0] = '\0';
}

static lk_spool_limits effective(const lk_spool_limits *lim)
{
    lk_spool_limits l = {LK_SPOOL_DEFAULT_MAX_MESSAGES, LK_SPOOL_DEFAULT_MAX_BYTES};
    if (lim != NULL && lim->max_messages != 0)
        l.max_messages = lim->max_messages;
    if (lim != NULL && lim->max_bytes != 0)
        l.max_bytes = lim->max_bytes;
    return l;
}

/* Message id's count of deliveries (messages.refs, kept by every change so
 * that no index of deliveries by message is needed) goes up by delta; at 0
 * the message is deleted. */
static lk_err add_refs(lk_spool *sp, int64_t id, int64_t delta, char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    if (delta == 0)
        return LK_OK;
    if ((s = lk_spool__st(sp, ST_MSG_REFS, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, delta);
    if ((err = lk_spool__run(sp, s, "counting a message's deliveries", why, why_size)) != LK_OK ||
        delta > 0)
        return err;
    if ((s = lk_spool__st(sp, ST_MSG_DELETE_IF_UNUSED, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_int64(s, 1, id);
    return lk_spool__run(sp, s, "deleting a delivered message", why, why_size);
}

/* One delivery of message id is gone. */
static lk_err release_message(lk_spool *sp, int64_t id, char *why, size_t why_size)
{
    return add_refs(sp, id, -1, why, why_size);
}

/*
 * Queues message id (size bytes, key) for sub unless sub's queue is at its
 * bound: *queued 1 when it was queued, -1 when it was dropped (counted), 0
 * when it was already queued there (a subscription named twice).
 */
static lk_err queue_one(lk_spool *sp, const char *sub, int64_t id, const char *key, int64_t size,
                        const lk_spool_limits *l, int *queued, char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    int rc, full;

    *queued = 0;
    if ((s = lk_spool__st(sp, ST_QUEUE_ENSURE, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    if ((err = lk_spool__run(sp, s, "recording a subscription", why, why_size)) != LK_OK)
        return err;
    if ((s = lk_spool__st(sp, ST_QUEUE_GET, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return lk_spool__fail(sp, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc,
                              "reading a queue's figures", why, why_size);
    }
    full = (uint64_t)sqlite3_column_int64(s, 0) + 1 > l->max_messages ||
           (uint64_t)sqlite3_column_int64(s, 1) + (uint64_t)size > l->max_bytes;
    sqlite3_reset(s);
    if (full) {
        if ((s = lk_spool__st(sp, ST_QUEUE_DROPPED, &err, why, why_size)) == NULL)
            return err;
        sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
        if ((err = lk_spool__run(sp, s, "counting a dropped message", why, why_size)) == LK_OK)
            *queued = -1;
        return err;
    }
    if ((s = lk_spool__st(sp, ST_DELIVERY_INSERT, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, id);
    sqlite3_bind_text(s, 3, key, -1, SQLITE_STATIC);
    if ((err = lk_spool__run(sp, s, "queueing a delivery", why, why_size)) != LK_OK)
        return err;
    if (sqlite3_changes(sp->db) == 0)
        return LK_OK;
    if ((s = lk_spool__st(sp, ST_QUEUE_ADD, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, size);
    if ((err = lk_spool__run(sp, s, "counting a queued message", why, why_size)) == LK_OK)
        *queued = 1;
    return err;
}

static int valid_subs(const char *const *subs, size_t n)
{
    size_t i;
    if (n > 0 && subs == NULL)
        return 0;
    for (i = 0; i < n; i++)
        if (subs[i] == NULL || subs[i][0] == '\0')
            return 0;
    return 1;
}

lk_err lk_spool_enqueue(lk_spool *sp, const lk_spool_msg *m, const char *const *subs, size_t nsubs,
                        const lk_spool_limits *lim, uint64_t *message_id, uint32_t *full,
                        char *why, size_t why_size)
{
    lk_spool_limits l = effective(lim);
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    int64_t id;
    uint32_t bits = 0;
    size_t i, queued_any = 0;

    zero_why(why, why_size);
    if (message_id != NULL)
        *message_id = 0;
    if (full != NULL)
        *full = 0;
    if (sp == NULL || m == NULL || m->topic == NULL || m->topic[0] == '\0' ||
        m->ordering_key == NULL || (m->data == NULL && m->data_len > 0) ||
        m->data_len > (size_t)INT32_MAX || !valid_subs(subs, nsubs)) {
        lk_spool__why(why, why_size, "lk_spool_enqueue: a missing handle, message, topic, "
                                     "ordering key, data or subscription name");
        return LK_ERR_ARG;
    }
    if ((err = lk_spool__begin(sp, 1, why, why_size)) != LK_OK)
        return err;
    if ((s = lk_spool__st(sp, ST_MSG_INSERT, &err, why, why_size)) == NULL)
        goto fail;
    sqlite3_bind_text(s, 1, m->topic, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->ordering_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, m->publish_time_ms);
    sqlite3_bind_int64(s, 4, (int64_t)m->data_len);
    sqlite3_bind_text(s, 5, m->attributes_json != NULL ? m->attributes_json : "{}", -1,
                      SQLITE_STATIC);
    sqlite3_bind_blob(s, 6, m->data != NULL ? (const void *)m->data : (const void *)"",
                      (int)m->data_len, SQLITE_STATIC);
    /* corrected below if not all take it (and at 0 the message goes) */
    sqlite3_bind_int64(s, 7, nsubs > 0 ? (int64_t)nsubs : 1);
    if ((err = lk_spool__run(sp, s, "storing a message", why, why_size)) != LK_OK)
        goto fail;
    id = sqlite3_last_insert_rowid(sp->db);
    for (i = 0; i < nsubs; i++) {
        int queued;
        err = queue_one(sp, subs[i], id, m->ordering_key, (int64_t)m->data_len, &l, &queued, why,
                        why_size);
        if (err != LK_OK)
            goto fail;
        if (queued > 0)
            queued_any++;
        else if (queued < 0 && i < 32)
            bits |= 1u << i;
    }
    if ((err = add_refs(sp, id, (int64_t)queued_any - (nsubs > 0 ? (int64_t)nsubs : 1), why,
                        why_size)) != LK_OK)
        goto fail;
    if ((err = lk_spool__commit(sp, why, why_size)) != LK_OK)
        goto fail;
    if (message_id != NULL)
        *message_id = (uint64_t)id;
    if (full != NULL)
        *full = bits;
    return LK_OK;
fail:
    lk_spool__rollback(sp);
    return err;
}

void lk_spool_delivery_free(lk_spool_delivery *d)
{
    if (d == NULL)
        return;
    if (d->data != NULL)
        lk_wipe(d->data, d->data_len);
    if (d->attributes_json != NULL)
        lk_wipe(d->attributes_json, strlen(d->attributes_json));
    free(d->data);
    free(d->attributes_json);
    free(d->topic);
    free(d->ordering_key);
    memset(d, 0, sizeof *d);
}

/* A set of strings (the ordering keys seen by a scan), open addressing. */
typedef struct keyset {
    char **slot;
    size_t cap, n;
} keyset;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void keyset_free(keyset *k)
{
    size_t i;
    for (i = 0; i < k->cap; i++)
        free(k->slot[i]);
    free(k->slot);
    memset(k, 0, sizeof *k);
}

/* 1 if s is in k; else adds it (when add) and returns 0; -1: no memory. */
static int keyset_check(keyset *k, const char *s, int add)
{
    size_t i;
    if (k->cap == 0 || (add && (k->n + 1) * 2 > k->cap)) {
        keyset bigger = {NULL, k->cap == 0 ? 64 : k->cap * 2, 0};
        bigger.slot = calloc(bigger.cap, sizeof *bigger.slot);
        if (bigger.slot == NULL)
            return -1;
        for (i = 0; i < k->cap; i++)
            if (k->slot[i] != NULL) {
                size_t j = hash_str(k->slot[i]) & (bigger.cap - 1);
                while (bigger.slot[j] != NULL)
                    j = (j + 1) & (bigger.cap - 1);
                bigger.slot[j] = k->slot[i];
                bigger.n++;
            }
        free(k->slot);
        *k = bigger;
    }
    for (i = hash_str(s) & (k->cap - 1); k->slot[i] != NULL; i = (i + 1) & (k->cap - 1))
        if (strcmp(k->slot[i], s) == 0)
            return 1;
    if (add) {
        if ((k->slot[i] = strdup(s)) == NULL)
            return -1;
        k->n++;
    }
    return 0;
}

static char *dup_col(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return strdup(t != NULL ? (const char *)t : "");
}

/* Fills d with message id (attempts given). */
static lk_err load_message(lk_spool *sp, int64_t id, uint32_t attempts, lk_spool_delivery *d,
                           char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s = lk_spool__st(sp, ST_MSG_GET, &err, why, why_size);
    const void *blob;
    int rc, len;

    if (s == NULL)
        return err;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return lk_spool__fail(sp, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "reading a message",
                              why, why_size);
    }
    memset(d, 0, sizeof *d);
    d->message_id = (uint64_t)id;
    d->attempts = attempts;
    d->topic = dup_col(s, 0);
    d->ordering_key = dup_col(s, 1);
    blob = sqlite3_column_blob(s, 2);
    len = sqlite3_column_bytes(s, 2);
    d->data = malloc(len > 0 ? (size_t)len : 1);
    if (d->data != NULL && len > 0)
        memcpy(d->data, blob, (size_t)len);
    d->data_len = (size_t)len;
    d->attributes_json = dup_col(s, 3);
    d->publish_time_ms = sqlite3_column_int64(s, 4);
    sqlite3_reset(s);
    if (d->topic == NULL || d->ordering_key == NULL || d->data == NULL ||
        d->attributes_json == NULL) {
        lk_spool_delivery_free(d);
        lk_spool__why(why, why_size, "lk_spool_next: out of memory");
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

/*
 * One scan of sub's deliveries in message order (the primary key's order, no
 * sort): the first row of each ordering key is its oldest; rows of a key
 * already seen are passed over. It stops when max are found or after
 * LK_SPOOL_SCAN_ROWS + 4 * max rows, so that a call stays cheap however deep
 * the backlog (a backlog of devices whose oldest is in flight or waiting for
 * its retry would otherwise be read to its end at every call). A key whose
 * oldest delivery lies beyond that front waits until the front moves on:
 * with the devices' messages interleaved, as they come, the front holds
 * every active device; only a device whose backlog fills the whole front
 * delays the ones queued behind it (no index by key: it would cost every
 * enqueue — the broker's — a third more).
 */
lk_err lk_spool_next(lk_spool *sp, const char *sub, int64_t now_ms, const char *const *skip_keys,
                     size_t nskip, lk_spool_delivery *out, size_t max, size_t *n,
                     char *why, size_t why_size)
{
    keyset seen = {NULL, 0, 0}, skip = {NULL, 0, 0};
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    size_t i, found = 0, scanned = 0, bound;
    int rc = SQLITE_DONE;

    zero_why(why, why_size);
    if (n != NULL)
        *n = 0;
    if (out != NULL)
        memset(out, 0, max * sizeof *out);
    if (sp == NULL || sub == NULL || sub[0] == '\0' || n == NULL || (out == NULL && max > 0) ||
        !valid_subs(skip_keys, nskip)) {
        lk_spool__why(why, why_size, "lk_spool_next: a missing handle, subscription, output or "
                                     "skipped key");
        return LK_ERR_ARG;
    }
    if (max == 0)
        return LK_OK;
    bound = max > (SIZE_MAX - LK_SPOOL_SCAN_ROWS) / 4 ? SIZE_MAX : LK_SPOOL_SCAN_ROWS + 4 * max;
    for (i = 0; i < nskip; i++)
        if (keyset_check(&skip, skip_keys[i], 1) < 0)
            goto nomem;
    if ((err = lk_spool__begin(sp, 0, why, why_size)) != LK_OK)
        goto out;
    if ((s = lk_spool__st(sp, ST_DELIVERY_SCAN, &err, why, why_size)) == NULL)
        goto fail;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    while (found < max && scanned < bound && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(s, 1);
        int r;
        scanned++;
        if (key == NULL)
            key = "";
        if ((r = keyset_check(&seen, key, 1)) < 0) {
            sqlite3_reset(s);
            goto nomem_tx;
        }
        if (r == 1 || sqlite3_column_int64(s, 3) > now_ms || keyset_check(&skip, key, 0) == 1)
            continue;
        err = load_message(sp, sqlite3_column_int64(s, 0), (uint32_t)sqlite3_column_int64(s, 2),
                           &out[found], why, why_size);
        if (err != LK_OK) {
            sqlite3_reset(s);
            goto fail;
        }
        found++;
    }
    sqlite3_reset(s);
    if (found < max && scanned < bound && rc != SQLITE_DONE) {
        err = lk_spool__fail(sp, rc, "reading the queue", why, why_size);
        goto fail;
    }
    if ((err = lk_spool__commit(sp, why, why_size)) != LK_OK)
        goto fail;
    *n = found;
    goto out;
nomem_tx:
    lk_spool__why(why, why_size, "lk_spool_next: out of memory");
    err = LK_ERR_NOMEM;
fail:
    lk_spool__rollback(sp);
    for (i = 0; i < found; i++)
        lk_spool_delivery_free(&out[i]);
out:
    keyset_free(&seen);
    keyset_free(&skip);
    return err;
nomem:
    keyset_free(&seen);
    keyset_free(&skip);
    lk_spool__why(why, why_size, "lk_spool_next: out of memory");
    return LK_ERR_NOMEM;
}

/* Removes sub's delivery of id (how: 0 acked, 1 dead-lettered, 2 expired)
 * and the message with its last delivery. *gone 1 if there was one; its
 * ordering key and attempts in *key (caller frees) and *attempts if asked. */
static lk_err remove_delivery(lk_spool *sp, const char *sub, int64_t id, int how, int *gone,
                              char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    int64_t size;
    int rc;

    *gone = 0;
    if ((s = lk_spool__st(sp, ST_DELIVERY_GET, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, id);
    rc = sqlite3_step(s);
    size = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return LK_OK; /* no longer queued */
    if (rc != SQLITE_ROW)
        return lk_spool__fail(sp, rc, "reading a delivery", why, why_size);
    if ((s = lk_spool__st(sp, ST_DELIVERY_DELETE, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, id);
    if ((err = lk_spool__run(sp, s, "removing a delivery", why, why_size)) != LK_OK)
        return err;
    if ((s = lk_spool__st(sp, ST_QUEUE_REMOVE, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, size);
    sqlite3_bind_int(s, 3, how);
    if ((err = lk_spool__run(sp, s, "counting a removed delivery", why, why_size)) != LK_OK)
        return err;
    *gone = 1;
    return release_message(sp, id, why, why_size);
}

static int valid_id(uint64_t id)
{
    return id > 0 && id <= (uint64_t)INT64_MAX;
}

lk_err lk_spool_ack(lk_spool *sp, const char *sub, const uint64_t *ids, size_t n,
                    char *why, size_t why_size)
{
    lk_err err;
    size_t i;
    int gone;

    zero_why(why, why_size);
    if (sp == NULL || sub == NULL || sub[0] == '\0' || (ids == NULL && n > 0)) {
        lk_spool__why(why, why_size, "lk_spool_ack: a missing handle, subscription or ids");
        return LK_ERR_ARG;
    }
    if ((err = lk_spool__begin(sp, 1, why, why_size)) != LK_OK)
        return err;
    for (i = 0; i < n; i++)
        if (valid_id(ids[i]) &&
            (err = remove_delivery(sp, sub, (int64_t)ids[i], 0, &gone, why, why_size)) != LK_OK)
            goto fail;
    if ((err = lk_spool__commit(sp, why, why_size)) == LK_OK)
        return LK_OK;
fail:
    lk_spool__rollback(sp);
    return err;
}

lk_err lk_spool_retry(lk_spool *sp, const char *sub, uint64_t id, int64_t next_try_ms,
                      char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s;

    zero_why(why, why_size);
    if (sp == NULL || sub == NULL || sub[0] == '\0') {
        lk_spool__why(why, why_size, "lk_spool_retry: a missing handle or subscription");
        return LK_ERR_ARG;
    }
    if ((err = lk_spool__begin(sp, 1, why, why_size)) != LK_OK)
        return err;
    if (valid_id(id)) {
        if ((s = lk_spool__st(sp, ST_DELIVERY_RETRY, &err, why, why_size)) == NULL)
            goto fail;
        sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)id);
        sqlite3_bind_int64(s, 3, next_try_ms);
        if ((err = lk_spool__run(sp, s, "recording a failed attempt", why, why_size)) != LK_OK)
            goto fail;
    }
    if ((err = lk_spool__commit(sp, why, why_size)) == LK_OK)
        return LK_OK;
fail:
    lk_spool__rollback(sp);
    return err;
}

lk_err lk_spool_dead_letter(lk_spool *sp, const char *sub, uint64_t id, const char *const *dl_subs,
                            size_t ndl, const lk_spool_limits *lim, char *why, size_t why_size)
{
    lk_spool_limits l = effective(lim);
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    char *key = NULL;
    int64_t size = 0;
    size_t i;
    int rc, gone;

    zero_why(why, why_size);
    if (sp == NULL || sub == NULL || sub[0] == '\0' || !valid_subs(dl_subs, ndl)) {
        lk_spool__why(why, why_size, "lk_spool_dead_letter: a missing handle or subscription");
        return LK_ERR_ARG;
    }
    if ((err = lk_spool__begin(sp, 1, why, why_size)) != LK_OK)
        return err;
    if (!valid_id(id))
        return lk_spool__commit(sp, why, why_size);
    if ((s = lk_spool__st(sp, ST_DELIVERY_GET, &err, why, why_size)) == NULL)
        goto fail;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        size = sqlite3_column_int64(s, 0);
        key = dup_col(s, 1);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) /* no longer queued */
        return lk_spool__commit(sp, why, why_size);
    if (rc != SQLITE_ROW) {
        err = lk_spool__fail(sp, rc, "reading a delivery", why, why_size);
        goto fail;
    }
    if (key == NULL) {
        lk_spool__why(why, why_size, "lk_spool_dead_letter: out of memory");
        err = LK_ERR_NOMEM;
        goto fail;
    }
    /* The dead-letter copies first: the message row stays referenced. */
    for (i = 0; i < ndl; i++) {
        int queued;
        if (strcmp(dl_subs[i], sub) == 0)
            continue;
        if ((err = queue_one(sp, dl_subs[i], (int64_t)id, key, size, &l, &queued, why,
                             why_size)) != LK_OK ||
            (queued > 0 && (err = add_refs(sp, (int64_t)id, 1, why, why_size)) != LK_OK))
            goto fail;
    }
    if ((err = remove_delivery(sp, sub, (int64_t)id, 1, &gone, why, why_size)) != LK_OK)
        goto fail;
    free(key);
    if ((err = lk_spool__commit(sp, why, why_size)) == LK_OK)
        return LK_OK;
    lk_spool__rollback(sp);
    return err;
fail:
    free(key);
    lk_spool__rollback(sp);
    return err;
}

/* The message ids a statement (bound, first column) returns, with their
 * second column when it has one. */
typedef struct idlist {
    int64_t *id;
    size_t n, cap;
} idlist;

static int idlist_add(idlist *l, int64_t id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap == 0 ? 256 : l->cap * 2;
        int64_t *p = realloc(l->id, cap * sizeof *p);
        if (p == NULL)
            return -1;
        l->id = p;
        l->cap = cap;
    }
    l->id[l->n++] = id;
    return 0;
}

static lk_err collect(lk_spool *sp, sqlite3_stmt *s, idlist *l, char *why, size_t why_size)
{
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (idlist_add(l, sqlite3_column_int64(s, 0)) < 0) {
            sqlite3_reset(s);
            lk_spool__why(why, why_size, "spool: out of memory");
            return LK_ERR_NOMEM;
        }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? LK_OK : lk_spool__fail(sp, rc, "reading a queue", why, why_size);
}

/* The start of lk_spool_expire and lk_spool_forget: sub checked (fn names
 * the caller in the refusal), a write transaction begun and statement k
 * readied with ?1 = sub. NULL with *err set, and no transaction left open,
 * on failure. */
static sqlite3_stmt *begin_sub(lk_spool *sp, const char *sub, const char *fn,
                               enum lk_spool_stmt k, lk_err *err, char *why, size_t why_size)
{
    sqlite3_stmt *s;
    if (sp == NULL || sub == NULL || sub[0] == '\0') {
        lk_spool__why(why, why_size, "%s: a missing handle or subscription", fn);
        *err = LK_ERR_ARG;
        return NULL;
    }
    if ((*err = lk_spool__begin(sp, 1, why, why_size)) != LK_OK)
        return NULL;
    if ((s = lk_spool__st(sp, k, err, why, why_size)) == NULL) {
        lk_spool__rollback(sp);
        return NULL;
    }
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    return s;
}

lk_err lk_spool_expire(lk_spool *sp, const char *sub, int64_t before_ms, uint64_t *n,
                       char *why, size_t why_size)
{
    idlist l = {NULL, 0, 0};
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    uint64_t count = 0;
    size_t i;
    int gone;

    zero_why(why, why_size);
    if (n != NULL)
        *n = 0;
    if ((s = begin_sub(sp, sub, "lk_spool_expire", ST_EXPIRED_LIST, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_int64(s, 2, before_ms);
    if ((err = collect(sp, s, &l, why, why_size)) != LK_OK)
        goto fail;
    for (i = 0; i < l.n; i++) {
        if ((err = remove_delivery(sp, sub, l.id[i], 2, &gone, why, why_size)) != LK_OK)
            goto fail;
        count += (uint64_t)gone;
    }
    if ((err = lk_spool__commit(sp, why, why_size)) != LK_OK)
        goto fail;
    free(l.id);
    if (n != NULL)
        *n = count;
    return LK_OK;
fail:
    free(l.id);
    lk_spool__rollback(sp);
    return err;
}

lk_err lk_spool_forget(lk_spool *sp, const char *sub, char *why, size_t why_size)
{
    idlist l = {NULL, 0, 0};
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    size_t i;

    zero_why(why, why_size);
    if ((s = begin_sub(sp, sub, "lk_spool_forget", ST_SUB_MESSAGES, &err, why, why_size)) == NULL)
        return err;
    if ((err = collect(sp, s, &l, why, why_size)) != LK_OK)
        goto fail;
    if ((s = lk_spool__st(sp, ST_SUB_DELETE, &err, why, why_size)) == NULL)
        goto fail;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    if ((err = lk_spool__run(sp, s, "removing a subscription's deliveries", why, why_size)) !=
        LK_OK)
        goto fail;
    for (i = 0; i < l.n; i++)
        if ((err = release_message(sp, l.id[i], why, why_size)) != LK_OK)
            goto fail;
    if ((s = lk_spool__st(sp, ST_QUEUE_FORGET, &err, why, why_size)) == NULL)
        goto fail;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    if ((err = lk_spool__run(sp, s, "removing a subscription's figures", why, why_size)) !=
        LK_OK)
        goto fail;
    if ((err = lk_spool__commit(sp, why, why_size)) != LK_OK)
        goto fail;
    free(l.id);
    return LK_OK;
fail:
    free(l.id);
    lk_spool__rollback(sp);
    return err;
}

/* sub's figures, in the caller's transaction. */
static lk_err read_stats(lk_spool *sp, const char *sub, lk_spool_stats *out, char *why,
                         size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    int rc;

    memset(out, 0, sizeof *out);
    if ((s = lk_spool__st(sp, ST_QUEUE_GET, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->depth = (uint64_t)sqlite3_column_int64(s, 0);
        out->bytes = (uint64_t)sqlite3_column_int64(s, 1);
        out->enqueued = (uint64_t)sqlite3_column_int64(s, 2);
        out->acked = (uint64_t)sqlite3_column_int64(s, 3);
        out->dead_lettered = (uint64_t)sqlite3_column_int64(s, 4);
        out->dropped = (uint64_t)sqlite3_column_int64(s, 5);
        out->expired = (uint64_t)sqlite3_column_int64(s, 6);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lk_spool__fail(sp, rc, "reading a queue's figures", why, why_size);
    if ((s = lk_spool__st(sp, ST_OLDEST, &err, why, why_size)) == NULL)
        return err;
    sqlite3_bind_text(s, 1, sub, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        out->oldest_ms = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lk_spool__fail(sp, rc, "reading a queue's oldest message", why, why_size);
    return LK_OK;
}

lk_err lk_spool_stats_get(lk_spool *sp, const char *sub, lk_spool_stats *out, char *why,
                          size_t why_size)
{
    lk_err err;

    zero_why(why, why_size);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (sp == NULL || sub == NULL || sub[0] == '\0' || out == NULL) {
        lk_spool__why(why, why_size, "lk_spool_stats_get: a missing handle, subscription or "
                                     "output");
        return LK_ERR_ARG;
    }
    if ((err = lk_spool__begin(sp, 0, why, why_size)) != LK_OK)
        return err;
    if ((err = read_stats(sp, sub, out, why, why_size)) == LK_OK &&
        (err = lk_spool__commit(sp, why, why_size)) == LK_OK)
        return LK_OK;
    lk_spool__rollback(sp);
    memset(out, 0, sizeof *out);
    return err;
}

lk_err lk_spool_stats_list(lk_spool *sp, int (*cb)(void *arg, const char *sub, const lk_spool_stats *s),
                           void *arg, char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *list = NULL;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    int rc;

    zero_why(why, why_size);
    if (sp == NULL || cb == NULL) {
        lk_spool__why(why, why_size, "lk_spool_stats_list: a missing handle or callback");
        return LK_ERR_ARG;
    }
    if ((err = lk_spool__begin(sp, 0, why, why_size)) != LK_OK)
        return err;
    /* The names first: the figures' statement is another cached one, and the
     * callback runs after the transaction, so that it may call the spool. */
    if ((list = lk_spool__st(sp, ST_QUEUE_LIST, &err, why, why_size)) == NULL)
        goto fail;
    while ((rc = sqlite3_step(list)) == SQLITE_ROW) {
        if (n == cap) {
            size_t c = cap == 0 ? 16 : cap * 2;
            char **p = realloc(names, c * sizeof *p);
            if (p == NULL)
                goto nomem;
            names = p;
            cap = c;
        }
        if ((names[n] = dup_col(list, 0)) == NULL)
            goto nomem;
        n++;
    }
    sqlite3_reset(list);
    if (rc != SQLITE_DONE) {
        err = lk_spool__fail(sp, rc, "listing the queues", why, why_size);
        goto fail;
    }
    {
        lk_spool_stats *st = calloc(n > 0 ? n : 1, sizeof *st);
        if (st == NULL)
            goto nomem;
        for (i = 0; i < n; i++)
            if ((err = read_stats(sp, names[i], &st[i], why, why_size)) != LK_OK) {
                free(st);
                goto fail;
            }
        if ((err = lk_spool__commit(sp, why, why_size)) != LK_OK) {
            free(st);
            goto fail;
        }
        for (i = 0; i < n; i++)
            if (cb(arg, names[i], &st[i]) != 0)
                break;
        free(st);
    }
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return LK_OK;
nomem:
    sqlite3_reset(list);
    lk_spool__why(why, why_size, "lk_spool_stats_list: out of memory");
    err = LK_ERR_NOMEM;
fail:
    lk_spool__rollback(sp);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return err;
}
