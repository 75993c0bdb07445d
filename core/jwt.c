/*
 * Token builder: see lk_jwt.h.
 *
 * The claims JSON is never held in clear: each byte goes through a
 * streaming base64url encoder straight into the caller's buffer, so the
 * builder needs no scratch space. The signature is signed into the free tail
 * of the buffer, moved to its very end and encoded forward into place; the
 * encoder's write position never overtakes its read position because the
 * final token is required to fit (see finalize).
 */
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_util.h"

enum { ST_CLAIMS = 0x5a, ST_DONE = 0xa5 };

static const char hdr_es256[] = LK_JWT_HEADER_ES256;
static const char hdr_rs256[] = LK_JWT_HEADER_RS256;
#define HDR_LEN LK_JWT_HEADER_LEN

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The n (1..3) bytes in the top of w as n + 1 base64url characters (no
 * padding); returns how many it wrote. The token is public data, so a table
 * lookup is fine here. */
static size_t quantum(char *out, uint32_t w, size_t n)
{
    out[0] = b64_alphabet[w >> 18];
    out[1] = b64_alphabet[(w >> 12) & 63u];
    if (n > 1u)
        out[2] = b64_alphabet[(w >> 6) & 63u];
    if (n > 2u)
        out[3] = b64_alphabet[w & 63u];
    return n + 1u;
}

static void latch(lk_jwt *jwt, lk_err err)
{
    if (jwt->err == LK_OK)
        jwt->err = err;
}

/* Feed raw JSON bytes to the streaming encoder. */
static void put(lk_jwt *jwt, const uint8_t *p, size_t n)
{
    size_t i;
    if (jwt->err != LK_OK)
        return;
    for (i = 0; i < n; i++) {
        if (jwt->ncarry < 2) {
            jwt->carry[jwt->ncarry++] = p[i];
            continue;
        }
        if (jwt->size - jwt->len < 4u) {
            latch(jwt, LK_ERR_BUFFER);
            return;
        }
        jwt->len += quantum(jwt->buf + jwt->len,
                            ((uint32_t)jwt->carry[0] << 16) |
                                ((uint32_t)jwt->carry[1] << 8) | p[i],
                            3u);
        jwt->ncarry = 0;
    }
}

static void put_str(lk_jwt *jwt, const char *s)
{
    put(jwt, (const uint8_t *)s, lk_strnlen(s, 64));
}

static void put_byte(lk_jwt *jwt, uint8_t c)
{
    put(jwt, &c, 1);
}

/* Emit the last partial quantum (no padding). */
static void flush(lk_jwt *jwt)
{
    uint32_t w;
    size_t need = jwt->ncarry == 0 ? 0u : (size_t)jwt->ncarry + 1u;
    if (jwt->err != LK_OK || need == 0)
        return;
    if (jwt->size - jwt->len < need) {
        latch(jwt, LK_ERR_BUFFER);
        return;
    }
    w = (uint32_t)jwt->carry[0] << 16;
    if (jwt->ncarry == 2)
        w |= (uint32_t)jwt->carry[1] << 8;
    jwt->len += quantum(jwt->buf + jwt->len, w, jwt->ncarry);
    jwt->ncarry = 0;
}

static int name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

/* Validate name, refuse duplicates, remember it, and write `,"name":`. */
static void begin_claim(lk_jwt *jwt, const char *name)
{
    size_t n, i, at;

    if (jwt->err != LK_OK)
        return;
    if (jwt->state != ST_CLAIMS) {
        latch(jwt, LK_ERR_STATE);
        return;
    }
    if (name == 0) {
        latch(jwt, LK_ERR_ARG);
        return;
    }
    n = lk_strnlen(name, LK_JWT_CLAIM_NAME_MAX + 1u);
    if (n == 0 || n > LK_JWT_CLAIM_NAME_MAX) {
        latch(jwt, LK_ERR_CLAIM_NAME);
        return;
    }
    for (i = 0; i < n; i++) {
        if (!name_char_ok(name[i])) {
            latch(jwt, LK_ERR_CLAIM_NAME);
            return;
        }
    }
    for (at = 0; at < jwt->names_len;) {
        size_t m = lk_strnlen(jwt->names + at, jwt->names_len - at);
        if (m == n) {
            int same = 1;
            for (i = 0; i < n; i++)
                same &= jwt->names[at + i] == name[i];
            if (same) {
                latch(jwt, LK_ERR_CLAIM_DUP);
                return;
            }
        }
        at += m + 1u;
    }
    if (jwt->nclaims >= LK_JWT_MAX_CLAIMS) {
        latch(jwt, LK_ERR_TOO_MANY);
        return;
    }
    for (i = 0; i < n; i++)
        jwt->names[jwt->names_len + i] = name[i];
    jwt->names[jwt->names_len + n] = '\0';
    jwt->names_len = (uint16_t)(jwt->names_len + n + 1u);

    put_byte(jwt, jwt->nclaims == 0 ? '{' : ',');
    jwt->nclaims++;
    put_byte(jwt, '"');
    put(jwt, (const uint8_t *)name, n);
    put_str(jwt, "\":");
}

/* Reset the context; 0 when the arguments allow a header to be written. */
static int start(lk_jwt *jwt, lk_alg alg, char *buf, size_t size)
{
    jwt->buf = buf;
    jwt->size = buf == 0 ? 0 : size;
    jwt->len = 0;
    jwt->err = LK_OK;
    jwt->alg = alg;
    jwt->state = ST_CLAIMS;
    jwt->nclaims = 0;
    jwt->ncarry = 0;
    jwt->carry[0] = jwt->carry[1] = 0;
    jwt->names_len = 0;
    lk_wipe(jwt->names, sizeof jwt->names);
    if (buf == 0 || size == 0) {
        latch(jwt, LK_ERR_ARG);
        return -1;
    }
    if (alg != LK_ALG_ES256 && alg != LK_ALG_RS256) {
        latch(jwt, LK_ERR_UNSUPPORTED);
        return -1;
    }
    return 0;
}

void lk_jwt_init(lk_jwt *jwt, lk_alg alg, char *buf, size_t size)
{
    size_t i;
    if (jwt == 0 || start(jwt, alg, buf, size) != 0)
        return;
    /* Header and the '.' that follows it. */
    if (size < HDR_LEN + 1u) {
        latch(jwt, LK_ERR_BUFFER);
        return;
    }
    for (i = 0; i < HDR_LEN; i++)
        buf[i] = alg == LK_ALG_ES256 ? hdr_es256[i] : hdr_rs256[i];
    buf[HDR_LEN] = '.';
    jwt->len = HDR_LEN + 1u;
}

/* Padded standard base64 (RFC 4648 §4): what x5c holds. Only these
 * characters, so the header needs no JSON escaping. */
static int b64std_ok(const char *s, size_t n)
{
    size_t i, pad = 0;
    if (n == 0 || n % 4u != 0)
        return 0;
    if (s[n - 1] == '=')
        pad = s[n - 2] == '=' ? 2u : 1u;
    for (i = 0; i < n - pad; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

void lk_jwt_init_x5c(lk_jwt *jwt, lk_alg alg, const char *const *x5c, const size_t *x5c_len,
                     size_t n, char *buf, size_t size)
{
    size_t i;
    if (n == 0) {
        lk_jwt_init(jwt, alg, buf, size);
        return;
    }
    if (jwt == 0 || start(jwt, alg, buf, size) != 0)
        return;
    if (n > LK_JWT_X5C_MAX) {
        latch(jwt, LK_ERR_TOO_MANY);
        return;
    }
    if (x5c == 0 || x5c_len == 0) {
        latch(jwt, LK_ERR_ARG);
        return;
    }
    for (i = 0; i < n; i++) {
        if (x5c[i] == 0 || x5c_len[i] == 0) {
            latch(jwt, LK_ERR_ARG);
            return;
        }
        if (!b64std_ok(x5c[i], x5c_len[i])) {
            latch(jwt, LK_ERR_ENCODING);
            return;
        }
    }
    put_str(jwt, alg == LK_ALG_ES256 ? "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"x5c\":["
                                     : "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5c\":[");
    for (i = 0; i < n; i++) {
        put_byte(jwt, i == 0 ? '"' : ',');
        if (i != 0)
            put_byte(jwt, '"');
        put(jwt, (const uint8_t *)x5c[i], x5c_len[i]);
        put_byte(jwt, '"');
    }
    put_str(jwt, "]}");
    flush(jwt);
    if (jwt->err != LK_OK)
        return;
    if (jwt->size - jwt->len < 1u) {
        latch(jwt, LK_ERR_BUFFER);
        return;
    }
    jwt->buf[jwt->len++] = '.';
}

void lk_jwt_add_claim_string(lk_jwt *jwt, const char *name,
                             const char *value, size_t value_len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *v = (const uint8_t *)value;
    size_t i = 0;

    if (jwt == 0)
        return;
    if (value == 0 && value_len != 0) {
        latch(jwt, LK_ERR_ARG);
        return;
    }
    begin_claim(jwt, name);
    put_byte(jwt, '"');
    while (i < value_len && jwt->err == LK_OK) {
        uint8_t c = v[i];
        if (c == '"' || c == '\\') {
            uint8_t e[2];
            e[0] = '\\';
            e[1] = c;
            put(jwt, e, 2);
            i++;
        } else if (c < 0x20) {
            uint8_t e[6];
            e[0] = '\\'; e[1] = 'u'; e[2] = '0'; e[3] = '0';
            e[4] = (uint8_t)hex[c >> 4];
            e[5] = (uint8_t)hex[c & 15u];
            put(jwt, e, 6);
            i++;
        } else {
            size_t m = lk_utf8_seq(v + i, value_len - i);
            if (m == 0) {
                latch(jwt, LK_ERR_ENCODING);
                return;
            }
            put(jwt, v + i, m);
            i += m;
        }
    }
    put_byte(jwt, '"');
}

void lk_jwt_add_claim_int(lk_jwt *jwt, const char *name, int64_t value)
{
    uint8_t digits[20];
    uint64_t m;
    size_t n = 0;

    if (jwt == 0)
        return;
    begin_claim(jwt, name);
    if (value < 0) {
        put_byte(jwt, '-');
        m = (uint64_t)0 - (uint64_t)value; /* also right for INT64_MIN */
    } else
        m = (uint64_t)value;
    do {
        digits[n++] = (uint8_t)('0' + (uint8_t)(m % 10u));
        m /= 10u;
    } while (m != 0);
    while (n > 0)
        put_byte(jwt, digits[--n]);
}

lk_err lk_jwt_finalize(lk_jwt *jwt, const lk_se *se, const char *key,
                       size_t *token_len)
{
    uint8_t digest[LK_SHA256_BYTES];
    size_t body_len, p, n = 0, i, need_min;
    lk_err err;

    if (token_len != 0)
        *token_len = 0;
    if (jwt == 0)
        return LK_ERR_ARG;
    if (jwt->state != ST_CLAIMS) {
        latch(jwt, LK_ERR_STATE);
        return LK_ERR_STATE; /* a finalized buffer is not touched again */
    }
    if (token_len == 0)
        latch(jwt, LK_ERR_ARG);
    if (jwt->nclaims == 0)
        put_byte(jwt, '{');
    put_byte(jwt, '}');
    flush(jwt);
    if (jwt->err != LK_OK)
        goto fail;

    /* Room for '.', the smallest signature this algorithm can have, NUL. */
    body_len = jwt->len;
    need_min = jwt->alg == LK_ALG_ES256 ? LK_JWT_ES256_SIG_CHARS
                                        : LK_JWT_RS256_SIG_CHARS(LK_RSA_MIN_BITS);
    if (jwt->size - body_len < 1u + need_min + 1u) {
        latch(jwt, LK_ERR_BUFFER);
        goto fail;
    }

    err = lk_se_sha256(se, (const uint8_t *)jwt->buf, body_len, digest);
    if (err != LK_OK) {
        latch(jwt, err);
        goto fail;
    }
    jwt->buf[body_len] = '.';
    p = body_len + 1u;
    err = lk_se_sign_digest(se, key, jwt->alg, digest,
                            (uint8_t *)jwt->buf + p, jwt->size - p, &n);
    lk_wipe(digest, sizeof digest);
    if (err != LK_OK) {
        latch(jwt, err);
        goto fail;
    }
    if (jwt->size - p < LK_B64URL_ENCODED_LEN(n) + 1u) {
        latch(jwt, LK_ERR_BUFFER);
        goto fail;
    }
    {
        /* Move the raw signature to the end, then encode it forward. */
        uint8_t *b = (uint8_t *)jwt->buf;
        size_t src = jwt->size - n, o = p;
        for (i = n; i-- > 0;)
            b[src + i] = b[p + i];
        for (i = 0; i < n; i += 3u) {
            size_t k = n - i < 3u ? n - i : 3u;
            uint32_t w = (uint32_t)b[src + i] << 16;
            if (k > 1u)
                w |= (uint32_t)b[src + i + 1] << 8;
            if (k > 2u)
                w |= b[src + i + 2];
            o += quantum(jwt->buf + o, w, k);
        }
        /* Clear what is left of the staged signature past the token. */
        for (i = o > src ? o : src; i < jwt->size; i++)
            jwt->buf[i] = '\0';
        jwt->buf[o] = '\0';
        jwt->len = o;
    }
    jwt->state = ST_DONE;
    *token_len = jwt->len;
    return LK_OK;

fail:
    lk_wipe(digest, sizeof digest);
    if (jwt->buf != 0 && jwt->size > 0)
        lk_wipe(jwt->buf, jwt->size);
    jwt->len = 0;
    jwt->state = ST_DONE;
    return jwt->err;
}

lk_err lk_jwt_iotcore_x5c(const lk_se *se, const char *key, lk_alg alg,
                          const char *aud, size_t aud_len, int64_t iat, int64_t exp,
                          const char *const *x5c, const size_t *x5c_len, size_t n,
                          char *buf, size_t size, size_t *token_len)
{
    lk_jwt jwt;
    lk_err err;

    if (token_len != 0)
        *token_len = 0;
    if (iat < 0 || exp <= iat || exp - iat > LK_JWT_MAX_LIFETIME || aud == 0 ||
        aud_len == 0 || token_len == 0) {
        if (buf != 0 && size > 0)
            lk_wipe(buf, size);
        return LK_ERR_ARG;
    }
    lk_jwt_init_x5c(&jwt, alg, x5c, x5c_len, n, buf, size);
    lk_jwt_add_claim_int(&jwt, "iat", iat);
    lk_jwt_add_claim_int(&jwt, "exp", exp);
    lk_jwt_add_claim_string(&jwt, "aud", aud, aud_len);
    err = lk_jwt_finalize(&jwt, se, key, token_len);
    lk_wipe(&jwt, sizeof jwt);
    return err;
}

lk_err lk_jwt_iotcore(const lk_se *se, const char *key, lk_alg alg,
                      const char *aud, size_t aud_len,
                      int64_t iat, int64_t exp,
                      char *buf, size_t size, size_t *token_len)
{
    return lk_jwt_iotcore_x5c(se, key, alg, aud, aud_len, iat, exp, 0, 0, 0, buf, size,
                              token_len);
}
