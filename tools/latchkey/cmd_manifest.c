/*
 * latchkey devices import --manifest F.jsonl [--signature F.jsonl.jws] [--dry-run]
 * latchkey registries signers add|list|delete
 * latchkey registries crls add|list|delete
 *
 * A factory's signed manifest imported whole or not at all (lk_manifest.h
 * decides; this prints its report), and what the import trusts: the
 * manufacturers' keys and the CAs' revocation lists. Each either way: the
 * registry file (--db) or latchkeyd (--api: devices:importManifest,
 * .../manifestSigners, .../crls; regops_trust.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "latchkey/lk_manifest.h"
#include "admin.h"
#include "cli.h"
#include "manifest.h"
#include "regops.h"

/* ---- devices import --manifest ---- */

static json_t *report_json(const lk_manifest_report *r, int dry)
{
    json_t *j = json_object(), *a = json_array();
    if (j == NULL || a == NULL) {
        json_decref(j);
        json_decref(a);
        return NULL;
    }
    for (size_t i = 0; i < r->nresults; i++) {
        const lk_manifest_result *x = &r->results[i];
        json_t *o = json_pack("{s:I,s:s?,s:s}", "line", (json_int_t)x->line, "deviceId", x->device_id, "result",
                              x->err == LK_OK ? "ok" : "refused");
        if (o == NULL)
            continue;
        if (x->err != LK_OK) {
            json_object_set_new(o, "error", json_string(lk_strerror(x->err)));
            json_object_set_new(o, "reason", json_string(x->why ? x->why : ""));
        } else if (x->num_id != 0) {
            char n[24];
            snprintf(n, sizeof n, "%llu", (unsigned long long)x->num_id);
            json_object_set_new(o, "numId", json_string(n));
        }
        json_array_append_new(a, o);
    }
    json_object_set_new(j, "imported", json_integer(r->imported ? (json_int_t)r->ndevices : 0));
    json_object_set_new(j, "dryRun", json_boolean(dry));
    json_object_set_new(j, "accepted", json_boolean(r->err == LK_OK));
    json_object_set_new(j, "devices", json_integer((json_int_t)r->ndevices));
    json_object_set_new(j, "refused", json_integer((json_int_t)r->nrefused));
    if (r->batch)
        json_object_set_new(j, "batch", json_string(r->batch));
    if (r->manufacturer)
        json_object_set_new(j, "manufacturer", json_string(r->manufacturer));
    if (r->signer)
        json_object_set_new(j, "signer", json_string(r->signer));
    if (r->err != LK_OK) {
        json_object_set_new(j, "error", json_string(lk_strerror(r->err)));
        json_object_set_new(j, "reason", json_string(r->why));
    }
    json_object_set_new(j, "results", a);
    return j;
}

int manifest_import_run(struct admin *a, const char *path, const char *sig_path, int dry)
{
    char jws_default[4096];
    uint8_t *jws = NULL;
    size_t jws_len = 0;
    lk_manifest_report r;
    int rc, fd;
    struct stat st;
    void *map = NULL;

    if (strcmp(path, "-") == 0)
        return tool_usage_error("%s: --manifest takes a file (its size and SHA-256 are checked), not -", a->cmd);
    if (sig_path == NULL) {
        if ((size_t)snprintf(jws_default, sizeof jws_default, "%s.jws", path) >= sizeof jws_default)
            return tool_usage_error("%s: the manifest's path is too long", a->cmd);
        sig_path = jws_default;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        tool_error(a->cmd, LK_ERR_IO, "manifest %s: %s", path, strerror(e));
        return tool_file_exit(e);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        tool_error(a->cmd, LK_ERR_IO, "manifest %s: not a regular file", path);
        return EXIT_FILE;
    }
    /* Mapped, not read: a 100,000-device manifest is ~150 MB, and the
     * library walks it twice. */
    if (st.st_size > 0 && (map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
        int e = errno;
        close(fd);
        tool_error(a->cmd, LK_ERR_IO, "manifest %s: %s", path, strerror(e));
        return EXIT_FAIL;
    }
    close(fd);
    rc = admin_read_file(a, "manifest signature", sig_path, LK_MANIFEST_JWS_MAX, LK_ERR_REG_LIMIT, &jws, &jws_len);
    if (rc == EXIT_OK)
        rc = admin_open(a, ADMIN_OPEN_WRITE);
    if (rc != EXIT_OK) {
        if (map != NULL)
            munmap(map, (size_t)st.st_size);
        free(jws);
        return rc;
    }
    char why[512];
    lk_err err = rop_import_manifest(a, &a->name, map ? map : "", (size_t)st.st_size, (const char *)jws, jws_len, dry,
                                     &r, why, sizeof why);
    if (map != NULL)
        munmap(map, (size_t)st.st_size);
    free(jws);

    if (a->json) {
        json_t *j = report_json(&r, dry);
        rc = j ? out_json(j) : EXIT_FAIL;
    } else {
        /* One line per device: a person reads the refusals; ok lines too
         * (the brief: a report per device), refusals on standard error. */
        for (size_t i = 0; i < r.nresults; i++) {
            const lk_manifest_result *x = &r.results[i];
            if (x->err == LK_OK)
                printf("line %lu\t%s\tok\n", x->line, x->device_id ? x->device_id : "-");
            else
                printf("line %lu\t%s\trefused: %s\n", x->line, x->device_id ? x->device_id : "-",
                       x->why ? x->why : lk_strerror(x->err));
        }
        if (err == LK_OK)
            printf("%s %llu devices of batch [%s] (manufacturer %s, signed by %s) %s registry [%s].\n",
                   dry ? "Checked" : "Imported", (unsigned long long)r.ndevices, r.batch ? r.batch : "?",
                   r.manufacturer ? r.manufacturer : "?", r.signer ? r.signer : "?", dry ? "for" : "into",
                   a->registry);
    }
    if (err != LK_OK) {
        tool_error(a->cmd, err, "%s%s", why, strstr(why, "nothing was imported") == NULL ? "; nothing was imported" : "");
        rc = r.nrefused > 0 ? EXIT_IMPORT : tool_registry_exit_code(err);
    }
    lk_manifest_report_free(&r);
    return rc;
}

/* ---- registries signers | crls ---- */

static const char signers_usage[] =
    "usage: latchkey [--db FILE | --api URL] registries signers add --label L --path KEY.pem --registry R --project P --region L\n"
    "       latchkey [--db FILE] registries signers list --registry R ...\n"
    "       latchkey [--db FILE] registries signers delete INDEX --registry R ...\n"
    "\n"
    "The manufacturers' public keys (PEM, P-256 or RSA >= 2048, at most 10) whose signature on a\n"
    "factory manifest the registry trusts ('devices import --manifest'). A signer's fingerprint is\n"
    "the SHA-256 of its DER SubjectPublicKeyInfo: the manifest signature's kid.\n";

static const char crls_usage[] =
    "usage: latchkey [--db FILE | --api URL] registries crls add --path CRL.pem [--issuer-chain CHAIN.pem] --registry R ...\n"
    "       latchkey [--db FILE] registries crls list --registry R ...\n"
    "       latchkey [--db FILE] registries crls delete INDEX --registry R ...\n"
    "\n"
    "Certificate revocation lists (PEM) of the registry's CAs, or of an intermediate CA whose\n"
    "certificate (--issuer-chain, verifying to a registry CA) is stored with it. A CRL replaces\n"
    "the one of the same issuer unless that is newer; one past its nextUpdate still revokes.\n"
    "A device certificate revoked by a CRL is refused at import, creation and JIT registration.\n";

enum { OPT_PATH_M = OPT_FIRST_OWN + 40, OPT_LABEL, OPT_ISSUER_CHAIN };

struct lister {
    struct admin *a;
    struct out_table *t;
    json_t *arr;
    int failed;
};

static int signer_cb(void *arg, const lk_reg_signer *s)
{
    struct lister *l = arg;
    char fp[65], idx[16], created[32];
    tool_hex(s->fingerprint, 32, fp);
    snprintf(idx, sizeof idx, "%u", s->index);
    snprintf(created, sizeof created, "%lld", (long long)s->created);
    if (l->arr != NULL) {
        json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:I}", "index", (int)s->index, "label", s->label ? s->label : "",
                              "keyType", s->key_type ? s->key_type : "", "fingerprint", fp, "publicKey",
                              s->pem ? s->pem : "", "created", (json_int_t)s->created);
        if (o == NULL || json_array_append_new(l->arr, o) != 0)
            l->failed = 1;
    } else {
        const char *row[4] = {idx, s->label ? s->label : "", s->key_type ? s->key_type : "", fp};
        if (out_table_row(l->t, row) != 0)
            l->failed = 1;
    }
    return l->failed;
}

static int crl_cb(void *arg, const lk_reg_crl *c)
{
    struct lister *l = arg;
    char idx[16], n[24], tu[24], nu[24];
    snprintf(idx, sizeof idx, "%u", c->index);
    snprintf(n, sizeof n, "%llu", (unsigned long long)c->nrevoked);
    snprintf(tu, sizeof tu, "%lld", (long long)c->this_update);
    snprintf(nu, sizeof nu, "%lld", (long long)c->next_update);
    if (l->arr != NULL) {
        json_t *o = json_pack("{s:i,s:s,s:I,s:I,s:I}", "index", (int)c->index, "issuer", c->issuer ? c->issuer : "",
                              "thisUpdate", (json_int_t)c->this_update, "nextUpdate", (json_int_t)c->next_update,
                              "revoked", (json_int_t)c->nrevoked);
        if (o == NULL || json_array_append_new(l->arr, o) != 0)
            l->failed = 1;
    } else {
        const char *row[5] = {idx, c->issuer ? c->issuer : "", tu, nu, n};
        if (out_table_row(l->t, row) != 0)
            l->failed = 1;
    }
    return l->failed;
}

/* kind 0 signers, 1 crls. */
static int trust_cmd(struct admin *a, int kind, const char *sub, int argc, char **argv)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
                                         {"path", required_argument, 0, OPT_PATH_M},
                                         {"label", required_argument, 0, OPT_LABEL},
                                         {"issuer-chain", required_argument, 0, OPT_ISSUER_CHAIN},
                                         {0, 0, 0, 0}};
    static const char *const sheads[] = {"INDEX", "LABEL", "KEY_TYPE", "FINGERPRINT"};
    static const char *const cheads[] = {"INDEX", "ISSUER", "THIS_UPDATE", "NEXT_UPDATE", "REVOKED"};
    const char *path = NULL, *label = NULL, *chain = NULL;
    long long index = -1;
    char why[512] = "";
    int c, rc;
    lk_err err;
    int add = strcmp(sub, "add") == 0, del = strcmp(sub, "delete") == 0, list = strcmp(sub, "list") == 0;

    if (!add && !del && !list)
        return tool_usage_error("%s: unknown subcommand '%s' (add, list, delete)", a->cmd, sub);
    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_PATH_M && add)
            path = optarg;
        else if (c == OPT_LABEL && add && kind == 0)
            label = optarg;
        else if (c == OPT_ISSUER_CHAIN && add && kind == 1)
            chain = optarg;
        else
            return tool_usage_error("%s: an option not of this command", a->cmd);
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (del) {
        if (optind >= argc || tool_parse_i64(argv[optind], 0, 1000000, &index) != 0)
            return tool_usage_error("%s: give the INDEX (as '... list' shows)", a->cmd);
        optind++;
    }
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    if (add && (path == NULL || (kind == 0 && label == NULL)))
        return tool_usage_error("%s: %s required", a->cmd, kind == 0 ? "--label and --path are" : "--path is");
    if ((rc = admin_resolve(a, NULL, 1, NULL)) != EXIT_OK)
        return rc;
    if (add) {
        uint8_t *pem = NULL, *cpem = NULL;
        size_t len = 0, clen = 0;
        unsigned idx = 0;
        rc = admin_read_file(a, kind == 0 ? "signer key" : "CRL", path, kind == 0 ? LK_CRED_PEM_MAX : LK_REG_CRL_MAX,
                             LK_ERR_REG_LIMIT, &pem, &len);
        if (rc == EXIT_OK && chain != NULL)
            rc = admin_read_file(a, "issuer chain", chain, 4 * LK_CRED_PEM_MAX, LK_ERR_REG_LIMIT, &cpem, &clen);
        if (rc == EXIT_OK)
            rc = admin_open(a, ADMIN_OPEN_WRITE);
        if (rc != EXIT_OK) {
            free(pem);
            free(cpem);
            return rc;
        }
        err = kind == 0 ? rop_add_signer(a, &a->name, label, (const char *)pem, len, &idx, why, sizeof why)
                        : rop_add_crl(a, &a->name, (const char *)pem, len, (const char *)cpem, clen, why, sizeof why);
        free(pem);
        free(cpem);
        if (err != LK_OK)
            return admin_fail(a, err, why);
        if (a->json)
            return out_json(kind == 0 ? json_pack("{s:i}", "index", (int)idx) : json_object());
        if (kind == 0)
            printf("Added manifest signer [%u] (%s) to registry [%s].\n", idx, label, a->registry);
        else
            printf("Added the CRL to registry [%s].\n", a->registry);
        return EXIT_OK;
    }
    if ((rc = admin_open(a, del ? ADMIN_OPEN_WRITE : ADMIN_OPEN_READ)) != EXIT_OK)
        return rc;
    if (del) {
        err = rop_delete_trust(a, &a->name, kind == 1, (unsigned)index, why, sizeof why);
        if (err != LK_OK)
            return admin_fail(a, err, why);
        if (a->json)
            return out_json(json_object());
        printf("Deleted %s [%lld] of registry [%s].\n", kind == 0 ? "manifest signer" : "CRL", index, a->registry);
        return EXIT_OK;
    }
    struct lister l = {a, NULL, NULL, 0};
    if (a->json)
        l.arr = json_array();
    else
        l.t = kind == 0 ? out_table_new(4, sheads) : out_table_new(5, cheads);
    if (l.arr == NULL && l.t == NULL)
        return admin_fail(a, LK_ERR_NOMEM, NULL);
    err = kind == 0 ? rop_list_signers(a, &a->name, signer_cb, &l, why, sizeof why)
                    : rop_list_crls(a, &a->name, crl_cb, &l, why, sizeof why);
    if (err != LK_OK || l.failed) {
        json_decref(l.arr);
        out_table_free(l.t);
        return admin_fail(a, err != LK_OK ? err : LK_ERR_NOMEM, why);
    }
    return a->json ? out_json(l.arr) : out_table_print(l.t);
}

int cmd_registries_trust(int argc, char **argv, int kind)
{
    struct admin a;
    char cmd[64];
    const char *usage = kind == 0 ? signers_usage : crls_usage;
    int rc;
    if ((rc = admin_group_usage(argc, argv, 1, usage)) != -1)
        return rc;
    snprintf(cmd, sizeof cmd, "registries %s %s", kind == 0 ? "signers" : "crls", argv[1]);
    admin_init(&a, cmd, usage);
    a.remote_ok = 1;
    rc = trust_cmd(&a, kind, argv[1], argc - 1, argv + 1);
    admin_close(&a);
    return out_finish(rc);
}
