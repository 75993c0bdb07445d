/*
 * test_registry_delivery.c — the registry's part of delivery to
 * applications (schema 6, lk_registry.h "presence" and "push
 * subscriptions") on a real SQLite file in a fresh temporary directory:
 * subscriptions created, read, listed, updated, deleted and every refusal
 * (each writing nothing); presence recorded, reset at a broker start, and
 * the tombstones a device delete leaves (with LK_CHANGE_PRESENCE_CLEAR);
 * the notification-config rules (topics of the registry's own project,
 * subfolders, at most 10) and the reserved location "topics"; and the
 * migration of a schema-5 database.
 */
#define LK_TEST_NO_LEAK "s3cr3t" /* the secrets these tests use */
#include "lk_test_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"
#include "service/registry/schema.h"

#define T0 LK_TEST_T0

static const lk_reg_name NAME = {"my-project", "us-central1", "reg1"};

/* Every row of the schema-6 tables and the change feed, as text. */
static char *dump(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    size_t n = 1;
    char *out = calloc(1, 1);
    static const char *const q[] = {
        "SELECT project || '|' || name || '|' || topic || '|' || push_endpoint || '|' || auth "
        "|| '|' || coalesce(auth_header_name, '-') || '|' || coalesce(auth_header_value, '-') "
        "|| '|' || coalesce(oidc_email, '-') || '|' || coalesce(oidc_audience, '-') || '|' || "
        "min_backoff_ms || '|' || max_backoff_ms || '|' || ack_deadline_ms || '|' || "
        "coalesce(dead_letter_topic, '-') || '|' || max_delivery_attempts || '|' || "
        "retention_ms || '|' || created FROM subscriptions ORDER BY project, name",
        "SELECT num_id || '|' || device_id || '|' || deleted FROM presence_tombstones",
        "SELECT num_id || '|' || presence || '|' || presence_time || '|' || "
        "coalesce(presence_detail, '-') FROM devices ORDER BY num_id",
        "SELECT seq || '|' || kind || '|' || num_id FROM changes ORDER BY seq",
        "SELECT id || '|' || coalesce(event_notification_json, '-') || '|' || "
        "coalesce(state_notification_json, '-') || location FROM registries ORDER BY id"};
    size_t i;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (i = 0; i < sizeof q / sizeof q[0]; i++) {
        assert_int_equal(sqlite3_prepare_v2(db, q[i], -1, &s, NULL), SQLITE_OK);
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            size_t l = strlen(t);
            out = realloc(out, n + l + 1);
            assert_non_null(out);
            memcpy(out + n - 1, t, l);
            out[n - 1 + l] = '\n';
            out[n + l] = '\0';
            n += l + 1;
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return out;
}

/* A valid subscription to start each case from. */
static lk_reg_subscription base_sub(void)
{
    lk_reg_subscription s;
    memset(&s, 0, sizeof s);
    s.project = "my-project";
    s.name = "push-one";
    s.topic = "telemetry";
    s.push_endpoint = "https://app.example.com/push?x=1";
    return s;
}

struct names {
    char got[8][64];
    unsigned n;
};

static int sub_list_cb(void *arg, const lk_reg_subscription *s)
{
    struct names *l = arg;
    if (l->n < 8)
        snprintf(l->got[l->n++], sizeof l->got[0], "%s/%s", s->project, s->name);
    return 0;
}

/* ------------------------------------------------------------------ */

static void test_subscription_crud(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_subscription s = base_sub(), g;
    struct names l;
    int64_t head = 0, since;

    OK(lk_registry_change_head(f->reg, &head));
    OK(lk_registry_subscription_create(f->reg, &s, W));
    memset(&g, 0x5a, sizeof g);
    OK(lk_registry_subscription_get(f->reg, "my-project", "push-one", &g, W));
    assert_string_equal(g.project, "my-project");
    assert_string_equal(g.name, "push-one");
    assert_string_equal(g.topic, "telemetry");
    assert_string_equal(g.push_endpoint, "https://app.example.com/push?x=1");
    assert_int_equal(g.auth, LK_PUSH_AUTH_NONE);
    assert_null(g.auth_header_name);
    assert_null(g.auth_header_value);
    assert_null(g.oidc_email);
    assert_null(g.oidc_audience);
    assert_null(g.dead_letter_topic);
    /* the defaults */
    assert_int_equal(g.min_backoff_ms, 10000);
    assert_int_equal(g.max_backoff_ms, 600000);
    assert_int_equal(g.ack_deadline_ms, 10000);
    assert_int_equal(g.max_delivery_attempts, 0);
    assert_int_equal(g.retention_ms, 7LL * 86400 * 1000);
    assert_int_equal(g.created, T0);
    lk_reg_subscription_free(&g);
    assert_null(g.project);

    since = head;
    /* a second, with header auth and a dead-letter topic, in another project */
    s = base_sub();
    s.project = "other-project";
    s.name = "push-two";
    s.auth = LK_PUSH_AUTH_HEADER;
    s.auth_header_name = "Authorization";
    s.auth_header_value = "Bearer s3cr3t";
    s.dead_letter_topic = "dead";
    s.min_backoff_ms = 1;
    s.max_backoff_ms = 1;
    s.ack_deadline_ms = 600000;
    s.retention_ms = 600000;
    f->now = T0 + 5;
    OK(lk_registry_subscription_create(f->reg, &s, W));
    OK(lk_registry_subscription_get(f->reg, "other-project", "push-two", &g, W));
    assert_int_equal(g.auth, LK_PUSH_AUTH_HEADER);
    assert_string_equal(g.auth_header_name, "Authorization");
    assert_string_equal(g.auth_header_value, "Bearer s3cr3t");
    assert_string_equal(g.dead_letter_topic, "dead");
    assert_int_equal(g.max_delivery_attempts, 5);
    assert_int_equal(g.min_backoff_ms, 1);
    assert_int_equal(g.max_backoff_ms, 1);
    assert_int_equal(g.ack_deadline_ms, 600000);
    assert_int_equal(g.retention_ms, 600000);
    assert_int_equal(g.created, T0 + 5);
    lk_reg_subscription_free(&g);

    memset(&l, 0, sizeof l);
    OK(lk_registry_subscription_list(f->reg, NULL, sub_list_cb, &l, W));
    assert_int_equal(l.n, 2);
    assert_string_equal(l.got[0], "my-project/push-one");
    assert_string_equal(l.got[1], "other-project/push-two");
    memset(&l, 0, sizeof l);
    OK(lk_registry_subscription_list(f->reg, "other-project", sub_list_cb, &l, W));
    assert_int_equal(l.n, 1);
    memset(&l, 0, sizeof l);
    OK(lk_registry_subscription_list(f->reg, "nobody", sub_list_cb, &l, W));
    assert_int_equal(l.n, 0);

    /* update: OIDC now, created kept */
    s = base_sub();
    s.auth = LK_PUSH_AUTH_OIDC;
    s.oidc_email = "pusher@my-project.iam.gserviceaccount.com";
    s.oidc_audience = "";
    s.created = 42; /* ignored */
    f->now = T0 + 9;
    OK(lk_registry_subscription_update(f->reg, &s, W));
    OK(lk_registry_subscription_get(f->reg, "my-project", "push-one", &g, W));
    assert_int_equal(g.auth, LK_PUSH_AUTH_OIDC);
    assert_string_equal(g.oidc_email, "pusher@my-project.iam.gserviceaccount.com");
    assert_null(g.oidc_audience);
    assert_int_equal(g.created, T0);
    lk_reg_subscription_free(&g);

    /* create, update, delete: three more changes, all LK_CHANGE_SUBSCRIPTION */
    OK(lk_registry_subscription_delete(f->reg, "my-project", "push-one", W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "projects/my-project/subscriptions/push-one does not exist",
           lk_registry_subscription_get(f->reg, "my-project", "push-one", &g, W));
    assert_null(g.project);
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist",
           lk_registry_subscription_delete(f->reg, "my-project", "push-one", W));
    s = base_sub();
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist", lk_registry_subscription_update(f->reg, &s, W));
    s = base_sub();
    s.project = "other-project";
    s.name = "push-two";
    REFUSE(LK_ERR_REG_EXISTS, "exists already", lk_registry_subscription_create(f->reg, &s, W));
    (void)since;
}

struct kinds {
    int n;
    lk_reg_change c[16];
};

static int kinds_cb(void *arg, const lk_reg_change *c)
{
    struct kinds *k = arg;
    if (k->n < 16)
        k->c[k->n++] = *c;
    return 0;
}

static void test_subscription_feed(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_subscription s = base_sub();
    struct kinds k;
    int64_t since = 0;
    int i;

    OK(lk_registry_change_head(f->reg, &since));
    OK(lk_registry_subscription_create(f->reg, &s, W));
    s.topic = "other-topic";
    OK(lk_registry_subscription_update(f->reg, &s, W));
    OK(lk_registry_subscription_delete(f->reg, "my-project", "push-one", W));
    memset(&k, 0, sizeof k);
    assert_int_equal(lk_registry_changes(f->reg, &since, kinds_cb, &k), LK_OK);
    assert_int_equal(k.n, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(k.c[i].kind, LK_CHANGE_SUBSCRIPTION);
        assert_int_equal(k.c[i].num_id, 0);
    }
}

/* Each refusal, with its reason, writing nothing. */
static void test_subscription_refusals(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_subscription s, g;
    char *before, *after, longname[300], longurl[2100];
    lk_registry *ro;

    s = base_sub();
    s.name = "kept-one";
    OK(lk_registry_subscription_create(f->reg, &s, W));
    before = dump(f->path);

#define BAD(code, text, ...)                                                                  \
    do {                                                                                     \
        s = base_sub();                                                                      \
        __VA_ARGS__;                                                                         \
        REFUSE(code, text, lk_registry_subscription_create(f->reg, &s, W));                 \
        s.name = "kept-one";                                                                 \
        REFUSE(code, text, lk_registry_subscription_update(f->reg, &s, W));                 \
    } while (0)

    /* names */
    BAD(LK_ERR_REG_INVALID, "project id", s.project = "Bad_Project");
    BAD(LK_ERR_REG_INVALID, "topic id 'x' is invalid", s.topic = "x");
    BAD(LK_ERR_REG_INVALID, "topic id 'goog-t' is invalid", s.topic = "goog-t");
    BAD(LK_ERR_REG_INVALID, "topic id 'a+b+c' is invalid", s.topic = "a+b+c");
    BAD(LK_ERR_REG_INVALID, "topic id '1abc' is invalid", s.topic = "1abc");
    BAD(LK_ERR_REG_INVALID, "a topic id is required", s.topic = NULL);
    BAD(LK_ERR_REG_INVALID, "a topic id is required", s.topic = "");
    memset(longname, 'a', 256);
    longname[256] = '\0';
    BAD(LK_ERR_REG_INVALID, "topic id", s.topic = longname);
    BAD(LK_ERR_REG_INVALID, "dead-letter topic id 'de' is invalid", s.dead_letter_topic = "de");
    s = base_sub();
    s.name = "ab";
    REFUSE(LK_ERR_REG_INVALID, "subscription id 'ab' is invalid",
           lk_registry_subscription_create(f->reg, &s, W));
    s.name = "has/slash";
    REFUSE(LK_ERR_REG_INVALID, "subscription id", lk_registry_subscription_create(f->reg, &s, W));
    s.project = NULL;
    REFUSE(LK_ERR_ARG, "a project is required", lk_registry_subscription_create(f->reg, &s, W));

    /* endpoints */
    BAD(LK_ERR_REG_INVALID, "a push endpoint is required", s.push_endpoint = NULL);
    BAD(LK_ERR_REG_INVALID, "must start with https://", s.push_endpoint = "ftp://a.example/x");
    BAD(LK_ERR_REG_INVALID, "must start with https://", s.push_endpoint = "HTTPS://a.example/");
    BAD(LK_ERR_REG_INVALID, "only to a loopback host", s.push_endpoint = "http://a.example/x");
    BAD(LK_ERR_REG_INVALID, "only to a loopback host", s.push_endpoint = "http://128.0.0.1/x");
    BAD(LK_ERR_REG_INVALID, "only to a loopback host", s.push_endpoint = "http://[::2]/x");
    BAD(LK_ERR_REG_INVALID, "only to a loopback host",
        s.push_endpoint = "http://127.0.0.1.evil.example/x");
    BAD(LK_ERR_REG_INVALID, "only to a loopback host",
        s.push_endpoint = "http://localhost.evil.example/");
    BAD(LK_ERR_REG_INVALID, "user:password@", s.push_endpoint = "https://u:p@a.example/x");
    BAD(LK_ERR_REG_INVALID, "user:password@", s.push_endpoint = "http://evil@127.0.0.1/x");
    BAD(LK_ERR_REG_INVALID, "#fragment", s.push_endpoint = "https://a.example/x#y");
    BAD(LK_ERR_REG_INVALID, "no host", s.push_endpoint = "https:///x");
    BAD(LK_ERR_REG_INVALID, "no host", s.push_endpoint = "https://:443/x");
    BAD(LK_ERR_REG_INVALID, "port must be a number", s.push_endpoint = "https://a.example:0/");
    BAD(LK_ERR_REG_INVALID, "port must be a number", s.push_endpoint = "https://a.example:65536/");
    BAD(LK_ERR_REG_INVALID, "port must be a number", s.push_endpoint = "https://a.example:8x/");
    BAD(LK_ERR_REG_INVALID, "other than :PORT", s.push_endpoint = "https://a.example:/x");
    BAD(LK_ERR_REG_INVALID, "no closing ']'", s.push_endpoint = "https://[::1/x");
    BAD(LK_ERR_REG_INVALID, "other than :PORT", s.push_endpoint = "https://[::1]x/");
    BAD(LK_ERR_REG_INVALID, "a space, a control", s.push_endpoint = "https://a.example/a b");
    BAD(LK_ERR_REG_INVALID, "a space, a control", s.push_endpoint = "https://a.example/\r\nX: y");
    BAD(LK_ERR_REG_INVALID, "a space, a control", s.push_endpoint = "https://a.example/\xc3\xa9");
    memcpy(longurl, "https://a.example/", 18);
    memset(longurl + 18, 'a', 2040);
    longurl[2058] = '\0';
    BAD(LK_ERR_REG_LIMIT, "the limit is 2048", s.push_endpoint = longurl);

    /* authentication */
    BAD(LK_ERR_REG_INVALID, "authentication NONE with a header", s.auth_header_name = "X-Key");
    BAD(LK_ERR_REG_INVALID, "authentication NONE with a header", s.oidc_email = "a@b.c");
    BAD(LK_ERR_REG_INVALID, "authentication 7 is invalid", s.auth = (lk_reg_push_auth)7);
    BAD(LK_ERR_REG_INVALID, "needs a header name", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_value = "s3cr3t");
    BAD(LK_ERR_REG_INVALID, "needs a header value", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key");
    BAD(LK_ERR_REG_INVALID, "needs a header value", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key"; s.auth_header_value = "");
    BAD(LK_ERR_REG_INVALID, "an HTTP token", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X Key"; s.auth_header_value = "s3cr3t");
    BAD(LK_ERR_REG_INVALID, "an HTTP token", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key:"; s.auth_header_value = "s3cr3t");
    BAD(LK_ERR_REG_INVALID, "set by latchkeyd itself", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "content-type"; s.auth_header_value = "s3cr3t");
    BAD(LK_ERR_REG_INVALID, "set by latchkeyd itself", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "Host"; s.auth_header_value = "s3cr3t");
    BAD(LK_ERR_REG_INVALID, "line break", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key"; s.auth_header_value = "s3cr3t\r\nX-Evil: 1");
    BAD(LK_ERR_REG_INVALID, "line break", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key"; s.auth_header_value = "s3cr3t\n");
    BAD(LK_ERR_REG_INVALID, "start or end with a space", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key"; s.auth_header_value = " s3cr3t");
    BAD(LK_ERR_REG_INVALID, "not both", s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Key"; s.auth_header_value = "s3cr3t"; s.oidc_email = "a@b.c");
    BAD(LK_ERR_REG_INVALID, "needs a service account email", s.auth = LK_PUSH_AUTH_OIDC);
    BAD(LK_ERR_REG_INVALID, "needs a service account email", s.auth = LK_PUSH_AUTH_OIDC;
        s.oidc_email = "");
    BAD(LK_ERR_REG_INVALID, "must be an address", s.auth = LK_PUSH_AUTH_OIDC;
        s.oidc_email = "no-at-sign");
    BAD(LK_ERR_REG_INVALID, "must be an address", s.auth = LK_PUSH_AUTH_OIDC;
        s.oidc_email = "a b@c.d");
    BAD(LK_ERR_REG_INVALID, "OIDC audience", s.auth = LK_PUSH_AUTH_OIDC;
        s.oidc_email = "a@b.c"; s.oidc_audience = "has space");
    BAD(LK_ERR_REG_INVALID, "not both", s.auth = LK_PUSH_AUTH_OIDC; s.oidc_email = "a@b.c";
        s.auth_header_name = "X-Key");

    /* numbers */
    BAD(LK_ERR_REG_INVALID, "minimum backoff -1 ms is out of range: 0 to 600 s",
        s.min_backoff_ms = -1);
    BAD(LK_ERR_REG_INVALID, "maximum backoff 600001 ms is out of range",
        s.max_backoff_ms = 600001);
    BAD(LK_ERR_REG_INVALID, "minimum backoff (20000 ms) is above the maximum (15000 ms)",
        s.min_backoff_ms = 20000; s.max_backoff_ms = 15000);
    BAD(LK_ERR_REG_INVALID, "above the maximum", s.min_backoff_ms = 600000; s.max_backoff_ms = 0;
        s.min_backoff_ms = 600000; s.max_backoff_ms = 599999);
    BAD(LK_ERR_REG_INVALID, "ack deadline 9999 ms is out of range: 10 to 600 s",
        s.ack_deadline_ms = 9999);
    BAD(LK_ERR_REG_INVALID, "ack deadline 600001 ms", s.ack_deadline_ms = 600001);
    BAD(LK_ERR_REG_INVALID, "message retention 599999 ms is out of range: 600 to 2678400 s",
        s.retention_ms = 599999);
    BAD(LK_ERR_REG_INVALID, "message retention", s.retention_ms = 31LL * 86400 * 1000 + 1);
    BAD(LK_ERR_REG_INVALID, "max delivery attempts (5) needs a dead-letter topic",
        s.max_delivery_attempts = 5);
    BAD(LK_ERR_REG_INVALID, "max delivery attempts 4 is out of range: 5 to 100",
        s.dead_letter_topic = "dead"; s.max_delivery_attempts = 4);
    BAD(LK_ERR_REG_INVALID, "max delivery attempts 101", s.dead_letter_topic = "dead";
        s.max_delivery_attempts = 101);
    BAD(LK_ERR_REG_INVALID, "the subscription's own topic", s.dead_letter_topic = "telemetry");
#undef BAD

    /* get/delete keys; NULLs */
    REFUSE(LK_ERR_REG_INVALID, "subscription id", lk_registry_subscription_get(f->reg, "my-project",
                                                                              "x", &g, W));
    REFUSE(LK_ERR_REG_INVALID, "project id",
           lk_registry_subscription_delete(f->reg, "BAD", "kept-one", W));
    REFUSE(LK_ERR_ARG, "no subscription given", lk_registry_subscription_create(f->reg, NULL, W));
    REFUSE(LK_ERR_ARG, "no callback", lk_registry_subscription_list(f->reg, NULL, NULL, NULL, W));
    REFUSE(LK_ERR_REG_INVALID, "project id",
           lk_registry_subscription_list(f->reg, "BAD", sub_list_cb, NULL, W));

    /* a read-only handle (the broker) may read, not write */
    {
        char why[256];
        struct names l;
        assert_int_equal(lk_registry_open(f->path, LK_REG_READONLY, &ro, why, sizeof why), LK_OK);
        s = base_sub();
        REFUSE(LK_ERR_STATE, "read-only", lk_registry_subscription_create(ro, &s, W));
        memset(&l, 0, sizeof l);
        OK(lk_registry_subscription_list(ro, "my-project", sub_list_cb, &l, W));
        assert_int_equal(l.n, 1);
        lk_registry_close(ro);
    }

    /* the loopback forms and the edges that are allowed */
    after = dump(f->path);
    assert_string_equal(before, after);
    free(after);
    free(before);
    {
        static const char *const good[] = {
            "http://127.0.0.1/x", "http://127.255.0.9:8080/push", "http://localhost:1/",
            "http://LocalHost", "http://[::1]:9000/p?q=1", "https://[2001:db8::1]:8443/",
            "https://a.example:65535"};
        size_t i;
        for (i = 0; i < sizeof good / sizeof good[0]; i++) {
            char name[32];
            s = base_sub();
            snprintf(name, sizeof name, "good-%zu", i);
            s.name = name;
            s.push_endpoint = (char *)good[i];
            OK(lk_registry_subscription_create(f->reg, &s, W));
        }
        s = base_sub();
        s.name = "edges";
        s.min_backoff_ms = 600000;
        s.max_backoff_ms = 600000;
        s.dead_letter_topic = "dead";
        s.max_delivery_attempts = 100;
        s.retention_ms = 31LL * 86400 * 1000;
        s.auth = LK_PUSH_AUTH_HEADER;
        s.auth_header_name = "X-Api-Key!#$%&'*+-.^_`|~";
        s.auth_header_value = "a\tb";
        OK(lk_registry_subscription_create(f->reg, &s, W));
    }
}

/* ------------------------------------------------------------------ */
/* Presence                                                            */

static uint64_t mkdev(struct lk_test_reg *f, const char *id)
{
    lk_reg_device_spec spec;
    uint64_t num = 0;
    memset(&spec, 0, sizeof spec);
    spec.id = id;
    OK(lk_registry_create_device(f->reg, &NAME, &spec, &num, W));
    return num;
}

struct pres {
    int n;
    uint64_t num[8];
    lk_reg_presence p[8];
    int64_t t[8];
    char detail[8][64];
    char path[8][128];
};

static int pres_cb(void *arg, const lk_reg_device *d)
{
    struct pres *p = arg;
    if (p->n < 8) {
        p->num[p->n] = d->num_id;
        p->p[p->n] = d->presence;
        p->t[p->n] = d->presence_time;
        snprintf(p->detail[p->n], sizeof p->detail[0], "%s",
                 d->presence_detail != NULL ? d->presence_detail : "-");
        snprintf(p->path[p->n], sizeof p->path[0], "%s/%s/%s/%s", d->project, d->location,
                 d->registry, d->id);
        p->n++;
    }
    return 0;
}

static int tomb_cb(void *arg, const lk_reg_tombstone *t)
{
    struct pres *p = arg;
    if (p->n < 8) {
        p->num[p->n] = t->num_id;
        snprintf(p->path[p->n], sizeof p->path[0], "%s/%s/%s/%s", t->project, t->location,
                 t->registry, t->id);
        p->n++;
    }
    return 0;
}

static void test_presence(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_presence_update u[3];
    lk_reg_device d;
    struct pres p;
    uint64_t a, b, c;
    lk_registry *ro;
    char why[256];

    OK(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                   LK_REG_STATE_UNSPECIFIED, W));
    a = mkdev(f, "dev-a");
    b = mkdev(f, "dev-b");
    c = mkdev(f, "dev-c");
    memset(&d, 0, sizeof d);
    OK(lk_registry_get_device(f->reg, &NAME, "dev-a", 0, &d, W));
    assert_int_equal(d.presence, LK_PRESENCE_NEVER);
    assert_int_equal(d.presence_time, 0);
    assert_null(d.presence_detail);
    lk_reg_device_free(&d);

    /* The broker records with a READONLY handle. */
    assert_int_equal(lk_registry_open(f->path, LK_REG_READONLY, &ro, why, sizeof why), LK_OK);
    memset(u, 0, sizeof u);
    u[0].num_id = a;
    u[0].presence = LK_PRESENCE_ONLINE;
    u[0].time = T0 + 10;
    u[0].detail = "192.0.2.7:50000";
    u[1].num_id = b;
    u[1].presence = LK_PRESENCE_OFFLINE;
    u[1].time = T0 + 11;
    u[1].detail = "the connection was lost";
    u[2].num_id = 999999; /* deleted or unknown: skipped */
    u[2].presence = LK_PRESENCE_ONLINE;
    u[2].time = T0 + 12;
    assert_int_equal(lk_registry_presence_record(ro, u, 3), LK_OK);
    OK(lk_registry_get_device(f->reg, &NAME, "dev-a", 0, &d, W));
    assert_int_equal(d.presence, LK_PRESENCE_ONLINE);
    assert_int_equal(d.presence_time, T0 + 10);
    assert_string_equal(d.presence_detail, "192.0.2.7:50000");
    lk_reg_device_free(&d);
    /* an older record never undoes a newer one */
    u[0].presence = LK_PRESENCE_OFFLINE;
    u[0].time = T0 + 9;
    u[0].detail = NULL;
    assert_int_equal(lk_registry_presence_record(ro, u, 1), LK_OK);
    OK(lk_registry_get_device(f->reg, NULL, NULL, a, &d, W));
    assert_int_equal(d.presence, LK_PRESENCE_ONLINE);
    lk_reg_device_free(&d);
    /* refusals: nothing recorded */
    u[0].presence = LK_PRESENCE_NEVER;
    u[0].time = T0 + 20;
    assert_int_equal(lk_registry_presence_record(ro, u, 1), LK_ERR_ARG);
    u[0].presence = LK_PRESENCE_OFFLINE;
    u[0].time = -1;
    assert_int_equal(lk_registry_presence_record(ro, u, 1), LK_ERR_ARG);
    assert_int_equal(lk_registry_presence_record(ro, NULL, 1), LK_ERR_ARG);
    assert_int_equal(lk_registry_presence_record(ro, NULL, 0), LK_OK);
    OK(lk_registry_get_device(f->reg, NULL, NULL, a, &d, W));
    assert_int_equal(d.presence, LK_PRESENCE_ONLINE);
    lk_reg_device_free(&d);

    /* the broker restarts: ONLINE becomes OFFLINE; both recorded ones listed */
    memset(&p, 0, sizeof p);
    OK(lk_registry_presence_reset(ro, T0 + 100, "the broker restarted", pres_cb, &p, W));
    assert_int_equal(p.n, 2);
    assert_int_equal(p.num[0], a);
    assert_int_equal(p.p[0], LK_PRESENCE_OFFLINE);
    assert_int_equal(p.t[0], T0 + 100);
    assert_string_equal(p.detail[0], "the broker restarted");
    assert_string_equal(p.path[0], "my-project/us-central1/reg1/dev-a");
    assert_int_equal(p.num[1], b);
    assert_int_equal(p.p[1], LK_PRESENCE_OFFLINE);
    assert_int_equal(p.t[1], T0 + 11);
    assert_string_equal(p.detail[1], "the connection was lost");
    REFUSE(LK_ERR_ARG, "callback", lk_registry_presence_reset(ro, T0, "r", NULL, NULL, W));
    lk_registry_close(ro);
    (void)c;
}

static void test_presence_tombstones(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_presence_update u;
    struct pres p;
    struct kinds k;
    uint64_t a, b, done[2];
    int64_t since = 0;
    lk_registry *ro;
    char why[256], *before, *after;

    OK(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                   LK_REG_STATE_UNSPECIFIED, W));
    a = mkdev(f, "dev-a");
    b = mkdev(f, "dev-b");
    memset(&u, 0, sizeof u);
    u.num_id = a;
    u.presence = LK_PRESENCE_ONLINE;
    u.time = T0 + 1;
    assert_int_equal(lk_registry_presence_record(f->reg, &u, 1), LK_OK);

    /* dev-b never connected: no tombstone, no PRESENCE_CLEAR */
    OK(lk_registry_change_head(f->reg, &since));
    f->now = T0 + 50;
    OK(lk_registry_delete_device(f->reg, &NAME, "dev-b", W));
    memset(&k, 0, sizeof k);
    assert_int_equal(lk_registry_changes(f->reg, &since, kinds_cb, &k), LK_OK);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.c[0].kind, LK_CHANGE_DEVICE_DELETED);
    assert_int_equal(k.c[0].num_id, b);
    memset(&p, 0, sizeof p);
    OK(lk_registry_presence_tombstones(f->reg, tomb_cb, &p, W));
    assert_int_equal(p.n, 0);

    /* dev-a did: a tombstone and PRESENCE_CLEAR in the delete's transaction */
    OK(lk_registry_delete_device(f->reg, &NAME, "dev-a", W));
    memset(&k, 0, sizeof k);
    assert_int_equal(lk_registry_changes(f->reg, &since, kinds_cb, &k), LK_OK);
    assert_int_equal(k.n, 2);
    assert_int_equal(k.c[0].kind, LK_CHANGE_PRESENCE_CLEAR);
    assert_int_equal(k.c[0].num_id, a);
    assert_int_equal(k.c[1].kind, LK_CHANGE_DEVICE_DELETED);
    assert_int_equal(k.c[1].num_id, a);
    assert_int_equal(lk_registry_open(f->path, LK_REG_READONLY, &ro, why, sizeof why), LK_OK);
    memset(&p, 0, sizeof p);
    OK(lk_registry_presence_tombstones(ro, tomb_cb, &p, W));
    assert_int_equal(p.n, 1);
    assert_int_equal(p.num[0], a);
    assert_string_equal(p.path[0], "my-project/us-central1/reg1/dev-a");
    /* the registry can go now; the tombstone stays until the broker is done */
    OK(lk_registry_delete_registry(f->reg, &NAME, W));
    memset(&p, 0, sizeof p);
    OK(lk_registry_presence_tombstones(ro, tomb_cb, &p, W));
    assert_int_equal(p.n, 1);
    done[0] = a;
    done[1] = 12345; /* not there: not an error */
    OK(lk_registry_presence_tombstones_done(ro, done, 2, W));
    memset(&p, 0, sizeof p);
    OK(lk_registry_presence_tombstones(ro, tomb_cb, &p, W));
    assert_int_equal(p.n, 0);
    OK(lk_registry_presence_tombstones_done(ro, NULL, 0, W));
    REFUSE(LK_ERR_ARG, "without an array", lk_registry_presence_tombstones_done(ro, NULL, 1, W));
    REFUSE(LK_ERR_ARG, "no callback", lk_registry_presence_tombstones(ro, NULL, NULL, W));
    /* the broker's presence layout: 0 until stored, stored by a read-only handle too */
    {
        int layout = -1;
        OK(lk_registry_presence_layout(ro, &layout, W));
        assert_int_equal(layout, 0);
        OK(lk_registry_presence_layout_set(ro, 1, W));
        OK(lk_registry_presence_layout(f->reg, &layout, W));
        assert_int_equal(layout, 1);
        REFUSE(LK_ERR_ARG, "0..999", lk_registry_presence_layout_set(ro, -1, W));
        REFUSE(LK_ERR_ARG, "0..999", lk_registry_presence_layout_set(ro, 1000, W));
        REFUSE(LK_ERR_ARG, "no layout", lk_registry_presence_layout(ro, NULL, W));
        OK(lk_registry_presence_layout(ro, &layout, W));
        assert_int_equal(layout, 1);
    }
    lk_registry_close(ro);

    /* a delete refused (no such device) leaves nothing */
    OK(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                   LK_REG_STATE_UNSPECIFIED, W));
    before = dump(f->path);
    REFUSE(LK_ERR_REG_NOT_FOUND, "dev-zzz", lk_registry_delete_device(f->reg, &NAME, "dev-zzz", W));
    after = dump(f->path);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* list_devices and query_devices fill the presence fields too. */
static int first_presence(void *arg, const lk_reg_device *d)
{
    struct pres *p = arg;
    return pres_cb(p, d);
}

static void test_presence_in_lists(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_presence_update u;
    lk_reg_device_query q;
    struct pres p;
    int more = 0;

    OK(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                   LK_REG_STATE_UNSPECIFIED, W));
    memset(&u, 0, sizeof u);
    u.num_id = mkdev(f, "dev-a");
    u.presence = LK_PRESENCE_ONLINE;
    u.time = T0 + 3;
    u.detail = "198.51.100.1:1";
    assert_int_equal(lk_registry_presence_record(f->reg, &u, 1), LK_OK);
    memset(&p, 0, sizeof p);
    OK(lk_registry_list_devices(f->reg, &NAME, first_presence, &p, W));
    assert_int_equal(p.n, 1);
    assert_int_equal(p.p[0], LK_PRESENCE_ONLINE);
    assert_int_equal(p.t[0], T0 + 3);
    assert_string_equal(p.detail[0], "198.51.100.1:1");
    memset(&q, 0, sizeof q);
    q.limit = 10;
    memset(&p, 0, sizeof p);
    OK(lk_registry_query_devices(f->reg, &NAME, &q, first_presence, &p, &more, W));
    assert_int_equal(p.n, 1);
    assert_int_equal(p.p[0], LK_PRESENCE_ONLINE);
    assert_string_equal(p.detail[0], "198.51.100.1:1");
}

/* ------------------------------------------------------------------ */
/* Notification configs and the location "topics"                     */

static void test_notification_rules(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_registry_spec spec;
    lk_reg_name topics = {"my-project", "topics", "reg2"};
    char *before, *after, many[2048];
    int i;

    OK(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                   LK_REG_STATE_UNSPECIFIED, W));
    OK(lk_registry_update_registry(f->reg, &NAME, 0, 0,
                                   "[{\"subfolderMatches\":\"alerts/high\",\"pubsubTopicName\":"
                                   "\"projects/my-project/topics/alerts\"},{\"subfolderMatches\":"
                                   "\"\",\"pubsubTopicName\":\"projects/my-project/topics/all\"}]",
                                   "{\"pubsubTopicName\":\"projects/my-project/topics/state-t\"}",
                                   W));
    OK(lk_registry_update_registry(f->reg, &NAME, 0, 0, NULL, "{}", W)); /* {} = none */
    before = dump(f->path);

#define BADN(text, ev, st)                                                                    \
    do {                                                                                     \
        REFUSE(LK_ERR_REG_INVALID, text,                                                     \
               lk_registry_update_registry(f->reg, &NAME, 0, 0, ev, st, W));                 \
        memset(&spec, 0, sizeof spec);                                                       \
        spec.event_notification_json = ev;                                                   \
        spec.state_notification_json = st;                                                   \
        REFUSE(LK_ERR_REG_INVALID, text,                                                     \
               lk_registry_patch_registry(f->reg, &NAME, &spec,                              \
                                          (ev ? LK_REG_SET_EVENT_NOTIFY : 0) |               \
                                              (st ? LK_REG_SET_STATE_NOTIFY : 0),            \
                                          W));                                               \
        REFUSE(LK_ERR_REG_INVALID, text,                                                     \
               lk_registry_create_registry_full(f->reg, &(lk_reg_name){"my-project",         \
                                                "us-central1", "reg9"}, &spec, W));           \
    } while (0)
    BADN("is not a topic of this registry's project: it must be projects/my-project/topics/TOPIC",
         "[{\"pubsubTopicName\":\"projects/other/topics/alerts\"}]", NULL);
    BADN("projects/my-project/topics/TOPIC", NULL,
         "{\"pubsubTopicName\":\"projects/my-project-2/topics/alerts\"}");
    BADN("not a topic", NULL, "{\"pubsubTopicName\":\"alerts\"}");
    BADN("not a topic", NULL, "{\"pubsubTopicName\":\"\"}");
    BADN("not a topic", NULL, "{\"pubsubTopicName\":\"projects/my-project/subscriptions/abc\"}");
    BADN("topic id 'a+b+c' is invalid", NULL,
         "{\"pubsubTopicName\":\"projects/my-project/topics/a+b+c\"}");
    BADN("topic id 'goog-x' is invalid",
         "[{\"pubsubTopicName\":\"projects/my-project/topics/goog-x\"}]", NULL);
    BADN("topic id 'ab/cd' is invalid",
         "[{\"pubsubTopicName\":\"projects/my-project/topics/ab/cd\"}]", NULL);
    BADN("eventNotificationConfigs[1] has no pubsubTopicName",
         "[{\"pubsubTopicName\":\"projects/my-project/topics/abc\"},{\"subfolderMatches\":\"x\"}]",
         NULL);
    BADN("subfolderMatches 'a+' is not a valid subfolder",
         "[{\"subfolderMatches\":\"a+\",\"pubsubTopicName\":\"projects/my-project/topics/abc\"}]",
         NULL);
    BADN("is not a valid subfolder",
         "[{\"subfolderMatches\":\"/a\",\"pubsubTopicName\":\"projects/my-project/topics/abc\"}]",
         NULL);
    BADN("is not a valid subfolder",
         "[{\"subfolderMatches\":\"a//b\",\"pubsubTopicName\":\"projects/my-project/topics/abc\"}]",
         NULL);
    strcpy(many, "[");
    for (i = 0; i < 11; i++)
        strcat(many, i ? ",{\"pubsubTopicName\":\"projects/my-project/topics/abc\"}"
                       : "{\"pubsubTopicName\":\"projects/my-project/topics/abc\"}");
    strcat(many, "]");
    {
        const char *m = many;
        BADN("at most 10", m, NULL);
    }
#undef BADN

    /* a new registry may not be in location "topics" (create, full, import) */
    REFUSE(LK_ERR_REG_INVALID, "location 'topics' is reserved",
           lk_registry_create_registry(f->reg, &topics, LK_REG_STATE_UNSPECIFIED,
                                       LK_REG_STATE_UNSPECIFIED, W));
    memset(&spec, 0, sizeof spec);
    REFUSE(LK_ERR_REG_INVALID, "latchkey/P/topics/",
           lk_registry_create_registry_full(f->reg, &topics, &spec, W));
    OK(lk_registry_import_registries_begin(f->reg, W));
    REFUSE(LK_ERR_REG_INVALID, "location 'topics' is reserved",
           lk_registry_import_add_registry(f->reg, &topics, &spec, W));
    /* nor in location "presence" (latchkey/P/presence/L/R/D) */
    REFUSE(LK_ERR_REG_INVALID, "location 'presence' is reserved",
           lk_registry_import_add_registry(f->reg, &(lk_reg_name){"my-project", "presence", "reg2"}, &spec,
                                           W));
    spec.event_notification_json = "[{\"pubsubTopicName\":\"projects/old/topics/abc\"}]";
    REFUSE(LK_ERR_REG_INVALID, "projects/my-project/topics/TOPIC",
           lk_registry_import_add_registry(f->reg, &(lk_reg_name){"my-project", "us-central1",
                                                                  "reg8"}, &spec, W));
    lk_registry_import_abort(f->reg);
    memset(&spec, 0, sizeof spec);
    REFUSE(LK_ERR_REG_INVALID, "latchkey/P/presence/",
           lk_registry_create_registry_full(f->reg, &(lk_reg_name){"my-project", "presence", "reg2"}, &spec, W));
    REFUSE(LK_ERR_REG_INVALID, "location 'presence' is reserved",
           lk_registry_create_registry(f->reg, &(lk_reg_name){"my-project", "presence", "reg2"},
                                       LK_REG_STATE_UNSPECIFIED, LK_REG_STATE_UNSPECIFIED, W));
    after = dump(f->path);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* an import with the registry's own topics is fine */
    OK(lk_registry_import_registries_begin(f->reg, W));
    spec.event_notification_json = "[{\"pubsubTopicName\":\"projects/my-project/topics/abc\"}]";
    OK(lk_registry_import_add_registry(f->reg, &(lk_reg_name){"my-project", "us-central1", "reg8"},
                                       &spec, W));
    OK(lk_registry_import_commit(f->reg, W));
}

/* ------------------------------------------------------------------ */
/* Migration                                                           */

static int q1(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    int v = -1;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* A version-5 database (the previous release) with a registry, a device and
 * a registry in location "topics" (allowed then: it stays) migrates to 6. */
static void test_migrate_v5(void **state)
{
    struct lk_test_reg *f = *state;
    char p[4200], sql[1024];
    lk_registry *r = NULL;
    lk_reg_device d;
    lk_reg_subscription s = base_sub();
    lk_reg_presence_update u;
    lk_reg_registry rr;
    sqlite3 *db;
    int v;

    snprintf(p, sizeof p, "%s/v5.db", f->dir);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; BEGIN",
                                  NULL, NULL, NULL), SQLITE_OK);
    for (v = 0; v < 5; v++)
        assert_int_equal(sqlite3_exec(db, lk_reg_sqlite_migrations[v], NULL, NULL, NULL), SQLITE_OK);
    snprintf(sql, sizeof sql,
             "PRAGMA application_id = %d;"
             "INSERT INTO meta(key, value) VALUES('schema_version', 5);"
             "INSERT INTO registries(id, project, location, registry_id, mqtt, http, created, "
             "event_notification_json) VALUES(1, 'my-project', 'us-central1', 'reg1', 1, 1, %lld, "
             "'[{\"pubsubTopicName\":\"projects/old/topics/x\"}]');"
             "INSERT INTO registries(id, project, location, registry_id, mqtt, http, created) "
             "VALUES(2, 'my-project', 'topics', 'reg2', 1, 1, %lld);"
             "INSERT INTO devices(registry, device_id, created, last_event) VALUES(1, 'dev1', %lld, %lld);",
             LK_REG_APPLICATION_ID, T0, T0, T0, T0 + 7);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* the broker (READONLY) does not migrate */
    REFUSE(LK_ERR_REG_SCHEMA, "", lk_registry_open(p, LK_REG_READONLY, &r, W));
    OK(lk_registry_open(p, 0, &r, W));
    assert_int_equal(q1(p, "SELECT value FROM meta WHERE key = 'schema_version'"), LK_REG_SCHEMA_VERSION);
    assert_int_equal(LK_REG_SCHEMA_VERSION, 9);
    memset(&d, 0, sizeof d);
    OK(lk_registry_get_device(r, &NAME, "dev1", 0, &d, W));
    assert_int_equal(d.num_id, 1);
    assert_int_equal(d.last_event, T0 + 7);
    assert_int_equal(d.presence, LK_PRESENCE_NEVER);
    assert_int_equal(d.presence_time, 0);
    assert_null(d.presence_detail);
    lk_reg_device_free(&d);
    /* what older versions stored stays readable (the rules apply to changes) */
    memset(&rr, 0, sizeof rr);
    OK(lk_registry_get_registry(r, &NAME, &rr, W));
    assert_non_null(strstr(rr.event_notification_json, "projects/old/topics/x"));
    lk_reg_registry_free(&rr);
    OK(lk_registry_get_registry(r, &(lk_reg_name){"my-project", "topics", "reg2"}, &rr, W));
    lk_reg_registry_free(&rr);
    /* and the new tables work */
    OK(lk_registry_subscription_create(r, &s, W));
    memset(&u, 0, sizeof u);
    u.num_id = 1;
    u.presence = LK_PRESENCE_ONLINE;
    u.time = T0 + 8;
    assert_int_equal(lk_registry_presence_record(r, &u, 1), LK_OK);
    OK(lk_registry_delete_device(r, &NAME, "dev1", W));
    assert_int_equal(q1(p, "SELECT count(*) FROM presence_tombstones"), 1);
    lk_registry_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_subscription_crud, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_subscription_feed, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_subscription_refusals, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_presence, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_presence_tombstones, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_presence_in_lists, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_notification_rules, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_migrate_v5, lk_test_reg_setup, lk_test_reg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
