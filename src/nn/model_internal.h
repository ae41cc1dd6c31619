/* The model's graph node, shared by model.c (which builds and runs the graph) and the
 * exporters that walk it (src/io/onnx_export.c). Private to the library: not installed. */
#ifndef BARLOW_NN_MODEL_INTERNAL_H
#define BARLOW_NN_MODEL_INTERNAL_H
#include <stddef.h>

enum { N_CONV, N_BN, N_RELU, N_MAXPOOL, N_AVGPOOL, N_ADD, N_LINEAR };

struct bt_node {
    int type;
    int in, in2, out;      /* activation ids (in2: second addend) */
    int w, b;              /* param indices: conv/linear weight; BN gamma (w) and beta (b) */
    int rm, rv;            /* BN running stats (bufs indices) */
    int k, stride, pad;    /* conv kernel (R=S=k) / max-pool window */
    size_t stat_off;       /* BN: mean at +0, rstd at +C; max-pool: argmax (int32) */
};

#endif
