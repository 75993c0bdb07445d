/*
 * `latchkey setup` (cmd_setup.c): what its parts share. setup_files.c
 * writes files and directories under --root the way the contract of an
 * installed system says (owners, modes, atomically, never through a link);
 * setup_tls.c checks, installs or makes the broker's certificate.
 *
 * Every function prints its own step ("created", "kept", "installed",
 * "checked") or its error (the file and the reason) and returns an exit
 * code (exit.h).
 */
#ifndef LK_TOOL_SETUP_H
#define LK_TOOL_SETUP_H

#include <stddef.h>
#include <sys/types.h>

#define SETUP_PATH_MAX 4096
#define SETUP_FILE_MAX (1u << 20) /* a template, a certificate or a key: far less */
#define SETUP_TEMPLATES_MAX 8

/* The installed system's paths (docs/operations.md), under --root. */
#define SETUP_ETC "/etc/latchkey"
#define SETUP_VAR "/var/lib/latchkey"
#define SETUP_CRT SETUP_ETC "/server.crt"
#define SETUP_KEY SETUP_ETC "/server.key"
#define SETUP_CA SETUP_ETC "/ca.crt"
#define SETUP_TEST_CA_KEY SETUP_ETC "/test-ca.key"
#define SETUP_REGISTRY SETUP_VAR "/registry.db"
#define SETUP_SPOOL SETUP_VAR "/spool.db"
#define SETUP_METRICS SETUP_VAR "/metrics"

struct setup {
    const char *root; /* "" for / */
    const char *host;
    const char *cert, *key; /* --cert, --key */
    int test_ca, force, spool, metrics;
    long port, fallback; /* fallback 0: --no-fallback-port */
    const char *registry, *project, *region;
    const char *plugin;
    const char *tmpl[SETUP_TEMPLATES_MAX];
    unsigned ntmpl;
    int is_root;   /* running as root: files are chowned */
    int has_group; /* group latchkey exists (in --root's /etc/group) */
    gid_t gid;
    int daemon; /* latchkeyd.conf kept or written (its template is installed) */
};

/* root + abs into out; -1 (printed) when too long. */
int setup_path(const struct setup *s, char *out, size_t n, const char *abs);
/* "VERB     PATH  DETAIL" on standard output. */
void setup_say(const char *verb, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "latchkey: setup: PATH: REASON" on standard error; returns rc. */
int setup_fail(int rc, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The directory abs (under root) with mode and, when group, owner
 * root:latchkey; its missing parents are made 0755. An existing one is
 * kept (a note when its mode differs). */
int setup_dir(const struct setup *s, const char *abs, mode_t mode, int group);
/* Write data as abs (under root): a new file beside it (O_EXCL|O_NOFOLLOW,
 * 0600), owner root:latchkey when group, mode, synced, renamed over abs. */
int setup_write(const struct setup *s, const char *abs, const void *data, size_t len, mode_t mode, int group);
/* The whole of path (at most max bytes; not through a link when nofollow)
 * in *out (malloc'd, NUL-terminated). 0, or an errno (EFBIG over max). */
int setup_read(const char *path, size_t max, int nofollow, char **out, size_t *len);
/* abs holds data: "kept" when it does already; "created" when missing;
 * when it differs, refused (EXIT_FILE) unless force, which saves the old
 * one as abs.bak first. */
int setup_file(const struct setup *s, const char *abs, const char *data, size_t len, mode_t mode, int group);

/* The broker's certificate and key (setup_tls.c): --cert/--key checked and
 * installed, or those in /etc/latchkey checked and kept, or with --test-ca
 * a test CA and a certificate for --host made. */
int setup_tls(const struct setup *s);

#endif
