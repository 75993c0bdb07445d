/*
 * fuzz_cred — libFuzzer target for lk_cred_parse (lk_verify.h): PEM public
 * keys and certificates as the device registry stores them.
 *
 * Input: one control byte, then the PEM text (an exact-size heap copy, not
 * NUL-terminated). Control bits 0-2, modulo 6: the format (0 UNSPECIFIED,
 * 1..4 the IoT Core formats, 5 an out-of-range value); bit 7: the
 * credential expired a second before the policy's now (else 0 = never).
 *
 * Invariants (abort on violation):
 *  - on failure *out is NULL, and the error is LK_ERR_CRED_INVALID, or
 *    LK_ERR_ARG for an out-of-range format or text over LK_CRED_PEM_MAX;
 *  - a credential is accepted only if OpenSSL, independently, reads the
 *    text as one PEM object of the format's label (PUBLIC KEY or
 *    CERTIFICATE) holding a P-256 key or an RSA key of 2048..8192 bits, of
 *    the type the format names; the text holds one "-----BEGIN" only; the
 *    accessors report that format (the detected one for UNSPECIFIED), its
 *    algorithm, the given expiry, and the SHA-256 of the key's DER SPKI;
 *  - the credential is usable: a well-formed, in-time token with a
 *    signature of the right length but made by no key is refused with
 *    LK_ERR_TOKEN_SIGNATURE (LK_ERR_NO_CREDENTIAL if the credential has
 *    expired: it is never tried).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_verify.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define NOW INT64_C(1700000000)
#define AUD "fuzz-project"

static lk_verifier *g_verifier;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (lk_verifier_new(&g_verifier) != LK_OK) {
        fprintf(stderr, "fuzz_cred: lk_verifier_new failed\n");
        abort();
    }
    return 0;
}

/* OpenSSL's own reading of pem: the public key of the first object with the
 * label fmt calls for, or NULL. */
static EVP_PKEY *openssl_key(lk_cred_format fmt, const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = NULL;

    CHECK(bio != NULL);
    if (fmt == LK_CRED_RSA_PEM || fmt == LK_CRED_ES256_PEM) {
        key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    } else {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x != NULL) {
            key = X509_get_pubkey(x);
            X509_free(x);
        }
    }
    BIO_free(bio);
    return key;
}

static size_t count_begin(const char *p, size_t n)
{
    static const char tag[] = "-----BEGIN";
    size_t count = 0;
    const char *q = p, *end = p + n;

    while ((q = memmem(q, (size_t)(end - q), tag, sizeof tag - 1)) != NULL) {
        count++;
        q += sizeof tag - 1;
    }
    return count;
}

/* {"alg":alg,"typ":"JWT"}.{"iat":NOW,"exp":NOW+3600,"aud":AUD}.<sig_len bytes
 * of 0x01>: well-formed and in time, signed by nobody. */
static void check_unsigned_token_refused(lk_cred *cred, lk_alg alg, size_t sig_len,
                                         lk_err want)
{
    char header[64], claims[128], tok[4096], why[128];
    uint8_t sig[1024];
    size_t len = 0, w;
    lk_verify_policy pol;
    lk_token_info info;
    lk_cred *creds[1] = {cred};
    lk_err err;

    CHECK(sig_len <= sizeof sig);
    memset(sig, 0x01, sig_len);
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", lk_alg_name(alg));
    snprintf(claims, sizeof claims, "{\"iat\":%lld,\"exp\":%lld,\"aud\":\"%s\"}",
             (long long)NOW, (long long)NOW + 3600, AUD);
    CHECK(lk_b64url_encode((const uint8_t *)header, strlen(header), tok, sizeof tok, &w) == LK_OK);
    len += w;
    tok[len++] = '.';
    CHECK(lk_b64url_encode((const uint8_t *)claims, strlen(claims), tok + len,
                           sizeof tok - len, &w) == LK_OK);
    len += w;
    tok[len++] = '.';
    CHECK(lk_b64url_encode(sig, sig_len, tok + len, sizeof tok - len, &w) == LK_OK);
    len += w;

    lk_verify_policy_init(&pol, AUD, strlen(AUD), NOW);
    pol.max_len = LK_VERIFY_MAX_LEN_LIMIT;
    err = lk_verify_token(g_verifier, tok, len, creds, 1, &pol, &info, why, sizeof why);
    if (err != want) {
        fprintf(stderr, "fuzz_cred: unsigned token: %s (%s)\n", lk_errname(err), why);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned ctl = size > 0 ? data[0] : 0u;
    lk_cred_format fmt = (lk_cred_format)((ctl & 7u) % 6u);
    int64_t expires = (ctl & 0x80u) ? NOW - 1 : 0;
    size_t len = size > 0 ? size - 1 : 0;
    char *pem = malloc(len ? len : 1);
    lk_cred *cred = (lk_cred *)&ctl; /* must come back NULL on failure */
    lk_cred_format got;
    lk_alg alg;
    EVP_PKEY *key;
    uint8_t fp[32], want_fp[32], *der = NULL;
    unsigned int fp_len = 0;
    int der_len, bits;
    lk_err err;

    CHECK(pem != NULL);
    if (len)
        memcpy(pem, data + 1, len);
    err = lk_cred_parse(fmt, pem, len, expires, &cred);
    if (err != LK_OK) {
        CHECK(cred == NULL);
        if (err == LK_ERR_ARG)
            CHECK(fmt > LK_CRED_ES256_X509_PEM || len > LK_CRED_PEM_MAX || len == 0);
        else
            CHECK(err == LK_ERR_CRED_INVALID);
        free(pem);
        return 0;
    }
    CHECK(cred != NULL);
    CHECK(fmt <= LK_CRED_ES256_X509_PEM && len <= LK_CRED_PEM_MAX);
    got = lk_cred_get_format(cred);
    alg = lk_cred_alg(cred);
    CHECK(fmt == LK_CRED_UNSPECIFIED || got == fmt);
    CHECK(got >= LK_CRED_RSA_PEM && got <= LK_CRED_ES256_X509_PEM);
    CHECK(alg == ((got == LK_CRED_RSA_PEM || got == LK_CRED_RSA_X509_PEM) ? LK_ALG_RS256
                                                                          : LK_ALG_ES256));
    CHECK(lk_cred_expires(cred) == expires);
    CHECK(count_begin(pem, len) == 1);

    key = openssl_key(got, pem, len);
    CHECK(key != NULL);
    bits = EVP_PKEY_get_bits(key);
    if (alg == LK_ALG_RS256) {
        CHECK(EVP_PKEY_is_a(key, "RSA"));
        CHECK(bits >= 2048 && bits <= 8192);
    } else {
        char curve[64];
        size_t curve_len = 0;
        CHECK(EVP_PKEY_is_a(key, "EC"));
        CHECK(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, curve,
                                             sizeof curve, &curve_len) == 1);
        CHECK(strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0);
    }
    der_len = i2d_PUBKEY(key, &der);
    CHECK(der_len > 0);
    CHECK(EVP_Digest(der, (size_t)der_len, want_fp, &fp_len, EVP_sha256(), NULL) == 1);
    lk_cred_fingerprint(cred, fp);
    CHECK(memcmp(fp, want_fp, 32) == 0);

    check_unsigned_token_refused(cred, alg,
                                 alg == LK_ALG_ES256 ? 64u : (size_t)EVP_PKEY_get_size(key),
                                 expires != 0 ? LK_ERR_NO_CREDENTIAL : LK_ERR_TOKEN_SIGNATURE);
    OPENSSL_free(der);
    EVP_PKEY_free(key);
    lk_cred_free(cred);
    free(pem);
    return 0;
}
