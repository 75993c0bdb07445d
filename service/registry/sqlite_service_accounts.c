/*
 * sqlite_service_accounts.c — the SQLite backend (backend.h): service
 * accounts and their public keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__sa_insert(lk_reg_be *be, const char *email, const char *project, const char *name,
                        lk_reg_sa_role role, int64_t created)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_SA_INS);
    BIND(lk_sq__bind_text(s, 1, email));
    BIND(lk_sq__bind_text(s, 2, project));
    BIND(lk_sq__bind_text(s, 3, name));
    BIND(sqlite3_bind_int(s, 4, (int)role));
    BIND(sqlite3_bind_int64(s, 5, created));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__sa_key_count(lk_reg_be *be, const char *email, unsigned *n)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    PREP(s, S_SA_KEYS);
    rc = lk_sq__bind_text(s, 1, email);
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    *n = (unsigned)sqlite3_column_int(s, 0);
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__sa_key_insert(lk_reg_be *be, const char *email, const char *key_id,
                            const char *pem, size_t pem_len, int64_t created)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_SA_KEY_INS);
    if (pem_len > 0x7fffffff)
        return LK_ERR_REG_LIMIT;
    BIND(lk_sq__bind_text(s, 1, key_id));
    BIND(lk_sq__bind_text(s, 2, email));
    BIND(sqlite3_bind_text(s, 3, pem, (int)pem_len, SQLITE_STATIC));
    BIND(sqlite3_bind_int64(s, 4, created));
    return lk_sq__run_bound(be, s, rc);
}

/* The current row of S_SA_LOOKUP or S_SA_LIST, borrowed (valid until the
 * next step): key_id and public_pem are NULL for an account without keys. */
static int row_view(sqlite3_stmt *s, lk_reg_sa_key *k)
{
    k->key_id = (char *)sqlite3_column_text(s, 0);
    k->email = (char *)sqlite3_column_text(s, 1);
    k->project = (char *)sqlite3_column_text(s, 2);
    k->name = (char *)sqlite3_column_text(s, 3);
    k->role = (lk_reg_sa_role)sqlite3_column_int(s, 4);
    k->public_pem = (char *)sqlite3_column_text(s, 5);
    k->disabled = sqlite3_column_int(s, 6) != 0;
    k->created = sqlite3_column_int64(s, 7);
    /* a NULL where the column is not NULL: out of memory */
    return !((k->key_id == NULL && sqlite3_column_type(s, 0) != SQLITE_NULL) ||
             (k->public_pem == NULL && sqlite3_column_type(s, 5) != SQLITE_NULL) ||
             k->email == NULL || k->project == NULL || k->name == NULL);
}

lk_err lk_sq__sa_lookup(lk_reg_be *be, const char *key_id, lk_reg_sa_key *out)
{
    sqlite3_stmt *s;
    lk_reg_sa_key v;
    int rc;
    lk_err err;
    PREP(s, S_SA_LOOKUP);
    rc = lk_sq__bind_text(s, 1, key_id);
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    memset(out, 0, sizeof *out);
    if (!row_view(s, &v) || v.key_id == NULL || v.public_pem == NULL) {
        sqlite3_reset(s);
        return LK_ERR_NOMEM;
    }
    out->key_id = strdup(v.key_id);
    out->email = strdup(v.email);
    out->project = strdup(v.project);
    out->name = strdup(v.name);
    out->public_pem = strdup(v.public_pem);
    out->role = v.role;
    out->disabled = v.disabled;
    out->created = v.created;
    sqlite3_reset(s);
    if (out->key_id == NULL || out->email == NULL || out->project == NULL || out->name == NULL ||
        out->public_pem == NULL) {
        lk_reg_sa_key_free(out);
        return LK_ERR_NOMEM;
    }
    return LK_OK;
}

lk_err lk_sq__sa_list(lk_reg_be *be, const char *project,
                      int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    PREP(s, S_SA_LIST);
    rc = lk_sq__bind_text(s, 1, project);
    if (rc != SQLITE_OK)
        return lk_sq__st_fail(be, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_sa_key k;
        if (!row_view(s, &k)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &k))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

/* Run the statement which with ?1 = text (and ?2 = v when which takes it):
 * NOT_FOUND when no row changed. */
static lk_err run_text(lk_reg_be *be, int which, const char *text, int two, int64_t v)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, which);
    BIND(lk_sq__bind_text(s, 1, text));
    if (two)
        BIND(sqlite3_bind_int64(s, 2, v));
    return lk_sq__run_bound_found(be, s, rc);
}

lk_err lk_sq__sa_key_set_disabled(lk_reg_be *be, const char *key_id, int disabled)
{
    return run_text(be, S_SA_KEY_DISABLE, key_id, 1, disabled ? 1 : 0);
}

lk_err lk_sq__sa_key_delete(lk_reg_be *be, const char *key_id)
{
    return run_text(be, S_SA_KEY_DEL, key_id, 0, 0);
}

lk_err lk_sq__sa_delete(lk_reg_be *be, const char *email)
{
    return run_text(be, S_SA_DEL, email, 0, 0);
}
