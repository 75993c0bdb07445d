/*
 * Credentials: a device's registered public keys, parsed once into OpenSSL
 * key objects with a ready verification context (parsing a PEM key costs
 * several verifications). See lk_verify.h.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "latchkey/lk_util.h"
#include "verify_internal.h"

#define RSA_MAX_BITS 8192

static const struct {
    lk_cred_format fmt;
    const char *name;
} format_names[] = {
    {LK_CRED_RSA_PEM, "RSA_PEM"},
    {LK_CRED_RSA_X509_PEM, "RSA_X509_PEM"},
    {LK_CRED_ES256_PEM, "ES256_PEM"},
    {LK_CRED_ES256_X509_PEM, "ES256_X509_PEM"},
};

const char *lk_cred_format_name(lk_cred_format fmt)
{
    size_t i;
    for (i = 0; i < sizeof format_names / sizeof format_names[0]; i++)
        if (format_names[i].fmt == fmt)
            return format_names[i].name;
    return "UNSPECIFIED";
}

lk_cred_format lk_cred_format_from_name(const char *name, size_t len)
{
    size_t i;
    if (name == NULL)
        return LK_CRED_UNSPECIFIED;
    for (i = 0; i < sizeof format_names / sizeof format_names[0]; i++)
        if (strlen(format_names[i].name) == len && memcmp(format_names[i].name, name, len) == 0)
            return format_names[i].fmt;
    return LK_CRED_UNSPECIFIED;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static lk_alg key_alg(EVP_PKEY *pk, int *ok)
{
    *ok = 0;
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
        char group[64], enc[32];
        size_t glen = 0, elen = 0;
        /* P-256 by name only: explicit curve parameters give the same key a
         * second encoding (and a second fingerprint), and are how CurveBall
         * smuggled in a custom generator. */
        if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen) &&
            strcmp(group, "prime256v1") == 0 &&
            EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof enc, &elen) &&
            strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) == 0)
            *ok = 1;
        return LK_ALG_ES256;
    }
    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pk);
        *ok = bits >= (int)LK_RSA_MIN_BITS && bits <= RSA_MAX_BITS &&
              lk_verify__rsa_exponent_ok(pk, NULL, 0);
        return LK_ALG_RS256;
    }
    return LK_ALG_NONE;
}

/*
 * The fast path for the commonest credential, an ES256_PEM key in the
 * canonical layout (`openssl ec -pubout`, every SDK): the PEM body is exactly
 * the 91-byte P-256 SubjectPublicKeyInfo, so the key is built from its point
 * with EVP_PKEY_fromdata (which refuses a point not on the curve) instead of
 * OpenSSL 3's generic decoders, which cost about ten signature checks. The
 * fingerprint is SHA-256 of those 91 bytes: they are the DER encoding. Any
 * other layout returns 0 and takes the general path.
 */
static int b64_std(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
                   c == '/' || c == '='
               ? 1
               : -1;
}

/* A P-256 public key from its uncompressed point, without OpenSSL's decoders. */
static EVP_PKEY *p256_from_point(const uint8_t point[LK_P256_POINT_BYTES])
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM params[3];

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point,
                                                  LK_P256_POINT_BYTES);
    params[2] = OSSL_PARAM_construct_end();
    if (kctx == NULL || EVP_PKEY_fromdata_init(kctx) <= 0 ||
        EVP_PKEY_fromdata(kctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(kctx);
    return pkey;
}

static int p256_fast(const char *pem, size_t len, EVP_PKEY **pkey, uint8_t fp[32], uint8_t **spki)
{
    static const char begin[] = "-----BEGIN PUBLIC KEY-----", end[] = "-----END PUBLIC KEY-----";
    char b64[128];
    unsigned char der[96];
    uint8_t point[LK_P256_POINT_BYTES];
    const char *p = pem, *stop = pem + len, *e;
    size_t n = 0;
    int ok = 0;

    *pkey = NULL;
    while (p < stop && is_space(*p))
        p++;
    /* BEGIN must start a line, as OpenSSL's PEM reader requires. */
    if ((p != pem && p[-1] != '\n') || (size_t)(stop - p) < sizeof begin - 1 ||
        memcmp(p, begin, sizeof begin - 1) != 0)
        return 0;
    p += sizeof begin - 1;
    e = memmem(p, (size_t)(stop - p), end, sizeof end - 1);
    if (e == NULL)
        return 0;
    /* Exactly OpenSSL's own layout: a line break after BEGIN, then lines of
     * 64 characters and a last shorter one, each ending in \n or \r\n, then
     * END. Anything else goes to the general path. */
    while (p < e) {
        size_t line = 0;
        if (*p == '\r')
            p++;
        if (p >= e || *p != '\n')
            return 0;
        p++;
        while (p < e && *p != '\r' && *p != '\n') {
            /* '=' only as the final padding (an interior one ends OpenSSL's
             * decoding early). */
            if (n == sizeof b64 || b64_std(*p) < 0 || (*p == '=' && n < 122))
                return 0;
            b64[n++] = *p++;
            line++;
        }
        if (line > 64 || (line < 64 && p < e && n != 124))
            return 0;
        if (line == 0 && p < e)
            return 0;
    }
    /* END on a line of its own: OpenSSL refuses base64 run into it (found
     * by fuzz_cred: this path had accepted "...zg==-----END PUBLIC KEY-----"). */
    if (e[-1] != '\n')
        return 0;
    /* 91 bytes are 124 characters ending in "=="; EVP_DecodeBlock keeps the
     * padding bytes, so it reports 93. */
    if (n != 124 || b64[122] != '=' || b64[123] != '=' || EVP_DecodeBlock(der, (unsigned char *)b64, 124) != 93)
        return 0;
    if (lk_p256_point_from_spki(der, LK_P256_SPKI_BYTES, point) != LK_OK)
        return 0;
    *pkey = p256_from_point(point);
    *spki = OPENSSL_memdup(der, LK_P256_SPKI_BYTES);
    if (*pkey != NULL && *spki != NULL && EVP_Digest(der, LK_P256_SPKI_BYTES, fp, NULL, EVP_sha256(), NULL))
        ok = 1;
    if (!ok) {
        EVP_PKEY_free(*pkey);
        *pkey = NULL;
        OPENSSL_free(*spki);
        *spki = NULL;
    }
    return ok;
}

/* The verify context (made here unless the caller made it): verify_init
 * done once, and RSA's padding and digest. */
static int verify_ctx(lk_cred *c)
{
    if (c->vctx == NULL)
        c->vctx = EVP_PKEY_CTX_new_from_pkey(NULL, c->pkey, NULL);
    return c->vctx != NULL && EVP_PKEY_verify_init(c->vctx) > 0 &&
           (c->alg != LK_ALG_RS256 || (EVP_PKEY_CTX_set_rsa_padding(c->vctx, RSA_PKCS1_PADDING) > 0 &&
                                       EVP_PKEY_CTX_set_signature_md(c->vctx, EVP_sha256()) > 0));
}

lk_err lk_verify__cred_ready(lk_cred *c)
{
    uint8_t point[LK_P256_POINT_BYTES];
    const unsigned char *p;

    if (c->vctx != NULL)
        return LK_OK;
    if (c->spki == NULL)
        return LK_ERR_CRYPTO;
    if (c->alg == LK_ALG_ES256) {
        if (lk_p256_point_from_spki(c->spki, c->spki_len, point) != LK_OK)
            return LK_ERR_CRYPTO;
        c->pkey = p256_from_point(point);
    } else {
        p = c->spki;
        c->pkey = d2i_PUBKEY(NULL, &p, (long)c->spki_len);
    }
    if (c->pkey == NULL || !verify_ctx(c)) {
        int oom = lk_verify__openssl_oom();
        lk_cred_release_key(c);
        ERR_clear_error();
        return oom ? LK_ERR_NOMEM : LK_ERR_CRYPTO;
    }
    return LK_OK;
}

void lk_cred_release_key(lk_cred *c)
{
    if (c == NULL || c->spki == NULL)
        return;
    EVP_PKEY_CTX_free(c->vctx);
    EVP_PKEY_free(c->pkey);
    c->vctx = NULL;
    c->pkey = NULL;
}

int lk_verify__openssl_oom(void)
{
    unsigned long e;
    int oom = 0;

    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
            oom = 1;
    return oom;
}

lk_err lk_cred_parse(lk_cred_format fmt, const char *pem, size_t pem_len,
                     int64_t expires, lk_cred **out)
{
    lk_cred *c = NULL;
    BIO *bio = NULL;
    X509 *crt = NULL;
    unsigned char *spki = NULL;
    int kind, spki_len, ok = 0, fast = 0, attempt;
    lk_alg alg = LK_ALG_NONE;
    lk_err err = LK_ERR_CRED_INVALID;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || pem == NULL || pem_len == 0 || expires < 0)
        return LK_ERR_ARG;
    if (pem_len > LK_CRED_PEM_MAX)
        return LK_ERR_ARG;
    if (fmt != LK_CRED_UNSPECIFIED && fmt != LK_CRED_RSA_PEM && fmt != LK_CRED_RSA_X509_PEM &&
        fmt != LK_CRED_ES256_PEM && fmt != LK_CRED_ES256_X509_PEM)
        return LK_ERR_ARG;
    if (memchr(pem, '\0', pem_len) != NULL)
        return LK_ERR_CRED_INVALID;
    kind = lk_verify__pem_kind(pem, pem_len);
    if (kind == 0)
        return LK_ERR_CRED_INVALID;
    if ((kind == 1 && (fmt == LK_CRED_RSA_X509_PEM || fmt == LK_CRED_ES256_X509_PEM)) ||
        (kind == 2 && (fmt == LK_CRED_RSA_PEM || fmt == LK_CRED_ES256_PEM)))
        return LK_ERR_CRED_INVALID;

    c = OPENSSL_zalloc(sizeof *c);
    if (c == NULL)
        return LK_ERR_NOMEM;
    if (kind == 1 && (fmt == LK_CRED_UNSPECIFIED || fmt == LK_CRED_ES256_PEM) &&
        p256_fast(pem, pem_len, &c->pkey, c->fp, &c->spki)) {
        fast = 1;
    } else {
        /* Only the general path reads through a BIO. */
        bio = BIO_new_mem_buf(pem, (int)pem_len);
        if (bio == NULL) {
            err = LK_ERR_NOMEM;
            goto exit;
        }
        /* OpenSSL's decoders can run out of memory without saying so, and
         * then answer "no key" or a key they could not finish: the input is
         * the same, so a second read that gives a good key shows that the
         * first failed for memory. */
        for (attempt = 0; attempt < 2 && !ok; attempt++) {
            if (attempt > 0) {
                EVP_PKEY_free(c->pkey);
                c->pkey = NULL;
                X509_free(crt);
                crt = NULL;
                if (BIO_reset(bio) <= 0)
                    break;
            }
            if (kind == 1) {
                c->pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
            } else {
                crt = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                if (crt != NULL)
                    c->pkey = X509_get_pubkey(crt);
            }
            if (c->pkey != NULL)
                alg = key_alg(c->pkey, &ok);
        }
    }
    if (c->pkey == NULL)
        goto exit;
    if (fast)
        alg = key_alg(c->pkey, &ok);
    if (!ok)
        goto exit;
    if (fmt == LK_CRED_UNSPECIFIED)
        fmt = alg == LK_ALG_ES256 ? (kind == 1 ? LK_CRED_ES256_PEM : LK_CRED_ES256_X509_PEM)
                                  : (kind == 1 ? LK_CRED_RSA_PEM : LK_CRED_RSA_X509_PEM);
    if ((alg == LK_ALG_ES256) != (fmt == LK_CRED_ES256_PEM || fmt == LK_CRED_ES256_X509_PEM))
        goto exit; /* an RSA key given as ES256_PEM, or the reverse */
    c->fmt = fmt;
    c->alg = alg;
    c->expires = expires;
    c->sig_len = alg == LK_ALG_ES256 ? LK_ES256_SIG_BYTES : (size_t)EVP_PKEY_get_size(c->pkey);

    /* An EC point must be on the curve (OpenSSL checks on decoding; this
     * makes the promise explicit). */
    c->vctx = EVP_PKEY_CTX_new_from_pkey(NULL, c->pkey, NULL);
    if (c->vctx == NULL) {
        err = LK_ERR_CRYPTO;
        goto exit;
    }
    /* (P-256 has cofactor 1: a point on the curve, which every import
     * checks, is a valid public key; the full check adds a scalar
     * multiplication.) */
    if (alg == LK_ALG_ES256 && !fast && EVP_PKEY_public_check(c->vctx) != 1)
        goto exit;
    if (!verify_ctx(c)) {
        err = LK_ERR_CRYPTO;
        goto exit;
    }
    if (!fast) {
        spki_len = i2d_PUBKEY(c->pkey, &spki);
        if (spki_len <= 0 || !EVP_Digest(spki, (size_t)spki_len, c->fp, NULL, EVP_sha256(), NULL)) {
            err = LK_ERR_CRYPTO;
            goto exit;
        }
        c->spki = spki; /* kept: lk_cred_release_key */
        c->spki_len = (size_t)spki_len;
        spki = NULL;
    } else {
        c->spki_len = LK_P256_SPKI_BYTES;
    }
    *out = c;
    c = NULL;
    err = LK_OK;
exit:
    /* OpenSSL's decoders answer "no key" when they ran out of memory: a
     * caller must not take a good credential for a bad one (the broker
     * would refuse the device until it changes). */
    if (err == LK_ERR_CRED_INVALID && lk_verify__openssl_oom())
        err = LK_ERR_NOMEM;
    OPENSSL_free(spki);
    X509_free(crt);
    BIO_free(bio);
    lk_cred_free(c);
    ERR_clear_error();
    return err;
}

void lk_cred_free(lk_cred *c)
{
    if (c == NULL)
        return;
    EVP_PKEY_CTX_free(c->vctx);
    EVP_PKEY_free(c->pkey);
    OPENSSL_free(c->spki);
    OPENSSL_free(c);
}

lk_alg lk_cred_alg(const lk_cred *c)
{
    return c == NULL ? LK_ALG_NONE : c->alg;
}

lk_cred_format lk_cred_get_format(const lk_cred *c)
{
    return c == NULL ? LK_CRED_UNSPECIFIED : c->fmt;
}

int64_t lk_cred_expires(const lk_cred *c)
{
    return c == NULL ? 0 : c->expires;
}

void lk_cred_fingerprint(const lk_cred *c, uint8_t out[32])
{
    if (out == NULL)
        return;
    if (c == NULL)
        lk_wipe(out, 32);
    else
        memcpy(out, c->fp, 32);
}
