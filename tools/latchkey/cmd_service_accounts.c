/*
 * latchkey service-accounts create NAME --project P --role ROLE --token-uri URL [--key-file OUT]
 *                            keys create NAME --project P --token-uri URL [--key-file OUT]
 *                            keys disable|enable|delete KEY_ID
 *                            list [--project P]
 *                            delete NAME --project P
 *
 * Service accounts: who may call latchkeyd's admin API (lk_registry.h). A
 * key is RSA-2048, made here with OpenSSL in memory; the registry keeps only
 * its public half. The private half goes once into a key file in Google's
 * service-account JSON format (so Google's auth libraries sign with it
 * unchanged) — written to a new file of mode 0600 (never over an existing
 * one) or to standard output — and is then wiped from this process: it is
 * kept in OpenSSL's secure-memory BIO and a buffer that is cleansed, written
 * with write(2) so no stdio buffer holds a copy, and never passes through
 * a JSON library.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "cli.h"
#include "admin.h"
#include "latchkey/lk_iotcore.h"

#define KEY_BITS 2048
#define KEY_ID_BYTES 20        /* 40 hex characters, as Google's private_key_id */
#define CLIENT_ID_DIGITS 21    /* as Google's client_id */
#define TOKEN_URI_MAX 2048

enum { OPT_ROLE = OPT_FIRST_OWN, OPT_TOKEN_URI, OPT_KEY_FILE, OPT_NOT_REGISTRY };

static const char sa_usage[] =
    "usage: latchkey [--db FILE] service-accounts COMMAND [options]\n"
    "\n"
    "  create NAME --project P --role ROLE --token-uri URL [--key-file OUT]\n"
    "                            create a service account with one key; write its key file\n"
    "  keys create NAME --project P --token-uri URL [--key-file OUT]\n"
    "                            add a key (at most 10) to an account; write its key file\n"
    "  keys disable KEY_ID       refuse the key's tokens from now on\n"
    "  keys enable KEY_ID        accept them again\n"
    "  keys delete KEY_ID        delete a key\n"
    "  list [--project P]        the accounts and their keys (of project P, or all)\n"
    "  delete NAME --project P   delete an account and its keys\n"
    "\n"
    "NAME: 6 to 30 characters, a lowercase letter, then lowercase letters, digits or hyphens, not\n"
    "ending with a hyphen; the account is NAME@P.iam.latchkey. ROLE: viewer, deviceController,\n"
    "provisioner, editor or admin (also roles/cloudiot.ROLE). The key file (Google's\n"
    "service-account JSON) holds the only copy of the private key: it is written to OUT (a new\n"
    "file, mode 0600) or to standard output, and cannot be shown again.\n"
    "Common options: --db FILE (or LATCHKEY_DB), --project P (or LATCHKEY_PROJECT),\n"
    "--format text|json, --busy-timeout MS. Exit codes: docs/cli.md.\n";

#define SA_COMMON                                                                               \
    "Common options: --db FILE (or LATCHKEY_DB), --format text|json, --busy-timeout MS.\n"      \
    "Exit codes: docs/cli.md.\n"
static const char u_create[] =
    "usage: latchkey [--db FILE] service-accounts create NAME --project P --role ROLE\n"
    "                --token-uri URL [--key-file OUT]\n\n"
    "Creates the service account NAME@P.iam.latchkey with ROLE (viewer, deviceController,\n"
    "provisioner, editor, admin) and one RSA-2048 key, and writes the key file (Google's\n"
    "service-account JSON, token_uri and auth_uri = URL) to OUT (a new file, mode 0600; an\n"
    "existing file is never overwritten) or to standard output. Creates a missing database.\n\n"
    SA_COMMON;
static const char u_keys_create[] =
    "usage: latchkey [--db FILE] service-accounts keys create NAME --project P --token-uri URL\n"
    "                [--key-file OUT]\n\n"
    "Adds an RSA-2048 key to the service account NAME@P.iam.latchkey (at most 10 keys) and\n"
    "writes its key file to OUT (a new file, mode 0600) or to standard output.\n\n" SA_COMMON;
static const char u_keys_other[] =
    "usage: latchkey [--db FILE] service-accounts keys disable|enable|delete KEY_ID\n\n"
    "Disables (tokens signed with the key are refused), enables or deletes a key. KEY_ID is the\n"
    "key file's private_key_id (40 lowercase hex characters).\n\n" SA_COMMON;
static const char u_list[] =
    "usage: latchkey [--db FILE] service-accounts list [--project P]\n\n"
    "The service accounts and their keys (of project P, or LATCHKEY_PROJECT, or all): EMAIL,\n"
    "ROLE, KEY_ID, STATE, CREATED; an account without keys has one line with KEY_ID -.\n"
    "--format json adds each key's public key (publicKeyPem).\n\n" SA_COMMON;
static const char u_delete[] =
    "usage: latchkey [--db FILE] service-accounts delete NAME --project P\n\n"
    "Deletes the service account NAME@P.iam.latchkey and all its keys.\n\n" SA_COMMON;

struct sa_opts {
    const char *role, *token_uri, *key_file;
};

/* What a key file is made of. The PEM lives in secure memory. */
struct keyfile {
    char key_id[2 * KEY_ID_BYTES + 1];
    char client_id[CLIENT_ID_DIGITS + 1];
    char *pub_pem;            /* malloc'd */
    BIO *priv;                /* BIO_s_secmem: cleared when freed */
};

static void keyfile_free(struct keyfile *k)
{
    free(k->pub_pem);
    BIO_free(k->priv);
    memset(k, 0, sizeof *k);
}

/* A token URI goes into the key file's JSON as it is: an http(s) URL of
 * printable ASCII without '"' or '\\' (nothing to escape). */
static int check_token_uri(const struct admin *a, const char *uri)
{
    size_t i, n;
    if (uri == NULL)
        return tool_usage_error("%s: --token-uri URL is required (latchkeyd's token endpoint, "
                                "written into the key file)", a->cmd);
    n = strlen(uri);
    if (n > TOKEN_URI_MAX || (strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0))
        return tool_usage_error("%s: --token-uri must be an http:// or https:// URL of at most %d "
                                "characters", a->cmd, TOKEN_URI_MAX);
    for (i = 0; i < n; i++)
        if (uri[i] <= 0x20 || uri[i] >= 0x7f || uri[i] == '"' || uri[i] == '\\')
            return tool_usage_error("%s: --token-uri has a character a URL may not have "
                                    "(space, quote, backslash or a control character)", a->cmd);
    return EXIT_OK;
}

/* RSA-2048 in memory, a random key id and client id. */
static int make_key(const struct admin *a, struct keyfile *k)
{
    uint8_t id[KEY_ID_BYTES];
    EVP_PKEY *pk = NULL;
    BIO *pub = NULL;
    char *p = NULL;
    long n;
    size_t i;

    memset(k, 0, sizeof *k);
    if (RAND_bytes(id, sizeof id) != 1) {
        tool_error(a->cmd, LK_ERR_RNG, "no random bytes for the key id (OpenSSL RAND_bytes failed)");
        return tool_exit_code(LK_ERR_RNG);
    }
    tool_hex(id, sizeof id, k->key_id);
    /* 21 decimal digits, the first not 0; by rejection, so each is uniform. */
    for (i = 0; i < CLIENT_ID_DIGITS;) {
        uint8_t b;
        if (RAND_bytes(&b, 1) != 1) {
            tool_error(a->cmd, LK_ERR_RNG, "no random bytes for the client id");
            return tool_exit_code(LK_ERR_RNG);
        }
        if (b >= 250 || (i == 0 && b % 10 == 0))
            continue;
        k->client_id[i++] = (char)('0' + b % 10);
    }
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)KEY_BITS);
    k->priv = BIO_new(BIO_s_secmem());
    pub = BIO_new(BIO_s_mem());
    /* PEM_write_bio_PrivateKey writes PKCS#8: -----BEGIN PRIVATE KEY----- */
    if (pk == NULL || k->priv == NULL || pub == NULL ||
        PEM_write_bio_PrivateKey(k->priv, pk, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(pub, pk) != 1 || (n = BIO_get_mem_data(pub, &p)) <= 0 ||
        (k->pub_pem = strndup(p, (size_t)n)) == NULL) {
        EVP_PKEY_free(pk); /* OpenSSL clears the private components it frees */
        BIO_free(pub);
        keyfile_free(k);
        tool_error(a->cmd, LK_ERR_CRYPTO, "generating an RSA-%d key failed (OpenSSL)", KEY_BITS);
        return tool_exit_code(LK_ERR_CRYPTO);
    }
    EVP_PKEY_free(pk);
    BIO_free(pub);
    return EXIT_OK;
}

/* The key file's JSON, into a buffer the caller cleanses and frees. Every
 * field but the private key is a checked id, email, digits or URL (nothing
 * to escape); the PEM's newlines become \n. */
static char *key_json(const struct admin *a, const struct keyfile *k, const char *email,
                      const char *uri, size_t *len)
{
    char *pem, *buf, *o;
    long pl = BIO_get_mem_data(k->priv, &pem);
    size_t cap, i;
    int n;

    if (pl <= 0)
        return NULL;
    cap = 2 * (size_t)pl + 2 * strlen(uri) + 1024;
    if ((buf = malloc(cap)) == NULL)
        return NULL;
    n = snprintf(buf, cap,
                 "{\n  \"type\": \"service_account\",\n  \"project_id\": \"%s\",\n"
                 "  \"private_key_id\": \"%s\",\n  \"private_key\": \"",
                 a->project, k->key_id);
    o = buf + n;
    for (i = 0; i < (size_t)pl; i++) {
        if (pem[i] == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = pem[i];
        }
    }
    n = snprintf(o, cap - (size_t)(o - buf),
                 "\",\n  \"client_email\": \"%s\",\n  \"client_id\": \"%s\",\n"
                 "  \"auth_uri\": \"%s\",\n  \"token_uri\": \"%s\",\n"
                 "  \"auth_provider_x509_cert_url\": \"\",\n  \"client_x509_cert_url\": \"\",\n"
                 "  \"universe_domain\": \"googleapis.com\"\n}\n",
                 email, k->client_id, uri, uri);
    *len = (size_t)(o - buf) + (size_t)n;
    return buf;
}

/* A new key file OUT, mode 0600, or -1 and the exit code in *rc (an
 * existing file is never opened: O_EXCL, no symlink followed). */
static int open_key_file(const struct admin *a, const char *path, int *rc)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST) {
            tool_error(a->cmd, LK_ERR_KEY_EXISTS, "key file %s exists already; it is never overwritten "
                       "(choose another --key-file)", tool_shown(path));
            *rc = EXIT_EXISTS;
        } else {
            tool_error(a->cmd, LK_ERR_IO, "cannot create key file %s: %s", tool_shown(path),
                       strerror(e));
            *rc = tool_file_exit(e);
        }
        return -1;
    }
    /* 0600 whatever the umask allowed (it can only have narrowed it). */
    if (fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        tool_error(a->cmd, LK_ERR_IO, "cannot set mode 0600 on %s: %s", tool_shown(path),
                   strerror(e));
        *rc = EXIT_FILE;
        return -1;
    }
    return fd;
}

/* Make a key, register it for email (creating the account first when role
 * is not NONE), write the key file. A failure after the registry changed
 * undoes the change, so that no key exists whose private half nobody has. */
static int add_key(struct admin *a, const char *name, lk_reg_sa_role role,
                   const struct sa_opts *o)
{
    struct keyfile k;
    char email[LK_SA_EMAIL_MAX + 1], why[512] = "", undo[512];
    char *json = NULL;
    size_t jlen = 0;
    int fd = STDOUT_FILENO, rc, created = 0, keyed = 0;
    lk_err err;

    snprintf(email, sizeof email, "%s@%s" LK_SA_EMAIL_DOMAIN, name, a->project);
    if (o->key_file != NULL && (fd = open_key_file(a, o->key_file, &rc)) < 0)
        return rc;
    if ((rc = make_key(a, &k)) != EXIT_OK)
        goto fail;
    if (role != LK_ROLE_NONE) {
        err = lk_registry_sa_create(a->reg, a->project, name, role, email, sizeof email, why,
                                    sizeof why);
        if (err != LK_OK) {
            rc = admin_fail(a, err, why);
            goto fail;
        }
        created = 1;
    }
    err = lk_registry_sa_key_add(a->reg, email, k.key_id, k.pub_pem, strlen(k.pub_pem), why,
                                 sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto fail;
    }
    keyed = 1;
    json = key_json(a, &k, email, o->token_uri, &jlen);
    if (json == NULL) {
        rc = admin_fail(a, LK_ERR_NOMEM, NULL);
        goto fail;
    }
    if (out_write_fd(fd, json, jlen) != 0 || (fd != STDOUT_FILENO && fsync(fd) != 0)) {
        tool_error(a->cmd, LK_ERR_IO, "the key file could not be written (%s); nothing was kept",
                   strerror(errno));
        rc = EXIT_FAIL;
        goto fail;
    }
    OPENSSL_clear_free(json, jlen);
    json = NULL;
    if (fd != STDOUT_FILENO && close(fd) != 0) {
        fd = STDOUT_FILENO;
        tool_error(a->cmd, LK_ERR_IO, "the key file could not be written (%s); nothing was kept",
                   strerror(errno));
        rc = EXIT_FAIL;
        goto fail;
    }
    if (a->json) {
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s?}", "email", email, "project", a->project,
                              "name", name, "keyId", k.key_id, "clientId", k.client_id, "keyFile",
                              o->key_file);
        /* without --key-file the key file itself is the JSON on standard output */
        rc = o->key_file != NULL ? out_json(j) : (json_decref(j), EXIT_OK);
    } else {
        FILE *f = o->key_file != NULL ? stdout : stderr;
        if (created)
            fprintf(f, "Created service account [%s] with role %s.\n", email,
                    lk_reg_sa_role_name(role));
        fprintf(f, "Created key [%s] for [%s]; key file %s%s.\n", k.key_id, email,
                o->key_file != NULL ? "written to " : "on standard output",
                o->key_file != NULL ? tool_shown(o->key_file) : "");
        rc = EXIT_OK;
    }
    fprintf(stderr, "latchkey: %s: the key file holds the only copy of the private key; keep it "
            "secret. A lost key cannot be shown again: create another key.\n", a->cmd);
    keyfile_free(&k);
    return rc;

fail:
    if (json != NULL)
        OPENSSL_clear_free(json, jlen);
    /* Undo in reverse order; a failure to undo is said, not hidden. */
    if (keyed && lk_registry_sa_key_delete(a->reg, k.key_id, undo, sizeof undo) != LK_OK)
        tool_error(a->cmd, LK_ERR_REG_STORAGE, "key %s could not be removed again: %s; delete it "
                   "with 'latchkey service-accounts keys delete %s'", k.key_id, undo, k.key_id);
    if (created && lk_registry_sa_delete(a->reg, email, undo, sizeof undo) != LK_OK)
        tool_error(a->cmd, LK_ERR_REG_STORAGE, "service account %s could not be removed again: %s",
                   email, undo);
    if (o->key_file != NULL) {
        if (fd != STDOUT_FILENO)
            close(fd);
        unlink(o->key_file); /* ours: created with O_EXCL above */
    }
    keyfile_free(&k);
    return rc;
}

static int check_name(const struct admin *a, const char *name)
{
    size_t n = strlen(name), i;
    int ok = n >= LK_SA_NAME_MIN && n <= LK_SA_NAME_MAX && name[0] >= 'a' && name[0] <= 'z' &&
             name[n - 1] != '-';
    for (i = 1; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '-';
    if (!ok) {
        tool_error(a->cmd, LK_ERR_REG_INVALID,
                   "service account name '%s' is invalid: 6 to 30 characters, a lowercase letter, "
                   "then lowercase letters, digits or hyphens, not ending with a hyphen",
                   tool_shown(name));
        return EXIT_REG_INVALID;
    }
    return EXIT_OK;
}

static int cmd_create(struct admin *a, const char *name, const struct sa_opts *o, int with_role)
{
    lk_reg_sa_role role = LK_ROLE_NONE;
    int rc;

    if (a->project == NULL)
        return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
    if (with_role) {
        if (o->role == NULL)
            return tool_usage_error("%s: --role is required (viewer, deviceController, "
                                    "provisioner, editor, admin)", a->cmd);
        if ((role = lk_reg_sa_role_from_name(o->role)) == LK_ROLE_NONE)
            return tool_usage_error("%s: unknown role '%s' (viewer, deviceController, "
                                    "provisioner, editor, admin, or roles/cloudiot.ROLE)",
                                    a->cmd, tool_shown(o->role));
    } else if (o->role != NULL) {
        return tool_usage_error("%s: --role belongs to the account (service-accounts create)",
                                a->cmd);
    }
    if ((rc = check_token_uri(a, o->token_uri)) != EXIT_OK ||
        (rc = admin_check_project(a)) != EXIT_OK || (rc = check_name(a, name)) != EXIT_OK ||
        (rc = admin_open(a, with_role ? ADMIN_OPEN_CREATE : ADMIN_OPEN_WRITE)) != EXIT_OK)
        return rc;
    return add_key(a, name, role, o);
}

static int sa_cb(void *arg, const lk_reg_sa_key *k)
{
    struct admin_list *x = arg;
    char when[32];
    if (x->t == NULL) {
        json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s?,s:b,s:o}", "email", k->email, "project",
                              k->project, "name", k->name, "role", lk_reg_sa_role_name(k->role),
                              "keyId", k->key_id, "publicKeyPem", k->public_pem, "disabled",
                              k->disabled, "createTime", out_jtime(k->created));
        if (j == NULL || out_list_item(&x->l, j) != EXIT_OK)
            x->failed = 1;
    } else {
        const char *row[5] = {k->email, lk_reg_sa_role_name(k->role),
                              k->key_id != NULL ? k->key_id : "-",
                              k->key_id == NULL ? "-" : k->disabled ? "DISABLED" : "ENABLED",
                              lk_time_rfc3339(k->created, when, sizeof when)};
        if (out_table_row(x->t, row) != 0)
            x->failed = 1;
    }
    return x->failed;
}

static int cmd_list(struct admin *a)
{
    static const char *const heads[] = {"EMAIL", "ROLE", "KEY_ID", "STATE", "CREATED"};
    struct admin_list x;
    char why[512] = "";
    lk_err err;
    int rc;

    if (a->project != NULL && (rc = admin_check_project(a)) != EXIT_OK)
        return rc;
    if ((rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if ((rc = admin_list_begin(a, &x, 5, heads)) != EXIT_OK)
        return rc;
    err = lk_registry_sa_list(a->reg, a->project, sa_cb, &x, why, sizeof why);
    return admin_list_end(a, &x, err, why);
}

/* keys disable|enable|delete KEY_ID, delete NAME --project P */
static int cmd_change(struct admin *a, const char *sub, const char *arg)
{
    char why[512] = "", email[LK_SA_EMAIL_MAX + 1];
    const char *done;
    lk_err err;
    int rc;

    if (strcmp(sub, "delete") == 0) {
        if (a->project == NULL)
            return tool_usage_error("%s: --project is required (or set LATCHKEY_PROJECT)", a->cmd);
        if ((rc = admin_check_project(a)) != EXIT_OK || (rc = check_name(a, arg)) != EXIT_OK)
            return rc;
        snprintf(email, sizeof email, "%s@%s" LK_SA_EMAIL_DOMAIN, arg, a->project);
    }
    if ((rc = admin_open(a, ADMIN_OPEN_WRITE)) != EXIT_OK)
        return rc;
    if (strcmp(sub, "delete") == 0) {
        err = lk_registry_sa_delete(a->reg, email, why, sizeof why);
        done = "Deleted service account";
        arg = email;
    } else if (strcmp(sub, "keys delete") == 0) {
        err = lk_registry_sa_key_delete(a->reg, arg, why, sizeof why);
        done = "Deleted key";
    } else {
        int off = strcmp(sub, "keys disable") == 0;
        err = lk_registry_sa_key_set_disabled(a->reg, arg, off, why, sizeof why);
        done = off ? "Disabled key" : "Enabled key";
    }
    if (err != LK_OK)
        return admin_fail(a, err, why);
    if (a->json)
        return out_json(json_object());
    printf("%s [%s].\n", done, arg);
    return EXIT_OK;
}

static int run(struct admin *a, const char *sub, int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, 0, OPT_DB},
        {"project", required_argument, 0, OPT_PROJECT},
        {"format", required_argument, 0, OPT_FORMAT},
        {"busy-timeout", required_argument, 0, OPT_BUSY_TIMEOUT},
        {"role", required_argument, 0, OPT_ROLE},
        {"token-uri", required_argument, 0, OPT_TOKEN_URI},
        {"key-file", required_argument, 0, OPT_KEY_FILE},
        /* everywhere else --registry is a registry id: never a database here */
        {"registry", required_argument, 0, OPT_NOT_REGISTRY},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    struct sa_opts o = {NULL, NULL, NULL};
    const char *arg = NULL;
    int c, rc, creating = strcmp(sub, "create") == 0 || strcmp(sub, "keys create") == 0;
    int want_arg = strcmp(sub, "list") != 0;

    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_ROLE && creating)
            o.role = optarg;
        else if (c == OPT_TOKEN_URI && creating)
            o.token_uri = optarg;
        else if (c == OPT_KEY_FILE && creating)
            o.key_file = optarg;
        else if (c == OPT_NOT_REGISTRY)
            return tool_usage_error("%s: --registry names a registry id in latchkey; the database "
                                    "is --db FILE (or LATCHKEY_DB)", a->cmd);
        else if (c == OPT_ROLE || c == OPT_TOKEN_URI || c == OPT_KEY_FILE)
            return tool_usage_error("%s: %s is only for create and keys create", a->cmd,
                                    argv[optind - 1]);
        else
            return EXIT_USAGE;
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (want_arg && optind < argc)
        arg = argv[optind++];
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, tool_shown(argv[optind]));
    if (want_arg && arg == NULL)
        return tool_usage_error("%s: which %s? (%s)", a->cmd,
                                strncmp(sub, "keys ", 5) == 0 && !creating ? "key" : "account",
                                strncmp(sub, "keys ", 5) == 0 && !creating ? "KEY_ID" : "NAME");
    if (creating)
        return cmd_create(a, arg, &o, strcmp(sub, "create") == 0);
    if (strcmp(sub, "list") == 0)
        return cmd_list(a);
    return cmd_change(a, sub, arg);
}

int cmd_service_accounts(int argc, char **argv)
{
    static const char *const keys_subs[] = {"create", "disable", "enable", "delete"};
    struct admin a;
    char cmd[64], full[96];
    const char *usage;
    size_t i;
    int rc, k = 1;

    if ((rc = admin_group_usage(argc, argv, 1, sa_usage)) != -1)
        return rc;
    /* Before the group, --key-file is the API's key file to read (main.c),
     * which this --db-only command never uses: taken silently, the new key
     * meant for that file would go to standard output instead. */
    if (admin_key_file != NULL || admin_ca_file != NULL)
        return tool_usage_error("service-accounts: --key-file and --ca-file before the command are the "
                                "admin API's (service-accounts works only with --db); the key file to "
                                "write is --key-file OUT after 'create' or 'keys create'");
    if (strcmp(argv[1], "keys") == 0) {
        if ((rc = admin_group_usage(argc, argv, 2, sa_usage)) != -1)
            return rc;
        for (i = 0; i < sizeof keys_subs / sizeof keys_subs[0]; i++)
            if (strcmp(argv[2], keys_subs[i]) == 0)
                break;
        if (i == sizeof keys_subs / sizeof keys_subs[0])
            return tool_usage_error("service-accounts keys: unknown command '%s' (create, "
                                    "disable, enable, delete)", tool_shown(argv[2]));
        snprintf(cmd, sizeof cmd, "keys %s", argv[2]);
        usage = i == 0 ? u_keys_create : u_keys_other;
        k = 2;
    } else if (strcmp(argv[1], "create") == 0 || strcmp(argv[1], "list") == 0 ||
               strcmp(argv[1], "delete") == 0) {
        snprintf(cmd, sizeof cmd, "%s", argv[1]);
        usage = argv[1][0] == 'c' ? u_create : argv[1][0] == 'l' ? u_list : u_delete;
    } else {
        return tool_usage_error("service-accounts: unknown command '%s' (create, keys, list, "
                                "delete)", tool_shown(argv[1]));
    }
    snprintf(full, sizeof full, "service-accounts %s", cmd);
    admin_init(&a, full, usage);
    a.local_only = "a service account's keys are made where the registry database is (the API's "
                   "serviceAccounts methods list, disable, enable and delete them)";
    rc = run(&a, cmd, argc - k, argv + k);
    admin_close(&a);
    return out_finish(rc);
}
