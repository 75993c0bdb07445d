/*
 * registry.c — the device registry's public API (lk_registry.h): every rule
 * and limit of docs/iotcore.md §Registry is checked in the facade, before
 * anything reaches the storage backend (backend.h), which only stores rows.
 * This file holds the handle (open, close), the transactions and the checks
 * that several resources share (facade.h); each resource has its own file:
 * registries.c (registries and their CA certificates), devices.c (devices
 * and credentials), configs.c (configs and states), feed.c (the broker's
 * calls and the change feed), import.c (bulk import), commands.c (commands
 * and backend applications), query.c (devices a page at a time), bindings.c
 * (gateway bindings), audit.c (operators, reading the audit record; the
 * record is written here, in lk_reg__leave); records.c frees what they
 * hand out.
 *
 * The shape of every operation:
 *   1. check the arguments that need no database (names, sizes, formats);
 *   2. lk_reg__enter(): refuse re-entry and writes on a read-only handle, begin a
 *      transaction (a write transaction takes the write lock up front);
 *   3. look things up and check the rules that need the database (the
 *      registry exists, CA certificates, version_to_update, counts);
 *   4. write, appending to the change feed in the same transaction;
 *   5. lk_reg__leave(): commit, or roll back on any failure — so a refusal at any
 *      step writes nothing.
 *
 * Decisions where the spec is silent (also in the header):
 *  - UNSPECIFIED mqtt/http at creation is stored as ENABLED (IoT Core's
 *    meaning of unspecified).
 *  - Metadata values must be UTF-8 without NUL (IoT Core's are proto
 *    strings); "under 256 KB" is strict: keys + values < 262144 bytes.
 *  - With no registry CA certificates, any certificate is accepted as a
 *    device credential (nothing to check it against); a device certificate's
 *    own validity dates are not checked (a credential's expiry is its
 *    expires field); an expired CA certificate cannot be added.
 *  - Replacing a device's credentials re-checks only the new ones: a
 *    credential identical to one the device already has is kept as is, so
 *    adding a registry CA later does not lock existing devices out of
 *    credential updates.
 *  - The change feed records device create/update/delete, credential and
 *    config changes, and registry update/delete. It does not record
 *    activity times, state reports, registry creation or CA
 *    certificate changes (none of them changes who may connect). Schema 2
 *    adds LK_CHANGE_COMMAND (a command queued, with its device's num_id)
 *    and LK_CHANGE_BACKEND (a backend application created or deleted,
 *    num_id 0); command outcomes are not in the feed. The newest
 *    LK_REG_CHANGES_KEPT (100,000) changes are kept; a follower that falls
 *    further behind gets one LK_CHANGE_RESYNC.
 *  - Activity times only move forward.
 *  - Commands: a blocked device is refused (it cannot be connected); an
 *    empty command is allowed; the first decision wins (one UPDATE ...
 *    WHERE status = PENDING); decided commands are kept a day for a late
 *    poller, and pending ones older than a day (a sender that died) are
 *    dropped so that a broker started later never delivers them.
 *  - Backend names follow the device id rules (lk_id_valid) and are unique
 *    across projects (the MQTT username "backend:NAME" names one).
 *  - Schema 3: a device may be created with the numId it had in IoT Core
 *    (kept if no device has it and it is at most LK_REG_NUM_ID_MAX, else a
 *    new one is assigned: numIds stay unique, and the caller sees which),
 *    with its config's version and cloudUpdateTime, and with log level and
 *    gateway settings, which are stored and shown but act on nothing yet.
 *    A registry may be created whole (notifications, log level, CAs) in one
 *    transaction, and imported in batches like devices.
 *  - For latchkeyd (query.c, bindings.c, registries.c's patch): devices
 *    come a page at a time after an id (keyset, never an offset); a device
 *    is named by id or by decimal numId (ids start with a letter); gateway
 *    bindings follow IoT Core's rules and limits, binding a bound pair is
 *    a no-op, and each change is LK_CHANGE_DEVICE for the bound device; a
 *    registry patch that keeps a CA certificate does not re-check its
 *    expiry.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "facade.h"

static const lk_reg_store *const backends[] = {&lk_reg_sqlite_backend};

/* ------------------------------------------------------------------ */
/* Helpers: reasons, time, names                                       */

/* A storage-level failure: the backend's own message. */
lk_err lk_reg__be_fail(lk_registry *reg, lk_err err, char *why, size_t why_size)
{
    if (err == LK_ERR_REG_BUSY)
        return failf(why, why_size, err,
                     "the registry database stayed locked by another writer for %u ms (%s)",
                     reg->busy_ms, reg->ops->last_error(reg->be));
    if (err == LK_ERR_NOMEM)
        return failf(why, why_size, err, "out of memory");
    return failf(why, why_size, err, "registry database: %s", reg->ops->last_error(reg->be));
}

int64_t lk_reg__now(const lk_registry *reg)
{
    return reg->clock != NULL ? reg->clock(reg->clock_arg) : (int64_t)time(NULL);
}

/* s for a message: printable ASCII only, at most ~60 characters. */
const char *lk_reg__shown(const char *s, char *buf, size_t size)
{
    size_t i, o = 0;
    if (s == NULL)
        return "(null)";
    for (i = 0; s[i] != '\0' && o + 4 < size; i++) {
        if (i >= 60) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? s[i] : '?';
    }
    buf[o] = '\0';
    return buf;
}

const char *lk_reg__path(const lk_reg_name *n, char *buf, size_t size)
{
    snprintf(buf, size, "projects/%s/locations/%s/registries/%s", n->project, n->location,
             n->registry);
    return buf;
}

lk_err lk_reg__check_place(const char *project, const char *location, char *why,
                           size_t why_size)
{
    char b[80];
    if (project != NULL && !lk_project_valid(project, strlen(project)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "project id '%s' is invalid: a project id is %u to %u characters, a "
                     "lowercase letter followed by lowercase letters, digits or hyphens, not "
                     "ending with a hyphen", lk_reg__shown(project, b, sizeof b), LK_PROJECT_MIN,
                     LK_PROJECT_MAX);
    if (location != NULL && !lk_location_valid(location, strlen(location)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "location '%s' is invalid: a location is 1 to %u characters, a lowercase "
                     "letter followed by lowercase letters, digits or hyphens",
                     lk_reg__shown(location, b, sizeof b), LK_LOCATION_MAX);
    return LK_OK;
}

lk_err lk_reg__check_name(const lk_reg_name *n, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    lk_err err;
    if (n == NULL || n->project == NULL || n->location == NULL || n->registry == NULL)
        return failf(why, why_size, LK_ERR_ARG,
                     "a registry is named by a project, a location and a registry id");
    if ((err = lk_reg__check_place(n->project, n->location, why, why_size)) != LK_OK)
        return err;
    w = lk_id_why("registry id", n->registry, strlen(n->registry), r, sizeof r);
    if (w != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID, "registry id '%s' is invalid: %s",
                     lk_reg__shown(n->registry, b, sizeof b), w);
    return LK_OK;
}

lk_err lk_reg__check_id(const char *what, const char *id, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    if (id == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a %s is required", what);
    w = lk_id_why(what, id, strlen(id), r, sizeof r);
    if (w != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID, "%s '%s' is invalid: %s", what,
                     lk_reg__shown(id, b, sizeof b), w);
    return LK_OK;
}

lk_err lk_reg__check_device_id(const char *id, char *why, size_t why_size)
{
    return lk_reg__check_id("device id", id, why, why_size);
}

lk_err lk_reg__check_state(const char *what, lk_reg_state s, char *why, size_t why_size)
{
    if (s != LK_REG_STATE_UNSPECIFIED && s != LK_REG_STATE_ENABLED && s != LK_REG_STATE_DISABLED)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s state %d is invalid: use UNSPECIFIED (0), ENABLED (1) or DISABLED (2)",
                     what, (int)s);
    return LK_OK;
}

lk_err lk_reg__check_config_size(const void *data, size_t len, char *why, size_t why_size)
{
    if (data == NULL && len > 0)
        return failf(why, why_size, LK_ERR_ARG, "config length %zu without data", len);
    if (len > LK_CONFIG_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "config is %zu bytes; the limit is %u",
                     len, LK_CONFIG_MAX);
    return LK_OK;
}

lk_err lk_reg__check_log_level(const char *what, lk_reg_log_level l, char *why, size_t why_size)
{
    if (l != LK_LOG_LEVEL_UNSPECIFIED && l != LK_LOG_LEVEL_NONE && l != LK_LOG_LEVEL_ERROR &&
        l != LK_LOG_LEVEL_INFO && l != LK_LOG_LEVEL_DEBUG)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s log level %d is invalid: use UNSPECIFIED (0), NONE (10), ERROR (20), "
                     "INFO (30) or DEBUG (40)", what, (int)l);
    return LK_OK;
}

lk_err lk_reg__check_gateway_type(lk_reg_gateway_type t, char *why, size_t why_size)
{
    if (t != LK_GATEWAY_TYPE_UNSPECIFIED && t != LK_GATEWAY_TYPE_GATEWAY &&
        t != LK_GATEWAY_TYPE_NON_GATEWAY)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "gateway type %d is invalid: use UNSPECIFIED (0), GATEWAY (1) or "
                     "NON_GATEWAY (2)", (int)t);
    return LK_OK;
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */

lk_err lk_reg__guard(lk_registry *reg, char *why, size_t why_size)
{
    if (reg == NULL)
        return LK_ERR_ARG;
    if (reg->busy)
        return failf(why, why_size, LK_ERR_STATE,
                     "the registry handle is busy (a callback may not call back into it)");
    if (reg->importing)
        return failf(why, why_size, LK_ERR_STATE,
                     "an import is in progress on this handle; commit or abort it first");
    return LK_OK;
}

lk_err lk_reg__enter(lk_registry *reg, int tx, char *why, size_t why_size)
{
    lk_err err = lk_reg__guard(reg, why, why_size);
    if (err != LK_OK)
        return err;
    if (tx == TX_WRITE && (reg->flags & LK_REG_READONLY))
        return failf(why, why_size, LK_ERR_STATE,
                     "the registry was opened read-only (LK_REG_READONLY)");
    if (tx != TX_READ && (reg->flags & LK_REG_NOWRITE))
        return failf(why, why_size, LK_ERR_STATE,
                     "the registry was opened without write access (LK_REG_NOWRITE)");
    err = reg->ops->begin(reg->be, tx != TX_READ);
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    reg->busy = 1;
    reg->appended = 0;
    reg->changes_at_enter = reg->ops->total_changes(reg->be);
    reg->audit_skip = 0;
    return LK_OK;
}

/* Drop changes beyond the newest changes_kept, when this transaction added
 * some. */
static lk_err prune_feed(lk_registry *reg)
{
    if (!reg->appended)
        return LK_OK;
    return reg->ops->change_prune(reg->be, reg->changes_kept);
}

/* End the transaction begun by lk_reg__enter(): commit when err is LK_OK, else roll
 * back. Returns err, or the commit's failure. */
lk_err lk_reg__leave(lk_registry *reg, lk_err err, int tx, char *why, size_t why_size)
{
    if (err == LK_OK && tx != TX_READ) {
        err = prune_feed(reg);
        if (err != LK_OK)
            (void)lk_reg__be_fail(reg, err, why, why_size);
    }
    /* The one place every write commits: its audit row joins it (TX_BROKER,
     * the broker's own traffic, is never recorded). */
    if (err == LK_OK && tx == TX_WRITE)
        err = lk_reg__audit_commit(reg, why, why_size);
    if (err == LK_OK) {
        err = reg->ops->commit(reg->be);
        if (err != LK_OK)
            (void)lk_reg__be_fail(reg, err, why, why_size);
        else if (tx != TX_READ)
            reg->own_commits++;
    }
    if (err != LK_OK)
        reg->ops->rollback(reg->be);
    reg->busy = 0;
    return err;
}

lk_err lk_reg__append_change(lk_registry *reg, lk_reg_change_kind kind, uint64_t num_id,
                             char *why, size_t why_size)
{
    lk_err err;
    if (reg->staged) /* a staged device is announced when the import is switched in */
        return LK_OK;
    err = reg->ops->change_append(reg->be, kind, num_id, lk_reg__now(reg));
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    reg->appended = 1;
    return LK_OK;
}

lk_err lk_reg__leave_changed(lk_registry *reg, lk_err err, lk_reg_change_kind kind,
                             uint64_t num_id, char *why, size_t why_size)
{
    if (err == LK_OK)
        err = lk_reg__append_change(reg, kind, num_id, why, why_size);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_reg__find_registry(lk_registry *reg, const lk_reg_name *name, int64_t *rid, char *why,
                             size_t why_size)
{
    char p[400];
    lk_err err = reg->ops->registry_find(reg->be, name, rid);
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "%s does not exist", lk_reg__path(name, p, sizeof p));
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    return LK_OK;
}

lk_err lk_reg__find_device(lk_registry *reg, const lk_reg_name *name, int64_t rid, const char *id,
                           uint64_t *num_id, int64_t *config_version, char *why, size_t why_size)
{
    char p[400];
    lk_err err = reg->ops->device_find(reg->be, rid, id, num_id, config_version);
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "device '%s' does not exist in %s", id,
                     lk_reg__path(name, p, sizeof p));
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    return LK_OK;
}

/* Registry and device in one go (inside a transaction). */
lk_err lk_reg__find_both(lk_registry *reg, const lk_reg_name *name, const char *id, int64_t *rid,
                         uint64_t *num_id, int64_t *config_version, char *why, size_t why_size)
{
    lk_err err = lk_reg__find_registry(reg, name, rid, why, why_size);
    if (err == LK_OK)
        err = lk_reg__find_device(reg, name, *rid, id, num_id, config_version, why, why_size);
    return err;
}

lk_err lk_reg__enter_registry(lk_registry *reg, int tx, const lk_reg_name *name, int64_t *rid,
                             char *why, size_t why_size)
{
    lk_err err;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, tx, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__find_registry(reg, name, rid, why, why_size);
    return err != LK_OK ? lk_reg__leave(reg, err, tx, why, why_size) : LK_OK;
}

/* Check name and device id, enter a transaction of kind tx and find the
 * device in it. On failure the transaction is already left (rolled back). */
lk_err lk_reg__enter_device(lk_registry *reg, int tx, const lk_reg_name *name, const char *id,
                            int64_t *rid, uint64_t *num_id, char *why, size_t why_size)
{
    lk_err err;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_device_id(id, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, tx, why, why_size)) != LK_OK)
        return err;
    err = lk_reg__find_both(reg, name, id, rid, num_id, NULL, why, why_size);
    return err != LK_OK ? lk_reg__leave(reg, err, tx, why, why_size) : LK_OK;
}

static int cas_add_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    lk_err *errp = ((void **)arg)[1];
    (void)index;
    *errp = lk_reg__cas_add(((void **)arg)[0], pem, len);
    return *errp != LK_OK;
}

/* The registry's CA certificates, parsed. */
static int crl_add_cb(void *arg, const lk_reg_crl *c, const uint8_t issuer_key[32],
                      const char *issuer_chain)
{
    lk_err *errp = ((void **)arg)[1];
    (void)issuer_chain;
    *errp = lk_reg__cas_add_crl(((void **)arg)[0], c->pem, strlen(c->pem), issuer_key);
    return *errp != LK_OK;
}

lk_err lk_reg__load_cas(lk_registry *reg, int64_t rid, lk_reg_cas **out, char *why,
                        size_t why_size)
{
    lk_reg_cas *cas = NULL;
    lk_err err2 = LK_OK, err = lk_reg__cas_new(&cas);
    void *args[2];

    *out = NULL;
    if (err != LK_OK)
        return failf(why, why_size, err, "out of memory");
    args[0] = cas;
    args[1] = &err2;
    err = reg->ops->cert_list(reg->be, rid, cas_add_cb, args);
    if (err != LK_OK) {
        lk_reg__cas_free(cas);
        return lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err2 != LK_OK) {
        lk_reg__cas_free(cas);
        return failf(why, why_size, err2, "a stored registry CA certificate cannot be read");
    }
    /* schema 7: its CRLs, checked against every certificate path */
    err = reg->ops->crl_list(reg->be, rid, crl_add_cb, args);
    if (err != LK_OK) {
        lk_reg__cas_free(cas);
        return lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err2 != LK_OK) {
        lk_reg__cas_free(cas);
        return failf(why, why_size, err2, "a stored CRL cannot be read");
    }
    *out = cas;
    return LK_OK;
}

/* ------------------------------------------------------------------ */
/* The audit record (lk_reg_audit.h)                                   */
/*
 * lk_reg__leave(), the one place every write transaction commits, calls
 * lk_reg__audit_commit() before COMMIT, so a change made through a handle
 * with an actor cannot commit without its row, and a row cannot outlive a
 * rolled-back change. The actor is the handle's, set by whoever speaks for
 * a person: latchkeyd per request (one thread, one handle: set before the
 * handler runs, cleared after it returns), the tool once per run. A change
 * made in several transactions (an import in batches) leaves one row per
 * transaction.
 */

/* Printable ASCII of s (else '?'), cut to size - 1 bytes. */
static void keep(char *dst, size_t size, const char *s)
{
    size_t i = 0;
    if (s != NULL)
        for (; s[i] != '\0' && i + 1 < size; i++)
            dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    dst[i] = '\0';
}

lk_err lk_registry_set_actor(lk_registry *reg, const char *actor, const char *via)
{
    if (reg == NULL)
        return LK_ERR_ARG;
    if (actor == NULL || actor[0] == '\0') {
        reg->actor[0] = reg->via[0] = '\0';
        return LK_OK;
    }
    if (via == NULL || (strcmp(via, "console") != 0 && strcmp(via, "api") != 0 &&
                        strcmp(via, "tool") != 0))
        return LK_ERR_ARG;
    keep(reg->actor, sizeof reg->actor, actor);
    keep(reg->via, sizeof reg->via, via);
    return LK_OK;
}

void lk_registry_set_action(lk_registry *reg, const char *action, const char *resource,
                            const char *detail)
{
    if (reg == NULL)
        return;
    keep(reg->action, sizeof reg->action, action);
    keep(reg->resource, sizeof reg->resource, resource);
    keep(reg->detail, sizeof reg->detail, detail);
}

/* The project a resource path names ("projects/P/..."), or "". */
static void project_of(const char *resource, char *out, size_t size)
{
    const char *p, *e;
    out[0] = '\0';
    if (strncmp(resource, "projects/", 9) != 0)
        return;
    p = resource + 9;
    e = strchr(p, '/');
    if (e == NULL)
        e = p + strlen(p);
    if ((size_t)(e - p) < size && lk_project_valid(p, (size_t)(e - p))) {
        memcpy(out, p, (size_t)(e - p));
        out[e - p] = '\0';
    }
}

static lk_err append(lk_registry *reg, const char *outcome, int64_t *id)
{
    char project[LK_PROJECT_MAX + 1];
    lk_reg_audit_record r;
    project_of(reg->resource, project, sizeof project);
    memset(&r, 0, sizeof r);
    r.time = lk_reg__now(reg);
    r.actor = reg->actor;
    r.via = reg->via;
    r.action = reg->action[0] ? reg->action : "unknown";
    r.resource = reg->resource;
    r.project = project;
    r.detail = reg->detail;
    r.outcome = outcome;
    return reg->ops->audit_append(reg->be, &r, id);
}

lk_err lk_reg__audit_commit(lk_registry *reg, char *why, size_t why_size)
{
    int64_t id = 0;
    lk_err err;
    int skip = reg->audit_skip;
    reg->audit_skip = 0;
    /* no actor (the broker, a reader), bookkeeping, or nothing changed */
    if (skip || reg->actor[0] == '\0' || reg->ops->total_changes(reg->be) == reg->changes_at_enter)
        return LK_OK;
    if ((err = append(reg, "ok", &id)) == LK_OK && id % LK_REG_AUDIT_PRUNE_EVERY == 0)
        err = reg->ops->audit_prune(reg->be, id - LK_REG_AUDIT_KEPT,
                                    lk_reg__now(reg) - (int64_t)LK_REG_AUDIT_DAYS * 86400);
    if (err != LK_OK)
        return lk_reg__be_fail(reg, err, why, why_size);
    return LK_OK;
}

/* ------------------------------------------------------------------ */
/* Open, close                                                         */

lk_err lk_registry_open(const char *url, unsigned flags, lk_registry **out, char *why,
                        size_t why_size)
{
    const lk_reg_store *ops = NULL;
    const char *loc = url;
    lk_registry *reg;
    lk_err err;
    size_t i;

    if (out != NULL)
        *out = NULL;
    if (url == NULL || out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry database given");
    if ((flags & ~(LK_REG_CREATE | LK_REG_READONLY | LK_REG_NOWRITE)) != 0 ||
        ((flags & LK_REG_CREATE) && (flags & (LK_REG_READONLY | LK_REG_NOWRITE))))
        return failf(why, why_size, LK_ERR_ARG,
                     "flags: LK_REG_CREATE, LK_REG_READONLY or LK_REG_NOWRITE (CREATE with "
                     "neither of the others)");
    if (strncmp(url, "postgres:", 9) == 0 || strncmp(url, "postgresql:", 11) == 0)
        return failf(why, why_size, LK_ERR_UNSUPPORTED,
                     "this latchkey has no PostgreSQL backend; use sqlite:PATH or a path");
    for (i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        size_t n = strlen(backends[i]->scheme);
        if (strncmp(url, backends[i]->scheme, n) == 0 && url[n] == ':') {
            ops = backends[i];
            loc = url + n + 1;
            if (loc[0] == '/' && loc[1] == '/')
                loc += 2; /* sqlite:///abs/path */
            break;
        }
    }
    if (ops == NULL)
        ops = &lk_reg_sqlite_backend; /* a plain path */
    if (loc[0] == '\0')
        return failf(why, why_size, LK_ERR_ARG, "the registry database path is empty");

    reg = calloc(1, sizeof *reg);
    if (reg == NULL)
        return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
    reg->ops = ops;
    reg->flags = flags;
    reg->busy_ms = 5000;
    reg->changes_kept = LK_REG_CHANGES_KEPT;
    err = lk_reg__checker_new(&reg->ck);
    if (err != LK_OK) {
        free(reg);
        return failf(why, why_size, err, "cannot set up OpenSSL for credential checks");
    }
    err = ops->open(loc, flags, &reg->be, why, why_size);
    if (err == LK_OK) {
        err = ops->data_version(reg->be, &reg->poll_dv);
        if (err != LK_OK)
            (void)lk_reg__be_fail(reg, err, why, why_size);
    }
    if (err != LK_OK) {
        if (reg->be != NULL)
            ops->close(reg->be);
        lk_reg__checker_free(reg->ck);
        free(reg);
        return err;
    }
    *out = reg;
    return LK_OK;
}

void lk_registry_close(lk_registry *reg)
{
    if (reg == NULL)
        return;
    if (reg->importing) { /* lk_registry_import_abort */
        reg->ops->rollback(reg->be);
        lk_reg__import_end(reg);
    }
    reg->ops->close(reg->be);
    lk_reg__checked_free(reg->checked);
    lk_reg__checker_free(reg->ck);
    free(reg);
}

void lk_registry_set_busy_timeout(lk_registry *reg, unsigned ms)
{
    if (reg == NULL)
        return;
    reg->busy_ms = ms;
    reg->ops->set_busy_timeout(reg->be, ms);
}

void lk_registry__set_clock(lk_registry *reg, int64_t (*now)(void *arg), void *arg)
{
    reg->clock = now;
    reg->clock_arg = arg;
}

void lk_registry__set_changes_kept(lk_registry *reg, int64_t kept)
{
    reg->changes_kept = kept < 1 ? 1 : kept;
}

/* Forget an open import (its transaction is already ended). */
void lk_reg__import_end(lk_registry *reg)
{
    lk_reg__cas_free(reg->import_cas);
    reg->import_cas = NULL;
    reg->importing = 0;
    reg->import_failed = LK_OK;
    reg->import_rid = 0;
    reg->import_name[0] = '\0';
    reg->import_checked = 0;
    reg->staged = reg->stage_open = 0;
    reg->stage_rid = 0;
    reg->stage_n = 0;
    /* what import_check proved served this import */
    lk_reg__checked_free(reg->checked);
    reg->checked = NULL;
}
