/* Shared helpers for the cmocka unit tests. */
#ifndef LK_TEST_H
#define LK_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* Path of a file in the repository's tests/vectors/ (an absolute path fixed
 * at build time, LK_TEST_VECTORS_DIR); static buffer. */
const char *lk_test_vector_path(const char *file);

/* A fresh temporary directory (mkdtemp under $TMPDIR), removed with its
 * contents by lk_test_rmtree. Returns a malloc'd path. */
char *lk_test_tmpdir(void);
void lk_test_rmtree(const char *path);

/* Read a whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *lk_test_read_file(const char *path, size_t *len);

/* A deterministic generator (splitmix64) for reproducible "random" inputs. */
uint64_t lk_test_rand64(uint64_t *state);
void lk_test_rand_bytes(uint64_t *state, uint8_t *out, size_t len);

/* Decode exactly 2*out_size hex digits into out; 0 on success, -1 on error. */
int lk_test_hex2bin(const char *hex, uint8_t *out, size_t out_size);

/* Reference base64url (RFC 4648 §5, no padding) built on OpenSSL's
 * EVP_EncodeBlock/EVP_DecodeBlock, independent of the code under test.
 * encode: malloc'd NUL-terminated string. decode: malloc'd bytes (at least one
 * byte allocated), NULL if in is not valid (lenient about trailing bits). */
char *lk_test_b64url_ref_encode(const uint8_t *in, size_t len);
uint8_t *lk_test_b64url_ref_decode(const char *in, size_t len, size_t *out_len);

/* 1 if all n bytes at p equal v. */
int lk_test_all_bytes(const void *p, size_t n, uint8_t v);

#endif
