/*
 * console_auth.c — people in latchkeyd (docs/console.md, "Sign-in and
 * accounts"): POST /console/api/signin, GET /console/api/session, POST
 * /console/api/signout, the sessions behind the lk_session cookie, the
 * CSRF check of every change made with one, and the sign-in rate limits.
 *
 * Decisions:
 *  - a session id is 32 random bytes (RAND_bytes) in base64url; only its
 *    SHA-256 is kept, in memory (a restart signs everyone out); at most
 *    LKD_SESSIONS_MAX live, idle for at most 30 minutes, 12 hours in all;
 *  - the operator is read again on every request: deleted, disabled or a
 *    new password (the record's SHA-256 differs) ends the session; its role
 *    and project are the registry's, now;
 *  - the CSRF token is 32 more random bytes per session, given at sign-in
 *    and by GET /console/api/session, required in X-CSRF-Token on every
 *    cookie-authenticated request but GET and HEAD, compared in constant
 *    time;
 *  - sign-in takes application/json only (a cross-site form cannot send
 *    it without a CORS preflight, which latchkeyd never grants);
 *  - rate limits: 5 failures per 15 minutes per source address and per
 *    name, then 429 with Retry-After until the window ends; a success
 *    clears the name's count, not the address's; at most 10 password
 *    checks a second in all (each costs ~0.1 s of the one thread);
 *    LKD_LIMITS_MAX entries, the least recently used one evicted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_reg_audit.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_util.h"
#include "daemon.h"

#define LKD_SESSIONS_MAX 1024
#define SESSION_IDLE 1800           /* seconds */
#define SESSION_ABSOLUTE 43200
#define LKD_LIMITS_MAX 4096
#define LIMIT_FAILURES 5
#define LIMIT_WINDOW 900
#define SIGNINS_PER_SECOND 10
#define TOKEN_CHARS 43              /* base64url of 32 bytes */
#define COOKIE "lk_session"

struct session {
    uint8_t id_hash[32];
    char csrf[TOKEN_CHARS + 1];
    char name[LK_OPERATOR_NAME_MAX + 1];
    uint8_t stamp[32];
    int64_t created, used;          /* created 0 = free */
};

struct limit {
    char key[LK_OPERATOR_NAME_MAX + 72]; /* "a:ADDRESS" or "n:NAME" */
    int64_t start, used;
    unsigned fails;
};

struct lkd_console {
    struct session s[LKD_SESSIONS_MAX];
    struct limit lim[LKD_LIMITS_MAX];
    int64_t second;
    unsigned in_second;
};

int lkd_console_new(struct lkd_console **out)
{
    *out = calloc(1, sizeof **out);
    return *out != NULL ? 0 : -1;
}

void lkd_console_free(struct lkd_console *k)
{
    if (k != NULL) {
        OPENSSL_cleanse(k, sizeof *k);
        free(k);
    }
}

static void end_session(struct session *s)
{
    OPENSSL_cleanse(s, sizeof *s);
}

static int expired(const struct session *s, int64_t now)
{
    return s->created == 0 || now - s->used > SESSION_IDLE || now - s->created > SESSION_ABSOLUTE;
}

/* ---- rate limits ---- */

static struct limit *limit_find(struct lkd_console *k, const char *key, int make, int64_t now)
{
    struct limit *victim = NULL;
    for (size_t i = 0; i < LKD_LIMITS_MAX; i++) {
        struct limit *l = &k->lim[i];
        if (l->key[0] != '\0' && strcmp(l->key, key) == 0) {
            if (now - l->start >= LIMIT_WINDOW) { /* a new window */
                l->start = now;
                l->fails = 0;
            }
            return l;
        }
        if (make && (victim == NULL || (l->key[0] == '\0' && victim->key[0] != '\0') ||
                     (victim->key[0] != '\0' && l->used < victim->used)))
            victim = l;
    }
    if (victim == NULL)
        return NULL;
    memset(victim, 0, sizeof *victim);
    snprintf(victim->key, sizeof victim->key, "%s", key);
    victim->start = victim->used = now;
    return victim;
}

/* Seconds until key may try again, or 0. */
static int64_t limited(struct lkd_console *k, const char *key, int64_t now)
{
    struct limit *l = limit_find(k, key, 0, now);
    if (l == NULL || l->fails < LIMIT_FAILURES)
        return 0;
    return l->start + LIMIT_WINDOW - now;
}

static void count_failure(struct lkd_console *k, const char *key, int64_t now)
{
    struct limit *l = limit_find(k, key, 1, now);
    if (l != NULL) {
        l->fails++;
        l->used = now;
    }
}

/* ---- helpers ---- */

/* name for the log: printable, cut. */
static const char *shown(const char *s, char *buf, size_t size)
{
    size_t i = 0;
    for (; s != NULL && s[i] != '\0' && i + 1 < size && i < 40; i++)
        buf[i] = (s[i] > 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    buf[i] = '\0';
    return buf;
}

static int random_token(char out[TOKEN_CHARS + 1])
{
    uint8_t raw[32];
    size_t n = 0;
    int ok = RAND_bytes(raw, sizeof raw) == 1 &&
             lk_b64url_encode(raw, sizeof raw, out, TOKEN_CHARS + 1, &n) == LK_OK && n == TOKEN_CHARS;
    OPENSSL_cleanse(raw, sizeof raw);
    return ok ? 0 : -1;
}

/* The lk_session cookie's value (TOKEN_CHARS characters) into id; the
 * Cookie header is wiped in place. 1 found, 0 none. */
static int cookie_id(struct evhttp_request *req, char id[TOKEN_CHARS + 1])
{
    struct evkeyval *kv;
    int found = 0;
    id[0] = '\0';
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
        if (evutil_ascii_strcasecmp(kv->key, "Cookie") != 0)
            continue;
        char *p = kv->value;
        while (!found && p != NULL && *p != '\0') {
            while (*p == ' ' || *p == ';')
                p++;
            size_t n = strcspn(p, ";");
            if (n == sizeof COOKIE + TOKEN_CHARS && strncmp(p, COOKIE "=", sizeof COOKIE) == 0) {
                memcpy(id, p + sizeof COOKIE, TOKEN_CHARS);
                id[TOKEN_CHARS] = '\0';
                found = 1;
            }
            p += n;
        }
        lk_wipe(kv->value, strlen(kv->value));
    }
    return found;
}

/* The live session of id, or NULL (an expired one is ended). */
static struct session *session_find(struct lkd_console *k, const char *id, int64_t now)
{
    uint8_t h[32];
    struct session *hit = NULL;
    lk_sha256(id, strlen(id), h);
    for (size_t i = 0; i < LKD_SESSIONS_MAX; i++)
        if (k->s[i].created != 0 && CRYPTO_memcmp(k->s[i].id_hash, h, 32) == 0)
            hit = &k->s[i];
    OPENSSL_cleanse(h, sizeof h);
    if (hit != NULL && expired(hit, now)) {
        end_session(hit);
        hit = NULL;
    }
    return hit;
}

/* The operator of a session as the registry has it now: 0 with *o, or -1
 * (the session is ended; why says why). */
static int session_operator(struct lkd *d, struct session *s, lk_reg_operator *o, const char **why)
{
    lk_err err = lk_registry_operator_get(d->reg, s->name, o);
    *why = NULL;
    if (err == LK_ERR_REG_NOT_FOUND)
        *why = "the operator was deleted";
    else if (err != LK_OK)
        *why = "the registry could not be read";
    else if (o->disabled)
        *why = "the operator is disabled";
    else if (CRYPTO_memcmp(o->stamp, s->stamp, 32) != 0)
        *why = "the operator's password was changed";
    if (*why == NULL)
        return 0;
    if (err == LK_OK)
        lk_reg_operator_free(o);
    if (err == LK_OK || err == LK_ERR_REG_NOT_FOUND)
        end_session(s);
    return -1;
}

static void set_cookie(struct evhttp_request *req, const char *id)
{
    char v[160];
    if (id != NULL)
        snprintf(v, sizeof v, COOKIE "=%s; Path=/; HttpOnly; Secure; SameSite=Strict", id);
    else
        snprintf(v, sizeof v, COOKIE "=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie", v);
    OPENSSL_cleanse(v, sizeof v);
}

/* {"name","role","project","csrf"}: sent as a secret (wiped once sent). */
static void send_session(struct evhttp_request *req, const struct session *s, const lk_reg_operator *o)
{
    size_t cap = 256 + strlen(o->project);
    char *body = malloc(cap);
    int n = body ? snprintf(body, cap, "{\"name\":\"%s\",\"role\":\"%s\",\"project\":\"%s\",\"csrf\":\"%s\"}\n",
                            s->name, lk_reg_sa_role_name(o->role), o->project, s->csrf)
                 : -1;
    if (n < 0 || (size_t)n >= cap) {
        free(body);
        lkd_send_error(req, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    lkd_send_secret(req, 200, body, (size_t)n);
}

/* Whether the request carries the session's CSRF token in X-CSRF-Token
 * (constant time). */
static int csrf_ok(struct evhttp_request *req, const struct session *s)
{
    const char *t = evhttp_find_header(evhttp_request_get_input_headers(req), "X-CSRF-Token");
    return t != NULL && strlen(t) == TOKEN_CHARS && CRYPTO_memcmp(t, s->csrf, TOKEN_CHARS) == 0;
}

/* ---- the cookie as a principal (auth.c) ---- */

int lkd_session_authenticate(struct lkd_call *c)
{
    struct lkd *d = c->d;
    char id[TOKEN_CHARS + 1];
    if (d->console == NULL || !cookie_id(c->req, id))
        return 0;
    int64_t now = lkd_now();
    struct session *s = session_find(d->console, id, now);
    lk_wipe(id, sizeof id);
    if (s == NULL) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "the console session is unknown or has expired: sign in again");
        return -1;
    }
    lk_reg_operator o;
    const char *why;
    char name[LK_OPERATOR_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", s->name);
    if (session_operator(d, s, &o, &why) != 0) {
        lkd_reply_error(c, LKD_UNAUTHENTICATED, "the console session of %s ended: %s", name, why);
        return -1;
    }
    if (c->method != EVHTTP_REQ_GET && c->method != EVHTTP_REQ_HEAD) {
        if (!csrf_ok(c->req, s)) {
            lk_reg_operator_free(&o);
            lkd_reply_error(c, LKD_PERMISSION_DENIED, "CSRF token missing or wrong");
            return -1;
        }
    }
    s->used = now;
    snprintf(c->who.email, sizeof c->who.email, LK_OPERATOR_ACTOR_PREFIX "%s", o.name);
    snprintf(c->who.project, sizeof c->who.project, "%s", o.project);
    c->who.key_id[0] = '\0';
    c->who.role = (lkd_role)o.role;
    c->who.how = LKD_HOW_SESSION;
    lk_reg_operator_free(&o);
    return 1;
}

/* ---- the routes ---- */

/* The request's JSON body (application/json, at most 4096 bytes), the raw
 * copy wiped: NULL after answering *why. */
static json_t *read_json(struct evhttp_request *req, const char **why)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 || (ct[16] != '\0' && ct[16] != ';')) {
        lkd_send_error(req, LKD_INVALID_ARGUMENT, *why = "sign-in takes a JSON body (Content-Type: application/json)");
        return NULL;
    }
    if (n == 0 || n > 4096) {
        lkd_send_error(req, LKD_INVALID_ARGUMENT, *why = "the body must be a JSON object of at most 4096 bytes");
        return NULL;
    }
    char *text = malloc(n);
    if (text == NULL) {
        lkd_send_error(req, LKD_UNAVAILABLE, *why = "out of memory");
        return NULL;
    }
    evbuffer_remove(in, text, n);
    json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
    OPENSSL_cleanse(text, n);
    free(text);
    if (!json_is_object(j)) {
        json_decref(j);
        lkd_send_error(req, LKD_INVALID_ARGUMENT, *why = "the body must be a JSON object {\"name\", \"password\"}");
        return NULL;
    }
    return j;
}

/* Wipe the password inside j and release j. */
static void drop_json(json_t *j)
{
    json_t *pw = json_object_get(j, "password");
    if (json_is_string(pw))
        OPENSSL_cleanse((char *)json_string_value(pw), json_string_length(pw));
    json_decref(j);
}

static void too_many(struct evhttp_request *req, int64_t after, const char *msg)
{
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)(after > 0 ? after : 1));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", v);
    lkd_send_error(req, LKD_RESOURCE_EXHAUSTED, msg);
}

static void signin(struct lkd *d, struct evhttp_request *req)
{
    struct lkd_console *k = d->console;
    char host[72], akey[80], nkey[80], b[48], why[256];
    int64_t now = lkd_now(), wait;
    lkd_peer(req, host, sizeof host, 0);
    const char *bad = "malformed request";
    json_t *j = read_json(req, &bad);
    if (j == NULL) {
        lkd_log("%s console signin refused: %s", host, bad);
        return;
    }
    json_t *jn = json_object_get(j, "name"), *jp = json_object_get(j, "password");
    if (!json_is_string(jn) || !json_is_string(jp) || json_object_size(j) != 2 ||
        json_string_length(jn) > LK_OPERATOR_NAME_MAX || json_string_length(jp) > LK_PASSWORD_MAX) {
        drop_json(j);
        lkd_log("%s console signin refused: the body is not {\"name\", \"password\"} within their sizes", host);
        lkd_send_error(req, LKD_INVALID_ARGUMENT,
                       "the body must be {\"name\": STRING, \"password\": STRING} (name up to 32, password up "
                       "to 1024 bytes)");
        return;
    }
    const char *name = json_string_value(jn);
    shown(name, b, sizeof b);
    snprintf(akey, sizeof akey, "a:%s", host);
    snprintf(nkey, sizeof nkey, "n:%s", b);
    if ((wait = limited(k, akey, now)) > 0 || (wait = limited(k, nkey, now)) > 0) {
        drop_json(j);
        lkd_log("%s console signin refused for \"%s\": rate-limited (%d failures in %d s from this address or "
                "for this name), %lld s left", host, b, LIMIT_FAILURES, LIMIT_WINDOW, (long long)wait);
        too_many(req, wait, "too many failed sign-ins; try again later");
        return;
    }
    if (k->second != now) {
        k->second = now;
        k->in_second = 0;
    }
    if (++k->in_second > SIGNINS_PER_SECOND) {
        drop_json(j);
        lkd_log("%s console signin refused for \"%s\": more than %d sign-ins this second", host, b,
                SIGNINS_PER_SECOND);
        too_many(req, 1, "too many sign-ins at once; try again in a second");
        return;
    }
    lk_reg_operator o;
    lk_err err = lk_registry_operator_signin(d->reg, name, json_string_value(jp), json_string_length(jp), &o,
                                              why, sizeof why);
    drop_json(j);
    if (err != LK_OK) {
        if (err == LK_ERR_REG_NOT_FOUND) {
            count_failure(k, akey, now);
            count_failure(k, nkey, now);
        }
        lkd_log("%s console signin refused for \"%s\": %s", host, b, why);
        if (err == LK_ERR_REG_NOT_FOUND)
            lkd_send_error(req, LKD_UNAUTHENTICATED, "the name or the password is wrong");
        else
            lkd_send_error(req, LKD_UNAVAILABLE, "the registry could not be read; try again");
        return;
    }
    struct limit *nl = limit_find(k, nkey, 0, now);
    if (nl != NULL)
        nl->fails = 0;
    /* a free slot, else an expired one */
    struct session *s = NULL;
    for (size_t i = 0; i < LKD_SESSIONS_MAX && s == NULL; i++)
        if (expired(&k->s[i], now)) {
            end_session(&k->s[i]);
            s = &k->s[i];
        }
    char id[TOKEN_CHARS + 1];
    if (s == NULL) {
        lkd_log("%s console signin refused for \"%s\": %d sessions are live", host, b, LKD_SESSIONS_MAX);
        lkd_send_error(req, LKD_RESOURCE_EXHAUSTED, "too many console sessions are open; try later");
    } else if (random_token(id) != 0 || random_token(s->csrf) != 0) {
        end_session(s);
        lkd_send_error(req, LKD_UNAVAILABLE, "no random bytes");
    } else {
        lk_sha256(id, TOKEN_CHARS, s->id_hash);
        snprintf(s->name, sizeof s->name, "%s", o.name);
        memcpy(s->stamp, o.stamp, 32);
        s->created = s->used = now;
        set_cookie(req, id);
        send_session(req, s, &o);
        lkd_log("%s console signin: operator %s (%s in %s)", host, o.name, lk_reg_sa_role_name(o.role), o.project);
    }
    lk_wipe(id, sizeof id);
    lk_reg_operator_free(&o);
}

static void session(struct lkd *d, struct evhttp_request *req, int out)
{
    char id[TOKEN_CHARS + 1], host[72];
    int64_t now = lkd_now();
    struct session *s = NULL;
    lkd_peer(req, host, sizeof host, 0);
    if (cookie_id(req, id))
        s = session_find(d->console, id, now);
    lk_wipe(id, sizeof id);
    lk_reg_operator o;
    const char *why = "no session cookie, or an unknown or expired session";
    if (s != NULL && session_operator(d, s, &o, &why) != 0)
        s = NULL;
    if (out) {
        if (s != NULL) {
            if (!csrf_ok(req, s)) {
                lk_reg_operator_free(&o);
                lkd_log("%s console signout refused: CSRF token missing or wrong", host);
                lkd_send_error(req, LKD_PERMISSION_DENIED, "CSRF token missing or wrong");
                return;
            }
            lkd_log("%s console signout: operator %s", host, s->name);
            end_session(s);
            lk_reg_operator_free(&o);
        }
        set_cookie(req, NULL);
        evhttp_send_reply(req, 204, "No Content", NULL);
        return;
    }
    if (s == NULL) {
        lkd_send_error(req, LKD_UNAUTHENTICATED, why);
        return;
    }
    s->used = now;
    send_session(req, s, &o);
    lk_reg_operator_free(&o);
}

int lkd_console_auth_route(struct lkd *d, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    int which = strcmp(path, "/console/api/signin") == 0    ? 1
                : strcmp(path, "/console/api/session") == 0 ? 2
                : strcmp(path, "/console/api/signout") == 0 ? 3
                                                            : 0;
    if (which == 0)
        return 0;
    if (d->console == NULL) {
        lkd_send_error(req, LKD_UNAVAILABLE, "the console is not set up");
        return 1;
    }
    if ((which == 2) != (m == EVHTTP_REQ_GET)) {
        lkd_send_error(req, LKD_NOT_FOUND, which == 2 ? "/console/api/session takes GET"
                                                      : "sign-in and sign-out take POST");
        return 1;
    }
    if (which == 1)
        signin(d, req);
    else
        session(d, req, which == 3);
    return 1;
}

/* ---- who changes what (the audit record) ---- */

void lkd_audit_begin(struct lkd_call *c)
{
    char actor[400], action[LK_AUDIT_ACTION_MAX + 1], resource[LK_AUDIT_RESOURCE_MAX + 1];
    const char *type = "unknown", *op;
    size_t o = 0;
    if (c->who.how == LKD_HOW_SESSION)
        snprintf(actor, sizeof actor, "%s", c->who.email);
    else
        snprintf(actor, sizeof actor, "serviceAccount:%s", c->who.email);
    /* the resource: the path's segments; the action: the last collection's
     * name and the method, or the verb (".../devices/D:modifyCloudToDeviceConfig"
     * is devices.modifyCloudToDeviceConfig; POST .../devices is devices.create) */
    resource[0] = '\0';
    for (unsigned i = 0; i < c->nseg && o + 2 < sizeof resource; i++) {
        int n = snprintf(resource + o, sizeof resource - o, "%s%s", i ? "/" : "", c->seg[i]);
        if (n < 0)
            break;
        o += (size_t)n;
        if (o >= sizeof resource)
            o = sizeof resource - 1;
    }
    /* a create names the new resource by the body's id */
    json_t *id = c->method == EVHTTP_REQ_POST && c->nseg % 2 == 1 && c->verb == NULL ? json_object_get(c->body, "id")
                                                                                 : NULL;
    if (json_is_string(id) && o + 1 < sizeof resource)
        snprintf(resource + o, sizeof resource - o, "/%s", json_string_value(id));
    if (c->nseg > 0)
        type = c->seg[(c->nseg % 2 == 1) ? c->nseg - 1 : c->nseg - 2];
    switch (c->method) {
    case EVHTTP_REQ_POST: op = c->nseg % 2 == 1 ? "create" : "post"; break;
    case EVHTTP_REQ_PATCH: op = "patch"; break;
    case EVHTTP_REQ_DELETE: op = "delete"; break;
    case EVHTTP_REQ_PUT: op = "update"; break;
    case EVHTTP_REQ_GET: op = c->nseg % 2 == 1 ? "list" : "get"; break;
    default: op = "other"; break;
    }
    snprintf(action, sizeof action, "%s.%s", type, c->verb != NULL ? c->verb : op);
    lk_registry_set_actor(c->d->reg, actor, c->who.how == LKD_HOW_SESSION ? "console" : "api");
    /* the detail: which fields a patch changes (never a value) */
    char detail[LK_AUDIT_DETAIL_MAX + 1] = "";
    const char *mask = c->query_ok ? lkd_query(c, "updateMask") : NULL;
    if (mask != NULL)
        snprintf(detail, sizeof detail, "updateMask=%s", mask);
    lk_registry_set_action(c->d->reg, action, resource, detail[0] ? detail : NULL);
}

void lkd_audit_end(struct lkd *d)
{
    lk_registry_set_actor(d->reg, NULL, NULL);
    lk_registry_set_action(d->reg, NULL, NULL, NULL);
}
