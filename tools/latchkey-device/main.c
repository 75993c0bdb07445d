/* latchkey-device — the device agent and the fleet simulator. See docs/device.md. */
#include <stdio.h>
#include <string.h>

#include "device_tool.h"

const char *lk_tool_name = "latchkey-device";

static const char usage_text[] =
    "usage: latchkey-device [run] OPTIONS        run one device: stdin -> events, config and commands -> stdout\n"
    "       latchkey-device simulate OPTIONS     run a fleet of simulated devices (load tests)\n"
    "\n"
    "       latchkey-device --version\n"
    "\n"
    "Run 'latchkey-device run --help' or 'latchkey-device simulate --help' for the options;\n"
    "docs/device.md explains the behaviour, docs/cli.md the exit codes.\n";

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", lk_tool_name, LK_VERSION); /* as latchkey --version */
        return EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "simulate") == 0)
        return lk_device_cmd_simulate(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return lk_device_cmd_run(argc - 1, argv + 1);
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    return lk_device_cmd_run(argc, argv);
}
