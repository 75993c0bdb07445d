/*
 * lk_error.h — the one error type of latchkey.
 *
 * Every fallible function of the library returns an lk_err. LK_OK is zero;
 * every failure is a distinct positive value, so a caller can test
 * `if (err != LK_OK)` and a tool can print lk_strerror(err). The values are
 * part of the ABI: new codes are appended, never renumbered.
 *
 * Freestanding: this header needs nothing beyond the compiler's own headers.
 */
#ifndef LK_ERROR_H
#define LK_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lk_err {
    LK_OK = 0,

    /* Caller mistakes. */
    LK_ERR_ARG = 1,            /* a NULL pointer, zero size or out-of-range value */
    LK_ERR_BUFFER = 2,         /* the caller's output buffer is too small */
    LK_ERR_STATE = 3,          /* a call out of order (e.g. add after finalize) */
    LK_ERR_UNSUPPORTED = 4,    /* algorithm or operation not offered */

    /* Encoding and token building. */
    LK_ERR_ENCODING = 10,      /* bad base64url, bad UTF-8, non-canonical input */
    LK_ERR_CLAIM_NAME = 11,    /* claim name empty, too long or outside [A-Za-z0-9_] */
    LK_ERR_CLAIM_DUP = 12,     /* the same claim name added twice */
    LK_ERR_TOO_MANY = 13,      /* more claims (or items) than the fixed table holds */

    /* Keys and secure elements. */
    LK_ERR_KEY_NOT_FOUND = 20, /* no key of that name / slot / URI */
    LK_ERR_KEY_EXISTS = 21,    /* generate into an occupied name or slot */
    LK_ERR_KEY_TYPE = 22,      /* the key is not of the requested algorithm */
    LK_ERR_KEY_LOCKED = 23,    /* slot locked, token not logged in, PIN refused */
    LK_ERR_SIGN = 24,          /* the secure element failed to sign */
    LK_ERR_RNG = 25,           /* no random bytes */
    LK_ERR_DEVICE = 26,        /* the secure element or token failed otherwise */
    LK_ERR_MODULE = 27,        /* a PKCS#11 module could not be loaded or initialised */
    LK_ERR_URI = 28,           /* a malformed key reference or pkcs11: URI */
    LK_ERR_KEY_WEAK = 29,      /* RSA below 2048 bits, or a curve other than P-256 */

    /* Files and system resources (Linux side only). */
    LK_ERR_IO = 40,            /* a file could not be read or written */
    LK_ERR_STORE_CORRUPT = 41, /* a key store is truncated or fails its checksum */
    LK_ERR_STORE_FOREIGN = 42, /* the file is not a latchkey key store (or a newer one) */
    LK_ERR_STORE_PERMS = 43,   /* the key store is readable or writable by others */
    LK_ERR_NOMEM = 44,         /* an allocation failed */
    LK_ERR_CRYPTO = 45,        /* the crypto library failed unexpectedly */
    LK_ERR_STORE_MISSING = 46, /* the key store file does not exist */
    LK_ERR_FILE_MISSING = 47,  /* a file named in the configuration (PIN file, CA file) does not exist */
    LK_ERR_FILE_UNUSABLE = 48, /* a file exists but cannot be used: permission denied, not a
                                  regular file, or not what it must hold (a CA file without a
                                  certificate, a PIN file without a PIN) */

    /* Token verification (service side): one precise reason each. */
    LK_ERR_TOKEN_TOO_LARGE = 60, /* longer than the policy's cap: nothing parsed */
    LK_ERR_TOKEN_MALFORMED = 61, /* not three base64url segments of JSON objects */
    LK_ERR_TOKEN_ALG = 62,       /* alg is not ES256/RS256, or no credential of that alg */
    LK_ERR_TOKEN_HEADER = 63,    /* a header parameter we refuse: crit, jwk, jku, x5u, x5c */
    LK_ERR_TOKEN_CLAIM = 64,     /* iat, exp or aud missing or of the wrong type/range */
    LK_ERR_TOKEN_AUDIENCE = 65,  /* aud is not the project id */
    LK_ERR_TOKEN_EXPIRED = 66,   /* exp + skew is in the past */
    LK_ERR_TOKEN_FUTURE = 67,    /* iat - skew is in the future */
    LK_ERR_TOKEN_LIFETIME = 68,  /* exp - iat over the maximum (+ skew), or exp <= iat */
    LK_ERR_TOKEN_SIGNATURE = 69, /* no usable credential verifies the signature */
    LK_ERR_NO_CREDENTIAL = 70,   /* the device has no unexpired credential */
    LK_ERR_CRED_INVALID = 71,    /* a credential is not a usable key of its format */

    /* Device registry (service side). */
    LK_ERR_REG_NOT_FOUND = 80, /* no such project/registry/device/version */
    LK_ERR_REG_EXISTS = 81,    /* an id that is taken */
    LK_ERR_REG_CONFLICT = 82,  /* version_to_update is not the current version */
    LK_ERR_REG_LIMIT = 83,     /* a count or size limit (4th credential, 65 KB config...) */
    LK_ERR_REG_INVALID = 84,   /* an invalid name, value or document */
    LK_ERR_REG_CERT = 85,      /* not signed by a registry CA, CA expired, weak key */
    LK_ERR_REG_NOT_EMPTY = 86, /* deleting a registry that still has devices */
    LK_ERR_REG_BUSY = 87,      /* the database stayed locked past the busy timeout */
    LK_ERR_REG_STORAGE = 88,   /* the database failed (I/O, corruption, full disk) */
    LK_ERR_REG_SCHEMA = 89,    /* the database is of a newer schema version */

    /* The device client (lk_device.h). */
    LK_ERR_NET = 100,          /* the connection could not be made, or was lost */
    LK_ERR_TLS = 101,          /* the server was not authenticated (certificate, name, TLS) */
    LK_ERR_REFUSED = 102,      /* the server refused the connection (CONNACK) */
    LK_ERR_QUEUE_FULL = 103,   /* the outgoing queue is full: nothing was queued */
    LK_ERR_TOO_LARGE = 104,    /* a message larger than the protocol allows */
    LK_ERR_TIMEOUT = 105,      /* no answer in the time allowed */

    LK_ERR__END                /* not an error: one past the last code */
} lk_err;

/*
 * A short English sentence for err, never NULL, never containing secrets.
 * Unknown values give "unknown error".
 */
const char *lk_strerror(lk_err err);

/* The symbolic name ("LK_ERR_BUFFER"), for logs and JSON output. */
const char *lk_errname(lk_err err);

#ifdef __cplusplus
}
#endif
#endif /* LK_ERROR_H */
