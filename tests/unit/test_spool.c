/*
 * test_spool.c — the delivery spool (lk_spool.h): enqueue, next, ack, retry,
 * dead-letter, expire, forget, figures; per-key order; bounds; two handles on
 * one file; reopening; a process killed right after its enqueue returned;
 * read-only handles; files that are not a spool. The file's contents are
 * checked with SQLite directly where the API cannot see them (a message row
 * gone with its last delivery). Prints the cost of an enqueue.
 */
#include "lk_test.h"

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "latchkey/lk_spool.h"

#define SUB_A "projects/p/subscriptions/a"
#define SUB_B "projects/p/subscriptions/b"
#define SUB_DL "projects/p/subscriptions/dead"
#define TOPIC "projects/p/topics/t"
#define T0 1700000000000LL

static double now_s(void);

typedef struct fixture {
    char *dir;
    char path[4200];
    lk_spool *sp;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char why[256];
    f->dir = lk_test_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/spool.db", f->dir);
    assert_int_equal(lk_spool_open(f->path, LK_SPOOL_CREATE, 2000, &f->sp, why, sizeof why), LK_OK);
    *state = f;
    return 0;
}

static int64_t count_rows(const char *path, const char *sql);

static int teardown(void **state)
{
    fixture *f = *state;
    /* After every test: each message's reference count is its deliveries' count,
     * and no message is left without one. */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages m WHERE refs != (SELECT "
                                         "count(*) FROM deliveries d WHERE d.message = m.id) OR "
                                         "refs <= 0"), 0);
    lk_spool_close(f->sp);
    lk_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Enqueues a message of key with payload text at time t to subs; its id. */
static uint64_t put(lk_spool *sp, const char *key, const char *text, int64_t t,
                    const char *const *subs, size_t n, const lk_spool_limits *lim, uint32_t *full)
{
    lk_spool_msg m = {TOPIC, key, (const uint8_t *)text, strlen(text),
                      "{\"deviceNumId\":\"1\"}", t};
    uint64_t id = 0;
    uint32_t bits = 0;
    char why[256];
    lk_err err = lk_spool_enqueue(sp, &m, subs, n, lim, &id, &bits, why, sizeof why);
    if (err != LK_OK)
        fail_msg("enqueue: %s (%s)", lk_strerror(err), why);
    if (full != NULL)
        *full = bits;
    return id;
}

/* The ids lk_spool_next offers at now (skip: one key or NULL), in order. */
static size_t next_ids(lk_spool *sp, const char *sub, int64_t now, const char *skip, uint64_t *ids,
                       size_t max)
{
    lk_spool_delivery d[16];
    const char *sk[1] = {skip};
    size_t n = 0, i;
    char why[256];
    assert_true(max <= 16);
    assert_int_equal(lk_spool_next(sp, sub, now, skip ? sk : NULL, skip ? 1 : 0, d, max, &n, why,
                                   sizeof why), LK_OK);
    for (i = 0; i < n; i++) {
        ids[i] = d[i].message_id;
        lk_spool_delivery_free(&d[i]);
    }
    return n;
}

static lk_spool_stats stats(lk_spool *sp, const char *sub)
{
    lk_spool_stats s;
    char why[256];
    assert_int_equal(lk_spool_stats_get(sp, sub, &s, why, sizeof why), LK_OK);
    return s;
}

/* SELECT count(*) ... with a connection of its own. */
static int64_t count_rows(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void test_enqueue_next_ack(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A, SUB_B};
    lk_spool_delivery d[4];
    lk_spool_stats s;
    uint64_t id1, id2;
    uint32_t full = 7;
    size_t n = 9;
    char why[256];

    id1 = put(f->sp, "1", "first", T0, subs, 2, NULL, &full);
    assert_int_equal(full, 0);
    id2 = put(f->sp, "2", "second", T0 + 1, subs, 2, NULL, NULL);
    assert_true(id1 > 0 && id2 > id1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 2);

    assert_int_equal(lk_spool_next(f->sp, SUB_A, T0, NULL, 0, d, 4, &n, why, sizeof why), LK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(d[0].message_id, id1);
    assert_string_equal(d[0].topic, TOPIC);
    assert_string_equal(d[0].ordering_key, "1");
    assert_int_equal(d[0].data_len, 5);
    assert_memory_equal(d[0].data, "first", 5);
    assert_string_equal(d[0].attributes_json, "{\"deviceNumId\":\"1\"}");
    assert_int_equal(d[0].publish_time_ms, T0);
    assert_int_equal(d[0].attempts, 0);
    assert_int_equal(d[1].message_id, id2);
    lk_spool_delivery_free(&d[0]);
    assert_null(d[0].data);
    assert_null(d[0].attributes_json);
    assert_int_equal(d[0].data_len, 0);
    lk_spool_delivery_free(&d[1]);
    lk_spool_delivery_free(NULL);

    s = stats(f->sp, SUB_A);
    assert_int_equal(s.depth, 2);
    assert_int_equal(s.bytes, 11);
    assert_int_equal(s.oldest_ms, T0);
    assert_int_equal(s.enqueued, 2);

    /* Acked by a: the message stays for b; acked by b too: gone. */
    assert_int_equal(lk_spool_ack(f->sp, SUB_A, &id1, 1, why, sizeof why), LK_OK);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 2);
    assert_int_equal(lk_spool_ack(f->sp, SUB_B, &id1, 1, why, sizeof why), LK_OK);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 1);
    /* An id no longer queued (and one never seen) is ignored. */
    {
        uint64_t again[] = {id1, 999999, 0};
        assert_int_equal(lk_spool_ack(f->sp, SUB_A, again, 3, why, sizeof why), LK_OK);
    }
    s = stats(f->sp, SUB_A);
    assert_int_equal(s.depth, 1);
    assert_int_equal(s.bytes, 6);
    assert_int_equal(s.oldest_ms, T0 + 1);
    assert_int_equal(s.acked, 1);
    assert_int_equal(s.enqueued, 2);

    /* A subscription never seen: all zero. */
    s = stats(f->sp, "projects/p/subscriptions/never");
    assert_int_equal(s.depth + s.enqueued + (uint64_t)s.oldest_ms, 0);
}

/* Per ordering key only the oldest, due, not skipped; oldest first. */
static void test_order_per_key(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A};
    uint64_t a1, a2, b1, a3, c1, ids[16];
    size_t n;
    char why[256];

    a1 = put(f->sp, "A", "a1", T0, subs, 1, NULL, NULL);
    a2 = put(f->sp, "A", "a2", T0, subs, 1, NULL, NULL);
    b1 = put(f->sp, "B", "b1", T0, subs, 1, NULL, NULL);
    a3 = put(f->sp, "A", "a3", T0, subs, 1, NULL, NULL);
    c1 = put(f->sp, "C", "c1", T0, subs, 1, NULL, NULL);

    n = next_ids(f->sp, SUB_A, T0, NULL, ids, 16);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], a1);
    assert_int_equal(ids[1], b1);
    assert_int_equal(ids[2], c1);
    /* max bounds the answer, oldest first. */
    n = next_ids(f->sp, SUB_A, T0, NULL, ids, 2);
    assert_int_equal(n, 2);
    assert_int_equal(ids[1], b1);
    /* A key in flight: none of its deliveries, not even a later one. */
    n = next_ids(f->sp, SUB_A, T0, "A", ids, 16);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], b1);
    assert_int_equal(ids[1], c1);

    /* A retried head blocks its key until it is due. */
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, a1, T0 + 5000, why, sizeof why), LK_OK);
    n = next_ids(f->sp, SUB_A, T0 + 4999, NULL, ids, 16);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], b1);
    n = next_ids(f->sp, SUB_A, T0 + 5000, NULL, ids, 16);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], a1);
    {
        lk_spool_delivery d[1];
        size_t m = 0;
        assert_int_equal(lk_spool_next(f->sp, SUB_A, T0 + 5000, NULL, 0, d, 1, &m, why,
                                       sizeof why), LK_OK);
        assert_int_equal(m, 1);
        assert_int_equal(d[0].attempts, 1);
        lk_spool_delivery_free(&d[0]);
    }
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, a1, T0, why, sizeof why), LK_OK);
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, 424242, T0, why, sizeof why), LK_OK);

    /* Acks move the key on, in order. */
    assert_int_equal(lk_spool_ack(f->sp, SUB_A, &a1, 1, why, sizeof why), LK_OK);
    n = next_ids(f->sp, SUB_A, T0, NULL, ids, 16);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], a2);
    assert_int_equal(lk_spool_ack(f->sp, SUB_A, &a2, 1, why, sizeof why), LK_OK);
    n = next_ids(f->sp, SUB_A, T0, NULL, ids, 16);
    assert_int_equal(ids[0], b1);
    assert_int_equal(ids[1], a3);
    (void)n;
}

/* A backlog of one key in flight (or waiting for its retry) does not hide
 * the keys behind it within the front lk_spool_next reads (256 + 4 * max
 * rows); beyond it they wait, and a call stays cheap. */
static void test_deep_backlog(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A};
    uint64_t x, a0, y, z, w, ids[16];
    double t;
    int i;
    char why[256];

    x = put(f->sp, "X", "x", T0, subs, 1, NULL, NULL);
    a0 = put(f->sp, "A", "a", T0, subs, 1, NULL, NULL);
    for (i = 0; i < 200; i++)
        put(f->sp, "A", "a", T0, subs, 1, NULL, NULL);
    y = put(f->sp, "Y", "y", T0, subs, 1, NULL, NULL);
    z = put(f->sp, "Z", "z", T0, subs, 1, NULL, NULL);
    put(f->sp, "Y", "y2", T0, subs, 1, NULL, NULL);

    assert_int_equal(next_ids(f->sp, SUB_A, T0, "A", ids, 16), 3);
    assert_int_equal(ids[0], x);
    assert_int_equal(ids[1], y);
    assert_int_equal(ids[2], z);
    assert_int_equal(next_ids(f->sp, SUB_A, T0, "A", ids, 2), 2);
    assert_int_equal(ids[1], y);
    /* not skipped: A's oldest, in its place */
    assert_int_equal(next_ids(f->sp, SUB_A, T0, NULL, ids, 16), 4);
    assert_int_equal(ids[1], a0);
    /* A waiting for its retry, X skipped: only the keys behind */
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, a0, T0 + 100, why, sizeof why), LK_OK);
    assert_int_equal(next_ids(f->sp, SUB_A, T0, "X", ids, 16), 2);
    assert_int_equal(ids[0], y);
    assert_int_equal(ids[1], z);
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, z, T0 + 100, why, sizeof why), LK_OK);
    assert_int_equal(next_ids(f->sp, SUB_A, T0, "X", ids, 16), 1);
    assert_int_equal(ids[0], y);

    /* A key queued behind more than the front: it waits, and the call is cheap. */
    for (i = 0; i < 3000; i++)
        put(f->sp, "Y", "y", T0, subs, 1, NULL, NULL);
    w = put(f->sp, "W", "w", T0, subs, 1, NULL, NULL);
    t = now_s();
    assert_int_equal(next_ids(f->sp, SUB_A, T0, "X", ids, 16), 1);
    t = now_s() - t;
    assert_int_equal(ids[0], y);
    assert_true(t < 0.5);
    assert_true(ids[0] != w);
}

static void test_dead_letter(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A};
    const char *dl[] = {SUB_DL};
    lk_spool_delivery d[2];
    uint64_t id, id2;
    size_t n = 0;
    char why[256];

    id = put(f->sp, "7", "payload", T0, subs, 1, NULL, NULL);
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, id, T0, why, sizeof why), LK_OK);
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, id, T0, why, sizeof why), LK_OK);
    assert_int_equal(lk_spool_dead_letter(f->sp, SUB_A, id, dl, 1, NULL, why, sizeof why), LK_OK);
    assert_int_equal(stats(f->sp, SUB_A).depth, 0);
    assert_int_equal(stats(f->sp, SUB_A).dead_lettered, 1);
    assert_int_equal(stats(f->sp, SUB_DL).depth, 1);
    assert_int_equal(stats(f->sp, SUB_DL).enqueued, 1);
    assert_int_equal(lk_spool_next(f->sp, SUB_DL, T0, NULL, 0, d, 2, &n, why, sizeof why), LK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].message_id, id); /* the same message, a fresh delivery */
    assert_int_equal(d[0].attempts, 0);
    assert_memory_equal(d[0].data, "payload", 7);
    assert_int_equal(d[0].publish_time_ms, T0);
    lk_spool_delivery_free(&d[0]);
    /* Again (no longer queued in a): nothing changes. */
    assert_int_equal(lk_spool_dead_letter(f->sp, SUB_A, id, dl, 1, NULL, why, sizeof why), LK_OK);
    assert_int_equal(stats(f->sp, SUB_DL).depth, 1);

    /* Without dead-letter subscriptions it is only counted, and the message goes. */
    id2 = put(f->sp, "7", "other", T0, subs, 1, NULL, NULL);
    assert_int_equal(lk_spool_dead_letter(f->sp, SUB_A, id2, NULL, 0, NULL, why, sizeof why), LK_OK);
    assert_int_equal(stats(f->sp, SUB_A).dead_lettered, 2);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 1);
    /* A full dead-letter queue counts it dropped there. */
    {
        lk_spool_limits one = {1, 0};
        id2 = put(f->sp, "8", "third", T0, subs, 1, NULL, NULL);
        assert_int_equal(lk_spool_dead_letter(f->sp, SUB_A, id2, dl, 1, &one, why, sizeof why),
                         LK_OK);
        assert_int_equal(stats(f->sp, SUB_DL).depth, 1);
        assert_int_equal(stats(f->sp, SUB_DL).dropped, 1);
        assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 1);
    }
}

static void test_expire_forget(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A, SUB_B};
    uint64_t n = 99, ids[16];
    char why[256];

    put(f->sp, "1", "old", T0, subs, 2, NULL, NULL);
    put(f->sp, "2", "old2", T0 + 10, subs, 2, NULL, NULL);
    put(f->sp, "1", "new", T0 + 1000, subs, 2, NULL, NULL);
    assert_int_equal(lk_spool_expire(f->sp, SUB_A, T0 + 11, &n, why, sizeof why), LK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(stats(f->sp, SUB_A).expired, 2);
    assert_int_equal(stats(f->sp, SUB_A).depth, 1);
    assert_int_equal(stats(f->sp, SUB_A).bytes, 3);
    assert_int_equal(stats(f->sp, SUB_A).oldest_ms, T0 + 1000);
    assert_int_equal(next_ids(f->sp, SUB_A, T0 + 2000, NULL, ids, 16), 1);
    /* b still has them all: the messages stay. */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 3);
    assert_int_equal(lk_spool_expire(f->sp, SUB_A, T0 + 11, &n, why, sizeof why), LK_OK);
    assert_int_equal(n, 0);

    assert_int_equal(lk_spool_forget(f->sp, SUB_B, why, sizeof why), LK_OK);
    assert_int_equal(stats(f->sp, SUB_B).enqueued, 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM deliveries"), 1);
    assert_int_equal(lk_spool_forget(f->sp, SUB_A, why, sizeof why), LK_OK);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM queues"), 0);
    assert_int_equal(lk_spool_forget(f->sp, SUB_A, why, sizeof why), LK_OK);
}

static int collect_sub(void *arg, const char *sub, const lk_spool_stats *s)
{
    char *out = arg;
    char line[200];
    snprintf(line, sizeof line, "%s=%llu;", sub, (unsigned long long)s->depth);
    strcat(out, line);
    return 0;
}

static int stop_first(void *arg, const char *sub, const lk_spool_stats *s)
{
    (void)sub;
    (void)s;
    ++*(int *)arg;
    return 1;
}

static void test_stats_list(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_B, SUB_A};
    char out[1000] = "", why[256];
    int calls = 0;

    put(f->sp, "1", "x", T0, subs, 2, NULL, NULL);
    put(f->sp, "1", "y", T0, subs, 1, NULL, NULL);
    assert_int_equal(lk_spool_stats_list(f->sp, collect_sub, out, why, sizeof why), LK_OK);
    assert_string_equal(out, SUB_A "=1;" SUB_B "=2;");
    assert_int_equal(lk_spool_stats_list(f->sp, stop_first, &calls, why, sizeof why), LK_OK);
    assert_int_equal(calls, 1);
}

/* A full queue drops that subscription's copy (counted, bit set); the others
 * still get it. */
static void test_bounds(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_B, SUB_A};
    lk_spool_limits lim = {2, 0}, bytes = {0, 10};
    uint32_t full = 0;
    uint64_t id;

    put(f->sp, "1", "m1", T0, subs, 2, &lim, &full);
    assert_int_equal(full, 0);
    put(f->sp, "1", "m2", T0, subs + 1, 1, &lim, &full); /* a only: a full, b not */
    assert_int_equal(full, 0);
    id = put(f->sp, "1", "m3", T0, subs, 2, &lim, &full);
    assert_int_equal(full, 2); /* bit 1: subs[1] = a */
    assert_true(id > 0);
    assert_int_equal(stats(f->sp, SUB_A).depth, 2);
    assert_int_equal(stats(f->sp, SUB_A).dropped, 1);
    assert_int_equal(stats(f->sp, SUB_A).enqueued, 2);
    assert_int_equal(stats(f->sp, SUB_B).depth, 2);
    assert_int_equal(stats(f->sp, SUB_B).dropped, 0);
    /* Every subscription full: nothing is stored. */
    put(f->sp, "1", "m4", T0, subs + 1, 1, &lim, &full);
    assert_int_equal(full, 1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 3);
    /* A byte bound: b has 4 bytes; 6 more fit, 7 do not. */
    put(f->sp, "1", "sixsix", T0, subs, 1, &bytes, &full);
    assert_int_equal(full, 0);
    put(f->sp, "1", "x", T0, subs, 1, &bytes, &full);
    assert_int_equal(full, 1);
    assert_int_equal(stats(f->sp, SUB_B).bytes, 10);
    /* The same subscription named twice is queued once. */
    {
        const char *twice[] = {"projects/p/subscriptions/c", "projects/p/subscriptions/c"};
        put(f->sp, "1", "dup", T0, twice, 2, NULL, &full);
        assert_int_equal(full, 0);
        assert_int_equal(stats(f->sp, twice[0]).depth, 1);
    }
}

/* Two handles ("the broker" and "latchkeyd") on one file; a writer holding
 * the lock past busy_ms: LK_ERR_REG_BUSY and nothing stored. */
static void test_two_handles_busy(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A};
    lk_spool *other = NULL;
    lk_spool_msg m = {TOPIC, "1", (const uint8_t *)"z", 1, "{}", T0};
    uint64_t id = 5, ids[16];
    uint32_t full = 5;
    sqlite3 *db = NULL;
    char why[256];
    lk_err err;

    assert_int_equal(lk_spool_open(f->path, 0, 2000, &other, why, sizeof why), LK_OK);
    id = put(f->sp, "1", "from the broker", T0, subs, 1, NULL, NULL);
    assert_int_equal(next_ids(other, SUB_A, T0, NULL, ids, 16), 1);
    assert_int_equal(ids[0], id);
    assert_int_equal(lk_spool_ack(other, SUB_A, &id, 1, why, sizeof why), LK_OK);
    assert_int_equal(stats(f->sp, SUB_A).acked, 1);

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    lk_spool_close(other);
    assert_int_equal(lk_spool_open(f->path, 0, 50, &other, why, sizeof why), LK_OK);
    err = lk_spool_enqueue(other, &m, subs, 1, NULL, &id, &full, why, sizeof why);
    assert_int_equal(err, LK_ERR_REG_BUSY);
    assert_int_equal(id, 0);
    assert_int_equal(full, 0);
    assert_non_null(strstr(why, "locked"));
    /* Readers are not blocked by the writer. */
    assert_int_equal(stats(other, SUB_A).enqueued, 1);
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(stats(other, SUB_A).enqueued, 1);
    assert_int_equal(lk_spool_enqueue(other, &m, subs, 1, NULL, &id, &full, why, sizeof why), LK_OK);
    lk_spool_close(other);
}

static void test_reopen(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A, SUB_B};
    uint64_t id, id2, ids[16];
    char why[256];

    id = put(f->sp, "9", "kept", T0, subs, 2, NULL, NULL);
    assert_int_equal(lk_spool_retry(f->sp, SUB_A, id, T0 + 7, why, sizeof why), LK_OK);
    lk_spool_close(f->sp);
    f->sp = NULL;
    assert_int_equal(lk_spool_open(f->path, 0, 1000, &f->sp, why, sizeof why), LK_OK);
    assert_int_equal(next_ids(f->sp, SUB_A, T0 + 7, NULL, ids, 16), 1);
    assert_int_equal(ids[0], id);
    assert_int_equal(next_ids(f->sp, SUB_A, T0 + 6, NULL, ids, 16), 0);
    assert_int_equal(stats(f->sp, SUB_B).depth, 1);
    /* Ids are never reused, even after every message went. */
    assert_int_equal(lk_spool_forget(f->sp, SUB_A, why, sizeof why), LK_OK);
    assert_int_equal(lk_spool_forget(f->sp, SUB_B, why, sizeof why), LK_OK);
    lk_spool_close(f->sp);
    assert_int_equal(lk_spool_open(f->path, 0, 1000, &f->sp, why, sizeof why), LK_OK);
    id2 = put(f->sp, "9", "later", T0, subs, 1, NULL, NULL);
    assert_true(id2 > id);
    /* The WAL files stay for read-only readers. */
    assert_int_equal(access(f->path, F_OK), 0);
    {
        char wal[4300];
        snprintf(wal, sizeof wal, "%s-wal", f->path);
        lk_spool_close(f->sp);
        f->sp = NULL;
        assert_int_equal(access(wal, F_OK), 0);
        assert_int_equal(lk_spool_open(f->path, 0, 1000, &f->sp, why, sizeof why), LK_OK);
    }
}

/* A process killed with SIGKILL right after its enqueues returned loses
 * none of them: the child reports each id on a pipe after the call returned,
 * the parent kills it mid-stream and reopens the file. */
static void test_kill9(void **state)
{
    fixture *f = *state;
    int fds[2];
    pid_t pid;
    uint64_t got[400];
    size_t n = 0, i;
    int status;
    char why[256];

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *subs[] = {SUB_A, SUB_B};
        lk_spool *sp = NULL;
        int k;
        close(fds[0]);
        if (lk_spool_open(f->path, 0, 5000, &sp, why, sizeof why) != LK_OK)
            _exit(3);
        for (k = 0;; k++) {
            char text[32];
            lk_spool_msg m = {TOPIC, "5", (const uint8_t *)text, 0, "{}", T0 + k};
            uint64_t id = 0;
            m.data_len = (size_t)snprintf(text, sizeof text, "burst %d", k);
            if (lk_spool_enqueue(sp, &m, subs, 2, NULL, &id, NULL, why, sizeof why) != LK_OK)
                _exit(4);
            if (write(fds[1], &id, sizeof id) != sizeof id)
                _exit(5);
        }
    }
    close(fds[1]);
    while (n < 300 && read(fds[0], &got[n], sizeof got[n]) == sizeof got[n])
        n++;
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    close(fds[0]);
    assert_int_equal(n, 300);
    lk_spool_close(f->sp);
    assert_int_equal(lk_spool_open(f->path, 0, 1000, &f->sp, why, sizeof why), LK_OK);
    assert_true(stats(f->sp, SUB_A).depth >= 300);
    assert_int_equal(stats(f->sp, SUB_A).depth, stats(f->sp, SUB_B).depth);
    for (i = 0; i < n; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM deliveries WHERE message = %llu",
                 (unsigned long long)got[i]);
        assert_int_equal(count_rows(f->path, sql), 2);
    }
}

static void test_readonly(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A};
    lk_spool *ro = NULL;
    lk_spool_msg m = {TOPIC, "1", (const uint8_t *)"z", 1, "{}", T0};
    uint64_t id, n = 3;
    char why[256], missing[4300];

    id = put(f->sp, "1", "z", T0, subs, 1, NULL, NULL);
    assert_int_equal(lk_spool_open(f->path, LK_SPOOL_READONLY, 1000, &ro, why, sizeof why), LK_OK);
    assert_int_equal(stats(ro, SUB_A).depth, 1);
    assert_int_equal(next_ids(ro, SUB_A, T0, NULL, &n, 1), 1);
    assert_int_equal(lk_spool_enqueue(ro, &m, subs, 1, NULL, &n, NULL, why, sizeof why),
                     LK_ERR_STATE);
    assert_int_equal(n, 0);
    assert_non_null(strstr(why, "read-only"));
    assert_int_equal(lk_spool_ack(ro, SUB_A, &id, 1, why, sizeof why), LK_ERR_STATE);
    assert_int_equal(lk_spool_retry(ro, SUB_A, id, T0, why, sizeof why), LK_ERR_STATE);
    assert_int_equal(lk_spool_dead_letter(ro, SUB_A, id, NULL, 0, NULL, why, sizeof why),
                     LK_ERR_STATE);
    n = 3;
    assert_int_equal(lk_spool_expire(ro, SUB_A, T0 + 1, &n, why, sizeof why), LK_ERR_STATE);
    assert_int_equal(n, 0);
    assert_int_equal(lk_spool_forget(ro, SUB_A, why, sizeof why), LK_ERR_STATE);
    lk_spool_close(ro);
    assert_int_equal(stats(f->sp, SUB_A).depth, 1);
    /* READONLY never creates. */
    snprintf(missing, sizeof missing, "%s/none.db", f->dir);
    assert_int_equal(lk_spool_open(missing, LK_SPOOL_READONLY | LK_SPOOL_CREATE, 1000, &ro, why,
                                   sizeof why), LK_ERR_FILE_MISSING);
    assert_null(ro);
    assert_int_equal(access(missing, F_OK), -1);
}

/*
 * A failure that cannot be written (lk_spool_retry refused: here a read-only
 * handle, in the daemon a failing disk) leaves the delivery as it was: due at
 * once, attempts unchanged. latchkeyd's pusher therefore holds the device in
 * memory for the backoff by passing its ordering key as a skipped key; this
 * proves that doing so holds that device only, and that the delivery comes
 * back unchanged once the key is no longer skipped.
 */
static void test_retry_unwritten_stays_due(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A};
    lk_spool *ro = NULL;
    lk_spool_delivery d[2];
    uint64_t a, b, ids[4];
    size_t n = 0;
    char why[256];

    a = put(f->sp, "7", "a", T0, subs, 1, NULL, NULL);
    b = put(f->sp, "8", "b", T0 + 1, subs, 1, NULL, NULL);
    assert_int_equal(lk_spool_open(f->path, LK_SPOOL_READONLY, 1000, &ro, why, sizeof why), LK_OK);
    assert_int_equal(lk_spool_retry(ro, SUB_A, a, T0 + 60000, why, sizeof why), LK_ERR_STATE);
    lk_spool_close(ro);
    /* Still due now: without a hold it would be sent again at once. */
    assert_int_equal(next_ids(f->sp, SUB_A, T0, NULL, ids, 4), 2);
    assert_true(ids[0] == a && ids[1] == b);
    /* Held by its key: the other device still goes. */
    assert_int_equal(next_ids(f->sp, SUB_A, T0, "7", ids, 4), 1);
    assert_true(ids[0] == b);
    /* Released: the same delivery, its attempts not counted. */
    assert_int_equal(lk_spool_next(f->sp, SUB_A, T0, NULL, 0, d, 2, &n, why, sizeof why), LK_OK);
    assert_int_equal(n, 2);
    assert_true(d[0].message_id == a);
    assert_int_equal(d[0].attempts, 0);
    lk_spool_delivery_free(&d[0]);
    lk_spool_delivery_free(&d[1]);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_bad_files(void **state)
{
    fixture *f = *state;
    lk_spool *sp = (lk_spool *)&sp;
    sqlite3 *db = NULL;
    struct stat st;
    char p[4300], why[256];
    mode_t old;

    snprintf(p, sizeof p, "%s/missing.db", f->dir);
    assert_int_equal(lk_spool_open(p, 0, 1000, &sp, why, sizeof why), LK_ERR_FILE_MISSING);
    assert_null(sp);
    assert_non_null(strstr(why, "does not exist"));

    snprintf(p, sizeof p, "%s/text.db", f->dir);
    write_file(p, "this is not a database, it is a long enough text file to be read as one....."
                  "................................................................");
    assert_int_equal(lk_spool_open(p, LK_SPOOL_CREATE, 1000, &sp, why, sizeof why),
                     LK_ERR_STORE_FOREIGN);
    assert_non_null(strstr(why, "not a latchkey spool"));

    snprintf(p, sizeof p, "%s/empty.db", f->dir);
    write_file(p, "");
    assert_int_equal(lk_spool_open(p, 0, 1000, &sp, why, sizeof why), LK_ERR_STORE_FOREIGN);

    snprintf(p, sizeof p, "%s/other.db", f->dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1)", NULL, NULL,
                                  NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(lk_spool_open(p, LK_SPOOL_CREATE, 1000, &sp, why, sizeof why),
                     LK_ERR_STORE_FOREIGN);
    assert_int_equal(count_rows(p, "SELECT count(*) FROM sqlite_schema"), 1);

    /* A newer schema. */
    lk_spool_close(f->sp);
    f->sp = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE meta SET value = 99 WHERE key = 'schema_version'",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(lk_spool_open(f->path, 0, 1000, &sp, why, sizeof why), LK_ERR_STORE_FOREIGN);
    assert_non_null(strstr(why, "newer"));
    assert_int_equal(lk_spool_open(f->path, LK_SPOOL_READONLY, 1000, &sp, why, sizeof why),
                     LK_ERR_STORE_FOREIGN);

    /* A directory. */
    assert_int_equal(lk_spool_open(f->dir, LK_SPOOL_CREATE, 1000, &sp, why, sizeof why),
                     LK_ERR_FILE_UNUSABLE);

    /* A new file is 0660 whatever the umask. */
    snprintf(p, sizeof p, "%s/new.db", f->dir);
    old = umask(027);
    assert_int_equal(lk_spool_open(p, LK_SPOOL_CREATE | LK_SPOOL_SYNC_FULL, 1000, &sp, why,
                                   sizeof why), LK_OK);
    umask(old);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    lk_spool_close(sp);

    /* Not writable: refused up front (as root, access() grants it anyway). */
    if (geteuid() != 0) {
        assert_int_equal(chmod(p, 0440), 0);
        assert_int_equal(lk_spool_open(p, 0, 1000, &sp, why, sizeof why), LK_ERR_FILE_UNUSABLE);
        assert_non_null(strstr(why, "writable"));
        assert_int_equal(lk_spool_open(p, LK_SPOOL_READONLY, 1000, &sp, why, sizeof why), LK_OK);
        lk_spool_close(sp);
    }
}

static void test_args(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A, NULL};
    lk_spool_msg m = {TOPIC, "1", (const uint8_t *)"z", 1, "{}", T0};
    lk_spool_msg nokey = {TOPIC, NULL, (const uint8_t *)"z", 1, "{}", T0};
    lk_spool_delivery d[1];
    lk_spool_stats s;
    lk_spool *sp = NULL;
    uint64_t id = 7;
    uint32_t full = 7;
    size_t n = 7;
    char why[256];

    assert_int_equal(lk_spool_open(NULL, 0, 0, &sp, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_open(f->path, 0, -1, &sp, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_open(f->path, 64, 0, &sp, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_open(f->path, 0, 0, NULL, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_enqueue(f->sp, &m, subs, 2, NULL, &id, &full, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(id, 0);
    assert_int_equal(full, 0);
    assert_int_equal(lk_spool_enqueue(f->sp, &nokey, subs, 1, NULL, &id, &full, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(lk_spool_enqueue(NULL, &m, subs, 1, NULL, &id, &full, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(lk_spool_next(f->sp, NULL, T0, NULL, 0, d, 1, &n, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(n, 0);
    assert_int_equal(lk_spool_next(f->sp, SUB_A, T0, NULL, 1, d, 1, &n, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_ack(f->sp, SUB_A, NULL, 1, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_retry(f->sp, "", 1, T0, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_dead_letter(f->sp, SUB_A, 1, NULL, 1, NULL, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(lk_spool_expire(f->sp, NULL, T0, &id, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_spool_forget(NULL, SUB_A, why, sizeof why), LK_ERR_ARG);
    memset(&s, 0xff, sizeof s);
    assert_int_equal(lk_spool_stats_get(f->sp, NULL, &s, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(s.depth, 0);
    assert_int_equal(lk_spool_stats_list(f->sp, NULL, NULL, why, sizeof why), LK_ERR_ARG);
    /* Nothing was stored by any of them. */
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 0);
    /* No subscription at all: the message is not kept. */
    assert_int_equal(lk_spool_enqueue(f->sp, &m, NULL, 0, NULL, &id, &full, why, sizeof why), LK_OK);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM messages"), 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The broker enqueues every routed message inside its message event: the
 * cost of one, and of lk_spool_next behind a deep backlog of one key. */
static void test_bench(void **state)
{
    fixture *f = *state;
    const char *subs[] = {SUB_A, SUB_B};
    uint8_t payload[256];
    uint64_t ids[16];
    double t;
    int i, count = 5000;
    char why[256];

    memset(payload, 'p', sizeof payload);
    t = now_s();
    for (i = 0; i < count; i++) {
        char key[16];
        lk_spool_msg m = {TOPIC, key, payload, sizeof payload,
                          "{\"deviceId\":\"dev\",\"deviceNumId\":\"123\"}", T0 + i};
        snprintf(key, sizeof key, "%d", i % 100);
        assert_int_equal(lk_spool_enqueue(f->sp, &m, subs, 2, NULL, NULL, NULL, why, sizeof why),
                         LK_OK);
    }
    t = now_s() - t;
    printf("spool: %.1f us per enqueue (256-byte payload, 2 subscriptions, synchronous=NORMAL)\n",
           t * 1e6 / count);
    t = now_s();
    assert_int_equal(next_ids(f->sp, SUB_A, T0 + count, NULL, ids, 16), 16);
    printf("spool: %.1f us for next(16) over %d deliveries of 100 keys\n", (now_s() - t) * 1e6,
           count);
    /* One key with a deep backlog in flight: the scan is bounded. */
    {
        const char *sk[] = {"0"};
        lk_spool_delivery d[16];
        size_t n = 0, k;
        t = now_s();
        assert_int_equal(lk_spool_next(f->sp, SUB_A, T0 + count, sk, 1, d, 16, &n, why, sizeof why),
                         LK_OK);
        printf("spool: %.1f us for next(16) skipping one key of 100\n", (now_s() - t) * 1e6);
        assert_int_equal(n, 16);
        for (k = 0; k < n; k++) {
            assert_string_not_equal(d[k].ordering_key, "0");
            lk_spool_delivery_free(&d[k]);
        }
    }
    /* 99 keys of 100 in flight: the first pass stops at its bound, the
     * second finds the last key by its index. */
    {
        char names[99][8];
        const char *sk[99];
        lk_spool_delivery d[16];
        size_t n = 0, k;
        for (k = 0; k < 99; k++) {
            snprintf(names[k], sizeof names[k], "%zu", k);
            sk[k] = names[k];
        }
        t = now_s();
        assert_int_equal(lk_spool_next(f->sp, SUB_A, T0 + count, sk, 99, d, 16, &n, why, sizeof why),
                         LK_OK);
        printf("spool: %.1f us for next(16) with 99 keys of 100 in flight\n", (now_s() - t) * 1e6);
        assert_int_equal(n, 1);
        assert_string_equal(d[0].ordering_key, "99");
        assert_int_equal(d[0].message_id, ids[0] + 99);
        lk_spool_delivery_free(&d[0]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enqueue_next_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_per_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_handles_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_unwritten_stays_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
