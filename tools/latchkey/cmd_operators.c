/*
 * latchkey operators create NAME --project P --role ROLE [--password-file F]
 *                   passwd NAME [--password-file F]
 *                   disable|enable|delete NAME
 *                   list [--project P]
 * latchkey audit list [--since RFC3339] [--limit N] [--project P] [--format table|json|jsonl|csv]
 *                audit export [--since RFC3339] [--project P] [--format jsonl|csv]
 *
 * Operators are the people who sign in to latchkeyd's console
 * (lk_reg_audit.h, docs/console.md). A password is never an argument
 * (argv is visible to every user of the machine): it is read from
 * --password-file F (its first line) or standard input (a terminal is
 * asked twice, without echo), kept in one buffer and wiped. These commands
 * work only with --db (latchkeyd's API has no method for them).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <fcntl.h>

#include <openssl/crypto.h>

#include "cli.h"
#include "admin.h"
#include "latchkey/lk_iotcore.h"

enum { OPT_ROLE = OPT_FIRST_OWN, OPT_PASSWORD_FILE, OPT_SINCE, OPT_LIMIT, OPT_AFORMAT };

static const char op_usage[] =
    "usage: latchkey [--db FILE] operators COMMAND [options]\n"
    "\n"
    "  create NAME --project P --role ROLE [--password-file F]   a new console operator\n"
    "  passwd NAME [--password-file F]   a new password (the operator's sessions end)\n"
    "  disable NAME | enable NAME        refuse (sessions end) or allow sign-in again\n"
    "  delete NAME                       delete the operator\n"
    "  list [--project P]                the operators (of project P, or all)\n"
    "\n"
    "NAME: 1 to 32 characters, a lowercase letter, then lowercase letters, digits, '.', '_' or\n"
    "'-'. ROLE: viewer, deviceController, provisioner, editor or admin, as service accounts.\n"
    "The password (12 to 1024 characters) is the first line of --password-file F, or read from\n"
    "standard input (a terminal is asked twice); never an argument.\n"
    "Common options: --db FILE (or LATCHKEY_DB), --format text|json, --busy-timeout MS.\n"
    "Exit codes: docs/cli.md.\n";

static const char audit_usage[] =
    "usage: latchkey [--db FILE] audit list|export [options]\n"
    "\n"
    "  list [--since T] [--limit N] [--project P] [--format table|json|jsonl|csv]\n"
    "                  the newest changes first (N default 100, 0 = all)\n"
    "  export [--since T] [--project P] [--format jsonl|csv]\n"
    "                  every change, oldest first (default jsonl)\n"
    "\n"
    "Each change: time, actor (operator:NAME, serviceAccount:EMAIL, tool:USER@HOST), via\n"
    "(console, api, tool), action, resource, detail, outcome (ok or the refusal's error).\n"
    "T: RFC 3339 (2030-01-02T03:04:05Z) or seconds since 1970. Exit codes: docs/cli.md.\n";

#define PW_BUF (LK_PASSWORD_MAX + 4)

/* One line of at most PW_BUF - 2 bytes from fd into buf (NUL-terminated,
 * the newline dropped): its length, or -1 (too long, read error, NUL). */
static long read_line(int fd, char *buf)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0)
            return -1;
        if (r == 0 || ch == '\n')
            break;
        if (ch == '\0' || n + 2 >= PW_BUF)
            return -1;
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

/* The new password into buf (PW_BUF bytes): *len, EXIT_OK; else an exit
 * code with the reason printed (the password never). */
static int read_password(const struct admin *a, const char *file, char *buf, size_t *len)
{
    long n;
    int fd = 0, tty = 0;
    struct termios old, quiet;
    if (file != NULL && strcmp(file, "-") != 0) {
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            tool_error(a->cmd, LK_ERR_IO, "--password-file %s cannot be read", file);
            return EXIT_FILE;
        }
    } else if (isatty(0) && tcgetattr(0, &old) == 0) {
        tty = 1;
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        fputs("Password: ", stderr);
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    n = read_line(fd, buf);
    if (tty) {
        char again[PW_BUF];
        long m;
        fputs("\nAgain: ", stderr);
        m = read_line(0, again);
        fputs("\n", stderr);
        tcsetattr(0, TCSAFLUSH, &old);
        if (n >= 0 && (m != n || CRYPTO_memcmp(again, buf, (size_t)n) != 0))
            n = -2;
        OPENSSL_cleanse(again, sizeof again);
    }
    if (fd > 0)
        close(fd);
    if (n == -2) {
        OPENSSL_cleanse(buf, PW_BUF);
        tool_error(a->cmd, LK_ERR_ARG, "the two passwords differ");
        return EXIT_USAGE;
    }
    if (n < (long)LK_PASSWORD_MIN || n > (long)LK_PASSWORD_MAX) {
        OPENSSL_cleanse(buf, PW_BUF);
        tool_error(a->cmd, LK_ERR_REG_INVALID, "a password is one line of %u to %u characters (read %s)",
                   LK_PASSWORD_MIN, LK_PASSWORD_MAX, n < 0 ? "a longer one, or a NUL" : "a shorter one");
        return EXIT_REG_INVALID;
    }
    *len = (size_t)n;
    return EXIT_OK;
}

static int op_cb(void *arg, const lk_reg_operator *o)
{
    struct admin_list *x = arg;
    char when[32];
    if (x->t == NULL) {
        json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:o}", "name", o->name, "project", o->project, "role",
                              lk_reg_sa_role_name(o->role), "disabled", o->disabled, "createTime",
                              out_jtime(o->created));
        if (j == NULL || out_list_item(&x->l, j) != EXIT_OK)
            x->failed = 1;
    } else {
        const char *row[5] = {o->name, o->project, lk_reg_sa_role_name(o->role),
                              o->disabled ? "DISABLED" : "ENABLED", lk_time_rfc3339(o->created, when, sizeof when)};
        if (out_table_row(x->t, row) != 0)
            x->failed = 1;
    }
    return x->failed;
}

static int op_run(struct admin *a, const char *sub, const char *name, const char *role, const char *pwfile)
{
    char why[512] = "", res[LK_AUDIT_RESOURCE_MAX + 1];
    char *pw = NULL;
    size_t len = 0;
    lk_err err;
    int rc;

    if (strcmp(sub, "list") == 0) {
        static const char *const heads[] = {"NAME", "PROJECT", "ROLE", "STATE", "CREATED"};
        struct admin_list x;
        if ((a->project != NULL && (rc = admin_check_project(a)) != EXIT_OK) ||
            (rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK || (rc = admin_list_begin(a, &x, 5, heads)) != EXIT_OK)
            return rc;
        err = lk_registry_operator_list(a->reg, a->project, op_cb, &x, why, sizeof why);
        return admin_list_end(a, &x, err, why);
    }
    int creating = strcmp(sub, "create") == 0;
    lk_reg_sa_role r = LK_ROLE_NONE;
    if (creating) {
        if (a->project == NULL)
            return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
        if (role == NULL || (r = lk_reg_sa_role_from_name(role)) == LK_ROLE_NONE)
            return tool_usage_error("%s: --role is viewer, deviceController, provisioner, editor or admin", a->cmd);
        if ((rc = admin_check_project(a)) != EXIT_OK)
            return rc;
    }
    if (creating || strcmp(sub, "passwd") == 0) {
        pw = OPENSSL_secure_malloc(PW_BUF);
        if (pw == NULL && (pw = malloc(PW_BUF)) == NULL)
            return admin_fail(a, LK_ERR_NOMEM, NULL);
        if ((rc = read_password(a, pwfile, pw, &len)) != EXIT_OK)
            goto out;
    }
    if ((rc = admin_open(a, creating ? ADMIN_OPEN_CREATE : ADMIN_OPEN_WRITE)) != EXIT_OK)
        goto out;
    /* the resource names the operator's project (the REST audit list's filter) */
    {
        lk_reg_operator o;
        const char *proj = creating ? a->project : NULL;
        if (!creating && lk_registry_operator_get(a->reg, name, &o) == LK_OK) {
            snprintf(res, sizeof res, "projects/%s/operators/%s", o.project, name);
            lk_reg_operator_free(&o);
        } else
            snprintf(res, sizeof res, "%s%s%soperators/%s", proj ? "projects/" : "", proj ? proj : "",
                     proj ? "/" : "", name);
        char action[64];
        snprintf(action, sizeof action, "operators.%s", sub);
        lk_registry_set_action(a->reg, action, res, creating ? role : NULL);
    }
    if (creating)
        err = lk_registry_operator_create(a->reg, name, a->project, r, pw, len, why, sizeof why);
    else if (strcmp(sub, "passwd") == 0)
        err = lk_registry_operator_passwd(a->reg, name, pw, len, why, sizeof why);
    else if (strcmp(sub, "delete") == 0)
        err = lk_registry_operator_delete(a->reg, name, why, sizeof why);
    else
        err = lk_registry_operator_set_disabled(a->reg, name, strcmp(sub, "disable") == 0, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    if (a->json)
        rc = out_json(json_pack("{s:s,s:s}", "name", name, "done", sub));
    else {
        printf("%s operator [%s].\n",
               creating ? "Created" : strcmp(sub, "passwd") == 0 ? "Set the password of"
               : strcmp(sub, "delete") == 0 ? "Deleted" : strcmp(sub, "disable") == 0 ? "Disabled" : "Enabled",
               name);
        rc = EXIT_OK;
    }
out:
    if (pw != NULL) {
        OPENSSL_cleanse(pw, PW_BUF);
        if (CRYPTO_secure_allocated(pw))
            OPENSSL_secure_free(pw);
        else
            free(pw);
    }
    return rc;
}

int cmd_operators(int argc, char **argv)
{
    static const char *const subs[] = {"create", "passwd", "disable", "enable", "delete", "list"};
    static const struct option opts[] = {
        {"db", required_argument, 0, OPT_DB},
        {"project", required_argument, 0, OPT_PROJECT},
        {"format", required_argument, 0, OPT_FORMAT},
        {"busy-timeout", required_argument, 0, OPT_BUSY_TIMEOUT},
        {"role", required_argument, 0, OPT_ROLE},
        {"password-file", required_argument, 0, OPT_PASSWORD_FILE},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    struct admin a;
    char full[64];
    const char *role = NULL, *pwfile = NULL, *name = NULL;
    size_t i;
    int c, rc;

    if ((rc = admin_group_usage(argc, argv, 1, op_usage)) != -1)
        return rc;
    for (i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i]) == 0)
            break;
    if (i == sizeof subs / sizeof subs[0])
        return tool_usage_error("operators: unknown command '%s' (create, passwd, disable, enable, delete, list)",
                                tool_shown(argv[1]));
    snprintf(full, sizeof full, "operators %s", subs[i]);
    admin_init(&a, full, op_usage);
    a.local_only = "operators are made where the registry database is";
    optind = 1;
    argc--;
    argv++;
    while ((c = admin_getopt(&a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_ROLE && i == 0)
            role = optarg;
        else if (c == OPT_PASSWORD_FILE && i <= 1) {
            /* getopt takes "--password X" for --password-file X: a password
             * typed on the command line must not be read as a file name (nor
             * echoed in the refusal) */
            const char *tok = optind >= 2 && argv[optind - 1] == optarg ? argv[optind - 2] : argv[optind - 1];
            if (strncmp(tok, "--password-file", 15) != 0) {
                rc = tool_usage_error("%s: write --password-file FILE in full (a password is never an argument: "
                                      "it is read from the file or from standard input)", a.cmd);
                goto done;
            }
            pwfile = optarg;
        }
        else if (c == OPT_ROLE || c == OPT_PASSWORD_FILE) {
            rc = tool_usage_error("%s: %s is not an option of this command", a.cmd, argv[optind - 1]);
            goto done;
        } else {
            rc = EXIT_USAGE;
            goto done;
        }
    }
    if (rc != EXIT_OK) {
        rc = rc == ADMIN_HELP ? EXIT_OK : rc;
        goto done;
    }
    if (i != 5 && optind < argc)
        name = argv[optind++];
    if (optind < argc) {
        rc = tool_usage_error("%s: unexpected argument '%s'", a.cmd, tool_shown(argv[optind]));
        goto done;
    }
    if (i != 5 && name == NULL) {
        rc = tool_usage_error("%s: which operator? (NAME)", a.cmd);
        goto done;
    }
    rc = op_run(&a, subs[i], name, role, pwfile);
done:
    admin_close(&a);
    return out_finish(rc);
}

/* ---- audit ---- */

enum { F_TABLE, F_JSON, F_JSONL, F_CSV };

struct audit_out {
    int format;
    struct admin_list x;
    int failed;
};

static void csv_field(const char *s, int last)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
    putchar(last ? '\n' : ',');
}

static int audit_cb(void *arg, const lk_reg_audit_record *r)
{
    struct audit_out *o = arg;
    char when[32];
    lk_time_rfc3339(r->time, when, sizeof when);
    if (o->format == F_TABLE) {
        const char *row[7] = {when, r->actor, r->via, r->action, r->resource, r->outcome, r->detail[0] ? r->detail : "-"};
        if (out_table_row(o->x.t, row) != 0)
            o->failed = 1;
    } else if (o->format == F_CSV) {
        const char *f[8] = {when, r->actor, r->via, r->action, r->resource, r->detail, r->outcome, r->project};
        for (int i = 0; i < 8; i++)
            csv_field(f[i], i == 7);
    } else {
        json_t *j = json_pack("{s:o,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "id", out_ji64(r->id), "time", when, "actor",
                              r->actor, "via", r->via, "action", r->action, "resource", r->resource, "project",
                              r->project, "detail", r->detail, "outcome", r->outcome);
        if (j == NULL)
            o->failed = 1;
        else if (o->format == F_JSON) {
            if (out_list_item(&o->x.l, j) != EXIT_OK)
                o->failed = 1;
        } else {
            char *t = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
            json_decref(j);
            if (t == NULL)
                o->failed = 1;
            else {
                puts(t);
                free(t);
            }
        }
    }
    return o->failed;
}

int cmd_audit(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, 0, OPT_DB},
        {"project", required_argument, 0, OPT_PROJECT},
        {"format", required_argument, 0, OPT_AFORMAT},
        {"busy-timeout", required_argument, 0, OPT_BUSY_TIMEOUT},
        {"since", required_argument, 0, OPT_SINCE},
        {"limit", required_argument, 0, OPT_LIMIT},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    static const char *const heads[] = {"TIME", "ACTOR", "VIA", "ACTION", "RESOURCE", "OUTCOME", "DETAIL"};
    struct admin a;
    struct audit_out o;
    lk_reg_audit_query q;
    char full[32], why[512] = "";
    long long limit = 100;
    int c, rc, export;
    lk_err err;

    if ((rc = admin_group_usage(argc, argv, 1, audit_usage)) != -1)
        return rc;
    if (strcmp(argv[1], "list") != 0 && strcmp(argv[1], "export") != 0)
        return tool_usage_error("audit: unknown command '%s' (list, export)", tool_shown(argv[1]));
    export = argv[1][0] == 'e';
    snprintf(full, sizeof full, "audit %s", argv[1]);
    admin_init(&a, full, audit_usage);
    a.project = NULL; /* all projects unless --project: LATCHKEY_PROJECT would hide the others */
    a.local_only = "the audit record is read from the registry database (latchkeyd: GET "
                   "/v1/projects/P/auditRecords)";
    memset(&o, 0, sizeof o);
    memset(&q, 0, sizeof q);
    o.format = export ? F_JSONL : F_TABLE;
    optind = 1;
    argc--;
    argv++;
    while ((c = admin_getopt(&a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_SINCE) {
            if (admin_parse_time(optarg, &q.since) != 0) {
                rc = tool_usage_error("%s: --since takes RFC 3339 (2030-01-02T03:04:05Z) or seconds", a.cmd);
                goto done;
            }
        } else if (c == OPT_LIMIT && !export) {
            if (tool_parse_i64(optarg, 0, 100000000, &limit) != 0) {
                rc = tool_usage_error("%s: --limit takes 0 (all) to 100000000", a.cmd);
                goto done;
            }
        } else if (c == OPT_AFORMAT) {
            o.format = strcmp(optarg, "table") == 0 || strcmp(optarg, "text") == 0 ? F_TABLE
                       : strcmp(optarg, "json") == 0                               ? F_JSON
                       : strcmp(optarg, "jsonl") == 0                              ? F_JSONL
                       : strcmp(optarg, "csv") == 0                                ? F_CSV
                                                                                   : -1;
            if (o.format < 0 || (export && (o.format == F_TABLE || o.format == F_JSON))) {
                rc = tool_usage_error("%s: --format is %s", a.cmd, export ? "jsonl or csv" : "table, json, jsonl or csv");
                goto done;
            }
        } else {
            rc = c == OPT_LIMIT ? tool_usage_error("%s: --limit is for audit list", a.cmd) : EXIT_USAGE;
            goto done;
        }
    }
    if (rc != EXIT_OK) {
        rc = rc == ADMIN_HELP ? EXIT_OK : rc;
        goto done;
    }
    if (optind < argc) {
        rc = tool_usage_error("%s: unexpected argument '%s'", a.cmd, tool_shown(argv[optind]));
        goto done;
    }
    if ((a.project != NULL && (rc = admin_check_project(&a)) != EXIT_OK) ||
        (rc = admin_open(&a, ADMIN_OPEN_READ)) != EXIT_OK)
        goto done;
    q.project = a.project;
    q.limit = export ? 0 : (unsigned)limit;
    q.oldest_first = export;
    a.json = o.format == F_JSON;
    if (o.format == F_TABLE || o.format == F_JSON) {
        if ((rc = admin_list_begin(&a, &o.x, 7, heads)) != EXIT_OK)
            goto done;
    } else if (o.format == F_CSV) {
        puts("time,actor,via,action,resource,detail,outcome,project");
    }
    err = lk_registry_audit_list(a.reg, &q, audit_cb, &o, why, sizeof why);
    if (o.format == F_TABLE || o.format == F_JSON) {
        o.x.failed = o.failed;
        rc = admin_list_end(&a, &o.x, err, why);
    } else
        rc = err != LK_OK ? admin_fail(&a, err, why) : o.failed ? admin_fail(&a, LK_ERR_NOMEM, NULL) : EXIT_OK;
done:
    admin_close(&a);
    return out_finish(rc);
}
