/*
 * use_verify.c — a program of a latchkey user, built by tests/install/run.sh
 * against an installed tree only (`pkg-config latchkey-verify`), that calls
 * every function liblatchkey-verify's header declares: it checks a real
 * ES256 token against its public key, directly and through the cache.
 *
 * The token and key were made once for this test with a throw-away P-256 key
 * whose private half was never written anywhere: {"iat":1700000000,
 * "exp":1700003600,"aud":"install-test"}.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <latchkey/lk_verify.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "use_verify.c:%d: %s\n", __LINE__, #cond);      \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static const char key_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZejEXmqS2F0kMHGVPDKa4qryibf6\n"
    "pB//8Djgma0MYdVEzooEt4OsELjjwql7B/R8AFPS5NE82FtIV0uiASQymQ==\n"
    "-----END PUBLIC KEY-----\n";

static const char token[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiYXVkIjoiaW5zdGFsbC10ZXN0In0"
    ".moTWNrqCzaM4CEJSHTKvkGBLGk56JszUXIfGrnPg8JGO7DV449maNVf_ph9vDKZs_NgEr1Az1lBp92gSiUzsjQ";

/* A service account's RS256 token (its key made once for this test, private half thrown away). */
static const char sa_key_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2lvkqHcOx0k53R8V82bD\n"
    "D5ivpQ2fMUkKxh8F1R0Dys93fRNcAudqtCxwNXAz4xxocfPFD+OwInQampGuLPpx\n"
    "r6/3hzZFtUx5S/B1Q4DW5hudBbkU/dux3wSo3JtOnXcua1k13Xf6NvMZdLGmJU8X\n"
    "QmmR91jPVDeMruoT1rNuX/q6E4mb7KI7Lkdyz07Z1sqkS85SGxDlOV9/0CMNrxZW\n"
    "lXiBuXWMN2v9H6bX9tFUxVjudu+USnOQYcjREyDS1sb7Oh04kMxRCA1b1g4IUFqG\n"
    "SjABU/DkRY5z0Xb1Qo9bElfPVDp+TUazZMpHv19DTTruvWZ6tq+VHcApOPCdCJHM\n"
    "LQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static const char sa_token[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1NjciLCJ0eX"
    "AiOiJKV1QifQ"
    ".eyJpc3MiOiJhcGktY2FsbGVyQGluc3RhbGwtdGVzdC5pYW0ubGF0Y2hrZXkiLCJzdWIiOiJhcGktY2FsbGVyQGluc"
    "3RhbGwtdGVzdC5pYW0ubGF0Y2hrZXkiLCJhdWQiOiJodHRwczovL2Nsb3VkaW90Lmdvb2dsZWFwaXMuY29tLyIsInN"
    "jb3BlIjoiaHR0cHM6Ly93d3cuZ29vZ2xlYXBpcy5jb20vYXV0aC9jbG91ZGlvdCIsImlhdCI6MTcwMDAwMDAwMCwiZ"
    "XhwIjoxNzAwMDAzNjAwfQ"
    ".MzTssbtbOUo7HmjVNcMNEnm7DHpRjTj03fO6_eXHeEpUTESF1NDam7Bz0i0_kbN3qlYt7BOyDJ_gj9N4N0rzp4wgz"
    "ioT8BIMTbYw3x4aoUJ307z0nkeyPxlOdvVKyhLuyq1ikoWAcOZWrKMZkOCymt-jmP0BzAINleqsGnG9PCsSmRDhBtd"
    "QLsdveYQgiAJLmND7TI_kLLTyfZOlHtCVrDZb6cYkujhvnwDaYRthoJAzgsV238aM5FAGAIoGVLT26PZgQC9mJxjr9"
    "eH2uZBd1R5hXTpu-moxMeop6M0NJ71PZEHCaEZf6cv001ab8i-EwY42Y8Df_pSOW01HRFYxaQ";

int main(void)
{
    lk_cred *cred = NULL;
    lk_verifier *v = NULL;
    lk_vcache *cache = NULL;
    lk_verify_policy pol;
    lk_token_info info;
    lk_vcache_stats st;
    uint8_t fp[32] = {0};
    char why[256];
    int hit = -1;
    lk_cred *sa_cred = NULL;
    lk_sa_policy sp;
    const char *const aud[] = {"https://cloudiot.googleapis.com/"};
    char kid[64];

    CHECK(strcmp(lk_cred_format_name(LK_CRED_ES256_PEM), "ES256_PEM") == 0);
    CHECK(lk_cred_format_from_name("RSA_X509_PEM", 12) == LK_CRED_RSA_X509_PEM);
    CHECK(lk_cred_parse(LK_CRED_ES256_PEM, key_pem, strlen(key_pem), 0, &cred) == LK_OK);
    if (cred == NULL)
        return 1;
    CHECK(lk_cred_alg(cred) == LK_ALG_ES256);
    CHECK(lk_cred_get_format(cred) == LK_CRED_ES256_PEM);
    CHECK(lk_cred_expires(cred) == 0);
    lk_cred_fingerprint(cred, fp);
    CHECK(fp[0] != 0 || fp[1] != 0 || fp[2] != 0);

    lk_verify_policy_init(&pol, "install-test", 12, 1700000100);
    CHECK(lk_verifier_new(&v) == LK_OK);
    CHECK(lk_verify_token(v, token, strlen(token), &cred, 1, &pol, &info, why, sizeof why) == LK_OK);
    CHECK(info.alg == LK_ALG_ES256 && info.exp == 1700003600 && info.valid_until == 1700004200);
    {
        /* the token's signature checked alone, as a manifest's is */
        const char *d2 = strrchr(token, '.');
        uint8_t sig[64];
        int i, n = 0, bits = 0, acc = 0;
        for (i = 1; d2[i] && n < 64; i++) { /* base64url, by hand: this test uses lk_verify.h alone */
            const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            acc = ((acc << 6) | (int)(strchr(a, d2[i]) - a)) & 0x3fff;
            if ((bits += 6) >= 8) {
                sig[n++] = (uint8_t)(acc >> (bits - 8));
                bits -= 8;
            }
        }
        CHECK(n == 64);
        CHECK(lk_cred_verify_signature(cred, (const uint8_t *)token, (size_t)(d2 - token), sig, 64) == LK_OK);
        sig[7] ^= 1;
        CHECK(lk_cred_verify_signature(cred, (const uint8_t *)token, (size_t)(d2 - token), sig, 64) ==
              LK_ERR_TOKEN_SIGNATURE);
    }
    lk_cred_release_key(cred); /* decoded again at the next verification */
    CHECK(lk_verify_token(v, token, strlen(token), &cred, 1, &pol, &info, why, sizeof why) == LK_OK);
    pol.now = 1700005000; /* past exp + skew */
    CHECK(lk_verify_token(v, token, strlen(token), &cred, 1, &pol, &info, why, sizeof why) ==
          LK_ERR_TOKEN_EXPIRED);
    pol.now = 1700000100;
    {
        /* a token without x5c: not one for just-in-time registration */
        static lk_x5c_certs certs;
        lk_verify_policy jp = pol;
        jp.flags |= LK_VERIFY_ALLOW_X5C;
        CHECK(lk_verify_jit_token(v, token, strlen(token), &jp, &info, &certs, why, sizeof why) ==
              LK_ERR_TOKEN_HEADER && certs.leaf_len == 0);
        CHECK(lk_jwt_has_x5c(token, strlen(token), 0, LK_VERIFY_ALLOW_PADDING) == 0);
        CHECK(lk_jwt_has_x5c("eyJ4NWMiOltdfQ.e30.AA", 21, 0, 0) == 1);
    }

    CHECK(lk_vcache_new(16, &cache) == LK_OK);
    CHECK(lk_verify_token_cached(v, cache, token, strlen(token), &cred, 1, &pol, &info, &hit, why,
                                 sizeof why) == LK_OK && hit == 0);
    CHECK(lk_verify_token_cached(v, cache, token, strlen(token), &cred, 1, &pol, &info, &hit, why,
                                 sizeof why) == LK_OK && hit == 1);
    lk_vcache_get_stats(cache, &st);
    CHECK(st.hits == 1 && st.misses == 1 && st.used == 1);
    {
        /* across a restart: saved, loaded into a new cache, a hit there */
        char dir[] = "/tmp/lk-use-verify-XXXXXX", path[64];
        lk_vcache *again = NULL;
        uint64_t tag = 0;
        size_t n = 0;
        CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof path, "%s/cache", dir);
        CHECK(lk_vcache_save(cache, path, 42) == LK_OK);
        CHECK(lk_vcache_new(16, &again) == LK_OK);
        CHECK(lk_vcache_load(again, path, pol.now, &tag, &n) == LK_OK && tag == 42 && n == 1);
        CHECK(lk_verify_token_cached(v, again, token, strlen(token), &cred, 1, &pol, &info, &hit, why,
                                     sizeof why) == LK_OK && hit == 1);
        lk_vcache_free(again);
        unlink(path);
        rmdir(dir);
    }
    lk_vcache_clear(cache);
    lk_vcache_get_stats(cache, &st);
    CHECK(st.used == 0);

    /* a service account's token */
    CHECK(lk_jwt_peek_kid(sa_token, strlen(sa_token), kid, sizeof kid) == LK_OK);
    CHECK(strcmp(kid, "0123456789abcdef0123456789abcdef01234567") == 0);
    CHECK(lk_cred_parse(LK_CRED_RSA_PEM, sa_key_pem, strlen(sa_key_pem), 0, &sa_cred) == LK_OK);
    memset(&sp, 0, sizeof sp);
    sp.email = "api-caller@install-test.iam.latchkey";
    sp.now = 1700000100;
    sp.skew = LK_SA_SKEW;
    sp.max_lifetime = LK_SA_MAX_LIFETIME;
    sp.audiences = aud;
    sp.naudiences = 1;
    CHECK(lk_verify_sa_token(v, sa_token, strlen(sa_token), sa_cred, &sp, &info, why, sizeof why) == LK_OK);
    CHECK(info.alg == LK_ALG_RS256 && info.exp == 1700003600);
    sp.email = "someone-else@install-test.iam.latchkey";
    CHECK(lk_verify_sa_token(v, sa_token, strlen(sa_token), sa_cred, &sp, &info, why, sizeof why) ==
          LK_ERR_TOKEN_CLAIM);
    lk_cred_free(sa_cred);

    lk_vcache_free(cache);
    lk_verifier_free(v);
    lk_cred_free(cred);

    if (failures) {
        fprintf(stderr, "use_verify: %d checks failed\n", failures);
        return 1;
    }
    printf("use_verify: every function of liblatchkey-verify called\n");
    return 0;
}
