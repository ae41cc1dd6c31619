/* The AVX2+FMA micro-kernel: 6 x 16 (12 ymm accumulators, two B vectors and one broadcast:
 * 15 of the 16 ymm registers), the shape BLIS and OpenBLAS use on Haswell-class cores, which
 * keeps both FMA ports busy with 12 independent chains (more than FMA latency x ports).
 * It only runs where bt_isa_supported(BT_ISA_AVX2) holds. */
#include "gemm_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Every function below is compiled for AVX2+FMA (and only they are), by attribute rather than
 * by per-file flags, so any build of this file (the fuzzers' too) compiles it the same way. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define MR 6
#define NR 16

/* R rows (R <= MR) of the tile, from panels of MR rows: a partial last panel multiplies only
 * the rows it has, rounded up to even (as the AVX-512 kernel). */
/* A(i, k) = a[i * si + k * sk]: (1, MR) for a packed panel, (lda, 1) for a row-major A read in
 * place (fn_ua), (1, lda) for a transposed one (fn_uat); the arithmetic is the same in all three. */
static inline __attribute__((always_inline)) void
ukr_rows(const int R, int kc, const float *a, ptrdiff_t si, ptrdiff_t sk, const float *b,
         float *c, ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 6
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++, a += sk, b += NR) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i * si);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (m == MR && n == NR && alpha == 1.0f && beta == 0.0f) { /* C = the sums, as they are */
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            _mm256_storeu_ps(c + i * ldc, c0[i]);
            _mm256_storeu_ps(c + i * ldc + 8, c1[i]);
        }
        return;
    }
    if (m == MR && n == NR) {
#pragma GCC unroll 6
        for (int i = 0; i < R; i++) {
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
    for (int i = 0; i < R; i++) {
        _mm256_storeu_ps(t + i * NR, _mm256_mul_ps(va, c0[i]));
        _mm256_storeu_ps(t + i * NR + 8, _mm256_mul_ps(va, c1[i]));
    }
    bt_ukr_store_tile(t, NR, c, ldc, beta, m, n);
}

static void ukr_avx2_6x16(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                          float alpha, float beta, int m, int n) {
    if (m <= 2)
        ukr_rows(2, kc, a, 1, MR, b, c, ldc, alpha, beta, m, n);
    else if (m <= 4)
        ukr_rows(4, kc, a, 1, MR, b, c, ldc, alpha, beta, m, n);
    else
        ukr_rows(MR, kc, a, 1, MR, b, c, ldc, alpha, beta, m, n);
}

static void ukr_avx2_ua(int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
                        ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    switch (m) {
    case 1: ukr_rows(1, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    case 2: ukr_rows(2, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    case 3: ukr_rows(3, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    case 4: ukr_rows(4, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    case 5: ukr_rows(5, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    default: ukr_rows(MR, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    }
}

static void ukr_avx2_uat(int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
                        ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    switch (m) {
    case 1: ukr_rows(1, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    case 2: ukr_rows(2, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    case 3: ukr_rows(3, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    case 4: ukr_rows(4, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    case 5: ukr_rows(5, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    default: ukr_rows(MR, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    }
}

/* In-register 8 x 8 transpose: r[i] lane j -> r[j] lane i (unpack, shuffle, then swap the
 * 128-bit halves). */
static inline void tr8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* Lane mask of the first n (0..8) lanes, for maskload/maskstore. */
static inline __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Up to 8 rows (nrows) into `lanes` (<= 8) columns of dst, stride dstride per k. */
static void pack_t8(float *dst, int dstride, int lanes, const float *src, size_t ld, int nrows,
                    int kc) {
    const __m256i sm = first_lanes(lanes);
    for (int k0 = 0; k0 < kc; k0 += 8) {
        const int kk = kc - k0 < 8 ? kc - k0 : 8;
        const __m256i lm = first_lanes(kk);
        __m256 r[8];
        for (int i = 0; i < 8; i++)
            r[i] = i < nrows ? _mm256_maskload_ps(src + i * ld + k0, lm) : _mm256_setzero_ps();
        tr8(r);
        for (int j = 0; j < kk; j++)
            _mm256_maskstore_ps(dst + (size_t)(k0 + j) * dstride, sm, r[j]);
    }
}

static void pack_t_avx2(float *dst, int width, const float *src, size_t ld, int nrows, int kc) {
    for (int r0 = 0; r0 < width; r0 += 8) {
        const int lanes = width - r0 < 8 ? width - r0 : 8;
        const int rows = nrows - r0 < 0 ? 0 : nrows - r0 < 8 ? nrows - r0 : 8;
        pack_t8(dst + r0, width, lanes, src + (size_t)r0 * ld, ld, rows, kc);
    }
}

/* Whole rows at a time, the row PACK_PF ahead prefetched: see pack_n_avx512 for why. */
#define PACK_PF 8
_Static_assert(MR <= 16 && NR <= 16, "pack_n's lane masks cover 16 columns");
static void pack_n_avx2(float *dst, int width, const float *src, size_t ld, int nrows, int kc) {
    __m256i lm[2], sm[2]; /* width is MR or NR: at most 16 */
    int nch = 0;
    for (int r0 = 0; r0 < width && nch < 2; r0 += 8, nch++) {
        const int lanes = width - r0 < 8 ? width - r0 : 8;
        const int rows = nrows - r0 < 0 ? 0 : nrows - r0 < 8 ? nrows - r0 : 8;
        lm[nch] = first_lanes(rows), sm[nch] = first_lanes(lanes);
    }
    for (int k = 0; k < kc; k++) {
        const float *s = src + (size_t)k * ld;
        float *d = dst + (size_t)k * width;
        if (k + PACK_PF < kc)
            for (int r0 = 0; r0 < nrows; r0 += 16) __builtin_prefetch(s + (size_t)PACK_PF * ld + r0);
        for (int c = 0; c < nch; c++)
            _mm256_maskstore_ps(d + 8 * c, sm[c], _mm256_maskload_ps(s + 8 * c, lm[c]));
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const bt_ukernel bt_ukernel_avx2 = {"avx2 6x16", MR, NR, ukr_avx2_6x16, pack_t_avx2,
                                    pack_n_avx2, ukr_avx2_ua, ukr_avx2_uat};
#else
const bt_ukernel bt_ukernel_avx2 = {"avx2 (not built)", 0, 0, 0, 0, 0, 0, 0};
#endif
