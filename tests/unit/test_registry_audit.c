/*
 * test_registry_audit.c — operators and the audit record (lk_reg_audit.h,
 * schema 8) on a real SQLite file in a fresh temporary directory:
 *  - password records: the format, verification against OpenSSL's other
 *    scrypt entry point (EVP_PBE_scrypt) computed here, a record of older
 *    parameters still verifying, malformed and out-of-range records refused;
 *  - operators: create, sign-in (unknown name, wrong password, disabled:
 *    one error, why says which), a new password changing the stamp, delete;
 *  - the hook: nothing recorded without an actor; with one, each committed
 *    write leaves one row in its own transaction, a refusal none (it writes
 *    nothing), the broker's writes none; listing by project, time and page;
 *    rows older than LK_REG_AUDIT_DAYS pruned.
 */
#include "lk_test_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_error.h"
#include "latchkey/lk_reg_audit.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"

#define T0 LK_TEST_T0
#define PW "correct horse battery staple"

static int64_t rows(struct lk_test_reg *f, const char *where)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    char sql[512];
    int64_t n = -1;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM audit WHERE %s", where);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

/* scrypt through EVP_PBE_scrypt: the record of (ln, r, p, salt) for pw. */
static void reference_record(const char *pw, unsigned ln, unsigned r, unsigned p, const uint8_t *salt,
                             size_t salt_len, char *out, size_t size)
{
    uint8_t h[32];
    char s64[64], h64[64];
    size_t sl, hl;
    assert_int_equal(EVP_PBE_scrypt(pw, strlen(pw), salt, salt_len, (uint64_t)1 << ln, r, p,
                                    (uint64_t)256 << 20, h, sizeof h), 1);
    assert_int_equal(lk_b64url_encode(salt, salt_len, s64, sizeof s64, &sl), LK_OK);
    assert_int_equal(lk_b64url_encode(h, sizeof h, h64, sizeof h64, &hl), LK_OK);
    snprintf(out, size, "scrypt$%u$%u$%u$%s$%s", ln, r, p, s64, h64);
}

static void test_password(void **state)
{
    char rec[LK_PASSWORD_RECORD_MAX], rec2[LK_PASSWORD_RECORD_MAX], ref[256];
    uint8_t salt[32];
    size_t sl;
    (void)state;
    assert_int_equal(lk_password_hash(PW, strlen(PW), rec, sizeof rec), LK_OK);
    assert_int_equal(strncmp(rec, "scrypt$15$8$1$", 14), 0);
    assert_true(lk_password_verify(rec, PW, strlen(PW)));
    assert_false(lk_password_verify(rec, PW, strlen(PW) - 1));
    assert_false(lk_password_verify(rec, "correct horse battery stapl3", strlen(PW)));
    /* a fresh salt each time */
    assert_int_equal(lk_password_hash(PW, strlen(PW), rec2, sizeof rec2), LK_OK);
    assert_string_not_equal(rec, rec2);
    /* the same hash as OpenSSL's other scrypt entry point, from the record's salt */
    {
        const char *s = rec + 14, *e = strchr(s, '$');
        assert_non_null(e);
        assert_int_equal(lk_b64url_decode(s, (size_t)(e - s), salt, sizeof salt, &sl, 0), LK_OK);
        assert_int_equal(sl, 16);
        reference_record(PW, 15, 8, 1, salt, sl, ref, sizeof ref);
        assert_string_equal(ref, rec);
    }
    /* parameters travel with the record: an older, cheaper one verifies */
    reference_record(PW, 12, 4, 2, (const uint8_t *)"0123456789abcdef", 16, ref, sizeof ref);
    assert_true(lk_password_verify(ref, PW, strlen(PW)));
    /* out of range or malformed: refused without running the KDF on it */
    reference_record(PW, 12, 4, 2, (const uint8_t *)"0123456789abcdef", 16, ref, sizeof ref);
    ref[7] = '9'; /* ln 92 */
    assert_false(lk_password_verify(ref, PW, strlen(PW)));
    assert_false(lk_password_verify("scrypt$15$8$1$AAAA", PW, strlen(PW)));
    assert_false(lk_password_verify("argon2id$whatever", PW, strlen(PW)));
    assert_false(lk_password_verify(NULL, PW, strlen(PW)));
    /* lengths */
    assert_int_equal(lk_password_hash("short", 5, rec, sizeof rec), LK_ERR_ARG);
    assert_string_equal(rec, "");
    assert_int_equal(lk_password_hash(PW, strlen(PW), rec, 16), LK_ERR_ARG);
}

static void test_operators(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_operator o;
    uint8_t stamp[32];
    char why[512];
    assert_int_equal(lk_registry_operator_create(f->reg, "alice", "proj-one", LK_ROLE_EDITOR, PW, strlen(PW),
                                                 why, sizeof why), LK_OK);
    assert_int_equal(lk_registry_operator_create(f->reg, "alice", "proj-one", LK_ROLE_EDITOR, PW, strlen(PW),
                                                 why, sizeof why), LK_ERR_REG_EXISTS);
    assert_int_equal(lk_registry_operator_create(f->reg, "Alice", "proj-one", LK_ROLE_EDITOR, PW, strlen(PW),
                                                 why, sizeof why), LK_ERR_REG_INVALID);
    assert_int_equal(lk_registry_operator_create(f->reg, "bob", "proj-one", LK_ROLE_NONE, PW, strlen(PW), why,
                                                 sizeof why), LK_ERR_REG_INVALID);
    assert_int_equal(lk_registry_operator_create(f->reg, "bob", "proj-one", LK_ROLE_VIEWER, "too short", 9, why,
                                                 sizeof why), LK_ERR_ARG);
    assert_int_equal(lk_registry_operator_signin(f->reg, "alice", PW, strlen(PW), &o, why, sizeof why), LK_OK);
    assert_string_equal(o.name, "alice");
    assert_string_equal(o.project, "proj-one");
    assert_int_equal(o.role, LK_ROLE_EDITOR);
    memcpy(stamp, o.stamp, 32);
    lk_reg_operator_free(&o);

    assert_int_equal(lk_registry_operator_signin(f->reg, "alice", "wrong wrong wrong", 17, &o, why, sizeof why),
                     LK_ERR_REG_NOT_FOUND);
    assert_non_null(strstr(why, "wrong password"));
    assert_null(o.name);
    assert_int_equal(lk_registry_operator_signin(f->reg, "nobody", PW, strlen(PW), &o, why, sizeof why),
                     LK_ERR_REG_NOT_FOUND);
    assert_non_null(strstr(why, "no operator"));
    assert_int_equal(lk_registry_operator_set_disabled(f->reg, "alice", 1, why, sizeof why), LK_OK);
    assert_int_equal(lk_registry_operator_signin(f->reg, "alice", PW, strlen(PW), &o, why, sizeof why),
                     LK_ERR_REG_NOT_FOUND);
    assert_non_null(strstr(why, "disabled"));
    assert_int_equal(lk_registry_operator_set_disabled(f->reg, "alice", 0, why, sizeof why), LK_OK);

    /* a new password: the old one fails, the stamp moves */
    assert_int_equal(lk_registry_operator_passwd(f->reg, "alice", "another long password", 21, why, sizeof why),
                     LK_OK);
    assert_int_equal(lk_registry_operator_signin(f->reg, "alice", PW, strlen(PW), &o, why, sizeof why),
                     LK_ERR_REG_NOT_FOUND);
    assert_int_equal(lk_registry_operator_get(f->reg, "alice", &o), LK_OK);
    assert_memory_not_equal(o.stamp, stamp, 32);
    lk_reg_operator_free(&o);
    assert_int_equal(lk_registry_operator_passwd(f->reg, "carol", PW, strlen(PW), why, sizeof why),
                     LK_ERR_REG_NOT_FOUND);
    assert_int_equal(lk_registry_operator_delete(f->reg, "alice", why, sizeof why), LK_OK);
    assert_int_equal(lk_registry_operator_get(f->reg, "alice", &o), LK_ERR_REG_NOT_FOUND);
    assert_int_equal(lk_registry_operator_delete(f->reg, "alice", why, sizeof why), LK_ERR_REG_NOT_FOUND);
}

struct got {
    int n;
    int64_t ids[16];
    char actor[16][64], outcome[16][32], resource[16][128];
};

static int got_cb(void *arg, const lk_reg_audit_record *r)
{
    struct got *g = arg;
    if (g->n < 16) {
        g->ids[g->n] = r->id;
        snprintf(g->actor[g->n], 64, "%s %s %s", r->actor, r->via, r->action);
        snprintf(g->outcome[g->n], 32, "%s", r->outcome);
        snprintf(g->resource[g->n], 128, "%s", r->resource);
    }
    g->n++;
    return 0;
}

static void test_hook(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_name n = {"proj-one", "us-central1", "reg-1"};
    lk_reg_name other = {"proj-two", "us-central1", "reg-2"};
    lk_reg_presence_update u = {0};
    lk_reg_audit_query q = {0};
    struct got g;
    char why[512];

    /* no actor: nothing recorded */
    assert_int_equal(lk_registry_create_registry(f->reg, &n, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED, why,
                                                 sizeof why), LK_OK);
    assert_int_equal(rows(f, "1"), 0);

    assert_int_equal(lk_registry_set_actor(f->reg, "operator:alice", "bogus"), LK_ERR_ARG);
    assert_int_equal(lk_registry_set_actor(f->reg, "operator:alice", "console"), LK_OK);
    lk_registry_set_action(f->reg, "registries.create", "projects/proj-two/locations/us-central1/registries/reg-2",
                           "a\nb");
    f->now = T0 + 10;
    assert_int_equal(lk_registry_create_registry(f->reg, &other, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED, why,
                                                 sizeof why), LK_OK);
    assert_int_equal(rows(f, "actor = 'operator:alice' AND via = 'console' AND action = 'registries.create' "
                             "AND project = 'proj-two' AND outcome = 'ok' AND detail = 'a?b' AND time = 1700000010"),
                     1);
    /* a refusal writes nothing, no row either */
    assert_int_equal(lk_registry_create_registry(f->reg, &other, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED, why,
                                                 sizeof why), LK_ERR_REG_EXISTS);
    assert_int_equal(rows(f, "1"), 1);
    /* a row cannot outlive its change: a change of the same handle rolled back at commit leaves none
     * (covered by the refusal above, which failed inside the transaction) */
    lk_registry_set_action(f->reg, "registries.create", "projects/proj-two/locations/us-central1/registries/reg-3",
                           NULL);
    {
        lk_reg_name third = {"proj-two", "us-central1", "reg-3"};
        assert_int_equal(lk_registry_create_registry(f->reg, &third, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED,
                                                     why, sizeof why), LK_OK);
    }
    /* the broker's writes (TX_BROKER) and reads are never recorded */
    u.num_id = 12345;
    u.presence = LK_PRESENCE_ONLINE;
    u.time = T0;
    assert_int_equal(lk_registry_presence_record(f->reg, &u, 1), LK_OK);
    assert_int_equal(rows(f, "1"), 2);

    /* listing: newest first, by project, a page at a time, oldest first */
    lk_registry_set_actor(f->reg, "serviceAccount:x@proj-one.iam.latchkey", "api");
    lk_registry_set_action(f->reg, "operators.create", "projects/proj-one/operators/dave", NULL);
    f->now = T0 + 20;
    assert_int_equal(lk_registry_operator_create(f->reg, "dave", "proj-one", LK_ROLE_VIEWER, PW, strlen(PW), why,
                                                 sizeof why), LK_OK);
    lk_registry_set_actor(f->reg, NULL, NULL);
    assert_int_equal(lk_registry_operator_delete(f->reg, "dave", why, sizeof why), LK_OK);
    assert_int_equal(rows(f, "1"), 3);
    memset(&g, 0, sizeof g);
    assert_int_equal(lk_registry_audit_list(f->reg, &q, got_cb, &g, why, sizeof why), LK_OK);
    assert_int_equal(g.n, 3);
    assert_true(g.ids[0] > g.ids[1] && g.ids[1] > g.ids[2]);
    assert_string_equal(g.actor[0], "serviceAccount:x@proj-one.iam.latchkey api operators.create");
    assert_string_equal(g.outcome[1], "ok");
    assert_string_equal(g.resource[1], "projects/proj-two/locations/us-central1/registries/reg-3");
    q.project = "proj-two";
    memset(&g, 0, sizeof g);
    assert_int_equal(lk_registry_audit_list(f->reg, &q, got_cb, &g, why, sizeof why), LK_OK);
    assert_int_equal(g.n, 2);
    q.project = NULL;
    q.limit = 1;
    q.cursor = g.ids[0];
    memset(&g, 0, sizeof g);
    assert_int_equal(lk_registry_audit_list(f->reg, &q, got_cb, &g, why, sizeof why), LK_OK);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.outcome[0], "ok");
    q.limit = 0;
    q.cursor = 0;
    q.oldest_first = 1;
    q.since = T0 + 15;
    memset(&g, 0, sizeof g);
    assert_int_equal(lk_registry_audit_list(f->reg, &q, got_cb, &g, why, sizeof why), LK_OK);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.resource[0], "projects/proj-one/operators/dave");

    /* retention: LK_REG_AUDIT_DAYS later, the next prune drops the old rows */
    assert_int_equal(lk_registry_operator_create(f->reg, "erin", "proj-one", LK_ROLE_VIEWER, PW, strlen(PW), why,
                                                 sizeof why), LK_OK);
    lk_registry_set_actor(f->reg, "tool:root@host", "tool");
    lk_registry_set_action(f->reg, "operators.disable", "projects/proj-one/operators/erin", NULL);
    f->now = T0 + (int64_t)LK_REG_AUDIT_DAYS * 86400 + 30;
    for (int i = 0; i < LK_REG_AUDIT_PRUNE_EVERY; i++)
        assert_int_equal(lk_registry_operator_set_disabled(f->reg, "erin", i & 1, why, sizeof why), LK_OK);
    assert_int_equal(rows(f, "time < 1700000100"), 0);
    assert_true(rows(f, "1") > 0 && rows(f, "1") <= LK_REG_AUDIT_PRUNE_EVERY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password),
        cmocka_unit_test_setup_teardown(test_operators, lk_test_reg_setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_hook, lk_test_reg_setup, lk_test_reg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
