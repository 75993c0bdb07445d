/*
 * lk_reg_console.h — the fleet console's data (issue 18, docs/console.md
 * "Finding devices", docs/registry.md "Finding devices at scale"): a device
 * search with filters, a page at a time, and per-registry counts of a
 * project's fleet. Part of liblatchkey-registry; it includes lk_registry.h.
 *
 * Both are one read transaction each and never write. Both stay fast on a
 * registry of 1,000,000 devices: the search walks an index in device id
 * order that stops after the page (the registry's indexes for it), the counts are
 * index range counts (exact by construction: nothing is maintained, so
 * nothing can drift).
 */
#ifndef LK_REG_CONSOLE_H
#define LK_REG_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_REG_SEARCH_PAGE_MAX 200u          /* devices a search page gives at most */
#define LK_REG_SILENT_HOURS_MAX 87600u       /* ten years */
#define LK_REG_EXPIRING_DAYS_MAX 3650u       /* ten years */

/* A device search. Every filter given must hold (AND). */
typedef struct lk_reg_search {
    /* NULL or "" = any; else only ids that start with it (case-sensitive,
     * bytes): 1..LK_ID_MAX characters of a device id's alphabet, the first
     * a letter (LK_ERR_REG_INVALID otherwise). */
    const char *id_prefix;
    /* -1 = any; else only devices whose recorded presence is this
     * lk_reg_presence (NEVER: no presence record: never connected since
     * schema 6). */
    int presence;
    int blocked_only;    /* 1: only blocked devices */
    int gateways_only;   /* 1: only gateways (gateway_type GATEWAY) */
    /* 0 = no filter; else 1..LK_REG_SILENT_HOURS_MAX: only devices silent
     * for that many hours: max(last_heartbeat, last_event, last_state,
     * created) < now - hours * 3600. The broker moves last_heartbeat on
     * every message and ping a device sends (docs/plugin.md), so this is
     * "nothing heard from it"; a device that never sent anything counts
     * from its creation (one created an hour ago is not silent for a day).
     * Config sends, errors and presence changes do not count: they are the
     * broker's doing, not the device's. */
    unsigned silent_hours;
    /* -1 = no filter; else 0..LK_REG_EXPIRING_DAYS_MAX: only devices with a
     * credential whose expiry is set (not 0) and at most now + days * 86400
     * (already expired ones included: 0 = expired now). */
    int expiring_days;
    /* NULL = from the start; else only ids that sort after it (the keyset
     * cursor: the last id of the previous page; a valid device id). */
    const char *after_id;
    unsigned limit;      /* 1..LK_REG_SEARCH_PAGE_MAX */
} lk_reg_search;

/* Devices of registry name matching s, ordered by id (bytes), at most
 * s->limit; *more = 1 when at least one more matches after the last one
 * given. cb gets each device with the fields lk_registry_query_devices
 * gives with full = 0 (no credentials or metadata) and credential_expiry:
 * the earliest expiry set among its credentials (0 = none expires). The
 * device and its strings are valid only during the call. cb returns 0 to
 * go on (a stop ends the call with LK_OK and *more = 0). "now" is the
 * registry's clock. One read transaction.
 * Errors: LK_ERR_ARG (NULL reg, name, s, cb or more; limit 0 or over
 * LK_REG_SEARCH_PAGE_MAX; a presence that is not -1 or a value of its
 * enum; silent_hours or expiring_days out of range), LK_ERR_REG_INVALID (a
 * prefix or after_id that is not one of a device id), LK_ERR_REG_NOT_FOUND
 * (no such registry), and the storage errors; *more is 0 on every
 * failure. */
lk_err lk_registry_search_devices(lk_registry *reg, const lk_reg_name *name,
                                  const lk_reg_search *s,
                                  int (*cb)(void *arg, const lk_reg_device *d,
                                            int64_t credential_expiry),
                                  void *arg, int *more, char *why, size_t why_size);

/* One registry's counts. devices = online + offline + never. */
typedef struct lk_reg_fleet_counts {
    const char *project, *location, *registry;   /* valid during the callback */
    uint64_t devices, online, offline, never, blocked;
} lk_reg_fleet_counts;

/* The counts of every registry of project, ordered by location and
 * registry id (a staged import's hidden registry is not one). A project
 * with no registry: no call, LK_OK. One read transaction; the cost is a
 * count of index entries, about 100 ms per 1,000,000 devices.
 * Errors: LK_ERR_ARG (NULL reg, project or cb), LK_ERR_REG_INVALID (not a
 * project id), and the storage errors. */
lk_err lk_registry_fleet_counts(lk_registry *reg, const char *project,
                                int (*cb)(void *arg, const lk_reg_fleet_counts *c), void *arg,
                                char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#endif
