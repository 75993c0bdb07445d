/* Opening a secure element from the command line's key options. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "latchkey/lk_pkcs11.h"
#include "latchkey/lk_softstore.h"
#include "tool.h"

/* RFC 3986: the scheme is case-insensitive, as the backend's parser has it. */
int tool_key_is_pkcs11(const char *key)
{
    return key != NULL && strncasecmp(key, "pkcs11:", 7) == 0;
}

int tool_key_opt(struct tool_key_opts *ko, int c, const char *arg)
{
    switch (c) {
    case 'k': ko->key = arg; return 1;
    case 's': ko->store = arg; return 1;
    case 'm': ko->module = arg; return 1;
    default: return 0;
    }
}

int tool_key_open(const struct tool_key_opts *o, struct tool_key *k)
{
    lk_err err;

    memset(k, 0, sizeof *k);
    if (o->key == NULL)
        return tool_usage_error("--key is required (a key name with --store, or a pkcs11: URI)");
    k->key = o->key;
    if (tool_key_is_pkcs11(o->key)) {
        char detail[256] = "";
        lk_pkcs11 *p = NULL;
        const char *module = o->module ? o->module : getenv("LATCHKEY_PKCS11_MODULE");
        const char *pin = getenv("LATCHKEY_PKCS11_PIN");
        if (o->store != NULL)
            return tool_usage_error("--store is for the software key store; a pkcs11: key names its token");
        err = lk_pkcs11_open(o->key, module, pin, &p, detail, sizeof detail);
        if (err != LK_OK) {
            tool_error("pkcs11", err, "%s", detail[0] ? detail : lk_strerror(err));
            return tool_exit_code(err);
        }
        k->p11 = p;
        k->se = lk_pkcs11_se(p);
        k->where = "the PKCS#11 token";
        return EXIT_OK;
    } else {
        lk_softstore *s = NULL;
        const char *path = o->store ? o->store : getenv("LATCHKEY_STORE");
        if (path == NULL)
            return tool_usage_error("--store FILE is required for key '%s' (or give a pkcs11: URI)",
                                    tool_shown(o->key));
        /* A missing store is written with its first key only: a refused
         * generate leaves no empty store behind. */
        err = lk_softstore_open(path, o->create ? LK_SOFTSTORE_CREATE_ON_WRITE : 0, &s);
        if (err != LK_OK) {
            tool_error("key store", err, "%s: %s", tool_shown(path), lk_strerror(err));
            return tool_exit_code(err);
        }
        k->store = s;
        k->se = lk_softstore_se(s);
        k->where = path;
        return EXIT_OK;
    }
}

void tool_key_close(struct tool_key *k)
{
    lk_softstore_close(k->store);
    lk_pkcs11_close(k->p11);
    memset(k, 0, sizeof *k);
}

void tool_key_error(const struct tool_key *k, const char *context, lk_err err)
{
    if (k->p11 != NULL && err != LK_ERR_BUFFER)
        tool_error(context, err, "%s (%s)", lk_strerror(err), lk_pkcs11_last_error(k->p11));
    else if (err == LK_ERR_KEY_NOT_FOUND)
        tool_error(context, err, "no key '%s' in %s", tool_shown(k->key), tool_shown(k->where));
    else if (err == LK_ERR_URI && k->store != NULL)
        tool_error(context, err, "'%s' is not a key name of the software store: 1 to %u characters "
                   "of A-Za-z0-9._+~%%- (or give a pkcs11: URI)", tool_shown(k->key),
                   LK_SOFTSTORE_NAME_MAX);
    else if (err == LK_ERR_KEY_EXISTS)
        tool_error(context, err, "a key '%s' already exists in %s", tool_shown(k->key),
                   tool_shown(k->where));
    else
        tool_error(context, err, "%s", lk_strerror(err));
}
