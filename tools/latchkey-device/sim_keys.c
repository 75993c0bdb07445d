/*
 * latchkey-device simulate: the fleet's ids and keys — the software key
 * store, and --create-keys writing a `latchkey devices import` file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "device_tool.h"
#include "latchkey/lk_iotcore.h"
#include "sim.h"

int make_ids(struct sim *s)
{
    size_t w = strlen(s->prefix) + 6, i;
    char why[160];
    s->id_size = w;
    s->ids = malloc(w * s->n);
    if (s->ids == NULL) {
        tool_error("simulate", LK_ERR_NOMEM, "%u devices: out of memory", s->n);
        return EXIT_FAIL;
    }
    for (i = 0; i < s->n; i++)
        snprintf(s->ids + i * w, w, "%s%05u", s->prefix, (unsigned)(i + 1));
    /* the first and the last id are enough to check the prefix */
    for (i = 0; i < 2; i++) {
        const char *id = s->ids + (i == 0 ? 0 : s->n - 1) * w;
        if (lk_id_why("device id", id, strlen(id), why, sizeof why) != NULL) {
            tool_usage_error("simulate: --prefix '%s' gives device ids such as '%s': %s",
                             tool_shown(s->prefix), tool_shown(id), why);
            return EXIT_USAGE;
        }
    }
    return 0;
}

const char *dev_id(const struct sim *s, size_t i)
{
    return s->ids + i * s->id_size;
}

int open_store(struct sim *s, unsigned flags)
{
    lk_err err = lk_softstore_open(s->store_path, flags, &s->store);
    if (err != LK_OK) {
        tool_error("simulate", err, "key store %s: %s%s", tool_shown(s->store_path), lk_strerror(err),
                   err == LK_ERR_STORE_MISSING ? " (make the keys with --create-keys FILE)" : "");
        return tool_exit_code(err);
    }
    s->se = lk_softstore_se(s->store);
    return EXIT_OK;
}

static int key_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct key_entry *)a)->name, ((const struct key_entry *)b)->name);
}

struct key_entry *key_index(const lk_softstore *store, size_t *count)
{
    size_t n = lk_softstore_count(store), i, k = 0;
    struct key_entry *e = calloc(n ? n : 1, sizeof *e);
    if (e == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        if (lk_softstore_entry(store, i, &e[k].name, &e[k].alg) == LK_OK)
            k++;
    qsort(e, k, sizeof *e, key_entry_cmp);
    *count = k;
    return e;
}

/* The algorithm of key name, LK_ALG_NONE when the store has none. */
lk_alg key_lookup(const struct key_entry *e, size_t count, const char *name)
{
    struct key_entry want = {name, LK_ALG_NONE};
    const struct key_entry *hit = bsearch(&want, e, count, sizeof *e, key_entry_cmp);
    return hit != NULL ? hit->alg : LK_ALG_NONE;
}

/* Write one import line: the device and its public key (DER SPKI) as PEM. */
static lk_err write_import_line(FILE *f, const char *id, lk_alg alg, const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL;
    long pem_len = 0;
    lk_err err = LK_ERR_CRYPTO;

    if (pk != NULL && b != NULL && PEM_write_bio_PUBKEY(b, pk) == 1 &&
        (pem_len = BIO_get_mem_data(b, &pem)) > 0) {
        fputs("{\"id\": ", f);
        devtool_put_json_string(f, (const uint8_t *)id, strlen(id));
        fprintf(f, ", \"credentials\": [{\"publicKey\": {\"format\": \"%s\", \"key\": ",
                alg == LK_ALG_RS256 ? "RSA_PEM" : "ES256_PEM");
        devtool_put_json_string(f, (const uint8_t *)pem, (size_t)pem_len);
        fputs("}}]}\n", f);
        err = LK_OK;
    }
    BIO_free(b);
    EVP_PKEY_free(pk);
    return err;
}

/* --create-keys FILE: the missing keys, one store write, the import file. */
int create_keys(struct sim *s)
{
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0, nkeys = 0, i;
    unsigned made = 0;
    FILE *f = NULL;
    int to_stdout = strcmp(s->create_keys, "-") == 0, werr;
    struct key_entry *keys = NULL;
    lk_alg *algs = NULL;
    uint8_t **made_pub = NULL;  /* the public keys generated now */
    size_t *made_len = NULL;
    int rc = open_store(s, LK_SOFTSTORE_CREATE_ON_WRITE | LK_SOFTSTORE_DEFER_SAVE);
    lk_err err = LK_OK;

    if (rc != EXIT_OK)
        return rc;
    keys = key_index(s->store, &nkeys);
    algs = calloc(s->n, sizeof *algs);
    made_pub = calloc(s->n, sizeof *made_pub);
    made_len = calloc(s->n, sizeof *made_len);
    if (keys == NULL || algs == NULL || made_pub == NULL || made_len == NULL) {
        tool_error("simulate", LK_ERR_NOMEM, "%u devices: out of memory", s->n);
        rc = EXIT_FAIL;
        goto exit;
    }
    for (i = 0; i < s->n; i++)
        algs[i] = key_lookup(keys, nkeys, dev_id(s, i));
    free(keys); /* its names are the store's, which changes now */
    keys = NULL;
    for (i = 0; i < s->n; i++) {
        if (algs[i] != LK_ALG_NONE)
            continue;
        err = lk_se_generate(&s->se, dev_id(s, i), LK_ALG_ES256, 0, pub, sizeof pub, &pub_len);
        if (err == LK_OK && (made_pub[i] = malloc(pub_len)) == NULL)
            err = LK_ERR_NOMEM;
        if (err != LK_OK) {
            tool_error("simulate", err, "key %s in %s: %s", dev_id(s, i), tool_shown(s->store_path),
                       lk_strerror(err));
            rc = tool_exit_code(err); /* nothing was written */
            goto exit;
        }
        memcpy(made_pub[i], pub, pub_len);
        made_len[i] = pub_len;
        algs[i] = LK_ALG_ES256;
        made++;
    }
    err = lk_softstore_save(s->store);
    if (err != LK_OK) {
        tool_error("simulate", err, "saving the key store %s: %s", tool_shown(s->store_path), lk_strerror(err));
        rc = tool_exit_code(err);
        goto exit;
    }

    f = to_stdout ? stdout : fopen(s->create_keys, "w");
    if (f == NULL) {
        tool_error("simulate", LK_ERR_IO, "%s: %s", tool_shown(s->create_keys), strerror(errno));
        rc = EXIT_FAIL;
        goto exit;
    }
    for (i = 0; i < s->n && err == LK_OK; i++) {
        if (made_pub[i] != NULL) {
            err = write_import_line(f, dev_id(s, i), algs[i], made_pub[i], made_len[i]);
        } else {
            err = lk_se_public_key(&s->se, dev_id(s, i), &algs[i], pub, sizeof pub, &pub_len);
            if (err == LK_OK)
                err = write_import_line(f, dev_id(s, i), algs[i], pub, pub_len);
        }
        if (err != LK_OK) {
            tool_error("simulate", err, "public key of %s: %s", dev_id(s, i), lk_strerror(err));
            rc = tool_exit_code(err);
        }
    }
    /* ferror: also a write that failed before the last flush (full disk) */
    werr = fflush(f) != 0 || ferror(f);
    if (!to_stdout && fclose(f) != 0)
        werr = 1;
    if (werr) {
        if (rc == EXIT_OK)
            tool_error("simulate", LK_ERR_IO, "%s: %s", tool_shown(s->create_keys), strerror(errno));
        rc = EXIT_FAIL;
    }
    if (rc == EXIT_OK)
        fprintf(stderr, "%s: simulate: %u keys created, %u already in %s; %u devices written to %s\n",
                tool_name, made, s->n - made, tool_shown(s->store_path), s->n,
                to_stdout ? "standard output" : tool_shown(s->create_keys));

exit:
    if (made_pub != NULL)
        for (i = 0; i < s->n; i++)
            free(made_pub[i]);
    free(made_pub);
    free(made_len);
    free(algs);
    free(keys);
    return rc;
}
