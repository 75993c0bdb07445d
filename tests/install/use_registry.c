/*
 * use_registry.c — a program of a latchkey user, built by
 * tests/install/run.sh against an installed tree only (`pkg-config
 * latchkey-registry`), that calls every function liblatchkey-registry's
 * header declares, on a registry database of its own.
 *
 *   use_registry DIR      (an empty directory for the database)
 */
#include <stdio.h>
#include <string.h>

#include <latchkey/lk_manifest.h>
#include <latchkey/lk_reg_console.h>
#include <latchkey/lk_reg_audit.h>
#include <latchkey/lk_reg_backup.h>
#include <latchkey/lk_registry.h>

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "use_registry.c:%d: %s\n", __LINE__, #cond);    \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* A P-256 public key (its private half was never kept). */
static char key_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZejEXmqS2F0kMHGVPDKa4qryibf6\n"
    "pB//8Djgma0MYdVEzooEt4OsELjjwql7B/R8AFPS5NE82FtIV0uiASQymQ==\n"
    "-----END PUBLIC KEY-----\n";

/* An RSA-2048 public key, for a service account. */
static const char rsa_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA2lvkqHcOx0k53R8V82bD\n"
    "D5ivpQ2fMUkKxh8F1R0Dys93fRNcAudqtCxwNXAz4xxocfPFD+OwInQampGuLPpx\n"
    "r6/3hzZFtUx5S/B1Q4DW5hudBbkU/dux3wSo3JtOnXcua1k13Xf6NvMZdLGmJU8X\n"
    "QmmR91jPVDeMruoT1rNuX/q6E4mb7KI7Lkdyz07Z1sqkS85SGxDlOV9/0CMNrxZW\n"
    "lXiBuXWMN2v9H6bX9tFUxVjudu+USnOQYcjREyDS1sb7Oh04kMxRCA1b1g4IUFqG\n"
    "SjABU/DkRY5z0Xb1Qo9bElfPVDp+TUazZMpHv19DTTruvWZ6tq+VHcApOPCdCJHM\n"
    "LQIDAQAB\n"
    "-----END PUBLIC KEY-----\n";

static int count_registry(void *arg, const lk_reg_registry *r) { (void)r; ++*(int *)arg; return 0; }
static int count_cert(void *arg, const lk_reg_cert *c) { (void)c; ++*(int *)arg; return 0; }
static int count_hit(void *arg, const lk_reg_device *d, int64_t credential_expiry)
{
    (void)d;
    (void)credential_expiry;
    ++*(int *)arg;
    return 0;
}

static int count_fleet(void *arg, const lk_reg_fleet_counts *c)
{
    (void)c;
    ++*(int *)arg;
    return 0;
}

static int count_device(void *arg, const lk_reg_device *d) { (void)d; ++*(int *)arg; return 0; }
static int count_config(void *arg, const lk_reg_config *c) { (void)c; ++*(int *)arg; return 0; }
static int count_state(void *arg, const lk_reg_state_entry *s) { (void)s; ++*(int *)arg; return 0; }
static int count_change(void *arg, const lk_reg_change *c) { (void)c; ++*(int *)arg; return 0; }
static int count_command(void *arg, const lk_reg_command *c) { (void)c; ++*(int *)arg; return 0; }
static int count_backend(void *arg, const lk_reg_backend *b) { (void)b; ++*(int *)arg; return 0; }
static int count_sa(void *arg, const lk_reg_sa_key *k) { (void)k; ++*(int *)arg; return 0; }
static int count_sub(void *arg, const lk_reg_subscription *s) { (void)s; ++*(int *)arg; return 0; }
static int count_dev(void *arg, const lk_reg_device *d) { (void)d; ++*(int *)arg; return 0; }
static int count_signer(void *arg, const lk_reg_signer *s) { (void)s; ++*(int *)arg; return 0; }
static int count_crl(void *arg, const lk_reg_crl *c) { (void)c; ++*(int *)arg; return 0; }
static int count_tomb(void *arg, const lk_reg_tombstone *t) { (void)t; ++*(int *)arg; return 0; }
static int count_op(void *arg, const lk_reg_operator *o) { (void)o; ++*(int *)arg; return 0; }
static int count_audit(void *arg, const lk_reg_audit_record *r) { (void)r; ++*(int *)arg; return 0; }

int main(int argc, char **argv)
{
    lk_reg_name name = {"my-project", "us-central1", "my-registry"};
    lk_reg_subscription sub, got_sub;
    lk_reg_presence_update pu;
    lk_reg_credential cred = {LK_CRED_ES256_PEM, key_pem, 0};
    lk_reg_device_spec spec;
    lk_reg_registry r;
    lk_reg_cert cert;
    lk_reg_device d;
    lk_reg_config cfg;
    lk_reg_state_entry st;
    lk_reg_auth auth;
    lk_reg_activity act;
    lk_reg_command cmd;
    lk_reg_backend be;
    lk_reg_command_status status;
    lk_registry *reg = NULL;
    uint8_t secret[32] = {42}, secret2[32];
    char path[4096], why[512], project[LK_PROJECT_MAX + 1];
    uint64_t num_id = 0, num_id2 = 0;
    int64_t since = 0, head = 0, command = 0, decided = 0;
    unsigned index = 0;
    int n, changed = 0, won = 0;
    char email[LK_SA_EMAIL_MAX + 1];
    lk_reg_sa_key sa;
    static const char kid[] = "0123456789abcdef0123456789abcdef01234567";

    if (argc != 2) {
        fprintf(stderr, "usage: use_registry DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "sqlite:%s/registry.db", argv[1]);
    CHECK(lk_registry_open(path, LK_REG_CREATE, &reg, why, sizeof why) == LK_OK);
    if (reg == NULL) {
        fprintf(stderr, "use_registry: %s\n", why);
        return 1;
    }
    lk_registry_set_busy_timeout(reg, 2000);

    /* registries and their CA certificates */
    CHECK(lk_registry_create_registry(reg, &name, LK_REG_STATE_UNSPECIFIED, LK_REG_STATE_DISABLED, why,
                                      sizeof why) == LK_OK);
    CHECK(lk_registry_get_registry(reg, &name, &r, why, sizeof why) == LK_OK);
    CHECK(r.mqtt == LK_REG_STATE_ENABLED && r.http == LK_REG_STATE_DISABLED);
    lk_reg_registry_free(&r);
    n = 0;
    CHECK(lk_registry_list_registries(reg, NULL, NULL, count_registry, &n, why, sizeof why) == LK_OK && n == 1);
    CHECK(lk_registry_update_registry(reg, &name, LK_REG_STATE_UNSPECIFIED, LK_REG_STATE_ENABLED, NULL,
                                      "{\"pubsubTopicName\":\"projects/my-project/topics/state\"}", why,
                                      sizeof why) == LK_OK);
    CHECK(lk_registry_add_cert(reg, &name, key_pem, strlen(key_pem), &index, why, sizeof why) != LK_OK);
    n = 0;
    CHECK(lk_registry_list_certs(reg, &name, count_cert, &n, why, sizeof why) == LK_OK && n == 0);
    CHECK(lk_registry_delete_cert(reg, &name, 0, why, sizeof why) == LK_ERR_REG_NOT_FOUND);
    memset(&cert, 0, sizeof cert);
    lk_reg_cert_free(&cert);

    /* provisioning (schema 7): manifest signers, CRLs, just-in-time registration */
    {
        lk_reg_signer sg;
        lk_reg_crl crl;
        lk_reg_jit jit = {1, 5, 0};
        uint64_t jn = 0;
        CHECK(lk_registry_add_signer(reg, &name, "factory-1", key_pem, strlen(key_pem), &index, why,
                                     sizeof why) == LK_OK && index == 0);
        n = 0;
        CHECK(lk_registry_list_signers(reg, &name, count_signer, &n, why, sizeof why) == LK_OK && n == 1);
        CHECK(lk_registry_delete_signer(reg, &name, 0, why, sizeof why) == LK_OK);
        CHECK(lk_registry_add_crl(reg, &name, key_pem, strlen(key_pem), NULL, 0, why, sizeof why) ==
              LK_ERR_REG_INVALID);
        n = 0;
        CHECK(lk_registry_list_crls(reg, &name, count_crl, &n, why, sizeof why) == LK_OK && n == 0);
        CHECK(lk_registry_delete_crl(reg, &name, 0, why, sizeof why) == LK_ERR_REG_NOT_FOUND);
        CHECK(lk_registry_set_jit(reg, &name, &jit, why, sizeof why) == LK_OK);
        memset(&jit, 0, sizeof jit);
        CHECK(lk_registry_get_jit(reg, &name, &jit, why, sizeof why) == LK_OK && jit.enabled &&
              jit.max_devices == 5 && jit.registered == 0);
        CHECK(lk_registry_jit_register(reg, &name, "device-99", key_pem, strlen(key_pem), NULL, 0,
                                       &jn, why, sizeof why) != LK_OK && jn == 0);
        {
            lk_reg_device_spec ck;
            memset(&ck, 0, sizeof ck);
            ck.id = "device-77";
            CHECK(lk_registry_import_check(reg, &name, &ck, why, sizeof why) == LK_OK);
            {
                lk_err ce = LK_ERR_ARG;
                char *cw = NULL;
                CHECK(lk_registry_import_check_many(reg, &name, &ck, 1, 0, &ce, &cw, why,
                                                    sizeof why) == LK_OK &&
                      ce == LK_OK && cw == NULL);
            }
            CHECK(lk_registry_import_begin_staged(reg, &name, why, sizeof why) == LK_OK);
            lk_registry_import_abort(reg);
        }
        memset(&sg, 0, sizeof sg);
        lk_reg_signer_free(&sg);
        memset(&crl, 0, sizeof crl);
        lk_reg_crl_free(&crl);
    }

    /* devices and credentials */
    memset(&spec, 0, sizeof spec);
    spec.id = "device-42";
    spec.creds = &cred;
    spec.ncreds = 1;
    CHECK(lk_registry_create_device(reg, &name, &spec, &num_id, why, sizeof why) == LK_OK && num_id > 0);
    CHECK(lk_registry_get_device(reg, &name, "device-42", 0, &d, why, sizeof why) == LK_OK);
    CHECK(d.num_id == num_id && d.ncreds == 1 && d.config_version == 1);
    lk_reg_device_free(&d);
    {
        lk_reg_config cfg;
        CHECK(lk_registry_get_device_config(reg, &name, NULL, num_id, &d, &cfg, why, sizeof why) == LK_OK);
        CHECK(d.num_id == num_id && cfg.version == 1);
        lk_reg_config_free(&cfg);
        lk_reg_device_free(&d);
    }
    n = 0;
    CHECK(lk_registry_list_devices(reg, &name, count_device, &n, why, sizeof why) == LK_OK && n == 1);
    spec.blocked = 1;
    CHECK(lk_registry_update_device(reg, &name, &spec, LK_REG_SET_BLOCKED, why, sizeof why) == LK_OK);
    spec.blocked = 0;
    CHECK(lk_registry_update_device(reg, &name, &spec, LK_REG_SET_BLOCKED, why, sizeof why) == LK_OK);
    CHECK(lk_registry_add_credential(reg, &name, "device-42", &cred, why, sizeof why) == LK_OK);
    CHECK(lk_registry_delete_credential(reg, &name, "device-42", 1, why, sizeof why) == LK_OK);

    /* config and state */
    CHECK(lk_registry_update_config(reg, &name, "device-42", (const uint8_t *)"{\"interval\":60}", 15, 1,
                                    &cfg, why, sizeof why) == LK_OK && cfg.version == 2);
    lk_reg_config_free(&cfg);
    n = 0;
    CHECK(lk_registry_list_configs(reg, &name, "device-42", 0, count_config, &n, why, sizeof why) == LK_OK &&
          n == 2);
    memset(&cfg, 0, sizeof cfg);
    CHECK(lk_registry_latest_config(reg, num_id, &cfg) == LK_OK && cfg.version == 2 && cfg.len == 15 &&
          memcmp(cfg.data, "{\"interval\":60}", 15) == 0);
    lk_reg_config_free(&cfg);
    CHECK(lk_registry_add_state(reg, num_id, (const uint8_t *)"ok", 2, 1700000001) == LK_OK);
    n = 0;
    CHECK(lk_registry_list_states(reg, &name, "device-42", 0, count_state, &n, why, sizeof why) == LK_OK &&
          n == 1);
    memset(&st, 0, sizeof st);
    lk_reg_state_entry_free(&st);

    /* the broker's calls */
    CHECK(lk_registry_auth_lookup(reg, &name, "device-42", &auth) == LK_OK && auth.ncreds == 1);
    lk_reg_auth_free(&auth);
    memset(&act, 0, sizeof act);
    act.num_id = num_id;
    act.last_event = 1700000002;
    CHECK(lk_registry_record_activity(reg, &act, 1) == LK_OK);
    {
        int bound = -1;
        CHECK(lk_registry_bound(reg, num_id, num_id, &bound) == LK_OK && bound == 0);
    }
    CHECK(lk_registry_poll(reg, &changed) == LK_OK);
    n = 0;
    CHECK(lk_registry_changes(reg, &since, count_change, &n) == LK_OK && n > 0 && since > 0);
    CHECK(lk_registry_change_head(reg, &head) == LK_OK && head == since);

    /* bulk import: one committed, one abandoned */
    memset(&spec, 0, sizeof spec);
    spec.id = "device-43";
    CHECK(lk_registry_import_begin(reg, &name, why, sizeof why) == LK_OK);
    CHECK(lk_registry_import_add(reg, &spec, &num_id2, why, sizeof why) == LK_OK && num_id2 > num_id);
    CHECK(lk_registry_import_commit(reg, why, sizeof why) == LK_OK);
    spec.id = "device-44";
    CHECK(lk_registry_import_begin(reg, &name, why, sizeof why) == LK_OK);
    CHECK(lk_registry_import_add(reg, &spec, NULL, why, sizeof why) == LK_OK);
    lk_registry_import_abort(reg);
    CHECK(lk_registry_get_device(reg, &name, "device-44", 0, &d, why, sizeof why) == LK_ERR_REG_NOT_FOUND);

    /* latchkeyd: gateway bindings and devices a page at a time */
    {
        lk_reg_device_query q;
        int more = -1;
        memset(&spec, 0, sizeof spec);
        spec.id = "gateway-1";
        spec.gateway_type = LK_GATEWAY_TYPE_GATEWAY;
        CHECK(lk_registry_create_device(reg, &name, &spec, NULL, why, sizeof why) == LK_OK);
        CHECK(lk_registry_bind(reg, &name, "gateway-1", "device-42", why, sizeof why) == LK_OK);
        memset(&q, 0, sizeof q);
        q.associations_gateway_id = "gateway-1";
        q.limit = 10;
        n = 0;
        CHECK(lk_registry_query_devices(reg, &name, &q, count_device, &n, &more, why, sizeof why) == LK_OK &&
              n == 1 && more == 0);
        memset(&q, 0, sizeof q);
        q.limit = 1;
        n = 0;
        CHECK(lk_registry_query_devices(reg, &name, &q, count_device, &n, &more, why, sizeof why) == LK_OK &&
              n == 1 && more == 1);
        CHECK(lk_registry_unbind(reg, &name, "gateway-1", "device-42", why, sizeof why) == LK_OK);
        /* a binding in an import's one transaction; a refused one undone alone */
        CHECK(lk_registry_import_begin(reg, &name, why, sizeof why) == LK_OK);
        CHECK(lk_registry_import_bind(reg, "gateway-1", "device-42", why, sizeof why) == LK_OK);
        CHECK(lk_registry_import_bind(reg, "gateway-1", "nobody-1", why, sizeof why) == LK_ERR_REG_NOT_FOUND);
        CHECK(lk_registry_import_commit(reg, why, sizeof why) == LK_OK);
        CHECK(lk_registry_unbind(reg, &name, "gateway-1", "device-42", why, sizeof why) == LK_OK);
        CHECK(lk_registry_import_bind(reg, "gateway-1", "device-42", why, sizeof why) == LK_ERR_STATE);
        CHECK(lk_registry_delete_device(reg, &name, "gateway-1", why, sizeof why) == LK_OK);
    }

    /* the console: a search and the fleet counts */
    {
        lk_reg_search q;
        int more = -1;
        memset(&q, 0, sizeof q);
        q.id_prefix = "device-4";
        q.presence = -1;
        q.expiring_days = -1;
        q.limit = 200;
        n = 0;
        CHECK(lk_registry_search_devices(reg, &name, &q, count_hit, &n, &more, why, sizeof why) == LK_OK &&
              n >= 1 && more == 0);
        n = 0;
        CHECK(lk_registry_fleet_counts(reg, name.project, count_fleet, &n, why, sizeof why) == LK_OK && n >= 1);
    }

    /* whole registries, directly and by import; the file's structure */
    {
        lk_reg_registry_spec rs;
        lk_reg_name n2 = {"my-project", "us-central1", "reg-full"}, n3 = {"my-project", "us-central1", "reg-imp"};
        memset(&rs, 0, sizeof rs);
        CHECK(lk_registry_create_registry_full(reg, &n2, &rs, why, sizeof why) == LK_OK);
        rs.log_level = LK_LOG_LEVEL_INFO;
        CHECK(lk_registry_patch_registry(reg, &n2, &rs, LK_REG_SET_REG_LOG_LEVEL | LK_REG_SET_CERTS, why,
                                         sizeof why) == LK_OK);
        rs.log_level = LK_LOG_LEVEL_UNSPECIFIED;
        CHECK(lk_registry_import_registries_begin(reg, why, sizeof why) == LK_OK);
        CHECK(lk_registry_import_add_registry(reg, &n3, &rs, why, sizeof why) == LK_OK);
        CHECK(lk_registry_import_commit(reg, why, sizeof why) == LK_OK);
        CHECK(lk_registry_check(reg, why, sizeof why) == LK_OK);
    }

    /* commands */
    CHECK(lk_registry_command_send(reg, &name, "device-42", "reboot", (const uint8_t *)"now", 3, &command, why,
                                   sizeof why) == LK_OK && command > 0);
    CHECK(lk_registry_command_status(reg, command, &status, &decided) == LK_OK && status == LK_CMD_PENDING);
    n = 0;
    CHECK(lk_registry_commands_pending(reg, count_command, &n) == LK_OK && n == 1);
    CHECK(lk_registry_command_decide(reg, command, LK_CMD_DELIVERED, 1700000003, &won) == LK_OK && won == 1);
    memset(&cmd, 0, sizeof cmd);
    lk_reg_command_free(&cmd);

    /* backends */
    CHECK(lk_registry_backend_create(reg, "my-project", "analytics", secret, why, sizeof why) == LK_OK);
    n = 0;
    CHECK(lk_registry_backend_list(reg, NULL, count_backend, &n, why, sizeof why) == LK_OK && n == 1);
    CHECK(lk_registry_backend_lookup(reg, "analytics", project, secret2) == LK_OK);
    CHECK(strcmp(project, "my-project") == 0 && memcmp(secret, secret2, 32) == 0);
    CHECK(lk_registry_backend_delete(reg, "analytics", why, sizeof why) == LK_OK);
    memset(&be, 0, sizeof be);
    lk_reg_backend_free(&be);

    /* latchkeyd's bridge identity */
    CHECK(lk_registry_bridge_set(reg, "latchkeyd-1", secret, 1700000004, why, sizeof why) == LK_OK);
    memset(secret2, 0, sizeof secret2);
    CHECK(lk_registry_bridge_lookup(reg, "latchkeyd-1", secret2) == LK_OK && memcmp(secret, secret2, 32) == 0);

    /* service accounts */
    CHECK(lk_reg_sa_role_from_name("roles/cloudiot.editor") == LK_ROLE_EDITOR);
    CHECK(strcmp(lk_reg_sa_role_name(LK_ROLE_VIEWER), "viewer") == 0);
    CHECK(lk_registry_sa_create(reg, "my-project", "api-caller", LK_ROLE_ADMIN, email, sizeof email, why,
                                sizeof why) == LK_OK);
    CHECK(strcmp(email, "api-caller@my-project.iam.latchkey") == 0);
    CHECK(lk_registry_sa_key_add(reg, email, kid, rsa_pem, strlen(rsa_pem), why, sizeof why) == LK_OK);
    CHECK(lk_registry_sa_lookup(reg, kid, &sa) == LK_OK && sa.role == LK_ROLE_ADMIN && !sa.disabled);
    lk_reg_sa_key_free(&sa);
    n = 0;
    CHECK(lk_registry_sa_list(reg, NULL, count_sa, &n, why, sizeof why) == LK_OK && n == 1);
    CHECK(lk_registry_sa_key_set_disabled(reg, kid, 1, why, sizeof why) == LK_OK);
    CHECK(lk_registry_sa_key_delete(reg, kid, why, sizeof why) == LK_OK);
    CHECK(lk_registry_sa_delete(reg, email, why, sizeof why) == LK_OK);

    /* push subscriptions and presence (schema 6) */
    memset(&sub, 0, sizeof sub);
    sub.project = "my-project";
    sub.name = "push-1";
    sub.topic = "events";
    sub.push_endpoint = "https://app.example.com/push";
    CHECK(lk_registry_subscription_create(reg, &sub, why, sizeof why) == LK_OK);
    sub.push_endpoint = "http://127.0.0.1:8080/push";
    CHECK(lk_registry_subscription_update(reg, &sub, why, sizeof why) == LK_OK);
    CHECK(lk_registry_subscription_get(reg, "my-project", "push-1", &got_sub, why, sizeof why) == LK_OK);
    CHECK(got_sub.ack_deadline_ms == 10000);
    lk_reg_subscription_free(&got_sub);
    n = 0;
    CHECK(lk_registry_subscription_list(reg, NULL, count_sub, &n, why, sizeof why) == LK_OK && n == 1);
    CHECK(lk_registry_subscription_delete(reg, "my-project", "push-1", why, sizeof why) == LK_OK);
    pu.num_id = 1;
    pu.presence = LK_PRESENCE_ONLINE;
    pu.time = 1700000005;
    pu.detail = "127.0.0.1";
    CHECK(lk_registry_presence_record(reg, &pu, 1) == LK_OK);
    n = 0;
    CHECK(lk_registry_presence_reset(reg, 1700000006, "the broker restarted", count_dev, &n, why,
                                     sizeof why) == LK_OK);
    n = 0;
    CHECK(lk_registry_presence_tombstones(reg, count_tomb, &n, why, sizeof why) == LK_OK);
    CHECK(lk_registry_presence_tombstones_done(reg, &pu.num_id, 1, why, sizeof why) == LK_OK);
    {
        int layout = -1;
        CHECK(lk_registry_presence_layout(reg, &layout, why, sizeof why) == LK_OK && layout == 0);
        CHECK(lk_registry_presence_layout_set(reg, 1, why, sizeof why) == LK_OK);
        CHECK(lk_registry_presence_layout(reg, &layout, why, sizeof why) == LK_OK && layout == 1);
    }

    /* lk_reg_audit.h: operators, passwords, the audit record (schema 8) */
    {
        static const char pw[] = "a long enough password";
        char rec[LK_PASSWORD_RECORD_MAX];
        lk_reg_operator op;
        lk_reg_audit_query aq;
        CHECK(lk_password_hash(pw, sizeof pw - 1, rec, sizeof rec) == LK_OK);
        CHECK(lk_password_verify(rec, pw, sizeof pw - 1) == 1 && lk_password_verify(rec, "x", 1) == 0);
        CHECK(lk_registry_set_actor(reg, "tool:user@host", "tool") == LK_OK);
        lk_registry_set_action(reg, "operators.create", "projects/my-project/operators/alice", NULL);
        CHECK(lk_registry_operator_create(reg, "alice", "my-project", LK_ROLE_VIEWER, pw, sizeof pw - 1, why,
                                          sizeof why) == LK_OK);
        CHECK(lk_registry_operator_passwd(reg, "alice", pw, sizeof pw - 1, why, sizeof why) == LK_OK);
        CHECK(lk_registry_operator_set_disabled(reg, "alice", 0, why, sizeof why) == LK_OK);
        CHECK(lk_registry_operator_signin(reg, "alice", pw, sizeof pw - 1, &op, why, sizeof why) == LK_OK);
        lk_reg_operator_free(&op);
        CHECK(lk_registry_operator_get(reg, "alice", &op) == LK_OK && op.role == LK_ROLE_VIEWER);
        lk_reg_operator_free(&op);
        n = 0;
        CHECK(lk_registry_operator_list(reg, NULL, count_op, &n, why, sizeof why) == LK_OK && n == 1);
        CHECK(lk_registry_operator_delete(reg, "alice", why, sizeof why) == LK_OK);
        CHECK(lk_registry_set_actor(reg, NULL, NULL) == LK_OK);
        memset(&aq, 0, sizeof aq);
        n = 0;
        CHECK(lk_registry_audit_list(reg, &aq, count_audit, &n, why, sizeof why) == LK_OK && n == 4);
    }

    /* lk_manifest.h: a manifest whose signature is no JWS is refused whole */
    {
        static const char m[] = "{\"latchkeyManifest\":1}\n";
        lk_manifest_report rep;
        CHECK(lk_manifest_import(reg, &name, m, sizeof m - 1, "x", 1, LK_MANIFEST_DRY_RUN, &rep, why, sizeof why) ==
              LK_ERR_REG_INVALID);
        CHECK(rep.imported == 0 && rep.nresults == 0 && why[0] != '\0');
        lk_manifest_report_free(&rep);
    }

    /* and away again */
    CHECK(lk_registry_delete_registry(reg, &name, why, sizeof why) == LK_ERR_REG_NOT_EMPTY);
    CHECK(lk_registry_delete_device(reg, &name, "device-42", why, sizeof why) == LK_OK);
    CHECK(lk_registry_delete_device(reg, &name, "device-43", why, sizeof why) == LK_OK);
    CHECK(lk_registry_delete_registry(reg, &name, why, sizeof why) == LK_OK);
    lk_registry_close(reg);

    /* backup, restore, schema status, migration on demand */
    {
        char db[4200], bk[4200], back[4200];
        int64_t v = 0, fv = 0, pv = 0, from = 0, to = 0;
        snprintf(db, sizeof db, "%s/registry.db", argv[1]);
        snprintf(bk, sizeof bk, "%s/registry-backup.db", argv[1]);
        snprintf(back, sizeof back, "%s/registry-restored.db", argv[1]);
        CHECK(lk_registry_backup(db, bk, &v, why, sizeof why) == LK_OK && v > 0);
        CHECK(lk_registry_backup(db, bk, NULL, why, sizeof why) == LK_ERR_REG_EXISTS);
        CHECK(lk_registry_restore(bk, back, 0, NULL, why, sizeof why) == LK_OK);
        CHECK(lk_registry_restore(bk, back, LK_REG_RESTORE_FORCE, NULL, why, sizeof why) == LK_OK);
        CHECK(lk_registry_schema_status(back, &fv, &pv, why, sizeof why) == LK_OK && fv == pv && fv == v);
        CHECK(lk_registry_migrate(back, &from, &to, why, sizeof why) == LK_OK && from == to);
    }

    if (failures) {
        fprintf(stderr, "use_registry: %d checks failed (last reason: %s)\n", failures, why);
        return 1;
    }
    printf("use_registry: every function of liblatchkey-registry called\n");
    return 0;
}
