/*
 * http.c — from an HTTP request to an API call: TLS bufferevents, the path
 * (percent-decoded per segment; empty, "." and ".." segments, encoded '/'
 * and NUL refused), the query, the JSON body (strict: duplicate names
 * refused, an object, within max_body), authentication, then dispatch.
 * Every answer goes through lkd_reply_json or lkd_reply_error.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>


#include "console.h"
#include "daemon.h"

/* Slowloris: libevent's io_timeout restarts at every byte read, so a client
 * that trickles a byte a second held its connection (a descriptor, buffers)
 * for ever. Each TLS connection has a deadline besides: its handshake and
 * first request, and each next request once an answer has gone, must arrive
 * whole within request_timeout seconds, or its socket is shut down and
 * libevent closes the connection as if the client had (a request waiting
 * for the broker then ends as when its caller goes away). While a request is
 * being answered there is no deadline: the handlers bound their own waits.
 * The deadline lives in its SSL's ex_data and is freed with the SSL. Plain
 * HTTP (loopback only) has none. */
struct deadline {
    struct event *ev;
    SSL *ssl;
};
static int deadline_index = -1;
static struct timeval deadline_tv;

static void deadline_fire(evutil_socket_t unused, short what, void *arg)
{
    struct deadline *dl = arg;
    int fd = SSL_get_fd(dl->ssl);
    (void)unused;
    (void)what;
    if (fd < 0)
        return;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        inet_ntop(ss.ss_family, ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                                         : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
                  host, sizeof host);
    lkd_log("%s: no whole request within %ld s (request_timeout); connection closed", host,
            (long)deadline_tv.tv_sec);
    shutdown(fd, SHUT_RDWR);
}

static void deadline_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct deadline *dl = ptr;
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (dl != NULL) {
        event_free(dl->ev);
        free(dl);
    }
}

int lkd_http_deadlines(unsigned seconds)
{
    deadline_tv.tv_sec = (time_t)seconds;
    deadline_tv.tv_usec = 0;
    if (deadline_index < 0)
        deadline_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, deadline_free);
    return deadline_index < 0 ? -1 : 0;
}

static struct deadline *deadline_of(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    return ssl != NULL && deadline_index >= 0 ? SSL_get_ex_data(ssl, deadline_index) : NULL;
}

static void deadline_stop(struct evhttp_request *req)
{
    struct deadline *dl = deadline_of(req);
    if (dl != NULL)
        evtimer_del(dl->ev);
}

static void deadline_start(struct evhttp_request *req)
{
    struct deadline *dl = deadline_of(req);
    if (dl != NULL)
        evtimer_add(dl->ev, &deadline_tv);
}

/* The answer has gone: counted, and the connection's deadline runs again
 * for its next request. The start rides in the argument itself, so that
 * nothing is allocated (a request whose connection dies is never completed). */
static void answered(struct evhttp_request *req, void *arg)
{
    lkd_metrics_answered(req, (uint64_t)(uintptr_t)arg);
    deadline_start(req);
}

struct bufferevent *lkd_http_bev(struct event_base *base, void *arg)
{
    SSL_CTX *const *ctx = arg;
    SSL *ssl = SSL_new(*ctx);
    if (ssl == NULL)
        return NULL;
    struct deadline *dl = calloc(1, sizeof *dl);
    if (dl != NULL)
        dl->ev = evtimer_new(base, deadline_fire, dl);
    if (dl == NULL || dl->ev == NULL || deadline_index < 0 || SSL_set_ex_data(ssl, deadline_index, dl) != 1) {
        if (dl != NULL && dl->ev != NULL)
            event_free(dl->ev);
        free(dl);
        SSL_free(ssl);
        return NULL;
    }
    /* from here the SSL owns dl */
    dl->ssl = ssl;
    if (evtimer_add(dl->ev, &deadline_tv) != 0) {
        SSL_free(ssl);
        return NULL;
    }
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* More than one Content-Length makes the framing ambiguous (evhttp reads
 * the first): a proxy in front that reads another would see a different
 * request (request smuggling). RFC 9112 §6.3: answer 400 and close. */
static int ambiguous_length(struct evhttp_request *req)
{
    const struct evkeyval *kv;
    int n = 0;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
        if (evutil_ascii_strcasecmp(kv->key, "Content-Length") == 0)
            n++;
    }
    return n > 1;
}

/* Both listeners: framing, path, query, body; then who calls (a service
 * account on the admin listener, a device on the device listener, which
 * needs the path first) and the dispatch. */
static void serve(struct lkd *d, struct evhttp_request *req, int device)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    evhttp_request_set_on_complete_cb(req, answered, (void *)(uintptr_t)lkd_metrics_clock());
    deadline_stop(req);
    if (ambiguous_length(req)) {
        char peer[64];
        lkd_peer(req, peer, sizeof peer, 1);
        lkd_log("%s: refused a request with more than one Content-Length; connection closed", peer);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        lkd_send_error(req, LKD_INVALID_ARGUMENT, "Content-Length is given more than once");
        return;
    }
    if (path == NULL) {
        lkd_send_error(req, LKD_INVALID_ARGUMENT, "malformed request target");
        return;
    }
    if (!device && strcmp(path, "/token") == 0) {
        if (m != EVHTTP_REQ_POST) {
            lkd_send_error(req, LKD_NOT_FOUND, "the token endpoint takes POST");
            return;
        }
        lkd_token_endpoint(d, req);
        return;
    }
    if (!device && lkd_oidc_serve(d->oidc, req, path))
        return;
    if (!device && strcmp(path, "/metrics") == 0) {
        lkd_metrics_serve(d, req);
        return;
    }
    if (!device && strncmp(path, "/console/api/", 13) == 0 && lkd_console_auth_route(d, req, path))
        return;
    if (!device && strncmp(path, "/console/api/", 13) == 0 && lkd_metrics_console(d, req, path))
        return;
    if (!device && lkd_console_serve(req, path))
        return;
    /* The console's data (console_api.c): the API's framing and auth. */
    int console = !device && strncmp(path, "/console/api/projects/", 22) == 0;
    if (strncmp(path, "/v1/", 4) != 0 && !console) {
        lkd_send_error(req, LKD_NOT_FOUND, "no such path (the API is under /v1/)");
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
    lkd_peer(req, c->peer, sizeof c->peer, 1);
    c->path = strdup(path);
    if (c->path == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    if (!device && lkd_authenticate(c) != 0)
        return;
    const char *msg = "out of memory";
    if (lkd_split_path(c, path + (console ? 13 : 4), &msg) != 0) {
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
    /* A device's body is read once its token has proven who calls
     * (lkd_device_dispatch): nothing a stranger sends is parsed. */
    if (device) {
        lkd_device_dispatch(c);
        return;
    }
    /* .../registries/R/devices:importManifest's body is a manifest (JSON
     * lines), read there; on any other path the verb is refused after a
     * JSON body was read as always. */
    int raw = c->verb != NULL && strcmp(c->verb, "importManifest") == 0 && c->nseg == 7 &&
              strcmp(c->seg[6], "devices") == 0 && strcmp(c->seg[4], "registries") == 0;
    if ((m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PATCH || m == EVHTTP_REQ_PUT) && !raw && lkd_read_body(c) != 0)
        return;
    /* the changes the call makes are recorded with who made them; c may be
     * gone when dispatch returns */
    lkd_audit_begin(c);
    if (console)
        lkd_console_dispatch(c);
    else
        lkd_api_dispatch(c);
    lkd_audit_end(d);
}

void lkd_http_request(struct evhttp_request *req, void *arg)
{
    serve(arg, req, 0);
}

void lkd_http_device_request(struct evhttp_request *req, void *arg)
{
    serve(arg, req, 1);
}
