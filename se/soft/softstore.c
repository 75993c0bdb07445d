/*
 * The software key store: see lk_softstore.h and docs/keystore.md.
 *
 * File format, one entry a line, ending with a checksum line so that a
 * truncated or altered file is refused rather than half-read:
 *
 *   latchkey-keystore v1
 *   # DEVELOPMENT ONLY ... (comment lines start with '#')
 *   key NAME ALG BASE64URL(PKCS#8 DER)
 *   checksum HEX(SHA-256 of every byte before this line)
 *
 * Keys are decoded lazily (a fleet simulator opens a store of thousands and
 * uses each key once per token), and the decoded key keeps a signing
 * context so that a device signing repeatedly pays only for the signature.
 */
#include "latchkey/lk_softstore.h"
#include "latchkey/lk_b64url.h"
#include "latchkey/lk_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define STORE_MAGIC "latchkey-keystore "
#define STORE_VERSION "v1"
#define STORE_MAX_BYTES (256u * 1024u * 1024u)
#define KEY_DER_MAX 4096u /* PKCS#8 of RSA-4096 is about 2.4 KB */

struct entry {
    char *name;
    lk_alg alg;
    int pending;       /* generated here, not yet on disk */
    uint8_t *der;      /* PKCS#8, wiped on free */
    size_t der_len;
    EVP_PKEY *pkey;    /* decoded on first use */
    EVP_PKEY_CTX *sign_ctx;
};

struct lk_softstore {
    char *path;
    unsigned flags;
    struct entry *e;
    size_t n, cap;
    size_t *index;     /* open addressing over e[], SIZE_MAX = empty */
    size_t index_cap;  /* power of two, > 2n */
    EVP_MD *sha256;    /* fetched once: the token hash runs per signature */
    EVP_MD_CTX *md_ctx;
};

/* ---- entries and the name index ---- */

static int name_ok(const char *s, size_t n)
{
    size_t i;
    if (n == 0 || n > LK_SOFTSTORE_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '+' || c == '~' || c == '%' || c == '-'))
            return 0;
    }
    return 1;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: names are not secret */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

static void entry_free(struct entry *e)
{
    free(e->name);
    if (e->der != NULL)
        OPENSSL_clear_free(e->der, e->der_len);
    EVP_PKEY_CTX_free(e->sign_ctx);
    EVP_PKEY_free(e->pkey);
    memset(e, 0, sizeof *e);
}

static void entries_free(lk_softstore *s)
{
    size_t i;
    for (i = 0; i < s->n; i++)
        entry_free(&s->e[i]);
    free(s->e);
    free(s->index);
    s->e = NULL;
    s->index = NULL;
    s->n = s->cap = s->index_cap = 0;
}

static lk_err index_rebuild(lk_softstore *s)
{
    size_t cap = 16, i;
    while (cap < 2 * s->n + 2)
        cap *= 2;
    free(s->index);
    s->index = malloc(cap * sizeof *s->index);
    if (s->index == NULL) {
        s->index_cap = 0;
        return LK_ERR_NOMEM;
    }
    s->index_cap = cap;
    for (i = 0; i < cap; i++)
        s->index[i] = SIZE_MAX;
    for (i = 0; i < s->n; i++) {
        size_t h = (size_t)name_hash(s->e[i].name) & (cap - 1);
        while (s->index[h] != SIZE_MAX)
            h = (h + 1) & (cap - 1);
        s->index[h] = i;
    }
    return LK_OK;
}

static struct entry *find(const lk_softstore *s, const char *name)
{
    size_t h;
    if (s->index_cap == 0)
        return NULL;
    h = (size_t)name_hash(name) & (s->index_cap - 1);
    while (s->index[h] != SIZE_MAX) {
        struct entry *e = &s->e[s->index[h]];
        if (strcmp(e->name, name) == 0)
            return e;
        h = (h + 1) & (s->index_cap - 1);
    }
    return NULL;
}

/* Take ownership of name and der, on success only. */
static lk_err entry_add(lk_softstore *s, char *name, lk_alg alg, uint8_t *der,
                        size_t der_len, int pending)
{
    struct entry *e;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct entry *ne = realloc(s->e, cap * sizeof *ne);
        if (ne == NULL)
            return LK_ERR_NOMEM;
        s->e = ne;
        s->cap = cap;
    }
    e = &s->e[s->n++];
    memset(e, 0, sizeof *e);
    e->name = name;
    e->alg = alg;
    e->der = der;
    e->der_len = der_len;
    e->pending = pending;
    if (s->index_cap < 2 * s->n + 2) {
        lk_err err = index_rebuild(s);
        if (err != LK_OK) {
            memset(e, 0, sizeof *e);
            s->n--;
        }
        return err;
    }
    {
        size_t h = (size_t)name_hash(name) & (s->index_cap - 1);
        while (s->index[h] != SIZE_MAX)
            h = (h + 1) & (s->index_cap - 1);
        s->index[h] = s->n - 1;
    }
    return LK_OK;
}

/* ---- reading ---- */

static lk_err read_all(const char *path, char **out, size_t *out_len)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    lk_err err = LK_ERR_IO;
    /* O_NONBLOCK: a FIFO at path must not block the open (it is then
     * refused as not a regular file); no effect on regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    *out = NULL;
    *out_len = 0;
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return LK_ERR_STORE_MISSING;
        /* A link (O_NOFOLLOW), a forbidden file, a directory: a
         * configuration error, unlike the system failing (EIO, EMFILE). */
        if (e == ELOOP || e == EACCES || e == EPERM || e == EISDIR || e == ENXIO ||
            e == ENAMETOOLONG)
            return LK_ERR_FILE_UNUSABLE;
        return LK_ERR_IO;
    }
    if (fstat(fd, &st) != 0)
        goto exit;
    if (!S_ISREG(st.st_mode)) {
        err = LK_ERR_FILE_UNUSABLE;
        goto exit;
    }
    if ((st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
        err = LK_ERR_STORE_PERMS;
        goto exit;
    }
    if ((uintmax_t)st.st_size > STORE_MAX_BYTES) {
        err = LK_ERR_STORE_CORRUPT;
        goto exit;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        err = LK_ERR_NOMEM;
        goto exit;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            goto exit;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *out_len = got;
    buf = NULL;
    err = LK_OK;
exit:
    if (buf != NULL)
        OPENSSL_clear_free(buf, (size_t)st.st_size + 1);
    close(fd);
    return err;
}

static void hex32(const uint8_t in[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    int i;
    for (i = 0; i < 32; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[64] = '\0';
}

static lk_err sha256_hex(const char *data, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return LK_ERR_CRYPTO;
    hex32(md, out);
    return LK_OK;
}

/* Parse the whole file text into s (which must be empty). The checksum is
 * checked first, so nothing of a damaged file is interpreted. */
static lk_err parse(lk_softstore *s, char *text, size_t len)
{
    char *line = text, *end, *nl, *sum_line;
    char want[65];
    lk_err err;
    int first = 1;

    if (len < sizeof STORE_MAGIC - 1 || memcmp(text, STORE_MAGIC, sizeof STORE_MAGIC - 1) != 0)
        return LK_ERR_STORE_FOREIGN;
    /* The version comes first: a newer format is reported as such whatever
     * follows (it may end differently, have another checksum, or none). */
    nl = memchr(text, '\n', len);
    if (nl == NULL)
        return LK_ERR_STORE_CORRUPT; /* truncated within the first line */
    if ((size_t)(nl - text) != sizeof STORE_MAGIC - 1 + sizeof STORE_VERSION - 1 ||
        memcmp(text + sizeof STORE_MAGIC - 1, STORE_VERSION, sizeof STORE_VERSION - 1) != 0)
        return LK_ERR_STORE_FOREIGN;
    if (memchr(text, '\0', len) != NULL || text[len - 1] != '\n')
        return LK_ERR_STORE_CORRUPT; /* every line ends with \n: else truncated */
    /* The last line: "checksum " + 64 hex digits. */
    sum_line = text + len - 1;
    while (sum_line > text && sum_line[-1] != '\n')
        sum_line--;
    if (sum_line == text || (size_t)(text + len - sum_line) != 9 + 64 + 1 ||
        strncmp(sum_line, "checksum ", 9) != 0)
        return LK_ERR_STORE_CORRUPT;
    err = sha256_hex(text, (size_t)(sum_line - text), want);
    if (err != LK_OK)
        return err;
    if (CRYPTO_memcmp(sum_line + 9, want, 64) != 0)
        return LK_ERR_STORE_CORRUPT;

    end = sum_line;
    while (line < end) {
        nl = memchr(line, '\n', (size_t)(end - line));
        *nl = '\0';
        if (first) {
            if (strcmp(line + sizeof STORE_MAGIC - 1, STORE_VERSION) != 0)
                return LK_ERR_STORE_FOREIGN; /* another (newer) format */
            first = 0;
        } else if (line[0] == '#' || line[0] == '\0') {
            /* comment */
        } else if (strncmp(line, "key ", 4) == 0) {
            char *name = line + 4, *alg_s, *b64, *sp;
            size_t der_len = 0, b64_len, cap;
            uint8_t *der;
            char *name_copy;
            lk_alg alg;

            sp = strchr(name, ' ');
            if (sp == NULL)
                return LK_ERR_STORE_CORRUPT;
            *sp = '\0';
            alg_s = sp + 1;
            sp = strchr(alg_s, ' ');
            if (sp == NULL)
                return LK_ERR_STORE_CORRUPT;
            *sp = '\0';
            b64 = sp + 1;
            b64_len = strlen(b64);
            alg = lk_alg_from_name(alg_s, strlen(alg_s));
            if (!name_ok(name, strlen(name)) || alg == LK_ALG_NONE || b64_len == 0 ||
                b64_len > LK_B64URL_ENCODED_LEN(KEY_DER_MAX))
                return LK_ERR_STORE_CORRUPT;
            if (find(s, name) != NULL)
                return LK_ERR_STORE_CORRUPT; /* a name twice */
            cap = LK_B64URL_DECODED_MAX(b64_len);
            der = OPENSSL_malloc(cap);
            if (der == NULL)
                return LK_ERR_NOMEM;
            if (lk_b64url_decode(b64, b64_len, der, cap, &der_len, 0) != LK_OK) {
                OPENSSL_clear_free(der, cap);
                return LK_ERR_STORE_CORRUPT;
            }
            name_copy = strdup(name);
            if (name_copy == NULL) {
                OPENSSL_clear_free(der, cap);
                return LK_ERR_NOMEM;
            }
            err = entry_add(s, name_copy, alg, der, der_len, 0);
            if (err != LK_OK) {
                free(name_copy);
                OPENSSL_clear_free(der, cap);
                return err;
            }
        } else {
            return LK_ERR_STORE_CORRUPT;
        }
        line = nl + 1;
    }
    return LK_OK;
}

static lk_err load(lk_softstore *s)
{
    char *text = NULL;
    size_t len = 0;
    lk_err err = read_all(s->path, &text, &len);
    if (err != LK_OK)
        return err;
    err = parse(s, text, len);
    OPENSSL_clear_free(text, len + 1);
    if (err == LK_OK && s->index_cap == 0)
        err = index_rebuild(s);
    return err;
}

/* ---- writing ---- */

struct strbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void sb_put(struct strbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        np = OPENSSL_malloc(cap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        if (b->p != NULL) {
            memcpy(np, b->p, b->len);
            OPENSSL_clear_free(b->p, b->cap);
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct strbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static lk_err render(const lk_softstore *s, struct strbuf *b)
{
    size_t i;
    char sum[65];
    lk_err err;

    sb_puts(b, STORE_MAGIC STORE_VERSION "\n"
               "# latchkey software key store. DEVELOPMENT AND SIMULATION ONLY:\n"
               "# the private keys below are in the clear. Production keys belong in a\n"
               "# secure element. Do not edit: the checksum line guards the contents.\n");
    for (i = 0; i < s->n && !b->failed; i++) {
        const struct entry *e = &s->e[i];
        size_t cap = LK_B64URL_ENCODED_LEN(e->der_len) + 1, enc_len = 0;
        char *enc = OPENSSL_malloc(cap);
        if (enc == NULL)
            return LK_ERR_NOMEM;
        if (lk_b64url_encode(e->der, e->der_len, enc, cap, &enc_len) != LK_OK) {
            OPENSSL_clear_free(enc, cap);
            return LK_ERR_CRYPTO;
        }
        sb_puts(b, "key ");
        sb_puts(b, e->name);
        sb_puts(b, " ");
        sb_puts(b, lk_alg_name(e->alg));
        sb_puts(b, " ");
        sb_put(b, enc, enc_len);
        sb_puts(b, "\n");
        OPENSSL_clear_free(enc, cap);
    }
    if (b->failed)
        return LK_ERR_NOMEM;
    err = sha256_hex(b->p, b->len, sum);
    if (err != LK_OK)
        return err;
    sb_puts(b, "checksum ");
    sb_puts(b, sum);
    sb_puts(b, "\n");
    return b->failed ? LK_ERR_NOMEM : LK_OK;
}

static int write_full(int fd, const char *p, size_t n)
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

/* Write the store to a temporary file beside it, fsync, rename over the old
 * one and fsync the directory: a crash leaves either file, never a mix. */
static lk_err write_atomic(const lk_softstore *s)
{
    struct strbuf b = {0};
    char *tmp = NULL, *dir = NULL, *slash;
    int fd = -1, dfd;
    lk_err err = render(s, &b);

    if (err != LK_OK)
        goto exit;
    err = LK_ERR_NOMEM;
    if (asprintf(&tmp, "%s.tmp", s->path) < 0) {
        tmp = NULL;
        goto exit;
    }
    err = LK_ERR_IO;
    /* Only a writer holding the lock creates PATH.tmp, so one found here is
     * left by a crashed writer: remove it. */
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        goto exit;
    if (fchmod(fd, 0600) != 0 || write_full(fd, b.p, b.len) != 0 || fsync(fd) != 0)
        goto exit;
    if (close(fd) != 0) {
        fd = -1;
        goto exit;
    }
    fd = -1;
    if (rename(tmp, s->path) != 0)
        goto exit;
    free(tmp);
    tmp = NULL;
    dir = strdup(s->path);
    if (dir != NULL) {
        slash = strrchr(dir, '/');
        if (slash == NULL)
            strcpy(dir, ".");
        else if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd); /* best effort: some file systems refuse it */
            close(dfd);
        }
    }
    err = LK_OK;
exit:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    if (b.p != NULL)
        OPENSSL_clear_free(b.p, b.cap);
    return err;
}

/* An advisory lock on PATH.lock serialises read-modify-write cycles. */
static int lock_store(const char *path)
{
    char *lp = NULL;
    int fd;
    if (asprintf(&lp, "%s.lock", path) < 0)
        return -1;
    fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    free(lp);
    if (fd < 0)
        return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void unlock_store(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* Merge pending keys into what is on disk now, and write the result. */
static lk_err save_locked(lk_softstore *s)
{
    lk_softstore disk = {0};
    lk_err err;
    size_t i;

    disk.path = s->path;
    err = load(&disk);
    if (err == LK_ERR_STORE_MISSING)
        err = index_rebuild(&disk);
    if (err != LK_OK)
        goto exit;
    for (i = 0; i < s->n; i++) {
        struct entry *e = &s->e[i];
        char *name;
        uint8_t *der;
        if (!e->pending)
            continue;
        if (find(&disk, e->name) != NULL) {
            err = LK_ERR_KEY_EXISTS;
            goto exit;
        }
        name = strdup(e->name);
        der = OPENSSL_malloc(e->der_len);
        if (name == NULL || der == NULL) {
            free(name);
            OPENSSL_free(der);
            err = LK_ERR_NOMEM;
            goto exit;
        }
        memcpy(der, e->der, e->der_len);
        err = entry_add(&disk, name, e->alg, der, e->der_len, 0);
        if (err != LK_OK) {
            free(name);
            OPENSSL_clear_free(der, e->der_len);
            goto exit;
        }
    }
    err = write_atomic(&disk);
    if (err != LK_OK)
        goto exit;
    /* Adopt the merged view (keeping decoded keys of our own entries would
     * be an optimisation; correctness first). */
    entries_free(s);
    s->e = disk.e;
    s->n = disk.n;
    s->cap = disk.cap;
    s->index = disk.index;
    s->index_cap = disk.index_cap;
    disk.e = NULL;
    disk.index = NULL;
    disk.n = 0;
exit:
    entries_free(&disk);
    return err;
}

lk_err lk_softstore_save(lk_softstore *s)
{
    size_t i;
    int fd, any = 0;
    lk_err err;
    if (s == NULL)
        return LK_ERR_ARG;
    for (i = 0; i < s->n; i++)
        any |= s->e[i].pending;
    if (!any)
        return LK_OK;
    fd = lock_store(s->path);
    if (fd < 0)
        return LK_ERR_IO;
    err = save_locked(s);
    unlock_store(fd);
    return err;
}

/* ---- the lk_se operations ---- */

static lk_err entry_key(struct entry *e)
{
    const unsigned char *p;
    if (e->pkey != NULL)
        return LK_OK;
    p = e->der;
    e->pkey = d2i_AutoPrivateKey(NULL, &p, (long)e->der_len);
    if (e->pkey == NULL || p != e->der + e->der_len)
        goto bad;
    if (e->alg == LK_ALG_ES256) {
        char group[32];
        size_t glen = 0;
        if (EVP_PKEY_get_base_id(e->pkey) != EVP_PKEY_EC ||
            !EVP_PKEY_get_utf8_string_param(e->pkey, "group", group, sizeof group, &glen) ||
            strcmp(group, "prime256v1") != 0)
            goto bad;
    } else if (EVP_PKEY_get_base_id(e->pkey) != EVP_PKEY_RSA ||
               EVP_PKEY_get_bits(e->pkey) < (int)LK_RSA_MIN_BITS ||
               EVP_PKEY_get_bits(e->pkey) > (int)LK_RSA_MAX_BITS) {
        goto bad;
    }
    return LK_OK;
bad:
    EVP_PKEY_free(e->pkey);
    e->pkey = NULL;
    return LK_ERR_STORE_CORRUPT;
}

static lk_err soft_public(void *ctx, const char *key, lk_alg *alg,
                          uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    struct entry *e = find(ctx, key);
    unsigned char *p = pub;
    int n;
    lk_err err;

    if (e == NULL)
        return LK_ERR_KEY_NOT_FOUND;
    err = entry_key(e);
    if (err != LK_OK)
        return err;
    n = i2d_PUBKEY(e->pkey, NULL);
    if (n <= 0)
        return LK_ERR_CRYPTO;
    if ((size_t)n > pub_size)
        return LK_ERR_BUFFER;
    if (i2d_PUBKEY(e->pkey, &p) != n)
        return LK_ERR_CRYPTO;
    *alg = e->alg;
    *pub_len = (size_t)n;
    return LK_OK;
}

static lk_err soft_generate(void *ctx, const char *key, lk_alg alg, unsigned bits,
                            uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    lk_softstore *s = ctx;
    EVP_PKEY *pk = NULL;
    PKCS8_PRIV_KEY_INFO *p8;
    unsigned char *der = NULL;
    char *name = NULL;
    int der_len, lockfd = -1;
    lk_err err;
    lk_alg got;

    if (!name_ok(key, strlen(key)))
        return LK_ERR_URI;
    if (alg == LK_ALG_RS256) {
        if (bits == 0)
            bits = LK_RSA_DEFAULT_BITS;
        if (bits < LK_RSA_MIN_BITS)
            return LK_ERR_KEY_WEAK;
        if (bits > LK_RSA_MAX_BITS)
            return LK_ERR_ARG;
    }
    if (find(s, key) != NULL)
        return LK_ERR_KEY_EXISTS;
    if (alg == LK_ALG_ES256)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (pk == NULL)
        return LK_ERR_CRYPTO;
    /* PKCS#8 PrivateKeyInfo, as the format says (i2d_PrivateKey would give
     * the type-specific SEC1 / PKCS#1 encodings). */
    p8 = EVP_PKEY2PKCS8(pk);
    der_len = p8 != NULL ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key octets */
    EVP_PKEY_free(pk);
    if (der_len <= 0 || (size_t)der_len > KEY_DER_MAX) {
        /* An oversize encoding still holds the private key. */
        OPENSSL_clear_free(der, der_len > 0 ? (size_t)der_len : 0);
        return LK_ERR_CRYPTO;
    }
    name = strdup(key);
    if (name == NULL) {
        OPENSSL_clear_free(der, (size_t)der_len);
        return LK_ERR_NOMEM;
    }
    if (!(s->flags & LK_SOFTSTORE_DEFER_SAVE)) {
        lockfd = lock_store(s->path);
        if (lockfd < 0) {
            free(name);
            OPENSSL_clear_free(der, (size_t)der_len);
            return LK_ERR_IO;
        }
    }
    err = entry_add(s, name, alg, der, (size_t)der_len, 1);
    if (err != LK_OK) {
        unlock_store(lockfd);
        free(name);
        OPENSSL_clear_free(der, (size_t)der_len);
        return err;
    }
    if (lockfd >= 0)
        err = save_locked(s);
    unlock_store(lockfd);
    if (err != LK_OK) {
        /* Drop the entry we added (it is last unless save adopted a merged
         * view, which happens only on success). */
        if (s->n > 0 && strcmp(s->e[s->n - 1].name, key) == 0 && s->e[s->n - 1].pending) {
            entry_free(&s->e[--s->n]);
            (void)index_rebuild(s);
        }
        return err;
    }
    return soft_public(s, key, &got, pub, pub_size, pub_len);
}

static lk_err soft_sign(void *ctx, const char *key, lk_alg alg,
                        const uint8_t digest[LK_SHA256_BYTES],
                        uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    struct entry *e = find(ctx, key);
    unsigned char der[80];
    size_t der_len = sizeof der;
    lk_err err;

    if (e == NULL)
        return LK_ERR_KEY_NOT_FOUND;
    if (e->alg != alg)
        return LK_ERR_KEY_TYPE;
    err = entry_key(e);
    if (err != LK_OK)
        return err;
    if (e->sign_ctx == NULL) {
        e->sign_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, e->pkey, NULL);
        if (e->sign_ctx == NULL || EVP_PKEY_sign_init(e->sign_ctx) <= 0 ||
            (alg == LK_ALG_RS256 &&
             (EVP_PKEY_CTX_set_rsa_padding(e->sign_ctx, RSA_PKCS1_PADDING) <= 0 ||
              EVP_PKEY_CTX_set_signature_md(e->sign_ctx, EVP_sha256()) <= 0))) {
            EVP_PKEY_CTX_free(e->sign_ctx);
            e->sign_ctx = NULL;
            return LK_ERR_SIGN;
        }
    }
    if (alg == LK_ALG_RS256) {
        size_t n = (size_t)EVP_PKEY_get_size(e->pkey);
        if (n > sig_size)
            return LK_ERR_BUFFER;
        if (EVP_PKEY_sign(e->sign_ctx, sig, &n, digest, LK_SHA256_BYTES) <= 0)
            return LK_ERR_SIGN;
        *sig_len = n;
        return LK_OK;
    }
    /* ES256: OpenSSL gives DER; JWS wants r||s, each left-padded to 32. */
    if (EVP_PKEY_sign(e->sign_ctx, der, &der_len, digest, LK_SHA256_BYTES) <= 0)
        return LK_ERR_SIGN;
    if (lk_ecdsa_der_to_raw(der, der_len, sig) != LK_OK)
        return LK_ERR_SIGN;
    *sig_len = LK_ES256_SIG_BYTES;
    return LK_OK;
}

static lk_err soft_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    if (len > INT_MAX)
        return LK_ERR_ARG;
    return RAND_bytes(out, (int)len) == 1 ? LK_OK : LK_ERR_RNG;
}

/* The store is a Linux backend, so it offers OpenSSL's SHA-256 (which uses
 * the CPU's SHA extensions) as the element's hash engine; the core's portable
 * SHA-256 is for microcontrollers. */
static lk_err soft_sha256(void *ctx, const uint8_t *data, size_t len,
                          uint8_t out[LK_SHA256_BYTES])
{
    lk_softstore *s = ctx;
    unsigned int n = 0;

    if (s->sha256 == NULL) {
        s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
        s->md_ctx = EVP_MD_CTX_new();
        if (s->sha256 == NULL || s->md_ctx == NULL) {
            EVP_MD_free(s->sha256);
            EVP_MD_CTX_free(s->md_ctx);
            s->sha256 = NULL;
            s->md_ctx = NULL;
            return LK_ERR_CRYPTO;
        }
    }
    if (!EVP_DigestInit_ex2(s->md_ctx, s->sha256, NULL) ||
        !EVP_DigestUpdate(s->md_ctx, data, len) ||
        !EVP_DigestFinal_ex(s->md_ctx, out, &n) || n != LK_SHA256_BYTES)
        return LK_ERR_CRYPTO;
    return LK_OK;
}

static const lk_se_ops soft_ops = {
    .name = "soft",
    .generate = soft_generate,
    .public_key = soft_public,
    .sign_digest = soft_sign,
    .random = soft_random,
    .sha256 = soft_sha256,
};

/* ---- public API ---- */

lk_err lk_softstore_open(const char *path, unsigned flags, lk_softstore **out)
{
    lk_softstore *s;
    lk_err err;
    int fd;

    if (out != NULL)
        *out = NULL;
    if (path == NULL || out == NULL || path[0] == '\0' ||
        (flags & ~(LK_SOFTSTORE_CREATE | LK_SOFTSTORE_DEFER_SAVE | LK_SOFTSTORE_CREATE_ON_WRITE)) != 0)
        return LK_ERR_ARG;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return LK_ERR_NOMEM;
    s->flags = flags;
    s->path = strdup(path);
    if (s->path == NULL) {
        free(s);
        return LK_ERR_NOMEM;
    }
    err = load(s);
    if (err == LK_ERR_STORE_MISSING && (flags & LK_SOFTSTORE_CREATE_ON_WRITE)) {
        /* Empty in memory; the first save (under the lock, re-reading the
         * disk) creates the file. */
        entries_free(s);
        err = index_rebuild(s);
    } else if (err == LK_ERR_STORE_MISSING && (flags & LK_SOFTSTORE_CREATE)) {
        /* Create it now, under the lock, unless someone else just did. */
        entries_free(s);
        fd = lock_store(path);
        if (fd < 0) {
            err = LK_ERR_IO;
        } else {
            err = load(s);
            if (err == LK_ERR_STORE_MISSING) {
                entries_free(s);
                err = index_rebuild(s);
                if (err == LK_OK)
                    err = write_atomic(s);
            }
            unlock_store(fd);
        }
    }
    if (err != LK_OK) {
        lk_softstore_close(s);
        return err;
    }
    *out = s;
    return LK_OK;
}

void lk_softstore_close(lk_softstore *s)
{
    if (s == NULL)
        return;
    entries_free(s);
    EVP_MD_CTX_free(s->md_ctx);
    EVP_MD_free(s->sha256);
    free(s->path);
    free(s);
}

lk_se lk_softstore_se(lk_softstore *s)
{
    lk_se se;
    se.ops = &soft_ops;
    se.ctx = s;
    return se;
}

size_t lk_softstore_count(const lk_softstore *s)
{
    return s == NULL ? 0 : s->n;
}

lk_err lk_softstore_entry(const lk_softstore *s, size_t i, const char **name, lk_alg *alg)
{
    if (s == NULL || name == NULL || alg == NULL || i >= s->n)
        return LK_ERR_ARG;
    *name = s->e[i].name;
    *alg = s->e[i].alg;
    return LK_OK;
}
