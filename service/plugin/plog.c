/*
 * plog.c — the plugin's log lines (docs/plugin.md, "Logs"): key=value
 * through kvlog (service/common), and the per-device log levels.
 *
 * A device's level (IoT Core's logLevel: its own, else its registry's, else
 * plugin_opt_log_level) is read with its authentication data and kept in its
 * connection (plg_conn.log_level), so the hot path asks no registry; the
 * change feed's re-check of a changed device or registry refreshes it.
 *
 * Mosquitto formats a plugin's line into strlen(format) + 500 bytes: the
 * line is handed over as the format itself, every '%' doubled, so a long
 * line is never cut in the middle of a field.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "plugin.h"

static const char *plog__name(enum plog_sev sev)
{
    switch (sev) {
    case PLOG_ERROR: return "error";
    case PLOG_WARN: return "warn";
    case PLOG_INFO: return "info";
    default: return "debug";
    }
}

int plog__effective(lk_reg_log_level device, lk_reg_log_level registry)
{
    if (device != LK_LOG_LEVEL_UNSPECIFIED)
        return (int)device;
    if (registry != LK_LOG_LEVEL_UNSPECIFIED)
        return (int)registry;
    return plg.opt.log_level;
}

int plog__level(const struct plg_conn *c)
{
    return c && c->log_level ? c->log_level : plg.opt.log_level;
}

int plog__on(int level, enum plog_sev sev)
{
    switch (level) {
    case LK_LOG_LEVEL_NONE: return 0;
    case LK_LOG_LEVEL_ERROR: return sev <= PLOG_WARN;
    case LK_LOG_LEVEL_DEBUG: return 1;
    default: return sev <= PLOG_INFO;
    }
}

void plog__begin(struct kvlog *l, enum plog_sev sev, const char *event)
{
    kvlog_begin(l, event, plog__name(sev));
}

/* The broker writes NOTICE and above with its default log_type: info and
 * debug lines go out as NOTICE, so that the device's level, not the
 * broker's log_type, decides what is written. */
void plog__emit(struct kvlog *l, enum plog_sev sev)
{
    static char fmt[2 * KVLOG_LINE_MAX + sizeof PLG_LOG_PREFIX];
    int mosq = sev == PLOG_ERROR ? MOSQ_LOG_ERR : sev == PLOG_WARN ? MOSQ_LOG_WARNING : MOSQ_LOG_NOTICE;

    memcpy(fmt, PLG_LOG_PREFIX, sizeof PLG_LOG_PREFIX - 1);
    if (kvlog_format(fmt + sizeof PLG_LOG_PREFIX - 1, sizeof fmt - (sizeof PLG_LOG_PREFIX - 1),
                     kvlog_end(l)) != 0)
        return; /* cannot happen: the line is at most KVLOG_LINE_MAX */
    mosquitto_log_printf(mosq, fmt);
}

static void plog__vline(int level, enum plog_sev sev, const char *event, const char *device,
                        const char *fmt, va_list ap)
{
    struct kvlog l;

    if (!plog__on(level, sev))
        return;
    plog__begin(&l, sev, event);
    kvlog_str(&l, "device", device);
    kvlog_vfmt(&l, "msg", fmt, ap);
    plog__emit(&l, sev);
}

void plog__msg(enum plog_sev sev, const char *event, const char *device, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    plog__vline(plg.opt.log_level, sev, event, device, fmt, ap);
    va_end(ap);
}

void plog__dev(const struct plg_conn *c, enum plog_sev sev, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->kind == CONN_DEVICE || c->kind == CONN_ATTACHED)
        plog__vline(plog__level(c), sev, event, c->client_id, fmt, ap);
    else
        plog__vline(plg.opt.log_level, sev, event, NULL, fmt, ap);
    va_end(ap);
}
