/*
 * Known-answer tests of the freestanding core, run on an emulated Cortex-M0
 * (QEMU `microbit`) with semihosting: base64url, SHA-256, claim escaping and
 * the exact bytes of tokens made with a deterministic test signer.
 *
 * Prints one PASS/FAIL line per check and a summary, and exits non-zero on
 * any failure. The core objects linked here are the ones built for the real
 * target (-mcpu=cortex-m0plus -mthumb -Os); ARMv6-M code runs unchanged on
 * QEMU's Cortex-M0.
 *
 * The expected token strings were computed on the host, independently of
 * the core, by tests/cortexm/expected.py (Python's hashlib and base64).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_error.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_se.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_util.h"

static unsigned n_pass, n_fail;

static void check(int ok, const char *what)
{
    if (ok) {
        n_pass++;
        printf("PASS: %s\n", what);
    } else {
        n_fail++;
        printf("FAIL: %s\n", what);
    }
}

/* ok, with the error codes in the FAIL line when they differ. */
static void check_err(lk_err got, lk_err want, const char *what)
{
    if (got != want)
        printf("  %s: got %s (%d), want %s (%d)\n", what, lk_errname(got),
               (int)got, lk_errname(want), (int)want);
    check(got == want, what);
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i;
    for (i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static void show_diff(const char *got, size_t got_len, const char *want,
                      size_t want_len)
{
    size_t i = 0;
    while (i < got_len && i < want_len && got[i] == want[i])
        i++;
    printf("  first difference at byte %lu (got length %lu, want %lu)\n",
           (unsigned long)i, (unsigned long)got_len, (unsigned long)want_len);
}

static void check_bytes(const void *got, size_t got_len, const void *want,
                        size_t want_len, const char *what)
{
    int ok = got_len == want_len && memcmp(got, want, want_len) == 0;
    if (!ok)
        show_diff((const char *)got, got_len, (const char *)want, want_len);
    check(ok, what);
}

/* ------------------------------------------------------------------ */
/* Expected values: output of tests/cortexm/expected.py.               */

/* 54 bytes */
static const char KAT_IOTCORE_JSON[] =
    "{\"iat\":1700000000,\"exp\":1700003600,\"aud\":\"my-project\"}";
/* 196 bytes */
static const char KAT_IOTCORE_TOKEN[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6M"
    "TcwMDAwMzYwMCwiYXVkIjoibXktcHJvamVjdCJ9.lK_YGjC8Ev8ZqGiRVnbntCxI4mHEn7"
    "w-nCUWT4pwWOuUr9gaMLwS_xmoaJFWdue0LEjiYcSfvD6cJRZPinBY6w";
/* 26 bytes */
static const char KAT_ESCAPE_AUD[] =
    "a\"b\\c\000d\001\010\011\012\014\015\037\177/ \303\251\342\202\254\360"
    "\235\204\236";
/* 98 bytes */
static const char KAT_ESCAPE_JSON[] =
    "{\"iat\":0,\"exp\":86400,\"aud\":\"a\\\"b\\\\c\\u0000d\\u0001\\u0008\\"
    "u0009\\u000a\\u000c\\u000d\\u001f\177/ \303\251\342\202\254\360\235"
    "\204\236\"}";
/* 255 bytes */
static const char KAT_ESCAPE_TOKEN[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYXQiOjAsImV4cCI6ODY0MDAsImF1Z"
    "CI6ImFcImJcXGNcdTAwMDBkXHUwMDAxXHUwMDA4XHUwMDA5XHUwMDBhXHUwMDBjXHUwMDB"
    "kXHUwMDFmfy8gw6nigqzwnYSeIn0.4wL2jWxZmdB5DG5z733NEhV7ZxenSTMQz5BPYKEkV"
    "orjAvaNbFmZ0HkMbnPvfc0SFXtnF6dJMxDPkE9goSRWig";
/* 89 bytes */
static const char KAT_RS256_JSON[] =
    "{\"sub\":\"device-1\",\"min\":-9223372036854775808,\"max\":92233720368"
    "54775807,\"zero\":0,\"neg\":-1}";
/* 499 bytes */
static const char KAT_RS256_TOKEN[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXZpY2UtMSIsIm1pbiI6L"
    "TkyMjMzNzIwMzY4NTQ3NzU4MDgsIm1heCI6OTIyMzM3MjAzNjg1NDc3NTgwNywiemVybyI"
    "6MCwibmVnIjotMX0.yjgPaOahfWeegYxgsezNloyp_uub06qPcztwC48U8arKOA9o5qF9Z"
    "56BjGCx7M2WjKn-65vTqo9zO3ALjxTxqso4D2jmoX1nnoGMYLHszZaMqf7rm9Oqj3M7cAu"
    "PFPGqyjgPaOahfWeegYxgsezNloyp_uub06qPcztwC48U8arKOA9o5qF9Z56BjGCx7M2Wj"
    "Kn-65vTqo9zO3ALjxTxqso4D2jmoX1nnoGMYLHszZaMqf7rm9Oqj3M7cAuPFPGqyjgPaOa"
    "hfWeegYxgsezNloyp_uub06qPcztwC48U8arKOA9o5qF9Z56BjGCx7M2WjKn-65vTqo9zO"
    "3ALjxTxqg";

#define LIT_LEN(s) (sizeof(s) - 1u)

/* ------------------------------------------------------------------ */
/* base64url                                                           */

struct b64_vec {
    const char *raw;
    size_t raw_len;
    const char *enc;
};

/* RFC 4648 section 10 (the alphabets agree on these), plus the two
 * characters where base64url differs from base64: 62 '-' and 63 '_'. */
static const struct b64_vec b64_vecs[] = {
    {"", 0, ""},
    {"f", 1, "Zg"},
    {"fo", 2, "Zm8"},
    {"foo", 3, "Zm9v"},
    {"foob", 4, "Zm9vYg"},
    {"fooba", 5, "Zm9vYmE"},
    {"foobar", 6, "Zm9vYmFy"},
    {"\373\377\277", 3, "-_-_"},
    {"\373\377", 2, "-_8"},
    {"\000\000\000\377", 4, "AAAA_w"},
};

struct b64_bad {
    const char *in;
    size_t in_len;
    unsigned flags;
    const char *why;
};

static const struct b64_bad b64_bads[] = {
    /* Characters outside [A-Za-z0-9_-]: base64's '+' and '/', and others. */
    {"Zm+v", 4, 0, "'+' (base64, not base64url)"},
    {"Zm/v", 4, 0, "'/' (base64, not base64url)"},
    {"Zm.v", 4, 0, "'.'"},
    {"Zm9 ", 4, 0, "space"},
    {"Zm9v\nYg", 7, 0, "newline"},
    {"Zm\000v", 4, 0, "NUL inside"},
    {"Zm9\200", 4, 0, "byte 0x80"},
    {"Zm9\372", 4, 0, "byte 0xfa"},
    /* Length 1 mod 4. */
    {"Z", 1, 0, "length 1"},
    {"Zm9vY", 5, 0, "length 5"},
    {"Zm9vYmFyZ", 9, LK_B64URL_ALLOW_PADDING, "length 9 (padding allowed)"},
    /* Non-zero unused bits in the last character. */
    {"Zh", 2, 0, "\"Zh\" (canonical \"Zg\")"},
    {"Zm9", 3, 0, "\"Zm9\" (canonical \"Zm8\")"},
    {"-_9", 3, 0, "\"-_9\" (canonical \"-_8\")"},
    {"AB", 2, 0, "\"AB\""},
    {"Zh==", 4, LK_B64URL_ALLOW_PADDING, "\"Zh==\" (padding allowed)"},
    /* Padding without LK_B64URL_ALLOW_PADDING. */
    {"Zg==", 4, 0, "\"Zg==\" without the flag"},
    {"Zm8=", 4, 0, "\"Zm8=\" without the flag"},
    {"=", 1, 0, "\"=\" without the flag"},
    /* Padding that does not complete the last quantum, even with the flag. */
    {"Zg=", 3, LK_B64URL_ALLOW_PADDING, "\"Zg=\""},
    {"Zg===", 5, LK_B64URL_ALLOW_PADDING, "\"Zg===\""},
    {"Zm8==", 5, LK_B64URL_ALLOW_PADDING, "\"Zm8==\""},
    {"Zm9v=", 5, LK_B64URL_ALLOW_PADDING, "\"Zm9v=\""},
    {"Zm9v==", 6, LK_B64URL_ALLOW_PADDING, "\"Zm9v==\""},
    {"Zm9v====", 8, LK_B64URL_ALLOW_PADDING, "\"Zm9v====\""},
    {"Z===", 4, LK_B64URL_ALLOW_PADDING, "\"Z===\""},
    {"====", 4, LK_B64URL_ALLOW_PADDING, "\"====\""},
    {"=", 1, LK_B64URL_ALLOW_PADDING, "\"=\""},
    {"Zm=v", 4, LK_B64URL_ALLOW_PADDING, "\"Zm=v\" (padding inside)"},
    {"Zg==Zg==", 8, LK_B64URL_ALLOW_PADDING, "\"Zg==Zg==\" (padding inside)"},
};

static void test_b64url(void)
{
    char enc[32], what[96];
    uint8_t dec[32];
    size_t i, n;
    lk_err err;

    for (i = 0; i < sizeof b64_vecs / sizeof b64_vecs[0]; i++) {
        const struct b64_vec *v = &b64_vecs[i];
        size_t want = strlen(v->enc);

        /* Exact-size buffer: the characters and a NUL. */
        memset(enc, 0x55, sizeof enc);
        err = lk_b64url_encode((const uint8_t *)v->raw, v->raw_len, enc,
                               want + 1u, &n);
        snprintf(what, sizeof what, "b64url encode \"%s\"", v->enc);
        check(err == LK_OK && n == want && memcmp(enc, v->enc, want + 1u) == 0 &&
                  LK_B64URL_ENCODED_LEN(v->raw_len) == want,
              what);

        /* One byte short: LK_ERR_BUFFER, length 0, an empty string. */
        memset(enc, 0x55, sizeof enc);
        n = 99;
        err = lk_b64url_encode((const uint8_t *)v->raw, v->raw_len, enc, want, &n);
        snprintf(what, sizeof what, "b64url encode \"%s\" into %lu bytes: LK_ERR_BUFFER",
                 v->enc, (unsigned long)want);
        check(err == LK_ERR_BUFFER && n == 0 && (want == 0 || enc[0] == '\0'), what);

        /* Decode, with and without the padding flag, into an exact buffer. */
        memset(dec, 0x55, sizeof dec);
        err = lk_b64url_decode(v->enc, want, dec, v->raw_len, &n, 0);
        snprintf(what, sizeof what, "b64url decode \"%s\"", v->enc);
        check(err == LK_OK && n == v->raw_len && memcmp(dec, v->raw, n) == 0 &&
                  LK_B64URL_DECODED_MAX(want) >= v->raw_len,
              what);
        err = lk_b64url_decode(v->enc, want, dec, sizeof dec, &n,
                               LK_B64URL_ALLOW_PADDING);
        snprintf(what, sizeof what, "b64url decode \"%s\" (padding allowed)", v->enc);
        check(err == LK_OK && n == v->raw_len && memcmp(dec, v->raw, n) == 0, what);

        if (v->raw_len > 0) {
            memset(dec, 0x55, sizeof dec);
            n = 99;
            err = lk_b64url_decode(v->enc, want, dec, v->raw_len - 1u, &n, 0);
            snprintf(what, sizeof what,
                     "b64url decode \"%s\" into %lu bytes: LK_ERR_BUFFER, wiped",
                     v->enc, (unsigned long)(v->raw_len - 1u));
            check(err == LK_ERR_BUFFER && n == 0 && all_zero(dec, v->raw_len - 1u) &&
                      dec[v->raw_len - 1u] == 0x55,
                  what);
        }
    }

    /* Padding accepted with the flag (RFC 4648 padded forms). */
    {
        static const struct b64_vec padded[] = {
            {"f", 1, "Zg=="}, {"fo", 2, "Zm8="}, {"foob", 4, "Zm9vYg=="},
            {"fooba", 5, "Zm9vYmE="}, {"\373\377", 2, "-_8="},
        };
        for (i = 0; i < sizeof padded / sizeof padded[0]; i++) {
            const struct b64_vec *v = &padded[i];
            err = lk_b64url_decode(v->enc, strlen(v->enc), dec, v->raw_len, &n,
                                   LK_B64URL_ALLOW_PADDING);
            snprintf(what, sizeof what,
                     "b64url decode \"%s\" with LK_B64URL_ALLOW_PADDING", v->enc);
            check(err == LK_OK && n == v->raw_len && memcmp(dec, v->raw, n) == 0, what);
        }
    }

    /* Strict rejections: LK_ERR_ENCODING, length 0, the output wiped. */
    for (i = 0; i < sizeof b64_bads / sizeof b64_bads[0]; i++) {
        const struct b64_bad *b = &b64_bads[i];
        memset(dec, 0x55, sizeof dec);
        n = 99;
        err = lk_b64url_decode(b->in, b->in_len, dec, sizeof dec, &n, b->flags);
        snprintf(what, sizeof what, "b64url rejects %s", b->why);
        if (err != LK_ERR_ENCODING)
            printf("  got %s\n", lk_errname(err));
        check(err == LK_ERR_ENCODING && n == 0 && all_zero(dec, sizeof dec), what);
    }
}

/* ------------------------------------------------------------------ */
/* SHA-256, FIPS 180-4 (and NIST's example values)                     */

static int hex_equal(const uint8_t d[LK_SHA256_BYTES], const char *hex)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < LK_SHA256_BYTES; i++)
        if (hex[2 * i] != digits[d[i] >> 4] || hex[2 * i + 1] != digits[d[i] & 15])
            return 0;
    return hex[2 * LK_SHA256_BYTES] == '\0';
}

static const char SHA_ABC[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
static const char SHA_448[] =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
static const char SHA_MILLION_A[] =
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
static const char SHA_EMPTY[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char MSG_448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

static void test_sha256(void)
{
    static uint8_t chunk[1000];
    /* Update sizes that cross and straddle block boundaries. */
    static const size_t steps[] = {1, 63, 64, 65, 127, 128, 55, 56, 57, 1000, 3, 200};
    lk_sha256_ctx ctx;
    uint8_t d[LK_SHA256_BYTES];
    size_t i, total, k;

    lk_sha256("abc", 3, d);
    check(hex_equal(d, SHA_ABC), "sha256 \"abc\" (FIPS 180-4 B.1)");

    lk_sha256(MSG_448, LIT_LEN(MSG_448), d);
    check(hex_equal(d, SHA_448), "sha256 448-bit message (FIPS 180-4 B.2)");

    lk_sha256_init(&ctx);
    for (i = 0; i < LIT_LEN(MSG_448); i++)
        lk_sha256_update(&ctx, MSG_448 + i, 1);
    lk_sha256_final(&ctx, d);
    check(hex_equal(d, SHA_448), "sha256 448-bit message, one byte per update");
    check(all_zero(&ctx, sizeof ctx), "sha256 final wipes the context");

    lk_sha256("", 0, d);
    check(hex_equal(d, SHA_EMPTY), "sha256 empty message");

    memset(chunk, 'a', sizeof chunk);
    lk_sha256_init(&ctx);
    for (total = 0, k = 0; total < 1000000u; k++) {
        size_t n = steps[k % (sizeof steps / sizeof steps[0])];
        if (n > 1000000u - total)
            n = 1000000u - total;
        lk_sha256_update(&ctx, chunk, n);
        total += n;
    }
    lk_sha256_final(&ctx, d);
    check(hex_equal(d, SHA_MILLION_A),
          "sha256 one million 'a' in streaming updates (FIPS 180-4 B.3)");

    lk_sha256_init(&ctx);
    for (i = 0; i < 1000; i++)
        lk_sha256_update(&ctx, chunk, sizeof chunk);
    lk_sha256_final(&ctx, d);
    check(hex_equal(d, SHA_MILLION_A), "sha256 one million 'a' in 1000-byte updates");
}

/* ------------------------------------------------------------------ */
/* The deterministic test signer                                       */

enum { SIGNER_OK = 0, SIGNER_ZERO_R = 1, SIGNER_FAIL = 2 };

struct test_signer {
    int mode;
    unsigned calls;
    int key_ok;
};

/* Answers the digest d with d||d (ES256) or d repeated 8 times (RS256, 256
 * bytes, the size of an RSA-2048 signature): a fixed function of the signing
 * input, so every token below is fixed. */
static lk_err test_sign(void *ctx, const char *key, lk_alg alg,
                        const uint8_t digest[LK_SHA256_BYTES],
                        uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    struct test_signer *s = (struct test_signer *)ctx;
    size_t n = alg == LK_ALG_ES256 ? LK_ES256_SIG_BYTES : 256u, i;

    s->calls++;
    s->key_ok = strcmp(key, "slot:0") == 0;
    if (s->mode == SIGNER_FAIL)
        return LK_ERR_DEVICE;
    if (sig_size < n)
        return LK_ERR_BUFFER;
    for (i = 0; i < n; i++)
        sig[i] = digest[i % LK_SHA256_BYTES];
    if (s->mode == SIGNER_ZERO_R)
        memset(sig, 0, 32);
    *sig_len = n;
    return LK_OK;
}

static lk_err test_public_key(void *ctx, const char *key, lk_alg *alg,
                              uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    (void)ctx; (void)key; (void)alg; (void)pub; (void)pub_size; (void)pub_len;
    return LK_ERR_UNSUPPORTED;
}

static const lk_se_ops test_ops = {
    .name = "kat", .public_key = test_public_key, .sign_digest = test_sign,
};

static struct test_signer signer;
static const lk_se test_se = {&test_ops, &signer};

/* ------------------------------------------------------------------ */
/* Tokens                                                              */

static char tok[600];

/* The JSON of a token's payload segment, decoded with the core's decoder. */
static int payload_json(const char *token, size_t len, char *json, size_t size,
                        size_t *json_len)
{
    const char *p = memchr(token, '.', len), *q;
    if (p == 0)
        return 0;
    p++;
    q = memchr(p, '.', len - (size_t)(p - token));
    if (q == 0)
        return 0;
    return lk_b64url_decode(p, (size_t)(q - p), (uint8_t *)json, size, json_len, 0) ==
           LK_OK;
}

static void check_token(lk_err err, size_t len, const char *want, size_t want_len,
                        const char *want_json, size_t want_json_len, const char *what)
{
    char json[160], line[128];
    size_t json_len = 0;

    snprintf(line, sizeof line, "%s: returns LK_OK", what);
    check_err(err, LK_OK, line);
    snprintf(line, sizeof line, "%s: payload is the exact JSON", what);
    check(payload_json(tok, len, json, sizeof json, &json_len) &&
              json_len == want_json_len && memcmp(json, want_json, json_len) == 0,
          line);
    snprintf(line, sizeof line, "%s: exact token bytes and NUL", what);
    check_bytes(tok, len, want, want_len, line);
    check(tok[len] == '\0', "  ... token is NUL-terminated");
}

static void test_tokens(void)
{
    lk_jwt jwt;
    size_t len = 99;
    lk_err err;
    const size_t es_size = LIT_LEN(KAT_IOTCORE_TOKEN) + 1u;
    const size_t rs_size = LIT_LEN(KAT_RS256_TOKEN) + 1u;

    check(LK_JWT_TOKEN_SIZE(LIT_LEN(KAT_IOTCORE_JSON), LK_ES256_SIG_BYTES) == es_size,
          "LK_JWT_TOKEN_SIZE(54, 64) == 197");
    check(LK_JWT_TOKEN_SIZE(LIT_LEN(KAT_RS256_JSON), 256u) == rs_size,
          "LK_JWT_TOKEN_SIZE(89, 256) == 500");

    /* 1. lk_jwt_iotcore, ES256, in a buffer of exactly the token's size. */
    memset(tok, 0x55, sizeof tok);
    memset(&signer, 0, sizeof signer);
    err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, "my-project", 10,
                         1700000000, 1700003600, tok, es_size, &len);
    check_token(err, len, KAT_IOTCORE_TOKEN, LIT_LEN(KAT_IOTCORE_TOKEN),
                KAT_IOTCORE_JSON, LIT_LEN(KAT_IOTCORE_JSON), "iotcore ES256");
    check(signer.calls == 1 && signer.key_ok, "iotcore ES256: one sign call, key \"slot:0\"");
    check(tok[es_size] == 0x55, "iotcore ES256: nothing written past the buffer");

    /* 2. One byte too small: LK_ERR_BUFFER, length 0, the buffer wiped, and
     * the secure element never asked to sign. */
    memset(tok, 0x55, sizeof tok);
    memset(&signer, 0, sizeof signer);
    len = 99;
    err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, "my-project", 10,
                         1700000000, 1700003600, tok, es_size - 1u, &len);
    check_err(err, LK_ERR_BUFFER, "iotcore ES256 one byte too small: LK_ERR_BUFFER");
    check(len == 0 && all_zero(tok, es_size - 1u) && (unsigned char)tok[es_size - 1u] == 0x55,
          "iotcore ES256 one byte too small: length 0, buffer wiped, nothing past it");
    check(signer.calls == 0, "iotcore ES256 one byte too small: signer not called");

    /* 3. Escaping: a quote, a backslash, a NUL and other control characters
     * inside aud, then DEL, '/', and 2-, 3- and 4-byte UTF-8 copied as is. */
    memset(tok, 0x55, sizeof tok);
    err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, KAT_ESCAPE_AUD,
                         LIT_LEN(KAT_ESCAPE_AUD), 0, LK_JWT_MAX_LIFETIME, tok,
                         sizeof tok, &len);
    check_token(err, len, KAT_ESCAPE_TOKEN, LIT_LEN(KAT_ESCAPE_TOKEN), KAT_ESCAPE_JSON,
                LIT_LEN(KAT_ESCAPE_JSON), "iotcore escaping");

    /* 4. init / add_claim_* / finalize, RS256, 64-bit integer extremes. */
    memset(tok, 0x55, sizeof tok);
    lk_jwt_init(&jwt, LK_ALG_RS256, tok, rs_size);
    lk_jwt_add_claim_string(&jwt, "sub", "device-1", 8);
    lk_jwt_add_claim_int(&jwt, "min", INT64_MIN);
    lk_jwt_add_claim_int(&jwt, "max", INT64_MAX);
    lk_jwt_add_claim_int(&jwt, "zero", 0);
    lk_jwt_add_claim_int(&jwt, "neg", -1);
    err = lk_jwt_finalize(&jwt, &test_se, "slot:0", &len);
    check_token(err, len, KAT_RS256_TOKEN, LIT_LEN(KAT_RS256_TOKEN), KAT_RS256_JSON,
                LIT_LEN(KAT_RS256_JSON), "builder RS256");

    memset(tok, 0x55, sizeof tok);
    lk_jwt_init(&jwt, LK_ALG_RS256, tok, rs_size - 1u);
    lk_jwt_add_claim_string(&jwt, "sub", "device-1", 8);
    lk_jwt_add_claim_int(&jwt, "min", INT64_MIN);
    lk_jwt_add_claim_int(&jwt, "max", INT64_MAX);
    lk_jwt_add_claim_int(&jwt, "zero", 0);
    lk_jwt_add_claim_int(&jwt, "neg", -1);
    len = 99;
    err = lk_jwt_finalize(&jwt, &test_se, "slot:0", &len);
    check_err(err, LK_ERR_BUFFER, "builder RS256 one byte too small: LK_ERR_BUFFER");
    check(len == 0 && all_zero(tok, rs_size - 1u),
          "builder RS256 one byte too small: length 0, buffer wiped");

    /* 5. Refusals. */
    {
        static const struct { const char *s; size_t n; const char *why; } bad_utf8[] = {
            {"\303(", 2, "iotcore rejects aud \"\\xc3(\" (bad continuation)"},
            {"\300\257", 2, "iotcore rejects aud \"\\xc0\\xaf\" (overlong '/')"},
            {"\355\240\200", 3, "iotcore rejects aud \"\\xed\\xa0\\x80\" (surrogate)"},
            {"ab\342\202", 4, "iotcore rejects aud ending in a truncated sequence"},
            {"\364\220\200\200", 4, "iotcore rejects aud above U+10FFFF"},
            {"\377", 1, "iotcore rejects aud \"\\xff\""},
        };
        size_t i;
        for (i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
            memset(tok, 0x55, sizeof tok);
            len = 99;
            err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, bad_utf8[i].s,
                                 bad_utf8[i].n, 0, 3600, tok, sizeof tok, &len);
            check(err == LK_ERR_ENCODING && len == 0 && all_zero(tok, sizeof tok),
                  bad_utf8[i].why);
        }
    }

    memset(tok, 0x55, sizeof tok);
    signer.mode = SIGNER_ZERO_R;
    len = 99;
    err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, "p", 1, 0, 3600, tok,
                         sizeof tok, &len);
    check_err(err, LK_ERR_SIGN, "signature with r = 0: LK_ERR_SIGN");
    check(len == 0 && all_zero(tok, sizeof tok), "signature with r = 0: buffer wiped");

    memset(tok, 0x55, sizeof tok);
    signer.mode = SIGNER_FAIL;
    err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, "p", 1, 0, 3600, tok,
                         sizeof tok, &len);
    check_err(err, LK_ERR_DEVICE, "failing signer: its error is returned");
    check(len == 0 && all_zero(tok, sizeof tok), "failing signer: buffer wiped");
    signer.mode = SIGNER_OK;

    err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, "p", 1, 0,
                         LK_JWT_MAX_LIFETIME + 1, tok, sizeof tok, &len);
    check_err(err, LK_ERR_ARG, "iotcore lifetime 86401 s: LK_ERR_ARG");

    lk_jwt_init(&jwt, LK_ALG_ES256, tok, sizeof tok);
    lk_jwt_add_claim_int(&jwt, "iat", 1);
    lk_jwt_add_claim_int(&jwt, "iat", 2);
    err = lk_jwt_finalize(&jwt, &test_se, "slot:0", &len);
    check_err(err, LK_ERR_CLAIM_DUP, "duplicate claim: LK_ERR_CLAIM_DUP");
}

/* ------------------------------------------------------------------ */
/* Stack high-water mark of one token, measured on the emulated CPU    */

#define PAINT_BYTES 3072u
#define PAINT 0xA5u

static lk_err hw_err;
static size_t hw_len;

static void make_one_token(void)
{
    hw_err = lk_jwt_iotcore(&test_se, "slot:0", LK_ALG_ES256, "my-project", 10,
                            1700000000, 1700003600, tok, sizeof tok, &hw_len);
}

/* Paints PAINT_BYTES below the current stack pointer, runs fn and returns
 * how far below that stack pointer fn wrote. Includes fn's own frame and the
 * test signer's. No interrupts run in this program, so the painted area is
 * only touched by fn. */
static __attribute__((noinline)) size_t stack_used_by(void (*fn)(void))
{
    uintptr_t sp;
    volatile uint8_t *p, *lo;

    __asm__ volatile("mov %0, sp" : "=r"(sp));
    lo = (volatile uint8_t *)(sp - PAINT_BYTES);
    for (p = lo; p < (volatile uint8_t *)sp; p++)
        *p = PAINT;
    fn();
    for (p = lo; p < (volatile uint8_t *)sp && *p == PAINT; p++)
        ;
    return (size_t)((volatile uint8_t *)sp - p);
}

static void test_stack(void)
{
    size_t used = stack_used_by(make_one_token);
    char line[96];

    check(hw_err == LK_OK && hw_len == LIT_LEN(KAT_IOTCORE_TOKEN) &&
              memcmp(tok, KAT_IOTCORE_TOKEN, hw_len) == 0,
          "token made during the stack measurement is right");
    printf("INFO: measured stack high-water of lk_jwt_iotcore (with the test signer "
           "and a wrapper frame): %lu bytes\n", (unsigned long)used);
    snprintf(line, sizeof line, "measured stack of a token (%lu bytes) <= 1024 bytes",
             (unsigned long)used);
    check(used > 0 && used < PAINT_BYTES && used <= 1024u, line);
}

int main(void)
{
    printf("latchkey core known-answer tests on an emulated Cortex-M0 (QEMU microbit)\n");
    test_b64url();
    test_sha256();
    test_tokens();
    test_stack();
    printf("cortexm-kat: %u passed, %u failed\n", n_pass, n_fail);
    return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
