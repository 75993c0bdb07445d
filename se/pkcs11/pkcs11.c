/*
 * pkcs11.c — the PKCS#11 secure-element backend: see lk_pkcs11.h for the
 * contract, p11_internal.h for the URI language and p11_backend.h for how the
 * backend's files divide the work. This one: errors, matching URIs with the
 * token, loading the module, selecting the token, the session.
 *
 * One handle = one loaded module, one token, one session. Key references are
 * pkcs11: URIs whose object/id select a key on that token.
 */
#include "p11_backend.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey/lk_util.h"

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
P11_HIDDEN lk_err p11__rv(lk_pkcs11 *p11, const char *fn, CK_RV rv, lk_err dflt)
{
    const char *name = p11__rv_name(rv);
    if (name != NULL)
        snprintf(p11->last_error, sizeof p11->last_error, "%s: %s", fn, name);
    else
        snprintf(p11->last_error, sizeof p11->last_error, "%s: CKR 0x%08lx", fn,
                 (unsigned long)rv);
    return p11__map(rv, dflt);
}

P11_HIDDEN lk_err p11__fail(lk_pkcs11 *p11, lk_err err, const char *msg)
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
P11_HIDDEN int p11__token_matches(const p11_uri *u, const CK_INFO *info, CK_SLOT_ID slot,
                                  const CK_SLOT_INFO *si, const CK_TOKEN_INFO *ti)
{
    /* The text attributes, each with the field it is compared with. */
    const struct {
        unsigned have;
        const char *want;
        const CK_UTF8CHAR *field;
        size_t size;
    } text[] = {
        {P11_HAVE_LIB_MANUF, u->library_manufacturer, info->manufacturerID, sizeof info->manufacturerID},
        {P11_HAVE_LIB_DESC, u->library_description, info->libraryDescription,
         sizeof info->libraryDescription},
        {P11_HAVE_SLOT_MANUF, u->slot_manufacturer, si->manufacturerID, sizeof si->manufacturerID},
        {P11_HAVE_SLOT_DESC, u->slot_description, si->slotDescription, sizeof si->slotDescription},
        {P11_HAVE_TOKEN, u->token, ti->label, sizeof ti->label},
        {P11_HAVE_MANUFACTURER, u->manufacturer, ti->manufacturerID, sizeof ti->manufacturerID},
        {P11_HAVE_SERIAL, u->serial, ti->serialNumber, sizeof ti->serialNumber},
        {P11_HAVE_MODEL, u->model, ti->model, sizeof ti->model},
    };
    unsigned h = u->have;
    size_t i;

    if ((h & P11_HAVE_LIB_VERSION) &&
        (info->libraryVersion.major != u->library_version[0] ||
         info->libraryVersion.minor != u->library_version[1]))
        return 0;
    if ((h & P11_HAVE_SLOT_ID) && slot != u->slot_id)
        return 0;
    for (i = 0; i < sizeof text / sizeof text[0]; i++)
        if ((h & text[i].have) && !p11__field_eq(text[i].want, text[i].field, text[i].size))
            return 0;
    return 1;
}

/* Parse a URI, recording the parser's reason as the last error. */
P11_HIDDEN lk_err p11__parse(lk_pkcs11 *p11, const char *uri, p11_uri *u)
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
P11_HIDDEN int p11__logged_in(lk_pkcs11 *p11)
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
P11_HIDDEN lk_err p11__need_login(lk_pkcs11 *p11)
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

lk_err lk_pkcs11_token_serial(const lk_pkcs11 *p11, char *out, size_t out_size)
{
    size_t n = sizeof p11->token_info.serialNumber;
    if (out != NULL && out_size > 0)
        out[0] = '\0';
    if (p11 == NULL || out == NULL)
        return LK_ERR_ARG;
    if (out_size < sizeof p11->token_info.serialNumber + 1)
        return LK_ERR_BUFFER;
    /* PKCS#11 pads the field with blanks and does not terminate it. */
    while (n > 0 && (p11->token_info.serialNumber[n - 1] == ' ' || p11->token_info.serialNumber[n - 1] == '\0'))
        n--;
    memcpy(out, p11->token_info.serialNumber, n);
    out[n] = '\0';
    return LK_OK;
}
