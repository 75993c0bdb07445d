/*
 * latchkey registries jit --registry R (--enable [--max-devices N] | --disable | --show):
 * a registry's just-in-time registration (docs/provisioning.md, "Just-in-time
 * registration"), in the registry file (--db) or through latchkeyd (--api:
 * the registry's latchkeyJitConfig field, regops_trust.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "regops.h"

enum { OPT_ENABLE = OPT_FIRST_OWN, OPT_DISABLE, OPT_SHOW, OPT_MAX_DEVICES };

static const char u_jit[] =
    "usage: latchkey [--db FILE | --api URL] registries jit --registry R --project P --region L\n"
    "                (--enable [--max-devices N] | --disable | --show) [--format json]\n"
    "Just-in-time registration: with it on, a device the registry does not know whose token\n"
    "carries a certificate chain to a registry CA in \"x5c\" (its subject CN the device id)\n"
    "is registered on its first connection. --max-devices caps how many devices JIT may ever\n"
    "register (default 10000, deleted ones counted). --show prints the setting and the count.\n";

static int jit_print(const struct admin *a, const lk_reg_jit *j)
{
    json_t *o;
    char n[24], r[24];
    uint64_t max = j->max_devices ? j->max_devices : LK_REG_JIT_MAX_DEFAULT;

    snprintf(n, sizeof n, "%llu", (unsigned long long)max);
    snprintf(r, sizeof r, "%llu", (unsigned long long)j->registered);
    if (!a->json) {
        printf("Just-in-time registration of registry [%s]: %s, at most %s devices, %s registered.\n",
               a->registry, j->enabled ? "enabled" : "disabled", n, r);
        return EXIT_OK;
    }
    /* int64 as strings, as IoT Core's JSON has them */
    o = json_pack("{s:b, s:s, s:s}", "enabled", j->enabled != 0, "maxDevices", n, "registered", r);
    return o ? out_json(o) : admin_fail(a, LK_ERR_NOMEM, NULL);
}

static int run(struct admin *a, int argc, char **argv)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
                                         {"enable", no_argument, 0, OPT_ENABLE},
                                         {"disable", no_argument, 0, OPT_DISABLE},
                                         {"show", no_argument, 0, OPT_SHOW},
                                         {"max-devices", required_argument, 0, OPT_MAX_DEVICES},
                                         {0, 0, 0, 0}};
    int c, rc, action = 0;
    long long max = 0;
    char why[512] = "";
    lk_reg_jit j;
    lk_err err;

    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_ENABLE || c == OPT_DISABLE || c == OPT_SHOW) {
            if (action && action != c)
                return tool_usage_error("%s: give one of --enable, --disable, --show", a->cmd);
            action = c;
        } else if (c == OPT_MAX_DEVICES) {
            if (tool_parse_i64(optarg, 1, LK_REG_JIT_MAX_LIMIT, &max) != 0)
                return tool_usage_error("%s: --max-devices: an integer from 1 to %u", a->cmd,
                                        LK_REG_JIT_MAX_LIMIT);
        } else {
            return EXIT_USAGE;
        }
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    if (!action)
        return tool_usage_error("%s: give one of --enable, --disable, --show", a->cmd);
    if (max && action != OPT_ENABLE)
        return tool_usage_error("%s: --max-devices is for --enable", a->cmd);
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK)
        return rc;
    if ((rc = admin_open(a, action == OPT_SHOW ? ADMIN_OPEN_READ : ADMIN_OPEN_WRITE)) != EXIT_OK)
        return rc;
    if (action != OPT_SHOW) {
        /* the cap that was set stays unless --max-devices changes it */
        memset(&j, 0, sizeof j);
        err = rop_get_jit(a, &a->name, &j, why, sizeof why);
        if (err != LK_OK)
            return admin_fail(a, err, why);
        j.enabled = action == OPT_ENABLE;
        if (max)
            j.max_devices = (uint64_t)max;
        err = rop_set_jit(a, &a->name, &j, why, sizeof why);
        if (err != LK_OK)
            return admin_fail(a, err, why);
    }
    memset(&j, 0, sizeof j);
    err = rop_get_jit(a, &a->name, &j, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    return jit_print(a, &j);
}

int cmd_registries_jit(int argc, char **argv)
{
    struct admin a;
    int rc;

    admin_init(&a, "registries jit", u_jit);
    a.remote_ok = 1;
    rc = run(&a, argc, argv);
    admin_close(&a);
    return out_finish(rc);
}
