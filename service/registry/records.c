/*
 * records.c — releasing the records the registry hands out (the *_free
 * functions of lk_registry.h). In a file of their own: the storage backend
 * fills these records and frees them on its failures, and must not build
 * on the rules in registry.c (which build on it).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "latchkey/lk_util.h"

/* Free each of the n blocks p[0..n), then zero the record rec of size
 * bytes: every *_free below is this, with the record's own members. */
static void release(void *rec, size_t size, void *const *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(p[i]);
    memset(rec, 0, size);
}

#define RELEASE(rec, ...)                                                                     \
    release((rec), sizeof *(rec), (void *const[]){__VA_ARGS__},                               \
            sizeof((void *[]){__VA_ARGS__}) / sizeof(void *))

void lk_reg_registry_free(lk_reg_registry *r)
{
    if (r != NULL)
        RELEASE(r, r->project, r->location, r->id, r->event_notification_json,
                r->state_notification_json);
}

void lk_reg_cert_free(lk_reg_cert *c)
{
    if (c != NULL)
        RELEASE(c, c->pem, c->subject, c->issuer, c->key_type);
}

void lk_reg_signer_free(lk_reg_signer *s)
{
    if (s != NULL)
        RELEASE(s, s->label, s->pem, s->key_type);
}

void lk_reg_crl_free(lk_reg_crl *c)
{
    if (c != NULL)
        RELEASE(c, c->issuer, c->pem);
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
    lk_reg__creds_free(d->creds, d->ncreds);
    for (i = 0; i < d->nmetadata; i++) {
        free(d->metadata[i].key);
        free(d->metadata[i].value);
    }
    RELEASE(d, d->id, d->project, d->location, d->registry, d->metadata, d->last_error_status,
            d->last_accessed_gateway_id, d->presence_detail);
}

void lk_reg_config_free(lk_reg_config *c)
{
    if (c != NULL)
        RELEASE(c, c->data);
}

void lk_reg_state_entry_free(lk_reg_state_entry *s)
{
    if (s != NULL)
        RELEASE(s, s->data);
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
    if (c != NULL)
        RELEASE(c, c->device_id, c->project, c->location, c->registry, c->subfolder, c->data);
}

void lk_reg_backend_free(lk_reg_backend *b)
{
    if (b != NULL)
        RELEASE(b, b->name, b->project);
}

void lk_reg_sa_key_free(lk_reg_sa_key *k)
{
    if (k != NULL)
        RELEASE(k, k->key_id, k->email, k->project, k->name, k->public_pem);
}

/* The header value is a secret (a static credential for the endpoint). */
void lk_reg_subscription_free(lk_reg_subscription *s)
{
    if (s == NULL)
        return;
    if (s->auth_header_value != NULL)
        lk_wipe(s->auth_header_value, strlen(s->auth_header_value));
    RELEASE(s, s->project, s->name, s->topic, s->push_endpoint, s->auth_header_name,
            s->auth_header_value, s->oidc_email, s->oidc_audience, s->dead_letter_topic);
}
