/* latchkey token: make the token a device sends as its MQTT password. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "latchkey/lk_jwt.h"
#include "latchkey/lk_util.h"
#include "cli.h"
#include "out.h"
#include "tool.h"

/* Enough for RS256-4096 with a project id of several hundred bytes; a
 * longer audience is reported as "token too large". */
#define TOKEN_MAX 2048

static const char token_usage[] =
    "usage: latchkey token --key NAME --store FILE --aud PROJECT [--ttl SECONDS] [--alg ES256|RS256]\n"
    "       latchkey token --key pkcs11:URI [--module PATH] --aud PROJECT [...]\n"
    "       ('latchkey token create' is the same)\n"
    "\n"
    "Prints a JSON Web Token signed by the key, with claims iat (now), exp (now + ttl)\n"
    "and aud (the project id), as an IoT Core device sends it as its MQTT password.\n"
    "  --aud PROJECT   the project id the token is for (required)\n"
    "  --ttl SECONDS   lifetime, 1..86400 (default 3600); the service refuses longer\n"
    "  --alg ALG       ES256 or RS256; must match the key (default: the key's type)\n"
    "  --now EPOCH     issue time instead of the clock (for tests and reproductions)\n"
    "  --module PATH   PKCS#11 module, if the URI has no module-path\n"
    "Environment: LATCHKEY_STORE, LATCHKEY_PKCS11_MODULE, LATCHKEY_PKCS11_PIN.\n"
    "Checking a token is another command: 'latchkey token verify --help'.\n";

int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {
        TOOL_KEY_OPTIONS, {"aud", required_argument, 0, 'A'}, {"ttl", required_argument, 0, 't'},
        {"alg", required_argument, 0, 'a'}, {"now", required_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct tool_key_opts ko = {0};
    struct tool_key k;
    const char *aud = NULL, *alg_s = NULL;
    long long ttl = 3600, now = (long long)time(NULL);
    char token[TOKEN_MAX];
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0, token_len = 0;
    lk_alg want = LK_ALG_NONE, have = LK_ALG_NONE;
    lk_err err;
    int c, rc;

    if (argc >= 2 && strcmp(argv[1], "verify") == 0)
        return cmd_token_verify(argc - 1, argv + 1);
    /* `latchkey token create ...` is the same as `latchkey token ...`. */
    if (argc >= 2 && strcmp(argv[1], "create") == 0) {
        argc--;
        argv++;
    }
    optind = 1;
    opterr = 0; /* our own message: getopt's would echo a value given with '=' */
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (tool_key_opt(&ko, c, optarg))
            continue;
        switch (c) {
        case 'A': aud = optarg; break;
        case 'a': alg_s = optarg; break;
        case 't':
            if (tool_parse_i64(optarg, 1, LK_JWT_MAX_LIFETIME, &ttl) != 0)
                return tool_usage_error("--ttl must be 1 to %d seconds (IoT Core refuses tokens living longer than 24 h)",
                                        LK_JWT_MAX_LIFETIME);
            break;
        case 'n':
            if (tool_parse_i64(optarg, 0, 4102444800LL, &now) != 0)
                return tool_usage_error("--now must be seconds since 1970, up to year 2100");
            break;
        case 'h': fputs(token_usage, stdout); return EXIT_OK;
        default: return tool_bad_option(argc, argv, optind);
        }
    }
    if (optind != argc)
        return tool_usage_error("token: unexpected argument '%s'", tool_shown(argv[optind]));
    if (aud == NULL || aud[0] == '\0')
        return tool_usage_error("token: --aud PROJECT is required (the project id)");
    if (alg_s != NULL) {
        want = lk_alg_from_name(alg_s, strlen(alg_s));
        if (want == LK_ALG_NONE)
            return tool_usage_error("--alg must be ES256 or RS256, not '%s'", tool_shown(alg_s));
    }
    rc = tool_key_open(&ko, &k);
    if (rc != EXIT_OK)
        return rc;
    /* The key decides the algorithm; --alg only asserts it. */
    err = lk_se_public_key(&k.se, k.key, &have, pub, sizeof pub, &pub_len);
    if (err != LK_OK) {
        tool_key_error(&k, "token", err);
        tool_key_close(&k);
        return tool_exit_code(err);
    }
    if (want != LK_ALG_NONE && want != have) {
        tool_error("token", LK_ERR_KEY_TYPE, "--alg %s, but key '%s' is an %s key",
                   lk_alg_name(want), tool_shown(k.key), lk_alg_name(have));
        tool_key_close(&k);
        return tool_exit_code(LK_ERR_KEY_TYPE); /* 10, as latchkey-device */
    }
    err = lk_jwt_iotcore(&k.se, k.key, have, aud, strlen(aud), now, now + ttl,
                         token, sizeof token, &token_len);
    if (err != LK_OK) {
        if (err == LK_ERR_BUFFER)
            tool_error("token", err, "token too large: over %d bytes (is --aud a project id?)", TOKEN_MAX - 1);
        else if (err == LK_ERR_ENCODING)
            tool_error("token", err, "--aud is not valid UTF-8");
        else
            tool_key_error(&k, "token", err);
        tool_key_close(&k);
        return tool_exit_code(err);
    }
    tool_key_close(&k);
    /* The token is a credential: it goes to stdout only, never to a log. */
    fwrite(token, 1, token_len, stdout);
    fputc('\n', stdout);
    lk_wipe(token, sizeof token);
    /* A caller that got no token must not be told it did. */
    return out_finish(EXIT_OK);
}
