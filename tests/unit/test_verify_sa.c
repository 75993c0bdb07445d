/*
 * test_verify_sa.c — a service account's self-signed JWT (lk_verify.h,
 * "service accounts"): lk_jwt_peek_kid and lk_verify_sa_token with tokens
 * built here — header and claims JSON written by hand, encoded with the
 * reference base64url of lk_test.c, signed with RSA and P-256 keys generated
 * at run time by OpenSSL. Every rejection the contract names is proven with
 * its exact error, and on every call: *info is zeroed on failure, and why
 * never contains the token's payload or signature segment.
 */
#include "lk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "latchkey/lk_verify.h"

#define NOW INT64_C(1700000000)
#define EMAIL "api-caller@my-project.iam.latchkey"
#define KID "0123456789abcdef0123456789abcdef01234567"
#define AUDV "https://cloudiot.googleapis.com/"
#define SCOPE "https://www.googleapis.com/auth/cloudiot"

static EVP_PKEY *RSA_A, *RSA_B, *EC_A;
static lk_cred *CRED_A, *CRED_EC;
static lk_verifier *V;

static lk_cred *cred_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;
    lk_cred *c = NULL;
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &p);
    assert_int_equal(lk_cred_parse(LK_CRED_UNSPECIFIED, p, (size_t)n, 0, &c), LK_OK);
    BIO_free(b);
    return c;
}

static int setup_all(void **state)
{
    (void)state;
    RSA_A = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    RSA_B = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EC_A = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (RSA_A == NULL || RSA_B == NULL || EC_A == NULL || lk_verifier_new(&V) != LK_OK)
        return -1;
    CRED_A = cred_of(RSA_A);
    CRED_EC = cred_of(EC_A);
    return 0;
}

static int teardown_all(void **state)
{
    (void)state;
    lk_cred_free(CRED_A);
    lk_cred_free(CRED_EC);
    lk_verifier_free(V);
    EVP_PKEY_free(RSA_A);
    EVP_PKEY_free(RSA_B);
    EVP_PKEY_free(EC_A);
    return 0;
}

static char *b64(const void *p, size_t n)
{
    char *s = lk_test_b64url_ref_encode(p, n);
    assert_non_null(s);
    return s;
}

/* header.payload.signature, signed with key (RS256 PKCS#1 v1.5 / ES256 DER,
 * which for ES256 is only bytes here: those tokens never reach the
 * signature). key NULL: 256 bytes of 'x' as the signature. */
static char *make(const char *hdr, const char *claims, EVP_PKEY *key)
{
    char *h = b64(hdr, strlen(hdr)), *c = b64(claims, strlen(claims)), *s, *tok;
    size_t in_len = strlen(h) + 1 + strlen(c), sl = 1024;
    unsigned char sig[1024];
    char *in = malloc(in_len + 1);
    assert_non_null(in);
    snprintf(in, in_len + 1, "%s.%s", h, c);
    if (key != NULL) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sl, (unsigned char *)in, in_len), 1);
        EVP_MD_CTX_free(md);
    } else {
        sl = 256;
        memset(sig, 'x', sl);
    }
    s = b64(sig, sl);
    tok = malloc(in_len + 1 + strlen(s) + 1);
    assert_non_null(tok);
    sprintf(tok, "%s.%s", in, s);
    free(h);
    free(c);
    free(s);
    free(in);
    return tok;
}

#define HDR "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"" KID "\"}"

static char *claims(const char *iss, const char *sub, const char *aud_json, const char *scope,
                    int64_t iat, int64_t exp)
{
    static char buf[2048];
    int n = snprintf(buf, sizeof buf, "{");
    if (iss)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"iss\":\"%s\",", iss);
    if (sub)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"sub\":\"%s\",", sub);
    if (aud_json)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"aud\":%s,", aud_json);
    if (scope)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"scope\":\"%s\",", scope);
    if (iat >= 0)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"iat\":%lld,", (long long)iat);
    if (exp >= 0)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"exp\":%lld,", (long long)exp);
    if (buf[n - 1] == ',')
        n--;
    snprintf(buf + n, sizeof buf - (size_t)n, "}");
    return buf;
}

/* The standard claims: Google's (sub present, exp - iat = 3600). */
#define STD(aud, scope) claims(EMAIL, EMAIL, (aud), (scope), NOW - 10, NOW - 10 + 3600)

static const char *const AUDS[] = {AUDV};
static const char *const SCOPES[] = {SCOPE};

static lk_sa_policy pol_default(void)
{
    lk_sa_policy p;
    memset(&p, 0, sizeof p);
    p.email = EMAIL;
    p.now = NOW;
    p.skew = LK_SA_SKEW;
    p.max_lifetime = LK_SA_MAX_LIFETIME;
    p.audiences = AUDS;
    p.naudiences = 1;
    p.scopes = SCOPES;
    p.nscopes = 1;
    return p;
}

/* Verify tok (freed) under pol with cred; check the contract's invariants. */
static lk_err verify(char *tok, const lk_cred *cred, const lk_sa_policy *pol)
{
    lk_token_info info;
    char why[512];
    const char *dot = strchr(tok, '.'), *dot2 = dot ? strchr(dot + 1, '.') : NULL;
    lk_err e;
    memset(&info, 0x5a, sizeof info);
    e = lk_verify_sa_token(V, tok, strlen(tok), cred, pol, &info, why, sizeof why);
    if (e != LK_OK) {
        assert_true(lk_test_all_bytes(&info, sizeof info, 0));
        assert_true(why[0] != '\0');
    } else {
        assert_int_equal(info.alg, LK_ALG_RS256);
        assert_int_equal(info.valid_until, info.exp + pol->skew);
    }
    /* why never quotes the token */
    if (dot2 != NULL && dot2 - dot > 13) {
        char piece[13];
        memcpy(piece, dot + 1, 12);
        piece[12] = '\0';
        assert_null(strstr(why, piece));
        memcpy(piece, dot2 + 1, 12);
        assert_null(strstr(why, piece));
    }
    free(tok);
    return e;
}

static void test_accepts(void **state)
{
    lk_sa_policy p = pol_default();
    (void)state;
    /* aud string, scope too */
    assert_int_equal(verify(make(HDR, STD("\"" AUDV "\"", SCOPE), RSA_A), CRED_A, &p), LK_OK);
    /* aud only; scope only; aud an array holding it; sub absent (RFC 7523) */
    assert_int_equal(verify(make(HDR, STD("\"" AUDV "\"", NULL), RSA_A), CRED_A, &p), LK_OK);
    assert_int_equal(verify(make(HDR, STD(NULL, "a " SCOPE " b"), RSA_A), CRED_A, &p), LK_OK);
    assert_int_equal(verify(make(HDR, STD("[\"other\",\"" AUDV "\"]", NULL), RSA_A), CRED_A, &p),
                     LK_OK);
    assert_int_equal(verify(make(HDR, claims(EMAIL, NULL, "\"" AUDV "\"", NULL, NOW, NOW + 3600),
                                 RSA_A), CRED_A, &p), LK_OK);
    /* the fixed RS256 header (no kid) verifies too: the kid only finds the key */
    assert_int_equal(verify(make("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", STD("\"" AUDV "\"", NULL),
                                 RSA_A), CRED_A, &p), LK_OK);
    /* with naudiences 0, aud is not required nor looked at */
    p.naudiences = 0;
    assert_int_equal(verify(make(HDR, STD("17", SCOPE), RSA_A), CRED_A, &p), LK_OK);
    /* exp - iat = max_lifetime + skew at the edge */
    p = pol_default();
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW - 100,
                                             NOW - 100 + 3600 + 60), RSA_A), CRED_A, &p), LK_OK);
}

static void test_rejects(void **state)
{
    lk_sa_policy p = pol_default();
    char *t, *dot;
    (void)state;

    /* wrong alg: ES256, HS256, none; an ES256 token against the RSA key */
    assert_int_equal(verify(make("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"" KID "\"}",
                                 STD("\"" AUDV "\"", NULL), NULL), CRED_A, &p), LK_ERR_TOKEN_ALG);
    assert_int_equal(verify(make("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", STD("\"" AUDV "\"", NULL),
                                 EC_A), CRED_A, &p), LK_ERR_TOKEN_ALG);
    assert_int_equal(verify(make("{\"alg\":\"HS256\",\"kid\":\"" KID "\"}",
                                 STD("\"" AUDV "\"", NULL), NULL), CRED_A, &p), LK_ERR_TOKEN_ALG);
    assert_int_equal(verify(make("{\"alg\":\"none\"}", STD("\"" AUDV "\"", NULL), NULL), CRED_A,
                             &p), LK_ERR_TOKEN_ALG);
    assert_int_equal(verify(make("{\"kid\":\"" KID "\"}", STD("\"" AUDV "\"", NULL), NULL), CRED_A,
                             &p), LK_ERR_TOKEN_ALG);
    /* a P-256 key is not a service account key, even with an ES256 token */
    assert_int_equal(verify(make("{\"alg\":\"ES256\"}", STD("\"" AUDV "\"", NULL), EC_A), CRED_EC,
                             &p), LK_ERR_NO_CREDENTIAL);
    /* refused header parameters */
    assert_int_equal(verify(make("{\"alg\":\"RS256\",\"jwk\":{}}", STD("\"" AUDV "\"", NULL),
                                 RSA_A), CRED_A, &p), LK_ERR_TOKEN_HEADER);
    assert_int_equal(verify(make("{\"alg\":\"RS256\",\"crit\":[\"x\"]}", STD("\"" AUDV "\"", NULL),
                                 RSA_A), CRED_A, &p), LK_ERR_TOKEN_HEADER);

    /* iss / sub */
    assert_int_equal(verify(make(HDR, claims("other-one@my-project.iam.latchkey", EMAIL,
                                             "\"" AUDV "\"", NULL, NOW, NOW + 3600), RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, claims(NULL, EMAIL, "\"" AUDV "\"", NULL, NOW, NOW + 3600),
                                 RSA_A), CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, claims(EMAIL, "other-one@my-project.iam.latchkey",
                                             "\"" AUDV "\"", NULL, NOW, NOW + 3600), RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, claims(EMAIL "x", NULL, "\"" AUDV "\"", NULL, NOW,
                                             NOW + 3600), RSA_A), CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, "{\"iss\":\"" EMAIL "\\u0000x\",\"aud\":\"" AUDV "\","
                                      "\"iat\":1700000000,\"exp\":1700003600}", RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, "{\"iss\":\"" EMAIL "\",\"sub\":7,\"aud\":\"" AUDV "\","
                                      "\"iat\":1700000000,\"exp\":1700003600}", RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_CLAIM);

    /* time: missing, expired, future, too long, exp before iat */
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, -1, NOW + 3600),
                                 RSA_A), CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW, -1), RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, "{\"iss\":\"" EMAIL "\",\"aud\":\"" AUDV "\","
                                      "\"iat\":\"1700000000\",\"exp\":1700003600}", RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW - 3600 - 61,
                                             NOW - 61), RSA_A), CRED_A, &p), LK_ERR_TOKEN_EXPIRED);
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW + 61,
                                             NOW + 61 + 3600), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_FUTURE);
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW,
                                             NOW + 3600 + 61), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_LIFETIME);
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW, NOW), RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_LIFETIME);
    /* a device token's day is far too long for a service account */
    assert_int_equal(verify(make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", NULL, NOW, NOW + 86400),
                                 RSA_A), CRED_A, &p), LK_ERR_TOKEN_LIFETIME);

    /* aud / scope */
    assert_int_equal(verify(make(HDR, STD(NULL, NULL), RSA_A), CRED_A, &p), LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD("\"https://example.com/\"", NULL), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD(NULL, "https://www.googleapis.com/auth/pubsub"), RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_AUDIENCE);
    /* a scope is a whole word: neither a prefix nor a longer one matches */
    assert_int_equal(verify(make(HDR, STD(NULL, SCOPE ".readonly"), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD(NULL, "https://www.googleapis.com/auth/cloudio"), RSA_A),
                            CRED_A, &p), LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD("[\"a\",\"b\"]", NULL), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD("[]", NULL), RSA_A), CRED_A, &p), LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD("\"" AUDV "\\u0000\"", NULL), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_AUDIENCE);
    assert_int_equal(verify(make(HDR, STD("[\"" AUDV "\",7]", NULL), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, STD("{}", NULL), RSA_A), CRED_A, &p), LK_ERR_TOKEN_CLAIM);
    assert_int_equal(verify(make(HDR, "{\"iss\":\"" EMAIL "\",\"scope\":[\"" SCOPE "\"],"
                                      "\"iat\":1700000000,\"exp\":1700003600}", RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_CLAIM);
    /* with nscopes 0 a scope does not count; with naudiences 0 an aud does not */
    p.nscopes = 0;
    assert_int_equal(verify(make(HDR, STD(NULL, SCOPE), RSA_A), CRED_A, &p), LK_ERR_TOKEN_AUDIENCE);
    p = pol_default();
    p.naudiences = 0;
    assert_int_equal(verify(make(HDR, STD("\"" AUDV "\"", NULL), RSA_A), CRED_A, &p),
                     LK_ERR_TOKEN_AUDIENCE);
    p = pol_default();

    /* signatures: another key, a tampered payload, a tampered signature */
    assert_int_equal(verify(make(HDR, STD("\"" AUDV "\"", NULL), RSA_B), CRED_A, &p),
                     LK_ERR_TOKEN_SIGNATURE);
    t = make(HDR, STD("\"" AUDV "\"", NULL), RSA_A);
    {
        /* swap in the payload of a token with another subject, same signature */
        char *u = make(HDR, claims(EMAIL, EMAIL, "\"" AUDV "\"", SCOPE, NOW - 10, NOW + 3590), NULL);
        char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
        char *e1 = strchr(u, '.'), *e2 = strchr(e1 + 1, '.');
        char *mix = malloc(strlen(t) + strlen(u));
        sprintf(mix, "%.*s%.*s%s", (int)(d1 - t), t, (int)(e2 - e1), e1, d2);
        assert_int_equal(verify(mix, CRED_A, &p), LK_ERR_TOKEN_SIGNATURE);
        free(u);
    }
    dot = strrchr(t, '.');
    dot[5] = dot[5] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(t, CRED_A, &p), LK_ERR_TOKEN_SIGNATURE);

    /* malformed, padded, too long */
    assert_int_equal(verify(strdup("a.b"), CRED_A, &p), LK_ERR_TOKEN_MALFORMED);
    t = make(HDR, STD("\"" AUDV "\"", NULL), RSA_A);
    {
        char *pad = malloc(strlen(t) + 4);
        size_t hl = (size_t)(strchr(t, '.') - t);
        /* pad the header segment when its length allows; else the whole is still refused */
        sprintf(pad, "%.*s%s%s", (int)hl, t, hl % 4 == 2 ? "==" : hl % 4 == 3 ? "=" : "", t + hl);
        if (hl % 4 != 0)
            assert_int_equal(verify(pad, CRED_A, &p), LK_ERR_TOKEN_MALFORMED);
        else
            free(pad);
    }
    p.max_len = 100;
    assert_int_equal(verify(t, CRED_A, &p), LK_ERR_TOKEN_TOO_LARGE);
    p = pol_default();

    /* an expired credential */
    {
        lk_cred *c = NULL;
        BIO *b = BIO_new(BIO_s_mem());
        char *pem;
        long n;
        assert_int_equal(PEM_write_bio_PUBKEY(b, RSA_A), 1);
        n = BIO_get_mem_data(b, &pem);
        assert_int_equal(lk_cred_parse(LK_CRED_RSA_PEM, pem, (size_t)n, NOW - 1, &c), LK_OK);
        BIO_free(b);
        assert_int_equal(verify(make(HDR, STD("\"" AUDV "\"", NULL), RSA_A), c, &p),
                         LK_ERR_NO_CREDENTIAL);
        lk_cred_free(c);
    }
}

static void test_policy(void **state)
{
    lk_sa_policy p = pol_default();
    char *t = make(HDR, STD("\"" AUDV "\"", NULL), RSA_A);
    lk_token_info info;
    char why[256];
    (void)state;
    p.naudiences = 0;
    p.nscopes = 0;
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, &info, why, sizeof why),
                     LK_ERR_ARG);
    p = pol_default();
    p.skew = 3601;
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, &info, why, sizeof why),
                     LK_ERR_ARG);
    p = pol_default();
    p.email = NULL;
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, &info, why, sizeof why),
                     LK_ERR_ARG);
    p = pol_default();
    p.max_lifetime = 0;
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, &info, why, sizeof why),
                     LK_ERR_ARG);
    p = pol_default();
    p.audiences = NULL;
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, &info, why, sizeof why),
                     LK_ERR_ARG);
    /* an empty audience (or scope) is refused, not matched against aud "" */
    {
        static const char *const empty[] = {""};
        char *u = make(HDR, STD("\"\"", NULL), RSA_A);
        p = pol_default();
        p.audiences = empty;
        memset(&info, 0x5a, sizeof info);
        assert_int_equal(lk_verify_sa_token(V, u, strlen(u), CRED_A, &p, &info, why, sizeof why),
                         LK_ERR_ARG);
        assert_true(lk_test_all_bytes(&info, sizeof info, 0));
        p = pol_default();
        p.scopes = empty;
        assert_int_equal(lk_verify_sa_token(V, u, strlen(u), CRED_A, &p, &info, why, sizeof why),
                         LK_ERR_ARG);
        free(u);
    }
    p = pol_default();
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), NULL, &p, &info, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, NULL, &info, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, NULL, why, sizeof why),
                     LK_ERR_ARG);
    assert_int_equal(lk_verify_sa_token(V, t, strlen(t), CRED_A, &p, &info, why, sizeof why),
                     LK_OK);
    free(t);
}

static lk_err peek(char *tok, char *kid, size_t kid_size)
{
    lk_err e = lk_jwt_peek_kid(tok, strlen(tok), kid, kid_size);
    if (e != LK_OK && kid != NULL && kid_size > 0)
        assert_string_equal(kid, "");
    free(tok);
    return e;
}

static void test_peek_kid(void **state)
{
    char kid[64], small[40], *t;
    char big[LK_VERIFY_MAX_LEN + 8];
    (void)state;
    assert_int_equal(peek(make(HDR, "{}", NULL), kid, sizeof kid), LK_OK);
    assert_string_equal(kid, KID);
    /* exactly fits, one short */
    assert_int_equal(peek(make(HDR, "{}", NULL), kid, 41), LK_OK);
    assert_int_equal(peek(make(HDR, "{}", NULL), small, sizeof small), LK_ERR_TOKEN_HEADER);
    /* kid absent, empty, not a string, with a NUL */
    assert_int_equal(peek(make("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{}", NULL), kid, sizeof kid),
                     LK_ERR_TOKEN_HEADER);
    assert_int_equal(peek(make("{\"alg\":\"RS256\",\"kid\":\"\"}", "{}", NULL), kid, sizeof kid),
                     LK_ERR_TOKEN_HEADER);
    assert_int_equal(peek(make("{\"alg\":\"RS256\",\"kid\":7}", "{}", NULL), kid, sizeof kid),
                     LK_ERR_TOKEN_HEADER);
    assert_int_equal(peek(make("{\"alg\":\"RS256\",\"kid\":\"ab\\u0000cd\"}", "{}", NULL), kid,
                          sizeof kid), LK_ERR_TOKEN_HEADER);
    /* not a token, not base64url, not JSON, not an object, duplicates */
    assert_int_equal(peek(strdup("abc.def"), kid, sizeof kid), LK_ERR_TOKEN_MALFORMED);
    assert_int_equal(peek(strdup("a+b.def.ghi"), kid, sizeof kid), LK_ERR_TOKEN_MALFORMED);
    assert_int_equal(peek(strdup(".def.ghi"), kid, sizeof kid), LK_ERR_TOKEN_MALFORMED);
    assert_int_equal(peek(make("{\"kid\":", "{}", NULL), kid, sizeof kid), LK_ERR_TOKEN_MALFORMED);
    assert_int_equal(peek(make("[\"kid\"]", "{}", NULL), kid, sizeof kid), LK_ERR_TOKEN_MALFORMED);
    assert_int_equal(peek(make("{\"kid\":\"a\",\"kid\":\"b\"}", "{}", NULL), kid, sizeof kid),
                     LK_ERR_TOKEN_MALFORMED);
    /* padding refused */
    t = b64("{\"kid\":\"k\"}", 11);
    {
        char *tok = malloc(strlen(t) + 16);
        sprintf(tok, "%s%s.e30.AAAA", t, strlen(t) % 4 == 2 ? "==" : "=");
        assert_int_equal(peek(tok, kid, sizeof kid), LK_ERR_TOKEN_MALFORMED);
    }
    free(t);
    /* too long */
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[10] = '.';
    big[20] = '.';
    assert_int_equal(peek(strdup(big), kid, sizeof kid), LK_ERR_TOKEN_TOO_LARGE);
    /* arguments */
    assert_int_equal(lk_jwt_peek_kid(NULL, 0, kid, sizeof kid), LK_ERR_ARG);
    assert_int_equal(lk_jwt_peek_kid("a.b.c", 5, NULL, 10), LK_ERR_ARG);
    assert_int_equal(lk_jwt_peek_kid("a.b.c", 5, kid, 1), LK_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_peek_kid),
    };
    return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
