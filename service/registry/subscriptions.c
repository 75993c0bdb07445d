/*
 * subscriptions.c — push subscriptions (lk_registry.h, schema 6): the rules
 * for every field, the transactions that create, read, update and delete
 * them, and the rule for the Pub/Sub topic a registry's notification config
 * names (registries.c and the import use it).
 *
 * Decisions where Pub/Sub's rules are silent or do not fit:
 *  - A zero number takes its default, so a minimum backoff of 0 cannot be
 *    stored (the smallest is 1 ms); the tool refuses 0.
 *  - The dead-letter topic must differ from the subscription's topic (a
 *    message dead-lettered to its own topic would come back forever).
 *  - An endpoint carries no user:password@ (a secret in a URL is shown by
 *    every list) and no #fragment; http:// only to a loopback host
 *    (127.0.0.0/8, [::1], localhost).
 *  - The static header may not be one latchkeyd sets itself (Host,
 *    Content-Type, Content-Length, Transfer-Encoding, Connection).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "facade.h"

#define SUB_ENDPOINT_MAX 2048u
#define SUB_HEADER_NAME_MAX 256u
#define SUB_HEADER_VALUE_MAX 4096u
#define SUB_EMAIL_MAX 254u
#define SUB_AUDIENCE_MAX 2048u

#define S_MS 1000LL
#define BACKOFF_MAX_MS (600 * S_MS)
#define MIN_BACKOFF_DEFAULT_MS (10 * S_MS)
#define MAX_BACKOFF_DEFAULT_MS (600 * S_MS)
#define ACK_MIN_MS (10 * S_MS)
#define ACK_MAX_MS (600 * S_MS)
#define RETENTION_MIN_MS (600 * S_MS)
#define RETENTION_MAX_MS (31LL * 86400 * S_MS)
#define RETENTION_DEFAULT_MS (7LL * 86400 * S_MS)
#define ATTEMPTS_MIN 5
#define ATTEMPTS_MAX 100

/* ------------------------------------------------------------------ */
/* Names                                                               */

static lk_err check_pubsub_name(const char *what, const char *s, char *why, size_t why_size)
{
    char b[80];
    if (s == NULL || s[0] == '\0')
        return failf(why, why_size, LK_ERR_REG_INVALID, "a %s is required", what);
    if (!lk_pubsub_name_valid(s, strlen(s)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s '%s' is invalid: %u to %u characters, a letter first, then letters, "
                     "digits or - _ . ~ %%, not starting with 'goog'", what,
                     lk_reg__shown(s, b, sizeof b), LK_PUBSUB_NAME_MIN, LK_PUBSUB_NAME_MAX);
    return LK_OK;
}

lk_err lk_reg__check_topic_path(const char *project, const char *what, const char *path,
                                char *why, size_t why_size)
{
    static const char topics[] = "/topics/";
    size_t plen = strlen(project);
    char b[80];
    if (strncmp(path, "projects/", 9) != 0 || strncmp(path + 9, project, plen) != 0 ||
        strncmp(path + 9 + plen, topics, sizeof topics - 1) != 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s '%s' is not a topic of this registry's project: it must be "
                     "projects/%s/topics/TOPIC", what, lk_reg__shown(path, b, sizeof b), project);
    path += 9 + plen + sizeof topics - 1;
    if (!lk_pubsub_name_valid(path, strlen(path)))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s: topic id '%s' is invalid: %u to %u characters, a letter first, then "
                     "letters, digits or - _ . ~ %%, not starting with 'goog'", what,
                     lk_reg__shown(path, b, sizeof b), LK_PUBSUB_NAME_MIN, LK_PUBSUB_NAME_MAX);
    return LK_OK;
}

/* ------------------------------------------------------------------ */
/* Endpoint, header, OIDC                                              */

/* 1 when host (without brackets for IPv6) names this machine's loopback. */
static int loopback_host(const char *host, size_t len, int bracketed)
{
    char h[64];
    unsigned char a[16];
    if (len == 0 || len >= sizeof h)
        return 0;
    memcpy(h, host, len);
    h[len] = '\0';
    if (bracketed)
        return inet_pton(AF_INET6, h, a) == 1 && memcmp(a, in6addr_loopback.s6_addr, 16) == 0;
    if (strcasecmp(h, "localhost") == 0)
        return 1;
    return inet_pton(AF_INET, h, a) == 1 && a[0] == 127;
}

static lk_err check_endpoint(const char *url, char *why, size_t why_size)
{
    const char *p, *host, *end;
    size_t i, len, hlen;
    int https, bracketed = 0;
    char b[80];

    if (url == NULL || url[0] == '\0')
        return failf(why, why_size, LK_ERR_REG_INVALID, "a push endpoint is required");
    len = strlen(url);
    if (len > SUB_ENDPOINT_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT, "the push endpoint is %zu characters; "
                     "the limit is %u", len, SUB_ENDPOINT_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the push endpoint has a space, a control or a non-ASCII character "
                         "at %zu (percent-encode it)", i);
    https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7) != 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "push endpoint '%s' must start with https:// (http:// only to a loopback "
                     "host)", lk_reg__shown(url, b, sizeof b));
    host = url + (https ? 8 : 7);
    end = host + strcspn(host, "/?#");
    if (*end == '#' || strchr(end, '#') != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "the push endpoint may not have a #fragment");
    if (memchr(host, '@', (size_t)(end - host)) != NULL)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "the push endpoint may not carry user:password@ (use --push-header or "
                     "OIDC for credentials)");
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (close == NULL)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the push endpoint's IPv6 host has no closing ']'");
        bracketed = 1;
        hlen = (size_t)(close - host - 1);
        p = close + 1;
        host++;
    } else {
        p = memchr(host, ':', (size_t)(end - host));
        if (p == NULL)
            p = end;
        hlen = (size_t)(p - host);
    }
    if (hlen == 0)
        return failf(why, why_size, LK_ERR_REG_INVALID, "the push endpoint has no host");
    if (p < end) {
        unsigned long port = 0;
        const char *q;
        if (*p != ':' || p + 1 == end)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the push endpoint's host is followed by something other than :PORT");
        for (q = p + 1; q < end; q++) {
            if (*q < '0' || *q > '9' || port > 65535)
                break;
            port = port * 10 + (unsigned long)(*q - '0');
        }
        if (q < end || port == 0 || port > 65535)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the push endpoint's port must be a number from 1 to 65535");
    }
    if (!https && !loopback_host(host, hlen, bracketed))
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "push endpoint '%s': http:// is allowed only to a loopback host "
                     "(127.0.0.0/8, [::1], localhost); use https://",
                     lk_reg__shown(url, b, sizeof b));
    return LK_OK;
}

/* RFC 9110's token characters. */
static int tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static lk_err check_header(const char *name, const char *value, char *why, size_t why_size)
{
    static const char *const reserved[] = {"host", "content-type", "content-length",
                                           "transfer-encoding", "connection"};
    size_t i, len;
    char b[80];
    if (name == NULL || name[0] == '\0')
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "header authentication needs a header name");
    len = strlen(name);
    if (len > SUB_HEADER_NAME_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "the header name is %zu characters; the limit is %u", len,
                     SUB_HEADER_NAME_MAX);
    for (i = 0; i < len; i++)
        if (!tchar((unsigned char)name[i]))
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "header name '%s' is invalid: letters, digits and !#$%%&'*+-.^_`|~ "
                         "only (an HTTP token)", lk_reg__shown(name, b, sizeof b));
    for (i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "header '%s' is set by latchkeyd itself; choose another name",
                         lk_reg__shown(name, b, sizeof b));
    /* The value is a secret: never shown in a reason. */
    if (value == NULL || value[0] == '\0')
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "header authentication needs a header value");
    len = strlen(value);
    if (len > SUB_HEADER_VALUE_MAX)
        return failf(why, why_size, LK_ERR_REG_LIMIT,
                     "the header value is %zu bytes; the limit is %u", len,
                     SUB_HEADER_VALUE_MAX);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == '\r' || c == '\n' || (c < 0x20 && c != '\t') || c == 0x7f)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the header value has a line break or a control character at %zu", i);
    }
    if (value[0] == ' ' || value[0] == '\t' || value[len - 1] == ' ' || value[len - 1] == '\t')
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "the header value may not start or end with a space or a tab (HTTP "
                     "would drop them)");
    return LK_OK;
}

/* Visible ASCII only, 1..max characters. */
static int visible(const char *s, size_t max)
{
    size_t i;
    for (i = 0; s[i] != '\0'; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || i >= max)
            return 0;
    return i > 0;
}

static lk_err check_auth(const lk_reg_subscription *s, char *why, size_t why_size)
{
    int header = s->auth_header_name != NULL || s->auth_header_value != NULL;
    int oidc = s->oidc_email != NULL || s->oidc_audience != NULL;
    switch (s->auth) {
    case LK_PUSH_AUTH_NONE:
        if (header || oidc)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "authentication NONE with a header or OIDC settings; choose one");
        return LK_OK;
    case LK_PUSH_AUTH_HEADER:
        if (oidc)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "a subscription authenticates with a header or with OIDC, not both");
        return check_header(s->auth_header_name, s->auth_header_value, why, why_size);
    case LK_PUSH_AUTH_OIDC:
        if (header)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "a subscription authenticates with a header or with OIDC, not both");
        if (s->oidc_email == NULL || s->oidc_email[0] == '\0')
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "OIDC authentication needs a service account email");
        if (!visible(s->oidc_email, SUB_EMAIL_MAX) || strchr(s->oidc_email, '@') == NULL)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the OIDC service account email must be an address (NAME@DOMAIN, at "
                         "most %u characters, no spaces)", SUB_EMAIL_MAX);
        if (s->oidc_audience != NULL && s->oidc_audience[0] != '\0' &&
            !visible(s->oidc_audience, SUB_AUDIENCE_MAX))
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "the OIDC audience must be 1 to %u visible ASCII characters (or none: "
                         "the endpoint URL)", SUB_AUDIENCE_MAX);
        return LK_OK;
    default:
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "authentication %d is invalid: NONE (0), HEADER (1) or OIDC (2)",
                     (int)s->auth);
    }
}

/* ------------------------------------------------------------------ */
/* The whole subscription                                              */

static lk_err check_range(const char *what, int64_t v, int64_t lo, int64_t hi, char *why,
                          size_t why_size)
{
    if (v < lo || v > hi)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "%s %lld ms is out of range: %lld to %lld s", what, (long long)v,
                     (long long)(lo / S_MS), (long long)(hi / S_MS));
    return LK_OK;
}

/* Check s and give out the stored form: defaults filled in, "" audience
 * as none. out's strings point into s. */
static lk_err check_subscription(const lk_reg_subscription *s, lk_reg_subscription *out,
                                 char *why, size_t why_size)
{
    lk_err err;
    if (s == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no subscription given");
    if (s->project == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a project is required");
    if ((err = lk_reg__check_place(s->project, NULL, why, why_size)) != LK_OK ||
        (err = check_pubsub_name("subscription id", s->name, why, why_size)) != LK_OK ||
        (err = check_pubsub_name("topic id", s->topic, why, why_size)) != LK_OK ||
        (err = check_endpoint(s->push_endpoint, why, why_size)) != LK_OK ||
        (err = check_auth(s, why, why_size)) != LK_OK)
        return err;
    *out = *s;
    if (out->oidc_audience != NULL && out->oidc_audience[0] == '\0')
        out->oidc_audience = NULL;
    if (out->dead_letter_topic != NULL && out->dead_letter_topic[0] == '\0')
        out->dead_letter_topic = NULL;
    if (out->min_backoff_ms == 0)
        out->min_backoff_ms = MIN_BACKOFF_DEFAULT_MS;
    if (out->max_backoff_ms == 0)
        out->max_backoff_ms = MAX_BACKOFF_DEFAULT_MS;
    if (out->ack_deadline_ms == 0)
        out->ack_deadline_ms = ACK_MIN_MS;
    if (out->retention_ms == 0)
        out->retention_ms = RETENTION_DEFAULT_MS;
    if ((err = check_range("minimum backoff", out->min_backoff_ms, 0, BACKOFF_MAX_MS, why,
                           why_size)) != LK_OK ||
        (err = check_range("maximum backoff", out->max_backoff_ms, 0, BACKOFF_MAX_MS, why,
                           why_size)) != LK_OK ||
        (err = check_range("ack deadline", out->ack_deadline_ms, ACK_MIN_MS, ACK_MAX_MS, why,
                           why_size)) != LK_OK ||
        (err = check_range("message retention", out->retention_ms, RETENTION_MIN_MS,
                           RETENTION_MAX_MS, why, why_size)) != LK_OK)
        return err;
    if (out->min_backoff_ms > out->max_backoff_ms)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "the minimum backoff (%lld ms) is above the maximum (%lld ms)",
                     (long long)out->min_backoff_ms, (long long)out->max_backoff_ms);
    if (out->dead_letter_topic == NULL) {
        if (out->max_delivery_attempts != 0)
            return failf(why, why_size, LK_ERR_REG_INVALID,
                         "max delivery attempts (%d) needs a dead-letter topic",
                         (int)out->max_delivery_attempts);
        return LK_OK;
    }
    if ((err = check_pubsub_name("dead-letter topic id", out->dead_letter_topic, why,
                                 why_size)) != LK_OK)
        return err;
    if (strcmp(out->dead_letter_topic, out->topic) == 0)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "the dead-letter topic is the subscription's own topic (its messages "
                     "would come back forever); choose another");
    if (out->max_delivery_attempts == 0)
        out->max_delivery_attempts = ATTEMPTS_MIN;
    if (out->max_delivery_attempts < ATTEMPTS_MIN || out->max_delivery_attempts > ATTEMPTS_MAX)
        return failf(why, why_size, LK_ERR_REG_INVALID,
                     "max delivery attempts %d is out of range: %d to %d",
                     (int)out->max_delivery_attempts, ATTEMPTS_MIN, ATTEMPTS_MAX);
    return LK_OK;
}

/* The project and subscription id a get or delete names. */
static lk_err check_key(const char *project, const char *name, char *why, size_t why_size)
{
    lk_err err;
    if (project == NULL)
        return failf(why, why_size, LK_ERR_ARG, "a project is required");
    if ((err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK)
        return err;
    return check_pubsub_name("subscription id", name, why, why_size);
}

static lk_err not_found(const char *project, const char *name, char *why, size_t why_size)
{
    return failf(why, why_size, LK_ERR_REG_NOT_FOUND,
                 "subscription projects/%s/subscriptions/%s does not exist", project, name);
}

lk_err lk_registry_subscription_create(lk_registry *reg, const lk_reg_subscription *s, char *why,
                                       size_t why_size)
{
    lk_reg_subscription v;
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_subscription(s, &v, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    v.created = lk_reg__now(reg);
    err = reg->ops->subscription_insert(reg->be, &v);
    if (err == LK_ERR_REG_EXISTS)
        err = failf(why, why_size, err, "subscription projects/%s/subscriptions/%s exists already",
                    v.project, v.name);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_SUBSCRIPTION, 0, why, why_size);
}

lk_err lk_registry_subscription_update(lk_registry *reg, const lk_reg_subscription *s, char *why,
                                       size_t why_size)
{
    lk_reg_subscription v;
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_subscription(s, &v, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->subscription_update(reg->be, &v);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = not_found(v.project, v.name, why, why_size);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_SUBSCRIPTION, 0, why, why_size);
}

lk_err lk_registry_subscription_get(lk_registry *reg, const char *project, const char *name,
                                    lk_reg_subscription *out, char *why, size_t why_size)
{
    lk_err err;
    if (out == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no output given");
    memset(out, 0, sizeof *out);
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_key(project, name, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->subscription_get(reg->be, project, name, out);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = not_found(project, name, why, why_size);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    err = lk_reg__leave(reg, err, TX_READ, why, why_size);
    if (err != LK_OK)
        lk_reg_subscription_free(out);
    return err;
}

lk_err lk_registry_subscription_delete(lk_registry *reg, const char *project, const char *name,
                                       char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if ((err = check_key(project, name, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_WRITE, why, why_size)) != LK_OK)
        return err;
    err = reg->ops->subscription_delete(reg->be, project, name);
    if (err == LK_ERR_REG_NOT_FOUND)
        err = not_found(project, name, why, why_size);
    else if (err != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave_changed(reg, err, LK_CHANGE_SUBSCRIPTION, 0, why, why_size);
}

lk_err lk_registry_subscription_list(lk_registry *reg, const char *project,
                                     int (*cb)(void *arg, const lk_reg_subscription *s), void *arg,
                                     char *why, size_t why_size)
{
    lk_err err;
    if (reg == NULL)
        return LK_ERR_ARG;
    if (cb == NULL)
        return failf(why, why_size, LK_ERR_ARG, "no callback given");
    if ((err = lk_reg__check_place(project, NULL, why, why_size)) != LK_OK ||
        (err = lk_reg__enter(reg, TX_READ, why, why_size)) != LK_OK)
        return err;
    if ((err = reg->ops->subscription_list(reg->be, project, cb, arg)) != LK_OK)
        err = lk_reg__be_fail(reg, err, why, why_size);
    return lk_reg__leave(reg, err, TX_READ, why, why_size);
}
