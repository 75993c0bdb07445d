/*
 * The verified-token cache's table, shared by cache.c (lookups) and
 * cache_file.c (saving and loading it). Not part of the installed API.
 */
#ifndef LK_CACHE_INTERNAL_H
#define LK_CACHE_INTERNAL_H

#include <stdint.h>
#include <openssl/evp.h>
#include "latchkey/lk_verify.h"

#define WAYS 16
#define PER_DEVICE 2 /* a token and its successor at refresh */

struct entry {
    uint8_t key[32];      /* SHA-256(token, policy, credential set) */
    uint64_t dev;         /* the device (device_of) */
    int64_t iat, exp;
    uint64_t stamp;       /* insertion order, 0 = empty */
    uint8_t alg;
    uint8_t cred_index;
};

struct lk_vcache {
    struct entry *e;
    size_t capacity;      /* power of two, multiple of WAYS */
    size_t used;
    uint64_t clock;
    uint64_t hits, misses, inserts, evictions;
    uint64_t seed;        /* secret: where a device's entries go is unpredictable */
    EVP_MD *sha256;
    EVP_MD_CTX *md;
};

/* Big-endian integers, for the cache key's fields and the cache file. */
static inline void lk_vcache__put64(uint8_t b[8], uint64_t x)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(x >> (56 - 8 * i));
}

static inline uint64_t lk_vcache__get64(const uint8_t b[8])
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | b[i];
    return x;
}

/* The set of ways device dev's entries go to. */
struct entry *lk_vcache__set(lk_vcache *c, uint64_t dev);
/* The entry of key in set, or NULL. */
struct entry *lk_vcache__find(struct entry *set, const uint8_t key[32]);
/* The way a new entry of device dev takes in set (the eviction rule, one
 * place for lookups' inserts and a restore). */
struct entry *lk_vcache__victim(struct entry *set, uint64_t dev);

#endif
