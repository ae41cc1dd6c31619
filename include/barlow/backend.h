/* The compute backend: a table of functions through which the model (src/nn) and the training
 * step (src/train) run every op and touch every buffer they own, so that one model code runs
 * on the CPU (src/backend/cpu.c, over src/ops) and on a device (a later CUDA backend).
 *
 * Memory. Buffers from `alloc` belong to the backend and may be device memory: code above the
 * backend never dereferences them and never calls memcpy/memset on them. Host data enters and
 * leaves through `to_device` / `to_host`, called by name where it happens (after a checkpoint
 * is read, before one is written); `copy` and `zero` work inside backend memory. `host_alloc`
 * gives host memory the backend can read from quickly (pinned memory on a GPU; the loader's
 * ring slots). Ops may run asynchronously: `sync` waits for everything issued; `to_host`
 * returns with the data in place.
 *
 * Plans. A node of the model gets one plan per batch shape (`plan_new` in bt_model_prepare,
 * never inside a step): where a GPU backend creates its descriptors and chooses algorithms.
 * The ops with shapes (conv2d, batch norm, max pool, linear) receive their node's plan; a
 * backend without plans (the CPU) returns NULL and ignores it. A plan is only valid for the
 * desc it was made for.
 *
 * Ops. The same contracts as include/barlow/ops.h, loss.h and optim.h (forward overwrites,
 * backward ACCUMULATES into every gradient output, NULL gradient pointers are not computed;
 * the exceptions are named at their entries: the in-place ReLU forms, and the input-gradient
 * flag of conv2d_backward, batchnorm_backward_sync and batchnorm_relu_backward_sync),
 * with every buffer in backend memory except: the loss result (host struct, filled when the
 * call returns), the LARS tensor table and configuration (host), and the communicator.
 * Every function returns BT_OK or a negative code with bt_error() set. A backend must fill
 * every entry: tests/test_backend_ops.c fails on a NULL one.
 *
 * Scratch. `scratch` returns backend memory of at least `bytes` bytes that stays valid until
 * the next call of scratch or of an op of the same backend (one arena per backend, grow-only,
 * so nothing is allocated after the first step). The CPU backend's arena is its own (not the
 * process's default arena of include/barlow/scratch.h): its ops take their temporaries from
 * it through the workspace forms of the ops (bt_conv2d_forward_ws and the like). */
#ifndef BARLOW_BACKEND_H
#define BARLOW_BACKEND_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/augment.h"
#include "barlow/loss.h"
#include "barlow/ops.h"
#include "barlow/optim.h"
#include "barlow/tensor.h"

struct bt_comm;
typedef struct bt_backend bt_backend;
typedef struct bt_plan bt_plan; /* backend-defined; NULL is a valid plan for a backend without them */

/* What a node computes, for plan_new. */
enum {
    BT_OP_CONV2D, BT_OP_BATCHNORM, BT_OP_RELU, BT_OP_ADD, BT_OP_MAXPOOL2D, BT_OP_AVGPOOL,
    BT_OP_LINEAR, BT_OP_XENT, BT_OP_BATCHNORM_RELU, BT_OP_ADD_RELU, BT_OP_COUNT
};

typedef struct {
    int op;              /* BT_OP_* */
    int N, C, H, W;      /* input (N, C, H, W); a 1-D input (N, C) has H = W = 1 */
    int K;               /* output channels (conv), output features (linear), classes (xent) */
    int k, stride, pad;  /* conv kernel (k x k) and max-pool window */
    int sync;            /* batch norm: statistics over the ranks of the model's communicator */
} bt_op_desc;

/* Settings a backend takes from its creator (the CLI maps the environment onto them; the
 * library reads no environment variables). */
typedef struct {
    int threads;   /* compute threads (0: all cores) */
    int winograd;  /* 3x3 stride-1 convolutions: 0 im2col only; 244 Winograd F(2x2,3x3)
                      forward, F(4x4,3x3) input and weight gradients (the process default);
                      24 F(2x2,3x3) forward and weight gradient, F(4x4,3x3) input gradient;
                      2 F(2x2,3x3) for all three; 4 F(4x4,3x3) for all three (opt-in: its
                      forward rounds about 3x worse, outside the PyTorch parity
                      tolerances); -1 the process's setting (src/ops/winograd_internal.h)
                      when the backend is made */
    int gemm_kc;   /* the CPU GEMM's depth block KC on every path: 0 derives it from the L1
                      size (the default); 8 to 2048, a multiple of 8, forces it (tests and
                      tuning: it sets the depth of the partial sums, so the last bits of the
                      results move with it; tests/test_trajectory.c keys its fixtures on it) */
    int precision; /* the convolutions' and linear layers' products, forward and backward:
                      BT_PREC_FP32 (0, the default) or BT_PREC_BF16 (1): operands rounded to
                      bfloat16, sums in float (include/barlow/gemm.h); everything else (batch
                      norm, the loss and its cross-correlation, LARS, the weights) stays
                      float. bf16 is fast only where bt_gemm_bf16_native() holds. With bf16,
                      Winograd runs F(2x2,3x3) for all three products wherever winograd asks
                      for F(4x4): its larger transforms amplify bf16's rounding past the
                      parity bound */
} bt_backend_cfg;

/* Defaults: all cores, the process's Winograd setting (-1), KC from the cache (0), float32
 * products. */
void bt_backend_cfg_default(bt_backend_cfg *c);

typedef struct bt_backend_ops {
    const char *name;
    void (*destroy)(bt_backend *be);

    /* ---- memory ---- */
    void *(*alloc)(bt_backend *be, size_t bytes);        /* 64-byte aligned; NULL + error */
    void (*free)(bt_backend *be, void *p);               /* p may be NULL */
    void *(*host_alloc)(bt_backend *be, size_t bytes);   /* host memory (pinned on a GPU) */
    void (*host_free)(bt_backend *be, void *p);
    int (*to_device)(bt_backend *be, void *dst, const void *src_host, size_t bytes);
    int (*to_host)(bt_backend *be, void *dst_host, const void *src, size_t bytes);
    int (*copy)(bt_backend *be, void *dst, const void *src, size_t bytes);
    int (*zero)(bt_backend *be, void *p, size_t bytes);
    int (*sync)(bt_backend *be);
    void *(*scratch)(bt_backend *be, size_t bytes);

    /* ---- plans, once per node and batch shape ---- */
    int (*plan_new)(bt_backend *be, const bt_op_desc *d, bt_plan **plan);
    void (*plan_free)(bt_backend *be, bt_plan *plan); /* plan may be NULL */

    /* ---- ops (ops.h contracts) ---- */
    int (*conv2d_forward)(bt_backend *be, const bt_plan *pl, float *out, const float *in,
                          const float *w, const float *b, const bt_conv2d_desc *d);
    /* dinp_set, and dx_set of the two batch-norm backwards below: 0 the input gradient +=, as
     * every backward; 1: this op is the first writer of dx in this backward: dx is written,
     * its previous contents are ignored (the model then skips zeroing it). The bits must be
     * those of += on a zeroed buffer. The parameter gradients accumulate either way. */
    int (*conv2d_backward)(bt_backend *be, const bt_plan *pl, float *dinp, float *dw, float *db,
                           const float *dout, const float *in, const float *w,
                           const bt_conv2d_desc *d, int dinp_set);
    int (*batchnorm_forward)(bt_backend *be, const bt_plan *pl, float *y, float *mean,
                             float *rstd, const float *x, const float *gamma, const float *beta,
                             float *running_mean, float *running_var, int N, int C, int HW,
                             int training, float momentum, float eps);
    int (*batchnorm_backward)(bt_backend *be, const bt_plan *pl, float *dx, float *dgamma,
                              float *dbeta, const float *dy, const float *x, const float *gamma,
                              const float *mean, const float *rstd, int N, int C, int HW,
                              int training);
    /* SyncBatchNorm: statistics over the ranks of comm (NULL / one rank: the above); the
     * backward with dx_set as conv2d_backward's dinp_set. */
    int (*batchnorm_forward_sync)(bt_backend *be, const bt_plan *pl, float *y, float *mean,
                                  float *rstd, const float *x, const float *gamma,
                                  const float *beta, float *running_mean, float *running_var,
                                  int N, int C, int HW, int training, float momentum, float eps,
                                  const struct bt_comm *comm);
    int (*batchnorm_backward_sync)(bt_backend *be, const bt_plan *pl, float *dx, float *dgamma,
                                   float *dbeta, const float *dy, const float *x,
                                   const float *gamma, const float *mean, const float *rstd,
                                   int N, int C, int HW, int training,
                                   const struct bt_comm *comm, int dx_set);
    int (*relu_forward)(bt_backend *be, float *y, const float *x, size_t n);
    int (*relu_backward)(bt_backend *be, float *dx, const float *dy, const float *y, size_t n);
    /* The exception to `+=`: the ReLU backward in place on its output gradient,
     * d = y <= 0 ? 0 : d, used where the model's planner lets dx share dy's buffer. */
    int (*relu_backward_inplace)(bt_backend *be, float *d, const float *y, size_t n);
    int (*add_forward)(bt_backend *be, float *y, const float *a, const float *b, size_t n);
    int (*add_backward)(bt_backend *be, float *da, float *db, const float *dy, size_t n);
    int (*maxpool2d_forward)(bt_backend *be, const bt_plan *pl, float *y, int32_t *argmax,
                             const float *x, int N, int C, int H, int W, int k, int stride,
                             int pad);
    int (*maxpool2d_backward)(bt_backend *be, const bt_plan *pl, float *dx, const float *dy,
                              const int32_t *argmax, int N, int C, int H, int W, int OH, int OW);
    int (*avgpool_forward)(bt_backend *be, float *y, const float *x, int N, int C, int HW);
    int (*avgpool_backward)(bt_backend *be, float *dx, const float *dy, int N, int C, int HW);
    int (*linear_forward)(bt_backend *be, const bt_plan *pl, float *y, const float *x,
                          const float *w, const float *b, int N, int In, int O);
    int (*linear_backward)(bt_backend *be, const bt_plan *pl, float *dx, float *dw, float *db,
                           const float *dy, const float *x, const float *w, int N, int In,
                           int O);
    /* loss (1 float, backend memory), probs (N,K), labels (N) in backend memory. */
    int (*xent_forward)(bt_backend *be, float *loss, float *probs, const float *logits,
                        const int32_t *labels, int N, int K);
    int (*xent_backward)(bt_backend *be, float *dlogits, const float *probs,
                         const int32_t *labels, float dloss, int N, int K);

    /* ---- the Barlow Twins loss (loss.h; form DIRECT, GRAM or AUTO) ---- */
    int (*bt_loss)(bt_backend *be, bt_loss_result *res, float *dz1, float *dz2, const float *z1,
                   const float *z2, int N, int D, float lambda, int form, float *running_mean,
                   float *running_var);
    /* Over the global batch of every rank of comm (NULL / one rank: bt_loss). */
    int (*bt_loss_sync)(bt_backend *be, bt_loss_result *res, float *dz1, float *dz2,
                        const float *z1, const float *z2, int N, int D, float lambda, int form,
                        float *running_mean, float *running_var, const struct bt_comm *comm);

    /* ---- the optimiser (optim.h): params, mom updated; grads read ---- */
    int (*lars_step)(bt_backend *be, float *params, const float *grads, float *mom,
                     const bt_tensor_table *tab, const bt_lars_cfg *cfg);

    /* ==== the data pipeline (augment.h; issue 19), apart from the training ops above ==== */
    /* Each view's per-pixel half (bt_aug_pixel: ColorJitter, grayscale, blur, solarize,
     * ToTensor + Normalize) on n crops that the loader's geometric half made: crops
     * (n, S, S, 3) uint8 in backend memory, changed in place; prm (n) host, drawn as the
     * loader draws them; out (n, 3, S, S) in backend memory. Equal to bt_aug_pixel on each
     * crop, bit for bit, so where it runs never shows in the batch. */
    int (*aug_pixel)(bt_backend *be, float *out, uint8_t *crops, const bt_aug_params *prm,
                     int n, int S, const float mean[3], const float std[3]);

    /* ==== fused ops (ops.h; issue 16): an op and the ReLU after it in one pass ==== */
    /* Batch norm + ReLU, synchronised as batchnorm_forward_sync (comm NULL / one rank: local):
     * y = max(0, BN(x)), the statistics those of BN(x). The backward takes dy of the ReLU's
     * output and y, the forward's output, and accumulates dx, dgamma, dbeta as
     * batchnorm_backward_sync of dy masked by y > 0 (dx_set 1: this op is the first writer of
     * dx in this backward: dx is written, its previous contents are ignored). */
    int (*batchnorm_relu_forward_sync)(bt_backend *be, const bt_plan *pl, float *y, float *mean,
                                       float *rstd, const float *x, const float *gamma,
                                       const float *beta, float *running_mean,
                                       float *running_var, int N, int C, int HW, int training,
                                       float momentum, float eps, const struct bt_comm *comm);
    int (*batchnorm_relu_backward_sync)(bt_backend *be, const bt_plan *pl, float *dx,
                                        float *dgamma, float *dbeta, const float *dy,
                                        const float *y, const float *x, const float *gamma,
                                        const float *mean, const float *rstd, int N, int C,
                                        int HW, int training, const struct bt_comm *comm,
                                        int dx_set);
    /* Add + ReLU: y = max(0, a + b); da += g, db += g with g = y <= 0 ? 0 : dy (either may be
     * NULL); and the in-place form for an addend whose gradient shares dy's buffer d:
     * d = y <= 0 ? 0 : d, then db += d (db may be NULL). */
    int (*add_relu_forward)(bt_backend *be, float *y, const float *a, const float *b, size_t n);
    int (*add_relu_backward)(bt_backend *be, float *da, float *db, const float *dy,
                             const float *y, size_t n);
    int (*add_relu_backward_inplace)(bt_backend *be, float *d, float *db, const float *y,
                                     size_t n);
} bt_backend_ops;

struct bt_backend {
    const bt_backend_ops *ops;
    bt_backend_cfg cfg;
    int host_memory; /* 1: alloc returns host memory (the CPU), so a host image of a buffer
                        may be the buffer itself */
    void *impl;      /* the backend's own state */
};

/* Creates a backend by name ("cpu"; the names bt_backend_name lists). cfg NULL: defaults.
 * An unknown or not compiled name is BT_EINVAL naming the ones there are. */
int bt_backend_new(bt_backend **be, const char *name, const bt_backend_cfg *cfg);
void bt_backend_free(bt_backend *be);
/* The backends compiled into this build: i in [0, bt_backend_count()). */
int bt_backend_count(void);
const char *bt_backend_name(int i);

/* be->ops->host_alloc / host_free in the form of the loader's slot hooks (ctx = the backend). */
void *bt_backend_host_alloc_hook(void *be, size_t bytes);
void bt_backend_host_free_hook(void *be, void *p);

/* The CPU backend (src/backend/cpu.c): the functions of src/ops and src/train. Its memory is
 * host memory, to_host/to_device are memcpy, and it keeps no plans. It owns its scratch arena
 * and its Winograd choice (winograd -1: the process setting when it is made); the thread
 * count (threads > 0) is applied to the process's ops (bt_set_threads). BT_EINVAL for a
 * winograd other than -1, 0, 2, 4, 24, 244. */
int bt_backend_cpu_new(bt_backend **be, const bt_backend_cfg *cfg);
/* Applies threads (when > 0) and winograd (when not -1) to the process settings of the plain
 * op functions (bt_set_threads, bt_wino_set_enabled / set_tile): what the program does with
 * its reading of the environment before it makes backends. BT_EINVAL for a winograd other
 * than -1, 0, 2, 4, 24, 244. */
int bt_backend_cpu_settings(const bt_backend_cfg *cfg);
/* The value of BT_CONV_WINOGRAD (as the program and the benchmarks read it) as a winograd
 * setting: "0", "2", "4", "24" or "244" into *winograd; BT_EINVAL naming the variable for anything
 * else (an empty string included). */
int bt_backend_winograd_parse(const char *s, int *winograd);

#endif
