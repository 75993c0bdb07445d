/* What the two tools (latchkey, latchkey-device) share: exit codes for
 * library errors (the table: tools/common/exit.h), error lines on stderr,
 * number parsing. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

const char *tool_name = "latchkey";

int tool_exit_code(lk_err err)
{
    switch (err) {
    case LK_OK: return EXIT_OK;
    case LK_ERR_ARG: case LK_ERR_URI: case LK_ERR_CLAIM_NAME: return EXIT_USAGE;
    case LK_ERR_KEY_NOT_FOUND: case LK_ERR_STORE_MISSING: case LK_ERR_FILE_MISSING: return EXIT_NOT_FOUND;
    case LK_ERR_FILE_UNUSABLE: return EXIT_FILE;
    case LK_ERR_KEY_LOCKED: return EXIT_LOCKED;
    case LK_ERR_MODULE: return EXIT_MODULE;
    case LK_ERR_BUFFER: return EXIT_TOO_LARGE;
    case LK_ERR_STORE_CORRUPT: case LK_ERR_STORE_FOREIGN: case LK_ERR_STORE_PERMS: return EXIT_STORE;
    case LK_ERR_KEY_EXISTS: return EXIT_EXISTS;
    case LK_ERR_SIGN: case LK_ERR_DEVICE: case LK_ERR_RNG: case LK_ERR_KEY_TYPE: case LK_ERR_KEY_WEAK:
        return EXIT_DEVICE;
    case LK_ERR_TOKEN_TOO_LARGE: case LK_ERR_TOKEN_MALFORMED: case LK_ERR_TOKEN_ALG:
    case LK_ERR_TOKEN_HEADER: case LK_ERR_TOKEN_CLAIM: case LK_ERR_TOKEN_AUDIENCE:
    case LK_ERR_TOKEN_EXPIRED: case LK_ERR_TOKEN_FUTURE: case LK_ERR_TOKEN_LIFETIME:
    case LK_ERR_TOKEN_SIGNATURE: case LK_ERR_NO_CREDENTIAL: case LK_ERR_CRED_INVALID: return EXIT_INVALID;
    case LK_ERR_REG_NOT_FOUND: return EXIT_REG_NOT_FOUND;
    case LK_ERR_REG_EXISTS: return EXIT_REG_EXISTS;
    case LK_ERR_REG_CONFLICT: return EXIT_REG_CONFLICT;
    case LK_ERR_REG_LIMIT: return EXIT_REG_LIMIT;
    case LK_ERR_REG_INVALID: return EXIT_REG_INVALID;
    case LK_ERR_REG_CERT: return EXIT_REG_CERT;
    case LK_ERR_REG_NOT_EMPTY: return EXIT_REG_NOT_EMPTY;
    case LK_ERR_REG_BUSY: return EXIT_REG_BUSY;
    case LK_ERR_REG_STORAGE: case LK_ERR_REG_SCHEMA: return EXIT_REG_STORAGE;
    case LK_ERR_REFUSED: return EXIT_DEV_REFUSED;
    case LK_ERR_TLS: return EXIT_DEV_TLS;
    case LK_ERR_NET: case LK_ERR_TIMEOUT: return EXIT_DEV_NETWORK;
    default: return EXIT_FAIL;
    }
}

int tool_registry_exit_code(lk_err err)
{
    switch (err) {
    case LK_ERR_REG_NOT_FOUND: return EXIT_REG_NOT_FOUND;
    case LK_ERR_REG_EXISTS: return EXIT_REG_EXISTS;
    case LK_ERR_REG_CONFLICT: return EXIT_REG_CONFLICT;
    case LK_ERR_REG_LIMIT: return EXIT_REG_LIMIT;
    case LK_ERR_REG_INVALID: case LK_ERR_CRED_INVALID: case LK_ERR_KEY_WEAK:
    case LK_ERR_ENCODING: return EXIT_REG_INVALID;
    case LK_ERR_REG_CERT: return EXIT_REG_CERT;
    case LK_ERR_REG_NOT_EMPTY: return EXIT_REG_NOT_EMPTY;
    case LK_ERR_REG_BUSY: return EXIT_REG_BUSY;
    case LK_ERR_REG_STORAGE: case LK_ERR_REG_SCHEMA: return EXIT_REG_STORAGE;
    default: return tool_exit_code(err);
    }
}

int tool_file_exit(int errnum)
{
    switch (errnum) {
    case ENOENT: case ENOTDIR: return EXIT_NOT_FOUND;
    case EACCES: case EPERM: case ELOOP: case EISDIR: case ENXIO: case ENAMETOOLONG: return EXIT_FILE;
    default: return EXIT_FAIL;
    }
}

void tool_error(const char *context, lk_err err, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: %s: ", tool_name, context);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (%s)\n", lk_errname(err));
}

const char *tool_shown(const char *s)
{
    static char bufs[4][2 * LK_KEY_REF_MAX + 8];
    static unsigned next;
    char *b = bufs[next++ % 4];
    size_t n = lk_key_ref_redact(s, b, sizeof bufs[0]);
    if (n >= sizeof bufs[0])
        memcpy(b + sizeof bufs[0] - 4, "...", 4);
    return b;
}

int tool_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", tool_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return EXIT_USAGE;
}

int tool_bad_option(int argc, char **argv, int optind_now)
{
    const char *arg = optind_now >= 2 && optind_now - 1 < argc ? argv[optind_now - 1] : NULL;
    char name[64];
    size_t n;
    if (arg == NULL || arg[0] != '-')
        return tool_usage_error("unknown option, or an option without its value (see --help)");
    n = strcspn(arg, "=");
    if (n >= sizeof name)
        n = sizeof name - 1;
    memcpy(name, arg, n);
    name[n] = '\0';
    return tool_usage_error("unknown option '%s', or an option without its value (see --help)",
                            tool_shown(name));
}

int tool_parse_format(const char *ctx, const char *arg, int *json)
{
    if (strcmp(arg, "json") == 0)
        *json = 1;
    else if (strcmp(arg, "text") == 0)
        *json = 0;
    else
        return tool_usage_error("%s%s--format must be text or json, not '%s'", ctx != NULL ? ctx : "",
                                ctx != NULL ? ": " : "", tool_shown(arg));
    return EXIT_OK;
}

int tool_parse_i64(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    long long v;
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

void tool_hex(const uint8_t *d, size_t n, char *out)
{
    static const char x[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[2 * n] = '\0';
}
