/*
 * The verified-token cache: see lk_verify.h.
 *
 * Fixed memory: a 16-way set-associative table (16 rather than 4: a fleet of
 * a sixth of the capacity overflows no set, so a fleet that reconnects after
 * a restart finds every token it had; docs/benchmarks.md, "Connect storm").
 * The key covers the whole token, the policy (audience, skew, lifetime,
 * flags) and the credential set, so a hit can only mean "this exact token
 * was verified against these exact keys under these rules"; what can change
 * since — the clock and a credential's expiry — is checked again on every hit.
 *
 * The set is chosen by the device, not the token (device_of: the audience
 * and credential set, all a cache knows of a device), and a device holds at
 * most PER_DEVICE ways of it, so one that signs token after token only ever
 * replaces its own entries and cannot flush anyone else's.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "latchkey/lk_util.h"
#include "cache_internal.h"
#include "verify_internal.h"

lk_err lk_vcache_new(size_t entries, lk_vcache **out)
{
    lk_vcache *c;
    size_t cap = 16;

    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    if (entries == 0 || entries > ((size_t)1 << 24))
        return LK_ERR_ARG;
    while (cap < entries)
        cap *= 2;
    c = OPENSSL_zalloc(sizeof *c);
    if (c == NULL)
        return LK_ERR_NOMEM;
    c->e = OPENSSL_zalloc(cap * sizeof *c->e);
    c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    c->md = EVP_MD_CTX_new();
    c->capacity = cap;
    if (c->e == NULL || c->sha256 == NULL || c->md == NULL) {
        lk_vcache_free(c);
        return LK_ERR_NOMEM;
    }
    if (RAND_bytes((unsigned char *)&c->seed, sizeof c->seed) != 1) {
        lk_vcache_free(c);
        return LK_ERR_RNG;
    }
    *out = c;
    return LK_OK;
}

void lk_vcache_free(lk_vcache *c)
{
    if (c == NULL)
        return;
    OPENSSL_clear_free(c->e, c->capacity * sizeof *c->e); /* NULL: does nothing */
    EVP_MD_CTX_free(c->md);
    EVP_MD_free(c->sha256);
    OPENSSL_clear_free(c, sizeof *c);
}

void lk_vcache_clear(lk_vcache *c)
{
    if (c == NULL)
        return;
    OPENSSL_cleanse(c->e, c->capacity * sizeof *c->e);
    c->used = 0;
}

void lk_vcache_get_stats(const lk_vcache *c, lk_vcache_stats *st)
{
    if (st == NULL)
        return;
    memset(st, 0, sizeof *st);
    if (c == NULL)
        return;
    st->hits = c->hits;
    st->misses = c->misses;
    st->inserts = c->inserts;
    st->evictions = c->evictions;
    st->capacity = c->capacity;
    st->used = c->used;
}

/* SHA-256 over length-prefixed fields, so no two inputs share a key. */
static int cache_key(lk_vcache *c, const char *token, size_t len, lk_cred *const *creds,
                     size_t ncreds, const lk_verify_policy *pol, uint8_t key[32])
{
    uint8_t b[8];
    unsigned int n = 0;
    size_t i;
    int ok = EVP_DigestInit_ex2(c->md, c->sha256, NULL);

    lk_vcache__put64(b, len);
    ok = ok && EVP_DigestUpdate(c->md, b, 8) && EVP_DigestUpdate(c->md, token, len);
    lk_vcache__put64(b, pol->aud_len);
    ok = ok && EVP_DigestUpdate(c->md, b, 8) && EVP_DigestUpdate(c->md, pol->aud, pol->aud_len);
    lk_vcache__put64(b, (uint64_t)pol->skew);
    ok = ok && EVP_DigestUpdate(c->md, b, 8);
    lk_vcache__put64(b, (uint64_t)pol->max_lifetime);
    ok = ok && EVP_DigestUpdate(c->md, b, 8);
    lk_vcache__put64(b, ((uint64_t)pol->flags << 32) | (uint64_t)ncreds);
    ok = ok && EVP_DigestUpdate(c->md, b, 8);
    for (i = 0; ok && i < ncreds; i++) {
        lk_vcache__put64(b, (uint64_t)creds[i]->expires);
        ok = EVP_DigestUpdate(c->md, creds[i]->fp, 32) && EVP_DigestUpdate(c->md, b, 8);
    }
    return ok && EVP_DigestFinal_ex(c->md, key, &n) && n == 32;
}

/* splitmix64's finalizer: every input bit moves every output bit. */
static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/*
 * The device, as far as the cache can tell: the caller's subject, its
 * audience and credential set (fingerprints, already SHA-256, and expiries),
 * mixed with the cache's secret seed. It only places entries and tells devices apart within a
 * set, never decides a hit (the SHA-256 key does), so a table hash is
 * enough (a second SHA-256 made a hit about 20% slower). The seed makes
 * which devices share a set unpredictable from their keys.
 */
static uint64_t device_of(const lk_vcache *c, lk_cred *const *creds, size_t ncreds,
                          const lk_verify_policy *pol)
{
    uint64_t h = c->seed ^ UINT64_C(0xcbf29ce484222325);
    size_t i;
    for (i = 0; i < pol->aud_len; i++) /* FNV-1a */
        h = (h ^ (uint8_t)pol->aud[i]) * UINT64_C(0x100000001b3);
    h = mix(mix(h ^ pol->aud_len) ^ pol->subject) ^ ncreds;
    for (i = 0; i < ncreds; i++)
        h = mix(mix(h ^ lk_vcache__get64(creds[i]->fp)) ^ (uint64_t)creds[i]->expires);
    return mix(h ^ c->seed);
}

/* The device's set: every token of one device lands here. */
struct entry *lk_vcache__set(lk_vcache *c, uint64_t dev)
{
    return &c->e[(size_t)(dev & (c->capacity / WAYS - 1)) * WAYS];
}

struct entry *lk_vcache__find(struct entry *set, const uint8_t key[32])
{
    int w;
    for (w = 0; w < WAYS; w++)
        if (set[w].stamp != 0 && CRYPTO_memcmp(set[w].key, key, 32) == 0)
            return &set[w];
    return NULL;
}

/* A device that already holds PER_DEVICE entries replaces its own oldest;
 * otherwise an empty way, else the set's oldest entry. */
struct entry *lk_vcache__victim(struct entry *set, uint64_t dev)
{
    struct entry *empty = NULL, *oldest = NULL, *own = NULL;
    unsigned nown = 0;
    int w;
    for (w = 0; w < WAYS; w++) {
        struct entry *e = &set[w];
        if (e->stamp == 0) {
            if (empty == NULL)
                empty = e;
            continue;
        }
        if (oldest == NULL || e->stamp < oldest->stamp)
            oldest = e;
        if (e->dev == dev) {
            nown++;
            if (own == NULL || e->stamp < own->stamp)
                own = e;
        }
    }
    return nown >= PER_DEVICE ? own : empty != NULL ? empty : oldest;
}

static void insert(lk_vcache *c, struct entry *set, uint64_t dev, const uint8_t key[32],
                   const lk_token_info *info)
{
    struct entry *victim = lk_vcache__victim(set, dev);
    if (victim->stamp != 0)
        c->evictions++;
    else
        c->used++;
    memcpy(victim->key, key, 32);
    victim->dev = dev;
    victim->iat = info->iat;
    victim->exp = info->exp;
    victim->alg = (uint8_t)info->alg;
    victim->cred_index = (uint8_t)info->cred_index;
    victim->stamp = ++c->clock;
    c->inserts++;
}

static void drop(lk_vcache *c, struct entry *e)
{
    OPENSSL_cleanse(e, sizeof *e);
    c->used--;
}

lk_err lk_verify_token_cached(lk_verifier *v, lk_vcache *c, const char *token, size_t len,
                              lk_cred *const *creds, size_t ncreds,
                              const lk_verify_policy *pol, lk_token_info *info,
                              int *hit, char *why, size_t why_size)
{
    uint8_t key[32];
    uint64_t dev;
    struct entry *set, *e;
    lk_err err;

    if (hit != NULL)
        *hit = 0;
    /* Whatever the cache holds, the arguments get the same answer as an
     * uncached call. */
    if (c == NULL || v == NULL || token == NULL || info == NULL ||
        !lk_verify__args_ok(creds, ncreds, pol) || len > pol->max_len)
        return lk_verify_token(v, token, len, creds, ncreds, pol, info, why, why_size);
    if (!cache_key(c, token, len, creds, ncreds, pol, key))
        return lk_verify_token(v, token, len, creds, ncreds, pol, info, why, why_size);

    dev = device_of(c, creds, ncreds, pol);
    set = lk_vcache__set(c, dev);
    e = lk_vcache__find(set, key);
    if (e != NULL) {
        unsigned idx = e->cred_index;
        const lk_cred *cred = idx < ncreds ? creds[idx] : NULL;
        /* A full check reports the first credential that verifies: the same
         * key may be registered twice with different expiries. */
        for (unsigned j = 0; cred != NULL && j < idx; j++) {
            if (memcmp(creds[j]->fp, cred->fp, 32) == 0 &&
                (creds[j]->expires == 0 || creds[j]->expires > pol->now)) {
                idx = j;
                cred = creds[j];
            }
        }
        /* The same rules as a full verification, against the clock now. */
        if (cred != NULL && (cred->expires == 0 || cred->expires > pol->now) &&
            e->iat <= pol->now + pol->skew && e->exp > pol->now - pol->skew) {
            c->hits++;
            if (hit != NULL)
                *hit = 1;
            if (why != NULL && why_size > 0)
                why[0] = '\0';
            memset(info, 0, sizeof *info);
            info->alg = (lk_alg)e->alg;
            info->iat = e->iat;
            info->exp = e->exp;
            info->valid_until = e->exp + pol->skew;
            info->cred_index = idx;
            return LK_OK;
        }
        drop(c, e); /* no longer good: the full check says precisely why */
    }
    c->misses++;
    err = lk_verify_token(v, token, len, creds, ncreds, pol, info, why, why_size);
    if (err == LK_OK)
        insert(c, set, dev, key, info);
    return err;
}
