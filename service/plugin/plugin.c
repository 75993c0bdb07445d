/*
 * plugin.c — the entry points: version, init (options, registry, verifier),
 * cleanup, and the tick that drives everything timed (change feed,
 * deadlines, config and command delivery, activity flush).
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin.h"

#define EXPORT __attribute__((visibility("default")))

/* # Options */

static int plugin__opt_int(const char *key, const char *value, int64_t min, int64_t max,
                           int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < min || v > max) {
        plog__msg(PLOG_ERROR, "option", NULL, "plugin_opt_%s %s: expected an integer from %" PRId64
                  " to %" PRId64, key, value, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* The integer options: name, range, default, where it goes. */
enum opt_type { OPT_I64, OPT_SIZE, OPT_UNSIGNED };
#define OPT(name, type, min, max, def) \
    { #name, type, min, max, def, offsetof(struct plg_options, name) }
static const struct plugin__int_opt {
    const char *name;
    enum opt_type type;
    int64_t min, max, def;
    size_t offset;
} plugin__int_opts[] = {
    OPT(skew, OPT_I64, 0, LK_VERIFY_MAX_SKEW, LK_VERIFY_SKEW),
    OPT(max_token_lifetime, OPT_I64, 1, LK_VERIFY_MAX_LIFETIME * 7, LK_VERIFY_MAX_LIFETIME),
    OPT(max_token_length, OPT_SIZE, 1, LK_VERIFY_MAX_LEN_LIMIT, LK_VERIFY_MAX_LEN),
    OPT(token_cache, OPT_SIZE, 0, 1 << 24, 65536),
    OPT(token_cache_save, OPT_I64, 1, 86400, 300),
    OPT(device_cache, OPT_SIZE, 16, 1 << 24, 65536),
    OPT(messages_per_second, OPT_UNSIGNED, 1, 1000000, LK_RATE_MESSAGES_PER_S),
    OPT(state_per_second, OPT_UNSIGNED, 1, 1000, LK_RATE_STATE_PER_S),
    OPT(idle_timeout, OPT_I64, 1, 30 * 86400, LK_IDLE_TIMEOUT_S),
    OPT(max_connection, OPT_I64, 1, 30 * 86400, LK_CONNECTION_MAX_S),
    OPT(activity_flush, OPT_I64, 1, 3600, 10),
    OPT(confirm_timeout, OPT_I64, 1, 86400, 60),
    OPT(connect_burst, OPT_UNSIGNED, 1, 100000, 10),
    OPT(connects_per_minute, OPT_UNSIGNED, 1, 60000, 10),
    OPT(limit_table, OPT_SIZE, 1024, 1 << 24, 262144),
    OPT(log_refusals_per_source, OPT_UNSIGNED, 1, 1000000, 3),
    OPT(log_refusals_window, OPT_I64, 1, 86400, 60),
    OPT(log_refusals_per_second, OPT_UNSIGNED, 1, 1000000, 50),
    OPT(share_max_per_client, OPT_UNSIGNED, 1, SHARE_MAX_PER_CLIENT_LIMIT, 16),
    OPT(share_max_members, OPT_SIZE, 1, 1000000, 10000),
    OPT(spool_max_messages, OPT_I64, 1, INT64_C(1000000000), 1000000),
    OPT(spool_max_bytes, OPT_I64, 1024, INT64_C(1) << 40, INT64_C(1) << 30),
    OPT(gateway_messages_per_second, OPT_UNSIGNED, 1, 1000000, 1000),
    OPT(gateway_max_attached, OPT_UNSIGNED, 1, LK_GATEWAY_ATTACHED_MAX, LK_GATEWAY_ATTACHED_MAX),
    OPT(jit_max_token_length, OPT_SIZE, 1, LK_VERIFY_MAX_LEN_LIMIT, LK_VERIFY_JIT_MAX_LEN),
    OPT(jit_per_minute, OPT_UNSIGNED, 1, 600000, 60),
    OPT(jit_burst, OPT_UNSIGNED, 1, 100000, 20),
    OPT(state_wait_max, OPT_UNSIGNED, 1, 1000000, 10000),
};
#undef OPT

static void plugin__opt_set(struct plg_options *o, const struct plugin__int_opt *d, int64_t v)
{
    char *p = (char *)o + d->offset;
    switch (d->type) {
    case OPT_I64: *(int64_t *)(void *)p = v; break;
    case OPT_SIZE: *(size_t *)(void *)p = (size_t)v; break;
    case OPT_UNSIGNED: *(unsigned *)(void *)p = (unsigned)v; break;
    }
}

static int plugin__options(struct mosquitto_opt *opts, int n)
{
    struct plg_options *o = &plg.opt;
    size_t j, nopts = sizeof plugin__int_opts / sizeof plugin__int_opts[0];
    int64_t v;
    int i;

    for (j = 0; j < nopts; j++)
        plugin__opt_set(o, &plugin__int_opts[j], plugin__int_opts[j].def);
    o->verify_flags = LK_VERIFY_ALLOW_PADDING;
    o->log_level = LK_LOG_LEVEL_INFO;

    for (i = 0; i < n; i++) {
        const char *k = opts[i].key, *val = opts[i].value;
        if (!k || !val)
            continue;
        if (!strcmp(k, "registry")) {
            free(o->registry);
            o->registry = strdup(val);
            if (!o->registry)
                return -1;
            continue;
        }
        if (!strcmp(k, "spool")) {
            free(o->spool);
            if (!(o->spool = strdup(val)))
                return -1;
            continue;
        }
        if (!strcmp(k, "token_cache_file")) {
            free(o->token_cache_file);
            if (!(o->token_cache_file = strdup(val)))
                return -1;
            continue;
        }
        if (!strcmp(k, "metrics_file")) {
            free(o->metrics_file);
            if (!(o->metrics_file = strdup(val)))
                return -1;
            continue;
        }
        if (!strcmp(k, "log_level")) {
            static const char *const names[] = {"none", "error", "info", "debug"};
            for (j = 0; j < 4 && strcmp(val, names[j]); j++)
                ;
            if (j == 4) {
                plog__msg(PLOG_ERROR, "option", NULL, "plugin_opt_log_level %s: expected none, error, "
                          "info or debug", val);
                return -1;
            }
            o->log_level = LK_LOG_LEVEL_NONE + 10 * (int)j;
            continue;
        }
        if (!strcmp(k, "spool_sync")) {
            if (strcmp(val, "normal") && strcmp(val, "full")) {
                plog__msg(PLOG_ERROR, "option", NULL, "plugin_opt_spool_sync %s: expected normal or full",
                          val);
                return -1;
            }
            o->spool_sync_full = !strcmp(val, "full");
            continue;
        }
        if (!strcmp(k, "base64_padding")) {
            if (!strcmp(val, "allow"))
                o->verify_flags |= LK_VERIFY_ALLOW_PADDING;
            else if (!strcmp(val, "refuse"))
                o->verify_flags &= ~LK_VERIFY_ALLOW_PADDING;
            else {
                plog__msg(PLOG_ERROR, "option", NULL, "plugin_opt_base64_padding %s: expected allow or "
                          "refuse", val);
                return -1;
            }
            continue;
        }
        for (j = 0; j < nopts && strcmp(k, plugin__int_opts[j].name); j++)
            ;
        if (j == nopts) {
            plog__msg(PLOG_ERROR, "option", NULL, "unknown option plugin_opt_%s (docs/plugin.md lists them)",
                      k);
            return -1;
        }
        if (plugin__opt_int(k, val, plugin__int_opts[j].min, plugin__int_opts[j].max, &v))
            return -1;
        plugin__opt_set(o, &plugin__int_opts[j], v);
    }
    if (!o->registry) {
        plog__msg(PLOG_ERROR, "option", NULL, "plugin_opt_registry is required (the registry database)");
        return -1;
    }
    return 0;
}

/* # Change feed */

struct plugin__changes {
    lk_reg_change *v;
    size_t n, cap;
    int stopped;                 /* out of memory: changes left unread */
};

static int plugin__change_cb(void *arg, const lk_reg_change *c)
{
    struct plugin__changes *ch = arg;
    if (ch->n == ch->cap) {
        size_t ncap = ch->cap ? ch->cap * 2 : 64;
        lk_reg_change *nv = realloc(ch->v, ncap * sizeof *nv);
        if (!nv) {
            ch->stopped = 1;
            return 1; /* stop here; the rest is read next tick */
        }
        ch->v = nv;
        ch->cap = ncap;
    }
    ch->v[ch->n++] = *c;
    return 0;
}

static void plugin__kick_unconfirmed(struct plg_conn *c, void *arg)
{
    (void)arg;
    conn__kick(c, "its standing could not be confirmed: the registry could not be read");
}

/* Everything up to the feed's head is applied. */
static void plugin__feed_read(int64_t now)
{
    if (plg.feed_failing_since)
        plog__msg(PLOG_INFO, "feed_recovered", NULL, "the change feed is read again after %" PRId64 " s",
                  now - plg.feed_failing_since);
    plg.feed_failing_since = 0;
    plg.changes_unread = 0;
}

/* conn__each_num passes only device connections of that num_id. */
static void plugin__want_config_one(struct plg_conn *c, void *arg)
{
    (void)arg;
    if (c->config_qos >= 0)
        conn__want_config(c, 0);
}

/* The change feed could not be read: retry on every tick without asking the
 * poll (which reports only commits since it last answered), and once that
 * has lasted confirm_timeout, close every connection: none can be shown to
 * stand (a block or a revocation may be waiting in the feed). */
static void plugin__feed_failed(lk_err err, int64_t now)
{
    if (!plg.feed_failing_since) {
        plg.feed_failing_since = now;
        plog__msg(PLOG_WARN, "feed_failed", NULL, "reading the change feed failed (%s); retrying on every "
                  "tick, closing every connection after %" PRId64 " s", lk_errname(err),
                  plg.opt.confirm_timeout);
    }
    plg.changes_unread = 1;
    if (now - plg.feed_failing_since >= plg.opt.confirm_timeout) {
        conn__each(plugin__kick_unconfirmed, NULL);
        /* Nor may an offline session's queue trust a backend's cached
         * project (a deletion may be waiting in the feed): read it afresh. */
        backends__forget();
    }
}

static void plugin__changes(int64_t now)
{
    struct plugin__changes ch = {0};
    int changed = 0, everything = 0, backends = 0;
    size_t i;
    lk_err err;

    /* An error or out of memory stopped the last read short: read on
     * without asking the poll. */
    if (!plg.changes_unread) {
        err = lk_registry_poll(plg.reg, &changed);
        if (err) {
            plugin__feed_failed(err, now);
            return;
        }
        if (!changed) {
            plugin__feed_read(now);
            return;
        }
    }
    err = lk_registry_changes(plg.reg, &plg.since, plugin__change_cb, &ch);
    if (err)
        plugin__feed_failed(err, now);
    else if (ch.stopped)
        plg.changes_unread = 1;
    else
        plugin__feed_read(now);
    for (i = 0; i < ch.n && !everything; i++) {
        const lk_reg_change *c = &ch.v[i];
        if (change__wide(c->kind)) {
            everything = 1;
            break;
        }
        switch (c->kind) {
        case LK_CHANGE_DEVICE:
        case LK_CHANGE_DEVICE_DELETED:
            devices__forget(c->num_id);
            /* the live connection (one, or two during a takeover) */
            conn__each_num(c->num_id, auth__recheck, NULL);
            break;
        case LK_CHANGE_CONFIG:
            devices__forget(c->num_id);
            conn__each_num(c->num_id, plugin__want_config_one, NULL);
            break;
        case LK_CHANGE_COMMAND:
            plg.commands_due = 1;
            break;
        case LK_CHANGE_BACKEND:
            backends = 1;
            break;
        case LK_CHANGE_SUBSCRIPTION:
            route__forget_subscriptions();
            break;
        case LK_CHANGE_PRESENCE_CLEAR:
            presence__tombstones_due();
            break;
        default:
            break; /* the wide kinds, above */
        }
    }
    if (everything) {
        devices__clear();
        jit__forget();
        route__forget_registries();
        route__forget_subscriptions();
        presence__tombstones_due();
        if (plg.vcache) {
            lk_vcache_clear(plg.vcache);
            tokens__cleared();
        }
        conn__each(auth__recheck, NULL);
        plg.commands_due = 1;
        backends = 1;
    }
    if (backends) {
        backends__forget();
        conn__each(auth__recheck_backend, NULL);
    }
    free(ch.v);
}

/* # Tick */

static int plugin__tick(int event, void *event_data, void *userdata)
{
    int64_t now = clock__now();

    (void)event;
    (void)event_data;
    (void)userdata;
    plg.ticks++;
    plugin__changes(now);
    conn__drain_recheck(auth__recheck_any);
    if (plg.commands_due) {
        plg.commands_due = 0;
        deliver__commands(now);
    }
    conn__drain_config(deliver__config);
    conn__tick(now);
    /* After the kicks: a deleted device's offline notice is cleared too. */
    presence__tick(now);
    refusals__tick(now);
    bridge__tick(now);
    share__tick();
    stateq__flush(0);
    if (now >= plg.next_flush) {
        activity__flush();
        presence__flush();
        plg.next_flush = now + plg.opt.activity_flush;
    }
    tokens__save(now, 0);
    return MOSQ_ERR_SUCCESS;
}

/* # Opening the registry */

/* A user's or group's name, or its number when it has none. */
static const char *plugin__name(int group, unsigned id, char *buf, size_t size)
{
    const struct passwd *pw = group ? NULL : getpwuid((uid_t)id);
    const struct group *gr = group ? getgrgid((gid_t)id) : NULL;
    const char *name = pw ? pw->pw_name : gr ? gr->gr_name : NULL;

    if (name)
        snprintf(buf, size, "%s", name);
    else
        snprintf(buf, size, "%s %u", group ? "gid" : "uid", id);
    return buf;
}

/* What the broker's user may do with path and its directory, in words, for
 * the refusal to say what to fix: Mosquitto has switched to its user (the
 * `user` option, `mosquitto` on Debian) before it loads plugins, and SQLite
 * needs to write the file, its -wal and -shm, and so the directory too. */
static void plugin__access(const char *path, char *out, size_t size)
{
    char dir[1024], u[64], g[64], me[64];
    struct stat st, dst;
    const char *slash = strrchr(path, '/');
    int n;

    if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else
        snprintf(dir, sizeof dir, ".");
    n = snprintf(out, size, "the broker runs as %s", plugin__name(0, geteuid(), me, sizeof me));
    if (n < 0 || (size_t)n >= size)
        return;
    if (stat(dir, &dst) != 0) {
        int e = errno;
        char up[1024];
        size_t i;
        /* Name the first directory on the way that the broker may not enter. */
        for (i = 1; e == EACCES && dir[i - 1]; i++) {
            if (dir[i] != '/' && dir[i] != '\0')
                continue;
            snprintf(up, sizeof up, "%.*s", (int)i, dir);
            if (access(up, X_OK) != 0 && stat(up, &dst) == 0) {
                snprintf(out + n, size - (size_t)n, "; it cannot reach %.300s: the directory %.300s "
                         "is %s:%s mode %04o", dir, up, plugin__name(0, dst.st_uid, u, sizeof u),
                         plugin__name(1, dst.st_gid, g, sizeof g), (unsigned)(dst.st_mode & 07777));
                return;
            }
        }
        snprintf(out + n, size - (size_t)n, "; the directory %.300s: %s", dir, strerror(e));
        return;
    }
    n += snprintf(out + n, size - (size_t)n, "; the directory %.300s is %s:%s mode %04o%s", dir,
                  plugin__name(0, dst.st_uid, u, sizeof u), plugin__name(1, dst.st_gid, g, sizeof g),
                  (unsigned)(dst.st_mode & 07777),
                  access(dir, W_OK | X_OK) ? " (the broker cannot create files in it)" : "");
    if (n < 0 || (size_t)n >= size)
        return;
    if (stat(path, &st) != 0)
        snprintf(out + n, size - (size_t)n, "; the file %.300s: %s", path, strerror(errno));
    else
        snprintf(out + n, size - (size_t)n, "; the file is %s:%s mode %04o%s",
                 plugin__name(0, st.st_uid, u, sizeof u), plugin__name(1, st.st_gid, g, sizeof g),
                 (unsigned)(st.st_mode & 07777),
                 access(path, R_OK | W_OK) ? " (the broker cannot read and write it)" : "");
}

static int plugin__open_registry(void)
{
    char why[256] = "", how[768];
    const char *path = plg.opt.registry;
    lk_err err;

    if (!strncmp(path, "sqlite:", 7)) {
        path += 7;
        if (!strncmp(path, "//", 2))
            path += 2;
    }
    err = lk_registry_open(plg.opt.registry, LK_REG_READONLY, &plg.reg, why, sizeof why);
    if (err) {
        plugin__access(path, how, sizeof how);
        plog__msg(PLOG_ERROR, "registry_open", NULL, "cannot open the registry %s: %s (%s); %s. The broker's "
                  "user needs read and write access to the file, its -wal and -shm files and their "
                  "directory (docs/plugin.md, Files and users)", plg.opt.registry,
                  why[0] ? why : lk_strerror(err), lk_errname(err), how);
        return -1;
    }
    /* A damaged file would refuse every device at its first read: refuse to
     * serve instead, with the reason, before a device connects. */
    err = lk_registry_check(plg.reg, why, sizeof why);
    if (err) {
        plog__msg(PLOG_ERROR, "registry_open", NULL, "the registry %s is damaged: %s (%s); restore it from a "
                  "backup", plg.opt.registry, why[0] ? why : lk_strerror(err), lk_errname(err));
        return -1;
    }
    if (access(path, R_OK | W_OK) != 0) {
        plugin__access(path, how, sizeof how);
        plog__msg(PLOG_ERROR, "registry_open", NULL, "the registry %s is not writable by the broker: %s (it "
                  "writes states, activity times and command outcomes)", plg.opt.registry, how);
        return -1;
    }
    return 0;
}

/* MOSQ_EVT_MESSAGE: latchkeyd's bridge's publishes (bridge.c), a gateway's
 * for its devices (gateway.c) or a device's (message.c); chosen here so that
 * none imports another, and
 * the connection is looked up once per publish. */
static int plugin__message(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_message *ed = event_data;
    struct plg_conn *c = conn__find(ed->client);
    int rc;

    (void)event;
    (void)userdata;
    share__begin();
    if (c && c->kind == CONN_BRIDGE && !c->kick_reason)
        rc = bridge__message(c, ed);
    else if (c && c->att_head && message__topic(c, ed->topic, NULL) == TOPIC_BAD)
        rc = gateway__message(c, ed); /* for a device it attached */
    else
        rc = message__device(c, ed);
    /* The topic is final here: shared subscriptions' copies (share.c). */
    if (rc == MOSQ_ERR_SUCCESS)
        share__message(ed);
    return rc;
}

/* # Entry points */

EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions);
EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                 struct mosquitto_opt *options, int option_count);
EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count);

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    int i;
    for (i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

static void plugin__free(void)
{
    conn__cleanup();
    share__cleanup();
    devices__cleanup();
    limits__cleanup();
    refusals__cleanup();
    backends__forget();
    route__cleanup();
    presence__cleanup();
    jit__cleanup();
    if (plg.vcache)
        lk_vcache_free(plg.vcache);
    if (plg.verifier)
        lk_verifier_free(plg.verifier);
    if (plg.reg)
        lk_registry_close(plg.reg);
    free(plg.opt.registry);
    free(plg.opt.spool);
    metrics__cleanup();
    free(plg.opt.metrics_file);
    free(plg.opt.token_cache_file);
    activity__cleanup();
    stateq__cleanup();
    memset(&plg, 0, sizeof plg);
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count)
{
    int rc = MOSQ_ERR_UNKNOWN;

    /* Mosquitto opens a plugin named twice once (dlopen gives the same
     * copy): a second instance would share and reset the first's state. */
    if (plg.id) {
        plog__msg(PLOG_ERROR, "config", NULL, "the plugin is configured twice; one instance serves every "
                  "listener (per_listener_settings false)");
        return MOSQ_ERR_INVAL;
    }
    memset(&plg, 0, sizeof plg);
    plg.id = identifier;
    *userdata = &plg;
    if (plugin__options(options, option_count))
        goto error;
    if (plugin__open_registry())
        goto error;
    /* The broker's thread must not wait long for a tool holding the write lock. */
    lk_registry_set_busy_timeout(plg.reg, 200);
    if (lk_registry_change_head(plg.reg, &plg.since) != LK_OK)
        goto error;
    if (lk_verifier_new(&plg.verifier) != LK_OK)
        goto error;
    if (plg.opt.token_cache && lk_vcache_new(plg.opt.token_cache, &plg.vcache) != LK_OK)
        goto error;
    tokens__load();
    if (route__init() || metrics__init())
        goto error;
    if (devices__init(plg.opt.device_cache) || conn__init(message__offline, gateway__drop) || limits__init(plg.opt.limit_table))
        goto error;
    share__init(message__attributes);
    plg.started = clock__now();
    plg.next_flush = plg.started + plg.opt.activity_flush;

    if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, auth__basic, NULL, &plg)
        || mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, acl__check, NULL, &plg)
        || mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, plugin__message, NULL, &plg)
        || mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, auth__disconnect, NULL, &plg)
        || mosquitto_callback_register(identifier, MOSQ_EVT_TICK, plugin__tick, NULL, &plg)) {
        plog__msg(PLOG_ERROR, "start", NULL, "registering callbacks failed");
        goto error;
    }
    plog__msg(PLOG_INFO, "start", NULL, "serving registry %s (skew %" PRId64 " s, token cache %zu, device "
              "cache %zu, log level %s)", plg.opt.registry, plg.opt.skew, plg.opt.token_cache,
              plg.opt.device_cache, plg.opt.log_level == LK_LOG_LEVEL_NONE ? "none"
              : plg.opt.log_level == LK_LOG_LEVEL_ERROR ? "error"
              : plg.opt.log_level == LK_LOG_LEVEL_DEBUG ? "debug" : "info");
    return MOSQ_ERR_SUCCESS;

error:
    plugin__free();
    return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)options;
    (void)option_count;
    if (plg.id) {
        mosquitto_callback_unregister(plg.id, MOSQ_EVT_BASIC_AUTH, auth__basic, NULL);
        mosquitto_callback_unregister(plg.id, MOSQ_EVT_ACL_CHECK, acl__check, NULL);
        mosquitto_callback_unregister(plg.id, MOSQ_EVT_MESSAGE, plugin__message, NULL);
        mosquitto_callback_unregister(plg.id, MOSQ_EVT_DISCONNECT, auth__disconnect, NULL);
        mosquitto_callback_unregister(plg.id, MOSQ_EVT_TICK, plugin__tick, NULL);
    }
    if (userdata != &plg)
        return MOSQ_ERR_SUCCESS; /* an instance refused at init */
    if (plg.reg) {
        stateq__flush(1);
        activity__flush();
        presence__flush();
    }
    tokens__save(clock__now(), 1);
    plugin__free();
    return MOSQ_ERR_SUCCESS;
}
