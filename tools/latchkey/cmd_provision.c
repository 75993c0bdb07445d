/*
 * latchkey provision: the factory step (docs/provisioning.md, "The factory").
 * For each device of a batch: its key made inside its token (or the key a
 * previous, interrupted run made there reused), its certificate issued by
 * the CA, one manifest line appended and flushed; when the batch is whole,
 * NAME.jsonl.jws: the manufacturer's signature over the file's digest.
 */
#include <errno.h>
#include <search.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <getopt.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_pkcs11.h"
#include "ca.h"
#include "cli.h"
#include "se_pkey.h"

#define LINE_MAX_BYTES 65536 /* a manifest line, its "\n" included */
#define BATCH_MAX 1000000    /* devices in one batch */

static const char provision_usage[] =
    "usage: latchkey provision --ca DIR --token 'pkcs11:token=T;object=%s?module-path=M&pin-source=F'\n"
    "                          --batch ID (--ids FILE | --prefix P --count N)\n"
    "                          --signer KEY --manufacturer LABEL --out NAME.jsonl\n"
    "                          [--alg ES256|RS256] [--days N] [--module PATH]\n"
    "\n"
    "For each device: makes its key inside its token (the key labelled with the device\n"
    "id: every %s of --token is replaced by the id), issues its certificate from the CA\n"
    "(subject CN = the device id), and appends one line to the manifest NAME.jsonl;\n"
    "when the batch is complete, writes NAME.jsonl.jws, signed by --signer (a PEM\n"
    "private key file, or a pkcs11: URI). Run again after an interruption with the same\n"
    "options: devices already in the manifest are skipped, a key already in the token is\n"
    "used again, a partial last line is dropped. The format is in docs/provisioning.md.\n"
    "  --ids FILE          one device id per line;  --prefix P --count N: P1..PN, zero-padded\n"
    "  --alg               the devices' keys (default ES256)\n"
    "  --days N            the device certificates' validity (default 7305: 20 years)\n"
    "Environment: LATCHKEY_PKCS11_PIN, LATCHKEY_PKCS11_MODULE.\n";

/* SIGINT / SIGTERM: the device being made is finished, then the run stops
 * with a manifest that the same command continues. */
static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

struct prov_opts {
    const char *ca, *token, *batch, *ids, *prefix, *signer, *manufacturer, *out, *alg, *module;
    long long count, days;
};

struct batch {
    char **ids;
    size_t n;
    struct hsearch_data done; /* the ids already in the manifest */
    size_t done_n;
};

/* The ids of the batch, checked: valid, no repeats. */
static int batch_ids(const struct prov_opts *o, struct batch *b)
{
    struct hsearch_data seen;
    int rc = EXIT_OK;
    if (o->ids != NULL) {
        FILE *f = fopen(o->ids, "r");
        char *line = NULL;
        size_t cap = 0, alloc = 0;
        ssize_t len;
        if (f == NULL) {
            tool_error("provision", LK_ERR_FILE_MISSING, "%s: %s", tool_shown(o->ids), strerror(errno));
            return EXIT_FILE;
        }
        while ((len = getline(&line, &cap, f)) >= 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
                line[--len] = '\0';
            if (len == 0)
                continue;
            if (b->n == alloc) {
                char **g = realloc(b->ids, (alloc = alloc ? alloc * 2 : 64) * sizeof *g);
                if (g == NULL)
                    break;
                b->ids = g;
            }
            b->ids[b->n++] = strdup(line);
        }
        free(line);
        fclose(f);
    } else {
        int width = snprintf(NULL, 0, "%lld", o->count);
        b->ids = calloc((size_t)o->count, sizeof *b->ids);
        for (long long i = 0; b->ids != NULL && i < o->count; i++) {
            char id[300];
            snprintf(id, sizeof id, "%s%0*lld", o->prefix, width, i + 1);
            b->ids[b->n++] = strdup(id);
        }
    }
    if (b->n == 0 || b->n > BATCH_MAX)
        return tool_usage_error("provision: a batch has 1 to %d devices", BATCH_MAX);
    memset(&seen, 0, sizeof seen);
    if (hcreate_r(b->n * 2, &seen) == 0)
        return EXIT_FAIL;
    for (size_t i = 0; i < b->n && rc == EXIT_OK; i++) {
        ENTRY e = {b->ids[i], NULL}, *r;
        if (b->ids[i] == NULL)
            rc = EXIT_FAIL;
        else if (!ca_id_ok(b->ids[i]))
            rc = tool_usage_error("provision: '%s' is not a valid device id", tool_shown(b->ids[i]));
        else if (hsearch_r(e, FIND, &r, &seen) != 0)
            rc = tool_usage_error("provision: device '%s' is twice in the batch", tool_shown(b->ids[i]));
        else if (hsearch_r(e, ENTER, &r, &seen) == 0)
            rc = EXIT_FAIL;
    }
    hdestroy_r(&seen);
    return rc;
}

/* Read back an interrupted run's manifest: header checked, a partial last
 * line cut off, the ids written put in b->done. *fresh = 1 when there is
 * nothing to keep (no file, or not even a whole header line). */
static int resume(const struct prov_opts *o, struct batch *b, int *fresh)
{
    FILE *f = fopen(o->out, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    off_t good = 0;
    long lineno = 0;
    int rc = EXIT_OK;

    *fresh = 1;
    if (f == NULL) {
        if (errno == ENOENT)
            return EXIT_OK;
        tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(o->out), strerror(errno));
        return EXIT_FILE;
    }
    while (rc == EXIT_OK && (len = getline(&line, &cap, f)) >= 0) {
        json_t *j;
        json_error_t je;
        if (len == 0 || line[len - 1] != '\n')
            break; /* the partial line an interruption left: dropped */
        lineno++;
        j = json_loadb(line, (size_t)len, 0, &je);
        if (lineno == 1) {
            const char *batch = j ? json_string_value(json_object_get(j, "batch")) : NULL;
            if (j == NULL || json_integer_value(json_object_get(j, "latchkeyManifest")) != 1 || batch == NULL) {
                tool_error("provision", LK_ERR_ENCODING, "%s exists and is not a latchkey manifest: refused "
                           "(nothing is overwritten)", tool_shown(o->out));
                rc = EXIT_INVALID;
            } else if (strcmp(batch, o->batch) != 0) {
                tool_error("provision", LK_ERR_ARG, "%s holds batch '%s', not '%s': refused", tool_shown(o->out),
                           tool_shown(batch), tool_shown(o->batch));
                rc = EXIT_INVALID;
            }
        } else {
            const char *id = j ? json_string_value(json_object_get(j, "deviceId")) : NULL;
            ENTRY e, *r;
            if (id == NULL) {
                tool_error("provision", LK_ERR_ENCODING, "%s line %ld is not a manifest device line: refused",
                           tool_shown(o->out), lineno);
                rc = EXIT_INVALID;
            } else {
                e.key = strdup(id);
                e.data = NULL;
                if (e.key == NULL || hsearch_r(e, ENTER, &r, &b->done) == 0)
                    rc = EXIT_FAIL;
                else if (r->key != e.key) {
                    free(e.key);
                    tool_error("provision", LK_ERR_REG_EXISTS, "%s: device '%s' is twice in the manifest",
                               tool_shown(o->out), tool_shown(id));
                    rc = EXIT_INVALID;
                } else
                    b->done_n++;
            }
        }
        json_decref(j);
        good += len;
    }
    free(line);
    fclose(f);
    if (rc != EXIT_OK)
        return rc;
    if (truncate(o->out, good) != 0) {
        tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(o->out), strerror(errno));
        return EXIT_FILE;
    }
    *fresh = lineno == 0;
    return EXIT_OK;
}

/* template with every %s replaced by id, the id's '%' and '+' percent-encoded
 * (RFC 7512 values); NULL when too long. */
static char *key_uri(const char *tmpl, const char *id)
{
    char enc[800], *out;
    size_t n = 0, len = 0;
    for (const char *p = id; *p && n + 4 < sizeof enc; p++) {
        if (*p == '%' || *p == '+')
            n += (size_t)snprintf(enc + n, sizeof enc - n, "%%%02X", (unsigned char)*p);
        else
            enc[n++] = *p;
    }
    enc[n] = '\0';
    if ((out = malloc(LK_KEY_REF_MAX + 1)) == NULL)
        return NULL;
    for (const char *p = tmpl; *p; p++) {
        const char *add = p[0] == '%' && p[1] == 's' ? enc : NULL;
        size_t k = add ? strlen(add) : 1;
        if (len + k > LK_KEY_REF_MAX) {
            free(out);
            return NULL;
        }
        memcpy(out + len, add ? add : p, k);
        len += k;
        p += add ? 1 : 0;
    }
    out[len] = '\0';
    return out;
}

/* The URI without the attributes that name a key within the token: equal
 * values mean the same token (one handle serves both). */
static void token_part(const char *uri, char *out, size_t size)
{
    const char *q = strchr(uri, '?'), *end = q ? q : uri + strlen(uri), *p = uri;
    size_t n = 0;
    while (p < end && n + 1 < size) {
        const char *seg_end = memchr(p, ';', (size_t)(end - p));
        size_t k;
        if (seg_end == NULL)
            seg_end = end;
        k = (size_t)(seg_end - p);
        if (!(strncmp(p, "object=", 7) == 0 || strncmp(p, "id=", 3) == 0 || strncmp(p, "type=", 5) == 0) &&
            n + k + 2 < size) {
            memcpy(out + n, p, k);
            n += k;
            out[n++] = ';';
        }
        p = seg_end + (seg_end < end);
    }
    out[n] = '\0';
    if (q != NULL && n + strlen(q) + 1 < size)
        strcat(out, q);
}

static char *b64url(const unsigned char *in, size_t len)
{
    size_t cap = LK_B64URL_ENCODED_LEN(len) + 1, n = 0;
    char *out = malloc(cap);
    if (out != NULL && lk_b64url_encode(in, len, out, cap, &n) != LK_OK) {
        free(out);
        out = NULL;
    }
    return out;
}

/* The manifest's size, SHA-256 and device lines, read back from the disk. */
static int file_digest(const char *path, unsigned char sha[32], long long *size, long long *devices)
{
    FILE *f = fopen(path, "r");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[65536];
    size_t n;
    long long lines = 0;
    int ok = f != NULL && md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    *size = 0;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        ok = EVP_DigestUpdate(md, buf, n) == 1;
        *size += (long long)n;
        for (size_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, sha, NULL) == 1;
    if (f != NULL)
        fclose(f);
    EVP_MD_CTX_free(md);
    *devices = lines - 1;
    return ok ? 0 : -1;
}

/* NAME.jsonl.jws (docs/provisioning.md, "The manifest signature"). */
static int write_jws(const struct prov_opts *o, EVP_PKEY *signer, long long *devices_out)
{
    unsigned char sha[32], spki_sha[32], sig[LK_SIG_MAX_BYTES];
    char sha_hex[65], kid[65], path[4200], tmp[4300];
    unsigned char *spki = NULL;
    int spki_len = i2d_PUBKEY(signer, &spki);
    long long size, devices;
    const char *base = strrchr(o->out, '/');
    char *h = NULL, *p = NULL, *hb = NULL, *pb = NULL, *sb = NULL, *signing = NULL;
    size_t sig_len = 0;
    json_t *hj, *pj;
    FILE *f;
    int ok;

    base = base ? base + 1 : o->out;
    if (spki_len <= 0 || file_digest(o->out, sha, &size, &devices) != 0) {
        OPENSSL_free(spki);
        tool_error("provision", LK_ERR_IO, "%s: cannot read the manifest back", tool_shown(o->out));
        return EXIT_FAIL;
    }
    *devices_out = devices;
    SHA256(spki, (size_t)spki_len, spki_sha);
    OPENSSL_free(spki);
    tool_hex(sha, 32, sha_hex);
    tool_hex(spki_sha, 32, kid);
    hj = json_pack("{s:s,s:s,s:s}", "alg", lk_alg_name(tool_pkey_alg(signer)), "typ", "latchkey-manifest+jws",
                   "kid", kid);
    pj = json_pack("{s:s,s:s,s:I,s:I,s:s,s:I}", "manifest", base, "sha256", sha_hex, "size", (json_int_t)size,
                   "devices", (json_int_t)devices, "batch", o->batch, "iat", (json_int_t)time(NULL));
    h = hj ? json_dumps(hj, JSON_COMPACT) : NULL;
    p = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
    json_decref(hj);
    json_decref(pj);
    hb = h ? b64url((const unsigned char *)h, strlen(h)) : NULL;
    pb = p ? b64url((const unsigned char *)p, strlen(p)) : NULL;
    if (hb && pb && (signing = malloc(strlen(hb) + strlen(pb) + 2)) != NULL)
        sprintf(signing, "%s.%s", hb, pb);
    ok = signing != NULL && tool_jws_sign(signer, (const unsigned char *)signing, strlen(signing), sig, &sig_len) == 0 &&
         (sb = b64url(sig, sig_len)) != NULL;
    if (!ok) {
        tool_error("provision", LK_ERR_SIGN, "the manifest could not be signed with --signer");
    } else {
        snprintf(path, sizeof path, "%s.jws", o->out);
        snprintf(tmp, sizeof tmp, "%s.jws.tmp", o->out);
        f = fopen(tmp, "w");
        ok = f != NULL && fprintf(f, "%s.%s\n", signing, sb) > 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
        ok = f != NULL && fclose(f) == 0 && ok && rename(tmp, path) == 0;
        if (!ok)
            tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(path), strerror(errno));
    }
    free(h); free(p); free(hb); free(pb); free(sb); free(signing);
    return ok ? EXIT_OK : EXIT_FAIL;
}

/* The manufacturer's key: a PEM private key file, or a key in a token. */
static EVP_PKEY *open_signer(const struct prov_opts *o, struct tool_key *tk, int *rc)
{
    EVP_PKEY *pk = NULL;
    memset(tk, 0, sizeof *tk);
    if (tool_key_is_pkcs11(o->signer)) {
        struct tool_key_opts ko = {0};
        lk_err err;
        ko.key = o->signer;
        ko.module = o->module;
        if ((*rc = tool_key_open(&ko, tk)) != EXIT_OK)
            return NULL;
        if ((pk = tool_se_pkey(&tk->se, o->signer, NULL, &err)) == NULL) {
            tool_key_error(tk, "provision --signer", err);
            *rc = tool_exit_code(err);
            tool_key_close(tk);
        }
        return pk;
    } else {
        FILE *f = fopen(o->signer, "r");
        if (f != NULL) {
            pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
            fclose(f);
        }
        if (pk == NULL) {
            tool_error("provision", LK_ERR_FILE_UNUSABLE, "--signer %s: not a readable PEM private key (or give "
                       "a pkcs11: URI)", tool_shown(o->signer));
            *rc = EXIT_FILE;
        } else if ((*rc = ca_key_acceptable("provision --signer", pk)) != EXIT_OK) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
        return pk;
    }
}

/* A key found in the token (made by an interrupted run) is used only if it
 * signs and its public key verifies the signature: an interruption inside
 * the key generation may leave the public half alone. */
static int key_signs(const lk_se *se, const char *uri, lk_alg alg, const uint8_t *pub, size_t pub_len)
{
    static const char probe[] = "latchkey provision: does this key sign?";
    uint8_t digest[LK_SHA256_BYTES], sig[LK_SIG_MAX_BYTES], der[LK_SIG_MAX_BYTES + 16];
    size_t sig_len = 0;
    const unsigned char *pp = pub;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &pp, (long)pub_len);
    EVP_PKEY_CTX *ctx = NULL;
    int ok = 0;
    SHA256((const unsigned char *)probe, sizeof probe - 1, digest);
    if (pk != NULL && lk_se_sign_digest(se, uri, alg, digest, sig, sizeof sig, &sig_len) == LK_OK &&
        (ctx = EVP_PKEY_CTX_new(pk, NULL)) != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1) {
        if (alg == LK_ALG_ES256) {
            /* JWS r||s to the DER that OpenSSL verifies. */
            ECDSA_SIG *es = ECDSA_SIG_new();
            BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
            unsigned char *dp = der;
            int n = -1;
            if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
                r = s = NULL;
                n = i2d_ECDSA_SIG(es, &dp);
            }
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            ok = n > 0 && EVP_PKEY_verify(ctx, der, (size_t)n, digest, sizeof digest) == 1;
        } else {
            ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
                 EVP_PKEY_verify(ctx, sig, sig_len, digest, sizeof digest) == 1;
        }
    }
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return ok;
}

/* One device: key, certificate, manifest line. */
static int one_device(const struct prov_opts *o, struct ca *ca, struct tool_key *tk, char *tok_cached,
                      size_t tok_size, const char *id, FILE *out, int *reused)
{
    lk_alg want = lk_alg_from_name(o->alg, strlen(o->alg)), alg = LK_ALG_NONE;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0, nchain;
    char serial[17], part[LK_KEY_REF_MAX + 2];
    char *uri = key_uri(o->token, id), *cert_pem = NULL, *pub_pem = NULL, *line = NULL;
    const unsigned char *pp = pub;
    EVP_PKEY *pk = NULL;
    X509 *x = NULL;
    json_t *j = NULL, *chain = NULL;
    lk_err err;
    int rc = EXIT_FAIL;

    *reused = 0;
    if (uri == NULL)
        return tool_usage_error("provision: the key URI for '%s' is too long", tool_shown(id));
    token_part(uri, part, sizeof part);
    if (tk->p11 == NULL || strcmp(part, tok_cached) != 0) {
        struct tool_key_opts ko = {0};
        tool_key_close(tk);
        ko.key = uri;
        ko.module = o->module;
        if ((rc = tool_key_open(&ko, tk)) != EXIT_OK) {
            free(uri);
            return rc;
        }
        snprintf(tok_cached, tok_size, "%s", part);
    }
    /* Generate first: the token refuses a label that a key has already (one
     * lookup fewer than asking first, and a token's lookups cost). */
    err = lk_se_generate(&tk->se, uri, alg = want, 0, pub, sizeof pub, &pub_len);
    if (err == LK_ERR_KEY_EXISTS) {
        *reused = 1; /* made by an interrupted run: never a second key for a device */
        err = lk_se_public_key(&tk->se, uri, &alg, pub, sizeof pub, &pub_len);
    }
    if (err != LK_OK) {
        tool_key_error(tk, id, err);
        rc = tool_exit_code(err);
        goto out;
    }
    if (*reused && err == LK_OK && alg == want && !key_signs(&tk->se, uri, alg, pub, pub_len)) {
        tool_error("provision", LK_ERR_KEY_NOT_FOUND, "device '%s': the token has a public key labelled with its "
                   "id but cannot sign with it (a key generation interrupted half-way?): delete that object "
                   "from the token and run again", tool_shown(id));
        rc = EXIT_DEVICE;
        goto out;
    }
    if (alg != want) {
        tool_error("provision", LK_ERR_KEY_TYPE, "device '%s': the token holds a %s key for it, not %s: refused",
                   tool_shown(id), lk_alg_name(alg), lk_alg_name(want));
        rc = EXIT_DEVICE;
        goto out;
    }
    if (lk_pkcs11_token_serial(tk->p11, serial, sizeof serial) != LK_OK ||
        (pk = d2i_PUBKEY(NULL, &pp, (long)pub_len)) == NULL || (x = ca_issue_device(ca, pk, id,
                                                                                    (long)(o->days ? o->days : CA_DEVICE_DAYS))) == NULL)
        goto out;
    cert_pem = ca_cert_pem(x);
    pub_pem = ca_pubkey_pem(pk);
    chain = json_array();
    nchain = (size_t)sk_X509_num(ca->chain);
    for (size_t i = 0; chain != NULL && i < nchain; i++) {
        char *c = ca_cert_pem(sk_X509_value(ca->chain, (int)i));
        if (c == NULL || json_array_append_new(chain, json_string(c)) != 0)
            json_decref(chain), chain = NULL;
        free(c);
    }
    if (cert_pem && pub_pem && chain)
        j = json_pack("{s:s,s:s,s:s,s:o,s:s,s:s}", "deviceId", id, "format",
                      alg == LK_ALG_ES256 ? "ES256_X509_PEM" : "RSA_X509_PEM", "certificate", cert_pem, "chain", chain,
                      "publicKey", pub_pem, "serial", serial);
    else
        json_decref(chain);
    line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (line == NULL)
        goto out;
    if (strlen(line) + 1 > LINE_MAX_BYTES) {
        tool_error("provision", LK_ERR_TOO_MANY, "device '%s': its manifest line would be over 64 KiB",
                   tool_shown(id));
        goto out;
    }
    /* Flushed to the kernel at once: a killed run loses at most this line. */
    if (fprintf(out, "%s\n", line) < 0 || fflush(out) != 0) {
        tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(o->out), strerror(errno));
        goto out;
    }
    rc = EXIT_OK;
out:
    free(line);
    json_decref(j);
    free(cert_pem);
    free(pub_pem);
    X509_free(x);
    EVP_PKEY_free(pk);
    free(uri);
    return rc;
}

static int check_opts(const struct prov_opts *o)
{
    if (o->ca == NULL || o->token == NULL || o->batch == NULL || o->signer == NULL || o->manufacturer == NULL ||
        o->out == NULL)
        return tool_usage_error("provision: --ca, --token, --batch, --signer, --manufacturer and --out are required");
    if ((o->ids == NULL) == (o->prefix == NULL) || (o->prefix != NULL) != (o->count != 0))
        return tool_usage_error("provision: give --ids FILE, or --prefix P with --count N");
    if (!tool_key_is_pkcs11(o->token) || strstr(o->token, "%s") == NULL)
        return tool_usage_error("provision: --token is a pkcs11: URI with %%s where the device id goes, e.g. "
                                "'pkcs11:token=factory;object=%%s?module-path=...'");
    if (!ca_id_ok(o->batch))
        return tool_usage_error("provision: --batch '%s' is not a valid id (a letter, then 2 to 254 of "
                                "A-Za-z0-9-._~+%%)", tool_shown(o->batch));
    if (lk_alg_from_name(o->alg, strlen(o->alg)) == LK_ALG_NONE)
        return tool_usage_error("--alg must be ES256 or RS256, not '%s'", tool_shown(o->alg));
    if (strlen(o->out) > 4000)
        return tool_usage_error("provision: --out is too long");
    for (const char *m = o->manufacturer; *m; m++)
        if ((unsigned char)*m < 0x20 || *m == 0x7f)
            return tool_usage_error("provision: --manufacturer may not hold control characters");
    if (o->manufacturer[0] == '\0' || strlen(o->manufacturer) > 128)
        return tool_usage_error("provision: --manufacturer is 1 to 128 characters");
    return EXIT_OK;
}

int cmd_provision(int argc, char **argv)
{
    static const struct option opts[] = {
        {"ca", required_argument, 0, 'c'}, {"token", required_argument, 0, 't'},
        {"batch", required_argument, 0, 'b'}, {"ids", required_argument, 0, 'i'},
        {"prefix", required_argument, 0, 'p'}, {"count", required_argument, 0, 'n'},
        {"signer", required_argument, 0, 's'}, {"manufacturer", required_argument, 0, 'M'},
        {"out", required_argument, 0, 'o'}, {"alg", required_argument, 0, 'a'},
        {"days", required_argument, 0, 'd'}, {"module", required_argument, 0, 'm'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct prov_opts o = {0};
    struct batch b;
    struct ca ca;
    struct tool_key signer_tk, tk;
    char tok_cached[LK_KEY_REF_MAX + 2] = "";
    EVP_PKEY *signer = NULL;
    FILE *out = NULL;
    size_t made = 0, reused_n = 0;
    long long devices = 0;
    int c, rc, fresh, lockfd = -1;

    o.alg = "ES256";
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o.ca = optarg; break;
        case 't': o.token = optarg; break;
        case 'b': o.batch = optarg; break;
        case 'i': o.ids = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 's': o.signer = optarg; break;
        case 'M': o.manufacturer = optarg; break;
        case 'o': o.out = optarg; break;
        case 'a': o.alg = optarg; break;
        case 'm': o.module = optarg; break;
        case 'n':
            if (tool_parse_i64(optarg, 1, BATCH_MAX, &o.count) != 0)
                return tool_usage_error("--count takes 1 to %d", BATCH_MAX);
            break;
        case 'd':
            if (tool_parse_i64(optarg, 1, CA_DAYS_MAX, &o.days) != 0)
                return tool_usage_error("--days takes a number of days, 1 to %d", CA_DAYS_MAX);
            break;
        case 'h': fputs(provision_usage, stdout); return EXIT_OK;
        default: return tool_bad_option(argc, argv, optind);
        }
    }
    if (optind != argc)
        return tool_usage_error("provision: unexpected argument '%s'", tool_shown(argv[optind]));
    if ((rc = check_opts(&o)) != EXIT_OK)
        return rc;
    memset(&b, 0, sizeof b);
    memset(&tk, 0, sizeof tk);
    if ((rc = batch_ids(&o, &b)) != EXIT_OK)
        goto done_ids;
    if (hcreate_r(b.n * 2 + 16, &b.done) == 0) {
        rc = EXIT_FAIL;
        goto done_ids;
    }
    /* The signer and the CA first: nothing is made in a token that could not be finished. */
    if ((signer = open_signer(&o, &signer_tk, &rc)) == NULL)
        goto done_set;
    if ((rc = ca_open(o.ca, &ca)) != EXIT_OK)
        goto done_signer;
    /* One run at a time on a manifest: two would write the same devices twice. */
    lockfd = open(o.out, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        if (lockfd >= 0 && errno == EWOULDBLOCK)
            tool_error("provision", LK_ERR_STATE, "%s: another 'latchkey provision' is writing it", tool_shown(o.out));
        else
            tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(o.out), strerror(errno));
        rc = lockfd >= 0 && errno == EWOULDBLOCK ? EXIT_LOCKED : EXIT_FILE;
        goto done_ca;
    }
    if ((rc = resume(&o, &b, &fresh)) != EXIT_OK)
        goto done_ca;
    if ((out = fopen(o.out, "a")) == NULL) {
        tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(o.out), strerror(errno));
        rc = EXIT_FILE;
        goto done_ca;
    }
    if (fresh) {
        char now[LK_TIME_MAX];
        json_t *h = json_pack("{s:i,s:s,s:s,s:s}", "latchkeyManifest", 1, "batch", o.batch, "manufacturer",
                              o.manufacturer, "created", lk_time_rfc3339((int64_t)time(NULL), now, sizeof now));
        char *line = h ? json_dumps(h, JSON_COMPACT) : NULL;
        json_decref(h);
        if (line == NULL || fprintf(out, "%s\n", line) < 0 || fflush(out) != 0) {
            tool_error("provision", LK_ERR_IO, "%s: cannot write the header", tool_shown(o.out));
            rc = EXIT_FAIL;
        }
        free(line);
    }
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    for (size_t i = 0; rc == EXIT_OK && i < b.n; i++) {
        ENTRY e = {b.ids[i], NULL}, *r;
        int reused = 0;
        if (hsearch_r(e, FIND, &r, &b.done) != 0)
            continue;
        if (stop_requested) {
            tool_error("provision", LK_ERR_STATE, "interrupted after %zu of %zu devices: run the same command "
                       "again to continue", b.done_n + made, b.n);
            rc = EXIT_FAIL;
            break;
        }
        rc = one_device(&o, &ca, &tk, tok_cached, sizeof tok_cached, b.ids[i], out, &reused);
        made++;
        reused_n += (size_t)reused;
    }
    if (fsync(fileno(out)) != 0 && rc == EXIT_OK) {
        tool_error("provision", LK_ERR_IO, "%s: %s", tool_shown(o.out), strerror(errno));
        rc = EXIT_FAIL;
    }
    fclose(out);
    if (rc == EXIT_OK && b.done_n + made != b.n) {
        tool_error("provision", LK_ERR_ARG, "%s holds devices that are not in this batch's list: refused "
                   "(no signature written)", tool_shown(o.out));
        rc = EXIT_INVALID;
    }
    if (rc == EXIT_OK && (rc = write_jws(&o, signer, &devices)) == EXIT_OK)
        printf("batch %s: %lld devices in %s (%zu new, %zu already there%s), signature %s.jws\n", o.batch, devices,
               o.out, made, b.done_n, reused_n ? ", some keys found in their token" : "", o.out);
    tool_key_close(&tk);
done_ca:
    if (lockfd >= 0)
        close(lockfd);
    ca_close(&ca);
done_signer:
    EVP_PKEY_free(signer);
    if (signer_tk.p11 != NULL)
        tool_key_close(&signer_tk);
done_set:
    hdestroy_r(&b.done);
done_ids:
    for (size_t i = 0; i < b.n; i++)
        free(b.ids[i]);
    free(b.ids);
    return rc;
}
