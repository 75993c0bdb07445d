/*
 * latchkey setup: turn an installed system (the Debian packages, or `make
 * install`) into a configured broker: the registry, the broker's
 * certificate, Mosquitto's drop-in and its systemd drop-ins, latchkeyd's
 * configuration. Until it runs, installing changes nothing for a Mosquitto
 * broker already there (the drop-in lives in /usr/share/latchkey only).
 *
 * What it does is README.md's steps 2 to 4, made repeatable: a second run
 * with the same options changes nothing and says "kept". It never restarts
 * a service: restarting the broker drops every connection, the operator's
 * moment to choose; it prints the commands. docs/operations.md, "Setting
 * up a broker: latchkey setup".
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "ca.h"
#include "cli.h"
#include "regops.h"
#include "setup.h"

#ifndef LK_DATADIR
#define LK_DATADIR "/usr/share/latchkey"
#endif
#ifndef LK_PLUGIN_PATH
#define LK_PLUGIN_PATH "/usr/lib/latchkey/latchkey_plugin.so"
#endif

#define CTX "setup"
#define MOSQ_CONF "/etc/mosquitto/mosquitto.conf"
#define MOSQ_DROPIN "/etc/mosquitto/conf.d/latchkey.conf"
#define UNIT_DIR "/etc/systemd/system/mosquitto.service.d"
#define LKD_CONF SETUP_ETC "/latchkeyd.conf"

static const char setup_usage[] =
    "usage: latchkey setup [--root DIR] --host NAME [--cert FILE --key FILE | --test-ca]\n"
    "                      [--registry R --project P --region L] [--port N]\n"
    "                      [--fallback-port N | --no-fallback-port] [--spool] [--metrics] [--force]\n"
    "\n"
    "Makes an installed latchkey (the Debian packages or `make install`) a configured broker,\n"
    "as docs/operations.md, \"Setting up a broker\" says: /var/lib/latchkey with the registry\n"
    "database, the broker's certificate in /etc/latchkey, Mosquitto's drop-in\n"
    "/etc/mosquitto/conf.d/latchkey.conf, the systemd drop-ins for mosquitto.service and\n"
    "/etc/latchkey/latchkeyd.conf; then checks the broker's configuration as `latchkey broker\n"
    "check`. One line per step (created, kept, installed, replaced, checked). Run again, it\n"
    "changes nothing and says \"kept\". It restarts no service: it prints the commands.\n"
    "\n"
    "  --host NAME          the host name (or address) devices connect to: the certificate\n"
    "                       must name it in its subjectAltNames (required)\n"
    "  --cert FILE          the broker's certificate (PEM; a chain may follow it), installed\n"
    "                       as /etc/latchkey/server.crt after checking that --key is its key,\n"
    "                       that it is valid now and that --host is among its subjectAltNames\n"
    "  --key FILE           its private key (PEM, unencrypted), installed as server.key,\n"
    "                       root:latchkey 0640\n"
    "  --test-ca            for trials only: make a TEST CA (/etc/latchkey/ca.crt, its key\n"
    "                       test-ca.key 0600) and a P-256 certificate for --host signed by it;\n"
    "                       without --cert/--key or --test-ca the certificate already in\n"
    "                       /etc/latchkey is checked and kept, and with none setup fails\n"
    "  --registry R         also create this registry (kept if it exists), with --project P\n"
    "  --project P          and --region L (all three, or none)\n"
    "  --region L           (also --location)\n"
    "  --port N             the devices' TLS port (default 8883)\n"
    "  --fallback-port N    the second TLS listener, for networks that block 8883 (default 443)\n"
    "  --no-fallback-port   no second listener\n"
    "  --spool              enable push subscriptions: plugin_opt_spool and latchkeyd's spool\n"
    "  --metrics            enable metrics: plugin_opt_metrics_file and latchkeyd's metrics_file\n"
    "  --force              replace a broker drop-in that differs from what setup writes (the\n"
    "                       old one saved as FILE.bak); with --test-ca, a server certificate\n"
    "                       that fails the check\n"
    "  --root DIR           write every file under DIR instead of / (image builders, tests);\n"
    "                       the files written still name the paths of the installed system\n"
    "  --templates DIR      where the shipped templates are (repeatable, searched in order;\n"
    "                       also LATCHKEY_TEMPLATES=DIR:DIR); default " LK_DATADIR "\n"
    "  --plugin FILE        the plugin the broker loads; default " LK_PLUGIN_PATH "\n"
    "\n"
    "Files are owned by group latchkey (made by the packages) when run as root; without the\n"
    "group setup stops and says how to make it, except under --root (it says what it skipped).\n"
    "Exit codes: docs/cli.md (2 usage or no certificate given, 9 a certificate refused,\n"
    "24 a file in the way, 23 the broker's configuration has problems).\n";

/* ---- text editing ---- */

struct buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
    char line[SETUP_PATH_MAX + 256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        b->oom = 1;
    else
        put(b, line, (size_t)n);
}

static int starts(const char *line, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(line, word, w) == 0;
}

#define HEADER "# Written by `latchkey setup` (docs/operations.md) from latchkey's template.\n"

/* Mosquitto's drop-in: the template with this machine's ports, plugin and
 * paths. Returns an exit code; the text in *out. */
static int broker_conf(const struct setup *s, const char *tmpl, const char *text, struct buf *out)
{
    const char *l = text, *e;
    unsigned listeners = 0, plugin = 0, registry = 0;
    int off = 0; /* in the fallback listener's block, commented out */
    put(out, HEADER, strlen(HEADER));
    for (; *l != '\0'; l = *e ? e + 1 : e) {
        size_t n;
        e = strchr(l, '\n');
        if (e == NULL)
            e = l + strlen(l);
        n = (size_t)(e - l);
        if (off && n == 0)
            off = 0;
        if (starts(l, n, "listener ")) {
            const char *rest = memchr(l + 9, ' ', n - 9);
            size_t rn = rest ? (size_t)(e - rest) : 0;
            if (++listeners == 1) {
                putf(out, "listener %ld%.*s\n", s->port, (int)rn, rest ? rest : "");
            } else if (listeners == 2 && s->fallback > 0) {
                putf(out, "listener %ld%.*s\n", s->fallback, (int)rn, rest ? rest : "");
            } else {
                putf(out, "%s", "# (latchkey setup --no-fallback-port: this listener is off)\n");
                off = 1;
                putf(out, "#%.*s\n", (int)n, l);
            }
        } else if (off) {
            putf(out, "#%.*s\n", (int)n, l);
        } else if (starts(l, n, "certfile ")) {
            putf(out, "certfile %s\n", SETUP_CRT);
        } else if (starts(l, n, "keyfile ")) {
            putf(out, "keyfile %s\n", SETUP_KEY);
        } else if (starts(l, n, "plugin ")) {
            plugin++;
            putf(out, "plugin %s\n", s->plugin);
        } else if (starts(l, n, "plugin_opt_registry ")) {
            registry++;
            putf(out, "plugin_opt_registry %s\n", SETUP_REGISTRY);
        } else if (s->spool && starts(l, n, "#plugin_opt_spool ")) {
            putf(out, "plugin_opt_spool %s\n", SETUP_SPOOL);
        } else if (s->metrics && starts(l, n, "#plugin_opt_metrics_file ")) {
            putf(out, "plugin_opt_metrics_file %s\n", SETUP_METRICS);
        } else {
            putf(out, "%.*s\n", (int)n, l);
        }
    }
    if (out->oom)
        return setup_fail(EXIT_FAIL, tmpl, "out of memory");
    if (listeners < 2 || plugin != 1 || registry != 1)
        return setup_fail(EXIT_FILE, tmpl,
                          "not latchkey's broker template (it needs two `listener` lines, one `plugin` and one "
                          "`plugin_opt_registry`)");
    return EXIT_OK;
}

/* latchkeyd's configuration: the template with the certificate, the
 * registry and (if asked) the spool and metrics files. */
static int daemon_conf(const struct setup *s, const char *tmpl, const char *text, struct buf *out)
{
    const char *l = text, *e, *colon;
    char port[8] = "8443";
    int v6 = strchr(s->host, ':') != NULL;
    put(out, HEADER, strlen(HEADER));
    for (; *l != '\0'; l = *e ? e + 1 : e) {
        size_t n;
        e = strchr(l, '\n');
        if (e == NULL)
            e = l + strlen(l);
        n = (size_t)(e - l);
        if (starts(l, n, "registry "))
            putf(out, "registry %s\n", SETUP_REGISTRY);
        else if (starts(l, n, "tls_cert "))
            putf(out, "tls_cert %s\n", SETUP_CRT);
        else if (starts(l, n, "tls_key "))
            putf(out, "tls_key %s\n", SETUP_KEY);
        else if (starts(l, n, "token_uri "))
            putf(out, "token_uri https://%s%s%s:%s/token\n", v6 ? "[" : "", s->host, v6 ? "]" : "", port);
        else if (s->spool && starts(l, n, "#spool "))
            putf(out, "spool %s\n", SETUP_SPOOL);
        else if (s->metrics && starts(l, n, "#metrics_file "))
            putf(out, "metrics_file %s\n", SETUP_METRICS);
        else {
            /* token_uri takes admin_listen's port, which comes first */
            if (starts(l, n, "admin_listen ") && (colon = memrchr(l, ':', n)) != NULL && e - colon - 1 > 0 &&
                e - colon - 1 < (long)sizeof port)
                snprintf(port, sizeof port, "%.*s", (int)(e - colon - 1), colon + 1);
            putf(out, "%.*s\n", (int)n, l);
        }
    }
    if (out->oom)
        return setup_fail(EXIT_FAIL, tmpl, "out of memory");
    return EXIT_OK;
}

/* ---- templates ---- */

/* The first of names found in the template directories, in path. */
static int find_template(const struct setup *s, const char *const *names, int dir, char *path, size_t n, int quiet)
{
    struct stat st;
    unsigned i;
    for (i = 0; i < s->ntmpl; i++)
        for (const char *const *nm = names; *nm != NULL; nm++) {
            snprintf(path, n, "%s/%s", s->tmpl[i], *nm);
            if (stat(path, &st) == 0 && (dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)))
                return EXIT_OK;
        }
    if (quiet)
        return EXIT_NOT_FOUND;
    {
        char dirs[SETUP_PATH_MAX] = "";
        size_t l = 0;
        for (i = 0; i < s->ntmpl && l < sizeof dirs; i++)
            l += (size_t)snprintf(dirs + l, sizeof dirs - l, "%s%s", i ? ", " : "", s->tmpl[i]);
        return setup_fail(EXIT_NOT_FOUND, names[0],
                          "no such template%s%s%s in %s (install the packages, or give --templates DIR)",
                          names[1] ? " (nor " : "", names[1] ? names[1] : "", names[1] ? ")" : "", dirs);
    }
}

static int read_template(const char *path, char **text)
{
    size_t len;
    int e = setup_read(path, SETUP_FILE_MAX, 0, text, &len);
    if (e != 0)
        return setup_fail(e == EFBIG ? EXIT_FILE : tool_file_exit(e), path, "cannot read the template: %s",
                          strerror(e));
    if (strlen(*text) != len) {
        free(*text);
        *text = NULL;
        return setup_fail(EXIT_FILE, path, "the template holds a NUL byte");
    }
    return EXIT_OK;
}

/* ---- the steps ---- */

/* The broker runs as mosquitto (the drop-ins say so) and opens the registry
 * through the group: without it, it would fail only when restarted. */
static int broker_in_group(const struct setup *s, const struct group *g)
{
    struct passwd *pw = getpwnam("mosquitto");
    char **m;
    if (pw == NULL) {
        setup_say("note", "user mosquitto", "(none: install Debian's mosquitto before starting the broker)");
        return EXIT_OK;
    }
    if (pw->pw_gid == s->gid)
        return EXIT_OK;
    for (m = g->gr_mem; m != NULL && *m != NULL; m++)
        if (strcmp(*m, "mosquitto") == 0)
            return EXIT_OK;
    return setup_fail(EXIT_FAIL, "/etc/group",
                      "user mosquitto is not in group latchkey, so the broker could not open the registry: "
                      "run: adduser mosquitto latchkey");
}

static int step_group(struct setup *s)
{
    char p[SETUP_PATH_MAX];
    struct group *g = NULL;
    FILE *f;
    s->is_root = geteuid() == 0;
    if (s->root[0] == '\0') {
        g = getgrnam("latchkey");
    } else if (setup_path(s, p, sizeof p, "/etc/group") == 0 && (f = fopen(p, "re")) != NULL) {
        /* an image's own group file: its gid, not the build host's */
        while ((g = fgetgrent(f)) != NULL && strcmp(g->gr_name, "latchkey") != 0)
            ;
        fclose(f);
    }
    if (g != NULL) {
        s->has_group = 1;
        s->gid = g->gr_gid;
    }
    if (s->is_root && s->has_group && s->root[0] == '\0')
        return broker_in_group(s, g);
    if (s->is_root && s->has_group)
        return EXIT_OK;
    if (s->is_root && s->root[0] == '\0')
        return setup_fail(EXIT_FAIL, "/etc/group",
                          "no group latchkey, which the broker and latchkeyd share the registry through: install "
                          "the packages or run: addgroup --system latchkey && adduser mosquitto latchkey");
    setup_say("skipped", "group latchkey", "(files stay the %s's: %s)", s->is_root ? "root" : "current user",
              !s->is_root ? "not running as root" : "no group latchkey in --root's /etc/group");
    return EXIT_OK;
}

static int step_registry(const struct setup *s)
{
    char db[SETUP_PATH_MAX], why[512] = "";
    struct admin a;
    struct stat st;
    lk_reg_registry r;
    lk_err err;
    int rc, existed;

    if (setup_path(s, db, sizeof db, SETUP_REGISTRY) != 0)
        return EXIT_USAGE;
    existed = lstat(db, &st) == 0;
    admin_init(&a, CTX, setup_usage);
    a.db = db;
    a.db_level = 2;
    a.api_url = NULL; /* the database on this machine, never latchkeyd's API */
    a.project = s->project;
    a.location = s->region;
    a.registry = s->registry;
    if (s->registry != NULL && (rc = admin_resolve(&a, NULL, 1, NULL)) != EXIT_OK)
        goto out;
    if ((rc = admin_open(&a, ADMIN_OPEN_CREATE)) != EXIT_OK)
        goto out;
    setup_say(existed ? "kept" : "created", db, "(the registry database%s)", existed ? "; migrated if older" : "");
    if (s->registry == NULL)
        goto out;
    memset(&r, 0, sizeof r);
    err = rop_get_registry(&a, &a.name, &r, why, sizeof why);
    if (err == LK_OK) {
        lk_reg_registry_free(&r);
        setup_say("kept", "registry", "projects/%s/locations/%s/registries/%s", s->project, s->region, s->registry);
        goto out;
    }
    if (err != LK_ERR_REG_NOT_FOUND) {
        rc = admin_fail(&a, err, why);
        goto out;
    }
    {
        /* as `registries create` without options: MQTT and HTTP enabled */
        lk_reg_registry_spec spec;
        memset(&spec, 0, sizeof spec);
        spec.mqtt = LK_REG_STATE_ENABLED;
        spec.http = LK_REG_STATE_ENABLED;
        why[0] = '\0';
        if ((err = rop_create_registry_full(&a, &a.name, &spec, why, sizeof why)) != LK_OK) {
            rc = admin_fail(&a, err, why);
            goto out;
        }
    }
    setup_say("created", "registry", "projects/%s/locations/%s/registries/%s", s->project, s->region, s->registry);
out:
    admin_close(&a);
    return rc;
}

static const char *const conf_names[] = {"mosquitto/latchkey.conf", "mosquitto-latchkey.conf", NULL};
static const char *const dir_names[] = {"mosquitto/mosquitto.service.d", "mosquitto.service.d", NULL};

/* The broker's templates are there, before anything is written. */
static int step_templates(const struct setup *s)
{
    char p[SETUP_PATH_MAX];
    int rc = find_template(s, conf_names, 0, p, sizeof p, 0);
    return rc == EXIT_OK ? find_template(s, dir_names, 1, p, sizeof p, 0) : rc;
}

static int step_broker(const struct setup *s)
{
    char tmpl[SETUP_PATH_MAX];
    char *text = NULL;
    struct buf out = {0};
    int rc;
    if ((rc = find_template(s, conf_names, 0, tmpl, sizeof tmpl, 0)) != EXIT_OK ||
        (rc = read_template(tmpl, &text)) != EXIT_OK)
        return rc;
    if ((rc = broker_conf(s, tmpl, text, &out)) == EXIT_OK)
        rc = setup_file(s, MOSQ_DROPIN, out.p, out.len, 0644, 0);
    free(text);
    free(out.p);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The systemd drop-ins for Debian's mosquitto.service, each as shipped. */
static int step_units(const struct setup *s)
{
    char dir[SETUP_PATH_MAX], src[SETUP_PATH_MAX + 256], dst[512];
    char *names[64], *text = NULL;
    unsigned n = 0, i;
    struct dirent *d;
    DIR *dp;
    int rc = EXIT_OK;
    if ((rc = find_template(s, dir_names, 1, dir, sizeof dir, 0)) != EXIT_OK)
        return rc;
    if ((dp = opendir(dir)) == NULL)
        return setup_fail(tool_file_exit(errno), dir, "%s", strerror(errno));
    while ((d = readdir(dp)) != NULL && n < sizeof names / sizeof names[0]) {
        size_t l = strlen(d->d_name);
        if (l > 5 && l < 200 && strcmp(d->d_name + l - 5, ".conf") == 0 && (names[n] = strdup(d->d_name)) != NULL)
            n++;
    }
    closedir(dp);
    if (n > 1)
        qsort(names, n, sizeof names[0], by_name);
    for (i = 0; i < n; i++) {
        if (rc == EXIT_OK) {
            snprintf(src, sizeof src, "%s/%s", dir, names[i]);
            snprintf(dst, sizeof dst, "%s/%s", UNIT_DIR, names[i]);
            if ((rc = read_template(src, &text)) == EXIT_OK)
                rc = setup_file(s, dst, text, strlen(text), 0644, 0);
            free(text);
            text = NULL;
        }
        free(names[i]);
    }
    if (rc == EXIT_OK && n == 0)
        rc = setup_fail(EXIT_NOT_FOUND, dir, "no *.conf drop-in in the template directory");
    return rc;
}

/* latchkeyd's configuration: written when missing, never touched after. */
static int step_daemon(struct setup *s)
{
    static const char *const names[] = {"latchkeyd.conf", NULL};
    char p[SETUP_PATH_MAX], tmpl[SETUP_PATH_MAX];
    struct stat st;
    char *text = NULL;
    struct buf out = {0};
    int rc;
    if (setup_path(s, p, sizeof p, LKD_CONF) != 0)
        return EXIT_USAGE;
    if (lstat(p, &st) == 0) {
        s->daemon = 1;
        setup_say("kept", p, "(it exists: setup never rewrites latchkeyd's configuration%s)",
                  s->spool || s->metrics ? "; see that its spool and metrics_file lines are as wanted" : "");
        return EXIT_OK;
    }
    if (find_template(s, names, 0, tmpl, sizeof tmpl, 1) != EXIT_OK) {
        /* a broker-only machine: the plugin's package without the daemon's */
        setup_say("skipped", p, "(no latchkeyd.conf template: latchkeyd is not installed here)");
        return EXIT_OK;
    }
    if ((rc = read_template(tmpl, &text)) != EXIT_OK)
        return rc;
    s->daemon = 1;
    if ((rc = daemon_conf(s, tmpl, text, &out)) == EXIT_OK &&
        (rc = setup_write(s, LKD_CONF, out.p, out.len, 0640, 1)) == EXIT_OK)
        setup_say("created", p, "(from %s)", tmpl);
    free(text);
    free(out.p);
    return rc;
}

/* broker check of what Mosquitto will read: /etc/mosquitto/mosquitto.conf
 * (which includes conf.d) when there is one and no --root, else the drop-in
 * on its own: under --root the main file's include_dir names the build
 * host's directory. */
static int step_check(const struct setup *s)
{
    char p[SETUP_PATH_MAX];
    struct stat st;
    int rc, alone = 1;
    if (s->root[0] == '\0' && stat(MOSQ_CONF, &st) == 0) {
        snprintf(p, sizeof p, "%s", MOSQ_CONF);
        alone = 0;
    } else if (setup_path(s, p, sizeof p, MOSQ_DROPIN) != 0) {
        return EXIT_USAGE;
    }
    rc = broker_check(p, 0);
    if (rc == EXIT_OK)
        setup_say("checked", p, "(latchkey broker check%s: no problems)", alone ? ", the drop-in on its own" : "");
    else
        setup_fail(rc, p, "latchkey broker check found problems (above): fix them, then run setup again");
    return rc;
}

/* ---- the command line ---- */

static int port_arg(const char *opt, const char *v, long *out)
{
    long long n;
    if (tool_parse_i64(v, 1, 65535, &n) != 0)
        return tool_usage_error(CTX ": %s takes a port number, 1 to 65535", opt);
    *out = (long)n;
    return EXIT_OK;
}

static int add_templates(struct setup *s, char *list)
{
    char *save = NULL, *d;
    for (d = strtok_r(list, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        if (s->ntmpl >= SETUP_TEMPLATES_MAX)
            return tool_usage_error(CTX ": at most %d template directories", SETUP_TEMPLATES_MAX);
        s->tmpl[s->ntmpl++] = d;
    }
    return EXIT_OK;
}

enum {
    O_ROOT = 256, O_HOST, O_CERT, O_KEY, O_TEST_CA, O_REGISTRY, O_PROJECT, O_REGION, O_PORT, O_FALLBACK,
    O_NO_FALLBACK, O_SPOOL, O_METRICS, O_FORCE, O_TEMPLATES, O_PLUGIN, O_HELP
};

static int parse(struct setup *s, int argc, char **argv, char **env_tmpl, char **root_buf)
{
    static const struct option lopts[] = {
        {"root", required_argument, 0, O_ROOT}, {"host", required_argument, 0, O_HOST},
        {"cert", required_argument, 0, O_CERT}, {"key", required_argument, 0, O_KEY},
        {"test-ca", no_argument, 0, O_TEST_CA}, {"registry", required_argument, 0, O_REGISTRY},
        {"project", required_argument, 0, O_PROJECT}, {"region", required_argument, 0, O_REGION},
        {"location", required_argument, 0, O_REGION}, {"port", required_argument, 0, O_PORT},
        {"fallback-port", required_argument, 0, O_FALLBACK}, {"no-fallback-port", no_argument, 0, O_NO_FALLBACK},
        {"spool", no_argument, 0, O_SPOOL}, {"metrics", no_argument, 0, O_METRICS},
        {"force", no_argument, 0, O_FORCE}, {"templates", required_argument, 0, O_TEMPLATES},
        {"plugin", required_argument, 0, O_PLUGIN}, {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    int c, rc, fb_given = 0, no_fb = 0;
    const char *root = "";
    size_t rl;

    s->port = 8883;
    s->fallback = 443;
    s->plugin = LK_PLUGIN_PATH;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
        switch (c) {
        case O_ROOT: root = optarg; break;
        case O_HOST: s->host = optarg; break;
        case O_CERT: s->cert = optarg; break;
        case O_KEY: s->key = optarg; break;
        case O_TEST_CA: s->test_ca = 1; break;
        case O_REGISTRY: s->registry = optarg; break;
        case O_PROJECT: s->project = optarg; break;
        case O_REGION: s->region = optarg; break;
        case O_PORT:
            if ((rc = port_arg("--port", optarg, &s->port)) != EXIT_OK)
                return rc;
            break;
        case O_FALLBACK:
            if ((rc = port_arg("--fallback-port", optarg, &s->fallback)) != EXIT_OK)
                return rc;
            fb_given = 1;
            break;
        case O_NO_FALLBACK: no_fb = 1; break;
        case O_SPOOL: s->spool = 1; break;
        case O_METRICS: s->metrics = 1; break;
        case O_FORCE: s->force = 1; break;
        case O_TEMPLATES:
            if (s->ntmpl >= SETUP_TEMPLATES_MAX)
                return tool_usage_error(CTX ": at most %d --templates", SETUP_TEMPLATES_MAX);
            s->tmpl[s->ntmpl++] = optarg;
            break;
        case O_PLUGIN: s->plugin = optarg; break;
        case 'h':
        case O_HELP: fputs(setup_usage, stdout); return ADMIN_HELP;
        default: return tool_bad_option(argc, argv, optind);
        }
    }
    if (optind < argc)
        return tool_usage_error(CTX ": unexpected argument '%s'", tool_shown(argv[optind]));
    if (s->host == NULL)
        return tool_usage_error(CTX ": --host NAME is required (the name devices connect to)");
    if (!ca_host_ok(s->host))
        return tool_usage_error(CTX ": --host '%s' is neither a DNS name nor an IP address", tool_shown(s->host));
    if ((s->cert == NULL) != (s->key == NULL))
        return tool_usage_error(CTX ": --cert and --key go together");
    if (s->cert != NULL && s->test_ca)
        return tool_usage_error(CTX ": --test-ca makes a certificate: give it or --cert/--key, not both");
    if ((s->registry != NULL) != (s->project != NULL) || (s->registry != NULL) != (s->region != NULL))
        return tool_usage_error(CTX ": --registry, --project and --region go together");
    if (fb_given && no_fb)
        return tool_usage_error(CTX ": --fallback-port and --no-fallback-port exclude each other");
    if (no_fb)
        s->fallback = 0;
    if (s->fallback == s->port)
        return tool_usage_error(CTX ": --port and --fallback-port are both %ld (give --no-fallback-port for one "
                                "listener)", s->port);
    if (strchr(s->plugin, '\n') != NULL || s->plugin[0] != '/')
        return tool_usage_error(CTX ": --plugin takes an absolute path");
    /* --root: without its trailing '/'; "/" is the machine itself */
    if ((*root_buf = strdup(root)) == NULL)
        return EXIT_FAIL;
    for (rl = strlen(*root_buf); rl > 0 && (*root_buf)[rl - 1] == '/'; rl--)
        (*root_buf)[rl - 1] = '\0';
    s->root = *root_buf;
    if (s->ntmpl == 0 && getenv("LATCHKEY_TEMPLATES") != NULL && getenv("LATCHKEY_TEMPLATES")[0] != '\0') {
        if ((*env_tmpl = strdup(getenv("LATCHKEY_TEMPLATES"))) == NULL)
            return EXIT_FAIL;
        if ((rc = add_templates(s, *env_tmpl)) != EXIT_OK)
            return rc;
    }
    if (s->ntmpl == 0)
        s->tmpl[s->ntmpl++] = LK_DATADIR;
    if (s->registry != NULL) {
        /* the names checked before anything is written, as step_registry will */
        struct admin a;
        admin_init(&a, CTX, setup_usage);
        a.project = s->project;
        a.location = s->region;
        a.registry = s->registry;
        rc = admin_resolve(&a, NULL, 1, NULL);
        admin_close(&a);
        return rc;
    }
    return EXIT_OK;
}

int cmd_setup(int argc, char **argv)
{
    struct setup s;
    char *env_tmpl = NULL, *root_buf = NULL;
    int rc;
    memset(&s, 0, sizeof s);
    rc = parse(&s, argc, argv, &env_tmpl, &root_buf);
    /* docs/operations.md lists the steps in this order */
    if (rc == EXIT_OK && (rc = step_templates(&s)) == EXIT_OK && (rc = step_group(&s)) == EXIT_OK &&
        (rc = setup_dir(&s, SETUP_ETC, 0750, 1)) == EXIT_OK && (rc = setup_tls(&s)) == EXIT_OK &&
        (rc = setup_dir(&s, SETUP_VAR, 02770, 1)) == EXIT_OK && (rc = step_registry(&s)) == EXIT_OK &&
        (rc = step_broker(&s)) == EXIT_OK && (rc = step_units(&s)) == EXIT_OK && (rc = step_daemon(&s)) == EXIT_OK &&
        (rc = step_check(&s)) == EXIT_OK) {
        printf("\nNext (setup restarts nothing; a restart drops every connection):\n"
               "  systemctl daemon-reload && systemctl restart mosquitto\n");
        if (s.daemon)
            printf("  systemctl enable --now latchkeyd\n");
        if (s.test_ca)
            printf("Devices trust %s%s (a TEST CA).\n", s.root, SETUP_CA);
    }
    free(env_tmpl);
    free(root_buf);
    return rc == ADMIN_HELP ? EXIT_OK : rc;
}
