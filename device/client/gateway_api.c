/*
 * gateway_api.c — what a gateway's caller does (lk_device.h, "Gateways"):
 * attach, detach, publish for an attached device. Above the queue (it
 * queues and pumps) and the gateway's table (gateway.c), which the queue's
 * pump consults.
 */
#include "client_internal.h"

static int usable(const lk_dev *d)
{
    return d->state != LK_DEV_STOPPING && d->state != LK_DEV_STOPPED && d->state != LK_DEV_FAILED;
}

static int connected(const lk_dev *d)
{
    return d->mosq != NULL && d->connack == 0 && !d->ended;
}

lk_err lk_dev_attach(lk_dev *d, const char *id, const lk_se *se, const char *key, lk_alg alg)
{
    struct gw_dev *o;
    lk_err err;

    if (d == NULL || id == NULL)
        return LK_ERR_ARG;
    if (d->gw == NULL || !usable(d))
        return LK_ERR_STATE;
    if (!lk_id_valid(id, strlen(id)) || strcmp(id, d->device) == 0)
        return LK_ERR_ARG;
    if (se != NULL && (se->ops == NULL || key == NULL || key[0] == '\0' ||
                       (alg != LK_ALG_ES256 && alg != LK_ALG_RS256)))
        return LK_ERR_ARG;
    o = lk_dev__gw_find(d, id);
    if (o != NULL) {
        if (o->detaching)
            return LK_ERR_STATE;
        /* Another key, or a retry after an error: a new token, a new attach. */
        err = lk_dev__gw_rekey(o, se != NULL);
    } else {
        err = lk_dev__gw_add(d, id, se != NULL, &o);
    }
    if (err != LK_OK)
        return err;
    o->se = se;
    o->key = se != NULL ? key : NULL;
    o->alg = se != NULL ? alg : LK_ALG_NONE;
    if (o->status == GW_ATTACHED)
        o->reattach = 1;
    else if (o->status == GW_HELD)
        o->status = GW_PENDING;
    lk_dev__gw_want_control(d);
    if (!d->in_callback)
        lk_dev__pump(d);
    return LK_OK;
}

lk_err lk_dev_detach(lk_dev *d, const char *id)
{
    struct gw_dev *o;
    struct msg *m;
    char topic[LK_DEVICE_TOPIC_MAX + 1];

    if (d == NULL || id == NULL)
        return LK_ERR_ARG;
    o = d->gw != NULL ? lk_dev__gw_find(d, id) : NULL;
    if (o == NULL || o->detaching || !usable(d))
        return LK_ERR_STATE;
    /* Nothing to tell the server: it holds no attachment of o (refused,
     * dropped, never sent on this connection, or no connection: the server
     * drops a gateway's attachments when it disconnects). */
    if (o->status == GW_HELD || (o->queued == 0 && (!connected(d) || o->status == GW_PENDING))) {
        lk_dev__gw_forget(d, o);
        return LK_OK;
    }
    if (lk_device_topic(o->id, LK_TOPIC_DETACH, NULL, topic, sizeof topic, NULL) != LK_OK)
        return LK_ERR_ARG;
    /* The detach is a queue entry behind the device's messages, so they go
     * first; it counts in no limit (one per device at most). */
    m = lk_dev__msg_new(o, MSG_DETACH, topic, "{}", 2);
    if (m == NULL)
        return LK_ERR_NOMEM;
    lk_dev__append(d, m);
    o->queued++;
    o->detaching = 1;
    if (!d->in_callback)
        lk_dev__pump(d);
    return LK_OK;
}

int lk_dev_attached(const lk_dev *d, const char *id)
{
    const struct gw_dev *o = d != NULL && d->gw != NULL && id != NULL ? lk_dev__gw_find(d, id) : NULL;
    return o != NULL && o->status == GW_ATTACHED && !o->detaching;
}

/* The attached device a message may be queued for, or NULL. */
static struct gw_dev *sender(lk_dev *d, const char *id)
{
    struct gw_dev *o = d->gw != NULL ? lk_dev__gw_find(d, id) : NULL;
    return o != NULL && !o->detaching ? o : NULL;
}

/* Queue for o on topic: o's count goes up first, as the pump inside may look. */
static lk_err queue_for(lk_dev *d, struct gw_dev *o, const char *topic, int is_state,
                        const void *data, size_t len, size_t max, uint64_t *out_id)
{
    lk_err err;
    o->queued++;
    err = lk_dev__enqueue(d, o, topic, is_state, data, len, max, out_id);
    if (err != LK_OK)
        o->queued--;
    return err;
}

lk_err lk_dev_publish_event_for(lk_dev *d, const char *id, const char *subfolder, const void *data,
                                size_t len, uint64_t *out_id)
{
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    struct gw_dev *o;
    if (out_id != NULL)
        *out_id = 0;
    if (d == NULL || id == NULL)
        return LK_ERR_ARG;
    if ((o = sender(d, id)) == NULL)
        return LK_ERR_STATE;
    if (subfolder != NULL && subfolder[0] == '\0')
        subfolder = NULL;
    if (subfolder != NULL && !lk_subfolder_valid(subfolder, strlen(subfolder)))
        return LK_ERR_ARG;
    if (lk_device_topic(o->id, LK_TOPIC_EVENTS, subfolder, topic, sizeof topic, NULL) != LK_OK)
        return LK_ERR_ARG;
    return queue_for(d, o, topic, 0, data, len, LK_EVENT_MAX, out_id);
}

lk_err lk_dev_publish_state_for(lk_dev *d, const char *id, const void *data, size_t len,
                                uint64_t *out_id)
{
    char topic[LK_DEVICE_TOPIC_MAX + 1];
    struct gw_dev *o;
    if (out_id != NULL)
        *out_id = 0;
    if (d == NULL || id == NULL)
        return LK_ERR_ARG;
    if ((o = sender(d, id)) == NULL)
        return LK_ERR_STATE;
    if (lk_device_topic(o->id, LK_TOPIC_STATE, NULL, topic, sizeof topic, NULL) != LK_OK)
        return LK_ERR_ARG;
    return queue_for(d, o, topic, 1, data, len, LK_STATE_MAX, out_id);
}
