/*
 * dbcopy.h — online backups, restores and the schema version of the
 * service's SQLite files (the registry's database, the delivery spool), with
 * SQLite's backup API. Internal: compiled into each library that uses it
 * (lk_dbfile_obj), as dbfile.h; lk_registry_backup and lk_spool_backup (and
 * their restore and schema functions) are thin wrappers that name the kind
 * of file.
 *
 * Backup files are single, self-contained files in rollback-journal mode
 * (not WAL): they can be hashed, copied and read from read-only media with
 * no -wal or -shm beside them. A restored file is put in WAL mode again, as
 * the services expect, and keeps its -wal and -shm (persistent WAL).
 */
#ifndef LK_SERVICE_DBCOPY_H
#define LK_SERVICE_DBCOPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "latchkey/lk_error.h"

/* What a file of one kind must be. */
struct lk_dbcopy_kind {
    const char *what;       /* "registry database", "spool": for messages */
    int32_t application_id; /* PRAGMA application_id */
    int64_t version;        /* this program's schema version (meta.schema_version) */
    int older_ok;           /* 1: an older schema may be restored (then migrated) */
    mode_t mode;            /* a restored new file's mode, as the kind's open creates it */
    int force_mode;         /* ... whatever the umask (lk_dbfile__create) */
    lk_err foreign;         /* the error of another program's file or a newer schema */
};

/* The schema version of the file at path (opened read-only: nothing is
 * created, migrated or written). LK_OK with *version for a file of kind
 * k, whatever its version (a negative one is refused); k->foreign when it is not one;
 * LK_ERR_FILE_MISSING, LK_ERR_FILE_UNUSABLE, LK_ERR_IO otherwise. */
lk_err lk_dbcopy__version(const char *path, const struct lk_dbcopy_kind *k, int64_t *version,
                          char *why, size_t why_size);

/* Copies the live file src into the new file dst (never an existing one):
 * see lk_registry_backup. *version (may be NULL): the copy's schema
 * version. */
lk_err lk_dbcopy__backup(const char *src, const char *dst, const struct lk_dbcopy_kind *k,
                         int64_t *version, char *why, size_t why_size);

/* Replaces the content of dst (created when missing) with the backup src,
 * after checking src: see lk_registry_restore. how: LK_DBCOPY_FORCE, also
 * while other processes have dst open; LK_DBCOPY_CHECK, every check and no
 * write (nothing created either). *version (may be NULL): the backup's
 * schema version (the caller migrates an older one). */
#define LK_DBCOPY_FORCE 1u
#define LK_DBCOPY_CHECK 2u
lk_err lk_dbcopy__restore(const char *src, const char *dst, const struct lk_dbcopy_kind *k,
                          unsigned how, int64_t *version, char *why, size_t why_size);

#endif
