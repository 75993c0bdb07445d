/*
 * api_subscriptions.c — Pub/Sub's push subscriptions on the admin API
 * (docs/daemon.md, "Push subscriptions"), in Pub/Sub v1's shape:
 *
 *   PUT    /v1/projects/P/subscriptions/S          create (roles/cloudiot.editor)
 *   GET    /v1/projects/P/subscriptions/S          get    (viewer)
 *   GET    /v1/projects/P/subscriptions            list   (viewer; one page)
 *   DELETE /v1/projects/P/subscriptions/S          delete (editor)
 *   GET    /v1/projects/P/subscriptions/S:stats    the queue's figures (viewer; latchkey's)
 *
 * The registry checks every field (lk_registry_subscription_create); this
 * file turns JSON into its struct and back. A static header's value is never
 * returned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_iotcore.h"
#include "daemon.h"

#define SUB_PREFIX "subscriptions/"

/* A Duration ("10s", "0.5s"): ms, or -1 after replying. */
static int64_t duration(struct lkd_call *c, json_t *v, const char *what)
{
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;
    int64_t whole = 0, frac = 0, scale = 1000;
    size_t i = 0;
    if (n < 2 || s[n - 1] != 's')
        goto bad;
    for (; i < n - 1 && s[i] >= '0' && s[i] <= '9'; i++) {
        whole = whole * 10 + (s[i] - '0');
        if (whole > 1000000000LL)
            goto bad;
    }
    if (i == 0)
        goto bad;
    if (s[i] == '.') {
        size_t digits = 0;
        for (i++; i < n - 1 && s[i] >= '0' && s[i] <= '9'; i++, digits++)
            if (digits < 3) {
                scale /= 10;
                frac += (s[i] - '0') * scale;
            }
        if (digits == 0 || digits > 9)
            goto bad;
    }
    if (i != n - 1)
        goto bad;
    return whole * 1000 + frac;
bad:
    lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be a duration such as \"10s\" or \"0.5s\"", what);
    return -1;
}

static json_t *jduration(int64_t ms)
{
    char buf[40];
    if (ms % 1000 == 0)
        snprintf(buf, sizeof buf, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, sizeof buf, "%lld.%03llds", (long long)(ms / 1000), (long long)(ms % 1000));
    return json_string(buf);
}

/* A string member (either spelling): 1 with *out, 0 absent, -1 replied. */
static int str_field(struct lkd_call *c, json_t *o, const char *camel, const char *snake, const char **out)
{
    int bad = 0;
    json_t *v = lkd_field(c, o, camel, snake, &bad);
    if (bad)
        return -1;
    if (v == NULL)
        return 0;
    if (!json_is_string(v)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be a string", camel);
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

/* "projects/P/topics/T" of the subscription's own project: T, or NULL after replying. */
static const char *topic_of(struct lkd_call *c, const char *full, const char *what)
{
    const char *p = c->seg[1];
    size_t pl = strlen(p);
    if (strncmp(full, "projects/", 9) != 0 || strncmp(full + 9, p, pl) != 0 ||
        strncmp(full + 9 + pl, "/topics/", 8) != 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "%s must be projects/%s/topics/TOPIC (the subscription's project)",
                        what, p);
        return NULL;
    }
    const char *t = full + 9 + pl + 8;
    if (!lk_pubsub_name_valid(t, strlen(t))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                        "%s: \"%.64s\" is not a valid topic id (3..255 of letters, digits, - _ . ~ %%; a letter "
                        "first; not goog...)", what, t);
        return NULL;
    }
    return t;
}

static int read_body(struct lkd_call *c, lk_reg_subscription *s)
{
    static const char *const top[] = {"name", "topic", "pushConfig", "ackDeadlineSeconds", "retryPolicy",
                                      "deadLetterPolicy", "messageRetentionDuration", "enableMessageOrdering", NULL};
    static const char *const pc[] = {"pushEndpoint", "oidcToken", "latchkeyHeader", NULL};
    static const char *const oi[] = {"serviceAccountEmail", "audience", NULL};
    static const char *const lh[] = {"name", "value", NULL};
    static const char *const rp[] = {"minimumBackoff", "maximumBackoff", NULL};
    static const char *const dp[] = {"deadLetterTopic", "maxDeliveryAttempts", NULL};
    json_t *b = c->body;
    int bad = 0;
    const char *str = NULL;
    if (lkd_known_fields(c, b, "subscription", top) != 0)
        return -1;
    int got = str_field(c, b, "name", NULL, &str);
    if (got < 0)
        return -1;
    if (got > 0) {
        char want[600];
        snprintf(want, sizeof want, "projects/%s/subscriptions/%s", c->seg[1], c->seg[3]);
        if (strcmp(str, want) != 0) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "name must be %s (the path's) when given", want);
            return -1;
        }
    }
    got = str_field(c, b, "topic", NULL, &str);
    if (got < 0)
        return -1;
    if (got == 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "topic is required (projects/%s/topics/TOPIC)", c->seg[1]);
        return -1;
    }
    if ((s->topic = (char *)topic_of(c, str, "topic")) == NULL)
        return -1;
    json_t *push = lkd_field(c, b, "pushConfig", NULL, &bad);
    if (bad)
        return -1;
    if (!json_is_object(push) || lkd_known_fields(c, push, "pushConfig", pc) != 0) {
        if (!json_is_object(push))
            lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                            "pushConfig.pushEndpoint is required: latchkey's subscriptions are push subscriptions "
                            "(pull consumers subscribe over MQTT)");
        return -1;
    }
    got = str_field(c, push, "pushEndpoint", NULL, &str);
    if (got <= 0) {
        if (got == 0)
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pushConfig.pushEndpoint is required");
        return -1;
    }
    s->push_endpoint = (char *)str;
    char why[300];
    if (lkd_push_endpoint_ok(str, why, sizeof why) != 0) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pushConfig.pushEndpoint: %s", why);
        return -1;
    }
    json_t *oidc = lkd_field(c, push, "oidcToken", NULL, &bad);
    json_t *hdr = bad ? NULL : lkd_field(c, push, "latchkeyHeader", NULL, &bad);
    if (bad)
        return -1;
    if (oidc != NULL && hdr != NULL) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pushConfig takes oidcToken or latchkeyHeader, not both");
        return -1;
    }
    if (oidc != NULL) {
        if (!json_is_object(oidc) || lkd_known_fields(c, oidc, "oidcToken", oi) != 0) {
            if (!json_is_object(oidc))
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pushConfig.oidcToken must be an object");
            return -1;
        }
        s->auth = LK_PUSH_AUTH_OIDC;
        if (str_field(c, oidc, "serviceAccountEmail", NULL, &str) <= 0) {
            if (!json_object_get(oidc, "serviceAccountEmail") && !json_object_get(oidc, "service_account_email"))
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "oidcToken.serviceAccountEmail is required");
            return -1;
        }
        s->oidc_email = (char *)str;
        str = NULL;
        if (str_field(c, oidc, "audience", NULL, &str) < 0)
            return -1;
        s->oidc_audience = str && str[0] ? (char *)str : NULL;
    }
    if (hdr != NULL) {
        if (!json_is_object(hdr) || lkd_known_fields(c, hdr, "latchkeyHeader", lh) != 0) {
            if (!json_is_object(hdr))
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "pushConfig.latchkeyHeader must be an object");
            return -1;
        }
        const char *hn = NULL, *hv = NULL;
        int gn = str_field(c, hdr, "name", NULL, &hn);
        int gv = gn < 0 ? -1 : str_field(c, hdr, "value", NULL, &hv);
        if (gn < 0 || gv < 0)
            return -1;
        if (gn == 0 || gv == 0) {
            lkd_reply_error(c, LKD_INVALID_ARGUMENT, "latchkeyHeader needs name and value");
            return -1;
        }
        s->auth = LK_PUSH_AUTH_HEADER;
        s->auth_header_name = (char *)hn;
        s->auth_header_value = (char *)hv;
    }
    json_t *v = lkd_field(c, b, "ackDeadlineSeconds", NULL, &bad);
    int64_t n;
    if (bad || (v != NULL && lkd_int64(c, v, "ackDeadlineSeconds", 10, 600, &n) != 0))
        return -1;
    if (v != NULL)
        s->ack_deadline_ms = n * 1000;
    json_t *retry = lkd_field(c, b, "retryPolicy", NULL, &bad);
    if (bad)
        return -1;
    if (retry != NULL) {
        if (!json_is_object(retry) || lkd_known_fields(c, retry, "retryPolicy", rp) != 0) {
            if (!json_is_object(retry))
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "retryPolicy must be an object");
            return -1;
        }
        json_t *mn = lkd_field(c, retry, "minimumBackoff", NULL, &bad);
        json_t *mx = bad ? NULL : lkd_field(c, retry, "maximumBackoff", NULL, &bad);
        if (bad || (mn && (s->min_backoff_ms = duration(c, mn, "retryPolicy.minimumBackoff")) < 0) ||
            (mx && (s->max_backoff_ms = duration(c, mx, "retryPolicy.maximumBackoff")) < 0))
            return -1;
    }
    json_t *dlp = lkd_field(c, b, "deadLetterPolicy", NULL, &bad);
    if (bad)
        return -1;
    if (dlp != NULL) {
        if (!json_is_object(dlp) || lkd_known_fields(c, dlp, "deadLetterPolicy", dp) != 0) {
            if (!json_is_object(dlp))
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "deadLetterPolicy must be an object");
            return -1;
        }
        if (str_field(c, dlp, "deadLetterTopic", NULL, &str) <= 0) {
            if (!json_object_get(dlp, "deadLetterTopic") && !json_object_get(dlp, "dead_letter_topic"))
                lkd_reply_error(c, LKD_INVALID_ARGUMENT, "deadLetterPolicy.deadLetterTopic is required");
            return -1;
        }
        if ((s->dead_letter_topic = (char *)topic_of(c, str, "deadLetterPolicy.deadLetterTopic")) == NULL)
            return -1;
        v = lkd_field(c, dlp, "maxDeliveryAttempts", NULL, &bad);
        if (bad || (v != NULL && lkd_int64(c, v, "deadLetterPolicy.maxDeliveryAttempts", 5, 100, &n) != 0))
            return -1;
        s->max_delivery_attempts = v != NULL ? (int32_t)n : 5;
    }
    v = lkd_field(c, b, "messageRetentionDuration", NULL, &bad);
    if (bad || (v != NULL && (s->retention_ms = duration(c, v, "messageRetentionDuration")) < 0))
        return -1;
    v = lkd_field(c, b, "enableMessageOrdering", NULL, &bad);
    if (bad)
        return -1;
    if (v != NULL && !json_is_boolean(v)) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "enableMessageOrdering must be true or false");
        return -1;
    }
    return 0;
}

static json_t *sub_json(const lk_reg_subscription *s)
{
    char buf[600];
    json_t *j = json_object();
    snprintf(buf, sizeof buf, "projects/%s/subscriptions/%s", s->project, s->name);
    json_object_set_new(j, "name", json_string(buf));
    snprintf(buf, sizeof buf, "projects/%s/topics/%s", s->project, s->topic);
    json_object_set_new(j, "topic", json_string(buf));
    json_t *pc = json_object();
    json_object_set_new(pc, "pushEndpoint", json_string(s->push_endpoint));
    if (s->auth == LK_PUSH_AUTH_OIDC) {
        json_t *o = json_object();
        json_object_set_new(o, "serviceAccountEmail", json_string(s->oidc_email ? s->oidc_email : ""));
        if (s->oidc_audience)
            json_object_set_new(o, "audience", json_string(s->oidc_audience));
        json_object_set_new(pc, "oidcToken", o);
    } else if (s->auth == LK_PUSH_AUTH_HEADER) {
        /* the value is a secret: never returned */
        json_object_set_new(pc, "latchkeyHeader", json_pack("{s:s}", "name", s->auth_header_name ? s->auth_header_name : ""));
    }
    json_object_set_new(j, "pushConfig", pc);
    json_object_set_new(j, "ackDeadlineSeconds", json_integer((json_int_t)(s->ack_deadline_ms / 1000)));
    json_object_set_new(j, "retryPolicy", json_pack("{s:o, s:o}", "minimumBackoff", jduration(s->min_backoff_ms),
                                                    "maximumBackoff", jduration(s->max_backoff_ms)));
    if (s->dead_letter_topic) {
        snprintf(buf, sizeof buf, "projects/%s/topics/%s", s->project, s->dead_letter_topic);
        json_object_set_new(j, "deadLetterPolicy", json_pack("{s:s, s:i}", "deadLetterTopic", buf,
                                                             "maxDeliveryAttempts", (int)s->max_delivery_attempts));
    }
    json_object_set_new(j, "messageRetentionDuration", jduration(s->retention_ms));
    json_object_set_new(j, "enableMessageOrdering", json_true());
    json_object_set_new(j, "state", json_string("ACTIVE"));
    return j;
}

/* The subscription into *s (the caller frees it); -1 when it could not be
 * read, with the reply sent. */
static int get_sub(struct lkd_call *c, const char *project, const char *name, lk_reg_subscription *s)
{
    char why[512] = "";
    memset(s, 0, sizeof *s);
    lk_err err = lk_registry_subscription_get(c->d->reg, project, name, s, why, sizeof why);
    if (err != LK_OK) {
        lkd_reply_lk(c, err, why);
        return -1;
    }
    return 0;
}

static void reply_sub(struct lkd_call *c, const char *project, const char *name)
{
    lk_reg_subscription s;
    if (get_sub(c, project, name, &s) != 0)
        return;
    json_t *j = sub_json(&s);
    lk_reg_subscription_free(&s);
    lkd_reply_json(c, 200, j);
}

static int list_cb(void *arg, const lk_reg_subscription *s)
{
    json_array_append_new(arg, sub_json(s));
    return 0;
}

static void stats(struct lkd_call *c, const char *project, const char *name)
{
    lk_reg_subscription s;
    if (get_sub(c, project, name, &s) != 0)
        return;
    lk_reg_subscription_free(&s);
    if (c->d->spool == NULL) {
        lkd_reply_error(c, LKD_FAILED_PRECONDITION,
                        "latchkeyd has no spool (set `spool PATH`, the plugin's plugin_opt_spool): nothing is pushed");
        return;
    }
    char full[600];
    snprintf(full, sizeof full, "projects/%s/subscriptions/%s", project, name);
    lk_spool_stats st;
    char why[512] = "";
    lk_err err = lk_spool_stats_get(c->d->spool, full, &st, why, sizeof why);
    if (err != LK_OK) {
        lkd_reply_error(c, LKD_UNAVAILABLE, "the spool: %s", why);
        return;
    }
    int64_t age = 0;
    if (st.oldest_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        age = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - st.oldest_ms;
        if (age < 0)
            age = 0;
    }
    json_t *j = json_object();
    json_object_set_new(j, "depth", lkd_ju64(st.depth));
    json_object_set_new(j, "bytes", lkd_ju64(st.bytes));
    json_object_set_new(j, "oldestUnackedMessageAge", jduration(age));
    json_object_set_new(j, "enqueued", lkd_ju64(st.enqueued));
    json_object_set_new(j, "acked", lkd_ju64(st.acked));
    json_object_set_new(j, "deadLettered", lkd_ju64(st.dead_lettered));
    json_object_set_new(j, "dropped", lkd_ju64(st.dropped));
    json_object_set_new(j, "expired", lkd_ju64(st.expired));
    lkd_reply_json(c, 200, j);
}

void lkd_api_subscriptions(struct lkd_call *c)
{
    const char *p = c->seg[1];
    char why[512] = "";
    if (!lk_project_valid(p, strlen(p))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT, "\"%.64s\" is not a valid project id", p);
        return;
    }
    if (c->nseg == 3) {
        if (c->method != EVHTTP_REQ_GET || c->verb != NULL) {
            lkd_reply_error(c, LKD_NOT_FOUND, "subscriptions take GET (list); create one with PUT .../subscriptions/S");
            return;
        }
        if (lkd_require(c, p, LKD_ROLE_VIEWER) != 0)
            return;
        json_t *a = json_array();
        lk_err err = lk_registry_subscription_list(c->d->reg, p, list_cb, a, why, sizeof why);
        if (err != LK_OK) {
            json_decref(a);
            lkd_reply_lk(c, err, why);
            return;
        }
        lkd_reply_json(c, 200, json_pack("{s:o}", "subscriptions", a));
        return;
    }
    if (c->nseg != 4) {
        lkd_reply_error(c, LKD_NOT_FOUND, "no such path under subscriptions");
        return;
    }
    const char *s = c->seg[3];
    if (!lk_pubsub_name_valid(s, strlen(s))) {
        lkd_reply_error(c, LKD_INVALID_ARGUMENT,
                        "\"%.64s\" is not a valid subscription id (3..255 of letters, digits, - _ . ~ %%; a letter "
                        "first; not goog...)", s);
        return;
    }
    if (c->verb != NULL) {
        if (strcmp(c->verb, "stats") != 0 || c->method != EVHTTP_REQ_GET) {
            lkd_reply_error(c, LKD_NOT_FOUND, "a subscription has GET :stats only");
            return;
        }
        if (lkd_require(c, p, LKD_ROLE_VIEWER) == 0)
            stats(c, p, s);
        return;
    }
    switch (c->method) {
    case EVHTTP_REQ_GET:
        if (lkd_require(c, p, LKD_ROLE_VIEWER) == 0)
            reply_sub(c, p, s);
        return;
    case EVHTTP_REQ_PUT: {
        if (lkd_require(c, p, LKD_ROLE_EDITOR) != 0)
            return;
        lk_reg_subscription sub;
        memset(&sub, 0, sizeof sub);
        sub.project = (char *)p;
        sub.name = (char *)s;
        if (read_body(c, &sub) != 0)
            return; /* its strings point into the body: nothing to free */
        lk_err err = lk_registry_subscription_create(c->d->reg, &sub, why, sizeof why);
        if (err != LK_OK) {
            lkd_reply_lk(c, err, why);
            return;
        }
        char sp_[300];
        snprintf(sp_, sizeof sp_, "projects/%s/subscriptions/%s", p, s);
        lkd_log_change(c, "create", "subscription", sp_, NULL);
        reply_sub(c, p, s);
        return;
    }
    case EVHTTP_REQ_DELETE: {
        if (lkd_require(c, p, LKD_ROLE_EDITOR) != 0)
            return;
        lk_err err = lk_registry_subscription_delete(c->d->reg, p, s, why, sizeof why);
        if (err != LK_OK) {
            lkd_reply_lk(c, err, why);
            return;
        }
        char sp_[300];
        snprintf(sp_, sizeof sp_, "projects/%s/subscriptions/%s", p, s);
        lkd_log_change(c, "delete", "subscription", sp_, NULL);
        lkd_reply_json(c, 200, json_object());
        return;
    }
    default:
        lkd_reply_error(c, LKD_NOT_FOUND, "a subscription takes PUT (create), GET or DELETE");
        return;
    }
}
