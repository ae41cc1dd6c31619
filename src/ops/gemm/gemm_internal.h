/* Inside barlow's GEMM (src/ops/gemm/): the micro-kernel contract shared by sgemm.c and the
 * per-ISA kernels, and the hooks the tests and benchmarks use to reach single kernels.
 *
 * A micro-kernel computes one MR x NR tile of C from packed panels:
 *   a: MR x kc, column after column (a[k * MR + i] = A(i, k)), rows past m zero;
 *   b: kc x NR, row after row (b[k * NR + j] = B(k, j)), columns past n zero;
 *   C[i][j] = alpha * sum_k a(i, k) b(k, j) + beta * C[i][j]  for i < m, j < n,
 * the sum taken in k order, one fused multiply-add per k on the FMA paths. With beta == 0, C
 * is not read. Every element is rounded the same way whether or not its tile is partial:
 * alpha * acc and beta * C are each rounded and then added (bt_ukr_store_tile's order). */
#ifndef BARLOW_GEMM_INTERNAL_H
#define BARLOW_GEMM_INTERNAL_H
#include "barlow/cpu.h"
#include <stddef.h>
#include <stdint.h>

typedef void (*bt_ukr_fn)(int kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                          float alpha, float beta, int m, int n);

/* Packs nrows (<= width) rows of src (row stride ld, kc floats each) k-major: dst[k * width + r]
 * = src[r * ld + k], zero for nrows <= r < width. The transposing copy of packing op(A) when A
 * is row-major (and op(B) when B is transposed); vectorised per ISA because, done one float at
 * a time, it costs as much as the products on the small-K GEMMs of Winograd. */
typedef void (*bt_pack_fn)(float *dst, int width, const float *src, size_t ld, int nrows, int kc);

/* Packs nrows (<= width) columns of src k-major without transposing: dst[k * width + r] =
 * src[k * ld + r], zero for nrows <= r < width (op(A) of a transposed A, op(B) of a row-major
 * B). */
typedef bt_pack_fn bt_pack_n_fn;

/* The micro-kernel with op(A) read in place instead of from a packed panel: a row-major A
 * (a[i * lda + k], i < m; rows past m are not read), for products whose A block is used by
 * few B panels, where packing it costs more than it saves (Winograd's transformed input). The
 * same arithmetic as the packed kernel, element by element. */
typedef void (*bt_ukr_ua_fn)(int kc, const float *a, ptrdiff_t lda, const float *b, float *c,
                             ptrdiff_t ldc, float alpha, float beta, int m, int n);

/* ---- bf16 products (bt_gemm_set_precision(BT_PREC_BF16), include/barlow/gemm.h) ----
 * A panel is packed as for float (MR or NR lanes, kc rows), then converted in place to pairs:
 * word p * width + r (p < (kc + 1) / 2) holds bf16(panel[2p][r]) in its low half and
 * bf16(panel[2p + 1][r]) in its high half (0 where 2p + 1 == kc). The words take the first
 * half of the panel's space, so panels sit where float ones do. bf16(x) is x rounded to
 * nearest even in its top 16 bits, subnormals to signed zero, NaN kept quiet: what
 * VCVTNEPS2BF16 does. */
uint16_t bt_bf16_bits(float x);
void bt_cvt_bf16_ref(float *panel, int width, int kc);
/* The micro-kernel on converted panels: C[i][j] = alpha * sum_p (a_lo b_lo + a_hi b_hi) +
 * beta * C[i][j], the bf16 products (exact in float) summed in float, with the float
 * kernels' store. */
typedef void (*bt_ukr_bf16_fn)(int kc, const uint32_t *a, const uint32_t *b, float *c,
                               ptrdiff_t ldc, float alpha, float beta, int m, int n);
/* The plain C one for any mr x nr (the paths without a bf16 kernel, and the tests). */
void bt_ukr_ref_bf16_any(int mr, int nr, int kc, const uint32_t *a, const uint32_t *b, float *c,
                         ptrdiff_t ldc, float alpha, float beta, int m, int n);
/* 1: bf16 products take bt_ukr_ref_bf16_any and bt_cvt_bf16_ref on every path (the tests'
 * way to reach the layout of a path whose CPU has no bf16 kernel); 0 restores the rule. Not
 * for use while a GEMM runs. */
void bt_gemm_force_bf16_emulated(int on);
/* The AVX512_BF16 kernel (ukernel_avx512_bf16.c), for the avx512 path's 14 x 32 tile; it and
 * the packs below may only run where bt_cpu()->avx512_bf16 holds. */
extern const bt_ukr_bf16_fn bt_ukr_avx512_bf16;
/* The avx512 path's packs straight into converted panels (the same words as its float pack
 * followed by the conversion): bt_pack_fn's arguments, dst holding words. */
extern const bt_pack_fn bt_pack_t_avx512_bf16, bt_pack_n_avx512_bf16;

typedef struct {
    const char *name;
    int mr, nr;
    bt_ukr_fn fn;
    bt_pack_fn pack_t;   /* NULL: the portable loops in sgemm.c */
    bt_pack_n_fn pack_n; /* NULL: likewise */
    bt_ukr_ua_fn fn_ua;  /* NULL: A is always packed */
    bt_ukr_ua_fn fn_uat; /* the same for a transposed A: a[k * lda + i]; NULL: packed */
} bt_ukernel;

/* The kernel of path isa (NULL if this build has none for it, e.g. off x86). */
const bt_ukernel *bt_gemm_ukernel(bt_isa isa);

/* The kernels (ukernel_*.c); the AVX ones may only run where bt_isa_supported says so. */
extern const bt_ukernel bt_ukernel_ref, bt_ukernel_avx2, bt_ukernel_avx512;

/* The plain C kernel for any mr x nr (the tests' reference for the kernel contract). */
void bt_ukr_ref_any(int mr, int nr, int kc, const float *a, const float *b, float *c,
                    ptrdiff_t ldc, float alpha, float beta, int m, int n);

/* C[i][j] = t[i][j] + beta * C[i][j] (C not read when beta == 0) for i < m, j < n; t holds
 * alpha * acc with row stride nr. The partial-tile store of every kernel. */
void bt_ukr_store_tile(const float *t, int nr, float *c, ptrdiff_t ldc, float beta, int m, int n);

/* Cache blocking of path isa: MC, KC, NC, derived from the cache sizes (bt_cpu()). */
typedef struct {
    int mc, kc, nc;
} bt_gemm_blocking;
bt_gemm_blocking bt_gemm_blocking_for(bt_isa isa);
/* Replaces the derived blocking (0 = keep derived) for tuning in bench_gemm; affects every
 * later call on every path. Not for use while a GEMM runs. */
void bt_gemm_set_blocking(int mc, int kc, int nc);

/* Makes every later product take the path it takes when its packing buffers cannot be
 * allocated (plain loops over A and op(B), prepacked or not): for the tests, which cannot
 * make an allocation fail. 0 restores the normal path. Not for use while a GEMM runs. */
void bt_gemm_force_unpacked(int on);

/* 1: op(A) read in place by the kernel's fn_ua wherever A is row-major and the kernel has
 * one (fn_ua, fn_uat); 0: always packed; -1: the default rule. For tests and tuning. */
void bt_gemm_set_a_in_place(int mode);

/* The GEMMs' argument checks (sgemm.c): a negative size or a too-small leading dimension is a
 * caller's bug, so it prints fn, the argument and its bound, and aborts. ta / tb: op(A) /
 * op(B) transposed. */
_Noreturn void bt_gemm_bad_arg(const char *fn, const char *what, int v, int need);
void bt_gemm_check_args(const char *fn, int ta, int tb, int M, int N, int K, int lda, int ldb,
                        int ldc);

#endif
