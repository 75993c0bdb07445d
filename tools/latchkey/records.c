/*
 * Records of an import file, one at a time and bounded (docs/cli.md,
 * "Importing"): the file's form is told from its first character —
 *
 *   '['                         a JSON array, as `gcloud ... list --format json`
 *                               prints it: each element is a record;
 *   '{' alone on its line       JSON objects one after another, each over
 *                               several lines, as `gcloud ... describe
 *                               --format json` (or `jq .`) prints them;
 *   anything else               JSON lines: one record per line, blank lines
 *                               skipped (`jq -c '.[]'` makes them).
 *
 * Records of the first two forms are found by a scanner that follows
 * strings, escapes and brackets (and nothing else: each record is then
 * parsed by jansson, strictly), so the file is never held whole: a record
 * is at most REC_MAX bytes, the file at most REC_FILE_MAX, and there are at
 * most REC_COUNT_MAX records. A record over its bound is refused on its
 * own (the scanner skips it); a break in the structure (a record that never
 * ends, a missing ',', text after the array) ends the reading.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"

#define NEST_MAX 64 /* brackets deeper than this end the reading */

static void broken(struct rec_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void broken(struct rec_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
}

/* The next byte (EOF at the end, or past the file bound: r->too_big). */
static int rd_get(struct rec_reader *r)
{
    int c;
    if (r->peek != REC_NO_PEEK) {
        c = r->peek;
        r->peek = REC_NO_PEEK;
    } else {
        c = getc_unlocked(r->f);
        if (c == EOF)
            return EOF;
        r->last = c;
        if (++r->bytes > REC_FILE_MAX) {
            r->too_big = 1;
            return EOF;
        }
    }
    if (c == '\n')
        r->line++;
    return c;
}

static void rd_unget(struct rec_reader *r, int c)
{
    if (c == EOF)
        return;
    if (c == '\n')
        r->line--;
    r->peek = c;
}

static int is_ws(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skip white space; the next byte (unread). */
static int skip_ws(struct rec_reader *r)
{
    int c;
    while ((c = rd_get(r)) != EOF && is_ws(c))
        ;
    rd_unget(r, c);
    return c;
}

static void put(struct rec_reader *r, int c)
{
    if (r->len < REC_MAX)
        r->buf[r->len++] = (char)c;
    else
        r->over = 1;
}

/* The end of the input was reached inside a record or between records:
 * the file's bound, a read error, or a record that does not end. */
static int cut_short(struct rec_reader *r, const char *what)
{
    if (r->too_big)
        broken(r, "the input is larger than %llu bytes, the most one import reads: split it",
               (unsigned long long)REC_FILE_MAX);
    else if (ferror(r->f))
        broken(r, "read error");
    else
        broken(r, "%s", what);
    return REC_BROKEN;
}

/* One JSON value starting with c (already read) into buf, brackets and
 * strings followed. */
static int scan_brackets(struct rec_reader *r, int c, int opened);

static int scan_value(struct rec_reader *r, int c)
{
    if (c != '{' && c != '[' && c != '"') {
        /* A number, true/false/null or garbage: up to a delimiter; jansson
         * says what it is. */
        while (c != EOF && !is_ws(c) && c != ',' && c != ']' && c != '}' && c != '[' && c != '{') {
            put(r, c);
            c = rd_get(r);
        }
        rd_unget(r, c);
        return r->too_big || ferror(r->f) ? cut_short(r, "") : REC_OK;
    }
    return scan_brackets(r, c, 0);
}

/* Inside an object whose '{' (and the rest of its line) is in buf. */
static int scan_value_from(struct rec_reader *r, int opened)
{
    int c = rd_get(r);
    if (c == EOF)
        return cut_short(r, "");
    return scan_brackets(r, c, opened);
}

/* From c on, with opened '{' already open: to the end of the value. */
static int scan_brackets(struct rec_reader *r, int c, int opened)
{
    char stack[NEST_MAX];
    int depth = 0, in_str = 0, esc = 0;

    while (depth < opened)
        stack[depth++] = '}';
    for (;;) {
        put(r, c);
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (depth == NEST_MAX) {
                broken(r, "the record that starts at line %lu nests more than %d levels deep",
                       r->rec_line, NEST_MAX);
                return REC_BROKEN;
            }
            stack[depth++] = c == '{' ? '}' : ']';
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth - 1] != c) {
                broken(r, "line %lu: '%c' where %s was expected (the record starts at line %lu)",
                       r->line, c, depth == 0 ? "nothing" : stack[depth - 1] == '}' ? "'}'" : "']'",
                       r->rec_line);
                return REC_BROKEN;
            }
            depth--;
        }
        if (depth == 0 && !in_str)
            return REC_OK;
        if ((c = rd_get(r)) == EOF)
            return cut_short(r, "");
    }
}

void rec_reader_init(struct rec_reader *r, FILE *f, char *buf)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->buf = buf;
    r->line = 1;
    r->peek = REC_NO_PEEK;
    r->form = REC_LINES;
    r->first = 1;
}

/* Decide the form from the first bytes (see the top of this file). */
static void detect(struct rec_reader *r)
{
    int c = rd_get(r);
    /* A UTF-8 byte order mark is skipped. */
    if (c == 0xef) {
        int c2 = rd_get(r), c3 = c2 == 0xbb ? rd_get(r) : EOF;
        if (c2 != 0xbb || c3 != 0xbf) {
            broken(r, "line 1: the input starts with bytes that are neither JSON nor a UTF-8 "
                      "byte order mark");
            r->bad_start = 1;
            return;
        }
        c = rd_get(r);
    }
    rd_unget(r, c);
    c = skip_ws(r);
    if (c == '[') {
        r->form = REC_ARRAY;
        r->array_line = r->line;
        (void)rd_get(r);
        return;
    }
    r->form = REC_LINES;
    if (c == '{') {
        /* '{' alone on its line: pretty-printed objects. */
        unsigned long line = r->line;
        int c2;
        (void)rd_get(r);
        while ((c2 = rd_get(r)) == ' ' || c2 == '\t' || c2 == '\r')
            ;
        if (c2 == '\n' || c2 == EOF) {
            r->form = REC_OBJECTS;
            r->rec_line = line;
            r->len = 0;
            put(r, '{');
            put(r, '\n');
            r->resume = 1; /* the first record is open: '{' read */
            return;
        }
        /* JSON lines: give the line back whole. */
        r->len = 0;
        put(r, '{');
        rd_unget(r, c2);
        r->resume_line = 1;
    }
}

/* The rest of a line into buf (after what it holds); 1, or 2 if too long. */
static int rest_of_line(struct rec_reader *r)
{
    int c;
    while ((c = rd_get(r)) != EOF && c != '\n')
        put(r, c);
    if (r->len > 0 && r->buf[r->len - 1] == '\r' && !r->over)
        r->len--;
    return r->over ? 2 : 1;
}

static int next_line(struct rec_reader *r)
{
    for (;;) {
        int c, blank = 1;
        size_t i;
        if (!r->resume_line) {
            r->len = 0;
            r->over = 0;
            c = rd_get(r);
            if (c == EOF)
                return r->too_big || ferror(r->f) ? cut_short(r, "") : REC_END;
            rd_unget(r, c);
            r->rec_line = r->line;
        } else {
            r->rec_line = r->line;
        }
        r->resume_line = 0;
        if (rest_of_line(r) == 2)
            return REC_TOO_LONG;
        if (r->too_big)
            return cut_short(r, "");
        for (i = 0; i < r->len && blank; i++)
            blank = r->buf[i] == ' ' || r->buf[i] == '\t' || r->buf[i] == '\r';
        if (!blank)
            return REC_OK;
    }
}

int rec_next(struct rec_reader *r)
{
    int c, rc;

    if (r->done)
        return REC_END;
    if (!r->detected) {
        r->detected = 1;
        detect(r);
        if (r->bad_start) {
            r->done = 1;
            return REC_BROKEN;
        }
    }
    if (r->form == REC_LINES) {
        rc = next_line(r);
        if (rc == REC_OK || rc == REC_TOO_LONG)
            r->nrec++;
    } else if (r->resume) {
        /* The first pretty-printed object: detect() read its '{' and the
         * rest of its line; go on from inside it. */
        r->resume = 0;
        rc = scan_value_from(r, 1);
        r->nrec++;
    } else {
        r->len = 0;
        r->over = 0;
        c = skip_ws(r);
        if (r->form == REC_ARRAY) {
            c = rd_get(r);
            if (c == ']' && r->first) {
                r->closed = 1;
            } else if (!r->first) {
                if (c == ']') {
                    r->closed = 1;
                } else if (c != ',') {
                    if (c == EOF) {
                        char m[96];
                        snprintf(m, sizeof m, "the array that starts at line %lu does not end "
                                              "(no ']')", r->array_line);
                        return cut_short(r, m);
                    }
                    broken(r, "line %lu: expected ',' or ']' after the record that starts at "
                              "line %lu", r->line, r->rec_line);
                    return REC_BROKEN;
                } else {
                    c = skip_ws(r);
                    if (c == ']') {
                        broken(r, "line %lu: a ',' before the array's closing ']'", r->line);
                        return REC_BROKEN;
                    }
                    c = rd_get(r);
                }
            }
            if (r->closed) {
                c = skip_ws(r);
                if (c != EOF) {
                    broken(r, "line %lu: text after the array's closing ']' (one array per "
                              "file)", r->line);
                    return REC_BROKEN;
                }
                if (r->too_big || ferror(r->f))
                    return cut_short(r, "");
                r->done = 1;
                return REC_END;
            }
            if (c == EOF) {
                char m[96];
                snprintf(m, sizeof m, "the array that starts at line %lu does not end (no ']')",
                         r->array_line);
                return cut_short(r, m);
            }
            r->first = 0;
        } else {
            c = rd_get(r);
            if (c == EOF) {
                if (r->too_big || ferror(r->f))
                    return cut_short(r, "");
                r->done = 1;
                return REC_END;
            }
            if (c != '{') {
                broken(r, "line %lu: expected '{' to start the next object (objects one after "
                          "another, or a JSON array, or JSON lines)", r->line);
                return REC_BROKEN;
            }
        }
        r->rec_line = r->line;
        rc = scan_value(r, c);
        r->nrec++;
    }
    if (rc == REC_BROKEN && r->err[0] == '\0')
        broken(r, "the record that starts at line %lu does not end before the end of the input",
               r->rec_line);
    if (rc == REC_OK && r->over)
        rc = REC_TOO_LONG;
    if (rc != REC_BROKEN && r->nrec > REC_COUNT_MAX) {
        broken(r, "more than %lu records: one import takes at most %lu; split the file",
               (unsigned long)REC_COUNT_MAX, (unsigned long)REC_COUNT_MAX);
        return REC_BROKEN;
    }
    if (rc == REC_BROKEN || rc == REC_END)
        r->done = 1;
    return rc;
}

const char *rec_where(const struct rec_reader *r, char *buf, size_t size)
{
    if (r->form == REC_LINES)
        snprintf(buf, size, "line %lu", r->rec_line);
    else
        snprintf(buf, size, "record %lu (line %lu)", r->nrec, r->rec_line);
    return buf;
}

const char *rec_form_name(int form)
{
    return form == REC_ARRAY ? "json-array" : form == REC_OBJECTS ? "json-objects" : "json-lines";
}

unsigned long rec_lines(const struct rec_reader *r)
{
    return r->bytes == 0 ? 0 : r->line - (r->last == '\n' ? 1u : 0u);
}
