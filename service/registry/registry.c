/*
 * registry.c — the device registry's public API (lk_registry.h): every rule
 * and limit of docs/iotcore.md §Registry is checked here, in one
 * place, before anything reaches the storage backend (backend.h), which only
 * stores rows.
 *
 * The shape of every operation:
 *   1. check the arguments that need no database (names, sizes, formats);
 *   2. enter(): refuse re-entry and writes on a read-only handle, begin a
 *      transaction (a write transaction takes the write lock up front);
 *   3. look things up and check the rules that need the database (the
 *      registry exists, CA certificates, version_to_update, counts);
 *   4. write, appending to the change feed in the same transaction;
 *   5. leave(): commit, or roll back on any failure — so a refusal at any
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
 *    activity times, state reports, config acks, registry creation or CA
 *    certificate changes (none of them changes who may connect). Schema 2
 *    adds LK_CHANGE_COMMAND (a command queued, with its device's num_id)
 *    and LK_CHANGE_BACKEND (a backend application created or deleted,
 *    num_id 0); command outcomes are not in the feed. The newest
 *    LK_REG_CHANGES_KEPT (100,000) changes are kept; a follower that falls
 *    further behind gets one LK_CHANGE_RESYNC.
 *  - Activity times and config acks only move forward.
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
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h> /* OPENSSL_free, for the DER certs.c returns */

#include "backend.h"
#include "internal.h"
#include "latchkey/lk_util.h"

#define NOTIFICATION_JSON_MAX (64u * 1024u)
#define EVENT_NOTIFICATIONS_MAX 10u

/* Transaction kinds; TX_BROKER is a write a LK_REG_READONLY handle may do. */
enum { TX_READ = 0, TX_WRITE = 1, TX_BROKER = 2 };

/* What an open import adds. */
enum { IMPORT_DEVICES = 1, IMPORT_REGISTRIES = 2 };

struct lk_registry {
    const lk_reg_store *ops;
    lk_reg_be *be;
    unsigned flags;
    unsigned busy_ms;
    int busy;                   /* an operation (or its callback) is running */
    lk_reg_checker *ck;
    int64_t (*clock)(void *arg);
    void *clock_arg;
    int64_t changes_kept;

    int appended;               /* this transaction appended to the change feed */
    uint64_t own_commits;       /* write transactions this handle committed */
    uint64_t poll_dv, poll_own; /* what lk_registry_poll saw last */
    int feed_valid;             /* lk_registry_changes' shortcut: */
    uint64_t feed_dv, feed_own; /*   nothing new while these hold */
    int64_t feed_head;

    int importing;              /* IMPORT_DEVICES or IMPORT_REGISTRIES while one is open */
    lk_err import_failed;       /* the database ended the import's transaction */
    int64_t import_rid;
    lk_reg_cas *import_cas;
    char import_name[400];
};

static const lk_reg_store *const backends[] = {&lk_reg_sqlite_backend};

/* ------------------------------------------------------------------ */
/* Helpers: reasons, time, names                                       */

__attribute__((format(printf, 4, 5))) static lk_err failf(char *why, size_t why_size, lk_err err,
                                                          const char *fmt, ...)
{
    va_list ap;
    if (why != NULL && why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

/* A storage-level failure: the backend's own message. */
static lk_err be_fail(lk_registry *reg, lk_err err, char *why, size_t why_size)
{
    if (err == LK_ERR_REG_BUSY)
        return failf(why, why_size, err,
                     "the registry database stayed locked by another writer for %u ms (%s)",
                     reg->busy_ms, reg->ops->last_error(reg->be));
    if (err == LK_ERR_NOMEM)
        return failf(why, why_size, err, "out of memory");
    return failf(why, why_size, err, "registry database: %s", reg->ops->last_error(reg->be));
}

static int64_t reg_now(const lk_registry *reg)
{
    return reg->clock != NULL ? reg->clock(reg->clock_arg) : (int64_t)time(NULL);
}

/* s for a message: printable ASCII only, at most ~60 characters. */
static const char *shown(const char *s, char *buf, size_t size)
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

static const char *reg_path(const lk_reg_name *n, char *buf, size_t size)
{
    snprintf(buf, size, "projects/%s/locations/%s/registries/%s", n->project, n->location,
             n->registry);
    return buf;
}

static lk_err check_name(const lk_reg_name *n, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    if (n == NULL || n->project == NULL || n->location == NULL || n->registry == NULL)
        return failf(why, why_size, LK_ERR_ARG,
                     "a registry is named by a project, a location and a registry id");
    if (!lk_project_valid(n->project, strlen(n->project)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "project id '%s' is invalid: a project id is %u to %u characters, a "
                     "lowercase letter followed by lowercase letters, digits or hyphens, not "
                     "ending with a hyphen", shown(n->project, b, sizeof b), LK_PROJECT_MIN,
                     LK_PROJECT_MAX);
    if (!lk_location_valid(n->location, strlen(n->location)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "location '%s' is invalid: a location is 1 to %u characters, a lowercase "
                     "letter followed by lowercase letters, digits or hyphens",
                     shown(n->location, b, sizeof b), LK_LOCATION_MAX);
    w = lk_id_why("registry id", n->registry, strlen(n->registry), r, sizeof r);
    if (w != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID, "registry id '%s' is invalid: %s",
                     shown(n->registry, b, sizeof b), w);
    return LK_OK;
}

static lk_err check_device_id(const char *id, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    if (id == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a device id is required");
    w = lk_id_why("device id", id, strlen(id), r, sizeof r);
    if (w != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID, "device id '%s' is invalid: %s",
                     shown(id, b, sizeof b), w);
    return LK_OK;
}

static lk_err check_state(const char *what, lk_reg_state s, char *why, size_t why_size)
{
    if (s != LK_REG_STATE_UNSPECIFIED && s != LK_REG_STATE_ENABLED && s != LK_REG_STATE_DISABLED)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s state %d is invalid: use UNSPECIFIED (0), ENABLED (1) or DISABLED (2)",
                     what, (int)s);
    return LK_OK;
}

/* Well-formed UTF-8 without NUL. */
static int utf8_text(const unsigned char *s, size_t n)
{
    return lk_utf8_valid(s, n) && memchr(s, '\0', n) == NULL;
}

static lk_err check_metadata(const lk_reg_metadata *m, unsigned n, char *why, size_t why_size)
{
    size_t total = 0;
    unsigned i, j;
    char b[80];

    if (n > 0 && m == NULL)
        return failf(why, why_size, LK_ERR_ARG, "metadata count %u without metadata", n);
    if (n > LK_METADATA_PAIRS_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "%u metadata pairs given; a device has at most %u", n,
                     LK_METADATA_PAIRS_MAX);
    for (i = 0; i < n; i++) {
        size_t klen;
        if (m[i].key == NULL || (m[i].value == NULL && m[i].value_len > 0))
            return failf(why, why_size, LK_ERR_ARG, "metadata pair %u has no key or value", i);
        klen = strlen(m[i].key);
        if (!lk_metadata_key_valid(m[i].key, klen))
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "metadata key '%s' is invalid: a metadata key is 1 to %u characters, "
                         "a letter followed by letters, digits or - . _ + ~ %%",
                         shown(m[i].key, b, sizeof b), LK_METADATA_KEY_MAX);
        if (m[i].value_len > LK_METADATA_VALUE_MAX)
            return failf(why, why_size, LK_ERR_REG_LIMIT,
                         "metadata value of '%s' is %zu bytes; the limit is %u", m[i].key,
                         m[i].value_len, LK_METADATA_VALUE_MAX);
        if (!utf8_text((const unsigned char *)m[i].value, m[i].value_len))
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "metadata value of '%s' is not text: a metadata value is UTF-8 "
                         "without NUL bytes", m[i].key);
        for (j = 0; j < i; j++)
            if (strcmp(m[j].key, m[i].key) == 0)
                return failf(why, why_size, LK_ERR_REG_INVALID,
                             "metadata key '%s' is given twice; keys are unique", m[i].key);
        total += klen + m[i].value_len;
    }
    if (total >= LK_METADATA_TOTAL_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "metadata keys and values total %zu bytes; the total must be under %u",
                     total, LK_METADATA_TOTAL_MAX);
    return LK_OK;
}

static lk_err check_config_size(const void *data, size_t len, char *why, size_t why_size)
{
    if (data == NULL && len > 0)
        return failf(why, why_size, LK_ERR_ARG, "config length %zu without data", len);
    if (len > LK_CONFIG_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "config is %zu bytes; the limit is %u",
                     len, LK_CONFIG_MAX);
    return LK_OK;
}

/* Everything about a device spec that needs no database. creds_too: the
 * credential count (the credentials themselves are checked in the
 * transaction, against the registry's CA certificates). */
static lk_err check_spec(const lk_reg_device_spec *spec, unsigned mask, char *why,
                         size_t why_size)
{
    lk_err err;
    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no device given");
    if ((err = check_device_id(spec->id, why, why_size)) != LK_OK)
        return err;
    if (mask & LK_REG_SET_CREDS) {
        if (spec->ncreds > LK_DEVICE_CREDENTIALS_MAX)
            return failf(why, why_size, LK_ERR_REG_LIMIT,
                         "%u credentials given; a device has at most %u credentials",
                         spec->ncreds, LK_DEVICE_CREDENTIALS_MAX);
        if (spec->ncreds > 0 && spec->creds == NULL)
            return failf(why, why_size, LK_ERR_ARG, "credential count %u without credentials",
                         spec->ncreds);
    }
    if ((mask & LK_REG_SET_METADATA) &&
        (err = check_metadata(spec->metadata, spec->nmetadata, why, why_size)) != LK_OK)
        return err;
    return LK_OK;
}

static lk_err check_json(const char *what, const char *text, int array, char *why,
                         size_t why_size)
{
    json_t *j, *item;
    json_error_t jerr;
    size_t i, len = strlen(text), n;
    lk_err err = LK_OK;

    if (len > NOTIFICATION_JSON_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "%s is %zu bytes; the limit is %u", what,
                     len, NOTIFICATION_JSON_MAX);
    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s is not valid JSON (line %d, column %d)", what, jerr.line, jerr.column);
    if (array && (!json_is_array(j) || json_array_size(j) > EVENT_NOTIFICATIONS_MAX)) {
        err = failf(why, why_size, LK_ERR_REG_INVALID,
                    "%s must be a JSON array of at most %u objects", what,
                    EVENT_NOTIFICATIONS_MAX);
        goto exit;
    }
    if (!array && !json_is_object(j)) {
        err = failf(why, why_size, LK_ERR_REG_INVALID, "%s must be a JSON object", what);
        goto exit;
    }
    n = array ? json_array_size(j) : 1;
    for (i = 0; i < n; i++) {
        const char *key;
        json_t *v;
        item = array ? json_array_get(j, i) : j;
        if (!json_is_object(item)) {
            err = failf(why, why_size, LK_ERR_REG_INVALID,
                        "%s[%zu] must be a JSON object", what, i);
            goto exit;
        }
        json_object_foreach(item, key, v) {
            int known = strcmp(key, "pubsubTopicName") == 0 ||
                        (array && strcmp(key, "subfolderMatches") == 0);
            char b[80];
            if (!known) {
                err = failf(why, why_size, LK_ERR_REG_INVALID,
                            "%s has member '%s'; allowed: pubsubTopicName%s", what,
                            shown(key, b, sizeof b), array ? ", subfolderMatches" : "");
                goto exit;
            }
            if (!json_is_string(v)) {
                err = failf(why, why_size, LK_ERR_REG_INVALID, "%s: %s must be a string", what,
                            key);
                goto exit;
            }
        }
    }
exit:
    json_decref(j);
    return err;
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */

static lk_err guard(lk_registry *reg, char *why, size_t why_size)
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

static lk_err enter(lk_registry *reg, int tx, char *why, size_t why_size)
{
    lk_err err = guard(reg, why, why_size);
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
        return be_fail(reg, err, why, why_size);
    reg->busy = 1;
    reg->appended = 0;
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

/* End the transaction begun by enter(): commit when err is LK_OK, else roll
 * back. Returns err, or the commit's failure. */
static lk_err leave(lk_registry *reg, lk_err err, int tx, char *why, size_t why_size)
{
    if (err == LK_OK && tx != TX_READ) {
        err = prune_feed(reg);
        if (err != LK_OK)
            (void)be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK) {
        err = reg->ops->commit(reg->be);
        if (err != LK_OK)
            (void)be_fail(reg, err, why, why_size);
        else if (tx != TX_READ)
            reg->own_commits++;
    }
    if (err != LK_OK)
        reg->ops->rollback(reg->be);
    reg->busy = 0;
    return err;
}

static lk_err append_change(lk_registry *reg, lk_reg_change_kind kind, uint64_t num_id,
                            char *why, size_t why_size)
{
    lk_err err = reg->ops->change_append(reg->be, kind, num_id, reg_now(reg));
    if (err != LK_OK)
        return be_fail(reg, err, why, why_size);
    reg->appended = 1;
    return LK_OK;
}

static lk_err find_registry(lk_registry *reg, const lk_reg_name *name, int64_t *rid, char *why,
                            size_t why_size)
{
    char p[400];
    lk_err err = reg->ops->registry_find(reg->be, name, rid);
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "%s does not exist", reg_path(name, p, sizeof p));
    if (err != LK_OK)
        return be_fail(reg, err, why, why_size);
    return LK_OK;
}

static lk_err find_device(lk_registry *reg, const lk_reg_name *name, int64_t rid, const char *id,
                          uint64_t *num_id, int64_t *config_version, char *why, size_t why_size)
{
    char p[400];
    lk_err err = reg->ops->device_find(reg->be, rid, id, num_id, config_version);
    if (err == LK_ERR_REG_NOT_FOUND)
        return failf(why, why_size, err, "device '%s' does not exist in %s", id,
                     reg_path(name, p, sizeof p));
    if (err != LK_OK)
        return be_fail(reg, err, why, why_size);
    return LK_OK;
}

/* Registry and device in one go (inside a transaction). */
static lk_err find_both(lk_registry *reg, const lk_reg_name *name, const char *id, int64_t *rid,
                        uint64_t *num_id, int64_t *config_version, char *why, size_t why_size)
{
    lk_err err = find_registry(reg, name, rid, why, why_size);
    if (err == LK_OK)
        err = find_device(reg, name, *rid, id, num_id, config_version, why, why_size);
    return err;
}

/* Check name and device id, enter a transaction of kind tx and find the
 * device in it. On failure the transaction is already left (rolled back). */
static lk_err enter_device(lk_registry *reg, int tx, const lk_reg_name *name, const char *id,
                           int64_t *rid, uint64_t *num_id, char *why, size_t why_size)
{
    lk_err err;
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_device_id(id, why, why_size)) != LK_OK ||
        (err = enter(reg, tx, why, why_size)) != LK_OK)
        return err;
    err = find_both(reg, name, id, rid, num_id, NULL, why, why_size);
    return err != LK_OK ? leave(reg, err, tx, why, why_size) : LK_OK;
}

static int cas_add_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    lk_err *errp = ((void **)arg)[1];
    (void)index;
    *errp = lk_reg__cas_add(((void **)arg)[0], pem, len);
    return *errp != LK_OK;
}

/* The registry's CA certificates, parsed. */
static lk_err load_cas(lk_registry *reg, int64_t rid, lk_reg_cas **out, char *why,
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
        return be_fail(reg, err, why, why_size);
    }
    if (err2 != LK_OK) {
        lk_reg__cas_free(cas);
        return failf(why, why_size, err2, "a stored registry CA certificate cannot be read");
    }
    *out = cas;
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
            (void)be_fail(reg, err, why, why_size);
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
    if (reg->importing)
        lk_registry_import_abort(reg);
    reg->ops->close(reg->be);
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

/* ------------------------------------------------------------------ */
/* Freeing                                                             */

void lk_reg_registry_free(lk_reg_registry *r)
{
    if (r == NULL)
        return;
    free(r->project);
    free(r->location);
    free(r->id);
    free(r->event_notification_json);
    free(r->state_notification_json);
    memset(r, 0, sizeof *r);
}

void lk_reg_cert_free(lk_reg_cert *c)
{
    if (c == NULL)
        return;
    free(c->pem);
    free(c->subject);
    free(c->issuer);
    free(c->key_type);
    memset(c, 0, sizeof *c);
}

static void creds_free(lk_reg_credential *c, unsigned n)
{
    unsigned i;
    for (i = 0; i < n; i++) {
        free(c[i].pem);
        c[i].pem = NULL;
    }
}

void lk_reg_device_free(lk_reg_device *d)
{
    unsigned i;
    if (d == NULL)
        return;
    free(d->id);
    free(d->project);
    free(d->location);
    free(d->registry);
    creds_free(d->creds, d->ncreds);
    for (i = 0; i < d->nmetadata; i++) {
        free(d->metadata[i].key);
        free(d->metadata[i].value);
    }
    free(d->metadata);
    free(d->last_error_status);
    free(d->last_accessed_gateway_id);
    memset(d, 0, sizeof *d);
}

void lk_reg_config_free(lk_reg_config *c)
{
    if (c == NULL)
        return;
    free(c->data);
    memset(c, 0, sizeof *c);
}

void lk_reg_state_entry_free(lk_reg_state_entry *s)
{
    if (s == NULL)
        return;
    free(s->data);
    memset(s, 0, sizeof *s);
}

void lk_reg_auth_free(lk_reg_auth *a)
{
    if (a == NULL)
        return;
    creds_free(a->creds, a->ncreds);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------ */
/* Registries                                                          */

static lk_err check_log_level(const char *what, lk_reg_log_level l, char *why, size_t why_size)
{
    if (l != LK_LOG_LEVEL_UNSPECIFIED && l != LK_LOG_LEVEL_NONE && l != LK_LOG_LEVEL_ERROR &&
        l != LK_LOG_LEVEL_INFO && l != LK_LOG_LEVEL_DEBUG)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s log level %d is invalid: use UNSPECIFIED (0), NONE (10), ERROR (20), "
                     "INFO (30) or DEBUG (40)", what, (int)l);
    return LK_OK;
}

/* Everything about a registry spec that needs no database: states, log
 * level, notification JSON, and each CA certificate (as add_cert: the CA
 * rules at now, no two alike, at most LK_REGISTRY_CERTS_MAX). */
static lk_err check_registry_spec(lk_registry *reg, const lk_reg_registry_spec *spec, char *why,
                                  size_t why_size)
{
    unsigned char *der[LK_REGISTRY_CERTS_MAX];
    size_t dl[LK_REGISTRY_CERTS_MAX];
    unsigned i, j, n = 0;
    lk_err err;

    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no registry given");
    if ((err = check_state("mqtt", spec->mqtt, why, why_size)) != LK_OK ||
        (err = check_state("http", spec->http, why, why_size)) != LK_OK ||
        (err = check_log_level("registry", spec->log_level, why, why_size)) != LK_OK)
        return err;
    if (spec->event_notification_json != NULL && spec->event_notification_json[0] != '\0' &&
        (err = check_json("eventNotificationConfigs", spec->event_notification_json, 1, why,
                          why_size)) != LK_OK)
        return err;
    if (spec->state_notification_json != NULL && spec->state_notification_json[0] != '\0' &&
        (err = check_json("stateNotificationConfig", spec->state_notification_json, 0, why,
                          why_size)) != LK_OK)
        return err;
    if (spec->ncas > LK_REGISTRY_CERTS_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "%u CA certificates given; a registry has at most %u", spec->ncas,
                     LK_REGISTRY_CERTS_MAX);
    if (spec->ncas > 0 && (spec->ca_pems == NULL || spec->ca_lens == NULL))
        return failf(why, why_size, LK_ERR_ARG, "CA certificate count %u without certificates",
                     spec->ncas);
    for (i = 0; i < spec->ncas && err == LK_OK; i++) {
        char w[400] = "";
        err = spec->ca_pems[i] == NULL
                  ? LK_ERR_ARG
                  : lk_reg__ca_check(spec->ca_pems[i], spec->ca_lens[i], reg_now(reg), &der[n],
                                     &dl[n], w, sizeof w);
        if (err != LK_OK) {
            (void)failf(why, why_size, err, "CA certificate %u: %s", i,
                        w[0] != '\0' ? w : "missing");
            break;
        }
        n++;
        for (j = 0; j + 1 < n; j++)
            if (dl[j] == dl[n - 1] && memcmp(der[j], der[n - 1], dl[j]) == 0) {
                err = failf(why, why_size, LK_ERR_REG_INVALID,
                            "CA certificates %u and %u are the same certificate", j, i);
                break;
            }
    }
    for (j = 0; j < n; j++)
        OPENSSL_free(der[j]);
    return err;
}

/* Create the registry of a checked spec inside the current write
 * transaction: LK_ERR_REG_EXISTS first. */
static lk_err insert_registry(lk_registry *reg, const lk_reg_name *name,
                              const lk_reg_registry_spec *spec, char *why, size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    char p[400];
    unsigned i;
    lk_err err = reg->ops->registry_find(reg->be, name, &rid);

    if (err == LK_OK)
        return failf(why, why_size, LK_ERR_REG_EXISTS, "%s already exists",
                     reg_path(name, p, sizeof p));
    if (err != LK_ERR_REG_NOT_FOUND)
        return be_fail(reg, err, why, why_size);
    memset(&r, 0, sizeof r);
    r.project = (char *)name->project;
    r.location = (char *)name->location;
    r.id = (char *)name->registry;
    r.mqtt = spec->mqtt == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : spec->mqtt;
    r.http = spec->http == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : spec->http;
    if (spec->event_notification_json != NULL && spec->event_notification_json[0] != '\0')
        r.event_notification_json = (char *)spec->event_notification_json;
    if (spec->state_notification_json != NULL && spec->state_notification_json[0] != '\0')
        r.state_notification_json = (char *)spec->state_notification_json;
    r.log_level = spec->log_level;
    r.created = reg_now(reg);
    err = reg->ops->registry_insert(reg->be, &r, &rid);
    if (err == LK_ERR_REG_EXISTS)
        return failf(why, why_size, err, "%s already exists", reg_path(name, p, sizeof p));
    for (i = 0; err == LK_OK && i < spec->ncas; i++)
        err = reg->ops->cert_insert(reg->be, rid, spec->ca_pems[i], spec->ca_lens[i]);
    return err != LK_OK ? be_fail(reg, err, why, why_size) : LK_OK;
}

lk_err lk_registry_create_registry_full(lk_registry *reg, const lk_reg_name *name,
                                        const lk_reg_registry_spec *spec, char *why,
                                        size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_registry_spec(reg, spec, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = insert_registry(reg, name, spec, why, why_size);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_create_registry(lk_registry *reg, const lk_reg_name *name, lk_reg_state mqtt,
                                   lk_reg_state http, char *why, size_t why_size)
{
    lk_reg_registry_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.mqtt = mqtt;
    spec.http = http;
    return lk_registry_create_registry_full(reg, name, &spec, why, why_size);
}

lk_err lk_registry_get_registry(lk_registry *reg, const lk_reg_name *name, lk_reg_registry *out,
                                char *why, size_t why_size)
{
    int64_t rid;
    lk_err err;

    if (out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no output given");
    memset(out, 0, sizeof *out);
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->registry_get(reg->be, rid, out)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    err = leave(reg, err, TX_READ, why, why_size);
    if (err != LK_OK)
        lk_reg_registry_free(out);
    return err;
}

lk_err lk_registry_list_registries(lk_registry *reg, const char *project, const char *location,
                                   int (*cb)(void *arg, const lk_reg_registry *r), void *arg,
                                   char *why, size_t why_size)
{
    char b[80];
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if (project != NULL && !lk_project_valid(project, strlen(project)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "project id '%s' is invalid: a project id is %u to %u characters, a "
                     "lowercase letter followed by lowercase letters, digits or hyphens, not "
                     "ending with a hyphen", shown(project, b, sizeof b), LK_PROJECT_MIN,
                     LK_PROJECT_MAX);
    if (location != NULL && !lk_location_valid(location, strlen(location)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "location '%s' is invalid: a location is 1 to %u characters, a lowercase "
                     "letter followed by lowercase letters, digits or hyphens",
                     shown(location, b, sizeof b), LK_LOCATION_MAX);
    if ((err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->registry_list(reg->be, project, location, cb, arg);
    if (err != LK_OK)
        err = be_fail(reg, err, why, why_size);
    return leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_update_registry(lk_registry *reg, const lk_reg_name *name, lk_reg_state mqtt,
                                   lk_reg_state http, const char *event_notification_json,
                                   const char *state_notification_json, char *why,
                                   size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    lk_err err;

    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_state("mqtt", mqtt, why, why_size)) != LK_OK ||
        (err = check_state("http", http, why, why_size)) != LK_OK)
        return err;
    if (event_notification_json != NULL && event_notification_json[0] != '\0' &&
        (err = check_json("eventNotificationConfigs", event_notification_json, 1, why,
                          why_size)) != LK_OK)
        return err;
    if (state_notification_json != NULL && state_notification_json[0] != '\0' &&
        (err = check_json("stateNotificationConfig", state_notification_json, 0, why,
                          why_size)) != LK_OK)
        return err;
    if ((err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    memset(&r, 0, sizeof r);
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->registry_get(reg->be, rid, &r)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK) {
        if (mqtt != LK_REG_STATE_UNSPECIFIED)
            r.mqtt = mqtt;
        if (http != LK_REG_STATE_UNSPECIFIED)
            r.http = http;
        if (event_notification_json != NULL) {
            free(r.event_notification_json);
            r.event_notification_json =
                event_notification_json[0] != '\0' ? strdup(event_notification_json) : NULL;
            if (event_notification_json[0] != '\0' && r.event_notification_json == NULL)
                err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        }
        if (state_notification_json != NULL) {
            free(r.state_notification_json);
            r.state_notification_json =
                state_notification_json[0] != '\0' ? strdup(state_notification_json) : NULL;
            if (state_notification_json[0] != '\0' && r.state_notification_json == NULL)
                err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        }
    }
    if (err == LK_OK && (err = reg->ops->registry_update(reg->be, rid, &r)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_REGISTRY, 0, why, why_size);
    lk_reg_registry_free(&r);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_delete_registry(lk_registry *reg, const lk_reg_name *name, char *why,
                                   size_t why_size)
{
    lk_reg_registry r;
    int64_t rid;
    char p[400];
    lk_err err;

    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    memset(&r, 0, sizeof r);
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->registry_get(reg->be, rid, &r)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && r.ndevices > 0)
        err = failf(why, why_size, LK_ERR_REG_NOT_EMPTY,
                    "%s still has %llu device%s; delete them first (a registry must be empty "
                    "to be deleted)", reg_path(name, p, sizeof p), (unsigned long long)r.ndevices,
                    r.ndevices == 1 ? "" : "s");
    if (err == LK_OK && (err = reg->ops->registry_delete(reg->be, rid)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_REGISTRY, 0, why, why_size);
    lk_reg_registry_free(&r);
    return leave(reg, err, TX_WRITE, why, why_size);
}

/* ------------------------------------------------------------------ */
/* Registry CA certificates                                            */

struct dup_scan {
    const unsigned char *der;
    size_t der_len;
    unsigned count;
    int dup;          /* index + 1 of an identical certificate */
    lk_err err;
};

static int dup_scan_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    struct dup_scan *ds = arg;
    unsigned char *der = NULL;
    size_t dl = 0;
    ds->count = index + 1;
    ds->err = lk_reg__cert_der(pem, len, &der, &dl);
    if (ds->err != LK_OK)
        return 1;
    if (dl == ds->der_len && memcmp(der, ds->der, dl) == 0 && ds->dup == 0)
        ds->dup = (int)index + 1;
    OPENSSL_free(der);
    return 0;
}

lk_err lk_registry_add_cert(lk_registry *reg, const lk_reg_name *name, const char *pem,
                            size_t pem_len, unsigned *index, char *why, size_t why_size)
{
    struct dup_scan ds;
    unsigned char *der = NULL;
    size_t dl = 0;
    int64_t rid;
    char p[400];
    lk_err err;

    if (index != NULL)
        *index = 0;
    if ((err = check_name(name, why, why_size)) != LK_OK)
        return err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__ca_check(pem, pem_len, reg_now(reg), &der, &dl, why, why_size)) != LK_OK)
        return err;
    if ((err = enter(reg, TX_WRITE, why, why_size)) != LK_OK) {
        OPENSSL_free(der);
        return err;
    }
    memset(&ds, 0, sizeof ds);
    ds.der = der;
    ds.der_len = dl;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->cert_list(reg->be, rid, dup_scan_cb, &ds)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && ds.err != LK_OK)
        err = failf(why, why_size, ds.err, "a stored registry CA certificate cannot be read");
    if (err == LK_OK && ds.dup != 0)
        err = failf(why, why_size, LK_ERR_REG_EXISTS,
                    "this certificate is already registry CA certificate %d of %s", ds.dup - 1,
                    reg_path(name, p, sizeof p));
    if (err == LK_OK && ds.count >= LK_REGISTRY_CERTS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "%s already has %u CA certificates; a registry has at most %u",
                    reg_path(name, p, sizeof p), ds.count, LK_REGISTRY_CERTS_MAX);
    if (err == LK_OK && (err = reg->ops->cert_insert(reg->be, rid, pem, pem_len)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    OPENSSL_free(der);
    err = leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK && index != NULL)
        *index = ds.count;
    return err;
}

struct cert_list_ctx {
    int (*cb)(void *arg, const lk_reg_cert *c);
    void *arg;
    lk_err err;
};

static int cert_list_cb(void *arg, unsigned index, const char *pem, size_t len)
{
    struct cert_list_ctx *ctx = arg;
    lk_reg_cert c;
    int stop;
    memset(&c, 0, sizeof c);
    c.index = index;
    ctx->err = lk_reg__cert_details(pem, len, &c);
    if (ctx->err != LK_OK) {
        lk_reg_cert_free(&c);
        return 1;
    }
    stop = ctx->cb(ctx->arg, &c);
    lk_reg_cert_free(&c);
    return stop;
}

lk_err lk_registry_list_certs(lk_registry *reg, const lk_reg_name *name,
                              int (*cb)(void *arg, const lk_reg_cert *c), void *arg, char *why,
                              size_t why_size)
{
    struct cert_list_ctx ctx = {cb, arg, LK_OK};
    int64_t rid;
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->cert_list(reg->be, rid, cert_list_cb, &ctx)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && ctx.err != LK_OK)
        err = failf(why, why_size, ctx.err, "a stored registry CA certificate cannot be read");
    return leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_delete_cert(lk_registry *reg, const lk_reg_name *name, unsigned index,
                               char *why, size_t why_size)
{
    int64_t rid;
    char p[400];
    lk_err err;

    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK) {
        err = reg->ops->cert_delete(reg->be, rid, index);
        if (err == LK_ERR_REG_NOT_FOUND) {
            lk_reg_registry r;
            unsigned n = 0;
            if (reg->ops->registry_get(reg->be, rid, &r) == LK_OK) {
                n = r.ncerts;
                lk_reg_registry_free(&r);
            }
            err = failf(why, why_size, err,
                        "%s has no CA certificate %u (it has %u, numbered from 0)",
                        reg_path(name, p, sizeof p), index, n);
        } else if (err != LK_OK) {
            err = be_fail(reg, err, why, why_size);
        }
    }
    return leave(reg, err, TX_WRITE, why, why_size);
}

/* ------------------------------------------------------------------ */
/* Devices                                                             */

/* Check each credential of c[0..n) that is not in keep[0..nkeep) (a
 * device's current credentials, kept without a new check). */
static lk_err check_creds(lk_registry *reg, const lk_reg_cas *cas, const lk_reg_credential *c,
                          unsigned n, const lk_reg_credential *keep, unsigned nkeep, char *why,
                          size_t why_size)
{
    int64_t now = reg_now(reg);
    unsigned i, j;
    lk_err err;
    for (i = 0; i < n; i++) {
        int kept = 0;
        for (j = 0; j < nkeep && !kept; j++)
            kept = c[i].pem != NULL && keep[j].format == c[i].format &&
                   keep[j].expires == c[i].expires && strcmp(keep[j].pem, c[i].pem) == 0;
        if (kept)
            continue;
        err = lk_reg__cred_check(reg->ck, cas, &c[i], i, now, why, why_size);
        if (err != LK_OK)
            return err;
    }
    return LK_OK;
}

/* Create a device inside the current write transaction. */
static lk_err insert_device(lk_registry *reg, const lk_reg_name *name, int64_t rid,
                            const lk_reg_cas *cas, const lk_reg_device_spec *spec,
                            uint64_t *num_id, char *why, size_t why_size)
{
    lk_reg_config cfg;
    char p[400];
    int64_t now = reg_now(reg);
    lk_reg_device_spec ins = *spec;
    lk_err err;

    /* An existing id first: a caller skipping existing devices learns it
     * whatever else the spec holds. */
    err = reg->ops->device_find(reg->be, rid, spec->id, NULL, NULL);
    if (err == LK_OK)
        return failf(why, why_size, LK_ERR_REG_EXISTS, "device '%s' already exists in %s",
                     spec->id, name != NULL ? reg_path(name, p, sizeof p) : reg->import_name);
    if (err != LK_ERR_REG_NOT_FOUND)
        return be_fail(reg, err, why, why_size);
    err = check_creds(reg, cas, spec->creds, spec->ncreds, NULL, 0, why, why_size);
    if (err != LK_OK)
        return err;
    /* The numId asked for, if no device has it (numIds are unique in the
     * database); otherwise the next one. */
    if (ins.num_id > LK_REG_NUM_ID_MAX) {
        ins.num_id = 0;
    } else if (ins.num_id != 0) {
        int taken = 0;
        if ((err = reg->ops->device_num_taken(reg->be, ins.num_id, &taken)) != LK_OK)
            return be_fail(reg, err, why, why_size);
        if (taken)
            ins.num_id = 0;
    }
    err = reg->ops->device_insert(reg->be, rid, &ins, now, num_id);
    if (err == LK_ERR_REG_EXISTS)
        return failf(why, why_size, err, "device '%s' already exists in %s", spec->id,
                     name != NULL ? reg_path(name, p, sizeof p) : reg->import_name);
    if (err == LK_OK && spec->ncreds > 0)
        err = reg->ops->creds_set(reg->be, *num_id, spec->creds, spec->ncreds);
    if (err == LK_OK && spec->nmetadata > 0)
        err = reg->ops->metadata_set(reg->be, *num_id, spec->metadata, spec->nmetadata);
    if (err == LK_OK) {
        cfg.version = spec->config_version != 0 ? spec->config_version : 1;
        cfg.cloud_update_time =
            spec->config_cloud_update_time != 0 ? spec->config_cloud_update_time : now;
        cfg.device_ack_time = 0;
        cfg.data = (uint8_t *)spec->config;
        cfg.len = spec->config != NULL ? spec->config_len : 0;
        err = reg->ops->config_add(reg->be, *num_id, &cfg, LK_CONFIG_VERSIONS_KEPT);
    }
    if (err != LK_OK)
        return be_fail(reg, err, why, why_size);
    return append_change(reg, LK_CHANGE_DEVICE, *num_id, why, why_size);
}

static lk_err check_create_spec(const lk_reg_device_spec *spec, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    lk_err err = check_spec(spec, LK_REG_SET_CREDS | LK_REG_SET_METADATA, why, why_size);
    if (err == LK_OK)
        err = check_config_size(spec->config, spec->config_len, why, why_size);
    if (err == LK_OK)
        err = check_log_level("device", spec->log_level, why, why_size);
    if (err != LK_OK)
        return err;
    if (spec->config_version < 0 || spec->config_version > LK_REG_CONFIG_VERSION_MAX)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "config version %lld is out of range: 1 to %lld", (long long)spec->config_version,
                     (long long)LK_REG_CONFIG_VERSION_MAX);
    if (spec->config_cloud_update_time < 0 || spec->last_accessed_gateway_time < 0)
        return failf(why, why_size, LK_ERR_REG_INVALID, "a time before 1970 is invalid");
    if (spec->gateway_type != LK_GATEWAY_TYPE_UNSPECIFIED &&
        spec->gateway_type != LK_GATEWAY_TYPE_GATEWAY &&
        spec->gateway_type != LK_GATEWAY_TYPE_NON_GATEWAY)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "gateway type %d is invalid: use UNSPECIFIED (0), GATEWAY (1) or "
                     "NON_GATEWAY (2)", (int)spec->gateway_type);
    if ((int)spec->gateway_auth_method < (int)LK_GATEWAY_AUTH_UNSPECIFIED ||
        (int)spec->gateway_auth_method > (int)LK_GATEWAY_AUTH_ASSOCIATION_AND_DEVICE_AUTH_TOKEN)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "gateway auth method %d is invalid: use UNSPECIFIED (0), ASSOCIATION_ONLY "
                     "(1), DEVICE_AUTH_TOKEN_ONLY (2) or ASSOCIATION_AND_DEVICE_AUTH_TOKEN (3)",
                     (int)spec->gateway_auth_method);
    if (spec->last_accessed_gateway_id != NULL &&
        (w = lk_id_why("gateway id", spec->last_accessed_gateway_id,
                       strlen(spec->last_accessed_gateway_id), r, sizeof r)) != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "last accessed gateway id '%s' is invalid: %s",
                     shown(spec->last_accessed_gateway_id, b, sizeof b), w);
    return LK_OK;
}

lk_err lk_registry_create_device(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_spec *spec, uint64_t *num_id, char *why,
                                 size_t why_size)
{
    lk_reg_cas *cas = NULL;
    uint64_t n = 0;
    int64_t rid;
    lk_err err;

    if (num_id != NULL)
        *num_id = 0;
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_create_spec(spec, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && spec->ncreds > 0)
        err = load_cas(reg, rid, &cas, why, why_size);
    if (err == LK_OK)
        err = insert_device(reg, name, rid, cas, spec, &n, why, why_size);
    lk_reg__cas_free(cas);
    err = leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK && num_id != NULL)
        *num_id = n;
    return err;
}

lk_err lk_registry_get_device(lk_registry *reg, const lk_reg_name *name, const char *id,
                              uint64_t num_id, lk_reg_device *out, char *why, size_t why_size)
{
    int64_t rid = 0;
    uint64_t n = num_id;
    char p[400];
    lk_err err;

    if (out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no output given");
    memset(out, 0, sizeof *out);
    if (id != NULL || name != NULL) {
        if ((err = check_name(name, why, why_size)) != LK_OK)
            return err;
    }
    if (id != NULL && (err = check_device_id(id, why, why_size)) != LK_OK)
        return err;
    if ((err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if (name != NULL)
        err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && id != NULL)
        err = find_device(reg, name, rid, id, &n, NULL, why, why_size);
    if (err == LK_OK) {
        err = reg->ops->device_get(reg->be, n, out);
        if (err == LK_ERR_REG_NOT_FOUND)
            err = failf(why, why_size, err, "no device has num_id %llu", (unsigned long long)n);
        else if (err != LK_OK)
            err = be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK && name != NULL && id == NULL &&
        (strcmp(out->project, name->project) != 0 || strcmp(out->location, name->location) != 0 ||
         strcmp(out->registry, name->registry) != 0))
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND, "no device of %s has num_id %llu",
                    reg_path(name, p, sizeof p), (unsigned long long)n);
    err = leave(reg, err, TX_READ, why, why_size);
    if (err != LK_OK)
        lk_reg_device_free(out);
    return err;
}

struct dev_list_ctx {
    lk_registry *reg;
    int (*cb)(void *arg, const lk_reg_device *d);
    void *arg;
    lk_err err;
};

static int dev_list_cb(void *arg, uint64_t num_id)
{
    struct dev_list_ctx *ctx = arg;
    lk_reg_device d;
    int stop;
    ctx->err = ctx->reg->ops->device_get(ctx->reg->be, num_id, &d);
    if (ctx->err != LK_OK)
        return 1;
    stop = ctx->cb(ctx->arg, &d);
    lk_reg_device_free(&d);
    return stop;
}

lk_err lk_registry_list_devices(lk_registry *reg, const lk_reg_name *name,
                                int (*cb)(void *arg, const lk_reg_device *d), void *arg,
                                char *why, size_t why_size)
{
    struct dev_list_ctx ctx = {reg, cb, arg, LK_OK};
    int64_t rid;
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK && (err = reg->ops->device_list(reg->be, rid, dev_list_cb, &ctx)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && ctx.err != LK_OK)
        err = be_fail(reg, ctx.err, why, why_size);
    return leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_update_device(lk_registry *reg, const lk_reg_name *name,
                                 const lk_reg_device_spec *spec, unsigned mask, char *why,
                                 size_t why_size)
{
    lk_reg_credential cur[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncur = 0;
    lk_reg_cas *cas = NULL;
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (mask == 0 || (mask & ~(LK_REG_SET_BLOCKED | LK_REG_SET_METADATA | LK_REG_SET_CREDS)))
        return failf(why, why_size, LK_ERR_ARG,
                     "the update mask must name fields to change: LK_REG_SET_BLOCKED, "
                     "LK_REG_SET_METADATA, LK_REG_SET_CREDS");
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_spec(spec, mask, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = find_both(reg, name, spec->id, &rid, &num_id, NULL, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_CREDS)) {
        if ((err = reg->ops->creds_get(reg->be, num_id, cur, &ncur)) != LK_OK)
            err = be_fail(reg, err, why, why_size);
        if (err == LK_OK)
            err = load_cas(reg, rid, &cas, why, why_size);
        if (err == LK_OK)
            err = check_creds(reg, cas, spec->creds, spec->ncreds, cur, ncur, why, why_size);
        if (err == LK_OK &&
            (err = reg->ops->creds_set(reg->be, num_id, spec->creds, spec->ncreds)) != LK_OK)
            err = be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK && (mask & LK_REG_SET_BLOCKED) &&
        (err = reg->ops->device_set_blocked(reg->be, num_id, spec->blocked != 0)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && (mask & LK_REG_SET_METADATA) &&
        (err = reg->ops->metadata_set(reg->be, num_id, spec->metadata, spec->nmetadata)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_DEVICE, num_id, why, why_size);
    creds_free(cur, ncur);
    lk_reg__cas_free(cas);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_delete_device(lk_registry *reg, const lk_reg_name *name, const char *id,
                                 char *why, size_t why_size)
{
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if ((err = enter_device(reg, TX_WRITE, name, id, &rid, &num_id, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->device_delete(reg->be, num_id)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_DEVICE_DELETED, num_id, why, why_size);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_add_credential(lk_registry *reg, const lk_reg_name *name, const char *id,
                                  const lk_reg_credential *cred, char *why, size_t why_size)
{
    lk_reg_credential cur[LK_DEVICE_CREDENTIALS_MAX + 1];
    unsigned ncur = 0;
    lk_reg_cas *cas = NULL;
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (cred == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no credential given");
    if ((err = enter_device(reg, TX_WRITE, name, id, &rid, &num_id, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->creds_get(reg->be, num_id, cur, &ncur)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && ncur >= LK_DEVICE_CREDENTIALS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "device '%s' already has %u credentials; a device has at most %u", id, ncur,
                    LK_DEVICE_CREDENTIALS_MAX);
    if (err == LK_OK)
        err = load_cas(reg, rid, &cas, why, why_size);
    if (err == LK_OK)
        err = lk_reg__cred_check(reg->ck, cas, cred, ncur, reg_now(reg), why, why_size);
    if (err == LK_OK) {
        cur[ncur] = *cred; /* borrowed: not freed below */
        if ((err = reg->ops->creds_set(reg->be, num_id, cur, ncur + 1)) != LK_OK)
            err = be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_DEVICE, num_id, why, why_size);
    creds_free(cur, ncur);
    lk_reg__cas_free(cas);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_delete_credential(lk_registry *reg, const lk_reg_name *name, const char *id,
                                     unsigned index, char *why, size_t why_size)
{
    lk_reg_credential cur[LK_DEVICE_CREDENTIALS_MAX], rest[LK_DEVICE_CREDENTIALS_MAX];
    unsigned ncur = 0, i, n = 0;
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if ((err = enter_device(reg, TX_WRITE, name, id, &rid, &num_id, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->creds_get(reg->be, num_id, cur, &ncur)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && index >= ncur)
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND,
                    "device '%s' has %u credential%s; there is no credential %u (numbered from "
                    "0)", id, ncur, ncur == 1 ? "" : "s", index);
    if (err == LK_OK) {
        for (i = 0; i < ncur; i++)
            if (i != index)
                rest[n++] = cur[i];
        if ((err = reg->ops->creds_set(reg->be, num_id, rest, n)) != LK_OK)
            err = be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_DEVICE, num_id, why, why_size);
    creds_free(cur, ncur);
    return leave(reg, err, TX_WRITE, why, why_size);
}

/* ------------------------------------------------------------------ */
/* Config and state                                                    */

lk_err lk_registry_update_config(lk_registry *reg, const lk_reg_name *name, const char *id,
                                 const uint8_t *data, size_t len, int64_t version_to_update,
                                 lk_reg_config *out, char *why, size_t why_size)
{
    lk_reg_config cfg;
    uint64_t num_id;
    int64_t rid, cur = 0;
    uint8_t *copy = NULL;
    lk_err err;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_device_id(id, why, why_size)) != LK_OK ||
        (err = check_config_size(data, len, why, why_size)) != LK_OK)
        return err;
    if (version_to_update < 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "version_to_update %lld is invalid: use 0 (replace unconditionally) or "
                     "the current version", (long long)version_to_update);
    /* out's copy is made before anything is written: running out of memory
     * for it must refuse the change, not follow a commit. */
    if (out != NULL) {
        copy = malloc(len + 1);
        if (copy == NULL)
            return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        if (len > 0)
            memcpy(copy, data, len);
        copy[len] = 0;
    }
    if ((err = enter(reg, TX_WRITE, why, why_size)) != LK_OK) {
        free(copy);
        return err;
    }
    err = find_both(reg, name, id, &rid, &num_id, &cur, why, why_size);
    if (err == LK_OK && version_to_update != 0 && version_to_update != cur)
        err = failf(why, why_size, LK_ERR_REG_CONFLICT,
                    "version conflict: the current version is %lld, not %lld", (long long)cur,
                    (long long)version_to_update);
    memset(&cfg, 0, sizeof cfg);
    if (err == LK_OK) {
        cfg.version = cur + 1;
        cfg.cloud_update_time = reg_now(reg);
        cfg.data = (uint8_t *)data;
        cfg.len = len;
        err = reg->ops->config_add(reg->be, num_id, &cfg, LK_CONFIG_VERSIONS_KEPT);
        if (err != LK_OK)
            err = be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_CONFIG, num_id, why, why_size);
    err = leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK && out != NULL) {
        *out = cfg;
        out->data = copy;
        copy = NULL;
    }
    free(copy);
    return err;
}

lk_err lk_registry_list_configs(lk_registry *reg, const lk_reg_name *name, const char *id,
                                unsigned max, int (*cb)(void *arg, const lk_reg_config *c),
                                void *arg, char *why, size_t why_size)
{
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = enter_device(reg, TX_READ, name, id, &rid, &num_id, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->config_list(reg->be, num_id, max, cb, arg)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    return leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_ack_config(lk_registry *reg, uint64_t num_id, int64_t version, int64_t t)
{
    lk_err err;
    if (reg == NULL || num_id == 0 || version < 1 || t < 0)
        return LK_ERR_ARG;
    if ((err = enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->config_ack(reg->be, num_id, version, t);
    return leave(reg, err, TX_BROKER, NULL, 0);
}

lk_err lk_registry_add_state(lk_registry *reg, uint64_t num_id, const uint8_t *data, size_t len,
                             int64_t t)
{
    lk_reg_state_entry e;
    lk_err err;
    if (reg == NULL || num_id == 0 || (data == NULL && len > 0) || t < 0)
        return LK_ERR_ARG;
    if (len > LK_STATE_MAX)
        return LK_ERR_REG_LIMIT;
    if ((err = enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    e.update_time = t;
    e.data = (uint8_t *)data;
    e.len = len;
    err = reg->ops->state_add(reg->be, num_id, &e, LK_STATES_KEPT);
    return leave(reg, err, TX_BROKER, NULL, 0);
}

lk_err lk_registry_list_states(lk_registry *reg, const lk_reg_name *name, const char *id,
                               unsigned max, int (*cb)(void *arg, const lk_reg_state_entry *s),
                               void *arg, char *why, size_t why_size)
{
    uint64_t num_id;
    int64_t rid;
    lk_err err;

    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = enter_device(reg, TX_READ, name, id, &rid, &num_id, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->state_list(reg->be, num_id, max, cb, arg)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    return leave(reg, err, TX_READ, why, why_size);
}

/* ------------------------------------------------------------------ */
/* The broker: authentication, activity, change feed                   */

lk_err lk_registry_auth_lookup(lk_registry *reg, const lk_reg_name *name, const char *id,
                               lk_reg_auth *out)
{
    lk_err err;
    if (out == NULL)
        return LK_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (name == NULL || name->project == NULL || name->location == NULL ||
        name->registry == NULL || id == NULL)
        return LK_ERR_ARG;
    if ((err = guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* One statement: its own read snapshot, no BEGIN needed. */
    err = reg->ops->auth_lookup(reg->be, name, id, out);
    return err;
}

lk_err lk_registry_record_activity(lk_registry *reg, const lk_reg_activity *a, size_t n)
{
    size_t i;
    lk_err err;
    if (reg == NULL || (a == NULL && n > 0))
        return LK_ERR_ARG;
    for (i = 0; i < n; i++)
        if (a[i].last_heartbeat < 0 || a[i].last_event < 0 || a[i].last_state < 0 ||
            a[i].last_config_send < 0 || a[i].last_error < 0)
            return LK_ERR_ARG;
    if (n == 0)
        return LK_OK;
    if ((err = enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    for (i = 0; i < n && err == LK_OK; i++)
        err = reg->ops->activity(reg->be, &a[i]);
    return leave(reg, err, TX_BROKER, NULL, 0);
}

lk_err lk_registry_poll(lk_registry *reg, int *changed)
{
    uint64_t dv;
    lk_err err;
    if (changed != NULL)
        *changed = 0;
    if (changed == NULL)
        return LK_ERR_ARG;
    if ((err = guard(reg, NULL, 0)) != LK_OK)
        return err;
    if ((err = reg->ops->data_version(reg->be, &dv)) != LK_OK)
        return err;
    *changed = dv != reg->poll_dv || reg->own_commits != reg->poll_own;
    reg->poll_dv = dv;
    reg->poll_own = reg->own_commits;
    return LK_OK;
}

struct feed_ctx {
    int64_t *since;
    int (*cb)(void *arg, const lk_reg_change *c);
    void *arg;
    int stopped;
};

/* *since moves only past a change the caller took: a refusal (e.g. out of
 * memory) must not lose it, so the next call starts with it again. */
static int feed_cb(void *arg, const lk_reg_change *c)
{
    struct feed_ctx *ctx = arg;
    if (ctx->cb(ctx->arg, c)) {
        ctx->stopped = 1;
        return 1;
    }
    *ctx->since = c->seq;
    return 0;
}

lk_err lk_registry_changes(lk_registry *reg, int64_t *since,
                           int (*cb)(void *arg, const lk_reg_change *c), void *arg)
{
    struct feed_ctx ctx = {since, cb, arg, 0};
    int64_t oldest = 0, newest = 0;
    uint64_t dv;
    lk_err err;

    if (since == NULL || cb == NULL)
        return LK_ERR_ARG;
    if ((err = guard(reg, NULL, 0)) != LK_OK)
        return err;
    if ((err = reg->ops->data_version(reg->be, &dv)) != LK_OK)
        return err;
    /* Nothing committed anywhere since the last look, and the caller has
     * seen everything up to then: answer without reading the feed. */
    if (reg->feed_valid && dv == reg->feed_dv && reg->own_commits == reg->feed_own &&
        *since == reg->feed_head)
        return LK_OK;
    if ((err = enter(reg, TX_READ, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->change_bounds(reg->be, &oldest, &newest);
    if (err == LK_OK) {
        if (*since > newest || (oldest > 0 && *since < oldest - 1)) {
            /* Changes the caller has not seen were pruned (or the database
             * was replaced): it must reload everything. */
            lk_reg_change c = {newest, LK_CHANGE_RESYNC, 0};
            if (cb(arg, &c))
                ctx.stopped = 1; /* not taken: the next call says it again */
            else
                *since = newest;
        } else if (*since < newest) {
            err = reg->ops->change_list(reg->be, *since, feed_cb, &ctx);
        }
    }
    err = leave(reg, err, TX_READ, NULL, 0);
    if (err == LK_OK && !ctx.stopped && *since == newest) {
        reg->feed_valid = 1;
        reg->feed_dv = dv;
        reg->feed_own = reg->own_commits;
        reg->feed_head = newest;
    } else {
        reg->feed_valid = 0;
    }
    return err;
}

lk_err lk_registry_check(lk_registry *reg, char *why, size_t why_size)
{
    lk_err err;
    if ((err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->check(reg->be);
    if (err != LK_OK)
        (void)be_fail(reg, err, why, why_size);
    return leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_change_head(lk_registry *reg, int64_t *seq)
{
    int64_t oldest = 0;
    lk_err err;
    if (seq == NULL)
        return LK_ERR_ARG;
    *seq = 0;
    if ((err = enter(reg, TX_READ, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->change_bounds(reg->be, &oldest, seq);
    return leave(reg, err, TX_READ, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Bulk import                                                         */

lk_err lk_registry_import_begin(lk_registry *reg, const lk_reg_name *name, char *why,
                                size_t why_size)
{
    int64_t rid;
    lk_err err;

    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = find_registry(reg, name, &rid, why, why_size);
    if (err == LK_OK)
        err = load_cas(reg, rid, &reg->import_cas, why, why_size);
    if (err != LK_OK) {
        reg->ops->rollback(reg->be);
        reg->busy = 0;
        return err;
    }
    reg_path(name, reg->import_name, sizeof reg->import_name);
    reg->import_rid = rid;
    reg->importing = IMPORT_DEVICES;
    reg->busy = 0;
    return LK_OK;
}

lk_err lk_registry_import_registries_begin(lk_registry *reg, char *why, size_t why_size)
{
    lk_err err = enter(reg, TX_WRITE, why, why_size);
    if (err != LK_OK)
        return err;
    reg->import_name[0] = '\0';
    reg->import_rid = 0;
    reg->importing = IMPORT_REGISTRIES;
    reg->busy = 0;
    return LK_OK;
}

/* Run one item of an open import under a savepoint: add(reg, arg) inside,
 * released when it succeeds, undone when it fails. A database that ended
 * the transaction ends the import (see import_add). */
static lk_err import_item(lk_registry *reg, lk_err (*add)(lk_registry *reg, void *arg, char *why,
                                                          size_t why_size),
                          void *arg, char *why, size_t why_size)
{
    lk_err err = reg->ops->savepoint(reg->be);
    if (err != LK_OK) {
        err = be_fail(reg, err, why, why_size);
    } else {
        err = add(reg, arg, why, why_size);
        if (err == LK_OK && (err = reg->ops->release(reg->be)) != LK_OK)
            err = be_fail(reg, err, why, why_size);
        if (err != LK_OK && reg->ops->in_transaction(reg->be))
            (void)reg->ops->rollback_to(reg->be);
    }
    /* A refused item leaves the import going; a database that ended the
     * transaction (full disk, I/O error) ends the import: everything added
     * so far is gone, and later adds must not run outside a transaction. */
    if (err != LK_OK && !reg->ops->in_transaction(reg->be))
        reg->import_failed = err;
    return err;
}

/* The state checks of import_add and import_add_registry. */
static lk_err import_ready(lk_registry *reg, int kind, char *why, size_t why_size)
{
    if (reg == NULL)
        return LK_ERR_ARG;
    if (reg->importing == 0 || reg->busy)
        return failf(why, why_size, LK_ERR_STATE, "no import in progress (call import_begin)");
    if (reg->importing != kind)
        return failf(why, why_size, LK_ERR_STATE, "this import adds %s, not %s",
                     reg->importing == IMPORT_DEVICES ? "devices" : "registries",
                     kind == IMPORT_DEVICES ? "devices" : "registries");
    if (reg->import_failed != LK_OK)
        return failf(why, why_size, reg->import_failed,
                     "the import was rolled back after a database failure; nothing of it will "
                     "be written (abort it and start again)");
    return LK_OK;
}

struct reg_item {
    const lk_reg_name *name;
    const lk_reg_registry_spec *spec;
};

static lk_err add_registry_item(lk_registry *reg, void *arg, char *why, size_t why_size)
{
    struct reg_item *it = arg;
    return insert_registry(reg, it->name, it->spec, why, why_size);
}

lk_err lk_registry_import_add_registry(lk_registry *reg, const lk_reg_name *name,
                                       const lk_reg_registry_spec *spec, char *why,
                                       size_t why_size)
{
    struct reg_item it = {name, spec};
    char p[400];
    int64_t rid;
    lk_err err;
    if ((err = import_ready(reg, IMPORT_REGISTRIES, why, why_size)) != LK_OK ||
        (err = check_name(name, why, why_size)) != LK_OK)
        return err;
    /* An existing registry first, whatever the spec holds (a caller may
     * skip it): a read inside the import's transaction. */
    err = reg->ops->registry_find(reg->be, name, &rid);
    if (err == LK_OK)
        return failf(why, why_size, LK_ERR_REG_EXISTS, "%s already exists",
                     reg_path(name, p, sizeof p));
    if (err != LK_ERR_REG_NOT_FOUND)
        return be_fail(reg, err, why, why_size);
    if ((err = check_registry_spec(reg, spec, why, why_size)) != LK_OK)
        return err;
    return import_item(reg, add_registry_item, &it, why, why_size);
}

struct dev_item {
    const lk_reg_device_spec *spec;
    uint64_t num_id;
};

static lk_err add_device_item(lk_registry *reg, void *arg, char *why, size_t why_size)
{
    struct dev_item *it = arg;
    return insert_device(reg, NULL, reg->import_rid, reg->import_cas, it->spec, &it->num_id, why,
                         why_size);
}

lk_err lk_registry_import_add(lk_registry *reg, const lk_reg_device_spec *spec, uint64_t *num_id,
                              char *why, size_t why_size)
{
    struct dev_item it = {spec, 0};
    lk_err err;

    if (num_id != NULL)
        *num_id = 0;
    if ((err = import_ready(reg, IMPORT_DEVICES, why, why_size)) != LK_OK)
        return err;
    if (spec == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no device given");
    /* An existing id first, whatever else the spec holds (a caller may skip
     * it): a read inside the import's transaction. */
    if ((err = check_device_id(spec->id, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->device_find(reg->be, reg->import_rid, spec->id, NULL, NULL);
    if (err == LK_OK)
        return failf(why, why_size, LK_ERR_REG_EXISTS, "device '%s' already exists in %s", spec->id,
                     reg->import_name);
    if (err != LK_ERR_REG_NOT_FOUND)
        return be_fail(reg, err, why, why_size);
    if ((err = check_create_spec(spec, why, why_size)) != LK_OK)
        return err;
    err = import_item(reg, add_device_item, &it, why, why_size);
    if (err == LK_OK && num_id != NULL)
        *num_id = it.num_id;
    return err;
}

static void import_end(lk_registry *reg)
{
    lk_reg__cas_free(reg->import_cas);
    reg->import_cas = NULL;
    reg->importing = 0;
    reg->import_failed = LK_OK;
    reg->import_rid = 0;
    reg->import_name[0] = '\0';
}

lk_err lk_registry_import_commit(lk_registry *reg, char *why, size_t why_size)
{
    lk_err failed;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (!reg->importing || reg->busy)
        return failf(why, why_size, LK_ERR_STATE, "no import in progress (call import_begin)");
    failed = reg->import_failed;
    import_end(reg);
    if (failed != LK_OK) {
        reg->ops->rollback(reg->be);
        return failf(why, why_size, failed, "the import was rolled back after a database "
                                            "failure; nothing of it was written");
    }
    reg->busy = 1; /* leave() expects enter()'s state */
    return leave(reg, LK_OK, TX_WRITE, why, why_size);
}

void lk_registry_import_abort(lk_registry *reg)
{
    if (reg == NULL || !reg->importing)
        return;
    reg->ops->rollback(reg->be);
    import_end(reg);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

/* How long a decided command is kept (for a sender that polls late), and
 * after how long a command nobody decided is dropped (its sender died
 * before deciding EXPIRED: it must not reach a broker started later). */
#define COMMAND_KEEP_S 86400

void lk_reg_command_free(lk_reg_command *c)
{
    if (c == NULL)
        return;
    free(c->device_id);
    free(c->project);
    free(c->location);
    free(c->registry);
    free(c->subfolder);
    free(c->data);
    memset(c, 0, sizeof *c);
}

static lk_err prune_commands(lk_registry *reg, char *why, size_t why_size)
{
    int64_t before = reg_now(reg) - COMMAND_KEEP_S;
    lk_err err = reg->ops->command_prune(reg->be, before, before);
    return err != LK_OK ? be_fail(reg, err, why, why_size) : LK_OK;
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
    if ((err = check_name(name, why, why_size)) != LK_OK ||
        (err = check_device_id(id, why, why_size)) != LK_OK)
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
                     shown(subfolder, b, sizeof b), LK_SUBFOLDER_MAX);
    if ((err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = find_both(reg, name, id, &rid, &num_id, NULL, why, why_size);
    if (err == LK_OK && (err = reg->ops->device_blocked(reg->be, num_id, &blocked)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK && blocked)
        err = failf(why, why_size, LK_ERR_REG_INVALID,
                    "device '%s' is blocked: it cannot connect, so it cannot receive commands "
                    "(unblock it first)", id);
    if (err == LK_OK && (err = prune_commands(reg, why, why_size)) == LK_OK) {
        err = reg->ops->command_insert(reg->be, num_id, subfolder, data, len, reg_now(reg),
                                       &cid);
        if (err != LK_OK)
            err = be_fail(reg, err, why, why_size);
    }
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_COMMAND, num_id, why, why_size);
    err = leave(reg, err, TX_WRITE, why, why_size);
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
    if ((err = guard(reg, NULL, 0)) != LK_OK)
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
    if ((err = enter(reg, TX_READ, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->command_pending(reg->be, cb, arg);
    return leave(reg, err, TX_READ, NULL, 0);
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
    if ((err = enter(reg, TX_BROKER, NULL, 0)) != LK_OK)
        return err;
    err = reg->ops->command_decide(reg->be, command_id, status, t, &w);
    if (err == LK_OK && w)
        err = prune_commands(reg, NULL, 0);
    err = leave(reg, err, TX_BROKER, NULL, 0);
    if (err == LK_OK && won != NULL)
        *won = w;
    return err;
}

/* ------------------------------------------------------------------ */
/* Backend applications                                                */

void lk_reg_backend_free(lk_reg_backend *b)
{
    if (b == NULL)
        return;
    free(b->name);
    free(b->project);
    memset(b, 0, sizeof *b);
}

static lk_err check_backend_name(const char *name, char *why, size_t why_size)
{
    char b[80], r[160];
    const char *w;
    if (name == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a backend name is required");
    w = lk_id_why("backend name", name, strlen(name), r, sizeof r);
    if (w != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID, "backend name '%s' is invalid: %s",
                     shown(name, b, sizeof b), w);
    return LK_OK;
}

static lk_err check_project(const char *project, char *why, size_t why_size)
{
    char b[80];
    if (project == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a project is required");
    if (!lk_project_valid(project, strlen(project)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "project id '%s' is invalid: a project id is %u to %u characters, a "
                     "lowercase letter followed by lowercase letters, digits or hyphens, not "
                     "ending with a hyphen", shown(project, b, sizeof b), LK_PROJECT_MIN,
                     LK_PROJECT_MAX);
    return LK_OK;
}

lk_err lk_registry_backend_create(lk_registry *reg, const char *project, const char *name,
                                  const uint8_t secret_sha256[32], char *why, size_t why_size)
{
    lk_err err;
    if ((err = check_project(project, why, why_size)) != LK_OK ||
        (err = check_backend_name(name, why, why_size)) != LK_OK)
        return err;
    if (secret_sha256 == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no secret hash given");
    if ((err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->backend_insert(reg->be, name, project, secret_sha256, reg_now(reg));
    if (err == LK_ERR_REG_EXISTS)
        err = failf(why, why_size, err,
                    "backend '%s' exists already (backend names are unique in the database, "
                    "across projects)", name);
    else if (err != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_BACKEND, 0, why, why_size);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_backend_delete(lk_registry *reg, const char *name, char *why, size_t why_size)
{
    lk_err err;
    if ((err = check_backend_name(name, why, why_size)) != LK_OK ||
        (err = enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->backend_delete(reg->be, name);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = failf(why, why_size, err, "backend '%s' does not exist", name);
    else if (err != LK_OK)
        err = be_fail(reg, err, why, why_size);
    if (err == LK_OK)
        err = append_change(reg, LK_CHANGE_BACKEND, 0, why, why_size);
    return leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_backend_list(lk_registry *reg, const char *project,
                                int (*cb)(void *arg, const lk_reg_backend *b), void *arg,
                                char *why, size_t why_size)
{
    lk_err err;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if (project != NULL && (err = check_project(project, why, why_size)) != LK_OK)
        return err;
    if ((err = enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->backend_list(reg->be, project, cb, arg)) != LK_OK)
        err = be_fail(reg, err, why, why_size);
    return leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_backend_lookup(lk_registry *reg, const char *name, char *project,
                                  uint8_t secret_sha256[32])
{
    lk_err err;
    if (project != NULL)
        project[0] = '\0';
    if (name == NULL || project == NULL || secret_sha256 == NULL)
        return LK_ERR_ARG;
    if ((err = guard(reg, NULL, 0)) != LK_OK)
        return err;
    /* A name that could not have been created is not there (and costs no
     * query: this runs for every backend CONNECT). */
    if (!lk_id_valid(name, strlen(name)))
        return LK_ERR_REG_NOT_FOUND;
    /* One statement by primary key: its own read snapshot, no BEGIN. */
    return reg->ops->backend_lookup(reg->be, name, project, LK_PROJECT_MAX + 1, secret_sha256);
}
