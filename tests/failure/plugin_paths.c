/*
 * plugin_paths.c — the broker plugin's connect (device, backend, latchkeyd's
 * bridge), bridge-publish, config-push and kick paths with each allocation
 * failing in turn (alloc_fail.c runs the loop's
 * rules). A real broker gives no control over every allocation, so the
 * plugin's objects are linked here with a small stand-in of the mosquitto_*
 * functions it calls: client getters, callback registration, publish, kick
 * (which calls the disconnect event at once, as Mosquitto does), logging and
 * properties. The stand-in's own allocations (mosquitto_malloc, a publish,
 * a property) count and fail like the rest. Only the plugin's entry points
 * (mosquitto_plugin_init, the callbacks it registers, mosquitto_plugin_cleanup)
 * are called. The real broker's behaviour is the integration tests'.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

#include "failalloc.h"
#include "harness.h"

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count);
int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count);

#define DEV_ID "projects/my-project/locations/us-central1/registries/reg1/devices/dev1"
#define SECRET "q3Xo-f9Y2cJ0mQ8k_Lr1zW4nB7vT6pA5hG0sE2dU1iK"

/* # The stand-in broker */

struct mosquitto {
    const char *id, *username, *address;
    int protocol, keepalive;
    bool clean;
    int connected;      /* authenticated and not yet disconnected */
};

static struct mosquitto dev_client = {DEV_ID, NULL, "192.0.2.1", 4, 60, true, 0};
static struct mosquitto be_client = {"analytics", "backend:analytics", "192.0.2.2", 4, 60, true, 0};
static struct mosquitto br_client = {"latchkeyd:latchkeyd-1", "latchkeyd:latchkeyd-1", "192.0.2.3", 5, 60,
                                     true, 0};
#define BRIDGE_TOPIC \
    "latchkeyd/projects/my-project/locations/us-central1/registries/reg1/devices/dev1/events/a/b"
static MOSQ_FUNC_generic_callback cbs[16];
static int kicks, config_sent, commands_sent, commands_refused, share_copies, verbose;
static mosquitto_plugin_id_t *plugin_id = (mosquitto_plugin_id_t *)&cbs;

struct mosquitto__property_standin {
    struct mosquitto__property_standin *next;
    char *name, *value;
};

int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
                                MOSQ_FUNC_generic_callback cb_func, const void *event_data,
                                void *userdata)
{
    (void)identifier;
    (void)event_data;
    (void)userdata;
    if (event < 0 || event >= 16 || cbs[event])
        return MOSQ_ERR_ALREADY_EXISTS;
    cbs[event] = cb_func;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
                                  MOSQ_FUNC_generic_callback cb_func, const void *event_data)
{
    (void)identifier;
    (void)event_data;
    if (event < 0 || event >= 16 || cbs[event] != cb_func)
        return MOSQ_ERR_NOT_FOUND;
    cbs[event] = NULL;
    return MOSQ_ERR_SUCCESS;
}

void *mosquitto_malloc(size_t size) { return malloc(size); }
void mosquitto_free(void *mem) { free(mem); }

void mosquitto_log_printf(int level, const char *fmt, ...)
{
    va_list ap;
    (void)level;
    if (!verbose)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

const char *mosquitto_client_address(const struct mosquitto *c) { return c->address; }
bool mosquitto_client_clean_session(const struct mosquitto *c) { return c->clean; }
const char *mosquitto_client_id(const struct mosquitto *c) { return c->id; }
int mosquitto_client_keepalive(const struct mosquitto *c) { return c->keepalive; }
int mosquitto_client_protocol_version(const struct mosquitto *c) { return c->protocol; }
const char *mosquitto_client_username(const struct mosquitto *c) { return c->username; }

/* Mosquitto disconnects the client at once: the disconnect event runs
 * inside this call. */
int mosquitto_kick_client_by_clientid(const char *clientid, bool with_will)
{
    struct mosquitto *c = NULL;
    struct mosquitto_evt_disconnect ed = {0};

    (void)with_will;
    if (clientid && !strcmp(clientid, dev_client.id))
        c = &dev_client;
    else if (clientid && !strcmp(clientid, be_client.id))
        c = &be_client;
    else if (clientid && !strcmp(clientid, br_client.id))
        c = &br_client;
    if (!c || !c->connected)
        return MOSQ_ERR_NOT_FOUND;
    kicks++;
    c->connected = 0;
    ed.client = c;
    ed.reason = MOSQ_ERR_ADMINISTRATIVE_ACTION;
    if (cbs[MOSQ_EVT_DISCONNECT])
        cbs[MOSQ_EVT_DISCONNECT](MOSQ_EVT_DISCONNECT, &ed, NULL);
    return MOSQ_ERR_SUCCESS;
}

/* The broker's own allocation for the message: it may fail, and then the
 * payload and properties stay the caller's. */
int mosquitto_broker_publish(const char *clientid, const char *topic, int payloadlen,
                             void *payload, int qos, bool retain, mosquitto_property *properties)
{
    void *msg = malloc(64);
    int command = clientid && !strcmp(clientid, DEV_ID) &&
                  !strncmp(topic, "/devices/dev1/commands", 22);
    (void)qos;
    (void)retain;
    (void)payloadlen;
    if (!msg) {
        commands_refused += command;
        return MOSQ_ERR_NOMEM;
    }
    commands_sent += command;
    share_copies += clientid && !strcmp(clientid, be_client.id);
    free(msg);
    if (clientid && !strcmp(clientid, DEV_ID) && !strcmp(topic, "/devices/dev1/config"))
        config_sent++;
    free(payload);
    mosquitto_property_free_all(&properties);
    return MOSQ_ERR_SUCCESS;
}

/* MQTT filter matching, as the broker's (enough for the plugin's shared
 * subscriptions: '+' one level, '#' the rest, including the parent). */
int mosquitto_topic_matches_sub(const char *sub, const char *topic, bool *result)
{
    *result = false;
    for (;;) {
        const char *es = strchr(sub, '/'), *et = strchr(topic, '/');
        size_t ls = es ? (size_t)(es - sub) : strlen(sub), lt = et ? (size_t)(et - topic) : strlen(topic);
        if (ls == 1 && sub[0] == '#') {
            *result = true;
            return MOSQ_ERR_SUCCESS;
        }
        if (!(ls == 1 && sub[0] == '+') && (ls != lt || memcmp(sub, topic, ls)))
            return MOSQ_ERR_SUCCESS;
        if (!es || !et) {
            *result = (!es && !et) || (es && !strcmp(es, "/#"));
            return MOSQ_ERR_SUCCESS;
        }
        sub = es + 1;
        topic = et + 1;
    }
}

int mosquitto_property_add_string_pair(mosquitto_property **proplist, int identifier,
                                       const char *name, const char *value)
{
    struct mosquitto__property_standin *p = calloc(1, sizeof *p), **pp;
    (void)identifier;
    if (!p)
        return MOSQ_ERR_NOMEM;
    p->name = strdup(name);
    p->value = p->name ? strdup(value) : NULL;
    if (!p->value) {
        free(p->name);
        free(p);
        return MOSQ_ERR_NOMEM;
    }
    for (pp = (struct mosquitto__property_standin **)proplist; *pp; pp = &(*pp)->next)
        ;
    *pp = p;
    return MOSQ_ERR_SUCCESS;
}

const mosquitto_property *mosquitto_property_read_string_pair(const mosquitto_property *proplist,
                                                              int identifier, char **name,
                                                              char **value, bool skip_first)
{
    const struct mosquitto__property_standin *p = (const struct mosquitto__property_standin *)proplist;
    (void)identifier;
    if (p && skip_first)
        p = p->next;
    if (!p)
        return NULL;
    *name = strdup(p->name);
    *value = strdup(p->value);
    return (const mosquitto_property *)p;
}

void mosquitto_property_free_all(mosquitto_property **properties)
{
    struct mosquitto__property_standin *p = (struct mosquitto__property_standin *)*properties, *n;
    for (; p; p = n) {
        n = p->next;
        free(p->name);
        free(p->value);
        free(p);
    }
    *properties = NULL;
}

/* # Driving the plugin through its entry points */

static char db[300], plugin_template[300];
static void *ud;

static lk_registry *writer(unsigned flags)
{
    lk_registry *r = NULL;
    char why[256] = "";
    if (lk_registry_open(db, flags, &r, why, sizeof why))
        h_fail("open %s: %s", db, why);
    return r;
}

static void make_plugin_template(void)
{
    lk_reg_credential cred = {LK_CRED_ES256_PEM, h_es256_pem, 0};
    lk_reg_device_spec spec = {0};
    static const uint8_t cfg[] = "{\"mode\":\"fast\"}";
    uint8_t h[32];
    char why[256];
    uint64_t num;
    lk_registry *r;

    snprintf(db, sizeof db, "%s/plugin.db", h_dir);
    snprintf(plugin_template, sizeof plugin_template, "%s/plugin-template.db", h_dir);
    h_remove_db(db);
    r = writer(LK_REG_CREATE);
    spec.id = "dev1";
    spec.creds = &cred;
    spec.ncreds = 1;
    spec.config = cfg;
    spec.config_len = sizeof cfg - 1;
    SHA256((const unsigned char *)SECRET, strlen(SECRET), h);
    if (lk_registry_create_registry(r, &H_NAME, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED,
                                    why, sizeof why) ||
        lk_registry_create_device(r, &H_NAME, &spec, &num, why, sizeof why) ||
        lk_registry_backend_create(r, "my-project", "analytics", h, why, sizeof why) ||
        lk_registry_bridge_set(r, "latchkeyd-1", h, 1700000000, why, sizeof why))
        h_fail("plugin template: %s", why);
    lk_registry_close(r);
    h_copy_file(db, plugin_template);
    h_remove_db(db);
}

static void tick(void)
{
    struct mosquitto_evt_tick ed = {0};
    cbs[MOSQ_EVT_TICK](MOSQ_EVT_TICK, &ed, NULL);
}

static void start(void)
{
    /* small tables: the defaults' megabytes, cleared on every start, would
     * only slow the loop (under ASan above all) */
    struct mosquitto_opt opt[] = {{"registry", db}, {"token_cache", "16"}, {"device_cache", "16"},
                                  {"limit_table", "1024"}};
    h_remove_db(db);
    h_copy_file(plugin_template, db);
    memset(cbs, 0, sizeof cbs);
    kicks = config_sent = commands_sent = commands_refused = 0;
    dev_client.connected = be_client.connected = br_client.connected = 0;
    if (mosquitto_plugin_init(plugin_id, &ud, opt, 4) != MOSQ_ERR_SUCCESS)
        h_fail("plugin init failed");
    tick();
}

static void stop(void)
{
    mosquitto_plugin_cleanup(ud, NULL, 0);
    h_remove_db(db);
}

static int auth(struct mosquitto *c, const char *password)
{
    struct mosquitto_evt_basic_auth ed = {0};
    int rc;
    ed.client = c;
    ed.username = (char *)c->username;
    ed.password = (char *)password;
    rc = cbs[MOSQ_EVT_BASIC_AUTH](MOSQ_EVT_BASIC_AUTH, &ed, NULL);
    if (rc == MOSQ_ERR_SUCCESS)
        c->connected = 1;
    return rc;
}

static int subscribe(struct mosquitto *c, const char *topic)
{
    struct mosquitto_evt_acl_check ed = {0};
    ed.client = c;
    ed.topic = topic;
    ed.access = MOSQ_ACL_SUBSCRIBE;
    ed.qos = 1;
    return cbs[MOSQ_EVT_ACL_CHECK](MOSQ_EVT_ACL_CHECK, &ed, NULL);
}

/* The bridge's publish as the broker runs it: the WRITE check, then (if
 * allowed) MOSQ_EVT_MESSAGE, which may replace the topic and properties. */
static struct mosquitto_evt_message bridge_msg;

static int bridge_publish(void)
{
    struct mosquitto_evt_acl_check ed = {0};
    int rc;
    ed.client = &br_client;
    ed.topic = BRIDGE_TOPIC;
    ed.access = MOSQ_ACL_WRITE;
    ed.qos = 1;
    ed.payload = "{}";
    ed.payloadlen = 2;
    rc = cbs[MOSQ_EVT_ACL_CHECK](MOSQ_EVT_ACL_CHECK, &ed, NULL);
    if (rc != MOSQ_ERR_SUCCESS)
        return rc;
    return cbs[MOSQ_EVT_MESSAGE](MOSQ_EVT_MESSAGE, &bridge_msg, NULL);
}

/* Mosquitto's own delivery of the bridge's message to the backend: the
 * READ check it runs right after the message event. */
static int backend_read(void)
{
    struct mosquitto_evt_acl_check ed = {0};
    ed.client = &be_client;
    ed.topic = bridge_msg.topic;
    ed.access = MOSQ_ACL_READ;
    ed.qos = 1;
    ed.payload = bridge_msg.payload;
    ed.payloadlen = bridge_msg.payloadlen;
    return cbs[MOSQ_EVT_ACL_CHECK](MOSQ_EVT_ACL_CHECK, &ed, NULL);
}

static void bridge_msg_reset(void)
{
    free(bridge_msg.topic);
    mosquitto_property_free_all(&bridge_msg.properties);
    memset(&bridge_msg, 0, sizeof bridge_msg);
}

/* Made before the armed step (the broker's allocation, not the plugin's). */
static void bridge_msg_make(void)
{
    bridge_msg_reset();
    bridge_msg.client = &br_client;
    bridge_msg.topic = strdup(BRIDGE_TOPIC);
    bridge_msg.payload = (void *)"{}";
    bridge_msg.payloadlen = 2;
    bridge_msg.qos = 1;
    if (!bridge_msg.topic)
        h_fail("bridge: out of memory");
}

static char *token, *bad_token;
static int64_t command_id;

enum path { P_CONNECT, P_CONNECT_BAD, P_BACKEND, P_BACKEND_BAD, P_BRIDGE, P_BRIDGE_BAD,
            P_BRIDGE_PUBLISH, P_SHARE, P_CONFIG, P_COMMAND, P_KICK, P_COUNT };
static const char *const path_names[P_COUNT] = {
    "connect (device token)", "connect, wrong signature", "connect (backend secret)",
    "connect, wrong secret", "connect (latchkeyd bridge)", "bridge, wrong secret",
    "bridge publish", "shared subscription copy", "config push", "command delivery", "kick (device blocked)"
};

/* Before the armed step. */
static void prepare(enum path p)
{
    start();
    if (p == P_CONFIG || p == P_COMMAND || p == P_KICK) {
        if (auth(&dev_client, token) != MOSQ_ERR_SUCCESS)
            h_fail("%s: the device does not connect", path_names[p]);
    }
    if (p == P_SHARE) {
        if (auth(&be_client, SECRET) != MOSQ_ERR_SUCCESS
            || subscribe(&be_client, "$share/g/latchkey/my-project/#") != MOSQ_ERR_SUCCESS)
            h_fail("%s: the backend does not connect and subscribe", path_names[p]);
        share_copies = 0;
    }
    if (p == P_BRIDGE_PUBLISH || p == P_SHARE) {
        if (auth(&br_client, SECRET) != MOSQ_ERR_SUCCESS)
            h_fail("%s: the bridge does not connect", path_names[p]);
        bridge_msg_make();
    }
    if (p == P_CONFIG) {
        if (subscribe(&dev_client, "/devices/dev1/config") != MOSQ_ERR_SUCCESS)
            h_fail("config: subscribe refused");
    }
    if (p == P_COMMAND) {
        char why[256];
        lk_registry *w = writer(0);
        if (subscribe(&dev_client, "/devices/dev1/commands/#") != MOSQ_ERR_SUCCESS)
            h_fail("command: subscribe refused");
        if (lk_registry_command_send(w, &H_NAME, "dev1", NULL, (const uint8_t *)"reboot", 6,
                                     &command_id, why, sizeof why))
            h_fail("command: %s", why);
        lk_registry_close(w);
    }
    if (p == P_KICK) {
        lk_reg_device_spec spec = {0};
        char why[256];
        lk_registry *w = writer(0);
        spec.id = "dev1";
        spec.blocked = 1;
        if (lk_registry_update_device(w, &H_NAME, &spec, LK_REG_SET_BLOCKED, why, sizeof why))
            h_fail("block: %s", why);
        lk_registry_close(w);
    }
}

/* The armed step: its broker-visible result. */
static int step(enum path p)
{
    switch (p) {
    case P_CONNECT: return auth(&dev_client, token);
    case P_CONNECT_BAD: return auth(&dev_client, bad_token);
    case P_BACKEND: return auth(&be_client, SECRET);
    case P_BACKEND_BAD: return auth(&be_client, SECRET "x");
    case P_BRIDGE: return auth(&br_client, SECRET);
    case P_BRIDGE_BAD: return auth(&br_client, SECRET "x");
    case P_BRIDGE_PUBLISH:
    case P_SHARE: return bridge_publish();
    case P_CONFIG:
    case P_COMMAND:
    case P_KICK:
    default:
        tick();
        return MOSQ_ERR_SUCCESS;
    }
}

/* After it, with nothing failing: what must hold. Returns 1 when the step
 * itself failed (refused, or left its work to a later tick). */
static int after(enum path p, int rc, long n)
{
    int i;

    switch (p) {
    case P_CONNECT:
    case P_BACKEND:
    case P_BRIDGE: {
        struct mosquitto *c = p == P_CONNECT ? &dev_client : p == P_BACKEND ? &be_client : &br_client;
        if (rc == MOSQ_ERR_SUCCESS)
            return 0;
        /* the server's failure is answered without CONNACK, so that the client retries:
         * CONNACK 5 would tell it its token or secret is bad */
        if (rc == MOSQ_ERR_AUTH)
            h_fail("%s: allocation %ld failed and the client was told CONNACK 5 (not authorised)",
                   path_names[p], n);
        /* refused for the server's want of memory: no CONNACK (the client
         * retries), or CONNACK 5; either way the client may connect again */
        if (auth(c, p == P_CONNECT ? token : SECRET) != MOSQ_ERR_SUCCESS)
            h_fail("%s: allocation %ld failed, then the client cannot connect", path_names[p], n);
        return 1;
    }
    case P_CONNECT_BAD:
    case P_BACKEND_BAD:
    case P_BRIDGE_BAD:
        if (rc == MOSQ_ERR_SUCCESS)
            h_fail("%s: allocation %ld failed and the client was let in", path_names[p], n);
        return 0;
    case P_BRIDGE_PUBLISH:
        /* rewritten downstream, or denied (PUBACK 0x87, latchkeyd retries);
         * any other answer would close the bridge's connection */
        if (rc == MOSQ_ERR_SUCCESS) {
            if (!bridge_msg.topic || strcmp(bridge_msg.topic,
                                            "latchkey/my-project/us-central1/reg1/dev1/events/a/b"))
                h_fail("bridge publish: allocation %ld failed and the topic is %s", n,
                       bridge_msg.topic ? bridge_msg.topic : "(none)");
            if (!bridge_msg.properties)
                h_fail("bridge publish: allocation %ld failed and the attributes are missing", n);
        } else if (rc != MOSQ_ERR_ACL_DENIED) {
            h_fail("bridge publish: allocation %ld failed and the plugin answered %d, which closes "
                   "the bridge", n, rc);
        }
        if (kicks || !br_client.connected)
            h_fail("bridge publish: allocation %ld failed and the bridge was closed", n);
        if (rc != MOSQ_ERR_SUCCESS) {
            /* the next publish passes */
            bridge_msg_make();
            if (bridge_publish() != MOSQ_ERR_SUCCESS)
                h_fail("bridge publish: allocation %ld failed, then the next publish is denied", n);
        }
        bridge_msg_reset();
        return rc != MOSQ_ERR_SUCCESS;
    case P_SHARE: {
        /* the member gets the plugin's copy or Mosquitto's, exactly one */
        int denied = rc == MOSQ_ERR_SUCCESS && backend_read() == MOSQ_ERR_ACL_DENIED;
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ACL_DENIED)
            h_fail("share: allocation %ld failed and the plugin answered %d", n, rc);
        if (share_copies != denied)
            h_fail("share: allocation %ld failed: %d copies from the plugin, Mosquitto's %s", n,
                   share_copies, denied ? "denied" : "allowed");
        bridge_msg_reset();
        return !denied;
    }
    case P_CONFIG:
        for (i = 0; i < 5 && !config_sent; i++)
            tick();
        if (config_sent != 1)
            h_fail("config push: allocation %ld failed and the config was sent %d times in 6 ticks",
                   n, config_sent);
        return i > 0;
    case P_COMMAND: {
        /* delivered, or decided and then refused by the broker (logged as
         * lost); never left pending while the device is there */
        lk_reg_command_status st = LK_CMD_PENDING;
        lk_registry *r;
        for (i = 0; i < 5 && !commands_sent && !commands_refused; i++)
            tick();
        r = writer(0);
        if (lk_registry_command_status(r, command_id, &st, NULL))
            h_fail("command: status");
        lk_registry_close(r);
        if (commands_sent + commands_refused != 1 || st != LK_CMD_DELIVERED)
            h_fail("command: allocation %ld failed and after 6 ticks the command was sent %d "
                   "times, refused %d times, its status %d", n, commands_sent, commands_refused,
                   (int)st);
        return i > 0 || commands_refused;
    }
    case P_KICK:
        for (i = 0; i < 5 && dev_client.connected; i++)
            tick();
        if (dev_client.connected || kicks != 1)
            h_fail("kick: allocation %ld failed and the blocked device is still connected after "
                   "6 ticks", n);
        return i > 0;
    default:
        return 0;
    }
}

void plugin_paths(void)
{
    int p;

    verbose = getenv("LK_FAILALLOC_VERBOSE") != NULL;
    token = h_token(0, 0);
    bad_token = h_token(0, 1);
    make_plugin_template();
    for (p = 0; p < P_COUNT; p++) {
        long n, failed = 0;
        int rc;
        struct timespec t0, t1;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        /* a clean run */
        prepare((enum path)p);
        rc = step((enum path)p);
        if ((p == P_CONNECT || p == P_BACKEND || p == P_BRIDGE || p == P_BRIDGE_PUBLISH
             || p == P_SHARE) &&
            rc != MOSQ_ERR_SUCCESS)
            h_fail("%s: a clean run fails (%d)", path_names[p], rc);
        if (after((enum path)p, rc, 0))
            h_fail("%s: a clean run needs more than its tick", path_names[p]);
        stop();
        for (n = 1;; n++) {
            prepare((enum path)p);
            fa_arm(n);
            rc = step((enum path)p);
            fa_disarm();
            if (!fa_hit()) {
                if (after((enum path)p, rc, n))
                    h_fail("%s: fails with no allocation failing", path_names[p]);
                stop();
                break;
            }
            failed += after((enum path)p, rc, n);
            stop();
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (p == P_CONNECT_BAD || p == P_BACKEND_BAD || p == P_BRIDGE_BAD)
            printf("plugin: %-26s %5ld allocation points, never let in (%.1f s)\n", path_names[p],
                   n - 1, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        else
            printf("plugin: %-26s %5ld allocation points; %ld failed then recovered%s, %ld absorbed "
                   "(%.1f s)\n", path_names[p], n - 1, failed,
                   p == P_CONFIG || p == P_COMMAND || p == P_KICK ? " on a later tick"
                   : p == P_BRIDGE_PUBLISH ? " (denied: 0x87, the next publish passes)"
                   : p == P_SHARE ? " (Mosquitto's copy allowed instead)"
                   : " (no CONNACK: the client retries and connects)",
                   n - 1 - failed,
                   (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    h_remove_db(plugin_template);
    free(token);
    free(bad_token);
}
