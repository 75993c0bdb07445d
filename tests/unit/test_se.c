/*
 * test_se.c — the secure-element dispatchers and helpers of the core
 * (lk_se.h, lk_error.h, lk_util.h), driven by a mock backend whose every
 * answer the test chooses: argument checks, missing operations, the output
 * contract enforced whatever the backend does (sizes, ES256 r/s, wiping),
 * the SHA-256 fallback, the P-256 SPKI wrapper checked against OpenSSL,
 * algorithm names, error strings, and the memory helpers.
 */
#include "lk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_se.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_util.h"

#define FILL 0xA5u
#define GARBAGE 0xEEu
#define OUT_SIZE 600u

/* ---- the mock backend ------------------------------------------------- */

typedef struct mock {
    int calls;
    lk_err ret;             /* what every operation returns */
    size_t out_len;         /* length reported for pub/sig (if report_len) */
    int report_len;         /* use out_len instead of the natural length */
    int zero_r, zero_s;     /* ES256: zero the r or s half */
    lk_alg key_alg;         /* what public_key reports */
    /* what the backend saw */
    const char *key;
    lk_alg alg;
    unsigned bits;
    uint8_t digest[LK_SHA256_BYTES];
    size_t size_seen;
} mock;

static void mock_reset(mock *m)
{
    memset(m, 0, sizeof *m);
    m->ret = LK_OK;
    m->key_alg = LK_ALG_ES256;
}

/* Write a recognisable, non-zero pattern (GARBAGE on failure). */
static void mock_fill(const mock *m, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (m->ret == LK_OK) ? (uint8_t)(0x11 + i) : GARBAGE;
}

static lk_err mock_out(mock *m, uint8_t *out, size_t size, size_t *len, size_t natural)
{
    size_t n = m->report_len ? m->out_len : natural;
    m->size_seen = size;
    mock_fill(m, out, n < size ? n : size);
    *len = n;
    if (m->ret == LK_OK && !m->report_len && size < n) {
        *len = 0;
        return LK_ERR_BUFFER;
    }
    return m->ret;
}

static lk_err m_generate(void *ctx, const char *key, lk_alg alg, unsigned bits,
                         uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    mock *m = ctx;
    m->calls++;
    m->key = key;
    m->alg = alg;
    m->bits = bits;
    return mock_out(m, pub, pub_size, pub_len, LK_P256_SPKI_BYTES);
}

static lk_err m_public_key(void *ctx, const char *key, lk_alg *alg,
                           uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    mock *m = ctx;
    m->calls++;
    m->key = key;
    *alg = m->key_alg;
    return mock_out(m, pub, pub_size, pub_len, LK_P256_SPKI_BYTES);
}

static lk_err m_sign(void *ctx, const char *key, lk_alg alg,
                     const uint8_t digest[LK_SHA256_BYTES],
                     uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    mock *m = ctx;
    m->calls++;
    m->key = key;
    m->alg = alg;
    memcpy(m->digest, digest, LK_SHA256_BYTES);
    lk_err err = mock_out(m, sig, sig_size, sig_len,
                          alg == LK_ALG_RS256 ? 256u : LK_ES256_SIG_BYTES);
    if (m->zero_r && sig_size >= 32)
        memset(sig, 0, 32);
    if (m->zero_s && sig_size >= 64)
        memset(sig + 32, 0, 32);
    return err;
}

static lk_err m_random(void *ctx, uint8_t *out, size_t len)
{
    mock *m = ctx;
    m->calls++;
    mock_fill(m, out, len);
    return m->ret;
}

static lk_err m_sha256(void *ctx, const uint8_t *data, size_t len,
                       uint8_t out[LK_SHA256_BYTES])
{
    mock *m = ctx;
    m->calls++;
    (void)data;
    (void)len;
    mock_fill(m, out, LK_SHA256_BYTES);   /* a "hash" the core never makes */
    return m->ret;
}

static const lk_se_ops full_ops = {
    "mock", m_generate, m_public_key, m_sign, m_random, m_sha256,
};
static const lk_se_ops empty_ops = { "empty", NULL, NULL, NULL, NULL, NULL };

/* ---- one call of each dispatcher, with its output checked ------------- */

enum op { OP_GENERATE, OP_PUBLIC_KEY, OP_SIGN, OP_RANDOM, OP_SHA256, OP__N };
static const char *const op_names[] = {
    "generate", "public_key", "sign_digest", "random", "sha256",
};

typedef struct call {
    uint8_t out[OUT_SIZE + 16]; /* output, then a canary */
    size_t out_size;            /* the size passed (or length, for random) */
    size_t out_len;             /* (size_t)-1 before the call */
    size_t wiped;               /* how many output bytes must be zero on failure */
    lk_alg alg_out;
} call;

static const uint8_t digest_abc[LK_SHA256_BYTES] = {
    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
    0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
    0xf2, 0x00, 0x15, 0xad,
};

static lk_err do_call(enum op op, const lk_se *se, const char *key, lk_alg alg, call *c)
{
    memset(c->out, FILL, sizeof c->out);
    c->out_len = (size_t)-1;
    c->alg_out = (lk_alg)77;
    if (c->out_size == 0)
        c->out_size = OUT_SIZE;
    switch (op) {
    case OP_GENERATE:
        c->wiped = c->out_size;
        return lk_se_generate(se, key, alg, 2048, c->out, c->out_size, &c->out_len);
    case OP_PUBLIC_KEY:
        c->wiped = c->out_size;
        return lk_se_public_key(se, key, &c->alg_out, c->out, c->out_size, &c->out_len);
    case OP_SIGN:
        c->wiped = c->out_size;
        return lk_se_sign_digest(se, key, alg, digest_abc, c->out, c->out_size, &c->out_len);
    case OP_RANDOM:
        c->wiped = c->out_size;
        return lk_se_random(se, c->out, c->out_size);
    case OP_SHA256:
        c->wiped = LK_SHA256_BYTES;
        return lk_se_sha256(se, (const uint8_t *)"abc", 3, c->out);
    default:
        fail();
    }
    return LK_ERR__END;
}

static int op_has_len(enum op op)
{
    return op == OP_GENERATE || op == OP_PUBLIC_KEY || op == OP_SIGN;
}

/* After a failed call: the length 0, nothing written past the output, and
 * (if wiped) the output wiped. The argument tests check codes and lengths
 * only; test_argument_failures_wipe checks their wiping on its own, so one
 * deviation does not hide the others. */
static void check_failed_output_w(enum op op, const call *c, const char *why, int wiped)
{
    if (wiped && !lk_test_all_bytes(c->out, c->wiped, 0))
        fail_msg("%s (%s): failed but did not wipe its output", op_names[op], why);
    if (!lk_test_all_bytes(c->out + c->wiped, sizeof c->out - c->wiped, FILL))
        fail_msg("%s (%s): wrote past its output", op_names[op], why);
    if (op_has_len(op) && c->out_len != 0)
        fail_msg("%s (%s): failed but *len = %zu, not 0", op_names[op], why, c->out_len);
}

static void check_failed_output(enum op op, const call *c, const char *why)
{
    check_failed_output_w(op, c, why, 1);
}

static void check_failed_code(enum op op, const call *c, const char *why)
{
    check_failed_output_w(op, c, why, 0);
}

/* ---- argument checks --------------------------------------------------- */

static void test_null_se_and_ops(void **state)
{
    (void)state;
    lk_se no_ops = { NULL, NULL };
    for (int op = 0; op < OP__N; op++) {
        call c = { .out_size = 0 };
        lk_err err = do_call((enum op)op, NULL, "k", LK_ALG_ES256, &c);
        if (err != LK_ERR_ARG)
            fail_msg("%s(NULL se) = %d, expected LK_ERR_ARG", op_names[op], err);
        check_failed_code((enum op)op, &c, "NULL se");

        c.out_size = 0;
        err = do_call((enum op)op, &no_ops, "k", LK_ALG_ES256, &c);
        if (err != LK_ERR_ARG)
            fail_msg("%s(se without ops) = %d, expected LK_ERR_ARG", op_names[op], err);
        check_failed_code((enum op)op, &c, "NULL ops");
    }
}

static void test_missing_ops_unsupported(void **state)
{
    (void)state;
    mock m;
    mock_reset(&m);
    lk_se se = { &empty_ops, &m };
    for (int op = 0; op < OP__N; op++) {
        if (op == OP_SHA256)
            continue; /* falls back to the core: test_sha256_fallback */
        call c = { .out_size = 0 };
        lk_err err = do_call((enum op)op, &se, "k", LK_ALG_ES256, &c);
        if (err != LK_ERR_UNSUPPORTED)
            fail_msg("%s without the op = %d, expected LK_ERR_UNSUPPORTED",
                     op_names[op], err);
        check_failed_code((enum op)op, &c, "missing op");
    }
    /* one at a time: each table with exactly one op missing */
    for (int op = 0; op < OP__N; op++) {
        if (op == OP_SHA256)
            continue;
        lk_se_ops ops = full_ops;
        switch (op) {
        case OP_GENERATE: ops.generate = NULL; break;
        case OP_PUBLIC_KEY: ops.public_key = NULL; break;
        case OP_SIGN: ops.sign_digest = NULL; break;
        case OP_RANDOM: ops.random = NULL; break;
        default: break;
        }
        lk_se one = { &ops, &m };
        call c = { .out_size = 0 };
        mock_reset(&m);
        lk_err err = do_call((enum op)op, &one, "k", LK_ALG_ES256, &c);
        if (err != LK_ERR_UNSUPPORTED)
            fail_msg("%s missing from an otherwise full table = %d", op_names[op], err);
        assert_int_equal(m.calls, 0);
        check_failed_code((enum op)op, &c, "missing op");
    }
}

static void test_key_reference_checks(void **state)
{
    (void)state;
    mock m;
    lk_se se = { &full_ops, &m };
    char *max_key = malloc(LK_KEY_REF_MAX + 2);
    assert_non_null(max_key);
    memset(max_key, 'k', LK_KEY_REF_MAX + 1);
    max_key[LK_KEY_REF_MAX + 1] = '\0'; /* one too long */

    static const enum op keyed[] = { OP_GENERATE, OP_PUBLIC_KEY, OP_SIGN };
    for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
        enum op op = keyed[i];
        const char *bad[] = { NULL, "", max_key };
        const char *why[] = { "NULL key", "empty key", "key of LK_KEY_REF_MAX+1" };
        for (int b = 0; b < 3; b++) {
            mock_reset(&m);
            call c = { .out_size = 0 };
            lk_err err = do_call(op, &se, bad[b], LK_ALG_ES256, &c);
            if (err != LK_ERR_ARG)
                fail_msg("%s(%s) = %d, expected LK_ERR_ARG", op_names[op], why[b], err);
            if (m.calls != 0)
                fail_msg("%s(%s) reached the backend", op_names[op], why[b]);
            check_failed_code(op, &c, why[b]);
        }
        /* exactly LK_KEY_REF_MAX characters is accepted and passed as is */
        max_key[LK_KEY_REF_MAX] = '\0';
        mock_reset(&m);
        call c = { .out_size = 0 };
        lk_err err = do_call(op, &se, max_key, LK_ALG_ES256, &c);
        if (err != LK_OK)
            fail_msg("%s(key of LK_KEY_REF_MAX chars) = %d", op_names[op], err);
        assert_int_equal(m.calls, 1);
        assert_ptr_equal(m.key, max_key);
        max_key[LK_KEY_REF_MAX] = 'k';
        /* any byte content is the backend's business */
        mock_reset(&m);
        err = do_call(op, &se, "slot:0 \xff\x01 pkcs11:object=a;id=%01", LK_ALG_ES256, &c);
        assert_int_equal(err, LK_OK);
        assert_string_equal(m.key, "slot:0 \xff\x01 pkcs11:object=a;id=%01");
    }
    free(max_key);
}

/* A key reference with no NUL within LK_KEY_REF_MAX + 1 bytes must be
 * rejected without reading further: the bytes end at an unmapped page. */
static void test_key_reference_bounded_read(void **state)
{
    (void)state;
    long page = sysconf(_SC_PAGESIZE);
    size_t span = ((LK_KEY_REF_MAX + 2 + (size_t)page - 1) / (size_t)page + 1) * (size_t)page;
    uint8_t *map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    uint8_t *guard = map + span - (size_t)page;
    assert_int_equal(mprotect(guard, (size_t)page, PROT_NONE), 0);

    mock m;
    lk_se se = { &full_ops, &m };
    /* LK_KEY_REF_MAX + 1 non-NUL bytes, then the guard page */
    char *key = (char *)guard - (LK_KEY_REF_MAX + 1);
    memset(key, 'k', LK_KEY_REF_MAX + 1);
    static const enum op keyed[] = { OP_GENERATE, OP_PUBLIC_KEY, OP_SIGN };
    for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
        mock_reset(&m);
        call c = { .out_size = 0 };
        assert_int_equal(do_call(keyed[i], &se, key, LK_ALG_ES256, &c), LK_ERR_ARG);
        assert_int_equal(m.calls, 0);
    }
    /* LK_KEY_REF_MAX characters and the NUL as the last mapped byte */
    key = (char *)guard - (LK_KEY_REF_MAX + 1);
    key[LK_KEY_REF_MAX] = '\0';
    mock_reset(&m);
    call c = { .out_size = 0 };
    assert_int_equal(do_call(OP_SIGN, &se, key, LK_ALG_ES256, &c), LK_OK);
    munmap(map, span);
}

static void test_null_outputs(void **state)
{
    (void)state;
    mock m;
    mock_reset(&m);
    lk_se se = { &full_ops, &m };
    uint8_t buf[OUT_SIZE];
    size_t len;
    lk_alg alg;

#define EXPECT_ARG(expr)                                                   \
    do {                                                                   \
        mock_reset(&m);                                                    \
        lk_err e_ = (expr);                                                \
        if (e_ != LK_ERR_ARG)                                              \
            fail_msg("%s = %d, expected LK_ERR_ARG", #expr, e_);           \
        if (m.calls != 0)                                                  \
            fail_msg("%s reached the backend", #expr);                     \
    } while (0)

    EXPECT_ARG(lk_se_generate(&se, "k", LK_ALG_ES256, 0, NULL, sizeof buf, &len));
    EXPECT_ARG(lk_se_generate(&se, "k", LK_ALG_ES256, 0, buf, sizeof buf, NULL));
    EXPECT_ARG(lk_se_public_key(&se, "k", NULL, buf, sizeof buf, &len));
    EXPECT_ARG(lk_se_public_key(&se, "k", &alg, NULL, sizeof buf, &len));
    EXPECT_ARG(lk_se_public_key(&se, "k", &alg, buf, sizeof buf, NULL));
    EXPECT_ARG(lk_se_sign_digest(&se, "k", LK_ALG_ES256, NULL, buf, sizeof buf, &len));
    EXPECT_ARG(lk_se_sign_digest(&se, "k", LK_ALG_ES256, digest_abc, NULL, sizeof buf, &len));
    EXPECT_ARG(lk_se_sign_digest(&se, "k", LK_ALG_ES256, digest_abc, buf, sizeof buf, NULL));
    EXPECT_ARG(lk_se_random(&se, NULL, 16));
    EXPECT_ARG(lk_se_sha256(&se, NULL, 3, buf));
    EXPECT_ARG(lk_se_sha256(&se, (const uint8_t *)"abc", 3, NULL));
#undef EXPECT_ARG

    /* a zero-size output is refused before the backend sees it */
    mock_reset(&m);
    len = 99;
    assert_int_not_equal(lk_se_public_key(&se, "k", &alg, buf, 0, &len), LK_OK);
    assert_int_equal(len, 0);
    mock_reset(&m);
    len = 99;
    assert_int_not_equal(lk_se_sign_digest(&se, "k", LK_ALG_ES256, digest_abc, buf, 0, &len),
                         LK_OK);
    assert_int_equal(len, 0);
}

/* "On any failure the output buffer is wiped and the output length is 0"
 * (lk_se.h): also when the dispatcher itself refuses the call. */
static void test_argument_failures_wipe(void **state)
{
    (void)state;
    mock m;
    lk_se se = { &full_ops, &m };
    lk_se no_ops = { NULL, &m };
    lk_se empty = { &empty_ops, &m };
    for (int op = 0; op < OP__N; op++) {
        static const char *const why[] = { "NULL se", "NULL ops", "missing op", "NULL key",
                                            "empty key", "alg none" };
        for (int w = 0; w < 6; w++) {
            const lk_se *sp = w == 0 ? NULL : w == 1 ? &no_ops : w == 2 ? &empty : &se;
            const char *key = w == 3 ? NULL : w == 4 ? "" : "k";
            lk_alg alg = w == 5 ? LK_ALG_NONE : LK_ALG_ES256;
            if (w == 2 && op == OP_SHA256)
                continue; /* falls back */
            if (w >= 3 && (op == OP_RANDOM || op == OP_SHA256))
                continue; /* no key, no alg */
            if (w == 5 && op != OP_SIGN && op != OP_GENERATE)
                continue;
            mock_reset(&m);
            call c = { .out_size = 0 };
            lk_err err = do_call((enum op)op, sp, key, alg, &c);
            assert_int_not_equal(err, LK_OK);
            check_failed_output((enum op)op, &c, why[w]);
        }
    }
}

/* ---- the output contract, whatever the backend does ------------------- */

static void test_outputs_wiped_on_backend_failure(void **state)
{
    (void)state;
    static const lk_err errs[] = { LK_ERR_DEVICE, LK_ERR_KEY_NOT_FOUND, LK_ERR_KEY_LOCKED,
                                   LK_ERR_KEY_TYPE, LK_ERR_RNG, LK_ERR_SIGN };
    mock m;
    lk_se se = { &full_ops, &m };
    for (int op = 0; op < OP__N; op++) {
        for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
            mock_reset(&m);
            m.ret = errs[e]; /* the mock writes GARBAGE and a length, then fails */
            call c = { .out_size = 0 };
            lk_err err = do_call((enum op)op, &se, "k", LK_ALG_ES256, &c);
            if (err != errs[e])
                fail_msg("%s: backend said %d, dispatcher returned %d",
                         op_names[op], errs[e], err);
            assert_int_equal(m.calls, 1);
            check_failed_output((enum op)op, &c, "backend failure");
        }
        /* and success passes the backend's output through */
        mock_reset(&m);
        call c = { .out_size = 0 };
        assert_int_equal(do_call((enum op)op, &se, "k", LK_ALG_ES256, &c), LK_OK);
        assert_int_equal(c.out[0], 0x11);
        assert_int_equal(c.out[1], 0x12);
    }
}

/* A backend that reports more bytes than the buffer holds never gets a
 * success through. */
static void test_backend_overlong_length(void **state)
{
    (void)state;
    mock m;
    lk_se se = { &full_ops, &m };
    static const enum op sized[] = { OP_GENERATE, OP_PUBLIC_KEY, OP_SIGN };
    static const lk_alg algs[] = { LK_ALG_ES256, LK_ALG_RS256 };
    for (size_t i = 0; i < 3; i++) {
        for (size_t a = 0; a < 2; a++) {
            mock_reset(&m);
            m.report_len = 1;
            m.out_len = 301;
            call c = { .out_size = 300 };
            lk_err err = do_call(sized[i], &se, "k", algs[a], &c);
            if (err == LK_OK)
                fail_msg("%s: backend claimed 301 bytes in a 300-byte buffer, "
                         "dispatcher returned LK_OK", op_names[sized[i]]);
            check_failed_output(sized[i], &c, "over-long output");
            assert_true(lk_test_all_bytes(c.out + 300, sizeof c.out - 300, FILL));
        }
    }
}

static lk_err sign_with(mock *m, lk_alg alg, size_t sig_size, call *c)
{
    lk_se se = { &full_ops, m };
    c->out_size = sig_size;
    return do_call(OP_SIGN, &se, "slot:3", alg, c);
}

static void test_es256_signature_checks(void **state)
{
    (void)state;
    mock m;
    call c;

    /* a proper 64-byte signature passes, unchanged, with the digest intact */
    mock_reset(&m);
    assert_int_equal(sign_with(&m, LK_ALG_ES256, 64, &c), LK_OK);
    assert_int_equal(c.out_len, 64);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(c.out[i], (uint8_t)(0x11 + i));
    assert_true(lk_test_all_bytes(c.out + 64, sizeof c.out - 64, FILL));
    assert_memory_equal(m.digest, digest_abc, sizeof digest_abc);
    assert_int_equal(m.alg, LK_ALG_ES256);
    assert_string_equal(m.key, "slot:3");

    /* wrong lengths, whatever the buffer size */
    static const size_t lens[] = { 0, 1, 32, 63, 65, 72, 128, 256 };
    static const size_t sizes[] = { 64, 65, 128, 512 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            if (lens[l] > sizes[s])
                continue;
            mock_reset(&m);
            m.report_len = 1;
            m.out_len = lens[l];
            lk_err err = sign_with(&m, LK_ALG_ES256, sizes[s], &c);
            if (err != LK_ERR_SIGN)
                fail_msg("ES256 signature of %zu bytes (buffer %zu) = %d, expected LK_ERR_SIGN",
                         lens[l], sizes[s], err);
            check_failed_output(OP_SIGN, &c, "bad ES256 length");
        }
    }
    /* r = 0, s = 0, both */
    for (int z = 1; z <= 3; z++) {
        mock_reset(&m);
        m.zero_r = z & 1;
        m.zero_s = z & 2;
        lk_err err = sign_with(&m, LK_ALG_ES256, 64, &c);
        if (err != LK_ERR_SIGN)
            fail_msg("ES256 signature with%s%s = %d, expected LK_ERR_SIGN",
                     m.zero_r ? " r=0" : "", m.zero_s ? " s=0" : "", err);
        check_failed_output(OP_SIGN, &c, "zero r/s");
    }
}

/* r or s that is zero except for one byte is fine: the check looks at all
 * 32 bytes of each half, not just the first or last. */
static lk_err m_sign_one_byte(void *ctx, const char *key, lk_alg alg,
                              const uint8_t digest[LK_SHA256_BYTES],
                              uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    const size_t *which = ctx; /* index of the only non-zero byte of r, then s */
    (void)key; (void)alg; (void)digest; (void)sig_size;
    memset(sig, 0, 64);
    sig[which[0]] = 1;
    sig[32 + which[1]] = 0x80;
    *sig_len = 64;
    return LK_OK;
}

static void test_es256_nonzero_anywhere(void **state)
{
    (void)state;
    static const lk_se_ops ops = { .name = "onebyte", .generate = m_generate,
                                   .public_key = m_public_key, .sign_digest = m_sign_one_byte };
    size_t which[2];
    lk_se se = { &ops, which };
    uint8_t sig[64];
    size_t len;
    for (size_t i = 0; i < 32; i++) {
        which[0] = i;
        which[1] = 31 - i;
        lk_err err = lk_se_sign_digest(&se, "k", LK_ALG_ES256, digest_abc, sig, sizeof sig, &len);
        if (err != LK_OK)
            fail_msg("r non-zero only at byte %zu, s only at %zu: %d", i, 31 - i, err);
        assert_int_equal(len, 64);
    }
}

static void test_rs256_signature_checks(void **state)
{
    (void)state;
    mock m;
    call c;
    static const struct { size_t len; lk_err want; } v[] = {
        { 0, LK_ERR_SIGN }, { 1, LK_ERR_SIGN }, { 64, LK_ERR_SIGN }, { 255, LK_ERR_SIGN },
        { 256, LK_OK }, { 384, LK_OK }, { 512, LK_OK },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        mock_reset(&m);
        m.report_len = 1;
        m.out_len = v[i].len;
        lk_err err = sign_with(&m, LK_ALG_RS256, 512, &c);
        if (err != v[i].want)
            fail_msg("RS256 signature of %zu bytes = %d, expected %d", v[i].len, err, v[i].want);
        if (err == LK_OK) {
            assert_int_equal(c.out_len, v[i].len);
            assert_int_equal(m.alg, LK_ALG_RS256);
        } else {
            check_failed_output(OP_SIGN, &c, "short RS256");
        }
    }
}

static void test_sign_invalid_alg(void **state)
{
    (void)state;
    mock m;
    call c;
    static const lk_alg bad[] = { LK_ALG_NONE, (lk_alg)3, (lk_alg)-1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (size_t len = 64; len <= 256; len += 192) {
            /* the backend "signs" anyway, with a plausible length */
            mock_reset(&m);
            m.report_len = 1;
            m.out_len = len;
            lk_err err = sign_with(&m, bad[i], 512, &c);
            if (err == LK_OK)
                fail_msg("signing with alg %d succeeded", (int)bad[i]);
            check_failed_code(OP_SIGN, &c, "invalid alg");
        }
    }
}

static void test_sha256_fallback(void **state)
{
    (void)state;
    uint8_t out[LK_SHA256_BYTES + 8], want[LK_SHA256_BYTES];
    uint8_t msg[300];
    uint64_t seed = 1;
    lk_test_rand_bytes(&seed, msg, sizeof msg);
    mock m;
    mock_reset(&m);

    /* no hash engine: the core's SHA-256 */
    lk_se se = { &empty_ops, &m };
    for (size_t n = 0; n <= sizeof msg; n += 37) {
        memset(out, FILL, sizeof out);
        assert_int_equal(lk_se_sha256(&se, msg, n, out), LK_OK);
        SHA256(msg, n, want);
        assert_memory_equal(out, want, sizeof want);
        assert_true(lk_test_all_bytes(out + LK_SHA256_BYTES, 8, FILL));
    }
    assert_int_equal(m.calls, 0);

    /* with an engine: the engine's answer */
    lk_se eng = { &full_ops, &m };
    memset(out, FILL, sizeof out);
    assert_int_equal(lk_se_sha256(&eng, msg, 3, out), LK_OK);
    assert_int_equal(m.calls, 1);
    assert_int_equal(out[0], 0x11);
    assert_int_equal(out[31], 0x11 + 31);
}

/* ---- P-256 SubjectPublicKeyInfo --------------------------------------- */

static EVP_PKEY *gen_ec(const char *curve)
{
    EVP_PKEY *k = EVP_EC_gen(curve);
    assert_non_null(k);
    return k;
}

static void point_of(EVP_PKEY *k, uint8_t point[LK_P256_POINT_BYTES])
{
    size_t len = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                     LK_P256_POINT_BYTES, &len), 1);
    assert_int_equal(len, LK_P256_POINT_BYTES);
    assert_int_equal(point[0], 0x04);
}

static void test_spki_from_point_matches_openssl(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        EVP_PKEY *k = gen_ec("P-256");
        uint8_t point[LK_P256_POINT_BYTES];
        point_of(k, point);

        uint8_t spki[LK_P256_SPKI_BYTES + 16];
        memset(spki, FILL, sizeof spki);
        size_t len = 0;
        assert_int_equal(lk_p256_spki_from_point(point, spki, sizeof spki, &len), LK_OK);
        assert_int_equal(len, LK_P256_SPKI_BYTES);
        assert_true(lk_test_all_bytes(spki + len, sizeof spki - len, FILL));

        /* byte-identical to OpenSSL's own encoding */
        unsigned char *der = NULL;
        int der_len = i2d_PUBKEY(k, &der);
        assert_int_equal(der_len, LK_P256_SPKI_BYTES);
        assert_memory_equal(spki, der, LK_P256_SPKI_BYTES);
        OPENSSL_free(der);

        /* and OpenSSL parses it back to the same point, as P-256 */
        const unsigned char *p = spki;
        EVP_PKEY *back = d2i_PUBKEY(NULL, &p, (long)len);
        assert_non_null(back);
        assert_ptr_equal(p, spki + len);
        char group[32] = "";
        size_t glen = 0;
        assert_int_equal(EVP_PKEY_get_utf8_string_param(back, OSSL_PKEY_PARAM_GROUP_NAME,
                                                        group, sizeof group, &glen), 1);
        assert_string_equal(group, "prime256v1");
        uint8_t point2[LK_P256_POINT_BYTES];
        point_of(back, point2);
        assert_memory_equal(point, point2, sizeof point);
        assert_int_equal(EVP_PKEY_eq(k, back), 1);

        /* and the reverse function gives the point */
        uint8_t point3[LK_P256_POINT_BYTES];
        assert_int_equal(lk_p256_point_from_spki(spki, len, point3), LK_OK);
        assert_memory_equal(point, point3, sizeof point);

        EVP_PKEY_free(back);
        EVP_PKEY_free(k);
    }
}

static void test_spki_from_point_buffers(void **state)
{
    (void)state;
    EVP_PKEY *k = gen_ec("P-256");
    uint8_t point[LK_P256_POINT_BYTES];
    point_of(k, point);
    EVP_PKEY_free(k);
    uint8_t out[LK_P256_SPKI_BYTES + 16];
    for (size_t size = 0; size < LK_P256_SPKI_BYTES; size++) {
        memset(out, FILL, sizeof out);
        size_t len = 99;
        lk_err err = lk_p256_spki_from_point(point, out, size, &len);
        if (err != LK_ERR_BUFFER && !(size == 0 && err == LK_ERR_ARG))
            fail_msg("spki_from_point into %zu bytes = %d, expected LK_ERR_BUFFER", size, err);
        assert_int_equal(len, 0);
        assert_true(lk_test_all_bytes(out + size, sizeof out - size, FILL));
    }
    size_t len = 99;
    assert_int_equal(lk_p256_spki_from_point(NULL, out, sizeof out, &len), LK_ERR_ARG);
    assert_int_equal(len, 0);
    assert_int_equal(lk_p256_spki_from_point(point, NULL, sizeof out, &len), LK_ERR_ARG);
    assert_int_equal(lk_p256_spki_from_point(point, out, sizeof out, NULL), LK_ERR_ARG);
}

static void test_point_from_spki_rejects(void **state)
{
    (void)state;
    EVP_PKEY *k = gen_ec("P-256");
    unsigned char *der = NULL;
    int der_len = i2d_PUBKEY(k, &der);
    assert_int_equal(der_len, LK_P256_SPKI_BYTES);
    uint8_t spki[LK_P256_SPKI_BYTES + 1];
    memcpy(spki, der, LK_P256_SPKI_BYTES);
    OPENSSL_free(der);
    uint8_t point[LK_P256_POINT_BYTES];
    assert_int_equal(lk_p256_point_from_spki(spki, LK_P256_SPKI_BYTES, point), LK_OK);

    /* any change to the fixed part (26 bytes of DER header and the 0x04) */
    for (size_t i = 0; i <= 26; i++) {
        for (int bit = 0; bit < 8; bit++) {
            spki[i] ^= (uint8_t)(1u << bit);
            if (lk_p256_point_from_spki(spki, LK_P256_SPKI_BYTES, point) == LK_OK)
                fail_msg("point_from_spki accepted byte %zu flipped at bit %d", i, bit);
            spki[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* any other length: truncations and a trailing byte */
    for (size_t n = 0; n < LK_P256_SPKI_BYTES; n++)
        if (lk_p256_point_from_spki(spki, n, point) == LK_OK)
            fail_msg("point_from_spki accepted %zu bytes", n);
    spki[LK_P256_SPKI_BYTES] = 0;
    assert_int_not_equal(lk_p256_point_from_spki(spki, LK_P256_SPKI_BYTES + 1, point), LK_OK);
    /* NULL arguments */
    assert_int_equal(lk_p256_point_from_spki(NULL, LK_P256_SPKI_BYTES, point), LK_ERR_ARG);
    assert_int_equal(lk_p256_point_from_spki(spki, LK_P256_SPKI_BYTES, NULL), LK_ERR_ARG);

    /* other valid SPKIs: compressed P-256, P-384, RSA */
    assert_int_equal(EVP_PKEY_set_utf8_string_param(k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                                    "compressed"), 1);
    der = NULL;
    der_len = i2d_PUBKEY(k, &der);
    assert_true(der_len > 0 && (size_t)der_len < LK_P256_SPKI_BYTES);
    assert_int_not_equal(lk_p256_point_from_spki(der, (size_t)der_len, point), LK_OK);
    OPENSSL_free(der);
    EVP_PKEY_free(k);

    EVP_PKEY *k384 = gen_ec("P-384");
    der = NULL;
    der_len = i2d_PUBKEY(k384, &der);
    assert_true(der_len > 0);
    assert_int_not_equal(lk_p256_point_from_spki(der, (size_t)der_len, point), LK_OK);
    /* and its first 91 bytes are not a P-256 SPKI either */
    assert_int_not_equal(lk_p256_point_from_spki(der, LK_P256_SPKI_BYTES, point), LK_OK);
    OPENSSL_free(der);
    EVP_PKEY_free(k384);

    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    assert_non_null(rsa);
    der = NULL;
    der_len = i2d_PUBKEY(rsa, &der);
    assert_true((size_t)der_len > LK_P256_SPKI_BYTES);
    assert_int_not_equal(lk_p256_point_from_spki(der, (size_t)der_len, point), LK_OK);
    assert_int_not_equal(lk_p256_point_from_spki(der, LK_P256_SPKI_BYTES, point), LK_OK);
    OPENSSL_free(der);
    EVP_PKEY_free(rsa);
}

/* ---- names and strings ------------------------------------------------- */

static void test_alg_names(void **state)
{
    (void)state;
    assert_string_equal(lk_alg_name(LK_ALG_ES256), "ES256");
    assert_string_equal(lk_alg_name(LK_ALG_RS256), "RS256");
    assert_string_equal(lk_alg_name(LK_ALG_NONE), "none");
    assert_string_equal(lk_alg_name((lk_alg)3), "none");
    assert_string_equal(lk_alg_name((lk_alg)-1), "none");

    assert_int_equal(lk_alg_from_name("ES256", 5), LK_ALG_ES256);
    assert_int_equal(lk_alg_from_name("RS256", 5), LK_ALG_RS256);
    /* not NUL-terminated: only len bytes count */
    assert_int_equal(lk_alg_from_name("ES256xyz", 5), LK_ALG_ES256);
    assert_int_equal(lk_alg_from_name("RS256\"}", 5), LK_ALG_RS256);

    static const struct { const char *s; size_t n; } bad[] = {
        { "es256", 5 }, { "Es256", 5 }, { "ES256 ", 6 }, { " ES256", 6 }, { "ES256", 4 },
        { "ES256", 6 } /* with its NUL */, { "ES2\0""56", 6 }, { "ES\0""256", 6 },
        { "ES256\0", 6 }, { "\0ES256", 6 }, { "ES2566", 6 }, { "ES25", 4 }, { "RS512", 5 },
        { "HS256", 5 }, { "PS256", 5 }, { "ES384", 5 }, { "none", 4 }, { "None", 4 },
        { "", 0 }, { "ES256", 0 }, { "rs256", 5 }, { "E\xd0\x85""256", 6 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lk_alg_from_name(bad[i].s, bad[i].n) != LK_ALG_NONE)
            fail_msg("lk_alg_from_name(case %zu, len %zu) accepted", i, bad[i].n);
    assert_int_equal(lk_alg_from_name(NULL, 0), LK_ALG_NONE);
    assert_int_equal(lk_alg_from_name(NULL, 5), LK_ALG_NONE);
}

static const struct { lk_err err; const char *name; } error_table[] = {
    { LK_OK, "LK_OK" },
    { LK_ERR_ARG, "LK_ERR_ARG" },
    { LK_ERR_BUFFER, "LK_ERR_BUFFER" },
    { LK_ERR_STATE, "LK_ERR_STATE" },
    { LK_ERR_UNSUPPORTED, "LK_ERR_UNSUPPORTED" },
    { LK_ERR_ENCODING, "LK_ERR_ENCODING" },
    { LK_ERR_CLAIM_NAME, "LK_ERR_CLAIM_NAME" },
    { LK_ERR_CLAIM_DUP, "LK_ERR_CLAIM_DUP" },
    { LK_ERR_TOO_MANY, "LK_ERR_TOO_MANY" },
    { LK_ERR_KEY_NOT_FOUND, "LK_ERR_KEY_NOT_FOUND" },
    { LK_ERR_KEY_EXISTS, "LK_ERR_KEY_EXISTS" },
    { LK_ERR_KEY_TYPE, "LK_ERR_KEY_TYPE" },
    { LK_ERR_KEY_LOCKED, "LK_ERR_KEY_LOCKED" },
    { LK_ERR_SIGN, "LK_ERR_SIGN" },
    { LK_ERR_RNG, "LK_ERR_RNG" },
    { LK_ERR_DEVICE, "LK_ERR_DEVICE" },
    { LK_ERR_MODULE, "LK_ERR_MODULE" },
    { LK_ERR_URI, "LK_ERR_URI" },
    { LK_ERR_KEY_WEAK, "LK_ERR_KEY_WEAK" },
    { LK_ERR_IO, "LK_ERR_IO" },
    { LK_ERR_STORE_CORRUPT, "LK_ERR_STORE_CORRUPT" },
    { LK_ERR_STORE_FOREIGN, "LK_ERR_STORE_FOREIGN" },
    { LK_ERR_STORE_PERMS, "LK_ERR_STORE_PERMS" },
    { LK_ERR_NOMEM, "LK_ERR_NOMEM" },
    { LK_ERR_CRYPTO, "LK_ERR_CRYPTO" },
    { LK_ERR_STORE_MISSING, "LK_ERR_STORE_MISSING" },
    { LK_ERR_FILE_MISSING, "LK_ERR_FILE_MISSING" },
    { LK_ERR_FILE_UNUSABLE, "LK_ERR_FILE_UNUSABLE" },
    { LK_ERR_TOKEN_TOO_LARGE, "LK_ERR_TOKEN_TOO_LARGE" },
    { LK_ERR_TOKEN_MALFORMED, "LK_ERR_TOKEN_MALFORMED" },
    { LK_ERR_TOKEN_ALG, "LK_ERR_TOKEN_ALG" },
    { LK_ERR_TOKEN_HEADER, "LK_ERR_TOKEN_HEADER" },
    { LK_ERR_TOKEN_CLAIM, "LK_ERR_TOKEN_CLAIM" },
    { LK_ERR_TOKEN_AUDIENCE, "LK_ERR_TOKEN_AUDIENCE" },
    { LK_ERR_TOKEN_EXPIRED, "LK_ERR_TOKEN_EXPIRED" },
    { LK_ERR_TOKEN_FUTURE, "LK_ERR_TOKEN_FUTURE" },
    { LK_ERR_TOKEN_LIFETIME, "LK_ERR_TOKEN_LIFETIME" },
    { LK_ERR_TOKEN_SIGNATURE, "LK_ERR_TOKEN_SIGNATURE" },
    { LK_ERR_NO_CREDENTIAL, "LK_ERR_NO_CREDENTIAL" },
    { LK_ERR_CRED_INVALID, "LK_ERR_CRED_INVALID" },
    { LK_ERR_REG_NOT_FOUND, "LK_ERR_REG_NOT_FOUND" },
    { LK_ERR_REG_EXISTS, "LK_ERR_REG_EXISTS" },
    { LK_ERR_REG_CONFLICT, "LK_ERR_REG_CONFLICT" },
    { LK_ERR_REG_LIMIT, "LK_ERR_REG_LIMIT" },
    { LK_ERR_REG_INVALID, "LK_ERR_REG_INVALID" },
    { LK_ERR_REG_CERT, "LK_ERR_REG_CERT" },
    { LK_ERR_REG_NOT_EMPTY, "LK_ERR_REG_NOT_EMPTY" },
    { LK_ERR_REG_BUSY, "LK_ERR_REG_BUSY" },
    { LK_ERR_REG_STORAGE, "LK_ERR_REG_STORAGE" },
    { LK_ERR_REG_SCHEMA, "LK_ERR_REG_SCHEMA" },
    { LK_ERR_NET, "LK_ERR_NET" },
    { LK_ERR_TLS, "LK_ERR_TLS" },
    { LK_ERR_REFUSED, "LK_ERR_REFUSED" },
    { LK_ERR_QUEUE_FULL, "LK_ERR_QUEUE_FULL" },
    { LK_ERR_TOO_LARGE, "LK_ERR_TOO_LARGE" },
    { LK_ERR_TIMEOUT, "LK_ERR_TIMEOUT" },
};
#define N_ERRORS (sizeof error_table / sizeof error_table[0])

static int is_known(int v)
{
    for (size_t i = 0; i < N_ERRORS; i++)
        if ((int)error_table[i].err == v)
            return 1;
    return 0;
}

static void test_error_strings(void **state)
{
    (void)state;
    /* the ABI values */
    assert_int_equal(LK_OK, 0);
    assert_int_equal(LK_ERR_ARG, 1);
    assert_int_equal(LK_ERR_ENCODING, 10);
    assert_int_equal(LK_ERR_KEY_NOT_FOUND, 20);
    assert_int_equal(LK_ERR_KEY_WEAK, 29);
    assert_int_equal(LK_ERR_IO, 40);
    assert_int_equal(LK_ERR_CRYPTO, 45);
    assert_int_equal(LK_ERR_FILE_MISSING, 47);
    assert_int_equal(LK_ERR_FILE_UNUSABLE, 48);
    assert_int_equal(LK_ERR_NET, 100);
    assert_int_equal(LK_ERR_TIMEOUT, 105);
    /* every code below LK_ERR__END is in the table above (update it when
     * a code is appended) */
    assert_int_equal(LK_ERR__END, (int)error_table[N_ERRORS - 1].err + 1);

    for (size_t i = 0; i < N_ERRORS; i++) {
        const char *s = lk_strerror(error_table[i].err);
        const char *n = lk_errname(error_table[i].err);
        assert_non_null(s);
        assert_non_null(n);
        assert_true(strlen(s) > 0);
        assert_string_equal(n, error_table[i].name);
        if (strcmp(s, "unknown error") == 0)
            fail_msg("lk_strerror(%s) is \"unknown error\"", error_table[i].name);
        /* each code has its own sentence */
        for (size_t j = 0; j < i; j++)
            if (strcmp(s, lk_strerror(error_table[j].err)) == 0)
                fail_msg("%s and %s share the sentence \"%s\"", error_table[i].name,
                         error_table[j].name, s);
    }
    /* unknown values: the gaps, the end marker, beyond, negative */
    static const int unknown[] = { 5, 9, 14, 19, 30, 39, 49, 59, 72, 79, 90, 99, LK_ERR__END, LK_ERR__END + 1,
                                   1000, 0x7fffffff, -1, -46 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = lk_strerror((lk_err)unknown[i]);
        const char *n = lk_errname((lk_err)unknown[i]);
        assert_non_null(s);
        assert_non_null(n);
        assert_string_equal(s, "unknown error");
        assert_true(strlen(n) > 0);
    }
    for (int v = -10; v < 300; v++) {
        const char *s = lk_strerror((lk_err)v);
        assert_non_null(s);
        assert_non_null(lk_errname((lk_err)v));
        if (!is_known(v))
            assert_string_equal(s, "unknown error");
    }
}

/* ---- memory helpers --------------------------------------------------- */

static void test_ct_equal(void **state)
{
    (void)state;
    uint8_t a[100], b[100];
    uint64_t seed = 3;
    lk_test_rand_bytes(&seed, a, sizeof a);
    memcpy(b, a, sizeof b);
    assert_int_equal(lk_ct_equal(a, b, sizeof a), 1);
    assert_int_equal(lk_ct_equal(a, b, 0), 1);
    assert_int_equal(lk_ct_equal(a, a, sizeof a), 1);
    for (size_t i = 0; i < sizeof a; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(lk_ct_equal(a, b, sizeof a), 0);
            assert_int_equal(lk_ct_equal(a, b, i + 1), 0);
            assert_int_equal(lk_ct_equal(a, b, i), 1); /* the prefix before it */
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* 0x00 vs 0x80, 0xff vs 0x7f (sign-bit mistakes) */
    assert_int_equal(lk_ct_equal("\x00", "\x80", 1), 0);
    assert_int_equal(lk_ct_equal("\xff", "\x7f", 1), 0);
    assert_int_equal(lk_ct_equal("\x01\x00", "\x00\x01", 2), 0);
}

static void test_wipe(void **state)
{
    (void)state;
    uint8_t buf[64];
    memset(buf, FILL, sizeof buf);
    lk_wipe(buf + 8, 40);
    assert_true(lk_test_all_bytes(buf, 8, FILL));
    assert_true(lk_test_all_bytes(buf + 8, 40, 0));
    assert_true(lk_test_all_bytes(buf + 48, 16, FILL));
    lk_wipe(buf, 0);
    assert_int_equal(buf[0], FILL);
    lk_wipe(NULL, 0);
    lk_wipe(buf + 1, 1);
    assert_int_equal(buf[1], 0);
    assert_int_equal(buf[2], FILL);
}

static void test_strnlen(void **state)
{
    (void)state;
    assert_int_equal(lk_strnlen("abc", 10), 3);
    assert_int_equal(lk_strnlen("abc", 3), 3);
    assert_int_equal(lk_strnlen("abc", 2), 2);
    assert_int_equal(lk_strnlen("", 5), 0);
    assert_int_equal(lk_strnlen("abc", 0), 0);
    /* never reads past max: the string ends at an unmapped page */
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(map != MAP_FAILED);
    assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
    char *s = (char *)map + page - 10;
    memset(s, 'x', 10);
    assert_int_equal(lk_strnlen(s, 10), 10);
    assert_int_equal(lk_strnlen(s + 10, 0), 0);
    munmap(map, 2 * (size_t)page);
}

/* ---- lk_key_ref_redact ------------------------------------------------ */

static void expect_redact(const char *in, const char *want)
{
    char out[512];
    size_t n = lk_key_ref_redact(in, out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("redact(%s): got '%s', want '%s'", in, out, want);
    assert_int_equal(n, strlen(want));
}

static void test_key_ref_redact(void **state)
{
    (void)state;
    /* The PIN goes; everything public stays, the separators too. */
    expect_redact("pkcs11:token=t;object=o?module-path=/usr/lib/m.so&pin-value=1234",
                  "pkcs11:token=t;object=o?module-path=/usr/lib/m.so&pin-value=***");
    expect_redact("pkcs11:token=t?pin-value=1234&module-path=/m.so",
                  "pkcs11:token=t?pin-value=***&module-path=/m.so");
    /* pin-source is a file name (RFC 7512): shown. */
    expect_redact("pkcs11:object=o?pin-source=file:/etc/latchkey/pin",
                  "pkcs11:object=o?pin-source=file:/etc/latchkey/pin");
    /* Every public attribute, percent-escapes kept as written. */
    expect_redact("pkcs11:token=a%20b;manufacturer=m;serial=s;model=x;library-manufacturer=l;"
                  "library-description=d;library-version=2.40;slot-manufacturer=sm;"
                  "slot-description=sd;slot-id=3;object=o;id=%01%a2;type=private"
                  "?module-path=/m.so&module-name=n",
                  "pkcs11:token=a%20b;manufacturer=m;serial=s;model=x;library-manufacturer=l;"
                  "library-description=d;library-version=2.40;slot-manufacturer=sm;"
                  "slot-description=sd;slot-id=3;object=o;id=%01%a2;type=private"
                  "?module-path=/m.so&module-name=n");
    /* The scheme in any case; a PIN given twice; in the path; empty. */
    expect_redact("PKCS11:token=t?pin-value=1234", "PKCS11:token=t?pin-value=***");
    expect_redact("pkcs11:?pin-value=1&pin-value=2", "pkcs11:?pin-value=***&pin-value=***");
    expect_redact("pkcs11:pin-value=1234;token=t", "pkcs11:pin-value=***;token=t");
    expect_redact("pkcs11:token=t?pin-value=", "pkcs11:token=t?pin-value=***");
    /* In the query, ';' and '?' belong to the value: the whole PIN goes. */
    expect_redact("pkcs11:token=t?pin-value=12;34?56/78", "pkcs11:token=t?pin-value=***");
    /* Fail closed: unknown, vendor, misspelt or re-cased names, and a
     * segment without '=', are hidden. */
    expect_redact("pkcs11:token=t?x-secret=s&pin-vlaue=1234&Pin-Value=9&PIN",
                  "pkcs11:token=t?x-secret=***&pin-vlaue=***&Pin-Value=***&***");
    expect_redact("pkcs11:1234", "pkcs11:***");
    expect_redact("pkcs11:token=t; object=o", "pkcs11:token=t; object=***");
    /* Not a pkcs11: URI but with '=': the same rules from the first byte. */
    expect_redact("pkcs11;token=t;object=o?pin-value=1234", "***;token=t;object=o?pin-value=***");
    expect_redact(" pkcs11:token=t?pin-value=1234", " pkcs11:token=***?pin-value=***");
    expect_redact("--kye=pkcs11:token=t?pin-value=1234", "--kye=***?pin-value=***");
    /* A software key store name, and the empty or missing reference. */
    expect_redact("device-42", "device-42");
    expect_redact("bad/name with spaces", "bad/name with spaces");
    expect_redact("pkcs11:", "pkcs11:");
    expect_redact("", "");
    expect_redact(NULL, "");

    /* Cut short: NUL-terminated, the full length returned, no secret. */
    {
        const char *in = "pkcs11:token=t?pin-value=SECRETPIN&module-path=/m.so";
        char small[20];
        size_t full = strlen("pkcs11:token=t?pin-value=***&module-path=/m.so"), n, cut;
        for (cut = 0; cut <= sizeof small; cut++) {
            memset(small, 'Z', sizeof small);
            n = lk_key_ref_redact(in, small, cut);
            assert_int_equal(n, full);
            if (cut > 0) {
                assert_int_equal(strlen(small), cut - 1);
                assert_null(strstr(small, "SECRET"));
                assert_null(strstr(small, "S"));
            } else {
                assert_int_equal(small[0], 'Z'); /* nothing written */
            }
        }
        assert_int_equal(lk_key_ref_redact(in, NULL, 0), full);
    }
    /* Long input: no limit on what is read. */
    {
        static char big[20000], out[64];
        memset(big, 'a', sizeof big - 1);
        memcpy(big, "pkcs11:object=", 14);
        memcpy(big + sizeof big - 15, "&pin-value=XYZ", 14);
        big[sizeof big - 16] = '?';
        assert_int_equal(lk_key_ref_redact(big, out, sizeof out), sizeof big - 1 - 3 + 3);
        assert_int_equal(strlen(out), sizeof out - 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_se_and_ops),
        cmocka_unit_test(test_missing_ops_unsupported),
        cmocka_unit_test(test_key_reference_checks),
        cmocka_unit_test(test_key_reference_bounded_read),
        cmocka_unit_test(test_null_outputs),
        cmocka_unit_test(test_argument_failures_wipe),
        cmocka_unit_test(test_outputs_wiped_on_backend_failure),
        cmocka_unit_test(test_backend_overlong_length),
        cmocka_unit_test(test_es256_signature_checks),
        cmocka_unit_test(test_es256_nonzero_anywhere),
        cmocka_unit_test(test_rs256_signature_checks),
        cmocka_unit_test(test_sign_invalid_alg),
        cmocka_unit_test(test_sha256_fallback),
        cmocka_unit_test(test_spki_from_point_matches_openssl),
        cmocka_unit_test(test_spki_from_point_buffers),
        cmocka_unit_test(test_point_from_spki_rejects),
        cmocka_unit_test(test_alg_names),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_wipe),
        cmocka_unit_test(test_strnlen),
        cmocka_unit_test(test_key_ref_redact),
    };
    return cmocka_run_group_tests_name("se", tests, NULL, NULL);
}
