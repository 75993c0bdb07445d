/*
 * fuzz_manifest — libFuzzer target for a factory manifest's lines
 * (service/manifest/lines.c, lk_manifest__devices: the header line, each
 * device line's JSON, members, certificate DER and key, duplicates, then
 * the registry's own credential checks), as lk_manifest_import calls it once
 * the signature file verified. The signature is fuzz_manifest_jws's: here
 * no signature is made or checked, so each run costs the parsing only.
 *
 * Input: the .jsonl file; the batch is "batch-1" and the device count the
 * file's lines after the first (what a signature over it would say). The
 * registry (in /dev/shm) has no CA certificate, so any certificate the line
 * checks pass goes on to the registry's own credential checks; every call
 * is a dry run.
 *
 * Invariants (abort on violation):
 *  - nothing is ever written (the registry keeps 0 devices) and the report
 *    never says imported;
 *  - accepted only with no refused line, at least one device, one result per
 *    device line, and every result ok;
 *  - refused lines: nrefused is the count of results that are not ok, and
 *    each has a reason; a refused manifest says why.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../service/manifest/internal.h"
#include "latchkey/lk_manifest.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lk_registry *reg;
static const lk_reg_name name = {"fuzz-project", "us-central1", "fuzz-reg"};


static char path[128];

/* The database and SQLite's -wal and -shm beside it, at exit. */
static void remove_db(void)
{
    lk_registry_close(reg);
    fuzz_db_remove(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char why[256];
    snprintf(path, sizeof path, "/dev/shm/lk-fuzz-manifest-%ld.db", (long)getpid());
    unlink(path);
    CHECK(lk_registry_open(path, LK_REG_CREATE, &reg, why, sizeof why) == LK_OK);
    CHECK(lk_registry_create_registry(reg, &name, LK_REG_STATE_ENABLED, LK_REG_STATE_ENABLED, why, sizeof why) ==
          LK_OK);
    atexit(remove_db);
    return 0;
}

/* The device lines a signature over data would count: lines after the first. */
static uint64_t device_lines(const uint8_t *data, size_t size)
{
    uint64_t n = 0;
    for (size_t i = 0; i < size; i++)
        n += data[i] == '\n';
    if (size > 0 && data[size - 1] != '\n')
        n++;
    return n > 0 ? n - 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[512];
    lk_manifest_report r;
    memset(&r, 0, sizeof r);
    lk_err err = lk_manifest__devices(reg, &name, (const char *)data, size, "batch-1", device_lines(data, size),
                                      LK_MANIFEST_DRY_RUN, &r);
    r.err = err;
    snprintf(why, sizeof why, "%s", err == LK_OK ? "" : r.why);
    CHECK(!r.imported);
    uint64_t bad = 0;
    for (size_t i = 0; i < r.nresults; i++) {
        if (r.results[i].err != LK_OK) {
            bad++;
            CHECK(r.results[i].why != NULL && r.results[i].why[0] != '\0');
        }
    }
    CHECK(bad == r.nrefused);
    if (err == LK_OK) {
        CHECK(r.nrefused == 0 && r.ndevices > 0 && r.nresults == r.ndevices);
        CHECK(why[0] == '\0');
    } else {
        CHECK(why[0] != '\0');
    }
    /* Only a manifest whose lines all passed reaches the (staged, aborted)
     * import: then the registry must still be empty. */
    if (r.nresults > 0 && r.nrefused == 0) {
        lk_reg_registry rr;
        CHECK(lk_registry_get_registry(reg, &name, &rr, why, sizeof why) == LK_OK);
        CHECK(rr.ndevices == 0);
        lk_reg_registry_free(&rr);
    }
    lk_manifest_report_free(&r);
    return 0;
}
