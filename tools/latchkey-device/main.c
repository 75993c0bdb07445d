/* latchkey-device — the device agent and the fleet simulator. See docs/device.md. */
#include <stdio.h>
#include <string.h>

#include "device_tool.h"

static const char usage_text[] =
    "usage: latchkey-device [run] OPTIONS        run one device: stdin -> events, config and commands -> stdout\n"
    "                                            (or a gateway and the devices it attaches: --attach)\n"
    "       latchkey-device simulate OPTIONS     run a fleet of simulated devices (load tests)\n"
    "\n"
    "       latchkey-device --version\n"
    "\n"
    "Run 'latchkey-device run --help' or 'latchkey-device simulate --help' for the options;\n"
    "docs/device.md explains the behaviour, docs/cli.md the exit codes.\n";

int main(int argc, char **argv)
{
    tool_name = "latchkey-device";
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", tool_name, LK_VERSION); /* as latchkey --version */
        return EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "simulate") == 0)
        return devtool_simulate(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return devtool_run(argc - 1, argv + 1);
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    return devtool_run(argc, argv);
}
