/*
 * The registry administration commands: what they share — options, the
 * database, resource names, files, gcloud's KEY=VALUE arguments, times.
 * main.c dispatches `latchkey [--db FILE] registries|devices|backends ...`.
 */
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "api.h"
#include "regops.h"

const char *admin_db;
const char *admin_api, *admin_key_file, *admin_ca_file;

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

void admin_init(struct admin *a, const char *cmd, const char *usage)
{
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->usage = usage;
    a->db = admin_db != NULL ? admin_db : env_or_null("LATCHKEY_DB");
    a->db_level = admin_db != NULL ? 2 : 1;
    a->api_url = admin_api != NULL ? admin_api : env_or_null("LATCHKEY_API");
    a->api_level = admin_api != NULL ? 2 : 1;
    a->key_file = admin_key_file != NULL ? admin_key_file : env_or_null("LATCHKEY_KEY_FILE");
    a->ca_file = admin_ca_file != NULL ? admin_ca_file : env_or_null("LATCHKEY_CA_FILE");
    a->project = env_or_null("LATCHKEY_PROJECT");
    a->location = env_or_null("LATCHKEY_REGION");
    a->busy_ms = -1;
}

int admin_common_opt(struct admin *a, int c, const char *arg)
{
    switch (c) {
    case OPT_DB: a->db = arg; a->db_level = 2; return EXIT_OK;
    case OPT_API: a->api_url = arg; a->api_level = 2; return EXIT_OK;
    case OPT_API_KEY_FILE: a->key_file = arg; return EXIT_OK;
    case OPT_API_CA_FILE: a->ca_file = arg; return EXIT_OK;
    case OPT_PROJECT: a->project = arg; return EXIT_OK;
    case OPT_REGION: a->location = arg; return EXIT_OK;
    case OPT_REGISTRY: a->registry = arg; return EXIT_OK;
    case OPT_DEVICE: a->device = arg; return EXIT_OK;
    case OPT_FORMAT:
        if (strcmp(arg, "json") == 0)
            a->json = 1;
        else if (strcmp(arg, "text") == 0 || strcmp(arg, "table") == 0 || strcmp(arg, "yaml") == 0)
            a->json = 0;
        else
            return tool_usage_error("%s: --format must be json or text, not '%s'", a->cmd, tool_shown(arg));
        return EXIT_OK;
    case OPT_BUSY_TIMEOUT:
        if (tool_parse_i64(arg, 0, 3600000, &a->busy_ms) != 0)
            return tool_usage_error("%s: --busy-timeout takes milliseconds, 0 to 3600000", a->cmd);
        return EXIT_OK;
    case 'q': return EXIT_OK; /* gcloud's --quiet: we never prompt */
    case 'h': fputs(a->usage, stdout); return ADMIN_HELP;
    case '?': fputs(a->usage, stderr); return EXIT_USAGE;
    default: return -1;
    }
}

int admin_group_usage(int argc, char **argv, int k, const char *usage)
{
    if (argc > k && strcmp(argv[k], "--help") != 0 && strcmp(argv[k], "-h") != 0)
        return -1;
    fputs(usage, argc <= k ? stderr : stdout);
    return argc <= k ? EXIT_USAGE : EXIT_OK;
}

int admin_getopt(struct admin *a, int argc, char **argv, const struct option *opts, int *rc)
{
    int c;
    *rc = EXIT_OK;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        int r = admin_common_opt(a, c, optarg);
        if (r < 0)
            return c;
        if (r != EXIT_OK) {
            *rc = r;
            return -1;
        }
    }
    return -1;
}

/* A resource option set twice (by a full name and an option) must agree. */
static int set_part(struct admin *a, const char **slot, const char *val, const char *opt)
{
    if (*slot != NULL && strcmp(*slot, val) != 0)
        return tool_usage_error("%s: the resource name says %s '%s' but %s says '%s'", a->cmd,
                                opt + 2, val, opt, *slot);
    *slot = val;
    return EXIT_OK;
}

/* Parse a full resource name "projects/P/locations/L[/registries/R[/devices/D]]"
 * into a->project/location/registry (copying into *buf); *leaf = last part. */
static int parse_full(struct admin *a, const char *arg, char **buf, const char **leaf)
{
    static const char *const keys[] = {"projects", "locations", "registries", "devices"};
    char *parts[8];
    unsigned n = 0, i;
    char *p, *save = NULL;
    int rc;

    free(*buf);
    *buf = strdup(arg);
    if (*buf == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    for (p = strtok_r(*buf, "/", &save); p != NULL; p = strtok_r(NULL, "/", &save)) {
        if (n == 8)
            goto bad;
        parts[n++] = p;
    }
    if (n < 4 || n % 2 != 0)
        goto bad;
    for (i = 0; i < n; i += 2)
        if (strcmp(parts[i], keys[i / 2]) != 0)
            goto bad;
    if ((rc = set_part(a, &a->project, parts[1], "--project")) != EXIT_OK ||
        (rc = set_part(a, &a->location, parts[3], "--region")) != EXIT_OK)
        return rc;
    if (n == 8 && (rc = set_part(a, &a->registry, parts[5], "--registry")) != EXIT_OK)
        return rc;
    *leaf = parts[n - 1];
    return EXIT_OK;
bad:
    return tool_usage_error("%s: '%s' is not a resource name: expected "
                            "projects/P/locations/L/registries/R[/devices/D]",
                            a->cmd, arg);
}

int admin_check_project(const struct admin *a)
{
    if (!lk_project_valid(a->project, strlen(a->project))) {
        tool_error(a->cmd, LK_ERR_REG_INVALID,
                   "project id '%s' is invalid: a project id is %u to %u characters: lower-case "
                   "letters, digits and '-', starting with a letter and not ending with '-'",
                   a->project, LK_PROJECT_MIN, LK_PROJECT_MAX);
        return EXIT_REG_INVALID;
    }
    return EXIT_OK;
}

int admin_resolve(struct admin *a, const char *arg, int need_registry, const char **leaf)
{
    int rc;
    if (leaf != NULL)
        *leaf = arg;
    if (a->registry != NULL && strncmp(a->registry, "projects/", 9) == 0) {
        /* --registry projects/P/locations/L/registries/R */
        const char *given = a->registry, *reg = NULL;
        a->registry = NULL;
        if ((rc = parse_full(a, given, &a->regbuf, &reg)) != EXIT_OK)
            return rc;
        a->registry = reg;
    }
    if (arg != NULL && strncmp(arg, "projects/", 9) == 0) {
        const char *l = NULL;
        if ((rc = parse_full(a, arg, &a->namebuf, &l)) != EXIT_OK)
            return rc;
        if (leaf != NULL)
            *leaf = l;
    }
    if (a->project == NULL)
        return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
    if (a->location == NULL)
        return tool_usage_error("%s: --region is required (or set LATCHKEY_REGION)", a->cmd);
    if (need_registry && a->registry == NULL)
        return tool_usage_error("%s: --registry is required", a->cmd);
    {
        /* Checked here too, so that a refused name never creates a database. */
        char buf[256];
        const char *why;
        if ((rc = admin_check_project(a)) != EXIT_OK)
            return rc;
        if (!lk_location_valid(a->location, strlen(a->location))) {
            tool_error(a->cmd, LK_ERR_REG_INVALID,
                       "region '%s' is invalid: a region is 1 to %u characters: lower-case letters, "
                       "digits and '-', starting with a letter",
                       a->location, LK_LOCATION_MAX);
            return EXIT_REG_INVALID;
        }
        if (need_registry &&
            (why = lk_id_why("registry id", a->registry, strlen(a->registry), buf, sizeof buf)) != NULL) {
            tool_error(a->cmd, LK_ERR_REG_INVALID, "registry id '%s' is invalid: %s", a->registry, why);
            return EXIT_REG_INVALID;
        }
    }
    a->name.project = a->project;
    a->name.location = a->location;
    a->name.registry = a->registry;
    return EXIT_OK;
}

/* The file behind a database URL, or NULL when it is not a file. */
static const char *db_file(const char *url)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return url + 7;
    if (strstr(url, "://") != NULL || strncmp(url, "postgres", 8) == 0)
        return NULL;
    return url;
}

/* 1 when the caller may write file and create files beside it. */
static int writable(const char *file)
{
    char dir[4096];
    const char *slash = strrchr(file, '/');
    if (access(file, W_OK) != 0)
        return 0;
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == file)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - file), file);
    return access(dir, W_OK | X_OK) == 0;
}

/* The config file's settings (api, key_file, ca_file) where neither an
 * option nor the environment gave them. A missing default file is no
 * error; a named one ($LATCHKEY_CONFIG) must exist. */
static int read_config(struct admin *a)
{
    const char *named = env_or_null("LATCHKEY_CONFIG"), *home = env_or_null("HOME");
    char path[4096], *line, *save = NULL;
    uint8_t *text = NULL;
    size_t len = 0;
    unsigned n = 0;
    int rc;

    if (named != NULL)
        snprintf(path, sizeof path, "%s", named);
    else if (home != NULL)
        snprintf(path, sizeof path, "%s/.config/latchkey/latchkey.conf", home);
    else
        return EXIT_OK;
    if (named == NULL && access(path, F_OK) != 0)
        return EXIT_OK;
    if ((rc = admin_read_file(a, "config file", path, 64 * 1024, LK_ERR_IO, &text, &len)) != EXIT_OK)
        return rc;
    a->conf = (char *)text;
    for (line = strtok_r(a->conf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char *key = line, *val, *end;
        n++;
        while (isspace((unsigned char)*key))
            key++;
        if (*key == '#' || *key == '\0')
            continue;
        for (val = key; *val != '\0' && !isspace((unsigned char)*val); val++)
            ;
        if (*val != '\0')
            *val++ = '\0';
        while (isspace((unsigned char)*val))
            val++;
        for (end = val + strlen(val); end > val && isspace((unsigned char)end[-1]); end--)
            end[-1] = '\0';
        if (*val == '\0' || (strcmp(key, "api") != 0 && strcmp(key, "key_file") != 0 && strcmp(key, "ca_file") != 0))
            return tool_usage_error("%s: config file %s, line %u: expected 'api URL', 'key_file FILE' or "
                                    "'ca_file FILE'", a->cmd, path, n);
        if (strcmp(key, "api") == 0 && a->api_url == NULL) {
            a->api_url = val;
            a->api_level = 0;
        } else if (strcmp(key, "key_file") == 0 && a->key_file == NULL) {
            a->key_file = val;
        } else if (strcmp(key, "ca_file") == 0 && a->ca_file == NULL) {
            a->ca_file = val;
        }
    }
    return EXIT_OK;
}

/* --db or --api: which one this command uses (a->api stays NULL for the
 * database). Returns an exit code, or -1 to go on with the database. */
static int open_remote(struct admin *a)
{
    struct api_settings s;
    int rc;
    if (a->db != NULL && a->db[0] != '\0' && a->api_url != NULL && a->db_level == a->api_level)
        return tool_usage_error(a->db_level == 2 ? "%s: --api and --db exclude each other: give one"
                                                 : "%s: LATCHKEY_API and LATCHKEY_DB are both set: unset one, "
                                                   "or give --db or --api",
                                a->cmd);
    if ((a->db == NULL || a->db[0] == '\0') && a->api_url == NULL && (rc = read_config(a)) != EXIT_OK)
        return rc;
    if (a->api_url == NULL || (a->db != NULL && a->db[0] != '\0' && a->db_level > a->api_level))
        return -1;
    /* --api given, the key file (or CA) from the config file. */
    if (a->conf == NULL && (a->key_file == NULL || a->ca_file == NULL) && (rc = read_config(a)) != EXIT_OK)
        return rc;
    if (!a->remote_ok)
        return tool_usage_error("%s works only with --db: %s", a->cmd,
                                a->local_only != NULL ? a->local_only
                                                      : "latchkeyd's admin API has no method for it");
    s.url = a->api_url;
    s.key_file = a->key_file;
    s.ca_file = a->ca_file;
    return api_open(a->cmd, &s, &a->api);
}

/* The audit record's actor for every change this run makes to the
 * database directly: "tool:USER@HOST" (the Unix account running the tool),
 * via "tool"; the action is the command ("devices create" ->
 * devices.create), the resource what the options name. Through --api,
 * latchkeyd records the service account instead. */
void admin_set_actor(struct admin *a)
{
    char actor[LK_AUDIT_ACTOR_MAX + 1], host[256] = "?";
    const struct passwd *pw = getpwuid(getuid());
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    if (pw != NULL && pw->pw_name != NULL)
        snprintf(actor, sizeof actor, "tool:%s@%s", pw->pw_name, host);
    else
        snprintf(actor, sizeof actor, "tool:uid%lu@%s", (unsigned long)getuid(), host);
    lk_registry_set_actor(a->reg, actor, "tool");
    admin_audit_target(a, a->name.registry != NULL ? &a->name : NULL, a->device);
}

void admin_audit_target(struct admin *a, const lk_reg_name *n, const char *device)
{
    char action[LK_AUDIT_ACTION_MAX + 1], resource[LK_AUDIT_RESOURCE_MAX + 1] = "";
    size_t i;
    if (a->reg == NULL)
        return;
    snprintf(action, sizeof action, "%s", a->cmd != NULL ? a->cmd : "unknown");
    for (i = 0; action[i] != '\0'; i++)
        if (action[i] == ' ')
            action[i] = '.';
    if (n != NULL && n->project != NULL && n->location != NULL && n->registry != NULL)
        snprintf(resource, sizeof resource, "projects/%s/locations/%s/registries/%s%s%s", n->project,
                 n->location, n->registry, device != NULL ? "/devices/" : "", device != NULL ? device : "");
    else if (a->project != NULL)
        snprintf(resource, sizeof resource, "projects/%s", a->project);
    lk_registry_set_action(a->reg, action, resource, NULL);
}

int admin_open(struct admin *a, int mode)
{
    char why[768] = "";
    const char *file;
    struct stat st;
    int existed = 1, create = mode == ADMIN_OPEN_CREATE;
    unsigned flags = create ? LK_REG_CREATE : 0;
    lk_err err;
    int rc;

    if ((rc = open_remote(a)) >= 0)
        return rc;
    if (a->db == NULL || a->db[0] == '\0')
        return tool_usage_error("%s: no registry database: give --db FILE or set LATCHKEY_DB", a->cmd);
    file = db_file(a->db);
    if (file != NULL && stat(file, &st) != 0) {
        if (errno != ENOENT) {
            int e = errno;
            tool_error(a->cmd, LK_ERR_IO, "database %s: %s%s", file, strerror(e),
                       e == EACCES ? " (search permission on a directory of its path is missing)" : "");
            return EXIT_FAIL;
        }
        existed = 0;
        if (!create) {
            tool_error(a->cmd, LK_ERR_REG_NOT_FOUND,
                       "database %s does not exist (only the create commands create it; "
                       "check --db or LATCHKEY_DB)",
                          file);
            return EXIT_REG_NOT_FOUND;
        }
    }
    if (mode == ADMIN_OPEN_READ && file != NULL && !writable(file))
        flags = LK_REG_NOWRITE;
    err = lk_registry_open(a->db, flags, &a->reg, why, sizeof why);
    if (err != LK_OK) {
        a->reg = NULL;
        if (err == LK_ERR_REG_SCHEMA && strstr(why, "empty database") != NULL) {
            size_t l = strlen(why);
            snprintf(why + l, sizeof why - l, "; check --db or LATCHKEY_DB ('registries create' or "
                                              "'backends create' make a registry database)");
        }
        /* The library's reason names the file already. */
        if (file != NULL && strstr(why, file) != NULL)
            tool_error(a->cmd, err, "%s", why);
        else
            tool_error(a->cmd, err, "database %s: %s", a->db, why[0] ? why : lk_strerror(err));
        return tool_registry_exit_code(err);
    }
    if (a->busy_ms >= 0)
        lk_registry_set_busy_timeout(a->reg, (unsigned)a->busy_ms);
    admin_set_actor(a);
    if (!existed)
        fprintf(stderr, "latchkey: created registry database %s\n", file);
    return EXIT_OK;
}

void admin_close(struct admin *a)
{
    if (a->reg != NULL)
        lk_registry_close(a->reg);
    a->reg = NULL;
    api_close(a->api);
    a->api = NULL;
    free(a->conf);
    a->conf = NULL;
    while (a->nkeep > 0)
        free(a->keep[--a->nkeep]);
    free(a->keep);
    a->keep = NULL;
    free(a->namebuf);
    free(a->regbuf);
    a->namebuf = a->regbuf = NULL;
}

int admin_fail(const struct admin *a, lk_err err, const char *why)
{
    tool_error(a->cmd, err, "%s", why != NULL && why[0] != '\0' ? why : lk_strerror(err));
    return tool_registry_exit_code(err);
}

int admin_list_begin(const struct admin *a, struct admin_list *x, unsigned ncols, const char *const *heads)
{
    memset(x, 0, sizeof *x);
    if (a->json)
        out_list_begin(&x->l);
    else if ((x->t = out_table_new(ncols, heads)) == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    return EXIT_OK;
}

int admin_list_end(const struct admin *a, struct admin_list *x, lk_err err, const char *why)
{
    if (err != LK_OK || x->failed) {
        out_table_free(x->t);
        if (a->json && x->l.n > 0)
            fputs("\n", stdout); /* leave the partial output visibly unfinished */
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    return a->json ? out_list_end(&x->l) : out_table_print(x->t);
}

int admin_all_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

int admin_read_file(const struct admin *a, const char *what, const char *path, size_t max,
                    lk_err too_big, uint8_t **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    uint8_t *buf;
    size_t n = 0, got;

    *out = NULL;
    *len = 0;
    if (f == NULL) {
        int e = errno;
        tool_error(a->cmd, LK_ERR_IO, "%s %s: %s", what, path, strerror(e));
        return e == ENOENT || e == ENOTDIR ? EXIT_NOT_FOUND : EXIT_FAIL;
    }
    /* Every file the commands read is small (a config, a PEM, a value). */
    buf = malloc(max + 2);
    if (buf == NULL) {
        if (f != stdin)
            fclose(f);
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    }
    while (n <= max && (got = fread(buf + n, 1, max + 1 - n, f)) > 0)
        n += got;
    if (ferror(f)) {
        int e = errno;
        tool_error(a->cmd, LK_ERR_IO, "%s %s: %s", what, path, strerror(e));
        free(buf);
        if (f != stdin)
            fclose(f);
        return EXIT_FAIL;
    }
    if (f != stdin)
        fclose(f);
    if (n > max) {
        tool_error(a->cmd, too_big, "%s %s is larger than %zu bytes, the most allowed", what, path, max);
        free(buf);
        return tool_registry_exit_code(too_big);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return EXIT_OK;
}

int admin_dict(struct admin *a, const char *opt, const char *arg,
               int (*cb)(void *ctx, const char *key, const char *value), void *ctx)
{
    char delim = ',';
    char *copy, *item;
    int rc = EXIT_OK;

    /* gcloud's escape: ^D^ at the start makes D the delimiter. */
    if (arg[0] == '^' && arg[1] != '\0' && arg[2] == '^') {
        delim = arg[1];
        arg += 3;
    }
    {
        char **nk = realloc(a->keep, (a->nkeep + 1) * sizeof *nk);
        copy = strdup(arg);
        if (nk != NULL)
            a->keep = nk;
        if (nk == NULL || copy == NULL) {
            free(copy);
            return admin_fail(a, LK_ERR_NOMEM, NULL);
        }
        a->keep[a->nkeep++] = copy;
    }
    item = copy;
    while (item != NULL && rc == EXIT_OK) {
        char *next = strchr(item, delim), *eq;
        if (next != NULL)
            *next++ = '\0';
        if (*item != '\0') {
            eq = strchr(item, '=');
            if (eq == NULL || eq == item) {
                rc = tool_usage_error("%s: %s: '%s' is not KEY=VALUE (items are separated by '%c'; "
                                      "write ^;^A=B;C=D to separate them by ';' instead)",
                                         a->cmd, opt, item, delim);
                break;
            }
            *eq = '\0';
            rc = cb(ctx, item, eq + 1);
        }
        item = next;
    }
    return rc;
}

/* n digits at *p as a number; advances *p. -1 if not n digits. */
static int digits(const char **p, int n)
{
    int v = 0, i;
    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return v;
}

int admin_parse_time(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    struct tm tm;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, se = 0, off = 0;
    time_t t;

    if (admin_all_digits(s)) {
        long long v;
        if (tool_parse_i64(s, 0, 253402300799LL, &v) != 0)
            return -1;
        *out = v;
        return 0;
    }
    if ((y = digits(&p, 4)) < 1970 || *p++ != '-' || (mo = digits(&p, 2)) < 1 || mo > 12 ||
        *p++ != '-' || (d = digits(&p, 2)) < 1 || d > mdays[mo - 1])
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':' || (mi = digits(&p, 2)) < 0 || mi > 59)
            return -1;
        if (*p == ':') {
            p++;
            if ((se = digits(&p, 2)) < 0 || se > 60)
                return -1;
            if (se == 60)
                se = 59;
            if (*p == '.' || *p == ',') {
                p++;
                if (*p < '0' || *p > '9')
                    return -1;
                while (*p >= '0' && *p <= '9')
                    p++;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if ((oh = digits(&p, 2)) < 0 || oh > 23)
                return -1;
            if (*p == ':')
                p++;
            if ((om = digits(&p, 2)) < 0 || om > 59)
                return -1;
            off = sign * (oh * 3600 + om * 60);
        }
    }
    if (*p != '\0')
        return -1;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d) /* 29 February of a common year */
        return -1;
    if ((int64_t)t - off < 0)
        return -1;
    *out = (int64_t)t - off;
    return 0;
}

lk_cred_format admin_cred_type(const char *s)
{
    static const struct {
        const char *name;
        lk_cred_format fmt;
    } names[] = {
        {"es256", LK_CRED_ES256_PEM},          {"es256-pem", LK_CRED_ES256_PEM},
        {"es256-x509", LK_CRED_ES256_X509_PEM}, {"es256-x509-pem", LK_CRED_ES256_X509_PEM},
        {"rs256", LK_CRED_RSA_PEM},            {"rsa", LK_CRED_RSA_PEM},
        {"rsa-pem", LK_CRED_RSA_PEM},          {"rs256-x509", LK_CRED_RSA_X509_PEM},
        {"rsa-x509", LK_CRED_RSA_X509_PEM},    {"rsa-x509-pem", LK_CRED_RSA_X509_PEM},
    };
    char low[32];
    size_t i, n = strlen(s);
    if (n == 0 || n >= sizeof low)
        return LK_CRED_UNSPECIFIED;
    for (i = 0; i <= n; i++)
        low[i] = s[i] == '_' ? '-' : (char)tolower((unsigned char)s[i]);
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(low, names[i].name) == 0)
            return names[i].fmt;
    return LK_CRED_UNSPECIFIED;
}

int admin_meta_set(struct admin_meta *m, const char *key, const char *value, size_t len)
{
    unsigned i;
    for (i = 0; i < m->n; i++)
        if (strcmp(m->items[i].key, key) == 0)
            return tool_usage_error("metadata key '%s' is given twice", key);
    if (!out_utf8_valid(value, len)) {
        tool_error("metadata", LK_ERR_REG_INVALID,
                   "the value of key '%s' is not UTF-8 text without NUL bytes (metadata values are strings)",
                   key);
        return EXIT_REG_INVALID;
    }
    if (m->n == m->cap) {
        unsigned ncap = m->cap == 0 ? 8 : m->cap * 2;
        lk_reg_metadata *ni = realloc(m->items, ncap * sizeof *ni);
        if (ni == NULL)
            return EXIT_FAIL;
        m->items = ni;
        m->cap = ncap;
    }
    m->items[m->n].key = strdup(key);
    m->items[m->n].value = malloc(len + 1);
    if (m->items[m->n].key == NULL || m->items[m->n].value == NULL) {
        free(m->items[m->n].key);
        free(m->items[m->n].value);
        return EXIT_FAIL;
    }
    memcpy(m->items[m->n].value, value, len);
    m->items[m->n].value[len] = '\0';
    m->items[m->n].value_len = len;
    m->n++;
    return EXIT_OK;
}

void admin_meta_free(struct admin_meta *m)
{
    unsigned i;
    for (i = 0; i < m->n; i++) {
        free(m->items[i].key);
        free(m->items[i].value);
    }
    free(m->items);
    memset(m, 0, sizeof *m);
}

void admin_note_not_in_effect(const char *cmd, int http)
{
    char list[160] = "";
    size_t o = 0;
    /* Notification configs route events and states since schema 6
     * (docs/delivery.md): no note for them. */
    if (http)
        o += (size_t)snprintf(list + o, sizeof list - o, "%shttpConfig", o ? ", " : "");
    if (o == 0)
        return;
    fprintf(stderr, "latchkey: %s: note: %s %s stored and shown, but not yet in effect: nothing reads "
                    "them yet (no HTTP bridge, no device logs; devices connect over "
                    "MQTT only, which mqttConfig governs; docs/registry.md)\n",
            cmd, list, strchr(list, ',') != NULL ? "are" : "is");
}
