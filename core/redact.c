/* lk_key_ref_redact: see lk_se.h. */
#include "latchkey/lk_se.h"

/* RFC 7512's attributes whose values are never secret. */
static const char *const public_attrs[] = {
    "token", "manufacturer", "serial", "model", "library-manufacturer",
    "library-description", "library-version", "slot-manufacturer", "slot-description",
    "slot-id", "object", "id", "type", "module-path", "module-name", "pin-source",
};

struct sink {
    char *out;
    size_t size;
    size_t len; /* the whole length, written or not */
};

static void put(struct sink *k, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++, k->len++)
        if (k->len + 1 < k->size)
            k->out[k->len] = s[i];
}

static int is_public(const char *name, size_t n)
{
    size_t i, j;
    for (i = 0; i < sizeof public_attrs / sizeof public_attrs[0]; i++) {
        const char *p = public_attrs[i];
        for (j = 0; j < n && p[j] != '\0' && p[j] == name[j]; j++)
            ;
        if (j == n && p[j] == '\0')
            return 1;
    }
    return 0;
}

/* One attribute segment s[0..n): kept, or its value (or all of it) hidden. */
static void segment(struct sink *k, const char *s, size_t n)
{
    size_t eq;
    if (n == 0)
        return;
    for (eq = 0; eq < n && s[eq] != '='; eq++)
        ;
    if (eq == n) {
        put(k, "***", 3);
    } else if (is_public(s, eq)) {
        put(k, s, n);
    } else {
        put(k, s, eq + 1);
        put(k, "***", 3);
    }
}

static int lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

size_t lk_key_ref_redact(const char *ref, char *out, size_t out_size)
{
    static const char scheme[] = "pkcs11:";
    struct sink k;
    const char *p, *seg;
    size_t i;
    int uri = 1, has_eq = 0, query = 0;

    k.out = out;
    k.size = out == 0 ? 0 : out_size;
    k.len = 0;
    if (ref == 0)
        ref = "";
    for (i = 0; i < sizeof scheme - 1; i++)
        if (lower(ref[i]) != scheme[i]) { /* stops at the NUL too */
            uri = 0;
            break;
        }
    for (p = ref; *p != '\0'; p++)
        has_eq |= *p == '=';
    p = ref;
    if (uri) {
        put(&k, ref, sizeof scheme - 1);
        p += sizeof scheme - 1;
    } else if (!has_eq) {
        for (; *p != '\0'; p++)
            put(&k, p, 1);
        p = 0;
    }
    if (p != 0) {
        /* Path segments end at ';' or at the first '?'; query segments at
         * '&' only ('?' and ';' may be part of a query value). */
        for (seg = p;; p++) {
            char c = *p;
            int end = c == '\0' || (query ? c == '&' : (c == ';' || c == '?'));
            if (!end)
                continue;
            segment(&k, seg, (size_t)(p - seg));
            if (c == '\0')
                break;
            put(&k, p, 1);
            if (c == '?')
                query = 1;
            seg = p + 1;
        }
    }
    if (k.size > 0)
        out[k.len < k.size ? k.len : k.size - 1] = '\0';
    return k.len;
}
