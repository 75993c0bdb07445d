/*
 * audit.c — operators and the audit record (lk_reg_audit.h, schema 8).
 *
 * The audit hook itself (the actor, the row appended in the committing
 * transaction) is in registry.c, beside lk_reg__leave.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_sha256.h"
#include "latchkey/lk_util.h"
#include "facade.h"

lk_err lk_registry_audit_list(lk_registry *reg, const lk_reg_audit_query *q,
                              int (*cb)(void *arg, const lk_reg_audit_record *r), void *arg,
                              char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL || q == NULL || cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry, query or callback");
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->audit_list(reg->be, q, cb, arg);
    if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

/* ------------------------------------------------------------------ */
/* Operators                                                           */

static lk_err check_op_name(const char *name, char *why, size_t why_size)
{
    char b[80];
    size_t i, n;
    if (name == NULL)
        return failf(why, why_size, LK_ERR_ARG, "an operator name is required");
    n = strlen(name);
    for (i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') ||
              (i > 0 && ((name[i] >= '0' && name[i] <= '9') || name[i] == '.' || name[i] == '_' ||
                         name[i] == '-'))))
            break;
    if (n == 0 || n > LK_OPERATOR_NAME_MAX || i < n)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "operator name '%s' is invalid: a name is 1 to %u characters, a lowercase "
                     "letter followed by lowercase letters, digits, '.', '_' or '-'",
                     lk_reg__shown(name, b, sizeof b), LK_OPERATOR_NAME_MAX);
    return LK_OK;
}

static lk_err check_password(size_t len, char *why, size_t why_size)
{
    if (len < LK_PASSWORD_MIN || len > LK_PASSWORD_MAX)
        return failf(why, why_size, LK_ERR_ARG,
                     "a password is %u to %u characters; this one is %zu", LK_PASSWORD_MIN,
                     LK_PASSWORD_MAX, len);
    return LK_OK;
}

static lk_err make_record(const char *pw, size_t len, char *rec, size_t size, char *why,
                          size_t why_size)
{
    lk_err err = check_password(len, why, why_size);
    if (err == LK_OK && pw == NULL)
        err = failf(why, why_size, LK_ERR_ARG, "no password");
    if (err == LK_OK && (err = lk_password_hash(pw, len, rec, size)) != LK_OK)
        err = failf(why, why_size, err, "the password could not be hashed (%s)", lk_errname(err));
    return err;
}

static lk_err not_found(lk_err err, const char *name, lk_registry *reg, char *why, size_t why_size)
{
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "operator '%s' does not exist", name);
    if (err == LK_ERR_REG_EXISTS)
        return failf(why, why_size, err, "operator '%s' exists already", name);
    return err == LK_OK ? LK_OK : lk_reg__be_fail(reg, err, why, why_size);
}

lk_err lk_registry_operator_create(lk_registry *reg, const char *name, const char *project,
                                   lk_reg_sa_role role, const char *pw, size_t len, char *why,
                                   size_t why_size)
{
    char rec[LK_PASSWORD_RECORD_MAX];
    lk_err err;
    if (reg == NULL || project == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry or no project");
    if ((err = check_op_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK)
        return err;
    if (role < LK_ROLE_VIEWER || role > LK_ROLE_ADMIN)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "role %d is invalid: viewer, deviceController, provisioner, editor or admin",
                     (int)role);
    if ((err = make_record(pw, len, rec, sizeof rec, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) == LK_OK) {
        err = reg->ops->operator_insert(reg->be, name, project, role, rec, lk_reg__now(reg));
        err = lk_reg__leave(reg, not_found(err, name, reg, why, why_size), TX_WRITE, why, why_size);
    }
    lk_wipe(rec, sizeof rec);
    return err;
}

lk_err lk_registry_operator_passwd(lk_registry *reg, const char *name, const char *pw,
                                   size_t len, char *why, size_t why_size)
{
    char rec[LK_PASSWORD_RECORD_MAX];
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_op_name(name, why, why_size)) != LK_OK ||
        (err = make_record(pw, len, rec, sizeof rec, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) == LK_OK) {
        err = reg->ops->operator_set_password(reg->be, name, rec);
        err = lk_reg__leave(reg, not_found(err, name, reg, why, why_size), TX_WRITE, why, why_size);
    }
    lk_wipe(rec, sizeof rec);
    return err;
}

lk_err lk_registry_operator_set_disabled(lk_registry *reg, const char *name, int disabled,
                                         char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_op_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->operator_set_disabled(reg->be, name, disabled);
    return lk_reg__leave(reg, not_found(err, name, reg, why, why_size), TX_WRITE, why, why_size);
}

lk_err lk_registry_operator_delete(lk_registry *reg, const char *name, char *why,
                                   size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_op_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->operator_delete(reg->be, name);
    return lk_reg__leave(reg, not_found(err, name, reg, why, why_size), TX_WRITE, why, why_size);
}

void lk_reg_operator_free(lk_reg_operator *o)
{
    if (o == NULL)
        return;
    free(o->name);
    free(o->project);
    memset(o, 0, sizeof *o);
}

/* The operator and its password record (malloc'd, wipe it). */
static lk_err get(lk_registry *reg, const char *name, lk_reg_operator *out, char **rec)
{
    lk_err err;
    memset(out, 0, sizeof *out);
    *rec = NULL;
    if (reg == NULL || name == NULL)
        return LK_ERR_ARG;
    if (check_op_name(name, NULL, 0) != LK_OK)
        return LK_ERR_REG_NOT_FOUND;
    if (reg->busy)
        return LK_ERR_STATE;
    err = reg->ops->operator_get(reg->be, name, out, rec);
    if (err == LK_OK)
        lk_sha256(*rec, strlen(*rec), out->stamp);
    return err;
}

lk_err lk_registry_operator_get(lk_registry *reg, const char *name, lk_reg_operator *out)
{
    char *rec = NULL;
    lk_err err;
    if (out == NULL)
        return LK_ERR_ARG;
    err = get(reg, name, out, &rec);
    if (rec != NULL) {
        lk_wipe(rec, strlen(rec));
        free(rec);
    }
    return err;
}

lk_err lk_registry_operator_list(lk_registry *reg, const char *project,
                                 int (*cb)(void *arg, const lk_reg_operator *o), void *arg,
                                 char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL || cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry or callback");
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->operator_list(reg->be, project, cb, arg);
    if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

/* What an unknown name is checked against: the same parameters as a new
 * record, so that it costs the same (it matches no password). */
static const char dummy_record[] =
    "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

lk_err lk_registry_operator_signin(lk_registry *reg, const char *name, const char *pw,
                                   size_t len, lk_reg_operator *out, char *why,
                                   size_t why_size)
{
    char *rec = NULL;
    lk_err err;
    int ok;
    if (out == NULL || pw == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no operator or password");
    err = get(reg, name, out, &rec);
    if (err != LK_OK && err != LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "the registry could not be read (%s)", lk_errname(err));
    ok = lk_password_verify(rec != NULL ? rec : dummy_record, pw, len);
    if (rec != NULL) {
        lk_wipe(rec, strlen(rec));
        free(rec);
    }
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "no operator of that name");
    if (!ok)
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND, "wrong password");
    else if (out->disabled)
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND, "the operator is disabled");
    if (err != LK_OK)
        lk_reg_operator_free(out);
    return err;
}
