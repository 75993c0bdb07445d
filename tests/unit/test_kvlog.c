/*
 * test_kvlog.c — the log lines' key=value form (service/common/kvlog.h,
 * docs/plugin.md "Logs"): bare and quoted values, the escapes of hostile
 * bytes, the bounds on a value, a sentence and a line, and the format doubling for
 * Mosquitto's log. The helper is internal to the programs, so its source is
 * compiled in here.
 */
#include "lk_test.h"

#include <stdio.h>
#include <string.h>

#include "service/common/kvlog.c"

static const char *value(const char *v)
{
    static char out[4 * KVLOG_VALUE_MAX + 8];
    kvlog_value(out, sizeof out, v, strlen(v));
    return out;
}

static void test_bare_values(void **state)
{
    (void)state;
    assert_string_equal(value("projects/p-1/locations/us-central1/registries/r/devices/d%2B~.x"),
                        "projects/p-1/locations/us-central1/registries/r/devices/d%2B~.x");
    assert_string_equal(value("LK_ERR_TOKEN_EXPIRED"), "LK_ERR_TOKEN_EXPIRED");
    assert_string_equal(value("sha256:0a1b"), "sha256:0a1b");
}

static void test_quoted_values(void **state)
{
    (void)state;
    assert_string_equal(value(""), "\"\"");
    assert_string_equal(value("no such device"), "\"no such device\"");
    assert_string_equal(value("a=b"), "\"a=b\"");
    assert_string_equal(value("say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(value("back\\slash"), "\"back\\\\slash\"");
}

/* A value cannot end the line, add a field or reach a terminal. */
static void test_hostile_bytes_escaped(void **state)
{
    (void)state;
    assert_string_equal(value("a\nlatchkey: event=connect"), "\"a\\nlatchkey: event=connect\"");
    assert_string_equal(value("\r\t"), "\"\\r\\t\"");
    assert_string_equal(value("\x1b[31m"), "\"\\x1b[31m\"");
    assert_string_equal(value("\x7f"), "\"\\x7f\"");
    assert_string_equal(value("x\xe2\x80\xa8y"), "\"x\\xe2\\x80\\xa8y\"");
}

static void test_long_value_cut(void **state)
{
    char big[KVLOG_VALUE_MAX + 100], want[KVLOG_VALUE_MAX + 8];
    (void)state;
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(want, sizeof want, "\"%.*s...\"", KVLOG_VALUE_MAX, big);
    assert_string_equal(value(big), want);
    /* exactly the bound: whole and bare */
    big[KVLOG_VALUE_MAX] = '\0';
    assert_string_equal(value(big), big);
    /* every byte escaped: still cut at KVLOG_VALUE_MAX input bytes, quoted */
    char ctl[KVLOG_VALUE_MAX + 10];
    memset(ctl, 1, sizeof ctl - 1);
    ctl[sizeof ctl - 1] = '\0';
    const char *v = value(ctl);
    assert_int_equal(strlen(v), 1 + 4 * KVLOG_VALUE_MAX + 3 + 1);
    assert_string_equal(v + strlen(v) - 4, "...\"");
}

static void test_line(void **state)
{
    struct kvlog l;
    (void)state;
    kvlog_begin(&l, "refused", "info");
    kvlog_str(&l, "device", "projects/p/locations/l/registries/r/devices/d");
    kvlog_str(&l, "skipped", NULL);
    kvlog_str(&l, "reason", "the device is blocked");
    kvlog_int(&l, "bytes", -12);
    kvlog_fmt(&l, "msg", "%d%%", 5);
    assert_string_equal(kvlog_end(&l), "event=refused level=info device=projects/p/locations/l/registries/r/"
                                       "devices/d reason=\"the device is blocked\" bytes=-12 msg=5%");
}

/* A field that does not fit is left out whole, and the line says so. */
static void test_line_bound(void **state)
{
    struct kvlog l;
    char big[KVLOG_VALUE_MAX + 1];
    (void)state;
    memset(big, '\n', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    kvlog_begin(&l, "x", "info");
    for (int i = 0; i < 10; i++)
        kvlog_str(&l, "v", big);
    const char *line = kvlog_end(&l);
    assert_true(strlen(line) < KVLOG_LINE_MAX && strlen(line) > KVLOG_LINE_MAX - 30);
    assert_string_equal(line + strlen(line) - 12, " truncated=1");
    assert_non_null(strstr(line, "...\" truncated=1")); /* the last value cut to the room left */
    assert_null(strchr(line, '\n'));
    /* the quotes balance: every field whole */
    size_t q = 0;
    for (const char *p = line; *p; p++)
        if (*p == '"' && p[-1] != '\\')
            q++;
    assert_int_equal(q % 2, 0);
}

/* A sentence (msg=) may be longer than a value, up to KVLOG_TEXT_MAX bytes. */
static void test_text_bound(void **state)
{
    struct kvlog l;
    char text[KVLOG_TEXT_MAX + 50];
    (void)state;
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    kvlog_begin(&l, "x", "info");
    kvlog_fmt(&l, "msg", "%.1000s", text);
    assert_int_equal(strlen(kvlog_end(&l)), strlen("event=x level=info msg=") + 1000);
    kvlog_begin(&l, "x", "info");
    kvlog_fmt(&l, "msg", "%s", text);
    const char *line = kvlog_end(&l);
    assert_int_equal(strlen(line), strlen("event=x level=info msg=\"") + KVLOG_TEXT_MAX + 4);
    assert_string_equal(line + strlen(line) - 4, "...\"");
    kvlog_str(&l, "v", "short"); /* still room */
    assert_string_equal(kvlog_end(&l) + strlen(kvlog_end(&l)) - 8, " v=short");
}

static void test_format_doubles_percent(void **state)
{
    char out[32];
    (void)state;
    assert_int_equal(kvlog_format(out, sizeof out, "a%b%%"), 0);
    assert_string_equal(out, "a%%b%%%%");
    assert_int_equal(kvlog_format(out, 4, "a%b"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_values),
        cmocka_unit_test(test_quoted_values),
        cmocka_unit_test(test_hostile_bytes_escaped),
        cmocka_unit_test(test_long_value_cut),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_line_bound),
        cmocka_unit_test(test_text_bound),
        cmocka_unit_test(test_format_doubles_percent),
    };
    return cmocka_run_group_tests_name("kvlog", tests, NULL, NULL);
}
