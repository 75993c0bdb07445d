/*
 * latchkey setup: files and directories under --root, with the owners and
 * modes of docs/operations.md. A file is never written in place: a new one
 * beside it (O_CREAT|O_EXCL|O_NOFOLLOW, 0600 until its mode is set), synced,
 * then renamed over the old name, so that a reader sees the old file or the
 * new one, and a link planted at the temporary name is never followed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "setup.h"
#include "tool.h"

int setup_path(const struct setup *s, char *out, size_t n, const char *abs)
{
    int w = snprintf(out, n, "%s%s", s->root, abs);
    if (w < 0 || (size_t)w >= n)
        return setup_fail(EXIT_USAGE, abs, "the path under --root is too long"), -1;
    return 0;
}

void setup_say(const char *verb, const char *path, const char *fmt, ...)
{
    va_list ap;
    printf("%-10s %s", verb, path);
    if (fmt != NULL && fmt[0] != '\0') {
        fputs("  ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
    }
    putchar('\n');
    fflush(stdout);
}

int setup_fail(int rc, const char *path, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: setup: %s: ", tool_name, path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return rc;
}

/* Owner root:latchkey when asked and possible (root, and the group exists). */
static int own(const struct setup *s, int fd, const char *path, int group)
{
    if (!group || !s->is_root || !s->has_group)
        return 0;
    if (fchown(fd, 0, s->gid) != 0)
        return setup_fail(EXIT_FAIL, path, "chown root:latchkey: %s", strerror(errno)), -1;
    return 0;
}

/* mkdir -p of the parents of p (a path under root), mode 0755. */
static int parents(const char *p)
{
    char buf[SETUP_PATH_MAX];
    char *q;
    snprintf(buf, sizeof buf, "%s", p);
    for (q = buf + 1; (q = strchr(q, '/')) != NULL; q++) {
        *q = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return setup_fail(tool_file_exit(errno), buf, "cannot make the directory: %s", strerror(errno));
        *q = '/';
    }
    return EXIT_OK;
}

int setup_dir(const struct setup *s, const char *abs, mode_t mode, int group)
{
    char p[SETUP_PATH_MAX];
    struct stat st;
    int fd, rc;
    if (setup_path(s, p, sizeof p, abs) != 0)
        return EXIT_USAGE;
    if (lstat(p, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return setup_fail(EXIT_FILE, p, "exists and is not a directory");
        if ((st.st_mode & 07777) != mode || (group && s->is_root && s->has_group && st.st_gid != s->gid))
            setup_say("kept", p, "(note: mode %04o, group %u; setup makes it %04o%s)", (unsigned)(st.st_mode & 07777),
                      (unsigned)st.st_gid, (unsigned)mode, group ? " root:latchkey" : "");
        else
            setup_say("kept", p, NULL);
        return EXIT_OK;
    }
    if ((rc = parents(p)) != EXIT_OK)
        return rc;
    if (mkdir(p, 0700) != 0)
        return setup_fail(tool_file_exit(errno), p, "cannot make the directory: %s", strerror(errno));
    if ((fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return setup_fail(EXIT_FAIL, p, "%s", strerror(errno));
    /* chown first: it clears the setgid bit that fchmod then sets. */
    rc = own(s, fd, p, group) == 0 ? EXIT_OK : EXIT_FAIL;
    if (rc == EXIT_OK && fchmod(fd, mode) != 0)
        rc = setup_fail(EXIT_FAIL, p, "chmod %04o: %s", (unsigned)mode, strerror(errno));
    close(fd);
    if (rc == EXIT_OK)
        setup_say("created", p, "(%04o%s)", (unsigned)mode,
                  group && s->is_root && s->has_group ? " root:latchkey" : "");
    return rc;
}

int setup_write(const struct setup *s, const char *abs, const void *data, size_t len, mode_t mode, int group)
{
    char p[SETUP_PATH_MAX], tmp[SETUP_PATH_MAX + 32];
    unsigned char r[8];
    const char *b = data;
    int fd = -1, rc;
    size_t off = 0;

    if (setup_path(s, p, sizeof p, abs) != 0)
        return EXIT_USAGE;
    if ((rc = parents(p)) != EXIT_OK)
        return rc;
    if (RAND_bytes(r, sizeof r) != 1)
        return setup_fail(EXIT_FAIL, p, "no randomness for a temporary name");
    snprintf(tmp, sizeof tmp, "%s.new-%02x%02x%02x%02x%02x%02x%02x%02x", p, r[0], r[1], r[2], r[3], r[4], r[5], r[6],
             r[7]);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return setup_fail(tool_file_exit(errno), tmp, "cannot create: %s", strerror(errno));
    rc = own(s, fd, tmp, group) == 0 ? EXIT_OK : EXIT_FAIL;
    if (rc == EXIT_OK && fchmod(fd, mode) != 0)
        rc = setup_fail(EXIT_FAIL, tmp, "chmod %04o: %s", (unsigned)mode, strerror(errno));
    while (rc == EXIT_OK && off < len) {
        ssize_t w = write(fd, b + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = setup_fail(EXIT_FAIL, tmp, "write: %s", strerror(errno));
        else
            off += (size_t)w;
    }
    if (rc == EXIT_OK && fsync(fd) != 0)
        rc = setup_fail(EXIT_FAIL, tmp, "fsync: %s", strerror(errno));
    if (close(fd) != 0 && rc == EXIT_OK)
        rc = setup_fail(EXIT_FAIL, tmp, "close: %s", strerror(errno));
    if (rc == EXIT_OK && rename(tmp, p) != 0)
        rc = setup_fail(EXIT_FAIL, p, "rename from %s: %s", tmp, strerror(errno));
    if (rc != EXIT_OK)
        unlink(tmp);
    return rc;
}

int setup_read(const char *path, size_t max, int nofollow, char **out, size_t *len)
{
    struct stat st;
    char *buf;
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0)), e;
    *out = NULL;
    *len = 0;
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0) {
        e = errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return EINVAL;
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return EFBIG;
    }
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        close(fd);
        return ENOMEM;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            /* an I/O error is not a shorter file: the caller compares and
             * parses what this returns */
            e = errno;
            free(buf);
            close(fd);
            return e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int setup_file(const struct setup *s, const char *abs, const char *data, size_t len, mode_t mode, int group)
{
    char p[SETUP_PATH_MAX], bak[SETUP_PATH_MAX + 8];
    char *old = NULL;
    size_t olen = 0;
    int e, rc;

    if (setup_path(s, p, sizeof p, abs) != 0)
        return EXIT_USAGE;
    e = setup_read(p, SETUP_FILE_MAX, 1, &old, &olen);
    if (e == 0 && olen == len && memcmp(old, data, len) == 0) {
        free(old);
        setup_say("kept", p, NULL);
        return EXIT_OK;
    }
    if (e != 0 && e != ENOENT) {
        free(old);
        return setup_fail(EXIT_FILE, p, "exists and cannot be read as a file: %s", strerror(e));
    }
    if (e == 0 && !s->force) {
        free(old);
        return setup_fail(EXIT_FILE, p,
                          "exists and differs from what setup would write: kept; give --force to replace it "
                          "(the old one is saved as %s.bak)",
                          p);
    }
    if (e == 0) {
        snprintf(bak, sizeof bak, "%s.bak", abs);
        rc = setup_write(s, bak, old, olen, mode, group);
        free(old);
        if (rc != EXIT_OK)
            return rc;
    }
    if ((rc = setup_write(s, abs, data, len, mode, group)) != EXIT_OK)
        return rc;
    if (e == 0)
        setup_say("replaced", p, "(the old one is %s.bak)", p);
    else
        setup_say("created", p, NULL);
    return EXIT_OK;
}
