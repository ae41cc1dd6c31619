/* `barlow report RUN_DIR [--out DIR]`: PNG charts of a pretraining run (see cmd_report.c). */
#ifndef BARLOW_CLI_CMD_REPORT_H
#define BARLOW_CLI_CMD_REPORT_H

/* argv[0] = "report". Returns 0 on success, 1 on failure while working, 2 on a bad command
 * line (including a missing RUN_DIR). */
int bt_cmd_report(int argc, char **argv);

#endif
