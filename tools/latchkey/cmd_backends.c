/*
 * latchkey backends create NAME --project P | list [--project P] | delete NAME
 *
 * Backend applications: the subscribers that take the place of IoT Core's
 * Pub/Sub topics. A backend connects to the broker with username
 * "backend:NAME" and a secret; it may subscribe under latchkey/P/ for its
 * own project only (docs/plugin.md).
 *
 * The secret is 32 random bytes (RAND_bytes) written as base64url without
 * padding: 43 characters, exactly what the backend sends as its MQTT
 * password. The registry keeps only SHA-256 over those 43 ASCII characters
 * (lk_registry.h). The secret is printed once, never logged, and wiped from
 * this process's memory after printing; stdio is bypassed for it (write(2)
 * from a buffer that is wiped) so no copy stays in a stdio buffer.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "cli.h"
#include "admin.h"
#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"

#define SECRET_BYTES 32
#define SECRET_CHARS LK_B64URL_ENCODED_LEN(SECRET_BYTES) /* 43 */

static const char backends_usage[] =
    "usage: latchkey [--db FILE] backends COMMAND [options]\n"
    "\n"
    "  create NAME --project P   create a backend application and print its MQTT username\n"
    "                            (backend:NAME) and secret (the MQTT password): shown only once\n"
    "  list [--project P]        the backends (of project P, or LATCHKEY_PROJECT, or all)\n"
    "  delete NAME               delete a backend (a running broker learns of it at once)\n"
    "\n"
    "NAME: as a device id (3-255 characters, a letter followed by letters, digits or - . _ ~ + %,\n"
    "not starting with goog), unique in the database (not only in the project).\n"
    "The registry keeps only the SHA-256 of the secret: a lost\n"
    "secret cannot be shown again; delete the backend and create it again.\n"
    "Common options: --db FILE (or LATCHKEY_DB), --project P (or LATCHKEY_PROJECT),\n"
    "--format text|json, --busy-timeout MS. Exit codes: docs/cli.md.\n";

#define BE_COMMON                                                                               \
    "Common options: --db FILE (or LATCHKEY_DB), --format text|json, --busy-timeout MS.\n"      \
    "Exit codes: docs/cli.md.\n"
static const char u_create[] =
    "usage: latchkey [--db FILE] backends create NAME --project P\n\n"
    "Creates a backend application and prints its MQTT username (backend:NAME) and secret (the\n"
    "MQTT password): shown only this once; the registry keeps only its SHA-256. NAME is as a\n"
    "device id and unique in the database. Creates a missing database.\n\n" BE_COMMON;
static const char u_list[] =
    "usage: latchkey [--db FILE] backends list [--project P]\n\n"
    "The backends (of project P, or LATCHKEY_PROJECT, or all): NAME, PROJECT, USERNAME, CREATED.\n\n"
    BE_COMMON;
static const char u_delete[] =
    "usage: latchkey [--db FILE] backends delete NAME\n\n"
    "Deletes a backend; a running broker learns of it at once.\n\n" BE_COMMON;

static int check_name(const struct admin *a, const char *name)
{
    char buf[256];
    const char *why = lk_id_why("backend name", name, strlen(name), buf, sizeof buf);
    if (why != NULL) {
        tool_error(a->cmd, LK_ERR_REG_INVALID, "backend name '%s' is invalid: %s", name, why);
        return EXIT_REG_INVALID;
    }
    return EXIT_OK;
}

static int cmd_create(struct admin *a, const char *name)
{
    uint8_t raw[SECRET_BYTES], hash[LK_SHA256_BYTES];
    char secret[SECRET_CHARS + 1], out[512], why[512] = "";
    size_t slen = 0;
    lk_err err;
    int rc, n;

    if (a->project == NULL)
        return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
    if ((rc = admin_check_project(a)) != EXIT_OK || (rc = check_name(a, name)) != EXIT_OK)
        return rc;
    if ((rc = admin_open(a, ADMIN_OPEN_CREATE)) != EXIT_OK)
        return rc;
    if (RAND_bytes(raw, sizeof raw) != 1) {
        OPENSSL_cleanse(raw, sizeof raw); /* whatever RAND_bytes left there */
        tool_error(a->cmd, LK_ERR_RNG, "no random bytes for the secret (OpenSSL RAND_bytes failed)");
        return tool_exit_code(LK_ERR_RNG);
    }
    err = lk_b64url_encode(raw, sizeof raw, secret, sizeof secret, &slen);
    OPENSSL_cleanse(raw, sizeof raw);
    if (err != LK_OK || slen != SECRET_CHARS) {
        OPENSSL_cleanse(secret, sizeof secret);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_CRYPTO, NULL);
    }
    /* The hash of the password as the backend will send it: the text. */
    lk_backend_secret_hash(secret, slen, hash);
    err = lk_registry_backend_create(a->reg, a->project, name, hash, why, sizeof why);
    OPENSSL_cleanse(hash, sizeof hash);
    if (err != LK_OK) {
        OPENSSL_cleanse(secret, sizeof secret);
        return admin_fail(a, err, why);
    }
    /* name and project are checked ids (no character JSON would escape), the
     * secret is base64url: the JSON is written directly, so that no JSON
     * library keeps an unwiped copy of the secret. */
    if (a->json)
        n = snprintf(out, sizeof out,
                     "{\n    \"name\": \"%s\",\n    \"project\": \"%s\",\n    \"username\": "
                     "\"backend:%s\",\n    \"secret\": \"%s\"\n}\n",
                     name, a->project, name, secret);
    else
        n = snprintf(out, sizeof out, "username: backend:%s\nsecret:   %s\n", name, secret);
    OPENSSL_cleanse(secret, sizeof secret);
    rc = n > 0 && (size_t)n < sizeof out && out_write_fd(STDOUT_FILENO, out, (size_t)n) == 0 ? EXIT_OK : EXIT_FAIL;
    OPENSSL_cleanse(out, sizeof out);
    if (rc != EXIT_OK) {
        tool_error(a->cmd, LK_ERR_IO,
                   "backend '%s' was created but its secret could not be written to standard output "
                   "(%s); delete it and create it again",
                   name, strerror(errno));
        return EXIT_FAIL;
    }
    fprintf(stderr,
            "latchkey: %s: the secret above is shown only this once (the registry keeps only its "
            "SHA-256). Give it to the backend application as the MQTT password of username backend:%s, "
            "with client id %s or %s/SOMETHING.\n",
            a->cmd, name, name, name);
    return EXIT_OK;
}

static int backend_cb(void *arg, const lk_reg_backend *b)
{
    struct admin_list *x = arg;
    char user[160], when[32];
    snprintf(user, sizeof user, "backend:%s", b->name);
    if (x->t == NULL) {
        json_t *j = json_pack("{s:s,s:s,s:s,s:o}", "name", b->name, "project", b->project, "username", user,
                              "createTime", out_jtime(b->created));
        if (j == NULL || out_list_item(&x->l, j) != EXIT_OK)
            x->failed = 1;
    } else {
        const char *row[4] = {b->name, b->project, user, lk_time_rfc3339(b->created, when, sizeof when)};
        if (out_table_row(x->t, row) != 0)
            x->failed = 1;
    }
    return x->failed;
}

static int cmd_list(struct admin *a)
{
    static const char *const heads[] = {"NAME", "PROJECT", "USERNAME", "CREATED"};
    struct admin_list x;
    char why[512] = "";
    lk_err err;
    int rc;

    if (a->project != NULL && (rc = admin_check_project(a)) != EXIT_OK)
        return rc;
    if ((rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if ((rc = admin_list_begin(a, &x, 4, heads)) != EXIT_OK)
        return rc;
    err = lk_registry_backend_list(a->reg, a->project, backend_cb, &x, why, sizeof why);
    return admin_list_end(a, &x, err, why);
}

static int cmd_delete(struct admin *a, const char *name)
{
    char why[512] = "";
    lk_err err;
    int rc;

    if ((rc = check_name(a, name)) != EXIT_OK || (rc = admin_open(a, ADMIN_OPEN_WRITE)) != EXIT_OK)
        return rc;
    err = lk_registry_backend_delete(a->reg, name, why, sizeof why);
    if (err != LK_OK)
        return admin_fail(a, err, why);
    if (a->json)
        return out_json(json_object());
    printf("Deleted backend [%s].\n", name);
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
        {0, 0, 0, 0}};
    const char *name = NULL;
    int c, rc, want_name = strcmp(sub, "list") != 0;

    optind = 1;
    if ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1 || rc != EXIT_OK)
        return c != -1 ? EXIT_USAGE : rc == ADMIN_HELP ? EXIT_OK : rc;
    if (want_name && optind < argc)
        name = argv[optind++];
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    if (want_name && name == NULL)
        return tool_usage_error("%s: which backend? (NAME)", a->cmd);
    if (strcmp(sub, "create") == 0)
        return cmd_create(a, name);
    if (strcmp(sub, "delete") == 0)
        return cmd_delete(a, name);
    return cmd_list(a);
}

int cmd_backends(int argc, char **argv)
{
    struct admin a;
    char cmd[64];
    const char *sub;
    int rc;

    if ((rc = admin_group_usage(argc, argv, 1, backends_usage)) != -1)
        return rc;
    sub = argv[1];
    if (strcmp(sub, "create") != 0 && strcmp(sub, "list") != 0 && strcmp(sub, "delete") != 0)
        return tool_usage_error("backends: unknown command '%s' (create, list, delete)", sub);
    snprintf(cmd, sizeof cmd, "backends %s", sub);
    admin_init(&a, cmd, strcmp(sub, "create") == 0 ? u_create : strcmp(sub, "list") == 0 ? u_list : u_delete);
    a.local_only = "backends are the broker's credentials, which latchkeyd's admin API does not manage";
    rc = run(&a, sub, argc - 1, argv + 1);
    admin_close(&a);
    return out_finish(rc);
}
