/*
 * test_registry_console.c — the console's fleet data (lk_reg_console.h) on
 * real SQLite files, no mocks:
 *
 *   - lk_registry_search_devices: every filter and every combination of
 *     them, walked page by page, gives exactly what a plain scan of the
 *     table with the documented meaning gives (an oracle query that uses
 *     no index), in id order, with no duplicate or gap, on 9,000 devices
 *     whose filters are dense (thousands of matches: an id-ordered index
 *     drives) and sparse (a few: the filter's own index drives); the
 *     earliest credential expiry of each device; another registry's
 *     devices never show;
 *   - page boundaries: a page of 1, a last page that ends exactly, a cursor
 *     before, inside and after a prefix, a cursor that is no device's id,
 *     devices created and deleted between pages;
 *   - refusals (each argument), and that nothing is written;
 *   - lk_registry_fleet_counts: each registry of the project with its counts
 *     (as the oracle counts them), not another project's, not a staging
 *     registry, and refusals;
 *   - the plans: every statement the search can run (each driver with
 *     every set of filters, with and without a prefix and a cursor) walks
 *     the driver's index, in id order with no sort for an id-ordered one,
 *     and never scans the devices table (EXPLAIN QUERY PLAN);
 *   - the console's indexes exist after a migration from the version before.
 */
#include "lk_test_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_reg_console.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"
#include "service/registry/schema.h"
#include "service/registry/sqlite_internal.h"

#define T0 LK_TEST_T0 /* the tests' "now" */
#define DAY 86400LL
#define NDEV 9000
#define STR_(x) #x
#define STR(x) STR_(x)
#define CONSOLE_BEFORE STR(LK_REG_SCHEMA_CONSOLE) " - 1"

static const lk_reg_name NAME = {"my-project", "us-central1", "reg1"};
static const lk_reg_name NAME2 = {"my-project", "europe-west1", "reg2"};

/* Run one SQL script on the database through a connection of its own. */
static void sql(struct lk_test_reg *f, const char *text)
{
    sqlite3 *db;
    char *msg = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, "PRAGMA foreign_keys=ON;", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, text, NULL, NULL, &msg) != SQLITE_OK)
        print_message("sql: %s\n", msg != NULL ? msg : "?");
    assert_null(msg);
    sqlite3_close(db);
}

static void mkreg(struct lk_test_reg *f, const lk_reg_name *n)
{
    OK(lk_registry_create_registry(f->reg, n, 0, 0, W));
}

/* count devices dev-NNNNN of registry n, their attributes drawn from x (the
 * order of insertion, which is not the id order): presence, blocked,
 * gateway type, creation, heartbeat, event and state times, and credentials
 * (some with no expiry, some expired, some expiring later; a second one on
 * some) in proportions that make each filter match thousands of devices at
 * one setting and a few at another. */
#define REG_OF "(SELECT id FROM registries WHERE project = '%s' AND location = '%s' AND registry_id = '%s')"
static void populate(struct lk_test_reg *f, const lk_reg_name *n, int count)
{
    char script[4096];
    snprintf(script, sizeof script,
             "BEGIN;"
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < %d) "
             "INSERT INTO devices(registry, device_id, created, presence, blocked, gateway_type, "
             "last_heartbeat, last_event, last_state) "
             "SELECT " REG_OF ", "
             "printf('dev-%%05d', (x * 7919) %% %d), "
             "CASE WHEN x %% 5 = 0 THEN %lld - 600 ELSE %lld - 100 * %lld END, "
             "CASE WHEN x %% 7 = 0 THEN 1 WHEN x %% 7 IN (1, 2) THEN 2 ELSE 0 END, "
             "x %% 13 = 0, CASE x %% 11 WHEN 0 THEN 1 WHEN 1 THEN 2 ELSE 0 END, "
             "CASE WHEN x %% 3 = 0 THEN 0 ELSE %lld - (x %% 100) * 3600 END, "
             "CASE WHEN x %% 4 = 0 THEN %lld - (x %% 50) * 60 ELSE 0 END, "
             "CASE WHEN x %% 17 = 0 THEN %lld - 10 ELSE 0 END FROM c;"
             "INSERT INTO device_credentials(num_id, pos, format, pem, expires) "
             "SELECT num_id, 0, 1, 'pem', CASE WHEN num_id %% 8 = 1 THEN 0 "
             "ELSE %lld + ((num_id %% 60) - 10) * %lld END FROM devices "
             "WHERE num_id %% 4 <> 0 AND registry = " REG_OF ";"
             "INSERT INTO device_credentials(num_id, pos, format, pem, expires) "
             "SELECT num_id, 1, 1, 'pem', %lld + (num_id %% 90) * %lld FROM devices "
             "WHERE num_id %% 10 = 3 AND registry = " REG_OF ";"
             "COMMIT;",
             count - 1, n->project, n->location, n->registry, count, T0, T0, DAY, T0, T0, T0, T0,
             DAY, n->project, n->location, n->registry, T0 - 5 * DAY, DAY, n->project, n->location,
             n->registry);
    sql(f, script);
}

/* ---- the oracle: a scan with the documented meaning ---- */

struct list {
    char **ids;
    int64_t *exp;
    size_t n, cap;
};

static void list_add(struct list *l, const char *id, int64_t exp)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->ids = realloc(l->ids, l->cap * sizeof *l->ids);
        l->exp = realloc(l->exp, l->cap * sizeof *l->exp);
        assert_true(l->ids != NULL && l->exp != NULL);
    }
    l->ids[l->n] = strdup(id);
    assert_non_null(l->ids[l->n]);
    l->exp[l->n++] = exp;
}

static void list_free(struct list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->ids[i]);
    free(l->ids);
    free(l->exp);
    memset(l, 0, sizeof *l);
}

static void oracle(sqlite3 *db, const lk_reg_name *n, const lk_reg_search *s, int64_t now,
                   struct list *out)
{
    static const char q[] =
        "SELECT d.device_id, coalesce((SELECT min(c.expires) FROM device_credentials c "
        "WHERE c.num_id = d.num_id AND c.expires <> 0), 0) FROM devices d NOT INDEXED "
        "JOIN registries r ON r.id = d.registry WHERE r.location = ?1 AND r.registry_id = ?2 "
        "AND (?3 IS NULL OR substr(d.device_id, 1, length(?3)) = ?3) "
        "AND (?4 < 0 OR d.presence = ?4) AND (?5 = 0 OR d.blocked = 1) "
        "AND (?6 = 0 OR d.gateway_type = 1) "
        "AND (?7 = 0 OR max(d.last_heartbeat, d.last_event, d.last_state, d.created) < ?9 - ?7 * 3600) "
        "AND (?8 < 0 OR EXISTS (SELECT 1 FROM device_credentials c WHERE "
        "c.num_id = d.num_id AND c.expires <> 0 AND c.expires <= ?9 + ?8 * 86400)) "
        "ORDER BY d.device_id";
    sqlite3_stmt *st;
    memset(out, 0, sizeof *out);
    assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, n->location, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, n->registry, -1, SQLITE_STATIC);
    if (s->id_prefix != NULL)
        sqlite3_bind_text(st, 3, s->id_prefix, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, s->presence);
    sqlite3_bind_int(st, 5, s->blocked_only);
    sqlite3_bind_int(st, 6, s->gateways_only);
    sqlite3_bind_int64(st, 7, s->silent_hours);
    sqlite3_bind_int64(st, 8, s->expiring_days);
    sqlite3_bind_int64(st, 9, now);
    while (sqlite3_step(st) == SQLITE_ROW)
        list_add(out, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
}

/* ---- the search, page by page ---- */

static int got_cb(void *arg, const lk_reg_device *d, int64_t exp)
{
    struct list *l = arg;
    assert_string_equal(d->registry, NAME.registry);
    assert_true(d->num_id != 0);
    list_add(l, d->id, exp);
    return 0;
}

/* Every page of s (s->limit each) from the start: all the ids, each page
 * but the last full and flagged "more", the last not. *pages gets the
 * count. */
static void walk(struct lk_test_reg *f, const lk_reg_name *n, lk_reg_search s, struct list *out, int *pages)
{
    char last[LK_ID_MAX + 1];
    memset(out, 0, sizeof *out);
    *pages = 0;
    s.after_id = NULL;
    for (;;) {
        size_t before = out->n;
        int more = -1;
        OK(lk_registry_search_devices(f->reg, n, &s, got_cb, out, &more, W));
        ++*pages;
        assert_true(out->n - before <= s.limit);
        if (!more)
            break;
        assert_int_equal(out->n - before, s.limit);
        snprintf(last, sizeof last, "%s", out->ids[out->n - 1]);
        s.after_id = last;
    }
}

static void same(const struct list *got, const struct list *want, const char *what)
{
    if (got->n != want->n)
        print_message("%s: got %zu devices, want %zu\n", what, got->n, want->n);
    assert_int_equal(got->n, want->n);
    for (size_t i = 0; i < got->n; i++) {
        if (strcmp(got->ids[i], want->ids[i]) != 0 || got->exp[i] != want->exp[i])
            print_message("%s: #%zu got %s (expiry %lld), want %s (%lld)\n", what, i, got->ids[i],
                          (long long)got->exp[i], want->ids[i], (long long)want->exp[i]);
        assert_string_equal(got->ids[i], want->ids[i]);
        assert_int_equal(got->exp[i], want->exp[i]);
    }
}

static lk_reg_search any(unsigned limit)
{
    lk_reg_search s;
    memset(&s, 0, sizeof s);
    s.presence = -1;
    s.expiring_days = -1;
    s.limit = limit;
    return s;
}

/* Every combination of the filters, each at a dense and a sparse setting,
 * against the oracle. */
static void test_search_filters(void **state)
{
    struct lk_test_reg *f = *state;
    static const char *const prefixes[] = {NULL, "dev-01", "dev-0111"};
    static const unsigned silent[] = {0, 1, 98};
    static const int expiring[] = {-1, 0, 3650};
    sqlite3 *db;
    size_t combos = 0, matched = 0, nonempty = 0;

    mkreg(f, &NAME);
    mkreg(f, &NAME2);
    populate(f, &NAME, NDEV);
    populate(f, &NAME2, 3000); /* the same ids: must never show in NAME's */
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++)
        for (int pres = -1; pres <= 2; pres++)
            for (int b = 0; b <= 1; b++)
                for (int g = 0; g <= 1; g++)
                    for (size_t si = 0; si < sizeof silent / sizeof *silent; si++)
                        for (size_t e = 0; e < sizeof expiring / sizeof *expiring; e++) {
                            lk_reg_search s = any(200);
                            struct list want, got;
                            char what[160];
                            int pages;
                            s.id_prefix = prefixes[p];
                            s.presence = pres;
                            s.blocked_only = b;
                            s.gateways_only = g;
                            s.silent_hours = silent[si];
                            s.expiring_days = expiring[e];
                            snprintf(what, sizeof what,
                                     "prefix %s presence %d blocked %d gateway %d silent %u "
                                     "expiring %d",
                                     s.id_prefix ? s.id_prefix : "-", pres, b, g, s.silent_hours,
                                     s.expiring_days);
                            oracle(db, &NAME, &s, f->now, &want);
                            walk(f, &NAME, s, &got, &pages);
                            same(&got, &want, what);
                            combos++;
                            matched += want.n;
                            nonempty += want.n > 0;
                            list_free(&want);
                            list_free(&got);
                        }
    sqlite3_close(db);
    print_message("search: %zu combinations, %zu non-empty, %zu devices matched\n", combos,
                  nonempty, matched);
    /* the data make most combinations match something */
    assert_true(nonempty > combos / 3);
}

/* Dense and sparse single filters, with small pages (several pages each):
 * the driver changes at CAP (4096) matches; both sides agree with the
 * oracle. */
static void test_search_small_pages(void **state)
{
    struct lk_test_reg *f = *state;
    sqlite3 *db;
    struct list want, got;
    int pages;
    lk_reg_search s;

    mkreg(f, &NAME);
    populate(f, &NAME, NDEV);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (int k = 0; k < 6; k++) {
        s = any(k % 2 ? 7 : 1);
        if (k < 2)
            s.silent_hours = 1;          /* dense */
        else if (k < 4)
            s.silent_hours = 98;         /* sparse */
        else
            s.expiring_days = k == 4 ? 3650 : 0;
        if (s.limit == 1 && k < 2)
            s.id_prefix = "dev-001"; /* a page of 1 through a dense filter: keep it short */
        oracle(db, &NAME, &s, f->now, &want);
        walk(f, &NAME, s, &got, &pages);
        same(&got, &want, "small pages");
        assert_int_equal(pages, (int)(want.n / s.limit) + 1 - (want.n > 0 && want.n % s.limit == 0));
        list_free(&want);
        list_free(&got);
    }
    /* the whole registry, 200 a page: 60 full pages, the last ends exactly */
    s = any(200);
    walk(f, &NAME, s, &got, &pages);
    assert_int_equal(got.n, NDEV);
    assert_int_equal(pages, NDEV / 200);
    for (size_t i = 1; i < got.n; i++)
        assert_true(strcmp(got.ids[i - 1], got.ids[i]) < 0);
    list_free(&got);
    sqlite3_close(db);
}

static char *one_page(struct lk_test_reg *f, const lk_reg_search *s, int *more)
{
    struct list l;
    char *out = calloc(1, 1);
    size_t len = 0;
    memset(&l, 0, sizeof l);
    OK(lk_registry_search_devices(f->reg, &NAME, s, got_cb, &l, more, W));
    for (size_t i = 0; i < l.n; i++) {
        size_t n = strlen(l.ids[i]);
        out = realloc(out, len + n + 2);
        if (len > 0)
            out[len++] = ' ';
        memcpy(out + len, l.ids[i], n + 1);
        len += n;
    }
    list_free(&l);
    return out;
}

#define PAGE_IS(s, want, want_more)                                                          \
    do {                                                                                     \
        int m_ = -1;                                                                         \
        char *p_ = one_page(f, (s), &m_);                                                    \
        if (strcmp(p_, (want)) != 0 || m_ != (want_more))                                    \
            print_message("%s:%d: got \"%s\" more %d; want \"%s\" more %d\n", __FILE__,     \
                          __LINE__, p_, m_, (want), (want_more));                            \
        assert_string_equal(p_, (want));                                                     \
        assert_int_equal(m_, (want_more));                                                   \
        free(p_);                                                                            \
    } while (0)

static void mkdev(struct lk_test_reg *f, const char *id)
{
    lk_reg_device_spec d;
    memset(&d, 0, sizeof d);
    d.id = id;
    OK(lk_registry_create_device(f->reg, &NAME, &d, NULL, W));
}

static void test_search_cursor(void **state)
{
    struct lk_test_reg *f = *state;
    static const char *const ids[] = {"aa0", "ab1", "ab2", "ab3", "abc", "ac0", "B00", "b00"};
    lk_reg_search s = any(2);

    mkreg(f, &NAME);
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++)
        mkdev(f, ids[i]);
    /* byte order: upper case first */
    PAGE_IS(&s, "B00 aa0", 1);
    s.id_prefix = "ab";
    PAGE_IS(&s, "ab1 ab2", 1);
    s.after_id = "ab2";
    PAGE_IS(&s, "ab3 abc", 0);  /* ends exactly: no more */
    s.after_id = "aa0";         /* before the prefix: from its start */
    PAGE_IS(&s, "ab1 ab2", 1);
    s.after_id = "abc";         /* the last */
    PAGE_IS(&s, "", 0);
    s.after_id = "zzz";         /* past everything */
    PAGE_IS(&s, "", 0);
    s.after_id = "ab15";        /* no device's id: the next one after it */
    PAGE_IS(&s, "ab2 ab3", 1);
    s.id_prefix = "b";          /* case-sensitive */
    s.after_id = NULL;
    PAGE_IS(&s, "b00", 0);
    s.id_prefix = "abc";        /* a whole id is a prefix of itself */
    PAGE_IS(&s, "abc", 0);
    s.id_prefix = "abcd";
    PAGE_IS(&s, "", 0);
    s.id_prefix = "a~";         /* the highest id character */
    PAGE_IS(&s, "", 0);

    /* created and deleted between pages: no repeat, no gap among the rest */
    s = any(2);
    s.id_prefix = "a";
    PAGE_IS(&s, "aa0 ab1", 1);
    s.after_id = "ab1";
    mkdev(f, "aa5");            /* before the cursor: not seen, by design */
    mkdev(f, "ab25");           /* after: seen */
    OK(lk_registry_delete_device(f->reg, &NAME, "ab2", W));
    PAGE_IS(&s, "ab25 ab3", 1);
    s.after_id = "ab3";
    PAGE_IS(&s, "abc ac0", 0);
}

static void test_search_refusals(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_search s = any(10);
    struct list l;
    int more = -1;
    lk_reg_name nope = {"my-project", "us-central1", "nope"};

    memset(&l, 0, sizeof l);
    mkreg(f, &NAME);
    mkdev(f, "dev-1");
#define SEARCH(sp) lk_registry_search_devices(f->reg, &NAME, (sp), got_cb, &l, &more, W)
    s.limit = 0;
    REFUSE(LK_ERR_ARG, "page size 0 is out of range: 1 to 200", SEARCH(&s));
    assert_int_equal(more, 0);
    s.limit = 201;
    REFUSE(LK_ERR_ARG, "page size 201", SEARCH(&s));
    s = any(10);
    s.presence = 3;
    REFUSE(LK_ERR_ARG, "presence 3", SEARCH(&s));
    s.presence = -2;
    REFUSE(LK_ERR_ARG, "presence -2", SEARCH(&s));
    s = any(10);
    s.silent_hours = LK_REG_SILENT_HOURS_MAX + 1;
    REFUSE(LK_ERR_ARG, "silent for 87601 hours", SEARCH(&s));
    s = any(10);
    s.expiring_days = -2;
    REFUSE(LK_ERR_ARG, "expiring within -2 days", SEARCH(&s));
    s.expiring_days = (int)LK_REG_EXPIRING_DAYS_MAX + 1;
    REFUSE(LK_ERR_ARG, "expiring within 3651 days", SEARCH(&s));
    s = any(10);
    s.id_prefix = "1dev";
    REFUSE(LK_ERR_REG_INVALID, "is not the start of a device id", SEARCH(&s));
    s.id_prefix = "dev 1";
    REFUSE(LK_ERR_REG_INVALID, "is not the start of a device id", SEARCH(&s));
    s.id_prefix = "dev/";
    REFUSE(LK_ERR_REG_INVALID, "is not the start of a device id", SEARCH(&s));
    s = any(10);
    s.after_id = "1ab";
    REFUSE(LK_ERR_REG_INVALID, "the page cursor '1ab' is not a device id", SEARCH(&s));
    s.after_id = "ab";
    REFUSE(LK_ERR_REG_INVALID, "is not a device id", SEARCH(&s));
    s = any(10);
    REFUSE(LK_ERR_REG_NOT_FOUND, "",
           lk_registry_search_devices(f->reg, &nope, &s, got_cb, &l, &more, W));
    REFUSE(LK_ERR_ARG, "", lk_registry_search_devices(f->reg, &NAME, NULL, got_cb, &l, &more, W));
    REFUSE(LK_ERR_ARG, "", lk_registry_search_devices(f->reg, &NAME, &s, NULL, &l, &more, W));
    REFUSE(LK_ERR_ARG, "", lk_registry_search_devices(f->reg, &NAME, &s, got_cb, &l, NULL, W));
    assert_int_equal(l.n, 0);
    /* an empty prefix is no filter */
    s.id_prefix = "";
    OK(SEARCH(&s));
    assert_int_equal(l.n, 1);
    list_free(&l);
#undef SEARCH
}

/* ---- counts ---- */

struct counts {
    char names[8][80];
    lk_reg_fleet_counts c[8];
    size_t n;
};

static int counts_cb(void *arg, const lk_reg_fleet_counts *c)
{
    struct counts *k = arg;
    assert_true(k->n < 8);
    snprintf(k->names[k->n], sizeof k->names[0], "%s/%s/%s", c->project, c->location, c->registry);
    k->c[k->n++] = *c;
    return 0;
}

static int64_t q1(struct lk_test_reg *f, const char *text)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    int64_t v;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, text, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void test_fleet_counts(void **state)
{
    struct lk_test_reg *f = *state;
    struct counts k;
    lk_reg_name other = {"other-project", "us-central1", "reg1"};
    char q[256];

    mkreg(f, &NAME);
    mkreg(f, &NAME2);
    mkreg(f, &other);
    populate(f, &NAME, 5000);
    populate(f, &other, 100);
    /* a staged import's hidden registry is not one of the project's */
    sql(f, "INSERT INTO registries(project, location, registry_id, mqtt, http, created) "
           "VALUES('my-project', 'us-central1', '~import-1-x', 1, 1, 0);");
    memset(&k, 0, sizeof k);
    OK(lk_registry_fleet_counts(f->reg, "my-project", counts_cb, &k, W));
    assert_int_equal(k.n, 2);
    /* by location, then registry id */
    assert_string_equal(k.names[0], "my-project/europe-west1/reg2");
    assert_string_equal(k.names[1], "my-project/us-central1/reg1");
    assert_int_equal(k.c[0].devices, 0);
    assert_int_equal(k.c[0].online + k.c[0].offline + k.c[0].never + k.c[0].blocked, 0);
    assert_int_equal(k.c[1].devices, 5000);
#define COUNT(cond)                                                                          \
    (snprintf(q, sizeof q, "SELECT count(*) FROM devices NOT INDEXED WHERE registry = "     \
              "(SELECT id FROM registries WHERE registry_id = 'reg1' AND project = "         \
              "'my-project') AND %s", cond), (uint64_t)q1(f, q))
    assert_int_equal(k.c[1].online, COUNT("presence = 1"));
    assert_int_equal(k.c[1].offline, COUNT("presence = 2"));
    assert_int_equal(k.c[1].never, COUNT("presence = 0"));
    assert_int_equal(k.c[1].blocked, COUNT("blocked = 1"));
    assert_true(k.c[1].online > 0 && k.c[1].offline > 0 && k.c[1].never > 0 && k.c[1].blocked > 0);
    assert_int_equal(k.c[1].online + k.c[1].offline + k.c[1].never, 5000);
    /* a change shows at once: nothing to drift */
    sql(f, "UPDATE devices SET presence = 1, blocked = 1 WHERE device_id = 'dev-00001' AND "
           "registry = (SELECT id FROM registries WHERE registry_id = 'reg1' AND project = 'my-project');");
    {
        struct counts k2;
        memset(&k2, 0, sizeof k2);
        OK(lk_registry_fleet_counts(f->reg, "my-project", counts_cb, &k2, W));
        assert_int_equal(k2.c[1].online, COUNT("presence = 1"));
        assert_int_equal(k2.c[1].blocked, COUNT("blocked = 1"));
        assert_int_equal(k2.c[1].devices, 5000);
    }
#undef COUNT
    memset(&k, 0, sizeof k);
    OK(lk_registry_fleet_counts(f->reg, "empty-project", counts_cb, &k, W));
    assert_int_equal(k.n, 0);
    REFUSE(LK_ERR_REG_INVALID, "'Bad' is not a project id",
           lk_registry_fleet_counts(f->reg, "Bad", counts_cb, &k, W));
    REFUSE(LK_ERR_ARG, "", lk_registry_fleet_counts(f->reg, NULL, counts_cb, &k, W));
    REFUSE(LK_ERR_ARG, "", lk_registry_fleet_counts(f->reg, "my-project", NULL, &k, W));
}

/* ---- the plans ---- */

static const char *const drv_index[LK_SQ_DRV__N] = {
    [LK_SQ_DRV_BASE] = "sqlite_autoindex_devices_1", [LK_SQ_DRV_BLOCKED] = "devices_blocked",
    [LK_SQ_DRV_GATEWAY] = "devices_gateways",         [LK_SQ_DRV_PRESENCE] = "devices_by_presence",
    [LK_SQ_DRV_SILENT] = "devices_by_activity",       [LK_SQ_DRV_EXPIRING] = "device_credentials_by_expiry",
};

/* The plan's lines, joined with '|'. */
static void plan_of(sqlite3 *db, const char *sql, char *out, size_t size)
{
    char q[4096];
    sqlite3_stmt *st;
    size_t n = 0;
    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    int rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
    if (rc != SQLITE_OK)
        print_message("plan: %s\n%s\n", sqlite3_errmsg(db), sql);
    assert_int_equal(rc, SQLITE_OK);
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        int k = snprintf(out + n, size - n, "%s|", (const char *)sqlite3_column_text(st, 3));
        assert_true(k > 0 && (size_t)k < size - n);
        n += (size_t)k;
    }
    sqlite3_finalize(st);
}

static void test_plans(void **state)
{
    struct lk_test_reg *f = *state;
    sqlite3 *db;
    unsigned checked = 0;

    mkreg(f, &NAME);
    populate(f, &NAME, 100);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (unsigned set = 0; set < 32; set++)
        for (int range = 0; range < 3; range++)
            for (int drv = 0; drv < LK_SQ_DRV__N; drv++) {
                lk_reg_be_search b;
                char sql[2048], plan[2048], want[128];
                memset(&b, 0, sizeof b);
                b.lo = range == 0 ? "" : "dev-01";
                b.lo_strict = range == 2;
                b.hi = range == 1 ? "dev-02" : NULL;
                b.blocked_only = (set & 1) != 0;
                b.gateways_only = (set & 2) != 0;
                b.presence = (set & 4) ? 1 : -1;
                b.silent_before = (set & 8) ? T0 - 3600 : 0;
                b.expiring = (set & 16) != 0;
                b.expiring_by = T0;
                /* the search drives only by a filter it has */
                if ((drv == LK_SQ_DRV_BLOCKED && !b.blocked_only) ||
                    (drv == LK_SQ_DRV_GATEWAY && !b.gateways_only) ||
                    (drv == LK_SQ_DRV_PRESENCE && b.presence < 0) ||
                    (drv == LK_SQ_DRV_SILENT && !b.silent_before) ||
                    (drv == LK_SQ_DRV_EXPIRING && !b.expiring))
                    continue;
                assert_int_equal(lk_sq__search_sql(&b, drv, sql, sizeof sql), 0);
                plan_of(db, sql, plan, sizeof plan);
                snprintf(want, sizeof want, "INDEX %s (", drv_index[drv]);
                if (strstr(plan, want) == NULL || strstr(plan, "SCAN d") != NULL ||
                    (drv < LK_SQ_DRV_SILENT) != (strstr(plan, "TEMP B-TREE") == NULL))
                    print_message("driver %d, filters %u, range %d: %s\n%s\n", drv, set, range,
                                  plan, sql);
                assert_non_null(strstr(plan, want));
                assert_null(strstr(plan, "SCAN d"));
                /* an id-ordered walk is in page order: no sort, so it stops after the page */
                if (drv < LK_SQ_DRV_SILENT)
                    assert_null(strstr(plan, "TEMP B-TREE"));
                else
                    assert_non_null(strstr(plan, "TEMP B-TREE FOR ORDER BY"));
                checked++;
            }
    assert_int_equal(sqlite3_close(db), SQLITE_OK); /* every statement finalized */
    print_message("plans: %u statements checked\n", checked);
    assert_int_equal(lk_sq__search_sql(&(lk_reg_be_search){.lo = "", .presence = -1}, LK_SQ_DRV__N,
                                       (char[64]){0}, 64), -1);
}

/* The console's migration (LK_REG_SCHEMA_CONSOLE) is indexes only: a
 * database of the version before gets them at open. (The migrations after
 * it, if any, run again too: this holds while they are only indexes or
 * none.) */
static void test_indexes(void **state)
{
    struct lk_test_reg *f = *state;
    char why[512] = "";
    sql(f, "DROP INDEX devices_by_presence; DROP INDEX devices_blocked; DROP INDEX devices_gateways; "
           "DROP INDEX devices_by_activity; DROP INDEX device_credentials_by_expiry; "
           "UPDATE meta SET value = " CONSOLE_BEFORE " WHERE key = 'schema_version';");
    lk_registry_close(f->reg);
    assert_int_equal(lk_registry_open(f->path, 0, &f->reg, why, sizeof why), LK_OK);
    assert_int_equal(q1(f, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN "
                           "('devices_by_presence', 'devices_blocked', 'devices_gateways', "
                           "'devices_by_activity', 'device_credentials_by_expiry')"),
                     5);
    assert_int_equal(q1(f, "SELECT value FROM meta WHERE key = 'schema_version'"), LK_REG_SCHEMA_VERSION);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_search_filters, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_search_small_pages, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_search_cursor, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_search_refusals, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_fleet_counts, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_plans, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_indexes, lk_test_reg_setup, lk_test_reg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
