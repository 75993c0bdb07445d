/*
 * latchkey devices import FILE|- --registry R --project P --region L
 *
 * Many devices in one transaction, from JSON lines (one device per line; the
 * format is in import_usage and docs/cli.md). Every bad line is reported;
 * if any line is bad nothing is imported. A crash or kill before the commit
 * leaves the registry as it was (the library's transaction).
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"

#define LINE_MAX_BYTES (1024u * 1024u)

static const char import_usage[] =
    "usage: latchkey [--db FILE] devices import FILE|- --registry R --project P --region L\n"
    "                [--format text|json] [--busy-timeout MS]\n"
    "\n"
    "Creates every device of FILE (or standard input) in one transaction: either all of them\n"
    "or, if any line is refused, none. Every refused line is reported (line number, device\n"
    "id, reason). Progress is shown on a terminal only.\n"
    "\n"
    "FILE holds JSON lines (UTF-8), one device object per line, at most 1 MiB each; blank\n"
    "lines are skipped:\n"
    "  {\"id\": \"dev-1\",                                   required\n"
    "   \"credentials\": [{\"publicKey\": {\"format\": \"ES256_PEM\", \"key\": \"-----BEGIN ...\"},\n"
    "                    \"expirationTime\": \"2030-01-01T00:00:00Z\"}],   at most 3\n"
    "   \"blocked\": false,\n"
    "   \"metadata\": {\"key\": \"value\"},\n"
    "   \"config\": \"BASE64\"}                              the initial config (version 1)\n"
    "A credential may also be flat: {\"format\": \"ES256_PEM\", \"key\": \"...\", \"expirationTime\": ...};\n"
    "format is RSA_PEM, RSA_X509_PEM, ES256_PEM or ES256_X509_PEM; expirationTime is RFC 3339\n"
    "or seconds since 1970 (absent, 0 or 1970-01-01T00:00:00Z = never). config may also be\n"
    "IoT Core's {\"binaryData\": \"BASE64\"}. IoT Core's output-only fields (name, numId, state,\n"
    "last*Time, lastErrorStatus, config.version, ...) are ignored, so 'devices list --format json'\n"
    "output (one object per line) imports; any other field is refused.\n";

/* Output-only fields of IoT Core's Device, ignored on import. */
static const char *const ignored_fields[] = {
    "name", "numId", "lastHeartbeatTime", "lastEventTime", "lastStateTime", "lastConfigAckTime",
    "lastConfigSendTime", "lastErrorTime", "lastErrorStatus", "state", NULL};

struct import {
    struct admin *a;
    json_t *errors;        /* --format json: the refused lines */
    unsigned long nerrors;
    int tty;
    struct timespec start, last_progress;
};

static double elapsed(const struct timespec *from)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - from->tv_sec) + (double)(now.tv_nsec - from->tv_nsec) / 1e9;
}

/* 1 when msg already names the device ('ID'), as the registry's reasons do. */
static int mentions(const char *msg, const char *id)
{
    const char *p = msg;
    size_t n = strlen(id);
    while ((p = strchr(p, '\'')) != NULL) {
        if (strncmp(p + 1, id, n) == 0 && p[1 + n] == '\'')
            return 1;
        p++;
    }
    return 0;
}

/* One refused line: on standard error, and in the JSON summary. */
static void refuse(struct import *im, unsigned long line, const char *id, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void refuse(struct import *im, unsigned long line, const char *id, lk_err err, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    im->nerrors++;
    if (im->tty)
        fputs("\r\033[K", stderr);
    if (id != NULL && !mentions(msg, id))
        fprintf(stderr, "latchkey: devices import: line %lu: device '%s': %s (%s)\n", line, id, msg,
                lk_errname(err));
    else
        fprintf(stderr, "latchkey: devices import: line %lu: %s (%s)\n", line, msg, lk_errname(err));
    if (im->errors != NULL) {
        json_t *e = json_pack("{s:I,s:s}", "line", (json_int_t)line, "error", lk_errname(err));
        if (e != NULL) {
            if (id != NULL)
                json_object_set_new(e, "id", out_jtext(id, strlen(id)));
            json_object_set_new(e, "message", out_jtext(msg, strlen(msg)));
            json_array_append_new(im->errors, e);
        }
    }
}

static void progress(struct import *im, unsigned long line, unsigned long ndev, int force)
{
    double t;
    if (!im->tty)
        return;
    if (!force && elapsed(&im->last_progress) < 0.2)
        return;
    clock_gettime(CLOCK_MONOTONIC, &im->last_progress);
    t = elapsed(&im->start);
    fprintf(stderr, "\r\033[Kimporting: line %lu, %lu devices, %.0f devices/s", line, ndev,
            t > 0 ? (double)ndev / t : 0.0);
    fflush(stderr);
}

/* Read one line into buf (at most LINE_MAX_BYTES). Returns 0 at EOF, 1 for a
 * line, 2 for a line that is too long (consumed). */
static int read_line(FILE *f, char *buf, size_t *len)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (n == LINE_MAX_BYTES) {
            while ((c = getc_unlocked(f)) != EOF && c != '\n')
                ;
            *len = n;
            return 2;
        }
        buf[n++] = (char)c;
    }
    if (c == EOF && n == 0)
        return 0;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return 1;
}

static int blank(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* What one line describes; pointers into the parsed JSON (or owned: config). */
struct line_dev {
    lk_reg_device_spec spec;
    lk_reg_credential creds[16];
    lk_reg_metadata *meta;
    uint8_t *config;
};

static int parse_time_field(json_t *v, int64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v))
        return admin_parse_time(json_string_value(v), out);
    return -1;
}

static int parse_credential(struct import *im, unsigned long line, const char *id, json_t *c, unsigned i,
                            lk_reg_credential *out)
{
    json_t *pk = json_object_get(c, "publicKey"), *fmt, *key, *exp = json_object_get(c, "expirationTime");
    const char *k;
    json_t *v;

    if (!json_is_object(c)) {
        refuse(im, line, id, LK_ERR_REG_INVALID, "credential %u is not an object", i);
        return -1;
    }
    json_object_foreach(c, k, v) {
        if (strcmp(k, "expirationTime") != 0 &&
            (pk != NULL ? strcmp(k, "publicKey") != 0 : strcmp(k, "format") != 0 && strcmp(k, "key") != 0)) {
            refuse(im, line, id, LK_ERR_REG_INVALID,
                   "credential %u: unknown field '%s' (publicKey {format, key} or format and key, "
                   "and expirationTime)", i, k);
            return -1;
        }
    }
    if (pk != NULL) {
        if (!json_is_object(pk)) {
            refuse(im, line, id, LK_ERR_REG_INVALID, "credential %u: publicKey must be an object {format, key}", i);
            return -1;
        }
        json_object_foreach(pk, k, v) {
            if (strcmp(k, "format") != 0 && strcmp(k, "key") != 0) {
                refuse(im, line, id, LK_ERR_REG_INVALID, "credential %u: publicKey: unknown field '%s' (format, key)",
                       i, k);
                return -1;
            }
        }
        c = pk;
    }
    fmt = json_object_get(c, "format");
    key = json_object_get(c, "key");
    if (!json_is_string(fmt) || !json_is_string(key)) {
        refuse(im, line, id, LK_ERR_REG_INVALID, "credential %u needs format and key strings", i);
        return -1;
    }
    out->format = admin_cred_type(json_string_value(fmt));
    if (out->format == LK_CRED_UNSPECIFIED) {
        refuse(im, line, id, LK_ERR_REG_INVALID,
               "credential %u: unknown format '%s' (RSA_PEM, RSA_X509_PEM, ES256_PEM, ES256_X509_PEM)", i,
               json_string_value(fmt));
        return -1;
    }
    out->pem = (char *)json_string_value(key);
    out->expires = 0;
    if (exp != NULL && !json_is_null(exp) && parse_time_field(exp, &out->expires) != 0) {
        refuse(im, line, id, LK_ERR_REG_INVALID,
               "credential %u: expirationTime must be RFC 3339 (2030-01-02T03:04:05Z) or seconds since 1970", i);
        return -1;
    }
    return 0;
}

/* Fill d from the object o; reports and returns -1 when the line is bad. */
static int parse_device(struct import *im, unsigned long line, json_t *o, struct line_dev *d)
{
    json_t *id = json_object_get(o, "id"), *v;
    const char *k, *ids;
    size_t i;

    if (!json_is_string(id)) {
        refuse(im, line, NULL, LK_ERR_REG_INVALID, "\"id\" (a string) is required");
        return -1;
    }
    ids = json_string_value(id);
    d->spec.id = ids;
    json_object_foreach(o, k, v) {
        unsigned j;
        int known = strcmp(k, "id") == 0 || strcmp(k, "credentials") == 0 || strcmp(k, "blocked") == 0 ||
                    strcmp(k, "metadata") == 0 || strcmp(k, "config") == 0;
        for (j = 0; !known && ignored_fields[j] != NULL; j++)
            known = strcmp(k, ignored_fields[j]) == 0;
        if (!known) {
            refuse(im, line, ids, LK_ERR_REG_INVALID,
                   "unknown field '%s' (id, credentials, blocked, metadata, config)", k);
            return -1;
        }
    }
    if ((v = json_object_get(o, "blocked")) != NULL) {
        if (!json_is_boolean(v)) {
            refuse(im, line, ids, LK_ERR_REG_INVALID, "\"blocked\" must be true or false");
            return -1;
        }
        d->spec.blocked = json_is_true(v);
    }
    if ((v = json_object_get(o, "credentials")) != NULL && !json_is_null(v)) {
        json_t *c;
        if (!json_is_array(v)) {
            refuse(im, line, ids, LK_ERR_REG_INVALID, "\"credentials\" must be an array");
            return -1;
        }
        if (json_array_size(v) > sizeof d->creds / sizeof d->creds[0]) {
            refuse(im, line, ids, LK_ERR_REG_LIMIT, "%zu credentials: a device has at most %u",
                   json_array_size(v), LK_DEVICE_CREDENTIALS_MAX);
            return -1;
        }
        json_array_foreach(v, i, c) {
            if (parse_credential(im, line, ids, c, (unsigned)i, &d->creds[i]) != 0)
                return -1;
        }
        d->spec.creds = d->creds;
        d->spec.ncreds = (unsigned)json_array_size(v);
    }
    if ((v = json_object_get(o, "metadata")) != NULL && !json_is_null(v)) {
        json_t *mv;
        unsigned n = 0;
        if (!json_is_object(v)) {
            refuse(im, line, ids, LK_ERR_REG_INVALID, "\"metadata\" must be an object of strings");
            return -1;
        }
        d->meta = calloc(json_object_size(v) + 1, sizeof *d->meta);
        if (d->meta == NULL) {
            refuse(im, line, ids, LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
            return -1;
        }
        json_object_foreach(v, k, mv) {
            if (!json_is_string(mv)) {
                refuse(im, line, ids, LK_ERR_REG_INVALID, "metadata '%s': values are strings", k);
                return -1;
            }
            if (memchr(json_string_value(mv), '\0', json_string_length(mv)) != NULL) {
                refuse(im, line, ids, LK_ERR_REG_INVALID, "metadata '%s': the value contains a NUL character", k);
                return -1;
            }
            d->meta[n].key = (char *)k;
            d->meta[n].value = (char *)json_string_value(mv);
            d->meta[n].value_len = json_string_length(mv);
            n++;
        }
        d->spec.metadata = d->meta;
        d->spec.nmetadata = n;
    }
    if ((v = json_object_get(o, "config")) != NULL && !json_is_null(v)) {
        json_t *b = v;
        size_t len = 0;
        if (json_is_object(v)) {
            const char *ck;
            json_t *cv;
            json_object_foreach(v, ck, cv) {
                if (strcmp(ck, "binaryData") != 0 && strcmp(ck, "version") != 0 &&
                    strcmp(ck, "cloudUpdateTime") != 0 && strcmp(ck, "deviceAckTime") != 0) {
                    refuse(im, line, ids, LK_ERR_REG_INVALID, "config: unknown field '%s' (binaryData)", ck);
                    return -1;
                }
            }
            b = json_object_get(v, "binaryData");
        }
        if (b != NULL && !json_is_string(b)) {
            refuse(im, line, ids, LK_ERR_REG_INVALID,
                   "\"config\" must be a base64 string or an object {\"binaryData\": base64}");
            return -1;
        }
        if (b != NULL &&
            out_b64_decode(json_string_value(b), json_string_length(b), &d->config, &len) != 0) {
            refuse(im, line, ids, LK_ERR_REG_INVALID, "\"config\" is not base64 (RFC 4648, standard or URL alphabet)");
            return -1;
        }
        d->spec.config = d->config;
        d->spec.config_len = len;
    }
    return 0;
}

/* Refusals that concern one device; anything else ends the import. */
static int per_device(lk_err err)
{
    switch (err) {
    case LK_ERR_REG_EXISTS: case LK_ERR_REG_INVALID: case LK_ERR_REG_LIMIT: case LK_ERR_REG_CERT:
    case LK_ERR_CRED_INVALID: case LK_ERR_KEY_WEAK: case LK_ERR_ENCODING: case LK_ERR_ARG:
    case LK_ERR_TOO_MANY:
        return 1;
    default:
        return 0;
    }
}

int lk_cmd_devices_import(int argc, char **argv)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, {0, 0, 0, 0}};
    struct admin a;
    struct import im;
    const char *path = NULL;
    char why[512] = "";
    char *buf = NULL;
    FILE *f = NULL;
    unsigned long line = 0, ndev = 0;
    int c, rc = EXIT_OK, begun = 0;
    lk_err err;

    admin_init(&a, "devices import", import_usage);
    memset(&im, 0, sizeof im);
    im.a = &a;
    optind = 1;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        int r = admin_common_opt(&a, c, optarg);
        if (r == ADMIN_HELP)
            return EXIT_OK;
        if (r != EXIT_OK)
            return r < 0 ? EXIT_USAGE : r;
    }
    if (optind < argc)
        path = argv[optind++];
    if (path == NULL)
        return lk_tool_usage_error("devices import: give the FILE of JSON lines (or - for standard input)");
    if (optind < argc)
        return lk_tool_usage_error("devices import: unexpected argument '%s'", argv[optind]);
    if ((rc = admin_resolve(&a, NULL, 1, NULL)) != EXIT_OK)
        goto out;
    f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        lk_tool_error(a.cmd, LK_ERR_IO, "import file %s: %s", path, strerror(e));
        rc = e == ENOENT || e == ENOTDIR ? EXIT_NOT_FOUND : EXIT_FAIL;
        goto out;
    }
    buf = malloc(LINE_MAX_BYTES + 1);
    if (buf == NULL) {
        rc = admin_fail(&a, LK_ERR_NOMEM, NULL);
        goto out;
    }
    if ((rc = admin_open(&a, 0)) != EXIT_OK)
        goto out;
    if (a.json && (im.errors = json_array()) == NULL) {
        rc = admin_fail(&a, LK_ERR_NOMEM, NULL);
        goto out;
    }
    im.tty = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &im.start);
    im.last_progress = im.start;

    err = lk_registry_import_begin(a.reg, &a.name, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(&a, err, why);
        goto out;
    }
    begun = 1;
    for (;;) {
        struct line_dev d;
        json_error_t jerr;
        json_t *o;
        size_t len = 0;
        uint64_t num_id = 0;
        int r = read_line(f, buf, &len);
        if (r == 0)
            break;
        line++;
        if (r == 2) {
            refuse(&im, line, NULL, LK_ERR_REG_LIMIT, "longer than %u bytes, the most a line may hold",
                   LINE_MAX_BYTES);
            continue;
        }
        if (blank(buf, len))
            continue;
        o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (o == NULL) {
            refuse(&im, line, NULL, LK_ERR_REG_INVALID, "not valid JSON: %s (column %d)", jerr.text, jerr.column);
            continue;
        }
        if (!json_is_object(o)) {
            refuse(&im, line, NULL, LK_ERR_REG_INVALID, "not a JSON object (one device object per line)");
            json_decref(o);
            continue;
        }
        memset(&d, 0, sizeof d);
        if (parse_device(&im, line, o, &d) == 0) {
            why[0] = '\0';
            err = lk_registry_import_add(a.reg, &d.spec, &num_id, why, sizeof why);
            if (err == LK_OK) {
                ndev++;
            } else if (per_device(err)) {
                refuse(&im, line, d.spec.id, err, "%s", why[0] ? why : lk_strerror(err));
            } else {
                if (im.tty)
                    fputs("\r\033[K", stderr);
                lk_tool_error(a.cmd, err, "line %lu: %s; nothing was imported", line,
                              why[0] ? why : lk_strerror(err));
                rc = admin_exit_code(err);
            }
        }
        free(d.meta);
        free(d.config);
        json_decref(o);
        if (rc != EXIT_OK)
            goto out;
        if ((line & 255u) == 0)
            progress(&im, line, ndev, 0);
    }
    if (ferror(f)) {
        lk_tool_error(a.cmd, LK_ERR_IO, "%s: read error; nothing was imported", path);
        rc = EXIT_FAIL;
        goto out;
    }
    if (im.nerrors > 0) {
        if (im.tty)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "latchkey: devices import: %lu of %lu lines refused; nothing was imported\n",
                im.nerrors, line);
        if (a.json) {
            json_t *s = json_pack("{s:i,s:I,s:I,s:O}", "imported", 0, "lines", (json_int_t)line, "refused",
                                  (json_int_t)im.nerrors, "errors", im.errors);
            out_json(s);
        }
        rc = EXIT_IMPORT;
        goto out;
    }
    if (im.tty) {
        fprintf(stderr, "\r\033[Kcommitting %lu devices...", ndev);
        fflush(stderr);
    }
    err = lk_registry_import_commit(a.reg, why, sizeof why);
    begun = 0;
    if (im.tty)
        fputs("\r\033[K", stderr);
    if (err != LK_OK) {
        lk_tool_error(a.cmd, err, "commit: %s; nothing was imported", why[0] ? why : lk_strerror(err));
        rc = admin_exit_code(err);
        goto out;
    }
    {
        double t = elapsed(&im.start);
        double rate = t > 0 ? (double)ndev / t : 0.0;
        if (a.json) {
            json_t *s = json_pack("{s:I,s:I,s:s,s:f,s:f}", "imported", (json_int_t)ndev, "lines", (json_int_t)line,
                                  "registry", a.registry, "seconds", t, "devicesPerSecond", rate);
            rc = out_json(s);
        } else {
            printf("Imported %lu devices into registry [%s] in %.2f s (%.0f devices/s).\n", ndev, a.registry, t,
                   rate);
        }
    }
out:
    if (begun)
        lk_registry_import_abort(a.reg);
    if (f != NULL && f != stdin)
        fclose(f);
    free(buf);
    json_decref(im.errors);
    admin_close(&a);
    return out_finish(rc);
}
