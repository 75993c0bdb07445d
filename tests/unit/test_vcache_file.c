/*
 * The verified-token cache across a restart (lk_vcache_save, lk_vcache_load):
 * a restored entry hits exactly as the one it was saved from would have, and
 * never where that one would not (a credential removed, replaced or expired
 * meanwhile, another policy, the token's own expiry); a file that is torn,
 * foreign, altered or writable by others is refused and leaves the cache empty.
 */
#include "lk_test.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_verify.h"

#define NOW 1700000000
#define NKEYS 3

static EVP_PKEY *keys[NKEYS];
static lk_cred *creds[NKEYS];
static lk_verifier *V;
static char *dir;

static char *path_in(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static lk_cred *cred_of(EVP_PKEY *k, int64_t expires)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    long n;
    lk_cred *c = NULL;
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &pem);
    assert_int_equal(lk_cred_parse(LK_CRED_ES256_PEM, pem, (size_t)n, expires, &c), LK_OK);
    BIO_free(b);
    return c;
}

/* An ES256 token over claims (iat, exp, aud), signed by k. */
static char *token(EVP_PKEY *k, int64_t iat, int64_t exp, const char *aud)
{
    char head[64], claims[160], *h64, *c64, *s64, *tok;
    unsigned char der[80], raw[64];
    size_t dlen = sizeof der, n;
    const unsigned char *p = der;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ECDSA_SIG *sig;
    const BIGNUM *r, *s;

    snprintf(head, sizeof head, "{\"alg\":\"ES256\",\"typ\":\"JWT\"}");
    snprintf(claims, sizeof claims, "{\"iat\":%lld,\"exp\":%lld,\"aud\":\"%s\"}", (long long)iat,
             (long long)exp, aud);
    h64 = lk_test_b64url_ref_encode((const uint8_t *)head, strlen(head));
    c64 = lk_test_b64url_ref_encode((const uint8_t *)claims, strlen(claims));
    n = strlen(h64) + 1 + strlen(c64);
    tok = malloc(n + 100);
    assert_non_null(tok);
    snprintf(tok, n + 1, "%s.%s", h64, c64);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, der, &dlen, (const unsigned char *)tok, n), 1);
    sig = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    assert_non_null(sig);
    ECDSA_SIG_get0(sig, &r, &s);
    assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
    assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
    s64 = lk_test_b64url_ref_encode(raw, 64);
    snprintf(tok + n, 100, ".%s", s64);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    free(h64);
    free(c64);
    free(s64);
    return tok;
}

static lk_verify_policy policy(int64_t now)
{
    lk_verify_policy pol;
    lk_verify_policy_init(&pol, "proj", 4, now);
    return pol;
}

/* Verify through cache; returns the result, *hit says whether it was a hit. */
static lk_err check(lk_vcache *c, const char *tok, lk_cred *const *cs, size_t n,
                    const lk_verify_policy *pol, int *hit)
{
    lk_token_info info;
    char why[200];
    return lk_verify_token_cached(V, c, tok, strlen(tok), cs, n, pol, &info, hit, why, sizeof why);
}

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++) {
        keys[i] = EVP_EC_gen("P-256");
        if (keys[i] == NULL)
            return -1;
        creds[i] = cred_of(keys[i], 0);
    }
    dir = lk_test_tmpdir();
    return lk_verifier_new(&V) == LK_OK && dir != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++) {
        lk_cred_free(creds[i]);
        EVP_PKEY_free(keys[i]);
    }
    lk_verifier_free(V);
    lk_test_rmtree(dir);
    free(dir);
    return 0;
}

/* Three devices' tokens verified, saved, loaded into a new cache: all hit
 * there without a signature check, and the tag comes back. */
static void test_round_trip(void **state)
{
    (void)state;
    lk_vcache *a = NULL, *b = NULL;
    lk_verify_policy pol = policy(NOW);
    lk_vcache_stats st;
    char *toks[NKEYS];
    uint64_t tag = 0;
    size_t n = 0;
    int hit = -1;
    struct stat sb;

    assert_int_equal(lk_vcache_new(64, &a), LK_OK);
    for (int i = 0; i < NKEYS; i++) {
        toks[i] = token(keys[i], NOW - 10, NOW + 3600, "proj");
        pol.subject = (uint64_t)i + 1;
        assert_int_equal(check(a, toks[i], &creds[i], 1, &pol, &hit), LK_OK);
        assert_int_equal(hit, 0);
    }
    assert_int_equal(lk_vcache_save(a, path_in("c"), UINT64_C(0x1122334455667788)), LK_OK);
    assert_int_equal(stat(path_in("c"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(access(path_in("c.tmp"), F_OK), -1);
    /* a smaller cache: placement follows the saved seed, whatever the capacity */
    assert_int_equal(lk_vcache_new(16, &b), LK_OK);
    assert_int_equal(lk_vcache_load(b, path_in("c"), NOW, &tag, &n), LK_OK);
    assert_true(tag == UINT64_C(0x1122334455667788));
    assert_int_equal(n, NKEYS);
    for (int i = 0; i < NKEYS; i++) {
        pol.subject = (uint64_t)i + 1;
        assert_int_equal(check(b, toks[i], &creds[i], 1, &pol, &hit), LK_OK);
        assert_int_equal(hit, 1);
    }
    lk_vcache_get_stats(b, &st);
    assert_true(st.hits == NKEYS && st.misses == 0);
    /* loading into a cache that holds entries is refused */
    assert_int_equal(lk_vcache_load(b, path_in("c"), NOW, NULL, NULL), LK_ERR_STATE);
    for (int i = 0; i < NKEYS; i++)
        free(toks[i]);
    lk_vcache_free(a);
    lk_vcache_free(b);
}

/* What changed while the service was down is never let through by a
 * restored entry: a removed, replaced or added credential, a credential now
 * expired, another policy, another subject, the token's own expiry. Each
 * misses, and the full check decides. */
static void test_no_revocation_passes(void **state)
{
    (void)state;
    lk_vcache *a = NULL, *b = NULL;
    lk_verify_policy pol = policy(NOW);
    char *tok = token(keys[0], NOW - 10, NOW + 3600, "proj");
    lk_cred *both[2] = {creds[1], creds[0]};
    lk_cred *expiring = cred_of(keys[0], NOW + 100);
    int hit = -1;

    pol.subject = 7;
    assert_int_equal(lk_vcache_new(64, &a), LK_OK);
    assert_int_equal(check(a, tok, &creds[0], 1, &pol, &hit), LK_OK);
    /* also remembered with a credential that expires soon */
    assert_int_equal(check(a, tok, &expiring, 1, &pol, &hit), LK_OK);
    assert_int_equal(lk_vcache_save(a, path_in("r"), 1), LK_OK);

    /* the key was replaced by another: the token's signature no longer verifies */
    assert_int_equal(lk_vcache_new(64, &b), LK_OK);
    assert_int_equal(lk_vcache_load(b, path_in("r"), NOW, NULL, NULL), LK_OK);
    assert_int_equal(check(b, tok, &creds[1], 1, &pol, &hit), LK_ERR_TOKEN_SIGNATURE);
    assert_int_equal(hit, 0);
    /* a second key added: a miss (a full check, which passes) */
    assert_int_equal(check(b, tok, both, 2, &pol, &hit), LK_OK);
    assert_int_equal(hit, 0);
    /* the expiring credential, past its expiry */
    lk_verify_policy later = policy(NOW + 200);
    later.subject = 7;
    assert_int_equal(check(b, tok, &expiring, 1, &later, &hit), LK_ERR_NO_CREDENTIAL);
    assert_int_equal(hit, 0);
    /* another audience or skew: another policy */
    lk_verify_policy other = policy(NOW);
    other.subject = 7;
    other.skew = 60;
    assert_int_equal(check(b, tok, &creds[0], 1, &other, &hit), LK_OK);
    assert_int_equal(hit, 0);
    /* the unchanged case hits */
    assert_int_equal(check(b, tok, &creds[0], 1, &pol, &hit), LK_OK);
    assert_int_equal(hit, 1);
    /* but not once the token itself has expired: exp + skew in the past */
    lk_verify_policy gone = policy(NOW + 3600 + LK_VERIFY_SKEW + 1);
    gone.subject = 7;
    assert_int_equal(check(b, tok, &creds[0], 1, &gone, &hit), LK_ERR_TOKEN_EXPIRED);
    assert_int_equal(hit, 0);
    lk_vcache_free(b);

    /* entries long expired are not loaded at all */
    assert_int_equal(lk_vcache_new(64, &b), LK_OK);
    size_t n = 99;
    assert_int_equal(lk_vcache_load(b, path_in("r"), NOW + 3600 + LK_VERIFY_MAX_SKEW, NULL, &n),
                     LK_OK);
    assert_int_equal(n, 0);
    lk_vcache_free(b);
    lk_vcache_free(a);
    lk_cred_free(expiring);
    free(tok);
}

static void write_bytes(const char *path, const uint8_t *p, size_t n, mode_t mode)
{
    int fd;
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* Torn, foreign, altered, writable by others, a link: refused with the
 * reason, the cache empty and still usable. */
static void test_bad_files(void **state)
{
    (void)state;
    lk_vcache *a = NULL, *b = NULL;
    lk_verify_policy pol = policy(NOW);
    char *tok = token(keys[0], NOW - 10, NOW + 3600, "proj");
    uint8_t *good;
    size_t len = 0, n = 7;
    uint64_t tag = 7;
    lk_vcache_stats st;
    int hit;

    assert_int_equal(lk_vcache_new(64, &a), LK_OK);
    assert_int_equal(check(a, tok, &creds[0], 1, &pol, &hit), LK_OK);
    assert_int_equal(lk_vcache_save(a, path_in("g"), 5), LK_OK);
    good = (uint8_t *)lk_test_read_file(path_in("g"), &len);
    assert_non_null(good);
    assert_int_equal(len, 40 + 66 + 32);
    assert_int_equal(lk_vcache_new(64, &b), LK_OK);

    assert_int_equal(lk_vcache_load(b, path_in("none"), NOW, &tag, &n), LK_ERR_STORE_MISSING);
    assert_true(tag == 0 && n == 0);
    write_bytes(path_in("bad"), good, 0, 0600);
    assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL), LK_ERR_STORE_CORRUPT);
    for (size_t cut = 1; cut < len; cut += 7) {
        write_bytes(path_in("bad"), good, cut, 0600);
        lk_err e = lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL);
        assert_true(e == LK_ERR_STORE_CORRUPT || (cut < 8 && e == LK_ERR_STORE_FOREIGN));
    }
    write_bytes(path_in("bad"), (const uint8_t *)"latchkey-keystore v1\n", 21, 0600);
    assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL), LK_ERR_STORE_FOREIGN);
    good[11] = 2; /* version 2 */
    write_bytes(path_in("bad"), good, len, 0600);
    assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL), LK_ERR_STORE_FOREIGN);
    good[11] = 1;
    /* every byte of the body altered in turn: the checksum catches it (a
     * changed count is caught by the size first) */
    for (size_t i = 16; i < len; i++) {
        good[i] ^= 0x01;
        write_bytes(path_in("bad"), good, len, 0600);
        assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL), LK_ERR_STORE_CORRUPT);
        good[i] ^= 0x01;
    }
    /* a file its group may write */
    write_bytes(path_in("bad"), good, len, 0620);
    assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL), LK_ERR_STORE_PERMS);
    /* a good file of another user's (root can make one) */
    if (geteuid() == 0) {
        write_bytes(path_in("bad"), good, len, 0600);
        assert_int_equal(chown(path_in("bad"), 65534, 65534), 0);
        assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, NULL, NULL), LK_ERR_STORE_PERMS);
    }
    /* a symbolic link to a good file */
    unlink(path_in("link"));
    assert_int_equal(symlink(path_in("g"), path_in("link")), 0);
    assert_int_equal(lk_vcache_load(b, path_in("link"), NOW, NULL, NULL), LK_ERR_STORE_PERMS);
    /* a directory */
    assert_int_equal(lk_vcache_load(b, dir, NOW, NULL, NULL), LK_ERR_STORE_PERMS);

    /* after all that: empty, and the good file still loads */
    lk_vcache_get_stats(b, &st);
    assert_int_equal(st.used, 0);
    write_bytes(path_in("bad"), good, len, 0600);
    assert_int_equal(lk_vcache_load(b, path_in("bad"), NOW, &tag, &n), LK_OK);
    assert_true(tag == 5 && n == 1);
    assert_int_equal(check(b, tok, &creds[0], 1, &pol, &hit), LK_OK);
    assert_int_equal(hit, 1);

    /* saving where the temporary file cannot be made: an error, the old file kept */
    assert_int_equal(lk_vcache_save(a, "/nonexistent-dir/cache", 1), LK_ERR_IO);
    assert_int_equal(lk_vcache_save(NULL, path_in("g"), 1), LK_ERR_ARG);
    assert_int_equal(lk_vcache_load(NULL, path_in("g"), NOW, NULL, NULL), LK_ERR_ARG);
    free(good);
    free(tok);
    lk_vcache_free(a);
    lk_vcache_free(b);
}

/* More entries than the new cache has room for: it takes what fits (each
 * set its newest) and those hit. */
static void test_smaller_cache(void **state)
{
    (void)state;
    lk_vcache *a = NULL, *b = NULL;
    lk_verify_policy pol = policy(NOW);
    lk_vcache_stats st;
    enum { N = 40 };
    char *toks[N];
    int hit, hits = 0;
    size_t n = 0;

    assert_int_equal(lk_vcache_new(256, &a), LK_OK);
    for (int i = 0; i < N; i++) {
        toks[i] = token(keys[0], NOW - 10 - i, NOW + 3600, "proj");
        pol.subject = 100 + (uint64_t)i;
        assert_int_equal(check(a, toks[i], &creds[0], 1, &pol, &hit), LK_OK);
    }
    assert_int_equal(lk_vcache_save(a, path_in("big"), 0), LK_OK);
    assert_int_equal(lk_vcache_new(16, &b), LK_OK);
    assert_int_equal(lk_vcache_load(b, path_in("big"), NOW, NULL, &n), LK_OK);
    assert_true(n > 0 && n <= 16);
    /* newest first: a miss's insert would evict the oldest loaded entries */
    for (int i = N - 1; i >= 0; i--) {
        pol.subject = 100 + (uint64_t)i;
        assert_int_equal(check(b, toks[i], &creds[0], 1, &pol, &hit), LK_OK);
        hits += hit;
        free(toks[i]);
    }
    lk_vcache_get_stats(b, &st);
    assert_true(hits > 0 && (size_t)hits <= n && st.hits == (uint64_t)hits);
    lk_vcache_free(a);
    lk_vcache_free(b);
}

/* lk_cred_release_key: the decoded key freed, the credential still verifies
 * (decoded again from its DER), ES256 and RS256, good and bad signatures,
 * released again and again; what identifies it never changes. */
static void test_released_keys_verify_again(void **state)
{
    (void)state;
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    lk_cred *es = cred_of(keys[0], 0), *rs;
    lk_verify_policy pol = policy(NOW);
    lk_token_info info;
    char why[200], *tok, *other, *rtok;
    uint8_t fp1[32], fp2[32];
    BIO *b = BIO_new(BIO_s_mem());
    char *pem;
    long n;

    assert_non_null(rsa);
    assert_int_equal(PEM_write_bio_PUBKEY(b, rsa), 1);
    n = BIO_get_mem_data(b, &pem);
    assert_int_equal(lk_cred_parse(LK_CRED_RSA_PEM, pem, (size_t)n, 0, &rs), LK_OK);
    BIO_free(b);
    {
        /* an RS256 token: PKCS#1 v1.5 over header.claims */
        const char *h = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"; /* {"alg":"RS256","typ":"JWT"} */
        char claims[100], *c64, *s64, *input;
        unsigned char sig[256];
        size_t slen = sizeof sig;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        snprintf(claims, sizeof claims, "{\"iat\":%d,\"exp\":%d,\"aud\":\"proj\"}", NOW - 10, NOW + 3600);
        c64 = lk_test_b64url_ref_encode((const uint8_t *)claims, strlen(claims));
        input = malloc(strlen(h) + strlen(c64) + 2);
        sprintf(input, "%s.%s", h, c64);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, rsa), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &slen, (unsigned char *)input, strlen(input)), 1);
        s64 = lk_test_b64url_ref_encode(sig, slen);
        rtok = malloc(strlen(input) + strlen(s64) + 2);
        sprintf(rtok, "%s.%s", input, s64);
        EVP_MD_CTX_free(md);
        free(c64);
        free(s64);
        free(input);
    }
    tok = token(keys[0], NOW - 10, NOW + 3600, "proj");
    other = token(keys[1], NOW - 10, NOW + 3600, "proj");
    lk_cred_fingerprint(es, fp1);
    for (int round = 0; round < 3; round++) {
        lk_cred_release_key(es);
        lk_cred_release_key(rs);
        lk_cred_release_key(es); /* twice: nothing more */
        assert_int_equal(lk_verify_token(V, tok, strlen(tok), &es, 1, &pol, &info, why, sizeof why), LK_OK);
        assert_int_equal(lk_verify_token(V, other, strlen(other), &es, 1, &pol, &info, why, sizeof why),
                         LK_ERR_TOKEN_SIGNATURE);
        assert_int_equal(lk_verify_token(V, rtok, strlen(rtok), &rs, 1, &pol, &info, why, sizeof why), LK_OK);
        assert_int_equal(lk_cred_alg(es), LK_ALG_ES256);
        assert_int_equal(lk_cred_alg(rs), LK_ALG_RS256);
        lk_cred_fingerprint(es, fp2);
        assert_memory_equal(fp1, fp2, 32);
    }
    lk_cred_release_key(NULL);
    lk_cred_release_key(es); /* freed released: no leak (ASan) */
    lk_cred_free(es);
    lk_cred_free(rs);
    EVP_PKEY_free(rsa);
    free(tok);
    free(other);
    free(rtok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_no_revocation_passes),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_smaller_cache),
        cmocka_unit_test(test_released_keys_verify_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
