/*
 * Internals of the verifier shared by its files and its tests, and with the
 * registry, which builds on the verifier (never the reverse). Not part of
 * the installed API.
 */
#ifndef LK_VERIFY_INTERNAL_H
#define LK_VERIFY_INTERNAL_H

#include <openssl/evp.h>
#include "latchkey/lk_verify.h"

struct lk_cred {
    lk_cred_format fmt;
    lk_alg alg;
    int64_t expires;      /* 0 = never */
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *vctx;   /* verify_init done once; RSA padding and md set */
    size_t sig_len;       /* ES256: 64; RS256: modulus bytes */
    uint8_t fp[32];       /* SHA-256 of the SPKI DER */
    uint8_t *spki;        /* the SPKI DER, to decode pkey again after lk_cred_release_key */
    size_t spki_len;
};

/* The decoded key and verify context of cred, made again from its DER if
 * lk_cred_release_key freed them. LK_OK, LK_ERR_NOMEM, LK_ERR_CRYPTO. */
lk_err lk_verify__cred_ready(lk_cred *cred);

/*
 * Check sig[0..sig_len) over msg[0..msg_len) with cred, exactly as a token's
 * signature is checked (ES256: 64 bytes r||s, 1 <= r, s <= n-1; RS256:
 * modulus-length PKCS#1 v1.5 with SHA-256). LK_OK or LK_ERR_TOKEN_SIGNATURE
 * (LK_ERR_ARG for NULL arguments, LK_ERR_NOMEM as lk_verify__digest). For the test vectors, which sign
 * arbitrary messages.
 */
lk_err lk_verify__signature(const lk_cred *cred, const uint8_t *msg, size_t msg_len,
                            const uint8_t *sig, size_t sig_len);

/* 1 when the arguments and policy are in range (what lk_verify_token
 * answers LK_ERR_ARG for otherwise). */
int lk_verify__args_ok(lk_cred *const *creds, size_t ncreds, const lk_verify_policy *pol);

/* 1 when the RSA key pk's public exponent is odd, at least 3 and at most
 * LK_CRED_RSA_E_MAX_BITS bits, else 0 (also for a key without one). With
 * e = 1 a "signature" is the padded digest itself, which anyone can compute;
 * a huge e makes every verification slow (one multiplication per bit). The
 * rule for credentials (lk_cred_parse) and for registry CA certificates
 * (service/registry/certs.c). If why is not NULL it receives what is wrong
 * ("public exponent of 65 bits; at most 64", "public exponent 1",
 * "no readable public exponent"), or "" when ok. */
int lk_verify__rsa_exponent_ok(const EVP_PKEY *pk, char *why, size_t why_size);

/* What a PEM text is: exactly one block, with only white space around it,
 * of PUBLIC KEY (1) or CERTIFICATE (2), else 0 — the rule of lk_cred_parse
 * (a certificate and then a key, or text before the block, is refused
 * rather than half-used). pem_kind.c. */
int lk_verify__pem_kind(const char *pem, size_t len);

/* Format a reason into why (when why is not NULL and why_size > 0) and
 * return err: every refusal of the verifier and the registry says why this
 * way (why.c). */
lk_err lk_verify__why(char *why, size_t why_size, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 1 when OpenSSL's error queue holds an allocation failure (and empties
 * it): its decoders and verifiers answer "no" when they ran out of memory,
 * which must not pass for a bad key or a bad signature. */
int lk_verify__openssl_oom(void);

/* Check sig against a precomputed SHA-256 digest: LK_OK,
 * LK_ERR_TOKEN_SIGNATURE, or LK_ERR_NOMEM when OpenSSL ran out of memory
 * (the signature was not judged). */
lk_err lk_verify__digest(const lk_cred *cred, const uint8_t digest[32],
                         const uint8_t *sig, size_t sig_len);

/* ---- the steps of a verification, shared by lk_verify_token (verify.c)
 * and lk_verify_sa_token / lk_jwt_peek_kid (sa_token.c) ---- */

struct json_t; /* jansson's; only verify/ looks inside */

/* Rule 1 and the shape of rule 2: len <= max_len (LK_ERR_TOKEN_TOO_LARGE),
 * no NUL, exactly three non-empty '.'-separated segments
 * (LK_ERR_TOKEN_MALFORMED). *dot1 and *dot2 point at the two dots. */
lk_err lk_verify__split(const char *token, size_t len, size_t max_len, const char **dot1,
                        const char **dot2, char *why, size_t why_size);
/* Rule 2 for one segment: strict base64url into out[0..out_size) ('='
 * padding only with LK_VERIFY_ALLOW_PADDING in flags). 1 or 0. */
int lk_verify__segment_decode(const char *seg, size_t len, unsigned flags, uint8_t *out,
                              size_t out_size, size_t *out_len);
/* Rule 3 for one decoded segment (what: "header", "payload"): a JSON
 * object, duplicates refused; NULL with *err (LK_ERR_TOKEN_MALFORMED,
 * LK_ERR_NOMEM) and why, which never quotes the input. */
struct json_t *lk_verify__segment_json(const uint8_t *text, size_t n, const char *what,
                                       lk_err *err, char *why, size_t why_size);

/* A token that passed rules 1-3. */
typedef struct lk_verify_parts {
    struct json_t *hdr;    /* NULL when the header was one of the two fixed ones */
    struct json_t *claims;
    lk_alg alg;            /* the header's: ES256 or RS256 */
    size_t signed_len;     /* bytes of "header.payload" */
    size_t sig_len;        /* the decoded signature, held in the verifier */
} lk_verify_parts;
/* Rules 1-3 (length, segments, base64url, JSON objects, the header's
 * refused parameters and alg) with the verifier's scratch space. LK_OK
 * with *p filled (release with lk_verify__parts_free), or the first rule's
 * error with *p zeroed. */
lk_err lk_verify__parse(lk_verifier *v, const char *token, size_t len, size_t max_len,
                        unsigned flags, lk_verify_parts *p, char *why, size_t why_size);
void lk_verify__parts_free(lk_verify_parts *p);
/* A claim that is a JSON integer in [0, 2^53]: 1 with *out, else 0. */
int lk_verify__claim_int(const struct json_t *claims, const char *name, int64_t *out);
/* Rule 6: LK_OK, LK_ERR_TOKEN_FUTURE, LK_ERR_TOKEN_EXPIRED or
 * LK_ERR_TOKEN_LIFETIME. */
lk_err lk_verify__time(int64_t iat, int64_t exp, int64_t now, int64_t skew,
                       int64_t max_lifetime, char *why, size_t why_size);
/* Rule 7 for a parsed token: the unexpired credentials of p->alg are tried
 * in order; LK_OK with *cred_index, LK_ERR_TOKEN_SIGNATURE, LK_ERR_NOMEM,
 * LK_ERR_CRYPTO. */
lk_err lk_verify__check_signature(lk_verifier *v, const char *token, const lk_verify_parts *p,
                                  lk_cred *const *creds, size_t ncreds, int64_t now,
                                  unsigned *cred_index, char *why, size_t why_size);

#endif
