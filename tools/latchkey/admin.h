/*
 * The registry administration commands (`latchkey registries ...`,
 * `latchkey devices ...`): shared declarations. The commands mirror
 * `gcloud iot`; their output is IoT Core's JSON (--format json) or aligned
 * tables and YAML-like descriptions for people (docs/cli.md, "Registry").
 *
 * The registry library (lk_registry.h) decides what is valid; the tool
 * parses the command line, reads files, prints, and maps each refusal to a
 * documented exit code. A refused command writes nothing.
 */
#ifndef LK_TOOL_ADMIN_H
#define LK_TOOL_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <getopt.h>

#include <jansson.h>

#include "latchkey/lk_registry.h"
#include "latchkey/lk_reg_audit.h"
#include "out.h"
#include "tool.h"

/* Long-option codes shared by every admin command (above any character). */
enum {
    OPT_DB = 256,
    OPT_PROJECT,
    OPT_REGION,
    OPT_REGISTRY,
    OPT_DEVICE,
    OPT_FORMAT,
    OPT_BUSY_TIMEOUT,
    OPT_API,
    OPT_API_KEY_FILE,
    OPT_API_CA_FILE,
    OPT_FIRST_OWN /* a command's own options start here */
};

#define ADMIN_COMMON_OPTIONS                                                          \
    {"db", required_argument, 0, OPT_DB}, {"project", required_argument, 0, OPT_PROJECT}, \
    {"region", required_argument, 0, OPT_REGION},                                     \
    {"location", required_argument, 0, OPT_REGION},                                   \
    {"registry", required_argument, 0, OPT_REGISTRY},                                 \
    {"format", required_argument, 0, OPT_FORMAT},                                     \
    {"busy-timeout", required_argument, 0, OPT_BUSY_TIMEOUT},                         \
    {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}

/* The options of the commands that also work through latchkeyd's admin
 * API (registries, devices): as --db, they may follow the command. */
#define ADMIN_API_OPTIONS                                                                 \
    {"api", required_argument, 0, OPT_API}, {"key-file", required_argument, 0, OPT_API_KEY_FILE}, \
    {"ca-file", required_argument, 0, OPT_API_CA_FILE}

/* One admin command's context. */
struct admin {
    const char *cmd;          /* "devices create", for messages */
    const char *usage;        /* its usage text */
    const char *db;           /* --db FILE or $LATCHKEY_DB */
    const char *project;      /* --project or $LATCHKEY_PROJECT */
    const char *location;     /* --region/--location or $LATCHKEY_REGION */
    const char *registry;     /* --registry */
    const char *device;       /* --device (where gcloud has it) */
    long long busy_ms;        /* --busy-timeout, -1 = library default */
    int json;                 /* --format json */
    lk_registry *reg;
    /* Through latchkeyd's admin API instead (--api URL, $LATCHKEY_API or the
     * config file): where, as whom; api is set by admin_open. */
    const char *api_url, *key_file, *ca_file;
    int db_level, api_level;  /* where each came from: 2 option, 1 environment, 0 config */
    int remote_ok;            /* the command can work through the API (else refused) */
    const char *local_only;   /* why not, for the refusal (NULL: a generic reason) */
    struct api *api;
    char *conf;               /* the config file's text, alive until admin_close */
    lk_reg_name name;
    char *namebuf, *regbuf;   /* parsed full resource names */
    char **keep;              /* admin_dict copies, alive until admin_close */
    unsigned nkeep;
};

/* The database given before the command group (`latchkey --db F devices ...`);
 * main.c sets it. */
extern const char *admin_db;
/* --api, --key-file, --ca-file given before the command group; main.c sets
 * them. */
extern const char *admin_api, *admin_key_file, *admin_ca_file;

/* Initialise *a for command cmd; environment defaults are filled in. */
void admin_init(struct admin *a, const char *cmd, const char *usage);
/* Handle one getopt code shared by all admin commands: returns -1 when c is
 * not a common option, else EXIT_OK or an exit code to return. 'h' prints
 * the usage and returns the sentinel ADMIN_HELP. */
#define ADMIN_HELP 1000
int admin_common_opt(struct admin *a, int c, const char *arg);
/* A command group's word after argv[k - 1] ("devices", "credentials"): when
 * there is none, the group's usage on standard error and EXIT_USAGE; for
 * --help or -h, on standard output and EXIT_OK; else -1 (argv[k] is the
 * subcommand to run). */
int admin_group_usage(int argc, char **argv, int k, const char *usage);
/* getopt_long(argc, argv, "qh", opts) with the options every admin command
 * shares handled by admin_common_opt: returns the next option that is the
 * command's own, or -1 when none is left. Then *rc is EXIT_OK at the end of
 * the options, ADMIN_HELP after --help (the usage printed), or the exit code
 * of a refused option (the message printed). The caller sets optind = 1. */
int admin_getopt(struct admin *a, int argc, char **argv, const struct option *opts, int *rc);
/* EXIT_OK, or EXIT_REG_INVALID with the reason printed when a->project is
 * not a valid project id. */
int admin_check_project(const struct admin *a);
/* Check that --project, --region (and --registry if need_registry) are set
 * and fill a->name. A full resource name in arg ("projects/P/locations/L/
 * registries/R[/devices/D]") supplies them too; *leaf then points at the
 * last component. Returns an exit code. */
int admin_resolve(struct admin *a, const char *arg, int need_registry, const char **leaf);
/* Open the database, or with --api (or $LATCHKEY_API, or `api` in the
 * config file: $LATCHKEY_CONFIG or ~/.config/latchkey/latchkey.conf, lines
 * `api URL`, `key_file FILE`, `ca_file FILE`) connect to latchkeyd's admin
 * API instead, if the command sets remote_ok (else a usage error: it works
 * only with --db). --api and --db together are a usage error; an option
 * outranks the environment, which outranks the config file.
 * ADMIN_OPEN_WRITE: it must exist; ADMIN_OPEN_CREATE:
 * created if missing (the create commands); ADMIN_OPEN_READ (commands that
 * only read): as WRITE when the caller may write the file and its
 * directory (so that an older schema is migrated), otherwise without
 * write access (LK_REG_NOWRITE), so that listing works for a user who may
 * only read it. Returns an exit code (message printed). */
enum { ADMIN_OPEN_WRITE = 0, ADMIN_OPEN_CREATE = 1, ADMIN_OPEN_READ = 2 };
int admin_open(struct admin *a, int mode);
/* (admin_open does it) Record this run's changes as "tool:USER@HOST" via
 * tool in the audit record, the action a->cmd, the resource what a->name
 * (or a->project) names; a command may name its resource more precisely
 * with lk_registry_set_action afterwards. */
void admin_set_actor(struct admin *a);
/* The resource of the changes that follow: registry n (NULL: a->project),
 * device (NULL: the registry). No-op through the API. */
void admin_audit_target(struct admin *a, const lk_reg_name *n, const char *device);
void admin_close(struct admin *a);
/* Report a library refusal: "latchkey: CMD: WHY (LK_ERR_...)"; returns its
 * exit code. */
int admin_fail(const struct admin *a, lk_err err, const char *why);
/* A listing printed either way: a JSON array streamed (--format json) or a
 * table for people; the listing's callback adds to l or t and sets failed. */
struct admin_list {
    struct out_list l;
    struct out_table *t; /* NULL with --format json */
    int failed;
};
/* Start it (zeroes *x): the array, or a table of ncols with heads. Returns
 * an exit code. */
int admin_list_begin(const struct admin *a, struct admin_list *x, unsigned ncols, const char *const *heads);
/* Finish it after the listing call returned err (why): printed, or on a
 * failure (err, or x->failed: out of memory) the reason reported and a
 * partial array left visibly unfinished. Returns the exit code. */
int admin_list_end(const struct admin *a, struct admin_list *x, lk_err err, const char *why);
/* (regops.c) Resolve a device argument given as numId to its string id (a device id
 * always starts with a letter, a numId is all digits). *id_out points into
 * *buf or at arg. Returns an exit code. */
int admin_device_id(struct admin *a, const char *arg, char **buf, const char **id_out);
/* 1 when s is one or more ASCII digits (a numId, a time in seconds), else 0. */
int admin_all_digits(const char *s);

/* Read a whole file (or standard input for "-") of at most max bytes; a
 * larger file is refused. Returns an exit code; *out is NUL-terminated. */
int admin_read_file(const struct admin *a, const char *what, const char *path, size_t max,
                    lk_err too_big, uint8_t **out, size_t *len);

/* gcloud's "dict" arguments: KEY=VALUE,KEY=VALUE (or ^D^KEY=VALUEDKEY=VALUE
 * with another delimiter D). Calls cb for each pair (the strings stay valid
 * until admin_close); returns cb's first non-zero result, or EXIT_USAGE for a
 * malformed item. */
int admin_dict(struct admin *a, const char *opt, const char *arg,
               int (*cb)(void *ctx, const char *key, const char *value), void *ctx);

/* Parse an expiration time: RFC 3339 / ISO 8601 ("2030-01-02T03:04:05Z",
 * "+02:00" offsets, fractions ignored, date only = midnight UTC, no zone =
 * UTC) or seconds since 1970. Returns 0 on success. */
int admin_parse_time(const char *s, int64_t *out);
/* gcloud's key type names (es256, es256-x509, rsa, rsa-x509, rs256, ...) and
 * IoT Core's (ES256_PEM, ...). UNSPECIFIED if unknown. */
lk_cred_format admin_cred_type(const char *s);

/* Metadata being collected from --metadata / --metadata-from-file. */
struct admin_meta {
    lk_reg_metadata *items;
    unsigned n, cap;
};
int admin_meta_set(struct admin_meta *m, const char *key, const char *value, size_t len);
void admin_meta_free(struct admin_meta *m);

/* ---- credentials and IoT Core's enums (creds.c) ---- */

/* 1 when pem starts (after white space) with an "RSA PUBLIC KEY" (PKCS#1)
 * PEM block. */
int admin_pem_is_pkcs1(const char *pem, size_t len);
/* An RSA PUBLIC KEY (PKCS#1) PEM as the registry stores RSA keys, PUBLIC KEY
 * (SubjectPublicKeyInfo): 1 and *out (malloc'd, NUL-terminated) when pem is
 * exactly one such block; 0 when it is not one (nothing to convert); -1 and
 * why when it is one that does not decode. The key itself is unchanged
 * (only its container), and is checked afterwards like any other. */
int admin_pkcs1_to_spki(const char *pem, size_t len, char **out, size_t *out_len, char *why,
                        size_t why_size);
/* The credential's SHA-256 fingerprint (of its DER public key, as
 * lk_cred_fingerprint and 'token verify' give it) as 64 hex digits; -1 and
 * "" if it does not parse. */
int admin_cred_sha256(lk_cred_format fmt, const char *pem, char hex[65]);
/* 1 (and its time in when) if a credential with this expiry has expired. */
int admin_cred_expired(int64_t expires, char *when, size_t when_size);

enum admin_enum {
    ADMIN_ENUM_LOG_LEVEL,
    ADMIN_ENUM_GATEWAY_TYPE,
    ADMIN_ENUM_GATEWAY_AUTH,
    ADMIN_ENUM_MQTT_STATE,
    ADMIN_ENUM_HTTP_STATE
};
/* IoT Core's name of a value ("?" for none), the value of a name or of a
 * number (enum-encoding=int; -1 if it is none), and the list of names. */
const char *admin_enum_name(enum admin_enum e, int value);
int admin_enum_value(enum admin_enum e, const char *name, int *value);
/* --log-level: gcloud's none|error|info|debug, IoT Core's names, or
 * unspecified (clears it): EXIT_OK, or a usage error said. */
int admin_log_level_arg(const struct admin *a, const char *arg, int *value);
int admin_enum_number(enum admin_enum e, long long n, int *value);
void admin_enum_names(enum admin_enum e, char *buf, size_t size);

/* Settings that are stored and shown but that nothing acts on yet
 * (httpConfig; notification configs route since schema 6, log levels take
 * effect in the broker, docs/plugin.md "Logs"): one
 * line on standard error naming those given (non-zero), nothing if none. */
void admin_note_not_in_effect(const char *cmd, int http);

/* ---- resources as IoT Core JSON (cmd_registries.c, devices.c) ---- */

json_t *admin_registry_json(const lk_reg_registry *r);
json_t *admin_cert_json(const lk_reg_cert *c);
json_t *admin_cred_json(const lk_reg_credential *c);
json_t *admin_device_json(const lk_reg_device *d);
json_t *admin_config_json(const lk_reg_config *c);
json_t *admin_state_json(const lk_reg_state_entry *s);

#endif
