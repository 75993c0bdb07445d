/*
 * api.c — the cloudiot v1 paths (docs/daemon.md, "Methods"), from segments
 * to the handler. A path or method that names nothing is NOT_FOUND, as
 * Google's front end answers; groups (never generally available in IoT
 * Core) are UNIMPLEMENTED.
 *
 *   projects/P/locations/L/registries                     GET list, POST create
 *   projects/P/locations/-/registries                     GET list (every location)
 *   projects/P/locations/L/registries/R                   GET, PATCH, DELETE
 *   projects/P/locations/L/registries/R:VERB              POST bind/unbind/IAM
 *   projects/P/locations/L/registries/R/devices           GET list, POST create
 *   .../devices/D                                         GET, PATCH, DELETE
 *   .../devices/D:modifyCloudToDeviceConfig|sendCommandToDevice   POST
 *   .../devices/D/configVersions | states                 GET
 *   projects/P/serviceAccounts[/EMAIL/keys[/KEY[:disable|:enable]]]
 *   projects/P/subscriptions[/S[:stats]]                  Pub/Sub's push subscriptions
 */
#include <string.h>

#include <event2/buffer.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

static int is(const struct lkd_call *c, unsigned i, const char *s)
{
    return i < c->nseg && strcmp(c->seg[i], s) == 0;
}

void lkd_api_dispatch(struct lkd_call *c)
{
    lk_reg_name n;
    if (c->nseg == 1 && c->d->static_body != NULL && strcmp(c->seg[0], "bench") == 0 && c->verb != NULL &&
        strcmp(c->verb, "static") == 0) {
        struct evbuffer *b = evbuffer_new();
        if (b != NULL) {
            evbuffer_add_reference(b, c->d->static_body, c->d->static_len, NULL, NULL);
            evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                              "application/json; charset=UTF-8");
            evhttp_send_reply(c->req, 200, "OK", b);
            evbuffer_free(b);
        }
        lkd_call_free(c);
        return;
    }
    if (!is(c, 0, "projects") || c->nseg < 2) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such path: the API's resources are under /v1/projects/");
        return;
    }
    if (is(c, 2, "subscriptions")) {
        lkd_api_subscriptions(c);
        return;
    }
    if (is(c, 2, "auditRecords")) {
        lkd_api_audit(c);
        return;
    }
    if (is(c, 2, "serviceAccounts")) {
        lkd_api_service_accounts(c);
        return;
    }
    if (!is(c, 2, "locations") || c->nseg < 5 || !is(c, 4, "registries")) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such path: expected projects/P/locations/L/registries");
        return;
    }
    if (c->nseg == 5) {
        /* Location "-": every location of the project (registries.list
         * only), as Google's APIs spell a wildcard in a parent. */
        if (strcmp(c->seg[3], "-") == 0 && c->method == EVHTTP_REQ_GET && c->verb == NULL) {
            if (lkd_name(c, &n, 2) == 0)
                lkd_api_registries(c, &n, 0);
        } else if (lkd_name(c, &n, 4) == 0) {
            lkd_api_registries(c, &n, 0);
        }
        return;
    }
    if (lkd_name(c, &n, 6) != 0)
        return;
    if (c->nseg == 6) {
        if (c->verb != NULL && (strcmp(c->verb, "getIamPolicy") == 0 || strcmp(c->verb, "setIamPolicy") == 0 ||
                                strcmp(c->verb, "testIamPermissions") == 0))
            lkd_api_iam(c, &n);
        else
            lkd_api_registries(c, &n, 1);
        return;
    }
    if ((is(c, 6, "manifestSigners") || is(c, 6, "crls")) && c->nseg <= 8) {
        lkd_api_trust(c, &n, is(c, 6, "crls"));
        return;
    }
    if (is(c, 6, "groups")) {
        lkd_reply_error(c, LKD_UNIMPLEMENTED, "device groups are not offered (they never left IoT Core's alpha)");
        return;
    }
    if (!is(c, 6, "devices") || c->nseg > 9) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such path under the registry");
        return;
    }
    if (c->nseg == 7) {
        lkd_api_devices(c, &n, NULL, NULL);
        return;
    }
    lkd_api_devices(c, &n, c->seg[7], c->nseg == 9 ? c->seg[8] : NULL);
}
