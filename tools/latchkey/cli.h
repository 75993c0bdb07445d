/*
 * The commands of `latchkey`, as main.c dispatches them: each takes the
 * command line from its own name on (argv[0] = "key", "devices"...) and
 * returns an exit code (exit.h). A command file never calls back up into
 * main.c.
 */
#ifndef LK_TOOL_CLI_H
#define LK_TOOL_CLI_H

int cmd_key(int argc, char **argv);                   /* cmd_key.c */
int cmd_token(int argc, char **argv);                 /* cmd_token.c */
int cmd_token_verify(int argc, char **argv);          /* cmd_token_verify.c */
int cmd_ca(int argc, char **argv);                    /* cmd_ca.c */
int cmd_provision(int argc, char **argv);             /* cmd_provision.c */
int cmd_broker(int argc, char **argv);                /* broker check FILE (cmd_broker.c) */
int cmd_setup(int argc, char **argv);                 /* cmd_setup.c */
/* broker check FILE itself (cmd_broker.c), which setup runs too: prints
 * the findings, returns EXIT_OK or EXIT_BROKER_CHECK (or why not read). */
int broker_check(const char *path, int json);
int cmd_registries(int argc, char **argv);            /* cmd_registries.c */
int cmd_registries_import(int argc, char **argv);     /* cmd_import.c */
int cmd_registries_jit(int argc, char **argv);        /* cmd_registries_jit.c */
int cmd_devices(int argc, char **argv);               /* cmd_devices.c */
int cmd_devices_import(int argc, char **argv);        /* cmd_import.c */
int cmd_gateways_import(int argc, char **argv);       /* cmd_import.c: devices gateways import */
int cmd_devices_commands(int argc, char **argv);      /* cmd_commands.c */
int cmd_backends(int argc, char **argv);              /* cmd_backends.c */
int cmd_subscriptions(int argc, char **argv);         /* cmd_subscriptions.c */
int cmd_service_accounts(int argc, char **argv);      /* cmd_service_accounts.c */
int cmd_operators(int argc, char **argv);             /* cmd_operators.c */
int cmd_audit(int argc, char **argv);                 /* cmd_operators.c: audit list|export */
int cmd_backup(int argc, char **argv);                /* cmd_backup.c */
int cmd_restore(int argc, char **argv);               /* cmd_backup.c */
int cmd_migrate(int argc, char **argv);               /* cmd_backup.c */

#endif
