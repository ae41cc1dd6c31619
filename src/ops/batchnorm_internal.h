/* Per-channel pieces of the batch-norm forward and backward shared by the local
 * (batchnorm.c) and the synchronised (batchnorm_sync.c) versions, so both compute exactly the
 * same numbers. */
#ifndef BARLOW_OPS_BATCHNORM_INTERNAL_H
#define BARLOW_OPS_BATCHNORM_INTERNAL_H
#include <stddef.h>

/* The forward epilogue of channel c, given its statistics m and r = 1/sqrt(var + eps) in
 * double: stores mean[c], rstd[c] (what the backward reads) and y = xhat * gamma + beta.
 * The mean is split as hi + lo floats: x - hi is exact when x is near the mean (Sterbenz), so
 * (x - hi) - lo keeps xhat accurate even when |mean| >> std, at float cost; the folded
 * x*a + (b - mean*a) would cancel there. x, y (N, C, HW); gamma, beta (C) or NULL. */
static inline void bn_channel_normalize(float *y, float *mean, float *rstd, const float *x,
                                        const float *gamma, const float *beta, double m,
                                        double r, int c, int N, int C, int HW) {
    const size_t cs = (size_t)C * HW;
    mean[c] = (float)m;
    rstd[c] = (float)r;
    const float mhi = (float)m, mlo = (float)(m - mhi);
    const float a = (float)(r * (gamma ? gamma[c] : 1.0f)), b = beta ? beta[c] : 0.0f;
    for (int n = 0; n < N; n++) {
        const float *xc = x + n * cs + (size_t)c * HW;
        float *yc = y + n * cs + (size_t)c * HW;
#pragma omp simd
        for (int i = 0; i < HW; i++) yc[i] = ((xc[i] - mhi) - mlo) * a + b;
    }
}

/* Channel c's sum(dy) and sum(dy * xhat) over (N, HW), in double. x, dy (N, C, HW). */
static inline void bn_channel_sums(double *sdy_out, double *sdyx_out, const float *dy,
                                   const float *x, float m, float r, int c, int N, int C,
                                   int HW) {
    const size_t cs = (size_t)C * HW;
    double sdy = 0, sdyx = 0;
    for (int n = 0; n < N; n++) {
        const float *xc = x + n * cs + (size_t)c * HW, *dyc = dy + n * cs + (size_t)c * HW;
#pragma omp simd reduction(+ : sdy, sdyx)
        for (int i = 0; i < HW; i++) {
            sdy += dyc[i];
            sdyx += (double)dyc[i] * ((xc[i] - m) * r);
        }
    }
    *sdy_out = sdy;
    *sdyx_out = sdyx;
}

/* Training-mode dx of channel c: dx += k*(dy - mean(dy) - xhat*mean(dy*xhat)), k = gamma*rstd;
 * the two subtracted terms are the gradient through the batch mean and variance. */
static inline void bn_channel_dx(float *dx, const float *dy, const float *x, float m, float r,
                                 float k, float mdy, float mdyx, int c, int N, int C, int HW) {
    const size_t cs = (size_t)C * HW;
    for (int n = 0; n < N; n++) {
        const float *xc = x + n * cs + (size_t)c * HW, *dyc = dy + n * cs + (size_t)c * HW;
        float *dxc = dx + n * cs + (size_t)c * HW;
#pragma omp simd
        for (int i = 0; i < HW; i++) dxc[i] += k * (dyc[i] - mdy - (xc[i] - m) * r * mdyx);
    }
}

#endif
