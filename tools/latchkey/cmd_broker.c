/*
 * latchkey broker check FILE: is a Mosquitto 2.0.11 configuration safe to run
 * latchkey's plugin with?
 *
 * Reads the configuration as Mosquitto does (broker_conf.c) and names every
 * missing or unsafe setting, one line each: FILE:LINE: SETTING: problem; fix.
 * A setting missing from the whole configuration is reported at line 0 of
 * the main file; one missing from a listener block at the `listener` line.
 * The figures are those of service/plugin/deploy/mosquitto-latchkey.conf and
 * docs/plugin.md, "Configuration".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "admin.h"
#include "broker_conf.h"
#include "tool.h"

#define CTX "broker check"

/* IoT Core's largest message: an event of 256 KiB. */
#define EVENT_MAX 262144LL
/* The largest legitimate packet: that event published with QoS 1 on the
 * longest device topic (/devices/ + 255-character id + /events/ + 256-character
 * subfolder = 528 bytes): 1 + 3 (header) + 2 + 528 + 2 (packet id) + 262,144. */
#define PACKET_LEGIT 262680LL
#define PACKET_SHIPPED 266240LL
/* Twice the largest legitimate packet: more only lets unauthenticated sockets
 * make the broker hold more. */
#define PACKET_CEILING 524288LL
/* The broker closes a silent client after 1.5 x keep-alive: 800 s is IoT
 * Core's 20-minute idle limit. */
#define KEEPALIVE_MAX 800LL
/* An offline backend must outlast an outage: at least 100,000 queued
 * messages, 1,000 s of 100 events/s (docs/plugin.md, "Backends"). */
#define OFFLINE_QUEUE_MIN 100000LL
#define AUTOSAVE_MAX 300LL
/* Mosquitto's default number of topic aliases per MQTT 5 client. */
#define TOPIC_ALIAS_DEFAULT 10LL

static const char broker_usage[] =
    "usage: latchkey broker check [--format text|json] FILE\n"
    "\n"
    "Reads a Mosquitto 2.0.11 configuration (and the files of its include_dir, as Mosquitto\n"
    "does) and names every missing or unsafe setting for latchkey's plugin, one line each:\n"
    "  FILE:LINE: SETTING: problem; fix\n"
    "(LINE 0: missing from the whole configuration). Exit 0 when there is none, 23 when\n"
    "there are (docs/cli.md). The shipped configuration is\n"
    "service/plugin/deploy/mosquitto-latchkey.conf; the figures are explained in\n"
    "docs/plugin.md, \"Configuration\".\n"
    "  --format text|json  output form (default text)\n";

#define ADDF(...)                              \
    do {                                       \
        if (bc_add(c, __VA_ARGS__) != 0)       \
            return -1;                         \
    } while (0)

static struct bc_at main_at(void)
{
    struct bc_at at = {0, 0};
    return at;
}

/* "listener 8883", "listener 8883 127.0.0.1", or the implicit one. */
static void listener_name(const struct bc_listener *l, char *buf, size_t n)
{
    if (l->implicit)
        snprintf(buf, n, "the implicit listener (port %ld%s%s)", l->port, l->host ? " " : " on every address",
                 l->host ? l->host : "");
    else
        snprintf(buf, n, "listener %ld%s%s", l->port, l->host ? " " : "", l->host ? l->host : "");
}

static int is_loopback(const struct bc_listener *l)
{
    unsigned char a[16];
    const char *h = l->host;
    if (l->port == 0)
        return 1; /* a Unix socket */
    if (l->opt[BL_BIND_INTERFACE].set && strcmp(l->opt[BL_BIND_INTERFACE].val, "lo") == 0)
        return 1;
    if (h == NULL)
        return 0;
    if (strcmp(h, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, h, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, h, a) == 1) {
        static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(a, one, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 127);
    }
    return 0;
}

static int has_tls(const struct bc_listener *l)
{
    return l->opt[BL_CERTFILE].set && l->opt[BL_KEYFILE].set;
}

/* The basename of a plugin path. */
static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s != NULL ? s + 1 : p;
}

static int check_listener(struct bc_conf *c, const struct bc_listener *l)
{
    char name[128];
    const struct bc_opt *o;
    int loop = is_loopback(l);

    listener_name(l, name, sizeof name);
    if (l->implicit && !c->g[BG_PORT].set && !c->g[BG_BIND_ADDRESS].set)
        ADDF(l->at, l->first_opt, "put it after a `listener` line, in that listener's block",
             "before any `listener` line of its file: Mosquitto creates %s for it, with the listener options "
             "given there",
             name);

    /* TLS: devices send their tokens as passwords. */
    if (!has_tls(l)) {
        if (!loop) {
            if (l->opt[BL_CERTFILE].set || l->opt[BL_KEYFILE].set)
                ADDF(l->at, "listener", "give both certfile and keyfile in the block",
                     "%s has %s without %s: Mosquitto runs it without TLS, on %s", name,
                     l->opt[BL_CERTFILE].set ? "certfile" : "keyfile",
                     l->opt[BL_CERTFILE].set ? "keyfile" : "certfile",
                     l->host ? l->host : "every address");
            else
                ADDF(l->at, "listener", "add certfile, keyfile and tls_version tlsv1.2, or bind it to 127.0.0.1",
                     "%s has no TLS and is not bound to loopback: device tokens would cross the network in clear",
                     name);
        }
    } else {
        o = &l->opt[BL_TLS_VERSION];
        if (!o->set)
            ADDF(l->at, "tls_version", "add tls_version tlsv1.2 in the block (1.2 and 1.3 are then accepted)",
                 "missing in %s: Mosquitto then enables TLS 1.1, and only OpenSSL's security level may refuse it",
                 name);
        else if (strcmp(o->val, "tlsv1.1") == 0)
            ADDF(o->at, "tls_version", "tls_version tlsv1.2 (1.2 and 1.3 are then accepted)",
                 "tlsv1.1 in %s: TLS 1.1 is enabled, and only OpenSSL's security level may refuse it", name);
        else if (strcmp(o->val, "tlsv1.2") != 0 && strcmp(o->val, "tlsv1.3") != 0)
            ADDF(o->at, "tls_version", "tls_version tlsv1.2",
                 "'%s' in %s is not tlsv1.1, tlsv1.2 or tlsv1.3: Mosquitto refuses to start", o->val, name);
    }

    o = &l->opt[BL_MAX_QOS];
    if (!o->set)
        ADDF(l->at, "max_qos", "add max_qos 1 inside the listener block",
             "missing in %s%s: QoS 2 is accepted, which IoT Core never offered", name,
             l->implicit ? "" : " (a listener option: one set before the first `listener` line does not apply)");
    else if (o->num != 1)
        ADDF(o->at, "max_qos", "max_qos 1",
             "%lld in %s: IoT Core's QoS is 0 and 1; a QoS 2 flow keeps state in the broker%s", o->num, name,
             o->num == 0 ? ", and QoS 1 devices are downgraded" : "");

    o = &l->opt[BL_MAX_CONNECTIONS];
    if (!o->set || o->num < 0)
        ADDF(o->set ? o->at : l->at, "max_connections",
             "add max_connections inside the listener block (110000 for ~100,000 devices: docs/plugin.md)",
             "%s in %s: it accepts sockets until the broker runs out of file descriptors, and one host "
             "can hold them all",
             o->set ? "negative (unlimited)" : "missing", name);
    else if (o->num == 0)
        ADDF(o->at, "max_connections", "max_connections 110000 (docs/plugin.md)",
             "0 in %s means unlimited to Mosquitto", name);

    o = &l->opt[BL_PROTOCOL];
    if (o->set && strcmp(o->val, "mqtt") != 0)
        ADDF(o->at, "protocol", "remove the listener (devices use MQTT over TLS)",
             "%s in %s: not MQTT over TLS as devices use it; the limits checked here were not measured for it",
             o->val, name);

    o = &l->opt[BL_MAX_TOPIC_ALIAS];
    if (o->set && o->num > TOPIC_ALIAS_DEFAULT)
        ADDF(o->at, "max_topic_alias", "max_topic_alias 10 (Mosquitto's default) or remove the line",
             "%lld in %s: each alias keeps a topic of up to max_packet_size bytes per MQTT 5 client", o->num,
             name);
    return 0;
}

/* What the configuration lets sockets that never authenticate request: the
 * sum of max_connections x max_packet_size (-1 when unbounded). */
static long long unauth_bytes(const struct bc_conf *c)
{
    long long conns = 0;
    unsigned i;
    if (!c->g[BG_MAX_PACKET_SIZE].set || c->g[BG_MAX_PACKET_SIZE].num < 20)
        return -1;
    for (i = 0; i <= c->nls; i++) {
        const struct bc_listener *l = i < c->nls ? &c->ls[i] : &c->def;
        if (i == c->nls && !c->def_used)
            break;
        if (!l->opt[BL_MAX_CONNECTIONS].set || l->opt[BL_MAX_CONNECTIONS].num <= 0)
            return -1;
        conns += l->opt[BL_MAX_CONNECTIONS].num;
    }
    return conns * c->g[BG_MAX_PACKET_SIZE].num;
}

static int check(struct bc_conf *c)
{
    const struct bc_opt *o;
    unsigned i, latchkey = 0, reachable = 0;

    o = &c->g[BG_PER_LISTENER];
    if (o->set && o->num)
        ADDF(o->at, "per_listener_settings", "per_listener_settings false (before any other security option)",
             "true: the broker's TICK events never arrive, so the plugin refuses every login");

    o = &c->g[BG_ALLOW_ANONYMOUS];
    if (o->set && o->num)
        ADDF(o->at, "allow_anonymous", "allow_anonymous false",
             "true: a client without a username is let in when no plugin decides");
    else if (!c->listener_lines)
        ADDF(main_at(), "listener", "add the TLS listeners of mosquitto-latchkey.conf",
             "no `listener` line: Mosquitto 2.0 then runs in local mode, on port 1883 of loopback only%s, and "
             "lets anonymous clients in",
             c->def_used ? " (or on the implicit listener)" : "");

    o = &c->g[BG_ALLOW_ZERO_LENGTH];
    if (!o->set || o->num)
        ADDF(o->set ? o->at : main_at(), "allow_zero_length_clientid", "allow_zero_length_clientid false",
             "%s: a client that sends an empty client id is given a generated one instead of being refused",
             o->set ? "true" : "missing (Mosquitto's default is true)");

    o = &c->g[BG_MAX_PACKET_SIZE];
    if (!o->set)
        ADDF(main_at(), "max_packet_size", "max_packet_size 266240 (a 256 KiB event plus 4 KiB of headers)",
             "missing: before a client is authenticated Mosquitto allocates whatever length its packet "
             "announces, up to 256 MiB per socket");
    else if (o->num < 20)
        ADDF(o->at, "max_packet_size", "max_packet_size 266240", "%lld is below 20: Mosquitto refuses to start",
             o->num);
    else if (o->num < PACKET_LEGIT)
        ADDF(o->at, "max_packet_size", "max_packet_size 266240",
             "%lld bytes: a 256 KiB event on the longest device topic (%lld bytes) does not fit, and Mosquitto "
             "closes the device's connection",
             o->num, PACKET_LEGIT);
    else if (o->num > PACKET_CEILING)
        ADDF(o->at, "max_packet_size", "max_packet_size 266240",
             "%lld bytes: every socket, authenticated or not, may make the broker hold this much; the largest "
             "legitimate packet is %lld bytes",
             o->num, PACKET_LEGIT);

    o = &c->g[BG_MESSAGE_SIZE_LIMIT];
    if (!o->set || o->num <= 0 || o->num > EVENT_MAX)
        ADDF(o->set ? o->at : main_at(), "message_size_limit", "message_size_limit 262144",
             "%s: publishes larger than IoT Core's 262,144 bytes reach the plugin",
             !o->set ? "missing" : o->num <= 0 ? "0 (no limit)" : "above 262144");

    o = &c->g[BG_MAX_KEEPALIVE];
    if (!o->set)
        ADDF(main_at(), "max_keepalive", "max_keepalive 800 (1.5 x 800 s = IoT Core's 20-minute idle limit)",
             "missing (65535): an MQTT 5 client may keep a silent connection open for 1.5 x 65535 s (27 hours)");
    else if (o->num < 10 || o->num > 65535)
        ADDF(o->at, "max_keepalive", "max_keepalive 800", "%lld is outside 10 to 65535: Mosquitto refuses to start",
             o->num);
    else if (o->num > KEEPALIVE_MAX)
        ADDF(o->at, "max_keepalive", "max_keepalive 800 (1.5 x 800 s = 20 minutes)",
             "%lld s: the broker closes a silent MQTT 5 client only after 1.5 x %lld = %lld s, beyond IoT "
             "Core's 20-minute idle limit",
             o->num, o->num, o->num * 3 / 2);

    o = &c->g[BG_MAX_INFLIGHT];
    if (o->set && (o->num <= 0 || o->num == 65535))
        ADDF(o->at, "max_inflight_messages", "max_inflight_messages 20",
             "%lld: no limit on unacknowledged messages per client", o->num);

    o = &c->g[BG_MAX_QUEUED];
    if (o->set && o->num <= 0 && (!c->g[BG_MAX_QUEUED_BYTES].set || c->g[BG_MAX_QUEUED_BYTES].num <= 0))
        ADDF(o->at, "max_queued_messages", "max_queued_messages 1000000 and max_queued_bytes 1073741824",
             "%lld: no limit on the messages queued for one client (and none in bytes)", o->num);
    else if (!o->set || (o->num > 0 && o->num < OFFLINE_QUEUE_MIN))
        ADDF(o->set ? o->at : main_at(), "max_queued_messages", "max_queued_messages 1000000",
             "%s: an offline backend's session keeps only that many messages (Mosquitto's default 1,000 "
             "is ten seconds of 100 events/s); the rest are dropped",
             o->set ? "too small" : "missing");

    o = &c->g[BG_PERSISTENCE];
    if (!o->set || !o->num)
        ADDF(o->set ? o->at : main_at(), "persistence", "persistence true (Debian's mosquitto.conf has it)",
             "%s: what is queued for offline backends, and their sessions, are lost at every restart",
             o->set ? "false" : "missing");
    o = &c->g[BG_AUTOSAVE_INTERVAL];
    if (c->g[BG_PERSISTENCE].num && (!o->set || o->num <= 0 || o->num > AUTOSAVE_MAX))
        ADDF(o->set ? o->at : main_at(), "autosave_interval", "autosave_interval 60",
             "%s: a broker that is killed loses what was queued since the last save (Mosquitto's default "
             "is 1,800 s)", o->set ? "too long (or 0: only at shutdown)" : "missing");

    o = &c->g[BG_MEMORY_LIMIT];
    if (!o->set || o->num <= 0) {
        long long worst = unauth_bytes(c);
        char figure[96];
        if (worst < 0)
            snprintf(figure, sizeof figure, "memory without bound (max_connections or max_packet_size missing)");
        else
            snprintf(figure, sizeof figure, "%lld bytes (%.1f GB: max_connections x max_packet_size)", worst,
                     (double)worst / 1e9);
        ADDF(o->set ? o->at : main_at(), "memory_limit",
             "memory_limit of about half the machine's memory (8589934592 for 16 GiB)",
             "%s: nothing bounds the broker's memory as a whole; sockets that never authenticate may make it "
             "hold %s, and the kernel kills the broker first",
             o->set ? "0" : "missing", figure);
    }

    o = &c->g[BG_RETAIN_AVAILABLE];
    if (o->set && !o->num)
        ADDF(o->at, "retain_available", "retain_available true (or remove the line)",
             "false: retained messages are refused, and latchkey's presence messages are to be retained");

    o = &c->g[BG_USER];
    if (o->set && strcmp(o->val, "root") == 0)
        ADDF(o->at, "user", "user mosquitto (the registry must be writable by it)",
             "root: the broker and the plugin keep root's rights for their whole life");

    if (c->g[BG_PASSWORD_FILE].set)
        ADDF(c->g[BG_PASSWORD_FILE].at, "password_file", "remove it: the plugin decides every login",
             "a second source of logins next to the plugin");
    if (c->g[BG_ACL_FILE].set)
        ADDF(c->g[BG_ACL_FILE].at, "acl_file", "remove it: the plugin decides every topic",
             "a second source of topic permissions next to the plugin");
    if (c->g[BG_PSK_FILE].set)
        ADDF(c->g[BG_PSK_FILE].at, "psk_file", "remove it: devices authenticate with tokens over certificate TLS",
             "TLS-PSK identities: clients that authenticate without the server's certificate");

    if (c->bridges > 0)
        ADDF(c->first_bridge, "connection", "remove the bridge",
             "a bridge: what it brings in from another broker is neither authenticated nor checked by the plugin");

    for (i = 0; i < c->npl; i++) {
        const struct bc_plugin *p = &c->pl[i];
        if (strcmp(base_name(p->path), "latchkey_plugin.so") != 0) {
            ADDF(p->at, "plugin", "remove it",
                 "%s is another plugin: the first plugin that answers a login or topic check decides, so what "
                 "it allows never reaches latchkey",
                 p->path);
            continue;
        }
        if (latchkey++ > 0) {
            ADDF(p->at, "plugin", "load the latchkey plugin once", "the latchkey plugin is loaded a second time");
            continue;
        }
        if (!p->registry.set)
            ADDF(p->at, "plugin_opt_registry", "plugin_opt_registry /var/lib/latchkey/registry.db after this line",
                 "missing for the latchkey plugin: it does not start without its registry database");
    }
    if (latchkey == 0)
        ADDF(main_at(), "plugin", "plugin /usr/lib/latchkey/latchkey_plugin.so and plugin_opt_registry",
             "the latchkey plugin (latchkey_plugin.so) is not loaded: devices are not authenticated by their "
             "tokens");

    for (i = 0; i < c->nls; i++) {
        unsigned j;
        for (j = 0; j < i; j++)
            if (c->ls[j].port == c->ls[i].port && c->ls[j].port != 0 &&
                ((c->ls[j].host == NULL && c->ls[i].host == NULL) ||
                 (c->ls[j].host != NULL && c->ls[i].host != NULL && strcmp(c->ls[j].host, c->ls[i].host) == 0)))
                break;
        if (j < i) {
            ADDF(c->ls[i].at, "listener", "keep one listener per port and address",
                 "listener %ld is defined a second time (first at %s:%u): Mosquitto cannot bind it twice and "
                 "refuses to start",
                 c->ls[i].port, c->files[c->ls[j].at.file], c->ls[j].at.line);
            continue;
        }
        if (check_listener(c, &c->ls[i]) != 0)
            return -1;
        reachable += !is_loopback(&c->ls[i]);
    }
    if (c->def_used) {
        if (check_listener(c, &c->def) != 0)
            return -1;
        reachable += !is_loopback(&c->def);
    }
    if (c->listener_lines && reachable == 0)
        ADDF(main_at(), "listener", "add the TLS listeners of mosquitto-latchkey.conf (8883 and 443)",
             "every listener is bound to loopback: devices cannot connect");
    return 0;
}

static int cmp_finding(const void *a, const void *b)
{
    const struct bc_finding *x = a, *y = b;
    if (x->at.file != y->at.file)
        return x->at.file < y->at.file ? -1 : 1;
    if (x->at.line != y->at.line)
        return x->at.line < y->at.line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq; /* qsort is not stable */
}

static unsigned listener_count(const struct bc_conf *c)
{
    return c->nls + (c->def_used ? 1u : 0u);
}

static int print_json(const struct bc_conf *c, const char *path)
{
    json_t *root = json_object(), *files = json_array(), *probs = json_array();
    unsigned i;
    if (root == NULL || files == NULL || probs == NULL) {
        json_decref(root);
        json_decref(files);
        json_decref(probs);
        tool_error(CTX, LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    for (i = 0; i < c->nfiles; i++)
        json_array_append_new(files, out_jtext(c->files[i], strlen(c->files[i])));
    for (i = 0; i < c->nf; i++) {
        const struct bc_finding *f = &c->f[i];
        json_array_append_new(probs, json_pack("{s:o, s:I, s:o, s:o, s:o}", "file",
                                               out_jtext(c->files[f->at.file], strlen(c->files[f->at.file])),
                                               "line", (json_int_t)f->at.line, "setting",
                                               out_jtext(f->setting, strlen(f->setting)), "problem",
                                               out_jtext(f->problem, strlen(f->problem)), "fix",
                                               out_jtext(f->fix, strlen(f->fix))));
    }
    json_object_set_new(root, "file", out_jtext(path, strlen(path)));
    json_object_set_new(root, "clean", json_boolean(c->nf == 0));
    json_object_set_new(root, "files", files);
    json_object_set_new(root, "listeners", json_integer(listener_count(c)));
    json_object_set_new(root, "problems", probs);
    return out_json(root);
}

int broker_check(const char *path, int json)
{
    struct bc_conf c;
    char why[1024];
    unsigned i;
    int rc;
    lk_err err = bc_read(&c, path, why, sizeof why);

    if (err != LK_OK) {
        int e = c.err_no;
        tool_error(CTX, err, "%s", why[0] ? why : lk_strerror(err));
        bc_free(&c);
        if (err == LK_ERR_TOO_LARGE)
            return EXIT_REG_LIMIT;
        return err == LK_ERR_IO && (e == ENOENT || e == ENOTDIR) ? EXIT_NOT_FOUND : EXIT_FAIL;
    }
    if (check(&c) != 0) {
        bc_free(&c);
        tool_error(CTX, LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    if (c.nf > 1) /* qsort must not be given a NULL array, even empty */
        qsort(c.f, c.nf, sizeof *c.f, cmp_finding);
    if (json) {
        rc = print_json(&c, path);
    } else {
        for (i = 0; i < c.nf; i++)
            printf("%s:%u: %s: %s; %s\n", c.files[c.f[i].at.file], c.f[i].at.line, c.f[i].setting,
                   c.f[i].problem, c.f[i].fix);
        if (c.nf == 0)
            printf("%s: no problems found (%u file%s, %u listener%s)\n", path, c.nfiles, c.nfiles == 1 ? "" : "s",
                   listener_count(&c), listener_count(&c) == 1 ? "" : "s");
        rc = out_finish(EXIT_OK);
    }
    if (rc == EXIT_OK && c.nf > 0) {
        fprintf(stderr, "%s: %s: %s: %u problem%s found\n", tool_name, CTX, path, c.nf, c.nf == 1 ? "" : "s");
        rc = EXIT_BROKER_CHECK;
    }
    bc_free(&c);
    return rc;
}

int cmd_broker(int argc, char **argv)
{
    enum { O_FORMAT = 256, O_HELP };
    static const struct option lopts[] = {
        {"format", required_argument, 0, O_FORMAT}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    int c, json = 0;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(broker_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "check") != 0) {
        fputs(broker_usage, stderr);
        return tool_usage_error("broker: unknown command '%s' (check)", argv[1]);
    }
    argc--;
    argv++;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
        switch (c) {
        case O_FORMAT:
            if (tool_parse_format(CTX, optarg, &json) != EXIT_OK)
                return EXIT_USAGE;
            break;
        case 'h':
        case O_HELP: fputs(broker_usage, stdout); return EXIT_OK;
        case ':': return tool_usage_error(CTX ": %s needs a value", tool_shown(argv[optind - 1]));
        default: return tool_usage_error(CTX ": unknown option '%s'", tool_shown(argv[optind - 1]));
        }
    }
    if (optind >= argc)
        return tool_usage_error(CTX ": no configuration FILE given");
    if (optind + 1 < argc)
        return tool_usage_error(CTX ": one configuration FILE at a time ('%s' is extra)", argv[optind + 1]);
    return broker_check(argv[optind], json);
}
