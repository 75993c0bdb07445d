/*
 * Records of an import file (records.c): JSON lines, a JSON array, or JSON
 * objects one after another, read one record at a time within bounds.
 */
#ifndef LK_TOOL_RECORDS_H
#define LK_TOOL_RECORDS_H

#include <stdint.h>
#include <stdio.h>

#define REC_MAX (1024u * 1024u)              /* bytes in one record (a line, or an element) */
#define REC_FILE_MAX (4ull * 1024 * 1024 * 1024) /* bytes read from one input */
#define REC_COUNT_MAX 1000000ul              /* records in one input */

enum { REC_LINES, REC_ARRAY, REC_OBJECTS };  /* the input's form */
enum { REC_OK, REC_END, REC_TOO_LONG, REC_BROKEN }; /* what rec_next found */
#define REC_NO_PEEK (-2)

struct rec_reader {
    FILE *f;
    char *buf;                 /* REC_MAX + 1 bytes, the caller's */
    size_t len;                /* the record: buf[0..len) (not NUL-terminated) */
    int form;                  /* REC_LINES, REC_ARRAY, REC_OBJECTS (after the first rec_next) */
    unsigned long line;        /* the line being read */
    unsigned long rec_line;    /* the line the record starts on */
    unsigned long nrec;        /* records so far (blank lines are none) */
    unsigned long array_line;
    unsigned long long bytes;
    char err[256];             /* REC_BROKEN: why */
    /* internal */
    int peek, last, detected, resume, resume_line, first, closed, done, over, too_big, bad_start;
};

/* buf: REC_MAX + 1 bytes. */
void rec_reader_init(struct rec_reader *r, FILE *f, char *buf);
/* The next record: REC_OK (buf, len, rec_line), REC_TOO_LONG (a record over
 * REC_MAX, skipped: refuse it and go on), REC_END, or REC_BROKEN (err says
 * why; nothing more can be read). */
int rec_next(struct rec_reader *r);
/* "line N" (JSON lines) or "record N (line L)". */
const char *rec_where(const struct rec_reader *r, char *buf, size_t size);
/* Lines read so far (all of the input's at REC_END). */
unsigned long rec_lines(const struct rec_reader *r);
/* "json-lines", "json-array", "json-objects". */
const char *rec_form_name(int form);

#endif
