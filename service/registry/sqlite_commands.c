/*
 * sqlite_commands.c — the SQLite backend (backend.h): commands and backend
 * applications (schema 2).
 */
#include <stdio.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__device_blocked(lk_reg_be *be, uint64_t num_id, int *blocked)
{
    sqlite3_stmt *s;
    lk_err err;
    if ((err = lk_sq__row1(be, S_DEV_BLOCKED, (sqlite3_int64)num_id, &s)) != LK_OK)
        return err;
    *blocked = sqlite3_column_int(s, 0) != 0;
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__command_insert(lk_reg_be *be, uint64_t num_id, const char *subfolder,
                             const uint8_t *data, size_t len, int64_t created, int64_t *id)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_CMD_INS);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(lk_sq__bind_text(s, 2, subfolder));
    BIND(lk_sq__bind_blob(s, 3, data, len));
    BIND(sqlite3_bind_int64(s, 4, created));
    err = lk_sq__run_bound(be, s, rc);
    if (err == LK_OK)
        *id = sqlite3_last_insert_rowid(be->db);
    return err;
}

lk_err lk_sq__command_status(lk_reg_be *be, int64_t id, lk_reg_command_status *status,
                             int64_t *decided)
{
    sqlite3_stmt *s;
    lk_err err;
    if ((err = lk_sq__row1(be, S_CMD_STATUS, id, &s)) != LK_OK)
        return err;
    *status = (lk_reg_command_status)sqlite3_column_int(s, 0);
    *decided = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__command_pending(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_command *c),
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
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__command_decide(lk_reg_be *be, int64_t id, lk_reg_command_status status,
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
    if ((err = lk_sq__run_bound(be, s, rc)) != LK_OK)
        return err;
    n = sqlite3_changes(be->db);
    if (n == 1) {
        *won = 1;
        return LK_OK;
    }
    /* Lost the race, or there is no such command. */
    return lk_sq__command_status(be, id, &cur, &decided);
}

lk_err lk_sq__command_prune(lk_reg_be *be, int64_t decided_before, int64_t created_before)
{
    lk_err err = RUN_INTS(S_CMD_PRUNE_DECIDED, 0, decided_before);
    if (err == LK_OK)
        err = RUN_INTS(S_CMD_PRUNE_PENDING, 0, created_before);
    return err;
}

/* ------------------------------------------------------------------ */
/* Backend applications                                                */

lk_err lk_sq__backend_insert(lk_reg_be *be, const char *name, const char *project,
                             const uint8_t secret_sha256[32], int64_t created)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_BE_INS);
    BIND(lk_sq__bind_text(s, 1, name));
    BIND(lk_sq__bind_text(s, 2, project));
    BIND(lk_sq__bind_blob(s, 3, secret_sha256, 32));
    BIND(sqlite3_bind_int64(s, 4, created));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__backend_delete(lk_reg_be *be, const char *name)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_BE_DEL);
    rc = lk_sq__bind_text(s, 1, name);
    return lk_sq__run_bound_found(be, s, rc);
}

lk_err lk_sq__backend_list(lk_reg_be *be, const char *project,
                           int (*cb)(void *arg, const lk_reg_backend *b), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_BE_LIST);
    rc = lk_sq__bind_text(s, 1, project);
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
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
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__backend_lookup(lk_reg_be *be, const char *name, char *project,
                             size_t project_size, uint8_t secret_sha256[32])
{
    sqlite3_stmt *s;
    const unsigned char *p;
    const void *h;
    size_t plen;
    int rc;
    lk_err err;
    PREP(s, S_BE_LOOKUP);
    rc = lk_sq__bind_text(s, 1, name);
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
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

/* ------------------------------------------------------------------ */
/* latchkeyd's bridge identity                                         */

lk_err lk_sq__bridge_set(lk_reg_be *be, const char *name, const uint8_t secret_sha256[32],
                         int64_t updated)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_BRIDGE_SET);
    BIND(lk_sq__bind_text(s, 1, name));
    BIND(lk_sq__bind_blob(s, 2, secret_sha256, 32));
    BIND(sqlite3_bind_int64(s, 3, updated));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__bridge_lookup(lk_reg_be *be, const char *name, uint8_t secret_sha256[32])
{
    sqlite3_stmt *s;
    const void *h;
    int rc;
    lk_err err;
    PREP(s, S_BRIDGE_LOOKUP);
    rc = lk_sq__bind_text(s, 1, name);
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    h = sqlite3_column_blob(s, 0);
    if (h == NULL) {
        sqlite3_reset(s);
        return LK_ERR_NOMEM;
    }
    if (sqlite3_column_bytes(s, 0) != 32) {
        snprintf(be->err, sizeof be->err, "a stored bridge has a malformed secret hash");
        sqlite3_reset(s);
        return LK_ERR_REG_STORAGE;
    }
    memcpy(secret_sha256, h, 32);
    sqlite3_reset(s);
    return LK_OK;
}
