/*
 * lk_verify.h — does this token come from this device's key, and is it
 * still good? The service side's one security decision.
 *
 * The rules (docs/protocol.md, "Verifying tokens", and
 * docs/iotcore.md §Tokens, §Verifier attacks), in the order they are applied:
 *
 *  1. The token's length is capped before anything else is looked at.
 *  2. Exactly three non-empty segments separated by two '.', each strict
 *     base64url; '=' padding that completes a segment's last quantum is
 *     accepted only with LK_VERIFY_ALLOW_PADDING (on by default: Google's
 *     Embedded C SDK pads, and IoT Core accepted it). Nothing else
 *     non-canonical is: no '+', '/', whitespace or non-zero unused bits.
 *  3. Header and claims are JSON objects (UTF-8, parsed once by jansson with
 *     duplicate names rejected, nesting bounded). Header "alg" must be
 *     exactly "ES256" or "RS256"; "crit" is refused, and so are "jwk",
 *     "jku", "x5u" and "x5c" (keys come only from the registry); "kid" and
 *     "typ" are ignored. With LK_VERIFY_ALLOW_X5C (registries that allow
 *     just-in-time registration) "x5c" is let through and ignored: only
 *     lk_verify_jit_token reads it, for a device the registry does not know.
 *  4. The algorithm is decided by the stored credential, never by the token:
 *     only unexpired credentials whose algorithm equals the header's alg are
 *     tried. HMAC is never implemented.
 *  5. Claims: "iat" and "exp" JSON integers in [0, 2^53]; "aud" a single
 *     string, equal to the project id by length and bytes (an array, or a
 *     string with an embedded NUL that matches up to it, is refused); "nbf"
 *     and other claims are ignored, as IoT Core did. (A number too large for
 *     64 bits anywhere in the JSON, e.g. 1e400, makes it malformed: the
 *     parser cannot represent it.)
 *  6. Time, with checked arithmetic: iat <= now + skew; exp > now - skew;
 *     iat < exp <= iat + max_lifetime + skew.
 *  7. Signature over the exact received bytes of "header.payload": ES256
 *     decodes to exactly 64 bytes with 1 <= r, s <= n-1 (checked before any
 *     curve arithmetic; high-S is valid); RS256 to exactly the modulus
 *     length, RSASSA-PKCS1-v1_5 with SHA-256 through OpenSSL. Any credential
 *     that verifies wins.
 *
 * The rules are applied in this order and the first that fails is the one
 * reported; the signature, the only expensive step, comes last. None of the
 * earlier answers tells a caller anything it could not read from its own
 * token.
 *
 * Thread safety: an lk_verifier and the lk_cred objects it uses belong to one
 * thread at a time (the Mosquitto broker is single-threaded); use one
 * verifier per thread otherwise. Credentials are immutable after parsing but
 * carry a reusable OpenSSL verification context.
 */
#ifndef LK_VERIFY_H
#define LK_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_se.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- credentials: parsed once, reused for every verification ---- */

typedef enum lk_cred_format {
    LK_CRED_UNSPECIFIED = 0,
    LK_CRED_RSA_PEM = 1,        /* -----BEGIN PUBLIC KEY----- with an RSA key */
    LK_CRED_RSA_X509_PEM = 2,   /* -----BEGIN CERTIFICATE----- with an RSA key */
    LK_CRED_ES256_PEM = 3,      /* -----BEGIN PUBLIC KEY----- with a P-256 key */
    LK_CRED_ES256_X509_PEM = 4  /* -----BEGIN CERTIFICATE----- with a P-256 key */
} lk_cred_format;

#define LK_CRED_PEM_MAX 16384u  /* longest PEM text accepted */
/* An RSA public exponent has at most this many bits (OpenSSL's own bound,
 * OPENSSL_RSA_MAX_PUBEXP_BITS, which it applies only above 3072-bit moduli):
 * e <= 2^64 - 1. A verification costs a multiplication per bit of e. */
#define LK_CRED_RSA_E_MAX_BITS 64u

/* "RSA_PEM", "RSA_X509_PEM", "ES256_PEM", "ES256_X509_PEM" (IoT Core's
 * names), or "UNSPECIFIED". */
const char *lk_cred_format_name(lk_cred_format fmt);
/* The format of exactly one of those names (len bytes), else UNSPECIFIED. */
lk_cred_format lk_cred_format_from_name(const char *name, size_t len);

typedef struct lk_cred lk_cred;

/*
 * Parse pem[0..pem_len) as a credential of format fmt. LK_CRED_UNSPECIFIED
 * detects the format from the PEM label and the key type. expires is the
 * credential's expiration time (seconds since 1970; 0 = never): an expired
 * credential is never tried. Refuses (LK_ERR_CRED_INVALID) anything but
 * exactly one PEM object of the stated kind, a key of another type than the
 * format says, a curve other than P-256, RSA below 2048 or above 8192 bits
 * or with a public exponent that is even, 1, or over LK_CRED_RSA_E_MAX_BITS
 * bits (so odd 3 <= e <= 2^64 - 1), and input over LK_CRED_PEM_MAX
 * (LK_ERR_ARG); LK_ERR_NOMEM when OpenSSL ran out of memory decoding it.
 * A certificate is used only as a container for its public
 * key: its validity dates are not checked here (the registry checks
 * certificates when they are added). On failure *out is NULL.
 */
lk_err lk_cred_parse(lk_cred_format fmt, const char *pem, size_t pem_len,
                     int64_t expires, lk_cred **out);
void lk_cred_free(lk_cred *cred);
/* Free the decoded key (about 2.7 kB for P-256 in OpenSSL 3) and keep what
 * identifies it: fingerprint, format, algorithm, expiry and the key's DER.
 * The next verification with cred decodes the key again and keeps it until
 * the next release. For a holder of many credentials that rarely verifies
 * (a broker whose verified-token cache answers most connects). A released
 * credential must not be used by two threads at once. NULL: nothing. */
void lk_cred_release_key(lk_cred *cred);

lk_alg lk_cred_alg(const lk_cred *cred);
lk_cred_format lk_cred_get_format(const lk_cred *cred);
int64_t lk_cred_expires(const lk_cred *cred);
/* SHA-256 of the DER SubjectPublicKeyInfo: the key's identity. */
void lk_cred_fingerprint(const lk_cred *cred, uint8_t out[32]);

/* Check sig[0..sig_len) over msg[0..msg_len) with cred exactly as a token's
 * signature is checked (ES256: 64 bytes r||s, 1 <= r, s <= n-1; RS256:
 * PKCS#1 v1.5 with SHA-256, the modulus' length), for a JWS that is not a
 * device token (a factory manifest's signature file). LK_OK,
 * LK_ERR_TOKEN_SIGNATURE, LK_ERR_ARG (NULL), LK_ERR_NOMEM, LK_ERR_CRYPTO.
 * The key is decoded again if lk_cred_release_key freed it. */
lk_err lk_cred_verify_signature(lk_cred *cred, const uint8_t *msg, size_t msg_len,
                                const uint8_t *sig, size_t sig_len)
    __attribute__((warn_unused_result));

/* ---- policy ---- */

#define LK_VERIFY_SKEW 600           /* seconds, IoT Core's clock skew */
#define LK_VERIFY_MAX_SKEW 3600      /* the largest skew a policy may have */
#define LK_VERIFY_MAX_LIFETIME 86400 /* seconds, exp - iat */
#define LK_VERIFY_MAX_LEN 4096u      /* default token length cap (bytes) */
#define LK_VERIFY_MAX_LEN_LIMIT 65535u /* the MQTT password field's own limit */
#define LK_VERIFY_ALLOW_PADDING 1u
/* Let a header's "x5c" through (ignored by lk_verify_token: a known device
 * verifies only with its registered keys). Without it "x5c" is refused. */
#define LK_VERIFY_ALLOW_X5C 2u
/* The token length cap a broker uses for registries with JIT on: room for a
 * leaf and two intermediates in x5c. */
#define LK_VERIFY_JIT_MAX_LEN 16384u

typedef struct lk_verify_policy {
    const char *aud;      /* the project id the token must name */
    size_t aud_len;
    int64_t now;          /* the current time, injected */
    int64_t skew;         /* 0..3600 */
    int64_t max_lifetime; /* 1..LK_VERIFY_MAX_LIFETIME*7 */
    size_t max_len;       /* 1..LK_VERIFY_MAX_LEN_LIMIT */
    unsigned flags;       /* LK_VERIFY_ALLOW_PADDING, LK_VERIFY_ALLOW_X5C */
    uint64_t subject;     /* not a rule: who the caller verifies for (the broker: the device's
                             numId), so that the cache keeps each one's entries apart even when
                             devices share a credential set; 0 = the credential set alone */
} lk_verify_policy;

/* The IoT Core defaults: skew 600, lifetime 86400, cap 4096, padding allowed. */
void lk_verify_policy_init(lk_verify_policy *pol, const char *aud,
                           size_t aud_len, int64_t now);

/* ---- verification ---- */

typedef struct lk_token_info {
    lk_alg alg;
    int64_t iat;
    int64_t exp;
    int64_t valid_until;  /* exp + skew: when the connection must end */
    unsigned cred_index;  /* which credential verified the signature */
} lk_token_info;

typedef struct lk_verifier lk_verifier;

/* A verifier holds the hash context and scratch space for tokens up to
 * LK_VERIFY_MAX_LEN_LIMIT, so a verification allocates nothing of its own
 * (jansson and OpenSSL allocate internally). */
lk_err lk_verifier_new(lk_verifier **out);
void lk_verifier_free(lk_verifier *v);

/*
 * Verify token[0..len) against creds[0..ncreds) (ncreds <= 3 for IoT Core
 * devices, at most 16 here) under pol. Returns LK_OK and fills *info, or one
 * of: LK_ERR_TOKEN_TOO_LARGE, LK_ERR_TOKEN_MALFORMED, LK_ERR_TOKEN_HEADER,
 * LK_ERR_TOKEN_ALG, LK_ERR_NO_CREDENTIAL, LK_ERR_TOKEN_CLAIM,
 * LK_ERR_TOKEN_AUDIENCE, LK_ERR_TOKEN_FUTURE, LK_ERR_TOKEN_EXPIRED,
 * LK_ERR_TOKEN_LIFETIME, LK_ERR_TOKEN_SIGNATURE; LK_ERR_ARG for a NULL or
 * out-of-range argument; LK_ERR_NOMEM when jansson or OpenSSL ran out of
 * memory (the token was not judged: a server's failure, not the client's). On failure *info is zeroed. If why is not NULL it
 * receives a one-line detail for logs ("exp 1700000000 is 700 s before now
 * (skew 600)"); it never contains the token or any part of the signature.
 */
lk_err lk_verify_token(lk_verifier *v, const char *token, size_t len,
                       lk_cred *const *creds, size_t ncreds,
                       const lk_verify_policy *pol, lk_token_info *info,
                       char *why, size_t why_size)
    __attribute__((warn_unused_result));

/* ---- just-in-time registration: a token that carries its certificate ----
 *
 * A device that a registry does not know may, where the registry allows it,
 * present its certificate chain in the token's header (RFC 7515 §4.1.6):
 * "x5c" is an array of 1..LK_X5C_CERTS_MAX strings, each the strict standard
 * base64 (with padding, no white space) of one DER certificate, the leaf
 * (whose key signed the token) first, then intermediates, each the issuer
 * of the one before; together at most LK_X5C_DER_MAX bytes of DER. The
 * verifier checks only that the token is signed by the leaf's key under all
 * the rules above; whether the chain is trusted, and whom the leaf names, is
 * the registry's decision (lk_registry_jit_register). Nothing else in the
 * header is trusted ("jwk", "jku", "x5u", "crit" are still refused).
 */
#define LK_X5C_CERTS_MAX 3u        /* a leaf and up to two intermediates */
#define LK_X5C_DER_MAX 12288u      /* bytes of DER, all certificates together */
#define LK_X5C_PEM_MAX 20480u      /* room for LK_X5C_DER_MAX of DER as PEM */

typedef struct lk_x5c_certs {
    char leaf[LK_X5C_PEM_MAX];     /* the leaf as one PEM CERTIFICATE, NUL-terminated */
    size_t leaf_len;
    char chain[LK_X5C_PEM_MAX];    /* the intermediates, concatenated PEM, the leaf's issuer first; "" if none */
    size_t chain_len;
    unsigned nchain;
} lk_x5c_certs;

/*
 * Verify token[0..len), which must carry "x5c", with the key of its leaf
 * certificate: pol->flags must hold LK_VERIFY_ALLOW_X5C (else LK_ERR_ARG).
 * Rules 1-3 as lk_verify_token; then LK_ERR_TOKEN_HEADER when the header is
 * one of the two fixed ones or has no "x5c", or "x5c" is not an array of
 * 1..LK_X5C_CERTS_MAX strings, a string is not strict standard base64 of
 * exactly one DER certificate, or they hold more than LK_X5C_DER_MAX bytes;
 * LK_ERR_CRED_INVALID when the leaf's key is not one lk_cred_parse accepts
 * (P-256, RSA 2048..8192); then rules 4-7 with that key as the one
 * credential (never expired: certificate dates are the registry's check).
 * LK_OK fills *info (cred_index 0) and *certs (the caller's); on failure
 * both are zeroed. why as lk_verify_token. Nothing here says the
 * certificate is trusted.
 */
lk_err lk_verify_jit_token(lk_verifier *v, const char *token, size_t len,
                           const lk_verify_policy *pol, lk_token_info *info,
                           lk_x5c_certs *certs, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/*
 * Whether token[0..len) has an "x5c" header member, unverified: a cheap
 * test (one base64url decode and JSON parse of the header, no signature)
 * that lets a server spend its just-in-time rate budget only on tokens that
 * could register. 1 when the token passes rules 1-3's shape (at most max_len
 * bytes, 0 = LK_VERIFY_MAX_LEN, at most LK_VERIFY_MAX_LEN_LIMIT; three
 * segments; the header strict base64url, '=' padding only with
 * LK_VERIFY_ALLOW_PADDING in flags, of a JSON object without duplicate
 * members) and the header has "x5c", whatever its value; 0 otherwise,
 * also for a NULL token or when memory runs out. Nothing here says the
 * token or its chain is genuine: lk_verify_jit_token checks it all.
 */
int lk_jwt_has_x5c(const char *token, size_t len, size_t max_len, unsigned flags);

/* ---- the verified-token cache ---- */

/*
 * A bounded cache of tokens that verified, so that a device reconnecting
 * with the same still-valid token (flapping network, broker restart) costs a
 * hash lookup instead of a signature check. An entry is keyed by SHA-256 over
 * the whole token, the policy's audience and flags, and the credential set
 * (each credential's fingerprint and expiry) — so a changed credential set
 * simply misses. A hit is re-checked against the current time with the same
 * rules (never extending a token's life: exp, skew and the credential's own
 * expiry are applied again). Memory is fixed at creation.
 *
 * Per-device bound: the cache knows a device by the policy's subject, its
 * credential set and the audience (with subject 0, devices registered with
 * the same credential set are one device to it). All of one device's
 * entries go to one set of 16 ways, chosen by a hash of these with a seed
 * drawn at creation, and a device holds at most 2 entries there (a token and its
 * successor at refresh): a third evicts the device's own oldest, never
 * another device's. So a device that connects with ever new valid tokens
 * never holds more than 2 entries and cannot flush other devices' entries.
 */
typedef struct lk_vcache lk_vcache;

/* entries: capacity, rounded up to a power of two, 16..2^24 (else
 * LK_ERR_ARG). LK_ERR_NOMEM, LK_ERR_RNG (no random seed). On failure *out is
 * NULL. */
lk_err lk_vcache_new(size_t entries, lk_vcache **out);
void lk_vcache_free(lk_vcache *cache);
/* Drop every entry (e.g. when a registry reload changes many devices). */
void lk_vcache_clear(lk_vcache *cache);

typedef struct lk_vcache_stats {
    uint64_t hits, misses, inserts, evictions; /* evictions: of a full set's
                                                  oldest or a device's own */
    size_t capacity, used;
} lk_vcache_stats;
void lk_vcache_get_stats(const lk_vcache *cache, lk_vcache_stats *st);

/*
 * lk_verify_token through the cache: a hit skips parsing and the signature
 * check; a miss verifies fully and remembers a success. cache may be NULL
 * (then this is lk_verify_token). *hit (if not NULL) says which happened.
 */
lk_err lk_verify_token_cached(lk_verifier *v, lk_vcache *cache,
                              const char *token, size_t len,
                              lk_cred *const *creds, size_t ncreds,
                              const lk_verify_policy *pol, lk_token_info *info,
                              int *hit, char *why, size_t why_size)
    __attribute__((warn_unused_result));

/*
 * Keeping the cache across a restart, so that a fleet reconnecting at once
 * after a broker restart needs no signature check for tokens verified
 * before it. The file holds the cache's seed and, per entry, what a hit
 * needs: the SHA-256 key (token, policy and credential set), placement,
 * iat, exp, alg and credential index. Never a token: a key cannot be turned
 * back into one, and it only ever matches the exact token it was made from.
 *
 * A restored entry is no weaker than one kept in memory: the caller passes
 * the credentials as the registry has them at lookup, and the key covers
 * them, so a credential removed, replaced or expired while the service was
 * down simply misses (and a blocked or deleted device is the caller's
 * check, made before the cache). What the key cannot see — a change that
 * makes the caller empty its cache (lk_vcache_clear) — is the caller's to
 * detect: tag is stored with the snapshot and returned at load for that
 * (the broker stores its change-feed position and empties the cache when
 * the registry changed registry-wide since).
 *
 * Trust: whoever can write the file can make a token of their choosing
 * pass, as whoever can write the registry can. The file is written 0600;
 * a file of another user's, or that its group or others may write, is
 * refused at load.
 */

/* Write every entry to path: to "path.tmp" (O_EXCL | O_NOFOLLOW, 0600;
 * a stale one is removed first), then renamed over path. Not fsynced (a
 * torn or empty file after a power cut fails its checksum at load and the
 * cache starts empty). tag: the caller's, returned by lk_vcache_load.
 * LK_ERR_ARG (NULL), LK_ERR_IO (path.tmp could not be made or written:
 * errno is kept), LK_ERR_NOMEM. On failure path is unchanged. */
lk_err lk_vcache_save(const lk_vcache *cache, const char *path, uint64_t tag)
    __attribute__((warn_unused_result));

/* Fill an empty cache from a file lk_vcache_save wrote: its seed replaces
 * the cache's, entries that expired more than LK_VERIFY_MAX_SKEW before now
 * are left out, and with a smaller capacity a set keeps its newest entries.
 * *tag and *loaded (either may be NULL) say what was stored and how many
 * entries were taken. LK_ERR_STORE_MISSING (no file), LK_ERR_STORE_PERMS
 * (another user's, group or others may write it, or not a regular file),
 * LK_ERR_STORE_FOREIGN (not a cache file, or another version), LK_ERR_STORE_CORRUPT (truncated,
 * wrong size or checksum), LK_ERR_IO, LK_ERR_STATE (the cache is not empty),
 * LK_ERR_ARG. On any failure the cache is left empty with its own seed. */
lk_err lk_vcache_load(lk_vcache *cache, const char *path, int64_t now, uint64_t *tag,
                      size_t *loaded)
    __attribute__((warn_unused_result));


/* ---- service accounts (latchkeyd's admin API) ----
 *
 * Google's auth libraries sign with the service-account key file's RSA key:
 * header {"alg":"RS256","typ":"JWT","kid":KEY_ID}, claims {"iss": email,
 * "sub": email (may be absent in the RFC 7523 grant), "aud": ..., "scope":
 * "a b c", "iat", "exp"} with exp - iat = 3600. The caller reads the kid
 * (lk_jwt_peek_kid), looks the key up in the registry
 * (lk_registry_sa_lookup), then verifies with lk_verify_sa_token.
 * Unlike device tokens, '=' padding is refused (Google's libraries never
 * pad).
 */

/* The kid of a JWT's header, unverified (to find the key to verify with):
 * copied NUL-terminated into kid. LK_ERR_TOKEN_TOO_LARGE over
 * LK_VERIFY_MAX_LEN; LK_ERR_TOKEN_MALFORMED if the token does not have
 * three non-empty segments or the header is not strict base64url of a JSON
 * object; LK_ERR_TOKEN_HEADER if the header has no string kid of
 * 1..(kid_size - 1) bytes without a NUL; LK_ERR_NOMEM; LK_ERR_ARG for NULL
 * arguments or kid_size < 2. kid is "" on failure. Nothing here says the
 * token is genuine. */
lk_err lk_jwt_peek_kid(const char *token, size_t len, char *kid, size_t kid_size);

#define LK_SA_SKEW 60              /* the daemon's default skew (Google allows little) */
#define LK_SA_MAX_LIFETIME 3600    /* exp - iat of Google's self-signed JWTs */

typedef struct lk_sa_policy {
    const char *email;                   /* iss must equal it; sub, if present, too */
    int64_t now, skew;                   /* skew: 0..3600 (use LK_SA_SKEW = 60 as the daemon default) */
    int64_t max_lifetime;                /* exp - iat at most this (3600), 1..LK_VERIFY_MAX_LIFETIME */
    const char *const *audiences; size_t naudiences; /* aud (a string, or an array of strings) must contain one
                                            of these, or ... */
    const char *const *scopes; size_t nscopes;       /* ... the "scope" claim (space-separated) contains one of
                                            these. With naudiences 0, aud is not required; with nscopes 0, scope
                                            does not count. At least one of the two must be satisfied
                                            (both 0: LK_ERR_ARG). Each audience and scope is a
                                            non-empty string (a scope without spaces), else
                                            LK_ERR_ARG. */
    size_t max_len;                      /* token length cap (0 = LK_VERIFY_MAX_LEN) */
} lk_sa_policy;

/*
 * Verify a service account's self-signed JWT against its key cred (an RSA
 * credential: LK_ERR_NO_CREDENTIAL for another kind or an expired one):
 * strictly as lk_verify_token's rules 1-4 (length, segments, strict
 * base64url without padding, JSON, refused header parameters; alg must be
 * RS256, else LK_ERR_TOKEN_ALG), then the claims: iss a string equal to
 * pol->email, sub absent or equal to it (LK_ERR_TOKEN_CLAIM); iat and exp
 * integers (LK_ERR_TOKEN_CLAIM); aud (a string or an array of strings; any
 * other type LK_ERR_TOKEN_CLAIM) containing one of pol->audiences, or the
 * scope string containing one of pol->scopes (LK_ERR_TOKEN_AUDIENCE when
 * neither); time as rule 6 with pol->max_lifetime; the signature last (rule
 * 7). LK_OK fills *info (alg RS256, iat, exp, valid_until = exp + skew,
 * cred_index 0). On failure *info is zeroed; why never contains the token.
 */
lk_err lk_verify_sa_token(lk_verifier *v, const char *token, size_t len, const lk_cred *cred,
                          const lk_sa_policy *pol, lk_token_info *info, char *why, size_t why_size)
    __attribute__((warn_unused_result));

#ifdef __cplusplus
}
#endif
#endif /* LK_VERIFY_H */
