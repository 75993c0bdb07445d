/*
 * The `latchkey` command-line tool: shared declarations. Library code never
 * prints or exits; the tool does, and maps every lk_err to a documented exit
 * code (docs/cli.md).
 */
#ifndef LK_TOOL_H
#define LK_TOOL_H

#include <stdio.h>
#include "latchkey/lk_error.h"
#include "latchkey/lk_se.h"

/* Exit codes: keep in step with docs/cli.md. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1,        /* anything not listed below */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_NOT_FOUND = 3,   /* no such key, key store or token */
    EXIT_LOCKED = 4,      /* PIN needed or refused, slot locked */
    EXIT_MODULE = 5,      /* PKCS#11 module not loadable */
    EXIT_TOO_LARGE = 6,   /* token larger than the tool's buffer */
    EXIT_STORE = 7,       /* key store corrupt, foreign or too open */
    EXIT_EXISTS = 8,      /* a key of that name exists already */
    EXIT_INVALID = 9,     /* a token or input was checked and refused */
    EXIT_DEVICE = 10,     /* signing or the secure element failed */
    /* The registry commands (latchkey registries|devices ...). */
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
    /* devices commands send */
    EXIT_CMD_NOT_CONNECTED = 21, /* FAILED_PRECONDITION: device not connected or not subscribed */
    EXIT_CMD_NO_BROKER = 22,     /* no broker picked the command up within --timeout */
    /* broker check */
    EXIT_BROKER_CHECK = 23       /* the Mosquitto configuration has problems (each printed) */
};

/* The program name that starts every message ("latchkey"); each tool's
 * main.c defines it. */
extern const char *lk_tool_name;

int lk_tool_exit_code(lk_err err);

/* Print "latchkey: CONTEXT: MESSAGE (LK_ERR_NAME)" on stderr. */
void lk_tool_error(const char *context, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* What the user typed, fit to be shown in a message: lk_key_ref_redact
 * (lk_se.h) -- a pkcs11: URI without its PIN, anything else with '=' in it
 * likewise; a plain name or path unchanged -- cut at about 4 KiB with "...".
 * Every message that echoes a key reference, an argument or an option value
 * shows it through this. The result lives in one of 4 rotating static
 * buffers: up to 4 may be used in one message. NULL gives "". */
const char *lk_tool_shown(const char *s);
/* Print "latchkey: MESSAGE" on stderr and return EXIT_USAGE. */
int lk_tool_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A secure element opened from the command line's key options. */
struct lk_tool_key {
    lk_se se;
    const char *key;      /* the key reference for the lk_se calls */
    const char *where;    /* for messages: "store FILE" or "pkcs11 token" */
    void *store;          /* lk_softstore * or NULL */
    void *p11;            /* lk_pkcs11 * or NULL */
};

/* Options common to every command that uses a key. */
struct lk_tool_key_opts {
    const char *key;      /* --key NAME or --key pkcs11:URI */
    const char *store;    /* --store FILE (software key store) */
    const char *module;   /* --module PATH (PKCS#11) */
    int create;           /* create the store if missing */
};

/* Open the backend named by opts; prints the reason and returns an exit
 * code on failure. */
int lk_tool_key_open(const struct lk_tool_key_opts *opts, struct lk_tool_key *k);
void lk_tool_key_close(struct lk_tool_key *k);
/* Print what an lk_se operation's failure means for this key. */
void lk_tool_key_error(const struct lk_tool_key *k, const char *context, lk_err err);

/* After getopt_long (with opterr = 0) returned '?': print which option was
 * unknown or lacks its value -- its name only, never a value given with
 * '=' -- and return EXIT_USAGE. optind_now is getopt's optind. */
int lk_tool_bad_option(int argc, char **argv, int optind_now);

/* Parse a decimal integer option; returns 0 on success. */
int lk_tool_parse_i64(const char *s, long long min, long long max, long long *out);

int lk_cmd_key(int argc, char **argv);
int lk_cmd_token(int argc, char **argv);
int lk_cmd_admin(int argc, char **argv); /* [--db FILE] registries|devices|backends ... (admin.c) */
int lk_cmd_token_verify(int argc, char **argv);
int lk_cmd_broker(int argc, char **argv); /* broker check FILE (cmd_broker.c) */

#endif
