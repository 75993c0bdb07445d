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
    "\n"
    "Device registry (as gcloud iot; --db FILE or LATCHKEY_DB selects the database):\n"
    "  [--db FILE] registries create|list|describe|update|delete [REGISTRY] --project P --region L\n"
    "  [--db FILE] registries credentials create|list|describe|delete --registry R ...\n"
    "  [--db FILE] devices create|list|describe|update|delete [DEVICE] --registry R --project P --region L\n"
    "  [--db FILE] devices credentials|configs|states ... DEVICE ...\n"
    "  [--db FILE] devices import FILE --registry R --project P --region L\n"
    "  [--db FILE] devices commands send DEVICE --registry R ... (--command-data S | --command-file F)\n"
    "  [--db FILE] backends create|list|delete [NAME] [--project P]\n"
    "  [--db FILE] service-accounts create|list|delete [NAME] --project P [--role R] [--token-uri U]\n"
    "  [--db FILE] service-accounts keys create|disable|enable|delete NAME|KEY_ID ...\n"
    "\n"
    "The broker:\n"
    "  broker check [--format json] FILE   is this Mosquitto configuration safe for the plugin?\n"
    "\n"
    "  --version                           the version\n"
    "\n"
    "Run 'latchkey COMMAND --help' for a command's options; exit codes are in docs/cli.md.\n";

/* latchkey [--db FILE | --db=FILE] registries|devices|backends|service-accounts ... */
static int admin_dispatch(int argc, char **argv)
{
    int i = 1;
    while (i < argc && strncmp(argv[i], "--db", 4) == 0) {
        if (strcmp(argv[i], "--db") == 0) {
            if (i + 1 >= argc)
                return tool_usage_error("--db needs a FILE");
            admin_db = argv[i + 1];
            i += 2;
        } else if (argv[i][4] == '=') {
            admin_db = argv[i] + 5;
            i++;
        } else {
            return tool_usage_error("unknown option '%s'", tool_shown(argv[i]));
        }
    }
    if (i >= argc)
        return tool_usage_error("--db FILE must be followed by a command (registries, devices, "
                                "backends, service-accounts)");
    if (strcmp(argv[i], "registries") == 0)
        return cmd_registries(argc - i, argv + i);
    if (strcmp(argv[i], "devices") == 0)
        return cmd_devices(argc - i, argv + i);
    if (strcmp(argv[i], "backends") == 0)
        return cmd_backends(argc - i, argv + i);
    if (strcmp(argv[i], "service-accounts") == 0)
        return cmd_service_accounts(argc - i, argv + i);
    return tool_usage_error("unknown command '%s' (after --db: registries, devices, backends, "
                            "service-accounts)",
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
    if (strcmp(argv[1], "token") == 0)
        return cmd_token(argc - 1, argv + 1);
    if (strcmp(argv[1], "broker") == 0)
        return cmd_broker(argc - 1, argv + 1);
    if (strcmp(argv[1], "registries") == 0 || strcmp(argv[1], "devices") == 0 ||
        strcmp(argv[1], "backends") == 0 || strcmp(argv[1], "service-accounts") == 0 ||
        strncmp(argv[1], "--db", 4) == 0)
        return admin_dispatch(argc, argv);
    if (strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", tool_name, LK_VERSION);
        return EXIT_OK;
    }
    fputs(usage_text, stderr);
    return tool_usage_error("unknown command '%s'", tool_shown(argv[1]));
}
