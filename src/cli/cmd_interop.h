/* Entry points of the interop subcommands (argv[0] is the command name; exit status 0 done,
 * 1 failure while working, 2 bad command line). */
#ifndef BARLOW_CLI_CMD_INTEROP_H
#define BARLOW_CLI_CMD_INTEROP_H

/* `barlow export CHECKPOINT --format safetensors|onnx --out FILE [--with-projector]`. */
int bt_cmd_export(int argc, char **argv);
/* `barlow embed DATA --weights FILE --out features.npy [--arch A] [--split S] ...`. */
int bt_cmd_embed(int argc, char **argv);

#endif
