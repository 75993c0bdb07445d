/*
 * lk_manifest.h — a factory's signed manifest imported into a registry
 * (docs/provisioning.md, "The manifest" and "Importing a manifest").
 *
 * A manifest is NAME.jsonl (a header line, then one device a line) and a
 * detached compact JWS over it (NAME.jsonl.jws) by a manufacturer's key that
 * the registry trusts (lk_registry_add_signer). lk_manifest_import checks,
 * in this order, and stops at the first failure of steps 1-3:
 *  1. the JWS: three base64url parts; a header of exactly alg, typ
 *     ("latchkey-manifest+jws") and kid; a signer of the registry whose
 *     fingerprint is kid (no kid: every signer is tried), whose key gives the
 *     algorithm (ES256 for P-256, raw r||s; RS256 for RSA; a header alg that
 *     differs is refused), and whose signature verifies (OpenSSL);
 *  2. the payload (exactly manifest, sha256, size, devices, batch, iat)
 *     against the file: size, SHA-256, the count of device lines, the batch;
 *  3. the header line;
 *  4. every device line, all of them, each with its own report: strict JSON
 *     (duplicate members, unknown members, a line over LK_MANIFEST_LINE_MAX
 *     refused), deviceId valid, the certificate's one subject CN is deviceId,
 *     its key is publicKey, format matches the key, no deviceId, key or
 *     certificate twice in the manifest (a serial may repeat: one token can
 *     hold several devices' keys), deviceId free in the
 *     registry, and the registry's own checks of the device it would create
 *     (lk_registry_import_check_many: the certificate through the line's
 *     chain to a registry CA with LK_REG_CHECK_LEAF_DATES, the registry's
 *     CRLs) — all outside the registry's write transaction, the per-line
 *     checks on one thread per online CPU (at most 8), the report in line
 *     order all the same;
 *  5. then, only if every line passed, one staged registry import of all the
 *     devices (lk_registry_import_begin_staged/add/commit: the write lock is
 *     taken per chunk of 500 and for the final switch, not throughout),
 *     which does not verify again what step 4 checked unless the registry's
 *     CAs or CRLs changed meanwhile.
 * Any refusal refuses the whole manifest and writes nothing.
 *
 * The library reads, checks and writes; it prints nothing. Thread safety: as
 * the registry handle it is given.
 */
#ifndef LK_MANIFEST_H
#define LK_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include "lk_error.h"
#include "lk_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LK_MANIFEST_LINE_MAX (64u * 1024u)  /* bytes of one line, its "\n" included */
#define LK_MANIFEST_JWS_MAX (16u * 1024u)   /* bytes of the .jws file */
#define LK_MANIFEST_DEVICES_MAX 1000000u    /* device lines in one manifest */

#define LK_MANIFEST_DRY_RUN 1u              /* check everything, write nothing */

/* One device line's outcome. */
typedef struct lk_manifest_result {
    unsigned long line;              /* 1-based line of the .jsonl */
    char *device_id;                 /* as the line gives it, or NULL if unreadable */
    lk_err err;                      /* LK_OK: accepted (imported unless refused or a dry run) */
    char *why;                       /* the reason, NULL when err is LK_OK */
    uint64_t num_id;                 /* the numId given (an import that was committed), else 0 */
} lk_manifest_result;

typedef struct lk_manifest_report {
    lk_err err;                      /* LK_OK: accepted (and written, unless a dry run) */
    char why[512];                   /* the whole manifest's reason, "" when err is LK_OK */
    int imported;                    /* 1: the devices were written */
    char *batch, *manufacturer;      /* from the header line (or NULL) */
    char *signer;                    /* the label of the signer whose key verified, or NULL */
    uint64_t ndevices;               /* device lines read */
    uint64_t nrefused;               /* device lines refused */
    lk_manifest_result *results;     /* one per device line read, in order */
    size_t nresults;
} lk_manifest_report;
/* Frees the members of r (not r) and zeroes it. NULL is ignored. */
void lk_manifest_report_free(lk_manifest_report *r);

/* Check the manifest data (len bytes, the whole .jsonl) and its detached
 * JWS jws (jws_len bytes; one trailing "\n" allowed) against registry name,
 * then import every device in one transaction unless flags has
 * LK_MANIFEST_DRY_RUN. out is filled in every case (free it with
 * lk_manifest_report_free), and its err equals the return value.
 *
 * Returns LK_OK when the manifest was accepted (and, without DRY_RUN,
 * written). A refused manifest: LK_ERR_REG_INVALID (malformed JWS, payload,
 * header line, or a file that is not what was signed: size, SHA-256,
 * device count, batch), LK_ERR_REG_CERT (no signer of the registry
 * verifies the signature), LK_ERR_REG_LIMIT (the JWS or the device count
 * over its limit), LK_ERR_REG_NOT_FOUND (no such registry); when device
 * lines were refused, the first refused line's error (LK_ERR_REG_INVALID,
 * LK_ERR_REG_CERT, LK_ERR_REG_EXISTS, LK_ERR_CRED_INVALID, ...) with
 * out->nrefused > 0 and each line's reason in out->results. LK_ERR_REG_BUSY,
 * LK_ERR_REG_STORAGE, LK_ERR_NOMEM, LK_ERR_ARG as the
 * registry's functions. Nothing is written on any failure. why (may be NULL
 * with why_size 0) receives out->why. */
lk_err lk_manifest_import(lk_registry *reg, const lk_reg_name *name, const char *data, size_t len,
                          const char *jws, size_t jws_len, unsigned flags, lk_manifest_report *out,
                          char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#endif
