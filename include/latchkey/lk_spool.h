/*
 * lk_spool.h — the delivery spool: the durable copy of every message routed
 * to a push subscription, from the broker's acceptance of it until the push
 * endpoint's 2xx (or its dead-lettering or expiry).
 *
 * One SQLite file (WAL), written by two processes: the broker plugin
 * enqueues — inside the message event, before Mosquitto acknowledges the
 * device's PUBLISH, so a message the device saw acknowledged is already in
 * the file — and latchkeyd takes, acknowledges, retries and dead-letters.
 * A commit reaches the kernel before the call returns, so a kill -9 of either
 * process loses nothing committed; LK_SPOOL_SYNC_FULL also fsyncs every
 * commit, so that a power cut loses nothing either (slower).
 *
 * Names: a subscription is "projects/P/subscriptions/S", a topic
 * "projects/P/topics/T" (Pub/Sub's resource names). A message is stored once
 * however many subscriptions it is queued for; each (subscription, message)
 * is one delivery. Delivery order per subscription and ordering key (the
 * device's numId): lk_spool_next offers only each key's oldest delivery.
 *
 * Every change is one transaction. No function prints; errors come back as
 * lk_err with a reason in why (never the payload).
 */
#ifndef LK_SPOOL_H
#define LK_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "lk_error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_spool lk_spool;

#define LK_SPOOL_CREATE    1u  /* create the file (mode 0660) if it is missing */
#define LK_SPOOL_SYNC_FULL 2u  /* fsync every commit (synchronous=FULL) */
#define LK_SPOOL_READONLY  4u  /* stats only (the tool); no write of any kind */

/* Opens (and with LK_SPOOL_CREATE makes, or migrates) the spool at path.
 * busy_ms: how long a call waits for the other process's transaction (0: not
 * at all). A handle is used by one thread at a time; each process or thread
 * opens its own. Errors: LK_ERR_ARG; LK_ERR_FILE_MISSING (no file, no
 * CREATE); LK_ERR_FILE_UNUSABLE (not a regular file, no permission, or a
 * READONLY open of a file whose -wal/-shm are missing); LK_ERR_STORE_FOREIGN
 * (not a latchkey spool, an empty file without CREATE, or a newer schema);
 * LK_ERR_REG_BUSY, LK_ERR_IO, LK_ERR_NOMEM. A change through a READONLY
 * handle is LK_ERR_STATE. */
lk_err lk_spool_open(const char *path, unsigned flags, int busy_ms, lk_spool **out,
                     char *why, size_t why_size);
void lk_spool_close(lk_spool *sp);

/* An online, consistent copy of the spool at src into the new file dst, as
 * lk_registry_backup copies the registry (lk_reg_backup.h): the same steps,
 * checks and files (mode 0640), with the spool's application id and
 * schema. *schema_version
 * (may be NULL): the copy's. Errors: LK_ERR_ARG; LK_ERR_REG_EXISTS (dst
 * exists); LK_ERR_FILE_MISSING, LK_ERR_FILE_UNUSABLE; LK_ERR_STORE_FOREIGN (not
 * a latchkey spool, or a newer schema); LK_ERR_REG_STORAGE (the copy fails the
 * integrity check); LK_ERR_REG_BUSY, LK_ERR_IO, LK_ERR_NOMEM. */
lk_err lk_spool_backup(const char *src, const char *dst, int64_t *schema_version,
                       char *why, size_t why_size);

#define LK_SPOOL_RESTORE_FORCE 1u /* restore even while other processes have dst open */
#define LK_SPOOL_RESTORE_CHECK 2u /* every check, no write (LK_REG_RESTORE_CHECK) */

/* Restores the spool backup src into dst, as lk_registry_restore does for the
 * registry: src checked first, dst created (mode 0660, as lk_spool_open
 * creates one) or its content replaced in one transaction, in WAL mode
 * afterwards; refused (LK_ERR_REG_BUSY) while another
 * process has dst open, unless LK_SPOOL_RESTORE_FORCE. A dst that is another
 * program's database: LK_ERR_STORE_FOREIGN. */
lk_err lk_spool_restore(const char *src, const char *dst, unsigned flags, int64_t *schema_version,
                        char *why, size_t why_size);

/* The spool schema version of the file at path and this program's, read
 * without creating or writing anything (lk_registry_schema_status).
 * LK_ERR_STORE_FOREIGN for a file that is not a latchkey spool. */
lk_err lk_spool_schema_status(const char *path, int64_t *file_version, int64_t *program_version,
                              char *why, size_t why_size);

/* Bounds, per subscription; 0 = the default (1,000,000 messages, 1 GiB). */
typedef struct lk_spool_limits {
    uint64_t max_messages;
    uint64_t max_bytes;
} lk_spool_limits;

typedef struct lk_spool_msg {
    const char *topic;           /* "projects/P/topics/T" */
    const char *ordering_key;    /* the device's numId, decimal */
    const uint8_t *data;
    size_t data_len;
    const char *attributes_json; /* a JSON object of string values: IoT Core's attributes */
    int64_t publish_time_ms;     /* when the broker accepted it (ms since the epoch) */
} lk_spool_msg;

/* Stores m and queues it for each of subs[0..nsubs), in one transaction.
 * A subscription whose queue is at its bound does not get it: its dropped
 * count goes up and bit i of *full is set (i < 32); the others still do.
 * *message_id (may be NULL) is the message's id, unique for the file's life
 * (Pub/Sub's messageId). LK_ERR_REG_BUSY / LK_ERR_IO / LK_ERR_NOMEM: nothing
 * was stored — the caller must not let the message be acknowledged. */
lk_err lk_spool_enqueue(lk_spool *sp, const lk_spool_msg *m, const char *const *subs, size_t nsubs,
                        const lk_spool_limits *lim, uint64_t *message_id, uint32_t *full,
                        char *why, size_t why_size);

/* One delivery handed to the pusher. Owned by the caller after lk_spool_next;
 * lk_spool_delivery_free releases (and wipes) data and attributes. */
typedef struct lk_spool_delivery {
    uint64_t message_id;
    char *topic;
    char *ordering_key;
    uint8_t *data;
    size_t data_len;
    char *attributes_json;
    int64_t publish_time_ms;
    uint32_t attempts;           /* attempts already made (0 for the first) */
} lk_spool_delivery;
void lk_spool_delivery_free(lk_spool_delivery *d);

/* Up to max deliveries of subscription sub that may be sent at now_ms: for each
 * ordering key only its oldest delivery, and only if its next attempt is due
 * and the key is not in skip_keys (keys the caller has in flight). Oldest
 * first. Only the queue's front is looked at — its oldest 256 + 4 * max
 * deliveries — so that a call is cheap however deep the queue: a key whose
 * oldest delivery lies further back is offered once the front has moved on.
 * *n = how many were filled; on error none are. */
lk_err lk_spool_next(lk_spool *sp, const char *sub, int64_t now_ms, const char *const *skip_keys,
                     size_t nskip, lk_spool_delivery *out, size_t max, size_t *n,
                     char *why, size_t why_size);

/* The endpoint acknowledged: the deliveries are removed (a message no
 * delivery refers to any more is removed with them), in one transaction.
 * Ids that are no longer queued are ignored. */
lk_err lk_spool_ack(lk_spool *sp, const char *sub, const uint64_t *ids, size_t n,
                    char *why, size_t why_size);

/* A failed attempt: attempts + 1, next attempt at next_try_ms. An id that
 * is no longer queued (acked, expired, forgotten) is ignored (LK_OK). */
lk_err lk_spool_retry(lk_spool *sp, const char *sub, uint64_t id, int64_t next_try_ms,
                      char *why, size_t why_size);

/* Moves a delivery to the dead-letter topic's subscriptions dl_subs (none:
 * it is only counted as dead-lettered), in one transaction. The message
 * keeps its id, key, data and publish time; in each dead-letter
 * subscription it is a fresh delivery (attempts 0, due now), as Pub/Sub
 * republishes it to the dead-letter topic; each is bound by lim (a full one
 * counts it dropped). sub itself among dl_subs is ignored. An id that is no
 * longer queued is ignored (LK_OK). */
lk_err lk_spool_dead_letter(lk_spool *sp, const char *sub, uint64_t id, const char *const *dl_subs,
                            size_t ndl, const lk_spool_limits *lim, char *why, size_t why_size);

/* Removes sub's deliveries of messages published before before_ms (the
 * subscription's retention); *n = how many (counted as expired). */
lk_err lk_spool_expire(lk_spool *sp, const char *sub, int64_t before_ms, uint64_t *n,
                       char *why, size_t why_size);

/* A deleted subscription: its deliveries and counters go. */
lk_err lk_spool_forget(lk_spool *sp, const char *sub, char *why, size_t why_size);

typedef struct lk_spool_stats {
    uint64_t depth;              /* deliveries queued */
    uint64_t bytes;              /* their data bytes */
    int64_t oldest_ms;           /* publish time of the oldest queued, 0 if none */
    uint64_t enqueued, acked, dead_lettered, dropped, expired;  /* since the subscription's first message */
} lk_spool_stats;
/* One subscription's figures (all zero for one the spool has never seen). */
lk_err lk_spool_stats_get(lk_spool *sp, const char *sub, lk_spool_stats *out, char *why, size_t why_size);
/* Every subscription the spool has figures for, by name. */
lk_err lk_spool_stats_list(lk_spool *sp, int (*cb)(void *arg, const char *sub, const lk_spool_stats *s),
                           void *arg, char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#endif
