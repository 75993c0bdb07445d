/*
 * backend.h — the storage interface under the device registry. Internal:
 * not installed, not part of the API.
 *
 * The facade (registry.c and its resource files, facade.h) owns every
 * rule: names, limits, credential and certificate checks, version
 * conflicts, which changes go into the feed, and the shape of each
 * transaction. A backend only stores and fetches rows; it never
 * decides whether something is allowed. That keeps a second backend
 * (PostgreSQL) small: implement these primitives with the same meaning and
 * every rule comes along for free.
 *
 * Conventions, for every function below that returns lk_err:
 *  - LK_OK on success.
 *  - LK_ERR_REG_NOT_FOUND where the text says "NOT_FOUND" (a row that is not
 *    there); LK_ERR_REG_EXISTS for a uniqueness violation where the text says
 *    "EXISTS" (a taken registry or device id).
 *  - LK_ERR_REG_BUSY when the database stayed locked past the busy timeout,
 *    LK_ERR_REG_STORAGE for anything else the database refused (I/O, full
 *    disk, corruption), LK_ERR_NOMEM for a failed allocation. After one of
 *    these, last_error() gives the database's own one-line message (never
 *    row data), for the caller's why text.
 *  - Callbacks return 0 to go on and non-zero to stop (not an error).
 *  - Strings and blobs handed to callbacks are valid only during the call.
 *  - Structs filled for the caller (lk_reg_registry, lk_reg_device, ...) own
 *    malloc'd members, released with the public *_free functions.
 *
 * Transactions: the facade brackets every operation in begin/commit (write =
 * 1 takes the write lock up front, waiting up to the busy timeout; write = 0
 * is a read snapshot) and calls rollback on any failure. Every write
 * primitive is called only inside begin(write = 1). savepoint / release /
 * rollback_to nest one level inside a write transaction (the bulk import uses
 * them so that a refused device leaves the rest of the import intact).
 *
 * "id" columns: a registry has an internal row id (int64, never shown to
 * users); a device is keyed by its num_id (uint64, assigned by the backend,
 * increasing, never reused after a delete — it is IoT Core's numId — or,
 * from schema 3, the one a device had in IoT Core, which the facade has
 * checked is free). A backend never calls the facade; the records it fills
 * are freed with records.c's functions.
 */
#ifndef LK_REGISTRY_BACKEND_H
#define LK_REGISTRY_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_reg_console.h"
#include "latchkey/lk_registry.h"
#include "latchkey/lk_reg_audit.h"

typedef struct lk_reg_be lk_reg_be; /* one backend connection */

/* A console search as the facade hands it to device_search: the rules
 * already applied (names checked, times computed from the clock). */
typedef struct lk_reg_be_search {
    const char *lo;          /* ids >= lo ("" = from the start) ... */
    int lo_strict;           /* ... or > lo when 1 (the page cursor) */
    const char *hi;          /* ids < hi (a prefix's end); NULL = no end */
    int presence;            /* -1 = any, else lk_reg_presence */
    int blocked_only, gateways_only;
    int64_t silent_before;   /* 0 = none; else max(heartbeat, event, state, created) < it */
    int expiring;            /* 1: a credential expires (not 0) at or before ... */
    int64_t expiring_by;     /* ... this */
} lk_reg_be_search;

/* The operations of one storage backend. (Named lk_reg_store, not
 * lk_reg_backend: that public name is a backend *application*.) */
typedef struct lk_reg_store {
    const char *scheme; /* "sqlite" */

    /* ---- connection ---- */

    /* Open location (a path for SQLite). flags: LK_REG_CREATE creates the
     * store and its schema if missing; otherwise the store must exist.
     * Migrates an older schema to the current one in one transaction
     * (LK_REG_READONLY: never creates or migrates). A store of a newer schema,
     * or one that is not a latchkey registry -> LK_ERR_REG_SCHEMA; a missing
     * store without LK_REG_CREATE -> LK_ERR_IO. why gets the reason. */
    lk_err (*open)(const char *location, unsigned flags, lk_reg_be **out, char *why,
                   size_t why_size);
    void (*close)(lk_reg_be *be);
    void (*set_busy_timeout)(lk_reg_be *be, unsigned ms);
    /* The message of the last failed call: static text or the database's own
     * message; never NULL. */
    const char *(*last_error)(lk_reg_be *be);

    /* ---- transactions ---- */
    lk_err (*begin)(lk_reg_be *be, int write);
    lk_err (*commit)(lk_reg_be *be);          /* on failure, still inside: rollback */
    void (*rollback)(lk_reg_be *be);          /* never fails visibly; no-op outside */
    lk_err (*savepoint)(lk_reg_be *be);
    lk_err (*release)(lk_reg_be *be);
    /* Undo to the savepoint and release it. If that fails, the whole
     * transaction is rolled back and the failure returned. */
    lk_err (*rollback_to)(lk_reg_be *be);
    /* 1 while a transaction is open. A database may end one by itself on a
     * failure (SQLite does on a full disk or an I/O error). */
    int (*in_transaction)(lk_reg_be *be);
    /* A number that changes whenever another connection commits (not for
     * this connection's own commits): SQLite's PRAGMA data_version. Reads no
     * table. */
    lk_err (*data_version)(lk_reg_be *be, uint64_t *v);
    /* Read every page and check the structure (SQLite's PRAGMA quick_check):
     * LK_OK, or LK_ERR_REG_STORAGE with the first problem in last_error. */
    lk_err (*check)(lk_reg_be *be);

    /* ---- registries ---- */
    lk_err (*registry_find)(lk_reg_be *be, const lk_reg_name *name, int64_t *rid); /* NOT_FOUND */
    /* Every field of lk_reg_registry, ncerts and ndevices included. */
    lk_err (*registry_get)(lk_reg_be *be, int64_t rid, lk_reg_registry *out);     /* NOT_FOUND */
    /* NULL project/location: any. Ordered by project, location, id. */
    lk_err (*registry_list)(lk_reg_be *be, const char *project, const char *location,
                            int (*cb)(void *arg, const lk_reg_registry *r), void *arg);
    /* Inserts r's project, location, id, mqtt, http, notification JSON
     * (NULL = none), log level (schema 3) and created. EXISTS. */
    lk_err (*registry_insert)(lk_reg_be *be, const lk_reg_registry *r, int64_t *rid);
    /* Overwrites mqtt, http and both notification JSON texts with r's. */
    lk_err (*registry_update)(lk_reg_be *be, int64_t rid, const lk_reg_registry *r);
    /* Deletes the registry and (cascading) its certificates and devices. */
    lk_err (*registry_delete)(lk_reg_be *be, int64_t rid);

    /* ---- registry CA certificates, in the order they were added ---- */
    lk_err (*cert_list)(lk_reg_be *be, int64_t rid,
                        int (*cb)(void *arg, unsigned index, const char *pem, size_t len),
                        void *arg);
    lk_err (*cert_insert)(lk_reg_be *be, int64_t rid, const char *pem, size_t len);
    lk_err (*cert_delete)(lk_reg_be *be, int64_t rid, unsigned index); /* NOT_FOUND */

    /* ---- devices ---- */
    /* The device's num_id and current config version. NOT_FOUND. */
    lk_err (*device_find)(lk_reg_be *be, int64_t rid, const char *id, uint64_t *num_id,
                          int64_t *config_version);
    /* Everything about one device: names, credentials (in order), metadata
     * (by key), activity times. NOT_FOUND. */
    lk_err (*device_get)(lk_reg_be *be, uint64_t num_id, lk_reg_device *out);
    /* num_ids of the registry's devices, ordered by device id. */
    lk_err (*device_list)(lk_reg_be *be, int64_t rid, int (*cb)(void *arg, uint64_t num_id),
                          void *arg);
    /* A new device from spec's id, blocked, log level and gateway fields,
     * config_version 1, no credentials, metadata or configs yet. Its num_id
     * is spec->num_id when that is non-zero (the caller has checked that no
     * device has it), else the next one. EXISTS. */
    lk_err (*device_insert)(lk_reg_be *be, int64_t rid, const lk_reg_device_spec *spec,
                            int64_t created, uint64_t *num_id);
    /* Whether a device has num_id (in any registry). */
    lk_err (*device_num_taken)(lk_reg_be *be, uint64_t num_id, int *taken);
    lk_err (*device_set_blocked)(lk_reg_be *be, uint64_t num_id, int blocked);
    lk_err (*device_delete)(lk_reg_be *be, uint64_t num_id); /* with everything it owns */
    /* The credentials in order: out[0..*n); members malloc'd. */
    lk_err (*creds_get)(lk_reg_be *be, uint64_t num_id,
                        lk_reg_credential out[LK_DEVICE_CREDENTIALS_MAX], unsigned *n);
    /* Replace all credentials (n may be 0). */
    lk_err (*creds_set)(lk_reg_be *be, uint64_t num_id, const lk_reg_credential *c,
                        unsigned n);
    /* Replace all metadata (n may be 0). */
    lk_err (*metadata_set)(lk_reg_be *be, uint64_t num_id, const lk_reg_metadata *m,
                           unsigned n);

    /* ---- configs and states ---- */
    /* Store c as the device's config version c->version (which becomes its
     * config_version) and drop versions older than the newest keep. */
    lk_err (*config_add)(lk_reg_be *be, uint64_t num_id, const lk_reg_config *c, unsigned keep);
    /* Newest first; max 0 = all. One read: also called with no transaction
     * open (lk_registry_latest_config, for the broker). */
    lk_err (*config_list)(lk_reg_be *be, uint64_t num_id, unsigned max,
                          int (*cb)(void *arg, const lk_reg_config *c), void *arg);
    /* Append a state, keep the newest keep, set the device's last_state to
     * the later of it and s->update_time. NOT_FOUND. */
    lk_err (*state_add)(lk_reg_be *be, uint64_t num_id, const lk_reg_state_entry *s,
                        unsigned keep);
    lk_err (*state_list)(lk_reg_be *be, uint64_t num_id, unsigned max,
                         int (*cb)(void *arg, const lk_reg_state_entry *s), void *arg);

    /* ---- the broker's calls ---- */
    /* Each non-zero time moves the device's field forward (never back);
     * last_error_status is set with last_error. An unknown num_id is
     * ignored. */
    lk_err (*activity)(lk_reg_be *be, const lk_reg_activity *a);
    /* One read (a single indexed statement for SQLite). NOT_FOUND. */
    lk_err (*auth_lookup)(lk_reg_be *be, const lk_reg_name *name, const char *id,
                          lk_reg_auth *out);

    /* ---- change feed ---- */
    /* Append (next seq, kind, num_id, t). Seqs increase by one per change
     * and are never reused. */
    lk_err (*change_append)(lk_reg_be *be, lk_reg_change_kind kind, uint64_t num_id, int64_t t);
    /* Changes with seq > after, oldest first. */
    lk_err (*change_list)(lk_reg_be *be, int64_t after,
                          int (*cb)(void *arg, const lk_reg_change *c), void *arg);
    /* The oldest and newest seq stored (0, 0 when there is none). */
    lk_err (*change_bounds)(lk_reg_be *be, int64_t *oldest, int64_t *newest);
    /* Drop all but the newest keep changes. */
    lk_err (*change_prune)(lk_reg_be *be, int64_t keep);

    /* ---- commands (schema 2) ---- */
    /* Whether the device is blocked. NOT_FOUND. */
    lk_err (*device_blocked)(lk_reg_be *be, uint64_t num_id, int *blocked);
    /* A new PENDING command (subfolder NULL = none); *id is its id
     * (increasing, never reused). */
    lk_err (*command_insert)(lk_reg_be *be, uint64_t num_id, const char *subfolder,
                             const uint8_t *data, size_t len, int64_t created, int64_t *id);
    /* One read, no transaction needed. NOT_FOUND. */
    lk_err (*command_status)(lk_reg_be *be, int64_t id, lk_reg_command_status *status,
                             int64_t *decided);
    /* The PENDING commands, oldest (lowest id) first, with their device's
     * names. */
    lk_err (*command_pending)(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_command *c),
                              void *arg);
    /* Set status and decided = t only if the command is still PENDING, in
     * one statement; *won = 1 if it was. A command that exists but is
     * decided: LK_OK, *won = 0. NOT_FOUND if there is no such command. */
    lk_err (*command_decide)(lk_reg_be *be, int64_t id, lk_reg_command_status status,
                             int64_t t, int *won);
    /* Delete decided commands with decided < decided_before and pending
     * ones with created < created_before. */
    lk_err (*command_prune)(lk_reg_be *be, int64_t decided_before, int64_t created_before);

    /* ---- backend applications (schema 2) ---- */
    lk_err (*backend_insert)(lk_reg_be *be, const char *name, const char *project,
                             const uint8_t secret_sha256[32], int64_t created); /* EXISTS */
    lk_err (*backend_delete)(lk_reg_be *be, const char *name);                  /* NOT_FOUND */
    /* NULL project: all. Ordered by project, name. */
    lk_err (*backend_list)(lk_reg_be *be, const char *project,
                           int (*cb)(void *arg, const lk_reg_backend *b), void *arg);
    /* One read by primary key, no transaction needed. project gets at most
     * project_size - 1 characters and a NUL (a longer stored project ->
     * LK_ERR_REG_STORAGE). NOT_FOUND. */
    lk_err (*backend_lookup)(lk_reg_be *be, const char *name, char *project,
                             size_t project_size, uint8_t secret_sha256[32]);

    /* ---- latchkeyd (schema 4): device pages, gateway bindings ---- */
    /* The device of registry rid with id (id NULL: with num_id): its num_id
     * and gateway type. NOT_FOUND (also for a device of another registry). */
    lk_err (*device_ref)(lk_reg_be *be, int64_t rid, const char *id, uint64_t num_id,
                         uint64_t *num_out, lk_reg_gateway_type *gateway_type);
    /* The devices of registry rid that q matches (as lk_registry_query_devices
     * says, with q->full ignored and the associations already resolved to
     * assoc_gateway / assoc_device, 0 = none), ordered by device id, at most
     * limit of them. cb gets each with only the devices row's fields
     * (num_id, id, blocked, created, config_version, activity times, log and
     * gateway fields); project, location, registry, credentials and metadata
     * are left NULL/0. A seek in the (registry, device id) index, not a scan
     * from the start. */
    lk_err (*device_query)(lk_reg_be *be, int64_t rid, const lk_reg_device_query *q,
                           uint64_t assoc_gateway, uint64_t assoc_device, unsigned limit,
                           int (*cb)(void *arg, const lk_reg_device *d), void *arg);
    lk_err (*device_set_log_level)(lk_reg_be *be, uint64_t num_id, lk_reg_log_level level);
    lk_err (*device_set_gateway_auth)(lk_reg_be *be, uint64_t num_id,
                                      lk_reg_gateway_auth method);
    /* Whether gateway and device are bound. */
    lk_err (*binding_exists)(lk_reg_be *be, uint64_t gateway, uint64_t device, int *bound);
    /* How many devices gateway has, and how many gateways device has. */
    lk_err (*binding_counts)(lk_reg_be *be, uint64_t gateway, uint64_t device,
                             uint64_t *gateway_devices, uint64_t *device_gateways);
    lk_err (*binding_insert)(lk_reg_be *be, uint64_t gateway, uint64_t device,
                             int64_t created);                           /* EXISTS */
    lk_err (*binding_delete)(lk_reg_be *be, uint64_t gateway, uint64_t device); /* NOT_FOUND */
    /* registries.patch: the registry's log level; all its CA certificates
     * removed (cert_insert then adds the new list in order). */
    lk_err (*registry_set_log_level)(lk_reg_be *be, int64_t rid, lk_reg_log_level level);
    lk_err (*cert_clear)(lk_reg_be *be, int64_t rid);
    /* ---- service accounts (schema 4) ---- */
    /* A new account; EXISTS if the email or (project, name) is taken. */
    lk_err (*sa_insert)(lk_reg_be *be, const char *email, const char *project, const char *name,
                        lk_reg_sa_role role, int64_t created);
    /* How many keys the account has. NOT_FOUND if there is no account. */
    lk_err (*sa_key_count)(lk_reg_be *be, const char *email, unsigned *n);
    /* A new enabled key of an existing account. EXISTS for a taken key_id. */
    lk_err (*sa_key_insert)(lk_reg_be *be, const char *email, const char *key_id,
                            const char *pem, size_t pem_len, int64_t created);
    /* The key with its account: one read by primary key, no transaction
     * needed; out's members malloc'd (lk_reg_sa_key_free). NOT_FOUND. */
    lk_err (*sa_lookup)(lk_reg_be *be, const char *key_id, lk_reg_sa_key *out);
    /* One row per key, one per account without keys (key_id and public_pem
     * NULL, created the account's); NULL project: all. Ordered by project,
     * name, key created, key_id. */
    lk_err (*sa_list)(lk_reg_be *be, const char *project,
                      int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg);
    lk_err (*sa_key_set_disabled)(lk_reg_be *be, const char *key_id, int disabled); /* NOT_FOUND */
    lk_err (*sa_key_delete)(lk_reg_be *be, const char *key_id);                     /* NOT_FOUND */
    /* The account and (cascading) its keys. NOT_FOUND. */
    lk_err (*sa_delete)(lk_reg_be *be, const char *email);
    /* ---- latchkeyd's bridge identity (schema 5) ---- */
    /* Insert or replace the name's row. */
    lk_err (*bridge_set)(lk_reg_be *be, const char *name, const uint8_t secret_sha256[32],
                         int64_t updated);
    /* One read by primary key, no transaction needed. NOT_FOUND. */
    lk_err (*bridge_lookup)(lk_reg_be *be, const char *name, uint8_t secret_sha256[32]);

    /* ---- operators and the audit record (schema 8, lk_reg_audit.h) ---- */
    lk_err (*operator_insert)(lk_reg_be *be, const char *name, const char *project,
                              lk_reg_sa_role role, const char *record, int64_t created); /* EXISTS */
    /* One read by primary key, no transaction needed: *o's strings and
     * *record (the password record) malloc'd. NOT_FOUND. */
    lk_err (*operator_get)(lk_reg_be *be, const char *name, lk_reg_operator *o, char **record);
    lk_err (*operator_set_password)(lk_reg_be *be, const char *name, const char *record); /* NOT_FOUND */
    lk_err (*operator_set_disabled)(lk_reg_be *be, const char *name, int disabled);     /* NOT_FOUND */
    lk_err (*operator_delete)(lk_reg_be *be, const char *name);                         /* NOT_FOUND */
    /* stamp is zero in the rows given to cb. */
    lk_err (*operator_list)(lk_reg_be *be, const char *project,
                            int (*cb)(void *arg, const lk_reg_operator *o), void *arg);
    /* Rows changed by this connection since it opened (the audit record
     * skips a write transaction that changed none: a dry run, a no-op). */
    uint64_t (*total_changes)(lk_reg_be *be);
    /* Append r (id and time as given: id ignored); *id the new row's. */
    lk_err (*audit_append)(lk_reg_be *be, const lk_reg_audit_record *r, int64_t *id);
    /* Delete the rows with id <= max_id or time < before. */
    lk_err (*audit_prune)(lk_reg_be *be, int64_t max_id, int64_t before);
    lk_err (*audit_list)(lk_reg_be *be, const lk_reg_audit_query *q,
                         int (*cb)(void *arg, const lk_reg_audit_record *r), void *arg);

    /* ---- presence (schema 6) ---- */
    /* Set the device's presence, time and detail if u->time is not older
     * than what it has (a late flush never undoes a newer record). An
     * unknown num_id is ignored. */
    lk_err (*presence_set)(lk_reg_be *be, const lk_reg_presence_update *u);
    /* Every device recorded ONLINE becomes OFFLINE at t with detail reason. */
    lk_err (*presence_reset)(lk_reg_be *be, int64_t t, const char *reason);
    /* The devices with a presence record (not NEVER), by num_id: each with
     * num_id, id, project, location, registry, the activity times and the
     * presence fields only (no credentials or metadata). */
    lk_err (*presence_list)(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_device *d),
                            void *arg);
    /* If the device has a presence record, store its tombstone (its path,
     * deleted at t; replacing one of the same num_id) and set *made = 1;
     * else *made = 0. Called before the device is deleted. */
    lk_err (*tombstone_make)(lk_reg_be *be, uint64_t num_id, int64_t t, int *made);
    lk_err (*tombstone_list)(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_tombstone *t),
                             void *arg);
    /* Remove the tombstone of num_id (none: not an error). */
    lk_err (*tombstone_delete)(lk_reg_be *be, uint64_t num_id);
    /* The broker's presence layout number (0 when none is stored). */
    lk_err (*presence_layout_get)(lk_reg_be *be, int *layout);
    lk_err (*presence_layout_set)(lk_reg_be *be, int layout);

    /* ---- push subscriptions (schema 6) ---- */
    lk_err (*subscription_insert)(lk_reg_be *be, const lk_reg_subscription *s);   /* EXISTS */
    /* Everything but project, name and created. NOT_FOUND. */
    lk_err (*subscription_update)(lk_reg_be *be, const lk_reg_subscription *s);
    /* out's members malloc'd (lk_reg_subscription_free). NOT_FOUND. */
    lk_err (*subscription_get)(lk_reg_be *be, const char *project, const char *name,
                               lk_reg_subscription *out);
    lk_err (*subscription_delete)(lk_reg_be *be, const char *project, const char *name); /* NOT_FOUND */
    /* NULL project: all. Ordered by project, name. */
    lk_err (*subscription_list)(lk_reg_be *be, const char *project,
                                int (*cb)(void *arg, const lk_reg_subscription *s), void *arg);

    /* ---- provisioning (schema 7) ---- */
    /* Manifest signers of registry rid in the order added (index = place). */
    lk_err (*signer_list)(lk_reg_be *be, int64_t rid,
                          int (*cb)(void *arg, const lk_reg_signer *s), void *arg);
    /* s's label, pem, fingerprint and created. EXISTS (label or key taken). */
    lk_err (*signer_insert)(lk_reg_be *be, int64_t rid, const lk_reg_signer *s);
    lk_err (*signer_delete)(lk_reg_be *be, int64_t rid, unsigned index); /* NOT_FOUND */
    /* CRLs in the order stored, each with the SHA-256 of its issuer's DER
     * SPKI and the issuer chain it was proved with (NULL = none). */
    lk_err (*crl_list)(lk_reg_be *be, int64_t rid,
                       int (*cb)(void *arg, const lk_reg_crl *c, const uint8_t issuer_key[32],
                                 const char *issuer_chain),
                       void *arg);
    /* Store c, replacing the CRL of the same issuer key (which moves last). */
    lk_err (*crl_put)(lk_reg_be *be, int64_t rid, const lk_reg_crl *c,
                      const uint8_t issuer_key[32], const char *issuer_chain);
    lk_err (*crl_delete)(lk_reg_be *be, int64_t rid, unsigned index); /* NOT_FOUND */
    /* A text that changes whenever the registry's CA certificates or CRLs
     * change (their row ids: rows are never updated in place, ids never
     * reused), at most size - 1 characters. */
    lk_err (*trust_stamp)(lk_reg_be *be, int64_t rid, char *out, size_t size);
    lk_err (*jit_get)(lk_reg_be *be, int64_t rid, lk_reg_jit *out);         /* NOT_FOUND */
    lk_err (*jit_set)(lk_reg_be *be, int64_t rid, int enabled, uint64_t max_devices);
    /* One more device registered just in time (jit_registered + 1). */
    lk_err (*jit_count)(lk_reg_be *be, int64_t rid);
    /* The device id certificate sha registered in rid (ever). NOT_FOUND. */
    lk_err (*jit_cert_find)(lk_reg_be *be, int64_t rid, const uint8_t sha[32], char *id,
                            size_t id_size);
    lk_err (*jit_cert_insert)(lk_reg_be *be, int64_t rid, const uint8_t sha[32], const char *id,
                              uint64_t num_id, int64_t t);               /* EXISTS */
    lk_err (*device_set_jit)(lk_reg_be *be, uint64_t num_id);
    /* A device device_insert has just made (no credentials, no config):
     * its credentials c[0..n) and its first config (c->version becomes its
     * config_version). creds_set + config_add without their deletes, for
     * a large import's write transaction. */
    lk_err (*device_fill)(lk_reg_be *be, uint64_t num_id, const lk_reg_credential *c,
                          unsigned n, const lk_reg_config *cfg);
    /* A staged import's switch: append (kind, num_id, t) to the change feed
     * for every device of registry from, then move them all to registry to.
     * EXISTS when to has a device of one of their ids. */
    /* Up to max staging registries of registry rid (lk_registry_import_
     * begin_staged's "~import-<rid>-...") last written before `before`: the
     * newest of their devices' creation times, or their own. */
    lk_err (*stage_stale)(lk_reg_be *be, int64_t rid, int64_t before, int64_t *srids, size_t max,
                          size_t *n);
    lk_err (*devices_move)(lk_reg_be *be, int64_t from, int64_t to, lk_reg_change_kind kind,
                           int64_t t);

    /* ---- the console (schema LK_REG_SCHEMA_CONSOLE) ---- */
    /* The devices of registry rid that s matches, ordered by device id, at
     * most limit; cb as device_query's, with the device's earliest set
     * credential expiry (0 = none). The backend picks what to walk so that
     * a page costs about the page, not the registry (docs/registry.md). */
    lk_err (*device_search)(lk_reg_be *be, int64_t rid, const lk_reg_be_search *s,
                            unsigned limit,
                            int (*cb)(void *arg, const lk_reg_device *d, int64_t cred_expiry),
                            void *arg);
    /* The counts of each registry of project (not the hidden staging ones,
     * whose id starts with '~'), by location and id. */
    lk_err (*fleet_counts)(lk_reg_be *be, const char *project,
                           int (*cb)(void *arg, const lk_reg_fleet_counts *c), void *arg);
} lk_reg_store;

extern const lk_reg_store lk_reg_sqlite_backend;

#endif
