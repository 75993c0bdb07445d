/*
 * records.c — releasing the records the registry hands out (the *_free
 * functions of lk_registry.h). In a file of their own: the storage backend
 * fills these records and frees them on its failures, and must not build
 * on the rules in registry.c (which build on it).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void lk_reg_registry_free(lk_reg_registry *r)
{
    if (r == NULL)
        return;
    free(r->project);
    free(r->location);
    free(r->id);
    free(r->event_notification_json);
    free(r->state_notification_json);
    memset(r, 0, sizeof *r);
}

void lk_reg_cert_free(lk_reg_cert *c)
{
    if (c == NULL)
        return;
    free(c->pem);
    free(c->subject);
    free(c->issuer);
    free(c->key_type);
    memset(c, 0, sizeof *c);
}

void lk_reg__creds_free(lk_reg_credential *c, unsigned n)
{
    unsigned i;
    for (i = 0; i < n; i++) {
        free(c[i].pem);
        c[i].pem = NULL;
    }
}

void lk_reg_device_free(lk_reg_device *d)
{
    unsigned i;
    if (d == NULL)
        return;
    free(d->id);
    free(d->project);
    free(d->location);
    free(d->registry);
    lk_reg__creds_free(d->creds, d->ncreds);
    for (i = 0; i < d->nmetadata; i++) {
        free(d->metadata[i].key);
        free(d->metadata[i].value);
    }
    free(d->metadata);
    free(d->last_error_status);
    free(d->last_accessed_gateway_id);
    memset(d, 0, sizeof *d);
}

void lk_reg_config_free(lk_reg_config *c)
{
    if (c == NULL)
        return;
    free(c->data);
    memset(c, 0, sizeof *c);
}

void lk_reg_state_entry_free(lk_reg_state_entry *s)
{
    if (s == NULL)
        return;
    free(s->data);
    memset(s, 0, sizeof *s);
}

void lk_reg_auth_free(lk_reg_auth *a)
{
    if (a == NULL)
        return;
    lk_reg__creds_free(a->creds, a->ncreds);
    memset(a, 0, sizeof *a);
}

void lk_reg_command_free(lk_reg_command *c)
{
    if (c == NULL)
        return;
    free(c->device_id);
    free(c->project);
    free(c->location);
    free(c->registry);
    free(c->subfolder);
    free(c->data);
    memset(c, 0, sizeof *c);
}

void lk_reg_backend_free(lk_reg_backend *b)
{
    if (b == NULL)
        return;
    free(b->name);
    free(b->project);
    memset(b, 0, sizeof *b);
}
