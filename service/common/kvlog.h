/*
 * kvlog.h — one log line in key=value form (docs/plugin.md, "Logs"): the
 * formatting shared by the broker plugin and latchkeyd, so that both write
 * the same grammar. Internal: compiled into each program that logs, never
 * exported, and it never prints (the program writes the finished line).
 *
 * A line is `event=NAME level=LEVEL key=value ...`, fields separated by
 * one space. A value is written bare when it is 1..KVLOG_VALUE_MAX bytes
 * of printable ASCII other than space, '"', '\\' and '='; otherwise in
 * double quotes with \" \\ \n \r \t and \xHH (other bytes below 0x20, 0x7f
 * and every byte from 0x80) escaped. A value longer than KVLOG_VALUE_MAX
 * bytes (a formatted one, kvlog_fmt: KVLOG_TEXT_MAX) is cut there, quoted,
 * and ends in "..." inside the quotes; so is a value cut to the room left
 * in the line. A field with no room at all is left out and the line ends
 * with `truncated=1`, so a line always parses.
 */
#ifndef LK_SERVICE_KVLOG_H
#define LK_SERVICE_KVLOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define KVLOG_VALUE_MAX 256 /* bytes of one value before escaping ... */
#define KVLOG_TEXT_MAX 1024 /* ... and of a formatted one (a msg= sentence) */
/* A line's room: Mosquitto formats a plugin's line into strlen(format) + 500
 * bytes, so the plugin passes the line itself as the format (kvlog_format). */
#define KVLOG_LINE_MAX 1536

struct kvlog {
    char buf[KVLOG_LINE_MAX];
    size_t len;
    int truncated;
};

/* Start a line: event=NAME level=LEVEL (both from the program: bare). */
void kvlog_begin(struct kvlog *l, const char *event, const char *level);
/* key=value, the value escaped as above; NULL values are left out. */
void kvlog_str(struct kvlog *l, const char *key, const char *value);
/* key=value of the first n bytes of value (not NUL-terminated input). */
void kvlog_mem(struct kvlog *l, const char *key, const char *value, size_t n);
void kvlog_int(struct kvlog *l, const char *key, int64_t v);
/* key=value of a printf format (at most KVLOG_TEXT_MAX bytes), escaped like
 * any value. */
void kvlog_fmt(struct kvlog *l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kvlog_vfmt(struct kvlog *l, const char *key, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* The finished line (adds truncated=1 when a field was left out). */
const char *kvlog_end(struct kvlog *l);

/* One value as the line grammar writes it, into out (size >= 4 *
 * KVLOG_VALUE_MAX + 8 holds any value): its length. */
size_t kvlog_value(char *out, size_t size, const char *value, size_t n);

/* line with every '%' doubled, for an API that takes only a format
 * (Mosquitto's log): 0, or -1 when out (>= 2 * strlen(line) + 1) is short. */
int kvlog_format(char *out, size_t size, const char *line);

#endif
