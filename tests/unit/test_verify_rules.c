/*
 * test_verify_rules.c — every rule of lk_verify.h (and of
 * docs/iotcore.md §Verifier attacks) with tokens built here: header and
 * claims JSON written by hand (so they can be malformed), encoded with the
 * reference base64url of lk_test.c, signed with OpenSSL keys generated at
 * run time. Each case asserts the exact lk_err the contract names.
 *
 * Every call of lk_verify_token goes through verify_at(), which also checks
 * on every call: *info is zeroed on failure; why is NUL-terminated within
 * why_size and nothing past it is written; why never contains the whole
 * token nor any 12-character piece of the signature segment, and is one
 * printable line (no control characters: it goes to logs).
 *
 * Where the contract leaves a choice open the test accepts both answers and
 * says so (EXPECT2); everything else is exact:
 *   - aud "test-proj\u0000evil", alg "ES256\u0000": AUDIENCE/ALG or
 *     MALFORMED (jansson refuses \u0000 without JSON_ALLOW_NUL);
 *   - iat/exp beyond int64: CLAIM or MALFORMED (jansson: "too big integer");
 *   - pol.now at INT64_MIN/MAX or negative: the time error or LK_ERR_ARG;
 *   - the only ES256 credential expired, an RSA one valid: ALG or
 *     NO_CREDENTIAL.
 * Recorded (printed, not asserted): what lk_cred_parse makes of text around
 * a PEM object, CRLF, missing final newline; P-256 with explicit standard
 * parameters.
 *
 * Cached verification is checked against uncached verification on every
 * call (cached_at): same result, same info, never a "hit" on failure; one
 * device's many tokens hold at most 2 entries and evict no other device's
 * (test_cache_per_device).
 */
#include "lk_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_verify.h"

#define NOW INT64_C(1700000000)
#define AUD "test-proj"
#define P53 INT64_C(9007199254740992) /* 2^53 */

/* ---- keys, shared by all tests (RSA generation is slow) ----------------- */

typedef struct tkey {
    EVP_PKEY *pkey;
    int ec;            /* 1: P-256 (ES256), 0: RSA (RS256) */
    char *pem;         /* SPKI PEM */
    lk_cred *cred;     /* parsed, never expires */
} tkey;

static tkey ES_A, ES_B, RS_A, RS_B;
static lk_verifier *V;

/* P-256 group order n */
static const uint8_t P256_N[32] = {
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51
};

/* ---- allocation arena: everything made by a test is freed after it ------ */

static void *arena[8192];
static size_t narena;

static void *keep(void *p)
{
    assert_non_null(p);
    assert_true(narena < sizeof arena / sizeof arena[0]);
    arena[narena++] = p;
    return p;
}

static int gc(void **state)
{
    (void)state;
    for (size_t i = 0; i < narena; i++)
        free(arena[i]);
    narena = 0;
    return 0;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    return keep(s);
}

static char *pem_of_bio(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *pem = malloc((size_t)n + 1);
    assert_non_null(pem);
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    BIO_free(bio);
    return pem;
}

static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k), 1);
    return pem_of_bio(bio);
}

static void key_make(tkey *k, EVP_PKEY *pkey)
{
    k->pkey = pkey;
    assert_non_null(pkey);
    k->ec = EVP_PKEY_is_a(pkey, "EC");
    k->pem = pubkey_pem(pkey);
    assert_int_equal(lk_cred_parse(LK_CRED_UNSPECIFIED, k->pem, strlen(k->pem), 0, &k->cred), LK_OK);
}

static void key_free(tkey *k)
{
    lk_cred_free(k->cred);
    free(k->pem);
    EVP_PKEY_free(k->pkey);
}

static int group_setup(void **state)
{
    (void)state;
    if (lk_verifier_new(&V) != LK_OK)
        return -1;
    key_make(&ES_A, EVP_EC_gen("P-256"));
    key_make(&ES_B, EVP_EC_gen("P-256"));
    key_make(&RS_A, EVP_RSA_gen(2048));
    key_make(&RS_B, EVP_RSA_gen(2048));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    key_free(&ES_A);
    key_free(&ES_B);
    key_free(&RS_A);
    key_free(&RS_B);
    lk_verifier_free(V);
    return 0;
}

/* ---- building tokens ---------------------------------------------------- */

static char *b64(const void *p, size_t n)
{
    return keep(lk_test_b64url_ref_encode(p, n));
}

static char *b64s(const char *s)
{
    return b64(s, strlen(s));
}

/* Signature over msg: ES256 raw r||s (64 bytes), RS256 PKCS#1 v1.5. */
static size_t sign_raw(const tkey *k, const void *msg, size_t len, uint8_t *sig)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k->pkey), 1);
    size_t n = 0;
    assert_int_equal(EVP_DigestSign(md, NULL, &n, msg, len), 1);
    uint8_t *buf = malloc(n);
    assert_int_equal(EVP_DigestSign(md, buf, &n, msg, len), 1);
    EVP_MD_CTX_free(md);
    if (!k->ec) {
        memcpy(sig, buf, n);
        free(buf);
        return n;
    }
    const uint8_t *p = buf;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
    assert_non_null(es);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32), 32);
    ECDSA_SIG_free(es);
    free(buf);
    return 64;
}

/* "<input>.<b64 sig>" for the exact text input ("h.p"), signature bytes given. */
static char *with_sig(const char *input, const uint8_t *sig, size_t n)
{
    return fmt("%s.%s", input, b64(sig, n));
}

/* Sign the exact text "h64.p64" (whatever it contains). */
static char *make_token_seg(const char *h64, const char *p64, const tkey *k)
{
    char *input = fmt("%s.%s", h64, p64);
    uint8_t sig[1024];
    size_t n = sign_raw(k, input, strlen(input), sig);
    return with_sig(input, sig, n);
}

static char *make_token(const char *header_json, const char *payload_json, const tkey *k)
{
    return make_token_seg(b64s(header_json), b64s(payload_json), k);
}

static const char *HDR_ES = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
static const char *HDR_RS = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";

static const char *hdr_for(const tkey *k)
{
    return k->ec ? HDR_ES : HDR_RS;
}

static char *claims3(int64_t iat, int64_t exp, const char *aud)
{
    return fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\"}", iat, exp, aud);
}

static char *std_claims(void)
{
    return claims3(NOW, NOW + 3600, AUD);
}

static char *std_token(const tkey *k)
{
    return make_token(hdr_for(k), std_claims(), k);
}

static lk_verify_policy pol_default(void)
{
    lk_verify_policy p;
    lk_verify_policy_init(&p, AUD, strlen(AUD), NOW);
    return p;
}

/* ---- verification with invariant checks --------------------------------- */

#define WHY_SIZE 200u

/* The signature segment of tok[0..len): after the last '.', or NULL. */
static const char *sig_segment(const char *tok, size_t len, size_t *slen)
{
    const char *d = NULL;
    *slen = 0;
    for (size_t i = 0; i < len; i++)
        if (tok[i] == '.')
            d = tok + i;
    if (d == NULL)
        return NULL;
    *slen = len - (size_t)(d + 1 - tok);
    return d + 1;
}

static void check_why_clean(int line, const char *why, const char *tok, size_t len)
{
    size_t wl = strlen(why), sl = 0;
    if (len >= 12 && wl >= len && memmem(why, wl, tok, len) != NULL)
        fail_msg("line %d: why contains the whole token: %s", line, why);
    const char *sig = sig_segment(tok, len, &sl);
    if (sig != NULL && sl >= 12)
        for (size_t i = 0; i + 12 <= sl; i++)
            if (memmem(why, wl, sig + i, 12) != NULL)
                fail_msg("line %d: why contains part of the signature: %s", line, why);
}

static lk_err verify_at(int line, const char *tok, size_t len, lk_cred *const *creds, size_t n,
                        const lk_verify_policy *pol, lk_token_info *out, char *why_out)
{
    lk_token_info info;
    memset(&info, 0xA5, sizeof info);
    char why[WHY_SIZE + 32];
    memset(why, 'Z', sizeof why);
    lk_err e = lk_verify_token(V, tok, len, creds, n, pol, &info, why, WHY_SIZE);
    if (memchr(why, '\0', WHY_SIZE) == NULL)
        fail_msg("line %d: why not NUL-terminated within why_size", line);
    if (!lk_test_all_bytes(why + WHY_SIZE, 32, 'Z'))
        fail_msg("line %d: why written past why_size", line);
    check_why_clean(line, why, tok, len);
    for (const char *w = why; *w; w++)
        if ((unsigned char)*w < 0x20 || *w == 0x7f)
            fail_msg("line %d: why is not one printable line (byte 0x%02x): %s", line, (unsigned char)*w, why);
    if (e != LK_OK && (info.alg != 0 || info.iat != 0 || info.exp != 0 ||
                       info.valid_until != 0 || info.cred_index != 0))
        fail_msg("line %d: %s but info not zeroed", line, lk_errname(e));
    if (out != NULL)
        *out = info;
    if (why_out != NULL)
        memcpy(why_out, why, WHY_SIZE);
    return e;
}

static void expect_at(int line, lk_err want, lk_err alt, const char *tok, size_t len,
                      lk_cred *const *creds, size_t n, const lk_verify_policy *pol)
{
    char why[WHY_SIZE];
    lk_err e = verify_at(line, tok, len, creds, n, pol, NULL, why);
    if (e != want && e != alt)
        fail_msg("line %d: want %s%s%s, got %s (why: %s)\n  token: %.300s", line,
                 lk_errname(want), alt != want ? " or " : "", alt != want ? lk_errname(alt) : "",
                 lk_errname(e), why, tok);
}

/* EXPECT(want, token, creds array, count, &policy) */
#define EXPECT(want, tok, creds, n, pol) \
    expect_at(__LINE__, (want), (want), (tok), strlen(tok), (creds), (n), (pol))
#define EXPECT_LEN(want, tok, len, creds, n, pol) \
    expect_at(__LINE__, (want), (want), (tok), (len), (creds), (n), (pol))
/* the contract allows either answer (each use says why) */
#define EXPECT2(want, alt, tok, creds, n, pol) \
    expect_at(__LINE__, (want), (alt), (tok), strlen(tok), (creds), (n), (pol))

static lk_err verify(const char *tok, lk_cred *const *creds, size_t n, const lk_verify_policy *pol,
                     lk_token_info *info)
{
    return verify_at(__LINE__, tok, strlen(tok), creds, n, pol, info, NULL);
}

/* ---- the tests ---------------------------------------------------------- */

static void test_policy_init(void **state)
{
    (void)state;
    lk_verify_policy p;
    memset(&p, 0xFF, sizeof p);
    lk_verify_policy_init(&p, AUD, 9, NOW);
    assert_ptr_equal(p.aud, AUD);
    assert_int_equal(p.aud_len, 9);
    assert_int_equal(p.now, NOW);
    assert_true(p.subject == 0);
    assert_int_equal(p.skew, LK_VERIFY_SKEW);
    assert_int_equal(p.skew, 600);
    assert_int_equal(p.max_lifetime, 86400);
    assert_int_equal(p.max_len, 4096);
    assert_int_equal(p.flags, LK_VERIFY_ALLOW_PADDING);
}

static void test_valid_baseline(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred }, *rs[] = { RS_A.cred };
    lk_token_info info;
    char *t = std_token(&ES_A);
    assert_int_equal(verify(t, es, 1, &pol, &info), LK_OK);
    assert_int_equal(info.alg, LK_ALG_ES256);
    assert_int_equal(info.iat, NOW);
    assert_int_equal(info.exp, NOW + 3600);
    assert_int_equal(info.valid_until, NOW + 3600 + 600);
    assert_int_equal(info.cred_index, 0);
    char *r = std_token(&RS_A);
    assert_int_equal(verify(r, rs, 1, &pol, &info), LK_OK);
    assert_int_equal(info.alg, LK_ALG_RS256);
    assert_int_equal(info.valid_until, NOW + 4200);
    /* the length argument rules, not a NUL: trailing bytes after len */
    char *tg = fmt("%s.garbage!", t);
    EXPECT_LEN(LK_OK, tg, strlen(t), es, 1, &pol);
    EXPECT_LEN(LK_ERR_TOKEN_MALFORMED, tg, strlen(tg), es, 1, &pol);

    /* JSON variations that are the same JSON */
    EXPECT(LK_OK, make_token("{\"alg\":\"ES256\"}", std_claims(), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token("{\"typ\":\"JWT\",\"alg\":\"ES256\"}", std_claims(), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token(" {\r\n\t\"alg\" : \"ES256\" , \"typ\":\"JWT\" } ", std_claims(), &ES_A),
           es, 1, &pol);
    EXPECT(LK_OK, make_token("{\"alg\":\"ES\\u0032\\u0035\\u0036\"}", std_claims(), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"aud\":\"%s\",\"exp\":%" PRId64 ",\"iat\":%" PRId64 "}",
                                         AUD, NOW + 3600, NOW), &ES_A), es, 1, &pol);
    /* escaped claim name: "\u0061ud" is aud; escaped value */
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"\\u0061ud\":\"%s\"}",
                                         NOW, NOW + 3600, AUD), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"test\\u002dproj\"}",
                                         NOW, NOW + 3600), &ES_A), es, 1, &pol);
    /* other claims ignored, nbf too (even in the future), nested values */
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\","
                                         "\"nbf\":%" PRId64 ",\"sub\":\"h\\u00e9llo \xc3\xa9\","
                                         "\"x\":{\"y\":[1,2.5,null,true,{\"z\":\"\"}]},\"jti\":\"\"}",
                                         NOW, NOW + 3600, AUD, NOW + 100000), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"nbf\":\"x\"}",
                                         NOW, NOW + 3600, AUD), &ES_A), es, 1, &pol);

    /* reuse: the credential's OpenSSL context works after failures */
    char *bad_es = std_token(&ES_B), *bad_rs = std_token(&RS_B);
    for (int i = 0; i < 3; i++) {
        EXPECT(LK_ERR_TOKEN_SIGNATURE, bad_es, es, 1, &pol);
        EXPECT(LK_OK, t, es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_SIGNATURE, bad_rs, rs, 1, &pol);
        EXPECT(LK_OK, r, rs, 1, &pol);
    }
}

static void test_arguments(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *t = std_token(&ES_A);
    size_t tl = strlen(t);
    lk_token_info info;
    memset(&info, 0xA5, sizeof info);
    assert_int_equal(lk_verify_token(NULL, t, tl, es, 1, &pol, &info, NULL, 0), LK_ERR_ARG);
    assert_int_equal(info.iat, 0);
    assert_int_equal(info.exp, 0);
    assert_int_equal(lk_verify_token(V, NULL, tl, es, 1, &pol, &info, NULL, 0), LK_ERR_ARG);
    assert_int_equal(lk_verify_token(V, t, tl, es, 1, NULL, &info, NULL, 0), LK_ERR_ARG);
    assert_int_equal(lk_verify_token(V, t, tl, es, 1, &pol, NULL, NULL, 0), LK_ERR_ARG);
    assert_int_equal(lk_verify_token(V, t, tl, NULL, 1, &pol, &info, NULL, 0), LK_ERR_ARG);
    lk_cred *withnull[] = { NULL, ES_A.cred };
    assert_int_equal(lk_verify_token(V, t, tl, withnull, 2, &pol, &info, NULL, 0), LK_ERR_ARG);
    assert_int_equal(lk_verify_token(V, t, tl, withnull + 1, 1, &pol, &info, NULL, 0), LK_OK);

    /* at most 16 credentials */
    lk_cred *many[17];
    for (int i = 0; i < 17; i++)
        many[i] = ES_B.cred;
    many[15] = ES_A.cred;
    assert_int_equal(verify(t, many, 16, &pol, &info), LK_OK);
    assert_int_equal(info.cred_index, 15);
    assert_int_equal(lk_verify_token(V, t, tl, many, 17, &pol, &info, NULL, 0), LK_ERR_ARG);

    /* the policy's ranges */
    struct { int64_t skew, life; size_t max_len; unsigned flags; lk_err want; } cases[] = {
        { -1, 86400, 4096, 1, LK_ERR_ARG },
        { 3601, 86400, 4096, 1, LK_ERR_ARG },
        { 0, 86400, 4096, 1, LK_OK },
        { 3600, 86400, 4096, 1, LK_OK },
        { 600, 0, 4096, 1, LK_ERR_ARG },
        { 600, -5, 4096, 1, LK_ERR_ARG },
        { 600, 3600, 4096, 1, LK_OK },
        { 600, 86400 * 7, 4096, 1, LK_OK },
        { 600, 86400 * 7 + 1, 4096, 1, LK_ERR_ARG },
        { 600, 86400, 0, 1, LK_ERR_ARG },
        { 600, 86400, 65535, 1, LK_OK },
        { 600, 86400, 65536, 1, LK_ERR_ARG },
        { 600, 86400, 4096, 0, LK_OK },
        { 600, 86400, 4096, 2, LK_OK },        /* LK_VERIFY_ALLOW_X5C */
        { 600, 86400, 4096, 4, LK_ERR_ARG },   /* unknown flag bit: out of range */
        { 600, 86400, 4096, 0x80000000u, LK_ERR_ARG },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lk_verify_policy p = pol;
        p.skew = cases[i].skew;
        p.max_lifetime = cases[i].life;
        p.max_len = cases[i].max_len;
        p.flags = cases[i].flags;
        lk_err e = lk_verify_token(V, t, tl, es, 1, &p, &info, NULL, 0);
        if (e != cases[i].want)
            fail_msg("policy case %zu: want %s got %s", i, lk_errname(cases[i].want), lk_errname(e));
    }
    lk_verify_policy p = pol;
    p.aud = NULL;
    assert_int_equal(lk_verify_token(V, t, tl, es, 1, &p, &info, NULL, 0), LK_ERR_ARG);
    /* the verifier itself */
    assert_int_equal(lk_verifier_new(NULL), LK_ERR_ARG);
    lk_verifier_free(NULL);
}

/* Build an ES256 token of exactly `len` characters (filler claim), or NULL. */
static char *token_of_len(size_t len, const tkey *k)
{
    const char *hdrs[] = { HDR_ES, "{\"alg\":\"ES256\"}", "{\"alg\":\"ES256\",\"typ\":\"JWT\" }" };
    size_t sigc = k->ec ? 86 : 342;
    for (size_t h = 0; h < 3; h++) {
        size_t hl = LK_B64URL_ENCODED_LEN(strlen(hdrs[h]));
        char *base = claims3(NOW, NOW + 3600, AUD);
        size_t bl = strlen(base) + strlen(",\"x\":\"\"");
        for (size_t f = 0; f < len; f++) {
            size_t total = hl + 1 + LK_B64URL_ENCODED_LEN(bl + f) + 1 + sigc;
            if (total > len)
                break;
            if (total == len) {
                char *fill = keep(malloc(f + 1));
                memset(fill, 'a', f);
                fill[f] = '\0';
                char *claims = fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"x\":\"%s\"}",
                                   NOW, NOW + 3600, AUD, fill);
                char *t = make_token(k->ec ? hdrs[h] : HDR_RS, claims, k);
                assert_int_equal(strlen(t), len);
                return t;
            }
        }
    }
    return NULL;
}

static void test_length_cap(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *t = std_token(&ES_A);
    size_t tl = strlen(t);
    pol.max_len = tl;
    EXPECT(LK_OK, t, es, 1, &pol);
    pol.max_len = tl - 1;
    EXPECT(LK_ERR_TOKEN_TOO_LARGE, t, es, 1, &pol);
    pol.max_len = 1;
    EXPECT(LK_ERR_TOKEN_TOO_LARGE, t, es, 1, &pol);

    /* the default cap of 4096, with valid tokens */
    pol = pol_default();
    char *t4096 = token_of_len(4096, &ES_A), *t4097 = token_of_len(4097, &ES_A);
    assert_non_null(t4096);
    assert_non_null(t4097);
    EXPECT(LK_OK, t4096, es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_TOO_LARGE, t4097, es, 1, &pol);

    /* the MQTT limit: 65535 accepted when the policy says so */
    pol.max_len = LK_VERIFY_MAX_LEN_LIMIT;
    char *t65535 = token_of_len(65535, &ES_A), *t65536 = token_of_len(65536, &ES_A);
    assert_non_null(t65535);
    assert_non_null(t65536);
    EXPECT(LK_OK, t65535, es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_TOO_LARGE, t65536, es, 1, &pol);
    lk_cred *rs[] = { RS_A.cred };
    char *r65535 = token_of_len(65535, &RS_A);
    assert_non_null(r65535);
    EXPECT(LK_OK, r65535, rs, 1, &pol);

    /* garbage: over the cap is TOO_LARGE, nothing parsed; at the cap, MALFORMED */
    char *g = keep(malloc(70000));
    memset(g, '.', 69999);
    g[69999] = '\0';
    pol = pol_default();
    EXPECT_LEN(LK_ERR_TOKEN_TOO_LARGE, g, 4097, es, 1, &pol);
    EXPECT_LEN(LK_ERR_TOKEN_MALFORMED, g, 4096, es, 1, &pol);
    EXPECT_LEN(LK_ERR_TOKEN_TOO_LARGE, g, 69999, es, 0, &pol);
    /* "before anything else is looked at": a length far beyond the buffer
     * must be refused without reading it */
    lk_token_info info;
    assert_int_equal(lk_verify_token(V, "x", SIZE_MAX, es, 1, &pol, &info, NULL, 0),
                     LK_ERR_TOKEN_TOO_LARGE);
    assert_int_equal(lk_verify_token(V, "x", (size_t)1 << 40, NULL, 0, &pol, &info, NULL, 0),
                     LK_ERR_TOKEN_TOO_LARGE);
}

static void test_segments(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *t = std_token(&ES_A);
    char *h = b64s(HDR_ES), *p = b64s(std_claims());
    size_t sl;
    const char *s = sig_segment(t, strlen(t), &sl);
    const char *bad[] = {
        "", ".", "..", "...", "....", "a", "a.b", "a.b.", ".a.b", "a..b",
        h, fmt("%s.%s", h, p), fmt("%s.%s.", h, p), fmt(".%s.%s", p, s), fmt("%s..%s", h, s),
        fmt("%s.%s.%s.", h, p, s), fmt("%s.%s.%s.%s", h, p, s, s), fmt("%s.%s.%s.AAAA", h, p, s),
        fmt("%s..%s.%s", h, p, s), fmt(".%s.%s.%s", h, p, s), fmt("%s.%s..%s", h, p, s),
        fmt("%s%s", p, s),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT(LK_ERR_TOKEN_MALFORMED, bad[i], es, 1, &pol);
    /* NUL bytes inside the given length */
    size_t tl = strlen(t);
    char *tn = keep(malloc(tl + 2));
    memcpy(tn, t, tl + 1);
    tn[tl + 1] = '\0';
    EXPECT_LEN(LK_ERR_TOKEN_MALFORMED, tn, tl + 1, es, 1, &pol);
    tn[40] = '\0';
    EXPECT_LEN(LK_ERR_TOKEN_MALFORMED, tn, tl, es, 1, &pol);
    /* a shorter length: a truncated token */
    for (size_t n = 0; n < tl; n += 7)
        assert_int_not_equal(verify_at(__LINE__, t, n, es, 1, &pol, NULL, NULL), LK_OK);
}

static void test_alg_values(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *both[] = { ES_A.cred, RS_A.cred };
    const char *algs[] = {
        "\"none\"", "\"None\"", "\"NONE\"", "\"nOnE\"", "\"es256\"", "\"Es256\"", "\"ES256 \"",
        "\" ES256\"", "\"ES2560\"", "\"ES25\"", "\"rs256\"", "\"HS256\"", "\"HS384\"", "\"HS512\"",
        "\"ES384\"", "\"ES512\"", "\"RS384\"", "\"RS512\"", "\"PS256\"", "\"EdDSA\"", "\"\"",
        "123", "256", "null", "true", "false", "[\"ES256\"]", "{\"ES256\":1}", "\"ES256,RS256\"",
        "\"E\\u0053256x\"",
    };
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        char *hdr = fmt("{\"alg\":%s,\"typ\":\"JWT\"}", algs[i]);
        EXPECT(LK_ERR_TOKEN_ALG, make_token(hdr, std_claims(), &ES_A), both, 2, &pol);
        EXPECT(LK_ERR_TOKEN_ALG, make_token(hdr, std_claims(), &RS_A), both, 2, &pol);
    }
    /* no alg at all */
    EXPECT(LK_ERR_TOKEN_ALG, make_token("{\"typ\":\"JWT\"}", std_claims(), &ES_A), both, 2, &pol);
    EXPECT(LK_ERR_TOKEN_ALG, make_token("{}", std_claims(), &ES_A), both, 2, &pol);
    EXPECT(LK_ERR_TOKEN_ALG, make_token("{\"ALG\":\"ES256\"}", std_claims(), &ES_A), both, 2, &pol);
    /* "ES256" followed by an escaped NUL: not "ES256". jansson refuses
     * \u0000 without JSON_ALLOW_NUL, so MALFORMED is as good as ALG. */
    EXPECT2(LK_ERR_TOKEN_ALG, LK_ERR_TOKEN_MALFORMED,
            make_token("{\"alg\":\"ES256\\u0000\"}", std_claims(), &ES_A), both, 2, &pol);
    /* the classic: alg none with the signature left out */
    char *h = b64s("{\"alg\":\"none\",\"typ\":\"JWT\"}"), *p = b64s(std_claims());
    EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.", h, p), both, 2, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s", h, p), both, 2, &pol);
    EXPECT(LK_ERR_TOKEN_ALG, fmt("%s.%s.AAAA", h, p), both, 2, &pol);
    /* with no credentials, alg is still judged first (rule 3 before 4) */
    EXPECT(LK_ERR_TOKEN_ALG, fmt("%s.%s.AAAA", h, p), both, 0, &pol);
}

static void test_hs256_key_confusion(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    const tkey *keys[] = { &ES_A, &RS_A };
    for (int i = 0; i < 2; i++) {
        const tkey *k = keys[i];
        lk_cred *c[] = { k->cred };
        char *input = fmt("%s.%s", b64s("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"), b64s(std_claims()));
        /* HMAC keyed with the PEM text, with the DER SPKI, and with nothing */
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(k->pkey, &der);
        assert_true(dl > 0);
        struct { const void *key; size_t len; } secrets[] = {
            { k->pem, strlen(k->pem) }, { der, (size_t)dl }, { "", 0 },
        };
        for (size_t s = 0; s < 3; s++) {
            uint8_t mac[32];
            size_t ml = 0;
            assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secrets[s].key,
                                      secrets[s].len, (const uint8_t *)input, strlen(input),
                                      mac, sizeof mac, &ml));
            EXPECT(LK_ERR_TOKEN_ALG, with_sig(input, mac, ml), c, 1, &pol);
            /* the same MAC under a header that names the credential's alg */
            char *in2 = fmt("%s.%s", b64s(hdr_for(k)), b64s(std_claims()));
            assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, secrets[s].key,
                                      secrets[s].len, (const uint8_t *)in2, strlen(in2),
                                      mac, sizeof mac, &ml));
            EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in2, mac, ml), c, 1, &pol);
        }
        OPENSSL_free(der);
    }
}

static void test_credential_decides_alg(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred }, *rs[] = { RS_A.cred }, *rs_es[] = { RS_A.cred, ES_A.cred };
    char *te = std_token(&ES_A), *tr = std_token(&RS_A);
    EXPECT(LK_ERR_TOKEN_ALG, te, rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_ALG, tr, es, 1, &pol);
    lk_token_info info;
    assert_int_equal(verify(te, rs_es, 2, &pol, &info), LK_OK);
    assert_int_equal(info.cred_index, 1);
    assert_int_equal(info.alg, LK_ALG_ES256);
    assert_int_equal(verify(tr, rs_es, 2, &pol, &info), LK_OK);
    assert_int_equal(info.cred_index, 0);
    assert_int_equal(info.alg, LK_ALG_RS256);
    /* a header that lies about the signature's algorithm */
    EXPECT(LK_ERR_TOKEN_SIGNATURE, make_token(HDR_RS, std_claims(), &ES_A), rs_es, 2, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, make_token(HDR_ES, std_claims(), &RS_A), rs_es, 2, &pol);
    /* each token only with its own key */
    EXPECT(LK_ERR_TOKEN_SIGNATURE, std_token(&ES_B), rs_es, 2, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, std_token(&RS_B), rs_es, 2, &pol);
}

static void test_refused_header_params(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    /* the device's own key as an embedded JWK does not help */
    BIGNUM *x = NULL, *y = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(ES_A.pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
    assert_int_equal(EVP_PKEY_get_bn_param(ES_A.pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
    uint8_t xb[32], yb[32];
    BN_bn2binpad(x, xb, 32);
    BN_bn2binpad(y, yb, 32);
    BN_free(x);
    BN_free(y);
    char *jwk = fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", b64(xb, 32), b64(yb, 32));
    const char *params[] = {
        "\"crit\":[\"exp\"]", "\"crit\":[]", "\"crit\":\"exp\"", "\"crit\":null", "\"crit\":1",
        "\"crit\":{}", "\"crit\":[\"b64\"],\"b64\":false", "\"crit\":[\"\"]", "\"crit\":[1]",
        fmt("\"jwk\":%s", jwk), "\"jwk\":null", "\"jwk\":{}",
        "\"jku\":\"https://attacker.example/keys\"", "\"jku\":\"\"",
        "\"x5u\":\"https://attacker.example/cert\"", "\"x5c\":[\"MIIB\"]", "\"x5c\":[]",
        "\"\\u0063rit\":[\"exp\"]",
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        EXPECT(LK_ERR_TOKEN_HEADER, make_token(fmt("{\"alg\":\"ES256\",%s}", params[i]), std_claims(), &ES_A),
               es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_HEADER, make_token(fmt("{%s,\"alg\":\"ES256\",\"typ\":\"JWT\"}", params[i]),
                                               std_claims(), &ES_A), es, 1, &pol);
    }
    /* crit as a claim, or names that only look alike, are not header params */
    EXPECT(LK_OK, make_token("{\"alg\":\"ES256\",\"CRIT\":[\"x\"],\"Jwk\":{},\"x5t\":\"abc\"}",
                             std_claims(), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"crit\":[\"x\"],"
                                         "\"jwk\":{}}", NOW, NOW + 3600, AUD), &ES_A), es, 1, &pol);
}

static void test_kid_typ_ignored(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_B.cred, ES_A.cred };
    const char *extra[] = {
        "\"kid\":\"../../../../etc/passwd\"", "\"kid\":\"' OR 1=1 --\"", "\"kid\":5", "\"kid\":null",
        "\"kid\":\"0\"", "\"kid\":{}", "\"typ\":\"jwt\"", "\"typ\":\"at+jwt\"", "\"typ\":7",
        "\"typ\":null", "\"cty\":\"JWT\"", "\"kid\":\"k\",\"typ\":\"JWS\"",
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        lk_token_info info;
        char *t = make_token(fmt("{\"alg\":\"ES256\",%s}", extra[i]), std_claims(), &ES_A);
        assert_int_equal(verify(t, es, 2, &pol, &info), LK_OK);
        assert_int_equal(info.cred_index, 1); /* kid does not select: the signature does */
    }
}

static void test_duplicate_names(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *both[] = { ES_A.cred, RS_A.cred };
    const char *hdrs[] = {
        "{\"alg\":\"ES256\",\"alg\":\"ES256\"}", "{\"alg\":\"RS256\",\"alg\":\"ES256\"}",
        "{\"alg\":\"ES256\",\"alg\":\"none\"}", "{\"alg\":\"ES256\",\"\\u0061lg\":\"ES256\"}",
        "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"typ\":\"JWT\"}", "{\"alg\":\"ES256\",\"kid\":1,\"kid\":2}",
    };
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++)
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(hdrs[i], std_claims(), &ES_A), both, 2, &pol);
#define IE "\"iat\":1700000000,\"exp\":1700003600,"
    const char *claims[] = {
        "{" IE "\"aud\":\"test-proj\",\"aud\":\"test-proj\"}",
        "{" IE "\"aud\":\"evil\",\"aud\":\"test-proj\"}",
        "{" IE "\"aud\":\"test-proj\",\"aud\":\"evil\"}",
        "{" IE "\"aud\":\"test-proj\",\"\\u0061ud\":\"evil\"}",
        "{" IE "\"\\u0061ud\":\"evil\",\"aud\":\"test-proj\"}",
        "{" IE "\"aud\":\"test-proj\",\"iat\":0}",
        "{" IE "\"aud\":\"test-proj\",\"exp\":9999999999}",
        "{" IE "\"aud\":\"test-proj\",\"sub\":\"a\",\"sub\":\"a\"}",
        "{" IE "\"aud\":\"test-proj\",\"x\":{\"a\":1,\"a\":1}}",
    };
#undef IE
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        const char *c = claims[i];
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(HDR_ES, c, &ES_A), both, 2, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(HDR_RS, c, &RS_A), both, 2, &pol);
    }
}

/* {"iat":<iat>,"exp":<exp>,"aud":<aud>} with raw JSON texts */
static char *claims_raw(const char *iat, const char *exp, const char *aud)
{
    return fmt("{\"iat\":%s,\"exp\":%s,\"aud\":%s}", iat, exp, aud);
}

static void test_json_shape(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    pol.max_len = LK_VERIFY_MAX_LEN_LIMIT;
    lk_cred *es[] = { ES_A.cred };
    const char *c = std_claims();
    /* not objects */
    const char *notobj[] = { "[]", "[{\"alg\":\"ES256\"}]", "\"ES256\"", "1", "null", "true", " ", "{", "}" };
    for (size_t i = 0; i < sizeof notobj / sizeof notobj[0]; i++) {
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(notobj[i], c, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(HDR_ES, notobj[i], &ES_A), es, 1, &pol);
    }
    /* an empty object: no alg / no claims */
    EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, "{}", &ES_A), es, 1, &pol);
    /* trailing garbage after the object, and other non-JSON */
    const char *tails[] = { "x", "{}", "]", ",", "\"\"", "/*c*/", "\x01", "0" };
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(fmt("%s%s", HDR_ES, tails[i]), c, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(HDR_ES, fmt("%s%s", c, tails[i]), &ES_A), es, 1, &pol);
    }
    /* a NUL byte after the object (decoded bytes, not an escape) */
    char hn[64];
    size_t hl = strlen(HDR_ES);
    memcpy(hn, HDR_ES, hl);
    hn[hl] = '\0';
    EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(b64(hn, hl + 1), b64s(c), &ES_A), es, 1, &pol);
    const char *nonjson[] = {
        "{'alg':'ES256'}", "{\"alg\":\"ES256\",}", "{alg:\"ES256\"}", "{\"alg\":\"ES256\" /*x*/}",
        "{\"alg\":\"ES256\",\"x\":NaN}", "{\"alg\":\"ES256\",\"x\":Infinity}", "{\"alg\":\"ES256\",\"x\":01}",
        "{\"alg\":\"ES256\",\"x\":\"\\x41\"}", "{\"alg\":\"ES256\",\"x\":\"a\tb\"}",
        "\xef\xbb\xbf{\"alg\":\"ES256\"}",
    };
    for (size_t i = 0; i < sizeof nonjson / sizeof nonjson[0]; i++)
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(nonjson[i], c, &ES_A), es, 1, &pol);
    /* invalid UTF-8 and lone surrogates, in header and claims, values and names */
    const char *bad_utf8[] = {
        "\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80", "\x80",
        "\\ud800", "\\udc00", "\\ud800\\u0041", "\\ud800x",
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        EXPECT(LK_ERR_TOKEN_MALFORMED,
               make_token(fmt("{\"alg\":\"ES256\",\"kid\":\"%s\"}", bad_utf8[i]), c, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED,
               make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"sub\":\"%s\"}",
                                      NOW, NOW + 3600, AUD, bad_utf8[i]), &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED,
               make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"%s\":1}",
                                      NOW, NOW + 3600, AUD, bad_utf8[i]), &ES_A), es, 1, &pol);
    }
    /* broken JSON carrying line breaks and escape sequences: the why text
     * stays one printable line (it goes to logs) */
    const char *inject[] = {
        "{\"alg\":\"ES256\",\"x\":\"a\nFAKE LOG LINE\"}", "{\"alg\":\"ES256\",\"x\":tru\ne}",
        "{\"alg\":\"ES256\",\"x\":\"\x1b[31mred\"}", "{\"alg\":\"ES256\",\"\r\n\":1,}",
        "{\"alg\":\"ES256\",\"x\":1}\nFAKE", "\n\n{", "{\"alg\":\"ES256\",\"x\":\"\x7f\x01\"}",
    };
    for (size_t i = 0; i < sizeof inject / sizeof inject[0]; i++) {
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(inject[i], c, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token(HDR_ES, inject[i], &ES_A), es, 1, &pol);
    }
    /* a valid surrogate pair and 4-byte UTF-8 are fine */
    EXPECT(LK_OK, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\","
                                         "\"sub\":\"\\ud83d\\ude00 \xf0\x9f\x98\x80\"}", NOW, NOW + 3600, AUD),
                             &ES_A), es, 1, &pol);
    /* nesting: shallow is fine, very deep is refused (bounded) */
    for (int depth = 0; depth <= 2; depth++) {
        size_t d = depth == 0 ? 16 : depth == 1 ? 3000 : 20000;
        char *open = keep(malloc(d + 1)), *close = keep(malloc(d + 1));
        memset(open, '[', d);
        memset(close, ']', d);
        open[d] = close[d] = '\0';
        char *cl = fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"x\":%s%s}",
                       NOW, NOW + 3600, AUD, open, close);
        EXPECT(d == 16 ? LK_OK : LK_ERR_TOKEN_MALFORMED, make_token(HDR_ES, cl, &ES_A), es, 1, &pol);
        if (d == 3000)
            EXPECT(LK_ERR_TOKEN_MALFORMED,
                   make_token(fmt("{\"alg\":\"ES256\",\"x\":%s%s}", open, close), c, &ES_A), es, 1, &pol);
    }
}

static void test_claim_types(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    const char *iat = "1700000000", *exp = "1700003600", *aud = "\"test-proj\"";
    EXPECT(LK_OK, make_token(HDR_ES, claims_raw(iat, exp, aud), &ES_A), es, 1, &pol);
    const char *bad[] = {
        "\"1700003600\"", "1700003600.0", "1.7000036e9", "1.7000036E+9", "17000036e2", "1e300",
        "-1e300", "1700003600.5", "-1", "-1700003600", "9007199254740993", "9007199254740994",
        "18014398509481984", "9223372036854775807", "-9223372036854775808", "true", "false",
        "null", "[]", "[1700003600]", "{}", "\"\"", "-0.0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, claims_raw(iat, bad[i], aud), &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, claims_raw(bad[i], exp, aud), &ES_A), es, 1, &pol);
    }
    /* beyond int64: jansson cannot even parse these as integers ("too big
     * integer"), so the refusal may come as MALFORMED; never LK_OK */
    const char *huge[] = { "9223372036854775808", "99999999999999999999999999", "-9223372036854775809" };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        EXPECT2(LK_ERR_TOKEN_CLAIM, LK_ERR_TOKEN_MALFORMED,
                make_token(HDR_ES, claims_raw(iat, huge[i], aud), &ES_A), es, 1, &pol);
        EXPECT2(LK_ERR_TOKEN_CLAIM, LK_ERR_TOKEN_MALFORMED,
                make_token(HDR_ES, claims_raw(huge[i], exp, aud), &ES_A), es, 1, &pol);
    }
    /* 2^53 itself is in range; 0 is in range (then the time rules apply) */
    lk_verify_policy p53 = pol;
    p53.now = P53 - 1800;
    lk_token_info info;
    assert_int_equal(verify(make_token(HDR_ES, claims3(P53 - 3600, P53, AUD), &ES_A), es, 1, &p53, &info), LK_OK);
    assert_int_equal(info.exp, P53);
    assert_int_equal(info.valid_until, P53 + 600);
    EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, claims3(P53 - 3600, P53 + 1, AUD), &ES_A), es, 1, &p53);
    EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, claims3(P53 + 1, P53 + 3600, AUD), &ES_A), es, 1, &p53);
    EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(0, NOW + 3600, AUD), &ES_A), es, 1, &pol);
    /* -0 is the integer 0 to jansson: a type-correct iat of 0 */
    EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims_raw("-0", exp, aud), &ES_A), es, 1, &pol);
}

static void test_claims_missing(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    const char *cl[] = {
        "{\"exp\":1700003600,\"aud\":\"test-proj\"}",
        "{\"iat\":1700000000,\"aud\":\"test-proj\"}",
        "{\"iat\":1700000000,\"exp\":1700003600}",
        "{}",
        "{\"IAT\":1700000000,\"exp\":1700003600,\"aud\":\"test-proj\"}",
        "{\"iat\":1700000000,\"Exp\":1700003600,\"aud\":\"test-proj\"}",
        "{\"iat\":1700000000,\"exp\":1700003600,\"AUD\":\"test-proj\"}",
        "{\"iat\":1700000000,\"exp\":1700003600,\"aud \":\"test-proj\"}",
        "{\"iat\":1700000000,\"exp\":1700003600,\"claims\":{\"aud\":\"test-proj\"}}",
        "{\"iat\":1700000000,\"exp\":1700003600,\"nbf\":1700000000,\"sub\":\"test-proj\"}",
    };
    for (size_t i = 0; i < sizeof cl / sizeof cl[0]; i++)
        EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, cl[i], &ES_A), es, 1, &pol);
}

static void test_audience(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    const char *iat = "1700000000", *exp = "1700003600";
    const char *wrong_type[] = {
        "[\"test-proj\"]", "[\"test-proj\",\"x\"]", "[\"x\",\"test-proj\"]", "[]", "123", "null",
        "true", "{\"aud\":\"test-proj\"}",
    };
    for (size_t i = 0; i < sizeof wrong_type / sizeof wrong_type[0]; i++)
        EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, claims_raw(iat, exp, wrong_type[i]), &ES_A), es, 1, &pol);
    const char *wrong[] = {
        "\"test-pro\"", "\"test-projx\"", "\"Test-proj\"", "\"TEST-PROJ\"", "\" test-proj\"",
        "\"test-proj \"", "\"\"", "\"test\xe2\x80\x90proj\"", "\"test-proj\\n\"", "\"test_proj\"",
        "\"projects/test-proj\"", "\"test-proj/x\"", "\"t\"",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        EXPECT(LK_ERR_TOKEN_AUDIENCE, make_token(HDR_ES, claims_raw(iat, exp, wrong[i]), &ES_A), es, 1, &pol);
    /* an embedded NUL that matches up to it. The contract (rule 5) refuses
     * it by length; jansson without JSON_ALLOW_NUL refuses it at parse time
     * (MALFORMED). Either is a refusal; LK_OK would be the bug. */
    EXPECT2(LK_ERR_TOKEN_AUDIENCE, LK_ERR_TOKEN_MALFORMED,
            make_token(HDR_ES, claims_raw(iat, exp, "\"test-proj\\u0000evil\""), &ES_A), es, 1, &pol);
    EXPECT2(LK_ERR_TOKEN_AUDIENCE, LK_ERR_TOKEN_MALFORMED,
            make_token(HDR_ES, claims_raw(iat, exp, "\"test-proj\\u0000\""), &ES_A), es, 1, &pol);
    /* the policy's audience is aud_len bytes, not a C string */
    lk_verify_policy p = pol;
    p.aud = "test-projEXTRA";
    p.aud_len = 9;
    EXPECT(LK_OK, make_token(HDR_ES, claims_raw(iat, exp, "\"test-proj\""), &ES_A), es, 1, &p);
    EXPECT(LK_ERR_TOKEN_AUDIENCE, make_token(HDR_ES, claims_raw(iat, exp, "\"test-projEXTRA\""), &ES_A), es, 1, &p);
    p.aud = "test";
    p.aud_len = 4;
    EXPECT(LK_ERR_TOKEN_AUDIENCE, make_token(HDR_ES, claims_raw(iat, exp, "\"test-proj\""), &ES_A), es, 1, &p);
    EXPECT(LK_OK, make_token(HDR_ES, claims_raw(iat, exp, "\"test\""), &ES_A), es, 1, &p);
    /* an audience with UTF-8 compares by bytes */
    p.aud = "pr\xc3\xb6j";
    p.aud_len = 5;
    EXPECT(LK_OK, make_token(HDR_ES, claims_raw(iat, exp, "\"pr\\u00f6j\""), &ES_A), es, 1, &p);
    EXPECT(LK_ERR_TOKEN_AUDIENCE, make_token(HDR_ES, claims_raw(iat, exp, "\"pro\\u0308j\""), &ES_A), es, 1, &p);
}

static void test_time_edges(void **state)
{
    (void)state;
    lk_cred *es[] = { ES_A.cred };
    const int64_t skews[] = { 600, 0, 3600 };
    const int64_t lifes[] = { 86400, 1, 86400 * 7 };
    for (size_t k = 0; k < 3; k++) {
        lk_verify_policy pol = pol_default();
        int64_t S = skews[k], L = lifes[k];
        pol.skew = S;
        pol.max_lifetime = L;
        lk_token_info info;
        /* iat <= now + skew */
        EXPECT(LK_OK, make_token(HDR_ES, claims3(NOW + S, NOW + S + 1, AUD), &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_FUTURE, make_token(HDR_ES, claims3(NOW + S + 1, NOW + S + 2, AUD), &ES_A), es, 1, &pol);
        /* exp > now - skew */
        EXPECT(LK_ERR_TOKEN_EXPIRED, make_token(HDR_ES, claims3(NOW - S - 1, NOW - S, AUD), &ES_A), es, 1, &pol);
        assert_int_equal(verify(make_token(HDR_ES, claims3(NOW - S, NOW - S + 1, AUD), &ES_A), es, 1, &pol,
                                &info), LK_OK);
        assert_int_equal(info.valid_until, NOW + 1);
        /* exp - iat <= max_lifetime + skew */
        EXPECT(LK_OK, make_token(HDR_ES, claims3(NOW, NOW + L + S, AUD), &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(NOW, NOW + L + S + 1, AUD), &ES_A), es, 1, &pol);
        EXPECT(LK_OK, make_token(HDR_ES, claims3(NOW - S, NOW - S + L + S, AUD), &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(NOW - S, NOW + L + 1, AUD), &ES_A), es, 1, &pol);
        /* exp == iat, exp < iat (both still unexpired, not in the future) */
        if (S > 1) {
            EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(NOW, NOW, AUD), &ES_A), es, 1, &pol);
            EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(NOW, NOW - 1, AUD), &ES_A), es, 1, &pol);
            EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(NOW + S, NOW - S + 1, AUD), &ES_A), es, 1, &pol);
        }
    }
    /* an old iat is fine while the lifetime fits (IoT Core) */
    lk_verify_policy pol = pol_default();
    EXPECT(LK_OK, make_token(HDR_ES, claims3(NOW - 80000, NOW + 1000, AUD), &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(NOW - 90000, NOW + 1000, AUD), &ES_A), es, 1, &pol);
    /* the RFC example's exp (2011) with an iat and aud: expired */
    EXPECT(LK_ERR_TOKEN_EXPIRED, make_token(HDR_ES, claims3(1300819380 - 3600, 1300819380, AUD), &ES_A), es, 1, &pol);
}

static void test_overflow(void **state)
{
    (void)state;
    lk_cred *es[] = { ES_A.cred };
    char *t = std_token(&ES_A);
    lk_verify_policy pol = pol_default();
    /* extreme clocks: refused as an out-of-range argument or by the time
     * rules with checked arithmetic; never LK_OK, never a wrap-around */
    pol.now = INT64_MAX;
    EXPECT2(LK_ERR_TOKEN_EXPIRED, LK_ERR_ARG, t, es, 1, &pol);
    pol.now = INT64_MAX - 599;
    EXPECT2(LK_ERR_TOKEN_EXPIRED, LK_ERR_ARG, t, es, 1, &pol);
    pol.now = INT64_MIN;
    EXPECT2(LK_ERR_TOKEN_FUTURE, LK_ERR_ARG, t, es, 1, &pol);
    pol.now = INT64_MIN + 599;
    EXPECT2(LK_ERR_TOKEN_FUTURE, LK_ERR_ARG, t, es, 1, &pol);
    pol.now = -1;
    EXPECT2(LK_ERR_TOKEN_FUTURE, LK_ERR_ARG, t, es, 1, &pol);
    pol.now = 0;
    EXPECT(LK_ERR_TOKEN_FUTURE, t, es, 1, &pol);
    /* the largest claims with the largest policy: no overflow */
    pol = pol_default();
    pol.skew = 3600;
    pol.max_lifetime = 86400 * 7;
    pol.now = P53;
    lk_token_info info;
    assert_int_equal(verify(make_token(HDR_ES, claims3(P53 - 86400 * 7 - 3600, P53, AUD), &ES_A), es, 1, &pol, &info),
                     LK_OK);
    assert_int_equal(info.valid_until, P53 + 3600);
    EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(P53 - 86400 * 7 - 3601, P53, AUD), &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_LIFETIME, make_token(HDR_ES, claims3(0, P53, AUD), &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_EXPIRED, make_token(HDR_ES, claims3(0, 1, AUD), &ES_A), es, 1, &pol);
    pol.now = 0;
    EXPECT(LK_ERR_TOKEN_FUTURE, make_token(HDR_ES, claims3(P53, P53, AUD), &ES_A), es, 1, &pol);
    EXPECT(LK_OK, make_token(HDR_ES, claims3(0, 1, AUD), &ES_A), es, 1, &pol);
    /* exp - iat as a wrapped negative number */
    pol = pol_default();
    EXPECT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, claims_raw("1700000000", "-9223372036854775807", "\"test-proj\""),
                                          &ES_A), es, 1, &pol);
}

/* ---- signatures ---------------------------------------------------------- */

/* "h.p" of a standard token for key k */
static char *std_input(const tkey *k)
{
    return fmt("%s.%s", b64s(hdr_for(k)), b64s(std_claims()));
}

/* x = n - x (32 bytes, big endian), for x in [1, n-1] */
static void neg_mod_n(const uint8_t in[32], uint8_t out[32])
{
    BIGNUM *n = BN_bin2bn(P256_N, 32, NULL), *x = BN_bin2bn(in, 32, NULL);
    assert_int_equal(BN_sub(x, n, x), 1);
    assert_int_equal(BN_bn2binpad(x, out, 32), 32);
    BN_free(n);
    BN_free(x);
}

static void test_es256_signature_forms(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *in = std_input(&ES_A);
    uint8_t sig[64], v[1100];
    assert_int_equal(sign_raw(&ES_A, in, strlen(in), sig), 64);
    EXPECT(LK_OK, with_sig(in, sig, 64), es, 1, &pol);

    /* lengths */
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, sig, 63), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, sig + 1, 63), es, 1, &pol);
    v[0] = 0;
    memcpy(v + 1, sig, 64);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 65), es, 1, &pol);
    memcpy(v, sig, 64);
    v[64] = 0;
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 65), es, 1, &pol);
    /* r and s each with a leading zero byte: 66 bytes */
    v[0] = 0;
    memcpy(v + 1, sig, 32);
    v[33] = 0;
    memcpy(v + 34, sig + 32, 32);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 66), es, 1, &pol);
    const size_t lens[] = { 1, 2, 32, 62, 96, 128, 256, 512, 513, 1024 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memset(v, 0x41, lens[i]);
        memcpy(v, sig, lens[i] < 64 ? lens[i] : 64);
        EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, lens[i]), es, 1, &pol);
    }
    /* the same signature in DER */
    ECDSA_SIG *ds = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(ds, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)), 1);
    unsigned char *der = NULL;
    int dl = i2d_ECDSA_SIG(ds, &der);
    ECDSA_SIG_free(ds);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, der, (size_t)dl), es, 1, &pol);
    OPENSSL_free(der);
    /* psychic signatures (CVE-2022-21449): DER r=s=0 and raw zeros */
    EXPECT(LK_ERR_TOKEN_SIGNATURE, fmt("%s.MAYCAQACAQA", in), es, 1, &pol);
    memset(v, 0, 64);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 64), es, 1, &pol);
    /* r, s out of [1, n-1] */
    uint8_t one[32] = { 0 }, ff[32], nm1[32];
    one[31] = 1;
    memset(ff, 0xFF, 32);
    memcpy(nm1, P256_N, 32);
    nm1[31] -= 1;
    const uint8_t *zero = v + 64; /* zeros */
    memset(v + 64, 0, 32);
    const struct { const uint8_t *r, *s; } rs[] = {
        { zero, sig + 32 }, { sig, zero }, { zero, zero }, { P256_N, sig + 32 }, { sig, P256_N },
        { P256_N, P256_N }, { ff, sig + 32 }, { sig, ff }, { ff, ff }, { one, one }, { nm1, nm1 },
        { zero, one }, { one, zero }, { P256_N, zero }, { zero, P256_N },
    };
    uint8_t w[64];
    for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) {
        memcpy(w, rs[i].r, 32);
        memcpy(w + 32, rs[i].s, 32);
        EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, w, 64), es, 1, &pol);
    }
    /* r and s swapped */
    memcpy(w, sig + 32, 32);
    memcpy(w + 32, sig, 32);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, w, 64), es, 1, &pol);
    /* high-S (or low-S) twin: valid ECDSA, accepted */
    memcpy(w, sig, 32);
    neg_mod_n(sig + 32, w + 32);
    EXPECT(LK_OK, with_sig(in, w, 64), es, 1, &pol);
    /* r' = n - r is not valid */
    neg_mod_n(sig, w);
    memcpy(w + 32, sig + 32, 32);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, w, 64), es, 1, &pol);
    /* a good signature of another input */
    char *in2 = fmt("%s.%s", b64s(HDR_ES), b64s(claims3(NOW, NOW + 3601, AUD)));
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in2, sig, 64), es, 1, &pol);
}

static void test_rs256_signature_forms(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *rs[] = { RS_A.cred };
    char *in = std_input(&RS_A);
    uint8_t sig[600], v[1100];
    size_t n = sign_raw(&RS_A, in, strlen(in), sig);
    assert_int_equal(n, 256);
    EXPECT(LK_OK, with_sig(in, sig, 256), rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, sig, 255), rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, sig + 1, 255), rs, 1, &pol);
    v[0] = 0;
    memcpy(v + 1, sig, 256);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 257), rs, 1, &pol); /* same number, one byte longer */
    memcpy(v, sig, 256);
    v[256] = 0;
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 257), rs, 1, &pol);
    memset(v, 0, 512);
    memcpy(v + 256, sig, 256);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 512), rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 513), rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, sig, 1), rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, sig, 64), rs, 1, &pol);
    memset(v, 0xFF, 256);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 256), rs, 1, &pol);
    memset(v, 0, 256);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 256), rs, 1, &pol);
    v[255] = 1;
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, 256), rs, 1, &pol);
    /* a signature whose first byte is zero, with that byte left out: the
     * same number in 255 bytes (OpenSSL's raw RSA accepts short input) */
    int found = 0;
    for (int tries = 0; tries < 3000 && !found; tries++) {
        char *ink = fmt("%s.%s", b64s(HDR_RS), b64s(fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\","
                                                        "\"n\":%d}", NOW, NOW + 3600, AUD, tries)));
        size_t m = sign_raw(&RS_A, ink, strlen(ink), v);
        assert_int_equal(m, 256);
        if (v[0] == 0) {
            found = 1;
            EXPECT(LK_OK, with_sig(ink, v, 256), rs, 1, &pol);
            EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(ink, v + 1, 255), rs, 1, &pol);
        }
    }
    assert_true(found);
    /* other primitives over the same input: PSS, other hashes, no DigestInfo */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t m = sizeof v;
    assert_int_equal(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, RS_A.pkey), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    assert_int_equal(EVP_DigestSign(md, v, &m, (const uint8_t *)in, strlen(in)), 1);
    EVP_MD_CTX_free(md);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, m), rs, 1, &pol);
    const EVP_MD *mds[] = { EVP_sha1(), EVP_sha384(), EVP_sha512(), EVP_sha224() };
    for (size_t i = 0; i < 4; i++) {
        md = EVP_MD_CTX_new();
        m = sizeof v;
        assert_int_equal(EVP_DigestSignInit(md, NULL, mds[i], NULL, RS_A.pkey), 1);
        assert_int_equal(EVP_DigestSign(md, v, &m, (const uint8_t *)in, strlen(in)), 1);
        EVP_MD_CTX_free(md);
        EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, m), rs, 1, &pol);
    }
    uint8_t digest[32];
    EVP_Digest(in, strlen(in), digest, NULL, EVP_sha256(), NULL);
    pctx = EVP_PKEY_CTX_new(RS_A.pkey, NULL);
    assert_int_equal(EVP_PKEY_sign_init(pctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING), 1);
    m = sizeof v;
    assert_int_equal(EVP_PKEY_sign(pctx, v, &m, digest, 32), 1);
    EVP_PKEY_CTX_free(pctx);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, m), rs, 1, &pol);
    /* another key's valid signature */
    m = sign_raw(&RS_B, in, strlen(in), v);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(in, v, m), rs, 1, &pol);
}

/* ---- base64url ----------------------------------------------------------- */

static const char ALPHA[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int alpha_index(char c)
{
    const char *p = strchr(ALPHA, c);
    return p && c ? (int)(p - ALPHA) : -1;
}

/* A header JSON (alg ES256) whose JSON length is 3k + rem, optionally with
 * a kid that makes the encoding contain both '-' and '_'. */
static char *hdr_with(size_t rem, int dash_underscore)
{
    for (int pad = 0; pad < 12; pad++) {
        char *sp = fmt("%.*s", pad, "            ");
        char *h = dash_underscore ? fmt("{\"alg\":\"ES256\",\"kid\":\"%s?\?\?>>>?\?>>\"}", sp)
                                  : fmt("{\"alg\":\"ES256\"%s}", sp);
        if (strlen(h) % 3 != rem)
            continue;
        char *e = b64s(h);
        if (!dash_underscore || (strchr(e, '-') && strchr(e, '_')))
            return h;
    }
    fail_msg("no header found");
    return NULL;
}

static char *claims_with(size_t rem, int dash_underscore)
{
    for (int pad = 0; pad < 12; pad++) {
        char *sp = fmt("%.*s", pad, "aaaaaaaaaaaa");
        char *c = fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"x\":\"%s%s\"}", NOW, NOW + 3600,
                      AUD, sp, dash_underscore ? "?\?\?>>>?\?>>" : "");
        if (strlen(c) % 3 != rem)
            continue;
        char *e = b64s(c);
        if (!dash_underscore || (strchr(e, '-') && strchr(e, '_')))
            return c;
    }
    fail_msg("no claims found");
    return NULL;
}

/* Replace the first c in s by r (s is modified); 1 if done. */
static int subst(char *s, char c, char r)
{
    char *p = strchr(s, c);
    if (p == NULL)
        return 0;
    *p = r;
    return 1;
}

static void test_base64_strictness(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *h = b64s(hdr_with(0, 1)), *p = b64s(claims_with(0, 1));
    EXPECT(LK_OK, make_token_seg(h, p, &ES_A), es, 1, &pol);
    /* the standard alphabet ('+', '/') in header and payload, re-signed over
     * the exact text so that only the encoding is wrong */
    const char pairs[2][2] = { { '-', '+' }, { '_', '/' } };
    for (int i = 0; i < 2; i++) {
        char *h2 = fmt("%s", h), *p2 = fmt("%s", p);
        assert_true(subst(h2, pairs[i][0], pairs[i][1]));
        assert_true(subst(p2, pairs[i][0], pairs[i][1]));
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(h2, p, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(h, p2, &ES_A), es, 1, &pol);
    }
    /* and in the signature: a lenient decoder would read the same bytes */
    char *in = std_input(&ES_A);
    int done = 0;
    for (int tries = 0; tries < 200 && done != 3; tries++) {
        uint8_t sig[64];
        sign_raw(&ES_A, in, strlen(in), sig);
        char *t = with_sig(in, sig, 64);
        size_t sl;
        char *s = (char *)sig_segment(t, strlen(t), &sl);
        for (int i = 0; i < 2; i++) {
            if (done & (1 << i))
                continue;
            char *t2 = fmt("%s", t);
            char *s2 = t2 + (s - t);
            if (subst(s2, pairs[i][0], pairs[i][1])) {
                EXPECT(LK_OK, t, es, 1, &pol);
                EXPECT(LK_ERR_TOKEN_MALFORMED, t2, es, 1, &pol);
                done |= 1 << i;
            }
        }
    }
    assert_int_equal(done, 3);

    /* characters outside the alphabet, in each segment */
    char *t = std_token(&ES_A);
    size_t tl = strlen(t);
    size_t d1 = (size_t)(strchr(t, '.') - t), d2 = (size_t)(strrchr(t, '.') - t);
    const size_t pos[] = { 3, d1 + 3, d2 + 3, tl - 1, 0, d1 + 1, d2 + 1 };
    const char bad[] = { '+', '/', '=', ' ', '\t', '\n', '\r', '!', '*', '~', '%', '$', '\\', '"', '\x80',
                         '\xff', '\x01', '\x7f' };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        for (size_t j = 0; j < sizeof bad; j++) {
            char *t2 = fmt("%s", t);
            t2[pos[i]] = bad[j];
            EXPECT(LK_ERR_TOKEN_MALFORMED, t2, es, 1, &pol);
        }
    /* whitespace inserted (header/payload re-signed) and around the token */
    const char *ws[] = { " ", "\n", "\r\n", "\t", "\v", "\f" };
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
        char *hs = fmt("%.10s%s%s", h, ws[i], h + 10), *ps = fmt("%.10s%s%s", p, ws[i], p + 10);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(hs, p, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(h, ps, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%.*s%s%s", (int)(d2 + 10), t, ws[i], t + d2 + 10), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s%s", t, ws[i]), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s%s", ws[i], t), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%.*s%s%s", (int)d1, t, ws[i], t + d1), es, 1, &pol);
    }
    /* non-zero unused bits: segments of length 4k+2 (4 unused bits) and
     * 4k+3 (2 unused bits); every non-canonical last character is refused */
    for (size_t rem = 1; rem <= 2; rem++) {
        char *hh = b64s(hdr_with(rem, 0)), *pp = b64s(claims_with(rem, 0));
        assert_int_equal(strlen(hh) % 4, rem + 1);
        assert_int_equal(strlen(pp) % 4, rem + 1);
        EXPECT(LK_OK, make_token_seg(hh, pp, &ES_A), es, 1, &pol);
        size_t unused = rem == 1 ? 4 : 2;
        for (int which = 0; which < 2; which++) {
            char *seg = which == 0 ? hh : pp;
            size_t sl = strlen(seg);
            int base = alpha_index(seg[sl - 1]);
            assert_int_equal(base & ((1 << unused) - 1), 0);
            for (int b = 1; b < (1 << unused); b++) {
                char *s2 = fmt("%s", seg);
                s2[sl - 1] = ALPHA[base | b];
                EXPECT(LK_ERR_TOKEN_MALFORMED,
                       which == 0 ? make_token_seg(s2, pp, &ES_A) : make_token_seg(hh, s2, &ES_A), es, 1, &pol);
            }
        }
        /* a length of 4k+1 is no base64 at all */
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(fmt("%sA", b64s(hdr_with(0, 0))), pp, &ES_A), es, 1, &pol);
    }
    /* the signature segments: ES256 86 chars, RS256-2048 342 chars, both 4k+2 */
    const tkey *keys[] = { &ES_A, &RS_A };
    for (int k = 0; k < 2; k++) {
        lk_cred *c[] = { keys[k]->cred };
        char *tk = std_token(keys[k]);
        size_t kl = strlen(tk), sl;
        sig_segment(tk, kl, &sl);
        assert_int_equal(sl, keys[k]->ec ? 86 : 342);
        int base = alpha_index(tk[kl - 1]);
        assert_int_equal(base & 15, 0);
        for (int b = 1; b < 16; b++) {
            char *t2 = fmt("%s", tk);
            t2[kl - 1] = ALPHA[base | b];
            EXPECT(LK_ERR_TOKEN_MALFORMED, t2, c, 1, &pol);
        }
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%sAAA", tk), c, 1, &pol);   /* 4k+1 */
        EXPECT(LK_ERR_TOKEN_SIGNATURE, fmt("%sAA", tk), c, 1, &pol);    /* one more byte */
    }
}

static void test_padding(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default(), strict = pol_default();
    strict.flags = 0;
    lk_cred *es[] = { ES_A.cred }, *rs[] = { RS_A.cred };
    /* the signature segment, as Google's Embedded C SDK sends it */
    char *t = std_token(&ES_A), *r = std_token(&RS_A);
    char *tp = fmt("%s==", t), *rp = fmt("%s==", r);
    lk_token_info a, b;
    assert_int_equal(verify(tp, es, 1, &pol, &a), LK_OK);
    assert_int_equal(verify(t, es, 1, &pol, &b), LK_OK);
    assert_memory_equal(&a, &b, sizeof a);
    EXPECT(LK_OK, rp, rs, 1, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, tp, es, 1, &strict);
    EXPECT(LK_ERR_TOKEN_MALFORMED, rp, rs, 1, &strict);
    EXPECT(LK_OK, t, es, 1, &strict);
    /* wrong amounts of padding, misplaced padding */
    const char *badpad[] = { "=", "===", "====", "=====", "==A", "A==", "=A=" };
    for (size_t i = 0; i < sizeof badpad / sizeof badpad[0]; i++) {
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s%s", t, badpad[i]), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s%s", r, badpad[i]), rs, 1, &pol);
    }
    /* interior '=' (a decoder that stops there would truncate) */
    size_t tl = strlen(t);
    EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%.*s==%s", (int)(tl - 40), t, t + tl - 40), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%.*s=%s", (int)(tl - 40), t, t + tl - 39), es, 1, &pol);
    /* four characters cut and "==" added is well-formed padding of a
     * 61-byte signature when the new last character's unused bits happen to
     * be zero (then the length is refused), else non-canonical base64url */
    EXPECT2(LK_ERR_TOKEN_SIGNATURE, LK_ERR_TOKEN_MALFORMED, fmt("%.*s==", (int)(tl - 4), t), es, 1, &pol);

    /* header and payload padding: accepted with the flag when it completes
     * the quantum (the signature covers the padded text), refused without */
    for (size_t rem = 1; rem <= 2; rem++) {
        const char *pad = rem == 1 ? "==" : "=";
        char *h = b64s(hdr_with(rem, 0)), *p = b64s(claims_with(rem, 0));
        char *hp = fmt("%s%s", h, pad), *pp = fmt("%s%s", p, pad);
        char *t1 = make_token_seg(hp, p, &ES_A), *t2 = make_token_seg(h, pp, &ES_A);
        char *t3 = fmt("%s==", make_token_seg(hp, pp, &ES_A));
        EXPECT(LK_OK, t1, es, 1, &pol);
        EXPECT(LK_OK, t2, es, 1, &pol);
        EXPECT(LK_OK, t3, es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, t1, es, 1, &strict);
        EXPECT(LK_ERR_TOKEN_MALFORMED, t2, es, 1, &strict);
        EXPECT(LK_ERR_TOKEN_MALFORMED, t3, es, 1, &strict);
        /* the padded text is what was signed: unpadded it does not verify */
        size_t sl;
        const char *s1 = sig_segment(t1, strlen(t1), &sl);
        EXPECT(LK_ERR_TOKEN_SIGNATURE, fmt("%s.%s.%s", h, p, s1), es, 1, &pol);
        /* too much or too little */
        const char *wrong = rem == 1 ? "=" : "==";
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(fmt("%s%s", h, wrong), p, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(h, fmt("%s%s", p, wrong), &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(fmt("%s===", h), p, &ES_A), es, 1, &pol);
        EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(h, fmt("%s%s=", p, pad), &ES_A), es, 1, &pol);
    }
    /* a segment of length 4k has nothing to complete */
    char *h0 = b64s(hdr_with(0, 0)), *p0 = b64s(claims_with(0, 0));
    EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(fmt("%s=", h0), p0, &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(fmt("%s==", h0), p0, &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(h0, fmt("%s====", p0), &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg(fmt("%.8s=%s", h0, h0 + 9), p0, &ES_A), es, 1, &pol);
    /* a segment of padding only */
    EXPECT(LK_ERR_TOKEN_MALFORMED, make_token_seg("==", p0, &ES_A), es, 1, &pol);
    EXPECT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.==", h0, p0), es, 1, &pol);
}

/* ---- credentials in lk_verify_token ------------------------------------- */

static lk_cred *cred_exp(const tkey *k, int64_t expires)
{
    lk_cred *c = NULL;
    assert_int_equal(lk_cred_parse(LK_CRED_UNSPECIFIED, k->pem, strlen(k->pem), expires, &c), LK_OK);
    assert_int_equal(lk_cred_expires(c), expires);
    return c;
}

static void test_credential_sets(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    char *t = std_token(&ES_A), *r = std_token(&RS_A);
    lk_token_info info;
    /* three credentials, only the third verifies */
    lk_cred *three[] = { ES_B.cred, RS_A.cred, ES_A.cred };
    assert_int_equal(verify(t, three, 3, &pol, &info), LK_OK);
    assert_int_equal(info.cred_index, 2);
    lk_cred *three_rs[] = { RS_B.cred, ES_A.cred, RS_A.cred };
    assert_int_equal(verify(r, three_rs, 3, &pol, &info), LK_OK);
    assert_int_equal(info.cred_index, 2);
    /* none verifies */
    lk_cred *others[] = { ES_B.cred, RS_A.cred, ES_B.cred };
    EXPECT(LK_ERR_TOKEN_SIGNATURE, t, others, 3, &pol);
    /* no credentials at all */
    lk_cred *none[1] = { NULL };
    EXPECT(LK_ERR_NO_CREDENTIAL, t, none, 0, &pol);
    EXPECT(LK_ERR_NO_CREDENTIAL, r, none, 0, &pol);
    lk_err e = lk_verify_token(V, t, strlen(t), NULL, 0, &pol, &info, NULL, 0);
    assert_true(e == LK_ERR_NO_CREDENTIAL || e == LK_ERR_ARG);

    /* expiry of credentials */
    lk_cred *a_past = cred_exp(&ES_A, NOW - 1), *a_future = cred_exp(&ES_A, NOW + 1);
    lk_cred *a_far = cred_exp(&ES_A, INT64_MAX), *r_past = cred_exp(&RS_A, NOW - 100000);
    lk_cred *s1[] = { a_past };
    EXPECT(LK_ERR_NO_CREDENTIAL, t, s1, 1, &pol);
    lk_cred *s2[] = { a_past, ES_B.cred };
    EXPECT(LK_ERR_TOKEN_SIGNATURE, t, s2, 2, &pol);
    lk_cred *s3[] = { a_past, a_future };
    assert_int_equal(verify(t, s3, 2, &pol, &info), LK_OK);
    assert_int_equal(info.cred_index, 1);
    lk_cred *s4[] = { a_far };
    EXPECT(LK_OK, t, s4, 1, &pol);
    lk_cred *s5[] = { r_past, a_past };
    EXPECT(LK_ERR_NO_CREDENTIAL, t, s5, 2, &pol);
    EXPECT(LK_ERR_NO_CREDENTIAL, r, s5, 2, &pol);
    /* the only ES256 credential expired, an RSA one still valid: "no
     * credential of that alg" (ALG) or "no unexpired credential" for this
     * token (NO_CREDENTIAL); the contract can be read either way */
    lk_cred *s6[] = { a_past, RS_A.cred };
    EXPECT2(LK_ERR_TOKEN_ALG, LK_ERR_NO_CREDENTIAL, t, s6, 2, &pol);
    /* the expiry is checked against pol.now, not wall time */
    lk_verify_policy later = pol;
    later.now = NOW + 2;
    EXPECT(LK_ERR_NO_CREDENTIAL, t, &a_future, 1, &later);
    lk_cred_free(a_past);
    lk_cred_free(a_future);
    lk_cred_free(a_far);
    lk_cred_free(r_past);
}

/* Report every mismatch of a test before failing it. */
static int soft_failures;

static void soft_at(int line, lk_err want, const char *tok, lk_cred *const *creds, size_t n,
                    const lk_verify_policy *pol)
{
    char why[WHY_SIZE];
    lk_err e = verify_at(line, tok, strlen(tok), creds, n, pol, NULL, why);
    if (e != want) {
        soft_failures++;
        print_message("  line %d: want %s, got %s (why: %s)\n", line, lk_errname(want), lk_errname(e), why);
    }
}

#define SOFT(want, tok, creds, n, pol) soft_at(__LINE__, (want), (tok), (creds), (n), (pol))

/* "The rules are applied in this order and the first that fails is the one
 * reported": tokens that break two rules at once. */
static void test_rule_order(void **state)
{
    (void)state;
    soft_failures = 0;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred }, *rs[] = { RS_A.cred }, *none[1] = { NULL };
    char *h_es = b64s(HDR_ES), *h_none = b64s("{\"alg\":\"none\"}"), *h_crit = b64s("{\"alg\":\"ES256\",\"crit\":[\"x\"]}");
    char *c_ok = b64s(std_claims()), *c_expired = b64s(claims3(NOW - 10000, NOW - 9000, AUD));
    char *c_empty = b64s("{}"), *c_foo = b64s("foo");
    char *sig_ok = b64("x", 1); /* decodes, verifies nothing */
    const char *sig_bad = "not+base64/url";

    /* 1 before everything */
    pol.max_len = 10;
    SOFT(LK_ERR_TOKEN_TOO_LARGE, fmt("%s.%s.%s", h_none, c_foo, sig_bad), none, 0, &pol);
    pol = pol_default();
    /* 2 (every segment strict base64url) before 3, 4, 5, 6 */
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_none, c_ok, sig_bad), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_none, "@@@@", sig_ok), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_crit, c_ok, sig_bad), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_ok, sig_bad), none, 0, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_ok, sig_bad), rs, 1, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_empty, sig_bad), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_expired, sig_bad), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s=", h_es, c_expired, sig_ok), es, 1, &pol);
    char *long_bad = keep(malloc(1601));
    memset(long_bad, 'A', 1600);
    long_bad[800] = '+';
    long_bad[1600] = '\0';
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_ok, long_bad), es, 1, &pol);
    /* 3 (header and claims are JSON objects) before 4 */
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_foo, sig_ok), none, 0, &pol);
    SOFT(LK_ERR_TOKEN_MALFORMED, fmt("%s.%s.%s", h_es, c_foo, sig_ok), rs, 1, &pol);
    SOFT(LK_ERR_TOKEN_HEADER, fmt("%s.%s.%s", h_crit, c_ok, sig_ok), none, 0, &pol);
    SOFT(LK_ERR_TOKEN_ALG, fmt("%s.%s.%s", h_none, c_ok, sig_ok), none, 0, &pol);
    /* 4 before 5 */
    SOFT(LK_ERR_TOKEN_ALG, fmt("%s.%s.%s", h_es, c_empty, sig_ok), rs, 1, &pol);
    SOFT(LK_ERR_NO_CREDENTIAL, fmt("%s.%s.%s", h_es, c_empty, sig_ok), none, 0, &pol);
    /* 5 before 6 */
    SOFT(LK_ERR_TOKEN_AUDIENCE, make_token(HDR_ES, claims3(NOW - 10000, NOW - 9000, "other"), &ES_A), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_CLAIM, make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 "}", NOW + 9000,
                                                      NOW + 9001), &ES_A), es, 1, &pol);
    /* 6 before 7 */
    SOFT(LK_ERR_TOKEN_EXPIRED, fmt("%s.%s.%s", h_es, c_expired, sig_ok), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_FUTURE, fmt("%s.%s.%s", h_es, b64s(claims3(NOW + 9000, NOW + 9001, AUD)), sig_ok), es, 1, &pol);
    SOFT(LK_ERR_TOKEN_LIFETIME, fmt("%s.%s.%s", h_es, b64s(claims3(NOW, NOW + 200000, AUD)), sig_ok), es, 1, &pol);
    /* and the signature last */
    SOFT(LK_ERR_TOKEN_SIGNATURE, fmt("%s.%s.%s", h_es, c_ok, sig_ok), es, 1, &pol);
    assert_int_equal(soft_failures, 0);
}

static void test_why_and_info(void **state)
{
    (void)state;
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *good = std_token(&ES_A);
    const char *toks[] = {
        good, std_token(&ES_B), make_token(HDR_ES, claims3(NOW - 10000, NOW - 9000, AUD), &ES_A),
        fmt("%s=", good), "x.y.z",
    };
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        const size_t sizes[] = { 0, 1, 8 };
        for (size_t j = 0; j < 3; j++) {
            char why[64];
            memset(why, 'Z', sizeof why);
            lk_token_info info;
            memset(&info, 0xA5, sizeof info);
            lk_err e = lk_verify_token(V, toks[i], strlen(toks[i]), es, 1, &pol, &info, why, sizes[j]);
            assert_int_equal(e, i == 0 ? LK_OK : e);
            if (sizes[j] == 0) {
                assert_true(lk_test_all_bytes(why, sizeof why, 'Z'));
            } else {
                assert_non_null(memchr(why, '\0', sizes[j]));
                assert_true(lk_test_all_bytes(why + sizes[j], sizeof why - sizes[j], 'Z'));
            }
            if (e != LK_OK)
                assert_true(lk_test_all_bytes(&info.iat, sizeof info.iat, 0));
        }
        /* why may be NULL with any size */
        lk_token_info info;
        lk_err e = lk_verify_token(V, toks[i], strlen(toks[i]), es, 1, &pol, &info, NULL, 100);
        assert_int_equal(e, i == 0 ? LK_OK : e);
    }
    /* a long why for the signature failure: no piece of the signature */
    char why[4096];
    char *bad = std_token(&ES_B);
    lk_token_info info;
    assert_int_equal(lk_verify_token(V, bad, strlen(bad), es, 1, &pol, &info, why, sizeof why),
                     LK_ERR_TOKEN_SIGNATURE);
    check_why_clean(__LINE__, why, bad, strlen(bad));
    assert_true(strlen(why) > 0);
    /* info on failure: all fields zero */
    assert_int_equal(info.alg, 0);
    assert_int_equal(info.iat, 0);
    assert_int_equal(info.exp, 0);
    assert_int_equal(info.valid_until, 0);
    assert_int_equal(info.cred_index, 0);
}

/* ---- tamper with every byte ---------------------------------------------- */

static void tamper_all(const tkey *k)
{
    lk_verify_policy pol = pol_default();
    lk_cred *c[] = { ES_B.cred, RS_B.cred, k->cred };
    char *t = std_token(k);
    size_t tl = strlen(t);
    EXPECT(LK_OK, t, c, 3, &pol);
    char *m = keep(malloc(tl + 1));
    size_t tried = 0;
    lk_token_info info;
    for (size_t i = 0; i < tl; i++) {
        for (size_t a = 0; a < 64; a++) {
            if (ALPHA[a] == t[i])
                continue;
            memcpy(m, t, tl + 1);
            m[i] = ALPHA[a];
            lk_err e = lk_verify_token(V, m, tl, c, 3, &pol, &info, NULL, 0);
            tried++;
            if (e == LK_OK || !(e >= LK_ERR_TOKEN_TOO_LARGE && e <= LK_ERR_NO_CREDENTIAL))
                fail_msg("%s: byte %zu '%c' -> '%c' gave %s", k->ec ? "ES256" : "RS256", i, t[i], ALPHA[a],
                         lk_errname(e));
        }
        /* deleting the byte */
        memcpy(m, t, i);
        memcpy(m + i, t + i + 1, tl - i);
        assert_int_not_equal(lk_verify_token(V, m, tl - 1, c, 3, &pol, &info, NULL, 0), LK_OK);
    }
    print_message("%s: %zu single-character changes of a %zu-char token, none accepted\n",
                  k->ec ? "ES256" : "RS256", tried, tl);
}

static void test_tamper_every_byte(void **state)
{
    (void)state;
    tamper_all(&ES_A);
    tamper_all(&RS_A);
}

/* ---- lk_cred_parse ------------------------------------------------------- */

static char *cert_pem(EVP_PKEY *subject, EVP_PKEY *signer, long not_before, long not_after)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), not_before));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), not_after));
    assert_int_equal(X509_set_pubkey(x, subject), 1);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"latchkey-test", -1, -1, 0);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    X509_free(x);
    return keep(pem_of_bio(bio));
}

static char *priv_pem(EVP_PKEY *k, int traditional)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (traditional)
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL), 1);
    return keep(pem_of_bio(bio));
}

/* "-----BEGIN RSA PUBLIC KEY-----" (PKCS#1) */
static char *rsa_pkcs1_pub_pem(EVP_PKEY *k)
{
    OSSL_ENCODER_CTX *ctx = OSSL_ENCODER_CTX_new_for_pkey(k, EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific", NULL);
    assert_non_null(ctx);
    unsigned char *data = NULL;
    size_t len = 0;
    assert_int_equal(OSSL_ENCODER_to_data(ctx, &data, &len), 1);
    OSSL_ENCODER_CTX_free(ctx);
    char *s = keep(malloc(len + 1));
    memcpy(s, data, len);
    s[len] = '\0';
    OPENSSL_free(data);
    return s;
}

/* An RSA public key (PEM) with a random modulus of exactly `bits` bits and
 * no small factors: no key generation needed for the size limits. */
static char *rsa_pub_pem_of_bits(int bits, uint64_t *rng)
{
    BIGNUM *n = BN_new(), *e = BN_new(), *g = BN_new(), *prim = BN_new();
    BN_CTX *bc = BN_CTX_new();
    BN_set_word(prim, 1);
    for (unsigned p = 3; p < 2000; p += 2) {
        int isp = 1;
        for (unsigned q = 3; q * q <= p; q += 2)
            if (p % q == 0)
                isp = 0;
        if (isp)
            BN_mul_word(prim, p);
    }
    uint8_t buf[1100];
    size_t nb = ((size_t)bits + 7) / 8;
    for (;;) {
        lk_test_rand_bytes(rng, buf, nb);
        int top = bits - (int)(nb - 1) * 8; /* bits in the first byte, 1..8 */
        buf[0] &= (uint8_t)((1u << top) - 1);
        buf[0] |= (uint8_t)(1u << (top - 1));
        buf[nb - 1] |= 1;
        BN_bin2bn(buf, (int)nb, n);
        BN_gcd(g, n, prim, bc);
        if (BN_is_one(g))
            break;
    }
    assert_int_equal(BN_num_bits(n), bits);
    BN_set_word(e, 65537);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    char *pem = keep(pubkey_pem(k));
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    BN_free(g);
    BN_free(prim);
    BN_CTX_free(bc);
    return pem;
}

static lk_err parse(lk_cred_format fmt_, const char *pem, lk_cred **out)
{
    lk_cred *c = (lk_cred *)(uintptr_t)0x1;
    lk_err e = lk_cred_parse(fmt_, pem, strlen(pem), 0, &c);
    if (e != LK_OK)
        assert_null(c);
    if (out != NULL)
        *out = e == LK_OK ? c : NULL;
    else if (e == LK_OK)
        lk_cred_free(c);
    return e;
}

#define PARSE_FAILS(want, fmt_, pem)                                                              \
    do {                                                                                          \
        lk_err e_ = parse((fmt_), (pem), NULL);                                                   \
        if (e_ != (want))                                                                         \
            fail_msg("line %d: lk_cred_parse(%s): want %s, got %s", __LINE__,                    \
                     lk_cred_format_name(fmt_), lk_errname(want), lk_errname(e_));                \
    } while (0)

static void spki_sha256(EVP_PKEY *k, uint8_t out[32])
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k, &der);
    assert_true(n > 0);
    EVP_Digest(der, (size_t)n, out, NULL, EVP_sha256(), NULL);
    OPENSSL_free(der);
}

static void test_cred_formats(void **state)
{
    (void)state;
    struct { const tkey *k; int cert; lk_cred_format fmt; lk_alg alg; } cases[] = {
        { &ES_A, 0, LK_CRED_ES256_PEM, LK_ALG_ES256 },
        { &ES_A, 1, LK_CRED_ES256_X509_PEM, LK_ALG_ES256 },
        { &RS_A, 0, LK_CRED_RSA_PEM, LK_ALG_RS256 },
        { &RS_A, 1, LK_CRED_RSA_X509_PEM, LK_ALG_RS256 },
    };
    lk_verify_policy pol = pol_default();
    for (size_t i = 0; i < 4; i++) {
        const tkey *k = cases[i].k;
        /* certificates: self-signed, and one long expired (validity dates
         * are not checked here) */
        const char *pems[2];
        pems[0] = cases[i].cert ? cert_pem(k->pkey, k->pkey, -3600, 86400) : k->pem;
        pems[1] = cases[i].cert ? cert_pem(k->pkey, k->pkey, -86400 * 3650L, -86400 * 365L) : k->pem;
        uint8_t want_fp[32], fp[32];
        spki_sha256(k->pkey, want_fp);
        for (int j = 0; j < 2; j++) {
            lk_cred_format fmts[2] = { cases[i].fmt, LK_CRED_UNSPECIFIED };
            for (int f = 0; f < 2; f++) {
                lk_cred *c = NULL;
                assert_int_equal(lk_cred_parse(fmts[f], pems[j], strlen(pems[j]), 1234567, &c), LK_OK);
                assert_int_equal(lk_cred_get_format(c), cases[i].fmt);
                assert_int_equal(lk_cred_alg(c), cases[i].alg);
                assert_int_equal(lk_cred_expires(c), 1234567);
                lk_cred_fingerprint(c, fp);
                assert_memory_equal(fp, want_fp, 32);
                lk_cred_free(c);
            }
        }
        /* a token verifies with the certificate credential */
        lk_cred *c = NULL;
        assert_int_equal(lk_cred_parse(cases[i].fmt, pems[0], strlen(pems[0]), 0, &c), LK_OK);
        EXPECT(LK_OK, std_token(k), &c, 1, &pol);
        lk_cred_free(c);
    }
    /* a P-256 key in a certificate signed by an RSA key: the subject key counts */
    PARSE_FAILS(LK_OK, LK_CRED_ES256_X509_PEM, cert_pem(ES_A.pkey, RS_A.pkey, -10, 1000));
    lk_cred_free(NULL);
}

static void test_cred_refused(void **state)
{
    (void)state;
    const lk_err INV = LK_ERR_CRED_INVALID;
    char *es_cert = cert_pem(ES_A.pkey, ES_A.pkey, -10, 1000), *rs_cert = cert_pem(RS_A.pkey, RS_A.pkey, -10, 1000);
    /* format and key type or PEM label disagree */
    PARSE_FAILS(INV, LK_CRED_ES256_PEM, RS_A.pem);
    PARSE_FAILS(INV, LK_CRED_RSA_PEM, ES_A.pem);
    PARSE_FAILS(INV, LK_CRED_ES256_X509_PEM, rs_cert);
    PARSE_FAILS(INV, LK_CRED_RSA_X509_PEM, es_cert);
    PARSE_FAILS(INV, LK_CRED_RSA_X509_PEM, RS_A.pem);
    PARSE_FAILS(INV, LK_CRED_ES256_X509_PEM, ES_A.pem);
    PARSE_FAILS(INV, LK_CRED_RSA_PEM, rs_cert);
    PARSE_FAILS(INV, LK_CRED_ES256_PEM, es_cert);
    /* other curves and key types */
    EVP_PKEY *p384 = EVP_EC_gen("P-384"), *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), *x25519 = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    EVP_PKEY *r1024 = EVP_RSA_gen(1024);
    assert_non_null(p384);
    assert_non_null(k1);
    assert_non_null(ed);
    assert_non_null(x25519);
    assert_non_null(r1024);
    EVP_PKEY *weird[] = { p384, k1, ed, x25519, r1024 };
    for (size_t i = 0; i < 5; i++) {
        char *pem = keep(pubkey_pem(weird[i]));
        PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, pem);
        PARSE_FAILS(INV, LK_CRED_ES256_PEM, pem);
        PARSE_FAILS(INV, LK_CRED_RSA_PEM, pem);
        if (weird[i] != x25519) {
            char *cert = cert_pem(weird[i], weird[i] == ed || weird[i] == x25519 ? ES_A.pkey : weird[i], -10, 1000);
            PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, cert);
            PARSE_FAILS(INV, LK_CRED_ES256_X509_PEM, cert);
            PARSE_FAILS(INV, LK_CRED_RSA_X509_PEM, cert);
        }
    }
    /* RSA sizes: 2048..8192 */
    uint64_t rng = 7;
    PARSE_FAILS(INV, LK_CRED_RSA_PEM, rsa_pub_pem_of_bits(2047, &rng));
    PARSE_FAILS(LK_OK, LK_CRED_RSA_PEM, rsa_pub_pem_of_bits(2048, &rng));
    PARSE_FAILS(LK_OK, LK_CRED_RSA_PEM, rsa_pub_pem_of_bits(8192, &rng));
    PARSE_FAILS(INV, LK_CRED_RSA_PEM, rsa_pub_pem_of_bits(8193, &rng));
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, rsa_pub_pem_of_bits(8200, &rng));
    /* an 8192-bit credential and an RS256 token with a 1024-byte signature:
     * refused cleanly (the signature is longer than LK_SIG_MAX_BYTES) */
    lk_cred *big = NULL;
    char *bigpem = rsa_pub_pem_of_bits(8192, &rng);
    assert_int_equal(lk_cred_parse(LK_CRED_RSA_PEM, bigpem, strlen(bigpem), 0, &big), LK_OK);
    assert_int_equal(lk_cred_alg(big), LK_ALG_RS256);
    uint8_t sig[1024];
    lk_test_rand_bytes(&rng, sig, sizeof sig);
    sig[0] = 0;
    lk_verify_policy pol = pol_default();
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(std_input(&RS_A), sig, 1024), &big, 1, &pol);
    EXPECT(LK_ERR_TOKEN_SIGNATURE, with_sig(std_input(&RS_A), sig, 512), &big, 1, &pol);
    lk_cred *big_and_a[] = { big, RS_A.cred };
    EXPECT(LK_OK, std_token(&RS_A), big_and_a, 2, &pol);
    lk_cred_free(big);
    /* private keys, PKCS#1 public keys */
    const tkey *ks[] = { &ES_A, &RS_A };
    for (int i = 0; i < 2; i++) {
        PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, priv_pem(ks[i]->pkey, 0));
        PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, priv_pem(ks[i]->pkey, 1));
        PARSE_FAILS(INV, ks[i]->ec ? LK_CRED_ES256_PEM : LK_CRED_RSA_PEM, priv_pem(ks[i]->pkey, 0));
        PARSE_FAILS(INV, ks[i]->ec ? LK_CRED_ES256_PEM : LK_CRED_RSA_PEM, priv_pem(ks[i]->pkey, 1));
        PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, fmt("%s%s", ks[i]->pem, priv_pem(ks[i]->pkey, 0)));
    }
    PARSE_FAILS(INV, LK_CRED_RSA_PEM, rsa_pkcs1_pub_pem(RS_A.pkey));
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, rsa_pkcs1_pub_pem(RS_A.pkey));
    /* exactly one PEM object */
    PARSE_FAILS(INV, LK_CRED_ES256_PEM, fmt("%s%s", ES_A.pem, ES_B.pem));
    PARSE_FAILS(INV, LK_CRED_ES256_PEM, fmt("%s%s", ES_A.pem, ES_A.pem));
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, fmt("%s%s", ES_A.pem, ES_A.pem));
    PARSE_FAILS(INV, LK_CRED_ES256_X509_PEM, fmt("%s%s", es_cert, es_cert));
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, fmt("%s%s", es_cert, ES_A.pem));
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, fmt("%s%s", ES_A.pem, es_cert));
    PARSE_FAILS(INV, LK_CRED_RSA_PEM, fmt("%s%s", RS_A.pem, RS_B.pem));
    /* broken PEM */
    char *cut = fmt("%.*s", (int)strlen(ES_A.pem) - 26, ES_A.pem); /* no END line */
    PARSE_FAILS(INV, LK_CRED_ES256_PEM, cut);
    char *corrupt = fmt("%s", ES_A.pem);
    corrupt[40] = corrupt[40] == 'A' ? 'B' : 'A';
    assert_int_not_equal(parse(LK_CRED_ES256_PEM, corrupt, NULL), LK_OK);
    char *nobody = fmt("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n");
    PARSE_FAILS(INV, LK_CRED_ES256_PEM, nobody);
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, "hello");
    char *relabel = fmt("%s", ES_A.pem);
    memcpy(relabel + 11, "PUBLIC KEZ", 10);
    PARSE_FAILS(INV, LK_CRED_UNSPECIFIED, relabel);
    /* size: over LK_CRED_PEM_MAX is an argument error, whatever the content */
    size_t pl = strlen(ES_A.pem);
    char *big_pem = keep(malloc(LK_CRED_PEM_MAX + 2));
    memcpy(big_pem, ES_A.pem, pl);
    memset(big_pem + pl, '\n', LK_CRED_PEM_MAX + 1 - pl);
    big_pem[LK_CRED_PEM_MAX + 1] = '\0';
    lk_cred *c = (lk_cred *)(uintptr_t)0x1;
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, big_pem, LK_CRED_PEM_MAX + 1, 0, &c), LK_ERR_ARG);
    assert_null(c);
    lk_err e = lk_cred_parse(LK_CRED_ES256_PEM, big_pem, LK_CRED_PEM_MAX, 0, &c);
    assert_int_not_equal(e, LK_ERR_ARG);
    print_message("lk_cred_parse of a P-256 PEM followed by newlines up to LK_CRED_PEM_MAX: %s\n", lk_errname(e));
    lk_cred_free(e == LK_OK ? c : NULL);
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, big_pem, SIZE_MAX, 0, &c), LK_ERR_ARG);
    /* arguments */
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, NULL, 10, 0, &c), LK_ERR_ARG);
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, ES_A.pem, pl, 0, NULL), LK_ERR_ARG);
    e = lk_cred_parse(LK_CRED_ES256_PEM, ES_A.pem, 0, 0, &c);
    assert_true(e == LK_ERR_ARG || e == INV);
    e = lk_cred_parse((lk_cred_format)99, ES_A.pem, pl, 0, &c);
    assert_true(e == LK_ERR_ARG || e == INV);
    e = lk_cred_parse(LK_CRED_ES256_PEM, ES_A.pem, pl, -5, &c);
    assert_true(e == LK_ERR_ARG || e == INV || e == LK_OK);
    if (e == LK_OK)
        lk_cred_free(c);
    for (size_t i = 0; i < 5; i++)
        EVP_PKEY_free(weird[i]);
}

/* A P-256 public key with explicit curve parameters; the generator is G
 * itself or, CurveBall-style (CVE-2020-0601), the victim's public point Q,
 * so that the "private key" for Q is 1. */
static char *explicit_p256_pem(const tkey *victim, int custom_generator)
{
    EC_GROUP *grp = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    BN_CTX *bc = BN_CTX_new();
    BIGNUM *p = BN_new(), *a = BN_new(), *b = BN_new();
    assert_int_equal(EC_GROUP_get_curve(grp, p, a, b, bc), 1);
    uint8_t q[65], g[65];
    size_t ql = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(victim->pkey, OSSL_PKEY_PARAM_PUB_KEY, q, sizeof q, &ql), 1);
    assert_int_equal(ql, 65);
    if (custom_generator)
        memcpy(g, q, 65);
    else
        assert_int_equal(EC_POINT_point2oct(grp, EC_GROUP_get0_generator(grp), POINT_CONVERSION_UNCOMPRESSED,
                                            g, sizeof g, bc), 65);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_EC_FIELD_TYPE, "prime-field", 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_EC_P, p), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_EC_A, a), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_EC_B, b), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_EC_ORDER, EC_GROUP_get0_order(grp)), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_EC_COFACTOR, BN_value_one()), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_EC_GENERATOR, g, 65), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, q, 65), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_EC_ENCODING, "explicit", 0), 1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *k = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    char *pem = keep(pubkey_pem(k));
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(p);
    BN_free(a);
    BN_free(b);
    BN_CTX_free(bc);
    EC_GROUP_free(grp);
    return pem;
}

/* An RSA public key (n of RS_A) with another public exponent. */
static EVP_PKEY *rsa_pub_with_e(const BIGNUM *e)
{
    BIGNUM *n = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(RS_A.pkey, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    return k;
}

static char *rsa_with_e(unsigned long e_word)
{
    BIGNUM *n = NULL, *e = BN_new();
    assert_int_equal(EVP_PKEY_get_bn_param(RS_A.pkey, OSSL_PKEY_PARAM_RSA_N, &n), 1);
    BN_set_word(e, e_word);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params), 1);
    char *pem = keep(pubkey_pem(k));
    EVP_PKEY_free(k);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pem;
}

static void test_cred_weak_parameters(void **state)
{
    (void)state;
    /* CurveBall: not P-256 (a curve other than P-256 is refused) */
    char *ball = explicit_p256_pem(&ES_A, 1);
    PARSE_FAILS(LK_ERR_CRED_INVALID, LK_CRED_ES256_PEM, ball);
    PARSE_FAILS(LK_ERR_CRED_INVALID, LK_CRED_UNSPECIFIED, ball);
    /* the genuine curve spelled out: the same key; record the choice */
    lk_cred *c = NULL;
    char *expl = explicit_p256_pem(&ES_A, 0);
    lk_err e = parse(LK_CRED_ES256_PEM, expl, &c);
    print_message("  P-256 with explicit (standard) parameters -> %s\n", lk_errname(e));
    assert_true(e == LK_OK || e == LK_ERR_CRED_INVALID);
    if (e == LK_OK) {
        lk_verify_policy pol = pol_default();
        EXPECT(LK_OK, std_token(&ES_A), &c, 1, &pol);
        lk_cred_free(c);
    }
    /* RSA public exponents. e = 1 makes the "signature" the padded digest
     * itself: anyone can sign for such a key. An even e is no RSA key
     * (RFC 8017 §3.1: e odd, 3 <= e <= n - 1). Neither is "a usable key of
     * its format" (LK_ERR_CRED_INVALID); e = 3 is (Wycheproof has valid
     * e = 3 signatures, and OpenSSL compares the whole encoding, so the
     * Bleichenbacher e = 3 forgery does not apply). */
    const struct { unsigned long e; lk_err want; } es[] = {
        { 1, LK_ERR_CRED_INVALID }, { 2, LK_ERR_CRED_INVALID }, { 65536, LK_ERR_CRED_INVALID },
        { 3, LK_OK }, { 17, LK_OK },
    };
    int wrong = 0;
    for (size_t i = 0; i < sizeof es / sizeof es[0]; i++) {
        e = parse(LK_CRED_RSA_PEM, rsa_with_e(es[i].e), &c);
        if (e != es[i].want) {
            wrong++;
            print_message("  RSA-2048 with e = %lu: want %s, got %s\n", es[i].e, lk_errname(es[i].want),
                          lk_errname(e));
        }
        if (e == LK_OK && es[i].e == 1) {
            /* forge: EM = 00 01 FF.. 00 DigestInfo(SHA-256(input)) */
            char *in = std_input(&RS_A);
            static const uint8_t di[19] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                            0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
            uint8_t em[256];
            memset(em, 0xFF, sizeof em);
            em[0] = 0;
            em[1] = 1;
            em[256 - 52] = 0;
            memcpy(em + 256 - 51, di, 19);
            EVP_Digest(in, strlen(in), em + 256 - 32, NULL, EVP_sha256(), NULL);
            lk_verify_policy pol = pol_default();
            lk_err f = verify(with_sig(in, em, 256), &c, 1, &pol, NULL);
            print_message("    with it, a token \"signed\" without any private key -> %s\n", lk_errname(f));
        }
        if (e == LK_OK)
            lk_cred_free(c);
    }
    assert_int_equal(wrong, 0);
}

/* 2^bits + add (add may be negative). */
static BIGNUM *pow2_plus(int bits, long add)
{
    BIGNUM *e = BN_new();
    assert_non_null(e);
    assert_int_equal(BN_set_bit(e, bits), 1);
    if (add >= 0)
        assert_int_equal(BN_add_word(e, (BN_ULONG)add), 1);
    else
        assert_int_equal(BN_sub_word(e, (BN_ULONG)-add), 1);
    return e;
}

/* A real RSA-2048 key pair with public exponent e (made now, never stored). */
static EVP_PKEY *rsa_gen_with_e(const BIGNUM *e)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048), 1);
    assert_int_equal(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, (BIGNUM *)e), 1);
    assert_int_equal(EVP_PKEY_generate(ctx, &k), 1);
    EVP_PKEY_CTX_free(ctx);
    return k;
}

/* Seconds for n OpenSSL verifications of sig over msg with k. */
static double verify_seconds(EVP_PKEY *k, const char *msg, const uint8_t *sig, size_t sig_len, int n)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k), 1);
        assert_int_equal(EVP_DigestVerify(md, sig, sig_len, (const uint8_t *)msg, strlen(msg)), 1);
        EVP_MD_CTX_free(md);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

/* Issue 10, item 7: every RS256 verification costs a modular multiplication
 * per bit of the public exponent, so a credential with a huge e makes each
 * of its device's connections slow. At most LK_CRED_RSA_E_MAX_BITS = 64 bits
 * (OpenSSL's own bound above 3072-bit moduli): the largest e accepted is
 * 2^64 - 1, the smallest refused for its size 2^64 + 1. */
static void test_cred_rsa_exponent_bound(void **state)
{
    (void)state;
    assert_int_equal(LK_CRED_RSA_E_MAX_BITS, 64);
    const struct { int bits; long add; lk_err want; } es[] = {
        { 64, -1, LK_OK },                 /* 2^64 - 1: 64 bits, the largest */
        { 63, 1, LK_OK },                  /* 2^63 + 1: 64 bits */
        { 64, -59, LK_OK },                /* the largest 64-bit prime */
        { 64, 1, LK_ERR_CRED_INVALID },    /* 2^64 + 1: 65 bits */
        { 65, 1, LK_ERR_CRED_INVALID },    /* 66 bits */
        { 2047, 1, LK_ERR_CRED_INVALID },  /* 2048 bits */
        { 2046, 1, LK_ERR_CRED_INVALID },  /* 2047 bits */
        { 64, 0, LK_ERR_CRED_INVALID },    /* 2^64: 65 bits and even */
    };
    for (size_t i = 0; i < sizeof es / sizeof es[0]; i++) {
        BIGNUM *e = pow2_plus(es[i].bits, es[i].add);
        EVP_PKEY *k = rsa_pub_with_e(e);
        char *pem = keep(pubkey_pem(k));
        /* the same key as the subject of a certificate (signed by RS_B) */
        char *crt = cert_pem(k, RS_B.pkey, -3600, 3600);
        lk_cred *c = NULL;
        lk_err got = parse(LK_CRED_RSA_PEM, pem, &c);
        if (got != es[i].want)
            fail_msg("e = 2^%d %+ld (%d bits): want %s, got %s", es[i].bits, es[i].add, BN_num_bits(e),
                     lk_errname(es[i].want), lk_errname(got));
        lk_cred_free(c);
        PARSE_FAILS(es[i].want, LK_CRED_UNSPECIFIED, pem);
        PARSE_FAILS(es[i].want, LK_CRED_RSA_X509_PEM, crt);
        PARSE_FAILS(es[i].want, LK_CRED_UNSPECIFIED, crt);
        EVP_PKEY_free(k);
        BN_free(e);
    }

    /* Real key pairs on both sides of the bound: the 64-bit one verifies
     * tokens; the 2048-bit one is a genuine key (OpenSSL verifies its
     * signature, slowly) and is refused all the same. */
    BIGNUM *e64 = pow2_plus(64, -59), *e2048 = pow2_plus(2047, 1);
    tkey k64 = { rsa_gen_with_e(e64), 0, NULL, NULL };
    tkey big = { rsa_gen_with_e(e2048), 0, NULL, NULL };
    k64.pem = pubkey_pem(k64.pkey);
    big.pem = pubkey_pem(big.pkey);
    assert_int_equal(parse(LK_CRED_RSA_PEM, k64.pem, &k64.cred), LK_OK);
    lk_verify_policy pol = pol_default();
    EXPECT(LK_OK, std_token(&k64), &k64.cred, 1, &pol);
    PARSE_FAILS(LK_ERR_CRED_INVALID, LK_CRED_RSA_PEM, big.pem);
    PARSE_FAILS(LK_ERR_CRED_INVALID, LK_CRED_RSA_X509_PEM, cert_pem(big.pkey, big.pkey, -3600, 3600));
    {
        char *in = std_input(&big);
        uint8_t sig[256], sig65537[256];
        size_t n = sign_raw(&big, in, strlen(in), sig);
        size_t m = sign_raw(&RS_A, in, strlen(in), sig65537);
        double slow = verify_seconds(big.pkey, in, sig, n, 20);
        double fast = verify_seconds(RS_A.pkey, in, sig65537, m, 20);
        print_message("  RSA-2048 verification with a 2048-bit e: %.0f us, with e = 65537: %.0f us (%.0fx)\n",
                      slow / 20 * 1e6, fast / 20 * 1e6, slow / fast);
    }
    key_free(&k64);
    lk_cred_free(big.cred);
    free(big.pem);
    EVP_PKEY_free(big.pkey);
    BN_free(e64);
    BN_free(e2048);
}

/* Record (not assert) what happens around a single PEM object: these are
 * compatibility choices the contract does not fix. */
static void test_cred_pem_surroundings(void **state)
{
    (void)state;
    size_t pl = strlen(ES_A.pem);
    struct { const char *what; char *pem; } cases[] = {
        { "no final newline", fmt("%.*s", (int)pl - 1, ES_A.pem) },
        { "extra trailing newlines", fmt("%s\n\n", ES_A.pem) },
        { "trailing spaces", fmt("%s   ", ES_A.pem) },
        { "CRLF line ends", NULL },
        { "leading newline", fmt("\n%s", ES_A.pem) },
        { "text before BEGIN", fmt("Subject: device 1\n%s", ES_A.pem) },
        { "text after END", fmt("%sgarbage\n", ES_A.pem) },
        { "NUL inside the length", NULL },
    };
    char *crlf = keep(malloc(2 * pl + 1)), *q = crlf;
    for (size_t i = 0; i < pl; i++) {
        if (ES_A.pem[i] == '\n')
            *q++ = '\r';
        *q++ = ES_A.pem[i];
    }
    *q = '\0';
    cases[3].pem = crlf;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lk_cred *c = NULL;
        lk_err e, e2;
        if (cases[i].pem == NULL) {
            char *nul = fmt("%sX", ES_A.pem);
            nul[pl] = '\0';
            e = lk_cred_parse(LK_CRED_ES256_PEM, nul, pl + 1, 0, &c);
            lk_cred_free(c);
            c = NULL;
            e2 = lk_cred_parse(LK_CRED_ES256_PEM, nul, pl + 1, 0, &c);
        } else {
            e = lk_cred_parse(LK_CRED_ES256_PEM, cases[i].pem, strlen(cases[i].pem), 0, &c);
            if (e == LK_OK) {
                uint8_t a[32], b[32];
                lk_cred_fingerprint(c, a);
                lk_cred_fingerprint(ES_A.cred, b);
                assert_memory_equal(a, b, 32);
            }
            lk_cred_free(c);
            c = NULL;
            e2 = lk_cred_parse(LK_CRED_ES256_PEM, cases[i].pem, strlen(cases[i].pem), 0, &c);
        }
        lk_cred_free(c);
        assert_int_equal(e, e2); /* deterministic */
        assert_true(e == LK_OK || e == LK_ERR_CRED_INVALID);
        print_message("  PEM %-24s -> %s\n", cases[i].what, lk_errname(e));
    }
}

/* END run into the last base64 line ("...zg==-----END PUBLIC KEY-----"):
 * OpenSSL's PEM reader refuses it, and so must lk_cred_parse, whose P-256
 * path reads the PEM itself (a fuzz_cred finding). */
static void test_cred_pem_end_on_data_line(void **state)
{
    (void)state;
    const char *end = strstr(ES_A.pem, "-----END");
    char *pem;
    lk_cred *c = NULL;
    BIO *b;
    EVP_PKEY *k;
    assert_non_null(end);
    assert_int_equal(end[-1], '\n');
    pem = fmt("%.*s%s", (int)(end - 1 - ES_A.pem), ES_A.pem, end);
    b = BIO_new_mem_buf(pem, -1);
    k = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    ERR_clear_error();
    assert_null(k);
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, pem, strlen(pem), 0, &c), LK_ERR_CRED_INVALID);
    assert_null(c);
    assert_int_equal(lk_cred_parse(LK_CRED_UNSPECIFIED, pem, strlen(pem), 0, &c), LK_ERR_CRED_INVALID);
    assert_null(c);
    /* with its line end back, the same text is the key */
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, ES_A.pem, strlen(ES_A.pem), 0, &c), LK_OK);
    lk_cred_free(c);
}

static void test_cred_format_names(void **state)
{
    (void)state;
    const struct { lk_cred_format f; const char *name; } n[] = {
        { LK_CRED_RSA_PEM, "RSA_PEM" }, { LK_CRED_RSA_X509_PEM, "RSA_X509_PEM" },
        { LK_CRED_ES256_PEM, "ES256_PEM" }, { LK_CRED_ES256_X509_PEM, "ES256_X509_PEM" },
        { LK_CRED_UNSPECIFIED, "UNSPECIFIED" },
    };
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(lk_cred_format_name(n[i].f), n[i].name);
        assert_int_equal(lk_cred_format_from_name(n[i].name, strlen(n[i].name)), n[i].f);
        assert_int_equal(lk_cred_format_from_name(lk_cred_format_name(n[i].f),
                                                  strlen(lk_cred_format_name(n[i].f))), n[i].f);
    }
    const char *notnames[] = { "rsa_pem", "Rsa_Pem", "RSA_PEM ", " RSA_PEM", "RSA", "ES256", "RSA_PEMX", "", "RSA-PEM" };
    for (size_t i = 0; i < sizeof notnames / sizeof notnames[0]; i++)
        assert_int_equal(lk_cred_format_from_name(notnames[i], strlen(notnames[i])), LK_CRED_UNSPECIFIED);
    /* len is what counts: a prefix, and a name followed by a NUL */
    assert_int_equal(lk_cred_format_from_name("ES256_PEM", 5), LK_CRED_UNSPECIFIED);
    assert_int_equal(lk_cred_format_from_name("RSA_PEM\0", 8), LK_CRED_UNSPECIFIED);
    assert_int_equal(lk_cred_format_from_name("RSA_PEMxyz", 7), LK_CRED_RSA_PEM);
    assert_int_equal(lk_cred_format_from_name("ES256_PEM_X509", 9), LK_CRED_ES256_PEM);
}

/* ---- the verified-token cache -------------------------------------------- */

/* Cached and uncached verification agree; returns the cached result. */
static lk_err cached_at(int line, lk_vcache *cache, const char *tok, lk_cred *const *creds, size_t n,
                        const lk_verify_policy *pol, lk_token_info *info, int *hit)
{
    lk_token_info ci, ui;
    memset(&ci, 0xA5, sizeof ci);
    int h = -7;
    char why[WHY_SIZE + 8];
    memset(why, 'Z', sizeof why);
    lk_err ce = lk_verify_token_cached(V, cache, tok, strlen(tok), creds, n, pol, &ci, &h, why, WHY_SIZE);
    if (memchr(why, '\0', WHY_SIZE) == NULL || !lk_test_all_bytes(why + WHY_SIZE, 8, 'Z'))
        fail_msg("line %d: cached why overflows", line);
    check_why_clean(line, why, tok, strlen(tok));
    lk_err ue = verify_at(line, tok, strlen(tok), creds, n, pol, &ui, NULL);
    if (ce != ue)
        fail_msg("line %d: cached %s (hit %d) but uncached %s (why: %s)", line, lk_errname(ce), h,
                 lk_errname(ue), why);
    if (h != 0 && h != 1)
        fail_msg("line %d: *hit = %d", line, h);
    if (ce == LK_OK) {
        if (ci.alg != ui.alg || ci.iat != ui.iat || ci.exp != ui.exp || ci.valid_until != ui.valid_until ||
            ci.cred_index != ui.cred_index)
            fail_msg("line %d: cached info differs (hit %d): cred_index %u vs %u, valid_until %" PRId64
                     " vs %" PRId64, line, h, ci.cred_index, ui.cred_index, ci.valid_until, ui.valid_until);
    } else {
        if (h != 0)
            fail_msg("line %d: a failure (%s) reported as a cache hit", line, lk_errname(ce));
        if (ci.alg != 0 || ci.iat != 0 || ci.exp != 0 || ci.valid_until != 0 || ci.cred_index != 0)
            fail_msg("line %d: cached failure, info not zeroed", line);
    }
    if (info != NULL)
        *info = ci;
    if (hit != NULL)
        *hit = h;
    return ce;
}

#define CACHED(cache, tok, creds, n, pol, info, hit) cached_at(__LINE__, cache, tok, creds, n, pol, info, hit)

static void test_cache_basics(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    lk_vcache_stats st;
    assert_int_equal(lk_vcache_new(64, NULL), LK_ERR_ARG);
    assert_int_equal(lk_vcache_new(((size_t)1 << 24) + 1, &c), LK_ERR_ARG);
    assert_null(c);
    const size_t sizes[][2] = { { 16, 16 }, { 17, 32 }, { 1000, 1024 }, { 1024, 1024 } };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lk_vcache_new(sizes[i][0], &c), LK_OK);
        memset(&st, 0xFF, sizeof st);
        lk_vcache_get_stats(c, &st);
        assert_int_equal(st.capacity, sizes[i][1]);
        assert_int_equal(st.used, 0);
        assert_int_equal(st.hits + st.misses + st.inserts + st.evictions, 0);
        lk_vcache_free(c);
        c = NULL;
    }
    lk_err e = lk_vcache_new(1, &c);
    assert_true(e == LK_ERR_ARG || e == LK_OK);
    if (e == LK_OK) {
        lk_vcache_get_stats(c, &st);
        assert_int_equal(st.capacity, 16);
        lk_vcache_free(c);
    }
    lk_vcache_free(NULL);
    lk_vcache_clear(NULL);

    assert_int_equal(lk_vcache_new(64, &c), LK_OK);
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_B.cred, ES_A.cred };
    char *t = std_token(&ES_A);
    lk_token_info i1, i2;
    int hit;
    assert_int_equal(CACHED(c, t, es, 2, &pol, &i1, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, t, es, 2, &pol, &i2, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(i2.cred_index, 1);
    assert_int_equal(i1.valid_until, i2.valid_until);
    assert_int_equal(i1.alg, i2.alg);
    lk_vcache_get_stats(c, &st);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.inserts, 1);
    assert_int_equal(st.used, 1);
    assert_int_equal(st.evictions, 0);
    /* hit may be NULL; why may be NULL */
    assert_int_equal(lk_verify_token_cached(V, c, t, strlen(t), es, 2, &pol, &i1, NULL, NULL, 0), LK_OK);
    /* the RS256 token alongside */
    lk_cred *rs[] = { RS_A.cred };
    char *r = std_token(&RS_A);
    assert_int_equal(CACHED(c, r, rs, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, r, rs, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    /* the high-S twin is another token: a miss that verifies */
    char *in = std_input(&ES_A);
    size_t sl = 0;
    const char *sseg = sig_segment(t, strlen(t), &sl);
    size_t n;
    uint8_t sig[64], twin[64];
    assert_int_equal(lk_b64url_decode(sseg, sl, sig, sizeof sig, &n, 0), LK_OK);
    memcpy(twin, sig, 32);
    neg_mod_n(sig + 32, twin + 32);
    char *tt = with_sig(in, twin, 64);
    assert_int_equal(CACHED(c, tt, es, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    /* a tampered copy of a cached token is never a hit */
    char *bad = fmt("%s", t);
    bad[strlen(bad) - 3] = bad[strlen(bad) - 3] == 'A' ? 'B' : 'A';
    assert_int_not_equal(CACHED(c, bad, es, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    /* clear */
    lk_vcache_clear(c);
    lk_vcache_get_stats(c, &st);
    assert_int_equal(st.used, 0);
    assert_int_equal(CACHED(c, t, es, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, t, es, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    /* NULL cache: plain verification */
    assert_int_equal(CACHED(NULL, t, es, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(NULL, t, es, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(NULL, bad, es, 2, &pol, NULL, &hit), LK_ERR_TOKEN_SIGNATURE);
    /* argument errors go through */
    assert_int_equal(lk_verify_token_cached(NULL, c, t, strlen(t), es, 2, &pol, &i1, &hit, NULL, 0), LK_ERR_ARG);
    assert_int_equal(lk_verify_token_cached(V, c, t, strlen(t), es, 2, NULL, &i1, &hit, NULL, 0), LK_ERR_ARG);
    lk_vcache_free(c);
}

static void test_cache_time_rechecked(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    assert_int_equal(lk_vcache_new(64, &c), LK_OK);
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    char *t = std_token(&ES_A); /* iat NOW, exp NOW + 3600 */
    int hit;
    assert_int_equal(CACHED(c, t, es, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(CACHED(c, t, es, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    lk_verify_policy p = pol;
    /* the last second of validity (exp + skew - 1), then expired */
    p.now = NOW + 3600 + 600 - 1;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_OK);
    p.now = NOW + 3600 + 600;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_TOKEN_EXPIRED);
    p.now = NOW + 100000;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_TOKEN_EXPIRED);
    /* a smaller skew at the same time */
    p = pol;
    p.now = NOW + 3600 + 10;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_OK);
    p.skew = 5;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_TOKEN_EXPIRED);
    /* the clock going back: iat in the future again */
    p = pol;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_OK);
    p.now = NOW - 601;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_TOKEN_FUTURE);
    /* a stricter policy: shorter maximum lifetime, smaller length cap */
    p = pol;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_OK);
    p.max_lifetime = 60;
    p.skew = 0;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_TOKEN_LIFETIME);
    p = pol;
    p.max_len = strlen(t) - 1;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_TOKEN_TOO_LARGE);
    /* a policy out of range is an argument error, hit or not */
    p = pol;
    p.max_len = LK_VERIFY_MAX_LEN_LIMIT + 1;
    assert_int_equal(CACHED(c, t, es, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_ARG);
    p = pol;
    p.max_len = SIZE_MAX;
    assert_int_equal(CACHED(c, t, es, 1, &p, NULL, &hit), LK_ERR_ARG);
    /* and back to normal */
    assert_int_equal(CACHED(c, t, es, 1, &pol, NULL, &hit), LK_OK);
    lk_vcache_free(c);
}

static void test_cache_credentials_and_policy(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    assert_int_equal(lk_vcache_new(64, &c), LK_OK);
    lk_verify_policy pol = pol_default();
    char *t = std_token(&ES_A);
    int hit;
    lk_token_info info;
    lk_cred *ba[] = { ES_B.cred, ES_A.cred };
    assert_int_equal(CACHED(c, t, ba, 2, &pol, &info, &hit), LK_OK);
    assert_int_equal(CACHED(c, t, ba, 2, &pol, &info, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(info.cred_index, 1);
    /* the same set in another order: cred_index must follow */
    lk_cred *ab[] = { ES_A.cred, ES_B.cred };
    assert_int_equal(CACHED(c, t, ab, 2, &pol, &info, &hit), LK_OK);
    assert_int_equal(info.cred_index, 0);
    assert_int_equal(CACHED(c, t, ba, 2, &pol, &info, &hit), LK_OK);
    assert_int_equal(info.cred_index, 1);
    /* the credential that verified removed or replaced */
    lk_cred *b[] = { ES_B.cred };
    assert_int_equal(CACHED(c, t, b, 1, &pol, NULL, &hit), LK_ERR_TOKEN_SIGNATURE);
    assert_int_equal(hit, 0);
    lk_cred *none[1] = { NULL };
    assert_int_equal(CACHED(c, t, none, 0, &pol, NULL, &hit), LK_ERR_NO_CREDENTIAL);
    lk_cred *rs[] = { RS_A.cred };
    assert_int_equal(CACHED(c, t, rs, 1, &pol, NULL, &hit), LK_ERR_TOKEN_ALG);
    /* the same key with another expiry: another set; then it expires while
     * the token is still valid */
    lk_cred *a_exp = cred_exp(&ES_A, NOW + 100);
    assert_int_equal(CACHED(c, t, &a_exp, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, t, &a_exp, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    lk_verify_policy later = pol;
    later.now = NOW + 100;
    assert_int_equal(CACHED(c, t, &a_exp, 1, &later, NULL, &hit), LK_ERR_NO_CREDENTIAL);
    later.now = NOW + 1000;
    assert_int_equal(CACHED(c, t, &a_exp, 1, &later, NULL, &hit), LK_ERR_NO_CREDENTIAL);
    lk_cred *a_exp_b[] = { a_exp, ES_B.cred };
    assert_int_equal(CACHED(c, t, a_exp_b, 2, &later, NULL, &hit), LK_ERR_TOKEN_SIGNATURE);
    lk_cred_free(a_exp);
    /* an identical credential parsed again: same fingerprint and expiry */
    lk_cred *a2 = cred_exp(&ES_A, 0);
    lk_cred *b_a2[] = { ES_B.cred, a2 };
    assert_int_equal(CACHED(c, t, b_a2, 2, &pol, &info, &hit), LK_OK);
    assert_int_equal(info.cred_index, 1);
    lk_cred_free(a2);
    /* another audience, another padding policy */
    lk_verify_policy other = pol;
    other.aud = "other-proj";
    other.aud_len = strlen(other.aud);
    assert_int_equal(CACHED(c, t, ba, 2, &other, NULL, &hit), LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(hit, 0);
    other = pol;
    other.aud_len = 4; /* "test" */
    assert_int_equal(CACHED(c, t, ba, 2, &other, NULL, &hit), LK_ERR_TOKEN_AUDIENCE);
    char *tp = fmt("%s==", t);
    assert_int_equal(CACHED(c, tp, ba, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(CACHED(c, tp, ba, 2, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    lk_verify_policy strict = pol;
    strict.flags = 0;
    assert_int_equal(CACHED(c, tp, ba, 2, &strict, NULL, &hit), LK_ERR_TOKEN_MALFORMED);
    assert_int_equal(hit, 0);
    lk_vcache_free(c);
}

/* The same key twice, the first copy expiring: verified while that copy is
 * expired (index 1), then asked about a moment before its expiry (a clock
 * stepped back), when a full verification answers index 0. A hit must give
 * what a full verification gives. */
static void test_cache_clock_back(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    assert_int_equal(lk_vcache_new(64, &c), LK_OK);
    lk_verify_policy pol = pol_default();
    char *t = std_token(&ES_A);
    int hit;
    lk_token_info info;
    lk_cred *a_100 = cred_exp(&ES_A, NOW + 100);
    lk_cred *dup[] = { a_100, ES_A.cred };
    lk_verify_policy at200 = pol;
    at200.now = NOW + 200;
    assert_int_equal(CACHED(c, t, dup, 2, &at200, &info, &hit), LK_OK);
    assert_int_equal(info.cred_index, 1);
    assert_int_equal(CACHED(c, t, dup, 2, &pol, &info, &hit), LK_OK);
    assert_int_equal(info.cred_index, 0);
    lk_cred_free(a_100);
    lk_vcache_free(c);
}

static void test_cache_failures_and_capacity(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    assert_int_equal(lk_vcache_new(16, &c), LK_OK);
    lk_verify_policy pol = pol_default();
    lk_cred *es[] = { ES_A.cred };
    lk_vcache_stats st;
    int hit;
    /* failures are never remembered */
    const char *bad[] = {
        std_token(&ES_B), make_token(HDR_ES, claims3(NOW - 10000, NOW - 9000, AUD), &ES_A),
        make_token(HDR_ES, claims3(NOW, NOW + 3600, "x"), &ES_A), "a.b.c", std_token(&RS_A),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (int k = 0; k < 3; k++) {
            assert_int_not_equal(CACHED(c, bad[i], es, 1, &pol, NULL, &hit), LK_OK);
            assert_int_equal(hit, 0);
        }
    lk_vcache_get_stats(c, &st);
    assert_int_equal(st.inserts, 0);
    assert_int_equal(st.used, 0);
    assert_int_equal(st.hits, 0);
    /* capacity: 4 x capacity distinct good tokens */
    assert_int_equal(st.capacity, 16);
    char *toks[64];
    for (int i = 0; i < 64; i++) {
        toks[i] = make_token(HDR_ES, fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"jti\":%d}", NOW,
                                         NOW + 3600, AUD, i), &ES_A);
        assert_int_equal(CACHED(c, toks[i], es, 1, &pol, NULL, &hit), LK_OK);
        assert_int_equal(hit, 0);
        lk_vcache_get_stats(c, &st);
        assert_true(st.used <= st.capacity);
    }
    lk_vcache_get_stats(c, &st);
    print_message("cache of 16 after 64 tokens: used %zu, inserts %" PRIu64 ", evictions %" PRIu64 "\n",
                  st.used, st.inserts, st.evictions);
    assert_int_equal(st.inserts, 64);
    assert_true(st.used <= 16);
    assert_true(st.evictions >= 48);
    assert_int_equal(st.used + st.evictions, st.inserts);
    /* every token still verifies, hit or not; at most `used` hits */
    uint64_t hits0 = st.hits;
    for (int i = 0; i < 64; i++)
        assert_int_equal(CACHED(c, toks[i], es, 1, &pol, NULL, &hit), LK_OK);
    lk_vcache_get_stats(c, &st);
    assert_true(st.hits - hits0 <= 64);
    assert_true(st.used <= 16);
    lk_vcache_clear(c);
    lk_vcache_get_stats(c, &st);
    assert_int_equal(st.used, 0);
    lk_vcache_free(c);
}

/* Free what the arena took since mark (a long loop would fill it). */
static void arena_release(size_t mark)
{
    while (narena > mark)
        free(arena[--narena]);
}

/* A token of k with a "jti" claim i, so every i gives another valid token. */
static char *jti_token(const tkey *k, int64_t i)
{
    return make_token(hdr_for(k), fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\",\"jti\":%" PRId64 "}",
                                      NOW, NOW + 3600, AUD, i), k);
}

/* Issue 10, item 7: a device that connects with ever new valid tokens holds
 * at most 2 entries (its own oldest goes) and evicts nobody else's. A device
 * is its credential set and audience: B2 (B's key with an expiry) is
 * another device with the same token. Deterministic whatever the placement:
 * B, B2 and A's 2 entries fit in one set of 4. */
static void test_cache_per_device(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    lk_vcache_stats st, st0;
    lk_verify_policy pol = pol_default();
    lk_cred *a[] = { ES_A.cred }, *b[] = { ES_B.cred };
    lk_cred *b2[] = { cred_exp(&ES_B, NOW + 100000) };
    char *tb = std_token(&ES_B);
    int hit;

    assert_int_equal(lk_vcache_new(16, &c), LK_OK); /* 4 sets of 4 */
    assert_int_equal(CACHED(c, tb, b, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, tb, b2, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, tb, b, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, tb, b2, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    lk_vcache_get_stats(c, &st0);
    assert_int_equal(st0.used, 2);

    /* A signs 1,000 distinct valid tokens (ECDSA is randomized: the last
     * two are kept to be shown again). */
    char *last[2] = { NULL, NULL };
    for (int64_t i = 0; i < 1000; i++) {
        size_t mark = narena;
        lk_token_info info;
        char *t = jti_token(&ES_A, i);
        if (i >= 998)
            last[i - 998] = t;
        assert_int_equal(lk_verify_token_cached(V, c, t, strlen(t), a, 1, &pol, &info, &hit, NULL, 0), LK_OK);
        assert_int_equal(hit, 0);
        lk_vcache_get_stats(c, &st);
        assert_int_equal(st.used, 2 + (i < 2 ? (size_t)i + 1 : 2));
        if (i < 998)
            arena_release(mark);
    }
    lk_vcache_get_stats(c, &st);
    assert_int_equal(st.used, 4); /* B, B2 and A's 2 */
    assert_int_equal(st.inserts - st0.inserts, 1000);
    assert_int_equal(st.evictions - st0.evictions, 998); /* all A's own */
    /* B and B2 are still hits: no signature check for them. */
    assert_int_equal(CACHED(c, tb, b, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, tb, b2, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    /* A's last two are hits. */
    assert_int_equal(CACHED(c, last[1], a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, last[0], a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);

    /* A token and its successor at refresh are both kept; a third token
     * replaces the device's oldest. */
    char *t1 = jti_token(&ES_A, 2001), *t2 = jti_token(&ES_A, 2002), *t3 = jti_token(&ES_A, 2003);
    assert_int_equal(CACHED(c, t1, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, t2, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, t1, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, t2, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, t3, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    assert_int_equal(CACHED(c, t2, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, t3, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    assert_int_equal(CACHED(c, t1, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    lk_vcache_get_stats(c, &st);
    assert_int_equal(st.used, 4);
    assert_int_equal(CACHED(c, tb, b, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);

    /* The same token under another audience is another device: refused,
     * never a hit, and A's entries are untouched. */
    lk_verify_policy other = pol;
    other.aud = "other-proj";
    other.aud_len = strlen(other.aud);
    assert_int_equal(CACHED(c, t3, a, 1, &other, NULL, &hit), LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(CACHED(c, t3, a, 1, &pol, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    lk_cred_free(b2[0]);
    lk_vcache_free(c);
}

/* Devices that share one credential set (a fleet with one key) are told
 * apart by the policy's subject: each keeps its own 2 entries, and one of
 * them signing many tokens never evicts another's. */
static void test_cache_subjects_share_credentials(void **state)
{
    (void)state;
    lk_vcache *c = NULL;
    lk_verify_policy p1 = pol_default(), p2 = pol_default();
    lk_cred *a[] = { ES_A.cred };
    char *t2 = jti_token(&ES_A, 5000);
    int hit;

    p1.subject = 1;
    p2.subject = 2;
    assert_int_equal(lk_vcache_new(16, &c), LK_OK);
    assert_int_equal(CACHED(c, t2, a, 1, &p2, NULL, &hit), LK_OK);
    assert_int_equal(hit, 0);
    for (int64_t i = 0; i < 50; i++) {
        size_t mark = narena;
        char *t = jti_token(&ES_A, 6000 + i);
        assert_int_equal(CACHED(c, t, a, 1, &p1, NULL, &hit), LK_OK);
        arena_release(mark);
    }
    assert_int_equal(CACHED(c, t2, a, 1, &p2, NULL, &hit), LK_OK);
    assert_int_equal(hit, 1);
    lk_vcache_free(c);
}

/* ---- randomized differential test ----------------------------------------- */

static void test_random_differential(void **state)
{
    (void)state;
    uint64_t rng = 0x1a7c4e5;
    lk_vcache *cache = NULL;
    assert_int_equal(lk_vcache_new(64, &cache), LK_OK);
    const tkey *signers[] = { &ES_A, &ES_B, &RS_A, &RS_B };
    /* the credential pool: key, expiry */
    lk_cred *a_exp = cred_exp(&ES_A, NOW - 1000), *b_fut = cred_exp(&ES_B, NOW + 1000);
    lk_cred *r_exp = cred_exp(&RS_B, NOW - 5);
    struct { lk_cred *c; const tkey *k; int expired; } pool[] = {
        { ES_A.cred, &ES_A, 0 }, { RS_A.cred, &RS_A, 0 }, { a_exp, &ES_A, 1 }, { b_fut, &ES_B, 0 },
        { r_exp, &RS_B, 1 }, { RS_B.cred, &RS_B, 0 },
    };
    const size_t npool = sizeof pool / sizeof pool[0];
    size_t outcome[LK_ERR__END] = { 0 };
    for (int iter = 0; iter < 200; iter++) {
        const tkey *sk = signers[lk_test_rand64(&rng) % 4];
        int lie = lk_test_rand64(&rng) % 10 == 0; /* header names the other alg */
        int hdr_ec = lie ? !sk->ec : sk->ec;
        lk_verify_policy pol = pol_default();
        const int64_t skews[] = { 0, 600, 3600 }, lifes[] = { 3600, 86400, 86400 * 7 };
        pol.skew = skews[lk_test_rand64(&rng) % 3];
        pol.max_lifetime = lifes[lk_test_rand64(&rng) % 3];
        int64_t S = pol.skew, L = pol.max_lifetime;
        const int64_t iat_off[] = { -S - 1, -S, 0, S, S + 1, -50000, 1 };
        int64_t iat, exp;
        if (lk_test_rand64(&rng) % 2) {
            /* plausibly valid times */
            iat = NOW - (int64_t)(lk_test_rand64(&rng) % 1001);
            exp = NOW + 1 + (int64_t)(lk_test_rand64(&rng) % (uint64_t)(L / 2));
        } else {
            iat = NOW + (lk_test_rand64(&rng) % 2 ? iat_off[lk_test_rand64(&rng) % 7]
                                                  : (int64_t)(lk_test_rand64(&rng) % 200001) - 100000);
            switch (lk_test_rand64(&rng) % 8) {
            case 0: exp = iat - 1; break;
            case 1: exp = iat; break;
            case 2: exp = iat + L + S; break;
            case 3: exp = iat + L + S + 1; break;
            case 4: exp = NOW - S; break;
            case 5: exp = NOW - S + 1; break;
            default: exp = iat + 1 + (int64_t)(lk_test_rand64(&rng) % (uint64_t)L); break;
            }
        }
        int aud_ok = lk_test_rand64(&rng) % 8 != 0;
        int drop = (int)(lk_test_rand64(&rng) % 20); /* 0: no iat, 1: no exp, 2: no aud */
        char *claims = fmt("{%s%s\"nbf\":%" PRId64 "%s}",
                           drop == 0 ? "" : fmt("\"iat\":%" PRId64 ",", iat),
                           drop == 1 ? "" : fmt("\"exp\":%" PRId64 ",", exp), NOW + 99999,
                           drop == 2 ? "" : aud_ok ? ",\"aud\":\"" AUD "\"" : ",\"aud\":\"test-proj2\"");
        char *t = make_token(hdr_ec ? HDR_ES : HDR_RS, claims, sk);
        /* the device's credentials: 0..3 distinct pool entries */
        lk_cred *creds[3];
        size_t idx[3], n = lk_test_rand64(&rng) % 4;
        int with_signer = n > 0 && lk_test_rand64(&rng) % 2;
        size_t signer_slot = with_signer ? lk_test_rand64(&rng) % n : 0;
        for (size_t i = 0; i < n; i++) {
            int dup;
            do {
                idx[i] = lk_test_rand64(&rng) % npool;
                if (with_signer && i == signer_slot) /* the signer's unexpired credential */
                    idx[i] = sk == &ES_A ? 0 : sk == &RS_A ? 1 : sk == &ES_B ? 3 : 5;
                dup = 0;
                for (size_t j = 0; j < i; j++)
                    dup |= idx[j] == idx[i];
                if (dup && with_signer && i == signer_slot) {
                    /* already present: take any other entry instead */
                    with_signer = 0;
                    dup = 1;
                }
            } while (dup);
            creds[i] = pool[idx[i]].c;
        }
        /* the model */
        lk_err want;
        unsigned want_idx = 0;
        size_t usable = 0, of_alg = 0;
        for (size_t i = 0; i < n; i++)
            if (!pool[idx[i]].expired) {
                usable++;
                of_alg += pool[idx[i]].k->ec == hdr_ec;
            }
        if (usable == 0)
            want = LK_ERR_NO_CREDENTIAL;
        else if (of_alg == 0)
            want = LK_ERR_TOKEN_ALG;
        else if (drop <= 2)
            want = LK_ERR_TOKEN_CLAIM;
        else if (!aud_ok)
            want = LK_ERR_TOKEN_AUDIENCE;
        else if (iat < 0 || exp < 0)
            want = LK_ERR_TOKEN_CLAIM;
        else if (iat > NOW + S)
            want = LK_ERR_TOKEN_FUTURE;
        else if (exp <= NOW - S)
            want = LK_ERR_TOKEN_EXPIRED;
        else if (exp <= iat || exp - iat > L + S)
            want = LK_ERR_TOKEN_LIFETIME;
        else {
            want = LK_ERR_TOKEN_SIGNATURE;
            for (size_t i = 0; i < n; i++)
                if (!pool[idx[i]].expired && pool[idx[i]].k == sk && !lie) {
                    want = LK_OK;
                    want_idx = (unsigned)i;
                    break;
                }
        }
        lk_token_info info;
        int hit;
        lk_err got = CACHED(cache, t, creds, n, &pol, &info, &hit);
        if (got != want)
            fail_msg("iteration %d: want %s, got %s\n  claims %s, header %s, signer %s%s, %zu creds, skew %" PRId64
                     ", lifetime %" PRId64, iter, lk_errname(want), lk_errname(got), claims, hdr_ec ? "ES256" : "RS256",
                     sk->ec ? "EC" : "RSA", lie ? " (lying header)" : "", n, S, L);
        if (got == LK_OK) {
            assert_int_equal(info.cred_index, want_idx);
            assert_int_equal(info.iat, iat);
            assert_int_equal(info.exp, exp);
            assert_int_equal(info.valid_until, exp + S);
            /* and a second time, from the cache */
            assert_int_equal(CACHED(cache, t, creds, n, &pol, &info, &hit), LK_OK);
            assert_int_equal(hit, 1);
            assert_int_equal(info.cred_index, want_idx);
        }
        outcome[got]++;
    }
    print_message("200 random tokens:");
    for (int i = 0; i < LK_ERR__END; i++)
        if (outcome[i])
            print_message(" %s=%zu", lk_errname((lk_err)i), outcome[i]);
    print_message("\n");
    assert_true(outcome[LK_OK] >= 20);
    lk_cred_free(a_exp);
    lk_cred_free(b_fut);
    lk_cred_free(r_exp);
    lk_vcache_free(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_policy_init, gc),
        cmocka_unit_test_teardown(test_valid_baseline, gc),
        cmocka_unit_test_teardown(test_arguments, gc),
        cmocka_unit_test_teardown(test_length_cap, gc),
        cmocka_unit_test_teardown(test_segments, gc),
        cmocka_unit_test_teardown(test_alg_values, gc),
        cmocka_unit_test_teardown(test_hs256_key_confusion, gc),
        cmocka_unit_test_teardown(test_credential_decides_alg, gc),
        cmocka_unit_test_teardown(test_refused_header_params, gc),
        cmocka_unit_test_teardown(test_kid_typ_ignored, gc),
        cmocka_unit_test_teardown(test_duplicate_names, gc),
        cmocka_unit_test_teardown(test_json_shape, gc),
        cmocka_unit_test_teardown(test_claim_types, gc),
        cmocka_unit_test_teardown(test_claims_missing, gc),
        cmocka_unit_test_teardown(test_audience, gc),
        cmocka_unit_test_teardown(test_time_edges, gc),
        cmocka_unit_test_teardown(test_overflow, gc),
        cmocka_unit_test_teardown(test_es256_signature_forms, gc),
        cmocka_unit_test_teardown(test_rs256_signature_forms, gc),
        cmocka_unit_test_teardown(test_base64_strictness, gc),
        cmocka_unit_test_teardown(test_padding, gc),
        cmocka_unit_test_teardown(test_credential_sets, gc),
        cmocka_unit_test_teardown(test_rule_order, gc),
        cmocka_unit_test_teardown(test_why_and_info, gc),
        cmocka_unit_test_teardown(test_tamper_every_byte, gc),
        cmocka_unit_test_teardown(test_cred_formats, gc),
        cmocka_unit_test_teardown(test_cred_refused, gc),
        cmocka_unit_test_teardown(test_cred_weak_parameters, gc),
        cmocka_unit_test_teardown(test_cred_rsa_exponent_bound, gc),
        cmocka_unit_test_teardown(test_cred_pem_surroundings, gc),
        cmocka_unit_test_teardown(test_cred_pem_end_on_data_line, gc),
        cmocka_unit_test_teardown(test_cred_format_names, gc),
        cmocka_unit_test_teardown(test_cache_basics, gc),
        cmocka_unit_test_teardown(test_cache_time_rechecked, gc),
        cmocka_unit_test_teardown(test_cache_credentials_and_policy, gc),
        cmocka_unit_test_teardown(test_cache_failures_and_capacity, gc),
        cmocka_unit_test_teardown(test_cache_clock_back, gc),
        cmocka_unit_test_teardown(test_cache_per_device, gc),
        cmocka_unit_test_teardown(test_cache_subjects_share_credentials, gc),
        cmocka_unit_test_teardown(test_random_differential, gc),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
