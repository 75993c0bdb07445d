/*
 * reply.c — every answer of the API: JSON bodies, and Google's error
 * object {"error": {"code", "message", "status"}} with the HTTP status
 * Google pairs with each canonical code. The end of every call.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "latchkey/lk_util.h"
#include "../common/kvlog.h"
#include "daemon.h"

static const struct {
    const char *name;
    int http;
} codes[] = {
    [LKD_OK] = {"OK", 200},
    [LKD_CANCELLED] = {"CANCELLED", 499},
    [LKD_UNKNOWN] = {"UNKNOWN", 500},
    [LKD_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", 400},
    [LKD_DEADLINE_EXCEEDED] = {"DEADLINE_EXCEEDED", 504},
    [LKD_NOT_FOUND] = {"NOT_FOUND", 404},
    [LKD_ALREADY_EXISTS] = {"ALREADY_EXISTS", 409},
    [LKD_PERMISSION_DENIED] = {"PERMISSION_DENIED", 403},
    [LKD_RESOURCE_EXHAUSTED] = {"RESOURCE_EXHAUSTED", 429},
    [LKD_FAILED_PRECONDITION] = {"FAILED_PRECONDITION", 400},
    [LKD_ABORTED] = {"ABORTED", 409},
    [LKD_OUT_OF_RANGE] = {"OUT_OF_RANGE", 400},
    [LKD_UNIMPLEMENTED] = {"UNIMPLEMENTED", 501},
    [LKD_INTERNAL] = {"INTERNAL", 500},
    [LKD_UNAVAILABLE] = {"UNAVAILABLE", 503},
    [LKD_DATA_LOSS] = {"DATA_LOSS", 500},
    [LKD_UNAUTHENTICATED] = {"UNAUTHENTICATED", 401},
};

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 500 ? "Internal Server Error" : "Error";
    }
}

static void send_body(struct evhttp_request *req, int status, struct evbuffer *buf)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json; charset=UTF-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(req, status, reason(status), buf);
    evbuffer_free(buf);
}

void lkd_send_json(struct evhttp_request *req, int status, json_t *j)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (buf == NULL || text == NULL) {
        if (buf)
            evbuffer_free(buf);
        free(text);
        evhttp_send_error(req, 500, "Internal Server Error");
        return;
    }
    evbuffer_add(buf, text, strlen(text));
    evbuffer_add(buf, "\n", 1);
    free(text);
    send_body(req, status, buf);
}

static void wipe_text(const void *data, size_t len, void *arg)
{
    (void)arg;
    lk_wipe((void *)data, len);
    free((void *)data);
}

/* The body is referenced, not copied: evhttp moves the chain to the
 * connection, and once written (or dropped with it) wipe_text runs. */
void lkd_send_secret(struct evhttp_request *req, int status, char *text, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL || evbuffer_add_reference(buf, text, len, wipe_text, NULL) != 0) {
        if (buf)
            evbuffer_free(buf);
        wipe_text(text, len, NULL);
        evhttp_send_error(req, 500, "Internal Server Error");
        return;
    }
    send_body(req, status, buf);
}

/* Google's error object; with reason (an lk_err's name), an ErrorInfo
 * detail in Google's own shape, so that a client (the latchkey tool) tells
 * apart what one canonical code covers (INVALID_ARGUMENT: a limit, a
 * certificate, a key) and exits as the registry's refusal would make it. */
static void send_error(struct evhttp_request *req, lkd_code code, const char *msg, const char *reason,
                       json_t *detail)
{
    json_t *j = json_pack("{s:{s:i,s:s,s:s}}", "error", "code", codes[code].http, "message", msg, "status",
                          codes[code].name);
    if (j != NULL && reason != NULL) {
        json_t *d = json_pack("[{s:s,s:s,s:s}]", "@type", "type.googleapis.com/google.rpc.ErrorInfo", "reason",
                              reason, "domain", "latchkey");
        if (d != NULL && detail != NULL)
            json_array_append(d, detail);
        json_object_set_new(json_object_get(j, "error"), "details", d);
    }
    if (code == LKD_UNAUTHENTICATED)
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"latchkeyd\"");
    lkd_send_json(req, codes[code].http, j);
    json_decref(j);
}

/* An error before (or without) a call: the same JSON shape. */
void lkd_send_error(struct evhttp_request *req, lkd_code code, const char *msg)
{
    send_error(req, code, msg, NULL, NULL);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PUT: return "PUT";
    default: return "other";
    }
}

void lkd_call_free(struct lkd_call *c)
{
    if (c == NULL)
        return;
    if (c->query_ok)
        evhttp_clear_headers(&c->query);
    for (unsigned i = 0; i < c->nseg; i++)
        free(c->seg[i]);
    free(c->path);
    json_decref(c->body);
    free(c);
}

void lkd_reply_json(struct lkd_call *c, int status, json_t *j)
{
    if (c->req != NULL)
        lkd_send_json(c->req, status, j);
    json_decref(j);
    lkd_call_free(c);
}

static json_t *next_detail; /* lkd_reply_lk_detail's, for the one reply_error_v it makes (one thread) */

static void reply_error_v(struct lkd_call *c, lkd_code code, const char *reason, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static void reply_error_v(struct lkd_call *c, lkd_code code, const char *reason, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct kvlog l;
    kvlog_begin(&l, "refused", "info");
    kvlog_str(&l, "addr", c->peer);
    kvlog_str(&l, "method", method_name(c->method));
    kvlog_str(&l, "path", c->path ? c->path : "?");
    kvlog_str(&l, "who", c->who.email[0] ? c->who.email : "(unauthenticated)");
    if (strncmp(c->who.email, "projects/", 9) == 0 && strstr(c->who.email, "/devices/") != NULL)
        kvlog_str(&l, "device", c->who.email); /* a device's call on the device bridge */
    kvlog_str(&l, "code", codes[code].name);
    kvlog_str(&l, "msg", msg);
    lkd_log_kv(&l);
    if (c->req != NULL)
        send_error(c->req, code, msg, reason, next_detail);
    lkd_call_free(c);
}

void lkd_reply_error(struct lkd_call *c, lkd_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(c, code, NULL, fmt, ap);
    va_end(ap);
}

void lkd_reply_reason(struct lkd_call *c, lkd_code code, lk_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    reply_error_v(c, code, lk_errname(err), fmt, ap);
    va_end(ap);
}

void lkd_reply_lk(struct lkd_call *c, lk_err err, const char *why)
{
    const char *w = (why && why[0]) ? why : lk_strerror(err);
    switch (err) {
    case LK_ERR_REG_NOT_FOUND: lkd_reply_reason(c, LKD_NOT_FOUND, err, "%s", w); return;
    case LK_ERR_REG_EXISTS: lkd_reply_reason(c, LKD_ALREADY_EXISTS, err, "%s", w); return;
    /* versionToUpdate is not the current version: the request cannot succeed
     * as it stands (not ABORTED, which clients may retry unchanged). */
    case LK_ERR_REG_CONFLICT: lkd_reply_reason(c, LKD_FAILED_PRECONDITION, err, "%s", w); return;
    case LK_ERR_REG_NOT_EMPTY: lkd_reply_reason(c, LKD_FAILED_PRECONDITION, err, "%s", w); return;
    case LK_ERR_REG_LIMIT:
    case LK_ERR_REG_INVALID:
    case LK_ERR_REG_CERT:
    case LK_ERR_CRED_INVALID:
    case LK_ERR_ARG: lkd_reply_reason(c, LKD_INVALID_ARGUMENT, err, "%s", w); return;
    case LK_ERR_REG_BUSY: lkd_reply_reason(c, LKD_UNAVAILABLE, err, "the registry is busy; try again"); return;
    /* A full disk, an I/O error, a damaged file: the transaction was rolled
     * back. The path and SQLite's words go to the log, not to the client. */
    case LK_ERR_REG_STORAGE:
        lkd_log("registry failure: %s (%s)", w, lk_errname(err));
        lkd_reply_reason(c, LKD_INTERNAL, err, "the registry's storage failed (a full disk, an I/O error or a "
                                               "damaged file: latchkeyd's log says which)");
        return;
    default:
        lkd_log("registry failure: %s (%s)", w, lk_errname(err));
        lkd_reply_reason(c, LKD_INTERNAL, err, "internal error (%s)", lk_errname(err));
        return;
    }
}

void lkd_reply_lk_detail(struct lkd_call *c, lk_err err, const char *why, json_t *detail)
{
    next_detail = detail;
    lkd_reply_lk(c, err, why);
    next_detail = NULL;
    json_decref(detail);
}

const char *lkd_query(const struct lkd_call *c, const char *name)
{
    const char *v = NULL;
    const struct evkeyval *kv;
    if (!c->query_ok)
        return NULL;
    TAILQ_FOREACH(kv, &c->query, next) {
        if (strcmp(kv->key, name) == 0)
            v = kv->value;
    }
    return v;
}
