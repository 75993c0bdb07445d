/*
 * EVP_PKEY over lk_se_sign_digest (se_pkey.h).
 *
 * Why the deprecated EC_KEY_METHOD / RSA_METHOD API: Debian 12 ships no
 * pkcs11-provider, and an OpenSSL 3 provider of our own would be far more
 * code. Keys with a foreign method stay on OpenSSL's legacy path, where the
 * method's sign callback is called with the digest: OpenSSL still does all
 * the hashing, encoding and ASN.1; the token does the private-key step.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <string.h>

#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "se_pkey.h"

/* What a key's sign callback needs; freed with the EC_KEY / RSA. */
struct se_ref {
    const lk_se *se;
    char ref[LK_KEY_REF_MAX + 1];
};

static int ec_idx = -1, rsa_idx = -1;
static EC_KEY_METHOD *ec_meth;
static RSA_METHOD *rsa_meth;

static void ref_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    OPENSSL_clear_free(ptr, sizeof(struct se_ref));
}

/* The raw r||s from the token for a 32-byte digest, or -1. */
static int ec_token_sign(const unsigned char *dgst, int dlen, EC_KEY *eck, uint8_t raw[LK_ES256_SIG_BYTES])
{
    const struct se_ref *r = EC_KEY_get_ex_data(eck, ec_idx);
    size_t n = 0;
    if (r == NULL || dlen != LK_SHA256_BYTES)
        return -1;
    if (lk_se_sign_digest(r->se, r->ref, LK_ALG_ES256, dgst, raw, LK_ES256_SIG_BYTES, &n) != LK_OK ||
        n != LK_ES256_SIG_BYTES)
        return -1;
    return 0;
}

static ECDSA_SIG *ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv, const BIGNUM *rp,
                              EC_KEY *eck)
{
    uint8_t raw[LK_ES256_SIG_BYTES];
    ECDSA_SIG *sig;
    BIGNUM *r, *s;
    (void)kinv; (void)rp;
    if (ec_token_sign(dgst, dlen, eck, raw) != 0)
        return NULL;
    sig = ECDSA_SIG_new();
    r = BN_bin2bn(raw, 32, NULL);
    s = BN_bin2bn(raw + 32, 32, NULL);
    if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return NULL;
    }
    return sig;
}

static int ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *out, unsigned int *outlen,
                   const BIGNUM *kinv, const BIGNUM *rp, EC_KEY *eck)
{
    ECDSA_SIG *sig = ec_sign_sig(dgst, dlen, kinv, rp, eck);
    unsigned char *p = out;
    int n;
    (void)type;
    if (sig == NULL)
        return 0;
    n = i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    if (n <= 0)
        return 0;
    *outlen = (unsigned)n;
    return 1;
}

/* No k to precompute: the token draws its own. */
static int ec_sign_setup(EC_KEY *eck, BN_CTX *ctx, BIGNUM **kinv, BIGNUM **rp)
{
    (void)eck; (void)ctx; (void)kinv; (void)rp;
    return 1;
}

static int rsa_sign(int type, const unsigned char *m, unsigned int m_len, unsigned char *sigret,
                    unsigned int *siglen, const RSA *rsa)
{
    const struct se_ref *r = RSA_get_ex_data(rsa, rsa_idx);
    size_t n = 0;
    if (r == NULL || type != NID_sha256 || m_len != LK_SHA256_BYTES)
        return 0;
    /* OpenSSL sized sigret to RSA_size(rsa), which is what the token gives. */
    if (lk_se_sign_digest(r->se, r->ref, LK_ALG_RS256, m, sigret, (size_t)RSA_size(rsa), &n) != LK_OK)
        return 0;
    *siglen = (unsigned)n;
    return 1;
}

static int init_methods(void)
{
    if (ec_meth == NULL) {
        ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, ref_free);
        rsa_idx = RSA_get_ex_new_index(0, NULL, NULL, NULL, ref_free);
        ec_meth = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
        rsa_meth = RSA_meth_dup(RSA_get_default_method());
        if (ec_idx < 0 || rsa_idx < 0 || ec_meth == NULL || rsa_meth == NULL)
            return -1;
        EC_KEY_METHOD_set_sign(ec_meth, ec_sign, ec_sign_setup, ec_sign_sig);
        if (RSA_meth_set_sign(rsa_meth, rsa_sign) != 1 || RSA_meth_set1_name(rsa_meth, "latchkey-se") != 1)
            return -1;
        /* The private key is not in the RSA structure: OpenSSL must not look for it. */
        RSA_meth_set_flags(rsa_meth, RSA_meth_get_flags(rsa_meth) | RSA_FLAG_EXT_PKEY);
    }
    return 0;
}

EVP_PKEY *tool_se_pkey(const lk_se *se, const char *ref, lk_alg *alg_out, lk_err *err)
{
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    const unsigned char *p = pub;
    struct se_ref *r = NULL;
    EVP_PKEY *pk = NULL;
    lk_alg alg = LK_ALG_NONE;
    lk_err e;

    if (alg_out != NULL)
        *alg_out = LK_ALG_NONE;
    if (strlen(ref) > LK_KEY_REF_MAX) {
        *err = LK_ERR_ARG;
        return NULL;
    }
    e = lk_se_public_key(se, ref, &alg, pub, sizeof pub, &pub_len);
    if (e != LK_OK) {
        *err = e;
        return NULL;
    }
    *err = LK_ERR_CRYPTO;
    if (init_methods() != 0 || (r = OPENSSL_zalloc(sizeof *r)) == NULL) {
        *err = LK_ERR_NOMEM;
        return NULL;
    }
    r->se = se;
    strcpy(r->ref, ref);
    if (alg == LK_ALG_ES256) {
        EC_KEY *eck = d2i_EC_PUBKEY(NULL, &p, (long)pub_len);
        if (eck == NULL || EC_KEY_set_method(eck, ec_meth) != 1 || EC_KEY_set_ex_data(eck, ec_idx, r) != 1) {
            EC_KEY_free(eck);
            goto fail;
        }
        r = NULL; /* the EC_KEY owns it */
        if ((pk = EVP_PKEY_new()) == NULL || EVP_PKEY_assign_EC_KEY(pk, eck) != 1) {
            EC_KEY_free(eck);
            goto fail;
        }
    } else if (alg == LK_ALG_RS256) {
        RSA *rsa = d2i_RSA_PUBKEY(NULL, &p, (long)pub_len);
        if (rsa == NULL || RSA_set_method(rsa, rsa_meth) != 1 || RSA_set_ex_data(rsa, rsa_idx, r) != 1) {
            RSA_free(rsa);
            goto fail;
        }
        r = NULL;
        if ((pk = EVP_PKEY_new()) == NULL || EVP_PKEY_assign_RSA(pk, rsa) != 1) {
            RSA_free(rsa);
            goto fail;
        }
    } else {
        *err = LK_ERR_KEY_TYPE;
        goto fail;
    }
    if (alg_out != NULL)
        *alg_out = alg;
    *err = LK_OK;
    return pk;
fail:
    OPENSSL_clear_free(r, r ? sizeof *r : 0);
    EVP_PKEY_free(pk);
    return NULL;
}

lk_alg tool_pkey_alg(const EVP_PKEY *pkey)
{
    char group[32];
    size_t n = 0;
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC)
        return EVP_PKEY_get_group_name(pkey, group, sizeof group, &n) == 1 &&
                       strcmp(group, "prime256v1") == 0
                   ? LK_ALG_ES256
                   : LK_ALG_NONE;
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA)
        return EVP_PKEY_get_bits(pkey) >= (int)LK_RSA_MIN_BITS && EVP_PKEY_get_bits(pkey) <= (int)LK_RSA_MAX_BITS
                   ? LK_ALG_RS256
                   : LK_ALG_NONE;
    return LK_ALG_NONE;
}

int tool_jws_sign(EVP_PKEY *pkey, const unsigned char *data, size_t len, unsigned char *sig, size_t *sig_len)
{
    lk_alg alg = tool_pkey_alg(pkey);
    unsigned char der[LK_SIG_MAX_BYTES + 16];
    size_t n = sizeof der;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md != NULL && alg != LK_ALG_NONE &&
             EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestSign(md, der, &n, data, len) == 1;
    EVP_MD_CTX_free(md);
    *sig_len = 0;
    if (!ok)
        return -1;
    if (alg == LK_ALG_ES256) {
        if (lk_ecdsa_der_to_raw(der, n, sig) != LK_OK)
            return -1;
        *sig_len = LK_ES256_SIG_BYTES;
    } else {
        if (n > LK_SIG_MAX_BYTES)
            return -1;
        memcpy(sig, der, n);
        *sig_len = n;
    }
    return 0;
}
