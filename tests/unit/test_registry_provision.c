/*
 * test_registry_provision.c — the registry's provisioning part (schema 7,
 * lk_reg_provision.h): certificate chains and CRLs in the credential
 * checks, manifest signers, just-in-time registration, the key a device
 * last used, and the large import's checks outside its write transaction.
 * Every certificate and CRL is made here with OpenSSL, at test time.
 */
#include "lk_test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <sqlite3.h>

#include "latchkey/lk_error.h"
#include "latchkey/lk_registry.h"
#include "service/registry/internal.h"

#define T0 1700000000LL
#define DAY 86400LL

struct fx {
    char *dir;
    char path[4096];
    lk_registry *reg;
    int64_t now;
};

static int64_t fx_clock(void *arg)
{
    return *(int64_t *)arg;
}

static lk_registry *open_reg(struct fx *f)
{
    lk_registry *r = NULL;
    char why[512] = "";
    lk_err err = lk_registry_open(f->path, LK_REG_CREATE, &r, why, sizeof why);
    if (err != LK_OK)
        print_message("open: %s\n", why);
    assert_int_equal(err, LK_OK);
    lk_registry__set_clock(r, fx_clock, &f->now);
    return r;
}

static const lk_reg_name NAME = {"my-project", "us-central1", "reg1"};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char why[256];
    assert_non_null(f);
    f->dir = lk_test_tmpdir();
    snprintf(f->path, sizeof f->path, "%s/registry.db", f->dir);
    f->now = T0;
    f->reg = open_reg(f);
    assert_int_equal(lk_registry_create_registry(f->reg, &NAME, LK_REG_STATE_UNSPECIFIED,
                                                 LK_REG_STATE_UNSPECIFIED, why, sizeof why),
                     LK_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lk_registry_close(f->reg);
    lk_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

#define W why_, sizeof why_
#define REFUSE(code, text, call)                                                             \
    do {                                                                                     \
        char why_[512] = "";                                                                 \
        lk_err e_ = (call);                                                                  \
        if (e_ != (code) || strstr(why_, (text)) == NULL)                                    \
            print_message("%s:%d: got %s: \"%s\"; want %s with \"%s\"\n", __FILE__, __LINE__, \
                          lk_errname(e_), why_, lk_errname(code), (text));                   \
        assert_int_equal(e_, (code));                                                        \
        assert_non_null(strstr(why_, (text)));                                               \
    } while (0)
#define OK(call)                                                                             \
    do {                                                                                     \
        char why_[512] = "";                                                                 \
        lk_err e_ = (call);                                                                  \
        if (e_ != LK_OK)                                                                     \
            print_message("%s:%d: %s: %s\n", __FILE__, __LINE__, lk_errname(e_), why_);      \
        assert_int_equal(e_, LK_OK);                                                         \
    } while (0)

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
static lk_err create(struct fx *f, const char *id, const char *cert_pem, const char *chain,
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

static unsigned add_ca(struct fx *f, const char *pem)
{
    unsigned idx = 0;
    OK(lk_registry_add_cert(f->reg, &NAME, pem, strlen(pem), &idx, W));
    return idx;
}

static int64_t q1(struct fx *f, const char *sql)
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
    struct fx *f = *state;
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
    /* three intermediates: more than LK_REG_CHAIN_MAX */
    ch = cat2(i3.pem, i2.pem);
    {
        char *ch3 = cat2(ch, i1.pem);
        REFUSE(LK_ERR_REG_LIMIT, "more than 2 certificates", create(f, "dev3", d3.pem, ch3, 0, W));
        free(ch3);
    }
    /* two given but the path needs a third: not chained */
    REFUSE(LK_ERR_REG_CERT, "does not chain", create(f, "dev3", d3.pem, ch, 0, W));
    free(ch);
    /* another CA, with or without a chain */
    REFUSE(LK_ERR_REG_CERT, "not signed by", create(f, "devx", dx.pem, NULL, 0, W));
    REFUSE(LK_ERR_REG_CERT, "does not chain", create(f, "devx", dx.pem, other.pem, 0, W));
    /* an intermediate from the chain is never an anchor by itself */
    REFUSE(LK_ERR_REG_INVALID, "does not parse", create(f, "dev1b", d1.pem, "junk", 0, W));
    assert_int_equal(q1(f, "SELECT count(*) FROM devices"), 3);

    cert_free(&root); cert_free(&i1); cert_free(&i2); cert_free(&i3); cert_free(&other);
    cert_free(&d0); cert_free(&d1); cert_free(&d2); cert_free(&d3); cert_free(&dx);
}

/* The customer's intermediate is the registry CA (IoT Core's usual set-up):
 * it is the anchor though it is not self-signed. */
static void test_intermediate_as_registry_ca(void **state)
{
    struct fx *f = *state;
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
    struct fx *f = *state;
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

static void test_crls(void **state)
{
    struct fx *f = *state;
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
    struct fx *f = *state;
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
    OK(lk_registry_delete_signer(f->reg, &NAME, 0, W));
    REFUSE(LK_ERR_REG_NOT_FOUND, "no manifest signer 9",
           lk_registry_delete_signer(f->reg, &NAME, 9, W));
    OPENSSL_free(der);
    free(pem); free(pem384); free(pem1024); free(priv);
    EVP_PKEY_free(k); EVP_PKEY_free(p384); EVP_PKEY_free(rsa1024);
}

/* ------------------------------------------------------------------ */
/* Just-in-time registration                                           */

static int count_changes(void *arg, const lk_reg_change *c)
{
    if (c->kind == LK_CHANGE_DEVICE)
        ++*(int *)arg;
    return 0;
}

static void test_jit(void **state)
{
    struct fx *f = *state;
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
    assert_int_equal(changes, 1);
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

    free(crl);
    cert_free(&root); cert_free(&i1); cert_free(&other); cert_free(&d1); cert_free(&d2);
    cert_free(&d3); cert_free(&dother); cert_free(&dexp); cert_free(&drev);
}

/* ------------------------------------------------------------------ */
/* The key a device last used                                         */

static void test_last_key(void **state)
{
    struct fx *f = *state;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intermediate_as_registry_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_key, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
