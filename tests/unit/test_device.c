/*
 * test_device.c — the device client (lk_device.h) without a server:
 *
 *   - lk_dev_backoff_ms: 2^n seconds, the cap, the jitter added, no overflow
 *     for huge n;
 *   - lk_dev_new: a good configuration is accepted (client id, state, no
 *     socket); each bad field is refused with LK_ERR_ARG and a detail naming
 *     the field (ids by IoT Core's rules, ranges of lifetime, margin,
 *     keep-alive, backoff cap, NULL se/key/host/CA);
 *   - publishing before any connection: the queue limits (messages, bytes:
 *     LK_ERR_QUEUE_FULL and nothing queued), message sizes (event 256 KiB,
 *     state 64 KiB: LK_ERR_TOO_LARGE), subfolders (LK_ERR_ARG), after
 *     lk_dev_stop (LK_ERR_STATE), the stats counters;
 *   - lk_dev_tls_new on a missing file, a file without certificates, a good
 *     CA file;
 *   - a server that is not there (closed port): backoff event, attempts,
 *     LK_ERR_NET after max_attempts;
 *   - a TLS server (a thread here) whose certificate is self-signed, or is
 *     signed by the trusted CA for another name: every attempt is a TLS
 *     failure (LK_DEV_EV_TLS_FAILED, stats.tls_failures, LK_ERR_TLS, never
 *     LK_ERR_NET), and no application data reaches the server.
 *
 * The secure element is a software key store in a fresh temporary directory
 * (lk_softstore.h); the CA file is a self-signed P-256 certificate made here
 * with OpenSSL.
 */
#include "lk_test.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <openssl/x509.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_error.h"
#include "latchkey/lk_se.h"
#include "latchkey/lk_softstore.h"

#define KIB 1024u
#define EVENT_MAX (256u * KIB)
#define STATE_MAX (64u * KIB)

/* ------------------------------------------------------------------ */
/* Fixture: a key store with key "k1" (ES256), a CA file, a good config. */

struct fx {
    char *dir;
    char store_path[4096];
    char ca_path[4096];
    lk_softstore *store;
    lk_se se;
    EVP_PKEY *ca_key;   /* the trusted CA (ca_path) */
    X509 *ca;
    lk_dev_config cfg;
    char detail[512];
    /* events seen by on_event */
    int n_events;
    lk_dev_event_type types[64];
    int64_t delays[64];
    lk_err errs[64];
    int stopped_code;
    int saw_stopped;
};

static int write_ca(struct fx *fx)
{
    int rc = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f = NULL;
    if (key == NULL || x == NULL)
        goto out;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test_device CA", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    if (e == NULL)
        goto out;
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (X509_sign(x, key, EVP_sha256()) == 0)
        goto out;
    f = fopen(fx->ca_path, "w");
    if (f == NULL || PEM_write_X509(f, x) != 1)
        goto out;
    fx->ca_key = key;
    fx->ca = x;
    key = NULL;
    x = NULL;
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

static void on_event(void *user, const lk_dev_event *ev)
{
    struct fx *f = user;
    assert_non_null(ev->detail);
    assert_null(strchr(ev->detail, '\n'));
    assert_null(strstr(ev->detail, "eyJ")); /* never a token */
    if (f->n_events < 64) {
        f->types[f->n_events] = ev->type;
        f->delays[f->n_events] = ev->delay_ms;
        f->errs[f->n_events] = ev->err;
        f->n_events++;
    }
    if (ev->type == LK_DEV_EV_STOPPED) {
        f->saw_stopped = 1;
        f->stopped_code = ev->code;
    }
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->dir = lk_test_tmpdir();
    if (f->dir == NULL)
        return -1;
    snprintf(f->store_path, sizeof f->store_path, "%s/keys.lks", f->dir);
    snprintf(f->ca_path, sizeof f->ca_path, "%s/ca.crt", f->dir);
    if (write_ca(f) != 0)
        return -1;
    if (lk_softstore_open(f->store_path, LK_SOFTSTORE_CREATE, &f->store) != LK_OK)
        return -1;
    f->se = lk_softstore_se(f->store);
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    if (lk_se_generate(&f->se, "k1", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len) != LK_OK)
        return -1;
    f->cfg = (lk_dev_config){
        .host = "127.0.0.1",
        .port = 8883,
        .ca_file = f->ca_path,
        .project = "proj-one",
        .location = "us-central1",
        .registry = "reg-1",
        .device = "dev-1",
        .se = &f->se,
        .key = "k1",
        .alg = LK_ALG_ES256,
        .user = f,
        .on_event = on_event,
    };
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    if (f != NULL) {
        lk_softstore_close(f->store);
        X509_free(f->ca);
        EVP_PKEY_free(f->ca_key);
        lk_test_rmtree(f->dir);
        free(f->dir);
        free(f);
    }
    return 0;
}

static lk_err try_new(struct fx *f, const lk_dev_config *cfg, lk_dev **out)
{
    f->detail[0] = '\0';
    *out = NULL;
    return lk_dev_new(cfg, out, f->detail, sizeof f->detail);
}

static lk_dev *new_ok(struct fx *f, const lk_dev_config *cfg)
{
    lk_dev *d = NULL;
    lk_err err = try_new(f, cfg, &d);
    if (err != LK_OK)
        print_error("lk_dev_new: %s: %s\n", lk_errname(err), f->detail);
    assert_int_equal(err, LK_OK);
    assert_non_null(d);
    return d;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return 1;
    return 0;
}

/* lk_dev_new refuses cfg with LK_ERR_ARG and a one-line detail containing
 * one of the words (|-separated, case-insensitive). */
#define REFUSED(f, cfg, words) refused_(f, cfg, words, #cfg, __LINE__)
static void refused_(struct fx *f, const lk_dev_config *cfg, const char *words,
                     const char *what, int line)
{
    lk_dev *d = NULL;
    lk_err err = try_new(f, cfg, &d);
    if (err != LK_ERR_ARG) {
        print_error("line %d (%s): expected LK_ERR_ARG, got %s (%s)\n", line, what,
                    lk_errname(err), f->detail);
        lk_dev_free(d);
        fail();
    }
    assert_null(d);
    assert_true(f->detail[0] != '\0');
    assert_null(strchr(f->detail, '\n'));
    char buf[256];
    snprintf(buf, sizeof buf, "%s", words);
    int found = 0;
    for (char *save = NULL, *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
        if (contains_ci(f->detail, w))
            found = 1;
    if (!found) {
        print_error("line %d: detail \"%s\" names none of \"%s\"\n", line, f->detail, words);
        fail();
    }
}

/* ------------------------------------------------------------------ */
/* lk_dev_backoff_ms                                                   */

static void test_backoff_powers_of_two(void **state)
{
    (void)state;
    assert_int_equal(lk_dev_backoff_ms(0, 64, 0), 1000);
    assert_int_equal(lk_dev_backoff_ms(1, 64, 0), 2000);
    assert_int_equal(lk_dev_backoff_ms(2, 64, 0), 4000);
    assert_int_equal(lk_dev_backoff_ms(3, 64, 0), 8000);
    assert_int_equal(lk_dev_backoff_ms(5, 64, 0), 32000);
    assert_int_equal(lk_dev_backoff_ms(6, 64, 0), 64000);
    assert_int_equal(lk_dev_backoff_ms(11, 3600, 0), 2048000);
}

static void test_backoff_cap(void **state)
{
    (void)state;
    assert_int_equal(lk_dev_backoff_ms(7, 64, 0), 64000);
    assert_int_equal(lk_dev_backoff_ms(20, 64, 0), 64000);
    assert_int_equal(lk_dev_backoff_ms(12, 3600, 0), 3600000);
    assert_int_equal(lk_dev_backoff_ms(3, 5, 0), 5000);   /* cap not a power of two */
    assert_int_equal(lk_dev_backoff_ms(2, 5, 0), 4000);
    for (unsigned n = 0; n < 40; n++)
        assert_int_equal(lk_dev_backoff_ms(n, 1, 0), 1000);
}

static void test_backoff_jitter_added(void **state)
{
    (void)state;
    assert_int_equal(lk_dev_backoff_ms(0, 64, 1), 1001);
    assert_int_equal(lk_dev_backoff_ms(0, 64, 999), 1999);
    assert_int_equal(lk_dev_backoff_ms(3, 64, 345), 8345);
    assert_int_equal(lk_dev_backoff_ms(9, 64, 999), 64999);   /* jitter on top of the cap */
    assert_int_equal(lk_dev_backoff_ms(9, 3600, 500), 512500);
}

static void test_backoff_huge_n_no_overflow(void **state)
{
    (void)state;
    const unsigned ns[] = {30, 31, 32, 33, 62, 63, 64, 65, 127, 128, 1000, 1u << 20, UINT_MAX - 1, UINT_MAX};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        assert_int_equal(lk_dev_backoff_ms(ns[i], 64, 0), 64000);
        assert_int_equal(lk_dev_backoff_ms(ns[i], 3600, 999), 3600999);
        assert_int_equal(lk_dev_backoff_ms(ns[i], 1, 7), 1007);
    }
    /* monotonic in n up to the cap */
    int64_t prev = 0;
    for (unsigned n = 0; n < 200; n++) {
        int64_t v = lk_dev_backoff_ms(n, 3600, 0);
        assert_true(v >= prev);
        assert_true(v <= 3600000);
        prev = v;
    }
}

/* ------------------------------------------------------------------ */
/* lk_dev_new                                                          */

static void test_new_good_config(void **state)
{
    struct fx *f = *state;
    lk_dev *d = new_ok(f, &f->cfg);
    assert_string_equal(lk_dev_client_id(d),
                        "projects/proj-one/locations/us-central1/registries/reg-1/devices/dev-1");
    assert_int_equal(lk_dev_get_state(d), LK_DEV_IDLE);
    assert_int_equal(lk_dev_fd(d), -1);
    const char *why = NULL;
    assert_int_equal(lk_dev_error(d, &why), LK_OK);
    lk_dev_stats st;
    memset(&st, 0xaa, sizeof st);
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.attempts, 0);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.published, 0);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.queued_bytes, 0);
    assert_int_equal(st.connected_ms, 0);
    assert_int_equal(f->n_events, 0); /* nothing happens before lk_dev_step */
    lk_dev_free(d);

    /* the strings are copied (all but se and key) */
    char host[] = "127.0.0.1", proj[] = "proj-one", dev[] = "dev-9";
    lk_dev_config c = f->cfg;
    c.host = host;
    c.project = proj;
    c.device = dev;
    d = new_ok(f, &c);
    memset(proj, 'x', sizeof proj - 1);
    memset(dev, 'y', sizeof dev - 1);
    assert_string_equal(lk_dev_client_id(d),
                        "projects/proj-one/locations/us-central1/registries/reg-1/devices/dev-9");
    lk_dev_free(d);

    /* limits that are in range */
    const struct { unsigned life, margin, ka, bo; } ok[] = {
        {10, 0, 10, 1}, {86400, 0, 1200, 3600}, {60, 30, 60, 64}, {10, 5, 0, 0}, {3600, 600, 0, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        c = f->cfg;
        c.token_lifetime_s = ok[i].life;
        c.refresh_margin_s = ok[i].margin;
        c.keepalive_s = ok[i].ka;
        c.backoff_max_s = ok[i].bo;
        lk_dev_free(new_ok(f, &c));
    }
    /* ids at their limits, port 1 and 65535, a host name */
    char id255[256];
    memset(id255, 'a', 255);
    id255[255] = '\0';
    c = f->cfg;
    c.device = id255;
    c.port = 65535;
    lk_dev_free(new_ok(f, &c));
    c = f->cfg;
    c.device = "a+b%c~d.e_f-g";
    c.port = 1;
    c.host = "localhost";
    lk_dev_free(new_ok(f, &c));
}

static void test_new_null_arguments(void **state)
{
    struct fx *f = *state;
    lk_dev *d = (lk_dev *)0x1;
    char detail[128];
    assert_int_equal(lk_dev_new(NULL, &d, detail, sizeof detail), LK_ERR_ARG);
    assert_int_equal(lk_dev_new(&f->cfg, NULL, detail, sizeof detail), LK_ERR_ARG);
    lk_dev_free(NULL);
    lk_dev_tls_free(NULL);
}

static void test_new_bad_server(void **state)
{
    struct fx *f = *state;
    lk_dev_config c;

    c = f->cfg; c.host = NULL;          REFUSED(f, &c, "host");
    c = f->cfg; c.host = "";            REFUSED(f, &c, "host");
    c = f->cfg; c.port = 0;             REFUSED(f, &c, "port");
    c = f->cfg; c.port = 65536;         REFUSED(f, &c, "port");
    c = f->cfg; c.port = 100000;        REFUSED(f, &c, "port");
    c = f->cfg; c.ca_file = NULL;       REFUSED(f, &c, "ca|certificate|root|tls");
    c = f->cfg; c.ca_file = "";         REFUSED(f, &c, "ca|certificate|root|tls");
}

static void test_new_bad_ids(void **state)
{
    struct fx *f = *state;
    lk_dev_config c;
    char long_id[300];
    memset(long_id, 'a', 256);
    long_id[256] = '\0';

    c = f->cfg; c.project = NULL;          REFUSED(f, &c, "project");
    c = f->cfg; c.project = "";            REFUSED(f, &c, "project");
    c = f->cfg; c.project = "Proj-one";    REFUSED(f, &c, "project");
    c = f->cfg; c.project = "proj";        REFUSED(f, &c, "project");
    c = f->cfg; c.project = "proj-one-";   REFUSED(f, &c, "project");
    c = f->cfg; c.project = "proj/one";    REFUSED(f, &c, "project");
    c = f->cfg; c.location = NULL;         REFUSED(f, &c, "location|region");
    c = f->cfg; c.location = "";           REFUSED(f, &c, "location|region");
    c = f->cfg; c.location = "US-central1"; REFUSED(f, &c, "location|region");
    c = f->cfg; c.location = "us/central1"; REFUSED(f, &c, "location|region");
    c = f->cfg; c.registry = NULL;         REFUSED(f, &c, "registry");
    c = f->cfg; c.registry = "ab";         REFUSED(f, &c, "registry");
    c = f->cfg; c.registry = "1reg";       REFUSED(f, &c, "registry");
    c = f->cfg; c.registry = "goog-reg";   REFUSED(f, &c, "registry");
    c = f->cfg; c.registry = "reg/1";      REFUSED(f, &c, "registry");
    c = f->cfg; c.device = NULL;           REFUSED(f, &c, "device");
    c = f->cfg; c.device = "";             REFUSED(f, &c, "device");
    c = f->cfg; c.device = "d1";           REFUSED(f, &c, "device");
    c = f->cfg; c.device = "1dev";         REFUSED(f, &c, "device");
    c = f->cfg; c.device = "GOOGdev";      REFUSED(f, &c, "device");
    c = f->cfg; c.device = "dev 1";        REFUSED(f, &c, "device");
    c = f->cfg; c.device = "dev/1";        REFUSED(f, &c, "device");
    c = f->cfg; c.device = "dev#1";        REFUSED(f, &c, "device");
    c = f->cfg; c.device = long_id;        REFUSED(f, &c, "device");
}

static void test_new_bad_key(void **state)
{
    struct fx *f = *state;
    lk_dev_config c;
    lk_se empty = {0};

    c = f->cfg; c.se = NULL;            REFUSED(f, &c, "secure element|se");
    c = f->cfg; c.se = &empty;          REFUSED(f, &c, "secure element|se");
    c = f->cfg; c.key = NULL;           REFUSED(f, &c, "key");
    c = f->cfg; c.key = "";             REFUSED(f, &c, "key");
    c = f->cfg; c.alg = LK_ALG_NONE;    REFUSED(f, &c, "alg");
    c = f->cfg; c.alg = (lk_alg)7;      REFUSED(f, &c, "alg");
}

/* The x5c chain is checked when the client is made (lk_device.h). */
static void test_new_bad_x5c(void **state)
{
    struct fx *f = *state;
    lk_dev_config c;
    static const char *const good[] = {"QUJD", "QUJDRA=="};
    static const char *const quote[] = {"QU\"D"};
    static const char *const url[] = {"QU-_"};
    static const char *const empty[] = {""};
    static const char *const four[] = {"QUJD", "QUJD", "QUJD", "QUJD"};
    char *big = malloc(LK_DEV_X5C_CHARS_MAX + 5);
    const char *bigv[1];
    assert_non_null(big);
    memset(big, 'A', LK_DEV_X5C_CHARS_MAX + 4);
    big[LK_DEV_X5C_CHARS_MAX + 4] = '\0';
    bigv[0] = big;

    c = f->cfg; c.x5c = quote; c.x5c_count = 1;   REFUSED(f, &c, "x5c");
    c = f->cfg; c.x5c = url; c.x5c_count = 1;     REFUSED(f, &c, "x5c");
    c = f->cfg; c.x5c = empty; c.x5c_count = 1;   REFUSED(f, &c, "x5c");
    c = f->cfg; c.x5c = four; c.x5c_count = 4;    REFUSED(f, &c, "x5c");
    c = f->cfg; c.x5c = NULL; c.x5c_count = 1;    REFUSED(f, &c, "x5c");
    c = f->cfg; c.x5c = bigv; c.x5c_count = 1;    REFUSED(f, &c, "x5c");
    free(big);
    c = f->cfg; c.x5c = good; c.x5c_count = 2;
    lk_dev *d = new_ok(f, &c);
    lk_dev_free(d);
}

/* lk_dev_set_next_key's refusals, and its state. */
static void test_set_next_key(void **state)
{
    struct fx *f = *state;
    lk_dev_config c = f->cfg;
    lk_se empty = {0};
    char longref[LK_KEY_REF_MAX + 2];
    lk_dev *d = new_ok(f, &c);

    memset(longref, 'k', sizeof longref - 1);
    longref[sizeof longref - 1] = '\0';
    assert_int_equal(lk_dev_switching_key(NULL), 0);
    assert_int_equal(lk_dev_set_next_key(NULL, NULL, "k2", LK_ALG_ES256), LK_ERR_ARG);
    assert_int_equal(lk_dev_set_next_key(d, NULL, NULL, LK_ALG_ES256), LK_ERR_ARG);
    assert_int_equal(lk_dev_set_next_key(d, NULL, "", LK_ALG_ES256), LK_ERR_ARG);
    assert_int_equal(lk_dev_set_next_key(d, NULL, longref, LK_ALG_ES256), LK_ERR_ARG);
    assert_int_equal(lk_dev_set_next_key(d, NULL, "k2", LK_ALG_NONE), LK_ERR_ARG);
    assert_int_equal(lk_dev_set_next_key(d, &empty, "k2", LK_ALG_ES256), LK_ERR_ARG);
    assert_int_equal(lk_dev_switching_key(d), 0);
    assert_int_equal(lk_dev_set_next_key(d, NULL, "k2", LK_ALG_ES256), LK_OK);
    assert_int_equal(lk_dev_switching_key(d), 1);
    assert_int_equal(lk_dev_set_next_key(d, &f->se, "k3", LK_ALG_RS256), LK_OK); /* replaced */
    assert_int_equal(lk_dev_switching_key(d), 1);
    lk_dev_stop(d);
    assert_int_equal(lk_dev_get_state(d), LK_DEV_STOPPED);
    assert_int_equal(lk_dev_set_next_key(d, NULL, "k2", LK_ALG_ES256), LK_ERR_STATE);
    lk_dev_free(d);
}

static void test_new_bad_timing(void **state)
{
    struct fx *f = *state;
    lk_dev_config c;

    c = f->cfg; c.token_lifetime_s = 9;      REFUSED(f, &c, "lifetime");
    c = f->cfg; c.token_lifetime_s = 1;      REFUSED(f, &c, "lifetime");
    c = f->cfg; c.token_lifetime_s = 86401;  REFUSED(f, &c, "lifetime");
    c = f->cfg; c.token_lifetime_s = UINT_MAX; REFUSED(f, &c, "lifetime");
    /* the margin must be shorter than the lifetime */
    c = f->cfg; c.token_lifetime_s = 10; c.refresh_margin_s = 10;     REFUSED(f, &c, "margin");
    c = f->cfg; c.token_lifetime_s = 10; c.refresh_margin_s = 11;     REFUSED(f, &c, "margin");
    c = f->cfg; c.token_lifetime_s = 60; c.refresh_margin_s = 60;     REFUSED(f, &c, "margin");
    c = f->cfg; c.refresh_margin_s = 3600;                            REFUSED(f, &c, "margin"); /* default lifetime */
    c = f->cfg; c.refresh_margin_s = UINT_MAX;                        REFUSED(f, &c, "margin");
    c = f->cfg; c.keepalive_s = 9;           REFUSED(f, &c, "keep");
    c = f->cfg; c.keepalive_s = 1201;        REFUSED(f, &c, "keep");
    c = f->cfg; c.backoff_max_s = 3601;      REFUSED(f, &c, "backoff");
    c = f->cfg; c.backoff_max_s = UINT_MAX;  REFUSED(f, &c, "backoff");
}

/* ------------------------------------------------------------------ */
/* Publishing before the first connection                              */

static void test_queue_max_messages(void **state)
{
    struct fx *f = *state;
    lk_dev_config c = f->cfg;
    c.queue_max = 3;
    lk_dev *d = new_ok(f, &c);
    uint64_t ids[3] = {0}, id = 12345;
    assert_int_equal(lk_dev_publish_event(d, NULL, "a", 1, &ids[0]), LK_OK);
    assert_int_equal(lk_dev_publish_event(d, "sub", "bb", 2, &ids[1]), LK_OK);
    assert_int_equal(lk_dev_publish_state(d, "ccc", 3, &ids[2]), LK_OK);
    assert_true(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert_int_equal(lk_dev_publish_event(d, NULL, "d", 1, &id), LK_ERR_QUEUE_FULL);
    assert_int_equal(lk_dev_publish_state(d, "d", 1, NULL), LK_ERR_QUEUE_FULL);
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.queued_bytes, 6);
    assert_int_equal(st.published, 3);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.attempts, 0);
    lk_dev_free(d);
}

static void test_queue_max_bytes(void **state)
{
    struct fx *f = *state;
    lk_dev_config c = f->cfg;
    c.queue_bytes_max = 100;
    lk_dev *d = new_ok(f, &c);
    uint8_t buf[200];
    memset(buf, 'x', sizeof buf);
    assert_int_equal(lk_dev_publish_event(d, NULL, buf, 60, NULL), LK_OK);
    assert_int_equal(lk_dev_publish_event(d, NULL, buf, 50, NULL), LK_ERR_QUEUE_FULL);
    assert_int_equal(lk_dev_publish_state(d, buf, 41, NULL), LK_ERR_QUEUE_FULL);
    assert_int_equal(lk_dev_publish_event(d, NULL, buf, 101, NULL), LK_ERR_QUEUE_FULL);
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.queued_bytes, 60);
    assert_int_equal(st.published, 1);
    assert_int_equal(lk_dev_publish_event(d, NULL, buf, 30, NULL), LK_OK); /* still room */
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.queued_bytes, 90);
    assert_int_equal(st.published, 2);
    lk_dev_free(d);
}

static void test_message_sizes(void **state)
{
    struct fx *f = *state;
    lk_dev *d = new_ok(f, &f->cfg);
    uint8_t *big = malloc(EVENT_MAX + 1);
    assert_non_null(big);
    memset(big, 'e', EVENT_MAX + 1);
    assert_int_equal(lk_dev_publish_event(d, NULL, big, EVENT_MAX + 1, NULL), LK_ERR_TOO_LARGE);
    assert_int_equal(lk_dev_publish_event(d, "sub", big, EVENT_MAX + 1, NULL), LK_ERR_TOO_LARGE);
    assert_int_equal(lk_dev_publish_state(d, big, STATE_MAX + 1, NULL), LK_ERR_TOO_LARGE);
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.published, 0);
    assert_int_equal(lk_dev_publish_event(d, NULL, big, EVENT_MAX, NULL), LK_OK);
    assert_int_equal(lk_dev_publish_state(d, big, STATE_MAX, NULL), LK_OK);
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.queued_bytes, EVENT_MAX + STATE_MAX);
    free(big);
    lk_dev_free(d);
}

static void test_subfolders(void **state)
{
    struct fx *f = *state;
    lk_dev *d = new_ok(f, &f->cfg);
    char long_sub[300];
    memset(long_sub, 's', 257);
    long_sub[257] = '\0';
    const char *bad[] = {"a//b", "/a", "a/", "/", "a+b", "#", "a/#", "+", long_sub};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lk_err err = lk_dev_publish_event(d, bad[i], "x", 1, NULL);
        if (err != LK_ERR_ARG)
            print_error("subfolder \"%.40s\": %s\n", bad[i], lk_errname(err));
        assert_int_equal(err, LK_ERR_ARG);
    }
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, 0);
    long_sub[256] = '\0';
    const char *good[] = {NULL, "", "a", "a/b/c", "sensors.temp-1_x", long_sub};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(lk_dev_publish_event(d, good[i], "x", 1, NULL), LK_OK);
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.queued, sizeof good / sizeof good[0]);
    lk_dev_free(d);
}

static void test_stop_then_publish(void **state)
{
    struct fx *f = *state;
    lk_dev_config c = f->cfg;
    c.drain_timeout_ms = 200;
    lk_dev *d = new_ok(f, &c);
    assert_int_equal(lk_dev_publish_event(d, NULL, "one", 3, NULL), LK_OK);
    assert_int_equal(lk_dev_publish_event(d, NULL, "two", 3, NULL), LK_OK);
    lk_dev_stop(d);
    lk_dev_state s = lk_dev_get_state(d);
    assert_true(s == LK_DEV_STOPPING || s == LK_DEV_STOPPED);
    assert_int_equal(lk_dev_publish_event(d, NULL, "x", 1, NULL), LK_ERR_STATE);
    assert_int_equal(lk_dev_publish_state(d, "x", 1, NULL), LK_ERR_STATE);
    /* never connected: stopping finishes without a server (bounded time) and
     * reports the two messages left undelivered */
    int64_t deadline = lk_dev_now_ms() + 6000;
    while ((lk_dev_get_state(d) != LK_DEV_STOPPED || !f->saw_stopped) && lk_dev_now_ms() < deadline) {
        lk_dev_step(d, 0, 0);
        usleep(10000);
    }
    assert_int_equal(lk_dev_get_state(d), LK_DEV_STOPPED);
    assert_int_equal(lk_dev_publish_event(d, NULL, "x", 1, NULL), LK_ERR_STATE);
    assert_true(f->saw_stopped);
    assert_int_equal(f->stopped_code, 2);
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.published, 2);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.connects, 0);
    lk_dev_free(d);
}

static void test_state_names_and_clock(void **state)
{
    (void)state;
    for (int s = LK_DEV_IDLE; s <= LK_DEV_FAILED; s++) {
        const char *n = lk_dev_state_name((lk_dev_state)s);
        assert_non_null(n);
        assert_true(n[0] != '\0');
    }
    assert_string_not_equal(lk_dev_state_name(LK_DEV_CONNECTED), lk_dev_state_name(LK_DEV_FAILED));
    int64_t a = lk_dev_now_ms();
    usleep(20000);
    int64_t b = lk_dev_now_ms();
    assert_true(b - a >= 15 && b - a < 2000);
}

/* ------------------------------------------------------------------ */
/* lk_dev_tls_new                                                      */

static void tls_refused(struct fx *f, const char *path, lk_err want)
{
    lk_dev_tls *t = (lk_dev_tls *)0;
    f->detail[0] = '\0';
    lk_err err = lk_dev_tls_new(path, "127.0.0.1", &t, f->detail, sizeof f->detail);
    if (err != want)
        print_error("%s: %s (%s), expected %s\n", path, lk_errname(err), f->detail, lk_errname(want));
    assert_int_equal(err, want);
    assert_null(t);
    assert_true(f->detail[0] != '\0');
    assert_null(strchr(f->detail, '\n'));
}

static void test_tls_files(void **state)
{
    struct fx *f = *state;
    char path[4200];

    /* missing file */
    snprintf(path, sizeof path, "%s/no-such-ca.pem", f->dir);
    tls_refused(f, path, LK_ERR_FILE_MISSING);
    assert_true(strstr(f->detail, path) != NULL && strstr(f->detail, "No such file or directory") != NULL);
    snprintf(path, sizeof path, "%s/no-such-dir/ca.pem", f->dir);
    tls_refused(f, path, LK_ERR_FILE_MISSING);
    /* a key URI pasted as the CA file: named, without its PIN */
    tls_refused(f, "pkcs11:token=t;object=o?pin-value=SECRET1234", LK_ERR_FILE_MISSING);
    assert_null(strstr(f->detail, "SECRET1234"));
    assert_non_null(strstr(f->detail, "pin-value=***"));

    /* a text file without a certificate */
    snprintf(path, sizeof path, "%s/text.pem", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("this is not a certificate\n", fp);
    fclose(fp);
    tls_refused(f, path, LK_ERR_FILE_UNUSABLE);
    assert_true(contains_ci(f->detail, "certificate"));

    /* an empty file */
    snprintf(path, sizeof path, "%s/empty.pem", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    tls_refused(f, path, LK_ERR_FILE_UNUSABLE);

    /* a PEM private key: PEM, but no certificate */
    snprintf(path, sizeof path, "%s/key.pem", f->dir);
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    EVP_PKEY_free(k);
    tls_refused(f, path, LK_ERR_FILE_UNUSABLE);
    assert_true(contains_ci(f->detail, "certificate"));

    /* a directory */
    tls_refused(f, f->dir, LK_ERR_FILE_UNUSABLE);

    /* a good CA file, shared by two clients */
    lk_dev_tls *t = NULL;
    assert_int_equal(lk_dev_tls_new(f->ca_path, "127.0.0.1", &t, f->detail, sizeof f->detail), LK_OK);
    assert_non_null(t);
    lk_dev_config c = f->cfg;
    c.ca_file = NULL;
    c.tls = t;
    lk_dev *d1 = new_ok(f, &c);
    c.device = "dev-2";
    lk_dev *d2 = new_ok(f, &c);
    lk_dev_free(d1);
    lk_dev_free(d2);
    lk_dev_tls_free(t);

    /* NULL arguments */
    t = NULL;
    assert_int_equal(lk_dev_tls_new(NULL, "127.0.0.1", &t, f->detail, sizeof f->detail), LK_ERR_ARG);
    assert_int_equal(lk_dev_tls_new(f->ca_path, "127.0.0.1", NULL, f->detail, sizeof f->detail), LK_ERR_ARG);
}

/* ------------------------------------------------------------------ */
/* No server                                                           */

static unsigned closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s); /* nothing listens there now */
    return ntohs(a.sin_port);
}

static void test_no_server_gives_up_after_max_attempts(void **state)
{
    struct fx *f = *state;
    lk_dev_config c = f->cfg;
    c.port = closed_port();
    c.max_attempts = 2;
    c.connect_timeout_s = 5;
    lk_dev *d = new_ok(f, &c);
    assert_int_equal(lk_dev_publish_event(d, NULL, "queued", 6, NULL), LK_OK);
    assert_int_equal(lk_dev_start(d), LK_OK);
    int64_t t0 = lk_dev_now_ms();
    lk_err err = lk_dev_run(d, 20000);
    int64_t took = lk_dev_now_ms() - t0;
    assert_int_equal(err, LK_ERR_NET);
    assert_int_equal(lk_dev_get_state(d), LK_DEV_FAILED);
    const char *why = NULL;
    assert_int_equal(lk_dev_error(d, &why), LK_ERR_NET);
    assert_non_null(why);
    assert_true(why[0] != '\0');
    /* one backoff between the two attempts: 2^0 s + 0..999 ms */
    int backoffs = 0, failed = 0;
    for (int i = 0; i < f->n_events; i++) {
        if (f->types[i] == LK_DEV_EV_BACKOFF) {
            backoffs++;
            assert_true(f->delays[i] >= 1000 && f->delays[i] <= 1999);
        }
        if (f->types[i] == LK_DEV_EV_FAILED) {
            failed++;
            assert_int_equal(f->errs[i], LK_ERR_NET);
        }
        assert_true(f->types[i] != LK_DEV_EV_CONNECTED);
    }
    assert_int_equal(backoffs, 1);
    assert_int_equal(failed, 1);
    assert_true(took >= 1000 && took < 10000);
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    assert_int_equal(st.attempts, 2);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.tls_failures, 0);
    assert_int_equal(st.queued, 1);   /* the message waits, never dropped */
    assert_int_equal(lk_dev_publish_event(d, NULL, "x", 1, NULL), LK_ERR_STATE);
    lk_dev_free(d);
}


/* ------------------------------------------------------------------ */
/* A TLS server in a thread: accepts n connections, records whether any */
/* handshake succeeded and whether any application byte arrived.       */

struct tls_server {
    int fd;
    unsigned port;
    int n;
    SSL_CTX *ctx;
    int handshakes_ok;
    int bytes_received;
    int accepted;
};

/* A certificate for key, for DNS name dns (or NULL) and/or IP ip (or NULL),
 * signed by issuer_key/issuer (NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer, const char *cn,
                       const char *san)
{
    X509 *x = X509_new();
    if (x == NULL)
        return NULL;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_set_pubkey(x, key);
    if (san != NULL) {
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
        if (e == NULL) {
            X509_free(x);
            return NULL;
        }
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) == 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static void *tls_server_main(void *arg)
{
    struct tls_server *s = arg;
    for (int i = 0; i < s->n; i++) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            break;
        s->accepted++;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        SSL *ssl = SSL_new(s->ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
            char buf[256];
            s->handshakes_ok++;
            int r = SSL_read(ssl, buf, sizeof buf);
            if (r > 0)
                s->bytes_received += r;
        }
        SSL_free(ssl);
        close(c);
    }
    return NULL;
}

/* Start a server with cert/key on 127.0.0.1, for n connections. */
static void tls_server_start(struct tls_server *s, pthread_t *th, X509 *cert, EVP_PKEY *key, int n)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(s->ctx);
    assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, key), 1);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(th, NULL, tls_server_main, s), 0);
}

static void tls_server_stop(struct tls_server *s, pthread_t th)
{
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(th, NULL);
    SSL_CTX_free(s->ctx);
}

/* Run a client with max_attempts attempts against s; check that each one was
 * a TLS failure. */
static void expect_tls_failures(struct fx *f, struct tls_server *s, const char *host,
                                unsigned attempts, const char *what)
{
    lk_dev_config c = f->cfg;
    c.host = host;
    c.port = s->port;
    c.max_attempts = attempts;
    c.backoff_max_s = 1;
    c.connect_timeout_s = 10;
    f->n_events = 0;
    lk_dev *d = new_ok(f, &c);
    assert_int_equal(lk_dev_start(d), LK_OK);
    lk_err err = lk_dev_run(d, 30000);
    lk_dev_stats st;
    lk_dev_get_stats(d, &st);
    int tls_events = 0, net_events = 0;
    for (int i = 0; i < f->n_events; i++) {
        if (f->types[i] == LK_DEV_EV_TLS_FAILED)
            tls_events++;
        if (f->errs[i] == LK_ERR_NET)
            net_events++;
        assert_true(f->types[i] != LK_DEV_EV_CONNECTED);
    }
    if (err != LK_ERR_TLS || st.tls_failures != attempts || tls_events != (int)attempts ||
        net_events != 0) {
        const char *why = "";
        lk_dev_error(d, &why);
        print_error("%s: run -> %s (%s); attempts %llu, tls_failures %llu, TLS_FAILED events %d, "
                    "events with LK_ERR_NET %d\n",
                    what, lk_errname(err), why, (unsigned long long)st.attempts,
                    (unsigned long long)st.tls_failures, tls_events, net_events);
        lk_dev_free(d);
        fail();
    }
    assert_int_equal(st.attempts, attempts);
    assert_int_equal(st.connects, 0);
    lk_dev_free(d);
}

static void test_tls_untrusted_server(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *self = make_cert(key, NULL, NULL, "127.0.0.1", "IP:127.0.0.1,DNS:localhost");
    assert_non_null(self);
    struct tls_server s;
    pthread_t th;
    tls_server_start(&s, &th, self, key, 7);
    /* one attempt, several times over (the verdict must not depend on timing) */
    for (int i = 0; i < 5; i++)
        expect_tls_failures(f, &s, "127.0.0.1", 1, "self-signed server, 1 attempt");
    expect_tls_failures(f, &s, "127.0.0.1", 2, "self-signed server, 2 attempts");
    tls_server_stop(&s, th);
    assert_int_equal(s.handshakes_ok, 0);
    assert_int_equal(s.bytes_received, 0);
    X509_free(self);
    EVP_PKEY_free(key);
}

static void test_tls_wrong_name(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    /* signed by the CA the client trusts, but for another name */
    X509 *crt = make_cert(key, f->ca_key, f->ca, "elsewhere.invalid", "DNS:elsewhere.invalid");
    assert_non_null(crt);
    struct tls_server s;
    pthread_t th;
    tls_server_start(&s, &th, crt, key, 6);
    for (int i = 0; i < 3; i++)
        expect_tls_failures(f, &s, "127.0.0.1", 1, "wrong IP, 1 attempt");
    for (int i = 0; i < 3; i++)
        expect_tls_failures(f, &s, "localhost", 1, "wrong host name, 1 attempt");
    tls_server_stop(&s, th);
    assert_int_equal(s.handshakes_ok, 0);
    assert_int_equal(s.bytes_received, 0);
    X509_free(crt);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_powers_of_two),
        cmocka_unit_test(test_backoff_cap),
        cmocka_unit_test(test_backoff_jitter_added),
        cmocka_unit_test(test_backoff_huge_n_no_overflow),
        cmocka_unit_test(test_state_names_and_clock),
        cmocka_unit_test_setup_teardown(test_new_good_config, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_null_arguments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_bad_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_bad_ids, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_bad_key, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_bad_timing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_new_bad_x5c, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_set_next_key, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_max_messages, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_max_bytes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_message_sizes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_subfolders, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_then_publish, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_files, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_server_gives_up_after_max_attempts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_untrusted_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_wrong_name, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests_name("device", tests, NULL, NULL);
}
