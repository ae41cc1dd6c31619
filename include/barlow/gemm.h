/* barlow's own dense matrix products (src/ops/gemm/): what every GEMM of the trainer calls.
 *
 * All matrices are row-major, with the semantics of cblas_?gemm(CblasRowMajor, ...), so a
 * cblas call converts one to one:
 *   C (M, N) = alpha * op(A) op(B) + beta * C,  op(A) (M, K), op(B) (K, N),
 * op(X) = X or X^T. A is (M, K) with row stride lda >= K, or (K, M) with lda >= M if
 * transposed; likewise B. With beta == 0, C is only written (it may hold NaN on entry); with
 * K == 0 or alpha == 0, C = beta * C.
 *
 * bt_sgemm runs the path of bt_isa_current() (include/barlow/cpu.h) on bt_threads() threads,
 * or on the calling thread alone when called inside an OpenMP parallel region. Each element of
 * C is summed in an order that depends only on the path and K (not on the thread count or on
 * which thread computes it), so results repeat bit for bit on the same path.
 * Bad arguments (negative sizes, short leading dimensions) are programming errors: they stop
 * the program with a message, as an always-on assert. */
#ifndef BARLOW_GEMM_H
#define BARLOW_GEMM_H
#include <stddef.h>

typedef enum { BT_NOTRANS = 0, BT_TRANS = 1 } bt_trans;

void bt_sgemm(bt_trans ta, bt_trans tb, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* count independent products C_i = alpha op(A_i) op(B_i) + beta C_i, X_i = X + i * strideX
 * (in floats). The products are spread over the threads (each on one thread), which suits
 * many small GEMMs better than threading each; fewer products than threads fall back to
 * threading each product. Inside a parallel region all run on the calling thread. */
void bt_sgemm_batch(int count, bt_trans ta, bt_trans tb, int M, int N, int K, float alpha,
                    const float *A, int lda, ptrdiff_t strideA, const float *B, int ldb,
                    ptrdiff_t strideB, float beta, float *C, int ldc, ptrdiff_t strideC);

/* Prepacked op(B): a B used by many products (Winograd's transformed weights, one per tile
 * position, multiplied by every chunk of tiles) is packed once into the layout the kernels
 * read, instead of once per call. The layout belongs to the path and cache blocking in use
 * (bt_isa_current(), the derived or overridden blocking): pack and multiply under the same
 * ones. bt_sgemm_pb gives the same bits as bt_sgemm on the unpacked B (the same panels reach
 * the same kernel calls in the same order).
 *   bt_sgemm_packed_b_floats: the floats one packed op(B) (K, N) takes;
 *   bt_sgemm_pack_b: packs op(B) (K, N) of B (row stride ldb) into Bp;
 *   bt_sgemm_pb / bt_sgemm_batch_pb: bt_sgemm / bt_sgemm_batch with op(B) prepacked
 *     (strideBp: floats between the batch's packed B's). */
size_t bt_sgemm_packed_b_floats(int N, int K);
void bt_sgemm_pack_b(float *Bp, bt_trans tb, int N, int K, const float *B, int ldb);
void bt_sgemm_pb(bt_trans ta, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *Bp, float beta, float *C, int ldc);
void bt_sgemm_batch_pb(int count, bt_trans ta, int M, int N, int K, float alpha, const float *A,
                       int lda, ptrdiff_t strideA, const float *Bp, ptrdiff_t strideBp,
                       float beta, float *C, int ldc, ptrdiff_t strideC);

/* The depth block KC of the current kernel path (from the L1 size, or as forced by the backend's
 * gemm_kc): the GEMM's partial sums run over KC terms, so it is part of what decides the bits. */
int bt_sgemm_kc(void);

/* The precision of the products' operands, process-wide (like the path: change it between
 * products, never while one runs; a B packed by bt_sgemm_pack_b must be multiplied under the
 * precision it was packed under).
 *   BT_PREC_FP32 (the default): the floats as given.
 *   BT_PREC_BF16: every element of op(A) and op(B) rounded to bfloat16 (nearest, ties to even;
 *     subnormals to zero) before it is multiplied; the products, exact in float, are summed in
 *     float. PyTorch's bf16 autocast rounds the same operands, but also rounds C to bf16; this
 *     keeps C in float. Fast on the avx512 path of a CPU with AVX512_BF16 (VDPBF16PS: two
 *     products per lane per instruction); elsewhere a plain C kernel computes it, slowly
 *     (bt_gemm_bf16_native() says which). */
typedef enum { BT_PREC_FP32 = 0, BT_PREC_BF16 = 1 } bt_precision;
void bt_gemm_set_precision(bt_precision p);
bt_precision bt_gemm_precision(void);
int bt_gemm_bf16_native(void);

/* Upper triangle (and diagonal) of C (N, N) = alpha A A^T + beta C, A (N, K) row-major
 * (cblas_ssyrk(RowMajor, Upper, NoTrans)). Entries below the diagonal may be overwritten
 * with their mirror image's value or left alone: callers that need them copy the upper
 * triangle down. */
void bt_ssyrk(int N, int K, float alpha, const float *A, int lda, float beta, float *C, int ldc);

/* Double precision, for the float64 reference paths (the loss's test instantiation, report
 * statistics): cache-blocked plain C, threaded over rows of C; same conventions as above. */
void bt_dgemm(bt_trans ta, bt_trans tb, int M, int N, int K, double alpha, const double *A,
              int lda, const double *B, int ldb, double beta, double *C, int ldc);
void bt_dsyrk(int N, int K, double alpha, const double *A, int lda, double beta, double *C,
              int ldc);

#endif
