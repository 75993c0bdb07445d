/*
 * lk_se.h — the secure-element interface.
 *
 * A secure element (an ATECC608A, a PKCS#11 token, a TPM, or the software key
 * store used for development) is reached through a small table of operations
 * chosen at run time: an lk_se value is that table plus the backend's own
 * context. There is no global device: two secure elements can be open at once
 * and each call names the one it means.
 *
 * Keys are named by a NUL-terminated key reference whose meaning belongs to
 * the backend (a slot number, a name in a store, an RFC 7512 pkcs11: URI
 * path). Private keys never cross this interface: there is no operation
 * that reads one.
 *
 * Always call the lk_se_* functions below, not the table directly: they check
 * arguments, enforce the output contract (sizes, an ES256 signature of exactly
 * 64 bytes with r and s non-zero) whatever the backend does, and wipe outputs
 * when anything fails.
 *
 * Public keys cross the interface as DER SubjectPublicKeyInfo (the body of a
 * "-----BEGIN PUBLIC KEY-----" PEM), for both algorithms. A backend that only
 * has the raw P-256 point (as the ATECC608A gives it) wraps it with
 * lk_p256_spki_from_point().
 *
 * Freestanding.
 */
#ifndef LK_SE_H
#define LK_SE_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_sha256.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lk_alg {
    LK_ALG_NONE = 0,   /* never valid for signing; "unknown" where reported */
    LK_ALG_ES256 = 1,  /* ECDSA P-256 with SHA-256, signature raw r||s */
    LK_ALG_RS256 = 2   /* RSASSA-PKCS1-v1_5 with SHA-256 */
} lk_alg;

#define LK_ES256_SIG_BYTES 64u
#define LK_P256_POINT_BYTES 65u  /* 0x04 || X || Y */
#define LK_P256_SPKI_BYTES 91u
#define LK_RSA_MIN_BITS 2048u
#define LK_RSA_MAX_BITS 4096u
#define LK_RSA_DEFAULT_BITS 2048u
#define LK_SIG_MAX_BYTES (LK_RSA_MAX_BITS / 8u)
#define LK_PUBKEY_DER_MAX 600u   /* SPKI of RSA-4096 with a 4-byte exponent */
#define LK_KEY_REF_MAX 2048u     /* longest key reference accepted */

/*
 * Copy the key reference ref into out with every secret in it replaced by
 * "***", for messages and logs: the one function that makes a key reference
 * (or anything a user typed where one may stand) fit to be shown.
 *
 * - A pkcs11: URI (the scheme in any case) is split as RFC 7512 says: path
 *   attributes at ';' up to the first '?', query attributes at '&' after it.
 *   The value of an attribute is kept only when its name is one of RFC 7512's
 *   public attributes: token, manufacturer, serial, model, library-manufacturer,
 *   library-description, library-version, slot-manufacturer, slot-description,
 *   slot-id, object, id, type, module-path, module-name and pin-source (a file
 *   name, not the PIN). Every other value -- pin-value, a vendor x- attribute,
 *   an unknown or misspelt name, a name in another case -- becomes "***", and
 *   so does a whole segment without '='. Fail closed: what is not known to be
 *   public is hidden.
 * - Any other string that holds a '=' (a URI with a typo in its scheme, an
 *   option with its value) is treated the same way from its first byte.
 * - Any other string (a software key store name) is copied unchanged.
 *
 * Writes at most out_size bytes, always NUL-terminated when out_size > 0 (a
 * result cut short ends within what was written; a cut never reveals a
 * secret, which is replaced before it is copied). Returns the length of the
 * whole redacted text, as snprintf does: a result >= out_size means it was
 * cut. ref NULL is treated as "". The input is read up to its NUL, with no
 * length limit. Freestanding; not constant-time (only the lengths of the
 * hidden values are not shown).
 */
size_t lk_key_ref_redact(const char *ref, char *out, size_t out_size);

/* "ES256", "RS256", or "none". */
const char *lk_alg_name(lk_alg alg);
/* LK_ALG_ES256 / LK_ALG_RS256 for exactly those names (case-sensitive),
 * LK_ALG_NONE for anything else. name is len bytes, not NUL-terminated. */
lk_alg lk_alg_from_name(const char *name, size_t len);

/*
 * The table a backend fills in. Every function receives the backend's ctx.
 * Mandatory: sign_digest and public_key. Optional (NULL = LK_ERR_UNSUPPORTED):
 * the rest. Backends may assume the dispatchers below have checked pointers
 * and sizes; they must not assume anything about the key reference's content.
 */
typedef struct lk_se_ops {
    const char *name; /* "soft", "pkcs11", "atecc608" ... */

    /* Create a new key pair under key; LK_ERR_KEY_EXISTS if occupied. bits is
     * the RSA modulus size (ignored for ES256). Writes the public key. */
    lk_err (*generate)(void *ctx, const char *key, lk_alg alg, unsigned bits,
                       uint8_t *pub, size_t pub_size, size_t *pub_len);

    /* The public key of key, and its algorithm. */
    lk_err (*public_key)(void *ctx, const char *key, lk_alg *alg,
                         uint8_t *pub, size_t pub_size, size_t *pub_len);

    /* Sign a SHA-256 digest. ES256: raw r||s, 64 bytes. RS256: the PKCS#1
     * v1.5 signature over DigestInfo(SHA-256, digest), modulus-length bytes.
     * LK_ERR_KEY_TYPE if key is not of algorithm alg. */
    lk_err (*sign_digest)(void *ctx, const char *key, lk_alg alg,
                          const uint8_t digest[LK_SHA256_BYTES],
                          uint8_t *sig, size_t sig_size, size_t *sig_len);

    /* len bytes from the element's random generator. */
    lk_err (*random)(void *ctx, uint8_t *out, size_t len);

    /* SHA-256 computed by the element (a hash engine); NULL = the core's. */
    lk_err (*sha256)(void *ctx, const uint8_t *data, size_t len,
                     uint8_t out[LK_SHA256_BYTES]);
} lk_se_ops;

typedef struct lk_se {
    const lk_se_ops *ops;
    void *ctx;
} lk_se;

/*
 * Dispatchers. Each returns LK_ERR_ARG for a NULL se/ops/required pointer or
 * an empty or over-long key reference, LK_ERR_UNSUPPORTED when the backend
 * lacks the operation, and otherwise the backend's result after checking it.
 * On any failure the output buffer is wiped and the output length is 0.
 */
lk_err lk_se_generate(const lk_se *se, const char *key, lk_alg alg,
                      unsigned bits, uint8_t *pub, size_t pub_size,
                      size_t *pub_len);
lk_err lk_se_public_key(const lk_se *se, const char *key, lk_alg *alg,
                        uint8_t *pub, size_t pub_size, size_t *pub_len);
/* Also rejects (LK_ERR_SIGN) an ES256 signature that is not exactly 64
 * bytes or has r = 0 or s = 0, and an RS256 signature shorter than 256 bytes:
 * a signature that cannot have come from the key never leaves this call. */
lk_err lk_se_sign_digest(const lk_se *se, const char *key, lk_alg alg,
                         const uint8_t digest[LK_SHA256_BYTES],
                         uint8_t *sig, size_t sig_size, size_t *sig_len);
lk_err lk_se_random(const lk_se *se, uint8_t *out, size_t len);
/* The element's hash engine if it has one, else the core's SHA-256. */
lk_err lk_se_sha256(const lk_se *se, const uint8_t *data, size_t len,
                    uint8_t out[LK_SHA256_BYTES]);

/*
 * Wrap an uncompressed P-256 point (0x04||X||Y) as DER SubjectPublicKeyInfo.
 * out_size must be at least LK_P256_SPKI_BYTES. Does not check that the
 * point is on the curve (the core has no curve arithmetic); the service side
 * does when it parses the key.
 */
lk_err lk_p256_spki_from_point(const uint8_t point[LK_P256_POINT_BYTES],
                               uint8_t *out, size_t out_size, size_t *out_len);

/* The reverse: the point of a P-256 SPKI produced by the function above
 * (exact byte layout, nothing else accepted). */
lk_err lk_p256_point_from_spki(const uint8_t *spki, size_t spki_len,
                               uint8_t point[LK_P256_POINT_BYTES]);

/* 1 when the ES256 signature r||s has 1 <= r <= n-1 and 1 <= s <= n-1 for
 * the P-256 group order n, else 0. Signatures are public: not constant-time. */
int lk_p256_sig_in_range(const uint8_t sig[LK_ES256_SIG_BYTES]);

/*
 * Convert a DER ECDSA-Sig-Value (SEQUENCE { INTEGER r, INTEGER s }) for
 * P-256, as OpenSSL and some tokens produce it, into the 64-byte r||s that
 * JWS uses. Only canonical DER is accepted: short-form lengths, minimal
 * positive integers of at most 32 significant bytes, nothing after the
 * sequence. Returns LK_ERR_ENCODING otherwise (and wipes raw).
 */
lk_err lk_ecdsa_der_to_raw(const uint8_t *der, size_t der_len,
                           uint8_t raw[LK_ES256_SIG_BYTES]);

#ifdef __cplusplus
}
#endif
#endif /* LK_SE_H */
