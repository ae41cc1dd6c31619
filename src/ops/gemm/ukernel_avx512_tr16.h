/* tr16 for the AVX-512 files (ukernel_avx512.c, ukernel_avx512_bf16.c), included inside their
 * AVX-512 target regions. */
#ifndef BARLOW_UKERNEL_AVX512_TR16_H
#define BARLOW_UKERNEL_AVX512_TR16_H
#include <immintrin.h>

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
