/*
 * sqlite_feed.c — the SQLite backend (backend.h): the broker's calls
 * (activity, auth lookup) and the change feed.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__activity(lk_reg_be *be, const lk_reg_activity *a)
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
    BIND(lk_sq__bind_text(s, 7, a->last_error_status));
    BIND(sqlite3_bind_int64(s, 8, a->last_gateway_time));
    BIND(lk_sq__bind_text(s, 9, a->last_gateway_id));
    if (a->last_key != NULL)
        BIND(sqlite3_bind_blob(s, 10, a->last_key, 32, SQLITE_STATIC));
    else
        BIND(sqlite3_bind_null(s, 10));
    BIND(sqlite3_bind_int64(s, 11, a->last_key_time));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__auth_lookup(lk_reg_be *be, const lk_reg_name *name, const char *id,
                          lk_reg_auth *out)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK, rows = 0;
    lk_err err = LK_OK;

    memset(out, 0, sizeof *out);
    err = lk_sq__place(be, S_AUTH, name->project, name->location, name->registry, &s);
    if (err != LK_OK)
        return err;
    rc = lk_sq__bind_text(s, 4, id);
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rows++ == 0) {
            out->num_id = (uint64_t)sqlite3_column_int64(s, 0);
            out->blocked = sqlite3_column_int(s, 1) != 0;
            out->mqtt = (lk_reg_state)sqlite3_column_int(s, 2);
            out->config_version = sqlite3_column_int64(s, 3);
            out->gateway_type = (lk_reg_gateway_type)sqlite3_column_int(s, 4);
            out->gateway_auth_method = (lk_reg_gateway_auth)sqlite3_column_int(s, 5);
            out->log_level = (lk_reg_log_level)sqlite3_column_int(s, 9);
            out->registry_log_level = (lk_reg_log_level)sqlite3_column_int(s, 10);
        }
        if (sqlite3_column_type(s, 6) == SQLITE_NULL)
            continue; /* no credentials: the LEFT JOIN's one row */
        if ((err = lk_sq__read_cred(be, s, 6, out->creds, &out->ncreds)) != LK_OK)
            break;
    }
    if (err == LK_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = lk_sq__st_fail(be, s, rc);
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

lk_err lk_sq__change_append(lk_reg_be *be, lk_reg_change_kind kind, uint64_t num_id, int64_t t)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_CHG_INS);
    BIND(sqlite3_bind_int(s, 1, (int)kind));
    BIND(sqlite3_bind_int64(s, 2, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 3, t));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__change_list(lk_reg_be *be, int64_t after,
                          int (*cb)(void *arg, const lk_reg_change *c), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    if ((err = lk_sq__bind1(be, S_CHG_LIST, after, &s)) != LK_OK)
        return err;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_change c;
        c.seq = sqlite3_column_int64(s, 0);
        c.kind = (lk_reg_change_kind)sqlite3_column_int(s, 1);
        c.num_id = (uint64_t)sqlite3_column_int64(s, 2);
        if (cb(arg, &c))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__change_bounds(lk_reg_be *be, int64_t *oldest, int64_t *newest)
{
    return lk_sq__ints(be, S_CHG_BOUNDS, oldest, newest);
}

lk_err lk_sq__change_prune(lk_reg_be *be, int64_t keep)
{
    return RUN_INTS(S_CHG_PRUNE, 0, keep);
}
