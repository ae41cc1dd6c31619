/* Synchronised batch norm (SyncBatchNorm): training-mode statistics over the whole global
 * batch spread across ranks. Each rank reduces its own channels' partial sums, one all-reduce
 * combines them, and the normalisation then runs locally. With one rank (or eval mode) it is
 * exactly bt_batchnorm_forward/backward. The same with the ReLU fused (bt_batchnorm_relu_*):
 * the statistics do not see the ReLU; only the normalisation and the backward's two passes
 * (its mask on dy) do. */
#include "barlow/comm.h"
#include "barlow/error.h"
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "batchnorm_internal.h"
#include <math.h>
#include <string.h>

/* s (C): per-channel sum of x over this rank's (N, HW), or of (x - m)^2 when m != NULL. */
static void channel_sums(double *s, const float *x, const double *m, int N, int C, int HW) {
    const size_t cs = (size_t)C * HW;
    const bt_bn_kernels *bk = bt_bn_kernels_current();
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * HW;
        s[c] = m ? bk->sqdev(xc, cs, N, HW, m[c]) : bk->sum(xc, cs, N, HW);
    }
}

int bt_batchnorm_forward_sync(float *y, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int N, int C, int HW, int training,
                              float momentum, float eps, const bt_comm *comm) {
    return bt_batchnorm_forward_sync_ws(bt_default_arena(), y, mean, rstd, x, gamma, beta,
                                        running_mean, running_var, N, C, HW, training, momentum,
                                        eps, comm);
}

static int forward_sync(bt_arena *ws, float *y, float *mean, float *rstd, const float *x,
                        const float *gamma, const float *beta, float *running_mean,
                        float *running_var, int N, int C, int HW, int training, float momentum,
                        float eps, const bt_comm *comm, int relu) {
    const bt_bn_kernels *bk = bt_bn_kernels_current();
    if (!training || bt_comm_world(comm) == 1)
        return (relu ? bt_batchnorm_relu_forward : bt_batchnorm_forward)(
            y, mean, rstd, x, gamma, beta, running_mean, running_var, N, C, HW, training,
            momentum, eps);
    if (N < 1 || C < 1 || HW < 1) return bt_fail(BT_EINVAL, "batchnorm: bad sizes N=%d C=%d HW=%d", N, C, HW);
    /* buf: sums (C) + count, then the means (C), then squared deviations (C). */
    double *buf = bt_arena_get(ws, (3 * (size_t)C + 1) * sizeof(double));
    if (!buf) return BT_ENOMEM;
    double *s = buf, *m = buf + C + 1, *q = m + C;
    channel_sums(s, x, NULL, N, C, HW);
    s[C] = (double)N * HW;
    int rc = comm->allreduce_f64(comm, s, (size_t)C + 1);
    if (rc) return rc;
    const double cnt = s[C];
    if (cnt <= 1)
        return bt_fail(BT_EINVAL, "Expected more than 1 value per channel when training, got %.0f", cnt);
    for (int c = 0; c < C; c++) m[c] = s[c] / cnt;
    channel_sums(q, x, m, N, C, HW);
    if ((rc = comm->allreduce_f64(comm, q, (size_t)C))) return rc;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        const double r =
            bn_train_rstd(m[c], q[c], cnt, eps, momentum, running_mean, running_var, c);
        bn_channel_normalize(bk, y, mean, rstd, x, gamma, beta, m[c], r, c, N, C, HW, relu);
    }
    return BT_OK;
}

int bt_batchnorm_forward_sync_ws(bt_arena *ws, float *y, float *mean, float *rstd,
                                 const float *x, const float *gamma, const float *beta,
                                 float *running_mean, float *running_var, int N, int C, int HW,
                                 int training, float momentum, float eps, const bt_comm *comm) {
    return forward_sync(ws, y, mean, rstd, x, gamma, beta, running_mean, running_var, N, C, HW,
                        training, momentum, eps, comm, 0);
}

int bt_batchnorm_backward_sync(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *gamma, const float *mean,
                               const float *rstd, int N, int C, int HW, int training,
                               const bt_comm *comm) {
    return bt_batchnorm_backward_sync_ws(bt_default_arena(), dx, dgamma, dbeta, dy, x, gamma,
                                         mean, rstd, N, C, HW, training, comm, 0);
}

/* relu_y: the fused op's output (masking dy) or NULL. dx_set: dx is overwritten. */
static int backward_sync(bt_arena *ws, float *dx, float *dgamma, float *dbeta, const float *dy,
                         const float *relu_y, const float *x, const float *gamma,
                         const float *mean, const float *rstd, int N, int C, int HW,
                         int training, const bt_comm *comm, int dx_set) {
    const bt_bn_kernels *bk = bt_bn_kernels_current();
    if (!training || bt_comm_world(comm) == 1) {
        bt_bn_backward_local(dx, dgamma, dbeta, dy, relu_y, x, gamma, mean, rstd, N, C, HW,
                             training, dx_set);
        return BT_OK;
    }
    double *g = bt_arena_get(ws, (2 * (size_t)C + 1) * sizeof(double));
    if (!g) return BT_ENOMEM;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        double sdy, sdyx;
        bn_channel_sums(bk, &sdy, &sdyx, dy, relu_y, x, mean[c], rstd[c], c, N, C, HW);
        /* this rank's share of dgamma/dbeta: the gradient all-reduce sums the shares */
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        g[c] = sdy;
        g[C + c] = sdyx;
    }
    g[2 * C] = (double)N * HW;
    int rc = comm->allreduce_f64(comm, g, 2 * (size_t)C + 1);
    if (rc) return rc;
    const double cnt = g[2 * C];
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int c = 0; c < C; c++) {
        const float r = rstd[c], k = (gamma ? gamma[c] : 1.0f) * r;
        bn_channel_dx(bk, dx, dy, relu_y, x, mean[c], r, k, (float)(g[c] / cnt),
                      (float)(g[C + c] / cnt), c, N, C, HW, dx_set);
    }
    return BT_OK;
}

int bt_batchnorm_backward_sync_ws(bt_arena *ws, float *dx, float *dgamma, float *dbeta,
                                  const float *dy, const float *x, const float *gamma,
                                  const float *mean, const float *rstd, int N, int C, int HW,
                                  int training, const bt_comm *comm, int dx_set) {
    return backward_sync(ws, dx, dgamma, dbeta, dy, NULL, x, gamma, mean, rstd, N, C, HW,
                         training, comm, dx_set);
}

int bt_batchnorm_relu_forward_sync(float *y, float *mean, float *rstd, const float *x,
                                   const float *gamma, const float *beta, float *running_mean,
                                   float *running_var, int N, int C, int HW, int training,
                                   float momentum, float eps, const bt_comm *comm) {
    return forward_sync(bt_default_arena(), y, mean, rstd, x, gamma, beta, running_mean,
                        running_var, N, C, HW, training, momentum, eps, comm, 1);
}

int bt_batchnorm_relu_forward_sync_ws(bt_arena *ws, float *y, float *mean, float *rstd,
                                      const float *x, const float *gamma, const float *beta,
                                      float *running_mean, float *running_var, int N, int C,
                                      int HW, int training, float momentum, float eps,
                                      const bt_comm *comm) {
    return forward_sync(ws, y, mean, rstd, x, gamma, beta, running_mean, running_var, N, C, HW,
                        training, momentum, eps, comm, 1);
}

int bt_batchnorm_relu_backward_sync(float *dx, float *dgamma, float *dbeta, const float *dy,
                                    const float *y, const float *x, const float *gamma,
                                    const float *mean, const float *rstd, int N, int C, int HW,
                                    int training, const bt_comm *comm) {
    return backward_sync(bt_default_arena(), dx, dgamma, dbeta, dy, y, x, gamma, mean, rstd, N,
                         C, HW, training, comm, 0);
}

int bt_batchnorm_relu_backward_sync_ws(bt_arena *ws, float *dx, float *dgamma, float *dbeta,
                                       const float *dy, const float *y, const float *x,
                                       const float *gamma, const float *mean, const float *rstd,
                                       int N, int C, int HW, int training, const bt_comm *comm,
                                       int dx_set) {
    return backward_sync(ws, dx, dgamma, dbeta, dy, y, x, gamma, mean, rstd, N, C, HW, training,
                         comm, dx_set);
}
