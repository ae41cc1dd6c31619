/* Entry points of the barlow subcommands. Each takes the arguments from the command name on
 * (argv[0] is the command, e.g. "pretrain") and returns the process exit status:
 * 0 success, 1 failure while working, 2 bad command line or configuration. */
#ifndef BARLOW_CLI_COMMANDS_H
#define BARLOW_CLI_COMMANDS_H

/* `barlow pretrain DATA [options]`: Barlow Twins pretraining with checkpoints and resume. */
int bt_cmd_pretrain(int argc, char **argv);

/* The data-parallel communicator of this process (NULL: a single process), set up by main()
 * before any command runs (bt_comm_open). */
struct bt_comm;
extern const struct bt_comm *bt_cli_comm;
/* The backend settings taken from the environment by main (BT_CONV_WINOGRAD: "0" im2col
 * only, "2", "4", "24" or "244" the Winograd tiles of bt_backend_cfg.winograd; unset: the
 * default, 244), already applied to the CPU ops; a command that makes a backend starts from
 * it. */
#include "barlow/backend.h"
extern bt_backend_cfg bt_cli_backend_cfg;

#endif
