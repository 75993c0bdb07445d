/*
 * sa_token.c — a service account's self-signed JWT (lk_verify.h, "service
 * accounts"): the kid peek and the verification. Rules 1-3, 6 and 7 are
 * verify.c's own steps (verify_internal.h); only the claims differ.
 */
#include <string.h>

#include <jansson.h>

#include "latchkey/lk_b64url.h"
#include "verify_internal.h"

/* Google's libraries never pad: no LK_VERIFY_ALLOW_PADDING. */
#define SA_FLAGS 0u

lk_err lk_jwt_peek_kid(const char *token, size_t len, char *kid, size_t kid_size)
{
    uint8_t hdr[LK_B64URL_DECODED_MAX(LK_VERIFY_MAX_LEN)];
    const char *dot1, *dot2;
    size_t hlen = 0, klen;
    json_t *h, *x;
    lk_err err;

    if (kid != NULL && kid_size > 0)
        kid[0] = '\0';
    if (token == NULL || kid == NULL || kid_size < 2)
        return LK_ERR_ARG;
    if ((err = lk_verify__split(token, len, LK_VERIFY_MAX_LEN, &dot1, &dot2, NULL, 0)) != LK_OK)
        return err;
    if (!lk_verify__segment_decode(token, (size_t)(dot1 - token), SA_FLAGS, hdr, sizeof hdr,
                                   &hlen))
        return LK_ERR_TOKEN_MALFORMED;
    h = lk_verify__segment_json(hdr, hlen, "header", &err, NULL, 0);
    if (h == NULL)
        return err;
    x = json_object_get(h, "kid");
    klen = x != NULL && json_is_string(x) ? json_string_length(x) : 0;
    if (klen == 0 || klen >= kid_size || memchr(json_string_value(x), '\0', klen) != NULL) {
        err = LK_ERR_TOKEN_HEADER;
    } else {
        memcpy(kid, json_string_value(x), klen);
        kid[klen] = '\0';
    }
    json_decref(h);
    return err;
}

static int policy_ok(const lk_sa_policy *pol)
{
    size_t i;
    if (pol == NULL || pol->email == NULL || pol->email[0] == '\0' || pol->now < 0 ||
        pol->now > ((int64_t)1 << 62) || pol->skew < 0 || pol->skew > LK_VERIFY_MAX_SKEW ||
        pol->max_lifetime < 1 || pol->max_lifetime > LK_VERIFY_MAX_LIFETIME ||
        pol->max_len > LK_VERIFY_MAX_LEN_LIMIT || (pol->naudiences == 0 && pol->nscopes == 0) ||
        (pol->naudiences > 0 && pol->audiences == NULL) ||
        (pol->nscopes > 0 && pol->scopes == NULL))
        return 0;
    /* An empty audience would let a token whose aud is "" (bound to no
     * service) through: refused like an empty scope. */
    for (i = 0; i < pol->naudiences; i++)
        if (pol->audiences[i] == NULL || pol->audiences[i][0] == '\0')
            return 0;
    for (i = 0; i < pol->nscopes; i++)
        if (pol->scopes[i] == NULL || pol->scopes[i][0] == '\0' || strchr(pol->scopes[i], ' '))
            return 0;
    return 1;
}

/* x is a JSON string equal to s, byte for byte (an embedded NUL differs). */
static int str_is(const json_t *x, const char *s)
{
    size_t n = strlen(s);
    return json_is_string(x) && json_string_length(x) == n &&
           memcmp(json_string_value(x), s, n) == 0;
}

/* 1 when aud is one of the policy's audiences, 0 when not, -1 when aud is
 * neither a string nor an array of strings. */
static int aud_matches(const json_t *aud, const lk_sa_policy *pol)
{
    size_t i, j, n = json_is_array(aud) ? json_array_size(aud) : 1;
    int hit = 0;
    if (!json_is_string(aud) && !json_is_array(aud))
        return -1;
    for (j = 0; j < n; j++) {
        const json_t *a = json_is_array(aud) ? json_array_get(aud, j) : aud;
        if (!json_is_string(a))
            return -1;
        for (i = 0; i < pol->naudiences; i++)
            hit |= str_is(a, pol->audiences[i]);
    }
    return hit;
}

/* 1 when the space-separated scope string holds one of the policy's
 * scopes as a whole word. */
static int scope_matches(const json_t *scope, const lk_sa_policy *pol)
{
    const char *s = json_string_value(scope);
    size_t n = json_string_length(scope), i, at = 0;
    while (at < n) {
        size_t end = at;
        while (end < n && s[end] != ' ')
            end++;
        for (i = 0; i < pol->nscopes; i++)
            if (strlen(pol->scopes[i]) == end - at && memcmp(s + at, pol->scopes[i], end - at) == 0)
                return 1;
        at = end + 1;
    }
    return 0;
}

lk_err lk_verify_sa_token(lk_verifier *v, const char *token, size_t len, const lk_cred *cred,
                          const lk_sa_policy *pol, lk_token_info *info, char *why, size_t why_size)
{
    lk_verify_parts p;
    lk_cred *creds[1];
    json_t *x, *scope;
    int64_t iat = 0, exp = 0;
    unsigned idx = 0;
    int aud_ok = 0;
    lk_err err;

    memset(&p, 0, sizeof p);
    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (info != NULL)
        memset(info, 0, sizeof *info);
    if (v == NULL || token == NULL || cred == NULL || info == NULL || !policy_ok(pol))
        return lk_verify__why(why, why_size, LK_ERR_ARG, "invalid arguments or policy");

    /* 1-3. */
    err = lk_verify__parse(v, token, len, pol->max_len != 0 ? pol->max_len : LK_VERIFY_MAX_LEN,
                           SA_FLAGS, &p, why, why_size);
    if (err != LK_OK)
        return err;

    /* 4. RS256 only, and the key decides it. */
    if (cred->alg != LK_ALG_RS256 || (cred->expires != 0 && cred->expires <= pol->now)) {
        err = lk_verify__why(why, why_size, LK_ERR_NO_CREDENTIAL,
                             "the service account key is %s", cred->alg != LK_ALG_RS256
                                 ? "not an RSA key" : "expired");
        goto exit;
    }
    if (p.alg != LK_ALG_RS256) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_ALG,
                             "token is %s; service account tokens are RS256", lk_alg_name(p.alg));
        goto exit;
    }

    /* Claims: who, when, for what. */
    if (!str_is(json_object_get(p.claims, "iss"), pol->email)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM,
                             "iss is not the service account's email %.100s", pol->email);
        goto exit;
    }
    x = json_object_get(p.claims, "sub");
    if (x != NULL && !str_is(x, pol->email)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM,
                             "sub is present and not the service account's email %.100s",
                             pol->email);
        goto exit;
    }
    if (!lk_verify__claim_int(p.claims, "iat", &iat) ||
        !lk_verify__claim_int(p.claims, "exp", &exp)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM,
                             "iat and exp must be integers from 0 to 2^53 (seconds since 1970)");
        goto exit;
    }
    x = json_object_get(p.claims, "aud");
    if (pol->naudiences > 0 && x != NULL) {
        int m = aud_matches(x, pol);
        if (m < 0) {
            err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM,
                                 "aud must be a string or an array of strings");
            goto exit;
        }
        aud_ok = m;
    }
    scope = json_object_get(p.claims, "scope");
    if (scope != NULL && !json_is_string(scope)) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_CLAIM,
                             "scope must be a space-separated string");
        goto exit;
    }
    if (!aud_ok && !(pol->nscopes > 0 && scope != NULL && scope_matches(scope, pol))) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_AUDIENCE,
                             "neither %s nor %s names this service",
                             pol->naudiences > 0 ? (x != NULL ? "aud" : "aud (absent)")
                                                 : "aud (not accepted)",
                             pol->nscopes > 0 ? (scope != NULL ? "scope" : "scope (absent)")
                                              : "scope (not accepted)");
        goto exit;
    }

    /* 6, with the service account's lifetime. */
    if ((err = lk_verify__time(iat, exp, pol->now, pol->skew, pol->max_lifetime, why,
                               why_size)) != LK_OK)
        goto exit;

    /* 7. */
    creds[0] = (lk_cred *)cred;
    err = lk_verify__check_signature(v, token, &p, creds, 1, pol->now, &idx, why, why_size);
    if (err == LK_OK) {
        info->alg = LK_ALG_RS256;
        info->iat = iat;
        info->exp = exp;
        info->valid_until = exp + pol->skew;
        info->cred_index = 0;
    }
exit:
    lk_verify__parts_free(&p);
    if (err != LK_OK)
        memset(info, 0, sizeof *info);
    return err;
}
