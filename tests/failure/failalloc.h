/*
 * failalloc.h — one allocation counter for everything a test runs: our own
 * code's malloc/calloc/realloc/strdup/strndup (linked with -Wl,--wrap), and
 * SQLite's, OpenSSL's and jansson's allocators (their own hooks, installed
 * by fa_install before anything else). Armed with n, the n-th allocation
 * counted fails (returns NULL) and every other succeeds.
 */
#ifndef LK_FAILALLOC_H
#define LK_FAILALLOC_H

#include <stddef.h>
#include <stdint.h>

void fa_install(void);          /* first thing in main */
void fa_arm(long n);            /* count from 0; fail the n-th (n >= 1) */
void fa_disarm(void);           /* stop counting and failing */
long fa_count(void);            /* allocations counted since fa_arm */
int fa_hit(void);               /* 1 when the armed failure happened */

/* A fixed clock for our code (time() and clock_gettime() are wrapped too):
 * runs give the same rows, so a success can be compared with a clean run. */
extern int64_t fa_now;

/* Allocation outside the counter, for the tests' own bookkeeping. */
void *fa_raw_malloc(size_t n);
void fa_raw_free(void *p);

#endif
