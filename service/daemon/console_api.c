/*
 * console_api.c — the console's fleet data under /console/api/ (docs/
 * console.md "Finding devices", docs/daemon.md): a project's overview (the
 * counts of each registry) and the device search, a page at a time. Both
 * GET, both for any role of the project (viewer and up), both one read
 * transaction of the registry (lk_reg_console.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_reg_console.h"
#include "api_devices.h"

#define SEARCH_PAGE_DEFAULT 50

/* ---- GET /console/api/projects/P/overview ---- */

static int overview_cb(void *arg, const lk_reg_fleet_counts *k)
{
    json_t *a = arg;
    char path[LK_REGISTRY_PATH_MAX + 1];
    snprintf(path, sizeof path, "projects/%s/locations/%s/registries/%s", k->project, k->location,
             k->registry);
    json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "name", path, "devices", (json_int_t)k->devices,
                          "online", (json_int_t)k->online, "offline", (json_int_t)k->offline, "blocked",
                          (json_int_t)k->blocked, "neverSeen", (json_int_t)k->never);
    return j == NULL || json_array_append_new(a, j) != 0;
}

static void overview(struct lkd_call *c, const char *project)
{
    char why[512] = "";
    json_t *a = json_array();
    if (a == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    lk_err err = lk_registry_fleet_counts(c->d->reg, project, overview_cb, a, why, sizeof why);
    if (err != LK_OK) {
        json_decref(a);
        lkd_reply_lk(c, err, why);
        return;
    }
    lkd_reply_json(c, 200, json_pack("{s:o}", "registries", a));
}

/* ---- GET .../registries/R/devices?q=&state=&silentHours=&expiringDays=&pageSize=&pageToken= ---- */

static const char *const known_params[] = {"q", "state", "silentHours", "expiringDays", "pageSize",
                                           "pageToken", "$alt", NULL};

/* Every parameter is one of known_params, given once. 0, or -1 after
 * replying. */
static int check_params(struct lkd_call *c)
{
    const struct evkeyval *kv, *other;
    TAILQ_FOREACH(kv, &c->query, next) {
        size_t i;
        for (i = 0; known_params[i] != NULL && strcmp(known_params[i], kv->key) != 0; i++)
            ;
        if (known_params[i] == NULL) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                            "unknown query parameter \"%.40s\" (known: q, state, silentHours, "
                            "expiringDays, pageSize, pageToken)", kv->key);
            return -1;
        }
        for (other = TAILQ_NEXT(kv, next); other != NULL; other = TAILQ_NEXT(other, next))
            if (strcmp(other->key, kv->key) == 0) {
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "query parameter %s is given more than once "
                                "(state takes a comma-separated list)", kv->key);
                return -1;
            }
    }
    return 0;
}

/* state: a comma-separated list of online, offline, never, blocked,
 * gateway (all must hold); at most one presence. 0, or -1 after replying. */
static int parse_state(struct lkd_call *c, lk_reg_search *s)
{
    static const char *const presences[] = {"never", "online", "offline"};
    const char *v = lkd_query(c, "state");
    if (v == NULL)
        return 0;
    while (*v != '\0') {
        size_t len = strcspn(v, ","), i;
        int found = 0;
        for (i = 0; i < 3; i++)
            if (strlen(presences[i]) == len && strncmp(v, presences[i], len) == 0) {
                if (s->presence >= 0 && s->presence != (int)i) {
                    lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                                    "state: %s and %s exclude each other (a device has one presence)",
                                    presences[s->presence], presences[i]);
                    return -1;
                }
                s->presence = (int)i;
                found = 1;
            }
        if (len == 7 && strncmp(v, "blocked", len) == 0)
            s->blocked_only = found = 1;
        if (len == 7 && strncmp(v, "gateway", len) == 0)
            s->gateways_only = found = 1;
        if (!found) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                            "state \"%.*s\" is not one of online, offline, never, blocked, gateway",
                            (int)(len > 40 ? 40 : len), v);
            return -1;
        }
        v += len;
        if (*v == ',')
            v++;
    }
    return 0;
}

static json_t *hit_json(const lk_reg_device *d, int64_t cred_expiry)
{
    static const char *const presences[] = {"never", "online", "offline"};
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    int bad = json_object_set_new(j, "id", json_string(d->id)) != 0 ||
              json_object_set_new(j, "numId", lkd_ju64(d->num_id)) != 0 ||
              json_object_set_new(j, "blocked", json_boolean(d->blocked)) != 0 ||
              json_object_set_new(j, "presence",
                                  json_string(presences[(unsigned)d->presence <= 2 ? d->presence : 0])) != 0 ||
              json_object_set_new(j, "gateway", json_boolean(d->gateway_type == LK_GATEWAY_TYPE_GATEWAY)) != 0;
    /* Times only when set (absent = never), as the REST API's device. */
    const struct { const char *name; int64_t t; } times[] = {
        {"lastHeartbeatTime", d->last_heartbeat}, {"lastEventTime", d->last_event},
        {"lastStateTime", d->last_state},         {"lastConfigSendTime", d->last_config_send},
        {"lastErrorTime", d->last_error},         {"credentialExpiry", cred_expiry},
    };
    for (size_t i = 0; !bad && i < sizeof times / sizeof times[0]; i++)
        if (times[i].t != 0)
            bad = json_object_set_new(j, times[i].name, lkd_jtime(times[i].t)) != 0;
    if (!bad && d->last_error_status != NULL)
        bad = json_object_set_new(j, "lastErrorStatus",
                                  json_pack("{s:i,s:s}", "code", 0, "message", d->last_error_status)) != 0;
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

struct hits {
    json_t *a;
    char last[LK_ID_MAX + 1];
    int failed;
};

static int search_cb(void *arg, const lk_reg_device *d, int64_t cred_expiry)
{
    struct hits *h = arg;
    json_t *j = hit_json(d, cred_expiry);
    if (j == NULL || json_array_append_new(h->a, j) != 0) {
        h->failed = 1;
        return 1;
    }
    snprintf(h->last, sizeof h->last, "%s", d->id);
    return 0;
}

static void search(struct lkd_call *c, const lk_reg_name *n)
{
    lk_reg_search s;
    int64_t size, hours, days;
    char after[LK_ID_MAX + 1], why[512] = "";
    memset(&s, 0, sizeof s);
    s.presence = -1;
    s.expiring_days = -1;
    if (check_params(c) != 0 || parse_state(c, &s) != 0 ||
        lkd_query_int(c, "pageSize", 0, LK_REG_SEARCH_PAGE_MAX, SEARCH_PAGE_DEFAULT, &size) != 0 ||
        lkd_query_int(c, "silentHours", 1, LK_REG_SILENT_HOURS_MAX, 0, &hours) != 0 ||
        lkd_query_int(c, "expiringDays", 0, LK_REG_EXPIRING_DAYS_MAX, -1, &days) != 0)
        return;
    s.limit = size == 0 ? SEARCH_PAGE_DEFAULT : (unsigned)size;
    s.silent_hours = (unsigned)hours;
    s.expiring_days = (int)days;
    const char *q = lkd_query(c, "q");
    if (q != NULL && q[0] != '\0')
        s.id_prefix = q;
    const char *tok = lkd_query(c, "pageToken");
    if (tok != NULL && tok[0] != '\0') {
        if (lkd_page_token_decode(tok, after, sizeof after) != 0) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pageToken is not one this API gave");
            return;
        }
        s.after_id = after;
    }
    struct hits h;
    memset(&h, 0, sizeof h);
    if ((h.a = json_array()) == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    int more = 0;
    lk_err err = lk_registry_search_devices(c->d->reg, n, &s, search_cb, &h, &more, why, sizeof why);
    if (err == LK_OK && h.failed)
        err = LK_ERR_NOMEM;
    if (err != LK_OK) {
        json_decref(h.a);
        /* A bad q is the caller's: its reason says what an id may hold. */
        if (err == LK_ERR_REG_INVALID)
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "q: %s", why);
        else
            lkd_reply_lk(c, err, err == LK_ERR_NOMEM ? "out of memory" : why);
        return;
    }
    json_t *j = json_pack("{s:o}", "devices", h.a);
    if (j != NULL && more && json_object_set_new(j, "nextPageToken", lkd_page_token_encode(h.last)) != 0) {
        json_decref(j);
        j = NULL;
    }
    if (j == NULL)
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
    else
        lkd_reply_json(c, 200, j);
}

void lkd_console_dispatch(struct lkd_call *c)
{
    lk_reg_name n;
    int overview_path = c->nseg == 3 && strcmp(c->seg[2], "overview") == 0;
    int devices_path = c->nseg == 7 && strcmp(c->seg[2], "locations") == 0 &&
                       strcmp(c->seg[4], "registries") == 0 && strcmp(c->seg[6], "devices") == 0;
    if (c->nseg < 2 || strcmp(c->seg[0], "projects") != 0 || c->verb != NULL ||
        !(overview_path || devices_path)) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such console path: %.200s", c->path);
        return;
    }
    if (c->method != EVHTTP_REQ_GET) {
        lkd_reply_error(c, LKD_NOT_FOUND, "%.200s takes GET", c->path);
        return;
    }
    if (lkd_name(c, &n, overview_path ? 2 : 6) != 0 || lkd_require(c, n.project, LKD_ROLE_VIEWER) != 0)
        return;
    if (overview_path)
        overview(c, n.project);
    else
        search(c, &n);
}
