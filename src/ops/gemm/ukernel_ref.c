/* The portable micro-kernel (plain C, the generic path) and the partial-tile store that all
 * kernels share. 4 x 8 is what fits the 16 SSE registers of baseline x86-64 (8 accumulators,
 * two B vectors, one broadcast); the same code takes any mr x nr as the tests' reference. */
#include "gemm_internal.h"

/* Kept out of the ISA files on purpose: compiled without FMA, so `t + beta * c` is two
 * roundings on every compiler (clang would otherwise contract it), the same as the full-tile
 * stores of the vector kernels. */
void bt_ukr_store_tile(const float *t, int nr, float *c, ptrdiff_t ldc, float beta, int m,
                       int n) {
    for (int i = 0; i < m; i++, c += ldc, t += nr) {
        if (beta == 0.0f)
            for (int j = 0; j < n; j++) c[j] = t[j];
        else
            for (int j = 0; j < n; j++) {
                const float bc = beta * c[j];
                c[j] = t[j] + bc;
            }
    }
}

/* mr, nr at most 32 x 64 (the largest tile any kernel uses, and bounded so the accumulator
 * lives on the stack); constant arguments let the compiler unroll and vectorise. */
static inline void ukr_ref(int mr, int nr, int kc, const float *a, const float *b, float *c,
                           ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    float acc[32 * 64];
    for (int i = 0; i < mr * nr; i++) acc[i] = 0.0f;
    for (int k = 0; k < kc; k++, a += mr, b += nr)
        for (int i = 0; i < mr; i++) {
            const float ai = a[i];
            for (int j = 0; j < nr; j++) acc[i * nr + j] += ai * b[j];
        }
    for (int i = 0; i < mr * nr; i++) acc[i] *= alpha;
    bt_ukr_store_tile(acc, nr, c, ldc, beta, m, n);
}

void bt_ukr_ref_any(int mr, int nr, int kc, const float *a, const float *b, float *c,
                    ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    ukr_ref(mr, nr, kc, a, b, c, ldc, alpha, beta, m, n);
}

#define REF_MR 4
#define REF_NR 8
static void ukr_ref_4x8(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                        float alpha, float beta, int m, int n) {
    ukr_ref(REF_MR, REF_NR, kc, a, b, c, ldc, alpha, beta, m, n);
}

const bt_ukernel bt_ukernel_ref = {"generic 4x8", REF_MR, REF_NR, ukr_ref_4x8, NULL, NULL, NULL, NULL};
