/*
 * kvlog.c — one log line in key=value form (kvlog.h). Values come from
 * devices and clients: they must neither forge a line (newlines), nor hide
 * a field (quotes, '='), nor reach a terminal (escapes), nor grow a line
 * without bound.
 */
#include <stdio.h>
#include <string.h>

#include "kvlog.h"

static int kvlog_bare(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\' && ch != '=';
}

/* value as the grammar writes it, at most max bytes of it, into out (cut
 * with "..." where out is full). */
static size_t kvlog_escape(char *out, size_t size, const char *value, size_t n, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0, cut = n > max;
    int bare = n > 0 && !cut;

    if (size == 0)
        return 0;
    if (cut)
        n = max;
    for (i = 0; bare && i < n; i++)
        bare = kvlog_bare((unsigned char)value[i]);
    if (bare && n < size) {
        memcpy(out, value, n);
        out[n] = '\0';
        return n;
    }
#define PUT(c) do { if (o + 1 < size) out[o++] = (c); } while (0)
    PUT('"');
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)value[i];
        if (o + 8 >= size)
            break; /* room for the widest escape, "..." and the quote */
        if (ch == '"' || ch == '\\') {
            PUT('\\');
            PUT((char)ch);
        } else if (ch == '\n') {
            PUT('\\');
            PUT('n');
        } else if (ch == '\r') {
            PUT('\\');
            PUT('r');
        } else if (ch == '\t') {
            PUT('\\');
            PUT('t');
        } else if (ch < 0x20 || ch >= 0x7f) {
            PUT('\\');
            PUT('x');
            PUT(hex[ch >> 4]);
            PUT(hex[ch & 15]);
        } else {
            PUT((char)ch);
        }
    }
    if (cut || i < n) {
        PUT('.');
        PUT('.');
        PUT('.');
    }
    PUT('"');
#undef PUT
    out[o] = '\0';
    return o;
}

size_t kvlog_value(char *out, size_t size, const char *value, size_t n)
{
    return kvlog_escape(out, size, value, n, KVLOG_VALUE_MAX);
}

/* " key=" and the escaped value (at most max bytes of it), cut to the
 * line's room; a field with no room for even `""...` is left out. */
static void kvlog_put(struct kvlog *l, const char *key, const char *value, size_t n, size_t max)
{
    /* room kept for " truncated=1" and the NUL */
    size_t kn = strlen(key), end = sizeof l->buf - 13;

    if (l->len + 1 + kn + 1 + 8 > end) {
        l->truncated = 1;
        return;
    }
    l->buf[l->len++] = ' ';
    memcpy(l->buf + l->len, key, kn);
    l->len += kn;
    l->buf[l->len++] = '=';
    l->len += kvlog_escape(l->buf + l->len, end - l->len, value, n, max);
}

void kvlog_begin(struct kvlog *l, const char *event, const char *level)
{
    l->len = 0;
    l->truncated = 0;
    l->buf[0] = '\0';
    kvlog_str(l, "event", event);
    kvlog_str(l, "level", level);
    /* no leading space */
    if (l->len && l->buf[0] == ' ') {
        memmove(l->buf, l->buf + 1, l->len);
        l->len--;
    }
}

void kvlog_mem(struct kvlog *l, const char *key, const char *value, size_t n)
{
    if (value)
        kvlog_put(l, key, value, n, KVLOG_VALUE_MAX);
}

void kvlog_str(struct kvlog *l, const char *key, const char *value)
{
    if (value)
        kvlog_put(l, key, value, strlen(value), KVLOG_VALUE_MAX);
}

void kvlog_int(struct kvlog *l, const char *key, int64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof b, "%lld", (long long)v);
    kvlog_put(l, key, b, (size_t)n, KVLOG_VALUE_MAX);
}

void kvlog_vfmt(struct kvlog *l, const char *key, const char *fmt, va_list ap)
{
    char b[KVLOG_TEXT_MAX + 2];
    int n = vsnprintf(b, sizeof b, fmt, ap);
    if (n < 0)
        return;
    /* longer than sizeof b - 1: n says so, and kvlog_escape cuts it with "..." */
    kvlog_put(l, key, b, (size_t)n < sizeof b - 1 ? (size_t)n : sizeof b - 1, KVLOG_TEXT_MAX);
}

void kvlog_fmt(struct kvlog *l, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvlog_vfmt(l, key, fmt, ap);
    va_end(ap);
}

const char *kvlog_end(struct kvlog *l)
{
    if (l->truncated && l->len + 13 <= sizeof l->buf) {
        memcpy(l->buf + l->len, " truncated=1", 13);
        l->len += 12;
    }
    return l->buf;
}

int kvlog_format(char *out, size_t size, const char *line)
{
    size_t o = 0;
    for (; *line; line++) {
        if (o + 3 > size)
            return -1;
        if (*line == '%')
            out[o++] = '%';
        out[o++] = *line;
    }
    if (o + 1 > size)
        return -1;
    out[o] = '\0';
    return 0;
}
