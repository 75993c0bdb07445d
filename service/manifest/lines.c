/*
 * lines.c — a signed manifest's lines: the header, then every device line
 * checked on its own (each gets a result), duplicates across lines, and,
 * when all passed, one registry import of every device. The manifest is
 * walked twice (check, then import) instead of keeping every parsed line:
 * 100,000 devices' certificates would be hundreds of MB of JSON objects.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <pthread.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_manifest.h"
#include "latchkey/lk_sha256.h"
#include "internal.h"

static const char *const dev_names[] = {"deviceId", "format", "certificate", "chain", "publicKey", "serial", NULL};
static const char *const hdr_names[] = {"latchkeyManifest", "batch", "manufacturer", "created", NULL};

/* The members of o are exactly names (a manifest is a security document: an
 * unknown member is refused, not ignored). 0, or -1 with the first unknown
 * in *bad. */
int lk_manifest__only(json_t *o, const char *const *names, const char **bad)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        int known = 0;
        for (const char *const *n = names; *n != NULL; n++)
            known |= strcmp(*n, k) == 0;
        if (!known) {
            *bad = k;
            return -1;
        }
    }
    return 0;
}

/* ---- a set of 32-byte digests: ids, keys and certificates seen ---- */

struct set {
    uint8_t (*k)[32];
    unsigned long *line;
    size_t n, cap; /* cap a power of two */
};

/* The line that had d first, 0 if none (d is added), -1 out of memory. */
static long set_check(struct set *s, const uint8_t d[32], unsigned long line)
{
    if (s->n * 2 >= s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        uint8_t(*nk)[32] = calloc(nc, 32);
        unsigned long *nl = calloc(nc, sizeof *nl);
        if (nk == NULL || nl == NULL) {
            free(nk);
            free(nl);
            return -1;
        }
        for (size_t j = 0; j < s->cap; j++)
            if (s->line[j] != 0) {
                size_t i;
                memcpy(&i, s->k[j], sizeof i);
                for (i &= nc - 1; nl[i] != 0; i = (i + 1) & (nc - 1))
                    ;
                memcpy(nk[i], s->k[j], 32);
                nl[i] = s->line[j];
            }
        free(s->k);
        free(s->line);
        s->k = nk;
        s->line = nl;
        s->cap = nc;
    }
    size_t i;
    memcpy(&i, d, sizeof i); /* d is a SHA-256: its bytes are the hash */
    for (i &= s->cap - 1; s->line[i] != 0; i = (i + 1) & (s->cap - 1))
        if (memcmp(s->k[i], d, 32) == 0)
            return (long)s->line[i];
    memcpy(s->k[i], d, 32);
    s->line[i] = line;
    s->n++;
    return 0;
}

/* A digest of what (one letter: which kind) and the bytes, so that the kinds share one set. */
static void tagged(char tag, const void *p, size_t n, uint8_t out[32])
{
    lk_sha256_ctx c;
    lk_sha256_init(&c);
    lk_sha256_update(&c, &tag, 1);
    lk_sha256_update(&c, p, n);
    lk_sha256_final(&c, out);
}

/* ---- one device line ---- */

struct dev {
    const char *id, *format, *cert, *key, *serial;
    char *chain;      /* the chain's PEMs concatenated, or NULL */
    size_t chain_len;
};

static void dev_free(struct dev *d)
{
    free(d->chain);
    memset(d, 0, sizeof *d);
}

static int result_add(lk_manifest_report *r, unsigned long line, const char *id)
{
    if ((r->nresults & (r->nresults - 1)) == 0) { /* grows at powers of two */
        size_t nc = r->nresults ? r->nresults * 2 : 64;
        lk_manifest_result *nv = realloc(r->results, nc * sizeof *nv);
        if (nv == NULL)
            return -1;
        r->results = nv;
    }
    lk_manifest_result *x = &r->results[r->nresults];
    memset(x, 0, sizeof *x);
    x->line = line;
    if (id != NULL && (x->device_id = strdup(id)) == NULL)
        return -1;
    r->nresults++;
    return 0;
}

static void refuse_line(lk_manifest_report *r, lk_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse_line(lk_manifest_report *r, lk_err err, const char *fmt, ...)
{
    lk_manifest_result *x = &r->results[r->nresults - 1];
    char buf[512];
    va_list ap;
    if (x->err != LK_OK)
        return; /* the first reason stands */
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    x->err = err;
    x->why = strdup(buf);
    r->nrefused++;
}

/* A line's verdict from the checks that run on worker threads (no report
 * there: it is the calling thread's). */
struct verdict {
    lk_err err;
    char why[512];
};

static void vrefuse(struct verdict *v, lk_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vrefuse(struct verdict *v, lk_err err, const char *fmt, ...)
{
    va_list ap;
    if (v->err != LK_OK)
        return; /* the first reason stands */
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof v->why, fmt, ap);
    va_end(ap);
    v->err = err;
}

/* Parse one device line's members into d (pointers into o). 0, -1 refused, -2 out of memory. */
static int parse_dev(struct verdict *r, json_t *o, struct dev *d)
{
    const char *bad = NULL;
    memset(d, 0, sizeof *d);
    if (!json_is_object(o)) {
        vrefuse(r, LK_ERR_REG_INVALID, "not a JSON object");
        return -1;
    }
    if (lk_manifest__only(o, dev_names, &bad) != 0) {
        vrefuse(r, LK_ERR_REG_INVALID, "unknown member \"%.64s\"", bad);
        return -1;
    }
    d->id = json_string_value(json_object_get(o, "deviceId"));
    d->format = json_string_value(json_object_get(o, "format"));
    d->cert = json_string_value(json_object_get(o, "certificate"));
    d->key = json_string_value(json_object_get(o, "publicKey"));
    d->serial = json_string_value(json_object_get(o, "serial"));
    json_t *ch = json_object_get(o, "chain");
    if (d->id == NULL || d->format == NULL || d->cert == NULL || d->key == NULL || d->serial == NULL ||
        !json_is_array(ch)) {
        vrefuse(r, LK_ERR_REG_INVALID, "deviceId, format, certificate, publicKey and serial must be strings, "
                                           "chain an array (empty for none)");
        return -1;
    }
    if (!lk_id_valid(d->id, strlen(d->id))) {
        vrefuse(r, LK_ERR_REG_INVALID, "deviceId is not a valid device id");
        return -1;
    }
    if (d->serial[0] == '\0' || strlen(d->serial) > 64) {
        vrefuse(r, LK_ERR_REG_INVALID, "serial must be 1 to 64 characters");
        return -1;
    }
    if (json_array_size(ch) > LK_REG_CHAIN_MAX) {
        vrefuse(r, LK_ERR_REG_INVALID, "chain has %zu certificates, at most %u", json_array_size(ch),
                    LK_REG_CHAIN_MAX);
        return -1;
    }
    size_t total = 0, i;
    json_t *v;
    json_array_foreach(ch, i, v) {
        if (!json_is_string(v)) {
            vrefuse(r, LK_ERR_REG_INVALID, "chain[%zu] is not a string", i);
            return -1;
        }
        total += json_string_length(v) + 1;
    }
    if (total > 0) {
        if ((d->chain = malloc(total + 1)) == NULL)
            return -2;
        d->chain_len = 0;
        json_array_foreach(ch, i, v) {
            memcpy(d->chain + d->chain_len, json_string_value(v), json_string_length(v));
            d->chain_len += json_string_length(v);
            d->chain[d->chain_len++] = '\n';
        }
        d->chain[d->chain_len] = '\0';
    }
    return 0;
}

/* Exactly one PEM block of what PEM_read_bio_* took: nothing but white space after it. */
static int rest_blank(BIO *b)
{
    char c;
    while (BIO_read(b, &c, 1) == 1)
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            return 0;
    return 1;
}

/* One DER element at *p (before end), read by OpenSSL's ASN1_get_object:
 * definite length only. Its class and tag, and the whole element in *el,
 * *el_len; *p moves to its contents when into, else past it. 0 if it is
 * not one. */
static int der_next(const unsigned char **p, const unsigned char *end, int into, int *cls, int *tag,
                    const unsigned char **el, long *el_len)
{
    const unsigned char *q = *p;
    long len = 0;
    int r = ASN1_get_object(&q, &len, tag, cls, (long)(end - *p));
    if ((r & 0x80) || (r & 0x01) || len < 0 || len > end - q) {
        ERR_clear_error();
        return 0;
    }
    *el = *p;
    *el_len = (long)(q - *p) + len;
    *p = into ? q : q + len;
    return 1;
}

/* The subject and the SubjectPublicKeyInfo of a DER certificate, and the
 * certificate's own length: the fields of Certificate ::= SEQUENCE { tbs
 * SEQUENCE { [0] version OPTIONAL, serial, signature, issuer, validity,
 * subject, subjectPublicKeyInfo, ... } ... } (RFC 5280), walked with
 * OpenSSL's element reader. The whole certificate is read by d2i_X509 in
 * the registry's check (which refuses what does not parse and checks its
 * signature); reading it here too would cost a second key decoder context
 * (OpenSSL 3.0 decodes the key of every certificate it reads), half of a
 * line's cost. */
static int cert_fields(const unsigned char *der, long len, const unsigned char **subj, long *subj_len,
                       const unsigned char **spki, long *spki_len, long *cert_len)
{
    const unsigned char *p = der, *end = der + len, *el;
    int cls, tag, i;
    long n;
    if (!der_next(&p, end, 1, &cls, &tag, &el, cert_len) || cls != V_ASN1_UNIVERSAL || tag != V_ASN1_SEQUENCE)
        return 0;
    end = der + *cert_len;
    if (!der_next(&p, end, 1, &cls, &tag, &el, &n) || cls != V_ASN1_UNIVERSAL || tag != V_ASN1_SEQUENCE)
        return 0;
    end = el + n; /* the tbsCertificate */
    const unsigned char *q = p;
    if (!der_next(&q, end, 0, &cls, &tag, &el, &n))
        return 0;
    if (cls == V_ASN1_CONTEXT_SPECIFIC && tag == 0)
        p = q; /* version */
    /* serial, signature, issuer, validity */
    for (i = 0; i < 4; i++)
        if (!der_next(&p, end, 0, &cls, &tag, &el, &n) || cls != V_ASN1_UNIVERSAL ||
            tag != (i == 0 ? V_ASN1_INTEGER : V_ASN1_SEQUENCE))
            return 0;
    if (!der_next(&p, end, 0, &cls, &tag, subj, subj_len) || cls != V_ASN1_UNIVERSAL || tag != V_ASN1_SEQUENCE)
        return 0;
    if (!der_next(&p, end, 0, &cls, &tag, spki, spki_len) || cls != V_ASN1_UNIVERSAL || tag != V_ASN1_SEQUENCE)
        return 0;
    return 1;
}

/* The algorithm of a DER SubjectPublicKeyInfo (its AlgorithmIdentifier
 * read by OpenSSL without decoding the key), NID_undef if none. */
static int spki_nid(const unsigned char *spki, long len)
{
    const unsigned char *p = spki, *el;
    int cls, tag, nid = NID_undef;
    long n;
    if (!der_next(&p, spki + len, 1, &cls, &tag, &el, &n) || !der_next(&p, spki + len, 0, &cls, &tag, &el, &n))
        return NID_undef;
    X509_ALGOR *a = d2i_X509_ALGOR(NULL, &el, n);
    if (a != NULL) {
        const ASN1_OBJECT *o = NULL;
        X509_ALGOR_get0(&o, NULL, NULL, a);
        nid = o ? OBJ_obj2nid(o) : NID_undef;
    }
    X509_ALGOR_free(a);
    ERR_clear_error();
    return nid;
}

/* The certificate against the line: CN, key, format. Digests of the key and
 * the certificate for the duplicate checks. 0, -1 refused, -2 out of memory.
 * publicKey is compared with the certificate's SubjectPublicKeyInfo byte for
 * byte, without decoding it into a key: OpenSSL 3's key decoders cost more
 * than everything else a line needs, and the factory writes the SPKI it read
 * from the certificate's key (a point compressed in one and not the other is
 * refused, which is the strict reading anyway). */
static int check_cert(struct verdict *r, const struct dev *d, uint8_t key_d[32], uint8_t cert_d[32])
{
    int rc = -1;
    BIO *b = BIO_new_mem_buf(d->cert, -1), *kb = NULL;
    char *name = NULL, *hdr = NULL, *kname = NULL, *khdr = NULL;
    unsigned char *der = NULL, *kder = NULL;
    const unsigned char *subj = NULL, *spki = NULL, *sp;
    long len = 0, klen = 0, subj_len = 0, spki_len = 0, cert_len = 0;
    X509_NAME *sn = NULL;
    if (b == NULL)
        return -2;
    if (PEM_read_bio(b, &name, &hdr, &der, &len) != 1 ||
        (strcmp(name, PEM_STRING_X509) != 0 && strcmp(name, PEM_STRING_X509_OLD) != 0) || hdr[0] != '\0' ||
        !rest_blank(b) || !cert_fields(der, len, &subj, &subj_len, &spki, &spki_len, &cert_len) ||
        (sp = subj, sn = d2i_X509_NAME(NULL, &sp, subj_len)) == NULL) {
        ERR_clear_error();
        vrefuse(r, LK_ERR_REG_CERT, "certificate is not one PEM X.509 certificate");
        goto out;
    }
    int at = X509_NAME_get_index_by_NID(sn, NID_commonName, -1);
    if (at < 0 || X509_NAME_get_index_by_NID(sn, NID_commonName, at) >= 0) {
        vrefuse(r, LK_ERR_REG_CERT, "the certificate's subject must have exactly one CN (the device id)");
        goto out;
    }
    unsigned char *cn = NULL;
    int cn_len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(sn, at)));
    int same = cn_len >= 0 && (size_t)cn_len == strlen(d->id) && memcmp(cn, d->id, (size_t)cn_len) == 0;
    OPENSSL_free(cn);
    if (!same) {
        vrefuse(r, LK_ERR_REG_CERT, "the certificate's subject CN is not deviceId");
        goto out;
    }
    if ((kb = BIO_new_mem_buf(d->key, -1)) == NULL) {
        rc = -2;
        goto out;
    }
    if (PEM_read_bio(kb, &kname, &khdr, &kder, &klen) != 1 || strcmp(kname, "PUBLIC KEY") != 0 ||
        khdr[0] != '\0' || !rest_blank(kb)) {
        vrefuse(r, LK_ERR_CRED_INVALID, "publicKey is not one PEM PUBLIC KEY (SubjectPublicKeyInfo)");
        goto out;
    }
    if (spki_len != klen || memcmp(spki, kder, (size_t)klen) != 0) {
        vrefuse(r, LK_ERR_REG_CERT, "the certificate's key is not publicKey");
        goto out;
    }
    int nid = spki_nid(spki, spki_len);
    const char *want = nid == NID_X9_62_id_ecPublicKey ? "ES256_X509_PEM" : nid == NID_rsaEncryption ? "RSA_X509_PEM"
                                                                                                    : NULL;
    if (want == NULL || strcmp(want, d->format) != 0) {
        vrefuse(r, LK_ERR_REG_INVALID, "format %.32s does not match the key (%s)", d->format,
                    want ? want : "neither EC nor RSA");
        goto out;
    }
    tagged('k', spki, (size_t)spki_len, key_d);
    tagged('c', der, (size_t)cert_len, cert_d);
    rc = 0;
out:
    ERR_clear_error();
    X509_NAME_free(sn);
    OPENSSL_free(name);
    OPENSSL_free(hdr);
    OPENSSL_free(der);
    OPENSSL_free(kname);
    OPENSSL_free(khdr);
    OPENSSL_free(kder);
    BIO_free(kb);
    BIO_free(b);
    return rc;
}

/* ---- walking the file ---- */

struct walk {
    const char *data;
    size_t len, pos;
    unsigned long line;
};

/* The next line (without its "\n") in *p, *n. 1, 0 at the end, -1 a line
 * without "\n" at the end of the file (truncated). */
static int next_line(struct walk *w, const char **p, size_t *n)
{
    if (w->pos >= w->len)
        return 0;
    const char *s = w->data + w->pos;
    const char *e = memchr(s, '\n', w->len - w->pos);
    w->line++;
    if (e == NULL) {
        *p = s;
        *n = w->len - w->pos;
        w->pos = w->len;
        return -1;
    }
    *p = s;
    *n = (size_t)(e - s);
    w->pos += *n + 1;
    return 1;
}

static json_t *load_line(const char *p, size_t n, json_error_t *je)
{
    /* jansson refuses invalid UTF-8 and "\u0000" by default. */
    return json_loadb(p, n, JSON_REJECT_DUPLICATES, je);
}

/* The manufacturer's label: 1-128 characters (UTF-8, as jansson checked), none a control character. */
static int label_ok(const char *s)
{
    size_t n = 0;
    if (s == NULL || *s == '\0')
        return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 0;
        n += (*p & 0xc0) != 0x80; /* count characters, not bytes */
    }
    return n <= 128;
}

/* RFC 3339 in UTC: YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z. */
static int utc_ok(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd";
    size_t i;
    if (s == NULL)
        return 0;
    for (i = 0; pat[i]; i++)
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i])
            return 0;
    if (s[i] == '.') {
        size_t j = ++i;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return 0;
    }
    return s[i] == 'Z' && s[i + 1] == '\0';
}

static lk_err header_line(struct walk *w, const char *batch, lk_manifest_report *r)
{
    const char *p, *bad = NULL;
    size_t n;
    json_error_t je;
    int nl = next_line(w, &p, &n);
    if (nl <= 0) {
        snprintf(r->why, sizeof r->why, "the manifest has no complete header line");
        return LK_ERR_REG_INVALID;
    }
    if (n + 1 > LK_MANIFEST_LINE_MAX) {
        snprintf(r->why, sizeof r->why, "line 1 is over %u bytes", LK_MANIFEST_LINE_MAX);
        return LK_ERR_REG_LIMIT;
    }
    json_t *h = load_line(p, n, &je);
    lk_err err = LK_ERR_REG_INVALID;
    if (!json_is_object(h)) {
        snprintf(r->why, sizeof r->why, "line 1: not a JSON object (%.100s)", h ? "another JSON value" : je.text);
    } else if (lk_manifest__only(h, hdr_names, &bad) != 0) {
        snprintf(r->why, sizeof r->why, "line 1: unknown member \"%.64s\"", bad);
    } else if (!json_is_integer(json_object_get(h, "latchkeyManifest")) ||
               json_integer_value(json_object_get(h, "latchkeyManifest")) != 1) {
        snprintf(r->why, sizeof r->why, "line 1: latchkeyManifest must be 1 (a format this version reads)");
    } else if (!json_is_string(json_object_get(h, "batch")) ||
               strcmp(json_string_value(json_object_get(h, "batch")), batch) != 0) {
        snprintf(r->why, sizeof r->why, "line 1: batch is not the batch the signature names");
    } else if (!lk_id_valid(batch, strlen(batch))) {
        snprintf(r->why, sizeof r->why, "line 1: batch is not a valid id");
    } else if (!label_ok(json_string_value(json_object_get(h, "manufacturer")))) {
        snprintf(r->why, sizeof r->why, "line 1: manufacturer must be 1 to 128 characters, no control characters");
    } else if (!utc_ok(json_string_value(json_object_get(h, "created")))) {
        snprintf(r->why, sizeof r->why, "line 1: created must be RFC 3339 in UTC (2026-12-05T07:41:03Z)");
    } else {
        err = LK_OK;
        r->batch = strdup(batch);
        r->manufacturer = strdup(json_string_value(json_object_get(h, "manufacturer")));
        if (r->batch == NULL || r->manufacturer == NULL) {
            err = LK_ERR_NOMEM;
            snprintf(r->why, sizeof r->why, "out of memory");
        }
    }
    json_decref(h);
    return err;
}

/* The registry's spec of a checked line: the certificate as its one
 * credential, the line's chain, the leaf's dates checked, and the serial and
 * batch as metadata. Pass 1 checks it (lk_registry_import_check, outside the
 * write transaction) and pass 2 adds the same spec, which the registry then
 * need not verify again. */
struct spec_buf {
    lk_reg_credential cred;
    lk_reg_metadata md[2];
    lk_reg_device_spec spec;
};

static void fill_spec(struct spec_buf *b, const struct dev *d, const char *batch)
{
    memset(b, 0, sizeof *b);
    b->cred.format = strcmp(d->format, "ES256_X509_PEM") == 0 ? LK_CRED_ES256_X509_PEM : LK_CRED_RSA_X509_PEM;
    b->cred.pem = (char *)d->cert;
    b->md[0] = (lk_reg_metadata){(char *)"se_serial", (char *)d->serial, strlen(d->serial)};
    b->md[1] = (lk_reg_metadata){(char *)"manifest_batch", (char *)batch, strlen(batch)};
    b->spec.id = d->id;
    b->spec.creds = &b->cred;
    b->spec.ncreds = 1;
    b->spec.metadata = b->md;
    b->spec.nmetadata = 2;
    b->spec.chain_pem = d->chain;
    b->spec.chain_len = d->chain_len;
    b->spec.cert_checks = LK_REG_CHECK_LEAF_DATES;
}

/* Pass 1, in chunks of CHUNK lines: each line's own checks (JSON, members,
 * certificate against the line) on worker threads, then on this thread in
 * line order the report, the duplicates and whether the id is taken, then
 * the registry's checks of the chunk (lk_registry_import_check_many, on
 * threads of its own). Lines are independent until the duplicate check, so
 * the report is the same as one line after the other. */
#define CHUNK 2048u
#define THREADS_MAX 8u

struct job {
    const char *p;
    size_t n;
    int nl;                    /* next_line's answer */
    unsigned long line;
    json_t *o;
    struct dev d;
    uint8_t kd[32], cd[32];
    int rc;                    /* 0 passed, -1 refused, -2 out of memory */
    struct verdict v;
};

struct pool {
    struct job *jobs;
    size_t n, next;
    pthread_mutex_t mu;
};

static void line_checks(struct job *j)
{
    json_error_t je;
    if (j->nl < 0 || j->n + 1 > LK_MANIFEST_LINE_MAX || j->n == 0) {
        vrefuse(&j->v, j->nl < 0 ? LK_ERR_REG_INVALID : j->n == 0 ? LK_ERR_REG_INVALID : LK_ERR_REG_LIMIT,
                "%s", j->nl < 0 ? "the last line does not end in a newline (truncated)"
                      : j->n == 0 ? "a blank line" : "the line is over 64 KiB");
        j->rc = -1;
        return;
    }
    if ((j->o = load_line(j->p, j->n, &je)) == NULL) {
        vrefuse(&j->v, LK_ERR_REG_INVALID, "not JSON: %.100s", je.text);
        j->rc = -1;
        return;
    }
    j->rc = parse_dev(&j->v, j->o, &j->d);
    if (j->rc == 0)
        j->rc = check_cert(&j->v, &j->d, j->kd, j->cd);
}

static void *line_worker(void *arg)
{
    struct pool *pl = arg;
    for (;;) {
        size_t at, end;
        pthread_mutex_lock(&pl->mu);
        at = pl->next;
        end = at + 16 < pl->n ? at + 16 : pl->n;
        pl->next = end;
        pthread_mutex_unlock(&pl->mu);
        if (at >= end)
            break;
        for (size_t i = at; i < end; i++)
            line_checks(&pl->jobs[i]);
    }
    ERR_clear_error();
    return NULL;
}

static unsigned online_cpus(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1u : c > (long)THREADS_MAX ? THREADS_MAX : (unsigned)c;
}

/* Every job's line checks, on up to threads threads. */
static void run_line_checks(struct job *jobs, size_t n, unsigned threads)
{
    struct pool pl = {jobs, n, 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t tid[THREADS_MAX];
    unsigned nt = 0;
    if (n >= 64)
        for (unsigned t = 0; t < threads && threads > 1; t++)
            if (pthread_create(&tid[nt], NULL, line_worker, &pl) == 0)
                nt++;
    if (nt == 0)
        line_worker(&pl);
    for (unsigned t = 0; t < nt; t++)
        pthread_join(tid[t], NULL);
}

static void jobs_free(struct job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dev_free(&jobs[i].d);
        json_decref(jobs[i].o);
        memset(&jobs[i], 0, sizeof jobs[i]);
    }
}

/* The report's entry at of a refused line (the first reason stands). */
static void refuse_at(lk_manifest_report *r, size_t at, lk_err err, const char *why)
{
    lk_manifest_result *x = &r->results[at];
    if (x->err != LK_OK)
        return;
    x->err = err;
    x->why = strdup(why);
    r->nrefused++;
}

/* This thread's part of a chunk, in line order. */
static lk_err chunk_report(lk_registry *reg, const lk_reg_name *name, struct job *jobs, size_t n,
                           lk_manifest_report *r, struct set *seen, size_t *first)
{
    *first = r->nresults;
    for (size_t k = 0; k < n; k++) {
        struct job *j = &jobs[k];
        uint8_t t[32];
        if (r->ndevices == LK_MANIFEST_DEVICES_MAX) {
            snprintf(r->why, sizeof r->why, "more than %u devices", LK_MANIFEST_DEVICES_MAX);
            return LK_ERR_REG_LIMIT;
        }
        r->ndevices++;
        if (j->rc == -2)
            return LK_ERR_NOMEM;
        if (result_add(r, j->line, j->o ? json_string_value(json_object_get(j->o, "deviceId")) : NULL) != 0)
            return LK_ERR_NOMEM;
        if (j->rc != 0) {
            refuse_line(r, j->v.err, "%s", j->v.why);
            continue;
        }
        /* One set for the three identities: each digest is tagged with its kind. The serial is
         * not one of them: it traces a device to its element, and a token that holds several
         * devices' keys (latchkey provision's `object=%s` in one token, an HSM) puts its one
         * serial on each of their lines. */
        const uint8_t *dg[3] = {NULL, j->kd, j->cd};
        const char *what[3] = {"deviceId", "publicKey", "certificate"};
        for (int q = 0; q < 3 && j->rc == 0; q++) {
            long at;
            if (q == 0) {
                tagged('i', j->d.id, strlen(j->d.id), t);
                dg[q] = t;
            }
            if ((at = set_check(seen, dg[q], j->line)) < 0)
                return LK_ERR_NOMEM;
            if (at > 0) {
                refuse_line(r, LK_ERR_REG_INVALID, "its %s is also on line %ld", what[q], at);
                j->rc = -1;
            }
        }
        if (j->rc == 0) {
            lk_reg_device dv;
            char why[256] = "";
            lk_err e = lk_registry_get_device(reg, name, j->d.id, 0, &dv, why, sizeof why);
            if (e == LK_OK) {
                lk_reg_device_free(&dv);
                refuse_line(r, LK_ERR_REG_EXISTS, "device %s exists in the registry already", j->d.id);
                j->rc = -1;
            } else if (e != LK_ERR_REG_NOT_FOUND) {
                snprintf(r->why, sizeof r->why, "the registry: %s", why[0] ? why : lk_strerror(e));
                return e;
            }
        }
    }
    return LK_OK;
}

/* The registry's certificate checks (chain, CRLs, dates) of the chunk's
 * lines that passed, here rather than under its write lock. */
static lk_err chunk_registry(lk_registry *reg, const lk_reg_name *name, struct job *jobs, size_t n,
                             lk_manifest_report *r, size_t first, unsigned threads)
{
    struct spec_buf *sb = malloc(n * sizeof *sb);
    lk_reg_device_spec *specs = malloc(n * sizeof *specs);
    size_t *at = malloc(n * sizeof *at);
    lk_err *errs = malloc(n * sizeof *errs);
    char **whys = calloc(n, sizeof *whys);
    size_t m = 0;
    char why[512] = "";
    lk_err e = LK_OK;
    if (sb == NULL || specs == NULL || at == NULL || errs == NULL || whys == NULL) {
        e = LK_ERR_NOMEM;
        snprintf(r->why, sizeof r->why, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n; k++)
        if (jobs[k].rc == 0) {
            fill_spec(&sb[m], &jobs[k].d, r->batch);
            specs[m] = sb[m].spec;
            specs[m].creds = &sb[m].cred;
            specs[m].metadata = sb[m].md;
            at[m++] = first + k;
        }
    e = lk_registry_import_check_many(reg, name, specs, m, threads, errs, whys, why, sizeof why);
    if (e != LK_OK) {
        snprintf(r->why, sizeof r->why, "the registry: %.400s", why[0] ? why : lk_strerror(e));
        goto out;
    }
    for (size_t k = 0; k < m; k++)
        if (errs[k] != LK_OK)
            refuse_at(r, at[k], errs[k], whys[k] ? whys[k] : lk_strerror(errs[k]));
out:
    if (whys != NULL)
        for (size_t k = 0; k < m; k++)
            free(whys[k]);
    free(whys);
    free(errs);
    free(at);
    free(specs);
    free(sb);
    return e;
}

/* The lines left to walk, counted up to max. */
static size_t lines_left(const struct walk *w, size_t max)
{
    size_t n = 0, pos = w->pos;
    while (pos < w->len && n < max) {
        const char *e = memchr(w->data + pos, '\n', w->len - pos);
        n++;
        pos = e ? (size_t)(e - w->data) + 1 : w->len;
    }
    return n;
}

static lk_err check_lines(lk_registry *reg, const lk_reg_name *name, struct walk *w, lk_manifest_report *r,
                          struct set *seen)
{
    /* Jobs for the lines there are, at most a chunk's: a job is about 1 KB,
     * and a manifest of a few lines need not clear 2048 of them. */
    size_t cap = lines_left(w, CHUNK);
    struct job *jobs = calloc(cap > 0 ? cap : 1, sizeof *jobs);
    unsigned threads = online_cpus();
    lk_err err = LK_OK;
    if (jobs == NULL) {
        snprintf(r->why, sizeof r->why, "out of memory");
        return LK_ERR_NOMEM;
    }
    json_object_seed(0); /* jansson's hash seed, set once before any thread parses */
    for (;;) {
        size_t n = 0, first;
        while (n < cap) {
            struct job *j = &jobs[n];
            if ((j->nl = next_line(w, &j->p, &j->n)) == 0)
                break;
            j->line = w->line;
            n++;
        }
        if (n == 0)
            break;
        run_line_checks(jobs, n, threads);
        err = chunk_report(reg, name, jobs, n, r, seen, &first);
        if (err == LK_OK)
            err = chunk_registry(reg, name, jobs, n, r, first, threads);
        jobs_free(jobs, n);
        if (err != LK_OK)
            break;
    }
    if (err == LK_ERR_NOMEM && r->why[0] == '\0')
        snprintf(r->why, sizeof r->why, "out of memory");
    free(jobs);
    return err;
}

/* Pass 2: the import, staged by the registry and switched in at commit in
 * one short transaction. */
static lk_err import_lines(lk_registry *reg, const lk_reg_name *name, struct walk *w, lk_manifest_report *r,
                           unsigned flags)
{
    char why[512] = "";
    const char *p;
    size_t n;
    size_t at = 0;
    /* Staged: the write lock is taken per chunk and for the final switch,
     * not for the whole import (the broker's writes get in meanwhile). */
    lk_err err = lk_registry_import_begin_staged(reg, name, why, sizeof why);
    if (err != LK_OK) {
        snprintf(r->why, sizeof r->why, "%s", why[0] ? why : lk_strerror(err));
        return err;
    }
    while (next_line(w, &p, &n) > 0 && at < r->nresults) {
        json_t *o = load_line(p, n, NULL);
        struct dev d;
        lk_manifest_result *x = &r->results[at++];
        struct verdict v = {0};
        if (o == NULL || parse_dev(&v, o, &d) != 0) { /* checked in pass 1: only out of memory */
            json_decref(o);
            err = LK_ERR_NOMEM;
            break;
        }
        struct spec_buf sb;
        fill_spec(&sb, &d, r->batch);
        why[0] = '\0';
        lk_err e = lk_registry_import_add(reg, &sb.spec, &x->num_id, why, sizeof why);
        if (e != LK_OK) {
            x->num_id = 0;
            x->err = e;
            x->why = strdup(why[0] ? why : lk_strerror(e));
            r->nrefused++;
            if (e == LK_ERR_NOMEM || e == LK_ERR_REG_STORAGE || e == LK_ERR_REG_BUSY || e == LK_ERR_STATE) {
                dev_free(&d);
                json_decref(o);
                snprintf(r->why, sizeof r->why, "line %lu: %s", x->line, x->why ? x->why : lk_strerror(e));
                err = e;
                break;
            }
        }
        dev_free(&d);
        json_decref(o);
    }
    if (err == LK_OK && r->nrefused > 0)
        err = LK_ERR_REG_INVALID; /* reported by the caller */
    if (err != LK_OK || (flags & LK_MANIFEST_DRY_RUN)) {
        lk_registry_import_abort(reg);
        if (err != LK_OK || (flags & LK_MANIFEST_DRY_RUN))
            for (size_t i = 0; i < r->nresults; i++)
                r->results[i].num_id = 0;
        return err;
    }
    why[0] = '\0';
    err = lk_registry_import_commit(reg, why, sizeof why);
    if (err != LK_OK) {
        snprintf(r->why, sizeof r->why, "commit: %.400s", why[0] ? why : lk_strerror(err));
        for (size_t i = 0; i < r->nresults; i++)
            r->results[i].num_id = 0;
        return err;
    }
    r->imported = 1;
    return LK_OK;
}

/* The first refused line's error, and a summary in r->why. */
static lk_err refused(lk_manifest_report *r)
{
    for (size_t i = 0; i < r->nresults; i++)
        if (r->results[i].err != LK_OK) {
            snprintf(r->why, sizeof r->why, "%llu of %llu devices refused (first: line %lu%s%s: %.300s); nothing "
                     "was imported", (unsigned long long)r->nrefused, (unsigned long long)r->ndevices,
                     r->results[i].line, r->results[i].device_id ? ", " : "",
                     r->results[i].device_id ? r->results[i].device_id : "",
                     r->results[i].why ? r->results[i].why : lk_strerror(r->results[i].err));
            return r->results[i].err;
        }
    return LK_ERR_REG_INVALID;
}

lk_err lk_manifest__devices(lk_registry *reg, const lk_reg_name *name, const char *data, size_t len,
                            const char *batch, uint64_t devices, unsigned flags, lk_manifest_report *r)
{
    struct walk w = {data, len, 0, 0};
    struct set seen = {0};
    lk_err err = header_line(&w, batch, r);
    size_t body = w.pos;
    unsigned long body_line = w.line;
    if (err == LK_OK)
        err = check_lines(reg, name, &w, r, &seen);
    free(seen.k);
    free(seen.line);
    if (err != LK_OK)
        return err;
    if (r->ndevices != devices) {
        snprintf(r->why, sizeof r->why, "the manifest has %llu device lines, its signature says %llu",
                 (unsigned long long)r->ndevices, (unsigned long long)devices);
        return LK_ERR_REG_INVALID;
    }
    if (r->ndevices == 0) {
        snprintf(r->why, sizeof r->why, "the manifest has no device");
        return LK_ERR_REG_INVALID;
    }
    if (r->nrefused > 0)
        return refused(r);
    w.pos = body;
    w.line = body_line;
    err = import_lines(reg, name, &w, r, flags);
    if (err != LK_OK && r->nrefused > 0)
        return refused(r);
    return err;
}
