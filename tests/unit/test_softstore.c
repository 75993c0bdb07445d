/*
 * test_softstore.c — the software key store (lk_softstore.h) on real files
 * in a fresh temporary directory per test, no mocks:
 *
 *   - open / create (mode exactly 0600 whatever the umask), argument checks;
 *   - generate ES256 and RS256, public keys checked with OpenSSL, reopening,
 *     rejected names and RSA sizes that leave the file byte-for-byte intact;
 *   - signatures through lk_se_sign_digest and lk_jwt_iotcore, verified by
 *     OpenSSL;
 *   - damaged files: every prefix, every flipped byte, checksum and trailer
 *     damage, and well-formed files (checksum recomputed here with OpenSSL)
 *     that are wrong inside: duplicate names, bad base64url, unknown
 *     algorithms, keys that are not keys or are of the wrong kind;
 *   - foreign files, permissions, symlinks, directories, FIFOs;
 *   - atomic rewrite (no temporary files, a read-only directory changes
 *     nothing), concurrent writers (processes and handles), deferred saves.
 *
 * Child processes cannot use cmocka's assertions: they run plain functions
 * that print what failed and return non-zero (CHILD_CHECK), and the parent
 * asserts on their exit status.
 */
#include "lk_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_se.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_softstore.h"

#define STORE_FILE "keys.store"
#define MAGIC "latchkey-keystore " /* 18 bytes: shorter prefixes are FOREIGN */
#define HEADER "latchkey-keystore v1\n"
#define NOBODY 65534

/* ------------------------------------------------------------------ */
/* Fixture: a fresh directory and the store path inside it.           */

struct fx {
    char *dir;
    char path[4096];
    mode_t old_umask;
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->dir = lk_test_tmpdir();
    if (f->dir == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/" STORE_FILE, f->dir);
    f->old_umask = umask(022);
    umask(f->old_umask);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    umask(f->old_umask);
    (void)chmod(f->dir, 0700); /* in case a read-only test stopped half-way */
    lk_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A store with an ES256 key "es" and an RS256-2048 key "rs", made once for
 * the group (RSA key generation is slow) and copied into each test's own
 * directory by use_template(). */
static char *g_tmpl_dir;
static char g_tmpl_path[4096];

/* ------------------------------------------------------------------ */
/* Small file helpers.                                                 */

static void write_bytes(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd;
    (void)unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    if (len > 0)
        assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static char *read_bytes(const char *path, size_t *len)
{
    char *p = lk_test_read_file(path, len);
    assert_non_null(p);
    return p;
}

static void assert_file_is(const char *path, const char *want, size_t want_len)
{
    size_t len = 0;
    char *got = read_bytes(path, &len);
    if (len != want_len || memcmp(got, want, len) != 0)
        fail_msg("%s changed (%zu bytes, was %zu)", path, len, want_len);
    free(got);
}

static void use_template(const struct fx *f)
{
    size_t len = 0;
    char *t = read_bytes(g_tmpl_path, &len);
    write_bytes(f->path, t, len, 0600);
    free(t);
}

/* The directory's entries, sorted, comma-separated ("." and ".." left out). */
static void dir_listing(const char *dir, char *out, size_t size)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), i;
    size_t o = 0;
    assert_true(n >= 0);
    out[0] = '\0';
    for (i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            int w = snprintf(out + o, size - o, "%s%s", o ? "," : "", names[i]->d_name);
            assert_true(w >= 0 && (size_t)w < size - o);
            o += (size_t)w;
        }
        free(names[i]);
    }
    free(names);
}

static void assert_only_store_files(const struct fx *f)
{
    char listing[4096];
    dir_listing(f->dir, listing, sizeof listing);
    assert_string_equal(listing, STORE_FILE "," STORE_FILE ".lock");
}

/* A growable string. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_add(struct sbuf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3)))
static void sb_fmt(struct sbuf *b, const char *fmt, ...)
{
    char tmp[8192];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof tmp);
    sb_add(b, tmp, (size_t)n);
}

/* SHA-256 in lower-case hex, by OpenSSL (independent of the store's code). */
static void sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];
    unsigned int mdlen = 0;
    int i;
    assert_int_equal(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
    assert_int_equal(mdlen, 32);
    for (i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Write text (everything before the checksum line, NULs allowed) followed by
 * a correct checksum line: a well-formed file whatever text says. */
static void forge_raw(const char *path, const char *text, size_t len)
{
    struct sbuf b = {0};
    char hex[65];
    sha256_hex(text, len, hex);
    sb_add(&b, text, len);
    sb_fmt(&b, "checksum %s\n", hex);
    write_bytes(path, b.p, b.len, 0600);
    free(b.p);
}

/* The v1 header, body (key, comment lines...), and a correct checksum. */
static void forge(const char *path, const char *body)
{
    struct sbuf b = {0};
    sb_str(&b, HEADER);
    sb_str(&b, body);
    forge_raw(path, b.p, b.len);
    free(b.p);
}

/* Open, expecting err; on failure *out must be NULL. Closes on success. */
static lk_err open_err(const char *path, unsigned flags)
{
    lk_softstore *s = (lk_softstore *)(uintptr_t)1; /* must be overwritten */
    lk_err err = lk_softstore_open(path, flags, &s);
    if (err != LK_OK)
        assert_null(s);
    else
        assert_non_null(s);
    lk_softstore_close(s);
    return err;
}

static void assert_open_gives(const char *path, lk_err want, const char *what)
{
    lk_err err = open_err(path, 0);
    if (err != want)
        fail_msg("%s: open gave %s, expected %s", what, lk_errname(err), lk_errname(want));
}

static lk_softstore *open_ok(const char *path, unsigned flags)
{
    lk_softstore *s = NULL;
    lk_err err = lk_softstore_open(path, flags, &s);
    if (err != LK_OK)
        fail_msg("open(%s) = %s", path, lk_errname(err));
    assert_non_null(s);
    return s;
}

/* ------------------------------------------------------------------ */
/* OpenSSL-side keys and checks.                                       */

static EVP_PKEY *parse_spki(const uint8_t *pub, size_t len)
{
    const unsigned char *p = pub;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    assert_non_null(pk);
    assert_ptr_equal(p, pub + len); /* the whole buffer, nothing after */
    return pk;
}

static void check_es256_pub(const uint8_t *pub, size_t len)
{
    EVP_PKEY *pk = parse_spki(pub, len);
    char group[64];
    size_t glen = 0;
    uint8_t point[LK_P256_POINT_BYTES];
    assert_int_equal(EVP_PKEY_get_base_id(pk), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_utf8_string_param(pk, "group", group, sizeof group, &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(EVP_PKEY_get_bits(pk), 256);
    EVP_PKEY_free(pk);
    /* The fixed layout the service side and the core expect. */
    assert_int_equal(len, LK_P256_SPKI_BYTES);
    assert_int_equal(lk_p256_point_from_spki(pub, len, point), LK_OK);
}

static void check_rs256_pub(const uint8_t *pub, size_t len, int bits)
{
    EVP_PKEY *pk = parse_spki(pub, len);
    assert_int_equal(EVP_PKEY_get_base_id(pk), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_get_bits(pk), bits);
    EVP_PKEY_free(pk);
}

/* ES256 raw r||s over a digest, checked as OpenSSL's DER ECDSA_SIG. */
static int verify_es256(const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
                        const uint8_t sig[64])
{
    EVP_PKEY *pk = parse_spki(pub, pub_len);
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int der_len, ok;
    EVP_PKEY_CTX *ctx;

    assert_non_null(es);
    assert_non_null(r);
    assert_non_null(s);
    assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
    der_len = i2d_ECDSA_SIG(es, &der);
    assert_true(der_len > 0);
    ctx = EVP_PKEY_CTX_new(pk, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    ok = EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, 32) == 1;
    EVP_PKEY_CTX_free(ctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_free(pk);
    return ok;
}

/* RS256: PKCS#1 v1.5 over DigestInfo(SHA-256, digest). */
static int verify_rs256(const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
                        const uint8_t *sig, size_t sig_len)
{
    EVP_PKEY *pk = parse_spki(pub, pub_len);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    int ok;
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
    assert_true(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0);
    ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, 32) == 1;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return ok;
}

static EVP_PKEY *keygen(const char *type, const char *curve_or_null, size_t rsa_bits)
{
    EVP_PKEY *pk;
    if (strcmp(type, "RSA") == 0)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", rsa_bits);
    else if (curve_or_null != NULL)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, type, curve_or_null);
    else
        pk = EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(pk);
    return pk;
}

/* PKCS#8 PrivateKeyInfo DER of pk (the format the file is specified with). */
static uint8_t *pkcs8_der(EVP_PKEY *pk, size_t *len)
{
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
    unsigned char *der = NULL;
    int n;
    assert_non_null(p8);
    n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
    PKCS8_PRIV_KEY_INFO_free(p8);
    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

/* The key's own ("traditional") DER: SEC1 ECPrivateKey / PKCS#1. */
static uint8_t *trad_der(EVP_PKEY *pk, size_t *len)
{
    unsigned char *der = NULL;
    int n = i2d_PrivateKey(pk, &der);
    assert_true(n > 0);
    *len = (size_t)n;
    return der;
}

static void spki_of(EVP_PKEY *pk, uint8_t *out, size_t size, size_t *len)
{
    unsigned char *p = out;
    int n = i2d_PUBKEY(pk, NULL);
    assert_true(n > 0 && (size_t)n <= size);
    assert_int_equal(i2d_PUBKEY(pk, &p), n);
    *len = (size_t)n;
}

/* "key NAME ALG B64URL(der)\n" appended to b. */
static void key_line(struct sbuf *b, const char *name, const char *alg,
                     const uint8_t *der, size_t der_len)
{
    char *enc = lk_test_b64url_ref_encode(der, der_len);
    assert_non_null(enc);
    sb_fmt(b, "key %s %s %s\n", name, alg, enc);
    free(enc);
}

static void random_digest(uint64_t *seed, uint8_t d[32])
{
    lk_test_rand_bytes(seed, d, 32);
}

/* Sign digest with key through the dispatcher and verify with OpenSSL. */
static void sign_and_verify(const lk_se *se, const char *key, lk_alg alg,
                            const uint8_t digest[32])
{
    uint8_t pub[LK_PUBKEY_DER_MAX], sig[LK_SIG_MAX_BYTES];
    size_t pub_len = 0, sig_len = 0;
    lk_alg got = LK_ALG_NONE;
    lk_err err;

    assert_int_equal(lk_se_public_key(se, key, &got, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(got, alg);
    err = lk_se_sign_digest(se, key, alg, digest, sig, sizeof sig, &sig_len);
    if (err != LK_OK)
        fail_msg("sign(%s) = %s", key, lk_errname(err));
    if (alg == LK_ALG_ES256) {
        assert_int_equal(sig_len, LK_ES256_SIG_BYTES);
        assert_true(verify_es256(pub, pub_len, digest, sig));
    } else {
        EVP_PKEY *pk = parse_spki(pub, pub_len);
        assert_int_equal(sig_len, (size_t)EVP_PKEY_get_size(pk));
        EVP_PKEY_free(pk);
        assert_true(verify_rs256(pub, pub_len, digest, sig, sig_len));
    }
}

/* ------------------------------------------------------------------ */
/* Child processes: plain checks, no cmocka.                            */

#define CHILD_CHECK(cond)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "child %ld: check failed at %s:%d: %s\n",         \
                    (long)getpid(), __FILE__, __LINE__, #cond);                \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* Block until the parent closes the write end of the start pipe. */
static void wait_start(int rfd)
{
    char c;
    ssize_t r;
    do
        r = read(rfd, &c, 1);
    while (r < 0 && errno == EINTR);
}

/* Open path with flags and generate count ES256 keys "c<id>-k<i>". */
static int child_generate(const char *path, unsigned flags, int id, int count)
{
    lk_softstore *s = NULL;
    lk_se se;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len;
    char name[64];
    int i;
    lk_err err = lk_softstore_open(path, flags, &s);

    if (err != LK_OK)
        fprintf(stderr, "child %d: open: %s\n", id, lk_errname(err));
    CHILD_CHECK(err == LK_OK);
    se = lk_softstore_se(s);
    for (i = 0; i < count; i++) {
        snprintf(name, sizeof name, "c%d-k%d", id, i);
        err = lk_se_generate(&se, name, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len);
        if (err != LK_OK) {
            fprintf(stderr, "child %d: generate %s: %s\n", id, name, lk_errname(err));
            lk_softstore_close(s);
            return 1;
        }
    }
    lk_softstore_close(s);
    return 0;
}

static pid_t fork_or_fail(void)
{
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    return pid;
}

/* Wait for pid; returns its exit status (-1 if it did not exit normally). */
static int wait_child(pid_t pid)
{
    int st = 0;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    assert_int_equal(r, pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ================================================================== */
/* Open and create.                                                     */

static void test_open_missing_and_create(void **state)
{
    struct fx *f = *state;
    struct stat st;
    char lock[4200], listing[4096];
    lk_softstore *s = (lk_softstore *)(uintptr_t)1;

    /* No file, no CREATE: MISSING, *out NULL, and nothing created. */
    assert_int_equal(lk_softstore_open(f->path, 0, &s), LK_ERR_STORE_MISSING);
    assert_null(s);
    dir_listing(f->dir, listing, sizeof listing);
    assert_string_equal(listing, "");
    s = (lk_softstore *)(uintptr_t)1;
    assert_int_equal(lk_softstore_open(f->path, LK_SOFTSTORE_DEFER_SAVE, &s),
                     LK_ERR_STORE_MISSING);
    assert_null(s);

    /* CREATE under a permissive umask: still exactly 0600. */
    umask(0);
    s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    assert_int_equal(lk_softstore_count(s), 0);
    assert_int_equal(stat(f->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    snprintf(lock, sizeof lock, "%s.lock", f->path);
    assert_int_equal(stat(lock, &st), 0);
    assert_int_equal(st.st_mode & 077, 0); /* the lock file too */
    assert_only_store_files(f);

    /* Still 0600 after a rewrite (a new file replaces the old). */
    {
        lk_se se = lk_softstore_se(s);
        uint8_t pub[LK_PUBKEY_DER_MAX];
        size_t pub_len = 0;
        assert_int_equal(lk_se_generate(&se, "k", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                         LK_OK);
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
    }
    lk_softstore_close(s);
    umask(f->old_umask);

    /* The empty store is a valid file: header, comments, checksum. */
    {
        size_t len = 0;
        char *text;
        lk_softstore *e;
        char other[4200];
        snprintf(other, sizeof other, "%s/empty.store", f->dir);
        e = open_ok(other, LK_SOFTSTORE_CREATE);
        lk_softstore_close(e);
        text = read_bytes(other, &len);
        assert_true(len > strlen(HEADER) + 74);
        assert_memory_equal(text, HEADER, strlen(HEADER));
        assert_memory_equal(text + len - 74, "checksum ", 9);
        assert_int_equal(text[len - 1], '\n');
        free(text);
        e = open_ok(other, 0);
        assert_int_equal(lk_softstore_count(e), 0);
        lk_softstore_close(e);
    }

    /* CREATE on an existing store opens it, never truncates it. */
    s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    assert_int_equal(lk_softstore_count(s), 1);
    lk_softstore_close(s);
    s = open_ok(f->path, 0);
    assert_int_equal(lk_softstore_count(s), 1);
    lk_softstore_close(s);
}

/* CREATE_ON_WRITE: a missing store opens empty and nothing is written
 * until a key is; a refused generate leaves no file (latchkey key generate
 * into a new store with a bad name, a weak RSA size, a failed write). */
static void test_create_on_write(void **state)
{
    struct fx *f = *state;
    char listing[4096];
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE_ON_WRITE), *r;
    lk_se se = lk_softstore_se(s);
    lk_alg alg = LK_ALG_NONE;

    assert_int_equal(lk_softstore_count(s), 0);
    dir_listing(f->dir, listing, sizeof listing);
    assert_string_equal(listing, "");
    /* refused: nothing on disk, not even the lock */
    assert_int_equal(lk_se_generate(&se, "bad/name", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_ERR_URI);
    assert_int_equal(lk_se_generate(&se, "k", LK_ALG_RS256, 1024, pub, sizeof pub, &pub_len),
                     LK_ERR_KEY_WEAK);
    assert_int_equal(lk_se_public_key(&se, "k", &alg, pub, sizeof pub, &pub_len),
                     LK_ERR_KEY_NOT_FOUND);
    assert_int_equal(lk_softstore_save(s), LK_OK); /* nothing pending: no file */
    dir_listing(f->dir, listing, sizeof listing);
    assert_string_equal(listing, "");
    /* the first key writes the file, 0600, with the key */
    assert_int_equal(lk_se_generate(&se, "k", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len), LK_OK);
    assert_only_store_files(f);
    r = open_ok(f->path, 0);
    assert_int_equal(lk_softstore_count(r), 1);
    lk_softstore_close(r);
    lk_softstore_close(s);
    /* on an existing store it is a plain open; with CREATE too */
    s = open_ok(f->path, LK_SOFTSTORE_CREATE_ON_WRITE | LK_SOFTSTORE_CREATE);
    assert_int_equal(lk_softstore_count(s), 1);
    lk_softstore_close(s);
    /* with DEFER_SAVE: written by lk_softstore_save */
    {
        char other[4200];
        struct stat st;
        snprintf(other, sizeof other, "%s/deferred.store", f->dir);
        s = open_ok(other, LK_SOFTSTORE_CREATE_ON_WRITE | LK_SOFTSTORE_DEFER_SAVE);
        se = lk_softstore_se(s);
        assert_int_equal(lk_se_generate(&se, "a", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len), LK_OK);
        assert_int_equal(stat(other, &st), -1);
        assert_int_equal(lk_softstore_save(s), LK_OK);
        assert_int_equal(stat(other, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        lk_softstore_close(s);
    }
}

static void test_api_arguments(void **state)
{
    struct fx *f = *state;
    lk_softstore *s = (lk_softstore *)(uintptr_t)1;
    const char *name = NULL;
    lk_alg alg = LK_ALG_NONE;
    size_t len = 0;
    char *before;
    uint8_t rnd[64];

    lk_softstore_close(NULL); /* no-op */
    assert_int_equal(lk_softstore_save(NULL), LK_ERR_ARG);
    assert_int_equal(lk_softstore_count(NULL), 0);
    assert_int_equal(lk_softstore_entry(NULL, 0, &name, &alg), LK_ERR_ARG);

    /* Unknown flags: refused before anything is created. */
    assert_int_equal(lk_softstore_open(f->path, 8u, &s), LK_ERR_ARG);
    assert_null(s);
    s = (lk_softstore *)(uintptr_t)1;
    assert_int_equal(lk_softstore_open(f->path, LK_SOFTSTORE_CREATE | 0x80000000u, &s),
                     LK_ERR_ARG);
    assert_null(s);
    assert_int_equal(access(f->path, F_OK), -1);
    s = (lk_softstore *)(uintptr_t)1;
    assert_int_equal(lk_softstore_open(NULL, LK_SOFTSTORE_CREATE, &s), LK_ERR_ARG);
    assert_null(s);
    s = (lk_softstore *)(uintptr_t)1;
    assert_int_equal(lk_softstore_open("", LK_SOFTSTORE_CREATE, &s), LK_ERR_ARG);
    assert_null(s);
    assert_int_equal(lk_softstore_open(f->path, LK_SOFTSTORE_CREATE, NULL), LK_ERR_ARG);
    assert_int_equal(access(f->path, F_OK), -1);

    /* Entries out of range or with NULL outputs. */
    s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    assert_int_equal(lk_softstore_entry(s, 0, &name, &alg), LK_ERR_ARG);
    {
        lk_se se = lk_softstore_se(s);
        uint8_t pub[LK_PUBKEY_DER_MAX];
        size_t pub_len = 0;
        assert_int_equal(lk_se_generate(&se, "a", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                         LK_OK);
        assert_int_equal(lk_softstore_entry(s, 0, NULL, &alg), LK_ERR_ARG);
        assert_int_equal(lk_softstore_entry(s, 0, &name, NULL), LK_ERR_ARG);
        assert_int_equal(lk_softstore_entry(s, 1, &name, &alg), LK_ERR_ARG);
        assert_int_equal(lk_softstore_entry(s, (size_t)-1, &name, &alg), LK_ERR_ARG);
        assert_int_equal(lk_softstore_entry(s, 0, &name, &alg), LK_OK);
        assert_string_equal(name, "a");
        assert_int_equal(alg, LK_ALG_ES256);

        /* The random operation (OpenSSL's DRBG). */
        memset(rnd, 0, sizeof rnd);
        assert_int_equal(lk_se_random(&se, rnd, sizeof rnd), LK_OK);
        assert_false(lk_test_all_bytes(rnd, sizeof rnd, 0));
    }

    /* save with nothing pending: OK, and the file is not rewritten. */
    before = read_bytes(f->path, &len);
    {
        struct stat st1, st2;
        assert_int_equal(stat(f->path, &st1), 0);
        assert_int_equal(lk_softstore_save(s), LK_OK);
        assert_int_equal(stat(f->path, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);
    }
    assert_file_is(f->path, before, len);
    free(before);
    lk_softstore_close(s);
}

/* ================================================================== */
/* Generate.                                                            */

static void test_generate_and_reopen(void **state)
{
    struct fx *f = *state;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE), *r;
    lk_se se = lk_softstore_se(s), rse;
    uint8_t es_pub[LK_PUBKEY_DER_MAX], rs_pub[LK_PUBKEY_DER_MAX], pub[LK_PUBKEY_DER_MAX];
    size_t es_len = 0, rs_len = 0, pub_len = 0;
    lk_alg alg = LK_ALG_NONE;
    const char *name = NULL;

    assert_int_equal(lk_se_generate(&se, "dev-es", LK_ALG_ES256, 0, es_pub, sizeof es_pub,
                                    &es_len), LK_OK);
    check_es256_pub(es_pub, es_len);
    assert_int_equal(lk_se_generate(&se, "dev-rs", LK_ALG_RS256, 2048, rs_pub, sizeof rs_pub,
                                    &rs_len), LK_OK);
    check_rs256_pub(rs_pub, rs_len, 2048);

    /* public_key gives back what generate returned. */
    assert_int_equal(lk_se_public_key(&se, "dev-es", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(alg, LK_ALG_ES256);
    assert_int_equal(pub_len, es_len);
    assert_memory_equal(pub, es_pub, es_len);
    assert_int_equal(lk_se_public_key(&se, "dev-rs", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(alg, LK_ALG_RS256);
    assert_int_equal(pub_len, rs_len);
    assert_memory_equal(pub, rs_pub, rs_len);

    assert_int_equal(lk_softstore_count(s), 2);
    assert_int_equal(lk_softstore_entry(s, 0, &name, &alg), LK_OK);
    assert_string_equal(name, "dev-es");
    assert_int_equal(alg, LK_ALG_ES256);
    assert_int_equal(lk_softstore_entry(s, 1, &name, &alg), LK_OK);
    assert_string_equal(name, "dev-rs");
    assert_int_equal(alg, LK_ALG_RS256);
    assert_only_store_files(f);

    /* A new handle reads the same keys from disk. */
    r = open_ok(f->path, 0);
    rse = lk_softstore_se(r);
    assert_int_equal(lk_softstore_count(r), 2);
    assert_int_equal(lk_softstore_entry(r, 0, &name, &alg), LK_OK);
    assert_string_equal(name, "dev-es");
    assert_int_equal(alg, LK_ALG_ES256);
    assert_int_equal(lk_softstore_entry(r, 1, &name, &alg), LK_OK);
    assert_string_equal(name, "dev-rs");
    assert_int_equal(alg, LK_ALG_RS256);
    assert_int_equal(lk_se_public_key(&rse, "dev-es", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(alg, LK_ALG_ES256);
    assert_int_equal(pub_len, es_len);
    assert_memory_equal(pub, es_pub, es_len);
    assert_int_equal(lk_se_public_key(&rse, "dev-rs", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(alg, LK_ALG_RS256);
    assert_int_equal(pub_len, rs_len);
    assert_memory_equal(pub, rs_pub, rs_len);
    /* Unknown name: NOT_FOUND, output wiped. */
    memset(pub, 0xA5, sizeof pub);
    assert_int_equal(lk_se_public_key(&rse, "dev-xx", &alg, pub, sizeof pub, &pub_len),
                     LK_ERR_KEY_NOT_FOUND);
    assert_int_equal(pub_len, 0);
    assert_true(lk_test_all_bytes(pub, sizeof pub, 0));
    /* Too small a buffer for the RSA key: BUFFER. */
    assert_int_equal(lk_se_public_key(&rse, "dev-rs", &alg, pub, 100, &pub_len), LK_ERR_BUFFER);
    lk_softstore_close(r);

    /* The stored private keys are PKCS#8 PrivateKeyInfo, as the format says,
     * and each matches its public key. */
    {
        size_t len = 0, i;
        char *text = read_bytes(f->path, &len), *line, *save = NULL;
        int keys = 0;
        for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
            char *kname, *kalg, *b64;
            uint8_t *der;
            size_t der_len = 0;
            const unsigned char *p;
            PKCS8_PRIV_KEY_INFO *p8;
            EVP_PKEY *pk;
            uint8_t spki[LK_PUBKEY_DER_MAX];
            size_t spki_len = 0;

            if (strncmp(line, "key ", 4) != 0)
                continue;
            kname = line + 4;
            kalg = strchr(kname, ' ');
            assert_non_null(kalg);
            *kalg++ = '\0';
            b64 = strchr(kalg, ' ');
            assert_non_null(b64);
            *b64++ = '\0';
            der = lk_test_b64url_ref_decode(b64, strlen(b64), &der_len);
            assert_non_null(der);
            p = der;
            p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der_len);
            if (p8 == NULL || p != der + der_len)
                fail_msg("key %s: stored DER is not PKCS#8 PrivateKeyInfo", kname);
            pk = EVP_PKCS82PKEY(p8);
            assert_non_null(pk);
            spki_of(pk, spki, sizeof spki, &spki_len);
            if (strcmp(kname, "dev-es") == 0) {
                assert_string_equal(kalg, "ES256");
                assert_int_equal(spki_len, es_len);
                assert_memory_equal(spki, es_pub, es_len);
            } else {
                assert_string_equal(kname, "dev-rs");
                assert_string_equal(kalg, "RS256");
                assert_int_equal(spki_len, rs_len);
                assert_memory_equal(spki, rs_pub, rs_len);
            }
            keys++;
            EVP_PKEY_free(pk);
            PKCS8_PRIV_KEY_INFO_free(p8);
            OPENSSL_cleanse(der, der_len);
            free(der);
        }
        assert_int_equal(keys, 2);
        for (i = 0; i < len; i++)
            text[i] = 0;
        free(text);
    }
    lk_softstore_close(s);
}

static void test_generate_rejections(void **state)
{
    struct fx *f = *state;
    lk_softstore *s;
    lk_se se;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0, len = 0, i;
    char *before, listing[4096], listing_after[4096];
    char n255[256], n256[257], too_long[LK_KEY_REF_MAX + 2];
    static const char *const bad[] = {
        "a/b", "a b", "a\nb", "caf\xc3\xa9", "\xff", "a:b", "a\\b", "a\"b", "a*", "..\x01",
        "tab\there", "semi;colon", "#", "a=b", "a,b",
    };

    use_template(f);
    s = open_ok(f->path, 0);
    se = lk_softstore_se(s);
    before = read_bytes(f->path, &len);
    dir_listing(f->dir, listing, sizeof listing);

    memset(n255, 'a', 255);
    n255[255] = '\0';
    memset(n256, 'b', 256);
    n256[256] = '\0';
    memset(too_long, 'c', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';

#define EXPECT_REJECTED(call, ok1, ok2, what)                                           \
    do {                                                                                \
        lk_err e_;                                                                      \
        memset(pub, 0xA5, sizeof pub);                                                  \
        pub_len = 77;                                                                   \
        e_ = (call);                                                                    \
        if (e_ != (ok1) && e_ != (ok2))                                                 \
            fail_msg("%s: %s, expected %s or %s", (what), lk_errname(e_),               \
                     lk_errname(ok1), lk_errname(ok2));                                 \
        assert_int_equal(pub_len, 0);                                                   \
        if (e_ != LK_ERR_ARG) /* the dispatcher's ARG exits do not wipe (core) */      \
            assert_true(lk_test_all_bytes(pub, sizeof pub, 0));                         \
        assert_int_equal(lk_softstore_count(s), 2);                                     \
        assert_file_is(f->path, before, len);                                           \
    } while (0)

    /* Occupied names, either algorithm. */
    EXPECT_REJECTED(lk_se_generate(&se, "es", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_KEY_EXISTS, LK_ERR_KEY_EXISTS, "existing es");
    EXPECT_REJECTED(lk_se_generate(&se, "es", LK_ALG_RS256, 2048, pub, sizeof pub, &pub_len),
                    LK_ERR_KEY_EXISTS, LK_ERR_KEY_EXISTS, "existing es as RS256");
    EXPECT_REJECTED(lk_se_generate(&se, "rs", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_KEY_EXISTS, LK_ERR_KEY_EXISTS, "existing rs as ES256");

    /* Bad names: the dispatcher refuses empty/over-long references (ARG),
     * the store anything outside 1-255 of [A-Za-z0-9._+~%-] (URI). */
    EXPECT_REJECTED(lk_se_generate(&se, "", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_ARG, LK_ERR_ARG, "empty name");
    EXPECT_REJECTED(lk_se_generate(&se, n256, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_URI, LK_ERR_URI, "256-char name");
    EXPECT_REJECTED(lk_se_generate(&se, too_long, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_ARG, LK_ERR_ARG, "name over LK_KEY_REF_MAX");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_REJECTED(lk_se_generate(&se, bad[i], LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                        LK_ERR_URI, LK_ERR_ARG, bad[i]);
    /* ...and the RSA path checks the name before the size. */
    EXPECT_REJECTED(lk_se_generate(&se, "a/b", LK_ALG_RS256, 1024, pub, sizeof pub, &pub_len),
                    LK_ERR_URI, LK_ERR_URI, "bad name, weak RSA");

    /* RSA sizes: below 2048 weak, above 4096 refused (no key made). */
    EXPECT_REJECTED(lk_se_generate(&se, "weak", LK_ALG_RS256, 1024, pub, sizeof pub, &pub_len),
                    LK_ERR_KEY_WEAK, LK_ERR_KEY_WEAK, "RSA-1024");
    EXPECT_REJECTED(lk_se_generate(&se, "weak", LK_ALG_RS256, 2047, pub, sizeof pub, &pub_len),
                    LK_ERR_KEY_WEAK, LK_ERR_KEY_WEAK, "RSA-2047");
    EXPECT_REJECTED(lk_se_generate(&se, "huge", LK_ALG_RS256, 8192, pub, sizeof pub, &pub_len),
                    LK_ERR_ARG, LK_ERR_ARG, "RSA-8192");
    EXPECT_REJECTED(lk_se_generate(&se, "huge", LK_ALG_RS256, 4097, pub, sizeof pub, &pub_len),
                    LK_ERR_ARG, LK_ERR_ARG, "RSA-4097");
    /* Algorithms other than ES256/RS256: the dispatcher. */
    EXPECT_REJECTED(lk_se_generate(&se, "none", LK_ALG_NONE, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_ARG, LK_ERR_ARG, "LK_ALG_NONE");
    EXPECT_REJECTED(lk_se_generate(&se, "none", (lk_alg)7, 0, pub, sizeof pub, &pub_len),
                    LK_ERR_ARG, LK_ERR_ARG, "alg 7");
#undef EXPECT_REJECTED

    /* All refused before any file work: not even a lock file appeared. */
    dir_listing(f->dir, listing_after, sizeof listing_after);
    assert_string_equal(listing_after, listing);
    assert_string_equal(listing, STORE_FILE);

    /* The edges that are allowed: 255 characters, every punctuation mark. */
    assert_int_equal(lk_se_generate(&se, n255, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_OK);
    assert_int_equal(lk_se_generate(&se, "AZaz09._+~%-", LK_ALG_ES256, 0, pub, sizeof pub,
                                    &pub_len), LK_OK);
    lk_softstore_close(s);
    s = open_ok(f->path, 0);
    assert_int_equal(lk_softstore_count(s), 4);
    se = lk_softstore_se(s);
    {
        lk_alg alg;
        assert_int_equal(lk_se_public_key(&se, n255, &alg, pub, sizeof pub, &pub_len), LK_OK);
        assert_int_equal(lk_se_public_key(&se, "AZaz09._+~%-", &alg, pub, sizeof pub, &pub_len),
                         LK_OK);
    }
    lk_softstore_close(s);
    free(before);
}

/* ================================================================== */
/* Signing.                                                             */

static void test_sign_digest(void **state)
{
    struct fx *f = *state;
    lk_softstore *s;
    lk_se se;
    uint8_t digest[32], sig[LK_SIG_MAX_BYTES], sig2[LK_ES256_SIG_BYTES];
    uint8_t es_pub[LK_PUBKEY_DER_MAX], rs_pub[LK_PUBKEY_DER_MAX];
    size_t sig_len = 0, es_len = 0, rs_len = 0;
    lk_alg alg;
    uint64_t seed = 0x5eed;
    int i;

    use_template(f);
    s = open_ok(f->path, 0);
    se = lk_softstore_se(s);
    assert_int_equal(lk_se_public_key(&se, "es", &alg, es_pub, sizeof es_pub, &es_len), LK_OK);
    assert_int_equal(lk_se_public_key(&se, "rs", &alg, rs_pub, sizeof rs_pub, &rs_len), LK_OK);

    /* ES256: 64 bytes r||s, verified by OpenSSL; not for another digest. */
    random_digest(&seed, digest);
    assert_int_equal(lk_se_sign_digest(&se, "es", LK_ALG_ES256, digest, sig, sizeof sig,
                                       &sig_len), LK_OK);
    assert_int_equal(sig_len, 64);
    assert_true(verify_es256(es_pub, es_len, digest, sig));
    digest[0] ^= 1;
    assert_false(verify_es256(es_pub, es_len, digest, sig));
    digest[0] ^= 1;
    /* ECDSA is randomised: the same digest twice gives two signatures. */
    assert_int_equal(lk_se_sign_digest(&se, "es", LK_ALG_ES256, digest, sig2, sizeof sig2,
                                       &sig_len), LK_OK);
    assert_memory_not_equal(sig, sig2, 64);
    assert_true(verify_es256(es_pub, es_len, digest, sig2));

    /* RS256: modulus-length PKCS#1 v1.5, verified by OpenSSL. */
    assert_int_equal(lk_se_sign_digest(&se, "rs", LK_ALG_RS256, digest, sig, sizeof sig,
                                       &sig_len), LK_OK);
    assert_int_equal(sig_len, 256);
    assert_true(verify_rs256(rs_pub, rs_len, digest, sig, sig_len));
    digest[31] ^= 0x80;
    assert_false(verify_rs256(rs_pub, rs_len, digest, sig, sig_len));
    digest[31] ^= 0x80;

    /* Wrong algorithm for the key: KEY_TYPE, output wiped. */
    memset(sig, 0xA5, sizeof sig);
    assert_int_equal(lk_se_sign_digest(&se, "es", LK_ALG_RS256, digest, sig, sizeof sig,
                                       &sig_len), LK_ERR_KEY_TYPE);
    assert_int_equal(sig_len, 0);
    assert_true(lk_test_all_bytes(sig, sizeof sig, 0));
    memset(sig, 0xA5, sizeof sig);
    assert_int_equal(lk_se_sign_digest(&se, "rs", LK_ALG_ES256, digest, sig, sizeof sig,
                                       &sig_len), LK_ERR_KEY_TYPE);
    assert_int_equal(sig_len, 0);
    assert_true(lk_test_all_bytes(sig, sizeof sig, 0));

    /* Unknown name. */
    assert_int_equal(lk_se_sign_digest(&se, "nope", LK_ALG_ES256, digest, sig, sizeof sig,
                                       &sig_len), LK_ERR_KEY_NOT_FOUND);
    assert_int_equal(lk_se_sign_digest(&se, "nope", LK_ALG_RS256, digest, sig, sizeof sig,
                                       &sig_len), LK_ERR_KEY_NOT_FOUND);
    /* A name the store could never hold. */
    assert_int_equal(lk_se_sign_digest(&se, "a/b", LK_ALG_ES256, digest, sig, sizeof sig,
                                       &sig_len), LK_ERR_KEY_NOT_FOUND);
    /* RS256 into less than the modulus: BUFFER, from the dispatcher or the
     * store (a 256-byte buffer is enough for RSA-2048 exactly). */
    assert_int_equal(lk_se_sign_digest(&se, "rs", LK_ALG_RS256, digest, sig, 255, &sig_len),
                     LK_ERR_BUFFER);
    assert_int_equal(lk_se_sign_digest(&se, "rs", LK_ALG_RS256, digest, sig, 256, &sig_len),
                     LK_OK);
    assert_true(verify_rs256(rs_pub, rs_len, digest, sig, sig_len));

    /* Many signatures with the same keys (the cached signing context),
     * interleaved, every one verified. */
    for (i = 0; i < 200; i++) {
        random_digest(&seed, digest);
        assert_int_equal(lk_se_sign_digest(&se, "es", LK_ALG_ES256, digest, sig, sizeof sig,
                                           &sig_len), LK_OK);
        assert_int_equal(sig_len, 64);
        if (!verify_es256(es_pub, es_len, digest, sig))
            fail_msg("ES256 signature %d does not verify", i);
        if (i % 10 == 0) {
            assert_int_equal(lk_se_sign_digest(&se, "rs", LK_ALG_RS256, digest, sig, sizeof sig,
                                               &sig_len), LK_OK);
            if (!verify_rs256(rs_pub, rs_len, digest, sig, sig_len))
                fail_msg("RS256 signature %d does not verify", i);
        }
    }
    /* A failed call in between does not disturb the cached context. */
    assert_int_equal(lk_se_sign_digest(&se, "es", LK_ALG_RS256, digest, sig, sizeof sig,
                                       &sig_len), LK_ERR_KEY_TYPE);
    sign_and_verify(&se, "es", LK_ALG_ES256, digest);
    sign_and_verify(&se, "rs", LK_ALG_RS256, digest);
    lk_softstore_close(s);
}

/* Split token at its dots and verify it as a JWS with OpenSSL. */
static void verify_token(const char *token, size_t token_len, lk_alg alg,
                         const uint8_t *pub, size_t pub_len, const char *claims)
{
    const char *dot1 = memchr(token, '.', token_len), *dot2;
    uint8_t *hdr, *payload, *sig, digest[32];
    size_t hdr_len = 0, payload_len = 0, sig_len = 0;
    unsigned int dlen = 0;
    const char *want_hdr = alg == LK_ALG_ES256 ? "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
                                               : "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";

    assert_int_equal(strlen(token), token_len);
    assert_non_null(dot1);
    dot2 = memchr(dot1 + 1, '.', token_len - (size_t)(dot1 + 1 - token));
    assert_non_null(dot2);
    assert_null(memchr(dot2 + 1, '.', token_len - (size_t)(dot2 + 1 - token)));

    hdr = lk_test_b64url_ref_decode(token, (size_t)(dot1 - token), &hdr_len);
    payload = lk_test_b64url_ref_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload_len);
    sig = lk_test_b64url_ref_decode(dot2 + 1, token_len - (size_t)(dot2 + 1 - token), &sig_len);
    assert_non_null(hdr);
    assert_non_null(payload);
    assert_non_null(sig);
    assert_int_equal(hdr_len, strlen(want_hdr));
    assert_memory_equal(hdr, want_hdr, hdr_len);
    assert_int_equal(payload_len, strlen(claims));
    assert_memory_equal(payload, claims, payload_len);

    assert_int_equal(EVP_Digest(token, (size_t)(dot2 - token), digest, &dlen, EVP_sha256(), NULL),
                     1);
    if (alg == LK_ALG_ES256) {
        assert_int_equal(sig_len, 64);
        assert_true(verify_es256(pub, pub_len, digest, sig));
    } else {
        assert_int_equal(sig_len, 256);
        assert_true(verify_rs256(pub, pub_len, digest, sig, sig_len));
    }
    free(hdr);
    free(payload);
    free(sig);
}

static void test_jwt_iotcore(void **state)
{
    struct fx *f = *state;
    lk_softstore *s;
    lk_se se;
    char buf[2048];
    size_t token_len = 0, pub_len = 0;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    lk_alg alg;
    static const char aud[] = "my-project";
    static const char claims[] = "{\"iat\":1700000000,\"exp\":1700003600,\"aud\":\"my-project\"}";

    use_template(f);
    s = open_ok(f->path, 0);
    se = lk_softstore_se(s);

    assert_int_equal(lk_se_public_key(&se, "es", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(lk_jwt_iotcore(&se, "es", LK_ALG_ES256, aud, strlen(aud), 1700000000,
                                    1700003600, buf, sizeof buf, &token_len), LK_OK);
    verify_token(buf, token_len, LK_ALG_ES256, pub, pub_len, claims);

    assert_int_equal(lk_se_public_key(&se, "rs", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(lk_jwt_iotcore(&se, "rs", LK_ALG_RS256, aud, strlen(aud), 1700000000,
                                    1700003600, buf, sizeof buf, &token_len), LK_OK);
    verify_token(buf, token_len, LK_ALG_RS256, pub, pub_len, claims);

    /* Store errors come through the token builder, buffer wiped. */
    assert_int_equal(lk_jwt_iotcore(&se, "rs", LK_ALG_ES256, aud, strlen(aud), 1700000000,
                                    1700003600, buf, sizeof buf, &token_len), LK_ERR_KEY_TYPE);
    assert_int_equal(token_len, 0);
    assert_true(lk_test_all_bytes(buf, sizeof buf, 0));
    assert_int_equal(lk_jwt_iotcore(&se, "gone", LK_ALG_ES256, aud, strlen(aud), 1700000000,
                                    1700003600, buf, sizeof buf, &token_len),
                     LK_ERR_KEY_NOT_FOUND);
    assert_int_equal(token_len, 0);

    /* A freshly generated key (RSA with bits 0 = the 2048-bit default),
     * used at once, and after reopening. */
    assert_int_equal(lk_se_generate(&se, "fresh-rs", LK_ALG_RS256, 0, pub, sizeof pub, &pub_len),
                     LK_OK);
    check_rs256_pub(pub, pub_len, (int)LK_RSA_DEFAULT_BITS);
    assert_int_equal(lk_jwt_iotcore(&se, "fresh-rs", LK_ALG_RS256, aud, strlen(aud), 1700000000,
                                    1700003600, buf, sizeof buf, &token_len), LK_OK);
    verify_token(buf, token_len, LK_ALG_RS256, pub, pub_len, claims);
    lk_softstore_close(s);
    s = open_ok(f->path, 0);
    se = lk_softstore_se(s);
    assert_int_equal(lk_jwt_iotcore(&se, "fresh-rs", LK_ALG_RS256, aud, strlen(aud), 1700000000,
                                    1700003600, buf, sizeof buf, &token_len), LK_OK);
    verify_token(buf, token_len, LK_ALG_RS256, pub, pub_len, claims);
    lk_softstore_close(s);
}

/* ================================================================== */
/* Damaged files.                                                       */

/* Every proper prefix of a real store: FOREIGN while shorter than the
 * magic (it cannot be told from any other file), CORRUPT from there on;
 * never OK, never a crash. */
static void check_all_prefixes(const struct fx *f, const char *text, size_t len)
{
    size_t n;
    for (n = 0; n < len; n++) {
        lk_err want = n < strlen(MAGIC) ? LK_ERR_STORE_FOREIGN : LK_ERR_STORE_CORRUPT;
        lk_err err;
        write_bytes(f->path, text, n, 0600);
        err = open_err(f->path, 0);
        if (err != want)
            fail_msg("prefix of %zu/%zu bytes: %s, expected %s", n, len, lk_errname(err),
                     lk_errname(want));
    }
}

static void test_corrupt_truncated(void **state)
{
    struct fx *f = *state;
    char *text;
    size_t len = 0;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    lk_se se = lk_softstore_se(s);
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;

    /* A small store: one ES256 key. */
    assert_int_equal(lk_se_generate(&se, "k1", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len), LK_OK);
    lk_softstore_close(s);
    text = read_bytes(f->path, &len);
    check_all_prefixes(f, text, len);
    write_bytes(f->path, text, len, 0600); /* the whole file is fine */
    assert_open_gives(f->path, LK_OK, "whole small store");
    free(text);

    /* The template: an RSA key as well (a longer key line). */
    use_template(f);
    text = read_bytes(f->path, &len);
    check_all_prefixes(f, text, len);
    free(text);
}

static void test_corrupt_flipped_bytes(void **state)
{
    struct fx *f = *state;
    char *text;
    size_t len = 0, i, first_nl;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    lk_se se = lk_softstore_se(s);
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    static const uint8_t masks[] = {0x01, 0x80, 0x20};
    size_t m;

    assert_int_equal(lk_se_generate(&se, "k1", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len), LK_OK);
    lk_softstore_close(s);
    text = read_bytes(f->path, &len);
    first_nl = (size_t)((char *)memchr(text, '\n', len) - text);
    assert_int_equal(first_nl, strlen(HEADER) - 1);

    /* Within the magic the file is no longer recognisable: FOREIGN. In the
     * version ("v1\n") it claims another format: FOREIGN. Anywhere after the
     * first line (comments, key line, checksum line, final newline) the
     * checksum no longer matches or the layout breaks: CORRUPT. */
    for (m = 0; m < sizeof masks; m++) {
        for (i = 0; i < len; i++) {
            lk_err err, want = i <= first_nl ? LK_ERR_STORE_FOREIGN : LK_ERR_STORE_CORRUPT;
            text[i] = (char)(text[i] ^ masks[m]);
            write_bytes(f->path, text, len, 0600);
            text[i] = (char)(text[i] ^ masks[m]);
            err = open_err(f->path, 0);
            if (err != want)
                fail_msg("byte %zu (0x%02x) ^ 0x%02x: %s, expected %s", i,
                         (unsigned char)text[i], masks[m], lk_errname(err), lk_errname(want));
        }
    }
    write_bytes(f->path, text, len, 0600);
    assert_open_gives(f->path, LK_OK, "unflipped");
    free(text);
}

static void test_corrupt_checksum_and_trailer(void **state)
{
    struct fx *f = *state;
    char *text, hex[65];
    size_t len = 0, body_len;
    struct sbuf b = {0};
    static const char *const trailers[] = {
        "\n", "x", "x\n", "# comment\n", "key k2 ES256 AAAA\n", " ", "\r\n",
    };
    size_t i;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    lk_se se = lk_softstore_se(s);
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;

    assert_int_equal(lk_se_generate(&se, "k1", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len), LK_OK);
    lk_softstore_close(s);
    text = read_bytes(f->path, &len);
    body_len = len - 74; /* "checksum " + 64 + "\n" */
    assert_memory_equal(text + body_len, "checksum ", 9);
    /* The checksum is SHA-256 (lower-case hex) of everything before it. */
    sha256_hex(text, body_len, hex);
    assert_memory_equal(text + body_len + 9, hex, 64);

#define TRY(what)                                                                       \
    do {                                                                                \
        write_bytes(f->path, b.p, b.len, 0600);                                         \
        assert_open_gives(f->path, LK_ERR_STORE_CORRUPT, what);                         \
        b.len = 0;                                                                      \
    } while (0)

    /* Another valid-looking checksum. */
    sb_add(&b, text, body_len);
    sha256_hex("something else", 14, hex);
    sb_fmt(&b, "checksum %s\n", hex);
    TRY("checksum of other data");
    /* The right checksum in upper case. */
    sha256_hex(text, body_len, hex);
    for (i = 0; i < 64; i++)
        if (hex[i] >= 'a' && hex[i] <= 'f')
            hex[i] = (char)(hex[i] - 'a' + 'A');
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum %s\n", hex);
    TRY("upper-case checksum");
    /* Checksum of a different extent (including "checksum "). */
    sha256_hex(text, body_len + 9, hex);
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum %s\n", hex);
    TRY("checksum over the wrong extent");
    /* Malformed checksum lines. */
    sha256_hex(text, body_len, hex);
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum %.63s\n", hex);
    TRY("63 hex digits");
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum %s0\n", hex);
    TRY("65 hex digits");
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum  %.63s\n", hex);
    TRY("two spaces");
    sb_add(&b, text, body_len);
    sb_fmt(&b, "Checksum %s\n", hex);
    TRY("Checksum");
    sb_add(&b, text, body_len);
    sb_fmt(&b, "sha256   %s\n", hex);
    TRY("another keyword");
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum %s", hex);
    TRY("no final newline");
    sb_add(&b, text, body_len);
    TRY("no checksum line");
    sb_str(&b, HEADER);
    TRY("the header alone");
    sb_add(&b, text, body_len);
    sb_fmt(&b, "checksum %s\r\n", hex);
    TRY("CRLF after the checksum");

    /* Extra data after a correct checksum line. */
    for (i = 0; i < sizeof trailers / sizeof trailers[0]; i++) {
        sb_add(&b, text, len);
        sb_str(&b, trailers[i]);
        TRY(trailers[i]);
    }
    sb_add(&b, text, len);
    sb_add(&b, text + body_len, 74);
    TRY("checksum line twice");
    sb_add(&b, text, len);
    sb_add(&b, "\0", 1);
    TRY("a NUL after the checksum line");

    /* A NUL byte inside, with the checksum recomputed over it: CORRUPT all
     * the same (a text file has no NULs; the parser works on C strings). */
    {
        struct sbuf t = {0};
        sb_add(&t, text, body_len);
        t.p[strlen(HEADER) + 3] = '\0'; /* inside the first comment line */
        forge_raw(f->path, t.p, t.len);
        assert_open_gives(f->path, LK_ERR_STORE_CORRUPT, "NUL in a comment");
        t.len = 0;
        sb_add(&t, text, body_len);
        t.p[body_len - 10] = '\0'; /* inside the key's base64url */
        forge_raw(f->path, t.p, t.len);
        assert_open_gives(f->path, LK_ERR_STORE_CORRUPT, "NUL in a key line");
        t.len = 0;
        sb_add(&t, text, body_len);
        sb_add(&t, "\0\n", 2); /* a line of its own */
        forge_raw(f->path, t.p, t.len);
        assert_open_gives(f->path, LK_ERR_STORE_CORRUPT, "a NUL line");
        /* Control: the same text without the NUL is accepted. */
        t.len = 0;
        sb_add(&t, text, body_len);
        forge_raw(f->path, t.p, t.len);
        assert_open_gives(f->path, LK_OK, "re-forged original");
        free(t.p);
    }
#undef TRY
    free(b.p);
    free(text);
}

/* Forge HEADER + body with a valid checksum; open must give want. */
static void forged_open_gives(const struct fx *f, const char *body, lk_err want, const char *what)
{
    forge(f->path, body);
    assert_open_gives(f->path, want, what);
}

static void test_corrupt_forged_entries(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *p256 = keygen("EC", "P-256", 0);
    uint8_t *der = NULL, *sec1 = NULL;
    size_t der_len = 0, sec1_len = 0, i;
    struct sbuf good = {0}, b = {0};
    char *b64, n256[257], *huge;
    static const char *const bad_algs[] = {"ES384", "es256", "RS512", "none", "PS256",
                                           "ES256 ", "ES2560", "HS256"};
    static const char *const bad_names[] = {"a/b", "caf\xc3\xa9", "a:b", "a\tb", "@", "a\"b"};

    der = pkcs8_der(p256, &der_len);
    sec1 = trad_der(p256, &sec1_len);
    b64 = lk_test_b64url_ref_encode(der, der_len);
    assert_non_null(b64);
    key_line(&good, "good", "ES256", der, der_len);

    /* Controls: the forger makes files the store accepts, with comments
     * and blank lines anywhere after the header; the key signs. */
    forged_open_gives(f, "", LK_OK, "empty forged store");
    forged_open_gives(f, good.p, LK_OK, "forged good key");
    sb_str(&b, "# a comment\n\n#\n");
    sb_str(&b, good.p);
    sb_str(&b, "\n# trailing comment\n");
    forged_open_gives(f, b.p, LK_OK, "comments and blank lines");
    b.len = 0;
    {
        lk_softstore *s = open_ok(f->path, 0);
        lk_se se = lk_softstore_se(s);
        uint8_t want[LK_PUBKEY_DER_MAX], pub[LK_PUBKEY_DER_MAX], dg[32] = {1, 2, 3};
        size_t want_len = 0, pub_len = 0;
        lk_alg alg;
        spki_of(p256, want, sizeof want, &want_len);
        assert_int_equal(lk_se_public_key(&se, "good", &alg, pub, sizeof pub, &pub_len), LK_OK);
        assert_int_equal(pub_len, want_len);
        assert_memory_equal(pub, want, want_len);
        sign_and_verify(&se, "good", LK_ALG_ES256, dg);
        lk_softstore_close(s);
    }
    /* Lenient reading: the key's own DER (SEC1 ECPrivateKey, as written by
     * earlier versions of the store) is accepted as well as PKCS#8. */
    key_line(&b, "sec1", "ES256", sec1, sec1_len);
    forged_open_gives(f, b.p, LK_OK, "SEC1 key");
    b.len = 0;
    {
        lk_softstore *s = open_ok(f->path, 0);
        lk_se se = lk_softstore_se(s);
        uint8_t dg[32] = {4, 5, 6};
        sign_and_verify(&se, "sec1", LK_ALG_ES256, dg);
        lk_softstore_close(s);
    }

    /* --- Refused when the file is opened. --- */
    sb_str(&b, good.p);
    sb_str(&b, good.p);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "duplicate name");
    b.len = 0;
    sb_str(&b, good.p);
    key_line(&b, "other", "ES256", der, der_len);
    key_line(&b, "good", "RS256", der, der_len);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "duplicate name, other alg, not adjacent");
    b.len = 0;
    /* Names differing only in case are two names. */
    key_line(&b, "Good", "ES256", der, der_len);
    sb_str(&b, good.p);
    forged_open_gives(f, b.p, LK_OK, "Good and good");
    b.len = 0;

    /* Bad base64url: the store's decoder is strict. Each case is first
     * shown to carry a real key (a lenient decoder would accept it). */
    {
        char *sec1_b64 = lk_test_b64url_ref_encode(sec1, sec1_len);
        size_t n = strlen(b64), sn;
        char padded[4096], stdalpha[4096], short1[4096], junk[4096], cr[4096], extra[4096];
        struct {
            const char *what;
            const char *text;
        } cases[8];
        size_t k;

        assert_non_null(sec1_b64);
        sn = strlen(sec1_b64);
        assert_int_not_equal(sn % 4, 0); /* so that padding can be added */
        snprintf(padded, sizeof padded, "%s%.*s", sec1_b64, (int)(4 - sn % 4), "===");
        snprintf(stdalpha, sizeof stdalpha, "%s", b64);
        for (k = 0; k < n; k++) {
            if (stdalpha[k] == '-')
                stdalpha[k] = '+';
            else if (stdalpha[k] == '_')
                stdalpha[k] = '/';
        }
        if (strcmp(stdalpha, b64) == 0) /* no - or _ in this key: force one */
            stdalpha[0] = '+';
        snprintf(short1, sizeof short1, "%.*s", (int)(((n - 1) / 4) * 4 - 3), b64);
        assert_int_equal(strlen(short1) % 4, 1); /* length 1 mod 4 */
        snprintf(junk, sizeof junk, "%.*s$%s", (int)(n / 2), b64, b64 + n / 2 + 1);
        snprintf(cr, sizeof cr, "%s\r", b64);
        snprintf(extra, sizeof extra, "%s extra", b64);
        cases[0].what = "padding";
        cases[0].text = padded;
        cases[1].what = "standard alphabet";
        cases[1].text = stdalpha;
        cases[2].what = "length 1 mod 4";
        cases[2].text = short1;
        cases[3].what = "non-zero unused bits";
        cases[3].text = "AB";
        cases[4].what = "a '$'";
        cases[4].text = junk;
        cases[5].what = "a trailing CR";
        cases[5].text = cr;
        cases[6].what = "an extra field";
        cases[6].text = extra;
        cases[7].what = "empty";
        cases[7].text = "";
        for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            sb_fmt(&b, "key k ES256 %s\n", cases[k].text);
            forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, cases[k].what);
            b.len = 0;
        }
        /* Control: the padded key without its padding is accepted. */
        sb_fmt(&b, "key k ES256 %s\n", sec1_b64);
        forged_open_gives(f, b.p, LK_OK, "sec1 unpadded");
        b.len = 0;
        free(sec1_b64);
    }
    /* Larger than any key the store writes. */
    huge = malloc(6001);
    assert_non_null(huge);
    memset(huge, 'A', 6000);
    huge[6000] = '\0';
    sb_fmt(&b, "key k ES256 %s\n", huge);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "6000 base64url characters");
    b.len = 0;
    free(huge);

    /* Unknown algorithms. */
    for (i = 0; i < sizeof bad_algs / sizeof bad_algs[0]; i++) {
        sb_fmt(&b, "key k %s %s\n", bad_algs[i], b64);
        forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, bad_algs[i]);
        b.len = 0;
    }
    sb_fmt(&b, "key k  %s\n", b64);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "empty alg");
    b.len = 0;

    /* Bad names. */
    for (i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        sb_fmt(&b, "key %s ES256 %s\n", bad_names[i], b64);
        forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, bad_names[i]);
        b.len = 0;
    }
    memset(n256, 'n', 256);
    n256[256] = '\0';
    sb_fmt(&b, "key %s ES256 %s\n", n256, b64);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "256-char name");
    b.len = 0;
    sb_fmt(&b, "key  ES256 %s\n", b64);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "empty name");
    b.len = 0;

    /* Missing fields and unknown lines. */
    forged_open_gives(f, "key good ES256\n", LK_ERR_STORE_CORRUPT, "no key field");
    forged_open_gives(f, "key good\n", LK_ERR_STORE_CORRUPT, "name only");
    forged_open_gives(f, "key\n", LK_ERR_STORE_CORRUPT, "key alone");
    forged_open_gives(f, "key \n", LK_ERR_STORE_CORRUPT, "key and a space");
    forged_open_gives(f, "foo bar\n", LK_ERR_STORE_CORRUPT, "unknown line");
    sb_fmt(&b, " key k ES256 %s\n", b64);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "leading space");
    b.len = 0;
    sb_fmt(&b, "KEY k ES256 %s\n", b64);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "KEY");
    b.len = 0;
    sb_fmt(&b, "checksum %064d\n", 0);
    forged_open_gives(f, b.p, LK_ERR_STORE_CORRUPT, "a checksum line inside");
    b.len = 0;
    forged_open_gives(f, "latchkey-keystore v1\n", LK_ERR_STORE_CORRUPT, "header twice");

    free(b64);
    free(b.p);
    free(good.p);
    OPENSSL_clear_free(der, der_len);
    OPENSSL_clear_free(sec1, sec1_len);
    EVP_PKEY_free(p256);
}

/* Keys are decoded lazily: a well-formed entry whose key is wrong inside
 * opens, and is refused (CORRUPT) at first use, by public_key and by
 * sign_digest, every time; the other keys of the store keep working. */
static void test_corrupt_forged_keys(void **state)
{
    struct fx *f = *state;
    EVP_PKEY *p256 = keygen("EC", "P-256", 0), *p384 = keygen("EC", "P-384", 0);
    EVP_PKEY *rsa1024 = keygen("RSA", NULL, 1024), *ed = keygen("ED25519", NULL, 0);
    uint8_t *good = NULL, *d384 = NULL, *d1024 = NULL, *ded = NULL, *trail;
    size_t good_len = 0, d384_len = 0, d1024_len = 0, ded_len = 0, i;
    static const char not_a_key[] = "this is not a key at all";
    struct {
        const char *what;
        const char *alg;
        const uint8_t *der;
        size_t der_len;
    } cases[8];
    size_t ncases = 0;

    good = pkcs8_der(p256, &good_len);
    d384 = pkcs8_der(p384, &d384_len);
    d1024 = pkcs8_der(rsa1024, &d1024_len);
    ded = pkcs8_der(ed, &ded_len);
    trail = malloc(good_len + 1);
    assert_non_null(trail);
    memcpy(trail, good, good_len);
    trail[good_len] = 0;

#define CASE(w, a, d, l)                                                               \
    do {                                                                               \
        cases[ncases].what = (w);                                                      \
        cases[ncases].alg = (a);                                                       \
        cases[ncases].der = (d);                                                       \
        cases[ncases].der_len = (l);                                                   \
        ncases++;                                                                      \
    } while (0)
    CASE("not a key", "ES256", (const uint8_t *)not_a_key, sizeof not_a_key - 1);
    CASE("P-384 labelled ES256", "ES256", d384, d384_len);
    CASE("RSA-1024 labelled RS256", "RS256", d1024, d1024_len);
    CASE("RSA-1024 labelled ES256", "ES256", d1024, d1024_len);
    CASE("P-256 labelled RS256", "RS256", good, good_len);
    CASE("Ed25519 labelled ES256", "ES256", ded, ded_len);
    CASE("P-256 with a trailing byte", "ES256", trail, good_len + 1);
    CASE("a truncated P-256 key", "ES256", good, good_len - 1);
#undef CASE

    for (i = 0; i < ncases; i++) {
        struct sbuf b = {0};
        lk_softstore *s;
        lk_se se;
        uint8_t pub[LK_PUBKEY_DER_MAX], sig[LK_SIG_MAX_BYTES], dg[32] = {9};
        size_t pub_len = 0, sig_len = 0;
        lk_alg alg = LK_ALG_NONE;
        lk_alg labelled = strcmp(cases[i].alg, "ES256") == 0 ? LK_ALG_ES256 : LK_ALG_RS256;
        lk_alg other = labelled == LK_ALG_ES256 ? LK_ALG_RS256 : LK_ALG_ES256;
        int round;
        lk_err err;

        key_line(&b, "ok", "ES256", good, good_len);
        key_line(&b, "bad", cases[i].alg, cases[i].der, cases[i].der_len);
        forge(f->path, b.p);
        free(b.p);

        /* Opening succeeds: entries are only decoded when used. */
        s = NULL;
        err = lk_softstore_open(f->path, 0, &s);
        if (err != LK_OK)
            fail_msg("%s: open gave %s (expected OK: keys decode lazily)", cases[i].what,
                     lk_errname(err));
        se = lk_softstore_se(s);
        assert_int_equal(lk_softstore_count(s), 2);
        for (round = 0; round < 2; round++) {
            memset(pub, 0xA5, sizeof pub);
            err = lk_se_public_key(&se, "bad", &alg, pub, sizeof pub, &pub_len);
            if (err != LK_ERR_STORE_CORRUPT)
                fail_msg("%s: public_key gave %s", cases[i].what, lk_errname(err));
            assert_int_equal(pub_len, 0);
            assert_int_equal(alg, LK_ALG_NONE);
            assert_true(lk_test_all_bytes(pub, sizeof pub, 0));
            memset(sig, 0xA5, sizeof sig);
            err = lk_se_sign_digest(&se, "bad", labelled, dg, sig, sizeof sig, &sig_len);
            if (err != LK_ERR_STORE_CORRUPT)
                fail_msg("%s: sign gave %s", cases[i].what, lk_errname(err));
            assert_int_equal(sig_len, 0);
            assert_true(lk_test_all_bytes(sig, sizeof sig, 0));
            /* Asked for the other algorithm, the label answers first. */
            assert_int_equal(lk_se_sign_digest(&se, "bad", other, dg, sig, sizeof sig, &sig_len),
                             LK_ERR_KEY_TYPE);
        }
        /* The neighbour is unaffected. */
        sign_and_verify(&se, "ok", LK_ALG_ES256, dg);
        /* And the store can still be added to (the bad entry is carried
         * over as it is: it is not ours to repair). */
        assert_int_equal(lk_se_generate(&se, "new", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                         LK_OK);
        lk_softstore_close(s);
        s = open_ok(f->path, 0);
        assert_int_equal(lk_softstore_count(s), 3);
        se = lk_softstore_se(s);
        assert_int_equal(lk_se_public_key(&se, "bad", &alg, pub, sizeof pub, &pub_len),
                         LK_ERR_STORE_CORRUPT);
        sign_and_verify(&se, "new", LK_ALG_ES256, dg);
        lk_softstore_close(s);
    }

    free(trail);
    OPENSSL_clear_free(good, good_len);
    OPENSSL_clear_free(d384, d384_len);
    OPENSSL_clear_free(d1024, d1024_len);
    OPENSSL_clear_free(ded, ded_len);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(ed);
}

/* ================================================================== */
/* Foreign files.                                                       */

static void test_foreign(void **state)
{
    struct fx *f = *state;
    uint8_t rnd[4096];
    uint64_t seed = 42;
    struct sbuf b = {0};
    char hex[65];
    static const char pem[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
        "-----END PRIVATE KEY-----\n";

    /* Empty file: FOREIGN. Decision (the implementation's): a file shorter
     * than the magic line cannot be recognised as a store at all, so it is
     * "not a latchkey store" rather than a damaged one. A store is never
     * empty on disk: even a store without keys has its header and checksum,
     * and it is replaced by rename, never truncated in place. */
    write_bytes(f->path, "", 0, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "empty file");
    /* ...and CREATE does not overwrite it. */
    assert_int_equal(open_err(f->path, LK_SOFTSTORE_CREATE), LK_ERR_STORE_FOREIGN);
    assert_file_is(f->path, "", 0);

    write_bytes(f->path, pem, strlen(pem), 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "PEM");
    assert_int_equal(open_err(f->path, LK_SOFTSTORE_CREATE), LK_ERR_STORE_FOREIGN);
    assert_file_is(f->path, pem, strlen(pem));

    lk_test_rand_bytes(&seed, rnd, sizeof rnd);
    rnd[0] = 0x8f; /* not 'l' */
    write_bytes(f->path, rnd, sizeof rnd, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "random bytes");
    write_bytes(f->path, rnd, 7, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "7 random bytes");

    write_bytes(f->path, "{\"keys\":[]}\n", 12, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "JSON");
    write_bytes(f->path, "latchkey-keystore\n", 18, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "magic without a version");
    write_bytes(f->path, "Latchkey-keystore v1\n", 21, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "Latchkey");
    /* A byte-order mark before a valid store. */
    sb_str(&b, "\xef\xbb\xbf" HEADER);
    sha256_hex(b.p, b.len, hex);
    sb_fmt(&b, "checksum %s\n", hex);
    write_bytes(f->path, b.p, b.len, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "BOM");
    b.len = 0;

    /* Newer formats: FOREIGN whatever follows the version line. */
    sb_str(&b, "latchkey-keystore v2\nkey k ES256 AAAA\n");
    write_bytes(f->path, b.p, b.len, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "v2 without a checksum line");
    forge_raw(f->path, b.p, b.len);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "v2 with a v1-style checksum");
    sb_fmt(&b, "checksum %064d\n", 7);
    write_bytes(f->path, b.p, b.len, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN,
                      "v2 with a checksum line computed some other way");
    b.len = 0;
    {
        static const char bin[] = "latchkey-keystore v2\n\0\x01\x02 binary body";
        sb_add(&b, bin, sizeof bin - 1);
    }
    write_bytes(f->path, b.p, b.len, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "v2 with a binary body");
    write_bytes(f->path, "latchkey-keystore v2\n", 21, 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "v2 header alone");
    write_bytes(f->path, "latchkey-keystore v2\nno newline at the end",
                strlen("latchkey-keystore v2\nno newline at the end"), 0600);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "v2, no final newline");
    b.len = 0;
    sb_str(&b, "latchkey-keystore v10\n");
    forge_raw(f->path, b.p, b.len);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "v10");
    b.len = 0;
    sb_str(&b, "latchkey-keystore v1 \n");
    forge_raw(f->path, b.p, b.len);
    assert_open_gives(f->path, LK_ERR_STORE_FOREIGN, "'v1 '");
    /* CREATE never overwrites a newer store. */
    assert_int_equal(open_err(f->path, LK_SOFTSTORE_CREATE), LK_ERR_STORE_FOREIGN);

    /* Control: the v1 header with a checksum is an empty store. */
    b.len = 0;
    sb_str(&b, HEADER);
    forge_raw(f->path, b.p, b.len);
    assert_open_gives(f->path, LK_OK, "v1 header and checksum");
    free(b.p);
}

/* ================================================================== */
/* Permissions, links, odd files.                                       */

static void test_permissions(void **state)
{
    struct fx *f = *state;
    static const mode_t bad_modes[] = {0640, 0604, 0660, 0644, 0602, 0620, 0610, 0601, 0666,
                                       0400 | 040, 0700 | 01};
    static const mode_t good_modes[] = {0600, 0400, 0200, 0700, 0000};
    size_t i, len = 0;
    char *text;
    lk_softstore *s;
    lk_se se;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;

    use_template(f);
    text = read_bytes(f->path, &len);
    for (i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        lk_err err;
        assert_int_equal(chmod(f->path, bad_modes[i]), 0);
        err = open_err(f->path, 0);
        if (err != LK_ERR_STORE_PERMS)
            fail_msg("mode %04o: %s", (unsigned)bad_modes[i], lk_errname(err));
        assert_int_equal(open_err(f->path, LK_SOFTSTORE_CREATE), LK_ERR_STORE_PERMS);
        assert_file_is(f->path, text, len);
    }
    /* Stricter than 0600 is fine for reading (root reads a 0000 file; other
     * users get IO there, which is not what this loop is about). */
    for (i = 0; i < sizeof good_modes / sizeof good_modes[0]; i++) {
        lk_err err;
        if (geteuid() != 0 && !(good_modes[i] & 0400))
            continue;
        assert_int_equal(chmod(f->path, good_modes[i]), 0);
        err = open_err(f->path, 0);
        if (err != LK_OK)
            fail_msg("mode %04o: %s", (unsigned)good_modes[i], lk_errname(err));
    }
    assert_int_equal(chmod(f->path, 0600), 0);

    /* Permissions are checked again when writing: a store that became
     * group-readable after opening is not written to. */
    s = open_ok(f->path, 0);
    se = lk_softstore_se(s);
    assert_int_equal(chmod(f->path, 0640), 0);
    assert_int_equal(lk_se_generate(&se, "late", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_ERR_STORE_PERMS);
    assert_int_equal(lk_softstore_count(s), 2);
    assert_file_is(f->path, text, len);
    assert_int_equal(chmod(f->path, 0600), 0);
    assert_int_equal(lk_se_generate(&se, "late", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_OK);
    lk_softstore_close(s);

    /* Owned by someone else (only root can arrange that). */
    if (geteuid() == 0) {
        assert_int_equal(chown(f->path, NOBODY, NOBODY), 0);
        assert_open_gives(f->path, LK_ERR_STORE_PERMS, "owned by nobody");
        assert_int_equal(chown(f->path, 0, 0), 0);
        assert_open_gives(f->path, LK_OK, "owned by root again");
    }
    free(text);
}

static void test_links_and_odd_files(void **state)
{
    struct fx *f = *state;
    char lnk[4200], dangling[4200], target[4200], sub[4200], fifo[4200], inmissing[4200];
    size_t len = 0;
    char *text;
    lk_err err;

    use_template(f);
    text = read_bytes(f->path, &len);

    /* A symlink to a valid store: refused (O_NOFOLLOW: FILE_UNUSABLE, a configuration error), with or
     * without CREATE, and the store is not touched. */
    snprintf(lnk, sizeof lnk, "%s/link.store", f->dir);
    assert_int_equal(symlink(STORE_FILE, lnk), 0);
    err = open_err(lnk, 0);
    assert_int_not_equal(err, LK_OK);
    assert_int_equal(err, LK_ERR_FILE_UNUSABLE);
    assert_int_equal(open_err(lnk, LK_SOFTSTORE_CREATE), LK_ERR_FILE_UNUSABLE);
    assert_file_is(f->path, text, len);
    /* A dangling symlink with CREATE: nothing is created at its target. */
    snprintf(dangling, sizeof dangling, "%s/dangling.store", f->dir);
    snprintf(target, sizeof target, "%s/target.store", f->dir);
    assert_int_equal(symlink("target.store", dangling), 0);
    assert_int_equal(open_err(dangling, LK_SOFTSTORE_CREATE), LK_ERR_FILE_UNUSABLE);
    assert_int_equal(access(target, F_OK), -1);
    assert_int_equal(open_err(dangling, 0), LK_ERR_FILE_UNUSABLE);

    /* A directory. */
    snprintf(sub, sizeof sub, "%s/dir.store", f->dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(open_err(sub, 0), LK_ERR_FILE_UNUSABLE);
    assert_int_equal(open_err(sub, LK_SOFTSTORE_CREATE), LK_ERR_FILE_UNUSABLE);
    assert_int_equal(open_err(f->dir, 0), LK_ERR_FILE_UNUSABLE);

    /* A FIFO: refused at once (FILE_UNUSABLE), without waiting for a writer. The
     * alarm turns a hang into a visible failure. */
    snprintf(fifo, sizeof fifo, "%s/fifo.store", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(10);
    err = open_err(fifo, 0);
    alarm(0);
    assert_int_equal(err, LK_ERR_FILE_UNUSABLE);

    /* A path in a directory that does not exist. */
    snprintf(inmissing, sizeof inmissing, "%s/no/such/dir/keys.store", f->dir);
    assert_int_equal(open_err(inmissing, 0), LK_ERR_STORE_MISSING);
    assert_int_equal(open_err(inmissing, LK_SOFTSTORE_CREATE), LK_ERR_IO);
    free(text);
}

/* ================================================================== */
/* Atomic rewrite.                                                      */

static int dir_has_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int found = 0;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp") != NULL)
            found = 1;
    closedir(d);
    return found;
}

/* The read-only-directory check, as plain code so that it can run in a
 * child that has dropped root. Returns 0 when all is well. */
static int readonly_dir_check(const char *dir, const char *path)
{
    lk_softstore *s = NULL, *r = NULL;
    lk_se se;
    uint8_t pub[LK_PUBKEY_DER_MAX], pub2[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0, pub2_len = 0, len = 0, len2 = 0;
    char *before, *after;
    lk_alg alg;
    lk_err err;
    int same;

    CHILD_CHECK(lk_softstore_open(path, LK_SOFTSTORE_CREATE, &s) == LK_OK);
    se = lk_softstore_se(s);
    CHILD_CHECK(lk_se_generate(&se, "before", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len) == LK_OK);
    before = lk_test_read_file(path, &len);
    CHILD_CHECK(before != NULL);

    CHILD_CHECK(chmod(dir, 0500) == 0);
    err = lk_se_generate(&se, "after", LK_ALG_ES256, 0, pub2, sizeof pub2, &pub2_len);
    CHILD_CHECK(chmod(dir, 0700) == 0);
    if (err != LK_ERR_IO)
        fprintf(stderr, "generate in a read-only directory: %s\n", lk_errname(err));
    CHILD_CHECK(err == LK_ERR_IO);
    CHILD_CHECK(pub2_len == 0);
    CHILD_CHECK(lk_softstore_count(s) == 1); /* the failed key was dropped */
    CHILD_CHECK(lk_se_public_key(&se, "after", &alg, pub2, sizeof pub2, &pub2_len) ==
                LK_ERR_KEY_NOT_FOUND);
    after = lk_test_read_file(path, &len2);
    CHILD_CHECK(after != NULL);
    same = len == len2 && memcmp(before, after, len) == 0;
    free(before);
    free(after);
    CHILD_CHECK(same);
    CHILD_CHECK(dir_has_tmp(dir) == 0);

    /* The old store still opens, with its key. */
    CHILD_CHECK(lk_softstore_open(path, 0, &r) == LK_OK);
    CHILD_CHECK(lk_softstore_count(r) == 1);
    {
        lk_se rse = lk_softstore_se(r);
        CHILD_CHECK(lk_se_public_key(&rse, "before", &alg, pub2, sizeof pub2, &pub2_len) ==
                    LK_OK);
        CHILD_CHECK(pub2_len == pub_len && memcmp(pub, pub2, pub_len) == 0);
    }
    lk_softstore_close(r);

    /* With the directory writable again, the same handle can add the key. */
    CHILD_CHECK(lk_se_generate(&se, "after", LK_ALG_ES256, 0, pub2, sizeof pub2, &pub2_len) ==
                LK_OK);
    CHILD_CHECK(lk_softstore_count(s) == 2);
    lk_softstore_close(s);
    CHILD_CHECK(lk_softstore_open(path, 0, &r) == LK_OK);
    CHILD_CHECK(lk_softstore_count(r) == 2);
    lk_softstore_close(r);
    return 0;
}

static void test_atomic_rewrite(void **state)
{
    struct fx *f = *state;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    lk_se se = lk_softstore_se(s);
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    int i;
    char name[32];
    struct stat st1, st2;

    /* Every write replaces the file (a new inode) and leaves only the store
     * and its lock file behind. */
    assert_only_store_files(f);
    for (i = 0; i < 5; i++) {
        assert_int_equal(stat(f->path, &st1), 0);
        snprintf(name, sizeof name, "k%d", i);
        assert_int_equal(lk_se_generate(&se, name, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                         LK_OK);
        assert_int_equal(stat(f->path, &st2), 0);
        assert_int_not_equal(st1.st_ino, st2.st_ino);
        assert_only_store_files(f);
    }
    /* A failed generate (name on disk) leaves no temporary file either. */
    assert_int_equal(lk_se_generate(&se, "k0", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_ERR_KEY_EXISTS);
    assert_only_store_files(f);
    lk_softstore_close(s);
}

static void test_readonly_directory(void **state)
{
    struct fx *f = *state;
    pid_t pid;
    int status;

    if (geteuid() != 0) {
        assert_int_equal(readonly_dir_check(f->dir, f->path), 0);
        return;
    }
    /* Root ignores directory permissions. Run the check in a child that
     * becomes nobody, in a directory handed to nobody; skip if the system
     * does not allow that (no CAP_SETUID, a TMPDIR nobody cannot reach). */
    pid = fork_or_fail();
    if (pid == 0) {
        if (chown(f->dir, NOBODY, NOBODY) != 0 || setgroups(0, NULL) != 0 ||
            setgid(NOBODY) != 0 || setuid(NOBODY) != 0 || geteuid() != NOBODY)
            _exit(77);
        if (access(f->dir, R_OK | W_OK | X_OK) != 0)
            _exit(77);
        _exit(readonly_dir_check(f->dir, f->path) == 0 ? 0 : 1);
    }
    status = wait_child(pid);
    if (status == 77) {
        print_message("cannot drop root here: read-only directory test skipped\n");
        skip();
    }
    assert_int_equal(status, 0);
}

/* ================================================================== */
/* Concurrency.                                                         */

#define NCHILD 4
#define KEYS_PER_CHILD 5

static void run_children(const char *path, unsigned flags)
{
    pid_t pids[NCHILD];
    int p[2], i;

    assert_int_equal(pipe(p), 0);
    for (i = 0; i < NCHILD; i++) {
        pids[i] = fork_or_fail();
        if (pids[i] == 0) {
            int rc;
            close(p[1]);
            wait_start(p[0]);
            rc = child_generate(path, flags, i, KEYS_PER_CHILD);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    close(p[0]);
    close(p[1]); /* all children start together */
    for (i = 0; i < NCHILD; i++) {
        int st = wait_child(pids[i]);
        if (st != 0)
            fail_msg("child %d exited with %d", i, st);
    }
}

static void check_children_keys(const char *path, int extra)
{
    lk_softstore *s = open_ok(path, 0);
    lk_se se = lk_softstore_se(s);
    int i, k;
    char name[32];
    uint8_t pub[LK_PUBKEY_DER_MAX], dg[32] = {7};
    size_t pub_len = 0;
    lk_alg alg;

    assert_int_equal(lk_softstore_count(s), NCHILD * KEYS_PER_CHILD + extra);
    for (i = 0; i < NCHILD; i++) {
        for (k = 0; k < KEYS_PER_CHILD; k++) {
            snprintf(name, sizeof name, "c%d-k%d", i, k);
            if (lk_se_public_key(&se, name, &alg, pub, sizeof pub, &pub_len) != LK_OK)
                fail_msg("key %s missing", name);
            assert_int_equal(alg, LK_ALG_ES256);
        }
        snprintf(name, sizeof name, "c%d-k%d", i, KEYS_PER_CHILD - 1);
        sign_and_verify(&se, name, LK_ALG_ES256, dg);
    }
    lk_softstore_close(s);
}

static void test_concurrent_processes(void **state)
{
    struct fx *f = *state;
    lk_softstore *s = open_ok(f->path, LK_SOFTSTORE_CREATE);
    lk_se se = lk_softstore_se(s);
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;

    assert_int_equal(lk_se_generate(&se, "parent", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_OK);
    lk_softstore_close(s);

    /* 4 processes x 5 keys into an existing store. */
    run_children(f->path, 0);
    check_children_keys(f->path, 1);
    assert_only_store_files(f);

    /* And into a store that does not exist yet: all four CREATE at once. */
    assert_int_equal(unlink(f->path), 0);
    run_children(f->path, LK_SOFTSTORE_CREATE);
    check_children_keys(f->path, 0);
    assert_only_store_files(f);
}

static void test_two_handles(void **state)
{
    struct fx *f = *state;
    lk_softstore *a = open_ok(f->path, LK_SOFTSTORE_CREATE);
    lk_softstore *b = open_ok(f->path, 0), *c;
    lk_se sa = lk_softstore_se(a), sb = lk_softstore_se(b), sc;
    uint8_t pub1[LK_PUBKEY_DER_MAX], pub2[LK_PUBKEY_DER_MAX], pub[LK_PUBKEY_DER_MAX];
    size_t len1 = 0, len2 = 0, len = 0;
    uint8_t dg[32] = {1};
    lk_alg alg;

    /* B was opened before A wrote k1, and does not lose it. */
    assert_int_equal(lk_se_generate(&sa, "k1", LK_ALG_ES256, 0, pub1, sizeof pub1, &len1), LK_OK);
    assert_int_equal(lk_se_generate(&sb, "k2", LK_ALG_ES256, 0, pub2, sizeof pub2, &len2), LK_OK);
    c = open_ok(f->path, 0);
    sc = lk_softstore_se(c);
    assert_int_equal(lk_softstore_count(c), 2);
    assert_int_equal(lk_se_public_key(&sc, "k1", &alg, pub, sizeof pub, &len), LK_OK);
    assert_int_equal(len, len1);
    assert_memory_equal(pub, pub1, len1);
    assert_int_equal(lk_se_public_key(&sc, "k2", &alg, pub, sizeof pub, &len), LK_OK);
    assert_int_equal(len, len2);
    assert_memory_equal(pub, pub2, len2);
    lk_softstore_close(c);

    /* B's write merged A's key in, so B now sees k1. */
    assert_int_equal(lk_softstore_count(b), 2);
    sign_and_verify(&sb, "k1", LK_ALG_ES256, dg);

    /* A's view is stale (one key); generating B's name is caught against
     * the disk: KEY_EXISTS, nothing written, A unchanged and usable. */
    assert_int_equal(lk_softstore_count(a), 1);
    assert_int_equal(lk_se_generate(&sa, "k2", LK_ALG_ES256, 0, pub, sizeof pub, &len),
                     LK_ERR_KEY_EXISTS);
    assert_int_equal(lk_softstore_count(a), 1);
    assert_int_equal(lk_se_public_key(&sa, "k2", &alg, pub, sizeof pub, &len),
                     LK_ERR_KEY_NOT_FOUND);
    sign_and_verify(&sa, "k1", LK_ALG_ES256, dg);
    c = open_ok(f->path, 0);
    sc = lk_softstore_se(c);
    assert_int_equal(lk_se_public_key(&sc, "k2", &alg, pub, sizeof pub, &len), LK_OK);
    assert_memory_equal(pub, pub2, len2); /* still B's key */
    lk_softstore_close(c);
    /* A's next successful write brings it up to date. */
    assert_int_equal(lk_se_generate(&sa, "k3", LK_ALG_ES256, 0, pub, sizeof pub, &len), LK_OK);
    assert_int_equal(lk_softstore_count(a), 3);
    assert_only_store_files(f);
    lk_softstore_close(a);
    lk_softstore_close(b);
}

/* ================================================================== */
/* Deferred saving.                                                     */

#define BULK 200

static void test_defer_save(void **state)
{
    struct fx *f = *state;
    lk_softstore *d = open_ok(f->path, LK_SOFTSTORE_CREATE | LK_SOFTSTORE_DEFER_SAVE), *r;
    lk_se se = lk_softstore_se(d), rse;
    uint8_t pub[LK_PUBKEY_DER_MAX], dg[32] = {3};
    size_t pub_len = 0, len = 0, len2 = 0;
    char *before, *after, name[32];
    const char *ename;
    lk_alg alg;
    int i;

    /* CREATE wrote the empty store at once, even with DEFER. */
    before = read_bytes(f->path, &len);
    assert_true(len > 0);

    for (i = 0; i < BULK; i++) {
        snprintf(name, sizeof name, "bulk-%03d", i);
        assert_int_equal(lk_se_generate(&se, name, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                         LK_OK);
        if (i == BULK / 2)
            assert_file_is(f->path, before, len);
    }
    assert_file_is(f->path, before, len);
    assert_int_equal(lk_softstore_count(d), BULK);
    /* A name pending in memory is taken. */
    assert_int_equal(lk_se_generate(&se, "bulk-007", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_ERR_KEY_EXISTS);
    /* Pending keys already sign. */
    sign_and_verify(&se, "bulk-123", LK_ALG_ES256, dg);
    /* Nobody else sees them yet. */
    r = open_ok(f->path, 0);
    assert_int_equal(lk_softstore_count(r), 0);
    lk_softstore_close(r);

    assert_int_equal(lk_softstore_save(d), LK_OK);
    assert_only_store_files(f);
    after = read_bytes(f->path, &len2);
    assert_true(len2 > len);
    /* A second save has nothing to do and does not rewrite the file. */
    assert_int_equal(lk_softstore_save(d), LK_OK);
    assert_file_is(f->path, after, len2);
    free(after);

    r = open_ok(f->path, 0);
    rse = lk_softstore_se(r);
    assert_int_equal(lk_softstore_count(r), BULK);
    for (i = 0; i < BULK; i++) {
        snprintf(name, sizeof name, "bulk-%03d", i);
        assert_int_equal(lk_softstore_entry(r, (size_t)i, &ename, &alg), LK_OK);
        assert_string_equal(ename, name); /* file order = generation order */
        assert_int_equal(alg, LK_ALG_ES256);
        assert_int_equal(lk_se_public_key(&rse, name, &alg, pub, sizeof pub, &pub_len), LK_OK);
    }
    sign_and_verify(&rse, "bulk-000", LK_ALG_ES256, dg);
    sign_and_verify(&rse, "bulk-199", LK_ALG_ES256, dg);
    lk_softstore_close(r);
    lk_softstore_close(d);
    free(before);
}

static void test_defer_conflict(void **state)
{
    struct fx *f = *state;
    lk_softstore *d = open_ok(f->path, LK_SOFTSTORE_CREATE | LK_SOFTSTORE_DEFER_SAVE), *r;
    lk_se se = lk_softstore_se(d), rse;
    uint8_t mine[LK_PUBKEY_DER_MAX], theirs[LK_PUBKEY_DER_MAX], pub[LK_PUBKEY_DER_MAX];
    size_t mine_len = 0, theirs_len = 0, pub_len = 0, len = 0;
    char *snapshot;
    lk_alg alg;
    pid_t pid;

    assert_int_equal(lk_se_generate(&se, "mine", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len),
                     LK_OK);
    assert_int_equal(lk_se_generate(&se, "shared", LK_ALG_ES256, 0, mine, sizeof mine,
                                    &mine_len), LK_OK);

    /* Meanwhile another process adds "shared" (and writes at once). */
    pid = fork_or_fail();
    if (pid == 0) {
        lk_softstore *o = NULL;
        lk_se ose;
        uint8_t p[LK_PUBKEY_DER_MAX];
        size_t pl = 0;
        int rc = 1;
        if (lk_softstore_open(f->path, 0, &o) == LK_OK) {
            ose = lk_softstore_se(o);
            rc = lk_se_generate(&ose, "shared", LK_ALG_ES256, 0, p, sizeof p, &pl) != LK_OK;
            lk_softstore_close(o);
        }
        _exit(rc);
    }
    assert_int_equal(wait_child(pid), 0);
    snapshot = read_bytes(f->path, &len);
    r = open_ok(f->path, 0);
    rse = lk_softstore_se(r);
    assert_int_equal(lk_se_public_key(&rse, "shared", &alg, theirs, sizeof theirs, &theirs_len),
                     LK_OK);
    lk_softstore_close(r);
    assert_false(theirs_len == mine_len && memcmp(theirs, mine, mine_len) == 0);

    /* Saving finds the clash: KEY_EXISTS, and nothing is written (the save
     * is all or nothing: "mine" is not written either). */
    assert_int_equal(lk_softstore_save(d), LK_ERR_KEY_EXISTS);
    assert_file_is(f->path, snapshot, len);
    assert_only_store_files(f);
    r = open_ok(f->path, 0);
    rse = lk_softstore_se(r);
    assert_int_equal(lk_softstore_count(r), 1);
    assert_int_equal(lk_se_public_key(&rse, "shared", &alg, pub, sizeof pub, &pub_len), LK_OK);
    assert_int_equal(pub_len, theirs_len);
    assert_memory_equal(pub, theirs, theirs_len); /* the other process's key */
    assert_int_equal(lk_se_public_key(&rse, "mine", &alg, pub, sizeof pub, &pub_len),
                     LK_ERR_KEY_NOT_FOUND);
    lk_softstore_close(r);
    /* The deferred handle still holds its own view, and says the same again. */
    assert_int_equal(lk_softstore_count(d), 2);
    assert_int_equal(lk_softstore_save(d), LK_ERR_KEY_EXISTS);
    assert_file_is(f->path, snapshot, len);
    lk_softstore_close(d);
    free(snapshot);
}

/* ================================================================== */

static int group_setup(void **state)
{
    lk_softstore *s = NULL;
    lk_se se;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    (void)state;

    g_tmpl_dir = lk_test_tmpdir();
    if (g_tmpl_dir == NULL)
        return -1;
    snprintf(g_tmpl_path, sizeof g_tmpl_path, "%s/template.store", g_tmpl_dir);
    if (lk_softstore_open(g_tmpl_path, LK_SOFTSTORE_CREATE, &s) != LK_OK)
        return -1;
    se = lk_softstore_se(s);
    if (lk_se_generate(&se, "es", LK_ALG_ES256, 0, pub, sizeof pub, &pub_len) != LK_OK ||
        lk_se_generate(&se, "rs", LK_ALG_RS256, 2048, pub, sizeof pub, &pub_len) != LK_OK) {
        lk_softstore_close(s);
        return -1;
    }
    lk_softstore_close(s);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lk_test_rmtree(g_tmpl_dir);
    free(g_tmpl_dir);
    return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_open_missing_and_create),
        T(test_create_on_write),
        T(test_api_arguments),
        T(test_generate_and_reopen),
        T(test_generate_rejections),
        T(test_sign_digest),
        T(test_jwt_iotcore),
        T(test_corrupt_truncated),
        T(test_corrupt_flipped_bytes),
        T(test_corrupt_checksum_and_trailer),
        T(test_corrupt_forged_entries),
        T(test_corrupt_forged_keys),
        T(test_foreign),
        T(test_permissions),
        T(test_links_and_odd_files),
        T(test_atomic_rewrite),
        T(test_readonly_directory),
        T(test_concurrent_processes),
        T(test_two_handles),
        T(test_defer_save),
        T(test_defer_conflict),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
