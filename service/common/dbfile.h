/*
 * dbfile.h — making the service's SQLite files (the registry's database, the
 * delivery spool): the directory of a path, and the exclusive create with a
 * mode and, by root, the directory's owner. Internal: compiled into each
 * library that uses it (lk_dbfile_obj), so that the spool and the registry
 * share it without either depending on the other's internals, and exported
 * by neither.
 */
#ifndef LK_SERVICE_DBFILE_H
#define LK_SERVICE_DBFILE_H

#include <stddef.h>
#include <sys/types.h>

/* The directory that holds path ("." when none is named; "/" for a file in
 * the root), cut to size. */
void lk_dbfile__dir_of(const char *path, char *dir, size_t size);

/* Creates the missing file path, empty: O_EXCL | O_NOFOLLOW (never through a
 * link, never another's file), with mode (the umask may take some away; with
 * force_mode it is set to mode whatever the umask; in a setgid directory the
 * group is given the owner's rights and the mode is always set); created by
 * root, it is given its directory's owner and group unless those are root's.
 * 0: created, or it appeared meanwhile (another process made it).
 * -1 with errno set: *made is 0 when nothing was created (the open failed),
 * 1 when it was created but its mode or owner could not be set (it has been
 * removed again). */
int lk_dbfile__create(const char *path, mode_t mode, int force_mode, int *made);

#endif
