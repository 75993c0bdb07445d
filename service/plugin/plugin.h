/*
 * plugin.h — latchkey's Mosquitto plugin, private declarations.
 *
 * The contract is docs/plugin.md. The plugin is split as Mosquitto's
 * dynamic-security plugin is: plugin.c (init, cleanup, options, tick),
 * auth.c (MOSQ_EVT_BASIC_AUTH), acl.c (MOSQ_EVT_ACL_CHECK), message.c
 * (MOSQ_EVT_MESSAGE: rewrite to downstream, state), deliver.c (config and
 * commands), conn.c (live connections, deadlines, kicks, re-checks),
 * devices.c (the cache of device authentication data), limits.c (per-device
 * rates that outlive a connection), refusals.c (rate-limited refusal
 * logs), bridge.c (latchkeyd's HTTP device bridge: its publishes'
 * checks and rewrite) and gateway.c (devices attached on a gateway's
 * connection). Functions are named module__verb.
 *
 * Everything runs on the broker's one thread: no locks. Broker functions
 * (publish, kick, log) are called only from broker callbacks; kicks only
 * from the tick, because a kick disconnects (and calls back) at once.
 */
#ifndef LK_PLUGIN_H
#define LK_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* mosquitto_broker.h must come before mosquitto_plugin.h in 2.0.11. */
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_registry.h"
#include "latchkey/lk_verify.h"

#include "../common/kvlog.h"

#define PLG_LOG_PREFIX "latchkey: "
/* A backend's username: this, then its name. */
#define BACKEND_PREFIX "backend:"
/* latchkeyd's bridge identity: username and client id are this, then its
 * name. */
#define BRIDGE_PREFIX "latchkeyd:"

/* # Options */

struct plg_options {
    char *registry;              /* plugin_opt_registry (required) */
    int64_t skew;                /* 0..3600 */
    int64_t max_token_lifetime;  /* 1..LK_VERIFY_MAX_LIFETIME*7 */
    size_t max_token_length;     /* 1..LK_VERIFY_MAX_LEN_LIMIT */
    unsigned verify_flags;       /* LK_VERIFY_ALLOW_PADDING or 0 */
    size_t token_cache;          /* 0 = off */
    char *token_cache_file;      /* plugin_opt_token_cache_file, or NULL */
    int64_t token_cache_save;    /* s between saves of a changed cache */
    size_t device_cache;         /* cached devices, >= 16 */
    unsigned messages_per_second;
    unsigned state_per_second;
    int64_t idle_timeout;        /* s, clients with keep-alive 0 */
    int64_t max_connection;      /* s */
    int64_t activity_flush;      /* s */
    int64_t confirm_timeout;     /* s a connection may stay while its standing cannot be read */
    unsigned connect_burst;      /* connects per device at once ... */
    unsigned connects_per_minute;/* ... then this many a minute */
    size_t limit_table;          /* devices whose limits are remembered */
    unsigned log_refusals_per_source; /* lines per window per (address, reason) */
    int64_t log_refusals_window; /* s */
    unsigned log_refusals_per_second; /* lines a second in all */
    unsigned share_max_per_client; /* shared subscriptions per client id */
    size_t share_max_members;    /* shared subscriptions (and remembered plain filters) in all */
    char *spool;                 /* plugin_opt_spool: the push spool, or NULL */
    int spool_sync_full;         /* plugin_opt_spool_sync full */
    int64_t spool_max_messages;  /* per push subscription */
    int64_t spool_max_bytes;
    unsigned gateway_messages_per_second; /* all a gateway's connection publishes */
    unsigned gateway_max_attached;        /* 1..LK_GATEWAY_ATTACHED_MAX */
    size_t jit_max_token_length; /* the cap for registries with JIT on */
    unsigned jit_per_minute;     /* JIT attempts, all registries together ... */
    unsigned jit_burst;          /* ... with this burst */
    unsigned state_wait_max;     /* devices whose state report waits for a busy registry (stateq.c) */
    char *metrics_file;          /* plugin_opt_metrics_file: the shared counters (metrics.c), or NULL */
    int log_level;               /* plugin_opt_log_level: an LK_LOG_LEVEL_*, never UNSPECIFIED */
};

/* # Devices: cached authentication data (devices.c) */

struct plg_device {
    char *path;                  /* the client id, projects/P/locations/L/registries/R/devices/D, after the record */
    uint64_t num_id;
    int blocked;
    lk_reg_state mqtt;
    lk_cred *creds[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncreds;
    int64_t config_version;
    lk_reg_gateway_type gateway_type;
    lk_reg_gateway_auth gateway_auth;
    lk_reg_log_level log_level, reg_log_level; /* its own and its registry's */
    struct plg_device *hnext_path, *hnext_num; /* hash chains */
    struct plg_device *lru_prev, *lru_next;    /* most recent at the head */
};

int devices__init(size_t capacity);
void devices__cleanup(void);
/* The device for path: from the cache, or read from the registry (fresh =
 * always read). NULL and *err = LK_ERR_REG_NOT_FOUND for no such device, or
 * another error (storage, memory, a credential that does not parse). The
 * result is valid until the next devices__ call. */
struct plg_device *devices__get(const lk_device_name *p, const char *path, int fresh,
                                lk_err *err);
/* Free d's decoded keys until a token the verified-token cache does not know
 * needs them (lk_cred_release_key): 2.7 kB a P-256 key, for every cached
 * device, against one decoding per new token. */
void devices__release_keys(const struct plg_device *d);
/* Whether cached device data may be stale, so that devices__get must read
 * (fresh): the change feed has been unreadable for confirm_timeout or
 * longer. */
int devices__stale(int64_t now);
void devices__forget(uint64_t num_id);
void devices__clear(void);
/* The position (0..2) of the credential with this fingerprint and expiry;
 * else of the first with this fingerprint (its expiry changed); else -1. */
int devices__find_cred(const struct plg_device *d, const uint8_t fp[32], int64_t expires);

/* # Connections (conn.c) */

/* CONN_ATTACHED: a device attached on a gateway's connection (gateway.c):
 * no client of its own (client NULL, not found by conn__find), its messages
 * go through the gateway's. */
enum plg_conn_kind { CONN_DEVICE = 1, CONN_BACKEND = 2, CONN_BRIDGE = 3, CONN_ATTACHED = 4 };
enum plg_queue_kind { Q_KICK, Q_CONFIG, Q_RECHECK, Q_COUNT };

/* A backend's identity (a bridge's: its name only), apart from struct
 * plg_conn so that a device's record does not carry it. */
struct plg_ident {
    uint8_t hash[32];                 /* its secret's hash when it connected */
    char project[LK_PROJECT_MAX + 1];
    char name[];
};

/* One per connection, so ordered by size (no padding) and the small fields
 * as narrow as their values: a fleet of connected devices holds one each. */
struct plg_conn {
    struct mosquitto *client;    /* the key: a reconnect is a new pointer */
    char *client_id;             /* in the same allocation, after the record */
    /* devices */
    uint64_t num_id;             /* its name is its client id (conn__name) */
    int64_t cred_expires;
    int64_t token_until;         /* exp + skew */
    int64_t connected_at;
    int64_t last_seen;
    int64_t config_sent;         /* version last sent, 0 = none */
    /* gateways (a CONN_DEVICE whose gateway_type is GATEWAY) */
    struct plg_conn *att_head;   /* its attached devices */
    size_t attached;
    int64_t gw_second;           /* its own cap: the second counted ... */
    /* attached devices (CONN_ATTACHED) */
    struct plg_conn *gateway;
    struct plg_conn *att_prev, *att_next, *hnext_att;
    struct plg_ident *be;        /* backends and bridges; NULL for devices */
    /* bookkeeping */
    const char *kick_reason;     /* set when queued for a kick */
    int64_t unconfirmed_since;   /* a re-check could not read the registry (0 = confirmed) */
    struct { struct plg_conn *prev, *next; } q[Q_COUNT];
    size_t heap_idx;             /* position in the deadline heap, SIZE_MAX = none */
    int64_t deadline;
    struct plg_conn *hnext_client, *hnext_num;
    struct plg_conn *prev, *next; /* the list of all connections */
    uint8_t cred_fp[32];         /* the credential that verified the token */
    int keepalive;
    uint32_t limit;              /* the device's entry in limits.c (pinned) */
    uint32_t mslot;              /* its registry's slot in the metrics file + 1 (0: not counted) */
    unsigned gw_count;           /* a gateway's messages in gw_second */
    uint8_t kind;                /* enum plg_conn_kind */
    int8_t config_qos;           /* -1: not subscribed */
    int8_t commands_qos;         /* -1: not subscribed */
    int8_t errors_qos;           /* a gateway's errors subscription, -1: none */
    uint8_t config_force;        /* (re)send even if config_sent is current */
    uint8_t token_used;          /* attached with its own token: token_until applies */
    uint8_t superseded;          /* a newer connection took over the client id */
    uint8_t offline_sent;
    int8_t log_level;            /* its effective LK_LOG_LEVEL_* (plog.c); 0: the plugin's */
    uint8_t gateway_type;        /* lk_reg_gateway_type */
    uint8_t gateway_auth;        /* lk_reg_gateway_auth */
    uint8_t queued;              /* bit per plg_queue_kind */
};

/* offline: told when a device connection is superseded or kicked, once.
 * detach: told instead of a kick for an attached device (it frees c). */
int conn__init(void (*offline)(struct plg_conn *c, const char *why),
               void (*detach)(struct plg_conn *c, const char *why));
void conn__cleanup(void);
struct plg_conn *conn__new(struct mosquitto *client, enum plg_conn_kind kind, const char *client_id);
struct plg_conn *conn__find(const struct mosquitto *client);
/* A zeroed identity with name copied (c->be); NULL out of memory. */
struct plg_ident *conn__backend_new(const char *name);
/* The live (not superseded) device connection of num_id, direct or
 * attached, or NULL. */
struct plg_conn *conn__find_device(uint64_t num_id);
/* A record for device p (num_id) attached to gateway gw: indexed by num_id
 * and by (gw, device id); NULL out of memory. */
struct plg_conn *conn__attach_new(struct plg_conn *gw, const lk_device_name *p, const char *path,
                                  uint64_t num_id);
/* Device id's attachment on gateway gw, or NULL. */
struct plg_conn *conn__find_attached(const struct plg_conn *gw, const char *device);
/* The client id a message for c is published to: its own, or its
 * gateway's. */
const char *conn__target(const struct plg_conn *c);
/* A device connection's (CONN_DEVICE, CONN_ATTACHED) name: its client id,
 * checked when it connected or attached, parsed into *p (a full name here
 * would cost each connection 607 bytes) — or its device id alone. */
void conn__name(const struct plg_conn *c, lk_device_name *p);
const char *conn__device(const struct plg_conn *c);
/* Mark other connections with the same client id as superseded. */
void conn__supersede(struct plg_conn *c);
void conn__free(struct plg_conn *c);
/* Index a device connection by num_id (after num_id is set). */
void conn__index_num(struct plg_conn *c);
/* (Re)compute c's deadline from its token, age and idleness. */
void conn__schedule(struct plg_conn *c);
/* Queue c to be closed on the next tick, with a reason for the log. */
void conn__kick(struct plg_conn *c, const char *reason);
/* Tick: expire deadlines, then close the queued connections. */
void conn__tick(int64_t now);
/* Queue c for config delivery on the next tick. */
void conn__want_config(struct plg_conn *c, int force);
/* Take the queued config deliveries: calls fn for each (fn may queue it
 * again, for the next tick). */
void conn__drain_config(void (*fn)(struct plg_conn *c));
/* Queue c to be re-checked on the next tick (its re-check could not read
 * the registry). */
void conn__want_recheck(struct plg_conn *c);
/* A device's (SUBSCRIBE or UNSUBSCRIBE) of its topic t, direct or through
 * its gateway: config (QoS 2 granted as 1; the latest sent on the next
 * tick) and commands/# are taken, anything else denied. */
int conn__subscription(struct plg_conn *c, lk_topic t, int access, int qos);
/* A re-check that could not read the registry: kept (re-checked on every
 * tick) for up to confirm_timeout from the first failure, then closed — a
 * revocation must not fail open, and one slow moment of the registry must
 * not close the fleet. */
void conn__unconfirmed(struct plg_conn *c, lk_err err);
/* What d (c's device, just read) says of c: NULL when it may stay, else why
 * it must go (deleted, blocked, MQTT disabled, and with cred the credential
 * that authenticated it removed; a new expiry of it is taken). Queues the
 * config when a newer one exists. */
const char *conn__standing(struct plg_conn *c, const struct plg_device *d, int cred);
/* Take the queued re-checks: calls fn for each (fn may queue it again). */
void conn__drain_recheck(void (*fn)(struct plg_conn *c, void *arg));
/* Each live connection (fn must not free connections). */
void conn__each(void (*fn)(struct plg_conn *c, void *arg), void *arg);
/* Each connection (superseded too) of device num_id, direct or attached. */
void conn__each_num(uint64_t num_id, void (*fn)(struct plg_conn *c, void *arg), void *arg);

/* # Authentication (auth.c) */

int auth__basic(int event, void *event_data, void *userdata);
int auth__disconnect(int event, void *event_data, void *userdata);
/* Re-read a device connection's device and close it if it may no longer be
 * connected (blocked, deleted, registry disabled, credential removed). */
void auth__recheck(struct plg_conn *c, void *arg);
void auth__recheck_backend(struct plg_conn *c, void *arg);
/* Either, by kind (the queue of re-checks that could not read the registry). */
void auth__recheck_any(struct plg_conn *c, void *arg);

/* # ACL (acl.c) */

int acl__check(int event, void *event_data, void *userdata);

/* # Messages (message.c) */

/* MOSQ_EVT_MESSAGE for connection c (conn__find's answer, NULL if none):
 * a device's publish rewritten downstream; denied for anything else. */
int message__device(struct plg_conn *c, struct mosquitto_evt_message *ed);
/* What a device's publish topic is: */
enum plg_topic { TOPIC_BAD = 0, TOPIC_EVENTS, TOPIC_STATE };
enum plg_topic message__topic(const struct plg_conn *c, const char *topic,
                              const char **subfolder);
/* What device path (num_id) sent, over MQTT or latchkeyd's bridge (through
 * gateway, when not NULL): its
 * downstream topic and IoT Core's attributes (*topic and *props are the
 * caller's to free; the topic as route__topic routes it): 0, -1 out of
 * memory, -2 the routing could not be read; then, once accepted, its state
 * stored and its activity noted. */
int message__downstream(const lk_device_name *path, uint64_t num_id, const char *gateway,
                        enum plg_topic t, const char *subfolder, char **topic,
                        mosquitto_property **props);
void message__accepted(const lk_device_name *path, uint64_t num_id, enum plg_topic t,
                       const void *payload, uint32_t len, int64_t now);
/* Turn a publish into its downstream form in place (topic, IoT Core's
 * attributes, not retained), store it for push subscriptions (route__spool)
 * and account for it (message__accepted): 0; or, with ed untouched, -1 out
 * of memory, -2 not routed or not stored (it must not be acknowledged). */
int message__rewrite(struct mosquitto_evt_message *ed, const lk_device_name *path, uint64_t num_id,
                     const char *gateway, enum plg_topic t, const char *sub);
/* IoT Core's attributes as MQTT 5 user properties (added to *props), with
 * gatewayId when a gateway sent it (gateway NULL otherwise): 0, or -1 out
 * of memory. */
int message__attributes(const lk_device_name *path, uint64_t num_id, const char *gateway,
                        const char *subfolder, mosquitto_property **props);
/* Publish a copy of payload (not retained), as the broker's client: 0, or
 * the broker's error, props then still the caller's. */
int message__publish(const char *topic, const void *payload, size_t len, int qos,
                     mosquitto_property *props);
/* Publish JSON {"deviceId",...} to latchkey/P/L/R/D/online|offline. */
void message__presence(struct plg_conn *c, int online, const char *detail);
/* The offline notice of a connection that was superseded or kicked (conn.c). */
void message__offline(struct plg_conn *c, const char *why);

/* # Shared subscriptions (share.c) */

#define SHARE_MAX_PER_CLIENT_LIMIT 64
/* attributes: IoT Core's attributes of a device's message
 * (message__attributes), for the copies. */
void share__init(int (*attributes)(const lk_device_name *path, uint64_t num_id, const char *gateway,
                                   const char *sub, mosquitto_property **props));
/* "$share/GROUP/FILTER": 1 with the group (glen bytes) and the filter
 * behind it, 0 for a topic that is not a share, -1 (why set) malformed. */
int share__parse(const char *topic, const char **group, size_t *glen, const char **filter,
                 const char **why);
/* Log (rate-limited) why c's subscription to topic is refused:
 * MOSQ_ERR_ACL_DENIED. */
int share__refuse(const struct plg_conn *c, const char *topic, const char *why);
/* A backend's SUBSCRIBE or UNSUBSCRIBE of filter, plain (group NULL) or in
 * a group, already judged allowed for its project: remembered, or refused
 * (logged) for an overlap with another of the client id's subscriptions or
 * a limit. MOSQ_ERR_SUCCESS or MOSQ_ERR_ACL_DENIED. */
int share__subscription(struct plg_conn *c, int access, const char *topic, const char *group,
                        size_t glen, const char *filter);
/* A backend connection authenticated (clean start: its session's
 * subscriptions are gone) / a connection record freed. */
void share__connect(struct plg_conn *c);
void share__gone(const struct plg_conn *c);
/* The message path: share__begin at each MOSQ_EVT_MESSAGE, share__note from
 * the rewrite (which device, which subfolder), share__message once the
 * topic is final and the message accepted (deals the copies), and at every
 * READ check share__read_denied (1: the plugin dealt this group's copy). */
void share__begin(void);
void share__note(const lk_device_name *path, uint64_t num_id, const char *gateway, const char *sub);
void share__message(const struct mosquitto_evt_message *ed);
int share__read_denied(const struct mosquitto_evt_acl_check *ed);
void share__tick(void);
void share__cleanup(void);
/* # Routing and the push spool (route.c) */

/* Opens plugin_opt_spool (if set): 0, or -1 logged. */
int route__init(void);
void route__cleanup(void);
/* The change feed: a registry changed (its notification configs), the push
 * subscriptions changed. */
void route__forget_registries(void);
void route__forget_subscriptions(void);
/* The downstream topic of what device p sent (t, sub) into buf: the routed
 * topic of the registry's first matching notification config, else the
 * default backend topic. 0; -1 the topic cannot be formed; -2 the
 * registry's configs cannot be read (logged). */
int route__topic(const lk_device_name *p, enum plg_topic t, const char *sub, char *buf, size_t size,
                 size_t *len);
/* When what p sent is routed to a topic with push subscriptions: stores
 * it in the spool for each (a full queue drops only its copy). 0 stored or
 * nothing to store; -1 not stored (logged): the caller must not let the
 * publish be acknowledged. */
int route__spool(const lk_device_name *p, uint64_t num_id, const char *gateway, enum plg_topic t,
                 const char *sub, const void *payload, size_t len);

/* A device registered just in time: latchkey/P/L/R/D/registered. */
void message__registered(const struct plg_conn *c, const char *via);

/* # Just-in-time registration (jit.c) */

enum jit_result { JIT_REGISTERED = 0, JIT_REFUSED = 1, JIT_UNAVAILABLE = 2 };
/* Whether p's registry allows JIT: 1 or 0 (also for no such registry), or
 * -1 with *err when the registry cannot be read. Cached until the change
 * feed changes a registry (jit__forget). */
int jit__enabled(const lk_device_name *p, lk_err *err);
void jit__forget(void);
void jit__cleanup(void);
/* Register p's device from its token's x5c: the global rate first, then
 * lk_verify_jit_token, then lk_registry_jit_register. reason says what
 * happened (never the token); REFUSED is the client's doing, UNAVAILABLE
 * the server's (or the rate). */
enum jit_result jit__register(const lk_device_name *p, const char *password, int64_t now,
                              char *reason, size_t reason_size, lk_err *err);

/* # Retained presence (presence.c) */

/* latchkey/P/presence/L/R/D, retained, and the record for the next flush. */
void presence__note(const struct plg_conn *c, int online, const char *detail);
/* Each tick: the reset after a start, pending tombstones (tombstones_due). */
void presence__tick(int64_t now);
/* With the activity flush: the presence records. */
void presence__flush(void);
/* The change feed named a deleted device's presence to clear. */
void presence__tombstones_due(void);
void presence__cleanup(void);

/* # latchkeyd's bridge (bridge.c) */

/* MOSQ_EVT_ACL_CHECK for a CONN_BRIDGE connection: only QoS 0/1, not
 * retained publishes to bridge topics of existing, unblocked devices within
 * their rates and sizes. Denied otherwise; never closes the connection. */
int bridge__acl(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed);
/* MOSQ_EVT_MESSAGE for a CONN_BRIDGE connection: rewritten downstream. */
int bridge__message(struct plg_conn *c, struct mosquitto_evt_message *ed);
/* Reports the denials not logged one by one, every 10 s. */
void bridge__tick(int64_t now);

/* # Gateways (gateway.c) */

/* (publish.c) A publish of device c (direct or attached) to its events or
 * state: QoS, its message rate, sizes, its state rate; a retained one is
 * sent on by the plugin itself. MOSQ_ERR_SUCCESS or a denial (c may be
 * queued for a kick). */
int publish__check(struct plg_conn *c, enum plg_topic t, const char *sub,
                   const struct mosquitto_evt_acl_check *ed, int64_t now);

/* MOSQ_EVT_ACL_CHECK of a device connection for a topic of another device,
 * or an attach or detach (kind as lk_device_topic_split, device the id in
 * the topic): a gateway's attach/detach are handled here (always denied:
 * nothing goes on), its publishes and subscriptions for attached devices
 * judged; a device that is not a gateway is closed for any of it. */
int gateway__acl(struct plg_conn *c, const struct mosquitto_evt_acl_check *ed, lk_topic kind,
                 const char *device, const char *sub);
/* MOSQ_EVT_MESSAGE of a gateway for an attached device's events or state:
 * rewritten as that device's. */
int gateway__message(struct plg_conn *c, struct mosquitto_evt_message *ed);
/* A direct connection of a device: its attachment (if any) is dropped. */
void gateway__direct(struct plg_conn *c);
/* A gateway's connection is gone: its devices go offline (then conn__free). */
void gateway__gone(struct plg_conn *c);
/* Re-check an attached device (the change feed, or its gateway changed). */
void gateway__recheck(struct plg_conn *c);
/* A gateway's own record was re-read: its type or auth method may have
 * changed. */
void gateway__changed(struct plg_conn *gw, lk_reg_gateway_type type, lk_reg_gateway_auth auth);
/* conn.c's detach: drop attachment c, telling the gateway why. Frees c. */
void gateway__drop(struct plg_conn *c, const char *why);

/* # Delivery: config and commands (deliver.c) */

void deliver__config(struct plg_conn *c);
/* Deliver every pending command (or decide it NOT_CONNECTED). */
void deliver__commands(int64_t now);

/* # Backends when not connected (backends.c) */

/* 1 when the registry has any backend (presence messages go nowhere
 * otherwise); 1 when that cannot be read. */
int backends__any(void);
/* The backend's project: 0, or -1 for no such backend or a read error. */
int backends__project(const char *name, char project[LK_PROJECT_MAX + 1]);
/* 1 when id is a client id backend name may use: NAME or NAME/... */
int backends__id_ok(const char *name, const char *id);
/* The registry changed its backends: drop what is cached. */
void backends__forget(void);

/* # Per-device limits (limits.c) */

#define LIMIT_NONE UINT32_MAX
enum plg_rate { RATE_OK, RATE_DROP, RATE_CLOSE };
int limits__init(size_t max_entries);
void limits__cleanup(void);
/* The device's entry, pinned while a connection holds it; LIMIT_NONE when
 * the table is full of pinned entries. */
uint32_t limits__pin(uint64_t num_id);
void limits__unpin(uint32_t i);
/* 1 when one more connect is within the device's connect rate (taken). */
int limits__connect(uint32_t i, int64_t now_ms);
/* One more message: within the rate, over it (drop), or kept over twice it. */
enum plg_rate limits__message(uint32_t i, int64_t now);
/* 1 when a state report is within the state rate (and counts it). */
int limits__state(uint32_t i, int64_t now_ms);

/* # Log lines (plog.c; docs/plugin.md, "Logs") */

/* A line's severity: what a device's level lets through (ERROR: error and
 * warn; INFO: and info; DEBUG: all; NONE: nothing). */
enum plog_sev { PLOG_ERROR = 1, PLOG_WARN = 2, PLOG_INFO = 3, PLOG_DEBUG = 4 };
/* A device's effective level: its own, else its registry's, else
 * plugin_opt_log_level. */
int plog__effective(lk_reg_log_level device, lk_reg_log_level registry);
/* The level of c's lines (the plugin's for anything but a device, or c NULL). */
int plog__level(const struct plg_conn *c);
/* Whether a line of sev is written at level. */
int plog__on(int level, enum plog_sev sev);
/* A line of one's own: plog__begin, kvlog_* fields, plog__emit (the caller
 * has asked plog__on). */
void plog__begin(struct kvlog *l, enum plog_sev sev, const char *event);
void plog__emit(struct kvlog *l, enum plog_sev sev);
/* event, device (when not NULL) and msg, at the plugin's level. */
void plog__msg(enum plog_sev sev, const char *event, const char *device, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* event, c's device and msg, at c's level. */
void plog__dev(const struct plg_conn *c, enum plog_sev sev, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* # Refusal logs (refusals.c) */

/* 1 when a refusal of kind `reason` (a string literal) from addr may be
 * logged now; else it is counted and reported later. */
int refusals__allow(const char *addr, const char *reason, int64_t now);
void refusals__tick(int64_t now);
void refusals__cleanup(void);

/* # Metrics: the shared counters (metrics.c, service/common/lk_metrics_shm.h) */

/* Makes plugin_opt_metrics_file (if set): 0, or -1 logged. Every other
 * call does nothing while it is unset. */
int metrics__init(void);
void metrics__cleanup(void);
/* A device connection accepted (counted in its registry's open
 * connections) / its record freed. */
void metrics__connected(struct plg_conn *c, const lk_device_name *p);
void metrics__gone(struct plg_conn *c);
/* A refused connect: reason is an enum lk_mshm_reason; device the client
 * id (a device's path goes into the ring of recent refusals with detail,
 * which must never hold a token). */
void metrics__refused(const char *device, unsigned reason, const char *detail, int64_t now);
enum plg_metric { METRIC_EVENT, METRIC_STATE, METRIC_CONFIG, METRIC_COMMAND };
void metrics__message(const lk_device_name *p, enum plg_metric what);
/* A verified-token cache lookup: hit or miss. */
void metrics__cache(int hit);
/* The registry lookup of a connect: metrics__lookup(metrics__start()'s
 * value) once it is done (0 when metrics are off: nothing measured). */
int64_t metrics__start(void);
void metrics__lookup(int64_t start);

/* # The change feed */

/* A change after which nothing the plugin caches may be trusted (a
 * registry changed, the feed was pruned past us, or a kind this plugin does
 * not know): plugin.c empties every cache, tokens.c drops a loaded cache. */
static inline int change__wide(lk_reg_change_kind kind)
{
    switch (kind) {
    case LK_CHANGE_DEVICE:
    case LK_CHANGE_DEVICE_DELETED:
    case LK_CHANGE_CONFIG:
    case LK_CHANGE_COMMAND:
    case LK_CHANGE_BACKEND:
    case LK_CHANGE_SUBSCRIPTION:
    case LK_CHANGE_PRESENCE_CLEAR:
        return 0;
    default:
        return 1;
    }
}

/* # The verified-token cache across restarts (tokens.c) */

/* Load plugin_opt_token_cache_file into the empty cache at start, unless
 * the registry changed registry-wide since it was saved. Never fails the
 * start: without the file every device's first token is checked. */
void tokens__load(void);
/* Save it when it changed, at most every token_cache_save seconds (force:
 * now, as at shutdown). */
void tokens__save(int64_t now, int force);
/* The cache was emptied: the next save writes that. */
void tokens__cleared(void);

/* # Activity: in-memory times, flushed together (activity.c) */

/* ACT_GATEWAY: attached through gateway status (its id): lastAccessedGateway*. */
enum plg_activity { ACT_HEARTBEAT, ACT_EVENT, ACT_STATE, ACT_CONFIG_SEND, ACT_ERROR, ACT_GATEWAY };
void activity__note(uint64_t num_id, enum plg_activity what, int64_t t, const char *status);
/* The credential (fingerprint, lk_cred_fingerprint) the device connected
 * with at t: lk_reg_activity.last_key, written with the other times. */
void activity__note_key(uint64_t num_id, int64_t t, const uint8_t fp[32]);
void activity__flush(void);
void activity__cleanup(void);

/* # State reports waiting for a busy registry (stateq.c) */

/* Write the state report (lk_registry_add_state), or, when the registry is
 * busy or other reports already wait, keep it to be written again: the
 * newest a device, bounded (plugin_opt_state_wait_max reports, STATEQ_BYTES); a report
 * beyond the bounds is dropped with a log line. */
void stateq__add(const lk_device_name *p, uint64_t num_id, const void *data, uint32_t len,
                 int64_t t);
/* Write the waiting reports in order, until one finds the registry busy:
 * once a second, or now with force (at cleanup). */
void stateq__flush(int force);
void stateq__cleanup(void);

/* # The ground floor: shared state and clock (state.c) */

struct plg_state {
    struct plg_options opt;
    lk_registry *reg;
    lk_verifier *verifier;
    lk_vcache *vcache;
    int64_t since;               /* change feed position */
    int commands_due;            /* look at pending commands on the next tick */
    int changes_unread;          /* an error or out of memory left changes in the feed unread */
    int64_t feed_failing_since;  /* the change feed could not be read since (0 = read) */
    int64_t started;             /* plugin init, seconds */
    int64_t ticks;               /* ticks seen */
    int64_t next_flush;
    int64_t next_cache_save;
    uint64_t cache_saved_inserts; /* the cache's inserts at its last save; UINT64_MAX: save */
    mosquitto_plugin_id_t *id;
};
extern struct plg_state plg;

/* The give-back rule of the tables a flush empties (activity, presence): a
 * burst (a fleet reconnecting at once) grows them to the fleet's size; once
 * a flush needs under a quarter of one — or nothing, the fleet idle since —
 * it is freed instead of keeping 0.5 kB a device for ever (a steady fleet
 * keeps its table). used: the entries this flush wrote. */
static inline int flush__give_back(size_t used, size_t cap)
{
    return cap > 1024 && used < cap / 4;
}

/* The bucket of a numeric id in a table of mask + 1 (a power of two)
 * buckets: Fibonacci hashing, the high half of the product. */
static inline size_t hash__num(uint64_t n, size_t mask)
{
    return (size_t)((n * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* FNV-1a of the string s, continuing from h (start with HASH_STR_SEED; feed
 * the result back in to hash several strings as one). */
#define HASH_STR_SEED 1469598103934665603ull
static inline uint64_t hash__str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The smallest power of two >= n, from at least `least` (a power of two). */
static inline size_t pow2__at_least(size_t least, size_t n)
{
    while (least < n)
        least <<= 1;
    return least;
}

/* Wall-clock time in seconds and milliseconds (TICK carries none usable). */
int64_t clock__now(void);
int64_t clock__now_ms(void);

#endif /* LK_PLUGIN_H */
