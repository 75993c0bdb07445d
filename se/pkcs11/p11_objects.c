/*
 * p11_objects.c — the PKCS#11 backend's key objects: key URIs checked against
 * the open token, finding objects, their attributes and algorithm, listing
 * keys (lk_pkcs11_list_keys), and exporting public keys as SPKI.
 */
#include "p11_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "latchkey/lk_util.h"

/* DER OBJECT IDENTIFIER 1.2.840.10045.3.1.7 (prime256v1), the CKA_EC_PARAMS
 * of a P-256 key. */
const CK_BYTE p11__p256_oid[10] = {
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
};

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */

/*
 * Parse a key reference and check it against the open handle: it must name
 * an object (object= and/or id=) and its token attributes must match the
 * open token. The query (module-path, pin-value, pin-source) is checked for
 * syntax only: RFC 7512 query attributes say how to reach a token, not which
 * object to match, and the handle has already reached it (possibly with a
 * module or PIN that overrode the URI's).
 */
P11_HIDDEN lk_err p11__key_uri(lk_pkcs11 *p11, const char *key, p11_uri *u)
{
    lk_err err = p11__parse(p11, key, u);

    if (err != LK_OK)
        return err;
    lk_wipe(u->pin_value, sizeof u->pin_value);
    if (!(u->have & (P11_HAVE_OBJECT | P11_HAVE_ID)))
        return p11__fail(p11, LK_ERR_URI, "the key URI names no object= or id=");
    if (u->type != P11_TYPE_ANY && u->type != P11_TYPE_PRIVATE && u->type != P11_TYPE_PUBLIC)
        return p11__fail(p11, LK_ERR_KEY_NOT_FOUND,
                         "the key URI's type= names no key pair (use private or public)");
    if (!p11__token_matches(u, &p11->info, p11->slot, &p11->slot_info, &p11->token_info))
        return p11__fail(p11, LK_ERR_KEY_NOT_FOUND, "the key URI names another token");
    return LK_OK;
}

/* Find objects of class cls with the given label and/or id (NULL = any).
 * *count is 0, 1 or 2 (two meaning "more than one"); *h the first. */
P11_HIDDEN lk_err p11__find(lk_pkcs11 *p11, CK_OBJECT_CLASS cls, const char *label,
                            const unsigned char *id, size_t id_len,
                            CK_OBJECT_HANDLE *h, CK_ULONG *count)
{
    CK_ATTRIBUTE t[3];
    CK_OBJECT_HANDLE found[2];
    CK_ULONG nt = 0, n = 0;
    CK_RV rv;

    *count = 0;
    t[nt].type = CKA_CLASS;
    t[nt].pValue = &cls;
    t[nt++].ulValueLen = sizeof cls;
    if (label != NULL) {
        t[nt].type = CKA_LABEL;
        t[nt].pValue = (void *)label;
        t[nt++].ulValueLen = (CK_ULONG)strlen(label);
    }
    if (id != NULL) {
        t[nt].type = CKA_ID;
        t[nt].pValue = (void *)id;
        t[nt++].ulValueLen = (CK_ULONG)id_len;
    }
    rv = p11->fl->C_FindObjectsInit(p11->session, t, nt);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_FindObjectsInit", rv, LK_ERR_DEVICE);
    rv = p11->fl->C_FindObjects(p11->session, found, 2, &n);
    /* Always end the search, even after a failure, or the session stays
     * in an active find operation. */
    (void)p11->fl->C_FindObjectsFinal(p11->session);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_FindObjects", rv, LK_ERR_DEVICE);
    if (n > 2)
        return p11__fail(p11, LK_ERR_DEVICE, "C_FindObjects: returned too many objects");
    *count = n;
    if (n > 0)
        *h = found[0];
    return LK_OK;
}

P11_HIDDEN lk_err p11__find_uri(lk_pkcs11 *p11, CK_OBJECT_CLASS cls, const p11_uri *u,
                                CK_OBJECT_HANDLE *h, CK_ULONG *count)
{
    return p11__find(p11, cls, (u->have & P11_HAVE_OBJECT) ? u->object : NULL,
                     (u->have & P11_HAVE_ID) ? u->id : NULL, u->id_len, h, count);
}

/* The one private key u names. */
P11_HIDDEN lk_err p11__private_key(lk_pkcs11 *p11, const p11_uri *u, CK_OBJECT_HANDLE *h)
{
    CK_ULONG count = 0;
    lk_err err = p11__find_uri(p11, CKO_PRIVATE_KEY, u, h, &count);

    if (err != LK_OK)
        return err;
    if (count == 0) {
        /* Without a login private objects are invisible: say so rather
         * than claim the key does not exist. */
        err = p11__need_login(p11);
        if (err != LK_OK)
            return err;
        return p11__fail(p11, LK_ERR_KEY_NOT_FOUND, "no private key matches the key URI");
    }
    if (count > 1)
        return p11__fail(p11, LK_ERR_URI,
                         "several private keys match the key URI: add id= or object=");
    return LK_OK;
}

/* Read one attribute into buf (at most max bytes). */
static lk_err p11__attr(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                        void *buf, size_t max, size_t *len)
{
    CK_ATTRIBUTE a;
    CK_RV rv;

    a.type = type;
    a.pValue = buf;
    a.ulValueLen = (CK_ULONG)max;
    rv = p11->fl->C_GetAttributeValue(p11->session, h, &a, 1);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_GetAttributeValue", rv, LK_ERR_DEVICE);
    if (a.ulValueLen > max)
        return p11__fail(p11, LK_ERR_DEVICE, "C_GetAttributeValue: value longer than the buffer");
    *len = (size_t)a.ulValueLen;
    return LK_OK;
}

static lk_err p11__attr_ulong(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                              CK_ULONG *v)
{
    size_t len = 0;
    lk_err err = p11__attr(p11, h, type, v, sizeof *v, &len);
    if (err == LK_OK && len != sizeof *v)
        err = p11__fail(p11, LK_ERR_DEVICE, "C_GetAttributeValue: CK_ULONG of the wrong size");
    return err;
}

/* The number of significant bits of a big-endian unsigned integer. */
static size_t p11__bits(const CK_BYTE *v, size_t len)
{
    size_t i = 0, bits;
    unsigned top;

    while (i < len && v[i] == 0)
        i++;
    if (i == len)
        return 0;
    bits = (len - i) * 8;
    for (top = v[i]; !(top & 0x80); top <<= 1)
        bits--;
    return bits;
}

/*
 * What a key object is to latchkey: ES256 (EC on P-256) or RS256 (RSA of
 * LK_RSA_MIN_BITS to LK_RSA_MAX_BITS). LK_ERR_KEY_WEAK for another curve or
 * a short modulus, LK_ERR_KEY_TYPE for anything else. *mod_bytes is the RSA
 * signature length.
 */
P11_HIDDEN lk_err p11__key_alg(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, lk_alg *alg,
                               size_t *mod_bytes)
{
    CK_KEY_TYPE kt = 0;
    CK_BYTE buf[P11_RSA_MOD_MAX];
    size_t len = 0, bits;
    lk_err err = p11__attr_ulong(p11, h, CKA_KEY_TYPE, &kt);

    *alg = LK_ALG_NONE;
    *mod_bytes = 0;
    if (err != LK_OK)
        return err;
    if (kt == CKK_EC) {
        err = p11__attr(p11, h, CKA_EC_PARAMS, buf, P11_EC_ATTR_MAX, &len);
        if (err != LK_OK)
            return err;
        if (len != sizeof p11__p256_oid || memcmp(buf, p11__p256_oid, len) != 0)
            return p11__fail(p11, LK_ERR_KEY_WEAK, "EC key on a curve other than P-256");
        *alg = LK_ALG_ES256;
        return LK_OK;
    }
    if (kt == CKK_RSA) {
        err = p11__attr(p11, h, CKA_MODULUS, buf, sizeof buf, &len);
        if (err != LK_OK)
            return err;
        bits = p11__bits(buf, len);
        if (bits < LK_RSA_MIN_BITS)
            return p11__fail(p11, LK_ERR_KEY_WEAK, "RSA key shorter than 2048 bits");
        if (bits > LK_RSA_MAX_BITS)
            return p11__fail(p11, LK_ERR_KEY_TYPE, "RSA key longer than 4096 bits");
        *alg = LK_ALG_RS256;
        *mod_bytes = (bits + 7) / 8;
        return LK_OK;
    }
    return p11__fail(p11, LK_ERR_KEY_TYPE, "the key is neither EC nor RSA");
}

/* ------------------------------------------------------------------------ */
/* Listing                                                                  */

#define P11_LIST_MAX 100000u   /* objects listed at most */

/* see lk_pkcs11.h */
lk_err lk_pkcs11_list_keys(lk_pkcs11 *p11, const char *filter,
                           void (*cb)(void *user, const lk_pkcs11_key_info *key), void *user)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[3];
    CK_OBJECT_HANDLE *h = NULL, batch[64];
    CK_ULONG nt = 0, n = 0, got;
    p11_uri u;
    lk_err err = LK_OK;
    CK_RV rv;
    size_t i;

    if (p11 == NULL || cb == NULL)
        return LK_ERR_ARG;
    memset(&u, 0, sizeof u);
    if (filter != NULL) {
        err = p11__parse(p11, filter, &u);
        if (err != LK_OK)
            goto exit;
        lk_wipe(u.pin_value, sizeof u.pin_value);
        if (!p11__token_matches(&u, &p11->info, p11->slot, &p11->slot_info, &p11->token_info)) {
            err = p11__fail(p11, LK_ERR_KEY_NOT_FOUND, "the URI names another token");
            goto exit;
        }
    }
    if ((p11->token_info.flags & CKF_LOGIN_REQUIRED) && !p11__logged_in(p11)) {
        err = p11__fail(p11, LK_ERR_KEY_LOCKED,
                        "not logged in: private keys are visible only after C_Login; give "
                        "pin-value or pin-source");
        goto exit;
    }
    t[nt].type = CKA_CLASS;
    t[nt].pValue = &cls;
    t[nt++].ulValueLen = sizeof cls;
    if (u.have & P11_HAVE_OBJECT) {
        t[nt].type = CKA_LABEL;
        t[nt].pValue = u.object;
        t[nt++].ulValueLen = (CK_ULONG)strlen(u.object);
    }
    if (u.have & P11_HAVE_ID) {
        t[nt].type = CKA_ID;
        t[nt].pValue = u.id;
        t[nt++].ulValueLen = (CK_ULONG)u.id_len;
    }
    rv = p11->fl->C_FindObjectsInit(p11->session, t, nt);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_FindObjectsInit", rv, LK_ERR_DEVICE);
        goto exit;
    }
    for (;;) {
        CK_OBJECT_HANDLE *grown;
        got = 0;
        rv = p11->fl->C_FindObjects(p11->session, batch, 64, &got);
        if (rv != CKR_OK || got == 0 || got > 64)
            break;
        if (n + got > P11_LIST_MAX) {
            rv = CKR_OK;
            err = p11__fail(p11, LK_ERR_DEVICE, "C_FindObjects: implausibly many keys");
            break;
        }
        grown = realloc(h, (n + got) * sizeof *h);
        if (grown == NULL) {
            err = p11__fail(p11, LK_ERR_NOMEM, "out of memory");
            break;
        }
        h = grown;
        memcpy(h + n, batch, got * sizeof *h);
        n += got;
    }
    (void)p11->fl->C_FindObjectsFinal(p11->session);
    if (err != LK_OK)
        goto exit;
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_FindObjects", rv, LK_ERR_DEVICE);
        goto exit;
    }
    for (i = 0; i < n; i++) {
        unsigned char label[P11_OBJECT_MAX], id[P11_ID_MAX];
        CK_BYTE mod[P11_RSA_MOD_MAX];
        char why[P11_ERR_MAX];
        size_t label_len = 0, id_len = 0, mod_bytes = 0, mod_len = 0;
        lk_pkcs11_key_info k;
        lk_alg alg = LK_ALG_NONE;
        lk_err e;

        memset(&k, 0, sizeof k);
        if (p11__attr(p11, h[i], CKA_LABEL, label, sizeof label, &label_len) != LK_OK)
            label_len = 0; /* none, or longer than a URI can name */
        if (p11__attr(p11, h[i], CKA_ID, id, sizeof id, &id_len) != LK_OK)
            id_len = 0;
        e = p11__key_alg(p11, h[i], &alg, &mod_bytes);
        k.label = label;
        k.label_len = label_len;
        k.id = id;
        k.id_len = id_len;
        k.alg = e == LK_OK ? alg : LK_ALG_NONE;
        snprintf(why, sizeof why, "%s", e == LK_OK ? "" : p11->last_error[0] ? p11->last_error
                                                          : "not a key latchkey can sign with");
        k.why = why;
        if (e == LK_OK)
            k.bits = alg == LK_ALG_ES256 ? 256u : (unsigned)(mod_bytes * 8);
        else if (p11__attr(p11, h[i], CKA_MODULUS, mod, sizeof mod, &mod_len) == LK_OK)
            k.bits = (unsigned)p11__bits(mod, mod_len);
        cb(user, &k);
    }
    p11->last_error[0] = '\0';
    err = LK_OK;
exit:
    p11__uri_wipe(&u);
    free(h);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Public keys                                                              */

/* LK_OK when point is a valid P-256 point (on the curve, not infinity),
 * checked by OpenSSL. */
static lk_err p11__p256_check(lk_pkcs11 *p11, const CK_BYTE point[LK_P256_POINT_BYTES])
{
    unsigned char copy[LK_P256_POINT_BYTES];
    char group[] = "prime256v1";
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    lk_err err = LK_ERR_DEVICE;

    memcpy(copy, point, sizeof copy);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, copy, sizeof copy);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        err = p11__fail(p11, LK_ERR_CRYPTO, "OpenSSL: EC key import unavailable");
        goto exit;
    }
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto bad;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1)
        goto bad;
    err = LK_OK;
    goto exit;
bad:
    err = p11__fail(p11, LK_ERR_DEVICE, "CKA_EC_POINT is not a valid P-256 point");
exit:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return err;
}

/* The SPKI of an EC P-256 key object (public key, or a private key that
 * exposes CKA_EC_POINT). */
static lk_err p11__export_ec(lk_pkcs11 *p11, CK_OBJECT_HANDLE h,
                             uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    CK_BYTE buf[P11_EC_ATTR_MAX];
    const CK_BYTE *point;
    size_t len = 0;
    lk_err err = p11__attr(p11, h, CKA_EC_POINT, buf, sizeof buf, &len);

    if (err != LK_OK)
        return err;
    /* PKCS#11 says DER OCTET STRING (04 41 04 X Y); some tokens give the
     * bare point. The two lengths differ, so there is no ambiguity. */
    if (len == LK_P256_POINT_BYTES + 2 && buf[0] == 0x04 && buf[1] == LK_P256_POINT_BYTES)
        point = buf + 2;
    else if (len == LK_P256_POINT_BYTES)
        point = buf;
    else
        return p11__fail(p11, LK_ERR_DEVICE, "CKA_EC_POINT is not an uncompressed P-256 point");
    if (point[0] != 0x04)
        return p11__fail(p11, LK_ERR_DEVICE, "CKA_EC_POINT is not an uncompressed P-256 point");
    err = p11__p256_check(p11, point);
    if (err != LK_OK)
        return err;
    err = lk_p256_spki_from_point(point, pub, pub_size, pub_len);
    if (err != LK_OK)
        p11__fail(p11, err, "public key buffer too small");
    return err;
}

/* The SPKI of an RSA key object (public or private: both carry CKA_MODULUS
 * and CKA_PUBLIC_EXPONENT). */
static lk_err p11__export_rsa(lk_pkcs11 *p11, CK_OBJECT_HANDLE h,
                              uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    CK_BYTE mod[P11_RSA_MOD_MAX], exp[P11_RSA_EXP_MAX];
    size_t mod_len = 0, exp_len = 0;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *p;
    int der_len;
    lk_err err;

    err = p11__attr(p11, h, CKA_MODULUS, mod, sizeof mod, &mod_len);
    if (err == LK_OK)
        err = p11__attr(p11, h, CKA_PUBLIC_EXPONENT, exp, sizeof exp, &exp_len);
    if (err != LK_OK)
        goto exit;
    err = LK_ERR_CRYPTO;
    n = BN_bin2bn(mod, (int)mod_len, NULL);
    e = BN_bin2bn(exp, (int)exp_len, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (n == NULL || e == NULL || bld == NULL ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1) {
        p11__fail(p11, err, "OpenSSL: RSA key import failed");
        goto exit;
    }
    err = LK_ERR_DEVICE;
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        p11__fail(p11, err, "CKA_MODULUS/CKA_PUBLIC_EXPONENT do not form an RSA key");
        goto exit;
    }
    /* SP 800-56B public-key checks: odd modulus without small factors,
     * odd exponent above 2^16. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        p11__fail(p11, err, "the token's RSA public key fails OpenSSL's checks");
        goto exit;
    }
    der_len = i2d_PUBKEY(pkey, NULL);
    if (der_len <= 0) {
        err = p11__fail(p11, LK_ERR_CRYPTO, "OpenSSL: i2d_PUBKEY failed");
        goto exit;
    }
    if ((size_t)der_len > pub_size) {
        err = p11__fail(p11, LK_ERR_BUFFER, "public key buffer too small");
        goto exit;
    }
    p = pub;
    if (i2d_PUBKEY(pkey, &p) != der_len) {
        err = p11__fail(p11, LK_ERR_CRYPTO, "OpenSSL: i2d_PUBKEY failed");
        goto exit;
    }
    *pub_len = (size_t)der_len;
    err = LK_OK;
exit:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(e);
    BN_free(n);
    return err;
}

/* The algorithm and SPKI of key object h. */
P11_HIDDEN lk_err p11__export(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, lk_alg *alg,
                              uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    size_t mod_bytes = 0;
    lk_err err = p11__key_alg(p11, h, alg, &mod_bytes);

    if (err != LK_OK)
        return err;
    if (*alg == LK_ALG_ES256)
        return p11__export_ec(p11, h, pub, pub_size, pub_len);
    return p11__export_rsa(p11, h, pub, pub_size, pub_len);
}
