/* The AVX-512 micro-kernel: 14 x 32 (28 zmm accumulators, two B vectors and one broadcast:
 * 31 of the 32 zmm registers). 28 independent FMA chains cover the 4-cycle latency of two
 * FMA ports with room to spare, and each k step does 28 FMAs for 2 loads of B and 14
 * broadcasts of A (memory operands of the FMAs), the best ratio the register file allows.
 * Chosen against 12 x 32 and 6 x 64 with bench_gemm (see bench/README.md).
 * It only runs where bt_isa_supported(BT_ISA_AVX512) holds. */
#include "gemm_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Every function below is compiled for AVX-512 (and only they are), by attribute rather than
 * by per-file flags, so any build of this file (the fuzzers' too) compiles it the same way. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl")
#endif

#include "ukernel_avx512_common.h"

/* R rows (R <= MR) of the tile, from panels of MR rows: a partial last panel (T tiles of a
 * Winograd chunk are rarely a multiple of 14) multiplies only the rows it has, rounded up to
 * an even count, instead of all MR. Each row's arithmetic is the same for every R. */
/* A(i, k) = a[i * si + k * sk]: (1, MR) for a packed panel, (lda, 1) for a row-major A read in
 * place (fn_ua), (1, lda) for a transposed one (fn_uat); the arithmetic is the same in all three. */
static inline __attribute__((always_inline)) void
ukr_rows(const int R, int kc, const float *a, ptrdiff_t si, ptrdiff_t sk, const float *b,
         float *c, ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, a += sk, b += NR) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * si]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    avx512_store_rows(R, c0, c1, c, ldc, alpha, beta, m, n);
}

static void ukr_avx512(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                       float alpha, float beta, int m, int n) {
    BT_AVX512_BY_ROWS(ukr_rows, m, kc, a, 1, MR, b, c, ldc, alpha, beta, m, n)
    ukr_rows(MR, kc, a, 1, MR, b, c, ldc, alpha, beta, m, n);
}

static void ukr_avx512_ua(int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
                          ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    switch (m) {
#define UA_CASE(r)                                                                          \
    case r: ukr_rows(r, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
        UA_CASE(1) UA_CASE(2) UA_CASE(3) UA_CASE(4) UA_CASE(5) UA_CASE(6) UA_CASE(7)
        UA_CASE(8) UA_CASE(9) UA_CASE(10) UA_CASE(11) UA_CASE(12) UA_CASE(13)
#undef UA_CASE
    default: ukr_rows(MR, kc, a, lda, 1, b, c, ldc, alpha, beta, m, n); return;
    }
}

static void ukr_avx512_uat(int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
                          ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    switch (m) {
#define UA_CASE(r)                                                                          \
    case r: ukr_rows(r, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
        UA_CASE(1) UA_CASE(2) UA_CASE(3) UA_CASE(4) UA_CASE(5) UA_CASE(6) UA_CASE(7)
        UA_CASE(8) UA_CASE(9) UA_CASE(10) UA_CASE(11) UA_CASE(12) UA_CASE(13)
#undef UA_CASE
    default: ukr_rows(MR, kc, a, 1, lda, b, c, ldc, alpha, beta, m, n); return;
    }
}

/* Up to 16 rows (nrows) into `lanes` (<= 16) columns of dst, stride dstride per k. */
static void pack_t16(float *dst, int dstride, int lanes, const float *src, size_t ld, int nrows,
                     int kc) {
    const __mmask16 sm = (__mmask16)((1u << lanes) - 1);
    for (int k0 = 0; k0 < kc; k0 += 16) {
        const int kk = kc - k0 < 16 ? kc - k0 : 16;
        const __mmask16 lm = (__mmask16)((1u << kk) - 1);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < nrows ? _mm512_maskz_loadu_ps(lm, src + i * ld + k0) : _mm512_setzero_ps();
        tr16(r);
        for (int j = 0; j < kk; j++)
            _mm512_mask_storeu_ps(dst + (size_t)(k0 + j) * dstride, sm, r[j]);
    }
}

static void pack_t_avx512(float *dst, int width, const float *src, size_t ld, int nrows, int kc) {
    for (int r0 = 0; r0 < width; r0 += 16)
        pack_t16(dst + r0, width, avx512_lanes(width, r0), src + (size_t)r0 * ld, ld,
                 avx512_lanes(nrows, r0), kc);
}

/* Row k of the panel is row k of src's nrows-wide slice: whole rows at a time (both 16-lane
 * halves of a 32-wide B panel come from the same two cache lines), the row PACK_PF ahead
 * prefetched (the rows are ld floats apart, often a multiple of 4 KiB, a stride the hardware
 * prefetchers follow late). Pure data movement: the same panel as a lane-block-at-a-time walk. */
static void pack_n_avx512(float *dst, int width, const float *src, size_t ld, int nrows, int kc) {
    __mmask16 lm[2], sm[2];
    const int nch = avx512_panel_masks(width, nrows, lm, sm);
    for (int k = 0; k < kc; k++) {
        const float *s = src + (size_t)k * ld;
        float *d = dst + (size_t)k * width;
        if (k + PACK_PF < kc)
            for (int r0 = 0; r0 < nrows; r0 += 16) __builtin_prefetch(s + (size_t)PACK_PF * ld + r0);
        for (int c = 0; c < nch; c++)
            _mm512_mask_storeu_ps(d + 16 * c, sm[c], _mm512_maskz_loadu_ps(lm[c], s + 16 * c));
    }
}

#define BT_STR_(x) #x
#define BT_STR(x) BT_STR_(x)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const bt_ukernel bt_ukernel_avx512 = {"avx512 " BT_STR(MR) "x32", MR, NR, ukr_avx512,
                                       pack_t_avx512, pack_n_avx512, ukr_avx512_ua,
                                       ukr_avx512_uat};
#else
const bt_ukernel bt_ukernel_avx512 = {"avx512 (not built)", 0, 0, 0, 0, 0, 0, 0};
#endif
