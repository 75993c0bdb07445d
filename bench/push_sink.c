/*
 * push_sink.c — the push endpoint of bench/push.sh: an HTTPS server (libevent
 * evhttp over OpenSSL, one thread) that answers every POST 204 at once and
 * counts what it got, so that the bench measures latchkeyd's pusher and not
 * the endpoint.
 *
 *   push_sink --cert CRT --key KEY --port-file FILE
 *
 * Listens on 127.0.0.1 on a free port (written to FILE). POST any path: 204;
 * the body's "messageId":"N" is recorded. GET /count: "REQUESTS UNIQUE
 * FIRST_NS LAST_NS\n" — the POSTs so far, the distinct message ids among them,
 * and the CLOCK_REALTIME of the first and the latest new id (ns). A test and
 * bench tool: it trusts its clients.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t requests, unique, first_ns, last_ns, distinct_data;
static uint64_t *hashes;    /* open addressing, 0 = empty */
static size_t hashes_cap;
static uint8_t *seen;       /* one byte per message id (ids are small, dense integers) */
static size_t seen_size;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void note_id(uint64_t id)
{
    if (id >= seen_size) {
        size_t n = seen_size ? seen_size : 1 << 16;
        uint8_t *p;
        while (n <= id)
            n *= 2;
        if ((p = realloc(seen, n)) == NULL)
            return;
        memset(p + seen_size, 0, n - seen_size);
        seen = p;
        seen_size = n;
    }
    if (!seen[id]) {
        seen[id] = 1;
        unique++;
        last_ns = now_ns();
        if (first_ns == 0)
            first_ns = last_ns;
    }
}

static void note_data(uint64_t h)
{
    size_t i;
    if (h == 0)
        h = 1;
    if ((distinct_data + 1) * 2 > hashes_cap) {
        size_t cap = hashes_cap ? hashes_cap * 2 : 1 << 16, j;
        uint64_t *p = calloc(cap, sizeof *p);
        if (p == NULL)
            return;
        for (j = 0; j < hashes_cap; j++)
            if (hashes[j] != 0) {
                i = hashes[j] & (cap - 1);
                while (p[i] != 0)
                    i = (i + 1) & (cap - 1);
                p[i] = hashes[j];
            }
        free(hashes);
        hashes = p;
        hashes_cap = cap;
    }
    for (i = h & (hashes_cap - 1); hashes[i] != 0; i = (i + 1) & (hashes_cap - 1))
        if (hashes[i] == h)
            return;
    hashes[i] = h;
    distinct_data++;
}

/* FNV-1a of the body's "data" string. */
static void scan_data(struct evbuffer *in)
{
    static const char tag[] = "\"data\":\"";
    struct evbuffer_ptr at = evbuffer_search(in, tag, sizeof tag - 1, NULL);
    size_t len = evbuffer_get_length(in), i;
    const unsigned char *p;
    uint64_t h = 1469598103934665603ull;
    if (at.pos < 0 || (p = evbuffer_pullup(in, -1)) == NULL)
        return;
    for (i = (size_t)at.pos + sizeof tag - 1; i < len && p[i] != '"'; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    note_data(h);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        struct evbuffer *out = evbuffer_new();
        evbuffer_add_printf(out, "%llu %llu %llu %llu %llu\n", (unsigned long long)requests,
                            (unsigned long long)unique, (unsigned long long)first_ns,
                            (unsigned long long)last_ns, (unsigned long long)distinct_data);
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
        return;
    }
    {
        static const char tag[] = "\"messageId\":\"";
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        struct evbuffer_ptr at = evbuffer_search(in, tag, sizeof tag - 1, NULL);
        requests++;
        if (at.pos >= 0) {
            char digits[24];
            ev_ssize_t n = -1;
            if (evbuffer_ptr_set(in, &at, sizeof tag - 1, EVBUFFER_PTR_ADD) == 0)
                n = evbuffer_copyout_from(in, &at, digits, sizeof digits - 1);
            digits[n > 0 ? n : 0] = '\0';
            note_id(strtoull(digits, NULL, 10));
        }
        scan_data(in);
    }
    evhttp_send_reply(req, 204, "No Content", NULL);
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new((SSL_CTX *)arg);
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *port_file = NULL;
    struct evhttp_bound_socket *bound;
    struct event_base *base;
    struct evhttp *http;
    SSL_CTX *ctx;
    FILE *f;
    int i;

    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--port-file") == 0)
            port_file = argv[i + 1];
    }
    if (cert == NULL || key == NULL || port_file == NULL) {
        fprintf(stderr, "usage: push_sink --cert CRT --key KEY --port-file FILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    base = event_base_new();
    http = evhttp_new(base);
    evhttp_set_bevcb(http, make_bev, ctx);
    evhttp_set_gencb(http, on_request, NULL);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    bound = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (bound == NULL) {
        fprintf(stderr, "push_sink: cannot listen\n");
        return 1;
    }
    {
        struct sockaddr_storage ss;
        ev_socklen_t sl = sizeof ss;
        evutil_socket_t fd = evhttp_bound_socket_get_fd(bound);
        char tmp[4200];
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
            return 1;
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        if ((f = fopen(tmp, "w")) == NULL)
            return 1;
        fprintf(f, "%u\n", (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
        fclose(f);
        rename(tmp, port_file);
    }
    event_base_dispatch(base);
    return 0;
}
