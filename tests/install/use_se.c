/*
 * use_se.c — a program of a latchkey user, built by tests/install/run.sh
 * against an installed tree only (`pkg-config latchkey-se`), that calls
 * every function liblatchkey-se's headers declare: it makes a key in a
 * software key store and one in a PKCS#11 token, and signs with each.
 *
 *   use_se DIR MODULE TOKEN-LABEL PIN
 *
 * DIR: an empty directory for the key store; MODULE: a PKCS#11 module
 * (SoftHSM2) with an initialised token TOKEN-LABEL whose user PIN is PIN.
 */
#include <stdio.h>
#include <string.h>

#include <latchkey/lk_pkcs11.h>
#include <latchkey/lk_se.h>
#include <latchkey/lk_softstore.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "use_se.c:%d: %s\n", __LINE__, #cond);          \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Generate an ES256 key named key in se and sign a digest with it. */
static void count_key(void *user, const lk_pkcs11_key_info *key)
{
    (void)key;
    (*(int *)user)++;
}

static void generate_and_sign(const lk_se *se, const char *key)
{
    uint8_t pub[LK_PUBKEY_DER_MAX], digest[32] = {1}, sig[LK_SIG_MAX_BYTES];
    size_t pub_len = 0, sig_len = 0;
    CHECK(lk_se_generate(se, key, LK_ALG_ES256, 0, pub, sizeof pub, &pub_len) == LK_OK);
    CHECK(pub_len == LK_P256_SPKI_BYTES);
    CHECK(lk_se_sign_digest(se, key, LK_ALG_ES256, digest, sig, sizeof sig, &sig_len) == LK_OK);
    CHECK(sig_len == LK_ES256_SIG_BYTES);
}

int main(int argc, char **argv)
{
    int listed;
    char path[4096], uri[512], detail[256];
    lk_softstore *store = NULL;
    lk_pkcs11 *p11 = NULL;
    const char *name = NULL;
    lk_alg alg = LK_ALG_NONE;
    lk_se se;

    if (argc != 5) {
        fprintf(stderr, "usage: use_se DIR MODULE TOKEN-LABEL PIN\n");
        return 2;
    }

    /* lk_softstore.h */
    snprintf(path, sizeof path, "%s/keys.lks", argv[1]);
    CHECK(lk_softstore_open(path, LK_SOFTSTORE_CREATE | LK_SOFTSTORE_DEFER_SAVE, &store) == LK_OK);
    if (store != NULL) {
        se = lk_softstore_se(store);
        generate_and_sign(&se, "device-1");
        CHECK(lk_softstore_save(store) == LK_OK);
        CHECK(lk_softstore_count(store) == 1);
        CHECK(lk_softstore_entry(store, 0, &name, &alg) == LK_OK);
        CHECK(name != NULL && strcmp(name, "device-1") == 0 && alg == LK_ALG_ES256);
        lk_softstore_close(store);
    }

    /* lk_pkcs11.h */
    snprintf(uri, sizeof uri, "pkcs11:token=%s", argv[3]);
    CHECK(lk_pkcs11_open(uri, argv[2], argv[4], &p11, detail, sizeof detail) == LK_OK);
    if (p11 != NULL) {
        se = lk_pkcs11_se(p11);
        generate_and_sign(&se, "pkcs11:object=device-1");
        CHECK(lk_pkcs11_last_error(p11) != NULL);
        {
            char serial[17];
            CHECK(lk_pkcs11_token_serial(p11, serial, sizeof serial) == LK_OK && serial[0] != '\0');
            CHECK(lk_pkcs11_token_serial(p11, serial, 16) == LK_ERR_BUFFER && serial[0] == '\0');
        }
        listed = 0;
        CHECK(lk_pkcs11_list_keys(p11, NULL, count_key, &listed) == LK_OK && listed == 1);
        lk_pkcs11_close(p11);
    } else {
        fprintf(stderr, "use_se: %s\n", detail);
    }

    if (failures) {
        fprintf(stderr, "use_se: %d checks failed\n", failures);
        return 1;
    }
    printf("use_se: every function of liblatchkey-se called\n");
    return 0;
}
