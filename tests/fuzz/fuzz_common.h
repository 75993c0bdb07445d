/*
 * What every fuzz target shares: CHECK, an invariant whose failure aborts
 * (libFuzzer keeps the input as a crash), and fuzz_db_remove, a registry
 * file and SQLite's -wal and -shm beside it removed at exit.
 */
#ifndef LK_FUZZ_COMMON_H
#define LK_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

static inline void fuzz_db_remove(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

#endif
