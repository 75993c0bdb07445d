/*
 * Secure-element dispatchers: see lk_se.h. They are the one place that
 * holds every backend to the contract, so a faulty or hostile backend cannot
 * hand the token builder a signature that could not have come from a key.
 */
#include "latchkey/lk_se.h"
#include "latchkey/lk_util.h"

/* DER SubjectPublicKeyInfo header for id-ecPublicKey / prime256v1, followed
 * by the 65-byte uncompressed point in a BIT STRING. */
static const uint8_t p256_spki_prefix[26] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};

/* The order n of the P-256 group, big-endian. */
static const uint8_t p256_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

const char *lk_alg_name(lk_alg alg)
{
    switch (alg) {
    case LK_ALG_ES256: return "ES256";
    case LK_ALG_RS256: return "RS256";
    default: return "none";
    }
}

lk_alg lk_alg_from_name(const char *name, size_t len)
{
    static const char es[] = "ES256", rs[] = "RS256";
    size_t i;
    int is_es = 1, is_rs = 1;

    if (name == 0 || len != 5)
        return LK_ALG_NONE;
    for (i = 0; i < 5; i++) {
        is_es &= name[i] == es[i];
        is_rs &= name[i] == rs[i];
    }
    return is_es ? LK_ALG_ES256 : is_rs ? LK_ALG_RS256 : LK_ALG_NONE;
}

static int key_ok(const char *key)
{
    size_t n;
    if (key == 0)
        return 0;
    n = lk_strnlen(key, LK_KEY_REF_MAX + 1u);
    return n > 0 && n <= LK_KEY_REF_MAX;
}

/* 1 when the 32-byte big-endian x satisfies 1 <= x <= n-1. */
static int scalar_in_range(const uint8_t x[32])
{
    unsigned i, nonzero = 0;
    int lt = 0, decided = 0;
    for (i = 0; i < 32; i++) {
        nonzero |= x[i];
        if (!decided && x[i] != p256_n[i]) {
            lt = x[i] < p256_n[i];
            decided = 1;
        }
    }
    return nonzero != 0 && lt;
}

int lk_p256_sig_in_range(const uint8_t sig[LK_ES256_SIG_BYTES])
{
    return sig != 0 && scalar_in_range(sig) && scalar_in_range(sig + 32);
}

static void fail_out(uint8_t *out, size_t size, size_t *len)
{
    if (out != 0 && size > 0)
        lk_wipe(out, size);
    if (len != 0)
        *len = 0;
}

/* The start of every dispatcher: LK_ERR_ARG when the arguments are not
 * args_ok, LK_ERR_UNSUPPORTED when the backend lacks the operation, with the
 * output wiped and its length 0 (len may be NULL); else LK_OK. */
static lk_err begin(int args_ok, int has_op, uint8_t *out, size_t size, size_t *len)
{
    if (len != 0)
        *len = 0;
    if (args_ok && has_op)
        return LK_OK;
    fail_out(out, size, len);
    return args_ok ? LK_ERR_UNSUPPORTED : LK_ERR_ARG;
}

lk_err lk_se_generate(const lk_se *se, const char *key, lk_alg alg,
                      unsigned bits, uint8_t *pub, size_t pub_size,
                      size_t *pub_len)
{
    size_t n = 0;
    int ok = se != 0 && se->ops != 0 && key_ok(key) && pub != 0 && pub_len != 0 &&
             pub_size != 0 && (alg == LK_ALG_ES256 || alg == LK_ALG_RS256);
    lk_err err = begin(ok, ok && se->ops->generate != 0, pub, pub_size, pub_len);

    if (err != LK_OK)
        return err;
    err = se->ops->generate(se->ctx, key, alg, bits, pub, pub_size, &n);
    if (err == LK_OK && (n == 0 || n > pub_size))
        err = LK_ERR_DEVICE;
    if (err != LK_OK) {
        fail_out(pub, pub_size, pub_len);
        return err;
    }
    *pub_len = n;
    return LK_OK;
}

lk_err lk_se_public_key(const lk_se *se, const char *key, lk_alg *alg,
                        uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    lk_alg a = LK_ALG_NONE;
    size_t n = 0;
    int ok = se != 0 && se->ops != 0 && key_ok(key) && alg != 0 && pub != 0 && pub_len != 0 &&
             pub_size != 0;
    lk_err err = begin(ok, ok && se->ops->public_key != 0, pub, pub_size, pub_len);

    if (alg != 0)
        *alg = LK_ALG_NONE;
    if (err != LK_OK)
        return err;
    err = se->ops->public_key(se->ctx, key, &a, pub, pub_size, &n);
    if (err == LK_OK && (n == 0 || n > pub_size || (a != LK_ALG_ES256 && a != LK_ALG_RS256)))
        err = LK_ERR_DEVICE;
    if (err != LK_OK) {
        fail_out(pub, pub_size, pub_len);
        return err;
    }
    *alg = a;
    *pub_len = n;
    return LK_OK;
}

lk_err lk_se_sign_digest(const lk_se *se, const char *key, lk_alg alg,
                         const uint8_t digest[LK_SHA256_BYTES],
                         uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    size_t n = 0, i;
    int ok = se != 0 && se->ops != 0 && key_ok(key) && digest != 0 && sig != 0 && sig_len != 0 &&
             (alg == LK_ALG_ES256 || alg == LK_ALG_RS256);
    lk_err err = begin(ok, ok && se->ops->sign_digest != 0, sig, sig_size, sig_len);

    if (err != LK_OK)
        return err;
    if (sig_size < (alg == LK_ALG_ES256 ? LK_ES256_SIG_BYTES : LK_RSA_MIN_BITS / 8u)) {
        fail_out(sig, sig_size, sig_len);
        return LK_ERR_BUFFER;
    }
    err = se->ops->sign_digest(se->ctx, key, alg, digest, sig, sig_size, &n);
    if (err == LK_OK) {
        if (alg == LK_ALG_ES256) {
            if (n != LK_ES256_SIG_BYTES || !scalar_in_range(sig) ||
                !scalar_in_range(sig + 32))
                err = LK_ERR_SIGN;
        } else {
            unsigned nz = 0;
            if (n < LK_RSA_MIN_BITS / 8u || n > LK_SIG_MAX_BYTES || n > sig_size)
                err = LK_ERR_SIGN;
            else {
                for (i = 0; i < n; i++)
                    nz |= sig[i];
                if (nz == 0)
                    err = LK_ERR_SIGN;
            }
        }
    }
    if (err != LK_OK) {
        fail_out(sig, sig_size, sig_len);
        return err;
    }
    *sig_len = n;
    return LK_OK;
}

lk_err lk_se_random(const lk_se *se, uint8_t *out, size_t len)
{
    int ok = se != 0 && se->ops != 0 && out != 0 && len != 0;
    lk_err err = begin(ok, ok && se->ops->random != 0, out, len, 0);

    if (err != LK_OK)
        return err;
    err = se->ops->random(se->ctx, out, len);
    if (err != LK_OK)
        lk_wipe(out, len);
    return err;
}

lk_err lk_se_sha256(const lk_se *se, const uint8_t *data, size_t len,
                    uint8_t out[LK_SHA256_BYTES])
{
    lk_err err;
    if (se == 0 || se->ops == 0 || out == 0 || (data == 0 && len != 0)) {
        fail_out(out, LK_SHA256_BYTES, 0);
        return LK_ERR_ARG;
    }
    if (se->ops->sha256 == 0) {
        lk_sha256(data, len, out);
        return LK_OK;
    }
    err = se->ops->sha256(se->ctx, data, len, out);
    if (err != LK_OK)
        lk_wipe(out, LK_SHA256_BYTES);
    return err;
}

lk_err lk_p256_spki_from_point(const uint8_t point[LK_P256_POINT_BYTES],
                               uint8_t *out, size_t out_size, size_t *out_len)
{
    size_t i;
    if (out_len != 0)
        *out_len = 0;
    if (point == 0 || out == 0 || out_len == 0)
        return LK_ERR_ARG;
    if (point[0] != 0x04)
        return LK_ERR_ARG;
    if (out_size < LK_P256_SPKI_BYTES) {
        fail_out(out, out_size, out_len);
        return LK_ERR_BUFFER;
    }
    for (i = 0; i < sizeof p256_spki_prefix; i++)
        out[i] = p256_spki_prefix[i];
    for (i = 0; i < LK_P256_POINT_BYTES; i++)
        out[sizeof p256_spki_prefix + i] = point[i];
    *out_len = LK_P256_SPKI_BYTES;
    return LK_OK;
}

lk_err lk_p256_point_from_spki(const uint8_t *spki, size_t spki_len,
                               uint8_t point[LK_P256_POINT_BYTES])
{
    size_t i;
    unsigned d = 0;
    if (spki == 0 || point == 0)
        return LK_ERR_ARG;
    if (spki_len != LK_P256_SPKI_BYTES)
        return LK_ERR_ENCODING;
    for (i = 0; i < sizeof p256_spki_prefix; i++)
        d |= (unsigned)(spki[i] ^ p256_spki_prefix[i]);
    if (d != 0 || spki[sizeof p256_spki_prefix] != 0x04)
        return LK_ERR_ENCODING;
    for (i = 0; i < LK_P256_POINT_BYTES; i++)
        point[i] = spki[sizeof p256_spki_prefix + i];
    return LK_OK;
}

/* Parse one DER INTEGER at der[*at..end) into a 32-byte big-endian field. */
static int der_int32(const uint8_t *der, size_t end, size_t *at, uint8_t out[32])
{
    size_t i = *at, len, k;
    if (end - i < 2 || der[i] != 0x02)
        return 0;
    len = der[i + 1];
    i += 2;
    if (len == 0 || len > 33 || len > end - i)
        return 0;
    if (der[i] & 0x80)
        return 0;                                  /* negative */
    if (len > 1 && der[i] == 0 && !(der[i + 1] & 0x80))
        return 0;                                  /* not minimal */
    if (len == 33) {
        if (der[i] != 0)
            return 0;                              /* more than 256 bits */
        i++;
        len--;
    }
    for (k = 0; k < 32 - len; k++)
        out[k] = 0;
    for (k = 0; k < len; k++)
        out[32 - len + k] = der[i + k];
    *at = i + len;
    return 1;
}

lk_err lk_ecdsa_der_to_raw(const uint8_t *der, size_t der_len,
                           uint8_t raw[LK_ES256_SIG_BYTES])
{
    size_t at = 2;
    if (raw == 0)
        return LK_ERR_ARG;
    if (der == 0 || der_len < 8 || der_len > 72 || der[0] != 0x30 ||
        der[1] != der_len - 2 || !der_int32(der, der_len, &at, raw) ||
        !der_int32(der, der_len, &at, raw + 32) || at != der_len) {
        lk_wipe(raw, LK_ES256_SIG_BYTES);
        return LK_ERR_ENCODING;
    }
    return LK_OK;
}
