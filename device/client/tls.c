/*
 * tls.c — how the device client authenticates the server: its own OpenSSL
 * context (TLS >= 1.2, peer verification, host name or IP checked), shared
 * by every client of a process (lk_dev_tls).
 */
#include "client_internal.h"

/* ------------------------------------------------------------------- TLS */

/* The client being stepped on this thread: the verify callback runs inside
 * libmosquitto's read and write calls for exactly that client, and records
 * the certificate verdict there, because libmosquitto frees the SSL object
 * (and its verify result) as soon as the handshake fails. */
__thread lk_dev *lk_dev__stepping;

static int verify_cb(int ok, X509_STORE_CTX *x)
{
    if (!ok && lk_dev__stepping != NULL && lk_dev__stepping->verify_err == X509_V_OK) {
        lk_dev__stepping->verify_err = X509_STORE_CTX_get_error(x);
        if (lk_dev__stepping->verify_err == X509_V_OK)
            lk_dev__stepping->verify_err = X509_V_ERR_UNSPECIFIED;
    }
    return ok;
}

static void tls_reason(char *detail, size_t size, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[160] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    if (detail != NULL && size > 0)
        snprintf(detail, size, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

/* A file name as messages show it: through lk_key_ref_redact, as anything
 * the user typed may be a key reference pasted into the wrong option. */
static const char *shown_path(const char *path, char *buf, size_t size)
{
    (void)lk_key_ref_redact(path, buf, size);
    return buf;
}

lk_err lk_dev_tls_new(const char *ca_file, const char *host, lk_dev_tls **out, char *detail,
                      size_t detail_size)
{
    lk_dev_tls *t;
    X509_VERIFY_PARAM *param;
    unsigned char ip[16];
    char shown[300];
    FILE *f;

    if (detail != NULL && detail_size > 0)
        detail[0] = '\0';
    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    if (ca_file == NULL || ca_file[0] == '\0' || host == NULL || host[0] == '\0') {
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "a CA file and a server host name are required");
        return LK_ERR_ARG;
    }
    f = fopen(ca_file, "r");
    if (f == NULL) {
        int e = errno;
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "cannot read the CA file %s: %s",
                     shown_path(ca_file, shown, sizeof shown), strerror(e));
        /* Missing or forbidden: a configuration error that no retry
         * fixes; anything else may be the system's moment. */
        if (e == ENOENT || e == ENOTDIR)
            return LK_ERR_FILE_MISSING;
        if (e == EACCES || e == EPERM || e == ELOOP || e == EISDIR || e == ENXIO || e == ENAMETOOLONG)
            return LK_ERR_FILE_UNUSABLE;
        return LK_ERR_IO;
    }
    fclose(f);
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return LK_ERR_NOMEM;
    t->ctx = SSL_CTX_new(TLS_client_method());
    if (t->ctx == NULL) {
        tls_reason(detail, detail_size, "SSL_CTX_new");
        free(t);
        return LK_ERR_CRYPTO;
    }
    /* IoT Core's floor; 1.3 is taken when the server offers it. Fail closed:
     * without the floor the context would accept older versions. */
    if (SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1) {
        tls_reason(detail, detail_size, "cannot set TLS 1.2 as the lowest version");
        lk_dev_tls_free(t);
        return LK_ERR_CRYPTO;
    }
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* Thousands of idle connections in the simulator: no idle buffers. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_file(t->ctx, ca_file) != 1) {
        char what[sizeof shown + 64];
        snprintf(what, sizeof what, "no usable certificate in the CA file %s",
                 shown_path(ca_file, shown, sizeof shown));
        tls_reason(detail, detail_size, what);
        lk_dev_tls_free(t);
        return LK_ERR_FILE_UNUSABLE;
    }
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_cb);
    param = SSL_CTX_get0_param(t->ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1) {
            tls_reason(detail, detail_size, "cannot check the server's IP address");
            lk_dev_tls_free(t);
            return LK_ERR_CRYPTO;
        }
    } else if (X509_VERIFY_PARAM_set1_host(param, host, 0) != 1) {
        tls_reason(detail, detail_size, "cannot check the server's host name");
        lk_dev_tls_free(t);
        return LK_ERR_CRYPTO;
    }
    *out = t;
    return LK_OK;
}

void lk_dev_tls_free(lk_dev_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_CTX_free(tls->ctx);
    free(tls);
}
