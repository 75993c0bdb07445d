/*
 * backup.c — backups, restores, the schema version and migration of a
 * registry database file (lk_registry.h): the registry's kind of file for
 * service/common/dbcopy.c, which does the copying for the spool as well.
 */
#include <stdio.h>

#include "../common/dbcopy.h"
#include "latchkey/lk_reg_backup.h"
#include "latchkey/lk_registry.h"
#include "schema.h"

/* As lk_registry_open creates a database (sqlite_open.c, create_file). */
static const struct lk_dbcopy_kind registry_kind = {
    "registry database", LK_REG_APPLICATION_ID, LK_REG_SCHEMA_VERSION, 1, 0640, 0,
    LK_ERR_REG_SCHEMA,
};

lk_err lk_registry_backup(const char *src, const char *dst, int64_t *schema_version,
                          char *why, size_t why_size)
{
    return lk_dbcopy__backup(src, dst, &registry_kind, schema_version, why, why_size);
}

lk_err lk_registry_restore(const char *src, const char *dst, unsigned flags,
                           int64_t *schema_version, char *why, size_t why_size)
{
    int64_t v = 0, to = 0;
    lk_err err;

    if (schema_version != NULL)
        *schema_version = 0;
    if ((flags & ~(LK_REG_RESTORE_FORCE | LK_REG_RESTORE_CHECK)) != 0) {
        snprintf(why, why_size, "lk_registry_restore: unknown flags");
        return LK_ERR_ARG;
    }
    err = lk_dbcopy__restore(src, dst, &registry_kind,
                             ((flags & LK_REG_RESTORE_FORCE) ? LK_DBCOPY_FORCE : 0) |
                                 ((flags & LK_REG_RESTORE_CHECK) ? LK_DBCOPY_CHECK : 0),
                             &v, why, why_size);
    if (err != LK_OK || (flags & LK_REG_RESTORE_CHECK)) {
        if (err == LK_OK && schema_version != NULL)
            *schema_version = v;
        return err;
    }
    /* An older backup is brought to this program's schema now, in one
     * transaction, rather than by whichever service opens it first. */
    if (v < LK_REG_SCHEMA_VERSION &&
        (err = lk_registry_migrate(dst, &v, &to, why, why_size)) != LK_OK)
        return err;
    if (schema_version != NULL)
        *schema_version = v;
    return LK_OK;
}

lk_err lk_registry_schema_status(const char *path, int64_t *file_version,
                                 int64_t *program_version, char *why, size_t why_size)
{
    int64_t v = 0;
    lk_err err;
    if (file_version == NULL || program_version == NULL || path == NULL) {
        snprintf(why, why_size, "lk_registry_schema_status: a NULL argument");
        return LK_ERR_ARG;
    }
    *program_version = LK_REG_SCHEMA_VERSION;
    err = lk_dbcopy__version(path, &registry_kind, &v, why, why_size);
    *file_version = err == LK_OK ? v : 0;
    return err;
}

lk_err lk_registry_migrate(const char *path, int64_t *from, int64_t *to, char *why,
                           size_t why_size)
{
    int64_t program = 0;
    lk_registry *reg = NULL;
    lk_err err;
    if (from == NULL || to == NULL) {
        snprintf(why, why_size, "lk_registry_migrate: a NULL argument");
        return LK_ERR_ARG;
    }
    *to = 0;
    err = lk_registry_schema_status(path, from, &program, why, why_size);
    if (err != LK_OK)
        return err;
    if (*from > program) {
        snprintf(why, why_size, "%s has schema version %lld, newer than this program's %lld: "
                                "use a newer latchkey", path, (long long)*from,
                 (long long)program);
        return LK_ERR_REG_SCHEMA;
    }
    if (*from < program) {
        /* Opening writable migrates, in one transaction (sqlite_open.c). */
        err = lk_registry_open(path, 0, &reg, why, why_size);
        if (err != LK_OK)
            return err;
        lk_registry_close(reg);
    }
    *to = program;
    return LK_OK;
}
