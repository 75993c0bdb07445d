/*
 * Token verification: see lk_verify.h for the rules and their order. Each
 * rule is one block below, in that order, so that the code reads as the
 * specification does.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_util.h"
#include "verify_internal.h"

#define MAX_CREDS 16
#define MAX_CLAIM_INT 9007199254740992LL /* 2^53: exact in every JSON parser */
#define SIG_MAX 1024u                     /* RSA-8192 */
#define SCRATCH (LK_B64URL_DECODED_MAX(LK_VERIFY_MAX_LEN_LIMIT))

struct lk_verifier {
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    uint8_t sig[SIG_MAX + 2];
    uint8_t hdr[SCRATCH];     /* the decoded header */
    uint8_t pay[SCRATCH];     /* the decoded claims */
};

lk_err lk_verifier_new(lk_verifier **out)
{
    lk_verifier *v;
    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    v = OPENSSL_zalloc(sizeof *v);
    if (v == NULL)
        return LK_ERR_NOMEM;
    v->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    v->md = EVP_MD_CTX_new();
    if (v->sha256 == NULL || v->md == NULL) {
        lk_verifier_free(v);
        return LK_ERR_CRYPTO;
    }
    *out = v;
    return LK_OK;
}

void lk_verifier_free(lk_verifier *v)
{
    if (v == NULL)
        return;
    EVP_MD_CTX_free(v->md);
    EVP_MD_free(v->sha256);
    /* sig, hdr and pay hold the last token's decoded segments. */
    OPENSSL_clear_free(v, sizeof *v);
}

void lk_verify_policy_init(lk_verify_policy *pol, const char *aud, size_t aud_len, int64_t now)
{
    if (pol == NULL)
        return;
    pol->aud = aud;
    pol->aud_len = aud_len;
    pol->now = now;
    pol->skew = LK_VERIFY_SKEW;
    pol->max_lifetime = LK_VERIFY_MAX_LIFETIME;
    pol->max_len = LK_VERIFY_MAX_LEN;
    pol->flags = LK_VERIFY_ALLOW_PADDING;
    pol->subject = 0;
}

static int sha256(lk_verifier *v, const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    return EVP_DigestInit_ex2(v->md, v->sha256, NULL) && EVP_DigestUpdate(v->md, data, len) &&
           EVP_DigestFinal_ex(v->md, out, &n) && n == 32;
}

/* DER ECDSA-Sig-Value from a range-checked r||s: each half is a positive
 * INTEGER, minimal, with a 0x00 when its top bit is set. At most 72 bytes. */
static size_t es256_der(const uint8_t rs[64], uint8_t der[72])
{
    size_t o = 2, h;
    for (h = 0; h < 2; h++) {
        const uint8_t *x = rs + 32 * h;
        size_t skip = 0, n;
        while (skip < 31 && x[skip] == 0)
            skip++;
        n = 32 - skip;
        der[o++] = 0x02;
        if (x[skip] & 0x80) {
            der[o++] = (uint8_t)(n + 1);
            der[o++] = 0x00;
        } else {
            der[o++] = (uint8_t)n;
        }
        memcpy(der + o, x + skip, n);
        o += n;
    }
    der[0] = 0x30;
    der[1] = (uint8_t)(o - 2);
    return o;
}

lk_err lk_verify__digest(const lk_cred *cred, const uint8_t digest[32],
                         const uint8_t *sig, size_t sig_len)
{
    int ok;
    if (cred == NULL || digest == NULL || (sig == NULL && sig_len != 0))
        return LK_ERR_ARG;
    if (sig_len != cred->sig_len)
        return LK_ERR_TOKEN_SIGNATURE;
    /* A released key is decoded again (lk_cred_release_key: not shared
     * between threads, so this write is the caller's only). */
    {
        lk_err e = lk_verify__cred_ready((lk_cred *)cred);
        if (e != LK_OK)
            return e;
    }
    if (cred->alg == LK_ALG_ES256) {
        uint8_t der[72];
        size_t der_len;
        /* The range check comes first, whatever the library would do: the
         * "psychic signature" (r = s = 0) never reaches curve arithmetic. */
        if (!lk_p256_sig_in_range(sig))
            return LK_ERR_TOKEN_SIGNATURE;
        der_len = es256_der(sig, der);
        ok = EVP_PKEY_verify(cred->vctx, der, der_len, digest, 32);
    } else {
        ok = EVP_PKEY_verify(cred->vctx, sig, sig_len, digest, 32);
    }
    if (ok != 1)
        return lk_verify__openssl_oom() ? LK_ERR_NOMEM : LK_ERR_TOKEN_SIGNATURE;
    return LK_OK;
}

lk_err lk_cred_verify_signature(lk_cred *cred, const uint8_t *msg, size_t msg_len,
                                const uint8_t *sig, size_t sig_len)
{
    lk_err err;
    if (cred == NULL || (sig == NULL && sig_len != 0))
        return LK_ERR_ARG;
    if ((err = lk_verify__cred_ready(cred)) != LK_OK)
        return err;
    return lk_verify__signature(cred, msg, msg_len, sig, sig_len);
}

lk_err lk_verify__signature(const lk_cred *cred, const uint8_t *msg, size_t msg_len,
                            const uint8_t *sig, size_t sig_len)
{
    uint8_t digest[32];
    if (cred == NULL || (msg == NULL && msg_len != 0))
        return LK_ERR_ARG;
    if (!EVP_Digest(msg, msg_len, digest, NULL, EVP_sha256(), NULL))
        return LK_ERR_CRYPTO;
    return lk_verify__digest(cred, digest, sig, sig_len);
}

/* base64url values; -1 outside the alphabet. Token segments are public, so
 * a table (not the core's constant-time decoder) is fine here: decoding is
 * a large part of what a verification costs besides the signature. */
static const int8_t b64_val[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

/* Rule 2 for one segment: strict base64url, exactly as lk_b64url_decode
 * (alphabet, length != 1 mod 4, zero unused bits) with '=' padding that
 * completes the last quantum only when the policy allows it. */
int lk_verify__segment_decode(const char *seg, size_t len, unsigned flags, uint8_t *out,
                              size_t out_size, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)seg;
    size_t n = len, i, o = 0, rem, need;
    int a, b, c, d;

    *out_len = 0;
    if (n > 0 && p[n - 1] == '=') {
        size_t pad = (n > 1 && p[n - 2] == '=') ? 2u : 1u;
        if (!(flags & LK_VERIFY_ALLOW_PADDING) || n % 4u != 0u)
            return 0;
        n -= pad;
        if (n % 4u != 4u - pad)
            return 0;
    }
    rem = n % 4u;
    if (rem == 1u)
        return 0;
    need = (n / 4u) * 3u + (rem == 0u ? 0u : rem - 1u);
    if (need > out_size)
        return 0;
    for (i = 0; i + 4u <= n; i += 4u) {
        a = b64_val[p[i]];
        b = b64_val[p[i + 1]];
        c = b64_val[p[i + 2]];
        d = b64_val[p[i + 3]];
        if ((a | b | c | d) < 0)
            return 0;
        out[o++] = (uint8_t)((a << 2) | (b >> 4));
        out[o++] = (uint8_t)(((b & 15) << 4) | (c >> 2));
        out[o++] = (uint8_t)(((c & 3) << 6) | d);
    }
    if (rem == 2u) {
        a = b64_val[p[i]];
        b = b64_val[p[i + 1]];
        if ((a | b) < 0 || (b & 15) != 0)
            return 0;
        out[o++] = (uint8_t)((a << 2) | (b >> 4));
    } else if (rem == 3u) {
        a = b64_val[p[i]];
        b = b64_val[p[i + 1]];
        c = b64_val[p[i + 2]];
        if ((a | b | c) < 0 || (c & 3) != 0)
            return 0;
        out[o++] = (uint8_t)((a << 2) | (b >> 4));
        out[o++] = (uint8_t)(((b & 15) << 4) | (c >> 2));
    }
    *out_len = o;
    return 1;
}

/* The headers every IoT Core device sends, {"alg":"ES256","typ":"JWT"} and
 * the RS256 one, encoded. A header segment equal to one of these passes
 * rules 2 and 3 with that alg, so it need not be decoded and parsed. */
static const char hdr_es256[] = LK_JWT_HEADER_ES256;
static const char hdr_rs256[] = LK_JWT_HEADER_RS256;

/* Rule 3 for one segment: a JSON object, duplicate names refused, nothing
 * after it (jansson's default). NULL (and *err set) on any failure. */
json_t *lk_verify__segment_json(const uint8_t *text, size_t n, const char *what, lk_err *err,
                                char *why, size_t why_size)
{
    json_error_t je;
    json_t *j;

    /* JSON_ALLOW_NUL: a "\u0000" inside a string is data (it makes an aud
     * differ from the project id), not a reason to call the JSON broken. */
    j = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    /* jansson's lexer reports running out of memory as a syntax error.
     * Parsing is deterministic: a second parse that succeeds shows that the
     * first failed for memory, not for the token. */
    if (j == NULL && json_error_code(&je) != json_error_out_of_memory)
        j = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (j == NULL && json_error_code(&je) == json_error_out_of_memory) {
        /* not a judgement of the token */
        *err = lk_verify__why(why, why_size, LK_ERR_NOMEM, "out of memory reading the %s", what);
        return NULL;
    }
    if (j == NULL) {
        /* jansson appends "near '<input>'": keep only the fault and where it
         * is, so no token content reaches a log. */
        char *near = strstr(je.text, " near ");
        if (near != NULL)
            *near = '\0';
        *err = lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED, "%s is not valid JSON: %s (at byte %d)", what,
                       je.text, je.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *err = lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED, "%s is not a JSON object", what);
        return NULL;
    }
    return j;
}

int lk_verify__args_ok(lk_cred *const *creds, size_t ncreds, const lk_verify_policy *pol)
{
    size_t i;
    if (pol == NULL || (creds == NULL && ncreds != 0) || ncreds > MAX_CREDS || pol->aud == NULL ||
        pol->aud_len == 0 || pol->max_len == 0 || pol->max_len > LK_VERIFY_MAX_LEN_LIMIT ||
        pol->skew < 0 || pol->skew > LK_VERIFY_MAX_SKEW || pol->max_lifetime < 1 ||
        pol->max_lifetime > 7 * LK_VERIFY_MAX_LIFETIME || pol->now < 0 ||
        pol->now > ((int64_t)1 << 62) ||
        (pol->flags & ~(LK_VERIFY_ALLOW_PADDING | LK_VERIFY_ALLOW_X5C)) != 0)
        return 0;
    for (i = 0; i < ncreds; i++)
        if (creds[i] == NULL)
            return 0;
    return 1;
}

lk_err lk_verify__split(const char *token, size_t len, size_t max_len, const char **dot1,
                        const char **dot2, char *why, size_t why_size)
{
    const char *d1, *d2;
    size_t sig_len;

    /* 1. Length, before anything is looked at. */
    if (len > max_len)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_TOO_LARGE,
                              "token is %zu bytes, the limit is %zu", len, max_len);

    /* 2. Three non-empty segments. */
    if (len == 0)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED, "empty token");
    if (memchr(token, '\0', len) != NULL)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED, "token contains a NUL byte");
    d1 = memchr(token, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED,
                              "a token has exactly three '.'-separated segments");
    sig_len = len - (size_t)(d2 + 1 - token);
    if (d1 == token || d2 == d1 + 1 || sig_len == 0)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED, "empty %s segment",
                              d1 == token ? "header" : d2 == d1 + 1 ? "payload" : "signature");
    *dot1 = d1;
    *dot2 = d2;
    return LK_OK;
}

void lk_verify__parts_free(lk_verify_parts *p)
{
    json_decref(p->hdr);
    json_decref(p->claims);
    p->hdr = p->claims = NULL;
}

lk_err lk_verify__parse(lk_verifier *v, const char *token, size_t len, size_t max_len,
                        unsigned flags, lk_verify_parts *p, char *why, size_t why_size)
{
    static const char *const refused_headers[] = {"crit", "jwk", "jku", "x5u", "x5c"};
    const char *dot1, *dot2, *sig_seg;
    size_t i, sig_len, hdr_len = 0, pay_len = 0;
    lk_alg known_alg = LK_ALG_NONE;
    json_t *x;
    lk_err err;

    memset(p, 0, sizeof *p);
    /* 1 and the shape of 2. */
    if ((err = lk_verify__split(token, len, max_len, &dot1, &dot2, why, why_size)) != LK_OK)
        return err;
    sig_seg = dot2 + 1;
    sig_len = len - (size_t)(sig_seg - token);

    /* Still rule 2: every segment is canonical base64url before anything
     * is parsed. */
    if ((size_t)(dot1 - token) == sizeof hdr_es256 - 1 && memcmp(token, hdr_es256, sizeof hdr_es256 - 1) == 0)
        known_alg = LK_ALG_ES256;
    else if ((size_t)(dot1 - token) == sizeof hdr_rs256 - 1 &&
             memcmp(token, hdr_rs256, sizeof hdr_rs256 - 1) == 0)
        known_alg = LK_ALG_RS256;
    if ((known_alg == LK_ALG_NONE &&
         !lk_verify__segment_decode(token, (size_t)(dot1 - token), flags, v->hdr, sizeof v->hdr,
                                    &hdr_len)) ||
        !lk_verify__segment_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), flags, v->pay,
                                   sizeof v->pay, &pay_len))
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED, "%s is not canonical base64url",
                              known_alg == LK_ALG_NONE && hdr_len == 0 ? "header" : "payload");
    if (sig_len > LK_B64URL_ENCODED_LEN(SIG_MAX) + 2)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED,
                              "signature segment is %zu characters, too long", sig_len);
    if (!lk_verify__segment_decode(sig_seg, sig_len, flags, v->sig, sizeof v->sig, &sig_len))
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_MALFORMED,
                              "signature is not canonical base64url");

    /* 3. Header and claims are JSON objects; then the header's rules. */
    if (known_alg == LK_ALG_NONE) {
        p->hdr = lk_verify__segment_json(v->hdr, hdr_len, "header", &err, why, why_size);
        if (p->hdr == NULL)
            goto fail;
    }
    p->claims = lk_verify__segment_json(v->pay, pay_len, "payload", &err, why, why_size);
    if (p->claims == NULL)
        goto fail;
    p->signed_len = (size_t)(dot2 - token);
    p->sig_len = sig_len;
    if (known_alg != LK_ALG_NONE) {
        p->alg = known_alg;
        return LK_OK;
    }
    for (i = 0; i < sizeof refused_headers / sizeof refused_headers[0]; i++) {
        /* x5c only where the caller allows JIT; it is read by
         * lk_verify_jit_token alone. */
        if ((flags & LK_VERIFY_ALLOW_X5C) && !strcmp(refused_headers[i], "x5c"))
            continue;
        if (json_object_get(p->hdr, refused_headers[i]) != NULL) {
            err = lk_verify__why(why, why_size, LK_ERR_TOKEN_HEADER,
                          "header parameter \"%s\" is refused (keys come only from the registry)",
                          refused_headers[i]);
            goto fail;
        }
    }
    x = json_object_get(p->hdr, "alg");
    if (x == NULL || !json_is_string(x)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_ALG, "header has no \"alg\" string");
        goto fail;
    }
    p->alg = lk_alg_from_name(json_string_value(x), json_string_length(x));
    if (p->alg == LK_ALG_NONE) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_ALG, "alg is not ES256 or RS256");
        goto fail;
    }
    return LK_OK;
fail:
    lk_verify__parts_free(p);
    memset(p, 0, sizeof *p);
    return err;
}

int lk_verify__claim_int(const json_t *claims, const char *name, int64_t *out)
{
    json_t *x = json_object_get(claims, name);
    json_int_t n;
    if (x == NULL || !json_is_integer(x))
        return 0;
    n = json_integer_value(x);
    if (n < 0 || n > MAX_CLAIM_INT)
        return 0;
    *out = (int64_t)n;
    return 1;
}

lk_err lk_verify__time(int64_t iat, int64_t exp, int64_t now, int64_t skew,
                       int64_t max_lifetime, char *why, size_t why_size)
{
    /* 6. All values are in [0, 2^53] or bounded by the policy, so nothing
     * below can overflow. */
    if (iat > now + skew)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_FUTURE,
                              "iat %lld is %lld s after now (skew %lld)", (long long)iat,
                              (long long)(iat - now), (long long)skew);
    if (exp <= now - skew)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_EXPIRED,
                              "exp %lld is %lld s before now (skew %lld)", (long long)exp,
                              (long long)(now - exp), (long long)skew);
    if (exp <= iat)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_LIFETIME,
                              "exp %lld is not after iat %lld", (long long)exp, (long long)iat);
    if (exp - iat > max_lifetime + skew)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_LIFETIME,
                              "lifetime exp - iat = %lld s, the maximum is %lld (+%lld skew)",
                              (long long)(exp - iat), (long long)max_lifetime, (long long)skew);
    return LK_OK;
}

lk_err lk_verify__check_signature(lk_verifier *v, const char *token, const lk_verify_parts *p,
                                  lk_cred *const *creds, size_t ncreds, int64_t now,
                                  unsigned *cred_index, char *why, size_t why_size)
{
    uint8_t digest[32];
    size_t i, tried = 0;

    /* 7. The signature (decoded at rule 2), over the exact received bytes. */
    if (p->alg == LK_ALG_ES256 && p->sig_len != LK_ES256_SIG_BYTES)
        return lk_verify__why(why, why_size, LK_ERR_TOKEN_SIGNATURE,
                              "ES256 signature is %zu bytes, must be 64 (r||s)", p->sig_len);
    if (!sha256(v, token, p->signed_len, digest))
        return lk_verify__why(why, why_size, LK_ERR_CRYPTO, "SHA-256 failed");
    for (i = 0; i < ncreds; i++) {
        const lk_cred *c = creds[i];
        lk_err e;
        if (c->alg != p->alg || (c->expires != 0 && c->expires <= now))
            continue;
        tried++;
        e = lk_verify__digest(c, digest, v->sig, p->sig_len);
        if (e == LK_ERR_NOMEM) /* the signature was not judged: not "no credential verifies it" */
            return lk_verify__why(why, why_size, e, "out of memory checking the signature");
        if (e == LK_OK) {
            *cred_index = (unsigned)i;
            return LK_OK;
        }
    }
    return lk_verify__why(why, why_size, LK_ERR_TOKEN_SIGNATURE,
                          "no %s credential verifies the signature (%zu tried)",
                          lk_alg_name(p->alg), tried);
}

lk_err lk_verify_token(lk_verifier *v, const char *token, size_t len,
                       lk_cred *const *creds, size_t ncreds,
                       const lk_verify_policy *pol, lk_token_info *info,
                       char *why, size_t why_size)
{
    lk_verify_parts p;
    size_t i, usable = 0, of_alg = 0;
    int64_t iat = 0, exp = 0, now;
    unsigned idx = 0;
    json_t *x;
    lk_err err;

    memset(&p, 0, sizeof p);
    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (info != NULL)
        memset(info, 0, sizeof *info);
    if (v == NULL || token == NULL || info == NULL || !lk_verify__args_ok(creds, ncreds, pol))
        return lk_verify__why(why, why_size, LK_ERR_ARG, "invalid arguments or policy");
    now = pol->now;

    /* 1-3. Length, segments, base64url, JSON, the header's rules. */
    if ((err = lk_verify__parse(v, token, len, pol->max_len, pol->flags, &p, why, why_size)) !=
        LK_OK)
        return err;

    /* 4. The credential decides the algorithm: only unexpired credentials of
     * the header's algorithm are candidates. */
    for (i = 0; i < ncreds; i++) {
        if (creds[i]->expires != 0 && creds[i]->expires <= now)
            continue;
        usable++;
        if (creds[i]->alg == p.alg)
            of_alg++;
    }
    if (usable == 0) {
        err = lk_verify__why(why, why_size, LK_ERR_NO_CREDENTIAL, "the device has %s",
                      ncreds == 0 ? "no credentials" : "only expired credentials");
        goto exit;
    }
    if (of_alg == 0) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_ALG, "token is %s but the device has no unexpired %s key",
                      lk_alg_name(p.alg), p.alg == LK_ALG_ES256 ? "ES256 (P-256)" : "RSA");
        goto exit;
    }

    /* 5. Claims. */
    if (!lk_verify__claim_int(p.claims, "iat", &iat) || !lk_verify__claim_int(p.claims, "exp", &exp)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM,
                      "iat and exp must be integers from 0 to 2^53 (seconds since 1970)");
        goto exit;
    }
    x = json_object_get(p.claims, "aud");
    if (x == NULL || !json_is_string(x)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM, "aud must be a single string (the project id)");
        goto exit;
    }
    if (json_string_length(x) != pol->aud_len ||
        memcmp(json_string_value(x), pol->aud, pol->aud_len) != 0) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_AUDIENCE, "aud is not the project id \"%.*s\"",
                      (int)(pol->aud_len > 200 ? 200 : pol->aud_len), pol->aud);
        goto exit;
    }

    /* 6. Time. */
    if ((err = lk_verify__time(iat, exp, now, pol->skew, pol->max_lifetime, why, why_size)) != LK_OK)
        goto exit;

    /* 7. The signature. */
    err = lk_verify__check_signature(v, token, &p, creds, ncreds, now, &idx, why, why_size);
    if (err == LK_OK) {
        info->alg = p.alg;
        info->iat = iat;
        info->exp = exp;
        info->valid_until = exp + pol->skew;
        info->cred_index = idx;
    }
exit:
    lk_verify__parts_free(&p);
    if (err != LK_OK)
        memset(info, 0, sizeof *info);
    return err;
}
