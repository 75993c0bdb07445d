/*
 * provision.c — the registry's provisioning resources (lk_registry.h,
 * "provisioning (schema 7)"): manifest signers, CRLs, just-in-time
 * registration. One transaction each; a refusal writes nothing. The
 * cryptography is chain.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "facade.h"
#include "latchkey/lk_sha256.h"

/* ------------------------------------------------------------------ */
/* Manifest signers                                                    */

struct signer_scan {
    const char *label;
    const uint8_t *fp;
    unsigned count;
    int label_at, key_at; /* index + 1 of a signer with the same label / key */
};

static int signer_scan_cb(void *arg, const lk_reg_signer *s)
{
    struct signer_scan *sc = arg;
    if (strcmp(s->label, sc->label) == 0)
        sc->label_at = (int)s->index + 1;
    if (memcmp(s->fingerprint, sc->fp, 32) == 0)
        sc->key_at = (int)s->index + 1;
    sc->count++;
    return 0;
}

lk_err lk_registry_add_signer(lk_registry *reg, const lk_reg_name *name, const char *label,
                              const char *pem, size_t pem_len, unsigned *index, char *why,
                              size_t why_size)
{
    struct signer_scan sc;
    lk_reg_signer s;
    char kt[96], p[400];
    uint8_t fp[32];
    int64_t rid;
    lk_err err;

    if (index != NULL)
        *index = 0;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_id("signer label", label, why, why_size)) != LK_OK ||
        (err = lk_reg__signer_key(pem, pem_len, kt, sizeof kt, fp, why, why_size)) != LK_OK)
        return err;
    memset(&s, 0, sizeof s);
    if ((s.pem = malloc(pem_len + 1)) == NULL)
        return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
    memcpy(s.pem, pem, pem_len);
    s.pem[pem_len] = '\0';
    s.label = (char *)label;
    memcpy(s.fingerprint, fp, 32);
    s.created = lk_reg__now(reg);
    memset(&sc, 0, sizeof sc);
    sc.label = label;
    sc.fp = fp;
    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK) {
        free(s.pem);
        return err;
    }
    if ((err = reg->ops->signer_list(reg->be, rid, signer_scan_cb, &sc)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    else if (sc.key_at != 0)
        err = failf(why, why_size, LK_ERR_REG_EXISTS,
                    "this key is already manifest signer %d of %s", sc.key_at - 1,
                    lk_reg__path(name, p, sizeof p));
    else if (sc.label_at != 0)
        err = failf(why, why_size, LK_ERR_REG_EXISTS,
                    "%s already has a manifest signer labelled '%s'",
                    lk_reg__path(name, p, sizeof p), label);
    else if (sc.count >= LK_REG_SIGNERS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "%s already has %u manifest signers; a registry has at most %u",
                    lk_reg__path(name, p, sizeof p), sc.count, LK_REG_SIGNERS_MAX);
    else if ((err = reg->ops->signer_insert(reg->be, rid, &s)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    free(s.pem);
    err = lk_reg__leave(reg, err, TX_WRITE, why, why_size);
    if (err == LK_OK && index != NULL)
        *index = sc.count;
    return err;
}

struct signer_list_ctx {
    lk_registry *reg;
    int (*cb)(void *arg, const lk_reg_signer *s);
    void *arg;
};

/* The key type of a stored signer: the stored key's, described as when it
 * was added; remembered by the PEM's hash, so a key is decoded once per
 * handle (a changed PEM is a new entry). */
static void signer_key_type(lk_registry *reg, const char *pem, char *kt, size_t kt_size)
{
    uint8_t sha[32], fp[32];
    char w[8];
    size_t len = strlen(pem);
    unsigned i;
    lk_sha256(pem, len, sha);
    for (i = 0; i < reg->signer_kt_added && i < LK_REG_SIGNERS_MAX; i++)
        if (memcmp(reg->signer_kt[i].pem_sha, sha, 32) == 0) {
            snprintf(kt, kt_size, "%s", reg->signer_kt[i].key_type);
            return;
        }
    if (lk_reg__signer_key(pem, len, kt, kt_size, fp, w, sizeof w) != LK_OK) {
        snprintf(kt, kt_size, "unreadable"); /* perhaps for memory: not remembered */
        return;
    }
    i = reg->signer_kt_added++ % LK_REG_SIGNERS_MAX;
    memcpy(reg->signer_kt[i].pem_sha, sha, 32);
    snprintf(reg->signer_kt[i].key_type, sizeof reg->signer_kt[i].key_type, "%s", kt);
}

static int signer_list_cb(void *arg, const lk_reg_signer *s)
{
    struct signer_list_ctx *ctx = arg;
    lk_reg_signer c = *s;
    char kt[96];
    signer_key_type(ctx->reg, s->pem, kt, sizeof kt);
    c.key_type = kt;
    return ctx->cb(ctx->arg, &c);
}

lk_err lk_registry_list_signers(lk_registry *reg, const lk_reg_name *name,
                                int (*cb)(void *arg, const lk_reg_signer *s), void *arg,
                                char *why, size_t why_size)
{
    struct signer_list_ctx ctx = {reg, cb, arg};
    int64_t rid;
    lk_err err;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->signer_list(reg->be, rid, signer_list_cb, &ctx)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

/* delete_signer and delete_crl: remove item index of what. */
static lk_err delete_indexed(lk_registry *reg, const lk_reg_name *name, unsigned index,
                             lk_err (*del)(lk_reg_be *be, int64_t rid, unsigned index),
                             const char *what, char *why, size_t why_size)
{
    int64_t rid;
    char p[400];
    lk_err err;
    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    err = del(reg->be, rid, index);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = failf(why, why_size, err, "%s has no %s %u (numbered from 0)",
                    lk_reg__path(name, p, sizeof p), what, index);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

lk_err lk_registry_delete_signer(lk_registry *reg, const lk_reg_name *name, unsigned index,
                                 char *why, size_t why_size)
{
    if (reg == NULL)
        return LK_ERR_ARG;
    return delete_indexed(reg, name, index, reg->ops->signer_delete, "manifest signer", why,
                          why_size);
}

/* ------------------------------------------------------------------ */
/* CRLs                                                                */

struct crl_scan {
    const uint8_t *key;
    unsigned count;
    int held;                 /* a CRL of the same issuer key is stored ... */
    int64_t held_this_update; /* ... issued then */
};

static int crl_scan_cb(void *arg, const lk_reg_crl *c, const uint8_t issuer_key[32],
                       const char *issuer_chain)
{
    struct crl_scan *sc = arg;
    (void)issuer_chain;
    if (memcmp(issuer_key, sc->key, 32) == 0) {
        sc->held = 1;
        sc->held_this_update = c->this_update;
    }
    sc->count++;
    return 0;
}

lk_err lk_registry_add_crl(lk_registry *reg, const lk_reg_name *name, const char *pem,
                           size_t pem_len, const char *issuer_chain_pem, size_t issuer_chain_len,
                           char *why, size_t why_size)
{
    struct crl_scan sc;
    lk_reg_cas *cas = NULL;
    lk_reg_crl crl;
    uint8_t key[32];
    char *chain = NULL, p[400];
    int64_t rid;
    lk_err err;

    memset(&crl, 0, sizeof crl);
    if (issuer_chain_pem == NULL)
        issuer_chain_len = 0;
    if (issuer_chain_len > 0) {
        if ((chain = malloc(issuer_chain_len + 1)) == NULL)
            return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        memcpy(chain, issuer_chain_pem, issuer_chain_len);
        chain[issuer_chain_len] = '\0';
    }
    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK) {
        free(chain);
        return err;
    }
    err = lk_reg__load_cas(reg, rid, &cas, why, why_size);
    if (err == LK_OK)
        err = lk_reg__crl_check(cas, pem, pem_len, chain, issuer_chain_len, lk_reg__now(reg),
                                &crl, key, why, why_size);
    memset(&sc, 0, sizeof sc);
    sc.key = key;
    if (err == LK_OK && (err = reg->ops->crl_list(reg->be, rid, crl_scan_cb, &sc)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && sc.held && sc.held_this_update > crl.this_update)
        err = failf(why, why_size, LK_ERR_REG_INVALID,
                    "this CRL of %s is older than the CRL held (issued earlier); a CRL replaces "
                    "only an older one", crl.issuer);
    if (err == LK_OK && !sc.held && sc.count >= LK_REG_CRLS_MAX)
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "%s already has %u CRLs; a registry has at most %u",
                    lk_reg__path(name, p, sizeof p), sc.count, LK_REG_CRLS_MAX);
    if (err == LK_OK && (err = reg->ops->crl_put(reg->be, rid, &crl, key, chain)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    lk_reg__cas_free(cas);
    lk_reg_crl_free(&crl);
    free(chain);
    return lk_reg__leave(reg, err, TX_WRITE, why, why_size);
}

struct crl_list_ctx {
    int (*cb)(void *arg, const lk_reg_crl *c);
    void *arg;
};

static int crl_list_cb(void *arg, const lk_reg_crl *c, const uint8_t issuer_key[32],
                       const char *issuer_chain)
{
    struct crl_list_ctx *ctx = arg;
    (void)issuer_key;
    (void)issuer_chain;
    return ctx->cb(ctx->arg, c);
}

lk_err lk_registry_list_crls(lk_registry *reg, const lk_reg_name *name,
                             int (*cb)(void *arg, const lk_reg_crl *c), void *arg, char *why,
                             size_t why_size)
{
    struct crl_list_ctx ctx = {cb, arg};
    int64_t rid;
    lk_err err;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->crl_list(reg->be, rid, crl_list_cb, &ctx)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}

lk_err lk_registry_delete_crl(lk_registry *reg, const lk_reg_name *name, unsigned index,
                              char *why, size_t why_size)
{
    if (reg == NULL)
        return LK_ERR_ARG;
    return delete_indexed(reg, name, index, reg->ops->crl_delete, "CRL", why, why_size);
}

/* ------------------------------------------------------------------ */
/* Just-in-time registration                                           */

lk_err lk_registry_get_jit(lk_registry *reg, const lk_reg_name *name, lk_reg_jit *out,
                           char *why, size_t why_size)
{
    int64_t rid;
    lk_err err;
    if (out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no output given");
    memset(out, 0, sizeof *out);
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->jit_get(reg->be, rid, out)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    err = lk_reg__leave(reg, err, TX_READ, why, why_size);
    if (err != LK_OK)
        memset(out, 0, sizeof *out);
    else if (out->max_devices == 0)
        out->max_devices = LK_REG_JIT_MAX_DEFAULT;
    return err;
}

lk_err lk_registry_set_jit(lk_registry *reg, const lk_reg_name *name, const lk_reg_jit *jit,
                           char *why, size_t why_size)
{
    int64_t rid;
    lk_err err;
    if (jit == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no settings given");
    if (jit->max_devices > LK_REG_JIT_MAX_LIMIT)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "a registry may register at most %u devices just in time; %llu asked",
                     LK_REG_JIT_MAX_LIMIT, (unsigned long long)jit->max_devices);
    if ((err = lk_reg__enter_registry(reg, TX_WRITE, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->jit_set(reg->be, rid, jit->enabled != 0, jit->max_devices)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    /* The broker and latchkeyd cache the setting: the feed tells them now. */
    return lk_reg__leave_changed(reg, err, LK_CHANGE_REGISTRY, 0, why, why_size);
}

lk_err lk_registry_jit_register(lk_registry *reg, const lk_reg_name *name, const char *id,
                                const char *cert_pem, size_t cert_len, const char *chain_pem,
                                size_t chain_len, uint64_t *num_id, char *why, size_t why_size)
{
    lk_reg_device_spec spec;
    lk_reg_credential cred;
    lk_reg_cas *cas = NULL;
    lk_reg_jit jit;
    lk_cred_format fmt = LK_CRED_ES256_X509_PEM;
    uint8_t sha[32];
    uint64_t n = 0;
    int64_t rid, not_after = 0;
    char held[LK_ID_MAX + 1], p[400];
    char *pem = NULL;
    lk_err err;

    if (num_id != NULL)
        *num_id = 0;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = lk_reg__check_name(name, why, why_size)) != LK_OK ||
        (err = lk_reg__check_device_id(id, why, why_size)) != LK_OK)
        return err;
    /* The broker's write (a LK_REG_READONLY handle may make it): the
     * registry's own setting is what allows it. */
    if ((err = lk_reg__enter_registry(reg, TX_BROKER, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->jit_get(reg->be, rid, &jit)) != LK_OK) {
        err = lk_reg__be_fail(reg, err, why, why_size);
        goto exit;
    }
    if (!jit.enabled) {
        /* What an unknown device is told where JIT is off. */
        err = failf(why, why_size, LK_ERR_REG_NOT_FOUND,
                    "device '%s' does not exist in %s, which does not register devices just in "
                    "time", id, lk_reg__path(name, p, sizeof p));
        goto exit;
    }
    if (jit.registered >= (jit.max_devices != 0 ? jit.max_devices : LK_REG_JIT_MAX_DEFAULT)) {
        err = failf(why, why_size, LK_ERR_REG_LIMIT,
                    "%s has registered %llu devices just in time, its limit", lk_reg__path(name, p, sizeof p),
                    (unsigned long long)jit.registered);
        goto exit;
    }
    if ((err = lk_reg__jit_cert(cert_pem, cert_len, id, sha, &fmt, &not_after, why, why_size)) !=
        LK_OK)
        goto exit;
    err = reg->ops->jit_cert_find(reg->be, rid, sha, held, sizeof held);
    if (err == LK_OK) {
        err = failf(why, why_size, LK_ERR_REG_EXISTS,
                    "this certificate registered %s already; one certificate registers one "
                    "device", lk_reg__shown(held, p, sizeof p));
        goto exit;
    }
    if (err != LK_ERR_REG_NOT_FOUND) {
        err = lk_reg__be_fail(reg, err, why, why_size);
        goto exit;
    }
    if ((err = lk_reg__device_absent(reg, name, rid, id, why, why_size)) != LK_OK ||
        (err = lk_reg__load_cas(reg, rid, &cas, why, why_size)) != LK_OK)
        goto exit;
    if (lk_reg__cas_count(cas) == 0) {
        err = failf(why, why_size, LK_ERR_REG_CERT,
                    "%s has no CA certificate: just-in-time registration needs one to verify "
                    "the device's certificate", lk_reg__path(name, p, sizeof p));
        goto exit;
    }
    if ((pem = malloc(cert_len + 1)) == NULL) {
        err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        goto exit;
    }
    memcpy(pem, cert_pem, cert_len);
    pem[cert_len] = '\0';
    /* The credential expires with the certificate. */
    cred.format = fmt;
    cred.pem = pem;
    cred.expires = not_after > 0 ? not_after : 0;
    memset(&spec, 0, sizeof spec);
    spec.id = id;
    spec.creds = &cred;
    spec.ncreds = 1;
    spec.chain_pem = chain_pem;
    spec.chain_len = chain_pem != NULL ? chain_len : 0;
    spec.cert_checks = LK_REG_CHECK_LEAF_DATES;
    err = lk_reg__insert_device(reg, name, rid, cas, &spec, 0, &n, why, why_size);
    if (err == LK_OK && ((err = reg->ops->device_set_jit(reg->be, n)) != LK_OK ||
                         (err = reg->ops->jit_count(reg->be, rid)) != LK_OK ||
                         (err = reg->ops->jit_cert_insert(reg->be, rid, sha, id, n,
                                                          lk_reg__now(reg))) != LK_OK))
        err = lk_reg__be_fail(reg, err, why, why_size);
exit:
    free(pem);
    lk_reg__cas_free(cas);
    err = lk_reg__leave(reg, err, TX_BROKER, why, why_size);
    if (err == LK_OK && num_id != NULL)
        *num_id = n;
    return err;
}
