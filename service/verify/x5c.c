/*
 * x5c.c — lk_verify_jit_token: a token whose header carries its certificate
 * chain, verified with the leaf's key (lk_verify.h, "just-in-time
 * registration"). Whether the chain is trusted is the registry's question;
 * this file only reads the certificates and checks the token.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_b64url.h"
#include "verify_internal.h"

/* One x5c entry: strict standard base64 with padding (RFC 7515 §4.1.6 says
 * base64, not base64url), exactly one DER certificate, appended as PEM to
 * out. Mapped onto base64url so that the verifier's strict decoder (zero
 * unused bits, canonical padding) judges it. 1, or 0 with why. */
static int x5c__one(const char *s, size_t n, uint8_t *der, size_t der_room, size_t *der_len,
                    X509 **out)
{
    char buf[LK_B64URL_ENCODED_LEN(LK_X5C_DER_MAX) + 4];
    const unsigned char *p;
    size_t i;
    X509 *x;

    *out = NULL;
    if (n == 0 || n % 4u != 0 || n > sizeof buf)
        return 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '-' || c == '_')
            return 0; /* base64url's alphabet: not what x5c holds */
        buf[i] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    if (!lk_verify__segment_decode(buf, n, LK_VERIFY_ALLOW_PADDING, der, der_room, der_len) ||
        *der_len == 0)
        return 0;
    p = der;
    x = d2i_X509(NULL, &p, (long)*der_len);
    if (x == NULL || (size_t)(p - der) != *der_len) {
        X509_free(x); /* trailing bytes after the certificate: refused */
        return 0;
    }
    *out = x;
    return 1;
}

/* Append x as PEM to buf (size room), *len its new length, NUL-terminated. */
static int x5c__pem(X509 *x, char *buf, size_t room, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;
    int ok = 0;

    if (b != NULL && PEM_write_bio_X509(b, x) == 1) {
        n = BIO_get_mem_data(b, &data);
        if (n > 0 && *len + (size_t)n < room) {
            memcpy(buf + *len, data, (size_t)n);
            *len += (size_t)n;
            buf[*len] = '\0';
            ok = 1;
        }
    }
    BIO_free(b);
    return ok;
}

lk_err lk_verify_jit_token(lk_verifier *v, const char *token, size_t len,
                           const lk_verify_policy *pol, lk_token_info *info,
                           lk_x5c_certs *certs, char *why, size_t why_size)
{
    uint8_t der_scratch[LK_X5C_DER_MAX];
    lk_verify_parts p;
    json_t *x5c;
    size_t i, n, total = 0, der_len = 0;
    lk_cred *leaf = NULL;
    lk_err err;

    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (info != NULL)
        memset(info, 0, sizeof *info);
    if (certs != NULL)
        memset(certs, 0, sizeof *certs);
    if (v == NULL || token == NULL || info == NULL || certs == NULL ||
        !lk_verify__args_ok(NULL, 0, pol) || !(pol->flags & LK_VERIFY_ALLOW_X5C))
        return lk_verify__why(why, why_size, LK_ERR_ARG, "invalid arguments or policy");

    /* 1-3, x5c allowed. */
    if ((err = lk_verify__parse(v, token, len, pol->max_len, pol->flags, &p, why, why_size)) != LK_OK)
        return err;
    x5c = p.hdr ? json_object_get(p.hdr, "x5c") : NULL;
    if (x5c == NULL) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_HEADER,
                             "the device is not registered and its token has no \"x5c\"");
        goto exit;
    }
    n = json_is_array(x5c) ? json_array_size(x5c) : 0;
    if (n == 0 || n > LK_X5C_CERTS_MAX) {
        err = lk_verify__why(why, why_size, LK_ERR_TOKEN_HEADER,
                             "\"x5c\" must be an array of 1 to %u certificates", LK_X5C_CERTS_MAX);
        goto exit;
    }
    for (i = 0; i < n; i++) {
        json_t *e = json_array_get(x5c, i);
        X509 *cert = NULL;
        int ok;

        if (!json_is_string(e) ||
            !x5c__one(json_string_value(e), json_string_length(e), der_scratch,
                      sizeof der_scratch - total, &der_len, &cert)) {
            err = lk_verify__why(why, why_size, LK_ERR_TOKEN_HEADER,
                                 "\"x5c\"[%zu] is not the standard base64 of one DER certificate "
                                 "(at most %u bytes of DER in all)", i, LK_X5C_DER_MAX);
            goto exit;
        }
        total += der_len;
        ok = i == 0 ? x5c__pem(cert, certs->leaf, sizeof certs->leaf, &certs->leaf_len)
                    : x5c__pem(cert, certs->chain, sizeof certs->chain, &certs->chain_len);
        X509_free(cert);
        if (!ok) {
            err = lk_verify__why(why, why_size, LK_ERR_NOMEM, "out of memory writing x5c as PEM");
            goto exit;
        }
        if (i > 0)
            certs->nchain++;
    }
    /* The leaf's key, by the credential rules (P-256, RSA 2048..8192). */
    err = lk_cred_parse(LK_CRED_UNSPECIFIED, certs->leaf, certs->leaf_len, 0, &leaf);
    if (err != LK_OK) {
        err = lk_verify__why(why, why_size, err, "the x5c leaf's key is not a P-256 or RSA "
                             "2048..8192 key with a valid exponent");
        goto exit;
    }
    /* 4-7 with the leaf's key alone. */
    err = lk_verify_token(v, token, len, &leaf, 1, pol, info, why, why_size);
exit:
    lk_cred_free(leaf);
    lk_verify__parts_free(&p);
    OPENSSL_cleanse(der_scratch, sizeof der_scratch);
    if (err != LK_OK) {
        memset(info, 0, sizeof *info);
        memset(certs, 0, sizeof *certs);
    }
    return err;
}

int lk_jwt_has_x5c(const char *token, size_t len, size_t max_len, unsigned flags)
{
    const char *dot1, *dot2;
    uint8_t *hdr;
    size_t hlen = 0;
    json_t *h;
    lk_err err;
    int has;

    if (token == NULL || max_len > LK_VERIFY_MAX_LEN_LIMIT)
        return 0;
    if (lk_verify__split(token, len, max_len ? max_len : LK_VERIFY_MAX_LEN, &dot1, &dot2, NULL,
                         0) != LK_OK)
        return 0;
    hdr = malloc(LK_B64URL_DECODED_MAX(dot1 - token));
    if (hdr == NULL)
        return 0;
    h = NULL;
    if (lk_verify__segment_decode(token, (size_t)(dot1 - token), flags & LK_VERIFY_ALLOW_PADDING,
                                  hdr, LK_B64URL_DECODED_MAX(dot1 - token), &hlen))
        h = lk_verify__segment_json(hdr, hlen, "header", &err, NULL, 0);
    has = h != NULL && json_object_get(h, "x5c") != NULL;
    json_decref(h);
    free(hdr);
    return has;
}
