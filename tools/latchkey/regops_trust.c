/*
 * The registry's provisioning settings either way (regops.h): just-in-time
 * registration, manifest signers and CRLs — the lk_registry_* call with
 * --db, latchkeyd's REST calls with --api (docs/provisioning.md: the
 * registry's latchkeyJitConfig field, .../manifestSigners, .../crls), and
 * a signed manifest's import (devices:importManifest).
 * Also the path and call helpers every remote operation uses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_manifest.h"
#include "api.h"
#include "regops.h"
#include "regops_remote.h"

/* "/v1/projects/P/locations/L/registries[/R[/devices/D]]" + tail, escaped. */
char *ropr_path(const lk_reg_name *n, int with_registry, const char *dev, const char *tail)
{
    const char *parts[4] = {n->project, n->location, with_registry ? n->registry : NULL, dev};
    char *esc[4] = {NULL, NULL, NULL, NULL}, *out = NULL;
    size_t len;
    int i;
    for (i = 0; i < 4; i++)
        if (parts[i] != NULL && (esc[i] = api_seg(parts[i])) == NULL)
            goto out;
    len = 64 + (tail ? strlen(tail) : 0);
    for (i = 0; i < 4; i++)
        len += esc[i] ? strlen(esc[i]) : 0;
    if ((out = malloc(len)) == NULL)
        goto out;
    snprintf(out, len, "/v1/projects/%s/locations/%s/registries%s%s%s%s%s", esc[0], esc[1], esc[2] ? "/" : "",
             esc[2] ? esc[2] : "", esc[3] ? "/devices/" : "", esc[3] ? esc[3] : "", tail ? tail : "");
out:
    for (i = 0; i < 4; i++)
        free(esc[i]);
    return out;
}

lk_err ropr_call(struct admin *a, const char *method, char *path, const char *query, json_t *body, json_t **out,
                 char *why, size_t why_size)
{
    json_t *ignored = NULL;
    lk_err err;
    if (path == NULL) {
        json_decref(body);
        snprintf(why, why_size, "out of memory");
        return LK_ERR_NOMEM;
    }
    err = api_call(a->api, method, path, query, body, out ? out : &ignored, why, why_size);
    json_decref(ignored);
    json_decref(body);
    free(path);
    return err;
}


/* ---- just-in-time registration ---- */

static uint64_t u64_of(json_t *v)
{
    const char *s = json_string_value(v);
    if (s != NULL)
        return strtoull(s, NULL, 10);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

lk_err rop_get_jit(struct admin *a, const lk_reg_name *name, lk_reg_jit *out, char *why, size_t why_size)
{
    json_t *j = NULL, *c;
    lk_err err;
    if (!ROP_REMOTE(a))
        return lk_registry_get_jit(a->reg, name, out, why, why_size);
    memset(out, 0, sizeof *out);
    if ((err = ropr_call(a, "GET", ropr_path(name, 1, NULL, NULL), NULL, NULL, &j, why, why_size)) != LK_OK)
        return err;
    /* absent: JIT never used in this registry, so off with the default cap */
    c = json_object_get(j, "latchkeyJitConfig");
    out->enabled = json_is_true(json_object_get(c, "enabled"));
    out->max_devices = u64_of(json_object_get(c, "maxDevices"));
    out->registered = u64_of(json_object_get(c, "registered"));
    if (out->max_devices == 0)
        out->max_devices = LK_REG_JIT_MAX_DEFAULT;
    json_decref(j);
    return LK_OK;
}

lk_err rop_set_jit(struct admin *a, const lk_reg_name *name, const lk_reg_jit *jit, char *why, size_t why_size)
{
    char max[24];
    json_t *c, *body;
    if (!ROP_REMOTE(a))
        return lk_registry_set_jit(a->reg, name, jit, why, why_size);
    /* The field alone in the mask: one change, one transaction (the API
     * refuses it mixed with others). maxDevices 0 = the cap kept. */
    c = json_pack("{s:b}", "enabled", jit->enabled != 0);
    body = c != NULL ? json_pack("{s:o}", "latchkeyJitConfig", c) : NULL;
    if (body == NULL) {
        snprintf(why, why_size, "out of memory");
        return LK_ERR_NOMEM;
    }
    if (jit->max_devices) {
        snprintf(max, sizeof max, "%llu", (unsigned long long)jit->max_devices);
        json_object_set_new(c, "maxDevices", json_string(max));
    }
    return ropr_call(a, "PATCH", ropr_path(name, 1, NULL, NULL), "updateMask=latchkeyJitConfig", body, NULL, why,
                     why_size);
}

/* ---- manifest signers and CRLs ---- */

static int unhex32(const char *s, uint8_t out[32])
{
    if (s == NULL || strlen(s) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* GET .../registries/R/<what>: the array under <what>, or an error. */
static lk_err trust_list(struct admin *a, const lk_reg_name *name, const char *what, json_t **j, json_t **arr,
                         char *why, size_t why_size)
{
    char tail[32];
    lk_err err;
    snprintf(tail, sizeof tail, "/%s", what);
    if ((err = ropr_call(a, "GET", ropr_path(name, 1, NULL, tail), NULL, NULL, j, why, why_size)) != LK_OK)
        return err;
    *arr = json_object_get(*j, what);
    if (!json_is_array(*arr)) {
        json_decref(*j);
        *j = NULL;
        snprintf(why, why_size, "latchkeyd's answer has no %s list", what);
        return LK_ERR_ENCODING;
    }
    return LK_OK;
}

lk_err rop_list_signers(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_signer *s),
                        void *arg, char *why, size_t why_size)
{
    json_t *j = NULL, *arr, *e;
    size_t i;
    lk_err err;
    if (!ROP_REMOTE(a))
        return lk_registry_list_signers(a->reg, name, cb, arg, why, why_size);
    if ((err = trust_list(a, name, "manifestSigners", &j, &arr, why, why_size)) != LK_OK)
        return err;
    json_array_foreach(arr, i, e) {
        lk_reg_signer s;
        memset(&s, 0, sizeof s);
        s.index = (unsigned)json_integer_value(json_object_get(e, "index"));
        s.label = (char *)json_string_value(json_object_get(e, "label"));
        s.pem = (char *)json_string_value(json_object_get(e, "publicKey"));
        s.key_type = (char *)json_string_value(json_object_get(e, "keyType"));
        s.created = json_integer_value(json_object_get(e, "created"));
        if (unhex32(json_string_value(json_object_get(e, "fingerprint")), s.fingerprint) != 0) {
            snprintf(why, why_size, "latchkeyd's answer has a signer without its fingerprint");
            err = LK_ERR_ENCODING;
            break;
        }
        if (cb(arg, &s) != 0)
            break;
    }
    json_decref(j);
    return err;
}

lk_err rop_list_crls(struct admin *a, const lk_reg_name *name, int (*cb)(void *arg, const lk_reg_crl *c), void *arg,
                     char *why, size_t why_size)
{
    json_t *j = NULL, *arr, *e;
    size_t i;
    lk_err err;
    if (!ROP_REMOTE(a))
        return lk_registry_list_crls(a->reg, name, cb, arg, why, why_size);
    if ((err = trust_list(a, name, "crls", &j, &arr, why, why_size)) != LK_OK)
        return err;
    json_array_foreach(arr, i, e) {
        lk_reg_crl c;
        memset(&c, 0, sizeof c);
        c.index = (unsigned)json_integer_value(json_object_get(e, "index"));
        c.issuer = (char *)json_string_value(json_object_get(e, "issuer"));
        c.this_update = json_integer_value(json_object_get(e, "thisUpdate"));
        c.next_update = json_integer_value(json_object_get(e, "nextUpdate"));
        c.nrevoked = (uint64_t)json_integer_value(json_object_get(e, "revoked"));
        if (cb(arg, &c) != 0)
            break;
    }
    json_decref(j);
    return LK_OK;
}

lk_err rop_add_signer(struct admin *a, const lk_reg_name *name, const char *label, const char *pem, size_t pem_len,
                      unsigned *index, char *why, size_t why_size)
{
    json_t *body, *j = NULL;
    lk_err err;
    if (!ROP_REMOTE(a))
        return lk_registry_add_signer(a->reg, name, label, pem, pem_len, index, why, why_size);
    body = json_pack("{s:s,s:s%}", "label", label, "publicKey", pem, pem_len);
    if (body == NULL) {
        snprintf(why, why_size, "the signer's key is not text (PEM)");
        return LK_ERR_REG_INVALID;
    }
    err = ropr_call(a, "POST", ropr_path(name, 1, NULL, "/manifestSigners"), NULL, body, &j, why, why_size);
    if (err == LK_OK && index != NULL)
        *index = (unsigned)json_integer_value(json_object_get(j, "index"));
    json_decref(j);
    return err;
}

lk_err rop_add_crl(struct admin *a, const lk_reg_name *name, const char *pem, size_t pem_len, const char *chain,
                   size_t chain_len, char *why, size_t why_size)
{
    json_t *body;
    if (!ROP_REMOTE(a))
        return lk_registry_add_crl(a->reg, name, pem, pem_len, chain, chain_len, why, why_size);
    body = json_pack("{s:s%}", "crl", pem, pem_len);
    if (body != NULL && chain != NULL && json_object_set_new(body, "issuerChain", json_stringn(chain, chain_len)) != 0) {
        json_decref(body);
        body = NULL;
    }
    if (body == NULL) {
        snprintf(why, why_size, "the CRL or its issuer chain is not text (PEM)");
        return LK_ERR_REG_INVALID;
    }
    return ropr_call(a, "POST", ropr_path(name, 1, NULL, "/crls"), NULL, body, NULL, why, why_size);
}

lk_err rop_delete_trust(struct admin *a, const lk_reg_name *name, int crl, unsigned index, char *why,
                        size_t why_size)
{
    char tail[48];
    if (!ROP_REMOTE(a))
        return crl ? lk_registry_delete_crl(a->reg, name, index, why, why_size)
                   : lk_registry_delete_signer(a->reg, name, index, why, why_size);
    snprintf(tail, sizeof tail, "/%s/%u", crl ? "crls" : "manifestSigners", index);
    return ropr_call(a, "DELETE", ropr_path(name, 1, NULL, tail), NULL, NULL, NULL, why, why_size);
}

/* ---- a signed manifest through latchkeyd (devices:importManifest) ---- */

static lk_err err_named(const char *name)
{
    for (int e = 1; name != NULL && e < LK_ERR__END; e++)
        if (strcmp(lk_errname((lk_err)e), name) == 0)
            return (lk_err)e;
    return LK_ERR_REG_INVALID; /* a refusal whose name this tool does not know */
}

static char *dup_or_null(json_t *v)
{
    const char *s = json_string_value(v);
    return s != NULL ? strdup(s) : NULL;
}

/* The daemon's ManifestReport into the library's struct, as
 * lk_manifest_import would have filled it. */
static lk_err report_of(json_t *j, lk_manifest_report *r)
{
    json_t *arr = json_object_get(j, "results"), *e;
    size_t i;
    r->imported = json_is_true(json_object_get(j, "accepted")) && !json_is_true(json_object_get(j, "dryRun"));
    r->batch = dup_or_null(json_object_get(j, "batch"));
    r->manufacturer = dup_or_null(json_object_get(j, "manufacturer"));
    r->signer = dup_or_null(json_object_get(j, "signer"));
    r->ndevices = (uint64_t)json_integer_value(json_object_get(j, "devices"));
    r->nrefused = (uint64_t)json_integer_value(json_object_get(j, "refused"));
    if (json_array_size(arr) == 0)
        return LK_OK;
    if ((r->results = calloc(json_array_size(arr), sizeof *r->results)) == NULL)
        return LK_ERR_NOMEM;
    json_array_foreach(arr, i, e) {
        lk_manifest_result *x = &r->results[r->nresults++];
        const char *n = json_string_value(json_object_get(e, "numId"));
        x->line = (unsigned long)json_integer_value(json_object_get(e, "line"));
        x->device_id = dup_or_null(json_object_get(e, "deviceId"));
        if (strcmp(json_string_value(json_object_get(e, "result")) ? json_string_value(json_object_get(e, "result"))
                                                                   : "", "ok") != 0) {
            x->err = err_named(json_string_value(json_object_get(e, "error")));
            x->why = dup_or_null(json_object_get(e, "reason"));
        }
        x->num_id = n != NULL ? strtoull(n, NULL, 10) : 0;
    }
    return LK_OK;
}

lk_err rop_import_manifest(struct admin *a, const lk_reg_name *name, const void *data, size_t len, const char *jws,
                           size_t jws_len, int dry, lk_manifest_report *r, char *why, size_t why_size)
{
    json_t *ok = NULL, *refused = NULL, *d, *rep = NULL;
    char *path, *hdr;
    size_t i;
    lk_err err, e2;

    memset(r, 0, sizeof *r);
    if (!ROP_REMOTE(a)) {
        err = lk_manifest_import(a->reg, name, data, len, jws, jws_len, dry ? LK_MANIFEST_DRY_RUN : 0, r, why,
                                 why_size);
        return err;
    }
    while (jws_len > 0 && (jws[jws_len - 1] == '\n' || jws[jws_len - 1] == '\r'))
        jws_len--;
    if (memchr(jws, '\n', jws_len) != NULL || memchr(jws, '\r', jws_len) != NULL ||
        memchr(jws, '\0', jws_len) != NULL) {
        /* one header line; the library would refuse it as malformed too */
        snprintf(why, why_size, "the manifest's signature is not one compact JWS line");
        r->err = LK_ERR_REG_INVALID;
        snprintf(r->why, sizeof r->why, "%s", why);
        return LK_ERR_REG_INVALID;
    }
    if ((hdr = malloc(jws_len + 40)) == NULL)
        return LK_ERR_NOMEM;
    snprintf(hdr, jws_len + 40, "X-Latchkey-Manifest-Signature: %.*s", (int)jws_len, jws);
    if ((path = ropr_path(name, 1, NULL, "/devices:importManifest")) == NULL) {
        free(hdr);
        return LK_ERR_NOMEM;
    }
    err = api_call_raw(a->api, "POST", path, dry ? "validateOnly=true" : NULL, "application/x-ndjson", data, len, hdr,
                       &ok, &refused, why, why_size);
    free(path);
    free(hdr);
    if (err == LK_OK) {
        rep = ok;
    } else {
        /* the report rides as a detail of the error */
        json_array_foreach(json_object_get(json_object_get(refused, "error"), "details"), i, d) {
            const char *t = json_string_value(json_object_get(d, "@type"));
            if (t != NULL && strcmp(t, "type.latchkey.dev/ManifestReport") == 0)
                rep = d;
        }
    }
    e2 = rep != NULL ? report_of(rep, r) : LK_OK;
    json_decref(ok);
    json_decref(refused);
    if (e2 != LK_OK) {
        lk_manifest_report_free(r);
        snprintf(why, why_size, "out of memory");
        err = e2;
    }
    r->err = err;
    if (err != LK_OK)
        snprintf(r->why, sizeof r->why, "%s", why);
    return err;
}
