/*
 * p11_internal.h — private to the PKCS#11 backend (se/pkcs11/) and its unit
 * test: the parsed form of an RFC 7512 pkcs11: URI, the parser, and the PIN
 * file reader. Nothing here is part of the installed API; the symbols are
 * hidden from the shared library.
 *
 * # What the parser accepts (docs/pkcs11.md has the user-facing version)
 *
 * pkcs11:<path>[?<query>], the scheme case-insensitive, the whole URI at most
 * LK_KEY_REF_MAX characters.
 *
 * Path attributes (separated by ';'): token, manufacturer, serial, model,
 * library-manufacturer, library-description, library-version, slot-manufacturer,
 * slot-description, slot-id, object, id, type. Query attributes (separated by
 * '&'): module-path, pin-value, pin-source; module-name is recognised and
 * refused (latchkey has no p11-kit module registry to look the name up in).
 *
 * Safe choices where the RFC leaves room:
 *  - an unknown attribute, path or query, vendor "x-" ones included, is an
 *    error: ignoring a path attribute would widen the match (RFC 7512 says it
 *    must match nothing), and an error says why better than an empty match;
 *  - an attribute given twice, an empty value, an empty segment (";;", a
 *    trailing ';' or '?'), pin-value together with pin-source: errors;
 *  - values use only the characters RFC 7512's grammar allows (anything else,
 *    including '/' in the path, must be percent-encoded) and %XX escapes with
 *    two hex digits; decoded values are bounded by the PKCS#11 field they are
 *    compared with (token label 32 bytes, serial 16, ...), so an over-long
 *    value is reported instead of silently matching nothing;
 *  - decoded text values may not contain NUL; id is binary and may;
 *  - attribute names are case-sensitive, as every implementation spells them.
 *
 * Error messages name the problem and its byte offset in the URI, never the
 * value: a value may be a PIN.
 */
#ifndef LK_P11_INTERNAL_H
#define LK_P11_INTERNAL_H

#include <stddef.h>
#include "latchkey/lk_error.h"
#include "latchkey/lk_se.h"

#define P11_HIDDEN __attribute__((visibility("hidden")))

/* Bounds on decoded values: the PKCS#11 fields they are compared with
 * (CK_TOKEN_INFO, CK_SLOT_INFO, CK_INFO), or a generous size for the rest. */
#define P11_LABEL_MAX 32u      /* token label, manufacturer IDs, library description */
#define P11_SERIAL_MAX 16u     /* token serial number and model */
#define P11_SLOT_DESC_MAX 64u  /* slot description */
#define P11_OBJECT_MAX 255u    /* CKA_LABEL of a key */
#define P11_ID_MAX 64u         /* CKA_ID of a key, bytes */
#define P11_PATH_MAX 1024u     /* module-path, pin-source */
#define P11_PIN_MAX 255u       /* pin-value, and the first line of a pin-source file */

/* Which attributes a URI has (p11_uri.have). */
#define P11_HAVE_TOKEN          (1u << 0)
#define P11_HAVE_MANUFACTURER   (1u << 1)
#define P11_HAVE_SERIAL         (1u << 2)
#define P11_HAVE_MODEL          (1u << 3)
#define P11_HAVE_LIB_MANUF      (1u << 4)
#define P11_HAVE_LIB_DESC       (1u << 5)
#define P11_HAVE_LIB_VERSION    (1u << 6)
#define P11_HAVE_SLOT_MANUF     (1u << 7)
#define P11_HAVE_SLOT_DESC      (1u << 8)
#define P11_HAVE_SLOT_ID        (1u << 9)
#define P11_HAVE_OBJECT         (1u << 10)
#define P11_HAVE_ID             (1u << 11)
#define P11_HAVE_TYPE           (1u << 12)
#define P11_HAVE_MODULE_PATH    (1u << 13)
#define P11_HAVE_PIN_VALUE      (1u << 14)
#define P11_HAVE_PIN_SOURCE     (1u << 15)

/* The attributes that select a library, slot or token (not an object). */
#define P11_HAVE_TOKEN_ATTRS \
    (P11_HAVE_TOKEN | P11_HAVE_MANUFACTURER | P11_HAVE_SERIAL | P11_HAVE_MODEL | \
     P11_HAVE_LIB_MANUF | P11_HAVE_LIB_DESC | P11_HAVE_LIB_VERSION | \
     P11_HAVE_SLOT_MANUF | P11_HAVE_SLOT_DESC | P11_HAVE_SLOT_ID)

typedef enum p11_type {
    P11_TYPE_ANY = 0,     /* no type attribute */
    P11_TYPE_PUBLIC,
    P11_TYPE_PRIVATE,
    P11_TYPE_CERT,
    P11_TYPE_SECRET_KEY,
    P11_TYPE_DATA
} p11_type;

/* A parsed URI. Text values are decoded and NUL-terminated. Holds the PIN
 * when pin-value is given: wipe it with p11__uri_wipe. */
typedef struct p11_uri {
    unsigned have;  /* P11_HAVE_* */
    char token[P11_LABEL_MAX + 1];
    char manufacturer[P11_LABEL_MAX + 1];
    char serial[P11_SERIAL_MAX + 1];
    char model[P11_SERIAL_MAX + 1];
    char library_manufacturer[P11_LABEL_MAX + 1];
    char library_description[P11_LABEL_MAX + 1];
    unsigned char library_version[2];  /* major, minor ("2" means 2.0) */
    char slot_manufacturer[P11_LABEL_MAX + 1];
    char slot_description[P11_SLOT_DESC_MAX + 1];
    unsigned long slot_id;
    char object[P11_OBJECT_MAX + 1];
    unsigned char id[P11_ID_MAX];
    size_t id_len;
    p11_type type;
    char module_path[P11_PATH_MAX + 1];
    char pin_value[P11_PIN_MAX + 1];
    char pin_source[P11_PATH_MAX + 1];
} p11_uri;

/*
 * Parse the NUL-terminated uri into *u. LK_OK, or LK_ERR_ARG (NULL pointer)
 * or LK_ERR_URI with *why set to a static sentence and *at to the byte
 * offset of the offending attribute. On failure *u is wiped.
 */
P11_HIDDEN lk_err p11__uri_parse(const char *uri, p11_uri *u,
                                 const char **why, size_t *at);

/* Overwrite the whole structure (it may hold a PIN). */
P11_HIDDEN void p11__uri_wipe(p11_uri *u);

/*
 * Read a PIN from a pin-source value: "file:/abs/path", "file:///abs/path",
 * or a plain path. The PIN is the file's first line without its "\n" or
 * "\r\n": 1 to P11_PIN_MAX bytes, no NUL. The file must be a regular file.
 * Writes the PIN NUL-terminated into pin (pin_size > P11_PIN_MAX) and its
 * length into *pin_len. Errors: LK_ERR_URI (another scheme than file:, a
 * file: URI with a host); LK_ERR_FILE_MISSING (no such file: ENOENT,
 * ENOTDIR); LK_ERR_FILE_UNUSABLE (permission denied, a symbolic-link loop,
 * a directory, FIFO or other non-regular file, an empty or over-long first
 * line, a NUL byte in it); LK_ERR_IO (the system failed otherwise: EIO,
 * EMFILE...). why (why_size > 0 bytes) receives one line naming the file
 * and the reason, the system's (strerror) for open and read failures,
 * e.g. "pin-source file /etc/latchkey/pin: Permission denied"; never the
 * file's content. On failure pin is wiped and *pin_len is 0.
 */
P11_HIDDEN lk_err p11__pin_read(const char *source, char *pin, size_t pin_size,
                                size_t *pin_len, char *why, size_t why_size);

#endif /* LK_P11_INTERNAL_H */
