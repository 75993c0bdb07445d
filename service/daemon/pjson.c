/*
 * pjson.c — the proto3 JSON mapping, as Google's APIs apply it
 * (docs/daemon.md, "JSON"): field names camelCase out and either spelling
 * in (never both); int64 as strings (numbers accepted); bytes as base64,
 * standard or URL-safe, padding optional; timestamps RFC 3339; enums by name,
 * or by number when the request says $alt=json;enum-encoding=int (names are
 * accepted either way). Unknown fields are refused, as Google's front end
 * does, naming the field.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include <event2/buffer.h>

#include "daemon.h"

/* camelCase -> snake_case ("numId" -> "num_id"). */
static void snake_of(const char *camel, char *out, size_t size)
{
    size_t o = 0;
    for (const char *p = camel; *p && o + 2 < size; p++) {
        if (isupper((unsigned char)*p)) {
            out[o++] = '_';
            out[o++] = (char)tolower((unsigned char)*p);
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* snake_case -> camelCase ("num_id" -> "numId"); dots kept. */
static void camel_of(const char *snake, size_t n, char *out, size_t size)
{
    size_t o = 0;
    int up = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        char ch = snake[i];
        if (ch == '_') {
            up = 1;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)ch) : ch;
        up = 0;
    }
    out[o] = '\0';
}

json_t *lkd_field(struct lkd_call *c, json_t *obj, const char *camel, const char *snake, int *bad)
{
    char sn[64];
    if (snake == NULL) {
        snake_of(camel, sn, sizeof sn);
        snake = sn;
    }
    json_t *a = json_object_get(obj, camel);
    json_t *b = strcmp(camel, snake) != 0 ? json_object_get(obj, snake) : NULL;
    if (a != NULL && b != NULL) {
        *bad = 1;
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "Invalid JSON payload received: both \"%s\" and \"%s\" given",
                        camel, snake);
        return NULL;
    }
    return a ? a : b;
}

int lkd_array_field(struct lkd_call *c, json_t *obj, const char *camel, size_t max, json_t **out)
{
    int bad = 0;
    *out = lkd_field(c, obj, camel, NULL, &bad);
    if (bad)
        return -1;
    if (*out != NULL && (!json_is_array(*out) || json_array_size(*out) > max)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be an array of at most %zu", camel, max);
        return -1;
    }
    return 0;
}

int lkd_known_fields(struct lkd_call *c, json_t *obj, const char *what, const char *const *camel_names)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        /* Exactly a field's json_name or its proto name, the two lkd_field
         * reads: "num__id" or "num_id_" would pass a camel-cased
         * comparison and then be ignored (found by fuzz_api_body). */
        int known = 0;
        for (const char *const *n = camel_names; *n && !known; n++) {
            char sn[64];
            snake_of(*n, sn, sizeof sn);
            known = strcmp(key, *n) == 0 || strcmp(key, sn) == 0;
        }
        if (!known) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                            "Invalid JSON payload received. Unknown name \"%.64s\" at '%s': Cannot find field.",
                            key, what);
            return -1;
        }
    }
    return 0;
}

int lkd_int64(struct lkd_call *c, json_t *v, const char *what, int64_t min, int64_t max, int64_t *out)
{
    long long n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || isspace((unsigned char)s[0])) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be an integer (as a string), not \"%.32s\"", what, s);
            return -1;
        }
    } else {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be an integer (as a string)", what);
        return -1;
    }
    if (n < min || n > max) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be from %lld to %lld", what, (long long)min,
                        (long long)max);
        return -1;
    }
    *out = n;
    return 0;
}

int lkd_query_int(struct lkd_call *c, const char *name, int64_t min, int64_t max, int64_t def, int64_t *out)
{
    const char *v = lkd_query(c, name);
    if (v == NULL || v[0] == '\0') {
        *out = def;
        return 0;
    }
    json_t *s = json_string(v);
    if (s == NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s is not valid text", name);
        return -1;
    }
    int rc = lkd_int64(c, s, name, min, max, out);
    json_decref(s);
    return rc;
}

int lkd_bytes(struct lkd_call *c, json_t *v, const char *what, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!json_is_string(v)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be a base64 string", what);
        return -1;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    /* Padding is optional; both alphabets are accepted: map to URL-safe,
     * strip '=' and decode strictly (no whitespace, canonical last bits).
     * Padding that is there must be right: it completes the last group of
     * four, so "Zm9v=" or "Zg===" are refused, not read as "foo" and "f". */
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad > 0 && (pad > 2 || (n + pad) % 4 != 0)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s is not valid base64 (wrong padding)", what);
        return -1;
    }
    if (n > LK_B64URL_ENCODED_LEN(max) + 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s is over its limit of %zu bytes", what, max);
        return -1;
    }
    char *t = malloc(n + 1);
    uint8_t *b = malloc(LK_B64URL_DECODED_MAX(n) + 1);
    if (t == NULL || b == NULL) {
        free(t);
        free(b);
        lkd_reply_error(c, LKD_UNAVAILABLE, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        t[i] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    size_t got = 0;
    lk_err err = n ? lk_b64url_decode(t, n, b, LK_B64URL_DECODED_MAX(n), &got, 0) : LK_OK;
    free(t);
    if (err != LK_OK || got > max) {
        free(b);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, err != LK_OK ? "%s is not valid base64" : "%s is over its limit",
                        what);
        return -1;
    }
    b[got] = 0;
    *out = b;
    *len = got;
    return 0;
}

int lkd_timestamp(struct lkd_call *c, json_t *v, const char *what, int64_t *out)
{
    if (!json_is_string(v)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be an RFC 3339 timestamp string", what);
        return -1;
    }
    const char *s = json_string_value(v);
    /* Fixed digits only (sscanf's %d would take a sign or a space: "T-1:00"),
     * and a day that its month has (no "02-31" read as March). */
    static const char form[] = "dddd-dd-ddTdd:dd:dd";
    int ok = strlen(s) >= 19;
    for (int i = 0; ok && i < 19; i++)
        ok = form[i] == 'd' ? isdigit((unsigned char)s[i]) != 0 : s[i] == form[i];
    int y = 0, mo = 0, dd = 0, h = 0, mi = 0, se = 0;
    if (ok) {
        y = atoi(s);
        mo = atoi(s + 5);
        dd = atoi(s + 8);
        h = atoi(s + 11);
        mi = atoi(s + 14);
        se = atoi(s + 17);
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (!ok || mo < 1 || mo > 12 || dd < 1 || dd > mdays[mo - 1] || (mo == 2 && dd == 29 && !leap) || h > 23 ||
        mi > 59 || se > 60 || y < 1970) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s is not an RFC 3339 timestamp: \"%.40s\"", what, s);
        return -1;
    }
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (isdigit((unsigned char)*p) && digits < 9) {
            p++;
            digits++;
        }
        if (digits == 0) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: empty fraction of a second", what);
            return -1;
        }
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
               p[3] == ':' && isdigit((unsigned char)p[4]) && isdigit((unsigned char)p[5])) {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600L + ((p[4] - '0') * 10 + (p[5] - '0')) * 60L;
        if (*p == '+')
            off = -off;
        p += 6;
    } else {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s needs a time zone (Z or +hh:mm)", what);
        return -1;
    }
    if (*p != '\0') {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s is not an RFC 3339 timestamp: \"%.40s\"", what, s);
        return -1;
    }
    /* Days from civil (Howard Hinnant's algorithm), exact for the Gregorian calendar. */
    int yy = y - (mo <= 2);
    int era = yy / 400;
    int yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + dd - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = (int64_t)era * 146097 + doe - 719468;
    *out = days * 86400 + h * 3600 + mi * 60 + (se == 60 ? 59 : se) + off;
    return 0;
}

int lkd_enum(struct lkd_call *c, json_t *v, const char *what, const char *const *names, const int *values, size_t n)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        for (size_t i = 0; i < n; i++)
            if (values[i] == x)
                return values[i];
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: %lld is not one of its values", what, (long long)x);
        return -1;
    }
    if (json_is_string(v)) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(json_string_value(v), names[i]) == 0)
                return values[i];
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: \"%.64s\" is not one of its names", what,
                        json_string_value(v));
        return -1;
    }
    lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be an enum name or number", what);
    return -1;
}

int lkd_enum_field(struct lkd_call *c, json_t *obj, const char *camel, const char *const *names,
                   const int *values, size_t n, int *out)
{
    int bad = 0;
    json_t *v = lkd_field(c, obj, camel, NULL, &bad);
    if (bad)
        return -1;
    if (v == NULL)
        return 0;
    int e = lkd_enum(c, v, camel, names, values, n);
    if (e < 0)
        return -1;
    *out = e;
    return 1;
}

json_t *lkd_jenum(const struct lkd_call *c, const char *const *names, const int *values, size_t n, int v)
{
    if (c->enum_int)
        return json_integer(v);
    for (size_t i = 0; i < n; i++)
        if (values[i] == v)
            return json_string(names[i]);
    return json_integer(v);
}

json_t *lkd_jtime(int64_t t)
{
    char buf[40];
    return json_string(lk_time_rfc3339(t, buf, sizeof buf));
}

json_t *lkd_ji64(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return json_string(buf);
}

json_t *lkd_ju64(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_string(buf);
}

json_t *lkd_jbytes(const uint8_t *p, size_t n)
{
    /* Standard base64 with padding, as Google's APIs answer: OpenSSL's. */
    if (n > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    size_t out_len = (n + 2) / 3 * 4;
    char *s = malloc(out_len + 1);
    if (s == NULL)
        return NULL;
    int o = EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    json_t *j = o < 0 ? NULL : json_stringn(s, (size_t)o);
    free(s);
    return j;
}

int lkd_mask(struct lkd_call *c, const char *param, char out[][48], unsigned max)
{
    const char *v = lkd_query(c, param);
    if (v == NULL || v[0] == '\0')
        return 0;
    unsigned n = 0;
    const char *p = v;
    while (*p) {
        size_t len = strcspn(p, ",");
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        if (len == 0 || len >= 48 || n == max) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: empty, too long or too many field paths", param);
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '.') {
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: \"%.*s\" is not a field path", param, (int)len, p);
                return -1;
            }
        }
        camel_of(p, len, out[n], 48);
        if (out[n++][0] == '\0') { /* "___": no name left once camel-cased */
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s: \"%.*s\" is not a field path", param, (int)len, p);
            return -1;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return (int)n;
}

int lkd_path_is(const char *path, const char *field)
{
    size_t fl = strlen(field);
    return strncmp(path, field, fl) == 0 && (path[fl] == '\0' || path[fl] == '.');
}

int lkd_payload(struct lkd_call *c, json_t *obj, const char *sub_name, size_t max, uint8_t **bytes, size_t *len,
                const char **subfolder)
{
    int bad = 0;
    *bytes = NULL;
    *len = 0;
    if (subfolder != NULL)
        *subfolder = NULL;
    json_t *data = lkd_field(c, obj, "binaryData", NULL, &bad);
    json_t *sub = (bad || sub_name == NULL) ? NULL : lkd_field(c, obj, sub_name, NULL, &bad);
    if (bad)
        return -1;
    if (data == NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "binaryData is required");
        return -1;
    }
    if (sub != NULL && !json_is_string(sub)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be a string", sub_name);
        return -1;
    }
    const char *sf = (sub != NULL && json_string_length(sub) > 0) ? json_string_value(sub) : NULL;
    if (sf != NULL && (json_string_length(sub) != strlen(sf) || !lk_subfolder_valid(sf, strlen(sf)))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s is not a valid topic subfolder", sub_name);
        return -1;
    }
    if (lkd_bytes(c, data, "binaryData", max, bytes, len) != 0)
        return -1;
    if (subfolder != NULL)
        *subfolder = sf;
    return 0;
}

int lkd_read_body(struct lkd_call *c)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
    size_t n = evbuffer_get_length(in);
    if (n == 0) {
        c->body = json_object();
        return 0;
    }
    unsigned char *p = evbuffer_pullup(in, (ev_ssize_t)n);
    if (p == NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "out of memory");
        return -1;
    }
    json_error_t e;
    json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "Invalid JSON payload received: %.160s (at byte %d)", e.text,
                        e.position);
        return -1;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "Invalid JSON payload received: the body must be a JSON object");
        return -1;
    }
    c->body = j;
    return 0;
}
