/*
 * facade.h — what the registry's facade files (registry.c, registries.c,
 * devices.c, configs.c, feed.c, import.c, commands.c, query.c, bindings.c,
 * presence.c, subscriptions.c)
 * share: the handle,
 * the transactions and the checks used by more than one resource. Internal:
 * not installed; the storage backend never includes it.
 */
#ifndef LK_REGISTRY_FACADE_H
#define LK_REGISTRY_FACADE_H

#include <stddef.h>
#include <stdint.h>

#include "../verify/verify_internal.h"
#include "backend.h"
#include "internal.h"
#include "latchkey/lk_reg_audit.h"

/* The verifier's: every refusal formats its reason into why the same way. */
#define failf lk_verify__why

/* Transaction kinds; TX_BROKER is a write a LK_REG_READONLY handle may do. */
enum { TX_READ = 0, TX_WRITE = 1, TX_BROKER = 2 };

/* What an open import adds. */
enum { IMPORT_DEVICES = 1, IMPORT_REGISTRIES = 2 };

struct lk_registry {
    const lk_reg_store *ops;
    lk_reg_be *be;
    unsigned flags;
    unsigned busy_ms;
    int busy;                   /* an operation (or its callback) is running */
    lk_reg_checker *ck;
    int64_t (*clock)(void *arg);
    void *clock_arg;
    int64_t changes_kept;

    int appended;               /* this transaction appended to the change feed */
    uint64_t changes_at_enter;  /* the connection's total_changes when it began */
    int audit_skip;             /* this transaction is bookkeeping, not a change (a staging registry) */
    uint64_t own_commits;       /* write transactions this handle committed */
    uint64_t poll_dv, poll_own; /* what lk_registry_poll saw last */
    int feed_valid;             /* lk_registry_changes' shortcut: */
    uint64_t feed_dv, feed_own; /*   nothing new while these hold */
    int64_t feed_head;

    int importing;              /* IMPORT_DEVICES or IMPORT_REGISTRIES while one is open */
    lk_err import_failed;       /* the database ended the import's transaction */
    int64_t import_rid;
    lk_reg_cas *import_cas;
    char import_name[400];
    int import_checked;         /* the import's trust set is the one import_check used */
    /* a staged import (lk_registry_import_begin_staged): the devices go to
     * the hidden registry stage_rid, in write transactions of at most
     * LK_REG_STAGE_CHUNK devices (stage_open while one is), and move to
     * import_rid at commit if the trust set is still stage_stamp */
    int staged, stage_open;
    int64_t stage_rid;
    unsigned stage_n;
    char stage_stamp[LK_REG_STAMP_MAX];
    lk_reg_checked *checked;    /* lk_registry_import_check's memory (NULL = none) */

    /* the audit record (audit.c): who changes what through this handle;
     * actor "" = nothing recorded */
    char actor[LK_AUDIT_ACTOR_MAX + 1];
    char via[8];
    char action[LK_AUDIT_ACTION_MAX + 1];
    char resource[LK_AUDIT_RESOURCE_MAX + 1];
    char detail[LK_AUDIT_DETAIL_MAX + 1];

    /* lk_registry_list_signers' key descriptions, by SHA-256 of the stored
     * PEM: OpenSSL 3 takes ~0.3 ms to decode a key, and a manifest import
     * lists the signers each time (provision.c) */
    struct {
        uint8_t pem_sha[32];
        char key_type[96];
    } signer_kt[LK_REG_SIGNERS_MAX];
    unsigned signer_kt_added;   /* entries ever added: the next goes to added % MAX */
};

/* ---- reasons, time, names (registry.c) ---- */

/* A storage-level failure: the backend's own message. */
lk_err lk_reg__be_fail(lk_registry *reg, lk_err err, char *why, size_t why_size);
/* Seconds since 1970 (the test clock when one is set). */
int64_t lk_reg__now(const lk_registry *reg);
/* s for a message: printable ASCII only, at most ~60 characters. */
const char *lk_reg__shown(const char *s, char *buf, size_t size);
/* "projects/P/locations/L/registries/R" in buf. */
const char *lk_reg__path(const lk_reg_name *n, char *buf, size_t size);

/* Checks that need no database: LK_OK, or LK_ERR_ARG / LK_ERR_REG_INVALID /
 * LK_ERR_REG_LIMIT with why. */
/* Each that is not NULL. */
lk_err lk_reg__check_place(const char *project, const char *location, char *why,
                           size_t why_size);
/* id is a valid what (lk_id_why: "device id", "backend name"). */
lk_err lk_reg__check_id(const char *what, const char *id, char *why, size_t why_size);
lk_err lk_reg__check_name(const lk_reg_name *n, char *why, size_t why_size);
lk_err lk_reg__check_device_id(const char *id, char *why, size_t why_size);
lk_err lk_reg__check_state(const char *what, lk_reg_state s, char *why, size_t why_size);
lk_err lk_reg__check_config_size(const void *data, size_t len, char *why, size_t why_size);
lk_err lk_reg__check_log_level(const char *what, lk_reg_log_level l, char *why,
                               size_t why_size);
/* A device's or a query's gateway type (IoT Core's GatewayType). */
lk_err lk_reg__check_gateway_type(lk_reg_gateway_type t, char *why, size_t why_size);

/* ---- transactions (registry.c) ---- */

/* Refuse a busy handle (re-entry from a callback) or one with an open
 * import. */
lk_err lk_reg__guard(lk_registry *reg, char *why, size_t why_size);
/* lk_reg__guard, refuse writes the handle's flags forbid, begin a
 * transaction of kind tx (TX_*). */
lk_err lk_reg__enter(lk_registry *reg, int tx, char *why, size_t why_size);
/* End the transaction begun by lk_reg__enter(): commit when err is LK_OK,
 * else roll back. Returns err, or the commit's failure. */
lk_err lk_reg__leave(lk_registry *reg, lk_err err, int tx, char *why, size_t why_size);
/* Append to the change feed in the current write transaction. */
lk_err lk_reg__append_change(lk_registry *reg, lk_reg_change_kind kind, uint64_t num_id,
                             char *why, size_t why_size);
/* The end of a write that changes who may connect: append (kind, num_id)
 * to the change feed if err is LK_OK, then lk_reg__leave. */
lk_err lk_reg__leave_changed(lk_registry *reg, lk_err err, lk_reg_change_kind kind,
                             uint64_t num_id, char *why, size_t why_size);
/* Look up (inside a transaction): LK_ERR_REG_NOT_FOUND with why. */
lk_err lk_reg__find_registry(lk_registry *reg, const lk_reg_name *name, int64_t *rid,
                             char *why, size_t why_size);
lk_err lk_reg__find_device(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                           const char *id, uint64_t *num_id, int64_t *config_version,
                           char *why, size_t why_size);
/* Registry and device in one go (inside a transaction). */
lk_err lk_reg__find_both(lk_registry *reg, const lk_reg_name *name, const char *id,
                         int64_t *rid, uint64_t *num_id, int64_t *config_version, char *why,
                         size_t why_size);
/* Check name, enter a transaction of kind tx and find the registry in it.
 * On failure the transaction is already left (rolled back). */
lk_err lk_reg__enter_registry(lk_registry *reg, int tx, const lk_reg_name *name, int64_t *rid,
                              char *why, size_t why_size);
/* Check name and device id, enter a transaction of kind tx and find the
 * device in it. On failure the transaction is already left (rolled back). */
lk_err lk_reg__enter_device(lk_registry *reg, int tx, const lk_reg_name *name,
                            const char *id, int64_t *rid, uint64_t *num_id, char *why,
                            size_t why_size);
/* The registry's CA certificates, parsed. */
lk_err lk_reg__load_cas(lk_registry *reg, int64_t rid, lk_reg_cas **out, char *why,
                        size_t why_size);
/* The device of registry rid named by ref, a device id or a numId in
 * decimal (query.c), inside a transaction: its num_id and gateway type, or
 * LK_ERR_REG_NOT_FOUND with why naming it as what ("gateway", "device"). */
lk_err lk_reg__find_ref(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                        const char *what, const char *ref, uint64_t *num_id,
                        lk_reg_gateway_type *type, char *why, size_t why_size);
/* One binding of an open devices import (bindings.c), arg a struct
 * lk_reg__bind_item: run by import.c under its savepoint. */
struct lk_reg__bind_item {
    const char *gateway, *device;
};
lk_err lk_reg__import_bind_item(lk_registry *reg, void *arg, char *why, size_t why_size);
/* Forget an open import (its transaction is already ended). */
void lk_reg__import_end(lk_registry *reg);

/* ---- what the import shares with registries.c and devices.c ---- */

/* Everything about a new registry's spec (name already checked) that needs
 * no database: its location is not "topics", states, log level,
 * notification JSON (topics of name's project), and each CA certificate (as add_cert: the CA
 * rules at now, no two alike, at most LK_REGISTRY_CERTS_MAX). */
lk_err lk_reg__check_registry_spec(lk_registry *reg, const lk_reg_name *name,
                                   const lk_reg_registry_spec *spec, char *why, size_t why_size);
/* LK_OK when no registry has this name, else LK_ERR_REG_EXISTS (or the
 * database's failure); inside the current transaction. */
lk_err lk_reg__registry_absent(lk_registry *reg, const lk_reg_name *name, char *why,
                               size_t why_size);
/* Create the registry of a checked spec inside the current write
 * transaction, once lk_reg__registry_absent() said it is not there. */
lk_err lk_reg__insert_registry(lk_registry *reg, const lk_reg_name *name,
                               const lk_reg_registry_spec *spec, char *why, size_t why_size);
/* Check each credential of a new device's spec against cas, with its chain
 * and cert_checks, as lk_reg__insert_device does (devices.c). */
lk_err lk_reg__check_spec_creds(lk_registry *reg, const lk_reg_cas *cas,
                                const lk_reg_device_spec *spec, char *why, size_t why_size);
/* lk_reg__check_spec_creds with a checker and a time of the caller's: what
 * a thread other than the handle's may call (check_many.c). */
lk_err lk_reg__check_spec_creds_ck(lk_reg_checker *ck, int64_t now, const lk_reg_cas *cas,
                                   const lk_reg_device_spec *spec, char *why, size_t why_size);
/* Everything about a new device's spec that needs no database. */
lk_err lk_reg__check_create_spec(const lk_reg_device_spec *spec, char *why, size_t why_size);
/* LK_OK when registry rid has no device id, else LK_ERR_REG_EXISTS naming
 * where (name NULL: the open import's registry), or the database's failure. */
lk_err lk_reg__device_absent(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                             const char *id, char *why, size_t why_size);
/* Create a device of a checked spec inside the current write transaction
 * (name NULL: the open import's registry), once lk_reg__device_absent()
 * said it is not there. Its credentials are checked against cas (with the
 * spec's chain and cert_checks) unless checked says that was done against
 * the same trust set (lk_registry_import_check). */
lk_err lk_reg__insert_device(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                             const lk_reg_cas *cas, const lk_reg_device_spec *spec, int checked,
                             uint64_t *num_id, char *why, size_t why_size);

/* ---- schema 8: the audit record (registry.c, beside lk_reg__leave) ---- */

/* Inside a write transaction about to commit: when the handle has an actor,
 * append its audit row (outcome "ok") and now and then prune. */
lk_err lk_reg__audit_commit(lk_registry *reg, char *why, size_t why_size);

/* ---- schema 6 (presence.c, subscriptions.c) ---- */

/* Before a device is deleted (inside the write transaction): if it has a
 * presence record, leave its tombstone and append LK_CHANGE_PRESENCE_CLEAR. */
lk_err lk_reg__presence_tombstone(lk_registry *reg, uint64_t num_id, char *why, size_t why_size);
/* A notification config's pubsubTopicName (what names it, for the reason):
 * "projects/<project>/topics/T" with T lk_pubsub_name_valid, else
 * LK_ERR_REG_INVALID with why. */
lk_err lk_reg__check_topic_path(const char *project, const char *what, const char *path,
                                char *why, size_t why_size);

/* ---- configs.c's, shared with devices.c (get_device_config) ---- */

/* A config_list callback keeping only the newest row: out receives a copy
 * (its data malloc'd, NUL-terminated) and err LK_OK, or LK_ERR_NOMEM with
 * out zeroed. Start err at LK_ERR_REG_NOT_FOUND: it stays so without rows. */
struct lk_reg__latest {
    lk_reg_config *out;
    lk_err err;
};
int lk_reg__latest_cb(void *arg, const lk_reg_config *c);

#endif
