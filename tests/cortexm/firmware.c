/*
 * The smallest firmware that makes an IoT Core token: what a device linking
 * the core needs, and nothing else. bench/core_metrics.sh links it with
 * -nostdlib and --gc-sections and counts the bytes that came from the core's
 * objects (core_flash_bytes_cortex_m0plus). Never run; only linked.
 *
 * The signer stands in for a secure element's backend: it writes a fixed
 * non-zero 64-byte value, so only the core's code is measured.
 */
#include "latchkey/lk_jwt.h"

static lk_err fw_sign(void *ctx, const char *key, lk_alg alg,
                      const uint8_t digest[LK_SHA256_BYTES],
                      uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    size_t i;
    (void)ctx; (void)key; (void)alg; (void)sig_size;
    for (i = 0; i < LK_ES256_SIG_BYTES; i++)
        sig[i] = (uint8_t)(digest[i & 31u] | 1u);
    *sig_len = LK_ES256_SIG_BYTES;
    return LK_OK;
}

static lk_err fw_public_key(void *ctx, const char *key, lk_alg *alg,
                            uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    (void)ctx; (void)key; (void)alg; (void)pub; (void)pub_size; (void)pub_len;
    return LK_ERR_UNSUPPORTED;
}

static const lk_se_ops fw_ops = {.name = "fw", .public_key = fw_public_key, .sign_digest = fw_sign};
static const lk_se fw_se = {&fw_ops, 0};

/* Volatile so that nothing is optimised away. */
volatile lk_err fw_result;
volatile size_t fw_token_len;
char fw_token[256];
volatile int64_t fw_now = 1700000000;

int main(void);
int main(void)
{
    size_t len = 0;
    int64_t now = fw_now;
    fw_result = lk_jwt_iotcore(&fw_se, "slot:0", LK_ALG_ES256, "my-project", 10,
                               now, now + 3600, fw_token, sizeof fw_token, &len);
    fw_token_len = len;
    return 0;
}
