/* The AVX2+FMA micro-kernel: 6 x 16 (12 ymm accumulators, two B vectors and one broadcast:
 * 15 of the 16 ymm registers), the shape BLIS and OpenBLAS use on Haswell-class cores, which
 * keeps both FMA ports busy with 12 independent chains (more than FMA latency x ports).
 * This file alone is compiled with -mavx2 -mfma (see the Makefile); it only runs where
 * bt_isa_supported(BT_ISA_AVX2) holds. */
#include "gemm_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define MR 6
#define NR 16

static void ukr_avx2_6x16(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                          float alpha, float beta, int m, int n) {
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (m == MR && n == NR) {
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
            __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
            if (beta != 0.0f) {
                r0 = _mm256_add_ps(r0, _mm256_mul_ps(vb, _mm256_loadu_ps(ci)));
                r1 = _mm256_add_ps(r1, _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8)));
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci + 8, r1);
        }
        return;
    }
    float t[MR * NR];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_ps(t + i * NR, _mm256_mul_ps(va, c0[i]));
        _mm256_storeu_ps(t + i * NR + 8, _mm256_mul_ps(va, c1[i]));
    }
    bt_ukr_store_tile(t, NR, c, ldc, beta, m, n);
}

const bt_ukernel bt_ukernel_avx2 = {"avx2 6x16", MR, NR, ukr_avx2_6x16, NULL};
#else
const bt_ukernel bt_ukernel_avx2 = {"avx2 (not built)", 0, 0, 0, 0};
#endif
