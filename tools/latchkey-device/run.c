/*
 * latchkey-device run: one device. Lines of the input become events; config
 * and commands are printed one per line; progress goes to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "latchkey/lk_device.h"
#include "latchkey/lk_iotcore.h"
#include "latchkey/lk_util.h"
#include "device_tool.h"

static const char run_help[] =
    "usage: latchkey-device [run] --host H [--port 8883] --ca FILE\n"
    "                --project P --region L --registry R --device D\n"
    "                --key NAME --store FILE | --key 'pkcs11:token=T;object=O?module-path=M&pin-source=F'\n"
    "                [options]\n"
    "\n"
    "Connects the device to the MQTT bridge over TLS (the server is always authenticated\n"
    "against --ca), with a token signed by its key as the password, and keeps it connected:\n"
    "a new token before the old one expires, backoff with jitter after failures.\n"
    "Each line of the input is sent as one event; each config and command that arrives is\n"
    "printed as one line on standard output ('config: ...', 'command[/SUBFOLDER]: ...').\n"
    "\n"
    "  --host H            server name or IP address, checked against its certificate\n"
    "  --port N            default 8883\n"
    "  --ca FILE           PEM roots trusted for the server (required)\n"
    "  --project P --region L --registry R --device D\n"
    "                      the device (also LATCHKEY_PROJECT, LATCHKEY_REGION)\n"
    "  --key NAME --store FILE   a key in the software key store (development only)\n"
    "  --key pkcs11:URI [--module PATH]   a key in a PKCS#11 token; the PIN from the URI\n"
    "                      (pin-source=FILE) or LATCHKEY_PKCS11_PIN\n"
    "  --alg ES256|RS256   default: the key's own algorithm\n"
    "  --next-key REF      rotate: connect with REF (same store or token as --key); accepted,\n"
    "                      it is the key from then on; refused, back to --key at once\n"
    "  --next-key-file F   on SIGHUP, start that switch with the key reference on F's first line\n"
    "  --x5c CHAIN.pem     put these certificates (leaf first) in --key's tokens (x5c), for\n"
    "                      just-in-time registration\n"
    "  --token-lifetime S  token validity, 10..86400 s (default 3600)\n"
    "  --refresh-margin S  reconnect with a new token S seconds before expiry (default lifetime/10)\n"
    "  --keepalive S       MQTT keep-alive, 10..1200 s (default 60)\n"
    "  --backoff-max S     cap of the exponential backoff (default 64)\n"
    "  --max-refusals N    give up after N fresh tokens refused in a row (default 3; 0 = never)\n"
    "  --max-attempts N    give up after N failed attempts in a row (default 0 = never)\n"
    "  --max-rate N        send at most N messages a second (default 80: the server drops what\n"
    "                      goes over its limit of 100)\n"
    "  --events FILE|-     where the event lines come from (default: standard input); a\n"
    "                      regular FILE is followed as tail -F does: lines appended later are\n"
    "                      sent, and a truncated or replaced (rotated) file is read anew\n"
    "                      (with --exit-on-eof it is read to its end only)\n"
    "  --subfolder S       send events to /devices/D/events/S\n"
    "  --state TEXT | --state-file FILE   publish this device state once\n"
    "  --count N           stop after N events were delivered (acknowledged)\n"
    "  --duration S        stop after S seconds\n"
    "  --exit-on-eof       stop when the input ends and every event was delivered\n"
    "  --format text|json  how config and commands are printed (default text)\n"
    "  --quiet             progress lines off; errors are still printed\n"
    "\n"
    "As a gateway (--device is a device of type GATEWAY; docs/device.md, \"Gateways\"):\n"
    "  --gateway           run as a gateway (implied by --attach)\n"
    "  --attach DEVICE[:KEYREF]   attach DEVICE on this connection (repeat for each, up to\n"
    "                      1000); with KEYREF, its own token is signed by that key of the\n"
    "                      same store or token as --key (gateways that need device tokens),\n"
    "                      without, the gateway's binding alone is used (association only)\n"
    "  --gateway-rate N    send at most N messages a second in all (default 800; the\n"
    "                      server's gateway cap is 1000); --max-rate applies per device\n"
    "  Input lines '@DEVICE PAYLOAD' are DEVICE's events ('@DEVICE/events/SUBFOLDER PAYLOAD'\n"
    "  with a subfolder, '@DEVICE/state PAYLOAD' its state); '@DEVICE/attach' and\n"
    "  '@DEVICE/detach' attach (association only, unless --attach gave it a key) and detach\n"
    "  it while running; other lines are the gateway's own events.\n"
    "  Attached devices' config and commands are printed with '@DEVICE ' in\n"
    "  front (JSON: a \"device\" field); the server's errors (/devices/GW/errors) as\n"
    "  'error: TYPE @DEVICE: DESCRIPTION' (JSON: {\"type\":\"error\",...}); a device refused\n"
    "  or dropped by the server is attached again after a backoff.\n"
    "\n"
    "Stops cleanly (flushing what is queued) on SIGINT or SIGTERM. Exit codes: 0 stopped with\n"
    "everything delivered, 2 usage, 3 a key, token or file (PIN, --ca, --events) not found,\n"
    "4/5/7/10 the key, 24 a file that cannot be used, 30 refused by the server, 31 server not\n"
    "authenticated, 32 network, 33 undelivered messages, 34 input (docs/cli.md, \"Exit codes\").\n";

#define LINE_MAX_BYTES (256u * 1024u)

static volatile sig_atomic_t stop_signal, hup_signal;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        hup_signal = 1;
    else
        stop_signal = sig;
}

struct agent {
    int json;
    int quiet;
    long long count;        /* events to deliver before stopping, 0 = no limit */
    long long delivered;    /* events delivered */
    uint64_t state_id;      /* the state message's id, not an event */
    int failed_reported;
    struct devtool_gw *gw;  /* --attach: the agent is a gateway */
};

/* --------------------------------------------------------------- output */

static void print_message(struct agent *a, const char *type, const char *subfolder,
                          const uint8_t *data, size_t len)
{
    devtool_print_message(a->json, NULL, type, subfolder, data, len);
}

static void on_config(void *user, const uint8_t *data, size_t len)
{
    print_message(user, "config", NULL, data, len);
}

static void on_command(void *user, const char *subfolder, const uint8_t *data, size_t len)
{
    print_message(user, "command", subfolder, data, len);
}

static void on_event(void *user, const lk_dev_event *ev)
{
    struct agent *a = user;
    int error = 0;
    switch (ev->type) {
    case LK_DEV_EV_DELIVERED:
        if (ev->id != a->state_id && (a->gw == NULL || !devtool_gw_is_state(a->gw, ev->id)))
            a->delivered++;
        return;
    case LK_DEV_EV_ATTACHED:
        if (a->gw != NULL)
            devtool_gw_attached(a->gw, ev->device);
        break;
    case LK_DEV_EV_FAILED:
        a->failed_reported = 1;
        error = 1;
        break;
    case LK_DEV_EV_KEY:
        error = ev->code == 0; /* a refused next key is worth a line even with --quiet */
        break;
    case LK_DEV_EV_TLS_FAILED:
    case LK_DEV_EV_REFUSED:
    case LK_DEV_EV_WARNING:
        error = 1;
        break;
    default:
        break;
    }
    if (a->quiet && !error)
        return;
    if (ev->type == LK_DEV_EV_FAILED)
        fprintf(stderr, "%s: giving up: %s (%s)\n", tool_name, ev->detail, lk_errname(ev->err));
    else
        fprintf(stderr, "%s: %s\n", tool_name, ev->detail);
}

/* ---------------------------------------------------------------- input */

struct input {
    int fd;
    int owned;         /* fd is ours to close (not standard input) */
    int eof;
    int paused;        /* the queue is full: a line waits in buf */
    char *buf;
    size_t len;
    size_t scanned;    /* bytes of buf known to hold no newline */
    /* --events FILE on a regular file, without --exit-on-eof: followed as
     * `tail -F` does (docs/device.md). */
    int follow;
    int quiet;
    const char *path;
    dev_t dev;          /* the file open now */
    ino_t ino;
    off_t offset;       /* bytes read from it */
    int64_t next_ms;    /* when to read again (at the end: every FOLLOW_MS) */
};

#define FOLLOW_MS 250   /* how often a followed file is checked at its end */

/* Publish every complete line in the buffer. Returns 0, or an exit code. */
static int flush_lines(lk_dev *dev, struct input *in, const char *subfolder, struct agent *a,
                       const char *own)
{
    for (;;) {
        char *nl = memchr(in->buf + in->scanned, '\n', in->len - in->scanned);
        size_t line;
        lk_err err;
        if (nl == NULL) {
            in->scanned = in->len;
            if (in->len > LINE_MAX_BYTES) {
                fprintf(stderr, "%s: an input line is longer than %u bytes (the event limit)\n",
                        tool_name, LINE_MAX_BYTES);
                return EXIT_DEV_INPUT;
            }
            if (!in->eof || in->len == 0)
                return 0;
            line = in->len; /* a last line without its newline */
        } else {
            line = (size_t)(nl - in->buf);
        }
        if (a->gw != NULL && line > 0 && in->buf[0] == '@')
            err = devtool_gw_line(a->gw, dev, own, in->buf, line, subfolder);
        else
            err = lk_dev_publish_event(dev, subfolder, in->buf, line, NULL);
        if (err == LK_ERR_QUEUE_FULL) {
            in->paused = 1;
            return 0;
        }
        if (err == LK_ERR_TOO_LARGE) {
            fprintf(stderr, "%s: an input line is longer than %u bytes (the event limit)\n",
                    tool_name, LINE_MAX_BYTES);
            return EXIT_DEV_INPUT;
        }
        if (err != LK_OK) {
            tool_error("event", err, "%s", lk_strerror(err));
            return tool_exit_code(err);
        }
        in->paused = 0;
        if (nl == NULL) {
            in->len = 0;
        } else {
            in->len -= line + 1;
            memmove(in->buf, nl + 1, in->len);
        }
        in->scanned = 0;
    }
}

/* The file ended for good (replaced or truncated): a last line without its
 * newline is complete; send it as one event. */
static void end_partial(struct input *in)
{
    if (in->len > 0 && in->buf[in->len - 1] != '\n' && in->len <= LINE_MAX_BYTES)
        in->buf[in->len++] = '\n';
}

/* One step of following --events FILE: read what is new; at its end, look
 * whether the file was truncated (read it again from its start) or replaced,
 * e.g. rotated (finish the old one, then read the new one from its start). A
 * path that is gone is waited for: the old file stays open until a new one
 * appears. Returns 0 or an exit code. */
static int follow_input(struct input *in, int64_t now)
{
    struct stat st;
    ssize_t n;

    if (in->len >= LINE_MAX_BYTES + 1)
        return 0;
    n = read(in->fd, in->buf + in->len, LINE_MAX_BYTES + 1 - in->len);
    if (n > 0) {
        in->len += (size_t)n;
        in->offset += n;
        in->next_ms = now; /* more may follow at once */
        return 0;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        fprintf(stderr, "%s: --events %s: %s\n", tool_name, tool_shown(in->path), strerror(errno));
        return EXIT_DEV_INPUT;
    }
    in->next_ms = now + FOLLOW_MS;
    if (n < 0)
        return 0;
    /* At the end: truncated (copytruncate) or replaced (rename and create)? */
    if (fstat(in->fd, &st) == 0 && st.st_size < in->offset) {
        if (!in->quiet)
            fprintf(stderr, "%s: --events %s was truncated: reading it from its start\n", tool_name,
                    tool_shown(in->path));
        end_partial(in);
        (void)lseek(in->fd, 0, SEEK_SET);
        in->offset = 0;
        in->next_ms = now;
        return 0;
    }
    if (stat(in->path, &st) == 0 && (st.st_dev != in->dev || st.st_ino != in->ino)) {
        int fd = open(in->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            return 0; /* not readable yet: keep the old one, look again */
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return 0;
        }
        if (!in->quiet)
            fprintf(stderr, "%s: --events %s was replaced: reading the new file from its start\n",
                    tool_name, tool_shown(in->path));
        end_partial(in);
        close(in->fd);
        in->fd = fd;
        in->dev = st.st_dev;
        in->ino = st.st_ino;
        in->offset = 0;
        in->next_ms = now;
    }
    return 0;
}

static int read_input(struct input *in)
{
    ssize_t n;
    if (in->len >= LINE_MAX_BYTES + 1)
        return 0;
    n = read(in->fd, in->buf + in->len, LINE_MAX_BYTES + 1 - in->len);
    if (n == 0) {
        in->eof = 1;
    } else if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        fprintf(stderr, "%s: cannot read the input: %s\n", tool_name, strerror(errno));
        return EXIT_DEV_INPUT;
    } else {
        in->len += (size_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------- options */

static int read_small_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    int e;
    if (f == NULL) {
        e = errno;
        fprintf(stderr, "%s: --state-file %s: %s\n", tool_name, tool_shown(path), strerror(e));
        return tool_file_exit(e);
    }
    buf = malloc(LK_STATE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return EXIT_FAIL;
    }
    errno = 0;
    n = fread(buf, 1, LK_STATE_MAX + 1, f);
    e = ferror(f) ? errno : 0;
    fclose(f);
    if (e != 0) { /* a directory opens, and fails to read (EISDIR) */
        free(buf);
        fprintf(stderr, "%s: --state-file %s: %s\n", tool_name, tool_shown(path), strerror(e));
        return e == EISDIR ? EXIT_FILE : EXIT_DEV_INPUT;
    }
    if (n > LK_STATE_MAX) {
        free(buf);
        fprintf(stderr, "%s: %s is larger than a device state may be (%u bytes)\n", tool_name,
                tool_shown(path), LK_STATE_MAX);
        return EXIT_DEV_INPUT;
    }
    *out = buf;
    *len = n;
    return 0;
}

enum {
    OPT_HOST = 1000, OPT_PORT, OPT_CA, OPT_PROJECT, OPT_REGION, OPT_REGISTRY, OPT_DEVICE,
    OPT_KEY, OPT_STORE, OPT_MODULE, OPT_ALG, OPT_LIFETIME, OPT_MARGIN, OPT_KEEPALIVE,
    OPT_BACKOFF, OPT_REFUSALS, OPT_ATTEMPTS, OPT_EVENTS, OPT_SUBFOLDER, OPT_STATE,
    OPT_STATE_FILE, OPT_COUNT, OPT_DURATION, OPT_MAX_RATE, OPT_EOF, OPT_FORMAT, OPT_QUIET, OPT_ATTACH, OPT_GATEWAY_RATE, OPT_GATEWAY, OPT_NEXT_KEY,
    OPT_NEXT_KEY_FILE, OPT_X5C, OPT_HELP
};

static const struct option run_options[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"ca", required_argument, NULL, OPT_CA},
    {"project", required_argument, NULL, OPT_PROJECT},
    {"region", required_argument, NULL, OPT_REGION},
    {"registry", required_argument, NULL, OPT_REGISTRY},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"key", required_argument, NULL, OPT_KEY},
    {"store", required_argument, NULL, OPT_STORE},
    {"module", required_argument, NULL, OPT_MODULE},
    {"alg", required_argument, NULL, OPT_ALG},
    {"token-lifetime", required_argument, NULL, OPT_LIFETIME},
    {"refresh-margin", required_argument, NULL, OPT_MARGIN},
    {"keepalive", required_argument, NULL, OPT_KEEPALIVE},
    {"backoff-max", required_argument, NULL, OPT_BACKOFF},
    {"max-refusals", required_argument, NULL, OPT_REFUSALS},
    {"max-attempts", required_argument, NULL, OPT_ATTEMPTS},
    {"events", required_argument, NULL, OPT_EVENTS},
    {"subfolder", required_argument, NULL, OPT_SUBFOLDER},
    {"state", required_argument, NULL, OPT_STATE},
    {"state-file", required_argument, NULL, OPT_STATE_FILE},
    {"count", required_argument, NULL, OPT_COUNT},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"max-rate", required_argument, NULL, OPT_MAX_RATE},
    {"exit-on-eof", no_argument, NULL, OPT_EOF},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"attach", required_argument, NULL, OPT_ATTACH},
    {"gateway-rate", required_argument, NULL, OPT_GATEWAY_RATE},
    {"gateway", no_argument, NULL, OPT_GATEWAY},
    {"next-key", required_argument, NULL, OPT_NEXT_KEY},
    {"next-key-file", required_argument, NULL, OPT_NEXT_KEY_FILE},
    {"x5c", required_argument, NULL, OPT_X5C},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0}
};

struct num_opt {
    int id;
    const char *name;
    long long min, max;
};

static const struct num_opt num_opts[] = {
    {OPT_PORT, "--port", 1, 65535},
    {OPT_LIFETIME, "--token-lifetime", 10, 86400},
    {OPT_MARGIN, "--refresh-margin", 1, 86399},
    {OPT_KEEPALIVE, "--keepalive", 10, 1200},
    {OPT_BACKOFF, "--backoff-max", 1, 3600},
    {OPT_REFUSALS, "--max-refusals", 0, 1000000},
    {OPT_ATTEMPTS, "--max-attempts", 0, 1000000},
    {OPT_COUNT, "--count", 1, 1000000000000LL},
    {OPT_DURATION, "--duration", 1, 100000000},
    {OPT_MAX_RATE, "--max-rate", 1, 10000},
    {OPT_GATEWAY_RATE, "--gateway-rate", 1, 100000},
};

/* What the command line asks for. */
struct run_opts {
    lk_dev_config cfg;
    struct tool_key_opts ko;
    const char *events, *subfolder, *state, *state_file;
    const char *next_key, *next_key_file, *x5c_file;  /* rotate.c */
    char **x5c;
    unsigned nx5c;
    long long duration;  /* seconds, 0 = no limit */
    long long count;     /* events to deliver, 0 = no limit */
    int exit_on_eof, json, quiet;
    struct devtool_gw gw;   /* --attach, --gateway-rate */
    int gateway;            /* --gateway (implied by --attach) */
};

#define RUN_HELP (-1) /* --help was printed */

/* Parse and check the options into *o. Returns EXIT_OK, RUN_HELP, or an
 * exit code (the message printed). */
static int parse_run_options(int argc, char **argv, struct run_opts *o)
{
    long long nums[OPT_HELP + 1 - OPT_HOST];
    const char *alg_name = NULL;
    lk_dev_config *cfg = &o->cfg;
    int opt;
    size_t i;

    memset(o, 0, sizeof *o);
    memset(nums, 0, sizeof nums);
    o->events = "-";
    nums[OPT_PORT - OPT_HOST] = 8883;
    nums[OPT_REFUSALS - OPT_HOST] = 3;
    cfg->project = getenv("LATCHKEY_PROJECT");
    cfg->location = getenv("LATCHKEY_REGION");

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", run_options, NULL)) != -1) {
        int handled = 0;
        for (i = 0; i < sizeof num_opts / sizeof num_opts[0]; i++) {
            if (num_opts[i].id != opt)
                continue;
            if (tool_parse_i64(optarg, num_opts[i].min, num_opts[i].max, &nums[opt - OPT_HOST]) != 0)
                return tool_usage_error("%s takes a whole number from %lld to %lld, not '%s'",
                                        num_opts[i].name, num_opts[i].min, num_opts[i].max,
                                        tool_shown(optarg));
            handled = 1;
        }
        if (handled)
            continue;
        switch (opt) {
        case OPT_HOST: cfg->host = optarg; break;
        case OPT_CA: cfg->ca_file = optarg; break;
        case OPT_PROJECT: cfg->project = optarg; break;
        case OPT_REGION: cfg->location = optarg; break;
        case OPT_REGISTRY: cfg->registry = optarg; break;
        case OPT_DEVICE: cfg->device = optarg; break;
        case OPT_KEY: o->ko.key = optarg; break;
        case OPT_STORE: o->ko.store = optarg; break;
        case OPT_MODULE: o->ko.module = optarg; break;
        case OPT_ALG: alg_name = optarg; break;
        case OPT_EVENTS: o->events = optarg; break;
        case OPT_SUBFOLDER: o->subfolder = optarg; break;
        case OPT_STATE: o->state = optarg; break;
        case OPT_STATE_FILE: o->state_file = optarg; break;
        case OPT_EOF: o->exit_on_eof = 1; break;
        case OPT_NEXT_KEY: o->next_key = optarg; break;
        case OPT_NEXT_KEY_FILE: o->next_key_file = optarg; break;
        case OPT_X5C: o->x5c_file = optarg; break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_GATEWAY: o->gateway = 1; break;
        case OPT_ATTACH: {
            int rc = devtool_gw_add(&o->gw, optarg);
            if (rc != EXIT_OK)
                return rc;
            break;
        }
        case OPT_FORMAT:
            if (tool_parse_format(NULL, optarg, &o->json) != EXIT_OK)
                return EXIT_USAGE;
            break;
        case OPT_HELP:
            fputs(run_help, stdout);
            return RUN_HELP;
        default:
            return tool_bad_option(argc, argv, optind);
        }
    }
    if (optind < argc)
        return tool_usage_error("unexpected argument '%s' (see --help)", tool_shown(argv[optind]));
    if (cfg->host == NULL)
        return tool_usage_error("--host is required: the server to connect to");
    if (cfg->ca_file == NULL)
        return tool_usage_error("--ca FILE is required: the server is always authenticated");
    if (cfg->project == NULL || cfg->location == NULL || cfg->registry == NULL || cfg->device == NULL)
        return tool_usage_error("--project, --region, --registry and --device are all required");
    if (o->state != NULL && o->state_file != NULL)
        return tool_usage_error("give --state or --state-file, not both");
    if (o->subfolder != NULL && !lk_subfolder_valid(o->subfolder, strlen(o->subfolder)))
        return tool_usage_error("--subfolder '%s' is not a valid subfolder (1-256 characters, no "
                                "'+', '#', empty levels, or leading/trailing '/')", tool_shown(o->subfolder));
    if (alg_name != NULL) {
        cfg->alg = lk_alg_from_name(alg_name, strlen(alg_name));
        if (cfg->alg == LK_ALG_NONE)
            return tool_usage_error("--alg must be ES256 or RS256, not '%s'", tool_shown(alg_name));
    }
    o->duration = nums[OPT_DURATION - OPT_HOST];
    o->count = nums[OPT_COUNT - OPT_HOST];
    cfg->port = (unsigned)nums[OPT_PORT - OPT_HOST];
    cfg->token_lifetime_s = (unsigned)nums[OPT_LIFETIME - OPT_HOST];
    cfg->refresh_margin_s = (unsigned)nums[OPT_MARGIN - OPT_HOST];
    cfg->keepalive_s = (unsigned)nums[OPT_KEEPALIVE - OPT_HOST];
    cfg->backoff_max_s = (unsigned)nums[OPT_BACKOFF - OPT_HOST];
    cfg->max_refusals = nums[OPT_REFUSALS - OPT_HOST] == 0 ? ~0u : (unsigned)nums[OPT_REFUSALS - OPT_HOST];
    cfg->max_attempts = (unsigned)nums[OPT_ATTEMPTS - OPT_HOST];
    cfg->max_messages_per_s = (unsigned)nums[OPT_MAX_RATE - OPT_HOST];
    o->gw.rate = (unsigned)nums[OPT_GATEWAY_RATE - OPT_HOST];
    if (o->gw.n > 0)
        o->gateway = 1;
    if (o->gw.rate != 0 && !o->gateway)
        return tool_usage_error("--gateway-rate is for a gateway: give --gateway or --attach too");
    o->gw.backoff_max_s = cfg->backoff_max_s ? cfg->backoff_max_s : 64;
    o->gw.json = o->json;
    o->gw.quiet = o->quiet;
    return EXIT_OK;
}

/* Open the input (--events FILE or standard input) and its line buffer.
 * in->owned says whether in->fd is ours to close: a file opened while
 * standard input was closed gets descriptor 0, and is still ours. Returns
 * an exit code. */
static int open_input(const struct run_opts *o, struct input *in)
{
    memset(in, 0, sizeof *in);
    in->fd = -1;
    in->quiet = o->quiet;
    /* The buffer first: nothing to undo when it cannot be had. */
    in->buf = malloc(LINE_MAX_BYTES + 1);
    if (in->buf == NULL) {
        tool_error("input", LK_ERR_NOMEM, "%s", lk_strerror(LK_ERR_NOMEM));
        return EXIT_FAIL;
    }
    if (strcmp(o->events, "-") == 0) {
        in->fd = STDIN_FILENO;
        return EXIT_OK;
    }
    in->fd = open(o->events, O_RDONLY | O_CLOEXEC);
    if (in->fd < 0) {
        int e = errno;
        fprintf(stderr, "%s: --events %s: %s\n", tool_name, tool_shown(o->events), strerror(e));
        return tool_file_exit(e);
    }
    in->owned = 1;
    if (!o->exit_on_eof) {
        struct stat st;
        if (fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode)) {
            in->follow = 1;
            in->path = o->events;
            in->dev = st.st_dev;
            in->ino = st.st_ino;
        }
    }
    return EXIT_OK;
}

static void close_input(struct input *in)
{
    if (in->owned && in->fd >= 0)
        close(in->fd);
    in->fd = -1;
    free(in->buf);
    in->buf = NULL;
}

/* The key decides the algorithm; --alg only asserts it (as in `latchkey
 * token`): a mismatch is found now, not at the first signature. Returns an
 * exit code. */
static int check_key_alg(const struct tool_key *key, lk_dev_config *cfg)
{
    uint8_t pub[LK_PUBKEY_DER_MAX];
    size_t pub_len = 0;
    lk_alg have = LK_ALG_NONE;
    lk_err err = lk_se_public_key(&key->se, key->key, &have, pub, sizeof pub, &pub_len);
    if (err != LK_OK) {
        tool_key_error(key, "key", err);
        return tool_exit_code(err);
    }
    if (cfg->alg != LK_ALG_NONE && cfg->alg != have) {
        tool_error("key", LK_ERR_KEY_TYPE, "--alg %s, but key '%s' is an %s key", lk_alg_name(cfg->alg),
                   tool_shown(key->key), lk_alg_name(have));
        return tool_exit_code(LK_ERR_KEY_TYPE);
    }
    cfg->alg = have;
    return EXIT_OK;
}

/* The device on key, with its state (--state, --state-file) queued.
 * Returns an exit code; *dev is NULL on failure. */
static int new_device(struct run_opts *o, struct tool_key *key, struct agent *agent, lk_dev **dev)
{
    lk_dev_config *cfg = &o->cfg;
    char detail[256];
    lk_err err;
    int rc;

    *dev = NULL;
    if ((rc = check_key_alg(key, cfg)) != EXIT_OK)
        return rc;
    cfg->se = &key->se;
    cfg->key = key->key;
    if (o->x5c_file != NULL) {
        if ((rc = devtool_x5c_load(o->x5c_file, &o->x5c, &o->nx5c)) != EXIT_OK)
            return rc;
        cfg->x5c = (const char *const *)o->x5c;
        cfg->x5c_count = o->nx5c;
    }
    cfg->user = agent;
    cfg->on_event = on_event;
    cfg->on_config = on_config;
    cfg->on_command = on_command;
    err = lk_dev_new(cfg, dev, detail, sizeof detail);
    if (err != LK_OK) {
        *dev = NULL;
        if (err == LK_ERR_ARG)
            return tool_usage_error("%s", detail);
        tool_error("setup", err, "%s", detail[0] ? detail : lk_strerror(err));
        return tool_exit_code(err);
    }
    if (o->next_key != NULL && (rc = devtool_next_key(*dev, key, o->next_key)) != EXIT_OK)
        goto fail;
    if (o->gateway) {
        o->gw.se = &key->se;
        agent->gw = &o->gw;
        if ((rc = devtool_gw_setup(&o->gw, *dev, key)) != EXIT_OK)
            goto fail;
    }
    if (o->state != NULL || o->state_file != NULL) {
        char *data = (char *)o->state;
        size_t len = o->state ? strlen(o->state) : 0;
        if (o->state_file != NULL && (rc = read_small_file(o->state_file, &data, &len)) != 0)
            goto fail;
        err = lk_dev_publish_state(*dev, data, len, &agent->state_id);
        if (o->state_file != NULL)
            free(data);
        if (err != LK_OK) {
            tool_error("state", err, "%s", lk_strerror(err));
            rc = tool_exit_code(err);
            goto fail;
        }
    }
    return EXIT_OK;
fail:
    lk_dev_free(*dev);
    *dev = NULL;
    return rc;
}

/* Run the device until it stops: asked to (a signal, --duration, --count,
 * --exit-on-eof), or a failure (rc, the device's own). A failure sets the
 * exit code and stops the device, which then flushes what it can. Returns
 * the exit code, the device's error and undelivered messages included. */
static int run_loop(lk_dev *dev, struct agent *agent, struct input *in, const struct run_opts *o,
                    const struct tool_key *key)
{
    int64_t end_ms;
    int rc = EXIT_OK;
    lk_err err;

    signal(SIGPIPE, SIG_IGN);
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        if (o->next_key_file != NULL)
            sigaction(SIGHUP, &sa, NULL);
    }
    fcntl(in->fd, F_SETFL, fcntl(in->fd, F_GETFL) | O_NONBLOCK);
    err = lk_dev_start(dev);
    if (err != LK_OK) {
        tool_error("start", err, "%s", lk_strerror(err));
        rc = tool_exit_code(err);
    }
    end_ms = o->duration > 0 ? lk_dev_now_ms() + o->duration * 1000 : INT64_MAX;

    for (;;) {
        struct pollfd p[2];
        int nfds = 0, dev_i = -1, in_i = -1, n;
        int64_t now = lk_dev_now_ms(), wait;
        lk_dev_state st = lk_dev_get_state(dev);
        lk_dev_stats stats;

        if (st == LK_DEV_STOPPED || st == LK_DEV_FAILED)
            break;
        lk_dev_get_stats(dev, &stats);
        if (hup_signal) {
            /* A file that cannot be read is reported; the device goes on. */
            hup_signal = 0;
            (void)devtool_next_key_file(dev, key, o->next_key_file);
        }
        if (st != LK_DEV_STOPPING &&
            (stop_signal || now >= end_ms || rc != EXIT_OK ||
             (agent->count > 0 && agent->delivered >= agent->count) ||
             (o->exit_on_eof && in->eof && in->len == 0 && stats.queued == 0))) {
            lk_dev_stop(dev);
            continue;
        }
        if (lk_dev_fd(dev) >= 0) {
            p[nfds].fd = lk_dev_fd(dev);
            p[nfds].events = (short)(POLLIN | (lk_dev_want_write(dev) ? POLLOUT : 0));
            p[nfds].revents = 0;
            dev_i = nfds++;
        }
        if (!in->follow && !in->eof && !in->paused && rc == EXIT_OK && st != LK_DEV_STOPPING) {
            p[nfds].fd = in->fd;
            p[nfds].events = POLLIN;
            p[nfds].revents = 0;
            in_i = nfds++;
        }
        wait = lk_dev_next_ms(dev);
        if (agent->gw != NULL)
            devtool_gw_tick(agent->gw, dev, now, &wait); /* attaches again after errors */
        wait -= now;
        if (in->paused || wait > 1000)
            wait = in->paused ? 50 : 1000;
        if (in->follow && !in->paused && wait > in->next_ms - now)
            wait = in->next_ms - now;
        if (wait < 0)
            wait = 0;
        n = poll(p, (nfds_t)nfds, (int)wait);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "%s: poll: %s\n", tool_name, strerror(errno));
            rc = EXIT_FAIL;
        }
        if (in_i >= 0 && n > 0 && (p[in_i].revents & (POLLIN | POLLHUP | POLLERR))) {
            int r = read_input(in);
            if (r != 0)
                rc = r;
        }
        if (in->follow && !in->paused && rc == EXIT_OK && st != LK_DEV_STOPPING &&
            lk_dev_now_ms() >= in->next_ms) {
            int r = follow_input(in, lk_dev_now_ms());
            if (r != 0)
                rc = r;
        }
        if (rc == EXIT_OK && (in->len > 0 || in->paused)) {
            int r = flush_lines(dev, in, o->subfolder, agent, o->cfg.device);
            if (r != 0)
                rc = r;
        }
        lk_dev_step(dev, dev_i >= 0 && n > 0 && (p[dev_i].revents & (POLLIN | POLLHUP | POLLERR)),
                    dev_i >= 0 && n > 0 && (p[dev_i].revents & POLLOUT));
    }

    {
        const char *why = NULL;
        lk_dev_stats stats;
        lk_dev_get_stats(dev, &stats);
        err = lk_dev_error(dev, &why);
        if (err != LK_OK) {
            if (rc == EXIT_OK)
                rc = tool_exit_code(err);
        } else if (rc == EXIT_OK && stats.queued > 0) {
            fprintf(stderr, "%s: stopped with %zu message(s) the server had not acknowledged\n",
                    tool_name, stats.queued);
            rc = EXIT_DEV_UNDELIVERED;
        }
        if (!agent->quiet)
            fprintf(stderr, "%s: %lld event(s) delivered, %llu connection(s), %llu token(s) signed\n",
                    tool_name, agent->delivered, (unsigned long long)stats.connects,
                    (unsigned long long)stats.tokens);
    }
    return rc;
}

int devtool_run(int argc, char **argv)
{
    struct run_opts o;
    struct tool_key key;
    struct agent agent;
    struct input in;
    lk_dev *dev = NULL;
    int rc;

    rc = parse_run_options(argc, argv, &o);
    if (rc != EXIT_OK) {
        devtool_gw_free(&o.gw);
        return rc == RUN_HELP ? EXIT_OK : rc;
    }
    memset(&agent, 0, sizeof agent);
    agent.json = o.json;
    agent.quiet = o.quiet;
    agent.count = o.count;

    /* The input first: a bad path is a usage problem, found before any key is opened. */
    rc = open_input(&o, &in);
    if (rc == EXIT_OK) {
        rc = tool_key_open(&o.ko, &key);
        if (rc == EXIT_OK) {
            rc = new_device(&o, &key, &agent, &dev);
            if (rc == EXIT_OK)
                rc = run_loop(dev, &agent, &in, &o, &key);
            lk_dev_free(dev);
            tool_key_close(&key);
        }
    }
    close_input(&in);
    devtool_gw_free(&o.gw);
    devtool_x5c_free(o.x5c, o.nx5c);
    return rc;
}
