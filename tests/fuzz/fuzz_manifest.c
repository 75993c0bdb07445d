/*
 * fuzz_manifest — libFuzzer target for lk_manifest_import (lk_manifest.h):
 * a factory manifest's lines, past its signature.
 *
 * Input: the .jsonl file. The harness signs each input itself (ES256, with a
 * key the registry trusts, over the input's true size and SHA-256, its count
 * of device lines and batch "batch-1"), so that the header and device line
 * checks are reached; the signature checks have their own integration tests.
 * The registry (in /dev/shm) has no CA certificate, so any certificate the
 * line checks pass goes on to the registry's own credential checks; every
 * call is a dry run.
 *
 * Invariants (abort on violation):
 *  - the return value is the report's err; nothing is ever written (the
 *    registry keeps 0 devices) and the report never says imported;
 *  - accepted only with no refused line, at least one device, one result per
 *    device line, and every result ok;
 *  - refused lines: nrefused is the count of results that are not ok, and
 *    each has a reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_manifest.h"
#include "latchkey/lk_sha256.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lk_registry *reg;
static EVP_PKEY *signer;
static char kid[65];
static const lk_reg_name name = {"fuzz-project", "us-central1", "fuzz-reg"};

static void hex(const uint8_t *d, size_t n, char *out)
{
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[2 * n] = '\0';
}

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "fuzz_manifest: invariant failed: %s (line %d)\n", #c, __LINE__); \
            abort();                                                              \
        }                                                                         \
    } while (0)

static char path[128];

/* The database and SQLite's -wal and -shm beside it, at exit. */
static void remove_db(void)
{
    char p[160];
    lk_registry_close(reg);
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char why[256];
    snprintf(path, sizeof path, "/dev/shm/lk-fuzz-manifest-%ld.db", (long)getpid());
    unlink(path);
    CHECK(lk_registry_open(path, LK_REG_CREATE, &reg, why, sizeof why) == LK_OK);
    CHECK(lk_registry_create_registry(reg, &name, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED, why, sizeof why) ==
          LK_OK);
    signer = EVP_EC_gen("P-256");
    CHECK(signer != NULL);
    BIO *b = BIO_new(BIO_s_mem());
    CHECK(b != NULL && PEM_write_bio_PUBKEY(b, signer) == 1);
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    CHECK(lk_registry_add_signer(reg, &name, "fuzz", pem, (size_t)n, NULL, why, sizeof why) == LK_OK);
    BIO_free(b);
    unsigned char *der = NULL;
    int dl = i2d_PUBKEY(signer, &der);
    uint8_t fp[32];
    lk_sha256(der, (size_t)dl, fp);
    OPENSSL_free(der);
    hex(fp, 32, kid);
    atexit(remove_db);
    return 0;
}

static size_t b64(const void *in, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    CHECK(lk_b64url_encode(in, n, out, cap, &len) == LK_OK);
    return len;
}

/* The compact JWS over data, as a factory writes it. */
static char *sign(const uint8_t *data, size_t size)
{
    uint8_t d[32];
    char dh[65], hdr[256], pay[512];
    size_t devices = 0, i;
    for (i = 0; i < size; i++)
        devices += data[i] == '\n';
    if (size > 0 && data[size - 1] != '\n')
        devices++;
    devices = devices > 0 ? devices - 1 : 0;
    lk_sha256(data, size, d);
    hex(d, 32, dh);
    snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"typ\":\"latchkey-manifest+jws\",\"kid\":\"%s\"}", kid);
    snprintf(pay, sizeof pay, "{\"manifest\":\"f.jsonl\",\"sha256\":\"%s\",\"size\":%zu,\"devices\":%zu,"
             "\"batch\":\"batch-1\",\"iat\":1700000000}", dh, size, devices);
    char *out = malloc(2048);
    CHECK(out != NULL);
    size_t n = b64(hdr, strlen(hdr), out, 2048);
    out[n++] = '.';
    n += b64(pay, strlen(pay), out + n, 2048 - n);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t dlen = sizeof der;
    CHECK(ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, signer) == 1 &&
          EVP_DigestSign(ctx, der, &dlen, (unsigned char *)out, n) == 1);
    EVP_MD_CTX_free(ctx);
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
    CHECK(es != NULL);
    uint8_t raw[64];
    CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32) == 32 && BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32) == 32);
    ECDSA_SIG_free(es);
    out[n++] = '.';
    n += b64(raw, 64, out + n, 2048 - n);
    out[n] = '\0';
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[512];
    lk_manifest_report r;
    char *jws = sign(data, size);
    lk_err err = lk_manifest_import(reg, &name, (const char *)data, size, jws, strlen(jws), LK_MANIFEST_DRY_RUN,
                                    &r, why, sizeof why);
    free(jws);
    CHECK(err == r.err);
    CHECK(!r.imported);
    uint64_t bad = 0;
    for (size_t i = 0; i < r.nresults; i++) {
        if (r.results[i].err != LK_OK) {
            bad++;
            CHECK(r.results[i].why != NULL && r.results[i].why[0] != '\0');
        }
    }
    CHECK(bad == r.nrefused);
    if (err == LK_OK) {
        CHECK(r.nrefused == 0 && r.ndevices > 0 && r.nresults == r.ndevices);
        CHECK(why[0] == '\0');
    } else {
        CHECK(why[0] != '\0');
    }
    lk_manifest_report_free(&r);
    lk_reg_registry rr;
    CHECK(lk_registry_get_registry(reg, &name, &rr, why, sizeof why) == LK_OK);
    CHECK(rr.ndevices == 0);
    lk_reg_registry_free(&rr);
    return 0;
}
