/*
 * sqlite_db.c — the SQLite backend's statements and its connection-level
 * operations (backend.h: transactions, data_version, check, close).
 *
 * Every statement is prepared once, on first use, with
 * SQLITE_PREPARE_PERSISTENT and kept on the handle until close; every
 * return code is checked. SQLITE_BUSY/LOCKED -> LK_ERR_REG_BUSY, a UNIQUE
 * violation -> LK_ERR_REG_EXISTS, anything else -> LK_ERR_REG_STORAGE with
 * sqlite3_errmsg() (which names tables and columns, never row data) kept for
 * last_error().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

#define REG_COLUMNS                                                                          \
    "r.project, r.location, r.registry_id, r.mqtt, r.http, r.event_notification_json, "     \
    "r.state_notification_json, r.created, "                                                 \
    "(SELECT count(*) FROM registry_certs c WHERE c.registry = r.id), "                      \
    "(SELECT count(*) FROM devices d WHERE d.registry = r.id), r.log_level"

/* device_query's statements. ?1 registry, ?2 after this id ("" = from the
 * start), ?3 gateway type (0 = any; NON_GATEWAY also matches 0), ?4 JSON
 * array of ids, ?5 JSON array of numIds, ?6 the gateway whose devices, ?7 the
 * device whose gateways, ?8 how many. Without a filter on ids or
 * associations the (registry, device_id) index is range-scanned from ?2
 * (Q_SEEK); with one, the candidates (at most 20,000 ids, 10,000 bound
 * devices) drive the query and the range test is a filter (Q_PICK: the unary
 * + keeps the planner off the index range, which would scan the registry). */
#define Q_HEAD "SELECT " LK_SQ_DEVICE_ROW " FROM devices d WHERE "
#define Q_SEEK "d.registry = ?1 AND d.device_id > ?2 "
#define Q_PICK "+d.registry = ?1 AND +d.device_id > ?2 "
#define Q_TYPE "AND (?3 = 0 OR d.gateway_type = ?3 OR (?3 = 2 AND d.gateway_type = 0)) "
#define Q_IDS                                                                                \
    "AND d.num_id IN (SELECT i.num_id FROM devices i WHERE i.registry = ?1 AND i.device_id IN " \
    "(SELECT value FROM json_each(?4)) UNION ALL SELECT value FROM json_each(?5)) "
#define Q_GW "AND d.num_id IN (SELECT device FROM gateway_bindings WHERE gateway = ?6) "
#define Q_DEV "AND d.num_id IN (SELECT gateway FROM gateway_bindings WHERE device = ?7) "
#define Q_TAIL "ORDER BY d.device_id LIMIT ?8"

static const char *const sql_text[S__N] = {
    [S_BEGIN_W] = "BEGIN IMMEDIATE",
    [S_BEGIN_R] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT lk_item",
    [S_RELEASE] = "RELEASE lk_item",
    [S_ROLLBACK_TO] = "ROLLBACK TO lk_item",
    [S_DATA_VERSION] = "PRAGMA data_version",

    [S_REG_FIND] = "SELECT id FROM registries WHERE project = ?1 AND location = ?2 AND "
                   "registry_id = ?3",
    [S_REG_GET] = "SELECT " REG_COLUMNS " FROM registries r WHERE r.id = ?1",
    [S_REG_LIST] = "SELECT " REG_COLUMNS " FROM registries r WHERE (?1 IS NULL OR r.project = ?1) "
                   "AND (?2 IS NULL OR r.location = ?2) AND substr(r.registry_id, 1, 1) <> '~' "
                   "ORDER BY r.project, r.location, r.registry_id",
    [S_REG_INSERT] = "INSERT INTO registries(project, location, registry_id, mqtt, http, "
                     "event_notification_json, state_notification_json, created, log_level) "
                     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_REG_UPDATE] = "UPDATE registries SET mqtt = ?2, http = ?3, event_notification_json = ?4, "
                     "state_notification_json = ?5 WHERE id = ?1",
    [S_REG_DELETE] = "DELETE FROM registries WHERE id = ?1",

    [S_CERT_LIST] = "SELECT pem FROM registry_certs WHERE registry = ?1 ORDER BY id",
    [S_CERT_INSERT] = "INSERT INTO registry_certs(registry, pem) VALUES(?1, ?2)",
    [S_CERT_DELETE] = "DELETE FROM registry_certs WHERE id = (SELECT id FROM registry_certs "
                      "WHERE registry = ?1 ORDER BY id LIMIT 1 OFFSET ?2)",

    [S_DEV_FIND] = "SELECT num_id, config_version FROM devices WHERE registry = ?1 AND "
                   "device_id = ?2",
    [S_DEV_GET] = "SELECT d.device_id, r.project, r.location, r.registry_id, d.blocked, "
                  "d.created, d.config_version, d.last_heartbeat, d.last_event, d.last_state, "
                  "d.last_config_ack, d.last_config_send, d.last_error, d.last_error_status, "
                  "d.log_level, d.gateway_type, d.gateway_auth_method, "
                  "d.last_accessed_gateway_id, d.last_accessed_gateway_time, d.presence, "
                  "d.presence_time, d.presence_detail, d.last_key, d.last_key_time, d.jit "
                  "FROM devices d JOIN registries r ON r.id = d.registry WHERE d.num_id = ?1",
    [S_DEV_LIST] = "SELECT num_id FROM devices WHERE registry = ?1 ORDER BY device_id",
    [S_DEV_INSERT] = "INSERT INTO devices(num_id, registry, device_id, blocked, created, "
                     "log_level, gateway_type, gateway_auth_method, last_accessed_gateway_id, "
                     "last_accessed_gateway_time) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_DEV_NUM] = "SELECT 1 FROM devices WHERE num_id = ?1",
    [S_DEV_BLOCK] = "UPDATE devices SET blocked = ?2 WHERE num_id = ?1",
    [S_DEV_DELETE] = "DELETE FROM devices WHERE num_id = ?1",

    [S_CREDS_GET] = "SELECT format, pem, expires FROM device_credentials WHERE num_id = ?1 "
                    "ORDER BY pos",
    [S_CREDS_DEL] = "DELETE FROM device_credentials WHERE num_id = ?1",
    [S_CRED_INS] = "INSERT INTO device_credentials(num_id, pos, format, pem, expires) "
                   "VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_META_GET] = "SELECT key, value FROM device_metadata WHERE num_id = ?1 ORDER BY key",
    [S_META_DEL] = "DELETE FROM device_metadata WHERE num_id = ?1",
    [S_META_INS] = "INSERT INTO device_metadata(num_id, key, value) VALUES(?1, ?2, ?3)",

    [S_CFG_INS] = "INSERT INTO device_configs(num_id, version, cloud_update_time, "
                  "device_ack_time, data) VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_CFG_SETVER] = "UPDATE devices SET config_version = ?2 WHERE num_id = ?1",
    [S_CFG_PRUNE] = "DELETE FROM device_configs WHERE num_id = ?1 AND version <= ?2",
    [S_CFG_LIST] = "SELECT version, cloud_update_time, device_ack_time, data FROM device_configs "
                   "WHERE num_id = ?1 ORDER BY version DESC LIMIT ?2",

    [S_STATE_TOUCH] = "UPDATE devices SET last_state = max(last_state, ?2) WHERE num_id = ?1",
    [S_STATE_INS] = "INSERT INTO device_states(num_id, update_time, data) VALUES(?1, ?2, ?3)",
    [S_STATE_PRUNE] = "DELETE FROM device_states WHERE num_id = ?1 AND id <= (SELECT id FROM "
                      "device_states WHERE num_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    [S_STATE_LIST] = "SELECT update_time, data FROM device_states WHERE num_id = ?1 "
                     "ORDER BY id DESC LIMIT ?2",

    [S_ACTIVITY] = "UPDATE devices SET "
                   "last_heartbeat = max(last_heartbeat, ?2), "
                   "last_event = max(last_event, ?3), "
                   "last_state = max(last_state, ?4), "
                   "last_config_send = max(last_config_send, ?5), "
                   "last_error_status = CASE WHEN ?6 <> 0 AND ?6 >= last_error THEN ?7 "
                   "ELSE last_error_status END, "
                   "last_error = max(last_error, ?6), "
                   "last_accessed_gateway_id = CASE WHEN ?8 <> 0 AND ?8 >= last_accessed_gateway_time "
                   "THEN ?9 ELSE last_accessed_gateway_id END, "
                   "last_accessed_gateway_time = max(last_accessed_gateway_time, ?8), "
                   "last_key = CASE WHEN ?10 IS NOT NULL AND ?11 >= last_key_time THEN ?10 "
                   "ELSE last_key END, "
                   "last_key_time = CASE WHEN ?10 IS NOT NULL THEN max(last_key_time, ?11) "
                   "ELSE last_key_time END "
                   "WHERE num_id = ?1",
    [S_AUTH] = "SELECT d.num_id, d.blocked, r.mqtt, d.config_version, d.gateway_type, "
               "d.gateway_auth_method, c.format, c.pem, c.expires, d.log_level, r.log_level "
               "FROM registries r JOIN devices d ON d.registry = r.id "
               "LEFT JOIN device_credentials c ON c.num_id = d.num_id "
               "WHERE r.project = ?1 AND r.location = ?2 AND r.registry_id = ?3 "
               "AND d.device_id = ?4 ORDER BY c.pos",

    [S_CHG_INS] = "INSERT INTO changes(kind, num_id, time) VALUES(?1, ?2, ?3)",
    [S_CHG_LIST] = "SELECT seq, kind, num_id FROM changes WHERE seq > ?1 ORDER BY seq",
    [S_CHG_BOUNDS] = "SELECT (SELECT seq FROM changes ORDER BY seq LIMIT 1), "
                     "(SELECT seq FROM changes ORDER BY seq DESC LIMIT 1)",
    [S_CHG_PRUNE] = "DELETE FROM changes WHERE seq <= "
                    "(SELECT seq FROM changes ORDER BY seq DESC LIMIT 1) - ?1",

    [S_DEV_BLOCKED] = "SELECT blocked FROM devices WHERE num_id = ?1",
    [S_CMD_INS] = "INSERT INTO commands(num_id, subfolder, data, created) VALUES(?1, ?2, ?3, ?4)",
    [S_CMD_STATUS] = "SELECT status, decided FROM commands WHERE id = ?1",
    [S_CMD_PENDING] = "SELECT c.id, c.num_id, d.device_id, r.project, r.location, r.registry_id, "
                      "c.subfolder, c.data, c.created FROM commands c "
                      "JOIN devices d ON d.num_id = c.num_id JOIN registries r ON r.id = d.registry "
                      "WHERE c.status = 0 ORDER BY c.id",
    /* The only write of a command's outcome: atomic, first decision wins. */
    [S_CMD_DECIDE] = "UPDATE commands SET status = ?2, decided = ?3 WHERE id = ?1 AND status = 0",
    [S_CMD_PRUNE_DECIDED] = "DELETE FROM commands WHERE status <> 0 AND decided < ?1",
    [S_CMD_PRUNE_PENDING] = "DELETE FROM commands WHERE status = 0 AND created < ?1",

    [S_BE_INS] = "INSERT INTO backends(name, project, secret_sha256, created) VALUES(?1, ?2, ?3, ?4)",
    [S_BE_DEL] = "DELETE FROM backends WHERE name = ?1",
    [S_BE_LIST] = "SELECT name, project, created FROM backends WHERE (?1 IS NULL OR project = ?1) "
                  "ORDER BY project, name",
    [S_BE_LOOKUP] = "SELECT project, secret_sha256 FROM backends WHERE name = ?1",

    [S_DEV_REF_ID] = "SELECT num_id, gateway_type FROM devices WHERE registry = ?1 AND "
                     "device_id = ?2",
    [S_DEV_REF_NUM] = "SELECT num_id, gateway_type FROM devices WHERE num_id = ?2 AND "
                      "registry = ?1",
    [S_DEV_SET_LOG] = "UPDATE devices SET log_level = ?2 WHERE num_id = ?1",
    [S_DEV_SET_GWAUTH] = "UPDATE devices SET gateway_auth_method = ?2 WHERE num_id = ?1",

    [S_QUERY] = Q_HEAD Q_SEEK Q_TYPE Q_TAIL,
    [S_QUERY_IDS] = Q_HEAD Q_PICK Q_TYPE Q_IDS Q_TAIL,
    [S_QUERY_GW] = Q_HEAD Q_PICK Q_TYPE Q_GW Q_TAIL,
    [S_QUERY_IDS_GW] = Q_HEAD Q_PICK Q_TYPE Q_IDS Q_GW Q_TAIL,
    [S_QUERY_DEV] = Q_HEAD Q_PICK Q_TYPE Q_DEV Q_TAIL,
    [S_QUERY_IDS_DEV] = Q_HEAD Q_PICK Q_TYPE Q_IDS Q_DEV Q_TAIL,

    [S_BIND_EXISTS] = "SELECT 1 FROM gateway_bindings WHERE gateway = ?1 AND device = ?2",
    [S_BIND_COUNTS] = "SELECT (SELECT count(*) FROM gateway_bindings WHERE gateway = ?1), "
                      "(SELECT count(*) FROM gateway_bindings WHERE device = ?2)",
    [S_BIND_INS] = "INSERT INTO gateway_bindings(gateway, device, created) VALUES(?1, ?2, ?3)",
    [S_BIND_DEL] = "DELETE FROM gateway_bindings WHERE gateway = ?1 AND device = ?2",

    [S_REG_SET_LOG] = "UPDATE registries SET log_level = ?2 WHERE id = ?1",
    [S_CERT_CLEAR] = "DELETE FROM registry_certs WHERE registry = ?1",
#define SA_COLUMNS "k.key_id, a.email, a.project, a.name, a.role, k.public_pem, k.disabled, "
    [S_SA_INS] = "INSERT INTO service_accounts(email, project, name, role, created) "
                 "VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_SA_KEYS] = "SELECT (SELECT count(*) FROM service_account_keys k WHERE k.email = a.email) "
                  "FROM service_accounts a WHERE a.email = ?1",
    [S_SA_KEY_INS] = "INSERT INTO service_account_keys(key_id, email, public_pem, disabled, created) "
                     "VALUES(?1, ?2, ?3, 0, ?4)",
    [S_SA_LOOKUP] = "SELECT " SA_COLUMNS "k.created FROM service_account_keys k "
                    "JOIN service_accounts a ON a.email = k.email WHERE k.key_id = ?1",
    /* An account without keys is one row with NULL key columns. */
    [S_SA_LIST] = "SELECT " SA_COLUMNS "coalesce(k.created, a.created) FROM service_accounts a "
                  "LEFT JOIN service_account_keys k ON k.email = a.email "
                  "WHERE (?1 IS NULL OR a.project = ?1) "
                  "ORDER BY a.project, a.name, k.created, k.key_id",
    [S_SA_KEY_DISABLE] = "UPDATE service_account_keys SET disabled = ?2 WHERE key_id = ?1",
    [S_SA_KEY_DEL] = "DELETE FROM service_account_keys WHERE key_id = ?1",
    [S_SA_DEL] = "DELETE FROM service_accounts WHERE email = ?1",
    [S_BRIDGE_SET] = "INSERT OR REPLACE INTO bridges(name, secret_sha256, updated) VALUES(?1, ?2, ?3)",
    [S_BRIDGE_LOOKUP] = "SELECT secret_sha256 FROM bridges WHERE name = ?1",
    [S_OP_INS] = "INSERT INTO operators(name, project, role, password, disabled, created) "
                 "VALUES(?1, ?2, ?3, ?4, 0, ?5)",
    [S_OP_GET] = "SELECT name, project, role, disabled, created, password FROM operators "
                 "WHERE name = ?1",
    [S_OP_SETPW] = "UPDATE operators SET password = ?2 WHERE name = ?1",
    [S_OP_DISABLE] = "UPDATE operators SET disabled = ?2 WHERE name = ?1",
    [S_OP_DEL] = "DELETE FROM operators WHERE name = ?1",
    [S_OP_LIST] = "SELECT name, project, role, disabled, created FROM operators "
                  "WHERE (?1 IS NULL OR project = ?1) ORDER BY project, name",
    [S_AUD_INS] = "INSERT INTO audit(time, actor, via, action, resource, project, detail, outcome) "
                  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_AUD_PRUNE] = "DELETE FROM audit WHERE id <= ?1 OR time < ?2",
#define AUD_COLUMNS "SELECT id, time, actor, via, action, resource, project, detail, outcome FROM audit "
#define AUD_WHERE "WHERE (?1 IS NULL OR project = ?1) AND time >= ?2 "
    [S_AUD_NEW] = AUD_COLUMNS AUD_WHERE "AND (?3 = 0 OR id < ?3) ORDER BY id DESC LIMIT ?4",
    [S_AUD_OLD] = AUD_COLUMNS AUD_WHERE "AND id > ?3 ORDER BY id ASC LIMIT ?4",
#undef AUD_COLUMNS
#undef AUD_WHERE

    [S_PRES_SET] = "UPDATE devices SET presence = ?2, presence_time = ?3, presence_detail = ?4 "
                   "WHERE num_id = ?1 AND presence_time <= ?3",
    [S_PRES_RESET] = "UPDATE devices SET presence = 2, presence_time = ?1, presence_detail = ?2 "
                     "WHERE presence = 1",
    [S_PRES_LIST] = "SELECT d.num_id, d.device_id, r.project, r.location, r.registry_id, "
                    "d.last_heartbeat, d.last_event, d.last_state, d.presence, d.presence_time, "
                    "d.presence_detail FROM devices d JOIN registries r ON r.id = d.registry "
                    "WHERE d.presence <> 0 ORDER BY d.num_id",
    [S_TOMB_MAKE] = "INSERT OR REPLACE INTO presence_tombstones(num_id, project, location, "
                    "registry_id, device_id, deleted) SELECT d.num_id, r.project, r.location, "
                    "r.registry_id, d.device_id, ?2 FROM devices d JOIN registries r ON "
                    "r.id = d.registry WHERE d.num_id = ?1 AND d.presence <> 0",
    [S_TOMB_LIST] = "SELECT num_id, project, location, registry_id, device_id FROM "
                    "presence_tombstones ORDER BY num_id",
    [S_TOMB_DEL] = "DELETE FROM presence_tombstones WHERE num_id = ?1",

#define SUB_FIELDS                                                                           \
    "topic, push_endpoint, auth, auth_header_name, auth_header_value, oidc_email, "          \
    "oidc_audience, min_backoff_ms, max_backoff_ms, ack_deadline_ms, dead_letter_topic, "    \
    "max_delivery_attempts, retention_ms"
    [S_SUB_INS] = "INSERT INTO subscriptions(project, name, created, " SUB_FIELDS ") "
                  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [S_SUB_UPD] = "UPDATE subscriptions SET topic = ?4, push_endpoint = ?5, auth = ?6, "
                  "auth_header_name = ?7, auth_header_value = ?8, oidc_email = ?9, "
                  "oidc_audience = ?10, min_backoff_ms = ?11, max_backoff_ms = ?12, "
                  "ack_deadline_ms = ?13, dead_letter_topic = ?14, max_delivery_attempts = ?15, "
                  "retention_ms = ?16 WHERE project = ?1 AND name = ?2",
    [S_SUB_GET] = "SELECT project, name, created, " SUB_FIELDS " FROM subscriptions "
                  "WHERE project = ?1 AND name = ?2",
    [S_SUB_DEL] = "DELETE FROM subscriptions WHERE project = ?1 AND name = ?2",
    [S_SUB_LIST] = "SELECT project, name, created, " SUB_FIELDS " FROM subscriptions "
                   "WHERE (?1 IS NULL OR project = ?1) ORDER BY project, name",
#undef SUB_FIELDS
#undef SA_COLUMNS

    [S_SIGNER_LIST] = "SELECT label, pem, fingerprint, created FROM registry_signers "
                      "WHERE registry = ?1 ORDER BY id",
    [S_SIGNER_INS] = "INSERT INTO registry_signers(registry, label, pem, fingerprint, created) "
                     "VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_SIGNER_DEL] = "DELETE FROM registry_signers WHERE id = (SELECT id FROM registry_signers "
                     "WHERE registry = ?1 ORDER BY id LIMIT 1 OFFSET ?2)",
    [S_CRL_LIST] = "SELECT issuer, this_update, next_update, nrevoked, pem, issuer_key, "
                   "issuer_chain FROM registry_crls WHERE registry = ?1 ORDER BY id",
    /* The same issuer key's older CRL goes (REPLACE), and the new row gets a
     * new id: the trust stamp changes. */
    [S_CRL_PUT] = "INSERT OR REPLACE INTO registry_crls(registry, issuer, issuer_key, "
                  "this_update, next_update, nrevoked, pem, issuer_chain) "
                  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_CRL_DEL] = "DELETE FROM registry_crls WHERE id = (SELECT id FROM registry_crls "
                  "WHERE registry = ?1 ORDER BY id LIMIT 1 OFFSET ?2)",
    [S_TRUST_STAMP] = "SELECT coalesce((SELECT group_concat(id) FROM (SELECT id FROM "
                      "registry_certs WHERE registry = ?1 ORDER BY id)), '') || '|' || "
                      "coalesce((SELECT group_concat(id) FROM (SELECT id FROM registry_crls "
                      "WHERE registry = ?1 ORDER BY id)), '')",
    [S_JIT_GET] = "SELECT jit_enabled, jit_max, jit_registered FROM registries WHERE id = ?1",
    [S_JIT_SET] = "UPDATE registries SET jit_enabled = ?2, jit_max = ?3 WHERE id = ?1",
    [S_JIT_COUNT] = "UPDATE registries SET jit_registered = jit_registered + 1 WHERE id = ?1",
    [S_JIT_CERT_FIND] = "SELECT device_id FROM jit_certs WHERE registry = ?1 AND cert_sha256 = ?2",
    [S_JIT_CERT_INS] = "INSERT INTO jit_certs(registry, cert_sha256, device_id, num_id, "
                       "registered) VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_DEV_SET_JIT] = "UPDATE devices SET jit = 1 WHERE num_id = ?1",
    [S_STAGE_FEED] = "INSERT INTO changes(kind, num_id, time) SELECT ?2, num_id, ?3 FROM devices "
                     "WHERE registry = ?1 ORDER BY num_id",
    [S_STAGE_MOVE] = "UPDATE devices SET registry = ?2 WHERE registry = ?1",
    /* Staging registries of ?1 ("~import-<rid>-<nonce>") whose last write
     * (the newest staged device, or the staging registry's creation) is
     * before ?2. */
    [S_STAGE_STALE] = "SELECT r.id FROM registries r WHERE r.registry_id >= '~import-' || ?1 || '-' "
                      "AND r.registry_id < '~import-' || ?1 || '.' AND COALESCE((SELECT "
                      "max(d.created) FROM devices d WHERE d.registry = r.id), r.created) < ?2",
};

/* ------------------------------------------------------------------ */
/* Errors, statements, binding                                         */

lk_err lk_sq__map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return LK_ERR_REG_BUSY;
    case SQLITE_NOMEM:
        return LK_ERR_NOMEM;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return LK_ERR_REG_EXISTS;
        return LK_ERR_REG_STORAGE;
    default:
        return LK_ERR_REG_STORAGE;
    }
}

/* Record the connection's message for rc and map it. */
lk_err lk_sq__fail(lk_reg_be *be, int rc)
{
    const char *msg = be->db != NULL ? sqlite3_errmsg(be->db) : NULL;
    if (msg == NULL || msg[0] == '\0' || strcmp(msg, "not an error") == 0)
        msg = sqlite3_errstr(rc);
    snprintf(be->err, sizeof be->err, "%s", msg);
    return lk_sq__map_rc(rc);
}

sqlite3_stmt *lk_sq__st(lk_reg_be *be, int i)
{
    int rc;
    if (be->st[i] != NULL)
        return be->st[i];
    rc = sqlite3_prepare_v3(be->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &be->st[i], NULL);
    if (rc != SQLITE_OK) {
        (void)lk_sq__fail(be, rc);
        sqlite3_finalize(be->st[i]);
        be->st[i] = NULL;
    }
    return be->st[i];
}

/* A statement failed at rc (bind or step): record, reset, map. */
lk_err lk_sq__st_fail(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    lk_err err = lk_sq__fail(be, rc);
    sqlite3_reset(s);
    return err;
}

lk_err lk_sq__no_stmt(lk_reg_be *be)
{
    return lk_sq__map_rc(sqlite3_extended_errcode(be->db)) == LK_ERR_REG_BUSY ? LK_ERR_REG_BUSY
                                                                       : LK_ERR_REG_STORAGE;
}

int lk_sq__bind_text(sqlite3_stmt *s, int i, const char *t)
{
    return t == NULL ? sqlite3_bind_null(s, i) : sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
}

lk_err lk_sq__place(lk_reg_be *be, int which, const char *project, const char *location,
                    const char *registry, sqlite3_stmt **s)
{
    int rc;
    *s = lk_sq__st(be, which);
    if (*s == NULL)
        return lk_sq__no_stmt(be);
    rc = lk_sq__bind_text(*s, 1, project);
    if (rc == SQLITE_OK)
        rc = lk_sq__bind_text(*s, 2, location);
    if (rc == SQLITE_OK)
        rc = lk_sq__bind_text(*s, 3, registry);
    return rc != SQLITE_OK ? lk_sq__st_fail(be, *s, rc) : LK_OK;
}

/* An empty blob, not NULL, when n is 0. */
int lk_sq__bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n)
{
    if (n > (size_t)0x7fffffff)
        return SQLITE_TOOBIG;
    return sqlite3_bind_blob(s, i, n > 0 ? p : (const void *)"", (int)n, SQLITE_STATIC);
}

/* Step a statement that returns no rows; reset it. */
lk_err lk_sq__run(lk_reg_be *be, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return lk_sq__st_fail(be, s, rc);
    sqlite3_reset(s);
    return LK_OK;
}

/* lk_sq__run() a statement whose binding ended at rc (st_fail if that failed). */
lk_err lk_sq__run_bound(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    return rc != SQLITE_OK ? lk_sq__st_fail(be, s, rc) : lk_sq__run(be, s);
}

/* lk_sq__run_bound(), then LK_ERR_REG_NOT_FOUND if no row changed. */
lk_err lk_sq__run_bound_found(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    lk_err err = lk_sq__run_bound(be, s, rc);
    return err == LK_OK && sqlite3_changes(be->db) == 0 ? LK_ERR_REG_NOT_FOUND : err;
}

/* Step a statement whose binding ended at rc to its first row: LK_OK with
 * the row current (the caller reads it and resets), LK_ERR_REG_NOT_FOUND
 * (reset) when there is none, else st_fail. */
lk_err lk_sq__step_row(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return LK_ERR_REG_NOT_FOUND;
    }
    return rc == SQLITE_ROW ? LK_OK : lk_sq__st_fail(be, s, rc);
}

lk_err lk_sq__exists(lk_reg_be *be, sqlite3_stmt *s, int rc, int *found)
{
    lk_err err = lk_sq__step_row(be, s, rc);
    *found = err == LK_OK;
    if (err == LK_OK)
        sqlite3_reset(s);
    return err == LK_ERR_REG_NOT_FOUND ? LK_OK : err;
}

/* End a row loop that stopped at step result rc: st_fail unless it ran
 * out (DONE) or the caller stopped early (ROW); else reset. */
lk_err lk_sq__rows_end(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return lk_sq__st_fail(be, s, rc);
    sqlite3_reset(s);
    return LK_OK;
}

void lk_sq__col_key(sqlite3_stmt *s, int col, lk_reg_device *d)
{
    const void *k = sqlite3_column_blob(s, col);
    if (k != NULL && sqlite3_column_bytes(s, col) == 32) {
        memcpy(d->last_key, k, 32);
        d->last_key_time = sqlite3_column_int64(s, col + 1);
    }
    d->jit = sqlite3_column_int(s, col + 2) != 0;
}

char *lk_sq__col_strdup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    char *r;
    if (t == NULL)
        return NULL;
    r = malloc(n + 1);
    if (r != NULL) {
        memcpy(r, t, n);
        r[n] = '\0';
    }
    return r;
}

/* A blob column, always allocated (len + 1 bytes, NUL-terminated). */
uint8_t *lk_sq__col_blob(sqlite3_stmt *s, int i, size_t *len)
{
    const void *b = sqlite3_column_blob(s, i);
    size_t n = (size_t)sqlite3_column_bytes(s, i);
    uint8_t *r = malloc(n + 1);
    *len = 0;
    if (r == NULL)
        return NULL;
    if (n > 0 && b != NULL)
        memcpy(r, b, n);
    else
        n = 0;
    r[n] = 0;
    *len = n;
    return r;
}

/* Run a whole script (open-time only: pragmas and migrations). */
lk_err lk_sq__exec(lk_reg_be *be, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(be->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(be->err, sizeof be->err, "%s", msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return lk_sq__map_rc(rc);
    }
    return LK_OK;
}

/* A one-row, one-column query (open-time only). *text gets a malloc'd copy
 * when not NULL, otherwise *v the integer. */
lk_err lk_sq__query1(lk_reg_be *be, const char *sql, int64_t *v, char **text)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(be->db, sql, -1, &s, NULL);
    lk_err err = LK_OK;
    if (rc != SQLITE_OK)
        return lk_sq__fail(be, rc);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (text != NULL) {
            *text = lk_sq__col_strdup(s, 0);
            if (*text == NULL)
                err = LK_ERR_NOMEM;
        } else {
            *v = sqlite3_column_int64(s, 0);
        }
    } else if (rc == SQLITE_DONE) {
        err = LK_ERR_REG_NOT_FOUND;
    } else {
        err = lk_sq__fail(be, rc);
    }
    sqlite3_finalize(s);
    return err;
}

lk_err lk_sq__bind1(lk_reg_be *be, int which, int64_t v, sqlite3_stmt **s)
{
    int rc;
    *s = lk_sq__st(be, which);
    if (*s == NULL)
        return lk_sq__no_stmt(be);
    rc = sqlite3_bind_int64(*s, 1, v);
    return rc != SQLITE_OK ? lk_sq__st_fail(be, *s, rc) : LK_OK;
}

lk_err lk_sq__row1(lk_reg_be *be, int which, int64_t v, sqlite3_stmt **s)
{
    lk_err err = lk_sq__bind1(be, which, v, s);
    return err != LK_OK ? err : lk_sq__step_row(be, *s, SQLITE_OK);
}

/* Run a statement whose parameters ?1..?n are the integers v[0..n):
 * LK_ERR_REG_NOT_FOUND when found is set and no row changed. */
lk_err lk_sq__run_ints(lk_reg_be *be, int which, int found, size_t n, const int64_t *v)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    size_t i;
    PREP(s, which);
    for (i = 0; i < n; i++)
        BIND(sqlite3_bind_int64(s, (int)i + 1, v[i]));
    return found ? lk_sq__run_bound_found(be, s, rc) : lk_sq__run_bound(be, s, rc);
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

void lk_sq__close(lk_reg_be *be)
{
    int i;
    if (be == NULL)
        return;
    for (i = 0; i < S__N; i++)
        sqlite3_finalize(be->st[i]);
    sqlite3_close_v2(be->db);
    free(be);
}

void lk_sq__set_busy_timeout(lk_reg_be *be, unsigned ms)
{
    sqlite3_busy_timeout(be->db, ms > 0x7fffffffu ? 0x7fffffff : (int)ms);
}

const char *lk_sq__last_error(lk_reg_be *be)
{
    return be->err[0] != '\0' ? be->err : "no error";
}

lk_err lk_sq__begin(lk_reg_be *be, int write)
{
    return lk_sq__run_ints(be, write ? S_BEGIN_W : S_BEGIN_R, 0, 0, NULL);
}

void lk_sq__rollback(lk_reg_be *be)
{
    sqlite3_stmt *s;
    if (sqlite3_get_autocommit(be->db))
        return; /* nothing open (SQLite may have rolled back itself) */
    s = lk_sq__st(be, S_ROLLBACK);
    if (s == NULL || lk_sq__run(be, s) != LK_OK) {
        /* Last resort: a ROLLBACK that cannot be prepared or run still has
         * to end the transaction. */
        (void)sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

lk_err lk_sq__commit(lk_reg_be *be)
{
    return lk_sq__run_ints(be, S_COMMIT, 0, 0, NULL);
}

lk_err lk_sq__savepoint(lk_reg_be *be)
{
    return lk_sq__run_ints(be, S_SAVEPOINT, 0, 0, NULL);
}

lk_err lk_sq__release(lk_reg_be *be)
{
    return lk_sq__run_ints(be, S_RELEASE, 0, 0, NULL);
}

lk_err lk_sq__rollback_to(lk_reg_be *be)
{
    sqlite3_stmt *s = lk_sq__st(be, S_ROLLBACK_TO);
    lk_err err = s == NULL ? lk_sq__no_stmt(be) : lk_sq__run(be, s);
    if (err == LK_OK)
        err = lk_sq__release(be);
    if (err != LK_OK)
        lk_sq__rollback(be); /* cannot undo the item: undo everything */
    return err;
}

int lk_sq__in_transaction(lk_reg_be *be)
{
    return !sqlite3_get_autocommit(be->db);
}

lk_err lk_sq__ints(lk_reg_be *be, int which, int64_t *a, int64_t *b)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, which);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return lk_sq__st_fail(be, s, rc);
    *a = sqlite3_column_int64(s, 0); /* NULL reads as 0 */
    if (b != NULL)
        *b = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__data_version(lk_reg_be *be, uint64_t *v)
{
    int64_t dv;
    lk_err err = lk_sq__ints(be, S_DATA_VERSION, &dv, NULL);
    if (err == LK_OK)
        *v = (uint64_t)dv;
    return err;
}

/* quick_check's rows: "ok", or one line per problem, the first prefixed by
 * a header line ("*** in database main ***\n"); the first problem names
 * what is damaged. */
static int sq_check_row(void *arg, int n, char **v, char **names)
{
    lk_reg_be *be = arg;
    const char *text;
    char *nl;
    (void)names;
    if (n < 1 || v[0] == NULL || !strcmp(v[0], "ok") || be->err[0])
        return 0;
    text = v[0];
    if (!strncmp(text, "*** ", 4) && (nl = strchr(text, '\n')) != NULL)
        text = nl + 1; /* the header shares a row with the first problem */
    snprintf(be->err, sizeof be->err, "damaged: %s", text);
    while ((nl = strchr(be->err, '\n')) != NULL)
        *nl = ' ';
    return 0;
}

lk_err lk_sq__check(lk_reg_be *be)
{
    char *msg = NULL;
    int rc;

    be->err[0] = '\0';
    rc = sqlite3_exec(be->db, "PRAGMA quick_check(2)", sq_check_row, be, &msg);
    if (rc != SQLITE_OK) {
        snprintf(be->err, sizeof be->err, "%s", msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return LK_ERR_REG_STORAGE;
    }
    if (be->err[0])
        return LK_ERR_REG_STORAGE;
    return LK_OK;
}
