/*
 * lk_reg_audit.h — the registry's people and its record of changes
 * (schema 8, docs/registry.md "Operators and the audit record",
 * docs/console.md "Sign-in and accounts", "Audit record").
 *
 * Operators are the people who sign in to latchkeyd's console: a name, one
 * project, one of the service accounts' roles (lk_reg_sa_role), and a
 * password kept only as an scrypt record (OpenSSL 3's EVP_KDF "SCRYPT",
 * N = 2^15, r = 8, p = 1, a 16-byte random salt, 32 bytes out), its
 * parameters stored with it so that they can be raised later: a record made
 * with older parameters still verifies.
 *
 * The audit record: every write transaction committed on a handle that has
 * an actor (lk_registry_set_actor) appends one row in that same transaction
 * — time, actor, via, action, resource, detail, outcome "ok" — so a change
 * and its record are never apart. A refused change writes nothing, no row
 * either (the registry's guarantee; the refusal is in the caller's log). A handle
 * without an actor (the broker plugin: presence, activity, states, JIT
 * registration) records nothing. The newest LK_REG_AUDIT_KEPT rows younger
 * than LK_REG_AUDIT_DAYS days are kept (pruned in the appending
 * transaction, every LK_REG_AUDIT_PRUNE_EVERY rows).
 */
#ifndef LK_REG_AUDIT_H
#define LK_REG_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- passwords ---- */

#define LK_PASSWORD_MIN 12u          /* characters (bytes) of a new password */
#define LK_PASSWORD_MAX 1024u        /* longer is refused (the KDF reads it all) */
#define LK_PASSWORD_LOG_N 15u        /* scrypt N = 2^15 for new records */
#define LK_PASSWORD_RECORD_MAX 128u  /* "scrypt$LN$R$P$SALT$HASH" with NUL */

/* A new password record for pw (len bytes, LK_PASSWORD_MIN..MAX, else
 * LK_ERR_ARG): "scrypt$15$8$1$<salt b64url>$<hash b64url>" into out
 * (at least LK_PASSWORD_RECORD_MAX bytes). LK_ERR_RNG, LK_ERR_CRYPTO.
 * out is "" on failure; the derived key is wiped. */
lk_err lk_password_hash(const char *pw, size_t len, char *out, size_t out_size);
/* 1 when pw is the password of record (compared in constant time), else 0
 * (also for a malformed record or a KDF failure). Runs the KDF with the
 * record's parameters (log2 N 10..20, r 1..32, p 1..16). */
int lk_password_verify(const char *record, const char *pw, size_t len);

/* ---- operators ---- */

#define LK_OPERATOR_NAME_MAX 32u     /* a lowercase letter, then [a-z0-9._-] */
/* "operator:" NAME: the principal and actor of an operator. */
#define LK_OPERATOR_ACTOR_PREFIX "operator:"

typedef struct lk_reg_operator {
    char *name, *project;
    lk_reg_sa_role role;
    int disabled;
    int64_t created;
    uint8_t stamp[32];               /* SHA-256 of the password record: changes with
                                        the password (sessions made before end) */
} lk_reg_operator;
/* Frees the members (not o) and zeroes them; NULL is a no-op. */
void lk_reg_operator_free(lk_reg_operator *o);

/* A new operator: name (see LK_OPERATOR_NAME_MAX), project (a project id),
 * role (not LK_ROLE_NONE), password pw of len bytes (hashed here; the
 * caller wipes its copy). LK_ERR_REG_INVALID, LK_ERR_ARG (password length),
 * LK_ERR_REG_EXISTS. */
lk_err lk_registry_operator_create(lk_registry *reg, const char *name, const char *project,
                                   lk_reg_sa_role role, const char *pw, size_t len, char *why,
                                   size_t why_size);
/* A new password. LK_ERR_REG_NOT_FOUND. */
lk_err lk_registry_operator_passwd(lk_registry *reg, const char *name, const char *pw,
                                   size_t len, char *why, size_t why_size);
/* Disable (1) or enable (0). LK_ERR_REG_NOT_FOUND. */
lk_err lk_registry_operator_set_disabled(lk_registry *reg, const char *name, int disabled,
                                         char *why, size_t why_size);
lk_err lk_registry_operator_delete(lk_registry *reg, const char *name, char *why,
                                   size_t why_size);
/* The operator (no transaction: a read-only handle may call it).
 * LK_ERR_REG_NOT_FOUND. *out zeroed on failure. */
lk_err lk_registry_operator_get(lk_registry *reg, const char *name, lk_reg_operator *out);
/* Each operator (project NULL = all), by project then name; the struct is
 * valid only during the call; cb returns 0 to go on. */
lk_err lk_registry_operator_list(lk_registry *reg, const char *project,
                                 int (*cb)(void *arg, const lk_reg_operator *o), void *arg,
                                 char *why, size_t why_size);
/* The one password check of sign-in: LK_OK with *out when name is an
 * enabled operator and pw its password; otherwise LK_ERR_REG_NOT_FOUND for
 * an unknown name, a wrong password and a disabled operator alike, with
 * why saying which (for the log; the caller answers the same for all).
 * An unknown name runs the KDF on a dummy record, so that it takes about
 * as long as a known one. */
lk_err lk_registry_operator_signin(lk_registry *reg, const char *name, const char *pw,
                                   size_t len, lk_reg_operator *out, char *why,
                                   size_t why_size);

/* ---- the audit record ---- */

#define LK_REG_AUDIT_KEPT 1000000    /* newest rows kept */
#define LK_REG_AUDIT_DAYS 400        /* and none older than this */
#define LK_REG_AUDIT_PRUNE_EVERY 256 /* rows between prunes */
#define LK_AUDIT_ACTOR_MAX 320u      /* bytes kept of each field (longer is cut) */
#define LK_AUDIT_ACTION_MAX 96u
#define LK_AUDIT_RESOURCE_MAX 400u
#define LK_AUDIT_DETAIL_MAX 200u

/* Who changes what through this handle from now on: actor
 * ("operator:NAME", "serviceAccount:EMAIL", "tool:USER@HOST"), via
 * "console", "api" or "tool"; actor NULL stops recording. Printable ASCII
 * is kept, anything else becomes '?'. LK_ERR_ARG for another via. */
lk_err lk_registry_set_actor(lk_registry *reg, const char *actor, const char *via);
/* What the next changes are: action ("devices.create"), resource
 * ("projects/P/locations/L/registries/R/devices/D"; its project is
 * recorded for lk_registry_audit_list's filter), detail (short, never a
 * secret; NULL = none). NULLs clear. Kept until set again. */
void lk_registry_set_action(lk_registry *reg, const char *action, const char *resource,
                            const char *detail);

typedef struct lk_reg_audit_record {
    int64_t id;                      /* increasing; a page token */
    int64_t time;                    /* seconds since 1970 */
    const char *actor, *via, *action, *resource, *detail, *outcome;
    const char *project;             /* "" when the resource names none */
} lk_reg_audit_record;

typedef struct lk_reg_audit_query {
    const char *project;             /* NULL = all */
    int64_t since;                   /* time >= since (0 = all) */
    int64_t cursor;                  /* newest first: id < cursor; oldest first: id > cursor;
                                        0 = from the start */
    unsigned limit;                  /* 0 = no limit */
    int oldest_first;
} lk_reg_audit_query;
/* The records q selects; the struct's strings are valid only during the
 * call; cb returns 0 to go on. */
lk_err lk_registry_audit_list(lk_registry *reg, const lk_reg_audit_query *q,
                              int (*cb)(void *arg, const lk_reg_audit_record *r), void *arg,
                              char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#endif
