/*
 * sqlite_open.c — opening a registry database (backend.h: open): the
 * connection's settings, creating the file, the schema and its migrations.
 *
 * The connection: WAL (readers never block the writer and the writer never
 * blocks readers), foreign_keys=ON (cascading deletes), synchronous=FULL (a
 * committed change survives a power cut; LK_REG_READONLY handles, whose only
 * writes are activity times, state reports and command outcomes, use NORMAL,
 * which in WAL mode still never corrupts), a busy timeout (default 5000 ms),
 * temp_store=MEMORY and a 64 MiB page cache (see lk_sq__open), extended
 * result codes and SQLITE_DBCONFIG_DEFENSIVE. Write transactions are BEGIN
 * IMMEDIATE: two writers queue for the lock up front instead of
 * one failing when it upgrades.
 *
 * Files: a new database is created here, mode 0640 (given its directory's
 * owner when root creates it), before SQLite opens it; SQLite gives -wal and
 * -shm the database's mode and owner. Writable handles keep -wal (truncated
 * to 0 bytes) and -shm when they close (SQLITE_FCNTL_PERSIST_WAL,
 * journal_size_limit), because a WAL database can be read without write
 * access to its directory only if they exist: LK_REG_NOWRITE handles open
 * the file SQLITE_OPEN_READONLY and never write. A file that cannot be
 * opened is explained with access() (SQLite's errno is that of its last
 * retry, often ENOENT for a file that exists).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/dbfile.h"
#include "schema.h"
#include "sqlite_internal.h"

#ifndef SQLITE_OPEN_EXRESCODE
#define SQLITE_OPEN_EXRESCODE 0
#endif

/*
 * Whose file this is. A latchkey registry has LK_REG_APPLICATION_ID (set
 * with its first tables, in the same transaction); an empty database may
 * become one. Anything else — another application id, or tables (a meta
 * table included) without ours — is another program's: LK_ERR_REG_SCHEMA
 * with why, and nothing may be written to it. Otherwise LK_OK with
 * *has_meta and *ntables, or the error of a failed read (be->err says).
 */
static lk_err check_owner(lk_reg_be *be, const char *path, int64_t *has_meta, int64_t *ntables,
                          char *why, size_t why_size)
{
    int64_t app_id = 0;
    lk_err err;

    *has_meta = 0;
    *ntables = 0;
    if ((err = lk_sq__query1(be, "PRAGMA application_id", &app_id, NULL)) != LK_OK ||
        (err = lk_sq__query1(be, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                 "name = 'meta'", has_meta, NULL)) != LK_OK ||
        (err = lk_sq__query1(be, "SELECT count(*) FROM sqlite_schema", ntables, NULL)) != LK_OK)
        return err;
    if (app_id == LK_REG_APPLICATION_ID || (app_id == 0 && *ntables == 0))
        return LK_OK;
    if (app_id != 0)
        snprintf(why, why_size, "%s is not a latchkey registry database (application id "
                                "%lld)", path, (long long)app_id);
    else
        snprintf(why, why_size, "%s is an SQLite database of another program, not a latchkey "
                                "registry (it has tables but not the registry's application id)",
                 path);
    return LK_ERR_REG_SCHEMA;
}

/*
 * Bring the schema to LK_REG_SCHEMA_VERSION (see backend.h, open). A first
 * pass reads in a plain read transaction, so that opening a database whose
 * schema is current never waits for a writer (a long import, say); only a
 * database that needs creating or migrating is looked at again under the
 * write lock, where another process may have done the work meanwhile.
 */
static lk_err migrate(lk_reg_be *be, const char *path, unsigned flags, char *why,
                      size_t why_size)
{
    int readonly = (flags & (LK_REG_READONLY | LK_REG_NOWRITE)) != 0;
    int pass;
    lk_err err = LK_OK;

    for (pass = 0; pass < 2; pass++) {
        int64_t has_meta = 0, ntables = 0, version = 0;
        int write = pass == 1;
        char buf[128];
        unsigned v;

        err = lk_sq__begin(be, write);
        if (err != LK_OK)
            goto fail;
        /* Checked again here, in the transaction: sq_open's look came
         * before the lock. */
        err = check_owner(be, path, &has_meta, &ntables, why, why_size);
        if (err == LK_ERR_REG_SCHEMA)
            goto out;
        if (err != LK_OK)
            goto fail;
        if (!has_meta) {
            if (ntables > 0) { /* our application id, but no meta table */
                snprintf(why, why_size, "%s has tables but no schema version: not a latchkey "
                                        "registry, or damaged", path);
                err = LK_ERR_REG_SCHEMA;
                goto out;
            }
            if (!(flags & LK_REG_CREATE) || readonly) {
                snprintf(why, why_size, "%s is an empty database, not a latchkey registry "
                                        "(nothing was written to it)", path);
                err = LK_ERR_REG_SCHEMA;
                goto out;
            }
            version = 0;
        } else {
            err = lk_sq__query1(be, "SELECT value FROM meta WHERE key = 'schema_version' AND "
                                    "typeof(value) = 'integer'", &version, NULL);
            if (err == LK_ERR_REG_NOT_FOUND) {
                snprintf(why, why_size, "%s has no schema version: not a latchkey registry, "
                                        "or damaged", path);
                err = LK_ERR_REG_SCHEMA;
                goto out;
            }
            if (err != LK_OK)
                goto fail;
        }
        if (version > LK_REG_SCHEMA_VERSION || version < 0) {
            snprintf(why, why_size, "%s has schema version %lld, newer than this program's %d: "
                                    "use a newer latchkey", path, (long long)version,
                     LK_REG_SCHEMA_VERSION);
            err = LK_ERR_REG_SCHEMA;
            goto out;
        }
        if (version == LK_REG_SCHEMA_VERSION) {
            err = lk_sq__commit(be);
            if (err != LK_OK)
                goto fail;
            return LK_OK;
        }
        if (readonly) {
            if (flags & LK_REG_NOWRITE)
                snprintf(why, why_size, "%s has schema version %lld, older than this program's "
                                        "%d, and is opened without write access: someone who "
                                        "may write it must run a latchkey registry command on "
                                        "it once to migrate it", path, (long long)version,
                         LK_REG_SCHEMA_VERSION);
            else
                snprintf(why, why_size, "%s has schema version %lld, older than this program's "
                                        "%d: open it once with the latchkey tool to migrate it",
                         path, (long long)version, LK_REG_SCHEMA_VERSION);
            err = LK_ERR_REG_SCHEMA;
            goto out;
        }
        if (!write) {
            lk_sq__rollback(be); /* look again under the write lock */
            continue;
        }
        for (v = (unsigned)version; v < LK_REG_SCHEMA_VERSION; v++)
            if ((err = lk_sq__exec(be, lk_reg_sqlite_migrations[v])) != LK_OK)
                goto fail;
        snprintf(buf, sizeof buf, "PRAGMA application_id = %d", LK_REG_APPLICATION_ID);
        if ((err = lk_sq__exec(be, buf)) != LK_OK)
            goto fail;
        snprintf(buf, sizeof buf, "INSERT OR REPLACE INTO meta(key, value) VALUES("
                                  "'schema_version', %d)", LK_REG_SCHEMA_VERSION);
        if ((err = lk_sq__exec(be, buf)) != LK_OK)
            goto fail;
        err = lk_sq__commit(be);
        if (err != LK_OK)
            goto fail;
        return LK_OK;
    }
    return LK_ERR_REG_STORAGE; /* not reached */
fail:
    snprintf(why, why_size, "%s: %s", path, be->err);
out:
    lk_sq__rollback(be);
    return err;
}

/*
 * Why path cannot be opened, from the caller's own point of view (access()
 * uses the real ids, which are the effective ones for the tools): SQLite's
 * own errno is that of its last attempt, which after its read-only retry is
 * often ENOENT for a file that exists.
 */
static void explain_open(const char *path, int create, int need_write, char *why,
                         size_t why_size)
{
    char dir[4096];
    struct stat st;
    lk_dbfile__dir_of(path, dir, sizeof dir);
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e == ENOENT && create && access(dir, W_OK | X_OK) != 0)
            snprintf(why, why_size, "cannot create registry database %s: %s (the directory %s "
                                    "must be writable by you)", path, strerror(errno), dir);
        else if (e == ENOENT)
            snprintf(why, why_size, "registry database %s does not exist", path);
        else
            snprintf(why, why_size, "cannot reach registry database %s: %s (search "
                                    "permission on its directory %s is needed)", path,
                     strerror(e), dir);
    } else if (S_ISDIR(st.st_mode)) {
        snprintf(why, why_size, "%s is a directory, not a registry database", path);
    } else if (access(path, R_OK) != 0) {
        snprintf(why, why_size, "registry database %s is not readable by you (uid %u; the file "
                                "is owner %u, group %u, mode %04o): ask for read permission, "
                                "e.g. membership of group %u", path, (unsigned)getuid(),
                 (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777),
                 (unsigned)st.st_gid);
    } else if (need_write && access(path, W_OK) != 0) {
        snprintf(why, why_size, "registry database %s is not writable by you (uid %u; the file "
                                "is owner %u, group %u, mode %04o): this changes the registry, "
                                "so run it as the database's owner (or root)", path,
                 (unsigned)getuid(), (unsigned)st.st_uid, (unsigned)st.st_gid,
                 (unsigned)(st.st_mode & 07777));
    } else {
        snprintf(why, why_size, "cannot open registry database %s: %s", path, strerror(EACCES));
    }
}

/*
 * A WAL database could not be read: SQLite needs its -wal and -shm files,
 * and creates them when they are missing, which needs write access to the
 * directory. Say which is missing. Returns 1 if that is the problem.
 */
static int explain_wal(const char *path, char *why, size_t why_size)
{
    char dir[4096], wal[4200], shm[4200];
    int have_wal, have_shm;
    lk_dbfile__dir_of(path, dir, sizeof dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    have_wal = access(wal, F_OK) == 0;
    have_shm = access(shm, F_OK) == 0;
    if (have_wal && have_shm && (access(wal, R_OK) != 0 || access(shm, R_OK) != 0)) {
        snprintf(why, why_size, "cannot read registry database %s: its %s or %s is not readable "
                                "by you (uid %u): SQLite's WAL mode reads both; grant read "
                                "permission on them as on the database", path, wal, shm,
                 (unsigned)getuid());
        return 1;
    }
    if ((!have_wal || !have_shm) && access(dir, W_OK | X_OK) != 0) {
        snprintf(why, why_size, "cannot read registry database %s: SQLite's WAL mode needs %s "
                                "and %s, which do not exist and cannot be created in %s (not "
                                "writable by you): grant write permission on %s, or have the "
                                "database's owner open it once with this latchkey, which keeps "
                                "them from then on", path, wal, shm, dir, dir);
        return 1;
    }
    return 0;
}

/*
 * Create a missing database file ourselves, mode 0640 (the umask may take
 * more away), so that it is never world-readable: SQLite would make it
 * 0644, and gives its -wal and -shm files the database's mode. Created by
 * root, it is given its directory's owner and group (the broker's user, in
 * the layout of docs/registry.md); SQLite then gives -wal and -shm the
 * database's owner. O_EXCL | O_NOFOLLOW: never through a link, never
 * another's file. LK_OK also when the file appeared meanwhile.
 */
static lk_err create_file(const char *path, char *why, size_t why_size)
{
    char dir[4096];
    int made, e;
    if (lk_dbfile__create(path, 0640, 0, &made) == 0)
        return LK_OK;
    if (!made) {
        explain_open(path, 1, 1, why, why_size);
        return LK_ERR_IO;
    }
    e = errno;
    lk_dbfile__dir_of(path, dir, sizeof dir);
    snprintf(why, why_size, "created registry database %s but could not give it the owner "
                            "of %s: %s", path, dir, strerror(e));
    return LK_ERR_IO;
}

lk_err lk_sq__open(const char *path, unsigned flags, lk_reg_be **out, char *why,
                   size_t why_size)
{
    lk_reg_be *be;
    int nowrite = (flags & LK_REG_NOWRITE) != 0;
    int tool_writer = !(flags & (LK_REG_READONLY | LK_REG_NOWRITE));
    int create = (flags & LK_REG_CREATE) && tool_writer;
    int oflags = (nowrite ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                 SQLITE_OPEN_EXRESCODE;
    int rc, fk = 0;
    int64_t v = 0, has_meta = 0, ntables = 0;
    char *mode = NULL;
    lk_err err;

    *out = NULL;
    if (create) {
        struct stat st;
        if (stat(path, &st) != 0 && errno == ENOENT &&
            (err = create_file(path, why, why_size)) != LK_OK)
            return err;
    }
    be = calloc(1, sizeof *be);
    if (be == NULL)
        return LK_ERR_NOMEM;
    rc = sqlite3_open_v2(path, &be->db, oflags, NULL);
    if (rc != SQLITE_OK) {
        if (be->db == NULL) {
            free(be);
            return LK_ERR_NOMEM;
        }
        if ((rc & 0xff) == SQLITE_CANTOPEN) {
            explain_open(path, create, !nowrite, why, why_size);
            err = LK_ERR_IO;
        } else {
            err = lk_sq__fail(be, rc);
            snprintf(why, why_size, "cannot open registry database %s: %s", path, be->err);
        }
        lk_sq__close(be);
        return err;
    }
    /* SQLite opens a file it may not write read-only without a word; the
     * tools' writable handle would then fail at its first write with
     * "attempt to write a readonly database". Say so now. */
    if (tool_writer && sqlite3_db_readonly(be->db, "main") == 1) {
        explain_open(path, 0, 1, why, why_size);
        lk_sq__close(be);
        return LK_ERR_IO;
    }
    sqlite3_extended_result_codes(be->db, 1);
    lk_sq__set_busy_timeout(be, 5000);
    if (sqlite3_db_config(be->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) != SQLITE_OK ||
        sqlite3_db_config(be->db, SQLITE_DBCONFIG_ENABLE_FKEY, 1, &fk) != SQLITE_OK || fk != 1) {
        snprintf(why, why_size, "%s: this SQLite cannot enforce foreign keys", path);
        lk_sq__close(be);
        return LK_ERR_REG_STORAGE;
    }
    /* The first read of the file ("file is not a database" shows here):
     * another program's database is refused before WAL journaling rewrites
     * its header, and so is an empty one that is not to be created. */
    err = check_owner(be, path, &has_meta, &ntables, why, why_size);
    if (err == LK_ERR_REG_SCHEMA) {
        lk_sq__close(be);
        return err;
    }
    if (err != LK_OK) {
        int xrc = sqlite3_extended_errcode(be->db);
        if ((xrc & 0xff) == SQLITE_NOTADB) {
            snprintf(why, why_size, "%s is not a latchkey registry database (not an SQLite "
                                    "database at all)", path);
            err = LK_ERR_REG_SCHEMA;
        } else if (((xrc & 0xff) == SQLITE_CANTOPEN || (xrc & 0xff) == SQLITE_READONLY) &&
                   explain_wal(path, why, why_size)) {
            err = LK_ERR_IO;
        } else {
            snprintf(why, why_size, "registry database %s: %s", path, be->err);
        }
        lk_sq__close(be);
        return err;
    }
    if (ntables == 0 && !create) {
        snprintf(why, why_size, "%s is an empty database, not a latchkey registry (nothing was "
                                "written to it)", path);
        lk_sq__close(be);
        return LK_ERR_REG_SCHEMA;
    }
    if (!nowrite) {
        /* Writable handles keep -wal and -shm when they close (truncated
         * to 0 bytes by journal_size_limit), so that readers without write
         * access to the directory can read the database (LK_REG_NOWRITE). */
        int persist = 1;
        if (sqlite3_file_control(be->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) !=
            SQLITE_OK) {
            snprintf(be->err, sizeof be->err, "cannot keep the WAL files (SQLITE_FCNTL_PERSIST_WAL)");
            err = LK_ERR_REG_STORAGE;
        }
        if (err == LK_OK)
            err = lk_sq__query1(be, "PRAGMA journal_mode = WAL", &v, &mode);
        if (err == LK_OK && strcmp(mode, "wal") != 0) {
            snprintf(be->err, sizeof be->err,
                     "cannot use WAL journaling (the journal mode stays %s)", mode);
            err = LK_ERR_REG_STORAGE;
        }
        free(mode);
        if (err == LK_OK)
            err = lk_sq__query1(be, "PRAGMA journal_size_limit = 67108864", &v, NULL);
        if (err == LK_OK)
            err = lk_sq__exec(be, (flags & LK_REG_READONLY) ? "PRAGMA synchronous = NORMAL"
                                                            : "PRAGMA synchronous = FULL");
    }
    /* Savepoints (one per imported device) keep their undo pages in
     * memory, not in a temporary file; and a page cache of up to 64 MiB
     * (allocated as used) keeps a big import from spilling and re-reading
     * pages, and the broker's lookups off the disk. Measured: 14k -> 40k
     * imported devices/s. */
    if (err == LK_OK)
        err = lk_sq__exec(be, "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536");
    if (err == LK_OK)
        err = lk_sq__query1(be, "PRAGMA foreign_keys", &v, NULL);
    if (err == LK_OK && v != 1) {
        snprintf(be->err, sizeof be->err, "foreign keys cannot be enabled");
        err = LK_ERR_REG_STORAGE;
    }
    if (err != LK_OK) {
        int xrc = sqlite3_extended_errcode(be->db);
        if (!(((xrc & 0xff) == SQLITE_CANTOPEN || (xrc & 0xff) == SQLITE_READONLY) &&
              explain_wal(path, why, why_size)))
            snprintf(why, why_size, "registry database %s: %s", path, be->err);
        else
            err = LK_ERR_IO;
        lk_sq__close(be);
        return err;
    }
    err = migrate(be, path, flags, why, why_size);
    if (err != LK_OK) {
        lk_sq__close(be);
        return err;
    }
    *out = be;
    return LK_OK;
}
