/*
 * password.c — operators' password records (lk_reg_audit.h): scrypt from
 * OpenSSL 3 (EVP_KDF "SCRYPT"), never a primitive of our own.
 *
 * Record: "scrypt$LN$R$P$SALT$HASH", LN = log2 N, SALT 16 bytes and HASH 32
 * bytes in base64url without padding. The parameters travel with the hash,
 * so new records may use stronger ones while old ones still verify.
 * Decisions: N = 2^15, r = 8, p = 1 (OWASP's scrypt minimum is 2^17 with
 * r = 8, p = 1 at 128 MiB; 2^15 costs 32 MiB and ~0.1 s, what one
 * single-threaded latchkeyd can give a sign-in: see docs/console.md);
 * verification accepts LN 10..20, r 1..32, p 1..16 and refuses anything
 * else as malformed (a record asking for gigabytes is not run).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_reg_audit.h"
#include "latchkey/lk_util.h"

#define SALT_LEN 16
#define HASH_LEN 32
#define SCRYPT_R 8u
#define SCRYPT_P 1u

/* The KDF: 0, or -1 (out wiped). */
static int derive(const char *pw, size_t len, const uint8_t *salt, size_t salt_len, unsigned ln,
                  unsigned r, unsigned p, uint8_t out[HASH_LEN])
{
    static const char empty[1] = "";
    uint64_t n = (uint64_t)1 << ln;
    uint32_t r32 = r, p32 = p;
    /* 128 * r * N bytes, plus room: OpenSSL refuses above maxmem */
    uint64_t maxmem = 128u * (uint64_t)r * n * (uint64_t)p + ((uint64_t)16 << 20);
    OSSL_PARAM params[7];
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
    int ok = 0;

    EVP_KDF_free(kdf);
    if (ctx != NULL) {
        params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                                      (void *)(len > 0 ? pw : empty), len);
        params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
        params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
        params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r32);
        params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p32);
        params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
        params[6] = OSSL_PARAM_construct_end();
        ok = EVP_KDF_derive(ctx, out, HASH_LEN, params) == 1;
        EVP_KDF_CTX_free(ctx);
    }
    if (!ok)
        OPENSSL_cleanse(out, HASH_LEN);
    return ok ? 0 : -1;
}

lk_err lk_password_hash(const char *pw, size_t len, char *out, size_t out_size)
{
    uint8_t salt[SALT_LEN], hash[HASH_LEN];
    char s64[LK_B64URL_ENCODED_LEN(SALT_LEN) + 1], h64[LK_B64URL_ENCODED_LEN(HASH_LEN) + 1];
    size_t sl = 0, hl = 0;
    lk_err err = LK_OK;
    int n;

    if (out != NULL && out_size > 0)
        out[0] = '\0';
    if (pw == NULL || out == NULL || out_size < LK_PASSWORD_RECORD_MAX || len < LK_PASSWORD_MIN ||
        len > LK_PASSWORD_MAX)
        return LK_ERR_ARG;
    if (RAND_bytes(salt, sizeof salt) != 1)
        return LK_ERR_RNG;
    if (derive(pw, len, salt, sizeof salt, LK_PASSWORD_LOG_N, SCRYPT_R, SCRYPT_P, hash) != 0)
        return LK_ERR_CRYPTO;
    if (lk_b64url_encode(salt, sizeof salt, s64, sizeof s64, &sl) != LK_OK ||
        lk_b64url_encode(hash, sizeof hash, h64, sizeof h64, &hl) != LK_OK)
        err = LK_ERR_CRYPTO;
    if (err == LK_OK) {
        s64[sl] = h64[hl] = '\0';
        n = snprintf(out, out_size, "scrypt$%u$%u$%u$%s$%s", LK_PASSWORD_LOG_N, SCRYPT_R,
                     SCRYPT_P, s64, h64);
        if (n < 0 || (size_t)n >= out_size)
            err = LK_ERR_BUFFER;
    }
    if (err != LK_OK)
        OPENSSL_cleanse(out, out_size);
    OPENSSL_cleanse(hash, sizeof hash);
    OPENSSL_cleanse(h64, sizeof h64);
    return err;
}

/* An unsigned decimal field ending at '$': its value in [min, max] and *p
 * past the '$', else -1. */
static long field(const char **p, long min, long max)
{
    long v = 0;
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9' && v <= max)
        v = v * 10 + (*s++ - '0');
    if (*s != '$' || v < min || v > max)
        return -1;
    *p = s + 1;
    return v;
}

int lk_password_verify(const char *record, const char *pw, size_t len)
{
    uint8_t salt[64], want[HASH_LEN + 2], got[HASH_LEN];
    size_t sl = 0, wl = 0;
    const char *p, *dollar;
    long ln, r, par;
    int ok;

    if (record == NULL || pw == NULL || len > LK_PASSWORD_MAX ||
        strncmp(record, "scrypt$", 7) != 0)
        return 0;
    p = record + 7;
    if ((ln = field(&p, 10, 20)) < 0 || (r = field(&p, 1, 32)) < 0 || (par = field(&p, 1, 16)) < 0)
        return 0;
    dollar = strchr(p, '$');
    if (dollar == NULL || (size_t)(dollar - p) > LK_B64URL_ENCODED_LEN(sizeof salt) ||
        lk_b64url_decode(p, (size_t)(dollar - p), salt, sizeof salt, &sl, 0) != LK_OK || sl < 8 ||
        lk_b64url_decode(dollar + 1, strlen(dollar + 1), want, sizeof want, &wl, 0) != LK_OK ||
        wl != HASH_LEN)
        return 0;
    if (derive(pw, len, salt, sl, (unsigned)ln, (unsigned)r, (unsigned)par, got) != 0)
        return 0;
    ok = CRYPTO_memcmp(got, want, HASH_LEN) == 0;
    OPENSSL_cleanse(got, sizeof got);
    OPENSSL_cleanse(want, sizeof want);
    return ok;
}
