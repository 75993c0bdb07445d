/*
 * The registry commands through latchkeyd's admin API (api.c): where the
 * API is (--api URL, $LATCHKEY_API or the config file), who calls it (a
 * service account's JSON key file), and one REST call with its answer as
 * JSON or its refusal as the lk_err the local registry would have given.
 *
 * Authentication: a self-signed JWT (RS256, kid = the key's
 * private_key_id, iss = sub = client_email, the cloud-platform scope, an
 * hour long), signed once when the connection opens; the private key is
 * wiped right after. The token is never printed.
 */
#ifndef LK_TOOL_API_H
#define LK_TOOL_API_H

#include <signal.h>
#include <stddef.h>

#include <jansson.h>

#include "latchkey/lk_error.h"

struct api;

/* Where and as whom: NULL members are unset. */
struct api_settings {
    const char *url;      /* "https://host:port" (http:// only to a loopback address) */
    const char *key_file; /* the service account's JSON key file */
    const char *ca_file;  /* PEM CA bundle for a private CA, or NULL for the system's */
};

/* Connect: read and check the key file, sign the token. Returns an exit
 * code (the reason printed as "latchkey: CMD: ..."); *out on EXIT_OK. */
int api_open(const char *cmd, const struct api_settings *s, struct api **out);
/* Close; the token is wiped. NULL is a no-op. */
void api_close(struct api *c);
/* The key file's project_id (never NULL after api_open). */
const char *api_project(const struct api *c);

/* One call: method ("GET", "POST", "PATCH", "DELETE") on path (from "/v1/",
 * segments already escaped with api_seg) with query (without '?', or NULL)
 * and body (JSON, or NULL; not taken). LK_OK and *out (the answer's JSON,
 * the caller's to json_decref), or the refusal as an lk_err with the API's
 * message in why: the error's ErrorInfo reason when it names an lk_err
 * ("LK_ERR_REG_LIMIT"), else by its status (NOT_FOUND -> LK_ERR_REG_NOT_FOUND,
 * ALREADY_EXISTS -> LK_ERR_REG_EXISTS, INVALID_ARGUMENT -> LK_ERR_REG_INVALID,
 * UNAUTHENTICATED and PERMISSION_DENIED -> LK_ERR_REFUSED, UNAVAILABLE ->
 * LK_ERR_REG_BUSY, ...). LK_ERR_NET / LK_ERR_TLS when no answer came. */
lk_err api_call(struct api *c, const char *method, const char *path, const char *query, json_t *body,
                json_t **out, char *why, size_t why_size);
/* api_call with a body that is not JSON: data[0..len) sent as it is with
 * Content-Type ctype, and header ("Name: value", or NULL) added. A refusal
 * also leaves its JSON (Google's error object, with its details) in
 * *refused when refused is not NULL (the caller's to json_decref). */
lk_err api_call_raw(struct api *c, const char *method, const char *path, const char *query, const char *ctype,
                    const void *data, size_t len, const char *header, json_t **out, json_t **refused, char *why,
                    size_t why_size);
/* While *stop is non-zero (a signal handler's flag; NULL: none), a call in
 * progress gives up within a second: LK_ERR_STATE, why "interrupted". */
void api_set_stop(struct api *c, volatile sig_atomic_t *stop);
/* The canonical status of the last refusal ("FAILED_PRECONDITION"), or "". */
const char *api_last_status(const struct api *c);
/* 1 when the last refusal named its lk_err in an ErrorInfo reason (a
 * registry refusal, e.g. LK_ERR_REG_BUSY under UNAVAILABLE), 0 when only its
 * status speaks (latchkeyd's own answers, e.g. a command's outcome). */
int api_last_reasoned(const struct api *c);

/* s escaped as one path segment (malloc'd), or NULL out of memory. */
char *api_seg(const char *s);

#endif
