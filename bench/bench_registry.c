/*
 * The device registry (issue 4): authentication lookups on a big registry,
 * beside raw SQLite on the same file, and a raw-SQLite insert baseline for
 * the import. bench/registry.sh makes the registries (with the real
 * `latchkey devices import`) and runs this.
 *
 *   bench_registry count DB
 *       the number of devices in the bench registry (below) of DB, read
 *       through a LK_REG_READONLY handle; exit 1 if DB is not a readable
 *       registry with that registry in it
 *   bench_registry lookup DB PAIRS [SLICE]
 *       PAIRS pairs of slices of SLICE (default 20000) lookups of random
 *       device ids, alternating lk_registry_auth_lookup on a fresh
 *       LK_REG_READONLY handle and a raw sqlite3 prepared SELECT of one row
 *       by primary key on the same file (the order flipped every pair), each
 *       call timed on its own; prints `name: value` lines:
 *         registry_devices, registry_lookup_us (median over all our
 *         lookups), registry_lookup_p90_us, registry_lookup_p99_us,
 *         sqlite_pk_lookup_us (median), registry_lookup_vs_sqlite_pk
 *         (median of the per-pair ratios of the slice medians)
 *       and the per-pair figures on stderr
 *   bench_registry insert PATH N PEMFILE
 *       the raw baseline of an import: creates the SQLite file PATH (it must
 *       not exist), inserts N rows (device id, the PEM of PEMFILE) with one
 *       prepared INSERT in one transaction, with the registry's connection
 *       settings (WAL, synchronous=FULL, 64 MiB cache), and prints rows per
 *       second, timed from open to close (as a whole command is)
 *   bench_registry time CMD [ARG...]
 *       runs CMD (its standard output goes to standard error) and prints the
 *       wall-clock seconds it took; exits 1 if CMD did not exit 0
 *
 * The bench registry is projects/bench-project/locations/us-central1/
 * registries/bench-registry, and its devices are device-000000000,
 * device-000000001, ... (the ids bench/registry.sh writes; keep the two in
 * step). Every lookup's result is checked: a device not found, or without
 * its one ES256_PEM credential, stops the bench.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "latchkey/lk_registry.h"

#define BENCH_PROJECT  "bench-project"
#define BENCH_LOCATION "us-central1"
#define BENCH_REGISTRY "bench-registry"
#define BENCH_ID_FMT   "device-%09lu"

static const lk_reg_name bench_name = {BENCH_PROJECT, BENCH_LOCATION, BENCH_REGISTRY};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64: a fixed sequence of random device numbers. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), sorting v. */
static double quantile(double *v, size_t n, double q)
{
    size_t i;
    qsort(v, n, sizeof *v, cmp_double);
    i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static int open_ro(const char *path, lk_registry **reg)
{
    char why[512] = "";
    lk_err err = lk_registry_open(path, LK_REG_READONLY, reg, why, sizeof why);
    if (err != LK_OK) {
        fprintf(stderr, "bench_registry: %s: %s (%s)\n", path, why[0] ? why : lk_strerror(err),
                lk_errname(err));
        return -1;
    }
    return 0;
}

static int count_devices(lk_registry *reg, uint64_t *n)
{
    char why[512] = "";
    lk_reg_registry r;
    lk_err err = lk_registry_get_registry(reg, &bench_name, &r, why, sizeof why);
    if (err != LK_OK) {
        fprintf(stderr, "bench_registry: registry %s: %s (%s)\n", BENCH_REGISTRY,
                why[0] ? why : lk_strerror(err), lk_errname(err));
        return -1;
    }
    *n = r.ndevices;
    lk_reg_registry_free(&r);
    return 0;
}

static int cmd_count(const char *path)
{
    lk_registry *reg = NULL;
    uint64_t n = 0;
    struct stat st;
    int rc;
    /* lk_registry_open would say so too, but not create an empty file. */
    if (stat(path, &st) != 0) {
        fprintf(stderr, "bench_registry: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (open_ro(path, &reg) != 0)
        return 1;
    rc = count_devices(reg, &n);
    lk_registry_close(reg);
    if (rc != 0)
        return 1;
    printf("%llu\n", (unsigned long long)n);
    return 0;
}

/* ---- lookups ---- */

struct raw {
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t lo, hi; /* num_id range of the devices */
};

/* Report, and close what raw_open opened so far. */
static int raw_fail(struct raw *r, const char *what)
{
    fprintf(stderr, "bench_registry: sqlite: %s: %s\n", what, sqlite3_errmsg(r->db));
    sqlite3_finalize(r->st);
    sqlite3_close_v2(r->db);
    memset(r, 0, sizeof *r);
    return -1;
}

/* A plain connection to the same file, with the page cache the registry's
 * handles have (64 MiB), and one prepared statement: the credential of a
 * device by the primary key of device_credentials, (num_id, pos). */
static int raw_open(const char *path, struct raw *r)
{
    sqlite3_stmt *s = NULL;
    memset(r, 0, sizeof *r);
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return raw_fail(r, "open");
    if (sqlite3_exec(r->db, "PRAGMA cache_size = -65536", NULL, NULL, NULL) != SQLITE_OK)
        return raw_fail(r, "cache_size");
    if (sqlite3_prepare_v2(r->db, "SELECT min(num_id), max(num_id) FROM devices", -1, &s, NULL) !=
            SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_finalize(s);
        return raw_fail(r, "num_id range");
    }
    r->lo = sqlite3_column_int64(s, 0);
    r->hi = sqlite3_column_int64(s, 1);
    sqlite3_finalize(s);
    if (sqlite3_prepare_v3(r->db, "SELECT pem FROM device_credentials WHERE num_id = ?1 AND pos = 0",
                           -1, SQLITE_PREPARE_PERSISTENT, &r->st, NULL) != SQLITE_OK)
        return raw_fail(r, "prepare");
    return 0;
}

static void raw_close(struct raw *r)
{
    sqlite3_finalize(r->st);
    sqlite3_close_v2(r->db);
}

/* n raw lookups of random num_ids; lat[i] in microseconds. */
static int raw_slice(struct raw *r, uint64_t *rng, double *lat, size_t n)
{
    size_t i;
    uint64_t span = (uint64_t)(r->hi - r->lo) + 1;
    for (i = 0; i < n; i++) {
        int64_t k = r->lo + (int64_t)(next_rand(rng) % span);
        int rc, ok;
        double t0 = now_s(), t1;
        sqlite3_bind_int64(r->st, 1, k);
        rc = sqlite3_step(r->st);
        ok = rc == SQLITE_ROW && sqlite3_column_text(r->st, 0) != NULL &&
             sqlite3_column_bytes(r->st, 0) > 0;
        sqlite3_reset(r->st);
        t1 = now_s();
        if (!ok) {
            fprintf(stderr, "bench_registry: sqlite: no credential for num_id %lld (%s)\n",
                    (long long)k, sqlite3_errstr(rc));
            return -1;
        }
        lat[i] = (t1 - t0) * 1e6;
    }
    return 0;
}

/* n lk_registry_auth_lookup calls for random device ids of 0..ndev-1. */
static int reg_slice(lk_registry *reg, uint64_t ndev, uint64_t *rng, double *lat, size_t n)
{
    size_t i;
    char id[32];
    for (i = 0; i < n; i++) {
        lk_reg_auth a;
        lk_err err;
        int ok;
        double t0, t1;
        snprintf(id, sizeof id, BENCH_ID_FMT, (unsigned long)(next_rand(rng) % ndev));
        t0 = now_s();
        err = lk_registry_auth_lookup(reg, &bench_name, id, &a);
        ok = err == LK_OK && a.ncreds == 1 && a.creds[0].format == LK_CRED_ES256_PEM &&
             a.creds[0].pem != NULL && a.num_id != 0 && !a.blocked;
        if (err == LK_OK)
            lk_reg_auth_free(&a);
        t1 = now_s();
        if (!ok) {
            fprintf(stderr, "bench_registry: auth lookup of %s: %s%s\n", id, lk_errname(err),
                    err == LK_OK ? " but not the one unblocked ES256_PEM device expected" : "");
            return -1;
        }
        lat[i] = (t1 - t0) * 1e6;
    }
    return 0;
}

static int cmd_lookup(const char *path, long pairs, long slice)
{
    lk_registry *reg = NULL;
    struct raw raw;
    uint64_t ndev = 0, rng_reg = 42, rng_raw = 4242;
    double *ours, *base, *tmp, *ratios;
    long p;
    int rc = 1, raw_open_ok = 0;

    if (pairs < 1 || slice < 100) {
        fprintf(stderr, "bench_registry: lookup: PAIRS >= 1 and SLICE >= 100\n");
        return 2;
    }
    ours = malloc((size_t)(pairs * slice) * sizeof *ours);
    base = malloc((size_t)(pairs * slice) * sizeof *base);
    tmp = malloc((size_t)slice * sizeof *tmp);
    ratios = malloc((size_t)pairs * sizeof *ratios);
    if (ours == NULL || base == NULL || tmp == NULL || ratios == NULL) {
        fprintf(stderr, "bench_registry: out of memory\n");
        goto out;
    }
    if (open_ro(path, &reg) != 0 || count_devices(reg, &ndev) != 0)
        goto out;
    if (ndev == 0) {
        fprintf(stderr, "bench_registry: %s: the bench registry has no devices\n", path);
        goto out;
    }
    if (raw_open(path, &raw) != 0)
        goto out;
    raw_open_ok = 1;
    if ((uint64_t)(raw.hi - raw.lo) + 1 != ndev)
        fprintf(stderr, "bench_registry: note: num_ids %lld..%lld for %llu devices\n",
                (long long)raw.lo, (long long)raw.hi, (unsigned long long)ndev);
    printf("registry_devices: %llu\n", (unsigned long long)ndev);
    fflush(stdout);

    /* The first slice of each, on the fresh handles, is reported here and
     * not counted: it fills the handle's page cache (what a broker that has
     * run for a while has) and prepares the statements. */
    if (reg_slice(reg, ndev, &rng_reg, tmp, (size_t)slice) != 0)
        goto out;
    fprintf(stderr, "registry lookups: first %ld on the fresh handle: median %.2f us, p99 %.2f us\n",
            slice, quantile(tmp, (size_t)slice, 0.5), quantile(tmp, (size_t)slice, 0.99));
    if (raw_slice(&raw, &rng_raw, tmp, (size_t)slice) != 0)
        goto out;
    fprintf(stderr, "sqlite pk lookups: first %ld on the fresh connection: median %.2f us\n", slice,
            quantile(tmp, (size_t)slice, 0.5));

    fprintf(stderr, "lookup pairs (registry/sqlite pk, median us of %ld each):", slice);
    for (p = 0; p < pairs; p++) {
        double *o = ours + p * slice, *b = base + p * slice, mo, mb;
        int r1, r2;
        if (p % 2 == 0) {
            r1 = reg_slice(reg, ndev, &rng_reg, o, (size_t)slice);
            r2 = r1 == 0 ? raw_slice(&raw, &rng_raw, b, (size_t)slice) : -1;
        } else {
            r1 = raw_slice(&raw, &rng_raw, b, (size_t)slice);
            r2 = r1 == 0 ? reg_slice(reg, ndev, &rng_reg, o, (size_t)slice) : -1;
        }
        if (r1 != 0 || r2 != 0)
            goto out;
        memcpy(tmp, o, (size_t)slice * sizeof *tmp);
        mo = quantile(tmp, (size_t)slice, 0.5);
        memcpy(tmp, b, (size_t)slice * sizeof *tmp);
        mb = quantile(tmp, (size_t)slice, 0.5);
        ratios[p] = mo / mb;
        fprintf(stderr, " %.2f/%.2f=%.2f", mo, mb, ratios[p]);
    }
    fprintf(stderr, "\n");
    {
        size_t n = (size_t)(pairs * slice);
        double ratio = quantile(ratios, (size_t)pairs, 0.5);
        double med = quantile(ours, n, 0.5), p90 = quantile(ours, n, 0.90),
               p99 = quantile(ours, n, 0.99), max = ours[n - 1];
        double bmed = quantile(base, n, 0.5), bp99 = quantile(base, n, 0.99);
        fprintf(stderr, "registry lookups: %zu timed, max %.1f us; sqlite pk p99 %.2f us\n", n, max,
                bp99);
        printf("registry_lookup_us: %.2f\n", med);
        printf("registry_lookup_p90_us: %.2f\n", p90);
        printf("registry_lookup_p99_us: %.2f\n", p99);
        printf("sqlite_pk_lookup_us: %.2f\n", bmed);
        printf("registry_lookup_vs_sqlite_pk: %.2f\n", ratio);
    }
    rc = 0;
out:
    if (raw_open_ok)
        raw_close(&raw);
    lk_registry_close(reg);
    free(ours);
    free(base);
    free(tmp);
    free(ratios);
    return rc;
}

/* ---- the raw insert baseline ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
        }
    }
    fclose(f);
    return buf;
}

static int cmd_insert(const char *path, long n, const char *pemfile)
{
    static const char setup[] =
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;"
        "PRAGMA cache_size = -65536;"
        "CREATE TABLE devices(num_id INTEGER PRIMARY KEY, device_id TEXT NOT NULL UNIQUE,"
        " pem TEXT NOT NULL) STRICT;";
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char *pem, *msg = NULL, id[32];
    struct stat st;
    double t0, t;
    long i;
    int rc = SQLITE_OK;

    if (n < 1) {
        fprintf(stderr, "bench_registry: insert: N >= 1\n");
        return 2;
    }
    if (stat(path, &st) == 0) {
        fprintf(stderr, "bench_registry: insert: %s exists\n", path);
        return 1;
    }
    if ((pem = read_file(pemfile)) == NULL) {
        fprintf(stderr, "bench_registry: insert: cannot read %s\n", pemfile);
        return 1;
    }
    t0 = now_s();
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, setup, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(db, "INSERT INTO devices(device_id, pem) VALUES(?1, ?2)", -1,
                                SQLITE_PREPARE_PERSISTENT, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    for (i = 0; i < n && rc == SQLITE_OK; i++) {
        snprintf(id, sizeof id, BENCH_ID_FMT, (unsigned long)i);
        rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text(s, 2, pem, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_DONE)
            rc = sqlite3_reset(s);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "bench_registry: insert: %s\n",
                msg != NULL ? msg : db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_free(msg);
        sqlite3_finalize(s);
        sqlite3_close_v2(db);
        free(pem);
        return 1;
    }
    sqlite3_finalize(s);
    rc = sqlite3_close(db); /* the last connection: checkpoints the WAL */
    t = now_s() - t0;
    free(pem);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "bench_registry: insert: close: %s\n", sqlite3_errstr(rc));
        return 1;
    }
    printf("%.0f\n", (double)n / t);
    return 0;
}

/* ---- timing a command ---- */

static int cmd_time(char **argv)
{
    double t0 = now_s(), t;
    int status = 0;
    pid_t pid;

    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        perror("bench_registry: fork");
        return 1;
    }
    if (pid == 0) {
        if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
            _exit(127);
        execvp(argv[0], argv);
        fprintf(stderr, "bench_registry: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            perror("bench_registry: waitpid");
            return 1;
        }
    }
    t = now_s() - t0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_registry: %s failed (status %d)\n", argv[0], status);
        return 1;
    }
    printf("%.6f\n", t);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_registry count DB\n"
                    "       bench_registry lookup DB PAIRS [SLICE]\n"
                    "       bench_registry insert PATH N PEMFILE\n"
                    "       bench_registry time CMD [ARG...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "count") == 0)
        return cmd_count(argv[2]);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "lookup") == 0)
        return cmd_lookup(argv[2], atol(argv[3]), argc == 5 ? atol(argv[4]) : 20000);
    if (argc == 5 && strcmp(argv[1], "insert") == 0)
        return cmd_insert(argv[2], atol(argv[3]), argv[4]);
    if (argc >= 3 && strcmp(argv[1], "time") == 0)
        return cmd_time(argv + 2);
    return usage();
}
