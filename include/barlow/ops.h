/* Neural-network ops as forward/backward pairs over plain float32 buffers.
 *
 * Layout: images are NCHW (batch, channel, row, column), row-major, as in PyTorch; conv
 * weights are (K, C, R, S); linear weights are (out, in). Every buffer argument's shape is
 * written beside it.
 *
 * Conventions:
 *  - Forward functions overwrite their outputs.
 *  - Backward functions ACCUMULATE (+=) into every gradient output (input gradient and
 *    parameter gradients), so fan-out (residual connections, two views sharing weights) needs
 *    no extra code. Callers zero gradient buffers before a backward pass.
 *  - Functions that can fail on bad input return BT_OK or a negative code with bt_error() set.
 *  - Each op has a plain reference implementation templated over float and double
 *    (suffixes _ref_f32 / _ref_f64, see ops_ref.h) used by tests: finite differences run on
 *    the f64 version; the optimised f32 version (no suffix) is compared against _ref_f32.
 *  - Ops that need temporary memory have a workspace form (suffix _ws) taking the arena to
 *    use (include/barlow/scratch.h): a backend passes its own. The plain form is the _ws form
 *    over the process's default arena (bt_default_arena()), for tests and callers without a
 *    backend.
 */
#ifndef BARLOW_OPS_H
#define BARLOW_OPS_H
#include <stddef.h>
#include <stdint.h>
#include "barlow/scratch.h"

/* ---- conv2d (no groups, no dilation) ---------------------------------------------------- */
typedef struct {
    int N, C, H, W;      /* input (N, C, H, W) */
    int K, R, S;         /* weight (K, C, R, S) */
    int stride, pad;     /* same in both directions */
    int OH, OW;          /* output (N, K, OH, OW), filled by bt_conv2d_desc_init */
} bt_conv2d_desc;

/* Validates sizes (all positive, kernel fits the padded input) and computes OH, OW:
 * OH = (H + 2*pad - R) / stride + 1. */
int bt_conv2d_desc_init(bt_conv2d_desc *d, int N, int C, int H, int W, int K, int R, int S,
                        int stride, int pad);
/* out (N,K,OH,OW) = conv(in (N,C,H,W), w (K,C,R,S)) + b (K) [b may be NULL]. */
int bt_conv2d_forward(float *out, const float *in, const float *w, const float *b,
                      const bt_conv2d_desc *d);
/* dinp (N,C,H,W) += ..., dw (K,C,R,S) += ..., db (K) += ... Any of dinp, dw, db may be NULL
 * (not computed: e.g. the first layer needs no input gradient). */
int bt_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *in,
                       const float *w, const bt_conv2d_desc *d);
/* The workspace forms also take the algorithm of 3x3 stride-1 layers: winograd 0 (im2col
 * only), 2 (Winograd F(2x2, 3x3)), 4 (F(4x4, 3x3) for all three passes), 24 (F(2x2)
 * forward and weight gradient, F(4x4) input gradient), 244 (F(2x2) forward, F(4x4) input and
 * weight gradients: the process default), F(4x4) only on maps of 8x8 and more, or
 * BT_WINO_PROCESS: the process setting the plain forms use
 * (src/ops/winograd_internal.h).
 * The backward's dinp_set: 0 dinp += as above; 1 dinp is written, its previous contents
 * ignored (a caller whose dinp this op writes first then needs no zeroing; the bits are those
 * of += on a zeroed dinp). dw and db accumulate either way. */
#define BT_WINO_PROCESS (-1)
int bt_conv2d_forward_ws(bt_arena *ws, int winograd, float *out, const float *in,
                         const float *w, const float *b, const bt_conv2d_desc *d);
int bt_conv2d_backward_ws(bt_arena *ws, int winograd, float *dinp, float *dw, float *db,
                          const float *dout, const float *in, const float *w,
                          const bt_conv2d_desc *d, int dinp_set);

/* ---- batch norm (2-D: HW = H*W; 1-D: HW = 1) ------------------------------------------ */
/* x, y (N, C, HW). gamma, beta (C) or NULL for affine=False. mean, rstd (C) are outputs that
 * the backward reads: in training mode the biased batch statistics (rstd = 1/sqrt(var+eps));
 * in eval mode the running statistics. running_mean/var (C) are updated in training mode with
 * `momentum` using the UNBIASED batch variance (PyTorch semantics); they may be NULL in
 * training mode (track_running_stats=False). Training mode with N*HW == 1 is an error
 * ("Expected more than 1 value per channel when training"). */
int bt_batchnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                         const float *beta, float *running_mean, float *running_var, int N,
                         int C, int HW, int training, float momentum, float eps);
/* dx (N,C,HW) +=, dgamma, dbeta (C) += [NULL when affine=False]. In eval mode mean/rstd are
 * constants, so dx = dy * gamma * rstd. */
void bt_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int HW, int training);

/* Synchronised (SyncBatchNorm) versions: in training mode the statistics, and the backward's
 * two channel sums, cover the global batch of every rank of `comm` (N is this rank's share).
 * comm NULL / one rank / eval mode: exactly the functions above. dgamma/dbeta receive this
 * rank's share only; the gradient all-reduce sums the shares. The backward's workspace form
 * takes dx_set: 0 dx += as above; 1 dx is written, its previous contents ignored (the bits of
 * += on a zeroed dx), for a caller whose dx this op writes first; dgamma, dbeta accumulate
 * either way. The plain form accumulates. */
struct bt_comm;
int bt_batchnorm_forward_sync(float *y, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int N, int C, int HW, int training,
                              float momentum, float eps, const struct bt_comm *comm);
int bt_batchnorm_backward_sync(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *gamma, const float *mean,
                               const float *rstd, int N, int C, int HW, int training,
                               const struct bt_comm *comm);
int bt_batchnorm_forward_sync_ws(bt_arena *ws, float *y, float *mean, float *rstd,
                                 const float *x, const float *gamma, const float *beta,
                                 float *running_mean, float *running_var, int N, int C, int HW,
                                 int training, float momentum, float eps,
                                 const struct bt_comm *comm);
int bt_batchnorm_backward_sync_ws(bt_arena *ws, float *dx, float *dgamma, float *dbeta,
                                  const float *dy, const float *x, const float *gamma,
                                  const float *mean, const float *rstd, int N, int C, int HW,
                                  int training, const struct bt_comm *comm, int dx_set);

/* Batch norm + ReLU in one op (a BatchNorm2d followed by an nn.ReLU): y = max(0, BN(x)),
 * written once; the batch norm's own output is never stored. The statistics, mean, rstd and
 * running stats are those of bt_batchnorm_forward on x; y is, bit for bit, bt_relu_forward of
 * its output. The backward takes dy, the gradient of the ReLU's output, and y, the forward's
 * output: dx, dgamma, dbeta are, bit for bit, bt_batchnorm_backward of dy masked as
 * bt_relu_backward_inplace masks it (y <= 0 ? 0 : dy), without the masked copy. The _sync
 * forms as the batch norm's above (comm NULL / one rank / eval mode: the local form; the
 * backward's _ws form with its dx_set). */
int bt_batchnorm_relu_forward(float *y, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int N, int C, int HW, int training,
                              float momentum, float eps);
void bt_batchnorm_relu_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                const float *y, const float *x, const float *gamma,
                                const float *mean, const float *rstd, int N, int C, int HW,
                                int training);
int bt_batchnorm_relu_forward_sync(float *y, float *mean, float *rstd, const float *x,
                                   const float *gamma, const float *beta, float *running_mean,
                                   float *running_var, int N, int C, int HW, int training,
                                   float momentum, float eps, const struct bt_comm *comm);
int bt_batchnorm_relu_backward_sync(float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *y, const float *x, const float *gamma,
                                    const float *mean, const float *rstd, int N, int C, int HW,
                                    int training, const struct bt_comm *comm);
int bt_batchnorm_relu_forward_sync_ws(bt_arena *ws, float *y, float *mean, float *rstd,
                                      const float *x, const float *gamma, const float *beta,
                                      float *running_mean, float *running_var, int N, int C,
                                      int HW, int training, float momentum, float eps,
                                      const struct bt_comm *comm);
int bt_batchnorm_relu_backward_sync_ws(bt_arena *ws, float *dx, float *dgamma, float *dbeta,
                                       const float *dy, const float *y, const float *x,
                                       const float *gamma, const float *mean, const float *rstd,
                                       int N, int C, int HW, int training,
                                       const struct bt_comm *comm, int dx_set);

/* ---- elementwise ---------------------------------------------------------------------- */
/* y = max(x, 0); y may equal x. */
void bt_relu_forward(float *y, const float *x, size_t n);
/* dx += dy * (y > 0). Uses the forward's output y. */
void bt_relu_backward(float *dx, const float *dy, const float *y, size_t n);
/* The one backward that does not accumulate: d = y <= 0 ? 0 : d in place, for a ReLU whose
 * input gradient shares its output gradient's buffer (d (n), y (n)). */
void bt_relu_backward_inplace(float *d, const float *y, size_t n);
/* y = a + b. */
void bt_add_forward(float *y, const float *a, const float *b, size_t n);
/* da += dy; db += dy (either may be NULL). */
void bt_add_backward(float *da, float *db, const float *dy, size_t n);
/* The residual add and the ReLU after it in one pass: y = max(0, a + b), bit for bit
 * bt_add_forward then bt_relu_forward; y may equal a or b. */
void bt_add_relu_forward(float *y, const float *a, const float *b, size_t n);
/* da += g, db += g with g = y <= 0 ? 0 : dy (either may be NULL); y the forward's output. */
void bt_add_relu_backward(float *da, float *db, const float *dy, const float *y, size_t n);
/* In place, for an addend whose gradient shares the output gradient's buffer d: d = y <= 0 ?
 * 0 : d, then db += d (db NULL: none). Bit for bit bt_relu_backward_inplace then
 * bt_add_backward(NULL, db, d). */
void bt_add_relu_backward_inplace(float *d, float *db, const float *y, size_t n);

/* ---- pooling -------------------------------------------------------------------------- */
/* Max pool, square window k, stride, padding (padded cells are -inf); x (N,C,H,W),
 * y (N,C,OH,OW) with OH = (H + 2*pad - k)/stride + 1; argmax (N,C,OH,OW) holds the flat
 * index h*W+w of the chosen input (the first maximum in scan order, as PyTorch). */
int bt_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int N, int C, int H, int W,
                         int k, int stride, int pad);
void bt_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int N, int C,
                           int H, int W, int OH, int OW);
/* Global average pool: x (N,C,HW) -> y (N,C). */
void bt_avgpool_forward(float *y, const float *x, int N, int C, int HW);
void bt_avgpool_backward(float *dx, const float *dy, int N, int C, int HW);

/* ---- linear --------------------------------------------------------------------------- */
/* y (N,O) = x (N,In) w(O,In)^T + b (O) [b may be NULL]. */
void bt_linear_forward(float *y, const float *x, const float *w, const float *b, int N, int In,
                       int O);
/* dx (N,In) +=, dw (O,In) +=, db (O) +=; any may be NULL. */
void bt_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int N, int In, int O);

/* ---- softmax cross-entropy ------------------------------------------------------------ */
/* Mean over the batch of -log softmax(logits)[label]. logits, probs (N,K); labels (N) in
 * [0,K). probs receives the softmax for the backward. Returns BT_EINVAL on a bad label. */
int bt_xent_forward(float *loss, float *probs, const float *logits, const int32_t *labels,
                    int N, int K);
int bt_xent_forward_ws(bt_arena *ws, float *loss, float *probs, const float *logits,
                       const int32_t *labels, int N, int K);
/* dlogits (N,K) += dloss * (probs - onehot(labels)) / N. */
void bt_xent_backward(float *dlogits, const float *probs, const int32_t *labels, float dloss,
                      int N, int K);

#endif
