/* The AVX-512 micro-kernel: 14 x 32 (28 zmm accumulators, two B vectors and one broadcast:
 * 31 of the 32 zmm registers). 28 independent FMA chains cover the 4-cycle latency of two
 * FMA ports with room to spare, and each k step does 28 FMAs for 2 loads of B and 14
 * broadcasts of A (memory operands of the FMAs), the best ratio the register file allows.
 * Chosen against 12 x 32 and 6 x 64 with bench_gemm (see bench/README.md).
 * This file alone is compiled with the AVX-512 flags (see the Makefile); it only runs where
 * bt_isa_supported(BT_ISA_AVX512) holds. */
#include "gemm_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#ifndef BT_AVX512_MR
#define BT_AVX512_MR 14
#endif
#define MR BT_AVX512_MR
#define NR 32

static void ukr_avx512(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                       float alpha, float beta, int m, int n) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, a += MR, b += NR) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (m == MR && n == NR) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            float *ci = c + i * ldc;
            __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
            if (beta != 0.0f) {
                r0 = _mm512_add_ps(r0, _mm512_mul_ps(vb, _mm512_loadu_ps(ci)));
                r1 = _mm512_add_ps(r1, _mm512_mul_ps(vb, _mm512_loadu_ps(ci + 16)));
            }
            _mm512_storeu_ps(ci, r0);
            _mm512_storeu_ps(ci + 16, r1);
        }
        return;
    }
    float t[MR * NR];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(t + i * NR, _mm512_mul_ps(va, c0[i]));
        _mm512_storeu_ps(t + i * NR + 16, _mm512_mul_ps(va, c1[i]));
    }
    bt_ukr_store_tile(t, NR, c, ldc, beta, m, n);
}

#define BT_STR_(x) #x
#define BT_STR(x) BT_STR_(x)
const bt_ukernel bt_ukernel_avx512 = {"avx512 " BT_STR(MR) "x32", MR, NR, ukr_avx512};
#else
const bt_ukernel bt_ukernel_avx512 = {"avx512 (not built)", 0, 0, 0};
#endif
