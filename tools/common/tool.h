/*
 * What both tools (`latchkey`, `latchkey-device`) share: error lines, option
 * parsing, opening a key from options. Library code never prints or exits;
 * the tools do, and map every lk_err to a documented exit code (exit.h,
 * docs/cli.md). Names here are the tools' own: no lk_ prefix, which is the
 * library's.
 */
#ifndef LK_TOOL_H
#define LK_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "latchkey/lk_error.h"
#include "latchkey/lk_se.h"
#include "exit.h" /* tools/common: the exit codes of both tools */

/* The program name that starts every message: "latchkey" unless the tool's
 * main() sets another first thing. */
extern const char *tool_name;

/* Print "latchkey: CONTEXT: MESSAGE (LK_ERR_NAME)" on stderr. */
void tool_error(const char *context, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* What the user typed, fit to be shown in a message: lk_key_ref_redact
 * (lk_se.h) -- a pkcs11: URI without its PIN, anything else with '=' in it
 * likewise; a plain name or path unchanged -- cut at about 4 KiB with "...".
 * Every message that echoes a key reference, an argument or an option value
 * shows it through this. The result lives in one of 4 rotating static
 * buffers: up to 4 may be used in one message. NULL gives "". */
const char *tool_shown(const char *s);
/* Print "latchkey: MESSAGE" on stderr and return EXIT_USAGE. */
int tool_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A secure element opened from the command line's key options. */
struct tool_key {
    lk_se se;
    const char *key;      /* the key reference for the lk_se calls */
    const char *where;    /* for messages: "store FILE" or "pkcs11 token" */
    void *store;          /* lk_softstore * or NULL */
    void *p11;            /* lk_pkcs11 * or NULL */
};

/* Options common to every command that uses a key. */
struct tool_key_opts {
    const char *key;      /* --key NAME or --key pkcs11:URI */
    const char *store;    /* --store FILE (software key store) */
    const char *module;   /* --module PATH (PKCS#11) */
    int create;           /* a missing store may be created (by the first key written) */
};

/* The getopt_long options of struct tool_key_opts (codes 'k', 's', 'm'),
 * and taking one: 1 when c is one of them (stored in ko), else 0. */
#define TOOL_KEY_OPTIONS                                                                  \
    {"key", required_argument, 0, 'k'}, {"store", required_argument, 0, 's'},            \
    {"module", required_argument, 0, 'm'}
int tool_key_opt(struct tool_key_opts *ko, int c, const char *arg);
/* 1 when key is a pkcs11: URI (the scheme in any case), else 0 (NULL too). */
int tool_key_is_pkcs11(const char *key);

/* Open the backend named by opts; prints the reason and returns an exit
 * code on failure. */
int tool_key_open(const struct tool_key_opts *opts, struct tool_key *k);
void tool_key_close(struct tool_key *k);
/* Print what an lk_se operation's failure means for this key. */
void tool_key_error(const struct tool_key *k, const char *context, lk_err err);

/* After getopt_long (with opterr = 0) returned '?': print which option was
 * unknown or lacks its value -- its name only, never a value given with
 * '=' -- and return EXIT_USAGE. optind_now is getopt's optind. */
int tool_bad_option(int argc, char **argv, int optind_now);

/* --format text|json: *json set, EXIT_OK; else "CTX: --format must be text
 * or json" (CTX may be NULL) and EXIT_USAGE. */
int tool_parse_format(const char *ctx, const char *arg, int *json);
/* Parse a decimal integer option; returns 0 on success. */
int tool_parse_i64(const char *s, long long min, long long max, long long *out);

/* n bytes as 2n lower-case hex digits and a NUL in out (2n + 1 bytes). */
void tool_hex(const uint8_t *d, size_t n, char *out);

#endif
