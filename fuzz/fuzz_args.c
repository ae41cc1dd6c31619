/* Fuzz target: the command-line option parser (bt_args_parse with a table like pretrain's,
 * including the unknown-option suggestion, ranges and repeatable options) and the model
 * spec parser bt_model_cfg_parse. The input is split on NUL bytes into argv; the first two
 * pieces are also given to bt_model_cfg_parse as (arch, projector) directly. */
#include "fuzz_util.h"
#include "barlow/error.h"
#include "barlow/model.h"
#include "cli/args.h"

#define FA_MAX_ARGS 64

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1); /* exact size, so ASan sees reads past the last string */
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[FA_MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = "barlow-pretrain";
    for (char *p = buf; p <= buf + size && argc < FA_MAX_ARGS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    int epochs, batch, print_freq, workers, threads, warmup, help;
    double lrw, lrb, wd, lambd;
    long seed, max_steps, save_every;
    const char *projector, *ckdir, *arch, *preset, *loss_form;
    bt_arg_list aug = {0};
    bt_arg opts[] = {
        {"epochs", BT_ARG_INT, &epochs, "1000", 1, 1e9, NULL, "epochs", 0},
        {"batch-size", BT_ARG_INT, &batch, "2048", 2, 1e9, NULL, "batch", 0},
        {"learning-rate-weights", BT_ARG_DOUBLE, &lrw, "0.2", 0, 1e300, NULL, "lr", 0},
        {"learning-rate-biases", BT_ARG_DOUBLE, &lrb, "0.0048", 0, 1e300, NULL, "lr", 0},
        {"weight-decay", BT_ARG_DOUBLE, &wd, "1e-6", 0, 1e300, NULL, "wd", 0},
        {"lambd", BT_ARG_DOUBLE, &lambd, "0.0051", 0, 1e300, NULL, "lambda", 0},
        {"projector", BT_ARG_STRING, &projector, "8192-8192-8192", 1, 0, NULL, "projector", 0},
        {"print-freq", BT_ARG_INT, &print_freq, "100", 1, 1e9, NULL, "print", 0},
        {"checkpoint-dir", BT_ARG_STRING, &ckdir, "./checkpoint/", 1, 0, NULL, "dir", 0},
        {"workers", BT_ARG_INT, &workers, "2", 1, 1024, NULL, "workers", 0},
        {"arch", BT_ARG_STRING, &arch, "resnet50", 1, 0, NULL, "arch", 0},
        {"preset", BT_ARG_CHOICE, &preset, "imagenet", 1, 0, "imagenet|cifar", "preset", 0},
        {"aug", BT_ARG_LIST, &aug, NULL, 1, 0, NULL, "aug", 0},
        {"threads", BT_ARG_INT, &threads, "0", 0, 4096, NULL, "threads", 0},
        {"seed", BT_ARG_LONG, &seed, "0", 0, 9007199254740992.0, NULL, "seed", 0},
        {"warmup-epochs", BT_ARG_INT, &warmup, "10", 0, 1e9, NULL, "warmup", 0},
        {"max-steps", BT_ARG_LONG, &max_steps, "0", 0, 9e18, NULL, "steps", 0},
        {"save-every-steps", BT_ARG_LONG, &save_every, "0", 0, 9e18, NULL, "save", 0},
        {"loss-form", BT_ARG_CHOICE, &loss_form, "auto", 1, 0, "auto|direct|gram", "form", 0},
        {"help", BT_ARG_FLAG, &help, NULL, 1, 0, NULL, "help", 0},
    };
    int nopts = (int)(sizeof opts / sizeof *opts);
    const char *pos[2];
    int npos = 0;
    bt_model_cfg cfg;
    if (bt_args_parse(opts, nopts, argc, argv, 1, pos, 2, &npos) == BT_OK) {
        if (npos < 0 || npos > 2 || aug.n < 0 || (aug.n && !aug.v)) abort();
        for (int i = 0; i < aug.n; i++) (void)strlen(aug.v[i]);
        if (bt_model_cfg_parse(&cfg, arch, projector) == BT_OK &&
            (cfg.nproj < 0 || cfg.nproj > BT_MAX_PROJ || cfg.feat_dim <= 0))
            abort();
    } else if (!bt_error()[0]) {
        abort(); /* every error leaves a message */
    }
    bt_args_free(opts, nopts);
    const char *a = argc > 1 ? argv[1] : "", *p = argc > 2 ? argv[2] : NULL;
    if (bt_model_cfg_parse(&cfg, a, p) == BT_OK) {
        for (int i = 0; i < 4; i++)
            if (cfg.widths[i] < 1 || cfg.blocks[i] < 1) abort();
        for (int i = 0; i < cfg.nproj; i++)
            if (cfg.proj[i] < 1) abort();
    }
    free(buf);
    return 0;
}
