/* What the AVX-512 kernel files (ukernel_avx512.c, float; ukernel_avx512_bf16.c, bf16) share,
 * included inside their AVX-512 target regions: the 14 x 32 tile's row dispatch and store, and
 * the in-register transpose of the packs. */
#ifndef BARLOW_UKERNEL_AVX512_COMMON_H
#define BARLOW_UKERNEL_AVX512_COMMON_H
#include "gemm_internal.h"
#include <immintrin.h>

#ifndef BT_AVX512_MR
#define BT_AVX512_MR 14
#endif
#define MR BT_AVX512_MR
#define NR 32

/* ROWS(R, ...) for the R rows a partial panel of m rows needs (rounded up to an even count;
 * Winograd's chunks are rarely a multiple of 14 tiles), returning from the caller; MR rows
 * after it for a full panel. Each row's arithmetic is the same for every R. */
#if MR == 14
#define BT_AVX512_BY_ROWS(ROWS, m, ...)                                                          \
    switch (((m) + 1) / 2) {                                                                     \
    case 1: ROWS(2, __VA_ARGS__); return;                                                        \
    case 2: ROWS(4, __VA_ARGS__); return;                                                        \
    case 3: ROWS(6, __VA_ARGS__); return;                                                        \
    case 4: ROWS(8, __VA_ARGS__); return;                                                        \
    case 5: ROWS(10, __VA_ARGS__); return;                                                       \
    case 6: ROWS(12, __VA_ARGS__); return;                                                       \
    default: break;                                                                              \
    }
#else
#define BT_AVX512_BY_ROWS(ROWS, m, ...)
#endif

/* The lanes of 16-lane block r0 (a multiple of 16) among the first n of a panel: 0 to 16. */
static inline int avx512_lanes(int n, int r0) {
    return n - r0 < 0 ? 0 : n - r0 < 16 ? n - r0 : 16;
}

/* The non-transposing packs' masks, per 16-lane block of a panel `width` (MR or NR, at most
 * 32) wide whose first nrows lanes come from the source: lm[c] the lanes read, sm[c] the lanes
 * stored (the rest zero). Returns the number of blocks. The packs prefetch the source row
 * PACK_PF rows ahead. */
#define PACK_PF 8
_Static_assert(MR <= 32 && NR <= 32, "the packs' lane masks cover 32 columns");
static inline int avx512_panel_masks(int width, int nrows, __mmask16 lm[2], __mmask16 sm[2]) {
    int nch = 0;
    for (int r0 = 0; r0 < width && nch < 2; r0 += 16, nch++) {
        lm[nch] = (__mmask16)((1u << avx512_lanes(nrows, r0)) - 1);
        sm[nch] = (__mmask16)((1u << avx512_lanes(width, r0)) - 1);
    }
    return nch;
}

/* The tile's R rows of sums (c0: columns 0-15, c1: 16-31) into C as the contract says: the
 * sums as they are for a full tile with alpha 1 and beta 0; alpha * sum (+ beta * C) for a
 * full tile; through bt_ukr_store_tile for a partial one. */
static inline __attribute__((always_inline)) void
avx512_store_rows(const int R, const __m512 *c0, const __m512 *c1, float *c, ptrdiff_t ldc,
                  float alpha, float beta, int m, int n) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (m == MR && n == NR && alpha == 1.0f && beta == 0.0f) { /* C = the sums, as they are */
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            _mm512_storeu_ps(c + i * ldc, c0[i]);
            _mm512_storeu_ps(c + i * ldc + 16, c1[i]);
        }
        return;
    }
    if (m == MR && n == NR) {
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
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
    for (int i = 0; i < R; i++) {
        _mm512_storeu_ps(t + i * NR, _mm512_mul_ps(va, c0[i]));
        _mm512_storeu_ps(t + i * NR + 16, _mm512_mul_ps(va, c1[i]));
    }
    bt_ukr_store_tile(t, NR, c, ldc, beta, m, n);
}

/* In-register 16 x 16 transpose: r[i] lane j -> r[j] lane i. Two unpack stages transpose the
 * 4 x 4 blocks inside each 128-bit lane; two 128-bit-lane shuffles move the blocks. */
static inline void tr16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c)); /* columns 0, 4, 8, 12 */
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c)); /* 1, 5, 9, 13 */
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d)); /* 2, 6, 10, 14 */
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d)); /* 3, 7, 11, 15 */
    }
    for (int c = 0; c < 4; c++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
        r[c] = _mm512_shuffle_f32x4(v0, w0, _MM_SHUFFLE(2, 0, 2, 0));
        r[c + 8] = _mm512_shuffle_f32x4(v0, w0, _MM_SHUFFLE(3, 1, 3, 1));
        r[c + 4] = _mm512_shuffle_f32x4(v1, w1, _MM_SHUFFLE(2, 0, 2, 0));
        r[c + 12] = _mm512_shuffle_f32x4(v1, w1, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

#endif
