/*
 * backends.c — what the plugin knows of backend applications when they are
 * not connected (docs/plugin.md, "Backends"): whether any is registered
 * (presence messages are made only then) and each one's project, for the
 * access checks of offline persistent sessions.
 *
 * A backend with a persistent session (clean session off, or MQTT 5 session
 * expiry) keeps its subscriptions while it is away, and Mosquitto queues
 * what matches them — after asking the access check, for a client the
 * plugin has no connection record of (also after a broker restart, when
 * the session comes back from persistence with its username). A deferred
 * answer is a denial, so without this the queue stayed empty. Cached, and
 * dropped whenever the change feed reports a backend change.
 */
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_util.h"
#include "plugin.h"

#define CACHED_MAX 256

struct plg_backend {
    char *name;
    char project[LK_PROJECT_MAX + 1]; /* "" = no such backend */
};

static struct plg_backend cached[CACHED_MAX];
static size_t ncached;
static int registered = -1;       /* backends in the registry; -1 = unknown */

void backends__forget(void)
{
    size_t i;
    for (i = 0; i < ncached; i++)
        free(cached[i].name);
    ncached = 0;
    registered = -1;
}

static int backends__count_cb(void *arg, const lk_reg_backend *b)
{
    (void)b;
    (*(int *)arg)++;
    return 0;
}

int backends__any(void)
{
    int n = 0;
    char why[200];

    if (registered < 0) {
        if (lk_registry_backend_list(plg.reg, NULL, backends__count_cb, &n, why, sizeof why))
            return 1; /* unknown: make presence messages rather than lose them */
        registered = n;
    }
    return registered > 0;
}

int backends__project(const char *name, char project[LK_PROJECT_MAX + 1])
{
    uint8_t h[32];
    size_t i;
    lk_err err;

    for (i = 0; i < ncached; i++)
        if (!strcmp(cached[i].name, name)) {
            memcpy(project, cached[i].project, LK_PROJECT_MAX + 1);
            return project[0] ? 0 : -1;
        }
    err = lk_registry_backend_lookup(plg.reg, name, project, h);
    lk_wipe(h, sizeof h);
    if (err && err != LK_ERR_REG_NOT_FOUND)
        return -1; /* not cached: the next message asks again */
    if (err)
        project[0] = '\0';
    if (ncached == CACHED_MAX)
        backends__forget();
    if ((cached[ncached].name = strdup(name)) != NULL)
        memcpy(cached[ncached++].project, project, LK_PROJECT_MAX + 1);
    return project[0] ? 0 : -1;
}

int backends__id_ok(const char *name, const char *id)
{
    size_t n = strlen(name);
    return id && !strncmp(id, name, n) && (id[n] == '\0' || id[n] == '/');
}
