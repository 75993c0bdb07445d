/*
 * ct_check.c — constant-time check of the secret comparisons and of the
 * base64url coding of secrets, in the way BoringSSL checks its own: run
 * under valgrind (memcheck) with the secret bytes marked undefined, so that
 * any branch or memory index that depends on them is reported ("Conditional
 * jump or move depends on uninitialised value(s)", "Use of uninitialised
 * value of size 8"). A result is marked defined before it is branched on:
 * that is the one place the secret's consequence may become public.
 *
 *   ct_check secrets   every checked function; valgrind must report nothing
 *   ct_check leak      the same with a plain memcmp, which returns at the
 *                      first difference: valgrind must report it (proves the
 *                      check can fail)
 *
 * The core's sources are compiled into this program with LK_CT_VALIDATE,
 * which turns the core's declassification points (core/ct.h) into
 * VALGRIND_MAKE_MEM_DEFINED; the product build compiles them to nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <valgrind/memcheck.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_util.h"

#define SECRET(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define PUBLIC(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))

static int failures;

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "ct_check: %s: wrong result\n", what);
        failures++;
    }
}

/* The backend secret as the broker checks it (service/plugin/auth.c,
 * auth__backend and auth__recheck_backend): lk_backend_secret_hash (the
 * core's SHA-256) of the password, then lk_ct_equal with the stored hash. Both the password and the stored hash
 * are secret. */
static void backend_secret(const char *password, const uint8_t stored[32], int want)
{
    char pw[64];
    uint8_t st[32], got[32];
    size_t n = strlen(password);
    int match;

    memcpy(pw, password, n);
    memcpy(st, stored, 32);
    SECRET(pw, n);
    SECRET(st, 32);
    lk_backend_secret_hash(pw, n, got);
    match = lk_ct_equal(got, st, sizeof got);
    PUBLIC(&match, sizeof match);
    expect(match == want, "backend secret (SHA-256, lk_ct_equal)");
    /* the re-check compares two stored hashes */
    match = lk_ct_equal(st, stored, 32);
    PUBLIC(&match, sizeof match);
    expect(match == 1, "backend hash re-check (lk_ct_equal)");
}

/* CRYPTO_memcmp: the verified-token cache's key (service/verify/cache.c)
 * and the software store's checksum (se/soft/softstore.c). */
static void openssl_memcmp(const uint8_t *a, const uint8_t *b, size_t n, int want_equal)
{
    uint8_t x[64], y[64];
    int r;

    memcpy(x, a, n);
    memcpy(y, b, n);
    SECRET(x, n);
    SECRET(y, n);
    r = CRYPTO_memcmp(x, y, n);
    PUBLIC(&r, sizeof r);
    expect((r == 0) == want_equal, "CRYPTO_memcmp");
}

/* base64url of secrets: `latchkey backends create` encodes the secret,
 * the software key store encodes and decodes private keys. */
static void b64url(const uint8_t *raw, size_t n)
{
    uint8_t in[64], out[64];
    char text[100];
    size_t tlen = 0, olen = 0;
    lk_err err;

    memcpy(in, raw, n);
    SECRET(in, n);
    err = lk_b64url_encode(in, n, text, sizeof text, &tlen);
    PUBLIC(&err, sizeof err);
    expect(err == LK_OK && tlen == LK_B64URL_ENCODED_LEN(n), "lk_b64url_encode");

    SECRET(text, tlen);
    err = lk_b64url_decode(text, tlen, out, sizeof out, &olen, 0);
    PUBLIC(&err, sizeof err);
    PUBLIC(&olen, sizeof olen);
    expect(err == LK_OK && olen == n, "lk_b64url_decode");
    /* padded, as a key store written by another tool may hold */
    if (tlen % 4) {
        size_t p = tlen;
        while (p % 4)
            text[p++] = '=';
        SECRET(text, p);
        err = lk_b64url_decode(text, p, out, sizeof out, &olen, LK_B64URL_ALLOW_PADDING);
        PUBLIC(&err, sizeof err);
        PUBLIC(&olen, sizeof olen);
        expect(err == LK_OK && olen == n, "lk_b64url_decode (padded)");
    }
    PUBLIC(out, sizeof out);
    PUBLIC(in, n);
    expect(memcmp(out, in, n) == 0, "base64url round trip");

    /* a secret with a character outside the alphabet: refused, and how far
     * in it is must not show */
    memcpy(text, "AAAAAAAAAAAAAAAAAAAA*AAAAAAAAAAAAAAAAAAAAAA", 43);
    SECRET(text, 43);
    err = lk_b64url_decode(text, 43, out, sizeof out, &olen, 0);
    PUBLIC(&err, sizeof err);
    expect(err == LK_ERR_ENCODING, "lk_b64url_decode (bad character)");
}

/* A variable-time comparison, as a mistake would write it: valgrind must
 * report the branch on the first differing byte. */
static int (*volatile plain_memcmp)(const void *, const void *, size_t) = memcmp;

static void leak(const uint8_t stored[32])
{
    uint8_t st[32], got[32];
    int r;

    memcpy(st, stored, 32);
    memcpy(got, stored, 32);
    got[31] ^= 1;
    SECRET(st, 32);
    r = plain_memcmp(got, st, 32);
    PUBLIC(&r, sizeof r);
    expect(r != 0, "memcmp");
}

int main(int argc, char **argv)
{
    static const char secret[] = "q3Xo-f9Y2cJ0mQ8k_Lr1zW4nB7vT6pA5hG0sE2dU1iK";
    uint8_t raw[32], stored[32], other[32];
    size_t i;

    if (argc != 2 || (strcmp(argv[1], "secrets") && strcmp(argv[1], "leak"))) {
        fprintf(stderr, "usage: ct_check secrets|leak (under valgrind)\n");
        return 2;
    }
    if (!RUNNING_ON_VALGRIND)
        fprintf(stderr, "ct_check: not under valgrind: the results are checked, the timing is not\n");
    for (i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)(i * 37u + 11u);
    lk_backend_secret_hash(secret, strlen(secret), stored);
    memcpy(other, stored, 32);
    other[0] ^= 0x80;

    if (!strcmp(argv[1], "leak")) {
        leak(stored);
        return failures ? 1 : 0;
    }
    backend_secret(secret, stored, 1);
    backend_secret("q3Xo-f9Y2cJ0mQ8k_Lr1zW4nB7vT6pA5hG0sE2dU1iL", stored, 0);
    openssl_memcmp(stored, stored, 32, 1);
    openssl_memcmp(stored, other, 32, 0);
    b64url(raw, 32);  /* a backend secret's 32 bytes: 43 characters */
    b64url(raw, 31);
    b64url(raw, 30);
    if (failures)
        return 1;
    printf("ct_check: secret comparisons and base64url coding checked\n");
    return 0;
}
