/* The avx512 path's bf16 micro-kernel and panel conversion (AVX512_BF16: VDPBF16PS,
 * VCVTNEPS2BF16), for bt_gemm_set_precision(BT_PREC_BF16). The same 14 x 32 tile as the float
 * kernel (ukernel_avx512.c): each k step of that kernel becomes a step over a pair of k, where
 * one VDPBF16PS adds two products per lane, so a tile does twice the multiply-adds per
 * instruction. They only run where bt_cpu()->avx512_bf16 holds. */
#include "gemm_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")
#endif

#include "ukernel_avx512_common.h"

/* R rows of the tile (R <= MR; a partial last panel multiplies only the rows it has, rounded
 * up to an even count, as the float kernel). */
static inline __attribute__((always_inline)) void
ukr_rows_bf16(const int R, int kc, const uint32_t *a, const uint32_t *b, float *c,
              ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    const int kp = (kc + 1) / 2;
    for (int p = 0; p < kp; p++, a += MR, b += NR) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
    }
    avx512_store_rows(R, c0, c1, c, ldc, alpha, beta, m, n);
}

static void ukr_avx512_bf16(int kc, const uint32_t *a, const uint32_t *b, float *c,
                            ptrdiff_t ldc, float alpha, float beta, int m, int n) {
    BT_AVX512_BY_ROWS(ukr_rows_bf16, m, kc, a, b, c, ldc, alpha, beta, m, n)
    ukr_rows_bf16(MR, kc, a, b, c, ldc, alpha, beta, m, n);
}

/* Packing straight into converted panels (the words bt_cvt_bf16_ref makes of the float
 * panel the float packs make), without the float panel in between. */

/* Up to 16 rows (nrows) of a row-major src into `lanes` (<= 16) lanes of word rows, stride
 * dstride: row r's floats k0..k0+31 become, by one VCVTNE2PS2BF16, its 16 pair words in
 * order (low half the even k), and tr16 turns rows into lanes. Floats past kc read as 0. */
static void pack_t16_bf16(uint32_t *dst, int dstride, int lanes, const float *src, size_t ld,
                          int nrows, int kc) {
    const __mmask16 sm = (__mmask16)((1u << lanes) - 1);
    for (int k0 = 0; k0 < kc; k0 += 32) {
        const int kk = kc - k0 < 32 ? kc - k0 : 32, pp = (kk + 1) / 2;
        const __mmask16 m0 = (__mmask16)(kk >= 16 ? 0xffffu : (1u << kk) - 1);
        const __mmask16 m1 = (__mmask16)(kk >= 32 ? 0xffffu : kk > 16 ? (1u << (kk - 16)) - 1 : 0);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            if (i >= nrows) {
                r[i] = _mm512_setzero_ps();
                continue;
            }
            const float *s = src + i * ld + k0;
            const __m512 lo = _mm512_maskz_loadu_ps(m0, s), hi = _mm512_maskz_loadu_ps(m1, s + 16);
            r[i] = _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        tr16(r);
        for (int j = 0; j < pp; j++)
            _mm512_mask_storeu_ps(dst + (size_t)(k0 / 2 + j) * dstride, sm, r[j]);
    }
}

static void pack_t_avx512_bf16(float *dst, int width, const float *src, size_t ld, int nrows,
                               int kc) {
    uint32_t *w = (uint32_t *)(void *)dst;
    for (int r0 = 0; r0 < width; r0 += 16)
        pack_t16_bf16(w + r0, width, avx512_lanes(width, r0), src + (size_t)r0 * ld, ld,
                      avx512_lanes(nrows, r0), kc);
}

/* Rows 2p and 2p + 1 of src's nrows-wide slice into word row p: one VCVTNE2PS2BF16 per 16
 * lanes (the low 16 bf16 from row 2p, the high 16 from row 2p + 1), then a word-interleaving
 * permute (bf16 2j from row 2p's lane j, 2j + 1 from row 2p + 1's). The rows PACK_PF ahead
 * prefetched, as pack_n_avx512. */
static void pack_n_avx512_bf16(float *dst, int width, const float *src, size_t ld, int nrows,
                               int kc) {
    uint32_t *w = (uint32_t *)(void *)dst;
    __mmask16 lm[2], sm[2];
    const int nch = avx512_panel_masks(width, nrows, lm, sm);
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
                                         24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
    for (int p = 0; p < (kc + 1) / 2; p++) {
        const float *s0 = src + (size_t)2 * p * ld, *s1 = s0 + ld;
        const int has_hi = 2 * p + 1 < kc;
        if (2 * p + PACK_PF + 1 < kc)
            for (int r0 = 0; r0 < nrows; r0 += 16) {
                __builtin_prefetch(s0 + (size_t)PACK_PF * ld + r0);
                __builtin_prefetch(s1 + (size_t)PACK_PF * ld + r0);
            }
        for (int c = 0; c < nch; c++) {
            const __m512 lo = _mm512_maskz_loadu_ps(lm[c], s0 + 16 * c);
            const __m512 hi = has_hi ? _mm512_maskz_loadu_ps(lm[c], s1 + 16 * c) : _mm512_setzero_ps();
            const __m512i v = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_mask_storeu_epi32(w + (size_t)p * width + 16 * c, sm[c], v);
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const bt_pack_fn bt_pack_t_avx512_bf16 = pack_t_avx512_bf16;
const bt_pack_fn bt_pack_n_avx512_bf16 = pack_n_avx512_bf16;
const bt_ukr_bf16_fn bt_ukr_avx512_bf16 = ukr_avx512_bf16;
#else
const bt_pack_fn bt_pack_t_avx512_bf16 = 0;
const bt_pack_fn bt_pack_n_avx512_bf16 = 0;
const bt_ukr_bf16_fn bt_ukr_avx512_bf16 = 0;
#endif
