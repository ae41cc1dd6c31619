/* `barlow export CHECKPOINT --format safetensors|onnx --out FILE`: hands a trained model to
 * PyTorch (a state_dict torchvision / main.py load strictly) or to ONNX runtimes. */
#include "barlow/error.h"
#include "barlow/interop.h"
#include "barlow/onnx.h"
#include "cli/args.h"
#include "cli/cmd_interop.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f, const bt_arg *opts, int n) {
    fprintf(f, "usage: barlow export CHECKPOINT --format safetensors|onnx --out FILE [options]\n"
               "Exports the model of CHECKPOINT (a barlow training checkpoint, or any barlow /\n"
               "torchvision-named safetensors weights with --arch or an 'arch' in its metadata):\n"
               "  safetensors  the backbone as torchvision's resnet state_dict (fc = Identity),\n"
               "               num_batches_tracked included; with --with-projector the whole\n"
               "               BarlowTwins module of the reference main.py (backbone.*,\n"
               "               projector.*, bn.*). load_state_dict(strict=True) takes either.\n"
               "  onnx         the backbone in eval mode (opset %d): input \"input\" (batch, 3, H, W),\n"
               "               output \"features\" (batch, feat_dim), batch dimension dynamic.\n"
               "CIFAR variants (-cifar) need two module changes in torchvision's resnet:\n"
               "  conv1 = Conv2d(3, w, 3, 1, 1, bias=False) and maxpool = Identity().\n"
               "Options:\n", BT_ONNX_OPSET);
    bt_args_help(f, opts, n);
}

int bt_cmd_export(int argc, char **argv) {
    const char *format = NULL, *out = NULL, *arch = NULL;
    int with_projector = 0, image_size = 0, help = 0;
    bt_arg opts[] = {
        {"format", BT_ARG_CHOICE, &format, NULL, 1, 0, "safetensors|onnx", "output format", 0},
        {"out", BT_ARG_STRING, &out, NULL, 1, 0, NULL, "output file", 0},
        {"with-projector", BT_ARG_FLAG, &with_projector, NULL, 1, 0, NULL,
         "safetensors: also the projector and loss BN (reference BarlowTwins state_dict)", 0},
        {"arch", BT_ARG_STRING, &arch, NULL, 1, 0, NULL,
         "architecture, for weights files that do not record it", 0},
        {"image-size", BT_ARG_INT, &image_size, "0", 0, 65536, NULL,
         "onnx: fix H = W to this size (0 = dynamic height and width)", 0},
        {"help", BT_ARG_FLAG, &help, NULL, 1, 0, NULL, "show this help", 0},
    };
    int nopts = (int)(sizeof opts / sizeof *opts), npos = 0;
    const char *pos[1];
    int rc = bt_args_parse(opts, nopts, argc, argv, 1, pos, 1, &npos);
    if (!rc && help) {
        usage(stdout, opts, nopts);
        return 0;
    }
    if (!rc && npos < 1) rc = bt_fail(BT_EINVAL, "missing CHECKPOINT; see --help");
    if (!rc && !format) rc = bt_fail(BT_EINVAL, "--format is required (safetensors or onnx)");
    if (!rc && !out) rc = bt_fail(BT_EINVAL, "--out is required");
    if (!rc && with_projector && strcmp(format, "safetensors"))
        rc = bt_fail(BT_EINVAL, "--with-projector: only with --format safetensors");
    if (!rc && image_size && strcmp(format, "onnx"))
        rc = bt_fail(BT_EINVAL, "--image-size: only with --format onnx");
    if (rc) {
        fprintf(stderr, "barlow export: %s\n", bt_error());
        return 2;
    }
    bt_model *m = NULL;
    char *config = NULL;
    rc = bt_model_load_any(&m, pos[0], arch, with_projector, &config);
    if (!rc && !strcmp(format, "onnx")) rc = bt_onnx_export(m, out, image_size);
    else if (!rc) rc = bt_export_safetensors(m, out, with_projector, config);
    if (!rc)
        printf("wrote %s: %s %s%s (feature dim %d)\n", out, m->cfg.arch,
               with_projector ? "backbone + projector" : "backbone", !strcmp(format, "onnx") ? " as ONNX" : "",
               m->cfg.feat_dim);
    else
        fprintf(stderr, "barlow export: %s\n", bt_error());
    free(config);
    bt_model_free(m);
    bt_args_free(opts, nopts);
    return rc ? 1 : 0;
}
