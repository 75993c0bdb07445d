/*
 * test_registry_query.c — latchkeyd's registry operations (lk_registry.h) on
 * real SQLite files in a fresh temporary directory per test, no mocks:
 *
 *   - lk_registry_query_devices: pages walk a registry of thousands of
 *     devices with no duplicates or gaps, also while devices are created and
 *     deleted between pages; every filter (ids, numIds, both, gateway type,
 *     associations by id and by numId) alone and combined; limits and
 *     argument refusals; full and brief records;
 *   - a deep page costs what the first does (200,000 devices inserted with
 *     one SQL statement; the times are printed; LK_REG_QUERY_BENCH=N for
 *     another size);
 *   - lk_registry_bind / unbind: IoT Core's rules and every refusal (not a
 *     gateway, a gateway as the device, unknown, another registry, 10
 *     gateways per device, 10,000 devices per gateway with bindings inserted
 *     by SQL), each refusal writing nothing, the change feed, the cascade
 *     when a device is deleted;
 *   - update_device's LK_REG_SET_LOG_LEVEL and LK_REG_SET_GATEWAY_AUTH;
 *   - lk_registry_patch_registry: each mask, and refusals writing nothing;
 *   - lk_registry_get_device_config: the device and its newest config, and
 *     both outputs zeroed on a refusal.
 */
#include "lk_test_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"

#define T0 LK_TEST_T0 /* the tests' "now" */
#define DAY 86400LL

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static const lk_reg_name NAME = {"my-project", "us-central1", "reg1"};
static const lk_reg_name NAME2 = {"my-project", "europe-west1", "reg1"};

/* A device of type gt; its num_id. */
static uint64_t mkdev(struct lk_test_reg *f, const lk_reg_name *n, const char *id, lk_reg_gateway_type gt)
{
    lk_reg_device_spec s;
    uint64_t num = 0;
    memset(&s, 0, sizeof s);
    s.id = id;
    s.gateway_type = gt;
    OK(lk_registry_create_device(f->reg, n, &s, &num, W));
    return num;
}

/* count devices PREFIX%05u (0..count-1) by one import. */
static void mkmany(struct lk_test_reg *f, const char *prefix, unsigned count, lk_reg_gateway_type gt)
{
    char id[64];
    unsigned i;
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    for (i = 0; i < count; i++) {
        lk_reg_device_spec s;
        memset(&s, 0, sizeof s);
        snprintf(id, sizeof id, "%s%05u", prefix, i);
        s.id = id;
        s.gateway_type = gt;
        OK(lk_registry_import_add(f->reg, &s, NULL, W));
    }
    OK(lk_registry_import_commit(f->reg, W));
}

/* Everything a refusal must leave as it was: every row of the tables the
 * new operations touch, as text. */
static char *digest(struct lk_test_reg *f)
{
    static const char *const q[] = {
        "SELECT group_concat(gateway || ':' || device || ':' || created, ',') FROM "
        "(SELECT * FROM gateway_bindings ORDER BY gateway, device)",
        "SELECT group_concat(seq || ':' || kind || ':' || num_id, ',') FROM changes",
        "SELECT group_concat(num_id || ':' || device_id || ':' || log_level || ':' || "
        "gateway_type || ':' || gateway_auth_method, ',') FROM devices",
        "SELECT group_concat(id || ':' || mqtt || ':' || http || ':' || log_level || ':' || "
        "coalesce(event_notification_json, '-') || ':' || "
        "coalesce(state_notification_json, '-'), ',') FROM registries",
        "SELECT group_concat(registry || ':' || id || ':' || length(pem), ',') FROM registry_certs",
    };
    sqlite3 *db;
    char *out = calloc(1, 1);
    size_t len = 0, i;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (i = 0; i < sizeof q / sizeof q[0]; i++) {
        sqlite3_stmt *s;
        const char *t;
        size_t n;
        assert_int_equal(sqlite3_prepare_v2(db, q[i], -1, &s, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        t = (const char *)sqlite3_column_text(s, 0);
        if (t == NULL)
            t = "";
        n = strlen(t);
        out = realloc(out, len + n + 2);
        assert_non_null(out);
        memcpy(out + len, t, n);
        out[len + n] = '|';
        out[len + n + 1] = '\0';
        len += n + 1;
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return out;
}

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

static int64_t sql_int(struct lk_test_reg *f, const char *text)
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

/* What a query gave: the ids in order. */
struct got {
    char **ids;
    uint64_t *nums;
    size_t n, cap;
    int full_seen, brief_seen, stop_after;
};

static int got_cb(void *arg, const lk_reg_device *d)
{
    struct got *g = arg;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 64;
        g->ids = realloc(g->ids, g->cap * sizeof *g->ids);
        g->nums = realloc(g->nums, g->cap * sizeof *g->nums);
        assert_true(g->ids != NULL && g->nums != NULL);
    }
    g->ids[g->n] = strdup(d->id);
    g->nums[g->n] = d->num_id;
    g->n++;
    /* names are always there; credentials and metadata only when full */
    assert_string_equal(d->project, NAME.project);
    assert_string_equal(d->registry, NAME.registry);
    if (d->ncreds > 0 || d->nmetadata > 0)
        g->full_seen = 1;
    return g->stop_after != 0 && g->n >= (size_t)g->stop_after;
}

static void got_free(struct got *g)
{
    size_t i;
    for (i = 0; i < g->n; i++)
        free(g->ids[i]);
    free(g->ids);
    free(g->nums);
    memset(g, 0, sizeof *g);
}

/* One page: the ids (a space-separated string, for compact asserts). */
static char *page(struct lk_test_reg *f, const lk_reg_device_query *q, int *more)
{
    struct got g;
    char *s = calloc(1, 1);
    size_t len = 0, i;
    memset(&g, 0, sizeof g);
    OK(lk_registry_query_devices(f->reg, &NAME, q, got_cb, &g, more, W));
    for (i = 0; i < g.n; i++) {
        size_t n = strlen(g.ids[i]);
        s = realloc(s, len + n + 2);
        if (len > 0)
            s[len++] = ' ';
        memcpy(s + len, g.ids[i], n + 1);
        len += n;
    }
    got_free(&g);
    return s;
}

#define PAGE_IS(q, want, want_more)                                                          \
    do {                                                                                     \
        int m_ = -1;                                                                         \
        char *p_ = page(f, (q), &m_);                                                        \
        if (strcmp(p_, (want)) != 0 || m_ != (want_more))                                    \
            print_message("%s:%d: got \"%s\" more %d; want \"%s\" more %d\n", __FILE__,     \
                          __LINE__, p_, m_, (want), (want_more));                            \
        assert_string_equal(p_, (want));                                                     \
        assert_int_equal(m_, (want_more));                                                   \
        free(p_);                                                                            \
    } while (0)

/* ------------------------------------------------------------------ */
/* Pages                                                               */

static void test_pages_walk(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_query q;
    struct got g;
    char cursor[64] = "";
    unsigned pages = 0, i;
    int more = 1;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    mkmany(f, "dev-", 3000, LK_GATEWAY_TYPE_UNSPECIFIED);

    /* 3000 devices in pages of 250: in order, each once, the last page
     * says there is no more. */
    memset(&g, 0, sizeof g);
    memset(&q, 0, sizeof q);
    q.limit = 250;
    while (more) {
        size_t before = g.n;
        q.after_id = pages == 0 ? NULL : cursor;
        OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        assert_true(g.n - before <= 250);
        assert_true(more == 0 || g.n - before == 250);
        snprintf(cursor, sizeof cursor, "%s", g.ids[g.n - 1]);
        pages++;
    }
    assert_int_equal(pages, 12);
    assert_int_equal(g.n, 3000);
    for (i = 0; i < 3000; i++) {
        char want[64];
        snprintf(want, sizeof want, "dev-%05u", i);
        assert_string_equal(g.ids[i], want);
    }
    assert_int_equal(g.full_seen, 0);
    got_free(&g);

    /* An exact multiple: the page that ends the registry says more = 0. */
    q.limit = 1000;
    q.after_id = "dev-01999";
    memset(&g, 0, sizeof g);
    OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    assert_int_equal(g.n, 1000);
    assert_int_equal(more, 0);
    got_free(&g);

    /* Changes between pages: a device created before the cursor is not
     * shown, one after it is (once); a device deleted after the cursor is
     * not; nothing else repeats or goes missing. */
    memset(&g, 0, sizeof g);
    q.limit = 400;
    q.after_id = NULL;
    more = 1;
    pages = 0;
    while (more) {
        q.after_id = pages == 0 ? NULL : cursor;
        OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        snprintf(cursor, sizeof cursor, "%s", g.ids[g.n - 1]);
        if (pages == 1) {
            char id[64];
            snprintf(id, sizeof id, "dev-%05u-new", 100u); /* before the cursor */
            mkdev(f, &NAME, id, 0);
            snprintf(id, sizeof id, "dev-%05u-new", 2500u); /* after it */
            mkdev(f, &NAME, id, 0);
            OK(lk_registry_delete_device(f->reg, &NAME, "dev-02000", W));
            OK(lk_registry_delete_device(f->reg, &NAME, "dev-00005", W)); /* already shown */
        }
        pages++;
    }
    assert_int_equal(g.n, 3000); /* 3000 - 1 deleted unseen + 1 created after */
    for (i = 1; i < g.n; i++)
        assert_true(strcmp(g.ids[i - 1], g.ids[i]) < 0);
    {
        int seen_new = 0, seen_old_new = 0, seen_deleted = 0;
        for (i = 0; i < g.n; i++) {
            seen_new += strcmp(g.ids[i], "dev-02500-new") == 0;
            seen_old_new += strcmp(g.ids[i], "dev-00100-new") == 0;
            seen_deleted += strcmp(g.ids[i], "dev-02000") == 0;
        }
        assert_int_equal(seen_new, 1);
        assert_int_equal(seen_old_new, 0);
        assert_int_equal(seen_deleted, 0);
    }
    got_free(&g);

    /* A cursor that is no device's id, and ids sorting by bytes. */
    q.limit = 2;
    q.after_id = "dev-00010x";
    PAGE_IS(&q, "dev-00011 dev-00012", 1);
    q.after_id = "dev-02999";
    PAGE_IS(&q, "", 0);
    q.after_id = "zzz";
    PAGE_IS(&q, "", 0);
    q.after_id = "";
    PAGE_IS(&q, "dev-00000 dev-00001", 1);

    /* A callback that stops: LK_OK, more = 0. */
    memset(&g, 0, sizeof g);
    g.stop_after = 3;
    q.limit = 10;
    q.after_id = NULL;
    more = -1;
    OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    assert_int_equal(g.n, 3);
    assert_int_equal(more, 0);
    got_free(&g);
}

/* Brief and full records. */
static void test_full_brief(void **state)
{
    struct lk_test_reg *f = *state;
    static const char key_pem[] =
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZejEXmqS2F0kMHGVPDKa4qryibf6\n"
        "pB//8Djgma0MYdVEzooEt4OsELjjwql7B/R8AFPS5NE82FtIV0uiASQymQ==\n"
        "-----END PUBLIC KEY-----\n";
    lk_reg_credential cred = {LK_CRED_ES256_PEM, (char *)key_pem, 0};
    lk_reg_metadata md = {"k", "v", 1};
    lk_reg_device_spec s;
    lk_reg_device_query q;
    struct got g;
    int more;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    memset(&s, 0, sizeof s);
    s.id = "dev-a";
    s.creds = &cred;
    s.ncreds = 1;
    s.metadata = &md;
    s.nmetadata = 1;
    s.log_level = LK_LOG_LEVEL_INFO;
    s.last_accessed_gateway_id = "gw-x";
    s.last_accessed_gateway_time = T0 - 5;
    OK(lk_registry_create_device(f->reg, &NAME, &s, NULL, W));

    memset(&q, 0, sizeof q);
    q.limit = 5;
    memset(&g, 0, sizeof g);
    OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    assert_int_equal(g.n, 1);
    assert_int_equal(g.full_seen, 0);
    got_free(&g);
    q.full = 1;
    memset(&g, 0, sizeof g);
    OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    assert_int_equal(g.n, 1);
    assert_int_equal(g.full_seen, 1);
    got_free(&g);
}

struct fields {
    lk_reg_device d;
    char id[64], gw[64];
};

static int fields_cb(void *arg, const lk_reg_device *d)
{
    struct fields *x = arg;
    x->d = *d;
    snprintf(x->id, sizeof x->id, "%s", d->id);
    snprintf(x->gw, sizeof x->gw, "%s",
             d->last_accessed_gateway_id ? d->last_accessed_gateway_id : "");
    x->d.id = NULL;
    x->d.last_accessed_gateway_id = NULL;
    x->d.last_error_status = NULL;
    x->d.project = x->d.location = x->d.registry = NULL;
    x->d.metadata = NULL;
    memset(x->d.creds, 0, sizeof x->d.creds);
    return 0;
}

/* The brief record has the row's fields, as get_device gives them. */
static void test_brief_fields(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_spec s;
    lk_reg_device_query q;
    lk_reg_device d;
    lk_reg_activity a;
    struct fields x;
    uint64_t num;
    int more;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    memset(&s, 0, sizeof s);
    s.id = "dev-a";
    s.blocked = 1;
    s.log_level = LK_LOG_LEVEL_DEBUG;
    s.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
    s.gateway_auth_method = LK_GATEWAY_AUTH_ASSOCIATION_ONLY;
    s.last_accessed_gateway_id = "gw-x";
    s.last_accessed_gateway_time = T0 - 5;
    s.config_version = 7;
    OK(lk_registry_create_device(f->reg, &NAME, &s, &num, W));
    memset(&a, 0, sizeof a);
    a.num_id = num;
    a.last_heartbeat = T0 + 1;
    a.last_event = T0 + 2;
    a.last_error = T0 + 3;
    a.last_error_status = "oops";
    OK(lk_registry_record_activity(f->reg, &a, 1));

    memset(&q, 0, sizeof q);
    q.limit = 1;
    memset(&x, 0, sizeof x);
    OK(lk_registry_query_devices(f->reg, &NAME, &q, fields_cb, &x, &more, W));
    OK(lk_registry_get_device(f->reg, &NAME, "dev-a", 0, &d, W));
    assert_string_equal(x.id, "dev-a");
    assert_string_equal(x.gw, "gw-x");
    assert_int_equal(x.d.num_id, d.num_id);
    assert_int_equal(x.d.blocked, 1);
    assert_int_equal(x.d.created, d.created);
    assert_int_equal(x.d.config_version, 7);
    assert_int_equal(x.d.last_heartbeat, T0 + 1);
    assert_int_equal(x.d.last_event, T0 + 2);
    assert_int_equal(x.d.last_error, T0 + 3);
    assert_int_equal(x.d.log_level, LK_LOG_LEVEL_DEBUG);
    assert_int_equal(x.d.gateway_type, LK_GATEWAY_TYPE_GATEWAY);
    assert_int_equal(x.d.gateway_auth_method, LK_GATEWAY_AUTH_ASSOCIATION_ONLY);
    assert_int_equal(x.d.last_accessed_gateway_time, T0 - 5);
    assert_int_equal(x.d.ncreds, 0);
    assert_int_equal(x.d.nmetadata, 0);
    lk_reg_device_free(&d);
}

/* ------------------------------------------------------------------ */
/* Filters                                                             */

static void test_filters(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_query q;
    uint64_t ga, gb, d1, d3, other, nums[4];
    const char *ids[6];
    char dec[32], big[32];

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    OK(lk_registry_create_registry(f->reg, &NAME2, 0, 0, W));
    ga = mkdev(f, &NAME, "gw-a", LK_GATEWAY_TYPE_GATEWAY);
    gb = mkdev(f, &NAME, "gw-b", LK_GATEWAY_TYPE_GATEWAY);
    d1 = mkdev(f, &NAME, "dv1", LK_GATEWAY_TYPE_UNSPECIFIED);
    (void)mkdev(f, &NAME, "dv2", LK_GATEWAY_TYPE_NON_GATEWAY);
    d3 = mkdev(f, &NAME, "dv3", LK_GATEWAY_TYPE_UNSPECIFIED);
    (void)mkdev(f, &NAME, "dv4", LK_GATEWAY_TYPE_NON_GATEWAY);
    other = mkdev(f, &NAME2, "dv9", LK_GATEWAY_TYPE_UNSPECIFIED);
    (void)mkdev(f, &NAME2, "gw-z", LK_GATEWAY_TYPE_GATEWAY);
    OK(lk_registry_bind(f->reg, &NAME, "gw-a", "dv1", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-a", "dv2", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-a", "dv4", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-b", "dv1", W));

    memset(&q, 0, sizeof q);
    q.limit = 100;
    PAGE_IS(&q, "dv1 dv2 dv3 dv4 gw-a gw-b", 0);

    /* ids: only those, in id order, unknown and invalid ones absent, other
     * registries' devices absent */
    ids[0] = "dv3";
    ids[1] = "nope";
    ids[2] = "gw-a";
    ids[3] = "dv9";
    ids[4] = "bad\"id\\";
    ids[5] = "dv3";
    q.ids = ids;
    q.nids = 6;
    PAGE_IS(&q, "dv3 gw-a", 0);
    /* numIds; with ids: either */
    nums[0] = d1;
    nums[1] = other;
    nums[2] = 0;
    nums[3] = UINT64_MAX;
    q.num_ids = nums;
    q.nnum_ids = 4;
    PAGE_IS(&q, "dv1 dv3 gw-a", 0);
    q.nids = 0;
    PAGE_IS(&q, "dv1", 0);
    nums[2] = d3;
    PAGE_IS(&q, "dv1 dv3", 0);
    /* and their pages */
    q.ids = ids;
    q.nids = 6;
    q.limit = 2;
    PAGE_IS(&q, "dv1 dv3", 1);
    q.after_id = "dv3";
    PAGE_IS(&q, "gw-a", 0);
    q.after_id = NULL;
    q.limit = 100;

    /* gateway type, alone and with ids */
    q.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
    PAGE_IS(&q, "gw-a", 0);
    q.gateway_type = LK_GATEWAY_TYPE_NON_GATEWAY;
    PAGE_IS(&q, "dv1 dv3", 0);
    q.nids = q.nnum_ids = 0;
    PAGE_IS(&q, "dv1 dv2 dv3 dv4", 0);
    q.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
    PAGE_IS(&q, "gw-a gw-b", 0);
    q.limit = 1;
    PAGE_IS(&q, "gw-a", 1);
    q.after_id = "gw-a";
    PAGE_IS(&q, "gw-b", 0);
    q.after_id = NULL;
    q.limit = 100;
    q.gateway_type = LK_GATEWAY_TYPE_UNSPECIFIED;

    /* associations: a gateway's devices, by id and by numId */
    q.associations_gateway_id = "gw-a";
    PAGE_IS(&q, "dv1 dv2 dv4", 0);
    snprintf(dec, sizeof dec, "%llu", (unsigned long long)gb);
    q.associations_gateway_id = dec;
    PAGE_IS(&q, "dv1", 0);
    q.associations_gateway_id = "dv3"; /* not a gateway: nothing bound */
    PAGE_IS(&q, "", 0);
    /* combined with ids, type, a cursor and a limit */
    q.associations_gateway_id = "gw-a";
    q.ids = ids;
    q.nids = 1; /* dv3 */
    q.num_ids = nums;
    q.nnum_ids = 1; /* dv1 */
    PAGE_IS(&q, "dv1", 0);
    q.nids = q.nnum_ids = 0;
    q.gateway_type = LK_GATEWAY_TYPE_NON_GATEWAY;
    PAGE_IS(&q, "dv1 dv2 dv4", 0);
    q.limit = 2;
    PAGE_IS(&q, "dv1 dv2", 1);
    q.after_id = "dv2";
    PAGE_IS(&q, "dv4", 0);
    q.after_id = NULL;
    q.limit = 100;
    q.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
    PAGE_IS(&q, "", 0);
    q.gateway_type = LK_GATEWAY_TYPE_UNSPECIFIED;
    q.associations_gateway_id = NULL;

    /* a device's gateways */
    q.associations_device_id = "dv1";
    PAGE_IS(&q, "gw-a gw-b", 0);
    snprintf(dec, sizeof dec, "%llu", (unsigned long long)d1);
    q.associations_device_id = dec;
    q.limit = 1;
    PAGE_IS(&q, "gw-a", 1);
    q.limit = 100;
    q.associations_device_id = "dv4";
    PAGE_IS(&q, "gw-a", 0);
    q.ids = ids;
    q.nids = 3; /* dv3 nope gw-a */
    PAGE_IS(&q, "gw-a", 0);
    q.nids = 1;
    PAGE_IS(&q, "", 0);
    q.nids = 0;
    q.associations_device_id = "dv3";
    PAGE_IS(&q, "", 0);

    /* unknown associations: NOT_FOUND, saying which */
    {
        struct got g;
        int more = -1;
        memset(&g, 0, sizeof g);
        q.associations_device_id = "nope";
        REFUSE(LK_ERR_REG_NOT_FOUND, "device 'nope' does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        assert_int_equal(more, 0);
        q.associations_device_id = "dv9"; /* another registry's */
        REFUSE(LK_ERR_REG_NOT_FOUND, "device 'dv9' does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        snprintf(dec, sizeof dec, "%llu", (unsigned long long)other);
        q.associations_device_id = dec;
        REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        q.associations_device_id = NULL;
        q.associations_gateway_id = "gw-z";
        REFUSE(LK_ERR_REG_NOT_FOUND, "gateway 'gw-z' does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        snprintf(big, sizeof big, "%s0", "18446744073709551615"); /* overflows */
        q.associations_gateway_id = big;
        REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        q.associations_gateway_id = "0";
        REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        q.associations_gateway_id = "";
        REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
               lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
        q.associations_gateway_id = NULL;
        assert_int_equal(g.n, 0);
    }
    (void)ga;
}

static void test_query_refusals(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_query q;
    const lk_reg_name unknown = {"my-project", "us-central1", "nope"};
    const lk_reg_name bad = {"my-project", "us-central1", "1bad"};
    const char *ids[1] = {NULL};
    static uint64_t many[LK_REG_QUERY_MAX + 1];
    struct got g;
    int more = -1;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    mkdev(f, &NAME, "dv1", 0);
    memset(&g, 0, sizeof g);
    memset(&q, 0, sizeof q);
    q.limit = 10;
    REFUSE(LK_ERR_ARG, "no query", lk_registry_query_devices(f->reg, &NAME, NULL, got_cb, &g, &more, W));
    REFUSE(LK_ERR_ARG, "no query", lk_registry_query_devices(f->reg, &NAME, &q, NULL, &g, &more, W));
    REFUSE(LK_ERR_ARG, "no query", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, NULL, W));
    assert_int_equal(lk_registry_query_devices(NULL, &NAME, &q, got_cb, &g, &more, NULL, 0),
                     LK_ERR_ARG);
    REFUSE(LK_ERR_ARG, "project", lk_registry_query_devices(f->reg, NULL, &q, got_cb, &g, &more, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
           lk_registry_query_devices(f->reg, &unknown, &q, got_cb, &g, &more, W));
    REFUSE(LK_ERR_REG_INVALID, "registry id",
           lk_registry_query_devices(f->reg, &bad, &q, got_cb, &g, &more, W));
    q.limit = 0;
    REFUSE(LK_ERR_ARG, "page size 0", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.limit = LK_REG_QUERY_MAX + 1;
    REFUSE(LK_ERR_ARG, "1 to 10000", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.limit = LK_REG_QUERY_MAX;
    PAGE_IS(&q, "dv1", 0);
    q.nids = 1;
    REFUSE(LK_ERR_ARG, "without its ids", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.ids = ids;
    REFUSE(LK_ERR_ARG, "is NULL", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.nids = 0;
    q.nnum_ids = 1;
    REFUSE(LK_ERR_ARG, "without its ids", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.num_ids = many;
    q.nnum_ids = LK_REG_QUERY_MAX + 1;
    REFUSE(LK_ERR_REG_LIMIT, "at most 10000", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.nnum_ids = 0;
    q.gateway_type = (lk_reg_gateway_type)3;
    REFUSE(LK_ERR_REG_INVALID, "gateway type 3", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    q.gateway_type = 0;
    q.associations_gateway_id = "dv1";
    q.associations_device_id = "dv1";
    REFUSE(LK_ERR_ARG, "at most one", lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    assert_int_equal(more, 0);
    assert_int_equal(g.n, 0);
}

/* 10,000 ids and 10,000 numIds at once (the most), over 12,000 devices. */
static void test_query_max_filters(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_query q;
    const char **ids = calloc(LK_REG_QUERY_MAX, sizeof *ids);
    uint64_t *nums = calloc(LK_REG_QUERY_MAX, sizeof *nums);
    char (*buf)[16] = calloc(LK_REG_QUERY_MAX, 16);
    struct got g;
    unsigned i;
    int more;

    assert_true(ids != NULL && nums != NULL && buf != NULL);
    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    mkmany(f, "dev-", 12000, 0);
    /* ids: the even ones of 0..19998 (devices 0..11998 exist); numIds: the
     * num_ids 1..10000 (devices 0..9999, as the import assigns in order) */
    for (i = 0; i < LK_REG_QUERY_MAX; i++) {
        snprintf(buf[i], 16, "dev-%05u", 2 * i);
        ids[i] = buf[i];
        nums[i] = i + 1;
    }
    assert_int_equal(sql_int(f, "SELECT num_id FROM devices WHERE device_id = 'dev-09999'"), 10000);
    memset(&q, 0, sizeof q);
    q.ids = ids;
    q.nids = LK_REG_QUERY_MAX;
    q.num_ids = nums;
    q.nnum_ids = LK_REG_QUERY_MAX;
    q.limit = LK_REG_QUERY_MAX;
    memset(&g, 0, sizeof g);
    OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g, &more, W));
    /* 0..9999 all, then the even ones of 10000..11998: 11,000 in two pages */
    assert_int_equal(g.n, LK_REG_QUERY_MAX);
    assert_int_equal(more, 1);
    q.after_id = g.ids[g.n - 1];
    assert_string_equal(q.after_id, "dev-09999");
    {
        struct got g2;
        memset(&g2, 0, sizeof g2);
        OK(lk_registry_query_devices(f->reg, &NAME, &q, got_cb, &g2, &more, W));
        assert_int_equal(g2.n, 1000);
        assert_int_equal(more, 0);
        assert_string_equal(g2.ids[0], "dev-10000");
        assert_string_equal(g2.ids[999], "dev-11998");
        got_free(&g2);
    }
    got_free(&g);
    free(ids);
    free(nums);
    free(buf);
}

/* ------------------------------------------------------------------ */
/* Deep pages                                                          */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int count_cb(void *arg, const lk_reg_device *d)
{
    (void)d;
    ++*(unsigned *)arg;
    return 0;
}

/* The best of 5 runs of one page of 500 after after_id. */
static double page_ms(struct lk_test_reg *f, const char *after_id, int full)
{
    lk_reg_device_query q;
    double best = 1e9;
    int r, more;
    memset(&q, 0, sizeof q);
    q.limit = 500;
    q.after_id = after_id;
    q.full = full;
    for (r = 0; r < 5; r++) {
        unsigned n = 0;
        double t = now_ms();
        OK(lk_registry_query_devices(f->reg, &NAME, &q, count_cb, &n, &more, W));
        t = now_ms() - t;
        assert_int_equal(n, 500);
        assert_int_equal(more, 1);
        if (t < best)
            best = t;
    }
    return best;
}

static void test_deep_page(void **state)
{
    struct lk_test_reg *f = *state;
    const char *env = getenv("LK_REG_QUERY_BENCH");
    long n = env != NULL ? atol(env) : 200000;
    char script[512], deep[32];
    double first, deepest, first_full, deep_full, t;

    if (n < 2000)
        n = 2000;
    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    t = now_ms();
    snprintf(script, sizeof script,
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < %ld) "
             "INSERT INTO devices(registry, device_id, created) "
             "SELECT (SELECT id FROM registries), printf('dev-%%07d', x), 0 FROM c;",
             n - 1);
    sql(f, script);
    t = now_ms() - t;
    snprintf(deep, sizeof deep, "dev-%07ld", n - 1000);
    first = page_ms(f, NULL, 0);
    deepest = page_ms(f, deep, 0);
    first_full = page_ms(f, NULL, 1);
    deep_full = page_ms(f, deep, 1);
    print_message("query_devices, %ld devices (inserted in %.0f ms), pages of 500: first %.2f ms, "
                  "at %s %.2f ms; full records: first %.2f ms, deep %.2f ms\n",
                  n, t, first, deep, deepest, first_full, deep_full);
    /* A seek, not a scan: a deep page within a small factor of the first
     * (a scan of 200,000 rows would take tens of ms more) and well under
     * 100 ms. */
    assert_true(deepest < 3 * first + 5);
    assert_true(deep_full < 3 * first_full + 5);
    assert_true(deepest < 100);
}

/* ------------------------------------------------------------------ */
/* Bindings                                                            */

struct changes {
    lk_reg_change c[64];
    size_t n;
};

static int change_cb(void *arg, const lk_reg_change *c)
{
    struct changes *x = arg;
    if (x->n < 64)
        x->c[x->n++] = *c;
    return 0;
}

/* What the broker reads to let a gateway act for a device: the gateway's
 * type and auth method with its authentication data, whether a pair is
 * bound, and lastAccessedGateway* written with the activity times. */
static void test_gateway_broker_reads(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_spec s;
    lk_reg_activity act;
    lk_reg_auth a;
    lk_reg_device d;
    uint64_t gw = 0, d1, d2;
    int bound = -1;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    memset(&s, 0, sizeof s);
    s.id = "gw-a";
    s.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
    s.gateway_auth_method = LK_GATEWAY_AUTH_ASSOCIATION_AND_DEVICE_AUTH_TOKEN;
    OK(lk_registry_create_device(f->reg, &NAME, &s, &gw, W));
    d1 = mkdev(f, &NAME, "dv1", LK_GATEWAY_TYPE_NON_GATEWAY);
    d2 = mkdev(f, &NAME, "dv2", LK_GATEWAY_TYPE_UNSPECIFIED);
    OK(lk_registry_bind(f->reg, &NAME, "gw-a", "dv1", W));

    OK(lk_registry_auth_lookup(f->reg, &NAME, "gw-a", &a));
    assert_int_equal(a.gateway_type, LK_GATEWAY_TYPE_GATEWAY);
    assert_int_equal(a.gateway_auth_method, LK_GATEWAY_AUTH_ASSOCIATION_AND_DEVICE_AUTH_TOKEN);
    lk_reg_auth_free(&a);
    OK(lk_registry_auth_lookup(f->reg, &NAME, "dv2", &a));
    assert_int_equal(a.gateway_type, LK_GATEWAY_TYPE_UNSPECIFIED);
    lk_reg_auth_free(&a);

    OK(lk_registry_bound(f->reg, gw, d1, &bound));
    assert_int_equal(bound, 1);
    OK(lk_registry_bound(f->reg, gw, d2, &bound));
    assert_int_equal(bound, 0);
    OK(lk_registry_bound(f->reg, d1, gw, &bound)); /* the pair is ordered */
    assert_int_equal(bound, 0);
    assert_int_equal(lk_registry_bound(f->reg, gw, d1, NULL), LK_ERR_ARG);
    assert_int_equal(lk_registry_bound(NULL, gw, d1, &bound), LK_ERR_ARG);

    memset(&act, 0, sizeof act);
    act.num_id = d1;
    act.last_gateway_time = T0 + 5;
    act.last_gateway_id = "gw-a";
    OK(lk_registry_record_activity(f->reg, &act, 1));
    act.last_gateway_time = T0 + 1; /* older: neither moves back */
    act.last_gateway_id = "gw-old";
    OK(lk_registry_record_activity(f->reg, &act, 1));
    OK(lk_registry_get_device(f->reg, &NAME, "dv1", 0, &d, W));
    assert_string_equal(d.last_accessed_gateway_id, "gw-a");
    assert_int_equal(d.last_accessed_gateway_time, T0 + 5);
    lk_reg_device_free(&d);
    act.last_gateway_id = NULL; /* a time without a gateway, or an invalid id */
    assert_int_equal(lk_registry_record_activity(f->reg, &act, 1), LK_ERR_ARG);
    act.last_gateway_id = "1bad";
    assert_int_equal(lk_registry_record_activity(f->reg, &act, 1), LK_ERR_ARG);
}

static void test_bind(void **state)
{
    struct lk_test_reg *f = *state;
    uint64_t ga, gb, d1, d2, d9;
    char dec_g[32], dec_d[32], *before, *after;
    struct changes ch;
    int64_t since = 0, head0, head1;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    OK(lk_registry_create_registry(f->reg, &NAME2, 0, 0, W));
    ga = mkdev(f, &NAME, "gw-a", LK_GATEWAY_TYPE_GATEWAY);
    gb = mkdev(f, &NAME, "gw-b", LK_GATEWAY_TYPE_GATEWAY);
    d1 = mkdev(f, &NAME, "dv1", LK_GATEWAY_TYPE_UNSPECIFIED);
    d2 = mkdev(f, &NAME, "dv2", LK_GATEWAY_TYPE_NON_GATEWAY);
    d9 = mkdev(f, &NAME2, "dv9", LK_GATEWAY_TYPE_UNSPECIFIED);
    (void)mkdev(f, &NAME2, "gw-a", LK_GATEWAY_TYPE_GATEWAY);
    (void)gb;

    /* bind: one row and one LK_CHANGE_DEVICE for the device */
    OK(lk_registry_change_head(f->reg, &since));
    OK(lk_registry_bind(f->reg, &NAME, "gw-a", "dv1", W));
    memset(&ch, 0, sizeof ch);
    OK(lk_registry_changes(f->reg, &since, change_cb, &ch));
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.c[0].kind, LK_CHANGE_DEVICE);
    assert_int_equal(ch.c[0].num_id, d1);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM gateway_bindings"), 1);
    assert_int_equal(sql_int(f, "SELECT created FROM gateway_bindings"), T0);

    /* the same pair again: LK_OK, nothing written */
    before = digest(f);
    OK(lk_registry_change_head(f->reg, &head0));
    f->now = T0 + 10;
    OK(lk_registry_bind(f->reg, &NAME, "gw-a", "dv1", W));
    snprintf(dec_g, sizeof dec_g, "%llu", (unsigned long long)ga);
    snprintf(dec_d, sizeof dec_d, "%llu", (unsigned long long)d1);
    OK(lk_registry_bind(f->reg, &NAME, dec_g, dec_d, W)); /* by numIds */
    OK(lk_registry_change_head(f->reg, &head1));
    assert_int_equal(head0, head1);
    after = digest(f);
    assert_string_equal(before, after);
    free(after);

    /* every refusal, each writing nothing */
    REFUSE(LK_ERR_REG_INVALID, "'dv2' is not a gateway", lk_registry_bind(f->reg, &NAME, "dv2", "dv1", W));
    REFUSE(LK_ERR_REG_INVALID, "'gw-b' is a gateway", lk_registry_bind(f->reg, &NAME, "gw-a", "gw-b", W));
    REFUSE(LK_ERR_REG_INVALID, "'gw-a' is a gateway", lk_registry_bind(f->reg, &NAME, "gw-a", "gw-a", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "gateway 'gw-x' does not exist in projects/my-project/locations/us-central1/registries/reg1",
           lk_registry_bind(f->reg, &NAME, "gw-x", "dv1", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "device 'dx' does not exist", lk_registry_bind(f->reg, &NAME, "gw-a", "dx", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "device 'dv9' does not exist", lk_registry_bind(f->reg, &NAME, "gw-a", "dv9", W));
    snprintf(dec_d, sizeof dec_d, "%llu", (unsigned long long)d9);
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist", lk_registry_bind(f->reg, &NAME, "gw-a", dec_d, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist", lk_registry_bind(f->reg, &NAME2, "gw-a", "dv1", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "device '1bad-' does not exist", lk_registry_bind(f->reg, &NAME, "gw-a", "1bad-", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist", lk_registry_bind(f->reg, &NAME, "gw-a", "a b", W));
    REFUSE(LK_ERR_ARG, "required", lk_registry_bind(f->reg, &NAME, NULL, "dv1", W));
    REFUSE(LK_ERR_ARG, "required", lk_registry_bind(f->reg, &NAME, "gw-a", NULL, W));
    REFUSE(LK_ERR_ARG, "project", lk_registry_bind(f->reg, NULL, "gw-a", "dv1", W));
    assert_int_equal(lk_registry_bind(NULL, &NAME, "gw-a", "dv1", NULL, 0), LK_ERR_ARG);
    REFUSE(LK_ERR_REG_NOT_FOUND, "not bound", lk_registry_unbind(f->reg, &NAME, "gw-b", "dv1", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "not bound", lk_registry_unbind(f->reg, &NAME, "gw-a", "dv2", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "gateway 'nope'", lk_registry_unbind(f->reg, &NAME, "nope", "dv1", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "device 'nope'", lk_registry_unbind(f->reg, &NAME, "gw-a", "nope", W));
    after = digest(f);
    assert_string_equal(before, after);
    free(after);
    free(before);

    /* a read-only handle may not */
    {
        lk_registry *ro = NULL;
        char why[256];
        assert_int_equal(lk_registry_open(f->path, LK_REG_READONLY, &ro, why, sizeof why), LK_OK);
        REFUSE(LK_ERR_STATE, "read-only", lk_registry_bind(ro, &NAME, "gw-a", "dv2", W));
        REFUSE(LK_ERR_STATE, "read-only", lk_registry_unbind(ro, &NAME, "gw-a", "dv1", W));
        lk_registry_close(ro);
    }

    /* unbind: the row goes, one LK_CHANGE_DEVICE */
    OK(lk_registry_bind(f->reg, &NAME, "gw-b", "dv2", W));
    OK(lk_registry_change_head(f->reg, &since));
    OK(lk_registry_unbind(f->reg, &NAME, "gw-b", "dv2", W));
    memset(&ch, 0, sizeof ch);
    OK(lk_registry_changes(f->reg, &since, change_cb, &ch));
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.c[0].kind, LK_CHANGE_DEVICE);
    assert_int_equal(ch.c[0].num_id, d2);
    REFUSE(LK_ERR_REG_NOT_FOUND, "not bound", lk_registry_unbind(f->reg, &NAME, "gw-b", "dv2", W));

    /* deleting either device takes its bindings along */
    OK(lk_registry_bind(f->reg, &NAME, "gw-b", "dv2", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-b", "dv1", W));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM gateway_bindings"), 3);
    OK(lk_registry_delete_device(f->reg, &NAME, "dv1", W));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM gateway_bindings"), 1);
    OK(lk_registry_delete_device(f->reg, &NAME, "gw-b", W));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM gateway_bindings"), 0);
}

/* lk_registry_import_bind: bindings in a devices import's one transaction,
 * with the devices it adds; a refused pair undone alone; an abort or a
 * refusal writes nothing. */
static void test_import_bind(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_spec s;
    uint64_t d1 = 0, n;
    char dec[32], *before, *after;
    struct changes ch;
    int64_t since = 0;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    OK(lk_registry_create_registry(f->reg, &NAME2, 0, 0, W));
    (void)mkdev(f, &NAME, "gw-old", LK_GATEWAY_TYPE_GATEWAY);
    (void)mkdev(f, &NAME2, "dv-far", LK_GATEWAY_TYPE_UNSPECIFIED);
    REFUSE(LK_ERR_STATE, "no import", lk_registry_import_bind(f->reg, "gw-old", "dv1", W));

    /* refused pairs, then an abort: nothing written */
    before = digest(f);
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "device 'dv1' does not exist", lk_registry_import_bind(f->reg, "gw-old", "dv1", W));
    memset(&s, 0, sizeof s);
    s.id = "dv1";
    OK(lk_registry_import_add(f->reg, &s, &d1, W));
    OK(lk_registry_import_bind(f->reg, "gw-old", "dv1", W));           /* a device of this import */
    OK(lk_registry_import_bind(f->reg, "gw-old", "dv1", W));           /* again: taken as it is */
    REFUSE(LK_ERR_REG_INVALID, "'dv1' is not a gateway", lk_registry_import_bind(f->reg, "dv1", "gw-old", W));
    REFUSE(LK_ERR_REG_INVALID, "'gw-old' is a gateway", lk_registry_import_bind(f->reg, "gw-old", "gw-old", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "device 'dv-far' does not exist in projects/my-project/locations/us-central1/"
           "registries/reg1", lk_registry_import_bind(f->reg, "gw-old", "dv-far", W));
    REFUSE(LK_ERR_ARG, "required", lk_registry_import_bind(f->reg, NULL, "dv1", W));
    lk_registry_import_abort(f->reg);
    after = digest(f);
    assert_string_equal(before, after);
    free(after);
    free(before);

    /* committed: the devices and their bindings, a change for each bound device */
    OK(lk_registry_change_head(f->reg, &since));
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    OK(lk_registry_import_add(f->reg, &s, &d1, W));
    s.id = "gw-new";
    s.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
    OK(lk_registry_import_add(f->reg, &s, &n, W));
    snprintf(dec, sizeof dec, "%llu", (unsigned long long)d1);
    OK(lk_registry_import_bind(f->reg, "gw-new", dec, W));             /* by numId */
    OK(lk_registry_import_bind(f->reg, "gw-old", "dv1", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "gateway 'gw-none'", lk_registry_import_bind(f->reg, "gw-none", "dv1", W));
    OK(lk_registry_import_commit(f->reg, W));
    assert_int_equal(sql_int(f, "SELECT count(*) FROM gateway_bindings"), 2);
    memset(&ch, 0, sizeof ch);
    OK(lk_registry_changes(f->reg, &since, change_cb, &ch));
    assert_true(ch.n >= 4);                                               /* 2 devices, 2 bindings */
    assert_int_equal(ch.c[ch.n - 1].kind, LK_CHANGE_DEVICE);
    assert_int_equal(ch.c[ch.n - 1].num_id, d1);
}

static void test_bind_limits(void **state)
{
    struct lk_test_reg *f = *state;
    char id[32], script[1024], *before, *after;
    unsigned i;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    /* 10 gateways per device */
    mkdev(f, &NAME, "dev", 0);
    for (i = 0; i < LK_GATEWAYS_PER_DEVICE_MAX + 1; i++) {
        snprintf(id, sizeof id, "gw-%02u", i);
        mkdev(f, &NAME, id, LK_GATEWAY_TYPE_GATEWAY);
        if (i < LK_GATEWAYS_PER_DEVICE_MAX)
            OK(lk_registry_bind(f->reg, &NAME, id, "dev", W));
    }
    before = digest(f);
    REFUSE(LK_ERR_REG_LIMIT, "already bound to 10 gateways; a device can be bound to at most 10",
           lk_registry_bind(f->reg, &NAME, "gw-10", "dev", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-09", "dev", W)); /* bound already: fine */
    after = digest(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    OK(lk_registry_unbind(f->reg, &NAME, "gw-00", "dev", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-10", "dev", W));

    /* 10,000 devices per gateway: the devices and bindings by SQL */
    snprintf(script, sizeof script,
             "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < %u) "
             "INSERT INTO devices(registry, device_id, created) "
             "SELECT (SELECT id FROM registries), printf('many-%%05d', x), 0 FROM c;"
             "INSERT INTO gateway_bindings(gateway, device, created) "
             "SELECT (SELECT num_id FROM devices WHERE device_id = 'gw-01'), num_id, 0 "
             "FROM devices WHERE device_id LIKE 'many-%%' AND device_id < 'many-09999';",
             LK_DEVICES_PER_GATEWAY_MAX);
    sql(f, script);
    /* 1 ("dev") + 9999 = 10,000 */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM gateway_bindings WHERE gateway = "
                                "(SELECT num_id FROM devices WHERE device_id = 'gw-01')"),
                     LK_DEVICES_PER_GATEWAY_MAX);
    before = digest(f);
    REFUSE(LK_ERR_REG_LIMIT, "gateway 'gw-01' already has 10000 devices bound; a gateway can have at most 10000",
           lk_registry_bind(f->reg, &NAME, "gw-01", "many-09999", W));
    after = digest(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    OK(lk_registry_bind(f->reg, &NAME, "gw-02", "many-09999", W)); /* another gateway */
    OK(lk_registry_unbind(f->reg, &NAME, "gw-01", "many-00000", W));
    OK(lk_registry_bind(f->reg, &NAME, "gw-01", "many-09999", W));

    /* and the query of a full gateway: 10,000 in pages */
    {
        lk_reg_device_query q;
        unsigned n = 0;
        int more;
        memset(&q, 0, sizeof q);
        q.associations_gateway_id = "gw-01";
        q.limit = LK_REG_QUERY_MAX;
        OK(lk_registry_query_devices(f->reg, &NAME, &q, count_cb, &n, &more, W));
        assert_int_equal(n, LK_DEVICES_PER_GATEWAY_MAX);
        assert_int_equal(more, 0);
    }
}

/* ------------------------------------------------------------------ */
/* update_device: log level and gateway auth                           */

static void test_update_device_masks(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_device_spec s;
    lk_reg_device d;
    char *before, *after;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    mkdev(f, &NAME, "dv1", 0);
    memset(&s, 0, sizeof s);
    s.id = "dv1";
    s.log_level = LK_LOG_LEVEL_ERROR;
    s.gateway_auth_method = LK_GATEWAY_AUTH_DEVICE_AUTH_TOKEN_ONLY;
    s.blocked = 1; /* not in the mask: not changed */
    OK(lk_registry_update_device(f->reg, &NAME, &s, LK_REG_SET_LOG_LEVEL, W));
    OK(lk_registry_get_device(f->reg, &NAME, "dv1", 0, &d, W));
    assert_int_equal(d.log_level, LK_LOG_LEVEL_ERROR);
    assert_int_equal(d.gateway_auth_method, LK_GATEWAY_AUTH_UNSPECIFIED);
    assert_int_equal(d.blocked, 0);
    lk_reg_device_free(&d);
    /* the broker's one read at CONNECT has both levels (docs/plugin.md, "Logs") */
    {
        lk_reg_registry_spec rs;
        lk_reg_auth a;
        OK(lk_registry_auth_lookup(f->reg, &NAME, "dv1", &a));
        assert_int_equal(a.log_level, LK_LOG_LEVEL_ERROR);
        assert_int_equal(a.registry_log_level, LK_LOG_LEVEL_UNSPECIFIED);
        lk_reg_auth_free(&a);
        memset(&rs, 0, sizeof rs);
        rs.log_level = LK_LOG_LEVEL_DEBUG;
        OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_REG_LOG_LEVEL, W));
        OK(lk_registry_auth_lookup(f->reg, &NAME, "dv1", &a));
        assert_int_equal(a.registry_log_level, LK_LOG_LEVEL_DEBUG);
        lk_reg_auth_free(&a);
    }
    OK(lk_registry_update_device(f->reg, &NAME, &s, LK_REG_SET_GATEWAY_AUTH, W));
    OK(lk_registry_get_device(f->reg, &NAME, "dv1", 0, &d, W));
    assert_int_equal(d.gateway_auth_method, LK_GATEWAY_AUTH_DEVICE_AUTH_TOKEN_ONLY);
    lk_reg_device_free(&d);
    s.log_level = LK_LOG_LEVEL_UNSPECIFIED;
    s.gateway_auth_method = LK_GATEWAY_AUTH_UNSPECIFIED;
    OK(lk_registry_update_device(f->reg, &NAME, &s, LK_REG_SET_LOG_LEVEL | LK_REG_SET_GATEWAY_AUTH, W));
    OK(lk_registry_get_device(f->reg, &NAME, "dv1", 0, &d, W));
    assert_int_equal(d.log_level, LK_LOG_LEVEL_UNSPECIFIED);
    assert_int_equal(d.gateway_auth_method, LK_GATEWAY_AUTH_UNSPECIFIED);
    lk_reg_device_free(&d);

    before = digest(f);
    s.log_level = (lk_reg_log_level)15;
    REFUSE(LK_ERR_REG_INVALID, "log level 15", lk_registry_update_device(f->reg, &NAME, &s, LK_REG_SET_LOG_LEVEL, W));
    s.log_level = LK_LOG_LEVEL_DEBUG;
    s.gateway_auth_method = (lk_reg_gateway_auth)4;
    REFUSE(LK_ERR_REG_INVALID, "gateway auth method 4",
           lk_registry_update_device(f->reg, &NAME, &s, LK_REG_SET_LOG_LEVEL | LK_REG_SET_GATEWAY_AUTH, W));
    REFUSE(LK_ERR_ARG, "LK_REG_SET_GATEWAY_AUTH", lk_registry_update_device(f->reg, &NAME, &s, 32, W));
    s.id = "nope";
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
           lk_registry_update_device(f->reg, &NAME, &s, LK_REG_SET_LOG_LEVEL, W));
    after = digest(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* ------------------------------------------------------------------ */
/* patch_registry                                                      */

/* A self-signed EC P-256 CA certificate valid from nb to na (PEM,
 * malloc'd). */
static char *ca_pem(const char *cn, int64_t nb, int64_t na)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_NAME *n;
    X509_EXTENSION *e;
    X509V3_CTX ctx;
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    long len;

    assert_true(k != NULL && x != NULL && b != NULL);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na));
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    assert_int_equal(PEM_write_bio_X509(b, x), 1);
    len = BIO_get_mem_data(b, &data);
    pem = malloc((size_t)len + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
    return pem;
}

struct certs_seen {
    char *pem[16];
    unsigned n;
};

static int certs_cb(void *arg, const lk_reg_cert *c)
{
    struct certs_seen *s = arg;
    assert_int_equal(c->index, s->n);
    if (s->n < 16)
        s->pem[s->n++] = strdup(c->pem);
    return 0;
}

/* The registry's CA list is exactly want[0..n). */
static void certs_are(struct lk_test_reg *f, char **want, unsigned n)
{
    struct certs_seen s;
    unsigned i;
    memset(&s, 0, sizeof s);
    OK(lk_registry_list_certs(f->reg, &NAME, certs_cb, &s, W));
    assert_int_equal(s.n, n);
    for (i = 0; i < s.n; i++) {
        assert_string_equal(s.pem[i], want[i]);
        free(s.pem[i]);
    }
}

/* CA list as a spec */
static void spec_cas(lk_reg_registry_spec *rs, char **pems, size_t *lens, unsigned n)
{
    unsigned i;
    for (i = 0; i < n; i++)
        lens[i] = strlen(pems[i]);
    rs->ca_pems = (const char *const *)pems;
    rs->ca_lens = lens;
    rs->ncas = n;
}

static void test_patch_registry(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_registry_spec rs;
    lk_reg_registry r;
    int64_t head0, head1, since;
    struct changes ch;
    char *cas[12], *made[3], *before, *after;
    size_t lens[12];
    unsigned i;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    memset(&rs, 0, sizeof rs);

    /* mqtt alone: http kept, LK_CHANGE_REGISTRY appended */
    OK(lk_registry_change_head(f->reg, &since));
    rs.mqtt = LK_REG_STATE_DISABLED;
    rs.http = LK_REG_STATE_DISABLED;
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_MQTT, W));
    OK(lk_registry_get_registry(f->reg, &NAME, &r, W));
    assert_int_equal(r.mqtt, LK_REG_STATE_DISABLED);
    assert_int_equal(r.http, LK_REG_STATE_ENABLED);
    lk_reg_registry_free(&r);
    memset(&ch, 0, sizeof ch);
    OK(lk_registry_changes(f->reg, &since, change_cb, &ch));
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.c[0].kind, LK_CHANGE_REGISTRY);
    /* http; UNSPECIFIED is ENABLED */
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_HTTP, W));
    rs.mqtt = LK_REG_STATE_UNSPECIFIED;
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_MQTT, W));
    OK(lk_registry_get_registry(f->reg, &NAME, &r, W));
    assert_int_equal(r.mqtt, LK_REG_STATE_ENABLED);
    assert_int_equal(r.http, LK_REG_STATE_DISABLED);
    lk_reg_registry_free(&r);

    /* notifications and the log level: a change in the feed each (the broker routes by the
     * notifications and keeps each connection's log level) */
    OK(lk_registry_change_head(f->reg, &head0));
    rs.event_notification_json = "[{\"pubsubTopicName\":\"projects/my-project/topics/eee\"}]";
    rs.state_notification_json = "{\"pubsubTopicName\":\"projects/my-project/topics/sss\"}";
    rs.log_level = LK_LOG_LEVEL_INFO;
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_EVENT_NOTIFY, W));
    OK(lk_registry_get_registry(f->reg, &NAME, &r, W));
    assert_string_equal(r.event_notification_json, rs.event_notification_json);
    assert_null(r.state_notification_json);
    assert_int_equal(r.log_level, LK_LOG_LEVEL_UNSPECIFIED);
    assert_int_equal(r.http, LK_REG_STATE_DISABLED);
    lk_reg_registry_free(&r);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_STATE_NOTIFY | LK_REG_SET_REG_LOG_LEVEL, W));
    OK(lk_registry_get_registry(f->reg, &NAME, &r, W));
    assert_string_equal(r.event_notification_json, rs.event_notification_json);
    assert_string_equal(r.state_notification_json, rs.state_notification_json);
    assert_int_equal(r.log_level, LK_LOG_LEVEL_INFO);
    lk_reg_registry_free(&r);
    OK(lk_registry_change_head(f->reg, &head1));
    assert_int_equal(head0 + 2, head1);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_REG_LOG_LEVEL, W));
    OK(lk_registry_change_head(f->reg, &head0));
    assert_int_equal(head0, head1 + 1);
    /* NULL and "" clear */
    rs.event_notification_json = NULL;
    rs.state_notification_json = "";
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_EVENT_NOTIFY | LK_REG_SET_STATE_NOTIFY, W));
    OK(lk_registry_get_registry(f->reg, &NAME, &r, W));
    assert_null(r.event_notification_json);
    assert_null(r.state_notification_json);
    assert_int_equal(r.log_level, LK_LOG_LEVEL_INFO);
    lk_reg_registry_free(&r);

    /* certificates: the whole list replaced, in order */
    cas[0] = ca_pem("ca0", T0 - DAY, T0 + DAY);  /* expires soon */
    cas[1] = ca_pem("ca1", T0 - DAY, T0 + 365 * DAY);
    cas[2] = ca_pem("ca2", T0 - DAY, T0 + 365 * DAY);
    memcpy(made, cas, sizeof made);
    spec_cas(&rs, cas, lens, 2);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    certs_are(f, cas, 2);
    spec_cas(&rs, cas + 1, lens, 2);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    certs_are(f, cas + 1, 2);
    spec_cas(&rs, cas, lens, 1);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    certs_are(f, cas, 1);
    /* ca0 has expired since: kept without a new expiry check, but not
     * accepted new */
    f->now = T0 + 2 * DAY;
    spec_cas(&rs, cas, lens, 2);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    certs_are(f, cas, 2);
    rs.ncas = 0;
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    certs_are(f, cas, 0);

    /* refusals write nothing */
    spec_cas(&rs, cas + 1, lens, 1);
    OK(lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    before = digest(f);
    spec_cas(&rs, cas, lens, 2);
    rs.mqtt = LK_REG_STATE_DISABLED;
    REFUSE(LK_ERR_REG_CERT, "CA certificate 0: the certificate expired",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS | LK_REG_SET_MQTT, W));
    cas[3] = cas[1];
    spec_cas(&rs, cas + 1, lens, 3); /* ca1 ca2 ca1 */
    REFUSE(LK_ERR_REG_INVALID, "CA certificates 0 and 2 are the same",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS | LK_REG_SET_MQTT, W));
    for (i = 0; i < 11; i++)
        cas[i] = cas[1];
    spec_cas(&rs, cas, lens, 11);
    REFUSE(LK_ERR_REG_LIMIT, "at most 10",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    cas[0] = (char *)"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    spec_cas(&rs, cas, lens, 1);
    REFUSE(LK_ERR_REG_INVALID, "CA certificate 0: not a single PEM certificate",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    rs.ca_pems = NULL;
    REFUSE(LK_ERR_ARG, "without certificates",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_CERTS, W));
    rs.ncas = 0;
    rs.mqtt = (lk_reg_state)3;
    REFUSE(LK_ERR_REG_INVALID, "mqtt state 3", lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_MQTT, W));
    rs.mqtt = 0;
    rs.http = (lk_reg_state)9;
    REFUSE(LK_ERR_REG_INVALID, "http state 9", lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_HTTP, W));
    rs.log_level = (lk_reg_log_level)11;
    REFUSE(LK_ERR_REG_INVALID, "registry log level 11",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_REG_LOG_LEVEL, W));
    rs.event_notification_json = "{\"pubsubTopicName\":\"x\"}";
    REFUSE(LK_ERR_REG_INVALID, "eventNotificationConfigs must be a JSON array",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_EVENT_NOTIFY, W));
    rs.state_notification_json = "{\"topic\":\"x\"}";
    REFUSE(LK_ERR_REG_INVALID, "stateNotificationConfig has member 'topic'",
           lk_registry_patch_registry(f->reg, &NAME, &rs, LK_REG_SET_STATE_NOTIFY, W));
    REFUSE(LK_ERR_ARG, "the patch mask", lk_registry_patch_registry(f->reg, &NAME, &rs, 0, W));
    REFUSE(LK_ERR_ARG, "the patch mask", lk_registry_patch_registry(f->reg, &NAME, &rs, 64, W));
    REFUSE(LK_ERR_ARG, "no registry given", lk_registry_patch_registry(f->reg, &NAME, NULL, LK_REG_SET_MQTT, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
           lk_registry_patch_registry(f->reg, &NAME2, &rs, LK_REG_SET_MQTT, W));
    assert_int_equal(lk_registry_patch_registry(NULL, &NAME, &rs, LK_REG_SET_MQTT, NULL, 0), LK_ERR_ARG);
    after = digest(f);
    assert_string_equal(before, after);
    free(before);
    free(after);
    for (i = 0; i < 3; i++)
        free(made[i]);
}

/* ------------------------------------------------------------------ */
/* get_device_config                                                   */

static void test_get_device_config(void **state)
{
    struct lk_test_reg *f = *state;
    static const uint8_t v2[] = "second";
    lk_reg_device d;
    lk_reg_config cfg;
    uint64_t num;
    (void)state;

    OK(lk_registry_create_registry(f->reg, &NAME, 0, 0, W));
    num = mkdev(f, &NAME, "dev-a", LK_GATEWAY_TYPE_NON_GATEWAY);
    OK(lk_registry_update_config(f->reg, &NAME, "dev-a", v2, sizeof v2 - 1, 0, NULL, W));
    /* by id and by numId: the device and its newest config, one snapshot */
    OK(lk_registry_get_device_config(f->reg, &NAME, "dev-a", 0, &d, &cfg, W));
    assert_string_equal(d.id, "dev-a");
    assert_int_equal(cfg.version, 2);
    assert_int_equal(cfg.len, sizeof v2 - 1);
    assert_memory_equal(cfg.data, v2, sizeof v2); /* NUL-terminated */
    lk_reg_device_free(&d);
    lk_reg_config_free(&cfg);
    OK(lk_registry_get_device_config(f->reg, NULL, NULL, num, &d, &cfg, W));
    assert_int_equal(d.num_id, num);
    assert_int_equal(cfg.version, 2);
    lk_reg_device_free(&d);
    lk_reg_config_free(&cfg);

    /* refusals leave both outputs zeroed */
    memset(&d, 0x5a, sizeof d);
    memset(&cfg, 0x5a, sizeof cfg);
    REFUSE(LK_ERR_REG_NOT_FOUND, "",
           lk_registry_get_device_config(f->reg, &NAME, "dev-b", 0, &d, &cfg, W));
    assert_true(lk_test_all_bytes(&d, sizeof d, 0));
    assert_true(lk_test_all_bytes(&cfg, sizeof cfg, 0));
    memset(&d, 0x5a, sizeof d);
    REFUSE(LK_ERR_ARG, "no config output given",
           lk_registry_get_device_config(f->reg, &NAME, "dev-a", 0, &d, NULL, W));
    assert_true(lk_test_all_bytes(&d, sizeof d, 0));
    memset(&cfg, 0x5a, sizeof cfg);
    REFUSE(LK_ERR_ARG, "no output given",
           lk_registry_get_device_config(f->reg, &NAME, "dev-a", 0, NULL, &cfg, W));
    assert_true(lk_test_all_bytes(&cfg, sizeof cfg, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_walk, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_full_brief, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_brief_fields, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_filters, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_query_refusals, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_query_max_filters, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_deep_page, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_bind, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_gateway_broker_reads, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_bind_limits, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_import_bind, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_update_device_masks, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_patch_registry, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_get_device_config, lk_test_reg_setup, lk_test_reg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
