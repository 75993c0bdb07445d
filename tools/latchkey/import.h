/*
 * `latchkey devices import`, `latchkey registries import`: what the command
 * (cmd_import.c: reading, refusals, notes, the transaction) and the record
 * parsers (import_fields.c: one gcloud/IoT Core JSON record into a
 * registry spec) share.
 */
#ifndef LK_TOOL_IMPORT_H
#define LK_TOOL_IMPORT_H

#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "admin.h"
#include "records.h"

#define SHOWN_MAX 20         /* refusals, and notes of each kind, printed on standard error */
#define JSON_ERRORS_MAX 1000 /* refusals listed in the JSON summary */

/* Something said after a successful commit, one per record. */
struct note {
    char *where, *id;
    char *text;                /* NULL for a numId change: */
    uint64_t asked, got;
};

struct notes {
    struct note *v;
    size_t n, cap;
};

/* The ids of this input's records, to tell a repeated id from one that
 * exists in the registry. */
struct seen {
    char **ids;
    unsigned long *lines;
    size_t n, cap; /* cap a power of two */
};

struct import {
    struct admin *a;
    struct rec_reader rd;
    int devices;               /* 1: devices (and bindings), 0: registries */
    int bindings;              /* reading gateway bindings ({"gatewayId", "deviceId"} records) */
    unsigned long nbound;      /* bindings taken */
    int after_devices;         /* the bindings file of devices import --bindings ("bindings line N") */
    unsigned long prev_nrec, prev_lines; /* of the devices file, when bindings follow it */
    int skip_existing;
    json_t *errors;            /* --format json: the first JSON_ERRORS_MAX refusals */
    unsigned long nerrors, nshown, nok, nskipped, ncerts;
    struct notes numids, skipped, expired, converted;
    unsigned long events, states, https; /* registries with each set */
    unsigned long moved_topics; /* notification topics moved from the export's project to P */
    struct seen seen;
    int tty;
    int always;                /* print this refusal whatever the cap */
    struct timespec start, last_progress;
    char where[64];
};

/* What one record describes; pointers into the parsed JSON, or owned. */
struct dev_rec {
    lk_reg_device_spec spec;
    lk_reg_credential creds[LK_DEVICE_CREDENTIALS_MAX];
    char *converted[LK_DEVICE_CREDENTIALS_MAX]; /* PKCS#1 keys as PUBLIC KEY */
    lk_reg_metadata *meta;
    uint8_t *config;
};

struct reg_rec {
    lk_reg_registry_spec spec;
    const char *id;
    const char *pems[LK_REGISTRY_CERTS_MAX];
    size_t lens[LK_REGISTRY_CERTS_MAX];
    char *events, *state; /* JSON texts, owned */
};

/* One refused record: on standard error (the first SHOWN_MAX), and in the
 * JSON summary (the first JSON_ERRORS_MAX). */
void refuse(struct import *im, const char *id, lk_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Something to say about record id after a successful commit. Returns 0, or
 * -1 out of memory. */
int note_add(struct import *im, struct notes *ns, const char *id, uint64_t asked, uint64_t got,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Seconds since from (CLOCK_MONOTONIC). */
double elapsed(const struct timespec *from);
/* Erase the progress line (on a terminal) before a message. */
void clear_progress(struct import *im);
/* The progress line on a terminal: at most every 0.2 s, unless force. */
void progress(struct import *im, int force);
/* Drop the notes after the first n (those of a record that was not
 * imported after all); notes_free drops them all. */
void notes_truncate(struct notes *ns, size_t n);
void notes_free(struct notes *ns);
/* Print the first SHOWN_MAX notes of a kind, then how many more. */
void notes_print(struct import *im, const struct notes *ns, const char *kind);

/* Fill d (r) from the object o; report and return -1 when the record is bad
 * (-2: out of memory). */
int parse_device(struct import *im, json_t *o, struct dev_rec *d);
void dev_rec_free(struct dev_rec *d);
int parse_registry(struct import *im, json_t *o, struct reg_rec *r);
void reg_rec_free(struct reg_rec *r);

#endif
