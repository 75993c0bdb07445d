/*
 * lk_device.h — the device client: one IoT Core device (or a gateway's own
 * connection) kept connected to a latchkey or IoT Core MQTT bridge for years,
 * unattended.
 *
 * What it does, so the caller does not have to:
 *   - authenticates the server before anything is sent: TLS 1.2 or newer,
 *     the chain checked against the caller's CA file, the host name (or IP
 *     address) checked against the certificate. The token never goes to a
 *     server that has not proved who it is;
 *   - connects as IoT Core wants: client id
 *     projects/P/locations/L/registries/R/devices/D, username "unused",
 *     password a token signed by the secure element (lk_se.h: software
 *     store, PKCS#11 token), MQTT 3.1.1, clean session, keep-alive 60 s;
 *   - makes a new token and reconnects before the current one expires
 *     (refresh_margin_s before exp); QoS 1 messages queued at that moment
 *     wait and are sent on the new connection;
 *   - keeps every event and state message in its own queue until the server
 *     acknowledges it (PUBACK): a message handed over is delivered at least
 *     once as long as the process lives, across refreshes, broker restarts
 *     and network loss (duplicates are possible, loss is not);
 *   - after any failure retries with IoT Core's truncated exponential
 *     backoff: 2^n seconds plus up to 1 s of random jitter, n counting the
 *     consecutive failures, capped at backoff_max_s;
 *   - answers a refused token (CONNACK 4 or 5) with a new token, never a
 *     retry of the refused one, and gives up (LK_DEV_FAILED, LK_ERR_REFUSED)
 *     after max_refusals refusals in a row of freshly signed tokens, so a
 *     revoked device stops instead of hammering the server;
 *   - subscribes to /devices/D/config and /devices/D/commands/# (QoS 1) and
 *     hands what arrives to the callbacks.
 *
 * The client never prints, never exits and never logs a token or a key: it
 * reports through on_event with one-line English details.
 *
 * Threads: an lk_dev is used by one thread at a time. Many clients can share
 * one thread (the fleet simulator runs thousands in one epoll loop): each
 * exposes its socket (lk_dev_fd, lk_dev_want_write) and its next deadline
 * (lk_dev_next_ms), and lk_dev_step does the work. lk_dev_run is that loop
 * for a single client.
 *
 * Linux (libmosquitto 2.0, OpenSSL 3). Builds on the core and a secure-element
 * backend, never on the service side.
 */
#ifndef LK_DEVICE_H
#define LK_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_se.h"
#include "lk_iotcore.h"
#include "lk_jwt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_dev lk_dev;
/* A TLS client context (trusted roots, protocol floor, server name) that
 * many clients can share: loading the roots once per process, not per
 * connection. */
typedef struct lk_dev_tls lk_dev_tls;

typedef enum lk_dev_state {
    LK_DEV_IDLE = 0,       /* created, lk_dev_start not called yet */
    LK_DEV_CONNECTING = 1, /* TCP, TLS and CONNECT under way */
    LK_DEV_CONNECTED = 2,  /* CONNACK 0 received */
    LK_DEV_REFRESHING = 3, /* waiting for PUBACKs before reconnecting with a new token */
    LK_DEV_BACKOFF = 4,    /* waiting before the next attempt */
    LK_DEV_STOPPING = 5,   /* lk_dev_stop: flushing the queue, then DISCONNECT */
    LK_DEV_STOPPED = 6,    /* stopped by the caller */
    LK_DEV_FAILED = 7      /* gave up: lk_dev_error() says why */
} lk_dev_state;

typedef enum lk_dev_event_type {
    LK_DEV_EV_CONNECTED = 1,    /* detail: server, token validity */
    LK_DEV_EV_DISCONNECTED = 2, /* err: why (LK_OK when we asked for it) */
    LK_DEV_EV_REFUSED = 3,      /* CONNACK refused; code = the CONNACK return code */
    LK_DEV_EV_TLS_FAILED = 4,   /* server not authenticated; nothing was sent */
    LK_DEV_EV_BACKOFF = 5,      /* next attempt in delay_ms (attempt = consecutive failures) */
    LK_DEV_EV_TOKEN = 6,        /* a new token was signed; detail: its validity */
    LK_DEV_EV_REFRESH = 7,      /* reconnecting to replace a token that expires soon */
    LK_DEV_EV_DELIVERED = 8,    /* message id was acknowledged by the server */
    LK_DEV_EV_SUBSCRIBED = 9,   /* config and commands subscriptions granted */
    LK_DEV_EV_FAILED = 10,      /* gave up: err and detail say why */
    LK_DEV_EV_STOPPED = 11,     /* lk_dev_stop finished; code = messages left undelivered */
    LK_DEV_EV_WARNING = 12,     /* anything else worth a log line */
    /* Gateways only (lk_dev_gateway): device = the attached device's id. */
    LK_DEV_EV_ATTACHED = 13,    /* a device is attached: its attach acknowledged and its
                                   config and commands subscriptions granted */
    LK_DEV_EV_DETACHED = 14,    /* a detach is done; code = its messages dropped unsent */
    LK_DEV_EV_KEY = 15          /* a key switch (lk_dev_set_next_key) ended: code 1 = the
                                   server accepted the next key, it is now the key; code 0 =
                                   the server refused it (err LK_ERR_REFUSED), the client went
                                   back to the key it had, at once */
} lk_dev_event_type;

typedef struct lk_dev_event {
    lk_dev_event_type type;
    lk_err err;          /* the error behind the event, LK_OK if none */
    int code;            /* CONNACK code (REFUSED), undelivered count (STOPPED) */
    unsigned attempt;    /* consecutive failed attempts so far */
    int64_t delay_ms;    /* BACKOFF: the wait before the next attempt */
    uint64_t id;         /* DELIVERED: the message id lk_dev_publish_* gave */
    const char *detail;  /* one line of English, never NULL, never a secret */
    const char *device;  /* gateways: the attached device it is about, else NULL */
} lk_dev_event;

#define LK_DEV_X5C_CHARS_MAX 8192u /* one x5c certificate's base64 (a 6 KiB DER) */

typedef struct lk_dev_config {
    /* The server. host is a DNS name or an IP address, checked against the
     * certificate's subjectAltName (or CN); port 1..65535 (8883, or 443). */
    const char *host;
    unsigned port;
    /* PEM file of the roots trusted for the server (e.g. the latchkey CA,
     * or Google's minimal root set). Ignored when tls is given. */
    const char *ca_file;
    lk_dev_tls *tls;       /* optional shared context (lk_dev_tls_new) */

    /* Who we are: the parts of the client id. aud of the token = project. */
    const char *project;
    const char *location;  /* "cloud region" in IoT Core */
    const char *registry;
    const char *device;

    /* The key: a secure element and the key's reference in it. alg must be
     * the key's (LK_ALG_ES256 or LK_ALG_RS256). The se and key strings must
     * stay valid for the client's life. */
    const lk_se *se;
    const char *key;
    lk_alg alg;
    /* Optional: a certificate chain for the header's "x5c" of every token
     * signed with this key (just-in-time registration, docs/provisioning.md):
     * x5c_count (0..LK_JWT_X5C_MAX) strings of standard base64 of one DER
     * certificate each (each at most LK_DEV_X5C_CHARS_MAX), the leaf first.
     * Copied. A next key (lk_dev_set_next_key) has no chain: the chain
     * certifies this key only, and is dropped once another key is in use. */
    const char *const *x5c;
    unsigned x5c_count;

    /* Timing; 0 means the default given. */
    unsigned token_lifetime_s;  /* exp - iat, 10..86400; default 3600 */
    unsigned refresh_margin_s;  /* reconnect this long before exp;
                                   default lifetime/10 clamped to 5..600;
                                   must be < lifetime */
    unsigned keepalive_s;       /* 10..1200; default 60 */
    unsigned backoff_max_s;     /* cap of 2^n; 1..3600; default 64 */
    unsigned connect_timeout_s; /* TCP+TLS+CONNACK; default 30 */
    unsigned drain_timeout_ms;  /* refresh/stop: wait for PUBACKs; default 5000 */
    unsigned max_refusals;      /* fresh tokens refused in a row before
                                   LK_DEV_FAILED; default 3; ~0u = never */
    unsigned max_attempts;      /* failed attempts in a row (any reason)
                                   before LK_DEV_FAILED; default 0 = never */

    /* Pacing. IoT Core (and the latchkey plugin) drop what a connection sends
     * over 100 messages a second, or over one state report a second, and
     * still acknowledge it: a client that bursts loses messages. So the
     * client sends at most max_messages_per_s messages in any second
     * (default 80, 1..10000; raise it only with the server's limit), and
     * state reports 1.1 s after the previous one's PUBACK. */
    unsigned max_messages_per_s;

    /* The outgoing queue (events and state waiting for PUBACK). */
    size_t queue_max;           /* messages; default 1000 */
    size_t queue_bytes_max;     /* payload bytes; default 16 MiB */

    /* Callbacks, all optional, called from lk_dev_step only. The data
     * pointers are valid during the call only. A callback may call
     * lk_dev_publish_* and lk_dev_stop, never lk_dev_free. */
    void *user;
    void (*on_event)(void *user, const lk_dev_event *ev);
    /* The latest config, on subscribe and on every update; may be empty. */
    void (*on_config)(void *user, const uint8_t *data, size_t len);
    /* A command; subfolder is "" for /commands, else the part after
     * /commands/ (NUL-terminated, checked by lk_subfolder_valid). */
    void (*on_command)(void *user, const char *subfolder,
                       const uint8_t *data, size_t len);
} lk_dev_config;

/* --- the shared TLS context --- */

/* Load ca_file and prepare a TLS ≥ 1.2 client context that checks host.
 * On failure returns LK_ERR_FILE_MISSING (no such CA file),
 * LK_ERR_FILE_UNUSABLE (permission denied, or no usable certificate in
 * it), LK_ERR_IO (the system failed to open it otherwise), LK_ERR_ARG,
 * LK_ERR_NOMEM or LK_ERR_CRYPTO and writes a one-line reason that names the
 * file (through lk_key_ref_redact) and, for an open failure, the system's
 * reason (strerror). */
lk_err lk_dev_tls_new(const char *ca_file, const char *host, lk_dev_tls **out,
                      char *detail, size_t detail_size);
/* Free; clients using it must have been freed first. NULL is a no-op. */
void lk_dev_tls_free(lk_dev_tls *tls);

/* --- one client --- */

/*
 * Check cfg (ids by lk_iotcore.h, ranges above) and create a client; no
 * network traffic yet. The strings of cfg are copied except se and key.
 * LK_ERR_ARG with a reason in detail for a bad configuration; without tls,
 * the errors of lk_dev_tls_new for the CA file.
 */
lk_err lk_dev_new(const lk_dev_config *cfg, lk_dev **out, char *detail,
                  size_t detail_size);
/* Close the connection at once (no flush: use lk_dev_stop first), wipe the
 * token, free the queue. NULL is a no-op. */
void lk_dev_free(lk_dev *dev);

/* Start connecting: the first attempt happens in the next lk_dev_step (until
 * then the state is LK_DEV_BACKOFF with no wait). The host name is resolved
 * at each attempt, synchronously (getaddrinfo): a fleet in one thread should
 * be given an IP address. */
lk_err lk_dev_start(lk_dev *dev);

/*
 * Queue an event (subfolder NULL or "" for /events, else
 * /events/SUBFOLDER) or a state report, QoS 1. The payload is copied. *id
 * (may be NULL) identifies it in LK_DEV_EV_DELIVERED. Returns
 * LK_ERR_TOO_LARGE (event over 256 KiB, state over 64 KiB),
 * LK_ERR_QUEUE_FULL (queue_max or queue_bytes_max reached: nothing queued),
 * LK_ERR_ARG (bad subfolder), LK_ERR_STATE (stopping, stopped or failed).
 * Nothing is lost while the queue has room: messages queued while
 * disconnected are sent, in order, on the next connection.
 */
lk_err lk_dev_publish_event(lk_dev *dev, const char *subfolder,
                            const void *data, size_t len, uint64_t *id);
lk_err lk_dev_publish_state(lk_dev *dev, const void *data, size_t len,
                            uint64_t *id);

/*
 * Ask the client to stop: no new messages; the queue is flushed if
 * connected (up to drain_timeout_ms), then DISCONNECT; the state becomes
 * LK_DEV_STOPPED and LK_DEV_EV_STOPPED reports what was left undelivered.
 */
void lk_dev_stop(lk_dev *dev);

/* The socket to watch (-1 when none), and whether to watch it for writing
 * too. Both change after every lk_dev_step. A new connection can get the
 * same fd number as the one it replaces within a single step (the old
 * socket is closed first, which drops it from an epoll set): re-register
 * when lk_dev_fd or lk_dev_stats.attempts changes. */
int lk_dev_fd(const lk_dev *dev);
int lk_dev_want_write(const lk_dev *dev);
/* Milliseconds (CLOCK_MONOTONIC, as lk_dev_now_ms) by which lk_dev_step must
 * run again even if the socket stays quiet. */
int64_t lk_dev_next_ms(const lk_dev *dev);
/*
 * Do all pending work: read if readable, write if writable (either may be
 * 0: the client also tries when it knows it has work), timers (keep-alive,
 * refresh, backoff, timeouts). Returns LK_OK, or the error that made the
 * client fail (state LK_DEV_FAILED) — it is then inert.
 */
lk_err lk_dev_step(lk_dev *dev, int readable, int writable);
/* Run lk_dev_step in a poll loop for timeout_ms (-1: until stopped or
 * failed). Returns LK_OK when the time ran out or the client stopped, else
 * the failure. */
lk_err lk_dev_run(lk_dev *dev, int timeout_ms);

lk_dev_state lk_dev_get_state(const lk_dev *dev);
const char *lk_dev_state_name(lk_dev_state s);
/* Why the client failed (LK_OK unless LK_DEV_FAILED), and a one-line reason. */
lk_err lk_dev_error(const lk_dev *dev, const char **detail);
/* The client id, e.g. for log lines. */
const char *lk_dev_client_id(const lk_dev *dev);

typedef struct lk_dev_stats {
    uint64_t attempts;        /* connection attempts */
    uint64_t connects;        /* CONNACK 0 */
    uint64_t refusals;        /* CONNACK != 0 */
    uint64_t tls_failures;    /* server not authenticated */
    uint64_t disconnects;     /* connections lost or closed */
    uint64_t tokens;          /* tokens signed */
    uint64_t refreshes;       /* reconnects to replace a token */
    uint64_t published;       /* messages queued */
    uint64_t delivered;       /* PUBACKs for them */
    uint64_t resent;          /* messages sent again on a new connection */
    uint64_t configs;         /* configs received */
    uint64_t commands;        /* commands received */
    size_t queued;            /* messages waiting now */
    size_t queued_bytes;
    int64_t connected_ms;     /* lk_dev_now_ms of the current connection, 0 if none */
    int64_t token_exp;        /* exp of the current token (Unix time), 0 if none */
    uint64_t key_switches;    /* next keys accepted by the server (LK_DEV_EV_KEY code 1) */
    uint64_t key_fallbacks;   /* next keys refused, back to the key in use (code 0) */
} lk_dev_stats;
void lk_dev_get_stats(const lk_dev *dev, lk_dev_stats *out);

/*
 * # Rotating keys (docs/device.md, "Rotating keys")
 *
 * lk_dev_set_next_key gives the client a second key (se NULL: the same
 * element as the key in use; alg the key's). From then on every token is
 * signed with the next key: connected, the client reconnects at once
 * (as for a token refresh: in-flight messages drained first, queued ones
 * sent on the new connection); otherwise the next attempt uses it.
 *   - The server accepts it (CONNACK 0): it becomes the key (LK_DEV_EV_KEY,
 *     code 1); the old one is no longer used.
 *   - The server refuses it as bad credentials (CONNACK 4 or 5, also 1 or 2):
 *     the client forgets the next key, goes back to the key in use and
 *     connects again at once - no backoff, and the refusal does not count
 *     against max_refusals (LK_DEV_EV_KEY, code 0, err LK_ERR_REFUSED).
 *   - The next key cannot sign (not found, locked...): the same fallback,
 *     LK_DEV_EV_KEY code 0 with the signer's error.
 *   - A network failure keeps the next key for the next attempt.
 * The key string is copied (it may carry a PIN: wiped when freed). Calling it
 * again before the switch ended replaces the next key (the verdict on a
 * CONNECT signed with the replaced one then switches nothing). LK_ERR_ARG (NULL key
 * or dev, a key reference longer than LK_KEY_REF_MAX, alg not ES256/RS256, se
 * without ops), LK_ERR_STATE (stopping, stopped or failed; inside a callback),
 * LK_ERR_NOMEM.
 */
lk_err lk_dev_set_next_key(lk_dev *dev, const lk_se *se, const char *key, lk_alg alg);
/* 1 while a next key waits for the server's verdict, 0 else. */
int lk_dev_switching_key(const lk_dev *dev);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t lk_dev_now_ms(void);

/*
 * IoT Core's truncated exponential backoff: min(2^failures s, max_s) plus
 * jitter_ms (0..999, the caller's random draw). failures counts from 0 for the
 * first retry. Exposed for tests and for callers with their own loops.
 */
int64_t lk_dev_backoff_ms(unsigned failures, unsigned max_s, unsigned jitter_ms);

/*
 * # Gateways (docs/device.md, "Gateways")
 *
 * A gateway is a device (gatewayType GATEWAY) that attaches other devices on
 * its own connection and publishes and subscribes for them. lk_dev_gateway
 * turns a client (before lk_dev_start) into a gateway; then:
 *   - lk_dev_attach(D) publishes /devices/D/attach (QoS 1), with D's own
 *     token when D has a key ({"authorization": "<D's JWT>"}, signed by D's
 *     key through lk_se, aud = the project) or {} (association only). The
 *     server acknowledges every attach, also one it refuses, so after the
 *     PUBACK the client subscribes /devices/D/config and commands/#, which
 *     the server grants only to a device attached: granted, D is attached
 *     (LK_DEV_EV_ATTACHED) and its queued messages start to go;
 *   - after every (re)connection every device attached is attached again,
 *     and subscribed again, before any of its messages is sent; a device's
 *     token is replaced (a new attach) refresh_margin_s before it expires;
 *   - lk_dev_publish_event_for/state_for queue D's messages in the client's
 *     one queue, with the same guarantees as the gateway's own (kept until
 *     PUBACK, resent after a reconnect, in order). Pacing: each device
 *     (the gateway too) sends at most max_messages_per_s, state 1.1 s after
 *     its previous state's PUBACK, and the connection at most
 *     gateway_messages_per_s in all (the server counts D's messages against
 *     D's own limits and against the gateway's cap);
 *   - the client subscribes /devices/GW/errors (QoS 0) and hands each error,
 *     parsed, to on_error (but for the GATEWAY_DEVICE_NOT_ATTACHED of the
 *     subscriptions that follow an attach the server refused: those are the
 *     client's own way to learn the verdict). An attach refused
 *     (GATEWAY_ATTACHMENT_ERROR, or its subscriptions refused) or an
 *     attachment the server dropped (GATEWAY_DEVICE_DETACHED) holds D: its
 *     messages stay queued, unsent, and it is not attached again on
 *     reconnects, until the caller calls lk_dev_attach(D) again (or
 *     lk_dev_detach(D), which drops them).
 *
 * Memory: a device attached costs about 8 bytes per max_messages_per_s (its
 * pacing ring) plus its token (about 1 KiB) when it has a key.
 */

/* IoT Core's error message (errors topic), parsed. Strings NUL-terminated,
 * "" when absent; the struct is plain data (may be copied). */
#define LK_GATEWAY_ERROR_MAX 8192u     /* the longest errors message parsed */
#define LK_GATEWAY_ERROR_TYPE_MAX 63u
#define LK_GATEWAY_ERROR_DESC_MAX 1023u
typedef struct lk_dev_gateway_error {
    char error_type[LK_GATEWAY_ERROR_TYPE_MAX + 1];  /* e.g. "GATEWAY_ATTACHMENT_ERROR" */
    char description[LK_GATEWAY_ERROR_DESC_MAX + 1]; /* cut (at a character) if longer */
    char device_id[LK_ID_MAX + 1];                   /* a valid device id, or "" */
    char message_type[16];                           /* mqtt_message_info: "PUBLISH", ... */
    char topic[LK_DEVICE_TOPIC_MAX + 1];             /* mqtt_message_info.topic */
    unsigned packet_id;                              /* mqtt_message_info.packet_id */
} lk_dev_gateway_error;

/*
 * Parse an errors message: one JSON object (RFC 8259, UTF-8; duplicate keys
 * refused at any depth, as jansson's JSON_REJECT_DUPLICATES; \u0000 refused;
 * nesting at most 8 deep) with "error_type" (a string of 1..63 characters
 * [A-Z0-9_], required), "description" (string), "device_id" (string, a
 * valid id or ""), "mqtt_message_info" (object: "message_type" string of
 * [A-Z_] up to 15, "topic" string up to LK_DEVICE_TOPIC_MAX, "packet_id"
 * integer 0..65535); other keys are checked as JSON and ignored. LK_OK, or
 * LK_ERR_ARG (NULL), LK_ERR_TOO_LARGE (len over LK_GATEWAY_ERROR_MAX) or
 * LK_ERR_ENCODING (anything else), with *out zeroed.
 */
lk_err lk_dev_gateway_error_parse(const void *json, size_t len, lk_dev_gateway_error *out);

typedef struct lk_dev_gateway_config {
    /* All messages of the connection, the gateway's own and its devices',
     * in any 1000 ms; default 800 (the server's cap is 1000), 1..100000. */
    unsigned gateway_messages_per_s;
    /* Callbacks, optional, as lk_dev_config's (called from lk_dev_step;
     * data valid during the call only). The gateway's own config and
     * commands still go to lk_dev_config's on_config/on_command. */
    void *user;
    void (*on_config)(void *user, const char *device, const uint8_t *data, size_t len);
    void (*on_command)(void *user, const char *device, const char *subfolder,
                       const uint8_t *data, size_t len);
    void (*on_error)(void *user, const lk_dev_gateway_error *err);
} lk_dev_gateway_config;

/* Make the client a gateway (before lk_dev_start; the config is copied).
 * LK_ERR_ARG (a bad rate, a NULL), LK_ERR_STATE (started), LK_ERR_NOMEM. */
lk_err lk_dev_gateway(lk_dev *dev, const lk_dev_gateway_config *gw);

/*
 * Attach device (a valid id, not the gateway's own). se/key/alg: the
 * device's own key, for a token (se and key must stay valid until the
 * device is detached); se NULL: association only (key and alg ignored).
 * Works before lk_dev_start and while disconnected (the attach is sent once
 * connected). Attaching a device already attached replaces its key and
 * attaches it again (e.g. after an error). LK_ERR_ARG (bad id, no key with
 * se, bad alg), LK_ERR_STATE (not a gateway; stopping, stopped or failed;
 * a detach of it under way), LK_ERR_TOO_MANY (LK_GATEWAY_ATTACHED_MAX
 * devices attached), LK_ERR_NOMEM. A token that cannot be signed is
 * reported later (LK_DEV_EV_WARNING naming the device) and the device held.
 */
lk_err lk_dev_attach(lk_dev *dev, const char *device, const lk_se *se, const char *key,
                     lk_alg alg);
/*
 * Detach device: publish /devices/D/detach after the device's messages
 * queued so far (sent first, in order, once it is attached);
 * LK_DEV_EV_DETACHED when the server acknowledged it. A device the server
 * holds no attachment of (held after an error, or nothing queued and no
 * attach sent on the current connection) is forgotten at once: its unsent
 * messages are dropped, LK_DEV_EV_DETACHED's code counts them. Nothing more
 * may be queued for it. LK_ERR_STATE when it is not attached (or is being
 * detached), or the client stops.
 */
lk_err lk_dev_detach(lk_dev *dev, const char *device);
/* 1 when device is attached (its attach acknowledged and its subscriptions
 * granted on the current connection), 0 else. */
int lk_dev_attached(const lk_dev *dev, const char *device);

/* lk_dev_publish_event/_state for an attached device (including one whose
 * attach is still under way or was refused: its messages wait). Errors as
 * those, and LK_ERR_STATE when device is not attached to this gateway. */
lk_err lk_dev_publish_event_for(lk_dev *dev, const char *device, const char *subfolder,
                                const void *data, size_t len, uint64_t *id);
lk_err lk_dev_publish_state_for(lk_dev *dev, const char *device, const void *data, size_t len,
                                uint64_t *id);

#ifdef __cplusplus
}
#endif
#endif /* LK_DEVICE_H */
