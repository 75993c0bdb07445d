/*
 * trust.h — what certs.c and chain.c share about a registry's trust set:
 * its CA certificates and CRLs, parsed once for a batch of checks
 * (lk_reg_cas), and chain.c's OpenSSL-level checks. Internal; only these
 * two files include it (the rest of the registry sees lk_reg_cas as
 * opaque, internal.h).
 */
#ifndef LK_REGISTRY_TRUST_H
#define LK_REGISTRY_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "internal.h"

struct lk_reg_cas {
    unsigned n;
    X509 *crt[LK_REGISTRY_CERTS_MAX];
    unsigned char *der[LK_REGISTRY_CERTS_MAX];
    size_t der_len[LK_REGISTRY_CERTS_MAX];
    int64_t not_before[LK_REGISTRY_CERTS_MAX], not_after[LK_REGISTRY_CERTS_MAX];
    unsigned char usable[LK_REGISTRY_CERTS_MAX]; /* meets the CA rules (ca_flaw) */
    /* schema 7: the registry's CRLs, each with the SHA-256 of its issuer's
     * DER SPKI (the key that was proved to sign it when it was added) */
    unsigned ncrls;
    X509_CRL *crl[LK_REG_CRLS_MAX];
    uint8_t crl_key[LK_REG_CRLS_MAX][32];
    X509_STORE *store;          /* the usable CAs as trust anchors (NULL: none) */
};

/* "RSA 2048", "EC P-256", ...; *ok = usable as a registry key (RSA 2048..8192
 * with an odd public exponent of 3 to LK_CRED_RSA_E_MAX_BITS bits, or P-256). */
void lk_reg__key_desc(EVP_PKEY *pk, char *buf, size_t size, int *ok);
/* 0 when crt is a CA certificate (X509_check_ca == 1); else 1 with why in buf. */
int lk_reg__not_ca(X509 *crt, char *buf, size_t size);
/* 0 when crt meets the CA rules a stored certificate can break (a CA, its
 * key); else 1 with why in buf. */
int lk_reg__ca_flaw(X509 *crt, char *buf, size_t size);
/* Seconds since 1970 of a; 0 if it cannot be read. */
int lk_reg__asn1_epoch(const ASN1_TIME *a, int64_t *out);

/* Parse the concatenated PEM certificates of a chain (at most
 * LK_REG_CHAIN_MAX intermediates and, as many senders add it, the registry
 * CA: LK_REG_CHAIN_MAX + 1; none when len is 0) into *out (NULL when none).
 * LK_ERR_REG_INVALID / LK_ERR_REG_LIMIT with why. */
lk_err lk_reg__chain_parse(const char *pem, size_t len, STACK_OF(X509) **out, char *why,
                           size_t why_size);
/* Verify leaf with OpenSSL up to one of cas's usable CAs as trust anchor,
 * through untrusted (may be NULL) with at most LK_REG_CHAIN_MAX
 * intermediates, every certificate valid at now except the leaf's own dates
 * (checked by the caller). *path receives the verified path, leaf first and
 * anchor last (sk_X509_pop_free it). what names the leaf in why
 * ("credential 0", "the CRL's issuer"). LK_ERR_REG_CERT with why. */
lk_err lk_reg__chain_verify(const lk_reg_cas *cas, X509 *leaf, STACK_OF(X509) *untrusted,
                            int64_t now, const char *what, STACK_OF(X509) **path, char *why,
                            size_t why_size);
/* Whether a certificate of path (leaf first; all but the last) is revoked
 * by a CRL of cas for its issuer's key (the next certificate's):
 * LK_ERR_REG_CERT with why ("revoked by <issuer>'s CRL") or LK_OK. */
lk_err lk_reg__path_revoked(const lk_reg_cas *cas, STACK_OF(X509) *path, const char *what,
                            char *why, size_t why_size);
/* The leaf's own dates against now (LK_REG_CHECK_LEAF_DATES). */
lk_err lk_reg__leaf_dates(X509 *leaf, int64_t now, const char *what, char *why,
                          size_t why_size);

#endif
