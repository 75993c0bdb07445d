/*
 * The verified-token cache on disk: see lk_verify.h, "Keeping the cache
 * across a restart".
 *
 * The file, all integers big-endian:
 *   "LKVCACHE" | version u32 (1) | entry size u32 (66) | seed u64 | tag u64 |
 *   count u64 | count × (key[32] dev u64 iat i64 exp i64 stamp u64 alg u8
 *   cred_index u8) | SHA-256 of everything before it
 * The size is checked against count before anything is read, the checksum
 * before anything is used; the checksum catches a torn write, not an
 * attacker (the file's mode does that: see lk_vcache_load).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "cache_internal.h"

#define MAGIC "LKVCACHE"
#define VERSION 1u
#define HEADER 40   /* magic 8, version 4, entry size 4, seed 8, tag 8, count 8 */
#define RECORD 66
#define CHUNK 1024  /* records per write or read */

static void be32(uint8_t *b, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(x >> (24 - 8 * i));
}

static uint32_t rd32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void record_put(uint8_t *r, const struct entry *e)
{
    memcpy(r, e->key, 32);
    lk_vcache__put64(r + 32, e->dev);
    lk_vcache__put64(r + 40, (uint64_t)e->iat);
    lk_vcache__put64(r + 48, (uint64_t)e->exp);
    lk_vcache__put64(r + 56, e->stamp);
    r[64] = e->alg;
    r[65] = e->cred_index;
}

static void record_get(struct entry *e, const uint8_t *r)
{
    memcpy(e->key, r, 32);
    e->dev = lk_vcache__get64(r + 32);
    e->iat = (int64_t)lk_vcache__get64(r + 40);
    e->exp = (int64_t)lk_vcache__get64(r + 48);
    e->stamp = lk_vcache__get64(r + 56);
    e->alg = r[64];
    e->cred_index = r[65];
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 1 read all n bytes, 0 the file ended first, -1 an error (errno). */
static int read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        p += r;
        n -= (size_t)r;
    }
    return 1;
}

lk_err lk_vcache_save(const lk_vcache *c, const char *path, uint64_t tag)
{
    char *tmp;
    uint8_t *buf, digest[32];
    size_t plen, i, n = 0;
    unsigned int dlen = 0;
    EVP_MD_CTX *md;
    lk_err err = LK_ERR_IO;
    int fd, saved;

    if (c == NULL || path == NULL || path[0] == '\0')
        return LK_ERR_ARG;
    plen = strlen(path);
    tmp = malloc(plen + 5);
    buf = malloc((size_t)CHUNK * RECORD);
    md = EVP_MD_CTX_new();
    if (tmp == NULL || buf == NULL || md == NULL) {
        free(tmp);
        free(buf);
        EVP_MD_CTX_free(md);
        return LK_ERR_NOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    (void)unlink(tmp); /* a stale one from a save cut short */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        goto out;
    if (!EVP_DigestInit_ex2(md, c->sha256, NULL))
        goto fail;
    memcpy(buf, MAGIC, 8);
    be32(buf + 8, VERSION);
    be32(buf + 12, RECORD);
    lk_vcache__put64(buf + 16, c->seed);
    lk_vcache__put64(buf + 24, tag);
    lk_vcache__put64(buf + 32, (uint64_t)c->used);
    if (!EVP_DigestUpdate(md, buf, HEADER) || write_full(fd, buf, HEADER) != 0)
        goto fail;
    for (i = 0; i < c->capacity; i++) {
        if (c->e[i].stamp == 0)
            continue;
        record_put(buf + n++ * RECORD, &c->e[i]);
        if (n == CHUNK) {
            if (!EVP_DigestUpdate(md, buf, n * RECORD) || write_full(fd, buf, n * RECORD) != 0)
                goto fail;
            n = 0;
        }
    }
    if (n > 0 && (!EVP_DigestUpdate(md, buf, n * RECORD) || write_full(fd, buf, n * RECORD) != 0))
        goto fail;
    if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != 32 || write_full(fd, digest, 32) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    err = LK_OK;
    goto out;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    errno = saved;
out:
    saved = errno; /* for the caller's message */
    OPENSSL_cleanse(buf, (size_t)CHUNK * RECORD);
    free(buf);
    free(tmp);
    EVP_MD_CTX_free(md);
    errno = saved;
    return err;
}

/* A restored entry into its set, as a new one would go (lk_vcache__victim),
 * except that it never evicts a newer entry than itself. */
static void place(lk_vcache *c, const struct entry *in)
{
    struct entry *set = lk_vcache__set(c, in->dev), *victim;

    if (lk_vcache__find(set, in->key) != NULL)
        return; /* the same entry twice: keep one */
    victim = lk_vcache__victim(set, in->dev);
    if (victim->stamp != 0 && victim->stamp > in->stamp)
        return;
    if (victim->stamp == 0)
        c->used++;
    *victim = *in;
    if (in->stamp > c->clock)
        c->clock = in->stamp;
}

lk_err lk_vcache_load(lk_vcache *c, const char *path, int64_t now, uint64_t *tag, size_t *loaded)
{
    uint8_t head[HEADER], digest[32], want[32], *buf = NULL;
    uint64_t count, done = 0, old_seed, file_tag;
    unsigned int dlen = 0;
    EVP_MD_CTX *md = NULL;
    struct stat st;
    lk_err err;
    int fd, r, saved;

    if (tag != NULL)
        *tag = 0;
    if (loaded != NULL)
        *loaded = 0;
    if (c == NULL || path == NULL)
        return LK_ERR_ARG;
    if (c->used != 0)
        return LK_ERR_STATE;
    old_seed = c->seed;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? LK_ERR_STORE_MISSING : errno == ELOOP ? LK_ERR_STORE_PERMS : LK_ERR_IO;
    /* Whoever can write it can let a token of their making in: only our
     * own file, writable by no one else (as the key store, softstore.c). */
    if (fstat(fd, &st) != 0) {
        err = LK_ERR_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 || st.st_uid != geteuid()) {
        err = LK_ERR_STORE_PERMS;
        goto out;
    }
    r = read_full(fd, head, HEADER);
    if (r < 0) {
        err = LK_ERR_IO;
        goto out;
    }
    /* Empty or cut inside the header is a torn save; other bytes are not ours. */
    if (r == 0) {
        err = st.st_size == 0 || (st.st_size >= 8 && memcmp(head, MAGIC, 8) == 0)
              ? LK_ERR_STORE_CORRUPT : LK_ERR_STORE_FOREIGN;
        goto out;
    }
    if (memcmp(head, MAGIC, 8) != 0) {
        err = LK_ERR_STORE_FOREIGN;
        goto out;
    }
    if (rd32(head + 8) != VERSION || rd32(head + 12) != RECORD) {
        err = LK_ERR_STORE_FOREIGN;
        goto out;
    }
    count = lk_vcache__get64(head + 32);
    /* The size says how many records there are before any is read. */
    if (count > ((uint64_t)1 << 32) || (uint64_t)st.st_size != HEADER + count * RECORD + 32) {
        err = LK_ERR_STORE_CORRUPT;
        goto out;
    }
    file_tag = lk_vcache__get64(head + 24);
    buf = malloc((size_t)CHUNK * RECORD);
    md = EVP_MD_CTX_new();
    if (buf == NULL || md == NULL) {
        err = LK_ERR_NOMEM;
        goto out;
    }
    if (!EVP_DigestInit_ex2(md, c->sha256, NULL) || !EVP_DigestUpdate(md, head, HEADER)) {
        err = LK_ERR_CRYPTO;
        goto out;
    }
    c->seed = lk_vcache__get64(head + 16);
    while (done < count) {
        size_t n = count - done < CHUNK ? (size_t)(count - done) : CHUNK;
        r = read_full(fd, buf, n * RECORD);
        if (r <= 0) {
            err = r < 0 ? LK_ERR_IO : LK_ERR_STORE_CORRUPT;
            goto out;
        }
        if (!EVP_DigestUpdate(md, buf, n * RECORD)) {
            err = LK_ERR_CRYPTO;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            struct entry e;
            record_get(&e, buf + i * RECORD);
            /* A hit re-checks the time anyway; this only keeps out the dead. */
            if (e.stamp == 0 || e.exp <= now - LK_VERIFY_MAX_SKEW)
                continue;
            place(c, &e);
        }
        done += n;
    }
    r = read_full(fd, want, 32);
    if (r <= 0) {
        err = r < 0 ? LK_ERR_IO : LK_ERR_STORE_CORRUPT;
        goto out;
    }
    if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != 32) {
        err = LK_ERR_CRYPTO;
        goto out;
    }
    if (CRYPTO_memcmp(digest, want, 32) != 0) {
        err = LK_ERR_STORE_CORRUPT;
        goto out;
    }
    if (tag != NULL)
        *tag = file_tag;
    if (loaded != NULL)
        *loaded = c->used;
    err = LK_OK;
out:
    saved = errno;
    if (err != LK_OK) {
        lk_vcache_clear(c);
        c->seed = old_seed;
        c->clock = 0;
    }
    if (buf != NULL)
        OPENSSL_clear_free(buf, (size_t)CHUNK * RECORD);
    EVP_MD_CTX_free(md);
    close(fd);
    errno = saved;
    return err;
}
