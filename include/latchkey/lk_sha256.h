/*
 * lk_sha256.h — SHA-256 (FIPS 180-4) for the freestanding core.
 *
 * Portable C for microcontrollers that have no hash engine; Linux code
 * uses it only where the core does (token building). Not constant-time
 * with respect to the message length, which is public.
 */
#ifndef LK_SHA256_H
#define LK_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LK_SHA256_BYTES 32u

typedef struct lk_sha256_ctx {
    uint32_t h[8];
    uint64_t total;      /* bytes hashed so far */
    uint8_t block[64];
    uint8_t used;        /* bytes waiting in block */
} lk_sha256_ctx;

void lk_sha256_init(lk_sha256_ctx *ctx);
void lk_sha256_update(lk_sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest and wipes the context. */
void lk_sha256_final(lk_sha256_ctx *ctx, uint8_t out[LK_SHA256_BYTES]);
void lk_sha256(const void *data, size_t len, uint8_t out[LK_SHA256_BYTES]);

#ifdef __cplusplus
}
#endif
#endif /* LK_SHA256_H */
