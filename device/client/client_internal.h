/*
 * client_internal.h — private to the device client's files (device/client):
 * the client's state and the hidden functions its files share. client.c:
 * configuration, the state machine's step and the accessors; tls.c: the
 * server's authentication; events.c: the user's events and the clock;
 * queue.c: the outgoing queue, pacing and publishing; connection.c: one
 * connection's life (token, libmosquitto and its callbacks, backoff);
 * keys.c: the key's x5c chain and a switch to a next key.
 */
#ifndef LK_DEV_CLIENT_INTERNAL_H
#define LK_DEV_CLIENT_INTERNAL_H

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_util.h"

#define LK_DEV_HIDDEN __attribute__((visibility("hidden")))

#define DEFAULT_LIFETIME_S 3600u
#define MIN_LIFETIME_S 10u
#define DEFAULT_KEEPALIVE_S 60u
#define DEFAULT_BACKOFF_MAX_S 64u
#define DEFAULT_CONNECT_TIMEOUT_S 30u
#define DEFAULT_DRAIN_MS 5000u
#define DEFAULT_MAX_REFUSALS 3u
#define DEFAULT_QUEUE_MAX 1000u
#define DEFAULT_QUEUE_BYTES (16u * 1024u * 1024u)
/* A connection that lasted this long resets the backoff exponent. */
#define STABLE_MS 60000
/* How often libmosquitto's housekeeping (keep-alive) runs. */
#define MISC_MS 1000
#define PACKETS_PER_STEP 64
#define DETAIL_MAX 256
/* IoT Core allows one state report a second per device; a little more, so
 * a slow clock on either side never gets one dropped. */
#define STATE_GAP_MS 1100
#define DEFAULT_MAX_RATE 80u
/* The claims JSON is at most {"iat":-9223372036854775808,"exp":...,"aud":"<30>"}. */
#define TOKEN_SIZE LK_JWT_TOKEN_SIZE(128u, LK_SIG_MAX_BYTES)

struct lk_dev_tls {
    SSL_CTX *ctx;
};

struct gw_dev;

/* At most max messages in any 1000 ms: the times of the last max sends. */
struct lk_rate {
    int64_t *ms;
    unsigned max, i, n;
};

/* A device attached to a gateway (gateway.c). */
enum gw_status {
    GW_PENDING,     /* the attach is to be sent on this connection */
    GW_ATTACHING,   /* sent: waiting for its PUBACK */
    GW_SUBSCRIBING, /* acknowledged: config and commands subscribed, waiting for the SUBACK */
    GW_ATTACHED,    /* its messages may go */
    GW_HELD         /* refused or dropped by the server: waits for the caller */
};

struct gw_dev {
    struct gw_dev *hnext;        /* hash chain */
    struct gw_dev *prev, *next;  /* in the order attached */
    char id[LK_ID_MAX + 1];
    const lk_se *se;             /* NULL: association only, no token */
    const char *key;
    lk_alg alg;
    enum gw_status status;
    int detaching;               /* a detach is queued */
    int reattach;                /* attach again with a new token while attached */
    int attach_mid, sub_mid;     /* on the current connection, 0 = none */
    char *token;                 /* TOKEN_SIZE bytes when se, wiped when replaced */
    size_t token_len;
    int64_t token_exp, token_mono;
    struct lk_rate rate;
    int state_inflight;
    int64_t state_ready_ms;
    unsigned skip_gen;           /* none of its messages may go in this pump pass */
    unsigned unsent_gen;         /* one of its messages stayed unsent in this pass */
    size_t queued;               /* its messages in the queue, its detach included */
};

#define MSG_DATA 0
#define MSG_DETACH 1  /* a gateway's detach of owner, after owner's messages */

struct msg {
    struct msg *next;
    struct gw_dev *owner; /* the attached device it is for; NULL: the client's own */
    uint64_t id;
    int kind;
    int is_state;
    int mid;        /* libmosquitto's id on the current connection, 0 = not sent */
    size_t len;
    uint8_t *data;  /* points into the same allocation, after the topic */
    char topic[];   /* NUL-terminated */
};

struct lk_dev {
    /* configuration (strings owned) */
    char *host;
    unsigned port;
    const lk_se *se;
    const char *key;
    lk_alg alg;
    char *project;
    unsigned lifetime_s, margin_s, keepalive_s, backoff_max_s, connect_timeout_s;
    unsigned drain_ms, max_refusals, max_attempts;
    size_t queue_max, queue_bytes_max;
    void *user;
    void (*on_event)(void *, const lk_dev_event *);
    void (*on_config)(void *, const uint8_t *, size_t);
    void (*on_command)(void *, const char *, const uint8_t *, size_t);

    char *client_id;
    char *device;
    char *topic_events, *topic_state, *topic_config, *topic_commands;

    lk_dev_tls *tls;
    int own_tls;

    /* the connection */
    struct mosquitto *mosq;
    lk_dev_state state;
    int ended;          /* set by callbacks: the connection is over */
    int connack;        /* -1 none yet, else the CONNACK code */
    /* Before a refresh or a stop closes the connection, the commands
     * subscription is withdrawn (lk_dev__quiet_commands): the mid of the
     * UNSUBSCRIBE awaiting its UNSUBACK, 0 none sent, -1 done (or not possible). */
    int unsub_mid;
    int unsub_round;    /* UNSUBACKs received: two end it */
    int lost_rc;        /* libmosquitto's reason from on_disconnect */
    int lost_errno;     /* errno behind lost_rc == MOSQ_ERR_ERRNO */
    long verify_err;    /* the first certificate error of this attempt */
    int in_callback;
    int64_t deadline_ms;  /* CONNECTING: connect timeout; REFRESHING/STOPPING: drain */
    int64_t retry_ms;     /* BACKOFF: next attempt */
    int64_t misc_ms;
    int64_t connected_ms;
    int64_t refresh_ms;
    unsigned failures;    /* consecutive failed attempts */
    unsigned refusals;    /* consecutive refusals of fresh tokens */

    /* the token */
    char *token;            /* token_size bytes */
    size_t token_size;
    size_t token_len;
    int64_t token_exp;      /* Unix time */
    int64_t token_mono;     /* lk_dev_now_ms when signed */
    int token_fresh;        /* signed for the attempt under way */
    int token_next;         /* signed with the next key (keys.c) */

    /* keys.c: the key's chain (x5c) and a key switch */
    char **x5c;
    size_t *x5c_len;
    unsigned nx5c;
    char *key_own;          /* the key string once a next key became the key */
    const lk_se *next_se;
    char *next_key;         /* NULL: no switch under way */
    lk_alg next_alg;

    /* the queue */
    struct msg *head, *tail;
    size_t queued, queued_bytes, inflight;
    uint64_t next_id;

    /* pacing: the server drops (and still acknowledges) what goes over its
     * rates, so the client keeps under them */
    unsigned max_rate;        /* messages in any 1000 ms */
    struct lk_rate self_rate; /* the client's own messages */
    int64_t pump_wait_ms;     /* when pacing lets the next message go, 0 if none waits */
    int state_inflight;       /* a state message awaits its PUBACK */
    int64_t state_ready_ms;   /* the next state may go at this time */

    /* a gateway (lk_dev_gateway), else NULL: gateway.c */
    struct gw *gw;
    const char *ev_device;    /* the attached device the next event is about */

    lk_err fail_err;
    char fail_detail[DETAIL_MAX];
    char detail[DETAIL_MAX];
    lk_dev_stats stats;
};

/* events.c: tell the user (on_event) what happened; the detail is a printf
 * format. */
LK_DEV_HIDDEN void lk_dev__emit(lk_dev *d, lk_dev_event_type type, lk_err err, int code,
                                int64_t delay, uint64_t id, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* events.c: the client has failed for good: state FAILED and the event. */
LK_DEV_HIDDEN void lk_dev__fail(lk_dev *d, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tls.c: the client being stepped on this thread (lk_dev_step sets it), for
 * the certificate verify callback. */
LK_DEV_HIDDEN extern __thread lk_dev *lk_dev__stepping;

/* keys.c: the key's chain and a key switch (lk_dev_set_next_key) */
/* Copy cfg's chain and make the token buffer; LK_ERR_ARG with why, LK_ERR_NOMEM. */
LK_DEV_HIDDEN lk_err lk_dev__keys_init(lk_dev *d, const lk_dev_config *c, char *why, size_t size);
LK_DEV_HIDDEN void lk_dev__keys_free(lk_dev *d);
/* Sign a token valid iat..exp with the next key when a switch is under way,
 * else with the key (and its chain); sets token_next. */
LK_DEV_HIDDEN lk_err lk_dev__keys_sign(lk_dev *d, int64_t iat, int64_t exp);
/* Whether the token in hand may be reused: not while a switch waits for it. */
LK_DEV_HIDDEN int lk_dev__keys_reusable(const lk_dev *d);
/* CONNACK 0: a next key's token accepted makes it the key. */
LK_DEV_HIDDEN void lk_dev__keys_accepted(lk_dev *d);
/* A refusal of the token: 1 when it was a next key's (forgotten; the caller
 * tries again at once with the key), 0 else. */
LK_DEV_HIDDEN int lk_dev__keys_refused(lk_dev *d, int connack);
/* Withdraw the commands subscription before this connection ends (refresh, stop). */
LK_DEV_HIDDEN void lk_dev__quiet_commands(lk_dev *d);
/* 1 while that is not finished: the connection must stay open to read what is on its way. */
LK_DEV_HIDDEN int lk_dev__quieting(const lk_dev *d);

/* queue.c */
/* A new connection: every message is unsent again. */
LK_DEV_HIDDEN void lk_dev__queue_reset_sent(lk_dev *d);
/* Hand the unsent messages to the connection as fast as the rates allow. */
LK_DEV_HIDDEN void lk_dev__pump(lk_dev *d);
/* Queue a message (kind MSG_DATA) for owner (NULL: the client itself). */
LK_DEV_HIDDEN lk_err lk_dev__enqueue(lk_dev *d, struct gw_dev *owner, const char *topic, int is_state,
                                     const void *data, size_t len, size_t max, uint64_t *id);

/* msg.c: the queue's entries and pacing */
LK_DEV_HIDDEN void lk_dev__msg_free(struct msg *m);
/* A queue entry for owner: topic and len bytes of data copied (zeroed
 * otherwise); NULL out of memory. */
LK_DEV_HIDDEN struct msg *lk_dev__msg_new(struct gw_dev *owner, int kind, const char *topic,
                                          const void *data, size_t len);
/* Append m to the queue and account for it. */
LK_DEV_HIDDEN void lk_dev__append(lk_dev *d, struct msg *m);
/* Unlink m from the queue and account for it (not freed). */
LK_DEV_HIDDEN void lk_dev__unlink(lk_dev *d, struct msg *m, struct msg *prev);
LK_DEV_HIDDEN lk_err lk_dev__rate_init(struct lk_rate *r, unsigned max);
LK_DEV_HIDDEN void lk_dev__rate_free(struct lk_rate *r);
/* 0 when one more message may go now; else the time from which it may. */
LK_DEV_HIDDEN int64_t lk_dev__rate_wait(const struct lk_rate *r, int64_t now);
LK_DEV_HIDDEN void lk_dev__rate_record(struct lk_rate *r, int64_t now);

/* msg.c is the floor of queue.c and gateway.c (the entries, the rate ring);
 * gateway_api.c (attach, detach, publish for) builds on queue.c, which
 * consults gateway.c: no circle. */

/* gateway.c, for gateway_api.c (d->gw not NULL) */
LK_DEV_HIDDEN struct gw_dev *lk_dev__gw_find(const lk_dev *d, const char *id);
/* A new device in the table (PENDING), with a token buffer when with_token. */
LK_DEV_HIDDEN lk_err lk_dev__gw_add(lk_dev *d, const char *id, int with_token, struct gw_dev **out);
/* A known device gets a new key: its token dropped (a buffer made when with_token). */
LK_DEV_HIDDEN lk_err lk_dev__gw_rekey(struct gw_dev *o, int with_token);
LK_DEV_HIDDEN void lk_dev__gw_want_control(lk_dev *d);
/* Forget o now (its unsent messages dropped), LK_DEV_EV_DETACHED. */
LK_DEV_HIDDEN void lk_dev__gw_forget(lk_dev *d, struct gw_dev *o);

/* gateway.c: everything a gateway adds; each is a no-op when d->gw is NULL. */
/* Free the gateway's state (the client's queue is freed by then). */
LK_DEV_HIDDEN void lk_dev__gw_free(lk_dev *d);
/* The connection is gone: every device is to be attached again. */
LK_DEV_HIDDEN void lk_dev__gw_reset(lk_dev *d);
/* CONNACK 0: subscribe the errors topic (into topics, returns the count added). */
LK_DEV_HIDDEN int lk_dev__gw_own_topics(lk_dev *d, char **topics);
/* Send the attaches due (new, again after a reconnect, token refresh) within
 * the connection's rate; 0 when the rate stopped it (*when: from when on). */
LK_DEV_HIDDEN int lk_dev__gw_pump_control(lk_dev *d, int64_t now, int64_t *when);
/* The device's tokens that must be replaced now are marked (step). */
LK_DEV_HIDDEN void lk_dev__gw_tick(lk_dev *d, int64_t now);
LK_DEV_HIDDEN int64_t lk_dev__gw_next_ms(const lk_dev *d);
/* PUBACK/SUBACK of a gateway's own packet: 1 when it was one. */
LK_DEV_HIDDEN int lk_dev__gw_puback(lk_dev *d, int mid);
LK_DEV_HIDDEN int lk_dev__gw_suback(lk_dev *d, int mid, int n, const int *granted);
/* A message on an attached device's topic or the errors topic: 1 when handled. */
LK_DEV_HIDDEN int lk_dev__gw_message(lk_dev *d, const struct mosquitto_message *msg);
/* A detach message (in the queue) was acknowledged: forget its device. */
LK_DEV_HIDDEN void lk_dev__gw_detached(lk_dev *d, struct gw_dev *o);
/* Pump: may a message of owner go now? 1 yes; 0 no (*when updated). */
LK_DEV_HIDDEN int lk_dev__gw_may_send(lk_dev *d, struct msg *m, int64_t now, unsigned gen,
                                      int64_t *when);
/* 0 when the connection's cap lets one more message go now, else from when. */
LK_DEV_HIDDEN int64_t lk_dev__gw_conn_wait(const lk_dev *d, int64_t now);
LK_DEV_HIDDEN void lk_dev__gw_sent(lk_dev *d, struct msg *m, int64_t now);
LK_DEV_HIDDEN void lk_dev__gw_acked(lk_dev *d, struct msg *m);
LK_DEV_HIDDEN unsigned lk_dev__gw_pump_gen(lk_dev *d);

/* connection.c */
/* Forget the connection (libmosquitto object and its flags). */
LK_DEV_HIDDEN void lk_dev__destroy_connection(lk_dev *d);
/* Start a connection attempt: a token, a libmosquitto object, connect. */
LK_DEV_HIDDEN void lk_dev__attempt(lk_dev *d, int64_t now);
/* The connection is over: say why, tidy up, decide what comes next. */
LK_DEV_HIDDEN void lk_dev__connection_ended(lk_dev *d, int64_t now, int loop_rc);
/* CONNACK 0 arrived: subscribe, tell the user, start sending. */
LK_DEV_HIDDEN void lk_dev__connected(lk_dev *d, int64_t now);

#endif /* LK_DEV_CLIENT_INTERNAL_H */
