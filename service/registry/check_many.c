/*
 * check_many.c — lk_registry_import_check_many: lk_registry_import_check of
 * a batch of specs on several threads. The handle stays one thread's: the
 * trust set is read once on the calling thread, the workers share it
 * read-only (each has its own lk_reg_checker, the only mutable state a
 * credential check uses), and the digests are remembered on the calling
 * thread afterwards.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include "facade.h"

struct many {
    const lk_reg_cas *cas;
    const lk_reg_device_spec *specs;
    size_t n;
    int64_t now;
    lk_err *errs;
    char **whys;
    pthread_mutex_t mu;
    size_t next;                /* the next spec to take (under mu) */
    int nomem;                  /* a checker or a reason could not be allocated */
};

#define MANY_STEP 16u           /* specs a worker takes at once */

static void check_one(struct many *m, lk_reg_checker *ck, size_t i)
{
    char why[512] = "";
    const lk_reg_device_spec *s = &m->specs[i];
    lk_err err = lk_reg__check_device_id(s->id, why, sizeof why);
    if (err == LK_OK)
        err = lk_reg__check_create_spec(s, why, sizeof why);
    if (err == LK_OK)
        err = lk_reg__check_spec_creds_ck(ck, m->now, m->cas, s, why, sizeof why);
    m->errs[i] = err;
    m->whys[i] = NULL;
    if (err != LK_OK && (m->whys[i] = strdup(why[0] ? why : lk_strerror(err))) == NULL) {
        pthread_mutex_lock(&m->mu);
        m->nomem = 1;
        pthread_mutex_unlock(&m->mu);
    }
}

static void *worker(void *arg)
{
    struct many *m = arg;
    lk_reg_checker *ck = NULL;
    if (lk_reg__checker_new(&ck) != LK_OK) {
        pthread_mutex_lock(&m->mu);
        m->nomem = 1;
        pthread_mutex_unlock(&m->mu);
        return NULL; /* the others (or the caller) do its share */
    }
    for (;;) {
        size_t at, end;
        pthread_mutex_lock(&m->mu);
        at = m->next;
        end = at + MANY_STEP < m->n ? at + MANY_STEP : m->n;
        m->next = end;
        pthread_mutex_unlock(&m->mu);
        if (at >= end)
            break;
        for (size_t i = at; i < end; i++)
            check_one(m, ck, i);
    }
    lk_reg__checker_free(ck);
    ERR_clear_error(); /* this thread's queue */
    return NULL;
}

lk_err lk_registry_import_check_many(lk_registry *reg, const lk_reg_name *name,
                                     const lk_reg_device_spec *specs, size_t n, unsigned threads,
                                     lk_err *errs, char **whys, char *why, size_t why_size)
{
    char stamp[LK_REG_STAMP_MAX];
    lk_reg_cas *cas = NULL;
    pthread_t tid[LK_REG_CHECK_THREADS_MAX];
    unsigned nt = 0, t;
    int64_t rid;
    struct many m;
    lk_err err;

    if (reg == NULL || name == NULL || (n > 0 && (specs == NULL || errs == NULL || whys == NULL)))
        return failf(why, why_size, LK_ERR_ARG, "a NULL argument");
    for (size_t i = 0; i < n; i++) {
        errs[i] = LK_OK;
        whys[i] = NULL;
    }
    if (reg->importing || reg->busy)
        return failf(why, why_size, LK_ERR_STATE, "an import is open on this handle");
    /* The trust set, as lk_registry_import_check reads it. */
    if ((err = lk_reg__enter_registry(reg, TX_READ, name, &rid, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->trust_stamp(reg->be, rid, stamp, sizeof stamp)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    if (err == LK_OK && (reg->checked == NULL || reg->checked->rid != rid ||
                         strcmp(reg->checked->stamp, stamp) != 0)) {
        if (reg->checked == NULL && (reg->checked = lk_reg__checked_new()) == NULL)
            err = failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        if (err == LK_OK)
            err = lk_reg__load_cas(reg, rid, &cas, why, why_size);
        if (err == LK_OK)
            lk_reg__checked_reset(reg->checked, rid, stamp, cas);
    }
    if ((err = lk_reg__leave(reg, err, TX_READ, why, why_size)) != LK_OK)
        return err;
    if (n == 0)
        return LK_OK;

    memset(&m, 0, sizeof m);
    m.cas = reg->checked->cas;
    m.specs = specs;
    m.n = n;
    m.now = lk_reg__now(reg);
    m.errs = errs;
    m.whys = whys;
    if (pthread_mutex_init(&m.mu, NULL) != 0)
        return failf(why, why_size, LK_ERR_NOMEM, "no mutex");
    /* The first spec here, on the handle's checker: OpenSSL fills the
     * shared CA objects' lazy caches before any worker reads them. */
    check_one(&m, reg->ck, 0);
    m.next = 1;
    if (threads == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = c > 0 ? (unsigned)c : 1;
    }
    if (threads > LK_REG_CHECK_THREADS_MAX)
        threads = LK_REG_CHECK_THREADS_MAX;
    if (n - 1 < (size_t)threads * MANY_STEP) /* not worth a thread each */
        threads = (unsigned)((n - 1 + MANY_STEP - 1) / MANY_STEP);
    for (t = 0; t < threads && threads > 1; t++)
        if (pthread_create(&tid[nt], NULL, worker, &m) == 0)
            nt++;
    if (nt == 0)
        worker(&m); /* one core, or no thread could start: this one */
    for (t = 0; t < nt; t++)
        pthread_join(tid[t], NULL);
    /* A worker without a checker left its share to the others; none left
     * means the caller's thread did it above. */
    if (m.next < n) {
        for (size_t i = m.next; i < n; i++)
            check_one(&m, reg->ck, i);
    }
    pthread_mutex_destroy(&m.mu);
    if (m.nomem) {
        for (size_t i = 0; i < n; i++) {
            free(whys[i]);
            whys[i] = NULL;
        }
        return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
    }
    /* Remember what passed, as lk_registry_import_check does. */
    for (size_t i = 0; i < n; i++) {
        uint8_t d[32];
        if (errs[i] == LK_ERR_NOMEM) {
            for (size_t j = 0; j < n; j++) {
                free(whys[j]);
                whys[j] = NULL;
            }
            return failf(why, why_size, LK_ERR_NOMEM, "out of memory");
        }
        if (errs[i] != LK_OK)
            continue;
        if ((err = lk_reg__spec_digest(reg->checked, &specs[i], d)) != LK_OK ||
            (err = lk_reg__checked_add(reg->checked, d)) != LK_OK) {
            for (size_t j = 0; j < n; j++) {
                free(whys[j]);
                whys[j] = NULL;
            }
            return failf(why, why_size, err, "the check could not be remembered: %s",
                         lk_strerror(err));
        }
    }
    return LK_OK;
}
