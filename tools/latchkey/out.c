/*
 * Output of the registry commands: IoT Core's JSON conventions (int64 as
 * strings, bytes as base64, times as RFC 3339 UTC), streamed JSON arrays,
 * aligned tables and YAML-like descriptions for people.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_util.h"
#include "out.h"
#include "tool.h"

json_t *out_jtime(int64_t t)
{
    char buf[48];
    return json_string(lk_time_rfc3339(t, buf, sizeof buf));
}

json_t *out_ji64(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return json_string(buf);
}

json_t *out_ju64(uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_string(buf);
}

json_t *out_jb64(const uint8_t *p, size_t n)
{
    /* OpenSSL's encoder: standard alphabet with padding, as IoT Core's JSON. */
    unsigned char *s;
    json_t *j;
    int o;
    if (n > (size_t)INT_MAX / 4 * 3 - 3)
        return NULL;
    s = malloc((n + 2) / 3 * 4 + 1);
    if (s == NULL)
        return NULL;
    o = EVP_EncodeBlock(s, p, (int)n);
    j = json_stringn((const char *)s, (size_t)o);
    free(s);
    return j;
}

int out_b64_decode(const char *in, size_t n, uint8_t **out, size_t *out_len)
{
    /* IoT Core's JSON writes bytes in the standard alphabet, gcloud's users
     * may write the URL one: either, not a mix, through the library's strict
     * decoder (canonical: zero unused bits, padding absent or complete). */
    int std = memchr(in, '+', n) != NULL || memchr(in, '/', n) != NULL;
    char *url;
    uint8_t *buf;
    size_t i;
    lk_err err;

    *out = NULL;
    *out_len = 0;
    if (std && (memchr(in, '-', n) != NULL || memchr(in, '_', n) != NULL))
        return -1;
    url = malloc(n + 1);
    buf = malloc(LK_B64URL_DECODED_MAX(n) + 1);
    if (url == NULL || buf == NULL) {
        free(url);
        free(buf);
        return -1;
    }
    for (i = 0; i < n; i++)
        url[i] = in[i] == '+' ? '-' : in[i] == '/' ? '_' : in[i];
    err = lk_b64url_decode(url, n, buf, LK_B64URL_DECODED_MAX(n) + 1, out_len, LK_B64URL_ALLOW_PADDING);
    free(url);
    if (err != LK_OK) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* Length of the UTF-8 sequence at p (of n bytes), 0 if invalid or NUL. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    return p[0] == 0 ? 0 : lk_utf8_seq(p, n);
}

int out_utf8_valid(const char *s, size_t n)
{
    return lk_utf8_valid(s, n) && memchr(s, '\0', n) == NULL;
}

json_t *out_jtext(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    char *buf;
    size_t i = 0, o = 0;
    json_t *j;
    if (out_utf8_valid(s, n))
        return json_stringn(s, n);
    buf = malloc(n * 3 + 1);
    if (buf == NULL)
        return NULL;
    while (i < n) {
        size_t l = utf8_seq(p + i, n - i);
        if (l == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, p + i, l);
            o += l;
            i += l;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

/* ---- JSON ---- */

#define DUMP_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

int out_json(json_t *j)
{
    char *s;
    if (j == NULL) {
        tool_error("output", LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    s = json_dumps(j, DUMP_FLAGS);
    json_decref(j);
    if (s == NULL) {
        tool_error("output", LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
    return EXIT_OK;
}

void out_list_begin(struct out_list *l)
{
    l->n = 0;
}

int out_list_item(struct out_list *l, json_t *j)
{
    char *s, *p;
    if (j == NULL)
        return EXIT_FAIL;
    s = json_dumps(j, DUMP_FLAGS);
    json_decref(j);
    if (s == NULL)
        return EXIT_FAIL;
    fputs(l->n++ == 0 ? "[\n  " : ",\n  ", stdout);
    for (p = s; *p; p++) {
        fputc(*p, stdout);
        if (*p == '\n')
            fputs("  ", stdout);
    }
    free(s);
    return EXIT_OK;
}

int out_list_end(struct out_list *l)
{
    fputs(l->n == 0 ? "[]\n" : "\n]\n", stdout);
    return EXIT_OK;
}

/* ---- YAML-like descriptions ---- */

static void indent(int n)
{
    while (n-- > 0)
        fputc(' ', stdout);
}

static void y_string(const char *s)
{
    size_t i, n = strlen(s);
    int quote = n == 0 || strchr("-?:,[]{}#&*!|>'\"%@` ", s[0]) != NULL || s[n - 1] == ' ' ||
                strstr(s, ": ") != NULL || strstr(s, " #") != NULL || strcmp(s, "true") == 0 ||
                strcmp(s, "false") == 0 || strcmp(s, "null") == 0;
    if (!quote) {
        for (i = 0; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.'); i++)
            ;
        quote = i == n; /* looks like a number: numIds and versions are strings */
    }
    if (!quote) {
        fputs(s, stdout);
        return;
    }
    fputc('\'', stdout);
    for (i = 0; i < n; i++) {
        if (s[i] == '\'')
            fputc('\'', stdout);
        fputc(s[i], stdout);
    }
    fputc('\'', stdout);
}

static int y_multiline(const json_t *v)
{
    return json_is_string(v) && strchr(json_string_value(v), '\n') != NULL;
}

static int y_simple(const json_t *v)
{
    return !(json_is_object(v) && json_object_size(v) > 0) && !(json_is_array(v) && json_array_size(v) > 0) &&
           !y_multiline(v);
}

static void y_scalar(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: y_string(json_string_value(v)); break;
    case JSON_INTEGER: printf("%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: printf("%.17g", json_real_value(v)); break;
    case JSON_TRUE: fputs("true", stdout); break;
    case JSON_FALSE: fputs("false", stdout); break;
    case JSON_NULL: fputs("null", stdout); break;
    case JSON_OBJECT: fputs("{}", stdout); break;
    case JSON_ARRAY: fputs("[]", stdout); break;
    }
}

static void y_block(const char *s, int ind)
{
    size_t n = strlen(s);
    fputs(n > 0 && s[n - 1] == '\n' ? "|\n" : "|-\n", stdout);
    while (*s) {
        const char *nl = strchr(s, '\n');
        size_t l = nl ? (size_t)(nl - s) : strlen(s);
        indent(ind);
        fwrite(s, 1, l, stdout);
        fputc('\n', stdout);
        s += l + (nl ? 1 : 0);
    }
}

static void y_object(const json_t *o, int ind, int inline_first);
static void y_array(const json_t *a, int ind);

/* The value after "key:" or "- ". */
static void y_value(const json_t *v, int ind)
{
    if (y_simple(v)) {
        fputc(' ', stdout);
        y_scalar(v);
        fputc('\n', stdout);
    } else if (y_multiline(v)) {
        fputc(' ', stdout);
        y_block(json_string_value(v), ind + 2);
    } else if (json_is_object(v)) {
        fputc('\n', stdout);
        y_object(v, ind + 2, 0);
    } else {
        fputc('\n', stdout);
        y_array(v, ind);
    }
}

static void y_object(const json_t *o, int ind, int inline_first)
{
    const char *k;
    json_t *v;
    int first = 1;
    json_object_foreach((json_t *)o, k, v) {
        if (!(first && inline_first))
            indent(ind);
        first = 0;
        y_string(k);
        fputc(':', stdout);
        y_value(v, ind);
    }
}

static void y_array(const json_t *a, int ind)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        indent(ind);
        fputs("-", stdout);
        if (json_is_object(v) && json_object_size(v) > 0) {
            fputc(' ', stdout);
            y_object(v, ind + 2, 1);
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            fputc('\n', stdout);
            y_array(v, ind + 2);
        } else {
            y_value(v, ind);
        }
    }
}

int out_yaml(json_t *j)
{
    if (j == NULL) {
        tool_error("output", LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    if (json_is_object(j))
        y_object(j, 0, 0);
    else if (json_is_array(j))
        y_array(j, 0);
    else {
        y_scalar(j);
        fputc('\n', stdout);
    }
    json_decref(j);
    return EXIT_OK;
}

/* ---- tables ---- */

struct out_table {
    unsigned ncols;
    size_t nrows, cap;
    char **cells; /* nrows * ncols, row 0 = headers */
};

struct out_table *out_table_new(unsigned ncols, const char *const *headers)
{
    struct out_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    if (out_table_row(t, headers) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

int out_table_row(struct out_table *t, const char *const *cells)
{
    unsigned c;
    if (t->nrows == t->cap) {
        size_t ncap = t->cap == 0 ? 16 : t->cap * 2;
        char **nc = realloc(t->cells, ncap * t->ncols * sizeof *nc);
        if (nc == NULL)
            return -1;
        t->cells = nc;
        t->cap = ncap;
    }
    for (c = 0; c < t->ncols; c++) {
        t->cells[t->nrows * t->ncols + c] = strdup(cells[c] != NULL ? cells[c] : "");
        if (t->cells[t->nrows * t->ncols + c] == NULL) {
            while (c-- > 0)
                free(t->cells[t->nrows * t->ncols + c]);
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

void out_table_free(struct out_table *t)
{
    size_t i;
    if (t == NULL)
        return;
    for (i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

int out_table_print(struct out_table *t)
{
    size_t *w, r;
    unsigned c;
    if (t == NULL)
        return EXIT_FAIL;
    w = calloc(t->ncols, sizeof *w);
    if (w == NULL) {
        out_table_free(t);
        return EXIT_FAIL;
    }
    for (r = 0; r < t->nrows; r++)
        for (c = 0; c < t->ncols; c++) {
            size_t l = strlen(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (r = 0; r < t->nrows; r++) {
        for (c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols)
                printf("%-*s  ", (int)w[c], s);
            else
                printf("%s\n", s);
        }
    }
    free(w);
    out_table_free(t);
    return EXIT_OK;
}

int out_finish(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tool_error("output", LK_ERR_IO, "cannot write standard output: %s", strerror(errno));
        return rc == EXIT_OK ? EXIT_FAIL : rc;
    }
    return rc;
}

int out_write_fd(int fd, const char *buf, size_t len)
{
    if (fd == STDOUT_FILENO && fflush(stdout) != 0)
        return -1;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}
