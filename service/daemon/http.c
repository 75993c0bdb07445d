/*
 * http.c — from an HTTP request to an API call: TLS bufferevents, the path
 * (percent-decoded per segment; empty, "." and ".." segments, encoded '/'
 * and NUL refused), the query, the JSON body (strict: duplicate names
 * refused, an object, within max_body), authentication, then dispatch.
 * Every answer goes through lkd_reply_json or lkd_reply_error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>


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

struct bufferevent *lkd_http_bev(struct event_base *base, void *arg)
{
    struct lkd *d = arg;
    SSL *ssl = SSL_new(d->ssl);
    if (ssl == NULL)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void send_json(struct evhttp_request *req, int status, json_t *j)
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
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json; charset=UTF-8");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_send_reply(req, status, reason(status), buf);
    evbuffer_free(buf);
}

/* An error before (or without) a call: the same JSON shape. */
static void send_error(struct evhttp_request *req, lkd_code code, const char *msg)
{
    json_t *j = json_pack("{s:{s:i,s:s,s:s}}", "error", "code", codes[code].http, "message", msg, "status",
                          codes[code].name);
    if (code == LKD_UNAUTHENTICATED)
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"latchkeyd\"");
    send_json(req, codes[code].http, j);
    json_decref(j);
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
        send_json(c->req, status, j);
    json_decref(j);
    lkd_call_free(c);
}

void lkd_reply_error(struct lkd_call *c, lkd_code code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lkd_log("%s %s %s by %s: %s %s", c->peer, method_name(c->method), c->path ? c->path : "?", c->who.email[0] ? c->who.email : "(unauthenticated)", codes[code].name, msg);
    if (c->req != NULL)
        send_error(c->req, code, msg);
    lkd_call_free(c);
}

void lkd_reply_lk(struct lkd_call *c, lk_err err, const char *why)
{
    const char *w = (why && why[0]) ? why : lk_strerror(err);
    switch (err) {
    case LK_ERR_REG_NOT_FOUND: lkd_reply_error(c, LKD_NOT_FOUND, "%s", w); return;
    case LK_ERR_REG_EXISTS: lkd_reply_error(c, LKD_ALREADY_EXISTS, "%s", w); return;
    /* versionToUpdate is not the current version: the request cannot succeed
     * as it stands (not ABORTED, which clients may retry unchanged). */
    case LK_ERR_REG_CONFLICT: lkd_reply_error(c, LKD_FAILED_PRECONDITION, "%s", w); return;
    case LK_ERR_REG_NOT_EMPTY: lkd_reply_error(c, LKD_FAILED_PRECONDITION, "%s", w); return;
    case LK_ERR_REG_LIMIT:
    case LK_ERR_REG_INVALID:
    case LK_ERR_REG_CERT:
    case LK_ERR_CRED_INVALID:
    case LK_ERR_ARG: lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s", w); return;
    case LK_ERR_REG_BUSY: lkd_reply_error(c, LKD_UNAVAILABLE, "the registry is busy; try again"); return;
    default:
        lkd_log("registry failure: %s (%s)", w, lk_errname(err));
        lkd_reply_error(c, LKD_INTERNAL, "internal error (%s)", lk_errname(err));
        return;
    }
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

/* Split the path after "/v1/" into decoded segments. 0, or -1 with msg. */
static int split_path(struct lkd_call *c, const char *raw, const char **msg)
{
    const char *p = raw;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) {
            *msg = "empty path segment";
            return -1;
        }
        if (c->nseg == LKD_SEG_MAX) {
            *msg = "path too long";
            return -1;
        }
        char *enc = strndup(p, n);
        size_t dlen = 0;
        char *dec = enc ? evhttp_uridecode(enc, 0, &dlen) : NULL;
        free(enc);
        if (dec == NULL)
            return -1;
        if (dlen != strlen(dec) || strchr(dec, '/') != NULL || strcmp(dec, ".") == 0 || strcmp(dec, "..") == 0 ||
            dlen == 0) {
            free(dec);
            *msg = "a path segment is empty, \".\", \"..\", or encodes '/' or NUL";
            return -1;
        }
        c->seg[c->nseg++] = dec;
        if (e == NULL)
            break;
        p = e + 1;
        if (*p == '\0') {
            *msg = "path ends with '/'";
            return -1;
        }
    }
    if (c->nseg > 0) {
        char *last = c->seg[c->nseg - 1];
        char *colon = strchr(last, ':');
        if (colon != NULL) {
            *colon = '\0';
            c->verb = colon + 1;
            if (*last == '\0' || *c->verb == '\0') {
                *msg = "empty name or method around ':'";
                return -1;
            }
        }
    }
    return 0;
}

static json_t *parse_body(struct lkd_call *c, const char **msg)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return json_object();
    unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)n);
    if (p == NULL) {
        *msg = "out of memory";
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        static char buf[256];
        snprintf(buf, sizeof buf, "Invalid JSON payload received: %.160s (at byte %d)", e.text, e.position);
        *msg = buf;
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *msg = "Invalid JSON payload received: the body must be a JSON object";
        return NULL;
    }
    return j;
}

static void peer_of(struct evhttp_request *req, char *buf, size_t size)
{
    char *host = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *con = evhttp_request_get_connection(req);
    if (con != NULL)
        evhttp_connection_get_peer(con, &host, &port);
    snprintf(buf, size, "%s:%u", host ? host : "?", (unsigned)port);
}

void lkd_http_request(struct evhttp_request *req, void *arg)
{
    struct lkd *d = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (path == NULL) {
        send_error(req, LKD_INVALID_ARGUMENT, "malformed request target");
        return;
    }
    if (strcmp(path, "/token") == 0) {
        if (m != EVHTTP_REQ_POST) {
            send_error(req, LKD_NOT_FOUND, "the token endpoint takes POST");
            return;
        }
        lkd_token_endpoint(d, req);
        return;
    }
    if (strncmp(path, "/v1/", 4) != 0) {
        send_error(req, LKD_NOT_FOUND, "no such path (the API is under /v1/)");
        return;
    }
    struct lkd_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return;
    }
    c->d = d;
    c->req = req;
    c->method = m;
    peer_of(req, c->peer, sizeof c->peer);
    c->path = strdup(path);
    if (c->path == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    if (lkd_authenticate(c) != 0)
        return;
    const char *msg = "out of memory";
    if (split_path(c, path + 4, &msg) != 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s", msg);
        return;
    }
    const char *q = evhttp_uri_get_query(uri);
    TAILQ_INIT(&c->query);
    if (q != NULL && evhttp_parse_query_str(q, &c->query) != 0) {
        evhttp_clear_headers(&c->query);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "malformed query string");
        return;
    }
    c->query_ok = 1;
    const char *alt = lkd_query(c, "$alt");
    if (alt != NULL) {
        if (strcmp(alt, "json;enum-encoding=int") == 0)
            c->enum_int = 1;
        else if (strcmp(alt, "json") != 0) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "$alt must be json or json;enum-encoding=int");
            return;
        }
    }
    if (m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PATCH || m == EVHTTP_REQ_PUT) {
        c->body = parse_body(c, &msg);
        if (c->body == NULL) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s", msg);
            return;
        }
    }
    lkd_api_dispatch(c);
}
