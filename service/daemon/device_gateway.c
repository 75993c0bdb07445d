/*
 * device_gateway.c — gatewayInfo on the device bridge (docs/daemon.md,
 * "Gateways over HTTP"): which device a publishEvent, setState or config
 * request acts for, when it comes from or through a gateway.
 *
 *  - delegatedDeviceId X: the path and the token are the gateway G's (proven
 *    by device_auth.c); G acts for X. X's own token is not in the request, so
 *    lk_gateway_admit is asked with token_verified = 0: only
 *    ASSOCIATION_ONLY gateways may delegate.
 *  - gatewayId G: the path and the token are the device D's (proven), sent
 *    through G; lk_gateway_admit(G's method, bound(G, D), 1).
 *
 * Either way the other device is looked up in the caller's own registry
 * (the request names only an id: another registry's device is not found),
 * the gateway must be GATEWAY, the device acted for must not be one, and
 * neither may be blocked. The auth-method rule itself is lk_gateway_admit's
 * (lk_iotcore.h), never restated here.
 */
#include <stdio.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

/* The device which (its id, or its numId in decimal) of the caller's
 * registry, read fresh: whether it is blocked must be known now. */
static lk_err other_device(struct lkd *d, const lk_device_name *nm, const char *which, lk_reg_device *out,
                           char *why, size_t why_size)
{
    lk_reg_name n = {nm->project, nm->location, nm->registry};
    uint64_t v = 0;
    memset(out, 0, sizeof *out);
    if (lkd_num_id(which, &v))
        return v == 0 ? LK_ERR_REG_NOT_FOUND : lk_registry_get_device(d->reg, &n, NULL, v, out, why, why_size);
    if (!lk_id_valid(which, strlen(which)))
        return LK_ERR_REG_NOT_FOUND;
    return lk_registry_get_device(d->reg, &n, which, 0, out, why, why_size);
}

/* A refusal of the registry read: not found names the id asked for. */
static void reply_lookup(struct lkd_call *c, lk_err err, const char *field, const char *which, const char *reg)
{
    if (err == LK_ERR_REG_NOT_FOUND)
        lkd_reply_error(c, LKD_NOT_FOUND, "gatewayInfo.%s: no device `%.255s` in registry `%s`", field, which, reg);
    else if (err == LK_ERR_REG_BUSY || err == LK_ERR_NOMEM)
        lkd_reply_error(c, LKD_UNAVAILABLE, "the registry could not be read (%s); try again", lk_errname(err));
    else
        lkd_reply_error(c, LKD_INTERNAL, "the device could not be read (%s)", lk_errname(err));
}

/* lk_gateway_admit for gateway (method) and device, the binding read only
 * when the method needs it: 0, or -1 after replying. */
static int admit(struct lkd_call *c, const char *gw_id, uint64_t gw, lk_reg_gateway_auth method, uint64_t dev,
                 int token_verified, const char *extra)
{
    int bound = 0;
    unsigned needs = lk_gateway_needs((int)method);
    if ((needs & LK_GATEWAY_NEEDS_BINDING) && !(needs & LK_GATEWAY_REFUSES)) {
        lk_err err = lk_registry_bound(c->d->reg, gw, dev, &bound);
        if (err != LK_OK) {
            reply_lookup(c, err, "", "", "");
            return -1;
        }
    }
    const char *why = NULL;
    if (lk_gateway_admit((int)method, bound, token_verified, &why) != LK_OK) {
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "gateway `%s`: %s%s", gw_id, why ? why : "refused",
                        extra ? extra : "");
        return -1;
    }
    return 0;
}

/* G (the caller) acts for X. */
static int delegated(struct lkd_call *c, const struct lkd_device_id *g, const char *x, struct lkd_acting *out)
{
    if (g->gateway_type != LK_GATEWAY_TYPE_GATEWAY) {
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "gatewayInfo.delegatedDeviceId: device `%s` is not a gateway "
                        "(its gatewayConfig.gatewayType is not GATEWAY): it cannot act for another device",
                        g->name.device);
        return -1;
    }
    char why[256] = "";
    lk_reg_device xd;
    lk_err err = other_device(c->d, &g->name, x, &xd, why, sizeof why);
    if (err != LK_OK) {
        reply_lookup(c, err, "delegatedDeviceId", x, g->name.registry);
        return -1;
    }
    int rc = -1;
    if (xd.gateway_type == LK_GATEWAY_TYPE_GATEWAY)
        lkd_reply_error(c, LKD_FAILED_PRECONDITION, "gatewayInfo.delegatedDeviceId: device `%s` is a gateway: a "
                        "gateway acts only for devices that are not gateways", xd.id);
    else if (xd.blocked)
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "The device `%s` is blocked", xd.id);
    else if (admit(c, g->name.device, g->num_id, g->gateway_auth, xd.num_id, 0,
                   (lk_gateway_needs((int)g->gateway_auth) & LK_GATEWAY_NEEDS_TOKEN)
                       ? " (a request with delegatedDeviceId carries no token of the device: only an "
                         "ASSOCIATION_ONLY gateway may act for a device over HTTP; the device may post with its "
                         "own token and gatewayInfo.gatewayId)"
                       : NULL) == 0) {
        out->dev.name = g->name;
        snprintf(out->dev.name.device, sizeof out->dev.name.device, "%s", xd.id);
        out->dev.num_id = xd.num_id;
        out->dev.gateway_type = xd.gateway_type;
        out->dev.gateway_auth = xd.gateway_auth_method;
        snprintf(out->gateway, sizeof out->gateway, "%s", g->name.device);
        rc = 0;
    }
    lk_reg_device_free(&xd);
    return rc;
}

/* D (the caller, with its own token) posts through G. */
static int through(struct lkd_call *c, const struct lkd_device_id *dv, const char *gw, struct lkd_acting *out)
{
    if (dv->gateway_type == LK_GATEWAY_TYPE_GATEWAY) {
        lkd_reply_error(c, LKD_FAILED_PRECONDITION, "gatewayInfo.gatewayId: device `%s` is a gateway itself: "
                        "only devices that are not gateways post through one", dv->name.device);
        return -1;
    }
    char why[256] = "";
    lk_reg_device gd;
    lk_err err = other_device(c->d, &dv->name, gw, &gd, why, sizeof why);
    if (err != LK_OK) {
        reply_lookup(c, err, "gatewayId", gw, dv->name.registry);
        return -1;
    }
    int rc = -1;
    if (gd.gateway_type != LK_GATEWAY_TYPE_GATEWAY)
        lkd_reply_error(c, LKD_FAILED_PRECONDITION, "gatewayInfo.gatewayId: device `%s` is not a gateway (its "
                        "gatewayConfig.gatewayType is not GATEWAY)", gd.id);
    else if (gd.blocked)
        lkd_reply_error(c, LKD_PERMISSION_DENIED, "gatewayInfo.gatewayId: the gateway `%s` is blocked", gd.id);
    else if (admit(c, gd.id, gd.num_id, gd.gateway_auth_method, dv->num_id, 1, NULL) == 0) {
        out->dev = *dv;
        snprintf(out->gateway, sizeof out->gateway, "%s", gd.id);
        rc = 0;
    }
    lk_reg_device_free(&gd);
    return rc;
}

int lkd_gateway_acting(struct lkd_call *c, const struct lkd_device_id *caller, const char *delegated_id,
                       const char *gateway_id, struct lkd_acting *out)
{
    memset(out, 0, sizeof *out);
    /* proto3: an empty string is an unset field. */
    int has_x = delegated_id != NULL && delegated_id[0] != '\0';
    int has_g = gateway_id != NULL && gateway_id[0] != '\0';
    if (has_x && has_g) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "gatewayInfo is one of delegatedDeviceId or gatewayId, not both");
        return -1;
    }
    if (has_x)
        return delegated(c, caller, delegated_id, out);
    if (has_g)
        return through(c, caller, gateway_id, out);
    out->dev = *caller;
    return 0;
}

/* A string member of gatewayInfo (either spelling), or NULL: 0, or -1 after
 * replying. */
static int info_string(struct lkd_call *c, json_t *g, const char *camel, const char *snake, const char **out)
{
    int bad = 0;
    json_t *v = lkd_field(c, g, camel, snake, &bad);
    *out = NULL;
    if (bad)
        return -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "gatewayInfo.%s must be a string (a device id or numId)", camel);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

int lkd_gateway_info_body(struct lkd_call *c, const struct lkd_device_id *caller, struct lkd_acting *out)
{
    static const char *const f[] = {"delegatedDeviceId", "gatewayId", NULL};
    const char *x = NULL, *g = NULL;
    int bad = 0;
    json_t *gi = lkd_field(c, c->body, "gatewayInfo", "gateway_info", &bad);
    if (bad)
        return -1;
    if (gi != NULL && !json_is_null(gi)) {
        if (!json_is_object(gi)) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "gatewayInfo must be an object: {\"delegatedDeviceId\": ...} "
                            "or {\"gatewayId\": ...}");
            return -1;
        }
        if (lkd_known_fields(c, gi, "gateway_info", f) != 0 ||
            info_string(c, gi, "delegatedDeviceId", "delegated_device_id", &x) != 0 ||
            info_string(c, gi, "gatewayId", "gateway_id", &g) != 0)
            return -1;
    }
    return lkd_gateway_acting(c, caller, x, g, out);
}

/* One query parameter under either spelling of its message and field. */
static int query_either(struct lkd_call *c, const char *a, const char *b, const char **out)
{
    const char *va = lkd_query(c, a), *vb = lkd_query(c, b);
    if (va != NULL && vb != NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "give %s or %s, not both", a, b);
        return -1;
    }
    *out = va != NULL ? va : vb;
    return 0;
}

int lkd_gateway_info_query(struct lkd_call *c, const struct lkd_device_id *caller, struct lkd_acting *out)
{
    const char *x = NULL, *g = NULL;
    if (query_either(c, "gatewayInfo.delegatedDeviceId", "gateway_info.delegated_device_id", &x) != 0 ||
        query_either(c, "gatewayInfo.gatewayId", "gateway_info.gateway_id", &g) != 0)
        return -1;
    return lkd_gateway_acting(c, caller, x, g, out);
}

/* lastAccessedGateway* is an activity time (IoT Core's were "stale by a few
 * minutes"): a device that keeps posting through the same gateway costs a
 * registry write at most every RECORD_EVERY_S seconds, not one per message.
 * Per device (direct-mapped; a collision only writes again), the gateway it
 * was last recorded with: another gateway is always written at once. */
#define RECORD_SLOTS 4096u
#define RECORD_EVERY_S 10
static struct {
    uint64_t num_id, gateway;          /* the gateway id's FNV-1a hash */
    int64_t t;
} recorded[RECORD_SLOTS];

void lkd_gateway_record(struct lkd *d, uint64_t num_id, const char *gateway)
{
    if (gateway == NULL || gateway[0] == '\0')
        return;
    uint64_t h = 1469598103934665603ull;
    for (const char *s = gateway; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    int64_t now = lkd_now();
    size_t i = (size_t)(num_id * 0x9e3779b97f4a7c15ull >> 52) % RECORD_SLOTS;
    if (recorded[i].num_id == num_id && recorded[i].gateway == h && now - recorded[i].t < RECORD_EVERY_S)
        return;
    lk_reg_activity a = {.num_id = num_id, .last_gateway_time = now, .last_gateway_id = gateway};
    lk_err e = lk_registry_record_activity(d->reg, &a, 1);
    if (e != LK_OK) {
        lkd_log("device %llu: lastAccessedGatewayId not recorded (%s)", (unsigned long long)num_id, lk_errname(e));
        return;
    }
    recorded[i].num_id = num_id;
    recorded[i].gateway = h;
    recorded[i].t = now;
}
