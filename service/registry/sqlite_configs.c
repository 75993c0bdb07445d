/*
 * sqlite_configs.c — the SQLite backend (backend.h): a device's configs and states.
 */
#include "sqlite_internal.h"

lk_err lk_sq__config_add(lk_reg_be *be, uint64_t num_id, const lk_reg_config *c,
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
    BIND(lk_sq__bind_blob(s, 5, c->data, c->len));
    if ((err = lk_sq__run_bound(be, s, rc)) != LK_OK)
        return err;

    if ((err = RUN_INTS(S_CFG_SETVER, 1, (int64_t)num_id, c->version)) != LK_OK)
        return err;

    /* Versions are consecutive, so "all but the newest keep" is a range. */
    if (c->version <= (int64_t)keep)
        return LK_OK;
    return RUN_INTS(S_CFG_PRUNE, 0, (int64_t)num_id, c->version - (int64_t)keep);
}

/* config_list and state_list: the newest max (0: all) rows of which,
 * each to whichever callback is given (their data is the last column). */
static lk_err newest(lk_reg_be *be, int which, uint64_t num_id, unsigned max,
                     int (*ccb)(void *arg, const lk_reg_config *c),
                     int (*scb)(void *arg, const lk_reg_state_entry *e), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK, col = ccb != NULL ? 3 : 1, stop;
    PREP(s, which);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)num_id));
    BIND(sqlite3_bind_int64(s, 2, max == 0 ? -1 : (sqlite3_int64)max));
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        uint8_t *data = (uint8_t *)sqlite3_column_blob(s, col);
        size_t len = (size_t)sqlite3_column_bytes(s, col);
        if (data == NULL)
            data = (uint8_t *)"";
        if (ccb != NULL) {
            lk_reg_config c;
            c.version = sqlite3_column_int64(s, 0);
            c.cloud_update_time = sqlite3_column_int64(s, 1);
            c.device_ack_time = sqlite3_column_int64(s, 2);
            c.data = data;
            c.len = len;
            stop = ccb(arg, &c);
        } else {
            lk_reg_state_entry e;
            e.update_time = sqlite3_column_int64(s, 0);
            e.data = data;
            e.len = len;
            stop = scb(arg, &e);
        }
        if (stop)
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__config_list(lk_reg_be *be, uint64_t num_id, unsigned max,
                          int (*cb)(void *arg, const lk_reg_config *c), void *arg)
{
    return newest(be, S_CFG_LIST, num_id, max, cb, NULL, arg);
}

lk_err lk_sq__state_add(lk_reg_be *be, uint64_t num_id, const lk_reg_state_entry *e,
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
    BIND(lk_sq__bind_blob(s, 3, e->data, e->len));
    if ((err = lk_sq__run_bound(be, s, rc)) != LK_OK)
        return err;

    return RUN_INTS(S_STATE_PRUNE, 0, (int64_t)num_id, (int64_t)keep);
}

lk_err lk_sq__state_list(lk_reg_be *be, uint64_t num_id, unsigned max,
                         int (*cb)(void *arg, const lk_reg_state_entry *e), void *arg)
{
    return newest(be, S_STATE_LIST, num_id, max, NULL, cb, arg);
}
