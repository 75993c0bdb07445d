/*
 * latchkey devices import FILE|- --registry R --project P --region L
 * latchkey registries import FILE|- --project P --region L
 * latchkey devices import FILE|- --bindings PAIRS ... / devices gateways import PAIRS ...
 * latchkey devices import --manifest F.jsonl ... (cmd_manifest.c)
 *
 * Many devices (or registries) in one transaction, from what IoT Core's
 * tools printed: `gcloud iot devices list/describe --format json` (a JSON
 * array, or one pretty-printed object after another) or JSON lines
 * (records.c tells the form). Every field IoT Core had is known: the
 * settable ones are stored, some output-only ones are kept (numId, the
 * config's version and cloudUpdateTime), the other output-only ones are
 * ignored; any other field is refused (docs/cli.md, docs/registry.md).
 *
 * Every refused record is reported (the first SHOWN_MAX on standard error,
 * then a count); if any record is refused nothing is imported. A crash or
 * kill before the commit leaves the registry as it was (the library's
 * transaction). --skip-existing skips a record whose id exists already (a
 * re-run of a batch). What is not a refusal — a numId given a new value, a
 * record skipped, an expired credential, a converted key, settings that
 * are stored but not yet in effect — is said after a successful commit.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "admin.h"
#include "import.h"
#include "records.h"
#include "manifest.h"

static const char devices_import_usage[] =
    "usage: latchkey [--db FILE] devices import FILE|- --registry R --project P --region L\n"
    "                [--skip-existing] [--format text|json] [--busy-timeout MS]\n"
    "       latchkey [--db FILE | --api URL] devices import --manifest F.jsonl [--signature F.jsonl.jws]\n"
    "                [--dry-run] --registry R --project P --region L [--format text|json]\n"
    "\n"
    "Creates every device of FILE (or standard input) in one transaction: either all of them\n"
    "or, if any record is refused, none. Refused records are reported (where, device id,\n"
    "reason): the first 20 on standard error, then their count. Progress is shown on a\n"
    "terminal only.\n"
    "\n"
    "FILE is what 'gcloud iot devices list --format json' (a JSON array) or 'gcloud iot devices\n"
    "describe --format json' (objects one after another) printed, or JSON lines (one device per\n"
    "line; jq -c '.[]' makes them from an array); the form is told from the first character.\n"
    "UTF-8; at most 1 MiB a record, 1,000,000 records and 4 GiB. A device is IoT Core's Device:\n"
    "  {\"id\": \"dev-1\",                                   required\n"
    "   \"numId\": \"2820826361193189\",                     kept unless another device has it\n"
    "   \"credentials\": [{\"publicKey\": {\"format\": \"ES256_PEM\", \"key\": \"-----BEGIN ...\"},\n"
    "                    \"expirationTime\": \"2030-01-01T00:00:00Z\"}],   at most 3\n"
    "   \"blocked\": false, \"metadata\": {\"key\": \"value\"},\n"
    "   \"config\": {\"version\": \"7\", \"cloudUpdateTime\": \"...\", \"binaryData\": \"BASE64\"},\n"
    "   \"logLevel\": \"ERROR\", \"gatewayConfig\": {\"gatewayType\": \"GATEWAY\",\n"
    "                    \"gatewayAuthMethod\": \"ASSOCIATION_ONLY\", ...}}\n"
    "The config keeps its version (an HTTP device's localVersion stays valid). A credential may\n"
    "also be flat ({\"format\", \"key\", \"expirationTime\"}); an RSA PUBLIC KEY (PKCS#1) is\n"
    "converted to a PUBLIC KEY. The output-only fields (name, state, last*Time,\n"
    "lastErrorStatus, config.deviceAckTime, ...) are ignored; any other field is refused.\n"
    "\n"
    "  --manifest F.jsonl  a factory's signed manifest instead of FILE (docs/provisioning.md):\n"
    "                    its signature (--signature, default F.jsonl.jws) by a signer the registry\n"
    "                    trusts, then every device line and certificate chain; all or nothing,\n"
    "                    one report line per device. --dry-run checks and writes nothing\n"
    "  --skip-existing   a device whose id exists in the registry already is skipped (and\n"
    "                    counted), not refused: re-runs a batch that was imported before\n"
    "  --bindings PAIRS  gateway bindings, in the same transaction, after the devices: records\n"
    "                    {\"gatewayId\": \"G\", \"deviceId\": \"D\"} (ids, or numIds of this\n"
    "                    registry) in the same three forms; see 'latchkey devices gateways import'\n";

static const char gateways_import_usage[] =
    "usage: latchkey [--db FILE] devices gateways import PAIRS|- --registry R --project P --region L\n"
    "                [--format text|json] [--busy-timeout MS]\n"
    "\n"
    "Binds every pair of PAIRS (or standard input) in one transaction: all of them or, if any is\n"
    "refused, none. A record is IoT Core's bindDeviceToGateway body, {\"gatewayId\": \"G\",\n"
    "\"deviceId\": \"D\"} (ids, or numIds in decimal: snake_case accepted; any other field refused),\n"
    "in a JSON array, objects one after another, or JSON lines. The pairs IoT Core printed:\n"
    "  for g in $(gcloud iot devices list --device-type=gateway --format='value(id)' ...); do\n"
    "    gcloud iot devices gateways list-bound-devices --gateway=$g ... --format=json |\n"
    "      jq -c --arg g \"$g\" '.[] | {gatewayId: $g, deviceId: .id}'\n"
    "  done > pairs.jsonl\n"
    "(give ids: a device's numId may change at its import). Each pair follows the rules of\n"
    "'devices gateways bind': both devices in R, G a gateway, D not, at most 10 gateways per\n"
    "device and 10,000 devices per gateway; a pair bound already is taken as it is. Every refused\n"
    "pair is reported with where and why (the first 20, then a count; --format json: the first\n"
    "1000). 'devices import DEVICES --bindings PAIRS' imports devices and bindings in one.\n";

static const char registries_import_usage[] =
    "usage: latchkey [--db FILE] registries import FILE|- --project P --region L\n"
    "                [--skip-existing] [--format text|json] [--busy-timeout MS]\n"
    "\n"
    "Creates every registry of FILE (or standard input) in project P and region L, in one\n"
    "transaction: all of them or, if any record is refused, none. FILE is what 'gcloud iot\n"
    "registries list|describe --format json' printed (a JSON array or objects one after\n"
    "another), or JSON lines; the form is told from the first character. A registry is IoT\n"
    "Core's DeviceRegistry:\n"
    "  {\"id\": \"reg-1\",                                        required\n"
    "   \"credentials\": [{\"publicKeyCertificate\": {\"format\": \"X509_CERTIFICATE_PEM\",\n"
    "                                             \"certificate\": \"-----BEGIN ...\"}}],\n"
    "   \"eventNotificationConfigs\": [{\"pubsubTopicName\": \"...\", \"subfolderMatches\": \"...\"}],\n"
    "   \"stateNotificationConfig\": {\"pubsubTopicName\": \"...\"},\n"
    "   \"mqttConfig\": {\"mqttEnabledState\": \"MQTT_ENABLED\"},\n"
    "   \"httpConfig\": {\"httpEnabledState\": \"HTTP_ENABLED\"}, \"logLevel\": \"INFO\"}\n"
    "name and x509Details are ignored (the registry is created in P and L); any other field is\n"
    "refused. Each CA certificate is checked as by 'registries credentials create'.\n"
    "Notification configs route (docs/delivery.md) to topics of P only: a topic of the\n"
    "registry's exported project (its name) is moved to P (projects/P/topics/T), with a note.\n"
    "httpConfig is stored and shown, but not yet in effect; logLevel is the broker's (docs/plugin.md, \"Logs\").\n"
    "\n"
    "  --skip-existing   a registry that exists already is skipped (and counted), not refused\n";

enum { OPT_SKIP_EXISTING = OPT_FIRST_OWN, OPT_BINDINGS, OPT_MANIFEST, OPT_SIGNATURE, OPT_DRY_RUN };


/* ---- ids seen in this input ---- */

static uint64_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The line where id appeared first (0: it did not; it is added). -1: out of
 * memory. */
static long seen_check(struct seen *s, const char *id, unsigned long line)
{
    size_t i;
    if (s->n * 2 >= s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024, j;
        char **ni = calloc(nc, sizeof *ni);
        unsigned long *nl = calloc(nc, sizeof *nl);
        if (ni == NULL || nl == NULL) {
            free(ni);
            free(nl);
            return -1;
        }
        for (j = 0; j < s->cap; j++)
            if (s->ids[j] != NULL) {
                size_t k = (size_t)hash_id(s->ids[j]) & (nc - 1);
                while (ni[k] != NULL)
                    k = (k + 1) & (nc - 1);
                ni[k] = s->ids[j];
                nl[k] = s->lines[j];
            }
        free(s->ids);
        free(s->lines);
        s->ids = ni;
        s->lines = nl;
        s->cap = nc;
    }
    for (i = (size_t)hash_id(id) & (s->cap - 1); s->ids[i] != NULL; i = (i + 1) & (s->cap - 1))
        if (strcmp(s->ids[i], id) == 0)
            return (long)s->lines[i];
    if ((s->ids[i] = strdup(id)) == NULL)
        return -1;
    s->lines[i] = line;
    s->n++;
    return 0;
}

static void seen_free(struct seen *s)
{
    size_t i;
    for (i = 0; i < s->cap; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->lines);
    memset(s, 0, sizeof *s);
}

/* Refusals that concern one record; anything else ends the import. */
static int per_record(lk_err err)
{
    switch (err) {
    case LK_ERR_REG_EXISTS: case LK_ERR_REG_INVALID: case LK_ERR_REG_LIMIT: case LK_ERR_REG_CERT:
    case LK_ERR_CRED_INVALID: case LK_ERR_KEY_WEAK: case LK_ERR_ENCODING: case LK_ERR_ARG:
    case LK_ERR_TOO_MANY:
        return 1;
    default:
        return 0;
    }
}

/* The library did not add record id: with --skip-existing, one that exists
 * is skipped; a refusal of this record is reported and counted. Returns
 * what still ends the import, else LK_OK. */
static lk_err not_added(struct import *im, const char *id, lk_err err, const char *why)
{
    if (err == LK_ERR_REG_EXISTS && im->skip_existing) {
        im->nskipped++;
        return note_add(im, &im->skipped, id, 0, 0, "exists already: skipped") != 0 ? LK_ERR_NOMEM : LK_OK;
    }
    if (per_record(err)) {
        refuse(im, id, err, "%s", why[0] ? why : lk_strerror(err));
        return LK_OK;
    }
    return err;
}

/* A binding's gatewayId or deviceId (either spelling): a string, or a
 * numId as a number, into buf; NULL (refused) when absent or not one. */
static const char *pair_id(struct import *im, json_t *o, const char *camel, const char *snake, char *buf,
                           size_t size)
{
    json_t *c = json_object_get(o, camel), *sn = json_object_get(o, snake), *v = c ? c : sn;
    if (c != NULL && sn != NULL) {
        refuse(im, NULL, LK_ERR_REG_INVALID, "both %s and %s", camel, snake);
        return NULL;
    }
    if (json_is_string(v) && json_string_length(v) > 0)
        return json_string_value(v);
    if (json_is_integer(v) && json_integer_value(v) > 0) {
        snprintf(buf, size, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    refuse(im, NULL, LK_ERR_REG_INVALID, "%s is required: a device id, or a numId (IoT Core's "
           "{\"gatewayId\": \"G\", \"deviceId\": \"D\"})", camel);
    return NULL;
}

/* One binding record through the library (in the import's transaction). */
static int add_binding(struct import *im, json_t *o)
{
    static const char *const known[] = {"gatewayId", "gateway_id", "deviceId", "device_id"};
    char gbuf[24], dbuf[24], why[512] = "";
    const char *key, *g, *d;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t i;
        for (i = 0; i < 4 && strcmp(key, known[i]) != 0; i++)
            ;
        if (i == 4) {
            refuse(im, NULL, LK_ERR_REG_INVALID, "unknown field '%.64s' in a binding (gatewayId, deviceId)", key);
            return EXIT_OK;
        }
    }
    if ((g = pair_id(im, o, "gatewayId", "gateway_id", gbuf, sizeof gbuf)) == NULL ||
        (d = pair_id(im, o, "deviceId", "device_id", dbuf, sizeof dbuf)) == NULL)
        return EXIT_OK;
    lk_err err = lk_registry_import_bind(im->a->reg, g, d, why, sizeof why);
    if (err == LK_OK) {
        im->nbound++;
        return EXIT_OK;
    }
    if (per_record(err) || err == LK_ERR_REG_NOT_FOUND) {
        refuse(im, NULL, err, "binding device '%.255s' to gateway '%.255s': %s", d, g,
               why[0] ? why : lk_strerror(err));
        return EXIT_OK;
    }
    clear_progress(im);
    tool_error(im->a->cmd, err, "%s: %s; nothing was imported", im->where, why[0] ? why : lk_strerror(err));
    return tool_registry_exit_code(err);
}

/* One device or registry record through the library: 0 done (or refused:
 * counted), else an exit code that ends the import. */
static int add_resource(struct import *im, json_t *o)
{
    char why[512] = "";
    lk_err err;
    const char *id;
    int rc;

    if (im->devices) {
        struct dev_rec d;
        uint64_t num = 0;
        long first;
        size_t nexp = im->expired.n, nconv = im->converted.n;
        memset(&d, 0, sizeof d);
        rc = parse_device(im, o, &d);
        if (rc != 0) {
            dev_rec_free(&d);
            return rc == -2 ? admin_fail(im->a, LK_ERR_NOMEM, NULL) : EXIT_OK;
        }
        id = d.spec.id;
        first = seen_check(&im->seen, id, im->rd.rec_line);
        if (first < 0) {
            dev_rec_free(&d);
            return admin_fail(im->a, LK_ERR_NOMEM, NULL);
        }
        if (first > 0) {
            refuse(im, id, LK_ERR_REG_EXISTS, "the id appears twice in the input (first at line %ld)", first);
            notes_truncate(&im->expired, nexp);
            notes_truncate(&im->converted, nconv);
            dev_rec_free(&d);
            return EXIT_OK;
        }
        err = lk_registry_import_add(im->a->reg, &d.spec, &num, why, sizeof why);
        if (err == LK_OK) {
            im->nok++;
            if (d.spec.num_id != 0 && num != d.spec.num_id &&
                note_add(im, &im->numids, id, d.spec.num_id, num, NULL) != 0)
                err = LK_ERR_NOMEM;
        } else {
            err = not_added(im, id, err, why);
        }
        if (num == 0) {
            /* Skipped or refused: its notes say nothing about what is imported. */
            notes_truncate(&im->expired, nexp);
            notes_truncate(&im->converted, nconv);
        }
        dev_rec_free(&d);
    } else {
        struct reg_rec r;
        lk_reg_name name;
        memset(&r, 0, sizeof r);
        rc = parse_registry(im, o, &r);
        if (rc != 0) {
            reg_rec_free(&r);
            return rc == -2 ? admin_fail(im->a, LK_ERR_NOMEM, NULL) : EXIT_OK;
        }
        id = r.id;
        {
            long first = seen_check(&im->seen, id, im->rd.rec_line);
            if (first != 0) {
                reg_rec_free(&r);
                if (first < 0)
                    return admin_fail(im->a, LK_ERR_NOMEM, NULL);
                refuse(im, id, LK_ERR_REG_EXISTS, "the id appears twice in the input (first at line %ld)", first);
                return EXIT_OK;
            }
        }
        name.project = im->a->project;
        name.location = im->a->location;
        name.registry = id;
        err = lk_registry_import_add_registry(im->a->reg, &name, &r.spec, why, sizeof why);
        if (err == LK_OK) {
            im->nok++;
            im->ncerts += r.spec.ncas;
            im->events += r.spec.event_notification_json != NULL;
            im->states += r.spec.state_notification_json != NULL;
            im->https += json_object_get(o, "httpConfig") != NULL;
        } else {
            err = not_added(im, id, err, why);
        }
        reg_rec_free(&r);
    }
    if (err != LK_OK) {
        clear_progress(im);
        tool_error(im->a->cmd, err, "%s: %s; nothing was imported", im->where, why[0] ? why : lk_strerror(err));
        return tool_registry_exit_code(err);
    }
    return EXIT_OK;
}

static int add_record(struct import *im, json_t *o)
{
    return im->bindings ? add_binding(im, o) : add_resource(im, o);
}

/* The notes and notices of a successful import, on standard error. */
static void report_notes(struct import *im)
{
    notes_print(im, &im->numids, "numIds changed");
    notes_print(im, &im->skipped, "skipped");
    notes_print(im, &im->expired, "expired credentials");
    notes_print(im, &im->converted, "converted keys");
    if (im->moved_topics > 0)
        fprintf(stderr, "latchkey: %s: note: %lu notification topic%s of the export's project now name%s "
                        "project %s's (projects/%s/topics/T: a registry routes only to its own project's "
                        "topics; docs/delivery.md)\n",
                im->a->cmd, im->moved_topics, im->moved_topics == 1 ? "" : "s", im->moved_topics == 1 ? "s" : "",
                im->a->name.project, im->a->name.project);
    admin_note_not_in_effect(im->a->cmd, im->https > 0);
}

static json_t *notes_json(const struct notes *ns, int numids)
{
    json_t *a = json_array();
    size_t i;
    for (i = 0; a != NULL && i < ns->n; i++) {
        json_t *e = numids ? json_pack("{s:s,s:o,s:o,s:s}", "id", ns->v[i].id, "requested", out_ju64(ns->v[i].asked),
                                       "assigned", out_ju64(ns->v[i].got), "where", ns->v[i].where)
                           : json_string(ns->v[i].id);
        if (e == NULL || json_array_append_new(a, e) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* Read every record of f (path, for messages) into the open import:
 * EXIT_OK (refusals counted; *broken when the structure ended the reading),
 * or an exit code that ends the import. */
static int read_records(struct import *im, FILE *f, char *buf, const char *path, int *broken)
{
    int r, rc;
    rec_reader_init(&im->rd, f, buf);
    for (;;) {
        json_error_t jerr;
        json_t *o;
        r = rec_next(&im->rd);
        if (r == REC_END)
            break;
        if (im->after_devices) { /* the second file of devices import --bindings */
            char w[sizeof im->where - 10];
            rec_where(&im->rd, w, sizeof w);
            snprintf(im->where, sizeof im->where, "bindings %s", w);
        } else {
            rec_where(&im->rd, im->where, sizeof im->where);
        }
        if (r == REC_BROKEN) {
            /* The structure is broken: nothing after it can be found. */
            if (im->rd.nrec == 0 && im->rd.rec_line == 0)
                snprintf(im->where, sizeof im->where, "%s", path);
            *broken = 1;
            im->always = 1; /* the end of the reading is always shown */
            refuse(im, NULL, LK_ERR_REG_INVALID, "%s; nothing after it was read", im->rd.err);
            im->always = 0;
            break;
        }
        if (r == REC_TOO_LONG) {
            refuse(im, NULL, LK_ERR_REG_LIMIT, "longer than %u bytes, the most a record may hold", REC_MAX);
            continue;
        }
        o = json_loadb(buf, im->rd.len, JSON_REJECT_DUPLICATES, &jerr);
        if (o == NULL) {
            refuse(im, NULL, LK_ERR_REG_INVALID, "not valid JSON: %s (column %d)", jerr.text, jerr.column);
            continue;
        }
        if (!json_is_object(o)) {
            refuse(im, NULL, LK_ERR_REG_INVALID, "not a JSON object (one %s object per record)",
                   im->bindings ? "binding" : im->devices ? "device" : "registry");
            json_decref(o);
            continue;
        }
        rc = add_record(im, o);
        json_decref(o);
        if (rc != EXIT_OK)
            return rc;
        if ((im->rd.nrec & 255u) == 0)
            progress(im, 0);
    }
    if (ferror(f)) {
        clear_progress(im);
        tool_error(im->a->cmd, LK_ERR_IO, "%s: read error; nothing was imported", path);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

static FILE *open_input(const struct admin *a, const char *path, int *rc)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        tool_error(a->cmd, LK_ERR_IO, "import file %s: %s", path, strerror(e));
        *rc = e == ENOENT || e == ENOTDIR ? EXIT_NOT_FOUND : EXIT_FAIL;
    }
    return f;
}

/* kind: 0 registries, 1 devices (with --bindings), 2 bindings alone. */
static int run_import(int argc, char **argv, int kind)
{
    static const struct option opts[] = {ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
                                         {"skip-existing", no_argument, 0, OPT_SKIP_EXISTING},
                                         {"bindings", required_argument, 0, OPT_BINDINGS},
                                         {"manifest", required_argument, 0, OPT_MANIFEST},
                                         {"signature", required_argument, 0, OPT_SIGNATURE},
                                         {"dry-run", no_argument, 0, OPT_DRY_RUN},
                                         {0, 0, 0, 0}};
    struct admin a;
    struct import im;
    int devices = kind != 0;
    const char *path = NULL, *bpath = NULL, *mpath = NULL, *spath = NULL, *noun = kind == 2 ? "bindings" : devices ? "devices" : "registries";
    char why[512] = "";
    char *buf = NULL;
    FILE *f = NULL, *bf = NULL;
    int c, rc = EXIT_OK, begun = 0, broken = 0, dry = 0;
    lk_err err;

    admin_init(&a, kind == 2 ? "devices gateways import" : devices ? "devices import" : "registries import",
               kind == 2 ? gateways_import_usage : devices ? devices_import_usage : registries_import_usage);
    a.local_only = "an import is one transaction on the registry database, which latchkeyd's admin API "
                   "has no method for (create the resources one by one through the API instead)";
    memset(&im, 0, sizeof im);
    im.a = &a;
    im.devices = devices;
    im.bindings = kind == 2;
    optind = 1;
    while ((c = admin_getopt(&a, argc, argv, opts, &rc)) != -1) {
        if (c == OPT_SKIP_EXISTING && kind != 2)
            im.skip_existing = 1;
        else if (c == OPT_BINDINGS && kind == 1)
            bpath = optarg;
        else if (c == OPT_MANIFEST && kind == 1)
            mpath = optarg;
        else if (c == OPT_SIGNATURE && kind == 1)
            spath = optarg;
        else if (c == OPT_DRY_RUN && kind == 1)
            dry = 1;
        else
            return tool_usage_error("%s: %s is not an option of this command", a.cmd,
                                    c == OPT_BINDINGS ? "--bindings" : "--skip-existing");
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (mpath != NULL || spath != NULL || dry) {
        /* A signed factory manifest (cmd_manifest.c): its own checks and report. */
        if (mpath == NULL || optind < argc || bpath != NULL || im.skip_existing)
            return tool_usage_error("%s: --manifest F.jsonl [--signature F.jsonl.jws] [--dry-run] takes no FILE, "
                                    "--bindings or --skip-existing", a.cmd);
        a.remote_ok = 1; /* latchkeyd's devices:importManifest (regops_trust.c) */
        if ((rc = admin_resolve(&a, NULL, 1, NULL)) == EXIT_OK)
            rc = manifest_import_run(&a, mpath, spath, dry);
        admin_close(&a);
        return out_finish(rc);
    }
    if (optind < argc)
        path = argv[optind++];
    if (path == NULL)
        return tool_usage_error("%s: give the FILE (or - for standard input)", a.cmd);
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a.cmd, argv[optind]);
    if (bpath != NULL && strcmp(bpath, "-") == 0 && strcmp(path, "-") == 0)
        return tool_usage_error("%s: the devices and the bindings cannot both be standard input", a.cmd);
    if ((rc = admin_resolve(&a, NULL, devices, NULL)) != EXIT_OK)
        goto out;
    if ((f = open_input(&a, path, &rc)) == NULL || (bpath != NULL && (bf = open_input(&a, bpath, &rc)) == NULL))
        goto out;
    buf = malloc(REC_MAX + 1);
    if (buf == NULL) {
        rc = admin_fail(&a, LK_ERR_NOMEM, NULL);
        goto out;
    }
    if ((rc = admin_open(&a, ADMIN_OPEN_WRITE)) != EXIT_OK)
        goto out;
    if (a.json && (im.errors = json_array()) == NULL) {
        rc = admin_fail(&a, LK_ERR_NOMEM, NULL);
        goto out;
    }
    im.tty = isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &im.start);
    im.last_progress = im.start;

    err = devices ? lk_registry_import_begin(a.reg, &a.name, why, sizeof why)
                  : lk_registry_import_registries_begin(a.reg, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(&a, err, why);
        goto out;
    }
    begun = 1;
    if ((rc = read_records(&im, f, buf, path, &broken)) != EXIT_OK)
        goto out;
    if (bf != NULL && !broken) {
        /* The bindings after the devices, in the same transaction: a pair may
         * name a device of this import. */
        im.prev_nrec = im.rd.nrec;
        im.prev_lines = rec_lines(&im.rd);
        im.bindings = 1;
        im.after_devices = 1;
        if ((rc = read_records(&im, bf, buf, bpath, &broken)) != EXIT_OK)
            goto out;
    }
    unsigned long nrec = im.prev_nrec + im.rd.nrec, nlines = im.prev_lines + rec_lines(&im.rd);
    if (im.nerrors > 0) {
        clear_progress(&im);
        if (im.nerrors > im.nshown)
            fprintf(stderr, "latchkey: %s: ... and %lu more refused (%s)\n", a.cmd, im.nerrors - im.nshown,
                    a.json ? "the JSON summary lists the first 1000" : "--format json lists the first 1000");
        if (broken)
            fprintf(stderr, "latchkey: %s: %lu refused, and the input was not read to its end; nothing was "
                            "imported\n", a.cmd, im.nerrors);
        else
            fprintf(stderr, "latchkey: %s: %lu of %lu %s refused; nothing was imported\n", a.cmd, im.nerrors,
                    nrec, im.rd.form == REC_LINES ? "lines" : "records");
        if (a.json) {
            json_t *s = json_pack("{s:i,s:I,s:I,s:I,s:s,s:O}", "imported", 0, "records", (json_int_t)nrec,
                                  "lines", (json_int_t)nlines, "refused", (json_int_t)im.nerrors, "form",
                                  rec_form_name(im.rd.form), "errors", im.errors);
            out_json(s);
        }
        rc = EXIT_IMPORT;
        goto out;
    }
    if (im.tty) {
        fprintf(stderr, "\r\033[Kcommitting %lu %s...", kind == 2 ? im.nbound : im.nok, noun);
        fflush(stderr);
    }
    err = lk_registry_import_commit(a.reg, why, sizeof why);
    begun = 0;
    clear_progress(&im);
    if (err != LK_OK) {
        tool_error(a.cmd, err, "commit: %s; nothing was imported", why[0] ? why : lk_strerror(err));
        rc = tool_registry_exit_code(err);
        goto out;
    }
    report_notes(&im);
    {
        double t = elapsed(&im.start);
        double rate = t > 0 ? (double)im.nok / t : 0.0;
        if (a.json) {
            json_t *s = json_pack("{s:I,s:I,s:I,s:s,s:I,s:f}", "imported", (json_int_t)im.nok, "records",
                                  (json_int_t)nrec, "lines", (json_int_t)nlines, "form",
                                  rec_form_name(im.rd.form), "skipped", (json_int_t)im.nskipped, "seconds", t);
            if (s != NULL) {
                if (kind != 2)
                    json_object_set_new(s, devices ? "devicesPerSecond" : "registriesPerSecond", json_real(rate));
                if (devices) {
                    json_object_set_new(s, "registry", json_string(a.registry));
                    json_object_set_new(s, "bindings", json_integer((json_int_t)im.nbound));
                }
                if (kind == 1)
                    json_object_set_new(s, "numIdsChanged", notes_json(&im.numids, 1));
                if (kind == 0)
                    json_object_set_new(s, "caCertificates", json_integer((json_int_t)im.ncerts));
                if (kind != 2)
                    json_object_set_new(s, "skippedIds", notes_json(&im.skipped, 0));
            }
            rc = out_json(s);
        } else if (kind == 2) {
            printf("Imported %lu binding%s into registry [%s] in %.2f s.\n", im.nbound, im.nbound == 1 ? "" : "s",
                   a.registry, t);
        } else if (devices) {
            printf("Imported %lu devices into registry [%s] in %.2f s (%.0f devices/s)", im.nok, a.registry, t,
                   rate);
            if (bf != NULL)
                printf(", and %lu binding%s", im.nbound, im.nbound == 1 ? "" : "s");
            if (im.nskipped > 0)
                printf("; %lu skipped (they exist already)", im.nskipped);
            if (im.numids.n > 0)
                printf("; %zu with a new numId", im.numids.n);
            printf(".\n");
        } else {
            printf("Imported %lu registr%s (%lu CA certificate%s) into projects/%s/locations/%s in %.2f s",
                   im.nok, im.nok == 1 ? "y" : "ies", im.ncerts, im.ncerts == 1 ? "" : "s", a.project, a.location, t);
            if (im.nskipped > 0)
                printf("; %lu skipped (they exist already)", im.nskipped);
            printf(".\n");
        }
    }
out:
    if (begun)
        lk_registry_import_abort(a.reg);
    if (f != NULL && f != stdin)
        fclose(f);
    if (bf != NULL && bf != stdin)
        fclose(bf);
    free(buf);
    json_decref(im.errors);
    notes_free(&im.numids);
    notes_free(&im.skipped);
    notes_free(&im.expired);
    notes_free(&im.converted);
    seen_free(&im.seen);
    admin_close(&a);
    return out_finish(rc);
}

int cmd_devices_import(int argc, char **argv)
{
    return run_import(argc, argv, 1);
}

int cmd_registries_import(int argc, char **argv)
{
    return run_import(argc, argv, 0);
}

int cmd_gateways_import(int argc, char **argv)
{
    return run_import(argc, argv, 2);
}
