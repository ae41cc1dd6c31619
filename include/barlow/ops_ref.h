/* Plain reference implementations of every op in ops.h, compiled for float (_ref_f32) and
 * double (_ref_f64) from one template. They define the semantics: tests run finite
 * differences on the f64 versions and compare the optimised f32 ops against _ref_f32.
 * Same argument conventions as ops.h (backward accumulates). */
#ifndef BARLOW_OPS_REF_H
#define BARLOW_OPS_REF_H
#include "barlow/ops.h"

#define BT_REF_DECLS(T, SFX)                                                                 \
    int bt_conv2d_forward_ref_##SFX(T *out, const T *in, const T *w, const T *b,             \
                                    const bt_conv2d_desc *d);                               \
    int bt_conv2d_backward_ref_##SFX(T *dinp, T *dw, T *db, const T *dout, const T *in,      \
                                     const T *w, const bt_conv2d_desc *d);                  \
    void bt_linear_forward_ref_##SFX(T *y, const T *x, const T *w, const T *b, int N, int I, \
                                     int O);                                                \
    void bt_linear_backward_ref_##SFX(T *dx, T *dw, T *db, const T *dy, const T *x,          \
                                      const T *w, int N, int I, int O);                     \
    int bt_batchnorm_forward_ref_##SFX(T *y, T *mean, T *rstd, const T *x, const T *gamma,   \
                                       const T *beta, T *running_mean, T *running_var, int N,\
                                       int C, int HW, int training, T momentum, T eps);     \
    void bt_batchnorm_backward_ref_##SFX(T *dx, T *dgamma, T *dbeta, const T *dy, const T *x,\
                                         const T *gamma, const T *mean, const T *rstd, int N,\
                                         int C, int HW, int training);                      \
    int bt_batchnorm_relu_forward_ref_##SFX(T *y, T *mean, T *rstd, const T *x,              \
                                            const T *gamma, const T *beta, T *running_mean,  \
                                            T *running_var, int N, int C, int HW,            \
                                            int training, T momentum, T eps);                \
    void bt_batchnorm_relu_backward_ref_##SFX(T *dx, T *dgamma, T *dbeta, const T *dy,       \
                                              const T *y, const T *x, const T *gamma,        \
                                              const T *mean, const T *rstd, int N, int C,    \
                                              int HW, int training);                         \
    void bt_relu_forward_ref_##SFX(T *y, const T *x, size_t n);                              \
    void bt_relu_backward_ref_##SFX(T *dx, const T *dy, const T *y, size_t n);               \
    void bt_add_forward_ref_##SFX(T *y, const T *a, const T *b, size_t n);                   \
    void bt_add_backward_ref_##SFX(T *da, T *db, const T *dy, size_t n);                     \
    void bt_add_relu_forward_ref_##SFX(T *y, const T *a, const T *b, size_t n);              \
    void bt_add_relu_backward_ref_##SFX(T *da, T *db, const T *dy, const T *y, size_t n);    \
    int bt_maxpool2d_forward_ref_##SFX(T *y, int32_t *argmax, const T *x, int N, int C, int H,\
                                       int W, int k, int stride, int pad);                  \
    void bt_maxpool2d_backward_ref_##SFX(T *dx, const T *dy, const int32_t *argmax, int N,   \
                                         int C, int H, int W, int OH, int OW);              \
    void bt_avgpool_forward_ref_##SFX(T *y, const T *x, int N, int C, int HW);               \
    void bt_avgpool_backward_ref_##SFX(T *dx, const T *dy, int N, int C, int HW);            \
    int bt_xent_forward_ref_##SFX(T *loss, T *probs, const T *logits, const int32_t *labels, \
                                  int N, int K);                                            \
    void bt_xent_backward_ref_##SFX(T *dlogits, const T *probs, const int32_t *labels,       \
                                    T dloss, int N, int K);

BT_REF_DECLS(float, f32)
BT_REF_DECLS(double, f64)
#undef BT_REF_DECLS

#endif
