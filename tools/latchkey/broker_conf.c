/*
 * Reading a Mosquitto 2.0.11 configuration as the broker does (src/conf.c,
 * src/conf_includedir.c); see broker_conf.h for the rules followed.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker_conf.h"

/* How an option's value is read. */
enum { T_STR, T_INT, T_BOOL, T_WORDS };

/* What an option does here. */
enum {
    K_PLAIN,        /* known to Mosquitto, not checked */
    K_GLOBAL,       /* checked: g[idx] */
    K_LISTENER,     /* checked: the current listener's opt[idx] */
    K_TRIGGER,      /* not checked, but set before any listener it makes the implicit one */
    K_PLUGIN,       /* plugin / auth_plugin */
    K_INCLUDE,      /* include_dir */
    K_LISTENER_LINE,
    K_PORT,         /* the implicit listener's port (deprecated) */
    K_BIND_ADDRESS, /* the implicit listener's address (deprecated) */
    K_BRIDGE        /* connection: a bridge */
};

struct optdef {
    const char *name;
    unsigned char type, kind;
    signed char idx;
};

/* Every option Mosquitto 2.0.11 knows (src/conf.c); any other word at the
 * start of a line stops the broker. auth_opt_* and plugin_opt_* are handled
 * apart. */
static const struct optdef opts[] = {
    {"acl_file", T_STR, K_GLOBAL, BG_ACL_FILE},
    {"address", T_WORDS, K_PLAIN, -1},
    {"addresses", T_WORDS, K_PLAIN, -1},
    {"allow_anonymous", T_BOOL, K_GLOBAL, BG_ALLOW_ANONYMOUS},
    {"allow_duplicate_messages", T_BOOL, K_PLAIN, -1},
    {"allow_zero_length_clientid", T_BOOL, K_GLOBAL, BG_ALLOW_ZERO_LENGTH},
    {"auth_plugin", T_STR, K_PLUGIN, -1},
    {"auth_plugin_deny_special_chars", T_BOOL, K_PLAIN, -1},
    {"auto_id_prefix", T_STR, K_PLAIN, -1},
    {"autosave_interval", T_INT, K_GLOBAL, BG_AUTOSAVE_INTERVAL},
    {"autosave_on_changes", T_BOOL, K_PLAIN, -1},
    {"bind_address", T_STR, K_BIND_ADDRESS, BG_BIND_ADDRESS},
    {"bind_interface", T_STR, K_LISTENER, BL_BIND_INTERFACE},
    {"bridge_alpn", T_STR, K_PLAIN, -1},
    {"bridge_attempt_unsubscribe", T_BOOL, K_PLAIN, -1},
    {"bridge_bind_address", T_STR, K_PLAIN, -1},
    {"bridge_cafile", T_STR, K_PLAIN, -1},
    {"bridge_capath", T_STR, K_PLAIN, -1},
    {"bridge_certfile", T_STR, K_PLAIN, -1},
    {"bridge_identity", T_STR, K_PLAIN, -1},
    {"bridge_insecure", T_BOOL, K_PLAIN, -1},
    {"bridge_keyfile", T_STR, K_PLAIN, -1},
    {"bridge_max_packet_size", T_INT, K_PLAIN, -1},
    {"bridge_outgoing_retain", T_BOOL, K_PLAIN, -1},
    {"bridge_protocol_version", T_WORDS, K_PLAIN, -1},
    {"bridge_psk", T_STR, K_PLAIN, -1},
    {"bridge_require_ocsp", T_BOOL, K_PLAIN, -1},
    {"bridge_tls_version", T_STR, K_PLAIN, -1},
    {"cafile", T_STR, K_TRIGGER, -1},
    {"capath", T_STR, K_TRIGGER, -1},
    {"certfile", T_STR, K_LISTENER, BL_CERTFILE},
    {"check_retain_source", T_BOOL, K_PLAIN, -1},
    {"ciphers", T_STR, K_TRIGGER, -1},
    {"ciphers_tls1.3", T_STR, K_TRIGGER, -1},
    {"cleansession", T_BOOL, K_PLAIN, -1},
    {"clientid", T_STR, K_PLAIN, -1},
    {"clientid_prefixes", T_STR, K_PLAIN, -1},
    {"connection", T_WORDS, K_BRIDGE, -1},
    {"connection_messages", T_BOOL, K_PLAIN, -1},
    {"crlfile", T_STR, K_TRIGGER, -1},
    {"dhparamfile", T_STR, K_TRIGGER, -1},
    {"http_dir", T_STR, K_PLAIN, -1},
    {"idle_timeout", T_INT, K_PLAIN, -1},
    {"include_dir", T_WORDS, K_INCLUDE, -1},
    {"keepalive_interval", T_INT, K_PLAIN, -1},
    {"keyfile", T_STR, K_LISTENER, BL_KEYFILE},
    {"listener", T_WORDS, K_LISTENER_LINE, -1},
    {"local_cleansession", T_BOOL, K_PLAIN, -1},
    {"local_clientid", T_STR, K_PLAIN, -1},
    {"local_password", T_STR, K_PLAIN, -1},
    {"local_username", T_STR, K_PLAIN, -1},
    {"log_dest", T_WORDS, K_PLAIN, -1},
    {"log_facility", T_INT, K_PLAIN, -1},
    {"log_timestamp", T_BOOL, K_PLAIN, -1},
    {"log_timestamp_format", T_STR, K_PLAIN, -1},
    {"log_type", T_WORDS, K_PLAIN, -1},
    {"max_connections", T_INT, K_LISTENER, BL_MAX_CONNECTIONS},
    {"max_inflight_bytes", T_INT, K_PLAIN, -1},
    {"max_inflight_messages", T_INT, K_GLOBAL, BG_MAX_INFLIGHT},
    {"max_keepalive", T_INT, K_GLOBAL, BG_MAX_KEEPALIVE},
    {"max_packet_size", T_INT, K_GLOBAL, BG_MAX_PACKET_SIZE},
    {"max_qos", T_INT, K_LISTENER, BL_MAX_QOS},
    {"max_queued_bytes", T_INT, K_GLOBAL, BG_MAX_QUEUED_BYTES},
    {"max_queued_messages", T_INT, K_GLOBAL, BG_MAX_QUEUED},
    {"max_topic_alias", T_INT, K_LISTENER, BL_MAX_TOPIC_ALIAS},
    {"maximum_qos", T_INT, K_LISTENER, BL_MAX_QOS},
    {"memory_limit", T_INT, K_GLOBAL, BG_MEMORY_LIMIT},
    {"message_size_limit", T_INT, K_GLOBAL, BG_MESSAGE_SIZE_LIMIT},
    {"mount_point", T_STR, K_TRIGGER, -1},
    {"notification_topic", T_STR, K_PLAIN, -1},
    {"notifications", T_BOOL, K_PLAIN, -1},
    {"notifications_local_only", T_BOOL, K_PLAIN, -1},
    {"password", T_STR, K_PLAIN, -1},
    {"password_file", T_STR, K_GLOBAL, BG_PASSWORD_FILE},
    {"per_listener_settings", T_BOOL, K_GLOBAL, BG_PER_LISTENER},
    {"persistence", T_BOOL, K_GLOBAL, BG_PERSISTENCE},
    {"persistence_file", T_STR, K_GLOBAL, BG_PERSISTENCE_FILE},
    {"persistence_location", T_STR, K_GLOBAL, BG_PERSISTENCE_LOCATION},
    {"persistent_client_expiration", T_WORDS, K_PLAIN, -1},
    {"pid_file", T_STR, K_GLOBAL, BG_PID_FILE},
    {"plugin", T_STR, K_PLUGIN, -1},
    {"port", T_INT, K_PORT, BG_PORT},
    {"protocol", T_WORDS, K_LISTENER, BL_PROTOCOL},
    {"psk_file", T_STR, K_GLOBAL, BG_PSK_FILE},
    {"psk_hint", T_STR, K_LISTENER, BL_PSK_HINT},
    {"queue_qos0_messages", T_BOOL, K_PLAIN, -1},
    {"remote_clientid", T_STR, K_PLAIN, -1},
    {"remote_password", T_STR, K_PLAIN, -1},
    {"remote_username", T_STR, K_PLAIN, -1},
    {"require_certificate", T_BOOL, K_TRIGGER, -1},
    {"restart_timeout", T_WORDS, K_PLAIN, -1},
    {"retain_available", T_BOOL, K_GLOBAL, BG_RETAIN_AVAILABLE},
    {"retained_persistence", T_BOOL, K_PLAIN, -1},
    {"retry_interval", T_WORDS, K_PLAIN, -1},
    {"round_robin", T_BOOL, K_PLAIN, -1},
    {"set_tcp_nodelay", T_BOOL, K_PLAIN, -1},
    {"socket_domain", T_WORDS, K_TRIGGER, -1},
    {"start_type", T_WORDS, K_PLAIN, -1},
    {"sys_interval", T_INT, K_PLAIN, -1},
    {"threshold", T_INT, K_PLAIN, -1},
    {"tls_engine", T_STR, K_TRIGGER, -1},
    {"tls_engine_kpass_sha1", T_STR, K_TRIGGER, -1},
    {"tls_keyform", T_STR, K_TRIGGER, -1},
    {"tls_version", T_STR, K_LISTENER, BL_TLS_VERSION},
    {"topic", T_WORDS, K_PLAIN, -1},
    {"try_private", T_BOOL, K_PLAIN, -1},
    {"upgrade_outgoing_qos", T_BOOL, K_PLAIN, -1},
    {"use_identity_as_username", T_BOOL, K_TRIGGER, -1},
    {"use_subject_as_username", T_BOOL, K_TRIGGER, -1},
    {"use_username_as_clientid", T_BOOL, K_TRIGGER, -1},
    {"user", T_STR, K_GLOBAL, BG_USER},
    {"username", T_STR, K_PLAIN, -1},
    {"websockets_headers_size", T_INT, K_PLAIN, -1},
    {"websockets_log_level", T_INT, K_PLAIN, -1},
};

/* String options Mosquitto refuses to see twice in one scope ("Duplicate
 * value"): everything read with conf__parse_string into a slot it does not
 * free first (user is freed first). */
static int dup_refused_global(int idx)
{
    return idx == BG_ACL_FILE || idx == BG_PASSWORD_FILE || idx == BG_PSK_FILE || idx == BG_PID_FILE ||
           idx == BG_PERSISTENCE_FILE || idx == BG_PERSISTENCE_LOCATION || idx == BG_BIND_ADDRESS;
}

static int dup_refused_listener(int idx)
{
    return idx == BL_CERTFILE || idx == BL_KEYFILE || idx == BL_TLS_VERSION || idx == BL_BIND_INTERFACE ||
           idx == BL_PSK_HINT;
}

/* What one file's reading keeps: Mosquitto's current listener and plugin
 * are local to each file (config__read_file_core). */
struct file_state {
    unsigned file;
    int level;     /* 0: the main file */
    long cur_l;    /* index into c->ls, or -1: the implicit listener */
    long cur_p;    /* index into c->pl, or -1: no plugin line yet in this file */
    struct bc_at include_at;
};

struct seen_file {
    dev_t dev;
    ino_t ino;
};

struct reader {
    struct bc_conf *c;
    char *why;
    size_t why_len;
    struct seen_file seen[BC_FILES_MAX];
};

static lk_err fail(struct reader *r, lk_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static lk_err fail(struct reader *r, lk_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, r->why_len, fmt, ap);
    va_end(ap);
    return err;
}

int bc_add(struct bc_conf *c, struct bc_at at, const char *setting, const char *fix, const char *fmt, ...)
{
    struct bc_finding *nf;
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    nf = realloc(c->f, (c->nf + 1) * sizeof *nf);
    if (nf == NULL)
        return -1;
    c->f = nf;
    nf[c->nf].at = at;
    nf[c->nf].seq = c->nf;
    nf[c->nf].setting = strdup(setting);
    nf[c->nf].problem = strdup(buf);
    nf[c->nf].fix = strdup(fix);
    if (nf[c->nf].setting == NULL || nf[c->nf].problem == NULL || nf[c->nf].fix == NULL) {
        free(nf[c->nf].setting);
        free(nf[c->nf].problem);
        free(nf[c->nf].fix);
        return -1;
    }
    c->nf++;
    return 0;
}

static const struct optdef *find_opt(const char *name)
{
    size_t i;
    for (i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

/* misc__trimblanks: isspace() off both ends. */
static char *trim(char *s)
{
    size_t n;
    while (isspace((unsigned char)*s))
        s++;
    n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A '#' that starts a word: what a reader takes for a comment. */
static int has_comment(const char *v)
{
    const char *p = strchr(v, '#');
    return p != NULL && (p == v || p[-1] == ' ' || p[-1] == '\t');
}

/* atoi()/atol() as Mosquitto applies them; *plain says whether the word was
 * nothing but a decimal number (of at most 18 digits). */
static long long mosq_atol(const char *s, int *plain)
{
    const char *p = s;
    long long v = 0;
    int neg = 0, digits = 0;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    for (; *p >= '0' && *p <= '9'; p++, digits++)
        if (digits < 18)
            v = v * 10 + (*p - '0');
    *plain = p != s && !isspace((unsigned char)*s) && digits > 0 && digits <= 18 && *p == '\0';
    return neg ? -v : v;
}

static int set_opt(struct bc_opt *o, struct bc_at at, const char *val, long long num)
{
    char *v = strdup(val);
    if (v == NULL)
        return -1;
    free(o->val);
    o->val = v;
    o->num = num;
    o->at = at;
    o->set = 1;
    return 0;
}

static struct bc_listener *cur_listener(struct bc_conf *c, const struct file_state *fs)
{
    return fs->cur_l < 0 ? &c->def : &c->ls[fs->cur_l];
}

/* The implicit listener comes to exist (config__parse_args). */
static void touch_default(struct bc_conf *c, const struct file_state *fs, struct bc_at at, const char *name)
{
    if (fs->cur_l >= 0 || c->def_used)
        return;
    c->def_used = 1;
    c->def.at = at;
    c->def.first_opt = name;
}

#define ADD(...)                                  \
    do {                                          \
        if (bc_add(c, __VA_ARGS__) != 0)          \
            return LK_ERR_NOMEM;                  \
    } while (0)

static const char refuse_start[] = "Mosquitto refuses to start";

static lk_err read_file(struct reader *r, const char *path, int level, struct bc_at include_at);

/* config__get_dir_files' order: case-insensitive first, then by case. */
static int scmp_p(const void *p1, const void *p2)
{
    const char *s1 = *(const char *const *)p1, *s2 = *(const char *const *)p2;
    while (s1[0] && s2[0]) {
        int d = toupper((unsigned char)s1[0]) - toupper((unsigned char)s2[0]);
        if (d != 0)
            return d;
        if (s1[0] != s2[0])
            return s1[0] - s2[0];
        s1++;
        s2++;
    }
    return (unsigned char)s1[0] - (unsigned char)s2[0];
}

static lk_err include_dir(struct reader *r, struct file_state *fs, struct bc_at at, const char *dir)
{
    struct bc_conf *c = r->c;
    DIR *dh;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, i;
    lk_err err = LK_OK;

    if (fs->level > 0) {
        ADD(at, "include_dir", "move it into the main configuration file",
            "ignored: Mosquitto follows include_dir in the main file only");
        return LK_OK;
    }
    if (dir[0] == '\0') {
        ADD(at, "include_dir", "name a directory", "no directory given: %s", refuse_start);
        return LK_OK;
    }
    /* The value is taken as it stands (not trimmed), a comment included. */
    if (has_comment(dir) || isspace((unsigned char)dir[0]) || isspace((unsigned char)dir[strlen(dir) - 1]))
        ADD(at, "include_dir", "write the directory alone on the line (comments go on their own line)",
            "Mosquitto opens '%s' as it stands (spaces and '#' included)", dir);
    dh = opendir(dir);
    if (dh == NULL) {
        ADD(at, "include_dir", "create the directory or correct the path", "cannot open directory %s: %s: %s",
            dir, strerror(errno), refuse_start);
        return LK_OK;
    }
    while ((de = readdir(dh)) != NULL) {
        size_t len = strlen(de->d_name);
        char **nn;
        if (len <= 5 || strcmp(de->d_name + len - 5, ".conf") != 0)
            continue;
        if (c->nfiles + n >= BC_FILES_MAX) {
            err = fail(r, LK_ERR_TOO_LARGE, "include_dir %s: more than %u configuration files in all", dir,
                       BC_FILES_MAX);
            break;
        }
        nn = realloc(names, (n + 1) * sizeof *nn);
        if (nn == NULL) {
            err = LK_ERR_NOMEM;
            break;
        }
        names = nn;
        names[n] = malloc(strlen(dir) + len + 2);
        if (names[n] == NULL) {
            err = LK_ERR_NOMEM;
            break;
        }
        sprintf(names[n], "%s/%s", dir, de->d_name);
        n++;
    }
    closedir(dh);
    if (err == LK_OK) {
        if (n > 1)
            qsort(names, n, sizeof *names, scmp_p);
        for (i = 0; i < n && err == LK_OK; i++)
            err = read_file(r, names[i], fs->level + 1, at);
    }
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return err;
}

/* `listener PORT [ADDRESS|SOCKET-PATH]`. */
static lk_err listener_line(struct bc_conf *c, struct file_state *fs, struct bc_at at, char *rest)
{
    char *save = NULL, *port = strtok_r(rest, " ", &save), *host;
    struct bc_listener *nl, *l;
    long long p;
    int plain;

    c->listener_lines = 1;
    if (port == NULL) {
        ADD(at, "listener", "listener PORT [ADDRESS]", "no port: %s", refuse_start);
        return LK_OK;
    }
    p = mosq_atol(port, &plain);
    host = strtok_r(NULL, " ", &save);
    if (host != NULL && host[0] == '#')
        host = NULL; /* Mosquitto's one trailing comment */
    if (!plain || p < 0 || p > 65535 || (p == 0 && host == NULL)) {
        ADD(at, "listener", "listener PORT [ADDRESS] with PORT 1 to 65535",
            "'%s' is not a port (Mosquitto reads %lld)%s", port, p,
            p < 0 || p > 65535 || (p == 0 && host == NULL) ? ": Mosquitto refuses to start" : "");
        if (p < 0 || p > 65535 || (p == 0 && host == NULL))
            return LK_OK;
    }
    nl = realloc(c->ls, (c->nls + 1) * sizeof *nl);
    if (nl == NULL)
        return LK_ERR_NOMEM;
    c->ls = nl;
    l = &c->ls[c->nls];
    memset(l, 0, sizeof *l);
    l->at = at;
    l->port = (long)p;
    if (host != NULL && (l->host = strdup(host)) == NULL)
        return LK_ERR_NOMEM;
    fs->cur_l = (long)c->nls++;
    return LK_OK;
}

static lk_err plugin_opt(struct bc_conf *c, struct file_state *fs, struct bc_at at, const char *word,
                         const char *line_after)
{
    const char *key = strchr(word, '_') + 1; /* after auth_ or plugin_ */
    const char *v = line_after;

    key = strchr(key, '_') + 1;
    if (fs->cur_p < 0) {
        ADD(at, word, "put plugin options after their plugin line, in the same file",
            "no plugin line before it in this file: %s", refuse_start);
        return LK_OK;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v == '\0') {
        ADD(at, word, "give a value", "no value: %s", refuse_start);
        return LK_OK;
    }
    if (has_comment(v) || isspace((unsigned char)v[strlen(v) - 1]))
        ADD(at, word, "write the value alone on the line (comments go on their own line)",
            "the plugin receives '%s' as the value, spaces and '#' included (Mosquitto has no trailing comments)",
            v);
    if (strcmp(key, "registry") == 0 && set_opt(&c->pl[fs->cur_p].registry, at, v, 0) != 0)
        return LK_ERR_NOMEM;
    return LK_OK;
}

static lk_err parse_line(struct reader *r, struct file_state *fs, unsigned lineno, char *buf)
{
    struct bc_conf *c = r->c;
    struct bc_at at = {fs->file, lineno};
    const struct optdef *d;
    char *save = NULL, *word, *after, *val = NULL;
    long long num = 0;
    int plain = 1;
    size_t n;

    /* A comment or an empty line: only the first character counts. */
    if (buf[0] == '#' || buf[0] == '\n' || buf[0] == '\r' || buf[0] == '\0')
        return LK_OK;
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    word = strtok_r(buf, " ", &save);
    if (word == NULL)
        return LK_OK;
    /* strtok_r left save just after the space that ended the word. */
    after = save != NULL ? save : buf + n;

    if (word[0] == '#') {
        ADD(at, word, "start the comment in the first column",
            "a comment must start in the first column: Mosquitto reads '%s' as an option and refuses to start",
            word);
        return LK_OK;
    }
    if (strchr(word, '\t') != NULL) {
        char shown[64];
        snprintf(shown, sizeof shown, "%.*s", (int)strcspn(word, "\t"), word);
        ADD(at, shown, "separate the option and its value with spaces",
            "a tab after the option name: Mosquitto separates words by spaces only, reads one unknown word "
            "and refuses to start");
        return LK_OK;
    }
    if (strncmp(word, "plugin_opt_", 11) == 0 || strncmp(word, "auth_opt_", 9) == 0)
        return plugin_opt(c, fs, at, word, after);
    d = find_opt(word);
    if (d == NULL) {
        ADD(at, word, "remove it or correct its name (mosquitto.conf(5))",
            "not an option of Mosquitto 2.0.11: %s", refuse_start);
        return LK_OK;
    }

    /* The value, read the way Mosquitto reads this option. */
    switch (d->type) {
    case T_STR:
        val = trim(after);
        if (*val == '\0') {
            ADD(at, word, "give a value", "no value: %s", refuse_start);
            return LK_OK;
        }
        if (has_comment(val))
            ADD(at, word, "write the value alone on the line (comments go on their own line)",
                "Mosquitto reads the value '%s', '#' and all: it has no trailing comments", val);
        break;
    case T_INT:
    case T_BOOL:
        val = strtok_r(NULL, " ", &save);
        if (val == NULL) {
            ADD(at, word, "give a value", "no value: %s", refuse_start);
            return LK_OK;
        }
        if (d->type == T_INT) {
            num = mosq_atol(val, &plain);
            if (!plain && (d->kind == K_GLOBAL || d->kind == K_LISTENER || d->kind == K_PORT))
                ADD(at, word, "write the number in plain digits (bytes, seconds)",
                    "'%s' is not a plain number: Mosquitto reads %lld", val, num);
        } else if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0) {
            num = 1;
        } else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0) {
            num = 0;
        } else {
            ADD(at, word, "write true or false", "'%s' is not true or false: %s", val, refuse_start);
            return LK_OK;
        }
        break;
    default:
        val = after;
        break;
    }

    switch (d->kind) {
    case K_GLOBAL:
        if (d->type == T_STR && c->g[d->idx].set && dup_refused_global(d->idx)) {
            ADD(at, word, "keep one of the two lines",
                "given a second time (first at %s:%u): %s", c->files[c->g[d->idx].at.file],
                c->g[d->idx].at.line, refuse_start);
            return LK_OK;
        }
        if (set_opt(&c->g[d->idx], at, val, num) != 0)
            return LK_ERR_NOMEM;
        return LK_OK;
    case K_LISTENER: {
        struct bc_listener *l = cur_listener(c, fs);
        if (d->type == T_STR && l->opt[d->idx].set && dup_refused_listener(d->idx)) {
            ADD(at, word, "keep one of the two lines",
                "given a second time for this listener (first at %s:%u): %s",
                c->files[l->opt[d->idx].at.file], l->opt[d->idx].at.line, refuse_start);
            return LK_OK;
        }
        if (d->idx == BL_PROTOCOL) {
            char *s2 = NULL;
            val = strtok_r(val, " ", &s2);
            if (val == NULL)
                val = "";
        }
        if (set_opt(&l->opt[d->idx], at, val, num) != 0)
            return LK_ERR_NOMEM;
        /* Whether this makes Mosquitto's implicit listener exist
         * (config__parse_args); tls_version and max_topic_alias do not. */
        if ((d->idx == BL_CERTFILE || d->idx == BL_KEYFILE || d->idx == BL_BIND_INTERFACE ||
             d->idx == BL_PSK_HINT || (d->idx == BL_MAX_CONNECTIONS && num >= 0) ||
             (d->idx == BL_MAX_QOS && num != 2) || (d->idx == BL_PROTOCOL && strcmp(val, "mqtt") != 0)))
            touch_default(c, fs, at, d->name);
        return LK_OK;
    }
    case K_TRIGGER:
        if (d->type != T_BOOL || num == 1) {
            if (strcmp(d->name, "tls_keyform") != 0 || strcmp(val, "pem") != 0)
                touch_default(c, fs, at, d->name);
        }
        return LK_OK;
    case K_PORT:
        /* Always the implicit listener's port, whatever block it is in. */
        c->listener_lines = 1;
        if (num < 1 || num > 65535) {
            ADD(at, word, "port 1 to 65535 (better: a listener line)", "invalid port %lld: %s", num, refuse_start);
            return LK_OK;
        }
        if (set_opt(&c->g[BG_PORT], at, val, num) != 0)
            return LK_ERR_NOMEM;
        c->def.port = (long)num;
        if (!c->def_used) {
            c->def_used = 1;
            c->def.at = at;
            c->def.first_opt = d->name;
        }
        return LK_OK;
    case K_BIND_ADDRESS:
        c->listener_lines = 1;
        if (c->g[BG_BIND_ADDRESS].set) {
            ADD(at, word, "keep one of the two lines", "given a second time: %s", refuse_start);
            return LK_OK;
        }
        if (set_opt(&c->g[BG_BIND_ADDRESS], at, val, 0) != 0)
            return LK_ERR_NOMEM;
        free(c->def.host);
        if ((c->def.host = strdup(val)) == NULL)
            return LK_ERR_NOMEM;
        /* bind_address always names the implicit listener, whatever block it is in. */
        if (!c->def_used) {
            c->def_used = 1;
            c->def.at = at;
            c->def.first_opt = d->name;
        }
        return LK_OK;
    case K_LISTENER_LINE:
        return listener_line(c, fs, at, val);
    case K_PLUGIN: {
        struct bc_plugin *np = realloc(c->pl, (c->npl + 1) * sizeof *np);
        if (np == NULL)
            return LK_ERR_NOMEM;
        c->pl = np;
        memset(&np[c->npl], 0, sizeof np[c->npl]);
        np[c->npl].at = at;
        if ((np[c->npl].path = strdup(val)) == NULL)
            return LK_ERR_NOMEM;
        fs->cur_p = (long)c->npl++;
        return LK_OK;
    }
    case K_INCLUDE:
        return include_dir(r, fs, at, val);
    case K_BRIDGE:
        if (c->bridges++ == 0)
            c->first_bridge = at;
        return LK_OK;
    default:
        return LK_OK;
    }
}

static lk_err read_file(struct reader *r, const char *path, int level, struct bc_at include_at)
{
    struct bc_conf *c = r->c;
    struct file_state fs;
    struct stat st;
    char *buf = NULL, **nf;
    size_t len = 0, pos;
    ssize_t got;
    unsigned lineno = 0, i;
    lk_err err = LK_OK;
    int fd;

    if (c->nfiles >= BC_FILES_MAX)
        return fail(r, LK_ERR_TOO_LARGE, "%s: more than %u configuration files in all", path, BC_FILES_MAX);
    /* O_NONBLOCK: a FIFO among the files must not hang the check. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : (errno = 0, S_ISDIR(st.st_mode) ? EISDIR : EINVAL);
        const char *what = e == EINVAL ? "not a regular file" : strerror(e);
        if (fd >= 0)
            close(fd);
        if (level == 0) {
            c->err_no = e;
            return fail(r, LK_ERR_IO, "%s: %s", path, what);
        }
        ADD(include_at, "include_dir", "make the file readable or remove it", "%s: %s: %s", path, what,
            refuse_start);
        return LK_OK;
    }
    for (i = 0; i < c->nfiles; i++) {
        if (r->seen[i].dev == st.st_dev && r->seen[i].ino == st.st_ino) {
            ADD(include_at, "include_dir", "read each file once (the main file outside its include_dir)",
                "%s is %s again: its lines take effect twice (a listener in it cannot bind twice, a file option "
                "given twice is refused: %s)",
                path, c->files[i], refuse_start);
            close(fd);
            return LK_OK;
        }
    }
    if ((size_t)st.st_size > BC_FILE_MAX) {
        close(fd);
        return fail(r, LK_ERR_TOO_LARGE, "%s: %lld bytes, more than the %u bytes a configuration file may have",
                    path, (long long)st.st_size, BC_FILE_MAX);
    }
    buf = malloc(BC_FILE_MAX + 2);
    if (buf == NULL) {
        close(fd);
        return LK_ERR_NOMEM;
    }
    /* Read to the bound whatever fstat said: a file may grow meanwhile. */
    while (len <= BC_FILE_MAX && (got = read(fd, buf + len, BC_FILE_MAX + 1 - len)) != 0) {
        if (got < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            close(fd);
            free(buf);
            if (level == 0) {
                c->err_no = e;
                return fail(r, LK_ERR_IO, "%s: %s", path, strerror(e));
            }
            ADD(include_at, "include_dir", "make the file readable or remove it", "%s: %s: %s", path,
                strerror(e), refuse_start);
            return LK_OK;
        }
        len += (size_t)got;
    }
    close(fd);
    if (len > BC_FILE_MAX || c->total + len > BC_TOTAL_MAX) {
        free(buf);
        return fail(r, LK_ERR_TOO_LARGE, "%s: more than %u bytes%s", path,
                    len > BC_FILE_MAX ? BC_FILE_MAX : BC_TOTAL_MAX,
                    len > BC_FILE_MAX ? ", the most a configuration file may have" : " in all files together");
    }
    c->total += len;
    buf[len] = '\0';

    nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf);
    if (nf == NULL || (nf[c->nfiles] = strdup(path)) == NULL) {
        if (nf != NULL)
            c->files = nf;
        free(buf);
        return LK_ERR_NOMEM;
    }
    c->files = nf;
    r->seen[c->nfiles].dev = st.st_dev;
    r->seen[c->nfiles].ino = st.st_ino;
    memset(&fs, 0, sizeof fs);
    fs.file = c->nfiles++;
    fs.level = level;
    fs.cur_l = -1;
    fs.cur_p = -1;
    fs.include_at = include_at;

    for (pos = 0; pos < len && err == LK_OK;) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - buf) + 1 : len;
        lineno++;
        if (end - pos > BC_LINE_MAX) {
            err = fail(r, LK_ERR_TOO_LARGE, "%s:%u: a line of more than %u bytes", path, lineno, BC_LINE_MAX);
            break;
        }
        if (memchr(buf + pos, '\0', end - pos) != NULL) {
            if (bc_add(c, (struct bc_at){fs.file, lineno}, "(line)", "remove the NUL byte",
                       "a NUL byte: Mosquitto reads the line only up to it") != 0)
                err = LK_ERR_NOMEM;
        }
        {
            char save = buf[end];
            buf[end] = '\0';
            if (err == LK_OK)
                err = parse_line(r, &fs, lineno, buf + pos);
            buf[end] = save;
        }
        pos = end;
    }
    free(buf);
    return err;
}

lk_err bc_read(struct bc_conf *c, const char *path, char *why, size_t why_len)
{
    struct reader *r;
    lk_err err;

    memset(c, 0, sizeof *c);
    c->def.implicit = 1;
    c->def.port = 1883;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return LK_ERR_NOMEM;
    r->c = c;
    r->why = why;
    r->why_len = why_len;
    why[0] = '\0';
    err = read_file(r, path, 0, (struct bc_at){0, 0});
    free(r);
    return err;
}

static void opt_free(struct bc_opt *o)
{
    free(o->val);
}

void bc_free(struct bc_conf *c)
{
    unsigned i, j;
    for (i = 0; i < c->nfiles; i++)
        free(c->files[i]);
    free(c->files);
    for (i = 0; i < BG_N; i++)
        opt_free(&c->g[i]);
    for (i = 0; i < c->nls; i++) {
        free(c->ls[i].host);
        for (j = 0; j < BL_N; j++)
            opt_free(&c->ls[i].opt[j]);
    }
    free(c->ls);
    free(c->def.host);
    for (j = 0; j < BL_N; j++)
        opt_free(&c->def.opt[j]);
    for (i = 0; i < c->npl; i++) {
        free(c->pl[i].path);
        opt_free(&c->pl[i].registry);
    }
    free(c->pl);
    for (i = 0; i < c->nf; i++) {
        free(c->f[i].setting);
        free(c->f[i].problem);
        free(c->f[i].fix);
    }
    free(c->f);
    memset(c, 0, sizeof *c);
}
