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

int lk_project_valid(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len < LK_PROJECT_MIN || len > LK_PROJECT_MAX || !is_lower(s[0]) ||
        s[len - 1] == '-')
        return 0;
    for (i = 1; i < len; i++)
        if (!is_lower(s[i]) && !is_digit(s[i]) && s[i] != '-')
            return 0;
    return 1;
}

int lk_location_valid(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len < 1 || len > LK_LOCATION_MAX || !is_lower(s[0]))
        return 0;
    for (i = 1; i < len; i++)
        if (!is_lower(s[i]) && !is_digit(s[i]) && s[i] != '-')
            return 0;
    return 1;
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
