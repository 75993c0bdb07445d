/*
 * sqlite_provision.c — the SQLite backend (backend.h), schema 7:
 * manifest signers, CRLs, the trust stamp, just-in-time registration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite_internal.h"

lk_err lk_sq__signer_list(lk_reg_be *be, int64_t rid,
                          int (*cb)(void *arg, const lk_reg_signer *s), void *arg)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    unsigned i = 0;
    if ((err = lk_sq__bind1(be, S_SIGNER_LIST, rid, &s)) != LK_OK)
        return err;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_signer g;
        const void *fp = sqlite3_column_blob(s, 2);
        memset(&g, 0, sizeof g);
        g.index = i++;
        g.label = (char *)sqlite3_column_text(s, 0);
        g.pem = (char *)sqlite3_column_text(s, 1);
        if (g.label == NULL || g.pem == NULL || fp == NULL || sqlite3_column_bytes(s, 2) != 32) {
            rc = SQLITE_NOMEM;
            break;
        }
        memcpy(g.fingerprint, fp, 32);
        g.created = sqlite3_column_int64(s, 3);
        if (cb(arg, &g))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__signer_insert(lk_reg_be *be, int64_t rid, const lk_reg_signer *g)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_SIGNER_INS);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(lk_sq__bind_text(s, 2, g->label));
    BIND(lk_sq__bind_text(s, 3, g->pem));
    BIND(sqlite3_bind_blob(s, 4, g->fingerprint, 32, SQLITE_STATIC));
    BIND(sqlite3_bind_int64(s, 5, g->created));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__signer_delete(lk_reg_be *be, int64_t rid, unsigned index)
{
    return RUN_INTS(S_SIGNER_DEL, 1, rid, (int64_t)index);
}

lk_err lk_sq__crl_list(lk_reg_be *be, int64_t rid,
                       int (*cb)(void *arg, const lk_reg_crl *c, const uint8_t issuer_key[32],
                                 const char *issuer_chain),
                       void *arg)
{
    sqlite3_stmt *s;
    int rc;
    lk_err err;
    unsigned i = 0;
    if ((err = lk_sq__bind1(be, S_CRL_LIST, rid, &s)) != LK_OK)
        return err;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        lk_reg_crl c;
        const uint8_t *key = sqlite3_column_blob(s, 5);
        memset(&c, 0, sizeof c);
        c.index = i++;
        c.issuer = (char *)sqlite3_column_text(s, 0);
        c.this_update = sqlite3_column_int64(s, 1);
        c.next_update = sqlite3_column_int64(s, 2);
        c.nrevoked = (uint64_t)sqlite3_column_int64(s, 3);
        c.pem = (char *)sqlite3_column_text(s, 4);
        if (c.issuer == NULL || c.pem == NULL || key == NULL || sqlite3_column_bytes(s, 5) != 32) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (cb(arg, &c, key, (const char *)sqlite3_column_text(s, 6)))
            break;
    }
    return lk_sq__rows_end(be, s, rc);
}

lk_err lk_sq__crl_put(lk_reg_be *be, int64_t rid, const lk_reg_crl *c,
                      const uint8_t issuer_key[32], const char *issuer_chain)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_CRL_PUT);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(lk_sq__bind_text(s, 2, c->issuer));
    BIND(sqlite3_bind_blob(s, 3, issuer_key, 32, SQLITE_STATIC));
    BIND(sqlite3_bind_int64(s, 4, c->this_update));
    BIND(sqlite3_bind_int64(s, 5, c->next_update));
    BIND(sqlite3_bind_int64(s, 6, (int64_t)c->nrevoked));
    BIND(lk_sq__bind_text(s, 7, c->pem));
    BIND(lk_sq__bind_text(s, 8, issuer_chain));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__crl_delete(lk_reg_be *be, int64_t rid, unsigned index)
{
    return RUN_INTS(S_CRL_DEL, 1, rid, (int64_t)index);
}

lk_err lk_sq__trust_stamp(lk_reg_be *be, int64_t rid, char *out, size_t size)
{
    sqlite3_stmt *s;
    const char *t;
    lk_err err;
    out[0] = '\0';
    if ((err = lk_sq__row1(be, S_TRUST_STAMP, rid, &s)) != LK_OK)
        return err;
    t = (const char *)sqlite3_column_text(s, 0);
    if (t == NULL || strlen(t) >= size)
        err = LK_ERR_REG_STORAGE; /* bounded by the limits on certificates and CRLs */
    else
        memcpy(out, t, strlen(t) + 1);
    sqlite3_reset(s);
    return err;
}

lk_err lk_sq__jit_get(lk_reg_be *be, int64_t rid, lk_reg_jit *out)
{
    sqlite3_stmt *s;
    lk_err err;
    memset(out, 0, sizeof *out);
    if ((err = lk_sq__row1(be, S_JIT_GET, rid, &s)) != LK_OK)
        return err;
    out->enabled = sqlite3_column_int(s, 0) != 0;
    out->max_devices = (uint64_t)sqlite3_column_int64(s, 1);
    out->registered = (uint64_t)sqlite3_column_int64(s, 2);
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__jit_set(lk_reg_be *be, int64_t rid, int enabled, uint64_t max_devices)
{
    return RUN_INTS(S_JIT_SET, 1, rid, (int64_t)(enabled != 0), (int64_t)max_devices);
}

lk_err lk_sq__jit_count(lk_reg_be *be, int64_t rid)
{
    return RUN_INTS(S_JIT_COUNT, 1, rid);
}

lk_err lk_sq__jit_cert_find(lk_reg_be *be, int64_t rid, const uint8_t sha[32], char *id,
                            size_t id_size)
{
    sqlite3_stmt *s;
    const char *t;
    int rc = SQLITE_OK;
    lk_err err;
    PREP(s, S_JIT_CERT_FIND);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_blob(s, 2, sha, 32, SQLITE_STATIC));
    if ((err = lk_sq__step_row(be, s, rc)) != LK_OK)
        return err;
    t = (const char *)sqlite3_column_text(s, 0);
    snprintf(id, id_size, "%s", t != NULL ? t : "");
    sqlite3_reset(s);
    return LK_OK;
}

lk_err lk_sq__jit_cert_insert(lk_reg_be *be, int64_t rid, const uint8_t sha[32], const char *id,
                              uint64_t num_id, int64_t t)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    PREP(s, S_JIT_CERT_INS);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_blob(s, 2, sha, 32, SQLITE_STATIC));
    BIND(lk_sq__bind_text(s, 3, id));
    BIND(sqlite3_bind_int64(s, 4, (int64_t)num_id));
    BIND(sqlite3_bind_int64(s, 5, t));
    return lk_sq__run_bound(be, s, rc);
}

lk_err lk_sq__devices_move(lk_reg_be *be, int64_t from, int64_t to, lk_reg_change_kind kind,
                           int64_t t)
{
    lk_err err = RUN_INTS(S_STAGE_FEED, 0, from, (int64_t)kind, t);
    return err != LK_OK ? err : RUN_INTS(S_STAGE_MOVE, 0, from, to);
}

lk_err lk_sq__stage_stale(lk_reg_be *be, int64_t rid, int64_t before, int64_t *srids, size_t max,
                          size_t *n)
{
    sqlite3_stmt *s;
    int rc = SQLITE_OK;
    *n = 0;
    PREP(s, S_STAGE_STALE);
    BIND(sqlite3_bind_int64(s, 1, rid));
    BIND(sqlite3_bind_int64(s, 2, before));
    if (rc != SQLITE_OK)
        return lk_sq__rows_end(be, s, rc);
    while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
        srids[(*n)++] = sqlite3_column_int64(s, 0);
    return lk_sq__rows_end(be, s, rc == SQLITE_ROW ? SQLITE_DONE : rc);
}

lk_err lk_sq__device_set_jit(lk_reg_be *be, uint64_t num_id)
{
    return RUN_INTS(S_DEV_SET_JIT, 1, (int64_t)num_id);
}
