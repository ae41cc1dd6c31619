/* Batch normalisation (BatchNorm1d/2d semantics of PyTorch), optimised float32 version, and
 * batch norm + ReLU fused into the same loops (one pass over memory fewer each way).
 * Each channel's statistics are independent, so channels are split across OpenMP threads and
 * each thread owns its channels' outputs (no reductions across threads, deterministic).
 * Per-channel sums accumulate in double: a channel can hold N*H*W ~ 10^5..10^6 values, where
 * float sums would lose digits, and the backward's dx is a difference of such sums. */
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "batchnorm_internal.h"
#include "norm_pool_check.h"
#include <math.h>

/* ---- HW == 1 (BatchNorm1d: the projector's (N, C) matrices) --------------------------------
 * The per-channel loops walk a channel's N values C floats apart, one element per row: a
 * cache line per element and scalar code (BN + ReLU on (256, 2048) took 15 ms a call, 13
 * times the time per element of a 4x4 map). Here each thread takes blocks of BN1D_CB channels
 * and walks the rows in order, the block's values contiguous, with one accumulator per
 * channel: the sums run over n in the same order as the per-channel loops' (which put every
 * term of a one-element row into lane 0), and lanes_total's tree then adds +0.0 lanes to it,
 * which `+ 0.0` reproduces (it turns a -0 sum into +0; once is enough). Every other expression
 * is the per-channel loops' (batchnorm_kernels.c), so the results are the same bits;
 * test_bn_kernels compares the two. The synchronised form (batchnorm_sync.c) keeps the
 * per-channel loops. */
#define BN1D_CB 64
static int bn1d_on = 1;
void bt_bn_set_rows_1d(int on) { bn1d_on = on != 0; }

static void bn1d_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                         const float *beta, float *running_mean, float *running_var, int N,
                         int C, int training, float momentum, float eps, int relu) {
    const double cnt = (double)N;
    const int nb = (C + BN1D_CB - 1) / BN1D_CB;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int blk = 0; blk < nb; blk++) {
        const int c0 = blk * BN1D_CB, nc = C - c0 < BN1D_CB ? C - c0 : BN1D_CB;
        double m[BN1D_CB], r[BN1D_CB], q[BN1D_CB];
        float mhi[BN1D_CB], mlo[BN1D_CB], a[BN1D_CB], b[BN1D_CB];
        if (training) {
            for (int j = 0; j < nc; j++) m[j] = 0.0, q[j] = 0.0;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C + c0;
                for (int j = 0; j < nc; j++) m[j] += xr[j];
            }
            for (int j = 0; j < nc; j++) m[j] = (m[j] + 0.0) / cnt;
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * C + c0;
                for (int j = 0; j < nc; j++) {
                    const double d = xr[j] - m[j];
                    q[j] += d * d;
                }
            }
            for (int j = 0; j < nc; j++)
                r[j] = bn_train_rstd(m[j], q[j] + 0.0, cnt, eps, momentum, running_mean,
                                     running_var, c0 + j);
        } else {
            for (int j = 0; j < nc; j++) {
                m[j] = running_mean[c0 + j];
                r[j] = bn_eval_rstd(running_var, eps, c0 + j);
            }
        }
        for (int j = 0; j < nc; j++) /* bn_channel_normalize's */
            bn_coeffs(m[j], r[j], gamma, beta, c0 + j, mean, rstd, &mhi[j], &mlo[j], &a[j], &b[j]);
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C + c0;
            float *yr = y + (size_t)n * C + c0;
            for (int j = 0; j < nc; j++) {
                const float v = ((xr[j] - mhi[j]) - mlo[j]) * a[j] + b[j];
                yr[j] = BNK_RELU(relu, v);
            }
        }
    }
}

/* One block's backward (relu, training, set: constants at every call, so each copy is
 * compiled without the tests in its loops). The ReLU's mask as the per-channel loops apply
 * it (bnk_maskd, bnk_sel): g = +0 where y <= 0, else dy, as bits, so that the loops stay
 * vector loops. */
static inline __attribute__((always_inline)) void
bn1d_backward_block(float *dx, float *dgamma, float *dbeta, const float *dy, const float *relu_y,
                    const float *x, const float *gamma, const float *mean, const float *rstd,
                    int N, int C, int c0, int nc, const int relu, const int training,
                    const int set) {
    const double cnt = (double)N;
    double a1[BN1D_CB], a2[BN1D_CB];
    float m[BN1D_CB], r[BN1D_CB], k[BN1D_CB], mdy[BN1D_CB], mdyx[BN1D_CB];
    for (int j = 0; j < nc; j++) {
        m[j] = mean[c0 + j], r[j] = rstd[c0 + j];
        a1[j] = 0.0, a2[j] = 0.0;
    }
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * C + c0;
        const float *xr = x + o, *dr = dy + o, *yr = relu ? relu_y + o : dr;
        for (int j = 0; j < nc; j++)
            BNK_GRAD_TERMS(relu, yr[j], dr[j], xr[j], m[j], r[j], a1[j], a2[j]);
    }
    for (int j = 0; j < nc; j++) {
        const int c = c0 + j;
        const double sdy = a1[j] + 0.0, sdyx = a2[j] + 0.0;
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        k[j] = (gamma ? gamma[c] : 1.0f) * r[j];
        mdy[j] = (float)(sdy / cnt), mdyx[j] = (float)(sdyx / cnt);
    }
    for (int n = 0; n < N; n++) {
        const size_t o = (size_t)n * C + c0;
        const float *xr = x + o, *dr = dy + o, *yr = relu ? relu_y + o : dr;
        float *out = dx + o;
        for (int j = 0; j < nc; j++) {
            if (!training)
                BNK_STORE(set, out[j], BNK_DX_EVAL(relu, yr[j], dr[j], k[j]));
            else
                BNK_STORE(set, out[j],
                          BNK_DX(relu, yr[j], dr[j], xr[j], m[j], r[j], k[j], mdy[j], mdyx[j]));
        }
    }
}

static void bn1d_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *relu_y, const float *x, const float *gamma,
                          const float *mean, const float *rstd, int N, int C, int training,
                          int dx_set) {
    const int nb = (C + BN1D_CB - 1) / BN1D_CB;
    const int relu = relu_y != NULL, mode = relu * 4 + (training != 0) * 2 + (dx_set != 0);
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int blk = 0; blk < nb; blk++) {
        const int c0 = blk * BN1D_CB, nc = C - c0 < BN1D_CB ? C - c0 : BN1D_CB;
#define BN1D_B(R, T, S)                                                                          \
    bn1d_backward_block(dx, dgamma, dbeta, dy, relu_y, x, gamma, mean, rstd, N, C, c0, nc, R, T, S)
        switch (mode) {
        case 0: BN1D_B(0, 0, 0); break;
        case 1: BN1D_B(0, 0, 1); break;
        case 2: BN1D_B(0, 1, 0); break;
        case 3: BN1D_B(0, 1, 1); break;
        case 4: BN1D_B(1, 0, 0); break;
        case 5: BN1D_B(1, 0, 1); break;
        case 6: BN1D_B(1, 1, 0); break;
        default: BN1D_B(1, 1, 1); break;
        }
#undef BN1D_B
    }
}

/* x, y (N,C,HW); gamma, beta, mean, rstd, running_mean, running_var (C). relu: y = max(0, BN). */
static int bn_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                      const float *beta, float *running_mean, float *running_var, int N, int C,
                      int HW, int training, float momentum, float eps, int relu) {
    int err = bt_batchnorm_check(N, C, HW, training, running_mean, running_var, momentum, eps);
    if (err) return err;
    const size_t cs = (size_t)C * HW; /* distance between samples */
    const double cnt = (double)N * HW;
    if (HW == 1 && bn1d_on) {
        bn1d_forward(y, mean, rstd, x, gamma, beta, running_mean, running_var, N, C, training,
                     momentum, eps, relu);
        return BT_OK;
    }
    const bt_bn_kernels *bk = bt_bn_kernels_current();
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        double m, r;
        const float *xc0 = x + (size_t)c * HW;
        if (training) {
            m = bk->sum(xc0, cs, N, HW) / cnt;
            /* two passes: sum((x-m)^2) does not cancel like sum(x^2) - n*m^2 */
            const double q = bk->sqdev(xc0, cs, N, HW, m);
            r = bn_train_rstd(m, q, cnt, eps, momentum, running_mean, running_var, c);
        } else {
            m = running_mean[c];
            r = bn_eval_rstd(running_var, eps, c);
        }
        bn_channel_normalize(bk, y, mean, rstd, x, gamma, beta, m, r, c, N, C, HW, relu);
    }
    return BT_OK;
}

/* dx, dy, x (N,C,HW); relu_y (N,C,HW): the fused op's output, masking dy, or NULL; dgamma,
 * dbeta, gamma, mean, rstd (C). dx_set: dx is overwritten (batchnorm_internal.h). */
void bt_bn_backward_local(float *dx, float *dgamma, float *dbeta, const float *dy,
                          const float *relu_y, const float *x, const float *gamma,
                          const float *mean, const float *rstd, int N, int C, int HW,
                          int training, int dx_set) {
    if (HW == 1 && bn1d_on) {
        bn1d_backward(dx, dgamma, dbeta, dy, relu_y, x, gamma, mean, rstd, N, C, training,
                      dx_set);
        return;
    }
    const double cnt = (double)N * HW;
    const bt_bn_kernels *bk = bt_bn_kernels_current();
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        const float m = mean[c], r = rstd[c];
        double sdy, sdyx;
        bn_channel_sums(bk, &sdy, &sdyx, dy, relu_y, x, m, r, c, N, C, HW);
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        const float k = (gamma ? gamma[c] : 1.0f) * r;
        if (!training) {
            /* eval: the statistics are constants */
            bn_channel_dx_eval(bk, dx, dy, relu_y, k, c, N, C, HW, dx_set);
            continue;
        }
        bn_channel_dx(bk, dx, dy, relu_y, x, m, r, k, (float)(sdy / cnt), (float)(sdyx / cnt), c,
                      N, C, HW, dx_set);
    }
}

int bt_batchnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                         const float *beta, float *running_mean, float *running_var, int N,
                         int C, int HW, int training, float momentum, float eps) {
    return bn_forward(y, mean, rstd, x, gamma, beta, running_mean, running_var, N, C, HW,
                      training, momentum, eps, 0);
}

void bt_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int HW, int training) {
    bt_bn_backward_local(dx, dgamma, dbeta, dy, NULL, x, gamma, mean, rstd, N, C, HW, training,
                         0);
}

int bt_batchnorm_relu_forward(float *y, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int N, int C, int HW, int training,
                              float momentum, float eps) {
    return bn_forward(y, mean, rstd, x, gamma, beta, running_mean, running_var, N, C, HW,
                      training, momentum, eps, 1);
}

void bt_batchnorm_relu_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                                const float *y, const float *x, const float *gamma,
                                const float *mean, const float *rstd, int N, int C, int HW,
                                int training) {
    bt_bn_backward_local(dx, dgamma, dbeta, dy, y, x, gamma, mean, rstd, N, C, HW, training,
                         0);
}
