/*
 * service_accounts.c — service accounts, who may call latchkeyd's admin API
 * (lk_registry.h): the rules for names, emails, roles, key ids and keys, and
 * the transactions that change them. Storage is behind backend.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "facade.h"

static const struct {
    lk_reg_sa_role role;
    const char *name;
} roles[] = {
    {LK_ROLE_VIEWER, "viewer"},
    {LK_ROLE_DEVICE_CONTROLLER, "deviceController"},
    {LK_ROLE_PROVISIONER, "provisioner"},
    {LK_ROLE_EDITOR, "editor"},
    {LK_ROLE_ADMIN, "admin"},
};
#define NROLES (sizeof roles / sizeof roles[0])
#define ROLE_PREFIX "roles/cloudiot."

const char *lk_reg_sa_role_name(lk_reg_sa_role r)
{
    size_t i;
    if (r == LK_ROLE_NONE)
        return "none";
    for (i = 0; i < NROLES; i++)
        if (roles[i].role == r)
            return roles[i].name;
    return "unknown";
}

lk_reg_sa_role lk_reg_sa_role_from_name(const char *s)
{
    size_t i;
    if (s == NULL)
        return LK_ROLE_NONE;
    if (strncmp(s, ROLE_PREFIX, sizeof ROLE_PREFIX - 1) == 0)
        s += sizeof ROLE_PREFIX - 1;
    if (strcmp(s, "device-controller") == 0)
        return LK_ROLE_DEVICE_CONTROLLER;
    for (i = 0; i < NROLES; i++)
        if (strcmp(s, roles[i].name) == 0)
            return roles[i].role;
    return LK_ROLE_NONE;
}

/* Google's rule for a service account id: 6..30 characters, a lowercase
 * letter, then lowercase letters, digits and hyphens, not ending with a
 * hyphen. */
static int sa_name_valid(const char *s, size_t n)
{
    size_t i;
    if (n < LK_SA_NAME_MIN || n > LK_SA_NAME_MAX || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
        return 0;
    for (i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static lk_err check_sa_name(const char *name, char *why, size_t why_size)
{
    char b[80];
    if (name == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a service account name is required");
    if (!sa_name_valid(name, strlen(name)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "service account name '%s' is invalid: a name is %u to %u characters, a "
                     "lowercase letter followed by lowercase letters, digits or hyphens, not "
                     "ending with a hyphen", lk_reg__shown(name, b, sizeof b), LK_SA_NAME_MIN,
                     LK_SA_NAME_MAX);
    return LK_OK;
}

/* NAME@PROJECT.iam.latchkey with a valid name and project. */
static int email_valid(const char *email)
{
    static const char dom[] = LK_SA_EMAIL_DOMAIN;
    const char *at = strchr(email, '@');
    size_t n = strlen(email), plen;
    if (at == NULL || n > LK_SA_EMAIL_MAX || n < sizeof dom - 1 ||
        strcmp(email + n - (sizeof dom - 1), dom) != 0)
        return 0;
    if ((size_t)(at - email) + 1 + (sizeof dom - 1) > n)
        return 0;
    plen = n - (size_t)(at - email) - 1 - (sizeof dom - 1);
    return sa_name_valid(email, (size_t)(at - email)) && lk_project_valid(at + 1, plen);
}

static lk_err check_email(const char *email, char *why, size_t why_size)
{
    char b[80];
    if (email == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a service account email is required");
    if (!email_valid(email))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "'%s' is not a service account email (NAME@PROJECT" LK_SA_EMAIL_DOMAIN ")",
                     lk_reg__shown(email, b, sizeof b));
    return LK_OK;
}

static int key_id_valid(const char *k)
{
    size_t i;
    for (i = 0; i < LK_SA_KEY_ID_LEN; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
            return 0;
    return k[LK_SA_KEY_ID_LEN] == '\0';
}

static lk_err check_key_id(const char *key_id, char *why, size_t why_size)
{
    char b[80];
    if (key_id == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a key id is required");
    if (!key_id_valid(key_id))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "key id '%s' is invalid: a key id is %u lowercase hexadecimal characters",
                     lk_reg__shown(key_id, b, sizeof b), LK_SA_KEY_ID_LEN);
    return LK_OK;
}

lk_err lk_registry_sa_create(lk_registry *reg, const char *project, const char *name,
                             lk_reg_sa_role role, char *email, size_t email_size, char *why,
                             size_t why_size)
{
    char e[LK_SA_EMAIL_MAX + 1];
    lk_err err;

    if (email != NULL && email_size > 0)
        email[0] = '\0';
    if (reg == NULL || email == NULL || email_size < LK_SA_EMAIL_MAX + 1)
        return failf(why, why_size, LK_ERR_ARG, "no registry or too small an email buffer");
    if (project == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a project is required");
    if ((err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK ||
        (err = check_sa_name(name, why, why_size)) != LK_OK)
        return err;
    if (role < LK_ROLE_VIEWER || role > LK_ROLE_ADMIN)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "role %d is invalid: viewer, deviceController, provisioner, editor or admin",
                     (int)role);
    snprintf(e, sizeof e, "%s@%s" LK_SA_EMAIL_DOMAIN, name, project);
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->sa_insert(reg->be, e, project, name, role, lk_reg__now(reg));
    if (err == LK_ERR_REG_EXISTS)
        err = failf(why, why_size, err, "service account %s exists already", e);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    err = lk_reg__leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK)
        memcpy(email, e, strlen(e) + 1);
    return err;
}

lk_err lk_registry_sa_key_add(lk_registry *reg, const char *email, const char *key_id,
                              const char *pem, size_t pem_len, char *why, size_t why_size)
{
    lk_cred *cred = NULL;
    unsigned n = 0;
    lk_err err;

    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_email(email, why, why_size)) != LK_OK ||
        (err = check_key_id(key_id, why, why_size)) != LK_OK)
        return err;
    if (pem == NULL || pem_len == 0)
        return failf(why, why_size, LK_ERR_ARG, "a public key is required");
    if (pem_len > LK_CRED_PEM_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "the public key is %zu bytes; at most %u",
                     pem_len, LK_CRED_PEM_MAX);
    /* Stored as text: an embedded NUL would cut it. */
    if (memchr(pem, '\0', pem_len) != NULL)
        return failf(why, why_size, LK_ERR_CRED_INVALID, "the public key contains a NUL byte");
    err = lk_cred_parse(LK_CRED_RSA_PEM, pem, pem_len, 0, &cred);
    lk_cred_free(cred);
    /* OpenSSL's own failures (out of memory) are not a verdict on the key */
    if (err == LK_ERR_NOMEM || err == LK_ERR_CRYPTO)
        return failf(why, why_size, err, "the public key could not be read (%s)",
                     err == LK_ERR_NOMEM ? "out of memory" : "OpenSSL failed");
    if (err != LK_OK)
        return failf(why, why_size, LK_ERR_CRED_INVALID,
                     "the key is not an RSA public key (-----BEGIN PUBLIC KEY-----, 2048 to "
                     "8192 bits, odd public exponent 3..2^64-1)");
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->sa_key_count(reg->be, email, &n);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = failf(why, why_size, err, "service account %s does not exist", email);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    else if (n >= LK_SA_KEYS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "service account %s already has %u keys; an account has at most %u", email,
                    n, LK_SA_KEYS_MAX);
    if (err == LK_OK) {
        err = reg->ops->sa_key_insert(reg->be, email, key_id, pem, pem_len, lk_reg__now(reg));
        if (err == LK_ERR_REG_EXISTS)
            err = failf(why, why_size, err, "key id %s is taken", key_id);
        else if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_sa_lookup(lk_registry *reg, const char *key_id, lk_reg_sa_key *out)
{
    lk_err err;
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (key_id == NULL || out == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* A key id that could not have been registered is not there (and costs
     * no query: this runs for every API call). */
    if (!key_id_valid(key_id))
        return LK_ERR_REG_NOT_FOUND;
    /* One statement by primary key: its own read snapshot, no BEGIN. */
    err = reg->ops->sa_lookup(reg->be, key_id, out);
    if (err != LK_OK)
        memset(out, 0, sizeof *out);
    return err;
}

lk_err lk_registry_sa_list(lk_registry *reg, const char *project,
                           int (*cb)(void *arg, const lk_reg_sa_key *k), void *arg, char *why,
                           size_t why_size)
{
    lk_err err;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->sa_list(reg->be, project, cb, arg)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

/* The end of a write keyed by key_id or email: NOT_FOUND named. */
static lk_err finish(lk_registry *reg, lk_err err, const char *what, const char *key,
                     char *why, size_t why_size)
{
    if (err == LK_ERR_REG_NOT_FOUND)
        err = failf(why, why_size, err, "%s %s does not exist", what, key);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_sa_key_set_disabled(lk_registry *reg, const char *key_id, int disabled,
                                       char *why, size_t why_size)
{
    lk_err err;
    if ((err = check_key_id(key_id, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->sa_key_set_disabled(reg->be, key_id, disabled != 0);
    return finish(reg, err, "key", key_id, why, why_size);
}

lk_err lk_registry_sa_key_delete(lk_registry *reg, const char *key_id, char *why,
                                 size_t why_size)
{
    lk_err err;
    if ((err = check_key_id(key_id, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->sa_key_delete(reg->be, key_id);
    return finish(reg, err, "key", key_id, why, why_size);
}

lk_err lk_registry_sa_delete(lk_registry *reg, const char *email, char *why, size_t why_size)
{
    lk_err err;
    if ((err = check_email(email, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->sa_delete(reg->be, email);
    return finish(reg, err, "service account", email, why, why_size);
}
