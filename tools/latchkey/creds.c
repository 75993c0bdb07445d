/*
 * Credentials as the admin commands read and show them: an RSA key in
 * PKCS#1 form ("RSA PUBLIC KEY") converted to the SubjectPublicKeyInfo form
 * the registry stores, fingerprints, expiry warnings; and IoT Core's enum
 * names for log levels and gateway settings.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_util.h"
#include "admin.h"

static const char pkcs1_begin[] = "-----BEGIN RSA PUBLIC KEY-----";

int admin_pem_is_pkcs1(const char *pem, size_t len)
{
    while (len > 0 && (*pem == ' ' || *pem == '\t' || *pem == '\r' || *pem == '\n')) {
        pem++;
        len--;
    }
    return len >= sizeof pkcs1_begin - 1 && memcmp(pem, pkcs1_begin, sizeof pkcs1_begin - 1) == 0;
}

int admin_pkcs1_to_spki(const char *pem, size_t len, char **out, size_t *out_len, char *why,
                        size_t why_size)
{
    BIO *in = NULL, *mem = NULL;
    char *name = NULL, *header = NULL, *data, rest[64];
    unsigned char *der = NULL;
    const unsigned char *p;
    long der_len = 0;
    EVP_PKEY *pk = NULL;
    int rc = -1, n;

    *out = NULL;
    *out_len = 0;
    if (!admin_pem_is_pkcs1(pem, len))
        return 0;
    snprintf(why, why_size, "an RSA PUBLIC KEY (PKCS#1) block that does not decode");
    if (len > LK_CRED_PEM_MAX || (in = BIO_new_mem_buf(pem, (int)len)) == NULL)
        goto done;
    if (PEM_read_bio(in, &name, &header, &der, &der_len) != 1 || strcmp(name, "RSA PUBLIC KEY") != 0 ||
        header[0] != '\0')
        goto done;
    /* Exactly one block: only white space after it. */
    while ((n = BIO_read(in, rest, sizeof rest)) > 0) {
        int i;
        for (i = 0; i < n; i++)
            if (rest[i] != ' ' && rest[i] != '\t' && rest[i] != '\r' && rest[i] != '\n') {
                snprintf(why, why_size, "more than one PEM block, or text after the RSA PUBLIC KEY");
                goto done;
            }
    }
    p = der;
    pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, der_len);
    if (pk == NULL || p != der + der_len)
        goto done;
    if ((mem = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_PUBKEY(mem, pk) != 1)
        goto done;
    n = (int)BIO_get_mem_data(mem, &data);
    if (n <= 0 || (*out = malloc((size_t)n + 1)) == NULL)
        goto done;
    memcpy(*out, data, (size_t)n);
    (*out)[n] = '\0';
    *out_len = (size_t)n;
    rc = 1;
done:
    EVP_PKEY_free(pk);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(in);
    BIO_free(mem);
    ERR_clear_error();
    return rc;
}

int admin_cred_sha256(lk_cred_format fmt, const char *pem, char hex[65])
{
    lk_cred *c = NULL;
    uint8_t fp[32];

    hex[0] = '\0';
    if (pem == NULL || lk_cred_parse(fmt, pem, strlen(pem), 0, &c) != LK_OK)
        return -1;
    lk_cred_fingerprint(c, fp);
    lk_cred_free(c);
    tool_hex(fp, sizeof fp, hex);
    return 0;
}

int admin_cred_expired(int64_t expires, char *when, size_t when_size)
{
    if (expires == 0 || expires > (int64_t)time(NULL))
        return 0;
    lk_time_rfc3339(expires, when, when_size);
    return 1;
}

/* ---- IoT Core's enum names ---- */

struct enum_name {
    int value;
    const char *name;
};

static const struct enum_name log_levels[] = {
    {LK_LOG_LEVEL_UNSPECIFIED, "LOG_LEVEL_UNSPECIFIED"}, {LK_LOG_LEVEL_NONE, "NONE"},
    {LK_LOG_LEVEL_ERROR, "ERROR"}, {LK_LOG_LEVEL_INFO, "INFO"}, {LK_LOG_LEVEL_DEBUG, "DEBUG"},
    {0, NULL}};
static const struct enum_name gateway_types[] = {
    {LK_GATEWAY_TYPE_UNSPECIFIED, "GATEWAY_TYPE_UNSPECIFIED"}, {LK_GATEWAY_TYPE_GATEWAY, "GATEWAY"},
    {LK_GATEWAY_TYPE_NON_GATEWAY, "NON_GATEWAY"}, {0, NULL}};
static const struct enum_name gateway_auths[] = {
    {LK_GATEWAY_AUTH_UNSPECIFIED, "GATEWAY_AUTH_METHOD_UNSPECIFIED"},
    {LK_GATEWAY_AUTH_ASSOCIATION_ONLY, "ASSOCIATION_ONLY"},
    {LK_GATEWAY_AUTH_DEVICE_AUTH_TOKEN_ONLY, "DEVICE_AUTH_TOKEN_ONLY"},
    {LK_GATEWAY_AUTH_ASSOCIATION_AND_DEVICE_AUTH_TOKEN, "ASSOCIATION_AND_DEVICE_AUTH_TOKEN"},
    {0, NULL}};
static const struct enum_name mqtt_states[] = {
    {LK_REG_STATE_UNSPECIFIED, "MQTT_STATE_UNSPECIFIED"}, {LK_REG_STATE_ENABLED, "MQTT_ENABLED"},
    {LK_REG_STATE_DISABLED, "MQTT_DISABLED"}, {0, NULL}};
static const struct enum_name http_states[] = {
    {LK_REG_STATE_UNSPECIFIED, "HTTP_STATE_UNSPECIFIED"}, {LK_REG_STATE_ENABLED, "HTTP_ENABLED"},
    {LK_REG_STATE_DISABLED, "HTTP_DISABLED"}, {0, NULL}};

static const struct enum_name *table(enum admin_enum e)
{
    switch (e) {
    case ADMIN_ENUM_LOG_LEVEL: return log_levels;
    case ADMIN_ENUM_GATEWAY_TYPE: return gateway_types;
    case ADMIN_ENUM_GATEWAY_AUTH: return gateway_auths;
    case ADMIN_ENUM_MQTT_STATE: return mqtt_states;
    default: return http_states;
    }
}

const char *admin_enum_name(enum admin_enum e, int value)
{
    const struct enum_name *t = table(e);
    for (; t->name != NULL; t++)
        if (t->value == value)
            return t->name;
    return "?";
}

int admin_log_level_arg(const struct admin *a, const char *arg, int *value)
{
    char up[32];
    size_t i;
    for (i = 0; arg[i] != '\0' && i + 1 < sizeof up; i++)
        up[i] = (char)toupper((unsigned char)arg[i]);
    up[i] = '\0';
    if (strcmp(up, "UNSPECIFIED") == 0) {
        *value = LK_LOG_LEVEL_UNSPECIFIED;
        return EXIT_OK;
    }
    if (arg[i] == '\0' && admin_enum_value(ADMIN_ENUM_LOG_LEVEL, up, value) == 0)
        return EXIT_OK;
    return tool_usage_error("%s: --log-level: '%s' is none of none, error, info, debug, unspecified", a->cmd, arg);
}

int admin_enum_value(enum admin_enum e, const char *name, int *value)
{
    const struct enum_name *t = table(e);
    for (; t->name != NULL; t++)
        if (strcmp(t->name, name) == 0) {
            *value = t->value;
            return 0;
        }
    return -1;
}

int admin_enum_number(enum admin_enum e, long long n, int *value)
{
    const struct enum_name *t = table(e);
    for (; t->name != NULL; t++)
        if (t->value == n) {
            *value = t->value;
            return 0;
        }
    return -1;
}

void admin_enum_names(enum admin_enum e, char *buf, size_t size)
{
    const struct enum_name *t = table(e);
    size_t o = 0;
    buf[0] = '\0';
    for (; t->name != NULL && o < size; t++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? ", " : "", t->name);
}
