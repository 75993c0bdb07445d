/*
 * sqlite_query.c — the SQLite backend (backend.h) for latchkeyd: devices a
 * page at a time, gateway bindings, and the single fields a patch sets.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__device_ref(lk_reg_be *be, int64_t rid, const char *id, uint64_t num_id,
                         uint64_t *num_out, lk_reg_gateway_type *gateway_type)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    if (id == NULL && (num_id == 0 || num_id > (uint64_t)INT64_MAX))
        return LK_ERR_REG_NOT_FOUND;
    PREP(s, id != NULL ? S_DEV_REF_ID : S_DEV_REF_NUM);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(id != NULL ? lk_sq__bind_text(s, 2, id) : sqlite3_bind_int64(s, 2, (int64_t)num_id));
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    *num_out = (uint64_t)sqlite3_column_int64(s, 0);
    *gateway_type = (lk_reg_gateway_type)sqlite3_column_int(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

/* A growing text buffer for the JSON arrays json_each() reads. */
struct jbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        if ((np = realloc(b->p, cap)) == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* A JSON string for s (any bytes: an id that is not valid matches nothing,
 * but must not break the array). */
static void jb_string(struct jbuf *b, const char *s)
{
    char e[8];
    jb_put(b, "\"", 1);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", c);
            jb_put(b, e, 6);
        } else {
            jb_put(b, s, 1);
        }
    }
    jb_put(b, "\"", 1);
}

/* The JSON arrays of q's ids and numIds (numIds no device can have are
 * left out). */
static lk_err query_json(const lk_reg_device_query *q, char **ids, char **nums)
{
    struct jbuf a = {0}, n = {0};
    char t[32];
    size_t i;
    int first = 1;

    jb_put(&a, "[", 1);
    for (i = 0; i < q->nids; i++) {
        if (i > 0)
            jb_put(&a, ",", 1);
        jb_string(&a, q->ids[i]);
    }
    jb_put(&a, "]", 1);
    jb_put(&n, "[", 1);
    for (i = 0; i < q->nnum_ids; i++) {
        if (q->num_ids[i] == 0 || q->num_ids[i] > (uint64_t)INT64_MAX)
            continue;
        snprintf(t, sizeof t, "%s%" PRIu64, first ? "" : ",", q->num_ids[i]);
        jb_put(&n, t, strlen(t));
        first = 0;
    }
    jb_put(&n, "]", 1);
    if (a.failed || n.failed) {
        free(a.p);
        free(n.p);
        return LK_ERR_NOMEM;
    }
    *ids = a.p;
    *nums = n.p;
    return LK_OK;
}

int lk_sq__col_device_row(sqlite3_stmt *s, lk_reg_device *d)
{
    memset(d, 0, sizeof *d);
    d->num_id = (uint64_t)sqlite3_column_int64(s, 0);
    d->id = (char *)sqlite3_column_text(s, 1);
    d->blocked = sqlite3_column_int(s, 2) != 0;
    d->created = sqlite3_column_int64(s, 3);
    d->config_version = sqlite3_column_int64(s, 4);
    d->last_heartbeat = sqlite3_column_int64(s, 5);
    d->last_event = sqlite3_column_int64(s, 6);
    d->last_state = sqlite3_column_int64(s, 7);
    d->last_config_ack = sqlite3_column_int64(s, 8);
    d->last_config_send = sqlite3_column_int64(s, 9);
    d->last_error = sqlite3_column_int64(s, 10);
    d->last_error_status = (char *)sqlite3_column_text(s, 11);
    d->log_level = (lk_reg_log_level)sqlite3_column_int(s, 12);
    d->gateway_type = (lk_reg_gateway_type)sqlite3_column_int(s, 13);
    d->gateway_auth_method = (lk_reg_gateway_auth)sqlite3_column_int(s, 14);
    d->last_accessed_gateway_id = (char *)sqlite3_column_text(s, 15);
    d->last_accessed_gateway_time = sqlite3_column_int64(s, 16);
    d->presence = (lk_reg_presence)sqlite3_column_int(s, 17);
    d->presence_time = sqlite3_column_int64(s, 18);
    d->presence_detail = (char *)sqlite3_column_text(s, 19);
    lk_sq__col_key(s, 20, d);
    return d->id != NULL ? 0 : -1;
}

lk_err lk_sq__device_query(lk_reg_be *be, int64_t rid, const lk_reg_device_query *q,
                           uint64_t assoc_gateway, uint64_t assoc_device, unsigned limit,
                           int (*cb)(void *arg, const lk_reg_device *d), void *arg)
{
    int filter_ids = q->nids > 0 || q->nnum_ids > 0;
    char *ids = NULL, *nums = NULL;
    sqlite3_stmt *s;
    int rc = SQLITE_OK, which = S_QUERY + (filter_ids ? 1 : 0);
    lk_err err;

    if (assoc_gateway != 0)
        which += 2;
    else if (assoc_device != 0)
        which += 4;
    if (filter_ids && (err = query_json(q, &ids, &nums)) != LK_OK)
        return err;
    s = lk_sq__st(be, which);
    if (s == NULL) {
        free(ids);
        free(nums);
        return lk_sq__no_stmt(be);
    }
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(lk_sq__bind_text(s, 2, q->after_id != NULL ? q->after_id : ""));
    BIND(sqlite3_bind_int(s, 3, (int)q->gateway_type));
    BIND(lk_sq__bind_text(s, 4, ids));
    BIND(lk_sq__bind_text(s, 5, nums));
    BIND(sqlite3_bind_int64(s, 6, (int64_t)assoc_gateway));
    BIND(sqlite3_bind_int64(s, 7, (int64_t)assoc_device));
    BIND(sqlite3_bind_int64(s, 8, (int64_t)limit));
    if (rc != SQLITE_OK) {
        err = lk_sq__st_fail(be, s, rc);
    } else {
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            lk_reg_device d;
            if (lk_sq__col_device_row(s, &d) != 0) {
                rc = SQLITE_NOMEM;
                break;
            }
            if (cb(arg, &d))
                break;
        }
        err = lk_sq__rows_end(be, s, rc);
    }
    /* The JSON texts were bound SQLITE_STATIC: unbind before freeing. */
    sqlite3_clear_bindings(s);
    free(ids);
    free(nums);
    return err;
}

lk_err lk_sq__device_set_log_level(lk_reg_be *be, uint64_t num_id, lk_reg_log_level level)
{
    return RUN_INTS(S_DEV_SET_LOG, 1, (int64_t)num_id, (int64_t)level);
}

lk_err lk_sq__device_set_gateway_auth(lk_reg_be *be, uint64_t num_id,
                                      lk_reg_gateway_auth method)
{
    return RUN_INTS(S_DEV_SET_GWAUTH, 1, (int64_t)num_id, (int64_t)method);
}

lk_err lk_sq__binding_exists(lk_reg_be *be, uint64_t gateway, uint64_t device, int *bound)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    *bound = 0;
    PREP(s, S_BIND_EXISTS);
    BIND(sqlite3_bind_int64(s, 1, (int64_t)gateway));
    BIND(sqlite3_bind_int64(s, 2, (int64_t)device));
    return lk_sq__exists(be, s, rc, bound);
}

lk_err lk_sq__binding_counts(lk_reg_be *be, uint64_t gateway, uint64_t device,
                             uint64_t *gateway_devices, uint64_t *device_gateways)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_BIND_COUNTS);
    BIND(sqlite3_bind_int64(s, 1, (int64_t)gateway));
    BIND(sqlite3_bind_int64(s, 2, (int64_t)device));
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err == LK_ERR_REG_NOT_FOUND ? LK_ERR_REG_STORAGE : err;
    *gateway_devices = (uint64_t)sqlite3_column_int64(s, 0);
    *device_gateways = (uint64_t)sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__binding_insert(lk_reg_be *be, uint64_t gateway, uint64_t device,
                             int64_t created)
{
    return RUN_INTS(S_BIND_INS, 0, (int64_t)gateway, (int64_t)device, created);
}

lk_err lk_sq__binding_delete(lk_reg_be *be, uint64_t gateway, uint64_t device)
{
    return RUN_INTS(S_BIND_DEL, 1, (int64_t)gateway, (int64_t)device);
}

lk_err lk_sq__registry_set_log_level(lk_reg_be *be, int64_t rid, lk_reg_log_level level)
{
    return RUN_INTS(S_REG_SET_LOG, 1, rid, (int64_t)level);
}

lk_err lk_sq__cert_clear(lk_reg_be *be, int64_t rid)
{
    return RUN_INTS(S_CERT_CLEAR, 0, rid);
}
