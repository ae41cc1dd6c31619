/* The barlow command-line program: dispatches `barlow COMMAND ...` to the command's entry
 * point (each takes argc/argv with argv[0] = the command name). */
#include "barlow/comm.h"
#include "barlow/cpu.h"
#include "barlow/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cmd_eval.h"
#include "cli/cmd_interop.h"
#include "cli/cmd_report.h"
#include "cli/commands.h"

#define BARLOW_VERSION "0.1.0"

int bt_cmd_augment_preview(int argc, char **argv);

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} bt_command;

static const bt_command commands[] = {
    {"pretrain", bt_cmd_pretrain, "Barlow Twins pretraining (checkpoints, exact resume, logs)"},
    {"knn", bt_cmd_knn, "weighted kNN accuracy of frozen backbone features"},
    {"linear", bt_cmd_linear, "linear probe on the frozen backbone (evaluate.py --weights freeze)"},
    {"finetune", bt_cmd_finetune, "semi-supervised fine-tuning on 1/10/100% of the labels"},
    {"export", bt_cmd_export, "export a checkpoint as torchvision safetensors or ONNX"},
    {"embed", bt_cmd_embed, "backbone features of a dataset as a NumPy .npy file"},
    {"report", bt_cmd_report, "PNG pictures of a run: loss, learning rates, kNN, C, PCA"},
    {"augment-preview", bt_cmd_augment_preview,
     "write a PNG grid of images beside their two augmented views"},
};
#define NCOMMANDS (int)(sizeof commands / sizeof *commands)

static void usage(FILE *f) {
    fprintf(f, "barlow %s: Barlow Twins self-supervised learning in C\n\n"
               "usage: barlow COMMAND [options]    (barlow help COMMAND for its options)\n\n"
               "commands:\n", BARLOW_VERSION);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --help, --version\n");
}

static const bt_command *find(const char *name) {
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

/* "unknown command" with the closest command name when one is near. */
static int unknown(const char *name) {
    int best = -1, bd = 1 << 30;
    for (int i = 0; i < NCOMMANDS; i++) {
        int d = bt_args_edit_distance(name, commands[i].name);
        if (d < bd) bd = d, best = i;
    }
    if (best >= 0 && bd <= 3)
        fprintf(stderr, "barlow: unknown command '%s' (did you mean '%s'? see barlow --help)\n", name,
                commands[best].name);
    else
        fprintf(stderr, "barlow: unknown command '%s' (see barlow --help)\n", name);
    return 2;
}

const struct bt_comm *bt_cli_comm;
bt_backend_cfg bt_cli_backend_cfg;
static bt_comm *comm_owned;

static void finalize(void) { bt_comm_finalize(comm_owned); }

int main(int argc, char **argv) {
    /* Under mpirun/srun (MPI builds), every rank joins the job before anything else runs;
     * only rank 0 talks on stdout. */
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
    int launched = ws || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("SLURM_PROCID");
    int crc = bt_comm_open(&comm_owned, &argc, &argv, launched, ws ? atoi(ws) : 0);
    if (crc != BT_OK) { /* a launch this build cannot serve is a usage error */
        fprintf(stderr, "barlow: %s\n", bt_error());
        return crc == BT_EINVAL ? 2 : 1;
    }
    bt_cli_comm = comm_owned;
    /* Only the program reads the environment; the library takes its settings from here. */
    bt_backend_cfg_default(&bt_cli_backend_cfg);
    const char *wino = getenv("BT_CONV_WINOGRAD");
    /* BARLOW_GEMM_KC: the GEMM's depth block, for tests and tuning (backend.h) */
    const char *kc = getenv("BARLOW_GEMM_KC");
    if (kc && *kc) {
        char *end;
        long v = strtol(kc, &end, 10);
        if (*end || v < 8 || v > 2048 || v % 8) {
            fprintf(stderr, "barlow: BARLOW_GEMM_KC=%s: must be a multiple of 8 from 8 to 2048 "
                    "(unset: from the L1 size)\n", kc);
            return 2;
        }
        bt_cli_backend_cfg.gemm_kc = (int)v;
    }
    if ((wino && bt_backend_winograd_parse(wino, &bt_cli_backend_cfg.winograd) != BT_OK) ||
        bt_backend_cpu_settings(&bt_cli_backend_cfg) != BT_OK) {
        fprintf(stderr, "barlow: %s\n", bt_error());
        return 2;
    }
    if (comm_owned) {
        atexit(finalize);
        if (comm_owned->rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    /* BARLOW_ISA forces the kernels' path (the library reads no environment). A path this
     * CPU lacks, or a misspelt one, stops here rather than running some other path. */
    const char *isa = getenv("BARLOW_ISA");
    if (isa && *isa && bt_isa_select(isa) != BT_OK) {
        fprintf(stderr, "barlow: BARLOW_ISA=%s: %s\n", isa, bt_error());
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("barlow %s\n", BARLOW_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        const bt_command *c = find(argv[2]);
        if (!c) return unknown(argv[2]);
        char *args[] = {(char *)c->name, "--help", NULL};
        return c->run(2, args);
    }
    const bt_command *c = find(cmd);
    if (!c) return unknown(cmd);
    return c->run(argc - 1, argv + 1);
}
