/*
 * A Mosquitto 2.0.11 configuration read the way the broker reads it
 * (src/conf.c), for `latchkey broker check`:
 *
 *  - a comment is a line whose first character is '#'; there are no trailing
 *    comments: after a string value a '#' becomes part of the value;
 *  - words are separated by spaces only (a tab is part of a word);
 *  - string values are the rest of the line, trimmed; numbers are the next
 *    word through atoi ("256k" is 256);
 *  - include_dir is followed in the main file only: its *.conf files, sorted;
 *  - listener options apply to the listener block they are in; before any
 *    `listener` line of a file they apply to Mosquitto's implicit listener
 *    (port 1883 on every address), which exists if any of them is set;
 *  - security options are global (per_listener_settings false).
 *
 * Nothing here prints or exits: findings are collected in struct bc_conf and
 * reading errors are returned with a reason.
 */
#ifndef LK_TOOL_BROKER_CONF_H
#define LK_TOOL_BROKER_CONF_H

#include <stddef.h>

#include "latchkey/lk_error.h"

/* Bounds on what is read: a configuration is a few KB. */
#define BC_FILE_MAX (4u << 20)   /* bytes per file */
#define BC_TOTAL_MAX (16u << 20) /* bytes over all files */
#define BC_LINE_MAX (16u << 10)  /* bytes per line */
#define BC_FILES_MAX 256u        /* the main file and those of include_dir */

/* Where a line is: an index into bc_conf.files and a line number (0: the
 * file as a whole, for what is missing). */
struct bc_at {
    unsigned file;
    unsigned line;
};

/* The last value of an option in its scope, as Mosquitto would read it. */
struct bc_opt {
    int set;
    struct bc_at at;
    char *val;
    long long num; /* atoi/atol of val, for numbers; 0/1 for booleans */
};

/* Listener options that are checked. */
enum {
    BL_CERTFILE,
    BL_KEYFILE,
    BL_TLS_VERSION,
    BL_MAX_CONNECTIONS,
    BL_MAX_QOS,
    BL_BIND_INTERFACE,
    BL_PROTOCOL,
    BL_MAX_TOPIC_ALIAS,
    BL_PSK_HINT,
    BL_N
};

/* Global options that are checked. */
enum {
    BG_PER_LISTENER,
    BG_ALLOW_ANONYMOUS,
    BG_ALLOW_ZERO_LENGTH,
    BG_MAX_PACKET_SIZE,
    BG_MESSAGE_SIZE_LIMIT,
    BG_MAX_KEEPALIVE,
    BG_MAX_INFLIGHT,
    BG_MAX_QUEUED,
    BG_MAX_QUEUED_BYTES,
    BG_MEMORY_LIMIT,
    BG_RETAIN_AVAILABLE,
    BG_USER,
    BG_PASSWORD_FILE,
    BG_ACL_FILE,
    BG_PSK_FILE,
    BG_PID_FILE,
    BG_PERSISTENCE_FILE,
    BG_PERSISTENCE_LOCATION,
    BG_PERSISTENCE,
    BG_AUTOSAVE_INTERVAL,
    BG_PORT,         /* the implicit listener's port */
    BG_BIND_ADDRESS, /* the implicit listener's address */
    BG_N
};

struct bc_listener {
    struct bc_at at; /* the `listener` line; implicit: where it was first configured */
    int implicit;    /* Mosquitto's listener for options before any `listener` line */
    long port;       /* 0: a Unix socket */
    char *host;      /* bind address or socket path; NULL = every address */
    const char *first_opt; /* implicit: the option that made it */
    struct bc_opt opt[BL_N];
};

struct bc_plugin {
    struct bc_at at;
    char *path;
    struct bc_opt registry; /* plugin_opt_registry */
};

struct bc_finding {
    struct bc_at at;
    unsigned seq; /* the order found in, which breaks ties when sorted */
    char *setting;
    char *problem;
    char *fix;
};

struct bc_conf {
    char **files; /* paths as read; [0] is the main file */
    unsigned nfiles;
    size_t total;
    struct bc_opt g[BG_N];
    struct bc_listener *ls; /* the `listener` blocks, in order */
    unsigned nls;
    struct bc_listener def; /* the implicit listener (used if def_used) */
    int def_used;
    int listener_lines; /* `listener`, `port` or `bind_address` seen (else local-only mode) */
    struct bc_plugin *pl;
    unsigned npl;
    unsigned bridges; /* `connection` blocks */
    struct bc_at first_bridge;
    struct bc_finding *f;
    unsigned nf;
    int err_no; /* why the main file could not be read (errno) */
};

/* Read path (and its include_dir files) into *c. Returns LK_OK, or
 * LK_ERR_IO / LK_ERR_KEY_NOT_FOUND (the main file cannot be read / does not
 * exist), LK_ERR_TOO_LARGE (a bound above), LK_ERR_NOMEM, with a reason in
 * why. Problems Mosquitto itself would have with the text (an unknown option,
 * a value it refuses, an include_dir it cannot open) are findings. */
lk_err bc_read(struct bc_conf *c, const char *path, char *why, size_t why_len);
void bc_free(struct bc_conf *c);

/* Add a finding (printf-style problem; fix is copied). Returns 0, or -1 out
 * of memory. */
int bc_add(struct bc_conf *c, struct bc_at at, const char *setting, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
