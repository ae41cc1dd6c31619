/* The Barlow Twins network: a torchvision-compatible ResNet backbone (fc removed, as the
 * reference does) followed by the MLP projector, plus the loss's BatchNorm1d running
 * statistics. Parameters, gradients and LARS momentum each live in one buffer addressed by
 * `params`; BN running statistics in one buffer addressed by `bufs`. Tensor names are those
 * of the reference's state_dict without its "backbone." prefix: "conv1.weight",
 * "layer1.0.bn1.running_mean", "projector.0.weight", "bn.running_mean".
 *
 * The forward pass is a list of nodes over an activation arena sized once per batch shape
 * (bt_model_prepare); each of the two views has its own arena, so view 1 and view 2 are
 * normalised with their own batch statistics exactly as the reference's two backbone calls.
 * As in PyTorch's in-place ReLU and `out += identity`, a ReLU or residual add whose input
 * nothing else reads overwrites that input: several activation ids then share storage (same
 * act_off), and only the last value written there is available afterwards. Gradients live in
 * one smaller arena planned by liveness: a gradient occupies memory only from the backward of
 * its last consumer to that of its producer.
 *
 * Every buffer of the model (parameters, gradients, momentum, BN statistics, activations,
 * their gradients) is memory of the model's backend (include/barlow/backend.h), which may be a
 * device: the model runs every op through the backend's table and never touches that memory
 * itself. Host code reads and writes the parameter groups through the host image `host`
 * after bt_model_to_host / before bt_model_to_device, and the features through
 * bt_model_copy_features. On the CPU backend the host image is the backend memory itself
 * (the copies cost nothing). */
#ifndef BARLOW_MODEL_H
#define BARLOW_MODEL_H
#include "barlow/backend.h"
#include "barlow/ops.h"
#include "barlow/tensor.h"
#include <stdint.h>

#define BT_MAX_PROJ 8

typedef struct {
    char arch[64];          /* as given, e.g. "resnet18-cifar:w=0.25" */
    int blocks[4];          /* blocks per stage */
    int bottleneck;         /* 1 for resnet50+ */
    int cifar;              /* 3x3 stride-1 stem, no max-pool */
    double width;           /* channel multiplier (1 = torchvision) */
    int widths[4];          /* stage base widths: round(64*width*2^i) */
    int feat_dim;           /* backbone output: widths[3] * expansion */
    int nproj;              /* projector layer count (0 = backbone only) */
    int proj[BT_MAX_PROJ];  /* projector output sizes, e.g. 8192 8192 8192 */
} bt_model_cfg;

/* Parses "resnet{18,34,50,101,152}[-cifar][:w=F]" and a projector spec "8192-8192-8192"
 * (NULL or "" for none). Errors name the offending text. */
int bt_model_cfg_parse(bt_model_cfg *c, const char *arch, const char *projector);

/* What bt_model_write / bt_model_read cover. */
enum {
    BT_IO_PARAMS = 1,      /* learnable tensors, under their own names */
    BT_IO_BUFS = 2,        /* BN running statistics */
    BT_IO_GRADS = 4,       /* gradients, as "grad.<name>" */
    BT_IO_MOMENTUM = 8,    /* LARS momentum, as "momentum.<name>" */
    BT_IO_BACKBONE = 16,   /* restrict to the backbone (no projector, no loss BN) */
};

typedef struct bt_node bt_node;

typedef struct {
    bt_model_cfg cfg;
    bt_tensor_table params;  /* learnable tensors */
    bt_tensor_table bufs;    /* BN running_mean / running_var */
    bt_backend *be;          /* runs every op and owns every buffer below */
    int own_be;              /* be was made by bt_model_new (freed with the model) */
    float *p;                /* (params.total) parameters       [backend memory] */
    float *g;                /* (params.total) gradients        [backend memory] */
    float *mom;              /* (params.total) LARS momentum    [backend memory] */
    float *b;                /* (bufs.total) running statistics [backend memory] */
    struct {                 /* host image of the four groups above (the same pointers on a */
        float *p, *g, *mom, *b; /* backend whose memory is host memory) */
    } host;
    int64_t bn_batches;      /* num_batches_tracked of every BN (they move together) */
    float bn_momentum, bn_eps;

    /* graph */
    bt_node *nodes;
    int nnodes, cap_nodes;
    int nacts;
    int *act_c, *act_h, *act_w; /* per activation: channels, height, width (batch is N) */
    int feat_act, out_act;   /* backbone features (N, feat_dim); model output (N, proj[-1]) */
    int loss_rm, loss_rv;    /* indices in bufs of "bn.running_mean/var" (-1: no projector) */

    /* arenas, sized by bt_model_prepare */
    int N, H, W;
    size_t *act_off;         /* per activation, offset in floats in an arena (shared when in place) */
    size_t *grad_off;        /* per activation, offset in floats of its gradient in dact */
    int *born_at, *born_act; /* the activations whose gradient is zeroed before node i's
                                backward: born_act[born_at[i] .. born_at[i+1]), i <= nnodes */
    int *grad_birth;         /* per activation: the node before whose backward its gradient
                                buffer is zeroed (-1: shares the buffer of another activation) */
    int *grad_root;          /* per activation: the activation whose gradient buffer its own
                                gradient shares (itself when grad_birth >= 0; 0 for the input) */
    size_t act_total, stat_total, grad_total;
    float *act[2];           /* (act_total) per view */
    float *stat[2];          /* (stat_total) per view: BN mean/rstd, max-pool argmax */
    float *dact;             /* (grad_total) gradient arena, shared by the views */
    float *dz[2];            /* (N, out_dim) loss gradients per view */
    struct bt_plan **plans;  /* (nnodes) the backend's plan of each node for this batch shape */
    int training[2];         /* mode of each view's last forward (the backward follows it) */
    const struct bt_comm *comm; /* data-parallel ranks: BN statistics span them (NULL: one) */
    /* Called by bt_model_backward, when set, after each node with parameters: every gradient
     * at offsets >= `lo` of m->g is final for this backward (lets the gradient all-reduce
     * start while the rest of the backward runs). A non-zero return aborts the backward. */
    int (*grad_ready)(void *ctx, size_t lo);
    void *grad_ready_ctx;
    size_t grad_bucket;      /* floats per gradient all-reduce bucket of bt_train_grads (0: 1 Mi,
                                4 MiB); small values split a tiny model's all-reduce in tests */
} bt_model;

/* A model on backend `be` (kept, not owned; it must outlive the model). */
int bt_model_new_on(bt_model **m, bt_backend *be, const char *arch, const char *projector);
/* The same on a CPU backend of its own, with the process's settings. */
int bt_model_new(bt_model **m, const char *arch, const char *projector);
void bt_model_free(bt_model *m);
/* torchvision's initialisation (kaiming_normal fan_out for convs, BN weight 1 bias 0,
 * zero_init_residual=True, nn.Linear's default uniform(-1/sqrt(in), 1/sqrt(in)) for the
 * projector), from our seeded generator; running stats (0, 1); momentum zeroed. */
void bt_model_init(bt_model *m, uint64_t seed);
/* Sizes the arenas for batch N of H x W images and makes every node's plan (no-op if
 * unchanged). The one place a batch shape reaches the model. */
int bt_model_prepare(bt_model *m, int N, int H, int W);
/* Forward of one view: x (N,3,H,W) in HOST memory (a loader batch), copied in with the
 * backend's to_device. training: batch statistics, running stats updated.
 * upto_features: stop after the backbone. Returns BT_OK or an error. */
int bt_model_forward(bt_model *m, int view, const float *x, int training, int upto_features);
/* Backbone features (N, feat_dim) and model output (N, proj[-1]) of a view's last forward,
 * in backend memory (for backend ops; host code uses bt_model_copy_features). */
const float *bt_model_features(const bt_model *m, int view);
const float *bt_model_output(const bt_model *m, int view);
/* Copies the first n rows of a view's features (n, feat_dim) [or output (n, out_dim) with
 * output set] into host memory dst. */
int bt_model_copy_features(const bt_model *m, int view, float *dst, int n, int output);
/* Backward of one view from dout (N, out_dim) [or (N, feat_dim) when from_features] in
 * backend memory: accumulates parameter gradients into m->g. */
int bt_model_backward(bt_model *m, int view, const float *dout, int from_features);
/* The same with dout in host memory (copied in with to_device). */
int bt_model_backward_host(bt_model *m, int view, const float *dout, int from_features);
/* Zeroes the gradients m->g. */
int bt_model_zero_grads(bt_model *m);

/* The explicit copies between the backend's buffers and the host image m->host, for the
 * groups in `what` (BT_IO_PARAMS, BT_IO_BUFS, BT_IO_GRADS, BT_IO_MOMENTUM of train.h):
 * to_host before host code reads them (checkpoints, exports, images), to_device after it
 * wrote them (initialisation, checkpoint loads). No-ops where the host image is the memory. */
int bt_model_to_host(const bt_model *m, int what);
int bt_model_to_device(bt_model *m, int what);
/* Output dimension (proj[-1], or feat_dim without projector). */
int bt_model_out_dim(const bt_model *m);

#endif
