/* harness.h — what alloc_fail.c shares with its broker stand-in
 * (plugin_paths.c). */
#ifndef LK_HARNESS_H
#define LK_HARNESS_H

#include <stddef.h>
#include "latchkey/lk_registry.h"

extern const lk_reg_name H_NAME;   /* the test registry */
extern char *h_es256_pem;          /* a device key (public PEM) ... */
extern char *h_rsa_pem;
extern char h_dir[];               /* the run's scratch directory */

/* A token of the key (ES256 or RS256) for audience "my-project",
 * valid from fa_now; bad = its signature altered. Malloc'd. */
char *h_token(int rs256, int bad);
/* Every row of every table as text, rows sorted (malloc'd), or "" when
 * there is no file. */
char *h_dump(const char *path);
/* Copy a file; remove a database with its -wal and -shm. */
void h_copy_file(const char *from, const char *to);
void h_remove_db(const char *path);
void h_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* The plugin's paths (plugin_paths.c). */
void plugin_paths(void);

#endif
