/*
 * latchkey-device: the agent (run.c) and the fleet simulator (simulate.c)
 * on the device client (lk_device.h), and what both write (output.c).
 * Exit codes: tools/common/exit.h, shared with latchkey (docs/cli.md).
 */
#ifndef LK_DEVICE_TOOL_H
#define LK_DEVICE_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tool.h"

/* Write the n bytes at s to f as a JSON string, quotes included: '"' and
 * '\' escaped, newline as \n, the other control characters and DEL as
 * \u00XX, every other byte as it is (the caller checks UTF-8 first,
 * lk_utf8_valid). */
void devtool_put_json_string(FILE *f, const uint8_t *s, size_t n);

int devtool_run(int argc, char **argv);
int devtool_simulate(int argc, char **argv);

#endif
