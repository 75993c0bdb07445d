/*
 * lk_util.h — memory helpers every layer uses for secrets.
 * Freestanding.
 */
#ifndef LK_UTIL_H
#define LK_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Overwrite n bytes at p with zeros in a way the compiler may not elide.
 * p may be NULL when n is 0. */
void lk_wipe(void *p, size_t n);

/* 1 if the n bytes at a and b are equal, 0 otherwise, in time that depends
 * only on n. Use it for every comparison that involves a secret. */
int lk_ct_equal(const void *a, const void *b, size_t n);

/* Length of s, but never more than max: reads at most max bytes. */
size_t lk_strnlen(const char *s, size_t max);

#ifdef __cplusplus
}
#endif
#endif /* LK_UTIL_H */
