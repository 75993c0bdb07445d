/*
 * backup.c — backups, restores and the schema version of a spool file
 * (lk_spool.h): the spool's kind of file for service/common/dbcopy.c.
 */
#include <stdio.h>

#include "../common/dbcopy.h"
#include "internal.h"

/* A restored new spool as lk_spool_open creates one (spool.c, create_file). The spool has
 * one schema version so far: an older one does not exist to restore. */
static const struct lk_dbcopy_kind spool_kind = {
    "spool", LK_SPOOL_APPLICATION_ID, LK_SPOOL_SCHEMA_VERSION, 0, 0660, 1, LK_ERR_STORE_FOREIGN,
};

lk_err lk_spool_backup(const char *src, const char *dst, int64_t *schema_version,
                       char *why, size_t why_size)
{
    return lk_dbcopy__backup(src, dst, &spool_kind, schema_version, why, why_size);
}

lk_err lk_spool_restore(const char *src, const char *dst, unsigned flags, int64_t *schema_version,
                        char *why, size_t why_size)
{
    if ((flags & ~(LK_SPOOL_RESTORE_FORCE | LK_SPOOL_RESTORE_CHECK)) != 0) {
        lk_spool__why(why, why_size, "lk_spool_restore: unknown flags");
        return LK_ERR_ARG;
    }
    return lk_dbcopy__restore(src, dst, &spool_kind,
                              ((flags & LK_SPOOL_RESTORE_FORCE) ? LK_DBCOPY_FORCE : 0) |
                                  ((flags & LK_SPOOL_RESTORE_CHECK) ? LK_DBCOPY_CHECK : 0),
                              schema_version, why, why_size);
}

lk_err lk_spool_schema_status(const char *path, int64_t *file_version, int64_t *program_version,
                              char *why, size_t why_size)
{
    lk_err err;
    if (file_version == NULL || program_version == NULL || path == NULL) {
        lk_spool__why(why, why_size, "lk_spool_schema_status: a NULL argument");
        return LK_ERR_ARG;
    }
    *program_version = LK_SPOOL_SCHEMA_VERSION;
    err = lk_dbcopy__version(path, &spool_kind, file_version, why, why_size);
    if (err != LK_OK)
        *file_version = 0;
    return err;
}
