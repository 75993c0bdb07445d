/*
 * latchkey devices credentials create|list|describe|delete, devices configs
 * update|list|describe, devices states list: a device's credentials and
 * the history of its configs and states (docs/cli.md, "Registry").
 */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "regops.h"
#include "devices.h"

/* ---- devices credentials ... ---- */

int devices_credentials(struct dev_opts *o, const char *sub)
{
    static const char *const heads[] = {"INDEX", "FORMAT", "EXPIRATION_TIME", "SHA256"};
    struct admin *a = o->a;
    lk_reg_credential cred;
    lk_reg_device d;
    const char *id = NULL;
    char *buf = NULL, why[512] = "";
    long long index = -1;
    lk_err err;
    int rc, writes;

    memset(&cred, 0, sizeof cred);
    memset(&d, 0, sizeof d);
    if (strcmp(sub, "describe") == 0 || strcmp(sub, "delete") == 0) {
        const char *s = after_device(o, 0);
        if (s == NULL && a->device == NULL && o->npos == 1)
            return tool_usage_error("%s: give DEVICE INDEX (or INDEX --device DEVICE)", a->cmd);
        if (s == NULL || tool_parse_i64(s, 0, 1000000, &index) != 0)
            return tool_usage_error("%s: give the credential's INDEX (0, 1 or 2, as 'devices credentials list' "
                                    "shows)", a->cmd);
        if ((rc = check_extra(o, 1)) != EXIT_OK)
            return rc;
    } else if ((rc = check_extra(o, 0)) != EXIT_OK) {
        return rc;
    }
    if (strcmp(sub, "create") == 0) {
        if (o->path == NULL)
            return tool_usage_error("%s: --path FILE is required", a->cmd);
        if ((rc = load_credential(a, o->path, o->type, o->expiration, &cred)) != EXIT_OK)
            return rc;
    }
    writes = strcmp(sub, "create") == 0 || strcmp(sub, "delete") == 0;
    if ((rc = target_device(o, writes ? ADMIN_OPEN_WRITE : ADMIN_OPEN_READ, &id, &buf)) != EXIT_OK)
        goto out;
    if (strcmp(sub, "create") == 0) {
        err = rop_add_credential(a, &a->name, id, &cred, why, sizeof why);
        if (err == LK_OK)
            warn_expired(a, o->path, &cred);
        rc = device_changed(a, err, why, id, "Created credential for device [%s].\n", id);
        goto out;
    }
    if (strcmp(sub, "delete") == 0) {
        err = rop_delete_credential(a, &a->name, id, (unsigned)index, why, sizeof why);
        rc = device_changed(a, err, why, id, "Deleted credential [%lld] of device [%s].\n", index, id);
        goto out;
    }
    err = rop_get_device(a, &a->name, id, 0, &d, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    if (index >= 0) { /* describe */
        if ((unsigned long long)index >= d.ncreds) {
            tool_error(a->cmd, LK_ERR_REG_NOT_FOUND, "device %s has %u credential%s; there is no index %lld", id,
                       d.ncreds, d.ncreds == 1 ? "" : "s", index);
            rc = EXIT_REG_NOT_FOUND;
            goto out;
        }
        rc = a->json ? out_json(admin_cred_json(&d.creds[index])) : out_yaml(admin_cred_json(&d.creds[index]));
    } else if (a->json) {
        struct out_list l;
        unsigned i;
        out_list_begin(&l);
        for (i = 0; i < d.ncreds; i++)
            out_list_item(&l, admin_cred_json(&d.creds[i]));
        rc = out_list_end(&l);
    } else {
        struct out_table *t = out_table_new(4, heads);
        unsigned i;
        for (i = 0; t != NULL && i < d.ncreds; i++) {
            char idx[16], tb[48], hex[65];
            const char *row[4];
            snprintf(idx, sizeof idx, "%u", i);
            row[0] = idx;
            row[1] = lk_cred_format_name(d.creds[i].format);
            row[2] = d.creds[i].expires ? lk_time_rfc3339(d.creds[i].expires, tb, sizeof tb) : "never";
            row[3] = admin_cred_sha256(d.creds[i].format, d.creds[i].pem, hex) == 0 ? hex : "?";
            if (out_table_row(t, row) != 0) {
                out_table_free(t);
                t = NULL;
            }
        }
        rc = t != NULL ? out_table_print(t) : admin_fail(a, LK_ERR_NOMEM, NULL);
    }
out:
    lk_reg_device_free(&d);
    free(cred.pem);
    free(buf);
    return rc;
}

/* ---- devices configs ... | states list ---- */

struct hist_ctx {
    struct out_list l;
    struct out_table *t;
    int json, failed;
};

/* One entry: j (--format json; consumed) or its table row. Non-zero stops
 * the listing. */
static int hist_add(struct hist_ctx *x, json_t *j, const char *const *row)
{
    if (x->json ? out_list_item(&x->l, j) != EXIT_OK : out_table_row(x->t, row) != 0)
        x->failed = 1;
    return x->failed;
}

static int config_cb(void *arg, const lk_reg_config *c)
{
    struct hist_ctx *x = arg;
    char v[32], cu[48], ack[48], n[32];
    const char *row[4];
    if (x->json)
        return hist_add(x, admin_config_json(c), NULL);
    snprintf(v, sizeof v, "%lld", (long long)c->version);
    snprintf(n, sizeof n, "%zu", c->len);
    row[0] = v;
    row[1] = lk_time_rfc3339(c->cloud_update_time, cu, sizeof cu);
    row[2] = c->device_ack_time ? lk_time_rfc3339(c->device_ack_time, ack, sizeof ack) : "";
    row[3] = n;
    return hist_add(x, NULL, row);
}

static int state_cb(void *arg, const lk_reg_state_entry *s)
{
    struct hist_ctx *x = arg;
    char ut[48], n[32];
    const char *row[2];
    if (x->json)
        return hist_add(x, admin_state_json(s), NULL);
    snprintf(n, sizeof n, "%zu", s->len);
    row[0] = lk_time_rfc3339(s->update_time, ut, sizeof ut);
    row[1] = n;
    return hist_add(x, NULL, row);
}

int devices_history(struct dev_opts *o, int states)
{
    static const char *const cheads[] = {"VERSION", "CLOUD_UPDATE_TIME", "DEVICE_ACK_TIME", "BYTES"};
    static const char *const sheads[] = {"UPDATE_TIME", "BYTES"};
    struct admin *a = o->a;
    struct hist_ctx x;
    const char *id = NULL;
    char *buf = NULL, why[512] = "";
    unsigned max = o->limit > 0 && o->limit < 1000000 ? (unsigned)o->limit : 0;
    lk_err err;
    int rc;

    if ((rc = check_extra(o, 0)) != EXIT_OK || (rc = target_device(o, ADMIN_OPEN_READ, &id, &buf)) != EXIT_OK) {
        free(buf);
        return rc;
    }
    memset(&x, 0, sizeof x);
    x.json = a->json;
    if (a->json)
        out_list_begin(&x.l);
    else if ((x.t = states ? out_table_new(2, sheads) : out_table_new(4, cheads)) == NULL) {
        free(buf);
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    }
    if (states)
        err = rop_list_states(a, &a->name, id, max, state_cb, &x, why, sizeof why);
    else
        err = rop_list_configs(a, &a->name, id, max, config_cb, &x, why, sizeof why);
    free(buf);
    if (err != LK_OK || x.failed) {
        out_table_free(x.t);
        if (a->json && x.l.n > 0)
            fputs("\n", stdout);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    return a->json ? out_list_end(&x.l) : out_table_print(x.t);
}

int devices_config_describe(struct dev_opts *o)
{
    struct admin *a = o->a;
    const char *id = NULL;
    char *buf = NULL, why[512] = "";
    json_t *cfg = NULL;
    lk_err err;
    int rc;

    if ((rc = check_extra(o, 0)) != EXIT_OK || (rc = target_device(o, ADMIN_OPEN_READ, &id, &buf)) != EXIT_OK) {
        free(buf);
        return rc;
    }
    err = rop_list_configs(a, &a->name, id, 1, first_config_cb, &cfg, why, sizeof why);
    free(buf);
    if (err != LK_OK || cfg == NULL) {
        json_decref(cfg);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    return a->json ? out_json(cfg) : out_yaml(cfg);
}

int devices_config_update(struct dev_opts *o)
{
    struct admin *a = o->a;
    lk_reg_config cfg;
    const char *id = NULL;
    char *buf = NULL, why[512] = "";
    uint8_t *data = NULL;
    size_t len = 0;
    lk_err err;
    int rc;

    if ((o->config_file == NULL) == (o->config_data == NULL))
        return tool_usage_error("%s: give exactly one of --config-file FILE and --config-data DATA", a->cmd);
    if ((rc = check_extra(o, 0)) != EXIT_OK)
        return rc;
    if (o->config_file != NULL) {
        rc = admin_read_file(a, "config file", o->config_file, LK_CONFIG_MAX, LK_ERR_REG_LIMIT, &data, &len);
        if (rc != EXIT_OK)
            return rc;
    }
    if ((rc = target_device(o, ADMIN_OPEN_WRITE, &id, &buf)) != EXIT_OK)
        goto out;
    memset(&cfg, 0, sizeof cfg);
    if (o->config_data != NULL)
        err = rop_update_config(a, &a->name, id, (const uint8_t *)o->config_data,
                                        strlen(o->config_data), o->version, &cfg, why, sizeof why);
    else
        err = rop_update_config(a, &a->name, id, data, len, o->version, &cfg, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    rc = a->json ? out_json(admin_config_json(&cfg)) : out_yaml(admin_config_json(&cfg));
    lk_reg_config_free(&cfg);
out:
    free(data);
    free(buf);
    return rc;
}
