/*
 * push_req.c — what one push request is (docs/daemon.md, "Push
 * subscriptions"): Pub/Sub's push body, the endpoint rule (https://, or
 * http:// to a loopback address only), the retry delay.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/rand.h>

#include "daemon.h"

/* RFC 3339 in UTC with milliseconds, as Pub/Sub writes publishTime. */
static void rfc3339_ms(int64_t ms, char *buf, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03dZ", base, (int)(ms % 1000));
}

char *lkd_push_body(const lk_spool_delivery *dl, const char *sub, int with_attempt, size_t *len)
{
    json_error_t e;
    json_t *attrs = dl->attributes_json ? json_loads(dl->attributes_json, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (!json_is_object(attrs)) {
        json_decref(attrs);
        attrs = json_object();
    }
    char id[24], t[40];
    snprintf(id, sizeof id, "%llu", (unsigned long long)dl->message_id);
    rfc3339_ms(dl->publish_time_ms, t, sizeof t);
    json_t *data = lkd_jbytes(dl->data, dl->data_len);
    json_t *msg = json_object();
    json_t *j = json_object();
    char *s = NULL;
    /* Members in Pub/Sub's order (jansson keeps insertion order). Every
     * json_object_set_new takes its value, also when it fails (a NULL value
     * included), so each is called once and none is released here after:
     * the old chain released, on a failure half-way, values msg or j already
     * held (a double free under memory pressure). */
    int bad = msg == NULL || j == NULL;
    bad |= json_object_set_new(msg, "attributes", attrs);
    bad |= json_object_set_new(msg, "data", data);
    bad |= json_object_set_new(msg, "messageId", json_string(id));
    bad |= json_object_set_new(msg, "message_id", json_string(id));
    bad |= json_object_set_new(msg, "publishTime", json_string(t));
    bad |= json_object_set_new(msg, "publish_time", json_string(t));
    bad |= json_object_set_new(j, "message", msg);
    bad |= json_object_set_new(j, "subscription", json_string(sub));
    if (with_attempt)
        bad |= json_object_set_new(j, "deliveryAttempt", json_integer((json_int_t)dl->attempts + 1));
    if (!bad)
        s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    *len = s ? strlen(s) : 0;
    return s;
}

int lkd_push_endpoint_ok(const char *url, char *why, size_t why_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = 0;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        /* curl keeps an IPv6 literal's brackets */
        const char *h = host;
        if (strcmp(h, "[::1]") == 0)
            h = "::1";
        if (strcmp(scheme, "https") == 0)
            ok = 1;
        else if (strcmp(scheme, "http") == 0 && lkd_is_loopback(h))
            ok = 1;
        else
            snprintf(why, why_size, "%s endpoint to %s: only https://, or http:// to a loopback address",
                     scheme, host);
    } else {
        snprintf(why, why_size, "the push endpoint is not a URL");
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok ? 0 : -1;
}

int64_t lkd_push_backoff(int64_t min_ms, int64_t max_ms, uint32_t attempts)
{
    int64_t d = min_ms > 0 ? min_ms : 1;
    for (uint32_t i = 0; i < attempts && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    /* Up to 10 % more, so that a fleet's retries to one endpoint spread. */
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = 0; /* no jitter this time: the delay itself is still right */
    return d + (int64_t)((double)d * 0.1 * ((double)r / 4294967296.0));
}
