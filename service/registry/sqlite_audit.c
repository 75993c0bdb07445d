/*
 * sqlite_audit.c — the SQLite backend (backend.h): operators and the audit
 * record (schema 8).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__operator_insert(lk_reg_be *be, const char *name, const char *project,
                              lk_reg_sa_role role, const char *record, int64_t created)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_OP_INS);
    BIND(lk_sq__bind_text(s, 1, name));
    BIND(lk_sq__bind_text(s, 2, project));
    BIND(sqlite3_bind_int(s, 3, (int)role));
    BIND(lk_sq__bind_text(s, 4, record));
    BIND(sqlite3_bind_int64(s, 5, created));
    return lk_sq__run_bound(be, s, rc);
}

/* The current row's first five columns (name, project, role, disabled,
 * created), borrowed until the next step; 0 when out of memory. */
static int op_view(sqlite3_stmt *s, lk_reg_operator *o)
{
    memset(o, 0, sizeof *o);
    o->name = (char *)sqlite3_column_text(s, 0);
    o->project = (char *)sqlite3_column_text(s, 1);
    o->role = (lk_reg_sa_role)sqlite3_column_int(s, 2);
    o->disabled = sqlite3_column_int(s, 3) != 0;
    o->created = sqlite3_column_int64(s, 4);
    return o->name != NULL && o->project != NULL;
}

lk_err lk_sq__operator_get(lk_reg_be *be, const char *name, lk_reg_operator *o, char **record)
{
    sqlite3_stmt *s;
    lk_reg_operator v;
    int rc;
    lk_err err;
    PREP(s, S_OP_GET);
    rc = lk_sq__bind_text(s, 1, name);
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    err = LK_ERR_NOMEM;
    if (op_view(s, &v)) {
        *o = v;
        o->name = strdup(v.name);
        o->project = strdup(v.project);
        *record = lk_sq__col_strdup(s, 5);
        if (o->name != NULL && o->project != NULL && *record != NULL)
            err = LK_OK;
        else {
            free(o->name);
            free(o->project);
            free(*record);
            *record = NULL;
            memset(o, 0, sizeof *o);
        }
    }
    sqlite3_reset(s);
    return err;
}

static lk_err run_name(lk_reg_be *be, int which, const char *name, int two, const char *text,
                       int64_t v)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, which);
    BIND(lk_sq__bind_text(s, 1, name));
    if (two == 1)
        BIND(lk_sq__bind_text(s, 2, text));
    else if (two == 2)
        BIND(sqlite3_bind_int64(s, 2, v));
    return lk_sq__run_bound_found(be, s, rc);
}

lk_err lk_sq__operator_set_password(lk_reg_be *be, const char *name, const char *record)
{
    return run_name(be, S_OP_SETPW, name, 1, record, 0);
}

lk_err lk_sq__operator_set_disabled(lk_reg_be *be, const char *name, int disabled)
{
    return run_name(be, S_OP_DISABLE, name, 2, NULL, disabled ? 1 : 0);
}

lk_err lk_sq__operator_delete(lk_reg_be *be, const char *name)
{
    return run_name(be, S_OP_DEL, name, 0, NULL, 0);
}

lk_err lk_sq__operator_list(lk_reg_be *be, const char *project,
                            int (*cb)(void *arg, const lk_reg_operator *o), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_OP_LIST);
    rc = lk_sq__bind_text(s, 1, project);
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_operator o;
        if (!op_view(s, &o)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &o))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

uint64_t lk_sq__total_changes(lk_reg_be *be)
{
    return (uint64_t)sqlite3_total_changes64(be->db);
}

lk_err lk_sq__audit_append(lk_reg_be *be, const lk_reg_audit_record *r, int64_t *id)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_AUD_INS);
    BIND(sqlite3_bind_int64(s, 1, r->time));
    BIND(lk_sq__bind_text(s, 2, r->actor));
    BIND(lk_sq__bind_text(s, 3, r->via));
    BIND(lk_sq__bind_text(s, 4, r->action));
    BIND(lk_sq__bind_text(s, 5, r->resource));
    BIND(lk_sq__bind_text(s, 6, r->project));
    BIND(lk_sq__bind_text(s, 7, r->detail));
    BIND(lk_sq__bind_text(s, 8, r->outcome));
    err = lk_sq__run_bound(be, s, rc);
    if (err == LK_OK)
        *id = sqlite3_last_insert_rowid(be->db);
    return err;
}

lk_err lk_sq__audit_prune(lk_reg_be *be, int64_t max_id, int64_t before)
{
    return RUN_INTS(S_AUD_PRUNE, 0, max_id, before);
}

lk_err lk_sq__audit_list(lk_reg_be *be, const lk_reg_audit_query *q,
                         int (*cb)(void *arg, const lk_reg_audit_record *r), void *arg)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, q->oldest_first ? S_AUD_OLD : S_AUD_NEW);
    BIND(lk_sq__bind_text(s, 1, q->project));
    BIND(sqlite3_bind_int64(s, 2, q->since));
    BIND(sqlite3_bind_int64(s, 3, q->cursor));
    BIND(sqlite3_bind_int64(s, 4, q->limit == 0 ? -1 : (int64_t)q->limit));
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_audit_record r;
        r.id = sqlite3_column_int64(s, 0);
        r.time = sqlite3_column_int64(s, 1);
        r.actor = (const char *)sqlite3_column_text(s, 2);
        r.via = (const char *)sqlite3_column_text(s, 3);
        r.action = (const char *)sqlite3_column_text(s, 4);
        r.resource = (const char *)sqlite3_column_text(s, 5);
        r.project = (const char *)sqlite3_column_text(s, 6);
        r.detail = (const char *)sqlite3_column_text(s, 7);
        r.outcome = (const char *)sqlite3_column_text(s, 8);
        if (r.actor == NULL || r.via == NULL || r.action == NULL || r.resource == NULL ||
            r.project == NULL || r.detail == NULL || r.outcome == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &r))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}
