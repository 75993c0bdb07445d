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

/* ---- a set of 32-byte digests: ids, keys, certificates and serials seen ---- */

struct set {
    uint8_t (*k)[32];
    unsigned long *line;
    size_t n, cap; /* cap a power of two */
};

/* The line that had d first, 0 if none (d is added), -1 out of memory. */
static long set_check(struct set *s, const uint8_t d[32], unsigned long line)
{
    if (s->n * 2 >= s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 4096;
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

/* Parse one device line's members into d (pointers into o). 0, or -1 refused. */
static int parse_dev(lk_manifest_report *r, json_t *o, struct dev *d)
{
    const char *bad = NULL;
    memset(d, 0, sizeof *d);
    if (!json_is_object(o)) {
        refuse_line(r, LK_ERR_REG_INVALID, "not a JSON object");
        return -1;
    }
    if (lk_manifest__only(o, dev_names, &bad) != 0) {
        refuse_line(r, LK_ERR_REG_INVALID, "unknown member \"%.64s\"", bad);
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
        refuse_line(r, LK_ERR_REG_INVALID, "deviceId, format, certificate, publicKey and serial must be strings, "
                                           "chain an array (empty for none)");
        return -1;
    }
    if (!lk_id_valid(d->id, strlen(d->id))) {
        refuse_line(r, LK_ERR_REG_INVALID, "deviceId is not a valid device id");
        return -1;
    }
    if (d->serial[0] == '\0' || strlen(d->serial) > 64) {
        refuse_line(r, LK_ERR_REG_INVALID, "serial must be 1 to 64 characters");
        return -1;
    }
    if (json_array_size(ch) > LK_REG_CHAIN_MAX) {
        refuse_line(r, LK_ERR_REG_INVALID, "chain has %zu certificates, at most %u", json_array_size(ch),
                    LK_REG_CHAIN_MAX);
        return -1;
    }
    size_t total = 0, i;
    json_t *v;
    json_array_foreach(ch, i, v) {
        if (!json_is_string(v)) {
            refuse_line(r, LK_ERR_REG_INVALID, "chain[%zu] is not a string", i);
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

/* The certificate against the line: CN, key, format. Digests of the key and
 * the certificate for the duplicate checks. 0, -1 refused, -2 out of memory.
 * publicKey is compared with the certificate's SubjectPublicKeyInfo byte for
 * byte, without decoding it into a key: OpenSSL 3's key decoders cost more
 * than everything else a line needs, and the factory writes the SPKI it read
 * from the certificate's key (a point compressed in one and not the other is
 * refused, which is the strict reading anyway). */
static int check_cert(lk_manifest_report *r, const struct dev *d, uint8_t key_d[32], uint8_t cert_d[32])
{
    int rc = -1;
    BIO *b = BIO_new_mem_buf(d->cert, -1);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO *kb = NULL;
    char *kname = NULL, *khdr = NULL;
    unsigned char *kder = NULL, *der = NULL;
    long klen = 0;
    if (b == NULL)
        return -2;
    if (x == NULL || !rest_blank(b)) {
        refuse_line(r, LK_ERR_REG_CERT, "certificate is not one PEM X.509 certificate");
        goto out;
    }
    X509_NAME *sn = X509_get_subject_name(x);
    int at = X509_NAME_get_index_by_NID(sn, NID_commonName, -1);
    if (at < 0 || X509_NAME_get_index_by_NID(sn, NID_commonName, at) >= 0) {
        refuse_line(r, LK_ERR_REG_CERT, "the certificate's subject must have exactly one CN (the device id)");
        goto out;
    }
    unsigned char *cn = NULL;
    int cn_len = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(sn, at)));
    int same = cn_len >= 0 && (size_t)cn_len == strlen(d->id) && memcmp(cn, d->id, (size_t)cn_len) == 0;
    OPENSSL_free(cn);
    if (!same) {
        refuse_line(r, LK_ERR_REG_CERT, "the certificate's subject CN is not deviceId");
        goto out;
    }
    if ((kb = BIO_new_mem_buf(d->key, -1)) == NULL) {
        rc = -2;
        goto out;
    }
    if (PEM_read_bio(kb, &kname, &khdr, &kder, &klen) != 1 || strcmp(kname, "PUBLIC KEY") != 0 ||
        khdr[0] != '\0' || !rest_blank(kb)) {
        refuse_line(r, LK_ERR_CRED_INVALID, "publicKey is not one PEM PUBLIC KEY (SubjectPublicKeyInfo)");
        goto out;
    }
    X509_PUBKEY *xk = X509_get_X509_PUBKEY(x);
    int n = xk ? i2d_X509_PUBKEY(xk, &der) : -1;
    if (n <= 0) {
        refuse_line(r, LK_ERR_REG_CERT, "the certificate's key cannot be read");
        goto out;
    }
    if ((long)n != klen || memcmp(der, kder, (size_t)n) != 0) {
        refuse_line(r, LK_ERR_REG_CERT, "the certificate's key is not publicKey");
        goto out;
    }
    ASN1_OBJECT *alg = NULL;
    X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, xk);
    int nid = alg ? OBJ_obj2nid(alg) : NID_undef;
    const char *want = nid == NID_X9_62_id_ecPublicKey ? "ES256_X509_PEM" : nid == NID_rsaEncryption ? "RSA_X509_PEM"
                                                                                                    : NULL;
    if (want == NULL || strcmp(want, d->format) != 0) {
        refuse_line(r, LK_ERR_REG_INVALID, "format %.32s does not match the key (%s)", d->format,
                    want ? want : "neither EC nor RSA");
        goto out;
    }
    tagged('k', der, (size_t)n, key_d);
    OPENSSL_free(der);
    der = NULL;
    n = i2d_X509(x, &der);
    if (n <= 0) {
        rc = -2;
        goto out;
    }
    tagged('c', der, (size_t)n, cert_d);
    rc = 0;
out:
    OPENSSL_free(der);
    OPENSSL_free(kname);
    OPENSSL_free(khdr);
    OPENSSL_free(kder);
    BIO_free(kb);
    X509_free(x);
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

/* Pass 1: every device line checked; results filled. */
static lk_err check_lines(lk_registry *reg, const lk_reg_name *name, struct walk *w, lk_manifest_report *r,
                          struct set *seen)
{
    const char *p;
    size_t n;
    int nl;
    while ((nl = next_line(w, &p, &n)) != 0) {
        json_error_t je;
        json_t *o = NULL;
        struct dev d = {0};
        uint8_t kd[32], cd[32], t[32];
        if (r->ndevices == LK_MANIFEST_DEVICES_MAX) {
            snprintf(r->why, sizeof r->why, "more than %u devices", LK_MANIFEST_DEVICES_MAX);
            return LK_ERR_REG_LIMIT;
        }
        r->ndevices++;
        if (nl < 0 || n + 1 > LK_MANIFEST_LINE_MAX || n == 0) {
            if (result_add(r, w->line, NULL) != 0)
                return LK_ERR_NOMEM;
            refuse_line(r, nl < 0 ? LK_ERR_REG_INVALID : n == 0 ? LK_ERR_REG_INVALID : LK_ERR_REG_LIMIT,
                        nl < 0 ? "the last line does not end in a newline (truncated)"
                        : n == 0 ? "a blank line" : "the line is over 64 KiB");
            continue;
        }
        o = load_line(p, n, &je);
        const char *id = json_string_value(json_object_get(o, "deviceId"));
        if (result_add(r, w->line, id) != 0) {
            json_decref(o);
            return LK_ERR_NOMEM;
        }
        if (o == NULL) {
            refuse_line(r, LK_ERR_REG_INVALID, "not JSON: %.100s", je.text);
            continue;
        }
        int rc = parse_dev(r, o, &d);
        if (rc == 0)
            rc = check_cert(r, &d, kd, cd);
        if (rc == -2) {
            dev_free(&d);
            json_decref(o);
            return LK_ERR_NOMEM;
        }
        if (rc == 0) {
            long at;
            /* One set for the four kinds: each digest is tagged with its kind. */
            struct { char tag; const char *s; size_t n; } k[2] = {{'i', d.id, strlen(d.id)},
                                                                  {'s', d.serial, strlen(d.serial)}};
            const uint8_t *dg[4] = {NULL, NULL, kd, cd};
            const char *what[4] = {"deviceId", "serial", "publicKey", "certificate"};
            for (int j = 0; j < 4 && rc == 0; j++) {
                if (j < 2) {
                    tagged(k[j].tag, k[j].s, k[j].n, t);
                    dg[j] = t;
                }
                if ((at = set_check(seen, dg[j], w->line)) < 0)
                    rc = -2;
                else if (at > 0) {
                    refuse_line(r, LK_ERR_REG_INVALID, "its %s is also on line %ld", what[j], at);
                    rc = -1;
                }
            }
        }
        if (rc == 0) {
            lk_reg_device dv;
            char why[256] = "";
            lk_err e = lk_registry_get_device(reg, name, d.id, 0, &dv, why, sizeof why);
            if (e == LK_OK) {
                lk_reg_device_free(&dv);
                refuse_line(r, LK_ERR_REG_EXISTS, "device %s exists in the registry already", d.id);
                rc = -1;
            } else if (e != LK_ERR_REG_NOT_FOUND) {
                dev_free(&d);
                json_decref(o);
                snprintf(r->why, sizeof r->why, "the registry: %s", why[0] ? why : lk_strerror(e));
                return e;
            }
        }
        if (rc == 0) {
            /* The registry's certificate checks (chain, CRLs, dates), here
             * rather than under its write lock. */
            struct spec_buf sb;
            char why[512] = "";
            fill_spec(&sb, &d, r->batch);
            lk_err e = lk_registry_import_check(reg, name, &sb.spec, why, sizeof why);
            if (e == LK_ERR_NOMEM || e == LK_ERR_STATE || e == LK_ERR_REG_NOT_FOUND || e == LK_ERR_REG_STORAGE ||
                e == LK_ERR_REG_BUSY) {
                dev_free(&d);
                json_decref(o);
                snprintf(r->why, sizeof r->why, "the registry: %.400s", why[0] ? why : lk_strerror(e));
                return e;
            }
            if (e != LK_OK)
                refuse_line(r, e, "%s", why[0] ? why : lk_strerror(e));
        }
        dev_free(&d);
        json_decref(o);
        if (rc == -2)
            return LK_ERR_NOMEM;
    }
    return LK_OK;
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
        if (o == NULL || parse_dev(r, o, &d) != 0) { /* checked in pass 1: only out of memory */
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
