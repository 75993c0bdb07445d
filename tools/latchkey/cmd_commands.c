/*
 * latchkey devices commands send DEVICE --registry R --project P --region L
 *     (--command-data DATA | --command-file FILE) [--subfolder F] [--timeout SECONDS]
 *
 * IoT Core's sendCommandToDevice (gcloud iot devices commands send). The
 * registry is the channel to the broker: the command is queued with
 * lk_registry_command_send, the broker plugin (following the change feed)
 * delivers it to the connected device and records the outcome, and this
 * command polls for that outcome. If no broker decides within --timeout,
 * the command is withdrawn (decided EXPIRED: the first decision wins, so a
 * broker cannot deliver it afterwards) and the tool says that no broker
 * picked it up. Exit codes: docs/cli.md.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "admin.h"
#include "api.h"
#include "regops.h"

#define POLL_MS 50
#define TIMEOUT_DEFAULT 5
#define TIMEOUT_MAX 3600

static const char commands_usage[] =
    "usage: latchkey [--db FILE] devices commands send DEVICE --registry R --project P --region L\n"
    "                (--command-data DATA | --command-file FILE) [--subfolder SUBFOLDER]\n"
    "                [--timeout SECONDS] [--format text|json]\n"
    "\n"
    "Sends a command to a connected device, as IoT Core's sendCommandToDevice: the broker\n"
    "(Mosquitto with the latchkey plugin, on the same database) publishes it on\n"
    "/devices/DEVICE/commands[/SUBFOLDER] to the device, which must be connected and subscribed\n"
    "to /devices/DEVICE/commands/#. Commands are never kept for later delivery.\n"
    "\n"
    "  --command-data DATA    the command (bytes of the argument), at most 256 KiB\n"
    "  --command-file FILE    the command from a file (- = standard input)\n"
    "  --subfolder F          1-256 characters, no '+', '#', leading/trailing '/' or empty level\n"
    "  --timeout SECONDS      how long to wait for the broker, 1-3600 (default 5)\n"
    "\n"
    "Prints nothing when the device got the command (--format json: {}). Exit codes: 0 delivered;\n"
    "21 the device is not connected or not subscribed (FAILED_PRECONDITION); 22 no broker picked\n"
    "the command up within --timeout (it is withdrawn); the registry codes otherwise (docs/cli.md).\n";

enum { O_DATA = OPT_FIRST_OWN, O_FILE, O_SUBFOLDER, O_TIMEOUT };

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static long long ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    (void)nanosleep(&ts, NULL); /* a signal ends it early: the loop checks */
}

/* What became of the command: said on stderr (or {} for --format json);
 * returns the exit code. */
static int report_outcome(struct admin *a, const char *id, lk_reg_command_status st, int withdrew,
                          int gave_up_on_signal, long long timeout_s)
{
    switch (st) {
    case LK_CMD_DELIVERED:
        return a->json ? out_json(json_object()) : EXIT_OK;
    case LK_CMD_NOT_CONNECTED:
        fprintf(stderr,
                "latchkey: %s: device %s is not connected or not subscribed to "
                "/devices/%s/commands/# (FAILED_PRECONDITION)\n",
                a->cmd, id, id);
        return EXIT_CMD_NOT_CONNECTED;
    default: /* EXPIRED */
        if (withdrew && gave_up_on_signal) {
            fprintf(stderr, "latchkey: %s: interrupted; the command was withdrawn before a broker "
                            "picked it up\n", a->cmd);
            return EXIT_INTERRUPTED;
        }
        if (ROP_REMOTE(a))
            fprintf(stderr,
                    "latchkey: %s: no broker picked the command up within latchkeyd's wait (is the "
                    "broker running with the latchkey plugin on latchkeyd's registry?)\n", a->cmd);
        else
            fprintf(stderr,
                    "latchkey: %s: no broker picked the command up within %lld s (is the broker "
                    "running with the latchkey plugin on this registry?)\n",
                    a->cmd, timeout_s);
        return EXIT_CMD_NO_BROKER;
    }
}

/* Wait for the outcome of command cid; withdraw it (EXPIRED) at the
 * deadline or on SIGINT/SIGTERM. Returns an exit code. */
static int wait_outcome(struct admin *a, const char *id, int64_t cid, long long timeout_s)
{
    struct sigaction sa, old_int, old_term;
    struct timespec t0;
    lk_reg_command_status st = LK_CMD_PENDING;
    int withdrew = 0, gave_up_on_signal = 0;
    lk_err err;
    int rc;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a signal cuts the sleep short */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    clock_gettime(CLOCK_MONOTONIC, &t0);

    for (;;) {
        long long left;
        err = lk_registry_command_status(a->reg, cid, &st, NULL);
        if (err != LK_OK) {
            if (err == LK_ERR_REG_NOT_FOUND)
                tool_error(a->cmd, err, "command %lld no longer exists (was device '%s' deleted?)",
                           (long long)cid, id);
            else
                tool_error(a->cmd, err, "reading the command's outcome: %s", lk_strerror(err));
            rc = tool_registry_exit_code(err);
            goto out;
        }
        if (st != LK_CMD_PENDING)
            break;
        left = timeout_s * 1000 - ms_since(&t0);
        if (interrupted || left <= 0) {
            int won = 0;
            gave_up_on_signal = interrupted != 0;
            err = lk_registry_command_decide(a->reg, cid, LK_CMD_EXPIRED, (int64_t)time(NULL), &won);
            if (err != LK_OK) {
                tool_error(a->cmd, err, "withdrawing command %lld: %s", (long long)cid,
                           lk_strerror(err));
                rc = tool_registry_exit_code(err);
                goto out;
            }
            if (won) {
                withdrew = 1;
                st = LK_CMD_EXPIRED;
                break;
            }
            continue; /* a broker decided first: read its outcome */
        }
        sleep_ms(left < POLL_MS ? left : POLL_MS);
    }

    rc = report_outcome(a, id, st, withdrew, gave_up_on_signal, timeout_s);
out:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

static int cmd_send(struct admin *a, int argc, char **argv)
{
    static const struct option opts[] = {
        ADMIN_COMMON_OPTIONS, ADMIN_API_OPTIONS,
        {"device", required_argument, 0, OPT_DEVICE},
        {"command-data", required_argument, 0, O_DATA},
        {"command-file", required_argument, 0, O_FILE},
        {"subfolder", required_argument, 0, O_SUBFOLDER},
        {"timeout", required_argument, 0, O_TIMEOUT},
        {0, 0, 0, 0}};
    const char *data_arg = NULL, *file = NULL, *subfolder = NULL, *arg = NULL, *leaf = NULL;
    const char *id = NULL;
    long long timeout_s = TIMEOUT_DEFAULT;
    char *idbuf = NULL, why[512] = "";
    uint8_t *data = NULL;
    size_t len = 0;
    int64_t cid = 0;
    lk_err err;
    int c, rc;

    optind = 1;
    while ((c = admin_getopt(a, argc, argv, opts, &rc)) != -1) {
        switch (c) {
        case O_DATA: data_arg = optarg; break;
        case O_FILE: file = optarg; break;
        case O_SUBFOLDER: subfolder = optarg; break;
        case O_TIMEOUT:
            if (tool_parse_i64(optarg, 1, TIMEOUT_MAX, &timeout_s) != 0)
                return tool_usage_error("%s: --timeout takes seconds, 1 to %d", a->cmd, TIMEOUT_MAX);
            break;
        default: return EXIT_USAGE;
        }
    }
    if (rc != EXIT_OK)
        return rc == ADMIN_HELP ? EXIT_OK : rc;
    if (a->device != NULL)
        arg = a->device;
    else if (optind < argc)
        arg = argv[optind++];
    if (optind < argc)
        return tool_usage_error("%s: unexpected argument '%s'", a->cmd, argv[optind]);
    if (arg == NULL)
        return tool_usage_error("%s: which device? (DEVICE or --device)", a->cmd);
    if ((data_arg == NULL) == (file == NULL))
        return tool_usage_error("%s: give exactly one of --command-data DATA and --command-file FILE",
                                a->cmd);
    if (subfolder != NULL && !lk_subfolder_valid(subfolder, strlen(subfolder))) {
        tool_error(a->cmd, LK_ERR_REG_INVALID,
                   "subfolder '%s' is invalid: a subfolder is 1 to %u characters without '+', '#' or "
                   "NUL, not starting or ending with '/', without empty levels",
                   subfolder, LK_SUBFOLDER_MAX);
        return EXIT_REG_INVALID;
    }
    if (file != NULL) {
        rc = admin_read_file(a, "command file", file, LK_COMMAND_MAX, LK_ERR_REG_LIMIT, &data, &len);
        if (rc != EXIT_OK)
            return rc;
    } else {
        data = (uint8_t *)strdup(data_arg);
        if (data == NULL)
            return admin_fail(a, LK_ERR_NOMEM, NULL);
        len = strlen(data_arg);
    }
    if ((rc = admin_resolve(a, arg, 1, &leaf)) != EXIT_OK || (rc = admin_open(a, ADMIN_OPEN_WRITE)) != EXIT_OK ||
        (rc = admin_device_id(a, leaf, &idbuf, &id)) != EXIT_OK)
        goto out;
    if (ROP_REMOTE(a)) {
        /* The API waits for the broker itself and answers the outcome; an
         * interrupted tool stops waiting, but latchkeyd decides the command. */
        struct sigaction sa, old_int, old_term;
        lk_reg_command_status st;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        api_set_stop(a->api, &interrupted);
        err = rop_remote_command(a, &a->name, id, subfolder, data, len, &st, why, sizeof why);
        api_set_stop(a->api, NULL);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (interrupted) {
            fprintf(stderr, "latchkey: %s: interrupted; if latchkeyd got the command, it still decides it "
                            "(it waits for the broker itself)\n", a->cmd);
            rc = EXIT_INTERRUPTED;
        } else {
            rc = err != LK_OK ? admin_fail(a, err, why) : report_outcome(a, id, st, 0, 0, timeout_s);
        }
        goto out;
    }
    err = lk_registry_command_send(a->reg, &a->name, id, subfolder, data, len, &cid, why, sizeof why);
    if (err != LK_OK) {
        rc = admin_fail(a, err, why);
        goto out;
    }
    rc = wait_outcome(a, id, cid, timeout_s);
out:
    free(data);
    free(idbuf);
    return rc;
}

int cmd_devices_commands(int argc, char **argv)
{
    struct admin a;
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(commands_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "send") != 0)
        return tool_usage_error("devices commands: unknown command '%s' (send)", argv[1]);
    admin_init(&a, "devices commands send", commands_usage);
    a.remote_ok = 1;
    rc = cmd_send(&a, argc - 1, argv + 1);
    admin_close(&a);
    return out_finish(rc);
}
