/* Batch normalisation (BatchNorm1d/2d semantics of PyTorch), optimised float32 version.
 * Each channel's statistics are independent, so channels are split across OpenMP threads and
 * each thread owns its channels' outputs (no reductions across threads, deterministic).
 * Per-channel sums accumulate in double: a channel can hold N*H*W ~ 10^5..10^6 values, where
 * float sums would lose digits, and the backward's dx is a difference of such sums. */
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "batchnorm_internal.h"
#include "norm_pool_check.h"
#include <math.h>

/* x, y (N,C,HW); gamma, beta, mean, rstd, running_mean, running_var (C). */
int bt_batchnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                         const float *beta, float *running_mean, float *running_var, int N,
                         int C, int HW, int training, float momentum, float eps) {
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
        bn_channel_normalize(bk, y, mean, rstd, x, gamma, beta, m, r, c, N, C, HW);
    }
    return BT_OK;
}

/* dx, dy, x (N,C,HW); dgamma, dbeta, gamma, mean, rstd (C). */
void bt_batchnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *gamma, const float *mean,
                           const float *rstd, int N, int C, int HW, int training) {
    const size_t cs = (size_t)C * HW;
    const double cnt = (double)N * HW;
    const bt_bn_kernels *bk = bt_bn_kernels_current();
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        const float m = mean[c], r = rstd[c];
        double sdy, sdyx;
        bn_channel_sums(bk, &sdy, &sdyx, dy, x, m, r, c, N, C, HW);
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        const float k = (gamma ? gamma[c] : 1.0f) * r;
        if (!training) {
            /* eval: the statistics are constants */
            bk->dx_eval(dx + (size_t)c * HW, dy + (size_t)c * HW, cs, N, HW, k);
            continue;
        }
        bn_channel_dx(bk, dx, dy, x, m, r, k, (float)(sdy / cnt), (float)(sdyx / cnt), c, N, C, HW);
    }
}
