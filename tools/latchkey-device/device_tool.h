/*
 * latchkey-device: the agent (run.c) and the fleet simulator (simulate.c)
 * on the device client (lk_device.h), and what both write (output.c).
 * Exit codes: docs/device.md.
 */
#ifndef LK_DEVICE_TOOL_H
#define LK_DEVICE_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tool.h"

/* Exit codes of latchkey-device beyond those of tool.h (docs/device.md). */
enum {
    EXIT_DEV_REFUSED = 30,     /* the server refused --max-refusals fresh tokens */
    EXIT_DEV_TLS = 31,         /* the server was not authenticated, attempts exhausted */
    EXIT_DEV_NETWORK = 32,     /* the network failed --max-attempts times */
    EXIT_DEV_UNDELIVERED = 33, /* stopped with unacknowledged messages */
    EXIT_DEV_INPUT = 34,       /* input unreadable or a line too long */
    EXIT_DEV_SIM_INCOMPLETE = 35 /* simulate: not every device connected or delivered */
};

/* The exit code for a client that ended with err (LK_OK: stopped). */
int lk_device_exit_code(lk_err err);

/* Write the n bytes at s to f as a JSON string, quotes included: '"' and
 * '\' escaped, newline as \n, the other control characters and DEL as
 * \u00XX, every other byte as it is (the caller checks UTF-8 first,
 * lk_utf8_valid). */
void lk_device_put_json_string(FILE *f, const uint8_t *s, size_t n);

int lk_device_cmd_run(int argc, char **argv);
int lk_device_cmd_simulate(int argc, char **argv);

#endif
