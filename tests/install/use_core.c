/*
 * use_core.c — a program of a latchkey user, built by tests/install/run.sh
 * against an installed tree only (`pkg-config latchkey-core`), that calls
 * every function liblatchkey-core's headers declare. Its secure element is
 * its own: a table of operations whose "signature" is a fixed in-range r||s
 * (the core does no curve arithmetic, so it cannot tell).
 */
#include <stdio.h>
#include <string.h>

#include <latchkey/lk_b64url.h>
#include <latchkey/lk_error.h>
#include <latchkey/lk_iotcore.h>
#include <latchkey/lk_jwt.h>
#include <latchkey/lk_se.h>
#include <latchkey/lk_sha256.h>
#include <latchkey/lk_util.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "use_core.c:%d: %s\n", __LINE__, #cond);        \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static lk_err fake_public_key(void *ctx, const char *key, lk_alg *alg, uint8_t *pub,
                              size_t pub_size, size_t *pub_len)
{
    (void)ctx; (void)key; (void)alg; (void)pub; (void)pub_size; (void)pub_len;
    return LK_ERR_KEY_NOT_FOUND;
}

static lk_err fake_sign(void *ctx, const char *key, lk_alg alg, const uint8_t digest[LK_SHA256_BYTES],
                        uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    (void)ctx; (void)key; (void)digest;
    if (alg != LK_ALG_ES256 || sig_size < LK_ES256_SIG_BYTES)
        return LK_ERR_KEY_TYPE;
    memset(sig, 0x11, LK_ES256_SIG_BYTES);
    *sig_len = LK_ES256_SIG_BYTES;
    return LK_OK;
}

static lk_err fake_random(void *ctx, uint8_t *out, size_t len)
{
    (void)ctx;
    memset(out, 0x5a, len);
    return LK_OK;
}

static const lk_se_ops fake_ops = {
    .name = "fake",
    .public_key = fake_public_key,
    .sign_digest = fake_sign,
    .random = fake_random,
};

int main(void)
{
    lk_se se = {&fake_ops, NULL};
    uint8_t bytes[64], digest[32], digest2[32], sig[LK_ES256_SIG_BYTES], point[LK_P256_POINT_BYTES];
    uint8_t spki[LK_P256_SPKI_BYTES], pub[LK_PUBKEY_DER_MAX];
    char text[128], token[512], why[128];
    size_t n = 0, m = 0;
    lk_alg alg;
    lk_sha256_ctx ctx;
    lk_jwt jwt;

    /* lk_error.h */
    CHECK(strcmp(lk_errname(LK_ERR_ARG), "LK_ERR_ARG") == 0);
    CHECK(lk_strerror(LK_ERR_ARG)[0] != '\0');

    /* lk_util.h */
    memset(bytes, 1, sizeof bytes);
    lk_wipe(bytes, sizeof bytes);
    CHECK(bytes[0] == 0 && bytes[63] == 0);
    CHECK(lk_ct_equal("abc", "abc", 3) == 1 && lk_ct_equal("abc", "abd", 3) == 0);
    CHECK(lk_strnlen("abcdef", 4) == 4);
    CHECK(lk_utf8_seq((const uint8_t *)"\xc3\xa9", 2) == 2);
    CHECK(lk_utf8_valid("caf\xc3\xa9", 5) == 1 && lk_utf8_valid("\xff", 1) == 0);

    /* lk_b64url.h */
    CHECK(lk_b64url_encode((const uint8_t *)"hi!", 3, text, sizeof text, &n) == LK_OK);
    CHECK(n == 4 && memcmp(text, "aGkh", 4) == 0);
    CHECK(lk_b64url_decode(text, n, bytes, sizeof bytes, &m, 0) == LK_OK && m == 3);
    CHECK(lk_b64url_decode("a+b", 3, bytes, sizeof bytes, &m, 0) == LK_ERR_ENCODING);

    /* lk_sha256.h */
    lk_sha256_init(&ctx);
    lk_sha256_update(&ctx, "ab", 2);
    lk_sha256_update(&ctx, "c", 1);
    lk_sha256_final(&ctx, digest);
    lk_sha256("abc", 3, digest2);
    CHECK(memcmp(digest, digest2, 32) == 0 && digest[0] == 0xba && digest[31] == 0xad);

    /* lk_se.h */
    CHECK(strcmp(lk_alg_name(LK_ALG_RS256), "RS256") == 0);
    {
        char shown[128];
        lk_key_ref_redact("pkcs11:token=t?pin-value=1234", shown, sizeof shown);
        CHECK(strstr(shown, "1234") == NULL && strstr(shown, "token=t") != NULL);
    }
    CHECK(lk_alg_from_name("ES256", 5) == LK_ALG_ES256);
    CHECK(lk_se_generate(&se, "k", LK_ALG_ES256, 0, pub, sizeof pub, &n) == LK_ERR_UNSUPPORTED);
    CHECK(lk_se_public_key(&se, "k", &alg, pub, sizeof pub, &n) == LK_ERR_KEY_NOT_FOUND);
    CHECK(lk_se_sign_digest(&se, "k", LK_ALG_ES256, digest, sig, sizeof sig, &n) == LK_OK && n == 64);
    CHECK(lk_p256_sig_in_range(sig) == 1);
    CHECK(lk_se_random(&se, bytes, 16) == LK_OK && bytes[0] == 0x5a);
    CHECK(lk_se_sha256(&se, (const uint8_t *)"abc", 3, digest2) == LK_OK && memcmp(digest, digest2, 32) == 0);
    memset(point, 0x22, sizeof point);
    point[0] = 0x04;
    CHECK(lk_p256_spki_from_point(point, spki, sizeof spki, &n) == LK_OK && n == LK_P256_SPKI_BYTES);
    memset(point, 0, sizeof point);
    CHECK(lk_p256_point_from_spki(spki, n, point) == LK_OK && point[0] == 0x04 && point[1] == 0x22);
    CHECK(lk_ecdsa_der_to_raw((const uint8_t *)"\x30\x00", 2, sig) == LK_ERR_ENCODING);

    /* lk_jwt.h */
    lk_jwt_init(&jwt, LK_ALG_ES256, token, sizeof token);
    lk_jwt_add_claim_int(&jwt, "iat", 1700000000);
    lk_jwt_add_claim_int(&jwt, "exp", 1700003600);
    lk_jwt_add_claim_string(&jwt, "aud", "my-project", 10);
    CHECK(lk_jwt_finalize(&jwt, &se, "k", &n) == LK_OK && n == strlen(token));
    CHECK(strncmp(token, "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
    CHECK(lk_jwt_iotcore(&se, "k", LK_ALG_ES256, "my-project", 10, 1700000000, 1700003600, token,
                         sizeof token, &n) == LK_OK);
    {
        static const char *const x5c[] = {"QUJD"};
        static const size_t x5c_len[] = {4};
        lk_jwt_init_x5c(&jwt, LK_ALG_ES256, x5c, x5c_len, 1, token, sizeof token);
        lk_jwt_add_claim_int(&jwt, "iat", 1700000000);
        CHECK(lk_jwt_finalize(&jwt, &se, "k", &n) == LK_OK && n == strlen(token));
        CHECK(lk_jwt_iotcore_x5c(&se, "k", LK_ALG_ES256, "my-project", 10, 1700000000, 1700003600,
                                 x5c, x5c_len, 1, token, sizeof token, &n) == LK_OK);
    }
    CHECK(lk_jwt_iotcore(&se, "k", LK_ALG_ES256, "my-project", 10, 0, 90000, token, sizeof token,
                         &n) == LK_ERR_ARG);

    /* lk_iotcore.h */
    CHECK(strcmp(lk_time_rfc3339(0, text, sizeof text), "1970-01-01T00:00:00Z") == 0);
    CHECK(lk_id_valid("device-42", 9) == 1 && lk_id_valid("goog-1", 6) == 0);
    CHECK(lk_project_valid("my-project", 10) == 1);
    CHECK(lk_location_valid("us-central1", 11) == 1);
    CHECK(lk_metadata_key_valid("site", 4) == 1);
    CHECK(lk_subfolder_valid("a/b", 3) == 1 && lk_subfolder_valid("a/#", 3) == 0);
    CHECK(lk_id_why("device id", "1abc", 4, why, sizeof why) != NULL);
    CHECK(lk_id_why("device id", "abc", 3, why, sizeof why) == NULL);
    {
        char path[LK_DEVICE_PATH_MAX + 1], topic[LK_BACKEND_TOPIC_MAX + 1];
        const char *sub = NULL;
        lk_device_name name;
        uint8_t hash[LK_SHA256_BYTES];
        CHECK(lk_registry_path("my-project", "us-central1", "reg", path, sizeof path, &n) == LK_OK && n == 56);
        CHECK(lk_device_path("my-project", "us-central1", "reg", "dev", path, sizeof path, &n) == LK_OK);
        CHECK(lk_device_path_parse(path, n, &name) == LK_OK && strcmp(name.device, "dev") == 0);
        CHECK(lk_device_topic("dev", LK_TOPIC_EVENTS, "a", topic, sizeof topic, &n) == LK_OK &&
              strcmp(topic, "/devices/dev/events/a") == 0);
        CHECK(lk_device_topic_parse("dev", topic, n, &sub) == LK_TOPIC_EVENTS && strcmp(sub, "a") == 0);
        {
            char id[LK_ID_MAX + 1];
            CHECK(lk_device_topic_split(topic, n, id, &sub) == LK_TOPIC_EVENTS && strcmp(id, "dev") == 0);
            CHECK(lk_gateway_needs(3) == (LK_GATEWAY_NEEDS_BINDING | LK_GATEWAY_NEEDS_TOKEN));
            CHECK(lk_gateway_admit(1, 0, 1, NULL) == LK_ERR_REFUSED);
        }
        CHECK(lk_backend_topic(&name, LK_TOPIC_STATE, NULL, topic, sizeof topic, &n) == LK_OK &&
              strcmp(topic, "latchkey/my-project/us-central1/reg/dev/state") == 0);
        CHECK(lk_backend_topic_in_project("my-project", topic, n) == 20);
        {
            char routed[LK_ROUTED_TOPIC_MAX + 1];
            CHECK(lk_pubsub_name_valid("telemetry", 9) && !lk_pubsub_name_valid("goog-x", 6));
            CHECK(lk_routed_topic(&name, "telemetry", LK_TOPIC_EVENTS, "a", routed, sizeof routed, &n) == LK_OK &&
                  strcmp(routed, "latchkey/my-project/topics/telemetry/us-central1/reg/dev/events/a") == 0);
        }
        {
            char pres[LK_PRESENCE_TOPIC_MAX + 1];
            CHECK(lk_presence_topic(&name, pres, sizeof pres, &n) == LK_OK && n == 48 &&
                  strcmp(pres, "latchkey/my-project/presence/us-central1/reg/dev") == 0);
        }
        {
            char bridge[LK_BRIDGE_TOPIC_MAX + 1];
            lk_device_name back;
            CHECK(lk_bridge_topic(&name, LK_TOPIC_EVENTS, "a", bridge, sizeof bridge, &n) == LK_OK &&
                  strcmp(bridge, LK_BRIDGE_TOPIC_PREFIX "projects/my-project/locations/us-central1/registries/reg/devices/dev/events/a") == 0);
            CHECK(lk_bridge_topic_parse(bridge, n, &back, &sub) == LK_TOPIC_EVENTS && strcmp(sub, "a") == 0 &&
                  strcmp(back.device, "dev") == 0);
        }
        lk_backend_secret_hash("abc", 3, hash);
        CHECK(hash[0] == 0xba && hash[31] == 0xad);
    }

    if (failures) {
        fprintf(stderr, "use_core: %d checks failed\n", failures);
        return 1;
    }
    printf("use_core: every function of liblatchkey-core called\n");
    return 0;
}
