/*
 * rotate.c — the agent's side of key rotation and just-in-time registration
 * (docs/device.md "Rotating keys"): --next-key and the SIGHUP that reads
 * --next-key-file, and --x5c (a PEM chain turned into the header's x5c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_util.h"
#include "device_tool.h"

int devtool_next_key(lk_dev *dev, const struct tool_key *key, const char *ref)
{
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    lk_alg alg = LK_ALG_NONE;
    lk_err err;

    /* The next key must exist and say its algorithm now, not at the first
     * signature. */
    err = lk_se_public_key(&key->se, ref, &alg, pub, sizeof pub, &pub_len);
    if (err != LK_OK) {
        tool_error("next key", err, "key '%s' (%s): %s; the device goes on with its key",
                   tool_shown(ref), key->where, lk_strerror(err));
        return tool_exit_code(err);
    }
    err = lk_dev_set_next_key(dev, &key->se, ref, alg);
    if (err != LK_OK) {
        tool_error("next key", err, "%s", lk_strerror(err));
        return tool_exit_code(err);
    }
    fprintf(stderr, "%s: switching to the next key '%s' (%s)\n", tool_name, tool_shown(ref),
            lk_alg_name(alg));
    return EXIT_OK;
}

int devtool_next_key_file(lk_dev *dev, const struct tool_key *key, const char *path)
{
    char line[LK_KEY_REF_MAX + 2];
    size_t n;
    int rc;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        int e = errno;
        fprintf(stderr, "%s: --next-key-file %s: %s\n", tool_name, tool_shown(path), strerror(e));
        return tool_file_exit(e);
    }
    if (fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    fclose(f);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        line[--n] = '\0';
    if (n == 0) {
        fprintf(stderr, "%s: --next-key-file %s: no key reference on its first line\n", tool_name,
                tool_shown(path));
        return EXIT_USAGE;
    }
    rc = devtool_next_key(dev, key, line);
    lk_wipe(line, sizeof line); /* a URI may carry a PIN */
    return rc;
}

void devtool_x5c_free(char **x5c, unsigned n)
{
    unsigned i;
    for (i = 0; i < n && x5c != NULL; i++)
        free(x5c[i]);
    free(x5c);
}

int devtool_x5c_load(const char *path, char ***out, unsigned *count)
{
    BIO *bio = BIO_new_file(path, "r");
    char **v = NULL;
    unsigned n = 0;
    X509 *x;
    int rc = EXIT_OK;

    *out = NULL;
    *count = 0;
    if (bio == NULL) {
        int e = errno;
        fprintf(stderr, "%s: --x5c %s: %s\n", tool_name, tool_shown(path), strerror(e));
        return tool_file_exit(e);
    }
    v = calloc(LK_JWT_X5C_MAX, sizeof *v);
    while (v != NULL && rc == EXIT_OK && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        unsigned char *der = NULL;
        int len = i2d_X509(x, &der);
        X509_free(x);
        if (n == LK_JWT_X5C_MAX) {
            fprintf(stderr, "%s: --x5c %s: more than %u certificates (the leaf and %u "
                    "intermediates at most)\n", tool_name, tool_shown(path),
                    (unsigned)LK_JWT_X5C_MAX, (unsigned)LK_JWT_X5C_MAX - 1);
            rc = EXIT_USAGE;
        } else if (len <= 0 || (size_t)len > LK_DEV_X5C_CHARS_MAX / 4 * 3) {
            fprintf(stderr, "%s: --x5c %s: certificate %u is larger than %u bytes\n", tool_name,
                    tool_shown(path), n + 1, LK_DEV_X5C_CHARS_MAX / 4 * 3);
            rc = EXIT_USAGE;
        } else if ((v[n] = malloc(((size_t)len + 2) / 3 * 4 + 1)) == NULL) {
            rc = EXIT_FAIL;
        } else {
            EVP_EncodeBlock((unsigned char *)v[n], der, len); /* standard base64, padded */
            n++;
        }
        OPENSSL_free(der);
    }
    BIO_free(bio);
    if (v == NULL)
        rc = EXIT_FAIL;
    if (rc == EXIT_OK && n == 0) {
        fprintf(stderr, "%s: --x5c %s: no PEM certificate in it\n", tool_name, tool_shown(path));
        rc = EXIT_DEV_INPUT;
    }
    if (rc != EXIT_OK) {
        devtool_x5c_free(v, n);
        return rc;
    }
    *out = v;
    *count = n;
    return EXIT_OK;
}
