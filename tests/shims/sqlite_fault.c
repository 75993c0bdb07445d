/*
 * sqlite_fault.c — for the tests only, never built into the product: an
 * LD_PRELOAD shim that makes SQLite fail on demand inside a real process
 * (the broker with latchkey's plugin), so that tests can prove what the
 * plugin does when the registry cannot be read. Nothing in the installed
 * plugin can be told to fail.
 *
 * LK_SQLITE_FAULT names a control file. While it holds a non-empty first
 * line, every sqlite3_step() of a statement whose SQL contains that text
 * ("*" = every statement) returns SQLITE_IOERR without running. The file is
 * looked at no more than every 20 ms.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

static char pattern[256];
static struct timespec checked;

static void reload(void)
{
    const char *path = getenv("LK_SQLITE_FAULT");
    struct timespec now;
    FILE *f;

    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - checked.tv_sec) * 1000 + (now.tv_nsec - checked.tv_nsec) / 1000000 < 20
        && checked.tv_sec)
        return;
    checked = now;
    pattern[0] = '\0';
    if (!path || !(f = fopen(path, "r")))
        return;
    if (!fgets(pattern, sizeof pattern, f))
        pattern[0] = '\0';
    fclose(f);
    pattern[strcspn(pattern, "\r\n")] = '\0';
}

int sqlite3_step(sqlite3_stmt *stmt)
{
    static int (*real)(sqlite3_stmt *);
    const char *sql;

    if (!real)
        real = (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_step");
    reload();
    if (pattern[0] && (sql = sqlite3_sql(stmt)) != NULL
        && (!strcmp(pattern, "*") || strstr(sql, pattern)))
        return SQLITE_IOERR;
    return real(stmt);
}
