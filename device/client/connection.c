/*
 * connection.c — one connection of the device client: the token (reused or
 * signed), a fresh libmosquitto object and its callbacks, the backoff
 * between attempts, and the verdict when it ends.
 */
#include "client_internal.h"

int64_t lk_dev_backoff_ms(unsigned failures, unsigned max_s, unsigned jitter_ms)
{
    int64_t s = max_s;
    if (failures < 31 && ((int64_t)1 << failures) < s)
        s = (int64_t)1 << failures;
    return s * 1000 + (jitter_ms % 1000u);
}

static unsigned jitter(void)
{
    uint16_t r = 0;
    /* Jitter only spreads reconnects; a failing DRBG must not stop the
     * client, so a zero draw is acceptable. */
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = 0;
    return r % 1000u;
}

/* ------------------------------------------------ libmosquitto callbacks */

static void cb_connect(struct mosquitto *mosq, void *obj, int rc)
{
    lk_dev *d = obj;
    (void)mosq;
    d->connack = rc;
    if (rc != 0)
        d->ended = 1;
}

static void cb_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    lk_dev *d = obj;
    (void)mosq;
    d->ended = 1;
    if (d->lost_rc == 0) {
        d->lost_rc = rc;
        d->lost_errno = rc == MOSQ_ERR_ERRNO ? errno : 0;
    }
}

static void cb_publish(struct mosquitto *mosq, void *obj, int mid)
{
    lk_dev *d = obj;
    struct msg *m, *prev = NULL;
    (void)mosq;
    /* PUBACKs come in order, so this almost always stops at the head. */
    for (m = d->head; m != NULL; prev = m, m = m->next) {
        struct gw_dev *owner;
        int kind;
        if (m->mid != mid)
            continue;
        lk_dev__unlink(d, m, prev);
        owner = m->owner;
        kind = m->kind;
        if (owner != NULL) {
            lk_dev__gw_acked(d, m);
        } else if (m->is_state) {
            d->state_inflight = 0;
            d->state_ready_ms = lk_dev_now_ms() + STATE_GAP_MS;
        }
        if (kind == MSG_DATA) {
            d->stats.delivered++;
            d->ev_device = owner != NULL ? owner->id : NULL;
            lk_dev__emit(d, LK_DEV_EV_DELIVERED, LK_OK, 0, 0, m->id, "message %llu delivered",
                         (unsigned long long)m->id);
            d->ev_device = NULL;
        }
        lk_dev__msg_free(m);
        if (kind == MSG_DETACH)
            lk_dev__gw_detached(d, owner);
        return;
    }
    (void)lk_dev__gw_puback(d, mid); /* a gateway's attach */
}

static void cb_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted)
{
    lk_dev *d = obj;
    int i;
    (void)mosq;
    if (lk_dev__gw_suback(d, mid, n, granted))
        return; /* an attached device's subscriptions */
    for (i = 0; i < n; i++) {
        if (granted[i] > 1) {
            lk_dev__emit(d, LK_DEV_EV_WARNING, LK_ERR_REFUSED, granted[i], 0, 0,
                         "the server refused a subscription (SUBACK %d)", granted[i]);
            return;
        }
    }
    lk_dev__emit(d, LK_DEV_EV_SUBSCRIBED, LK_OK, 0, 0, 0, "subscribed to config and commands");
}

/*
 * A connection about to close (token refresh, stop) first withdraws its
 * commands subscription: the broker then answers sendCommandToDevice with
 * FAILED_PRECONDITION instead of handing a command to a connection that
 * closes before reading it (the API would have said "delivered": the broker
 * cannot see PUBACKs, docs/plugin.md). Twice: Mosquitto sends a plugin's
 * message at the start of its next loop, so a command handed over just
 * before the first UNSUBSCRIBE was read may follow its UNSUBACK; it cannot
 * follow the second's, which the broker reads in a later loop.
 */
void lk_dev__quiet_commands(lk_dev *d)
{
    int mid = 0;

    if (d->mosq == NULL || d->connack != 0 || d->unsub_mid != 0)
        return;
    if (mosquitto_unsubscribe(d->mosq, &mid, d->topic_commands) == MOSQ_ERR_SUCCESS && mid > 0)
        d->unsub_mid = mid;
    else
        d->unsub_mid = -1;
}

int lk_dev__quieting(const lk_dev *d)
{
    return d->mosq != NULL && d->connack == 0 && d->unsub_mid > 0;
}

static void cb_unsubscribe(struct mosquitto *mosq, void *obj, int mid)
{
    lk_dev *d = obj;
    int next = 0;
    (void)mosq;
    if (d->unsub_mid <= 0 || mid != d->unsub_mid)
        return;
    if (++d->unsub_round >= 2 ||
        mosquitto_unsubscribe(d->mosq, &next, d->topic_commands) != MOSQ_ERR_SUCCESS || next <= 0)
        d->unsub_mid = -1;
    else
        d->unsub_mid = next;
}

static void cb_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    lk_dev *d = obj;
    const char *sub = NULL;
    lk_topic kind;
    size_t len;
    unsigned max;
    (void)mosq;
    if (lk_dev__gw_message(d, msg))
        return; /* an attached device's, or the errors topic */
    kind = msg->topic == NULL ? LK_TOPIC_NONE
                              : lk_device_topic_parse(d->device, msg->topic, strlen(msg->topic), &sub);
    if (kind == LK_TOPIC_NONE) {
        lk_dev__emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0, "ignored a message on a topic not ours");
        return;
    }
    if (kind != LK_TOPIC_CONFIG && kind != LK_TOPIC_COMMANDS) {
        lk_dev__emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0, "ignored a message on an unexpected topic");
        return;
    }
    len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    max = kind == LK_TOPIC_CONFIG ? LK_CONFIG_MAX : LK_COMMAND_MAX;
    if (len > max) {
        lk_dev__emit(d, LK_DEV_EV_WARNING, LK_ERR_TOO_LARGE, 0, 0, 0,
                     "ignored a %s of %zu bytes (the limit is %u)",
                     kind == LK_TOPIC_CONFIG ? "config" : "command", len, max);
        return;
    }
    d->in_callback++;
    if (kind == LK_TOPIC_CONFIG) {
        d->stats.configs++;
        if (d->on_config)
            d->on_config(d->user, msg->payload, len);
    } else {
        d->stats.commands++;
        if (d->on_command)
            d->on_command(d->user, sub != NULL ? sub : "", msg->payload, len);
    }
    d->in_callback--;
}

/* ------------------------------------------------------------ connecting */

static void drop_token(lk_dev *d)
{
    lk_wipe(d->token, d->token_size);
    d->token_len = 0;
    d->token_exp = 0;
    d->token_mono = 0;
    d->token_fresh = 0;
}

/* A token with more than the refresh margin left is reused (the server's
 * verified-token cache then answers); otherwise a new one is signed. */
static lk_err ensure_token(lk_dev *d, int64_t now)
{
    int64_t iat, left_ms;
    lk_err err;
    char until[32];

    d->token_fresh = 0;
    if (d->token_len > 0 && lk_dev__keys_reusable(d)) {
        left_ms = d->token_mono + (int64_t)d->lifetime_s * 1000 - now;
        if (left_ms > (int64_t)d->margin_s * 1000)
            return LK_OK;
    }
    drop_token(d);
    iat = (int64_t)time(NULL);
    if (iat < 1600000000)
        lk_dev__emit(d, LK_DEV_EV_WARNING, LK_OK, 0, 0, 0,
                     "the system clock says %lld, before 2020: the server will refuse tokens until "
                     "the clock is set", (long long)iat);
    err = lk_dev__keys_sign(d, iat, iat + d->lifetime_s);
    if (err != LK_OK) {
        drop_token(d);
        return err;
    }
    d->token_exp = iat + d->lifetime_s;
    d->token_mono = now;
    d->token_fresh = 1;
    d->stats.tokens++;
    lk_time_rfc3339(d->token_exp, until, sizeof until);
    lk_dev__emit(d, LK_DEV_EV_TOKEN, LK_OK, 0, 0, 0, "signed a new %s token%s, valid until %s",
                 lk_alg_name(d->token_next ? d->next_alg : d->alg),
                 d->token_next ? " with the next key" : "", until);
    return LK_OK;
}

void lk_dev__destroy_connection(lk_dev *d)
{
    if (d->mosq != NULL) {
        mosquitto_destroy(d->mosq);
        d->mosq = NULL;
    }
    d->ended = 0;
    d->lost_rc = 0;
    d->lost_errno = 0;
    d->verify_err = X509_V_OK;
    d->connack = -1;
    d->connected_ms = 0;
    d->unsub_mid = 0;
    d->unsub_round = 0;
    lk_dev__queue_reset_sent(d);
}

static void schedule_retry(lk_dev *d, int64_t now, lk_err why)
{
    int64_t delay;
    d->failures++;
    if (d->max_attempts != 0 && d->failures >= d->max_attempts) {
        char last[DETAIL_MAX];
        snprintf(last, sizeof last, "%s", d->fail_detail[0] ? d->fail_detail : lk_strerror(why));
        lk_dev__fail(d, why, "gave up after %u failed attempts in a row (last: %s)", d->failures, last);
        return;
    }
    delay = lk_dev_backoff_ms(d->failures - 1, d->backoff_max_s, jitter());
    d->retry_ms = now + delay;
    d->state = LK_DEV_BACKOFF;
    lk_dev__emit(d, LK_DEV_EV_BACKOFF, why, 0, delay, 0, "next attempt in %.3f s (attempt %u)",
                 (double)delay / 1000.0, d->failures + 1);
}

void lk_dev__attempt(lk_dev *d, int64_t now)
{
    int rc;
    lk_err err;

    d->stats.attempts++;
    d->fail_detail[0] = '\0';
    err = ensure_token(d, now);
    if (err != LK_OK) {
        /* A missing or locked key will not come back by itself; a signing
         * hiccup of the element might. */
        if (err == LK_ERR_SIGN || err == LK_ERR_DEVICE || err == LK_ERR_RNG || err == LK_ERR_NOMEM) {
            snprintf(d->fail_detail, sizeof d->fail_detail, "the secure element failed to sign: %s",
                     lk_strerror(err));
            lk_dev__emit(d, LK_DEV_EV_WARNING, err, 0, 0, 0, "%s", d->fail_detail);
            schedule_retry(d, now, err);
        } else {
            char shown[2 * LK_KEY_REF_MAX + 8];
            /* The key reference may carry a PIN (pkcs11: pin-value). */
            (void)lk_key_ref_redact(d->token_next && d->next_key ? d->next_key : d->key, shown,
                                    sizeof shown);
            lk_dev__fail(d, err, "cannot sign a token with key %s: %s", shown, lk_strerror(err));
        }
        return;
    }
    d->mosq = mosquitto_new(d->client_id, true, d);
    if (d->mosq == NULL) {
        snprintf(d->fail_detail, sizeof d->fail_detail, "out of memory for a connection");
        schedule_retry(d, now, LK_ERR_NOMEM);
        return;
    }
    mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(d->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(d->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    /* Fail closed: without our context (a libmosquitto built without TLS
     * refuses it) the connection would go out in plain TCP, the token with it. */
    rc = mosquitto_void_option(d->mosq, MOSQ_OPT_SSL_CTX, d->tls->ctx);
    mosquitto_connect_callback_set(d->mosq, cb_connect);
    mosquitto_disconnect_callback_set(d->mosq, cb_disconnect);
    mosquitto_publish_callback_set(d->mosq, cb_publish);
    mosquitto_subscribe_callback_set(d->mosq, cb_subscribe);
    mosquitto_unsubscribe_callback_set(d->mosq, cb_unsubscribe);
    mosquitto_message_callback_set(d->mosq, cb_message);
    /* libmosquitto keeps its own copy of the password until the object is
     * destroyed, at the end of this connection. */
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_username_pw_set(d->mosq, "unused", d->token);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_connect_async(d->mosq, d->host, (int)d->port, (int)d->keepalive_s);
    d->state = LK_DEV_CONNECTING;
    d->deadline_ms = now + (int64_t)d->connect_timeout_s * 1000;
    d->misc_ms = now + MISC_MS;
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_CONN_PENDING) {
        d->ended = 1;
        d->lost_rc = rc;
        d->lost_errno = errno;
    }
}

/* The connection is over: say why, tidy up, decide what comes next. */
void lk_dev__connection_ended(lk_dev *d, int64_t now, int loop_rc)
{
    lk_dev_state was = d->state;
    int connack = d->connack;
    int rc = d->lost_rc ? d->lost_rc : loop_rc;
    int saved_errno = d->lost_errno;
    long verify = d->verify_err;
    int tls_failed = 0;
    lk_err why = LK_ERR_NET;
    SSL *ssl;

    if (d->mosq != NULL) {
        ssl = mosquitto_ssl_get(d->mosq);
        /* A refused TCP connection also ends a handshake: only a
         * certificate verdict or a TLS protocol error is a TLS failure. */
        if (ssl != NULL && connack < 0 && verify == X509_V_OK)
            verify = SSL_get_verify_result(ssl);
        if (connack < 0) {
            tls_failed = verify != X509_V_OK ||
                         ((rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_TLS_HANDSHAKE) && saved_errno == 0);
        }
    }
    if (was == LK_DEV_CONNECTED || was == LK_DEV_REFRESHING || was == LK_DEV_STOPPING) {
        d->stats.disconnects++;
        if (d->connected_ms != 0 && now - d->connected_ms >= STABLE_MS)
            d->failures = 0;
    }
    lk_dev__destroy_connection(d);

    if (was == LK_DEV_STOPPING) {
        d->state = LK_DEV_STOPPED;
        lk_dev__emit(d, LK_DEV_EV_STOPPED, LK_OK, (int)d->queued, 0, 0,
                     "stopped; %zu message(s) not delivered", d->queued);
        return;
    }
    if (was == LK_DEV_REFRESHING) {
        lk_dev__emit(d, LK_DEV_EV_DISCONNECTED, LK_OK, 0, 0, 0, "disconnected to replace the token");
        lk_dev__attempt(d, now);
        return;
    }

    if (connack > 0) {
        why = LK_ERR_REFUSED;
        d->stats.refusals++;
        snprintf(d->fail_detail, sizeof d->fail_detail, "refused by the server (CONNACK %d: %s)",
                 connack, mosquitto_connack_string(connack));
        if ((connack == 4 || connack == 5 || connack == 1 || connack == 2) &&
            lk_dev__keys_refused(d, connack)) {
            /* The next key refused: the key in use has not been, so no
             * backoff and no refusal counted. */
            drop_token(d);
            lk_dev__attempt(d, now);
            return;
        }
        if (connack == 4 || connack == 5 || connack == 1 || connack == 2) {
            int fresh = d->token_fresh;
            /* Never retry a refused token. */
            drop_token(d);
            if (fresh)
                d->refusals++;
            lk_dev__emit(d, LK_DEV_EV_REFUSED, LK_ERR_REFUSED, connack, 0, 0, "%s%s", d->fail_detail,
                         fresh ? "" : "; the token was reused, trying a new one");
            if (fresh && d->max_refusals != UINT_MAX && d->refusals >= d->max_refusals) {
                char msg[DETAIL_MAX];
                snprintf(msg, sizeof msg,
                         "the server refused %u freshly signed tokens in a row (CONNACK %d: %s): "
                         "the key may be revoked, the device blocked or unknown, the "
                         "project/region/registry wrong, or the clock far off",
                         d->refusals, connack, mosquitto_connack_string(connack));
                lk_dev__fail(d, LK_ERR_REFUSED, "%s", msg);
                return;
            }
        } else {
            lk_dev__emit(d, LK_DEV_EV_REFUSED, LK_ERR_REFUSED, connack, 0, 0, "%s", d->fail_detail);
        }
    } else if (tls_failed) {
        why = LK_ERR_TLS;
        d->stats.tls_failures++;
        if (verify != X509_V_OK)
            snprintf(d->fail_detail, sizeof d->fail_detail,
                     "server not authenticated: certificate verify failed: %s (nothing was sent)",
                     X509_verify_cert_error_string(verify));
        else
            snprintf(d->fail_detail, sizeof d->fail_detail,
                     "TLS handshake with %s:%u failed (%s)", d->host, d->port,
                     rc == MOSQ_ERR_ERRNO ? strerror(saved_errno) : mosquitto_strerror(rc));
        lk_dev__emit(d, LK_DEV_EV_TLS_FAILED, LK_ERR_TLS, 0, 0, 0, "%s", d->fail_detail);
    } else {
        const char *reason = rc == MOSQ_ERR_ERRNO ? strerror(saved_errno) : mosquitto_strerror(rc);
        if (rc == MOSQ_ERR_ERRNO && saved_errno == 0)
            reason = "closed by the server";
        if (was == LK_DEV_CONNECTED)
            snprintf(d->fail_detail, sizeof d->fail_detail, "connection lost: %s", reason);
        else
            snprintf(d->fail_detail, sizeof d->fail_detail, "cannot connect to %s:%u: %s",
                     d->host, d->port, reason);
        lk_dev__emit(d, LK_DEV_EV_DISCONNECTED, LK_ERR_NET, 0, 0, 0, "%s", d->fail_detail);
    }
    schedule_retry(d, now, why);
}

void lk_dev__connected(lk_dev *d, int64_t now)
{
    char until[32];
    int64_t at;

    d->state = LK_DEV_CONNECTED;
    d->connected_ms = now;
    d->refusals = 0;
    d->token_fresh = 0;
    d->stats.connects++;
    lk_dev__keys_accepted(d);
    at = d->token_mono + (int64_t)(d->lifetime_s - d->margin_s) * 1000;
    /* A next key given while this connection was being made: switch now. */
    if (lk_dev_switching_key(d))
        at = now;
    d->refresh_ms = at;
    lk_time_rfc3339(d->token_exp, until, sizeof until);
    {
        /* One SUBSCRIBE for both: one SUBACK says whether the device can
         * hear its config and its commands. */
        char *topics[3];
        int n = 2;
        topics[0] = d->topic_config;
        topics[1] = d->topic_commands;
        n += lk_dev__gw_own_topics(d, topics + 2); /* a gateway: its errors topic too */
        mosquitto_subscribe_multiple(d->mosq, NULL, n, topics, 1, 0, NULL);
    }
    lk_dev__emit(d, LK_DEV_EV_CONNECTED, LK_OK, 0, 0, 0,
                 "connected to %s:%u as %s (token valid until %s)",
                 d->host, d->port, d->client_id, until);
    lk_dev__pump(d);
}
