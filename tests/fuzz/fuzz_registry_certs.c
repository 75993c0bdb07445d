/*
 * fuzz_registry_certs — libFuzzer target for the registry's readers of
 * certificates, chains, CRLs and keys (service/registry/certs.c:
 * lk_reg__ca_check, lk_reg__cert_der, lk_reg__cert_details; chain.c:
 * lk_reg__chain_parse, lk_reg__crl_check, lk_reg__signer_key,
 * lk_reg__jit_cert): what an operator or a device hands the registry as a
 * registry CA, a device's chain, a CRL, a manifest signer or a
 * just-in-time registration's certificate.
 *
 * Input: a mode byte (mod 7) picking the reader, then the PEM text, in an
 * exact-size buffer without a NUL. Time is fixed at 1700000000; the trust
 * set is empty (so a CRL, which needs a registry CA, is never accepted).
 * Invariants (abort on violation):
 *  - a refusal says why in one line and hands back nothing;
 *  - a CA accepted gives its DER, which OpenSSL reads back as one
 *    certificate that is a CA; a stored certificate's DER reads back;
 *  - details name a subject, an issuer and a key type; a chain holds at most
 *    LK_REG_CHAIN_MAX intermediates and the anchor; a signer key has a type and a
 *    fingerprint; a JIT certificate is ES256_X509_PEM or RSA_X509_PEM;
 *  - no CRL is accepted against an empty trust set.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../../service/registry/trust.h"
#include "latchkey/lk_reg_provision.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#define NOW 1700000000

static lk_reg_cas *cas;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    CHECK(lk_reg__cas_new(&cas) == LK_OK);
    return 0;
}

static void why_ok(lk_err err, const char *why)
{
    if (err != LK_OK)
        CHECK(why[0] != '\0' && memchr(why, '\0', 256) != NULL && strchr(why, '\n') == NULL);
}

static void der_reads(const unsigned char *der, size_t len, int ca)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    CHECK(x != NULL && (size_t)(p - der) == len);
    if (ca)
        CHECK(X509_check_ca(x) >= 1);
    X509_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned mode = data[0] % 7u;
    size_t len = size - 1;
    char *pem = malloc(len ? len : 1);
    char why[256];
    unsigned char *der = NULL;
    size_t der_len = 0;
    lk_err err;
    CHECK(pem != NULL);
    memcpy(pem, data + 1, len);
    why[0] = '\0';
    switch (mode) {
    case 0:
        err = lk_reg__ca_check(pem, len, NOW, &der, &der_len, why, sizeof why);
        if (err == LK_OK)
            der_reads(der, der_len, 1);
        OPENSSL_free(der);
        break;
    case 1:
        err = lk_reg__cert_der(pem, len, &der, &der_len);
        if (err == LK_OK)
            der_reads(der, der_len, 0);
        else
            snprintf(why, sizeof why, "refused"); /* says no why of its own */
        OPENSSL_free(der);
        break;
    case 2: {
        lk_reg_cert c;
        memset(&c, 0, sizeof c);
        err = lk_reg__cert_details(pem, len, &c);
        if (err == LK_OK)
            CHECK(c.pem != NULL && c.subject != NULL && c.issuer != NULL && c.key_type != NULL);
        else
            snprintf(why, sizeof why, "refused");
        lk_reg_cert_free(&c);
        break;
    }
    case 3: {
        STACK_OF(X509) *st = NULL;
        err = lk_reg__chain_parse(pem, len, &st, why, sizeof why);
        if (err == LK_OK)
            CHECK(st == NULL || (sk_X509_num(st) >= 1 && sk_X509_num(st) <= (int)LK_REG_CHAIN_MAX + 1));
        else
            CHECK(st == NULL);
        sk_X509_pop_free(st, X509_free);
        break;
    }
    case 4: {
        lk_reg_crl crl;
        uint8_t key[32];
        memset(&crl, 0, sizeof crl);
        err = lk_reg__crl_check(cas, pem, len, NULL, 0, NOW, &crl, key, why, sizeof why);
        CHECK(err != LK_OK);
        lk_reg_crl_free(&crl);
        break;
    }
    case 5: {
        char kt[64];
        uint8_t fp[32], zero[32] = {0};
        err = lk_reg__signer_key(pem, len, kt, sizeof kt, fp, why, sizeof why);
        if (err == LK_OK)
            CHECK(kt[0] != '\0' && memchr(kt, '\0', sizeof kt) != NULL && memcmp(fp, zero, 32) != 0);
        break;
    }
    default: {
        uint8_t sha[32];
        lk_cred_format fmt = LK_CRED_UNSPECIFIED;
        int64_t not_after = 0;
        err = lk_reg__jit_cert(pem, len, "dev-1", sha, &fmt, &not_after, why, sizeof why);
        if (err == LK_OK)
            CHECK(fmt == LK_CRED_ES256_X509_PEM || fmt == LK_CRED_RSA_X509_PEM);
        break;
    }
    }
    why_ok(err, why);
    free(pem);
    return 0;
}
