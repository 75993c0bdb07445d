/*
 * test_b64url.c — the base64url codec against its contract (lk_b64url.h):
 * RFC 4648 §10 vectors, round trips checked against an independent
 * (OpenSSL) encoder, the strict decoder's rejections, padding under
 * LK_B64URL_ALLOW_PADDING, buffer sizes and wiping on failure.
 */
#include "lk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_b64url.h"

#define FILL 0xA5u   /* pre-fill of output buffers; not a base64url char */
#define CANARY 16u   /* guard bytes after each output buffer */

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(int c)
{
    const char *p = (c != 0) ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* Encode with lk and check against the reference; returns the lk output. */
static void check_encode(const uint8_t *in, size_t len, const char *expected)
{
    size_t need = LK_B64URL_ENCODED_LEN(len) + 1;
    char *out = malloc(need + CANARY);
    assert_non_null(out);
    memset(out, FILL, need + CANARY);
    size_t out_len = 12345;
    assert_int_equal(lk_b64url_encode(in, len, out, need, &out_len), LK_OK);
    assert_int_equal(out_len, strlen(expected));
    assert_int_equal(out_len, LK_B64URL_ENCODED_LEN(len));
    assert_memory_equal(out, expected, out_len + 1); /* with the NUL */
    assert_true(lk_test_all_bytes(out + need, CANARY, FILL));
    free(out);
}

/* Decode with lk (strict unless flags) and expect exactly `expected`. */
static void check_decode(const char *in, size_t in_len, unsigned flags,
                         const uint8_t *expected, size_t expected_len)
{
    size_t cap = LK_B64URL_DECODED_MAX(in_len);
    uint8_t *out = malloc(cap + CANARY);
    assert_non_null(out);
    memset(out, FILL, cap + CANARY);
    size_t out_len = 12345;
    lk_err err = lk_b64url_decode(in, in_len, out, cap, &out_len, flags);
    if (err != LK_OK)
        fail_msg("decode(\"%.*s\", flags %u) = %d, expected LK_OK",
                 (int)in_len, in, flags, err);
    assert_int_equal(out_len, expected_len);
    assert_true(expected_len <= cap);
    assert_memory_equal(out, expected, expected_len);
    assert_true(lk_test_all_bytes(out + cap, CANARY, FILL));
    free(out);
}

/* Expect err, *out_len == 0 and the output buffer wiped. */
static void check_decode_fails(const char *in, size_t in_len, unsigned flags,
                               lk_err expected)
{
    size_t cap = LK_B64URL_DECODED_MAX(in_len) + 8;
    uint8_t *out = malloc(cap + CANARY);
    assert_non_null(out);
    memset(out, FILL, cap + CANARY);
    size_t out_len = 12345;
    lk_err err = lk_b64url_decode(in, in_len, out, cap, &out_len, flags);
    if (err != expected) {
        char shown[128] = "";
        size_t o = 0;
        for (size_t i = 0; i < in_len && o + 5 < sizeof shown; i++) {
            unsigned char c = (unsigned char)in[i];
            o += (size_t)snprintf(shown + o, sizeof shown - o,
                                  (c >= 0x21 && c < 0x7f) ? "%c" : "\\x%02x", c);
        }
        fail_msg("decode(\"%s\" len %zu, flags %u) = %d, expected %d",
                 shown, in_len, flags, err, expected);
    }
    assert_int_equal(out_len, 0);
    if (!lk_test_all_bytes(out, cap, 0))
        fail_msg("decode(len %zu) failed but did not wipe its output", in_len);
    assert_true(lk_test_all_bytes(out + cap, CANARY, FILL));
    free(out);
}

/* ---- known answers ----------------------------------------------------- */

static void test_rfc4648_vectors(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } v[] = {
        { "", "" },
        { "f", "Zg" },
        { "fo", "Zm8" },
        { "foo", "Zm9v" },
        { "foob", "Zm9vYg" },
        { "fooba", "Zm9vYmE" },
        { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in);
        check_encode((const uint8_t *)v[i].in, n, v[i].out);
        check_decode(v[i].out, strlen(v[i].out), 0, (const uint8_t *)v[i].in, n);
        check_decode(v[i].out, strlen(v[i].out), LK_B64URL_ALLOW_PADDING,
                     (const uint8_t *)v[i].in, n);
    }
}

/* The two characters that differ from standard base64. */
static void test_url_alphabet(void **state)
{
    (void)state;
    static const uint8_t minus[] = { 0xfb, 0xef, 0xbe };  /* "++++" in base64 */
    static const uint8_t under[] = { 0xff, 0xff, 0xff };  /* "////" */
    static const uint8_t mixed[] = { 0xfb, 0xff };        /* "+/8=" */
    static const uint8_t jwt_hdr[] = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";
    check_encode(minus, 3, "----");
    check_encode(under, 3, "____");
    check_encode(mixed, 2, "-_8");
    check_encode(jwt_hdr, sizeof jwt_hdr - 1, "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9");
    check_decode("----", 4, 0, minus, 3);
    check_decode("____", 4, 0, under, 3);
    check_decode("-_8", 3, 0, mixed, 2);
}

static void test_every_byte_value(void **state)
{
    (void)state;
    uint8_t all[256];
    for (int b = 0; b < 256; b++) {
        uint8_t in[3] = { (uint8_t)b, (uint8_t)(255 - b), (uint8_t)(b * 7) };
        all[b] = (uint8_t)b;
        for (size_t n = 1; n <= 3; n++) {
            char *ref = lk_test_b64url_ref_encode(in, n);
            check_encode(in, n, ref);
            check_decode(ref, strlen(ref), 0, in, n);
            free(ref);
        }
    }
    char *ref = lk_test_b64url_ref_encode(all, sizeof all);
    check_encode(all, sizeof all, ref);
    check_decode(ref, strlen(ref), 0, all, sizeof all);
    free(ref);
}

static void test_random_round_trips(void **state)
{
    (void)state;
    uint64_t seed = 0x6c6b6236342d7574ULL;
    uint8_t in[300];
    for (int round = 0; round < 4; round++) {
        for (size_t n = 0; n <= 300; n++) {
            lk_test_rand_bytes(&seed, in, n);
            char *ref = lk_test_b64url_ref_encode(in, n);
            assert_non_null(ref);
            check_encode(in, n, ref);
            check_decode(ref, strlen(ref), 0, in, n);
            check_decode(ref, strlen(ref), LK_B64URL_ALLOW_PADDING, in, n);
            free(ref);
        }
    }
}

static void test_size_macros(void **state)
{
    (void)state;
    for (size_t n = 0; n <= 1000; n++) {
        size_t enc = (4 * n + 2) / 3; /* ceil(8n / 6) */
        assert_int_equal(LK_B64URL_ENCODED_LEN(n), enc);
        /* every valid encoding of n bytes decodes into DECODED_MAX of it */
        assert_true(LK_B64URL_DECODED_MAX(enc) >= n);
        /* and DECODED_MAX is a bound for any length, not just canonical ones */
        assert_true(LK_B64URL_DECODED_MAX(n) >= n * 3 / 4);
        /* with padding: the padded length decodes to no more than the max */
        size_t padded = (n + 2) / 3 * 4;
        assert_true(LK_B64URL_DECODED_MAX(padded) >= n);
    }
    assert_int_equal(LK_B64URL_ENCODED_LEN(64), 86);
    assert_int_equal(LK_B64URL_ENCODED_LEN(256), 342);
    assert_int_equal(LK_B64URL_ENCODED_LEN(512), 683);
    /* the macro takes any integer type */
    int three = 3;
    assert_int_equal(LK_B64URL_ENCODED_LEN(three), 4);
}

/* ---- strict decoder ---------------------------------------------------- */

static void test_reject_bad_characters(void **state)
{
    (void)state;
    /* "QUJD" "QUI" "QQ" decode fine; put each non-alphabet byte at each
     * position of a 4-, 3- and 2-character quantum and of a longer string. */
    static const char *bases[] = { "QUJD", "QUI", "QQ", "QUJDRUZH" };
    for (int c = 0; c < 256; c++) {
        if (b64_value(c) >= 0)
            continue;
        for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
            size_t n = strlen(bases[b]);
            for (size_t pos = 0; pos < n; pos++) {
                char in[16];
                memcpy(in, bases[b], n);
                in[pos] = (char)c;
                check_decode_fails(in, n, 0, LK_ERR_ENCODING);
                if (c != '=')
                    check_decode_fails(in, n, LK_B64URL_ALLOW_PADDING, LK_ERR_ENCODING);
            }
        }
    }
    /* named cases, for the record */
    check_decode_fails("QU+D", 4, 0, LK_ERR_ENCODING);
    check_decode_fails("QU/D", 4, 0, LK_ERR_ENCODING);
    check_decode_fails("QU D", 4, 0, LK_ERR_ENCODING);
    check_decode_fails("QUJD\n", 5, 0, LK_ERR_ENCODING);
    check_decode_fails("QUJD\nQUJD", 9, 0, LK_ERR_ENCODING);
    check_decode_fails(" QUJD", 5, 0, LK_ERR_ENCODING);
    check_decode_fails("QUJD\r\n", 6, 0, LK_ERR_ENCODING);
    check_decode_fails("QU\0D", 4, 0, LK_ERR_ENCODING);
    check_decode_fails("QUJD\0\0\0\0", 8, 0, LK_ERR_ENCODING); /* NUL is data, not an end */
    check_decode_fails("QU\xc3\x89", 4, 0, LK_ERR_ENCODING);
    check_decode_fails("\x80QUJ", 4, 0, LK_ERR_ENCODING);
    check_decode_fails("QUJ\xff", 4, 0, LK_ERR_ENCODING);
}

static void test_reject_length_1_mod_4(void **state)
{
    (void)state;
    static const char s[] = "QUJDRUZHSElKS0xNTk9QUVJTVFVWV1hZWg"; /* long valid */
    for (size_t n = 1; n < sizeof s - 1; n += 4)
        check_decode_fails(s, n, 0, LK_ERR_ENCODING);
    for (size_t n = 1; n < sizeof s - 1; n += 4)
        check_decode_fails(s, n, LK_B64URL_ALLOW_PADDING, LK_ERR_ENCODING);
    check_decode_fails("A", 1, 0, LK_ERR_ENCODING);
    check_decode_fails("Q", 1, 0, LK_ERR_ENCODING);
    check_decode_fails("AAAAA", 5, 0, LK_ERR_ENCODING);
    /* and the lengths 0, 2, 3 mod 4 are fine */
    check_decode("", 0, 0, (const uint8_t *)"", 0);
    check_decode("AA", 2, 0, (const uint8_t *)"\0", 1);
    check_decode("AAA", 3, 0, (const uint8_t *)"\0\0", 2);
    check_decode("AAAA", 4, 0, (const uint8_t *)"\0\0\0", 3);
}

/* Every final character whose unused bits are not zero is rejected; every
 * one whose unused bits are zero is accepted (so each byte string has
 * exactly one encoding). */
static void test_reject_nonzero_trailing_bits(void **state)
{
    (void)state;
    static const char *prefixes[] = { "", "QUJD", "QUJDRUZH" };
    int accepted2 = 0, accepted3 = 0;
    for (size_t p = 0; p < 3; p++) {
        size_t pl = strlen(prefixes[p]);
        for (int v = 0; v < 64; v++) {
            char in[16];
            memcpy(in, prefixes[p], pl);
            /* 2-char final quantum: 12 bits, 8 used, low 4 of the 2nd unused */
            in[pl] = 'Q';
            in[pl + 1] = alphabet[v];
            if (v & 0x0f) {
                check_decode_fails(in, pl + 2, 0, LK_ERR_ENCODING);
                check_decode_fails(in, pl + 2, LK_B64URL_ALLOW_PADDING, LK_ERR_ENCODING);
                in[pl + 2] = '=';
                in[pl + 3] = '=';
                check_decode_fails(in, pl + 4, LK_B64URL_ALLOW_PADDING, LK_ERR_ENCODING);
            } else {
                uint8_t want[8];
                size_t wl = 0;
                uint8_t *ref = lk_test_b64url_ref_decode(in, pl + 2, &wl);
                assert_non_null(ref);
                memcpy(want, ref, wl);
                free(ref);
                check_decode(in, pl + 2, 0, want, wl);
                in[pl + 2] = '=';
                in[pl + 3] = '=';
                check_decode(in, pl + 4, LK_B64URL_ALLOW_PADDING, want, wl);
                accepted2++;
            }
            /* 3-char final quantum: 18 bits, 16 used, low 2 of the 3rd unused */
            in[pl] = 'Q';
            in[pl + 1] = 'U';
            in[pl + 2] = alphabet[v];
            if (v & 0x03) {
                check_decode_fails(in, pl + 3, 0, LK_ERR_ENCODING);
                check_decode_fails(in, pl + 3, LK_B64URL_ALLOW_PADDING, LK_ERR_ENCODING);
                in[pl + 3] = '=';
                check_decode_fails(in, pl + 4, LK_B64URL_ALLOW_PADDING, LK_ERR_ENCODING);
            } else {
                uint8_t want[8];
                size_t wl = 0;
                uint8_t *ref = lk_test_b64url_ref_decode(in, pl + 3, &wl);
                assert_non_null(ref);
                memcpy(want, ref, wl);
                free(ref);
                check_decode(in, pl + 3, 0, want, wl);
                in[pl + 3] = '=';
                check_decode(in, pl + 4, LK_B64URL_ALLOW_PADDING, want, wl);
                accepted3++;
            }
        }
    }
    assert_int_equal(accepted2, 3 * 4);
    assert_int_equal(accepted3, 3 * 16);
    /* the well-known tampering example: "QQ" vs "QR" for "A" */
    check_decode("QQ", 2, 0, (const uint8_t *)"A", 1);
    check_decode_fails("QR", 2, 0, LK_ERR_ENCODING);
    check_decode_fails("QUJ", 3, 0, LK_ERR_ENCODING);
    check_decode("QUI", 3, 0, (const uint8_t *)"AB", 2);
}

static void test_padding_rejected_by_default(void **state)
{
    (void)state;
    static const char *padded[] = { "QQ==", "QUI=", "QQ=", "QUJD====", "====",
                                    "=", "==", "Zm9vYg==", "Zm9vYmE=" };
    for (size_t i = 0; i < sizeof padded / sizeof padded[0]; i++)
        check_decode_fails(padded[i], strlen(padded[i]), 0, LK_ERR_ENCODING);
}

static void test_padding_allowed_when_asked(void **state)
{
    (void)state;
    const unsigned P = LK_B64URL_ALLOW_PADDING;
    check_decode("QQ==", 4, P, (const uint8_t *)"A", 1);
    check_decode("QUI=", 4, P, (const uint8_t *)"AB", 2);
    check_decode("Zm9vYg==", 8, P, (const uint8_t *)"foob", 4);
    check_decode("Zm9vYmE=", 8, P, (const uint8_t *)"fooba", 5);
    /* padding is admitted, not required */
    check_decode("QQ", 2, P, (const uint8_t *)"A", 1);
    check_decode("QUI", 3, P, (const uint8_t *)"AB", 2);
    check_decode("QUJD", 4, P, (const uint8_t *)"ABC", 3);

    static const char *bad[] = {
        /* too little padding */
        "QQ=", "Zm9vYg=",
        /* too much */
        "QQ===", "QUI==", "QQ====", "QUI===", "Zm9vYg===",
        /* padding where the length is already a multiple of 4 */
        "QUJD=", "QUJD==", "QUJD===", "QUJD====", "=", "==", "===", "====",
        "========",
        /* interior '=' */
        "Q=Q=", "Q==Q", "=QQ=", "=QUI", "QU=I", "Q=UI", "QUJ=QUJD", "QU==QUJD",
        "Zm9v=YmE", "QUJD=QQ==",
        /* '=' followed by data */
        "QQ==QUJD", "QUI=QUJD", "QQ==QQ==", "QUI=QUI=", "QQ=A", "QQ==A",
        "QUI=A", "QQ==\n",
        /* a padded 1-mod-4 length */
        "Q===", "QUJDR===",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_decode_fails(bad[i], strlen(bad[i]), P, LK_ERR_ENCODING);
}

/* ---- buffers and arguments -------------------------------------------- */

static void test_encode_buffer_sizes(void **state)
{
    (void)state;
    uint64_t seed = 42;
    uint8_t in[100];
    lk_test_rand_bytes(&seed, in, sizeof in);
    static const size_t lens[] = { 0, 1, 2, 3, 4, 5, 6, 31, 32, 33, 64, 65, 100 };
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        size_t need = LK_B64URL_ENCODED_LEN(n) + 1;
        char *out = malloc(need + CANARY);
        assert_non_null(out);
        for (size_t size = 0; size < need; size++) {
            memset(out, FILL, need + CANARY);
            size_t out_len = 12345;
            lk_err err = lk_b64url_encode(in, n, out, size, &out_len);
            if (err != LK_ERR_BUFFER && !(size == 0 && err == LK_ERR_ARG))
                fail_msg("encode(len %zu) into %zu bytes = %d, expected LK_ERR_BUFFER",
                         n, size, err);
            assert_int_equal(out_len, 0);
            /* the header promises an empty string; the whole buffer is
             * wiped (the encoder also handles private keys) */
            for (size_t i = 0; i < size; i++)
                if (out[i] != '\0')
                    fail_msg("encode(len %zu, size %zu) failed but left "
                             "output byte %zu = 0x%02x", n, size, i,
                             (unsigned char)out[i]);
            assert_true(lk_test_all_bytes(out + size, need + CANARY - size, FILL));
        }
        /* exactly the needed size works, and writes nothing past it */
        memset(out, FILL, need + CANARY);
        size_t out_len = 0;
        assert_int_equal(lk_b64url_encode(in, n, out, need, &out_len), LK_OK);
        assert_int_equal(out_len, need - 1);
        assert_int_equal(out[need - 1], '\0');
        assert_true(lk_test_all_bytes(out + need, CANARY, FILL));
        free(out);
    }
}

static void test_decode_buffer_sizes(void **state)
{
    (void)state;
    uint64_t seed = 7;
    uint8_t in[100];
    lk_test_rand_bytes(&seed, in, sizeof in);
    static const size_t lens[] = { 1, 2, 3, 4, 5, 6, 31, 32, 33, 64, 65, 100 };
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        char *enc = lk_test_b64url_ref_encode(in, n);
        size_t enc_len = strlen(enc);
        uint8_t *out = malloc(n + CANARY);
        assert_non_null(out);
        for (size_t size = 0; size < n; size++) {
            memset(out, FILL, n + CANARY);
            size_t out_len = 12345;
            lk_err err = lk_b64url_decode(enc, enc_len, out, size, &out_len, 0);
            if (err != LK_ERR_BUFFER && !(size == 0 && err == LK_ERR_ARG))
                fail_msg("decode(%zu bytes) into %zu = %d, expected LK_ERR_BUFFER",
                         n, size, err);
            assert_int_equal(out_len, 0);
            if (!lk_test_all_bytes(out, size, 0))
                fail_msg("decode(%zu bytes) into %zu failed without wiping", n, size);
            assert_true(lk_test_all_bytes(out + size, n + CANARY - size, FILL));
            /* the same with padding admitted */
            if (n % 3 != 0) {
                char padded[200];
                memcpy(padded, enc, enc_len);
                size_t pl = enc_len;
                while (pl % 4)
                    padded[pl++] = '=';
                memset(out, FILL, n + CANARY);
                out_len = 12345;
                err = lk_b64url_decode(padded, pl, out, size, &out_len,
                                       LK_B64URL_ALLOW_PADDING);
                assert_true(err == LK_ERR_BUFFER || (size == 0 && err == LK_ERR_ARG));
                assert_int_equal(out_len, 0);
                assert_true(lk_test_all_bytes(out, size, 0));
                assert_true(lk_test_all_bytes(out + size, n + CANARY - size, FILL));
            }
        }
        /* the exact decoded size is enough (no DECODED_MAX slack needed) */
        memset(out, FILL, n + CANARY);
        size_t out_len = 0;
        assert_int_equal(lk_b64url_decode(enc, enc_len, out, n, &out_len, 0), LK_OK);
        assert_int_equal(out_len, n);
        assert_memory_equal(out, in, n);
        assert_true(lk_test_all_bytes(out + n, CANARY, FILL));
        free(out);
        free(enc);
    }
    /* empty input into a 1-byte buffer */
    uint8_t one = FILL;
    size_t out_len = 12345;
    assert_int_equal(lk_b64url_decode("", 0, &one, 1, &out_len, 0), LK_OK);
    assert_int_equal(out_len, 0);
}

/* Contract: on failure *out_len is 0 and out (if out_size > 0) holds an
 * empty string — whichever argument was wrong. */
static void test_encode_null_arguments(void **state)
{
    (void)state;
    char out[16];
    size_t out_len;

    memset(out, FILL, sizeof out);
    out_len = 12345;
    assert_int_equal(lk_b64url_encode(NULL, 3, out, sizeof out, &out_len), LK_ERR_ARG);
    assert_int_equal(out_len, 0);
    out_len = 12345;
    assert_int_equal(lk_b64url_encode((const uint8_t *)"abc", 3, NULL, 16, &out_len),
                     LK_ERR_ARG);
    assert_int_equal(out_len, 0);
    /* the empty-string guarantee (here: wiped), for both failures where
     * out is valid */
    memset(out, FILL, sizeof out);
    assert_int_equal(lk_b64url_encode((const uint8_t *)"abc", 3, out, sizeof out, NULL),
                     LK_ERR_ARG);
    if (!lk_test_all_bytes(out, sizeof out, 0))
        fail_msg("encode(out_len NULL) failed without wiping out");
    memset(out, FILL, sizeof out);
    assert_int_equal(lk_b64url_encode(NULL, 3, out, sizeof out, &out_len), LK_ERR_ARG);
    if (!lk_test_all_bytes(out, sizeof out, 0))
        fail_msg("encode(in NULL) failed without wiping out");
}

/* Contract: on failure *out_len is 0 and out[0..out_size) is wiped. */
static void test_decode_null_arguments(void **state)
{
    (void)state;
    uint8_t bin[16];
    size_t out_len;

    out_len = 12345;
    assert_int_equal(lk_b64url_decode("QUJD", 4, NULL, 16, &out_len, 0), LK_ERR_ARG);
    assert_int_equal(out_len, 0);
    memset(bin, FILL, sizeof bin);
    out_len = 12345;
    assert_int_equal(lk_b64url_decode(NULL, 4, bin, sizeof bin, &out_len, 0), LK_ERR_ARG);
    assert_int_equal(out_len, 0);
    if (!lk_test_all_bytes(bin, sizeof bin, 0))
        fail_msg("decode(in NULL) failed without wiping out");
    memset(bin, FILL, sizeof bin);
    assert_int_equal(lk_b64url_decode("QUJD", 4, bin, sizeof bin, NULL, 0), LK_ERR_ARG);
    if (!lk_test_all_bytes(bin, sizeof bin, 0))
        fail_msg("decode(out_len NULL) failed without wiping out");
}

/* flags is 0 or LK_B64URL_ALLOW_PADDING: anything else fails (and wipes). */
static void test_decode_unknown_flags(void **state)
{
    (void)state;
    uint8_t bin[16];
    size_t out_len = 12345;
    memset(bin, FILL, sizeof bin);
    lk_err err = lk_b64url_decode("QUJD", 4, bin, sizeof bin, &out_len, 0x80u);
    assert_int_not_equal(err, LK_OK);
    assert_int_equal(out_len, 0);
    if (!lk_test_all_bytes(bin, sizeof bin, 0))
        fail_msg("decode(unknown flags) failed without wiping out");
}

/* The decoder reads exactly in_len bytes: the character after the input
 * (here a non-alphabet byte, then a valid one) does not matter. */
static void test_decode_honours_length(void **state)
{
    (void)state;
    check_decode("QUJD!!!!", 4, 0, (const uint8_t *)"ABC", 3);
    check_decode("QUJDQUJD", 4, 0, (const uint8_t *)"ABC", 3);
    check_decode("QQ==", 2, 0, (const uint8_t *)"A", 1);
    uint8_t out[4];
    size_t out_len;
    /* in_len 2 of "QR..." still checks the trailing bits of the 2nd char */
    assert_int_equal(lk_b64url_decode("QRQQ", 2, out, sizeof out, &out_len, 0),
                     LK_ERR_ENCODING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_url_alphabet),
        cmocka_unit_test(test_every_byte_value),
        cmocka_unit_test(test_random_round_trips),
        cmocka_unit_test(test_size_macros),
        cmocka_unit_test(test_reject_bad_characters),
        cmocka_unit_test(test_reject_length_1_mod_4),
        cmocka_unit_test(test_reject_nonzero_trailing_bits),
        cmocka_unit_test(test_padding_rejected_by_default),
        cmocka_unit_test(test_padding_allowed_when_asked),
        cmocka_unit_test(test_encode_buffer_sizes),
        cmocka_unit_test(test_decode_buffer_sizes),
        cmocka_unit_test(test_encode_null_arguments),
        cmocka_unit_test(test_decode_null_arguments),
        cmocka_unit_test(test_decode_unknown_flags),
        cmocka_unit_test(test_decode_honours_length),
    };
    return cmocka_run_group_tests_name("b64url", tests, NULL, NULL);
}
