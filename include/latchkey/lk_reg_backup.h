/*
 * lk_reg_backup.h — backups, restores, the schema version and migration on
 * demand of a registry database file (docs/operations.md, "Backups" and
 * "Schema migrations"; `latchkey backup|restore|migrate`). Part of
 * liblatchkey-registry; it includes lk_registry.h.
 *
 * These take file paths (SQLite files; not "sqlite:" URLs) and open their
 * own connections: no lk_registry handle is needed. The spool's
 * counterparts are in lk_spool.h.
 */
#ifndef LK_REG_BACKUP_H
#define LK_REG_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An online, consistent copy of the registry database src into the new file
 * dst, while other processes (the broker, latchkeyd, the tools) go on reading
 * and writing src: SQLite's backup API, a few hundred pages per step, so that
 * no writer waits (WAL) or waits for one step at most (rollback mode). A
 * write to src during the copy makes SQLite start again; after 8 such
 * restarts the rest is copied in one read transaction, which in WAL mode
 * holds no writer back. The copy is what src held at one instant.
 * dst must not exist (LK_ERR_REG_EXISTS; never overwritten): the copy is
 * written to a temporary file beside it (mode 0640, less by the umask, with
 * the directory's owner when root makes it), checked (SQLite's integrity check, the registry's application
 * id, a schema version not newer than this program's), fsynced and then
 * linked into place; on failure nothing is left. The copy is one
 * self-contained file in rollback-journal mode (no -wal or -shm: it can be
 * hashed, copied and read from read-only media); lk_registry_restore puts
 * it back in WAL mode. *schema_version (may be NULL): the copy's.
 * Errors: LK_ERR_ARG; LK_ERR_FILE_MISSING (no src); LK_ERR_FILE_UNUSABLE
 * (src not a regular file or not readable, dst's directory not writable);
 * LK_ERR_REG_SCHEMA (src is not a latchkey registry, or is of a newer
 * schema); LK_ERR_REG_STORAGE (the copy fails the integrity check);
 * LK_ERR_REG_BUSY (src stayed locked past 5 s); LK_ERR_IO, LK_ERR_NOMEM. */
lk_err lk_registry_backup(const char *src, const char *dst, int64_t *schema_version,
                          char *why, size_t why_size);

#define LK_REG_RESTORE_FORCE 1u /* restore even while other processes have dst open */
#define LK_REG_RESTORE_CHECK 2u /* every check (src, dst usable, not in use), no write */

/* Restores the backup src (a file lk_registry_backup wrote, or any latchkey
 * registry database) into dst, then migrates it to this program's schema if
 * it is older. src is checked first (integrity, application id, a schema
 * version not newer than this program's); nothing is written when it fails.
 * A missing dst is created (as lk_registry_open creates one); an existing one
 * must be a latchkey registry (any version) or empty, and its whole content
 * is replaced in one transaction: another connection sees the old content or
 * the new, never a mix, and the file keeps its owner and mode. The result is
 * in WAL mode with its -wal and -shm kept, as the services expect.
 * Unless flags has LK_REG_RESTORE_FORCE, a dst that another process has open
 * (the broker, latchkeyd: a lock SQLite holds on its -shm or the file) is
 * refused, LK_ERR_REG_BUSY: stop them first — a service that keeps running
 * across a restore keeps its caches of the old content. *schema_version
 * (may be NULL): the backup's version, before migration.
 * With LK_REG_RESTORE_CHECK nothing is written or created: LK_OK when the
 * restore would begin (src checked, dst creatable or one of ours, not in
 * use), so that a caller restoring several files checks them all first.
 * Errors as lk_registry_backup, and LK_ERR_REG_SCHEMA for a dst that is
 * another program's database. */
lk_err lk_registry_restore(const char *src, const char *dst, unsigned flags,
                           int64_t *schema_version, char *why, size_t why_size);

/* The schema version of the registry database at path (*file_version) and
 * this program's (*program_version), without creating, migrating or writing
 * anything: a package's maintainer script asks whether a migration is due
 * (file < program), impossible (file > program: a newer latchkey wrote it) or
 * not needed. LK_OK for any latchkey registry, whatever its version;
 * LK_ERR_REG_SCHEMA for another file; LK_ERR_FILE_MISSING, _UNUSABLE, LK_ERR_IO.
 * A WAL database is read as lk_registry_open's LK_REG_NOWRITE reads it. */
lk_err lk_registry_schema_status(const char *path, int64_t *file_version,
                                 int64_t *program_version, char *why, size_t why_size);

/* Migrates the registry database at path to this program's schema, in one
 * transaction (what opening it writable does), and says from which version
 * (*from) to which (*to; equal when nothing was to be done: then nothing is
 * written). LK_ERR_REG_SCHEMA for a newer schema or another file; the
 * errors of lk_registry_open otherwise. */
lk_err lk_registry_migrate(const char *path, int64_t *from, int64_t *to, char *why,
                           size_t why_size);

#ifdef __cplusplus
}
#endif

#endif
