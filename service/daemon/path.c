/*
 * path.c — the request path's readers, apart from http.c and api.c so that
 * tests/fuzz builds them without the server: the split into percent-decoded
 * segments (and the ":verb") and the resource name in the first segments.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

int lkd_split_path(struct lkd_call *c, const char *raw, const char **msg)
{
    const char *p = raw;
    while (*p != '\0') {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0) {
            *msg = "empty path segment";
            return -1;
        }
        if (c->nseg == LKD_SEG_MAX) {
            *msg = "path too long";
            return -1;
        }
        char *enc = strndup(p, n);
        size_t dlen = 0;
        char *dec = enc ? evhttp_uridecode(enc, 0, &dlen) : NULL;
        free(enc);
        if (dec == NULL)
            return -1;
        if (dlen != strlen(dec) || strchr(dec, '/') != NULL || strcmp(dec, ".") == 0 || strcmp(dec, "..") == 0 ||
            dlen == 0) {
            free(dec);
            *msg = "a path segment is empty, \".\", \"..\", or encodes '/' or NUL";
            return -1;
        }
        c->seg[c->nseg++] = dec;
        if (e == NULL)
            break;
        p = e + 1;
        if (*p == '\0') {
            *msg = "path ends with '/'";
            return -1;
        }
    }
    if (c->nseg > 0) {
        char *last = c->seg[c->nseg - 1];
        char *colon = strchr(last, ':');
        if (colon != NULL) {
            *colon = '\0';
            c->verb = colon + 1;
            if (*last == '\0' || *c->verb == '\0') {
                *msg = "empty name or method around ':'";
                return -1;
            }
            /* "..:verb" (or "%2e%2e:verb") leaves ".." once the verb is cut. */
            if (strcmp(last, ".") == 0 || strcmp(last, "..") == 0) {
                *msg = "a path segment is empty, \".\", \"..\", or encodes '/' or NUL";
                return -1;
            }
        }
    }
    return 0;
}

int lkd_name(struct lkd_call *c, lk_reg_name *n, unsigned nseg_used)
{
    memset(n, 0, sizeof *n);
    const char *p = c->seg[1];
    if (!lk_project_valid(p, strlen(p))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "\"%.64s\" is not a valid project id", p);
        return -1;
    }
    n->project = p;
    if (nseg_used >= 4) {
        const char *l = c->seg[3];
        if (!lk_location_valid(l, strlen(l))) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "\"%.64s\" is not a valid location", l);
            return -1;
        }
        n->location = l;
    }
    if (nseg_used >= 6) {
        const char *r = c->seg[5];
        if (!lk_id_valid(r, strlen(r))) {
            char buf[200];
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s",
                            lk_id_why("registry id", r, strlen(r), buf, sizeof buf));
            return -1;
        }
        n->registry = r;
    }
    return 0;
}
