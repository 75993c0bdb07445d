/*
 * test_jwt.c — the token builder (lk_jwt.h) against its contract.
 *
 * A deterministic test signer (an lk_se whose sign_digest derives its
 * "signature" from the digest) lets every expected token be computed
 * independently in the test: header and claims JSON written by hand, encoded
 * with OpenSSL's base64, hashed with OpenSSL's SHA-256. Then: JSON escaping
 * (checked byte-exactly and through jansson), UTF-8 validation, 64-bit
 * numbers, claim names, duplicates, the claim limit, latched errors, every
 * buffer size, signer failures and lies, state, lk_jwt_iotcore, the size
 * macro; and real ES256/RS256 keys in OpenSSL, with tamper-then-verify.
 */
#include "lk_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_se.h"

#define FILL 0xA5u
#define CANARY 32u
#define KEY "slot:0"

static const char hdr_es256[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
static const char hdr_rs256[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";

/* ---- the deterministic test signer ------------------------------------ */

typedef struct tsigner {
    int calls;
    lk_err ret;            /* returned by sign_digest (after writing garbage) */
    long force_len;        /* -1: the natural length; else report this */
    int zero_r, zero_s;
    size_t rsa_bytes;      /* RS256 signature length */
    /* seen */
    uint8_t digest[32];
    char key[64];
    lk_alg alg;
    size_t sig_size;
} tsigner;

static void ts_reset(tsigner *t)
{
    memset(t, 0, sizeof *t);
    t->ret = LK_OK;
    t->force_len = -1;
    t->rsa_bytes = 256;
}

/* The "signature" of a digest: n bytes, digest[i % 32] ^ (i / 32). For
 * ES256 that is r = digest, s = digest ^ 0x01...: both non-zero and, for
 * any digest the tests produce, below the group order. */
static void fake_sig(const uint8_t digest[32], size_t n, uint8_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(digest[i % 32] ^ (uint8_t)(i / 32));
}

static lk_err ts_sign(void *ctx, const char *key, lk_alg alg,
                      const uint8_t digest[LK_SHA256_BYTES],
                      uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    tsigner *t = ctx;
    t->calls++;
    memcpy(t->digest, digest, 32);
    snprintf(t->key, sizeof t->key, "%s", key);
    t->alg = alg;
    t->sig_size = sig_size;
    size_t n = (alg == LK_ALG_RS256) ? t->rsa_bytes : 64;
    if (t->ret != LK_OK) {
        /* a failing element may still have scribbled on the buffer */
        memset(sig, 0xEE, n < sig_size ? n : sig_size);
        *sig_len = n;
        return t->ret;
    }
    size_t report = t->force_len >= 0 ? (size_t)t->force_len : n;
    if (sig_size < n || sig_size < report) {
        if (t->force_len < 0 || (size_t)t->force_len <= sig_size)
            return LK_ERR_BUFFER;
        /* a lying element: claims more than the buffer holds */
        fake_sig(digest, sig_size, sig);
        *sig_len = report;
        return LK_OK;
    }
    fake_sig(digest, report, sig);
    if (t->zero_r)
        memset(sig, 0, 32);
    if (t->zero_s)
        memset(sig + 32, 0, 32);
    *sig_len = report;
    return LK_OK;
}

static lk_err ts_public_key(void *ctx, const char *key, lk_alg *alg,
                            uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    (void)ctx; (void)key; (void)pub; (void)pub_size;
    *alg = LK_ALG_ES256;
    *pub_len = 0;
    return LK_ERR_UNSUPPORTED;
}

static const lk_se_ops ts_ops = { .name = "test", .public_key = ts_public_key, .sign_digest = ts_sign };

/* ---- claims and the independent reference ------------------------------ */

typedef struct claim {
    const char *name;
    int is_int;
    int64_t i;
    const char *s;
    size_t slen;
} claim;

#define CI(n, v) { (n), 1, (v), NULL, 0 }
#define CS(n, v) { (n), 0, 0, (v), sizeof(v) - 1 }

static const claim fixed_claims[] = {
    CI("iat", 1700000000), CI("exp", 1700003600), CS("aud", "my-project"),
    CS("sub", "device-001"), CI("n", -42),
};
#define N_FIXED (sizeof fixed_claims / sizeof fixed_claims[0])
static const char fixed_json[] =
    "{\"iat\":1700000000,\"exp\":1700003600,\"aud\":\"my-project\","
    "\"sub\":\"device-001\",\"n\":-42}";

/* JSON string escaping as the reference. The header says "quote,
 * backslash, every control character"; the form pinned here is the one the
 * builder writes (and RFC 8259 requires): \" and \\, \u00xx (lowercase
 * hex) for every byte below 0x20 (also \n, \t: no short forms), and
 * everything else as is, DEL (0x7f) and UTF-8 included. */
static size_t ref_escape(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        if (c == '"')
            e = "\\\"";
        else if (c == '\\')
            e = "\\\\";
        if (e != NULL) {
            memcpy(out + o, e, 2);
            o += 2;
        } else if (c < 0x20) {
            o += (size_t)sprintf(out + o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* The claims object as the builder must write it (malloc'd, NUL-ended). */
static char *ref_claims_json(const claim *c, size_t n, size_t *len)
{
    size_t cap = 16;
    for (size_t i = 0; i < n; i++)
        cap += strlen(c[i].name) + 6 * c[i].slen + 32;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t o = 0;
    out[o++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            out[o++] = ',';
        o += (size_t)sprintf(out + o, "\"%s\":", c[i].name);
        if (c[i].is_int) {
            o += (size_t)sprintf(out + o, "%" PRId64, c[i].i);
        } else {
            out[o++] = '"';
            o += ref_escape(c[i].s, c[i].slen, out + o);
            out[o++] = '"';
        }
    }
    out[o++] = '}';
    out[o] = '\0';
    *len = o;
    return out;
}

/* header.payload.signature for the test signer (malloc'd), with the header
 * JSON given. */
static char *ref_token_hdr(const char *hdr, const char *claims, size_t claims_len,
                           size_t sig_bytes)
{
    char *h = lk_test_b64url_ref_encode((const uint8_t *)hdr, strlen(hdr));
    char *p = lk_test_b64url_ref_encode((const uint8_t *)claims, claims_len);
    size_t signing_len = strlen(h) + 1 + strlen(p);
    char *tok = malloc(signing_len + 1 + 4 * sig_bytes / 3 + 8);
    assert_non_null(tok);
    sprintf(tok, "%s.%s", h, p);
    uint8_t digest[32];
    SHA256((const uint8_t *)tok, signing_len, digest);
    uint8_t *sig = malloc(sig_bytes);
    fake_sig(digest, sig_bytes, sig);
    char *s = lk_test_b64url_ref_encode(sig, sig_bytes);
    sprintf(tok + signing_len, ".%s", s);
    free(h);
    free(p);
    free(s);
    free(sig);
    return tok;
}

static char *ref_token(lk_alg alg, const char *claims, size_t claims_len, size_t sig_bytes)
{
    return ref_token_hdr(alg == LK_ALG_RS256 ? hdr_rs256 : hdr_es256, claims, claims_len,
                         sig_bytes);
}

static void add_claims(lk_jwt *jwt, const claim *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].is_int)
            lk_jwt_add_claim_int(jwt, c[i].name, c[i].i);
        else
            lk_jwt_add_claim_string(jwt, c[i].name, c[i].s, c[i].slen);
    }
}

static lk_err build(lk_alg alg, const claim *c, size_t n, const lk_se *se,
                    char *buf, size_t size, size_t *len)
{
    lk_jwt jwt;
    lk_jwt_init(&jwt, alg, buf, size);
    add_claims(&jwt, c, n);
    return lk_jwt_finalize(&jwt, se, KEY, len);
}

/* A buffer of size bytes followed by a canary, pre-filled. */
static char *fresh_buf(size_t size)
{
    char *b = malloc(size + CANARY);
    assert_non_null(b);
    memset(b, FILL, size + CANARY);
    return b;
}

/* After a failure: *len 0, the whole buffer wiped, nothing past it. */
static void check_wiped(const char *buf, size_t size, size_t len, const char *what)
{
    if (len != 0)
        fail_msg("%s: failed with *token_len = %zu", what, len);
    if (!lk_test_all_bytes(buf, size, 0)) {
        size_t i = 0;
        while (((const uint8_t *)buf)[i] == 0)
            i++;
        fail_msg("%s: failed without wiping the buffer (byte %zu of %zu is 0x%02x)",
                 what, i, size, ((const uint8_t *)buf)[i]);
    }
    if (!lk_test_all_bytes(buf + size, CANARY, FILL))
        fail_msg("%s: wrote past the end of the buffer", what);
}

/* Build with the test signer and compare with the reference token. */
static void check_token(lk_alg alg, const claim *c, size_t n, size_t sig_bytes)
{
    size_t json_len;
    char *json = ref_claims_json(c, n, &json_len);
    char *want = ref_token(alg, json, json_len, sig_bytes);
    size_t size = strlen(want) + 1;
    assert_int_equal(size, LK_JWT_TOKEN_SIZE(json_len, sig_bytes));
    tsigner t;
    ts_reset(&t);
    t.rsa_bytes = sig_bytes;
    lk_se se = { &ts_ops, &t };
    char *buf = fresh_buf(size);
    size_t len = 12345;
    lk_err err = build(alg, c, n, &se, buf, size, &len);
    if (err != LK_OK)
        fail_msg("building %s into exactly %zu bytes: %d", json, size, err);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.alg, alg);
    assert_string_equal(t.key, KEY);
    assert_int_equal(len, size - 1);
    if (memcmp(buf, want, size) != 0)
        fail_msg("token mismatch for claims %s\n got: %.*s\nwant: %s", json, (int)len, buf, want);
    assert_true(lk_test_all_bytes(buf + size, CANARY, FILL));
    free(buf);

    /* into a larger buffer: the same token, and after its NUL no trace of
     * the raw signature staged in the tail (not in the header; the builder
     * clears its staging area, and this pins that) */
    const size_t big = size + 700;
    buf = fresh_buf(big);
    ts_reset(&t);
    t.rsa_bytes = sig_bytes;
    assert_int_equal(build(alg, c, n, &se, buf, big, &len), LK_OK);
    assert_int_equal(len, size - 1);
    assert_memory_equal(buf, want, size);
    for (size_t i = size; i < big; i++)
        if (buf[i] != 0 && (uint8_t)buf[i] != FILL)
            fail_msg("byte %zu after the token (of %zu) is 0x%02x: staging residue",
                     i, big, (uint8_t)buf[i]);
    assert_true(lk_test_all_bytes(buf + big, CANARY, FILL));
    free(buf);
    free(want);
    free(json);
}

/* Decode the payload segment of a token (with the reference decoder). */
static uint8_t *payload_of(const char *tok, size_t *len)
{
    const char *a = strchr(tok, '.');
    assert_non_null(a);
    const char *b = strchr(a + 1, '.');
    assert_non_null(b);
    uint8_t *p = lk_test_b64url_ref_decode(a + 1, (size_t)(b - a - 1), len);
    assert_non_null(p);
    return p;
}

/* Build a token with one string claim "aud" and return its payload. */
static lk_err build_aud(const char *v, size_t vlen, char **payload, size_t *plen)
{
    tsigner t;
    ts_reset(&t);
    lk_se se = { &ts_ops, &t };
    size_t size = 64 + LK_JWT_TOKEN_SIZE(16 + 6 * vlen, 64);
    char *buf = fresh_buf(size);
    claim c[] = { { "aud", 0, 0, v, vlen } };
    size_t len = 0;
    lk_err err = build(LK_ALG_ES256, c, 1, &se, buf, size, &len);
    if (err == LK_OK) {
        *payload = (char *)payload_of(buf, plen);
    } else {
        check_wiped(buf, size, len, "string claim");
        *payload = NULL;
    }
    free(buf);
    return err;
}

/* ---- exact tokens -------------------------------------------------------- */

static void test_reference_itself(void **state)
{
    (void)state;
    /* the reference against literals computed with python3 */
    size_t len;
    char *json = ref_claims_json(fixed_claims, N_FIXED, &len);
    assert_string_equal(json, fixed_json);
    free(json);
    char *h = lk_test_b64url_ref_encode((const uint8_t *)hdr_es256, strlen(hdr_es256));
    assert_string_equal(h, "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9");
    assert_int_equal(strlen(h), 36);
    free(h);
    h = lk_test_b64url_ref_encode((const uint8_t *)hdr_rs256, strlen(hdr_rs256));
    assert_string_equal(h, "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9");
    free(h);
    char *tok = ref_token(LK_ALG_ES256, fixed_json, strlen(fixed_json), 64);
    assert_string_equal(tok,
        "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiYXVkIjoibXktcHJvamVjdCIsInN1YiI6"
        "ImRldmljZS0wMDEiLCJuIjotNDJ9."
        "vZjBDjQwhrIFHovj0BJfkdNU0czJwzHKayLvZTbyNrS8mcAPNTGHswQfiuLRE16Q0lXQzcjCMMtqI-5kN_M3tQ");
    free(tok);
}

static void test_exact_token_es256(void **state)
{
    (void)state;
    check_token(LK_ALG_ES256, fixed_claims, N_FIXED, 64);
    /* no claims at all: {} */
    check_token(LK_ALG_ES256, NULL, 0, 64);
    /* one claim of each kind */
    static const claim one_int[] = { CI("iat", 1) };
    static const claim one_str[] = { CS("aud", "") };
    check_token(LK_ALG_ES256, one_int, 1, 64);
    check_token(LK_ALG_ES256, one_str, 1, 64);
}

static void test_exact_token_rs256(void **state)
{
    (void)state;
    check_token(LK_ALG_RS256, fixed_claims, N_FIXED, 256);
    check_token(LK_ALG_RS256, fixed_claims, N_FIXED, 384);
    check_token(LK_ALG_RS256, fixed_claims, N_FIXED, 512);
}

/* Payload lengths 0..2 mod 3 and the claim JSON of every length from 2 to
 * 100: the base64 of the claims is produced as it goes (with a carry). */
static void test_exact_token_all_lengths(void **state)
{
    (void)state;
    char val[128];
    memset(val, 'x', sizeof val);
    for (size_t n = 0; n < 90; n++) {
        claim c[] = { { "a", 0, 0, val, n } };
        check_token(LK_ALG_ES256, c, 1, 64);
        claim c2[] = { CI("i", (int64_t)n), { "b", 0, 0, val, n }, CI("z", -1) };
        check_token(LK_ALG_ES256, c2, 3, 64);
    }
}

/* ---- JSON escaping and UTF-8 --------------------------------------------- */

static void check_string_claim(const char *v, size_t vlen)
{
    char *payload;
    size_t plen;
    lk_err err = build_aud(v, vlen, &payload, &plen);
    if (err != LK_OK)
        fail_msg("string claim of %zu bytes rejected: %d", vlen, err);
    /* the exact text */
    char *want = malloc(16 + 6 * vlen);
    size_t wl = (size_t)sprintf(want, "{\"aud\":\"");
    wl += ref_escape(v, vlen, want + wl);
    wl += (size_t)sprintf(want + wl, "\"}");
    if (plen != wl || memcmp(payload, want, wl) != 0)
        fail_msg("payload %.*s, expected %.*s", (int)plen, payload, (int)wl, want);
    /* no raw control character anywhere */
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)payload[i] < 0x20)
            fail_msg("raw control character 0x%02x in the payload", payload[i]);
    /* and a strict JSON parser reads back the original bytes */
    json_error_t jerr;
    json_t *root = json_loadb(payload, plen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (root == NULL)
        fail_msg("jansson rejects the payload: %s", jerr.text);
    json_t *aud = json_object_get(root, "aud");
    assert_non_null(aud);
    assert_true(json_is_string(aud));
    assert_int_equal(json_string_length(aud), vlen);
    assert_memory_equal(json_string_value(aud), v, vlen);
    assert_int_equal(json_object_size(root), 1);
    json_decref(root);
    free(want);
    free(payload);
}

static void test_json_escaping(void **state)
{
    (void)state;
    static const char nasty[] = "q\"b\\s\nn\tt\x01" "1\x1f" "f\x7f" "d\0z"
                                "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf";
    check_string_claim(nasty, sizeof nasty - 1);

    /* the exact text, spelled out */
    char *payload;
    size_t plen;
    assert_int_equal(build_aud(nasty, sizeof nasty - 1, &payload, &plen), LK_OK);
    static const char want[] =
        "{\"aud\":\"q\\\"b\\\\s\\u000an\\u0009t\\u00011\\u001ff\x7f" "d\\u0000z"
        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xed\x9f\xbf\xf4\x8f\xbf\xbf\"}";
    if (plen != sizeof want - 1 || memcmp(payload, want, plen) != 0)
        fail_msg("payload %.*s", (int)plen, payload);
    free(payload);

    /* a claim value that tries to inject another claim stays one string */
    static const char inject[] = "x\",\"aud\":\"evil";
    check_string_claim(inject, sizeof inject - 1);

    /* every control character alone, and every ASCII character */
    for (int c = 0; c < 128; c++) {
        char v[3] = { 'a', (char)c, 'b' };
        check_string_claim(v, 3);
        check_string_claim(v + 1, 1);
    }
    /* empty */
    check_string_claim("", 0);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n; } ok[] = {
        { "\xc2\x80", 2 },                 /* U+0080 */
        { "\xc2\xa0", 2 },
        { "\xdf\xbf", 2 },                 /* U+07FF */
        { "\xe0\xa0\x80", 3 },             /* U+0800 */
        { "\xed\x9f\xbf", 3 },             /* U+D7FF */
        { "\xee\x80\x80", 3 },             /* U+E000 */
        { "\xef\xbf\xbd", 3 },             /* U+FFFD */
        { "\xef\xbf\xbf", 3 },             /* U+FFFF */
        { "\xf0\x90\x80\x80", 4 },         /* U+10000 */
        { "\xf4\x8f\xbf\xbf", 4 },         /* U+10FFFF */
        { "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x94\x91", 17 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *payload;
        size_t plen;
        lk_err err = build_aud(ok[i].s, ok[i].n, &payload, &plen);
        if (err != LK_OK)
            fail_msg("valid UTF-8 case %zu rejected: %d", i, err);
        /* jansson agrees on the bytes */
        json_error_t jerr;
        json_t *root = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(root);
        json_t *aud = json_object_get(root, "aud");
        assert_int_equal(json_string_length(aud), ok[i].n);
        assert_memory_equal(json_string_value(aud), ok[i].s, ok[i].n);
        json_decref(root);
        free(payload);
    }
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n; const char *why; } bad[] = {
        { "\x80", 1, "lone continuation 80" },
        { "a\xbf" "b", 3, "lone continuation bf" },
        { "\xc3\xa9\x80", 3, "extra continuation" },
        { "\xc0\x80", 2, "overlong NUL" },
        { "\xc0\xaf", 2, "overlong /" },
        { "\xc1\xbf", 2, "overlong 7f" },
        { "\xe0\x80\x80", 3, "overlong 3-byte" },
        { "\xe0\x9f\xbf", 3, "overlong U+07FF" },
        { "\xf0\x80\x80\x80", 4, "overlong 4-byte" },
        { "\xf0\x8f\xbf\xbf", 4, "overlong U+FFFF" },
        { "\xed\xa0\x80", 3, "surrogate D800" },
        { "\xed\xbf\xbf", 3, "surrogate DFFF" },
        { "\xed\xa0\xbd\xed\xb8\x80", 6, "surrogate pair (CESU-8)" },
        { "\xf4\x90\x80\x80", 4, "U+110000" },
        { "\xf5\x80\x80\x80", 4, "f5" },
        { "\xf7\xbf\xbf\xbf", 4, "f7" },
        { "\xf8\x88\x80\x80\x80", 5, "5-byte form" },
        { "\xfc\x84\x80\x80\x80\x80", 6, "6-byte form" },
        { "\xfe", 1, "fe" },
        { "\xff", 1, "ff" },
        { "\xc3", 1, "truncated 2-byte at end" },
        { "\xe2\x82", 2, "truncated 3-byte at end" },
        { "\xf0\x9f\x98", 3, "truncated 4-byte at end" },
        { "\xe2\x82" "A", 3, "truncated 3-byte before ASCII" },
        { "\xc3" "A", 2, "truncated 2-byte before ASCII" },
        { "\xf0\x9f\x98\xc3\xa9", 5, "truncated 4-byte before a 2-byte" },
        { "\xc3\0", 2, "truncated before NUL" },
        { "ok\xe2\x82\xac\xe2\x82", 7, "truncated after a valid one" },
        /* truncated by value_len although the bytes after it would complete
         * the sequence: the builder must not read past value_len */
        { "\xc3\xa9", 1, "2-byte cut by value_len" },
        { "\xe2\x82\xac", 2, "3-byte cut by value_len" },
        { "\xf0\x9f\x98\x80", 3, "4-byte cut by value_len" },
        { "ab\xf0\x9f\x98\x80", 4, "4-byte cut by value_len after ASCII" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *payload = NULL;
        size_t plen;
        lk_err err = build_aud(bad[i].s, bad[i].n, &payload, &plen);
        if (err != LK_ERR_ENCODING)
            fail_msg("invalid UTF-8 (%s) gave %d, expected LK_ERR_ENCODING", bad[i].why, err);
        free(payload);
    }
}

/* ---- numbers ------------------------------------------------------------ */

static void test_numeric_claims(void **state)
{
    (void)state;
    static const int64_t vals[] = {
        0, 1, -1, 9, 10, -10, 99, 100, 1700000000, INT64_MAX, INT64_MIN, INT64_MIN + 1,
        INT64_MAX - 1, 2147483647LL, 2147483648LL, -2147483648LL, -2147483649LL,
        4294967295LL, 4294967296LL, 4294967297LL, 9007199254740993LL, 1000000000000000000LL,
        -1000000000000000000LL,
    };
    static const char *const texts[] = {
        "0", "1", "-1", "9", "10", "-10", "99", "100", "1700000000", "9223372036854775807",
        "-9223372036854775808", "-9223372036854775807", "9223372036854775806", "2147483647",
        "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296", "4294967297",
        "9007199254740993", "1000000000000000000", "-1000000000000000000",
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        claim c[] = { CI("n", vals[i]) };
        check_token(LK_ALG_ES256, c, 1, 64);
        /* the literal text, not just the reference's */
        size_t jl;
        char *json = ref_claims_json(c, 1, &jl);
        char want[64];
        snprintf(want, sizeof want, "{\"n\":%s}", texts[i]);
        assert_string_equal(json, want);
        free(json);
    }
    /* all of them in one token, read back by jansson as the same integers */
    claim all[8];
    const char *names[8] = { "a", "b", "c", "d", "e", "f", "g", "h" };
    static const int64_t pick[8] = { 0, -1, INT64_MAX, INT64_MIN, 2147483648LL, 4294967297LL,
                                     1, -9 };
    for (int i = 0; i < 8; i++) {
        all[i].name = names[i];
        all[i].is_int = 1;
        all[i].i = pick[i];
        all[i].s = NULL;
        all[i].slen = 0;
    }
    check_token(LK_ALG_ES256, all, 8, 64);
    size_t jl;
    char *json = ref_claims_json(all, 8, &jl);
    char *tok = ref_token(LK_ALG_ES256, json, jl, 64);
    size_t plen;
    uint8_t *payload = payload_of(tok, &plen);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)payload, plen, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(root);
    for (int i = 0; i < 8; i++) {
        json_t *v = json_object_get(root, names[i]);
        assert_true(json_is_integer(v));
        assert_true(json_integer_value(v) == pick[i]);
    }
    json_decref(root);
    free(payload);
    free(tok);
    free(json);
}

/* ---- claim names, duplicates, limits ------------------------------------ */

static lk_err add_one(const char *name, int as_int)
{
    tsigner t;
    ts_reset(&t);
    lk_se se = { &ts_ops, &t };
    char buf[512];
    memset(buf, FILL, sizeof buf);
    lk_jwt jwt;
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, sizeof buf);
    if (as_int)
        lk_jwt_add_claim_int(&jwt, name, 5);
    else
        lk_jwt_add_claim_string(&jwt, name, "v", 1);
    size_t len = 12345;
    lk_err err = lk_jwt_finalize(&jwt, &se, KEY, &len);
    if (err != LK_OK) {
        assert_int_equal(len, 0);
        assert_true(lk_test_all_bytes(buf, sizeof buf, 0));
        assert_int_equal(t.calls, 0);
    }
    return err;
}

static void test_claim_names(void **state)
{
    (void)state;
    static const char *good[] = {
        "a", "Z", "0", "_", "iat", "a_b", "AZaz09_", "sixteen_chars_16", "x1234567890123_y",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(strlen(good[i]) <= LK_JWT_CLAIM_NAME_MAX, 1);
        if (add_one(good[i], 1) != LK_OK || add_one(good[i], 0) != LK_OK)
            fail_msg("claim name \"%s\" rejected", good[i]);
        claim c[] = { { good[i], 1, 7, NULL, 0 } };
        check_token(LK_ALG_ES256, c, 1, 64);
    }
    static const char *bad[] = {
        "", "seventeen_chars17", "a_much_longer_name_than_sixteen_characters",
        "a\"b", "\"", "a b", " a", "a ", "a-b", "a.b", "a/b", "a\\b", "a:b", "a\tb", "a\nb",
        "\x7f", "caf\xc3\xa9", "\xc3\xa9", "\xff", "a\x01", "{", "}", ",", "$", "a=b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lk_err e1 = add_one(bad[i], 1), e2 = add_one(bad[i], 0);
        if (e1 != LK_ERR_CLAIM_NAME || e2 != LK_ERR_CLAIM_NAME)
            fail_msg("claim name case %zu (\"%s\"): %d / %d, expected LK_ERR_CLAIM_NAME",
                     i, bad[i], e1, e2);
    }
    /* NULL name: a NULL pointer is LK_ERR_ARG */
    assert_int_equal(add_one(NULL, 1), LK_ERR_ARG);
    assert_int_equal(add_one(NULL, 0), LK_ERR_ARG);
}

static void test_null_string_value(void **state)
{
    (void)state;
    tsigner t;
    ts_reset(&t);
    lk_se se = { &ts_ops, &t };
    char *buf = fresh_buf(512);
    lk_jwt jwt;
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, 512);
    lk_jwt_add_claim_string(&jwt, "aud", NULL, 3);
    size_t len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_ARG);
    check_wiped(buf, 512, len, "NULL value");
    free(buf);
}

static lk_err build_names(const char *const *names, size_t n, char *buf, size_t size,
                          size_t *len, tsigner *t)
{
    ts_reset(t);
    lk_se se = { &ts_ops, t };
    lk_jwt jwt;
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    for (size_t i = 0; i < n; i++) {
        if (i % 2)
            lk_jwt_add_claim_int(&jwt, names[i], (int64_t)i);
        else
            lk_jwt_add_claim_string(&jwt, names[i], "v", 1);
    }
    return lk_jwt_finalize(&jwt, &se, KEY, len);
}

static void test_duplicates(void **state)
{
    (void)state;
    char buf[1024];
    size_t len;
    tsigner t;
    static const struct { const char *names[6]; size_t n; lk_err want; } v[] = {
        { { "iat", "iat" }, 2, LK_ERR_CLAIM_DUP },
        { { "aud", "exp", "aud" }, 3, LK_ERR_CLAIM_DUP },
        { { "a", "b", "c", "d", "e", "a" }, 6, LK_ERR_CLAIM_DUP },
        /* prefixes and extensions of a name are different names */
        { { "a", "ab", "abc", "b", "ba" }, 5, LK_OK },
        { { "abc", "ab", "a", "bc", "c" }, 5, LK_OK },
        { { "ab", "a", "b", "aab", "abb" }, 5, LK_OK },
        { { "ab", "a", "b", "aab", "abb", "b" }, 6, LK_ERR_CLAIM_DUP },
        { { "abc", "ab", "ab" }, 3, LK_ERR_CLAIM_DUP },
        /* case matters */
        { { "aud", "Aud", "AUD", "auD" }, 4, LK_OK },
        { { "sixteen_chars_16", "sixteen_chars_1", "sixteen_chars_16" }, 3, LK_ERR_CLAIM_DUP },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        memset(buf, FILL, sizeof buf);
        len = 12345;
        lk_err err = build_names(v[i].names, v[i].n, buf, sizeof buf, &len, &t);
        if (err != v[i].want)
            fail_msg("duplicate case %zu: %d, expected %d", i, err, v[i].want);
        if (err != LK_OK) {
            assert_int_equal(len, 0);
            assert_true(lk_test_all_bytes(buf, sizeof buf, 0));
            assert_int_equal(t.calls, 0);
        }
    }
}

static void test_too_many_claims(void **state)
{
    (void)state;
    static const char *names[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j" };
    assert_int_equal(LK_JWT_MAX_CLAIMS, 8);
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    size_t len;
    tsigner t;
    assert_int_equal(build_names(names, LK_JWT_MAX_CLAIMS, buf, size, &len, &t), LK_OK);
    /* all 8 are in the token */
    size_t plen;
    uint8_t *payload = payload_of(buf, &plen);
    assert_int_equal(plen, strlen("{\"a\":\"v\",\"b\":1,\"c\":\"v\",\"d\":3,\"e\":\"v\",\"f\":5,"
                                  "\"g\":\"v\",\"h\":7}"));
    assert_memory_equal(payload, "{\"a\":\"v\",\"b\":1,\"c\":\"v\",\"d\":3,\"e\":\"v\",\"f\":5,"
                                 "\"g\":\"v\",\"h\":7}", plen);
    free(payload);

    for (size_t n = LK_JWT_MAX_CLAIMS + 1; n <= 10; n++) {
        memset(buf, FILL, size + CANARY);
        len = 12345;
        assert_int_equal(build_names(names, n, buf, size, &len, &t), LK_ERR_TOO_MANY);
        check_wiped(buf, size, len, "too many claims");
        assert_int_equal(t.calls, 0);
    }
    free(buf);
}

/* Long names may fill the names table (LK_JWT_NAMES_BYTES) before eight
 * claims: then LK_ERR_TOO_MANY, and never a write outside the context. */
static void test_long_names(void **state)
{
    (void)state;
    static const char *names[] = {
        "name_number_00_a", "name_number_01_b", "name_number_02_c", "name_number_03_d",
        "name_number_04_e", "name_number_05_f", "name_number_06_g", "name_number_07_h",
    };
    struct { lk_jwt jwt; uint8_t canary[64]; } guarded;
    char buf[1024 + CANARY];
    const size_t size = 1024;
    for (size_t n = 1; n <= 8; n++) {
        tsigner t;
        ts_reset(&t);
        lk_se se = { &ts_ops, &t };
        memset(&guarded, FILL, sizeof guarded);
        memset(buf, FILL, sizeof buf);
        lk_jwt_init(&guarded.jwt, LK_ALG_ES256, buf, size);
        for (size_t i = 0; i < n; i++)
            lk_jwt_add_claim_int(&guarded.jwt, names[i], (int64_t)i);
        assert_true(lk_test_all_bytes(guarded.canary, sizeof guarded.canary, FILL));
        size_t len = 12345;
        lk_err err = lk_jwt_finalize(&guarded.jwt, &se, KEY, &len);
        if (err != LK_OK && err != LK_ERR_TOO_MANY)
            fail_msg("%zu claims with 16-character names: %d", n, err);
        /* a names table of MAX_CLAIMS * (NAME_MAX + 1) holds them all */
        if (LK_JWT_NAMES_BYTES >= LK_JWT_MAX_CLAIMS * (LK_JWT_CLAIM_NAME_MAX + 1u) &&
            err != LK_OK)
            fail_msg("%zu claims with 16-character names: %d", n, err);
        if (err == LK_OK) {
            /* whatever fits is exact */
            claim c[8];
            for (size_t i = 0; i < n; i++) {
                c[i].name = names[i];
                c[i].is_int = 1;
                c[i].i = (int64_t)i;
                c[i].s = NULL;
                c[i].slen = 0;
            }
            size_t jl;
            char *json = ref_claims_json(c, n, &jl);
            char *want = ref_token(LK_ALG_ES256, json, jl, 64);
            assert_string_equal(buf, want);
            free(json);
            free(want);
        } else {
            check_wiped(buf, size, len, "names table full");
            assert_true(n >= LK_JWT_NAMES_BYTES / (LK_JWT_CLAIM_NAME_MAX + 1));
        }
        assert_true(lk_test_all_bytes(guarded.canary, sizeof guarded.canary, FILL));
    }
}

/* ---- latched errors ---------------------------------------------------- */

static void test_first_error_latches(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    size_t len;
    tsigner t;
    lk_se se = { &ts_ops, &t };
    lk_jwt jwt;

    /* bad name, then valid claims, a duplicate, invalid UTF-8, too many */
    ts_reset(&t);
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    lk_jwt_add_claim_int(&jwt, "iat", 1);
    lk_jwt_add_claim_int(&jwt, "bad name", 2);
    lk_jwt_add_claim_int(&jwt, "exp", 3);
    lk_jwt_add_claim_int(&jwt, "iat", 4);
    lk_jwt_add_claim_string(&jwt, "aud", "\xff", 1);
    for (int i = 0; i < 10; i++)
        lk_jwt_add_claim_int(&jwt, "x", i);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_CLAIM_NAME);
    check_wiped(buf, size, len, "latched CLAIM_NAME");
    assert_int_equal(t.calls, 0);

    /* duplicate first */
    ts_reset(&t);
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    lk_jwt_add_claim_int(&jwt, "iat", 1);
    lk_jwt_add_claim_int(&jwt, "iat", 1);
    lk_jwt_add_claim_int(&jwt, "", 2);
    lk_jwt_add_claim_string(&jwt, "aud", "\xc0\x80", 2);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_CLAIM_DUP);
    check_wiped(buf, size, len, "latched CLAIM_DUP");

    /* invalid UTF-8 first */
    ts_reset(&t);
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    lk_jwt_add_claim_string(&jwt, "aud", "ok\xed\xa0\x80", 5);
    lk_jwt_add_claim_string(&jwt, "aud", "dup", 3);
    lk_jwt_add_claim_int(&jwt, "b-d", 2);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_ENCODING);
    check_wiped(buf, size, len, "latched ENCODING");

    /* buffer too small first (at init), then a bad name */
    ts_reset(&t);
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, 20);
    lk_jwt_add_claim_int(&jwt, "bad name", 2);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_BUFFER);
    check_wiped(buf, 20, len, "latched BUFFER");
    assert_true(lk_test_all_bytes(buf + 20, size + CANARY - 20, FILL));

    /* a bad name first, then a claim that overflows the buffer */
    ts_reset(&t);
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, 200);
    lk_jwt_add_claim_int(&jwt, "a.b", 2);
    lk_jwt_add_claim_string(&jwt, "aud", "0123456789012345678901234567890123456789"
                                         "0123456789012345678901234567890123456789"
                                         "0123456789012345678901234567890123456789"
                                         "0123456789012345678901234567890123456789", 160);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_CLAIM_NAME);
    check_wiped(buf, 200, len, "latched CLAIM_NAME before BUFFER");

    /* finalize returns the latched error even when its own arguments are
     * also wrong */
    ts_reset(&t);
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    lk_jwt_add_claim_int(&jwt, "iat", 1);
    lk_jwt_add_claim_int(&jwt, "iat", 2);
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, NULL), LK_ERR_CLAIM_DUP);
    check_wiped(buf, size, 0, "latched error, NULL token_len");
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    lk_jwt_add_claim_int(&jwt, "a b", 1);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, NULL, NULL, &len), LK_ERR_CLAIM_NAME);
    check_wiped(buf, size, len, "latched error, NULL se");
    free(buf);
}

/* ---- every buffer size -------------------------------------------------- */

static void check_all_sizes(lk_alg alg, const claim *c, size_t n, size_t sig_bytes)
{
    size_t json_len;
    char *json = ref_claims_json(c, n, &json_len);
    char *want = ref_token(alg, json, json_len, sig_bytes);
    size_t need = strlen(want) + 1;
    assert_int_equal(need, LK_JWT_TOKEN_SIZE(json_len, sig_bytes));
    tsigner t;
    lk_se se = { &ts_ops, &t };
    for (size_t size = 0; size <= need; size++) {
        ts_reset(&t);
        t.rsa_bytes = sig_bytes;
        char *buf = fresh_buf(size);
        size_t len = 12345;
        lk_err err = build(alg, c, n, &se, size ? buf : buf, size, &len);
        if (size < need) {
            if (err != LK_ERR_BUFFER && !(size == 0 && err == LK_ERR_ARG))
                fail_msg("%s token of %zu bytes into %zu: %d, expected LK_ERR_BUFFER",
                         alg == LK_ALG_ES256 ? "ES256" : "RS256", need, size, err);
            char what[64];
            snprintf(what, sizeof what, "buffer of %zu (need %zu)", size, need);
            check_wiped(buf, size, len, what);
        } else {
            if (err != LK_OK)
                fail_msg("exactly %zu bytes: %d", need, err);
            assert_int_equal(len, need - 1);
            assert_memory_equal(buf, want, need);
            assert_true(lk_test_all_bytes(buf + size, CANARY, FILL));
        }
        free(buf);
    }
    free(want);
    free(json);
}

static void test_every_buffer_size_es256(void **state)
{
    (void)state;
    check_all_sizes(LK_ALG_ES256, fixed_claims, N_FIXED, 64);
    check_all_sizes(LK_ALG_ES256, NULL, 0, 64);
    /* escapes expand: the boundary falls inside them */
    static const claim esc[] = { CS("aud", "\"\\\n\x01\x1f\x7f\xc3\xa9\xf0\x9f\x98\x80"),
                                 CI("n", INT64_MIN) };
    check_all_sizes(LK_ALG_ES256, esc, 2, 64);
}

static void test_every_buffer_size_rs256(void **state)
{
    (void)state;
    check_all_sizes(LK_ALG_RS256, fixed_claims, N_FIXED, 256);
    check_all_sizes(LK_ALG_RS256, fixed_claims, 2, 512);
}

/* ---- signer failures and lies -------------------------------------------- */

static lk_err build_with(tsigner *t, lk_alg alg, const lk_se *se, char *buf, size_t size,
                         size_t *len)
{
    (void)t;
    memset(buf, FILL, size + CANARY);
    *len = 12345;
    return build(alg, fixed_claims, N_FIXED, se, buf, size, len);
}

static void test_signer_errors(void **state)
{
    (void)state;
    static const lk_err errs[] = { LK_ERR_DEVICE, LK_ERR_KEY_NOT_FOUND, LK_ERR_KEY_LOCKED,
                                   LK_ERR_KEY_TYPE, LK_ERR_SIGN, LK_ERR_NOMEM, LK_ERR_BUFFER };
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    tsigner t;
    lk_se se = { &ts_ops, &t };
    size_t len;
    for (int a = 0; a < 2; a++) {
        lk_alg alg = a ? LK_ALG_RS256 : LK_ALG_ES256;
        for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
            ts_reset(&t);
            t.ret = errs[i];
            lk_err err = build_with(&t, alg, &se, buf, size, &len);
            if (err != errs[i])
                fail_msg("signer returned %d, finalize %d", errs[i], err);
            assert_int_equal(t.calls, 1);
            check_wiped(buf, size, len, "signer error");
        }
    }
    free(buf);
}

static void test_signer_lies(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    tsigner t;
    lk_se se = { &ts_ops, &t };
    size_t len;
    static const long es_lens[] = { 0, 1, 32, 63, 65, 96, 128, 256 };
    for (size_t i = 0; i < sizeof es_lens / sizeof es_lens[0]; i++) {
        ts_reset(&t);
        t.force_len = es_lens[i];
        lk_err err = build_with(&t, LK_ALG_ES256, &se, buf, size, &len);
        if (err != LK_ERR_SIGN)
            fail_msg("ES256 signer reporting %ld bytes: %d, expected LK_ERR_SIGN", es_lens[i], err);
        check_wiped(buf, size, len, "ES256 wrong length");
    }
    for (int z = 1; z <= 3; z++) {
        ts_reset(&t);
        t.zero_r = z & 1;
        t.zero_s = z & 2;
        lk_err err = build_with(&t, LK_ALG_ES256, &se, buf, size, &len);
        if (err != LK_ERR_SIGN)
            fail_msg("ES256 signer with%s%s: %d, expected LK_ERR_SIGN",
                     t.zero_r ? " r=0" : "", t.zero_s ? " s=0" : "", err);
        check_wiped(buf, size, len, "ES256 zero r/s");
    }
    static const long rs_lens[] = { 0, 1, 64, 128, 255 };
    for (size_t i = 0; i < sizeof rs_lens / sizeof rs_lens[0]; i++) {
        ts_reset(&t);
        t.force_len = rs_lens[i];
        lk_err err = build_with(&t, LK_ALG_RS256, &se, buf, size, &len);
        if (err != LK_ERR_SIGN)
            fail_msg("RS256 signer reporting %ld bytes: %d, expected LK_ERR_SIGN", rs_lens[i], err);
        check_wiped(buf, size, len, "RS256 short");
    }
    /* a signer claiming more bytes than the room it was given */
    for (int a = 0; a < 2; a++) {
        ts_reset(&t);
        t.force_len = 100000;
        lk_err err = build_with(&t, a ? LK_ALG_RS256 : LK_ALG_ES256, &se, buf, size, &len);
        if (err == LK_OK)
            fail_msg("a signer claiming 100000 bytes got a token");
        check_wiped(buf, size, len, "over-long signature");
    }
    free(buf);
}

static void test_bad_se(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    size_t len;
    tsigner t;
    ts_reset(&t);
    lk_se no_ops = { NULL, &t };
    static const lk_se_ops no_sign_ops = { .name = "nosign",
                                           .public_key = ts_public_key };
    lk_se no_sign = { &no_sign_ops, &t };
    lk_se good = { &ts_ops, &t };

    assert_int_equal(build_with(&t, LK_ALG_ES256, NULL, buf, size, &len), LK_ERR_ARG);
    check_wiped(buf, size, len, "NULL se");
    assert_int_equal(build_with(&t, LK_ALG_ES256, &no_ops, buf, size, &len), LK_ERR_ARG);
    check_wiped(buf, size, len, "NULL ops");
    lk_err err = build_with(&t, LK_ALG_ES256, &no_sign, buf, size, &len);
    assert_int_not_equal(err, LK_OK);
    check_wiped(buf, size, len, "no sign_digest");
    assert_int_equal(t.calls, 0);

    /* key references: NULL, empty, too long */
    lk_jwt jwt;
    char *long_key = malloc(LK_KEY_REF_MAX + 2);
    memset(long_key, 'k', LK_KEY_REF_MAX + 1);
    long_key[LK_KEY_REF_MAX + 1] = '\0';
    const char *keys[] = { NULL, "", long_key };
    for (int k = 0; k < 3; k++) {
        memset(buf, FILL, size + CANARY);
        lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
        add_claims(&jwt, fixed_claims, N_FIXED);
        len = 12345;
        assert_int_equal(lk_jwt_finalize(&jwt, &good, keys[k], &len), LK_ERR_ARG);
        check_wiped(buf, size, len, "bad key reference");
    }
    assert_int_equal(t.calls, 0);
    free(long_key);

    /* NULL token_len: an error, and no token left behind */
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    add_claims(&jwt, fixed_claims, N_FIXED);
    assert_int_equal(lk_jwt_finalize(&jwt, &good, KEY, NULL), LK_ERR_ARG);
    check_wiped(buf, size, 0, "NULL token_len");
    /* NULL context */
    len = 12345;
    assert_int_equal(lk_jwt_finalize(NULL, &good, KEY, &len), LK_ERR_ARG);
    assert_int_equal(len, 0);
    free(buf);
}

static void test_bad_init(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    tsigner t;
    ts_reset(&t);
    lk_se se = { &ts_ops, &t };
    lk_jwt jwt;
    size_t len;
    static const lk_alg algs[] = { LK_ALG_NONE, (lk_alg)3, (lk_alg)-1 };
    for (size_t i = 0; i < 3; i++) {
        memset(buf, FILL, size + CANARY);
        lk_jwt_init(&jwt, algs[i], buf, size);
        add_claims(&jwt, fixed_claims, N_FIXED);
        len = 12345;
        lk_err err = lk_jwt_finalize(&jwt, &se, KEY, &len);
        if (err != LK_ERR_ARG && err != LK_ERR_UNSUPPORTED)
            fail_msg("init with alg %d: finalize %d", (int)algs[i], err);
        check_wiped(buf, size, len, "bad alg");
    }
    assert_int_equal(t.calls, 0);
    /* NULL buffer */
    lk_jwt_init(&jwt, LK_ALG_ES256, NULL, 100);
    add_claims(&jwt, fixed_claims, N_FIXED);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_ARG);
    assert_int_equal(len, 0);
    /* NULL context: the void functions must simply return */
    lk_jwt_init(NULL, LK_ALG_ES256, buf, size);
    lk_jwt_add_claim_int(NULL, "iat", 1);
    lk_jwt_add_claim_string(NULL, "aud", "x", 1);
    free(buf);
}

static void test_finalize_twice(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    tsigner t;
    ts_reset(&t);
    lk_se se = { &ts_ops, &t };
    lk_jwt jwt;
    size_t len;

    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    add_claims(&jwt, fixed_claims, N_FIXED);
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_OK);
    assert_true(len > 0);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_STATE);
    assert_int_equal(len, 0);
    assert_int_equal(t.calls, 1);

    /* adding after finalize is out of order too */
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    add_claims(&jwt, fixed_claims, N_FIXED);
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_OK);
    lk_jwt_add_claim_int(&jwt, "late", 1);
    len = 12345;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_STATE);
    assert_int_equal(len, 0);

    /* a failed finalize cannot be retried into a token either */
    memset(buf, FILL, size + CANARY);
    lk_jwt_init(&jwt, LK_ALG_ES256, buf, size);
    add_claims(&jwt, fixed_claims, N_FIXED);
    t.ret = LK_ERR_DEVICE;
    assert_int_equal(lk_jwt_finalize(&jwt, &se, KEY, &len), LK_ERR_DEVICE);
    t.ret = LK_OK;
    len = 12345;
    lk_err err = lk_jwt_finalize(&jwt, &se, KEY, &len);
    assert_int_not_equal(err, LK_OK);
    check_wiped(buf, size, len, "finalize after a failed finalize");
    free(buf);
}

/* ---- lk_jwt_iotcore ---------------------------------------------------- */

static lk_err iot(lk_alg alg, const char *aud, size_t aud_len, int64_t iat, int64_t exp,
                  char *buf, size_t size, size_t *len, tsigner *t)
{
    ts_reset(t);
    lk_se se = { &ts_ops, t };
    memset(buf, FILL, size + CANARY);
    *len = 12345;
    return lk_jwt_iotcore(&se, KEY, alg, aud, aud_len, iat, exp, buf, size, len);
}

static void test_iotcore_exact(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    tsigner t;
    size_t len;
    static const struct { int64_t iat, exp; const char *aud; } v[] = {
        { 1700000000, 1700003600, "my-project" },
        { 0, 1, "p" },
        { 1700000000, 1700000000 + 86400, "proj-\"quoted\"" },
        { INT64_MAX - 86400, INT64_MAX, "x" },
        { 4294967297LL, 4294967298LL, "past-2106" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        for (int a = 0; a < 2; a++) {
            lk_alg alg = a ? LK_ALG_RS256 : LK_ALG_ES256;
            size_t sig_bytes = a ? 256 : 64;
            lk_err err = iot(alg, v[i].aud, strlen(v[i].aud), v[i].iat, v[i].exp, buf, size,
                             &len, &t);
            if (err != LK_OK)
                fail_msg("iotcore case %zu: %d", i, err);
            claim c[] = { CI("iat", v[i].iat), CI("exp", v[i].exp),
                          { "aud", 0, 0, v[i].aud, strlen(v[i].aud) } };
            size_t jl;
            char *json = ref_claims_json(c, 3, &jl);
            char *want = ref_token(alg, json, jl, sig_bytes);
            assert_int_equal(len, strlen(want));
            assert_string_equal(buf, want);
            assert_string_equal(t.key, KEY);
            /* and exactly that size suffices, one less does not */
            size_t need = LK_JWT_TOKEN_SIZE(jl, sig_bytes);
            assert_int_equal(need, strlen(want) + 1);
            char *exact = fresh_buf(need);
            assert_int_equal(iot(alg, v[i].aud, strlen(v[i].aud), v[i].iat, v[i].exp, exact,
                                 need, &len, &t), LK_OK);
            assert_string_equal(exact, want);
            assert_int_equal(iot(alg, v[i].aud, strlen(v[i].aud), v[i].iat, v[i].exp, exact,
                                 need - 1, &len, &t), LK_ERR_BUFFER);
            check_wiped(exact, need - 1, len, "iotcore one byte short");
            free(exact);
            free(json);
            free(want);
        }
    }
    /* the literal claim order */
    assert_int_equal(iot(LK_ALG_ES256, "my-project", 10, 1700000000, 1700003600, buf, size,
                         &len, &t), LK_OK);
    size_t plen;
    uint8_t *payload = payload_of(buf, &plen);
    static const char want_json[] = "{\"iat\":1700000000,\"exp\":1700003600,\"aud\":\"my-project\"}";
    assert_int_equal(plen, sizeof want_json - 1);
    assert_memory_equal(payload, want_json, plen);
    free(payload);
    free(buf);
}

static void test_iotcore_argument_checks(void **state)
{
    (void)state;
    const size_t size = 1024;
    char *buf = fresh_buf(size);
    tsigner t;
    size_t len;
    static const struct { int64_t iat, exp; const char *why; } bad[] = {
        { 1000, 1000, "exp == iat" },
        { 1000, 999, "exp < iat" },
        { 1000, 1000 + 86401, "lifetime 86401" },
        { 0, INT64_MAX, "lifetime INT64_MAX" },
        { -1, 100, "iat < 0" },
        { INT64_MIN, 0, "iat INT64_MIN" },
        { INT64_MIN, INT64_MAX, "iat INT64_MIN, exp INT64_MAX" },
        { -86400, 0, "iat < 0, lifetime 86400" },
        { 5, -5, "exp < 0" },
        { INT64_MAX, INT64_MIN, "exp - iat overflows" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lk_err err = iot(LK_ALG_ES256, "p", 1, bad[i].iat, bad[i].exp, buf, size, &len, &t);
        if (err != LK_ERR_ARG)
            fail_msg("iotcore(%s): %d, expected LK_ERR_ARG", bad[i].why, err);
        check_wiped(buf, size, len, bad[i].why);
        assert_int_equal(t.calls, 0);
    }
    /* the limits themselves are fine */
    assert_int_equal(iot(LK_ALG_ES256, "p", 1, 0, 86400, buf, size, &len, &t), LK_OK);
    assert_int_equal(iot(LK_ALG_ES256, "p", 1, 0, 1, buf, size, &len, &t), LK_OK);
    assert_int_equal(LK_JWT_MAX_LIFETIME, 86400);

    /* other arguments */
    assert_int_equal(iot(LK_ALG_ES256, NULL, 3, 0, 10, buf, size, &len, &t), LK_ERR_ARG);
    check_wiped(buf, size, len, "NULL aud");
    assert_int_equal(iot(LK_ALG_ES256, "\xc3\x28", 2, 0, 10, buf, size, &len, &t),
                     LK_ERR_ENCODING);
    check_wiped(buf, size, len, "invalid UTF-8 aud");
    lk_err err = iot(LK_ALG_NONE, "p", 1, 0, 10, buf, size, &len, &t);
    assert_true(err == LK_ERR_ARG || err == LK_ERR_UNSUPPORTED);
    check_wiped(buf, size, len, "alg none");
    t.ret = LK_ERR_KEY_LOCKED;
    lk_se se = { &ts_ops, &t };
    memset(buf, FILL, size + CANARY);
    len = 12345;
    assert_int_equal(lk_jwt_iotcore(&se, KEY, LK_ALG_ES256, "p", 1, 0, 10, buf, size, &len),
                     LK_ERR_KEY_LOCKED);
    check_wiped(buf, size, len, "iotcore signer error");
    len = 12345;
    assert_int_equal(lk_jwt_iotcore(NULL, KEY, LK_ALG_ES256, "p", 1, 0, 10, buf, size, &len),
                     LK_ERR_ARG);
    assert_int_equal(len, 0);
    assert_int_equal(lk_jwt_iotcore(&se, KEY, LK_ALG_ES256, "p", 1, 0, 10, NULL, size, &len),
                     LK_ERR_ARG);
    assert_int_equal(len, 0);
    memset(buf, FILL, size + CANARY);
    assert_int_equal(lk_jwt_iotcore(&se, KEY, LK_ALG_ES256, "p", 1, 0, 10, buf, size, NULL),
                     LK_ERR_ARG);
    free(buf);
}

static void test_iotcore_every_buffer_size(void **state)
{
    (void)state;
    tsigner t;
    for (int a = 0; a < 2; a++) {
        lk_alg alg = a ? LK_ALG_RS256 : LK_ALG_ES256;
        size_t sig_bytes = a ? 256 : 64;
        claim c[] = { CI("iat", 1700000000), CI("exp", 1700086400), CS("aud", "my-project") };
        size_t jl;
        char *json = ref_claims_json(c, 3, &jl);
        size_t need = LK_JWT_TOKEN_SIZE(jl, sig_bytes);
        for (size_t size = 0; size < need; size++) {
            char *buf = fresh_buf(size);
            size_t len;
            lk_err err = iot(alg, "my-project", 10, 1700000000, 1700086400, buf, size, &len, &t);
            if (err != LK_ERR_BUFFER && !(size == 0 && err == LK_ERR_ARG))
                fail_msg("iotcore into %zu of %zu bytes: %d", size, need, err);
            check_wiped(buf, size, len, "iotcore small buffer");
            free(buf);
        }
        free(json);
    }
}

/* ---- real crypto --------------------------------------------------------- */

static lk_err ossl_sign(void *ctx, const char *key, lk_alg alg,
                        const uint8_t digest[LK_SHA256_BYTES],
                        uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    EVP_PKEY *pkey = ctx;
    (void)key;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(pkey, NULL);
    if (pctx == NULL || EVP_PKEY_sign_init(pctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1) {
        EVP_PKEY_CTX_free(pctx);
        return LK_ERR_CRYPTO;
    }
    lk_err ret = LK_ERR_CRYPTO;
    if (alg == LK_ALG_RS256) {
        size_t n = sig_size;
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
            EVP_PKEY_sign(pctx, NULL, &n, digest, 32) == 1) {
            if (n > sig_size) {
                ret = LK_ERR_BUFFER;
            } else if (EVP_PKEY_sign(pctx, sig, &n, digest, 32) == 1) {
                *sig_len = n;
                ret = LK_OK;
            }
        }
    } else {
        uint8_t der[80];
        size_t n = sizeof der;
        if (sig_size < 64) {
            ret = LK_ERR_BUFFER;
        } else if (EVP_PKEY_sign(pctx, der, &n, digest, 32) == 1) {
            const unsigned char *p = der;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
            if (es != NULL) {
                const BIGNUM *r, *s;
                ECDSA_SIG_get0(es, &r, &s);
                if (BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32) {
                    *sig_len = 64;
                    ret = LK_OK;
                }
                ECDSA_SIG_free(es);
            }
        }
    }
    EVP_PKEY_CTX_free(pctx);
    return ret;
}

static const lk_se_ops ossl_ops = { .name = "openssl", .public_key = ts_public_key,
                                    .sign_digest = ossl_sign };

/* 1 if tok (len bytes) is a valid token for pkey: exactly two dots, every
 * segment strict base64url (lk_b64url_decode), JSON header with the right
 * alg, and the signature verifies over header.payload. */
static int verify_token(EVP_PKEY *pkey, lk_alg alg, const char *tok, size_t len)
{
    const char *d1 = memchr(tok, '.', len);
    if (d1 == NULL)
        return 0;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL)
        return 0;
    uint8_t hdr[256], payload[1024], sig[600];
    size_t hl, pl, sl;
    if (lk_b64url_decode(tok, (size_t)(d1 - tok), hdr, sizeof hdr, &hl, 0) != LK_OK ||
        lk_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), payload, sizeof payload, &pl, 0) != LK_OK ||
        lk_b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), sig, sizeof sig, &sl, 0) != LK_OK)
        return 0;
    const char *want_hdr = alg == LK_ALG_RS256 ? hdr_rs256 : hdr_es256;
    if (hl != strlen(want_hdr) || memcmp(hdr, want_hdr, hl) != 0)
        return 0;
    json_error_t jerr;
    json_t *claims = json_loadb((const char *)payload, pl, JSON_REJECT_DUPLICATES, &jerr);
    if (claims == NULL)
        return 0;
    json_decref(claims);

    uint8_t der[80];
    const uint8_t *vsig = sig;
    size_t vlen = sl;
    if (alg == LK_ALG_ES256) {
        if (sl != 64)
            return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        assert_true(n > 0 && (size_t)n <= sizeof der);
        vsig = der;
        vlen = (size_t)n;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestVerify(md, vsig, vlen, (const uint8_t *)tok, (size_t)(d2 - tok)) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static void real_crypto(EVP_PKEY *pkey, lk_alg alg)
{
    lk_se se = { &ossl_ops, pkey };
    char buf[2048];
    size_t len;
    static const claim c[] = { CI("iat", 1700000000), CI("exp", 1700003600),
                               CS("aud", "proj \"\xc3\xa9\" \\ \n"), CS("sub", "dev") };
    memset(buf, FILL, sizeof buf);
    assert_int_equal(build(alg, c, 4, &se, buf, sizeof buf, &len), LK_OK);
    assert_int_equal(strlen(buf), len);
    assert_true(verify_token(pkey, alg, buf, len));

    /* the payload is the reference JSON */
    size_t jl, plen;
    char *json = ref_claims_json(c, 4, &jl);
    uint8_t *payload = payload_of(buf, &plen);
    assert_int_equal(plen, jl);
    assert_memory_equal(payload, json, jl);
    free(payload);
    free(json);

    /* flip every bit of every byte: the token never verifies */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (char)(1u << bit);
            if (verify_token(pkey, alg, buf, len))
                fail_msg("token still verifies with byte %zu ('%c') bit %d flipped",
                         i, buf[i] ^ (char)(1u << bit), bit);
            buf[i] ^= (char)(1u << bit);
        }
    }
    /* truncated or extended */
    for (size_t n = 0; n < len; n++)
        assert_false(verify_token(pkey, alg, buf, n));
    assert_true(verify_token(pkey, alg, buf, len));

    /* and via lk_jwt_iotcore */
    memset(buf, FILL, sizeof buf);
    assert_int_equal(lk_jwt_iotcore(&se, "k", alg, "my-project", 10, 1700000000, 1700003600,
                                    buf, sizeof buf, &len), LK_OK);
    assert_true(verify_token(pkey, alg, buf, len));
}

static void test_real_es256(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        EVP_PKEY *pkey = EVP_EC_gen("P-256");
        assert_non_null(pkey);
        real_crypto(pkey, LK_ALG_ES256);
        EVP_PKEY_free(pkey);
    }
}

static void test_real_rs256(void **state)
{
    (void)state;
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    assert_non_null(pkey);
    real_crypto(pkey, LK_ALG_RS256);
    EVP_PKEY_free(pkey);
}

/* ---- x5c: a certificate chain in the header (lk_jwt_init_x5c) ---------- */

static lk_err iot_x5c(lk_alg alg, const char *const *x5c, const size_t *xl, size_t n,
                      char *buf, size_t size, size_t *len, tsigner *t)
{
    ts_reset(t);
    lk_se se = { &ts_ops, t };
    memset(buf, FILL, size + CANARY);
    *len = 12345;
    return lk_jwt_iotcore_x5c(&se, KEY, alg, "my-project", 10, 1700000000, 1700003600, x5c, xl,
                              n, buf, size, len);
}

static void test_x5c_exact(void **state)
{
    (void)state;
    /* three entries of 1, 2 and 0 padding characters, the standard alphabet's + and / */
    static const char *const x5c[] = { "MIIBszCC+/Aa", "QUJDRA==", "QUJDREU=" };
    static const size_t xl[] = { 12, 8, 8 };
    static const char claims[] = "{\"iat\":1700000000,\"exp\":1700003600,\"aud\":\"my-project\"}";
    for (size_t n = 1; n <= LK_JWT_X5C_MAX; n++) {
        for (int a = 0; a < 2; a++) {
            lk_alg alg = a ? LK_ALG_RS256 : LK_ALG_ES256;
            size_t sig_bytes = a ? 256 : 64, len, chars = 0;
            char hdr[256];
            int o = sprintf(hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"x5c\":[", a ? "RS256" : "ES256");
            for (size_t i = 0; i < n; i++) {
                o += sprintf(hdr + o, "%s\"%s\"", i ? "," : "", x5c[i]);
                chars += xl[i];
            }
            sprintf(hdr + o, "]}");
            char *want = ref_token_hdr(hdr, claims, sizeof claims - 1, sig_bytes);
            size_t need = strlen(want) + 1;
            assert_true(LK_JWT_X5C_TOKEN_SIZE(sizeof claims - 1, sig_bytes, chars) >= need);
            char *buf = fresh_buf(need);
            tsigner t;
            assert_int_equal(iot_x5c(alg, x5c, xl, n, buf, need, &len, &t), LK_OK);
            assert_string_equal(buf, want);
            assert_int_equal(len, need - 1);
            assert_true(lk_test_all_bytes(buf + need, CANARY, FILL));
            /* every size short of it fails, wiped, nothing past the end */
            for (size_t sz = 1; sz < need; sz++) {
                assert_int_equal(iot_x5c(alg, x5c, xl, n, buf, sz, &len, &t), LK_ERR_BUFFER);
                check_wiped(buf, sz, len, "x5c short buffer");
            }
            free(buf);
            free(want);
        }
    }
}

static void test_x5c_none_is_plain(void **state)
{
    (void)state;
    char a[1024], b[1024];
    size_t la, lb;
    tsigner t;
    lk_se se = { &ts_ops, &t };
    ts_reset(&t);
    assert_int_equal(lk_jwt_iotcore(&se, KEY, LK_ALG_ES256, "p", 1, 10, 20, a, sizeof a, &la), LK_OK);
    ts_reset(&t);
    assert_int_equal(lk_jwt_iotcore_x5c(&se, KEY, LK_ALG_ES256, "p", 1, 10, 20, NULL, NULL, 0, b,
                                        sizeof b, &lb), LK_OK);
    assert_int_equal(la, lb);
    assert_string_equal(a, b);
    assert_memory_equal(a, LK_JWT_HEADER_ES256 ".", LK_JWT_HEADER_LEN + 1);
}

static void test_x5c_refused(void **state)
{
    (void)state;
    const size_t size = 4096;
    char *buf = fresh_buf(size);
    tsigner t;
    size_t len;
    static const char *const four[] = { "QUJD", "QUJD", "QUJD", "QUJD" };
    static const size_t four_l[] = { 4, 4, 4, 4 };
    static const struct { const char *v; size_t l; lk_err want; } bad[] = {
        { "", 0, LK_ERR_ARG },                     /* empty */
        { "QUJ", 3, LK_ERR_ENCODING },             /* not a multiple of 4 */
        { "QU\"D", 4, LK_ERR_ENCODING },           /* a quote: no JSON injection */
        { "QU\\D", 4, LK_ERR_ENCODING },           /* a backslash */
        { "QU-_", 4, LK_ERR_ENCODING },            /* base64url, not base64 */
        { "Q===", 4, LK_ERR_ENCODING },            /* three padding characters */
        { "QU=D", 4, LK_ERR_ENCODING },            /* padding inside */
        { "QUJD\0\0\0\0", 8, LK_ERR_ENCODING },   /* NUL bytes */
        { "QUJD\nQUJ", 8, LK_ERR_ENCODING },       /* a line break (PEM's) */
    };
    assert_int_equal(iot_x5c(LK_ALG_ES256, four, four_l, LK_JWT_X5C_MAX + 1, buf, size, &len, &t),
                     LK_ERR_TOO_MANY);
    check_wiped(buf, size, len, "x5c too many");
    assert_int_equal(t.calls, 0);
    assert_int_equal(iot_x5c(LK_ALG_ES256, NULL, four_l, 1, buf, size, &len, &t), LK_ERR_ARG);
    check_wiped(buf, size, len, "x5c NULL array");
    assert_int_equal(iot_x5c(LK_ALG_ES256, four, NULL, 1, buf, size, &len, &t), LK_ERR_ARG);
    check_wiped(buf, size, len, "x5c NULL lengths");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* the bad entry second: the first is fine, the whole token refused */
        const char *v[] = { "QUJD", bad[i].v };
        size_t l[] = { 4, bad[i].l };
        lk_err err = iot_x5c(LK_ALG_ES256, v, l, 2, buf, size, &len, &t);
        if (err != bad[i].want)
            fail_msg("x5c bad entry %zu: %d, not %d", i, err, bad[i].want);
        check_wiped(buf, size, len, "x5c bad entry");
        assert_int_equal(t.calls, 0);
    }
    /* a NULL entry */
    {
        const char *v[] = { NULL };
        size_t l[] = { 4 };
        assert_int_equal(iot_x5c(LK_ALG_ES256, v, l, 1, buf, size, &len, &t), LK_ERR_ARG);
        check_wiped(buf, size, len, "x5c NULL entry");
    }
    /* a bad algorithm is still refused first */
    {
        lk_jwt jwt;
        lk_jwt_init_x5c(&jwt, (lk_alg)99, four, four_l, 1, buf, size);
        assert_int_equal(jwt.err, LK_ERR_UNSUPPORTED);
        lk_jwt_init_x5c(NULL, LK_ALG_ES256, four, four_l, 1, buf, size); /* no crash */
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_itself),
        cmocka_unit_test(test_exact_token_es256),
        cmocka_unit_test(test_exact_token_rs256),
        cmocka_unit_test(test_exact_token_all_lengths),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_numeric_claims),
        cmocka_unit_test(test_claim_names),
        cmocka_unit_test(test_null_string_value),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_too_many_claims),
        cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_first_error_latches),
        cmocka_unit_test(test_every_buffer_size_es256),
        cmocka_unit_test(test_every_buffer_size_rs256),
        cmocka_unit_test(test_signer_errors),
        cmocka_unit_test(test_signer_lies),
        cmocka_unit_test(test_bad_se),
        cmocka_unit_test(test_bad_init),
        cmocka_unit_test(test_finalize_twice),
        cmocka_unit_test(test_iotcore_exact),
        cmocka_unit_test(test_iotcore_argument_checks),
        cmocka_unit_test(test_iotcore_every_buffer_size),
        cmocka_unit_test(test_x5c_exact),
        cmocka_unit_test(test_x5c_none_is_plain),
        cmocka_unit_test(test_x5c_refused),
        cmocka_unit_test(test_real_es256),
        cmocka_unit_test(test_real_rs256),
    };
    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
