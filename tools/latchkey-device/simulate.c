/* latchkey-device simulate: placeholder until the simulator lands. */
#include "device_tool.h"

int lk_device_cmd_simulate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return lk_tool_usage_error("simulate: not built yet");
}
