/*
 * lk_softstore.h — the software key store: a secure-element backend whose
 * private keys live in one file on disk.
 *
 * FOR DEVELOPMENT AND SIMULATION ONLY. The file holds private keys in the
 * clear, protected by nothing but its permissions; anyone who can read it
 * can impersonate every device in it. Production devices keep their keys in
 * a secure element (PKCS#11 backend, lk_pkcs11.h).
 *
 * The file (format in docs/keystore.md) must be mode 0600 or stricter and
 * owned by the caller; it is rewritten atomically (temporary file, fsync,
 * rename) under an advisory lock, so a crash leaves the old or the new
 * store, and two processes adding keys at once both keep theirs. A store
 * holds many keys, named by the key reference given to the lk_se calls:
 * 1–255 characters of [A-Za-z0-9._+~%-] (the IoT Core device-id alphabet).
 *
 * Linux (POSIX + OpenSSL 3). Not thread-safe: one store per thread.
 */
#ifndef LK_SOFTSTORE_H
#define LK_SOFTSTORE_H

#include <stddef.h>
#include "lk_error.h"
#include "lk_se.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_softstore lk_softstore;

#define LK_SOFTSTORE_CREATE 1u     /* create an empty store if none exists */
#define LK_SOFTSTORE_DEFER_SAVE 2u /* generate() keeps keys in memory until
                                      lk_softstore_save(): for bulk creation */
#define LK_SOFTSTORE_CREATE_ON_WRITE 4u /* a missing store opens empty, and its
                                      file is first written with the first key
                                      (generate, or lk_softstore_save): a
                                      refused or failed generate leaves no empty
                                      store behind. Wins over CREATE. */
#define LK_SOFTSTORE_NAME_MAX 255u

/*
 * Open the store at path. Errors: LK_ERR_STORE_MISSING (no file and no
 * LK_SOFTSTORE_CREATE), LK_ERR_FILE_UNUSABLE (a symbolic link, a directory,
 * FIFO or other non-regular file, permission denied), LK_ERR_IO (the system
 * failed to read it, or to create it), LK_ERR_STORE_PERMS (group/other bits set,
 * or not owned by the caller), LK_ERR_STORE_FOREIGN (not a latchkey store, or
 * a newer format), LK_ERR_STORE_CORRUPT (truncated, bad checksum, bad entry).
 * On failure *out is NULL.
 */
lk_err lk_softstore_open(const char *path, unsigned flags, lk_softstore **out);

/* Wipe every key held in memory and free the store. NULL is a no-op. */
void lk_softstore_close(lk_softstore *store);

/* The secure-element view of the store: generate, public_key, sign_digest,
 * random (OpenSSL's DRBG). Valid until lk_softstore_close. */
lk_se lk_softstore_se(lk_softstore *store);

/* Write keys generated under LK_SOFTSTORE_DEFER_SAVE (merging with keys
 * other processes added meanwhile). A no-op when nothing is pending. */
lk_err lk_softstore_save(lk_softstore *store);

/* Number of keys, and the name/algorithm of the i-th (in file order). */
size_t lk_softstore_count(const lk_softstore *store);
lk_err lk_softstore_entry(const lk_softstore *store, size_t i,
                          const char **name, lk_alg *alg);

#ifdef __cplusplus
}
#endif
#endif /* LK_SOFTSTORE_H */
