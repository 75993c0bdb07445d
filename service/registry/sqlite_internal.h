/*
 * sqlite_internal.h — what the files of the SQLite backend share: the
 * statements, the connection handle, the statement helpers, and each
 * operation of backend.h (lk_sq__NAME implements the op NAME; sqlite.c puts
 * them in the table). Internal: the facade never includes it.
 */
#ifndef LK_REGISTRY_SQLITE_INTERNAL_H
#define LK_REGISTRY_SQLITE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "backend.h"
#include "internal.h"

/* The statements (their SQL: sqlite_db.c). */
enum {
    S_BEGIN_W, S_BEGIN_R, S_COMMIT, S_ROLLBACK, S_SAVEPOINT, S_RELEASE, S_ROLLBACK_TO,
    S_DATA_VERSION,
    S_REG_FIND, S_REG_GET, S_REG_LIST, S_REG_INSERT, S_REG_UPDATE, S_REG_DELETE,
    S_CERT_LIST, S_CERT_INSERT, S_CERT_DELETE,
    S_DEV_FIND, S_DEV_GET, S_DEV_LIST, S_DEV_INSERT, S_DEV_BLOCK, S_DEV_DELETE, S_DEV_NUM,
    S_CREDS_GET, S_CREDS_DEL, S_CRED_INS, S_META_GET, S_META_DEL, S_META_INS,
    S_CFG_INS, S_CFG_SETVER, S_CFG_PRUNE, S_CFG_LIST,
    S_STATE_TOUCH, S_STATE_INS, S_STATE_PRUNE, S_STATE_LIST,
    S_ACTIVITY, S_AUTH,
    S_CHG_INS, S_CHG_LIST, S_CHG_BOUNDS, S_CHG_PRUNE,
    S_DEV_BLOCKED, S_CMD_INS, S_CMD_STATUS, S_CMD_PENDING, S_CMD_DECIDE, S_CMD_PRUNE_DECIDED,
    S_CMD_PRUNE_PENDING,
    S_BE_INS, S_BE_DEL, S_BE_LIST, S_BE_LOOKUP,
    S_DEV_REF_ID, S_DEV_REF_NUM, S_DEV_SET_LOG, S_DEV_SET_GWAUTH,
    /* device_query: S_QUERY + (ids filter ? 1 : 0) + (association: 2 gateway's
     * devices, 4 device's gateways) */
    S_QUERY, S_QUERY_IDS, S_QUERY_GW, S_QUERY_IDS_GW, S_QUERY_DEV, S_QUERY_IDS_DEV,
    S_BIND_EXISTS, S_BIND_COUNTS, S_BIND_INS, S_BIND_DEL,
    S_REG_SET_LOG, S_CERT_CLEAR,
    S_SA_INS, S_SA_KEYS, S_SA_KEY_INS, S_SA_LOOKUP, S_SA_LIST, S_SA_KEY_DISABLE, S_SA_KEY_DEL,
    S_SA_DEL,
    S_BRIDGE_SET, S_BRIDGE_LOOKUP,
    S_OP_INS, S_OP_GET, S_OP_SETPW, S_OP_DISABLE, S_OP_DEL, S_OP_LIST,
    S_AUD_INS, S_AUD_PRUNE, S_AUD_NEW, S_AUD_OLD,
    S_PRES_SET, S_PRES_RESET, S_PRES_LIST, S_TOMB_MAKE, S_TOMB_LIST, S_TOMB_DEL,
    S_SUB_INS, S_SUB_UPD, S_SUB_GET, S_SUB_DEL, S_SUB_LIST,
    S_SIGNER_LIST, S_SIGNER_INS, S_SIGNER_DEL, S_CRL_LIST, S_CRL_PUT, S_CRL_DEL, S_TRUST_STAMP,
    S_JIT_GET, S_JIT_SET, S_JIT_COUNT, S_JIT_CERT_FIND, S_JIT_CERT_INS, S_DEV_SET_JIT,
    S_STAGE_FEED, S_STAGE_MOVE, S_STAGE_STALE,
    S__N
};

struct lk_reg_be {
    sqlite3 *db;
    sqlite3_stmt *st[S__N];
    char err[256];
};

/* ---- statements, errors, binding (sqlite_db.c) ---- */

lk_err lk_sq__map_rc(int rc);
/* Record the connection's message for rc and map it. */
lk_err lk_sq__fail(lk_reg_be *be, int rc);
sqlite3_stmt *lk_sq__st(lk_reg_be *be, int i);
/* A statement failed at rc (bind or step): record, reset, map. */
lk_err lk_sq__st_fail(lk_reg_be *be, sqlite3_stmt *s, int rc);
lk_err lk_sq__no_stmt(lk_reg_be *be);
int lk_sq__bind_text(sqlite3_stmt *s, int i, const char *t);
/* *s = the statement which, its ?1, ?2, ?3 bound to a registry's project,
 * location and id (the statements that find one by name): LK_OK, or the
 * failure. */
lk_err lk_sq__place(lk_reg_be *be, int which, const char *project, const char *location,
                    const char *registry, sqlite3_stmt **s);
/* An empty blob, not NULL, when n is 0. */
int lk_sq__bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n);
/* Step a statement that returns no rows; reset it. */
lk_err lk_sq__run(lk_reg_be *be, sqlite3_stmt *s);
/* lk_sq__run() a statement whose binding ended at rc (st_fail if that failed). */
lk_err lk_sq__run_bound(lk_reg_be *be, sqlite3_stmt *s, int rc);
/* lk_sq__run_bound(), then LK_ERR_REG_NOT_FOUND if no row changed. */
lk_err lk_sq__run_bound_found(lk_reg_be *be, sqlite3_stmt *s, int rc);
/* Step a statement whose binding ended at rc to its first row: LK_OK with
 * the row current (the caller reads it and resets), LK_ERR_REG_NOT_FOUND
 * (reset) when there is none, else st_fail. */
lk_err lk_sq__step_row(lk_reg_be *be, sqlite3_stmt *s, int rc);
/* lk_sq__step_row for a yes-or-no question: LK_OK with *found 1 when s
 * gives a row (then reset), 0 when none; or the failure (*found 0). */
lk_err lk_sq__exists(lk_reg_be *be, sqlite3_stmt *s, int rc, int *found);
/* End a row loop that stopped at step result rc: st_fail unless it ran
 * out (DONE) or the caller stopped early (ROW); else reset. */
lk_err lk_sq__rows_end(lk_reg_be *be, sqlite3_stmt *s, int rc);
char *lk_sq__col_strdup(sqlite3_stmt *s, int i);
/* A blob column, always allocated (len + 1 bytes, NUL-terminated). */
uint8_t *lk_sq__col_blob(sqlite3_stmt *s, int i, size_t *len);
/* A device's schema 7 columns last_key, last_key_time, jit at col..col + 2
 * into d (a last_key that is not 32 bytes reads as none). */
void lk_sq__col_key(sqlite3_stmt *s, int col, lk_reg_device *d);
/* Run a whole script (open-time only: pragmas and migrations). */
lk_err lk_sq__exec(lk_reg_be *be, const char *sql);
/* A one-row, one-column query (open-time only). *text gets a malloc'd copy
 * when not NULL, otherwise *v the integer. */
lk_err lk_sq__query1(lk_reg_be *be, const char *sql, int64_t *v, char **text);
/* The one row of the statement which (no parameters): its first integer
 * column into *a and, if b is not NULL, its second into *b. */
lk_err lk_sq__ints(lk_reg_be *be, int which, int64_t *a, int64_t *b);
/* *s = the statement which, its ?1 bound to v (most statements are keyed
 * by one id): LK_OK, or the failure. */
lk_err lk_sq__bind1(lk_reg_be *be, int which, int64_t v, sqlite3_stmt **s);
/* lk_sq__bind1, then lk_sq__step_row: LK_OK with the first row current,
 * LK_ERR_REG_NOT_FOUND when there is none, or the failure. */
lk_err lk_sq__row1(lk_reg_be *be, int which, int64_t v, sqlite3_stmt **s);
/* Run a statement whose parameters ?1..?n are the integers v[0..n):
 * LK_ERR_REG_NOT_FOUND when found is set and no row changed. */
lk_err lk_sq__run_ints(lk_reg_be *be, int which, int found, size_t n, const int64_t *v);

/* Bind while every bind so far succeeded (rc is the caller's). */
#define BIND(call)                                                                           \
    do {                                                                                     \
        if (rc == SQLITE_OK)                                                                 \
            rc = (call);                                                                     \
    } while (0)

/* s = the prepared statement i, or return the failure. */
#define PREP(s, i)                                                                           \
    do {                                                                                     \
        (s) = lk_sq__st(be, (i));                                                            \
        if ((s) == NULL)                                                                     \
            return lk_sq__no_stmt(be);                                                       \
    } while (0)

/* lk_sq__run_ints with the integers as arguments. */
#define RUN_INTS(which, found, ...)                                                          \
    lk_sq__run_ints(be, (which), (found), sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t), \
                    (int64_t[]){__VA_ARGS__})

/* ---- sqlite_db.c: connection and transactions ---- */

void lk_sq__close(lk_reg_be *be);
void lk_sq__set_busy_timeout(lk_reg_be *be, unsigned ms);
const char *lk_sq__last_error(lk_reg_be *be);
lk_err lk_sq__begin(lk_reg_be *be, int write);
void lk_sq__rollback(lk_reg_be *be);
lk_err lk_sq__commit(lk_reg_be *be);
lk_err lk_sq__savepoint(lk_reg_be *be);
lk_err lk_sq__release(lk_reg_be *be);
lk_err lk_sq__rollback_to(lk_reg_be *be);
int lk_sq__in_transaction(lk_reg_be *be);
lk_err lk_sq__data_version(lk_reg_be *be, uint64_t *v);
lk_err lk_sq__check(lk_reg_be *be);

/* ---- sqlite_open.c ---- */

lk_err lk_sq__open(const char *path, unsigned flags, lk_reg_be **out, char *why,
                   size_t why_size);

/* ---- sqlite_registries.c ---- */

lk_err lk_sq__registry_find(lk_reg_be *be, const lk_reg_name *name, int64_t *rid);
lk_err lk_sq__registry_get(lk_reg_be *be, int64_t rid, lk_reg_registry *out);
lk_err lk_sq__registry_list(lk_reg_be *be, const char *project, const char *location,
                            int (*cb)(void *arg, const lk_reg_registry *r), void *arg);
lk_err lk_sq__registry_insert(lk_reg_be *be, const lk_reg_registry *r, int64_t *rid);
lk_err lk_sq__registry_update(lk_reg_be *be, int64_t rid, const lk_reg_registry *r);
lk_err lk_sq__registry_delete(lk_reg_be *be, int64_t rid);
lk_err lk_sq__cert_list(lk_reg_be *be, int64_t rid,
                        int (*cb)(void *arg, unsigned index, const char *pem, size_t len),
                        void *arg);
lk_err lk_sq__cert_insert(lk_reg_be *be, int64_t rid, const char *pem, size_t len);
lk_err lk_sq__cert_delete(lk_reg_be *be, int64_t rid, unsigned index);

/* ---- sqlite_devices.c ---- */

lk_err lk_sq__device_find(lk_reg_be *be, int64_t rid, const char *id, uint64_t *num_id,
                          int64_t *config_version);
/* Read the credential in columns col..col + 2 (format, pem, expires) of
 * s's current row into out[*n] and count it: the one reader of credential
 * rows (a device's credentials, the broker's lookup). LK_ERR_REG_STORAGE
 * past LK_DEVICE_CREDENTIALS_MAX, LK_ERR_NOMEM. */
lk_err lk_sq__read_cred(lk_reg_be *be, sqlite3_stmt *s, int col,
                        lk_reg_credential out[LK_DEVICE_CREDENTIALS_MAX], unsigned *n);
lk_err lk_sq__creds_get(lk_reg_be *be, uint64_t num_id,
                        lk_reg_credential out[LK_DEVICE_CREDENTIALS_MAX], unsigned *n);
lk_err lk_sq__device_get(lk_reg_be *be, uint64_t num_id, lk_reg_device *d);
lk_err lk_sq__device_list(lk_reg_be *be, int64_t rid, int (*cb)(void *arg, uint64_t num_id),
                          void *arg);
lk_err lk_sq__device_insert(lk_reg_be *be, int64_t rid, const lk_reg_device_spec *spec,
                            int64_t created, uint64_t *num_id);
lk_err lk_sq__device_num_taken(lk_reg_be *be, uint64_t num_id, int *taken);
lk_err lk_sq__device_set_blocked(lk_reg_be *be, uint64_t num_id, int blocked);
lk_err lk_sq__device_delete(lk_reg_be *be, uint64_t num_id);
lk_err lk_sq__creds_set(lk_reg_be *be, uint64_t num_id, const lk_reg_credential *c,
                        unsigned n);
lk_err lk_sq__metadata_set(lk_reg_be *be, uint64_t num_id, const lk_reg_metadata *m,
                           unsigned n);

/* ---- sqlite_configs.c ---- */

lk_err lk_sq__config_add(lk_reg_be *be, uint64_t num_id, const lk_reg_config *c,
                         unsigned keep);
lk_err lk_sq__config_list(lk_reg_be *be, uint64_t num_id, unsigned max,
                          int (*cb)(void *arg, const lk_reg_config *c), void *arg);
lk_err lk_sq__state_add(lk_reg_be *be, uint64_t num_id, const lk_reg_state_entry *e,
                        unsigned keep);
lk_err lk_sq__state_list(lk_reg_be *be, uint64_t num_id, unsigned max,
                         int (*cb)(void *arg, const lk_reg_state_entry *e), void *arg);

/* ---- sqlite_feed.c ---- */

lk_err lk_sq__activity(lk_reg_be *be, const lk_reg_activity *a);
lk_err lk_sq__auth_lookup(lk_reg_be *be, const lk_reg_name *name, const char *id,
                          lk_reg_auth *out);
lk_err lk_sq__change_append(lk_reg_be *be, lk_reg_change_kind kind, uint64_t num_id, int64_t t);
lk_err lk_sq__change_list(lk_reg_be *be, int64_t after,
                          int (*cb)(void *arg, const lk_reg_change *c), void *arg);
lk_err lk_sq__change_bounds(lk_reg_be *be, int64_t *oldest, int64_t *newest);
lk_err lk_sq__change_prune(lk_reg_be *be, int64_t keep);

/* ---- sqlite_commands.c ---- */

lk_err lk_sq__device_blocked(lk_reg_be *be, uint64_t num_id, int *blocked);
lk_err lk_sq__command_insert(lk_reg_be *be, uint64_t num_id, const char *subfolder,
                             const uint8_t *data, size_t len, int64_t created, int64_t *id);
lk_err lk_sq__command_status(lk_reg_be *be, int64_t id, lk_reg_command_status *status,
                             int64_t *decided);
lk_err lk_sq__command_pending(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_command *c),
                              void *arg);
lk_err lk_sq__command_decide(lk_reg_be *be, int64_t id, lk_reg_command_status status,
                             int64_t t, int *won);
lk_err lk_sq__command_prune(lk_reg_be *be, int64_t decided_before, int64_t created_before);
lk_err lk_sq__backend_insert(lk_reg_be *be, const char *name, const char *project,
                             const uint8_t secret_sha256[32], int64_t created);
lk_err lk_sq__backend_delete(lk_reg_be *be, const char *name);
lk_err lk_sq__backend_list(lk_reg_be *be, const char *project,
                           int (*cb)(void *arg, const lk_reg_backend *b), void *arg);
lk_err lk_sq__backend_lookup(lk_reg_be *be, const char *name, char *project,
                             size_t project_size, uint8_t secret_sha256[32]);
lk_err lk_sq__bridge_set(lk_reg_be *be, const char *name, const uint8_t secret_sha256[32],
                         int64_t updated);
lk_err lk_sq__bridge_lookup(lk_reg_be *be, const char *name, uint8_t secret_sha256[32]);

/* ---- sqlite_audit.c: operators and the audit record (schema 8) ---- */
lk_err lk_sq__operator_insert(lk_reg_be *be, const char *name, const char *project,
                              lk_reg_sa_role role, const char *record, int64_t created);
lk_err lk_sq__operator_get(lk_reg_be *be, const char *name, lk_reg_operator *o, char **record);
lk_err lk_sq__operator_set_password(lk_reg_be *be, const char *name, const char *record);
lk_err lk_sq__operator_set_disabled(lk_reg_be *be, const char *name, int disabled);
lk_err lk_sq__operator_delete(lk_reg_be *be, const char *name);
lk_err lk_sq__operator_list(lk_reg_be *be, const char *project,
                            int (*cb)(void *arg, const lk_reg_operator *o), void *arg);
uint64_t lk_sq__total_changes(lk_reg_be *be);
lk_err lk_sq__audit_append(lk_reg_be *be, const lk_reg_audit_record *r, int64_t *id);
lk_err lk_sq__audit_prune(lk_reg_be *be, int64_t max_id, int64_t before);
lk_err lk_sq__audit_list(lk_reg_be *be, const lk_reg_audit_query *q,
                         int (*cb)(void *arg, const lk_reg_audit_record *r), void *arg);

/* ---- sqlite_query.c ---- */

/* The devices row's columns device_query gives (d is the devices table),
 * and their reader: the row of s from column 0 into *d, its strings
 * borrowed from s (valid until the next step). 0, or -1 when the id could
 * not be read (out of memory). */
#define LK_SQ_DEVICE_ROW                                                                     \
    "d.num_id, d.device_id, d.blocked, d.created, d.config_version, d.last_heartbeat, "     \
    "d.last_event, d.last_state, d.last_config_ack, d.last_config_send, d.last_error, "       \
    "d.last_error_status, d.log_level, d.gateway_type, d.gateway_auth_method, "               \
    "d.last_accessed_gateway_id, d.last_accessed_gateway_time, d.presence, d.presence_time, " \
    "d.presence_detail, d.last_key, d.last_key_time, d.jit"
#define LK_SQ_DEVICE_ROW_N 23
int lk_sq__col_device_row(sqlite3_stmt *s, lk_reg_device *d);

lk_err lk_sq__device_ref(lk_reg_be *be, int64_t rid, const char *id, uint64_t num_id,
                         uint64_t *num_out, lk_reg_gateway_type *gateway_type);
lk_err lk_sq__device_query(lk_reg_be *be, int64_t rid, const lk_reg_device_query *q,
                           uint64_t assoc_gateway, uint64_t assoc_device, unsigned limit,
                           int (*cb)(void *arg, const lk_reg_device *d), void *arg);
lk_err lk_sq__device_set_log_level(lk_reg_be *be, uint64_t num_id, lk_reg_log_level level);
lk_err lk_sq__device_set_gateway_auth(lk_reg_be *be, uint64_t num_id,
                                      lk_reg_gateway_auth method);
lk_err lk_sq__binding_exists(lk_reg_be *be, uint64_t gateway, uint64_t device, int *bound);
lk_err lk_sq__binding_counts(lk_reg_be *be, uint64_t gateway, uint64_t device,
                             uint64_t *gateway_devices, uint64_t *device_gateways);
lk_err lk_sq__binding_insert(lk_reg_be *be, uint64_t gateway, uint64_t device,
                             int64_t created);
lk_err lk_sq__binding_delete(lk_reg_be *be, uint64_t gateway, uint64_t device);
lk_err lk_sq__registry_set_log_level(lk_reg_be *be, int64_t rid, lk_reg_log_level level);
lk_err lk_sq__cert_clear(lk_reg_be *be, int64_t rid);
/* ---- sqlite_service_accounts.c ---- */

lk_err lk_sq__sa_insert(lk_reg_be *be, const char *email, const char *project, const char *name,
                        lk_reg_sa_role role, int64_t created);
lk_err lk_sq__sa_key_count(lk_reg_be *be, const char *email, unsigned *n);
lk_err lk_sq__sa_key_insert(lk_reg_be *be, const char *email, const char *key_id,
                            const char *pem, size_t pem_len, int64_t created);
lk_err lk_sq__sa_lookup(lk_reg_be *be, const char *key_id, lk_reg_sa_key *out);
lk_err lk_sq__sa_list(lk_reg_be *be, const char *project,
                      int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg);
lk_err lk_sq__sa_key_set_disabled(lk_reg_be *be, const char *key_id, int disabled);
lk_err lk_sq__sa_key_delete(lk_reg_be *be, const char *key_id);
lk_err lk_sq__sa_delete(lk_reg_be *be, const char *email);

/* ---- sqlite_presence.c (schema 6) ---- */

lk_err lk_sq__presence_set(lk_reg_be *be, const lk_reg_presence_update *u);
lk_err lk_sq__presence_reset(lk_reg_be *be, int64_t t, const char *reason);
lk_err lk_sq__presence_list(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_device *d),
                            void *arg);
lk_err lk_sq__tombstone_make(lk_reg_be *be, uint64_t num_id, int64_t t, int *made);
lk_err lk_sq__tombstone_list(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_tombstone *t),
                             void *arg);
lk_err lk_sq__tombstone_delete(lk_reg_be *be, uint64_t num_id);
lk_err lk_sq__presence_layout_get(lk_reg_be *be, int *layout);
lk_err lk_sq__presence_layout_set(lk_reg_be *be, int layout);

/* ---- sqlite_subscriptions.c (schema 6) ---- */

lk_err lk_sq__subscription_insert(lk_reg_be *be, const lk_reg_subscription *s);
lk_err lk_sq__subscription_update(lk_reg_be *be, const lk_reg_subscription *s);
lk_err lk_sq__subscription_get(lk_reg_be *be, const char *project, const char *name,
                               lk_reg_subscription *out);
lk_err lk_sq__subscription_delete(lk_reg_be *be, const char *project, const char *name);
lk_err lk_sq__subscription_list(lk_reg_be *be, const char *project,
                                int (*cb)(void *arg, const lk_reg_subscription *s), void *arg);

/* ---- sqlite_provision.c (schema 7) ---- */
lk_err lk_sq__signer_list(lk_reg_be *be, int64_t rid,
                          int (*cb)(void *arg, const lk_reg_signer *s), void *arg);
lk_err lk_sq__signer_insert(lk_reg_be *be, int64_t rid, const lk_reg_signer *s);
lk_err lk_sq__signer_delete(lk_reg_be *be, int64_t rid, unsigned index);
lk_err lk_sq__crl_list(lk_reg_be *be, int64_t rid,
                       int (*cb)(void *arg, const lk_reg_crl *c, const uint8_t issuer_key[32],
                                 const char *issuer_chain),
                       void *arg);
lk_err lk_sq__crl_put(lk_reg_be *be, int64_t rid, const lk_reg_crl *c,
                      const uint8_t issuer_key[32], const char *issuer_chain);
lk_err lk_sq__crl_delete(lk_reg_be *be, int64_t rid, unsigned index);
lk_err lk_sq__trust_stamp(lk_reg_be *be, int64_t rid, char *out, size_t size);
lk_err lk_sq__jit_get(lk_reg_be *be, int64_t rid, lk_reg_jit *out);
lk_err lk_sq__jit_set(lk_reg_be *be, int64_t rid, int enabled, uint64_t max_devices);
lk_err lk_sq__jit_count(lk_reg_be *be, int64_t rid);
lk_err lk_sq__jit_cert_find(lk_reg_be *be, int64_t rid, const uint8_t sha[32], char *id,
                            size_t id_size);
lk_err lk_sq__jit_cert_insert(lk_reg_be *be, int64_t rid, const uint8_t sha[32], const char *id,
                              uint64_t num_id, int64_t t);
lk_err lk_sq__device_set_jit(lk_reg_be *be, uint64_t num_id);
lk_err lk_sq__stage_stale(lk_reg_be *be, int64_t rid, int64_t before, int64_t *srids, size_t max,
                          size_t *n);
lk_err lk_sq__devices_move(lk_reg_be *be, int64_t from, int64_t to, lk_reg_change_kind kind,
                           int64_t t);
lk_err lk_sq__device_fill(lk_reg_be *be, uint64_t num_id, const lk_reg_credential *c,
                          unsigned n, const lk_reg_config *cfg);

/* ---- sqlite_search.c ---- */

/* What a search walks (docs/registry.md "Finding devices at scale"): the (registry,
 * device_id) index, a filter's id-ordered index, or a time-ordered one. */
enum {
    LK_SQ_DRV_BASE, LK_SQ_DRV_BLOCKED, LK_SQ_DRV_GATEWAY, LK_SQ_DRV_PRESENCE, LK_SQ_DRV_SILENT,
    LK_SQ_DRV_EXPIRING, LK_SQ_DRV__N
};
/* The search statement for s walking driver, in sql[size] (its parameters:
 * sqlite_search.c's bind_all): 0, or -1 when it does not fit or driver is
 * out of range. The search's own, and the plan tests' (test_registry_console.c). */
int lk_sq__search_sql(const lk_reg_be_search *s, int driver, char *sql, size_t size);

lk_err lk_sq__device_search(lk_reg_be *be, int64_t rid, const lk_reg_be_search *s, unsigned limit,
                            int (*cb)(void *arg, const lk_reg_device *d, int64_t cred_expiry),
                            void *arg);
lk_err lk_sq__fleet_counts(lk_reg_be *be, const char *project,
                           int (*cb)(void *arg, const lk_reg_fleet_counts *c), void *arg);

#endif
