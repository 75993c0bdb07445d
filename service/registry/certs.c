/*
 * certs.c — the registry's credential and certificate checks, with OpenSSL
 * (docs/iotcore.md §Credentials and CA certificates; see internal.h):
 *
 *  - a device credential must parse as its format: lk_cred_parse decides,
 *    except that an ES256_PEM key in canonical PEM (the form OpenSSL and
 *    every tool write: 64-character lines, one 91-byte P-256
 *    SubjectPublicKeyInfo with an uncompressed point) is recognised here and
 *    its point checked on the curve directly. lk_cred_parse costs hundreds
 *    of microseconds in OpenSSL 3.0's decoders; this costs a few, which is
 *    what makes a bulk import of a million devices take a minute instead of
 *    ten. The fast path only ever says "valid"; anything it does not
 *    recognise, and anything it finds invalid, goes to lk_cred_parse, so the
 *    verdict is always the same (tests/unit/test_registry.c checks that);
 *  - with registry CA certificates: the device credential must be a
 *    certificate, differ from every registry certificate, have a signature
 *    of at least 112 bits of security (not SHA-1 or MD5), and be signed
 *    directly (issuer name, key usage and signature) by one of them that is
 *    valid now and still meets the CA rules below (a database filled by an
 *    older version may hold one that does not: it signs nothing);
 *  - a registry CA certificate: one PEM certificate, X.509v3, a CA
 *    certificate (basicConstraints CA:TRUE; keyCertSign if it has a
 *    keyUsage), RSA 2048 to 8192 bits with an odd public exponent of at
 *    least 3 and at most 64 bits (the verifier's rule for device keys) or
 *    EC P-256, not expired.
 *
 * Every refusal says what is wrong and what is allowed, and never quotes the
 * key or certificate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "../verify/verify_internal.h"
#include "internal.h"
#include "trust.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
/* A device certificate's signature: SP 800-57's minimum; SHA-1 (63 bits, as
 * OpenSSL rates it, collisions being practical) and MD5 are below. */
#define SIG_MIN_SECBITS 112

struct lk_reg_checker {
    EC_GROUP *p256;
    EC_POINT *pt;
    BN_CTX *bn;
};


/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* lk_verify__pem_kind, and *private_key set when the text looks like a
 * private key, for a pointed message. */
static int pem_kind(const char *pem, size_t len, int *private_key)
{
    *private_key = memmem(pem, len, "PRIVATE KEY-----", 16) != NULL;
    return lk_verify__pem_kind(pem, len);
}

/* The certificate (cert) or the public key in pem, or NULL. */
static void *pem_read(const char *pem, size_t len, int cert)
{
    BIO *bio;
    void *obj;
    if (len > (size_t)0x7fffffff)
        return NULL;
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL)
        return NULL;
    obj = cert ? (void *)PEM_read_bio_X509(bio, NULL, NULL, NULL)
               : (void *)PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    return obj;
}

static X509 *pem_x509(const char *pem, size_t len)
{
    return pem_read(pem, len, 1);
}

static EVP_PKEY *pem_pubkey(const char *pem, size_t len)
{
    return pem_read(pem, len, 0);
}

/* ------------------------------------------------------------------ */
/* The checker and the CA list                                         */

lk_err lk_reg__checker_new(lk_reg_checker **out)
{
    lk_reg_checker *ck = calloc(1, sizeof *ck);
    *out = NULL;
    if (ck == NULL)
        return LK_ERR_NOMEM;
    ck->p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    ck->pt = ck->p256 != NULL ? EC_POINT_new(ck->p256) : NULL;
    ck->bn = BN_CTX_new();
    if (ck->pt == NULL || ck->bn == NULL) {
        lk_reg__checker_free(ck);
        ERR_clear_error();
        return LK_ERR_CRYPTO;
    }
    *out = ck;
    return LK_OK;
}

void lk_reg__checker_free(lk_reg_checker *ck)
{
    if (ck == NULL)
        return;
    EC_POINT_free(ck->pt);
    EC_GROUP_free(ck->p256);
    BN_CTX_free(ck->bn);
    free(ck);
}

lk_err lk_reg__cas_new(lk_reg_cas **out)
{
    *out = calloc(1, sizeof **out);
    return *out != NULL ? LK_OK : LK_ERR_NOMEM;
}

lk_err lk_reg__cas_add(lk_reg_cas *cas, const char *pem, size_t len)
{
    X509 *crt;
    unsigned char *der = NULL;
    char flaw[256];
    int dl;
    unsigned i;

    if (cas->n >= LK_REGISTRY_CERTS_MAX)
        return LK_ERR_REG_LIMIT;
    crt = pem_x509(pem, len);
    if (crt == NULL) {
        ERR_clear_error();
        return LK_ERR_REG_INVALID;
    }
    dl = i2d_X509(crt, &der);
    if (dl <= 0) {
        X509_free(crt);
        ERR_clear_error();
        return LK_ERR_CRYPTO;
    }
    i = cas->n;
    cas->crt[i] = crt;
    cas->der[i] = der;
    cas->der_len[i] = (size_t)dl;
    if (!lk_reg__asn1_epoch(X509_get0_notBefore(crt), &cas->not_before[i]))
        cas->not_before[i] = INT64_MAX; /* unreadable dates: never valid */
    if (!lk_reg__asn1_epoch(X509_get0_notAfter(crt), &cas->not_after[i]))
        cas->not_after[i] = INT64_MIN;
    cas->usable[i] = !lk_reg__ca_flaw(crt, flaw, sizeof flaw);
    cas->n++;
    /* The anchors of chain checks: only those that may sign. */
    if (cas->usable[i] && ((cas->store == NULL && (cas->store = X509_STORE_new()) == NULL) ||
                           !X509_STORE_add_cert(cas->store, crt))) {
        ERR_clear_error();
        return LK_ERR_NOMEM;
    }
    ERR_clear_error();
    return LK_OK;
}

unsigned lk_reg__cas_count(const lk_reg_cas *cas)
{
    return cas == NULL ? 0 : cas->n;
}

void lk_reg__cas_free(lk_reg_cas *cas)
{
    unsigned i;
    if (cas == NULL)
        return;
    for (i = 0; i < cas->n; i++) {
        X509_free(cas->crt[i]);
        OPENSSL_free(cas->der[i]);
    }
    for (i = 0; i < cas->ncrls; i++)
        X509_CRL_free(cas->crl[i]);
    X509_STORE_free(cas->store);
    free(cas);
}

/* ------------------------------------------------------------------ */
/* Device credentials                                                  */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* A line end at *p ("\n" or "\r\n"); advances past it. */
static int eol(const char **p, const char *stop)
{
    if (*p < stop && **p == '\n') {
        (*p)++;
        return 1;
    }
    if (stop - *p >= 2 && (*p)[0] == '\r' && (*p)[1] == '\n') {
        *p += 2;
        return 1;
    }
    return 0;
}

/*
 * 1 when pem is a canonical ES256_PEM credential with a valid point:
 * optional white space ending in a line end, "-----BEGIN PUBLIC KEY-----",
 * a line end, base64 lines of exactly 64 characters but the last (1..64),
 * each ending in a line end ("\n" or "\r\n"), "-----END PUBLIC KEY-----",
 * then nothing or a line end and white space; the base64 canonical and
 * decoding to the 91-byte DER of a P-256 SubjectPublicKeyInfo with an
 * uncompressed point, which must be on the curve. 0 = not decided here
 * (lk_cred_parse decides).
 */
static int es256_pem_fast(lk_reg_checker *ck, const char *pem, size_t len)
{
    static const char begin[] = "-----BEGIN PUBLIC KEY-----", end[] = "-----END PUBLIC KEY-----";
    static const unsigned char prefix[27] = {
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
    char b64[124];
    unsigned char der[91];
    size_t nb64 = 0, i, o = 0;
    const char *p = pem, *stop = pem + len;
    int short_line = 0, ok;

    while (p < stop && is_space(*p))
        p++;
    while (stop > p && is_space(stop[-1]))
        stop--;
    /* OpenSSL's PEM reader wants BEGIN at the start of a line, and we take
     * only a line end right after END. */
    if ((p > pem && p[-1] != '\n') ||
        (stop < pem + len && stop[0] != '\n' && stop[0] != '\r'))
        return 0;
    if ((size_t)(stop - p) < sizeof begin + sizeof end ||
        memcmp(p, begin, sizeof begin - 1) != 0 ||
        memcmp(stop - (sizeof end - 1), end, sizeof end - 1) != 0)
        return 0;
    p += sizeof begin - 1;
    stop -= sizeof end - 1;
    if (!eol(&p, stop))
        return 0;
    while (p < stop) {
        const char *q = p;
        size_t ll;
        while (q < stop && *q != '\r' && *q != '\n')
            q++;
        ll = (size_t)(q - p);
        if (ll == 0 || ll > 64 || short_line || nb64 + ll > sizeof b64)
            return 0;
        if (ll < 64)
            short_line = 1;
        memcpy(b64 + nb64, p, ll);
        nb64 += ll;
        p = q;
        if (!eol(&p, stop))
            return 0;
    }
    if (nb64 != sizeof b64 || b64[122] != '=' || b64[123] != '=')
        return 0;
    for (i = 0; i < 120; i += 4) {
        int a = b64val((unsigned char)b64[i]), b = b64val((unsigned char)b64[i + 1]);
        int c = b64val((unsigned char)b64[i + 2]), d = b64val((unsigned char)b64[i + 3]);
        unsigned v;
        if (a < 0 || b < 0 || c < 0 || d < 0)
            return 0;
        v = ((unsigned)a << 18) | ((unsigned)b << 12) | ((unsigned)c << 6) | (unsigned)d;
        der[o++] = (unsigned char)(v >> 16);
        der[o++] = (unsigned char)(v >> 8);
        der[o++] = (unsigned char)v;
    }
    {
        int a = b64val((unsigned char)b64[120]), b = b64val((unsigned char)b64[121]);
        if (a < 0 || b < 0 || (b & 0x0f) != 0)
            return 0;
        der[o++] = (unsigned char)(((unsigned)a << 2) | ((unsigned)b >> 4));
    }
    if (o != sizeof der || memcmp(der, prefix, sizeof prefix) != 0)
        return 0;
    ok = EC_POINT_oct2point(ck->p256, ck->pt, der + 26, 65, ck->bn) == 1 &&
         EC_POINT_is_at_infinity(ck->p256, ck->pt) == 0;
    if (!ok)
        ERR_clear_error();
    return ok;
}

/*
 * 1 when pem is a certificate credential that lk_cred_parse accepts as fmt
 * (the rules of its key_alg: P-256 by name with a named-curve encoding, or
 * RSA 2048..8192 bits with a good exponent; the point is on the curve, as
 * reading it checked, and P-256's cofactor is 1), with *crt the certificate
 * read once for the chain check too: reading a certificate costs OpenSSL
 * 3.0 a decoder context for its key, more than verifying its signature.
 * 0 = not decided here (lk_cred_parse decides).
 */
static int x509_fast(lk_cred_format fmt, const char *pem, size_t len, X509 **crt)
{
    X509 *x;
    EVP_PKEY *pk;
    int ok = 0;

    if ((fmt != LK_CRED_ES256_X509_PEM && fmt != LK_CRED_RSA_X509_PEM) ||
        memchr(pem, '\0', len) != NULL || lk_verify__pem_kind(pem, len) != 2)
        return 0;
    if ((x = pem_x509(pem, len)) == NULL) {
        ERR_clear_error();
        return 0;
    }
    pk = X509_get0_pubkey(x);
    if (pk != NULL && EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC && fmt == LK_CRED_ES256_X509_PEM) {
        char group[64], enc[32];
        size_t glen = 0, elen = 0;
        ok = EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                            &glen) &&
             strcmp(group, "prime256v1") == 0 &&
             EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_EC_ENCODING, enc, sizeof enc,
                                            &elen) &&
             strcmp(enc, OSSL_PKEY_EC_ENCODING_GROUP) == 0;
    } else if (pk != NULL && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA &&
               fmt == LK_CRED_RSA_X509_PEM) {
        int bits = EVP_PKEY_get_bits(pk);
        ok = bits >= RSA_MIN_BITS && bits <= RSA_MAX_BITS &&
             lk_verify__rsa_exponent_ok(pk, NULL, 0);
    }
    ERR_clear_error();
    if (!ok) {
        X509_free(x);
        return 0;
    }
    *crt = x;
    return 1;
}

/* lk_reg__cred_parse_check, and for a certificate the X509 it read (crt,
 * the caller's), so that the chain check does not read it again. */
static lk_err parse_check(lk_reg_checker *ck, lk_cred_format fmt, const char *pem, size_t len,
                          int *fast, X509 **crt)
{
    lk_cred *c = NULL;
    lk_err err;

    if (fast != NULL)
        *fast = 0;
    if (crt != NULL)
        *crt = NULL;
    if (pem == NULL || len == 0 || len > LK_CRED_PEM_MAX)
        return LK_ERR_CRED_INVALID;
    if (fmt == LK_CRED_ES256_PEM && ck != NULL && es256_pem_fast(ck, pem, len)) {
        if (fast != NULL)
            *fast = 1;
        return LK_OK;
    }
    if (crt != NULL && x509_fast(fmt, pem, len, crt))
        return LK_OK;
    err = lk_cred_parse(fmt, pem, len, 0, &c);
    lk_cred_free(c);
    if (err == LK_OK && crt != NULL && (fmt == LK_CRED_ES256_X509_PEM ||
                                        fmt == LK_CRED_RSA_X509_PEM) &&
        (*crt = pem_x509(pem, len)) == NULL) {
        ERR_clear_error();
        return LK_ERR_NOMEM; /* it parsed a moment ago */
    }
    if (err == LK_OK || err == LK_ERR_NOMEM || err == LK_ERR_CRYPTO)
        return err;
    return LK_ERR_CRED_INVALID;
}

lk_err lk_reg__cred_parse_check(lk_reg_checker *ck, lk_cred_format fmt, const char *pem,
                                size_t len, int *fast)
{
    return parse_check(ck, fmt, pem, len, fast, NULL);
}

static const char *format_desc(lk_cred_format fmt)
{
    switch (fmt) {
    case LK_CRED_RSA_PEM:
        return "an RSA public key (2048 to 8192 bits) in one -----BEGIN PUBLIC KEY----- block";
    case LK_CRED_RSA_X509_PEM:
        return "an X.509 certificate with an RSA key (2048 to 8192 bits) in one "
               "-----BEGIN CERTIFICATE----- block";
    case LK_CRED_ES256_PEM:
        return "a P-256 public key in one -----BEGIN PUBLIC KEY----- block";
    case LK_CRED_ES256_X509_PEM:
        return "an X.509 certificate with a P-256 key in one -----BEGIN CERTIFICATE----- block";
    default:
        return "one of RSA_PEM, RSA_X509_PEM, ES256_PEM, ES256_X509_PEM";
    }
}

/* Why a text that is not one PUBLIC KEY or CERTIFICATE block is refused:
 * the real problem, not "not exactly one PEM block". */
static void pem_block_diagnose(const char *pem, size_t len, char *buf, size_t size)
{
    static const char begin[] = "-----BEGIN ";
    const char *p = memmem(pem, len, begin, sizeof begin - 1), *q, *label;
    size_t blocks = 0, label_len = 0;

    for (q = p; q != NULL; q = memmem(q + 1, len - (size_t)(q + 1 - pem), begin, sizeof begin - 1))
        blocks++;
    if (p == NULL) {
        snprintf(buf, size, "it holds no PEM block (a -----BEGIN PUBLIC KEY----- or -----BEGIN "
                 "CERTIFICATE----- line)");
        return;
    }
    label = p + sizeof begin - 1;
    while (label + label_len < pem + len && label_len < 40 && label[label_len] != '-' &&
           label[label_len] != '\n')
        label_len++;
    if (label_len == 14 && memcmp(label, "RSA PUBLIC KEY", 14) == 0) {
        snprintf(buf, size, "it is a PKCS#1 RSA public key (-----BEGIN RSA PUBLIC KEY-----); IoT Core's "
                 "RSA_PEM is the X.509 SubjectPublicKeyInfo form (-----BEGIN PUBLIC KEY-----): convert "
                 "it with `openssl rsa -RSAPublicKey_in -in KEY -pubout`");
        return;
    }
    if (blocks > 1) {
        snprintf(buf, size, "it holds %zu PEM blocks; give exactly one key or certificate", blocks);
        return;
    }
    if (!(label_len == 10 && memcmp(label, "PUBLIC KEY", 10) == 0) &&
        !(label_len == 11 && memcmp(label, "CERTIFICATE", 11) == 0)) {
        int n = (int)label_len;
        for (size_t i = 0; i < label_len; i++)
            if (label[i] < 0x20 || label[i] > 0x7e)
                n = (int)i < n ? (int)i : n;
        snprintf(buf, size, "it is a PEM block of type '%.*s', not PUBLIC KEY or CERTIFICATE", n, label);
        return;
    }
    snprintf(buf, size, "it has text around its PEM block, or the block is not closed by its "
             "-----END line");
}

/* Why pem is not a valid fmt credential: "holds an RSA 2048 key", ... */
static void cred_diagnose(lk_cred_format fmt, const char *pem, size_t len, char *buf,
                          size_t size)
{
    int priv, kind, want_cert = fmt == LK_CRED_RSA_X509_PEM || fmt == LK_CRED_ES256_X509_PEM;
    int want_ec = fmt == LK_CRED_ES256_PEM || fmt == LK_CRED_ES256_X509_PEM;
    EVP_PKEY *pk = NULL;
    X509 *crt = NULL;

    if (memchr(pem, '\0', len) != NULL) {
        snprintf(buf, size, "it contains a NUL byte");
        return;
    }
    kind = pem_kind(pem, len, &priv);
    if (priv) {
        snprintf(buf, size, "it is a private key: register only the public key or certificate");
        return;
    }
    if (kind == 0) {
        pem_block_diagnose(pem, len, buf, size);
        return;
    }
    if (kind == 2 && !want_cert) {
        snprintf(buf, size, "it is a certificate; use %s for certificates",
                 want_ec ? "ES256_X509_PEM" : "RSA_X509_PEM");
        return;
    }
    if (kind == 1 && want_cert) {
        snprintf(buf, size, "it is a bare public key; use %s for bare keys",
                 want_ec ? "ES256_PEM" : "RSA_PEM");
        return;
    }
    if (kind == 2) {
        crt = pem_x509(pem, len);
        pk = crt != NULL ? X509_get_pubkey(crt) : NULL;
    } else {
        pk = pem_pubkey(pem, len);
    }
    if (pk == NULL) {
        snprintf(buf, size, "it does not parse as %s", kind == 2 ? "an X.509 certificate"
                                                                  : "a public key");
    } else {
        char kd[96];
        int ok, id = EVP_PKEY_get_base_id(pk);
        lk_reg__key_desc(pk, kd, sizeof kd, &ok);
        if (want_ec && id != EVP_PKEY_EC)
            snprintf(buf, size, "it holds an %s key, not an EC P-256 key", kd);
        else if (!want_ec && id != EVP_PKEY_RSA)
            snprintf(buf, size, "it holds an %s key, not an RSA key", kd);
        else if (!ok)
            snprintf(buf, size, "it holds an %s key", kd);
        else
            snprintf(buf, size, "its key is not a valid %s key", kd);
    }
    EVP_PKEY_free(pk);
    X509_free(crt);
    ERR_clear_error();
}

static int valid_format(lk_cred_format fmt)
{
    return fmt == LK_CRED_RSA_PEM || fmt == LK_CRED_RSA_X509_PEM || fmt == LK_CRED_ES256_PEM ||
           fmt == LK_CRED_ES256_X509_PEM;
}

/* The rest of a verified path (leaf first, anchor last): each
 * intermediate meets the CA rules and is signed with enough strength; the
 * leaf's own dates if asked; no certificate revoked. */
static lk_err path_check(const lk_reg_cas *cas, STACK_OF(X509) *path, unsigned index,
                         int64_t now, unsigned checks, char *why, size_t why_size)
{
    char what[40], flaw[256];
    int i, n = sk_X509_num(path), secbits = -1;
    lk_err err;

    snprintf(what, sizeof what, "credential %u", index);
    for (i = 1; i + 1 < n; i++) {
        X509 *c = sk_X509_value(path, i);
        if (lk_reg__ca_flaw(c, flaw, sizeof flaw))
            return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                         "%s: the intermediate CA at depth %d of its chain may not sign "
                         "certificates: %s", what, i, flaw);
        if (!X509_get_signature_info(c, NULL, NULL, &secbits, NULL) ||
            secbits < SIG_MIN_SECBITS) {
            ERR_clear_error();
            return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                         "%s: the intermediate CA at depth %d of its chain is signed with less "
                         "than %d bits of security (SHA-256 or stronger is required)", what, i,
                         SIG_MIN_SECBITS);
        }
    }
    if ((checks & LK_REG_CHECK_LEAF_DATES) &&
        (err = lk_reg__leaf_dates(sk_X509_value(path, 0), now, what, why, why_size)) != LK_OK)
        return err;
    return lk_reg__path_revoked(cas, path, what, why, why_size);
}

/* With registry CAs: the certificate must differ from each, have a
 * signature of at least SIG_MIN_SECBITS, and be signed directly by one of
 * them that meets the CA rules and is valid at now, or (chain not NULL)
 * verify to one through chain (chain.c); then path_check. */
static lk_err cert_signed(const lk_reg_cas *cas, X509 *crt, unsigned index, int64_t now,
                          STACK_OF(X509) *chain, unsigned checks, char *why, size_t why_size)
{
    STACK_OF(X509) *path = NULL;
    unsigned char *der = NULL;
    int dl, mdnid = NID_undef, secbits = -1;
    unsigned i, invalid_signer = LK_REGISTRY_CERTS_MAX, unusable_signer = LK_REGISTRY_CERTS_MAX;
    lk_err err = LK_ERR_REG_CERT;

    if (crt == NULL) {
        ERR_clear_error();
        snprintf(why, why_size, "credential %u does not parse as an X.509 certificate", index);
        return LK_ERR_CRED_INVALID;
    }
    dl = i2d_X509(crt, &der);
    if (dl <= 0) {
        err = LK_ERR_CRYPTO;
        snprintf(why, why_size, "credential %u: OpenSSL could not encode the certificate", index);
        goto exit;
    }
    for (i = 0; i < cas->n; i++) {
        if (cas->der_len[i] == (size_t)dl && memcmp(cas->der[i], der, (size_t)dl) == 0) {
            snprintf(why, why_size,
                     "credential %u is registry CA certificate %u itself; a device credential "
                     "must differ from every registry certificate", index, i);
            goto exit;
        }
    }
    if (!X509_get_signature_info(crt, &mdnid, NULL, &secbits, NULL) || secbits < 0) {
        snprintf(why, why_size,
                 "credential %u has a signature algorithm of unknown strength; a device "
                 "certificate's signature must give at least %d bits of security (SHA-256 or "
                 "stronger)", index, SIG_MIN_SECBITS);
        goto exit;
    }
    if (secbits < SIG_MIN_SECBITS) {
        snprintf(why, why_size,
                 "credential %u is signed with %s, which gives %d bits of security; a device "
                 "certificate's signature must give at least %d (SHA-256 or stronger)", index,
                 mdnid != NID_undef ? OBJ_nid2sn(mdnid) : "a weak digest", secbits,
                 SIG_MIN_SECBITS);
        goto exit;
    }
    if (chain != NULL) {
        char what[40];
        snprintf(what, sizeof what, "credential %u", index);
        err = lk_reg__chain_verify(cas, crt, chain, now, what, &path, why, why_size);
        if (err == LK_OK)
            err = path_check(cas, path, index, now, checks, why, why_size);
        goto exit;
    }
    for (i = 0; i < cas->n; i++) {
        EVP_PKEY *capk = X509_get0_pubkey(cas->crt[i]);
        if (capk == NULL || X509_check_issued(cas->crt[i], crt) != X509_V_OK ||
            X509_verify(crt, capk) != 1)
            continue;
        if (!cas->usable[i]) {
            unusable_signer = i;
            continue;
        }
        if (cas->not_before[i] <= now && now <= cas->not_after[i]) {
            if ((path = sk_X509_new_null()) == NULL || !sk_X509_push(path, crt) ||
                !X509_up_ref(crt) || !sk_X509_push(path, cas->crt[i]) ||
                !X509_up_ref(cas->crt[i])) {
                err = lk_verify__why(why, why_size, LK_ERR_NOMEM, "out of memory");
                goto exit;
            }
            err = path_check(cas, path, index, now, checks, why, why_size);
            goto exit;
        }
        invalid_signer = i;
    }
    if (invalid_signer < LK_REGISTRY_CERTS_MAX) {
        char nb[32], na[32];
        i = invalid_signer;
        lk_time_rfc3339(cas->not_before[i], nb, sizeof nb);
        lk_time_rfc3339(cas->not_after[i], na, sizeof na);
        snprintf(why, why_size,
                 "credential %u is signed by registry CA certificate %u, which is %s (valid from "
                 "%s to %s); the signing CA certificate must be valid now",
                 index, i, now > cas->not_after[i] ? "expired" : "not valid yet", nb, na);
    } else if (unusable_signer < LK_REGISTRY_CERTS_MAX) {
        char flaw[256];
        i = unusable_signer;
        (void)lk_reg__ca_flaw(cas->crt[i], flaw, sizeof flaw);
        snprintf(why, why_size,
                 "credential %u is signed by registry CA certificate %u, which may not sign "
                 "device certificates: %s (it was stored before this was checked: delete it)",
                 index, i, flaw);
    } else {
        snprintf(why, why_size,
                 "credential %u is not signed by any of the registry's %u CA certificates; a "
                 "device certificate must be signed directly by one of them (intermediate CAs "
                 "are not supported without a chain given with the device)", index, cas->n);
    }
exit:
    sk_X509_pop_free(path, X509_free);
    OPENSSL_free(der);
    ERR_clear_error();
    return err;
}

lk_err lk_reg__cred_check(lk_reg_checker *ck, const lk_reg_cas *cas,
                          const lk_reg_credential *cred, unsigned index, int64_t now,
                          char *why, size_t why_size)
{
    return lk_reg__cred_check_chain(ck, cas, cred, index, now, NULL, 0, 0, why, why_size);
}

lk_err lk_reg__cred_check_chain(lk_reg_checker *ck, const lk_reg_cas *cas,
                                const lk_reg_credential *cred, unsigned index, int64_t now,
                                const char *chain_pem, size_t chain_len, unsigned checks,
                                char *why, size_t why_size)
{
    STACK_OF(X509) *chain = NULL;
    X509 *crt = NULL;
    size_t len;
    lk_err err;
    unsigned ncas = lk_reg__cas_count(cas);

    if (cred == NULL || cred->pem == NULL || cred->pem[0] == '\0') {
        snprintf(why, why_size, "credential %u has no key; a credential is %s", index,
                 "a PEM public key or certificate");
        return LK_ERR_REG_INVALID;
    }
    if (!valid_format(cred->format)) {
        snprintf(why, why_size,
                 "credential %u has format %s; a credential's format is RSA_PEM, RSA_X509_PEM, "
                 "ES256_PEM or ES256_X509_PEM", index, lk_cred_format_name(cred->format));
        return LK_ERR_REG_INVALID;
    }
    if (cred->expires < 0) {
        snprintf(why, why_size,
                 "credential %u expires at %lld, before 1970; use 0 for a credential that never "
                 "expires", index, (long long)cred->expires);
        return LK_ERR_REG_INVALID;
    }
    len = strlen(cred->pem);
    if (len > LK_CRED_PEM_MAX) {
        snprintf(why, why_size, "credential %u is %zu bytes; the limit is %u", index, len,
                 LK_CRED_PEM_MAX);
        return LK_ERR_REG_LIMIT;
    }
    if (ncas > 0 && (cred->format == LK_CRED_RSA_PEM || cred->format == LK_CRED_ES256_PEM)) {
        snprintf(why, why_size,
                 "credential %u is a bare %s key, but the registry has %u CA certificate%s: a "
                 "device credential must then be a certificate (RSA_X509_PEM or "
                 "ES256_X509_PEM) signed by one of them", index,
                 lk_cred_format_name(cred->format), ncas, ncas == 1 ? "" : "s");
        return LK_ERR_REG_CERT;
    }
    err = parse_check(ck, cred->format, cred->pem, len, NULL, ncas > 0 ? &crt : NULL);
    if (err == LK_ERR_CRED_INVALID) {
        char d[320];
        cred_diagnose(cred->format, cred->pem, len, d, sizeof d);
        snprintf(why, why_size, "credential %u is not a valid %s (%s): %s is %s", index,
                 lk_cred_format_name(cred->format), d, lk_cred_format_name(cred->format),
                 format_desc(cred->format));
        return err;
    }
    if (err != LK_OK) {
        snprintf(why, why_size, "credential %u could not be checked: %s", index,
                 lk_strerror(err));
        return err;
    }
    if (ncas == 0 && chain_len == 0)
        return LK_OK;
    if (ncas == 0)
        return lk_verify__why(why, why_size, LK_ERR_REG_CERT,
                     "credential %u comes with a certificate chain, but the registry has no CA "
                     "certificate to verify it to", index);
    if (crt == NULL) { /* (with CAs, a credential is a certificate: its parse gave it) */
        snprintf(why, why_size, "credential %u does not parse as an X.509 certificate", index);
        return LK_ERR_CRED_INVALID;
    }
    if ((err = lk_reg__chain_parse(chain_pem, chain_len, &chain, why, why_size)) == LK_OK)
        err = cert_signed(cas, crt, index, now, chain, checks, why, why_size);
    sk_X509_pop_free(chain, X509_free);
    X509_free(crt);
    return err;
}

/* ------------------------------------------------------------------ */
/* Registry CA certificates                                            */

lk_err lk_reg__cert_der(const char *pem, size_t len, unsigned char **der, size_t *der_len)
{
    X509 *crt = pem_x509(pem, len);
    int dl;
    *der = NULL;
    *der_len = 0;
    if (crt == NULL) {
        ERR_clear_error();
        return LK_ERR_REG_INVALID;
    }
    dl = i2d_X509(crt, der);
    X509_free(crt);
    ERR_clear_error();
    if (dl <= 0)
        return LK_ERR_CRYPTO;
    *der_len = (size_t)dl;
    return LK_OK;
}

lk_err lk_reg__ca_check(const char *pem, size_t len, int64_t now, unsigned char **der,
                        size_t *der_len, char *why, size_t why_size)
{
    static const char want[] = "a registry certificate is one X.509v3 certificate in one "
                               "-----BEGIN CERTIFICATE----- block";
    X509 *crt = NULL;
    EVP_PKEY *pk;
    int priv, ok, dl;
    int64_t nb, na;
    char kd[96], flaw[256];
    lk_err err = LK_ERR_REG_CERT;

    *der = NULL;
    *der_len = 0;
    if (pem == NULL || len == 0) {
        snprintf(why, why_size, "the certificate is empty; %s", want);
        return LK_ERR_REG_INVALID;
    }
    if (len > LK_REG_CERT_PEM_MAX) {
        snprintf(why, why_size, "the certificate is %zu bytes; the limit is %u", len,
                 LK_REG_CERT_PEM_MAX);
        return LK_ERR_REG_LIMIT;
    }
    if (memchr(pem, '\0', len) != NULL) {
        snprintf(why, why_size, "the certificate contains a NUL byte; %s", want);
        return LK_ERR_REG_INVALID;
    }
    if (pem_kind(pem, len, &priv) != 2) {
        snprintf(why, why_size, "%s; %s",
                 priv ? "this is a private key, never upload one" : "not a single PEM certificate",
                 want);
        return LK_ERR_REG_INVALID;
    }
    crt = pem_x509(pem, len);
    if (crt == NULL) {
        snprintf(why, why_size, "the certificate does not parse as X.509; %s", want);
        err = LK_ERR_REG_INVALID;
        goto exit;
    }
    if (X509_get_version(crt) != X509_VERSION_3) {
        snprintf(why, why_size, "the certificate is X.509 v%ld; %s", X509_get_version(crt) + 1,
                 want);
        goto exit;
    }
    if (lk_reg__not_ca(crt, flaw, sizeof flaw)) {
        snprintf(why, why_size, "the certificate is %s; a registry certificate is the CA "
                                "certificate that signs the devices' certificates", flaw);
        goto exit;
    }
    pk = X509_get0_pubkey(crt);
    if (pk == NULL) {
        snprintf(why, why_size, "the certificate's key cannot be read; a registry certificate's "
                                "key is RSA (2048 to 8192 bits) or EC P-256");
        goto exit;
    }
    lk_reg__key_desc(pk, kd, sizeof kd, &ok);
    if (!ok && EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pk) >= RSA_MIN_BITS &&
        EVP_PKEY_get_bits(pk) <= RSA_MAX_BITS) {
        /* Only the exponent is wrong: with e = 1 anyone could "sign" device
         * certificates that verify against this CA; a huge e makes checking
         * each of them slow. */
        snprintf(why, why_size, "the certificate's key is %s; a registry certificate's RSA key "
                                "must have an odd public exponent of at least 3 and at most %u "
                                "bits", kd, LK_CRED_RSA_E_MAX_BITS);
        goto exit;
    }
    if (!ok) {
        snprintf(why, why_size, "the certificate's key is %s; a registry certificate's key is "
                                "RSA (2048 to 8192 bits) or EC P-256", kd);
        goto exit;
    }
    if (!lk_reg__asn1_epoch(X509_get0_notBefore(crt), &nb) || !lk_reg__asn1_epoch(X509_get0_notAfter(crt), &na)) {
        snprintf(why, why_size, "the certificate's validity dates cannot be read");
        goto exit;
    }
    if (na < now) {
        char t[32];
        lk_time_rfc3339(na, t, sizeof t);
        snprintf(why, why_size, "the certificate expired at %s; a registry certificate must "
                                "still be valid", t);
        goto exit;
    }
    dl = i2d_X509(crt, der);
    if (dl <= 0) {
        err = LK_ERR_CRYPTO;
        snprintf(why, why_size, "OpenSSL could not encode the certificate");
        goto exit;
    }
    *der_len = (size_t)dl;
    err = LK_OK;
exit:
    X509_free(crt);
    ERR_clear_error();
    return err;
}

static char *name_text(const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *s = NULL;
    long n;
    if (bio == NULL)
        return NULL;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_get_mem_data(bio, &data);
        if (n >= 0 && (s = malloc((size_t)n + 1)) != NULL) {
            memcpy(s, data, (size_t)n);
            s[n] = '\0';
        }
    }
    BIO_free(bio);
    return s;
}

lk_err lk_reg__cert_details(const char *pem, size_t len, lk_reg_cert *c)
{
    X509 *crt = pem_x509(pem, len);
    EVP_PKEY *pk;
    char kd[96];
    int ok;
    lk_err err = LK_ERR_NOMEM;

    if (crt == NULL) {
        ERR_clear_error();
        return LK_ERR_REG_INVALID;
    }
    c->pem = malloc(len + 1);
    if (c->pem == NULL)
        goto exit;
    memcpy(c->pem, pem, len);
    c->pem[len] = '\0';
    c->subject = name_text(X509_get_subject_name(crt));
    c->issuer = name_text(X509_get_issuer_name(crt));
    pk = X509_get0_pubkey(crt);
    if (pk != NULL)
        lk_reg__key_desc(pk, kd, sizeof kd, &ok);
    else
        snprintf(kd, sizeof kd, "unknown");
    c->key_type = strdup(kd);
    if (!lk_reg__asn1_epoch(X509_get0_notBefore(crt), &c->not_before))
        c->not_before = 0;
    if (!lk_reg__asn1_epoch(X509_get0_notAfter(crt), &c->not_after))
        c->not_after = 0;
    if (c->subject != NULL && c->issuer != NULL && c->key_type != NULL)
        err = LK_OK;
exit:
    X509_free(crt);
    ERR_clear_error();
    return err;
}
