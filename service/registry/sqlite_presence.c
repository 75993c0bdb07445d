/*
 * sqlite_presence.c — the SQLite backend (backend.h): devices' presence
 * records and the tombstones of deleted devices that had one (schema 6).
 */
#include <stdio.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__presence_set(lk_reg_be *be, const lk_reg_presence_update *u)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_PRES_SET);
    BIND(sqlite3_bind_int64(s, 1, (sqlite3_int64)u->num_id));
    BIND(sqlite3_bind_int(s, 2, (int)u->presence));
    BIND(sqlite3_bind_int64(s, 3, u->time));
    BIND(lk_sq__bind_text(s, 4, u->detail));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__presence_reset(lk_reg_be *be, int64_t t, const char *reason)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_PRES_RESET);
    BIND(sqlite3_bind_int64(s, 1, t));
    BIND(lk_sq__bind_text(s, 2, reason));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__presence_list(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_device *d),
                            void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_PRES_LIST);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_device d;
        memset(&d, 0, sizeof d);
        d.num_id = (uint64_t)sqlite3_column_int64(s, 0);
        d.id = (char *)sqlite3_column_text(s, 1);
        d.project = (char *)sqlite3_column_text(s, 2);
        d.location = (char *)sqlite3_column_text(s, 3);
        d.registry = (char *)sqlite3_column_text(s, 4);
        d.last_heartbeat = sqlite3_column_int64(s, 5);
        d.last_event = sqlite3_column_int64(s, 6);
        d.last_state = sqlite3_column_int64(s, 7);
        d.presence = (lk_reg_presence)sqlite3_column_int(s, 8);
        d.presence_time = sqlite3_column_int64(s, 9);
        d.presence_detail = (char *)sqlite3_column_text(s, 10);
        if (d.id == NULL || d.project == NULL || d.location == NULL || d.registry == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &d))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__tombstone_make(lk_reg_be *be, uint64_t num_id, int64_t t, int *made)
{
    lk_err err = RUN_INTS(S_TOMB_MAKE, 0, (int64_t)num_id, t);
    *made = err == LK_OK && sqlite3_changes(be->db) > 0;
    return err;
}

lk_err lk_sq__tombstone_list(lk_reg_be *be, int (*cb)(void *arg, const lk_reg_tombstone *t),
                             void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_TOMB_LIST);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_tombstone t;
        t.num_id = (uint64_t)sqlite3_column_int64(s, 0);
        t.project = (const char *)sqlite3_column_text(s, 1);
        t.location = (const char *)sqlite3_column_text(s, 2);
        t.registry = (const char *)sqlite3_column_text(s, 3);
        t.id = (const char *)sqlite3_column_text(s, 4);
        if (t.project == NULL || t.location == NULL || t.registry == NULL || t.id == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &t))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__tombstone_delete(lk_reg_be *be, uint64_t num_id)
{
    return RUN_INTS(S_TOMB_DEL, 0, (int64_t)num_id);
}

/* In the meta table, beside the schema version: a number the broker owns. */
lk_err lk_sq__presence_layout_get(lk_reg_be *be, int *layout)
{
    int64_t v = 0;
    lk_err err = lk_sq__query1(be, "SELECT value FROM meta WHERE key = 'presence_layout' AND "
                                   "typeof(value) = 'integer'", &v, NULL);
    if (err == LK_ERR_REG_NOT_FOUND)
        v = 0, err = LK_OK;
    *layout = err == LK_OK && v > 0 && v < 1000 ? (int)v : 0;
    return err;
}

lk_err lk_sq__presence_layout_set(lk_reg_be *be, int layout)
{
    char sql[96];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta(key, value) VALUES('presence_layout', %d)",
             layout);
    return lk_sq__exec(be, sql);
}
