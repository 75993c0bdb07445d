/*
 * latchkey backup | restore | migrate: online backups of the registry
 * database and the push spool, their restore (on this machine or another),
 * and the registry's schema migration on demand (docs/operations.md,
 * "Backups" and "Schema migrations").
 *
 * A backup directory holds registry.db, spool.db (when there is a spool) and
 * backup.json, written last: the time, and each file's kind, schema version,
 * size and SHA-256. restore checks every hash before it writes anything.
 * The copying and checking is the libraries' (lk_registry_backup,
 * lk_spool_backup and their restores); this file names files, hashes them
 * and prints.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "latchkey/lk_reg_backup.h"
#include "latchkey/lk_registry.h"
#include "latchkey/lk_sha256.h"
#include "latchkey/lk_spool.h"
#include "admin.h"
#include "cli.h"
#include "tool.h"

#define MANIFEST "backup.json"
#define MANIFEST_MAX 65536
#define MANIFEST_FORMAT "latchkey-backup"

static const char backup_usage[] =
    "usage: latchkey backup [--db FILE] [--spool FILE | --no-spool] OUT_DIR\n"
    "\n"
    "Copies the registry database, and the push subscriptions' spool, into OUT_DIR while the\n"
    "broker and latchkeyd keep running: each an online, consistent copy (SQLite's backup\n"
    "API), checked (SQLite's integrity check, the file's kind, its schema version). OUT_DIR\n"
    "gets registry.db, spool.db and backup.json (the time, each file's schema version, size\n"
    "and SHA-256), which 'latchkey restore' checks. OUT_DIR is created (mode 0750) or must be\n"
    "an empty directory: a backup is never written over another. Exit 12 when OUT_DIR holds\n"
    "files already; see docs/operations.md, \"Backups\".\n"
    "  --db FILE     the registry database (or LATCHKEY_DB)\n"
    "  --spool FILE  the spool to copy (default: spool.db beside the database, when it exists)\n"
    "  --no-spool    copy the registry database only\n"
    "  -h, --help    this text\n";

static const char restore_usage[] =
    "usage: latchkey restore [--db FILE] [--spool FILE | --no-spool] [--force] BACKUP_DIR\n"
    "\n"
    "Restores a directory 'latchkey backup' wrote: checks backup.json's size and SHA-256 of\n"
    "every file, and each file's kind, integrity and schema version (not newer than this\n"
    "latchkey's), before anything is written; then replaces the registry database (and the\n"
    "spool) with the backup's, each in one transaction, created when missing, keeping an\n"
    "existing file's owner and mode; an older registry schema is migrated. Stop mosquitto\n"
    "and latchkeyd first: a file another process has open is refused (exit 18). See\n"
    "docs/operations.md, \"Backups\".\n"
    "  --db FILE     the registry database to restore into (or LATCHKEY_DB)\n"
    "  --spool FILE  the spool to restore into (default: spool.db beside the database)\n"
    "  --no-spool    restore the registry database only, even if the backup has a spool\n"
    "  --force       restore even while other processes have the files open (they keep\n"
    "                what they cached of the old content until restarted)\n"
    "  -h, --help    this text\n";

static const char migrate_usage[] =
    "usage: latchkey migrate [--db FILE] [--check]\n"
    "\n"
    "Prints the registry database's schema version and this latchkey's, and migrates an\n"
    "older database to this latchkey's schema in one transaction (what every writing\n"
    "command does on the way). A database of a newer schema is refused (exit 19).\n"
    "  --db FILE     the registry database (or LATCHKEY_DB)\n"
    "  --check       change nothing: exit 0 when the schema is current, 25 when a migration\n"
    "                is due, 19 when the database is newer than this latchkey\n"
    "  -h, --help    this text\n";

enum { OPT_SPOOL = OPT_FIRST_OWN, OPT_NO_SPOOL, OPT_FORCE, OPT_CHECK };

static const struct option backup_opts[] = {
    {"db", required_argument, 0, OPT_DB},         {"spool", required_argument, 0, OPT_SPOOL},
    {"no-spool", no_argument, 0, OPT_NO_SPOOL},   {"force", no_argument, 0, OPT_FORCE},
    {"check", no_argument, 0, OPT_CHECK},         {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0}};

/* The options of one of the three commands (each takes only its own). */
struct opts {
    const char *db, *spool, *dir;
    int no_spool, force, check;
};

/* Exit code of a library error here: another program's spool (and a newer
 * spool schema) is a storage refusal, as the registry's is; a missing
 * database is the registry commands' "no such database". */
static int fail(const char *ctx, lk_err err, const char *why)
{
    tool_error(ctx, err, "%s", why);
    return err == LK_ERR_STORE_FOREIGN ? EXIT_REG_STORAGE
           : err == LK_ERR_FILE_MISSING ? EXIT_REG_NOT_FOUND
                                        : tool_registry_exit_code(err);
}

/* "which" says which options the command takes ("s": --spool/--no-spool,
 * "f": --force, "c": --check); n_args: positional arguments wanted. */
static int parse(int argc, char **argv, const char *ctx, const char *usage, const char *which,
                 int n_args, struct opts *o)
{
    int c;
    memset(o, 0, sizeof *o);
    o->db = admin_db != NULL ? admin_db : getenv("LATCHKEY_DB");
    if (o->db != NULL && o->db[0] == '\0')
        o->db = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", backup_opts, NULL)) != -1) {
        int own = (c == OPT_SPOOL || c == OPT_NO_SPOOL) ? strchr(which, 's') != NULL
                  : c == OPT_FORCE                     ? strchr(which, 'f') != NULL
                  : c == OPT_CHECK                     ? strchr(which, 'c') != NULL
                                                       : 1;
        if (c == '?' || !own)
            return tool_bad_option(argc, argv, optind);
        switch (c) {
        case 'h': fputs(usage, stdout); return ADMIN_HELP;
        case OPT_DB: o->db = optarg; break;
        case OPT_SPOOL: o->spool = optarg; break;
        case OPT_NO_SPOOL: o->no_spool = 1; break;
        case OPT_FORCE: o->force = 1; break;
        case OPT_CHECK: o->check = 1; break;
        }
    }
    if (argc - optind != n_args)
        return tool_usage_error("%s: %s (see --help)", ctx,
                                n_args == 0 ? "takes no argument" : "give one directory");
    if (n_args == 1)
        o->dir = argv[optind];
    if (o->db == NULL || o->db[0] == '\0')
        return tool_usage_error("%s: no registry database: give --db FILE or set LATCHKEY_DB", ctx);
    if (o->spool != NULL && o->no_spool)
        return tool_usage_error("%s: --spool and --no-spool exclude each other", ctx);
    return EXIT_OK;
}

/* spool.db beside the database db. */
static void beside(const char *db, const char *name, char *out, size_t size)
{
    const char *slash = strrchr(db, '/');
    if (slash == NULL)
        snprintf(out, size, "%s", name);
    else
        snprintf(out, size, "%.*s/%s", (int)(slash - db), db, name);
}

/* SHA-256 (hex) and size of the file at path. 0, or -1 with errno. */
static int hash_file(const char *path, char hex[65], long long *size)
{
    unsigned char buf[65536];
    uint8_t md[LK_SHA256_BYTES];
    lk_sha256_ctx ctx;
    ssize_t n;
    int e, fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    lk_sha256_init(&ctx);
    *size = 0;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        lk_sha256_update(&ctx, buf, (size_t)n);
        *size += n;
    }
    e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    lk_sha256_final(&ctx, md);
    tool_hex(md, sizeof md, hex);
    return 0;
}

/* OUT_DIR made (0750), or an existing empty directory. *made: created here. */
static int make_dir(const char *dir, int *made)
{
    DIR *d;
    struct dirent *e;
    struct stat st;
    *made = 0;
    if (mkdir(dir, 0750) == 0) {
        *made = 1;
        return EXIT_OK;
    }
    if (errno != EEXIST) {
        tool_error("backup", LK_ERR_IO, "cannot create the directory %s: %s", dir, strerror(errno));
        return tool_file_exit(errno);
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tool_error("backup", LK_ERR_REG_EXISTS, "%s exists and is not a directory", dir);
        return EXIT_REG_EXISTS;
    }
    if ((d = opendir(dir)) == NULL) {
        tool_error("backup", LK_ERR_IO, "cannot read the directory %s: %s", dir, strerror(errno));
        return tool_file_exit(errno);
    }
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            break;
    closedir(d);
    if (e != NULL) {
        tool_error("backup", LK_ERR_REG_EXISTS, "%s is not empty: a backup is written into a new "
                                                "or empty directory only, never over another",
                   dir);
        return EXIT_REG_EXISTS;
    }
    return EXIT_OK;
}

/* Adds {name, kind, source, schema_version, program_schema_version, size,
 * sha256} of dir/name to files. */
static int describe(json_t *files, const char *dir, const char *name, const char *kind,
                    const char *source, int64_t version, int64_t program)
{
    char path[4200], hex[65];
    long long size = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (hash_file(path, hex, &size) != 0) {
        tool_error("backup", LK_ERR_IO, "cannot read back %s: %s", path, strerror(errno));
        return EXIT_FAIL;
    }
    json_array_append_new(files, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "name", name,
                                           "kind", kind, "source", source, "schema_version",
                                           (json_int_t)version, "program_schema_version",
                                           (json_int_t)program, "size", (json_int_t)size,
                                           "sha256", hex));
    printf("%s: %s schema %lld, %lld bytes, sha256 %s\n", path, kind, (long long)version, size,
           hex);
    return EXIT_OK;
}

/* backup.json written under a temporary name, fsynced and linked into
 * place (never over a file), then the directory fsynced. */
static int write_manifest(const char *dir, json_t *m)
{
    char path[4200], tmp[4200];
    char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
    size_t len, off = 0;
    int fd, rc = EXIT_FAIL;
    if (text == NULL) {
        tool_error("backup", LK_ERR_NOMEM, "out of memory");
        return EXIT_FAIL;
    }
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp-%ld", dir, MANIFEST, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0)
        goto out;
    len = strlen(text);
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (off == len && write(fd, "\n", 1) == 1 && fsync(fd) == 0 && close(fd) == 0) {
        fd = -1;
        if (link(tmp, path) == 0) {
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            rc = dfd >= 0 && fsync(dfd) == 0 ? EXIT_OK : EXIT_FAIL;
            if (dfd >= 0)
                close(dfd);
        }
    }
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
out:
    if (rc != EXIT_OK)
        tool_error("backup", LK_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    free(text);
    return rc;
}

int cmd_backup(int argc, char **argv)
{
    struct opts o;
    char spool_default[4200], out[4200], when[32];
    const char *spool = NULL;
    char why[1024] = "";
    int64_t v = 0, program = 0, fv = 0;
    json_t *m = NULL, *files;
    struct stat st;
    time_t now = time(NULL);
    int rc, made = 0;
    lk_err err;

    rc = parse(argc, argv, "backup", backup_usage, "s", 1, &o);
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (!o.no_spool) {
        beside(o.db, "spool.db", spool_default, sizeof spool_default);
        spool = o.spool != NULL ? o.spool : stat(spool_default, &st) == 0 ? spool_default : NULL;
    }
    if ((rc = make_dir(o.dir, &made)) != EXIT_OK)
        return rc;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    m = json_pack("{s:s, s:i, s:s, s:s, s:[]}", "format", MANIFEST_FORMAT, "format_version", 1,
                  "created", when, "latchkey_version", LK_VERSION, "files");
    files = json_object_get(m, "files");

    snprintf(out, sizeof out, "%s/registry.db", o.dir);
    err = lk_registry_backup(o.db, out, &v, why, sizeof why);
    if (err == LK_OK)
        err = lk_registry_schema_status(out, &fv, &program, why, sizeof why);
    if (err != LK_OK) {
        rc = fail("backup", err, why);
        goto fail;
    }
    if ((rc = describe(files, o.dir, "registry.db", "registry", o.db, v, program)) != EXIT_OK)
        goto fail;
    if (spool != NULL) {
        snprintf(out, sizeof out, "%s/spool.db", o.dir);
        err = lk_spool_backup(spool, out, &v, why, sizeof why);
        if (err == LK_OK)
            err = lk_spool_schema_status(out, &fv, &program, why, sizeof why);
        if (err != LK_OK) {
            rc = fail("backup", err, why);
            goto fail;
        }
        if ((rc = describe(files, o.dir, "spool.db", "spool", spool, v, program)) != EXIT_OK)
            goto fail;
    }
    if ((rc = write_manifest(o.dir, m)) != EXIT_OK)
        goto fail;
    printf("backup complete: %s (%s)\n", o.dir, when);
    json_decref(m);
    return EXIT_OK;
fail:
    /* Nothing half-made is left: the files this run wrote, and the
     * directory if it made it. */
    snprintf(out, sizeof out, "%s/registry.db", o.dir);
    (void)unlink(out);
    snprintf(out, sizeof out, "%s/spool.db", o.dir);
    (void)unlink(out);
    if (made)
        (void)rmdir(o.dir);
    json_decref(m);
    return rc;
}

/* The manifest's entry for name (NULL if none); every entry's hash and size
 * checked against its file. Returns an exit code. */
static int check_manifest(const char *dir, json_t **out)
{
    char path[4200], hex[65];
    json_error_t jerr;
    json_t *m, *files, *f;
    struct stat st;
    size_t i;
    long long size = 0;

    *out = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST);
    if (lstat(path, &st) != 0) {
        tool_error("restore", LK_ERR_FILE_MISSING, "%s: %s (not a directory 'latchkey backup' "
                                                   "completed)", path, strerror(errno));
        return tool_file_exit(errno);
    }
    if (!S_ISREG(st.st_mode) || st.st_size > MANIFEST_MAX) {
        tool_error("restore", LK_ERR_FILE_UNUSABLE, "%s is not a regular file of at most %d "
                                                    "bytes", path, MANIFEST_MAX);
        return EXIT_FILE;
    }
    m = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    files = m != NULL ? json_object_get(m, "files") : NULL;
    if (m == NULL || !json_is_string(json_object_get(m, "format")) ||
        strcmp(json_string_value(json_object_get(m, "format")), MANIFEST_FORMAT) != 0 ||
        !json_is_array(files) || json_array_size(files) == 0) {
        tool_error("restore", LK_ERR_REG_STORAGE, "%s is not a latchkey backup manifest%s%s",
                   path, m == NULL ? ": " : "", m == NULL ? jerr.text : "");
        json_decref(m);
        return EXIT_REG_STORAGE;
    }
    json_array_foreach(files, i, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *jsize = json_object_get(f, "size");
        /* Only the two names backup writes: never a path out of dir. */
        if (name == NULL || (strcmp(name, "registry.db") != 0 && strcmp(name, "spool.db") != 0) ||
            sha == NULL || !json_is_integer(jsize)) {
            tool_error("restore", LK_ERR_REG_STORAGE, "%s: entry %zu is not a file entry of a "
                                                      "latchkey backup", path, i);
            json_decref(m);
            return EXIT_REG_STORAGE;
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (hash_file(path, hex, &size) != 0) {
            int e = errno;
            tool_error("restore", LK_ERR_IO, "%s: %s", path, strerror(e));
            json_decref(m);
            return tool_file_exit(e);
        }
        if (size != json_integer_value(jsize) || strcmp(hex, sha) != 0) {
            tool_error("restore", LK_ERR_REG_STORAGE, "%s does not match %s (%s): the backup is "
                                                      "damaged or was changed; nothing was "
                                                      "restored", path, MANIFEST,
                       size != json_integer_value(jsize) ? "size" : "SHA-256");
            json_decref(m);
            return EXIT_REG_STORAGE;
        }
        snprintf(path, sizeof path, "%s/%s", dir, MANIFEST);
    }
    *out = m;
    return EXIT_OK;
}

static int has_file(json_t *m, const char *name)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(m, "files"), i, f) {
        if (strcmp(json_string_value(json_object_get(f, "name")), name) == 0)
            return 1;
    }
    return 0;
}

int cmd_restore(int argc, char **argv)
{
    struct opts o;
    char src_reg[4200], src_spool[4200], spool_default[4200], why[8800] = "";
    const char *spool = NULL;
    int64_t v = 0, program = 0;
    json_t *m = NULL;
    unsigned flags, sflags;
    int rc;
    lk_err err;

    rc = parse(argc, argv, "restore", restore_usage, "sf", 1, &o);
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    flags = o.force ? LK_REG_RESTORE_FORCE : 0;
    sflags = o.force ? LK_SPOOL_RESTORE_FORCE : 0;
    if ((rc = check_manifest(o.dir, &m)) != EXIT_OK)
        return rc;
    snprintf(src_reg, sizeof src_reg, "%s/registry.db", o.dir);
    snprintf(src_spool, sizeof src_spool, "%s/spool.db", o.dir);
    beside(o.db, "spool.db", spool_default, sizeof spool_default);
    if (!has_file(m, "registry.db")) {
        tool_error("restore", LK_ERR_REG_STORAGE, "%s/%s lists no registry.db", o.dir, MANIFEST);
        json_decref(m);
        return EXIT_REG_STORAGE;
    }
    if (!o.no_spool && has_file(m, "spool.db"))
        spool = o.spool != NULL ? o.spool : spool_default;
    else if (o.spool != NULL)
        printf("%s has no spool.db: %s is left as it is\n", o.dir, o.spool);
    json_decref(m);
    /* Both restores checked (the backups, the targets, whether they are in
     * use) before either writes. */
    err = lk_registry_restore(src_reg, o.db, flags | LK_REG_RESTORE_CHECK, &v, why, sizeof why);
    if (err == LK_OK && spool != NULL)
        err = lk_spool_restore(src_spool, spool, sflags | LK_SPOOL_RESTORE_CHECK, NULL, why,
                               sizeof why);
    if (err != LK_OK)
        return fail("restore", err, why);
    (void)lk_registry_schema_status(src_reg, &v, &program, why, sizeof why);
    err = lk_registry_restore(src_reg, o.db, flags, &v, why, sizeof why);
    if (err != LK_OK)
        return fail("restore", err, why);
    printf("%s: restored from %s (schema %lld%s)\n", o.db, src_reg, (long long)v,
           v < program ? ", migrated" : "");
    if (spool != NULL) {
        err = lk_spool_restore(src_spool, spool, sflags, &v, why, sizeof why);
        if (err != LK_OK) {
            rc = fail("restore", err, why);
            fprintf(stderr, "%s: restore: the registry database %s was restored, the spool %s "
                            "was not\n", tool_name, o.db, spool);
            return rc;
        }
        printf("%s: restored from %s\n", spool, src_spool);
    }
    printf("restore complete from %s\n", o.dir);
    return EXIT_OK;
}

int cmd_migrate(int argc, char **argv)
{
    struct opts o;
    char why[1024] = "";
    int64_t v = 0, program = 0, to = 0;
    int rc;
    lk_err err;

    rc = parse(argc, argv, "migrate", migrate_usage, "c", 0, &o);
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    err = lk_registry_schema_status(o.db, &v, &program, why, sizeof why);
    if (err != LK_OK)
        return fail("migrate", err, why);
    printf("%s: schema version %lld; this latchkey's: %lld\n", o.db, (long long)v,
           (long long)program);
    if (v > program) {
        tool_error("migrate", LK_ERR_REG_SCHEMA, "%s is newer than this latchkey: use a newer "
                                                 "latchkey", o.db);
        return EXIT_REG_STORAGE;
    }
    if (v == program) {
        printf("current: no migration needed\n");
        return EXIT_OK;
    }
    if (o.check) {
        printf("a migration from %lld to %lld is due\n", (long long)v, (long long)program);
        return EXIT_MIGRATE_NEEDED;
    }
    err = lk_registry_migrate(o.db, &v, &to, why, sizeof why);
    if (err != LK_OK)
        return fail("migrate", err, why);
    printf("migrated from %lld to %lld\n", (long long)v, (long long)to);
    return EXIT_OK;
}
