/* The model's graph node, shared by model.c (which builds and runs the graph) and the
 * exporters that walk it (src/io/onnx_export.c). Private to the library: not installed. */
#ifndef BARLOW_NN_MODEL_INTERNAL_H
#define BARLOW_NN_MODEL_INTERNAL_H
#include <stddef.h>

/* N_BN_RELU and N_ADD_RELU are a batch norm or a residual add with the ReLU after it, run as
 * one op (the graph has no activation between the two): the model builds every ResNet BN
 * that a ReLU follows, and every block's add, this way. Their parameters, names and exports
 * are a BN's (an add's) and a ReLU's. */
enum { N_CONV, N_BN, N_RELU, N_MAXPOOL, N_AVGPOOL, N_ADD, N_LINEAR, N_BN_RELU, N_ADD_RELU };

struct bt_node {
    int type;
    int in, in2, out;      /* activation ids (in2: second addend) */
    int w, b;              /* param indices: conv/linear weight; BN gamma (w) and beta (b) */
    int rm, rv;            /* BN running stats (bufs indices); BN here and below: N_BN_RELU too */
    int k, stride, pad;    /* conv kernel (R=S=k) / max-pool window */
    size_t stat_off;       /* BN: mean at +0, rstd at +C; max-pool: argmax (int32) */
};

#endif
