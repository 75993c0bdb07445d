/*
 * lk_iotcore.h — IoT Core's naming rules and limits, in one place.
 *
 * Source: docs/iotcore.md §Names and limits, §Sizes and rates, §Resources
 * (config/state), §Credentials and CA certificates. The
 * registry, the broker plugin and the tools all take their rules from here;
 * docs/protocol.md explains each choice where the reference left one.
 *
 * The token rules (skew, lifetime, algorithms) are in lk_verify.h; MQTT
 * topics belong to the broker plugin.
 */
#ifndef LK_IOTCORE_H
#define LK_IOTCORE_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"

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
/* The longest device path, projects/P/locations/L/registries/R/devices/D
 * (the MQTT client id), that the rules above allow: 644 bytes. */
#define LK_DEVICE_PATH_MAX (9u + LK_PROJECT_MAX + 11u + LK_LOCATION_MAX + 12u + LK_ID_MAX + 9u + \
                            LK_ID_MAX)

/* Metadata: keys like ids but 1..128 characters; values up to 32 KB; keys
 * and values together under 256 KB; at most 500 pairs. */
#define LK_METADATA_KEY_MAX 128u
#define LK_METADATA_VALUE_MAX (32u * 1024u)
#define LK_METADATA_TOTAL_MAX (256u * 1024u)
#define LK_METADATA_PAIRS_MAX 500u

#define LK_DEVICE_CREDENTIALS_MAX 3u
#define LK_REGISTRY_CERTS_MAX 10u
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

#ifdef __cplusplus
}
#endif
#endif /* LK_IOTCORE_H */
