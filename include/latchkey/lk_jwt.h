/*
 * lk_jwt.h — build and sign a compact JWS (a JSON Web Token) in one
 * caller-supplied buffer, on a microcontroller as well as on Linux.
 *
 *     lk_jwt jwt;
 *     lk_jwt_init(&jwt, LK_ALG_ES256, buf, sizeof buf);
 *     lk_jwt_add_claim_int(&jwt, "iat", now);
 *     lk_jwt_add_claim_int(&jwt, "exp", now + 3600);
 *     lk_jwt_add_claim_string(&jwt, "aud", project, project_len);
 *     err = lk_jwt_finalize(&jwt, &se, "slot:0", &token_len);
 *
 * The header is {"alg":"ES256","typ":"JWT"} (or RS256). Claims are written in
 * the order added; strings must be valid UTF-8 and are JSON-escaped: quote
 * and backslash with a backslash, U+0000..U+001F as \u00xx (lower-case hex),
 * everything else as is. Numbers are signed 64-bit.
 *
 * Errors latch: the first failing call records its error, later calls do
 * nothing, and lk_jwt_finalize returns it. On any failure the buffer is
 * wiped: no partial token, and never a token whose signature did not come
 * from the secure element. On success buf holds the NUL-terminated token.
 *
 * Memory: no heap, no recursion; the context is about 100 bytes. The
 * signature is written into the tail of buf and encoded in place, so no
 * signature-sized buffer lives on the stack.
 *
 * Freestanding.
 */
#ifndef LK_JWT_H
#define LK_JWT_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_se.h"
#include "lk_b64url.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_JWT_MAX_CLAIMS 8u
#define LK_JWT_CLAIM_NAME_MAX 16u /* characters, [A-Za-z0-9_] */
#define LK_JWT_NAMES_BYTES (LK_JWT_MAX_CLAIMS * (LK_JWT_CLAIM_NAME_MAX + 1u))

/* The header every token starts with, base64url of {"alg":"ES256","typ":"JWT"}
 * or {"alg":"RS256","typ":"JWT"}: the builder writes it, the verifier
 * recognises it without decoding. */
#define LK_JWT_HEADER_ES256 "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9"
#define LK_JWT_HEADER_RS256 "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
#define LK_JWT_HEADER_LEN 36u

/* Encoded signature lengths. */
#define LK_JWT_ES256_SIG_CHARS LK_B64URL_ENCODED_LEN(LK_ES256_SIG_BYTES) /* 86 */
#define LK_JWT_RS256_SIG_CHARS(bits) LK_B64URL_ENCODED_LEN((bits) / 8u)

/*
 * Buffer size (with the NUL) for a token whose claims JSON object is
 * claims_json_len bytes (braces, names, quotes, commas and escaped values)
 * and whose raw signature is sig_bytes long. Also the room finalize needs:
 * the raw signature is staged at the end of the buffer.
 */
#define LK_JWT_TOKEN_SIZE(claims_json_len, sig_bytes) \
    (LK_JWT_HEADER_LEN + 1u + LK_B64URL_ENCODED_LEN(claims_json_len) + 1u + \
     LK_B64URL_ENCODED_LEN(sig_bytes) + 1u)

typedef struct lk_jwt {
    char *buf;
    size_t size;
    size_t len;          /* characters written so far */
    lk_err err;          /* first error, latched */
    lk_alg alg;
    uint8_t state;       /* internal */
    uint8_t nclaims;
    uint8_t ncarry;      /* bytes waiting for a full base64 quantum */
    uint8_t carry[2];
    uint16_t names_len;
    char names[LK_JWT_NAMES_BYTES]; /* NUL-separated names, for duplicates */
} lk_jwt;

/* Start a token. alg must be LK_ALG_ES256 or LK_ALG_RS256. Writes the
 * encoded header at once, so a too-small buffer is reported from here on. */
void lk_jwt_init(lk_jwt *jwt, lk_alg alg, char *buf, size_t size);

/*
 * Start a token whose header carries a certificate chain (RFC 7515 §4.1.6),
 * for just-in-time registration (docs/provisioning.md): the header is
 * {"alg":"ES256","typ":"JWT","x5c":["<x5c[0]>",...]} (or RS256), exactly
 * these bytes, encoded through the same streaming encoder as the claims (no
 * scratch buffer). x5c[i] is x5c_len[i] characters of standard base64 (RFC
 * 4648 §4, with padding, not base64url) of one DER certificate, the leaf
 * first; not necessarily NUL-terminated. n == 0 is lk_jwt_init (no x5c
 * member). Latches LK_ERR_TOO_MANY when n > LK_JWT_X5C_MAX, LK_ERR_ARG for a
 * NULL array or an empty entry, LK_ERR_ENCODING for an entry that is not
 * padded base64, LK_ERR_BUFFER when it does not fit. The header costs
 * 4/3 of (36 + sum of (x5c_len[i] + 3)) characters: size buffers with
 * LK_JWT_X5C_TOKEN_SIZE.
 */
#define LK_JWT_X5C_MAX 3u /* the leaf and up to 2 intermediates (LK_REG_CHAIN_MAX) */
#define LK_JWT_X5C_TOKEN_SIZE(claims_json_len, sig_bytes, x5c_chars) \
    (LK_JWT_TOKEN_SIZE(claims_json_len, sig_bytes) + \
     LK_B64URL_ENCODED_LEN(36u + (x5c_chars) + 3u * LK_JWT_X5C_MAX))
void lk_jwt_init_x5c(lk_jwt *jwt, lk_alg alg, const char *const *x5c, const size_t *x5c_len,
                     size_t n, char *buf, size_t size);

/* Add "name":"value". value is value_len bytes of UTF-8, not necessarily
 * NUL-terminated; a NUL byte inside is escaped, not a terminator. */
void lk_jwt_add_claim_string(lk_jwt *jwt, const char *name,
                             const char *value, size_t value_len);

/* Add "name":value with a signed 64-bit integer. */
void lk_jwt_add_claim_int(lk_jwt *jwt, const char *name, int64_t value);

/*
 * Close the claims, hash header.payload, have the secure element sign the
 * digest with key, and append the signature. Returns the latched error if
 * any, else the signer's. On success *token_len is the token length (buf
 * holds token_len characters and a NUL); on failure *token_len is 0 and the
 * whole buffer is wiped. The context cannot be reused afterwards: a second
 * finalize returns LK_ERR_STATE and leaves the buffer (and a token made by
 * the first call) untouched.
 */
lk_err lk_jwt_finalize(lk_jwt *jwt, const lk_se *se, const char *key,
                       size_t *token_len);

/*
 * The token an IoT Core device sends as its MQTT password:
 * {"iat":iat,"exp":exp,"aud":"aud"}. Requires iat >= 0, exp > iat and
 * exp - iat <= 86400 and a non-empty aud (LK_ERR_ARG otherwise: a service
 * following the IoT Core rules would refuse the token).
 */
#define LK_JWT_MAX_LIFETIME 86400
lk_err lk_jwt_iotcore(const lk_se *se, const char *key, lk_alg alg,
                      const char *aud, size_t aud_len,
                      int64_t iat, int64_t exp,
                      char *buf, size_t size, size_t *token_len);

/* lk_jwt_iotcore with a certificate chain in the header (lk_jwt_init_x5c);
 * n == 0 is lk_jwt_iotcore. Errors of both. */
lk_err lk_jwt_iotcore_x5c(const lk_se *se, const char *key, lk_alg alg,
                          const char *aud, size_t aud_len, int64_t iat, int64_t exp,
                          const char *const *x5c, const size_t *x5c_len, size_t n,
                          char *buf, size_t size, size_t *token_len);

#ifdef __cplusplus
}
#endif
#endif /* LK_JWT_H */
