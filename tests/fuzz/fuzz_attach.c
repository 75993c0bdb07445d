/*
 * fuzz_attach — the broker plugin's reader of a gateway's attach payload
 * (service/plugin/attach.c, attach__payload), on any bytes a gateway could
 * publish to /devices/D/attach.
 *
 * The input, in an exact-size heap buffer without a NUL, is read with a
 * token cap of 1024 bytes (so the size limit, 1024 + ATTACH_SLACK, is
 * within reach). Invariants (abort on violation), against jansson with
 * duplicates refused as the independent reading:
 *  - accepted exactly when the payload is empty, or within the cap and a
 *    JSON object whose only member is "authorization" with a string value;
 *  - the token returned is that string (NULL when empty), whole: no NUL
 *    inside cuts it short;
 *  - a refusal says why in one line and returns no token.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../service/plugin/attach.h"
#include "fuzz_common.h"


#define MAX_TOKEN 1024u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    char *token = (char *)1;
    const char *why = NULL;
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    int rc = attach__payload(in, size, MAX_TOKEN, &token, &why);

    /* The oracle. */
    int want = 0;
    const char *want_tok = NULL;
    size_t want_len = 0;
    json_t *o = NULL;
    if (size > MAX_TOKEN + ATTACH_SLACK) {
        want = -1;
    } else if (size > 0) {
        o = json_loadb(in, size, JSON_REJECT_DUPLICATES, NULL);
        json_t *v = o ? json_object_get(o, "authorization") : NULL;
        if (o == NULL || !json_is_object(o) || json_object_size(o) > 1 ||
            (json_object_size(o) == 1 && !json_is_string(v))) {
            want = -1;
        } else if (v != NULL && json_string_length(v) > 0) {
            want_tok = json_string_value(v);
            want_len = json_string_length(v);
        }
    }
    CHECK(rc == want);
    if (rc == 0) {
        CHECK((token == NULL) == (want_tok == NULL));
        if (token != NULL)
            CHECK(strlen(token) == want_len && memcmp(token, want_tok, want_len) == 0);
    } else {
        CHECK(token == NULL);
        CHECK(why != NULL && why[0] != '\0' && strchr(why, '\n') == NULL);
    }
    json_decref(o);
    free(token);
    free(in);
    return 0;
}
