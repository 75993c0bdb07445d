/*
 * sqlite.c — the SQLite backend of the registry (backend.h).
 *
 * The connection: WAL (readers never block the writer and the writer never
 * blocks readers), foreign_keys=ON (cascading deletes), synchronous=FULL (a
 * committed change survives a power cut; LK_REG_READONLY handles, whose only
 * writes are activity times, state reports and command outcomes, use NORMAL,
 * which in WAL mode still never corrupts), a busy timeout (default 5000 ms),
 * temp_store=MEMORY and a 64 MiB page cache (see sq_open), extended result
 * codes and SQLITE_DBCONFIG_DEFENSIVE. Write transactions
 * are BEGIN IMMEDIATE: two writers queue for the lock up front instead of
 * one failing when it upgrades.
 *
 * Files: a new database is created here, mode 0640 (given its directory's
 * owner when root creates it), before SQLite opens it; SQLite gives -wal and
 * -shm the database's mode and owner. Writable handles keep -wal (truncated
 * to 0 bytes) and -shm when they close (SQLITE_FCNTL_PERSIST_WAL,
 * journal_size_limit), because a WAL database can be read without write
 * access to its directory only if they exist: LK_REG_NOWRITE handles open
 * the file SQLITE_OPEN_READONLY and never write. A file that cannot be
 * opened is explained with access() (SQLite's errno is that of its last
 * retry, often ENOENT for a file that exists).
 *
 * Every statement is prepared once, on first use, with
 * SQLITE_PREPARE_PERSISTENT and kept on the handle until close; every
 * return code is checked. SQLITE_BUSY/LOCKED -> LK_ERR_REG_BUSY, a UNIQUE
 * violation -> LK_ERR_REG_EXISTS, anything else -> LK_ERR_REG_STORAGE with
 * sqlite3_errmsg() (which names tables and columns, never row data) kept for
 * last_error().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backend.h"
#include "internal.h"
#include "schema.h"

#ifndef SQLITE_OPEN_EXRESCODE
#define SQLITE_OPEN_EXRESCODE 0
#endif

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
    S__N
};

#define REG_COLUMNS                                                                          \
    "r.project, r.location, r.registry_id, r.mqtt, r.http, r.event_notification_json, "     \
    "r.state_notification_json, r.created, "                                                 \
    "(SELECT count(*) FROM registry_certs c WHERE c.registry = r.id), "                      \
    "(SELECT count(*) FROM devices d WHERE d.registry = r.id), r.log_level"

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
                   "AND (?2 IS NULL OR r.location = ?2) "
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
                  "d.last_accessed_gateway_id, d.last_accessed_gateway_time "
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
                   "last_error = max(last_error, ?6) "
                   "WHERE num_id = ?1",
    [S_AUTH] = "SELECT d.num_id, d.blocked, r.mqtt, d.config_version, c.format, c.pem, c.expires "
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
};

struct lk_reg_be {
    sqlite3 *db;
    sqlite3_stmt *st[S__N];
    char err[256];
};

/* ------------------------------------------------------------------ */
/* Errors, statements, binding                                         */

static lk_err map_rc(int rc)
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
static lk_err db_fail(lk_reg_be *be, int rc)
{
    const char *msg = be->db != NULL ? sqlite3_errmsg(be->db) : NULL;
    if (msg == NULL || msg[0] == '\0' || strcmp(msg, "not an error") == 0)
        msg = sqlite3_errstr(rc);
    snprintf(be->err, sizeof be->err, "%s", msg);
    return map_rc(rc);
}

static sqlite3_stmt *st(lk_reg_be *be, int i)
{
    int rc;
    if (be->st[i] != NULL)
        return be->st[i];
    rc = sqlite3_prepare_v3(be->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &be->st[i], NULL);
    if (rc != SQLITE_OK) {
        (void)db_fail(be, rc);
        sqlite3_finalize(be->st[i]);
        be->st[i] = NULL;
    }
    return be->st[i];
}

/* A statement failed at rc (bind or step): record, reset, map. */
static lk_err st_fail(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    lk_err err = db_fail(be, rc);
    sqlite3_reset(s);
    return err;
}

static lk_err no_stmt(lk_reg_be *be)
{
    return map_rc(sqlite3_extended_errcode(be->db)) == LK_ERR_REG_BUSY ? LK_ERR_REG_BUSY
                                                                       : LK_ERR_REG_STORAGE;
}

static int bind_text(sqlite3_stmt *s, int i, const char *t)
{
    return t == NULL ? sqlite3_bind_null(s, i) : sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
}

/* An empty blob, not NULL, when n is 0. */
static int bind_blob(sqlite3_stmt *s, int i, const void *p, size_t n)
{
    if (n > (size_t)0x7fffffff)
        return SQLITE_TOOBIG;
    return sqlite3_bind_blob(s, i, n > 0 ? p : (const void *)"", (int)n, SQLITE_STATIC);
}

/* Step a statement that returns no rows; reset it. */
static lk_err run(lk_reg_be *be, sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE)
        return st_fail(be, s, rc);
    sqlite3_reset(s);
    return LK_OK;
}

/* run() a statement whose binding ended at rc (st_fail if that failed). */
static lk_err run_bound(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    return rc != SQLITE_OK ? st_fail(be, s, rc) : run(be, s);
}

/* run_bound(), then LK_ERR_REG_NOT_FOUND if no row changed. */
static lk_err run_bound_found(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    lk_err err = run_bound(be, s, rc);
    return err == LK_OK && sqlite3_changes(be->db) == 0 ? LK_ERR_REG_NOT_FOUND : err;
}

/* Step a statement whose binding ended at rc to its first row: LK_OK with
 * the row current (the caller reads it and resets), LK_ERR_REG_NOT_FOUND
 * (reset) when there is none, else st_fail. */
static lk_err step_row(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return LK_ERR_REG_NOT_FOUND;
    }
    return rc == SQLITE_ROW ? LK_OK : st_fail(be, s, rc);
}

/* End a row loop that stopped at step result rc: st_fail unless it ran
 * out (DONE) or the caller stopped early (ROW); else reset. */
static lk_err rows_end(lk_reg_be *be, sqlite3_stmt *s, int rc)
{
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return st_fail(be, s, rc);
    sqlite3_reset(s);
    return LK_OK;
}

#define BIND(call)                                                                           \
    do {                                                                                     \
        if (rc == SQLITE_OK)                                                                 \
            rc = (call);                                                                     \
    } while (0)

#define PREP(s, i)                                                                           \
    do {                                                                                     \
        (s) = st(be, (i));                                                                   \
        if ((s) == NULL)                                                                     \
            return no_stmt(be);                                                              \
    } while (0)

static char *col_strdup(sqlite3_stmt *s, int i)
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
static uint8_t *col_blob(sqlite3_stmt *s, int i, size_t *len)
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
static lk_err exec_script(lk_reg_be *be, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(be->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(be->err, sizeof be->err, "%s", msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return map_rc(rc);
    }
    return LK_OK;
}

/* A one-row, one-column query (open-time only). *text gets a malloc'd copy
 * when not NULL, otherwise *v the integer. */
static lk_err query1(lk_reg_be *be, const char *sql, int64_t *v, char **text)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(be->db, sql, -1, &s, NULL);
    lk_err err = LK_OK;
    if (rc != SQLITE_OK)
        return db_fail(be, rc);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (text != NULL) {
            *text = col_strdup(s, 0);
            if (*text == NULL)
                err = LK_ERR_NOMEM;
        } else {
            *v = sqlite3_column_int64(s, 0);
        }
    } else if (rc == SQLITE_DONE) {
        err = LK_ERR_REG_NOT_FOUND;
    } else {
        err = db_fail(be, rc);
    }
    sqlite3_finalize(s);
    return err;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

static void sq_close(lk_reg_be *be)
{
    int i;
    if (be == NULL)
        return;
    for (i = 0; i < S__N; i++)
        sqlite3_finalize(be->st[i]);
    sqlite3_close_v2(be->db);
    free(be);
}

static void sq_set_busy_timeout(lk_reg_be *be, unsigned ms)
{
    sqlite3_busy_timeout(be->db, ms > 0x7fffffffu ? 0x7fffffff : (int)ms);
}

static const char *sq_last_error(lk_reg_be *be)
{
    return be->err[0] != '\0' ? be->err : "no error";
}

static lk_err sq_begin(lk_reg_be *be, int write)
{
    sqlite3_stmt *s;
    PREP(s, write ? S_BEGIN_W : S_BEGIN_R);
    return run(be, s);
}

static void sq_rollback(lk_reg_be *be)
{
    sqlite3_stmt *s;
    if (sqlite3_get_autocommit(be->db))
        return; /* nothing open (SQLite may have rolled back itself) */
    s = st(be, S_ROLLBACK);
    if (s == NULL || run(be, s) != LK_OK) {
        /* Last resort: a ROLLBACK that cannot be prepared or run still has
         * to end the transaction. */
        (void)sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

static lk_err sq_commit(lk_reg_be *be)
{
    sqlite3_stmt *s;
    PREP(s, S_COMMIT);
    return run(be, s);
}

static lk_err sq_savepoint(lk_reg_be *be)
{
    sqlite3_stmt *s;
    PREP(s, S_SAVEPOINT);
    return run(be, s);
}

static lk_err sq_release(lk_reg_be *be)
{
    sqlite3_stmt *s;
    PREP(s, S_RELEASE);
    return run(be, s);
}

static lk_err sq_rollback_to(lk_reg_be *be)
{
    sqlite3_stmt *s = st(be, S_ROLLBACK_TO);
    lk_err err = s == NULL ? no_stmt(be) : run(be, s);
    if (err == LK_OK)
        err = sq_release(be);
    if (err != LK_OK)
        sq_rollback(be); /* cannot undo the item: undo everything */
    return err;
}

static int sq_in_transaction(lk_reg_be *be)
{
    return !sqlite3_get_autocommit(be->db);
}

static lk_err sq_data_version(lk_reg_be *be, uint64_t *v)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_DATA_VERSION);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return st_fail(be, s, rc);
    *v = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return LK_OK;
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

static lk_err sq_check(lk_reg_be *be)
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

/*
 * Whose file this is. A latchkey registry has LK_REG_APPLICATION_ID (set
 * with its first tables, in the same transaction); an empty database may
 * become one. Anything else — another application id, or tables (a meta
 * table included) without ours — is another program's: LK_ERR_REG_SCHEMA
 * with why, and nothing may be written to it. Otherwise LK_OK with
 * *has_meta and *ntables, or the error of a failed read (be->err says).
 */
static lk_err check_owner(lk_reg_be *be, const char *path, int64_t *has_meta, int64_t *ntables,
                          char *why, size_t why_size)
{
    int64_t app_id = 0;
    lk_err err;

    *has_meta = 0;
    *ntables = 0;
    if ((err = query1(be, "PRAGMA application_id", &app_id, NULL)) != LK_OK ||
        (err = query1(be, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                          "name = 'meta'", has_meta, NULL)) != LK_OK ||
        (err = query1(be, "SELECT count(*) FROM sqlite_schema", ntables, NULL)) != LK_OK)
        return err;
    if (app_id == LK_REG_APPLICATION_ID || (app_id == 0 && *ntables == 0))
        return LK_OK;
    if (app_id != 0)
        snprintf(why, why_size, "%s is not a latchkey registry database (application id "
                                "%lld)", path, (long long)app_id);
    else
        snprintf(why, why_size, "%s is an SQLite database of another program, not a latchkey "
                                "registry (it has tables but not the registry's application id)",
                 path);
    return LK_ERR_REG_SCHEMA;
}

/*
 * Bring the schema to LK_REG_SCHEMA_VERSION (see backend.h, open). A first
 * pass reads in a plain read transaction, so that opening a database whose
 * schema is current never waits for a writer (a long import, say); only a
 * database that needs creating or migrating is looked at again under the
 * write lock, where another process may have done the work meanwhile.
 */
static lk_err migrate(lk_reg_be *be, const char *path, unsigned flags, char *why,
                      size_t why_size)
{
    int readonly = (flags & (LK_REG_READONLY | LK_REG_NOWRITE)) != 0;
    int pass;
    lk_err err = LK_OK;

    for (pass = 0; pass < 2; pass++) {
        int64_t has_meta = 0, ntables = 0, version = 0;
        int write = pass == 1;
        char buf[128];
        unsigned v;

        err = sq_begin(be, write);
        if (err != LK_OK)
            goto fail;
        /* Checked again here, in the transaction: sq_open's look came
         * before the lock. */
        err = check_owner(be, path, &has_meta, &ntables, why, why_size);
        if (err == LK_ERR_REG_SCHEMA)
            goto out;
        if (err != LK_OK)
            goto fail;
        if (!has_meta) {
            if (ntables > 0) { /* our application id, but no meta table */
                snprintf(why, why_size, "%s has tables but no schema version: not a latchkey "
                                        "registry, or damaged", path);
                err = LK_ERR_REG_SCHEMA;
                goto out;
            }
            if (!(flags & LK_REG_CREATE) || readonly) {
                snprintf(why, why_size, "%s is an empty database, not a latchkey registry "
                                        "(nothing was written to it)", path);
                err = LK_ERR_REG_SCHEMA;
                goto out;
            }
            version = 0;
        } else {
            err = query1(be, "SELECT value FROM meta WHERE key = 'schema_version' AND "
                             "typeof(value) = 'integer'", &version, NULL);
            if (err == LK_ERR_REG_NOT_FOUND) {
                snprintf(why, why_size, "%s has no schema version: not a latchkey registry, "
                                        "or damaged", path);
                err = LK_ERR_REG_SCHEMA;
                goto out;
            }
            if (err != LK_OK)
                goto fail;
        }
        if (version > LK_REG_SCHEMA_VERSION || version < 0) {
            snprintf(why, why_size, "%s has schema version %lld, newer than this program's %d: "
                                    "use a newer latchkey", path, (long long)version,
                     LK_REG_SCHEMA_VERSION);
            err = LK_ERR_REG_SCHEMA;
            goto out;
        }
        if (version == LK_REG_SCHEMA_VERSION) {
            err = sq_commit(be);
            if (err != LK_OK)
                goto fail;
            return LK_OK;
        }
        if (readonly) {
            if (flags & LK_REG_NOWRITE)
                snprintf(why, why_size, "%s has schema version %lld, older than this program's "
                                        "%d, and is opened without write access: someone who "
                                        "may write it must run a latchkey registry command on "
                                        "it once to migrate it", path, (long long)version,
                         LK_REG_SCHEMA_VERSION);
            else
                snprintf(why, why_size, "%s has schema version %lld, older than this program's "
                                        "%d: open it once with the latchkey tool to migrate it",
                         path, (long long)version, LK_REG_SCHEMA_VERSION);
            err = LK_ERR_REG_SCHEMA;
            goto out;
        }
        if (!write) {
            sq_rollback(be); /* look again under the write lock */
            continue;
        }
        for (v = (unsigned)version; v < LK_REG_SCHEMA_VERSION; v++)
            if ((err = exec_script(be, lk_reg_sqlite_migrations[v])) != LK_OK)
                goto fail;
        snprintf(buf, sizeof buf, "PRAGMA application_id = %d", LK_REG_APPLICATION_ID);
        if ((err = exec_script(be, buf)) != LK_OK)
            goto fail;
        snprintf(buf, sizeof buf, "INSERT OR REPLACE INTO meta(key, value) VALUES("
                                  "'schema_version', %d)", LK_REG_SCHEMA_VERSION);
        if ((err = exec_script(be, buf)) != LK_OK)
            goto fail;
        err = sq_commit(be);
        if (err != LK_OK)
            goto fail;
        return LK_OK;
    }
    return LK_ERR_REG_STORAGE; /* not reached */
fail:
    snprintf(why, why_size, "%s: %s", path, be->err);
out:
    sq_rollback(be);
    return err;
}

/* The directory that holds path (".": none named). */
static void dir_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

/*
 * Why path cannot be opened, from the caller's own point of view (access()
 * uses the real ids, which are the effective ones for the tools): SQLite's
 * own errno is that of its last attempt, which after its read-only retry is
 * often ENOENT for a file that exists.
 */
static void explain_open(const char *path, int create, int need_write, char *why,
                         size_t why_size)
{
    char dir[4096];
    struct stat st;
    dir_of(path, dir, sizeof dir);
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e == ENOENT && create && access(dir, W_OK | X_OK) != 0)
            snprintf(why, why_size, "cannot create registry database %s: %s (the directory %s "
                                    "must be writable by you)", path, strerror(errno), dir);
        else if (e == ENOENT)
            snprintf(why, why_size, "registry database %s does not exist", path);
        else
            snprintf(why, why_size, "cannot reach registry database %s: %s (search "
                                    "permission on its directory %s is needed)", path,
                     strerror(e), dir);
    } else if (S_ISDIR(st.st_mode)) {
        snprintf(why, why_size, "%s is a directory, not a registry database", path);
    } else if (access(path, R_OK) != 0) {
        snprintf(why, why_size, "registry database %s is not readable by you (uid %u; the file "
                                "is owner %u, group %u, mode %04o): ask for read permission, "
                                "e.g. membership of group %u", path, (unsigned)getuid(),
                 (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777),
                 (unsigned)st.st_gid);
    } else if (need_write && access(path, W_OK) != 0) {
        snprintf(why, why_size, "registry database %s is not writable by you (uid %u; the file "
                                "is owner %u, group %u, mode %04o): this changes the registry, "
                                "so run it as the database's owner (or root)", path,
                 (unsigned)getuid(), (unsigned)st.st_uid, (unsigned)st.st_gid,
                 (unsigned)(st.st_mode & 07777));
    } else {
        snprintf(why, why_size, "cannot open registry database %s: %s", path, strerror(EACCES));
    }
}

/*
 * A WAL database could not be read: SQLite needs its -wal and -shm files,
 * and creates them when they are missing, which needs write access to the
 * directory. Say which is missing. Returns 1 if that is the problem.
 */
static int explain_wal(const char *path, char *why, size_t why_size)
{
    char dir[4096], wal[4200], shm[4200];
    int have_wal, have_shm;
    dir_of(path, dir, sizeof dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    have_wal = access(wal, F_OK) == 0;
    have_shm = access(shm, F_OK) == 0;
    if (have_wal && have_shm && (access(wal, R_OK) != 0 || access(shm, R_OK) != 0)) {
        snprintf(why, why_size, "cannot read registry database %s: its %s or %s is not readable "
                                "by you (uid %u): SQLite's WAL mode reads both; grant read "
                                "permission on them as on the database", path, wal, shm,
                 (unsigned)getuid());
        return 1;
    }
    if ((!have_wal || !have_shm) && access(dir, W_OK | X_OK) != 0) {
        snprintf(why, why_size, "cannot read registry database %s: SQLite's WAL mode needs %s "
                                "and %s, which do not exist and cannot be created in %s (not "
                                "writable by you): grant write permission on %s, or have the "
                                "database's owner open it once with this latchkey, which keeps "
                                "them from then on", path, wal, shm, dir, dir);
        return 1;
    }
    return 0;
}

/*
 * Create a missing database file ourselves, mode 0640 (the umask may take
 * more away), so that it is never world-readable: SQLite would make it
 * 0644, and gives its -wal and -shm files the database's mode. Created by
 * root, it is given its directory's owner and group (the broker's user, in
 * the layout of docs/registry.md); SQLite then gives -wal and -shm the
 * database's owner. O_EXCL | O_NOFOLLOW: never through a link, never
 * another's file. LK_OK also when the file appeared meanwhile.
 */
static lk_err create_file(const char *path, char *why, size_t why_size)
{
    char dir[4096];
    struct stat ds;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0) {
        if (errno == EEXIST)
            return LK_OK;
        explain_open(path, 1, 1, why, why_size);
        return LK_ERR_IO;
    }
    dir_of(path, dir, sizeof dir);
    if (geteuid() == 0 && stat(dir, &ds) == 0 && (ds.st_uid != 0 || ds.st_gid != 0) &&
        fchown(fd, ds.st_uid, ds.st_gid) != 0) {
        snprintf(why, why_size, "created registry database %s but could not give it the owner "
                                "of %s: %s", path, dir, strerror(errno));
        close(fd);
        (void)unlink(path);
        return LK_ERR_IO;
    }
    close(fd);
    return LK_OK;
}

static lk_err sq_open(const char *path, unsigned flags, lk_reg_be **out, char *why,
                      size_t why_size)
{
    lk_reg_be *be;
    int nowrite = (flags & LK_REG_NOWRITE) != 0;
    int tool_writer = !(flags & (LK_REG_READONLY | LK_REG_NOWRITE));
    int create = (flags & LK_REG_CREATE) && tool_writer;
    int oflags = (nowrite ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                 SQLITE_OPEN_EXRESCODE;
    int rc, fk = 0;
    int64_t v = 0, has_meta = 0, ntables = 0;
    char *mode = NULL;
    lk_err err;

    *out = NULL;
    if (create) {
        struct stat st;
        if (stat(path, &st) != 0 && errno == ENOENT &&
            (err = create_file(path, why, why_size)) != LK_OK)
            return err;
    }
    be = calloc(1, sizeof *be);
    if (be == NULL)
        return LK_ERR_NOMEM;
    rc = sqlite3_open_v2(path, &be->db, oflags, NULL);
    if (rc != SQLITE_OK) {
        if (be->db == NULL) {
            free(be);
            return LK_ERR_NOMEM;
        }
        if ((rc & 0xff) == SQLITE_CANTOPEN) {
            explain_open(path, create, !nowrite, why, why_size);
            err = LK_ERR_IO;
        } else {
            err = db_fail(be, rc);
            snprintf(why, why_size, "cannot open registry database %s: %s", path, be->err);
        }
        sq_close(be);
        return err;
    }
    /* SQLite opens a file it may not write read-only without a word; the
     * tools' writable handle would then fail at its first write with
     * "attempt to write a readonly database". Say so now. */
    if (tool_writer && sqlite3_db_readonly(be->db, "main") == 1) {
        explain_open(path, 0, 1, why, why_size);
        sq_close(be);
        return LK_ERR_IO;
    }
    sqlite3_extended_result_codes(be->db, 1);
    sq_set_busy_timeout(be, 5000);
    if (sqlite3_db_config(be->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) != SQLITE_OK ||
        sqlite3_db_config(be->db, SQLITE_DBCONFIG_ENABLE_FKEY, 1, &fk) != SQLITE_OK || fk != 1) {
        snprintf(why, why_size, "%s: this SQLite cannot enforce foreign keys", path);
        sq_close(be);
        return LK_ERR_REG_STORAGE;
    }
    /* The first read of the file ("file is not a database" shows here):
     * another program's database is refused before WAL journaling rewrites
     * its header, and so is an empty one that is not to be created. */
    err = check_owner(be, path, &has_meta, &ntables, why, why_size);
    if (err == LK_ERR_REG_SCHEMA) {
        sq_close(be);
        return err;
    }
    if (err != LK_OK) {
        int xrc = sqlite3_extended_errcode(be->db);
        if ((xrc & 0xff) == SQLITE_NOTADB) {
            snprintf(why, why_size, "%s is not a latchkey registry database (not an SQLite "
                                    "database at all)", path);
            err = LK_ERR_REG_SCHEMA;
        } else if (((xrc & 0xff) == SQLITE_CANTOPEN || (xrc & 0xff) == SQLITE_READONLY) &&
                   explain_wal(path, why, why_size)) {
            err = LK_ERR_IO;
        } else {
            snprintf(why, why_size, "registry database %s: %s", path, be->err);
        }
        sq_close(be);
        return err;
    }
    if (ntables == 0 && !create) {
        snprintf(why, why_size, "%s is an empty database, not a latchkey registry (nothing was "
                                "written to it)", path);
        sq_close(be);
        return LK_ERR_REG_SCHEMA;
    }
    if (!nowrite) {
        /* Writable handles keep -wal and -shm when they close (truncated
         * to 0 bytes by journal_size_limit), so that readers without write
         * access to the directory can read the database (LK_REG_NOWRITE). */
        int persist = 1;
        if (sqlite3_file_control(be->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) !=
            SQLITE_OK) {
            snprintf(be->err, sizeof be->err, "cannot keep the WAL files (SQLITE_FCNTL_PERSIST_WAL)");
            err = LK_ERR_REG_STORAGE;
        }
        if (err == LK_OK)
            err = query1(be, "PRAGMA journal_mode = WAL", &v, &mode);
        if (err == LK_OK && strcmp(mode, "wal") != 0) {
            snprintf(be->err, sizeof be->err,
                     "cannot use WAL journaling (the journal mode stays %s)", mode);
            err = LK_ERR_REG_STORAGE;
        }
        free(mode);
        if (err == LK_OK)
            err = query1(be, "PRAGMA journal_size_limit = 67108864", &v, NULL);
        if (err == LK_OK)
            err = exec_script(be, (flags & LK_REG_READONLY) ? "PRAGMA synchronous = NORMAL"
                                                            : "PRAGMA synchronous = FULL");
    }
    /* Savepoints (one per imported device) keep their undo pages in
     * memory, not in a temporary file; and a page cache of up to 64 MiB
     * (allocated as used) keeps a big import from spilling and re-reading
     * pages, and the broker's lookups off the disk. Measured: 14k -> 40k
     * imported devices/s. */
    if (err == LK_OK)
        err = exec_script(be, "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536");
    if (err == LK_OK)
        err = query1(be, "PRAGMA foreign_keys", &v, NULL);
    if (err == LK_OK && v != 1) {
        snprintf(be->err, sizeof be->err, "foreign keys cannot be enabled");
        err = LK_ERR_REG_STORAGE;
    }
    if (err != LK_OK) {
        int xrc = sqlite3_extended_errcode(be->db);
        if (!(((xrc & 0xff) == SQLITE_CANTOPEN || (xrc & 0xff) == SQLITE_READONLY) &&
              explain_wal(path, why, why_size)))
            snprintf(why, why_size, "registry database %s: %s", path, be->err);
        else
            err = LK_ERR_IO;
        sq_close(be);
        return err;
    }
    err = migrate(be, path, flags, why, why_size);
    if (err != LK_OK) {
        sq_close(be);
        return err;
    }
    *out = be;
    return LK_OK;
}

/* ------------------------------------------------------------------ */
/* Registries                                                          */

static lk_err sq_registry_find(lk_reg_be *be, const lk_reg_name *name, int64_t *rid)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_REG_FIND);
    BIND(bind_text(s, 1, name->project));
    BIND(bind_text(s, 2, name->location));
    BIND(bind_text(s, 3, name->registry));
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    *rid = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return LK_OK;
}

static lk_err read_registry(sqlite3_stmt *s, lk_reg_registry *r)
{
    memset(r, 0, sizeof *r);
    r->project = col_strdup(s, 0);
    r->location = col_strdup(s, 1);
    r->id = col_strdup(s, 2);
    r->mqtt = (lk_reg_state)sqlite3_column_int(s, 3);
    r->http = (lk_reg_state)sqlite3_column_int(s, 4);
    r->event_notification_json = col_strdup(s, 5);
    r->state_notification_json = col_strdup(s, 6);
    r->created = sqlite3_column_int64(s, 7);
    r->ncerts = (unsigned)sqlite3_column_int(s, 8);
    r->ndevices = (uint64_t)sqlite3_column_int64(s, 9);
    r->log_level = (lk_reg_log_level)sqlite3_column_int(s, 10);
    if (r->project == NULL || r->location == NULL || r->id == NULL ||
        (r->event_notification_json == NULL && sqlite3_column_type(s, 5) != SQLITE_NULL) ||
        (r->state_notification_json == NULL && sqlite3_column_type(s, 6) != SQLITE_NULL)) {
        lk_reg_registry_free(r);
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

static lk_err sq_registry_get(lk_reg_be *be, int64_t rid, lk_reg_registry *out)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    PREP(s, S_REG_GET);
    rc = sqlite3_bind_int64(s, 1, rid);
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    err = read_registry(s, out);
    sqlite3_reset(s);
    return err;
}

static lk_err sq_registry_list(lk_reg_be *be, const char *project, const char *location,
                               int (*cb)(void *arg, const lk_reg_registry *r), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err = LK_OK;
    PREP(s, S_REG_LIST);
    BIND(bind_text(s, 1, project));
    BIND(bind_text(s, 2, location));
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_registry r;
        int stop;
        if ((err = read_registry(s, &r)) != LK_OK)
            break;
        stop = cb(arg, &r);
        lk_reg_registry_free(&r);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return st_fail(be, s, rc);
    sqlite3_reset(s);
    return err;
}

static lk_err sq_registry_insert(lk_reg_be *be, const lk_reg_registry *r, int64_t *rid)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_REG_INSERT);
    BIND(bind_text(s, 1, r->project));
    BIND(bind_text(s, 2, r->location));
    BIND(bind_text(s, 3, r->id));
    BIND(sqlite3_bind_int(s, 4, (int)r->mqtt));
    BIND(sqlite3_bind_int(s, 5, (int)r->http));
    BIND(bind_text(s, 6, r->event_notification_json));
    BIND(bind_text(s, 7, r->state_notification_json));
    BIND(sqlite3_bind_int64(s, 8, r->created));
    BIND(sqlite3_bind_int(s, 9, (int)r->log_level));
    err = run_bound(be, s, rc);
    if (err == LK_OK)
        *rid = sqlite3_last_insert_rowid(be->db);
    return err;
}

static lk_err sq_registry_update(lk_reg_be *be, int64_t rid, const lk_reg_registry *r)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_REG_UPDATE);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_int(s, 2, (int)r->mqtt));
    BIND(sqlite3_bind_int(s, 3, (int)r->http));
    BIND(bind_text(s, 4, r->event_notification_json));
    BIND(bind_text(s, 5, r->state_notification_json));
    return run_bound(be, s, rc);
}

/* Run a statement whose parameters ?1..?n are the integers v[0..n):
 * LK_ERR_REG_NOT_FOUND when found is set and no row changed. */
static lk_err run_ints(lk_reg_be *be, int which, int found, size_t n, const int64_t *v)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    size_t i;
    PREP(s, which);
    for (i = 0; i < n; i++)
        BIND(sqlite3_bind_int64(s, (int)i + 1, v[i]));
    return found ? run_bound_found(be, s, rc) : run_bound(be, s, rc);
}

#define RUN_INTS(which, found, ...)                                                          \
    run_ints(be, (which), (found), sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t),      \
             (int64_t[]){__VA_ARGS__})

static lk_err sq_registry_delete(lk_reg_be *be, int64_t rid)
{
    return RUN_INTS(S_REG_DELETE, 1, rid);
}

/* ------------------------------------------------------------------ */
/* Registry certificates                                               */

static lk_err sq_cert_list(lk_reg_be *be, int64_t rid,
                           int (*cb)(void *arg, unsigned index, const char *pem, size_t len),
                           void *arg)
{
    sqlite3_stmt *s;
    int rc;
    unsigned i = 0;
    PREP(s, S_CERT_LIST);
    rc = sqlite3_bind_int64(s, 1, rid);
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *pem = (const char *)sqlite3_column_text(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        if (pem == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, i++, pem, len))
            break;
    }
    return rows_end(be, s, rc);
}

static lk_err sq_cert_insert(lk_reg_be *be, int64_t rid, const char *pem, size_t len)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_CERT_INSERT);
    if (len > 0x7fffffff)
        return LK_ERR_REG_LIMIT;
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_text(s, 2, pem, (int)len, SQLITE_STATIC));
    return run_bound(be, s, rc);
}

static lk_err sq_cert_delete(lk_reg_be *be, int64_t rid, unsigned index)
{
    return RUN_INTS(S_CERT_DELETE, 1, rid, (int64_t)index);
}

/* ------------------------------------------------------------------ */
/* Devices                                                             */

static lk_err sq_device_find(lk_reg_be *be, int64_t rid, const char *id, uint64_t *num_id,
                             int64_t *config_version)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_DEV_FIND);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(bind_text(s, 2, id));
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    if (num_id != NULL)
        *num_id = (uint64_t)sqlite3_column_int64(s, 0);
    if (config_version != NULL)
        *config_version = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

/* Read the credential in columns col..col + 2 (format, pem, expires) of
 * s's current row into out[*n] and count it: the one reader of credential
 * rows (a device's credentials, the broker's lookup). LK_ERR_REG_STORAGE
 * past LK_DEVICE_CREDENTIALS_MAX, LK_ERR_NOMEM. */
static lk_err read_cred(lk_reg_be *be, sqlite3_stmt *s, int col,
                        lk_reg_credential out[LK_DEVICE_CREDENTIALS_MAX], unsigned *n)
{
    lk_reg_credential *c;
    if (*n >= LK_DEVICE_CREDENTIALS_MAX) {
        snprintf(be->err, sizeof be->err, "a device has more than %u credentials",
                 LK_DEVICE_CREDENTIALS_MAX);
        return LK_ERR_REG_STORAGE;
    }
    c = &out[*n];
    c->format = (lk_cred_format)sqlite3_column_int(s, col);
    c->pem = col_strdup(s, col + 1);
    c->expires = sqlite3_column_int64(s, col + 2);
    if (c->pem == NULL)
        return LK_ERR_NOMEM;
    (*n)++;
    return LK_OK;
}

static lk_err sq_creds_get(lk_reg_be *be, uint64_t num_id,
                           lk_reg_credential out[LK_DEVICE_CREDENTIALS_MAX], unsigned *n)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err = LK_OK;
    *n = 0;
    PREP(s, S_CREDS_GET);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id);
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((err = read_cred(be, s, 0, out, n)) != LK_OK)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = st_fail(be, s, rc);
    else
        sqlite3_reset(s);
    if (err != LK_OK) {
        lk_reg__creds_free(out, *n);
        *n = 0;
    }
    return err;
}

static lk_err meta_get(lk_reg_be *be, uint64_t num_id, lk_reg_metadata **out, unsigned *n)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err = LK_OK;
    unsigned cap = 0;
    lk_reg_metadata *m = NULL;

    *out = NULL;
    *n = 0;
    PREP(s, S_META_GET);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id);
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            unsigned nc = cap ? cap * 2 : 8;
            lk_reg_metadata *nm = realloc(m, nc * sizeof *m);
            if (nm == NULL) {
                err = LK_ERR_NOMEM;
                break;
            }
            m = nm;
            cap = nc;
        }
        m[*n].key = col_strdup(s, 0);
        m[*n].value = (char *)col_blob(s, 1, &m[*n].value_len);
        if (m[*n].key == NULL || m[*n].value == NULL) {
            free(m[*n].key);
            free(m[*n].value);
            err = LK_ERR_NOMEM;
            break;
        }
        (*n)++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = st_fail(be, s, rc);
    else
        sqlite3_reset(s);
    if (err != LK_OK) {
        unsigned i;
        for (i = 0; i < *n; i++) {
            free(m[i].key);
            free(m[i].value);
        }
        free(m);
        *n = 0;
        return err;
    }
    *out = m;
    return LK_OK;
}

static lk_err sq_device_get(lk_reg_be *be, uint64_t num_id, lk_reg_device *d)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;

    memset(d, 0, sizeof *d);
    PREP(s, S_DEV_GET);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id);
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    d->num_id = num_id;
    d->id = col_strdup(s, 0);
    d->project = col_strdup(s, 1);
    d->location = col_strdup(s, 2);
    d->registry = col_strdup(s, 3);
    d->blocked = sqlite3_column_int(s, 4) != 0;
    d->created = sqlite3_column_int64(s, 5);
    d->config_version = sqlite3_column_int64(s, 6);
    d->last_heartbeat = sqlite3_column_int64(s, 7);
    d->last_event = sqlite3_column_int64(s, 8);
    d->last_state = sqlite3_column_int64(s, 9);
    d->last_config_ack = sqlite3_column_int64(s, 10);
    d->last_config_send = sqlite3_column_int64(s, 11);
    d->last_error = sqlite3_column_int64(s, 12);
    d->last_error_status = col_strdup(s, 13);
    d->log_level = (lk_reg_log_level)sqlite3_column_int(s, 14);
    d->gateway_type = (lk_reg_gateway_type)sqlite3_column_int(s, 15);
    d->gateway_auth_method = (lk_reg_gateway_auth)sqlite3_column_int(s, 16);
    d->last_accessed_gateway_id = col_strdup(s, 17);
    d->last_accessed_gateway_time = sqlite3_column_int64(s, 18);
    err = (d->id == NULL || d->project == NULL || d->location == NULL || d->registry == NULL ||
           (d->last_error_status == NULL && sqlite3_column_type(s, 13) != SQLITE_NULL) ||
           (d->last_accessed_gateway_id == NULL && sqlite3_column_type(s, 17) != SQLITE_NULL))
              ? LK_ERR_NOMEM
              : LK_OK;
    sqlite3_reset(s);
    if (err == LK_OK)
        err = sq_creds_get(be, num_id, d->creds, &d->ncreds);
    if (err == LK_OK)
        err = meta_get(be, num_id, &d->metadata, &d->nmetadata);
    if (err != LK_OK)
        lk_reg_device_free(d);
    return err;
}

static lk_err sq_device_list(lk_reg_be *be, int64_t rid, int (*cb)(void *arg, uint64_t num_id),
                             void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_DEV_LIST);
    rc = sqlite3_bind_int64(s, 1, rid);
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (cb(arg, (uint64_t)sqlite3_column_int64(s, 0)))
            break;
    return rows_end(be, s, rc);
}

static lk_err sq_device_insert(lk_reg_be *be, int64_t rid, const lk_reg_device_spec *spec,
                               int64_t created, uint64_t *num_id)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_DEV_INSERT);
    /* NULL: AUTOINCREMENT assigns the next one (above every num_id ever
     * stored, asked-for ones included: they move sqlite_sequence up). */
    if (spec->num_id != 0 && spec->num_id <= (uint64_t)INT64_MAX)
        BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)spec->num_id));
    else
        BIND(sqlite3_bind_null(s, 1));
    BIND(sqlite3_bind_int64(s, 2, rid));
    BIND(bind_text(s, 3, spec->id));
    BIND(sqlite3_bind_int(s, 4, spec->blocked ? 1 : 0));
    BIND(sqlite3_bind_int64(s, 5, created));
    BIND(sqlite3_bind_int(s, 6, (int)spec->log_level));
    BIND(sqlite3_bind_int(s, 7, (int)spec->gateway_type));
    BIND(sqlite3_bind_int(s, 8, (int)spec->gateway_auth_method));
    BIND(bind_text(s, 9, spec->last_accessed_gateway_id));
    BIND(sqlite3_bind_int64(s, 10, spec->last_accessed_gateway_time));
    err = run_bound(be, s, rc);
    if (err == LK_OK)
        *num_id = (uint64_t)sqlite3_last_insert_rowid(be->db);
    return err;
}

static lk_err sq_device_num_taken(lk_reg_be *be, uint64_t num_id, int *taken)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    *taken = 0;
    if (num_id > (uint64_t)INT64_MAX)
        return LK_OK;
    PREP(s, S_DEV_NUM);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id);
    err = step_row(be, s, rc);
    if (err == LK_ERR_REG_NOT_FOUND)
        return LK_OK;
    if (err != LK_OK)
        return err;
    *taken = 1;
    sqlite3_reset(s);
    return LK_OK;
}

static lk_err sq_device_set_blocked(lk_reg_be *be, uint64_t num_id, int blocked)
{
    return RUN_INTS(S_DEV_BLOCK, 1, (int64_t)num_id, blocked ? 1 : 0);
}

static lk_err sq_device_delete(lk_reg_be *be, uint64_t num_id)
{
    return RUN_INTS(S_DEV_DELETE, 1, (int64_t)num_id);
}

static lk_err sq_creds_set(lk_reg_be *be, uint64_t num_id, const lk_reg_credential *c,
                           unsigned n)
{
    sqlite3_stmt *s;
    unsigned i;
    lk_err err = RUN_INTS(S_CREDS_DEL, 0, (int64_t)num_id);
    if (err != LK_OK)
        return err;
    PREP(s, S_CRED_INS);
    for (i = 0; i < n; i++) {
        int rc = SQLITE_OK;
        BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
        BIND(sqlite3_bind_int(s, 2, (int)i));
        BIND(sqlite3_bind_int(s, 3, (int)c[i].format));
        BIND(bind_text(s, 4, c[i].pem));
        BIND(sqlite3_bind_int64(s, 5, c[i].expires));
        if ((err = run_bound(be, s, rc)) != LK_OK)
            return err;
    }
    return LK_OK;
}

static lk_err sq_metadata_set(lk_reg_be *be, uint64_t num_id, const lk_reg_metadata *m,
                              unsigned n)
{
    sqlite3_stmt *s;
    unsigned i;
    lk_err err = RUN_INTS(S_META_DEL, 0, (int64_t)num_id);
    if (err != LK_OK || n == 0)
        return err;
    PREP(s, S_META_INS);
    for (i = 0; i < n; i++) {
        int rc = SQLITE_OK;
        BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
        BIND(bind_text(s, 2, m[i].key));
        BIND(bind_blob(s, 3, m[i].value, m[i].value_len));
        if ((err = run_bound(be, s, rc)) != LK_OK)
            return err;
    }
    return LK_OK;
}

/* ------------------------------------------------------------------ */
/* Configs and states                                                  */

static lk_err sq_config_add(lk_reg_be *be, uint64_t num_id, const lk_reg_config *c,
                            unsigned keep)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;

    PREP(s, S_CFG_INS);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 2, c->version));
    BIND(sqlite3_bind_int64(s, 3, c->cloud_update_time));
    BIND(sqlite3_bind_int64(s, 4, c->device_ack_time));
    BIND(bind_blob(s, 5, c->data, c->len));
    if ((err = run_bound(be, s, rc)) != LK_OK)
        return err;

    if ((err = RUN_INTS(S_CFG_SETVER, 1, (int64_t)num_id, c->version)) != LK_OK)
        return err;

    /* Versions are consecutive, so "all but the newest keep" is a range. */
    if (c->version <= (int64_t)keep)
        return LK_OK;
    return RUN_INTS(S_CFG_PRUNE, 0, (int64_t)num_id, c->version - (int64_t)keep);
}

static lk_err sq_config_list(lk_reg_be *be, uint64_t num_id, unsigned max,
                             int (*cb)(void *arg, const lk_reg_config *c), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_CFG_LIST);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 2, max == 0 ? -1 : (sqlite3_int64)max));
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_config c;
        c.version = sqlite3_column_int64(s, 0);
        c.cloud_update_time = sqlite3_column_int64(s, 1);
        c.device_ack_time = sqlite3_column_int64(s, 2);
        c.data = (uint8_t *)sqlite3_column_blob(s, 3);
        c.len = (size_t)sqlite3_column_bytes(s, 3);
        if (c.data == NULL)
            c.data = (uint8_t *)"";
        if (cb(arg, &c))
            break;
    }
    return rows_end(be, s, rc);
}

static lk_err sq_state_add(lk_reg_be *be, uint64_t num_id, const lk_reg_state_entry *e,
                           unsigned keep)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;

    if ((err = RUN_INTS(S_STATE_TOUCH, 1, (int64_t)num_id, e->update_time)) != LK_OK)
        return err;

    PREP(s, S_STATE_INS);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 2, e->update_time));
    BIND(bind_blob(s, 3, e->data, e->len));
    if ((err = run_bound(be, s, rc)) != LK_OK)
        return err;

    return RUN_INTS(S_STATE_PRUNE, 0, (int64_t)num_id, (int64_t)keep);
}

static lk_err sq_state_list(lk_reg_be *be, uint64_t num_id, unsigned max,
                            int (*cb)(void *arg, const lk_reg_state_entry *e), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_STATE_LIST);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 2, max == 0 ? -1 : (sqlite3_int64)max));
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_state_entry e;
        e.update_time = sqlite3_column_int64(s, 0);
        e.data = (uint8_t *)sqlite3_column_blob(s, 1);
        e.len = (size_t)sqlite3_column_bytes(s, 1);
        if (e.data == NULL)
            e.data = (uint8_t *)"";
        if (cb(arg, &e))
            break;
    }
    return rows_end(be, s, rc);
}

/* ------------------------------------------------------------------ */
/* The broker's calls                                                  */

static lk_err sq_activity(lk_reg_be *be, const lk_reg_activity *a)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_ACTIVITY);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)a->num_id));
    BIND(sqlite3_bind_int64(s, 2, a->last_heartbeat));
    BIND(sqlite3_bind_int64(s, 3, a->last_event));
    BIND(sqlite3_bind_int64(s, 4, a->last_state));
    BIND(sqlite3_bind_int64(s, 5, a->last_config_send));
    BIND(sqlite3_bind_int64(s, 6, a->last_error));
    BIND(bind_text(s, 7, a->last_error_status));
    return run_bound(be, s, rc);
}

static lk_err sq_auth_lookup(lk_reg_be *be, const lk_reg_name *name, const char *id,
                             lk_reg_auth *out)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK, rows = 0;
    lk_err err = LK_OK;

    memset(out, 0, sizeof *out);
    PREP(s, S_AUTH);
    BIND(bind_text(s, 1, name->project));
    BIND(bind_text(s, 2, name->location));
    BIND(bind_text(s, 3, name->registry));
    BIND(bind_text(s, 4, id));
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rows++ == 0) {
            out->num_id = (uint64_t)sqlite3_column_int64(s, 0);
            out->blocked = sqlite3_column_int(s, 1) != 0;
            out->mqtt = (lk_reg_state)sqlite3_column_int(s, 2);
            out->config_version = sqlite3_column_int64(s, 3);
        }
        if (sqlite3_column_type(s, 4) == SQLITE_NULL)
            continue; /* no credentials: the LEFT JOIN's one row */
        if ((err = read_cred(be, s, 4, out->creds, &out->ncreds)) != LK_OK)
            break;
    }
    if (err == LK_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = st_fail(be, s, rc);
    else
        sqlite3_reset(s);
    if (err == LK_OK && rows == 0)
        err = LK_ERR_REG_NOT_FOUND;
    if (err != LK_OK)
        lk_reg_auth_free(out);
    return err;
}

/* ------------------------------------------------------------------ */
/* Change feed                                                         */

static lk_err sq_change_append(lk_reg_be *be, lk_reg_change_kind kind, uint64_t num_id, int64_t t)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_CHG_INS);
    BIND(sqlite3_bind_int(s, 1, (int)kind));
    BIND(sqlite3_bind_int64(s, 2, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 3, t));
    return run_bound(be, s, rc);
}

static lk_err sq_change_list(lk_reg_be *be, int64_t after,
                             int (*cb)(void *arg, const lk_reg_change *c), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_CHG_LIST);
    rc = sqlite3_bind_int64(s, 1, after);
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_change c;
        c.seq = sqlite3_column_int64(s, 0);
        c.kind = (lk_reg_change_kind)sqlite3_column_int(s, 1);
        c.num_id = (uint64_t)sqlite3_column_int64(s, 2);
        if (cb(arg, &c))
            break;
    }
    return rows_end(be, s, rc);
}

static lk_err sq_change_bounds(lk_reg_be *be, int64_t *oldest, int64_t *newest)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_CHG_BOUNDS);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW)
        return st_fail(be, s, rc);
    *oldest = sqlite3_column_int64(s, 0); /* NULL reads as 0 */
    *newest = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

static lk_err sq_change_prune(lk_reg_be *be, int64_t keep)
{
    return RUN_INTS(S_CHG_PRUNE, 0, keep);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

static lk_err sq_device_blocked(lk_reg_be *be, uint64_t num_id, int *blocked)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    PREP(s, S_DEV_BLOCKED);
    rc = sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id);
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    *blocked = sqlite3_column_int(s, 0) != 0;
    sqlite3_reset(s);
    return LK_OK;
}

static lk_err sq_command_insert(lk_reg_be *be, uint64_t num_id, const char *subfolder,
                                const uint8_t *data, size_t len, int64_t created, int64_t *id)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_CMD_INS);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(bind_text(s, 2, subfolder));
    BIND(bind_blob(s, 3, data, len));
    BIND(sqlite3_bind_int64(s, 4, created));
    err = run_bound(be, s, rc);
    if (err == LK_OK)
        *id = sqlite3_last_insert_rowid(be->db);
    return err;
}

static lk_err sq_command_status(lk_reg_be *be, int64_t id, lk_reg_command_status *status,
                                int64_t *decided)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    PREP(s, S_CMD_STATUS);
    rc = sqlite3_bind_int64(s, 1, id);
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    *status = (lk_reg_command_status)sqlite3_column_int(s, 0);
    *decided = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

static lk_err sq_command_pending(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_command *c),
                                 void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_CMD_PENDING);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_command c;
        const void *data;
        memset(&c, 0, sizeof c);
        c.id = sqlite3_column_int64(s, 0);
        c.num_id = (uint64_t)sqlite3_column_int64(s, 1);
        c.device_id = (char *)sqlite3_column_text(s, 2);
        c.project = (char *)sqlite3_column_text(s, 3);
        c.location = (char *)sqlite3_column_text(s, 4);
        c.registry = (char *)sqlite3_column_text(s, 5);
        c.subfolder = (char *)sqlite3_column_text(s, 6);
        data = sqlite3_column_blob(s, 7);
        c.len = (size_t)sqlite3_column_bytes(s, 7);
        c.data = (uint8_t *)(data != NULL ? data : "");
        if (data == NULL)
            c.len = 0;
        c.created = sqlite3_column_int64(s, 8);
        if (c.device_id == NULL || c.project == NULL || c.location == NULL ||
            c.registry == NULL || (c.subfolder == NULL && sqlite3_column_type(s, 6) != SQLITE_NULL)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &c))
            break;
    }
    return rows_end(be, s, rc);
}

static lk_err sq_command_decide(lk_reg_be *be, int64_t id, lk_reg_command_status status,
                                int64_t t, int *won)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK, n;
    lk_err err;
    lk_reg_command_status cur;
    int64_t decided;

    *won = 0;
    PREP(s, S_CMD_DECIDE);
    BIND(sqlite3_bind_int64(s, 1, id));
    BIND(sqlite3_bind_int(s, 2, (int)status));
    BIND(sqlite3_bind_int64(s, 3, t));
    if ((err = run_bound(be, s, rc)) != LK_OK)
        return err;
    n = sqlite3_changes(be->db);
    if (n == 1) {
        *won = 1;
        return LK_OK;
    }
    /* Lost the race, or there is no such command. */
    return sq_command_status(be, id, &cur, &decided);
}

static lk_err sq_command_prune(lk_reg_be *be, int64_t decided_before, int64_t created_before)
{
    lk_err err = RUN_INTS(S_CMD_PRUNE_DECIDED, 0, decided_before);
    if (err == LK_OK)
        err = RUN_INTS(S_CMD_PRUNE_PENDING, 0, created_before);
    return err;
}

/* ------------------------------------------------------------------ */
/* Backend applications                                                */

static lk_err sq_backend_insert(lk_reg_be *be, const char *name, const char *project,
                                const uint8_t secret_sha256[32], int64_t created)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_BE_INS);
    BIND(bind_text(s, 1, name));
    BIND(bind_text(s, 2, project));
    BIND(bind_blob(s, 3, secret_sha256, 32));
    BIND(sqlite3_bind_int64(s, 4, created));
    return run_bound(be, s, rc);
}

static lk_err sq_backend_delete(lk_reg_be *be, const char *name)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_BE_DEL);
    rc = bind_text(s, 1, name);
    return run_bound_found(be, s, rc);
}

static lk_err sq_backend_list(lk_reg_be *be, const char *project,
                              int (*cb)(void *arg, const lk_reg_backend *b), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_BE_LIST);
    rc = bind_text(s, 1, project);
    if (rc != SQLITE_OK)
        return st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_backend b;
        b.name = (char *)sqlite3_column_text(s, 0);
        b.project = (char *)sqlite3_column_text(s, 1);
        b.created = sqlite3_column_int64(s, 2);
        if (b.name == NULL || b.project == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &b))
            break;
    }
    return rows_end(be, s, rc);
}

static lk_err sq_backend_lookup(lk_reg_be *be, const char *name, char *project,
                                size_t project_size, uint8_t secret_sha256[32])
{
    sqlite3_stmt *s;
    const unsigned char *p;
    const void *h;
    size_t plen;
    int rc;
    lk_err err;
    PREP(s, S_BE_LOOKUP);
    rc = bind_text(s, 1, name);
    if ((err = step_row(be, s, rc)) != LK_OK)
        return err;
    p = sqlite3_column_text(s, 0);
    plen = (size_t)sqlite3_column_bytes(s, 0);
    h = sqlite3_column_blob(s, 1);
    if (p == NULL || h == NULL) {
        sqlite3_reset(s);
        return LK_ERR_NOMEM;
    }
    if (plen >= project_size || sqlite3_column_bytes(s, 1) != 32) {
        snprintf(be->err, sizeof be->err, "a stored backend has a malformed project or secret hash");
        sqlite3_reset(s);
        return LK_ERR_REG_STORAGE;
    }
    memcpy(project, p, plen);
    project[plen] = '\0';
    memcpy(secret_sha256, h, 32);
    sqlite3_reset(s);
    return LK_OK;
}

const lk_reg_store lk_reg_sqlite_backend = {
    .scheme = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .set_busy_timeout = sq_set_busy_timeout,
    .last_error = sq_last_error,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .savepoint = sq_savepoint,
    .release = sq_release,
    .rollback_to = sq_rollback_to,
    .in_transaction = sq_in_transaction,
    .data_version = sq_data_version,
    .check = sq_check,
    .registry_find = sq_registry_find,
    .registry_get = sq_registry_get,
    .registry_list = sq_registry_list,
    .registry_insert = sq_registry_insert,
    .registry_update = sq_registry_update,
    .registry_delete = sq_registry_delete,
    .cert_list = sq_cert_list,
    .cert_insert = sq_cert_insert,
    .cert_delete = sq_cert_delete,
    .device_find = sq_device_find,
    .device_get = sq_device_get,
    .device_list = sq_device_list,
    .device_insert = sq_device_insert,
    .device_num_taken = sq_device_num_taken,
    .device_set_blocked = sq_device_set_blocked,
    .device_delete = sq_device_delete,
    .creds_get = sq_creds_get,
    .creds_set = sq_creds_set,
    .metadata_set = sq_metadata_set,
    .config_add = sq_config_add,
    .config_list = sq_config_list,
    .state_add = sq_state_add,
    .state_list = sq_state_list,
    .activity = sq_activity,
    .auth_lookup = sq_auth_lookup,
    .change_append = sq_change_append,
    .change_list = sq_change_list,
    .change_bounds = sq_change_bounds,
    .change_prune = sq_change_prune,
    .device_blocked = sq_device_blocked,
    .command_insert = sq_command_insert,
    .command_status = sq_command_status,
    .command_pending = sq_command_pending,
    .command_decide = sq_command_decide,
    .command_prune = sq_command_prune,
    .backend_insert = sq_backend_insert,
    .backend_delete = sq_backend_delete,
    .backend_list = sq_backend_list,
    .backend_lookup = sq_backend_lookup,
};
