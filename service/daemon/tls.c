/*
 * tls.c — the admin listener's TLS context (OpenSSL, latchkey's one TLS
 * stack): TLS 1.2 and 1.3 only, the certificate chain and key from PEM
 * files, checked to match before the context is used (a SIGHUP with a
 * mismatched pair keeps the old one).
 */
#include <stdio.h>
#include <openssl/err.h>

#include "daemon.h"

static void ssl_why(char *why, size_t why_size, const char *what, const char *path)
{
    char buf[256];
    unsigned long e = ERR_peek_last_error();
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(why, why_size, "%s %s: %s", what, path, e ? buf : "failed");
    ERR_clear_error();
}

SSL_CTX *lkd_tls_load(const char *cert, const char *key, char *why, size_t why_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_why(why, why_size, "TLS context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* An idle keep-alive connection gives its read and write buffers (about
     * 34 kB together) back until its next record: thousands of devices and
     * clients keep connections open (docs/benchmarks.md, "latchkeyd's memory
     * per connection"). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_why(why, why_size, "certificate", cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_why(why, why_size, "private key", key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(why, why_size, "the key %s does not match the certificate %s", key, cert);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
