/*
 * test_rfc_vectors.c — the RFC 7515 example tokens (A.3 ES256, A.2 RS256)
 * and the RFC 7519 §3.1 HS256 example, read from tests/vectors/
 * (rfc_jose_examples.json), verified through the project's code: each
 * segment decoded with lk_b64url_decode (strict), header.payload hashed with
 * lk_sha256, and only the final signature check done by OpenSSL, against a
 * key built from the JWK. Then tamper-then-verify: every single-bit change
 * of a token makes it fail.
 */
#include "lk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_se.h"
#include "latchkey/lk_sha256.h"

static json_t *vectors;

static int load_vectors(void **state)
{
    (void)state;
    json_error_t err;
    const char *path = lk_test_vector_path("rfc_jose_examples.json");
    vectors = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (vectors == NULL) {
        fprintf(stderr, "cannot read %s: %s (tests/vectors/SOURCE.md)\n", path, err.text);
        return -1;
    }
    return 0;
}

static int free_vectors(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

static const char *vstr(const char *example, const char *field)
{
    json_t *ex = json_object_get(vectors, example);
    assert_non_null(ex);
    const char *s = json_string_value(json_object_get(ex, field));
    if (s == NULL)
        fail_msg("%s.%s missing", example, field);
    return s;
}

static const char *vstr2(const char *example, const char *obj, const char *field)
{
    json_t *ex = json_object_get(vectors, example);
    assert_non_null(ex);
    const char *s = json_string_value(json_object_get(json_object_get(ex, obj), field));
    if (s == NULL)
        fail_msg("%s.%s.%s missing", example, obj, field);
    return s;
}

/* Strict decode of a base64url field into a malloc'd buffer; asserts. */
static uint8_t *b64(const char *s, size_t n, size_t *out_len)
{
    size_t cap = LK_B64URL_DECODED_MAX(n);
    uint8_t *out = malloc(cap + 1);
    assert_non_null(out);
    assert_int_equal(lk_b64url_decode(s, n, out, cap, out_len, 0), LK_OK);
    return out;
}

/* ---- keys from the JWKs --------------------------------------------------- */

static EVP_PKEY *ec_key_from_jwk(const char *x64, const char *y64)
{
    size_t xl, yl;
    uint8_t *x = b64(x64, strlen(x64), &xl), *y = b64(y64, strlen(y64), &yl);
    assert_int_equal(xl, 32);
    assert_int_equal(yl, 32);
    uint8_t point[LK_P256_POINT_BYTES];
    point[0] = 0x04;
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    free(x);
    free(y);

    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    assert_non_null(bld);
    assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                                     "prime256v1", 0), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                                      point, sizeof point), 1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    assert_non_null(params);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *rsa_key_from_jwk(const char *n64, const char *e64)
{
    size_t nl, el;
    uint8_t *n = b64(n64, strlen(n64), &nl), *e = b64(e64, strlen(e64), &el);
    assert_int_equal(nl, 256);
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    free(n);
    free(e);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn), 1);
    assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be), 1);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *pkey = NULL;
    assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
    assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *key_from_pem(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(k);
    return k;
}

/* ---- verification through the project's code ---------------------------- */

/* Verify a 32-byte digest (computed by lk_sha256) with OpenSSL: ES256 raw
 * r||s (converted to DER here) or RS256 PKCS#1 v1.5. */
static int verify_digest(EVP_PKEY *pkey, const char *alg, const uint8_t digest[32],
                         const uint8_t *sig, size_t sig_len)
{
    uint8_t der[80];
    const uint8_t *vsig = sig;
    size_t vlen = sig_len;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
    if (strcmp(alg, "ES256") == 0) {
        if (sig_len != 64) {
            EVP_PKEY_CTX_free(ctx);
            return 0;
        }
        ECDSA_SIG *es = ECDSA_SIG_new();
        assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL),
                                        BN_bin2bn(sig + 32, 32, NULL)), 1);
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        assert_true(n > 0 && (size_t)n <= sizeof der);
        vsig = der;
        vlen = (size_t)n;
    } else {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
        if (sig_len != (size_t)EVP_PKEY_get_size(pkey)) {
            EVP_PKEY_CTX_free(ctx);
            return 0;
        }
    }
    int ok = EVP_PKEY_verify(ctx, vsig, vlen, digest, 32) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* Split, strictly decode, check the header's alg, hash, verify. 1 = valid. */
static int verify_jws(EVP_PKEY *pkey, const char *alg, const char *tok, size_t len,
                      const char *want_payload)
{
    const char *d1 = memchr(tok, '.', len);
    if (d1 == NULL)
        return 0;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL)
        return 0;
    size_t hl = (size_t)(d1 - tok), pl = (size_t)(d2 - d1 - 1);
    size_t sl = len - (size_t)(d2 + 1 - tok);
    uint8_t hdr[128], payload[256], sig[600];
    size_t hn, pn, sn;
    if (lk_b64url_decode(tok, hl, hdr, sizeof hdr, &hn, 0) != LK_OK ||
        lk_b64url_decode(d1 + 1, pl, payload, sizeof payload, &pn, 0) != LK_OK ||
        lk_b64url_decode(d2 + 1, sl, sig, sizeof sig, &sn, 0) != LK_OK)
        return 0;

    /* the header names the algorithm the test expects, and nothing else */
    json_error_t jerr;
    json_t *h = json_loadb((const char *)hdr, hn, JSON_REJECT_DUPLICATES, &jerr);
    if (h == NULL)
        return 0;
    const char *a = json_string_value(json_object_get(h, "alg"));
    int alg_ok = a != NULL && strcmp(a, alg) == 0 && json_object_size(h) == 1;
    json_decref(h);
    if (!alg_ok)
        return 0;
    if (want_payload != NULL &&
        (pn != strlen(want_payload) || memcmp(payload, want_payload, pn) != 0))
        return 0;

    uint8_t digest[LK_SHA256_BYTES];
    lk_sha256(tok, (size_t)(d2 - tok), digest);
    return verify_digest(pkey, alg, digest, sig, sn);
}

/* Every single-bit change of tok makes verification fail. */
static void check_tamper(EVP_PKEY *pkey, const char *alg, const char *tok0)
{
    size_t len = strlen(tok0);
    char *tok = malloc(len + 1);
    memcpy(tok, tok0, len + 1);
    assert_true(verify_jws(pkey, alg, tok, len, NULL));
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            tok[i] ^= (char)(1u << bit);
            if (verify_jws(pkey, alg, tok, len, NULL))
                fail_msg("%s token still verifies with byte %zu ('%c') bit %d flipped",
                         alg, i, tok0[i], bit);
            tok[i] ^= (char)(1u << bit);
        }
    }
    /* every truncation, and trailing garbage */
    for (size_t n = 0; n < len; n++)
        assert_false(verify_jws(pkey, alg, tok, n, NULL));
    char *longer = malloc(len + 3);
    memcpy(longer, tok0, len);
    memcpy(longer + len, "AA", 3);
    assert_false(verify_jws(pkey, alg, longer, len + 2, NULL));
    memcpy(longer + len, "=", 2);
    assert_false(verify_jws(pkey, alg, longer, len + 1, NULL));
    free(longer);
    free(tok);
}

/* ---- the tests ----------------------------------------------------------- */

static void test_a3_es256_verifies(void **state)
{
    (void)state;
    const char *ex = "rfc7515_a3_es256";
    const char *jws = vstr(ex, "jws");
    EVP_PKEY *pkey = ec_key_from_jwk(vstr2(ex, "jwk", "x"), vstr2(ex, "jwk", "y"));

    /* the JWK and the PEM are the same key */
    EVP_PKEY *pem = key_from_pem(vstr(ex, "public_key_pem"));
    assert_int_equal(EVP_PKEY_eq(pkey, pem), 1);

    /* and lk_p256_spki_from_point of the JWK's point is the PEM's DER */
    size_t xl, yl;
    const char *x64 = vstr2(ex, "jwk", "x"), *y64 = vstr2(ex, "jwk", "y");
    uint8_t *x = b64(x64, strlen(x64), &xl), *y = b64(y64, strlen(y64), &yl);
    uint8_t point[LK_P256_POINT_BYTES], spki[LK_P256_SPKI_BYTES];
    point[0] = 0x04;
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    size_t spki_len;
    assert_int_equal(lk_p256_spki_from_point(point, spki, sizeof spki, &spki_len), LK_OK);
    unsigned char *der = NULL;
    int der_len = i2d_PUBKEY(pem, &der);
    assert_int_equal(der_len, (int)spki_len);
    assert_memory_equal(spki, der, spki_len);
    OPENSSL_free(der);
    free(x);
    free(y);
    EVP_PKEY_free(pem);

    /* the whole token, through lk_b64url_decode and lk_sha256 */
    assert_true(verify_jws(pkey, "ES256", jws, strlen(jws), vstr(ex, "payload_json")));

    /* the signature segment is r||s as the file records */
    const char *d2 = strrchr(jws, '.');
    size_t sn;
    uint8_t *sig = b64(d2 + 1, strlen(d2 + 1), &sn);
    assert_int_equal(sn, 64);
    uint8_t r[32], s[32];
    assert_int_equal(lk_test_hex2bin(vstr(ex, "signature_r_hex"), r, 32), 0);
    assert_int_equal(lk_test_hex2bin(vstr(ex, "signature_s_hex"), s, 32), 0);
    assert_memory_equal(sig, r, 32);
    assert_memory_equal(sig + 32, s, 32);
    free(sig);

    /* the header is {"alg":"ES256"} exactly */
    const char *d1 = strchr(jws, '.');
    size_t hn;
    uint8_t *hdr = b64(jws, (size_t)(d1 - jws), &hn);
    assert_int_equal(hn, strlen("{\"alg\":\"ES256\"}"));
    assert_memory_equal(hdr, "{\"alg\":\"ES256\"}", hn);
    free(hdr);

    /* the wrong algorithm name or the wrong key does not verify */
    assert_false(verify_jws(pkey, "RS256", jws, strlen(jws), NULL));
    EVP_PKEY *other = EVP_EC_gen("P-256");
    assert_false(verify_jws(other, "ES256", jws, strlen(jws), NULL));
    EVP_PKEY_free(other);
    EVP_PKEY_free(pkey);
}

/* The same r with s replaced by n - s is a valid ECDSA signature: JWS does
 * not demand low-S, and neither does this check. */
static void test_a3_high_low_s_variant(void **state)
{
    (void)state;
    const char *ex = "rfc7515_a3_es256";
    EVP_PKEY *pkey = ec_key_from_jwk(vstr2(ex, "jwk", "x"), vstr2(ex, "jwk", "y"));
    const char *jws = vstr2(ex, "malleated_high_low_s_variant", "jws");
    assert_true(verify_jws(pkey, "ES256", jws, strlen(jws), vstr(ex, "payload_json")));
    /* and it differs from the original only in s */
    const char *orig = vstr(ex, "jws");
    const char *dot = strrchr(orig, '.');
    assert_memory_equal(jws, orig, (size_t)(dot - orig) + 1 + 42);
    assert_string_not_equal(jws, orig);
    EVP_PKEY_free(pkey);
}

static void test_a3_tampering_fails(void **state)
{
    (void)state;
    const char *ex = "rfc7515_a3_es256";
    EVP_PKEY *pkey = ec_key_from_jwk(vstr2(ex, "jwk", "x"), vstr2(ex, "jwk", "y"));
    check_tamper(pkey, "ES256", vstr(ex, "jws"));
    check_tamper(pkey, "ES256", vstr2(ex, "malleated_high_low_s_variant", "jws"));

    /* a lenient decoder would let these through; the strict one does not:
     * the last signature character with non-zero unused bits */
    const char *jws = vstr(ex, "jws");
    size_t len = strlen(jws);
    char *t = malloc(len + 1);
    memcpy(t, jws, len + 1);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int accepted = 0;
    for (int v = 0; v < 64; v++) {
        t[len - 1] = alphabet[v];
        if (verify_jws(pkey, "ES256", t, len, NULL))
            accepted++;
    }
    assert_int_equal(accepted, 1); /* only the original character */
    /* padding added to the signature segment */
    char *padded = malloc(len + 3);
    memcpy(padded, jws, len);
    memcpy(padded + len, "==", 3);
    assert_false(verify_jws(pkey, "ES256", padded, len + 2, NULL));
    free(padded);
    free(t);
    EVP_PKEY_free(pkey);
}

static void test_a2_rs256_verifies(void **state)
{
    (void)state;
    const char *ex = "rfc7515_a2_rs256";
    const char *jws = vstr(ex, "jws");
    EVP_PKEY *pkey = rsa_key_from_jwk(vstr2(ex, "public_jwk", "n"),
                                      vstr2(ex, "public_jwk", "e"));
    EVP_PKEY *pem = key_from_pem(vstr(ex, "public_key_pem"));
    assert_int_equal(EVP_PKEY_eq(pkey, pem), 1);
    EVP_PKEY_free(pem);

    /* A.2 and A.3 sign the same payload */
    assert_true(verify_jws(pkey, "RS256", jws, strlen(jws),
                           vstr("rfc7515_a3_es256", "payload_json")));
    assert_false(verify_jws(pkey, "ES256", jws, strlen(jws), NULL));
    check_tamper(pkey, "RS256", jws);
    EVP_PKEY_free(pkey);
}

/* RFC 7519 §3.1 (HS256): this project never verifies HS256, but the token
 * and its key exercise the decoder (the header and claims contain CR LF),
 * and the MAC recomputed over the lk_b64url-decoded key matches. */
static void test_rfc7519_hs256_decodes(void **state)
{
    (void)state;
    const char *ex = "rfc7519_s3_1_hs256";
    const char *jwt = vstr(ex, "jwt");
    const char *k64 = vstr2(ex, "hmac_key_jwk", "k");
    size_t kl;
    uint8_t *key = b64(k64, strlen(k64), &kl);
    assert_int_equal(kl, 64);

    const char *d1 = strchr(jwt, '.'), *d2 = strrchr(jwt, '.');
    size_t hn, pn, sn;
    uint8_t *hdr = b64(jwt, (size_t)(d1 - jwt), &hn);
    uint8_t *payload = b64(d1 + 1, (size_t)(d2 - d1 - 1), &pn);
    uint8_t *sig = b64(d2 + 1, strlen(d2 + 1), &sn);
    const char *hj = vstr(ex, "header_json"), *cj = vstr(ex, "claims_json");
    assert_int_equal(hn, strlen(hj));
    assert_memory_equal(hdr, hj, hn);
    assert_int_equal(pn, strlen(cj));
    assert_memory_equal(payload, cj, pn);
    assert_int_equal(sn, 32);

    uint8_t mac[32];
    unsigned int ml = 0;
    assert_non_null(HMAC(EVP_sha256(), key, (int)kl, (const uint8_t *)jwt, (size_t)(d2 - jwt),
                         mac, &ml));
    assert_int_equal(ml, 32);
    assert_memory_equal(mac, sig, 32);
    free(key);
    free(hdr);
    free(payload);
    free(sig);
}

/* Every segment of every example round-trips through lk_b64url_encode. */
static void test_segments_reencode(void **state)
{
    (void)state;
    const char *toks[] = { vstr("rfc7515_a3_es256", "jws"), vstr("rfc7515_a2_rs256", "jws"),
                           vstr("rfc7519_s3_1_hs256", "jwt") };
    for (size_t i = 0; i < 3; i++) {
        const char *p = toks[i];
        for (;;) {
            const char *end = strchr(p, '.');
            size_t n = end ? (size_t)(end - p) : strlen(p);
            size_t bl;
            uint8_t *bin = b64(p, n, &bl);
            char *enc = malloc(LK_B64URL_ENCODED_LEN(bl) + 1);
            size_t el;
            assert_int_equal(lk_b64url_encode(bin, bl, enc, LK_B64URL_ENCODED_LEN(bl) + 1, &el),
                             LK_OK);
            assert_int_equal(el, n);
            assert_memory_equal(enc, p, n);
            free(enc);
            free(bin);
            if (end == NULL)
                break;
            p = end + 1;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a3_es256_verifies),
        cmocka_unit_test(test_a3_high_low_s_variant),
        cmocka_unit_test(test_a3_tampering_fails),
        cmocka_unit_test(test_a2_rs256_verifies),
        cmocka_unit_test(test_rfc7519_hs256_decodes),
        cmocka_unit_test(test_segments_reencode),
    };
    return cmocka_run_group_tests_name("rfc_vectors", tests, load_vectors, free_vectors);
}
