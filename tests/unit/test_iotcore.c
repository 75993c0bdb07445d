/*
 * test_iotcore.c — the wire grammar of lk_iotcore.h: resource paths, the
 * device's MQTT topics, the backends' topics and the backend secret's hash.
 * Round trips, and rejections: overlong, bad characters, wrong shape, small
 * buffers (wiped, length 0).
 */
#include "lk_test.h"

#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "latchkey/lk_iotcore.h"

#define FILL 0x5a

static int all_bytes(const char *p, size_t n, int v)
{
    size_t i;
    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] != v)
            return 0;
    return 1;
}

static void fill(char *s, char c, size_t n)
{
    memset(s, c, n);
    s[n] = '\0';
}

/* # Paths */

static void test_paths_format(void **state)
{
    char buf[LK_DEVICE_PATH_MAX + 1];
    size_t len = 99;
    (void)state;

    assert_int_equal(lk_registry_path("my-project", "us-central1", "reg-1", buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "projects/my-project/locations/us-central1/registries/reg-1");
    assert_int_equal(len, strlen(buf));
    assert_int_equal(lk_device_path("my-project", "us-central1", "reg-1", "dev+1%~._-", buf, sizeof buf,
                                    &len), LK_OK);
    assert_string_equal(buf, "projects/my-project/locations/us-central1/registries/reg-1/devices/dev+1%~._-");
    assert_int_equal(len, strlen(buf));
    /* a numeric id, as resource names give it */
    assert_int_equal(lk_device_path("p-1234", "l", "r12", "18446744073709551615", buf, sizeof buf, NULL),
                     LK_OK);
    assert_string_equal(buf, "projects/p-1234/locations/l/registries/r12/devices/18446744073709551615");
    /* len may be NULL */
    assert_int_equal(lk_registry_path("p-1234", "l", "r12", buf, sizeof buf, NULL), LK_OK);
}

static void test_paths_longest(void **state)
{
    char p[LK_PROJECT_MAX + 1], l[LK_LOCATION_MAX + 1], r[LK_ID_MAX + 1], d[LK_ID_MAX + 1];
    char buf[LK_DEVICE_PATH_MAX + 2];
    lk_device_name n;
    size_t len = 0;
    (void)state;

    fill(p, 'p', LK_PROJECT_MAX);
    fill(l, 'l', LK_LOCATION_MAX);
    fill(r, 'r', LK_ID_MAX);
    fill(d, 'd', LK_ID_MAX);
    assert_int_equal(lk_device_path(p, l, r, d, buf, LK_DEVICE_PATH_MAX + 1, &len), LK_OK);
    assert_int_equal(len, LK_DEVICE_PATH_MAX);
    assert_int_equal(lk_device_path_parse(buf, len, &n), LK_OK);
    assert_string_equal(n.project, p);
    assert_string_equal(n.location, l);
    assert_string_equal(n.registry, r);
    assert_string_equal(n.device, d);
    assert_int_equal(lk_registry_path(p, l, r, buf, LK_REGISTRY_PATH_MAX + 1, &len), LK_OK);
    assert_int_equal(len, LK_REGISTRY_PATH_MAX);

    /* one byte short: LK_ERR_BUFFER, wiped, length 0 */
    memset(buf, FILL, sizeof buf);
    len = 99;
    assert_int_equal(lk_device_path(p, l, r, d, buf, LK_DEVICE_PATH_MAX, &len), LK_ERR_BUFFER);
    assert_int_equal(len, 0);
    assert_true(all_bytes(buf, LK_DEVICE_PATH_MAX, 0));
    assert_int_equal((unsigned char)buf[LK_DEVICE_PATH_MAX], FILL);
}

static void test_paths_format_rejects(void **state)
{
    char buf[LK_DEVICE_PATH_MAX + 1], big[LK_ID_MAX + 2], bigp[LK_PROJECT_MAX + 2], bigl[LK_LOCATION_MAX + 2];
    size_t len;
    const char *bad[] = {"", "a/b", "a b", "a\tb", "a\x7f", "caf\xc3\xa9"};
    size_t i;
    (void)state;

    fill(big, 'd', LK_ID_MAX + 1);
    fill(bigp, 'p', LK_PROJECT_MAX + 1);
    fill(bigl, 'l', LK_LOCATION_MAX + 1);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(buf, FILL, sizeof buf);
        len = 99;
        assert_int_equal(lk_device_path("proj-1", "l", "reg", bad[i], buf, sizeof buf, &len), LK_ERR_ARG);
        assert_int_equal(len, 0);
        assert_true(all_bytes(buf, sizeof buf, 0));
        assert_int_equal(lk_device_path(bad[i], "l", "reg", "dev", buf, sizeof buf, &len), LK_ERR_ARG);
        assert_int_equal(lk_registry_path("proj-1", "l", bad[i], buf, sizeof buf, &len), LK_ERR_ARG);
    }
    assert_int_equal(lk_device_path("proj-1", "l", "reg", big, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path("proj-1", "l", big, "dev", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path(bigp, "l", "reg", "dev", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path("proj-1", bigl, "reg", "dev", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path(NULL, "l", "reg", "dev", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path("proj-1", "l", "reg", NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path("proj-1", "l", "reg", "dev", NULL, 10, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_path("proj-1", "l", "reg", "dev", buf, 0, &len), LK_ERR_ARG);
}

static void test_path_parse(void **state)
{
    static const char good[] = "projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1";
    static const char *const bad[] = {
        "",
        "projects/my-project/locations/us-central1/registries/reg-1",
        "projects/my-project/locations/us-central1/registries/reg-1/devices/",
        "projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/",
        "projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/x",
        "projects/my-project/locations/us-central1/registries/reg-1/devices/dev/1",
        "projects/my-project/locations/us-central1/registries//devices/dev-1",
        "/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1",
        "project/my-project/locations/us-central1/registries/reg-1/devices/dev-1",
        "projects/my-project/regions/us-central1/registries/reg-1/devices/dev-1",
        "projects/my-project/locations/us-central1/registries/reg-1/device/dev-1",
        "projects/My-Project/locations/us-central1/registries/reg-1/devices/dev-1",  /* upper case */
        "projects/my-project/locations/US/registries/reg-1/devices/dev-1",
        "projects/my-project/locations/us-central1/registries/1reg/devices/dev-1",   /* starts with a digit */
        "projects/my-project/locations/us-central1/registries/reg-1/devices/goog-1", /* goog */
        "projects/my-project/locations/us-central1/registries/reg-1/devices/d#v",    /* bad character */
        "projects/my-project/locations/us-central1/registries/reg-1/devices/d v",
        "projects/my-project/locations/us-central1/registries/reg-1/devices/dv",     /* too short */
        "projects/my-project/locations/us-central1/registries/reg-1/devices/18446744073709551615",
    };
    lk_device_name n, zero;
    char over[LK_DEVICE_PATH_MAX + 64];
    size_t i;
    (void)state;

    assert_int_equal(lk_device_path_parse(good, strlen(good), &n), LK_OK);
    assert_string_equal(n.project, "my-project");
    assert_string_equal(n.location, "us-central1");
    assert_string_equal(n.registry, "reg-1");
    assert_string_equal(n.device, "dev-1");
    /* bounded: only len bytes are read */
    assert_int_equal(lk_device_path_parse(good, strlen(good) - 2, &n), LK_OK);
    assert_string_equal(n.device, "dev");
    assert_int_equal(lk_device_path_parse(good, strlen(good) - 3, &n), LK_ERR_ARG); /* "de" */
    assert_int_equal(lk_device_path_parse(good, strlen(good) + 1, &n), LK_ERR_ARG); /* the NUL */

    memset(&zero, 0, sizeof zero);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&n, FILL, sizeof n);
        if (lk_device_path_parse(bad[i], strlen(bad[i]), &n) != LK_ERR_ARG)
            fail_msg("accepted %s", bad[i]);
        assert_memory_equal(&n, &zero, sizeof n);
    }
    /* overlong: a valid shape with a device id one past the maximum */
    snprintf(over, sizeof over, "projects/my-project/locations/l/registries/reg/devices/");
    fill(over + strlen(over), 'd', LK_ID_MAX + 1);
    assert_int_equal(lk_device_path_parse(over, strlen(over), &n), LK_ERR_ARG);
    assert_int_equal(lk_device_path_parse(NULL, 0, &n), LK_ERR_ARG);
    assert_int_equal(lk_device_path_parse(good, strlen(good), NULL), LK_ERR_ARG);
}

/* # Topics */

static void test_device_topics(void **state)
{
    static const struct { lk_topic kind; const char *sub, *want; } cases[] = {
        {LK_TOPIC_EVENTS, NULL, "/devices/dev-1/events"},
        {LK_TOPIC_EVENTS, "", "/devices/dev-1/events"},
        {LK_TOPIC_EVENTS, "a/b", "/devices/dev-1/events/a/b"},
        {LK_TOPIC_STATE, NULL, "/devices/dev-1/state"},
        {LK_TOPIC_CONFIG, NULL, "/devices/dev-1/config"},
        {LK_TOPIC_COMMANDS, NULL, "/devices/dev-1/commands"},
        {LK_TOPIC_COMMANDS, "reboot", "/devices/dev-1/commands/reboot"},
        {LK_TOPIC_COMMANDS_ALL, NULL, "/devices/dev-1/commands/#"},
    };
    char buf[LK_DEVICE_TOPIC_MAX + 1];
    size_t i, len;
    (void)state;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *sub = "x";
        len = 0;
        assert_int_equal(lk_device_topic("dev-1", cases[i].kind, cases[i].sub, buf, sizeof buf, &len),
                         LK_OK);
        assert_string_equal(buf, cases[i].want);
        assert_int_equal(len, strlen(buf));
        /* round trip */
        assert_int_equal(lk_device_topic_parse("dev-1", buf, len, &sub), cases[i].kind);
        if (cases[i].sub != NULL && cases[i].sub[0] != '\0')
            assert_string_equal(sub, cases[i].sub);
        else
            assert_null(sub);
    }
}

static void test_device_topics_longest(void **state)
{
    char dev[LK_ID_MAX + 1], sub[LK_SUBFOLDER_MAX + 1], buf[LK_DEVICE_TOPIC_MAX + 1];
    const char *got;
    size_t len;
    (void)state;

    fill(dev, 'd', LK_ID_MAX);
    fill(sub, 's', LK_SUBFOLDER_MAX);
    assert_int_equal(lk_device_topic(dev, LK_TOPIC_COMMANDS, sub, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(len, LK_DEVICE_TOPIC_MAX);
    assert_int_equal(lk_device_topic_parse(dev, buf, len, &got), LK_TOPIC_COMMANDS);
    assert_ptr_equal(got, buf + len - LK_SUBFOLDER_MAX);
    memset(buf, FILL, sizeof buf);
    len = 99;
    assert_int_equal(lk_device_topic(dev, LK_TOPIC_COMMANDS, sub, buf, LK_DEVICE_TOPIC_MAX, &len),
                     LK_ERR_BUFFER);
    assert_int_equal(len, 0);
    assert_true(all_bytes(buf, LK_DEVICE_TOPIC_MAX, 0));
}

static void test_device_topic_rejects(void **state)
{
    char buf[LK_DEVICE_TOPIC_MAX + 1], big[LK_SUBFOLDER_MAX + 2], bigid[LK_ID_MAX + 2];
    size_t len;
    (void)state;

    fill(big, 's', LK_SUBFOLDER_MAX + 1);
    fill(bigid, 'd', LK_ID_MAX + 1);
#define REJECT(dev, kind, sub)                                                              \
    do {                                                                                    \
        memset(buf, FILL, sizeof buf);                                                      \
        len = 99;                                                                           \
        assert_int_equal(lk_device_topic(dev, kind, sub, buf, sizeof buf, &len), LK_ERR_ARG); \
        assert_int_equal(len, 0);                                                           \
        assert_true(all_bytes(buf, sizeof buf, 0));                                         \
    } while (0)
    REJECT("dev-1", LK_TOPIC_EVENTS, "a+b");
    REJECT("dev-1", LK_TOPIC_EVENTS, "a/#");
    REJECT("dev-1", LK_TOPIC_EVENTS, "/a");
    REJECT("dev-1", LK_TOPIC_EVENTS, "a//b");
    REJECT("dev-1", LK_TOPIC_EVENTS, big);
    REJECT("dev-1", LK_TOPIC_STATE, "a");      /* no subfolder with state */
    REJECT("dev-1", LK_TOPIC_CONFIG, "a");
    REJECT("dev-1", LK_TOPIC_COMMANDS_ALL, "a");
    REJECT("dev-1", LK_TOPIC_ONLINE, NULL);     /* backend topics only */
    REJECT("dev-1", LK_TOPIC_REGISTERED, NULL);
    REJECT("dev-1", LK_TOPIC_NONE, NULL);
    REJECT("dev-1", LK_TOPIC_OTHER, NULL);
    REJECT("dev/1", LK_TOPIC_STATE, NULL);
    REJECT("d+#", LK_TOPIC_STATE, NULL);
    REJECT("", LK_TOPIC_STATE, NULL);
    REJECT(bigid, LK_TOPIC_STATE, NULL);
    REJECT(NULL, LK_TOPIC_STATE, NULL);
#undef REJECT
    assert_int_equal(lk_device_topic("dev-1", LK_TOPIC_STATE, NULL, NULL, 10, &len), LK_ERR_ARG);
}

static void test_device_topic_parse(void **state)
{
    static const struct { const char *topic; lk_topic kind; } cases[] = {
        {"/devices/dev-1/events/a+b", LK_TOPIC_OTHER},
        {"/devices/dev-1/events/", LK_TOPIC_OTHER},
        {"/devices/dev-1/events//a", LK_TOPIC_OTHER},
        {"/devices/dev-1/eventsx", LK_TOPIC_OTHER},
        {"/devices/dev-1/commands/", LK_TOPIC_OTHER},
        {"/devices/dev-1/commands/+", LK_TOPIC_OTHER},
        {"/devices/dev-1/state/x", LK_TOPIC_OTHER},
        {"/devices/dev-1/", LK_TOPIC_OTHER},
        {"/devices/dev-1", LK_TOPIC_NONE},
        {"/devices/dev-12/state", LK_TOPIC_NONE},
        {"/devices/dev-/state", LK_TOPIC_NONE},
        {"devices/dev-1/state", LK_TOPIC_NONE},
        {"/devices/DEV-1/state", LK_TOPIC_NONE},
        {"latchkey/p/l/r/dev-1/state", LK_TOPIC_NONE},
        {"", LK_TOPIC_NONE},
    };
    const char *sub;
    size_t i;
    (void)state;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sub = "x";
        if (lk_device_topic_parse("dev-1", cases[i].topic, strlen(cases[i].topic), &sub) != cases[i].kind)
            fail_msg("%s: not kind %d", cases[i].topic, cases[i].kind);
        assert_null(sub);
    }
    /* bounded: a prefix of a longer string is parsed as itself */
    assert_int_equal(lk_device_topic_parse("dev-1", "/devices/dev-1/statexyz", 20, NULL), LK_TOPIC_STATE);
    assert_int_equal(lk_device_topic_parse(NULL, "/devices/dev-1/state", 20, NULL), LK_TOPIC_NONE);
    assert_int_equal(lk_device_topic_parse("dev-1", NULL, 20, NULL), LK_TOPIC_NONE);
}

static void test_gateway_topics(void **state)
{
    char dev[LK_ID_MAX + 1], buf[LK_DEVICE_TOPIC_MAX + 1];
    const char *sub = "x";
    size_t len;
    (void)state;

    assert_int_equal(lk_device_topic("dev-1", LK_TOPIC_ATTACH, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "/devices/dev-1/attach");
    assert_int_equal(lk_device_topic("gw-1", LK_TOPIC_ERRORS, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "/devices/gw-1/errors");
    assert_int_equal(lk_device_topic("dev-1", LK_TOPIC_DETACH, "a", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_device_topic_split("/devices/dev-1/detach", 21, dev, &sub), LK_TOPIC_DETACH);
    assert_string_equal(dev, "dev-1");
    assert_null(sub);
    assert_int_equal(lk_device_topic_split("/devices/dev-2/events/a/b", 25, dev, &sub), LK_TOPIC_EVENTS);
    assert_string_equal(dev, "dev-2");
    assert_string_equal(sub, "a/b");
    assert_int_equal(lk_device_topic_split("/devices/dev-2/attach/x", 23, dev, &sub), LK_TOPIC_OTHER);
    /* not a device topic: no id, an invalid id, no '/' after it, bounded by len */
    static const char *const none[] = {"/devices/", "/devices//state", "/devices/1ab/state",
                                       "/devices/ab/state", "/devices/dev-1", "devices/dev-1/state",
                                       "/devices/goog-x/state"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        strcpy(dev, "junk");
        if (lk_device_topic_split(none[i], strlen(none[i]), dev, &sub) != LK_TOPIC_NONE)
            fail_msg("%s: not NONE", none[i]);
        assert_string_equal(dev, "");
    }
    assert_int_equal(lk_device_topic_split("/devices/dev-1/state", 14, dev, NULL), LK_TOPIC_NONE);
    assert_int_equal(lk_device_topic_split(NULL, 3, dev, NULL), LK_TOPIC_NONE);
    assert_int_equal(lk_device_topic_split("/devices/dev-1/state", 20, NULL, NULL), LK_TOPIC_NONE);
}

/* Each auth method, bound or not, with or without a verified token: IoT
 * Core's outcome (docs/iotcore.md, "Gateways"). */
static void test_gateway_admit(void **state)
{
    static const struct { int method, bound, token, ok; } cases[] = {
        {0, 0, 0, 0}, {0, 1, 1, 0},                                 /* unspecified: nobody */
        {1, 1, 0, 1}, {1, 1, 1, 1}, {1, 0, 1, 0}, {1, 0, 0, 0},     /* association only */
        {2, 0, 1, 1}, {2, 1, 1, 1}, {2, 1, 0, 0}, {2, 0, 0, 0},     /* token only */
        {3, 1, 1, 1}, {3, 0, 1, 0}, {3, 1, 0, 0}, {3, 0, 0, 0},     /* both */
        {4, 1, 1, 0}, {-1, 1, 1, 0},                                /* not in the enum */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = "x";
        lk_err e = lk_gateway_admit(cases[i].method, cases[i].bound, cases[i].token, &why);
        if ((e == LK_OK) != cases[i].ok)
            fail_msg("method %d bound %d token %d: %d", cases[i].method, cases[i].bound, cases[i].token, e);
        if (cases[i].ok)
            assert_null(why);
        else
            assert_true(e == LK_ERR_REFUSED && why != NULL && why[0] != '\0');
    }
    assert_int_equal(lk_gateway_needs(1), LK_GATEWAY_NEEDS_BINDING);
    assert_int_equal(lk_gateway_needs(2), LK_GATEWAY_NEEDS_TOKEN);
    assert_int_equal(lk_gateway_needs(3), LK_GATEWAY_NEEDS_BINDING | LK_GATEWAY_NEEDS_TOKEN);
    assert_int_equal(lk_gateway_needs(0), LK_GATEWAY_REFUSES);
    assert_int_equal(lk_gateway_admit(1, 1, 0, NULL), LK_OK);
}

/* The device the backend and bridge topic tests name. */
static void topic_device(lk_device_name *n)
{
    static const char path[] = "projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1";

    assert_int_equal(lk_device_path_parse(path, strlen(path), n), LK_OK);
}

/* Every part of n, and sub, at its longest. */
static void longest_device(lk_device_name *n, char sub[LK_SUBFOLDER_MAX + 1])
{
    fill(n->project, 'p', LK_PROJECT_MAX);
    fill(n->location, 'l', LK_LOCATION_MAX);
    fill(n->registry, 'r', LK_ID_MAX);
    fill(n->device, 'd', LK_ID_MAX);
    fill(sub, 's', LK_SUBFOLDER_MAX);
}

static void test_backend_topics(void **state)
{
    lk_device_name n;
    char buf[LK_BACKEND_TOPIC_MAX + 1], sub[LK_SUBFOLDER_MAX + 1];
    size_t len;
    (void)state;

    topic_device(&n);
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/us-central1/reg-1/dev-1/events");
    assert_int_equal(len, strlen(buf));
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_EVENTS, "a/b", buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/us-central1/reg-1/dev-1/events/a/b");
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_STATE, NULL, buf, sizeof buf, NULL), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/us-central1/reg-1/dev-1/state");
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_ONLINE, NULL, buf, sizeof buf, NULL), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/us-central1/reg-1/dev-1/online");
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_OFFLINE, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/us-central1/reg-1/dev-1/offline");
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_REGISTERED, NULL, buf, sizeof buf, NULL), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/us-central1/reg-1/dev-1/registered");
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_REGISTERED, "a", buf, sizeof buf, NULL), LK_ERR_ARG);
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_OFFLINE, NULL, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(lk_backend_topic_in_project("my-project", buf, len), 20);
    assert_int_equal(lk_backend_topic_in_project("my-project", "latchkey/my-project/", 20), 20);
    assert_int_equal(lk_backend_topic_in_project("my-project", "latchkey/my-project/#", 21), 20);
    assert_int_equal(lk_backend_topic_in_project("my-project", "latchkey/my-project", 19), 0);
    assert_int_equal(lk_backend_topic_in_project("my-project", "latchkey/my-projects/x", 22), 0);
    assert_int_equal(lk_backend_topic_in_project("my-proj", "latchkey/my-project/x", 21), 0);
    assert_int_equal(lk_backend_topic_in_project("my-project", "/devices/my-project/x", 21), 0);
    assert_int_equal(lk_backend_topic_in_project("", "latchkey//x", 11), 0);
    assert_int_equal(lk_backend_topic_in_project(NULL, "latchkey/p/x", 12), 0);

    /* rejections */
    memset(buf, FILL, sizeof buf);
    len = 99;
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_CONFIG, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(len, 0);
    assert_true(all_bytes(buf, sizeof buf, 0));
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_COMMANDS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_STATE, "a", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_EVENTS, "a#", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_backend_topic(NULL, LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_STATE, NULL, buf, 20, &len), LK_ERR_BUFFER);
    assert_true(all_bytes(buf, 20, 0));

    /* the longest */
    longest_device(&n, sub);
    assert_int_equal(lk_backend_topic(&n, LK_TOPIC_EVENTS, sub, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(len, LK_BACKEND_TOPIC_MAX);
}

/* # Routed topics (notification configs) */

static void test_routed_topics(void **state)
{
    lk_device_name n;
    char buf[LK_ROUTED_TOPIC_MAX + 1], sub[LK_SUBFOLDER_MAX + 1], t[LK_PUBSUB_NAME_MAX + 2];
    size_t len;
    (void)state;

    topic_device(&n);
    assert_int_equal(lk_routed_topic(&n, "telemetry", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/topics/telemetry/us-central1/reg-1/dev-1/events");
    assert_int_equal(len, strlen(buf));
    assert_int_equal(lk_routed_topic(&n, "telemetry", LK_TOPIC_EVENTS, "", buf, sizeof buf, NULL), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/topics/telemetry/us-central1/reg-1/dev-1/events");
    assert_int_equal(lk_routed_topic(&n, "a.b~c%d_e-f", LK_TOPIC_EVENTS, "x/y", buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/topics/a.b~c%d_e-f/us-central1/reg-1/dev-1/events/x/y");
    assert_int_equal(lk_routed_topic(&n, "st8", LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/topics/st8/us-central1/reg-1/dev-1/state");
    assert_int_equal(lk_backend_topic_in_project("my-project", buf, len), 20);

    /* rejections: buffer wiped, len 0 */
    memset(buf, FILL, sizeof buf);
    len = 99;
    assert_int_equal(lk_routed_topic(&n, "t+x", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(len, 0);
    assert_true(all_bytes(buf, sizeof buf, 0));
    assert_int_equal(lk_routed_topic(&n, "t#x", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "a/bc", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "ab", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "google", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "1abc", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, NULL, LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(NULL, "abc", LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_ONLINE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_COMMANDS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_STATE, "a", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_EVENTS, "a#", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_EVENTS, "/a", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_EVENTS, NULL, NULL, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_routed_topic(&n, "abc", LK_TOPIC_STATE, NULL, buf, 30, &len), LK_ERR_BUFFER);
    assert_true(all_bytes(buf, 30, 0));
    fill(t, 'a', LK_PUBSUB_NAME_MAX + 1);
    assert_int_equal(lk_routed_topic(&n, t, LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);

    /* the longest fits LK_ROUTED_TOPIC_MAX */
    longest_device(&n, sub);
    fill(t, 't', LK_PUBSUB_NAME_MAX);
    assert_int_equal(lk_routed_topic(&n, t, LK_TOPIC_EVENTS, sub, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(len, LK_ROUTED_TOPIC_MAX);
    assert_int_equal(lk_routed_topic(&n, t, LK_TOPIC_EVENTS, sub, buf, LK_ROUTED_TOPIC_MAX, &len), LK_ERR_BUFFER);
}

/* # The presence topic */

static void test_presence_topic(void **state)
{
    lk_device_name n;
    char buf[LK_PRESENCE_TOPIC_MAX + 1], sub[LK_SUBFOLDER_MAX + 1];
    size_t len;
    (void)state;

    topic_device(&n);
    assert_int_equal(lk_presence_topic(&n, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkey/my-project/presence/us-central1/reg-1/dev-1");
    assert_int_equal(len, strlen(buf));
    assert_int_equal(lk_backend_topic_in_project("my-project", buf, len), 20);

    /* rejections: buffer wiped, len 0 */
    memset(buf, FILL, sizeof buf);
    len = 99;
    assert_int_equal(lk_presence_topic(&n, buf, 30, &len), LK_ERR_BUFFER);
    assert_int_equal(len, 0);
    assert_true(all_bytes(buf, 30, 0));
    memset(buf, FILL, sizeof buf);
    assert_int_equal(lk_presence_topic(NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_true(all_bytes(buf, sizeof buf, 0));
    assert_int_equal(lk_presence_topic(&n, NULL, sizeof buf, &len), LK_ERR_ARG);
    n.device[0] = '\0';
    assert_int_equal(lk_presence_topic(&n, buf, sizeof buf, &len), LK_ERR_ARG);
    topic_device(&n);
    n.registry[1] = '/';
    assert_int_equal(lk_presence_topic(&n, buf, sizeof buf, &len), LK_ERR_ARG);

    /* the longest fits LK_PRESENCE_TOPIC_MAX */
    longest_device(&n, sub);
    assert_int_equal(lk_presence_topic(&n, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(len, LK_PRESENCE_TOPIC_MAX);
    assert_int_equal(lk_presence_topic(&n, buf, LK_PRESENCE_TOPIC_MAX, &len), LK_ERR_BUFFER);
}

/* # The bridge topic */

static void test_bridge_topics(void **state)
{
    lk_device_name n, got;
    char buf[LK_BRIDGE_TOPIC_MAX + 1], sub[LK_SUBFOLDER_MAX + 1];
    static const char root[] = "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1";
    const char *sf;
    size_t len;
    (void)state;

    topic_device(&n);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_EVENTS, NULL, buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events");
    assert_int_equal(len, strlen(buf));
    sf = "x";
    assert_int_equal(lk_bridge_topic_parse(buf, len, &got, &sf), LK_TOPIC_EVENTS);
    assert_null(sf);
    assert_memory_equal(&got, &n, sizeof n);

    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_EVENTS, "a/b", buf, sizeof buf, &len), LK_OK);
    assert_string_equal(buf, "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/a/b");
    assert_int_equal(lk_bridge_topic_parse(buf, len, &got, &sf), LK_TOPIC_EVENTS);
    assert_ptr_equal(sf, buf + len - 3);
    assert_string_equal(got.device, "dev-1");
    assert_string_equal(got.registry, "reg-1");
    assert_string_equal(got.location, "us-central1");
    assert_string_equal(got.project, "my-project");

    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_STATE, "", buf, sizeof buf, NULL), LK_OK);
    assert_string_equal(buf, "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/state");
    assert_int_equal(lk_bridge_topic_parse(buf, strlen(buf), NULL, NULL), LK_TOPIC_STATE);
    /* bounded: a prefix of a longer string is parsed as itself */
    assert_int_equal(lk_bridge_topic_parse("latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/statexyz",
                                           strlen(root) + 6, NULL, NULL),
                     LK_TOPIC_STATE);

    /* writer rejections: wiped, *len 0 */
    memset(buf, FILL, sizeof buf);
    len = 99;
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_CONFIG, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(len, 0);
    assert_true(all_bytes(buf, sizeof buf, 0));
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_ONLINE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_COMMANDS, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_STATE, "a", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_EVENTS, "a#", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_EVENTS, "a/", buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(NULL, LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_STATE, NULL, NULL, sizeof buf, &len), LK_ERR_ARG);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_STATE, NULL, buf, 40, &len), LK_ERR_BUFFER);
    assert_true(all_bytes(buf, 40, 0));
    assert_int_equal(len, 0);
    got = n;
    strcpy(got.device, "dev+1"); /* a valid id, but no MQTT topic may hold it */
    assert_int_equal(lk_bridge_topic(&got, LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    got = n;
    strcpy(got.device, "1dev");
    assert_int_equal(lk_bridge_topic(&got, LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);
    got = n;
    got.project[0] = '\0';
    assert_int_equal(lk_bridge_topic(&got, LK_TOPIC_STATE, NULL, buf, sizeof buf, &len), LK_ERR_ARG);

    /* the longest */
    longest_device(&n, sub);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_EVENTS, sub, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(len, LK_BRIDGE_TOPIC_MAX);
    assert_int_equal(lk_bridge_topic_parse(buf, len, &got, &sf), LK_TOPIC_EVENTS);
    assert_memory_equal(&got, &n, sizeof n);
    assert_int_equal(lk_bridge_topic(&n, LK_TOPIC_EVENTS, sub, buf, LK_BRIDGE_TOPIC_MAX, &len), LK_ERR_BUFFER);
}

static void test_bridge_topic_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "latchkeyd/",
        "latchkeyd",
        "latchkey/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events",
        "Latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events",
        "/latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events",
        "latchkeyd//projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events//a",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/a/",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/a//b",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/+",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/#",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/#",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/+/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev+1/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg+1/devices/dev-1/state",
        "latchkeyd/projects/my-project/locations/+/registries/reg-1/devices/dev-1/state",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/state/",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/state/a",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/config",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/commands",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/eventsx",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/1dev/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/goog-1/events",
        "latchkeyd/projects/MY-project/locations/us-central1/registries/reg-1/devices/dev-1/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/device/dev-1/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/x/events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices//events",
        "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/dev-1/events",
        "/devices/dev-1/events",
        "latchkey/my-project/us-central1/reg-1/dev-1/events",
    };
    lk_device_name d;
    char buf[LK_BRIDGE_TOPIC_MAX + 64];
    const char *sf;
    size_t i, n;
    (void)state;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&d, FILL, sizeof d);
        sf = "x";
        if (lk_bridge_topic_parse(bad[i], strlen(bad[i]), &d, &sf) != LK_TOPIC_NONE)
            fail_msg("%s: not refused", bad[i]);
        assert_null(sf);
        assert_true(all_bytes((const char *)&d, sizeof d, 0));
    }
    assert_int_equal(lk_bridge_topic_parse(NULL, 10, &d, &sf), LK_TOPIC_NONE);
    /* a NUL inside */
    {
        static const char nul[] =
            "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/a\0b";
        assert_int_equal(lk_bridge_topic_parse(nul, sizeof nul - 1, &d, &sf), LK_TOPIC_NONE);
        assert_int_equal(lk_bridge_topic_parse(nul, sizeof nul - 3, &d, &sf), LK_TOPIC_EVENTS);
    }
    /* overlong: a subfolder one over its limit, then anything over the maximum */
    n = (size_t)snprintf(buf, sizeof buf,
                         "latchkeyd/projects/my-project/locations/us-central1/registries/reg-1/devices/dev-1/events/");
    memset(buf + n, 's', LK_SUBFOLDER_MAX + 1);
    assert_int_equal(lk_bridge_topic_parse(buf, n + LK_SUBFOLDER_MAX + 1, &d, &sf), LK_TOPIC_NONE);
    assert_int_equal(lk_bridge_topic_parse(buf, n + LK_SUBFOLDER_MAX, &d, &sf), LK_TOPIC_EVENTS);
    memset(buf + n, 's', sizeof buf - n);
    assert_int_equal(lk_bridge_topic_parse(buf, LK_BRIDGE_TOPIC_MAX + 1, &d, &sf), LK_TOPIC_NONE);
}

/* # Backend secrets */

static void test_backend_secret_hash(void **state)
{
    /* A secret as `latchkey backends create` makes it (43 base64url
     * characters) and its SHA-256 as Python's hashlib computes it: the hash a
     * registry already holds for it. */
    static const char secret[] = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG0";
    uint8_t got[LK_SHA256_BYTES], want[LK_SHA256_BYTES];
    size_t i;
    (void)state;

    lk_backend_secret_hash(secret, strlen(secret), got);
    assert_int_equal(lk_test_hex2bin("0cf54aaab6e05865054e4fd33bfebc8fb3f3590679959b5d0038d08bbd5b0d36",
                                     want, sizeof want), 0);
    assert_memory_equal(got, want, sizeof want);
    /* and OpenSSL's SHA-256, which the broker plugin used before, at every
     * length a secret could have */
    for (i = 0; i <= sizeof secret - 1; i++) {
        lk_backend_secret_hash(secret, i, got);
        SHA256((const unsigned char *)secret, i, want);
        assert_memory_equal(got, want, sizeof want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_format),
        cmocka_unit_test(test_paths_longest),
        cmocka_unit_test(test_paths_format_rejects),
        cmocka_unit_test(test_path_parse),
        cmocka_unit_test(test_device_topics),
        cmocka_unit_test(test_device_topics_longest),
        cmocka_unit_test(test_device_topic_rejects),
        cmocka_unit_test(test_device_topic_parse),
        cmocka_unit_test(test_backend_topics),
        cmocka_unit_test(test_routed_topics),
        cmocka_unit_test(test_presence_topic),
        cmocka_unit_test(test_bridge_topics),
        cmocka_unit_test(test_bridge_topic_parse_rejects),
        cmocka_unit_test(test_backend_secret_hash),
        cmocka_unit_test(test_gateway_topics),
        cmocka_unit_test(test_gateway_admit),
    };
    return cmocka_run_group_tests_name("iotcore", tests, NULL, NULL);
}
