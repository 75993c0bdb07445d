/*
 * oidc.c — the OIDC tokens latchkeyd signs for push endpoints
 * (docs/daemon.md, "Push subscriptions"): the key (push_oidc_key, a PEM RSA
 * private key), its public half as a JWKS (GET /oauth2/v3/certs) and the
 * discovery document (GET /.well-known/openid-configuration), both
 * unauthenticated, as Google publishes its own. RS256 through OpenSSL's EVP;
 * the key id is the key's RFC 7638 thumbprint, so it changes with the key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "latchkey/lk_b64url.h"
#include "daemon.h"

struct lkd_oidc {
    EVP_PKEY *key;
    char kid[64];
    char *issuer;
    char *jwks;          /* the JWKS document */
    char *discovery;     /* the discovery document */
};

/* base64url (no padding) of n bytes: malloc'd, or NULL. */
static char *b64url(const uint8_t *p, size_t n)
{
    size_t cap = LK_B64URL_ENCODED_LEN(n) + 1, got = 0;
    char *s = malloc(cap);
    if (s != NULL && lk_b64url_encode(p, n, s, cap, &got) != LK_OK) {
        free(s);
        return NULL;
    }
    return s;
}

static char *bn_b64url(const BIGNUM *bn)
{
    int n = BN_num_bytes(bn);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf == NULL)
        return NULL;
    BN_bn2bin(bn, buf);
    char *s = b64url(buf, (size_t)n);
    free(buf);
    return s;
}

void lkd_oidc_free(struct lkd_oidc *o)
{
    if (o == NULL)
        return;
    EVP_PKEY_free(o->key);
    free(o->issuer);
    free(o->jwks);
    free(o->discovery);
    free(o);
}

int lkd_oidc_load(const char *key_path, const char *issuer, struct lkd_oidc **out, char *why, size_t why_size)
{
    *out = NULL;
    FILE *f = fopen(key_path, "r");
    if (f == NULL) {
        snprintf(why, why_size, "push_oidc_key %s cannot be read", key_path);
        return -1;
    }
    /* Unbuffered, so that no stdio buffer keeps the PEM after fclose: stdio
     * frees its buffer without wiping it. OpenSSL wipes its own copies. */
    EVP_PKEY *key = setvbuf(f, NULL, _IONBF, 0) == 0 ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    fclose(f);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key) < 2048) {
        EVP_PKEY_free(key);
        snprintf(why, why_size, "push_oidc_key %s is not a PEM RSA private key of at least 2048 bits", key_path);
        return -1;
    }
    BIGNUM *n = NULL, *e = NULL;
    char *ns = NULL, *es = NULL;
    struct lkd_oidc *o = calloc(1, sizeof *o);
    int ok = o != NULL && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
             EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && (ns = bn_b64url(n)) != NULL &&
             (es = bn_b64url(e)) != NULL;
    if (ok) {
        o->key = key;
        key = NULL;
        /* RFC 7638: SHA-256 of the required members in lexical order, no spaces. */
        char *canon = NULL;
        uint8_t h[32];
        unsigned hl = 0;
        ok = asprintf(&canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", es, ns) > 0 &&
             EVP_Digest(canon, strlen(canon), h, &hl, EVP_sha256(), NULL) == 1;
        free(canon);
        char *kid = ok ? b64url(h, sizeof h) : NULL;
        ok = kid != NULL && strlen(kid) < sizeof o->kid;
        if (ok)
            strcpy(o->kid, kid);
        free(kid);
    }
    if (ok) {
        json_t *k = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "alg", "RS256", "use", "sig", "kid",
                              o->kid, "n", ns, "e", es);
        json_t *jw = json_pack("{s:[o]}", "keys", k);
        o->jwks = jw ? json_dumps(jw, JSON_COMPACT) : NULL;
        json_decref(jw);
        o->issuer = strdup(issuer);
        char *uri = NULL;
        if (asprintf(&uri, "%s/oauth2/v3/certs", issuer) > 0) {
            json_t *dj = json_pack("{s:s, s:s, s:[s], s:[s], s:[s]}", "issuer", issuer, "jwks_uri", uri,
                                   "id_token_signing_alg_values_supported", "RS256", "subject_types_supported",
                                   "public", "response_types_supported", "id_token");
            o->discovery = dj ? json_dumps(dj, JSON_COMPACT) : NULL;
            json_decref(dj);
            free(uri);
        }
        ok = o->jwks != NULL && o->issuer != NULL && o->discovery != NULL;
    }
    BN_free(n);
    BN_free(e);
    free(ns);
    free(es);
    EVP_PKEY_free(key);
    if (!ok) {
        lkd_oidc_free(o);
        snprintf(why, why_size, "push_oidc_key: out of memory or OpenSSL failed");
        return -1;
    }
    *out = o;
    return 0;
}

const char *lkd_oidc_kid(const struct lkd_oidc *o)
{
    return o->kid;
}

char *lkd_oidc_sign(const struct lkd_oidc *o, const char *aud, const char *email, int64_t iat, int64_t *exp)
{
    *exp = iat + 3600;
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "kid", o->kid, "typ", "JWT");
    json_t *cl = json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:s, s:s}", "aud", aud, "azp", email, "email", email,
                           "email_verified", 1, "exp", (json_int_t)*exp, "iat", (json_int_t)iat, "iss", o->issuer,
                           "sub", email);
    char *hs = hdr ? json_dumps(hdr, JSON_COMPACT) : NULL;
    char *cs = cl ? json_dumps(cl, JSON_COMPACT) : NULL;
    json_decref(hdr);
    json_decref(cl);
    char *h64 = hs ? b64url((const uint8_t *)hs, strlen(hs)) : NULL;
    char *c64 = cs ? b64url((const uint8_t *)cs, strlen(cs)) : NULL;
    free(hs);
    free(cs);
    char *input = NULL, *jwt = NULL;
    if (h64 != NULL && c64 != NULL && asprintf(&input, "%s.%s", h64, c64) > 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        size_t sl = 0;
        uint8_t *sig = NULL;
        if (md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, o->key) == 1 &&
            EVP_DigestSign(md, NULL, &sl, (const uint8_t *)input, strlen(input)) == 1 &&
            (sig = malloc(sl)) != NULL && EVP_DigestSign(md, sig, &sl, (const uint8_t *)input, strlen(input)) == 1) {
            char *s64 = b64url(sig, sl);
            if (s64 == NULL || asprintf(&jwt, "%s.%s", input, s64) < 0)
                jwt = NULL;
            /* The signature is what makes the token a bearer credential. */
            if (s64 != NULL)
                OPENSSL_cleanse(s64, strlen(s64));
            free(s64);
        }
        if (sig != NULL)
            OPENSSL_cleanse(sig, sl);
        free(sig);
        EVP_MD_CTX_free(md);
    }
    free(input);
    free(h64);
    free(c64);
    return jwt;
}

int lkd_oidc_serve(const struct lkd_oidc *o, struct evhttp_request *req, const char *path)
{
    int jwks = strcmp(path, "/oauth2/v3/certs") == 0;
    if (!jwks && strcmp(path, "/.well-known/openid-configuration") != 0)
        return 0;
    if (o == NULL) {
        lkd_send_error(req, LKD_NOT_FOUND, "no push_oidc_key is configured: latchkeyd signs no tokens");
        return 1;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        lkd_send_error(req, LKD_NOT_FOUND, "this document takes GET");
        return 1;
    }
    const char *doc = jwks ? o->jwks : o->discovery;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return 1;
    }
    evbuffer_add(b, doc, strlen(doc));
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json; charset=UTF-8");
    /* Verifiers cache it; a new key shows up within the hour (docs). */
    evhttp_add_header(h, "Cache-Control", "public, max-age=3600");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
    return 1;
}
