/*
 * fuzz_manifest_jws — libFuzzer target for a factory manifest's signature
 * file (service/manifest/manifest.c: check_jws, through lk_manifest_import):
 * the compact JWS, its header and, once it verified, its payload.
 *
 * The registry (in /dev/shm) trusts two signers made at start-up and never
 * written out: a P-256 key and an RSA-2048 key. A third P-256 key is
 * foreign. The manifest is fixed (a header line, no device), so a JWS that
 * verifies and names its size and SHA-256 ends at "no device".
 * The first input byte picks the mode:
 *   bit 0 clear — raw: the rest is the .jws file as given;
 *   bit 0 set   — signed: the rest is HEADER 0x00 PAYLOAD (without 0x00:
 *                 the payload, under the ES256 signer's header), encoded
 *                 base64url and signed by the harness: ES256 with the
 *                 trusted key (bits 1-2 = 0 or 3), the foreign key (1), or
 *                 RS256 with the trusted RSA key (2); bit 3 appends "\n".
 * Invariants (abort on violation):
 *  - nothing is ever accepted (the manifest has no device) and nothing
 *    written; every refusal says why, with the report's err;
 *  - a signer is named only when the harness signed with a trusted key:
 *    never for a raw file (its keys exist only in this process) nor for
 *    the foreign key;
 *  - a file over LK_MANIFEST_JWS_MAX is LK_ERR_REG_LIMIT.
 * ECDSA and RSA signing cost a little per signed run; the lines after the
 * signature are fuzz_manifest's.
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
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* The fixed manifest; make_corpus.py writes the same bytes' size and SHA-256 into its seeds. */
static const char manifest[] = "{\"latchkeyManifest\":1,\"batch\":\"batch-1\",\"manufacturer\":\"fuzz-fab\","
                               "\"created\":\"2026-01-01T00:00:00Z\"}\n";
static const lk_reg_name name = {"fuzz-project", "us-central1", "fuzz-reg"};
static lk_registry *reg;
static EVP_PKEY *es, *rs, *foreign;
static char es_kid[65];
static char path[128];

static void remove_db(void)
{
    lk_registry_close(reg);
    fuzz_db_remove(path);
}

static void add_signer(EVP_PKEY *k, const char *label, char kid[65])
{
    char why[256];
    BIO *b = BIO_new(BIO_s_mem());
    CHECK(b != NULL && PEM_write_bio_PUBKEY(b, k) == 1);
    char *pem;
    long n = BIO_get_mem_data(b, &pem);
    CHECK(lk_registry_add_signer(reg, &name, label, pem, (size_t)n, NULL, why, sizeof why) == LK_OK);
    BIO_free(b);
    if (kid != NULL) {
        static const char x[] = "0123456789abcdef";
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(k, &der);
        uint8_t fp[32];
        CHECK(dl > 0);
        lk_sha256(der, (size_t)dl, fp);
        OPENSSL_free(der);
        for (int i = 0; i < 32; i++) {
            kid[2 * i] = x[fp[i] >> 4];
            kid[2 * i + 1] = x[fp[i] & 15];
        }
        kid[64] = '\0';
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char why[256];
    snprintf(path, sizeof path, "/dev/shm/lk-fuzz-manifest-jws-%ld.db", (long)getpid());
    unlink(path);
    CHECK(lk_registry_open(path, LK_REG_CREATE, &reg, why, sizeof why) == LK_OK);
    CHECK(lk_registry_create_registry(reg, &name, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED, why, sizeof why) ==
          LK_OK);
    es = EVP_EC_gen("P-256");
    rs = EVP_RSA_gen(2048);
    foreign = EVP_EC_gen("P-256");
    CHECK(es != NULL && rs != NULL && foreign != NULL);
    add_signer(es, "fuzz-es", es_kid);
    add_signer(rs, "fuzz-rs", NULL);
    atexit(remove_db);
    return 0;
}

static void put_b64(char *out, size_t cap, size_t *len, const void *in, size_t n)
{
    size_t w = 0;
    CHECK(lk_b64url_encode(in, n, out + *len, cap - *len, &w) == LK_OK);
    *len += w;
}

/* rest as HEADER 0x00 PAYLOAD, encoded and signed: the .jws text (malloc'd). */
static char *sign(unsigned opts, const uint8_t *rest, size_t n, size_t *out_len)
{
    unsigned key = (opts >> 1) & 3u;
    EVP_PKEY *k = key == 1 ? foreign : key == 2 ? rs : es; /* RSA signing is slow: one key choice in four */
    char hdr[160];
    const uint8_t *h = (const uint8_t *)hdr, *p = rest;
    size_t hl, pl = n;
    const uint8_t *nul = memchr(rest, 0, n);
    if (nul != NULL) {
        h = rest;
        hl = (size_t)(nul - rest);
        p = nul + 1;
        pl = n - hl - 1;
    } else {
        hl = (size_t)snprintf(hdr, sizeof hdr, "{\"alg\":\"ES256\",\"typ\":\"latchkey-manifest+jws\",\"kid\":\"%s\"}",
                              es_kid);
    }
    size_t cap = LK_B64URL_ENCODED_LEN(hl) + LK_B64URL_ENCODED_LEN(pl) + LK_B64URL_ENCODED_LEN(256) + 8;
    char *out = malloc(cap);
    size_t len = 0;
    CHECK(out != NULL);
    put_b64(out, cap, &len, h, hl);
    out[len++] = '.';
    put_b64(out, cap, &len, p, pl);
    unsigned char der[512];
    size_t dlen = sizeof der;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    CHECK(ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
          EVP_DigestSign(ctx, der, &dlen, (unsigned char *)out, len) == 1);
    EVP_MD_CTX_free(ctx);
    uint8_t raw[256];
    size_t rl = dlen;
    if (k != rs) { /* JWS ES256 is r || s */
        const unsigned char *q = der;
        ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &q, (long)dlen);
        CHECK(s != NULL && BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, 32) == 32 &&
              BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + 32, 32) == 32);
        ECDSA_SIG_free(s);
        rl = 64;
    } else {
        memcpy(raw, der, dlen);
    }
    out[len++] = '.';
    put_b64(out, cap, &len, raw, rl);
    if (opts & 8u)
        out[len++] = '\n';
    *out_len = len;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned mode = size > 0 ? data[0] : 0;
    const uint8_t *rest = size > 0 ? data + 1 : data;
    size_t n = size > 0 ? size - 1 : 0, len;
    int trusted = 0;
    char *jws;
    if (mode & 1u) {
        jws = sign(mode, rest, n, &len);
        trusted = ((mode >> 1) & 3u) != 1;
    } else {
        jws = malloc(n ? n : 1); /* exact size, no NUL: ASan sees a read past it */
        CHECK(jws != NULL);
        memcpy(jws, rest, n);
        len = n;
    }
    char why[512];
    lk_manifest_report r;
    lk_err err = lk_manifest_import(reg, &name, manifest, sizeof manifest - 1, jws, len, LK_MANIFEST_DRY_RUN, &r,
                                    why, sizeof why);
    free(jws);
    CHECK(err != LK_OK && err == r.err && !r.imported);
    CHECK(why[0] != '\0' && r.why[0] != '\0');
    CHECK(r.signer == NULL || trusted);
    CHECK(r.nresults == 0 && r.ndevices == 0);
    if (len > LK_MANIFEST_JWS_MAX)
        CHECK(err == LK_ERR_REG_LIMIT);
    lk_manifest_report_free(&r);
    return 0;
}
