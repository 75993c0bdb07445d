/*
 * gateway_error.c — the errors topic's message (lk_dev_gateway_error_parse):
 * a strict, bounded JSON reader for one small object. The device client does
 * not link jansson (the device side builds on libc, OpenSSL and libmosquitto
 * only: tests/install checks it), so this reads exactly what RFC 8259 allows
 * and refuses what jansson with JSON_REJECT_DUPLICATES refuses (the unit test
 * holds it to that), within fixed limits: 8 KiB, 8 levels, 64 keys an object.
 */
#include "client_internal.h"

#define DEPTH_MAX 8
#define KEYS_MAX 64

struct rd {
    const uint8_t *p, *end;
    /* the keys of the objects open now, decoded, for the duplicate check */
    char keys[LK_GATEWAY_ERROR_MAX];
    size_t keys_len;
};

/* A string value, decoded, at most cap - 1 bytes kept in out (NUL added),
 * whole characters only: a cut string ends on a character (out is zeroed
 * by the caller first). out NULL: checked, not kept. n: the decoded
 * length, all of it. */
struct str {
    char *out;
    size_t cap;
    size_t n;
};

static void ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int hex4(struct rd *r, unsigned *v)
{
    unsigned x = 0;
    int i;
    if (r->end - r->p < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        uint8_t c = r->p[i];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            x |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    r->p += 4;
    *v = x;
    return 0;
}

static void put(struct str *s, const uint8_t *b, size_t n)
{
    if (s->out != NULL && s->n + n < s->cap)
        memcpy(s->out + s->n, b, n);
    s->n += n;
}

/* The length of the UTF-8 sequence at p (well-formed: RFC 3629, no
 * surrogates, no overlong forms), 0 when it is not one. */
static size_t utf8_len(const uint8_t *p, const uint8_t *end)
{
    size_t n = (size_t)(end - p);
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f))
            return 0;
        return 4;
    }
    return 0;
}

/* A string (the opening quote at r->p). 0, or -1 when malformed. */
static int string(struct rd *r, struct str *s)
{
    s->n = 0;
    if (r->p >= r->end || *r->p != '"')
        return -1;
    r->p++;
    for (;;) {
        uint8_t c;
        if (r->p >= r->end)
            return -1;
        c = *r->p;
        if (c == '"') {
            r->p++;
            break;
        }
        if (c < 0x20)
            return -1; /* control characters must be escaped */
        if (c == '\\') {
            uint8_t b[4];
            unsigned u, lo;
            if (r->end - r->p < 2)
                return -1;
            c = r->p[1];
            r->p += 2;
            switch (c) {
            case '"': case '\\': case '/': b[0] = c; put(s, b, 1); continue;
            case 'b': b[0] = '\b'; put(s, b, 1); continue;
            case 'f': b[0] = '\f'; put(s, b, 1); continue;
            case 'n': b[0] = '\n'; put(s, b, 1); continue;
            case 'r': b[0] = '\r'; put(s, b, 1); continue;
            case 't': b[0] = '\t'; put(s, b, 1); continue;
            case 'u': break;
            default: return -1;
            }
            if (hex4(r, &u) != 0 || u == 0)
                return -1; /* \u0000: no NUL inside our strings (jansson refuses it too) */
            if (u >= 0xdc00 && u <= 0xdfff)
                return -1; /* a lone low surrogate */
            if (u >= 0xd800 && u <= 0xdbff) {
                if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
                    return -1;
                r->p += 2;
                if (hex4(r, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
                    return -1;
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (u < 0x80) {
                b[0] = (uint8_t)u;
                put(s, b, 1);
            } else if (u < 0x800) {
                b[0] = (uint8_t)(0xc0 | (u >> 6));
                b[1] = (uint8_t)(0x80 | (u & 0x3f));
                put(s, b, 2);
            } else if (u < 0x10000) {
                b[0] = (uint8_t)(0xe0 | (u >> 12));
                b[1] = (uint8_t)(0x80 | ((u >> 6) & 0x3f));
                b[2] = (uint8_t)(0x80 | (u & 0x3f));
                put(s, b, 3);
            } else {
                b[0] = (uint8_t)(0xf0 | (u >> 18));
                b[1] = (uint8_t)(0x80 | ((u >> 12) & 0x3f));
                b[2] = (uint8_t)(0x80 | ((u >> 6) & 0x3f));
                b[3] = (uint8_t)(0x80 | (u & 0x3f));
                put(s, b, 4);
            }
            continue;
        }
        {
            size_t k = utf8_len(r->p, r->end);
            if (k == 0)
                return -1;
            put(s, r->p, k);
            r->p += k;
        }
    }
    if (s->out != NULL)
        s->out[s->n < s->cap ? s->n : s->cap - 1] = '\0';
    return 0;
}

/* A number; *integer set to its value when it is an integer in 0..65535,
 * else -1. 0, or -1 when malformed or out of range (as jansson: an integer
 * beyond long long, a real beyond double). */
static int number(struct rd *r, long *integer)
{
    const uint8_t *s = r->p;
    int is_int = 1;
    char buf[64];
    size_t n;

    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p >= r->end)
        return -1;
    if (*r->p == '0') {
        r->p++;
    } else if (*r->p >= '1' && *r->p <= '9') {
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    } else {
        return -1;
    }
    if (r->p < r->end && *r->p == '.') {
        is_int = 0;
        r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return -1;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        is_int = 0;
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
            return -1;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    }
    n = (size_t)(r->p - s);
    *integer = -1;
    if (n >= sizeof buf)
        return -1; /* no number we read is that long */
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    if (is_int) {
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return -1;
        if (v >= 0 && v <= 65535)
            *integer = (long)v;
    } else {
        double v = strtod(buf, NULL);
        if (errno == ERANGE && (v > 1.0 || v < -1.0))
            return -1; /* overflow (an underflow is read as 0, as jansson does) */
    }
    return 0;
}

static int literal(struct rd *r, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return -1;
    r->p += n;
    return 0;
}

/* The fields the caller wants from one object, by key. */
struct field {
    const char *key;
    int type;          /* 's' string, 'i' integer 0..65535, 'o' object */
    char *out;         /* 's': where; 'i': (long *) */
    size_t cap;
    const struct field *sub; /* 'o': its fields (NULL-key terminated) */
    int *cut;          /* 's': set when the value was longer than cap - 1 */
};

static int value(struct rd *r, int depth, const struct field *want);

/* An object (the brace at r->p); fields may be NULL (checked only). */
static int object(struct rd *r, int depth, const struct field *fields)
{
    size_t mark = r->keys_len, nkeys = 0;
    if (depth > DEPTH_MAX)
        return -1;
    r->p++; /* { */
    ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return 0;
    }
    for (;;) {
        struct str k;
        const struct field *f = NULL;
        size_t at = r->keys_len, i, off;
        ws(r);
        /* The key, decoded into the key stack (NUL-separated). */
        k.out = r->keys + at;
        k.cap = sizeof r->keys - at;
        if (k.cap < 2 || string(r, &k) != 0 || k.n + 1 > k.cap || ++nkeys > KEYS_MAX)
            return -1;
        for (off = mark; off < at; off += strlen(r->keys + off) + 1) {
            if (strlen(r->keys + off) == k.n && memcmp(r->keys + off, k.out, k.n) == 0)
                return -1; /* a duplicate key */
        }
        r->keys_len = at + k.n + 1;
        for (i = 0; fields != NULL && fields[i].key != NULL; i++) {
            if (strcmp(fields[i].key, k.out) == 0)
                f = &fields[i];
        }
        ws(r);
        if (r->p >= r->end || *r->p != ':')
            return -1;
        r->p++;
        ws(r);
        if (value(r, depth, f) != 0)
            return -1;
        ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            r->keys_len = mark; /* this object's keys are done */
            return 0;
        }
        return -1;
    }
}

static int array(struct rd *r, int depth)
{
    if (depth > DEPTH_MAX)
        return -1;
    r->p++; /* [ */
    ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return 0;
    }
    for (;;) {
        ws(r);
        if (value(r, depth, NULL) != 0)
            return -1;
        ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return 0;
        }
        return -1;
    }
}

/* One value; want: the field it is (its type is then required), or NULL. */
static int value(struct rd *r, int depth, const struct field *want)
{
    long integer;
    if (r->p >= r->end)
        return -1;
    switch (*r->p) {
    case '"': {
        struct str s;
        if (want != NULL && want->type != 's')
            return -1;
        s.out = want != NULL ? want->out : NULL;
        s.cap = want != NULL ? want->cap : 0;
        if (string(r, &s) != 0)
            return -1;
        if (want != NULL && s.n >= want->cap) {
            if (want->cut == NULL)
                return -1;
            *want->cut = 1;
        }
        return 0;
    }
    case '{':
        if (want != NULL && want->type != 'o')
            return -1;
        return object(r, depth + 1, want != NULL ? want->sub : NULL);
    case '[':
        if (want != NULL)
            return -1;
        return array(r, depth + 1);
    case 't':
        return want != NULL ? -1 : literal(r, "true");
    case 'f':
        return want != NULL ? -1 : literal(r, "false");
    case 'n':
        return want != NULL ? -1 : literal(r, "null");
    default:
        if (number(r, &integer) != 0)
            return -1;
        if (want == NULL)
            return 0;
        if (want->type != 'i' || integer < 0)
            return -1;
        *(long *)(void *)want->out = integer;
        return 0;
    }
}

static int all_of(const char *s, const char *set)
{
    for (; *s != '\0'; s++)
        if (strchr(set, *s) == NULL)
            return 0;
    return 1;
}

lk_err lk_dev_gateway_error_parse(const void *json, size_t len, lk_dev_gateway_error *out)
{
    static const char upper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_";
    static const char upper_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789";
    struct rd rd, *r = &rd; /* 8 KiB on the stack: no allocation, no LK_ERR_NOMEM */
    long packet_id = 0;
    int cut = 0, rc;
    struct field info[4], top[5];

    if (out == NULL)
        return LK_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (json == NULL)
        return LK_ERR_ARG;
    if (len > LK_GATEWAY_ERROR_MAX)
        return LK_ERR_TOO_LARGE;
    r->p = json;
    r->end = r->p + len;
    r->keys_len = 0;

    memset(info, 0, sizeof info);
    info[0] = (struct field){"message_type", 's', out->message_type, sizeof out->message_type, NULL, NULL};
    info[1] = (struct field){"topic", 's', out->topic, sizeof out->topic, NULL, NULL};
    info[2] = (struct field){"packet_id", 'i', (char *)(void *)&packet_id, 0, NULL, NULL};
    memset(top, 0, sizeof top);
    top[0] = (struct field){"error_type", 's', out->error_type, sizeof out->error_type, NULL, NULL};
    top[1] = (struct field){"description", 's', out->description, sizeof out->description, NULL, &cut};
    top[2] = (struct field){"device_id", 's', out->device_id, sizeof out->device_id, NULL, NULL};
    top[3] = (struct field){"mqtt_message_info", 'o', NULL, 0, info, NULL};

    ws(r);
    rc = r->p < r->end && *r->p == '{' ? object(r, 1, top) : -1;
    if (rc == 0) {
        ws(r);
        if (r->p != r->end)
            rc = -1; /* something after the object */
    }
    if (rc == 0 && packet_id > 65535)
        rc = -1;
    /* What each field may hold: error types and message types are enum
     * names; a device id is a device id. */
    if (rc == 0 && (out->error_type[0] == '\0' || !all_of(out->error_type, upper_digits) ||
                    !all_of(out->message_type, upper)))
        rc = -1;
    if (rc == 0 && out->device_id[0] != '\0' &&
        !lk_id_valid(out->device_id, strlen(out->device_id)))
        rc = -1;
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        return LK_ERR_ENCODING;
    }
    out->packet_id = (unsigned)packet_id;
    return LK_OK;
}
