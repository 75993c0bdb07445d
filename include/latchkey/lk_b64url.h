/*
 * lk_b64url.h — base64url (RFC 4648 §5) without padding, as JWS uses it.
 *
 * The encoder never pads. The decoder is strict by default: only the
 * alphabet [A-Za-z0-9_-], a length that is not 1 mod 4, and zero unused bits
 * in the last character, so that every byte string has exactly one accepted
 * encoding. LK_B64URL_ALLOW_PADDING admits the `=` padding that completes the
 * last quantum (and nothing else): Google's Embedded C SDK pads its signature
 * segment and IoT Core accepted it (docs/protocol.md).
 *
 * Both directions run in time that depends only on the length, not the
 * bytes: the same code encodes private keys in the software key store.
 * Freestanding.
 */
#ifndef LK_B64URL_H
#define LK_B64URL_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Characters that n bytes encode to (no padding, no NUL). */
#define LK_B64URL_ENCODED_LEN(n) ((((size_t)(n)) / 3u) * 4u + ((((size_t)(n)) % 3u) ? (((size_t)(n)) % 3u) + 1u : 0u))
/* An upper bound on the bytes that n characters decode to. */
#define LK_B64URL_DECODED_MAX(n) ((((size_t)(n)) / 4u) * 3u + 2u)

#define LK_B64URL_ALLOW_PADDING 1u

/*
 * Encode in[0..in_len) into out, followed by a NUL. out_size must be at least
 * LK_B64URL_ENCODED_LEN(in_len) + 1, else LK_ERR_BUFFER. On success *out_len is
 * the number of characters written (without the NUL). On failure *out_len is
 * 0 and out (if out_size > 0) holds an empty string.
 */
lk_err lk_b64url_encode(const uint8_t *in, size_t in_len,
                        char *out, size_t out_size, size_t *out_len);

/*
 * Decode in[0..in_len) into out. flags is 0 or LK_B64URL_ALLOW_PADDING.
 * Returns LK_ERR_ENCODING for any character outside the alphabet, a length of
 * 1 mod 4, non-zero unused bits, or misplaced padding; LK_ERR_BUFFER when the
 * decoded bytes do not fit out_size. On failure *out_len is 0 and
 * out[0..out_size) is wiped.
 */
lk_err lk_b64url_decode(const char *in, size_t in_len,
                        uint8_t *out, size_t out_size, size_t *out_len,
                        unsigned flags);

#ifdef __cplusplus
}
#endif
#endif /* LK_B64URL_H */
