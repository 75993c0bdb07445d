/*
 * fuzz_import — libFuzzer target for `latchkey devices import` and
 * `registries import`'s readers (tools/latchkey/records.c: rec_next, the
 * record scanner of JSON lines, a JSON array and objects one after another;
 * tools/latchkey/import_fields.c: parse_device, parse_registry, one gcloud /
 * IoT Core record into a registry spec, PKCS#1 keys converted).
 *
 * Input: the import file, read from memory (fmemopen) with the tool's own
 * REC_MAX buffer; each record jansson reads as an object goes through
 * parse_device and parse_registry. Refusals are counted, not printed (the
 * shown count starts spent), and listed in the JSON summary as --format
 * json does.
 * Invariants (abort on violation):
 *  - a record is at most REC_MAX bytes and its text is in the input, but
 *    for blanks (' ', '\t', '\r': the reader drops those after a record's
 *    first '{') (the JSON lines form: one line, without its newline); the
 *    line it
 *    starts on is within the lines read; a broken file says why and ends
 *    the reading; the records counted are at most the ones returned;
 *  - a device record accepted fills an id, at most LK_DEVICE_CREDENTIALS_MAX
 *    credentials each with a format and a PEM, at most LK_METADATA_PAIRS_MAX
 *    metadata pairs with keys and values, a config of at most LK_CONFIG_MAX;
 *    a registry record, at most LK_REGISTRY_CERTS_MAX certificates with
 *    their lengths;
 *  - every refusal is counted (nerrors grows exactly when -1 is returned).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/latchkey/import.h"
#include "fuzz_common.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RECORDS_MAX 64 /* per input: the rest of a big file adds nothing new */

static char buf[REC_MAX + 1];

/* p[0..n) without ' ', '\t', '\r', into out; its length. */
static size_t unblank(const char *p, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            out[o++] = p[i];
    return o;
}

static void device(struct import *im, json_t *o)
{
    struct dev_rec d;
    memset(&d, 0, sizeof d);
    unsigned long before = im->nerrors;
    int rc = parse_device(im, o, &d);
    if (rc == 0) {
        CHECK(im->nerrors == before);
        CHECK(d.spec.id != NULL);
        CHECK(d.spec.ncreds <= LK_DEVICE_CREDENTIALS_MAX);
        for (unsigned i = 0; i < d.spec.ncreds; i++)
            CHECK(d.spec.creds[i].format != LK_CRED_UNSPECIFIED && d.spec.creds[i].pem != NULL);
        CHECK(d.spec.nmetadata <= LK_METADATA_PAIRS_MAX);
        for (size_t i = 0; i < d.spec.nmetadata; i++)
            CHECK(d.spec.metadata[i].key != NULL && d.spec.metadata[i].value != NULL);
        CHECK(d.spec.config_len <= LK_CONFIG_MAX && (d.spec.config_len == 0 || d.spec.config != NULL));
    } else {
        CHECK(rc == -1 || rc == -2);
        CHECK(rc == -2 || im->nerrors == before + 1);
    }
    dev_rec_free(&d);
}

static void registry(struct import *im, json_t *o)
{
    struct reg_rec r;
    memset(&r, 0, sizeof r);
    unsigned long before = im->nerrors;
    int rc = parse_registry(im, o, &r);
    if (rc == 0) {
        CHECK(im->nerrors == before);
        CHECK(r.spec.ncas <= LK_REGISTRY_CERTS_MAX);
        for (unsigned i = 0; i < r.spec.ncas; i++)
            CHECK(r.spec.ca_pems[i] != NULL && r.spec.ca_lens[i] == strlen(r.spec.ca_pems[i]));
    } else {
        CHECK(rc == -1 || rc == -2);
        CHECK(rc == -2 || im->nerrors == before + 1);
    }
    reg_rec_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0; /* fmemopen needs a buffer */
    FILE *f = fmemopen((void *)data, size, "r");
    if (f == NULL)
        return 0;
    struct admin a;
    memset(&a, 0, sizeof a);
    a.cmd = "devices import";
    a.name.project = "fuzz-project";
    struct import im;
    memset(&im, 0, sizeof im);
    im.a = &a;
    im.nerrors = SHOWN_MAX; /* nothing printed */
    im.errors = json_array();
    char *in = malloc(size), *rec = malloc(size + 1);
    CHECK(in != NULL && rec != NULL);
    size_t in_len = unblank((const char *)data, size, in);
    rec_reader_init(&im.rd, f, buf);
    unsigned long got = 0;
    for (int n = 0; n < RECORDS_MAX; n++) {
        int r = rec_next(&im.rd);
        CHECK(r == REC_OK || r == REC_END || r == REC_TOO_LONG || r == REC_BROKEN);
        if (r == REC_END)
            break;
        if (r == REC_BROKEN) {
            CHECK(im.rd.err[0] != '\0' && memchr(im.rd.err, 0, sizeof im.rd.err) != NULL);
            break;
        }
        if (r == REC_TOO_LONG)
            continue;
        got++;
        CHECK(im.rd.len <= REC_MAX && im.rd.len <= size);
        CHECK(im.rd.rec_line >= 1 && im.rd.rec_line <= rec_lines(&im.rd) + 1);
        size_t rl = unblank(buf, im.rd.len, rec);
        CHECK(rl == 0 || memmem(in, in_len, rec, rl) != NULL);
        if (im.rd.form == REC_LINES)
            CHECK(memchr(buf, '\n', im.rd.len) == NULL);
        rec_where(&im.rd, im.where, sizeof im.where);
        json_t *o = json_loadb(buf, im.rd.len, JSON_REJECT_DUPLICATES, NULL);
        if (json_is_object(o)) {
            im.devices = 1;
            device(&im, o);
            im.devices = 0;
            registry(&im, o);
        }
        json_decref(o);
    }
    CHECK(im.rd.nrec >= got);
    notes_free(&im.numids);
    notes_free(&im.skipped);
    notes_free(&im.expired);
    notes_free(&im.converted);
    json_decref(im.errors);
    free(in);
    free(rec);
    fclose(f);
    return 0;
}
