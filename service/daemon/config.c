/*
 * config.c — latchkeyd's settings: defaults, the config file
 * (/etc/latchkey/latchkeyd.conf: "key value" lines, # comments), and the
 * same keys as command-line options (docs/daemon.md, "Configuration").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

#define LINE_MAX_BYTES 4096

void lkd_config_defaults(struct lkd_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_body = 1024 * 1024;      /* a device with 3 certificates and 256 KB of metadata fits */
    c->max_headers = 16 * 1024;
    c->io_timeout = 30;
    c->request_timeout = 60;
    c->command_wait_ms = 5000;
    c->drain_seconds = 10;
    c->access_token_ttl = 3600;     /* Google's own access tokens live an hour */
    c->publish_wait_ms = 5000;
    c->bridge_max_pending = 10000;
    /* the broker plugin's defaults (docs/plugin.md): one policy for both surfaces */
    c->skew = LK_VERIFY_SKEW;
    c->max_token_lifetime = LK_VERIFY_MAX_LIFETIME;
    c->max_token_length = LK_VERIFY_MAX_LEN;
    c->jit_max_token_length = LK_VERIFY_JIT_MAX_LEN;
    c->jit_per_minute = 60;
    c->jit_burst = 20;
    c->token_cache = 65536;
    c->device_cache = 65536;
    c->base64_padding = 1;
    c->push_max_in_flight = 64;
    c->metrics_sample_seconds = 60;
}

static int set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (s == NULL)
        return -1;
    free(*dst);
    *dst = s;
    return 0;
}

static int set_uint(unsigned *dst, const char *v, unsigned min, unsigned max)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n < min || n > max)
        return -1;
    *dst = (unsigned)n;
    return 0;
}

static int set_bool(int *dst, const char *v)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
        *dst = 1;
    else if (strcmp(v, "off") == 0 || strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
        *dst = 0;
    else
        return -1;
    return 0;
}

int lkd_config_set(struct lkd_config *c, const char *key, const char *value, char *why, size_t why_size)
{
    struct { const char *key; char **s; unsigned *u; unsigned min, max; } keys[] = {
        {"registry", &c->registry, NULL, 0, 0},
        {"admin_listen", &c->admin_listen, NULL, 0, 0},
        {"tls_cert", &c->tls_cert, NULL, 0, 0},
        {"tls_key", &c->tls_key, NULL, 0, 0},
        {"token_uri", &c->token_uri, NULL, 0, 0},
        {"port_file", &c->port_file, NULL, 0, 0},
        {"pid_file", &c->pid_file, NULL, 0, 0},
        {"bench_static", &c->bench_static, NULL, 0, 0},
        {"device_listen", &c->device_listen, NULL, 0, 0},
        {"device_port_file", &c->device_port_file, NULL, 0, 0},
        {"device_tls_cert", &c->device_tls_cert, NULL, 0, 0},
        {"device_tls_key", &c->device_tls_key, NULL, 0, 0},
        {"broker", &c->broker, NULL, 0, 0},
        {"broker_ca", &c->broker_ca, NULL, 0, 0},
        {"bridge_name", &c->bridge_name, NULL, 0, 0},
        {"spool", &c->spool, NULL, 0, 0},
        {"push_ca", &c->push_ca, NULL, 0, 0},
        {"push_oidc_key", &c->push_oidc_key, NULL, 0, 0},
        {"push_oidc_issuer", &c->push_oidc_issuer, NULL, 0, 0},
        {"push_max_in_flight", NULL, &c->push_max_in_flight, 1, 1000},
        {"metrics_file", &c->metrics_file, NULL, 0, 0},
        {"metrics_sample_seconds", NULL, &c->metrics_sample_seconds, 1, 60},
        {"publish_wait_ms", NULL, &c->publish_wait_ms, 100, 60000},
        {"bridge_max_pending", NULL, &c->bridge_max_pending, 1, 1000000},
        {"skew", NULL, &c->skew, 0, LK_VERIFY_MAX_SKEW},
        {"max_token_lifetime", NULL, &c->max_token_lifetime, 1, LK_VERIFY_MAX_LIFETIME * 7},
        {"max_token_length", NULL, &c->max_token_length, 1, LK_VERIFY_MAX_LEN_LIMIT},
        {"jit_max_token_length", NULL, &c->jit_max_token_length, 1, LK_VERIFY_MAX_LEN_LIMIT},
        {"jit_per_minute", NULL, &c->jit_per_minute, 1, 600000},
        {"jit_burst", NULL, &c->jit_burst, 1, 100000},
        {"token_cache", NULL, &c->token_cache, 0, 1u << 24},
        {"device_cache", NULL, &c->device_cache, 16, 1u << 24},
        {"max_body", NULL, &c->max_body, 4096, 64u * 1024 * 1024},
        {"max_headers", NULL, &c->max_headers, 1024, 1024 * 1024},
        {"io_timeout", NULL, &c->io_timeout, 1, 3600},
        {"request_timeout", NULL, &c->request_timeout, 1, 3600},
        {"command_wait_ms", NULL, &c->command_wait_ms, 100, 60000},
        {"drain_seconds", NULL, &c->drain_seconds, 0, 600},
        {"access_token_ttl", NULL, &c->access_token_ttl, 60, 3600},
    };
    if (strcmp(key, "plain_http") == 0 || strcmp(key, "verbose") == 0 || strcmp(key, "broker_plain") == 0) {
        int *b = strcmp(key, "verbose") == 0 ? &c->verbose
                 : strcmp(key, "broker_plain") == 0 ? &c->broker_plain : &c->plain_http;
        if (set_bool(b, value) == 0)
            return 0;
        snprintf(why, why_size, "%s must be on or off", key);
        return -1;
    }
    if (strcmp(key, "metrics_allow_unauthenticated") == 0) {
        int on = 0;
        if (strcmp(value, "loopback") == 0)
            c->metrics_unauthenticated = 1;
        else if (set_bool(&on, value) == 0)
            c->metrics_unauthenticated = on ? 2 : 0;
        else {
            snprintf(why, why_size, "metrics_allow_unauthenticated must be off, loopback or on");
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "base64_padding") == 0) {
        /* the plugin's words: allow or refuse '=' padding in tokens */
        if (strcmp(value, "allow") == 0 || strcmp(value, "refuse") == 0) {
            c->base64_padding = strcmp(value, "allow") == 0;
            return 0;
        }
        snprintf(why, why_size, "base64_padding must be allow or refuse");
        return -1;
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strcmp(key, keys[i].key) != 0)
            continue;
        if (keys[i].s != NULL) {
            if (value[0] == '\0') {
                snprintf(why, why_size, "%s needs a value", key);
                return -1;
            }
            if (set_str(keys[i].s, value) == 0)
                return 0;
            snprintf(why, why_size, "out of memory");
            return -1;
        }
        if (set_uint(keys[i].u, value, keys[i].min, keys[i].max) == 0)
            return 0;
        snprintf(why, why_size, "%s must be a whole number from %u to %u", key, keys[i].min, keys[i].max);
        return -1;
    }
    snprintf(why, why_size, "unknown setting \"%.64s\"", key);
    return -1;
}

int lkd_hostport(const char *s, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return -1;
    size_t n = (size_t)(colon - s);
    const char *h = s;
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= host_size)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

int lkd_config_file(struct lkd_config *c, const char *path, char *why, size_t why_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, why_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[LINE_MAX_BYTES];
    unsigned lineno = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(why, why_size, "%s:%u: line longer than %d bytes", path, lineno, LINE_MAX_BYTES - 1);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *sp = s + strcspn(s, " \t");
        if (*sp != '\0')
            *sp++ = '\0';
        char inner[512];
        if (lkd_config_set(c, s, trim(sp), inner, sizeof inner) != 0) {
            snprintf(why, why_size, "%s:%u: %s", path, lineno, inner);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

void lkd_config_free(struct lkd_config *c)
{
    free(c->registry);
    free(c->admin_listen);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->token_uri);
    free(c->port_file);
    free(c->pid_file);
    free(c->bench_static);
    free(c->device_listen);
    free(c->device_port_file);
    free(c->device_tls_cert);
    free(c->device_tls_key);
    free(c->broker);
    free(c->broker_ca);
    free(c->bridge_name);
    free(c->spool);
    free(c->push_ca);
    free(c->push_oidc_key);
    free(c->push_oidc_issuer);
    free(c->metrics_file);
    memset(c, 0, sizeof *c);
}
