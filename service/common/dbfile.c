/*
 * dbfile.c — making the service's SQLite files (dbfile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dbfile.h"

void lk_dbfile__dir_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

int lk_dbfile__create(const char *path, mode_t mode, int force_mode, int *made)
{
    char dir[4096];
    struct stat ds;
    int e, fd, have_dir;

    *made = 0;
    lk_dbfile__dir_of(path, dir, sizeof dir);
    have_dir = stat(dir, &ds) == 0;
    /* A setgid directory is one that services share through its group
     * (/var/lib/latchkey, docs/operations.md): the group gets the owner's
     * rights, whatever the creator's umask. */
    if (have_dir && (ds.st_mode & S_ISGID)) {
        mode |= (mode & 0600) >> 3;
        force_mode = 1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return errno == EEXIST ? 0 : -1;
    if ((force_mode && fchmod(fd, mode) != 0) ||
        (geteuid() == 0 && have_dir && (ds.st_uid != 0 || ds.st_gid != 0) &&
         fchown(fd, ds.st_uid, ds.st_gid) != 0)) {
        e = errno;
        close(fd);
        (void)unlink(path);
        *made = 1;
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}
