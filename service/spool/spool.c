/*
 * spool.c — opening the delivery spool (lk_spool.h): the file, the
 * connection's settings, the schema, and the helpers queue.c uses
 * (cached statements, transactions, errors).
 *
 * The connection: WAL (the broker's enqueue never waits for latchkeyd's
 * reads), synchronous=NORMAL (a commit is written to the WAL before the call
 * returns, so a kill -9 of any process loses nothing; LK_SPOOL_SYNC_FULL
 * fsyncs it too, for a power cut), the caller's busy timeout (busy_wait), write
 * transactions BEGIN IMMEDIATE (two writers queue for the lock up front).
 *
 * Files: the broker's user and latchkeyd's user both write the spool and
 * share a group (docs/registry.md, "Files: owner, group and mode"), so a new
 * file is created here, mode 0660 whatever the umask, before SQLite opens it
 * (SQLite gives -wal and -shm the database's mode and owner). Created by
 * root, it is given its directory's owner and group. Writable handles keep
 * -wal and -shm when they close (SQLITE_FCNTL_PERSIST_WAL), because a WAL
 * file can be read without write access to its directory only if they exist
 * (LK_SPOOL_READONLY handles open it SQLITE_OPEN_READONLY).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/dbfile.h"
#include "internal.h"

#ifndef SQLITE_OPEN_EXRESCODE
#define SQLITE_OPEN_EXRESCODE 0
#endif

/* Small columns of messages come before data: reading publish_time or size
 * then never walks a payload's overflow pages. */
static const char schema_v1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE messages(id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
    " ordering_key TEXT NOT NULL, publish_time INTEGER NOT NULL, size INTEGER NOT NULL,"
    " refs INTEGER NOT NULL DEFAULT 0, attributes TEXT NOT NULL, data BLOB NOT NULL);"
    "CREATE TABLE deliveries(subscription TEXT NOT NULL, message INTEGER NOT NULL,"
    " ordering_key TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_try INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(subscription, message)) WITHOUT ROWID;"
    "CREATE TABLE queues(subscription TEXT PRIMARY KEY, depth INTEGER NOT NULL DEFAULT 0,"
    " bytes INTEGER NOT NULL DEFAULT 0, enqueued INTEGER NOT NULL DEFAULT 0,"
    " acked INTEGER NOT NULL DEFAULT 0, dead_lettered INTEGER NOT NULL DEFAULT 0,"
    " dropped INTEGER NOT NULL DEFAULT 0, expired INTEGER NOT NULL DEFAULT 0);";

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_READ] = "BEGIN",
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_MSG_INSERT] = "INSERT INTO messages(topic, ordering_key, publish_time, size, refs, "
                      "attributes, data) VALUES(?1, ?2, ?3, ?4, ?7, ?5, ?6)",
    [ST_MSG_REFS] = "UPDATE messages SET refs = refs + ?2 WHERE id = ?1",
    [ST_MSG_DELETE_IF_UNUSED] = "DELETE FROM messages WHERE id = ?1 AND refs <= 0",
    [ST_MSG_GET] = "SELECT topic, ordering_key, data, attributes, publish_time FROM messages "
                   "WHERE id = ?1",
    [ST_QUEUE_ENSURE] = "INSERT OR IGNORE INTO queues(subscription) VALUES(?1)",
    [ST_QUEUE_GET] = "SELECT depth, bytes, enqueued, acked, dead_lettered, dropped, expired "
                     "FROM queues WHERE subscription = ?1",
    [ST_QUEUE_ADD] = "UPDATE queues SET depth = depth + 1, bytes = bytes + ?2, "
                     "enqueued = enqueued + 1 WHERE subscription = ?1",
    [ST_QUEUE_DROPPED] = "UPDATE queues SET dropped = dropped + 1 WHERE subscription = ?1",
    /* ?3: 0 acked, 1 dead-lettered, 2 expired. */
    [ST_QUEUE_REMOVE] = "UPDATE queues SET depth = max(depth - 1, 0), bytes = max(bytes - ?2, 0),"
                        " acked = acked + (?3 = 0), dead_lettered = dead_lettered + (?3 = 1),"
                        " expired = expired + (?3 = 2) WHERE subscription = ?1",
    [ST_DELIVERY_INSERT] = "INSERT OR IGNORE INTO deliveries(subscription, message, ordering_key,"
                           " attempts, next_try) VALUES(?1, ?2, ?3, 0, 0)",
    [ST_DELIVERY_GET] = "SELECT m.size, d.ordering_key FROM deliveries d JOIN messages m ON "
                        "m.id = d.message WHERE d.subscription = ?1 AND d.message = ?2",
    [ST_DELIVERY_DELETE] = "DELETE FROM deliveries WHERE subscription = ?1 AND message = ?2",
    [ST_DELIVERY_RETRY] = "UPDATE deliveries SET attempts = attempts + 1, next_try = ?3 "
                          "WHERE subscription = ?1 AND message = ?2",
    [ST_DELIVERY_SCAN] = "SELECT message, ordering_key, attempts, next_try FROM deliveries "
                         "WHERE subscription = ?1 ORDER BY message",
    [ST_OLDEST] = "SELECT m.publish_time FROM deliveries d JOIN messages m ON m.id = d.message "
                  "WHERE d.subscription = ?1 ORDER BY d.message LIMIT 1",
    [ST_EXPIRED_LIST] = "SELECT d.message, m.size FROM deliveries d JOIN messages m ON "
                        "m.id = d.message WHERE d.subscription = ?1 AND m.publish_time < ?2",
    [ST_SUB_MESSAGES] = "SELECT message FROM deliveries WHERE subscription = ?1",
    [ST_SUB_DELETE] = "DELETE FROM deliveries WHERE subscription = ?1",
    [ST_QUEUE_FORGET] = "DELETE FROM queues WHERE subscription = ?1",
    [ST_QUEUE_LIST] = "SELECT subscription FROM queues ORDER BY subscription",
};

void lk_spool__why(char *why, size_t why_size, const char *fmt, ...)
{
    va_list ap;
    if (why == NULL || why_size == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_size, fmt, ap);
    va_end(ap);
}

lk_err lk_spool__map(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return LK_ERR_REG_BUSY;
    case SQLITE_NOMEM:
        return LK_ERR_NOMEM;
    default:
        return LK_ERR_IO;
    }
}

lk_err lk_spool__fail(lk_spool *sp, int rc, const char *what, char *why, size_t why_size)
{
    lk_err err = lk_spool__map(rc);
    if (err == LK_ERR_REG_BUSY)
        lk_spool__why(why, why_size, "spool %s: %s: the file stayed locked by another process "
                                     "past the busy timeout", sp->path, what);
    else
        lk_spool__why(why, why_size, "spool %s: %s: %s", sp->path, what, sqlite3_errmsg(sp->db));
    return err;
}

sqlite3_stmt *lk_spool__st(lk_spool *sp, enum lk_spool_stmt k, lk_err *err, char *why,
                           size_t why_size)
{
    if (sp->st[k] == NULL) {
        int rc = sqlite3_prepare_v3(sp->db, stmt_sql[k], -1, SQLITE_PREPARE_PERSISTENT,
                                    &sp->st[k], NULL);
        if (rc != SQLITE_OK) {
            *err = lk_spool__fail(sp, rc, "preparing a statement", why, why_size);
            sp->st[k] = NULL;
            return NULL;
        }
    }
    return sp->st[k];
}

lk_err lk_spool__run(lk_spool *sp, sqlite3_stmt *s, const char *what, char *why,
                     size_t why_size)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return lk_spool__fail(sp, rc, what, why, why_size);
    return LK_OK;
}

lk_err lk_spool__begin(lk_spool *sp, int write, char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s;
    if (write && (sp->flags & LK_SPOOL_READONLY)) {
        lk_spool__why(why, why_size, "spool %s was opened read-only (LK_SPOOL_READONLY): it "
                                     "writes nothing", sp->path);
        return LK_ERR_STATE;
    }
    if (!sqlite3_get_autocommit(sp->db))
        lk_spool__rollback(sp); /* a transaction left open by an earlier failure */
    s = lk_spool__st(sp, write ? ST_BEGIN_WRITE : ST_BEGIN_READ, &err, why, why_size);
    if (s == NULL)
        return err;
    return lk_spool__run(sp, s, "beginning a transaction", why, why_size);
}

lk_err lk_spool__commit(lk_spool *sp, char *why, size_t why_size)
{
    lk_err err = LK_OK;
    sqlite3_stmt *s = lk_spool__st(sp, ST_COMMIT, &err, why, why_size);
    if (s == NULL)
        return err;
    return lk_spool__run(sp, s, "committing", why, why_size);
}

void lk_spool__rollback(lk_spool *sp)
{
    if (!sqlite3_get_autocommit(sp->db))
        sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
}

/*
 * The wait for the other process's write transaction. SQLite's own busy
 * handler sleeps 1, 2, 5, 10 ... ms between tries: a broker whose enqueue met
 * one of latchkeyd's acknowledgements (a transaction of well under a
 * millisecond) would sleep a millisecond at least, in Mosquitto's only
 * thread. Here the sleeps start at 20 us and grow to 1 ms, until busy_ms has
 * passed.
 */
static int busy_wait(void *arg, int count)
{
    lk_spool *sp = arg;
    struct timespec now, nap;
    long us;
    int64_t waited;
    if (count == 0)
        clock_gettime(CLOCK_MONOTONIC, &sp->busy_start);
    clock_gettime(CLOCK_MONOTONIC, &now);
    waited = (int64_t)(now.tv_sec - sp->busy_start.tv_sec) * 1000 +
             (now.tv_nsec - sp->busy_start.tv_nsec) / 1000000;
    if (waited >= sp->busy_ms)
        return 0;
    us = count < 50 ? 20L * (count + 1) : 1000L;
    nap.tv_sec = 0;
    nap.tv_nsec = us * 1000;
    nanosleep(&nap, NULL);
    return 1;
}

/* Creates a missing spool file, mode 0660 whatever the umask (both services
 * write it through their shared group); by root, with its directory's owner.
 * O_EXCL | O_NOFOLLOW: never through a link, never another's file. LK_OK also
 * when the file appeared meanwhile (the other service made it). */
static lk_err create_file(const char *path, char *why, size_t why_size)
{
    char dir[4096];
    int made, e;
    if (lk_dbfile__create(path, 0660, 1, &made) == 0)
        return LK_OK;
    e = errno;
    lk_dbfile__dir_of(path, dir, sizeof dir);
    if (made) {
        lk_spool__why(why, why_size, "created spool %s but could not give it mode 0660 and the "
                                     "owner of %s: %s", path, dir, strerror(e));
        return LK_ERR_IO;
    }
    lk_spool__why(why, why_size, "cannot create spool %s: %s (the directory %s must be "
                                 "writable by you)", path, strerror(e), dir);
    return e == EACCES || e == EPERM ? LK_ERR_FILE_UNUSABLE : LK_ERR_IO;
}

/* Whether the file can be used by us at all: a missing one without CREATE,
 * a directory, or one we may not read (or write, unless READONLY). */
static lk_err check_file(const char *path, unsigned flags, char *why, size_t why_size)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && (flags & LK_SPOOL_CREATE) && !(flags & LK_SPOOL_READONLY))
            return create_file(path, why, why_size);
        lk_spool__why(why, why_size, errno == ENOENT ? "spool %s does not exist"
                                                     : "cannot reach spool %s: %s",
                      path, strerror(errno));
        return errno == ENOENT ? LK_ERR_FILE_MISSING : LK_ERR_FILE_UNUSABLE;
    }
    if (!S_ISREG(st.st_mode)) {
        lk_spool__why(why, why_size, "spool %s is not a regular file", path);
        return LK_ERR_FILE_UNUSABLE;
    }
    if (access(path, (flags & LK_SPOOL_READONLY) ? R_OK : R_OK | W_OK) != 0) {
        lk_spool__why(why, why_size, "spool %s is not %s by you (uid %u; the file is owner %u, "
                                     "group %u, mode %04o): the broker's and latchkeyd's users "
                                     "share its group, mode 0660", path,
                      (flags & LK_SPOOL_READONLY) ? "readable" : "readable and writable",
                      (unsigned)getuid(), (unsigned)st.st_uid, (unsigned)st.st_gid,
                      (unsigned)(st.st_mode & 07777));
        return LK_ERR_FILE_UNUSABLE;
    }
    return LK_OK;
}

static lk_err query_int(lk_spool *sp, const char *sql, int64_t *v, const char *what, char *why,
                        size_t why_size)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(sp->db, sql, -1, &s, NULL);
    *v = 0;
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *v = sqlite3_column_int64(s, 0);
            rc = SQLITE_DONE;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? LK_OK : lk_spool__fail(sp, rc, what, why, why_size);
}

/* Whose file this is, and its schema: created (CREATE, empty file), current,
 * or refused (another program's, a newer schema, an empty file without
 * CREATE). Read in a plain read transaction (opening never waits for the
 * other process's writer); an empty file is looked at again under the write
 * lock (write 1), so that the broker and latchkeyd starting together create
 * the schema once. */
static lk_err check_schema(lk_spool *sp, int write, char *why, size_t why_size)
{
    int may_create = !(sp->flags & LK_SPOOL_READONLY) && (sp->flags & LK_SPOOL_CREATE);
    int64_t app_id = 0, ntables = 0, version = 0;
    char sql[160];
    lk_err err;

    if ((err = lk_spool__begin(sp, write, why, why_size)) != LK_OK)
        return err;
    if ((err = query_int(sp, "PRAGMA application_id", &app_id, "reading the file", why,
                         why_size)) != LK_OK ||
        (err = query_int(sp, "SELECT count(*) FROM sqlite_schema", &ntables, "reading the file",
                         why, why_size)) != LK_OK)
        goto out;
    if (app_id != LK_SPOOL_APPLICATION_ID) {
        if (app_id != 0 || ntables != 0) {
            lk_spool__why(why, why_size, "%s is not a latchkey spool (an SQLite database of "
                                         "another program)", sp->path);
            err = LK_ERR_STORE_FOREIGN;
            goto out;
        }
        if (may_create && !write) { /* look again under the write lock */
            lk_spool__rollback(sp);
            return check_schema(sp, 1, why, why_size);
        }
        if (!may_create) {
            lk_spool__why(why, why_size, "%s is an empty file, not a latchkey spool (nothing "
                                         "was written to it)", sp->path);
            err = LK_ERR_STORE_FOREIGN;
            goto out;
        }
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; INSERT INTO meta(key, value) "
                                  "VALUES('schema_version', %d)", LK_SPOOL_APPLICATION_ID,
                 LK_SPOOL_SCHEMA_VERSION);
        if (sqlite3_exec(sp->db, schema_v1, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(sp->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            err = lk_spool__fail(sp, sqlite3_extended_errcode(sp->db), "creating the schema",
                                 why, why_size);
            goto out;
        }
        return lk_spool__commit(sp, why, why_size);
    }
    err = query_int(sp, "SELECT value FROM meta WHERE key = 'schema_version'", &version,
                    "reading the schema version", why, why_size);
    if (err != LK_OK)
        goto out;
    if (version != LK_SPOOL_SCHEMA_VERSION) {
        lk_spool__why(why, why_size, version > LK_SPOOL_SCHEMA_VERSION
                                         ? "%s has spool schema version %lld, newer than this "
                                           "program's %d: use a newer latchkey"
                                         : "%s has an unknown spool schema version %lld (this "
                                           "program's is %d): damaged",
                      sp->path, (long long)version, LK_SPOOL_SCHEMA_VERSION);
        err = LK_ERR_STORE_FOREIGN;
        goto out;
    }
    return lk_spool__commit(sp, why, why_size);
out:
    lk_spool__rollback(sp);
    return err;
}

lk_err lk_spool_open(const char *path, unsigned flags, int busy_ms, lk_spool **out, char *why,
                     size_t why_size)
{
    int readonly = (flags & LK_SPOOL_READONLY) != 0;
    int oflags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                 SQLITE_OPEN_EXRESCODE;
    lk_spool *sp;
    char *mode = NULL;
    int rc, persist = 1;
    lk_err err;

    lk_spool__why(why, why_size, "%s", "");
    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    if (path == NULL || path[0] == '\0' || strlen(path) >= sizeof sp->path || busy_ms < 0 ||
        (flags & ~(LK_SPOOL_CREATE | LK_SPOOL_SYNC_FULL | LK_SPOOL_READONLY)) != 0) {
        lk_spool__why(why, why_size, "lk_spool_open: no path, a path too long, a negative busy "
                                     "timeout or an unknown flag");
        return LK_ERR_ARG;
    }
    if ((err = check_file(path, flags, why, why_size)) != LK_OK)
        return err;
    sp = calloc(1, sizeof *sp);
    if (sp == NULL)
        return LK_ERR_NOMEM;
    sp->flags = flags;
    snprintf(sp->path, sizeof sp->path, "%s", path);
    rc = sqlite3_open_v2(path, &sp->db, oflags, NULL);
    if (rc != SQLITE_OK) {
        err = sp->db == NULL ? LK_ERR_NOMEM : lk_spool__fail(sp, rc, "opening", why, why_size);
        goto fail;
    }
    sqlite3_extended_result_codes(sp->db, 1);
    sp->busy_ms = busy_ms;
    sqlite3_busy_handler(sp->db, busy_wait, sp);
    (void)sqlite3_db_config(sp->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
    /* The first read shows "file is not a database": refused before WAL
     * journaling would rewrite another program's header. */
    {
        int64_t v = 0;
        err = query_int(sp, "SELECT count(*) FROM sqlite_schema", &v, "reading the file", why,
                        why_size);
        if (err != LK_OK) {
            if ((sqlite3_extended_errcode(sp->db) & 0xff) == SQLITE_NOTADB) {
                lk_spool__why(why, why_size, "%s is not a latchkey spool (not an SQLite "
                                             "database)", path);
                err = LK_ERR_STORE_FOREIGN;
            } else if (readonly && (sqlite3_extended_errcode(sp->db) & 0xff) == SQLITE_CANTOPEN) {
                lk_spool__why(why, why_size, "cannot read spool %s: SQLite's WAL mode needs "
                                             "its -wal and -shm files, which are missing and "
                                             "cannot be created read-only: open it once "
                                             "writable (the broker or latchkeyd does)", path);
                err = LK_ERR_FILE_UNUSABLE;
            }
            goto fail;
        }
    }
    if (readonly) {
        if (sqlite3_exec(sp->db, "PRAGMA query_only = 1", NULL, NULL, NULL) != SQLITE_OK) {
            err = lk_spool__fail(sp, sqlite3_errcode(sp->db), "setting query_only", why,
                                 why_size);
            goto fail;
        }
    } else {
        sqlite3_stmt *s = NULL;
        if (sqlite3_file_control(sp->db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist) !=
            SQLITE_OK) {
            lk_spool__why(why, why_size, "spool %s: cannot keep the WAL files", path);
            err = LK_ERR_IO;
            goto fail;
        }
        rc = sqlite3_prepare_v2(sp->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            const unsigned char *m = sqlite3_column_text(s, 0);
            mode = strdup(m != NULL ? (const char *)m : "");
            rc = SQLITE_OK;
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_OK) {
            err = lk_spool__fail(sp, rc, "setting WAL journaling", why, why_size);
            goto fail;
        }
        if (mode == NULL || strcmp(mode, "wal") != 0) {
            lk_spool__why(why, why_size, "spool %s: cannot use WAL journaling", path);
            err = mode == NULL ? LK_ERR_NOMEM : LK_ERR_IO;
            free(mode);
            goto fail;
        }
        free(mode);
        if (sqlite3_exec(sp->db, (flags & LK_SPOOL_SYNC_FULL)
                                     ? "PRAGMA synchronous = FULL; PRAGMA journal_size_limit = "
                                       "67108864"
                                     : "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = "
                                       "67108864",
                         NULL, NULL, NULL) != SQLITE_OK) {
            err = lk_spool__fail(sp, sqlite3_errcode(sp->db), "setting the connection up", why,
                                 why_size);
            goto fail;
        }
    }
    if ((err = check_schema(sp, 0, why, why_size)) != LK_OK)
        goto fail;
    *out = sp;
    return LK_OK;
fail:
    lk_spool_close(sp);
    return err;
}

void lk_spool_close(lk_spool *sp)
{
    int i;
    if (sp == NULL)
        return;
    if (sp->db != NULL)
        lk_spool__rollback(sp);
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(sp->st[i]);
    sqlite3_close(sp->db);
    free(sp);
}
