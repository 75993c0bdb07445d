/* latchkey — administration and device tool. See docs/cli.md. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "tool.h"

static const char usage_text[] =
    "usage: latchkey COMMAND ...\n"
    "\n"
    "Device keys and tokens:\n"
    "  key generate  --key NAME --store FILE [--alg ES256|RS256] [--bits N]\n"
    "  key generate  --key 'pkcs11:token=T;object=O?module-path=M&pin-value=P' [--alg ...]\n"
    "  key public    --key NAME --store FILE | --key pkcs11:...\n"
    "  key list      --store FILE | --key pkcs11:... (the key pairs of a token)\n"
    "  token         --key ... --aud PROJECT [--ttl SECONDS] [--alg ES256|RS256] [--now EPOCH]\n"
    "  token verify  --credential [FORMAT:]FILE ... --aud PROJECT [--now EPOCH] [--format json] [TOKEN|-]\n"
    "  key csr       --key ... --device-id ID [--out FILE] (a CSR signed inside the token)\n"
    "\n"
    "The factory (docs/provisioning.md):\n"
    "  ca init|intermediate --ca DIR [--parent DIR] [--key pkcs11:...] [--alg ...] [--cn NAME]\n"
    "  ca issue      --ca DIR (--csr F | --public-key F) --device-id ID [--days N] [--out F]\n"
    "  ca revoke     --ca DIR (--serial HEX | --cert F) [--reason R];  ca crl --ca DIR --out F\n"
    "  provision     --ca DIR --token 'pkcs11:...;object=%s?...' --batch ID (--ids F | --prefix P\n"
    "                --count N) --signer KEY --manufacturer LABEL --out NAME.jsonl\n"
    "\n"
    "Device registry (as gcloud iot; --db FILE or LATCHKEY_DB selects the database):\n"
    "  [--db FILE] registries create|list|describe|update|delete [REGISTRY] --project P --region L\n"
    "  [--db FILE] registries credentials create|list|describe|delete --registry R ...\n"
    "  [--db FILE] devices create|list|describe|update|delete [DEVICE] --registry R --project P --region L\n"
    "  [--db FILE] devices credentials|configs|states ... DEVICE ...\n"
    "  [--db FILE] devices import FILE --registry R --project P --region L\n"
    "  [--db FILE] devices commands send DEVICE --registry R ... (--command-data S | --command-file F)\n"
    "  [--db FILE] backends create|list|delete [NAME] [--project P]\n"
    "  [--db FILE] subscriptions create|list|describe|delete [S] --project P [--topic T ...]\n"
    "  [--db FILE] service-accounts create|list|delete [NAME] --project P [--role R] [--token-uri U]\n"
    "  [--db FILE] service-accounts keys create|disable|enable|delete NAME|KEY_ID ...\n"
    "  [--db FILE] operators create|passwd|disable|enable|delete|list [NAME] [--project P --role R]\n"
    "  [--db FILE] audit list|export [--since T] [--limit N] [--format table|json|jsonl|csv]\n"
    "  --api URL --key-file KEY.json [--ca-file CA.pem] in place of --db: the same registries and\n"
    "  devices commands through latchkeyd's admin API (also LATCHKEY_API, LATCHKEY_KEY_FILE,\n"
    "  LATCHKEY_CA_FILE, or api/key_file/ca_file lines in ~/.config/latchkey/latchkey.conf)\n"
    "\n"
    "Backups and the schema (docs/operations.md):\n"
    "  backup  [--db FILE] [--spool FILE | --no-spool] OUT_DIR   online copy of the registry and spool\n"
    "  restore [--db FILE] [--spool FILE | --no-spool] [--force] BACKUP_DIR\n"
    "  migrate [--db FILE] [--check]       the database's schema version; migrate it\n"
    "\n"
    "The broker:\n"
    "  setup --host NAME [--cert F --key F | --test-ca] [--registry R --project P --region L]\n"
    "        [--port N] [--fallback-port N | --no-fallback-port] [--spool] [--metrics] [--force]\n"
    "        [--root DIR]                  make this installed system a configured broker\n"
    "  broker check [--format json] FILE   is this Mosquitto configuration safe for the plugin?\n"
    "\n"
    "  --version                           the version\n"
    "\n"
    "Run 'latchkey COMMAND --help' for a command's options; exit codes are in docs/cli.md.\n";

/* The options that may come before the command group, and where each goes. */
static const struct {
    const char *name;
    const char **slot;
} global_opts[] = {
    {"--db", &admin_db}, {"--api", &admin_api}, {"--key-file", &admin_key_file}, {"--ca-file", &admin_ca_file},
};

/* argv[i] is one of global_opts (as "--opt" or "--opt=VALUE"): its index, or -1. */
static int global_opt(const char *arg)
{
    for (size_t k = 0; k < sizeof global_opts / sizeof global_opts[0]; k++) {
        size_t n = strlen(global_opts[k].name);
        if (strncmp(arg, global_opts[k].name, n) == 0 && (arg[n] == '\0' || arg[n] == '='))
            return (int)k;
    }
    return -1;
}

/* latchkey [--db FILE | --api URL --key-file F [--ca-file CA]] registries|devices|backends|service-accounts ... */
static int admin_dispatch(int argc, char **argv)
{
    int i = 1, k;
    while (i < argc && strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0') {
        size_t n;
        if ((k = global_opt(argv[i])) < 0)
            return tool_usage_error("unknown option '%s'", tool_shown(argv[i]));
        n = strlen(global_opts[k].name);
        if (argv[i][n] == '=') {
            *global_opts[k].slot = argv[i] + n + 1;
            i++;
        } else {
            if (i + 1 >= argc)
                return tool_usage_error("%s needs a value", global_opts[k].name);
            *global_opts[k].slot = argv[i + 1];
            i += 2;
        }
    }
    if (admin_db != NULL && admin_api != NULL)
        return tool_usage_error("--api and --db exclude each other: give one");
    if (i >= argc)
        return tool_usage_error("--db FILE must be followed by a command (registries, devices, "
                                "backends, service-accounts, subscriptions)");
    if (strcmp(argv[i], "registries") == 0)
        return cmd_registries(argc - i, argv + i);
    if (strcmp(argv[i], "devices") == 0)
        return cmd_devices(argc - i, argv + i);
    if (strcmp(argv[i], "backends") == 0)
        return cmd_backends(argc - i, argv + i);
    if (strcmp(argv[i], "service-accounts") == 0)
        return cmd_service_accounts(argc - i, argv + i);
    if (strcmp(argv[i], "subscriptions") == 0)
        return cmd_subscriptions(argc - i, argv + i);
    if (strcmp(argv[i], "operators") == 0)
        return cmd_operators(argc - i, argv + i);
    if (strcmp(argv[i], "audit") == 0)
        return cmd_audit(argc - i, argv + i);
    if (strcmp(argv[i], "backup") == 0)
        return cmd_backup(argc - i, argv + i);
    if (strcmp(argv[i], "restore") == 0)
        return cmd_restore(argc - i, argv + i);
    if (strcmp(argv[i], "migrate") == 0)
        return cmd_migrate(argc - i, argv + i);
    return tool_usage_error("unknown command '%s' (after --db: registries, devices, backends, "
                            "service-accounts, subscriptions)",
                            tool_shown(argv[i]));
}

int main(int argc, char **argv)
{
    tool_name = "latchkey";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "key") == 0)
        return cmd_key(argc - 1, argv + 1);
    if (strcmp(argv[1], "ca") == 0)
        return cmd_ca(argc - 1, argv + 1);
    if (strcmp(argv[1], "provision") == 0)
        return cmd_provision(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(argv[1], "broker") == 0)
        return cmd_broker(argc - 1, argv + 1);
    if (strcmp(argv[1], "setup") == 0)
        return cmd_setup(argc - 1, argv + 1);
    if (strcmp(argv[1], "registries") == 0 || strcmp(argv[1], "devices") == 0 ||
        strcmp(argv[1], "backends") == 0 || strcmp(argv[1], "service-accounts") == 0 ||
        strcmp(argv[1], "subscriptions") == 0 || strcmp(argv[1], "operators") == 0 ||
        strcmp(argv[1], "audit") == 0 || strcmp(argv[1], "backup") == 0 ||
        strcmp(argv[1], "restore") == 0 || strcmp(argv[1], "migrate") == 0 ||
        global_opt(argv[1]) >= 0)
        return admin_dispatch(argc, argv);
    if (strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", tool_name, LK_VERSION);
        return EXIT_OK;
    }
    fputs(usage_text, stderr);
    return tool_usage_error("unknown command '%s'", tool_shown(argv[1]));
}
