/*
 * Token-verification throughput beside its baselines, in one process: the
 * cost the broker pays per CONNECT.
 *
 *   bench_verify [ROUNDS [SECONDS]]   →  prints `name: value` lines
 *   bench_verify profile WHAT N       →  N verifications and nothing else,
 *                                        for valgrind --tool=callgrind;
 *                                        WHAT: es256 rs256 cached
 *                                        openssl-es256 openssl-rs256 libjwt-es256
 *
 * Each comparison runs ROUNDS * 5 pairs of slices of SECONDS / 10 each (so
 * 2 * ROUNDS * SECONDS seconds in all), ours and the baseline back to back
 * in alternating order, and reports the median of the per-pair ratios: both
 * sides of a pair saw the same machine. Rates are medians over slices.
 *
 * Baselines, each over the same token and key:
 *  - openssl: SHA-256 of the signing input and EVP_PKEY_verify on a context
 *    set up once (EVP_PKEY_verify_init, and for RSA the padding and digest),
 *    as `openssl speed ecdsap256` / `rsa2048` do; the ECDSA signature is
 *    given in DER, converted once outside the loop. No parsing, no claims:
 *    the floor a verifier cannot go below.
 *  - libjwt (Debian's 1.10): jwt_decode(&jwt, token, key_pem, len), the call
 *    a user would write; it parses the PEM every time and checks no claims.
 * The fixed tokens are {"alg":..,"typ":"JWT"}.{"iat","exp","aud"} with a
 * 13-character audience, as devices send them; keys are made in memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#ifdef LK_HAVE_LIBJWT
#include <jwt.h>
#endif

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_verify.h"

#define NOW 1700000000
#define AUD "bench-project"

typedef struct fixture {
    lk_alg alg;
    char token[1024];
    size_t token_len, si_len; /* si: "header.payload", the signing input */
    char *pem;
    size_t pem_len;
    lk_cred *cred;
    EVP_PKEY *pub;            /* the public key, read back from the PEM */
    EVP_PKEY_CTX *vctx;       /* baseline: verify_init done once */
    uint8_t sig[512];         /* baseline: DER (ES256) or raw (RS256) */
    size_t sig_len;
} fixture;

static fixture g_es, g_rs;
static lk_verifier *g_v;
static lk_vcache *g_cache;
static lk_verify_policy g_pol;
static EVP_MD *g_sha256;
static EVP_MD_CTX *g_md;

static void die(const char *what)
{
    fprintf(stderr, "bench_verify: %s failed\n", what);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_b64(char *buf, size_t *len, size_t size, const void *in, size_t n)
{
    size_t w;
    if (lk_b64url_encode(in, n, buf + *len, size - *len, &w) != LK_OK)
        die("lk_b64url_encode");
    *len += w;
}

static void make_fixture(fixture *f, lk_alg alg)
{
    char header[64], claims[96];
    EVP_PKEY *key;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    BIO *bio = BIO_new(BIO_s_mem());
    uint8_t raw[512];
    size_t raw_len;
    char *p;
    long n;

    memset(f, 0, sizeof *f);
    f->alg = alg;
    key = alg == LK_ALG_ES256 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                              : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (key == NULL || md == NULL || bio == NULL)
        die("key generation");
    snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", lk_alg_name(alg));
    snprintf(claims, sizeof claims, "{\"iat\":%d,\"exp\":%d,\"aud\":\"%s\"}", NOW, NOW + 3600, AUD);
    put_b64(f->token, &f->token_len, sizeof f->token, header, strlen(header));
    f->token[f->token_len++] = '.';
    put_b64(f->token, &f->token_len, sizeof f->token, claims, strlen(claims));
    f->si_len = f->token_len;

    f->sig_len = sizeof f->sig;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, f->sig, &f->sig_len, (const uint8_t *)f->token, f->si_len) != 1)
        die("signing");
    if (alg == LK_ALG_ES256) {
        const uint8_t *q = f->sig;
        const BIGNUM *r, *s;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)f->sig_len);
        if (es == NULL)
            die("d2i_ECDSA_SIG");
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
            die("BN_bn2binpad");
        ECDSA_SIG_free(es);
        raw_len = 64;
    } else {
        memcpy(raw, f->sig, f->sig_len);
        raw_len = f->sig_len;
    }
    f->token[f->token_len++] = '.';
    put_b64(f->token, &f->token_len, sizeof f->token, raw, raw_len);

    if (PEM_write_bio_PUBKEY(bio, key) != 1)
        die("PEM_write_bio_PUBKEY");
    n = BIO_get_mem_data(bio, &p);
    if (n <= 0)
        die("BIO_get_mem_data");
    f->pem = malloc((size_t)n + 1);
    if (f->pem == NULL)
        die("malloc");
    memcpy(f->pem, p, (size_t)n);
    f->pem[n] = '\0';
    f->pem_len = (size_t)n;
    BIO_free(bio);
    if (lk_cred_parse(alg == LK_ALG_ES256 ? LK_CRED_ES256_PEM : LK_CRED_RSA_PEM,
                      f->pem, f->pem_len, 0, &f->cred) != LK_OK)
        die("lk_cred_parse");

    /* The baseline's key and context, from the same PEM. */
    bio = BIO_new_mem_buf(f->pem, (int)f->pem_len);
    if (bio == NULL || (f->pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL)) == NULL)
        die("PEM_read_bio_PUBKEY");
    BIO_free(bio);
    f->vctx = EVP_PKEY_CTX_new(f->pub, NULL);
    if (f->vctx == NULL || EVP_PKEY_verify_init(f->vctx) != 1)
        die("EVP_PKEY_verify_init");
    if (alg == LK_ALG_RS256 &&
        (EVP_PKEY_CTX_set_rsa_padding(f->vctx, RSA_PKCS1_PADDING) != 1 ||
         EVP_PKEY_CTX_set_signature_md(f->vctx, EVP_sha256()) != 1))
        die("RSA verify context");
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
}

/* ---- the workloads: one operation each, 1 = verified ---- */

static int op_ours(const fixture *f)
{
    lk_token_info info;
    lk_cred *creds[1] = {f->cred};
    return lk_verify_token(g_v, f->token, f->token_len, creds, 1, &g_pol, &info, NULL, 0) == LK_OK;
}

static int op_ours_es(void) { return op_ours(&g_es); }
static int op_ours_rs(void) { return op_ours(&g_rs); }

static int op_cached(void)
{
    lk_token_info info;
    lk_cred *creds[1] = {g_es.cred};
    int hit = 0;
    return lk_verify_token_cached(g_v, g_cache, g_es.token, g_es.token_len, creds, 1, &g_pol,
                                  &info, &hit, NULL, 0) == LK_OK && hit;
}

static int op_openssl(const fixture *f)
{
    uint8_t digest[32];
    unsigned int n = 0;
    if (EVP_DigestInit_ex2(g_md, g_sha256, NULL) != 1 ||
        EVP_DigestUpdate(g_md, f->token, f->si_len) != 1 ||
        EVP_DigestFinal_ex(g_md, digest, &n) != 1)
        return 0;
    return EVP_PKEY_verify(f->vctx, f->sig, f->sig_len, digest, 32) == 1;
}

static int op_openssl_es(void) { return op_openssl(&g_es); }
static int op_openssl_rs(void) { return op_openssl(&g_rs); }

#ifdef LK_HAVE_LIBJWT
static int op_libjwt_es(void)
{
    jwt_t *jwt = NULL;
    int ok = jwt_decode(&jwt, g_es.token, (const unsigned char *)g_es.pem, (int)g_es.pem_len) == 0 &&
             jwt_get_alg(jwt) == JWT_ALG_ES256;
    jwt_free(jwt);
    return ok;
}
#endif

typedef int (*op_fn)(void);

/* Operations per second over one slice of `secs` seconds. */
static double slice(op_fn op, unsigned batch, double secs, const char *name)
{
    double t0 = now_s(), t;
    long n = 0;
    unsigned i;
    do {
        for (i = 0; i < batch; i++)
            if (!op()) {
                fprintf(stderr, "bench_verify: %s did not verify\n", name);
                exit(1);
            }
        n += batch;
        t = now_s();
    } while (t - t0 < secs);
    return (double)n / (t - t0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

typedef struct side {
    const char *name;
    op_fn op;
    unsigned batch;
} side;

/* Alternate a and b over `pairs` pairs of slices; the medians of a's rate,
 * b's rate and a/b per pair. */
static void compare(const side *a, const side *b, int pairs, double secs,
                    double *rate_a, double *rate_b, double *ratio)
{
    double *ra = calloc((size_t)pairs, sizeof *ra), *rb = calloc((size_t)pairs, sizeof *rb),
           *q = calloc((size_t)pairs, sizeof *q), lo = 0, hi = 0;
    int i;

    if (ra == NULL || rb == NULL || q == NULL)
        die("calloc");
    slice(a->op, a->batch, secs, a->name); /* warm-up: caches, branch predictors */
    slice(b->op, b->batch, secs, b->name);
    for (i = 0; i < pairs; i++) {
        if (i % 2 == 0) {
            ra[i] = slice(a->op, a->batch, secs, a->name);
            rb[i] = slice(b->op, b->batch, secs, b->name);
        } else {
            rb[i] = slice(b->op, b->batch, secs, b->name);
            ra[i] = slice(a->op, a->batch, secs, a->name);
        }
        q[i] = ra[i] / rb[i];
        lo = i == 0 || q[i] < lo ? q[i] : lo;
        hi = i == 0 || q[i] > hi ? q[i] : hi;
    }
    *rate_a = median(ra, pairs);
    *rate_b = median(rb, pairs);
    *ratio = median(q, pairs);
    fprintf(stderr, "%s / %s: %d pairs of %.0f ms, ratio %.3f .. %.3f, median %.3f\n",
            a->name, b->name, pairs, secs * 1000, lo, hi, *ratio);
    free(ra);
    free(rb);
    free(q);
}

static void setup(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_md = EVP_MD_CTX_new();
    if (g_sha256 == NULL || g_md == NULL)
        die("SHA-256");
    if (lk_verifier_new(&g_v) != LK_OK || lk_vcache_new(1024, &g_cache) != LK_OK)
        die("lk_verifier_new / lk_vcache_new");
    lk_verify_policy_init(&g_pol, AUD, strlen(AUD), NOW + 60);
    make_fixture(&g_es, LK_ALG_ES256);
    make_fixture(&g_rs, LK_ALG_RS256);
    if (!op_ours_es() || !op_ours_rs() || !op_openssl_es() || !op_openssl_rs())
        die("verifying the fixed tokens");
    op_cached(); /* the miss that fills the cache; every later call hits */
}

static int profile(const char *what, long n)
{
    static const struct { const char *name; op_fn op; } ops[] = {
        {"es256", op_ours_es}, {"rs256", op_ours_rs}, {"cached", op_cached},
        {"openssl-es256", op_openssl_es}, {"openssl-rs256", op_openssl_rs},
#ifdef LK_HAVE_LIBJWT
        {"libjwt-es256", op_libjwt_es},
#endif
    };
    size_t k;
    long i;
    for (k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        if (strcmp(what, ops[k].name) != 0)
            continue;
        for (i = 0; i < n; i++)
            if (!ops[k].op())
                die(what);
        return 0;
    }
    fprintf(stderr, "bench_verify: profile: unknown %s\n", what);
    return 2;
}

int main(int argc, char **argv)
{
    int rounds = 5, pairs;
    double secs = 1.0, ours, base, ratio, cached;
    const side ours_es = {"verify_es256", op_ours_es, 1}, ssl_es = {"openssl_es256", op_openssl_es, 1},
               ours_rs = {"verify_rs256", op_ours_rs, 4}, ssl_rs = {"openssl_rs256", op_openssl_rs, 4},
               hits = {"verify_cached", op_cached, 64};

    if (argc == 4 && strcmp(argv[1], "profile") == 0) {
        setup();
        return profile(argv[2], atol(argv[3]));
    }
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (argc > 2)
        secs = atof(argv[2]);
    if (argc > 3 || rounds < 1 || secs <= 0) {
        fprintf(stderr, "usage: bench_verify [ROUNDS [SECONDS]] | profile WHAT N\n");
        return 2;
    }
    pairs = rounds * 5;
    secs /= 10.0;
    setup();

    compare(&ours_es, &ssl_es, pairs, secs, &ours, &base, &ratio);
    printf("verify_es256_per_s: %.0f\n", ours);
    printf("openssl_verify_es256_per_s: %.0f\n", base);
    printf("verify_es256_vs_openssl: %.3f\n", ratio);
    fflush(stdout);

    compare(&ours_rs, &ssl_rs, pairs, secs, &ours, &base, &ratio);
    printf("verify_rs256_per_s: %.0f\n", ours);
    printf("openssl_verify_rs256_per_s: %.0f\n", base);
    printf("verify_rs256_vs_openssl: %.3f\n", ratio);
    fflush(stdout);

#ifdef LK_HAVE_LIBJWT
    {
        const side jwt_es = {"libjwt_es256", op_libjwt_es, 1};
        compare(&ours_es, &jwt_es, pairs, secs, &ours, &base, &ratio);
        printf("libjwt_verify_es256_per_s: %.0f\n", base);
        printf("verify_es256_vs_libjwt: %.3f\n", ratio);
        fflush(stdout);
    }
#else
    fprintf(stderr, "bench_verify: built without libjwt (libjwt-dev): no libjwt figures\n");
#endif

    compare(&hits, &ssl_es, pairs, secs, &cached, &base, &ratio);
    printf("verify_cached_per_s: %.0f\n", cached);
    printf("verify_cached_vs_openssl: %.1f\n", ratio);
    fflush(stdout);
    return 0;
}
