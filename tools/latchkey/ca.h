/*
 * A certificate authority kept in a directory (docs/provisioning.md, "The
 * CA directory"): what `latchkey ca` and `latchkey provision` share.
 *
 *   ca.pem       the CA's certificate
 *   chain.pem    for an intermediate: its certificate and its parent's
 *                chain.pem (the intermediates up to the root, the root left
 *                out); absent for a root
 *   ca.key       the private key, PEM PKCS#8, mode 0600 -- or
 *   ca.keyref    a pkcs11: URI naming the key in a token (never a PIN)
 *   index.tsv    one line per issued certificate (see ca.c)
 *   crlnumber    the next CRL's number
 *   crl.pem      the last CRL made
 *   lock         flock()ed while index.tsv or crlnumber change
 */
#ifndef LK_TOOL_CA_H
#define LK_TOOL_CA_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include "tool.h"

/* Validity defaults, days (docs/provisioning.md says why). */
#define CA_ROOT_DAYS 10958        /* 30 years */
#define CA_INTERMEDIATE_DAYS 7305 /* 20 years */
#define CA_DEVICE_DAYS 7305       /* 20 years */
#define CA_CRL_DAYS 30
#define CA_DAYS_MAX 36525         /* 100 years */
#define CA_BACKDATE_S 300         /* notBefore this far back: devices' clocks drift */

struct ca {
    char dir[1024];
    X509 *cert;
    STACK_OF(X509) *chain;   /* intermediates above a device cert, issuer first (ca.pem first) */
    EVP_PKEY *key;           /* a file key or a tool_se_pkey */
    struct tool_key tk;      /* the token, for a ca.keyref */
    int token;
};

/* Open the CA in dir with its signing key; prints why and returns an exit
 * code on failure. */
int ca_open(const char *dir, struct ca *ca);
void ca_close(struct ca *ca);

enum { CA_KIND_ROOT, CA_KIND_INTERMEDIATE, CA_KIND_DEVICE, CA_KIND_SERVER };
/* A certificate of kind for pub and subject, signed by issuer_key (issuer
 * NULL: self-signed), with a random serial and the kind's extensions
 * (docs/provisioning.md). NULL on failure. Not indexed. */
X509 *ca_make_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, X509_NAME *subject, long days,
                   int kind);

/* A TLS server certificate (`latchkey setup --test-ca`) for host: CN and
 * subjectAltName DNS:host (an IPv4 address: DNS and IP; IPv6: IP), EKU
 * serverAuth, signed by issuer. NULL on failure or when !ca_host_ok(host). */
X509 *ca_make_server_cert(X509 *issuer, EVP_PKEY *issuer_key, EVP_PKEY *pub, const char *host, long days);
/* 1 when host is a DNS name (letters, digits, '-', '.') of at most 253
 * characters or an IP address. */
int ca_host_ok(const char *host);

/* A device certificate for pub with subject CN=id, valid days, issued and
 * written to the index. Returns NULL after printing why. */
X509 *ca_issue_device(struct ca *ca, EVP_PKEY *pub, const char *id, long days);

/* Append x (subject CN cn) to the CA's index.tsv, synced to the disk; 0 or
 * -1 (errno set). */
int ca_index_add(struct ca *ca, X509 *x, const char *cn);

/* The CA directory's lock (DIR/lock, flock): held while index.tsv or
 * crlnumber change, so that concurrent issues, revokes and CRLs of one CA
 * lose nothing. Returns the lock's fd (give it to ca_unlock), -1 on failure. */
int ca_lock(const char *dir);
void ca_unlock(int fd);

/* 1 when the subject of name has exactly one CN and it equals id. */
int ca_one_cn_is(const X509_NAME *name, const char *id);

/* The PEM text of a certificate / public key, malloc'd, or NULL. */
char *ca_cert_pem(X509 *x);
char *ca_pubkey_pem(EVP_PKEY *pk);

/* lk_id_valid for a NUL-terminated string. */
int ca_id_ok(const char *id);

/* 0 when key is a P-256 or RSA 2048..4096 public key; else prints why under
 * ctx and returns EXIT_INVALID. */
int ca_key_acceptable(const char *ctx, EVP_PKEY *key);

#endif
