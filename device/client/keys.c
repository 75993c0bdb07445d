/*
 * keys.c — the device client's key: the certificate chain its tokens may
 * carry (x5c, for just-in-time registration) and a switch to a next key
 * (lk_dev_set_next_key, docs/device.md "Rotating keys"). The switch is
 * decided by the server's CONNACK: accepted, the next key becomes the key;
 * refused, the client goes back to the key it had, at once.
 */
#include "client_internal.h"

/* The claims are those of client_internal.h's TOKEN_SIZE. */
lk_err lk_dev__keys_init(lk_dev *d, const lk_dev_config *c, char *why, size_t size)
{
    size_t chars = 0;
    unsigned i;

    if (c->x5c_count > LK_JWT_X5C_MAX) {
        snprintf(why, size, "at most %u certificates may go in a token's x5c, not %u",
                 (unsigned)LK_JWT_X5C_MAX, c->x5c_count);
        return LK_ERR_ARG;
    }
    if (c->x5c_count > 0 && c->x5c == NULL) {
        snprintf(why, size, "x5c_count is %u but x5c is NULL", c->x5c_count);
        return LK_ERR_ARG;
    }
    for (i = 0; i < c->x5c_count; i++) {
        size_t n = c->x5c[i] != NULL ? strlen(c->x5c[i]) : 0;
        if (n == 0 || n > LK_DEV_X5C_CHARS_MAX) {
            snprintf(why, size, "x5c certificate %u is empty or longer than %u characters", i + 1,
                     (unsigned)LK_DEV_X5C_CHARS_MAX);
            return LK_ERR_ARG;
        }
        chars += n;
    }
    if (c->x5c_count > 0) {
        d->x5c = calloc(c->x5c_count, sizeof *d->x5c);
        d->x5c_len = calloc(c->x5c_count, sizeof *d->x5c_len);
        if (d->x5c == NULL || d->x5c_len == NULL)
            return LK_ERR_NOMEM;
        for (i = 0; i < c->x5c_count; i++) {
            d->x5c[i] = strdup(c->x5c[i]);
            if (d->x5c[i] == NULL)
                return LK_ERR_NOMEM;
            d->x5c_len[i] = strlen(d->x5c[i]);
            d->nx5c = i + 1;
        }
    }
    d->token_size = c->x5c_count > 0 ? LK_JWT_X5C_TOKEN_SIZE(128u, LK_SIG_MAX_BYTES, chars)
                                     : TOKEN_SIZE;
    d->token = calloc(1, d->token_size);
    if (d->token == NULL)
        return LK_ERR_NOMEM;
    if (d->nx5c > 0) {
        /* The core's own check of the chain, now rather than at the first
         * connection: the header alone, into the token buffer. */
        lk_jwt jwt;
        lk_err err;
        lk_jwt_init_x5c(&jwt, c->alg, (const char *const *)d->x5c, d->x5c_len, d->nx5c, d->token,
                        d->token_size);
        err = jwt.err;
        lk_wipe(d->token, d->token_size);
        lk_wipe(&jwt, sizeof jwt);
        if (err != LK_OK) {
            snprintf(why, size, "the x5c certificates are not padded standard base64 of DER (%s)",
                     lk_errname(err));
            return LK_ERR_ARG;
        }
    }
    return LK_OK;
}

static void forget_next(lk_dev *d)
{
    if (d->next_key != NULL) {
        lk_wipe(d->next_key, strlen(d->next_key));
        free(d->next_key);
    }
    d->next_key = NULL;
    d->next_se = NULL;
}

static void drop_chain(lk_dev *d)
{
    unsigned i;
    for (i = 0; i < d->nx5c; i++)
        free(d->x5c[i]);
    free(d->x5c);
    free(d->x5c_len);
    d->x5c = NULL;
    d->x5c_len = NULL;
    d->nx5c = 0;
}

void lk_dev__keys_free(lk_dev *d)
{
    forget_next(d);
    if (d->key_own != NULL) {
        lk_wipe(d->key_own, strlen(d->key_own));
        free(d->key_own);
        d->key_own = NULL;
    }
    drop_chain(d);
    if (d->token != NULL) {
        lk_wipe(d->token, d->token_size);
        free(d->token);
        d->token = NULL;
    }
}

lk_err lk_dev__keys_sign(lk_dev *d, int64_t iat, int64_t exp)
{
    d->token_next = d->next_key != NULL;
    if (d->token_next) {
        lk_err err = lk_jwt_iotcore(d->next_se, d->next_key, d->next_alg, d->project,
                                    strlen(d->project), iat, exp, d->token, d->token_size,
                                    &d->token_len);
        if (err == LK_OK)
            return LK_OK;
        /* A next key that cannot sign (gone, locked) must not stop a
         * device whose key still works: the switch ends here. */
        forget_next(d);
        d->token_next = 0;
        d->stats.key_fallbacks++;
        lk_dev__emit(d, LK_DEV_EV_KEY, err, 0, 0, 0,
                     "the next key cannot sign (%s): back to the key in use", lk_strerror(err));
    }
    return lk_jwt_iotcore_x5c(d->se, d->key, d->alg, d->project, strlen(d->project), iat, exp,
                              (const char *const *)d->x5c, d->x5c_len, d->nx5c, d->token,
                              d->token_size, &d->token_len);
}

int lk_dev__keys_reusable(const lk_dev *d)
{
    return d->next_key == NULL || d->token_next;
}

void lk_dev__keys_accepted(lk_dev *d)
{
    if (!d->token_next || d->next_key == NULL)
        return;
    if (d->key_own != NULL) {
        lk_wipe(d->key_own, strlen(d->key_own));
        free(d->key_own);
    }
    d->key_own = d->next_key;
    d->key = d->key_own;
    d->se = d->next_se;
    d->alg = d->next_alg;
    d->next_key = NULL;
    d->next_se = NULL;
    d->token_next = 0;
    /* The chain certified the old key; the new one has none. */
    drop_chain(d);
    d->stats.key_switches++;
    lk_dev__emit(d, LK_DEV_EV_KEY, LK_OK, 1, 0, 0,
                 "the server accepted the next key (%s): it is now the key", lk_alg_name(d->alg));
}

int lk_dev__keys_refused(lk_dev *d, int connack)
{
    if (!d->token_next || d->next_key == NULL)
        return 0;
    forget_next(d);
    d->token_next = 0;
    d->stats.key_fallbacks++;
    lk_dev__emit(d, LK_DEV_EV_KEY, LK_ERR_REFUSED, 0, 0, 0,
                 "the server refused the next key (CONNACK %d: %s): back to the key in use, "
                 "connecting again now", connack, mosquitto_connack_string(connack));
    return 1;
}

lk_err lk_dev_set_next_key(lk_dev *d, const lk_se *se, const char *key, lk_alg alg)
{
    char *copy;
    size_t n;

    if (d == NULL || key == NULL)
        return LK_ERR_ARG;
    n = strlen(key);
    if (n == 0 || n > LK_KEY_REF_MAX || (alg != LK_ALG_ES256 && alg != LK_ALG_RS256))
        return LK_ERR_ARG;
    if (se == NULL)
        se = d->se;
    if (se->ops == NULL)
        return LK_ERR_ARG;
    if (d->state == LK_DEV_STOPPING || d->state == LK_DEV_STOPPED || d->state == LK_DEV_FAILED)
        return LK_ERR_STATE;
    copy = strdup(key);
    if (copy == NULL)
        return LK_ERR_NOMEM;
    forget_next(d);
    d->next_key = copy;
    d->next_se = se;
    d->next_alg = alg;
    /* A CONNECT signed with the replaced next key may be in flight: its
     * verdict is about that key, not this one, so it must neither switch to
     * this key (never shown to the server) nor drop it. */
    d->token_next = 0;
    /* Connected: a refresh now (the step drains, reconnects and signs with
     * the next key, since the token in hand is not reusable). */
    if (d->state == LK_DEV_CONNECTED)
        d->refresh_ms = lk_dev_now_ms();
    return LK_OK;
}

int lk_dev_switching_key(const lk_dev *d)
{
    return d != NULL && d->next_key != NULL;
}
