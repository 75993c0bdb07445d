/*
 * console.c — the console's fleet data (lk_reg_console.h): the device
 * search's rules (its filters checked, its times taken from the clock, the
 * id prefix turned into a range of ids) and the per-registry counts. The
 * backend decides how to walk (sqlite_search.c).
 */
#include <string.h>

#include "facade.h"

/* A device id's characters after the first (lk_iotcore.h). */
static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._+~%", c) != NULL;
}

/* A prefix of a device id: 1..LK_ID_MAX of its characters, a letter
 * first. */
static int prefix_valid(const char *p, size_t len)
{
    size_t i;
    if (len == 0 || len > LK_ID_MAX || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z')))
        return 0;
    for (i = 1; i < len; i++)
        if (p[i] == '\0' || !id_char(p[i]))
            return 0;
    return 1;
}

static lk_err check_search(const lk_reg_search *s, char *why, size_t why_size)
{
    char b[80];
    if (s->limit == 0 || s->limit > LK_REG_SEARCH_PAGE_MAX)
        return failf(why, why_size, LK_ERR_ARG, "page size %u is out of range: 1 to %u", s->limit,
                     LK_REG_SEARCH_PAGE_MAX);
    if (s->presence < -1 || s->presence > LK_PRESENCE_OFFLINE)
        return failf(why, why_size, LK_ERR_ARG, "presence %d is not -1 (any), 0, 1 or 2",
                     s->presence);
    if (s->silent_hours > LK_REG_SILENT_HOURS_MAX)
        return failf(why, why_size, LK_ERR_ARG, "silent for %u hours is out of range: 1 to %u",
                     s->silent_hours, LK_REG_SILENT_HOURS_MAX);
    if (s->expiring_days < -1 || s->expiring_days > (int)LK_REG_EXPIRING_DAYS_MAX)
        return failf(why, why_size, LK_ERR_ARG,
                     "expiring within %d days is out of range: 0 to %u (-1: no filter)",
                     s->expiring_days, LK_REG_EXPIRING_DAYS_MAX);
    if (s->id_prefix != NULL && s->id_prefix[0] != '\0' &&
        !prefix_valid(s->id_prefix, strnlen(s->id_prefix, LK_ID_MAX + 1)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "id prefix '%s' is not the start of a device id (a letter, then letters, "
                     "digits and - . _ + ~ %%; at most %u characters)",
                     lk_reg__shown(s->id_prefix, b, sizeof b), LK_ID_MAX);
    if (s->after_id != NULL && !lk_id_valid(s->after_id, strnlen(s->after_id, LK_ID_MAX + 1)))
        return failf(why, why_size, LK_ERR_REG_INVALID, "the page cursor '%s' is not a device id",
                     lk_reg__shown(s->after_id, b, sizeof b));
    return LK_OK;
}

struct search_ctx {
    unsigned limit, given;
    int more;
    const lk_reg_name *name;
    int (*cb)(void *arg, const lk_reg_device *d, int64_t credential_expiry);
    void *arg;
};

static int search_cb(void *arg, const lk_reg_device *d, int64_t cred_expiry)
{
    struct search_ctx *ctx = arg;
    lk_reg_device v;
    if (ctx->given == ctx->limit) { /* the one asked for past the page */
        ctx->more = 1;
        return 1;
    }
    ctx->given++;
    v = *d; /* borrowed strings: nothing to free */
    v.project = (char *)ctx->name->project;
    v.location = (char *)ctx->name->location;
    v.registry = (char *)ctx->name->registry;
    return ctx->cb(ctx->arg, &v, cred_expiry);
}

lk_err lk_registry_search_devices(lk_registry *reg, const lk_reg_name *name,
                                  const lk_reg_search *s,
                                  int (*cb)(void *arg, const lk_reg_device *d,
                                            int64_t credential_expiry),
                                  void *arg, int *more, char *why, size_t why_size)
{
    char hi[LK_ID_MAX + 1];
    const char *prefix;
    lk_reg_be_search b;
    struct search_ctx ctx;
    int64_t rid, now;
    lk_err err;

    if (more != NULL)
        *more = 0;
    if (reg == NULL || s == NULL || cb == NULL || more == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry handle, search, callback or more flag");
    if ((err = check_search(s, why, why_size)) != LK_OK)
        return err;
    now = lk_reg__now(reg);
    memset(&b, 0, sizeof b);
    /* ids >= prefix and < the prefix with its last character one higher
     * (every id character is below 0x7f, so it never overflows); the
     * cursor replaces the start when it is past it. */
    prefix = s->id_prefix != NULL ? s->id_prefix : "";
    b.lo = prefix;
    if (prefix[0] != '\0') {
        size_t len = strlen(prefix);
        memcpy(hi, prefix, len + 1);
        hi[len - 1]++;
        b.hi = hi;
    }
    if (s->after_id != NULL && strcmp(s->after_id, prefix) >= 0) {
        b.lo = s->after_id;
        b.lo_strict = 1;
    }
    b.presence = s->presence;
    b.blocked_only = s->blocked_only != 0;
    b.gateways_only = s->gateways_only != 0;
    if (s->silent_hours > 0)
        b.silent_before = now - (int64_t)s->silent_hours * 3600;
    if (s->expiring_days >= 0) {
        b.expiring = 1;
        b.expiring_by = now + (int64_t)s->expiring_days * 86400;
    }
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    memset(&ctx, 0, sizeof ctx);
    ctx.limit = s->limit;
    ctx.name = name;
    ctx.cb = cb;
    ctx.arg = arg;
    /* One more than the page: whether there is a next one. */
    if ((err = reg->ops->device_search(reg->be, rid, &b, s->limit + 1, search_cb, &ctx)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    err = lk_reg__leave(reg, err, TX_READ, why, why_size);
    if (err == LK_OK)
        *more = ctx.more;
    return err;
}

lk_err lk_registry_fleet_counts(lk_registry *reg, const char *project,
                                int (*cb)(void *arg, const lk_reg_fleet_counts *c), void *arg,
                                char *why, size_t why_size)
{
    char b[80];
    lk_err err;
    if (reg == NULL || project == NULL || cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry handle, project or callback");
    if (!lk_project_valid(project, strnlen(project, LK_PROJECT_MAX + 1)))
        return failf(why, why_size, LK_ERR_REG_INVALID, "'%s' is not a project id",
                     lk_reg__shown(project, b, sizeof b));
    if ((err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->fleet_counts(reg->be, project, cb, arg)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}
