/*
 * latchkey devices keys [DEVICE]: per device, each credential (fingerprint,
 * format, expiry) and which one the device last connected with, and when -
 * what an operator looks at while rotating keys (docs/provisioning.md,
 * "Rotating a device's key"). The broker records the key with the other
 * activity times (lk_reg_activity.last_key), so it can lag a connection by
 * up to the broker's activity flush interval.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "admin.h"
#include "regops.h"
#include "devices.h"

static const uint8_t zero_fp[32];

/* The index of the credential whose fingerprint is d->last_key, -1 when none
 * (never recorded, or the credential was removed since). */
static int last_used(const lk_reg_device *d, char hexes[][65])
{
    char last[65];
    unsigned i;
    if (d->last_key_time == 0 || memcmp(d->last_key, zero_fp, sizeof zero_fp) == 0)
        return -1;
    tool_hex(d->last_key, 32, last);
    for (i = 0; i < d->ncreds; i++)
        if (strcmp(hexes[i], last) == 0)
            return (int)i;
    return -1;
}

struct keys_ctx {
    struct admin_list out;
};

static int keys_cb(void *arg, const lk_reg_device *d)
{
    struct keys_ctx *x = arg;
    char hexes[LK_DEVICE_CREDENTIALS_MAX][65], last[65], tb[48], lt[48];
    int used;
    unsigned i;

    for (i = 0; i < d->ncreds; i++)
        if (admin_cred_sha256(d->creds[i].format, d->creds[i].pem, hexes[i]) != 0)
            snprintf(hexes[i], sizeof hexes[i], "?");
    used = last_used(d, hexes);
    if (d->last_key_time != 0)
        tool_hex(d->last_key, 32, last);
    if (x->out.t == NULL) {
        json_t *j = json_pack("{s:s,s:[]}", "id", d->id, "credentials");
        json_t *creds = j ? json_object_get(j, "credentials") : NULL;
        for (i = 0; creds != NULL && i < d->ncreds; i++) {
            json_t *c = json_pack("{s:i,s:s,s:s,s:b}", "index", (json_int_t)i, "format",
                                  lk_cred_format_name(d->creds[i].format), "sha256", hexes[i],
                                  "lastUsed", (int)i == used);
            if (c != NULL && d->creds[i].expires != 0)
                json_object_set_new(c, "expirationTime", out_jtime(d->creds[i].expires));
            json_array_append_new(creds, c);
        }
        if (j != NULL && d->last_key_time != 0)
            json_object_set_new(j, "lastKey", json_pack("{s:s,s:o,s:b}", "sha256", last, "time",
                                                          out_jtime(d->last_key_time), "removed",
                                                          used < 0));
        if (out_list_item(&x->out.l, j) != EXIT_OK)
            x->out.failed = 1;
        return x->out.failed;
    }
    for (i = 0; i < d->ncreds; i++) {
        char idx[16];
        const char *row[6];
        snprintf(idx, sizeof idx, "%u", i);
        row[0] = d->id;
        row[1] = idx;
        row[2] = lk_cred_format_name(d->creds[i].format);
        row[3] = d->creds[i].expires ? lk_time_rfc3339(d->creds[i].expires, tb, sizeof tb) : "never";
        row[4] = hexes[i];
        row[5] = (int)i == used ? lk_time_rfc3339(d->last_key_time, lt, sizeof lt) : "-";
        if (out_table_row(x->out.t, row) != 0)
            return x->out.failed = 1;
    }
    if (d->last_key_time != 0 && used < 0) {
        /* The key it last used is no longer one of its credentials. */
        const char *row[6];
        row[0] = d->id;
        row[1] = "-";
        row[2] = "(removed)";
        row[3] = "-";
        row[4] = last;
        row[5] = lk_time_rfc3339(d->last_key_time, lt, sizeof lt);
        if (out_table_row(x->out.t, row) != 0)
            x->out.failed = 1;
    }
    if (d->ncreds == 0 && d->last_key_time == 0) {
        const char *row[6] = {d->id, "-", "(none)", "-", "-", "-"};
        if (out_table_row(x->out.t, row) != 0)
            x->out.failed = 1;
    }
    return x->out.failed;
}

int devices_keys(struct dev_opts *o)
{
    static const char *const heads[] = {"DEVICE", "INDEX", "FORMAT", "EXPIRATION_TIME", "SHA256", "LAST_USED"};
    struct admin *a = o->a;
    struct keys_ctx x;
    char *buf = NULL, why[512] = "";
    const char *id = NULL;
    lk_err err;
    int rc;

    if ((rc = check_extra(o, 0)) != EXIT_OK)
        return rc;
    if (o->npos > 0 || a->device != NULL) {
        lk_reg_device d;
        memset(&d, 0, sizeof d);
        if ((rc = target_device(o, ADMIN_OPEN_READ, &id, &buf)) != EXIT_OK)
            return rc;
        err = rop_get_device(a, &a->name, id, 0, &d, why, sizeof why);
        free(buf);
        if (err != LK_OK) {
            lk_reg_device_free(&d);
            return admin_fail(a, err, why);
        }
        if ((rc = admin_list_begin(a, &x.out, 6, heads)) == EXIT_OK) {
            (void)keys_cb(&x, &d);
            rc = admin_list_end(a, &x.out, LK_OK, NULL);
        }
        lk_reg_device_free(&d);
        return rc;
    }
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK || (rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if ((rc = admin_list_begin(a, &x.out, 6, heads)) != EXIT_OK)
        return rc;
    err = rop_list_devices(a, &a->name, keys_cb, &x, why, sizeof why);
    return admin_list_end(a, &x.out, err, why);
}
