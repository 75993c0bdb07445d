/*
 * attach.c — a gateway's attach payload (attach.h): the one piece of the
 * attach that parses what the gateway sent.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "latchkey/lk_util.h"
#include "attach.h"

/* jansson keeps its own copy of the token: wipe it before freeing o. */
static void attach__drop(json_t *o)
{
    json_t *v = json_object_get(o, "authorization");
    if (json_is_string(v) && json_string_length(v) > 0)
        lk_wipe((char *)json_string_value(v), json_string_length(v));
    json_decref(o);
}

int attach__payload(const void *payload, size_t len, size_t max_token, char **token, const char **why)
{
    json_error_t jerr;
    json_t *o, *v;
    const char *k;

    *token = NULL;
    if (len == 0)
        return 0;
    if (len > max_token + ATTACH_SLACK) {
        *why = "the attach payload is larger than a token allows";
        return -1;
    }
    o = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        *why = "the attach payload is not a JSON object ({\"authorization\": \"<token>\"})";
        return -1;
    }
    const char *bad = NULL;
    json_object_foreach(o, k, v) {
        if (strcmp(k, "authorization")) {
            bad = "the attach payload has a field other than \"authorization\"";
            break;
        }
        if (!json_is_string(v)) {
            bad = "\"authorization\" is not a string";
            break;
        }
        if (json_string_length(v) > 0 && !(*token = strdup(json_string_value(v)))) {
            bad = "out of memory";
            break;
        }
    }
    attach__drop(o);
    if (bad != NULL && *token != NULL) {
        /* A refused payload gives no token (the copy taken before a later
         * member was found wrong is wiped). */
        lk_wipe(*token, strlen(*token));
        free(*token);
        *token = NULL;
    }
    if (bad == NULL)
        return 0;
    *why = bad;
    return -1;
}
