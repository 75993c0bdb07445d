/*
 * fuzz_sa_token — libFuzzer target for a service account's self-signed JWT
 * as latchkeyd reads the Authorization header and the token endpoint's
 * assertion (service/verify/sa_token.c: lk_jwt_peek_kid, then
 * lk_verify_sa_token with the key the kid names).
 *
 * The key is an RSA-2048 public key made at start-up (its private half is
 * dropped, so no input can carry a good signature). The policy: email
 * sa@fuzz-project.iam.gserviceaccount.com, one audience, two scopes, now
 * 1700000000, skew 60, lifetime 3600.
 * The first input byte picks the mode:
 *   0x01 — HEADER 0x00 CLAIMS (without 0x00: the claims, under
 *          {"alg":"RS256","typ":"JWT","kid":"k1"}), encoded base64url with a
 *          256-byte signature nobody made: the claims rules are all reached
 *          (the signature is checked last);
 *   else — the whole input is the token.
 * Invariants (abort on violation):
 *  - no token verifies; info is zeroed after every failure;
 *  - a refusal at the signature (LK_ERR_TOKEN_SIGNATURE) means every claim
 *    rule held, as jansson reads the claims independently (escaped NULs allowed,
 *    as the verifier reads them): iss is the email,
 *    sub absent or the email, iat and exp integers in [0, 2^53] within the
 *    time rules, and aud (a string or array of strings) names the audience
 *    or the scope string holds one of the scopes as a word;
 *  - why is NUL-terminated, one line, and never holds 16 characters of the
 *    signature segment;
 *  - lk_jwt_peek_kid's kid, when it succeeds, is non-empty, without NUL, and
 *    "" after a failure;
 *  - lk_jwt_has_x5c (the daemon's and the plugin's cheap test before a
 *    just-in-time registration, same header reader) says yes only for a
 *    token of three segments within the cap.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_verify.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define EMAIL "sa@fuzz-project.iam.gserviceaccount.com"
#define NOW 1700000000
static const char *const auds[] = {"https://cloudiot.googleapis.com/"};
static const char *const scopes[] = {"https://www.googleapis.com/auth/cloudiot",
                                     "https://www.googleapis.com/auth/cloud-platform"};
static lk_verifier *verifier;
static lk_cred *cred;
static lk_sa_policy pol;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    EVP_PKEY *k = EVP_RSA_gen(2048);
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    CHECK(k != NULL && b != NULL && PEM_write_bio_PUBKEY(b, k) == 1);
    long n = BIO_get_mem_data(b, &pem);
    CHECK(lk_cred_parse(LK_CRED_RSA_PEM, pem, (size_t)n, 0, &cred) == LK_OK);
    BIO_free(b);
    EVP_PKEY_free(k);
    CHECK(lk_verifier_new(&verifier) == LK_OK);
    pol.email = EMAIL;
    pol.now = NOW;
    pol.skew = LK_SA_SKEW;
    pol.max_lifetime = LK_SA_MAX_LIFETIME;
    pol.audiences = auds;
    pol.naudiences = 1;
    pol.scopes = scopes;
    pol.nscopes = 2;
    return 0;
}

static void put_b64(char *out, size_t *len, const void *in, size_t n, size_t cap)
{
    size_t w = 0;
    CHECK(lk_b64url_encode(in, n, out + *len, cap - *len, &w) == LK_OK);
    *len += w;
}

static int is_email(json_t *x)
{
    return json_is_string(x) && json_string_length(x) == strlen(EMAIL) && strcmp(json_string_value(x), EMAIL) == 0;
}

static int int_claim(json_t *x, int64_t *out)
{
    if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > ((json_int_t)1 << 53))
        return 0;
    *out = json_integer_value(x);
    return 1;
}

static int word_in(const char *s, size_t n, const char *w)
{
    size_t wl = strlen(w);
    for (size_t at = 0; at + wl <= n; at++)
        if ((at == 0 || s[at - 1] == ' ') && memcmp(s + at, w, wl) == 0 && (at + wl == n || s[at + wl] == ' '))
            return 1;
    return 0;
}

/* Every claim rule holds, read from the token's payload segment. */
static int claims_hold(const char *tok, size_t len)
{
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    CHECK(d1 != NULL && d2 != NULL);
    size_t n = (size_t)(d2 - d1 - 1), got = 0;
    uint8_t *buf = malloc(n + 1);
    CHECK(buf != NULL);
    CHECK(lk_b64url_decode(d1 + 1, n, buf, n + 1, &got, 0) == LK_OK);
    json_t *c = json_loadb((const char *)buf, got, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    free(buf);
    int64_t iat = 0, exp = 0;
    int ok = json_is_object(c) && is_email(json_object_get(c, "iss")) &&
             (json_object_get(c, "sub") == NULL || is_email(json_object_get(c, "sub"))) &&
             int_claim(json_object_get(c, "iat"), &iat) && int_claim(json_object_get(c, "exp"), &exp) &&
             iat <= NOW + LK_SA_SKEW && exp > NOW - LK_SA_SKEW && exp > iat &&
             exp - iat <= LK_SA_MAX_LIFETIME + LK_SA_SKEW;
    if (ok) {
        json_t *aud = json_object_get(c, "aud"), *scope = json_object_get(c, "scope");
        int hit = 0;
        if (json_is_string(aud))
            hit = strcmp(json_string_value(aud), auds[0]) == 0 && json_string_length(aud) == strlen(auds[0]);
        for (size_t i = 0; json_is_array(aud) && i < json_array_size(aud); i++) {
            json_t *a = json_array_get(aud, i);
            ok &= json_is_string(a);
            hit |= json_is_string(a) && json_string_length(a) == strlen(auds[0]) &&
                   strcmp(json_string_value(a), auds[0]) == 0;
        }
        if (aud != NULL && !json_is_string(aud) && !json_is_array(aud))
            ok = 0;
        if (scope != NULL && !json_is_string(scope))
            ok = 0;
        else if (scope != NULL)
            for (size_t i = 0; i < 2; i++)
                hit |= word_in(json_string_value(scope), json_string_length(scope), scopes[i]);
        ok &= hit;
    }
    json_decref(c);
    return ok;
}

static void check(const char *tok, size_t len, size_t sig_off)
{
    lk_token_info info;
    char why[256], kid[64];
    lk_err err = lk_verify_sa_token(verifier, tok, len, cred, &pol, &info, why, sizeof why);
    CHECK(err != LK_OK);
    CHECK(info.iat == 0 && info.exp == 0 && info.valid_until == 0 && info.cred_index == 0);
    CHECK(memchr(why, '\0', sizeof why) != NULL && strchr(why, '\n') == NULL);
    if (sig_off < len && len - sig_off >= 16) {
        for (size_t i = sig_off; i + 16 <= len; i++)
            CHECK(memmem(why, strlen(why), tok + i, 16) == NULL);
    }
    if (err == LK_ERR_TOKEN_SIGNATURE)
        CHECK(claims_hold(tok, len));
    for (unsigned pad = 0; pad <= LK_VERIFY_ALLOW_PADDING; pad += LK_VERIFY_ALLOW_PADDING) {
        if (lk_jwt_has_x5c(tok, len, 0, pad)) {
            const char *d1 = memchr(tok, '.', len), *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
            CHECK(len <= LK_VERIFY_MAX_LEN && d2 != NULL && memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) == NULL);
        }
    }
    lk_err kerr = lk_jwt_peek_kid(tok, len, kid, sizeof kid);
    if (kerr == LK_OK)
        CHECK(kid[0] != '\0' && strlen(kid) < sizeof kid);
    else
        CHECK(kid[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] == 0x01) {
        static const char def[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}";
        const uint8_t *rest = data + 1;
        size_t n = size - 1;
        const uint8_t *nul = memchr(rest, 0, n);
        size_t cap = LK_B64URL_ENCODED_LEN(n) + LK_B64URL_ENCODED_LEN(sizeof def) + LK_B64URL_ENCODED_LEN(256) + 8;
        char *tok = malloc(cap);
        size_t len = 0;
        CHECK(tok != NULL);
        if (nul != NULL) {
            put_b64(tok, &len, rest, (size_t)(nul - rest), cap);
            tok[len++] = '.';
            put_b64(tok, &len, nul + 1, n - (size_t)(nul + 1 - rest), cap);
        } else {
            put_b64(tok, &len, def, sizeof def - 1, cap);
            tok[len++] = '.';
            put_b64(tok, &len, rest, n, cap);
        }
        tok[len++] = '.';
        size_t sig_off = len;
        uint8_t sig[256];
        for (size_t i = 0; i < sizeof sig; i++)
            sig[i] = (uint8_t)(i * 131u + size);
        put_b64(tok, &len, sig, sizeof sig, cap);
        tok = realloc(tok, len); /* exact size, no NUL */
        CHECK(tok != NULL);
        check(tok, len, sig_off);
        free(tok);
    } else {
        char *tok = malloc(size ? size : 1);
        CHECK(tok != NULL);
        memcpy(tok, data, size);
        const char *last = size ? memrchr(tok, '.', size) : NULL;
        check(tok, size, last ? (size_t)(last - tok) + 1 : size);
        free(tok);
    }
    return 0;
}
