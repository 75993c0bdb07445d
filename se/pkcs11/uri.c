/*
 * uri.c — RFC 7512 pkcs11: URI parser and pin-source reader for the PKCS#11
 * backend. The accepted language and the choices made where the RFC leaves
 * room are described in p11_internal.h.
 */
#include "p11_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "latchkey/lk_util.h"

/* How a value is interpreted once percent-decoded. */
enum uri__kind {
    URI__TEXT,        /* NUL-free text copied into a char field */
    URI__ID,          /* binary CKA_ID */
    URI__SLOT_ID,     /* decimal CK_SLOT_ID */
    URI__VERSION,     /* "M" or "M.m" */
    URI__TYPE,        /* public, private, cert, secret-key, data */
    URI__REFUSED      /* recognised but not supported */
};

typedef struct uri__attr {
    const char *name;
    unsigned have;     /* P11_HAVE_* bit, 0 for refused attributes */
    unsigned char kind;
    unsigned char query; /* 1: belongs in the query, 0: in the path */
    size_t off;        /* offset of the field in p11_uri (text kinds) */
    size_t max;        /* longest decoded value, bytes */
} uri__attr;

#define URI__FIELD(f) offsetof(p11_uri, f)

static const uri__attr uri__attrs[] = {
    { "token", P11_HAVE_TOKEN, URI__TEXT, 0, URI__FIELD(token), P11_LABEL_MAX },
    { "manufacturer", P11_HAVE_MANUFACTURER, URI__TEXT, 0, URI__FIELD(manufacturer), P11_LABEL_MAX },
    { "serial", P11_HAVE_SERIAL, URI__TEXT, 0, URI__FIELD(serial), P11_SERIAL_MAX },
    { "model", P11_HAVE_MODEL, URI__TEXT, 0, URI__FIELD(model), P11_SERIAL_MAX },
    { "library-manufacturer", P11_HAVE_LIB_MANUF, URI__TEXT, 0,
      URI__FIELD(library_manufacturer), P11_LABEL_MAX },
    { "library-description", P11_HAVE_LIB_DESC, URI__TEXT, 0,
      URI__FIELD(library_description), P11_LABEL_MAX },
    { "library-version", P11_HAVE_LIB_VERSION, URI__VERSION, 0, 0, 7 },
    { "slot-manufacturer", P11_HAVE_SLOT_MANUF, URI__TEXT, 0,
      URI__FIELD(slot_manufacturer), P11_LABEL_MAX },
    { "slot-description", P11_HAVE_SLOT_DESC, URI__TEXT, 0,
      URI__FIELD(slot_description), P11_SLOT_DESC_MAX },
    { "slot-id", P11_HAVE_SLOT_ID, URI__SLOT_ID, 0, 0, 20 },
    { "object", P11_HAVE_OBJECT, URI__TEXT, 0, URI__FIELD(object), P11_OBJECT_MAX },
    { "id", P11_HAVE_ID, URI__ID, 0, 0, P11_ID_MAX },
    { "type", P11_HAVE_TYPE, URI__TYPE, 0, 0, 10 },
    { "module-path", P11_HAVE_MODULE_PATH, URI__TEXT, 1, URI__FIELD(module_path), P11_PATH_MAX },
    { "module-name", 0, URI__REFUSED, 1, 0, 0 },
    { "pin-value", P11_HAVE_PIN_VALUE, URI__TEXT, 1, URI__FIELD(pin_value), P11_PIN_MAX },
    { "pin-source", P11_HAVE_PIN_SOURCE, URI__TEXT, 1, URI__FIELD(pin_source), P11_PATH_MAX },
};

static const struct { const char *name; p11_type type; } uri__types[] = {
    { "public", P11_TYPE_PUBLIC },
    { "private", P11_TYPE_PRIVATE },
    { "cert", P11_TYPE_CERT },
    { "secret-key", P11_TYPE_SECRET_KEY },
    { "data", P11_TYPE_DATA },
};

static int uri__hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 7512 pk11-pchar / pk11-qchar without the pct-encoded alternative:
 * unreserved, pk11-res-avail, and '&' in the path or '/', '?', '|' in the
 * query. */
static int uri__char_ok(char c, int query)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    if (c != '\0' && strchr("-._~:[]@!$'()*+,=", c) != NULL)
        return 1;
    if (query)
        return c == '/' || c == '?' || c == '|';
    return c == '&';
}

/* Percent-decode v[0..vlen) into out (at most max bytes). */
static const char *uri__decode(const char *v, size_t vlen, int query,
                               unsigned char *out, size_t max, size_t *out_len)
{
    size_t i = 0, n = 0;

    while (i < vlen) {
        unsigned char c;
        if (v[i] == '%') {
            int hi, lo;
            if (vlen - i < 3)
                return "truncated %-escape";
            hi = uri__hex(v[i + 1]);
            lo = uri__hex(v[i + 2]);
            if (hi < 0 || lo < 0)
                return "%-escape without two hex digits";
            c = (unsigned char)(hi << 4 | lo);
            i += 3;
        } else if (uri__char_ok(v[i], query)) {
            c = (unsigned char)v[i];
            i++;
        } else {
            return "character not allowed here (percent-encode it)";
        }
        if (n == max)
            return "value too long";
        out[n++] = c;
    }
    *out_len = n;
    return NULL;
}

/* Strict unsigned decimal (digits only, no sign) with a value <= max. */
static int uri__decimal(const unsigned char *s, size_t len, unsigned long max,
                        unsigned long *out)
{
    unsigned long v = 0;
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return 0;
        d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}

/* Store one decoded value. */
static const char *uri__store(p11_uri *u, const uri__attr *a,
                              const unsigned char *val, size_t len)
{
    size_t i;
    unsigned long major, minor = 0;

    switch (a->kind) {
    case URI__TEXT:
        if (memchr(val, '\0', len) != NULL)
            return "NUL byte in a text value";
        memcpy((char *)u + a->off, val, len);
        ((char *)u + a->off)[len] = '\0';
        return NULL;
    case URI__ID:
        memcpy(u->id, val, len);
        u->id_len = len;
        return NULL;
    case URI__SLOT_ID:
        if (!uri__decimal(val, len, (unsigned long)-1, &u->slot_id))
            return "slot-id is not a decimal number";
        return NULL;
    case URI__VERSION:
        for (i = 0; i < len && val[i] != '.'; i++)
            ;
        if (!uri__decimal(val, i, 255, &major) ||
            (i < len && !uri__decimal(val + i + 1, len - i - 1, 255, &minor)))
            return "library-version is not M or M.m (0-255 each)";
        u->library_version[0] = (unsigned char)major;
        u->library_version[1] = (unsigned char)minor;
        return NULL;
    case URI__TYPE:
        for (i = 0; i < sizeof uri__types / sizeof uri__types[0]; i++) {
            if (strlen(uri__types[i].name) == len &&
                memcmp(uri__types[i].name, val, len) == 0) {
                u->type = uri__types[i].type;
                return NULL;
            }
        }
        return "type is not public, private, cert, secret-key or data";
    default:
        return "attribute not supported";
    }
}

/* Parse one "name=value" segment s[0..len) of the path or the query. */
static const char *uri__attribute(p11_uri *u, const char *s, size_t len, int query,
                                  unsigned char *tmp)
{
    const char *eq = memchr(s, '=', len);
    const uri__attr *a = NULL;
    size_t name_len, i, vlen = 0;
    const char *why;

    if (len == 0)
        return "empty attribute (doubled or trailing separator)";
    if (eq == NULL)
        return "attribute without '='";
    name_len = (size_t)(eq - s);
    for (i = 0; i < sizeof uri__attrs / sizeof uri__attrs[0]; i++) {
        if (strlen(uri__attrs[i].name) == name_len &&
            memcmp(uri__attrs[i].name, s, name_len) == 0) {
            a = &uri__attrs[i];
            break;
        }
    }
    if (a == NULL)
        return query ? "unknown query attribute" : "unknown path attribute";
    if (a->query != query)
        return query ? "path attribute in the query" : "query attribute in the path";
    if (a->have != 0 && (u->have & a->have) != 0)
        return "attribute given twice";
    if (a->kind == URI__REFUSED)
        return "module-name is not supported (no module registry): use module-path";
    if (eq + 1 == s + len)
        return "empty value";
    why = uri__decode(eq + 1, len - name_len - 1, query, tmp, a->max, &vlen);
    if (why == NULL)
        why = uri__store(u, a, tmp, vlen);
    if (why == NULL)
        u->have |= a->have;
    return why;
}

/* Split s[0..len) at sep and parse each segment. */
static const char *uri__segments(p11_uri *u, const char *base, const char *s,
                                 size_t len, char sep, int query,
                                 unsigned char *tmp, size_t *at)
{
    const char *end = s + len;

    for (;;) {
        const char *next = memchr(s, sep, (size_t)(end - s));
        const char *seg_end = next != NULL ? next : end;
        const char *why = uri__attribute(u, s, (size_t)(seg_end - s), query, tmp);
        if (why != NULL) {
            *at = (size_t)(s - base);
            return why;
        }
        if (next == NULL)
            return NULL;
        s = next + 1;
    }
}

/* see p11_internal.h */
lk_err p11__uri_parse(const char *uri, p11_uri *u, const char **why, size_t *at)
{
    static const char scheme[] = "pkcs11:";
    const size_t scheme_len = sizeof scheme - 1;
    /* Scratch for one decoded value: no value decodes longer than the
     * longest field. Wiped on exit because it may have held the PIN. */
    unsigned char tmp[P11_PATH_MAX + 1];
    const char *msg = NULL, *path, *query;
    size_t len, path_len, where = 0;
    lk_err err = LK_ERR_URI;

    if (why != NULL)
        *why = "";
    if (at != NULL)
        *at = 0;
    if (uri == NULL || u == NULL || why == NULL || at == NULL)
        return LK_ERR_ARG;
    memset(u, 0, sizeof *u);

    len = lk_strnlen(uri, LK_KEY_REF_MAX + 1);
    if (len > LK_KEY_REF_MAX) {
        msg = "URI longer than LK_KEY_REF_MAX";
        goto exit;
    }
    /* RFC 3986: the scheme is case-insensitive. */
    if (len < scheme_len || strncasecmp(uri, scheme, scheme_len) != 0) {
        msg = "not a pkcs11: URI";
        goto exit;
    }
    path = uri + scheme_len;
    query = memchr(path, '?', len - scheme_len);
    path_len = query != NULL ? (size_t)(query - path) : len - scheme_len;

    /* "pkcs11:" alone (or "pkcs11:?...") has an empty path: it matches
     * every token, which is legitimate with exactly one token present. */
    if (path_len > 0)
        msg = uri__segments(u, uri, path, path_len, ';', 0, tmp, &where);
    if (msg == NULL && query != NULL)
        msg = uri__segments(u, uri, query + 1, (size_t)(uri + len - query - 1),
                            '&', 1, tmp, &where);
    if (msg == NULL && (u->have & P11_HAVE_PIN_VALUE) && (u->have & P11_HAVE_PIN_SOURCE))
        msg = "pin-value and pin-source together";
    if (msg == NULL)
        err = LK_OK;

exit:
    lk_wipe(tmp, sizeof tmp);
    if (err != LK_OK) {
        p11__uri_wipe(u);
        *why = msg;
        *at = where;
    }
    return err;
}

/* see p11_internal.h */
void p11__uri_wipe(p11_uri *u)
{
    if (u != NULL)
        lk_wipe(u, sizeof *u);
}

/* The file name a pin-source value names, or NULL with *why set. */
static const char *pin__path(const char *source, const char **why)
{
    const char *p = source;
    size_t i;

    if (strncmp(p, "file:", 5) == 0) {
        p += 5;
        if (strncmp(p, "//", 2) == 0) {
            /* file:///path (empty authority) or file://localhost/path. */
            if (p[2] == '/')
                p += 2;
            else if (strncmp(p + 2, "localhost/", 10) == 0)
                p += 11;
            else {
                *why = "pin-source: a file: URI with a host";
                return NULL;
            }
        }
    } else {
        /* Something that looks like another URI scheme ("env:", "https:")
         * is refused rather than read as a relative path; so is
         * "|command", which some implementations run. */
        for (i = 0; p[i] != '\0' && p[i] != '/'; i++) {
            char c = p[i];
            if (c == ':' && i > 0) {
                *why = "pin-source: only file: and plain paths are supported";
                return NULL;
            }
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))))
                break;
        }
        if (p[0] == '|') {
            *why = "pin-source: running a command is not supported";
            return NULL;
        }
    }
    if (*p == '\0') {
        *why = "pin-source: empty file name";
        return NULL;
    }
    return p;
}

/* What an open() failure means for a file the configuration names: it is
 * not there (a restart will not bring it), it may not be used, or the
 * system failed (perhaps for a moment). */
static lk_err pin__open_err(int e)
{
    if (e == ENOENT || e == ENOTDIR)
        return LK_ERR_FILE_MISSING;
    if (e == EACCES || e == EPERM || e == ELOOP || e == EISDIR || e == ENXIO || e == ENAMETOOLONG)
        return LK_ERR_FILE_UNUSABLE;
    return LK_ERR_IO;
}

/* see p11_internal.h */
lk_err p11__pin_read(const char *source, char *pin, size_t pin_size,
                     size_t *pin_len, char *why, size_t why_size)
{
    /* One byte more than the longest line and its "\r\n", so that an
     * over-long first line is seen as such. */
    char buf[P11_PIN_MAX + 3];
    size_t n = 0, line;
    const char *path, *msg = "";
    struct stat st;
    lk_err err = LK_ERR_FILE_UNUSABLE;
    int fd = -1, e = 0;

    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (pin_len != NULL)
        *pin_len = 0;
    if (source == NULL || pin == NULL || pin_len == NULL || why == NULL || why_size == 0 ||
        pin_size <= P11_PIN_MAX)
        return LK_ERR_ARG;
    lk_wipe(pin, pin_size);

    path = pin__path(source, &msg);
    if (path == NULL) {
        snprintf(why, why_size, "%s", msg);
        err = LK_ERR_URI;
        goto exit;
    }
    /* O_NONBLOCK: a FIFO must not block the open (it is refused below). */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        e = errno;
        err = pin__open_err(e);
        snprintf(why, why_size, "pin-source file %s: %s", path, strerror(e));
        goto exit;
    }
    /* A FIFO or device could block forever or never end. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, why_size, "pin-source file %s: not a regular file", path);
        goto exit;
    }
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            err = LK_ERR_IO;
            snprintf(why, why_size, "pin-source file %s: read error: %s", path, strerror(e));
            goto exit;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (memchr(buf, '\n', n) != NULL)
            break;
    }
    for (line = 0; line < n && buf[line] != '\n'; line++)
        ;
    if (line == n && n == sizeof buf)
        line = sizeof buf; /* no end in sight: too long */
    else if (line > 0 && buf[line - 1] == '\r')
        line--;
    if (line == 0) {
        snprintf(why, why_size, "pin-source file %s: the first line is empty (the PIN is the "
                 "file's first line)", path);
        goto exit;
    }
    if (line > P11_PIN_MAX) {
        snprintf(why, why_size, "pin-source file %s: the first line is longer than %u bytes",
                 path, P11_PIN_MAX);
        goto exit;
    }
    if (memchr(buf, '\0', line) != NULL) {
        snprintf(why, why_size, "pin-source file %s: NUL byte in the first line", path);
        goto exit;
    }
    memcpy(pin, buf, line);
    pin[line] = '\0';
    *pin_len = line;
    err = LK_OK;

exit:
    if (fd >= 0)
        close(fd);
    lk_wipe(buf, sizeof buf);
    if (err != LK_OK) {
        lk_wipe(pin, pin_size);
        *pin_len = 0;
    }
    return err;
}
