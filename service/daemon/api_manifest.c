/*
 * api_manifest.c — POST projects/P/locations/L/registries/R/devices:importManifest
 * (docs/provisioning.md, "Importing a manifest"): the body is the factory's
 * .jsonl as it is (Content-Type application/x-ndjson, at most max_body
 * bytes), the header X-Latchkey-Manifest-Signature its detached JWS, and
 * ?validateOnly=true a dry run. The answer is the per-device report: 200 when
 * imported (or valid), else Google's error object with the report as a
 * second detail. Role admin: a manifest registers a whole batch at once.
 * Also the registry's manifest signers and CRLs (below).
 */
#include <stdio.h>
#include <stdlib.h>
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
    if (err == LK_OK && !dry) {
        char rp_[LK_REGISTRY_PATH_MAX + 1];
        lkd_log_change(c, "import", "registry", lkd_registry_path(n, rp_, sizeof rp_),
                       "imported %llu devices of batch %s (signer %s)", (unsigned long long)r.ndevices,
                       r.batch ? r.batch : "?", r.signer ? r.signer : "?");
    }
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

/* ---- the registry's manifest signers and CRLs (latchkey's) ----
 *
 * GET    .../registries/R/manifestSigners            {"manifestSigners": [...]}     viewer
 * POST   .../registries/R/manifestSigners            {"label", "publicKey"}         admin
 * DELETE .../registries/R/manifestSigners/INDEX                                     admin
 * GET    .../registries/R/crls                       {"crls": [...]}                viewer
 * POST   .../registries/R/crls                       {"crl", "issuerChain"?}        editor
 * DELETE .../registries/R/crls/INDEX                                                editor
 *
 * Adding a signer lets its manifests register devices, which only an admin
 * may do (devices:importManifest); a CRL only takes trust away. */

static int signer_item(void *arg, const lk_reg_signer *s)
{
    char fp[65];
    static const char x[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        fp[2 * i] = x[s->fingerprint[i] >> 4];
        fp[2 * i + 1] = x[s->fingerprint[i] & 15];
    }
    fp[64] = '\0';
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I}", "index", (int)s->index, "label", s->label ? s->label : "",
                          "keyType", s->key_type ? s->key_type : "", "fingerprint", fp, "publicKey",
                          s->pem ? s->pem : "", "created", (json_int_t)s->created);
    return o == NULL || json_array_append_new(arg, o) != 0;
}

static int crl_item(void *arg, const lk_reg_crl *c)
{
    json_t *o = json_pack("{s:i,s:s,s:I,s:I,s:I}", "index", (int)c->index, "issuer", c->issuer ? c->issuer : "",
                          "thisUpdate", (json_int_t)c->this_update, "nextUpdate", (json_int_t)c->next_update,
                          "revoked", (json_int_t)c->nrevoked);
    return o == NULL || json_array_append_new(arg, o) != 0;
}

/* A body of exactly the members names (NULL-terminated); the first unknown refused. */
static int body_only(struct lkd_call *c, const char *const *names)
{
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v) {
        const char *const *p;
        for (p = names; *p && strcmp(*p, k) != 0; p++)
            ;
        if (*p == NULL) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "Invalid JSON payload received. Unknown name \"%.64s\"", k);
            return -1;
        }
    }
    return 0;
}

void lkd_api_trust(struct lkd_call *c, const lk_reg_name *n, int crls)
{
    static const char *const signer_names[] = {"label", "publicKey", NULL};
    static const char *const crl_names[] = {"crl", "issuerChain", NULL};
    const char *what = crls ? "crls" : "manifestSigners";
    char why[512] = "";
    lk_err err;
    if (c->verb != NULL) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no method :%.64s on %s", c->verb, what);
        return;
    }
    if (c->nseg == 8) {
        long long idx;
        char *end;
        if (c->method != EVHTTP_REQ_DELETE) {
            lkd_reply_error(c, LKD_NOT_FOUND, "%s/INDEX takes DELETE", what);
            return;
        }
        idx = strtoll(c->seg[7], &end, 10);
        if (*end != '\0' || idx < 0 || idx > 1000) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "INDEX must be a number as the list gives it");
            return;
        }
        if (lkd_require(c, n->project, crls ? LKD_ROLE_EDITOR : LKD_ROLE_ADMIN) != 0)
            return;
        err = crls ? lk_registry_delete_crl(c->d->reg, n, (unsigned)idx, why, sizeof why)
                   : lk_registry_delete_signer(c->d->reg, n, (unsigned)idx, why, sizeof why);
        if (err != LK_OK) {
            lkd_reply_lk(c, err, why);
            return;
        }
        char rp_[LK_REGISTRY_PATH_MAX + 1];
        lkd_log_change(c, "delete", "registry", lkd_registry_path(n, rp_, sizeof rp_), "deleted %s %lld",
                       crls ? "CRL" : "manifest signer", idx);
        lkd_reply_json(c, 200, json_object());
        return;
    }
    if (c->method == EVHTTP_REQ_GET) {
        if (lkd_require(c, n->project, LKD_ROLE_VIEWER) != 0)
            return;
        json_t *a = json_array();
        if (a == NULL) {
            lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
            return;
        }
        err = crls ? lk_registry_list_crls(c->d->reg, n, crl_item, a, why, sizeof why)
                   : lk_registry_list_signers(c->d->reg, n, signer_item, a, why, sizeof why);
        if (err != LK_OK) {
            json_decref(a);
            lkd_reply_lk(c, err, why);
            return;
        }
        json_t *j = json_object();
        if (j == NULL || json_object_set_new(j, what, a) != 0) {
            json_decref(j);
            lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
            return;
        }
        lkd_reply_json(c, 200, j);
        return;
    }
    if (c->method != EVHTTP_REQ_POST) {
        lkd_reply_error(c, LKD_NOT_FOUND, "%s take GET (list) or POST (add)", what);
        return;
    }
    if (lkd_require(c, n->project, crls ? LKD_ROLE_EDITOR : LKD_ROLE_ADMIN) != 0 ||
        body_only(c, crls ? crl_names : signer_names) != 0)
        return;
    if (crls) {
        const char *pem = json_string_value(json_object_get(c->body, "crl"));
        json_t *ch = json_object_get(c->body, "issuerChain");
        if (pem == NULL || (ch != NULL && !json_is_string(ch))) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "a CRL is {\"crl\": PEM, \"issuerChain\": PEM (optional)}");
            return;
        }
        err = lk_registry_add_crl(c->d->reg, n, pem, strlen(pem), json_string_value(ch),
                                  ch ? json_string_length(ch) : 0, why, sizeof why);
    } else {
        const char *label = json_string_value(json_object_get(c->body, "label"));
        const char *pem = json_string_value(json_object_get(c->body, "publicKey"));
        unsigned idx = 0;
        if (label == NULL || pem == NULL) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "a manifest signer is {\"label\": ID, \"publicKey\": PEM}");
            return;
        }
        err = lk_registry_add_signer(c->d->reg, n, label, pem, strlen(pem), &idx, why, sizeof why);
        if (err == LK_OK) {
            char rp_[LK_REGISTRY_PATH_MAX + 1];
            lkd_log_change(c, "add_signer", "registry", lkd_registry_path(n, rp_, sizeof rp_),
                           "added manifest signer %u (%s)", idx, label);
            lkd_reply_json(c, 200, json_pack("{s:i,s:s}", "index", (int)idx, "label", label));
            return;
        }
    }
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return;
    }
    char rp_[LK_REGISTRY_PATH_MAX + 1];
    lkd_log_change(c, "add_crl", "registry", lkd_registry_path(n, rp_, sizeof rp_), "added a CRL");
    lkd_reply_json(c, 200, json_object());
}
