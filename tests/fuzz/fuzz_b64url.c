/*
 * fuzz_b64url — libFuzzer target for the strict base64url codec
 * (lk_b64url.h), checked against a plain reference decoder written here.
 *
 * Every input is used three ways:
 *   1. as text to decode, strictly and with LK_B64URL_ALLOW_PADDING, into an
 *      exact-size heap buffer (so ASan reports a single byte written past
 *      out_size), and into a buffer one to four bytes too small;
 *   2. the decoded bytes re-encoded: the round trip must give back the input
 *      exactly (strict) or the input without its '=' (padding mode): every
 *      byte string has one accepted encoding;
 *   3. as bytes to encode, into an exact-size and a too-small buffer, and
 *      back through the strict decoder.
 * On failure the decoder must leave *out_len 0 and out[0..out_size) zeroed;
 * the encoder *out_len 0 and an empty string. Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_b64url.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int ref_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/*
 * The reference: RFC 4648 §5 without padding, canonical only. With pad, '='
 * is accepted only as the one or two characters that make the length a
 * multiple of 4. Returns the decoded length (out must hold n bytes), or -1.
 */
static long ref_decode(const uint8_t *in, size_t n, int pad, uint8_t *out)
{
    size_t m = n, i, o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (pad && n > 0 && in[n - 1] == '=') {
        size_t p = (n >= 2 && in[n - 2] == '=') ? 2 : 1;
        if (n % 4 != 0)
            return -1;
        m = n - p;
        if (m % 4 != 4 - p)
            return -1;
    }
    if (m % 4 == 1)
        return -1;
    for (i = 0; i < m; i++) {
        int v = ref_val(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1u;
        }
    }
    if (acc != 0) /* unused bits of the last character must be zero */
        return -1;
    return (long)o;
}

static int all_zero(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* Decode in[0..n) with flags into a heap buffer of exactly out_size bytes
 * and check the result against the reference (ref_len < 0: invalid). */
static void check_decode(const char *in, size_t n, unsigned flags,
                         size_t out_size, long ref_len, const uint8_t *ref)
{
    uint8_t *out = malloc(out_size ? out_size : 1);
    size_t out_len = 12345, enc_len = 12345, i, stripped;
    char *enc;
    lk_err err;

    CHECK(out != NULL);
    memset(out, 0xA5, out_size);
    err = lk_b64url_decode(in, n, out, out_size, &out_len, flags);
    if (ref_len < 0) {
        CHECK(err == LK_ERR_ENCODING || err == LK_ERR_BUFFER);
    } else if ((size_t)ref_len > out_size) {
        CHECK(err == LK_ERR_BUFFER);
    } else {
        CHECK(err == LK_OK);
    }
    if (err != LK_OK) {
        CHECK(out_len == 0);
        CHECK(all_zero(out, out_size));
        free(out);
        return;
    }
    CHECK(out_len == (size_t)ref_len);
    CHECK(out_len <= LK_B64URL_DECODED_MAX(n));
    CHECK(memcmp(out, ref, out_len) == 0);

    /* Canonical round trip. */
    stripped = n;
    while (stripped > 0 && in[stripped - 1] == '=')
        stripped--;
    CHECK(flags != 0 || stripped == n);
    CHECK(LK_B64URL_ENCODED_LEN(out_len) == stripped);
    enc = malloc(stripped + 1);
    CHECK(enc != NULL);
    CHECK(lk_b64url_encode(out, out_len, enc, stripped + 1, &enc_len) == LK_OK);
    CHECK(enc_len == stripped);
    CHECK(enc[enc_len] == '\0');
    CHECK(memcmp(enc, in, stripped) == 0);
    for (i = stripped; i < n; i++)
        CHECK(in[i] == '=');
    free(enc);
    free(out);
}

static void check_encode(const uint8_t *in, size_t n)
{
    size_t need = LK_B64URL_ENCODED_LEN(n) + 1, out_len = 12345, back_len = 12345, small;
    char *out = malloc(need);
    uint8_t *back = malloc(n ? n : 1);
    lk_err err;

    CHECK(out != NULL && back != NULL);
    memset(out, 0xA5, need);
    CHECK(lk_b64url_encode(in, n, out, need, &out_len) == LK_OK);
    CHECK(out_len == need - 1);
    CHECK(out[out_len] == '\0');
    CHECK(lk_b64url_decode(out, out_len, back, n, &back_len, 0) == LK_OK);
    CHECK(back_len == n);
    CHECK(n == 0 || memcmp(back, in, n) == 0);
    free(out);

    /* One to eight characters short: LK_ERR_BUFFER and an empty string. */
    small = need - 1 >= n % 8 ? need - 1 - n % 8 : 0;
    out = malloc(small ? small : 1);
    CHECK(out != NULL);
    memset(out, 0xA5, small);
    out_len = 12345;
    err = lk_b64url_encode(in, n, out, small, &out_len);
    CHECK(err == LK_ERR_BUFFER);
    CHECK(out_len == 0);
    CHECK(small == 0 || out[0] == '\0');
    free(out);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size, non-terminated copy: reading in[size] is an ASan error. */
    char *in = malloc(size ? size : 1);
    uint8_t *ref = malloc(size ? size : 1);
    long strict_len, pad_len;
    size_t max = LK_B64URL_DECODED_MAX(size);

    if (in == NULL || ref == NULL)
        abort();
    if (size)
        memcpy(in, data, size);

    strict_len = ref_decode(data, size, 0, ref);
    check_decode(in, size, 0, max, strict_len, ref);
    if (strict_len >= 0) {
        size_t exact = (size_t)strict_len;
        check_decode(in, size, 0, exact, strict_len, ref);
        if (exact > 0)
            check_decode(in, size, 0, exact - 1 - (size % 4 < exact ? size % 4 : 0),
                         strict_len, ref);
    } else {
        check_decode(in, size, 0, size % 7, strict_len, ref);
    }

    pad_len = ref_decode(data, size, 1, ref);
    /* Padding mode accepts a superset, and the same bytes where both accept. */
    CHECK(strict_len < 0 || pad_len == strict_len);
    CHECK(memchr(data, '=', size) != NULL || pad_len == strict_len);
    check_decode(in, size, LK_B64URL_ALLOW_PADDING, max, pad_len, ref);
    if (pad_len > 0)
        check_decode(in, size, LK_B64URL_ALLOW_PADDING, (size_t)pad_len - 1,
                     pad_len, ref);

    /* Any other flag bit is a caller error. */
    {
        uint8_t out[4] = {1, 2, 3, 4};
        size_t out_len = 7;
        CHECK(lk_b64url_decode(in, size, out, sizeof out, &out_len, 2u) == LK_ERR_ARG);
        CHECK(out_len == 0 && all_zero(out, sizeof out));
    }

    check_encode(data, size);
    free(ref);
    free(in);
    return 0;
}
