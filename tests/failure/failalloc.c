/* failalloc.c — see failalloc.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "failalloc.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
time_t __wrap_time(time_t *t);
int __wrap_clock_gettime(clockid_t id, struct timespec *ts);
int __real_clock_gettime(clockid_t id, struct timespec *ts);

static long armed_at, counted;
static int armed, hit;
int64_t fa_now = 1767225600; /* 2026-01-01 */

/* 1 when this allocation is the one to fail. */
static int fa_fail(void)
{
    if (!armed)
        return 0;
    if (++counted == armed_at) {
        hit = 1;
        return 1;
    }
    return 0;
}

void fa_arm(long n) { counted = 0; armed_at = n; hit = 0; armed = 1; }
void fa_disarm(void) { armed = 0; }
long fa_count(void) { return counted; }
int fa_hit(void) { return hit; }
void *fa_raw_malloc(size_t n) { return __real_malloc(n); }
void fa_raw_free(void *p) { free(p); }

/* # Our code (-Wl,--wrap) */

void *__wrap_malloc(size_t n)
{
    return fa_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fa_fail() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return fa_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = fa_fail() ? NULL : __real_malloc(n);
    if (d)
        memcpy(d, s, n);
    else
        errno = ENOMEM;
    return d;
}

char *__wrap_strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *d = fa_fail() ? NULL : __real_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    } else {
        errno = ENOMEM;
    }
    return d;
}

time_t __wrap_time(time_t *t)
{
    if (t)
        *t = (time_t)fa_now;
    return (time_t)fa_now;
}

int __wrap_clock_gettime(clockid_t id, struct timespec *ts)
{
    if (id != CLOCK_REALTIME)
        return __real_clock_gettime(id, ts);
    ts->tv_sec = (time_t)fa_now;
    ts->tv_nsec = 0;
    return 0;
}

/* # OpenSSL */

static void *fa_crypto_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return fa_fail() ? NULL : __real_malloc(n);
}

static void *fa_crypto_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return fa_fail() ? NULL : __real_realloc(p, n);
}

static void fa_crypto_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* # jansson */

static void *fa_json_malloc(size_t n)
{
    return fa_fail() ? NULL : __real_malloc(n);
}

static void fa_json_free(void *p)
{
    free(p);
}

/* # SQLite: a header keeps each block's size (xSize), 16 bytes for alignment. */

#define HDR 16

static void *fa_sql_malloc(int n)
{
    char *p;
    if (n <= 0 || fa_fail())
        return NULL;
    p = __real_malloc((size_t)n + HDR);
    if (!p)
        return NULL;
    *(size_t *)p = (size_t)n;
    return p + HDR;
}

static void fa_sql_free(void *p)
{
    if (p)
        free((char *)p - HDR);
}

static void *fa_sql_realloc(void *p, int n)
{
    char *q;
    if (n <= 0 || fa_fail())
        return NULL;
    q = __real_realloc((char *)p - HDR, (size_t)n + HDR);
    if (!q)
        return NULL;
    *(size_t *)q = (size_t)n;
    return q + HDR;
}

static int fa_sql_size(void *p)
{
    return p ? (int)*(size_t *)((char *)p - HDR) : 0;
}

static int fa_sql_roundup(int n)
{
    return (n + 7) & ~7;
}

static int fa_sql_init(void *arg) { (void)arg; return SQLITE_OK; }
static void fa_sql_shutdown(void *arg) { (void)arg; }

static const sqlite3_mem_methods fa_sql_methods = {
    fa_sql_malloc, fa_sql_free, fa_sql_realloc, fa_sql_size, fa_sql_roundup,
    fa_sql_init, fa_sql_shutdown, NULL
};

void fa_install(void)
{
    if (!CRYPTO_set_mem_functions(fa_crypto_malloc, fa_crypto_realloc, fa_crypto_free)) {
        fprintf(stderr, "alloc_fail: OpenSSL allocated before its hooks were set\n");
        exit(2);
    }
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &fa_sql_methods) != SQLITE_OK ||
        sqlite3_initialize() != SQLITE_OK) {
        fprintf(stderr, "alloc_fail: SQLite's allocator could not be set\n");
        exit(2);
    }
    json_set_alloc_funcs(fa_json_malloc, fa_json_free);
}
