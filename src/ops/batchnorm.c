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

/* x, y (N,C,HW); gamma, beta, mean, rstd, running_mean, running_var (C). relu: y = max(0, BN). */
static int bn_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                      const float *beta, float *running_mean, float *running_var, int N, int C,
                      int HW, int training, float momentum, float eps, int relu) {
    int err = bt_batchnorm_check(N, C, HW, training, running_mean, running_var, momentum, eps);
    if (err) return err;
    const size_t cs = (size_t)C * HW; /* distance between samples */
    const double cnt = (double)N * HW;
    const bt_bn_kernels *bk = bt_bn_kernels_current();
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        double m, r;
        const float *xc0 = x + (size_t)c * HW;
        if (training) {
            m = bk->sum(xc0, cs, N, HW) / cnt;
            /* two passes: sum((x-m)^2) does not cancel like sum(x^2) - n*m^2 */
            const double q = bk->sqdev(xc0, cs, N, HW, m);
            r = 1.0 / sqrt(q / cnt + eps);
            if (running_mean) {
                running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
                running_var[c] =
                    (float)((1.0 - momentum) * running_var[c] + momentum * (q / (cnt - 1)));
            }
        } else {
            m = running_mean[c];
            r = 1.0 / sqrt((double)running_var[c] + eps);
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
