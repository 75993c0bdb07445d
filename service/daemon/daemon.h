/*
 * daemon.h — latchkeyd's insides (docs/daemon.md). Not a library: latchkeyd
 * is a program, so it logs (to stderr, for journald) and exits; the
 * libraries it builds on (registry, verifier) do neither.
 *
 * Shape: one thread, one libevent loop. evhttp parses HTTP/1.1 (keep-alive,
 * bounded headers and bodies, read/write timeouts for slow clients) over
 * OpenSSL bufferevents; every request is answered from the loop, and a
 * request that must wait (sendCommandToDevice) keeps its evhttp_request and
 * is answered from a timer, so it holds no thread and no other request
 * waits for it. The registry is SQLite on this thread: a call takes
 * microseconds to a few milliseconds.
 *
 * Listeners: the admin API (cloudiot v1, service-account credentials only)
 * listens apart from anything device-facing; a device token is never
 * accepted on it (its kid names no service-account key).
 */
#ifndef LKD_DAEMON_H
#define LKD_DAEMON_H

#include <stdint.h>
#include <stddef.h>
#include <jansson.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>

#include "latchkey/lk_registry.h"
#include "latchkey/lk_spool.h"
#include "latchkey/lk_verify.h"

/* ---- configuration (config.c) ---- */

struct lkd_config {
    char *registry;          /* registry URL ("sqlite:PATH" or a path) */
    char *admin_listen;      /* "ADDR:PORT"; port 0 picks one (see port_file) */
    char *tls_cert, *tls_key;/* PEM files; both or none */
    int plain_http;          /* "tls off": only on a loopback address */
    char *token_uri;         /* the token endpoint written into key files */
    char *port_file;         /* write the bound admin port here (tests, scripts) */
    char *pid_file;
    unsigned max_body;       /* bytes of a request body */
    unsigned max_headers;    /* bytes of a request's headers */
    unsigned io_timeout;     /* seconds a connection may stall (slow clients) */
    unsigned request_timeout;/* seconds for a whole request to arrive (slowloris) */
    unsigned command_wait_ms;/* how long sendCommandToDevice waits for the broker */
    unsigned drain_seconds;  /* SIGTERM: how long waiting requests may finish */
    unsigned access_token_ttl;/* seconds */
    char *bench_static;      /* make bench: a file served at /v1/bench:static to authenticated
                                callers, the baseline of api_get_device_vs_static */
    int verbose;
    /* the device bridge (cloudiotdevice v1), off while device_listen is unset */
    char *device_listen;     /* "ADDR:PORT"; its own listener: device tokens only */
    char *device_port_file;  /* write the bound device port here */
    char *device_tls_cert, *device_tls_key; /* the device listener's own pair (the host name
                                devices use); default: tls_cert, tls_key */
    char *broker;            /* "HOST:PORT" of the broker the bridge publishes through */
    char *broker_ca;         /* CA file of the broker's certificate */
    int broker_plain;        /* no TLS to the broker: loopback only */
    char *bridge_name;       /* the bridge's identity: latchkeyd:NAME */
    unsigned publish_wait_ms;/* how long a device's publish waits for the broker's PUBACK */
    unsigned bridge_max_pending; /* publishes waiting at once; more are answered 503 */
    /* device tokens: the broker plugin's plugin_opt_* of the same names, same defaults */
    unsigned skew, max_token_lifetime, max_token_length, token_cache, device_cache;
    int base64_padding;
    /* just-in-time registration (docs/provisioning.md): the same keys as the plugin's */
    unsigned jit_max_token_length, jit_per_minute, jit_burst;
    /* push subscriptions (push.c): off while spool is unset */
    char *spool;             /* the spool file the broker plugin fills (plugin_opt_spool) */
    char *push_ca;           /* CA file for push endpoints; default: the system's store */
    unsigned push_max_in_flight; /* POSTs at once per subscription */
    char *push_oidc_key;     /* PEM RSA private key that signs OIDC push tokens */
    char *push_oidc_issuer;  /* their iss; default https://<admin_listen> */
    /* metrics (metrics.c, docs/metrics.md) */
    char *metrics_file;      /* the broker plugin's plugin_opt_metrics_file, or NULL */
    int metrics_unauthenticated; /* /metrics without credentials: 0 off, 1 loopback peers, 2 anyone */
    unsigned metrics_sample_seconds; /* the series' step (60) */
};
void lkd_config_defaults(struct lkd_config *c);
/* Read "key value" lines (# comments); 0, or -1 with why. */
int lkd_config_file(struct lkd_config *c, const char *path, char *why, size_t why_size);
/* Set one key; 0, or -1 with why (unknown key, bad value). */
int lkd_config_set(struct lkd_config *c, const char *key, const char *value, char *why, size_t why_size);
void lkd_config_free(struct lkd_config *c);

/* ---- the daemon ---- */

struct lkd_tokens; /* access tokens issued at the token endpoint (auth.c) */
struct lkd_bridge; /* the connection to the broker (bridge.c) */
struct lkd_devcache; /* devices' parsed credentials (device_auth.c) */
struct lkd_push;     /* the push worker (push.c) */
struct lkd_oidc;     /* the key that signs push tokens (oidc.c) */
struct lkd_metrics;  /* the plugin's metrics file and the series (metrics.c) */

struct lkd {
    struct lkd_config cfg;
    struct event_base *base;
    struct evhttp *admin;
    struct evhttp_bound_socket *admin_sock;
    int admin_port;
    SSL_CTX *ssl;            /* the current TLS context: SIGHUP swaps it */
    SSL_CTX *dev_ssl;        /* the device listener's, when it has its own pair */
    lk_registry *reg;
    lk_verifier *ver;
    struct lkd_tokens *tokens;
    unsigned waiting;        /* requests suspended (commands) */
    int draining;
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
    int64_t drain_deadline_ms;
    unsigned drain_quiet;    /* drain ticks since nothing waits (answers still leaving) */
    uint64_t reg_gen;        /* bumped when the registry changed (lk_registry_poll), so that
                                waiting commands read their outcome only after a change */
    int64_t reg_polled_ms;   /* when reg_gen was last brought up to date */
    char *static_body;       /* bench_static's content */
    size_t static_len;
    /* the device bridge */
    struct evhttp *dev;
    struct evhttp_bound_socket *dev_sock;
    int dev_port;
    struct lkd_bridge *bridge;
    struct lkd_devcache *devcache;
    lk_vcache *vcache;
    /* push subscriptions */
    struct lkd_push *push;
    lk_spool *spool;         /* the loop's own handle: :stats and /metrics */
    struct lkd_oidc *oidc;
    struct lkd_console *console; /* operators' sessions and sign-in limits (console_auth.c) */
    struct lkd_metrics *metrics;
};

int lkd_is_loopback(const char *addr);
/* The request's peer address into buf ("HOST", or "HOST:PORT" with
 * with_port; "?" when unknown): buf (log.c). */
const char *lkd_peer(struct evhttp_request *req, char *buf, size_t size, int with_port);
/* "HOST:PORT" or "[V6]:PORT", port 0..65535 (config.c): 0, or -1. */
int lkd_hostport(const char *s, char *host, size_t host_size, int *port);
/* The registry's generation: bumped when another connection wrote to it
 * (lk_registry_poll, at most once a millisecond); a failed poll counts as a
 * change. What is cached from the registry is good while it stays. */
uint64_t lkd_registry_gen(struct lkd *d);

int64_t lkd_now(void);       /* seconds since 1970 */
int64_t lkd_now_ms(void);    /* monotonic milliseconds */

extern int lkd_log_quiet; /* the fuzz targets silence the log */
void lkd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void lkd_debug(const struct lkd *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The log (log.c, docs/daemon.md "Logs"): lkd_log and lkd_debug write
 * event=notice lines with the text in msg; the lines below carry fields. */
struct kvlog;
struct lkd_call;
/* A finished service/common/kvlog.h line, to stderr. */
void lkd_log_kv(struct kvlog *l);
/* A device's call on the device bridge (who.email is its path): event,
 * level ("info", "debug"), device=, addr= and msg. */
void lkd_log_device(const struct lkd_call *c, const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A change made through the API: event=change who= action= key=value and
 * msg (fmt may be NULL). */
void lkd_log_change(const struct lkd_call *c, const char *action, const char *key, const char *value,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A device's or registry's full path, for the log, into buf. */
const char *lkd_device_path(const lk_reg_name *n, const char *id, char *buf, size_t size);
const char *lkd_registry_path(const lk_reg_name *n, char *buf, size_t size);

/* evhttp's callbacks (http.c): a TLS bufferevent per connection (arg: the
 * SSL_CTX ** of its listener, so that SIGHUP's swap applies to new
 * connections), and the entry of every request. */
struct bufferevent *lkd_http_bev(struct event_base *base, void *arg);
/* Per-connection request deadlines (http.c): set up once with
 * request_timeout (0, or -1); a request stops its connection's deadline,
 * its answer, once sent, starts it again for the next (http.c's completion
 * callback, the one libevent allows a request, which also counts it). */
int lkd_http_deadlines(unsigned seconds);
void lkd_http_request(struct evhttp_request *req, void *arg);

/* TLS (tls.c): load cert and key into a new context; NULL with why. */
SSL_CTX *lkd_tls_load(const char *cert, const char *key, char *why, size_t why_size);

/* ---- the bridge to the broker (bridge.c) ---- */

enum lkd_pub_outcome {
    LKD_PUB_OK,              /* the broker has it (PUBACK < 0x80) */
    LKD_PUB_REFUSED,         /* PUBACK 0x87: the plugin refused it (the device's rates) */
    LKD_PUB_FAILED,          /* another PUBACK error */
    LKD_PUB_TIMEOUT          /* no PUBACK within publish_wait_ms, or latchkeyd stops */
};
typedef void (*lkd_pub_done)(void *arg, enum lkd_pub_outcome o, int reason);
int lkd_bridge_start(struct lkd *d);
void lkd_bridge_stop(struct lkd *d);
int lkd_bridge_connected(const struct lkd *d);
/* Publish QoS 1; done runs once, later, on the loop. 0, or -1 (not
 * connected, too many waiting, no memory) with nothing published.
 * gateway (NULL = none): the id of the gateway the message came through
 * (gatewayInfo), sent as the MQTT 5 user property "gatewayId", which the
 * plugin copies into the downstream attributes of latchkeyd's messages. */
int lkd_bridge_publish(struct lkd *d, const char *topic, const void *payload, size_t len, const char *gateway,
                       lkd_pub_done done, void *arg);

/* ---- push subscriptions (push.c, push_req.c, oidc.c) ---- */

/* Open the spool (twice: the worker's handle and d->spool) and start the
 * worker thread: 0, or -1 logged. */
int lkd_push_start(struct lkd *d);
/* SIGTERM: take no new deliveries; POSTs in flight may finish until
 * drain_seconds have passed (the rest stay queued). */
void lkd_push_drain(struct lkd *d);
/* Whether POSTs are still in flight. */
int lkd_push_busy(const struct lkd *d);
/* Join the worker (cutting in-flight POSTs short) and free everything. */
void lkd_push_stop(struct lkd *d);
/* The push figures in Prometheus' text format appended to b: 0, or -1. */
int lkd_push_metrics(struct lkd *d, struct evbuffer *b);
/* Pub/Sub's push body for dl (malloc'd JSON, *len bytes), or NULL. */
char *lkd_push_body(const lk_spool_delivery *dl, const char *sub, int with_attempt, size_t *len);
/* https://, or http:// to a loopback host: 0, or -1 with why. */
int lkd_push_endpoint_ok(const char *url, char *why, size_t why_size);
/* The delay before the next attempt after attempts failed ones:
 * min(max, min * 2^attempts), plus up to 10 % jitter. */
int64_t lkd_push_backoff(int64_t min_ms, int64_t max_ms, uint32_t attempts);

int lkd_oidc_load(const char *key_path, const char *issuer, struct lkd_oidc **out, char *why, size_t why_size);
void lkd_oidc_free(struct lkd_oidc *o);
const char *lkd_oidc_kid(const struct lkd_oidc *o);
/* An RS256 JWT for (aud, email) issued at iat (*exp = iat + 3600):
 * malloc'd, or NULL. Safe from any thread (the key is only read). */
char *lkd_oidc_sign(const struct lkd_oidc *o, const char *aud, const char *email, int64_t iat, int64_t *exp);
/* GET /oauth2/v3/certs and /.well-known/openid-configuration: 1 when path
 * is one of them (answered), else 0. */
int lkd_oidc_serve(const struct lkd_oidc *o, struct evhttp_request *req, const char *path);

/* ---- metrics (metrics.c, series.c; docs/metrics.md) ---- */

/* Maps metrics_file (when set; a missing or bad file is logged and read
 * again later) and starts the series' sampling: 0, or -1. */
int lkd_metrics_start(struct lkd *d);
void lkd_metrics_stop(struct lkd *d);
/* The clock a request's time is counted from (µs, monotonic, never 0), and
 * the count of req's answer (status, time since start) once it is sent:
 * http.c's completion callback calls it. */
uint64_t lkd_metrics_clock(void);
void lkd_metrics_answered(struct evhttp_request *req, uint64_t start);
/* GET /metrics: answered. */
void lkd_metrics_serve(struct lkd *d, struct evhttp_request *req);
/* /console/api/projects/P/series and .../devices/D/refusals: 1 when path
 * is one of them (answered), else 0. */
int lkd_metrics_console(struct lkd *d, struct evhttp_request *req, const char *path);

/* The per-minute series: LKD_SERIES_LEN samples (24 h of minutes). */
#define LKD_SERIES_LEN 1440u
struct lkd_series;
struct lk_mshm;
int lkd_series_new(unsigned step, int64_t now, struct lkd_series **out);
void lkd_series_free(struct lkd_series *s);
/* One sample of the counters in m (NULL: the file cannot be read; a
 * column of zeros). */
void lkd_series_sample(struct lkd_series *s, const struct lk_mshm *m, int64_t now);
/* {"step","end","connects","events","states","refusals":{REASON:[...]}}
 * summed over project's registries, the last `minutes` samples oldest
 * first; NULL out of memory. */
json_t *lkd_series_json(const struct lkd_series *s, const char *project, unsigned minutes);

/* ---- one API call (http.c) ---- */

typedef enum lkd_role {
    LKD_ROLE_NONE = 0, LKD_ROLE_VIEWER = 1, LKD_ROLE_DEVICE_CONTROLLER = 2,
    LKD_ROLE_PROVISIONER = 3, LKD_ROLE_EDITOR = 4, LKD_ROLE_ADMIN = 5
} lkd_role;

struct lkd_principal {
    char email[320];
    char project[64];
    char key_id[48];
    lkd_role role;
    int how;                 /* 1 self-signed JWT, 2 access token, LKD_HOW_SESSION console cookie
                                (email "operator:NAME") */
};

#define LKD_HOW_SESSION 3
#define LKD_SEG_MAX 12
struct lkd_call {
    struct lkd *d;
    struct evhttp_request *req;
    enum evhttp_cmd_type method;
    char *path;              /* decoded, for logs */
    char *seg[LKD_SEG_MAX];  /* the path's segments after /v1, percent-decoded */
    unsigned nseg;
    char *verb;              /* the ":verb" of the last segment, or NULL */
    struct evkeyvalq query;
    int query_ok;
    int enum_int;            /* $alt=json;enum-encoding=int */
    json_t *body;            /* the request's JSON object (POST, PATCH), else NULL */
    struct lkd_principal who;
    char peer[64];
};

/* Canonical codes (google.rpc.Code) and the HTTP status Google pairs them with. */
typedef enum lkd_code {
    LKD_OK = 0, LKD_CANCELLED = 1, LKD_UNKNOWN = 2, LKD_INVALID_ARGUMENT = 3, LKD_DEADLINE_EXCEEDED = 4,
    LKD_NOT_FOUND = 5, LKD_ALREADY_EXISTS = 6, LKD_PERMISSION_DENIED = 7, LKD_RESOURCE_EXHAUSTED = 8,
    LKD_FAILED_PRECONDITION = 9, LKD_ABORTED = 10, LKD_OUT_OF_RANGE = 11, LKD_UNIMPLEMENTED = 12,
    LKD_INTERNAL = 13, LKD_UNAVAILABLE = 14, LKD_DATA_LOSS = 15, LKD_UNAUTHENTICATED = 16
} lkd_code;

/* A JSON answer (j is not taken) or Google's error object to a bare
 * request, outside any call (reply.c). */
void lkd_send_json(struct evhttp_request *req, int status, json_t *j);
void lkd_send_error(struct evhttp_request *req, lkd_code code, const char *msg);
/* A JSON answer that carries a secret: text (malloc'd, len bytes) is taken,
 * sent without a copy, then wiped and freed. */
void lkd_send_secret(struct evhttp_request *req, int status, char *text, size_t len);
/* Answer with JSON (takes the reference) and end the call. */
void lkd_reply_json(struct lkd_call *c, int status, json_t *j);
/* Answer Google's error object {"error": {code, message, status}} and end
 * the call; the message goes to the client and, with the caller and path,
 * to the log. Never put a token or key in it. */
void lkd_reply_error(struct lkd_call *c, lkd_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A registry refusal under the code given, with its lk_err's name as the
 * ErrorInfo reason (what lets the tool restore its exit code). */
void lkd_reply_reason(struct lkd_call *c, lkd_code code, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The registry's refusal as an API error (NOT_FOUND, ALREADY_EXISTS, ...). */
void lkd_reply_lk(struct lkd_call *c, lk_err err, const char *why);
/* As lkd_reply_lk, with detail (taken; may be NULL) appended to the error's
 * details after the ErrorInfo (devices:importManifest's report). */
void lkd_reply_lk_detail(struct lkd_call *c, lk_err err, const char *why, json_t *detail);
/* POST .../devices:importManifest (api_manifest.c). */
void lkd_api_import_manifest(struct lkd_call *c, const lk_reg_name *n);
/* .../registries/R/manifestSigners[/INDEX] (crls 0) or .../crls[/INDEX] (crls 1): list, add, delete
 * (api_manifest.c). */
void lkd_api_trust(struct lkd_call *c, const lk_reg_name *n, int crls);
/* Free what the call holds; the caller has replied (or the connection went). */
void lkd_call_free(struct lkd_call *c);
/* A query parameter's value (the last of its name), or NULL. */
const char *lkd_query(const struct lkd_call *c, const char *name);

/* ---- authentication (auth.c) ---- */

lk_err lkd_tokens_new(struct lkd_tokens **out);
void lkd_tokens_free(struct lkd_tokens *t);
/* Authenticate the call's Authorization header into c->who: 0, or -1 after
 * replying UNAUTHENTICATED (the reason logged, never the token). */
int lkd_authenticate(struct lkd_call *c);
/* The Authorization header's value, taken out of the request: a malloc'd
 * copy (*len bytes) and the header wiped in place, so that a credential is
 * never left in memory evhttp frees. NULL when there is none, or when it is
 * longer than max + 16 (wiped all the same). Release with
 * lkd_wipe_authorization. */
char *lkd_take_authorization(struct lkd_call *c, size_t max, size_t *len);
void lkd_wipe_authorization(char *h, size_t len);
/* POST /token: the RFC 7523 JWT-bearer grant. Replies itself. */
void lkd_token_endpoint(struct lkd *d, struct evhttp_request *req);
/* 0 when the caller's role in project reaches need, else -1 after replying
 * PERMISSION_DENIED. */
int lkd_require(struct lkd_call *c, const char *project, lkd_role need);
const char *lkd_role_name(lkd_role r);

/* ---- people (console_auth.c, docs/console.md "Sign-in and accounts") ---- */

struct lkd_console;
int lkd_console_new(struct lkd_console **out);   /* 0, or -1 (no memory) */
void lkd_console_free(struct lkd_console *k);
/* POST /console/api/signin, GET /console/api/session, POST
 * /console/api/signout: 1 when path is one of them (answered), else 0. */
int lkd_console_auth_route(struct lkd *d, struct evhttp_request *req, const char *path);
/* The lk_session cookie as the call's principal (lkd_authenticate, without
 * an Authorization header): 1 with c->who set, 0 when there is no cookie,
 * -1 after replying (UNAUTHENTICATED: unknown or ended session;
 * PERMISSION_DENIED: a change without the session's X-CSRF-Token). */
int lkd_session_authenticate(struct lkd_call *c);
/* Who the registry records for the changes the call makes (the audit
 * record): set before the handler runs, cleared by lkd_audit_end once it
 * returned (the one loop thread owns d->reg). */
void lkd_audit_begin(struct lkd_call *c);
void lkd_audit_end(struct lkd *d);
/* GET /v1/projects/P/auditRecords (api_audit.c): admin of P. */
void lkd_api_audit(struct lkd_call *c);

/* ---- proto3 JSON (pjson.c) ---- */

/* The request's body into c->body: one JSON object (duplicate names
 * refused; empty = {}), within max_body. 0, or -1 after replying. */
int lkd_read_body(struct lkd_call *c);

/* The member named camel (or its snake_case spelling snake), or NULL. Both
 * present is INVALID_ARGUMENT (replied; *bad = 1). */
json_t *lkd_field(struct lkd_call *c, json_t *obj, const char *camel, const char *snake, int *bad);
/* The member camel (either spelling) as an array of at most max elements:
 * 0 with *out (NULL when absent), or -1 after replying. */
int lkd_array_field(struct lkd_call *c, json_t *obj, const char *camel, size_t max, json_t **out);
/* Every member of obj is one of names (camelCase, snake_case accepted), or
 * reply INVALID_ARGUMENT naming the unknown one and return -1. */
int lkd_known_fields(struct lkd_call *c, json_t *obj, const char *what, const char *const *camel_names);
/* int64 as a JSON string or number: 0, or -1 after replying. */
int lkd_int64(struct lkd_call *c, json_t *v, const char *what, int64_t min, int64_t max, int64_t *out);
/* bytes: standard or URL-safe base64, padding optional; malloc'd (+NUL). */
int lkd_bytes(struct lkd_call *c, json_t *v, const char *what, size_t max, uint8_t **out, size_t *len);
/* An integer query parameter in [min, max] (def when absent): 0, or -1
 * after replying. */
int lkd_query_int(struct lkd_call *c, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out);
/* A message's payload: binaryData (either spelling, standard or URL-safe
 * base64, at most max bytes decoded), and with sub_name the subfolder
 * field of that name (absent or "" = none, else lk_subfolder_valid;
 * *subfolder points into obj). 0 with *bytes malloc'd, or -1 after
 * replying. */
int lkd_payload(struct lkd_call *c, json_t *obj, const char *sub_name, size_t max, uint8_t **bytes, size_t *len,
                const char **subfolder);
/* RFC 3339 timestamp: 0, or -1 after replying. */
int lkd_timestamp(struct lkd_call *c, json_t *v, const char *what, int64_t *out);
/* An enum by name or by number: its number, or -1 after replying. names[i]
 * is the name of value values[i]. */
int lkd_enum(struct lkd_call *c, json_t *v, const char *what, const char *const *names, const int *values,
             size_t n);
/* The enum member camel (either spelling) of obj: 1 with *out set, 0 when
 * absent, -1 after replying. */
int lkd_enum_field(struct lkd_call *c, json_t *obj, const char *camel, const char *const *names,
                   const int *values, size_t n, int *out);
json_t *lkd_jenum(const struct lkd_call *c, const char *const *names, const int *values, size_t n, int v);
json_t *lkd_jtime(int64_t t);
json_t *lkd_ji64(int64_t v);
json_t *lkd_ju64(uint64_t v);
json_t *lkd_jbytes(const uint8_t *p, size_t n);
/* A mask parameter (updateMask, fieldMask): comma-separated field paths,
 * each turned to camelCase into out[]; returns the count, or -1 after
 * replying. */
int lkd_mask(struct lkd_call *c, const char *param, char out[][48], unsigned max);
/* Whether the field path names field or a part of it ("config",
 * "config.version"; not "configX"). */
int lkd_path_is(const char *path, const char *field);

/* ---- the API (api*.c) ---- */

void lkd_api_dispatch(struct lkd_call *c);
void lkd_api_registries(struct lkd_call *c, const lk_reg_name *n, int has_registry);
void lkd_api_devices(struct lkd_call *c, const lk_reg_name *n, const char *device, const char *sub);
void lkd_api_iam(struct lkd_call *c, const lk_reg_name *n);
void lkd_api_service_accounts(struct lkd_call *c);
void lkd_api_subscriptions(struct lkd_call *c);
/* GET /console/api/projects/P/... (console_api.c): the console's fleet data. */
void lkd_console_dispatch(struct lkd_call *c);

/* Split the path after "/v1/" (or "/console/api/") into c->seg, each
 * percent-decoded, and the last one's ":verb" into c->verb (path.c). 0, or
 * -1 with *msg (the caller replies INVALID_ARGUMENT; segments taken so far
 * are c's and freed with it). */
int lkd_split_path(struct lkd_call *c, const char *raw, const char **msg);
/* A registry name from projects/P/locations/L/registries/R segments; the
 * ids are checked (INVALID_ARGUMENT replied, -1). */
int lkd_name(struct lkd_call *c, lk_reg_name *n, unsigned nseg_used);
/* (device_body.c) Whether a path's device segment is a numId (1 to 20 digits; a device id
 * starts with a letter): 1 with its value (0 or saturated when no device
 * can have it), else 0. */
int lkd_num_id(const char *seg, uint64_t *out);

/* Resources as JSON (resources.c). */
json_t *lkd_registry_json(const struct lkd_call *c, const lk_reg_registry *r, lk_registry *reg);
/* Adds latchkeyJitConfig to a registry's JSON j when it is not the default
 * (a read of its own: not from a list callback). */
void lkd_registry_jit_json(json_t *j, lk_registry *reg, const char *project, const char *location, const char *id);
json_t *lkd_device_json(const struct lkd_call *c, const lk_reg_device *d, const lk_reg_config *cfg,
                        const lk_reg_state_entry *st, char mask[][48], int nmask);
json_t *lkd_config_json(const lk_reg_config *cfg);
json_t *lkd_state_json(const lk_reg_state_entry *s);
json_t *lkd_credential_json(const struct lkd_call *c, const lk_reg_credential *cr);

/* Enum tables (resources.c). */
extern const char *const lkd_cred_format_names[];
extern const int lkd_cred_format_values[];
#define LKD_CRED_FORMATS 5
extern const char *const lkd_log_level_names[];
extern const int lkd_log_level_values[];
#define LKD_LOG_LEVELS 5
extern const char *const lkd_gw_type_names[];
extern const int lkd_gw_type_values[];
#define LKD_GW_TYPES 3
extern const char *const lkd_gw_auth_names[];
extern const int lkd_gw_auth_values[];
#define LKD_GW_AUTHS 4
extern const char *const lkd_mqtt_state_names[];
extern const char *const lkd_http_state_names[];
extern const int lkd_state_values[];
#define LKD_STATES 3

/* ---- the device surface (device_api.c, device_auth.c) ---- */

/* evhttp's entry for the device listener. */
void lkd_http_device_request(struct evhttp_request *req, void *arg);
void lkd_device_dispatch(struct lkd_call *c);

struct lkd_device_id {
    lk_device_name name;     /* with the device's string id, also when the path gave its numId */
    uint64_t num_id;
    lk_reg_gateway_type gateway_type;
    lk_reg_gateway_auth gateway_auth;
};
lk_err lkd_devcache_new(size_t entries, struct lkd_devcache **out);
void lkd_devcache_free(struct lkd_devcache *dc);
/* Authenticate the call's device token for the device named in n / dev
 * (its id or numId), under the broker's rules: 0 with *out, or -1 after
 * replying (UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE). */
int lkd_device_authenticate(struct lkd_call *c, const lk_reg_name *n, const char *dev, struct lkd_device_id *out);

/* gatewayInfo (device_gateway.c, docs/daemon.md "Gateways over HTTP"): the
 * device a request of caller acts for, and the gateway it came from or
 * through (gateway "" without gatewayInfo: dev is the caller). */
struct lkd_acting {
    struct lkd_device_id dev;
    char gateway[LK_ID_MAX + 1];
};
/* delegated_id / gateway_id: gatewayInfo's delegatedDeviceId / gatewayId
 * (NULL or "" = unset; both set is INVALID_ARGUMENT). 0 with *out, or -1
 * after replying (NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, ...,
 * each with why). The auth-method rule is lk_gateway_admit's. */
int lkd_gateway_acting(struct lkd_call *c, const struct lkd_device_id *caller, const char *delegated_id,
                       const char *gateway_id, struct lkd_acting *out);
/* The same from the body's gatewayInfo (publishEvent, setState) or from
 * the query's gatewayInfo.delegatedDeviceId / gatewayInfo.gatewayId
 * (the config GET, as gRPC transcoding carries a message in a query). */
int lkd_gateway_info_body(struct lkd_call *c, const struct lkd_device_id *caller, struct lkd_acting *out);
int lkd_gateway_info_query(struct lkd_call *c, const struct lkd_device_id *caller, struct lkd_acting *out);
/* lastAccessedGatewayId/Time of device num_id (gateway NULL or "": nothing);
 * the same device and gateway again within 10 s writes nothing. */
void lkd_gateway_record(struct lkd *d, uint64_t num_id, const char *gateway);

#endif
