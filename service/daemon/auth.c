/*
 * auth.c — who may call the admin API: service accounts (docs/daemon.md,
 * "Service accounts"). Two ways in, as Google's auth libraries use a key
 * file:
 *   - a self-signed JWT as "Authorization: Bearer" (Node, gapic): RS256,
 *     kid = the key's private_key_id, iss = sub = client_email, at most an
 *     hour long, with the cloudiot or cloud-platform scope or an aud naming
 *     the API;
 *   - the RFC 7523 JWT-bearer grant at POST /token (Python, gcloud, Go,
 *     Java): the same JWT with aud = token_uri buys an access token, kept
 *     here (SHA-256 of it, in memory: a restart forgets them and clients
 *     fetch a new one on 401) and accepted until it expires.
 * Both verified by the verifier (lk_verify_sa_token) against the key in
 * the registry; the key is read again on every call, so a key disabled or
 * deleted stops working at once, access tokens included. A device token
 * never passes: its kid (if any) names no service-account key, and its
 * alg/claims do not fit. Reasons go to the log, never the token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/rand.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_util.h"
#include "daemon.h"

#define TOKENS_CAP 65536u              /* live access tokens at most (power of two) */
#define ACCESS_PREFIX "lkat_"



static const char *const api_scopes[] = {
    "https://www.googleapis.com/auth/cloudiot",
    "https://www.googleapis.com/auth/cloud-platform",
};

struct token_slot {
    uint8_t hash[32];
    int64_t expires;                   /* 0 = empty */
    char key_id[48];
};

struct lkd_tokens {
    struct token_slot *slot;
    size_t used;
};

lk_err lkd_tokens_new(struct lkd_tokens **out)
{
    struct lkd_tokens *t = calloc(1, sizeof *t);
    if (t == NULL || (t->slot = calloc(TOKENS_CAP, sizeof *t->slot)) == NULL) {
        free(t);
        return LK_ERR_NOMEM;
    }
    *out = t;
    return LK_OK;
}

void lkd_tokens_free(struct lkd_tokens *t)
{
    if (t == NULL)
        return;
    lk_wipe(t->slot, TOKENS_CAP * sizeof *t->slot);
    free(t->slot);
    free(t);
}

static size_t slot_of(const uint8_t hash[32])
{
    size_t h;
    memcpy(&h, hash, sizeof h);
    return h & (TOKENS_CAP - 1);
}

/* Drop expired entries (rebuilding the table keeps probe chains intact). */
static void tokens_sweep(struct lkd_tokens *t, int64_t now)
{
    struct token_slot *old = t->slot;
    struct token_slot *fresh = calloc(TOKENS_CAP, sizeof *fresh);
    if (fresh == NULL)
        return;
    t->used = 0;
    for (size_t i = 0; i < TOKENS_CAP; i++) {
        if (old[i].expires == 0 || old[i].expires <= now)
            continue;
        size_t j = slot_of(old[i].hash);
        while (fresh[j].expires != 0)
            j = (j + 1) & (TOKENS_CAP - 1);
        fresh[j] = old[i];
        t->used++;
    }
    lk_wipe(old, TOKENS_CAP * sizeof *old);
    free(old);
    t->slot = fresh;
}

static int tokens_add(struct lkd_tokens *t, const uint8_t hash[32], const char *key_id, int64_t expires,
                      int64_t now)
{
    if (t->used >= TOKENS_CAP / 2)
        tokens_sweep(t, now);
    if (t->used >= TOKENS_CAP / 2)
        return -1;
    size_t j = slot_of(hash);
    while (t->slot[j].expires != 0)
        j = (j + 1) & (TOKENS_CAP - 1);
    memcpy(t->slot[j].hash, hash, 32);
    snprintf(t->slot[j].key_id, sizeof t->slot[j].key_id, "%s", key_id);
    t->slot[j].expires = expires;
    t->used++;
    return 0;
}

static const struct token_slot *tokens_find(const struct lkd_tokens *t, const uint8_t hash[32])
{
    size_t j = slot_of(hash);
    for (size_t n = 0; n < TOKENS_CAP && t->slot[j].expires != 0; n++) {
        if (lk_ct_equal(t->slot[j].hash, hash, 32))
            return &t->slot[j];
        j = (j + 1) & (TOKENS_CAP - 1);
    }
    return NULL;
}

const char *lkd_role_name(lkd_role r)
{
    return lk_reg_sa_role_name((lk_reg_sa_role)r);
}

/* The key named kid: 0 and *k filled, or -1 with why. */
static int find_key(struct lkd *d, const char *kid, lk_reg_sa_key *k, char *why, size_t why_size)
{
    lk_err err = lk_registry_sa_lookup(d->reg, kid, k);
    if (err == LK_ERR_REG_NOT_FOUND) {
        snprintf(why, why_size, "no service-account key \"%.48s\"", kid);
        return -1;
    }
    if (err != LK_OK) {
        snprintf(why, why_size, "the registry could not be read (%s)", lk_errname(err));
        return -1;
    }
    return 0;
}

/* k is refused when disabled (why says so; k is freed). Only a caller who
 * proved it holds the key (a verified JWT, or an access token) is told. */
static int key_enabled(lk_reg_sa_key *k, char *why, size_t why_size)
{
    if (!k->disabled)
        return 0;
    snprintf(why, why_size, "key %s of %s is disabled", k->key_id, k->email);
    lk_reg_sa_key_free(k);
    return -1;
}

static int usable_key(struct lkd *d, const char *kid, lk_reg_sa_key *k, char *why, size_t why_size)
{
    if (find_key(d, kid, k, why, why_size) != 0)
        return -1;
    return key_enabled(k, why, why_size);
}

/* Verify a service account's JWT: for the API (aud naming it, or a scope)
 * or for the token endpoint (aud = token_uri). 0 with *k, or -1 with why
 * (for the log) and told (for the caller: until the signature is verified,
 * nothing about the key's account -- its email, whether it is disabled --
 * goes back to whoever sent the token). */
static int verify_sa_jwt(struct lkd *d, const char *jwt, size_t len, int for_grant, const char *api_aud,
                         lk_reg_sa_key *k, int64_t *exp, char *why, size_t why_size, char *told,
                         size_t told_size)
{
    char kid[48];
    if (lk_jwt_peek_kid(jwt, len, kid, sizeof kid) != LK_OK) {
        snprintf(why, why_size, "not a service-account JWT (no kid in its header)");
        snprintf(told, told_size, "%s", why);
        return -1;
    }
    if (find_key(d, kid, k, why, why_size) != 0) {
        snprintf(told, told_size, "%s", why);
        return -1;
    }
    lk_cred *cred = NULL;
    lk_err err = lk_cred_parse(LK_CRED_RSA_PEM, k->public_pem, strlen(k->public_pem), 0, &cred);
    if (err != LK_OK) {
        snprintf(why, why_size, "key %s cannot be used (%s)", k->key_id, lk_errname(err));
        snprintf(told, told_size, "%s", why);
        lk_reg_sa_key_free(k);
        return -1;
    }
    const char *auds_api[] = {"https://cloudiot.googleapis.com/", "https://cloudiot.googleapis.com", api_aud};
    const char *auds_grant[] = {d->cfg.token_uri};
    lk_sa_policy pol = {0};
    pol.email = k->email;
    pol.now = lkd_now();
    pol.skew = LK_SA_SKEW;
    pol.max_lifetime = LK_SA_MAX_LIFETIME;
    pol.max_len = LK_VERIFY_MAX_LEN;
    if (for_grant) {
        pol.audiences = auds_grant;
        pol.naudiences = 1;
    } else {
        pol.audiences = auds_api;
        pol.naudiences = api_aud ? 3 : 2;
        pol.scopes = api_scopes;
        pol.nscopes = sizeof api_scopes / sizeof api_scopes[0];
    }
    lk_token_info info;
    char detail[256] = "";
    err = lk_verify_sa_token(d->ver, jwt, len, cred, &pol, &info, detail, sizeof detail);
    lk_cred_free(cred);
    if (err != LK_OK) {
        snprintf(why, why_size, "JWT of key %s (%s) refused: %s (%s)", k->key_id, k->email,
                 detail[0] ? detail : lk_strerror(err), lk_errname(err));
        snprintf(told, told_size, "the JWT of key %s was refused (%s); latchkeyd's log says why", k->key_id,
                 lk_errname(err));
        lk_reg_sa_key_free(k);
        return -1;
    }
    if (key_enabled(k, why, why_size) != 0) {
        snprintf(told, told_size, "%s", why);
        return -1;
    }
    *exp = info.exp;
    return 0;
}

static void set_principal(struct lkd_call *c, const lk_reg_sa_key *k, int how)
{
    snprintf(c->who.email, sizeof c->who.email, "%s", k->email);
    snprintf(c->who.project, sizeof c->who.project, "%s", k->project);
    snprintf(c->who.key_id, sizeof c->who.key_id, "%s", k->key_id);
    c->who.role = (lkd_role)k->role;
    c->who.how = how;
}

static int authenticate(struct lkd_call *c, const char *h)
{
    struct lkd *d = c->d;
    char why[512];
    if (h == NULL) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED,
                        "Request is missing required authentication credential: a service account's "
                        "Bearer token or a console session");
        return -1;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "Authorization must be a Bearer token");
        return -1;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    lk_reg_sa_key k;
    memset(&k, 0, sizeof k);
    if (len == 0 || len > LK_VERIFY_MAX_LEN) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "the Bearer token is empty or longer than %u bytes",
                        LK_VERIFY_MAX_LEN);
        return -1;
    }
    if (strncmp(tok, ACCESS_PREFIX, strlen(ACCESS_PREFIX)) == 0) {
        uint8_t hash[32];
        lk_sha256(tok, len, hash);
        const struct token_slot *s = tokens_find(d->tokens, hash);
        if (s == NULL || s->expires <= lkd_now()) {
            lkd_reply_error(c, LKD_UNAUTHENTICATED, "the access token is unknown or expired: fetch a new one");
            return -1;
        }
        if (usable_key(d, s->key_id, &k, why, sizeof why) != 0) {
            lkd_reply_error(c, LKD_UNAUTHENTICATED, "access token refused: %s", why);
            return -1;
        }
        set_principal(c, &k, 2);
    } else {
        char api_aud[300];
        snprintf(api_aud, sizeof api_aud, "%s", d->cfg.token_uri);
        char *slash = strstr(api_aud, "/token");
        if (slash != NULL)
            slash[1] = '\0'; /* https://host:port/ names the API too */
        int64_t exp;
        char told[256];
        if (verify_sa_jwt(d, tok, len, 0, api_aud, &k, &exp, why, sizeof why, told, sizeof told) != 0) {
            if (strcmp(why, told) != 0)
                lkd_log("%s %s: %s", c->peer, c->path ? c->path : "?", why);
            lkd_reply_error(c, LKD_UNAUTHENTICATED, "%s", told);
            return -1;
        }
        set_principal(c, &k, 1);
    }
    lk_reg_sa_key_free(&k);
    return 0;
}

char *lkd_take_authorization(struct lkd_call *c, size_t max, size_t *len)
{
    char *h = (char *)evhttp_find_header(evhttp_request_get_input_headers(c->req), "Authorization");
    *len = 0;
    if (h == NULL)
        return NULL;
    size_t n = strlen(h);
    char *copy = n <= max + 16 ? malloc(n + 1) : NULL;
    if (copy != NULL) {
        memcpy(copy, h, n + 1);
        *len = n;
    }
    lk_wipe(h, n);
    return copy;
}

void lkd_wipe_authorization(char *h, size_t len)
{
    if (h != NULL) {
        lk_wipe(h, len);
        free(h);
    }
}

int lkd_authenticate(struct lkd_call *c)
{
    /* The bearer token (an access token, or a JWT good for up to an hour)
     * is needed only here: taken out of evhttp's headers, both copies
     * wiped, rather than left in freed memory when the request goes. */
    int present = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Authorization") != NULL;
    size_t n;
    char *h = lkd_take_authorization(c, LK_VERIFY_MAX_LEN, &n);
    if (present && h == NULL) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "the Bearer token is empty or longer than %u bytes",
                        LK_VERIFY_MAX_LEN);
        return -1;
    }
    /* An Authorization header wins; without one, a console session's
     * cookie (console_auth.c). */
    if (!present) {
        int k = lkd_session_authenticate(c);
        if (k != 0)
            return k > 0 ? 0 : -1;
    }
    int rc = authenticate(c, h);
    lkd_wipe_authorization(h, n);
    return rc;
}

int lkd_require(struct lkd_call *c, const char *project, lkd_role need)
{
    if (strcmp(c->who.project, project) != 0) {
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "Permission denied: %s has no role in project %.64s",
                        c->who.email, project);
        return -1;
    }
    if (c->who.role < need) {
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "Permission denied: %s is %s in project %s; this needs %s",
                        c->who.email, lkd_role_name(c->who.role), project, lkd_role_name(need));
        return -1;
    }
    return 0;
}

/* ---- POST /token ---- */

static void grant_error(struct evhttp_request *req, int status, const char *error, const char *desc)
{
    json_t *j = json_pack("{s:s,s:s}", "error", error, "error_description", desc);
    lkd_send_json(req, status, j);
    json_decref(j);
}

/* Parsed form values hold the assertion (replayable until it expires). */
static void wipe_clear(struct evkeyvalq *q)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, q, next) {
        lk_wipe(kv->value, strlen(kv->value));
    }
    evhttp_clear_headers(q);
}

void lkd_token_endpoint(struct lkd *d, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char peer[80];
    lkd_peer(req, peer, sizeof peer, 1);
    if (n == 0 || n > 16384) {
        grant_error(req, 400, "invalid_request", "the body must be a form of at most 16384 bytes");
        return;
    }
    char *form = malloc(n + 1);
    if (form == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return;
    }
    evbuffer_remove(in, form, n);
    form[n] = '\0';
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (strlen(form) != n || evhttp_parse_query_str(form, &q) != 0) {
        lk_wipe(form, n);
        free(form);
        wipe_clear(&q);
        grant_error(req, 400, "invalid_request", "the body is not application/x-www-form-urlencoded");
        return;
    }
    const char *gt = evhttp_find_header(&q, "grant_type");
    const char *assertion = evhttp_find_header(&q, "assertion");
    char why[512];
    lk_reg_sa_key k;
    memset(&k, 0, sizeof k);
    int64_t exp;
    char told[256]; /* the grant tells the caller only invalid_grant */
    if (gt == NULL || strcmp(gt, "urn:ietf:params:oauth:grant-type:jwt-bearer") != 0) {
        grant_error(req, 400, "unsupported_grant_type",
                    "only urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523) is offered");
        lkd_log("%s token: unsupported grant type", peer);
    } else if (assertion == NULL || assertion[0] == '\0') {
        grant_error(req, 400, "invalid_request", "assertion is missing");
    } else if (verify_sa_jwt(d, assertion, strlen(assertion), 1, NULL, &k, &exp, why, sizeof why, told,
                             sizeof told) != 0) {
        lkd_log("%s token: %s", peer, why);
        grant_error(req, 400, "invalid_grant", "the assertion was refused (the reason is in latchkeyd's log)");
    } else {
        uint8_t raw[32], hash[32];
        char tok[sizeof ACCESS_PREFIX + LK_B64URL_ENCODED_LEN(32) + 1];
        size_t tl = 0;
        memcpy(tok, ACCESS_PREFIX, strlen(ACCESS_PREFIX));
        int64_t now = lkd_now();
        int64_t until = now + d->cfg.access_token_ttl;
        if (RAND_bytes(raw, sizeof raw) != 1 ||
            lk_b64url_encode(raw, sizeof raw, tok + strlen(ACCESS_PREFIX), sizeof tok - strlen(ACCESS_PREFIX),
                             &tl) != LK_OK) {
            evhttp_send_error(req, 503, "Service Unavailable");
        } else {
            tok[strlen(ACCESS_PREFIX) + tl] = '\0';
            lk_sha256(tok, strlen(tok), hash);
            /* The answer carries the token: written by hand (its characters
             * need no JSON escaping) into memory that is wiped once sent,
             * not left in freed jansson strings. */
            char *body = malloc(sizeof tok + 96);
            int bl = body ? snprintf(body, sizeof tok + 96,
                                     "{\"access_token\":\"%s\",\"expires_in\":%u,\"token_type\":\"Bearer\"}\n", tok,
                                     d->cfg.access_token_ttl)
                          : -1;
            if (bl < 0 || (size_t)bl >= sizeof tok + 96) {
                free(body);
                evhttp_send_error(req, 503, "Service Unavailable");
            } else if (tokens_add(d->tokens, hash, k.key_id, until, now) != 0) {
                lk_wipe(body, (size_t)bl);
                free(body);
                grant_error(req, 400, "temporarily_unavailable", "too many live access tokens; try later");
            } else {
                lkd_send_secret(req, 200, body, (size_t)bl);
                lkd_debug(d, "%s token: access token for %s (key %s)", peer, k.email, k.key_id);
            }
            lk_wipe(tok, sizeof tok);
            lk_wipe(raw, sizeof raw);
        }
        lk_reg_sa_key_free(&k);
    }
    wipe_clear(&q);
    lk_wipe(form, n);
    free(form);
}
