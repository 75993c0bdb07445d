/*
 * sqlite_registries.c — the SQLite backend (backend.h): registries and their CA certificates.
 */
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__registry_find(lk_reg_be *be, const lk_reg_name *name, int64_t *rid)
{
    sqlite3_stmt *s;
    lk_err err = lk_sq__place(be, S_REG_FIND, name->project, name->location, name->registry, &s);
    if (err != LK_OK || (err = lk_sq__step_row(be, s, SQLITE_OK)) != LK_OK)
        return err;
    *rid = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return LK_OK;
}

static lk_err read_registry(sqlite3_stmt *s, lk_reg_registry *r)
{
    memset(r, 0, sizeof *r);
    r->project = lk_sq__col_strdup(s, 0);
    r->location = lk_sq__col_strdup(s, 1);
    r->id = lk_sq__col_strdup(s, 2);
    r->mqtt = (lk_reg_state)sqlite3_column_int(s, 3);
    r->http = (lk_reg_state)sqlite3_column_int(s, 4);
    r->event_notification_json = lk_sq__col_strdup(s, 5);
    r->state_notification_json = lk_sq__col_strdup(s, 6);
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

lk_err lk_sq__registry_get(lk_reg_be *be, int64_t rid, lk_reg_registry *out)
{
    sqlite3_stmt *s;
    lk_err err;
    if ((err = lk_sq__row1(be, S_REG_GET, rid, &s)) != LK_OK)
        return err;
    err = read_registry(s, out);
    sqlite3_reset(s);
    return err;
}

lk_err lk_sq__registry_list(lk_reg_be *be, const char *project, const char *location,
                            int (*cb)(void *arg, const lk_reg_registry *r), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err = LK_OK;
    PREP(s, S_REG_LIST);
    BIND(lk_sq__bind_text(s, 1, project));
    BIND(lk_sq__bind_text(s, 2, location));
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
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
        return lk_sq__st_fail(be, s, rc);
    sqlite3_reset(s);
    return err;
}

lk_err lk_sq__registry_insert(lk_reg_be *be, const lk_reg_registry *r, int64_t *rid)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err = lk_sq__place(be, S_REG_INSERT, r->project, r->location, r->id, &s);
    if (err != LK_OK)
        return err;
    BIND(sqlite3_bind_int(s, 4, (int)r->mqtt));
    BIND(sqlite3_bind_int(s, 5, (int)r->http));
    BIND(lk_sq__bind_text(s, 6, r->event_notification_json));
    BIND(lk_sq__bind_text(s, 7, r->state_notification_json));
    BIND(sqlite3_bind_int64(s, 8, r->created));
    BIND(sqlite3_bind_int(s, 9, (int)r->log_level));
    err = lk_sq__run_bound(be, s, rc);
    if (err == LK_OK)
        *rid = sqlite3_last_insert_rowid(be->db);
    return err;
}

lk_err lk_sq__registry_update(lk_reg_be *be, int64_t rid, const lk_reg_registry *r)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_REG_UPDATE);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_int(s, 2, (int)r->mqtt));
    BIND(sqlite3_bind_int(s, 3, (int)r->http));
    BIND(lk_sq__bind_text(s, 4, r->event_notification_json));
    BIND(lk_sq__bind_text(s, 5, r->state_notification_json));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__registry_delete(lk_reg_be *be, int64_t rid)
{
    return RUN_INTS(S_REG_DELETE, 1, rid);
}

/* ------------------------------------------------------------------ */
/* Registry certificates                                               */

lk_err lk_sq__cert_list(lk_reg_be *be, int64_t rid,
                        int (*cb)(void *arg, unsigned index, const char *pem, size_t len),
                        void *arg)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    unsigned i = 0;
    if ((err = lk_sq__bind1(be, S_CERT_LIST, rid, &s)) != LK_OK)
        return err;
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
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__cert_insert(lk_reg_be *be, int64_t rid, const char *pem, size_t len)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_CERT_INSERT);
    if (len > 0x7fffffff)
        return LK_ERR_REG_LIMIT;
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_text(s, 2, pem, (int)len, SQLITE_STATIC));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__cert_delete(lk_reg_be *be, int64_t rid, unsigned index)
{
    return RUN_INTS(S_CERT_DELETE, 1, rid, (int64_t)index);
}
