/*
 * attach.h — the reader of a gateway's attach payload (attach.c), apart
 * from gateway.c so that it builds without the broker (tests/fuzz).
 */
#ifndef PLG_ATTACH_H
#define PLG_ATTACH_H

#include <stddef.h>

#define ATTACH_SLACK 256u /* the JSON around the token */

/* The attach payload: empty, {}, {"authorization": ""} or
 * {"authorization": "<token>"}, at most max_token + ATTACH_SLACK bytes.
 * 0 with *token NULL (none) or a copy of it (the caller wipes and frees
 * it); -1 with *why (a constant sentence, never the token). */
int attach__payload(const void *payload, size_t len, size_t max_token, char **token, const char **why);

#endif
