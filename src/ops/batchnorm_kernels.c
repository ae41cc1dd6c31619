/* The per-channel loops of batch normalisation (batchnorm.c, batchnorm_sync.c), one copy per
 * instruction-set path, chosen with the GEMM kernels' path (bt_isa_current), so BARLOW_ISA
 * pins them too.
 *
 * The sums are in double and their order is fixed by the source, not by the vector width:
 * element i of each row goes to lane i % BNK_LANES, the rows are taken in order, and the
 * lanes are combined by the same pairwise tree at the end. With no contraction into FMAs
 * (-ffp-contract=off), every path computes bit-identical statistics and gradients; only the
 * speed differs. (An `omp simd reduction` would let the compiler choose the lane count, so
 * the sums of an AVX-512 copy and an SSE2 copy would differ in their last bits.) */
#include "batchnorm_internal.h"
#include "barlow/cpu.h"

#define BNK_LANES 16

/* Sums the lanes in a fixed tree: lanes j and j + w for w = 8, 4, 2, 1. */
static inline __attribute__((always_inline)) double lanes_total(double acc[BNK_LANES]) {
    for (int w = BNK_LANES / 2; w; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static inline __attribute__((always_inline)) double k_sum(const float *x, size_t cs, int N,
                                                          int HW) {
    double acc[BNK_LANES] = {0};
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * cs;
        int i = 0;
        for (; i + BNK_LANES <= HW; i += BNK_LANES)
            for (int j = 0; j < BNK_LANES; j++) acc[j] += r[i + j];
        for (int j = 0; i + j < HW; j++) acc[j] += r[i + j];
    }
    return lanes_total(acc);
}

static inline __attribute__((always_inline)) double k_sqdev(const float *x, size_t cs, int N,
                                                            int HW, double m) {
    double acc[BNK_LANES] = {0};
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * cs;
        int i = 0;
        for (; i + BNK_LANES <= HW; i += BNK_LANES)
            for (int j = 0; j < BNK_LANES; j++) {
                const double d = r[i + j] - m;
                acc[j] += d * d;
            }
        for (int j = 0; i + j < HW; j++) {
            const double d = r[i + j] - m;
            acc[j] += d * d;
        }
    }
    return lanes_total(acc);
}

static inline __attribute__((always_inline)) void k_norm(float *y, const float *x, size_t cs,
                                                         int N, int HW, float mhi, float mlo,
                                                         float a, float b) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * cs;
        float *yr = y + (size_t)n * cs;
        for (int i = 0; i < HW; i++) yr[i] = ((xr[i] - mhi) - mlo) * a + b;
    }
}

static inline __attribute__((always_inline)) void k_grad_sums(double *sdy_out, double *sdyx_out,
                                                              const float *dy, const float *x,
                                                              size_t cs, int N, int HW, float m,
                                                              float rs) {
    double a1[BNK_LANES] = {0}, a2[BNK_LANES] = {0};
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * cs, *dr = dy + (size_t)n * cs;
        int i = 0;
        for (; i + BNK_LANES <= HW; i += BNK_LANES)
            for (int j = 0; j < BNK_LANES; j++) {
                a1[j] += dr[i + j];
                a2[j] += (double)dr[i + j] * ((xr[i + j] - m) * rs);
            }
        for (int j = 0; i + j < HW; j++) {
            a1[j] += dr[i + j];
            a2[j] += (double)dr[i + j] * ((xr[i + j] - m) * rs);
        }
    }
    *sdy_out = lanes_total(a1);
    *sdyx_out = lanes_total(a2);
}

static inline __attribute__((always_inline)) void k_dx(float *dx, const float *dy, const float *x,
                                                       size_t cs, int N, int HW, float m,
                                                       float rs, float k, float mdy, float mdyx) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * cs, *dr = dy + (size_t)n * cs;
        float *o = dx + (size_t)n * cs;
        for (int i = 0; i < HW; i++) o[i] += k * (dr[i] - mdy - (xr[i] - m) * rs * mdyx);
    }
}

static inline __attribute__((always_inline)) void k_dx_eval(float *dx, const float *dy,
                                                            size_t cs, int N, int HW, float k) {
    for (int n = 0; n < N; n++) {
        const float *dr = dy + (size_t)n * cs;
        float *o = dx + (size_t)n * cs;
        for (int i = 0; i < HW; i++) o[i] += k * dr[i];
    }
}

/* One copy of the six loops per path: SUFFIX names it, ATTR compiles it. */
#define BNK_COPY(SUFFIX, ATTR)                                                                   \
    ATTR static double sum_##SUFFIX(const float *x, size_t cs, int N, int HW) {                  \
        return k_sum(x, cs, N, HW);                                                              \
    }                                                                                            \
    ATTR static double sqdev_##SUFFIX(const float *x, size_t cs, int N, int HW, double m) {      \
        return k_sqdev(x, cs, N, HW, m);                                                         \
    }                                                                                            \
    ATTR static void norm_##SUFFIX(float *y, const float *x, size_t cs, int N, int HW, float mhi, \
                                   float mlo, float a, float b) {                                \
        k_norm(y, x, cs, N, HW, mhi, mlo, a, b);                                                 \
    }                                                                                            \
    ATTR static void grad_sums_##SUFFIX(double *sdy, double *sdyx, const float *dy,              \
                                        const float *x, size_t cs, int N, int HW, float m,       \
                                        float rs) {                                              \
        k_grad_sums(sdy, sdyx, dy, x, cs, N, HW, m, rs);                                         \
    }                                                                                            \
    ATTR static void dx_##SUFFIX(float *dx, const float *dy, const float *x, size_t cs, int N,   \
                                 int HW, float m, float rs, float k, float mdy, float mdyx) {    \
        k_dx(dx, dy, x, cs, N, HW, m, rs, k, mdy, mdyx);                                         \
    }                                                                                            \
    ATTR static void dx_eval_##SUFFIX(float *dx, const float *dy, size_t cs, int N, int HW,      \
                                      float k) {                                                 \
        k_dx_eval(dx, dy, cs, N, HW, k);                                                         \
    }                                                                                            \
    static const bt_bn_kernels bnk_##SUFFIX = {#SUFFIX,          sum_##SUFFIX, sqdev_##SUFFIX,     \
                                              norm_##SUFFIX,    grad_sums_##SUFFIX, dx_##SUFFIX, \
                                              dx_eval_##SUFFIX};

BNK_COPY(generic, )
#if defined(__x86_64__) || defined(__i386__)
BNK_COPY(avx2, __attribute__((target("avx2,fma"))))
BNK_COPY(avx512, __attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))))
#endif

const bt_bn_kernels *bt_bn_kernels_for(int isa) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa == BT_ISA_AVX512) return &bnk_avx512;
    if (isa == BT_ISA_AVX2) return &bnk_avx2;
#endif
    return &bnk_generic;
}

const bt_bn_kernels *bt_bn_kernels_current(void) { return bt_bn_kernels_for(bt_isa_current()); }
