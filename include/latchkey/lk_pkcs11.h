/*
 * lk_pkcs11.h — the PKCS#11 backend: any token reached through its module.
 *
 * Tested with SoftHSM2; the same code drives cryptoauthlib's PKCS#11 module
 * (ATECC608A), tpm2-pkcs11 (a TPM 2.0), or a smart-card HSM. Keys are named
 * by RFC 7512 URIs, e.g.
 *
 *   pkcs11:token=latchkey;object=device-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/latchkey/pin
 *
 * The path attributes token, manufacturer, serial, model, slot-id,
 * slot-manufacturer, slot-description and library-* select the token; object
 * and id select the key. Query attributes: module-path (the module to
 * dlopen), pin-value or pin-source (file:PATH or a plain path: its first
 * line). Unknown or repeated attributes, and module-name, are errors
 * (docs/pkcs11.md lists every rule). Generated keys are token objects,
 * private, sensitive and non-extractable; signing uses CKM_ECDSA (ES256) or
 * CKM_RSA_PKCS over the SHA-256 DigestInfo (RS256) on the digest the core
 * computed.
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
 * the URI's). module overrides the URI's module-path; one of them is needed,
 * and it must be an absolute path. Only initialised tokens are considered,
 * and exactly one must match. Without a PIN the handle opens all the same:
 * public keys can be read, and private-key operations on a token that
 * requires login fail with LK_ERR_KEY_LOCKED.
 *
 * On failure returns LK_ERR_URI (malformed URI, or several tokens match),
 * LK_ERR_MODULE (no module, not loadable, not PKCS#11, C_Initialize failed),
 * LK_ERR_KEY_NOT_FOUND (no such token), LK_ERR_KEY_LOCKED (PIN refused),
 * the pin-source file: LK_ERR_FILE_MISSING (no such file), LK_ERR_FILE_UNUSABLE
 * (permission denied, not a regular file, no PIN on its first line) or
 * LK_ERR_IO (a read error), LK_ERR_DEVICE, LK_ERR_ARG or LK_ERR_NOMEM; sets
 * *out to NULL and writes a one-line reason (no secrets, e.g. "C_Login:
 * CKR_PIN_INCORRECT", "pin-source file /etc/latchkey/pin: Permission
 * denied"; up to about 1100 bytes) into detail, which may be NULL. On
 * success detail is "".
 *
 * Several handles may be open at once, on the same module too: the module is
 * initialised once and finalized when the last handle using it closes (never,
 * if something else in the process had initialised it).
 */
lk_err lk_pkcs11_open(const char *uri, const char *module, const char *pin,
                      lk_pkcs11 **out, char *detail, size_t detail_size);

/* Close the session, finalize the module if this was its last handle, and
 * unload it. No C_Logout: a login belongs to the whole process, and another
 * handle on the token may still need it; the token logs the process out when
 * its last session closes. NULL is a no-op. */
void lk_pkcs11_close(lk_pkcs11 *p11);

/*
 * The secure-element view: generate, public_key, sign_digest, random. The key
 * reference of each call is a pkcs11: URI whose object and/or id attributes
 * name the key; its token attributes, if any, must match the open token
 * (else LK_ERR_KEY_NOT_FOUND); its query (module-path, PIN) is ignored, so
 * the URI given to lk_pkcs11_open can name the key too. A URI that names no object or id, or that matches several
 * keys, is LK_ERR_URI; type= may be private or public (both name the key
 * pair). generate creates no CKA_ID unless the URI gives id=, and refuses
 * (LK_ERR_KEY_EXISTS) a label or id a key already has.
 */
lk_se lk_pkcs11_se(lk_pkcs11 *p11);

/* One key pair on a token, as lk_pkcs11_list_keys reports it. */
typedef struct lk_pkcs11_key_info {
    const unsigned char *label; /* CKA_LABEL bytes (not NUL-terminated; may be empty) */
    size_t label_len;
    const unsigned char *id;    /* CKA_ID bytes (may be empty) */
    size_t id_len;
    lk_alg alg;                 /* LK_ALG_ES256, LK_ALG_RS256, or LK_ALG_NONE: a key latchkey
                                   cannot sign with (why says what it is) */
    unsigned bits;              /* RSA modulus bits, 256 for P-256, 0 when unknown */
    const char *why;            /* "" or, for LK_ALG_NONE, e.g. "EC key on a curve other than P-256" */
} lk_pkcs11_key_info;

/*
 * The key pairs on the open token that latchkey can name: its private key
 * objects, in the token's order, each reported to cb (the pointers are
 * valid during the call only). filter may be NULL, or a pkcs11: URI whose
 * object and/or id narrow the list (its token attributes must match the open
 * token, as for a key reference; its query is ignored). Private objects are
 * invisible before a login: on a token that requires one, a handle opened
 * without a PIN gets LK_ERR_KEY_LOCKED. Other errors: LK_ERR_URI (filter),
 * LK_ERR_KEY_NOT_FOUND (filter names another token), LK_ERR_DEVICE,
 * LK_ERR_NOMEM; lk_pkcs11_last_error says why. No private value is read.
 */
lk_err lk_pkcs11_list_keys(lk_pkcs11 *p11, const char *filter,
                           void (*cb)(void *user, const lk_pkcs11_key_info *key), void *user);

/* The reason for the handle's last failure, e.g. "C_Sign:
 * CKR_KEY_FUNCTION_NOT_PERMITTED". Never NULL, never a secret. */
const char *lk_pkcs11_last_error(const lk_pkcs11 *p11);

/*
 * The open token's serial number (CK_TOKEN_INFO.serialNumber, at most 16
 * characters, its trailing blanks removed) as a NUL-terminated string in out:
 * what a factory records as the secure element's serial. LK_ERR_ARG for a
 * NULL argument, LK_ERR_BUFFER when out_size is under 17 (out is then "" if
 * out_size > 0). Reads what lk_pkcs11_open saw; no call to the token.
 */
lk_err lk_pkcs11_token_serial(const lk_pkcs11 *p11, char *out, size_t out_size);

#ifdef __cplusplus
}
#endif
#endif /* LK_PKCS11_H */
