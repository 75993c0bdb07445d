/*
 * fuzz_verify — libFuzzer target for lk_verify_token and
 * lk_verify_token_cached (lk_verify.h).
 *
 * Fixture, made once in LLVMFuzzerInitialize and never written to disk:
 * five fresh key pairs. Three are registered: creds[0] P-256 (expires at
 * now + 5000), creds[1] RSA-2048 (never), creds[2] P-256 whose credential
 * expired before `now`; two (one P-256, one RSA) are foreign. Two fixed policies:
 * IoT Core's defaults (padding allowed) and the same without padding.
 *
 * The first input byte picks a mode:
 *
 *   0x01 opts HEADER 0x00 CLAIMS   JSON mode: the harness base64url-encodes
 *                                  header and claims (HEADER omitted when
 *                                  there is no 0x00: {"alg":..,"typ":"JWT"}),
 *                                  signs them and verifies the token.
 *   0x02 opts SIGNING-INPUT        the harness signs the raw bytes as they are
 *                                  ("h.p", any bytes) and appends ".sig".
 *   anything else                  the whole input is the token (raw mode).
 *
 *   opts bit 0     RS256 (else ES256)
 *        bits 1-2  key: 0 registered; 1 the expired credential's key (ES256);
 *                  2 a foreign key; 3 registered, ES256 signature with
 *                  s replaced by n - s (high-S: valid)
 *        bit 3     '='-pad the header and claims segments (JSON mode)
 *        bit 4     '='-pad the signature segment
 *        bit 5     the strict policy (no padding)
 *        bits 6-7  why buffer: NULL, 1, 24 or 256 bytes
 *
 * Invariants (abort on violation):
 *  - raw mode never verifies: its keys exist only in this process;
 *  - signed modes verify only with a registered, unexpired key of the
 *    header's alg, and only if an independent check of the rules (jansson
 *    with duplicates refused, the claim and time rules of lk_verify.h) says
 *    the token is good; then info holds exactly the token's alg, iat, exp,
 *    exp + skew and the signing credential's index. Conversely a token the
 *    check calls good (plain JSON: no \u0000, nesting <= 4) verifies with a
 *    registered key and fails with LK_ERR_TOKEN_SIGNATURE with any other;
 *  - only the error codes the header lists; a token over the cap is
 *    LK_ERR_TOKEN_TOO_LARGE; on failure every field of info is zero;
 *  - why is NUL-terminated within why_size, one line, and holds no 12
 *    characters of the signature segment;
 *  - lk_verify_token_cached agrees with lk_verify_token, and a token that
 *    verified hits on the next call with the same info; later (now moved
 *    to the edge of exp + skew, of iat - skew or of the credential's
 *    expiry, picked by the sum of the input bytes) the cache accepts it
 *    exactly when a full verification does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_verify.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define NOW INT64_C(1700000000)
#define AUD "fuzz-project"
#define AUD_LEN (sizeof AUD - 1u)
#define MODE_JSON 0x01
#define MODE_SIGNING_INPUT 0x02
#define TWO_53 (INT64_C(1) << 53)
#define ES_CRED_EXPIRES (NOW + 5000)

enum key_id { KEY_ES, KEY_ES_EXPIRED, KEY_ES_FOREIGN, KEY_RS, KEY_RS_FOREIGN, KEY_COUNT };
#define NOT_REGISTERED 99u

static EVP_PKEY *g_key[KEY_COUNT];
static lk_cred *g_creds[3]; /* KEY_ES, KEY_RS, KEY_ES_EXPIRED */
static const unsigned g_cred_index[KEY_COUNT] = {0, 2, NOT_REGISTERED, 1, NOT_REGISTERED};
static lk_verifier *g_verifier;
static lk_vcache *g_cache;
static lk_verify_policy g_pol[2]; /* [0] IoT Core defaults, [1] no padding */
static BIGNUM *g_order;           /* n of P-256 */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_verify: setup failed: %s\n", what);
    abort();
}

static lk_cred *make_cred(EVP_PKEY *key, lk_cred_format fmt, int64_t expires)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long n;
    lk_cred *cred = NULL;

    if (bio == NULL || PEM_write_bio_PUBKEY(bio, key) != 1)
        die("PEM_write_bio_PUBKEY");
    n = BIO_get_mem_data(bio, &pem);
    if (n <= 0 || lk_cred_parse(fmt, pem, (size_t)n, expires, &cred) != LK_OK)
        die("lk_cred_parse of a fresh key");
    BIO_free(bio);
    return cred;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EC_GROUP *group;
    int i;

    (void)argc;
    (void)argv;
    for (i = 0; i < KEY_COUNT; i++) {
        if (i == KEY_RS || i == KEY_RS_FOREIGN)
            g_key[i] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        else
            g_key[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (g_key[i] == NULL)
            die("key generation");
    }
    g_creds[0] = make_cred(g_key[KEY_ES], LK_CRED_ES256_PEM, ES_CRED_EXPIRES);
    g_creds[1] = make_cred(g_key[KEY_RS], LK_CRED_RSA_PEM, 0);
    g_creds[2] = make_cred(g_key[KEY_ES_EXPIRED], LK_CRED_ES256_PEM, NOW - 100);
    if (lk_verifier_new(&g_verifier) != LK_OK || lk_vcache_new(16, &g_cache) != LK_OK)
        die("verifier or cache");
    lk_verify_policy_init(&g_pol[0], AUD, AUD_LEN, NOW);
    CHECK(g_pol[0].flags & LK_VERIFY_ALLOW_PADDING);
    g_pol[1] = g_pol[0];
    g_pol[1].flags &= ~LK_VERIFY_ALLOW_PADDING;
    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    if (group == NULL || (g_order = BN_dup(EC_GROUP_get0_order(group))) == NULL)
        die("P-256 order");
    EC_GROUP_free(group);
    return 0;
}

/* ---- making tokens ---- */

/* Sign msg with key k: raw r||s (64 bytes) or the RSA signature (256). */
static size_t sign(enum key_id k, const uint8_t *msg, size_t len, int high_s,
                   uint8_t sig[256])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t n = 256;

    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, g_key[k]) != 1)
        die("EVP_DigestSignInit");
    if (k == KEY_RS || k == KEY_RS_FOREIGN) {
        if (EVP_DigestSign(md, sig, &n, msg, len) != 1 || n != 256)
            die("RSA sign");
    } else {
        const uint8_t *p = der;
        const BIGNUM *r, *s;
        BIGNUM *s2;
        ECDSA_SIG *es;

        n = sizeof der;
        if (EVP_DigestSign(md, der, &n, msg, len) != 1)
            die("ECDSA sign");
        if ((es = d2i_ECDSA_SIG(NULL, &p, (long)n)) == NULL)
            die("d2i_ECDSA_SIG");
        ECDSA_SIG_get0(es, &r, &s);
        if ((s2 = BN_dup(s)) == NULL || (high_s && BN_sub(s2, g_order, s) != 1))
            die("high-S");
        if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s2, sig + 32, 32) != 32)
            die("BN_bn2binpad");
        BN_free(s2);
        ECDSA_SIG_free(es);
        n = 64;
    }
    EVP_MD_CTX_free(md);
    return n;
}

/* Append the base64url of in[0..n) to buf at *len, '='-padded if pad. buf
 * has room for LK_B64URL_ENCODED_LEN(n) + 3. */
static void put_b64(char *buf, size_t *len, const uint8_t *in, size_t n, int pad)
{
    size_t w;

    if (lk_b64url_encode(in, n, buf + *len, LK_B64URL_ENCODED_LEN(n) + 1, &w) != LK_OK)
        die("lk_b64url_encode");
    *len += w;
    while (pad && w % 4 != 0) {
        buf[(*len)++] = '=';
        w++;
    }
}

/* ---- the independent check of the rules ---- */

static int json_depth(const json_t *j)
{
    int d = 0, c;
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, key, v) {
            (void)key;
            if ((c = json_depth(v)) > d)
                d = c;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            if ((c = json_depth(v)) > d)
                d = c;
        }
        return d + 1;
    }
    return 0;
}

/* A JSON object, duplicates refused; *plain = 0 unless it also parses
 * without NUL characters in strings and nests at most 4 deep. */
static json_t *load_object(const uint8_t *p, size_t n, int *plain)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    json_t *strict;

    if (j == NULL)
        return NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    strict = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
    if (strict == NULL || json_depth(j) > 4)
        *plain = 0;
    json_decref(strict);
    return j;
}

static int get_time(const json_t *claims, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(claims, name);
    if (!json_is_integer(v))
        return 0;
    *out = (int64_t)json_integer_value(v);
    return *out >= 0 && *out <= TWO_53;
}

/*
 * Would the rules of lk_verify.h accept token[0..len) under pol if its
 * signature is good for alg? Fills *iat, *exp. *plain is cleared when the
 * verifier may refuse it anyway for a reason the contract leaves open.
 */
static int rules_accept(const char *tok, size_t len, const lk_verify_policy *pol,
                        lk_alg alg, int64_t *iat, int64_t *exp, int *plain)
{
    const char *d1, *d2;
    size_t seg[3], off[3], i, dec_len[3];
    uint8_t *dec[3] = {NULL, NULL, NULL};
    json_t *header = NULL, *claims = NULL;
    const json_t *a;
    const char *alg_name = alg == LK_ALG_ES256 ? "ES256" : "RS256";
    static const char *const refused[] = {"crit", "jwk", "jku", "x5u", "x5c"};
    unsigned flags = (pol->flags & LK_VERIFY_ALLOW_PADDING) ? LK_B64URL_ALLOW_PADDING : 0u;
    int ok = 0;

    *plain = 1;
    if (len > pol->max_len)
        return 0;
    if ((d1 = memchr(tok, '.', len)) == NULL ||
        (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok))) == NULL ||
        memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)) != NULL)
        return 0;
    off[0] = 0;
    seg[0] = (size_t)(d1 - tok);
    off[1] = seg[0] + 1;
    seg[1] = (size_t)(d2 - d1 - 1);
    off[2] = (size_t)(d2 + 1 - tok);
    seg[2] = len - off[2];
    for (i = 0; i < 3; i++) {
        if (seg[i] == 0)
            goto done;
        dec[i] = malloc(LK_B64URL_DECODED_MAX(seg[i]));
        CHECK(dec[i] != NULL);
        if (lk_b64url_decode(tok + off[i], seg[i], dec[i], LK_B64URL_DECODED_MAX(seg[i]),
                             &dec_len[i], flags) != LK_OK)
            goto done;
    }
    if (dec_len[2] != (alg == LK_ALG_ES256 ? 64u : 256u))
        goto done;
    if ((header = load_object(dec[0], dec_len[0], plain)) == NULL ||
        (claims = load_object(dec[1], dec_len[1], plain)) == NULL)
        goto done;
    a = json_object_get(header, "alg");
    if (!json_is_string(a) || json_string_length(a) != 5 ||
        memcmp(json_string_value(a), alg_name, 5) != 0)
        goto done;
    for (i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (json_object_get(header, refused[i]) != NULL)
            goto done;
    if (!get_time(claims, "iat", iat) || !get_time(claims, "exp", exp))
        goto done;
    a = json_object_get(claims, "aud");
    if (!json_is_string(a) || json_string_length(a) != pol->aud_len ||
        memcmp(json_string_value(a), pol->aud, pol->aud_len) != 0)
        goto done;
    /* Values are in [0, 2^53] and now, skew, lifetime are small: no overflow. */
    if (*iat > pol->now + pol->skew || *exp <= pol->now - pol->skew ||
        *exp <= *iat || *exp > *iat + pol->max_lifetime + pol->skew)
        goto done;
    ok = 1;
done:
    json_decref(header);
    json_decref(claims);
    for (i = 0; i < 3; i++)
        free(dec[i]);
    return ok;
}

/* ---- calling the verifier ---- */

static int is_zero_info(const lk_token_info *info)
{
    return info->alg == LK_ALG_NONE && info->iat == 0 && info->exp == 0 &&
           info->valid_until == 0 && info->cred_index == 0;
}

static int same_info(const lk_token_info *a, const lk_token_info *b)
{
    return a->alg == b->alg && a->iat == b->iat && a->exp == b->exp &&
           a->valid_until == b->valid_until && a->cred_index == b->cred_index;
}

static void check_result(lk_err err, const lk_token_info *info,
                         const char *why, size_t why_size)
{
    switch (err) {
    case LK_OK:
        break;
    case LK_ERR_TOKEN_TOO_LARGE: case LK_ERR_TOKEN_MALFORMED:
    case LK_ERR_TOKEN_HEADER: case LK_ERR_TOKEN_ALG: case LK_ERR_TOKEN_CLAIM:
    case LK_ERR_TOKEN_AUDIENCE: case LK_ERR_TOKEN_FUTURE:
    case LK_ERR_TOKEN_EXPIRED: case LK_ERR_TOKEN_LIFETIME:
    case LK_ERR_TOKEN_SIGNATURE:
        CHECK(is_zero_info(info));
        break;
    default:
        /* LK_ERR_NO_CREDENTIAL cannot happen: both algs have a live key. */
        fprintf(stderr, "fuzz_verify: unexpected %s\n", lk_errname(err));
        abort();
    }
    if (why != NULL && why_size > 0) {
        const char *nul = memchr(why, '\0', why_size);
        CHECK(nul != NULL);
        CHECK(memchr(why, '\n', (size_t)(nul - why)) == NULL);
    }
}

/* No 12 characters of the signature segment tok[sig_off..len) in why: the
 * harness's signatures are random, so a match is a leak, not a chance. */
static void check_why_leak(const char *why, size_t why_size, const char *tok,
                           size_t sig_off, size_t len)
{
    size_t why_len, i;

    if (why == NULL || why_size == 0)
        return;
    why_len = strnlen(why, why_size);
    for (i = sig_off; i + 12 <= len && why_len >= 12; i++)
        CHECK(memmem(why, why_len, tok + i, 12) == NULL);
}

/* Verify once directly and twice through the cache; all three must agree. */
static lk_err verify(const char *tok, size_t len, size_t sig_off,
                     const lk_verify_policy *pol, char *why, size_t why_size,
                     lk_token_info *info)
{
    lk_token_info cinfo;
    lk_err err, cerr;
    int hit, round;

    memset(info, 0xA5, sizeof *info);
    if (why != NULL)
        memset(why, 0xA5, why_size);
    err = lk_verify_token(g_verifier, tok, len, g_creds, 3, pol, info, why, why_size);
    check_result(err, info, why, why_size);
    check_why_leak(why, why_size, tok, sig_off, len);
    for (round = 0; round < 2; round++) {
        memset(&cinfo, 0xA5, sizeof cinfo);
        if (why != NULL)
            memset(why, 0xA5, why_size);
        hit = -1;
        cerr = lk_verify_token_cached(g_verifier, g_cache, tok, len, g_creds, 3, pol,
                                      &cinfo, &hit, why, why_size);
        check_result(cerr, &cinfo, why, why_size);
        check_why_leak(why, why_size, tok, sig_off, len);
        CHECK(cerr == err);
        CHECK(hit == 0 || hit == 1);
        if (err == LK_OK) {
            CHECK(same_info(&cinfo, info));
            CHECK(round == 0 || hit == 1); /* remembered on the first pass */
        } else {
            CHECK(hit == 0);
        }
    }
    return err;
}

/* A token verified at pol->now; at `later` the cache must answer as a full
 * verification does: a hit is re-checked, never extending a token's life. */
static void check_cache_later(const char *tok, size_t len, const lk_verify_policy *pol,
                              const lk_token_info *at_now, int64_t later)
{
    lk_verify_policy p2 = *pol;
    lk_token_info full, cached;
    lk_err ferr, cerr;
    int hit = -1;

    if (later < 0)
        return;
    p2.now = later;
    ferr = lk_verify_token(g_verifier, tok, len, g_creds, 3, &p2, &full, NULL, 0);
    check_result(ferr, &full, NULL, 0);
    cerr = lk_verify_token_cached(g_verifier, g_cache, tok, len, g_creds, 3, &p2,
                                  &cached, &hit, NULL, 0);
    check_result(cerr, &cached, NULL, 0);
    if ((ferr == LK_OK) != (cerr == LK_OK)) {
        fprintf(stderr, "fuzz_verify: now %lld: full %s, cached %s (hit %d)\n",
                (long long)later, lk_errname(ferr), lk_errname(cerr), hit);
        abort();
    }
    if (ferr == LK_OK) {
        CHECK(same_info(&full, at_now));
        CHECK(same_info(&cached, at_now));
    }
}

static char *why_buffer(unsigned sel, size_t *size)
{
    static const size_t sizes[4] = {0, 1, 24, 256};
    char *why;

    *size = sizes[sel & 3u];
    if (*size == 0)
        return NULL;
    why = malloc(*size); /* exact size: ASan sees a write past why_size */
    CHECK(why != NULL);
    return why;
}

static void fuzz_raw(const uint8_t *data, size_t size)
{
    int p;

    for (p = 0; p < 2; p++) {
        lk_token_info info;
        size_t why_size;
        char *why = why_buffer((unsigned)(size + (size_t)p), &why_size);
        lk_err err = verify((const char *)data, size, size, &g_pol[p], why, why_size, &info);

        /* The keys were made in this process: no input can carry a good
         * signature. */
        CHECK(err != LK_OK);
        if (size > g_pol[p].max_len)
            CHECK(err == LK_ERR_TOKEN_TOO_LARGE);
        free(why);
    }
    {
        /* The same bytes as a just-in-time token (x5c read, the leaf's key
         * verifying): the contract's zeroing, a leaf only on success. A
         * leaf's key can sign only what the fuzzer was given signed. */
        static lk_x5c_certs certs;
        lk_verify_policy pol = g_pol[0];
        lk_token_info info;
        char why[256];
        lk_err err;

        pol.flags |= LK_VERIFY_ALLOW_X5C;
        pol.max_len = LK_VERIFY_JIT_MAX_LEN;
        memset(&certs, 0xA5, sizeof certs);
        err = lk_verify_jit_token(g_verifier, (const char *)data, size, &pol, &info, &certs, why,
                                  sizeof why);
        CHECK(memchr(why, '\0', sizeof why) != NULL);
        if (err != LK_OK) {
            CHECK(certs.leaf_len == 0 && certs.chain_len == 0 && certs.nchain == 0);
            CHECK(info.exp == 0 && info.iat == 0);
        } else {
            CHECK(certs.leaf_len > 0 && strlen(certs.leaf) == certs.leaf_len);
            CHECK(certs.nchain < LK_X5C_CERTS_MAX);
        }
        if (size > pol.max_len)
            CHECK(err == LK_ERR_TOKEN_TOO_LARGE);
    }
}

static void fuzz_signed(int mode, const uint8_t *data, size_t size)
{
    unsigned opts = size > 1 ? data[1] : 0u;
    const uint8_t *rest = size > 2 ? data + 2 : data;
    size_t rest_len = size > 2 ? size - 2 : 0;
    lk_alg alg = (opts & 1u) ? LK_ALG_RS256 : LK_ALG_ES256;
    unsigned keysel = (opts >> 1) & 3u;
    int pad_hp = (opts & 8u) != 0, pad_sig = (opts & 16u) != 0;
    const lk_verify_policy *pol = &g_pol[(opts & 32u) ? 1 : 0];
    enum key_id key;
    int high_s = 0, plain, accept, good_key;
    unsigned sum = 0;
    uint8_t sig[256];
    size_t sig_len, tok_len = 0, cap, why_size, sig_off, i;
    char *tok, *why;
    int64_t iat = 0, exp = 0;
    lk_token_info info;
    lk_err err;

    if (alg == LK_ALG_RS256) {
        key = keysel == 2 ? KEY_RS_FOREIGN : KEY_RS;
    } else {
        static const enum key_id es_keys[4] = {KEY_ES, KEY_ES_EXPIRED, KEY_ES_FOREIGN, KEY_ES};
        key = es_keys[keysel];
        high_s = keysel == 3;
    }
    cap = LK_B64URL_ENCODED_LEN(rest_len) + 64 + rest_len + LK_B64URL_ENCODED_LEN(256) + 8;
    tok = malloc(cap);
    CHECK(tok != NULL);
    if (mode == MODE_JSON) {
        const uint8_t *nul = memchr(rest, 0, rest_len);
        const char *def = alg == LK_ALG_ES256 ? "{\"alg\":\"ES256\",\"typ\":\"JWT\"}"
                                              : "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
        if (nul != NULL) {
            put_b64(tok, &tok_len, rest, (size_t)(nul - rest), pad_hp);
            tok[tok_len++] = '.';
            put_b64(tok, &tok_len, nul + 1, rest_len - (size_t)(nul + 1 - rest), pad_hp);
        } else {
            put_b64(tok, &tok_len, (const uint8_t *)def, strlen(def), pad_hp);
            tok[tok_len++] = '.';
            put_b64(tok, &tok_len, rest, rest_len, pad_hp);
        }
    } else {
        memcpy(tok, rest, rest_len);
        tok_len = rest_len;
    }
    sig_len = sign(key, (const uint8_t *)tok, tok_len, high_s, sig);
    tok[tok_len++] = '.';
    sig_off = tok_len;
    put_b64(tok, &tok_len, sig, sig_len, pad_sig);
    CHECK(tok_len <= cap);
    /* Exact size, not terminated: reading tok[tok_len] is an ASan error. */
    tok = realloc(tok, tok_len);
    CHECK(tok != NULL);

    good_key = g_cred_index[key] != NOT_REGISTERED && key != KEY_ES_EXPIRED;
    accept = rules_accept(tok, tok_len, pol, alg, &iat, &exp, &plain);
    why = why_buffer(opts >> 6, &why_size);
    err = verify(tok, tok_len, sig_off, pol, why, why_size, &info);
    if (err == LK_OK) {
        CHECK(good_key);
        CHECK(accept);
        CHECK(info.alg == alg);
        CHECK(info.iat == iat && info.exp == exp);
        CHECK(info.valid_until == exp + pol->skew);
        CHECK(info.cred_index == g_cred_index[key]);
        for (i = 0; i < size; i++)
            sum += data[i];
        switch (sum % 6u) {
        case 0: check_cache_later(tok, tok_len, pol, &info, exp + pol->skew - 1); break;
        case 1: check_cache_later(tok, tok_len, pol, &info, exp + pol->skew); break;
        case 2: check_cache_later(tok, tok_len, pol, &info, ES_CRED_EXPIRES - 1); break;
        case 3: check_cache_later(tok, tok_len, pol, &info, ES_CRED_EXPIRES); break;
        case 4: check_cache_later(tok, tok_len, pol, &info, iat - pol->skew - 1); break;
        default: check_cache_later(tok, tok_len, pol, &info, iat - pol->skew); break;
        }
    } else if (accept && plain) {
        CHECK(!good_key);
        CHECK(err == LK_ERR_TOKEN_SIGNATURE);
    }
    if (tok_len > pol->max_len)
        CHECK(err == LK_ERR_TOKEN_TOO_LARGE);
    free(why);
    free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && (data[0] == MODE_JSON || data[0] == MODE_SIGNING_INPUT))
        fuzz_signed(data[0], data, size);
    else
        fuzz_raw(data, size);
    return 0;
}
