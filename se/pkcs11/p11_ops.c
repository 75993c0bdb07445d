/*
 * p11_ops.c — the PKCS#11 backend's lk_se operations: public key, sign,
 * generate, random, and the table lk_pkcs11_se hands out. Private keys are
 * only ever used through C_Sign; nothing here reads a private value.
 */
#include "p11_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_util.h"

/* DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1); the digest
 * follows. CKM_RSA_PKCS signs exactly these bytes. */
static const CK_BYTE p11__sha256_digest_info[] = {
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

static const CK_BYTE p11__rsa_f4[] = { 0x01, 0x00, 0x01 };

/* The output contract of lk_se.h: on failure the output is wiped and its
 * length 0. Returns err. */
static lk_err p11__out(lk_err err, uint8_t *out, size_t size, size_t *len)
{
    if (err != LK_OK) {
        if (out != NULL && size > 0)
            lk_wipe(out, size);
        if (len != NULL)
            *len = 0;
    }
    return err;
}

/* ------------------------------------------------------------------------ */
/* lk_se operations                                                         */

/* see lk_se.h: the public key object named by key, or the private key's
 * public attributes when the token keeps no public key object. */
static lk_err p11__public_key(void *ctx, const char *key, lk_alg *alg,
                              uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    lk_pkcs11 *p11 = ctx;
    p11_uri u;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG count = 0;
    lk_err err = LK_ERR_ARG;

    memset(&u, 0, sizeof u);
    if (pub_len != NULL)
        *pub_len = 0;
    if (alg != NULL)
        *alg = LK_ALG_NONE;
    if (p11 == NULL || key == NULL || alg == NULL || pub == NULL || pub_len == NULL)
        goto exit;
    err = p11__key_uri(p11, key, &u);
    if (err != LK_OK)
        goto exit;
    err = p11__find_uri(p11, CKO_PUBLIC_KEY, &u, &h, &count);
    if (err != LK_OK)
        goto exit;
    if (count > 1) {
        err = p11__fail(p11, LK_ERR_URI,
                        "several public keys match the key URI: add id= or object=");
        goto exit;
    }
    if (count == 0) {
        err = p11__private_key(p11, &u, &h);
        if (err != LK_OK)
            goto exit;
    }
    err = p11__export(p11, h, alg, pub, pub_size, pub_len);
    /* An EC private key usually has no CKA_EC_POINT. */
    if (err == LK_ERR_DEVICE && count == 0 && *alg == LK_ALG_ES256)
        err = p11__fail(p11, LK_ERR_KEY_NOT_FOUND,
                        "no public key object, and the private key does not expose its point");
exit:
    p11__uri_wipe(&u);
    if (err != LK_OK && alg != NULL)
        *alg = LK_ALG_NONE;
    return p11__out(err, pub, pub_size, pub_len);
}

/* see lk_se.h */
static lk_err p11__sign_digest(void *ctx, const char *key, lk_alg alg,
                               const uint8_t digest[LK_SHA256_BYTES],
                               uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    lk_pkcs11 *p11 = ctx;
    p11_uri u;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
    CK_BYTE data[sizeof p11__sha256_digest_info + LK_SHA256_BYTES];
    CK_BYTE out[LK_SIG_MAX_BYTES + 16];
    CK_ULONG data_len, out_len = sizeof out;
    size_t mod_bytes = 0, want;
    lk_alg key_alg = LK_ALG_NONE;
    lk_err err = LK_ERR_ARG;
    CK_RV rv;

    memset(&u, 0, sizeof u);
    if (sig_len != NULL)
        *sig_len = 0;
    if (p11 == NULL || key == NULL || digest == NULL || sig == NULL || sig_len == NULL ||
        (alg != LK_ALG_ES256 && alg != LK_ALG_RS256))
        goto exit;
    err = p11__key_uri(p11, key, &u);
    if (err == LK_OK)
        err = p11__private_key(p11, &u, &h);
    if (err == LK_OK)
        err = p11__key_alg(p11, h, &key_alg, &mod_bytes);
    if (err != LK_OK)
        goto exit;
    if (key_alg != alg) {
        snprintf(p11->last_error, sizeof p11->last_error,
                 "the key is %s, not %s", lk_alg_name(key_alg), lk_alg_name(alg));
        err = LK_ERR_KEY_TYPE;
        goto exit;
    }
    if (alg == LK_ALG_ES256) {
        /* CKM_ECDSA signs the digest as given: the hash is ours. */
        memcpy(data, digest, LK_SHA256_BYTES);
        data_len = LK_SHA256_BYTES;
        want = LK_ES256_SIG_BYTES;
    } else {
        mech.mechanism = CKM_RSA_PKCS;
        memcpy(data, p11__sha256_digest_info, sizeof p11__sha256_digest_info);
        memcpy(data + sizeof p11__sha256_digest_info, digest, LK_SHA256_BYTES);
        data_len = sizeof data;
        want = mod_bytes;
    }
    if (sig_size < want) {
        err = p11__fail(p11, LK_ERR_BUFFER, "signature buffer too small");
        goto exit;
    }
    rv = p11->fl->C_SignInit(p11->session, &mech, h);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_SignInit", rv, LK_ERR_SIGN);
        goto exit;
    }
    /* out holds the largest signature (RSA-4096), so this single call
     * cannot hit CKR_BUFFER_TOO_SMALL, which would leave the operation
     * active. A key needing CKA_ALWAYS_AUTHENTICATE fails here with
     * CKR_USER_NOT_LOGGED_IN (LK_ERR_KEY_LOCKED): the PIN is not kept. */
    rv = p11->fl->C_Sign(p11->session, data, data_len, out, &out_len);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_Sign", rv, LK_ERR_SIGN);
        goto exit;
    }
    err = LK_ERR_SIGN;
    if (alg == LK_ALG_ES256) {
        if (out_len == LK_ES256_SIG_BYTES)
            memcpy(sig, out, LK_ES256_SIG_BYTES);
        /* Some tokens return DER against the standard: canonical DER only. */
        else if (out_len > sizeof out || lk_ecdsa_der_to_raw(out, out_len, sig) != LK_OK) {
            p11__fail(p11, err, "C_Sign: ECDSA signature neither r||s nor DER");
            goto exit;
        }
    } else {
        if (out_len != mod_bytes) {
            p11__fail(p11, err, "C_Sign: RSA signature not of the modulus length");
            goto exit;
        }
        memcpy(sig, out, out_len);
    }
    *sig_len = want;
    err = LK_OK;
exit:
    lk_wipe(out, sizeof out);
    lk_wipe(data, sizeof data);
    p11__uri_wipe(&u);
    return p11__out(err, sig, sig_size, sig_len);
}

/* LK_ERR_KEY_EXISTS when a private or public key already carries the
 * label or the id u asks for. */
static lk_err p11__check_free(lk_pkcs11 *p11, const p11_uri *u)
{
    static const CK_OBJECT_CLASS classes[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
    CK_OBJECT_HANDLE h;
    CK_ULONG count;
    unsigned i;
    lk_err err;

    for (i = 0; i < 2; i++) {
        if (u->have & P11_HAVE_OBJECT) {
            err = p11__find(p11, classes[i], u->object, NULL, 0, &h, &count);
            if (err != LK_OK)
                return err;
            if (count > 0)
                return p11__fail(p11, LK_ERR_KEY_EXISTS, "a key with this object= label exists");
        }
        if (u->have & P11_HAVE_ID) {
            err = p11__find(p11, classes[i], NULL, u->id, u->id_len, &h, &count);
            if (err != LK_OK)
                return err;
            if (count > 0)
                return p11__fail(p11, LK_ERR_KEY_EXISTS, "a key with this id= exists");
        }
    }
    return LK_OK;
}

/* A CK_BBOOL attribute: 1 (true), 0 (false), or -1 when the token does not
 * say (attribute unknown, or reported as sensitive), so that one missing
 * answer cannot hide another. */
static int p11__attr_bool(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = { type, &v, sizeof v };
    CK_RV rv = p11->fl->C_GetAttributeValue(p11->session, h, &a, 1);

    if (rv != CKR_OK || a.ulValueLen != sizeof v)
        return -1;
    return v != CK_FALSE;
}

/*
 * Fail closed on a token that ignored the template: a private key that is
 * readable or extractable is not what latchkey promises. An attribute the
 * token does not report is accepted (cryptoauthlib, for one, answers
 * CKA_EXTRACTABLE with CKR_ATTRIBUTE_SENSITIVE); one it reports wrongly is
 * not.
 */
static lk_err p11__check_private(lk_pkcs11 *p11, CK_OBJECT_HANDLE h)
{
    if (p11__attr_bool(p11, h, CKA_SENSITIVE) == 0 ||
        p11__attr_bool(p11, h, CKA_EXTRACTABLE) == 1)
        return p11__fail(p11, LK_ERR_DEVICE,
                         "the token made the private key readable or extractable");
    return LK_OK;
}

/* see lk_se.h */
static lk_err p11__generate(void *ctx, const char *key, lk_alg alg, unsigned bits,
                            uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    lk_pkcs11 *p11 = ctx;
    p11_uri u;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG modulus_bits = 0;
    CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    /* At most 7 entries each: 3 (5 private) fixed, label, id, and 1 or 2
     * algorithm parameters. */
    CK_ATTRIBUTE pubt[8], privt[8];
    CK_ULONG npub = 0, npriv = 0;
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
    lk_alg got = LK_ALG_NONE;
    size_t need;
    int generated = 0;
    lk_err err = LK_ERR_ARG;
    CK_RV rv;

    memset(&u, 0, sizeof u);
    if (pub_len != NULL)
        *pub_len = 0;
    if (p11 == NULL || key == NULL || pub == NULL || pub_len == NULL)
        goto exit;
    if (alg == LK_ALG_ES256) {
        need = LK_P256_SPKI_BYTES;
    } else if (alg == LK_ALG_RS256) {
        if (bits == 0)
            bits = LK_RSA_DEFAULT_BITS;
        if (bits < LK_RSA_MIN_BITS) {
            err = p11__fail(p11, LK_ERR_KEY_WEAK, "RSA keys must have at least 2048 bits");
            goto exit;
        }
        if (bits > LK_RSA_MAX_BITS) {
            err = p11__fail(p11, LK_ERR_ARG, "RSA keys may have at most 4096 bits");
            goto exit;
        }
        modulus_bits = bits;
        /* SEQUENCE, AlgorithmIdentifier, BIT STRING, RSAPublicKey with a
         * 3-byte exponent: 38 bytes around the modulus. */
        need = 38 + (bits + 7) / 8;
    } else {
        goto exit;
    }
    /* Check before generating: a key made but not reported is useless. */
    if (pub_size < need) {
        err = p11__fail(p11, LK_ERR_BUFFER, "public key buffer too small");
        goto exit;
    }
    err = p11__key_uri(p11, key, &u);
    if (err == LK_OK)
        err = p11__need_login(p11);
    if (err == LK_OK)
        err = p11__check_free(p11, &u);
    if (err != LK_OK)
        goto exit;

#define P11__SET(t, n, typ, ptr, len) \
    do { (t)[n].type = (typ); (t)[n].pValue = (void *)(ptr); (t)[n].ulValueLen = (CK_ULONG)(len); (n)++; } while (0)
    P11__SET(pubt, npub, CKA_TOKEN, &yes, sizeof yes);
    P11__SET(pubt, npub, CKA_PRIVATE, &no, sizeof no);
    P11__SET(pubt, npub, CKA_VERIFY, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_TOKEN, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_PRIVATE, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_SENSITIVE, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_EXTRACTABLE, &no, sizeof no);
    P11__SET(privt, npriv, CKA_SIGN, &yes, sizeof yes);
    if (u.have & P11_HAVE_OBJECT) {
        P11__SET(pubt, npub, CKA_LABEL, u.object, strlen(u.object));
        P11__SET(privt, npriv, CKA_LABEL, u.object, strlen(u.object));
    }
    /* Without id= the key gets no CKA_ID: latchkey finds it by label, and
     * setting one afterwards (e.g. from a hash of the public key) needs
     * C_SetAttributeValue, which some tokens lack, and would make
     * generation non-atomic. */
    if (u.have & P11_HAVE_ID) {
        P11__SET(pubt, npub, CKA_ID, u.id, u.id_len);
        P11__SET(privt, npriv, CKA_ID, u.id, u.id_len);
    }
    if (alg == LK_ALG_ES256) {
        P11__SET(pubt, npub, CKA_EC_PARAMS, p11__p256_oid, sizeof p11__p256_oid);
    } else {
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        P11__SET(pubt, npub, CKA_MODULUS_BITS, &modulus_bits, sizeof modulus_bits);
        P11__SET(pubt, npub, CKA_PUBLIC_EXPONENT, p11__rsa_f4, sizeof p11__rsa_f4);
    }
#undef P11__SET

    rv = p11->fl->C_GenerateKeyPair(p11->session, &mech, pubt, npub, privt, npriv,
                                    &hpub, &hpriv);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_GenerateKeyPair", rv, LK_ERR_DEVICE);
        goto exit;
    }
    generated = 1;
    err = p11__check_private(p11, hpriv);
    if (err == LK_OK)
        err = p11__export(p11, hpub, &got, pub, pub_size, pub_len);
    if (err == LK_OK && got != alg)
        err = p11__fail(p11, LK_ERR_DEVICE, "the token generated a key of another type");
exit:
    /* Generation is all or nothing: a key pair we cannot vouch for or
     * report is removed again. */
    if (err != LK_OK && generated) {
        (void)p11->fl->C_DestroyObject(p11->session, hpriv);
        (void)p11->fl->C_DestroyObject(p11->session, hpub);
    }
    p11__uri_wipe(&u);
    return p11__out(err, pub, pub_size, pub_len);
}

/* see lk_se.h */
static lk_err p11__random(void *ctx, uint8_t *out, size_t len)
{
    lk_pkcs11 *p11 = ctx;
    size_t done = 0;
    CK_RV rv;

    if (p11 == NULL || (out == NULL && len > 0))
        return LK_ERR_ARG;
    /* Small requests: some tokens limit how much one call returns. */
    while (done < len) {
        size_t n = len - done < 256 ? len - done : 256;
        rv = p11->fl->C_GenerateRandom(p11->session, out + done, (CK_ULONG)n);
        if (rv != CKR_OK) {
            lk_wipe(out, len);
            return p11__rv(p11, "C_GenerateRandom", rv, LK_ERR_RNG);
        }
        done += n;
    }
    return LK_OK;
}

/* No .sha256: the core's; a token round trip buys nothing. */
static const lk_se_ops p11__ops = {
    .name = "pkcs11",
    .generate = p11__generate,
    .public_key = p11__public_key,
    .sign_digest = p11__sign_digest,
    .random = p11__random,
};

/* see lk_pkcs11.h */
lk_se lk_pkcs11_se(lk_pkcs11 *p11)
{
    lk_se se;
    se.ops = p11 != NULL ? &p11__ops : NULL;
    se.ctx = p11;
    return se;
}
