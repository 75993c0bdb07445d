/*
 * alloc_fail.c — every allocation of an operation made to fail in turn
 * (docs/testing.md, "Failure paths proven"). For N = 1, 2, ... the N-th
 * allocation (ours, SQLite's, OpenSSL's, jansson's: one counter,
 * failalloc.c) fails while the operation runs; it must then succeed (the
 * allocation was not needed, or was retried) with exactly what a clean run
 * gives, or fail cleanly with an lk_err, leaving nothing half-written: the
 * database is as before, and the same handle does the operation when asked
 * again. N grows until a run meets no injected failure. Leaks are
 * LeakSanitizer's to find (the ASan build runs this too).
 *
 *   alloc_fail registry|open|verify|plugin   (open: creating a database, the
 *                                            slowest, on its own)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sqlite3.h>

#include "failalloc.h"
#include "harness.h"
#include "latchkey/lk_b64url.h"
#include "latchkey/lk_registry.h"
#include "latchkey/lk_verify.h"

const lk_reg_name H_NAME = {"my-project", "us-central1", "reg1"};
static const lk_reg_name NAME2 = {"my-project", "us-central1", "reg2"};
char *h_es256_pem, *h_rsa_pem;
static EVP_PKEY *es_key, *rsa_key;
char h_dir[256];
static char template_db[300], work_db[300];

void h_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fa_disarm();
    fprintf(stderr, "alloc_fail: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* # Keys and tokens (OpenSSL, disarmed) */

static char *pub_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;
    if (!b || !PEM_write_bio_PUBKEY(b, k))
        h_fail("PEM");
    n = BIO_get_mem_data(b, &p);
    out = malloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

static void b64(const void *in, size_t n, char *out, size_t size)
{
    size_t len;
    if (lk_b64url_encode(in, n, out, size, &len) != LK_OK)
        h_fail("b64url");
}

/* hdr.payload signed with the test's RSA or P-256 key; bad flips a bit of
 * the signature. */
static char *sign_token(int rs256, int bad, const char *hdr, const char *payload)
{
    char h64[200], p64[600], sig64[400];
    unsigned char der[600], sig[512];
    size_t dlen = sizeof der, slen;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    char signing[800], *tok;

    b64(hdr, strlen(hdr), h64, sizeof h64);
    b64(payload, strlen(payload), p64, sizeof p64);
    snprintf(signing, sizeof signing, "%s.%s", h64, p64);
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, rs256 ? rsa_key : es_key) != 1 ||
        EVP_DigestSign(md, der, &dlen, (const unsigned char *)signing, strlen(signing)) != 1)
        h_fail("sign");
    EVP_MD_CTX_free(md);
    if (rs256) {
        memcpy(sig, der, dlen);
        slen = dlen;
    } else {
        const unsigned char *q = der;
        ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &q, (long)dlen);
        if (!s || BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, 32) != 32 ||
            BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + 32, 32) != 32)
            h_fail("ECDSA_SIG");
        ECDSA_SIG_free(s);
        slen = 64;
    }
    if (bad)
        sig[slen / 2] ^= 1;
    b64(sig, slen, sig64, sizeof sig64);
    tok = malloc(strlen(signing) + strlen(sig64) + 2);
    sprintf(tok, "%s.%s", signing, sig64);
    return tok;
}

char *h_token(int rs256, int bad)
{
    char hdr[64], payload[160];
    snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", rs256 ? "RS256" : "ES256");
    snprintf(payload, sizeof payload, "{\"iat\":%lld,\"exp\":%lld,\"aud\":\"my-project\"}",
             (long long)fa_now - 10, (long long)fa_now + 3600);
    return sign_token(rs256, bad, hdr, payload);
}

#define SA_EMAIL "api-caller@my-project.iam.latchkey"
#define SA_KID "0123456789abcdef0123456789abcdef01234567"
#define SA_AUD "https://cloudiot.googleapis.com/"

/* A service account's token as Google's libraries make it (RS256, kid). */
static char *sa_token(int bad)
{
    char payload[400];
    snprintf(payload, sizeof payload,
             "{\"iss\":\"" SA_EMAIL "\",\"sub\":\"" SA_EMAIL "\",\"aud\":\"" SA_AUD "\","
             "\"scope\":\"a b\",\"iat\":%lld,\"exp\":%lld}",
             (long long)fa_now - 10, (long long)fa_now + 3590);
    return sign_token(1, bad, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"" SA_KID "\"}",
                      payload);
}

/* What the refusals were: "LK_ERR_NOMEM 12, LK_ERR_REG_STORAGE 80". */
static long refusals[128];

static void refused(lk_err err)
{
    refusals[(unsigned)err & 127u]++;
}

static const char *refusal_text(void)
{
    static char buf[512];
    size_t o = 0;
    unsigned e;
    buf[0] = '\0';
    for (e = 1; e < 128; e++)
        if (refusals[e] && o < sizeof buf - 64)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s %ld", o ? ", " : "",
                                  lk_errname((lk_err)e), refusals[e]);
    memset(refusals, 0, sizeof refusals);
    return o ? buf : "none";
}

/* # Database contents */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cat(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    while (*len + n + 1 > *cap)
        *out = realloc(*out, *cap *= 2);
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
}

char *h_dump(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *tables = NULL;
    size_t cap = 1 << 14, len = 0;
    char *out = malloc(cap);

    out[0] = '\0';
    if (access(path, F_OK) != 0)
        return out;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
                           -1, &tables, NULL) != SQLITE_OK)
        h_fail("dump %s: %s", path, sqlite3_errmsg(db));
    while (sqlite3_step(tables) == SQLITE_ROW) {
        char sql[256], **rows = NULL;
        size_t nrows = 0, i;
        sqlite3_stmt *s = NULL;
        const char *t = (const char *)sqlite3_column_text(tables, 0);
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", t);
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
            h_fail("dump %s", t);
        while (sqlite3_step(s) == SQLITE_ROW) {
            size_t rl = 0, rc = 256;
            char *row = malloc(rc);
            int c;
            row[0] = '\0';
            for (c = 0; c < sqlite3_column_count(s); c++) {
                const unsigned char *v = sqlite3_column_text(s, c);
                size_t vl = (size_t)sqlite3_column_bytes(s, c), k;
                char hx[3];
                for (k = 0; v && k < vl; k++) {
                    snprintf(hx, sizeof hx, "%02x", v[k]);
                    cat(&row, &rl, &rc, hx, 2);
                }
                cat(&row, &rl, &rc, "|", 1);
            }
            rows = realloc(rows, (nrows + 1) * sizeof *rows);
            rows[nrows++] = row;
        }
        sqlite3_finalize(s);
        if (nrows > 1)
            qsort(rows, nrows, sizeof *rows, cmp_str);
        cat(&out, &len, &cap, t, strlen(t));
        cat(&out, &len, &cap, "\n", 1);
        for (i = 0; i < nrows; i++) {
            cat(&out, &len, &cap, rows[i], strlen(rows[i]));
            cat(&out, &len, &cap, "\n", 1);
            free(rows[i]);
        }
        free(rows);
    }
    sqlite3_finalize(tables);
    sqlite3_close(db);
    return out;
}

void h_copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    if (!a || !b)
        h_fail("copy %s: %s", from, strerror(errno));
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n)
            h_fail("copy");
    fclose(a);
    if (fclose(b))
        h_fail("copy");
}

void h_remove_db(const char *path)
{
    char p[320];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

/* # The registry's operations */

static lk_registry *reg;       /* the handle an operation runs on */
static uint64_t dev1_num;

static lk_registry *open_db(const char *path, unsigned flags)
{
    lk_registry *r = NULL;
    char why[256] = "";
    lk_err err = lk_registry_open(path, flags, &r, why, sizeof why);
    if (err)
        h_fail("open %s: %s: %s", path, lk_errname(err), why);
    return r;
}

static lk_err op_open(void)
{
    lk_registry *r = NULL;
    char why[256];
    lk_err err;

    /* setup removed it; asked again after a failure, it opens what that left */
    err = lk_registry_open(work_db, LK_REG_CREATE, &r, why, sizeof why);
    if (err == LK_OK)
        lk_registry_close(r);
    return err;
}

static lk_err op_create_registry(void)
{
    char why[256];
    return lk_registry_create_registry(reg, &NAME2, LK_REG_STATE_ENABLED, LK_REG_STATE_DISABLED,
                                       why, sizeof why);
}

static lk_err op_create_device(void)
{
    static const uint8_t cfg[] = "{\"mode\":\"fast\"}";
    lk_reg_credential cred = {LK_CRED_ES256_PEM, h_es256_pem, 0};
    lk_reg_metadata md[2] = {{"site", "north", 5}, {"owner", "ops team", 8}};
    lk_reg_device_spec spec = {0};
    uint64_t num;
    char why[256];

    spec.id = "dev2";
    spec.creds = &cred;
    spec.ncreds = 1;
    spec.metadata = md;
    spec.nmetadata = 2;
    spec.config = cfg;
    spec.config_len = sizeof cfg - 1;
    return lk_registry_create_device(reg, &H_NAME, &spec, &num, why, sizeof why);
}

static lk_err op_add_credential(void)
{
    lk_reg_credential cred = {LK_CRED_RSA_PEM, h_rsa_pem, 0};
    char why[256];
    cred.expires = fa_now + 86400;
    return lk_registry_add_credential(reg, &H_NAME, "dev1", &cred, why, sizeof why);
}

static lk_err op_update_config(void)
{
    static const uint8_t cfg[] = "{\"mode\":\"slow\",\"n\":2}";
    lk_reg_config out = {0};
    char why[256];
    lk_err err = lk_registry_update_config(reg, &H_NAME, "dev1", cfg, sizeof cfg - 1, 1, &out,
                                           why, sizeof why);
    lk_reg_config_free(&out);
    return err;
}

static lk_err op_add_state(void)
{
    static const uint8_t st[] = "{\"temp\":21.5}";
    return lk_registry_add_state(reg, dev1_num, st, sizeof st - 1, fa_now);
}

static lk_err op_command(void)
{
    static const uint8_t cmd[] = "reboot";
    int64_t id;
    char why[256];
    return lk_registry_command_send(reg, &H_NAME, "dev1", "ops", cmd, sizeof cmd - 1, &id,
                                    why, sizeof why);
}

static lk_err op_backend(void)
{
    uint8_t h[32];
    char why[256];
    memset(h, 0x5a, sizeof h);
    return lk_registry_backend_create(reg, "my-project", "analytics", h, why, sizeof why);
}

static lk_err op_bridge_set(void)
{
    uint8_t h[32];
    char why[256];
    memset(h, 0xa5, sizeof h);
    return lk_registry_bridge_set(reg, "latchkeyd-1", h, fa_now, why, sizeof why);
}

static lk_err op_sa_create(void)
{
    char why[256], email[LK_SA_EMAIL_MAX + 1];
    return lk_registry_sa_create(reg, "my-project", "new-caller", LK_ROLE_EDITOR, email,
                                 sizeof email, why, sizeof why);
}

static lk_err op_sa_key_add(void)
{
    char why[256];
    return lk_registry_sa_key_add(reg, SA_EMAIL, "fedcba9876543210fedcba9876543210fedcba98",
                                  h_rsa_pem, strlen(h_rsa_pem), why, sizeof why);
}

static lk_err op_subscription(void)
{
    lk_reg_subscription sub = {0};
    char why[256];
    sub.project = "my-project";
    sub.name = "push-1";
    sub.topic = "telemetry";
    sub.push_endpoint = "https://app.example.com/push";
    sub.auth = LK_PUSH_AUTH_HEADER;
    sub.auth_header_name = "X-Api-Key";
    sub.auth_header_value = "not-a-real-secret";
    sub.dead_letter_topic = "dead";
    return lk_registry_subscription_create(reg, &sub, why, sizeof why);
}

static lk_err op_presence(void)
{
    lk_reg_presence_update u = {dev1_num, LK_PRESENCE_OFFLINE, 0, "the connection was lost"};
    u.time = fa_now + 5;
    return lk_registry_presence_record(reg, &u, 1);
}

/* dev1 is recorded online in the template: its delete leaves a tombstone. */
static lk_err op_delete_device(void)
{
    char why[256];
    return lk_registry_delete_device(reg, &H_NAME, "dev1", why, sizeof why);
}

/* The change feed: what was read goes to a fixed array (no allocation), and
 * is compared with a clean run's. */
static lk_reg_change feed[64], feed_ref[64];
static size_t feed_n, feed_ref_n;
static int64_t feed_since;

static int feed_cb(void *arg, const lk_reg_change *c)
{
    (void)arg;
    if (feed_n == 64)
        return 1;
    feed[feed_n++] = *c;
    return 0;
}

static lk_err op_changes(void)
{
    int changed = 0;
    lk_err err;

    feed_n = 0;
    feed_since = 0;
    err = lk_registry_poll(reg, &changed);
    if (err)
        return err;
    err = lk_registry_changes(reg, &feed_since, feed_cb, NULL);
    /* *since covers exactly the changes taken, error or not */
    if ((feed_n ? feed[feed_n - 1].seq : 0) != feed_since)
        h_fail("changes: since %lld after %zu changes", (long long)feed_since, feed_n);
    return err;
}

/* A small export as `latchkey devices list --format json` gives it, read
 * with jansson and imported in one transaction. */
static const char export_json[] =
    "[{\"id\":\"imp1\",\"numId\":\"9001\",\"blocked\":false,"
    "\"credentials\":[{\"publicKey\":{\"format\":\"ES256_PEM\",\"key\":\"@ES@\"}}],"
    "\"metadata\":{\"site\":\"east\"},\"config\":{\"version\":\"3\",\"binaryData\":\"e30\"}},"
    " {\"id\":\"imp2\",\"blocked\":true,\"credentials\":[],\"metadata\":{}}]";
static char *export_text;

static lk_err op_import(void)
{
    json_error_t jerr;
    json_t *arr = json_loads(export_text, JSON_REJECT_DUPLICATES, &jerr), *d;
    char why[256];
    size_t i;
    lk_err err;

    if (!arr)
        return LK_ERR_NOMEM; /* jansson names no cause: the export is well-formed */
    err = lk_registry_import_begin(reg, &H_NAME, why, sizeof why);
    json_array_foreach(arr, i, d) {
        lk_reg_device_spec spec = {0};
        lk_reg_credential cred = {0};
        lk_reg_metadata md[4];
        json_t *creds = json_object_get(d, "credentials"), *meta = json_object_get(d, "metadata");
        json_t *cfg = json_object_get(d, "config"), *v;
        const char *k;
        uint64_t num;
        if (err)
            break;
        spec.id = json_string_value(json_object_get(d, "id"));
        spec.blocked = json_is_true(json_object_get(d, "blocked"));
        if (json_string_value(json_object_get(d, "numId")))
            spec.num_id = strtoull(json_string_value(json_object_get(d, "numId")), NULL, 10);
        if (json_array_size(creds)) {
            json_t *pk = json_object_get(json_array_get(creds, 0), "publicKey");
            cred.format = lk_cred_format_from_name(json_string_value(json_object_get(pk, "format")),
                                                   strlen(json_string_value(json_object_get(pk, "format"))));
            cred.pem = (char *)json_string_value(json_object_get(pk, "key"));
            spec.creds = &cred;
            spec.ncreds = 1;
        }
        json_object_foreach(meta, k, v) {
            md[spec.nmetadata].key = (char *)k;
            md[spec.nmetadata].value = (char *)json_string_value(v);
            md[spec.nmetadata].value_len = strlen(json_string_value(v));
            spec.nmetadata++;
        }
        spec.metadata = md;
        if (cfg) {
            static uint8_t data[16];
            size_t n = 0;
            spec.config_version = strtoll(json_string_value(json_object_get(cfg, "version")), NULL, 10);
            if (lk_b64url_decode(json_string_value(json_object_get(cfg, "binaryData")), 3, data,
                                 sizeof data, &n, 0) != LK_OK)
                h_fail("import: binaryData");
            spec.config = data;
            spec.config_len = n;
        }
        err = lk_registry_import_add(reg, &spec, &num, why, sizeof why);
    }
    if (!err) { /* a gateway of the import and its binding, in the same transaction */
        lk_reg_device_spec gw = {0};
        uint64_t num;
        gw.id = "impgw";
        gw.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
        err = lk_registry_import_add(reg, &gw, &num, why, sizeof why);
    }
    if (!err)
        err = lk_registry_import_bind(reg, "impgw", "imp1", why, sizeof why);
    if (!err)
        err = lk_registry_import_commit(reg, why, sizeof why);
    else
        lk_registry_import_abort(reg);
    json_decref(arr);
    return err;
}

struct reg_op {
    const char *name;
    lk_err (*run)(void);
    int reads;      /* a read: the database never changes */
};

static const struct reg_op reg_ops[] = {
    {"open (create a database)", op_open, 0},
    {"create registry", op_create_registry, 0},
    {"create device", op_create_device, 0},
    {"add credential", op_add_credential, 0},
    {"config update", op_update_config, 0},
    {"state write", op_add_state, 0},
    {"command", op_command, 0},
    {"backend create", op_backend, 0},
    {"bridge set", op_bridge_set, 0},
    {"service account create", op_sa_create, 0},
    {"service account key add", op_sa_key_add, 0},
    {"subscription create", op_subscription, 0},
    {"presence record", op_presence, 0},
    {"device delete (tombstone)", op_delete_device, 0},
    {"change feed read", op_changes, 1},
    {"import (JSON export)", op_import, 0},
};

static void reg_setup(const struct reg_op *op)
{
    h_remove_db(work_db);
    if (op->run == op_open) {
        reg = NULL;
        return;
    }
    h_copy_file(template_db, work_db);
    reg = open_db(work_db, 0);
}

static void reg_teardown(void)
{
    if (reg)
        lk_registry_close(reg);
    reg = NULL;
    h_remove_db(work_db);
}

/* For the one who must find out why: the two dumps, in files. */
static void save_dumps(const char *before, const char *after)
{
    const char *dir = getenv("LK_FAILALLOC_KEEP");
    char p[512];
    FILE *f;
    if (!dir)
        return;
    snprintf(p, sizeof p, "%s/before.txt", dir);
    if ((f = fopen(p, "w"))) { fputs(before, f); fclose(f); }
    snprintf(p, sizeof p, "%s/after.txt", dir);
    if ((f = fopen(p, "w"))) { fputs(after, f); fclose(f); }
}

static void check_feed(const char *name, long n)
{
    if (feed_n != feed_ref_n || memcmp(feed, feed_ref, feed_n * sizeof *feed))
        h_fail("%s, allocation %ld failed: the feed read differs from a clean run's", name, n);
}

/* After a success: close the handle, and the rows (and the feed read) must
 * be a clean run's. Returns the dump. */
static char *closed_dump(const struct reg_op *op, const char *before, const char *ref, long n,
                         const char *what)
{
    char *after;

    if (reg)
        lk_registry_close(reg);
    reg = NULL;
    after = h_dump(work_db);
    if (strcmp(after, op->reads ? before : ref))
        h_fail("%s: allocation %ld failed, %s", op->name, n, what);
    if (op->run == op_changes)
        check_feed(op->name, n);
    return after;
}

static void registry_op(const struct reg_op *op)
{
    char *ref, *before, *after;
    double t0 = now_s();
    long n, nomem = 0;
    lk_err err;

    /* a clean run: what success gives */
    reg_setup(op);
    err = op->run();
    if (err)
        h_fail("%s: a clean run fails: %s", op->name, lk_errname(err));
    if (op->run == op_changes) {
        memcpy(feed_ref, feed, sizeof feed);
        feed_ref_n = feed_n;
    }
    if (reg)
        lk_registry_close(reg);
    reg = NULL;
    ref = h_dump(work_db);
    reg_teardown();

    for (n = 1;; n++) {
        reg_setup(op);
        before = h_dump(work_db);
        fa_arm(n);
        err = op->run();
        fa_disarm();
        if (!fa_hit()) {
            if (err)
                h_fail("%s: fails with no allocation failing: %s", op->name, lk_errname(err));
            free(before);
            reg_teardown();
            break;
        }
        if (err == LK_OK) {
            /* the failure was absorbed: the result must be a clean run's */
            after = closed_dump(op, before, ref, n, "the operation succeeded, but the database "
                                "differs from a clean run's");
        } else {
            refused(err);
            nomem++;
            after = h_dump(work_db);
            if (op->run == op_open && (after[0] == '\0' || !strcmp(after, ref))) {
                /* no database, or all of it (which every other path here opens): asking
                 * again would only repeat the clean run */
                free(after);
                free(before);
                reg_teardown();
                continue;
            }
            if (op->run != op_open && strcmp(after, before)) {
                save_dumps(before, after);
                h_fail("%s: allocation %ld failed (%s) and the database changed: half-written",
                       op->name, n, lk_errname(err));
            }
            free(after);
            /* the same handle, asked again, does it whole */
            err = op->run();
            if (err)
                h_fail("%s: allocation %ld failed, then the same handle fails again: %s",
                       op->name, n, lk_errname(err));
            after = closed_dump(op, before, ref, n, "and doing it again gives other rows than "
                                "a clean run");
        }
        free(after);
        free(before);
        reg_teardown();
    }
    printf("registry: %-24s %5ld allocation points, %ld absorbed (%.1f s); refused: %s\n",
           op->name, n - 1, n - 1 - nomem, now_s() - t0, refusal_text());
    free(ref);
}

static void make_template(void)
{
    char email[LK_SA_EMAIL_MAX + 1];
    lk_registry *r;
    lk_reg_credential cred = {LK_CRED_ES256_PEM, h_es256_pem, 0};
    lk_reg_device_spec spec = {0};
    char why[256];
    int64_t id;

    h_remove_db(template_db);
    r = open_db(template_db, LK_REG_CREATE);
    if (lk_registry_create_registry(r, &H_NAME, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED,
                                    why, sizeof why))
        h_fail("template: %s", why);
    spec.id = "dev1";
    spec.creds = &cred;
    spec.ncreds = 1;
    if (lk_registry_create_device(r, &H_NAME, &spec, &dev1_num, why, sizeof why))
        h_fail("template: %s", why);
    if (lk_registry_command_send(r, &H_NAME, "dev1", NULL, (const uint8_t *)"x", 1, &id,
                                 why, sizeof why))
        h_fail("template: %s", why);
    {
        lk_reg_presence_update u = {dev1_num, LK_PRESENCE_ONLINE, 0, "192.0.2.1:1883"};
        u.time = fa_now;
        if (lk_registry_presence_record(r, &u, 1))
            h_fail("template: presence");
    }
    if (lk_registry_sa_create(r, "my-project", "api-caller", LK_ROLE_ADMIN, email, sizeof email,
                              why, sizeof why) ||
        lk_registry_sa_key_add(r, email, SA_KID, h_rsa_pem, strlen(h_rsa_pem), why, sizeof why))
        h_fail("template: %s", why);
    lk_registry_close(r);
}

static void registry_paths(int open_only)
{
    size_t i, j = 0;
    const char *es = h_es256_pem;

    /* the export holds the key as JSON text */
    export_text = malloc(sizeof export_json + 2 * strlen(es));
    for (i = 0; export_json[i]; i++) {
        if (!strncmp(export_json + i, "@ES@", 4)) {
            const char *p;
            for (p = es; *p; p++) {
                if (*p == '\n') {
                    export_text[j++] = '\\';
                    export_text[j++] = 'n';
                } else {
                    export_text[j++] = *p;
                }
            }
            i += 3;
        } else {
            export_text[j++] = export_json[i];
        }
    }
    export_text[j] = '\0';
    make_template();
    for (i = 0; i < sizeof reg_ops / sizeof reg_ops[0]; i++)
        if ((reg_ops[i].run == op_open) == open_only &&
            (!getenv("LK_FAILALLOC_ONLY") || strstr(reg_ops[i].name, getenv("LK_FAILALLOC_ONLY"))))
            registry_op(&reg_ops[i]);
    free(export_text);
    h_remove_db(template_db);
}

/* # The verifier */

/* mode 0: ES256, 1: RS256 (device tokens), 2: a service account's token
 * (kid peek, then lk_verify_sa_token). */
static void verify_op(int mode)
{
    static const char *const aud[] = {SA_AUD};
    int rs256 = mode != 0;
    const char *name = mode == 2 ? "SA RS256" : rs256 ? "RS256" : "ES256";
    char *good = mode == 2 ? sa_token(0) : h_token(rs256, 0);
    char *bad = mode == 2 ? sa_token(1) : h_token(rs256, 1);
    const char *pem = rs256 ? h_rsa_pem : h_es256_pem;
    double t0 = now_s();
    long n, nomem = 0, bad_points = 0;
    int which;

    for (which = 0; which < 2; which++) {
        const char *tok = which ? bad : good;
        for (n = 1;; n++) {
            lk_verifier *v = NULL;
            lk_cred *cred = NULL;
            lk_verify_policy pol;
            lk_sa_policy sp;
            lk_token_info info;
            char why[200], kid[64];
            lk_err err;

            lk_verify_policy_init(&pol, "my-project", 10, fa_now);
            memset(&sp, 0, sizeof sp);
            sp.email = SA_EMAIL;
            sp.now = fa_now;
            sp.skew = LK_SA_SKEW;
            sp.max_lifetime = LK_SA_MAX_LIFETIME;
            sp.audiences = aud;
            sp.naudiences = 1;
            fa_arm(n);
            err = lk_cred_parse(LK_CRED_UNSPECIFIED, pem, strlen(pem), 0, &cred);
            if (!err)
                err = lk_verifier_new(&v);
            if (!err && mode == 2)
                err = lk_jwt_peek_kid(tok, strlen(tok), kid, sizeof kid);
            if (!err && mode == 2)
                err = lk_verify_sa_token(v, tok, strlen(tok), cred, &sp, &info, why, sizeof why);
            else if (!err)
                err = lk_verify_token(v, tok, strlen(tok), &cred, 1, &pol, &info, why, sizeof why);
            fa_disarm();
            lk_verifier_free(v);
            lk_cred_free(cred);
            if (which == 1 && err == LK_OK)
                h_fail("verify %s: allocation %ld failed and a token with a wrong signature "
                       "was accepted", name, n);
            if (!fa_hit()) {
                if (which == 0 && err)
                    h_fail("verify %s: fails with no allocation failing: %s", name, lk_errname(err));
                break;
            }
            if (which == 0 && err) {
                if (getenv("LK_FAILALLOC_VERBOSE"))
                    fprintf(stderr, "verify %s: allocation %ld failed: %s (%s)\n", name, n,
                            lk_errname(err), cred ? (v ? why : "verifier") : "credential");
                refused(err);
                nomem++;
            }
        }
        if (which == 0)
            printf("verify: %-8s parse + verify %5ld allocation points, %ld absorbed; refused: %s\n",
                   name, n - 1, n - 1 - nomem, refusal_text());
        else
            bad_points = n - 1;
    }
    printf("verify: %-8s wrong signature %5ld allocation points, never accepted (%.1f s)\n",
           name, bad_points, now_s() - t0);
    free(good);
    free(bad);
}

static void verify_paths(void)
{
    verify_op(0);
    verify_op(1);
    verify_op(2);
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("LK_FAILALLOC_DIR");
    double t0;

    fa_install(); /* before anything allocates */
    if (argc != 2) {
        fprintf(stderr, "usage: alloc_fail registry|open|verify|plugin\n");
        return 2;
    }
    t0 = now_s();
    if (!tmp)
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(h_dir, sizeof h_dir, "%s/lk-alloc-XXXXXX", tmp);
    if (!mkdtemp(h_dir))
        h_fail("mkdtemp %s: %s", h_dir, strerror(errno));
    snprintf(template_db, sizeof template_db, "%s/template.db", h_dir);
    snprintf(work_db, sizeof work_db, "%s/work.db", h_dir);
    es_key = EVP_EC_gen("P-256");
    rsa_key = EVP_RSA_gen(2048);
    if (!es_key || !rsa_key)
        h_fail("keys");
    h_es256_pem = pub_pem(es_key);
    h_rsa_pem = pub_pem(rsa_key);

    if (!strcmp(argv[1], "registry"))
        registry_paths(0);
    else if (!strcmp(argv[1], "open"))
        registry_paths(1);
    else if (!strcmp(argv[1], "verify"))
        verify_paths();
    else if (!strcmp(argv[1], "plugin"))
        plugin_paths();
    else
        h_fail("unknown path %s", argv[1]);

    free(h_es256_pem);
    free(h_rsa_pem);
    EVP_PKEY_free(es_key);
    EVP_PKEY_free(rsa_key);
    rmdir(h_dir);
    printf("alloc_fail %s: every allocation point failed in turn, no crash, nothing half-written "
           "(%.1f s)\n", argv[1], now_s() - t0);
    return 0;
}
