/*
 * sqlite_search.c — the SQLite backend (backend.h) for the console: the
 * device search and the fleet counts (the indexes of LK_REG_SCHEMA_CONSOLE; the plans and
 * their worst cases are in docs/registry.md "Finding devices at scale").
 *
 * A search is ordered by device id and must cost about its page, not the
 * registry. Each filter has an index: presence, blocked and gateway ones
 * keep the ids in order (devices_by_presence, devices_blocked,
 * devices_gateways), so walking one from the cursor stops after the page;
 * silence (devices_by_activity) and expiry (device_credentials_by_expiry)
 * are in time order, so walking them gives every match, sorted after. The
 * planner has no statistics to choose with (and a bound number tells it
 * nothing), so the choice is made here and forced with INDEXED BY: each
 * filter's matches are counted up to CAP through its own index (a few
 * thousand index entries at most); the filter with the fewest drives. A
 * time-ordered filter drives only when it has fewer than CAP matches (its
 * sort then holds fewer than CAP rows); otherwise an id-ordered index does,
 * the others being tests on each row it gives. The statements differ by
 * filter set and driver (a few hundred shapes), so each search prepares its
 * own (some tens of microseconds) rather than keeping them all.
 */
#include <stdio.h>
#include <string.h>

#include "sqlite_internal.h"

#define CAP 4096 /* matches counted per filter: above it, a filter is "dense" */

/* The drivers (sqlite_internal.h's LK_SQ_DRV_*, shorter). */
enum drv {
    DRV_BASE = LK_SQ_DRV_BASE, DRV_BLOCKED = LK_SQ_DRV_BLOCKED, DRV_GATEWAY = LK_SQ_DRV_GATEWAY,
    DRV_PRESENCE = LK_SQ_DRV_PRESENCE, DRV_SILENT = LK_SQ_DRV_SILENT, DRV_EXPIRING = LK_SQ_DRV_EXPIRING,
    DRV__N = LK_SQ_DRV__N
};

/* What each driver walks, and the filter it tests (which, on its own
 * driver, is the partial index's own condition or the range it walks). */
static const char *const drv_from[DRV__N] = {
    [DRV_BASE] = "devices d INDEXED BY sqlite_autoindex_devices_1",
    [DRV_BLOCKED] = "devices d INDEXED BY devices_blocked",
    [DRV_GATEWAY] = "devices d INDEXED BY devices_gateways",
    [DRV_PRESENCE] = "devices d INDEXED BY devices_by_presence",
    [DRV_SILENT] = "devices d INDEXED BY devices_by_activity",
    /* the candidates come from the IN list: rowid lookups only */
    [DRV_EXPIRING] = "devices d NOT INDEXED",
};

#define SILENT_TERM "max(d.last_heartbeat, d.last_event, d.last_state, d.created) < ?5"
#define EXPIRING_IN                                                                          \
    "d.num_id IN (SELECT c.num_id FROM device_credentials c INDEXED BY "                    \
    "device_credentials_by_expiry WHERE c.expires <> 0 AND c.expires <= ?6)"
#define EXPIRING_EXISTS                                                                      \
    "EXISTS (SELECT 1 FROM device_credentials c WHERE c.num_id = d.num_id AND "             \
    "c.expires <> 0 AND c.expires <= ?6)"

static int has(const lk_reg_be_search *s, enum drv f)
{
    switch (f) {
    case DRV_BLOCKED: return s->blocked_only;
    case DRV_GATEWAY: return s->gateways_only;
    case DRV_PRESENCE: return s->presence >= 0;
    case DRV_SILENT: return s->silent_before != 0;
    case DRV_EXPIRING: return s->expiring;
    default: return 1;
    }
}

static int id_ordered(enum drv f)
{
    return f != DRV_SILENT && f != DRV_EXPIRING;
}

/* The test of filter f on the row d. */
static const char *term(enum drv f, enum drv driver)
{
    switch (f) {
    case DRV_BLOCKED: return " AND d.blocked <> 0";
    case DRV_GATEWAY: return " AND d.gateway_type = 1";
    case DRV_PRESENCE: return " AND d.presence = ?4";
    case DRV_SILENT: return " AND " SILENT_TERM;
    case DRV_EXPIRING: return driver == DRV_EXPIRING ? " AND " EXPIRING_IN : " AND " EXPIRING_EXISTS;
    default: return "";
    }
}

/* The id range ?2.. ?3 (a range on an id-ordered driver, a test on the
 * others). */
static int put_range(char *sql, size_t size, size_t *n, const lk_reg_be_search *s)
{
    int k = snprintf(sql + *n, size - *n, " AND d.device_id %s ?2%s", s->lo_strict ? ">" : ">=",
                     s->hi != NULL ? " AND d.device_id < ?3" : "");
    if (k < 0 || (size_t)k >= size - *n)
        return -1;
    *n += (size_t)k;
    return 0;
}

static int put(char *sql, size_t size, size_t *n, const char *t)
{
    size_t l = strlen(t);
    if (l >= size - *n)
        return -1;
    memcpy(sql + *n, t, l + 1);
    *n += l;
    return 0;
}

/* ?1 registry, ?2 lo, ?3 hi, ?4 presence, ?5 silent_before, ?6 expiring_by,
 * ?7 how many. Each statement names ?7, so the lower ones are in range
 * whether it uses them or not. */
static int bind_all(sqlite3_stmt *st, int64_t rid, const lk_reg_be_search *s, int64_t n)
{
    int rc = SQLITE_OK;
    BIND(sqlite3_bind_int64(st, 1, rid));
    BIND(lk_sq__bind_text(st, 2, s->lo));
    BIND(s->hi != NULL ? lk_sq__bind_text(st, 3, s->hi) : sqlite3_bind_null(st, 3));
    BIND(sqlite3_bind_int(st, 4, s->presence));
    BIND(sqlite3_bind_int64(st, 5, s->silent_before));
    BIND(sqlite3_bind_int64(st, 6, s->expiring_by));
    BIND(sqlite3_bind_int64(st, 7, n));
    return rc;
}

static lk_err prepare(lk_reg_be *be, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v2(be->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*st);
        *st = NULL;
        return lk_sq__fail(be, rc);
    }
    return LK_OK;
}

/* How many devices of rid filter f alone matches, counted up to CAP
 * through its own index (an id-ordered one within the id range). */
static lk_err count_capped(lk_reg_be *be, int64_t rid, const lk_reg_be_search *s, enum drv f,
                           int64_t *out)
{
    char sql[512];
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    lk_err err;
    int rc;

    if (f == DRV_EXPIRING)
        rc = put(sql, sizeof sql, &n,
                 "SELECT count(*) FROM (SELECT 1 FROM device_credentials c INDEXED BY "
                 "device_credentials_by_expiry CROSS JOIN devices d ON d.num_id = c.num_id "
                 "WHERE c.expires <> 0 AND c.expires <= ?6 AND d.registry = ?1");
    else
        rc = put(sql, sizeof sql, &n, "SELECT count(*) FROM (SELECT 1 FROM ") ||
             put(sql, sizeof sql, &n, drv_from[f]) ||
             put(sql, sizeof sql, &n, " WHERE d.registry = ?1") ||
             (id_ordered(f) && put_range(sql, sizeof sql, &n, s)) ||
             put(sql, sizeof sql, &n, term(f, DRV_BASE));
    if (rc != 0 || put(sql, sizeof sql, &n, " LIMIT ?7)") != 0)
        return LK_ERR_REG_STORAGE;
    if ((err = prepare(be, sql, &st)) != LK_OK)
        return err;
    rc = bind_all(st, rid, s, CAP);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    err = rc == SQLITE_OK ? LK_OK : lk_sq__fail(be, rc);
    sqlite3_finalize(st);
    return err;
}

/* The driver: the filter with the fewest matches; a time-ordered one only
 * below CAP. */
static lk_err choose(lk_reg_be *be, int64_t rid, const lk_reg_be_search *s, enum drv *out)
{
    int64_t best = -1;
    enum drv f;
    lk_err err;

    *out = DRV_BASE;
    for (f = DRV_BLOCKED; f < DRV__N; f++) {
        int64_t c = 0;
        if (!has(s, f))
            continue;
        if ((err = count_capped(be, rid, s, f, &c)) != LK_OK)
            return err;
        if (!id_ordered(f) && c >= CAP)
            continue;
        if (best < 0 || c < best) {
            best = c;
            *out = f;
        }
    }
    return LK_OK;
}

int lk_sq__search_sql(const lk_reg_be_search *s, int driver, char *sql, size_t size)
{
    size_t n = 0;
    enum drv f;
    int rc;
    if (driver < 0 || driver >= DRV__N)
        return -1;
    rc = put(sql, size, &n,
             "SELECT " LK_SQ_DEVICE_ROW ", (SELECT min(c.expires) FROM device_credentials c "
             "WHERE c.num_id = d.num_id AND c.expires <> 0) FROM ") ||
         put(sql, size, &n, drv_from[driver]) || put(sql, size, &n, " WHERE d.registry = ?1") ||
         put_range(sql, size, &n, s);
    for (f = DRV_BLOCKED; rc == 0 && f < DRV__N; f++)
        if (has(s, f))
            rc = put(sql, size, &n, term(f, (enum drv)driver));
    return rc != 0 || put(sql, size, &n, " ORDER BY d.device_id LIMIT ?7") != 0 ? -1 : 0;
}

lk_err lk_sq__device_search(lk_reg_be *be, int64_t rid, const lk_reg_be_search *s, unsigned limit,
                            int (*cb)(void *arg, const lk_reg_device *d, int64_t cred_expiry),
                            void *arg)
{
    char sql[2048];
    sqlite3_stmt *st = NULL;
    enum drv driver;
    lk_err err;
    int rc;

    if ((err = choose(be, rid, s, &driver)) != LK_OK)
        return err;
    if (lk_sq__search_sql(s, (int)driver, sql, sizeof sql) != 0)
        return LK_ERR_REG_STORAGE;
    if ((err = prepare(be, sql, &st)) != LK_OK)
        return err;
    rc = bind_all(st, rid, s, (int64_t)limit);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            lk_reg_device d;
            if (lk_sq__col_device_row(st, &d) != 0) {
                rc = SQLITE_NOMEM;
                break;
            }
            if (cb(arg, &d, sqlite3_column_int64(st, LK_SQ_DEVICE_ROW_N)))
                break;
        }
    }
    err = rc == SQLITE_DONE || rc == SQLITE_ROW ? LK_OK : lk_sq__fail(be, rc);
    sqlite3_finalize(st);
    return err;
}

/* Each count is a range of an index (presence ones in devices_by_presence,
 * the blocked in the partial devices_blocked); devices is their sum. */
#define FLEET_COUNT(cond, index)                                                            \
    "(SELECT count(*) FROM devices d INDEXED BY " index " WHERE d.registry = r.id AND " cond ")"

lk_err lk_sq__fleet_counts(lk_reg_be *be, const char *project,
                           int (*cb)(void *arg, const lk_reg_fleet_counts *c), void *arg)
{
    static const char sql[] =
        "SELECT r.location, r.registry_id, "
        FLEET_COUNT("d.presence = 1", "devices_by_presence") ", "
        FLEET_COUNT("d.presence = 2", "devices_by_presence") ", "
        FLEET_COUNT("d.presence = 0", "devices_by_presence") ", "
        FLEET_COUNT("d.blocked <> 0", "devices_blocked")
        " FROM registries r WHERE r.project = ?1 AND substr(r.registry_id, 1, 1) <> '~' "
        "ORDER BY r.location, r.registry_id";
    sqlite3_stmt *st = NULL;
    lk_err err;
    int rc;

    if ((err = prepare(be, sql, &st)) != LK_OK)
        return err;
    rc = lk_sq__bind_text(st, 1, project);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            lk_reg_fleet_counts c;
            memset(&c, 0, sizeof c);
            c.project = project;
            c.location = (const char *)sqlite3_column_text(st, 0);
            c.registry = (const char *)sqlite3_column_text(st, 1);
            if (c.location == NULL || c.registry == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            c.online = (uint64_t)sqlite3_column_int64(st, 2);
            c.offline = (uint64_t)sqlite3_column_int64(st, 3);
            c.never = (uint64_t)sqlite3_column_int64(st, 4);
            c.blocked = (uint64_t)sqlite3_column_int64(st, 5);
            c.devices = c.online + c.offline + c.never;
            if (cb(arg, &c))
                break;
        }
    }
    err = rc == SQLITE_DONE || rc == SQLITE_ROW ? LK_OK : lk_sq__fail(be, rc);
    sqlite3_finalize(st);
    return err;
}
