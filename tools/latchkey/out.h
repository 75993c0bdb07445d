/*
 * Output of the registry commands (out.c): IoT Core's JSON conventions
 * (int64 as strings, bytes as base64, times as RFC 3339 UTC), streamed JSON
 * arrays, aligned tables and YAML-like descriptions for people.
 */
#ifndef LK_TOOL_OUT_H
#define LK_TOOL_OUT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

json_t *out_jtime(int64_t t);
json_t *out_ji64(int64_t v);          /* int64 as a JSON string, as IoT Core */
json_t *out_ju64(uint64_t v);
json_t *out_jb64(const uint8_t *p, size_t n);
/* Text that may not be UTF-8: a JSON string, invalid bytes as U+FFFD. */
json_t *out_jtext(const char *p, size_t n);
/* 1 when p[0..n) is valid UTF-8 without NUL. */
int out_utf8_valid(const char *p, size_t n);
/* Strict base64: the standard or the URL alphabet (not both in one text),
 * padding absent or complete, zero unused bits (lk_b64url_decode). Returns 0
 * and a malloc'ed buffer, or -1. */
int out_b64_decode(const char *in, size_t in_len, uint8_t **out, size_t *out_len);

/* Print j (indented JSON) on stdout followed by a newline; consumes j.
 * Returns an exit code (EXIT_FAIL if stdout fails). */
int out_json(json_t *j);
/* Print j as a YAML-like description (gcloud's describe); consumes j. */
int out_yaml(json_t *j);
/* A JSON array printed as it is produced (lists of any length). */
struct out_list {
    unsigned long n;
};
void out_list_begin(struct out_list *l);
int out_list_item(struct out_list *l, json_t *j); /* consumes j */
int out_list_end(struct out_list *l);

/* An aligned table for people. */
struct out_table;
struct out_table *out_table_new(unsigned ncols, const char *const *headers);
/* Add a row of ncols strings (copied). Returns 0, or -1 out of memory. */
int out_table_row(struct out_table *t, const char *const *cells);
int out_table_print(struct out_table *t); /* and frees it */
void out_table_free(struct out_table *t);

/* Write all of buf to file descriptor fd, bypassing stdio (flushed first when
 * fd is standard output), so that no copy of a secret stays in a stdio
 * buffer: the caller wipes buf. 0, or -1 with errno. */
int out_write_fd(int fd, const char *buf, size_t len);

/* Flush stdout and report a failure to write it; returns an exit code. */
int out_finish(int rc);
#endif
