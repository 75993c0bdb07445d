/*
 * console.h — the web console's static files (docs/console.md), embedded
 * into latchkeyd at build time (cmake/embed_files.cmake writes the table
 * from service/daemon/console/): no install path to get wrong, and the
 * files served are exactly those of the build.
 */
#ifndef LKD_CONSOLE_H
#define LKD_CONSOLE_H

#include <stddef.h>

struct evhttp_request;

/* GET / (a redirect to /console/), /console and /console/FILE for the fixed
 * list of files; not /console/api/ (the console's JSON, answered
 * elsewhere). 1 when it answered the request, 0 when the path is not its. */
int lkd_console_serve(struct evhttp_request *req, const char *path);

struct lkd_console_file {
    const char *name;          /* "index.html": a name of the fixed list */
    const unsigned char *data; /* its bytes */
    size_t len;
};

/* Ends with {NULL, NULL, 0}. */
extern const struct lkd_console_file lkd_console_files[];

#endif
