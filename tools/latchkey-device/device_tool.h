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

#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"
#include "tool.h"

/* Write the n bytes at s to f as a JSON string, quotes included: '"' and
 * '\' escaped, newline as \n, the other control characters and DEL as
 * \u00XX, every other byte as it is (the caller checks UTF-8 first,
 * lk_utf8_valid). */
void devtool_put_json_string(FILE *f, const uint8_t *s, size_t n);

/* The payload as a JSON string of standard base64, quotes included (stdout). */
void devtool_put_base64(const uint8_t *s, size_t n);
/* One message, one line (stdout): printable ASCII as is, '\' as "\\",
 * every other byte as \xNN. */
void devtool_put_escaped(const uint8_t *s, size_t n);
/* A config or command on stdout, one line: text "[@DEVICE ]TYPE[/SUBFOLDER]:
 * PAYLOAD" (escaped), or JSON {"type", ["device",] ["subfolder",] "data" or
 * "dataBase64"}. device NULL: the agent's own device. */
void devtool_print_message(int json, const char *device, const char *type, const char *subfolder,
                           const uint8_t *data, size_t len);

/* --- the agent as a gateway (gateway.c) --- */

struct devtool_gw_dev {
    char id[LK_ID_MAX + 1];
    const char *keyref;   /* its key in the --key store or token; NULL: association only */
    lk_alg alg;
    unsigned failures;    /* attaches refused or dropped in a row */
    int64_t retry_ms;     /* attach again at this time (lk_dev_now_ms), 0 = not waiting */
    int detached;         /* by an input line @DEVICE/detach */
};

struct devtool_gw {
    struct devtool_gw_dev *devs;
    size_t n, cap;
    unsigned rate;        /* --gateway-rate, 0 = the client's default */
    unsigned backoff_max_s;
    int json, quiet;
    const lk_se *se;      /* the store or token the device keys are in */
    uint64_t state_ids[256]; /* recent state messages: not counted as events */
    size_t state_i;
};

/* --attach DEVICE[:KEYREF]: checked and added. Returns an exit code. */
int devtool_gw_add(struct devtool_gw *g, const char *arg);
void devtool_gw_free(struct devtool_gw *g);
/* Make dev a gateway and attach every device (their keys checked in key's
 * store or token). Returns an exit code, the reason printed. */
int devtool_gw_setup(struct devtool_gw *g, lk_dev *dev, const struct tool_key *key);
/* Attach again the devices whose backoff after an error has run out;
 * *next lowered to the next such time. */
void devtool_gw_tick(struct devtool_gw *g, lk_dev *dev, int64_t now, int64_t *next);
/* LK_DEV_EV_ATTACHED for device: its backoff starts over. */
void devtool_gw_attached(struct devtool_gw *g, const char *device);
/* 1 when id is a state message queued by devtool_gw_line (forgotten then). */
int devtool_gw_is_state(struct devtool_gw *g, uint64_t id);
/* One input line starting with '@' (own: the gateway's id): queued (an
 * event or state), done (@DEVICE/attach, @DEVICE/detach), or skipped with a
 * warning (LK_OK); LK_ERR_QUEUE_FULL, LK_ERR_TOO_LARGE or another error of
 * lk_dev_publish_* otherwise. */
lk_err devtool_gw_line(struct devtool_gw *g, lk_dev *dev, const char *own, const char *line,
                       size_t len, const char *subfolder);

/* rotate.c: key rotation and x5c (docs/device.md "Rotating keys").
 * Start a switch to key ref of key's store or token (its algorithm read from
 * it); prints what it does or why not; returns an exit code. */
int devtool_next_key(lk_dev *dev, const struct tool_key *key, const char *ref);
/* The same with the key reference on the first line of path (SIGHUP). */
int devtool_next_key_file(lk_dev *dev, const struct tool_key *key, const char *path);
/* The PEM certificates of path (leaf first) as standard base64 of their DER,
 * for lk_dev_config.x5c; an exit code, *out freed by devtool_x5c_free. */
int devtool_x5c_load(const char *path, char ***out, unsigned *count);
void devtool_x5c_free(char **x5c, unsigned n);

int devtool_run(int argc, char **argv);
int devtool_simulate(int argc, char **argv);

#endif
