/* Double-precision products for the float64 reference paths (the Barlow Twins loss's test
 * instantiation, `barlow report` statistics): plain C, row by row, threaded over rows of C.
 * Not tuned: these paths check or summarise, they do not train. Conventions of gemm.h. */
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/scratch.h"
#include "gemm_internal.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>


void bt_dgemm(bt_trans ta, bt_trans tb, int M, int N, int K, double alpha, const double *A,
              int lda, const double *B, int ldb, double beta, double *C, int ldc) {
    bt_gemm_check_args("bt_dgemm", ta != BT_NOTRANS, tb != BT_NOTRANS, M, N, K, lda, ldb, ldc);
    if (M == 0 || N == 0) return;
    /* op(B) row-major (K, N), so the inner loop (a row of C += a * a row of op(B)) is unit
     * stride; without the memory for it, B is read through its transpose. */
    const double *Bk = B;
    size_t ldbk = (size_t)ldb;
    double *tmp = NULL;
    if (tb && K > 0 && alpha != 0.0) {
        tmp = bt_alloc(sizeof(double) * (size_t)K * N);
        if (tmp) {
            for (int k = 0; k < K; k++)
                for (int j = 0; j < N; j++) tmp[(size_t)k * N + j] = B[(size_t)j * ldb + k];
            Bk = tmp, ldbk = (size_t)N;
        } else {
            bt_clear_error();
        }
    }
    const int direct = !tb || tmp;
    const int nt = omp_in_parallel() || (size_t)M * N * K < ((size_t)1 << 16) ? 1 : bt_threads();
    /* Slices of DGEMM_KB rows of op(B) (at most 2 MB for N = 1024) are reused by every row
     * of C before the next slice: read from cache rather than memory. */
    enum { DGEMM_KB = 256 };
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int i = 0; i < M; i++) {
            double *c = C + (size_t)i * ldc;
            if (beta == 0.0)
                for (int j = 0; j < N; j++) c[j] = 0.0;
            else if (beta != 1.0)
                for (int j = 0; j < N; j++) c[j] *= beta;
        }
        for (int k0 = 0; k0 < K && alpha != 0.0; k0 += DGEMM_KB) {
            const int k1 = K - k0 < DGEMM_KB ? K : k0 + DGEMM_KB;
#pragma omp for schedule(static)
            for (int i = 0; i < M; i++) {
                double *c = C + (size_t)i * ldc;
                for (int k = k0; k < k1; k++) {
                    const double a =
                        alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                    if (direct) {
                        const double *b = Bk + (size_t)k * ldbk;
                        for (int j = 0; j < N; j++) c[j] += a * b[j];
                    } else {
                        for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * ldb + k];
                    }
                }
            }
        }
    }
    bt_free(tmp);
}

void bt_dsyrk(int N, int K, double alpha, const double *A, int lda, double beta, double *C,
              int ldc) {
    if (N < 0) bt_gemm_bad_arg("bt_dsyrk", "N", N, 0);
    if (K < 0) bt_gemm_bad_arg("bt_dsyrk", "K", K, 0);
    if (lda < (K > 1 ? K : 1)) bt_gemm_bad_arg("bt_dsyrk", "lda", lda, K > 1 ? K : 1);
    if (ldc < (N > 1 ? N : 1)) bt_gemm_bad_arg("bt_dsyrk", "ldc", ldc, N > 1 ? N : 1);
    const int nt = omp_in_parallel() || (size_t)N * N * K < ((size_t)1 << 17) ? 1 : bt_threads();
    /* Rows near the top carry more of the triangle: dynamic scheduling evens that out; each
     * entry is one dot product in k order, so the schedule does not change the result. */
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt)
    for (int i = 0; i < N; i++) {
        const double *ai = A + (size_t)i * lda;
        double *c = C + (size_t)i * ldc;
        for (int j = i; j < N; j++) {
            const double *aj = A + (size_t)j * lda;
            double s = 0.0;
            for (int k = 0; k < K; k++) s += ai[k] * aj[k];
            c[j] = alpha * s + (beta == 0.0 ? 0.0 : beta * c[j]);
        }
    }
}
