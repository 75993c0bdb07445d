/*
 * test_backup.c — backups, restores, schema versions and migration of the
 * registry's and the spool's SQLite files (lk_registry_backup and its
 * companions, lk_spool_backup ...), on real files in a fresh temporary
 * directory:
 *  - a backup is a checked, self-contained copy (rollback journal, integrity
 *    ok), never written over a file; a restore gives back what was copied;
 *  - a backup taken while another thread keeps writing ends (bounded
 *    restarts) and is consistent;
 *  - refusals: another program's file, not a database, a newer schema, a
 *    target of another program, a target another process has open (unless
 *    forced) — each writing nothing;
 *  - the schema status and migration on demand; the spool's kind.
 */
#include "lk_test_reg.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_reg_backup.h"
#include "latchkey/lk_registry.h"
#include "latchkey/lk_spool.h"

#define P "proj-one"
#define L "us-central1"
static const lk_reg_name NAME = {P, L, "reg-1"};

static void path_in(struct lk_test_reg *f, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", f->dir, name);
}

static void sql(const char *path, const char *text)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* The first column of text's first row, as text ("" if none). */
static void sql_text(const char *path, const char *text, char *out, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    out[0] = '\0';
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, text, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void add_device(lk_registry *reg, const char *id)
{
    lk_reg_device_spec spec;
    char why[512] = "";
    memset(&spec, 0, sizeof spec);
    spec.id = id;
    assert_int_equal(lk_registry_create_device(reg, &NAME, &spec, NULL, why, sizeof why), LK_OK);
}

static int has_device(lk_registry *reg, const char *id)
{
    lk_reg_device d;
    char why[512] = "";
    lk_err err = lk_registry_get_device(reg, &NAME, id, 0, &d, why, sizeof why);
    if (err == LK_OK)
        lk_reg_device_free(&d);
    assert_true(err == LK_OK || err == LK_ERR_REG_NOT_FOUND);
    return err == LK_OK;
}

/* A registry of ndev devices, each with a config of config_len bytes. */
static void fill(struct lk_test_reg *f, int ndev, size_t config_len)
{
    static uint8_t config[60000];
    char why[512] = "", id[32];
    lk_reg_device_spec spec;
    assert_true(config_len <= sizeof config);
    memset(config, 'c', sizeof config);
    assert_int_equal(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_ENABLED,
                                                 LK_REG_STATE_ENABLED, why, sizeof why), LK_OK);
    for (int i = 0; i < ndev; i++) {
        snprintf(id, sizeof id, "dev-%d", i);
        memset(&spec, 0, sizeof spec);
        spec.id = id;
        spec.config = config_len > 0 ? config : NULL;
        spec.config_len = config_len;
        assert_int_equal(lk_registry_create_device(f->reg, &NAME, &spec, NULL, why, sizeof why),
                         LK_OK);
    }
}

static void test_backup_and_restore(void **state)
{
    struct lk_test_reg *f = *state;
    char bk[4200], back[4200], text[4200], why[1024] = "";
    int64_t v = 0, fv = 0, pv = 0;
    lk_registry *r2 = NULL;
    struct stat st;

    fill(f, 3, 0);
    path_in(f, "bk.db", bk, sizeof bk);
    assert_int_equal(lk_registry_backup(f->path, bk, &v, why, sizeof why), LK_OK);
    assert_true(v > 0);
    /* Checked, self-contained, not world-readable, and no temporary left. */
    sql_text(bk, "PRAGMA integrity_check", text, sizeof text);
    assert_string_equal(text, "ok");
    sql_text(bk, "PRAGMA journal_mode", text, sizeof text);
    assert_string_equal(text, "delete");
    assert_int_equal(stat(bk, &st), 0);
    assert_int_equal(st.st_mode & 0007, 0);
    /* Never over a file. */
    assert_int_equal(lk_registry_backup(f->path, bk, NULL, why, sizeof why), LK_ERR_REG_EXISTS);
    assert_non_null(strstr(why, "exists already"));
    assert_int_equal(lk_registry_backup(f->path, f->path, NULL, why, sizeof why),
                     LK_ERR_REG_EXISTS);
    path_in(f, "missing.db", back, sizeof back);
    path_in(f, "bk2.db", text, sizeof text);
    assert_int_equal(lk_registry_backup(back, text, NULL, why, sizeof why), LK_ERR_FILE_MISSING);
    assert_int_equal(access(text, F_OK), -1);

    /* A device added after the backup is gone after the restore. */
    add_device(f->reg, "later");
    path_in(f, "restored.db", back, sizeof back);
    assert_int_equal(lk_registry_restore(bk, back, 0, &v, why, sizeof why), LK_OK);
    assert_int_equal(lk_registry_open(back, 0, &r2, why, sizeof why), LK_OK);
    assert_true(has_device(r2, "dev-2"));
    assert_false(has_device(r2, "later"));
    lk_registry_close(r2);
    sql_text(back, "PRAGMA journal_mode", text, sizeof text);
    assert_string_equal(text, "wal");
    assert_int_equal(lk_registry_schema_status(back, &fv, &pv, why, sizeof why), LK_OK);
    assert_true(fv == pv && fv == v);
}

/* ---- a backup under a writer ---- */

struct writer {
    lk_registry *reg;
    int stop;
    int n; /* devices w-0 ... w-(n-1) are committed */
};

static void *write_loop(void *arg)
{
    struct writer *w = arg;
    char id[32];
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        int n = __atomic_load_n(&w->n, __ATOMIC_ACQUIRE);
        snprintf(id, sizeof id, "w-%d", n);
        add_device(w->reg, id);
        __atomic_store_n(&w->n, n + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void test_backup_under_writes(void **state)
{
    struct lk_test_reg *f = *state;
    char bk[4200], text[64], why[1024] = "";
    struct writer w = {f->reg, 0, 0};
    lk_registry *r2 = NULL;
    pthread_t t;
    int n0;

    fill(f, 80, 60000); /* near 5 MB: the copy takes many steps */
    assert_int_equal(pthread_create(&t, NULL, write_loop, &w), 0);
    while (__atomic_load_n(&w.n, __ATOMIC_ACQUIRE) < 5)
        usleep(1000);
    n0 = __atomic_load_n(&w.n, __ATOMIC_ACQUIRE);
    path_in(f, "bk.db", bk, sizeof bk);
    assert_int_equal(lk_registry_backup(f->path, bk, NULL, why, sizeof why), LK_OK);
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    sql_text(bk, "PRAGMA integrity_check", text, sizeof text);
    assert_string_equal(text, "ok");
    /* Everything written before the backup began is in it. */
    assert_int_equal(lk_registry_open(bk, LK_REG_NOWRITE, &r2, why, sizeof why), LK_OK);
    assert_true(has_device(r2, "dev-79"));
    snprintf(text, sizeof text, "w-%d", n0 - 1);
    assert_true(has_device(r2, text));
    lk_registry_close(r2);
}

/* ---- refusals ---- */

static void test_restore_refusals(void **state)
{
    struct lk_test_reg *f = *state;
    char bk[4200], other[4200], target[4200], text[64], why[1024] = "";
    FILE *fp;

    fill(f, 1, 0);
    path_in(f, "bk.db", bk, sizeof bk);
    assert_int_equal(lk_registry_backup(f->path, bk, NULL, why, sizeof why), LK_OK);
    path_in(f, "target.db", target, sizeof target);

    /* Another program's database, and a file that is no database. */
    path_in(f, "other.db", other, sizeof other);
    sql(other, "CREATE TABLE t(x); INSERT INTO t VALUES(1)");
    assert_int_equal(lk_registry_restore(other, target, 0, NULL, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_non_null(strstr(why, "not a latchkey registry"));
    assert_int_equal(access(target, F_OK), -1);
    assert_int_equal(lk_registry_backup(other, target, NULL, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_int_equal(access(target, F_OK), -1);
    path_in(f, "text.db", other, sizeof other);
    assert_non_null(fp = fopen(other, "w"));
    fputs("this is not a database, not even close, and long enough to be read\n", fp);
    fclose(fp);
    assert_int_equal(lk_registry_restore(other, target, 0, NULL, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_non_null(strstr(why, "not an SQLite database"));

    /* A target that is another program's database is left alone. */
    path_in(f, "other.db", other, sizeof other);
    assert_int_equal(lk_registry_restore(bk, other, 0, NULL, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_non_null(strstr(why, "another program's"));
    sql_text(other, "SELECT x FROM t", text, sizeof text);
    assert_string_equal(text, "1");

    /* A check writes nothing, creates nothing. */
    assert_int_equal(lk_registry_restore(bk, target, LK_REG_RESTORE_CHECK, NULL, why, sizeof why),
                     LK_OK);
    assert_int_equal(access(target, F_OK), -1);

    /* A backup of a newer schema. */
    sql(bk, "UPDATE meta SET value = 1000 WHERE key = 'schema_version'");
    assert_int_equal(lk_registry_restore(bk, target, 0, NULL, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_non_null(strstr(why, "newer than this program's"));
    assert_int_equal(access(target, F_OK), -1);
}

/* Another process that has path open (as the broker has), until *fd is
 * closed: Python's own sqlite3 in a fresh program (a fork of this process
 * would share SQLite's lock bookkeeping with it, and take no lock). */
static pid_t hold_open(const char *path, int *fd)
{
    static const char script[] =
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1])\n"
        "c.execute('SELECT count(*) FROM sqlite_schema').fetchall()\n"
        "sys.stdout.write('r'); sys.stdout.flush()\n"
        "sys.stdin.read()\n"
        "c.close()\n";
    int up[2], down[2];
    char c;
    pid_t pid;
    assert_int_equal(pipe(up), 0);
    assert_int_equal(pipe(down), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (dup2(down[0], 0) < 0 || dup2(up[1], 1) < 0)
            _exit(1);
        close(up[0]);
        close(down[1]);
        execl("/usr/bin/python3", "python3", "-c", script, path, (char *)NULL);
        _exit(127);
    }
    close(up[1]);
    close(down[0]);
    assert_int_equal(read(up[0], &c, 1), 1);
    close(up[0]);
    *fd = down[1];
    return pid;
}

static void test_restore_in_use(void **state)
{
    struct lk_test_reg *f = *state;
    char bk[4200], why[1024] = "";
    int fd, status;
    pid_t pid;

    fill(f, 1, 0);
    path_in(f, "bk.db", bk, sizeof bk);
    assert_int_equal(lk_registry_backup(f->path, bk, NULL, why, sizeof why), LK_OK);
    add_device(f->reg, "later");
    pid = hold_open(f->path, &fd);
    assert_int_equal(lk_registry_restore(bk, f->path, 0, NULL, why, sizeof why), LK_ERR_REG_BUSY);
    assert_non_null(strstr(why, "is open in process"));
    assert_int_equal(lk_registry_restore(bk, f->path, LK_REG_RESTORE_CHECK, NULL, why, sizeof why),
                     LK_ERR_REG_BUSY);
    assert_int_equal(lk_registry_restore(bk, f->path, LK_REG_RESTORE_CHECK | LK_REG_RESTORE_FORCE,
                                         NULL, why, sizeof why), LK_OK);
    assert_true(has_device(f->reg, "later"));
    /* Forced: replaced in one transaction under the open handles, which
     * then read the restored content. */
    if (lk_registry_restore(bk, f->path, LK_REG_RESTORE_FORCE, NULL, why, sizeof why) != LK_OK)
        fail_msg("%s", why);
    assert_false(has_device(f->reg, "later"));
    assert_true(has_device(f->reg, "dev-0"));
    close(fd);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- schema ---- */

static void test_schema_status_and_migrate(void **state)
{
    struct lk_test_reg *f = *state;
    char old[4200], other[4200], why[1024] = "";
    int64_t fv = 0, pv = 0, from = 0, to = 0;

    fill(f, 1, 0);
    assert_int_equal(lk_registry_schema_status(f->path, &fv, &pv, why, sizeof why), LK_OK);
    assert_true(fv == pv && pv >= 9);
    assert_int_equal(lk_registry_migrate(f->path, &from, &to, why, sizeof why), LK_OK);
    assert_true(from == pv && to == pv);

    /* Schema 8 is schema 9 without the console's indexes. */
    path_in(f, "old.db", old, sizeof old);
    assert_int_equal(lk_registry_backup(f->path, old, NULL, why, sizeof why), LK_OK);
    assert_int_equal(pv, 9);
    sql(old, "DROP INDEX devices_by_presence; DROP INDEX devices_blocked; DROP INDEX "
             "devices_gateways; DROP INDEX devices_by_activity; DROP INDEX "
             "device_credentials_by_expiry; UPDATE meta SET value = 8 WHERE key = 'schema_version'");
    assert_int_equal(lk_registry_schema_status(old, &fv, &pv, why, sizeof why), LK_OK);
    assert_true(fv == 8 && pv == 9);
    /* A restore of an older backup migrates the restored file (not the
     * backup). */
    path_in(f, "restored.db", other, sizeof other);
    assert_int_equal(lk_registry_restore(old, other, 0, &from, why, sizeof why), LK_OK);
    assert_int_equal(from, 8);
    assert_int_equal(lk_registry_schema_status(other, &fv, &pv, why, sizeof why), LK_OK);
    assert_int_equal(fv, 9);
    assert_int_equal(lk_registry_schema_status(old, &fv, &pv, why, sizeof why), LK_OK);
    assert_int_equal(fv, 8);
    assert_int_equal(lk_registry_migrate(old, &from, &to, why, sizeof why), LK_OK);
    assert_true(from == 8 && to == 9);
    assert_int_equal(lk_registry_schema_status(old, &fv, &pv, why, sizeof why), LK_OK);
    assert_int_equal(fv, 9);

    /* Newer: reported, never migrated. */
    sql(old, "UPDATE meta SET value = 1000 WHERE key = 'schema_version'");
    assert_int_equal(lk_registry_schema_status(old, &fv, &pv, why, sizeof why), LK_OK);
    assert_int_equal(fv, 1000);
    assert_int_equal(lk_registry_migrate(old, &from, &to, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_non_null(strstr(why, "newer"));

    path_in(f, "none.db", other, sizeof other);
    assert_int_equal(lk_registry_schema_status(other, &fv, &pv, why, sizeof why), LK_ERR_FILE_MISSING);
    assert_int_equal(access(other, F_OK), -1); /* not created */
    path_in(f, "other.db", other, sizeof other);
    sql(other, "CREATE TABLE t(x)");
    assert_int_equal(lk_registry_schema_status(other, &fv, &pv, why, sizeof why), LK_ERR_REG_SCHEMA);
}

/* ---- the spool ---- */

static void test_spool(void **state)
{
    struct lk_test_reg *f = *state;
    const char *subs[] = {"projects/p/subscriptions/a"};
    const uint8_t data[] = "hello";
    lk_spool_msg m = {"projects/p/topics/t", "42", data, 5, "{}", 1700000000000};
    char sp_path[4200], bk[4200], back[4200], why[1024] = "";
    lk_spool *sp = NULL;
    lk_spool_stats st;
    struct stat fst;
    int64_t fv = 0, pv = 0, v = 0;

    path_in(f, "spool.db", sp_path, sizeof sp_path);
    assert_int_equal(lk_spool_open(sp_path, LK_SPOOL_CREATE, 1000, &sp, why, sizeof why), LK_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lk_spool_enqueue(sp, &m, subs, 1, NULL, NULL, NULL, why, sizeof why), LK_OK);
    path_in(f, "spool-bk.db", bk, sizeof bk);
    assert_int_equal(lk_spool_backup(sp_path, bk, &v, why, sizeof why), LK_OK);
    assert_int_equal(v, 1);
    lk_spool_close(sp);
    sp = NULL;

    /* Each kind is its own: a spool is not a registry, nor the reverse. */
    path_in(f, "x.db", back, sizeof back);
    assert_int_equal(lk_registry_backup(sp_path, back, NULL, why, sizeof why), LK_ERR_REG_SCHEMA);
    assert_int_equal(lk_spool_backup(f->path, back, NULL, why, sizeof why), LK_ERR_STORE_FOREIGN);
    assert_int_equal(lk_spool_restore(f->path, back, 0, NULL, why, sizeof why), LK_ERR_STORE_FOREIGN);
    assert_int_equal(access(back, F_OK), -1);

    path_in(f, "spool-restored.db", back, sizeof back);
    assert_int_equal(lk_spool_restore(bk, back, 0, NULL, why, sizeof why), LK_OK);
    assert_int_equal(stat(back, &fst), 0);
    assert_int_equal(fst.st_mode & 0777, 0660); /* as lk_spool_open creates one */
    assert_int_equal(lk_spool_schema_status(back, &fv, &pv, why, sizeof why), LK_OK);
    assert_true(fv == 1 && pv == 1);
    assert_int_equal(lk_spool_open(back, 0, 1000, &sp, why, sizeof why), LK_OK);
    assert_int_equal(lk_spool_stats_get(sp, subs[0], &st, why, sizeof why), LK_OK);
    assert_int_equal(st.depth, 3);
    lk_spool_close(sp);
    assert_int_equal(lk_spool_restore(bk, back, 8, NULL, why, sizeof why), LK_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backup_and_restore, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_backup_under_writes, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_restore_refusals, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_restore_in_use, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_schema_status_and_migrate, lk_test_reg_setup,
                                        lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_spool, lk_test_reg_setup, lk_test_reg_teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
