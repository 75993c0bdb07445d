/*
 * test_registry_provision.c — the registry's provisioning part (schema 7,
 * lk_reg_provision.h): certificate chains and CRLs in the credential
 * checks, manifest signers, just-in-time registration, the key a device
 * last used, and the large import's checks outside its write transaction.
 * Every certificate and CRL is made here with OpenSSL, at test time.
 */
#include "lk_test_reg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"

#define T0 LK_TEST_T0
#define DAY 86400LL

static const lk_reg_name NAME = {"my-project", "us-central1", "reg1"};

/* The fixture, with the registry NAME created. */
static int setup(void **state)
{
    char why[256];
    lk_test_reg_setup(state);
    struct lk_test_reg *f = *state;
    assert_int_equal(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                                 LK_REG_STATE_UNSPECIFIED, why, sizeof why),
                     LK_OK);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Keys, certificates, CRLs                                            */

static long serial = 100;

static EVP_PKEY *gen_ec(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static char *bio_text(BIO *b)
{
    char *data, *s;
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(b);
    return s;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A key and its certificate (issuer NULL: self-signed). */
struct cert {
    EVP_PKEY *key;
    X509 *crt;
    char *pem;
};

static void cert_make(struct cert *c, const char *cn, const struct cert *issuer, int ca,
                      int64_t nb, int64_t na)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    c->key = gen_ec();
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"latchkey test",
                               -1, -1, 0);
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->crt) : name);
    X509_NAME_free(name);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb);
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na);
    X509_set_pubkey(x, c->key);
    if (ca) {
        add_ext(x, issuer ? issuer->crt : NULL, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer ? issuer->crt : NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    assert_true(X509_sign(x, issuer ? issuer->key : c->key, EVP_sha256()) > 0);
    c->crt = x;
    {
        BIO *b = BIO_new(BIO_s_mem());
        PEM_write_bio_X509(b, x);
        c->pem = bio_text(b);
    }
}

static void ca(struct cert *c, const char *cn, const struct cert *issuer)
{
    cert_make(c, cn, issuer, 1, T0 - DAY, T0 + 365 * DAY);
}

static void dev(struct cert *c, const char *cn, const struct cert *issuer)
{
    cert_make(c, cn, issuer, 0, T0 - DAY, T0 + 30 * DAY);
}

static void cert_free(struct cert *c)
{
    EVP_PKEY_free(c->key);
    X509_free(c->crt);
    free(c->pem);
}

/* A v2 CRL by issuer, issued at t, revoking revoked[0..n). */
static char *crl_make(const struct cert *issuer, int64_t t, const struct cert *const *revoked,
                      int n)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *tm = ASN1_TIME_new();
    BIO *b = BIO_new(BIO_s_mem());
    int i;
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->crt));
    ASN1_TIME_set(tm, (time_t)t);
    X509_CRL_set1_lastUpdate(crl, tm);
    ASN1_TIME_set(tm, (time_t)(t + 7 * DAY));
    X509_CRL_set1_nextUpdate(crl, tm);
    for (i = 0; i < n; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_TIME_set(tm, (time_t)t);
        X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoked[i]->crt));
        X509_REVOKED_set_revocationDate(r, tm);
        X509_CRL_add0_revoked(crl, r);
    }
    X509_CRL_sort(crl);
    assert_true(X509_CRL_sign(crl, issuer->key, EVP_sha256()) > 0);
    PEM_write_bio_X509_CRL(b, crl);
    ASN1_TIME_free(tm);
    X509_CRL_free(crl);
    return bio_text(b);
}

static char *cat2(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + (b ? strlen(b) : 0) + 1);
    strcpy(s, a);
    if (b)
        strcat(s, b);
    return s;
}

/* Create device id with cert_pem as its one credential, through chain. */
static lk_err create(struct lk_test_reg *f, const char *id, const char *cert_pem, const char *chain,
                     unsigned checks, char *why, size_t why_size)
{
    lk_reg_credential c = {LK_CRED_ES256_X509_PEM, (char *)cert_pem, 0};
    lk_reg_device_spec s;
    memset(&s, 0, sizeof s);
    s.id = id;
    s.creds = &c;
    s.ncreds = 1;
    s.chain_pem = chain;
    s.chain_len = chain ? strlen(chain) : 0;
    s.cert_checks = checks;
    return lk_registry_create_device(f->reg, &NAME, &s, NULL, why, why_size);
}

static unsigned add_ca(struct lk_test_reg *f, const char *pem)
{
    unsigned idx = 0;
    OK(lk_registry_add_cert(f->reg, &NAME, pem, strlen(pem), &idx, W));
    return idx;
}

static int64_t q1(struct lk_test_reg *f, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* ------------------------------------------------------------------ */
/* Chains                                                              */

static void test_chains(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, i1, i2, i3, other, d0, d1, d2, d3, dx;
    char *ch;

    ca(&root, "root", NULL);
    ca(&i1, "inter-1", &root);
    ca(&i2, "inter-2", &i1);
    ca(&i3, "inter-3", &i2);
    ca(&other, "other", NULL);
    dev(&d0, "dev0", &root);
    dev(&d1, "dev1", &i1);
    dev(&d2, "dev2", &i2);
    dev(&d3, "dev3", &i3);
    dev(&dx, "devx", &other);
    add_ca(f, root.pem);

    /* IoT Core's rule: directly by a registry CA */
    OK(create(f, "dev0", d0.pem, NULL, 0, W));
    /* through an intermediate only with the chain */
    REFUSE(LK_ERR_REG_CERT, "not signed by any of the registry's 1 CA",
           create(f, "dev1", d1.pem, NULL, 0, W));
    OK(create(f, "dev1", d1.pem, i1.pem, 0, W));
    ch = cat2(i2.pem, i1.pem);
    OK(create(f, "dev2", d2.pem, ch, 0, W));
    free(ch);
    /* an update adds a credential through the chain given with it
     * (key rotation of a device under an intermediate) */
    {
        struct cert d1n;
        lk_reg_device d;
        lk_reg_credential two[2];
        lk_reg_device_spec up;
        dev(&d1n, "dev1", &i1);
        memset(&d, 0, sizeof d);
        OK(lk_registry_get_device(f->reg, &NAME, "dev1", 0, &d, W));
        two[0] = d.creds[0];
        two[1].format = LK_CRED_ES256_X509_PEM;
        two[1].pem = d1n.pem;
        two[1].expires = 0;
        memset(&up, 0, sizeof up);
        up.id = "dev1";
        up.creds = two;
        up.ncreds = 2;
        REFUSE(LK_ERR_REG_CERT, "credential 1 is not signed",
               lk_registry_update_device(f->reg, &NAME, &up, LK_REG_SET_CREDS, W));
        up.chain_pem = i1.pem;
        up.chain_len = strlen(i1.pem);
        OK(lk_registry_update_device(f->reg, &NAME, &up, LK_REG_SET_CREDS, W));
        lk_reg_device_free(&d);
        cert_free(&d1n);
    }
    /* the chain may hold the registry CA too */
    ch = cat2(i1.pem, root.pem);
    OK(create(f, "dev1b", d1.pem, ch, 0, W));
    free(ch);
    /* three intermediates: more than LK_REG_CHAIN_MAX */
    ch = cat2(i3.pem, i2.pem);
    {
        char *ch3 = cat2(ch, i1.pem), *ch4 = cat2(ch3, root.pem);
        REFUSE(LK_ERR_REG_CERT, "within 2 intermediate CAs", create(f, "dev3", d3.pem, ch3, 0, W));
        REFUSE(LK_ERR_REG_LIMIT, "more than 3 certificates", create(f, "dev3", d3.pem, ch4, 0, W));
        free(ch3);
        free(ch4);
    }
    /* two given but the path needs a third: not chained */
    REFUSE(LK_ERR_REG_CERT, "does not chain", create(f, "dev3", d3.pem, ch, 0, W));
    free(ch);
    /* another CA, with or without a chain */
    REFUSE(LK_ERR_REG_CERT, "not signed by", create(f, "devx", dx.pem, NULL, 0, W));
    REFUSE(LK_ERR_REG_CERT, "does not chain", create(f, "devx", dx.pem, other.pem, 0, W));
    /* an intermediate from the chain is never an anchor by itself */
    REFUSE(LK_ERR_REG_INVALID, "does not parse", create(f, "dev1c", d1.pem, "junk", 0, W));
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), 4);

    cert_free(&root); cert_free(&i1); cert_free(&i2); cert_free(&i3); cert_free(&other);
    cert_free(&d0); cert_free(&d1); cert_free(&d2); cert_free(&d3); cert_free(&dx);
}

/* The customer's intermediate is the registry CA (IoT Core's usual set-up):
 * it is the anchor though it is not self-signed. */
static void test_intermediate_as_registry_ca(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, i1, i2, d1, d2;
    ca(&root, "root", NULL);
    ca(&i1, "customer-ca", &root);
    ca(&i2, "line-ca", &i1);
    dev(&d1, "dev1", &i1);
    dev(&d2, "dev2", &i2);
    add_ca(f, i1.pem);
    OK(create(f, "dev1", d1.pem, NULL, 0, W));
    OK(create(f, "dev2", d2.pem, i2.pem, 0, W));
    cert_free(&root); cert_free(&i1); cert_free(&i2); cert_free(&d1); cert_free(&d2);
}

static void test_dates(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, old, i1, iold, d_old_ca, d1, dexp;
    ca(&root, "root", NULL);
    cert_make(&old, "old-ca", NULL, 1, T0 - 400 * DAY, T0 + 10 * DAY);
    ca(&i1, "inter", &root);
    cert_make(&iold, "old-inter", &root, 1, T0 - 400 * DAY, T0 + 10 * DAY);
    dev(&d_old_ca, "d-old-ca", &old);
    dev(&d1, "dev1", &iold);
    cert_make(&dexp, "dev-exp", &i1, 0, T0 - 40 * DAY, T0 - DAY);
    add_ca(f, root.pem);
    add_ca(f, old.pem);
    f->now = T0 + 20 * DAY; /* old-ca and old-inter have expired */
    REFUSE(LK_ERR_REG_CERT, "expired", create(f, "d-old-ca", d_old_ca.pem, NULL, 0, W));
    REFUSE(LK_ERR_REG_CERT, "expired", create(f, "dev1", d1.pem, iold.pem, 0, W));
    f->now = T0;
    /* the leaf's own dates only when asked */
    OK(create(f, "dev-exp", dexp.pem, i1.pem, 0, W));
    OK(lk_registry_delete_device(f->reg, &NAME, "dev-exp", W));
    REFUSE(LK_ERR_REG_CERT, "is expired",
           create(f, "dev-exp", dexp.pem, i1.pem, LK_REG_CHECK_LEAF_DATES, W));
    cert_free(&root); cert_free(&old); cert_free(&i1); cert_free(&iold);
    cert_free(&d_old_ca); cert_free(&d1); cert_free(&dexp);
}

/* ------------------------------------------------------------------ */
/* CRLs                                                                */

static int count_crls(void *arg, const lk_reg_crl *c)
{
    ++*(int *)arg;
    assert_non_null(strstr(c->issuer, "CN="));
    return 0;
}

static int first_nrevoked(void *arg, const lk_reg_crl *c)
{
    *(uint64_t *)arg = c->nrevoked;
    return 0;
}

/* A CRL that revokes nothing has no revokedCertificates at all (OpenSSL:
 * no stack, whose count is -1): it lists 0, not 2^64-1. */
static void test_crl_empty(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, d0;
    const struct cert *rv[1];
    uint64_t nrev = 99;
    char *crl;

    ca(&root, "root", NULL);
    dev(&d0, "dev0", &root);
    add_ca(f, root.pem);
    crl = crl_make(&root, T0, NULL, 0);
    OK(lk_registry_add_crl(f->reg, &NAME, crl, strlen(crl), NULL, 0, W));
    OK(lk_registry_list_crls(f->reg, &NAME, first_nrevoked, &nrev, W));
    assert_int_equal(nrev, 0);
    assert_int_equal(q1(f, "SELECT nrevoked FROM registry_crls"), 0);
    free(crl);
    /* and a newer one with one entry: 1 */
    rv[0] = &d0;
    crl = crl_make(&root, T0 + 60, rv, 1);
    OK(lk_registry_add_crl(f->reg, &NAME, crl, strlen(crl), NULL, 0, W));
    OK(lk_registry_list_crls(f->reg, &NAME, first_nrevoked, &nrev, W));
    assert_int_equal(nrev, 1);
    free(crl);
    cert_free(&root);
    cert_free(&d0);
}

static void test_crls(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, i1, other, d0, d1, d2, d3;
    const struct cert *rv[2];
    char *crl_root, *crl_i1, *crl_i1_new, *crl_other, *crl_i1_old;
    int n;

    ca(&root, "root", NULL);
    ca(&i1, "inter", &root);
    ca(&other, "other", NULL);
    dev(&d0, "dev0", &root);
    dev(&d1, "dev1", &i1);
    dev(&d2, "dev2", &i1);
    dev(&d3, "dev3", &i1);
    add_ca(f, root.pem);

    /* a CRL whose issuer is not the registry's refused */
    rv[0] = &d0;
    crl_other = crl_make(&other, T0, rv, 1);
    REFUSE(LK_ERR_REG_CERT, "not signed by a registry CA",
           lk_registry_add_crl(f->reg, &NAME, crl_other, strlen(crl_other), NULL, 0, W));
    /* not a CRL */
    REFUSE(LK_ERR_REG_INVALID, "does not parse",
           lk_registry_add_crl(f->reg, &NAME, d0.pem, strlen(d0.pem), NULL, 0, W));

    /* the intermediate's CRL (issuer chain given) revokes d1 */
    rv[0] = &d1;
    crl_i1_old = crl_make(&i1, T0 - DAY, rv, 1);
    crl_i1 = crl_make(&i1, T0, rv, 1);
    REFUSE(LK_ERR_REG_CERT, "not signed by a registry CA",
           lk_registry_add_crl(f->reg, &NAME, crl_i1, strlen(crl_i1), NULL, 0, W));
    OK(lk_registry_add_crl(f->reg, &NAME, crl_i1, strlen(crl_i1), i1.pem, strlen(i1.pem), W));
    REFUSE(LK_ERR_REG_CERT, "credential 0", create(f, "dev1", d1.pem, i1.pem, 0, W));
    REFUSE(LK_ERR_REG_CERT, "revoked by", create(f, "dev1", d1.pem, i1.pem, 0, W));
    OK(create(f, "dev2", d2.pem, i1.pem, 0, W));
    /* an older CRL of the same issuer refused; a newer one replaces */
    REFUSE(LK_ERR_REG_INVALID, "older than the CRL held",
           lk_registry_add_crl(f->reg, &NAME, crl_i1_old, strlen(crl_i1_old), i1.pem,
                               strlen(i1.pem), W));
    rv[1] = &d3;
    crl_i1_new = crl_make(&i1, T0 + 60, rv, 2);
    f->now = T0 + 120;
    OK(lk_registry_add_crl(f->reg, &NAME, crl_i1_new, strlen(crl_i1_new), i1.pem, strlen(i1.pem),
                           W));
    n = 0;
    OK(lk_registry_list_crls(f->reg, &NAME, count_crls, &n, W));
    assert_int_equal(n, 1);
    REFUSE(LK_ERR_REG_CERT, "revoked by", create(f, "dev3", d3.pem, i1.pem, 0, W));
    /* the root's CRL revokes the intermediate: everything under it */
    rv[0] = &i1;
    crl_root = crl_make(&root, T0, rv, 1);
    OK(lk_registry_add_crl(f->reg, &NAME, crl_root, strlen(crl_root), NULL, 0, W));
    REFUSE(LK_ERR_REG_CERT, "depth 1 of its chain is revoked",
           create(f, "dev2b", d2.pem, i1.pem, 0, W));
    /* a CRL past its nextUpdate still revokes (failing closed) */
    f->now = T0 + 30 * DAY;
    REFUSE(LK_ERR_REG_CERT, "revoked", create(f, "dev2b", d2.pem, i1.pem, 0, W));
    f->now = T0 + 120;
    /* and the root itself still signs d0 */
    OK(create(f, "dev0", d0.pem, NULL, 0, W));
    OK(lk_registry_delete_crl(f->reg, &NAME, 0, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "no CRL 5", lk_registry_delete_crl(f->reg, &NAME, 5, W));

    free(crl_root); free(crl_i1); free(crl_i1_new); free(crl_other); free(crl_i1_old);
    cert_free(&root); cert_free(&i1); cert_free(&other);
    cert_free(&d0); cert_free(&d1); cert_free(&d2); cert_free(&d3);
}

/* ------------------------------------------------------------------ */
/* Manifest signers                                                    */

struct siglist {
    int n;
    char type[32];
    uint8_t fp[32];
};

static int siglist_cb(void *arg, const lk_reg_signer *s)
{
    struct siglist *l = arg;
    if (l->n++ == 0) {
        snprintf(l->type, sizeof l->type, "%s", s->key_type);
        memcpy(l->fp, s->fingerprint, 32);
    }
    return 0;
}

static char *pub_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(b, k);
    return bio_text(b);
}

static void test_signers(void **state)
{
    struct lk_test_reg *f = *state;
    EVP_PKEY *k = gen_ec(), *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char *pem = pub_pem(k), *pem384 = pub_pem(p384), *pem1024 = pub_pem(rsa1024), *priv;
    unsigned char *der = NULL;
    uint8_t want[32];
    struct siglist l;
    unsigned idx = 9, i;
    int dl;
    BIO *b = BIO_new(BIO_s_mem());

    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    priv = bio_text(b);
    OK(lk_registry_add_signer(f->reg, &NAME, "factory-1", pem, strlen(pem), &idx, W));
    assert_int_equal(idx, 0);
    REFUSE(LK_ERR_REG_EXISTS, "already manifest signer 0",
           lk_registry_add_signer(f->reg, &NAME, "factory-2", pem, strlen(pem), NULL, W));
    REFUSE(LK_ERR_REG_INVALID, "private key",
           lk_registry_add_signer(f->reg, &NAME, "factory-2", priv, strlen(priv), NULL, W));
    REFUSE(LK_ERR_REG_INVALID, "EC P-256",
           lk_registry_add_signer(f->reg, &NAME, "factory-2", pem384, strlen(pem384), NULL, W));
    REFUSE(LK_ERR_REG_INVALID, "RSA 1024",
           lk_registry_add_signer(f->reg, &NAME, "factory-2", pem1024, strlen(pem1024), NULL, W));
    REFUSE(LK_ERR_REG_INVALID, "signer label",
           lk_registry_add_signer(f->reg, &NAME, "bad label!", pem, strlen(pem), NULL, W));
    memset(&l, 0, sizeof l);
    OK(lk_registry_list_signers(f->reg, &NAME, siglist_cb, &l, W));
    assert_int_equal(l.n, 1);
    assert_string_equal(l.type, "EC P-256");
    dl = i2d_PUBKEY(k, &der);
    EVP_Digest(der, (size_t)dl, want, NULL, EVP_sha256(), NULL);
    assert_memory_equal(l.fp, want, 32);
    /* at most LK_REG_SIGNERS_MAX */
    for (i = 1; i < LK_REG_SIGNERS_MAX; i++) {
        EVP_PKEY *ki = gen_ec();
        char *pi = pub_pem(ki), lab[32];
        snprintf(lab, sizeof lab, "factory-%u", i + 1);
        OK(lk_registry_add_signer(f->reg, &NAME, lab, pi, strlen(pi), NULL, W));
        free(pi);
        EVP_PKEY_free(ki);
    }
    {
        EVP_PKEY *ki = gen_ec();
        char *pi = pub_pem(ki);
        REFUSE(LK_ERR_REG_LIMIT, "at most 10",
               lk_registry_add_signer(f->reg, &NAME, "one-more", pi, strlen(pi), NULL, W));
        REFUSE(LK_ERR_REG_EXISTS, "labelled 'factory-1'",
               lk_registry_add_signer(f->reg, &NAME, "factory-1", pi, strlen(pi), NULL, W));
        free(pi);
        EVP_PKEY_free(ki);
    }
    /* The key type is remembered per handle by the stored PEM: listed
     * again it is the same, and a PEM changed underneath is described anew. */
    {
        EVP_PKEY *r = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        char *pr = pub_pem(r), *sql;
        sqlite3 *db;
        for (i = 0; i < 2; i++) {
            memset(&l, 0, sizeof l);
            OK(lk_registry_list_signers(f->reg, &NAME, siglist_cb, &l, W));
            assert_int_equal(l.n, (int)LK_REG_SIGNERS_MAX);
            assert_string_equal(l.type, "EC P-256");
        }
        assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
        sql = sqlite3_mprintf("UPDATE registry_signers SET pem = %Q WHERE label = 'factory-1'", pr);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_free(sql);
        sqlite3_close(db);
        memset(&l, 0, sizeof l);
        OK(lk_registry_list_signers(f->reg, &NAME, siglist_cb, &l, W));
        assert_string_equal(l.type, "RSA 2048");
        free(pr);
        EVP_PKEY_free(r);
    }
    OK(lk_registry_delete_signer(f->reg, &NAME, 0, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "no manifest signer 9",
           lk_registry_delete_signer(f->reg, &NAME, 9, W));
    OPENSSL_free(der);
    free(pem); free(pem384); free(pem1024); free(priv);
    EVP_PKEY_free(k); EVP_PKEY_free(p384); EVP_PKEY_free(rsa1024);
}

/* ------------------------------------------------------------------ */
/* Just-in-time registration                                           */

/* A device certificate by issuer whose subject holds the CN bytes cn[0..n)
 * (a NUL inside allowed), twice when twice. */
static char *odd_cn_cert(const struct cert *issuer, const char *cn, int n, int twice)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    EVP_PKEY *k = gen_ec();
    BIO *b = BIO_new(BIO_s_mem());
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING, (const unsigned char *)cn,
                               n, -1, 0);
    if (twice)
        X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
                                   (const unsigned char *)cn, n, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, X509_get_subject_name(issuer->crt));
    X509_NAME_free(name);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(T0 - DAY));
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(T0 + DAY));
    X509_set_pubkey(x, k);
    assert_true(X509_sign(x, issuer->key, EVP_sha256()) > 0);
    PEM_write_bio_X509(b, x);
    X509_free(x);
    EVP_PKEY_free(k);
    return bio_text(b);
}

static int count_changes(void *arg, const lk_reg_change *c)
{
    if (c->kind == LK_CHANGE_DEVICE)
        ++*(int *)arg;
    return 0;
}

static int collect_kinds(void *arg, const lk_reg_change *c)
{
    int *k = arg;
    if (k[0] < 7)
        k[++k[0]] = (int)c->kind;
    return 0;
}

/* A JIT setting change reaches the broker and latchkeyd through the feed (a
 * refused one appends nothing). */
static void test_jit_setting_in_feed(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_jit jit = {1, 5, 0};
    lk_reg_name nope = {"my-project", "us-central1", "nope"};
    int64_t since = 0;
    int kinds[8] = {0};

    OK(lk_registry_change_head(f->reg, &since));
    OK(lk_registry_set_jit(f->reg, &NAME, &jit, W));
    OK(lk_registry_changes(f->reg, &since, collect_kinds, kinds));
    assert_int_equal(kinds[0], 1);
    assert_int_equal(kinds[1], LK_CHANGE_REGISTRY);
    jit.max_devices = LK_REG_JIT_MAX_LIMIT + 1;
    REFUSE(LK_ERR_REG_LIMIT, "at most", lk_registry_set_jit(f->reg, &NAME, &jit, W));
    jit.max_devices = 0;
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not exist", lk_registry_set_jit(f->reg, &nope, &jit, W));
    jit.enabled = 0;
    OK(lk_registry_set_jit(f->reg, &NAME, &jit, W));
    kinds[0] = 0;
    OK(lk_registry_changes(f->reg, &since, collect_kinds, kinds));
    assert_int_equal(kinds[0], 1);     /* the two refusals wrote none */
    assert_int_equal(kinds[1], LK_CHANGE_REGISTRY);
}

static void test_jit(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, i1, other, d1, d2, d3, dother, dexp, drev;
    const struct cert *rv[1];
    lk_reg_jit jit = {0, 0, 0};
    lk_reg_device d;
    uint64_t num = 0;
    char *crl;
    int changes = 0;

    ca(&root, "root", NULL);
    ca(&i1, "inter", &root);
    ca(&other, "other", NULL);
    dev(&d1, "dev-1", &i1);
    dev(&d2, "dev-2", &root);
    dev(&d3, "dev-3", &root);
    dev(&dother, "dev-9", &other);
    cert_make(&dexp, "dev-exp", &root, 0, T0 - 40 * DAY, T0 - DAY);
    dev(&drev, "dev-rev", &root);
    add_ca(f, root.pem);

    /* off: as for an unknown device */
    REFUSE(LK_ERR_REG_NOT_FOUND, "does not register devices just in time",
           lk_registry_jit_register(f->reg, &NAME, "dev-1", d1.pem, strlen(d1.pem), i1.pem,
                                    strlen(i1.pem), &num, W));
    OK(lk_registry_get_jit(f->reg, &NAME, &jit, W));
    assert_int_equal(jit.enabled, 0);
    assert_int_equal(jit.max_devices, LK_REG_JIT_MAX_DEFAULT);
    jit.enabled = 1;
    jit.max_devices = LK_REG_JIT_MAX_LIMIT + 1;
    REFUSE(LK_ERR_REG_LIMIT, "at most", lk_registry_set_jit(f->reg, &NAME, &jit, W));
    jit.max_devices = 3;
    OK(lk_registry_set_jit(f->reg, &NAME, &jit, W));

    /* refusals that write nothing */
    REFUSE(LK_ERR_REG_CERT, "names another device",
           lk_registry_jit_register(f->reg, &NAME, "dev-2", d1.pem, strlen(d1.pem), i1.pem,
                                    strlen(i1.pem), &num, W));
    {
        char *nul = odd_cn_cert(&root, "dev-5\0zz", 8, 0), *two = odd_cn_cert(&root, "dev-5", 5, 1);
        REFUSE(LK_ERR_REG_CERT, "names another device",
               lk_registry_jit_register(f->reg, &NAME, "dev-5", nul, strlen(nul), NULL, 0, &num,
                                        W));
        REFUSE(LK_ERR_REG_CERT, "2 common names",
               lk_registry_jit_register(f->reg, &NAME, "dev-5", two, strlen(two), NULL, 0, &num,
                                        W));
        free(nul);
        free(two);
    }
    REFUSE(LK_ERR_REG_CERT, "does not chain",
           lk_registry_jit_register(f->reg, &NAME, "dev-9", dother.pem, strlen(dother.pem),
                                    other.pem, strlen(other.pem), &num, W));
    REFUSE(LK_ERR_REG_CERT, "not signed by",
           lk_registry_jit_register(f->reg, &NAME, "dev-1", d1.pem, strlen(d1.pem), NULL, 0,
                                    &num, W));
    REFUSE(LK_ERR_REG_CERT, "is expired",
           lk_registry_jit_register(f->reg, &NAME, "dev-exp", dexp.pem, strlen(dexp.pem), NULL,
                                    0, &num, W));
    rv[0] = &drev;
    crl = crl_make(&root, T0, rv, 1);
    OK(lk_registry_add_crl(f->reg, &NAME, crl, strlen(crl), NULL, 0, W));
    REFUSE(LK_ERR_REG_CERT, "revoked",
           lk_registry_jit_register(f->reg, &NAME, "dev-rev", drev.pem, strlen(drev.pem), NULL,
                                    0, &num, W));
    assert_int_equal(num, 0);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), 0);
    assert_int_equal(q1(f, "SELECT count(*) FROM jit_certs"), 0);
    assert_int_equal(q1(f, "SELECT jit_registered FROM registries"), 0);

    /* registered: jit = 1, the certificate its credential, in the feed */
    OK(lk_registry_jit_register(f->reg, &NAME, "dev-1", d1.pem, strlen(d1.pem), i1.pem,
                                strlen(i1.pem), &num, W));
    assert_true(num != 0);
    memset(&d, 0, sizeof d);
    OK(lk_registry_get_device(f->reg, &NAME, "dev-1", 0, &d, W));
    assert_int_equal(d.jit, 1);
    assert_int_equal(d.ncreds, 1);
    assert_int_equal(d.creds[0].format, LK_CRED_ES256_X509_PEM);
    assert_int_equal(d.creds[0].expires, T0 + 30 * DAY);
    assert_string_equal(d.creds[0].pem, d1.pem);
    lk_reg_device_free(&d);
    {
        int64_t since = 0;
        assert_int_equal(lk_registry_changes(f->reg, &since, count_changes, &changes), LK_OK);
    }
    assert_int_equal(changes, 1);          /* LK_CHANGE_DEVICE; set_jit's are LK_CHANGE_REGISTRY */
    /* again: the device exists; the certificate registered it already */
    REFUSE(LK_ERR_REG_EXISTS, "registered dev-1 already",
           lk_registry_jit_register(f->reg, &NAME, "dev-1", d1.pem, strlen(d1.pem), i1.pem,
                                    strlen(i1.pem), &num, W));
    /* after its deletion too: one certificate, one device, ever */
    OK(lk_registry_delete_device(f->reg, &NAME, "dev-1", W));
    REFUSE(LK_ERR_REG_EXISTS, "registered dev-1 already",
           lk_registry_jit_register(f->reg, &NAME, "dev-1", d1.pem, strlen(d1.pem), i1.pem,
                                    strlen(i1.pem), &num, W));
    /* the cap counts the deleted one: 3 -> dev-2, then dev-3 is the 3rd, a 4th refused */
    OK(lk_registry_jit_register(f->reg, &NAME, "dev-2", d2.pem, strlen(d2.pem), NULL, 0, &num,
                                W));
    jit.max_devices = 2;
    OK(lk_registry_set_jit(f->reg, &NAME, &jit, W));
    REFUSE(LK_ERR_REG_LIMIT, "its limit",
           lk_registry_jit_register(f->reg, &NAME, "dev-3", d3.pem, strlen(d3.pem), NULL, 0,
                                    &num, W));
    OK(lk_registry_get_jit(f->reg, &NAME, &jit, W));
    assert_int_equal(jit.registered, 2);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), 1);
    /* the broker's handle (LK_REG_READONLY) registers; a NOWRITE one may not */
    {
        lk_registry *ro = NULL;
        jit.max_devices = 3;
        OK(lk_registry_set_jit(f->reg, &NAME, &jit, W));
        OK(lk_registry_open(f->path, LK_REG_READONLY | LK_REG_NOWRITE, &ro, W));
        lk_registry__set_clock(ro, lk_test_reg_clock, &f->now);
        REFUSE(LK_ERR_STATE, "without write access",
               lk_registry_jit_register(ro, &NAME, "dev-3", d3.pem, strlen(d3.pem), NULL, 0,
                                        &num, W));
        lk_registry_close(ro);
        OK(lk_registry_open(f->path, LK_REG_READONLY, &ro, W));
        lk_registry__set_clock(ro, lk_test_reg_clock, &f->now);
        OK(lk_registry_jit_register(ro, &NAME, "dev-3", d3.pem, strlen(d3.pem), NULL, 0, &num,
                                    W));
        lk_registry_close(ro);
    }

    free(crl);
    cert_free(&root); cert_free(&i1); cert_free(&other); cert_free(&d1); cert_free(&d2);
    cert_free(&d3); cert_free(&dother); cert_free(&dexp); cert_free(&drev);
}

/* ------------------------------------------------------------------ */
/* The key a device last used                                         */

static void test_last_key(void **state)
{
    struct lk_test_reg *f = *state;
    lk_reg_credential c = {LK_CRED_ES256_PEM, NULL, 0};
    lk_reg_device_spec s;
    lk_reg_activity a;
    lk_reg_device d;
    uint8_t k1[32], k2[32], zero[32];
    uint64_t num = 0;
    EVP_PKEY *k = gen_ec();

    c.pem = pub_pem(k);
    memset(&s, 0, sizeof s);
    s.id = "dev-1";
    s.creds = &c;
    s.ncreds = 1;
    OK(lk_registry_create_device(f->reg, &NAME, &s, &num, W));
    memset(k1, 0x11, 32);
    memset(k2, 0x22, 32);
    memset(zero, 0, 32);
    memset(&d, 0, sizeof d);
    OK(lk_registry_get_device(f->reg, &NAME, "dev-1", 0, &d, W));
    assert_memory_equal(d.last_key, zero, 32);
    assert_int_equal(d.last_key_time, 0);
    assert_int_equal(d.jit, 0);
    lk_reg_device_free(&d);

    memset(&a, 0, sizeof a);
    a.num_id = num;
    a.last_key = k1;
    a.last_key_time = T0 + 10;
    assert_int_equal(lk_registry_record_activity(f->reg, &a, 1), LK_OK);
    a.last_key = k2; /* older: not taken */
    a.last_key_time = T0 + 5;
    assert_int_equal(lk_registry_record_activity(f->reg, &a, 1), LK_OK);
    a.last_key = NULL; /* other activity leaves it */
    a.last_key_time = 0;
    a.last_event = T0 + 20;
    assert_int_equal(lk_registry_record_activity(f->reg, &a, 1), LK_OK);
    a.last_key = k1; /* a key without a time is refused */
    assert_int_equal(lk_registry_record_activity(f->reg, &a, 1), LK_ERR_ARG);
    OK(lk_registry_get_device(f->reg, &NAME, "dev-1", 0, &d, W));
    assert_memory_equal(d.last_key, k1, 32);
    assert_int_equal(d.last_key_time, T0 + 10);
    lk_reg_device_free(&d);
    a.last_key = k2;
    a.last_key_time = T0 + 30;
    a.last_event = 0;
    assert_int_equal(lk_registry_record_activity(f->reg, &a, 1), LK_OK);
    OK(lk_registry_get_device(f->reg, &NAME, "dev-1", 0, &d, W));
    assert_memory_equal(d.last_key, k2, 32);
    assert_int_equal(d.last_key_time, T0 + 30);
    lk_reg_device_free(&d);
    free(c.pem);
    EVP_PKEY_free(k);
}

/* ------------------------------------------------------------------ */
/* Large imports: checks outside the write transaction                 */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n device certificates "<prefix>-<i>" signed by ca, one shared key (the
 * checks cost the same: a signature to verify per certificate). */
static char **many_certs(const struct cert *ca, const char *prefix, int n)
{
    char **pems = calloc((size_t)n, sizeof *pems);
    EVP_PKEY *k = gen_ec();
    int i;
    for (i = 0; i < n; i++) {
        X509 *x = X509_new();
        X509_NAME *name = X509_NAME_new();
        char cn[64];
        BIO *b = BIO_new(BIO_s_mem());
        snprintf(cn, sizeof cn, "%s-%d", prefix, i);
        X509_set_version(x, X509_VERSION_3);
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
        X509_set_subject_name(x, name);
        X509_set_issuer_name(x, X509_get_subject_name(ca->crt));
        X509_NAME_free(name);
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(T0 - DAY));
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(T0 + 365 * DAY));
        X509_set_pubkey(x, k);
        assert_true(X509_sign(x, ca->key, EVP_sha256()) > 0);
        PEM_write_bio_X509(b, x);
        pems[i] = bio_text(b);
        X509_free(x);
    }
    EVP_PKEY_free(k);
    return pems;
}

static void spec_of(lk_reg_device_spec *s, lk_reg_credential *c, char *id, size_t id_size,
                    const char *prefix, int i, char *pem)
{
    snprintf(id, id_size, "%s-%d", prefix, i);
    c->format = LK_CRED_ES256_X509_PEM;
    c->pem = pem;
    c->expires = 0;
    memset(s, 0, sizeof *s);
    s->id = id;
    s->creds = c;
    s->ncreds = 1;
}

static double last_commit; /* seconds import_all's commit took */

/* Import pems as devices "<prefix>-<i>"; check them first when check. The
 * seconds the write transaction lasted (import_begin to commit). */
static double import_all(struct lk_test_reg *f, lk_registry *r, const char *prefix, char **pems, int n,
                         int check)
{
    lk_reg_device_spec s;
    lk_reg_credential c;
    char id[64];
    double t;
    int i;
    for (i = 0; check && i < n; i++) {
        spec_of(&s, &c, id, sizeof id, prefix, i, pems[i]);
        OK(lk_registry_import_check(r, &NAME, &s, W));
    }
    t = mono();
    OK(lk_registry_import_begin(r, &NAME, W));
    for (i = 0; i < n; i++) {
        spec_of(&s, &c, id, sizeof id, prefix, i, pems[i]);
        OK(lk_registry_import_add(r, &s, NULL, W));
    }
    last_commit = mono();
    OK(lk_registry_import_commit(r, W));
    last_commit = mono() - last_commit;
    (void)f;
    return mono() - t;
}

static void free_pems(char **pems, int n)
{
    int i;
    for (i = 0; i < n; i++)
        free(pems[i]);
    free(pems);
}

static int bench_n(void)
{
    const char *e = getenv("LK_IMPORT_DEVICES");
    return e != NULL && atoi(e) > 0 ? atoi(e) : 400;
}

static void test_import_check(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, other;
    int n = bench_n();
    char **a, **b, **bad;
    double t0, t_plain, t_check, t_tx;
    lk_reg_device_spec s;
    lk_reg_credential c;
    char id[64];
    unsigned idx;

    ca(&root, "root", NULL);
    ca(&other, "other", NULL);
    add_ca(f, root.pem);
    a = many_certs(&root, "plain", n);
    b = many_certs(&root, "checked", n);
    bad = many_certs(&other, "bad", 1);

    /* LK_IMPORT_UNCHECKED=0: measure only the checked import (a large n) */
    t_plain = getenv("LK_IMPORT_UNCHECKED") != NULL && atoi(getenv("LK_IMPORT_UNCHECKED")) == 0
                  ? 0
                  : import_all(f, f->reg, "plain", a, n, 0);
    t0 = mono();
    t_tx = import_all(f, f->reg, "checked", b, n, 1);
    t_check = mono() - t0 - t_tx;
    print_message("import of %d certificate devices: write transaction %.3f s unchecked, "
                  "%.3f s after import_check (of which the commit %.3f s; the checks took %.3f "
                  "s outside it)\n", n, t_plain, t_tx, last_commit, t_check);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), t_plain > 0 ? 2 * n : n);

    /* A refused check is not remembered; import_add still refuses it. */
    spec_of(&s, &c, id, sizeof id, "bad", 0, bad[0]);
    REFUSE(LK_ERR_REG_CERT, "not signed by", lk_registry_import_check(f->reg, &NAME, &s, W));
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    REFUSE(LK_ERR_REG_CERT, "not signed by", lk_registry_import_add(f->reg, &s, NULL, W));
    lk_registry_import_abort(f->reg);

    /* A verdict serves only the trust set it was reached with: checked
     * while "other" was a registry CA, imported after it was removed. */
    idx = add_ca(f, other.pem);
    OK(lk_registry_import_check(f->reg, &NAME, &s, W));
    OK(lk_registry_delete_cert(f->reg, &NAME, idx, W));
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    REFUSE(LK_ERR_REG_CERT, "not signed by", lk_registry_import_add(f->reg, &s, NULL, W));
    lk_registry_import_abort(f->reg);

    /* With the same set, a checked spec is not verified again: checked
     * before root expired, imported after (the clock moved between). */
    {
        char **late = many_certs(&root, "late", 2);
        lk_reg_device_spec s2;
        lk_reg_credential c2;
        char id2[64];
        spec_of(&s, &c, id, sizeof id, "late", 0, late[0]);
        spec_of(&s2, &c2, id2, sizeof id2, "late", 1, late[1]);
        OK(lk_registry_import_check(f->reg, &NAME, &s, W));
        f->now = T0 + 400 * DAY;
        OK(lk_registry_import_begin(f->reg, &NAME, W));
        OK(lk_registry_import_add(f->reg, &s, NULL, W));
        REFUSE(LK_ERR_REG_CERT, "expired", lk_registry_import_add(f->reg, &s2, NULL, W));
        OK(lk_registry_import_commit(f->reg, W));
        /* and the memory went with the import */
        OK(lk_registry_delete_device(f->reg, &NAME, "late-0", W));
        OK(lk_registry_import_begin(f->reg, &NAME, W));
        REFUSE(LK_ERR_REG_CERT, "expired", lk_registry_import_add(f->reg, &s, NULL, W));
        lk_registry_import_abort(f->reg);
        f->now = T0;
        free_pems(late, 2);
    }
    /* A checked device whose id is taken is refused alone; the import goes on. */
    {
        char **dup = many_certs(&root, "checked", 2), **fresh = many_certs(&root, "fresh", 1);
        lk_reg_device_spec s2;
        lk_reg_credential c2;
        char id2[64];
        spec_of(&s, &c, id, sizeof id, "checked", 1, dup[1]);
        spec_of(&s2, &c2, id2, sizeof id2, "fresh", 0, fresh[0]);
        OK(lk_registry_import_check(f->reg, &NAME, &s, W));
        OK(lk_registry_import_check(f->reg, &NAME, &s2, W));
        OK(lk_registry_import_begin(f->reg, &NAME, W));
        REFUSE(LK_ERR_REG_EXISTS, "already exists", lk_registry_import_add(f->reg, &s, NULL, W));
        OK(lk_registry_import_add(f->reg, &s2, NULL, W));
        OK(lk_registry_import_commit(f->reg, W));
        assert_int_equal(q1(f, "SELECT count(*) FROM devices WHERE device_id = 'fresh-0'"), 1);
        free_pems(dup, 2);
        free_pems(fresh, 1);
    }
    /* Not during an import. */
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    REFUSE(LK_ERR_STATE, "", lk_registry_import_check(f->reg, &NAME, &s, W));
    lk_registry_import_abort(f->reg);

    free_pems(a, n);
    free_pems(b, n);
    free_pems(bad, 1);
    cert_free(&root);
    cert_free(&other);
}

/* The broker's activity, written from another handle while an import holds
 * the write lock, waits and then lands: nothing is lost. */
struct importer {
    struct lk_test_reg *f;
    lk_registry *r;
    char **pems;
    int n;
    volatile int begun;
    double tx;
};

static void *import_thread(void *arg)
{
    struct importer *im = arg;
    lk_reg_device_spec s;
    lk_reg_credential c;
    char id[64];
    double t = mono();
    int i;
    OK(lk_registry_import_begin(im->r, &NAME, W));
    im->begun = 1;
    for (i = 0; i < im->n; i++) {
        spec_of(&s, &c, id, sizeof id, "bulk", i, im->pems[i]);
        OK(lk_registry_import_add(im->r, &s, NULL, W));
    }
    usleep(200000); /* hold the lock a while longer */
    OK(lk_registry_import_commit(im->r, W));
    im->tx = mono() - t;
    return NULL;
}

/* lk_registry_import_check_many: the verdicts of lk_registry_import_check,
 * in order, from worker threads; the passed ones remembered. */
static void test_import_check_many(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, other;
    enum { N = 200 };
    char **a, **bad, *whys[N], ids[N][64];
    lk_reg_device_spec specs[N];
    lk_reg_credential creds[N];
    lk_err errs[N];
    unsigned threads[] = {1, 2, 0};
    int i, t;

    ca(&root, "root", NULL);
    ca(&other, "other", NULL);
    add_ca(f, root.pem);
    a = many_certs(&root, "many", N);
    bad = many_certs(&other, "bad", 1);
    for (t = 0; t < 3; t++) {
        for (i = 0; i < N; i++)
            spec_of(&specs[i], &creds[i], ids[i], sizeof ids[i], "many", i, i % 7 == 3 ? bad[0] : a[i]);
        specs[5].id = "-not-an-id"; /* refused before any certificate */
        OK(lk_registry_import_check_many(f->reg, &NAME, specs, N, threads[t], errs, whys, W));
        for (i = 0; i < N; i++) {
            if (i == 5) {
                assert_int_equal(errs[i], LK_ERR_REG_INVALID);
                assert_non_null(whys[i]);
            } else if (i % 7 == 3) {
                assert_int_equal(errs[i], LK_ERR_REG_CERT);
                assert_non_null(strstr(whys[i], "not signed by"));
            } else {
                assert_int_equal(errs[i], LK_OK);
                assert_null(whys[i]);
            }
            free(whys[i]);
        }
    }
    /* each verdict equals the one-at-a-time check's */
    REFUSE(LK_ERR_REG_CERT, "not signed by", lk_registry_import_check(f->reg, &NAME, &specs[3], W));
    /* an open import: refused, nothing checked */
    OK(lk_registry_import_begin(f->reg, &NAME, W));
    REFUSE(LK_ERR_STATE, "import", lk_registry_import_check_many(f->reg, &NAME, specs, N, 0, errs, whys, W));
    for (i = 0; i < N; i++)
        assert_null(whys[i]);
    lk_registry_import_abort(f->reg);
    /* the passed ones are remembered: the import adds them (a refused one still refused) */
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    for (i = 0; i < N; i++) {
        if (i == 5)
            continue;
        if (i % 7 == 3)
            REFUSE(LK_ERR_REG_CERT, "not signed by", lk_registry_import_add(f->reg, &specs[i], NULL, W));
        else
            OK(lk_registry_import_add(f->reg, &specs[i], NULL, W));
    }
    OK(lk_registry_import_commit(f->reg, W));
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), N - 1 - (N + 3) / 7);
    free_pems(a, N);
    free_pems(bad, 1);
    cert_free(&root);
    cert_free(&other);
}

static void test_import_and_activity(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root;
    struct importer im;
    lk_registry *broker;
    lk_reg_activity a;
    lk_reg_device_spec s;
    lk_reg_credential c;
    lk_reg_device d;
    pthread_t th;
    uint64_t num = 0;
    char id[64];
    char **one;
    double t, waited;
    int i;

    ca(&root, "root", NULL);
    add_ca(f, root.pem);
    one = many_certs(&root, "early", 1);
    spec_of(&s, &c, id, sizeof id, "early", 0, one[0]);
    OK(lk_registry_create_device(f->reg, &NAME, &s, &num, W));
    memset(&im, 0, sizeof im);
    im.f = f;
    im.r = f->reg;
    im.n = bench_n();
    im.pems = many_certs(&root, "bulk", im.n);
    for (i = 0; i < im.n; i++) {
        spec_of(&s, &c, id, sizeof id, "bulk", i, im.pems[i]);
        OK(lk_registry_import_check(f->reg, &NAME, &s, W));
    }
    broker = lk_test_reg_open(f, LK_REG_CREATE);
    lk_registry_set_busy_timeout(broker, 30000);
    assert_int_equal(pthread_create(&th, NULL, import_thread, &im), 0);
    while (!im.begun)
        usleep(1000);
    memset(&a, 0, sizeof a);
    a.num_id = num;
    a.last_event = T0 + 50;
    t = mono();
    assert_int_equal(lk_registry_record_activity(broker, &a, 1), LK_OK);
    waited = mono() - t;
    assert_int_equal(pthread_join(th, NULL), 0);
    print_message("activity waited %.3f s for an import of %d devices (its transaction: %.3f "
                  "s)\n", waited, im.n, im.tx);
    assert_true(waited > 0.1); /* it did wait for the lock ... */
    memset(&d, 0, sizeof d);
    OK(lk_registry_get_device(f->reg, &NAME, "early-0", 0, &d, W));
    assert_int_equal(d.last_event, T0 + 50); /* ... and landed */
    lk_reg_device_free(&d);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), im.n + 1);
    lk_registry_close(broker);
    free_pems(im.pems, im.n);
    free_pems(one, 1);
    cert_free(&root);
}

/* A staged import: the broker's writes get in between its chunks, nothing
 * is visible before the switch, and a switch that would break a rule
 * writes nothing and leaves no staging registry. */
static int count_devs(void *arg, const lk_reg_device *d)
{
    (void)d;
    ++*(int *)arg;
    return 0;
}

static void stage_some(struct lk_test_reg *f, const char *prefix, char **pems, int n)
{
    lk_reg_device_spec s;
    lk_reg_credential c;
    char id[64];
    int i;
    for (i = 0; i < n; i++) {
        spec_of(&s, &c, id, sizeof id, prefix, i, pems[i]);
        OK(lk_registry_import_add(f->reg, &s, NULL, W));
    }
}

static void test_import_staged(void **state)
{
    struct lk_test_reg *f = *state;
    struct cert root, other;
    int n = bench_n() < 1000 ? 1000 : bench_n(), i, seen, changes = 0;
    char **pems, **cf, **one;
    lk_registry *broker;
    lk_reg_activity a;
    lk_reg_device_spec s;
    lk_reg_credential c;
    char id[64];
    uint64_t num = 0;
    int64_t since;
    double t, worst = 0, tx;

    ca(&root, "root", NULL);
    ca(&other, "other", NULL);
    add_ca(f, root.pem);
    pems = many_certs(&root, "st", n);
    cf = many_certs(&root, "cf", 500);
    one = many_certs(&root, "early", 1);
    spec_of(&s, &c, id, sizeof id, "early", 0, one[0]);
    OK(lk_registry_create_device(f->reg, &NAME, &s, &num, W));
    assert_int_equal(lk_registry_change_head(f->reg, &since), LK_OK);
    for (i = 0; i < n; i++) {
        spec_of(&s, &c, id, sizeof id, "st", i, pems[i]);
        OK(lk_registry_import_check(f->reg, &NAME, &s, W));
    }
    broker = lk_test_reg_open(f, LK_REG_CREATE);
    lk_registry_set_busy_timeout(broker, 200); /* the plugin's */

    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    for (i = 0; i < n; i++) {
        spec_of(&s, &c, id, sizeof id, "st", i, pems[i]);
        OK(lk_registry_import_add(f->reg, &s, NULL, W));
        if ((i + 1) % 500 == 0) { /* between chunks: the broker writes, sees nothing staged */
            memset(&a, 0, sizeof a);
            a.num_id = num;
            a.last_event = T0 + i;
            t = mono();
            assert_int_equal(lk_registry_record_activity(broker, &a, 1), LK_OK);
            t = mono() - t;
            worst = t > worst ? t : worst;
            seen = 0;
            OK(lk_registry_list_devices(broker, &NAME, count_devs, &seen, W));
            assert_int_equal(seen, 1);
        }
    }
    tx = mono();
    OK(lk_registry_import_commit(f->reg, W));
    tx = mono() - tx;
    print_message("staged import of %d devices: the switch held the lock %.3f s; the broker's "
                  "writes between chunks waited at most %.3f s\n", n, tx, worst);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), n + 1);
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 1);
    assert_int_equal(lk_registry_changes(f->reg, &since, count_changes, &changes), LK_OK);
    assert_int_equal(changes, n);
    {
        lk_reg_device d;
        memset(&d, 0, sizeof d);
        OK(lk_registry_get_device(f->reg, &NAME, "st-0", 0, &d, W));
        assert_string_equal(d.registry, "reg1");
        lk_reg_device_free(&d);
    }
    /* a staged id that exists already is refused at once */
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    spec_of(&s, &c, id, sizeof id, "st", 0, pems[0]);
    REFUSE(LK_ERR_REG_EXISTS, "already exists", lk_registry_import_add(f->reg, &s, NULL, W));
    lk_registry_import_abort(f->reg);

    /* created meanwhile: the switch writes nothing */
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    stage_some(f, "cf", cf, 500);
    spec_of(&s, &c, id, sizeof id, "cf", 7, cf[7]);
    OK(lk_registry_create_device(broker, &NAME, &s, NULL, W));
    REFUSE(LK_ERR_REG_EXISTS, "created in", lk_registry_import_commit(f->reg, W));
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), n + 2);
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 1);
    OK(lk_registry_delete_device(f->reg, &NAME, "cf-7", W));

    /* the trust set changed meanwhile: nothing written */
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    stage_some(f, "cf", cf, 500);
    {
        unsigned idx;
        OK(lk_registry_add_cert(broker, &NAME, other.pem, strlen(other.pem), &idx, W));
    }
    REFUSE(LK_ERR_STATE, "changed during the import", lk_registry_import_commit(f->reg, W));
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), n + 1);
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 1);

    /* abort: nothing, no staging registry */
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    stage_some(f, "cf", cf, 10);
    lk_registry_import_abort(f->reg);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), n + 1);
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 1);
    /* bindings are not staged */
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W));
    REFUSE(LK_ERR_STATE, "devices only", lk_registry_import_bind(f->reg, "st-1", "st-2", W));
    lk_registry_import_abort(f->reg);

    /* a staged import whose process died: its staging registry stays,
     * invisible, until a staged import of the registry finds it idle for
     * over 600 s (a live one is left alone) */
    for (i = 0; i < 2; i++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            lk_registry *crash = lk_test_reg_open(f, LK_REG_CREATE);
            lk_registry *keep = f->reg;
            f->reg = crash;
            if (lk_registry_import_begin_staged(crash, &NAME, NULL, 0) != LK_OK)
                _exit(1);
            stage_some(f, "cf", cf, 500); /* one chunk written */
            f->reg = keep;
            _exit(0); /* no commit, no abort, no close: a crash */
        }
        int st = -1;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_int_equal(st, 0);
        f->now += 300;
    }
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 3);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), n + 1 + 1000);
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W)); /* 600 s, 300 s idle: both live */
    lk_registry_import_abort(f->reg);
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 3);
    f->now += 301;
    OK(lk_registry_import_begin_staged(f->reg, &NAME, W)); /* 901 s: swept; 601 s: swept */
    lk_registry_import_abort(f->reg);
    assert_int_equal(q1(f, "SELECT count(*) FROM registries"), 1);
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), n + 1);

    lk_registry_close(broker);
    free_pems(pems, n);
    free_pems(cf, 500);
    free_pems(one, 1);
    cert_free(&root);
    cert_free(&other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chains, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_intermediate_as_registry_ca, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_dates, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_crls, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_signers, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_crl_empty, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_jit, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_jit_setting_in_feed, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_last_key, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_import_check, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_import_and_activity, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_import_staged, setup, lk_test_reg_teardown),
        cmocka_unit_test_setup_teardown(test_import_check_many, setup, lk_test_reg_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
