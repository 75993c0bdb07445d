/*
 * base64url without padding (RFC 4648 §5): see lk_b64url.h.
 *
 * The character mapping is computed with masks instead of a table or
 * branches so that time does not depend on the bytes: the software key
 * store encodes private keys with it.
 */
#include "latchkey/lk_b64url.h"
#include "latchkey/lk_util.h"
#include "ct.h"

/* All ones when x < y, else 0; valid for x, y < 2^31. */
static uint32_t mask_lt(uint32_t x, uint32_t y)
{
    return 0u - ((x - y) >> 31);
}

static uint32_t mask_eq(uint32_t x, uint32_t y)
{
    uint32_t d = x ^ y;
    return 0u - (((d - 1u) & ~d) >> 31);
}

static char enc_char(uint32_t v)
{
    uint32_t c;
    c = mask_lt(v, 26) & (v + 'A');
    c |= ~mask_lt(v, 26) & mask_lt(v, 52) & (v - 26u + 'a');
    c |= ~mask_lt(v, 52) & mask_lt(v, 62) & (v - 52u + '0');
    c |= mask_eq(v, 62) & (uint32_t)'-';
    c |= mask_eq(v, 63) & (uint32_t)'_';
    return (char)c;
}

/* The 6-bit value of c; *bad gets all ones ORed in when c is not in the
 * alphabet. */
static uint32_t dec_char(uint32_t c, uint32_t *bad)
{
    uint32_t up = ~mask_lt(c, 'A') & mask_lt(c, 'Z' + 1);
    uint32_t lo = ~mask_lt(c, 'a') & mask_lt(c, 'z' + 1);
    uint32_t di = ~mask_lt(c, '0') & mask_lt(c, '9' + 1);
    uint32_t mi = mask_eq(c, '-');
    uint32_t us = mask_eq(c, '_');
    uint32_t v = (up & (c - 'A')) | (lo & (c - 'a' + 26u)) |
                 (di & (c - '0' + 52u)) | (mi & 62u) | (us & 63u);
    *bad |= ~(up | lo | di | mi | us);
    return v;
}

lk_err lk_b64url_encode(const uint8_t *in, size_t in_len,
                        char *out, size_t out_size, size_t *out_len)
{
    size_t need, i, o = 0;

    if (out_len != 0)
        *out_len = 0;
    if (out == 0 || out_len == 0 || (in == 0 && in_len != 0) ||
        in_len > ((size_t)-1 / 4u) - 4u) { /* ENCODED_LEN would overflow */
        if (out != 0 && out_size > 0)
            lk_wipe(out, out_size);
        return LK_ERR_ARG;
    }
    need = LK_B64URL_ENCODED_LEN(in_len) + 1u;
    if (out_size < need) {
        if (out_size > 0)
            lk_wipe(out, out_size);
        return LK_ERR_BUFFER;
    }
    for (i = 0; i + 3u <= in_len; i += 3u) {
        uint32_t w = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = enc_char(w >> 18);
        out[o++] = enc_char((w >> 12) & 63u);
        out[o++] = enc_char((w >> 6) & 63u);
        out[o++] = enc_char(w & 63u);
    }
    if (in_len - i == 1u) {
        uint32_t w = (uint32_t)in[i] << 16;
        out[o++] = enc_char(w >> 18);
        out[o++] = enc_char((w >> 12) & 63u);
    } else if (in_len - i == 2u) {
        uint32_t w = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        out[o++] = enc_char(w >> 18);
        out[o++] = enc_char((w >> 12) & 63u);
        out[o++] = enc_char((w >> 6) & 63u);
    }
    out[o] = '\0';
    *out_len = o;
    return LK_OK;
}

lk_err lk_b64url_decode(const char *in, size_t in_len,
                        uint8_t *out, size_t out_size, size_t *out_len,
                        unsigned flags)
{
    size_t n = in_len, rem, need, i, o = 0;
    uint32_t bad = 0, pad1 = 0, pad2 = 0;
    lk_err err = LK_ERR_ENCODING;

    if (out_len != 0)
        *out_len = 0;
    if (out_len == 0 || (in == 0 && in_len != 0) || (out == 0 && out_size != 0) ||
        (flags & ~LK_B64URL_ALLOW_PADDING) != 0u) {
        err = LK_ERR_ARG;
        goto fail;
    }

    /* Padding: only the '=' that completes the last quantum, when allowed.
     * Whether the text ends in '=' is public (the length of any valid text
     * tells it); it is found with masks, not by branching on characters. */
    if (n > 0) {
        pad1 = mask_eq((uint8_t)in[n - 1], '=');
        if (n > 1)
            pad2 = pad1 & mask_eq((uint8_t)in[n - 2], '=');
        LK_DECLASSIFY(&pad1, sizeof pad1);
        LK_DECLASSIFY(&pad2, sizeof pad2);
    }
    if (pad1 != 0u) {
        size_t pad = pad2 != 0u ? 2u : 1u;
        if ((flags & LK_B64URL_ALLOW_PADDING) == 0u || n % 4u != 0u)
            goto fail;
        n -= pad;
        if (n % 4u != 4u - pad)
            goto fail; /* "A===" or "AB=" style: not completing padding */
    }
    rem = n % 4u;
    if (rem == 1u)
        goto fail;
    need = (n / 4u) * 3u + (rem == 0u ? 0u : rem - 1u);
    if (need > out_size) {
        err = LK_ERR_BUFFER;
        goto fail;
    }
    for (i = 0; i + 4u <= n; i += 4u) {
        uint32_t w = (dec_char((uint8_t)in[i], &bad) << 18) |
                     (dec_char((uint8_t)in[i + 1], &bad) << 12) |
                     (dec_char((uint8_t)in[i + 2], &bad) << 6) |
                     dec_char((uint8_t)in[i + 3], &bad);
        out[o++] = (uint8_t)(w >> 16);
        out[o++] = (uint8_t)(w >> 8);
        out[o++] = (uint8_t)w;
    }
    if (rem == 2u) {
        uint32_t w = (dec_char((uint8_t)in[i], &bad) << 6) |
                     dec_char((uint8_t)in[i + 1], &bad);
        bad |= 0u - (uint32_t)((w & 0xFu) != 0u);   /* unused bits must be zero */
        out[o++] = (uint8_t)(w >> 4);
    } else if (rem == 3u) {
        uint32_t w = (dec_char((uint8_t)in[i], &bad) << 12) |
                     (dec_char((uint8_t)in[i + 1], &bad) << 6) |
                     dec_char((uint8_t)in[i + 2], &bad);
        bad |= 0u - (uint32_t)((w & 0x3u) != 0u);
        out[o++] = (uint8_t)(w >> 10);
        out[o++] = (uint8_t)(w >> 2);
    }
    /* valid or not is the result: public */
    LK_DECLASSIFY(&bad, sizeof bad);
    if (bad != 0u)
        goto fail;
    *out_len = o;
    return LK_OK;

fail:
    if (out != 0 && out_size > 0)
        lk_wipe(out, out_size);
    return err;
}
