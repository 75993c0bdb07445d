/*
 * chain.c — the registry's trust checks of schema 7 (docs/registry.md,
 * "Schema 7"), with OpenSSL, and the key and CA rules certs.c builds on:
 *
 *  - a device certificate with a chain: X509_verify_cert with the
 *    registry's usable CA certificates as trust anchors (partial chains
 *    allowed: a registry CA is the anchor whether or not it is a root, as
 *    in IoT Core, where the customer's intermediate is the registry CA),
 *    the intermediates taken only from the chain given with the device, at
 *    most LK_REG_CHAIN_MAX of them, every certificate valid now but the
 *    leaf (its dates are the caller's choice, LK_REG_CHECK_LEAF_DATES);
 *  - revocation: each certificate of a verified path against the
 *    registry's CRL whose issuer key is the next certificate's key (the
 *    CRL's signature was proved with that key when it was added, so it is
 *    not verified again for every device of a large import);
 *  - a CRL before it is stored, and a manifest signer's key.
 *
 * Nothing here calls the rest of the registry: certs.c and the facade call
 * in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../verify/verify_internal.h"
#include "latchkey/lk_iotcore.h"
#include "trust.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192

int lk_reg__asn1_epoch(const ASN1_TIME *a, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (a == NULL || !ASN1_TIME_to_tm(a, &tm))
        return 0;
    *out = (int64_t)timegm(&tm);
    return 1;
}

/* "RSA 2048", "RSA 2048 (public exponent 1)", "RSA 2048 (public exponent
 * of 65 bits; at most 64)", "EC P-256", "EC secp384r1", "ED25519"; *ok =
 * usable as a registry key (RSA 2048..8192 with an odd public exponent of
 * at least 3 and at most 64 bits, or P-256). */
void lk_reg__key_desc(EVP_PKEY *pk, char *buf, size_t size, int *ok)
{
    int id = EVP_PKEY_get_base_id(pk);
    *ok = 0;
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pk);
        char ed[64];
        *ok = bits >= RSA_MIN_BITS && bits <= RSA_MAX_BITS;
        if (lk_verify__rsa_exponent_ok(pk, ed, sizeof ed)) {
            snprintf(buf, size, "RSA %d", bits);
        } else {
            *ok = 0;
            snprintf(buf, size, "RSA %d (%s)", bits, ed);
        }
    } else if (id == EVP_PKEY_EC) {
        char group[48];
        size_t glen = 0;
        if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            &glen))
            snprintf(group, sizeof group, "an unnamed curve");
        if (strcmp(group, "prime256v1") == 0) {
            snprintf(buf, size, "EC P-256");
            *ok = 1;
        } else {
            snprintf(buf, size, "EC %s", group);
        }
    } else {
        const char *sn = OBJ_nid2sn(id);
        snprintf(buf, size, "%s", sn != NULL ? sn : "of an unknown type");
    }
}

/* 0 when crt is a CA certificate (X509_check_ca == 1: basicConstraints
 * CA:TRUE, and keyCertSign if it has a keyUsage); else 1, with what is
 * wrong in buf ("not a CA certificate: ..."). */
int lk_reg__not_ca(X509 *crt, char *buf, size_t size)
{
    uint32_t flags;
    if (X509_check_ca(crt) == 1)
        return 0;
    flags = X509_get_extension_flags(crt);
    if ((flags & EXFLAG_INVALID) != 0)
        snprintf(buf, size, "not a CA certificate: its extensions do not parse; "
                            "basicConstraints CA:TRUE is required");
    else if ((flags & EXFLAG_CA) != 0 && (flags & EXFLAG_KUSAGE) != 0 &&
             (X509_get_key_usage(crt) & KU_KEY_CERT_SIGN) == 0)
        snprintf(buf, size, "not a CA certificate: its keyUsage lacks keyCertSign, which a CA "
                            "certificate needs to sign certificates");
    else
        snprintf(buf, size, "not a CA certificate: basicConstraints CA:TRUE is required");
    return 1;
}

/* 0 when crt meets the CA rules of lk_reg__ca_check that a stored
 * certificate can break (what it is, its key); else 1 with why in buf. A
 * database filled by an older version may hold such a certificate. */
int lk_reg__ca_flaw(X509 *crt, char *buf, size_t size)
{
    EVP_PKEY *pk;
    char kd[96];
    int ok = 0;

    if (lk_reg__not_ca(crt, buf, size))
        return 1;
    pk = X509_get0_pubkey(crt);
    if (pk == NULL) {
        snprintf(buf, size, "its key cannot be read");
        return 1;
    }
    lk_reg__key_desc(pk, kd, sizeof kd, &ok);
    if (ok)
        return 0;
    snprintf(buf, size, "its key is %s; a registry CA certificate's key is RSA (2048 to 8192 "
                        "bits, with an odd public exponent of at least 3 and at most %u bits) "
                        "or EC P-256", kd, LK_CRED_RSA_E_MAX_BITS);
    return 1;
}


/* ------------------------------------------------------------------ */
/* Chains                                                              */

lk_err lk_reg__chain_parse(const char *pem, size_t len, STACK_OF(X509) **out, char *why,
                           size_t why_size)
{
    STACK_OF(X509) *sk;
    BIO *bio;
    X509 *x;
    unsigned long e;

    *out = NULL;
    if (pem == NULL || len == 0)
        return LK_OK;
    if (len > (size_t)(LK_REG_CHAIN_MAX + 2) * LK_CRED_PEM_MAX)
        return lk_verify__why(why, why_size, LK_ERR_REG_LIMIT,
                              "the chain is %zu bytes; it holds at most %u certificates", len,
                              LK_REG_CHAIN_MAX + 1);
    if (memchr(pem, '\0', len) != NULL || memmem(pem, len, "PRIVATE KEY-----", 16) != NULL)
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "the chain is not PEM certificates alone");
    if ((sk = sk_X509_new_null()) == NULL || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL) {
        sk_X509_free(sk);
        return LK_ERR_NOMEM;
    }
    ERR_clear_error();
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        /* The intermediates and, as many senders add it, the anchor. */
        if (sk_X509_num(sk) >= (int)LK_REG_CHAIN_MAX + 1 || !sk_X509_push(sk, x)) {
            int many = sk_X509_num(sk) >= (int)LK_REG_CHAIN_MAX + 1;
            X509_free(x);
            BIO_free(bio);
            sk_X509_pop_free(sk, X509_free);
            ERR_clear_error();
            if (!many)
                return LK_ERR_NOMEM;
            return lk_verify__why(why, why_size, LK_ERR_REG_LIMIT,
                                  "the chain holds more than %u certificates; at most %u "
                                  "intermediate CAs may stand between a device and a registry "
                                  "CA (which the chain may also hold)", LK_REG_CHAIN_MAX + 1,
                                  LK_REG_CHAIN_MAX);
        }
    }
    e = ERR_peek_last_error();
    BIO_free(bio);
    ERR_clear_error();
    /* The reader stops at the end of the text ("no start line"), or at a
     * block that is not a certificate or does not parse. */
    if ((ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) ||
        sk_X509_num(sk) == 0) {
        sk_X509_pop_free(sk, X509_free);
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "the chain does not parse: it is PEM certificates (-----BEGIN "
                              "CERTIFICATE----- blocks), the leaf's issuer first");
    }
    *out = sk;
    return LK_OK;
}

/* Leaf dates are the caller's (LK_REG_CHECK_LEAF_DATES); CRLs are checked
 * by lk_reg__path_revoked, not here. */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    int e = X509_STORE_CTX_get_error(ctx);
    if (!ok && X509_STORE_CTX_get_error_depth(ctx) == 0 &&
        (e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID))
        return 1;
    return ok;
}

lk_err lk_reg__chain_verify(const lk_reg_cas *cas, X509 *leaf, STACK_OF(X509) *untrusted,
                            int64_t now, const char *what, STACK_OF(X509) **path, char *why,
                            size_t why_size)
{
    X509_STORE *store = cas->store;
    X509_STORE_CTX *ctx;
    X509_VERIFY_PARAM *vp;
    lk_err err = LK_ERR_REG_CERT;
    int rc;

    *path = NULL;
    if (store == NULL)
        return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                              "%s cannot be checked: the registry has no usable CA certificate",
                              what);
    if ((ctx = X509_STORE_CTX_new()) == NULL) {
        ERR_clear_error();
        return lk_verify__why(why, why_size, LK_ERR_NOMEM, "out of memory");
    }
    if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted)) {
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
        return lk_verify__why(why, why_size, LK_ERR_CRYPTO, "OpenSSL could not start a check");
    }
    vp = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(vp, (time_t)now);
    X509_VERIFY_PARAM_set_depth(vp, (int)LK_REG_CHAIN_MAX);
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
    rc = X509_verify_cert(ctx);
    if (rc == 1) {
        *path = X509_STORE_CTX_get1_chain(ctx);
        err = *path != NULL ? LK_OK : LK_ERR_NOMEM;
        if (err != LK_OK)
            lk_verify__why(why, why_size, err, "out of memory");
    } else {
        int e = X509_STORE_CTX_get_error(ctx), d = X509_STORE_CTX_get_error_depth(ctx);
        if (e == X509_V_ERR_CERT_CHAIN_TOO_LONG)
            lk_verify__why(why, why_size, err,
                           "%s does not reach a registry CA certificate within %u intermediate "
                           "CAs", what, LK_REG_CHAIN_MAX);
        else if (e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                 e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                 e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                 e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN)
            lk_verify__why(why, why_size, err,
                           "%s does not chain to any of the registry's %u CA certificates "
                           "through the chain given (%s at depth %d)", what, cas->n,
                           X509_verify_cert_error_string(e), d);
        else
            lk_verify__why(why, why_size, err, "%s: the certificate at depth %d of its chain: %s",
                           what, d, X509_verify_cert_error_string(e));
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return err;
}

static char *name_line(const X509_NAME *name, char *buf, size_t size)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long n;
    snprintf(buf, size, "an unnamed CA");
    if (bio == NULL)
        return buf;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_get_mem_data(bio, &data);
        if (n > 0)
            snprintf(buf, size, "%.*s", (int)(n < 200 ? n : 200), data);
    }
    BIO_free(bio);
    return buf;
}

lk_err lk_reg__path_revoked(const lk_reg_cas *cas, STACK_OF(X509) *path, const char *what,
                            char *why, size_t why_size)
{
    int i, n = sk_X509_num(path);
    unsigned j;
    if (cas == NULL || cas->ncrls == 0)
        return LK_OK;
    for (i = 0; i + 1 < n; i++) {
        uint8_t key[32];
        unsigned kl = 0;
        if (!X509_pubkey_digest(sk_X509_value(path, i + 1), EVP_sha256(), key, &kl) || kl != 32) {
            ERR_clear_error();
            return lk_verify__why(why, why_size, LK_ERR_CRYPTO,
                                  "%s: OpenSSL could not read an issuer's key", what);
        }
        for (j = 0; j < cas->ncrls; j++) {
            X509_REVOKED *rev = NULL;
            char nm[256];
            if (memcmp(cas->crl_key[j], key, 32) != 0)
                continue;
            if (X509_CRL_get0_by_cert(cas->crl[j], &rev, sk_X509_value(path, i)) == 1) {
                ERR_clear_error();
                if (i == 0)
                    return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                                          "%s is revoked by %s's CRL", what,
                                          name_line(X509_CRL_get_issuer(cas->crl[j]), nm,
                                                    sizeof nm));
                return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                                      "%s: the CA certificate at depth %d of its chain is "
                                      "revoked by %s's CRL", what, i,
                                      name_line(X509_CRL_get_issuer(cas->crl[j]), nm, sizeof nm));
            }
        }
    }
    ERR_clear_error();
    return LK_OK;
}

lk_err lk_reg__leaf_dates(X509 *leaf, int64_t now, const char *what, char *why,
                          size_t why_size)
{
    int64_t nb = 0, na = 0;
    char a[32], b[32];
    if (!lk_reg__asn1_epoch(X509_get0_notBefore(leaf), &nb) ||
        !lk_reg__asn1_epoch(X509_get0_notAfter(leaf), &na))
        return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                              "%s's validity dates cannot be read", what);
    if (now >= nb && now <= na)
        return LK_OK;
    lk_time_rfc3339(nb, a, sizeof a);
    lk_time_rfc3339(na, b, sizeof b);
    return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                          "%s is %s (valid from %s to %s); it must be valid now", what,
                          now > na ? "expired" : "not valid yet", a, b);
}

/* ------------------------------------------------------------------ */
/* CRLs                                                                */

static X509_CRL *pem_crl(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_CRL *crl = bio != NULL ? PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return crl;
}

lk_err lk_reg__cas_add_crl(lk_reg_cas *cas, const char *pem, size_t len,
                           const uint8_t issuer_key[32])
{
    X509_CRL *crl;
    if (cas->ncrls >= LK_REG_CRLS_MAX)
        return LK_ERR_REG_LIMIT;
    if (len > LK_REG_CRL_MAX || (crl = pem_crl(pem, len)) == NULL) {
        ERR_clear_error();
        return LK_ERR_REG_INVALID;
    }
    cas->crl[cas->ncrls] = crl;
    memcpy(cas->crl_key[cas->ncrls], issuer_key, 32);
    cas->ncrls++;
    return LK_OK;
}

/* 1 when crt may sign crl: its subject is the CRL's issuer, it is a CA
 * with cRLSign if it has a keyUsage, and the signature verifies. */
static int signs_crl(X509 *crt, X509_CRL *crl)
{
    EVP_PKEY *pk = X509_get0_pubkey(crt);
    uint32_t fl = X509_get_extension_flags(crt);
    if (pk == NULL || X509_NAME_cmp(X509_get_subject_name(crt), X509_CRL_get_issuer(crl)) != 0 ||
        X509_check_ca(crt) != 1)
        return 0;
    if ((fl & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(crt) & KU_CRL_SIGN) == 0)
        return 0;
    return X509_CRL_verify(crl, pk) == 1;
}

lk_err lk_reg__crl_check(const lk_reg_cas *cas, const char *pem, size_t len, const char *chain_pem,
                         size_t chain_len, int64_t now, lk_reg_crl *out, uint8_t issuer_key[32],
                         char *why, size_t why_size)
{
    STACK_OF(X509) *chain = NULL, *path = NULL;
    X509_CRL *crl = NULL;
    X509 *issuer = NULL;
    char nm[256];
    unsigned kl = 0;
    unsigned i;
    int k;
    lk_err err;

    memset(out, 0, sizeof *out);
    if (pem == NULL || len == 0)
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID, "no CRL given");
    if (len > LK_REG_CRL_MAX)
        return lk_verify__why(why, why_size, LK_ERR_REG_LIMIT,
                              "the CRL is %zu bytes; the limit is %u", len, LK_REG_CRL_MAX);
    if (memchr(pem, '\0', len) != NULL || (crl = pem_crl(pem, len)) == NULL) {
        ERR_clear_error();
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "the CRL does not parse: a CRL is one X.509 v2 CRL in one "
                              "-----BEGIN X509 CRL----- block");
    }
    if (X509_CRL_get_version(crl) != 1) {
        err = lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                             "the CRL is X.509 v%ld; a CRL must be v2", X509_CRL_get_version(crl) + 1);
        goto exit;
    }
    if ((err = lk_reg__chain_parse(chain_pem, chain_len, &chain, why, why_size)) != LK_OK)
        goto exit;
    /* Its issuer: a registry CA, or a CA of the chain given that verifies
     * to one (the rest of the chain as intermediates). */
    for (i = 0; i < cas->n && issuer == NULL; i++)
        if (cas->usable[i] && cas->not_before[i] <= now && now <= cas->not_after[i] &&
            signs_crl(cas->crt[i], crl))
            issuer = cas->crt[i];
    for (k = 0; chain != NULL && k < sk_X509_num(chain) && issuer == NULL; k++) {
        X509 *c = sk_X509_value(chain, k);
        if (!signs_crl(c, crl))
            continue;
        err = lk_reg__chain_verify(cas, c, chain, now, "the CRL's issuer", &path, why, why_size);
        if (err == LK_OK)
            err = lk_reg__leaf_dates(c, now, "the CRL's issuer", why, why_size);
        if (err == LK_OK)
            err = lk_reg__path_revoked(cas, path, "the CRL's issuer", why, why_size);
        sk_X509_pop_free(path, X509_free);
        path = NULL;
        if (err != LK_OK)
            goto exit;
        issuer = c;
    }
    if (issuer == NULL) {
        err = lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                             "the CRL of %s is not signed by a registry CA certificate that is "
                             "valid now, nor by a CA certificate of the issuer chain given that "
                             "verifies to one",
                             name_line(X509_CRL_get_issuer(crl), nm, sizeof nm));
        goto exit;
    }
    if (!X509_pubkey_digest(issuer, EVP_sha256(), issuer_key, &kl) || kl != 32) {
        err = lk_verify__why(why, why_size, LK_ERR_CRYPTO, "OpenSSL could not read the issuer's key");
        goto exit;
    }
    out->issuer = strdup(name_line(X509_CRL_get_issuer(crl), nm, sizeof nm));
    out->pem = malloc(len + 1);
    if (out->issuer == NULL || out->pem == NULL) {
        err = lk_verify__why(why, why_size, LK_ERR_NOMEM, "out of memory");
        goto exit;
    }
    memcpy(out->pem, pem, len);
    out->pem[len] = '\0';
    if (!lk_reg__asn1_epoch(X509_CRL_get0_lastUpdate(crl), &out->this_update) ||
        (X509_CRL_get0_nextUpdate(crl) != NULL &&
         !lk_reg__asn1_epoch(X509_CRL_get0_nextUpdate(crl), &out->next_update))) {
        err = lk_verify__why(why, why_size, LK_ERR_REG_INVALID, "the CRL's dates cannot be read");
        goto exit;
    }
    {
        /* A CRL without revokedCertificates has no stack: num says -1. */
        int nrev = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
        out->nrevoked = nrev > 0 ? (uint64_t)nrev : 0;
    }
    err = LK_OK;
exit:
    if (err != LK_OK) {
        free(out->issuer);
        free(out->pem);
        memset(out, 0, sizeof *out);
        memset(issuer_key, 0, 32);
    }
    sk_X509_pop_free(chain, X509_free);
    X509_CRL_free(crl);
    ERR_clear_error();
    return err;
}

/* ------------------------------------------------------------------ */
/* Manifest signers                                                    */

lk_err lk_reg__signer_key(const char *pem, size_t len, char *key_type, size_t kt_size,
                          uint8_t fp[32], char *why, size_t why_size)
{
    EVP_PKEY *pk = NULL;
    unsigned char *der = NULL;
    BIO *bio;
    int dl, ok = 0, id;
    lk_err err = LK_ERR_REG_INVALID;

    memset(fp, 0, 32);
    if (kt_size > 0)
        key_type[0] = '\0';
    if (pem == NULL || len == 0 || len > LK_CRED_PEM_MAX || memchr(pem, '\0', len) != NULL)
        return lk_verify__why(why, why_size, len > LK_CRED_PEM_MAX ? LK_ERR_REG_LIMIT
                                                                   : LK_ERR_REG_INVALID,
                              "a signer key is one PEM public key (-----BEGIN PUBLIC KEY-----) "
                              "of at most %u bytes", LK_CRED_PEM_MAX);
    if (memmem(pem, len, "PRIVATE KEY-----", 16) != NULL)
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "this is a private key: give the signer's public key only");
    if (lk_verify__pem_kind(pem, len) != 1)
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "a signer key is one PEM public key (-----BEGIN PUBLIC KEY-----)");
    if ((bio = BIO_new_mem_buf(pem, (int)len)) != NULL)
        pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (pk == NULL) {
        ERR_clear_error();
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "the signer key does not parse as a public key");
    }
    lk_reg__key_desc(pk, key_type, kt_size, &ok);
    id = EVP_PKEY_get_base_id(pk);
    if (!ok || (id != EVP_PKEY_EC && id != EVP_PKEY_RSA)) {
        err = lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                             "the signer key is %s; a manifest signer's key is EC P-256 (ES256) "
                             "or RSA of 2048 to 8192 bits (RS256)", key_type);
        goto exit;
    }
    dl = i2d_PUBKEY(pk, &der);
    if (dl <= 0 || EVP_Digest(der, (size_t)dl, fp, NULL, EVP_sha256(), NULL) != 1) {
        err = lk_verify__why(why, why_size, LK_ERR_CRYPTO, "OpenSSL could not encode the key");
        goto exit;
    }
    err = LK_OK;
exit:
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
    ERR_clear_error();
    if (err != LK_OK)
        memset(fp, 0, 32);
    return err;
}

/* ------------------------------------------------------------------ */
/* Just-in-time registration                                           */

lk_err lk_reg__jit_cert(const char *pem, size_t len, const char *id, uint8_t sha[32],
                        lk_cred_format *fmt, int64_t *not_after, char *why, size_t why_size)
{
    X509 *crt = NULL;
    BIO *bio;
    X509_NAME *subj;
    unsigned char *der = NULL;
    int pos, dl, n = 0, kid, same;
    lk_err err = LK_ERR_REG_CERT;

    memset(sha, 0, 32);
    *not_after = 0;
    if (pem == NULL || len == 0 || len > LK_CRED_PEM_MAX || memchr(pem, '\0', len) != NULL ||
        lk_verify__pem_kind(pem, len) != 2)
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "the device certificate is not one PEM certificate of at most %u "
                              "bytes", LK_CRED_PEM_MAX);
    if ((bio = BIO_new_mem_buf(pem, (int)len)) != NULL)
        crt = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (crt == NULL) {
        ERR_clear_error();
        return lk_verify__why(why, why_size, LK_ERR_REG_INVALID,
                              "the device certificate does not parse as X.509");
    }
    /* The device id is the subject's one CN (SANs are not read). */
    subj = X509_get_subject_name(crt);
    for (pos = -1; (pos = X509_NAME_get_index_by_NID(subj, NID_commonName, pos)) >= 0;)
        n++;
    if (n != 1) {
        lk_verify__why(why, why_size, err,
                       "the device certificate's subject has %d common names; it must have "
                       "exactly one, the device id", n);
        goto exit;
    }
    {
        /* The CN's bytes, compared whole: a CN with a NUL inside must not
         * match the id before the NUL. */
        int at = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
        const ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, at));
        size_t idl = strlen(id);
        same = d != NULL && (size_t)ASN1_STRING_length(d) == idl &&
               memcmp(ASN1_STRING_get0_data(d), id, idl) == 0;
    }
    if (!same) {
        lk_verify__why(why, why_size, err,
                       "the device certificate names another device (its subject CN is not "
                       "'%s'); a certificate registers only the device its CN names", id);
        goto exit;
    }
    kid = X509_get0_pubkey(crt) != NULL ? EVP_PKEY_get_base_id(X509_get0_pubkey(crt)) : 0;
    if (kid != EVP_PKEY_EC && kid != EVP_PKEY_RSA) {
        lk_verify__why(why, why_size, err, "the device certificate's key is neither EC nor RSA");
        goto exit;
    }
    *fmt = kid == EVP_PKEY_EC ? LK_CRED_ES256_X509_PEM : LK_CRED_RSA_X509_PEM;
    if (!lk_reg__asn1_epoch(X509_get0_notAfter(crt), not_after)) {
        lk_verify__why(why, why_size, err, "the device certificate's dates cannot be read");
        goto exit;
    }
    dl = i2d_X509(crt, &der);
    if (dl <= 0 || EVP_Digest(der, (size_t)dl, sha, NULL, EVP_sha256(), NULL) != 1) {
        err = lk_verify__why(why, why_size, LK_ERR_CRYPTO, "OpenSSL could not encode it");
        goto exit;
    }
    err = LK_OK;
exit:
    OPENSSL_free(der);
    X509_free(crt);
    ERR_clear_error();
    if (err != LK_OK) {
        memset(sha, 0, 32);
        *not_after = 0;
    }
    return err;
}
