/*
 * test_verify_x5c.c — LK_VERIFY_ALLOW_X5C and lk_verify_jit_token
 * (lk_verify.h, "just-in-time registration"): without the flag "x5c" is
 * refused as before; with it a known device's registered keys alone verify
 * (x5c ignored); lk_verify_jit_token verifies with the leaf's key under all
 * the usual rules and refuses every malformed x5c with LK_ERR_TOKEN_HEADER.
 * Certificates are made here with OpenSSL; the verifier does not judge
 * chains (the registry does), so self-signed leaves are enough.
 */
#include "lk_test.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_verify.h"

#define NOW INT64_C(1700000000)
#define AUD "test-proj"

static EVP_PKEY *EC_A, *EC_B, *RSA_A;
static char *CERT_A, *CERT_B, *CERT_R; /* standard base64 DER */
static lk_verifier *V;

static char *arena[256];
static size_t narena;

static char *keep(char *p)
{
    assert_non_null(p);
    assert_true(narena < sizeof arena / sizeof arena[0]);
    arena[narena++] = p;
    return p;
}

static int gc(void **state)
{
    (void)state;
    while (narena)
        free(arena[--narena]);
    return 0;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    assert_true(n >= 0);
    return keep(s);
}

/* Standard base64 with padding (what x5c holds). */
static char *b64std(const uint8_t *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

static char *b64u(const void *p, size_t n)
{
    return keep(lk_test_b64url_ref_encode(p, n));
}

/* A certificate of subject's key, CN cn, signed by signer: x5c's base64. */
static char *cert_b64(EVP_PKEY *subject, EVP_PKEY *signer, const char *cn)
{
    X509 *x = X509_new();
    unsigned char *der = NULL;
    int n;
    char *out;

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, subject);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    assert_true(X509_sign(x, signer, EVP_sha256()) > 0);
    n = i2d_X509(x, &der);
    assert_true(n > 0);
    out = b64std(der, (size_t)n);
    OPENSSL_free(der);
    X509_free(x);
    return out;
}

/* header JSON, the standard claims, signed by k (ES256 raw r||s or RS256). */
static char *token(const char *hdr, EVP_PKEY *k, int64_t exp)
{
    char *claims = fmt("{\"iat\":%" PRId64 ",\"exp\":%" PRId64 ",\"aud\":\"%s\"}", NOW, exp, AUD);
    char *input = fmt("%s.%s", b64u(hdr, strlen(hdr)), b64u(claims, strlen(claims)));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t buf[1024], sig[1024];
    size_t n = sizeof buf, sn;

    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, buf, &n, (const uint8_t *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    if (EVP_PKEY_is_a(k, "EC")) {
        const uint8_t *p = buf;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        assert_non_null(es);
        BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
        ECDSA_SIG_free(es);
        sn = 64;
    } else {
        memcpy(sig, buf, n);
        sn = n;
    }
    return fmt("%s.%s", input, b64u(sig, sn));
}

static char *es_x5c(const char *x5c_json, EVP_PKEY *k)
{
    return token(fmt("{\"alg\":\"ES256\",\"typ\":\"JWT\",\"x5c\":%s}", x5c_json), k, NOW + 3600);
}

static lk_verify_policy pol_x5c(unsigned flags)
{
    lk_verify_policy p;
    lk_verify_policy_init(&p, AUD, strlen(AUD), NOW);
    p.max_len = LK_VERIFY_JIT_MAX_LEN;
    p.flags |= flags;
    return p;
}

static lk_x5c_certs C;

static lk_err jit(const char *tok, unsigned flags)
{
    lk_verify_policy pol = pol_x5c(flags);
    lk_token_info info;
    char why[200];
    lk_err e = lk_verify_jit_token(V, tok, strlen(tok), &pol, &info, &C, why, sizeof why);
    if (e != LK_OK) {
        assert_int_equal(C.leaf_len, 0);
        assert_int_equal(info.exp, 0);
        assert_null(strstr(why, tok));
    }
    return e;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(lk_verifier_new(&V), LK_OK);
    EC_A = EVP_EC_gen("P-256");
    EC_B = EVP_EC_gen("P-256");
    RSA_A = EVP_RSA_gen(2048);
    CERT_A = cert_b64(EC_A, EC_A, "dev-a");
    CERT_B = cert_b64(EC_B, EC_B, "dev-b");
    CERT_R = cert_b64(RSA_A, RSA_A, "dev-r");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(CERT_A);
    free(CERT_B);
    free(CERT_R);
    EVP_PKEY_free(EC_A);
    EVP_PKEY_free(EC_B);
    EVP_PKEY_free(RSA_A);
    lk_verifier_free(V);
    return 0;
}

static lk_cred *cred_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    lk_cred *c = NULL;
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    long n = BIO_get_mem_data(b, &data);
    assert_int_equal(lk_cred_parse(LK_CRED_UNSPECIFIED, data, (size_t)n, 0, &c), LK_OK);
    BIO_free(b);
    return c;
}

/* Without the flag x5c is refused, by both functions. */
static void test_flag_off(void **state)
{
    (void)state;
    char *tok = es_x5c(fmt("[\"%s\"]", CERT_A), EC_A);
    lk_cred *c = cred_of(EC_A);
    lk_verify_policy pol = pol_x5c(0);
    lk_token_info info;
    char why[200];

    assert_int_equal(lk_verify_token(V, tok, strlen(tok), &c, 1, &pol, &info, why, sizeof why),
                     LK_ERR_TOKEN_HEADER);
    assert_non_null(strstr(why, "x5c"));
    assert_int_equal(jit(tok, 0), LK_ERR_ARG);
    lk_cred_free(c);
}

/* With the flag, a known device: only its registered key verifies. */
static void test_known_device_ignores_x5c(void **state)
{
    (void)state;
    lk_cred *c = cred_of(EC_B);
    lk_verify_policy pol = pol_x5c(LK_VERIFY_ALLOW_X5C);
    lk_token_info info;
    char why[200];
    /* signed by the x5c leaf's key, which is not the device's: refused */
    char *tok = es_x5c(fmt("[\"%s\"]", CERT_A), EC_A);
    assert_int_equal(lk_verify_token(V, tok, strlen(tok), &c, 1, &pol, &info, why, sizeof why),
                     LK_ERR_TOKEN_SIGNATURE);
    /* signed by the registered key, whatever x5c says: accepted */
    tok = es_x5c(fmt("[\"%s\"]", CERT_A), EC_B);
    assert_int_equal(lk_verify_token(V, tok, strlen(tok), &c, 1, &pol, &info, why, sizeof why),
                     LK_OK);
    /* jwk, jku, x5u, crit still refused under the flag */
    tok = token("{\"alg\":\"ES256\",\"jku\":\"https://x.example/\"}", EC_B, NOW + 3600);
    assert_int_equal(lk_verify_token(V, tok, strlen(tok), &c, 1, &pol, &info, why, sizeof why),
                     LK_ERR_TOKEN_HEADER);
    lk_cred_free(c);
}

static void test_jit_accepts(void **state)
{
    (void)state;
    assert_int_equal(jit(es_x5c(fmt("[\"%s\"]", CERT_A), EC_A), LK_VERIFY_ALLOW_X5C), LK_OK);
    assert_true(C.leaf_len > 100 && strlen(C.leaf) == C.leaf_len);
    assert_non_null(strstr(C.leaf, "-----BEGIN CERTIFICATE-----"));
    assert_int_equal(C.nchain, 0);
    assert_int_equal(C.chain_len, 0);
    /* a leaf and two more: the chain holds the two, in order */
    assert_int_equal(jit(es_x5c(fmt("[\"%s\",\"%s\",\"%s\"]", CERT_A, CERT_B, CERT_R), EC_A),
                         LK_VERIFY_ALLOW_X5C), LK_OK);
    assert_int_equal(C.nchain, 2);
    assert_true(strstr(C.chain, "-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----") != NULL);
    /* RSA leaf, RS256 */
    char *tok = token(fmt("{\"alg\":\"RS256\",\"x5c\":[\"%s\"]}", CERT_R), RSA_A, NOW + 3600);
    assert_int_equal(jit(tok, LK_VERIFY_ALLOW_X5C), LK_OK);
}

/* The cheap presence test before a JIT attempt spends from the rate budget. */
static void test_has_x5c(void **state)
{
    (void)state;
    const unsigned P = LK_VERIFY_ALLOW_PADDING;
    char *tok = es_x5c(fmt("[\"%s\",\"%s\"]", CERT_A, CERT_B), EC_A);
    assert_int_equal(lk_jwt_has_x5c(tok, strlen(tok), LK_VERIFY_JIT_MAX_LEN, P), 1);
    /* too long for the cap given; the default cap (4 KiB) is not a JIT token's */
    assert_int_equal(lk_jwt_has_x5c(tok, strlen(tok), 100, P), 0);
    /* whatever its value: a bad x5c is lk_verify_jit_token's to refuse */
    assert_int_equal(lk_jwt_has_x5c("eyJ4NWMiOltdfQ.e30.AA", 21, 0, 0), 1);
    /* no x5c member: a plain token, or "x5c" only as a value */
    tok = token("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", EC_A, NOW + 3600);
    assert_int_equal(lk_jwt_has_x5c(tok, strlen(tok), 0, P), 0);
    assert_int_equal(lk_jwt_has_x5c("eyJhIjoieDVjIn0.e30.AA", 22, 0, 0), 0);
    /* padding only when allowed; duplicates, two segments, NULL: no */
    assert_int_equal(lk_jwt_has_x5c("eyJ4NWMiOltdfQ==.e30.AA", 23, 0, 0), 0);
    assert_int_equal(lk_jwt_has_x5c("eyJ4NWMiOltdfQ==.e30.AA", 23, 0, P), 1);
    assert_int_equal(lk_jwt_has_x5c("eyJ4NWMiOjEsIng1YyI6Mn0.e30.AA", 30, 0, 0), 0);
    assert_int_equal(lk_jwt_has_x5c("eyJ4NWMiOltdfQ.e30", 18, 0, 0), 0);
    assert_int_equal(lk_jwt_has_x5c(NULL, 0, 0, 0), 0);
    assert_int_equal(lk_jwt_has_x5c("eyJ4NWMiOltdfQ.e30.AA", 21, LK_VERIFY_MAX_LEN_LIMIT + 1, 0), 0);
}

static void test_jit_refuses(void **state)
{
    (void)state;
    const unsigned F = LK_VERIFY_ALLOW_X5C;
    /* signed by another key than the leaf's */
    assert_int_equal(jit(es_x5c(fmt("[\"%s\"]", CERT_A), EC_B), F), LK_ERR_TOKEN_SIGNATURE);
    /* the second certificate's key signed: still only the leaf counts */
    assert_int_equal(jit(es_x5c(fmt("[\"%s\",\"%s\"]", CERT_A, CERT_B), EC_B), F),
                     LK_ERR_TOKEN_SIGNATURE);
    /* no x5c; the fixed header */
    assert_int_equal(jit(token("{\"alg\":\"ES256\"}", EC_A, NOW + 3600), F), LK_ERR_TOKEN_HEADER);
    assert_int_equal(jit(token("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", EC_A, NOW + 3600), F),
                     LK_ERR_TOKEN_HEADER);
    /* shapes */
    const char *bad[] = {"[]", "\"x\"", "{}", "null", "[1]", "[null]", "[\"\"]", "[\"MIIB\"]",
                         "[\"not base64!\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(jit(es_x5c(bad[i], EC_A), F), LK_ERR_TOKEN_HEADER);
    /* four certificates */
    assert_int_equal(jit(es_x5c(fmt("[\"%s\",\"%s\",\"%s\",\"%s\"]", CERT_A, CERT_B, CERT_B, CERT_B),
                                EC_A), F), LK_ERR_TOKEN_HEADER);
    /* base64url alphabet, missing padding, white space, bytes after the DER */
    char *u = fmt("%s", CERT_A), *p;
    size_t n = strlen(u);
    for (p = u; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    if (strcmp(u, CERT_A))
        assert_int_equal(jit(es_x5c(fmt("[\"%s\"]", u), EC_A), F), LK_ERR_TOKEN_HEADER);
    if (CERT_A[n - 1] == '=') {
        assert_int_equal(jit(es_x5c(fmt("[\"%.*s\"]", (int)(n - 1), CERT_A), EC_A), F),
                         LK_ERR_TOKEN_HEADER);
    }
    assert_int_equal(jit(es_x5c(fmt("[\"%.*s\\n%s\"]", 64, CERT_A, CERT_A + 64), EC_A), F),
                     LK_ERR_TOKEN_HEADER);
    {
        /* the DER of the leaf and four more bytes */
        uint8_t *der = malloc(n);
        size_t dn = (size_t)EVP_DecodeBlock(der, (const unsigned char *)CERT_A, (int)n);
        /* EVP_DecodeBlock counts the padding's bytes */
        dn -= (CERT_A[n - 1] == '=') + (CERT_A[n - 2] == '=');
        uint8_t *more = malloc(dn + 4);
        memcpy(more, der, dn);
        memset(more + dn, 0, 4);
        char *b = b64std(more, dn + 4);
        assert_int_equal(jit(es_x5c(fmt("[\"%s\"]", b), EC_A), F), LK_ERR_TOKEN_HEADER);
        free(b);
        free(more);
        free(der);
    }
    /* an x5c leaf of the other algorithm than the header's */
    assert_int_equal(jit(es_x5c(fmt("[\"%s\"]", CERT_R), EC_A), F), LK_ERR_TOKEN_ALG);
    /* the usual rules still apply */
    assert_int_equal(jit(token(fmt("{\"alg\":\"ES256\",\"x5c\":[\"%s\"]}", CERT_A), EC_A, NOW - 3600),
                         F), LK_ERR_TOKEN_EXPIRED);
    assert_int_equal(jit(token(fmt("{\"alg\":\"ES256\",\"x5c\":[\"%s\"],\"jwk\":{}}", CERT_A), EC_A,
                               NOW + 3600), F), LK_ERR_TOKEN_HEADER);
    /* the length cap */
    {
        char *tok = es_x5c(fmt("[\"%s\",\"%s\"]", CERT_A, CERT_R), EC_A);
        lk_verify_policy pol = pol_x5c(F);
        lk_token_info info;
        pol.max_len = strlen(tok) - 1;
        assert_int_equal(lk_verify_jit_token(V, tok, strlen(tok), &pol, &info, &C, NULL, 0),
                         LK_ERR_TOKEN_TOO_LARGE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_flag_off, gc),
        cmocka_unit_test_teardown(test_known_device_ignores_x5c, gc),
        cmocka_unit_test_teardown(test_jit_accepts, gc),
        cmocka_unit_test_teardown(test_jit_refuses, gc),
        cmocka_unit_test_teardown(test_has_x5c, gc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
