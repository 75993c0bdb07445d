/*
 * `latchkey devices ...`: what the command files (cmd_devices.c: options,
 * create, update, describe, delete, list, dispatch; cmd_device_data.c:
 * credentials, configs, states) share, in devices.c.
 */
#ifndef LK_TOOL_DEVICES_H
#define LK_TOOL_DEVICES_H

#include "admin.h"

/* The devices commands' own options (getopt codes). */
enum {
    O_PUBLIC_KEY = OPT_FIRST_OWN,
    O_BLOCKED,
    O_UNBLOCKED,
    O_METADATA,
    O_METADATA_FILE,
    O_CLEAR_METADATA,
    O_LIMIT,
    O_PATH,
    O_TYPE,
    O_EXPIRATION,
    O_CONFIG_FILE,
    O_CONFIG_DATA,
    O_VERSION,
    O_ONLINE,
    O_OFFLINE,
    O_DEVICE_TYPE,      /* gcloud's --device-type gateway|non-gateway */
    O_AUTH_METHOD,      /* gcloud's --auth-method */
    O_GATEWAY,          /* --gateway G (gateways bind|unbind|list-bound-devices; devices list) */
    O_ASSOC_DEVICE,     /* --associations-device-id D (devices list: the gateways D is bound to) */
    O_GATEWAY_REGISTRY, /* gcloud's gateways bind|unbind resource flags */
    O_DEVICE_REGISTRY,
    O_GATEWAY_REGION,
    O_DEVICE_REGION,
    O_LOG_LEVEL,        /* gcloud's --log-level (devices update) */
    O_END
};

#define BIT(o) (1u << ((o) - OPT_FIRST_OWN))

/* One devices command's parsed command line. */
struct dev_opts {
    struct admin *a;
    unsigned given;             /* BIT(option) for each own option seen */
    const char **keys;          /* --public-key arguments */
    unsigned nkeys;
    int blocked;                /* -1 = unchanged */
    struct admin_meta meta;
    long long limit;
    const char *path, *type, *expiration;
    const char *config_file, *config_data;
    long long version;
    int gateway_type;           /* --device-type: lk_reg_gateway_type, 0 = not given */
    int auth_method;            /* --auth-method: lk_reg_gateway_auth */
    int log_level;              /* --log-level: lk_reg_log_level (UNSPECIFIED clears) */
    const char *gateway, *assoc_device;           /* --gateway, --associations-device-id */
    const char *gw_registry, *dev_registry, *gw_region, *dev_region;
    const char *pos[3];         /* positional arguments */
    unsigned npos;
};

/* The device named by the first positional argument or --device, resolved
 * to its string id (numIds and full names accepted). Opens the database. */
int target_device(struct dev_opts *o, int mode, const char **id, char **buf);
/* Positional arguments after the device (INDEX of credentials delete). */
const char *after_device(const struct dev_opts *o, unsigned k);
/* A usage error when more than want_after arguments follow the device. */
int check_extra(const struct dev_opts *o, unsigned want_after);
/* Read one credential: the PEM file, its format and expiry. */
int load_credential(const struct admin *a, const char *path, const char *type, const char *exp,
                    lk_reg_credential *cred);
/* After a credential was stored: a word if it has expired already. */
void warn_expired(const struct admin *a, const char *path, const lk_reg_credential *c);

/* Print the device (by id, or by numId when id is NULL) as IoT Core's
 * GetDevice returns it: with its newest config and state. Returns an exit
 * code. */
int print_device(struct admin *a, const char *id, uint64_t num_id);
/* After a change to device id: the library's refusal (err, why) reported,
 * or the device printed (--format json), or FMT for people. Returns an exit
 * code. */
int device_changed(struct admin *a, lk_err err, const char *why, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* An lk_registry_list_configs callback: the first (newest) config as IoT
 * Core's JSON into *arg (a json_t *); stops the listing. */
int first_config_cb(void *arg, const lk_reg_config *c);

/* devices credentials create|list|describe|delete (sub), configs
 * list|describe|update, states list (cmd_device_data.c). */
int devices_credentials(struct dev_opts *o, const char *sub);
/* cmd_device_keys.c: devices keys [DEVICE] (--db only). */
int devices_keys(struct dev_opts *o);
int devices_history(struct dev_opts *o, int states);
int devices_config_describe(struct dev_opts *o);
int devices_config_update(struct dev_opts *o);

/* devices gateways bind|unbind (cmd_gateways.c): --gateway and --device of
 * one registry (gcloud's --gateway-registry/--device-registry and
 * --gateway-region/--device-region name it too, and must agree). */
int devices_gateway_bind(struct dev_opts *o, int unbind);
/* gcloud's choice words (gateway, non-gateway; association-only, ...) or
 * IoT Core's enum names: EXIT_OK with *value, or a usage error. */
int devices_gateway_enum(const struct admin *a, const char *opt, enum admin_enum e, const char *arg, int *value);

#endif
