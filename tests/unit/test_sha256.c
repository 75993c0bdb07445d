/*
 * test_sha256.c — the core's SHA-256 (lk_sha256.h): FIPS 180-4 / NIST
 * examples, streaming ≡ one-shot at every split point, and a cross-check
 * against OpenSSL at every length up to 1000 (the padding boundaries 55, 56,
 * 63, 64, 65 and their multiples included).
 */
#include "lk_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "latchkey/lk_sha256.h"

static void check_hex(const uint8_t got[LK_SHA256_BYTES], const char *hex, const char *what)
{
    uint8_t want[LK_SHA256_BYTES];
    assert_int_equal(lk_test_hex2bin(hex, want, sizeof want), 0);
    if (memcmp(got, want, sizeof want) != 0) {
        char shown[2 * LK_SHA256_BYTES + 1];
        for (size_t i = 0; i < LK_SHA256_BYTES; i++)
            snprintf(shown + 2 * i, 3, "%02x", got[i]);
        fail_msg("SHA-256(%s) = %s, expected %s", what, shown, hex);
    }
}

/* One-shot, and streaming one byte at a time, both give hex. */
static void check_message(const void *msg, size_t len, const char *hex, const char *what)
{
    uint8_t out[LK_SHA256_BYTES];
    lk_sha256(msg, len, out);
    check_hex(out, hex, what);

    lk_sha256_ctx ctx;
    lk_sha256_init(&ctx);
    for (size_t i = 0; i < len; i++)
        lk_sha256_update(&ctx, (const uint8_t *)msg + i, 1);
    memset(out, 0, sizeof out);
    lk_sha256_final(&ctx, out);
    check_hex(out, hex, what);
}

static void test_fips180_examples(void **state)
{
    (void)state;
    check_message("abc", 3,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "abc");
    check_message("", 0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "\"\"");
    static const char m448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_int_equal(strlen(m448) * 8, 448);
    check_message(m448, strlen(m448),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "448-bit");
    static const char m896[] = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                               "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    assert_int_equal(strlen(m896) * 8, 896);
    check_message(m896, strlen(m896),
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", "896-bit");
}

/* NIST's "additional SHA-256 examples" (byte-oriented). */
static void test_nist_additional_examples(void **state)
{
    (void)state;
    uint8_t *buf = malloc(1005);
    assert_non_null(buf);
    check_message("\xbd", 1,
        "68325720aabd7c82f30f554b313d0570c95accbb7dc4b5aae11204c08ffe732b", "bd");
    check_message("\xc9\x8c\x8e\x55", 4,
        "7abc22c0ae5af26ce93dbb94433a0e0b2e119d014f8e7f65bd56c61ccccd9504", "c98c8e55");
    memset(buf, 0, 1005);
    check_message(buf, 55,
        "02779466cdec163811d078815c633f21901413081449002f24aa3e80f0b88ef7", "55 zeros");
    check_message(buf, 56,
        "d4817aa5497628e7c77e6b606107042bbba3130888c5f47a375e6179be789fbb", "56 zeros");
    check_message(buf, 1000,
        "541b3e9daa09b20bf85fa273e5cbd3e80185aa4ec298e765db87742b70138a53", "1000 zeros");
    memset(buf, 'A', 1000);
    check_message(buf, 1000,
        "c2e686823489ced2017f6059b8b239318b6364f6dcd835d0a519105a1eadd6e4", "1000 A");
    memset(buf, 'U', 1005);
    check_message(buf, 1005,
        "f4d62ddec0f3dd90ea1380fa16a5ff8dc4c54b21740650f24afc4120903552b0", "1005 U");
    free(buf);
}

static void test_million_a(void **state)
{
    (void)state;
    static const char *want =
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    const size_t n = 1000000;
    char *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    uint8_t out[LK_SHA256_BYTES];
    lk_sha256(a, n, out);
    check_hex(out, want, "one million 'a' (one-shot)");

    /* streamed in uneven chunks that straddle block boundaries */
    static const size_t chunks[] = { 1, 63, 64, 65, 127, 1000, 4096, 7 };
    lk_sha256_ctx ctx;
    lk_sha256_init(&ctx);
    size_t done = 0, k = 0;
    while (done < n) {
        size_t c = chunks[k++ % (sizeof chunks / sizeof chunks[0])];
        if (c > n - done)
            c = n - done;
        lk_sha256_update(&ctx, a + done, c);
        done += c;
    }
    lk_sha256_final(&ctx, out);
    check_hex(out, want, "one million 'a' (streamed)");
    free(a);
}

static void test_streaming_every_split(void **state)
{
    (void)state;
    uint8_t msg[200], one[LK_SHA256_BYTES], two[LK_SHA256_BYTES];
    uint64_t seed = 200;
    lk_test_rand_bytes(&seed, msg, sizeof msg);
    lk_sha256(msg, sizeof msg, one);
    SHA256(msg, sizeof msg, two);
    assert_memory_equal(one, two, sizeof one);

    for (size_t i = 0; i <= sizeof msg; i++) {
        lk_sha256_ctx ctx;
        lk_sha256_init(&ctx);
        lk_sha256_update(&ctx, msg, i);
        lk_sha256_update(&ctx, msg + i, sizeof msg - i);
        lk_sha256_final(&ctx, two);
        if (memcmp(one, two, sizeof one) != 0)
            fail_msg("split at %zu differs from one-shot", i);
    }
    /* three pieces, every pair of split points (with empty updates) */
    for (size_t i = 0; i <= sizeof msg; i++) {
        for (size_t j = i; j <= sizeof msg; j += 3) {
            lk_sha256_ctx ctx;
            lk_sha256_init(&ctx);
            lk_sha256_update(&ctx, msg, i);
            lk_sha256_update(&ctx, msg + i, 0);
            lk_sha256_update(&ctx, msg + i, j - i);
            lk_sha256_update(&ctx, msg + j, sizeof msg - j);
            lk_sha256_final(&ctx, two);
            if (memcmp(one, two, sizeof one) != 0)
                fail_msg("splits at %zu,%zu differ from one-shot", i, j);
        }
    }
}

static void test_against_openssl(void **state)
{
    (void)state;
    uint8_t *msg = malloc(1000);
    assert_non_null(msg);
    uint64_t seed = 0x5eed;
    lk_test_rand_bytes(&seed, msg, 1000);
    uint8_t a[LK_SHA256_BYTES], b[LK_SHA256_BYTES];

    for (size_t len = 0; len <= 1000; len++) {
        lk_sha256(msg, len, a);
        SHA256(msg, len, b);
        if (memcmp(a, b, sizeof a) != 0)
            fail_msg("one-shot SHA-256 of %zu bytes differs from OpenSSL", len);
    }
    /* random lengths and random chunking, fresh random data each time */
    for (int round = 0; round < 500; round++) {
        size_t len = (size_t)(lk_test_rand64(&seed) % 1001);
        if (round < 15) {
            static const size_t edges[] = { 55, 56, 57, 63, 64, 65, 119, 120,
                                            127, 128, 129, 0, 1, 999, 1000 };
            len = edges[round];
        }
        lk_test_rand_bytes(&seed, msg, len);
        SHA256(msg, len, b);
        lk_sha256_ctx ctx;
        lk_sha256_init(&ctx);
        size_t done = 0;
        while (done < len) {
            size_t c = (size_t)(lk_test_rand64(&seed) % 130);
            if (c > len - done)
                c = len - done;
            lk_sha256_update(&ctx, msg + done, c);
            done += c;
        }
        lk_sha256_final(&ctx, a);
        if (memcmp(a, b, sizeof a) != 0)
            fail_msg("streamed SHA-256 of %zu bytes differs from OpenSSL", len);
    }
    free(msg);
}

static void test_final_wipes_context(void **state)
{
    (void)state;
    lk_sha256_ctx ctx;
    uint8_t out[LK_SHA256_BYTES];
    lk_sha256_init(&ctx);
    lk_sha256_update(&ctx, "secret material, 37 bytes of it .....", 37);
    lk_sha256_final(&ctx, out);
    assert_true(lk_test_all_bytes(ctx.h, sizeof ctx.h, 0));
    assert_true(ctx.total == 0);
    assert_true(lk_test_all_bytes(ctx.block, sizeof ctx.block, 0));
    assert_int_equal(ctx.used, 0);

    /* a context is reusable after init */
    lk_sha256_init(&ctx);
    lk_sha256_update(&ctx, "abc", 3);
    lk_sha256_final(&ctx, out);
    check_hex(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
              "abc after reuse");
}

/* 2^29 bytes: the message length in bits passes 2^32, so a 32-bit bit
 * counter would give a wrong length block. */
static void test_length_past_32_bits(void **state)
{
    (void)state;
    const size_t chunk = 1u << 16;
    const size_t total = (1u << 29) + 3;
    uint8_t *buf = malloc(chunk);
    assert_non_null(buf);
    uint64_t seed = 29;
    lk_test_rand_bytes(&seed, buf, chunk);
    EVP_MD_CTX *ref = EVP_MD_CTX_new();
    assert_non_null(ref);
    assert_int_equal(EVP_DigestInit_ex(ref, EVP_sha256(), NULL), 1);
    lk_sha256_ctx ctx;
    lk_sha256_init(&ctx);
    for (size_t done = 0; done < total;) {
        size_t c = total - done < chunk ? total - done : chunk;
        lk_sha256_update(&ctx, buf, c);
        assert_int_equal(EVP_DigestUpdate(ref, buf, c), 1);
        done += c;
    }
    uint8_t a[LK_SHA256_BYTES], b[LK_SHA256_BYTES];
    lk_sha256_final(&ctx, a);
    assert_int_equal(EVP_DigestFinal_ex(ref, b, NULL), 1);
    EVP_MD_CTX_free(ref);
    assert_memory_equal(a, b, sizeof a);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips180_examples),
        cmocka_unit_test(test_nist_additional_examples),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_streaming_every_split),
        cmocka_unit_test(test_against_openssl),
        cmocka_unit_test(test_final_wipes_context),
        cmocka_unit_test(test_length_past_32_bits),
    };
    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
