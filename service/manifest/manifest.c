/*
 * manifest.c — lk_manifest_import: a factory manifest's signature, its
 * binding to the file, each device line, then one registry import
 * (lk_manifest.h lists the checks in order). The signature and each line's
 * parsing happen before the registry's write transaction; the registry
 * checks each certificate's chain when the device is added.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_manifest.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_util.h"
#include "latchkey/lk_verify.h"
#include "internal.h"

void lk_manifest_report_free(lk_manifest_report *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nresults; i++) {
        free(r->results[i].device_id);
        free(r->results[i].why);
    }
    free(r->results);
    free(r->batch);
    free(r->manufacturer);
    free(r->signer);
    memset(r, 0, sizeof *r);
}

static lk_err fail(lk_manifest_report *r, lk_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static lk_err fail(lk_manifest_report *r, lk_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
    r->err = err;
    return err;
}

static void hex32(const uint8_t d[32], char out[65])
{
    static const char x[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[64] = '\0';
}

/* ---- step 1: the JWS ---- */

/* 64 lowercase hex digits (the format's digests are lowercase throughout). */
static int lower_hex(const char *s)
{
    if (s == NULL || strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

struct signer_list {
    lk_reg_signer *v;
    size_t n;
    int nomem;
};

static int take_signer(void *arg, const lk_reg_signer *s)
{
    struct signer_list *l = arg;
    lk_reg_signer *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (nv == NULL) {
        l->nomem = 1;
        return 1;
    }
    l->v = nv;
    lk_reg_signer *c = &l->v[l->n];
    memset(c, 0, sizeof *c);
    c->label = strdup(s->label ? s->label : "");
    c->pem = strdup(s->pem ? s->pem : "");
    memcpy(c->fingerprint, s->fingerprint, 32);
    l->n++;
    if (c->label == NULL || c->pem == NULL)
        l->nomem = 1;
    return l->nomem;
}

/* Verify sig over msg with the signer's key, by the verifier's own rule for
 * a token's signature (lk_cred_verify_signature); the algorithm is the
 * key's. The key is read as a device credential (lk_cred_parse: a P-256 key
 * without OpenSSL's decoders). 1 verified, 0 not, -1 the key is unusable.
 * *alg gets the key's alg. */
static int verify_with(const lk_reg_signer *s, const char *msg, size_t msg_len, const uint8_t *sig,
                       size_t sig_len, const char **alg)
{
    lk_cred *cr = NULL;
    int ok;

    if (lk_cred_parse(LK_CRED_UNSPECIFIED, s->pem, strlen(s->pem), 0, &cr) != LK_OK)
        return -1;
    *alg = lk_cred_alg(cr) == LK_ALG_ES256 ? "ES256" : "RS256";
    ok = lk_cred_verify_signature(cr, (const uint8_t *)msg, msg_len, sig, sig_len) == LK_OK;
    lk_cred_free(cr);
    return ok;
}

/* Decode one base64url part into a malloc'd buffer (NUL-terminated). */
static int b64part(const char *p, size_t n, uint8_t **out, size_t *out_len)
{
    size_t cap = n * 3 / 4 + 3;
    uint8_t *buf = malloc(cap + 1);
    if (buf == NULL)
        return -1;
    size_t got = 0;
    if (lk_b64url_decode(p, n, buf, cap, &got, 0) != LK_OK) {
        free(buf);
        return -1;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    return 0;
}

struct payload {
    uint8_t sha256[32];
    uint64_t size, devices;
    char *batch;
};

static lk_err check_jws(lk_registry *reg, const lk_reg_name *name, const char *jws, size_t jws_len,
                        struct payload *pl, lk_manifest_report *r)
{
    static const char *const hnames[] = {"alg", "typ", "kid", NULL};
    static const char *const pnames[] = {"manifest", "sha256", "size", "devices", "batch", "iat", NULL};
    char why[256] = "";
    uint8_t *hdr = NULL, *pay = NULL, *sig = NULL;
    size_t hlen, plen, slen;
    json_t *h = NULL, *p = NULL;
    struct signer_list sl = {0};
    lk_err err = LK_OK;
    const char *bad = NULL;

    if (jws_len > LK_MANIFEST_JWS_MAX)
        return fail(r, LK_ERR_REG_LIMIT, "the signature file is over %u bytes", LK_MANIFEST_JWS_MAX);
    if (jws_len > 0 && jws[jws_len - 1] == '\n')
        jws_len--;
    const char *d1 = memchr(jws, '.', jws_len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', jws_len - (size_t)(d1 + 1 - jws)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', jws_len - (size_t)(d2 + 1 - jws)) != NULL ||
        b64part(jws, (size_t)(d1 - jws), &hdr, &hlen) != 0 ||
        b64part(d1 + 1, (size_t)(d2 - d1 - 1), &pay, &plen) != 0 ||
        b64part(d2 + 1, jws_len - (size_t)(d2 + 1 - jws), &sig, &slen) != 0) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature is not a compact JWS (three base64url parts)");
        goto out;
    }
    h = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(h) || lk_manifest__only(h, hnames, &bad) != 0) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature's header is not a JSON object of alg, typ and kid%s%s",
                   bad ? ": unknown member " : "", bad ? bad : "");
        goto out;
    }
    const char *alg = json_string_value(json_object_get(h, "alg"));
    const char *typ = json_string_value(json_object_get(h, "typ"));
    json_t *kidj = json_object_get(h, "kid");
    const char *kid = json_string_value(kidj);
    if (alg == NULL || (strcmp(alg, "ES256") != 0 && strcmp(alg, "RS256") != 0)) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature's alg must be ES256 or RS256");
        goto out;
    }
    if (typ == NULL || strcmp(typ, "latchkey-manifest+jws") != 0) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature's typ must be \"latchkey-manifest+jws\"");
        goto out;
    }
    if (kidj != NULL && !lower_hex(kid)) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature's kid must be 64 lowercase hex digits (SHA-256 of the "
                                          "signer's SPKI)");
        goto out;
    }
    err = lk_registry_list_signers(reg, name, take_signer, &sl, why, sizeof why);
    if (err == LK_OK && sl.nomem)
        err = LK_ERR_NOMEM;
    if (err != LK_OK) {
        fail(r, err, "the registry's manifest signers: %s", why[0] ? why : lk_strerror(err));
        goto out;
    }
    if (sl.n == 0) {
        err = fail(r, LK_ERR_REG_CERT, "the registry trusts no manifest signer (latchkey registries signers add)");
        goto out;
    }
    size_t signed_len = (size_t)(d2 - jws);
    int verified = 0, tried = 0;
    const char *mismatch = NULL;
    for (size_t i = 0; i < sl.n && !verified; i++) {
        char fp[65];
        hex32(sl.v[i].fingerprint, fp);
        if (kid != NULL && strcmp(fp, kid) != 0)
            continue;
        tried++;
        const char *kalg = "?";
        int v = verify_with(&sl.v[i], jws, signed_len, sig, slen, &kalg);
        if (v == 1 && strcmp(kalg, alg) != 0) {
            mismatch = kalg; /* verified, but the header lies about the algorithm */
            continue;
        }
        if (v == 1) {
            verified = 1;
            r->signer = strdup(sl.v[i].label);
        }
    }
    if (!verified) {
        if (mismatch != NULL)
            err = fail(r, LK_ERR_REG_CERT, "the signature's alg %s is not its signer's key's %s", alg, mismatch);
        else if (tried == 0)
            err = fail(r, LK_ERR_REG_CERT, "no manifest signer of the registry has the signature's kid %.64s", kid);
        else
            err = fail(r, LK_ERR_REG_CERT, "the signature does not verify with %s manifest signer of the registry",
                       kid ? "the" : "any");
        goto out;
    }
    p = json_loadb((const char *)pay, plen, JSON_REJECT_DUPLICATES, NULL);
    bad = NULL;
    if (!json_is_object(p) || lk_manifest__only(p, pnames, &bad) != 0) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature's payload is not a JSON object of %s%s%s",
                   "manifest, sha256, size, devices, batch and iat", bad ? ": unknown member " : "", bad ? bad : "");
        goto out;
    }
    const char *hx = json_string_value(json_object_get(p, "sha256"));
    json_t *sz = json_object_get(p, "size"), *nd = json_object_get(p, "devices");
    const char *batch = json_string_value(json_object_get(p, "batch"));
    int hex_ok = lower_hex(hx);
    for (int i = 0; hex_ok && i < 32; i++) {
        unsigned v;
        hex_ok = sscanf(hx + 2 * i, "%2x", &v) == 1;
        pl->sha256[i] = (uint8_t)v;
    }
    if (!hex_ok || !json_is_integer(sz) || json_integer_value(sz) < 0 || !json_is_integer(nd) ||
        json_integer_value(nd) < 0 || batch == NULL || !json_is_string(json_object_get(p, "manifest")) ||
        !json_is_integer(json_object_get(p, "iat"))) {
        err = fail(r, LK_ERR_REG_INVALID, "the signature's payload needs manifest (string), sha256 (64 hex "
                                          "digits), size, devices, iat (integers) and batch (string)");
        goto out;
    }
    pl->size = (uint64_t)json_integer_value(sz);
    pl->devices = (uint64_t)json_integer_value(nd);
    if ((pl->batch = strdup(batch)) == NULL)
        err = fail(r, LK_ERR_NOMEM, "out of memory");
out:
    for (size_t i = 0; i < sl.n; i++) {
        free(sl.v[i].label);
        free(sl.v[i].pem);
    }
    free(sl.v);
    json_decref(h);
    json_decref(p);
    free(hdr);
    free(pay);
    free(sig);
    return err;
}

/* ---- the registry import ---- */

lk_err lk_manifest_import(lk_registry *reg, const lk_reg_name *name, const char *data, size_t len,
                          const char *jws, size_t jws_len, unsigned flags, lk_manifest_report *out,
                          char *why, size_t why_size)
{
    lk_err err;
    struct payload pl = {0};
    if (out == NULL)
        return LK_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (reg == NULL || name == NULL || (data == NULL && len > 0) || jws == NULL || (flags & ~LK_MANIFEST_DRY_RUN)) {
        err = fail(out, LK_ERR_ARG, "a NULL argument or an unknown flag");
        goto out;
    }
    {
        lk_reg_registry rr;
        char rwhy[256] = "";
        err = lk_registry_get_registry(reg, name, &rr, rwhy, sizeof rwhy);
        if (err != LK_OK) {
            fail(out, err, "%s", rwhy[0] ? rwhy : lk_strerror(err));
            goto out;
        }
        lk_reg_registry_free(&rr);
    }
    /* 1, 2: the signature, then the file against what it signed. */
    if ((err = check_jws(reg, name, jws, jws_len, &pl, out)) != LK_OK)
        goto out;
    if (pl.size != len) {
        err = fail(out, LK_ERR_REG_INVALID, "the manifest is %zu bytes, its signature says %llu (truncated or "
                                            "altered)", len, (unsigned long long)pl.size);
        goto out;
    }
    {
        uint8_t d[32];
        lk_sha256(data, len, d);
        if (!lk_ct_equal(d, pl.sha256, 32)) {
            err = fail(out, LK_ERR_REG_INVALID, "the manifest's SHA-256 is not the one its signature names (altered)");
            goto out;
        }
    }
    /* 3-5 */
    err = lk_manifest__devices(reg, name, data, len, pl.batch, pl.devices, flags, out);
out:
    free(pl.batch);
    out->err = err;
    if (err == LK_OK)
        out->why[0] = '\0';
    if (why != NULL && why_size > 0)
        snprintf(why, why_size, "%s", out->why);
    return err;
}
