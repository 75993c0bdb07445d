/*
 * checked.c — what lk_registry_import_check remembers on a handle (see
 * internal.h): the registry and trust set it checked against, and the
 * digests of the device specs whose credentials passed, in an
 * open-addressing table (a 100,000-device import keeps 100,000 digests,
 * about 6 MB at most).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "internal.h"

lk_reg_checked *lk_reg__checked_new(void)
{
    return calloc(1, sizeof(lk_reg_checked));
}

void lk_reg__checked_reset(lk_reg_checked *c, int64_t rid, const char *stamp, lk_reg_cas *cas)
{
    lk_reg__cas_free(c->cas);
    free(c->set);
    c->set = NULL;
    c->n = c->cap = 0;
    c->rid = rid;
    snprintf(c->stamp, sizeof c->stamp, "%s", stamp != NULL ? stamp : "");
    c->cas = cas;
}

void lk_reg__checked_free(lk_reg_checked *c)
{
    if (c == NULL)
        return;
    lk_reg__checked_reset(c, 0, NULL, NULL);
    EVP_MD_CTX_free(c->mdctx);
    EVP_MD_free(c->md);
    free(c);
}

static void put_u64(EVP_MD_CTX *m, uint64_t v)
{
    unsigned char b[8];
    int i;
    for (i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    EVP_DigestUpdate(m, b, sizeof b);
}

static void put_bytes(EVP_MD_CTX *m, const void *p, size_t n)
{
    put_u64(m, n);
    if (n > 0)
        EVP_DigestUpdate(m, p, n);
}

lk_err lk_reg__spec_digest(lk_reg_checked *c, const lk_reg_device_spec *spec, uint8_t out[32])
{
    EVP_MD_CTX *m;
    unsigned i, ol = 0;
    memset(out, 0, 32);
    /* Fetched once: an implicit fetch per device costs more than the hash
     * inside a large import's transaction. */
    if (c->md == NULL && (c->md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
        return LK_ERR_CRYPTO;
    if (c->mdctx == NULL && (c->mdctx = EVP_MD_CTX_new()) == NULL)
        return LK_ERR_NOMEM;
    m = c->mdctx;
    if (EVP_DigestInit_ex2(m, c->md, NULL) != 1)
        return LK_ERR_CRYPTO;
    /* Everything the credential checks read, each length-prefixed. */
    put_u64(m, spec->ncreds);
    for (i = 0; i < spec->ncreds; i++) {
        const lk_reg_credential *cr = &spec->creds[i];
        put_u64(m, (uint64_t)cr->format);
        put_u64(m, (uint64_t)cr->expires);
        put_bytes(m, cr->pem, cr->pem != NULL ? strlen(cr->pem) : 0);
    }
    put_bytes(m, spec->chain_pem, spec->chain_pem != NULL ? spec->chain_len : 0);
    put_u64(m, spec->cert_checks);
    i = EVP_DigestFinal_ex(m, out, &ol) == 1 && ol == 32;
    /* all zero marks an empty slot: a digest that is all zero (never seen)
     * is simply never remembered */
    return i ? LK_OK : LK_ERR_CRYPTO;
}

static int is_zero(const uint8_t *d)
{
    unsigned i;
    uint8_t x = 0;
    for (i = 0; i < 32; i++)
        x |= d[i];
    return x == 0;
}

static size_t slot(const lk_reg_checked *c, const uint8_t d[32])
{
    size_t h;
    memcpy(&h, d, sizeof h); /* a digest is already uniform */
    return h & (c->cap - 1);
}

int lk_reg__checked_has(const lk_reg_checked *c, const uint8_t d[32])
{
    size_t i;
    if (c == NULL || c->cap == 0 || is_zero(d))
        return 0;
    for (i = slot(c, d);; i = (i + 1) & (c->cap - 1)) {
        if (is_zero(c->set[i]))
            return 0;
        if (memcmp(c->set[i], d, 32) == 0)
            return 1;
    }
}

lk_err lk_reg__checked_add(lk_reg_checked *c, const uint8_t d[32])
{
    size_t i;
    if (is_zero(d) || lk_reg__checked_has(c, d))
        return LK_OK;
    if (2 * (c->n + 1) > c->cap) { /* at most half full */
        size_t ncap = c->cap ? 2 * c->cap : 1024, j;
        uint8_t(*ns)[32] = calloc(ncap, 32);
        if (ns == NULL)
            return LK_ERR_NOMEM;
        for (j = 0; j < c->cap; j++) {
            if (is_zero(c->set[j]))
                continue;
            {
                size_t h;
                memcpy(&h, c->set[j], sizeof h);
                for (i = h & (ncap - 1); !is_zero(ns[i]); i = (i + 1) & (ncap - 1))
                    ;
                memcpy(ns[i], c->set[j], 32);
            }
        }
        free(c->set);
        c->set = ns;
        c->cap = ncap;
    }
    for (i = slot(c, d); !is_zero(c->set[i]); i = (i + 1) & (c->cap - 1))
        ;
    memcpy(c->set[i], d, 32);
    c->n++;
    return LK_OK;
}
