/*
 * latchkey registries create | list | describe | update | delete
 * latchkey registries credentials create | list | describe | delete
 * latchkey registries signers|crls ... (cmd_manifest.c)
 *
 * IoT Core's device registries (gcloud iot registries ...) with their CA
 * certificates.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "admin.h"
#include "manifest.h"
#include "regops.h"

static const char registries_usage[] =
    "usage: latchkey [--db FILE] registries COMMAND REGISTRY --project P --region L [options]\n"
    "\n"
    "  create REGISTRY   [--enable-mqtt-config|--no-enable-mqtt-config]\n"
    "                    [--enable-http-config|--no-enable-http-config]\n"
    "                    [--event-notification-config topic=TOPIC[,subfolder=SUBFOLDER]]...\n"
    "                    [--state-pubsub-topic TOPIC] [--public-key-path CA.pem]\n"
    "  list              [--project P] [--region L]   (all registries without them)\n"
    "  describe REGISTRY\n"
    "  update REGISTRY   [the create options except --public-key-path]\n"
    "                    [--clear-event-notification-configs] [--clear-state-pubsub-topic]\n"
    "  delete REGISTRY   (refused while it has devices)\n"
    "  credentials create --registry R --path CA.pem\n"
    "  credentials list   --registry R\n"
    "  credentials describe INDEX --registry R\n"
    "  credentials delete INDEX --registry R\n"
    "  import FILE|-     (IoT Core's DeviceRegistries, as gcloud printed them; see\n"
    "                    'latchkey registries import --help')\n"
    "  signers add --label L --path KEY.pem | list | delete INDEX --registry R\n"
    "                    (manufacturer keys trusted for signed manifests)\n"
    "  crls add --path CRL.pem [--issuer-chain CHAIN.pem] | list | delete INDEX --registry R\n"
    "  jit --registry R  (--enable [--max-devices N] | --disable | --show): just-in-time\n"
    "                    registration (docs/provisioning.md)\n"
    "\n"
    "'latchkey registries COMMAND --help' shows one command.\n"
    "Common options: --db FILE (or LATCHKEY_DB; only 'registries create' creates a missing\n"
    "database), --project P (or LATCHKEY_PROJECT), --region L (alias --location; or\n"
    "LATCHKEY_REGION), --format text|json, --busy-timeout MS (default 5000).\n"
    "A REGISTRY may also be given as projects/P/locations/L/registries/R.\n"
    "Through latchkeyd's admin API instead of --db: --api URL --key-file KEY.json [--ca-file CA.pem]\n"
    "(or LATCHKEY_API, LATCHKEY_KEY_FILE, LATCHKEY_CA_FILE, or the config file; docs/cli.md);\n"
    "import works only with --db.\n"
    "Exit codes: docs/cli.md.\n";

/* Each subcommand's own usage ('latchkey registries create --help'). */
#define REG_COMMON                                                                              \
    "Common options: --project P (or LATCHKEY_PROJECT), --region L (alias --location; or\n"    \
    "LATCHKEY_REGION), --db FILE (or LATCHKEY_DB), --format text|json, --busy-timeout MS.\n"   \
    "A REGISTRY may also be given as projects/P/locations/L/registries/R. Exit codes: docs/cli.md.\n"
#define REG_NOTE                                                                                \
    "Notification configs route events and states to Pub/Sub topics of the registry's project\n" \
    "(docs/delivery.md); a TOPIC without '/' means projects/P/topics/TOPIC. httpConfig is\n"   \
    "stored and shown, but not yet in effect: setting it prints a note saying so.\n"
#define REG_USAGE(line, text) "usage: latchkey [--db FILE] registries " line "\n\n" text "\n" REG_COMMON

static const char u_create[] = REG_USAGE(
    "create REGISTRY --project P --region L\n"
    "         [--enable-mqtt-config|--no-enable-mqtt-config]\n"
    "         [--enable-http-config|--no-enable-http-config]\n"
    "         [--event-notification-config topic=TOPIC[,subfolder=SUBFOLDER]]...\n"
    "         [--state-pubsub-topic TOPIC] [--public-key-path CA.pem]",
    "Creates a registry (MQTT and HTTP enabled unless said otherwise), with its first CA\n"
    "certificate if given, in one transaction: if any part is refused, nothing is created.\n"
    "Only 'registries create' (and 'backends create') create a missing database.\n" REG_NOTE);
static const char u_list[] = REG_USAGE("list [--project P] [--region L]",
                                       "Lists the registries (of P and L when given): ID, PROJECT, LOCATION, "
                                       "MQTT, HTTP,\nCA_CERTS, DEVICES.\n");
static const char u_describe[] = REG_USAGE("describe REGISTRY --project P --region L",
                                           "Shows the registry (IoT Core's DeviceRegistry) with its CA "
                                           "certificates.\n");
static const char u_update[] = REG_USAGE(
    "update REGISTRY --project P --region L [--[no-]enable-mqtt-config] [--[no-]enable-http-config]\n"
    "         [--event-notification-config topic=TOPIC[,subfolder=S]]... [--state-pubsub-topic TOPIC]\n"
    "         [--clear-event-notification-configs] [--clear-state-pubsub-topic]\n"
    "       update REGISTRY --project P --region L --log-level none|error|info|debug|unspecified",
    "--event-notification-config replaces all of them. --log-level (IoT Core's logLevel, alone: one\n"
    "change) is how much the broker logs of the registry's devices that have no level of their own,\n"
    "live (docs/plugin.md, \"Logs\").\n" REG_NOTE);
static const char u_delete[] = REG_USAGE("delete REGISTRY --project P --region L",
                                         "Deletes the registry; refused while it has devices (exit 17).\n");
static const char u_cred_create[] = REG_USAGE("credentials create --registry R --path CA.pem --project P --region L",
                                              "Adds a CA certificate (X.509v3 PEM, a CA, RSA 2048-8192 or P-256, "
                                              "not expired;\nat most 10).\n");
static const char u_cred_list[] = REG_USAGE("credentials list --registry R --project P --region L",
                                            "The CA certificates: INDEX, SUBJECT, ISSUER, NOT_BEFORE, NOT_AFTER, "
                                            "KEY_TYPE.\n");
static const char u_cred_describe[] = REG_USAGE("credentials describe INDEX --registry R --project P --region L",
                                                "One CA certificate; INDEX as 'credentials list' shows it.\n");
static const char u_cred_delete[] = REG_USAGE("credentials delete INDEX --registry R --project P --region L",
                                              "Deletes one CA certificate (those after it move up one index).\n");
static const char u_creds[] =
    "usage: latchkey [--db FILE] registries credentials create|list|describe|delete --registry R ...\n"
    "\n"
    "  credentials create --registry R --path CA.pem\n"
    "  credentials list   --registry R\n"
    "  credentials describe INDEX --registry R\n"
    "  credentials delete INDEX --registry R\n"
    "Run 'latchkey registries credentials COMMAND --help' for one of them.\n";

enum {
    OPT_MQTT_ON = OPT_FIRST_OWN,
    OPT_MQTT_OFF,
    OPT_HTTP_ON,
    OPT_HTTP_OFF,
    OPT_EVENT,
    OPT_STATE_TOPIC,
    OPT_CLEAR_EVENT,
    OPT_CLEAR_STATE,
    OPT_CA_PATH,
    OPT_PATH,
    OPT_LOG_LEVEL
};

/* ---- JSON shapes ---- */

static const char *mqtt_state_name(lk_reg_state s)
{
    return s == LK_REG_STATE_ENABLED ? "MQTT_ENABLED"
           : s == LK_REG_STATE_DISABLED ? "MQTT_DISABLED" : "MQTT_STATE_UNSPECIFIED";
}

static const char *http_state_name(lk_reg_state s)
{
    return s == LK_REG_STATE_ENABLED ? "HTTP_ENABLED"
           : s == LK_REG_STATE_DISABLED ? "HTTP_DISABLED" : "HTTP_STATE_UNSPECIFIED";
}

static json_t *registry_name(const char *project, const char *location, const char *id)
{
    char s[LK_REGISTRY_PATH_MAX + 1];
    if (lk_registry_path(project, location, id, s, sizeof s, NULL) != LK_OK)
        return NULL;
    return json_string(s);
}

json_t *admin_registry_json(const lk_reg_registry *r)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    json_object_set_new(j, "id", json_string(r->id));
    json_object_set_new(j, "name", registry_name(r->project, r->location, r->id));
    if (r->event_notification_json != NULL && r->event_notification_json[0] != '\0') {
        json_t *e = json_loads(r->event_notification_json, 0, NULL);
        if (e != NULL)
            json_object_set_new(j, "eventNotificationConfigs", e);
    }
    if (r->state_notification_json != NULL && r->state_notification_json[0] != '\0') {
        json_t *e = json_loads(r->state_notification_json, 0, NULL);
        if (e != NULL)
            json_object_set_new(j, "stateNotificationConfig", e);
    }
    json_object_set_new(j, "mqttConfig", json_pack("{s:s}", "mqttEnabledState", mqtt_state_name(r->mqtt)));
    json_object_set_new(j, "httpConfig", json_pack("{s:s}", "httpEnabledState", http_state_name(r->http)));
    if (r->log_level != LK_LOG_LEVEL_UNSPECIFIED)
        json_object_set_new(j, "logLevel", json_string(admin_enum_name(ADMIN_ENUM_LOG_LEVEL, (int)r->log_level)));
    return j;
}

json_t *admin_cert_json(const lk_reg_cert *c)
{
    json_t *d = json_object(), *pkc = json_object(), *j = json_object();
    if (d == NULL || pkc == NULL || j == NULL) {
        json_decref(d);
        json_decref(pkc);
        json_decref(j);
        return NULL;
    }
    json_object_set_new(d, "issuer", json_string(c->issuer ? c->issuer : ""));
    json_object_set_new(d, "subject", json_string(c->subject ? c->subject : ""));
    json_object_set_new(d, "startTime", out_jtime(c->not_before));
    json_object_set_new(d, "expiryTime", out_jtime(c->not_after));
    json_object_set_new(d, "publicKeyType", json_string(c->key_type ? c->key_type : ""));
    json_object_set_new(pkc, "format", json_string("X509_CERTIFICATE_PEM"));
    json_object_set_new(pkc, "certificate", json_string(c->pem ? c->pem : ""));
    json_object_set_new(pkc, "x509Details", d);
    json_object_set_new(j, "publicKeyCertificate", pkc);
    return j;
}

/* ---- helpers ---- */

struct certs_ctx {
    json_t *arr;          /* JSON: the credentials array */
    struct out_table *t;  /* text */
    int want;             /* describe: this index only (-1 = all) */
    int found;
    int failed;
};

static int cert_cb(void *arg, const lk_reg_cert *c)
{
    struct certs_ctx *x = arg;
    if (x->want >= 0 && (unsigned)x->want != c->index)
        return 0;
    x->found = 1;
    if (x->arr != NULL) {
        json_t *cj = admin_cert_json(c);
        if (cj == NULL || json_array_append_new(x->arr, cj) != 0)
            x->failed = 1;
    }
    if (x->t != NULL) {
        char idx[16], nb[48], na[48];
        const char *row[6];
        snprintf(idx, sizeof idx, "%u", c->index);
        row[0] = idx;
        row[1] = c->subject;
        row[2] = c->issuer;
        row[3] = lk_time_rfc3339(c->not_before, nb, sizeof nb);
        row[4] = lk_time_rfc3339(c->not_after, na, sizeof na);
        row[5] = c->key_type;
        if (out_table_row(x->t, row) != 0)
            x->failed = 1;
    }
    return x->failed;
}

/* The registry's certificates as IoT Core's credentials array. */
static int certs_json(struct admin *a, const lk_reg_name *name, json_t **out)
{
    char why[512] = "";
    struct certs_ctx x = {json_array(), NULL, -1, 0, 0};
    lk_err err;
    *out = NULL;
    if (x.arr == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    err = rop_list_certs(a, name, cert_cb, &x, why, sizeof why);
    if (err != LK_OK || x.failed) {
        json_decref(x.arr);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    *out = x.arr;
    return EXIT_OK;
}

static int print_registry(struct admin *a)
{
    char why[512] = "";
    lk_reg_registry r;
    json_t *j, *certs = NULL;
    lk_err err;
    int rc;

    memset(&r, 0, sizeof r);
    err = rop_get_registry(a, &a->name, &r, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    j = admin_registry_json(&r);
    lk_reg_registry_free(&r);
    if (j == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    rc = certs_json(a, &a->name, &certs);
    if (rc != EXIT_OK) {
        json_decref(j);
        return rc;
    }
    if (json_array_size(certs) > 0)
        json_object_set_new(j, "credentials", certs);
    else
        json_decref(certs);
    return a->json ? out_json(j) : out_yaml(j);
}

struct notif {
    json_t *events; /* array, or NULL when not given */
    int clear_events;
    const char *state_topic;
    int clear_state;
};

struct event_item {
    const struct admin *a;
    const char *topic, *subfolder;
};

static int event_kv(void *ctx, const char *k, const char *v)
{
    struct event_item *e = ctx;
    if (strcmp(k, "topic") == 0)
        e->topic = v;
    else if (strcmp(k, "subfolder") == 0)
        e->subfolder = v;
    else
        return tool_usage_error("%s: --event-notification-config: unknown key '%s' (topic, subfolder)",
                                e->a->cmd, k);
    return EXIT_OK;
}

static int add_event(struct admin *a, struct notif *n, const char *arg)
{
    struct event_item e = {a, NULL, NULL};
    json_t *o;
    int rc = admin_dict(a, "--event-notification-config", arg, event_kv, &e);
    if (rc != EXIT_OK)
        return rc;
    if (e.topic == NULL || e.topic[0] == '\0')
        return tool_usage_error("%s: --event-notification-config needs topic=TOPIC", a->cmd);
    if (n->events == NULL && (n->events = json_array()) == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    /* IoT Core: only the last config may omit subfolderMatches (the catch-all). */
    o = e.subfolder != NULL ? json_pack("{s:s,s:s}", "subfolderMatches", e.subfolder, "pubsubTopicName", e.topic)
                            : json_pack("{s:s}", "pubsubTopicName", e.topic);
    if (o == NULL || json_array_append_new(n->events, o) != 0)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    return EXIT_OK;
}

/* gcloud's shorthand: a topic id without '/' is the registry's project's
 * topic, projects/PROJECT/topics/TOPIC (the registry refuses other projects'
 * topics). A new string, or NULL when out of memory. */
static json_t *topic_path(const struct admin *a, const char *topic)
{
    char buf[LK_PROJECT_MAX + LK_PUBSUB_NAME_MAX + 32];
    if (strchr(topic, '/') != NULL || a->name.project == NULL ||
        (size_t)snprintf(buf, sizeof buf, "projects/%s/topics/%s", a->name.project, topic) >= sizeof buf)
        return json_string(topic);
    return json_string(buf);
}

/* The notification JSON texts for update_registry (NULL = leave, "" = clear). */
static int notif_texts(struct admin *a, struct notif *n, char **ev, char **st)
{
    size_t i;
    *ev = *st = NULL;
    for (i = 0; n->events != NULL && i < json_array_size(n->events); i++) {
        json_t *o = json_array_get(n->events, i);
        json_t *t = topic_path(a, json_string_value(json_object_get(o, "pubsubTopicName")));
        if (t == NULL || json_object_set_new(o, "pubsubTopicName", t) != 0)
            return admin_fail(a, LK_ERR_NOMEM, NULL);
    }
    if (n->events != NULL && n->clear_events)
        return tool_usage_error("%s: --event-notification-config and --clear-event-notification-configs "
                                "exclude each other",
                                a->cmd);
    if (n->state_topic != NULL && n->clear_state)
        return tool_usage_error("%s: --state-pubsub-topic and --clear-state-pubsub-topic exclude each other",
                                a->cmd);
    if (n->events != NULL)
        *ev = json_dumps(n->events, JSON_COMPACT | JSON_PRESERVE_ORDER);
    else if (n->clear_events)
        *ev = strdup("");
    if (n->state_topic != NULL && n->state_topic[0] != '\0') {
        json_t *o = json_pack("{s:o}", "pubsubTopicName", topic_path(a, n->state_topic));
        *st = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
    } else if (n->clear_state || n->state_topic != NULL) {
        *st = strdup("");
    }
    if ((n->events != NULL || n->clear_events) && *ev == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    if ((n->state_topic != NULL || n->clear_state) && *st == NULL) {
        free(*ev);
        *ev = NULL;
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    }
    return EXIT_OK;
}

/* ---- registries create | update ---- */

static int create_or_update(struct admin *a, int argc, char **argv, int create)
{
    static const struct option opts[] = {
        ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
        {"enable-mqtt-config", no_argument, 0, OPT_MQTT_ON},
        {"no-enable-mqtt-config", no_argument, 0, OPT_MQTT_OFF},
        {"enable-http-config", no_argument, 0, OPT_HTTP_ON},
        {"no-enable-http-config", no_argument, 0, OPT_HTTP_OFF},
        {"event-notification-config", required_argument, 0, OPT_EVENT},
        {"state-pubsub-topic", required_argument, 0, OPT_STATE_TOPIC},
        {"clear-event-notification-configs", no_argument, 0, OPT_CLEAR_EVENT},
        {"clear-state-pubsub-topic", no_argument, 0, OPT_CLEAR_STATE},
        {"public-key-path", required_argument, 0, OPT_CA_PATH},
        {"log-level", required_argument, 0, OPT_LOG_LEVEL},
        {0, 0, 0, 0}};
    lk_reg_state mqtt = LK_REG_STATE_UNSPECIFIED, http = LK_REG_STATE_UNSPECIFIED;
    struct notif n = {NULL, 0, NULL, 0};
    const char *ca_path = NULL, *id = NULL;
    char *ev = NULL, *st = NULL;
    uint8_t *ca = NULL;
    size_t ca_len = 0;
    char why[512] = "";
    lk_err err;
    int c, rc = EXIT_OK, log_level = -1;

    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        switch (c) {
        case OPT_LOG_LEVEL:
            if (create) {
                rc = tool_usage_error("%s: --log-level is for update", a->cmd);
                goto out;
            }
            if ((rc = admin_log_level_arg(a, optarg, &log_level)) != EXIT_OK)
                goto out;
            break;
        case OPT_MQTT_ON: mqtt = LK_REG_STATE_ENABLED; break;
        case OPT_MQTT_OFF: mqtt = LK_REG_STATE_DISABLED; break;
        case OPT_HTTP_ON: http = LK_REG_STATE_ENABLED; break;
        case OPT_HTTP_OFF: http = LK_REG_STATE_DISABLED; break;
        case OPT_EVENT:
            if ((rc = add_event(a, &n, optarg)) != EXIT_OK)
                goto out;
            break;
        case OPT_STATE_TOPIC: n.state_topic = optarg; break;
        case OPT_CLEAR_EVENT: n.clear_events = 1; break;
        case OPT_CLEAR_STATE: n.clear_state = 1; break;
        case OPT_CA_PATH:
            if (!create) {
                rc = tool_usage_error("%s: --public-key-path is for create; use 'registries credentials "
                                      "create --path'", a->cmd);
                goto out;
            }
            ca_path = optarg;
            break;
        default: fputs(a->usage, stderr); rc = EXIT_USAGE; goto out;
        }
    }
    if (rc != EXIT_OK) {
        if (rc == ADMIN_HELP)
            rc = EXIT_OK;
        goto out;
    }
    if (optind < argc)
        id = argv[optind++];
    else if (a->registry != NULL)
        id = a->registry;
    if (id == NULL || optind < argc) {
        rc = tool_usage_error(id == NULL ? "%s: which registry? (REGISTRY)" : "%s: unexpected argument '%s'",
                              a->cmd, optind < argc ? argv[optind] : "");
        goto out;
    }
    a->registry = NULL;
    if ((rc = admin_resolve(a, id, 0, &id)) != EXIT_OK)
        goto out;
    a->registry = id;
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK)
        goto out;
    if ((rc = notif_texts(a, &n, &ev, &st)) != EXIT_OK)
        goto out;
    int others = mqtt != LK_REG_STATE_UNSPECIFIED || http != LK_REG_STATE_UNSPECIFIED || ev != NULL || st != NULL;
    if (!create && !others && log_level < 0) {
        rc = tool_usage_error("%s: nothing to update (give --[no-]enable-mqtt-config, "
                              "--[no-]enable-http-config, --event-notification-config, "
                              "--state-pubsub-topic or --log-level)", a->cmd);
        goto out;
    }
    /* one command, one change (one transaction) */
    if (others && log_level >= 0) {
        rc = tool_usage_error("%s: --log-level goes alone (one change at a time)", a->cmd);
        goto out;
    }
    if (ca_path != NULL &&
        (rc = admin_read_file(a, "CA certificate", ca_path, LK_CRED_PEM_MAX, LK_ERR_REG_INVALID, &ca, &ca_len)) !=
            EXIT_OK)
        goto out;
    if ((rc = admin_open(a, create ? ADMIN_OPEN_CREATE : ADMIN_OPEN_WRITE)) != EXIT_OK)
        goto out;

    if (!create) {
        err = log_level >= 0 ? rop_set_registry_log_level(a, &a->name, (lk_reg_log_level)log_level, why, sizeof why)
                             : rop_update_registry(a, &a->name, mqtt, http, ev, st, why, sizeof why);
        if (err != LK_OK) {
            rc = admin_fail(a, err, why);
            goto out;
        }
        goto done;
    }

    /* One transaction: the registry with its notification configs and CA,
     * or (any part refused) nothing. gcloud's defaults: MQTT and HTTP
     * enabled. */
    {
        lk_reg_registry_spec spec;
        const char *pems[1];
        size_t lens[1];
        memset(&spec, 0, sizeof spec);
        spec.mqtt = mqtt == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : mqtt;
        spec.http = http == LK_REG_STATE_UNSPECIFIED ? LK_REG_STATE_ENABLED : http;
        spec.event_notification_json = ev;
        spec.state_notification_json = st;
        if (ca != NULL) {
            pems[0] = (const char *)ca;
            lens[0] = ca_len;
            spec.ca_pems = pems;
            spec.ca_lens = lens;
            spec.ncas = 1;
        }
        err = rop_create_registry_full(a, &a->name, &spec, why, sizeof why);
    }
    if (err != LK_OK) {
        size_t l = strlen(why);
        if (ca != NULL && strstr(why, "CA certificate 0") != NULL && l + 1 < sizeof why)
            snprintf(why + l, sizeof why - l, " (%s)", ca_path);
        rc = admin_fail(a, err, why);
        goto out;
    }
done:
    admin_note_not_in_effect(a->cmd, http != LK_REG_STATE_UNSPECIFIED);
    if (a->json)
        rc = print_registry(a);
    else
        printf("%s registry [%s].\n", create ? "Created" : "Updated", id);
out:
    json_decref(n.events);
    free(ev);
    free(st);
    free(ca);
    return rc;
}

/* ---- registries list ---- */

struct list_ctx {
    struct admin *a;
    json_t *arr;
    struct out_table *t;
    lk_reg_name *names;   /* JSON: each registry's name, to read its certificates after the walk */
    unsigned *ncerts;
    size_t n, cap;
    int failed;
};

static char *dup_or_fail(const char *s, int *failed)
{
    char *d = strdup(s != NULL ? s : "");
    if (d == NULL)
        *failed = 1;
    return d;
}

static int registry_cb(void *arg, const lk_reg_registry *r)
{
    struct list_ctx *x = arg;
    if (x->arr != NULL) {
        json_t *j = admin_registry_json(r);
        if (j == NULL || json_array_append_new(x->arr, j) != 0) {
            x->failed = 1;
            return 1;
        }
        if (x->n == x->cap) {
            size_t ncap = x->cap == 0 ? 16 : x->cap * 2;
            lk_reg_name *nn = realloc(x->names, ncap * sizeof *nn);
            unsigned *nc;
            if (nn == NULL) {
                x->failed = 1;
                return 1;
            }
            x->names = nn;
            nc = realloc(x->ncerts, ncap * sizeof *nc);
            if (nc == NULL) {
                x->failed = 1;
                return 1;
            }
            x->ncerts = nc;
            x->cap = ncap;
        }
        x->names[x->n].project = dup_or_fail(r->project, &x->failed);
        x->names[x->n].location = dup_or_fail(r->location, &x->failed);
        x->names[x->n].registry = dup_or_fail(r->id, &x->failed);
        x->ncerts[x->n] = r->ncerts;
        x->n++;
    } else {
        char certs[16], devs[32];
        const char *row[7];
        snprintf(certs, sizeof certs, "%u", r->ncerts);
        snprintf(devs, sizeof devs, "%llu", (unsigned long long)r->ndevices);
        row[0] = r->id;
        row[1] = r->project;
        row[2] = r->location;
        row[3] = r->mqtt == LK_REG_STATE_DISABLED ? "disabled" : "enabled";
        row[4] = r->http == LK_REG_STATE_DISABLED ? "disabled" : "enabled";
        row[5] = certs;
        row[6] = devs;
        if (out_table_row(x->t, row) != 0)
            x->failed = 1;
    }
    return x->failed;
}

static void list_ctx_free(struct list_ctx *x)
{
    size_t i;
    for (i = 0; i < x->n; i++) {
        free((char *)x->names[i].project);
        free((char *)x->names[i].location);
        free((char *)x->names[i].registry);
    }
    free(x->names);
    free(x->ncerts);
    json_decref(x->arr);
    out_table_free(x->t);
}

static int cmd_list(struct admin *a, int argc, char **argv)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS, {0, 0, 0, 0}};
    static const char *const heads[] = {"ID", "PROJECT", "LOCATION", "MQTT", "HTTP", "CA_CERTS", "DEVICES"};
    struct list_ctx x;
    char why[512] = "";
    lk_err err;
    int c, rc;

    memset(&x, 0, sizeof x);
    x.a = a;
    optind = 1;
    if ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1 || rc != EXIT_OK)
        return c != -1 ? EXIT_USAGE : rc == ADMIN_HELP ? EXIT_OK : rc;
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    if ((rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if (a->json)
        x.arr = json_array();
    else
        x.t = out_table_new(7, heads);
    if (x.arr == NULL && x.t == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    err = rop_list_registries(a, a->project, a->location, registry_cb, &x, why, sizeof why);
    if (err != LK_OK || x.failed) {
        list_ctx_free(&x);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    if (a->json) {
        struct out_list l;
        size_t i;
        for (i = 0; i < x.n; i++) {
            json_t *certs = NULL;
            if (x.ncerts[i] == 0)
                continue;
            if ((rc = certs_json(a, &x.names[i], &certs)) != EXIT_OK) {
                list_ctx_free(&x);
                return rc;
            }
            json_object_set_new(json_array_get(x.arr, i), "credentials", certs);
        }
        out_list_begin(&l);
        for (i = 0; i < x.n; i++)
            out_list_item(&l, json_incref(json_array_get(x.arr, i)));
        list_ctx_free(&x);
        return out_list_end(&l);
    }
    rc = out_table_print(x.t);
    x.t = NULL;
    list_ctx_free(&x);
    return rc;
}

/* ---- registries describe | delete ---- */

static int one_registry(struct admin *a, int argc, char **argv, int del)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS, {0, 0, 0, 0}};
    char why[512] = "";
    const char *id = NULL;
    lk_err err;
    int c, rc;

    optind = 1;
    if ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1 || rc != EXIT_OK)
        return c != -1 ? EXIT_USAGE : rc == ADMIN_HELP ? EXIT_OK : rc;
    if (optind < argc)
        id = argv[optind++];
    else
        id = a->registry;
    if (id == NULL)
        return tool_usage_error("%s: which registry? (REGISTRY)", a->cmd);
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    a->registry = NULL;
    if ((rc = admin_resolve(a, id, 0, &id)) != EXIT_OK)
        return rc;
    a->registry = id;
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK ||
        (rc = admin_open(a, del ? ADMIN_OPEN_WRITE : ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if (!del)
        return print_registry(a);
    err = rop_delete_registry(a, &a->name, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    if (a->json)
        return out_json(json_object());
    printf("Deleted registry [%s].\n", id);
    return EXIT_OK;
}

/* ---- registries credentials ... ---- */

static int cmd_credentials(struct admin *a, const char *sub, int argc, char **argv)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
                                         {"path", required_argument, 0, OPT_PATH}, {0, 0, 0, 0}};
    static const char *const heads[] = {"INDEX", "SUBJECT", "ISSUER", "NOT_BEFORE", "NOT_AFTER", "KEY_TYPE"};
    const char *path = NULL;
    long long index = -1;
    char why[512] = "";
    lk_err err;
    int c, rc, needs_index = strcmp(sub, "describe") == 0 || strcmp(sub, "delete") == 0;

    if (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 && !needs_index)
        return tool_usage_error("registries credentials: unknown subcommand '%s' "
                                "(create, list, describe, delete)", sub);
    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_PATH)
            path = optarg;
        else
            return EXIT_USAGE;
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (needs_index) {
        if (optind >= argc || tool_parse_i64(argv[optind], 0, 1000000, &index) != 0)
            return tool_usage_error("%s: give the certificate's INDEX (0, 1, ... as 'registries credentials "
                                    "list' shows)", a->cmd);
        optind++;
    }
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    if (strcmp(sub, "create") == 0 && path == NULL)
        return tool_usage_error("%s: --path CA.pem is required", a->cmd);
    if (strcmp(sub, "create") != 0 && path != NULL)
        return tool_usage_error("%s: --path is for create", a->cmd);
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK)
        return rc;

    if (strcmp(sub, "create") == 0) {
        uint8_t *pem = NULL;
        size_t len = 0;
        unsigned idx = 0;
        rc = admin_read_file(a, "CA certificate", path, LK_CRED_PEM_MAX, LK_ERR_REG_INVALID, &pem, &len);
        if (rc != EXIT_OK)
            return rc;
        if ((rc = admin_open(a, ADMIN_OPEN_WRITE)) != EXIT_OK) {
            free(pem);
            return rc;
        }
        err = rop_add_cert(a, &a->name, (const char *)pem, len, &idx, why, sizeof why);
        free(pem);
        if (err != LK_OK)
            return admin_fail(a, err, why);
        if (!a->json) {
            printf("Created credential [%u] of registry [%s].\n", idx, a->registry);
            return EXIT_OK;
        }
        index = idx;
        sub = "describe";
    } else if ((rc = admin_open(a, strcmp(sub, "delete") == 0 ? ADMIN_OPEN_WRITE : ADMIN_OPEN_READ)) !=
               EXIT_OK) {
        return rc;
    }

    if (strcmp(sub, "delete") == 0) {
        err = rop_delete_cert(a, &a->name, (unsigned)index, why, sizeof why);
        if (err != LK_OK)
            return admin_fail(a, err, why);
        if (a->json)
            return out_json(json_object());
        printf("Deleted credential [%lld] of registry [%s].\n", index, a->registry);
        return EXIT_OK;
    }
    {
        struct certs_ctx x = {NULL, NULL, (int)index, 0, 0};
        if (a->json || index >= 0)
            x.arr = json_array();
        else
            x.t = out_table_new(6, heads);
        if (x.arr == NULL && x.t == NULL)
            return admin_fail(a, LK_ERR_NOMEM, NULL);
        err = rop_list_certs(a, &a->name, cert_cb, &x, why, sizeof why);
        if (err != LK_OK || x.failed) {
            json_decref(x.arr);
            out_table_free(x.t);
            return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
        }
        if (index >= 0) {
            json_t *one = json_incref(json_array_get(x.arr, 0));
            json_decref(x.arr);
            if (one == NULL) {
                tool_error(a->cmd, LK_ERR_REG_NOT_FOUND, "registry %s has no credential at index %lld",
                           a->registry, index);
                return EXIT_REG_NOT_FOUND;
            }
            return a->json ? out_json(one) : out_yaml(one);
        }
        if (a->json) {
            struct out_list l;
            size_t i;
            json_t *j;
            out_list_begin(&l);
            json_array_foreach(x.arr, i, j)
                out_list_item(&l, json_incref(j));
            json_decref(x.arr);
            return out_list_end(&l);
        }
        return out_table_print(x.t);
    }
}

int cmd_registries(int argc, char **argv)
{
    struct admin a;
    char cmd[64];
    const char *sub;
    int rc;

    if ((rc = admin_group_usage(argc, argv, 1, registries_usage)) != -1)
        return rc;
    sub = argv[1];
    if (strcmp(sub, "import") == 0)
        return cmd_registries_import(argc - 1, argv + 1);
    if (strcmp(sub, "signers") == 0 || strcmp(sub, "crls") == 0)
        return cmd_registries_trust(argc - 1, argv + 1, strcmp(sub, "crls") == 0);
    if (strcmp(sub, "jit") == 0)
        return cmd_registries_jit(argc - 1, argv + 1);
    if (strcmp(sub, "credentials") == 0) {
        const char *c2 = argc >= 3 ? argv[2] : "";
        if ((rc = admin_group_usage(argc, argv, 2, u_creds)) != -1)
            return rc;
        snprintf(cmd, sizeof cmd, "registries credentials %s", argv[2]);
        admin_init(&a, cmd,
                   strcmp(c2, "create") == 0     ? u_cred_create
                   : strcmp(c2, "list") == 0     ? u_cred_list
                   : strcmp(c2, "describe") == 0 ? u_cred_describe
                   : strcmp(c2, "delete") == 0   ? u_cred_delete
                                                 : u_creds);
        a.remote_ok = 1;
        rc = cmd_credentials(&a, argv[2], argc - 2, argv + 2);
        admin_close(&a);
        return out_finish(rc);
    }
    snprintf(cmd, sizeof cmd, "registries %s", sub);
    admin_init(&a, cmd,
               strcmp(sub, "create") == 0     ? u_create
               : strcmp(sub, "update") == 0   ? u_update
               : strcmp(sub, "list") == 0     ? u_list
               : strcmp(sub, "describe") == 0 ? u_describe
               : strcmp(sub, "delete") == 0   ? u_delete
                                              : registries_usage);
    a.remote_ok = 1;
    if (strcmp(sub, "create") == 0)
        rc = create_or_update(&a, argc - 1, argv + 1, 1);
    else if (strcmp(sub, "update") == 0)
        rc = create_or_update(&a, argc - 1, argv + 1, 0);
    else if (strcmp(sub, "list") == 0)
        rc = cmd_list(&a, argc - 1, argv + 1);
    else if (strcmp(sub, "describe") == 0)
        rc = one_registry(&a, argc - 1, argv + 1, 0);
    else if (strcmp(sub, "delete") == 0)
        rc = one_registry(&a, argc - 1, argv + 1, 1);
    else
        rc = tool_usage_error("registries: unknown subcommand '%s' (create, list, describe, update, "
                              "delete, credentials, import, signers, crls, jit)", sub);
    admin_close(&a);
    return out_finish(rc);
}
