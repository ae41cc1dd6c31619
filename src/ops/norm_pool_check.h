/* Argument checks shared by the optimised batch-norm / pooling / cross-entropy ops and their
 * references, so both reject the same inputs with the same message (private to src/ops).
 * Checks run on the calling thread before any parallel region: bt_fail's message is
 * thread-local, so it must be set where the caller will read it. */
#ifndef BARLOW_OPS_NORM_POOL_CHECK_H
#define BARLOW_OPS_NORM_POOL_CHECK_H
#include "barlow/error.h"
#include <stdint.h>

static inline int bt_batchnorm_check(int N, int C, int HW, int training,
                                     const void *running_mean, const void *running_var,
                                     double momentum, double eps) {
    if (N <= 0 || C <= 0 || HW <= 0)
        return bt_fail(BT_EINVAL, "batchnorm: sizes must be positive, got N=%d C=%d HW=%d", N,
                       C, HW);
    if (training && (int64_t)N * HW == 1)
        return bt_fail(BT_EINVAL,
                       "batchnorm: Expected more than 1 value per channel when training, got "
                       "input size (N=%d, C=%d, HW=%d)",
                       N, C, HW);
    if ((running_mean == NULL) != (running_var == NULL))
        return bt_fail(BT_EINVAL, "batchnorm: running_mean and running_var must both be given "
                                  "or both be NULL");
    if (!training && !running_mean)
        return bt_fail(BT_EINVAL, "batchnorm: eval mode needs running_mean and running_var");
    if (!(eps >= 0) || !(momentum >= 0 && momentum <= 1))
        return bt_fail(BT_EINVAL, "batchnorm: need eps >= 0 and momentum in [0,1], got eps=%g "
                                  "momentum=%g", eps, momentum);
    return BT_OK;
}

/* PyTorch's rules (ceil_mode=False, dilation 1): pad <= k/2 and the kernel fits the padded
 * input; flat argmax indices must fit int32. */
static inline int bt_maxpool2d_check(int N, int C, int H, int W, int k, int stride, int pad) {
    if (N <= 0 || C <= 0 || H <= 0 || W <= 0)
        return bt_fail(BT_EINVAL, "maxpool2d: sizes must be positive, got N=%d C=%d H=%d W=%d",
                       N, C, H, W);
    if (k <= 0 || stride <= 0 || pad < 0)
        return bt_fail(BT_EINVAL, "maxpool2d: need kernel > 0, stride > 0, pad >= 0, got "
                                  "kernel=%d stride=%d pad=%d", k, stride, pad);
    if (pad > k / 2)
        return bt_fail(BT_EINVAL, "maxpool2d: pad should be at most half of kernel size, but "
                                  "got pad=%d and kernel_size=%d", pad, k);
    if ((int64_t)H + 2 * (int64_t)pad < k || (int64_t)W + 2 * (int64_t)pad < k)
        return bt_fail(BT_EINVAL, "maxpool2d: kernel %d does not fit the padded input %dx%d "
                                  "(pad %d): output size is too small", k, H, W, pad);
    if ((int64_t)H * W > INT32_MAX)
        return bt_fail(BT_EINVAL, "maxpool2d: plane %dx%d too large for int32 argmax", H, W);
    return BT_OK;
}

static inline int bt_xent_check(const int32_t *labels, int N, int K) {
    if (N <= 0 || K <= 0)
        return bt_fail(BT_EINVAL, "xent: sizes must be positive, got N=%d K=%d", N, K);
    for (int n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= K)
            return bt_fail(BT_EINVAL, "xent: label %d at row %d is outside [0, %d)",
                           (int)labels[n], n, K);
    return BT_OK;
}

#endif
