/*
 * api_manifest.c — POST projects/P/locations/L/registries/R/devices:importManifest
 * (docs/provisioning.md, "Importing a manifest"): the body is the factory's
 * .jsonl as it is (Content-Type application/x-ndjson, at most max_body
 * bytes), the header X-Latchkey-Manifest-Signature its detached JWS, and
 * ?validateOnly=true a dry run. The answer is the per-device report: 200 when
 * imported (or valid), else Google's error object with the report as a
 * second detail. Role admin: a manifest registers a whole batch at once.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "latchkey/lk_manifest.h"
#include "daemon.h"

static json_t *report_json(const lk_manifest_report *r, int dry)
{
    json_t *a = json_array();
    json_t *j = json_pack("{s:s,s:b,s:b,s:I,s:I,s:I}", "@type", "type.latchkey.dev/ManifestReport", "dryRun", dry,
                          "accepted", r->err == LK_OK, "devices", (json_int_t)r->ndevices, "refused",
                          (json_int_t)r->nrefused, "imported", (json_int_t)(r->imported ? r->ndevices : 0));
    if (a == NULL || j == NULL) {
        json_decref(a);
        json_decref(j);
        return NULL;
    }
    for (size_t i = 0; i < r->nresults; i++) {
        const lk_manifest_result *x = &r->results[i];
        json_t *o = json_pack("{s:I,s:s?,s:s}", "line", (json_int_t)x->line, "deviceId", x->device_id, "result",
                              x->err == LK_OK ? "ok" : "refused");
        if (o != NULL && x->err != LK_OK) {
            json_object_set_new(o, "error", json_string(lk_errname(x->err)));
            json_object_set_new(o, "reason", json_string(x->why ? x->why : lk_strerror(x->err)));
        } else if (o != NULL && x->num_id != 0) {
            char n[24];
            snprintf(n, sizeof n, "%llu", (unsigned long long)x->num_id);
            json_object_set_new(o, "numId", json_string(n));
        }
        if (o != NULL)
            json_array_append_new(a, o);
    }
    if (r->batch)
        json_object_set_new(j, "batch", json_string(r->batch));
    if (r->manufacturer)
        json_object_set_new(j, "manufacturer", json_string(r->manufacturer));
    if (r->signer)
        json_object_set_new(j, "signer", json_string(r->signer));
    json_object_set_new(j, "results", a);
    return j;
}

void lkd_api_import_manifest(struct lkd_call *c, const lk_reg_name *n)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(c->req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    const char *sig = evhttp_find_header(h, "X-Latchkey-Manifest-Signature");
    const char *vo = lkd_query(c, "validateOnly");
    int dry = vo != NULL && strcmp(vo, "true") == 0;
    if (vo != NULL && !dry && strcmp(vo, "false") != 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "validateOnly must be true or false");
        return;
    }
    if (ct == NULL || strncasecmp(ct, "application/x-ndjson", 20) != 0 || (ct[20] != '\0' && ct[20] != ';')) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "devices:importManifest takes the manifest as Content-Type "
                                                 "application/x-ndjson");
        return;
    }
    if (sig == NULL || sig[0] == '\0') {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "the manifest's signature (its .jws) goes in the header "
                                                 "X-Latchkey-Manifest-Signature");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t len = evbuffer_get_length(in);
    const char *data = len ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : "";
    if (data == NULL) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return;
    }
    lk_manifest_report r;
    char why[512];
    lk_err err = lk_manifest_import(c->d->reg, n, data, len, sig, strlen(sig), dry ? LK_MANIFEST_DRY_RUN : 0, &r,
                                    why, sizeof why);
    json_t *j = report_json(&r, dry);
    if (err == LK_OK && !dry)
        lkd_log("%s imported %llu devices of batch %s (signer %s) into %s", c->who.email,
                (unsigned long long)r.ndevices, r.batch ? r.batch : "?", r.signer ? r.signer : "?", n->registry);
    lk_manifest_report_free(&r);
    if (err == LK_OK) {
        if (j == NULL)
            lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        else
            lkd_reply_json(c, 200, j);
        return;
    }
    lkd_reply_lk_detail(c, err, why, j);
}
