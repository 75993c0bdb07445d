/*
 * latchkeyd's admin API from the tool: libcurl (OpenSSL as TLS) for the
 * transport, a self-signed service-account JWT for authentication, and
 * Google's error object turned back into the registry's lk_err (api.h).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <malloc.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_util.h"
#include "api.h"
#include "tool.h"

#define KEY_FILE_MAX (64u * 1024)
#define ANSWER_MAX (256u * 1024 * 1024)
#define TOKEN_TTL 3600
#define SCOPE "https://www.googleapis.com/auth/cloud-platform"

struct api {
    CURL *curl;
    char *base;          /* URL without a trailing '/' */
    char *ca_file;
    char *project;
    char *auth;          /* "Authorization: Bearer ..." */
    char status[40];     /* the last refusal's canonical status */
    int reasoned;        /* ... and it named its lk_err (ErrorInfo reason) */
    volatile sig_atomic_t *stop;
};

/* ---- the key file and the token ---- */

/* Wipe n bytes at p and free p (malloc'd). */
static void wipe_free(void *p, size_t n)
{
    if (p == NULL)
        return;
    lk_wipe(p, n);
    free(p);
}

/* Jansson's lexer keeps the key file's text (the private key with it) in
 * buffers it grows and frees itself, and libcurl copies the Authorization
 * header (the token) into request buffers it reallocates and frees: neither
 * wipes them. Their frees (and curl's reallocs) go through these, which wipe
 * the whole block first (the parsed private_key string too, when the key
 * object is freed). malloc is unchanged, so a block either library
 * hands back may still be freed with free(). */
static void free_wiped(void *p)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

static void *realloc_wiped(void *p, size_t n)
{
    size_t old;
    void *q;
    if (p == NULL)
        return malloc(n);
    old = malloc_usable_size(p);
    if ((q = malloc(n > 0 ? n : 1)) == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    free_wiped(p);
    return q;
}

/* The key file read with read(2) into one buffer that is wiped when freed:
 * no stdio buffer or grown copy holds the private key. */
static char *read_small(const char *path, size_t *len, int *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf;
    size_t n = 0;
    ssize_t got = 0;
    *err = 0;
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    if ((buf = malloc(KEY_FILE_MAX + 1)) == NULL) {
        close(fd);
        *err = ENOMEM;
        return NULL;
    }
    while (n <= KEY_FILE_MAX && ((got = read(fd, buf + n, KEY_FILE_MAX + 1 - n)) > 0 || (got < 0 && errno == EINTR)))
        n += got > 0 ? (size_t)got : 0;
    if (got < 0 || n > KEY_FILE_MAX) {
        *err = got < 0 ? EIO : EFBIG; /* as before: a read error is EIO (exit 1) */
        close(fd);
        wipe_free(buf, KEY_FILE_MAX + 1);
        return NULL;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* base64url of p[0..n) appended at *o (the caller sized the buffer). */
static int b64_append(char *dst, size_t size, size_t *o, const void *p, size_t n)
{
    size_t w = 0;
    if (lk_b64url_encode(p, n, dst + *o, size - *o, &w) != LK_OK)
        return -1;
    *o += w;
    dst[*o] = '\0';
    return 0;
}

/* The signed JWT "h.p.s" (malloc'd) or NULL with why. */
static char *sign_jwt(const char *kid, const char *email, const char *pem, char *why, size_t why_size)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    EVP_MD_CTX *md = NULL;
    json_t *h = NULL, *p = NULL;
    char *hs = NULL, *ps = NULL, *out = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0, size, o = 0;
    int64_t now = (int64_t)time(NULL);

    BIO_free(bio);
    if (pkey == NULL || !EVP_PKEY_is_a(pkey, "RSA")) {
        snprintf(why, why_size, "its private_key is not an RSA private key in PEM");
        goto out;
    }
    h = json_pack("{s:s,s:s,s:s}", "alg", "RS256", "typ", "JWT", "kid", kid);
    p = json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", email, "sub", email, "scope", SCOPE, "iat", (json_int_t)now,
                  "exp", (json_int_t)(now + TOKEN_TTL));
    hs = h ? json_dumps(h, JSON_COMPACT) : NULL;
    ps = p ? json_dumps(p, JSON_COMPACT) : NULL;
    if (hs == NULL || ps == NULL || (md = EVP_MD_CTX_new()) == NULL) {
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    size = LK_B64URL_ENCODED_LEN(strlen(hs)) + LK_B64URL_ENCODED_LEN(strlen(ps)) +
           LK_B64URL_ENCODED_LEN(EVP_PKEY_get_size(pkey)) + 4;
    if ((out = malloc(size)) == NULL) {
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    out[0] = '\0';
    if (b64_append(out, size, &o, hs, strlen(hs)) != 0)
        goto fail;
    out[o++] = '.';
    if (b64_append(out, size, &o, ps, strlen(ps)) != 0)
        goto fail;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)out, o) != 1 ||
        (sig = malloc(siglen)) == NULL ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)out, o) != 1)
        goto fail;
    out[o++] = '.';
    if (b64_append(out, size, &o, sig, siglen) != 0)
        goto fail;
    goto out;
fail:
    snprintf(why, why_size, "signing the token failed (OpenSSL)");
    free(out);
    out = NULL;
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey); /* OpenSSL clears a private key's memory when it frees it */
    json_decref(h);
    json_decref(p);
    free(hs);
    free(ps);
    free(sig);
    return out;
}

/* 1 when url is https://, or http:// to a loopback address (latchkeyd's
 * plain_http, which it allows only there): the host parsed by libcurl, so
 * that "http://127.example.com" is not taken for 127.0.0.0/8. */
static int url_allowed(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = 0;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        struct in_addr a4;
        if (strcmp(scheme, "https") == 0)
            ok = 1;
        else if (strcmp(scheme, "http") == 0)
            ok = strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 ||
                 (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

int api_open(const char *cmd, const struct api_settings *s, struct api **out)
{
    static int curl_ready;
    char why[256] = "", *text = NULL, *token = NULL;
    const char *kid, *email, *pem, *project;
    json_t *key = NULL;
    json_error_t jerr;
    struct api *c = NULL;
    size_t len = 0, n;
    int e, rc = EXIT_FAIL;

    *out = NULL;
    if (s->url == NULL || s->url[0] == '\0')
        return tool_usage_error("%s: no API: give --api URL (or set LATCHKEY_API)", cmd);
    if (!url_allowed(s->url))
        return tool_usage_error("%s: --api %s: the API must be https:// (plain http:// only to a loopback "
                                "address): the key's token would travel in clear", cmd, tool_shown(s->url));
    if (s->key_file == NULL || s->key_file[0] == '\0')
        return tool_usage_error("%s: --api needs a service account's key file: give --key-file FILE "
                                "(or set LATCHKEY_KEY_FILE)", cmd);
    json_set_alloc_funcs(malloc, free_wiped);
    if ((text = read_small(s->key_file, &len, &e)) == NULL) {
        tool_error(cmd, LK_ERR_IO, "key file %s: %s", s->key_file,
                   e == EFBIG ? "larger than a service-account key file can be" : strerror(e));
        return e == EFBIG ? EXIT_FILE : tool_file_exit(e);
    }
    key = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    wipe_free(text, KEY_FILE_MAX + 1);
    if (!json_is_object(key)) {
        tool_error(cmd, LK_ERR_IO, "key file %s is not a service account's JSON key file", s->key_file);
        rc = EXIT_FILE;
        goto out;
    }
    kid = json_string_value(json_object_get(key, "private_key_id"));
    email = json_string_value(json_object_get(key, "client_email"));
    pem = json_string_value(json_object_get(key, "private_key"));
    project = json_string_value(json_object_get(key, "project_id"));
    if (kid == NULL || email == NULL || pem == NULL || project == NULL ||
        (json_string_value(json_object_get(key, "type")) != NULL &&
         strcmp(json_string_value(json_object_get(key, "type")), "service_account") != 0)) {
        tool_error(cmd, LK_ERR_IO, "key file %s is not a service account's JSON key file (type "
                   "service_account with project_id, private_key_id, private_key and client_email)",
                   s->key_file);
        rc = EXIT_FILE;
        goto out;
    }
    if ((token = sign_jwt(kid, email, pem, why, sizeof why)) == NULL) {
        tool_error(cmd, LK_ERR_KEY_TYPE, "key file %s: %s", s->key_file, why);
        rc = EXIT_FILE;
        goto out;
    }
    if (!curl_ready) {
        if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, free_wiped, realloc_wiped, strdup, calloc) !=
            CURLE_OK) {
            tool_error(cmd, LK_ERR_NET, "libcurl could not be initialised");
            goto out;
        }
        curl_ready = 1;
    }
    c = calloc(1, sizeof *c);
    n = strlen(token) + 40;
    if (c == NULL || (c->curl = curl_easy_init()) == NULL || (c->base = strdup(s->url)) == NULL ||
        (c->project = strdup(project)) == NULL || (s->ca_file && (c->ca_file = strdup(s->ca_file)) == NULL) ||
        (c->auth = malloc(n)) == NULL) {
        tool_error(cmd, LK_ERR_NOMEM, "out of memory");
        api_close(c);
        c = NULL;
        goto out;
    }
    snprintf(c->auth, n, "Authorization: Bearer %s", token);
    for (size_t l = strlen(c->base); l > 0 && c->base[l - 1] == '/'; l--)
        c->base[l - 1] = '\0';
    *out = c;
    rc = EXIT_OK;
out:
    if (token != NULL)
        wipe_free(token, strlen(token));
    json_decref(key); /* its private_key string wiped as it is freed (free_wiped) */
    return rc;
}

void api_close(struct api *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    if (c->auth != NULL)
        wipe_free(c->auth, strlen(c->auth));
    free(c->base);
    free(c->ca_file);
    free(c->project);
    free(c);
}

const char *api_project(const struct api *c)
{
    return c->project;
}

void api_set_stop(struct api *c, volatile sig_atomic_t *stop)
{
    c->stop = stop;
}

/* libcurl's progress callback: non-zero aborts the transfer. */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const struct api *c = arg;
    (void)dt, (void)dn, (void)ut, (void)un;
    return c->stop != NULL && *c->stop != 0;
}

const char *api_last_status(const struct api *c)
{
    return c->status;
}

int api_last_reasoned(const struct api *c)
{
    return c->reasoned;
}

char *api_seg(const char *s)
{
    /* Device ids may hold '+' and '%' (IoT Core's id alphabet): escaped. */
    char *e = curl_easy_escape(NULL, s, 0), *d;
    if (e == NULL)
        return NULL;
    d = strdup(e);
    curl_free(e);
    return d;
}

/* ---- one call ---- */

struct answer {
    char *p;
    size_t n;
    int over;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct answer *a = arg;
    size_t n = size * nmemb;
    char *grown;
    if (a->n + n > ANSWER_MAX) {
        a->over = 1;
        return 0;
    }
    if ((grown = realloc(a->p, a->n + n + 1)) == NULL)
        return 0;
    a->p = grown;
    memcpy(a->p + a->n, p, n);
    a->n += n;
    a->p[a->n] = '\0';
    return n;
}

static const struct {
    const char *status;
    lk_err err;
} status_errs[] = {
    {"NOT_FOUND", LK_ERR_REG_NOT_FOUND},     {"ALREADY_EXISTS", LK_ERR_REG_EXISTS},
    {"INVALID_ARGUMENT", LK_ERR_REG_INVALID}, {"OUT_OF_RANGE", LK_ERR_REG_INVALID},
    {"FAILED_PRECONDITION", LK_ERR_REG_CONFLICT}, {"ABORTED", LK_ERR_REG_CONFLICT},
    {"UNAUTHENTICATED", LK_ERR_REFUSED},     {"PERMISSION_DENIED", LK_ERR_REFUSED},
    {"UNAVAILABLE", LK_ERR_REG_BUSY},        {"RESOURCE_EXHAUSTED", LK_ERR_REG_LIMIT},
    {"UNIMPLEMENTED", LK_ERR_UNSUPPORTED},   {"DEADLINE_EXCEEDED", LK_ERR_TIMEOUT},
};

/* The lk_err an ErrorInfo reason names ("LK_ERR_REG_LIMIT"), or LK_OK. */
static lk_err reason_err(json_t *details)
{
    size_t i;
    json_t *d;
    json_array_foreach(details, i, d) {
        const char *dom = json_string_value(json_object_get(d, "domain"));
        const char *r = json_string_value(json_object_get(d, "reason"));
        if (dom == NULL || r == NULL || strcmp(dom, "latchkey") != 0)
            continue;
        for (int e = 1; e < LK_ERR__END; e++)
            if (strcmp(lk_errname((lk_err)e), r) == 0)
                return (lk_err)e;
    }
    return LK_OK;
}

static lk_err refusal(struct api *c, long http, json_t *j, char *why, size_t why_size)
{
    json_t *e = json_object_get(j, "error");
    const char *st = json_string_value(json_object_get(e, "status"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    lk_err err;
    snprintf(c->status, sizeof c->status, "%s", st ? st : "");
    if (msg == NULL) {
        snprintf(why, why_size, "the API answered HTTP %ld", http);
        return http == 404 ? LK_ERR_REG_NOT_FOUND : http == 413 ? LK_ERR_REG_LIMIT
               : http >= 500 ? LK_ERR_NET : LK_ERR_REG_INVALID;
    }
    snprintf(why, why_size, "%s", msg);
    if ((err = reason_err(json_object_get(e, "details"))) != LK_OK) {
        c->reasoned = 1;
        return err;
    }
    for (size_t i = 0; st != NULL && i < sizeof status_errs / sizeof status_errs[0]; i++)
        if (strcmp(st, status_errs[i].status) == 0)
            return status_errs[i].err;
    return LK_ERR_REG_STORAGE;
}

/* One call with a body of data[0..len) (NULL: none) of type ctype, and one
 * more header (NULL: none); *refused (when not NULL) gets a refusal's JSON. */
static lk_err do_call(struct api *c, const char *method, const char *path, const char *query, const char *ctype,
                      const char *data, size_t len, const char *header, json_t **out, json_t **refused, char *why,
                      size_t why_size)
{
    struct answer a = {NULL, 0, 0};
    struct curl_slist *hdr = NULL, *h2;
    char *url = NULL, errbuf[CURL_ERROR_SIZE] = "", ct[128];
    size_t ulen;
    long http = 0;
    json_t *j = NULL;
    json_error_t jerr;
    CURLcode cc;
    lk_err err = LK_OK;

    *out = NULL;
    if (refused != NULL)
        *refused = NULL;
    c->status[0] = '\0';
    c->reasoned = 0;
    ulen = strlen(c->base) + strlen(path) + (query ? strlen(query) + 1 : 0) + 1;
    if ((url = malloc(ulen)) == NULL)
        return LK_ERR_NOMEM;
    snprintf(url, ulen, "%s%s%s%s", c->base, path, query && query[0] ? "?" : "", query ? query : "");
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    h2 = curl_slist_append(NULL, c->auth);
    if (h2 != NULL)
        hdr = h2;
    if (hdr != NULL && (h2 = curl_slist_append(hdr, ct)) != NULL)
        hdr = h2;
    if (hdr != NULL && header != NULL && (h2 = curl_slist_append(hdr, header)) != NULL)
        hdr = h2;
    if (hdr != NULL && (h2 = curl_slist_append(hdr, "Accept: application/json")) != NULL)
        hdr = h2;
    if (hdr != NULL && (h2 = curl_slist_append(hdr, "Expect:")) != NULL) /* no 100-continue round trip */
        hdr = h2;

    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L); /* never carry the token elsewhere */
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &a);
    if (c->stop != NULL) {
        curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
    }
    curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c->curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->ca_file != NULL)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->ca_file);
    if (data != NULL) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "DELETE") != 0) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
    }

    cc = hdr == NULL ? CURLE_OUT_OF_MEMORY : curl_easy_perform(c->curl);
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(why, why_size, "interrupted");
        err = LK_ERR_STATE;
        goto out;
    }
    if (cc != CURLE_OK) {
        int tls = cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_PEER_FAILED_VERIFICATION ||
                  cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM;
        snprintf(why, why_size, "the API at %s did not answer: %s", c->base,
                 a.over ? "its answer is too large" : errbuf[0] ? errbuf : curl_easy_strerror(cc));
        err = cc == CURLE_OUT_OF_MEMORY ? LK_ERR_NOMEM : tls ? LK_ERR_TLS : LK_ERR_NET;
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &http);
    j = a.p != NULL ? json_loadb(a.p, a.n, 0, &jerr) : NULL;
    if (http == 200) {
        if (j == NULL) {
            snprintf(why, why_size, "the API's answer is not JSON");
            err = LK_ERR_NET;
            goto out;
        }
        *out = j;
        j = NULL;
        goto out;
    }
    err = refusal(c, http, j, why, why_size);
    if (refused != NULL) {
        *refused = j;
        j = NULL;
    }
out:
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    /* The slist holds a copy of the token: wipe it before it is freed. */
    for (h2 = hdr; h2 != NULL; h2 = h2->next)
        lk_wipe(h2->data, strlen(h2->data));
    curl_slist_free_all(hdr);
    json_decref(j);
    free(a.p);
    free(url);
    return err;
}

lk_err api_call(struct api *c, const char *method, const char *path, const char *query, json_t *body,
                json_t **out, char *why, size_t why_size)
{
    char *text = NULL;
    lk_err err;
    *out = NULL;
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL)
        return LK_ERR_NOMEM;
    err = do_call(c, method, path, query, "application/json", text, text ? strlen(text) : 0, NULL, out, NULL, why,
                  why_size);
    free(text);
    return err;
}

lk_err api_call_raw(struct api *c, const char *method, const char *path, const char *query, const char *ctype,
                    const void *data, size_t len, const char *header, json_t **out, json_t **refused, char *why,
                    size_t why_size)
{
    return do_call(c, method, path, query, ctype, data ? (const char *)data : "", len, header, out, refused, why,
                   why_size);
}
