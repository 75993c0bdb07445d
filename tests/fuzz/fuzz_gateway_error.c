/*
 * fuzz_gateway_error — libFuzzer target for the errors message a gateway
 * reads (lk_dev_gateway_error_parse, lk_device.h), checked against jansson
 * with JSON_REJECT_DUPLICATES as the oracle.
 *
 * The input, in an exact-size heap buffer without a NUL (ASan sees one byte
 * read past it), is parsed. On LK_ERR_ENCODING or LK_ERR_TOO_LARGE the
 * output must be all zeros. On LK_OK: every field NUL-terminated within its
 * array, jansson must accept the same bytes (strict JSON, no duplicate
 * keys), and every field must equal jansson's reading (description: its
 * prefix, cut on a character when longer than LK_GATEWAY_ERROR_DESC_MAX).
 * Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "latchkey/lk_device.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

static const char *str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : "";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lk_dev_gateway_error e;
    json_error_t jerr;
    json_t *o, *info;
    uint8_t *copy = malloc(size ? size : 1);
    lk_err err;

    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    memset(&e, 0xa5, sizeof e);
    err = lk_dev_gateway_error_parse(copy, size, &e);
    if (err != LK_OK) {
        CHECK(err == LK_ERR_ENCODING || (err == LK_ERR_TOO_LARGE && size > LK_GATEWAY_ERROR_MAX));
        CHECK(all_zero(&e, sizeof e));
        free(copy);
        return 0;
    }
    CHECK(memchr(e.error_type, 0, sizeof e.error_type) != NULL && e.error_type[0] != '\0');
    CHECK(memchr(e.description, 0, sizeof e.description) != NULL);
    CHECK(memchr(e.device_id, 0, sizeof e.device_id) != NULL);
    CHECK(memchr(e.message_type, 0, sizeof e.message_type) != NULL);
    CHECK(memchr(e.topic, 0, sizeof e.topic) != NULL);
    CHECK(e.packet_id <= 65535);

    o = json_loadb((const char *)copy, size, JSON_REJECT_DUPLICATES, &jerr);
    CHECK(o != NULL && json_is_object(o));
    CHECK(strcmp(str(o, "error_type"), e.error_type) == 0);
    CHECK(strcmp(str(o, "device_id"), e.device_id) == 0);
    {
        const char *d = str(o, "description");
        size_t n = strlen(e.description);
        CHECK(strncmp(d, e.description, n) == 0);
        if (strlen(d) <= LK_GATEWAY_ERROR_DESC_MAX)
            CHECK(strlen(d) == n);
        else /* cut on a character: what follows starts one */
            CHECK(n + 4 > LK_GATEWAY_ERROR_DESC_MAX && ((uint8_t)d[n] & 0xc0) != 0x80);
    }
    info = json_object_get(o, "mqtt_message_info");
    if (info != NULL) {
        CHECK(json_is_object(info));
        CHECK(strcmp(str(info, "topic"), e.topic) == 0);
        CHECK(strcmp(str(info, "message_type"), e.message_type) == 0);
        if (json_object_get(info, "packet_id") != NULL)
            CHECK(json_integer_value(json_object_get(info, "packet_id")) == (json_int_t)e.packet_id);
    } else {
        CHECK(e.topic[0] == '\0' && e.message_type[0] == '\0' && e.packet_id == 0);
    }
    json_decref(o);
    free(copy);
    return 0;
}
