/*
 * test_pkcs11.c — the PKCS#11 backend (lk_pkcs11.h) against a real token:
 * a fresh SoftHSM2 token store in a temporary directory, no mocks.
 *
 * The group setup writes a softhsm2.conf, points SOFTHSM2_CONF at it and
 * initialises two tokens with softhsm2-util ("lk-test" and "lk-other", so
 * token selection has something to choose between). The tests then drive
 * the backend through the lk_se dispatchers, and check what it did through a
 * session of their own on the same module ("raw" below): the generated
 * private keys must be sensitive and non-extractable, and their values
 * unreadable. Signatures are verified with OpenSSL, independently of the
 * code under test.
 *
 * The tests run in order and share the two keys the generate tests make
 * (one ES256, one RSA-2048: RSA key generation is the slow part).
 */
#include "lk_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#include "latchkey/lk_b64url.h"
#include "latchkey/lk_jwt.h"
#include "latchkey/lk_pkcs11.h"
#include "latchkey/lk_se.h"
#include "se/pkcs11/p11_internal.h"

extern char **environ;

#define TOKEN "lk-test"
#define OTHER "lk-other"
#define USER_PIN "123456"
#define OTHER_PIN "654321"
#define SO_PIN "87654321"

static struct {
    char *dir;
    const char *module;
    const char *util;
    char module_q[1024];     /* module path, percent-encoded for a URI query */
    char uri[8192];          /* token=lk-test, module-path, pin-value */
    char uri_nopin[2048];    /* the same without a PIN */
    CK_SLOT_ID slot_test, slot_other;
    uint8_t es_spki[LK_PUBKEY_DER_MAX];
    size_t es_spki_len;
    uint8_t rs_spki[LK_PUBKEY_DER_MAX];
    size_t rs_spki_len;
} g;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Run argv (argv[0] a path), output discarded; its exit status. */
static int run(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = -1;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Percent-encode everything but [A-Za-z0-9/._-] (enough for a file path). */
static void uri_escape(const char *in, char *out, size_t size)
{
    size_t n = 0;
    for (; *in != '\0'; in++) {
        unsigned char c = (unsigned char)*in;
        assert_true(n + 4 < size);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '/' || c == '.' || c == '_' || c == '-')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, size - n, "%%%02X", c);
    }
    out[n] = '\0';
}

/* expr must give want; the handle's last error explains a surprise. */
#define CHECK(p11_, expr, want)                                                   \
    do {                                                                           \
        lk_err e_ = (expr), w_ = (want);                                           \
        if (e_ != w_)                                                              \
            fail_msg("%s: %s, expected %s (%s)", #expr, lk_errname(e_),            \
                     lk_errname(w_), lk_pkcs11_last_error(p11_));                  \
    } while (0)

/* A key reference "pkcs11:<path>" for a key on the test token. */
static const char *keyref(const char *path)
{
    static char buf[1024];
    snprintf(buf, sizeof buf, "pkcs11:%s", path);
    return buf;
}

static lk_pkcs11 *open_ok(const char *uri)
{
    lk_pkcs11 *p11 = NULL;
    char detail[256];
    lk_err err = lk_pkcs11_open(uri, NULL, NULL, &p11, detail, sizeof detail);
    if (err != LK_OK)
        fail_msg("lk_pkcs11_open: %s: %s", lk_errname(err), detail);
    assert_non_null(p11);
    assert_string_equal(detail, "");
    return p11;
}

static lk_err open_err(const char *uri, const char *module, const char *pin,
                       char *detail, size_t detail_size)
{
    lk_pkcs11 *p11 = (lk_pkcs11 *)&g; /* must be overwritten with NULL */
    lk_err err = lk_pkcs11_open(uri, module, pin, &p11, detail, detail_size);
    assert_int_not_equal(err, LK_OK);
    assert_null(p11);
    return err;
}

/* 1 if ECDSA/RSA signature sig over the SHA-256 digest verifies with spki. */
static int verify(lk_alg alg, const uint8_t *spki, size_t spki_len,
                  const uint8_t digest[32], const uint8_t *sig, size_t sig_len)
{
    const unsigned char *p = spki;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char *der = NULL;
    int der_len = 0, ok = 0;

    assert_non_null(pk);
    ctx = EVP_PKEY_CTX_new(pk, NULL);
    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
    if (alg == LK_ALG_ES256) {
        /* JWS r||s to the DER form OpenSSL verifies. */
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        assert_int_equal(sig_len, 64);
        assert_non_null(es);
        assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
        der_len = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        assert_true(der_len > 0);
        ok = EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, 32) == 1;
    } else {
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
        ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, 32) == 1;
    }
    OPENSSL_free(der);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return ok;
}

static void sha256(const void *data, size_t len, uint8_t out[32])
{
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL), 1);
    assert_int_equal(n, 32);
}

/* ------------------------------------------------------------------------ */
/* The test's own view of the token: a session on the same module          */

typedef struct raw {
    void *dl;
    CK_FUNCTION_LIST_PTR fl;
    int finalize;
    CK_SESSION_HANDLE s;
} raw;

/* Load the module and (if pin) open a logged-in RW session on slot. Must be
 * called while the backend has the module open, or with no backend handle
 * open at all: whoever initialised the module finalizes it. */
static void raw_begin(raw *r, CK_SLOT_ID slot, const char *pin)
{
    CK_C_GetFunctionList get;
    CK_RV rv;

    memset(r, 0, sizeof *r);
    r->dl = dlopen(g.module, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(r->dl);
    *(void **)&get = dlsym(r->dl, "C_GetFunctionList");
    assert_non_null(get);
    assert_int_equal(get(&r->fl), CKR_OK);
    rv = r->fl->C_Initialize(NULL);
    assert_true(rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED);
    r->finalize = rv == CKR_OK;
    if (pin == NULL)
        return;
    assert_int_equal(r->fl->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                          NULL, NULL, &r->s), CKR_OK);
    rv = r->fl->C_Login(r->s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

/* Closes the session without C_Logout, which would log out the backend's
 * session too (logins are per application). */
static void raw_end(raw *r)
{
    if (r->s != 0)
        r->fl->C_CloseSession(r->s);
    if (r->finalize)
        r->fl->C_Finalize(NULL);
    dlclose(r->dl);
    memset(r, 0, sizeof *r);
}

/* The handles of objects of class cls labelled label; returns the count. */
static CK_ULONG raw_find(raw *r, CK_OBJECT_CLASS cls, const char *label,
                         CK_OBJECT_HANDLE *h, CK_ULONG max)
{
    CK_ATTRIBUTE t[2] = {
        { CKA_CLASS, &cls, sizeof cls },
        { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_ULONG n = 0;
    assert_int_equal(r->fl->C_FindObjectsInit(r->s, t, 2), CKR_OK);
    assert_int_equal(r->fl->C_FindObjects(r->s, h, max, &n), CKR_OK);
    assert_int_equal(r->fl->C_FindObjectsFinal(r->s), CKR_OK);
    return n;
}

static CK_OBJECT_HANDLE raw_find1(raw *r, CK_OBJECT_CLASS cls, const char *label)
{
    CK_OBJECT_HANDLE h[2];
    if (raw_find(r, cls, label, h, 2) != 1)
        fail_msg("expected exactly one object labelled %s", label);
    return h[0];
}

static CK_BBOOL raw_bool(raw *r, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = 0x55;
    CK_ATTRIBUTE a = { type, &v, sizeof v };
    assert_int_equal(r->fl->C_GetAttributeValue(r->s, h, &a, 1), CKR_OK);
    return v;
}

/* Neither the size nor the value of a secret attribute can be read. */
static void raw_unreadable(raw *r, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    uint8_t buf[1024];
    CK_ATTRIBUTE a = { type, NULL, 0 };
    assert_int_not_equal(r->fl->C_GetAttributeValue(r->s, h, &a, 1), CKR_OK);
    assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    a.pValue = buf;
    a.ulValueLen = sizeof buf;
    assert_int_not_equal(r->fl->C_GetAttributeValue(r->s, h, &a, 1), CKR_OK);
    assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
}

/* The promises of generate about the private key labelled label. */
static void check_private_key(raw *r, const char *label, CK_KEY_TYPE kt)
{
    CK_OBJECT_HANDLE h = raw_find1(r, CKO_PRIVATE_KEY, label);
    CK_KEY_TYPE got = 0;
    CK_ATTRIBUTE a = { CKA_KEY_TYPE, &got, sizeof got };

    assert_int_equal(r->fl->C_GetAttributeValue(r->s, h, &a, 1), CKR_OK);
    assert_int_equal(got, kt);
    assert_int_equal(raw_bool(r, h, CKA_TOKEN), CK_TRUE);
    assert_int_equal(raw_bool(r, h, CKA_PRIVATE), CK_TRUE);
    assert_int_equal(raw_bool(r, h, CKA_SENSITIVE), CK_TRUE);
    assert_int_equal(raw_bool(r, h, CKA_EXTRACTABLE), CK_FALSE);
    assert_int_equal(raw_bool(r, h, CKA_ALWAYS_SENSITIVE), CK_TRUE);
    assert_int_equal(raw_bool(r, h, CKA_NEVER_EXTRACTABLE), CK_TRUE);
    assert_int_equal(raw_bool(r, h, CKA_SIGN), CK_TRUE);
    if (kt == CKK_EC) {
        raw_unreadable(r, h, CKA_VALUE);
    } else {
        raw_unreadable(r, h, CKA_PRIVATE_EXPONENT);
        raw_unreadable(r, h, CKA_PRIME_1);
        raw_unreadable(r, h, CKA_PRIME_2);
        raw_unreadable(r, h, CKA_EXPONENT_1);
        raw_unreadable(r, h, CKA_COEFFICIENT);
        raw_unreadable(r, h, CKA_VALUE);
    }
}

/* The CKA_ID of the object labelled label of class cls. */
static size_t raw_id(raw *r, CK_OBJECT_CLASS cls, const char *label, uint8_t *id, size_t max)
{
    CK_OBJECT_HANDLE h = raw_find1(r, cls, label);
    CK_ATTRIBUTE a = { CKA_ID, id, max };
    assert_int_equal(r->fl->C_GetAttributeValue(r->s, h, &a, 1), CKR_OK);
    return a.ulValueLen;
}

static CK_SLOT_ID slot_of(raw *r, const char *label)
{
    CK_SLOT_ID slots[16];
    CK_ULONG n = 16, i;
    assert_int_equal(r->fl->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    for (i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        assert_int_equal(r->fl->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        if ((ti.flags & CKF_TOKEN_INITIALIZED) &&
            memcmp(ti.label, label, strlen(label)) == 0 && ti.label[strlen(label)] == ' ')
            return slots[i];
    }
    fail_msg("no token labelled %s", label);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */

static int init_token(const char *label, const char *pin)
{
    char *argv[] = {
        (char *)g.util, "--init-token", "--free", "--label", (char *)label,
        "--so-pin", SO_PIN, "--pin", (char *)pin, NULL,
    };
    return run(argv);
}

static int group_setup(void **state)
{
    char path[4096], conf[4096 + 64];
    raw r;
    (void)state;

    g.module = getenv("LK_SOFTHSM_MODULE");
    if (g.module == NULL)
        g.module = "/usr/lib/softhsm/libsofthsm2.so";
    g.util = getenv("LK_SOFTHSM_UTIL");
    if (g.util == NULL)
        g.util = "/usr/bin/softhsm2-util";
    g.dir = lk_test_tmpdir();
    if (g.dir == NULL)
        return -1;

    /* A token store of our own: never the system's. */
    snprintf(path, sizeof path, "%s/tokens", g.dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(conf, sizeof conf,
             "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
             g.dir);
    snprintf(path, sizeof path, "%s/softhsm2.conf", g.dir);
    write_file(path, conf, strlen(conf));
    setenv("SOFTHSM2_CONF", path, 1);

    if (init_token(TOKEN, USER_PIN) != 0 || init_token(OTHER, OTHER_PIN) != 0)
        return -1;

    uri_escape(g.module, g.module_q, sizeof g.module_q);
    snprintf(g.uri, sizeof g.uri, "pkcs11:token=" TOKEN "?module-path=%s&pin-value=" USER_PIN,
             g.module_q);
    snprintf(g.uri_nopin, sizeof g.uri_nopin, "pkcs11:token=" TOKEN "?module-path=%s",
             g.module_q);

    raw_begin(&r, 0, NULL);
    g.slot_test = slot_of(&r, TOKEN);
    g.slot_other = slot_of(&r, OTHER);
    raw_end(&r);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    lk_test_rmtree(g.dir);
    free(g.dir);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* URI parser                                                               */

static void test_uri_good(void **state)
{
    p11_uri u;
    const char *why = NULL;
    size_t at = 99;
    (void)state;

    assert_int_equal(p11__uri_parse("pkcs11:", &u, &why, &at), LK_OK);
    assert_int_equal(u.have, 0);
    assert_int_equal(p11__uri_parse("PKCS11:token=a", &u, &why, &at), LK_OK);
    assert_string_equal(u.token, "a");

    assert_int_equal(p11__uri_parse(
        "pkcs11:token=My%20Token;manufacturer=SoftHSM%20project;serial=0123abcd;"
        "model=SoftHSM%20v2;library-manufacturer=SoftHSM;"
        "library-description=Implementation%20of%20PKCS11;library-version=2.6;"
        "slot-manufacturer=SoftHSM%20project;slot-description=SoftHSM%20slot%20ID%200x0;"
        "slot-id=1234567;object=dev%2F1%2a;id=%01%02%fF%00;type=private"
        "?module-path=/usr/lib/x%20y/libsofthsm2.so&pin-value=12%2634",
        &u, &why, &at), LK_OK);
    assert_string_equal(u.token, "My Token");
    assert_string_equal(u.manufacturer, "SoftHSM project");
    assert_string_equal(u.serial, "0123abcd");
    assert_string_equal(u.model, "SoftHSM v2");
    assert_string_equal(u.library_manufacturer, "SoftHSM");
    assert_string_equal(u.library_description, "Implementation of PKCS11");
    assert_int_equal(u.library_version[0], 2);
    assert_int_equal(u.library_version[1], 6);
    assert_string_equal(u.slot_manufacturer, "SoftHSM project");
    assert_string_equal(u.slot_description, "SoftHSM slot ID 0x0");
    assert_int_equal(u.slot_id, 1234567);
    assert_string_equal(u.object, "dev/1*");
    assert_int_equal(u.id_len, 4);
    assert_memory_equal(u.id, "\x01\x02\xff\x00", 4);
    assert_int_equal(u.type, P11_TYPE_PRIVATE);
    assert_string_equal(u.module_path, "/usr/lib/x y/libsofthsm2.so");
    assert_string_equal(u.pin_value, "12&34");
    assert_int_equal(u.have, P11_HAVE_TOKEN_ATTRS | P11_HAVE_OBJECT | P11_HAVE_ID |
                             P11_HAVE_TYPE | P11_HAVE_MODULE_PATH | P11_HAVE_PIN_VALUE);
    p11__uri_wipe(&u);
    assert_true(lk_test_all_bytes(&u, sizeof u, 0));

    /* '&' is literal in the path, '=' in any value, '/', '?', '|' in the query. */
    assert_int_equal(p11__uri_parse("pkcs11:object=a&b=c?pin-source=file:/x?y|z", &u, &why, &at),
                     LK_OK);
    assert_string_equal(u.object, "a&b=c");
    assert_string_equal(u.pin_source, "file:/x?y|z");
    assert_int_equal(p11__uri_parse("pkcs11:?module-path=/m", &u, &why, &at), LK_OK);
    assert_int_equal(u.have, P11_HAVE_MODULE_PATH);
    assert_int_equal(p11__uri_parse("pkcs11:library-version=3;slot-id=0", &u, &why, &at), LK_OK);
    assert_int_equal(u.library_version[0], 3);
    assert_int_equal(u.library_version[1], 0);
    assert_int_equal(u.slot_id, 0);
    assert_int_equal(p11__uri_parse("pkcs11:slot-id=18446744073709551615", &u, &why, &at), LK_OK);
    assert_int_equal(u.slot_id, 18446744073709551615ul);

    static const struct { const char *s; p11_type t; } types[] = {
        { "public", P11_TYPE_PUBLIC }, { "private", P11_TYPE_PRIVATE },
        { "cert", P11_TYPE_CERT }, { "secret-key", P11_TYPE_SECRET_KEY },
        { "data", P11_TYPE_DATA },
    };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char s[64];
        snprintf(s, sizeof s, "pkcs11:type=%s", types[i].s);
        assert_int_equal(p11__uri_parse(s, &u, &why, &at), LK_OK);
        assert_int_equal(u.type, types[i].t);
    }

    /* Values exactly at their field's size. */
    assert_int_equal(p11__uri_parse("pkcs11:token=0123456789abcdef0123456789abcdef;"
                                    "serial=0123456789abcdef", &u, &why, &at), LK_OK);
    assert_int_equal(strlen(u.token), 32);
    assert_int_equal(strlen(u.serial), 16);

    /* A URI of exactly LK_KEY_REF_MAX characters. */
    char *big = malloc(LK_KEY_REF_MAX + 2);
    assert_non_null(big);
    int n = snprintf(big, LK_KEY_REF_MAX + 1, "pkcs11:?module-path=/");
    memset(big + n, 'm', P11_PATH_MAX - 1);
    n += (int)P11_PATH_MAX - 1;
    n += snprintf(big + n, LK_KEY_REF_MAX + 1 - (size_t)n, "&pin-source=/");
    memset(big + n, 'p', LK_KEY_REF_MAX - (size_t)n);
    big[LK_KEY_REF_MAX] = '\0';
    assert_int_equal(strlen(big), LK_KEY_REF_MAX);
    assert_int_equal(p11__uri_parse(big, &u, &why, &at), LK_OK);
    assert_int_equal(strlen(u.module_path), P11_PATH_MAX);
    /* ... and one more is too long, whatever it says. */
    big[LK_KEY_REF_MAX] = 'p';
    big[LK_KEY_REF_MAX + 1] = '\0';
    assert_int_equal(p11__uri_parse(big, &u, &why, &at), LK_ERR_URI);
    assert_non_null(strstr(why, "LK_KEY_REF_MAX"));
    free(big);
}

static void test_uri_bad(void **state)
{
    static const char *const bad[] = {
        "", "pkcs11", "pkcs1:object=a", "pkcs:object=a", "http://example.com/",
        " pkcs11:object=a",
        /* unknown, misplaced, doubled or malformed attributes */
        "pkcs11:foo=bar", "pkcs11:x-vendor=1", "pkcs11:Token=a", "pkcs11:?foo=bar",
        "pkcs11:?x-vendor=1", "pkcs11:module-path=/m", "pkcs11:?object=a",
        "pkcs11:object=a;object=b", "pkcs11:id=%01;id=%01",
        "pkcs11:?module-path=/a&module-path=/b", "pkcs11:?pin-value=1&pin-value=1",
        "pkcs11:object", "pkcs11:=a", "pkcs11:object=", "pkcs11:id=", "pkcs11:?pin-value=",
        "pkcs11:object=a;;id=%01", "pkcs11:object=a;", "pkcs11:;object=a", "pkcs11:;",
        "pkcs11:object=a?", "pkcs11:object=a?&pin-value=1", "pkcs11:?pin-value=1&",
        "pkcs11:?module-name=softhsm2",
        "pkcs11:?pin-value=1&pin-source=/p",
        /* percent-encoding */
        "pkcs11:object=%", "pkcs11:object=%4", "pkcs11:object=a%2", "pkcs11:object=%zz",
        "pkcs11:object=%g0", "pkcs11:object=%+1", "pkcs11:object=a%00b",
        "pkcs11:?pin-value=12%0034", "pkcs11:token=%00",
        /* characters the grammar does not allow unencoded */
        "pkcs11:object=a b", "pkcs11:object=a/b", "pkcs11:object=a#b", "pkcs11:object=a\"b",
        "pkcs11:object=a%", "pkcs11:object=\xc3\xa9", "pkcs11:object=a\tb",
        "pkcs11:object=a\\b", "pkcs11:object=a<b", "pkcs11:?pin-value=a;b",
        "pkcs11:?module-path=/a b",
        /* over-long values */
        "pkcs11:token=0123456789abcdef0123456789abcdefX",
        "pkcs11:token=0123456789abcdef0123456789abcde%20%20",
        "pkcs11:serial=0123456789abcdefX", "pkcs11:model=0123456789abcdefX",
        "pkcs11:manufacturer=0123456789abcdef0123456789abcdefX",
        /* numbers, versions, types */
        "pkcs11:slot-id=-1", "pkcs11:slot-id=+1", "pkcs11:slot-id=1a", "pkcs11:slot-id=0x1",
        "pkcs11:slot-id=18446744073709551616", "pkcs11:slot-id=99999999999999999999999",
        "pkcs11:library-version=2.", "pkcs11:library-version=.1", "pkcs11:library-version=a",
        "pkcs11:library-version=2.256", "pkcs11:library-version=256",
        "pkcs11:library-version=1.2.3", "pkcs11:library-version=-1",
        "pkcs11:type=secret", "pkcs11:type=Private", "pkcs11:type=private%00",
    };
    p11_uri u;
    const char *why = NULL;
    size_t at = 0, i;
    (void)state;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        memset(&u, 0xa5, sizeof u);
        if (p11__uri_parse(bad[i], &u, &why, &at) != LK_ERR_URI)
            fail_msg("accepted bad URI #%zu: \"%s\"", i, bad[i]);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
        assert_true(lk_test_all_bytes(&u, sizeof u, 0));
    }

    /* An over-long id and object. */
    char s[1024];
    int n = snprintf(s, sizeof s, "pkcs11:id=");
    for (i = 0; i <= P11_ID_MAX; i++)
        n += snprintf(s + n, sizeof s - (size_t)n, "%%%02zx", i);
    assert_int_equal(p11__uri_parse(s, &u, &why, &at), LK_ERR_URI);
    n = snprintf(s, sizeof s, "pkcs11:object=");
    memset(s + n, 'o', P11_OBJECT_MAX + 1);
    s[n + P11_OBJECT_MAX + 1] = '\0';
    assert_int_equal(p11__uri_parse(s, &u, &why, &at), LK_ERR_URI);
    s[n + P11_OBJECT_MAX] = '\0';
    assert_int_equal(p11__uri_parse(s, &u, &why, &at), LK_OK);

    /* The error names the offset of the bad attribute, never its value,
     * and a PIN parsed before the error is wiped. */
    memset(&u, 0xa5, sizeof u);
    assert_int_equal(p11__uri_parse("pkcs11:object=a;bogus=secret?pin-value=4321", &u, &why, &at),
                     LK_ERR_URI);
    assert_int_equal(at, 16);
    assert_null(strstr(why, "secret"));
    assert_int_equal(p11__uri_parse("pkcs11:object=a?pin-value=4321&x=1", &u, &why, &at),
                     LK_ERR_URI);
    assert_int_equal(at, 31);
    assert_null(strstr(why, "4321"));
    assert_true(lk_test_all_bytes(&u, sizeof u, 0));

    assert_int_equal(p11__uri_parse(NULL, &u, &why, &at), LK_ERR_ARG);
    assert_int_equal(p11__uri_parse("pkcs11:", NULL, &why, &at), LK_ERR_ARG);
    assert_int_equal(p11__uri_parse("pkcs11:", &u, NULL, &at), LK_ERR_ARG);
    assert_int_equal(p11__uri_parse("pkcs11:", &u, &why, NULL), LK_ERR_ARG);
}

static void expect_pin(const char *source, const char *want)
{
    char pin[P11_PIN_MAX + 1];
    size_t len = 99;
    char why[1200] = "x";
    lk_err err = p11__pin_read(source, pin, sizeof pin, &len, why, sizeof why);
    if (err != LK_OK)
        fail_msg("pin-source %s: %s %s", source, lk_errname(err), why);
    assert_string_equal(pin, want);
    assert_int_equal(len, strlen(want));
}

/* The error, and a reason that holds want_why (NULL: any non-empty one). */
static void expect_pin_err_why(const char *source, lk_err want, const char *want_why)
{
    char pin[P11_PIN_MAX + 1];
    size_t len = 99;
    char why[1200];
    memset(pin, 'x', sizeof pin);
    memset(why, 'y', sizeof why);
    assert_int_equal(p11__pin_read(source, pin, sizeof pin, &len, why, sizeof why), want);
    assert_int_equal(len, 0);
    assert_true(lk_test_all_bytes(pin, sizeof pin, 0));
    assert_true(strlen(why) > 0 && strlen(why) < sizeof why);
    if (want_why != NULL && strstr(why, want_why) == NULL)
        fail_msg("pin-source %s: reason '%s' lacks '%s'", source, why, want_why);
}

static void expect_pin_err(const char *source, lk_err want)
{
    expect_pin_err_why(source, want, NULL);
}

static void test_pin_source(void **state)
{
    char path[4096], src[4200], line[P11_PIN_MAX + 2];
    (void)state;

    snprintf(path, sizeof path, "%s/pin", g.dir);
    write_file(path, "1234\nsecond line\n", 17);
    expect_pin(path, "1234");
    snprintf(src, sizeof src, "file:%s", path);
    expect_pin(src, "1234");
    snprintf(src, sizeof src, "file://%s", path);   /* file:///abs */
    expect_pin(src, "1234");
    snprintf(src, sizeof src, "file://localhost%s", path);
    expect_pin(src, "1234");

    write_file(path, "abcd\r\nefgh", 10);
    expect_pin(path, "abcd");
    write_file(path, "no-newline", 10);
    expect_pin(path, "no-newline");
    write_file(path, " spaces kept \n", 14);
    expect_pin(path, " spaces kept ");

    /* The longest line, then one byte more, then a file with no end. */
    memset(line, '7', P11_PIN_MAX);
    line[P11_PIN_MAX] = '\n';
    write_file(path, line, P11_PIN_MAX + 1);
    line[P11_PIN_MAX] = '\0';
    expect_pin(path, line);
    memset(line, '7', sizeof line);
    line[P11_PIN_MAX + 1] = '\n';
    write_file(path, line, P11_PIN_MAX + 2);
    expect_pin_err_why(path, LK_ERR_FILE_UNUSABLE, "longer than 255 bytes");
    char big[4096];
    memset(big, '7', sizeof big);
    write_file(path, big, sizeof big);
    expect_pin_err_why(path, LK_ERR_FILE_UNUSABLE, "longer than 255 bytes");

    write_file(path, "", 0);
    expect_pin_err_why(path, LK_ERR_FILE_UNUSABLE, "first line is empty");
    write_file(path, "\nsecond", 7);
    expect_pin_err(path, LK_ERR_FILE_UNUSABLE);
    write_file(path, "\r\n", 2);
    expect_pin_err(path, LK_ERR_FILE_UNUSABLE);
    write_file(path, "12\0" "34\n", 6);
    expect_pin_err_why(path, LK_ERR_FILE_UNUSABLE, "NUL");

    /* The file and the system's reason, never its content: missing (a
     * restart will not bring it: not LK_ERR_IO), a directory, a device. */
    {
        char want[4300];
        snprintf(src, sizeof src, "%s/missing", g.dir);
        snprintf(want, sizeof want, "pin-source file %s: No such file or directory", src);
        expect_pin_err_why(src, LK_ERR_FILE_MISSING, want);
        snprintf(src, sizeof src, "file:%s/missing", g.dir);
        expect_pin_err_why(src, LK_ERR_FILE_MISSING, want);
        snprintf(src, sizeof src, "%s/pin/below-a-file", g.dir);
        expect_pin_err_why(src, LK_ERR_FILE_MISSING, "Not a directory");
        snprintf(want, sizeof want, "pin-source file %s: not a regular file", g.dir);
        expect_pin_err_why(g.dir, LK_ERR_FILE_UNUSABLE, want);   /* a directory */
        expect_pin_err_why("/dev/null", LK_ERR_FILE_UNUSABLE, "not a regular file");
        write_file(path, "SECRET-PIN", 10);
        chmod(path, 0);
        if (geteuid() != 0) { /* root reads it all the same (the integration test drops the capability) */
            snprintf(want, sizeof want, "pin-source file %s: Permission denied", path);
            expect_pin_err_why(path, LK_ERR_FILE_UNUSABLE, want);
        }
        chmod(path, 0600);
    }
    expect_pin_err("file:", LK_ERR_URI);
    expect_pin_err("file://host/etc/pin", LK_ERR_URI);
    expect_pin_err("env:PIN", LK_ERR_URI);
    expect_pin_err("https://example.com/pin", LK_ERR_URI);
    expect_pin_err("|/bin/echo", LK_ERR_URI);

    char pin[P11_PIN_MAX];
    size_t len;
    char why[64];
    assert_int_equal(p11__pin_read(path, pin, sizeof pin, &len, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(p11__pin_read(NULL, pin, P11_PIN_MAX, &len, why, sizeof why), LK_ERR_ARG);
    assert_int_equal(p11__pin_read(path, pin, P11_PIN_MAX + 1, &len, why, 0), LK_ERR_ARG);
}

/* Tokens that answer CKM_ECDSA in DER: only canonical DER of two positive
 * integers of at most 32 bytes becomes r||s. */
static void test_ecdsa_der(void **state)
{
    static const struct { const char *hex; int ok; } cases[] = {
        /* r = 1, s = 2 */
        { "3006020101020102", 1 },
        /* r and s of 32 bytes, top bit set: a 0x00 pad each */
        { "3046022100ff00000000000000000000000000000000000000000000000000000000000001"
          "0221008000000000000000000000000000000000000000000000000000000000000002", 1 },
        { "3007020101020102" "00", 0 },        /* trailing byte inside the SEQUENCE length */
        { "300602010102010200", 0 },           /* trailing byte after it */
        { "30060201010201", 0 },               /* truncated */
        { "308106020101020102", 0 },           /* long-form length (BER) */
        { "300702020001020102", 0 },           /* non-minimal INTEGER */
        { "3006020181020102", 0 },             /* negative r */
        { "3006020100020102", 1 },             /* r = 0: lk_se_sign_digest rejects it */
        /* 33-byte r (greater than 2^256) */
        { "3026022101ff00000000000000000000000000000000000000000000000000000000000001"
          "020102", 0 },
        { "3106020101020102", 0 },             /* SET, not SEQUENCE */
        { "", 0 },
    };
    uint8_t der[128], rs[64];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].hex) / 2;
        assert_true(len <= sizeof der);
        assert_int_equal(lk_test_hex2bin(cases[i].hex, der, len), 0);
        int ok = lk_ecdsa_der_to_raw(der, len, rs) == LK_OK;
        if (ok != cases[i].ok)
            fail_msg("case %zu (%s): got %d", i, cases[i].hex, ok);
        if (i == 0) {
            uint8_t want[64] = { 0 };
            want[31] = 1;
            want[63] = 2;
            assert_memory_equal(rs, want, 64);
        }
        if (i == 1) {
            assert_int_equal(rs[0], 0xff);
            assert_int_equal(rs[31], 0x01);
            assert_int_equal(rs[32], 0x80);
            assert_int_equal(rs[63], 0x02);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Opening a token                                                          */

static void test_open_errors(void **state)
{
    char detail[256], uri[8192];
    Dl_info info;
    (void)state;

    /* No module anywhere, a relative one, a missing one. */
    assert_int_equal(open_err("pkcs11:token=" TOKEN, NULL, NULL, detail, sizeof detail),
                     LK_ERR_MODULE);
    assert_non_null(strstr(detail, "module"));
    assert_int_equal(open_err("pkcs11:token=" TOKEN, "libsofthsm2.so", NULL, detail, sizeof detail),
                     LK_ERR_MODULE);
    assert_int_equal(open_err("pkcs11:token=" TOKEN "?module-path=/nonexistent/libnope.so",
                              NULL, NULL, detail, sizeof detail), LK_ERR_MODULE);
    assert_non_null(strstr(detail, "dlopen"));

    /* A shared library that is not a PKCS#11 module: cmocka's. */
    assert_true(dladdr((void *)&_cmocka_run_group_tests, &info) != 0);
    assert_non_null(info.dli_fname);
    assert_true(info.dli_fname[0] == '/');
    assert_int_equal(open_err("pkcs11:token=" TOKEN, info.dli_fname, NULL, detail, sizeof detail),
                     LK_ERR_MODULE);
    assert_non_null(strstr(detail, "C_GetFunctionList"));

    /* A malformed URI, an unsupported attribute. */
    assert_int_equal(open_err("pkcs11:token=" TOKEN ";bogus=1", g.module, NULL, detail,
                              sizeof detail), LK_ERR_URI);
    assert_non_null(strstr(detail, "pkcs11 URI"));
    assert_int_equal(open_err("pkcs11:token=" TOKEN "?module-name=softhsm2", g.module, NULL,
                              detail, sizeof detail), LK_ERR_URI);
    if (strstr(detail, "module-name") == NULL)
        fail_msg("detail: %s", detail);

    /* No such token; two tokens match; a slot-id that is not the token's. */
    snprintf(uri, sizeof uri, "pkcs11:token=nope?module-path=%s", g.module_q);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_KEY_NOT_FOUND);
    snprintf(uri, sizeof uri, "pkcs11:manufacturer=nobody?module-path=%s", g.module_q);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_KEY_NOT_FOUND);
    snprintf(uri, sizeof uri, "pkcs11:library-version=0.1?module-path=%s", g.module_q);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_KEY_NOT_FOUND);
    snprintf(uri, sizeof uri, "pkcs11:?module-path=%s", g.module_q);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_URI);
    assert_non_null(strstr(detail, "several tokens"));
    snprintf(uri, sizeof uri, "pkcs11:token=" TOKEN ";slot-id=%lu?module-path=%s",
             (unsigned long)g.slot_other, g.module_q);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_KEY_NOT_FOUND);

    /* An unreadable pin-source. */
    snprintf(uri, sizeof uri, "pkcs11:token=" TOKEN "?module-path=%s&pin-source=%s/missing",
             g.module_q, g.dir);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_FILE_MISSING);
    assert_non_null(strstr(detail, "pin-source file "));
    assert_non_null(strstr(detail, "/missing: No such file or directory"));

    /* Argument errors; a NULL detail is allowed. */
    lk_pkcs11 *p11 = NULL;
    assert_int_equal(lk_pkcs11_open(g.uri, NULL, NULL, NULL, detail, sizeof detail), LK_ERR_ARG);
    assert_int_equal(lk_pkcs11_open(NULL, NULL, NULL, &p11, NULL, 0), LK_ERR_ARG);
    assert_null(p11);
    assert_int_equal(open_err("pkcs11:token=nope", g.module, NULL, NULL, 0), LK_ERR_KEY_NOT_FOUND);
    /* A detail buffer of one byte gets an empty string. */
    detail[0] = 'x';
    assert_int_equal(open_err("pkcs11:token=nope", g.module, NULL, detail, 1),
                     LK_ERR_KEY_NOT_FOUND);
    assert_int_equal(detail[0], '\0');

    /* No handle. */
    lk_se se = lk_pkcs11_se(NULL);
    uint8_t b[8];
    assert_null(se.ops);
    CHECK(p11, lk_se_random(&se, b, sizeof b), LK_ERR_ARG);
    assert_non_null(lk_pkcs11_last_error(NULL));
    lk_pkcs11_close(NULL);
}

static void test_wrong_pin(void **state)
{
    char detail[256], uri[8192], path[4096];
    lk_pkcs11 *p11;
    (void)state;

    snprintf(uri, sizeof uri, "pkcs11:token=" TOKEN "?module-path=%s&pin-value=999111",
             g.module_q);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_KEY_LOCKED);
    assert_string_equal(detail, "C_Login: CKR_PIN_INCORRECT");
    assert_null(strstr(detail, "999111"));

    /* The pin argument overrides the URI's, both ways. */
    assert_int_equal(open_err(g.uri, NULL, "999222", detail, sizeof detail), LK_ERR_KEY_LOCKED);
    assert_null(strstr(detail, "999222"));
    p11 = NULL;
    assert_int_equal(lk_pkcs11_open(uri, NULL, USER_PIN, &p11, detail, sizeof detail), LK_OK);
    lk_pkcs11_close(p11);

    /* The module argument overrides the URI's. */
    snprintf(uri, sizeof uri, "pkcs11:token=" TOKEN "?module-path=/nonexistent.so");
    p11 = NULL;
    assert_int_equal(lk_pkcs11_open(uri, g.module, USER_PIN, &p11, detail, sizeof detail), LK_OK);
    lk_pkcs11_close(p11);

    /* pin-source: a wrong PIN, then the right one. */
    snprintf(path, sizeof path, "%s/pin", g.dir);
    write_file(path, "000000\n", 7);
    snprintf(uri, sizeof uri, "pkcs11:token=" TOKEN "?module-path=%s&pin-source=file:%s",
             g.module_q, path);
    assert_int_equal(open_err(uri, NULL, NULL, detail, sizeof detail), LK_ERR_KEY_LOCKED);
    write_file(path, USER_PIN "\n", strlen(USER_PIN) + 1);
    p11 = open_ok(uri);
    lk_pkcs11_close(p11);
}

/* Two handles on one module share its initialisation: closing the first
 * must not finalize the module under the second; after the last close the
 * module can be loaded and initialised again. The other token is selected
 * by slot-id alone. */
static void test_two_handles(void **state)
{
    char uri[8192];
    uint8_t a[32], b[32];
    (void)state;

    lk_pkcs11 *h1 = open_ok(g.uri);
    snprintf(uri, sizeof uri, "pkcs11:slot-id=%lu?module-path=%s&pin-value=" OTHER_PIN,
             (unsigned long)g.slot_other, g.module_q);
    lk_pkcs11 *h2 = open_ok(uri);
    lk_se se2 = lk_pkcs11_se(h2);
    assert_string_equal(se2.ops->name, "pkcs11");
    lk_pkcs11 *h3 = open_ok(g.uri);
    lk_pkcs11_close(h1);
    CHECK(h2, lk_se_random(&se2, a, sizeof a), LK_OK);
    lk_se se3 = lk_pkcs11_se(h3);
    CHECK(h3, lk_se_random(&se3, b, sizeof b), LK_OK);
    assert_memory_not_equal(a, b, sizeof a);
    lk_pkcs11_close(h2);
    lk_pkcs11_close(h3);

    h1 = open_ok(g.uri);
    lk_se se1 = lk_pkcs11_se(h1);
    CHECK(h1, lk_se_random(&se1, a, sizeof a), LK_OK);
    assert_false(lk_test_all_bytes(a, sizeof a, 0));
    /* A large request (several C_GenerateRandom calls). */
    uint8_t big[1000];
    memset(big, 0, sizeof big);
    CHECK(h1, lk_se_random(&se1, big, sizeof big), LK_OK);
    assert_false(lk_test_all_bytes(big + 900, 100, 0));
    lk_pkcs11_close(h1);
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

/* lk_pkcs11_token_serial: the token's serialNumber as the module reports
 * it, blanks trimmed; refusals leave "" behind. */
static void test_token_serial(void **state)
{
    char serial[17], small[16];
    CK_TOKEN_INFO ti;
    size_t n = sizeof ti.serialNumber;
    raw r;
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    assert_int_equal(lk_pkcs11_token_serial(p11, serial, sizeof serial), LK_OK);
    raw_begin(&r, 0, NULL);
    assert_int_equal(r.fl->C_GetTokenInfo(g.slot_test, &ti), CKR_OK);
    raw_end(&r);
    while (n > 0 && ti.serialNumber[n - 1] == ' ')
        n--;
    assert_int_equal(strlen(serial), n);
    assert_memory_equal(serial, ti.serialNumber, n);
    assert_true(n > 0);
    memset(small, 'x', sizeof small);
    assert_int_equal(lk_pkcs11_token_serial(p11, small, sizeof small), LK_ERR_BUFFER);
    assert_int_equal(small[0], '\0');
    assert_int_equal(lk_pkcs11_token_serial(NULL, serial, sizeof serial), LK_ERR_ARG);
    assert_int_equal(serial[0], '\0');
    assert_int_equal(lk_pkcs11_token_serial(p11, NULL, 17), LK_ERR_ARG);
    lk_pkcs11_close(p11);
}

static void test_generate_es256(void **state)
{
    uint8_t pub[LK_PUBKEY_DER_MAX], pub2[LK_PUBKEY_DER_MAX], id[64];
    size_t len = 0, len2 = 0;
    lk_alg alg = LK_ALG_NONE;
    raw r;
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    CHECK(p11, lk_se_generate(&se, keyref("object=es-key"), LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_OK);
    assert_int_equal(len, LK_P256_SPKI_BYTES);

    const unsigned char *p = pub;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    assert_non_null(pk);
    assert_true(EVP_PKEY_is_a(pk, "EC"));
    char group[32];
    assert_int_equal(EVP_PKEY_get_group_name(pk, group, sizeof group, NULL), 1);
    assert_string_equal(group, "prime256v1");
    EVP_PKEY_free(pk);
    memcpy(g.es_spki, pub, len);
    g.es_spki_len = len;

    /* public_key gives the same SPKI, by label and with the token named. */
    CHECK(p11, lk_se_public_key(&se, keyref("object=es-key"), &alg, pub2, sizeof pub2,
                                      &len2), LK_OK);
    assert_int_equal(alg, LK_ALG_ES256);
    assert_int_equal(len2, len);
    assert_memory_equal(pub2, pub, len);
    CHECK(p11, lk_se_public_key(&se, keyref("token=" TOKEN ";object=es-key;type=public"),
                                      &alg, pub2, sizeof pub2, &len2), LK_OK);
    assert_memory_equal(pub2, pub, len);

    raw_begin(&r, g.slot_test, USER_PIN);
    check_private_key(&r, "es-key", CKK_EC);
    /* No id= given: the key gets no CKA_ID (documented choice). */
    assert_int_equal(raw_id(&r, CKO_PRIVATE_KEY, "es-key", id, sizeof id), 0);
    assert_int_equal(raw_bool(&r, raw_find1(&r, CKO_PUBLIC_KEY, "es-key"), CKA_TOKEN), CK_TRUE);
    raw_end(&r);

    /* The label is taken now. */
    memset(pub2, 0xaa, sizeof pub2);
    CHECK(p11, lk_se_generate(&se, keyref("object=es-key"), LK_ALG_ES256, 0,
                                    pub2, sizeof pub2, &len2), LK_ERR_KEY_EXISTS);
    assert_int_equal(len2, 0);
    assert_true(lk_test_all_bytes(pub2, sizeof pub2, 0));
    CHECK(p11, lk_se_generate(&se, keyref("object=es-key"), LK_ALG_RS256, 2048,
                                    pub2, sizeof pub2, &len2), LK_ERR_KEY_EXISTS);
    assert_non_null(strstr(lk_pkcs11_last_error(p11), "exists"));
    lk_pkcs11_close(p11);
}

static void test_generate_rs256(void **state)
{
    uint8_t pub[LK_PUBKEY_DER_MAX], pub2[LK_PUBKEY_DER_MAX], id[64];
    size_t len = 0, len2 = 0;
    lk_alg alg = LK_ALG_NONE;
    raw r;
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    /* bits 0: the default, 2048. */
    CHECK(p11, lk_se_generate(&se, keyref("object=rs-key;id=RS%00"), LK_ALG_RS256, 0,
                                    pub, sizeof pub, &len), LK_OK);
    assert_int_equal(len, 294);
    const unsigned char *p = pub;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    assert_non_null(pk);
    assert_true(EVP_PKEY_is_a(pk, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(pk), 2048);
    BIGNUM *e = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pk, "e", &e), 1);
    assert_true(BN_is_word(e, 65537));
    BN_free(e);
    EVP_PKEY_free(pk);
    memcpy(g.rs_spki, pub, len);
    g.rs_spki_len = len;

    /* Found by id alone, too. */
    CHECK(p11, lk_se_public_key(&se, keyref("id=RS%00"), &alg, pub2, sizeof pub2, &len2),
                     LK_OK);
    assert_int_equal(alg, LK_ALG_RS256);
    assert_int_equal(len2, len);
    assert_memory_equal(pub2, pub, len);

    raw_begin(&r, g.slot_test, USER_PIN);
    check_private_key(&r, "rs-key", CKK_RSA);
    assert_int_equal(raw_id(&r, CKO_PRIVATE_KEY, "rs-key", id, sizeof id), 3);
    assert_memory_equal(id, "RS\0", 3);
    assert_int_equal(raw_id(&r, CKO_PUBLIC_KEY, "rs-key", id, sizeof id), 3);
    assert_memory_equal(id, "RS\0", 3);
    raw_end(&r);

    /* The label or the id is taken; nothing is created. */
    CHECK(p11, lk_se_generate(&se, keyref("object=rs-key"), LK_ALG_ES256, 0,
                                    pub2, sizeof pub2, &len2), LK_ERR_KEY_EXISTS);
    CHECK(p11, lk_se_generate(&se, keyref("object=fresh;id=RS%00"), LK_ALG_ES256, 0,
                                    pub2, sizeof pub2, &len2), LK_ERR_KEY_EXISTS);
    CHECK(p11, lk_se_public_key(&se, keyref("object=fresh"), &alg, pub2, sizeof pub2,
                                      &len2), LK_ERR_KEY_NOT_FOUND);
    lk_pkcs11_close(p11);
}

static void test_generate_errors(void **state)
{
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t len = 0;
    lk_alg alg;
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    CHECK(p11, lk_se_generate(&se, keyref("object=weak"), LK_ALG_RS256, 1024,
                                    pub, sizeof pub, &len), LK_ERR_KEY_WEAK);
    CHECK(p11, lk_se_generate(&se, keyref("object=weak"), LK_ALG_RS256, 2047,
                                    pub, sizeof pub, &len), LK_ERR_KEY_WEAK);
    CHECK(p11, lk_se_generate(&se, keyref("object=huge"), LK_ALG_RS256, 8192,
                                    pub, sizeof pub, &len), LK_ERR_ARG);
    CHECK(p11, lk_se_generate(&se, keyref("object=none"), LK_ALG_NONE, 0,
                                    pub, sizeof pub, &len), LK_ERR_ARG);
    /* Too small for the public key: refused before anything is made. */
    CHECK(p11, lk_se_generate(&se, keyref("object=small"), LK_ALG_ES256, 0,
                                    pub, LK_P256_SPKI_BYTES - 1, &len), LK_ERR_BUFFER);
    CHECK(p11, lk_se_generate(&se, keyref("object=small"), LK_ALG_RS256, 2048,
                                    pub, 293, &len), LK_ERR_BUFFER);
    CHECK(p11, lk_se_public_key(&se, keyref("object=small"), &alg, pub, sizeof pub, &len),
                     LK_ERR_KEY_NOT_FOUND);
    /* Key references that name no key here. */
    CHECK(p11, lk_se_generate(&se, keyref("token=" TOKEN), LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_ERR_URI);
    CHECK(p11, lk_se_generate(&se, "not-a-uri", LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_ERR_URI);
    CHECK(p11, lk_se_generate(&se, keyref("token=" OTHER ";object=x"), LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_ERR_KEY_NOT_FOUND);
    CHECK(p11, lk_se_generate(&se, keyref("object=x;type=cert"), LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_ERR_KEY_NOT_FOUND);
    lk_pkcs11_close(p11);

    /* Without a PIN nothing can be generated. */
    p11 = open_ok(g.uri_nopin);
    se = lk_pkcs11_se(p11);
    CHECK(p11, lk_se_generate(&se, keyref("object=nopin"), LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_ERR_KEY_LOCKED);
    assert_non_null(strstr(lk_pkcs11_last_error(p11), "C_Login"));
    lk_pkcs11_close(p11);
}

/* ------------------------------------------------------------------------ */
/* Signing                                                                  */

static void test_sign_es256(void **state)
{
    uint8_t digest[32], sig[LK_SIG_MAX_BYTES], sig2[64];
    size_t len = 0;
    (void)state;
    assert_int_equal(g.es_spki_len, LK_P256_SPKI_BYTES);

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    sha256("hello", 5, digest);
    CHECK(p11, lk_se_sign_digest(&se, keyref("object=es-key"), LK_ALG_ES256, digest,
                                       sig, sizeof sig, &len), LK_OK);
    assert_int_equal(len, 64);
    assert_true(verify(LK_ALG_ES256, g.es_spki, g.es_spki_len, digest, sig, len));
    /* Tampered digest or signature: no. */
    digest[0] ^= 1;
    assert_false(verify(LK_ALG_ES256, g.es_spki, g.es_spki_len, digest, sig, len));
    digest[0] ^= 1;
    sig[63] ^= 1;
    assert_false(verify(LK_ALG_ES256, g.es_spki, g.es_spki_len, digest, sig, len));
    sig[63] ^= 1;
    /* ECDSA is randomised: a second signature differs and verifies. */
    CHECK(p11, lk_se_sign_digest(&se, keyref("object=es-key;type=private"), LK_ALG_ES256,
                                       digest, sig2, sizeof sig2, &len), LK_OK);
    assert_memory_not_equal(sig, sig2, 64);
    assert_true(verify(LK_ALG_ES256, g.es_spki, g.es_spki_len, digest, sig2, len));
    lk_pkcs11_close(p11);
}

static void test_sign_rs256(void **state)
{
    uint8_t digest[32], sig[LK_SIG_MAX_BYTES];
    size_t len = 0;
    (void)state;
    assert_int_equal(g.rs_spki_len, 294);

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    sha256("hello", 5, digest);
    CHECK(p11, lk_se_sign_digest(&se, keyref("id=RS%00"), LK_ALG_RS256, digest,
                                       sig, sizeof sig, &len), LK_OK);
    assert_int_equal(len, 256);
    assert_true(verify(LK_ALG_RS256, g.rs_spki, g.rs_spki_len, digest, sig, len));
    digest[31] ^= 0x80;
    assert_false(verify(LK_ALG_RS256, g.rs_spki, g.rs_spki_len, digest, sig, len));
    digest[31] ^= 0x80;

    /* PKCS#1 v1.5 is deterministic: the same signature by label. */
    uint8_t sig2[256];
    size_t len2 = 0;
    CHECK(p11, lk_se_sign_digest(&se, keyref("object=rs-key"), LK_ALG_RS256, digest,
                                       sig2, sizeof sig2, &len2), LK_OK);
    assert_int_equal(len2, 256);
    assert_memory_equal(sig, sig2, 256);

    /* Straight to the backend (the dispatcher already refuses < 256):
     * a buffer one byte short. */
    memset(sig2, 0xaa, sizeof sig2);
    CHECK(p11, se.ops->sign_digest(se.ctx, keyref("object=rs-key"), LK_ALG_RS256, digest,
                                         sig2, 255, &len2), LK_ERR_BUFFER);
    assert_int_equal(len2, 0);
    assert_true(lk_test_all_bytes(sig2, 255, 0));
    lk_pkcs11_close(p11);
}

static void test_sign_errors(void **state)
{
    uint8_t digest[32], sig[LK_SIG_MAX_BYTES], pub[LK_PUBKEY_DER_MAX];
    size_t len = 0;
    lk_alg alg;
    char ref[2048];
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    sha256("x", 1, digest);

#define SIGN_ERR(ref_, alg_, want)                                                     \
    do {                                                                                 \
        memset(sig, 0xaa, sizeof sig);                                                   \
        len = 99;                                                                        \
        CHECK(p11, lk_se_sign_digest(&se, (ref_), (alg_), digest, sig, sizeof sig, \
                                           &len), (want));                              \
        assert_int_equal(len, 0);                                                        \
        assert_true(lk_test_all_bytes(sig, sizeof sig, 0));                              \
        assert_true(strlen(lk_pkcs11_last_error(p11)) > 0);                             \
    } while (0)

    /* The wrong algorithm for the key. */
    SIGN_ERR(keyref("object=es-key"), LK_ALG_RS256, LK_ERR_KEY_TYPE);
    assert_string_equal(lk_pkcs11_last_error(p11), "the key is ES256, not RS256");
    SIGN_ERR(keyref("object=rs-key"), LK_ALG_ES256, LK_ERR_KEY_TYPE);
    /* No such key, here. */
    SIGN_ERR(keyref("object=missing"), LK_ALG_ES256, LK_ERR_KEY_NOT_FOUND);
    SIGN_ERR(keyref("id=%ff"), LK_ALG_ES256, LK_ERR_KEY_NOT_FOUND);
    SIGN_ERR(keyref("object=es-key;id=RS%00"), LK_ALG_ES256, LK_ERR_KEY_NOT_FOUND);
    SIGN_ERR(keyref("object=es-key;type=cert"), LK_ALG_ES256, LK_ERR_KEY_NOT_FOUND);
    SIGN_ERR(keyref("token=" OTHER ";object=es-key"), LK_ALG_ES256, LK_ERR_KEY_NOT_FOUND);
    SIGN_ERR(keyref("serial=0;object=es-key"), LK_ALG_ES256, LK_ERR_KEY_NOT_FOUND);
    /* Malformed, or naming no object. */
    SIGN_ERR("object=es-key", LK_ALG_ES256, LK_ERR_URI);
    SIGN_ERR(keyref("object=es-key;x=1"), LK_ALG_ES256, LK_ERR_URI);
    SIGN_ERR(keyref("token=" TOKEN), LK_ALG_ES256, LK_ERR_URI);
    SIGN_ERR(keyref(""), LK_ALG_ES256, LK_ERR_URI);
    /* The full URI the handle was opened with works as a key reference
     * once it names the key: its query is not used for matching (the handle
     * has its module and login already), but must still be well-formed. */
    snprintf(ref, sizeof ref, "pkcs11:token=" TOKEN ";object=es-key?module-path=%s&pin-value=0",
             g.module_q);
    CHECK(p11, lk_se_sign_digest(&se, ref, LK_ALG_ES256, digest, sig, sizeof sig, &len),
                     LK_OK);
    assert_true(verify(LK_ALG_ES256, g.es_spki, g.es_spki_len, digest, sig, len));
    CHECK(p11, lk_se_sign_digest(&se, keyref("object=es-key?module-path=/other.so&pin-source=/x"),
                                 LK_ALG_ES256, digest, sig, sizeof sig, &len), LK_OK);
    SIGN_ERR(keyref("object=es-key?module-name=x"), LK_ALG_ES256, LK_ERR_URI);
    SIGN_ERR(keyref("object=es-key?pin-value=1&pin-source=/x"), LK_ALG_ES256, LK_ERR_URI);
    CHECK(p11, lk_se_public_key(&se, keyref("object=missing"), &alg, pub, sizeof pub, &len),
                     LK_ERR_KEY_NOT_FOUND);
    lk_pkcs11_close(p11);

    /* Without a PIN: the public key is readable, the private key is not
     * usable, and the error says why. */
    p11 = open_ok(g.uri_nopin);
    se = lk_pkcs11_se(p11);
    CHECK(p11, lk_se_public_key(&se, keyref("object=es-key"), &alg, pub, sizeof pub, &len),
                     LK_OK);
    assert_int_equal(len, g.es_spki_len);
    assert_memory_equal(pub, g.es_spki, len);
    SIGN_ERR(keyref("object=es-key"), LK_ALG_ES256, LK_ERR_KEY_LOCKED);
    lk_pkcs11_close(p11);
#undef SIGN_ERR
}

/* Two private keys with one label: the backend refuses to pick one. */
static void test_ambiguous_key(void **state)
{
    CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    static CK_BYTE oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
    CK_BBOOL yes = CK_TRUE;
    char label[] = "twin";
    CK_ATTRIBUTE pubt[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_EC_PARAMS, oid, sizeof oid },
        { CKA_LABEL, label, 4 },
    };
    CK_ATTRIBUTE privt[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_SIGN, &yes, sizeof yes },
        { CKA_LABEL, label, 4 },
    };
    CK_OBJECT_HANDLE hp, hq;
    uint8_t digest[32] = { 1 }, sig[64], pub[LK_PUBKEY_DER_MAX];
    size_t len;
    lk_alg alg;
    raw r;
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    raw_begin(&r, g.slot_test, USER_PIN);
    for (int i = 0; i < 2; i++)
        assert_int_equal(r.fl->C_GenerateKeyPair(r.s, &mech, pubt, 3, privt, 3, &hp, &hq),
                         CKR_OK);
    raw_end(&r);
    CHECK(p11, lk_se_sign_digest(&se, keyref("object=twin"), LK_ALG_ES256, digest,
                                       sig, sizeof sig, &len), LK_ERR_URI);
    assert_non_null(strstr(lk_pkcs11_last_error(p11), "several"));
    CHECK(p11, lk_se_public_key(&se, keyref("object=twin"), &alg, pub, sizeof pub, &len),
                     LK_ERR_URI);
    CHECK(p11, lk_se_generate(&se, keyref("object=twin"), LK_ALG_ES256, 0,
                                    pub, sizeof pub, &len), LK_ERR_KEY_EXISTS);
    lk_pkcs11_close(p11);
}

/* ------------------------------------------------------------------------ */
/* The whole path: an IoT Core token signed on the token                    */

static void check_jwt(const char *key, lk_alg alg, const uint8_t *spki, size_t spki_len)
{
    char tok[2048];
    size_t tok_len = 0, n = 0;
    uint8_t raw_part[1024], digest[32];
    const int64_t iat = 1700000000, exp = iat + 3600;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    assert_int_equal(lk_jwt_iotcore(&se, key, alg, "my-project", 10, iat, exp,
                                    tok, sizeof tok, &tok_len), LK_OK);
    lk_pkcs11_close(p11);
    assert_int_equal(strlen(tok), tok_len);

    char *dot1 = strchr(tok, '.');
    assert_non_null(dot1);
    char *dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));

    /* Header. */
    assert_int_equal(lk_b64url_decode(tok, (size_t)(dot1 - tok), raw_part, sizeof raw_part, &n, 0),
                     LK_OK);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)raw_part, n, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "alg")), lk_alg_name(alg));
    assert_string_equal(json_string_value(json_object_get(j, "typ")), "JWT");
    json_decref(j);
    /* Claims. */
    assert_int_equal(lk_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), raw_part,
                                      sizeof raw_part, &n, 0), LK_OK);
    j = json_loadb((const char *)raw_part, n, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "iat")), iat);
    assert_int_equal(json_integer_value(json_object_get(j, "exp")), exp);
    assert_string_equal(json_string_value(json_object_get(j, "aud")), "my-project");
    json_decref(j);
    /* Signature over "header.payload", checked by OpenSSL. */
    assert_int_equal(lk_b64url_decode(dot2 + 1, strlen(dot2 + 1), raw_part, sizeof raw_part,
                                      &n, 0), LK_OK);
    sha256(tok, (size_t)(dot2 - tok), digest);
    assert_true(verify(alg, spki, spki_len, digest, raw_part, n));
    /* And not over anything else. */
    tok[5] ^= 1;
    sha256(tok, (size_t)(dot2 - tok), digest);
    assert_false(verify(alg, spki, spki_len, digest, raw_part, n));
}

static void test_jwt_es256(void **state)
{
    (void)state;
    assert_int_equal(g.es_spki_len, LK_P256_SPKI_BYTES);
    check_jwt(keyref("object=es-key"), LK_ALG_ES256, g.es_spki, g.es_spki_len);
}

static void test_jwt_rs256(void **state)
{
    (void)state;
    assert_int_equal(g.rs_spki_len, 294);
    check_jwt(keyref("object=rs-key"), LK_ALG_RS256, g.rs_spki, g.rs_spki_len);
}

/* A token that keeps only the private key: RSA's public half comes from
 * the private key's CKA_MODULUS/CKA_PUBLIC_EXPONENT; an EC private key has
 * no point to offer, which is reported as a missing key. Destroys the
 * public objects, so it runs last. */
static void test_public_from_private(void **state)
{
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t len = 0;
    lk_alg alg = LK_ALG_NONE;
    raw r;
    (void)state;

    lk_pkcs11 *p11 = open_ok(g.uri);
    lk_se se = lk_pkcs11_se(p11);
    raw_begin(&r, g.slot_test, USER_PIN);
    assert_int_equal(r.fl->C_DestroyObject(r.s, raw_find1(&r, CKO_PUBLIC_KEY, "rs-key")), CKR_OK);
    assert_int_equal(r.fl->C_DestroyObject(r.s, raw_find1(&r, CKO_PUBLIC_KEY, "es-key")), CKR_OK);
    raw_end(&r);

    CHECK(p11, lk_se_public_key(&se, keyref("object=rs-key"), &alg, pub, sizeof pub, &len),
                     LK_OK);
    assert_int_equal(alg, LK_ALG_RS256);
    assert_int_equal(len, g.rs_spki_len);
    assert_memory_equal(pub, g.rs_spki, len);
    CHECK(p11, lk_se_public_key(&se, keyref("object=es-key"), &alg, pub, sizeof pub, &len),
                     LK_ERR_KEY_NOT_FOUND);
    /* The private key still signs. */
    uint8_t digest[32] = { 7 }, sig[64];
    CHECK(p11, lk_se_sign_digest(&se, keyref("object=es-key"), LK_ALG_ES256, digest,
                                       sig, sizeof sig, &len), LK_OK);
    assert_true(verify(LK_ALG_ES256, g.es_spki, g.es_spki_len, digest, sig, len));
    lk_pkcs11_close(p11);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_good),
        cmocka_unit_test(test_uri_bad),
        cmocka_unit_test(test_pin_source),
        cmocka_unit_test(test_ecdsa_der),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_token_serial),
        cmocka_unit_test(test_wrong_pin),
        cmocka_unit_test(test_two_handles),
        cmocka_unit_test(test_generate_es256),
        cmocka_unit_test(test_generate_rs256),
        cmocka_unit_test(test_generate_errors),
        cmocka_unit_test(test_sign_es256),
        cmocka_unit_test(test_sign_rs256),
        cmocka_unit_test(test_sign_errors),
        cmocka_unit_test(test_ambiguous_key),
        cmocka_unit_test(test_jwt_es256),
        cmocka_unit_test(test_jwt_rs256),
        cmocka_unit_test(test_public_from_private),
    };
    return cmocka_run_group_tests_name("pkcs11", tests, group_setup, group_teardown);
}
