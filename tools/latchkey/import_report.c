/*
 * `latchkey devices import`, `registries import`: what is said about the
 * records — refusals (the first SHOWN_MAX on standard error, the first
 * JSON_ERRORS_MAX in the JSON summary), notes after a successful commit, and
 * progress on a terminal.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "import.h"
#include "out.h"

double elapsed(const struct timespec *from)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - from->tv_sec) + (double)(now.tv_nsec - from->tv_nsec) / 1e9;
}

/* 1 when msg already names the id ('ID'), as the registry's reasons do. */
static int mentions(const char *msg, const char *id)
{
    const char *p = msg;
    size_t n = strlen(id);
    while ((p = strchr(p, '\'')) != NULL) {
        if (strncmp(p + 1, id, n) == 0 && p[1 + n] == '\'')
            return 1;
        p++;
    }
    return 0;
}

void clear_progress(struct import *im)
{
    if (im->tty)
        fputs("\r\033[K", stderr);
}

void refuse(struct import *im, const char *id, lk_err err, const char *fmt, ...)
{
    const char *what = im->devices ? "device" : "registry";
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    im->nerrors++;
    if (im->nerrors <= SHOWN_MAX || im->always) {
        im->nshown++;
        clear_progress(im);
        if (id != NULL && !mentions(msg, id))
            fprintf(stderr, "latchkey: %s: %s: %s '%s': %s (%s)\n", im->a->cmd, im->where, what, id,
                    msg, lk_errname(err));
        else
            fprintf(stderr, "latchkey: %s: %s: %s (%s)\n", im->a->cmd, im->where, msg, lk_errname(err));
    }
    if (im->errors != NULL && json_array_size(im->errors) < JSON_ERRORS_MAX) {
        json_t *e = json_pack("{s:I,s:I,s:s}", "record", (json_int_t)im->rd.nrec, "line",
                              (json_int_t)im->rd.rec_line, "error", lk_errname(err));
        if (e != NULL) {
            if (id != NULL)
                json_object_set_new(e, "id", out_jtext(id, strlen(id)));
            json_object_set_new(e, "message", out_jtext(msg, strlen(msg)));
            json_array_append_new(im->errors, e);
        }
    }
}

int note_add(struct import *im, struct notes *ns, const char *id, uint64_t asked, uint64_t got,
             const char *fmt, ...)
{
    struct note *n;
    if (ns->n == ns->cap) {
        size_t nc = ns->cap ? ns->cap * 2 : 64;
        struct note *nv = realloc(ns->v, nc * sizeof *nv);
        if (nv == NULL)
            return -1;
        ns->v = nv;
        ns->cap = nc;
    }
    n = &ns->v[ns->n];
    memset(n, 0, sizeof *n);
    n->where = strdup(im->where);
    n->id = strdup(id);
    n->asked = asked;
    n->got = got;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&n->text, fmt, ap) < 0)
            n->text = NULL;
        va_end(ap);
        if (n->text == NULL) {
            free(n->where);
            free(n->id);
            return -1;
        }
    }
    if (n->where == NULL || n->id == NULL) {
        free(n->where);
        free(n->id);
        free(n->text);
        return -1;
    }
    ns->n++;
    return 0;
}

/* Drop the notes after the first n (those of a record that was not
 * imported after all). */
void notes_truncate(struct notes *ns, size_t n)
{
    while (ns->n > n) {
        struct note *x = &ns->v[--ns->n];
        free(x->where);
        free(x->id);
        free(x->text);
    }
}

void notes_free(struct notes *ns)
{
    notes_truncate(ns, 0);
    free(ns->v);
    memset(ns, 0, sizeof *ns);
}

/* Print the first SHOWN_MAX notes of a kind, then how many more. */
void notes_print(struct import *im, const struct notes *ns, const char *kind)
{
    size_t i;
    for (i = 0; i < ns->n && i < SHOWN_MAX; i++) {
        const struct note *n = &ns->v[i];
        if (n->text != NULL)
            fprintf(stderr, "latchkey: %s: %s: %s '%s': %s\n", im->a->cmd, n->where,
                    im->devices ? "device" : "registry", n->id, n->text);
        else
            fprintf(stderr, "latchkey: %s: %s: device '%s': numId %llu %s; it is numId %llu now\n",
                    im->a->cmd, n->where, n->id, (unsigned long long)n->asked,
                    n->asked > LK_REG_NUM_ID_MAX ? "is above 2^62, the largest kept"
                                                 : "belongs to another device in this database",
                    (unsigned long long)n->got);
    }
    if (ns->n > SHOWN_MAX)
        fprintf(stderr, "latchkey: %s: ... and %zu more %s (%s)\n", im->a->cmd, ns->n - SHOWN_MAX, kind,
                im->a->json ? "all listed in the JSON summary" : "--format json lists them all");
}

void progress(struct import *im, int force)
{
    double t;
    if (!im->tty)
        return;
    if (!force && elapsed(&im->last_progress) < 0.2)
        return;
    clock_gettime(CLOCK_MONOTONIC, &im->last_progress);
    t = elapsed(&im->start);
    fprintf(stderr, "\r\033[Kimporting: line %lu, %lu %s, %.0f %s/s", im->rd.line, im->nok,
            im->devices ? "devices" : "registries", t > 0 ? (double)im->nok / t : 0.0,
            im->devices ? "devices" : "registries");
    fflush(stderr);
}
