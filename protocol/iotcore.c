/* IoT Core's naming rules: see lk_iotcore.h. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "latchkey/lk_iotcore.h"

static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_alpha(char c) { return is_lower(c) || (c >= 'A' && c <= 'Z'); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The id alphabet after the first character. */
static int id_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '+' ||
           c == '~' || c == '%';
}

static int starts_goog(const char *s, size_t len)
{
    static const char g[] = "goog";
    size_t i;
    if (len < 4)
        return 0;
    for (i = 0; i < 4; i++)
        if ((s[i] | 0x20) != g[i])
            return 0;
    return 1;
}

const char *lk_id_why(const char *what, const char *s, size_t len, char *buf, size_t size)
{
    size_t i;
    if (buf == NULL || size == 0)
        return NULL;
    if (s == NULL || len < LK_ID_MIN || len > LK_ID_MAX) {
        snprintf(buf, size, "a %s must be %u to %u characters long", what, LK_ID_MIN, LK_ID_MAX);
        return buf;
    }
    if (!is_alpha(s[0])) {
        snprintf(buf, size, "a %s must start with a letter", what);
        return buf;
    }
    for (i = 1; i < len; i++) {
        if (!id_char(s[i])) {
            snprintf(buf, size, "a %s may contain only letters, digits and - . _ + ~ %% (character %zu is not one)",
                     what, i + 1);
            return buf;
        }
    }
    if (starts_goog(s, len)) {
        snprintf(buf, size, "a %s must not start with \"goog\"", what);
        return buf;
    }
    return NULL;
}

int lk_id_valid(const char *s, size_t len)
{
    char buf[8];
    return lk_id_why("id", s, len, buf, sizeof buf) == NULL;
}

/* [a-z][-a-z0-9]*, min..max characters: projects and locations. */
static int lower_name(const char *s, size_t len, size_t min, size_t max)
{
    size_t i;
    if (s == NULL || len < min || len > max || !is_lower(s[0]))
        return 0;
    for (i = 1; i < len; i++)
        if (!is_lower(s[i]) && !is_digit(s[i]) && s[i] != '-')
            return 0;
    return 1;
}

int lk_project_valid(const char *s, size_t len)
{
    return lower_name(s, len, LK_PROJECT_MIN, LK_PROJECT_MAX) && s[len - 1] != '-';
}

int lk_location_valid(const char *s, size_t len)
{
    return lower_name(s, len, 1, LK_LOCATION_MAX);
}

int lk_metadata_key_valid(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len < 1 || len > LK_METADATA_KEY_MAX || !is_alpha(s[0]))
        return 0;
    for (i = 1; i < len; i++)
        if (!id_char(s[i]))
            return 0;
    return 1;
}

int lk_pubsub_name_valid(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len < LK_PUBSUB_NAME_MIN || len > LK_PUBSUB_NAME_MAX || !is_alpha(s[0]))
        return 0;
    if (len >= 4 && s[0] == 'g' && s[1] == 'o' && s[2] == 'o' && s[3] == 'g')
        return 0;
    for (i = 1; i < len; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.' &&
            s[i] != '~' && s[i] != '%')
            return 0;
    return 1;
}

int lk_subfolder_valid(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len < 1 || len > LK_SUBFOLDER_MAX || s[0] == '/' || s[len - 1] == '/')
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || s[i] == '+' || s[i] == '#')
            return 0;
        if (s[i] == '/' && i + 1 < len && s[i + 1] == '/')
            return 0;
    }
    return 1;
}

const char *lk_time_rfc3339(int64_t t, char *buf, size_t size)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", (long long)t);
    return buf;
}

/* # Resource paths */

/* Appends parts[0..n) to buf as lit0 part0 lit1 part1 ...; each part 1..max
 * bytes of printable ASCII without '/'. */
struct path_part {
    const char *lit;
    const char *part;
    size_t max;
};

static lk_err join(const struct path_part *p, size_t n, char *buf, size_t size, size_t *len)
{
    size_t i, at = 0;
    lk_err err = LK_OK;

    if (len != NULL)
        *len = 0;
    if (buf == NULL || size == 0)
        return LK_ERR_ARG;
    for (i = 0; i < n && err == LK_OK; i++) {
        size_t ll = strlen(p[i].lit), pl, k;
        if (p[i].part == NULL || (pl = strnlen(p[i].part, p[i].max + 1)) == 0 || pl > p[i].max) {
            err = LK_ERR_ARG;
            break;
        }
        for (k = 0; k < pl; k++)
            if (p[i].part[k] <= ' ' || p[i].part[k] > '~' || p[i].part[k] == '/')
                err = LK_ERR_ARG;
        if (err == LK_OK && size - at <= ll + pl)
            err = LK_ERR_BUFFER;
        if (err != LK_OK)
            break;
        memcpy(buf + at, p[i].lit, ll);
        memcpy(buf + at + ll, p[i].part, pl);
        at += ll + pl;
    }
    if (err != LK_OK) {
        memset(buf, 0, size);
        return err;
    }
    buf[at] = '\0';
    if (len != NULL)
        *len = at;
    return LK_OK;
}

lk_err lk_registry_path(const char *project, const char *location, const char *registry,
                        char *buf, size_t size, size_t *len)
{
    const struct path_part p[] = {
        {"projects/", project, LK_PROJECT_MAX},
        {"/locations/", location, LK_LOCATION_MAX},
        {"/registries/", registry, LK_ID_MAX},
    };
    return join(p, 3, buf, size, len);
}

lk_err lk_device_path(const char *project, const char *location, const char *registry,
                      const char *device, char *buf, size_t size, size_t *len)
{
    const struct path_part p[] = {
        {"projects/", project, LK_PROJECT_MAX},
        {"/locations/", location, LK_LOCATION_MAX},
        {"/registries/", registry, LK_ID_MAX},
        {"/devices/", device, LK_ID_MAX},
    };
    return join(p, 4, buf, size, len);
}

/* Takes "lit/" then the part up to the next '/' (last: to the end) from
 * s[*at..len) into out (out_size bytes). */
static int take(const char *s, size_t len, size_t *at, const char *lit, int last, char *out,
                size_t out_size)
{
    size_t ll = strlen(lit), start, end;

    if (len - *at < ll + 1 || memcmp(s + *at, lit, ll) != 0 || s[*at + ll] != '/')
        return 0;
    start = end = *at + ll + 1;
    while (end < len && s[end] != '/')
        end++;
    if (last ? end != len : end == len)
        return 0;
    if (end - start >= out_size)
        return 0;
    memcpy(out, s + start, end - start);
    out[end - start] = '\0';
    *at = last ? end : end + 1;
    return 1;
}

lk_err lk_device_path_parse(const char *s, size_t len, lk_device_name *out)
{
    size_t at = 0;

    if (out == NULL)
        return LK_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (s == NULL || len > LK_DEVICE_PATH_MAX || memchr(s, '\0', len) != NULL ||
        !take(s, len, &at, "projects", 0, out->project, sizeof out->project) ||
        !take(s, len, &at, "locations", 0, out->location, sizeof out->location) ||
        !take(s, len, &at, "registries", 0, out->registry, sizeof out->registry) ||
        !take(s, len, &at, "devices", 1, out->device, sizeof out->device) ||
        !lk_project_valid(out->project, strlen(out->project)) ||
        !lk_location_valid(out->location, strlen(out->location)) ||
        !lk_id_valid(out->registry, strlen(out->registry)) ||
        !lk_id_valid(out->device, strlen(out->device))) {
        memset(out, 0, sizeof *out);
        return LK_ERR_ARG;
    }
    return LK_OK;
}

/* # MQTT topics */

#define DEVICE_ROOT "/devices/"
#define BACKEND_ROOT "latchkey/"
#define DEVICE_ROOT_LEN (sizeof DEVICE_ROOT - 1)
#define BACKEND_ROOT_LEN (sizeof BACKEND_ROOT - 1)

/* The last level of a topic of this kind ("events", ...), NULL if none. */
static const char *topic_leaf(lk_topic kind)
{
    switch (kind) {
    case LK_TOPIC_EVENTS: return "events";
    case LK_TOPIC_STATE: return "state";
    case LK_TOPIC_CONFIG: return "config";
    case LK_TOPIC_COMMANDS: return "commands";
    case LK_TOPIC_COMMANDS_ALL: return "commands/#";
    case LK_TOPIC_ONLINE: return "online";
    case LK_TOPIC_OFFLINE: return "offline";
    case LK_TOPIC_ATTACH: return "attach";
    case LK_TOPIC_DETACH: return "detach";
    case LK_TOPIC_ERRORS: return "errors";
    case LK_TOPIC_REGISTERED: return "registered";
    default: return NULL;
    }
}

/* buf = prefix leaf [/subfolder]; prefix has been checked by the caller. */
static lk_err topic_write(const char *prefix, lk_topic kind, const char *subfolder, char *buf,
                          size_t size, size_t *len)
{
    const char *leaf = topic_leaf(kind);
    size_t sl = 0;
    int n;

    if (subfolder != NULL && subfolder[0] != '\0') {
        sl = strnlen(subfolder, LK_SUBFOLDER_MAX + 1);
        if ((kind != LK_TOPIC_EVENTS && kind != LK_TOPIC_COMMANDS) ||
            !lk_subfolder_valid(subfolder, sl))
            leaf = NULL;
    }
    if (leaf == NULL) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    n = snprintf(buf, size, "%s%s%s%.*s", prefix, leaf, sl ? "/" : "", (int)sl,
                 sl ? subfolder : "");
    if (n < 0 || (size_t)n >= size) {
        memset(buf, 0, size);
        return LK_ERR_BUFFER;
    }
    if (len != NULL)
        *len = (size_t)n;
    return LK_OK;
}

lk_err lk_device_topic(const char *device, lk_topic kind, const char *subfolder, char *buf,
                       size_t size, size_t *len)
{
    char prefix[sizeof DEVICE_ROOT + LK_ID_MAX + 1];

    if (len != NULL)
        *len = 0;
    if (buf == NULL || size == 0)
        return LK_ERR_ARG;
    if (device == NULL || !lk_id_valid(device, strnlen(device, LK_ID_MAX + 1)) ||
        kind == LK_TOPIC_ONLINE || kind == LK_TOPIC_OFFLINE || kind == LK_TOPIC_REGISTERED) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    snprintf(prefix, sizeof prefix, DEVICE_ROOT "%s/", device);
    return topic_write(prefix, kind, subfolder, buf, size, len);
}

lk_topic lk_device_topic_parse(const char *device, const char *topic, size_t len,
                               const char **subfolder)
{
    size_t dl, rl;
    const char *rest;
    lk_topic kind = LK_TOPIC_OTHER;

    if (subfolder != NULL)
        *subfolder = NULL;
    if (device == NULL || topic == NULL)
        return LK_TOPIC_NONE;
    dl = strnlen(device, LK_ID_MAX + 1);
    if (dl == 0 || dl > LK_ID_MAX || len < DEVICE_ROOT_LEN + dl + 1 ||
        memcmp(topic, DEVICE_ROOT, DEVICE_ROOT_LEN) != 0 ||
        memcmp(topic + DEVICE_ROOT_LEN, device, dl) != 0 || topic[DEVICE_ROOT_LEN + dl] != '/')
        return LK_TOPIC_NONE;
    rest = topic + DEVICE_ROOT_LEN + dl + 1;
    rl = len - (DEVICE_ROOT_LEN + dl + 1);
#define IS(lit) (rl == sizeof lit - 1 && memcmp(rest, lit, sizeof lit - 1) == 0)
#define UNDER(lit) (rl > sizeof lit - 1 && memcmp(rest, lit, sizeof lit - 1) == 0)
    if (IS("events"))
        kind = LK_TOPIC_EVENTS;
    else if (IS("state"))
        kind = LK_TOPIC_STATE;
    else if (IS("config"))
        kind = LK_TOPIC_CONFIG;
    else if (IS("commands"))
        kind = LK_TOPIC_COMMANDS;
    else if (IS("commands/#"))
        kind = LK_TOPIC_COMMANDS_ALL;
    else if (IS("attach"))
        kind = LK_TOPIC_ATTACH;
    else if (IS("detach"))
        kind = LK_TOPIC_DETACH;
    else if (IS("errors"))
        kind = LK_TOPIC_ERRORS;
    else if (UNDER("events/") && lk_subfolder_valid(rest + 7, rl - 7)) {
        kind = LK_TOPIC_EVENTS;
        if (subfolder != NULL)
            *subfolder = rest + 7;
    } else if (UNDER("commands/") && lk_subfolder_valid(rest + 9, rl - 9)) {
        kind = LK_TOPIC_COMMANDS;
        if (subfolder != NULL)
            *subfolder = rest + 9;
    }
#undef IS
#undef UNDER
    return kind;
}

lk_topic lk_device_topic_split(const char *topic, size_t len, char device[LK_ID_MAX + 1],
                               const char **subfolder)
{
    const char *end;
    size_t dl;

    if (subfolder != NULL)
        *subfolder = NULL;
    if (device == NULL)
        return LK_TOPIC_NONE;
    device[0] = '\0';
    if (topic == NULL || len <= DEVICE_ROOT_LEN || memcmp(topic, DEVICE_ROOT, DEVICE_ROOT_LEN) != 0)
        return LK_TOPIC_NONE;
    end = memchr(topic + DEVICE_ROOT_LEN, '/', len - DEVICE_ROOT_LEN);
    if (end == NULL)
        return LK_TOPIC_NONE;
    dl = (size_t)(end - (topic + DEVICE_ROOT_LEN));
    if (!lk_id_valid(topic + DEVICE_ROOT_LEN, dl))
        return LK_TOPIC_NONE;
    memcpy(device, topic + DEVICE_ROOT_LEN, dl);
    device[dl] = '\0';
    return lk_device_topic_parse(device, topic, len, subfolder);
}

lk_err lk_backend_topic(const lk_device_name *d, lk_topic kind, const char *subfolder, char *buf,
                        size_t size, size_t *len)
{
    char prefix[LK_BACKEND_TOPIC_MAX + 1];
    size_t pl;

    if (len != NULL)
        *len = 0;
    if (buf == NULL || size == 0)
        return LK_ERR_ARG;
    if (d == NULL || (kind != LK_TOPIC_EVENTS && kind != LK_TOPIC_STATE &&
                      kind != LK_TOPIC_ONLINE && kind != LK_TOPIC_OFFLINE &&
                      kind != LK_TOPIC_REGISTERED)) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    {
        const struct path_part p[] = {
            {BACKEND_ROOT, d->project, LK_PROJECT_MAX},
            {"/", d->location, LK_LOCATION_MAX},
            {"/", d->registry, LK_ID_MAX},
            {"/", d->device, LK_ID_MAX},
        };
        lk_err err = join(p, 4, prefix, sizeof prefix - 1, &pl);
        if (err != LK_OK) {
            memset(buf, 0, size);
            return err;
        }
    }
    prefix[pl] = '/';
    prefix[pl + 1] = '\0';
    return topic_write(prefix, kind, subfolder, buf, size, len);
}

lk_err lk_routed_topic(const lk_device_name *d, const char *topic_id, lk_topic kind, const char *subfolder,
                       char *buf, size_t size, size_t *len)
{
    char prefix[LK_ROUTED_TOPIC_MAX + 1];
    size_t pl;

    if (len != NULL)
        *len = 0;
    if (buf == NULL || size == 0)
        return LK_ERR_ARG;
    /* Only events and state are routed; T is checked here since join()
     * allows characters ('+', '#') an MQTT topic cannot carry. */
    if (d == NULL || (kind != LK_TOPIC_EVENTS && kind != LK_TOPIC_STATE) || topic_id == NULL ||
        !lk_pubsub_name_valid(topic_id, strnlen(topic_id, LK_PUBSUB_NAME_MAX + 1))) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    {
        const struct path_part p[] = {
            {BACKEND_ROOT, d->project, LK_PROJECT_MAX},
            {"/" LK_TOPICS_LEVEL "/", topic_id, LK_PUBSUB_NAME_MAX},
            {"/", d->location, LK_LOCATION_MAX},
            {"/", d->registry, LK_ID_MAX},
            {"/", d->device, LK_ID_MAX},
        };
        lk_err err = join(p, 5, prefix, sizeof prefix - 1, &pl);
        if (err != LK_OK) {
            memset(buf, 0, size);
            return err;
        }
    }
    prefix[pl] = '/';
    prefix[pl + 1] = '\0';
    return topic_write(prefix, kind, subfolder, buf, size, len);
}

lk_err lk_presence_topic(const lk_device_name *d, char *buf, size_t size, size_t *len)
{
    if (len != NULL)
        *len = 0;
    if (buf == NULL || size == 0)
        return LK_ERR_ARG;
    if (d == NULL) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    {
        const struct path_part p[] = {
            {BACKEND_ROOT, d->project, LK_PROJECT_MAX},
            {"/" LK_PRESENCE_LEVEL "/", d->location, LK_LOCATION_MAX},
            {"/", d->registry, LK_ID_MAX},
            {"/", d->device, LK_ID_MAX},
        };
        return join(p, 4, buf, size, len);
    }
}

size_t lk_backend_topic_in_project(const char *project, const char *topic, size_t len)
{
    size_t pl;

    if (project == NULL || topic == NULL)
        return 0;
    pl = strnlen(project, LK_PROJECT_MAX + 1);
    if (pl == 0 || pl > LK_PROJECT_MAX || len < BACKEND_ROOT_LEN + pl + 1 ||
        memcmp(topic, BACKEND_ROOT, BACKEND_ROOT_LEN) != 0 ||
        memcmp(topic + BACKEND_ROOT_LEN, project, pl) != 0 || topic[BACKEND_ROOT_LEN + pl] != '/')
        return 0;
    return BACKEND_ROOT_LEN + pl + 1;
}

/* # The bridge topic */

#define BRIDGE_ROOT_LEN (sizeof LK_BRIDGE_TOPIC_PREFIX - 1)

static int has_wildcard(const char *s, size_t len)
{
    return memchr(s, '+', len) != NULL || memchr(s, '#', len) != NULL;
}

lk_err lk_bridge_topic(const lk_device_name *d, lk_topic kind, const char *subfolder, char *buf,
                       size_t size, size_t *len)
{
    char prefix[BRIDGE_ROOT_LEN + LK_DEVICE_PATH_MAX + 2];
    size_t pl;
    lk_err err;

    if (len != NULL)
        *len = 0;
    if (buf == NULL || size == 0)
        return LK_ERR_ARG;
    memcpy(prefix, LK_BRIDGE_TOPIC_PREFIX, BRIDGE_ROOT_LEN);
    if (d == NULL || (kind != LK_TOPIC_EVENTS && kind != LK_TOPIC_STATE)) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    err = lk_device_path(d->project, d->location, d->registry, d->device, prefix + BRIDGE_ROOT_LEN,
                         sizeof prefix - BRIDGE_ROOT_LEN - 1, &pl);
    /* the parser's rules, so that every topic written parses back */
    if (err == LK_OK) {
        lk_device_name check;
        if (lk_device_path_parse(prefix + BRIDGE_ROOT_LEN, pl, &check) != LK_OK ||
            has_wildcard(prefix + BRIDGE_ROOT_LEN, pl))
            err = LK_ERR_ARG;
    }
    if (err != LK_OK) {
        memset(buf, 0, size);
        return LK_ERR_ARG;
    }
    prefix[BRIDGE_ROOT_LEN + pl] = '/';
    prefix[BRIDGE_ROOT_LEN + pl + 1] = '\0';
    return topic_write(prefix, kind, subfolder, buf, size, len);
}

lk_topic lk_bridge_topic_parse(const char *topic, size_t len, lk_device_name *d, const char **subfolder)
{
    lk_device_name scratch, *n = d != NULL ? d : &scratch;
    size_t at, slashes = 0, pl;
    const char *rest;
    size_t rl;
    lk_topic kind = LK_TOPIC_NONE;

    if (subfolder != NULL)
        *subfolder = NULL;
    memset(n, 0, sizeof *n);
    if (topic == NULL || len <= BRIDGE_ROOT_LEN || len > LK_BRIDGE_TOPIC_MAX ||
        memcmp(topic, LK_BRIDGE_TOPIC_PREFIX, BRIDGE_ROOT_LEN) != 0 || has_wildcard(topic, len) ||
        memchr(topic, '\0', len) != NULL)
        return LK_TOPIC_NONE;
    /* the device path is the next 8 levels (7 slashes); the 8th slash ends it */
    for (at = BRIDGE_ROOT_LEN; at < len; at++)
        if (topic[at] == '/' && ++slashes == 8)
            break;
    if (at >= len)
        return LK_TOPIC_NONE;
    pl = at - BRIDGE_ROOT_LEN;
    if (lk_device_path_parse(topic + BRIDGE_ROOT_LEN, pl, n) != LK_OK)
        return LK_TOPIC_NONE;
    rest = topic + at + 1;
    rl = len - at - 1;
    if (rl == 6 && memcmp(rest, "events", 6) == 0)
        kind = LK_TOPIC_EVENTS;
    else if (rl == 5 && memcmp(rest, "state", 5) == 0)
        kind = LK_TOPIC_STATE;
    else if (rl > 7 && memcmp(rest, "events/", 7) == 0 && lk_subfolder_valid(rest + 7, rl - 7)) {
        kind = LK_TOPIC_EVENTS;
        if (subfolder != NULL)
            *subfolder = rest + 7;
    }
    if (kind == LK_TOPIC_NONE)
        memset(n, 0, sizeof *n);
    return kind;
}

/* # Backend secrets */

void lk_backend_secret_hash(const char *secret, size_t len, uint8_t out[LK_SHA256_BYTES])
{
    lk_sha256(secret, len, out);
}

unsigned lk_gateway_needs(int auth_method)
{
    switch (auth_method) {
    case 1: return LK_GATEWAY_NEEDS_BINDING;
    case 2: return LK_GATEWAY_NEEDS_TOKEN;
    case 3: return LK_GATEWAY_NEEDS_BINDING | LK_GATEWAY_NEEDS_TOKEN;
    default: return LK_GATEWAY_REFUSES;
    }
}

lk_err lk_gateway_admit(int auth_method, int bound, int token_verified, const char **why)
{
    unsigned needs = lk_gateway_needs(auth_method);
    const char *w = NULL;

    if (needs & LK_GATEWAY_REFUSES)
        w = "the gateway's gatewayAuthMethod is unspecified: no device may use it";
    else if ((needs & LK_GATEWAY_NEEDS_BINDING) && !bound)
        w = "the device is not bound to the gateway";
    else if ((needs & LK_GATEWAY_NEEDS_TOKEN) && !token_verified)
        w = "the gateway's gatewayAuthMethod needs the device's own token, and none was verified";
    if (why != NULL)
        *why = w;
    return w == NULL ? LK_OK : LK_ERR_REFUSED;
}
