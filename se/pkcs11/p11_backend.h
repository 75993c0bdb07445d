/*
 * p11_backend.h — private to the PKCS#11 backend's files: the handle and the
 * helpers they share. pkcs11.c: errors, token matching, the module, the
 * token and the session (lk_pkcs11_open/close); p11_objects.c: finding key
 * objects, listing them, exporting public keys; p11_ops.c: the lk_se
 * operations (public key, sign, generate, random). Symbols are hidden from
 * the shared library.
 */
#ifndef LK_P11_BACKEND_H
#define LK_P11_BACKEND_H

#include <p11-kit/pkcs11.h>

#include "p11_internal.h"
#include "latchkey/lk_pkcs11.h"

#define P11_SLOTS_MAX 256u     /* more slots than this is a broken module */
#define P11_ERR_MAX 1200u      /* one line of detail: room for a 1024-byte pin-source path */
#define P11_EC_ATTR_MAX 128u   /* CKA_EC_PARAMS / CKA_EC_POINT of P-256 fit easily */
#define P11_RSA_MOD_MAX (LK_RSA_MAX_BITS / 8u + 1u) /* a leading zero byte allowed */
#define P11_RSA_EXP_MAX 8u

struct lk_pkcs11 {
    void *dl;                    /* dlopen handle */
    CK_FUNCTION_LIST_PTR fl;
    int registered;              /* counted in p11__modules */
    int logged_in;               /* our C_Login succeeded */
    CK_SESSION_HANDLE session;
    int have_session;
    CK_SLOT_ID slot;
    CK_INFO info;                /* for library-* attributes of key URIs */
    CK_SLOT_INFO slot_info;
    CK_TOKEN_INFO token_info;
    char last_error[P11_ERR_MAX];
};

/* DER OBJECT IDENTIFIER of prime256v1: the CKA_EC_PARAMS of a P-256 key. */
P11_HIDDEN extern const CK_BYTE p11__p256_oid[10];

/* # pkcs11.c */

/* Record "fn: CKR_NAME" as the last error; the lk_err for rv (dflt when
 * nothing more precise fits). */
P11_HIDDEN lk_err p11__rv(lk_pkcs11 *p11, const char *fn, CK_RV rv, lk_err dflt);
/* Record msg as the last error; returns err. */
P11_HIDDEN lk_err p11__fail(lk_pkcs11 *p11, lk_err err, const char *msg);
/* 1 when every library, slot and token attribute of u matches. */
P11_HIDDEN int p11__token_matches(const p11_uri *u, const CK_INFO *info, CK_SLOT_ID slot,
                                  const CK_SLOT_INFO *si, const CK_TOKEN_INFO *ti);
/* Parse a URI, recording the parser's reason as the last error. */
P11_HIDDEN lk_err p11__parse(lk_pkcs11 *p11, const char *uri, p11_uri *u);
/* 1 when the application is logged in as the user on this token. */
P11_HIDDEN int p11__logged_in(lk_pkcs11 *p11);
/* LK_ERR_KEY_LOCKED when private objects need a login that has not
 * happened; LK_OK otherwise. */
P11_HIDDEN lk_err p11__need_login(lk_pkcs11 *p11);

/* # p11_objects.c */

/* Parse a key reference and check it against the open handle. */
P11_HIDDEN lk_err p11__key_uri(lk_pkcs11 *p11, const char *key, p11_uri *u);
/* Objects of class cls with the given label and/or id (NULL = any): *count
 * 0, 1 or 2 (more than one), *h the first. */
P11_HIDDEN lk_err p11__find(lk_pkcs11 *p11, CK_OBJECT_CLASS cls, const char *label,
                            const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *h,
                            CK_ULONG *count);
P11_HIDDEN lk_err p11__find_uri(lk_pkcs11 *p11, CK_OBJECT_CLASS cls, const p11_uri *u,
                                CK_OBJECT_HANDLE *h, CK_ULONG *count);
/* The one private key u names. */
P11_HIDDEN lk_err p11__private_key(lk_pkcs11 *p11, const p11_uri *u, CK_OBJECT_HANDLE *h);
/* The algorithm of key object h; *mod_bytes the RSA signature length. */
P11_HIDDEN lk_err p11__key_alg(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, lk_alg *alg,
                               size_t *mod_bytes);
/* The algorithm and SPKI of key object h. */
P11_HIDDEN lk_err p11__export(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, lk_alg *alg, uint8_t *pub,
                              size_t pub_size, size_t *pub_len);

#endif /* LK_P11_BACKEND_H */
