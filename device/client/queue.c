/*
 * queue.c — the device client's outgoing queue: every QoS 1 message stays
 * until its PUBACK, whatever happens to connections, and goes out paced
 * under the server's rates.
 */
#include "client_internal.h"

/* ----------------------------------------------------------------- queue */

void lk_dev__queue_reset_sent(lk_dev *d)
{
    struct msg *m;
    for (m = d->head; m != NULL; m = m->next) {
        if (m->mid != 0) {
            m->mid = 0;
            d->stats.resent++;
        }
    }
    d->inflight = 0;
    d->state_inflight = 0;
    lk_dev__gw_reset(d);
}

static void earliest(int64_t *when, int64_t t)
{
    if (t != 0 && (*when == 0 || t < *when))
        *when = t;
}

/* Hand the unsent messages to the connection, in order, as fast as the
 * server's rates allow: events and state together within max_rate per
 * second, and state reports one at a time, each STATE_GAP_MS after the
 * previous one's PUBACK (IoT Core measures the state rate from its last
 * acknowledgement). A state report that must wait does not hold up the
 * events behind it. A gateway does this per device (gateway.c decides for
 * an attached device's messages) and within its connection's cap. */
void lk_dev__pump(lk_dev *d)
{
    struct msg *m;
    int64_t now, when = 0, t;
    int state_blocked, self_blocked = 0;
    unsigned gen;
    d->pump_wait_ms = 0;
    if (d->state != LK_DEV_CONNECTED && d->state != LK_DEV_STOPPING)
        return;
    if (d->mosq == NULL || d->connack != 0)
        return;
    now = lk_dev_now_ms();
    if (d->gw != NULL && !lk_dev__gw_pump_control(d, now, &when)) {
        d->pump_wait_ms = when;
        return;
    }
    gen = lk_dev__gw_pump_gen(d);
    state_blocked = d->state_inflight || now < d->state_ready_ms;
    for (m = d->head; m != NULL; m = m->next) {
        int mid = 0, rc;
        if (m->mid != 0)
            continue;
        if (m->owner != NULL) {
            if (!lk_dev__gw_may_send(d, m, now, gen, &when))
                continue;
        } else {
            if (self_blocked)
                continue;
            if (m->is_state && state_blocked) {
                if (!d->state_inflight)
                    earliest(&when, d->state_ready_ms);
                continue;
            }
            if ((t = lk_dev__rate_wait(&d->self_rate, now)) != 0) {
                earliest(&when, t);
                if (d->gw == NULL)
                    break;
                self_blocked = 1; /* the attached devices' messages may still go */
                continue;
            }
        }
        if (d->gw != NULL && (t = lk_dev__gw_conn_wait(d, now)) != 0) {
            earliest(&when, t); /* the connection's cap */
            break;
        }
        rc = mosquitto_publish(d->mosq, &mid, m->topic, (int)m->len, m->data, 1, false);
        if (rc != MOSQ_ERR_SUCCESS) {
            /* The connection is failing; what was not handed over waits for the next one. */
            break;
        }
        m->mid = mid != 0 ? mid : -1;
        d->inflight++;
        if (m->owner != NULL) {
            lk_dev__gw_sent(d, m, now);
        } else {
            lk_dev__rate_record(&d->self_rate, now);
            if (d->gw != NULL)
                lk_dev__gw_sent(d, m, now);
            if (m->is_state) {
                d->state_inflight = 1;
                state_blocked = 1;
            }
        }
    }
    d->pump_wait_ms = when;
}

lk_err lk_dev__enqueue(lk_dev *d, struct gw_dev *owner, const char *topic, int is_state,
                       const void *data, size_t len, size_t max, uint64_t *id)
{
    struct msg *m;

    if (id != NULL)
        *id = 0;
    if (d->state == LK_DEV_STOPPING || d->state == LK_DEV_STOPPED || d->state == LK_DEV_FAILED)
        return LK_ERR_STATE;
    if (len > max)
        return LK_ERR_TOO_LARGE;
    if (len > 0 && data == NULL)
        return LK_ERR_ARG;
    if (d->queued >= d->queue_max || len > d->queue_bytes_max - d->queued_bytes)
        return LK_ERR_QUEUE_FULL;
    m = lk_dev__msg_new(owner, MSG_DATA, topic, data, len);
    if (m == NULL)
        return LK_ERR_NOMEM;
    m->is_state = is_state;
    m->id = d->next_id++;
    lk_dev__append(d, m);
    d->stats.published++;
    if (id != NULL)
        *id = m->id;
    if (!d->in_callback)
        lk_dev__pump(d);
    return LK_OK;
}

lk_err lk_dev_publish_event(lk_dev *d, const char *subfolder, const void *data, size_t len,
                            uint64_t *id)
{
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    if (d == NULL)
        return LK_ERR_ARG;
    if (subfolder == NULL || subfolder[0] == '\0')
        return lk_dev__enqueue(d, NULL, d->topic_events, 0, data, len, LK_EVENT_MAX, id);
    if (!lk_subfolder_valid(subfolder, strlen(subfolder)) ||
        lk_device_topic(d->device, LK_TOPIC_EVENTS, subfolder, topic, sizeof topic, NULL) != LK_OK)
        return LK_ERR_ARG;
    return lk_dev__enqueue(d, NULL, topic, 0, data, len, LK_EVENT_MAX, id);
}

lk_err lk_dev_publish_state(lk_dev *d, const void *data, size_t len, uint64_t *id)
{
    if (d == NULL)
        return LK_ERR_ARG;
    return lk_dev__enqueue(d, NULL, d->topic_state, 1, data, len, LK_STATE_MAX, id);
}
