/* The portable micro-kernel (plain C, the generic path) and the partial-tile store that all
 * kernels share. 4 x 8 is what fits the 16 SSE registers of baseline x86-64 (8 accumulators,
 * two B vectors, one broadcast); the same code takes any mr x nr as the tests' reference. */
#include "gemm_internal.h"
#include <string.h>

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

/* ---- bf16 ---- */

uint16_t bt_bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero, subnormal */
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN: quiet */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  /* nearest, ties to even */
}

void bt_cvt_bf16_ref(float *panel, int width, int kc) {
    uint32_t *w = (uint32_t *)(void *)panel;
    for (int p = 0; p < (kc + 1) / 2; p++)
        for (int r = 0; r < width; r++) {
            /* read both rows before the word overwrites row p (p <= 2p: in place is safe) */
            const float lo = panel[(size_t)2 * p * width + r];
            const float hi = 2 * p + 1 < kc ? panel[(size_t)(2 * p + 1) * width + r] : 0.0f;
            w[(size_t)p * width + r] = (uint32_t)bt_bf16_bits(lo) | (uint32_t)bt_bf16_bits(hi) << 16;
        }
}

static float bf16_lo(uint32_t w) {
    const uint32_t u = w << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static float bf16_hi(uint32_t w) {
    const uint32_t u = w & 0xffff0000u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void bt_ukr_ref_bf16_any(int mr, int nr, int kc, const uint32_t *a, const uint32_t *b, float *c,
                         ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    float acc[32 * 64];
    for (int i = 0; i < mr * nr; i++) acc[i] = 0.0f;
    for (int p = 0; p < (kc + 1) / 2; p++, a += mr, b += nr)
        for (int i = 0; i < mr; i++) {
            const float alo = bf16_lo(a[i]), ahi = bf16_hi(a[i]);
            for (int j = 0; j < nr; j++) {
                acc[i * nr + j] += alo * bf16_lo(b[j]); /* products exact: one rounding each */
                acc[i * nr + j] += ahi * bf16_hi(b[j]);
            }
        }
    for (int i = 0; i < mr * nr; i++) acc[i] *= alpha;
    bt_ukr_store_tile(acc, nr, c, ldc, beta, m, n);
}
