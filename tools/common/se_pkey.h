/*
 * An OpenSSL EVP_PKEY whose private-key operation is a secure element's
 * (lk_se_sign_digest): what lets X509_sign, X509_REQ_sign, X509_CRL_sign and
 * EVP_DigestSign use a key that never leaves its token. The tools' own; no
 * lk_ prefix.
 *
 * Only SHA-256 signatures are made (ES256: ECDSA P-256; RS256: RSASSA-PKCS1-
 * v1_5); a caller asking for another digest gets a signing failure.
 */
#ifndef LK_TOOL_SE_PKEY_H
#define LK_TOOL_SE_PKEY_H

#include <openssl/evp.h>
#include "latchkey/lk_se.h"

/*
 * The key ref of se as an EVP_PKEY carrying its public key. se and ref are
 * borrowed: both must outlive the EVP_PKEY (ref is copied). Returns NULL and
 * sets *err (LK_ERR_* of lk_se_public_key, LK_ERR_CRYPTO, LK_ERR_NOMEM). *alg
 * (may be NULL) receives the key's algorithm.
 */
EVP_PKEY *tool_se_pkey(const lk_se *se, const char *ref, lk_alg *alg, lk_err *err);

/* The JWS signature (ES256: raw r||s, 64 bytes; RS256: the PKCS#1 v1.5
 * signature) of data by pkey with SHA-256 -- pkey a file key or a
 * tool_se_pkey. sig must hold LK_SIG_MAX_BYTES. Returns 0, or -1 (nothing
 * written). */
int tool_jws_sign(EVP_PKEY *pkey, const unsigned char *data, size_t len, unsigned char *sig,
                  size_t *sig_len);

/* The lk_alg of a public key OpenSSL holds: ES256 for P-256, RS256 for RSA
 * of 2048..4096 bits, else LK_ALG_NONE. */
lk_alg tool_pkey_alg(const EVP_PKEY *pkey);

#endif
