/*
 * api_devices.c — projects.locations.registries.devices: list (pages by
 * keyset: the page token is the last id given, so page 1,000 costs what
 * page 1 does), create, get, patch, delete. The device-level verbs and
 * histories are in api_device_ops.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "api_devices.h"

#define PAGE_DEFAULT 500      /* IoT Core's newer quota page: at most 500 a page */
#define PAGE_MAX 10000        /* the older page's maximum, accepted */
#define FILTER_MAX 10000      /* ids per filter, as IoT Core */

static int newest_state(void *arg, const lk_reg_state_entry *s)
{
    lk_reg_state_entry *out = arg;
    out->update_time = s->update_time;
    out->data = malloc(s->len + 1);
    if (out->data != NULL) {
        memcpy(out->data, s->data, s->len);
        out->len = s->len;
    }
    return 1;
}

/* Whether a device's JSON under this mask shows its config, its state. */
static void wants(char mask[][48], int nm, int *want_cfg, int *want_st)
{
    *want_cfg = nm == 0;
    *want_st = nm == 0;
    for (int i = 0; i < nm; i++) {
        *want_cfg |= lkd_path_is(mask[i], "config");
        *want_st |= lkd_path_is(mask[i], "state");
    }
}

static void reply_device(struct lkd_call *c, const lk_reg_name *n, const char *dev, char mask[][48], int nm)
{
    lk_reg_device d;
    lk_reg_config cfg = {0};
    lk_reg_state_entry st = {0};
    int want_cfg, want_st;
    wants(mask, nm, &want_cfg, &want_st);
    /* The device and its newest config from one read transaction (a GET's
     * cost is mostly per-transaction locking); a device that never reported
     * a state (last_state 0) has none to read. */
    if (lkd_device_load(c, n, dev, &d, want_cfg ? &cfg : NULL) != 0)
        return;
    if (want_st && d.last_state != 0) {
        char why[256];
        lk_reg_name dn = {d.project, d.location, d.registry};
        (void)lk_registry_list_states(c->d->reg, &dn, d.id, 1, newest_state, &st, why, sizeof why);
    }
    json_t *j = lkd_device_json(c, &d, cfg.version ? &cfg : NULL, st.update_time ? &st : NULL, mask, nm);
    lk_reg_config_free(&cfg);
    lk_reg_state_entry_free(&st);
    lk_reg_device_free(&d);
    if (j == NULL)
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
    else
        lkd_reply_json(c, 200, j);
}

/* ---- list ---- */

struct dev_page {
    struct lkd_call *c;
    json_t *a;
    char (*mask)[48];
    int nm;
    const char *last;
    char *last_copy;
    int online;      /* -1: any; 0/1: only devices offline / online */
};

static int dev_page_cb(void *arg, const lk_reg_device *d)
{
    struct dev_page *p = arg;
    /* online=true|false (latchkey's extension): a page may come out short;
     * the token still moves past every device the query read. */
    if (p->online >= 0 && (d->presence == LK_PRESENCE_ONLINE) != p->online) {
        free(p->last_copy);
        p->last_copy = strdup(d->id);
        return 0;
    }
    json_t *j = lkd_device_json(p->c, d, NULL, NULL, p->mask, p->nm);
    if (j == NULL)
        return 1;
    json_array_append_new(p->a, j);
    free(p->last_copy);
    p->last_copy = strdup(d->id);
    return 0;
}

/* Repeated or comma-separated values of a query parameter. */
static int query_list(struct lkd_call *c, const char *name, char ***out, size_t *n)
{
    const struct evkeyval *kv;
    *out = NULL;
    *n = 0;
    TAILQ_FOREACH(kv, &c->query, next) {
        if (strcmp(kv->key, name) != 0)
            continue;
        const char *p = kv->value;
        while (*p) {
            size_t len = strcspn(p, ",");
            if (len > 0) {
                if (*n == FILTER_MAX) {
                    lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: at most %d values", name, FILTER_MAX);
                    return -1;
                }
                char **grown = realloc(*out, (*n + 1) * sizeof **out);
                char *s = strndup(p, len);
                if (grown == NULL || s == NULL) {
                    free(s);
                    if (grown)
                        *out = grown;
                    lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
                    return -1;
                }
                *out = grown;
                (*out)[(*n)++] = s;
            }
            p += len;
            if (*p == ',')
                p++;
        }
    }
    return 0;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Page tokens: base64url of "d:" + the last id given. Opaque to clients. */
int lkd_page_token_decode(const char *tok, char *id, size_t id_size)
{
    size_t n = strlen(tok), got = 0;
    uint8_t buf[LK_ID_MAX + 8];
    if (n == 0 || n > LK_B64URL_ENCODED_LEN(sizeof buf) ||
        lk_b64url_decode(tok, n, buf, sizeof buf, &got, 0) != LK_OK || got < 3 || buf[0] != 'd' ||
        buf[1] != ':' || got - 2 >= id_size)
        return -1;
    memcpy(id, buf + 2, got - 2);
    id[got - 2] = '\0';
    return lk_id_valid(id, got - 2) ? 0 : -1;
}

json_t *lkd_page_token_encode(const char *id)
{
    char raw[LK_ID_MAX + 3];
    char out[LK_B64URL_ENCODED_LEN(sizeof raw) + 1];
    size_t n = (size_t)snprintf(raw, sizeof raw, "d:%s", id), ol = 0;
    if (lk_b64url_encode((const uint8_t *)raw, n, out, sizeof out, &ol) != LK_OK)
        return NULL;
    out[ol] = '\0';
    return json_string(out);
}

static void list_devices(struct lkd_call *c, const lk_reg_name *n)
{
    char mask[32][48];
    int nm = lkd_mask(c, "fieldMask", mask, 32);
    int64_t size;
    if (nm < 0 || lkd_query_int(c, "pageSize", 0, PAGE_MAX, PAGE_DEFAULT, &size) != 0)
        return;
    if (size == 0)
        size = PAGE_DEFAULT;
    lk_reg_device_query q;
    memset(&q, 0, sizeof q);
    char after[LK_ID_MAX + 1];
    const char *tok = lkd_query(c, "pageToken");
    if (tok != NULL && tok[0] != '\0') {
        if (lkd_page_token_decode(tok, after, sizeof after) != 0) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pageToken is not one this API gave");
            return;
        }
        q.after_id = after;
    }
    char **ids = NULL, **nums = NULL;
    size_t nids = 0, nnums = 0;
    uint64_t *numv = NULL;
    if (query_list(c, "deviceIds", &ids, &nids) != 0 || query_list(c, "deviceNumIds", &nums, &nnums) != 0)
        goto out;
    if (nnums > 0 && (numv = calloc(nnums, sizeof *numv)) == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nnums; i++) {
        char *end;
        numv[i] = strtoull(nums[i], &end, 10);
        if (*end != '\0' || !isdigit((unsigned char)nums[i][0])) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "deviceNumIds: \"%.24s\" is not a number", nums[i]);
            goto out;
        }
    }
    q.ids = (const char *const *)ids;
    q.nids = nids;
    q.num_ids = numv;
    q.nnum_ids = nnums;
    const char *gt = lkd_query(c, "gatewayListOptions.gatewayType");
    if (gt != NULL) {
        /* A number when the client encodes enums as numbers. */
        int digits = gt[0] != '\0' && strspn(gt, "0123456789") == strlen(gt) && strlen(gt) < 6;
        json_t *v = digits ? json_integer(atoi(gt)) : json_string(gt);
        int e = v ? lkd_enum(c, v, "gatewayListOptions.gatewayType", lkd_gw_type_names, lkd_gw_type_values,
                             LKD_GW_TYPES)
                  : -1;
        json_decref(v);
        if (e < 0)
            goto out;
        q.gateway_type = (lk_reg_gateway_type)e;
    }
    q.associations_gateway_id = lkd_query(c, "gatewayListOptions.associationsGatewayId");
    q.associations_device_id = lkd_query(c, "gatewayListOptions.associationsDeviceId");
    if ((q.gateway_type != 0) + (q.associations_gateway_id != NULL) + (q.associations_device_id != NULL) > 1) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "gatewayListOptions takes one of its filters");
        goto out;
    }
    q.limit = (unsigned)size;
    q.full = 0;
    for (int i = 0; i < nm; i++)
        if (strcmp(mask[i], "credentials") == 0 || strcmp(mask[i], "metadata") == 0)
            q.full = 1;
    struct dev_page p = {c, json_array(), mask, nm > 0 ? nm : -1, NULL, NULL, -1};
    const char *online = lkd_query(c, "online");
    if (online != NULL) {
        if (strcmp(online, "true") != 0 && strcmp(online, "false") != 0) {
            json_decref(p.a);
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "online must be true or false");
            goto out;
        }
        p.online = strcmp(online, "true") == 0;
    }
    /* No fieldMask: id, name and numId only, as IoT Core's list. */
    char none[1][48] = {"-"};
    if (nm == 0)
        p.mask = none, p.nm = 1;
    int more = 0;
    char why[512] = "";
    lk_err err = lk_registry_query_devices(c->d->reg, n, &q, dev_page_cb, &p, &more, why, sizeof why);
    if (err != LK_OK) {
        json_decref(p.a);
        free(p.last_copy);
        lkd_reply_lk(c, err, why);
        goto out;
    }
    json_t *j = json_object();
    json_object_set_new(j, "devices", p.a);
    if (more && p.last_copy != NULL)
        json_object_set_new(j, "nextPageToken", lkd_page_token_encode(p.last_copy));
    free(p.last_copy);
    lkd_reply_json(c, 200, j);
out:
    free_list(ids, nids);
    free_list(nums, nnums);
    free(numv);
}

/* ---- create and patch ---- */

static void create_device(struct lkd_call *c, const lk_reg_name *n)
{
    struct lkd_device_body b;
    if (lkd_device_body_read(c, c->body, &b, 1) != 0) {
        lkd_device_body_free(&b);
        return;
    }
    if (b.spec.id == NULL) {
        lkd_device_body_free(&b);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "the device's id is required");
        return;
    }
    uint64_t num = 0;
    char why[512] = "";
    lk_err err = lk_registry_create_device(c->d->reg, n, &b.spec, &num, why, sizeof why);
    char id[LK_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", b.spec.id);
    lkd_device_body_free(&b);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char dp_[LK_DEVICE_PATH_MAX + 1];
    lkd_log_change(c, "create", "device", lkd_device_path(n, id, dp_, sizeof dp_), "numId %llu",
                   (unsigned long long)num);
    reply_device(c, n, id, NULL, 0);
}

static void patch_device(struct lkd_call *c, const lk_reg_name *n, const char *dev)
{
    char mask[16][48];
    int nm = lkd_mask(c, "updateMask", mask, 16);
    if (nm < 0)
        return;
    if (nm == 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "updateMask is required (e.g. updateMask=blocked)");
        return;
    }
    unsigned set = 0;
    for (int i = 0; i < nm; i++) {
        if (strcmp(mask[i], "credentials") == 0)
            set |= LK_REG_SET_CREDS;
        else if (strcmp(mask[i], "blocked") == 0)
            set |= LK_REG_SET_BLOCKED;
        else if (strcmp(mask[i], "metadata") == 0)
            set |= LK_REG_SET_METADATA;
        else if (strcmp(mask[i], "logLevel") == 0)
            set |= LK_REG_SET_LOG_LEVEL;
        else if (strcmp(mask[i], "gatewayConfig.gatewayAuthMethod") == 0)
            set |= LK_REG_SET_GATEWAY_AUTH;
        else {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                            "updateMask: %s cannot be changed (only credentials, blocked, metadata, logLevel, "
                            "gatewayConfig.gatewayAuthMethod)", mask[i]);
            return;
        }
    }
    lk_reg_device d;
    if (lkd_device_load(c, n, dev, &d, NULL) != 0)
        return;
    struct lkd_device_body b;
    if (lkd_device_body_read(c, c->body, &b, 0) != 0) {
        lkd_device_body_free(&b);
        lk_reg_device_free(&d);
        return;
    }
    b.spec.id = d.id;
    char why[512] = "";
    lk_err err = lk_registry_update_device(c->d->reg, n, &b.spec, set, why, sizeof why);
    lkd_device_body_free(&b);
    char id[LK_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", d.id);
    lk_reg_device_free(&d);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char dp_[LK_DEVICE_PATH_MAX + 1];
    lkd_log_change(c, "update", "device", lkd_device_path(n, id, dp_, sizeof dp_), NULL);
    reply_device(c, n, id, NULL, 0);
}

void lkd_api_devices(struct lkd_call *c, const lk_reg_name *n, const char *dev, const char *sub)
{
    char why[512] = "";
    if (dev == NULL) {
        if (c->verb != NULL && strcmp(c->verb, "importManifest") == 0) {
            if (c->method != EVHTTP_REQ_POST)
                lkd_reply_error(c, LKD_NOT_FOUND, "devices:importManifest takes POST");
            else if (lkd_require(c, n->project, LKD_ROLE_ADMIN) == 0)
                lkd_api_import_manifest(c, n);
        } else if (c->verb != NULL) {
            lkd_reply_error(c, LKD_NOT_FOUND, "no method :%.64s on devices", c->verb);
        } else if (c->method == EVHTTP_REQ_GET) {
            if (lkd_require(c, n->project, LKD_ROLE_VIEWER) == 0)
                list_devices(c, n);
        } else if (c->method == EVHTTP_REQ_POST) {
            if (lkd_require(c, n->project, LKD_ROLE_PROVISIONER) == 0)
                create_device(c, n);
        } else {
            lkd_reply_error(c, LKD_NOT_FOUND, "devices take GET (list) or POST (create)");
        }
        return;
    }
    if (sub != NULL || c->verb != NULL) {
        lkd_api_device_ops(c, n, dev, sub);
        return;
    }
    switch (c->method) {
    case EVHTTP_REQ_GET: {
        if (lkd_require(c, n->project, LKD_ROLE_VIEWER) != 0)
            return;
        char mask[32][48];
        int nm = lkd_mask(c, "fieldMask", mask, 32);
        if (nm >= 0)
            reply_device(c, n, dev, mask, nm);
        return;
    }
    case EVHTTP_REQ_PATCH:
        if (lkd_require(c, n->project, LKD_ROLE_DEVICE_CONTROLLER) == 0)
            patch_device(c, n, dev);
        return;
    case EVHTTP_REQ_DELETE: {
        if (lkd_require(c, n->project, LKD_ROLE_PROVISIONER) != 0)
            return;
        lk_reg_device d;
        if (lkd_device_load(c, n, dev, &d, NULL) != 0)
            return;
        lk_err err = lk_registry_delete_device(c->d->reg, n, d.id, why, sizeof why);
        char dp_[LK_DEVICE_PATH_MAX + 1];
        if (err == LK_OK)
            lkd_log_change(c, "delete", "device", lkd_device_path(n, d.id, dp_, sizeof dp_), NULL);
        lk_reg_device_free(&d);
        if (err != LK_OK)
            lkd_reply_lk(c, err, why);
        else
            lkd_reply_json(c, 200, json_object());
        return;
    }
    default:
        lkd_reply_error(c, LKD_NOT_FOUND, "a device takes GET, PATCH or DELETE");
        return;
    }
}
