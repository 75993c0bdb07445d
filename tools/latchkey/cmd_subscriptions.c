/*
 * latchkey subscriptions create|list|describe|delete — push subscriptions
 * (lk_registry.h, schema 6): latchkeyd POSTs each message routed to the
 * subscription's topic to its endpoint (docs/delivery.md).
 *
 * Registry-file mode only (--db): latchkeyd's REST API serves the same
 * subscriptions (PUT/GET/DELETE /v1/projects/P/subscriptions/S) but the
 * tool's --api mode does not speak it yet (docs/cli.md).
 *
 * The static header's value is a secret: it is never printed (describe and
 * list show only the header's name) and is wiped from this process's memory
 * once stored. A value given on the command line is visible to other users
 * of the machine (ps): --push-header-file reads "Name: value" from a file.
 *
 * With --spool PATH, list and describe add each subscription's queue figures
 * (depth, age of the oldest queued message, dropped, dead-lettered, ...),
 * read from the spool latchkeyd and the broker share, without writing it
 * (LK_SPOOL_READONLY).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "cli.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_spool.h"
#include "latchkey/lk_util.h"

#define SUB_COMMON                                                                              \
    "Common options: --db FILE (or LATCHKEY_DB), --project P (or LATCHKEY_PROJECT),\n"          \
    "--format text|json, --busy-timeout MS. Registry file only (no --api). Exit codes:\n"       \
    "docs/cli.md.\n"

static const char subs_usage[] =
    "usage: latchkey [--db FILE] subscriptions COMMAND [options]\n"
    "\n"
    "  create S --project P --topic T --push-endpoint URL [options]   a push subscription\n"
    "  list [--project P] [--spool PATH]                              the subscriptions\n"
    "  describe S --project P [--spool PATH]                          one of them\n"
    "  delete S --project P                                           delete one\n"
    "\n"
    "latchkeyd POSTs every message routed to topic T of project P (a registry's\n"
    "eventNotificationConfigs / stateNotificationConfig) to the endpoint, in Pub/Sub's push\n"
    "format (docs/delivery.md). S and T: 3-255 characters, a letter first, then letters,\n"
    "digits or - _ . ~ %, not starting with goog; also projects/P/subscriptions/S and\n"
    "projects/P/topics/T.\n" SUB_COMMON;

static const char u_create[] =
    "usage: latchkey [--db FILE] subscriptions create S --project P --topic T --push-endpoint URL\n"
    "         [--push-header 'Name: value' | --push-header-file FILE]\n"
    "         [--oidc-service-account EMAIL [--oidc-audience AUD]]\n"
    "         [--dead-letter-topic T2 [--max-delivery-attempts N]]\n"
    "         [--min-backoff SECONDS] [--max-backoff SECONDS] [--ack-deadline SECONDS]\n"
    "         [--retention SECONDS]\n\n"
    "URL: https:// (http:// only to 127.0.0.0/8, [::1] or localhost). Authentication: a static\n"
    "header (its value is never shown again; on the command line it is visible to other users:\n"
    "--push-header-file reads 'Name: value' from FILE) or an OIDC token latchkeyd signs for\n"
    "EMAIL (audience: AUD, default the URL). Retries back off from --min-backoff (default 10,\n"
    "0.001 to 600) to --max-backoff (default 600); a POST unanswered for --ack-deadline (10 to\n"
    "600, default 10) failed. After --max-delivery-attempts (5 to 100, default 5) a message\n"
    "goes to T2's subscriptions. Messages older than --retention (600 to 2678400, default\n"
    "604800: 7 days) are dropped. SECONDS may have up to 3 decimals (0.5). Creates a\n"
    "missing database.\n\n" SUB_COMMON;
static const char u_list[] =
    "usage: latchkey [--db FILE] subscriptions list [--project P] [--spool PATH]\n\n"
    "The push subscriptions (of project P, or LATCHKEY_PROJECT, or all): NAME, PROJECT, TOPIC,\n"
    "ENDPOINT, AUTH; with --spool PATH (the spool file of latchkeyd and the broker) also\n"
    "DEPTH, OLDEST (age of the oldest queued message), DROPPED, DEAD_LETTERED.\n\n" SUB_COMMON;
static const char u_describe[] =
    "usage: latchkey [--db FILE] subscriptions describe S --project P [--spool PATH]\n\n"
    "One push subscription, in Pub/Sub's shape (the header's value is never shown); with\n"
    "--spool PATH also its queue figures.\n\n" SUB_COMMON;
static const char u_delete[] =
    "usage: latchkey [--db FILE] subscriptions delete S --project P\n\n"
    "Deletes a push subscription; latchkeyd stops pushing it and forgets its queue.\n\n" SUB_COMMON;

enum {
    OPT_TOPIC = OPT_FIRST_OWN,
    OPT_ENDPOINT,
    OPT_HEADER,
    OPT_HEADER_FILE,
    OPT_OIDC_EMAIL,
    OPT_OIDC_AUD,
    OPT_DLT,
    OPT_ATTEMPTS,
    OPT_MIN_BACKOFF,
    OPT_MAX_BACKOFF,
    OPT_ACK,
    OPT_RETENTION,
    OPT_SPOOL
};

struct sub_opts {
    const char *topic, *endpoint, *header, *header_file, *oidc_email, *oidc_aud, *dlt, *spool;
    const char *attempts, *min_backoff, *max_backoff, *ack, *retention;
};

/* SECONDS[.FFF][s] as milliseconds: 0, or -1 when malformed or over max_s. */
static int parse_seconds(const char *s, int64_t max_s, int64_t *ms)
{
    int64_t v = 0, frac = 0;
    int digits = 0, fdigits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        v = v * 10 + (*s - '0');
        if (v > max_s)
            return -1;
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, fdigits++) {
            if (fdigits == 3)
                return -1;
            frac = frac * 10 + (*s - '0');
        }
        if (fdigits == 0)
            return -1;
        while (fdigits++ < 3)
            frac *= 10;
    }
    if (*s == 's')
        s++;
    if (digits == 0 || *s != '\0')
        return -1;
    *ms = v * 1000 + frac;
    return *ms > max_s * 1000 ? -1 : 0;
}

static int seconds_opt(const struct admin *a, const char *opt, const char *arg, int64_t max_s, int64_t *ms)
{
    if (arg == NULL)
        return EXIT_OK;
    if (parse_seconds(arg, max_s, ms) != 0)
        return tool_usage_error("%s: %s must be a number of seconds (up to 3 decimals) from 0 to %lld, "
                                "not '%s'",
                                a->cmd, opt, (long long)max_s, tool_shown(arg));
    if (*ms == 0)
        return tool_usage_error("%s: %s 0 is not stored (0 means the default); give at least 0.001", a->cmd,
                                opt);
    return EXIT_OK;
}

/* A Pub/Sub id given as ID or as projects/P/KIND/ID (P must be a->project,
 * or becomes it when --project is not given). *id points into arg. */
static int pubsub_id(struct admin *a, const char *what, const char *kind, const char *arg, const char **id)
{
    size_t klen = strlen(kind);
    const char *p, *slash;
    *id = arg;
    if (strncmp(arg, "projects/", 9) != 0)
        return EXIT_OK;
    p = arg + 9;
    slash = strchr(p, '/');
    if (slash == NULL || strncmp(slash + 1, kind, klen) != 0 || slash[1 + klen] != '/')
        return tool_usage_error("%s: %s '%s' must be ID or projects/P/%s/ID", a->cmd, what, tool_shown(arg),
                                kind);
    if (a->project == NULL) {
        size_t n = (size_t)(slash - p);
        char *copy = malloc(n + 1);
        if (copy == NULL)
            return admin_fail(a, LK_ERR_NOMEM, NULL);
        memcpy(copy, p, n);
        copy[n] = '\0';
        char **nk = realloc(a->keep, (a->nkeep + 1) * sizeof *nk);
        if (nk == NULL) {
            free(copy);
            return admin_fail(a, LK_ERR_NOMEM, NULL);
        }
        a->keep = nk;
        a->keep[a->nkeep++] = copy;
        a->project = copy;
    } else if (strlen(a->project) != (size_t)(slash - p) || strncmp(a->project, p, (size_t)(slash - p)) != 0) {
        return tool_usage_error("%s: %s '%s' is not of project %s (a subscription, its topic and its "
                                "dead-letter topic are of one project)",
                                a->cmd, what, tool_shown(arg), a->project);
    }
    *id = slash + 1 + klen + 1;
    return EXIT_OK;
}

/* "Name: value" (from the command line or a file's first line) into name
 * and value, both malloc'd (value wiped by the caller). */
static int split_header(const struct admin *a, const char *text, size_t len, char **name, char **value)
{
    const char *colon = memchr(text, ':', len), *v, *end = text + len;
    *name = *value = NULL;
    while (end > text && (end[-1] == '\n' || end[-1] == '\r'))
        end--;
    if (colon == NULL || colon == text)
        return tool_usage_error("%s: --push-header must be 'Name: value'", a->cmd);
    for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
        ;
    *name = strndup(text, (size_t)(colon - text));
    *value = strndup(v, (size_t)(end - v));
    if (*name == NULL || *value == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    return EXIT_OK;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        lk_wipe(s, strlen(s));
        free(s);
    }
}

static int cmd_create(struct admin *a, const char *arg, const struct sub_opts *o)
{
    lk_reg_subscription s;
    char *hname = NULL, *hvalue = NULL, why[512] = "";
    uint8_t *file = NULL;
    size_t flen = 0;
    lk_err err;
    int rc;

    memset(&s, 0, sizeof s);
    if ((rc = pubsub_id(a, "subscription", "subscriptions", arg, (const char **)&s.name)) != EXIT_OK)
        return rc;
    if (o->topic == NULL || o->endpoint == NULL)
        return tool_usage_error("%s: --topic and --push-endpoint are required", a->cmd);
    if ((rc = pubsub_id(a, "topic", "topics", o->topic, (const char **)&s.topic)) != EXIT_OK ||
        (o->dlt != NULL &&
         (rc = pubsub_id(a, "dead-letter topic", "topics", o->dlt, (const char **)&s.dead_letter_topic)) !=
             EXIT_OK))
        return rc;
    if (a->project == NULL)
        return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
    if ((rc = admin_check_project(a)) != EXIT_OK)
        return rc;
    s.project = (char *)a->project;
    s.push_endpoint = (char *)o->endpoint;
    if ((o->header != NULL) + (o->header_file != NULL) + (o->oidc_email != NULL) > 1)
        return tool_usage_error("%s: one authentication: --push-header, --push-header-file or "
                                "--oidc-service-account",
                                a->cmd);
    if (o->oidc_aud != NULL && o->oidc_email == NULL)
        return tool_usage_error("%s: --oidc-audience needs --oidc-service-account", a->cmd);
    if (o->attempts != NULL && o->dlt == NULL)
        return tool_usage_error("%s: --max-delivery-attempts needs --dead-letter-topic", a->cmd);
    if (o->attempts != NULL) {
        char *end;
        long n;
        errno = 0;
        n = strtol(o->attempts, &end, 10);
        if (errno != 0 || end == o->attempts || *end != '\0' || n < 5 || n > 100)
            return tool_usage_error("%s: --max-delivery-attempts must be a number from 5 to 100, not '%s'", a->cmd,
                                    tool_shown(o->attempts));
        s.max_delivery_attempts = (int32_t)n;
    }
    if ((rc = seconds_opt(a, "--min-backoff", o->min_backoff, 600, &s.min_backoff_ms)) != EXIT_OK ||
        (rc = seconds_opt(a, "--max-backoff", o->max_backoff, 600, &s.max_backoff_ms)) != EXIT_OK ||
        (rc = seconds_opt(a, "--ack-deadline", o->ack, 600, &s.ack_deadline_ms)) != EXIT_OK ||
        (rc = seconds_opt(a, "--retention", o->retention, 31LL * 86400, &s.retention_ms)) != EXIT_OK)
        return rc;
    /* Only one of the two given: the other keeps its default, as long as
     * that leaves min <= max (the library says so otherwise). */
    if (o->oidc_email != NULL) {
        s.auth = LK_PUSH_AUTH_OIDC;
        s.oidc_email = (char *)o->oidc_email;
        s.oidc_audience = (char *)o->oidc_aud;
    } else if (o->header != NULL || o->header_file != NULL) {
        s.auth = LK_PUSH_AUTH_HEADER;
        if (o->header_file != NULL) {
            if ((rc = admin_read_file(a, "push header", o->header_file, 8192, LK_ERR_REG_LIMIT, &file, &flen)) !=
                EXIT_OK)
                return rc;
            rc = split_header(a, (const char *)file, flen, &hname, &hvalue);
            lk_wipe(file, flen);
            free(file);
        } else {
            rc = split_header(a, o->header, strlen(o->header), &hname, &hvalue);
        }
        if (rc != EXIT_OK)
            goto out;
        s.auth_header_name = hname;
        s.auth_header_value = hvalue;
    }
    if ((rc = admin_open(a, ADMIN_OPEN_CREATE)) != EXIT_OK)
        goto out;
    err = lk_registry_subscription_create(a->reg, &s, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    if (a->json)
        rc = out_json(json_pack("{s:s+++}", "name", "projects/", a->project, "/subscriptions/", s.name));
    else
        printf("Created subscription [projects/%s/subscriptions/%s].\n", a->project, s.name);
out:
    free(hname);
    wipe_free(hvalue);
    return rc;
}

/* Pub/Sub's Duration text: "10s", "0.5s". */
static json_t *duration(int64_t ms)
{
    char b[32];
    if (ms % 1000 == 0)
        snprintf(b, sizeof b, "%llds", (long long)(ms / 1000));
    else
        snprintf(b, sizeof b, "%lld.%03llds", (long long)(ms / 1000), (long long)(ms % 1000));
    return json_string(b);
}

static const char *auth_name(lk_reg_push_auth a)
{
    return a == LK_PUSH_AUTH_HEADER ? "header" : a == LK_PUSH_AUTH_OIDC ? "oidc" : "none";
}

/* The subscription as Pub/Sub shows it; the header's value never. */
static json_t *sub_json(const lk_reg_subscription *s)
{
    json_t *j = json_object(), *push = json_object();
    char b[600];
    if (j == NULL || push == NULL)
        goto fail;
    snprintf(b, sizeof b, "projects/%s/subscriptions/%s", s->project, s->name);
    json_object_set_new(j, "name", json_string(b));
    snprintf(b, sizeof b, "projects/%s/topics/%s", s->project, s->topic);
    json_object_set_new(j, "topic", json_string(b));
    json_object_set_new(push, "pushEndpoint", json_string(s->push_endpoint));
    if (s->auth == LK_PUSH_AUTH_OIDC) {
        json_t *t = json_pack("{s:s}", "serviceAccountEmail", s->oidc_email);
        if (t != NULL && s->oidc_audience != NULL)
            json_object_set_new(t, "audience", json_string(s->oidc_audience));
        json_object_set_new(push, "oidcToken", t);
    } else if (s->auth == LK_PUSH_AUTH_HEADER) {
        json_object_set_new(push, "latchkeyHeader", json_pack("{s:s}", "name", s->auth_header_name));
    }
    json_object_set_new(j, "pushConfig", push);
    push = NULL;
    json_object_set_new(j, "ackDeadlineSeconds", json_integer(s->ack_deadline_ms / 1000));
    json_object_set_new(j, "retryPolicy", json_pack("{s:o,s:o}", "minimumBackoff", duration(s->min_backoff_ms),
                                                    "maximumBackoff", duration(s->max_backoff_ms)));
    if (s->dead_letter_topic != NULL) {
        snprintf(b, sizeof b, "projects/%s/topics/%s", s->project, s->dead_letter_topic);
        json_object_set_new(j, "deadLetterPolicy", json_pack("{s:s,s:i}", "deadLetterTopic", b,
                                                             "maxDeliveryAttempts", (int)s->max_delivery_attempts));
    }
    json_object_set_new(j, "messageRetentionDuration", duration(s->retention_ms));
    json_object_set_new(j, "createTime", out_jtime(s->created));
    return j;
fail:
    json_decref(j);
    json_decref(push);
    return NULL;
}

/* The spool's figures, as GET .../subscriptions/S:stats gives them. */
static json_t *stats_json(const lk_spool_stats *st, int64_t now_ms)
{
    char age[32];
    json_t *j;
    if (st->oldest_ms > 0)
        snprintf(age, sizeof age, "%llds", (long long)((now_ms - st->oldest_ms) / 1000));
    j = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "depth", out_ju64(st->depth), "bytes", out_ju64(st->bytes),
                  "enqueued", out_ju64(st->enqueued), "acked", out_ju64(st->acked), "deadLettered",
                  out_ju64(st->dead_lettered), "dropped", out_ju64(st->dropped), "expired",
                  out_ju64(st->expired));
    if (j != NULL && st->oldest_ms > 0)
        json_object_set_new(j, "oldestUnackedMessageAge", json_string(age));
    return j;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int open_spool(const struct admin *a, const char *path, lk_spool **sp)
{
    char why[512] = "";
    lk_err err;
    *sp = NULL;
    if (path == NULL)
        return EXIT_OK;
    err = lk_spool_open(path, LK_SPOOL_READONLY, a->busy_ms >= 0 ? (int)a->busy_ms : 5000, sp, why, sizeof why);
    if (err != LK_OK) {
        tool_error(a->cmd, err, "%s", why);
        return tool_exit_code(err);
    }
    return EXIT_OK;
}

struct list_ctx {
    struct admin_list x;
    lk_spool *sp;
    int64_t now;
    lk_err err;
    char why[512];
};

static int sub_cb(void *arg, const lk_reg_subscription *s)
{
    struct list_ctx *c = arg;
    lk_spool_stats st;
    char full[600];
    memset(&st, 0, sizeof st);
    if (c->sp != NULL) {
        snprintf(full, sizeof full, "projects/%s/subscriptions/%s", s->project, s->name);
        if ((c->err = lk_spool_stats_get(c->sp, full, &st, c->why, sizeof c->why)) != LK_OK)
            return 1;
    }
    if (c->x.t == NULL) {
        json_t *j = sub_json(s);
        if (j != NULL && c->sp != NULL)
            json_object_set_new(j, "stats", stats_json(&st, c->now));
        if (j == NULL || out_list_item(&c->x.l, j) != EXIT_OK)
            c->x.failed = 1;
    } else {
        char depth[24], age[24], dropped[24], dead[24];
        const char *row[9] = {s->name, s->project, s->topic, s->push_endpoint, auth_name(s->auth),
                              depth, age, dropped, dead};
        snprintf(depth, sizeof depth, "%llu", (unsigned long long)st.depth);
        if (st.oldest_ms > 0)
            snprintf(age, sizeof age, "%llds", (long long)((c->now - st.oldest_ms) / 1000));
        else
            snprintf(age, sizeof age, "-");
        snprintf(dropped, sizeof dropped, "%llu", (unsigned long long)st.dropped);
        snprintf(dead, sizeof dead, "%llu", (unsigned long long)st.dead_lettered);
        if (out_table_row(c->x.t, row) != 0)
            c->x.failed = 1;
    }
    return c->x.failed;
}

static int cmd_list(struct admin *a, const struct sub_opts *o)
{
    static const char *const heads[] = {"NAME", "PROJECT", "TOPIC", "ENDPOINT", "AUTH",
                                        "DEPTH", "OLDEST", "DROPPED", "DEAD_LETTERED"};
    struct list_ctx c;
    char why[512] = "";
    lk_err err;
    int rc;

    memset(&c, 0, sizeof c);
    if (a->project != NULL && (rc = admin_check_project(a)) != EXIT_OK)
        return rc;
    if ((rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK || (rc = open_spool(a, o->spool, &c.sp)) != EXIT_OK)
        return rc;
    c.now = now_ms();
    if ((rc = admin_list_begin(a, &c.x, o->spool != NULL ? 9 : 5, heads)) != EXIT_OK) {
        lk_spool_close(c.sp);
        return rc;
    }
    err = lk_registry_subscription_list(a->reg, a->project, sub_cb, &c, why, sizeof why);
    if (err == LK_OK && c.err != LK_OK) {
        err = c.err;
        snprintf(why, sizeof why, "spool %.200s: %.280s", o->spool, c.why);
    }
    lk_spool_close(c.sp);
    return admin_list_end(a, &c.x, err, why);
}

/* describe's and delete's start: the subscription's id, the project, the
 * registry opened with mode. EXIT_OK, or the exit code (said). */
static int one_sub(struct admin *a, const char *arg, int mode, const char **name)
{
    int rc;
    if ((rc = pubsub_id(a, "subscription", "subscriptions", arg, name)) != EXIT_OK)
        return rc;
    if (a->project == NULL)
        return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
    if ((rc = admin_check_project(a)) != EXIT_OK)
        return rc;
    return admin_open(a, mode);
}

static int cmd_describe(struct admin *a, const char *arg, const struct sub_opts *o)
{
    lk_reg_subscription s;
    lk_spool_stats st;
    lk_spool *sp = NULL;
    const char *name;
    char why[512] = "", full[600];
    json_t *j;
    lk_err err;
    int rc;

    if ((rc = one_sub(a, arg, ADMIN_OPEN_READ, &name)) != EXIT_OK)
        return rc;
    err = lk_registry_subscription_get(a->reg, a->project, name, &s, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    j = sub_json(&s);
    lk_reg_subscription_free(&s);
    if (j == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    if (o->spool != NULL) {
        if ((rc = open_spool(a, o->spool, &sp)) != EXIT_OK) {
            json_decref(j);
            return rc;
        }
        snprintf(full, sizeof full, "projects/%s/subscriptions/%s", a->project, name);
        err = lk_spool_stats_get(sp, full, &st, why, sizeof why);
        lk_spool_close(sp);
        if (err != LK_OK) {
            json_decref(j);
            tool_error(a->cmd, err, "spool %s: %s", tool_shown(o->spool), why);
            return tool_exit_code(err);
        }
        json_object_set_new(j, "stats", stats_json(&st, now_ms()));
    }
    return a->json ? out_json(j) : out_yaml(j);
}

static int cmd_delete(struct admin *a, const char *arg)
{
    const char *name;
    char why[512] = "";
    lk_err err;
    int rc;

    if ((rc = one_sub(a, arg, ADMIN_OPEN_WRITE, &name)) != EXIT_OK)
        return rc;
    err = lk_registry_subscription_delete(a->reg, a->project, name, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    if (a->json)
        return out_json(json_object());
    printf("Deleted subscription [projects/%s/subscriptions/%s].\n", a->project, name);
    return EXIT_OK;
}

static int run(struct admin *a, const char *sub, int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, 0, OPT_DB},
        {"project", required_argument, 0, OPT_PROJECT},
        {"format", required_argument, 0, OPT_FORMAT},
        {"busy-timeout", required_argument, 0, OPT_BUSY_TIMEOUT},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"topic", required_argument, 0, OPT_TOPIC},
        {"push-endpoint", required_argument, 0, OPT_ENDPOINT},
        {"push-header", required_argument, 0, OPT_HEADER},
        {"push-header-file", required_argument, 0, OPT_HEADER_FILE},
        {"oidc-service-account", required_argument, 0, OPT_OIDC_EMAIL},
        {"oidc-audience", required_argument, 0, OPT_OIDC_AUD},
        {"dead-letter-topic", required_argument, 0, OPT_DLT},
        {"max-delivery-attempts", required_argument, 0, OPT_ATTEMPTS},
        {"min-backoff", required_argument, 0, OPT_MIN_BACKOFF},
        {"max-backoff", required_argument, 0, OPT_MAX_BACKOFF},
        {"ack-deadline", required_argument, 0, OPT_ACK},
        {"retention", required_argument, 0, OPT_RETENTION},
        {"spool", required_argument, 0, OPT_SPOOL},
        {0, 0, 0, 0}};
    struct sub_opts o;
    const char *name = NULL;
    int c, rc = EXIT_OK, create = strcmp(sub, "create") == 0, list = strcmp(sub, "list") == 0;

    memset(&o, 0, sizeof o);
    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        const char **slot = NULL;
        switch (c) {
        case OPT_TOPIC: slot = &o.topic; break;
        case OPT_ENDPOINT: slot = &o.endpoint; break;
        case OPT_HEADER: slot = &o.header; break;
        case OPT_HEADER_FILE: slot = &o.header_file; break;
        case OPT_OIDC_EMAIL: slot = &o.oidc_email; break;
        case OPT_OIDC_AUD: slot = &o.oidc_aud; break;
        case OPT_DLT: slot = &o.dlt; break;
        case OPT_ATTEMPTS: slot = &o.attempts; break;
        case OPT_MIN_BACKOFF: slot = &o.min_backoff; break;
        case OPT_MAX_BACKOFF: slot = &o.max_backoff; break;
        case OPT_ACK: slot = &o.ack; break;
        case OPT_RETENTION: slot = &o.retention; break;
        case OPT_SPOOL: slot = &o.spool; break;
        default: fputs(a->usage, stderr); return EXIT_USAGE;
        }
        /* Each option belongs to some commands only. */
        if ((c == OPT_SPOOL && (create || strcmp(sub, "delete") == 0)) || (c != OPT_SPOOL && !create))
            return tool_usage_error("%s: --%s is not an option of this command", a->cmd,
                                    opts[c - OPT_TOPIC + 6].name);
        *slot = optarg;
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (!list && optind < argc)
        name = argv[optind++];
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, tool_shown(argv[optind]));
    if (!list && name == NULL)
        return tool_usage_error("%s: which subscription? (S)", a->cmd);
    if (create)
        return cmd_create(a, name, &o);
    if (strcmp(sub, "describe") == 0)
        return cmd_describe(a, name, &o);
    if (strcmp(sub, "delete") == 0)
        return cmd_delete(a, name);
    return cmd_list(a, &o);
}

int cmd_subscriptions(int argc, char **argv)
{
    struct admin a;
    char cmd[64];
    const char *sub, *usage;
    int rc;

    if ((rc = admin_group_usage(argc, argv, 1, subs_usage)) != -1)
        return rc;
    sub = argv[1];
    if (strcmp(sub, "create") == 0)
        usage = u_create;
    else if (strcmp(sub, "list") == 0)
        usage = u_list;
    else if (strcmp(sub, "describe") == 0)
        usage = u_describe;
    else if (strcmp(sub, "delete") == 0)
        usage = u_delete;
    else
        return tool_usage_error("subscriptions: unknown command '%s' (create, list, describe, delete)",
                                tool_shown(sub));
    snprintf(cmd, sizeof cmd, "subscriptions %s", sub);
    admin_init(&a, cmd, usage);
    a.local_only = "the tool manages push subscriptions in the registry file only (latchkeyd serves them at "
                   "/v1/projects/P/subscriptions/S; give --db)";
    rc = run(&a, sub, argc - 1, argv + 1);
    admin_close(&a);
    return out_finish(rc);
}
