/*
 * bench_options.h — the "--name VALUE" options of the bench programs, read
 * from a table (bench_connect, bench_publish) rather than an if-else ladder
 * in each.
 */
#ifndef LK_BENCH_OPTIONS_H
#define LK_BENCH_OPTIONS_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* An option with a value: --name, where it goes, and how it is read. */
struct bench_option {
    const char *name;
    char kind; /* i: int, l: long, d: double, s: string */
    void *to;
};

/* Set the option called name (from table[0..n)) to v: 0, or -1 for no such option. */
static inline int bench_set_option(const struct bench_option *table, size_t n, const char *name,
                                   const char *v)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (strcmp(name, table[i].name))
            continue;
        switch (table[i].kind) {
        case 'i': *(int *)table[i].to = atoi(v); break;
        case 'l': *(long *)table[i].to = atol(v); break;
        case 'd': *(double *)table[i].to = atof(v); break;
        default: *(const char **)table[i].to = v; break;
        }
        return 0;
    }
    return -1;
}

#endif
