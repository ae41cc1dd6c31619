/* Optimised float32 fully-connected layer (F.linear): y = x w^T + b, via bt_sgemm.
 * Called outside parallel regions, so bt_sgemm threads the GEMMs itself. */
#include "barlow/ops.h"
#include "barlow/gemm.h"
#include <string.h>

void bt_linear_forward(float *y, const float *x, const float *w, const float *b, int N, int In,
                       int O) {
    if (N <= 0 || O <= 0) return;
    if (In <= 0) { /* empty contraction: y is just the bias */
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++) y[(size_t)n * O + o] = b ? b[o] : 0.0f;
        return;
    }
    /* Seed y with the bias so the GEMM adds onto it (beta = 1) instead of a second pass. */
    if (b)
        for (int n = 0; n < N; n++) memcpy(y + (size_t)n * O, b, sizeof(float) * O);
    bt_sgemm(BT_NOTRANS, BT_TRANS, N, O, In, 1.0f, x, In, w, In,
                b ? 1.0f : 0.0f, y, O);
}

void bt_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int N, int In, int O) {
    if (N <= 0 || O <= 0) return;
    if (db) /* column sums over the batch, in double, a block of columns per row sweep */
        for (int o0 = 0; o0 < O; o0 += 64) {
            double s[64] = {0};
            int m = O - o0 < 64 ? O - o0 : 64;
            for (int n = 0; n < N; n++) {
                const float *r = dy + (size_t)n * O + o0;
                for (int j = 0; j < m; j++) s[j] += r[j];
            }
            for (int j = 0; j < m; j++) db[o0 + j] += (float)s[j];
        }
    if (In <= 0) return;
    if (dx) /* dx (N,In) += dy (N,O) w (O,In) */
        bt_sgemm(BT_NOTRANS, BT_NOTRANS, N, In, O, 1.0f, dy, O, w, In, 1.0f,
                    dx, In);
    if (dw) /* dw (O,In) += dy^T (O,N) x (N,In) */
        bt_sgemm(BT_TRANS, BT_NOTRANS, O, In, N, 1.0f, dy, O, x, In, 1.0f, dw,
                    In);
}
