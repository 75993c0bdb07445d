/* Memory helpers: see lk_util.h. */
#include "latchkey/lk_util.h"

void lk_wipe(void *p, size_t n)
{
    volatile unsigned char *v = (volatile unsigned char *)p;
    while (n--)
        *v++ = 0;
}

int lk_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile unsigned char *x = (const volatile unsigned char *)a;
    const volatile unsigned char *y = (const volatile unsigned char *)b;
    unsigned d = 0;
    size_t i;
    for (i = 0; i < n; i++)
        d |= (unsigned)(x[i] ^ y[i]);
    /* 1 when d == 0, computed without a branch on d. */
    return (int)(1u & ((d - 1u) >> 8));
}

size_t lk_strnlen(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n] != '\0')
        n++;
    return n;
}
