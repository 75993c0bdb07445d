/*
 * internal.h — shared between the registry's own files and its tests. Not
 * part of the installed API.
 */
#ifndef LK_REGISTRY_INTERNAL_H
#define LK_REGISTRY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_registry.h"

/* The change feed keeps this many of the newest changes (see registry.c). */
#define LK_REG_CHANGES_KEPT 100000

/* Longest PEM accepted for a registry CA certificate. */
#define LK_REG_CERT_PEM_MAX LK_CRED_PEM_MAX

/* ---- records.c ---- */

/* Free the pem of each of c[0..n) (the array itself is the caller's). */
void lk_reg__creds_free(lk_reg_credential *c, unsigned n);

/* ---- test hooks ---- */

/* Replace the clock (seconds since 1970) used for created/update times and
 * for certificate validity; NULL restores time(). */
void lk_registry__set_clock(lk_registry *reg, int64_t (*now)(void *arg), void *arg);
/* How many changes the feed keeps (>= 1). */
void lk_registry__set_changes_kept(lk_registry *reg, int64_t kept);

/* ---- certs.c: credential and certificate checks ---- */

/* Reusable state for credential checks (a P-256 group for the fast path);
 * one per registry handle. */
typedef struct lk_reg_checker lk_reg_checker;
lk_err lk_reg__checker_new(lk_reg_checker **out);
void lk_reg__checker_free(lk_reg_checker *ck);

/* A registry's CA certificates, parsed once for a batch of checks. */
typedef struct lk_reg_cas lk_reg_cas;
lk_err lk_reg__cas_new(lk_reg_cas **out);
/* Add a stored certificate (validated when it was added; one that breaks
 * today's CA rules, stored by an older version, is kept but signs
 * nothing). */
lk_err lk_reg__cas_add(lk_reg_cas *cas, const char *pem, size_t len);
unsigned lk_reg__cas_count(const lk_reg_cas *cas);
void lk_reg__cas_free(lk_reg_cas *cas);

/*
 * Is cred (the device's credential number index, for messages) acceptable?
 * It must parse as its format — exactly what lk_cred_parse accepts (an
 * ES256_PEM key in canonical PEM is checked by a faster path with the same
 * verdict). If cas holds certificates, it must also be a certificate signed
 * directly by one of them that is valid at now and meets the CA rules (see
 * lk_reg__ca_check), with a signature of at least 112 bits of security (not
 * SHA-1 or MD5), and differ from each.
 * LK_OK, or LK_ERR_REG_INVALID / LK_ERR_REG_LIMIT / LK_ERR_CRED_INVALID /
 * LK_ERR_REG_CERT with why.
 */
lk_err lk_reg__cred_check(lk_reg_checker *ck, const lk_reg_cas *cas,
                          const lk_reg_credential *cred, unsigned index, int64_t now,
                          char *why, size_t why_size);

/* lk_reg__cred_check with schema 7's rules: chain_pem (NULL/0 = none) the
 * intermediates between a certificate credential and a registry CA,
 * checks LK_REG_CHECK_* (lk_registry.h, "Certificate chains"); every
 * certificate of the path is also checked against cas's CRLs. */
lk_err lk_reg__cred_check_chain(lk_reg_checker *ck, const lk_reg_cas *cas,
                                const lk_reg_credential *cred, unsigned index, int64_t now,
                                const char *chain_pem, size_t chain_len, unsigned checks,
                                char *why, size_t why_size);

/* Only the parse step of lk_reg__cred_check, for the tests: LK_OK or
 * LK_ERR_CRED_INVALID (fast path and lk_cred_parse must agree). *fast says
 * whether the fast path decided. */
lk_err lk_reg__cred_parse_check(lk_reg_checker *ck, lk_cred_format fmt, const char *pem,
                                size_t len, int *fast);

/*
 * Check a registry CA certificate before it is added: exactly one PEM
 * certificate, X.509v3, a CA certificate (X509_check_ca == 1:
 * basicConstraints CA:TRUE, keyCertSign if it has a keyUsage), RSA >= 2048
 * bits (up to 8192) with an odd public exponent >= 3 or EC P-256, not
 * expired at now. LK_OK, or LK_ERR_REG_INVALID / LK_ERR_REG_LIMIT /
 * LK_ERR_REG_CERT with why. der/der_len receive its DER for the duplicate
 * check, allocated by OpenSSL: release it with OPENSSL_free.
 */
lk_err lk_reg__ca_check(const char *pem, size_t len, int64_t now, unsigned char **der,
                        size_t *der_len, char *why, size_t why_size);
/* DER of a stored certificate (release with OPENSSL_free), or
 * LK_ERR_REG_INVALID. */
lk_err lk_reg__cert_der(const char *pem, size_t len, unsigned char **der, size_t *der_len);

/* Fill c's subject, issuer, dates and key type from pem (c->pem is copied
 * too). */
lk_err lk_reg__cert_details(const char *pem, size_t len, lk_reg_cert *c);

/* ---- chain.c (schema 7) ---- */

/* Add a stored CRL (proved when it was added) with the SHA-256 of its
 * issuer's DER SPKI. */
lk_err lk_reg__cas_add_crl(lk_reg_cas *cas, const char *pem, size_t len,
                           const uint8_t issuer_key[32]);
/* Check a CRL before it is stored (lk_registry_add_crl): one X.509 v2 CRL
 * of at most LK_REG_CRL_MAX bytes, signed by a registry CA of cas valid at
 * now or by a CA certificate of chain_pem that verifies to one (and is not
 * revoked by cas's CRLs). out gets its issuer, dates, count and pem
 * (malloc'd: lk_reg_crl_free), issuer_key the SHA-256 of the issuer's DER
 * SPKI. LK_ERR_REG_INVALID / LK_ERR_REG_LIMIT / LK_ERR_REG_CERT with why. */
lk_err lk_reg__crl_check(const lk_reg_cas *cas, const char *pem, size_t len,
                         const char *chain_pem, size_t chain_len, int64_t now, lk_reg_crl *out,
                         uint8_t issuer_key[32], char *why, size_t why_size);
/* A manifest signer's key: one PEM SPKI, EC P-256 or RSA 2048..8192 (an
 * odd exponent of 3 to 64 bits); key_type its description, fp the SHA-256
 * of its DER SPKI. LK_ERR_REG_INVALID / LK_ERR_REG_LIMIT with why. */
lk_err lk_reg__signer_key(const char *pem, size_t len, char *key_type, size_t kt_size,
                          uint8_t fp[32], char *why, size_t why_size);
/* A just-in-time registration's certificate: one PEM certificate whose
 * subject has exactly one CN, equal to id, with an EC or RSA key (*fmt
 * ES256_X509_PEM or RSA_X509_PEM); sha the SHA-256 of its DER, not_after its
 * end. Its signature and chain are lk_reg__cred_check_chain's.
 * LK_ERR_REG_INVALID / LK_ERR_REG_CERT with why. */
lk_err lk_reg__jit_cert(const char *pem, size_t len, const char *id, uint8_t sha[32],
                        lk_cred_format *fmt, int64_t *not_after, char *why, size_t why_size);

#endif
