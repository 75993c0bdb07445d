/*
 * sqlite_subscriptions.c — the SQLite backend (backend.h): push
 * subscriptions (schema 6).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

/* S_SUB_INS and S_SUB_UPD share their parameters: ?1 project, ?2 name,
 * ?3 created (unused by the update), ?4.. the fields. */
static lk_err write_row(lk_reg_be *be, int which, const lk_reg_subscription *sub)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, which);
    BIND(lk_sq__bind_text(s, 1, sub->project));
    BIND(lk_sq__bind_text(s, 2, sub->name));
    BIND(sqlite3_bind_int64(s, 3, sub->created));
    BIND(lk_sq__bind_text(s, 4, sub->topic));
    BIND(lk_sq__bind_text(s, 5, sub->push_endpoint));
    BIND(sqlite3_bind_int(s, 6, (int)sub->auth));
    BIND(lk_sq__bind_text(s, 7, sub->auth_header_name));
    BIND(lk_sq__bind_text(s, 8, sub->auth_header_value));
    BIND(lk_sq__bind_text(s, 9, sub->oidc_email));
    BIND(lk_sq__bind_text(s, 10, sub->oidc_audience));
    BIND(sqlite3_bind_int64(s, 11, sub->min_backoff_ms));
    BIND(sqlite3_bind_int64(s, 12, sub->max_backoff_ms));
    BIND(sqlite3_bind_int64(s, 13, sub->ack_deadline_ms));
    BIND(lk_sq__bind_text(s, 14, sub->dead_letter_topic));
    BIND(sqlite3_bind_int(s, 15, (int)sub->max_delivery_attempts));
    BIND(sqlite3_bind_int64(s, 16, sub->retention_ms));
    if (which == S_SUB_UPD)
        return lk_sq__run_bound_found(be, s, rc);
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__subscription_insert(lk_reg_be *be, const lk_reg_subscription *s)
{
    return write_row(be, S_SUB_INS, s);
}

lk_err lk_sq__subscription_update(lk_reg_be *be, const lk_reg_subscription *s)
{
    return write_row(be, S_SUB_UPD, s);
}

/* The current row of S_SUB_GET or S_SUB_LIST, borrowed (valid until the
 * next step). 0 when a text column could not be read (out of memory). */
static int row_view(sqlite3_stmt *s, lk_reg_subscription *o)
{
    memset(o, 0, sizeof *o);
    o->project = (char *)sqlite3_column_text(s, 0);
    o->name = (char *)sqlite3_column_text(s, 1);
    o->created = sqlite3_column_int64(s, 2);
    o->topic = (char *)sqlite3_column_text(s, 3);
    o->push_endpoint = (char *)sqlite3_column_text(s, 4);
    o->auth = (lk_reg_push_auth)sqlite3_column_int(s, 5);
    o->auth_header_name = (char *)sqlite3_column_text(s, 6);
    o->auth_header_value = (char *)sqlite3_column_text(s, 7);
    o->oidc_email = (char *)sqlite3_column_text(s, 8);
    o->oidc_audience = (char *)sqlite3_column_text(s, 9);
    o->min_backoff_ms = sqlite3_column_int64(s, 10);
    o->max_backoff_ms = sqlite3_column_int64(s, 11);
    o->ack_deadline_ms = sqlite3_column_int64(s, 12);
    o->dead_letter_topic = (char *)sqlite3_column_text(s, 13);
    o->max_delivery_attempts = (int32_t)sqlite3_column_int(s, 14);
    o->retention_ms = sqlite3_column_int64(s, 15);
    return o->project != NULL && o->name != NULL && o->topic != NULL && o->push_endpoint != NULL &&
           (o->auth_header_name != NULL || sqlite3_column_type(s, 6) == SQLITE_NULL) &&
           (o->auth_header_value != NULL || sqlite3_column_type(s, 7) == SQLITE_NULL) &&
           (o->oidc_email != NULL || sqlite3_column_type(s, 8) == SQLITE_NULL) &&
           (o->oidc_audience != NULL || sqlite3_column_type(s, 9) == SQLITE_NULL) &&
           (o->dead_letter_topic != NULL || sqlite3_column_type(s, 13) == SQLITE_NULL);
}

/* *dst = a copy of src (NULL stays NULL); 0 when out of memory. */
static int dup(char **dst, const char *src)
{
    *dst = src != NULL ? strdup(src) : NULL;
    return src == NULL || *dst != NULL;
}

lk_err lk_sq__subscription_get(lk_reg_be *be, const char *project, const char *name,
                               lk_reg_subscription *out)
{
    sqlite3_stmt *s;
    lk_reg_subscription v;
    int rc = SQLITE_OK, ok;
    lk_err err;

    memset(out, 0, sizeof *out);
    PREP(s, S_SUB_GET);
    BIND(lk_sq__bind_text(s, 1, project));
    BIND(lk_sq__bind_text(s, 2, name));
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    ok = row_view(s, &v);
    *out = v;
    out->project = out->name = out->topic = out->push_endpoint = NULL;
    out->auth_header_name = out->auth_header_value = out->oidc_email = NULL;
    out->oidc_audience = out->dead_letter_topic = NULL;
    ok = ok && dup(&out->project, v.project) && dup(&out->name, v.name) &&
         dup(&out->topic, v.topic) && dup(&out->push_endpoint, v.push_endpoint) &&
         dup(&out->auth_header_name, v.auth_header_name) &&
         dup(&out->auth_header_value, v.auth_header_value) &&
         dup(&out->oidc_email, v.oidc_email) && dup(&out->oidc_audience, v.oidc_audience) &&
         dup(&out->dead_letter_topic, v.dead_letter_topic);
    sqlite3_reset(s);
    if (!ok) {
        lk_reg_subscription_free(out);
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

lk_err lk_sq__subscription_delete(lk_reg_be *be, const char *project, const char *name)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_SUB_DEL);
    BIND(lk_sq__bind_text(s, 1, project));
    BIND(lk_sq__bind_text(s, 2, name));
    return lk_sq__run_bound_found(be, s, rc);
}

lk_err lk_sq__subscription_list(lk_reg_be *be, const char *project,
                                int (*cb)(void *arg, const lk_reg_subscription *s), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_SUB_LIST);
    BIND(lk_sq__bind_text(s, 1, project));
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_subscription v;
        if (!row_view(s, &v)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &v))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}
