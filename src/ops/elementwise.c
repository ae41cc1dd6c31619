/* Elementwise ops (ReLU, residual add, and the add + ReLU that ends a residual block, fused),
 * optimised float32 version: one parallel SIMD loop each. Small arrays run on one thread, where starting a team would cost more than the work. */
#include "barlow/ops.h"
#include "barlow/scratch.h"

#define BT_EW_PAR_MIN ((size_t)1 << 15) /* elements below which threads do not pay off */

/* y, x (n). `x <= 0 ? 0 : x` keeps NaN, as PyTorch's clamp does. */
void bt_relu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
    for (size_t i = 0; i < n; i++) y[i] = x[i] <= 0 ? 0.0f : x[i];
}

/* dx, dy, y (n). PyTorch's threshold_backward: zero where y <= 0. */
void bt_relu_backward(float *dx, const float *dy, const float *y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
    for (size_t i = 0; i < n; i++) dx[i] += y[i] <= 0 ? 0.0f : dy[i];
}

/* d, y (n): the ReLU backward in place on the output gradient (the model's planner lets the
 * input gradient share the output gradient's buffer when nothing else reads the input). */
void bt_relu_backward_inplace(float *d, const float *y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
    for (size_t i = 0; i < n; i++) d[i] = y[i] <= 0 ? 0.0f : d[i];
}

/* y, a, b (n). */
void bt_add_forward(float *y, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* da, db, dy (n); da or db may be NULL. */
void bt_add_backward(float *da, float *db, const float *dy, size_t n) {
    if (da) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
        for (size_t i = 0; i < n; i++) da[i] += dy[i];
    }
    if (db) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
        for (size_t i = 0; i < n; i++) db[i] += dy[i];
    }
}

/* y, a, b (n): `s <= 0 ? 0 : s` on the float sum, as bt_relu_forward on bt_add_forward's y. */
void bt_add_relu_forward(float *y, const float *a, const float *b, size_t n) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
    for (size_t i = 0; i < n; i++) {
        const float s = a[i] + b[i];
        y[i] = s <= 0 ? 0.0f : s;
    }
}

/* da, db, dy, y (n); da or db may be NULL. */
void bt_add_relu_backward(float *da, float *db, const float *dy, const float *y, size_t n) {
    if (da && db) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
        for (size_t i = 0; i < n; i++) {
            const float g = y[i] <= 0 ? 0.0f : dy[i];
            da[i] += g;
            db[i] += g;
        }
    } else if (da || db) {
        float *d = da ? da : db;
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
        for (size_t i = 0; i < n; i++) d[i] += y[i] <= 0 ? 0.0f : dy[i];
    }
}

/* d, db, y (n): the block's output gradient masked in place (now the gradient of the addend
 * that shares its buffer), and handed to the other addend's db unless that shares it too. */
void bt_add_relu_backward_inplace(float *d, float *db, const float *y, size_t n) {
    if (db) {
#pragma omp parallel for simd schedule(static) if (n >= BT_EW_PAR_MIN) num_threads(bt_threads())
        for (size_t i = 0; i < n; i++) {
            const float g = y[i] <= 0 ? 0.0f : d[i];
            d[i] = g;
            db[i] += g;
        }
    } else {
        bt_relu_backward_inplace(d, y, n);
    }
}
