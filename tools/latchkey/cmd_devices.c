/*
 * latchkey devices create | list | describe | update | delete
 * latchkey devices credentials create | list | describe | delete
 * latchkey devices configs update | list | describe
 * latchkey devices states list
 * latchkey devices keys [DEVICE] (cmd_device_keys.c)
 * latchkey devices gateways list | list-bound-devices (bind, unbind: cmd_gateways.c)
 * (latchkey devices import: cmd_import.c; devices commands send: cmd_commands.c)
 *
 * IoT Core's devices (gcloud iot devices ...): credentials, metadata,
 * blocking, config versions with optimistic concurrency, state history.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "admin.h"
#include "regops.h"
#include "devices.h"

static const char devices_usage[] =
    "usage: latchkey [--db FILE] devices COMMAND DEVICE --registry R --project P --region L [options]\n"
    "\n"
    "  create DEVICE   [--public-key path=FILE,type=TYPE[,expiration-time=TIME]]... (at most 3)\n"
    "                  [--blocked] [--metadata KEY=VALUE,...] [--metadata-from-file KEY=FILE,...]\n"
    "                  [--device-type gateway|non-gateway] [--auth-method METHOD]\n"
    "  list            [--limit N] [--online | --offline] [--device-type gateway|non-gateway |\n"
    "                  --gateway G | --associations-device-id D]\n"
    "  describe DEVICE\n"
    "  update DEVICE   [--blocked|--unblocked] [--metadata KEY=VALUE,...]\n"
    "                  [--metadata-from-file KEY=FILE,...] [--clear-metadata] [--auth-method METHOD]\n"
    "                  [--log-level none|error|info|debug|unspecified]\n"
    "                  (--metadata/--metadata-from-file replace all metadata, as in IoT Core)\n"
    "  delete DEVICE\n"
    "  credentials create DEVICE --path FILE --type TYPE [--expiration-time TIME]\n"
    "  credentials list DEVICE\n"
    "  credentials describe|delete [DEVICE] INDEX\n"
    "  configs update DEVICE (--config-file FILE | --config-data DATA) [--version-to-update N]\n"
    "  configs list DEVICE [--limit N]      configs describe DEVICE\n"
    "  states list DEVICE [--limit N]\n"
    "  keys [DEVICE]   each credential's SHA-256, expiry, and the one the device last connected\n"
    "                  with, and when (--db only)\n"
    "  gateways bind|unbind --gateway G --device D   gateways list [--device D]\n"
    "  gateways list-bound-devices --gateway G       (see 'latchkey devices gateways --help')\n"
    "  gateways import PAIRS|-   bindings from an IoT Core export (--db only; see its --help)\n"
    "  import FILE|-   (IoT Core's Devices, as gcloud printed them; see 'latchkey devices import --help')\n"
    "  commands send DEVICE (--command-data DATA | --command-file FILE) [--subfolder F]\n"
    "                  [--timeout SECONDS]   (see 'latchkey devices commands --help')\n"
    "\n"
    "TYPE: es256, es256-x509, rsa, rsa-x509 (also rs256, es256-pem, rsa-pem, rsa-x509-pem and\n"
    "IoT Core's ES256_PEM, ES256_X509_PEM, RSA_PEM, RSA_X509_PEM). TIME: RFC 3339\n"
    "(2030-01-02T03:04:05Z) or seconds since 1970. METHOD: association-only, device-auth-token-only,\n"
    "association-and-device-auth-token (gateways only). DEVICE may also be the numId or the full name\n"
    "projects/P/locations/L/registries/R/devices/D; --device D is accepted as in gcloud.\n"
    "Common options: --db FILE (or LATCHKEY_DB), --project P (or LATCHKEY_PROJECT), --region L\n"
    "(alias --location; or LATCHKEY_REGION), --registry R, --format text|json,\n"
    "--busy-timeout MS. 'latchkey devices COMMAND --help' shows one command. Exit codes: docs/cli.md.\n"
    "Through latchkeyd's admin API instead of --db: --api URL --key-file KEY.json [--ca-file CA.pem]\n"
    "(or LATCHKEY_API, LATCHKEY_KEY_FILE, LATCHKEY_CA_FILE, or the config file; docs/cli.md);\n"
    "import works only with --db.\n";

/* Each subcommand's own usage ('latchkey devices create --help'). */
#define DEV_COMMON                                                                              \
    "Common options: --registry R, --project P (or LATCHKEY_PROJECT), --region L (alias\n"      \
    "--location; or LATCHKEY_REGION), --db FILE (or LATCHKEY_DB), --format text|json,\n"       \
    "--busy-timeout MS. Exit codes: docs/cli.md.\n"
#define DEV_ARG                                                                                 \
    "DEVICE is the device id, its numId or projects/P/locations/L/registries/R/devices/D\n"    \
    "(--device D works too, as in gcloud).\n"
#define DEV_TYPES                                                                               \
    "TYPE: es256, es256-x509, rsa, rsa-x509 (also rs256, es256-pem, rsa-pem, rsa-x509-pem and\n" \
    "IoT Core's ES256_PEM, ES256_X509_PEM, RSA_PEM, RSA_X509_PEM). TIME: RFC 3339\n"           \
    "(2030-01-02T03:04:05Z) or seconds since 1970. An RSA PUBLIC KEY (PKCS#1) file is stored as\n" \
    "the same key in a PUBLIC KEY block; an expired credential is stored with a warning.\n"
#define DEV_USAGE(line, text) "usage: latchkey [--db FILE] devices " line "\n\n" text "\n" DEV_COMMON

static const char u_create[] = DEV_USAGE(
    "create DEVICE --registry R --project P --region L\n"
    "         [--public-key path=FILE,type=TYPE[,expiration-time=TIME]]... (at most 3)\n"
    "         [--blocked] [--metadata KEY=VALUE,...] [--metadata-from-file KEY=FILE,...]\n"
    "         [--device-type gateway|non-gateway] [--auth-method METHOD]",
    "Creates a device with config version 1 (empty). KEY=VALUE lists are separated by commas\n"
    "(^;^A=B;C=D picks ';' instead). --device-type gateway makes a gateway, whose --auth-method\n"
    "(association-only, device-auth-token-only, association-and-device-auth-token; none: no device\n"
    "may use it) says what a device needs to speak through it (gcloud's flags).\n" DEV_TYPES);
static const char u_list[] = DEV_USAGE("list --registry R --project P --region L [--limit N] [--online|--offline]\n"
                                       "         [--device-type gateway|non-gateway | --gateway G |\n"
                                       "          --associations-device-id D]",
                                       "Lists the registry's devices: ID, NUM_ID, BLOCKED, CREDENTIALS, "
                                       "CONFIG_VERSION, LAST_SEEN\n(the newest heartbeat, event or state), "
                                       "PRESENCE (online, offline, never: as the broker\nrecorded it). "
                                       "--online: only devices connected now; --offline: all others.\n"
                                       "--device-type: only gateways or only the others (gcloud's); --gateway G:\n"
                                       "the devices bound to G; --associations-device-id D: the gateways D is bound\n"
                                       "to (IoT Core's gatewayListOptions; one of the three).\n"
                                       "(--format json: IoT Core's Devices, as a JSON array, with latchkey's "
                                       "\"presence\".)\n");
static const char u_describe[] = DEV_USAGE("describe DEVICE --registry R --project P --region L",
                                           "Shows the device with its newest config and state, and each "
                                           "credential's\nSHA-256 fingerprint.\n" DEV_ARG);
static const char u_keys[] = DEV_USAGE("keys [DEVICE] --registry R --project P --region L",
                                       "For each device (or DEVICE only): each credential's index, format, expiry and\n"
                                       "SHA-256 fingerprint, and LAST_USED: when the device last connected with it\n"
                                       "(as the broker recorded it; a row '(removed)' when that key is no longer a\n"
                                       "credential). While rotating keys: the new key is in use once LAST_USED\n"
                                       "moves to it (docs/provisioning.md). --db only.\n");
static const char u_update[] = DEV_USAGE(
    "update DEVICE --registry R --project P --region L\n"
    "         [--blocked|--unblocked] [--metadata KEY=VALUE,...] [--metadata-from-file KEY=FILE,...]\n"
    "         [--clear-metadata] [--auth-method METHOD] [--log-level LEVEL]",
    "The metadata options replace all metadata, as in IoT Core. --auth-method changes a gateway's\n"
    "gatewayAuthMethod (association-only, device-auth-token-only, association-and-device-auth-token).\n"
    "--log-level (none, error, info, debug; unspecified: the registry's) sets how much the broker\n"
    "logs of the device, live (docs/plugin.md, \"Logs\").\n"
    DEV_ARG);
static const char u_delete[] = DEV_USAGE("delete DEVICE --registry R --project P --region L",
                                         "Deletes the device with its credentials, configs, states and "
                                         "commands.\n" DEV_ARG);
static const char u_cred_create[] = DEV_USAGE(
    "credentials create DEVICE --path FILE --type TYPE [--expiration-time TIME] --registry R ...",
    "Adds one credential (a device has at most 3).\n" DEV_TYPES DEV_ARG);
static const char u_cred_list[] = DEV_USAGE("credentials list DEVICE --registry R ...",
                                            "INDEX, FORMAT, EXPIRATION_TIME and the SHA-256 fingerprint of "
                                            "each credential.\n" DEV_ARG);
static const char u_cred_describe[] = DEV_USAGE("credentials describe [DEVICE] INDEX --registry R ...",
                                                "One credential; INDEX as 'credentials list' shows it.\n" DEV_ARG);
static const char u_cred_delete[] = DEV_USAGE("credentials delete [DEVICE] INDEX --registry R ...",
                                              "Deletes one credential; INDEX as 'credentials list' shows "
                                              "it.\n" DEV_ARG);
static const char u_creds[] =
    "usage: latchkey [--db FILE] devices credentials create|list|describe|delete DEVICE [INDEX] ...\n"
    "\n"
    "  credentials create DEVICE --path FILE --type TYPE [--expiration-time TIME]\n"
    "  credentials list DEVICE\n"
    "  credentials describe|delete [DEVICE] INDEX\n"
    "Run 'latchkey devices credentials COMMAND --help' for one of them.\n";
static const char u_cfg_update[] = DEV_USAGE(
    "configs update DEVICE (--config-file FILE | --config-data DATA) [--version-to-update N] ...",
    "A new config version (at most 64 KiB). With N, only if N is the current version (else\n"
    "exit 13 and nothing is written).\n" DEV_ARG);
static const char u_cfg_list[] = DEV_USAGE("configs list DEVICE [--limit N] --registry R ...",
                                           "The kept config versions, newest first (the newest 10 are "
                                           "kept).\n" DEV_ARG);
static const char u_cfg_describe[] = DEV_USAGE("configs describe DEVICE --registry R ...",
                                               "The newest config.\n" DEV_ARG);
static const char u_cfgs[] =
    "usage: latchkey [--db FILE] devices configs update|list|describe DEVICE ...\n"
    "\n"
    "  configs update DEVICE (--config-file FILE | --config-data DATA) [--version-to-update N]\n"
    "  configs list DEVICE [--limit N]\n"
    "  configs describe DEVICE\n"
    "Run 'latchkey devices configs COMMAND --help' for one of them.\n";
#define GW_COMMON                                                                               \
    "Common options: --registry R (or gcloud's --gateway-registry/--device-registry, which must\n" \
    "agree), --project P, --region L (or --gateway-region/--device-region), --db FILE or --api URL\n" \
    "--key-file KEY.json, --format text|json. G and D: ids, numIds or full resource names.\n"
static const char u_gw_bind[] =
    "usage: latchkey devices gateways bind --gateway G --device D --registry R --region L [...]\n\n"
    "Binds device D to gateway G (IoT Core's bindDeviceToGateway): both of one registry, G a gateway,\n"
    "D not; at most 10 gateways per device and 10,000 devices per gateway. Binding a bound pair\n"
    "succeeds.\n" GW_COMMON;
static const char u_gw_unbind[] =
    "usage: latchkey devices gateways unbind --gateway G --device D --registry R --region L [...]\n\n"
    "Removes the binding (unbindDeviceFromGateway); a pair that is not bound exits 11.\n" GW_COMMON;
static const char u_gw_list[] =
    "usage: latchkey devices gateways list --registry R --region L [--device D] [--limit N]\n\n"
    "The registry's gateways, or with --device D the gateways D is bound to; as 'devices list'.\n"
    GW_COMMON;
static const char u_gw_lbd[] =
    "usage: latchkey devices gateways list-bound-devices --gateway G --registry R --region L [--limit N]\n\n"
    "The devices bound to gateway G; as 'devices list'.\n" GW_COMMON;
static const char u_gws[] =
    "usage: latchkey [--db FILE] devices gateways bind|unbind|list|list-bound-devices ...\n"
    "\n"
    "  gateways bind   --gateway G --device D\n"
    "  gateways unbind --gateway G --device D\n"
    "  gateways list [--device D]\n"
    "  gateways list-bound-devices --gateway G\n"
    "  gateways import PAIRS|-   ({\"gatewayId\", \"deviceId\"} records, one transaction; --db only)\n"
    "Run 'latchkey devices gateways COMMAND --help' for one of them.\n";
static const char u_states[] = DEV_USAGE("states list DEVICE [--limit N] --registry R ...",
                                         "The kept state reports, newest first (the newest 10 are kept).\n"
                                         DEV_ARG);


static const char *const opt_names[] = {
    "--public-key", "--blocked", "--unblocked", "--metadata", "--metadata-from-file", "--clear-metadata",
    "--limit", "--path", "--type", "--expiration-time", "--config-file", "--config-data",
    "--version-to-update", "--online", "--offline", "--device-type", "--auth-method", "--gateway",
    "--associations-device-id", "--gateway-registry", "--device-registry", "--gateway-region", "--device-region",
    "--log-level"};


/* ---- option parsing ---- */

struct meta_file_ctx {
    struct dev_opts *o;
    int from_file;
};

static int meta_kv(void *ctx, const char *k, const char *v)
{
    struct meta_file_ctx *m = ctx;
    struct admin *a = m->o->a;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc;
    if (!m->from_file)
        return admin_meta_set(&m->o->meta, k, v, strlen(v));
    rc = admin_read_file(a, "metadata file", v, LK_METADATA_VALUE_MAX, LK_ERR_REG_LIMIT, &data, &len);
    if (rc == EXIT_OK)
        rc = admin_meta_set(&m->o->meta, k, (const char *)data, len);
    free(data);
    return rc;
}

/* Parse argv for a devices subcommand that accepts the own options in
 * allowed (BIT(...)) and at most maxpos positional arguments. */
static int parse(struct dev_opts *o, int argc, char **argv, unsigned allowed, unsigned maxpos)
{
    static const struct option opts[] = {
        ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
        {"device", required_argument, 0, OPT_DEVICE},
        {"public-key", required_argument, 0, O_PUBLIC_KEY},
        {"blocked", no_argument, 0, O_BLOCKED},
        {"unblocked", no_argument, 0, O_UNBLOCKED},
        {"no-blocked", no_argument, 0, O_UNBLOCKED},
        {"metadata", required_argument, 0, O_METADATA},
        {"metadata-from-file", required_argument, 0, O_METADATA_FILE},
        {"clear-metadata", no_argument, 0, O_CLEAR_METADATA},
        {"limit", required_argument, 0, O_LIMIT},
        {"path", required_argument, 0, O_PATH},
        {"type", required_argument, 0, O_TYPE},
        {"expiration-time", required_argument, 0, O_EXPIRATION},
        {"config-file", required_argument, 0, O_CONFIG_FILE},
        {"config-data", required_argument, 0, O_CONFIG_DATA},
        {"version-to-update", required_argument, 0, O_VERSION},
        {"online", no_argument, 0, O_ONLINE},
        {"offline", no_argument, 0, O_OFFLINE},
        {"device-type", required_argument, 0, O_DEVICE_TYPE},
        {"auth-method", required_argument, 0, O_AUTH_METHOD},
        {"gateway", required_argument, 0, O_GATEWAY},
        {"associations-gateway-id", required_argument, 0, O_GATEWAY},
        {"associations-device-id", required_argument, 0, O_ASSOC_DEVICE},
        {"gateway-registry", required_argument, 0, O_GATEWAY_REGISTRY},
        {"device-registry", required_argument, 0, O_DEVICE_REGISTRY},
        {"gateway-region", required_argument, 0, O_GATEWAY_REGION},
        {"device-region", required_argument, 0, O_DEVICE_REGION},
        {"log-level", required_argument, 0, O_LOG_LEVEL},
        {0, 0, 0, 0}};
    struct admin *a = o->a;
    int c, rc;

    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        if (c < OPT_FIRST_OWN || c >= O_END)
            return EXIT_USAGE;
        if (!(allowed & BIT(c)))
            return tool_usage_error("%s: %s is not an option of this command", a->cmd,
                                    opt_names[c - OPT_FIRST_OWN]);
        o->given |= BIT(c);
        switch (c) {
        case O_PUBLIC_KEY: {
            const char **nk = realloc(o->keys, (o->nkeys + 1) * sizeof *nk);
            if (nk == NULL)
                return admin_fail(a, LK_ERR_NOMEM, NULL);
            o->keys = nk;
            o->keys[o->nkeys++] = optarg;
            break;
        }
        case O_BLOCKED:
        case O_UNBLOCKED:
            if (o->blocked >= 0 && o->blocked != (c == O_BLOCKED))
                return tool_usage_error("%s: --blocked and --unblocked exclude each other", a->cmd);
            o->blocked = c == O_BLOCKED;
            break;
        case O_METADATA:
        case O_METADATA_FILE: {
            struct meta_file_ctx m = {o, c == O_METADATA_FILE};
            rc = admin_dict(a, c == O_METADATA ? "--metadata" : "--metadata-from-file", optarg, meta_kv, &m);
            if (rc != EXIT_OK)
                return rc;
            break;
        }
        case O_CLEAR_METADATA: break;
        case O_LIMIT:
            if (tool_parse_i64(optarg, 0, 1000000000, &o->limit) != 0)
                return tool_usage_error("%s: --limit takes a count (0 = all)", a->cmd);
            break;
        case O_DEVICE_TYPE:
            if ((rc = devices_gateway_enum(a, "--device-type", ADMIN_ENUM_GATEWAY_TYPE, optarg, &o->gateway_type)) !=
                EXIT_OK)
                return rc;
            break;
        case O_AUTH_METHOD:
            if ((rc = devices_gateway_enum(a, "--auth-method", ADMIN_ENUM_GATEWAY_AUTH, optarg, &o->auth_method)) !=
                EXIT_OK)
                return rc;
            break;
        case O_LOG_LEVEL:
            if ((rc = admin_log_level_arg(a, optarg, &o->log_level)) != EXIT_OK)
                return rc;
            break;
        case O_GATEWAY: o->gateway = optarg; break;
        case O_ASSOC_DEVICE: o->assoc_device = optarg; break;
        case O_GATEWAY_REGISTRY: o->gw_registry = optarg; break;
        case O_DEVICE_REGISTRY: o->dev_registry = optarg; break;
        case O_GATEWAY_REGION: o->gw_region = optarg; break;
        case O_DEVICE_REGION: o->dev_region = optarg; break;
        case O_PATH: o->path = optarg; break;
        case O_TYPE: o->type = optarg; break;
        case O_EXPIRATION: o->expiration = optarg; break;
        case O_CONFIG_FILE: o->config_file = optarg; break;
        case O_CONFIG_DATA: o->config_data = optarg; break;
        case O_VERSION:
            if (tool_parse_i64(optarg, 0, INT64_MAX, &o->version) != 0)
                return tool_usage_error("%s: --version-to-update takes the current version, a number >= 1 "
                                        "(0 = update whatever the current version)", a->cmd);
            break;
        }
    }
    if (rc != EXIT_OK)
        return rc; /* ADMIN_HELP too */
    while (optind < argc) {
        if (o->npos == maxpos)
            return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
        o->pos[o->npos++] = argv[optind++];
    }
    return EXIT_OK;
}

/* --public-key path=FILE,type=TYPE[,expiration-time=TIME] */
struct key_ctx {
    const struct admin *a;
    const char *path, *type, *exp;
};

static int key_kv(void *ctx, const char *k, const char *v)
{
    struct key_ctx *x = ctx;
    if (strcmp(k, "path") == 0)
        x->path = v;
    else if (strcmp(k, "type") == 0)
        x->type = v;
    else if (strcmp(k, "expiration-time") == 0)
        x->exp = v;
    else
        return tool_usage_error("%s: --public-key: unknown key '%s' (path, type, expiration-time)", x->a->cmd,
                                k);
    return EXIT_OK;
}

/* ---- devices create | update ---- */

static int cmd_create(struct dev_opts *o)
{
    struct admin *a = o->a;
    lk_reg_credential *creds = NULL;
    const char **paths = NULL;
    lk_reg_device_spec spec;
    const char *leaf = NULL;
    char why[512] = "";
    uint64_t num_id = 0;
    unsigned i, ncreds = 0;
    lk_err err;
    int rc;

    if (o->auth_method != 0 && o->gateway_type != LK_GATEWAY_TYPE_GATEWAY)
        return tool_usage_error("%s: --auth-method is a gateway's: give --device-type gateway too", a->cmd);
    if (a->device != NULL && o->npos == 0)
        o->pos[o->npos++] = a->device;
    if (o->npos != 1)
        return tool_usage_error(o->npos == 0 ? "%s: which device? (DEVICE)" : "%s: unexpected argument '%s'",
                                a->cmd, o->npos > 1 ? o->pos[1] : "");
    if ((rc = admin_resolve(a, o->pos[0], 1, &leaf)) != EXIT_OK)
        return rc;
    creds = calloc(o->nkeys + 1, sizeof *creds);
    if (creds == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    paths = calloc(o->nkeys + 1, sizeof *paths);
    if (paths == NULL) {
        rc = admin_fail(a, LK_ERR_NOMEM, NULL);
        goto out;
    }
    for (i = 0; i < o->nkeys; i++) {
        struct key_ctx k = {a, NULL, NULL, NULL};
        if ((rc = admin_dict(a, "--public-key", o->keys[i], key_kv, &k)) != EXIT_OK ||
            (rc = load_credential(a, k.path, k.type, k.exp, &creds[i])) != EXIT_OK)
            goto out;
        paths[i] = k.path;
        ncreds++;
    }
    if ((rc = admin_open(a, ADMIN_OPEN_WRITE)) != EXIT_OK)
        goto out;
    memset(&spec, 0, sizeof spec);
    spec.id = leaf;
    spec.blocked = o->blocked > 0;
    spec.creds = creds;
    spec.ncreds = ncreds;
    spec.metadata = o->meta.items;
    spec.nmetadata = o->meta.n;
    spec.gateway_type = (lk_reg_gateway_type)o->gateway_type;
    spec.gateway_auth_method = (lk_reg_gateway_auth)o->auth_method;
    err = rop_create_device(a, &a->name, &spec, &num_id, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    for (i = 0; i < ncreds; i++)
        warn_expired(a, paths[i], &creds[i]);
    if (a->json)
        rc = print_device(a, NULL, num_id);
    else
        printf("Created device [%s] (numId %llu).\n", leaf, (unsigned long long)num_id);
out:
    for (i = 0; i < ncreds; i++)
        free(creds[i].pem);
    free(creds);
    free(paths);
    return rc;
}

static int cmd_update(struct dev_opts *o)
{
    struct admin *a = o->a;
    lk_reg_device_spec spec;
    const char *id = NULL;
    char *buf = NULL, why[512] = "";
    unsigned mask = 0;
    lk_err err;
    int rc;

    if (o->blocked >= 0)
        mask |= LK_REG_SET_BLOCKED;
    if (o->given & (BIT(O_METADATA) | BIT(O_METADATA_FILE) | BIT(O_CLEAR_METADATA)))
        mask |= LK_REG_SET_METADATA;
    if (o->given & BIT(O_AUTH_METHOD))
        mask |= LK_REG_SET_GATEWAY_AUTH;
    if (o->given & BIT(O_LOG_LEVEL))
        mask |= LK_REG_SET_LOG_LEVEL;
    if (mask == 0)
        return tool_usage_error("%s: nothing to update (give --blocked, --unblocked, --metadata, "
                                "--metadata-from-file, --clear-metadata, --auth-method or --log-level)", a->cmd);
    if ((rc = check_extra(o, 0)) != EXIT_OK || (rc = target_device(o, ADMIN_OPEN_WRITE, &id, &buf)) != EXIT_OK)
        goto out;
    memset(&spec, 0, sizeof spec);
    spec.id = id;
    spec.blocked = o->blocked > 0;
    spec.metadata = o->meta.items;
    spec.nmetadata = o->meta.n;
    spec.gateway_auth_method = (lk_reg_gateway_auth)o->auth_method;
    spec.log_level = (lk_reg_log_level)o->log_level;
    err = rop_update_device(a, &a->name, &spec, mask, why, sizeof why);
    rc = device_changed(a, err, why, id, "Updated device [%s].\n", id);
out:
    free(buf);
    return rc;
}

static int cmd_describe_delete(struct dev_opts *o, int del)
{
    struct admin *a = o->a;
    const char *id = NULL;
    char *buf = NULL, why[512] = "";
    lk_err err;
    int rc;

    if ((rc = check_extra(o, 0)) != EXIT_OK || (rc = target_device(o, del ? ADMIN_OPEN_WRITE : ADMIN_OPEN_READ, &id, &buf)) != EXIT_OK)
        goto out;
    if (!del) {
        rc = print_device(a, id, 0);
        goto out;
    }
    err = rop_delete_device(a, &a->name, id, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    if (a->json)
        rc = out_json(json_object());
    else
        printf("Deleted device [%s].\n", id);
out:
    free(buf);
    return rc;
}

/* ---- devices list ---- */

struct list_ctx {
    struct admin_list out; /* first: what admin_list_begin/end work on */
    long long limit, n;
    int online, offline;   /* --online, --offline */
};

/* The presence the broker recorded, as a word for the table. */
static const char *presence_word(lk_reg_presence p)
{
    return p == LK_PRESENCE_ONLINE ? "online" : p == LK_PRESENCE_OFFLINE ? "offline" : "never";
}

/* LAST SEEN: the newest of the heartbeat, event and state times (0: never). */
static int64_t last_seen(const lk_reg_device *d)
{
    int64_t t = d->last_heartbeat;
    if (d->last_event > t)
        t = d->last_event;
    if (d->last_state > t)
        t = d->last_state;
    return t;
}

static int device_cb(void *arg, const lk_reg_device *d)
{
    struct list_ctx *x = arg;
    /* --offline: every device not online now (offline, or never connected). */
    if ((x->online && d->presence != LK_PRESENCE_ONLINE) || (x->offline && d->presence == LK_PRESENCE_ONLINE))
        return 0;
    if (x->limit > 0 && x->n >= x->limit)
        return 1;
    x->n++;
    if (x->out.t == NULL) {
        json_t *j = admin_device_json(d);
        /* latchkey's extension, as devices.list's fieldMask "presence". */
        if (j != NULL && d->presence != LK_PRESENCE_NEVER) {
            json_t *p = json_pack("{s:b,s:o}", "online", d->presence == LK_PRESENCE_ONLINE, "time",
                                  out_jtime(d->presence_time));
            if (p != NULL && d->presence_detail != NULL)
                json_object_set_new(p, d->presence == LK_PRESENCE_ONLINE ? "address" : "reason",
                                    json_string(d->presence_detail));
            json_object_set_new(j, "presence", p);
        }
        if (out_list_item(&x->out.l, j) != EXIT_OK)
            x->out.failed = 1;
    } else {
        char num[32], ncred[8], ver[32], seen[32];
        const char *row[7];
        int64_t t = last_seen(d);
        snprintf(num, sizeof num, "%llu", (unsigned long long)d->num_id);
        snprintf(ncred, sizeof ncred, "%u", d->ncreds);
        snprintf(ver, sizeof ver, "%lld", (long long)d->config_version);
        row[0] = d->id;
        row[1] = num;
        row[2] = d->blocked ? "true" : "false";
        row[3] = ncred;
        row[4] = ver;
        row[5] = t > 0 ? lk_time_rfc3339(t, seen, sizeof seen) : "-";
        row[6] = presence_word(d->presence);
        if (out_table_row(x->out.t, row) != 0)
            x->out.failed = 1;
    }
    return x->out.failed;
}

static int cmd_list(struct dev_opts *o)
{
    static const char *const heads[] = {"ID",          "NUM_ID",    "BLOCKED", "CREDENTIALS",
                                        "CONFIG_VERSION", "LAST_SEEN", "PRESENCE"};
    struct admin *a = o->a;
    struct list_ctx x;
    char why[512] = "";
    lk_err err;
    int rc;

    if (o->npos > 0)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, o->pos[0]);
    if ((o->given & BIT(O_ONLINE)) && (o->given & BIT(O_OFFLINE)))
        return tool_usage_error("%s: --online and --offline exclude each other", a->cmd);
    if ((o->gateway_type != 0) + (o->gateway != NULL) + (o->assoc_device != NULL) > 1)
        return tool_usage_error("%s: --device-type, --gateway and --associations-device-id exclude each other "
                                "(IoT Core's gatewayListOptions takes one)", a->cmd);
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK || (rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if ((rc = admin_list_begin(a, &x.out, 7, heads)) != EXIT_OK)
        return rc;
    x.n = 0;
    x.limit = o->limit;
    x.online = (o->given & BIT(O_ONLINE)) != 0;
    x.offline = (o->given & BIT(O_OFFLINE)) != 0;
    if (o->gateway_type != 0 || o->gateway != NULL || o->assoc_device != NULL)
        err = rop_query_devices(a, &a->name, (lk_reg_gateway_type)o->gateway_type, o->gateway, o->assoc_device,
                                device_cb, &x, why, sizeof why);
    else
        err = rop_list_devices(a, &a->name, device_cb, &x, why, sizeof why);
    return admin_list_end(a, &x.out, err, why);
}

/* ---- dispatch ---- */

#define B(o) BIT(o)
#define META_OPTS (B(O_METADATA) | B(O_METADATA_FILE))

int cmd_devices(int argc, char **argv)
{
    struct admin a;
    struct dev_opts o;
    char cmd[64];
    const char *sub, *sub2 = NULL;
    unsigned allowed = 0, maxpos = 1;
    int rc, skip = 1;

    if ((rc = admin_group_usage(argc, argv, 1, devices_usage)) != -1)
        return rc;
    sub = argv[1];
    if (strcmp(sub, "import") == 0)
        return cmd_devices_import(argc - 1, argv + 1);
    if (strcmp(sub, "commands") == 0)
        return cmd_devices_commands(argc - 1, argv + 1);
    if (strcmp(sub, "gateways") == 0 && argc >= 3 && strcmp(argv[2], "import") == 0)
        return cmd_gateways_import(argc - 2, argv + 2);
    if (strcmp(sub, "credentials") == 0 || strcmp(sub, "configs") == 0 || strcmp(sub, "states") == 0 ||
        strcmp(sub, "gateways") == 0) {
        if (argc < 3 || argv[2][0] == '-') {
            const char *u = strcmp(sub, "credentials") == 0 ? u_creds
                            : strcmp(sub, "configs") == 0 ? u_cfgs
                            : strcmp(sub, "gateways") == 0 ? u_gws : u_states;
            int help = argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
            fputs(u, help ? stdout : stderr);
            return help ? EXIT_OK : EXIT_USAGE;
        }
        sub2 = argv[2];
        skip = 2;
        snprintf(cmd, sizeof cmd, "devices %s %s", sub, sub2);
    } else {
        snprintf(cmd, sizeof cmd, "devices %s", sub);
    }
    admin_init(&a, cmd, devices_usage);
    a.remote_ok = 1;
    memset(&o, 0, sizeof o);
    o.a = &a;
    o.blocked = -1;

    if (sub2 == NULL && strcmp(sub, "create") == 0)
        allowed = B(O_PUBLIC_KEY) | B(O_BLOCKED) | META_OPTS | B(O_DEVICE_TYPE) | B(O_AUTH_METHOD), a.usage = u_create;
    else if (sub2 == NULL && strcmp(sub, "update") == 0)
        allowed = B(O_BLOCKED) | B(O_UNBLOCKED) | META_OPTS | B(O_CLEAR_METADATA) | B(O_AUTH_METHOD) | B(O_LOG_LEVEL),
        a.usage = u_update;
    else if (sub2 == NULL && strcmp(sub, "list") == 0)
        allowed = B(O_LIMIT) | B(O_ONLINE) | B(O_OFFLINE) | B(O_DEVICE_TYPE) | B(O_GATEWAY) | B(O_ASSOC_DEVICE),
        maxpos = 0, a.usage = u_list;
    else if (sub2 != NULL && strcmp(sub, "gateways") == 0 &&
             (strcmp(sub2, "bind") == 0 || strcmp(sub2, "unbind") == 0))
        allowed = B(O_GATEWAY) | B(O_GATEWAY_REGISTRY) | B(O_DEVICE_REGISTRY) | B(O_GATEWAY_REGION) |
                  B(O_DEVICE_REGION),
        maxpos = 0, a.usage = strcmp(sub2, "bind") == 0 ? u_gw_bind : u_gw_unbind;
    else if (sub2 != NULL && strcmp(sub, "gateways") == 0 && strcmp(sub2, "list") == 0)
        allowed = B(O_LIMIT), maxpos = 0, a.usage = u_gw_list;
    else if (sub2 != NULL && strcmp(sub, "gateways") == 0 && strcmp(sub2, "list-bound-devices") == 0)
        allowed = B(O_LIMIT) | B(O_GATEWAY), maxpos = 0, a.usage = u_gw_lbd;
    else if (sub2 == NULL && strcmp(sub, "keys") == 0) {
        allowed = 0, a.usage = u_keys;
        a.remote_ok = 0;
        a.local_only = "the key each device last used is the broker's record, in the database";
    } else if (sub2 == NULL && (strcmp(sub, "describe") == 0 || strcmp(sub, "delete") == 0))
        allowed = 0, a.usage = strcmp(sub, "describe") == 0 ? u_describe : u_delete;
    else if (sub2 != NULL && strcmp(sub, "credentials") == 0 && strcmp(sub2, "create") == 0)
        allowed = B(O_PATH) | B(O_TYPE) | B(O_EXPIRATION), a.usage = u_cred_create;
    else if (sub2 != NULL && strcmp(sub, "credentials") == 0 &&
             (strcmp(sub2, "delete") == 0 || strcmp(sub2, "describe") == 0))
        maxpos = 2, a.usage = strcmp(sub2, "delete") == 0 ? u_cred_delete : u_cred_describe;
    else if (sub2 != NULL && strcmp(sub, "credentials") == 0 && strcmp(sub2, "list") == 0)
        allowed = 0, a.usage = u_cred_list;
    else if (sub2 != NULL && strcmp(sub, "configs") == 0 && strcmp(sub2, "update") == 0)
        allowed = B(O_CONFIG_FILE) | B(O_CONFIG_DATA) | B(O_VERSION), a.usage = u_cfg_update;
    else if (sub2 != NULL && strcmp(sub, "configs") == 0 && strcmp(sub2, "list") == 0)
        allowed = B(O_LIMIT), a.usage = u_cfg_list;
    else if (sub2 != NULL && strcmp(sub, "configs") == 0 && strcmp(sub2, "describe") == 0)
        allowed = 0, a.usage = u_cfg_describe;
    else if (sub2 != NULL && strcmp(sub, "states") == 0 && strcmp(sub2, "list") == 0)
        allowed = B(O_LIMIT), a.usage = u_states;
    else {
        rc = tool_usage_error("devices: unknown command '%s%s%s' (create, list, describe, update, delete, keys, "
                              "credentials create|list|describe|delete, configs update|list|describe, "
                              "states list, gateways bind|unbind|list|list-bound-devices|import, import, commands "
                              "send)",
                                 sub, sub2 ? " " : "", sub2 ? sub2 : "");
        return rc;
    }

    rc = parse(&o, argc - skip, argv + skip, allowed, maxpos);
    if (rc == ADMIN_HELP) {
        rc = EXIT_OK;
    } else if (rc == EXIT_OK) {
        if (sub2 == NULL) {
            if (strcmp(sub, "create") == 0)
                rc = cmd_create(&o);
            else if (strcmp(sub, "update") == 0)
                rc = cmd_update(&o);
            else if (strcmp(sub, "list") == 0)
                rc = cmd_list(&o);
            else if (strcmp(sub, "keys") == 0)
                rc = devices_keys(&o);
            else
                rc = cmd_describe_delete(&o, strcmp(sub, "delete") == 0);
        } else if (strcmp(sub, "gateways") == 0) {
            if (strcmp(sub2, "bind") == 0 || strcmp(sub2, "unbind") == 0) {
                rc = devices_gateway_bind(&o, strcmp(sub2, "unbind") == 0);
            } else if (strcmp(sub2, "list") == 0) {
                /* gateways list [--device D]: the gateways, or D's */
                o.assoc_device = a.device;
                o.gateway_type = a.device == NULL ? LK_GATEWAY_TYPE_GATEWAY : 0;
                rc = cmd_list(&o);
            } else if (o.gateway == NULL || a.device != NULL) {
                rc = tool_usage_error(o.gateway == NULL ? "%s: --gateway is required"
                                                        : "%s: --device is not an option of this command (the "
                                                          "gateways of a device: 'gateways list --device D')",
                                      a.cmd);
            } else {
                rc = cmd_list(&o);
            }
        } else if (strcmp(sub, "credentials") == 0) {
            rc = devices_credentials(&o, sub2);
        } else if (strcmp(sub, "configs") == 0) {
            rc = strcmp(sub2, "update") == 0   ? devices_config_update(&o)
                 : strcmp(sub2, "list") == 0 ? devices_history(&o, 0)
                                             : devices_config_describe(&o);
        } else {
            rc = devices_history(&o, 1);
        }
    }
    admin_meta_free(&o.meta);
    free(o.keys);
    admin_close(&a);
    return out_finish(rc);
}
