/*
 * sqlite_devices.c — the SQLite backend (backend.h): devices, their
 * credentials and metadata.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__device_find(lk_reg_be *be, int64_t rid, const char *id, uint64_t *num_id,
                          int64_t *config_version)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_DEV_FIND);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(lk_sq__bind_text(s, 2, id));
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
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
lk_err lk_sq__read_cred(lk_reg_be *be, sqlite3_stmt *s, int col,
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
    c->pem = lk_sq__col_strdup(s, col + 1);
    c->expires = sqlite3_column_int64(s, col + 2);
    if (c->pem == NULL)
        return LK_ERR_NOMEM;
    (*n)++;
    return LK_OK;
}

lk_err lk_sq__creds_get(lk_reg_be *be, uint64_t num_id,
                        lk_reg_credential out[LK_DEVICE_CREDENTIALS_MAX], unsigned *n)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err = LK_OK;
    *n = 0;
    if ((err = lk_sq__bind1(be, S_CREDS_GET, (sqlite3_int64)num_id, &s)) != LK_OK)
        return err;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((err = lk_sq__read_cred(be, s, 0, out, n)) != LK_OK)
            break;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = lk_sq__st_fail(be, s, rc);
    else
        sqlite3_reset(s);
    if (err != LK_OK) {
        lk_reg__creds_free(out, *n);
        *n = 0;
    }
    return err;
}

/* The device's metadata into d->metadata (freed with d on a failure). */
static lk_err meta_get(lk_reg_be *be, uint64_t num_id, lk_reg_device *d)
{
    sqlite3_stmt *s;
    int rc;
    unsigned cap = 0;
    lk_err err = lk_sq__bind1(be, S_META_GET, (sqlite3_int64)num_id, &s);

    if (err != LK_OK)
        return err;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_metadata *m;
        if (d->nmetadata == cap) {
            unsigned nc = cap ? cap * 2 : 8;
            lk_reg_metadata *nm = realloc(d->metadata, nc * sizeof *nm);
            if (nm == NULL) {
                err = LK_ERR_NOMEM;
                break;
            }
            d->metadata = nm;
            cap = nc;
        }
        m = &d->metadata[d->nmetadata];
        m->key = lk_sq__col_strdup(s, 0);
        m->value = (char *)lk_sq__col_blob(s, 1, &m->value_len);
        if (m->key == NULL || m->value == NULL) {
            free(m->key);
            free(m->value);
            err = LK_ERR_NOMEM;
            break;
        }
        d->nmetadata++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = lk_sq__st_fail(be, s, rc);
    else
        sqlite3_reset(s);
    return err;
}

lk_err lk_sq__device_get(lk_reg_be *be, uint64_t num_id, lk_reg_device *d)
{
    sqlite3_stmt *s;
    lk_err err;

    memset(d, 0, sizeof *d);
    if ((err = lk_sq__row1(be, S_DEV_GET, (sqlite3_int64)num_id, &s)) != LK_OK)
        return err;
    d->num_id = num_id;
    d->id = lk_sq__col_strdup(s, 0);
    d->project = lk_sq__col_strdup(s, 1);
    d->location = lk_sq__col_strdup(s, 2);
    d->registry = lk_sq__col_strdup(s, 3);
    d->blocked = sqlite3_column_int(s, 4) != 0;
    d->created = sqlite3_column_int64(s, 5);
    d->config_version = sqlite3_column_int64(s, 6);
    d->last_heartbeat = sqlite3_column_int64(s, 7);
    d->last_event = sqlite3_column_int64(s, 8);
    d->last_state = sqlite3_column_int64(s, 9);
    d->last_config_ack = sqlite3_column_int64(s, 10);
    d->last_config_send = sqlite3_column_int64(s, 11);
    d->last_error = sqlite3_column_int64(s, 12);
    d->last_error_status = lk_sq__col_strdup(s, 13);
    d->log_level = (lk_reg_log_level)sqlite3_column_int(s, 14);
    d->gateway_type = (lk_reg_gateway_type)sqlite3_column_int(s, 15);
    d->gateway_auth_method = (lk_reg_gateway_auth)sqlite3_column_int(s, 16);
    d->last_accessed_gateway_id = lk_sq__col_strdup(s, 17);
    d->last_accessed_gateway_time = sqlite3_column_int64(s, 18);
    d->presence = (lk_reg_presence)sqlite3_column_int(s, 19);
    d->presence_time = sqlite3_column_int64(s, 20);
    d->presence_detail = lk_sq__col_strdup(s, 21);
    lk_sq__col_key(s, 22, d);
    err = (d->id == NULL || d->project == NULL || d->location == NULL || d->registry == NULL ||
           (d->last_error_status == NULL && sqlite3_column_type(s, 13) != SQLITE_NULL) ||
           (d->last_accessed_gateway_id == NULL && sqlite3_column_type(s, 17) != SQLITE_NULL) ||
           (d->presence_detail == NULL && sqlite3_column_type(s, 21) != SQLITE_NULL))
              ? LK_ERR_NOMEM
              : LK_OK;
    sqlite3_reset(s);
    if (err == LK_OK)
        err = lk_sq__creds_get(be, num_id, d->creds, &d->ncreds);
    if (err == LK_OK)
        err = meta_get(be, num_id, d);
    if (err != LK_OK)
        lk_reg_device_free(d);
    return err;
}

lk_err lk_sq__device_list(lk_reg_be *be, int64_t rid, int (*cb)(void *arg, uint64_t num_id),
                          void *arg)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    if ((err = lk_sq__bind1(be, S_DEV_LIST, rid, &s)) != LK_OK)
        return err;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (cb(arg, (uint64_t)sqlite3_column_int64(s, 0)))
            break;
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__device_insert(lk_reg_be *be, int64_t rid, const lk_reg_device_spec *spec,
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
    BIND(lk_sq__bind_text(s, 3, spec->id));
    BIND(sqlite3_bind_int(s, 4, spec->blocked ? 1 : 0));
    BIND(sqlite3_bind_int64(s, 5, created));
    BIND(sqlite3_bind_int(s, 6, (int)spec->log_level));
    BIND(sqlite3_bind_int(s, 7, (int)spec->gateway_type));
    BIND(sqlite3_bind_int(s, 8, (int)spec->gateway_auth_method));
    BIND(lk_sq__bind_text(s, 9, spec->last_accessed_gateway_id));
    BIND(sqlite3_bind_int64(s, 10, spec->last_accessed_gateway_time));
    err = lk_sq__run_bound(be, s, rc);
    if (err == LK_OK)
        *num_id = (uint64_t)sqlite3_last_insert_rowid(be->db);
    return err;
}

lk_err lk_sq__device_num_taken(lk_reg_be *be, uint64_t num_id, int *taken)
{
    sqlite3_stmt *s;
    lk_err err;
    *taken = 0;
    if (num_id > (uint64_t)INT64_MAX)
        return LK_OK;
    err = lk_sq__bind1(be, S_DEV_NUM, (sqlite3_int64)num_id, &s);
    return err != LK_OK ? err : lk_sq__exists(be, s, SQLITE_OK, taken);
}

lk_err lk_sq__device_set_blocked(lk_reg_be *be, uint64_t num_id, int blocked)
{
    return RUN_INTS(S_DEV_BLOCK, 1, (int64_t)num_id, blocked ? 1 : 0);
}

lk_err lk_sq__device_delete(lk_reg_be *be, uint64_t num_id)
{
    return RUN_INTS(S_DEV_DELETE, 1, (int64_t)num_id);
}

lk_err lk_sq__creds_set(lk_reg_be *be, uint64_t num_id, const lk_reg_credential *c,
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
        BIND(lk_sq__bind_text(s, 4, c[i].pem));
        BIND(sqlite3_bind_int64(s, 5, c[i].expires));
        if ((err = lk_sq__run_bound(be, s, rc)) != LK_OK)
            return err;
    }
    return LK_OK;
}

lk_err lk_sq__metadata_set(lk_reg_be *be, uint64_t num_id, const lk_reg_metadata *m,
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
        BIND(lk_sq__bind_text(s, 2, m[i].key));
        BIND(lk_sq__bind_blob(s, 3, m[i].value, m[i].value_len));
        if ((err = lk_sq__run_bound(be, s, rc)) != LK_OK)
            return err;
    }
    return LK_OK;
}
