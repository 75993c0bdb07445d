/*
 * lk_iotcore.h — IoT Core's naming rules and limits, in one place.
 *
 * Source: docs/iotcore.md §Names and limits, §Sizes and rates, §Resources
 * (config/state), §Credentials and CA certificates. The
 * registry, the broker plugin and the tools all take their rules from here;
 * docs/protocol.md explains each choice where the reference left one.
 *
 * Also the wire grammar both sides speak: resource paths (the MQTT client
 * id), the device's MQTT topics, the topics backends receive, and how a
 * backend's secret is stored. The token rules (skew, lifetime, algorithms)
 * are in lk_verify.h.
 */
#ifndef LK_IOTCORE_H
#define LK_IOTCORE_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_sha256.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Registry and device ids: [a-zA-Z][-a-zA-Z0-9._+~%]{2,254}, not starting
 * with "goog" (any case). */
#define LK_ID_MIN 3u
#define LK_ID_MAX 255u
/* Project ids (Google's rule): [a-z][-a-z0-9]{4,28}[a-z0-9]. */
#define LK_PROJECT_MIN 6u
#define LK_PROJECT_MAX 30u
/* Locations (cloud regions): [a-z][-a-z0-9]{0,62}. */
#define LK_LOCATION_MAX 63u
/* The longest registry path, projects/P/locations/L/registries/R, and
 * device path, .../devices/D (the MQTT client id), that the rules above
 * allow: 379 and 644 bytes. */
#define LK_REGISTRY_PATH_MAX (9u + LK_PROJECT_MAX + 11u + LK_LOCATION_MAX + 12u + LK_ID_MAX)
#define LK_DEVICE_PATH_MAX (LK_REGISTRY_PATH_MAX + 9u + LK_ID_MAX)

/* Metadata: keys like ids but 1..128 characters; values up to 32 KB; keys
 * and values together under 256 KB; at most 500 pairs. */
#define LK_METADATA_KEY_MAX 128u
#define LK_METADATA_VALUE_MAX (32u * 1024u)
#define LK_METADATA_TOTAL_MAX (256u * 1024u)
#define LK_METADATA_PAIRS_MAX 500u

#define LK_DEVICE_CREDENTIALS_MAX 3u
#define LK_REGISTRY_CERTS_MAX 10u
#define LK_GATEWAYS_PER_DEVICE_MAX 10u     /* gateways a device may be bound to */
#define LK_DEVICES_PER_GATEWAY_MAX 10000u  /* devices bound to one gateway */
#define LK_CONFIG_VERSIONS_KEPT 10u
#define LK_STATES_KEPT 10u
#define LK_CONFIG_MAX (64u * 1024u)
#define LK_STATE_MAX (64u * 1024u)
#define LK_EVENT_MAX (256u * 1024u)
#define LK_COMMAND_MAX (256u * 1024u)  /* unconfirmed in IoT Core: as events */
#define LK_SUBFOLDER_MAX 256u

/* Per-connection limits (defaults; the broker plugin makes them settings). */
#define LK_RATE_MESSAGES_PER_S 100u
#define LK_RATE_STATE_PER_S 1u
#define LK_RATE_CONFIG_PER_S 1u
#define LK_IDLE_TIMEOUT_S 1200u       /* 20 minutes */
#define LK_CONNECTION_MAX_S 86400u    /* 24 hours */

/* Times as IoT Core writes them: RFC 3339 in UTC, "2024-05-01T12:00:00Z"
 * (the decimal number of seconds when t is out of gmtime's range). Writes
 * buf (LK_TIME_MAX bytes always suffice) and returns it. */
#define LK_TIME_MAX 32u
const char *lk_time_rfc3339(int64_t t, char *buf, size_t size);

/* 1 when s[0..len) is a valid registry or device id. */
int lk_id_valid(const char *s, size_t len);
/* 1 when s[0..len) is a valid project id. */
int lk_project_valid(const char *s, size_t len);
/* 1 when s[0..len) is a valid location. */
int lk_location_valid(const char *s, size_t len);
/* 1 when s[0..len) is a valid metadata key. */
int lk_metadata_key_valid(const char *s, size_t len);
/* 1 when s[0..len) is a valid event or command subfolder: 1..256
 * characters, no NUL, '+' or '#', not starting or ending with '/', no empty
 * level ("a//b"). */
int lk_subfolder_valid(const char *s, size_t len);

/*
 * Why a name is invalid, as one sentence for a tool to print, e.g.
 * "a device id must start with a letter" (what = "device id"). Returns NULL
 * when the name is valid. Writes into buf (at least 128 bytes recommended).
 */
const char *lk_id_why(const char *what, const char *s, size_t len, char *buf, size_t size);

/*
 * # Resource paths
 *
 * Write projects/P/locations/L/registries/R (lk_registry_path) or
 * .../devices/D (lk_device_path) NUL-terminated into buf and its length
 * into *len (len may be NULL). D may be the device id or its numeric id, as
 * resource names give either. LK_ERR_ARG for a NULL or empty part, a part
 * longer than its rule allows (LK_PROJECT_MAX, LK_LOCATION_MAX, LK_ID_MAX)
 * or holding a byte outside printable ASCII or a '/'; LK_ERR_BUFFER when
 * size is too small (LK_REGISTRY_PATH_MAX + 1 and LK_DEVICE_PATH_MAX + 1
 * always suffice). On failure buf is wiped and *len is 0.
 */
lk_err lk_registry_path(const char *project, const char *location, const char *registry,
                        char *buf, size_t size, size_t *len);
lk_err lk_device_path(const char *project, const char *location, const char *registry,
                      const char *device, char *buf, size_t size, size_t *len);

/* A device path split into its parts, each NUL-terminated: copies, so the
 * struct may be copied. */
typedef struct lk_device_name {
    char project[LK_PROJECT_MAX + 1];
    char location[LK_LOCATION_MAX + 1];
    char registry[LK_ID_MAX + 1];
    char device[LK_ID_MAX + 1];
} lk_device_name;

/* Parse s[0..len) as exactly projects/P/locations/L/registries/R/devices/D
 * with a valid project, location, registry id and device id. LK_OK, or
 * LK_ERR_ARG (out zeroed) for anything else: NULL, over LK_DEVICE_PATH_MAX,
 * another shape, an invalid part. */
lk_err lk_device_path_parse(const char *s, size_t len, lk_device_name *out);

/*
 * # MQTT topics
 *
 * A device publishes to /devices/D/events[/SUBFOLDER] and /devices/D/state,
 * subscribes to /devices/D/config and /devices/D/commands/#, and receives
 * /devices/D/config and /devices/D/commands[/SUBFOLDER]. The broker passes
 * what it accepts to backends as latchkey/P/L/R/D/events[/SUBFOLDER] and
 * latchkey/P/L/R/D/state, with latchkey/P/L/R/D/online and .../offline when
 * the device comes and goes; a backend of project P reads under latchkey/P/.
 */
typedef enum lk_topic {
    LK_TOPIC_NONE = 0,     /* not a topic of this device */
    LK_TOPIC_OTHER,        /* under /devices/D/, but none of the below */
    LK_TOPIC_EVENTS,       /* events[/SUBFOLDER] */
    LK_TOPIC_STATE,        /* state */
    LK_TOPIC_CONFIG,       /* config (device topics only) */
    LK_TOPIC_COMMANDS,     /* commands[/SUBFOLDER] (device topics only) */
    LK_TOPIC_COMMANDS_ALL, /* commands/#, the subscription (device topics only) */
    LK_TOPIC_ONLINE,       /* online (backend topics only) */
    LK_TOPIC_OFFLINE,      /* offline (backend topics only) */
    LK_TOPIC_ATTACH,       /* attach: a gateway takes the device on (device topics only) */
    LK_TOPIC_DETACH,       /* detach: ... and lets it go */
    LK_TOPIC_ERRORS,       /* errors: what the broker tells a gateway (its own id) */
    LK_TOPIC_REGISTERED    /* registered: registered just in time (backend topics only) */
} lk_topic;

/* The longest topic a device sees (/devices/D/commands/SUBFOLDER) and the
 * longest a backend sees (latchkey/P/L/R/D/events/SUBFOLDER). */
#define LK_DEVICE_TOPIC_MAX (9u + LK_ID_MAX + 10u + LK_SUBFOLDER_MAX)
#define LK_BACKEND_TOPIC_MAX (9u + LK_PROJECT_MAX + 1u + LK_LOCATION_MAX + 1u + LK_ID_MAX + 1u + \
                              LK_ID_MAX + 8u + LK_SUBFOLDER_MAX)

/* Write device's topic of this kind NUL-terminated into buf, *len its length
 * (len may be NULL). subfolder (NULL or "" for none) only with EVENTS and
 * COMMANDS. LK_ERR_ARG for an invalid device id, a kind that is not a device
 * topic, an invalid subfolder or one with another kind; LK_ERR_BUFFER when
 * size is too small (LK_DEVICE_TOPIC_MAX + 1 suffices). On failure buf is
 * wiped and *len is 0. */
lk_err lk_device_topic(const char *device, lk_topic kind, const char *subfolder, char *buf,
                       size_t size, size_t *len);

/* Which of device's topics topic[0..len) is: NONE when it is not under
 * /devices/DEVICE/, OTHER when it is but names nothing (commands/# is
 * COMMANDS_ALL). For EVENTS and COMMANDS with a valid subfolder,
 * *subfolder points to it inside topic (it runs to topic + len), else NULL. */
lk_topic lk_device_topic_parse(const char *device, const char *topic, size_t len,
                               const char **subfolder);

/* The device id of a device topic, /devices/D/...: D copied NUL-terminated
 * into device (LK_ID_MAX + 1 bytes) and the kind of topic it is for that
 * device (lk_device_topic_parse); LK_TOPIC_NONE (device "") when topic does
 * not start with /devices/ and a valid id followed by '/'. */
lk_topic lk_device_topic_split(const char *topic, size_t len, char device[LK_ID_MAX + 1],
                               const char **subfolder);

/* Write the backend topic of this kind (EVENTS with an optional subfolder,
 * STATE, ONLINE, OFFLINE, REGISTERED) for the device named d; as lk_device_topic
 * (LK_BACKEND_TOPIC_MAX + 1 suffices). */
lk_err lk_backend_topic(const lk_device_name *d, lk_topic kind, const char *subfolder, char *buf,
                        size_t size, size_t *len);

/* Write the device's presence topic, latchkey/P/presence/L/R/D (the retained
 * message that says whether it is connected: docs/plugin.md, "Presence").
 * The device is a leaf there: Mosquitto keeps a hash table for every topic
 * level that has children in its retained tree, and under L/R/D/presence
 * each device's level would need one (0.7 kB a device). "presence" is
 * therefore, like "topics", not a location a new registry may have. As
 * lk_backend_topic (LK_PRESENCE_TOPIC_MAX + 1 suffices). */
#define LK_PRESENCE_LEVEL "presence"
#define LK_PRESENCE_TOPIC_MAX (9u + LK_PROJECT_MAX + 10u + LK_LOCATION_MAX + 1u + LK_ID_MAX + 1u + LK_ID_MAX)
lk_err lk_presence_topic(const lk_device_name *d, char *buf, size_t size, size_t *len);

/* The length of "latchkey/PROJECT/" when topic[0..len) starts with it, else
 * 0: where a backend of project may read. */
size_t lk_backend_topic_in_project(const char *project, const char *topic, size_t len);

/*
 * # The bridge topic
 *
 * latchkeyd passes what HTTP devices send to the broker by publishing, under
 * its own bridge identity, to
 * latchkeyd/projects/P/locations/L/registries/R/devices/D/events[/SUBFOLDER]
 * and .../state; the broker plugin checks the device and its rate and
 * republishes on the device's backend topic (see docs/plugin.md). MQTT
 * refuses '+' and '#' anywhere in a published topic (and drops the
 * connection that tries), so a device whose registry or device id holds a
 * '+' has no bridge topic.
 */
#define LK_BRIDGE_TOPIC_PREFIX "latchkeyd/"
#define LK_BRIDGE_TOPIC_MAX (sizeof LK_BRIDGE_TOPIC_PREFIX - 1u + LK_DEVICE_PATH_MAX + 8u + LK_SUBFOLDER_MAX)

/* "latchkeyd/projects/P/locations/L/registries/R/devices/D/events[/SUBFOLDER]"
 * or ".../state" for the device named d; kind LK_TOPIC_EVENTS (optional
 * subfolder, lk_subfolder_valid; NULL or "" for none) or LK_TOPIC_STATE.
 * Same buffer/len conventions and errors as lk_backend_topic, and
 * LK_ERR_ARG when d's parts are not valid names or hold a '+'
 * (LK_BRIDGE_TOPIC_MAX + 1 suffices). */
lk_err lk_bridge_topic(const lk_device_name *d, lk_topic kind, const char *subfolder, char *buf,
                       size_t size, size_t *len);

/* The device and kind of the bridge topic topic[0..len): LK_TOPIC_EVENTS
 * (*subfolder NULL, or pointing into topic at a valid subfolder that runs to
 * topic + len) or LK_TOPIC_STATE, with *d filled; LK_TOPIC_NONE for anything
 * else (d zeroed, *subfolder NULL): another prefix or shape, an invalid name,
 * a '+' or '#' anywhere, an empty or invalid subfolder, a subfolder on state,
 * a trailing '/', over LK_BRIDGE_TOPIC_MAX. d and subfolder may be NULL. */
lk_topic lk_bridge_topic_parse(const char *topic, size_t len, lk_device_name *d, const char **subfolder);

/*
 * # Routing to named topics (eventNotificationConfigs, stateNotificationConfig)
 *
 * A registry's notification configs name Pub/Sub topics of the registry's own
 * project, "projects/P/topics/T". Backends read topic T of project P at
 *   latchkey/P/topics/T/L/R/D/events[/SUBFOLDER]   and   .../state
 * (so "topics" is not a location a registry may have), and push subscriptions
 * of T get the same messages. T follows Pub/Sub's rule, without '+' (MQTT
 * cannot carry it in a topic): lk_pubsub_name_valid.
 */
#define LK_PUBSUB_NAME_MIN 3u
#define LK_PUBSUB_NAME_MAX 255u
#define LK_TOPICS_LEVEL "topics"
#define LK_NOTIFY_CONFIGS_MAX 10u
/* 1 when s[0..len) is a valid topic or subscription id: 3..255 characters,
 * a letter first, then letters, digits and - _ . ~ %, not starting with
 * "goog". (Pub/Sub also allows '+'; latchkey does not.) */
int lk_pubsub_name_valid(const char *s, size_t len);
#define LK_ROUTED_TOPIC_MAX (LK_BACKEND_TOPIC_MAX + 8u + LK_PUBSUB_NAME_MAX)
/* Write latchkey/P/topics/T/L/R/D/events[/SUBFOLDER] (kind LK_TOPIC_EVENTS)
 * or .../state (LK_TOPIC_STATE) for device d routed to topic T (d's project);
 * as lk_backend_topic (LK_ROUTED_TOPIC_MAX + 1 suffices). */
lk_err lk_routed_topic(const lk_device_name *d, const char *topic_id, lk_topic kind, const char *subfolder,
                       char *buf, size_t size, size_t *len);

/*
 * # Gateways (docs/iotcore.md, "Gateways")
 *
 * A gateway attaches a device on its own connection (a QoS 1 publish to
 * /devices/D/attach) and then publishes and subscribes on D's topics. Whether
 * it may is decided by the gateway's gatewayAuthMethod, with the numbers of
 * IoT Core's enum (lk_reg_gateway_auth): 0 unspecified (no device may use the
 * gateway), 1 association only (D must be bound to the gateway; a token sent
 * is ignored), 2 device auth token only (D's own token, verified as for a
 * direct connection; the binding is not looked at), 3 both.
 */
#define LK_GATEWAY_ATTACHED_MAX 1000u /* devices attached to one gateway at once */
#define LK_GATEWAY_NEEDS_BINDING 1u
#define LK_GATEWAY_NEEDS_TOKEN 2u
#define LK_GATEWAY_REFUSES 4u
/* What a gateway with this auth method needs before it may act for a device:
 * LK_GATEWAY_NEEDS_BINDING and/or LK_GATEWAY_NEEDS_TOKEN, or
 * LK_GATEWAY_REFUSES (unspecified, or a number outside the enum). */
unsigned lk_gateway_needs(int auth_method);
/* The decision, in one place: LK_OK when a gateway with auth_method may act
 * for a device, given whether the pair is bound and whether the device's own
 * token was verified (each looked at only when the method needs it); else
 * LK_ERR_REFUSED with *why (a static sentence, no secret) saying which rule
 * refused it. why may be NULL. */
lk_err lk_gateway_admit(int auth_method, int bound, int token_verified, const char **why);

/*
 * # Backend secrets
 *
 * A backend logs in with a secret as its MQTT password; the registry keeps
 * only this hash of it: SHA-256 of the secret's text, secret[0..len).
 */
void lk_backend_secret_hash(const char *secret, size_t len, uint8_t out[LK_SHA256_BYTES]);

#ifdef __cplusplus
}
#endif
#endif /* LK_IOTCORE_H */
