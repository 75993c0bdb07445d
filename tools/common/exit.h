/*
 * exit.h — the exit codes of both tools, `latchkey` and `latchkey-device`:
 * one table, documented once in docs/cli.md ("Exit codes"; docs/device.md
 * refers to it). The same condition exits the same code in both tools:
 * each library error maps to its code here (tool_exit_code, tool.c), never in a
 * tool of its own. A code is never renumbered; a new one takes a free
 * number and a row in docs/cli.md (test_exit_codes checks the two agree).
 *
 * The codes a restart cannot fix (a systemd unit's RestartPreventExitStatus,
 * README.md): 2, 3, 4, 5, 7, 10, 24, 30.
 */
#ifndef LK_TOOL_EXIT_H
#define LK_TOOL_EXIT_H

#include "latchkey/lk_error.h"

enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* anything not listed below (I/O, memory, crypto library) */
    EXIT_USAGE = 2,       /* bad command line: option, value, key name or URI syntax */
    EXIT_NOT_FOUND = 3,   /* no such key, key store, token, or file named on the command
                             line or in the key URI (PIN file, CA file, events file) */
    EXIT_LOCKED = 4,      /* PIN needed or refused, slot locked */
    EXIT_MODULE = 5,      /* PKCS#11 module not loadable */
    EXIT_TOO_LARGE = 6,   /* token larger than the tool's buffer */
    EXIT_STORE = 7,       /* key store corrupt, foreign or too open */
    EXIT_EXISTS = 8,      /* a key of that name exists already */
    EXIT_INVALID = 9,     /* token verify: a token or credential checked and refused */
    EXIT_DEVICE = 10,     /* the key cannot sign: another algorithm, too weak, or the
                             secure element failed */
    /* latchkey: the registry commands (registries|devices|backends ...) */
    EXIT_REG_NOT_FOUND = 11, /* no such database, registry, device, credential or version */
    EXIT_REG_EXISTS = 12,    /* a registry or device of that id exists already */
    EXIT_REG_CONFLICT = 13,  /* --version-to-update is not the current config version */
    EXIT_REG_LIMIT = 14,     /* a count or size limit (4th credential, config over 64 KiB...) */
    EXIT_REG_INVALID = 15,   /* an invalid id, name, value, key or document */
    EXIT_REG_CERT = 16,      /* a certificate refused: not signed by a registry CA, CA expired... */
    EXIT_REG_NOT_EMPTY = 17, /* deleting a registry that still has devices */
    EXIT_REG_BUSY = 18,      /* another writer held the database past the busy timeout */
    EXIT_REG_STORAGE = 19,   /* the database failed: I/O, corrupt, full disk, newer schema */
    EXIT_IMPORT = 20,        /* devices import: some lines refused, nothing imported */
    EXIT_CMD_NOT_CONNECTED = 21, /* commands send: FAILED_PRECONDITION */
    EXIT_CMD_NO_BROKER = 22,     /* commands send: no broker picked the command up */
    EXIT_BROKER_CHECK = 23,      /* broker check: the Mosquitto configuration has problems */
    /* both tools */
    EXIT_FILE = 24,       /* a file named on the command line or in the key URI (PIN file,
                             CA file, key store, events file) exists but cannot be used:
                             permission denied, not a regular file, not what it must hold */
    /* latchkey */
    EXIT_MIGRATE_NEEDED = 25, /* migrate --check: the database's schema is older than the tool's */
    /* latchkey-device */
    EXIT_DEV_REFUSED = 30,     /* the server refused --max-refusals fresh tokens */
    EXIT_DEV_TLS = 31,         /* the server was not authenticated, attempts exhausted */
    EXIT_DEV_NETWORK = 32,     /* the network failed --max-attempts times */
    EXIT_DEV_UNDELIVERED = 33, /* stopped with unacknowledged messages */
    EXIT_DEV_INPUT = 34,       /* reading the input failed, or a line was too long */
    EXIT_DEV_SIM_INCOMPLETE = 35, /* simulate: not every device connected or delivered */
    /* latchkey */
    EXIT_INTERRUPTED = 130     /* commands send interrupted (SIGINT/SIGTERM) */
};

/* The exit code for a library error, the same in both tools. */
int tool_exit_code(lk_err err);
/* The same in the registry commands (latchkey registries|devices|backends,
 * token verify --device): a refused value or credential is EXIT_REG_INVALID
 * there (LK_ERR_CRED_INVALID, _KEY_WEAK, _ENCODING), the rest as
 * tool_exit_code. */
int tool_registry_exit_code(lk_err err);

/* The exit code for a file named on the command line that could not be
 * opened, from its errno: EXIT_NOT_FOUND (ENOENT, ENOTDIR), EXIT_FILE
 * (permission denied, a link loop, a directory...), else EXIT_FAIL. */
int tool_file_exit(int errnum);

#endif
