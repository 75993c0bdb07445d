/*
 * latchkey token verify: the operator's "why is this device refused?".
 *
 * Runs the service's own verifier (lk_verify.h) over a token and the device's
 * credentials, and prints either what the token says (exit 0) or the one
 * precise reason it is refused (exit 9). The token is a bearer credential: it
 * is never printed, not even in part, and its buffer is wiped.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_util.h"
#include "latchkey/lk_verify.h"
#include "cli.h"
#include "admin.h"
#include "tool.h"

#define CTX "token verify"
#define CREDS_MAX 3 /* IoT Core's limit of credentials per device */
#define NOW_MAX 4102444800LL /* 2100-01-01, as `token --now` */

static const char verify_usage[] =
    "usage: latchkey token verify --credential [FORMAT:]FILE [--credential ...] --aud PROJECT\n"
    "                             [--now EPOCH] [--skew S] [--max-lifetime S] [--strict-base64]\n"
    "                             [--format text|json] [TOKEN | -]\n"
    "       latchkey token verify --device D --registry R --project P --region L [--db FILE]\n"
    "                             [--now EPOCH] ... [TOKEN | -]\n"
    "\n"
    "Checks a device's token exactly as the service does, against the device's registered\n"
    "public keys, and prints its header and claims (exit 0) or the one reason it is refused\n"
    "(exit 9, on standard error). The token is read from standard input when TOKEN is '-'\n"
    "or absent (one trailing newline is removed); prefer that: arguments are visible to\n"
    "other users. The token is never printed.\n"
    "  --credential [FORMAT:]FILE  a PEM public key or X.509 certificate, up to 3 (IoT Core's\n"
    "                      limit), tried in order; FORMAT is ES256_PEM, ES256_X509_PEM, RSA_PEM\n"
    "                      or RSA_X509_PEM (default: detected from the PEM); an RSA PUBLIC KEY\n"
    "                      (PKCS#1) is read as the same key\n"
    "  --credential-expires EPOCH  expiry of the preceding --credential (0 = never); an\n"
    "                      expired credential is not tried\n"
    "  --device D          instead of --credential: the device's credentials (and expiry times)\n"
    "                      from the registry database (--db FILE or LATCHKEY_DB; --registry,\n"
    "                      --project or LATCHKEY_PROJECT, --region or LATCHKEY_REGION; D may be\n"
    "                      a numId or a full name); a blocked device or a registry with MQTT\n"
    "                      disabled is refused, as the broker would\n"
    "  --aud PROJECT       the project id the token must name (required with --credential;\n"
    "                      with --device it is the device's project)\n"
    "  --now EPOCH         the time to check at instead of the clock\n"
    "  --skew S            clock skew allowed, 0..3600 (default 600)\n"
    "  --max-lifetime S    longest exp - iat, 1..604800 (default 86400)\n"
    "  --strict-base64     refuse '=' padding (accepted by default, as IoT Core did)\n"
    "  --format text|json  output form (default text)\n";

struct cred_arg {
    const char *file;     /* or NULL: credential index of the registry's device */
    lk_cred_format fmt;
    long long expires;
    unsigned index;
};

/* ---- credentials ---- */

/*
 * "FORMAT:FILE" names the format when the part before the first ':' is one of
 * IoT Core's format names. A prefix that looks like a format name (upper-case
 * letters, digits, '_') but is none is a usage error rather than a file name:
 * "ES256PEM:k.pem" is a typo, not a file. "./A:b" names a file with a colon.
 */
static int parse_cred_arg(const char *arg, struct cred_arg *ca)
{
    const char *colon = strchr(arg, ':');
    size_t i, n;

    ca->file = arg;
    ca->fmt = LK_CRED_UNSPECIFIED;
    ca->expires = 0;
    if (colon == NULL || colon == arg)
        return 0;
    n = (size_t)(colon - arg);
    for (i = 0; i < n; i++) {
        char ch = arg[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return 0; /* not a format prefix: the whole argument is the file */
    }
    ca->fmt = lk_cred_format_from_name(arg, n);
    if (ca->fmt == LK_CRED_UNSPECIFIED)
        return tool_usage_error("--credential: unknown format '%.*s' (ES256_PEM, ES256_X509_PEM, RSA_PEM, "
                                "RSA_X509_PEM; write ./%s for a file whose name has a colon)",
                                   (int)n, arg, arg);
    ca->file = colon + 1;
    if (ca->file[0] == '\0')
        return tool_usage_error("--credential %.*s: the file name is missing", (int)n, arg);
    return 0;
}

/*
 * The library refuses a credential with one code; say what the key actually
 * is, so the operator knows what to fix. Only a diagnosis: the decision was
 * made by lk_cred_parse.
 */
static void explain_cred(const char *pem, size_t len, lk_cred_format fmt, char *out, size_t out_size)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pk = NULL;
    X509 *x = NULL;
    int is_cert = 0;

    snprintf(out, out_size, "%s", "");
    if (memmem(pem, len, "-----BEGIN ", 11) == NULL) {
        snprintf(out, out_size, "no PEM object (expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)");
        goto done;
    }
    if (memmem(pem, len, "PRIVATE KEY-----", 16) != NULL) {
        snprintf(out, out_size, "a private key: give the public key ('latchkey key public') or a certificate");
        goto done;
    }
    {
        const char *first = memmem(pem, len, "-----BEGIN ", 11), *p = pem;
        size_t rest = len - (size_t)(first - pem) - 11;
        if (memmem(first + 11, rest, "-----BEGIN ", 11) != NULL) {
            snprintf(out, out_size, "more than one PEM object (give exactly one key or certificate per file)");
            goto done;
        }
        while (p < first && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
            p++;
        if (p != first) {
            snprintf(out, out_size, "text before the PEM object (the file must hold only the PEM)");
            goto done;
        }
    }
    if (bio == NULL)
        goto done;
    if (memmem(pem, len, "-----BEGIN CERTIFICATE-----", 27) != NULL) {
        is_cert = 1;
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        pk = x != NULL ? X509_get_pubkey(x) : NULL;
    } else if (memmem(pem, len, "-----BEGIN PUBLIC KEY-----", 26) != NULL) {
        pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    } else {
        snprintf(out, out_size, "neither a PUBLIC KEY nor a CERTIFICATE PEM object");
        goto done;
    }
    if (pk == NULL) {
        snprintf(out, out_size, "the %s PEM does not decode", is_cert ? "CERTIFICATE" : "PUBLIC KEY");
        goto done;
    }
    if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        BIGNUM *e = NULL;
        if (bits < 2048 || bits > 8192)
            snprintf(out, out_size, "an RSA key of %d bits (2048 to 8192 accepted)", bits);
        else if (fmt == LK_CRED_ES256_PEM || fmt == LK_CRED_ES256_X509_PEM)
            snprintf(out, out_size, "an RSA key, but the format says %s", lk_cred_format_name(fmt));
        else if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e) &&
                 BN_num_bits(e) > (int)LK_CRED_RSA_E_MAX_BITS)
            snprintf(out, out_size, "an RSA key with a public exponent of %d bits; at most %u",
                     BN_num_bits(e), LK_CRED_RSA_E_MAX_BITS);
        else if (e != NULL && (!BN_is_odd(e) || BN_is_one(e)))
            snprintf(out, out_size, "an RSA key with public exponent %s (an odd one of at least 3 accepted)",
                     BN_is_one(e) ? "1" : "even");
        BN_free(e);
    } else if (EVP_PKEY_is_a(pk, "EC")) {
        char curve[64] = "";
        size_t clen = 0;
        if (EVP_PKEY_get_utf8_string_param(pk, "group", curve, sizeof curve, &clen) == 1 &&
            strcmp(curve, "prime256v1") != 0 && strcmp(curve, "P-256") != 0)
            snprintf(out, out_size, "an EC key on curve %s (only P-256)", curve);
        else if (fmt == LK_CRED_RSA_PEM || fmt == LK_CRED_RSA_X509_PEM)
            snprintf(out, out_size, "a P-256 key, but the format says %s", lk_cred_format_name(fmt));
    } else {
        snprintf(out, out_size, "a %s key (only P-256 and RSA)", EVP_PKEY_get0_type_name(pk));
    }
    if (out[0] == '\0' && fmt != LK_CRED_UNSPECIFIED &&
        is_cert != (fmt == LK_CRED_ES256_X509_PEM || fmt == LK_CRED_RSA_X509_PEM))
        snprintf(out, out_size, "a %s, but the format says %s", is_cert ? "certificate" : "public key",
                 lk_cred_format_name(fmt));
done:
    if (out[0] == '\0')
        snprintf(out, out_size, "%s", lk_strerror(LK_ERR_CRED_INVALID));
    EVP_PKEY_free(pk);
    X509_free(x);
    BIO_free(bio);
}

/* Read and parse credential number pos (1-based); prints the reason and
 * returns an exit code on failure. */
static int load_cred(const struct cred_arg *ca, unsigned pos, lk_cred **out)
{
    char *pem = NULL;
    size_t len = 0;
    FILE *f;
    lk_err err;
    int rc = EXIT_FAIL;

    *out = NULL;
    f = fopen(ca->file, "rb");
    if (f == NULL) {
        int e = errno;
        tool_error(CTX, LK_ERR_IO, "credential %u: %s: %s", pos, ca->file, strerror(e));
        return e == ENOENT || e == ENOTDIR ? EXIT_NOT_FOUND : EXIT_FAIL;
    }
    pem = malloc(LK_CRED_PEM_MAX + 1u);
    if (pem == NULL) {
        fclose(f);
        tool_error(CTX, LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    len = fread(pem, 1, LK_CRED_PEM_MAX + 1u, f);
    if (ferror(f)) {
        tool_error(CTX, LK_ERR_IO, "credential %u: %s: %s", pos, ca->file, strerror(errno));
        goto out;
    }
    if (len == 0) {
        tool_error(CTX, LK_ERR_CRED_INVALID, "credential %u: %s: the file is empty", pos, ca->file);
        rc = EXIT_INVALID;
        goto out;
    }
    if (len > LK_CRED_PEM_MAX) {
        tool_error(CTX, LK_ERR_CRED_INVALID, "credential %u: %s: larger than %u bytes: not a single PEM key",
                   pos, ca->file, LK_CRED_PEM_MAX);
        rc = EXIT_INVALID;
        goto out;
    }
    if (admin_pem_is_pkcs1(pem, len)) {
        char why[160], *spki = NULL;
        size_t n = 0;
        if (admin_pkcs1_to_spki(pem, len, &spki, &n, why, sizeof why) != 1) {
            tool_error(CTX, LK_ERR_CRED_INVALID,
                       "credential %u: %s: %s; a PKCS#1 key converts to the PUBLIC KEY form with "
                       "'openssl rsa -RSAPublicKey_in -in %s -pubout'", pos, ca->file, why, ca->file);
            rc = EXIT_INVALID;
            goto out;
        }
        free(pem);
        pem = spki;
        len = n;
    }
    err = lk_cred_parse(ca->fmt, pem, len, (int64_t)ca->expires, out);
    if (err != LK_OK) {
        char why[160];
        explain_cred(pem, len, ca->fmt, why, sizeof why);
        tool_error(CTX, err, "credential %u: %s: not a usable %s credential: %s", pos, ca->file,
                   ca->fmt == LK_CRED_UNSPECIFIED ? "ES256 or RS256" : lk_cred_format_name(ca->fmt), why);
        rc = err == LK_ERR_NOMEM ? EXIT_FAIL : EXIT_INVALID;
        goto out;
    }
    rc = EXIT_OK;
out:
    fclose(f);
    free(pem);
    return rc;
}

/* ---- the token ---- */

/* The token from stdin: at most LK_VERIFY_MAX_LEN_LIMIT + 1 bytes (one more
 * than any token the verifier takes, so an oversize one is seen as such),
 * without one trailing "\n" or "\r\n". */
static int read_token_stdin(char *buf, size_t size, size_t *len)
{
    size_t n = 0, got;

    *len = 0;
    while (n < size && (got = fread(buf + n, 1, size - n, stdin)) > 0)
        n += got;
    if (ferror(stdin)) {
        tool_error(CTX, LK_ERR_IO, "reading the token from standard input: %s", strerror(errno));
        return EXIT_FAIL;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    *len = n;
    return EXIT_OK;
}

/* Where the signature starts (after the second '.', or the first, or the
 * whole token if it has no '.'): the part that must never be printed. */
static size_t secret_start(const char *tok, size_t len)
{
    const char *d1 = memchr(tok, '.', len), *d2;
    if (d1 == NULL)
        return 0;
    d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
    return (size_t)((d2 != NULL ? d2 : d1) + 1 - tok);
}

/*
 * The verifier's detail as one line of printable ASCII in out (control
 * characters and bytes >= 0x80, which can reach it from jansson's "near"
 * excerpts, become \xNN), or withheld entirely if it contains any
 * 12-character run of the signature (the verifier promises it never does;
 * the tool is the one that prints).
 */
static void clean_why(const char *why, const char *tok, size_t len, char *out, size_t out_size)
{
    size_t s = secret_start(tok, len), n = len - s, w = n < 12 ? n : 12, i, o = 0;

    if (w >= 4)
        for (i = 0; i + w <= n; i++)
            if (memmem(why, strlen(why), tok + s + i, w) != NULL) {
                snprintf(out, out_size, "%s", "(detail withheld: it quoted the signature)");
                return;
            }
    for (i = 0; why[i] != '\0' && o + 5 < out_size; i++) {
        unsigned char ch = (unsigned char)why[i];
        if (ch < 0x20 || ch >= 0x7f)
            o += (size_t)snprintf(out + o, out_size - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

/* Decode and parse one base64url JSON segment of a token that verified. */
static json_t *segment_json(const char *seg, size_t seg_len, unsigned flags)
{
    size_t cap = LK_B64URL_DECODED_MAX(seg_len), n = 0;
    uint8_t *buf = malloc(cap);
    json_t *j = NULL;
    json_error_t jerr;

    if (buf == NULL)
        return NULL;
    if (lk_b64url_decode(seg, seg_len, buf, cap, &n, flags) == LK_OK)
        j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    free(buf);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* A file name as a JSON string even if it is not UTF-8. */
static json_t *json_filename(const char *file)
{
    json_t *s = json_string(file);
    char *copy;
    size_t i;

    if (s != NULL)
        return s;
    copy = strdup(file);
    if (copy == NULL)
        return NULL;
    for (i = 0; copy[i] != '\0'; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    s = json_string(copy);
    free(copy);
    return s;
}

static int print_valid(const char *tok, size_t len, const lk_token_info *info, lk_cred *const *creds,
                       const struct cred_arg *cargs, size_t ncreds, const lk_verify_policy *pol, int json,
                       const char *device)
{
    const char *d1 = memchr(tok, '.', len), *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    unsigned flags = (pol->flags & LK_VERIFY_ALLOW_PADDING) ? LK_B64URL_ALLOW_PADDING : 0u;
    const lk_cred *cred;
    json_t *header = NULL, *claims = NULL, *out = NULL;
    char fp_hex[65], t_now[32], t_iat[32], t_exp[32], t_until[32];
    uint8_t fp[32];
    unsigned pos = info->cred_index + 1u;
    int rc = EXIT_FAIL;

    if (d1 == NULL || d2 == NULL || info->cred_index >= ncreds)
        goto internal;
    header = segment_json(tok, (size_t)(d1 - tok), flags);
    claims = segment_json(d1 + 1, (size_t)(d2 - d1 - 1), flags);
    if (header == NULL || claims == NULL)
        goto internal;
    cred = creds[info->cred_index];
    lk_cred_fingerprint(cred, fp);
    tool_hex(fp, sizeof fp, fp_hex);
    lk_time_rfc3339(pol->now, t_now, sizeof t_now);
    lk_time_rfc3339(info->iat, t_iat, sizeof t_iat);
    lk_time_rfc3339(info->exp, t_exp, sizeof t_exp);
    lk_time_rfc3339(info->valid_until, t_until, sizeof t_until);

    if (json) {
        const struct cred_arg *ca = &cargs[info->cred_index];
        out = json_pack("{s:b, s:s, s:{s:I, s:I, s:o, s:s, s:s}, s:I, s:s, s:I, s:I, s:s, s:I, s:s, s:I, s:s,"
                        " s:O, s:O}",
                        "valid", 1, "alg", lk_alg_name(info->alg),
                        "credential", "position", (json_int_t)pos, "count", (json_int_t)ncreds,
                        ca->file != NULL ? "file" : "device",
                        ca->file != NULL ? json_filename(ca->file) : json_string(device),
                        "format", lk_cred_format_name(lk_cred_get_format(cred)), "sha256", fp_hex,
                        "now", (json_int_t)pol->now, "now_utc", t_now, "skew", (json_int_t)pol->skew,
                        "iat", (json_int_t)info->iat, "iat_utc", t_iat,
                        "exp", (json_int_t)info->exp, "exp_utc", t_exp,
                        "valid_until", (json_int_t)info->valid_until, "valid_until_utc", t_until,
                        "header", header, "claims", claims);
        if (out != NULL && ca->file == NULL)
            json_object_set_new(json_object_get(out, "credential"), "index", json_integer(ca->index));
        if (out == NULL || json_dumpf(out, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) != 0)
            goto internal;
        fputc('\n', stdout);
    } else {
        char *h = json_dumps(header, JSON_COMPACT | JSON_ENSURE_ASCII);
        char *c = json_dumps(claims, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (h == NULL || c == NULL) {
            free(h);
            free(c);
            goto internal;
        }
        printf("valid        yes, at %lld (%s) with skew %lld s\n", (long long)pol->now, t_now, (long long)pol->skew);
        printf("alg          %s\n", lk_alg_name(info->alg));
        if (cargs[info->cred_index].file != NULL)
            printf("credential   %u of %zu: %s (%s, sha256 %s)\n", pos, ncreds, cargs[info->cred_index].file,
                   lk_cred_format_name(lk_cred_get_format(cred)), fp_hex);
        else
            printf("credential   %u of %zu: device %s credential %u (%s, sha256 %s)\n", pos, ncreds, device,
                   cargs[info->cred_index].index, lk_cred_format_name(lk_cred_get_format(cred)), fp_hex);
        printf("iat          %lld  %s\n", (long long)info->iat, t_iat);
        printf("exp          %lld  %s\n", (long long)info->exp, t_exp);
        printf("valid until  %lld  %s  (exp + skew)\n", (long long)info->valid_until, t_until);
        printf("header       %s\n", h);
        printf("claims       %s\n", c);
        free(h);
        free(c);
    }
    if (fflush(stdout) != 0) {
        tool_error(CTX, LK_ERR_IO, "writing the result: %s", strerror(errno));
        goto done;
    }
    rc = EXIT_OK;
    goto done;
internal:
    tool_error(CTX, LK_ERR_NOMEM, "the token verified, but printing it failed (out of memory?)");
done:
    json_decref(out);
    json_decref(header);
    json_decref(claims);
    return rc;
}

/*
 * A bad option is named only when it cannot be a token: a short option by
 * its letter; a long one by its text only if it has no '.' (every token has
 * one) and is short.
 */
static int bad_option(const char *arg, int short_opt, int missing_value)
{
    const char *what = missing_value ? "needs a value" : "is unknown";
    if (short_opt > 0 && short_opt < 0x7f && short_opt > 0x20)
        return tool_usage_error(CTX ": option '-%c' %s (see 'latchkey token verify --help')", short_opt, what);
    if (arg != NULL && strncmp(arg, "--", 2) == 0 && strchr(arg, '.') == NULL && strlen(arg) <= 40)
        return tool_usage_error(CTX ": option '%s' %s (see 'latchkey token verify --help')", arg, what);
    return tool_usage_error(CTX ": an option %s (see 'latchkey token verify --help')", what);
}

/* What the registry says of the device: up to 3 credentials, and whether
 * the broker would let it in at all (*refusal: why not, or ""). Prints the
 * reason and returns an exit code on failure. */
static int device_creds(struct admin *a, const char *leaf, struct cred_arg *cargs, lk_cred **creds,
                        size_t *ncreds, char **dev_id, char *refusal, size_t refusal_size)
{
    char why[512] = "", *buf = NULL;
    const char *id = NULL;
    lk_reg_device d;
    lk_reg_registry r;
    unsigned i;
    lk_err err;
    int rc;

    *ncreds = 0;
    refusal[0] = '\0';
    if ((rc = admin_open(a, ADMIN_OPEN_READ)) != EXIT_OK || (rc = admin_device_id(a, leaf, &buf, &id)) != EXIT_OK) {
        free(buf);
        return rc;
    }
    memset(&d, 0, sizeof d);
    memset(&r, 0, sizeof r);
    err = lk_registry_get_device(a->reg, &a->name, id, 0, &d, why, sizeof why);
    if (err == LK_OK)
        err = lk_registry_get_registry(a->reg, &a->name, &r, why, sizeof why);
    free(buf);
    if (err != LK_OK) {
        lk_reg_device_free(&d);
        return admin_fail(a, err, why);
    }
    if ((*dev_id = strdup(d.id)) == NULL) {
        lk_reg_device_free(&d);
        lk_reg_registry_free(&r);
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    }
    if (d.blocked)
        snprintf(refusal, refusal_size, "device %s is blocked: the broker refuses it whatever its token", d.id);
    else if (r.mqtt == LK_REG_STATE_DISABLED)
        snprintf(refusal, refusal_size, "registry %s has MQTT disabled: the broker refuses its devices",
                 r.id);
    lk_reg_registry_free(&r);
    for (i = 0; i < d.ncreds && i < CREDS_MAX; i++) {
        cargs[i].file = NULL;
        cargs[i].fmt = d.creds[i].format;
        cargs[i].expires = d.creds[i].expires;
        cargs[i].index = i;
        err = lk_cred_parse(d.creds[i].format, d.creds[i].pem, strlen(d.creds[i].pem), d.creds[i].expires,
                            &creds[i]);
        if (err != LK_OK) {
            tool_error(CTX, err, "device %s: stored credential %u does not parse (%s)", d.id, i,
                       lk_strerror(err));
            lk_reg_device_free(&d);
            *ncreds = i;
            return EXIT_INVALID;
        }
    }
    *ncreds = i;
    if (d.ncreds == 0) {
        tool_error(CTX, LK_ERR_NO_CREDENTIAL, "device %s has no credentials: the broker refuses every "
                   "token of it", d.id);
        lk_reg_device_free(&d);
        return EXIT_INVALID;
    }
    lk_reg_device_free(&d);
    return EXIT_OK;
}

int cmd_token_verify(int argc, char **argv)
{
    enum { O_CRED = 1000, O_CRED_EXP, O_AUD, O_NOW, O_SKEW, O_LIFE, O_STRICT, O_FORMAT, O_HELP,
           O_DEVICE, O_REGISTRY, O_PROJECT, O_REGION, O_DB };
    static const struct option opts[] = {
        {"credential", required_argument, 0, O_CRED}, {"credential-expires", required_argument, 0, O_CRED_EXP},
        {"aud", required_argument, 0, O_AUD}, {"now", required_argument, 0, O_NOW},
        {"skew", required_argument, 0, O_SKEW}, {"max-lifetime", required_argument, 0, O_LIFE},
        {"strict-base64", no_argument, 0, O_STRICT}, {"format", required_argument, 0, O_FORMAT},
        {"device", required_argument, 0, O_DEVICE}, {"registry", required_argument, 0, O_REGISTRY},
        {"project", required_argument, 0, O_PROJECT}, {"region", required_argument, 0, O_REGION},
        {"location", required_argument, 0, O_REGION}, {"db", required_argument, 0, O_DB},
        {"help", no_argument, 0, O_HELP}, {0, 0, 0, 0}};
    struct admin a;
    const char *device = NULL, *leaf = NULL;
    char *dev_id = NULL, refusal[256] = "";
    int db_given = 0;
    struct cred_arg cargs[CREDS_MAX];
    lk_cred *creds[CREDS_MAX] = {0};
    size_t ncreds = 0, tok_len = 0, i;
    const char *aud = NULL, *tok_arg = NULL;
    long long now = (long long)time(NULL), skew = LK_VERIFY_SKEW, life = LK_VERIFY_MAX_LIFETIME, v;
    int strict = 0, json = 0, c, rc = EXIT_FAIL, n_cred_opts = 0, ntok = 0;
    char *buf = NULL;
    const char *tok;
    char why[256] = "";
    lk_verifier *ver = NULL;
    lk_verify_policy pol;
    lk_token_info info;
    lk_err err;

    admin_init(&a, CTX, verify_usage);
    a.local_only = "it reads the device's credentials from the registry database";
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case O_DEVICE: device = optarg; break;
        case O_REGISTRY: a.registry = optarg; break;
        case O_PROJECT: a.project = optarg; break;
        case O_REGION: a.location = optarg; break;
        case O_DB: a.db = optarg; a.db_level = 2; db_given = 1; break;
        case O_CRED:
            if (++n_cred_opts > CREDS_MAX)
                return tool_usage_error(CTX ": at most %d --credential (IoT Core's limit of credentials per "
                                        "device)", CREDS_MAX);
            if (parse_cred_arg(optarg, &cargs[ncreds]) != 0)
                return EXIT_USAGE;
            ncreds++;
            break;
        case O_CRED_EXP:
            if (ncreds == 0)
                return tool_usage_error(CTX ": --credential-expires applies to the --credential before it");
            if (tool_parse_i64(optarg, 0, INT64_MAX, &v) != 0)
                return tool_usage_error("--credential-expires must be seconds since 1970 (0 = never)");
            cargs[ncreds - 1].expires = v;
            break;
        case O_AUD: aud = optarg; break;
        case O_NOW:
            if (tool_parse_i64(optarg, 0, NOW_MAX, &now) != 0)
                return tool_usage_error("--now must be seconds since 1970, up to year 2100");
            break;
        case O_SKEW:
            if (tool_parse_i64(optarg, 0, 3600, &skew) != 0)
                return tool_usage_error("--skew must be 0 to 3600 seconds (IoT Core: %d)", LK_VERIFY_SKEW);
            break;
        case O_LIFE:
            if (tool_parse_i64(optarg, 1, LK_VERIFY_MAX_LIFETIME * 7LL, &life) != 0)
                return tool_usage_error("--max-lifetime must be 1 to %lld seconds (IoT Core: %d)",
                                        LK_VERIFY_MAX_LIFETIME * 7LL, LK_VERIFY_MAX_LIFETIME);
            break;
        case O_STRICT: strict = 1; break;
        case O_FORMAT:
            if (tool_parse_format(NULL, optarg, &json) != EXIT_OK)
                return EXIT_USAGE;
            break;
        case O_HELP: fputs(verify_usage, stdout); return EXIT_OK;
        case ':': return bad_option(argv[optind - 1], optopt < 0x80 ? optopt : 0, 1);
        default: return bad_option(argv[optind - 1], optopt, 0);
        }
    }
    /* Never echo a positional argument: it may be a token. */
    for (; optind < argc; optind++, ntok++)
        tok_arg = argv[optind];
    if (ntok > 1)
        return tool_usage_error(CTX ": more than one token given (one TOKEN, or '-' for standard input)");
    if (device != NULL && ncreds > 0)
        return tool_usage_error(CTX ": --device and --credential exclude each other (the device's credentials "
                                "come from the registry)");
    if (device == NULL && (a.registry != NULL || db_given))
        return tool_usage_error(CTX ": --registry and --db go with --device");
    if (device == NULL && ncreds == 0)
        return tool_usage_error(CTX ": --credential FILE (the device's public key or certificate) or --device D "
                                "(its credentials in the registry) is required");
    if (device != NULL) {
        if (a.project == NULL && strncmp(device, "projects/", 9) != 0)
            a.project = aud; /* --aud names the project too */
        if ((rc = admin_resolve(&a, device, 1, &leaf)) != EXIT_OK)
            goto out;
        if (aud != NULL && strcmp(aud, a.project) != 0) {
            rc = tool_usage_error(CTX ": --aud '%s' is not the device's project '%s': the broker checks a "
                                  "token's aud against the device's project", aud, a.project);
            goto out;
        }
        aud = a.project;
    }
    if (aud == NULL || aud[0] == '\0') {
        rc = tool_usage_error(CTX ": --aud PROJECT is required (the project id)");
        goto out;
    }
    if (tok_arg == NULL && isatty(STDIN_FILENO)) {
        rc = tool_usage_error(CTX ": no token: give it as an argument, or on standard input");
        goto out;
    }

    if (device != NULL) {
        rc = device_creds(&a, leaf, cargs, creds, &ncreds, &dev_id, refusal, sizeof refusal);
        if (rc != EXIT_OK)
            goto out;
    }
    for (i = 0; device == NULL && i < ncreds; i++) {
        rc = load_cred(&cargs[i], (unsigned)i + 1u, &creds[i]);
        if (rc != EXIT_OK)
            goto out;
    }

    if (tok_arg != NULL && strcmp(tok_arg, "-") != 0) {
        tok = tok_arg;
        tok_len = lk_strnlen(tok_arg, LK_VERIFY_MAX_LEN_LIMIT + 1u);
    } else {
        buf = malloc(LK_VERIFY_MAX_LEN_LIMIT + 1u);
        if (buf == NULL) {
            tool_error(CTX, LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
            rc = EXIT_FAIL;
            goto out;
        }
        rc = read_token_stdin(buf, LK_VERIFY_MAX_LEN_LIMIT + 1u, &tok_len);
        if (rc != EXIT_OK)
            goto out;
        tok = buf;
    }

    lk_verify_policy_init(&pol, aud, strlen(aud), (int64_t)now);
    pol.skew = skew;
    pol.max_lifetime = life;
    if (strict)
        pol.flags &= ~LK_VERIFY_ALLOW_PADDING;

    rc = EXIT_INVALID;
    if (tok_len == 0) {
        tool_error(CTX, LK_ERR_TOKEN_MALFORMED, "%s: the token is empty", lk_strerror(LK_ERR_TOKEN_MALFORMED));
        goto out;
    }
    if (tok_len > LK_VERIFY_MAX_LEN_LIMIT) {
        tool_error(CTX, LK_ERR_TOKEN_TOO_LARGE, "%s: over %u bytes (the service's cap is %u)",
                   lk_strerror(LK_ERR_TOKEN_TOO_LARGE), LK_VERIFY_MAX_LEN_LIMIT, (unsigned)pol.max_len);
        goto out;
    }
    err = lk_verifier_new(&ver);
    if (err != LK_OK) {
        tool_error(CTX, err, "%s", lk_strerror(err));
        rc = EXIT_FAIL;
        goto out;
    }
    err = lk_verify_token(ver, tok, tok_len, creds, ncreds, &pol, &info, why, sizeof why);
    if (err != LK_OK) {
        char line[4 * sizeof why + 1];
        why[sizeof why - 1] = '\0';
        clean_why(why, tok, tok_len, line, sizeof line);
        if (line[0] != '\0')
            tool_error(CTX, err, "%s: %s", lk_strerror(err), line);
        else
            tool_error(CTX, err, "%s", lk_strerror(err));
        rc = tool_exit_code(err);
        goto out;
    }
    if (refusal[0] != '\0') {
        /* The token itself is good: say so, and why the broker still refuses. */
        tool_error(CTX, LK_ERR_REFUSED, "the token verifies with credential %u, but %s",
                   cargs[info.cred_index].index, refusal);
        rc = EXIT_INVALID;
        goto out;
    }
    rc = print_valid(tok, tok_len, &info, creds, cargs, ncreds, &pol, json, dev_id);
out:
    free(dev_id);
    admin_close(&a);
    if (buf != NULL) {
        lk_wipe(buf, LK_VERIFY_MAX_LEN_LIMIT + 1u);
        free(buf);
    }
    lk_verifier_free(ver);
    for (i = 0; i < ncreds; i++)
        lk_cred_free(creds[i]);
    return rc;
}
