/* latchkey ca init | intermediate | issue | revoke | crl (docs/provisioning.md) */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "cli.h"
#include "se_pkey.h"

static const char ca_usage[] =
    "usage: latchkey ca init         --ca DIR [--cn NAME] [--alg ES256|RS256] [--bits N]\n"
    "                                [--key pkcs11:URI] [--days N]\n"
    "       latchkey ca intermediate --ca DIR --parent DIR [--cn NAME] [--alg ...] [--bits N]\n"
    "                                [--key pkcs11:URI] [--days N]\n"
    "       latchkey ca issue        --ca DIR (--csr FILE | --public-key FILE) --device-id ID\n"
    "                                [--days N] [--out FILE]\n"
    "       latchkey ca revoke       --ca DIR (--serial HEX | --cert FILE) [--reason R]\n"
    "       latchkey ca crl          --ca DIR --out FILE [--days N]\n"
    "\n"
    "A CA is a directory (docs/provisioning.md): ca.pem, its key in ca.key (0600) or,\n"
    "with --key pkcs11:URI, in a token (ca.keyref holds the URI, never a PIN: give it\n"
    "with pin-source= or LATCHKEY_PKCS11_PIN), index.tsv of what it issued, crlnumber.\n"
    "Defaults: P-256; a root 30 years, an intermediate 20 (pathlen 0), a device\n"
    "certificate 20, a CRL 30 days. Serials are random (159 bits).\n"
    "  --ca DIR          the CA's directory (made by init and intermediate)\n"
    "  --parent DIR      intermediate: the CA that signs the new one\n"
    "  --cn NAME         the CA's common name (default \"latchkey root CA\" or\n"
    "                    \"latchkey intermediate CA\")\n"
    "  --alg, --bits     ES256 (default) or RS256, and RSA's size, 2048 (default) to 4096\n"
    "  --key pkcs11:URI  the CA's key in a token instead of ca.key\n"
    "  --days N          how long the certificate or CRL is valid\n"
    "  --csr, --public-key FILE  issue: the device's request (PEM), or its public key\n"
    "  --device-id ID    issue: the certificate's subject CN\n"
    "  --out FILE        issue: the certificate (default standard output); crl: the CRL\n"
    "  --serial HEX, --cert FILE  revoke: the certificate, by serial or as a file\n"
    "  init/intermediate: a token key named by --key is used if it exists, else made.\n"
    "  issue: a CSR's signature is checked and its subject must be exactly CN=ID.\n"
    "  revoke --reason: unspecified, keyCompromise, cACompromise, affiliationChanged,\n"
    "         superseded, cessationOfOperation (default unspecified).\n";

struct ca_opts {
    const char *dir, *parent, *cn, *alg, *key, *csr, *pub, *id, *out, *serial, *cert, *reason;
    long long bits, days;
};

static const char *reasons[] = {"unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
                                "superseded", "cessationOfOperation"};

static int write_pem_file(const char *path, X509 *x, int excl)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ok;
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    ok = PEM_write_X509(f, x) == 1;
    ok = fclose(f) == 0 && ok;
    if (!ok)
        unlink(path);
    return ok ? 0 : -1;
}

static int write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    size_t n = strlen(text);
    int ok;
    if (fd < 0)
        return -1;
    ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok)
        unlink(path); /* made here: never left half-written */
    return ok ? 0 : -1;
}

/* The new CA's key: made in a file (written to dir/ca.key) or found / made
 * in the token; *tk holds the token open for the EVP_PKEY's life. */
static EVP_PKEY *new_ca_key(const struct ca_opts *o, const char *dir, struct tool_key *tk, int *rc)
{
    lk_alg alg = lk_alg_from_name(o->alg, strlen(o->alg));
    char p[1100];
    EVP_PKEY *pk = NULL;
    lk_err err;

    *rc = EXIT_FAIL;
    memset(tk, 0, sizeof *tk);
    if (o->key != NULL) {
        struct tool_key_opts ko = {0};
        uint8_t pub[LK_PUBKEY_DER_MAX];
        size_t n = 0;
        char line[LK_KEY_REF_MAX + 2];
        lk_alg have = LK_ALG_NONE;
        if (!tool_key_is_pkcs11(o->key)) {
            *rc = tool_usage_error("ca: --key takes a pkcs11: URI (without it the key is a file, ca.key)");
            return NULL;
        }
        if (strstr(o->key, "pin-value=") != NULL) {
            *rc = tool_usage_error("ca: the key URI is stored in ca.keyref and may not hold a PIN: use "
                                   "pin-source=FILE or LATCHKEY_PKCS11_PIN");
            return NULL;
        }
        ko.key = o->key;
        if ((*rc = tool_key_open(&ko, tk)) != EXIT_OK)
            return NULL;
        err = lk_se_public_key(&tk->se, o->key, &have, pub, sizeof pub, &n);
        if (err == LK_ERR_KEY_NOT_FOUND)
            err = lk_se_generate(&tk->se, o->key, alg, (unsigned)o->bits, pub, sizeof pub, &n);
        if (err == LK_OK)
            pk = tool_se_pkey(&tk->se, o->key, NULL, &err);
        if (pk == NULL) {
            tool_key_error(tk, "ca key", err);
            *rc = tool_exit_code(err);
            tool_key_close(tk);
            return NULL;
        }
        snprintf(line, sizeof line, "%s\n", o->key);
        snprintf(p, sizeof p, "%s/ca.keyref", dir);
        if (write_text(p, line, 0600) != 0) {
            tool_error("ca", LK_ERR_IO, "%s: %s", tool_shown(p), strerror(errno));
            EVP_PKEY_free(pk);
            tool_key_close(tk);
            return NULL;
        }
        *rc = EXIT_OK;
        return pk;
    }
    pk = alg == LK_ALG_RS256 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)(o->bits ? o->bits : 2048))
                             : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (pk == NULL) {
        tool_error("ca", LK_ERR_CRYPTO, "OpenSSL could not make the key");
        return NULL;
    }
    {
        int fd;
        FILE *f;
        int ok;
        snprintf(p, sizeof p, "%s/ca.key", dir);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        ok = f != NULL && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1;
        if (f != NULL)
            ok = fclose(f) == 0 && ok;
        else if (fd >= 0)
            close(fd);
        if (!ok) {
            if (fd >= 0)
                unlink(p); /* this run made it: no half-written key left behind */
            tool_error("ca", LK_ERR_IO, "%s: cannot write the key", tool_shown(p));
            EVP_PKEY_free(pk);
            return NULL;
        }
    }
    *rc = EXIT_OK;
    return pk;
}

/* ca init (parent_dir NULL) and ca intermediate. */
static int ca_create(const struct ca_opts *o, int intermediate)
{
    struct ca parent;
    struct tool_key tk;
    X509_NAME *name = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk;
    char p[1100];
    struct stat st;
    int rc, made = 0;
    long days = (long)(o->days ? o->days : intermediate ? CA_INTERMEDIATE_DAYS : CA_ROOT_DAYS);
    const char *cn = o->cn ? o->cn : intermediate ? "latchkey intermediate CA" : "latchkey root CA";

    for (const char *q = cn; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f)
            return tool_usage_error("ca: --cn may not hold control characters");
    if (cn[0] == '\0' || strlen(cn) > 64)
        return tool_usage_error("ca: --cn is 1 to 64 characters (X.520's bound for a common name)");
    if (intermediate && o->parent == NULL)
        return tool_usage_error("ca intermediate: --parent DIR (the CA that signs it) is required");
    if (!intermediate && o->parent != NULL)
        return tool_usage_error("ca init makes a root; --parent is for 'ca intermediate'");
    if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
        tool_error("ca", LK_ERR_IO, "%s: %s", tool_shown(o->dir), strerror(errno));
        return EXIT_FILE;
    }
    snprintf(p, sizeof p, "%s/ca.pem", o->dir);
    if (stat(p, &st) == 0) {
        tool_error("ca", LK_ERR_KEY_EXISTS, "%s holds a CA already (ca.pem)", tool_shown(o->dir));
        return EXIT_EXISTS;
    }
    if (intermediate) {
        if ((rc = ca_open(o->parent, &parent)) != EXIT_OK)
            return rc;
        if (sk_X509_num(parent.chain) > 0) {
            ca_close(&parent);
            tool_error("ca intermediate", LK_ERR_ARG, "the parent %s is itself an intermediate (pathlen 0): "
                       "an intermediate is signed by a root", tool_shown(o->parent));
            return EXIT_INVALID;
        }
    }
    pk = new_ca_key(o, o->dir, &tk, &rc);
    if (pk == NULL) {
        if (intermediate)
            ca_close(&parent);
        return rc;
    }
    name = X509_NAME_new();
    if (name != NULL &&
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) == 1)
        x = intermediate ? ca_make_cert(parent.cert, parent.key, pk, name, days, CA_KIND_INTERMEDIATE)
                         : ca_make_cert(NULL, pk, pk, name, days, CA_KIND_ROOT);
    X509_NAME_free(name);
    rc = EXIT_OK;
    if (x == NULL) {
        tool_error("ca", LK_ERR_CRYPTO, "the CA certificate could not be made or signed");
        rc = EXIT_FAIL;
    } else if (intermediate && ca_index_add(&parent, x, cn) != 0) {
        tool_error("ca", LK_ERR_IO, "%s/index.tsv: %s", tool_shown(o->parent), strerror(errno));
        rc = EXIT_FAIL;
    } else {
        snprintf(p, sizeof p, "%s/index.tsv", o->dir);
        rc = write_text(p, "", 0644);
        made += rc == 0;
        snprintf(p, sizeof p, "%s/crlnumber", o->dir);
        rc = rc == 0 ? write_text(p, "1\n", 0644) : rc;
        made += rc == 0;
        if (rc == 0 && intermediate) {
            /* chain.pem: this certificate, then the parent's intermediates (none: a root). */
            snprintf(p, sizeof p, "%s/chain.pem", o->dir);
            rc = write_pem_file(p, x, 1);
            made += rc == 0;
        }
        snprintf(p, sizeof p, "%s/ca.pem", o->dir);
        /* ca.pem last: its presence is what makes the directory a CA. */
        rc = rc == 0 ? write_pem_file(p, x, 1) : rc;
        if (rc != 0) {
            tool_error("ca", LK_ERR_IO, "%s: cannot write the CA files: %s", tool_shown(o->dir), strerror(errno));
            rc = EXIT_FAIL;
        } else {
            PEM_write_X509(stdout, x);
        }
    }
    if (rc != EXIT_OK) {
        /* Take back what this run wrote (in the order written), so that it can be run again;
         * a key made in a token stays there and is used by the next run. */
        static const char *const files[] = {"index.tsv", "crlnumber", "chain.pem"};
        snprintf(p, sizeof p, "%s/%s", o->dir, o->key != NULL ? "ca.keyref" : "ca.key");
        unlink(p);
        for (int f = 0; f < made; f++) {
            snprintf(p, sizeof p, "%s/%s", o->dir, files[f]);
            unlink(p);
        }
    }
    X509_free(x);
    EVP_PKEY_free(pk);
    if (o->key != NULL)
        tool_key_close(&tk);
    if (intermediate)
        ca_close(&parent);
    return rc;
}

static EVP_PKEY *read_pubkey(const char *path, int *rc)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *pk;
    if (f == NULL) {
        tool_error("ca issue", LK_ERR_FILE_MISSING, "%s: %s", tool_shown(path), strerror(errno));
        *rc = EXIT_FILE;
        return NULL;
    }
    pk = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (pk == NULL) {
        tool_error("ca issue", LK_ERR_ENCODING, "%s: not a PEM public key", tool_shown(path));
        *rc = EXIT_INVALID;
    }
    return pk;
}

/* The CSR's key once its signature and subject are checked. */
static EVP_PKEY *csr_key(const char *path, const char *id, int *rc)
{
    FILE *f = fopen(path, "r");
    X509_REQ *req;
    EVP_PKEY *pk = NULL;
    *rc = EXIT_INVALID;
    if (f == NULL) {
        tool_error("ca issue", LK_ERR_FILE_MISSING, "%s: %s", tool_shown(path), strerror(errno));
        *rc = EXIT_FILE;
        return NULL;
    }
    req = PEM_read_X509_REQ(f, NULL, NULL, NULL);
    fclose(f);
    if (req == NULL) {
        tool_error("ca issue", LK_ERR_ENCODING, "%s: not a PEM certificate request", tool_shown(path));
        return NULL;
    }
    if ((pk = X509_REQ_get_pubkey(req)) == NULL) {
        tool_error("ca issue", LK_ERR_ENCODING, "%s: the request's public key cannot be read", tool_shown(path));
    } else if (X509_REQ_verify(req, pk) != 1) {
        tool_error("ca issue", LK_ERR_TOKEN_SIGNATURE, "%s: the request's signature does not verify with its key: "
                   "refused", tool_shown(path));
        EVP_PKEY_free(pk);
        pk = NULL;
    } else if (!ca_one_cn_is(X509_REQ_get_subject_name(req), id)) {
        tool_error("ca issue", LK_ERR_ARG, "%s: the request's subject must hold exactly one CN, and it must be "
                   "the device id '%s': refused", tool_shown(path), tool_shown(id));
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    ERR_clear_error();
    X509_REQ_free(req);
    return pk;
}

static int ca_issue_cmd(const struct ca_opts *o)
{
    struct ca ca;
    EVP_PKEY *pk;
    X509 *x;
    int rc;
    if (o->id == NULL || (o->csr == NULL) == (o->pub == NULL))
        return tool_usage_error("ca issue: --device-id ID and one of --csr FILE, --public-key FILE are required");
    if (!ca_id_ok(o->id))
        return tool_usage_error("ca issue: '%s' is not a valid device id (a letter, then 2 to 254 of "
                                "A-Za-z0-9-._~+%%)", tool_shown(o->id));
    pk = o->csr ? csr_key(o->csr, o->id, &rc) : read_pubkey(o->pub, &rc);
    if (pk == NULL)
        return rc;
    if ((rc = ca_key_acceptable("ca issue", pk)) != EXIT_OK || (rc = ca_open(o->dir, &ca)) != EXIT_OK) {
        EVP_PKEY_free(pk);
        return rc;
    }
    x = ca_issue_device(&ca, pk, o->id, (long)(o->days ? o->days : CA_DEVICE_DAYS));
    EVP_PKEY_free(pk);
    ca_close(&ca);
    if (x == NULL)
        return EXIT_FAIL;
    if (o->out != NULL)
        rc = write_pem_file(o->out, x, 0) == 0 ? EXIT_OK : EXIT_FILE;
    else
        rc = PEM_write_X509(stdout, x) == 1 ? EXIT_OK : EXIT_FAIL;
    if (rc == EXIT_FILE)
        tool_error("ca issue", LK_ERR_IO, "%s: %s", tool_shown(o->out), strerror(errno));
    X509_free(x);
    return rc;
}

/* One line of index.tsv, split in place. */
struct idx_line {
    char *serial, *not_after, *status, *revoked_at, *reason, *cn;
};

static int split_line(char *line, struct idx_line *l)
{
    char **f[] = {&l->serial, &l->not_after, &l->status, &l->revoked_at, &l->reason, &l->cn};
    char *save = NULL, *t = strtok_r(line, "\t\n", &save);
    for (size_t i = 0; i < 6; i++, t = strtok_r(NULL, "\t\n", &save)) {
        if (t == NULL)
            return -1;
        *f[i] = t;
    }
    return 0;
}

/* The serial of --serial (hex) or of --cert (which this CA must have signed),
 * upper-case hex as the index has it. */
static char *wanted_serial(const struct ca_opts *o, struct ca *ca, int *rc)
{
    BIGNUM *bn = NULL;
    char *hex = NULL;
    *rc = EXIT_INVALID;
    if (o->serial != NULL) {
        const char *s = o->serial;
        if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0)
            s += 2;
        if (*s == '\0' || strspn(s, "0123456789abcdefABCDEF:") != strlen(s) || strlen(s) > 80) {
            *rc = tool_usage_error("ca revoke: --serial takes the certificate's serial in hex");
            return NULL;
        }
        {
            char clean[81];
            size_t n = 0;
            for (; *s; s++)
                if (*s != ':')
                    clean[n++] = *s;
            clean[n] = '\0';
            if (BN_hex2bn(&bn, clean) == 0)
                return NULL;
        }
    } else {
        FILE *f = fopen(o->cert, "r");
        X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
        if (f != NULL)
            fclose(f);
        if (x == NULL) {
            tool_error("ca revoke", LK_ERR_ENCODING, "%s: not a readable PEM certificate", tool_shown(o->cert));
            *rc = EXIT_FILE;
            return NULL;
        }
        if (X509_verify(x, X509_get0_pubkey(ca->cert)) != 1) {
            ERR_clear_error();
            tool_error("ca revoke", LK_ERR_REG_CERT, "%s was not signed by this CA", tool_shown(o->cert));
            X509_free(x);
            return NULL;
        }
        bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        X509_free(x);
    }
    hex = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    *rc = hex ? EXIT_OK : EXIT_FAIL;
    return hex;
}

static int ca_revoke_cmd(const struct ca_opts *o)
{
    const char *reason = o->reason ? o->reason : "unspecified";
    struct ca ca;
    char p[1100], tmp[1100], line[2048];
    char *serial;
    FILE *in, *out;
    int rc, found = 0, ok = 1, lock;
    size_t r;

    for (r = 0; r < sizeof reasons / sizeof reasons[0] && strcmp(reasons[r], reason) != 0; r++)
        ;
    if (r == sizeof reasons / sizeof reasons[0])
        return tool_usage_error("ca revoke: --reason '%s' is not one of unspecified, keyCompromise, "
                                "cACompromise, affiliationChanged, superseded, cessationOfOperation",
                                tool_shown(reason));
    if ((o->serial == NULL) == (o->cert == NULL))
        return tool_usage_error("ca revoke: give one of --serial HEX, --cert FILE");
    if ((rc = ca_open(o->dir, &ca)) != EXIT_OK)
        return rc;
    serial = wanted_serial(o, &ca, &rc);
    ca_close(&ca);
    if (serial == NULL)
        return rc;
    snprintf(p, sizeof p, "%s/index.tsv", o->dir);
    snprintf(tmp, sizeof tmp, "%s/index.tsv.tmp", o->dir);
    if ((lock = ca_lock(o->dir)) < 0) {
        tool_error("ca revoke", LK_ERR_IO, "%s/lock: %s", tool_shown(o->dir), strerror(errno));
        OPENSSL_free(serial);
        return EXIT_FILE;
    }
    in = fopen(p, "r");
    out = fopen(tmp, "w");
    if (in == NULL || out == NULL) {
        tool_error("ca revoke", LK_ERR_IO, "%s: %s", tool_shown(in ? tmp : p), strerror(errno));
        if (in) fclose(in);
        if (out) fclose(out);
        ca_unlock(lock);
        OPENSSL_free(serial);
        return EXIT_FILE;
    }
    rc = EXIT_OK;
    while (fgets(line, sizeof line, in) != NULL) {
        char copy[2048];
        struct idx_line l;
        strcpy(copy, line);
        if (split_line(copy, &l) == 0 && strcmp(l.serial, serial) == 0) {
            found = 1;
            if (strcmp(l.status, "R") == 0) {
                tool_error("ca revoke", LK_ERR_STATE, "serial %s (%s) is revoked already", serial, l.cn);
                rc = EXIT_EXISTS;
            } else {
                fprintf(out, "%s\t%s\tR\t%lld\t%s\t%s\n", l.serial, l.not_after, (long long)time(NULL), reason,
                        l.cn);
                printf("revoked %s (%s): %s\n", serial, l.cn, reason);
                continue;
            }
        }
        ok = fputs(line, out) >= 0 && ok;
    }
    fclose(in);
    ok = fflush(out) == 0 && fsync(fileno(out)) == 0 && ok;
    ok = fclose(out) == 0 && ok;
    if (!found) {
        tool_error("ca revoke", LK_ERR_REG_NOT_FOUND, "this CA never issued serial %s", serial);
        rc = EXIT_NOT_FOUND;
    }
    if (rc == EXIT_OK && (!ok || rename(tmp, p) != 0)) {
        tool_error("ca revoke", LK_ERR_IO, "%s: %s", tool_shown(p), strerror(errno));
        rc = EXIT_FAIL;
    }
    if (rc != EXIT_OK)
        unlink(tmp);
    ca_unlock(lock);
    OPENSSL_free(serial);
    return rc;
}

static int crl_add_entry(X509_CRL *crl, const struct idx_line *l)
{
    X509_REVOKED *rv = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *sn = NULL;
    ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)strtoll(l->revoked_at, NULL, 10));
    int ok = rv != NULL && t != NULL && BN_hex2bn(&bn, l->serial) != 0 &&
             (sn = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_REVOKED_set_serialNumber(rv, sn) == 1 &&
             X509_REVOKED_set_revocationDate(rv, t) == 1;
    size_t r;
    for (r = 0; r < sizeof reasons / sizeof reasons[0] && strcmp(reasons[r], l->reason) != 0; r++)
        ;
    /* RFC 5280: the reason code is left out rather than given as unspecified. */
    if (ok && r > 0 && r < sizeof reasons / sizeof reasons[0]) {
        ASN1_ENUMERATED *e = ASN1_ENUMERATED_new();
        ok = e != NULL && ASN1_ENUMERATED_set(e, (long)r) == 1 &&
             X509_REVOKED_add1_ext_i2d(rv, NID_crl_reason, e, 0, 0) == 1;
        ASN1_ENUMERATED_free(e);
    }
    ok = ok && X509_CRL_add0_revoked(crl, rv) == 1;
    if (!ok)
        X509_REVOKED_free(rv);
    ASN1_INTEGER_free(sn);
    ASN1_TIME_free(t);
    BN_free(bn);
    return ok ? 0 : -1;
}

static int ca_crl_cmd(const struct ca_opts *o)
{
    struct ca ca;
    char p[1100], line[2048];
    long long number = 0;
    long days = (long)(o->days ? o->days : CA_CRL_DAYS);
    X509_CRL *crl = NULL;
    ASN1_TIME *now = NULL, *next = NULL;
    ASN1_INTEGER *num = NULL;
    FILE *f;
    int rc, ok, lock;

    if (o->out == NULL)
        return tool_usage_error("ca crl: --out FILE is required");
    if ((rc = ca_open(o->dir, &ca)) != EXIT_OK)
        return rc;
    if ((lock = ca_lock(o->dir)) < 0) {
        tool_error("ca crl", LK_ERR_IO, "%s/lock: %s", tool_shown(o->dir), strerror(errno));
        ca_close(&ca);
        return EXIT_FILE;
    }
    snprintf(p, sizeof p, "%s/crlnumber", o->dir);
    if ((f = fopen(p, "r")) != NULL) {
        if (fgets(line, sizeof line, f) != NULL)
            number = strtoll(line, NULL, 10);
        fclose(f);
    }
    if (number < 1) {
        tool_error("ca crl", LK_ERR_FILE_UNUSABLE, "%s: no CRL number", tool_shown(p));
        ca_unlock(lock);
        ca_close(&ca);
        return EXIT_FILE;
    }
    crl = X509_CRL_new();
    now = X509_gmtime_adj(NULL, 0);
    next = X509_gmtime_adj(NULL, days * 86400L);
    num = ASN1_INTEGER_new();
    ok = crl && now && next && num && X509_CRL_set_version(crl, 1) == 1 &&
         X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca.cert)) == 1 &&
         X509_CRL_set1_lastUpdate(crl, now) == 1 && X509_CRL_set1_nextUpdate(crl, next) == 1 &&
         ASN1_INTEGER_set_int64(num, number) == 1 && X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) == 1;
    if (ok) {
        X509V3_CTX ctx;
        X509_EXTENSION *e;
        X509V3_set_ctx(&ctx, ca.cert, NULL, NULL, crl, 0);
        e = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = e != NULL && X509_CRL_add_ext(crl, e, -1) == 1;
        X509_EXTENSION_free(e);
    }
    snprintf(p, sizeof p, "%s/index.tsv", o->dir);
    if (ok && (f = fopen(p, "r")) != NULL) {
        while (ok && fgets(line, sizeof line, f) != NULL) {
            struct idx_line l;
            if (split_line(line, &l) == 0 && strcmp(l.status, "R") == 0)
                ok = crl_add_entry(crl, &l) == 0;
        }
        fclose(f);
    }
    ok = ok && X509_CRL_sort(crl) == 1 && X509_CRL_sign(crl, ca.key, EVP_sha256()) > 0;
    if (!ok) {
        tool_error("ca crl", LK_ERR_CRYPTO, "the CRL could not be made or signed");
        rc = EXIT_FAIL;
    } else {
        /* The number is used up before the CRL is published: never two CRLs with one number. */
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s/crlnumber.tmp", o->dir);
        snprintf(p, sizeof p, "%s/crlnumber", o->dir);
        f = fopen(tmp, "w");
        ok = f != NULL && fprintf(f, "%lld\n", number + 1) > 0;
        ok = f != NULL && fclose(f) == 0 && ok && rename(tmp, p) == 0;
        if (ok) {
            FILE *out = fopen(o->out, "w");
            ok = out != NULL && PEM_write_X509_CRL(out, crl) == 1;
            ok = out != NULL && fclose(out) == 0 && ok;
            snprintf(p, sizeof p, "%s/crl.pem", o->dir);
            if (ok && (out = fopen(p, "w")) != NULL) {
                PEM_write_X509_CRL(out, crl);
                fclose(out);
            }
        }
        if (!ok) {
            tool_error("ca crl", LK_ERR_IO, "%s: %s", tool_shown(o->out), strerror(errno));
            rc = EXIT_FILE;
        }
    }
    X509_CRL_free(crl);
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    ASN1_INTEGER_free(num);
    ca_unlock(lock);
    ca_close(&ca);
    return rc;
}

int cmd_ca(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, 0, 'c'}, {"parent", required_argument, 0, 'P'},
        {"cn", required_argument, 0, 'n'}, {"alg", required_argument, 0, 'a'},
        {"bits", required_argument, 0, 'b'}, {"key", required_argument, 0, 'k'},
        {"days", required_argument, 0, 'd'}, {"csr", required_argument, 0, 'r'},
        {"public-key", required_argument, 0, 'p'}, {"device-id", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'}, {"serial", required_argument, 0, 's'},
        {"cert", required_argument, 0, 'C'}, {"reason", required_argument, 0, 'R'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct ca_opts o = {0};
    const char *sub;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(ca_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    sub = argv[1];
    o.alg = "ES256";
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o.dir = optarg; break;
        case 'P': o.parent = optarg; break;
        case 'n': o.cn = optarg; break;
        case 'a': o.alg = optarg; break;
        case 'k': o.key = optarg; break;
        case 'r': o.csr = optarg; break;
        case 'p': o.pub = optarg; break;
        case 'i': o.id = optarg; break;
        case 'o': o.out = optarg; break;
        case 's': o.serial = optarg; break;
        case 'C': o.cert = optarg; break;
        case 'R': o.reason = optarg; break;
        case 'b':
            if (tool_parse_i64(optarg, LK_RSA_MIN_BITS, LK_RSA_MAX_BITS, &o.bits) != 0)
                return tool_usage_error("--bits must be 2048 to 4096 (RSA below 2048 bits is refused)");
            break;
        case 'd':
            if (tool_parse_i64(optarg, 1, CA_DAYS_MAX, &o.days) != 0)
                return tool_usage_error("--days takes a number of days, 1 to %d", CA_DAYS_MAX);
            break;
        case 'h': fputs(ca_usage, stdout); return EXIT_OK;
        default: return tool_bad_option(argc - 1, argv + 1, optind);
        }
    }
    if (optind != argc - 1)
        return tool_usage_error("ca %s: unexpected argument '%s'", tool_shown(sub), tool_shown(argv[optind + 1]));
    if (lk_alg_from_name(o.alg, strlen(o.alg)) == LK_ALG_NONE)
        return tool_usage_error("--alg must be ES256 or RS256, not '%s'", tool_shown(o.alg));
    if (o.bits != 0 && strcmp(o.alg, "RS256") != 0)
        return tool_usage_error("--bits is for RS256 keys only");
    if (o.dir == NULL)
        return tool_usage_error("ca %s: --ca DIR is required", tool_shown(sub));
    if (strcmp(sub, "init") == 0)
        return ca_create(&o, 0);
    if (strcmp(sub, "intermediate") == 0)
        return ca_create(&o, 1);
    if (strcmp(sub, "issue") == 0)
        return ca_issue_cmd(&o);
    if (strcmp(sub, "revoke") == 0)
        return ca_revoke_cmd(&o);
    if (strcmp(sub, "crl") == 0)
        return ca_crl_cmd(&o);
    return tool_usage_error("ca: unknown subcommand '%s' (init, intermediate, issue, revoke, crl)", tool_shown(sub));
}
