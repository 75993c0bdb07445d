/*
 * lk_reg_provision.h — the device registry's provisioning part (schema 7,
 * docs/provisioning.md and docs/registry.md "Schema 7"): certificate
 * chains, manifest signers, certificate revocation lists, just-in-time
 * registration, and the checks of a large import made outside its write
 * transaction. Part of liblatchkey-registry; lk_registry.h includes it, and
 * it includes lk_registry.h (either may be included first).
 */
#ifndef LK_REG_PROVISION_H
#define LK_REG_PROVISION_H

#include <stddef.h>
#include <stdint.h>

#include "latchkey/lk_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Certificate chains. A device certificate is accepted (create_device,
 * import_add, add_credential, jit_register) when it verifies with OpenSSL's
 * X509_verify_cert up to one of the registry's CA certificates as trust
 * anchor, through at most LK_REG_CHAIN_MAX intermediates taken only from
 * spec->chain_pem (never from the registry's other devices; at most
 * LK_REG_CHAIN_MAX + 1 certificates, as it may hold the anchor too), every
 * certificate of the path valid now except the leaf (whose dates are checked
 * only with LK_REG_CHECK_LEAF_DATES), every CA of the path a CA by the
 * registry-CA rules, and no certificate of the path revoked by a CRL the
 * registry holds (lk_registry_add_crl) for its issuer. Without a chain this
 * is IoT Core's rule: signed directly by a registry CA. A revoked
 * certificate is LK_ERR_REG_CERT, why "revoked by <issuer>'s CRL".
 */
#define LK_REG_CHAIN_MAX 2u              /* intermediates between a device and a registry CA */
#define LK_REG_CHECK_LEAF_DATES 1u       /* the device certificate must be valid now (manifests, JIT) */

/* Manifest signers: the public keys (P-256 or RSA >= 2048, PEM SPKI) whose
 * signature on a factory manifest the registry trusts; at most
 * LK_REG_SIGNERS_MAX, each with a label (lk_id_valid). fingerprint is the
 * SHA-256 of the DER SPKI (the manifest signature's kid, in hex). */
#define LK_REG_SIGNERS_MAX 10u
typedef struct lk_reg_signer {
    unsigned index;
    char *label;
    char *pem;
    char *key_type;                  /* "EC P-256", "RSA 3072" */
    uint8_t fingerprint[32];
    int64_t created;
} lk_reg_signer;
void lk_reg_signer_free(lk_reg_signer *s);
lk_err lk_registry_add_signer(lk_registry *reg, const lk_reg_name *name, const char *label,
                              const char *pem, size_t pem_len, unsigned *index,
                              char *why, size_t why_size);
lk_err lk_registry_list_signers(lk_registry *reg, const lk_reg_name *name,
                                int (*cb)(void *arg, const lk_reg_signer *s), void *arg,
                                char *why, size_t why_size);
lk_err lk_registry_delete_signer(lk_registry *reg, const lk_reg_name *name, unsigned index,
                                 char *why, size_t why_size);

/* Certificate revocation lists (X.509 v2 CRL, PEM). A CRL is accepted when
 * its signature verifies with the key of its issuer, which is one of the
 * registry's CA certificates or a CA certificate given in issuer_chain_pem
 * that itself verifies to a registry CA (as above; stored with the CRL);
 * it replaces the registry's CRL of the same issuer unless that one is newer
 * (LK_ERR_REG_INVALID "older than the CRL held"). At most LK_REG_CRLS_MAX,
 * each at most LK_REG_CRL_MAX bytes of PEM. A CRL past its nextUpdate still
 * revokes what it lists (failing closed). */
#define LK_REG_CRLS_MAX 20u
#define LK_REG_CRL_MAX (4u * 1024u * 1024u)
typedef struct lk_reg_crl {
    unsigned index;
    char *issuer;                    /* one-line RFC 2253 */
    int64_t this_update, next_update;/* next_update 0 = none */
    uint64_t nrevoked;
    char *pem;
} lk_reg_crl;
void lk_reg_crl_free(lk_reg_crl *c);
lk_err lk_registry_add_crl(lk_registry *reg, const lk_reg_name *name, const char *pem,
                           size_t pem_len, const char *issuer_chain_pem, size_t issuer_chain_len,
                           char *why, size_t why_size);
lk_err lk_registry_list_crls(lk_registry *reg, const lk_reg_name *name,
                             int (*cb)(void *arg, const lk_reg_crl *c), void *arg,
                             char *why, size_t why_size);
lk_err lk_registry_delete_crl(lk_registry *reg, const lk_reg_name *name, unsigned index,
                              char *why, size_t why_size);

/* Just-in-time registration: off unless enabled; max_devices caps the
 * devices JIT may ever register in the registry (counting those since
 * deleted: a flood cannot refill it by deleting), 1..LK_REG_JIT_MAX_LIMIT.
 * lk_registry_set_jit appends LK_CHANGE_REGISTRY in its transaction (the
 * broker and latchkeyd drop their cached setting on it); a refused change
 * (LK_ERR_REG_LIMIT, an unknown registry) writes and appends nothing. */
#define LK_REG_JIT_MAX_DEFAULT 10000u
#define LK_REG_JIT_MAX_LIMIT 10000000u
typedef struct lk_reg_jit {
    int enabled;
    uint64_t max_devices;            /* set: 0 = LK_REG_JIT_MAX_DEFAULT; get: the limit in force */
    uint64_t registered;             /* (get only) devices JIT has registered so far */
} lk_reg_jit;
lk_err lk_registry_get_jit(lk_registry *reg, const lk_reg_name *name, lk_reg_jit *out,
                           char *why, size_t why_size);
lk_err lk_registry_set_jit(lk_registry *reg, const lk_reg_name *name, const lk_reg_jit *jit,
                           char *why, size_t why_size);
/* Register device id just in time, in one transaction: the registry allows
 * JIT (LK_ERR_REG_NOT_FOUND otherwise, as for an unknown device), has registered fewer than max_devices
 * (LK_ERR_REG_LIMIT), cert_pem (the token's x5c leaf) names id as its one
 * subject CN, verifies as "Certificate chains" says through chain_pem with
 * LK_REG_CHECK_LEAF_DATES (LK_ERR_REG_CERT), has never registered a device
 * of this registry before, even one since deleted (LK_ERR_REG_EXISTS,
 * "this certificate registered <id> already"), and id is free
 * (LK_ERR_REG_EXISTS). The device gets the certificate as its one
 * credential (ES256_X509_PEM or RSA_X509_PEM by its key; it expires when
 * the certificate does), jit = 1, and LK_CHANGE_DEVICE is appended. The
 * broker's write: a LK_REG_READONLY handle may make it (not LK_REG_NOWRITE).
 * Order of the checks: JIT on, the count, the CN, the certificate never
 * used, the id free, the chain. */
lk_err lk_registry_jit_register(lk_registry *reg, const lk_reg_name *name, const char *id,
                                const char *cert_pem, size_t cert_len, const char *chain_pem,
                                size_t chain_len, uint64_t *num_id, char *why, size_t why_size);

/* Large imports: the certificate checks outside the write transaction.
 *
 * lk_registry_import_check checks spec as lk_registry_import_add into the
 * registry name would — everything but whether the device id is free —
 * verifying its credentials (chains, CRLs, spec->cert_checks) in no
 * transaction at all (a read snapshot only fetches the registry's CA
 * certificates and CRLs, parsed once for as long as they do not change).
 * When it passes, the handle remembers a digest of the spec's credentials,
 * chain and cert_checks with the trust set they passed against. Then
 * lk_registry_import_begin on the same handle compares that trust set with
 * the one its write transaction sees: when they are the same,
 * lk_registry_import_add skips the certificate verification of a spec it
 * remembers (the same credentials, chain and checks); when a CA certificate
 * or CRL was added or removed in between, or for a spec not checked, it
 * verifies as always. So a caller checks every device first, then imports,
 * and the write lock is held for the inserts alone. The memory is dropped
 * at import_commit / import_abort, and when a check is made against another
 * registry or a changed trust set. Errors: those of import_add's checks
 * (LK_ERR_REG_INVALID, LK_ERR_REG_LIMIT, LK_ERR_CRED_INVALID,
 * LK_ERR_REG_CERT), LK_ERR_REG_NOT_FOUND for the registry, LK_ERR_STATE
 * while an import is open on the handle, LK_ERR_NOMEM. */
lk_err lk_registry_import_check(lk_registry *reg, const lk_reg_name *name,
                                const lk_reg_device_spec *spec, char *why, size_t why_size);

/* lk_registry_import_check of specs[0..n) at once, on up to threads
 * threads (0 = one per online CPU; at most LK_REG_CHECK_THREADS_MAX): the
 * trust set is read once, every spec is checked exactly as
 * lk_registry_import_check checks it, and each that passes is remembered
 * as it remembers one. errs[i] gets spec i's verdict (LK_OK or its
 * refusal) and whys[i] its reason (malloc'd, the caller frees it; NULL for
 * LK_OK). Returns LK_OK when every spec got its verdict, whether or not
 * some were refused; otherwise (LK_ERR_ARG, LK_ERR_REG_NOT_FOUND for the
 * registry, LK_ERR_STATE while an import is open on the handle,
 * LK_ERR_NOMEM, the database's errors) why says why and every whys[i] is
 * NULL. The handle is used by the calling thread only; the threads share
 * only the registry's CA certificates and CRLs, read-only. */
#define LK_REG_CHECK_THREADS_MAX 8u
lk_err lk_registry_import_check_many(lk_registry *reg, const lk_reg_name *name,
                                     const lk_reg_device_spec *specs, size_t n, unsigned threads,
                                     lk_err *errs, char **whys, char *why, size_t why_size);

/* A staged import of devices: lk_registry_import_begin, except that the
 * write lock is not held from begin to commit. import_add writes each
 * device (checked as import_add always does, against the trust set of
 * begin) under a hidden staging registry that no name reaches and no
 * listing shows, in write transactions of at most 500 devices between
 * which the broker's writes get in; nothing is in the change feed yet.
 * import_commit then moves every staged device into the registry and
 * appends their LK_CHANGE_DEVICE in one short transaction — refused, with
 * nothing written, when the registry was deleted, its CA certificates or
 * CRLs changed, or a device of one of the ids was created meanwhile
 * (LK_ERR_REG_NOT_FOUND, LK_ERR_STATE, LK_ERR_REG_EXISTS). import_abort,
 * and any failure, removes the staging registry. import_bind is refused
 * (LK_ERR_STATE). A process that dies mid-import leaves its staging
 * registry ("~import-..."), invisible, holding the chunks it wrote; the
 * next import_begin_staged of the same registry removes every staging
 * registry of it that has had no device added for over 600 seconds (so a
 * live import idle that long has its commit refused, LK_ERR_STATE,
 * "removed as abandoned", writing nothing). Other errors: those of
 * import_begin. */
lk_err lk_registry_import_begin_staged(lk_registry *reg, const lk_reg_name *name, char *why,
                                       size_t why_size);

#ifdef __cplusplus
}
#endif
#endif /* LK_REG_PROVISION_H */
