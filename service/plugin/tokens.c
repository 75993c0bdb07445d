/*
 * tokens.c — the verified-token cache kept across broker restarts
 * (plugin_opt_token_cache_file; lk_vcache_save and lk_vcache_load).
 *
 * After a restart the whole fleet reconnects at once; with the cache
 * restored, a device that presents the token verified before the restart
 * costs no signature check. Nothing a restored entry allows is wider than
 * what the same entry allowed in memory: each connect reads the device's
 * standing and credentials from the registry as they are now, and the
 * entry's key covers the credentials (lk_verify.h). What the in-memory
 * cache learns from the change feed — a registry-wide change empties it —
 * is replayed here from the feed position saved with the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "plugin.h"

struct tokens__scan {
    int wide;   /* a change that empties the cache in memory too */
};

static int tokens__change(void *arg, const lk_reg_change *c)
{
    struct tokens__scan *s = arg;
    if (!change__wide(c->kind))
        return 0; /* read again at each connect, or not the cache's business */
    s->wide = 1;
    return 1; /* enough: stop reading */
}

void tokens__load(void)
{
    const char *path = plg.opt.token_cache_file;
    struct tokens__scan scan = {0};
    uint64_t tag = 0;
    size_t n = 0;
    int64_t pos;
    lk_err err;

    plg.cache_saved_inserts = 0;
    plg.next_cache_save = clock__now() + plg.opt.token_cache_save;
    if (!plg.vcache || !path)
        return;
    err = lk_vcache_load(plg.vcache, path, clock__now(), &tag, &n);
    if (err == LK_ERR_STORE_MISSING) {
        plog__msg(PLOG_INFO, "token-cache", NULL, "no saved cache at %s yet: every device's first "
                  "token is checked", path);
        return;
    }
    if (err != LK_OK) {
        plog__msg(PLOG_ERROR, "token-cache", NULL, "%s not loaded (%s: %s); starting empty", path,
                  lk_errname(err), err == LK_ERR_IO ? strerror(errno) : lk_strerror(err));
        return;
    }
    /* The registry the file was saved against, or a later state of it: a
     * feed position beyond the registry's own newest means another file
     * (e.g. a restored backup). */
    pos = (int64_t)tag;
    if (tag > (uint64_t)INT64_MAX || pos > plg.since) {
        lk_vcache_clear(plg.vcache);
        tokens__cleared();
        plog__msg(PLOG_INFO, "token-cache", NULL, "%s was saved against a newer registry (change %"
                  PRIu64 ", the registry's newest is %" PRId64 "): not used", path, tag, plg.since);
        return;
    }
    err = pos < plg.since ? lk_registry_changes(plg.reg, &pos, tokens__change, &scan) : LK_OK;
    if (err != LK_OK || scan.wide) {
        lk_vcache_clear(plg.vcache);
        tokens__cleared();
        plog__msg(PLOG_INFO, "token-cache", NULL, "%s not used: %s", path,
                  err != LK_OK ? "the registry's change feed could not be read"
                               : "a registry changed since it was saved");
        return;
    }
    plog__msg(PLOG_INFO, "token-cache", NULL, "%zu verified tokens restored from %s", n, path);
}

void tokens__cleared(void)
{
    plg.cache_saved_inserts = UINT64_MAX;
}

void tokens__save(int64_t now, int force)
{
    lk_vcache_stats st;
    lk_err err;

    if (!plg.vcache || !plg.opt.token_cache_file || (!force && now < plg.next_cache_save))
        return;
    plg.next_cache_save = now + plg.opt.token_cache_save;
    lk_vcache_get_stats(plg.vcache, &st);
    if (st.inserts == plg.cache_saved_inserts)
        return; /* nothing new: the file already says it */
    /* On the broker's thread: a write of the entries in use, 66 bytes each
     * (6.6 MB for 100,000 devices), not fsynced (lk_vcache_save). */
    err = lk_vcache_save(plg.vcache, plg.opt.token_cache_file, (uint64_t)plg.since);
    if (err != LK_OK) {
        plog__msg(PLOG_ERROR, "token-cache", NULL, "could not save to %s (%s: %s); retrying in %" PRId64
                  " s", plg.opt.token_cache_file, lk_errname(err),
                  err == LK_ERR_IO ? strerror(errno) : lk_strerror(err), plg.opt.token_cache_save);
        return;
    }
    plg.cache_saved_inserts = st.inserts;
    if (force)
        plog__msg(PLOG_INFO, "token-cache", NULL, "%zu verified tokens saved to %s", st.used,
                  plg.opt.token_cache_file);
}
