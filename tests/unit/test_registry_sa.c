/*
 * test_registry_sa.c — service accounts in the registry (lk_registry.h,
 * "service accounts") on a real SQLite file in a fresh temporary directory:
 * role names, create / key add / lookup / list / disable / enable / delete,
 * and every refusal with its reason — each refusal writing nothing (the
 * two tables are dumped before and after).
 */
#include "lk_test_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"

#define T0 LK_TEST_T0

static char *pub_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *s;
    long n;
    assert_int_equal(PEM_write_bio_PUBKEY(b, k), 1);
    n = BIO_get_mem_data(b, &p);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static char *gen_pub(const char *type)
{
    EVP_PKEY *k = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                  : strcmp(type, "RSA1024") == 0
                      ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024)
                      : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *s;
    assert_non_null(k);
    s = pub_pem(k);
    EVP_PKEY_free(k);
    return s;
}

/* Every row of both tables as text: a refusal must leave it unchanged. */
static char *dump(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    size_t n = 1;
    char *out = calloc(1, 1);
    static const char *const q[] = {
        "SELECT email || '|' || project || '|' || name || '|' || role || '|' || created FROM "
        "service_accounts ORDER BY email",
        "SELECT key_id || '|' || email || '|' || public_pem || '|' || disabled || '|' || created "
        "FROM service_account_keys ORDER BY key_id"};
    size_t i;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (i = 0; i < 2; i++) {
        assert_int_equal(sqlite3_prepare_v2(db, q[i], -1, &s, NULL), SQLITE_OK);
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            size_t l = strlen(t);
            out = realloc(out, n + l + 1);
            memcpy(out + n - 1, t, l);
            out[n - 1 + l] = '\n';
            out[n + l] = '\0';
            n += l + 1;
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return out;
}

static const char K1[] = "0123456789abcdef0123456789abcdef01234567";
static const char K2[] = "fedcba9876543210fedcba9876543210fedcba98";
static const char E1[] = "api-caller@my-project.iam.latchkey";

static void test_roles(void **state)
{
    (void)state;
    assert_string_equal(lk_reg_sa_role_name(LK_ROLE_VIEWER), "viewer");
    assert_string_equal(lk_reg_sa_role_name(LK_ROLE_DEVICE_CONTROLLER), "deviceController");
    assert_string_equal(lk_reg_sa_role_name(LK_ROLE_PROVISIONER), "provisioner");
    assert_string_equal(lk_reg_sa_role_name(LK_ROLE_EDITOR), "editor");
    assert_string_equal(lk_reg_sa_role_name(LK_ROLE_ADMIN), "admin");
    assert_string_equal(lk_reg_sa_role_name(LK_ROLE_NONE), "none");
    assert_string_equal(lk_reg_sa_role_name((lk_reg_sa_role)42), "unknown");
    assert_int_equal(lk_reg_sa_role_from_name("viewer"), LK_ROLE_VIEWER);
    assert_int_equal(lk_reg_sa_role_from_name("deviceController"), LK_ROLE_DEVICE_CONTROLLER);
    assert_int_equal(lk_reg_sa_role_from_name("device-controller"), LK_ROLE_DEVICE_CONTROLLER);
    assert_int_equal(lk_reg_sa_role_from_name("roles/cloudiot.deviceController"),
                     LK_ROLE_DEVICE_CONTROLLER);
    assert_int_equal(lk_reg_sa_role_from_name("roles/cloudiot.provisioner"), LK_ROLE_PROVISIONER);
    assert_int_equal(lk_reg_sa_role_from_name("editor"), LK_ROLE_EDITOR);
    assert_int_equal(lk_reg_sa_role_from_name("roles/cloudiot.admin"), LK_ROLE_ADMIN);
    assert_int_equal(lk_reg_sa_role_from_name("Admin"), LK_ROLE_NONE);
    assert_int_equal(lk_reg_sa_role_from_name("roles/cloudiot."), LK_ROLE_NONE);
    assert_int_equal(lk_reg_sa_role_from_name("roles/other.admin"), LK_ROLE_NONE);
    assert_int_equal(lk_reg_sa_role_from_name("none"), LK_ROLE_NONE);
    assert_int_equal(lk_reg_sa_role_from_name(""), LK_ROLE_NONE);
    assert_int_equal(lk_reg_sa_role_from_name(NULL), LK_ROLE_NONE);
}

struct seen {
    int n;
    char line[16][200];
};

static int list_cb(void *arg, const lk_reg_sa_key *k)
{
    struct seen *s = arg;
    if (s->n < 16)
        snprintf(s->line[s->n], sizeof s->line[0], "%s %s %s %s %s %d %lld %s", k->email,
                 k->project, k->name, lk_reg_sa_role_name(k->role),
                 k->key_id ? k->key_id : "-", k->disabled, (long long)k->created,
                 k->public_pem ? "pem" : "nopem");
    s->n++;
    return 0;
}

static int stop_cb(void *arg, const lk_reg_sa_key *k)
{
    (void)k;
    ++*(int *)arg;
    return 1;
}

static void test_lifecycle(void **state)
{
    struct lk_test_reg *f = *state;
    char *rsa = gen_pub("RSA"), *rsa2 = gen_pub("RSA");
    char email[LK_SA_EMAIL_MAX + 1];
    lk_reg_sa_key k;
    struct seen s;
    lk_registry *ro;
    char why[512];

    OK(lk_registry_sa_create(f->reg, "my-project", "api-caller", LK_ROLE_EDITOR, email,
                             sizeof email, W));
    assert_string_equal(email, E1);
    f->now = T0 + 10;
    OK(lk_registry_sa_create(f->reg, "my-project", "zz-no-keys", LK_ROLE_VIEWER, email,
                             sizeof email, W));
    OK(lk_registry_sa_create(f->reg, "another-project", "aa-first", LK_ROLE_ADMIN, email,
                             sizeof email, W));
    f->now = T0 + 20;
    OK(lk_registry_sa_key_add(f->reg, E1, K2, rsa, strlen(rsa), W));
    f->now = T0 + 30;
    OK(lk_registry_sa_key_add(f->reg, E1, K1, rsa2, strlen(rsa2), W));

    memset(&k, 0x55, sizeof k);
    assert_int_equal(lk_registry_sa_lookup(f->reg, K2, &k), LK_OK);
    assert_string_equal(k.key_id, K2);
    assert_string_equal(k.email, E1);
    assert_string_equal(k.project, "my-project");
    assert_string_equal(k.name, "api-caller");
    assert_int_equal(k.role, LK_ROLE_EDITOR);
    assert_string_equal(k.public_pem, rsa);
    assert_int_equal(k.disabled, 0);
    assert_int_equal(k.created, T0 + 20);
    lk_reg_sa_key_free(&k);
    assert_null(k.key_id);

    /* Ordered by project, name, key created; an account without keys once. */
    memset(&s, 0, sizeof s);
    OK(lk_registry_sa_list(f->reg, NULL, list_cb, &s, W));
    assert_int_equal(s.n, 4);
    assert_string_equal(s.line[0], "aa-first@another-project.iam.latchkey another-project "
                                   "aa-first admin - 0 1700000010 nopem");
    assert_non_null(strstr(s.line[1], K2));
    assert_non_null(strstr(s.line[2], K1));
    assert_string_equal(s.line[3], "zz-no-keys@my-project.iam.latchkey my-project zz-no-keys "
                                   "viewer - 0 1700000010 nopem");
    memset(&s, 0, sizeof s);
    OK(lk_registry_sa_list(f->reg, "my-project", list_cb, &s, W));
    assert_int_equal(s.n, 3);
    memset(&s, 0, sizeof s);
    OK(lk_registry_sa_list(f->reg, "nobody-here", list_cb, &s, W));
    assert_int_equal(s.n, 0);
    s.n = 0;
    OK(lk_registry_sa_list(f->reg, NULL, stop_cb, &s.n, W));
    assert_int_equal(s.n, 1);

    /* disable, enable (idempotent) */
    OK(lk_registry_sa_key_set_disabled(f->reg, K2, 1, W));
    OK(lk_registry_sa_key_set_disabled(f->reg, K2, 1, W));
    assert_int_equal(lk_registry_sa_lookup(f->reg, K2, &k), LK_OK);
    assert_int_equal(k.disabled, 1);
    lk_reg_sa_key_free(&k);
    OK(lk_registry_sa_key_set_disabled(f->reg, K2, 0, W));
    assert_int_equal(lk_registry_sa_lookup(f->reg, K2, &k), LK_OK);
    assert_int_equal(k.disabled, 0);
    lk_reg_sa_key_free(&k);

    /* A reader (the daemon's handle) looks keys up but changes nothing. */
    assert_int_equal(lk_registry_open(f->path, LK_REG_READONLY, &ro, why, sizeof why), LK_OK);
    assert_int_equal(lk_registry_sa_lookup(ro, K1, &k), LK_OK);
    lk_reg_sa_key_free(&k);
    REFUSE(LK_ERR_STATE, "read-only", lk_registry_sa_key_set_disabled(ro, K1, 1, W));
    REFUSE(LK_ERR_STATE, "read-only", lk_registry_sa_delete(ro, E1, W));
    lk_registry_close(ro);

    /* delete one key, then the account with the other */
    OK(lk_registry_sa_key_delete(f->reg, K2, W));
    assert_int_equal(lk_registry_sa_lookup(f->reg, K2, &k), LK_ERR_REG_NOT_FOUND);
    assert_int_equal(lk_registry_sa_lookup(f->reg, K1, &k), LK_OK);
    lk_reg_sa_key_free(&k);
    OK(lk_registry_sa_delete(f->reg, E1, W));
    assert_int_equal(lk_registry_sa_lookup(f->reg, K1, &k), LK_ERR_REG_NOT_FOUND);
    assert_null(k.key_id);
    memset(&s, 0, sizeof s);
    OK(lk_registry_sa_list(f->reg, "my-project", list_cb, &s, W));
    assert_int_equal(s.n, 1);
    /* the name is free again */
    OK(lk_registry_sa_create(f->reg, "my-project", "api-caller", LK_ROLE_VIEWER, email,
                             sizeof email, W));
    free(rsa);
    free(rsa2);
}

static void test_refusals(void **state)
{
    struct lk_test_reg *f = *state;
    char *rsa = gen_pub("RSA"), *ec = gen_pub("EC"), *rsa1024 = gen_pub("RSA1024");
    char email[LK_SA_EMAIL_MAX + 1], small[10], *before, *after, nul[64];
    char big[LK_CRED_PEM_MAX + 2];
    lk_reg_sa_key k;
    unsigned i;

    OK(lk_registry_sa_create(f->reg, "my-project", "api-caller", LK_ROLE_EDITOR, email,
                             sizeof email, W));
    OK(lk_registry_sa_key_add(f->reg, E1, K1, rsa, strlen(rsa), W));
    before = dump(f->path);

    /* create */
    REFUSE(LK_ERR_REG_EXISTS, "service account api-caller@my-project.iam.latchkey exists",
           lk_registry_sa_create(f->reg, "my-project", "api-caller", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    assert_string_equal(email, "");
    REFUSE(LK_ERR_REG_INVALID, "service account name 'short' is invalid",
           lk_registry_sa_create(f->reg, "my-project", "short", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "service account name",
           lk_registry_sa_create(f->reg, "my-project", "a234567890123456789012345678901",
                                 LK_ROLE_VIEWER, email, sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "service account name",
           lk_registry_sa_create(f->reg, "my-project", "1abcdef", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "service account name",
           lk_registry_sa_create(f->reg, "my-project", "abcdef-", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "service account name",
           lk_registry_sa_create(f->reg, "my-project", "abc_def", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "service account name",
           lk_registry_sa_create(f->reg, "my-project", "Abcdefg", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "project id 'My-Project' is invalid",
           lk_registry_sa_create(f->reg, "My-Project", "abcdefg", LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_ARG, "a project is required",
           lk_registry_sa_create(f->reg, NULL, "abcdefg", LK_ROLE_VIEWER, email, sizeof email,
                                 W));
    REFUSE(LK_ERR_ARG, "name is required",
           lk_registry_sa_create(f->reg, "my-project", NULL, LK_ROLE_VIEWER, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "role 0 is invalid",
           lk_registry_sa_create(f->reg, "my-project", "abcdefg", LK_ROLE_NONE, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_REG_INVALID, "role 6 is invalid",
           lk_registry_sa_create(f->reg, "my-project", "abcdefg", (lk_reg_sa_role)6, email,
                                 sizeof email, W));
    REFUSE(LK_ERR_ARG, "email buffer",
           lk_registry_sa_create(f->reg, "my-project", "abcdefg", LK_ROLE_VIEWER, small,
                                 sizeof small, W));

    /* key add */
    REFUSE(LK_ERR_REG_EXISTS, "key id " "0123456789abcdef0123456789abcdef01234567" " is taken",
           lk_registry_sa_key_add(f->reg, E1, K1, rsa, strlen(rsa), W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "service account nobody-x@my-project.iam.latchkey does not",
           lk_registry_sa_key_add(f->reg, "nobody-x@my-project.iam.latchkey", K2, rsa,
                                  strlen(rsa), W));
    REFUSE(LK_ERR_CRED_INVALID, "not an RSA public key",
           lk_registry_sa_key_add(f->reg, E1, K2, ec, strlen(ec), W));
    REFUSE(LK_ERR_CRED_INVALID, "not an RSA public key",
           lk_registry_sa_key_add(f->reg, E1, K2, rsa1024, strlen(rsa1024), W));
    REFUSE(LK_ERR_CRED_INVALID, "not an RSA public key",
           lk_registry_sa_key_add(f->reg, E1, K2, "garbage", 7, W));
    snprintf(nul, sizeof nul, "-----BEGIN PUBLIC KEY-----");
    nul[5] = '\0';
    REFUSE(LK_ERR_CRED_INVALID, "NUL", lk_registry_sa_key_add(f->reg, E1, K2, nul, 20, W));
    memset(big, 'A', sizeof big);
    REFUSE(LK_ERR_REG_LIMIT, "at most", lk_registry_sa_key_add(f->reg, E1, K2, big, sizeof big, W));
    REFUSE(LK_ERR_ARG, "a public key is required",
           lk_registry_sa_key_add(f->reg, E1, K2, NULL, 0, W));
    REFUSE(LK_ERR_REG_INVALID, "key id 'ABCDEF",
           lk_registry_sa_key_add(f->reg, E1, "ABCDEF0123456789abcdef0123456789abcdef01", rsa,
                                  strlen(rsa), W));
    REFUSE(LK_ERR_REG_INVALID, "40 lowercase hexadecimal",
           lk_registry_sa_key_add(f->reg, E1, "0123", rsa, strlen(rsa), W));
    REFUSE(LK_ERR_REG_INVALID, "40 lowercase hexadecimal",
           lk_registry_sa_key_add(f->reg, E1, "0123456789abcdef0123456789abcdef012345678", rsa,
                                  strlen(rsa), W));
    REFUSE(LK_ERR_REG_INVALID, "is not a service account email",
           lk_registry_sa_key_add(f->reg, "api-caller@my-project.iam.gserviceaccount.com", K2,
                                  rsa, strlen(rsa), W));
    REFUSE(LK_ERR_REG_INVALID, "is not a service account email",
           lk_registry_sa_key_add(f->reg, "api-caller.iam.latchkey", K2, rsa, strlen(rsa), W));
    REFUSE(LK_ERR_REG_INVALID, "is not a service account email",
           lk_registry_sa_key_add(f->reg, "api@my-project.iam.latchkey", K2, rsa, strlen(rsa), W));
    REFUSE(LK_ERR_REG_INVALID, "is not a service account email",
           lk_registry_sa_key_add(f->reg, "api-caller@.iam.latchkey", K2, rsa, strlen(rsa), W));
    REFUSE(LK_ERR_ARG, "email is required",
           lk_registry_sa_key_add(f->reg, NULL, K2, rsa, strlen(rsa), W));

    /* the others */
    REFUSE(LK_ERR_REG_NOT_FOUND, "key " "fedcba9876543210fedcba9876543210fedcba98" " does not exist",
           lk_registry_sa_key_set_disabled(f->reg, K2, 1, W));
    REFUSE(LK_ERR_REG_INVALID, "key id", lk_registry_sa_key_set_disabled(f->reg, "x", 1, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist", lk_registry_sa_key_delete(f->reg, K2, W));
    REFUSE(LK_ERR_REG_INVALID, "key id", lk_registry_sa_key_delete(f->reg, "", W));
    REFUSE(LK_ERR_ARG, "key id is required", lk_registry_sa_key_delete(f->reg, NULL, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "service account nobody-x@my-project.iam.latchkey does not",
           lk_registry_sa_delete(f->reg, "nobody-x@my-project.iam.latchkey", W));
    REFUSE(LK_ERR_REG_INVALID, "not a service account email",
           lk_registry_sa_delete(f->reg, "nobody", W));
    REFUSE(LK_ERR_REG_INVALID, "project id", lk_registry_sa_list(f->reg, "X", list_cb, NULL, W));
    REFUSE(LK_ERR_ARG, "callback", lk_registry_sa_list(f->reg, NULL, NULL, NULL, W));

    /* lookup: no query for what cannot be a key id; *out zeroed */
    memset(&k, 0x55, sizeof k);
    assert_int_equal(lk_registry_sa_lookup(f->reg, K2, &k), LK_ERR_REG_NOT_FOUND);
    assert_true(lk_test_all_bytes(&k, sizeof k, 0));
    memset(&k, 0x55, sizeof k);
    assert_int_equal(lk_registry_sa_lookup(f->reg, "0123456789ABCDEF0123456789abcdef01234567", &k),
                     LK_ERR_REG_NOT_FOUND);
    assert_true(lk_test_all_bytes(&k, sizeof k, 0));
    assert_int_equal(lk_registry_sa_lookup(f->reg, "", &k), LK_ERR_REG_NOT_FOUND);
    assert_int_equal(lk_registry_sa_lookup(f->reg, NULL, &k), LK_ERR_ARG);
    assert_int_equal(lk_registry_sa_lookup(f->reg, K1, NULL), LK_ERR_ARG);
    assert_int_equal(lk_registry_sa_lookup(NULL, K1, &k), LK_ERR_ARG);

    after = dump(f->path);
    assert_string_equal(before, after);
    free(before);
    free(after);

    /* at most 10 keys; the 11th writes nothing */
    for (i = 1; i < LK_SA_KEYS_MAX; i++) {
        char id[LK_SA_KEY_ID_LEN + 1];
        snprintf(id, sizeof id, "%040x", i);
        OK(lk_registry_sa_key_add(f->reg, E1, id, rsa, strlen(rsa), W));
    }
    before = dump(f->path);
    REFUSE(LK_ERR_REG_LIMIT, "already has 10 keys; an account has at most 10",
           lk_registry_sa_key_add(f->reg, E1, K2, rsa, strlen(rsa), W));
    after = dump(f->path);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* a deleted key frees a place */
    OK(lk_registry_sa_key_delete(f->reg, K1, W));
    OK(lk_registry_sa_key_add(f->reg, E1, K2, rsa, strlen(rsa), W));

    free(rsa);
    free(ec);
    free(rsa1024);
}

/* A callback may not call back into the handle. */
static int reenter_cb(void *arg, const lk_reg_sa_key *k)
{
    lk_registry *reg = arg;
    lk_reg_sa_key k2;
    char why[256];
    (void)k;
    assert_int_equal(lk_registry_sa_lookup(reg, K1, &k2), LK_ERR_STATE);
    assert_int_equal(lk_registry_sa_delete(reg, E1, why, sizeof why), LK_ERR_STATE);
    return 0;
}

static void test_reentry(void **state)
{
    struct lk_test_reg *f = *state;
    char email[LK_SA_EMAIL_MAX + 1];
    OK(lk_registry_sa_create(f->reg, "my-project", "api-caller", LK_ROLE_EDITOR, email,
                             sizeof email, W));
    OK(lk_registry_sa_list(f->reg, NULL, reenter_cb, f->reg, W));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),
        cmocka_unit_test_setup_teardown(test_lifecycle, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_reentry, lk_test_reg_setup, lk_test_reg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
