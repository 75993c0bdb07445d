/*
 * pkcs11.c — the PKCS#11 secure-element backend: see lk_pkcs11.h for the
 * contract and p11_internal.h for the URI language.
 *
 * One handle = one loaded module, one token, one session. Key references are
 * pkcs11: URIs whose object/id select a key on that token. Private keys are
 * only ever used through C_Sign; nothing here reads a private value.
 */
#include "p11_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <p11-kit/pkcs11.h>

#include "latchkey/lk_pkcs11.h"
#include "latchkey/lk_util.h"

/* DER OBJECT IDENTIFIER 1.2.840.10045.3.1.7 (prime256v1), the CKA_EC_PARAMS
 * of a P-256 key. */
static const CK_BYTE p11__p256_oid[] = {
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
};

/* DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1); the digest
 * follows. CKM_RSA_PKCS signs exactly these bytes. */
static const CK_BYTE p11__sha256_digest_info[] = {
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

static const CK_BYTE p11__rsa_f4[] = { 0x01, 0x00, 0x01 };

#define P11_SLOTS_MAX 256u     /* more slots than this is a broken module */
#define P11_ERR_MAX 1200u      /* one line of detail: room for a 1024-byte pin-source path */
#define P11_EC_ATTR_MAX 128u   /* CKA_EC_PARAMS / CKA_EC_POINT of P-256 fit easily */
#define P11_RSA_MOD_MAX (LK_RSA_MAX_BITS / 8u + 1u) /* a leading zero byte allowed */
#define P11_RSA_EXP_MAX 8u

struct lk_pkcs11 {
    void *dl;                    /* dlopen handle */
    CK_FUNCTION_LIST_PTR fl;
    int registered;              /* counted in p11__modules */
    int logged_in;               /* our C_Login succeeded */
    CK_SESSION_HANDLE session;
    int have_session;
    CK_SLOT_ID slot;
    CK_INFO info;                /* for library-* attributes of key URIs */
    CK_SLOT_INFO slot_info;
    CK_TOKEN_INFO token_info;
    char last_error[P11_ERR_MAX];
};

/*
 * # Module initialisation is per process
 *
 * C_Initialize/C_Finalize act on the whole process, and dlopen of the same
 * path returns the same module. So two handles on one module must share one
 * initialisation: the first open initialises (or finds the module already
 * initialised by someone else, CKR_CRYPTOKI_ALREADY_INITIALIZED, and then
 * never finalizes it), and only the last close of a module this code
 * initialised calls C_Finalize. This table is that count; it is the only
 * global state of the backend and is guarded by a mutex.
 */
#define P11_MODULES_MAX 16u
static struct {
    CK_FUNCTION_LIST_PTR fl;
    unsigned users;
    int finalize;
} p11__modules[P11_MODULES_MAX];
static pthread_mutex_t p11__modules_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

static const char *p11__rv_name(CK_RV rv)
{
#define P11__RV(x) case x: return #x
    switch (rv) {
    P11__RV(CKR_OK);
    P11__RV(CKR_CANCEL);
    P11__RV(CKR_HOST_MEMORY);
    P11__RV(CKR_SLOT_ID_INVALID);
    P11__RV(CKR_GENERAL_ERROR);
    P11__RV(CKR_FUNCTION_FAILED);
    P11__RV(CKR_ARGUMENTS_BAD);
    P11__RV(CKR_CANT_LOCK);
    P11__RV(CKR_ATTRIBUTE_READ_ONLY);
    P11__RV(CKR_ATTRIBUTE_SENSITIVE);
    P11__RV(CKR_ATTRIBUTE_TYPE_INVALID);
    P11__RV(CKR_ATTRIBUTE_VALUE_INVALID);
    P11__RV(CKR_ACTION_PROHIBITED);
    P11__RV(CKR_DATA_INVALID);
    P11__RV(CKR_DATA_LEN_RANGE);
    P11__RV(CKR_DEVICE_ERROR);
    P11__RV(CKR_DEVICE_MEMORY);
    P11__RV(CKR_DEVICE_REMOVED);
    P11__RV(CKR_FUNCTION_CANCELED);
    P11__RV(CKR_FUNCTION_NOT_SUPPORTED);
    P11__RV(CKR_KEY_HANDLE_INVALID);
    P11__RV(CKR_KEY_SIZE_RANGE);
    P11__RV(CKR_KEY_TYPE_INCONSISTENT);
    P11__RV(CKR_KEY_FUNCTION_NOT_PERMITTED);
    P11__RV(CKR_MECHANISM_INVALID);
    P11__RV(CKR_MECHANISM_PARAM_INVALID);
    P11__RV(CKR_OBJECT_HANDLE_INVALID);
    P11__RV(CKR_OPERATION_ACTIVE);
    P11__RV(CKR_OPERATION_NOT_INITIALIZED);
    P11__RV(CKR_PIN_INCORRECT);
    P11__RV(CKR_PIN_INVALID);
    P11__RV(CKR_PIN_LEN_RANGE);
    P11__RV(CKR_PIN_EXPIRED);
    P11__RV(CKR_PIN_LOCKED);
    P11__RV(CKR_SESSION_CLOSED);
    P11__RV(CKR_SESSION_COUNT);
    P11__RV(CKR_SESSION_HANDLE_INVALID);
    P11__RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    P11__RV(CKR_SESSION_READ_ONLY);
    P11__RV(CKR_SESSION_EXISTS);
    P11__RV(CKR_SESSION_READ_ONLY_EXISTS);
    P11__RV(CKR_SESSION_READ_WRITE_SO_EXISTS);
    P11__RV(CKR_SIGNATURE_INVALID);
    P11__RV(CKR_SIGNATURE_LEN_RANGE);
    P11__RV(CKR_TEMPLATE_INCOMPLETE);
    P11__RV(CKR_TEMPLATE_INCONSISTENT);
    P11__RV(CKR_TOKEN_NOT_PRESENT);
    P11__RV(CKR_TOKEN_NOT_RECOGNIZED);
    P11__RV(CKR_TOKEN_WRITE_PROTECTED);
    P11__RV(CKR_USER_ALREADY_LOGGED_IN);
    P11__RV(CKR_USER_NOT_LOGGED_IN);
    P11__RV(CKR_USER_PIN_NOT_INITIALIZED);
    P11__RV(CKR_USER_TYPE_INVALID);
    P11__RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    P11__RV(CKR_USER_TOO_MANY_TYPES);
    P11__RV(CKR_RANDOM_SEED_NOT_SUPPORTED);
    P11__RV(CKR_RANDOM_NO_RNG);
    P11__RV(CKR_DOMAIN_PARAMS_INVALID);
    P11__RV(CKR_CURVE_NOT_SUPPORTED);
    P11__RV(CKR_BUFFER_TOO_SMALL);
    P11__RV(CKR_INFORMATION_SENSITIVE);
    P11__RV(CKR_CRYPTOKI_NOT_INITIALIZED);
    P11__RV(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    P11__RV(CKR_MUTEX_BAD);
    P11__RV(CKR_MUTEX_NOT_LOCKED);
    P11__RV(CKR_FIPS_SELF_TEST_FAILED);
    P11__RV(CKR_LIBRARY_LOAD_FAILED);
    P11__RV(CKR_PIN_TOO_WEAK);
    P11__RV(CKR_PUBLIC_KEY_INVALID);
    P11__RV(CKR_FUNCTION_REJECTED);
    default: return NULL;
    }
#undef P11__RV
}

/* The lk_err for a failed C_ call; dflt for everything without a better
 * match (LK_ERR_DEVICE, LK_ERR_SIGN, LK_ERR_RNG depending on the call). */
static lk_err p11__map(CK_RV rv, lk_err dflt)
{
    switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
    case CKR_USER_TOO_MANY_TYPES:
        return LK_ERR_KEY_LOCKED;
    case CKR_HOST_MEMORY:
        return LK_ERR_NOMEM;
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_FUNCTION_NOT_SUPPORTED:
    case CKR_CURVE_NOT_SUPPORTED:
        return LK_ERR_UNSUPPORTED;
    case CKR_KEY_TYPE_INCONSISTENT:
        return LK_ERR_KEY_TYPE;
    default:
        return dflt;
    }
}

/* Record "fn: CKR_NAME" as the handle's last error; return the mapped code. */
static lk_err p11__rv(lk_pkcs11 *p11, const char *fn, CK_RV rv, lk_err dflt)
{
    const char *name = p11__rv_name(rv);
    if (name != NULL)
        snprintf(p11->last_error, sizeof p11->last_error, "%s: %s", fn, name);
    else
        snprintf(p11->last_error, sizeof p11->last_error, "%s: CKR 0x%08lx", fn,
                 (unsigned long)rv);
    return p11__map(rv, dflt);
}

static lk_err p11__fail(lk_pkcs11 *p11, lk_err err, const char *msg)
{
    snprintf(p11->last_error, sizeof p11->last_error, "%s", msg);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Matching URI attributes with token, slot and library information        */

/*
 * PKCS#11 text fields are fixed-size and blank-padded, not NUL-terminated.
 * want matches when it is a prefix of the field and the rest is padding.
 * NUL is accepted as padding too: some modules pad with it, and a NUL
 * cannot be part of a URI value (the parser rejects it).
 */
static int p11__field_eq(const char *want, const CK_UTF8CHAR *field, size_t size)
{
    size_t n = strlen(want), i;
    if (n > size || memcmp(want, field, n) != 0)
        return 0;
    for (i = n; i < size; i++)
        if (field[i] != ' ' && field[i] != '\0')
            return 0;
    return 1;
}

/* 1 when every library, slot and token attribute of u matches. */
static int p11__token_matches(const p11_uri *u, const CK_INFO *info, CK_SLOT_ID slot,
                              const CK_SLOT_INFO *si, const CK_TOKEN_INFO *ti)
{
    unsigned h = u->have;

    if ((h & P11_HAVE_LIB_MANUF) &&
        !p11__field_eq(u->library_manufacturer, info->manufacturerID, sizeof info->manufacturerID))
        return 0;
    if ((h & P11_HAVE_LIB_DESC) &&
        !p11__field_eq(u->library_description, info->libraryDescription,
                       sizeof info->libraryDescription))
        return 0;
    if ((h & P11_HAVE_LIB_VERSION) &&
        (info->libraryVersion.major != u->library_version[0] ||
         info->libraryVersion.minor != u->library_version[1]))
        return 0;
    if ((h & P11_HAVE_SLOT_ID) && slot != u->slot_id)
        return 0;
    if ((h & P11_HAVE_SLOT_MANUF) &&
        !p11__field_eq(u->slot_manufacturer, si->manufacturerID, sizeof si->manufacturerID))
        return 0;
    if ((h & P11_HAVE_SLOT_DESC) &&
        !p11__field_eq(u->slot_description, si->slotDescription, sizeof si->slotDescription))
        return 0;
    if ((h & P11_HAVE_TOKEN) && !p11__field_eq(u->token, ti->label, sizeof ti->label))
        return 0;
    if ((h & P11_HAVE_MANUFACTURER) &&
        !p11__field_eq(u->manufacturer, ti->manufacturerID, sizeof ti->manufacturerID))
        return 0;
    if ((h & P11_HAVE_SERIAL) &&
        !p11__field_eq(u->serial, ti->serialNumber, sizeof ti->serialNumber))
        return 0;
    if ((h & P11_HAVE_MODEL) && !p11__field_eq(u->model, ti->model, sizeof ti->model))
        return 0;
    return 1;
}

/* Parse a URI, recording the parser's reason as the last error. */
static lk_err p11__parse(lk_pkcs11 *p11, const char *uri, p11_uri *u)
{
    const char *why = "";
    size_t at = 0;
    lk_err err = p11__uri_parse(uri, u, &why, &at);
    if (err == LK_ERR_URI)
        snprintf(p11->last_error, sizeof p11->last_error,
                 "pkcs11 URI: %s (at byte %zu)", why, at);
    else if (err != LK_OK)
        p11__fail(p11, err, "pkcs11 URI: missing");
    return err;
}

/* ------------------------------------------------------------------------ */
/* Loading, token selection, session                                        */

/* Count a user of the module; initialise it for the first one. Called with
 * p11->fl set. */
static lk_err p11__module_acquire(lk_pkcs11 *p11)
{
    CK_C_INITIALIZE_ARGS args;
    lk_err err = LK_ERR_MODULE;
    unsigned i, free_slot = P11_MODULES_MAX;
    CK_RV rv;

    pthread_mutex_lock(&p11__modules_lock);
    for (i = 0; i < P11_MODULES_MAX; i++) {
        if (p11__modules[i].fl == p11->fl) {
            p11__modules[i].users++;
            p11->registered = 1;
            err = LK_OK;
            goto exit;
        }
        if (p11__modules[i].fl == NULL && free_slot == P11_MODULES_MAX)
            free_slot = i;
    }
    if (free_slot == P11_MODULES_MAX) {
        p11__fail(p11, LK_ERR_MODULE, "too many PKCS#11 modules loaded at once");
        goto exit;
    }
    /* OS locking: the module may be used from several threads (through
     * several handles), and needs no callbacks from us. */
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    rv = p11->fl->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        err = p11__rv(p11, "C_Initialize", rv, LK_ERR_MODULE);
        if (err != LK_ERR_NOMEM)
            err = LK_ERR_MODULE;
        goto exit;
    }
    p11__modules[free_slot].fl = p11->fl;
    p11__modules[free_slot].users = 1;
    /* Someone else in this process initialised it: they finalize it. */
    p11__modules[free_slot].finalize = rv == CKR_OK;
    p11->registered = 1;
    err = LK_OK;
exit:
    pthread_mutex_unlock(&p11__modules_lock);
    return err;
}

static void p11__module_release(lk_pkcs11 *p11)
{
    unsigned i;

    pthread_mutex_lock(&p11__modules_lock);
    for (i = 0; i < P11_MODULES_MAX; i++) {
        if (p11__modules[i].fl != p11->fl)
            continue;
        if (--p11__modules[i].users == 0) {
            if (p11__modules[i].finalize)
                (void)p11->fl->C_Finalize(NULL);
            p11__modules[i].fl = NULL;
            p11__modules[i].finalize = 0;
        }
        break;
    }
    p11->registered = 0;
    pthread_mutex_unlock(&p11__modules_lock);
}

/* dlopen the module at path, get its function list and initialise it. */
static lk_err p11__load(lk_pkcs11 *p11, const char *path)
{
    CK_C_GetFunctionList get_list;
    CK_FUNCTION_LIST_PTR fl = NULL;
    const char *msg;
    CK_RV rv;

    /* RTLD_LOCAL: the module's symbols (C_Sign ...) must not satisfy
     * another module loaded later. */
    p11->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p11->dl == NULL) {
        msg = dlerror();
        snprintf(p11->last_error, sizeof p11->last_error, "dlopen: %s",
                 msg != NULL ? msg : "failed");
        return LK_ERR_MODULE;
    }
    /* POSIX's sanctioned way to get a function pointer from dlsym. */
    *(void **)&get_list = dlsym(p11->dl, "C_GetFunctionList");
    if (get_list == NULL)
        return p11__fail(p11, LK_ERR_MODULE, "dlsym: no C_GetFunctionList in the module");
    rv = get_list(&fl);
    if (rv != CKR_OK) {
        p11__rv(p11, "C_GetFunctionList", rv, LK_ERR_MODULE);
        return LK_ERR_MODULE;
    }
    /* Every function this file calls: a module with a NULL entry would
     * crash us later, so refuse it now. */
    if (fl == NULL || fl->version.major < 2 ||
        fl->C_Initialize == NULL || fl->C_Finalize == NULL || fl->C_GetInfo == NULL ||
        fl->C_GetSlotList == NULL || fl->C_GetSlotInfo == NULL ||
        fl->C_GetTokenInfo == NULL || fl->C_OpenSession == NULL ||
        fl->C_CloseSession == NULL || fl->C_GetSessionInfo == NULL ||
        fl->C_Login == NULL || fl->C_FindObjectsInit == NULL ||
        fl->C_FindObjects == NULL || fl->C_FindObjectsFinal == NULL ||
        fl->C_GetAttributeValue == NULL || fl->C_GenerateKeyPair == NULL ||
        fl->C_DestroyObject == NULL || fl->C_SignInit == NULL ||
        fl->C_Sign == NULL || fl->C_GenerateRandom == NULL)
        return p11__fail(p11, LK_ERR_MODULE,
                         "C_GetFunctionList: incomplete function list");
    p11->fl = fl;
    return p11__module_acquire(p11);
}

/* Find the one initialised token that matches u's library, slot and token
 * attributes. */
static lk_err p11__select_token(lk_pkcs11 *p11, const p11_uri *u)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0, i, matches = 0;
    lk_err err = LK_ERR_DEVICE;
    CK_RV rv;
    int tries;

    rv = p11->fl->C_GetInfo(&p11->info);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_GetInfo", rv, LK_ERR_DEVICE);
        goto exit;
    }
    /* The slot list can grow between the size query and the fetch (a token
     * plugged in): retry a few times. */
    for (tries = 0; tries < 4; tries++) {
        CK_SLOT_ID *grown;
        rv = p11->fl->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv != CKR_OK) {
            err = p11__rv(p11, "C_GetSlotList", rv, LK_ERR_DEVICE);
            goto exit;
        }
        if (n == 0 || n > P11_SLOTS_MAX)
            break;
        grown = realloc(slots, n * sizeof *slots);
        if (grown == NULL) {
            err = p11__fail(p11, LK_ERR_NOMEM, "out of memory");
            goto exit;
        }
        slots = grown;
        rv = p11->fl->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_BUFFER_TOO_SMALL)
            break;
    }
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_GetSlotList", rv, LK_ERR_DEVICE);
        goto exit;
    }
    if (n > P11_SLOTS_MAX) {
        err = p11__fail(p11, LK_ERR_DEVICE, "C_GetSlotList: implausibly many slots");
        goto exit;
    }

    for (i = 0; i < n; i++) {
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        if ((u->have & P11_HAVE_SLOT_ID) && slots[i] != u->slot_id)
            continue;
        /* A token pulled out meanwhile simply does not match. */
        if (p11->fl->C_GetSlotInfo(slots[i], &si) != CKR_OK ||
            p11->fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        /* An uninitialised token (SoftHSM's spare slot) holds no keys. */
        if (!(ti.flags & CKF_TOKEN_INITIALIZED))
            continue;
        if (!p11__token_matches(u, &p11->info, slots[i], &si, &ti))
            continue;
        if (matches++ == 0) {
            p11->slot = slots[i];
            p11->slot_info = si;
            p11->token_info = ti;
        }
    }
    if (matches == 0) {
        err = p11__fail(p11, LK_ERR_KEY_NOT_FOUND,
                        "no initialized token matches the URI's token attributes");
        goto exit;
    }
    /* Never guess between tokens: signing with the wrong device's key is
     * worse than an error. */
    if (matches > 1) {
        err = p11__fail(p11, LK_ERR_URI,
                        "several tokens match: add token=, serial= or slot-id= to the URI");
        goto exit;
    }
    err = LK_OK;
exit:
    free(slots);
    return err;
}

static lk_err p11__open_session(lk_pkcs11 *p11)
{
    CK_FLAGS flags = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    CK_RV rv = p11->fl->C_OpenSession(p11->slot, flags, NULL, NULL, &p11->session);

    /* A write-protected token can still sign: fall back to a read-only
     * session (generate will then fail with CKR_SESSION_READ_ONLY). */
    if (rv == CKR_TOKEN_WRITE_PROTECTED)
        rv = p11->fl->C_OpenSession(p11->slot, CKF_SERIAL_SESSION, NULL, NULL,
                                    &p11->session);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_OpenSession", rv, LK_ERR_DEVICE);
    p11->have_session = 1;
    return LK_OK;
}

/* 1 when the application is logged in as the user on this token: by this
 * handle (some modules never update the session state), or by another
 * handle of the process (logins are per application and token). */
static int p11__logged_in(lk_pkcs11 *p11)
{
    CK_SESSION_INFO si;
    if (p11->logged_in)
        return 1;
    if (p11->fl->C_GetSessionInfo(p11->session, &si) != CKR_OK)
        return 0;
    return si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
}

/* LK_ERR_KEY_LOCKED when private objects need a login that has not happened
 * (no PIN was given); LK_OK otherwise. */
static lk_err p11__need_login(lk_pkcs11 *p11)
{
    if ((p11->token_info.flags & CKF_LOGIN_REQUIRED) && !p11__logged_in(p11))
        return p11__fail(p11, LK_ERR_KEY_LOCKED,
                         "not logged in: give pin-value or pin-source (C_Login)");
    return LK_OK;
}

/* see lk_pkcs11.h */
lk_err lk_pkcs11_open(const char *uri, const char *module, const char *pin,
                      lk_pkcs11 **out, char *detail, size_t detail_size)
{
    lk_pkcs11 *p11 = NULL;
    p11_uri u;
    /* The PIN, copied from whichever source wins; wiped on every path. */
    char pinbuf[P11_PIN_MAX + 1];
    size_t pin_len = 0, n;
    int have_pin = 0;
    lk_err err = LK_ERR_ARG;
    CK_RV rv;

    if (detail != NULL && detail_size > 0)
        detail[0] = '\0';
    if (out == NULL)
        return LK_ERR_ARG;
    *out = NULL;
    p11 = calloc(1, sizeof *p11);
    if (p11 == NULL) {
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "out of memory");
        return LK_ERR_NOMEM;
    }
    /* Nothing secret is held before this point. */
    memset(&u, 0, sizeof u);
    memset(pinbuf, 0, sizeof pinbuf);
    if (uri == NULL) {
        err = p11__fail(p11, LK_ERR_ARG, "no URI given");
        goto exit;
    }
    err = p11__parse(p11, uri, &u);
    if (err != LK_OK)
        goto exit;

    /* The module: the caller's overrides the URI's. A relative path would
     * be looked up in the library search path or the working directory,
     * which is not what a configuration naming a token means. */
    if (module == NULL)
        module = (u.have & P11_HAVE_MODULE_PATH) ? u.module_path : NULL;
    if (module == NULL) {
        err = p11__fail(p11, LK_ERR_MODULE,
                        "no module: give module-path= in the URI or a module path");
        goto exit;
    }
    n = lk_strnlen(module, P11_PATH_MAX + 1);
    if (n == 0 || n > P11_PATH_MAX || module[0] != '/') {
        err = p11__fail(p11, LK_ERR_MODULE, "the module path must be absolute and at most 1024 bytes");
        goto exit;
    }

    /* The PIN: the caller's overrides pin-value / pin-source. */
    if (pin != NULL) {
        pin_len = lk_strnlen(pin, P11_PIN_MAX + 1);
        if (pin_len > P11_PIN_MAX) {
            err = p11__fail(p11, LK_ERR_ARG, "PIN longer than 255 bytes");
            goto exit;
        }
        memcpy(pinbuf, pin, pin_len);
        have_pin = 1;
    } else if (u.have & P11_HAVE_PIN_VALUE) {
        pin_len = strlen(u.pin_value);
        memcpy(pinbuf, u.pin_value, pin_len);
        have_pin = 1;
    } else if (u.have & P11_HAVE_PIN_SOURCE) {
        err = p11__pin_read(u.pin_source, pinbuf, sizeof pinbuf, &pin_len, p11->last_error,
                            sizeof p11->last_error);
        if (err != LK_OK)
            goto exit;
        have_pin = 1;
    }
    /* The URI copy of the PIN is no longer needed. */
    lk_wipe(u.pin_value, sizeof u.pin_value);

    err = p11__load(p11, module);
    if (err != LK_OK)
        goto exit;
    err = p11__select_token(p11, &u);
    if (err != LK_OK)
        goto exit;
    err = p11__open_session(p11);
    if (err != LK_OK)
        goto exit;
    if (have_pin) {
        rv = p11->fl->C_Login(p11->session, CKU_USER, (CK_UTF8CHAR_PTR)pinbuf,
                              (CK_ULONG)pin_len);
        /* Logins are per application and token: another handle of this
         * process may have logged in already. */
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
            err = p11__rv(p11, "C_Login", rv, LK_ERR_DEVICE);
            goto exit;
        }
        p11->logged_in = 1;
    }
    p11->last_error[0] = '\0';
    *out = p11;
    err = LK_OK;

exit:
    lk_wipe(pinbuf, sizeof pinbuf);
    p11__uri_wipe(&u);
    if (err != LK_OK) {
        if (detail != NULL && detail_size > 0)
            snprintf(detail, detail_size, "%s", p11->last_error);
        lk_pkcs11_close(p11);
    }
    return err;
}

/* see lk_pkcs11.h */
void lk_pkcs11_close(lk_pkcs11 *p11)
{
    if (p11 == NULL)
        return;
    /* No C_Logout: the login belongs to the whole application, and another
     * handle on the same token may still need it. Closing the last session
     * of the application logs it out (PKCS#11 v2.40 §5.6). */
    if (p11->have_session)
        (void)p11->fl->C_CloseSession(p11->session);
    if (p11->registered)
        p11__module_release(p11);
    if (p11->dl != NULL)
        dlclose(p11->dl);
    lk_wipe(p11, sizeof *p11);
    free(p11);
}

/* see lk_pkcs11.h */
const char *lk_pkcs11_last_error(const lk_pkcs11 *p11)
{
    if (p11 == NULL)
        return "no PKCS#11 handle";
    return p11->last_error;
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */

/*
 * Parse a key reference and check it against the open handle: it must name
 * an object (object= and/or id=) and its token attributes must match the
 * open token. The query (module-path, pin-value, pin-source) is checked for
 * syntax only: RFC 7512 query attributes say how to reach a token, not which
 * object to match, and the handle has already reached it (possibly with a
 * module or PIN that overrode the URI's).
 */
static lk_err p11__key_uri(lk_pkcs11 *p11, const char *key, p11_uri *u)
{
    lk_err err = p11__parse(p11, key, u);

    if (err != LK_OK)
        return err;
    lk_wipe(u->pin_value, sizeof u->pin_value);
    if (!(u->have & (P11_HAVE_OBJECT | P11_HAVE_ID)))
        return p11__fail(p11, LK_ERR_URI, "the key URI names no object= or id=");
    if (u->type != P11_TYPE_ANY && u->type != P11_TYPE_PRIVATE && u->type != P11_TYPE_PUBLIC)
        return p11__fail(p11, LK_ERR_KEY_NOT_FOUND,
                         "the key URI's type= names no key pair (use private or public)");
    if (!p11__token_matches(u, &p11->info, p11->slot, &p11->slot_info, &p11->token_info))
        return p11__fail(p11, LK_ERR_KEY_NOT_FOUND, "the key URI names another token");
    return LK_OK;
}

/* Find objects of class cls with the given label and/or id (NULL = any).
 * *count is 0, 1 or 2 (two meaning "more than one"); *h the first. */
static lk_err p11__find(lk_pkcs11 *p11, CK_OBJECT_CLASS cls, const char *label,
                        const unsigned char *id, size_t id_len,
                        CK_OBJECT_HANDLE *h, CK_ULONG *count)
{
    CK_ATTRIBUTE t[3];
    CK_OBJECT_HANDLE found[2];
    CK_ULONG nt = 0, n = 0;
    CK_RV rv;

    *count = 0;
    t[nt].type = CKA_CLASS;
    t[nt].pValue = &cls;
    t[nt++].ulValueLen = sizeof cls;
    if (label != NULL) {
        t[nt].type = CKA_LABEL;
        t[nt].pValue = (void *)label;
        t[nt++].ulValueLen = (CK_ULONG)strlen(label);
    }
    if (id != NULL) {
        t[nt].type = CKA_ID;
        t[nt].pValue = (void *)id;
        t[nt++].ulValueLen = (CK_ULONG)id_len;
    }
    rv = p11->fl->C_FindObjectsInit(p11->session, t, nt);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_FindObjectsInit", rv, LK_ERR_DEVICE);
    rv = p11->fl->C_FindObjects(p11->session, found, 2, &n);
    /* Always end the search, even after a failure, or the session stays
     * in an active find operation. */
    (void)p11->fl->C_FindObjectsFinal(p11->session);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_FindObjects", rv, LK_ERR_DEVICE);
    if (n > 2)
        return p11__fail(p11, LK_ERR_DEVICE, "C_FindObjects: returned too many objects");
    *count = n;
    if (n > 0)
        *h = found[0];
    return LK_OK;
}

static lk_err p11__find_uri(lk_pkcs11 *p11, CK_OBJECT_CLASS cls, const p11_uri *u,
                            CK_OBJECT_HANDLE *h, CK_ULONG *count)
{
    return p11__find(p11, cls, (u->have & P11_HAVE_OBJECT) ? u->object : NULL,
                     (u->have & P11_HAVE_ID) ? u->id : NULL, u->id_len, h, count);
}

/* The one private key u names. */
static lk_err p11__private_key(lk_pkcs11 *p11, const p11_uri *u, CK_OBJECT_HANDLE *h)
{
    CK_ULONG count = 0;
    lk_err err = p11__find_uri(p11, CKO_PRIVATE_KEY, u, h, &count);

    if (err != LK_OK)
        return err;
    if (count == 0) {
        /* Without a login private objects are invisible: say so rather
         * than claim the key does not exist. */
        err = p11__need_login(p11);
        if (err != LK_OK)
            return err;
        return p11__fail(p11, LK_ERR_KEY_NOT_FOUND, "no private key matches the key URI");
    }
    if (count > 1)
        return p11__fail(p11, LK_ERR_URI,
                         "several private keys match the key URI: add id= or object=");
    return LK_OK;
}

/* Read one attribute into buf (at most max bytes). */
static lk_err p11__attr(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                        void *buf, size_t max, size_t *len)
{
    CK_ATTRIBUTE a;
    CK_RV rv;

    a.type = type;
    a.pValue = buf;
    a.ulValueLen = (CK_ULONG)max;
    rv = p11->fl->C_GetAttributeValue(p11->session, h, &a, 1);
    if (rv != CKR_OK)
        return p11__rv(p11, "C_GetAttributeValue", rv, LK_ERR_DEVICE);
    if (a.ulValueLen > max)
        return p11__fail(p11, LK_ERR_DEVICE, "C_GetAttributeValue: value longer than the buffer");
    *len = (size_t)a.ulValueLen;
    return LK_OK;
}

static lk_err p11__attr_ulong(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                              CK_ULONG *v)
{
    size_t len = 0;
    lk_err err = p11__attr(p11, h, type, v, sizeof *v, &len);
    if (err == LK_OK && len != sizeof *v)
        err = p11__fail(p11, LK_ERR_DEVICE, "C_GetAttributeValue: CK_ULONG of the wrong size");
    return err;
}

/* The number of significant bits of a big-endian unsigned integer. */
static size_t p11__bits(const CK_BYTE *v, size_t len)
{
    size_t i = 0, bits;
    unsigned top;

    while (i < len && v[i] == 0)
        i++;
    if (i == len)
        return 0;
    bits = (len - i) * 8;
    for (top = v[i]; !(top & 0x80); top <<= 1)
        bits--;
    return bits;
}

/*
 * What a key object is to latchkey: ES256 (EC on P-256) or RS256 (RSA of
 * LK_RSA_MIN_BITS to LK_RSA_MAX_BITS). LK_ERR_KEY_WEAK for another curve or
 * a short modulus, LK_ERR_KEY_TYPE for anything else. *mod_bytes is the RSA
 * signature length.
 */
static lk_err p11__key_alg(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, lk_alg *alg,
                           size_t *mod_bytes)
{
    CK_KEY_TYPE kt = 0;
    CK_BYTE buf[P11_RSA_MOD_MAX];
    size_t len = 0, bits;
    lk_err err = p11__attr_ulong(p11, h, CKA_KEY_TYPE, &kt);

    *alg = LK_ALG_NONE;
    *mod_bytes = 0;
    if (err != LK_OK)
        return err;
    if (kt == CKK_EC) {
        err = p11__attr(p11, h, CKA_EC_PARAMS, buf, P11_EC_ATTR_MAX, &len);
        if (err != LK_OK)
            return err;
        if (len != sizeof p11__p256_oid || memcmp(buf, p11__p256_oid, len) != 0)
            return p11__fail(p11, LK_ERR_KEY_WEAK, "EC key on a curve other than P-256");
        *alg = LK_ALG_ES256;
        return LK_OK;
    }
    if (kt == CKK_RSA) {
        err = p11__attr(p11, h, CKA_MODULUS, buf, sizeof buf, &len);
        if (err != LK_OK)
            return err;
        bits = p11__bits(buf, len);
        if (bits < LK_RSA_MIN_BITS)
            return p11__fail(p11, LK_ERR_KEY_WEAK, "RSA key shorter than 2048 bits");
        if (bits > LK_RSA_MAX_BITS)
            return p11__fail(p11, LK_ERR_KEY_TYPE, "RSA key longer than 4096 bits");
        *alg = LK_ALG_RS256;
        *mod_bytes = (bits + 7) / 8;
        return LK_OK;
    }
    return p11__fail(p11, LK_ERR_KEY_TYPE, "the key is neither EC nor RSA");
}

/* ------------------------------------------------------------------------ */
/* Listing                                                                  */

#define P11_LIST_MAX 100000u   /* objects listed at most */

/* see lk_pkcs11.h */
lk_err lk_pkcs11_list_keys(lk_pkcs11 *p11, const char *filter,
                           void (*cb)(void *user, const lk_pkcs11_key_info *key), void *user)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[3];
    CK_OBJECT_HANDLE *h = NULL, batch[64];
    CK_ULONG nt = 0, n = 0, got;
    p11_uri u;
    lk_err err = LK_OK;
    CK_RV rv;
    size_t i;

    if (p11 == NULL || cb == NULL)
        return LK_ERR_ARG;
    memset(&u, 0, sizeof u);
    if (filter != NULL) {
        err = p11__parse(p11, filter, &u);
        if (err != LK_OK)
            goto exit;
        lk_wipe(u.pin_value, sizeof u.pin_value);
        if (!p11__token_matches(&u, &p11->info, p11->slot, &p11->slot_info, &p11->token_info)) {
            err = p11__fail(p11, LK_ERR_KEY_NOT_FOUND, "the URI names another token");
            goto exit;
        }
    }
    if ((p11->token_info.flags & CKF_LOGIN_REQUIRED) && !p11__logged_in(p11)) {
        err = p11__fail(p11, LK_ERR_KEY_LOCKED,
                        "not logged in: private keys are visible only after C_Login; give "
                        "pin-value or pin-source");
        goto exit;
    }
    t[nt].type = CKA_CLASS;
    t[nt].pValue = &cls;
    t[nt++].ulValueLen = sizeof cls;
    if (u.have & P11_HAVE_OBJECT) {
        t[nt].type = CKA_LABEL;
        t[nt].pValue = u.object;
        t[nt++].ulValueLen = (CK_ULONG)strlen(u.object);
    }
    if (u.have & P11_HAVE_ID) {
        t[nt].type = CKA_ID;
        t[nt].pValue = u.id;
        t[nt++].ulValueLen = (CK_ULONG)u.id_len;
    }
    rv = p11->fl->C_FindObjectsInit(p11->session, t, nt);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_FindObjectsInit", rv, LK_ERR_DEVICE);
        goto exit;
    }
    for (;;) {
        CK_OBJECT_HANDLE *grown;
        got = 0;
        rv = p11->fl->C_FindObjects(p11->session, batch, 64, &got);
        if (rv != CKR_OK || got == 0 || got > 64)
            break;
        if (n + got > P11_LIST_MAX) {
            rv = CKR_OK;
            err = p11__fail(p11, LK_ERR_DEVICE, "C_FindObjects: implausibly many keys");
            break;
        }
        grown = realloc(h, (n + got) * sizeof *h);
        if (grown == NULL) {
            err = p11__fail(p11, LK_ERR_NOMEM, "out of memory");
            break;
        }
        h = grown;
        memcpy(h + n, batch, got * sizeof *h);
        n += got;
    }
    (void)p11->fl->C_FindObjectsFinal(p11->session);
    if (err != LK_OK)
        goto exit;
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_FindObjects", rv, LK_ERR_DEVICE);
        goto exit;
    }
    for (i = 0; i < n; i++) {
        unsigned char label[P11_OBJECT_MAX], id[P11_ID_MAX];
        CK_BYTE mod[P11_RSA_MOD_MAX];
        char why[P11_ERR_MAX];
        size_t label_len = 0, id_len = 0, mod_bytes = 0, mod_len = 0;
        lk_pkcs11_key_info k;
        lk_alg alg = LK_ALG_NONE;
        lk_err e;

        memset(&k, 0, sizeof k);
        if (p11__attr(p11, h[i], CKA_LABEL, label, sizeof label, &label_len) != LK_OK)
            label_len = 0; /* none, or longer than a URI can name */
        if (p11__attr(p11, h[i], CKA_ID, id, sizeof id, &id_len) != LK_OK)
            id_len = 0;
        e = p11__key_alg(p11, h[i], &alg, &mod_bytes);
        k.label = label;
        k.label_len = label_len;
        k.id = id;
        k.id_len = id_len;
        k.alg = e == LK_OK ? alg : LK_ALG_NONE;
        snprintf(why, sizeof why, "%s", e == LK_OK ? "" : p11->last_error[0] ? p11->last_error
                                                          : "not a key latchkey can sign with");
        k.why = why;
        if (e == LK_OK)
            k.bits = alg == LK_ALG_ES256 ? 256u : (unsigned)(mod_bytes * 8);
        else if (p11__attr(p11, h[i], CKA_MODULUS, mod, sizeof mod, &mod_len) == LK_OK)
            k.bits = (unsigned)p11__bits(mod, mod_len);
        cb(user, &k);
    }
    p11->last_error[0] = '\0';
    err = LK_OK;
exit:
    p11__uri_wipe(&u);
    free(h);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Public keys                                                              */

/* LK_OK when point is a valid P-256 point (on the curve, not infinity),
 * checked by OpenSSL. */
static lk_err p11__p256_check(lk_pkcs11 *p11, const CK_BYTE point[LK_P256_POINT_BYTES])
{
    unsigned char copy[LK_P256_POINT_BYTES];
    char group[] = "prime256v1";
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    lk_err err = LK_ERR_DEVICE;

    memcpy(copy, point, sizeof copy);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, copy, sizeof copy);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        err = p11__fail(p11, LK_ERR_CRYPTO, "OpenSSL: EC key import unavailable");
        goto exit;
    }
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto bad;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1)
        goto bad;
    err = LK_OK;
    goto exit;
bad:
    err = p11__fail(p11, LK_ERR_DEVICE, "CKA_EC_POINT is not a valid P-256 point");
exit:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return err;
}

/* The SPKI of an EC P-256 key object (public key, or a private key that
 * exposes CKA_EC_POINT). */
static lk_err p11__export_ec(lk_pkcs11 *p11, CK_OBJECT_HANDLE h,
                             uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    CK_BYTE buf[P11_EC_ATTR_MAX];
    const CK_BYTE *point;
    size_t len = 0;
    lk_err err = p11__attr(p11, h, CKA_EC_POINT, buf, sizeof buf, &len);

    if (err != LK_OK)
        return err;
    /* PKCS#11 says DER OCTET STRING (04 41 04 X Y); some tokens give the
     * bare point. The two lengths differ, so there is no ambiguity. */
    if (len == LK_P256_POINT_BYTES + 2 && buf[0] == 0x04 && buf[1] == LK_P256_POINT_BYTES)
        point = buf + 2;
    else if (len == LK_P256_POINT_BYTES)
        point = buf;
    else
        return p11__fail(p11, LK_ERR_DEVICE, "CKA_EC_POINT is not an uncompressed P-256 point");
    if (point[0] != 0x04)
        return p11__fail(p11, LK_ERR_DEVICE, "CKA_EC_POINT is not an uncompressed P-256 point");
    err = p11__p256_check(p11, point);
    if (err != LK_OK)
        return err;
    err = lk_p256_spki_from_point(point, pub, pub_size, pub_len);
    if (err != LK_OK)
        p11__fail(p11, err, "public key buffer too small");
    return err;
}

/* The SPKI of an RSA key object (public or private: both carry CKA_MODULUS
 * and CKA_PUBLIC_EXPONENT). */
static lk_err p11__export_rsa(lk_pkcs11 *p11, CK_OBJECT_HANDLE h,
                              uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    CK_BYTE mod[P11_RSA_MOD_MAX], exp[P11_RSA_EXP_MAX];
    size_t mod_len = 0, exp_len = 0;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *p;
    int der_len;
    lk_err err;

    err = p11__attr(p11, h, CKA_MODULUS, mod, sizeof mod, &mod_len);
    if (err == LK_OK)
        err = p11__attr(p11, h, CKA_PUBLIC_EXPONENT, exp, sizeof exp, &exp_len);
    if (err != LK_OK)
        goto exit;
    err = LK_ERR_CRYPTO;
    n = BN_bin2bn(mod, (int)mod_len, NULL);
    e = BN_bin2bn(exp, (int)exp_len, NULL);
    bld = OSSL_PARAM_BLD_new();
    if (n == NULL || e == NULL || bld == NULL ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1) {
        p11__fail(p11, err, "OpenSSL: RSA key import failed");
        goto exit;
    }
    err = LK_ERR_DEVICE;
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        p11__fail(p11, err, "CKA_MODULUS/CKA_PUBLIC_EXPONENT do not form an RSA key");
        goto exit;
    }
    /* SP 800-56B public-key checks: odd modulus without small factors,
     * odd exponent above 2^16. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1) {
        p11__fail(p11, err, "the token's RSA public key fails OpenSSL's checks");
        goto exit;
    }
    der_len = i2d_PUBKEY(pkey, NULL);
    if (der_len <= 0) {
        err = p11__fail(p11, LK_ERR_CRYPTO, "OpenSSL: i2d_PUBKEY failed");
        goto exit;
    }
    if ((size_t)der_len > pub_size) {
        err = p11__fail(p11, LK_ERR_BUFFER, "public key buffer too small");
        goto exit;
    }
    p = pub;
    if (i2d_PUBKEY(pkey, &p) != der_len) {
        err = p11__fail(p11, LK_ERR_CRYPTO, "OpenSSL: i2d_PUBKEY failed");
        goto exit;
    }
    *pub_len = (size_t)der_len;
    err = LK_OK;
exit:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(e);
    BN_free(n);
    return err;
}

/* The algorithm and SPKI of key object h. */
static lk_err p11__export(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, lk_alg *alg,
                          uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    size_t mod_bytes = 0;
    lk_err err = p11__key_alg(p11, h, alg, &mod_bytes);

    if (err != LK_OK)
        return err;
    if (*alg == LK_ALG_ES256)
        return p11__export_ec(p11, h, pub, pub_size, pub_len);
    return p11__export_rsa(p11, h, pub, pub_size, pub_len);
}

/* ------------------------------------------------------------------------ */
/* lk_se operations                                                         */

/* see lk_se.h: the public key object named by key, or the private key's
 * public attributes when the token keeps no public key object. */
static lk_err p11__public_key(void *ctx, const char *key, lk_alg *alg,
                              uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    lk_pkcs11 *p11 = ctx;
    p11_uri u;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG count = 0;
    lk_err err = LK_ERR_ARG;

    memset(&u, 0, sizeof u);
    if (pub_len != NULL)
        *pub_len = 0;
    if (alg != NULL)
        *alg = LK_ALG_NONE;
    if (p11 == NULL || key == NULL || alg == NULL || pub == NULL || pub_len == NULL)
        goto exit;
    err = p11__key_uri(p11, key, &u);
    if (err != LK_OK)
        goto exit;
    err = p11__find_uri(p11, CKO_PUBLIC_KEY, &u, &h, &count);
    if (err != LK_OK)
        goto exit;
    if (count > 1) {
        err = p11__fail(p11, LK_ERR_URI,
                        "several public keys match the key URI: add id= or object=");
        goto exit;
    }
    if (count == 0) {
        err = p11__private_key(p11, &u, &h);
        if (err != LK_OK)
            goto exit;
    }
    err = p11__export(p11, h, alg, pub, pub_size, pub_len);
    /* An EC private key usually has no CKA_EC_POINT. */
    if (err == LK_ERR_DEVICE && count == 0 && *alg == LK_ALG_ES256)
        err = p11__fail(p11, LK_ERR_KEY_NOT_FOUND,
                        "no public key object, and the private key does not expose its point");
exit:
    p11__uri_wipe(&u);
    if (err != LK_OK) {
        if (pub != NULL && pub_size > 0)
            lk_wipe(pub, pub_size);
        if (pub_len != NULL)
            *pub_len = 0;
        if (alg != NULL)
            *alg = LK_ALG_NONE;
    }
    return err;
}

/* see lk_se.h */
static lk_err p11__sign_digest(void *ctx, const char *key, lk_alg alg,
                               const uint8_t digest[LK_SHA256_BYTES],
                               uint8_t *sig, size_t sig_size, size_t *sig_len)
{
    lk_pkcs11 *p11 = ctx;
    p11_uri u;
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
    CK_BYTE data[sizeof p11__sha256_digest_info + LK_SHA256_BYTES];
    CK_BYTE out[LK_SIG_MAX_BYTES + 16];
    CK_ULONG data_len, out_len = sizeof out;
    size_t mod_bytes = 0, want;
    lk_alg key_alg = LK_ALG_NONE;
    lk_err err = LK_ERR_ARG;
    CK_RV rv;

    memset(&u, 0, sizeof u);
    if (sig_len != NULL)
        *sig_len = 0;
    if (p11 == NULL || key == NULL || digest == NULL || sig == NULL || sig_len == NULL ||
        (alg != LK_ALG_ES256 && alg != LK_ALG_RS256))
        goto exit;
    err = p11__key_uri(p11, key, &u);
    if (err == LK_OK)
        err = p11__private_key(p11, &u, &h);
    if (err == LK_OK)
        err = p11__key_alg(p11, h, &key_alg, &mod_bytes);
    if (err != LK_OK)
        goto exit;
    if (key_alg != alg) {
        snprintf(p11->last_error, sizeof p11->last_error,
                 "the key is %s, not %s", lk_alg_name(key_alg), lk_alg_name(alg));
        err = LK_ERR_KEY_TYPE;
        goto exit;
    }
    if (alg == LK_ALG_ES256) {
        /* CKM_ECDSA signs the digest as given: the hash is ours. */
        memcpy(data, digest, LK_SHA256_BYTES);
        data_len = LK_SHA256_BYTES;
        want = LK_ES256_SIG_BYTES;
    } else {
        mech.mechanism = CKM_RSA_PKCS;
        memcpy(data, p11__sha256_digest_info, sizeof p11__sha256_digest_info);
        memcpy(data + sizeof p11__sha256_digest_info, digest, LK_SHA256_BYTES);
        data_len = sizeof data;
        want = mod_bytes;
    }
    if (sig_size < want) {
        err = p11__fail(p11, LK_ERR_BUFFER, "signature buffer too small");
        goto exit;
    }
    rv = p11->fl->C_SignInit(p11->session, &mech, h);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_SignInit", rv, LK_ERR_SIGN);
        goto exit;
    }
    /* out holds the largest signature (RSA-4096), so this single call
     * cannot hit CKR_BUFFER_TOO_SMALL, which would leave the operation
     * active. A key needing CKA_ALWAYS_AUTHENTICATE fails here with
     * CKR_USER_NOT_LOGGED_IN (LK_ERR_KEY_LOCKED): the PIN is not kept. */
    rv = p11->fl->C_Sign(p11->session, data, data_len, out, &out_len);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_Sign", rv, LK_ERR_SIGN);
        goto exit;
    }
    err = LK_ERR_SIGN;
    if (alg == LK_ALG_ES256) {
        if (out_len == LK_ES256_SIG_BYTES)
            memcpy(sig, out, LK_ES256_SIG_BYTES);
        /* Some tokens return DER against the standard: canonical DER only. */
        else if (out_len > sizeof out || lk_ecdsa_der_to_raw(out, out_len, sig) != LK_OK) {
            p11__fail(p11, err, "C_Sign: ECDSA signature neither r||s nor DER");
            goto exit;
        }
    } else {
        if (out_len != mod_bytes) {
            p11__fail(p11, err, "C_Sign: RSA signature not of the modulus length");
            goto exit;
        }
        memcpy(sig, out, out_len);
    }
    *sig_len = want;
    err = LK_OK;
exit:
    lk_wipe(out, sizeof out);
    lk_wipe(data, sizeof data);
    p11__uri_wipe(&u);
    if (err != LK_OK) {
        if (sig != NULL && sig_size > 0)
            lk_wipe(sig, sig_size);
        if (sig_len != NULL)
            *sig_len = 0;
    }
    return err;
}

/* LK_ERR_KEY_EXISTS when a private or public key already carries the
 * label or the id u asks for. */
static lk_err p11__check_free(lk_pkcs11 *p11, const p11_uri *u)
{
    static const CK_OBJECT_CLASS classes[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
    CK_OBJECT_HANDLE h;
    CK_ULONG count;
    unsigned i;
    lk_err err;

    for (i = 0; i < 2; i++) {
        if (u->have & P11_HAVE_OBJECT) {
            err = p11__find(p11, classes[i], u->object, NULL, 0, &h, &count);
            if (err != LK_OK)
                return err;
            if (count > 0)
                return p11__fail(p11, LK_ERR_KEY_EXISTS, "a key with this object= label exists");
        }
        if (u->have & P11_HAVE_ID) {
            err = p11__find(p11, classes[i], NULL, u->id, u->id_len, &h, &count);
            if (err != LK_OK)
                return err;
            if (count > 0)
                return p11__fail(p11, LK_ERR_KEY_EXISTS, "a key with this id= exists");
        }
    }
    return LK_OK;
}

/* A CK_BBOOL attribute: 1 (true), 0 (false), or -1 when the token does not
 * say (attribute unknown, or reported as sensitive), so that one missing
 * answer cannot hide another. */
static int p11__attr_bool(lk_pkcs11 *p11, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = { type, &v, sizeof v };
    CK_RV rv = p11->fl->C_GetAttributeValue(p11->session, h, &a, 1);

    if (rv != CKR_OK || a.ulValueLen != sizeof v)
        return -1;
    return v != CK_FALSE;
}

/*
 * Fail closed on a token that ignored the template: a private key that is
 * readable or extractable is not what latchkey promises. An attribute the
 * token does not report is accepted (cryptoauthlib, for one, answers
 * CKA_EXTRACTABLE with CKR_ATTRIBUTE_SENSITIVE); one it reports wrongly is
 * not.
 */
static lk_err p11__check_private(lk_pkcs11 *p11, CK_OBJECT_HANDLE h)
{
    if (p11__attr_bool(p11, h, CKA_SENSITIVE) == 0 ||
        p11__attr_bool(p11, h, CKA_EXTRACTABLE) == 1)
        return p11__fail(p11, LK_ERR_DEVICE,
                         "the token made the private key readable or extractable");
    return LK_OK;
}

/* see lk_se.h */
static lk_err p11__generate(void *ctx, const char *key, lk_alg alg, unsigned bits,
                            uint8_t *pub, size_t pub_size, size_t *pub_len)
{
    lk_pkcs11 *p11 = ctx;
    p11_uri u;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG modulus_bits = 0;
    CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    /* At most 7 entries each: 3 (5 private) fixed, label, id, and 1 or 2
     * algorithm parameters. */
    CK_ATTRIBUTE pubt[8], privt[8];
    CK_ULONG npub = 0, npriv = 0;
    CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
    lk_alg got = LK_ALG_NONE;
    size_t need;
    int generated = 0;
    lk_err err = LK_ERR_ARG;
    CK_RV rv;

    memset(&u, 0, sizeof u);
    if (pub_len != NULL)
        *pub_len = 0;
    if (p11 == NULL || key == NULL || pub == NULL || pub_len == NULL)
        goto exit;
    if (alg == LK_ALG_ES256) {
        need = LK_P256_SPKI_BYTES;
    } else if (alg == LK_ALG_RS256) {
        if (bits == 0)
            bits = LK_RSA_DEFAULT_BITS;
        if (bits < LK_RSA_MIN_BITS) {
            err = p11__fail(p11, LK_ERR_KEY_WEAK, "RSA keys must have at least 2048 bits");
            goto exit;
        }
        if (bits > LK_RSA_MAX_BITS) {
            err = p11__fail(p11, LK_ERR_ARG, "RSA keys may have at most 4096 bits");
            goto exit;
        }
        modulus_bits = bits;
        /* SEQUENCE, AlgorithmIdentifier, BIT STRING, RSAPublicKey with a
         * 3-byte exponent: 38 bytes around the modulus. */
        need = 38 + (bits + 7) / 8;
    } else {
        goto exit;
    }
    /* Check before generating: a key made but not reported is useless. */
    if (pub_size < need) {
        err = p11__fail(p11, LK_ERR_BUFFER, "public key buffer too small");
        goto exit;
    }
    err = p11__key_uri(p11, key, &u);
    if (err == LK_OK)
        err = p11__need_login(p11);
    if (err == LK_OK)
        err = p11__check_free(p11, &u);
    if (err != LK_OK)
        goto exit;

#define P11__SET(t, n, typ, ptr, len) \
    do { (t)[n].type = (typ); (t)[n].pValue = (void *)(ptr); (t)[n].ulValueLen = (CK_ULONG)(len); (n)++; } while (0)
    P11__SET(pubt, npub, CKA_TOKEN, &yes, sizeof yes);
    P11__SET(pubt, npub, CKA_PRIVATE, &no, sizeof no);
    P11__SET(pubt, npub, CKA_VERIFY, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_TOKEN, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_PRIVATE, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_SENSITIVE, &yes, sizeof yes);
    P11__SET(privt, npriv, CKA_EXTRACTABLE, &no, sizeof no);
    P11__SET(privt, npriv, CKA_SIGN, &yes, sizeof yes);
    if (u.have & P11_HAVE_OBJECT) {
        P11__SET(pubt, npub, CKA_LABEL, u.object, strlen(u.object));
        P11__SET(privt, npriv, CKA_LABEL, u.object, strlen(u.object));
    }
    /* Without id= the key gets no CKA_ID: latchkey finds it by label, and
     * setting one afterwards (e.g. from a hash of the public key) needs
     * C_SetAttributeValue, which some tokens lack, and would make
     * generation non-atomic. */
    if (u.have & P11_HAVE_ID) {
        P11__SET(pubt, npub, CKA_ID, u.id, u.id_len);
        P11__SET(privt, npriv, CKA_ID, u.id, u.id_len);
    }
    if (alg == LK_ALG_ES256) {
        P11__SET(pubt, npub, CKA_EC_PARAMS, p11__p256_oid, sizeof p11__p256_oid);
    } else {
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        P11__SET(pubt, npub, CKA_MODULUS_BITS, &modulus_bits, sizeof modulus_bits);
        P11__SET(pubt, npub, CKA_PUBLIC_EXPONENT, p11__rsa_f4, sizeof p11__rsa_f4);
    }
#undef P11__SET

    rv = p11->fl->C_GenerateKeyPair(p11->session, &mech, pubt, npub, privt, npriv,
                                    &hpub, &hpriv);
    if (rv != CKR_OK) {
        err = p11__rv(p11, "C_GenerateKeyPair", rv, LK_ERR_DEVICE);
        goto exit;
    }
    generated = 1;
    err = p11__check_private(p11, hpriv);
    if (err == LK_OK)
        err = p11__export(p11, hpub, &got, pub, pub_size, pub_len);
    if (err == LK_OK && got != alg)
        err = p11__fail(p11, LK_ERR_DEVICE, "the token generated a key of another type");
exit:
    /* Generation is all or nothing: a key pair we cannot vouch for or
     * report is removed again. */
    if (err != LK_OK && generated) {
        (void)p11->fl->C_DestroyObject(p11->session, hpriv);
        (void)p11->fl->C_DestroyObject(p11->session, hpub);
    }
    p11__uri_wipe(&u);
    if (err != LK_OK) {
        if (pub != NULL && pub_size > 0)
            lk_wipe(pub, pub_size);
        if (pub_len != NULL)
            *pub_len = 0;
    }
    return err;
}

/* see lk_se.h */
static lk_err p11__random(void *ctx, uint8_t *out, size_t len)
{
    lk_pkcs11 *p11 = ctx;
    size_t done = 0;
    CK_RV rv;

    if (p11 == NULL || (out == NULL && len > 0))
        return LK_ERR_ARG;
    /* Small requests: some tokens limit how much one call returns. */
    while (done < len) {
        size_t n = len - done < 256 ? len - done : 256;
        rv = p11->fl->C_GenerateRandom(p11->session, out + done, (CK_ULONG)n);
        if (rv != CKR_OK) {
            lk_wipe(out, len);
            return p11__rv(p11, "C_GenerateRandom", rv, LK_ERR_RNG);
        }
        done += n;
    }
    return LK_OK;
}

/* No .sha256: the core's; a token round trip buys nothing. */
static const lk_se_ops p11__ops = {
    .name = "pkcs11",
    .generate = p11__generate,
    .public_key = p11__public_key,
    .sign_digest = p11__sign_digest,
    .random = p11__random,
};

/* see lk_pkcs11.h */
lk_se lk_pkcs11_se(lk_pkcs11 *p11)
{
    lk_se se;
    se.ops = p11 != NULL ? &p11__ops : NULL;
    se.ctx = p11;
    return se;
}
