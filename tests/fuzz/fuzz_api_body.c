/*
 * fuzz_api_body — latchkeyd's readers of request bodies (a Device, as
 * devices.create and devices.patch take it; a message's payload, as
 * sendCommandToDevice and the device bridge's publishEvent and setState
 * take it) and its proto3 JSON scalars
 * (timestamps, base64 bytes, int64), on any bytes a client could send.
 * Beyond "no crash, no leak": a body read as valid respects every limit
 * the registry relies on, a timestamp read as valid prints back (UTC)
 * to one that reads as the same instant, and an object's member names pass
 * the unknown-field check (lkd_known_fields, what every body reader calls
 * first) exactly when each is a field's lowerCamelCase json_name or its
 * original snake_case name, as proto3 JSON has it — the only two names
 * lkd_field then reads.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../service/daemon/api_devices.h"
#include "latchkey/lk_iotcore.h"
#include "fuzz_common.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct lkd_call *call(void)
{
    struct lkd_call *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    return c;
}

static void body(json_t *j, int create)
{
    struct lkd_call *c = call();
    struct lkd_device_body b;
    if (lkd_device_body_read(c, j, &b, create) == 0) {
        CHECK(b.spec.ncreds <= LK_DEVICE_CREDENTIALS_MAX);
        for (unsigned i = 0; i < b.spec.ncreds; i++) {
            CHECK(b.creds[i].format != LK_CRED_UNSPECIFIED);
            CHECK(b.creds[i].pem != NULL && b.creds[i].expires >= 0);
        }
        CHECK(b.spec.nmetadata <= LK_METADATA_PAIRS_MAX);
        CHECK(b.spec.config_len <= LK_CONFIG_MAX);
        CHECK(b.spec.id == NULL || lk_id_valid(b.spec.id, strlen(b.spec.id)));
        lkd_call_free(c);
    } /* else: the reply freed the call */
    lkd_device_body_free(&b);
}

/* binaryData and a subfolder: within max, and a subfolder the topic
 * grammar accepts. */
static void payload(json_t *j)
{
    struct lkd_call *c = call();
    uint8_t *bytes = NULL;
    size_t n = 0;
    const char *sub = NULL;
    if (lkd_payload(c, j, "subFolder", LK_EVENT_MAX, &bytes, &n, &sub) == 0) {
        CHECK(n <= LK_EVENT_MAX && bytes != NULL);
        CHECK(sub == NULL || lk_subfolder_valid(sub, strlen(sub)));
        lkd_call_free(c);
    }
    free(bytes);
}

/* "numId" -> "num_id": the harness's own reading of proto3's names. */
static void snake(const char *camel, char *out, size_t size)
{
    size_t o = 0;
    for (; *camel && o + 2 < size; camel++) {
        if (*camel >= 'A' && *camel <= 'Z') {
            out[o++] = '_';
            out[o++] = (char)(*camel - 'A' + 'a');
        } else {
            out[o++] = *camel;
        }
    }
    out[o] = '\0';
}

static void names(json_t *j)
{
    static const char *const fields[] = {"id", "numId", "credentials", "lastHeartbeatTime", "gatewayConfig",
                                         "x509Details", "logLevel", NULL};
    const char *key;
    json_t *v;
    int want = 0;
    json_object_foreach(j, key, v) {
        int known = 0;
        for (const char *const *n = fields; *n && !known; n++) {
            char sn[64];
            snake(*n, sn, sizeof sn);
            known = strcmp(key, *n) == 0 || strcmp(key, sn) == 0;
        }
        if (!known)
            want = -1;
    }
    struct lkd_call *c = call();
    int got = lkd_known_fields(c, j, "fuzz", fields);
    CHECK(got == want);
    if (got == 0)
        lkd_call_free(c);
}

static void scalars(json_t *v)
{
    struct lkd_call *c = call();
    int64_t t;
    if (lkd_timestamp(c, v, "t", &t) != 0)
        c = call();
    else if (t >= 0 && t < 253402300800LL) { /* years 1970..9999 print back */
        char buf[48];
        json_t *again = json_string(lk_time_rfc3339(t, buf, sizeof buf));
        int64_t t2 = -1;
        CHECK(lkd_timestamp(c, again, "t", &t2) == 0 && t2 == t);
        json_decref(again);
    }
    uint8_t *bytes = NULL;
    size_t n = 0;
    if (lkd_bytes(c, v, "b", 1024, &bytes, &n) != 0)
        c = call();
    else
        CHECK(n <= 1024);
    free(bytes);
    int64_t x;
    if (lkd_int64(c, v, "i", 0, INT64_MAX, &x) != 0)
        c = call();
    else
        CHECK(x >= 0);
    lkd_call_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lkd_log_quiet = 1;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL) {
        /* Not JSON: as a string value it still exercises the scalars. */
        json_t *s = json_stringn((const char *)data, size);
        if (s != NULL)
            scalars(s);
        json_decref(s);
        return 0;
    }
    if (json_is_object(j)) {
        body(j, 1);
        body(j, 0);
        payload(j);
        names(j);
    } else {
        scalars(j);
    }
    json_decref(j);
    return 0;
}
