/* The CPU backend: the backend table (include/barlow/backend.h) over the optimised float32
 * ops of src/ops and the loss and LARS of src/train. Host memory throughout, so the copies are
 * memcpy, `sync` has nothing to wait for, and no op needs a plan. Each entry calls exactly
 * the function the model called before the table existed, in its workspace form (_ws) over
 * the backend's own arena: the numbers do not change, and no op of this backend touches the
 * process's default arena. */
#include "barlow/backend.h"
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/scratch.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops/winograd_internal.h"
#include "ops/gemm/gemm_internal.h"

/* The backend's own state: the arena its ops and `scratch` hand out (grow-only), and its
 * algorithm for 3x3 stride-1 convolutions (0, 2 or 4, fixed when it is made). */
typedef struct {
    bt_arena arena;
    int winograd;
    int precision; /* the convolutions' and linear layers' products: BT_PREC_FP32 or _BF16 */
} cpu_state;

static bt_arena *arena_of(bt_backend *be) { return &((cpu_state *)be->impl)->arena; }
static int wino_of(const bt_backend *be) { return ((const cpu_state *)be->impl)->winograd; }

/* ---- memory ---- */

static void *cpu_alloc(bt_backend *be, size_t bytes) {
    (void)be;
    return bt_alloc(bytes ? bytes : 64);
}
static void cpu_free(bt_backend *be, void *p) {
    (void)be;
    bt_free(p);
}
/* Copies and zero fills of more than SPLIT_BYTES are split over the threads in contiguous
 * 4 KiB-aligned pieces: the model zeroes each gradient buffer (up to 64 MB at the first
 * ResNet-18/CIFAR stage) before the op that first adds into it, and one thread filling it
 * kept the others waiting. Bytes are bytes: the result does not depend on the split. */
#define SPLIT_BYTES ((size_t)1 << 20)
static void fill_or_copy(void *dst, const void *src, size_t bytes) {
    const int nt = bt_threads();
    if (bytes <= SPLIT_BYTES || nt < 2 || omp_in_parallel()) {
        if (src) memcpy(dst, src, bytes);
        else memset(dst, 0, bytes);
        return;
    }
    const size_t piece = ((bytes + nt - 1) / nt + 4095) & ~(size_t)4095;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        const size_t at = (size_t)t * piece;
        if (at >= bytes) continue;
        const size_t n = bytes - at < piece ? bytes - at : piece;
        if (src) memcpy((char *)dst + at, (const char *)src + at, n);
        else memset((char *)dst + at, 0, n);
    }
}
static int cpu_copy(bt_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes && dst != src) fill_or_copy(dst, src, bytes);
    return BT_OK;
}
static int cpu_zero(bt_backend *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) fill_or_copy(p, NULL, bytes);
    return BT_OK;
}
static int cpu_sync(bt_backend *be) {
    (void)be;
    return BT_OK;
}
/* The arena the ops of this backend take their temporaries from (so valid until the next op). */
static void *cpu_scratch(bt_backend *be, size_t bytes) { return bt_arena_get(arena_of(be), bytes); }

/* ---- plans: none on the CPU ---- */

static int cpu_plan_new(bt_backend *be, const bt_op_desc *d, bt_plan **plan) {
    (void)be;
    (void)d;
    *plan = NULL;
    return BT_OK;
}
static void cpu_plan_free(bt_backend *be, bt_plan *plan) {
    (void)be;
    (void)plan;
}

/* ---- ops ---- */

/* The backend's precision for the products of one convolution or linear layer (forward or
 * backward), float again after it: the GEMM's precision is process-wide, and everything else
 * (the loss's cross-correlation, kNN, evaluation) multiplies in float. */
static void prec_begin(bt_backend *be) {
    bt_gemm_set_precision((bt_precision)((cpu_state *)be->impl)->precision);
}
static void prec_end(void) { bt_gemm_set_precision(BT_PREC_FP32); }

static int cpu_conv2d_forward(bt_backend *be, const bt_plan *pl, float *out, const float *in,
                              const float *w, const float *b, const bt_conv2d_desc *d) {
    (void)pl;
    prec_begin(be);
    const int rc = bt_conv2d_forward_ws(arena_of(be), wino_of(be), out, in, w, b, d);
    prec_end();
    return rc;
}
static int cpu_conv2d_backward(bt_backend *be, const bt_plan *pl, float *dinp, float *dw,
                               float *db, const float *dout, const float *in, const float *w,
                               const bt_conv2d_desc *d, int dinp_set) {
    (void)pl;
    prec_begin(be);
    const int rc = bt_conv2d_backward_ws(arena_of(be), wino_of(be), dinp, dw, db, dout, in, w,
                                         d, dinp_set);
    prec_end();
    return rc;
}
static int cpu_bn_forward(bt_backend *be, const bt_plan *pl, float *y, float *mean, float *rstd,
                          const float *x, const float *gamma, const float *beta, float *rm,
                          float *rv, int N, int C, int HW, int training, float momentum,
                          float eps) {
    (void)be, (void)pl;
    return bt_batchnorm_forward(y, mean, rstd, x, gamma, beta, rm, rv, N, C, HW, training,
                                momentum, eps);
}
static int cpu_bn_backward(bt_backend *be, const bt_plan *pl, float *dx, float *dgamma,
                           float *dbeta, const float *dy, const float *x, const float *gamma,
                           const float *mean, const float *rstd, int N, int C, int HW,
                           int training) {
    (void)be, (void)pl;
    bt_batchnorm_backward(dx, dgamma, dbeta, dy, x, gamma, mean, rstd, N, C, HW, training);
    return BT_OK;
}
static int cpu_bn_forward_sync(bt_backend *be, const bt_plan *pl, float *y, float *mean,
                               float *rstd, const float *x, const float *gamma,
                               const float *beta, float *rm, float *rv, int N, int C, int HW,
                               int training, float momentum, float eps,
                               const struct bt_comm *comm) {
    (void)pl;
    return bt_batchnorm_forward_sync_ws(arena_of(be), y, mean, rstd, x, gamma, beta, rm, rv, N,
                                        C, HW, training, momentum, eps, comm);
}
static int cpu_bn_backward_sync(bt_backend *be, const bt_plan *pl, float *dx, float *dgamma,
                                float *dbeta, const float *dy, const float *x,
                                const float *gamma, const float *mean, const float *rstd, int N,
                                int C, int HW, int training, const struct bt_comm *comm,
                                int dx_set) {
    (void)pl;
    return bt_batchnorm_backward_sync_ws(arena_of(be), dx, dgamma, dbeta, dy, x, gamma, mean,
                                         rstd, N, C, HW, training, comm, dx_set);
}
static int cpu_relu_forward(bt_backend *be, float *y, const float *x, size_t n) {
    (void)be;
    bt_relu_forward(y, x, n);
    return BT_OK;
}
static int cpu_relu_backward(bt_backend *be, float *dx, const float *dy, const float *y,
                             size_t n) {
    (void)be;
    bt_relu_backward(dx, dy, y, n);
    return BT_OK;
}
static int cpu_relu_backward_inplace(bt_backend *be, float *d, const float *y, size_t n) {
    (void)be;
    bt_relu_backward_inplace(d, y, n);
    return BT_OK;
}
static int cpu_add_forward(bt_backend *be, float *y, const float *a, const float *b, size_t n) {
    (void)be;
    bt_add_forward(y, a, b, n);
    return BT_OK;
}
static int cpu_add_backward(bt_backend *be, float *da, float *db, const float *dy, size_t n) {
    (void)be;
    bt_add_backward(da, db, dy, n);
    return BT_OK;
}
static int cpu_maxpool_forward(bt_backend *be, const bt_plan *pl, float *y, int32_t *argmax,
                               const float *x, int N, int C, int H, int W, int k, int stride,
                               int pad) {
    (void)be, (void)pl;
    return bt_maxpool2d_forward(y, argmax, x, N, C, H, W, k, stride, pad);
}
static int cpu_maxpool_backward(bt_backend *be, const bt_plan *pl, float *dx, const float *dy,
                                const int32_t *argmax, int N, int C, int H, int W, int OH,
                                int OW) {
    (void)be, (void)pl;
    bt_maxpool2d_backward(dx, dy, argmax, N, C, H, W, OH, OW);
    return BT_OK;
}
static int cpu_avgpool_forward(bt_backend *be, float *y, const float *x, int N, int C, int HW) {
    (void)be;
    bt_avgpool_forward(y, x, N, C, HW);
    return BT_OK;
}
static int cpu_avgpool_backward(bt_backend *be, float *dx, const float *dy, int N, int C,
                                int HW) {
    (void)be;
    bt_avgpool_backward(dx, dy, N, C, HW);
    return BT_OK;
}
static int cpu_linear_forward(bt_backend *be, const bt_plan *pl, float *y, const float *x,
                              const float *w, const float *b, int N, int In, int O) {
    (void)pl;
    prec_begin(be);
    bt_linear_forward(y, x, w, b, N, In, O);
    prec_end();
    return BT_OK;
}
static int cpu_linear_backward(bt_backend *be, const bt_plan *pl, float *dx, float *dw,
                               float *db, const float *dy, const float *x, const float *w,
                               int N, int In, int O) {
    (void)pl;
    prec_begin(be);
    bt_linear_backward(dx, dw, db, dy, x, w, N, In, O);
    prec_end();
    return BT_OK;
}
static int cpu_xent_forward(bt_backend *be, float *loss, float *probs, const float *logits,
                            const int32_t *labels, int N, int K) {
    return bt_xent_forward_ws(arena_of(be), loss, probs, logits, labels, N, K);
}
static int cpu_xent_backward(bt_backend *be, float *dlogits, const float *probs,
                             const int32_t *labels, float dloss, int N, int K) {
    (void)be;
    bt_xent_backward(dlogits, probs, labels, dloss, N, K);
    return BT_OK;
}
static int cpu_bt_loss(bt_backend *be, bt_loss_result *res, float *dz1, float *dz2,
                       const float *z1, const float *z2, int N, int D, float lambda, int form,
                       float *rm, float *rv) {
    return bt_twins_loss_ws(arena_of(be), res, dz1, dz2, z1, z2, N, D, lambda, form, rm, rv);
}
static int cpu_bt_loss_sync(bt_backend *be, bt_loss_result *res, float *dz1, float *dz2,
                            const float *z1, const float *z2, int N, int D, float lambda,
                            int form, float *rm, float *rv, const struct bt_comm *comm) {
    return bt_twins_loss_sync_ws(arena_of(be), res, dz1, dz2, z1, z2, N, D, lambda, form, rm, rv,
                              comm);
}
static int cpu_lars_step(bt_backend *be, float *params, const float *grads, float *mom,
                         const bt_tensor_table *tab, const bt_lars_cfg *cfg) {
    (void)be;
    bt_lars_step(params, grads, mom, tab, cfg);
    return BT_OK;
}

/* ---- the data pipeline's per-pixel half (issue 19) ---- */
static int cpu_aug_pixel(bt_backend *be, float *out, uint8_t *crops, const bt_aug_params *prm,
                         int n, int S, const float mean[3], const float std[3]) {
    (void)be;
    if (n < 0 || S <= 0) return bt_fail(BT_EINVAL, "aug_pixel: %d crops of %d px", n, S);
    bt_aug_work *w = bt_aug_work_new(); /* the blur's scratch; one per call */
    if (!w) return bt_fail(BT_ENOMEM, "aug_pixel: out of memory");
    int rc = BT_OK;
    const size_t px = (size_t)S * S;
    for (int i = 0; i < n && !rc; i++) {
        bt_image crop = {S, S, crops + (size_t)i * px * 3}; /* a view, not owned */
        rc = bt_aug_pixel(out + (size_t)i * px * 3, &crop, &prm[i], mean, std, w);
    }
    bt_aug_work_free(w);
    return rc;
}

/* ---- fused ops (issue 16) ---- */
static int cpu_bn_relu_forward_sync(bt_backend *be, const bt_plan *pl, float *y, float *mean,
                                    float *rstd, const float *x, const float *gamma,
                                    const float *beta, float *rm, float *rv, int N, int C,
                                    int HW, int training, float momentum, float eps,
                                    const struct bt_comm *comm) {
    (void)pl;
    return bt_batchnorm_relu_forward_sync_ws(arena_of(be), y, mean, rstd, x, gamma, beta, rm, rv,
                                             N, C, HW, training, momentum, eps, comm);
}
static int cpu_bn_relu_backward_sync(bt_backend *be, const bt_plan *pl, float *dx,
                                     float *dgamma, float *dbeta, const float *dy,
                                     const float *y, const float *x, const float *gamma,
                                     const float *mean, const float *rstd, int N, int C, int HW,
                                     int training, const struct bt_comm *comm, int dx_set) {
    (void)pl;
    return bt_batchnorm_relu_backward_sync_ws(arena_of(be), dx, dgamma, dbeta, dy, y, x, gamma,
                                              mean, rstd, N, C, HW, training, comm, dx_set);
}
static int cpu_add_relu_forward(bt_backend *be, float *y, const float *a, const float *b,
                                size_t n) {
    (void)be;
    bt_add_relu_forward(y, a, b, n);
    return BT_OK;
}
static int cpu_add_relu_backward(bt_backend *be, float *da, float *db, const float *dy,
                                 const float *y, size_t n) {
    (void)be;
    bt_add_relu_backward(da, db, dy, y, n);
    return BT_OK;
}
static int cpu_add_relu_backward_inplace(bt_backend *be, float *d, float *db, const float *y,
                                         size_t n) {
    (void)be;
    bt_add_relu_backward_inplace(d, db, y, n);
    return BT_OK;
}

static void cpu_destroy(bt_backend *be) {
    cpu_state *st = be->impl;
    if (st) bt_arena_release(&st->arena);
    free(st);
    free(be);
}

static const bt_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_alloc,
    .host_free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .scratch = cpu_scratch,
    .plan_new = cpu_plan_new,
    .plan_free = cpu_plan_free,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .batchnorm_forward = cpu_bn_forward,
    .batchnorm_backward = cpu_bn_backward,
    .batchnorm_forward_sync = cpu_bn_forward_sync,
    .batchnorm_backward_sync = cpu_bn_backward_sync,
    .relu_forward = cpu_relu_forward,
    .relu_backward = cpu_relu_backward,
    .relu_backward_inplace = cpu_relu_backward_inplace,
    .add_forward = cpu_add_forward,
    .add_backward = cpu_add_backward,
    .maxpool2d_forward = cpu_maxpool_forward,
    .maxpool2d_backward = cpu_maxpool_backward,
    .avgpool_forward = cpu_avgpool_forward,
    .avgpool_backward = cpu_avgpool_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .xent_forward = cpu_xent_forward,
    .xent_backward = cpu_xent_backward,
    .bt_loss = cpu_bt_loss,
    .bt_loss_sync = cpu_bt_loss_sync,
    .lars_step = cpu_lars_step,
    /* the data pipeline */
    .aug_pixel = cpu_aug_pixel,
    /* fused ops */
    .batchnorm_relu_forward_sync = cpu_bn_relu_forward_sync,
    .batchnorm_relu_backward_sync = cpu_bn_relu_backward_sync,
    .add_relu_forward = cpu_add_relu_forward,
    .add_relu_backward = cpu_add_relu_backward,
    .add_relu_backward_inplace = cpu_add_relu_backward_inplace,
};

/* The winograd settings a backend takes (besides -1) and their BT_CONV_WINOGRAD spellings. */
static const int wino_vals[] = {0, BT_WINO_F2, BT_WINO_F4, BT_WINO_F2_DX4, BT_WINO_F2_DX4_DW4};
static const char *const wino_names[] = {"0", "2", "4", "24", "244"};
#define WINO_NVALS (int)(sizeof wino_vals / sizeof wino_vals[0])

static int check_cfg(const bt_backend_cfg *c) {
    if (c->gemm_kc != 0 && (c->gemm_kc < 8 || c->gemm_kc > 2048 || c->gemm_kc % 8))
        return bt_fail(BT_EINVAL, "backend cpu: gemm_kc must be 0 (from the L1 size) or a "
                       "multiple of 8 from 8 to 2048 (got %d)", c->gemm_kc);
    if (c->precision != BT_PREC_FP32 && c->precision != BT_PREC_BF16)
        return bt_fail(BT_EINVAL, "backend cpu: precision must be BT_PREC_FP32 (0) or "
                       "BT_PREC_BF16 (1) (got %d)", c->precision);
    for (int i = 0; i < WINO_NVALS; i++)
        if (c->winograd == wino_vals[i]) return BT_OK;
    if (c->winograd == -1) return BT_OK;
    return bt_fail(BT_EINVAL, "backend cpu: winograd must be 0, 2, 4, 24 or 244 (got %d)",
                   c->winograd);
}

int bt_backend_winograd_parse(const char *s, int *winograd) {
    for (int i = 0; i < WINO_NVALS; i++)
        if (s && !strcmp(s, wino_names[i])) {
            *winograd = wino_vals[i];
            return BT_OK;
        }
    return bt_fail(BT_EINVAL, "BT_CONV_WINOGRAD=%s: must be 0 (im2col only), 2 (Winograd "
                   "F(2x2)), 4 (F(4x4)), 24 (F(2x2) forward and weight gradient, F(4x4) input "
                   "gradient) or 244 (F(2x2) forward, F(4x4) gradients: the default)",
                   s ? s : "(null)");
}

int bt_backend_cpu_settings(const bt_backend_cfg *c) {
    int rc = check_cfg(c);
    if (rc) return rc;
    if (c->threads > 0) bt_set_threads(c->threads);
    if (c->gemm_kc > 0) bt_gemm_set_blocking(0, c->gemm_kc, 0);
    if (c->winograd == 0) bt_wino_set_enabled(0);
    else if (c->winograd > 0) {
        bt_wino_set_enabled(1);
        bt_wino_set_tile(c->winograd);
    }
    return BT_OK;
}

/* The thread count is a process setting of src/ops (a threads of 0 leaves the current count);
 * the Winograd choice is the backend's own, passed to every convolution: winograd -1 takes
 * the process setting once, here. */
int bt_backend_cpu_new(bt_backend **out, const bt_backend_cfg *cfg) {
    *out = NULL;
    bt_backend *be = calloc(1, sizeof *be);
    cpu_state *st = calloc(1, sizeof *st);
    if (!be || !st) {
        free(be);
        free(st);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    be->impl = st;
    be->ops = &cpu_ops;
    be->host_memory = 1;
    if (cfg) be->cfg = *cfg;
    else bt_backend_cfg_default(&be->cfg);
    int rc = check_cfg(&be->cfg);
    if (rc != BT_OK) {
        free(st);
        free(be);
        return rc;
    }
    if (be->cfg.threads > 0) bt_set_threads(be->cfg.threads);
    st->winograd = be->cfg.winograd != -1 ? be->cfg.winograd
                   : bt_wino_enabled()    ? bt_wino_tile()
                                          : 0;
    st->precision = be->cfg.precision;
    /* bf16 products: F(2x2) wherever F(4x4) would run. F(4x4)'s transforms scale the bf16
     * rounding of the transformed tiles up: its gradients came out 10-15x PyTorch's bf16
     * autocast error against float64 (tests/test_conv_linear.c test_torch_parity_bf16, 3x3
     * convolutions of 16 to 17 channels), F(2x2)'s 2.2-2.4x, inside the parity bound (8x). */
    if (st->precision == BT_PREC_BF16 && st->winograd != 0) st->winograd = BT_WINO_F2;
    *out = be;
    return BT_OK;
}
