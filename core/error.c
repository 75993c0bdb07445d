/* lk_strerror / lk_errname: see lk_error.h. */
#include <stddef.h>

#include "latchkey/lk_error.h"

struct lk_err_text {
    lk_err code;
    const char *name;
    const char *text;
};

static const struct lk_err_text lk_err_texts[] = {
    {LK_OK, "LK_OK", "success"},
    {LK_ERR_ARG, "LK_ERR_ARG", "invalid argument"},
    {LK_ERR_BUFFER, "LK_ERR_BUFFER", "output buffer too small"},
    {LK_ERR_STATE, "LK_ERR_STATE", "call out of order"},
    {LK_ERR_UNSUPPORTED, "LK_ERR_UNSUPPORTED", "algorithm or operation not supported"},
    {LK_ERR_ENCODING, "LK_ERR_ENCODING", "invalid encoding (base64url or UTF-8)"},
    {LK_ERR_CLAIM_NAME, "LK_ERR_CLAIM_NAME", "invalid claim name (1-16 characters of A-Z a-z 0-9 _)"},
    {LK_ERR_CLAIM_DUP, "LK_ERR_CLAIM_DUP", "claim added twice"},
    {LK_ERR_TOO_MANY, "LK_ERR_TOO_MANY", "too many items"},
    {LK_ERR_KEY_NOT_FOUND, "LK_ERR_KEY_NOT_FOUND", "no such key"},
    {LK_ERR_KEY_EXISTS, "LK_ERR_KEY_EXISTS", "a key of that name already exists"},
    {LK_ERR_KEY_TYPE, "LK_ERR_KEY_TYPE", "key is of another algorithm"},
    {LK_ERR_KEY_LOCKED, "LK_ERR_KEY_LOCKED", "key locked or PIN refused"},
    {LK_ERR_SIGN, "LK_ERR_SIGN", "signing failed"},
    {LK_ERR_RNG, "LK_ERR_RNG", "random generator failed"},
    {LK_ERR_DEVICE, "LK_ERR_DEVICE", "secure element failed"},
    {LK_ERR_MODULE, "LK_ERR_MODULE", "PKCS#11 module could not be loaded"},
    {LK_ERR_URI, "LK_ERR_URI", "malformed key reference or pkcs11 URI"},
    {LK_ERR_KEY_WEAK, "LK_ERR_KEY_WEAK", "key too weak (RSA below 2048 bits or curve not P-256)"},
    {LK_ERR_IO, "LK_ERR_IO", "file input/output failed"},
    {LK_ERR_STORE_CORRUPT, "LK_ERR_STORE_CORRUPT", "key store is corrupt or truncated"},
    {LK_ERR_STORE_FOREIGN, "LK_ERR_STORE_FOREIGN", "not a latchkey key store (or a newer format)"},
    {LK_ERR_STORE_PERMS, "LK_ERR_STORE_PERMS", "key store is accessible to other users (must be mode 0600, owned by you)"},
    {LK_ERR_NOMEM, "LK_ERR_NOMEM", "out of memory"},
    {LK_ERR_CRYPTO, "LK_ERR_CRYPTO", "cryptographic library failure"},
    {LK_ERR_STORE_MISSING, "LK_ERR_STORE_MISSING", "key store file does not exist"},
    {LK_ERR_FILE_MISSING, "LK_ERR_FILE_MISSING", "a file it needs does not exist"},
    {LK_ERR_FILE_UNUSABLE, "LK_ERR_FILE_UNUSABLE",
     "a file it needs cannot be used (permission denied, not a regular file, or not what it must hold)"},
    {LK_ERR_TOKEN_TOO_LARGE, "LK_ERR_TOKEN_TOO_LARGE", "token too large"},
    {LK_ERR_TOKEN_MALFORMED, "LK_ERR_TOKEN_MALFORMED", "token malformed"},
    {LK_ERR_TOKEN_ALG, "LK_ERR_TOKEN_ALG", "unsupported algorithm (or none of the device's keys is of it)"},
    {LK_ERR_TOKEN_HEADER, "LK_ERR_TOKEN_HEADER", "token header has a refused parameter (crit, jwk, jku, x5u, x5c)"},
    {LK_ERR_TOKEN_CLAIM, "LK_ERR_TOKEN_CLAIM", "required claim missing or invalid (iat, exp, aud)"},
    {LK_ERR_TOKEN_AUDIENCE, "LK_ERR_TOKEN_AUDIENCE", "wrong audience (aud is not the project id)"},
    {LK_ERR_TOKEN_EXPIRED, "LK_ERR_TOKEN_EXPIRED", "token expired"},
    {LK_ERR_TOKEN_FUTURE, "LK_ERR_TOKEN_FUTURE", "token issued in the future (iat beyond the clock skew)"},
    {LK_ERR_TOKEN_LIFETIME, "LK_ERR_TOKEN_LIFETIME", "token lifetime too long (exp - iat)"},
    {LK_ERR_TOKEN_SIGNATURE, "LK_ERR_TOKEN_SIGNATURE", "bad signature: no credential of the device verifies it"},
    {LK_ERR_NO_CREDENTIAL, "LK_ERR_NO_CREDENTIAL", "no usable credential (none registered, or all expired)"},
    {LK_ERR_CRED_INVALID, "LK_ERR_CRED_INVALID", "credential is not a usable key of its format"},
    {LK_ERR_REG_NOT_FOUND, "LK_ERR_REG_NOT_FOUND", "no such project, registry, device or version"},
    {LK_ERR_REG_EXISTS, "LK_ERR_REG_EXISTS", "that id is already taken"},
    {LK_ERR_REG_CONFLICT, "LK_ERR_REG_CONFLICT", "version conflict: the config changed since the version given"},
    {LK_ERR_REG_LIMIT, "LK_ERR_REG_LIMIT", "a count or size limit would be exceeded"},
    {LK_ERR_REG_INVALID, "LK_ERR_REG_INVALID", "invalid name, value or document"},
    {LK_ERR_REG_CERT, "LK_ERR_REG_CERT", "certificate not accepted by the registry's CA certificates"},
    {LK_ERR_REG_NOT_EMPTY, "LK_ERR_REG_NOT_EMPTY", "the registry still has devices"},
    {LK_ERR_REG_BUSY, "LK_ERR_REG_BUSY", "the registry database stayed locked past the busy timeout"},
    {LK_ERR_REG_STORAGE, "LK_ERR_REG_STORAGE", "the registry database failed (I/O, corruption or full disk)"},
    {LK_ERR_REG_SCHEMA, "LK_ERR_REG_SCHEMA", "the registry database has a newer schema than this program"},
    {LK_ERR_NET, "LK_ERR_NET", "connection failed or lost"},
    {LK_ERR_TLS, "LK_ERR_TLS", "server not authenticated (certificate, host name or TLS version)"},
    {LK_ERR_REFUSED, "LK_ERR_REFUSED", "the server refused the connection"},
    {LK_ERR_QUEUE_FULL, "LK_ERR_QUEUE_FULL", "outgoing queue full"},
    {LK_ERR_TOO_LARGE, "LK_ERR_TOO_LARGE", "message larger than the protocol allows"},
    {LK_ERR_TIMEOUT, "LK_ERR_TIMEOUT", "no answer in time"},
};

static const struct lk_err_text *lk_err_find(lk_err err)
{
    size_t i;
    for (i = 0; i < sizeof lk_err_texts / sizeof lk_err_texts[0]; i++)
        if (lk_err_texts[i].code == err)
            return &lk_err_texts[i];
    return 0;
}

const char *lk_strerror(lk_err err)
{
    const struct lk_err_text *t = lk_err_find(err);
    return t ? t->text : "unknown error";
}

const char *lk_errname(lk_err err)
{
    const struct lk_err_text *t = lk_err_find(err);
    return t ? t->name : "LK_ERR_UNKNOWN";
}
