/*
 * `latchkey devices import --manifest` and `registries signers|crls`
 * (cmd_manifest.c), as cmd_import.c and cmd_registries.c call them.
 */
#ifndef LK_TOOL_MANIFEST_H
#define LK_TOOL_MANIFEST_H

#include "admin.h"

/* Import (or with dry, check) the signed manifest at path against a's
 * registry (resolved, not yet opened); sig_path NULL = path + ".jws".
 * Prints the per-device report; returns an exit code. */
int manifest_import_run(struct admin *a, const char *path, const char *sig_path, int dry);
/* `registries signers ...` (kind 0) or `registries crls ...` (kind 1):
 * argv[0] is "signers"/"crls". */
int cmd_registries_trust(int argc, char **argv, int kind);

#endif
