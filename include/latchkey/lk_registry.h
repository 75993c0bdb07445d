/*
 * lk_registry.h — the device registry: projects, locations, registries,
 * devices, their credentials, config versions and state history, with IoT
 * Core's fields and limits (docs/iotcore.md §Registry; the
 * limits themselves are in lk_iotcore.h).
 *
 * Storage: SQLite is the embedded default ("sqlite:PATH" or a plain path).
 * The functions below are the whole interface; a second backend (PostgreSQL,
 * for deployments that outgrow one machine) implements the same operations
 * behind service/registry/backend.h, chosen by the URL scheme.
 *
 * Guarantees:
 *  - Every change is one transaction: it happens whole or not at all, and a
 *    refused change (invalid input, limit, conflict) writes nothing.
 *  - A crash at any point leaves the database consistent (SQLite WAL,
 *    synchronous=FULL for the tools).
 *  - Two writers never corrupt or silently overwrite each other: writes take
 *    the database's write lock up front (BEGIN IMMEDIATE), wait up to the
 *    busy timeout, and config updates carry optimistic concurrency
 *    (version_to_update).
 *  - The registry knows nothing of MQTT: the broker plugin reads the same
 *    database and learns of changes through lk_registry_changes().
 *
 * Every function that can fail returns lk_err and, where it takes
 * char *why, writes a one-line reason for a person (what is wrong and what is
 * allowed) — never a key or a secret. Strings returned inside structs are
 * owned by the struct and freed by its *_free function.
 *
 * Thread safety: a handle belongs to one thread at a time. Several processes
 * may open the same database. A callback (list_*, changes) runs inside the
 * call's read transaction and must not call back into the same handle
 * (LK_ERR_STATE); while an import is open on a handle, only import_add,
 * import_commit and import_abort may be called on it (LK_ERR_STATE).
 *
 * Errors, beyond those named at each function: LK_ERR_ARG (NULL or
 * out-of-range argument), LK_ERR_REG_INVALID (a name, id or value breaks
 * IoT Core's rules), LK_ERR_REG_LIMIT (a count or size limit),
 * LK_ERR_REG_NOT_FOUND, LK_ERR_REG_BUSY (another writer held the database
 * past the busy timeout), LK_ERR_REG_STORAGE (the database failed; why has
 * its message), LK_ERR_NOMEM, LK_ERR_STATE (see above, or a write on a
 * LK_REG_READONLY handle).
 */
#ifndef LK_REGISTRY_H
#define LK_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_iotcore.h"
#include "lk_verify.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_registry lk_registry;

#define LK_REG_CREATE   1u /* create the database (and its schema) if missing */
#define LK_REG_READONLY 2u /* the broker plugin: never writes except touch/state/ack,
                              command outcomes (command_decide) and just-in-time
                              registrations (lk_registry_jit_register) */
#define LK_REG_NOWRITE  4u /* open the file read-only (SQLite's SQLITE_OPEN_READONLY): every
                              write, the broker's too, is LK_ERR_STATE; for listing a database
                              one may not write (see below) */

/* Open (and migrate to the current schema) the registry at url: "sqlite:PATH",
 * "sqlite:///abs/path" or a plain path. Without LK_REG_CREATE the file must
 * exist (LK_ERR_IO otherwise). LK_ERR_REG_SCHEMA: a newer schema than this
 * program's, a file that is not a latchkey registry (an empty file
 * included, unless LK_REG_CREATE), or (LK_REG_READONLY and LK_REG_NOWRITE,
 * which never create or migrate) an older schema. LK_ERR_IO: the file (or,
 * to create it, its directory) cannot be opened; why says which permission
 * is missing. LK_ERR_UNSUPPORTED: "postgres:"/"postgresql:" URLs (no such
 * backend built in yet). CREATE with READONLY or NOWRITE: LK_ERR_ARG.
 *
 * Files (SQLite): a database created here is mode 0640 (less if the umask
 * says so) and, when the caller is root, owned by its directory's owner and
 * group; SQLite gives its -wal and -shm files the database's mode and owner.
 * Writable handles keep the -wal and -shm files when they close (SQLite's
 * persistent WAL, the -wal truncated to 0 bytes), so that a LK_REG_NOWRITE
 * reader without write access to the directory finds them: a WAL database
 * can be read without write access only if they exist and are readable
 * (or can be created). */
lk_err lk_registry_open(const char *url, unsigned flags, lk_registry **out,
                        char *why, size_t why_size);
void lk_registry_close(lk_registry *reg);
/* How long a writer waits for another writer, default 5000 ms. */
void lk_registry_set_busy_timeout(lk_registry *reg, unsigned ms);
/* Read the whole database and check its structure (the broker, before it
 * serves: a damaged file must stop it, not refuse every device later).
 * LK_OK, or LK_ERR_REG_STORAGE with the first problem in why. Reads every
 * page: about a second per few hundred MB. */
lk_err lk_registry_check(lk_registry *reg, char *why, size_t why_size);
/* Backups, restores, the schema version and migration on demand of a
 * registry file: lk_reg_backup.h. */

/* ---- names ---- */

typedef struct lk_reg_name {
    const char *project;   /* lk_project_valid */
    const char *location;  /* lk_location_valid */
    const char *registry;  /* lk_id_valid */
} lk_reg_name;

/* ---- registries ---- */

typedef enum lk_reg_state {
    LK_REG_STATE_UNSPECIFIED = 0, /* = enabled, as in IoT Core */
    LK_REG_STATE_ENABLED = 1,
    LK_REG_STATE_DISABLED = 2
} lk_reg_state;

/* IoT Core's LogLevel (DeviceRegistry.logLevel, Device.logLevel), with its
 * numbers. Stored and shown; nothing acts on it yet. */
typedef enum lk_reg_log_level {
    LK_LOG_LEVEL_UNSPECIFIED = 0,
    LK_LOG_LEVEL_NONE = 10,
    LK_LOG_LEVEL_ERROR = 20,
    LK_LOG_LEVEL_INFO = 30,
    LK_LOG_LEVEL_DEBUG = 40
} lk_reg_log_level;

typedef struct lk_reg_registry {
    char *project, *location, *id;
    lk_reg_state mqtt, http;
    char *event_notification_json; /* eventNotificationConfigs as JSON array text, or NULL */
    char *state_notification_json; /* stateNotificationConfig JSON object text, or NULL */
    int64_t created;               /* seconds since 1970 */
    unsigned ncerts;
    uint64_t ndevices;
    lk_reg_log_level log_level;    /* (schema 3) */
} lk_reg_registry;
void lk_reg_registry_free(lk_reg_registry *r); /* frees members, not r */

/* LK_ERR_REG_EXISTS if the name is taken. UNSPECIFIED is stored as ENABLED.
 * (schema 6) A new registry's location may not be "topics" (LK_TOPICS_LEVEL,
 * a level of the routed MQTT topics) nor "presence" (LK_PRESENCE_LEVEL, of
 * the presence topics): LK_ERR_REG_INVALID; here, in
 * create_registry_full and in import_add_registry. */
lk_err lk_registry_create_registry(lk_registry *reg, const lk_reg_name *name,
                                   lk_reg_state mqtt, lk_reg_state http,
                                   char *why, size_t why_size);
lk_err lk_registry_get_registry(lk_registry *reg, const lk_reg_name *name,
                                lk_reg_registry *out, char *why, size_t why_size);
/* Calls cb for each registry of project/location (NULLs: all), ordered by
 * project, location, id. cb returns 0 to go on, non-zero to stop. */
lk_err lk_registry_list_registries(lk_registry *reg, const char *project,
                                   const char *location,
                                   int (*cb)(void *arg, const lk_reg_registry *r),
                                   void *arg, char *why, size_t why_size);
/* Change mqtt/http state (UNSPECIFIED leaves it) and notification JSON
 * (NULL leaves it, "" clears it). The event JSON must be an array of at most
 * 10 objects with only string members pubsubTopicName and subfolderMatches;
 * the state JSON an object with only a string pubsubTopicName (each at most
 * 64 KB); stored as given. (schema 6: they route, docs/delivery.md) Every
 * config must have a pubsubTopicName "projects/<the registry's project>/
 * topics/T" with T lk_pubsub_name_valid; an event config's
 * subfolderMatches is absent, "" or lk_subfolder_valid. The same rules at
 * create_registry_full, patch_registry and import_add_registry. */
lk_err lk_registry_update_registry(lk_registry *reg, const lk_reg_name *name,
                                   lk_reg_state mqtt, lk_reg_state http,
                                   const char *event_notification_json,
                                   const char *state_notification_json,
                                   char *why, size_t why_size);
/* Everything a registry is created with (lk_registry_create_registry_full,
 * lk_registry_import_add_registry). */
typedef struct lk_reg_registry_spec {
    lk_reg_state mqtt, http;               /* UNSPECIFIED is stored as ENABLED */
    const char *event_notification_json;   /* NULL or "" = none; else as update_registry */
    const char *state_notification_json;   /* NULL or "" = none; else as update_registry */
    lk_reg_log_level log_level;
    const char *const *ca_pems;            /* CA certificates, each as add_cert takes it, */
    const size_t *ca_lens;                 /* in this order (index 0, 1, ...); */
    unsigned ncas;                         /* at most LK_REGISTRY_CERTS_MAX, no two alike */
} lk_reg_registry_spec;
/* A registry with all of spec in one transaction: every part is checked
 * first (as update_registry and add_cert do), and a refusal of any part
 * creates nothing. LK_ERR_REG_EXISTS if the name is taken. */
lk_err lk_registry_create_registry_full(lk_registry *reg, const lk_reg_name *name,
                                        const lk_reg_registry_spec *spec,
                                        char *why, size_t why_size);

/* ---- patch masks ---- */
/* Registry patch (REST registries.patch): the fields named by mask from spec, in one transaction; mask 0 ->
 * LK_ERR_ARG. Each part validated as create_registry_full does; a refused part writes nothing.
 * LK_REG_SET_CERTS replaces the whole CA list with spec->ca_pems (same rules as add_cert; certificates the
 * registry already has are kept without re-checking their expiry, others are checked). Appends LK_CHANGE_REGISTRY
 * when mqtt/http or the notification configs change (as update_registry does: the broker follows both).
 * Details: with LK_REG_SET_MQTT / LK_REG_SET_HTTP, UNSPECIFIED is stored as ENABLED (as at creation);
 * LK_CHANGE_REGISTRY is appended whenever the mask names mqtt, http or a notification config. The CA list keeps spec's order (index 0,
 * 1, ...); a certificate "already had" is one whose DER equals a stored one. Errors: LK_ERR_ARG (NULL reg, name
 * or spec, mask 0 or an unknown bit), LK_ERR_REG_NOT_FOUND, and those of create_registry_full. */
#define LK_REG_SET_MQTT          1u
#define LK_REG_SET_HTTP          2u
#define LK_REG_SET_EVENT_NOTIFY  4u   /* spec->event_notification_json; NULL or "" clears */
#define LK_REG_SET_STATE_NOTIFY  8u   /* spec->state_notification_json; NULL or "" clears */
#define LK_REG_SET_REG_LOG_LEVEL 16u
#define LK_REG_SET_CERTS         32u
lk_err lk_registry_patch_registry(lk_registry *reg, const lk_reg_name *name, const lk_reg_registry_spec *spec,
                                  unsigned mask, char *why, size_t why_size);

/* Refused with LK_ERR_REG_NOT_EMPTY while it has devices, as IoT Core did. */
lk_err lk_registry_delete_registry(lk_registry *reg, const lk_reg_name *name,
                                   char *why, size_t why_size);

/* Registry CA certificates (at most LK_REGISTRY_CERTS_MAX): X.509v3 PEM, a CA
 * certificate (basicConstraints CA:TRUE, keyCertSign if it has a keyUsage),
 * RSA >= 2048 (up to 8192, odd public exponent >= 3 of at most
 * LK_CRED_RSA_E_MAX_BITS = 64 bits, as for device keys) or P-256, need not
 * be self-signed, not expired when added (LK_ERR_REG_CERT otherwise; LK_ERR_REG_EXISTS for a certificate the
 * registry already has). index is the position in the registry's list, in
 * the order added, from 0 (deleting one renumbers those after it). */
typedef struct lk_reg_cert {
    unsigned index;
    char *pem;
    char *subject, *issuer;          /* one-line RFC 2253 */
    int64_t not_before, not_after;
    char *key_type;                  /* "RSA 2048", "EC P-256" */
} lk_reg_cert;
void lk_reg_cert_free(lk_reg_cert *c);
lk_err lk_registry_add_cert(lk_registry *reg, const lk_reg_name *name,
                            const char *pem, size_t pem_len, unsigned *index,
                            char *why, size_t why_size);
lk_err lk_registry_list_certs(lk_registry *reg, const lk_reg_name *name,
                              int (*cb)(void *arg, const lk_reg_cert *c), void *arg,
                              char *why, size_t why_size);
lk_err lk_registry_delete_cert(lk_registry *reg, const lk_reg_name *name,
                               unsigned index, char *why, size_t why_size);

/* ---- provisioning (schema 7): certificate chains, manifest signers, CRLs,
 * just-in-time registration: latchkey/lk_reg_provision.h (included at the
 * end of this header) ---- */

/* ---- devices ---- */

/* IoT Core's GatewayConfig enums, with their numbers. latchkeyd's HTTP
 * bridge acts on them (gatewayInfo, docs/daemon.md); what they allow is
 * lk_gateway_admit's (lk_iotcore.h). */
typedef enum lk_reg_gateway_type {
    LK_GATEWAY_TYPE_UNSPECIFIED = 0,
    LK_GATEWAY_TYPE_GATEWAY = 1,
    LK_GATEWAY_TYPE_NON_GATEWAY = 2
} lk_reg_gateway_type;
typedef enum lk_reg_gateway_auth {
    LK_GATEWAY_AUTH_UNSPECIFIED = 0,
    LK_GATEWAY_AUTH_ASSOCIATION_ONLY = 1,
    LK_GATEWAY_AUTH_DEVICE_AUTH_TOKEN_ONLY = 2,
    LK_GATEWAY_AUTH_ASSOCIATION_AND_DEVICE_AUTH_TOKEN = 3
} lk_reg_gateway_auth;

/* The largest numId a caller may ask for (lk_reg_device_spec.num_id): 2^62,
 * which leaves the numIds assigned after it room that never runs out. */
#define LK_REG_NUM_ID_MAX 4611686018427387904ULL
/* The largest config version a device may be created with: 2^53. */
#define LK_REG_CONFIG_VERSION_MAX 9007199254740992LL

typedef struct lk_reg_credential {
    lk_cred_format format;
    char *pem;                      /* the key or certificate, as registered */
    int64_t expires;                /* 0 = never */
} lk_reg_credential;

typedef struct lk_reg_metadata {
    char *key;
    char *value;
    size_t value_len;
} lk_reg_metadata;

/* (schema 6) Whether the device is connected, as the broker records it. */
typedef enum lk_reg_presence {
    LK_PRESENCE_NEVER = 0,           /* never connected (or not since schema 6) */
    LK_PRESENCE_ONLINE = 1,
    LK_PRESENCE_OFFLINE = 2
} lk_reg_presence;

typedef struct lk_reg_device {
    uint64_t num_id;                 /* server-assigned, unique in the database */
    char *id;
    char *project, *location, *registry;
    int blocked;
    lk_reg_credential creds[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncreds;
    lk_reg_metadata *metadata;
    unsigned nmetadata;
    int64_t created;
    int64_t config_version;          /* the latest config version (>= 1) */
    /* last_config_ack stays 0: a Mosquitto 2.0 plugin cannot see PUBACKs
     * (docs/plugin.md), so nothing records config acknowledgements. */
    int64_t last_heartbeat, last_event, last_state, last_config_ack, last_config_send, last_error;
    char *last_error_status;         /* or NULL */
    /* (schema 3) */
    lk_reg_log_level log_level;
    lk_reg_gateway_type gateway_type;
    lk_reg_gateway_auth gateway_auth_method;
    char *last_accessed_gateway_id;  /* or NULL */
    int64_t last_accessed_gateway_time; /* 0 = never */
    /* (schema 6) presence, as the broker last recorded it */
    lk_reg_presence presence;
    int64_t presence_time;           /* when it became so; 0 = never */
    char *presence_detail;           /* online: the address; offline: the reason; or NULL */
    /* (schema 7) */
    uint8_t last_key[32];            /* SHA-256 of the SPKI of the key last connected with ... */
    int64_t last_key_time;           /* ... and when; 0 = never recorded (last_key all zero) */
    int jit;                         /* 1: registered just in time by its first connection */
} lk_reg_device;
void lk_reg_device_free(lk_reg_device *d); /* frees members, not d */

/* What creating or updating a device sets. */
typedef struct lk_reg_device_spec {
    const char *id;
    int blocked;
    const lk_reg_credential *creds;  /* each validated; see add_credential */
    unsigned ncreds;
    const lk_reg_metadata *metadata;
    unsigned nmetadata;
    const uint8_t *config;           /* initial config (version 1); NULL = empty */
    size_t config_len;
    /* Creating only (create_device, import_add); zero = the defaults. Devices
     * brought over from IoT Core keep what they had there: */
    uint64_t num_id;                 /* the numId asked for; 0 = assign one */
    int64_t config_version;          /* the initial config's version; 0 = 1 */
    int64_t config_cloud_update_time;/* its cloudUpdateTime; 0 = now */
    lk_reg_log_level log_level;
    lk_reg_gateway_type gateway_type;
    lk_reg_gateway_auth gateway_auth_method;
    const char *last_accessed_gateway_id;  /* NULL = none; else lk_id_valid */
    int64_t last_accessed_gateway_time;    /* 0 = never */
    /* (schema 7) Creating, and the credentials an update (LK_REG_SET_CREDS)
     * adds (those the device has already are kept unchecked). The
     * certificates between the credentials' certificates and a registry CA
     * (PEM, concatenated; NULL = none: each certificate credential must be
     * signed directly by a registry CA, IoT Core's rule); the registry CA may
     * be among them. See "Certificate chains" in lk_reg_provision.h. */
    const char *chain_pem;
    size_t chain_len;
    unsigned cert_checks;            /* LK_REG_CHECK_* */
} lk_reg_device_spec;

/* Create a device with version 1 of its config (or spec->config_version,
 * 1..LK_REG_CONFIG_VERSION_MAX). *num_id receives the new numeric id:
 * spec->num_id when it is non-zero, at most LK_REG_NUM_ID_MAX and no device
 * in the database has it; otherwise a new one, above every numId the
 * database has given or kept (the caller compares to learn it was not
 * kept). An assigned numId is never reused after a delete; a numId asked for
 * may be one of a deleted device (a device deleted and imported again keeps
 * its IoT Core numId). LK_ERR_REG_EXISTS if the id is taken in this registry
 * (checked before the credentials). Log level and gateway enums must be
 * values of their enum (LK_ERR_REG_INVALID). Metadata: keys per
 * lk_metadata_key_valid, unique; values UTF-8 text without NUL, at most
 * LK_METADATA_VALUE_MAX bytes; keys + values together under
 * LK_METADATA_TOTAL_MAX bytes; at most LK_METADATA_PAIRS_MAX pairs. */
lk_err lk_registry_create_device(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_spec *spec, uint64_t *num_id,
                                 char *why, size_t why_size);
/* By string id, or (when id is NULL) by num_id. With id NULL, name may be
 * NULL too (any registry: the broker learns only num_ids from the change
 * feed); a name given must then be the device's registry. */
lk_err lk_registry_get_device(lk_registry *reg, const lk_reg_name *name,
                              const char *id, uint64_t num_id, lk_reg_device *out,
                              char *why, size_t why_size);
lk_err lk_registry_list_devices(lk_registry *reg, const lk_reg_name *name,
                                int (*cb)(void *arg, const lk_reg_device *d), void *arg,
                                char *why, size_t why_size);

/* ---- devices a page at a time (latchkeyd's devices.list) ---- */

/* The most ids, numIds or devices one query takes or gives. */
#define LK_REG_QUERY_MAX 10000u

typedef struct lk_reg_device_query {
    const char *const *ids;   size_t nids;       /* deviceIds filter: only these ids (0 = no filter); <= 10000 */
    const uint64_t *num_ids;  size_t nnum_ids;   /* deviceNumIds filter; <= 10000; with ids too: a device matching either */
    lk_reg_gateway_type gateway_type;            /* UNSPECIFIED = any; else only devices of that type
                                                    (NON_GATEWAY matches stored UNSPECIFIED too, as IoT Core:
                                                    a device is a non-gateway unless it says GATEWAY) */
    const char *associations_gateway_id;         /* NULL, or: only devices bound to this gateway (its id, or its
                                                    numId in decimal) */
    const char *associations_device_id;          /* NULL, or: only gateways this device (id or decimal numId) is
                                                    bound to. At most one of the two associations. */
    const char *after_id;                        /* NULL = from the start; else devices whose id sorts after this
                                                    (byte order, SQLite BINARY), the keyset page cursor */
    unsigned limit;                              /* 1..10000 devices at most */
    int full;                                    /* 0: fill only num_id, id, names, blocked, created, config_version,
                                                    activity times, log/gateway columns, (schema 6) presence
                                                    fields (one row read, no creds,
                                                    metadata); 1: everything lk_registry_get_device fills */
} lk_reg_device_query;
/* Devices of registry name matching q, ordered by id, at most q->limit; *more = 1 when at least one more device
 * matches after the last one given (so the caller can make a page token from the last id). The cost of a page must
 * not grow with how deep it is: the query seeks the (registry, device_id) index to after_id (page 1000 of 500 in a
 * registry of 1,000,000 devices in well under 100 ms). An unknown associations id -> LK_ERR_REG_NOT_FOUND with why;
 * ids that match no device are simply absent. cb as list_devices (0 = go on). One read transaction.
 *
 * Filters combine with AND (ids and num_ids between themselves with OR). An id in ids that is not a valid device
 * id, or a num_id of 0, simply matches nothing. The device passed to cb, and its strings, are valid only during
 * the call (do not free them); with full = 0 its creds and metadata are empty. A stopping cb ends the call with
 * LK_OK and *more = 0 (nothing is known past what cb took).
 * Errors: LK_ERR_ARG (NULL reg, name, q, cb or more; an ids or num_ids count without its array or a NULL id; limit
 * 0 or over LK_REG_QUERY_MAX; both associations given), LK_ERR_REG_LIMIT (nids or nnum_ids over
 * LK_REG_QUERY_MAX), LK_ERR_REG_INVALID (a gateway_type that is not a value of its enum), LK_ERR_REG_NOT_FOUND
 * (no such registry, or an unknown associations id, in this registry), and the storage errors; *more is 0 on
 * every failure. */
lk_err lk_registry_query_devices(lk_registry *reg, const lk_reg_name *name, const lk_reg_device_query *q,
                                 int (*cb)(void *arg, const lk_reg_device *d), void *arg, int *more,
                                 char *why, size_t why_size);

#define LK_REG_SET_BLOCKED  1u
#define LK_REG_SET_METADATA 2u  /* replaces all metadata */
#define LK_REG_SET_CREDS    4u  /* replaces all credentials */
#define LK_REG_SET_LOG_LEVEL    8u   /* update_device: spec->log_level (a valid enum value) */
#define LK_REG_SET_GATEWAY_AUTH 16u  /* update_device: spec->gateway_auth_method */
/* Update the fields named by mask from spec (spec->id names the device);
 * mask 0 (or an unknown bit) is LK_ERR_ARG. With LK_REG_SET_CREDS, a
 * credential identical (format, PEM, expiry) to one the device has is kept
 * without a new check; the others are checked as by add_credential. A log
 * level or gateway auth method that is not a value of its enum is
 * LK_ERR_REG_INVALID (nothing written). Appends LK_CHANGE_DEVICE. */
lk_err lk_registry_update_device(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_spec *spec, unsigned mask,
                                 char *why, size_t why_size);
lk_err lk_registry_delete_device(lk_registry *reg, const lk_reg_name *name,
                                 const char *id, char *why, size_t why_size);

/*
 * Credentials. A credential must parse as its format (lk_cred_parse). If the
 * registry has CA certificates, it must be an X.509 certificate signed
 * directly by one of them, which is valid now and meets the CA rules, with a
 * signature of at least 112 bits of security (not SHA-1 or MD5), and differ
 * from every registry certificate (LK_ERR_REG_CERT otherwise); with none, bare keys and
 * self-signed certificates are accepted. At most LK_DEVICE_CREDENTIALS_MAX.
 * Errors: LK_ERR_CRED_INVALID (does not parse as its format: wrong PEM kind,
 * key type or size, an RSA public exponent that is not odd in
 * 3..2^64 - 1; why says which), LK_ERR_REG_INVALID (format UNSPECIFIED, expires < 0),
 * LK_ERR_REG_LIMIT (a 4th credential, PEM over LK_CRED_PEM_MAX),
 * LK_ERR_REG_CERT (the CA rules). A device certificate's own validity dates
 * are not checked (expires is the credential's expiry).
 */
lk_err lk_registry_add_credential(lk_registry *reg, const lk_reg_name *name,
                                  const char *id, const lk_reg_credential *cred,
                                  char *why, size_t why_size);
/* index is the position in the device's list (0-based). */
lk_err lk_registry_delete_credential(lk_registry *reg, const lk_reg_name *name,
                                     const char *id, unsigned index,
                                     char *why, size_t why_size);

/* ---- gateway bindings (bindDeviceToGateway / unbindDeviceFromGateway) ---- */
/* gateway and device: a device id, or a numId in decimal (an id must start with a letter, so all digits is a
 * numId). Both must be devices of registry name (LK_ERR_REG_NOT_FOUND, why says which); the gateway's
 * gateway_type must be GATEWAY and the device's must not be GATEWAY (LK_ERR_REG_INVALID with why, as IoT Core);
 * binding a pair already bound is LK_OK (nothing written); at most LK_GATEWAYS_PER_DEVICE_MAX = 10 gateways per
 * device and LK_DEVICES_PER_GATEWAY_MAX = 10000 devices per gateway (LK_ERR_REG_LIMIT; both in
 * lk_iotcore.h). Unbinding a pair that is not bound: LK_ERR_REG_NOT_FOUND.
 * Each is one transaction and appends LK_CHANGE_DEVICE for the device (so a broker reloads it later). Bindings go
 * with either device when it is deleted (ON DELETE CASCADE).
 * Also: LK_ERR_ARG (NULL reg, name, gateway or device); a refusal writes nothing. Unbinding does not look at the
 * gateway types (a pair that is bound can always be unbound). */
lk_err lk_registry_bind(lk_registry *reg, const lk_reg_name *name, const char *gateway, const char *device,
                        char *why, size_t why_size);
lk_err lk_registry_unbind(lk_registry *reg, const lk_reg_name *name, const char *gateway, const char *device,
                          char *why, size_t why_size);

/* ---- config and state ---- */

typedef struct lk_reg_config {
    int64_t version;
    int64_t cloud_update_time;
    int64_t device_ack_time;         /* 0 = not acknowledged (always, as last_config_ack) */
    uint8_t *data;
    size_t len;
} lk_reg_config;
void lk_reg_config_free(lk_reg_config *c);

/* A new config version (at most LK_CONFIG_MAX bytes). version_to_update 0
 * replaces unconditionally; otherwise it must equal the current version, or
 * LK_ERR_REG_CONFLICT and nothing is written. The newest
 * LK_CONFIG_VERSIONS_KEPT versions are kept. */
lk_err lk_registry_update_config(lk_registry *reg, const lk_reg_name *name,
                                 const char *id, const uint8_t *data, size_t len,
                                 int64_t version_to_update, lk_reg_config *out,
                                 char *why, size_t why_size);
/* Newest first; max 0 = all kept. */
lk_err lk_registry_list_configs(lk_registry *reg, const lk_reg_name *name,
                                const char *id, unsigned max,
                                int (*cb)(void *arg, const lk_reg_config *c), void *arg,
                                char *why, size_t why_size);
/* The newest config of the device num_id, for the broker's config push (it
 * has the num_id from lk_registry_auth_lookup; no names are checked). One
 * read, no transaction; a LK_REG_READONLY handle may call it. out->data is
 * malloc'd and NUL-terminated after len bytes: release with
 * lk_reg_config_free. LK_ERR_REG_NOT_FOUND if no device has num_id,
 * LK_ERR_ARG for num_id 0 or a NULL out, LK_ERR_STATE on a busy handle;
 * *out is zeroed on every failure. */
lk_err lk_registry_latest_config(lk_registry *reg, uint64_t num_id, lk_reg_config *out);

/* get_device and the device's newest config (as lk_registry_latest_config
 * gives it) in one read transaction: what an API's GET of a device shows,
 * from one snapshot. out and cfg are zeroed on failure (LK_ERR_ARG for a
 * NULL out or cfg, else get_device's errors); free them with
 * lk_reg_device_free and lk_reg_config_free on success. */
lk_err lk_registry_get_device_config(lk_registry *reg, const lk_reg_name *name, const char *id,
                                     uint64_t num_id, lk_reg_device *out, lk_reg_config *cfg,
                                     char *why, size_t why_size);

typedef struct lk_reg_state_entry {
    int64_t update_time;
    uint8_t *data;
    size_t len;
} lk_reg_state_entry;
void lk_reg_state_entry_free(lk_reg_state_entry *s);
/* Record a state report (at most LK_STATE_MAX); the newest LK_STATES_KEPT
 * are kept, and the device's last_state moves forward to t. */
lk_err lk_registry_add_state(lk_registry *reg, uint64_t num_id, const uint8_t *data,
                             size_t len, int64_t t);
lk_err lk_registry_list_states(lk_registry *reg, const lk_reg_name *name,
                               const char *id, unsigned max,
                               int (*cb)(void *arg, const lk_reg_state_entry *s), void *arg,
                               char *why, size_t why_size);

/* ---- for the broker: authentication lookups, activity, change feed ---- */

/*
 * Everything authentication needs about one device, in one read: whether it
 * and its registry may connect, and its credentials. This is the hot path of
 * a reconnect storm (prepared statements, one index lookup).
 */
typedef struct lk_reg_auth {
    uint64_t num_id;
    int blocked;
    lk_reg_state mqtt;               /* of the registry */
    lk_reg_credential creds[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncreds;
    int64_t config_version;
    lk_reg_gateway_type gateway_type;
    lk_reg_gateway_auth gateway_auth_method;
    lk_reg_log_level log_level;          /* the device's (UNSPECIFIED: its registry's) ... */
    lk_reg_log_level registry_log_level; /* ... and its registry's (UNSPECIFIED: the broker's) */
} lk_reg_auth;
void lk_reg_auth_free(lk_reg_auth *a);
lk_err lk_registry_auth_lookup(lk_registry *reg, const lk_reg_name *name,
                               const char *id, lk_reg_auth *out);

/* Activity times gathered in memory by the broker and written in one
 * transaction (a database write per message would cap throughput). Each
 * time only moves forward; unknown num_ids (deleted devices) are skipped. */
typedef struct lk_reg_activity {
    uint64_t num_id;
    int64_t last_heartbeat, last_event, last_state, last_config_send; /* 0 = unchanged */
    int64_t last_error;              /* 0 = unchanged */
    const char *last_error_status;   /* with last_error */
    int64_t last_gateway_time;       /* 0 = unchanged: lastAccessedGatewayTime ... */
    const char *last_gateway_id;     /* ... and lastAccessedGatewayId (lk_id_valid) with it */
    /* (schema 7) the credential the device last connected with: SHA-256 of its SubjectPublicKeyInfo
     * (lk_cred_fingerprint), with the time; NULL / 0 = unchanged. */
    const uint8_t *last_key;         /* 32 bytes */
    int64_t last_key_time;
} lk_reg_activity;
lk_err lk_registry_record_activity(lk_registry *reg, const lk_reg_activity *a, size_t n);

/* Whether device num_id is bound to gateway num_id (both of one registry by
 * the caller's knowledge; the pair says it all): *bound 1 or 0. One indexed
 * read. LK_ERR_ARG (NULL reg or bound), the storage errors. */
lk_err lk_registry_bound(lk_registry *reg, uint64_t gateway, uint64_t device, int *bound);

/*
 * The change feed. Every change appends (seq, kind, num_id) in the same
 * transaction; lk_registry_changes reports those after *since and advances
 * it past the ones its callback takes. Cheap to poll: when nothing changed
 * it answers from SQLite's data_version without touching the tables.
 */
typedef enum lk_reg_change_kind {
    LK_CHANGE_DEVICE = 1,     /* created, updated (blocked, credentials, metadata) */
    LK_CHANGE_DEVICE_DELETED = 2,
    LK_CHANGE_CONFIG = 3,     /* a new config version */
    LK_CHANGE_REGISTRY = 4,   /* registry enabled/disabled/deleted, its JIT setting, its log level: num_id 0 */
    LK_CHANGE_COMMAND = 5,    /* a command was queued for num_id (lk_registry_command_send) */
    LK_CHANGE_BACKEND = 7,    /* a backend was created or deleted: num_id 0 */
    LK_CHANGE_SUBSCRIPTION = 8, /* a push subscription was created, updated or deleted: num_id 0 */
    LK_CHANGE_PRESENCE_CLEAR = 9, /* a device with a presence record was deleted: num_id = its num_id;
                                     lk_registry_presence_tombstones names it */
    LK_CHANGE_RESYNC = 6      /* changes after *since were pruned (or the database
                                 was replaced): reload everything; num_id 0 */
} lk_reg_change_kind;
typedef struct lk_reg_change {
    int64_t seq;
    lk_reg_change_kind kind;
    uint64_t num_id;
} lk_reg_change;
/* *changed is set to 1 if anything may have changed since the last call
 * (or since open), without reading the feed (PRAGMA data_version, plus this
 * handle's own commits, which data_version does not count). */
lk_err lk_registry_poll(lk_registry *reg, int *changed);
/* Calls cb for each change after *since, oldest first. cb returns 0 to take
 * the change: *since moves to its seq. Non-zero refuses it: the call stops
 * before it and *since stays at the last change taken, so the next call
 * delivers the refused change again (a caller that cannot store a change,
 * e.g. out of memory, loses nothing). On an error *since likewise covers
 * exactly the changes taken. The feed keeps the newest 100,000 changes; a
 * caller further behind gets one LK_CHANGE_RESYNC (seq = the newest) and
 * should reload everything: taking it moves *since to the newest, refusing
 * it leaves *since as it was (the next call gives RESYNC again). Not in the
 * feed: activity times, state reports, config acks, registry creation, CA
 * certificate changes and command outcomes. */
lk_err lk_registry_changes(lk_registry *reg, int64_t *since,
                           int (*cb)(void *arg, const lk_reg_change *c), void *arg);
/* The newest seq, to start following the feed from now. */
lk_err lk_registry_change_head(lk_registry *reg, int64_t *seq);

/* ---- bulk ---- */

/*
 * Create many devices in one transaction: begin, add each, then commit or
 * abort. Nothing is visible to others until commit; an abort (or a crash, or
 * a failed commit) writes nothing. lk_registry_import_add validates like
 * create_device and reports a per-device refusal without ending the
 * transaction, so a tool can list every bad line before deciding (an
 * existing device id is LK_ERR_REG_EXISTS, found before anything else is
 * checked, so that a caller may skip it).
 *
 * Registries the same way: lk_registry_import_registries_begin, then
 * lk_registry_import_add_registry for each (as create_registry_full,
 * LK_ERR_REG_EXISTS first), then commit or abort. A registries import takes
 * no devices, and a devices import no registries (LK_ERR_STATE).
 */
lk_err lk_registry_import_begin(lk_registry *reg, const lk_reg_name *name,
                                char *why, size_t why_size);
lk_err lk_registry_import_add(lk_registry *reg, const lk_reg_device_spec *spec,
                              uint64_t *num_id, char *why, size_t why_size);
lk_err lk_registry_import_registries_begin(lk_registry *reg, char *why, size_t why_size);
lk_err lk_registry_import_add_registry(lk_registry *reg, const lk_reg_name *name,
                                       const lk_reg_registry_spec *spec,
                                       char *why, size_t why_size);
/* A gateway binding in an open devices import (lk_registry_import_begin),
 * in the import's one transaction: gateway and device (ids, or numIds in
 * decimal) of the import's registry — devices this import added included —
 * with lk_registry_bind's rules and refusals (LK_ERR_REG_NOT_FOUND,
 * LK_ERR_REG_INVALID, LK_ERR_REG_LIMIT; a pair already bound is LK_OK),
 * checked against what the import holds so far (a binding before its
 * devices is not found). A refused pair is undone alone (its savepoint), as
 * a refused device; a bound pair appends LK_CHANGE_DEVICE for the device.
 * LK_ERR_STATE outside a devices import; LK_ERR_ARG for a NULL id. */
lk_err lk_registry_import_bind(lk_registry *reg, const char *gateway, const char *device, char *why,
                               size_t why_size);
lk_err lk_registry_import_commit(lk_registry *reg, char *why, size_t why_size);
void lk_registry_import_abort(lk_registry *reg);

/* ---- commands (IoT Core's sendCommandToDevice) ----
 *
 * The registry is the channel between the operator's tool and the broker:
 * the tool queues a command, the broker plugin (which learns of it from the
 * change feed, LK_CHANGE_COMMAND) delivers it to the connected device and
 * records the outcome, and the tool waits for that outcome. Commands are not
 * kept for later delivery: an outcome is final.
 */
typedef enum lk_reg_command_status {
    LK_CMD_PENDING = 0,       /* queued, no broker has answered yet */
    LK_CMD_DELIVERED = 1,     /* handed to the device's connection */
    LK_CMD_NOT_CONNECTED = 2, /* FAILED_PRECONDITION: not connected or not subscribed */
    LK_CMD_EXPIRED = 3        /* the sender gave up waiting (no broker running?) */
} lk_reg_command_status;

typedef struct lk_reg_command {
    int64_t id;
    uint64_t num_id;
    char *device_id;          /* with the registry path, to build the client id */
    char *project, *location, *registry;
    char *subfolder;          /* NULL = none; lk_subfolder_valid otherwise */
    uint8_t *data;
    size_t len;               /* at most LK_COMMAND_MAX */
    int64_t created;
} lk_reg_command;
void lk_reg_command_free(lk_reg_command *c);

/* Queue a command for device id (LK_ERR_REG_NOT_FOUND if none; a blocked
 * device -> LK_ERR_REG_INVALID). *command_id identifies it (> 0, never
 * reused). subfolder NULL = none, else lk_subfolder_valid
 * (LK_ERR_REG_INVALID); len at most LK_COMMAND_MAX (LK_ERR_REG_LIMIT), 0
 * allowed. Appends LK_CHANGE_COMMAND with the device's num_id. Needs a
 * writable handle. */
lk_err lk_registry_command_send(lk_registry *reg, const lk_reg_name *name, const char *id,
                                const char *subfolder, const uint8_t *data, size_t len,
                                int64_t *command_id, char *why, size_t why_size);
/* The outcome so far, and when it was decided (0 while pending; decided may
 * be NULL). One indexed read, no transaction: cheap to poll.
 * LK_ERR_REG_NOT_FOUND: no such command (or pruned, see command_decide). */
lk_err lk_registry_command_status(lk_registry *reg, int64_t command_id,
                                  lk_reg_command_status *status, int64_t *decided);
/* Calls cb for every pending command, oldest first (the struct's strings and
 * data are valid only during the call: do not free them). A pending command
 * may be up to a day old if its sender died before giving up: a broker
 * should skip those whose created is well in the past. */
lk_err lk_registry_commands_pending(lk_registry *reg,
                                    int (*cb)(void *arg, const lk_reg_command *c), void *arg);
/* Decide a command's outcome: only a PENDING command changes (so a sender's
 * EXPIRED and a broker's DELIVERED never both win: one UPDATE ... WHERE
 * status = PENDING). *won (may be NULL) says whether this call decided it;
 * a command already decided is LK_OK with *won = 0. status must be
 * DELIVERED, NOT_CONNECTED or EXPIRED (LK_ERR_ARG otherwise);
 * LK_ERR_REG_NOT_FOUND if there is no such command. Allowed on a
 * LK_REG_READONLY handle. Commands decided more than a day ago, and pending
 * ones created more than a day ago (their sender is gone), are pruned here
 * and by command_send. */
lk_err lk_registry_command_decide(lk_registry *reg, int64_t command_id,
                                  lk_reg_command_status status, int64_t t, int *won);

/* ---- backend applications (downstream subscribers) ----
 *
 * A backend authenticates to the broker as username "backend:NAME" with a
 * secret; the registry keeps only SHA-256(secret). NAME is unique in the
 * database (lk_id_valid), and a backend belongs to one project.
 *
 * The secret is what the backend sends as its MQTT password, byte for byte:
 * `latchkey backends create` makes it the 43-character base64url text
 * (no padding) of 32 random bytes, and secret_sha256 is SHA-256 over those
 * 43 ASCII characters (not over the 32 raw bytes). The broker hashes the
 * password it receives and compares in constant time.
 *
 * create: LK_ERR_REG_EXISTS if the name is taken (in any project); delete:
 * LK_ERR_REG_NOT_FOUND. Both append LK_CHANGE_BACKEND (num_id 0). list:
 * project NULL = all, ordered by project, then name.
 */
typedef struct lk_reg_backend {
    char *name;
    char *project;
    int64_t created;
} lk_reg_backend;
void lk_reg_backend_free(lk_reg_backend *b);
lk_err lk_registry_backend_create(lk_registry *reg, const char *project, const char *name,
                                  const uint8_t secret_sha256[32], char *why, size_t why_size);
lk_err lk_registry_backend_delete(lk_registry *reg, const char *name, char *why, size_t why_size);
lk_err lk_registry_backend_list(lk_registry *reg, const char *project,
                                int (*cb)(void *arg, const lk_reg_backend *b), void *arg,
                                char *why, size_t why_size);
/* For the broker: the backend's project (caller's buffer of
 * LK_PROJECT_MAX + 1) and secret hash. LK_ERR_REG_NOT_FOUND if none (also
 * for a name that is not lk_id_valid, without a query). One prepared
 * primary-key read, no transaction. */
lk_err lk_registry_backend_lookup(lk_registry *reg, const char *name, char *project,
                                  uint8_t secret_sha256[32]);

/* ---- latchkeyd's bridge identity (schema 5) ----
 *
 * latchkeyd's bridge identity: latchkeyd makes a fresh random secret at each
 * start and stores its hash here under its name (lk_id_valid); the broker
 * admits "latchkeyd:NAME" with that secret (lk_backend_secret_hash over the
 * password text, constant-time compare). set: insert or replace (t is
 * stored as the row's "updated" time), one transaction, no change-feed
 * entry; LK_ERR_ARG for an invalid name (why says which rule) or a NULL
 * hash; LK_ERR_STATE on a LK_REG_READONLY handle. lookup:
 * LK_ERR_REG_NOT_FOUND if none (also for an invalid name, without a query);
 * LK_ERR_ARG for a NULL name or hash; one primary-key read, no transaction
 * (a LK_REG_READONLY or LK_REG_NOWRITE handle may call it); the hash zeroed
 * on failure.
 */
lk_err lk_registry_bridge_set(lk_registry *reg, const char *name, const uint8_t secret_sha256[32], int64_t t,
                              char *why, size_t why_size);
lk_err lk_registry_bridge_lookup(lk_registry *reg, const char *name, uint8_t secret_sha256[32]);


/* ---- service accounts (who may call latchkeyd's admin API) ----
 *
 * An account is NAME@PROJECT.iam.latchkey: NAME 6..30 characters
 * [a-z][a-z0-9-]*[a-z0-9] (Google's rule for service account ids), PROJECT
 * lk_project_valid; it has one role in its project and up to
 * LK_SA_KEYS_MAX RSA public keys. The private keys are never stored: they
 * are only in the key files given to the caller (`latchkey
 * service-accounts`). A key's id is the key file's private_key_id and the
 * kid of the account's JWTs: 40 lowercase hex characters (20 random bytes).
 *
 * Service-account changes are not in the change feed (the daemon looks a key
 * up for every call: lk_registry_sa_lookup).
 */
typedef enum lk_reg_sa_role {         /* IoT Core's IAM roles, per project */
    LK_ROLE_NONE = 0,
    LK_ROLE_VIEWER = 1,               /* roles/cloudiot.viewer: read registries and devices */
    LK_ROLE_DEVICE_CONTROLLER = 2,    /* roles/cloudiot.deviceController: + modify config, send commands,
                                         update devices (not create/delete) */
    LK_ROLE_PROVISIONER = 3,          /* roles/cloudiot.provisioner: + create, delete, update devices */
    LK_ROLE_EDITOR = 4,               /* roles/cloudiot.editor: + registries, bind/unbind */
    LK_ROLE_ADMIN = 5                 /* roles/cloudiot.admin: + IAM and service-account keys */
} lk_reg_sa_role;
/* "viewer", "deviceController", "provisioner", "editor", "admin" (and
 * "none" for LK_ROLE_NONE, "unknown" for anything else). */
const char *lk_reg_sa_role_name(lk_reg_sa_role r);
/* The role of one of those names, also "roles/cloudiot.X" and
 * "device-controller"; LK_ROLE_NONE for anything else (NULL included). */
lk_reg_sa_role lk_reg_sa_role_from_name(const char *s);

#define LK_SA_NAME_MIN 6u
#define LK_SA_NAME_MAX 30u
/* The email's domain after the project: "@PROJECT.iam.latchkey". */
#define LK_SA_EMAIL_DOMAIN ".iam.latchkey"
/* Longest email: NAME (30) '@' PROJECT (30) ".iam.latchkey" (13). */
#define LK_SA_EMAIL_MAX (LK_SA_NAME_MAX + 1u + LK_PROJECT_MAX + 13u)
#define LK_SA_KEY_ID_LEN 40u           /* lowercase hex of 20 bytes */
#define LK_SA_KEYS_MAX 10u             /* keys per account (Google's limit) */

typedef struct lk_reg_sa_key {
    char *key_id;        /* the key file's private_key_id: 40 lowercase hex characters */
    char *email;         /* NAME@PROJECT.iam.latchkey */
    char *project, *name;
    lk_reg_sa_role role;
    char *public_pem;    /* -----BEGIN PUBLIC KEY----- RSA (2048..8192) */
    int disabled;
    int64_t created;     /* of the key */
} lk_reg_sa_key;
/* Frees the members (not k) and zeroes them; NULL is a no-op. */
void lk_reg_sa_key_free(lk_reg_sa_key *k);
/* A new account NAME in project with one role (not LK_ROLE_NONE). *email
 * receives the account's email (the caller's buffer of at least
 * LK_SA_EMAIL_MAX + 1 bytes; LK_ERR_ARG if smaller). LK_ERR_REG_INVALID for
 * a bad name, project or role; LK_ERR_REG_EXISTS if (project, name) is
 * taken. email is "" on failure. */
lk_err lk_registry_sa_create(lk_registry *reg, const char *project, const char *name,
                             lk_reg_sa_role role, char *email, size_t email_size, char *why,
                             size_t why_size);
/* Add a key to an account: key_id 40 lowercase hex (the caller draws it at
 * random), pem an RSA public key that lk_cred_parse(LK_CRED_RSA_PEM)
 * accepts (LK_ERR_CRED_INVALID otherwise, LK_ERR_REG_LIMIT over
 * LK_CRED_PEM_MAX). At most LK_SA_KEYS_MAX keys per account
 * (LK_ERR_REG_LIMIT). LK_ERR_REG_NOT_FOUND if no such account,
 * LK_ERR_REG_EXISTS for a taken key_id, LK_ERR_REG_INVALID for a malformed
 * email or key_id. */
lk_err lk_registry_sa_key_add(lk_registry *reg, const char *email, const char *key_id,
                              const char *pem, size_t pem_len, char *why, size_t why_size);
/* The hot path of every API call: the key and its account, one
 * primary-key read, no transaction (a LK_REG_READONLY or LK_REG_NOWRITE
 * handle may call it). LK_ERR_REG_NOT_FOUND if none (also for a key_id that
 * is not 40 lowercase hex, without a query). A disabled key is returned with
 * disabled = 1 (the caller refuses it). *out zeroed on failure; release it
 * with lk_reg_sa_key_free. */
lk_err lk_registry_sa_lookup(lk_registry *reg, const char *key_id, lk_reg_sa_key *out);
/* One call per key (accounts without keys: one call with key_id and
 * public_pem NULL, disabled 0, created the account's), project NULL = all;
 * ordered by project, name, key created (then key_id). The struct's
 * strings are valid only during the call. cb returns 0 to go on. */
lk_err lk_registry_sa_list(lk_registry *reg, const char *project,
                           int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg, char *why,
                           size_t why_size);
/* Disable (1) or enable (0) a key; setting what it already is succeeds.
 * LK_ERR_REG_NOT_FOUND if no such key. */
lk_err lk_registry_sa_key_set_disabled(lk_registry *reg, const char *key_id, int disabled,
                                       char *why, size_t why_size);
/* LK_ERR_REG_NOT_FOUND if no such key. */
lk_err lk_registry_sa_key_delete(lk_registry *reg, const char *key_id, char *why,
                                 size_t why_size);
/* The account and all its keys. LK_ERR_REG_NOT_FOUND if none. */
lk_err lk_registry_sa_delete(lk_registry *reg, const char *email, char *why, size_t why_size);

/* ---- presence (schema 6) ----
 *
 * The broker records each device's presence with its activity times (one
 * transaction a flush) and publishes it retained on latchkey/P/presence/L/R/D.
 * Deleting a device that has a presence record leaves a tombstone (its path)
 * and appends LK_CHANGE_PRESENCE_CLEAR, so that the broker clears the
 * retained message — also one deleted while the broker was down (it reads
 * the tombstones when it starts). */
typedef struct lk_reg_presence_update {
    uint64_t num_id;
    lk_reg_presence presence;        /* ONLINE or OFFLINE */
    int64_t time;
    const char *detail;              /* address or reason; NULL = none */
} lk_reg_presence_update;
/* In one transaction (a LK_REG_READONLY handle may call it); unknown
 * num_ids (deleted devices) are skipped, and so is an update older than the
 * device's record (time < presence_time: a late flush never undoes a newer
 * record). LK_ERR_ARG: presence not ONLINE or OFFLINE, time < 0, or a
 * detail over 1024 bytes. No why: the broker's hot path. */
lk_err lk_registry_presence_record(lk_registry *reg, const lk_reg_presence_update *u, size_t n);
/* When the broker starts: every device recorded ONLINE becomes OFFLINE with
 * detail reason (NULL = none) at time t (one transaction), then cb is called
 * for each device that was recorded at all (ONLINE or OFFLINE), in num_id
 * order, with its record after the change, so that the broker can publish
 * each one's presence again. cb runs in a read transaction of its own (not
 * holding the write lock); its lk_reg_device has only num_id, id, project,
 * location, registry, last_heartbeat/event/state and the presence fields
 * (no credentials or metadata), valid only during the call. */
lk_err lk_registry_presence_reset(lk_registry *reg, int64_t t, const char *reason,
                                  int (*cb)(void *arg, const lk_reg_device *d), void *arg,
                                  char *why, size_t why_size);
typedef struct lk_reg_tombstone {
    uint64_t num_id;
    const char *project, *location, *registry, *id;
} lk_reg_tombstone;
/* Every tombstone, in num_id order (cb returns 0 to go on; its strings are
 * valid only during the call); then _done removes the ones the broker has
 * cleared (by num_id; one already gone is not an error), in one transaction
 * (a LK_REG_READONLY handle may call both). A tombstone is keyed by num_id:
 * a device imported again with the same numId and deleted again replaces
 * it. */
lk_err lk_registry_presence_tombstones(lk_registry *reg,
                                       int (*cb)(void *arg, const lk_reg_tombstone *t), void *arg,
                                       char *why, size_t why_size);
lk_err lk_registry_presence_tombstones_done(lk_registry *reg, const uint64_t *num_ids, size_t n,
                                            char *why, size_t why_size);
/* The number of the presence topic layout the broker has moved to, kept in
 * the registry so that a move is made once (0 when none was stored: a
 * registry that a broker before 2026-12-06 may have published
 * latchkey/P/L/R/D/presence for), and storing it (0..999; a
 * LK_REG_READONLY handle may). The registry only keeps the number. */
lk_err lk_registry_presence_layout(lk_registry *reg, int *layout, char *why, size_t why_size);
lk_err lk_registry_presence_layout_set(lk_registry *reg, int layout, char *why, size_t why_size);

/* ---- push subscriptions (schema 6) ----
 *
 * A push subscription (Pub/Sub's, "projects/P/subscriptions/S") takes every
 * message routed to its topic ("projects/P/topics/T", same project) after it
 * was created, and latchkeyd POSTs each to push_endpoint. S follows Pub/Sub's
 * rule (lk_pubsub_name_valid): 3..255 characters, a letter first, then
 * [A-Za-z0-9-_.~+%], not starting with "goog"; the same rule for T.
 * Create, update and delete append LK_CHANGE_SUBSCRIPTION (num_id 0).
 */
typedef enum lk_reg_push_auth {
    LK_PUSH_AUTH_NONE = 0,
    LK_PUSH_AUTH_HEADER = 1,         /* a static header: auth_header_name: auth_header_value */
    LK_PUSH_AUTH_OIDC = 2            /* a JWT latchkeyd signs: oidc_email, oidc_audience */
} lk_reg_push_auth;
typedef struct lk_reg_subscription {
    char *project, *name;            /* name: S */
    char *topic;                     /* T (same project) */
    char *push_endpoint;             /* https:// (http:// only to a loopback address) */
    lk_reg_push_auth auth;
    char *auth_header_name, *auth_header_value;   /* a secret: wiped by the free */
    char *oidc_email, *oidc_audience;             /* audience NULL = the endpoint URL */
    int64_t min_backoff_ms, max_backoff_ms;       /* retries: 10 s .. 600 s by default */
    int64_t ack_deadline_ms;                      /* a POST unanswered this long failed: 10 s default */
    char *dead_letter_topic;                      /* T2 or NULL */
    int32_t max_delivery_attempts;                /* 5..100 with a dead-letter topic (default 5); 0 without */
    int64_t retention_ms;                         /* queued longer is expired: 7 days default */
    int64_t created;
} lk_reg_subscription;
void lk_reg_subscription_free(lk_reg_subscription *s); /* frees and wipes members, not s */
/* create: every field checked (LK_ERR_REG_INVALID with why, LK_ERR_REG_LIMIT
 * for an over-long endpoint or header), zero numbers take the defaults;
 * created is set to now (the caller's value is ignored);
 * LK_ERR_REG_EXISTS if (project, name) is taken. The rules:
 *  - project lk_project_valid; name, topic, dead_letter_topic
 *    lk_pubsub_name_valid; dead_letter_topic (NULL or "" = none) differs
 *    from topic;
 *  - push_endpoint: https://HOST[:PORT][/PATH][?QUERY], at most 2048
 *    characters, visible ASCII, no user:password@, no #fragment; http://
 *    only to a loopback host (127.0.0.0/8, [::1], localhost);
 *  - auth NONE: no header or OIDC fields; HEADER: auth_header_name an HTTP
 *    token of at most 256 characters, not Host, Content-Type,
 *    Content-Length, Transfer-Encoding or Connection; auth_header_value 1..4096
 *    bytes without CR, LF or other control characters but tab, not starting
 *    or ending with a space or tab; OIDC: oidc_email NAME@DOMAIN (at most
 *    254 visible ASCII characters), oidc_audience NULL or "" (= the endpoint
 *    URL) or 1..2048 visible ASCII characters;
 *  - min_backoff_ms, max_backoff_ms 0..600,000 with min <= max (0 = the
 *    defaults 10,000 and 600,000: a minimum of 0 cannot be stored, 1 ms can);
 *    ack_deadline_ms 10,000..600,000 (0 = 10,000); retention_ms
 *    600,000..2,678,400,000 (10 min..31 days; 0 = 7 days);
 *    max_delivery_attempts 5..100 with a dead-letter topic (0 = 5), 0
 *    without.
 * The reasons never show auth_header_value.
 * update: the same checks; replaces everything but project, name and
 * created. LK_ERR_REG_NOT_FOUND if none.
 * get/delete: LK_ERR_REG_NOT_FOUND if none; get's *out is zeroed on
 * failure (release it with lk_reg_subscription_free). list: project NULL =
 * all, ordered by project, name; the struct is valid only during the call.
 * Stored values are the checked ones with defaults filled in (what get and
 * list return). */
lk_err lk_registry_subscription_create(lk_registry *reg, const lk_reg_subscription *s, char *why,
                                       size_t why_size);
lk_err lk_registry_subscription_update(lk_registry *reg, const lk_reg_subscription *s, char *why,
                                       size_t why_size);
lk_err lk_registry_subscription_get(lk_registry *reg, const char *project, const char *name,
                                    lk_reg_subscription *out, char *why, size_t why_size);
lk_err lk_registry_subscription_delete(lk_registry *reg, const char *project, const char *name,
                                       char *why, size_t why_size);
lk_err lk_registry_subscription_list(lk_registry *reg, const char *project,
                                     int (*cb)(void *arg, const lk_reg_subscription *s), void *arg,
                                     char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#include "latchkey/lk_reg_provision.h"

#endif /* LK_REGISTRY_H */
