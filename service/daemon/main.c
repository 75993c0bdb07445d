/*
 * main.c — latchkeyd: options, start-up, signals (SIGHUP reloads the TLS
 * certificate, SIGTERM/SIGINT drain), the event loop.
 *
 *   latchkeyd [--config FILE] [--KEY VALUE ...]
 *
 * Every config-file key is also an option (--admin-listen or
 * --admin_listen); options override the file. Exit codes: 0 after a clean
 * drain, 1 when it cannot start (the reason on stderr), 2 for bad usage.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <event2/listener.h>

#include "daemon.h"

static void usage(FILE *f)
{
    fputs("usage: latchkeyd [--config FILE] [--KEY VALUE ...]\n"
          "  keys (also in the config file): registry, admin_listen, tls_cert, tls_key, plain_http,\n"
          "  token_uri, port_file, pid_file, max_body, max_headers, io_timeout, request_timeout,\n"
          "  command_wait_ms, drain_seconds, access_token_ttl, bench_static, verbose;\n"
          "  the device bridge: device_listen, device_port_file, device_tls_cert, device_tls_key,\n"
          "  broker, broker_ca, broker_plain,\n"
          "  bridge_name, publish_wait_ms, bridge_max_pending, skew, max_token_lifetime,\n"
          "  max_token_length, base64_padding, token_cache, device_cache,\n"
          "  jit_max_token_length, jit_per_minute, jit_burst;\n"
          "  push subscriptions: spool, push_ca, push_max_in_flight, push_oidc_key, push_oidc_issuer;\n"
          "  metrics: metrics_file, metrics_allow_unauthenticated, metrics_sample_seconds\n"
          "  docs/daemon.md has the details.\n", f);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lkd *d = arg;
    if ((d->waiting != 0 || lkd_push_busy(d)) && lkd_now_ms() < d->drain_deadline_ms) {
        d->drain_quiet = 0;
        return;
    }
    if (d->waiting != 0) {
        lkd_log("drain: %u waiting request(s) cut short after %u s", d->waiting, d->cfg.drain_seconds);
        event_base_loopbreak(d->base);
        return;
    }
    /* The last answer was only queued: the loop writes it on a later turn
     * (TLS, when the socket is writable), and this tick may come in the very
     * turn it was queued. Two more ticks (100 ms) let it leave before the
     * connections are closed. */
    if (++d->drain_quiet > 2)
        event_base_loopbreak(d->base);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct lkd *d = arg;
    if (d->draining)
        return;
    d->draining = 1;
    lkd_log("signal %d: no new connections; draining %u waiting request(s) (at most %u s)", (int)sig,
            d->waiting, d->cfg.drain_seconds);
    if (d->admin_sock != NULL) {
        evhttp_del_accept_socket(d->admin, d->admin_sock);
        d->admin_sock = NULL;
    }
    if (d->dev_sock != NULL) {
        evhttp_del_accept_socket(d->dev, d->dev_sock);
        d->dev_sock = NULL;
    }
    d->drain_deadline_ms = lkd_now_ms() + (int64_t)d->cfg.drain_seconds * 1000;
    lkd_push_drain(d);
    struct timeval tv = {0, 50 * 1000};
    d->drain_timer = event_new(d->base, -1, EV_PERSIST, on_drain_tick, d);
    if (d->drain_timer == NULL || event_add(d->drain_timer, &tv) != 0)
        event_base_loopbreak(d->base);
}

/* A pair that does not load or match keeps the old one. */
static void reload(SSL_CTX **ctx, const char *cert, const char *key)
{
    char why[512];
    SSL_CTX *fresh = lkd_tls_load(cert, key, why, sizeof why);
    if (fresh == NULL) {
        lkd_log("SIGHUP: keeping the old certificate of %s: %s", cert, why);
        return;
    }
    /* Connections already open hold their own reference to the old context. */
    SSL_CTX_free(*ctx);
    *ctx = fresh;
    lkd_log("SIGHUP: certificate reloaded from %s", cert);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct lkd *d = arg;
    if (d->ssl == NULL) {
        lkd_log("SIGHUP: plain HTTP, no certificate to reload");
        return;
    }
    reload(&d->ssl, d->cfg.tls_cert, d->cfg.tls_key);
    if (d->dev_ssl != NULL)
        reload(&d->dev_ssl, d->cfg.device_tls_cert, d->cfg.device_tls_key);
}

static int write_small_file(const char *path, const char *text)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return -1;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* An evhttp on ADDR:PORT with latchkeyd's bounds, TLS when configured:
 * 0, or -1 logged. */
static int listen_on(struct lkd *d, const char *what, const char *addr, int port, void (*cb)(struct evhttp_request *, void *),
                     SSL_CTX **ssl, struct evhttp **http, struct evhttp_bound_socket **sock, int *bound)
{
    struct lkd_config *cfg = &d->cfg;
    *http = evhttp_new(d->base);
    if (*http == NULL) {
        lkd_log("libevent could not start");
        return -1;
    }
    evhttp_set_max_body_size(*http, cfg->max_body);
    evhttp_set_max_headers_size(*http, cfg->max_headers);
    evhttp_set_timeout(*http, (int)cfg->io_timeout);
    evhttp_set_allowed_methods(*http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                          EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(*http, "application/json; charset=UTF-8");
    evhttp_set_gencb(*http, cb, d);
    if (*ssl != NULL) {
        if (lkd_http_deadlines(cfg->request_timeout) != 0) {
            lkd_log("OpenSSL could not make room for request deadlines");
            return -1;
        }
        evhttp_set_bevcb(*http, lkd_http_bev, ssl);
    }
    *sock = evhttp_bind_socket_with_handle(*http, addr, (ev_uint16_t)port);
    if (*sock == NULL) {
        lkd_log("cannot listen on %s:%d for the %s: %s", addr, port, what, strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(*sock);
    /* A reply is several TLS records (headers, body): with Nagle on, the
     * last waits for the client's delayed ACK, 40 ms a request on a
     * keep-alive connection. Accepted sockets inherit the option (Linux). */
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        lkd_log("TCP_NODELAY: %s (replies may wait for delayed ACKs)", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* A listener's ADDR:PORT setting: 0, or -1 logged. */
static int listen_addr(const char *key, const char *spec, char *addr, size_t size, int *port)
{
    if (lkd_hostport(spec, addr, size, port) == 0)
        return 0;
    lkd_log("%s \"%s\" is not ADDR:PORT", key, spec);
    return -1;
}

/* PREFIXtls_cert and PREFIXtls_key: both or neither; loaded into *ctx when
 * given. 0, or -1 logged. */
static int load_pair(const char *prefix, const char *cert, const char *key, SSL_CTX **ctx)
{
    char why[512];
    if ((cert == NULL) != (key == NULL)) {
        lkd_log("%stls_cert and %stls_key go together", prefix, prefix);
        return -1;
    }
    if (cert != NULL && (*ctx = lkd_tls_load(cert, key, why, sizeof why)) == NULL) {
        lkd_log("%sTLS: %s", *prefix ? "device " : "", why);
        return -1;
    }
    return 0;
}

/* Plain HTTP (no TLS context) only on loopback: 0, or -1 logged. */
static int plain_ok(const SSL_CTX *ctx, const char *addr)
{
    if (ctx != NULL || lkd_is_loopback(addr))
        return 0;
    lkd_log("plain_http is allowed only on a loopback address, not %s: set tls_cert and tls_key", addr);
    return -1;
}

/* The device bridge: its listener (device tokens only), the caches of
 * devices and tokens, and the connection to the broker. */
static int start_devices(struct lkd *d)
{
    struct lkd_config *cfg = &d->cfg;
    char addr[256];
    int port;
    if (listen_addr("device_listen", cfg->device_listen, addr, sizeof addr, &port) != 0 ||
        load_pair("device_", cfg->device_tls_cert, cfg->device_tls_key, &d->dev_ssl) != 0)
        return -1;
    SSL_CTX **ssl = d->dev_ssl != NULL ? &d->dev_ssl : &d->ssl;
    if (plain_ok(*ssl, addr) != 0)
        return -1;
    if (cfg->broker == NULL && (cfg->broker = strdup("127.0.0.1:8883")) == NULL)
        return -1;
    if (cfg->bridge_name == NULL && (cfg->bridge_name = strdup("latchkeyd")) == NULL)
        return -1;
    if (!lk_id_valid(cfg->bridge_name, strlen(cfg->bridge_name))) {
        lkd_log("bridge_name \"%s\" is not a valid name (a letter, then letters, digits and -._+~%%)",
                cfg->bridge_name);
        return -1;
    }
    if (lkd_devcache_new(cfg->device_cache, &d->devcache) != LK_OK ||
        (cfg->token_cache > 0 && lk_vcache_new(cfg->token_cache, &d->vcache) != LK_OK)) {
        lkd_log("out of memory");
        return -1;
    }
    if (lkd_bridge_start(d) != 0)
        return -1;
    if (listen_on(d, "device bridge", addr, port, lkd_http_device_request, ssl, &d->dev, &d->dev_sock,
                  &d->dev_port) != 0)
        return -1;
    lkd_log("device bridge on %s://%s:%d (cloudiotdevice v1; device tokens only%s)", *ssl ? "https" : "http", addr,
            d->dev_port, d->dev_ssl ? "; its own certificate" : "");
    return 0;
}

static int start(struct lkd *d)
{
    char why[512];
    struct lkd_config *cfg = &d->cfg;
    if (cfg->registry == NULL) {
        lkd_log("no registry: set `registry PATH` in the config file or --registry PATH");
        return -1;
    }
    if (cfg->admin_listen == NULL && (cfg->admin_listen = strdup("127.0.0.1:8443")) == NULL)
        return -1;
    char addr[256];
    int port;
    if (listen_addr("admin_listen", cfg->admin_listen, addr, sizeof addr, &port) != 0)
        return -1;
    if (cfg->tls_cert == NULL && cfg->tls_key == NULL && !cfg->plain_http) {
        lkd_log("no TLS certificate: set tls_cert and tls_key (or, on loopback only, plain_http on)");
        return -1;
    }
    if (load_pair("", cfg->tls_cert, cfg->tls_key, &d->ssl) != 0 || plain_ok(d->ssl, addr) != 0)
        return -1;
    /* Thousands of keep-alive connections need descriptors: take the hard
     * limit (systemd's LimitNOFILE sets it). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    lk_err err = lk_registry_open(cfg->registry, LK_REG_CREATE, &d->reg, why, sizeof why);
    if (err != LK_OK) {
        lkd_log("registry %s: %s (%s)", cfg->registry, why, lk_errname(err));
        return -1;
    }
    if (lk_verifier_new(&d->ver) != LK_OK || lkd_tokens_new(&d->tokens) != LK_OK ||
        lkd_console_new(&d->console) != 0) {
        lkd_log("out of memory");
        return -1;
    }
    if (cfg->bench_static != NULL) {
        FILE *f = fopen(cfg->bench_static, "rb");
        long n = -1;
        if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < 16 * 1024 * 1024 &&
            fseek(f, 0, SEEK_SET) == 0 && (d->static_body = malloc((size_t)n + 1)) != NULL &&
            fread(d->static_body, 1, (size_t)n, f) == (size_t)n) {
            d->static_len = (size_t)n;
        } else {
            lkd_log("bench_static %s cannot be read", cfg->bench_static);
            if (f)
                fclose(f);
            return -1;
        }
        fclose(f);
    }
    d->base = event_base_new();
    if (d->base == NULL) {
        lkd_log("libevent could not start");
        return -1;
    }
    if (listen_on(d, "admin API", addr, port, lkd_http_request, &d->ssl, &d->admin, &d->admin_sock, &d->admin_port) != 0)
        return -1;
    if (cfg->token_uri == NULL) {
        char uri[512];
        snprintf(uri, sizeof uri, "%s://%s%s%s:%d/token", d->ssl ? "https" : "http",
                 strchr(addr, ':') ? "[" : "", addr, strchr(addr, ':') ? "]" : "", d->admin_port);
        if ((cfg->token_uri = strdup(uri)) == NULL)
            return -1;
        /* The grant checks aud against token_uri: one made of a wildcard
         * address is in no key file, so every grant would be refused. */
        if (strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0)
            lkd_log("warning: token_uri defaults to %s, which no key file names: set token_uri to the URI given "
                    "to `latchkey service-accounts create --token-uri`, or POST /token refuses every assertion",
                    uri);
    }
    if (cfg->device_listen != NULL && start_devices(d) != 0)
        return -1;
    if (cfg->push_oidc_key != NULL) {
        char iss[600];
        /* By default the origin of token_uri (set by now): the URL callers
         * reach latchkeyd by, not a wildcard listen address. */
        const char *auth = strstr(cfg->token_uri, "://");
        size_t origin = auth ? strcspn(auth + 3, "/") + (size_t)(auth + 3 - cfg->token_uri) : strlen(cfg->token_uri);
        if (cfg->push_oidc_issuer == NULL)
            snprintf(iss, sizeof iss, "%.*s", (int)origin, cfg->token_uri);
        else
            snprintf(iss, sizeof iss, "%s", cfg->push_oidc_issuer);
        if (lkd_oidc_load(cfg->push_oidc_key, iss, &d->oidc, why, sizeof why) != 0) {
            lkd_log("%s", why);
            return -1;
        }
        lkd_log("push: OIDC tokens signed with key %s, issuer %s (JWKS at /oauth2/v3/certs)", lkd_oidc_kid(d->oidc),
                iss);
    }
    if (cfg->spool != NULL && lkd_push_start(d) != 0)
        return -1;
    if (lkd_metrics_start(d) != 0)
        return -1;
    d->sig_term = evsignal_new(d->base, SIGTERM, on_term, d);
    d->sig_int = evsignal_new(d->base, SIGINT, on_term, d);
    d->sig_hup = evsignal_new(d->base, SIGHUP, on_hup, d);
    if (!d->sig_term || !d->sig_int || !d->sig_hup || event_add(d->sig_term, NULL) || event_add(d->sig_int, NULL) ||
        event_add(d->sig_hup, NULL))
        return -1;
    char text[64];
    if (cfg->device_port_file != NULL && d->dev != NULL) {
        snprintf(text, sizeof text, "%d\n", d->dev_port);
        if (write_small_file(cfg->device_port_file, text) != 0) {
            lkd_log("cannot write device_port_file %s: %s", cfg->device_port_file, strerror(errno));
            return -1;
        }
    }
    if (cfg->port_file != NULL) {
        snprintf(text, sizeof text, "%d\n", d->admin_port);
        if (write_small_file(cfg->port_file, text) != 0) {
            lkd_log("cannot write port_file %s: %s", cfg->port_file, strerror(errno));
            return -1;
        }
    }
    if (cfg->pid_file != NULL) {
        snprintf(text, sizeof text, "%ld\n", (long)getpid());
        if (write_small_file(cfg->pid_file, text) != 0) {
            lkd_log("cannot write pid_file %s: %s", cfg->pid_file, strerror(errno));
            return -1;
        }
    }
    lkd_log("admin API on %s://%s:%d (registry %s, token_uri %s)", d->ssl ? "https" : "http", addr,
            d->admin_port, cfg->registry, cfg->token_uri);
    return 0;
}

static void stop(struct lkd *d)
{
    lkd_metrics_stop(d);
    lkd_push_stop(d);
    lkd_oidc_free(d->oidc);
    lkd_bridge_stop(d);
    if (d->admin != NULL)
        evhttp_free(d->admin);
    if (d->dev != NULL)
        evhttp_free(d->dev);
    if (d->drain_timer)
        event_free(d->drain_timer);
    if (d->sig_term)
        event_free(d->sig_term);
    if (d->sig_int)
        event_free(d->sig_int);
    if (d->sig_hup)
        event_free(d->sig_hup);
    if (d->base)
        event_base_free(d->base);
    if (d->ssl)
        SSL_CTX_free(d->ssl);
    if (d->dev_ssl)
        SSL_CTX_free(d->dev_ssl);
    lkd_tokens_free(d->tokens);
    lkd_console_free(d->console);
    lk_verifier_free(d->ver);
    lkd_devcache_free(d->devcache);
    lk_vcache_free(d->vcache);
    lk_registry_close(d->reg);
    if (d->cfg.pid_file)
        unlink(d->cfg.pid_file);
    free(d->static_body);
    lkd_config_free(&d->cfg);
}

int main(int argc, char **argv)
{
    static struct lkd d;
    char why[512];
    lkd_config_defaults(&d.cfg);
    signal(SIGPIPE, SIG_IGN);
    /* libcurl allocates and frees large buffers per POST: with glibc's default trim threshold the push
     * thread's heap is given back and faulted in again about once a push (perf showed it as a third of
     * latchkeyd's time per push; docs/benchmarks.md). */
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    /* The config file first, so that options override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "latchkeyd: --config needs a file\n");
                return 2;
            }
            if (lkd_config_file(&d.cfg, argv[i + 1], why, sizeof why) != 0) {
                fprintf(stderr, "latchkeyd: %s\n", why);
                return 1;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            printf("latchkeyd %s\n", LK_VERSION);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "latchkeyd: unexpected argument \"%.64s\"\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        char key[64];
        snprintf(key, sizeof key, "%s", a + 2);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        if (lkd_config_set(&d.cfg, key, argv[++i], why, sizeof why) != 0) {
            fprintf(stderr, "latchkeyd: --%s: %s\n", a + 2, why);
            return 2;
        }
    }
    int rc = 1;
    if (start(&d) == 0) {
        event_base_dispatch(d.base);
        rc = 0;
        lkd_log("stopped");
    }
    stop(&d);
    return rc;
}
