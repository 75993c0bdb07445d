/*
 * lk_util.h — memory helpers every layer uses for secrets, and UTF-8.
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

/* Length of the valid UTF-8 sequence at p[0] (n > 0 bytes available), or 0
 * when it is not valid UTF-8: no overlongs, no surrogates, nothing above
 * U+10FFFF, no truncation (RFC 3629). */
size_t lk_utf8_seq(const uint8_t *p, size_t n);
/* 1 when the n bytes at s are valid UTF-8 (NUL included), else 0. */
int lk_utf8_valid(const void *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* LK_UTIL_H */
