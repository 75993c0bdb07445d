/*
 * api_iam.c — the IAM methods on a registry, over latchkey's roles
 * (docs/daemon.md, "Roles"):
 *   getIamPolicy        (admin) the project's service accounts by role, as
 *                       an IAM policy: roles/cloudiot.ROLE ->
 *                       serviceAccount:EMAIL. Roles are per project, so
 *                       every registry of the project shows the same policy.
 *   testIamPermissions  (any caller of the project) which of the named
 *                       cloudiot permissions the caller's role holds.
 *   setIamPolicy        UNIMPLEMENTED: roles are given with
 *                       `latchkey service-accounts create --role`, one
 *                       place, audited in the registry.
 * And the service-account keys, for an admin (IAM's own paths):
 *   GET    /v1/projects/P/serviceAccounts                   list accounts
 *   GET    /v1/projects/P/serviceAccounts/EMAIL/keys        list keys
 *   POST   /v1/projects/P/serviceAccounts/EMAIL/keys/K:disable | :enable
 *   DELETE /v1/projects/P/serviceAccounts/EMAIL/keys/K
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_sha256.h"
#include "daemon.h"

/* Each permission and the least role that holds it (the roles are ordered:
 * viewer < deviceController < provisioner < editor < admin). */
static const struct {
    const char *perm;
    lkd_role role;
} perms[] = {
    {"cloudiot.registries.get", LKD_ROLE_VIEWER},
    {"cloudiot.registries.list", LKD_ROLE_VIEWER},
    {"cloudiot.devices.get", LKD_ROLE_VIEWER},
    {"cloudiot.devices.list", LKD_ROLE_VIEWER},
    {"cloudiot.devices.update", LKD_ROLE_DEVICE_CONTROLLER},
    {"cloudiot.devices.updateConfig", LKD_ROLE_DEVICE_CONTROLLER},
    {"cloudiot.devices.sendCommand", LKD_ROLE_DEVICE_CONTROLLER},
    {"cloudiot.devices.create", LKD_ROLE_PROVISIONER},
    {"cloudiot.devices.delete", LKD_ROLE_PROVISIONER},
    {"cloudiot.devices.bindGateway", LKD_ROLE_PROVISIONER},
    {"cloudiot.devices.unbindGateway", LKD_ROLE_PROVISIONER},
    {"cloudiot.registries.create", LKD_ROLE_EDITOR},
    {"cloudiot.registries.update", LKD_ROLE_EDITOR},
    {"cloudiot.registries.delete", LKD_ROLE_EDITOR},
    {"cloudiot.registries.getIamPolicy", LKD_ROLE_ADMIN},
    {"cloudiot.registries.setIamPolicy", LKD_ROLE_ADMIN},
};

static const char *const role_ids[] = {
    [LKD_ROLE_VIEWER] = "roles/cloudiot.viewer",
    [LKD_ROLE_DEVICE_CONTROLLER] = "roles/cloudiot.deviceController",
    [LKD_ROLE_PROVISIONER] = "roles/cloudiot.provisioner",
    [LKD_ROLE_EDITOR] = "roles/cloudiot.editor",
    [LKD_ROLE_ADMIN] = "roles/cloudiot.admin",
};

struct policy_acc {
    json_t *members[LKD_ROLE_ADMIN + 1];
    char last[320];
};

static int policy_cb(void *arg, const lk_reg_sa_key *k)
{
    struct policy_acc *p = arg;
    if (k->role < LK_ROLE_VIEWER || k->role > LK_ROLE_ADMIN || strcmp(p->last, k->email) == 0)
        return 0;
    snprintf(p->last, sizeof p->last, "%s", k->email);
    char m[360];
    snprintf(m, sizeof m, "serviceAccount:%s", k->email);
    json_array_append_new(p->members[k->role], json_string(m));
    return 0;
}

static void get_policy(struct lkd_call *c, const lk_reg_name *n)
{
    lk_reg_registry r;
    char why[512] = "";
    lk_err err = lk_registry_get_registry(c->d->reg, n, &r, why, sizeof why);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    lk_reg_registry_free(&r);
    struct policy_acc p;
    memset(&p, 0, sizeof p);
    for (int i = LKD_ROLE_VIEWER; i <= LKD_ROLE_ADMIN; i++)
        p.members[i] = json_array();
    err = lk_registry_sa_list(c->d->reg, n->project, policy_cb, &p, why, sizeof why);
    json_t *bindings = json_array();
    for (int i = LKD_ROLE_VIEWER; i <= LKD_ROLE_ADMIN; i++) {
        if (err == LK_OK && json_array_size(p.members[i]) > 0)
            json_array_append_new(bindings, json_pack("{s:s,s:O}", "role", role_ids[i], "members", p.members[i]));
        json_decref(p.members[i]);
    }
    if (err != LK_OK) {
        json_decref(bindings);
        lkd_reply_lk(c, err, why);
        return;
    }
    /* The etag names this content (IAM's etags are opaque base64). */
    char *text = json_dumps(bindings, JSON_COMPACT | JSON_SORT_KEYS);
    uint8_t h[32];
    lk_sha256(text ? text : "", text ? strlen(text) : 0, h);
    free(text);
    json_t *etag = lkd_jbytes(h, 9);
    lkd_reply_json(c, 200, json_pack("{s:i,s:o,s:o}", "version", 1, "bindings", bindings, "etag", etag));
}

static void test_permissions(struct lkd_call *c)
{
    static const char *const f[] = {"permissions", NULL};
    int bad = 0;
    if (lkd_known_fields(c, c->body, "test_iam_permissions_request", f) != 0)
        return;
    json_t *asked = lkd_field(c, c->body, "permissions", NULL, &bad);
    if (bad)
        return;
    if (asked != NULL && (!json_is_array(asked) || json_array_size(asked) > 100)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "permissions must be an array of at most 100 names");
        return;
    }
    json_t *held = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(asked, i, p) {
        if (!json_is_string(p))
            continue;
        for (size_t k = 0; k < sizeof perms / sizeof perms[0]; k++)
            if (strcmp(json_string_value(p), perms[k].perm) == 0 && c->who.role >= perms[k].role)
                json_array_append(held, p);
    }
    lkd_reply_json(c, 200, json_pack("{s:o}", "permissions", held));
}

void lkd_api_iam(struct lkd_call *c, const lk_reg_name *n)
{
    if (c->method != EVHTTP_REQ_POST) {
        lkd_reply_error(c, LKD_NOT_FOUND, ":%s takes POST", c->verb);
        return;
    }
    if (strcmp(c->verb, "testIamPermissions") == 0) {
        if (lkd_require(c, n->project, LKD_ROLE_VIEWER) == 0)
            test_permissions(c);
        return;
    }
    if (lkd_require(c, n->project, LKD_ROLE_ADMIN) != 0)
        return;
    if (strcmp(c->verb, "getIamPolicy") == 0)
        get_policy(c, n);
    else
        lkd_reply_error(c, LKD_UNIMPLEMENTED,
                        "setIamPolicy is not offered: give roles with `latchkey service-accounts create NAME "
                        "--project P --role ROLE`");
}

/* ---- service-account keys ---- */

struct sa_acc {
    json_t *a;
    const char *email;     /* NULL: accounts, else this account's keys */
    char last[320];
};

static int sa_cb(void *arg, const lk_reg_sa_key *k)
{
    struct sa_acc *acc = arg;
    char name[512];
    if (acc->email == NULL) {
        if (strcmp(acc->last, k->email) == 0)
            return 0;
        snprintf(acc->last, sizeof acc->last, "%s", k->email);
        snprintf(name, sizeof name, "projects/%s/serviceAccounts/%s", k->project, k->email);
        json_array_append_new(acc->a, json_pack("{s:s,s:s,s:s,s:s}", "name", name, "email", k->email, "projectId",
                                                k->project, "role", role_ids[k->role >= 1 && k->role <= 5 ? k->role : 1]));
        return 0;
    }
    if (strcmp(k->email, acc->email) != 0 || k->key_id == NULL)
        return 0;
    char t[40];
    snprintf(name, sizeof name, "projects/%s/serviceAccounts/%s/keys/%s", k->project, k->email, k->key_id);
    json_array_append_new(acc->a, json_pack("{s:s,s:s,s:b,s:s,s:s}", "name", name, "keyAlgorithm", "KEY_ALG_RSA_2048",
                                            "disabled", k->disabled, "keyType", "USER_MANAGED", "validAfterTime",
                                            lk_time_rfc3339(k->created, t, sizeof t)));
    return 0;
}

void lkd_api_service_accounts(struct lkd_call *c)
{
    const char *project = c->seg[1];
    if (lkd_require(c, project, LKD_ROLE_ADMIN) != 0)
        return;
    char why[512] = "";
    lk_err err;
    if (c->nseg == 3 || (c->nseg == 5 && strcmp(c->seg[4], "keys") == 0)) {
        if (c->method != EVHTTP_REQ_GET || c->verb != NULL) {
            lkd_reply_error(c, LKD_NOT_FOUND, "this path takes GET");
            return;
        }
        struct sa_acc acc = {json_array(), c->nseg == 5 ? c->seg[3] : NULL, ""};
        err = lk_registry_sa_list(c->d->reg, project, sa_cb, &acc, why, sizeof why);
        if (err != LK_OK) {
            json_decref(acc.a);
            lkd_reply_lk(c, err, why);
            return;
        }
        if (acc.email != NULL && json_array_size(acc.a) == 0) {
            json_decref(acc.a);
            lkd_reply_error(c, LKD_NOT_FOUND, "no keys of service account %.320s in project %s", acc.email, project);
            return;
        }
        lkd_reply_json(c, 200, json_pack("{s:o}", acc.email ? "keys" : "accounts", acc.a));
        return;
    }
    if (c->nseg != 6 || strcmp(c->seg[4], "keys") != 0) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such path under serviceAccounts");
        return;
    }
    const char *key = c->seg[5];
    lk_reg_sa_key k;
    err = lk_registry_sa_lookup(c->d->reg, key, &k);
    if (err == LK_OK && (strcmp(k.email, c->seg[3]) != 0 || strcmp(k.project, project) != 0)) {
        lk_reg_sa_key_free(&k);
        err = LK_ERR_REG_NOT_FOUND;
    }
    if (err != LK_OK) {
        lkd_reply_lk(c, err, err == LK_ERR_REG_NOT_FOUND ? "no such key of that service account" : "");
        return;
    }
    lk_reg_sa_key_free(&k);
    if (c->method == EVHTTP_REQ_DELETE && c->verb == NULL)
        err = lk_registry_sa_key_delete(c->d->reg, key, why, sizeof why);
    else if (c->method == EVHTTP_REQ_POST && c->verb != NULL &&
             (strcmp(c->verb, "disable") == 0 || strcmp(c->verb, "enable") == 0))
        err = lk_registry_sa_key_set_disabled(c->d->reg, key, strcmp(c->verb, "disable") == 0, why, sizeof why);
    else {
        lkd_reply_error(c, LKD_NOT_FOUND, "a key takes DELETE, or POST :disable or :enable");
        return;
    }
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    lkd_log_change(c, c->verb ? c->verb : "delete", "key", key, "of service account %s", c->seg[3]);
    lkd_reply_json(c, 200, json_object());
}
