/* Per-channel pieces of the batch-norm backward shared by the local (batchnorm.c) and the
 * synchronised (batchnorm_sync.c) versions, so both compute exactly the same numbers. */
#ifndef BARLOW_OPS_BATCHNORM_INTERNAL_H
#define BARLOW_OPS_BATCHNORM_INTERNAL_H
#include <stddef.h>

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
