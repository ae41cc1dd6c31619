/* Max pooling (PyTorch's max_pool2d, ceil_mode=False) and global average pooling, optimised
 * float32 version. Every (sample, channel) plane is independent, so the N*C planes are split
 * across OpenMP threads; the max-pool backward's scatter-add stays inside one plane, hence
 * inside one thread, and needs no atomics. */
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "norm_pool_check.h"
#include <math.h>

/* x (N,C,H,W); y, argmax (N,C,OH,OW). The scan order and the `v > best || isnan(v)` rule are
 * PyTorch's CPU kernel's, so ties and NaNs pick the same index. */
int bt_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int N, int C, int H, int W,
                         int k, int stride, int pad) {
    int err = bt_maxpool2d_check(N, C, H, W, k, stride, pad);
    if (err) return err;
    const int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
    const int P = N * C;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int p = 0; p < P; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *yp = y + (size_t)p * OH * OW;
        int32_t *ap = argmax + (size_t)p * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * stride - pad, h1 = h0 + k < H ? h0 + k : H;
            if (h0 < 0) h0 = 0;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * stride - pad, w1 = w0 + k < W ? w0 + k : W;
                if (w0 < 0) w0 = 0;
                float best = -INFINITY;
                int32_t bi = h0 * W + w0;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) {
                        float v = xp[h * W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = h * W + w;
                        }
                    }
                yp[oh * OW + ow] = best;
                ap[oh * OW + ow] = bi;
            }
        }
    }
    return BT_OK;
}

/* dx (N,C,H,W) +=; dy, argmax (N,C,OH,OW) from the forward. */
void bt_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int N, int C,
                           int H, int W, int OH, int OW) {
    const int P = N * C, O = OH * OW;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int p = 0; p < P; p++) {
        float *dxp = dx + (size_t)p * H * W;
        const float *dyp = dy + (size_t)p * O;
        const int32_t *ap = argmax + (size_t)p * O;
        for (int o = 0; o < O; o++) dxp[ap[o]] += dyp[o];
    }
}

/* x (N,C,HW) -> y (N,C); the plane sum accumulates in double. */
void bt_avgpool_forward(float *y, const float *x, int N, int C, int HW) {
    const int P = N * C;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int p = 0; p < P; p++) {
        const float *xp = x + (size_t)p * HW;
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < HW; i++) s += xp[i];
        y[p] = (float)(s / HW);
    }
}

/* dx (N,C,HW) +=; dy (N,C). */
void bt_avgpool_backward(float *dx, const float *dy, int N, int C, int HW) {
    const int P = N * C;
#pragma omp parallel for schedule(static) num_threads(bt_threads())
    for (int p = 0; p < P; p++) {
        float *dxp = dx + (size_t)p * HW;
        const float g = dy[p] / (float)HW;
#pragma omp simd
        for (int i = 0; i < HW; i++) dxp[i] += g;
    }
}
