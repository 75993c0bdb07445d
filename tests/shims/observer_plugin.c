/*
 * observer_plugin.c — a Mosquitto plugin for the tests only, never built
 * into the product or installed: it lets one client, username "observer"
 * with the password given as plugin_opt_observer_password, read and
 * subscribe to everything (including what latchkey's plugin would never let
 * anyone see: device topics, retained messages), and defers every other
 * decision to the next plugin. Loaded before latchkey's plugin, it shows
 * what the broker really holds, e.g. that no retained message exists.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

#define EXPORT __attribute__((visibility("default")))

static mosquitto_plugin_id_t *plugin_id;
static char *password;

EXPORT int mosquitto_plugin_version(int n, const int *versions);
EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **userdata,
                                 struct mosquitto_opt *opts, int nopts);
EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int nopts);

static int is_observer(struct mosquitto *client)
{
    const char *u = mosquitto_client_username(client);
    return u && !strcmp(u, "observer");
}

static int on_auth(int event, void *data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ed = data;
    (void)event;
    (void)userdata;
    if (!ed->username || strcmp(ed->username, "observer"))
        return MOSQ_ERR_PLUGIN_DEFER;
    return password && ed->password && !strcmp(ed->password, password) ? MOSQ_ERR_SUCCESS
                                                                        : MOSQ_ERR_AUTH;
}

static int on_acl(int event, void *data, void *userdata)
{
    struct mosquitto_evt_acl_check *ed = data;
    (void)event;
    (void)userdata;
    if (!is_observer(ed->client))
        return MOSQ_ERR_PLUGIN_DEFER;
    return ed->access == MOSQ_ACL_WRITE ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int n, const int *versions)
{
    int i;
    for (i = 0; i < n; i++)
        if (versions[i] == 5)
            return 5;
    return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **userdata, struct mosquitto_opt *opts,
                          int nopts)
{
    int i;
    (void)userdata;
    plugin_id = id;
    for (i = 0; i < nopts; i++)
        if (opts[i].key && opts[i].value && !strcmp(opts[i].key, "observer_password"))
            password = strdup(opts[i].value);
    if (!password)
        return MOSQ_ERR_INVAL;
    if (mosquitto_callback_register(id, MOSQ_EVT_BASIC_AUTH, on_auth, NULL, NULL)
        || mosquitto_callback_register(id, MOSQ_EVT_ACL_CHECK, on_acl, NULL, NULL))
        return MOSQ_ERR_UNKNOWN;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int nopts)
{
    (void)userdata;
    (void)opts;
    (void)nopts;
    mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_auth, NULL);
    mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl, NULL);
    free(password);
    password = NULL;
    return MOSQ_ERR_SUCCESS;
}
