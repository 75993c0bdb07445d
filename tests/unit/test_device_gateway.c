/*
 * test_device_gateway.c — the device client as a gateway (lk_device.h,
 * "Gateways") without a server:
 *
 *   - lk_dev_gateway_error_parse on IoT Core's error message: every field
 *     read; hostile input refused (LK_ERR_ENCODING, out zeroed): not an
 *     object, trailing bytes, duplicate keys at any depth, \u0000, lone
 *     surrogates, invalid UTF-8, raw control characters, wrong types,
 *     packet_id out of 0..65535 or not an integer, an invalid device id, a
 *     lower-case error type, nesting over 8, over 64 keys; over 8 KiB is
 *     LK_ERR_TOO_LARGE; a long description is cut on a character;
 *   - the parser against jansson (JSON_REJECT_DUPLICATES) as the oracle:
 *     20,000 mutations of valid messages; whatever we accept jansson accepts,
 *     with the same field values;
 *   - the gateway topics (lk_device_topic: attach, detach, errors);
 *   - the gateway API before any connection: lk_dev_gateway only before
 *     start; attach checks (id, the gateway's own id, a key without its
 *     element, algorithms); not a gateway and unknown devices are
 *     LK_ERR_STATE; 1,000 devices and the 1,001st LK_ERR_TOO_MANY; messages
 *     for an attached device queue; a detach while disconnected forgets the
 *     device at once and drops its messages (LK_DEV_EV_DETACHED names it).
 */
#include "lk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"

static const char good[] =
    "{\"error_type\": \"GATEWAY_ATTACHMENT_ERROR\", \"description\": \"the device is blocked\", "
    "\"device_id\": \"sensor-1\", \"mqtt_message_info\": {\"message_type\": \"PUBLISH\", "
    "\"topic\": \"/devices/sensor-1/attach\", \"packet_id\": 0}}";

static lk_err parse(const char *s, lk_dev_gateway_error *e)
{
    return lk_dev_gateway_error_parse(s, strlen(s), e);
}

static void test_parse_good(void **state)
{
    lk_dev_gateway_error e;
    (void)state;
    assert_int_equal(parse(good, &e), LK_OK);
    assert_string_equal(e.error_type, "GATEWAY_ATTACHMENT_ERROR");
    assert_string_equal(e.description, "the device is blocked");
    assert_string_equal(e.device_id, "sensor-1");
    assert_string_equal(e.message_type, "PUBLISH");
    assert_string_equal(e.topic, "/devices/sensor-1/attach");
    assert_int_equal(e.packet_id, 0);

    /* Only error_type is required; unknown keys (any JSON) are ignored;
     * escapes decoded. */
    assert_int_equal(parse("{\"error_type\":\"GATEWAY_RATE_EXCEEDED\"}", &e), LK_OK);
    assert_string_equal(e.description, "");
    assert_string_equal(e.device_id, "");
    assert_int_equal(parse(" {\"x\": [1, -2.5e3, true, false, null, {\"y\": {}}, []], "
                           "\"error_type\": \"E1\", \"description\": \"a\\u00e9\\ud83d\\ude00\\n\\\"\", "
                           "\"mqtt_message_info\": {\"packet_id\": 65535, \"z\": 1}} \r\n", &e), LK_OK);
    assert_string_equal(e.error_type, "E1");
    assert_string_equal(e.description, "a\xc3\xa9\xf0\x9f\x98\x80\n\"");
    assert_int_equal(e.packet_id, 65535);
}

static void expect_refused(const char *s, int line)
{
    lk_dev_gateway_error e;
    lk_err err;
    memset(&e, 0x5a, sizeof e);
    err = lk_dev_gateway_error_parse(s, strlen(s), &e);
    if (err != LK_ERR_ENCODING) {
        print_error("line %d: %s accepted or wrong error (%s)\n", line, s, lk_errname(err));
        fail();
    }
    assert_true(lk_test_all_bytes(&e, sizeof e, 0));
}
#define REFUSED(s) expect_refused(s, __LINE__)

static void test_parse_hostile(void **state)
{
    static const char *bad[] = {
        "",
        "   ",
        "[]",
        "\"GATEWAY\"",
        "null",
        "{}",                                                /* no error_type */
        "{\"error_type\": \"\"}",                            /* empty */
        "{\"error_type\": \"gateway_error\"}",               /* not an enum name */
        "{\"error_type\": \"A B\"}",
        "{\"error_type\": 1}",                               /* wrong types */
        "{\"error_type\": \"E\", \"description\": 5}",
        "{\"error_type\": \"E\", \"device_id\": null}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": []}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"packet_id\": \"0\"}}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"packet_id\": 65536}}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"packet_id\": -1}}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"packet_id\": 1.0}}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"packet_id\": 1e2}}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"message_type\": \"publish\"}}",
        "{\"error_type\": \"E\", \"device_id\": \"1abc\"}",  /* not a device id */
        "{\"error_type\": \"E\", \"device_id\": \"goog-x\"}",
        "{\"error_type\": \"E\", \"device_id\": \"ab\"}",
        "{\"error_type\": \"E\"} x",                         /* trailing bytes */
        "{\"error_type\": \"E\"}{}",
        "{\"error_type\": \"E\",}",                          /* grammar */
        "{\"error_type\" \"E\"}",
        "{'error_type': 'E'}",
        "{\"error_type\": \"E\"",
        "{\"error_type\": \"E\", \"x\": 01}",
        "{\"error_type\": \"E\", \"x\": 1.}",
        "{\"error_type\": \"E\", \"x\": .5}",
        "{\"error_type\": \"E\", \"x\": +1}",
        "{\"error_type\": \"E\", \"x\": NaN}",
        "{\"error_type\": \"E\", \"x\": tru}",
        "{\"error_type\": \"E\", \"x\": [1,]}",
        "{\"error_type\": \"E\", \"x\": 99999999999999999999}", /* as jansson: too big */
        "{\"error_type\": \"E\", \"x\": 1e999}",
        "{\"error_type\": \"E\", \"error_type\": \"F\"}",    /* duplicates, any depth */
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"topic\": \"a\", \"topic\": \"b\"}}",
        "{\"error_type\": \"E\", \"x\": {\"k\": 1, \"k\": 2}}",
        "{\"error_type\": \"E\", \"x\": [{\"k\": 1, \"k\": 2}]}",
        "{\"error_type\": \"E\", \"x\": 1, \"\\u0078\": 2}",  /* the same key, escaped */
        "{\"error_type\": \"E\", \"description\": \"a\\u0000b\"}", /* NUL */
        "{\"error_type\": \"E\", \"description\": \"\\ud800\"}",   /* lone surrogates */
        "{\"error_type\": \"E\", \"description\": \"\\udc00\"}",
        "{\"error_type\": \"E\", \"description\": \"\\ud800\\u0041\"}",
        "{\"error_type\": \"E\", \"description\": \"\\x41\"}",     /* bad escapes */
        "{\"error_type\": \"E\", \"description\": \"\\u12\"}",
        "{\"error_type\": \"E\", \"description\": \"a\tb\"}",      /* raw control character */
        "{\"error_type\": \"E\", \"description\": \"\xc3\x28\"}",  /* invalid UTF-8 */
        "{\"error_type\": \"E\", \"description\": \"\xc0\xaf\"}",  /* overlong */
        "{\"error_type\": \"E\", \"description\": \"\xed\xa0\x80\"}", /* a surrogate in UTF-8 */
        "{\"error_type\": \"E\", \"description\": \"\xf4\x90\x80\x80\"}", /* over U+10FFFF */
        "{\"error_type\": \"E\", \"description\": \"\xff\"}",
        "{\"error_type\": \"E\", \"x\": [[[[[[[[[]]]]]]]]]}",      /* deeper than 8 */
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(bad[i], (int)i);
    /* A NUL byte inside the text. */
    {
        static const char nul[] = "{\"error_type\": \"E\", \"description\": \"a\0b\"}";
        lk_dev_gateway_error e;
        assert_int_equal(lk_dev_gateway_error_parse(nul, sizeof nul - 1, &e), LK_ERR_ENCODING);
    }
    /* Nesting of exactly 8 is fine (the object itself is level 1). */
    {
        lk_dev_gateway_error e;
        assert_int_equal(parse("{\"error_type\": \"E\", \"x\": [[[[[[[]]]]]]]}", &e), LK_OK);
    }
}

static void test_parse_bounds(void **state)
{
    lk_dev_gateway_error e;
    char *s = malloc(LK_GATEWAY_ERROR_MAX + 64);
    size_t n, i;
    (void)state;
    assert_non_null(s);
    assert_int_equal(lk_dev_gateway_error_parse(NULL, 0, &e), LK_ERR_ARG);
    assert_int_equal(lk_dev_gateway_error_parse("{}", 2, NULL), LK_ERR_ARG);

    /* Over 8 KiB: refused before reading. */
    n = (size_t)snprintf(s, 64, "{\"error_type\": \"E\", \"description\": \"");
    memset(s + n, 'a', LK_GATEWAY_ERROR_MAX + 1 - n - 2);
    memcpy(s + LK_GATEWAY_ERROR_MAX + 1 - 2, "\"}", 2);
    assert_int_equal(lk_dev_gateway_error_parse(s, LK_GATEWAY_ERROR_MAX + 1, &e), LK_ERR_TOO_LARGE);
    /* Exactly 8 KiB: read; the description is cut to its 1023 bytes. */
    memset(s + n, 'a', LK_GATEWAY_ERROR_MAX - n - 2);
    memcpy(s + LK_GATEWAY_ERROR_MAX - 2, "\"}", 2);
    assert_int_equal(lk_dev_gateway_error_parse(s, LK_GATEWAY_ERROR_MAX, &e), LK_OK);
    assert_int_equal(strlen(e.description), LK_GATEWAY_ERROR_DESC_MAX);

    /* A cut falls between characters, never inside one: 2-byte characters
     * from an odd offset. */
    n = (size_t)snprintf(s, 64, "{\"error_type\": \"E\", \"description\": \"x");
    for (i = 0; i < 600; i++) {
        memcpy(s + n, "\xc3\xa9", 2);
        n += 2;
    }
    memcpy(s + n, "\"}", 3);
    assert_int_equal(parse(s, &e), LK_OK);
    assert_int_equal(strlen(e.description), 1 + 2 * 511);
    assert_int_equal((unsigned char)e.description[1 + 2 * 511 - 1], 0xa9);

    /* Other fields are never cut: too long is refused. */
    n = (size_t)snprintf(s, 64, "{\"error_type\": \"");
    memset(s + n, 'E', 64);
    memcpy(s + n + 64, "\"}", 3);
    REFUSED(s);
    n = (size_t)snprintf(s, 64, "{\"error_type\": \"E\", \"device_id\": \"d");
    memset(s + n, 'x', LK_ID_MAX);
    memcpy(s + n + LK_ID_MAX, "\"}", 3);
    REFUSED(s);

    /* 64 keys in an object, not 65. */
    n = (size_t)snprintf(s, 64, "{\"error_type\": \"E\"");
    for (i = 1; i < 64; i++)
        n += (size_t)sprintf(s + n, ", \"k%zu\": 0", i);
    memcpy(s + n, "}", 2);
    assert_int_equal(parse(s, &e), LK_OK);
    memcpy(s + n, ", \"k64\": 0}", 12);
    REFUSED(s);
    free(s);
}

/* jansson as the oracle: what we accept, it accepts (with
 * JSON_REJECT_DUPLICATES), and the fields agree. */
static int agrees_with_jansson(const char *s, size_t len, const lk_dev_gateway_error *e)
{
    json_error_t jerr;
    json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr), *info;
    int ok = 0;
    const char *v;
    if (o == NULL || !json_is_object(o))
        goto out;
    v = json_string_value(json_object_get(o, "error_type"));
    if (v == NULL || strcmp(v, e->error_type) != 0)
        goto out;
    v = json_string_value(json_object_get(o, "device_id"));
    if (strcmp(v ? v : "", e->device_id) != 0)
        goto out;
    v = json_string_value(json_object_get(o, "description"));
    if (v != NULL && strlen(v) <= LK_GATEWAY_ERROR_DESC_MAX && strcmp(v, e->description) != 0)
        goto out;
    info = json_object_get(o, "mqtt_message_info");
    if (info != NULL) {
        v = json_string_value(json_object_get(info, "topic"));
        if (strcmp(v ? v : "", e->topic) != 0)
            goto out;
        v = json_string_value(json_object_get(info, "message_type"));
        if (strcmp(v ? v : "", e->message_type) != 0)
            goto out;
        if (json_object_get(info, "packet_id") != NULL &&
            json_integer_value(json_object_get(info, "packet_id")) != (json_int_t)e->packet_id)
            goto out;
    }
    ok = 1;
out:
    json_decref(o);
    return ok;
}

static void test_parse_against_jansson(void **state)
{
    static const char *seeds[] = {
        good,
        "{\"error_type\":\"GATEWAY_DEVICE_DETACHED\",\"description\":\"d\\u00e9tach\\u00e9\","
        "\"device_id\":\"dev-2\",\"extra\":[1,{\"a\":true}]}",
        "{\"error_type\": \"E\", \"mqtt_message_info\": {\"packet_id\": 12, \"topic\": \"t\\/x\"}}",
    };
    uint64_t rng = 0x5eed16;
    unsigned accepted = 0, total = 0;
    char buf[512];
    const char alphabet[] = "{}[]\":,\\u0123456789abcdefE.-+ tnl\xc3\xa9\xff\x01";
    (void)state;
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
        for (int round = 0; round < 7000; round++) {
            size_t len = strlen(seeds[s]);
            int edits = 1 + (int)(lk_test_rand64(&rng) % 3);
            lk_dev_gateway_error e;
            memcpy(buf, seeds[s], len);
            for (int k = 0; k < edits && len > 0 && len < sizeof buf - 2; k++) {
                size_t at = lk_test_rand64(&rng) % len;
                char c = alphabet[lk_test_rand64(&rng) % (sizeof alphabet - 1)];
                switch (lk_test_rand64(&rng) % 3) {
                case 0: buf[at] = c; break;                                       /* replace */
                case 1: memmove(buf + at + 1, buf + at, len - at); buf[at] = c; len++; break;
                default: memmove(buf + at, buf + at + 1, len - at - 1); len--; break;
                }
            }
            total++;
            if (lk_dev_gateway_error_parse(buf, len, &e) == LK_OK) {
                accepted++;
                if (!agrees_with_jansson(buf, len, &e)) {
                    print_error("accepted, but jansson refuses or reads otherwise: %.*s\n", (int)len, buf);
                    fail();
                }
            }
        }
    }
    /* The mutations must also have left some messages valid. */
    assert_true(accepted > 100 && accepted < total);
}

static void test_topics(void **state)
{
    char t[LK_DEVICE_TOPIC_MAX + 1];
    char id[LK_ID_MAX + 1];
    (void)state;
    assert_int_equal(lk_device_topic("sensor-1", LK_TOPIC_ATTACH, NULL, t, sizeof t, NULL), LK_OK);
    assert_string_equal(t, "/devices/sensor-1/attach");
    assert_int_equal(lk_device_topic("sensor-1", LK_TOPIC_DETACH, NULL, t, sizeof t, NULL), LK_OK);
    assert_string_equal(t, "/devices/sensor-1/detach");
    assert_int_equal(lk_device_topic("gw-1", LK_TOPIC_ERRORS, NULL, t, sizeof t, NULL), LK_OK);
    assert_string_equal(t, "/devices/gw-1/errors");
    assert_int_equal(lk_device_topic("sensor-1", LK_TOPIC_ATTACH, "x", t, sizeof t, NULL), LK_ERR_ARG);
    assert_int_equal(lk_device_topic_split("/devices/sensor-1/commands/a/b", 30, id, NULL),
                     LK_TOPIC_COMMANDS);
    assert_string_equal(id, "sensor-1");
}

/* ------------------------------------------------------------------ */
/* the gateway API without a server                                    */

static lk_err fake_sign(void *ctx, const char *key, lk_alg alg, const uint8_t digest[LK_SHA256_BYTES],
                        uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    (void)ctx; (void)key; (void)alg; (void)digest; (void)sig; (void)sig_size; (void)sig_len;
    return LK_ERR_SIGN;
}

static const lk_se_ops fake_ops = {.name = "fake", .sign_digest = fake_sign};

struct seen {
    int detached;
    int detached_code;
    char detached_device[LK_ID_MAX + 1];
};

static void on_event(void *user, const lk_dev_event *ev)
{
    struct seen *s = user;
    if (ev->type == LK_DEV_EV_DETACHED) {
        s->detached++;
        s->detached_code = ev->code;
        assert_non_null(ev->device);
        snprintf(s->detached_device, sizeof s->detached_device, "%s", ev->device);
    }
}

static lk_dev *new_gateway(lk_se *se, struct seen *seen, const char *ca, int gateway)
{
    lk_dev_config cfg;
    lk_dev_gateway_config gw;
    lk_dev *d = NULL;
    char why[256];
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 1;
    cfg.ca_file = ca;
    cfg.project = "proj-one";
    cfg.location = "us-central1";
    cfg.registry = "reg-1";
    cfg.device = "gw-1";
    cfg.se = se;
    cfg.key = "k";
    cfg.alg = LK_ALG_ES256;
    cfg.user = seen;
    cfg.on_event = on_event;
    assert_int_equal(lk_dev_new(&cfg, &d, why, sizeof why), LK_OK);
    if (gateway) {
        memset(&gw, 0, sizeof gw);
        gw.gateway_messages_per_s = 100001;
        assert_int_equal(lk_dev_gateway(d, &gw), LK_ERR_ARG);
        gw.gateway_messages_per_s = 0;
        assert_int_equal(lk_dev_gateway(d, &gw), LK_OK);
        assert_int_equal(lk_dev_gateway(d, &gw), LK_ERR_STATE); /* once */
    }
    return d;
}

/* A CA file (a self-signed P-256 certificate): nothing connects, but
 * lk_dev_new loads it. */
static char *ca_file(char **dir)
{
    char *path = malloc(4096);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;
    *dir = lk_test_tmpdir();
    assert_non_null(*dir);
    assert_non_null(path);
    assert_non_null(key);
    assert_non_null(x);
    snprintf(path, 4096, "%s/ca.crt", *dir);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"gateway test CA", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) != 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    return path;
}

static void test_gateway_api(void **state)
{
    lk_se se = {&fake_ops, NULL};
    struct seen seen;
    char *dir, *ca = ca_file(&dir);
    lk_dev *d, *plain;
    lk_dev_stats st;
    char id[32];
    uint64_t mid = 0;
    int i;
    (void)state;
    memset(&seen, 0, sizeof seen);

    /* Not a gateway: every gateway call is out of order. */
    plain = new_gateway(&se, &seen, ca, 0);
    assert_int_equal(lk_dev_attach(plain, "sensor-1", NULL, NULL, LK_ALG_NONE), LK_ERR_STATE);
    assert_int_equal(lk_dev_publish_event_for(plain, "sensor-1", NULL, "x", 1, NULL), LK_ERR_STATE);
    assert_int_equal(lk_dev_detach(plain, "sensor-1"), LK_ERR_STATE);
    assert_int_equal(lk_dev_attached(plain, "sensor-1"), 0);
    assert_int_equal(lk_dev_start(plain), LK_OK);
    {
        lk_dev_gateway_config gw;
        memset(&gw, 0, sizeof gw);
        assert_int_equal(lk_dev_gateway(plain, &gw), LK_ERR_STATE); /* started */
    }
    lk_dev_free(plain);

    d = new_gateway(&se, &seen, ca, 1);
    assert_int_equal(lk_dev_attach(NULL, "sensor-1", NULL, NULL, LK_ALG_NONE), LK_ERR_ARG);
    assert_int_equal(lk_dev_attach(d, NULL, NULL, NULL, LK_ALG_NONE), LK_ERR_ARG);
    assert_int_equal(lk_dev_attach(d, "1sensor", NULL, NULL, LK_ALG_NONE), LK_ERR_ARG);
    assert_int_equal(lk_dev_attach(d, "gw-1", NULL, NULL, LK_ALG_NONE), LK_ERR_ARG); /* itself */
    assert_int_equal(lk_dev_attach(d, "sensor-1", &se, NULL, LK_ALG_ES256), LK_ERR_ARG);
    assert_int_equal(lk_dev_attach(d, "sensor-1", &se, "k", LK_ALG_NONE), LK_ERR_ARG);
    assert_int_equal(lk_dev_publish_event_for(d, "sensor-1", NULL, "x", 1, NULL), LK_ERR_STATE);

    assert_int_equal(lk_dev_attach(d, "sensor-1", NULL, NULL, LK_ALG_NONE), LK_OK);
    assert_int_equal(lk_dev_attach(d, "sensor-2", &se, "k2", LK_ALG_ES256), LK_OK);
    assert_int_equal(lk_dev_attach(d, "sensor-1", NULL, NULL, LK_ALG_NONE), LK_OK); /* again */
    assert_int_equal(lk_dev_attached(d, "sensor-1"), 0); /* not before the server says so */
    assert_int_equal(lk_dev_publish_event_for(d, "sensor-1", "a/b", "x", 1, &mid), LK_OK);
    assert_true(mid != 0);
    assert_int_equal(lk_dev_publish_event_for(d, "sensor-1", "a//b", "x", 1, NULL), LK_ERR_ARG);
    assert_int_equal(lk_dev_publish_state_for(d, "sensor-1", "up", 2, NULL), LK_OK);
    assert_int_equal(lk_dev_publish_state_for(d, "sensor-2", NULL, 1, NULL), LK_ERR_ARG);
    assert_int_equal(lk_dev_publish_event(d, NULL, "own", 3, NULL), LK_OK);
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 3);

    /* Up to 1,000 attached. */
    for (i = 3; i <= (int)LK_GATEWAY_ATTACHED_MAX; i++) {
        snprintf(id, sizeof id, "sensor-%d", i);
        assert_int_equal(lk_dev_attach(d, id, NULL, NULL, LK_ALG_NONE), LK_OK);
    }
    assert_int_equal(lk_dev_attach(d, "sensor-1001", NULL, NULL, LK_ALG_NONE), LK_ERR_TOO_MANY);

    /* Detached while not connected, nothing queued: forgotten at once. */
    assert_int_equal(lk_dev_detach(d, "sensor-3"), LK_OK);
    assert_int_equal(seen.detached, 1);
    assert_int_equal(seen.detached_code, 0);
    assert_string_equal(seen.detached_device, "sensor-3");
    assert_int_equal(lk_dev_detach(d, "sensor-3"), LK_ERR_STATE);
    assert_int_equal(lk_dev_publish_event_for(d, "sensor-3", NULL, "x", 1, NULL), LK_ERR_STATE);
    /* Room again for one more. */
    assert_int_equal(lk_dev_attach(d, "sensor-1001", NULL, NULL, LK_ALG_NONE), LK_OK);
    /* With messages queued: the detach waits behind them (they are sent
     * once connected and attached), and nothing more may be queued for it. */
    assert_int_equal(lk_dev_detach(d, "sensor-1"), LK_OK);
    assert_int_equal(seen.detached, 1);
    assert_int_equal(lk_dev_detach(d, "sensor-1"), LK_ERR_STATE);
    assert_int_equal(lk_dev_attach(d, "sensor-1", NULL, NULL, LK_ALG_NONE), LK_ERR_STATE);
    assert_int_equal(lk_dev_publish_event_for(d, "sensor-1", NULL, "x", 1, NULL), LK_ERR_STATE);
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 4);

    /* Stopped: nothing more. */
    lk_dev_stop(d);
    assert_int_equal(lk_dev_attach(d, "sensor-1", NULL, NULL, LK_ALG_NONE), LK_ERR_STATE);
    assert_int_equal(lk_dev_publish_event_for(d, "sensor-2", NULL, "x", 1, NULL), LK_ERR_STATE);
    lk_dev_free(d);
    remove(ca);
    lk_test_rmtree(dir);
    free(dir);
    free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_parse_bounds),
        cmocka_unit_test(test_parse_against_jansson),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_gateway_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
