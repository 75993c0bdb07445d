/*
 * internal.h — what the spool's files share (not installed): the handle,
 * its cached statements, transactions and the mapping of SQLite's errors
 * to lk_err.
 */
#ifndef LK_SPOOL_INTERNAL_H
#define LK_SPOOL_INTERNAL_H

#include <sqlite3.h>
#include <stdarg.h>
#include <time.h>

#include "latchkey/lk_spool.h"

/* The spool's SQLite application id ("LKSP") and schema version. */
#define LK_SPOOL_APPLICATION_ID 0x4c4b5350
#define LK_SPOOL_SCHEMA_VERSION 1

/* The default bounds per subscription (lk_spool_limits with 0). */
#define LK_SPOOL_DEFAULT_MAX_MESSAGES 1000000ull
#define LK_SPOOL_DEFAULT_MAX_BYTES (1ull << 30)

/* lk_spool_next (queue.c) reads at most LK_SPOOL_SCAN_ROWS + 4 * max
 * deliveries of the queue's front per call. */
#define LK_SPOOL_SCAN_ROWS 256

/* The statements a handle prepares once and keeps (sp->st[]). */
enum lk_spool_stmt {
    ST_BEGIN_READ,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_MSG_INSERT,
    ST_MSG_REFS,
    ST_MSG_DELETE_IF_UNUSED,
    ST_MSG_GET,
    ST_QUEUE_ENSURE,
    ST_QUEUE_GET,
    ST_QUEUE_ADD,
    ST_QUEUE_DROPPED,
    ST_QUEUE_REMOVE,
    ST_DELIVERY_INSERT,
    ST_DELIVERY_GET,
    ST_DELIVERY_DELETE,
    ST_DELIVERY_RETRY,
    ST_DELIVERY_SCAN,
    ST_OLDEST,
    ST_EXPIRED_LIST,
    ST_SUB_MESSAGES,
    ST_SUB_DELETE,
    ST_QUEUE_FORGET,
    ST_QUEUE_LIST,
    ST_COUNT
};

struct lk_spool {
    sqlite3 *db;
    unsigned flags;
    int busy_ms;
    struct timespec busy_start;
    sqlite3_stmt *st[ST_COUNT];
    char path[4096];
};

/* The cached statement k (prepared at its first use); NULL with *err and
 * why set when it cannot be prepared. */
sqlite3_stmt *lk_spool__st(lk_spool *sp, enum lk_spool_stmt k, lk_err *err, char *why,
                           size_t why_size);

/* The lk_err of an SQLite result code: busy/locked -> LK_ERR_REG_BUSY,
 * nomem -> LK_ERR_NOMEM, anything else LK_ERR_IO. */
lk_err lk_spool__map(int rc);

/* Records why a step failed (the operation, SQLite's message: never a
 * bound value) and maps it. */
lk_err lk_spool__fail(lk_spool *sp, int rc, const char *what, char *why, size_t why_size);

/* Begins a transaction: BEGIN IMMEDIATE when write, else BEGIN. A write on
 * a LK_SPOOL_READONLY handle is LK_ERR_STATE. */
lk_err lk_spool__begin(lk_spool *sp, int write, char *why, size_t why_size);
lk_err lk_spool__commit(lk_spool *sp, char *why, size_t why_size);
void lk_spool__rollback(lk_spool *sp);

/* Runs a statement that returns no row (and resets it). */
lk_err lk_spool__run(lk_spool *sp, sqlite3_stmt *s, const char *what, char *why,
                     size_t why_size);

/* printf into why (if given). */
void lk_spool__why(char *why, size_t why_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
