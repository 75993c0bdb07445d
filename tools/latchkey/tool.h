/*
 * The `latchkey` command-line tool: shared declarations (also used by
 * latchkey-device). Library code never prints or exits; the tool does, and
 * maps every lk_err to a documented exit code (tools/common/exit.h,
 * docs/cli.md).
 */
#ifndef LK_TOOL_H
#define LK_TOOL_H

#include <stdio.h>
#include "latchkey/lk_error.h"
#include "latchkey/lk_se.h"
#include "exit.h" /* tools/common: the exit codes of both tools */

/* The program name that starts every message ("latchkey"); each tool's
 * main.c defines it. */
extern const char *lk_tool_name;

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
    int create;           /* a missing store may be created (by the first key written) */
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
