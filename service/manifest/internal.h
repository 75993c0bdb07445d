/*
 * The manifest library's parts (manifest.c: the signature and the file;
 * lines.c: the header line, each device line and the registry import;
 * manifest.c calls into lines.c, never the other way).
 */
#ifndef LK_MANIFEST_INTERNAL_H
#define LK_MANIFEST_INTERNAL_H

#include <jansson.h>

#include "latchkey/lk_manifest.h"

/* 0 when o's members are all among names (NULL-terminated), else -1 and
 * *bad the first that is not. */
int lk_manifest__only(json_t *o, const char *const *names, const char **bad);

/* Steps 3-5 of lk_manifest.h on a file whose signature was verified: batch
 * and devices are what it signed. Fills r (results, counts, why); returns
 * r's error. */
lk_err lk_manifest__devices(lk_registry *reg, const lk_reg_name *name, const char *data, size_t len,
                            const char *batch, uint64_t devices, unsigned flags, lk_manifest_report *r);

#endif
