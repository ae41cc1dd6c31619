/* The GEMM tests' cases (test_gemm.c, test_gemm_bf16.c): shapes with transposes, padded
 * leading dimensions and alpha/beta, random operands, and C's padding set to GUARD (it must
 * stay untouched). */
#ifndef BARLOW_TESTS_GEMM_CASE_H
#define BARLOW_TESTS_GEMM_CASE_H
#include "barlow/gemm.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GUARD 12345.0f /* in padding that must not be written */

/* gamma_n = n u / (1 - n u), u = 2^-24: the bound of n float32 roundings (Higham 3.1). */
static inline double gamma_n(double n) {
    const double u = ldexp(1.0, -24);
    return n * u / (1 - n * u);
}

static inline float frand(tu_rng *r) { return (float)(2 * tu_uniform(r) - 1); }

typedef struct {
    int M, N, K, ta, tb, lda, ldb, ldc;
    float alpha, beta;
} gcase;

static inline float aget(const float *A, const gcase *c, int i, int k) {
    return c->ta ? A[(size_t)k * c->lda + i] : A[(size_t)i * c->lda + k];
}
static inline float bget(const float *B, const gcase *c, int k, int j) {
    return c->tb ? B[(size_t)j * c->ldb + k] : B[(size_t)k * c->ldb + j];
}

/* Random A, B and C for case c (padding of A and B random too: it must not be read into the
 * result; padding of C set to GUARD; C = NaN when beta == 0). */
static inline void make_case(const gcase *c, tu_rng *r, float **A, float **B, float **C0, float **C) {
    const size_t an = (size_t)(c->ta ? c->K : c->M) * c->lda + 1;
    const size_t bn = (size_t)(c->tb ? c->N : c->K) * c->ldb + 1;
    const size_t cn = (size_t)c->M * c->ldc + 1;
    *A = tu_xcalloc(an, sizeof(float));
    *B = tu_xcalloc(bn, sizeof(float));
    *C0 = tu_xcalloc(cn, sizeof(float));
    *C = tu_xcalloc(cn, sizeof(float));
    for (size_t i = 0; i < an; i++) (*A)[i] = frand(r);
    for (size_t i = 0; i < bn; i++) (*B)[i] = frand(r);
    for (int i = 0; i < c->M; i++)
        for (int j = 0; j < c->ldc; j++)
            (*C0)[(size_t)i * c->ldc + j] =
                j >= c->N ? GUARD : c->beta == 0 ? NAN : frand(r);
    memcpy(*C, *C0, cn * sizeof(float));
}

static inline gcase mk(int M, int N, int K, int ta, int tb, int pad, float alpha, float beta) {
    gcase c = {M, N, K, ta, tb, 0, 0, 0, alpha, beta};
    c.lda = (ta ? M : K) + pad;
    c.ldb = (tb ? K : N) + pad;
    c.ldc = N + pad;
    if (c.lda < 1) c.lda = 1;
    if (c.ldb < 1) c.ldb = 1;
    if (c.ldc < 1) c.ldc = 1;
    return c;
}

/* The batch case: cnt products C_i = A_i B_i^T, B_i (N, K), A_i and C_i with padded strides
 * (sa, sc floats apart, row strides lda, ldc); each B_i also packed into Bp (pn floats apart)
 * under the path and precision in force. C and Cs zeroed, for two ways of computing them. */
typedef struct {
    int cnt, M, N, K, lda, ldc;
    ptrdiff_t sa, sc;
    size_t pn;
    float *A, *B, *Bp, *C, *Cs;
} gbatch;

static inline gbatch gbatch_make(tu_rng *r) {
    gbatch b = {.cnt = 5, .M = 61, .N = 70, .K = 45, .lda = 47, .ldc = 73};
    b.sa = (ptrdiff_t)b.M * b.lda + 2, b.sc = (ptrdiff_t)b.M * b.ldc + 3;
    b.pn = bt_sgemm_packed_b_floats(b.N, b.K);
    b.A = tu_xcalloc((size_t)b.sa * b.cnt, 4), b.B = tu_xcalloc((size_t)b.N * b.K * b.cnt, 4);
    b.Bp = tu_xcalloc(b.pn * b.cnt, 4), b.C = tu_xcalloc((size_t)b.sc * b.cnt, 4);
    b.Cs = tu_xcalloc((size_t)b.sc * b.cnt, 4);
    tu_fill_f32(b.A, (size_t)b.sa * b.cnt, r, 1.0);
    tu_fill_f32(b.B, (size_t)b.N * b.K * b.cnt, r, 1.0);
    for (int i = 0; i < b.cnt; i++) /* B_i (N, K): op(B) = B^T */
        bt_sgemm_pack_b(b.Bp + i * b.pn, BT_TRANS, b.N, b.K, b.B + (size_t)i * b.N * b.K, b.K);
    return b;
}

static inline void gbatch_free(gbatch *b) {
    free(b->A), free(b->B), free(b->Bp), free(b->C), free(b->Cs);
}

#endif
