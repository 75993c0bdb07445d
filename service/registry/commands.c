/*
 * commands.c — commands sent to devices and the backend applications that
 * send them (lk_registry.h, schema 2).
 */
#include <string.h>

#include "facade.h"
#include "latchkey/lk_util.h"

/* How long a decided command is kept (for a sender that polls late), and
 * after how long a command nobody decided is dropped (its sender died
 * before deciding EXPIRED: it must not reach a broker started later). */
#define COMMAND_KEEP_S 86400

static lk_err prune_commands(lk_registry *reg, char *why, size_t why_size)
{
    int64_t before = lk_reg__now(reg) - COMMAND_KEEP_S;
    lk_err err = reg->ops->command_prune(reg->be, before, before);
    return err != LK_OK ? lk_reg__be_fail(reg, err, why, why_size) : LK_OK;
}

lk_err lk_registry_command_send(lk_registry *reg, const lk_reg_name *name, const char *id,
                                const char *subfolder, const uint8_t *data, size_t len,
                                int64_t *command_id, char *why, size_t why_size)
{
    uint64_t num_id = 0;
    int64_t rid, cid = 0;
    int blocked = 0;
    char b[80];
    lk_err err;

    if (command_id != NULL)
        *command_id = 0;
    if (command_id == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no place for the command id given");
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_device_id(id, why, why_size)) != LK_OK)
        return err;
    if (data == NULL && len > 0)
        return failf(why, why_size, LK_ERR_ARG, "command length %zu without data", len);
    if (len > LK_COMMAND_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "command is %zu bytes; the limit is %u",
                     len, LK_COMMAND_MAX);
    if (subfolder != NULL && !lk_subfolder_valid(subfolder, strlen(subfolder)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "subfolder '%s' is invalid: a subfolder is 1 to %u characters without "
                     "'+', '#' or NUL, not starting or ending with '/', without empty levels",
                     lk_reg__shown(subfolder, b, sizeof b), LK_SUBFOLDER_MAX);
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__find_both(reg, name, id, &rid, &num_id, NULL, why, why_size);
    if (err == LK_OK && (err = reg->ops->device_blocked(reg->be, num_id, &blocked)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && blocked)
        err = failf(why, why_size, LK_ERR_REG_INVALID,
                    "device '%s' is blocked: it cannot connect, so it cannot receive commands "
                    "(unblock it first)", id);
    if (err == LK_OK && (err = prune_commands(reg, why, why_size)) == LK_OK) {
        err = reg->ops->command_insert(reg->be, num_id, subfolder, data, len, lk_reg__now(reg),
                                       &cid);
        if (err != LK_OK)
            err = lk_reg__be_fail(reg, err, why, why_size);
    }
    err = lk_reg__leave_changed(reg, err, LK_CHANGE_COMMAND, num_id, why, why_size);
    if (err == LK_OK)
        *command_id = cid;
    return err;
}

lk_err lk_registry_command_status(lk_registry *reg, int64_t command_id,
                                  lk_reg_command_status *status, int64_t *decided)
{
    lk_reg_command_status st = LK_CMD_PENDING;
    int64_t d = 0;
    lk_err err;
    if (status != NULL)
        *status = LK_CMD_PENDING;
    if (decided != NULL)
        *decided = 0;
    if (status == NULL || command_id <= 0)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* One statement: its own read snapshot, no BEGIN needed. */
    err = reg->ops->command_status(reg->be, command_id, &st, &d);
    if (err == LK_OK) {
        *status = st;
        if (decided != NULL)
            *decided = d;
    }
    return err;
}

lk_err lk_registry_commands_pending(lk_registry *reg,
                                    int (*cb)(void *arg, const lk_reg_command *c), void *arg)
{
    lk_err err;
    if (cb == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__enter(reg, TX_READ, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->command_pending(reg->be, cb, arg);
    return lk_reg__leave(reg, err, TX_READ, NULL, 0);
}

lk_err lk_registry_command_decide(lk_registry *reg, int64_t command_id,
                                  lk_reg_command_status status, int64_t t, int *won)
{
    int w = 0;
    lk_err err;
    if (won != NULL)
        *won = 0;
    if (reg == NULL || command_id <= 0 || t < 0 ||
        (status != LK_CMD_DELIVERED && status != LK_CMD_NOT_CONNECTED &&
         status != LK_CMD_EXPIRED))
        return LK_ERR_ARG;
    if ((err = lk_reg__enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->command_decide(reg->be, command_id, status, t, &w);
    if (err == LK_OK && w)
        err = prune_commands(reg, NULL, 0);
    err = lk_reg__leave(reg, err, TX_BROKER, NULL, 0);
    if (err == LK_OK && won != NULL)
        *won = w;
    return err;
}

/* ------------------------------------------------------------------ */
/* Backend applications                                                */

static lk_err check_backend_name(const char *name, char *why, size_t why_size)
{
    return lk_reg__check_id("backend name", name, why, why_size);
}

lk_err lk_registry_backend_create(lk_registry *reg, const char *project, const char *name,
                                  const uint8_t secret_sha256[32], char *why, size_t why_size)
{
    lk_err err;
    if (project == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a project is required");
    if ((err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK ||
        (err = check_backend_name(name, why, why_size)) != LK_OK)
        return err;
    if (secret_sha256 == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no secret hash given");
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->backend_insert(reg->be, name, project, secret_sha256, lk_reg__now(reg));
    if (err == LK_ERR_REG_EXISTS)
        err = failf(why, why_size, err,
                    "backend '%s' exists already (backend names are unique in the database, "
                    "across projects)", name);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_BACKEND, 0, why, why_size);
}

lk_err lk_registry_backend_delete(lk_registry *reg, const char *name, char *why, size_t why_size)
{
    lk_err err;
    if ((err = check_backend_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->backend_delete(reg->be, name);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = failf(why, why_size, err, "backend '%s' does not exist", name);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_BACKEND, 0, why, why_size);
}

lk_err lk_registry_backend_list(lk_registry *reg, const char *project,
                                int (*cb)(void *arg, const lk_reg_backend *b), void *arg,
                                char *why, size_t why_size)
{
    lk_err err;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK)
        return err;
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->backend_list(reg->be, project, cb, arg)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_backend_lookup(lk_registry *reg, const char *name, char *project,
                                  uint8_t secret_sha256[32])
{
    lk_err err;
    if (project != NULL)
        project[0] = '\0';
    if (name == NULL || project == NULL || secret_sha256 == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* A name that could not have been created is not there (and costs no
     * query: this runs for every backend CONNECT). */
    if (!lk_id_valid(name, strlen(name)))
        return LK_ERR_REG_NOT_FOUND;
    /* One statement by primary key: its own read snapshot, no BEGIN. */
    return reg->ops->backend_lookup(reg->be, name, project, LK_PROJECT_MAX + 1, secret_sha256);
}

/* ------------------------------------------------------------------ */
/* latchkeyd's bridge identity                                         */

lk_err lk_registry_bridge_set(lk_registry *reg, const char *name, const uint8_t secret_sha256[32],
                              int64_t t, char *why, size_t why_size)
{
    lk_err err;
    /* LK_ERR_ARG, not LK_ERR_REG_INVALID: the name is latchkeyd's setting,
     * not a resource a caller names. */
    if ((err = lk_reg__check_id("bridge name", name, why, why_size)) != LK_OK)
        return LK_ERR_ARG;
    if (secret_sha256 == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no secret hash given");
    if ((err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    /* Not in the change feed: the broker reads the row at each bridge
     * CONNECT, and latchkeyd connects after writing it. */
    if ((err = reg->ops->bridge_set(reg->be, name, secret_sha256, t)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_bridge_lookup(lk_registry *reg, const char *name, uint8_t secret_sha256[32])
{
    lk_err err;
    if (secret_sha256 == NULL)
        return LK_ERR_ARG;
    memset(secret_sha256, 0, 32);
    if (name == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* A name that could not have been set is not there (and costs no query:
     * this runs for every bridge CONNECT). */
    if (!lk_id_valid(name, strlen(name)))
        return LK_ERR_REG_NOT_FOUND;
    /* One statement by primary key: its own read snapshot, no BEGIN. */
    err = reg->ops->bridge_lookup(reg->be, name, secret_sha256);
    if (err != LK_OK)
        memset(secret_sha256, 0, 32);
    return err;
}
