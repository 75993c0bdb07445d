/*
 * dbcopy.c — backups, restores and schema versions of the service's SQLite
 * files (dbcopy.h).
 *
 * A backup copies with SQLite's backup API, BACKUP_STEP pages per step: the
 * source is read in short read transactions, so that in rollback mode a
 * writer waits for at most one step, and in WAL mode (the services') no
 * writer ever waits. A write by another connection between two steps makes
 * SQLite start the copy again from the first page; after BACKUP_RESTARTS of
 * these the rest is copied in one step — one read transaction, which in WAL
 * mode blocks no writer (it only holds checkpoints back for its length) — so
 * that a busy source cannot keep the copy from ending.
 */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dbcopy.h"
#include "dbfile.h"

#define BACKUP_STEP 256       /* pages (1 MiB of 4 KiB pages) per step */
#define BACKUP_RESTARTS 8     /* copies started again before one whole-copy step */
#define BUSY_MS 5000          /* how long a step waits for a lock */

/* SQLite's unix VFS: the -shm byte every connection of a WAL database holds a
 * shared lock on while it has the file open (UNIX_SHM_DMS), and the main
 * file's lock bytes (PENDING_BYTE ... SHARED_FIRST + SHARED_SIZE). */
#define SHM_DMS_BYTE 128
#define DB_LOCK_FIRST 0x40000000
#define DB_LOCK_LEN (2 + 510)

static lk_err say(char *why, size_t why_size, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static lk_err say(char *why, size_t why_size, lk_err err, const char *fmt, ...)
{
    va_list ap;
    if (why != NULL && why_size > 0) {
        va_start(ap, fmt);
        vsnprintf(why, why_size, fmt, ap);
        va_end(ap);
    }
    return err;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The file at path must exist, be a regular file and readable; a file to
 * be written (write) must be writable and not a symbolic link (never written
 * through a link); one only read may be reached through one. */
static lk_err usable(const char *path, const struct lk_dbcopy_kind *k, int write, char *why,
                     size_t why_size)
{
    struct stat st;
    if ((write ? lstat(path, &st) : stat(path, &st)) != 0)
        return say(why, why_size, errno == ENOENT ? LK_ERR_FILE_MISSING : LK_ERR_FILE_UNUSABLE,
                   "%s %s: %s", k->what, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return say(why, why_size, LK_ERR_FILE_UNUSABLE, "%s %s is not a regular file", k->what,
                   path);
    if (access(path, write ? R_OK | W_OK : R_OK) != 0)
        return say(why, why_size, LK_ERR_FILE_UNUSABLE, "%s %s is not %s by you (uid %u): %s",
                   k->what, path, write ? "readable and writable" : "readable",
                   (unsigned)getuid(), strerror(errno));
    return LK_OK;
}

static lk_err open_db(const char *path, int write, const struct lk_dbcopy_kind *k, sqlite3 **db,
                      char *why, size_t why_size)
{
    int rc = sqlite3_open_v2(path, db, write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY,
                             NULL);
    if (rc != SQLITE_OK) {
        say(why, why_size, rc == SQLITE_NOMEM ? LK_ERR_NOMEM : LK_ERR_IO, "cannot open %s %s: %s",
            k->what, path, *db != NULL ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return rc == SQLITE_NOMEM ? LK_ERR_NOMEM : LK_ERR_IO;
    }
    sqlite3_extended_result_codes(*db, 1);
    sqlite3_busy_timeout(*db, BUSY_MS);
    return LK_OK;
}

/* One integer (or, with text, the first column as text) of sql's first row.
 * SQLITE_ROW, SQLITE_DONE (no row), or the error's code. */
static int query(sqlite3 *db, const char *sql, int64_t *v, char *text, size_t text_size)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && v != NULL)
            *v = sqlite3_column_int64(s, 0);
        if (rc == SQLITE_ROW && text != NULL) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(text, text_size, "%s", t != NULL ? (const char *)t : "");
        }
    }
    sqlite3_finalize(s);
    return rc;
}

/* Whether db is a file of kind k of a version this program can read (any
 * version with CHECK_ANY), and (CHECK_FULL) whether it passes SQLite's
 * integrity check. */
#define CHECK_FULL 1
#define CHECK_ANY 2
static lk_err check(sqlite3 *db, const char *path, const struct lk_dbcopy_kind *k, int how,
                    int64_t *version, char *why, size_t why_size)
{
    int64_t app = 0, has_meta = 0;
    char res[512];
    int rc;

    *version = 0;
    rc = query(db, "PRAGMA application_id", &app, NULL, 0);
    if (rc != SQLITE_ROW) {
        if ((rc & 0xff) == SQLITE_NOTADB)
            return say(why, why_size, k->foreign, "%s is not a latchkey %s (not an SQLite "
                                                  "database at all)", path, k->what);
        return say(why, why_size, LK_ERR_IO, "cannot read %s %s: %s", k->what, path,
                   sqlite3_errmsg(db));
    }
    if (app != k->application_id)
        return say(why, why_size, k->foreign, "%s is not a latchkey %s (application id %lld, "
                                              "not %ld)", path, k->what, (long long)app,
                   (long)k->application_id);
    rc = query(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
               &has_meta, NULL, 0);
    if (rc == SQLITE_ROW && has_meta == 1)
        rc = query(db, "SELECT value FROM meta WHERE key = 'schema_version' AND "
                       "typeof(value) = 'integer'", version, NULL, 0);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            return say(why, why_size, k->foreign, "%s has no schema version: not a latchkey %s, "
                                                  "or damaged", path, k->what);
        return say(why, why_size, LK_ERR_IO, "cannot read %s %s: %s", k->what, path,
                   sqlite3_errmsg(db));
    }
    if (*version < 0 || (*version > k->version && !(how & CHECK_ANY)))
        return say(why, why_size, k->foreign, "%s has %s schema version %lld, newer than this "
                                              "program's %lld: use a newer latchkey", path,
                   k->what, (long long)*version, (long long)k->version);
    if (!(how & CHECK_FULL))
        return LK_OK;
    rc = query(db, "PRAGMA integrity_check(1)", NULL, res, sizeof res);
    if (rc != SQLITE_ROW)
        return say(why, why_size, LK_ERR_REG_STORAGE, "%s %s cannot be checked: %s", k->what,
                   path, sqlite3_errmsg(db));
    if (strcmp(res, "ok") != 0)
        return say(why, why_size, LK_ERR_REG_STORAGE, "%s %s fails SQLite's integrity check: "
                                                      "%s", k->what, path, res);
    return LK_OK;
}

lk_err lk_dbcopy__version(const char *path, const struct lk_dbcopy_kind *k, int64_t *version,
                          char *why, size_t why_size)
{
    sqlite3 *db = NULL;
    lk_err err;
    *version = 0;
    if ((err = usable(path, k, 0, why, why_size)) != LK_OK ||
        (err = open_db(path, 0, k, &db, why, why_size)) != LK_OK)
        return err;
    err = check(db, path, k, CHECK_ANY, version, why, why_size);
    sqlite3_close(db);
    return err;
}

/* Removes a file SQLite used and its companions. */
static void remove_db(const char *path)
{
    static const char *const ext[] = {"", "-journal", "-wal", "-shm"};
    char p[4200];
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        (void)unlink(p);
    }
}

static int fsync_path(const char *path, int dir)
{
    int r, fd = open(path, (dir ? O_DIRECTORY : 0) | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    r = fsync(fd);
    close(fd);
    return r;
}

/* Copies with an initialised backup b; npage pages per step (-1: all at
 * once). LK_OK, or the error with why. */
static lk_err copy(sqlite3_backup *b, sqlite3 *dst, int npage, const char *src_path,
                   const struct lk_dbcopy_kind *k, char *why, size_t why_size)
{
    int restarts = 0, busy = 0, rc;
    int last_done = -1;

    for (;;) {
        rc = sqlite3_backup_step(b, npage);
        if (rc == SQLITE_DONE)
            return LK_OK;
        if (rc == SQLITE_OK || (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
            int done = sqlite3_backup_pagecount(b) - sqlite3_backup_remaining(b);
            if (rc != SQLITE_OK) {
                if (++busy > BUSY_MS / 10)
                    return say(why, why_size, LK_ERR_REG_BUSY, "copying %s %s: another "
                                                               "process held a lock for %d ms "
                                                               "(a transaction that did not "
                                                               "end)", k->what, src_path,
                               BUSY_MS);
                nap_ms(10);
                continue;
            }
            busy = 0;
            /* No more pages done than after the last step: a write by
             * another connection made SQLite start again. */
            if (done <= last_done && ++restarts >= BACKUP_RESTARTS)
                npage = -1;
            last_done = done;
            continue;
        }
        if ((rc & 0xff) == SQLITE_READONLY)
            return say(why, why_size, LK_ERR_IO, "cannot copy into the %s: it is in WAL mode "
                                                 "with another page size than %s's",
                       k->what, src_path);
        return say(why, why_size, (rc & 0xff) == SQLITE_NOMEM ? LK_ERR_NOMEM : LK_ERR_IO,
                   "copying %s %s: %s", k->what, src_path, sqlite3_errmsg(dst));
    }
}

/* The journal mode of db set to mode ("delete", "wal"), and checked. */
static lk_err set_journal(sqlite3 *db, const char *path, const char *mode,
                          const struct lk_dbcopy_kind *k, char *why, size_t why_size)
{
    char sql[64], got[32] = "";
    snprintf(sql, sizeof sql, "PRAGMA journal_mode = %s", mode);
    if (query(db, sql, NULL, got, sizeof got) != SQLITE_ROW || strcmp(got, mode) != 0)
        return say(why, why_size, LK_ERR_IO, "%s %s: cannot set journal mode %s (%s)", k->what,
                   path, mode, got[0] != '\0' ? got : sqlite3_errmsg(db));
    return LK_OK;
}

/* A new, empty file beside dst for the copy: DIR/.NAME.tmp-PID-N, created
 * exclusively, mode 0640 whatever the kind (a backup is read, never written
 * by a service), with the directory's owner when root makes it. */
static lk_err make_tmp(const char *dst, char *tmp, size_t tmp_size, char *why, size_t why_size)
{
    char dir[4096];
    const char *base = strrchr(dst, '/');
    struct stat st;
    base = base != NULL ? base + 1 : dst;
    lk_dbfile__dir_of(dst, dir, sizeof dir);
    for (unsigned n = 0; n < 100; n++) {
        int made = 0;
        if (snprintf(tmp, tmp_size, "%s/.%s.tmp-%ld-%u", dir, base, (long)getpid(), n) >=
            (int)tmp_size)
            return say(why, why_size, LK_ERR_ARG, "the path %s is too long", dst);
        if (lstat(tmp, &st) == 0 || errno != ENOENT)
            continue;
        if (lk_dbfile__create(tmp, 0640, 0, &made) != 0)
            return say(why, why_size, errno == EACCES || errno == EPERM ? LK_ERR_FILE_UNUSABLE
                                                                         : LK_ERR_IO,
                       "cannot create %s in %s: %s", tmp, dir, strerror(errno));
        /* Ours only if it is still an empty regular file (dbfile's create
         * also succeeds for a file that appeared meanwhile). */
        if (lstat(tmp, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 0 ||
            st.st_nlink != 1)
            return say(why, why_size, LK_ERR_IO, "%s was replaced while it was being created",
                       tmp);
        return LK_OK;
    }
    return say(why, why_size, LK_ERR_IO, "cannot find a free temporary name beside %s", dst);
}

lk_err lk_dbcopy__backup(const char *src, const char *dst, const struct lk_dbcopy_kind *k,
                         int64_t *version, char *why, size_t why_size)
{
    sqlite3 *s = NULL, *d = NULL;
    sqlite3_backup *b;
    char tmp[4200] = "", dir[4096];
    struct stat st;
    int64_t v = 0;
    lk_err err;

    if (version != NULL)
        *version = 0;
    if (src == NULL || dst == NULL || src[0] == '\0' || dst[0] == '\0')
        return say(why, why_size, LK_ERR_ARG, "a backup needs a source and a destination path");
    if (lstat(dst, &st) == 0)
        return say(why, why_size, LK_ERR_REG_EXISTS, "%s exists already: a backup is written "
                                                     "to a new file only, never over another",
                   dst);
    if (errno != ENOENT)
        return say(why, why_size, LK_ERR_FILE_UNUSABLE, "%s: %s", dst, strerror(errno));
    if ((err = usable(src, k, 0, why, why_size)) != LK_OK ||
        (err = open_db(src, 0, k, &s, why, why_size)) != LK_OK)
        return err;
    if ((err = check(s, src, k, 0, &v, why, why_size)) != LK_OK ||
        (err = make_tmp(dst, tmp, sizeof tmp, why, why_size)) != LK_OK)
        goto out;
    if ((err = open_db(tmp, 1, k, &d, why, why_size)) != LK_OK)
        goto out;
    b = sqlite3_backup_init(d, "main", s, "main");
    if (b == NULL) {
        err = say(why, why_size, LK_ERR_IO, "cannot start the copy of %s: %s", src,
                  sqlite3_errmsg(d));
        goto out;
    }
    err = copy(b, d, BACKUP_STEP, src, k, why, why_size);
    if (sqlite3_backup_finish(b) != SQLITE_OK && err == LK_OK)
        err = say(why, why_size, LK_ERR_IO, "copying %s: %s", src, sqlite3_errmsg(d));
    /* One self-contained file (see dbcopy.h), checked as a restore would. */
    if (err == LK_OK)
        err = set_journal(d, tmp, "delete", k, why, why_size);
    if (err == LK_OK)
        err = check(d, tmp, k, CHECK_FULL, &v, why, why_size);
    if (err != LK_OK)
        goto out;
    if (sqlite3_close(d) != SQLITE_OK) {
        err = say(why, why_size, LK_ERR_IO, "closing the copy %s failed", tmp);
        goto out;
    }
    d = NULL;
    lk_dbfile__dir_of(dst, dir, sizeof dir);
    /* link, not rename: it never replaces a file that appeared meanwhile. */
    if (fsync_path(tmp, 0) != 0 || link(tmp, dst) != 0) {
        err = say(why, why_size, errno == EEXIST ? LK_ERR_REG_EXISTS : LK_ERR_IO,
                  "cannot put the copy in place as %s: %s", dst, strerror(errno));
        goto out;
    }
    (void)unlink(tmp);
    tmp[0] = '\0';
    if (fsync_path(dir, 1) != 0) {
        err = say(why, why_size, LK_ERR_IO, "cannot sync the directory %s: %s", dir,
                  strerror(errno));
        (void)unlink(dst);
        goto out;
    }
    if (version != NULL)
        *version = v;
out:
    sqlite3_close(d);
    sqlite3_close(s);
    if (tmp[0] != '\0')
        remove_db(tmp);
    return err;
}

/* Whether another process has path open (see SHM_DMS_BYTE): 1 with *pid,
 * else 0. Asks with F_GETLK, which takes no lock: closing the descriptor
 * then cannot drop a lock of this process's own SQLite connections. */
static int in_use(const char *path, pid_t *pid)
{
    char shm[4200];
    struct flock fl;
    int fd, busy = 0;
    snprintf(shm, sizeof shm, "%s-shm", path);
    for (int i = 0; i < 2 && !busy; i++) {
        fd = open(i == 0 ? shm : path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = i == 0 ? SHM_DMS_BYTE : DB_LOCK_FIRST;
        fl.l_len = i == 0 ? 1 : DB_LOCK_LEN;
        if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
            busy = 1;
            *pid = fl.l_pid;
        }
        close(fd);
    }
    return busy;
}

lk_err lk_dbcopy__restore(const char *src, const char *dst, const struct lk_dbcopy_kind *k,
                          unsigned how, int64_t *version, char *why, size_t why_size)
{
    sqlite3 *s = NULL, *d = NULL;
    sqlite3_backup *b;
    struct stat st;
    int64_t v = 0, app = 0, ntables = 0;
    int created = 0, persist = 1;
    pid_t pid = 0;
    char res[512] = "";
    lk_err err;

    if (version != NULL)
        *version = 0;
    if (src == NULL || dst == NULL || src[0] == '\0' || dst[0] == '\0')
        return say(why, why_size, LK_ERR_ARG, "a restore needs a backup and a target path");
    if ((err = usable(src, k, 0, why, why_size)) != LK_OK ||
        (err = open_db(src, 0, k, &s, why, why_size)) != LK_OK)
        return err;
    if ((err = check(s, src, k, CHECK_FULL, &v, why, why_size)) != LK_OK)
        goto out;
    if (v < k->version && !k->older_ok) {
        err = say(why, why_size, k->foreign, "%s has %s schema version %lld, older than this "
                                             "program's %lld, which cannot migrate it", src,
                  k->what, (long long)v, (long long)k->version);
        goto out;
    }
    if (lstat(dst, &st) != 0) {
        int made = 0;
        char dir[4096];
        if (errno != ENOENT) {
            err = say(why, why_size, LK_ERR_FILE_UNUSABLE, "%s: %s", dst, strerror(errno));
            goto out;
        }
        lk_dbfile__dir_of(dst, dir, sizeof dir);
        if (how & LK_DBCOPY_CHECK) {
            if (access(dir, W_OK | X_OK) != 0)
                err = say(why, why_size, LK_ERR_FILE_UNUSABLE, "cannot create %s %s: the "
                                                               "directory %s: %s", k->what, dst,
                          dir, strerror(errno));
            goto out;
        }
        if (lk_dbfile__create(dst, k->mode, k->force_mode, &made) != 0) {
            err = say(why, why_size, LK_ERR_IO, "cannot create %s %s: %s", k->what, dst,
                      strerror(errno));
            goto out;
        }
        created = 1;
    } else if ((err = usable(dst, k, 1, why, why_size)) != LK_OK) {
        goto out;
    } else if (!(how & LK_DBCOPY_FORCE) && in_use(dst, &pid)) {
        err = say(why, why_size, LK_ERR_REG_BUSY, "%s %s is open in process %ld (the broker or "
                                                  "latchkeyd?): stop them first (or force the "
                                                  "restore under them)", k->what, dst,
                  (long)pid);
        goto out;
    }
    if ((err = open_db(dst, 1, k, &d, why, why_size)) != LK_OK)
        goto out;
    /* Never over another program's database: the target is one of ours
     * (of any version) or empty. */
    if (query(d, "PRAGMA application_id", &app, NULL, 0) != SQLITE_ROW ||
        query(d, "SELECT count(*) FROM sqlite_schema", &ntables, NULL, 0) != SQLITE_ROW) {
        err = say(why, why_size, (sqlite3_errcode(d) & 0xff) == SQLITE_NOTADB ? k->foreign
                                                                             : LK_ERR_IO,
                  "the target %s cannot be read as a %s (%s): nothing was written to it", dst,
                  k->what, sqlite3_errmsg(d));
        goto out;
    }
    if (app != k->application_id && (app != 0 || ntables != 0)) {
        err = say(why, why_size, k->foreign, "the target %s is another program's database, not "
                                             "a latchkey %s: nothing was written to it", dst,
                  k->what);
        goto out;
    }
    if (how & LK_DBCOPY_CHECK)
        goto out;
    (void)sqlite3_file_control(d, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
    (void)sqlite3_exec(d, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
    b = sqlite3_backup_init(d, "main", s, "main");
    if (b == NULL) {
        err = say(why, why_size, LK_ERR_IO, "cannot start the restore into %s: %s", dst,
                  sqlite3_errmsg(d));
        goto out;
    }
    /* All pages in one step: one write transaction, so that another
     * connection sees the old content or the new, never a mix. */
    err = copy(b, d, -1, src, k, why, why_size);
    if (sqlite3_backup_finish(b) != SQLITE_OK && err == LK_OK)
        err = say(why, why_size, LK_ERR_IO, "restoring into %s: %s", dst, sqlite3_errmsg(d));
    if (err == LK_OK)
        err = set_journal(d, dst, "wal", k, why, why_size);
    if (err == LK_OK && (query(d, "PRAGMA quick_check(1)", NULL, res, sizeof res) != SQLITE_ROW ||
                         strcmp(res, "ok") != 0))
        err = say(why, why_size, LK_ERR_REG_STORAGE, "%s %s fails SQLite's check after the "
                                                     "restore: %s", k->what, dst,
                  res[0] != '\0' ? res : sqlite3_errmsg(d));
    if (err == LK_OK && version != NULL)
        *version = v;
out:
    sqlite3_close(d);
    sqlite3_close(s);
    if (err != LK_OK && created)
        remove_db(dst);
    return err;
}
