/*
 * latchkey setup: the broker's certificate (/etc/latchkey/server.crt) and
 * key (server.key), which devices check against the host name they dial.
 *
 * A certificate is installed or kept only when its key is the one given,
 * it is valid now, the host is among its subjectAltNames (never its CN
 * alone: TLS clients ignore it) and it may serve TLS. A CA is made only
 * with --test-ca, and said loudly to be a test CA: its key stays on the
 * broker, which a production CA's never should.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "setup.h"

#define TEST_CA_DAYS 3650
#define SERVER_DAYS 825 /* what browsers and Apple's clients accept at most */
#define TEST_CA_CN "latchkey TEST CA - for trials only"

/* A passphrase callback that gives none: an encrypted key is refused
 * instead of prompting (Mosquitto could not start with it either). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

static X509 *pem_cert(const char *data, size_t len)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return x;
}

static EVP_PKEY *pem_key(const char *data, size_t len)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return k;
}

static void time_text(const ASN1_TIME *t, char *out, size_t n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *d;
    long l;
    out[0] = '\0';
    if (b != NULL && ASN1_TIME_print(b, t) == 1 && (l = BIO_get_mem_data(b, &d)) > 0)
        snprintf(out, n, "%.*s", (int)l, d);
    BIO_free(b);
}

static int is_address(const char *host)
{
    ASN1_OCTET_STRING *a = a2i_IPADDRESS(host);
    int r = a != NULL;
    ASN1_OCTET_STRING_free(a);
    return r;
}

/* 0 when x with key k may serve host now; else -1 and the reason in why. */
static int check_pair(X509 *x, EVP_PKEY *k, const char *host, char *why, size_t n)
{
    EVP_PKEY *pub = X509_get0_pubkey(x);
    char t[64];
    int ok;
    if (pub == NULL || EVP_PKEY_eq(pub, k) != 1) {
        ERR_clear_error();
        snprintf(why, n, "the key does not match the certificate (their public keys differ)");
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        time_text(X509_get0_notBefore(x), t, sizeof t);
        snprintf(why, n, "the certificate is not valid yet (notBefore %s)", t);
        return -1;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        time_text(X509_get0_notAfter(x), t, sizeof t);
        snprintf(why, n, "the certificate expired (notAfter %s)", t);
        return -1;
    }
    if (is_address(host))
        ok = X509_check_ip_asc(x, host, 0) == 1;
    else
        ok = X509_check_host(x, host, strlen(host), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) == 1;
    if (!ok) {
        snprintf(why, n,
                 "%s is not among the certificate's subjectAltNames (devices dial that name and would refuse it)",
                 host);
        return -1;
    }
    if (X509_check_purpose(x, X509_PURPOSE_SSL_SERVER, 0) != 1) {
        snprintf(why, n, "the certificate is not for TLS servers (its extendedKeyUsage or keyUsage excludes it)");
        return -1;
    }
    ERR_clear_error();
    return 0;
}

struct pair {
    char *crt, *key; /* the files' bytes; key wiped when freed */
    size_t crt_len, key_len;
    X509 *x;
    EVP_PKEY *k;
};

static void pair_free(struct pair *p)
{
    free(p->crt);
    if (p->key != NULL)
        OPENSSL_cleanse(p->key, p->key_len);
    free(p->key);
    X509_free(p->x);
    EVP_PKEY_free(p->k);
    memset(p, 0, sizeof *p);
}

/* Read and parse crt and key files; prints why and returns an exit code. */
static int pair_read(struct pair *p, const char *crt, const char *key, int nofollow)
{
    int e;
    memset(p, 0, sizeof *p);
    if ((e = setup_read(crt, SETUP_FILE_MAX, nofollow, &p->crt, &p->crt_len)) != 0)
        return setup_fail(e == EFBIG ? EXIT_FILE : tool_file_exit(e), crt, "cannot read: %s", strerror(e));
    if ((p->x = pem_cert(p->crt, p->crt_len)) == NULL)
        return setup_fail(EXIT_FILE, crt, "not a PEM certificate");
    if ((e = setup_read(key, SETUP_FILE_MAX, nofollow, &p->key, &p->key_len)) != 0)
        return setup_fail(e == EFBIG ? EXIT_FILE : tool_file_exit(e), key, "cannot read: %s", strerror(e));
    if ((p->k = pem_key(p->key, p->key_len)) == NULL)
        return setup_fail(EXIT_FILE, key, "not an unencrypted PEM private key (Mosquitto cannot ask for a passphrase)");
    return EXIT_OK;
}

static void say_checked(const char *verb, const char *path, const struct setup *s, X509 *x, const char *from)
{
    char t[64];
    time_text(X509_get0_notAfter(x), t, sizeof t);
    setup_say(verb, path, "(%s%s%schecked: for %s, valid until %s, its key matches)", from ? "from " : "",
              from ? from : "", from ? "; " : "", s->host, t);
}

static int exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* The PEM text of a private key, in memory that is wiped when freed. */
static int write_key(const struct setup *s, const char *abs, EVP_PKEY *k, mode_t mode, int group)
{
    BIO *b = BIO_new(BIO_s_secmem());
    char *d;
    long l;
    int rc;
    if (b == NULL || PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        (l = BIO_get_mem_data(b, &d)) <= 0) {
        BIO_free(b);
        return setup_fail(EXIT_FAIL, abs, "the key could not be encoded");
    }
    rc = setup_write(s, abs, d, (size_t)l, mode, group);
    BIO_free(b);
    return rc;
}

static int write_cert(const struct setup *s, const char *abs, X509 *x)
{
    char *pem = ca_cert_pem(x);
    int rc;
    if (pem == NULL)
        return setup_fail(EXIT_FAIL, abs, "the certificate could not be encoded");
    rc = setup_write(s, abs, pem, strlen(pem), 0644, 0);
    free(pem);
    return rc;
}

/* --cert/--key: checked, then installed unless the same are there. */
static int install_given(const struct setup *s, const char *crt, const char *key)
{
    struct pair g, old;
    char why[512];
    int rc = pair_read(&g, s->cert, s->key, 0), same = 0;
    if (rc == EXIT_OK && check_pair(g.x, g.k, s->host, why, sizeof why) != 0)
        rc = setup_fail(EXIT_INVALID, s->cert, "refused with %s: %s", s->key, why);
    if (rc != EXIT_OK) {
        pair_free(&g);
        return rc;
    }
    memset(&old, 0, sizeof old);
    if (setup_read(crt, SETUP_FILE_MAX, 1, &old.crt, &old.crt_len) == 0 &&
        setup_read(key, SETUP_FILE_MAX, 1, &old.key, &old.key_len) == 0)
        same = old.crt_len == g.crt_len && memcmp(old.crt, g.crt, g.crt_len) == 0 && old.key_len == g.key_len &&
               CRYPTO_memcmp(old.key, g.key, g.key_len) == 0;
    pair_free(&old);
    if (same) {
        say_checked("kept", crt, s, g.x, NULL);
        setup_say("kept", key, NULL);
    } else if ((rc = setup_write(s, SETUP_KEY, g.key, g.key_len, 0640, 1)) == EXIT_OK &&
               (rc = setup_write(s, SETUP_CRT, g.crt, g.crt_len, 0644, 0)) == EXIT_OK) {
        say_checked("installed", crt, s, g.x, s->cert);
        setup_say("installed", key, "(from %s)", s->key);
    }
    pair_free(&g);
    return rc;
}

static EVP_PKEY *p256(void)
{
    return EVP_EC_gen("P-256");
}

/* The test CA: kept when made before, else made; *x, *k its cert and key. */
static int test_ca(const struct setup *s, X509 **x, EVP_PKEY **k)
{
    char cap[SETUP_PATH_MAX], keyp[SETUP_PATH_MAX];
    struct pair p;
    X509_NAME *name;
    int rc;
    if (setup_path(s, cap, sizeof cap, SETUP_CA) != 0 || setup_path(s, keyp, sizeof keyp, SETUP_TEST_CA_KEY) != 0)
        return EXIT_USAGE;
    if (exists(cap) || exists(keyp)) {
        if (!exists(keyp))
            return setup_fail(EXIT_FILE, cap,
                              "exists without test-ca.key: a CA of your own, not a test CA; give --cert FILE "
                              "--key FILE signed by it instead of --test-ca");
        if ((rc = pair_read(&p, cap, keyp, 1)) != EXIT_OK) {
            pair_free(&p);
            return rc;
        }
        if (EVP_PKEY_eq(X509_get0_pubkey(p.x), p.k) != 1 || X509_cmp_current_time(X509_get0_notAfter(p.x)) <= 0) {
            pair_free(&p);
            return setup_fail(EXIT_INVALID, cap, "test-ca.key is not its key, or it expired: remove ca.crt and "
                                                 "test-ca.key to make a new test CA");
        }
        setup_say("kept", cap, "(the TEST CA made by an earlier setup --test-ca)");
        setup_say("kept", keyp, NULL);
        *x = p.x;
        *k = p.k;
        p.x = NULL;
        p.k = NULL;
        pair_free(&p);
        return EXIT_OK;
    }
    *k = p256();
    name = X509_NAME_new();
    if (*k == NULL || name == NULL ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)TEST_CA_CN, -1, -1,
                                   0) != 1 ||
        (*x = ca_make_cert(NULL, *k, *k, name, TEST_CA_DAYS, CA_KIND_ROOT)) == NULL) {
        X509_NAME_free(name);
        return setup_fail(EXIT_FAIL, cap, "the test CA could not be made (OpenSSL failed)");
    }
    X509_NAME_free(name);
    if ((rc = write_key(s, SETUP_TEST_CA_KEY, *k, 0600, 0)) != EXIT_OK || (rc = write_cert(s, SETUP_CA, *x)) != EXIT_OK)
        return rc;
    setup_say("created", keyp, "(the test CA's key, 0600 root)");
    setup_say("created", cap, "(a TEST CA, P-256, %d days)", TEST_CA_DAYS);
    printf("\n  *** %s is a TEST CA, for trials only. Its key is on this machine (%s):\n"
           "  *** whoever reads it can impersonate this broker to every device that trusts it.\n"
           "  *** In production give --cert FILE --key FILE from a CA whose key is kept elsewhere.\n\n",
           cap, keyp);
    return EXIT_OK;
}

static int make_test(const struct setup *s, const char *crt, const char *key)
{
    X509 *cax = NULL, *x = NULL;
    EVP_PKEY *cak = NULL, *k = NULL;
    int rc = test_ca(s, &cax, &cak);
    if (rc == EXIT_OK) {
        k = p256();
        x = k != NULL ? ca_make_server_cert(cax, cak, k, s->host, SERVER_DAYS) : NULL;
        if (x == NULL)
            rc = setup_fail(EXIT_FAIL, crt, "the server certificate could not be made (OpenSSL failed)");
    }
    if (rc == EXIT_OK && (rc = write_key(s, SETUP_KEY, k, 0640, 1)) == EXIT_OK &&
        (rc = write_cert(s, SETUP_CRT, x)) == EXIT_OK) {
        setup_say("created", key, "(P-256)");
        setup_say("created", crt, "(for %s, signed by the TEST CA, %d days)", s->host, SERVER_DAYS);
    }
    X509_free(cax);
    X509_free(x);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(k);
    return rc;
}

int setup_tls(const struct setup *s)
{
    char crt[SETUP_PATH_MAX], key[SETUP_PATH_MAX], why[512];
    struct pair p;
    int rc;
    if (setup_path(s, crt, sizeof crt, SETUP_CRT) != 0 || setup_path(s, key, sizeof key, SETUP_KEY) != 0)
        return EXIT_USAGE;
    if (s->cert != NULL)
        return install_given(s, crt, key);
    if (exists(crt) || exists(key)) {
        if (!exists(crt) || !exists(key))
            return setup_fail(EXIT_FILE, exists(crt) ? crt : key, "exists without %s: give --cert FILE --key FILE",
                              exists(crt) ? "server.key" : "server.crt");
        if ((rc = pair_read(&p, crt, key, 1)) != EXIT_OK) {
            pair_free(&p);
            return rc;
        }
        if (check_pair(p.x, p.k, s->host, why, sizeof why) == 0) {
            say_checked("kept", crt, s, p.x, NULL);
            setup_say("kept", key, NULL);
            pair_free(&p);
            return EXIT_OK;
        }
        pair_free(&p);
        if (!(s->test_ca && s->force))
            return setup_fail(EXIT_INVALID, crt, "%s; give --cert FILE --key FILE for %s%s", why, s->host,
                              s->test_ca ? ", or --force to replace it with a new test certificate" : "");
    } else if (!s->test_ca) {
        return setup_fail(EXIT_USAGE, crt,
                          "no certificate for the broker: give --cert FILE --key FILE (a certificate for %s with "
                          "its key, from your CA), or --test-ca to make a test CA and a certificate for trials",
                          s->host);
    }
    return make_test(s, crt, key);
}
