/* Entry points of the evaluation subcommands (argv[0] = the command name; they return the
 * process exit status: 0 done, 1 failure while working, 2 bad command line). */
#ifndef BARLOW_CLI_CMD_EVAL_H
#define BARLOW_CLI_CMD_EVAL_H

/* `barlow knn DATA --weights FILE`: weighted kNN top-1/top-5 on frozen features. */
int bt_cmd_knn(int argc, char **argv);
/* `barlow linear DATA --weights FILE`: linear probe on the frozen backbone (evaluate.py
 * --weights freeze). */
int bt_cmd_linear(int argc, char **argv);
/* `barlow finetune DATA --weights FILE --train-percent 1|10|100`: semi-supervised
 * fine-tuning of backbone + classifier (evaluate.py --weights finetune). */
int bt_cmd_finetune(int argc, char **argv);

#endif
