/*
 * The CA directory (ca.h): opening it with its key, issuing a device
 * certificate, the index of what was issued.
 *
 * index.tsv, one line per certificate, fields separated by a TAB:
 *   SERIAL (upper-case hex)  NOT_AFTER (epoch)  V|R  REVOKED_AT (epoch, or -)
 *   REASON (a CRL reason name, or -)  SUBJECT CN
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "latchkey/lk_iotcore.h"
#include "ca.h"
#include "se_pkey.h"

int ca_id_ok(const char *id)
{
    return id != NULL && lk_id_valid(id, strlen(id));
}

int ca_key_acceptable(const char *ctx, EVP_PKEY *key)
{
    if (tool_pkey_alg(key) != LK_ALG_NONE)
        return EXIT_OK;
    tool_error(ctx, LK_ERR_KEY_TYPE, "the key is neither P-256 nor RSA of 2048 to 4096 bits");
    return EXIT_INVALID;
}

int ca_one_cn_is(const X509_NAME *name, const char *id)
{
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    const ASN1_STRING *s;
    unsigned char *utf8 = NULL;
    int n, ok;
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return 0;
    s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    n = ASN1_STRING_to_UTF8(&utf8, s);
    ok = n >= 0 && (size_t)n == strlen(id) && memcmp(utf8, id, (size_t)n) == 0;
    OPENSSL_free(utf8);
    return ok;
}

static char *bio_text(BIO *b)
{
    char *data, *out = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n >= 0 && (out = malloc((size_t)n + 1)) != NULL) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(b);
    return out;
}

char *ca_cert_pem(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL || PEM_write_bio_X509(b, x) != 1) {
        BIO_free(b);
        return NULL;
    }
    return bio_text(b);
}

char *ca_pubkey_pem(EVP_PKEY *pk)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL || PEM_write_bio_PUBKEY(b, pk) != 1) {
        BIO_free(b);
        return NULL;
    }
    return bio_text(b);
}

static void path_of(char *out, size_t size, const char *dir, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* The first line of a small text file, without its newline; NULL if none. */
static char *first_line(const char *path)
{
    char buf[LK_KEY_REF_MAX + 2];
    FILE *f = fopen(path, "r");
    char *out = NULL;
    if (f == NULL)
        return NULL;
    if (fgets(buf, sizeof buf, f) != NULL) {
        buf[strcspn(buf, "\r\n")] = '\0';
        out = strdup(buf);
    }
    fclose(f);
    return out;
}

int ca_open(const char *dir, struct ca *ca)
{
    char p[1100];
    FILE *f;
    struct stat st;

    memset(ca, 0, sizeof *ca);
    if (strlen(dir) >= sizeof ca->dir)
        return tool_usage_error("--ca: the directory name is too long");
    strcpy(ca->dir, dir);
    path_of(p, sizeof p, dir, "ca.pem");
    if ((f = fopen(p, "r")) == NULL) {
        tool_error("ca", LK_ERR_FILE_MISSING, "%s: %s (not a CA directory? make one with 'latchkey ca init')",
                   tool_shown(p), strerror(errno));
        return EXIT_FILE;
    }
    ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ca->chain = sk_X509_new_null();
    if (ca->cert == NULL || ca->chain == NULL) {
        tool_error("ca", LK_ERR_ENCODING, "%s: not a PEM certificate", tool_shown(p));
        ca_close(ca);
        return EXIT_FILE;
    }
    path_of(p, sizeof p, dir, "chain.pem");
    if ((f = fopen(p, "r")) != NULL) {
        X509 *x;
        while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
            sk_X509_push(ca->chain, x);
        ERR_clear_error(); /* the end of the file reads as an error */
        fclose(f);
    }
    path_of(p, sizeof p, dir, "ca.key");
    if (stat(p, &st) == 0) {
        if ((st.st_mode & 077) != 0) {
            tool_error("ca", LK_ERR_FILE_UNUSABLE, "%s is readable by others (mode %03o): chmod 600 it",
                       tool_shown(p), (unsigned)(st.st_mode & 0777));
            ca_close(ca);
            return EXIT_FILE;
        }
        if ((f = fopen(p, "r")) != NULL) {
            ca->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (ca->key == NULL) {
            tool_error("ca", LK_ERR_ENCODING, "%s: not a readable PEM private key", tool_shown(p));
            ca_close(ca);
            return EXIT_FILE;
        }
    } else {
        struct tool_key_opts ko = {0};
        char *ref;
        lk_err err;
        int rc;
        path_of(p, sizeof p, dir, "ca.keyref");
        if ((ref = first_line(p)) == NULL) {
            tool_error("ca", LK_ERR_FILE_MISSING, "%s has neither ca.key nor ca.keyref", tool_shown(dir));
            ca_close(ca);
            return EXIT_FILE;
        }
        ko.key = ref;
        rc = tool_key_open(&ko, &ca->tk);
        if (rc != EXIT_OK) {
            free(ref);
            ca_close(ca);
            return rc;
        }
        ca->token = 1;
        ca->key = tool_se_pkey(&ca->tk.se, ref, NULL, &err);
        /* tool_key's key reference points at ref: keep it with the CA. */
        ca->tk.key = ref;
        if (ca->key == NULL) {
            tool_key_error(&ca->tk, "ca key", err);
            ca_close(ca);
            return tool_exit_code(err);
        }
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1 && !ca->token) {
        ERR_clear_error();
        tool_error("ca", LK_ERR_KEY_TYPE, "%s/ca.key is not the key of ca.pem", tool_shown(dir));
        ca_close(ca);
        return EXIT_INVALID;
    }
    if (ca->token) {
        /* For a token key only the public halves can be compared. */
        EVP_PKEY *cpub = X509_get0_pubkey(ca->cert);
        if (cpub == NULL || EVP_PKEY_eq(cpub, ca->key) != 1) {
            tool_error("ca", LK_ERR_KEY_TYPE, "the token key of %s/ca.keyref is not the key of ca.pem",
                       tool_shown(dir));
            ca_close(ca);
            return EXIT_INVALID;
        }
    }
    return EXIT_OK;
}

void ca_close(struct ca *ca)
{
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    sk_X509_pop_free(ca->chain, X509_free);
    if (ca->token) {
        char *ref = (char *)ca->tk.key;
        tool_key_close(&ca->tk);
        free(ref);
    }
    memset(ca, 0, sizeof *ca);
}

/* A random positive serial of 20 octets (RFC 5280's most): 159 random bits. */
static int random_serial(X509 *x)
{
    unsigned char b[20];
    BIGNUM *bn;
    ASN1_INTEGER *ai;
    int ok;
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40); /* positive, and all 20 octets used */
    bn = BN_bin2bn(b, sizeof b, NULL);
    ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    ok = ai != NULL && X509_set_serialNumber(x, ai) == 1;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;
    int ok;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    ok = e != NULL && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static X509 *make_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, X509_NAME *subject, long days,
                       int kind, const char *san)
{
    X509 *x = X509_new();
    time_t now = time(NULL);
    int ok = x != NULL && X509_set_version(x, 2) == 1 && random_serial(x) == 0 &&
             X509_set_subject_name(x, subject) == 1 &&
             X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject) == 1 &&
             X509_time_adj_ex(X509_getm_notBefore(x), 0, -CA_BACKDATE_S, &now) != NULL &&
             X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now) != NULL &&
             X509_set_pubkey(x, pub) == 1;
    X509 *iss = issuer ? issuer : x;
    if (ok && kind == CA_KIND_ROOT)
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
    else if (ok && kind == CA_KIND_INTERMEDIATE)
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign") == 0;
    else if (ok)
        ok = add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, iss, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(x, iss, NID_ext_key_usage, kind == CA_KIND_SERVER ? "serverAuth" : "clientAuth") == 0;
    if (ok && san != NULL)
        ok = add_ext(x, iss, NID_subject_alt_name, san) == 0;
    ok = ok && add_ext(x, iss, NID_subject_key_identifier, "hash") == 0;
    /* A self-signed root has no AKI: it would only repeat its own SKI. */
    if (ok && issuer != NULL)
        ok = add_ext(x, iss, NID_authority_key_identifier, "keyid:always") == 0;
    ok = ok && X509_sign(x, issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

X509 *ca_make_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, X509_NAME *subject, long days,
                   int kind)
{
    return make_cert(issuer, issuer_key, pub, subject, days, kind, NULL);
}

X509 *ca_make_server_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, const char *host, long days)
{
    unsigned char a[16];
    char san[600];
    X509_NAME *name = X509_NAME_new();
    X509 *x = NULL;
    int v4 = inet_pton(AF_INET, host, a) == 1, v6 = !v4 && inet_pton(AF_INET6, host, a) == 1;
    /* host reaches the extension's text: only a name or an address, so that
     * no ',' adds an entry of its own. */
    if (!ca_host_ok(host) || name == NULL)
        goto out;
    if (v6)
        snprintf(san, sizeof san, "IP:%s", host);
    else if (v4) /* some clients match an address against DNS names only */
        snprintf(san, sizeof san, "DNS:%s,IP:%s", host, host);
    else
        snprintf(san, sizeof san, "DNS:%s", host);
    if (X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)host, -1, -1, 0) != 1)
        goto out;
    x = make_cert(issuer, issuer_key, pub, name, days, CA_KIND_SERVER, san);
out:
    X509_NAME_free(name);
    return x;
}

int ca_host_ok(const char *host)
{
    unsigned char a[16];
    size_t n = host != NULL ? strlen(host) : 0, i;
    if (n == 0 || n > 253)
        return 0;
    if (inet_pton(AF_INET6, host, a) == 1)
        return 1;
    for (i = 0; i < n; i++) {
        char ch = host[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '.'))
            return 0;
    }
    return host[0] != '.' && host[0] != '-' && strstr(host, "..") == NULL;
}

int ca_lock(const char *dir)
{
    char p[1100];
    int fd;
    path_of(p, sizeof p, dir, "lock");
    fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

void ca_unlock(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock */
}

/* One line in index.tsv, synced to the disk; under the CA's lock, so that a
 * revoke rewriting the index never loses it. */
int ca_index_add(struct ca *ca, X509 *x, const char *cn)
{
    int lock;
    char p[1100], *hex;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    time_t na = 0;
    struct tm tm;
    int fd, ok;
    FILE *f;
    if (bn == NULL || (hex = BN_bn2hex(bn)) == NULL) {
        BN_free(bn);
        return -1;
    }
    BN_free(bn);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        na = timegm(&tm);
    path_of(p, sizeof p, ca->dir, "index.tsv");
    if ((lock = ca_lock(ca->dir)) < 0) {
        OPENSSL_free(hex);
        return -1;
    }
    fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        ca_unlock(lock);
        OPENSSL_free(hex);
        return -1;
    }
    ok = fprintf(f, "%s\t%lld\tV\t-\t-\t%s\n", hex, (long long)na, cn) > 0 && fflush(f) == 0 &&
         fdatasync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    ca_unlock(lock);
    OPENSSL_free(hex);
    return ok ? 0 : -1;
}

X509 *ca_issue_device(struct ca *ca, EVP_PKEY *pub, const char *id, long days)
{
    X509_NAME *name = X509_NAME_new();
    X509 *x = NULL;
    if (name == NULL ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)id, -1, -1, 0) != 1 ||
        (x = ca_make_cert(ca->cert, ca->key, pub, name, days, CA_KIND_DEVICE)) == NULL) {
        X509_NAME_free(name);
        tool_error("ca issue", LK_ERR_CRYPTO, "the certificate for '%s' could not be made or signed%s",
                   tool_shown(id), ca->token ? " (the CA key's token refused?)" : "");
        return NULL;
    }
    X509_NAME_free(name);
    if (ca_index_add(ca, x, id) != 0) {
        tool_error("ca issue", LK_ERR_IO, "%s/index.tsv: cannot record the certificate: %s", tool_shown(ca->dir),
                   strerror(errno));
        X509_free(x);
        return NULL;
    }
    return x;
}
