/*
 * latchkey devices gateways bind | unbind   (gcloud iot devices gateways ...)
 *
 * A binding joins a gateway (gatewayConfig.gatewayType GATEWAY) and a device
 * of the same registry: IoT Core's bindDeviceToGateway and
 * unbindDeviceFromGateway, with the registry's rules (lk_registry_bind).
 * gateways list and list-bound-devices are devices list with a filter
 * (cmd_devices.c).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "admin.h"
#include "regops.h"
#include "devices.h"

int devices_gateway_enum(const struct admin *a, const char *opt, enum admin_enum e, const char *arg, int *value)
{
    char up[64];
    size_t i;
    for (i = 0; arg[i] != '\0' && i + 1 < sizeof up; i++)
        up[i] = arg[i] == '-' ? '_' : (char)toupper((unsigned char)arg[i]);
    up[i] = '\0';
    if (arg[i] == '\0' && admin_enum_value(e, up, value) == 0 && *value != 0)
        return EXIT_OK;
    return tool_usage_error("%s: %s: '%s' is none of %s (or IoT Core's enum names)", a->cmd, opt, arg,
                            e == ADMIN_ENUM_GATEWAY_TYPE ? "gateway, non-gateway"
                                                         : "association-only, device-auth-token-only, "
                                                           "association-and-device-auth-token");
}

/* One of two flags that must agree when both are given (the registry or the
 * region of the gateway and of the device): the one that is set. */
static int agree(const struct admin *a, const char *what, const char *common, const char *g, const char *d,
                 const char **out)
{
    const char *v[3] = {common, g, d};
    *out = NULL;
    for (int i = 0; i < 3; i++) {
        if (v[i] == NULL)
            continue;
        if (*out != NULL && strcmp(*out, v[i]) != 0) {
            tool_error(a->cmd, LK_ERR_REG_INVALID, "the gateway and the device are in different %ss ('%s', "
                       "'%s'): a device is bound only to gateways of its own registry", what, *out, v[i]);
            return EXIT_REG_INVALID;
        }
        *out = v[i];
    }
    return EXIT_OK;
}

int devices_gateway_bind(struct dev_opts *o, int unbind)
{
    struct admin *a = o->a;
    const char *gw = o->gateway, *dev = a->device, *gleaf = NULL, *dleaf = NULL;
    char why[512] = "";
    int rc;

    if (o->npos > 0)
        return tool_usage_error("%s: unexpected argument '%s' (give --gateway G --device D)", a->cmd, o->pos[0]);
    if (gw == NULL || dev == NULL)
        return tool_usage_error("%s: --gateway and --device are required", a->cmd);
    if ((rc = agree(a, "registrie", a->registry, o->gw_registry, o->dev_registry, &a->registry)) != EXIT_OK ||
        (rc = agree(a, "region", a->location, o->gw_region, o->dev_region, &a->location)) != EXIT_OK)
        return rc;
    /* Either may be a full resource name; both must then name one registry. */
    if ((rc = admin_resolve(a, gw, 1, &gleaf)) != EXIT_OK)
        return rc;
    lk_reg_name first = a->name;
    if ((rc = admin_resolve(a, dev, 1, &dleaf)) != EXIT_OK)
        return rc;
    if (strcmp(first.project, a->name.project) != 0 || strcmp(first.location, a->name.location) != 0 ||
        strcmp(first.registry, a->name.registry) != 0) {
        tool_error(a->cmd, LK_ERR_REG_INVALID, "the gateway and the device are in different registries: a "
                   "device is bound only to gateways of its own registry");
        return EXIT_REG_INVALID;
    }
    if ((rc = admin_open(a, ADMIN_OPEN_WRITE)) != EXIT_OK)
        return rc;
    lk_err err = rop_bind(a, &a->name, gleaf, dleaf, unbind, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    if (a->json)
        return out_json(json_object());
    printf(unbind ? "Unbound device [%s] from gateway [%s].\n" : "Bound device [%s] to gateway [%s].\n", dleaf,
           gleaf);
    return EXIT_OK;
}
