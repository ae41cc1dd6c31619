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
#include <stdint.h>
#include <string.h>

#define BNK_LANES 16

/* Sums the lanes in a fixed tree: lanes j and j + w for w = 8, 4, 2, 1. */
static inline __attribute__((always_inline)) double lanes_total(double acc[BNK_LANES]) {
    for (int w = BNK_LANES / 2; w; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* Software prefetch of the rows ahead. A channel's rows lie C * HW floats apart, each a run of
 * HW floats: the hardware's stream prefetchers stop at page boundaries and need a few misses
 * to start again, so on short rows (1 KB down to one 64-byte line on ResNet's later stages)
 * every row would wait on memory. The loops that read a channel from memory touch, in each
 * 16-float step of a row, the same line of the row bnk_pf_rows(HW) ahead (about 8 KB ahead),
 * so those lines arrive before they are needed. Prefetches change no arithmetic. */
static inline __attribute__((always_inline)) int bnk_pf_rows(int HW) {
    const int d = 2048 / (HW > 0 ? HW : 1);
    return d < 1 ? 1 : d > 64 ? 64 : d;
}
#define BNK_PF(p) __builtin_prefetch((p), 0, 3)
/* How far ahead of row n (of N, cs floats apart) the prefetches point: pd rows, or the row
 * itself near the end (a prefetch of data already read, harmless). */
static inline __attribute__((always_inline)) size_t bnk_pf_ahead(int n, int N, int pd,
                                                                 size_t cs) {
    return n + pd < N ? (size_t)pd * cs : 0;
}

static inline __attribute__((always_inline)) double k_sum(const float *x, size_t cs, int N,
                                                          int HW) {
    double acc[BNK_LANES] = {0};
    const int pd = bnk_pf_rows(HW);
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * cs;
        const size_t ahead = bnk_pf_ahead(n, N, pd, cs);
        int i = 0;
        for (; i + BNK_LANES <= HW; i += BNK_LANES) {
            BNK_PF(r + ahead + i);
            for (int j = 0; j < BNK_LANES; j++) acc[j] += r[i + j];
        }
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

/* bnk_maskd, bnk_sel and the BNK_ macros (the ReLU's mask, the set/+= store):
 * batchnorm_internal.h. */

static inline __attribute__((always_inline)) void k_norm(float *y, const float *x, size_t cs,
                                                         int N, int HW, float mhi, float mlo,
                                                         float a, float b, const int relu) {
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * cs;
        float *yr = y + (size_t)n * cs;
        for (int i = 0; i < HW; i++) {
            const float v = ((xr[i] - mhi) - mlo) * a + b;
            yr[i] = BNK_RELU(relu, v);
        }
    }
}

/* y: the ReLU's output where relu (else unread, may be NULL). */
static inline __attribute__((always_inline)) void k_grad_sums(double *sdy_out, double *sdyx_out,
                                                              const float *dy, const float *y,
                                                              const float *x, size_t cs, int N,
                                                              int HW, float m, float rs,
                                                              const int relu) {
    double a1[BNK_LANES] = {0}, a2[BNK_LANES] = {0};
    const int pd = bnk_pf_rows(HW);
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * cs, *dr = dy + (size_t)n * cs;
        const float *yr = relu ? y + (size_t)n * cs : dr;
        const size_t ahead = bnk_pf_ahead(n, N, pd, cs);
        int i = 0;
        for (; i + BNK_LANES <= HW; i += BNK_LANES) {
            BNK_PF(xr + ahead + i);
            BNK_PF(dr + ahead + i);
            if (relu) BNK_PF(yr + ahead + i);
            for (int j = 0; j < BNK_LANES; j++)
                BNK_GRAD_TERMS(relu, yr[i + j], dr[i + j], xr[i + j], m, rs, a1[j], a2[j]);
        }
        for (int j = 0; i + j < HW; j++)
            BNK_GRAD_TERMS(relu, yr[i + j], dr[i + j], xr[i + j], m, rs, a1[j], a2[j]);
    }
    *sdy_out = lanes_total(a1);
    *sdyx_out = lanes_total(a2);
}


static inline __attribute__((always_inline)) void k_dx(float *dx, const float *dy, const float *y,
                                                       const float *x, size_t cs, int N, int HW,
                                                       float m, float rs, float k, float mdy,
                                                       float mdyx, const int relu,
                                                       const int set) {
    /* Rows last to first: on a channel larger than the cache (ResNet's first stage at batch
     * 256: three 1 MB streams against a 1-2 MB L2), the rows grad_sums read last are the
     * ones still there. Each element is independent: the order changes no result. */
    for (int n = N - 1; n >= 0; n--) {
        const float *xr = x + (size_t)n * cs, *dr = dy + (size_t)n * cs;
        const float *yr = relu ? y + (size_t)n * cs : dr;
        float *o = dx + (size_t)n * cs;
        for (int i = 0; i < HW; i++)
            BNK_STORE(set, o[i], BNK_DX(relu, yr[i], dr[i], xr[i], m, rs, k, mdy, mdyx));
    }
}

static inline __attribute__((always_inline)) void k_dx_eval(float *dx, const float *dy,
                                                            const float *y, size_t cs, int N,
                                                            int HW, float k, const int relu,
                                                            const int set) {
    for (int n = 0; n < N; n++) {
        const float *dr = dy + (size_t)n * cs;
        const float *yr = relu ? y + (size_t)n * cs : dr;
        float *o = dx + (size_t)n * cs;
        for (int i = 0; i < HW; i++) {
            BNK_STORE(set, o[i], BNK_DX_EVAL(relu, yr[i], dr[i], k));
        }
    }
}

/* One copy of the fourteen loops per path (the six of batch norm, the four of batch norm +
 * ReLU, and the overwriting forms of the four dx loops): SUFFIX names it, ATTR compiles it. */
#define BNK_COPY(SUFFIX, ATTR)                                                                   \
    ATTR static double sum_##SUFFIX(const float *x, size_t cs, int N, int HW) {                  \
        return k_sum(x, cs, N, HW);                                                              \
    }                                                                                            \
    ATTR static double sqdev_##SUFFIX(const float *x, size_t cs, int N, int HW, double m) {      \
        return k_sqdev(x, cs, N, HW, m);                                                         \
    }                                                                                            \
    ATTR static void norm_##SUFFIX(float *y, const float *x, size_t cs, int N, int HW, float mhi, \
                                   float mlo, float a, float b) {                                \
        k_norm(y, x, cs, N, HW, mhi, mlo, a, b, 0);                                              \
    }                                                                                            \
    ATTR static void grad_sums_##SUFFIX(double *sdy, double *sdyx, const float *dy,              \
                                        const float *x, size_t cs, int N, int HW, float m,       \
                                        float rs) {                                              \
        k_grad_sums(sdy, sdyx, dy, NULL, x, cs, N, HW, m, rs, 0);                                \
    }                                                                                            \
    ATTR static void dx_##SUFFIX(float *dx, const float *dy, const float *x, size_t cs, int N,   \
                                 int HW, float m, float rs, float k, float mdy, float mdyx) {    \
        k_dx(dx, dy, NULL, x, cs, N, HW, m, rs, k, mdy, mdyx, 0, 0);                             \
    }                                                                                            \
    ATTR static void dx_set_##SUFFIX(float *dx, const float *dy, const float *x, size_t cs,      \
                                     int N, int HW, float m, float rs, float k, float mdy,       \
                                     float mdyx) {                                               \
        k_dx(dx, dy, NULL, x, cs, N, HW, m, rs, k, mdy, mdyx, 0, 1);                             \
    }                                                                                            \
    ATTR static void dx_eval_##SUFFIX(float *dx, const float *dy, size_t cs, int N, int HW,      \
                                      float k) {                                                 \
        k_dx_eval(dx, dy, NULL, cs, N, HW, k, 0, 0);                                             \
    }                                                                                            \
    ATTR static void dx_eval_set_##SUFFIX(float *dx, const float *dy, size_t cs, int N, int HW,  \
                                          float k) {                                             \
        k_dx_eval(dx, dy, NULL, cs, N, HW, k, 0, 1);                                             \
    }                                                                                            \
    ATTR static void norm_relu_##SUFFIX(float *y, const float *x, size_t cs, int N, int HW,      \
                                        float mhi, float mlo, float a, float b) {                \
        k_norm(y, x, cs, N, HW, mhi, mlo, a, b, 1);                                              \
    }                                                                                            \
    ATTR static void grad_sums_relu_##SUFFIX(double *sdy, double *sdyx, const float *dy,         \
                                             const float *y, const float *x, size_t cs, int N,   \
                                             int HW, float m, float rs) {                        \
        k_grad_sums(sdy, sdyx, dy, y, x, cs, N, HW, m, rs, 1);                                   \
    }                                                                                            \
    ATTR static void dx_relu_##SUFFIX(float *dx, const float *dy, const float *y, const float *x, \
                                      size_t cs, int N, int HW, float m, float rs, float k,      \
                                      float mdy, float mdyx) {                                   \
        k_dx(dx, dy, y, x, cs, N, HW, m, rs, k, mdy, mdyx, 1, 0);                                \
    }                                                                                            \
    ATTR static void dx_relu_set_##SUFFIX(float *dx, const float *dy, const float *y,            \
                                          const float *x, size_t cs, int N, int HW, float m,     \
                                          float rs, float k, float mdy, float mdyx) {            \
        k_dx(dx, dy, y, x, cs, N, HW, m, rs, k, mdy, mdyx, 1, 1);                                \
    }                                                                                            \
    ATTR static void dx_eval_relu_##SUFFIX(float *dx, const float *dy, const float *y, size_t cs, \
                                           int N, int HW, float k) {                             \
        k_dx_eval(dx, dy, y, cs, N, HW, k, 1, 0);                                                \
    }                                                                                            \
    ATTR static void dx_eval_relu_set_##SUFFIX(float *dx, const float *dy, const float *y,       \
                                               size_t cs, int N, int HW, float k) {              \
        k_dx_eval(dx, dy, y, cs, N, HW, k, 1, 1);                                                \
    }                                                                                            \
    static const bt_bn_kernels bnk_##SUFFIX = {                                                  \
        .name = #SUFFIX,                                                                         \
        .sum = sum_##SUFFIX,                                                                     \
        .sqdev = sqdev_##SUFFIX,                                                                 \
        .norm = norm_##SUFFIX,                                                                   \
        .grad_sums = grad_sums_##SUFFIX,                                                         \
        .dx = dx_##SUFFIX,                                                                       \
        .dx_eval = dx_eval_##SUFFIX,                                                             \
        .norm_relu = norm_relu_##SUFFIX,                                                         \
        .grad_sums_relu = grad_sums_relu_##SUFFIX,                                               \
        .dx_relu = dx_relu_##SUFFIX,                                                             \
        .dx_eval_relu = dx_eval_relu_##SUFFIX,                                                   \
        .dx_set = dx_set_##SUFFIX,                                                               \
        .dx_eval_set = dx_eval_set_##SUFFIX,                                                     \
        .dx_relu_set = dx_relu_set_##SUFFIX,                                                     \
        .dx_eval_relu_set = dx_eval_relu_set_##SUFFIX};

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
