/* latchkey key generate | public | list */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "latchkey/lk_pkcs11.h"
#include "latchkey/lk_softstore.h"
#include "latchkey/lk_iotcore.h"
#include "cli.h"
#include "se_pkey.h"
#include "tool.h"

static const char key_usage[] =
    "usage: latchkey key generate --key NAME --store FILE | --key pkcs11:URI [--alg ES256|RS256] [--bits N]\n"
    "       latchkey key public   --key NAME --store FILE | --key pkcs11:URI\n"
    "       latchkey key list     --store FILE | --key pkcs11:URI\n"
    "       latchkey key csr      --key NAME --store FILE | --key pkcs11:URI --device-id ID [--out FILE]\n"
    "\n"
    "Run 'latchkey key generate --help' (public, list) for a subcommand's options.\n";

static const char generate_usage[] =
    "usage: latchkey key generate --key NAME --store FILE [--alg ES256|RS256] [--bits N]\n"
    "       latchkey key generate --key 'pkcs11:token=T;object=O?module-path=M&pin-source=file:F'\n"
    "                             [--module PATH] [--alg ES256|RS256] [--bits N]\n"
    "\n"
    "Makes a new key pair inside the key store or token and prints its public key\n"
    "(PEM), ready for the device registry. The private key never leaves the token; the\n"
    "software store (--store) keeps it in a 0600 file and is for development only (a\n"
    "missing store is created with the key; a refused generate leaves no file).\n"
    "  --alg ES256|RS256   key type (default ES256: P-256)\n"
    "  --bits N            RSA modulus size, 2048..4096 (default 2048)\n"
    "  --module PATH       PKCS#11 module, if the URI has no module-path\n"
    "Environment: LATCHKEY_STORE (default --store), LATCHKEY_PKCS11_MODULE,\n"
    "LATCHKEY_PKCS11_PIN (used when the URI carries no PIN).\n";

static const char public_usage[] =
    "usage: latchkey key public --key NAME --store FILE\n"
    "       latchkey key public --key 'pkcs11:token=T;object=O?module-path=M' [--module PATH]\n"
    "\n"
    "Prints the public key (PEM) of a key in the store or token; no PIN is needed for a\n"
    "token that keeps a public key object.\n"
    "  --module PATH       PKCS#11 module, if the URI has no module-path\n"
    "Environment: LATCHKEY_STORE, LATCHKEY_PKCS11_MODULE, LATCHKEY_PKCS11_PIN.\n";

static const char list_usage[] =
    "usage: latchkey key list --store FILE\n"
    "       latchkey key list --key 'pkcs11:token=T?module-path=M&pin-source=file:F' [--module PATH]\n"
    "\n"
    "Lists the keys: of a store, NAME<TAB>ALG; of a token, one line per key pair,\n"
    "LABEL<TAB>ALG<TAB>ID (RFC 7512 values for object= and id=; ALG none for a key\n"
    "latchkey cannot sign with). object= and id= in the URI narrow the list; a token\n"
    "that requires a login needs the PIN to show its private keys.\n"
    "Environment: LATCHKEY_STORE, LATCHKEY_PKCS11_MODULE, LATCHKEY_PKCS11_PIN.\n";

static const char csr_usage[] =
    "usage: latchkey key csr --key NAME --store FILE --device-id ID [--out FILE]\n"
    "       latchkey key csr --key 'pkcs11:token=T;object=O?module-path=M' --device-id ID [--out FILE]\n"
    "\n"
    "Prints (or writes to --out) a PKCS#10 certificate request for the key, subject\n"
    "CN=ID and nothing else, signed inside the token with SHA-256: what 'latchkey ca\n"
    "issue --csr' turns into the device's certificate. The private key never leaves\n"
    "the token.\n"
    "Environment: LATCHKEY_STORE, LATCHKEY_PKCS11_MODULE, LATCHKEY_PKCS11_PIN.\n";

/* key csr: a request signed by the key itself, through the secure element. */
static int make_csr(struct tool_key *k, const char *id, const char *out_path)
{
    lk_err err;
    EVP_PKEY *pk = tool_se_pkey(&k->se, k->key, NULL, &err);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    FILE *out = NULL;
    int ok;
    if (pk == NULL) {
        tool_key_error(k, "key csr", err);
        X509_REQ_free(req);
        X509_NAME_free(name);
        return tool_exit_code(err);
    }
    ok = req != NULL && name != NULL && X509_REQ_set_version(req, 0) == 1 &&
         X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)id, -1, -1, 0) == 1 &&
         X509_REQ_set_subject_name(req, name) == 1 && X509_REQ_set_pubkey(req, pk) == 1 &&
         X509_REQ_sign(req, pk, EVP_sha256()) > 0;
    if (!ok)
        tool_error("key csr", LK_ERR_SIGN, "the request could not be signed (%s)",
                   k->p11 ? lk_pkcs11_last_error(k->p11) : "the key store refused");
    else if (out_path != NULL) {
        out = fopen(out_path, "w");
        ok = out != NULL && PEM_write_X509_REQ(out, req) == 1;
        ok = out != NULL && fclose(out) == 0 && ok;
        if (!ok)
            tool_error("key csr", LK_ERR_IO, "%s: cannot write the request", tool_shown(out_path));
    } else
        ok = PEM_write_X509_REQ(stdout, req) == 1;
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(pk);
    return ok ? EXIT_OK : EXIT_FAIL;
}

/* The usage of subcommand sub, or the group's. */
static const char *usage_of(const char *sub)
{
    if (sub != NULL && strcmp(sub, "generate") == 0)
        return generate_usage;
    if (sub != NULL && strcmp(sub, "public") == 0)
        return public_usage;
    if (sub != NULL && strcmp(sub, "list") == 0)
        return list_usage;
    if (sub != NULL && strcmp(sub, "csr") == 0)
        return csr_usage;
    return key_usage;
}

/* Write n bytes as an RFC 7512 path value: what may appear as it is stays,
 * everything else is %XX, so that the text pastes into object= or id=. */
static void put_p11_value(const unsigned char *v, size_t n, int all_hex)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = v[i];
        if (!all_hex && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         (c != '\0' && strchr("-._~:[]@!$'()*+,=&", c) != NULL)))
            putchar(c);
        else
            printf("%%%02x", c);
    }
}

/* One key pair of a token: LABEL TAB ALG TAB ID (see docs/cli.md). */
static void list_one(void *user, const lk_pkcs11_key_info *k)
{
    (void)user;
    put_p11_value(k->label, k->label_len, 0);
    printf("\t%s\t", k->alg == LK_ALG_NONE ? "none" : lk_alg_name(k->alg));
    put_p11_value(k->id, k->id_len, 1);
    putchar('\n');
    if (k->alg == LK_ALG_NONE) {
        fprintf(stderr, "%s: key list: '", tool_name);
        for (size_t i = 0; i < k->label_len; i++)
            fputc(k->label[i] >= 0x20 && k->label[i] < 0x7f ? k->label[i] : '?', stderr);
        fprintf(stderr, "' cannot sign for latchkey: %s\n", k->why);
    }
}

static int list_token(struct tool_key_opts *ko)
{
    struct tool_key k;
    lk_err err;
    int rc = tool_key_open(ko, &k);
    if (rc != EXIT_OK)
        return rc;
    err = lk_pkcs11_list_keys(k.p11, k.key, list_one, NULL);
    if (err != LK_OK) {
        tool_key_error(&k, "key list", err);
        rc = tool_exit_code(err);
    }
    tool_key_close(&k);
    fflush(stdout);
    return rc;
}

/* Print DER SubjectPublicKeyInfo as PEM on stdout. */
static int print_pem(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)len);
    int ok = pk != NULL && PEM_write_PUBKEY(stdout, pk) == 1;
    EVP_PKEY_free(pk);
    if (!ok) {
        tool_error("key", LK_ERR_CRYPTO, "the secure element returned a public key OpenSSL cannot read");
        return EXIT_DEVICE;
    }
    return EXIT_OK;
}

int cmd_key(int argc, char **argv)
{
    static const struct option opts[] = {
        TOOL_KEY_OPTIONS, {"alg", required_argument, 0, 'a'}, {"bits", required_argument, 0, 'b'},
        {"device-id", required_argument, 0, 'i'}, {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct tool_key_opts ko = {0};
    struct tool_key k;
    const char *sub, *alg_s = "ES256", *device_id = NULL, *out_path = NULL;
    long long bits = 0;
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    lk_alg alg;
    lk_err err;
    int c, rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fputs(key_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    sub = argv[1];
    optind = 1;
    opterr = 0; /* our own message: getopt's would echo a value given with '=' */
    while ((c = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (tool_key_opt(&ko, c, optarg))
            continue;
        switch (c) {
        case 'a': alg_s = optarg; break;
        case 'i': device_id = optarg; break;
        case 'o': out_path = optarg; break;
        case 'b':
            if (tool_parse_i64(optarg, 1, 1 << 20, &bits) != 0)
                return tool_usage_error("--bits takes a number of bits, 2048 to 4096");
            break;
        case 'h': fputs(usage_of(sub), stdout); return EXIT_OK;
        default: return tool_bad_option(argc - 1, argv + 1, optind);
        }
    }
    if (optind != argc - 1)
        return tool_usage_error("key %s: unexpected argument '%s'", tool_shown(sub),
                                tool_shown(argv[optind + 1]));
    alg = lk_alg_from_name(alg_s, strlen(alg_s));
    if (alg == LK_ALG_NONE)
        return tool_usage_error("--alg must be ES256 or RS256, not '%s'", tool_shown(alg_s));
    if (bits != 0 && alg != LK_ALG_RS256)
        return tool_usage_error("--bits is for RS256 keys only");
    if (bits != 0 && (bits < (long long)LK_RSA_MIN_BITS || bits > (long long)LK_RSA_MAX_BITS))
        return tool_usage_error("--bits must be 2048 to 4096 (RSA below 2048 bits is refused)");

    if (strcmp(sub, "list") == 0) {
        lk_softstore *s = NULL;
        const char *path = ko.store ? ko.store : getenv("LATCHKEY_STORE");
        size_t i;
        if (ko.key != NULL) {
            if (!tool_key_is_pkcs11(ko.key))
                return tool_usage_error("key list: --key takes a pkcs11: URI naming the token (list a "
                                        "software store with --store FILE)");
            return list_token(&ko);
        }
        if (path == NULL)
            return tool_usage_error("key list: --store FILE or --key pkcs11:URI is required");
        err = lk_softstore_open(path, 0, &s);
        if (err != LK_OK) {
            tool_error("key store", err, "%s: %s", tool_shown(path), lk_strerror(err));
            return tool_exit_code(err);
        }
        for (i = 0; i < lk_softstore_count(s); i++) {
            const char *name;
            lk_alg a;
            if (lk_softstore_entry(s, i, &name, &a) == LK_OK)
                printf("%s\t%s\n", name, lk_alg_name(a));
        }
        lk_softstore_close(s);
        return EXIT_OK;
    }
    if ((device_id != NULL || out_path != NULL) && strcmp(sub, "csr") != 0)
        return tool_usage_error("--device-id and --out are for 'key csr'");
    if (strcmp(sub, "csr") == 0) {
        if (device_id == NULL || !lk_id_valid(device_id, strlen(device_id)))
            return tool_usage_error("key csr: --device-id takes a valid device id (a letter, then 2 to 254 "
                                    "of A-Za-z0-9-._~+%%)");
        rc = tool_key_open(&ko, &k);
        if (rc != EXIT_OK)
            return rc;
        rc = make_csr(&k, device_id, out_path);
        tool_key_close(&k);
        return rc;
    }
    if (strcmp(sub, "generate") != 0 && strcmp(sub, "public") != 0)
        return tool_usage_error("key: unknown subcommand '%s' (generate, public, list, csr)", tool_shown(sub));

    ko.create = strcmp(sub, "generate") == 0;
    rc = tool_key_open(&ko, &k);
    if (rc != EXIT_OK)
        return rc;
    if (strcmp(sub, "generate") == 0)
        err = lk_se_generate(&k.se, k.key, alg, (unsigned)bits, pub, sizeof pub, &pub_len);
    else
        err = lk_se_public_key(&k.se, k.key, &alg, pub, sizeof pub, &pub_len);
    if (err != LK_OK) {
        tool_key_error(&k, strcmp(sub, "generate") == 0 ? "key generate" : "key public", err);
        tool_key_close(&k);
        return tool_exit_code(err);
    }
    tool_key_close(&k);
    return print_pem(pub, pub_len);
}
