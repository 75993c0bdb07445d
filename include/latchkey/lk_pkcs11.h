/*
 * lk_pkcs11.h — the PKCS#11 backend: any token reached through its module.
 *
 * Tested with SoftHSM2; the same code drives cryptoauthlib's PKCS#11 module
 * (ATECC608A), tpm2-pkcs11 (a TPM 2.0), or a smart-card HSM. Keys are named
 * by RFC 7512 URIs, e.g.
 *
 *   pkcs11:token=latchkey;object=device-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/latchkey/pin
 *
 * The path attributes token, manufacturer, serial and model select the token
 * (slot-id too); object and id select the key. Query attributes: module-path
 * (the module to dlopen), pin-value or pin-source (file:PATH, first line).
 * Generated keys are token objects, private, sensitive and non-extractable;
 * signing uses CKM_ECDSA (ES256) or CKM_RSA_PKCS over the SHA-256 DigestInfo
 * (RS256) on the digest the core computed.
 *
 * Linux (dlopen). A handle is not thread-safe.
 */
#ifndef LK_PKCS11_H
#define LK_PKCS11_H

#include <stddef.h>
#include "lk_error.h"
#include "lk_se.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_pkcs11 lk_pkcs11;

/*
 * Load the module, find the token named by uri's path attributes, open a
 * session and log in (if a PIN is given in the URI or as pin; pin overrides
 * the URI's). module overrides the URI's module-path; one of them is needed.
 * On failure returns LK_ERR_URI, LK_ERR_MODULE, LK_ERR_KEY_NOT_FOUND (no such
 * token), LK_ERR_KEY_LOCKED (PIN refused or needed) or LK_ERR_DEVICE, sets
 * *out to NULL, and writes a one-line reason (no secrets) into detail.
 */
lk_err lk_pkcs11_open(const char *uri, const char *module, const char *pin,
                      lk_pkcs11 **out, char *detail, size_t detail_size);

/* Log out, close the session, finalize and unload the module. */
void lk_pkcs11_close(lk_pkcs11 *p11);

/* The secure-element view. The key reference of each call is a pkcs11: URI
 * whose object and/or id attributes name the key (its token attributes, if
 * any, must match the open token). */
lk_se lk_pkcs11_se(lk_pkcs11 *p11);

/* The reason for the handle's last failure, e.g. "C_Sign:
 * CKR_KEY_FUNCTION_NOT_PERMITTED". Never NULL, never a secret. */
const char *lk_pkcs11_last_error(const lk_pkcs11 *p11);

#ifdef __cplusplus
}
#endif
#endif /* LK_PKCS11_H */
