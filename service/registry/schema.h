/*
 * schema.h — the SQLite registry's schema, as a list of migrations. Internal.
 */
#ifndef LK_REGISTRY_SCHEMA_H
#define LK_REGISTRY_SCHEMA_H

/* The schema version this program writes (meta.schema_version). A build
 * with LK_TEST_SCHEMA_BUMP (cmake -DLK_TEST_SCHEMA_BUMP=ON; only the package
 * test, tests/package/run.sh, makes one) has one more, empty migration: the
 * "next release" an upgrade must migrate to while keeping every device. */
#ifdef LK_TEST_SCHEMA_BUMP
#define LK_REG_SCHEMA_VERSION 10
#else
#define LK_REG_SCHEMA_VERSION 9
#endif

/* The version whose migration adds the console's indexes (the device
 * search, the fleet counts; docs/registry.md "Finding devices at scale"). */
#define LK_REG_SCHEMA_CONSOLE 9

/* PRAGMA application_id of a registry database: "LKRG". */
#define LK_REG_APPLICATION_ID 0x4c4b5247

/* lk_reg_sqlite_migrations[v] turns schema version v into v + 1; run in
 * order, all in one transaction, at open. */
extern const char *const lk_reg_sqlite_migrations[LK_REG_SCHEMA_VERSION];

#endif
