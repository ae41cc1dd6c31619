/* Tests of barlow's GEMM (src/ops/gemm/) on every instruction-set path this CPU supports
 * (the others are named as skipped): each micro-kernel against a double-precision reference
 * of its contract (full and partial tiles, alpha/beta, beta = 0 over NaN, nothing written
 * outside the tile); bt_sgemm on random and edge shapes with all four transposes, leading
 * dimensions above the minimum (the padding must stay untouched), K = 0, M or N = 0;
 * bt_sgemm_batch; prepacked B (bt_sgemm_pb); bt_ssyrk; the double-precision bt_dgemm/bt_dsyrk; results identical across
 * thread counts and runs; and the path-selection API.
 *
 * Tolerance: a float32 dot product of K terms summed in any order, then scaled and added to
 * beta * C, is within gamma_n * (|alpha| sum_k |a_k b_k| + |beta c|) of the exact value, with
 * gamma_n = n u / (1 - n u), u = 2^-24 and n the number of roundings on the longest path: K
 * multiply-adds, one addition per KC slice after the first (KC >= 64 on every path), alpha,
 * beta and the final addition (Higham, Accuracy and Stability, 3.1). The bound is per element,
 * from the inputs alone, so it neither hides errors in small entries nor depends on the
 * machine; an edge tile left unwritten or a wrong element is off by O(1). */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/scratch.h"
#include "ops/gemm/gemm_internal.h"
#include "gemm_case.h"
#include "testutil.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Checks C (M x N, ldc) against alpha op(A) op(B) + beta C0 in double, element by element,
 * with the bound above, and C's padding untouched; returns the number of failures (reporting
 * the first). */
static int check_gemm(const char *what, const gcase *c, const float *A, const float *B,
                      const float *C0, const float *C) {
    int bad = 0;
    const double g = gamma_n(c->K + c->K / 64.0 + 4);
    for (int i = 0; i < c->M; i++)
        for (int j = 0; j < c->ldc; j++) {
            const float got = C[(size_t)i * c->ldc + j];
            if (j >= c->N) { /* padding of C */
                if (got != GUARD && !bad++)
                    CHECK(0, "%s: C[%d][%d] (padding) written: %g", what, i, j, got);
                continue;
            }
            double s = 0, sa = 0;
            for (int k = 0; k < c->K; k++) {
                const double p = (double)aget(A, c, i, k) * bget(B, c, k, j);
                s += p, sa += fabs(p);
            }
            const double c0 = c->beta == 0 ? 0 : C0[(size_t)i * c->ldc + j];
            const double ref = c->alpha * s + c->beta * c0;
            const double tol = g * (fabs(c->alpha) * sa + fabs(c->beta * c0)) + 1e-30;
            if (!(fabs(got - ref) <= tol) && !bad++)
                CHECK(0,
                      "%s: M %d N %d K %d ta %d tb %d alpha %g beta %g: C[%d][%d] = %.9g, "
                      "want %.9g (tol %.3g)",
                      what, c->M, c->N, c->K, c->ta, c->tb, c->alpha, c->beta, i, j, got, ref,
                      tol);
        }
    return bad;
}

static int run_case(const char *what, const gcase *c, tu_rng *r) {
    float *A, *B, *C0, *C;
    make_case(c, r, &A, &B, &C0, &C);
    bt_sgemm(c->ta ? BT_TRANS : BT_NOTRANS, c->tb ? BT_TRANS : BT_NOTRANS, c->M, c->N, c->K,
             c->alpha, A, c->lda, B, c->ldb, c->beta, C, c->ldc);
    int bad = check_gemm(what, c, A, B, C0, C);
    free(A), free(B), free(C0), free(C);
    return bad;
}

/* The paths to test: each supported one, made current in turn by the loop in each case. */
static bt_isa isa_start;
static int isa_begin(bt_isa isa) {
    if (!bt_isa_supported(isa)) return 0;
    CHECK(bt_isa_set(isa) == BT_OK, "%s", bt_error());
    return 1;
}

static void report_paths(void) {
    const bt_cpu_info *ci = bt_cpu();
    printf("  cpu %s family %d model %d; L1d %zu K, L2 %zu K, L3 %zu K%s; best path %s\n",
           ci->vendor, ci->family, ci->model, ci->l1d >> 10, ci->l2 >> 10, ci->l3 >> 10,
           ci->caches_detected ? "" : " (fallbacks)", bt_isa_name(bt_isa_best()));
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        const bt_ukernel *u = bt_gemm_ukernel((bt_isa)p);
        if (bt_isa_supported((bt_isa)p))
            printf("  path %-7s tested (kernel %s)\n", bt_isa_name((bt_isa)p), u->name);
        else
            printf("  path %-7s SKIPPED: this CPU lacks it\n", bt_isa_name((bt_isa)p));
    }
}

/* Each kernel alone on packed panels, against the contract in gemm_internal.h. */
static void test_ukernels(void) {
    tu_rng r = {11};
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!bt_isa_supported((bt_isa)p)) continue;
        const bt_ukernel *u = bt_gemm_ukernel((bt_isa)p);
        const int MR = u->mr, NR = u->nr, kcs[] = {1, 3, 64, 257};
        for (int ki = 0; ki < 4; ki++) {
            const int kc = kcs[ki];
            float *a = tu_xcalloc((size_t)MR * kc, sizeof(float));
            float *b = tu_xcalloc((size_t)NR * kc, sizeof(float));
            const int ldc = NR + 5;
            float *c = tu_xcalloc((size_t)(MR + 1) * ldc, sizeof(float));
            float *c0 = tu_xcalloc((size_t)(MR + 1) * ldc, sizeof(float));
            /* every row count (a kernel may branch on it: the AVX-512 one multiplies only
             * the rows a partial panel has) */
            const int ns[] = {NR, 1, NR - 1, NR / 2 + 1};
            const float ab[][2] = {{1, 0}, {1, 1}, {-0.75f, 0.5f}, {2, 0}};
            for (int m = MR; m >= 1; m--)
                for (int ni = 0; ni < 4; ni++)
                    for (int v = 0; v < 4; v++) {
                        const int n = ns[ni] > 0 ? ns[ni] : 1;
                        const float alpha = ab[v][0], beta = ab[v][1];
                        /* panels: zero past m / n, as the packing leaves them */
                        for (int k = 0; k < kc; k++) {
                            for (int i = 0; i < MR; i++) a[k * MR + i] = i < m ? frand(&r) : 0;
                            for (int j = 0; j < NR; j++) b[k * NR + j] = j < n ? frand(&r) : 0;
                        }
                        for (int i = 0; i < (MR + 1) * ldc; i++) {
                            const int row = i / ldc, col = i % ldc;
                            c0[i] = row < m && col < n ? (beta == 0 ? NAN : frand(&r)) : GUARD;
                        }
                        memcpy(c, c0, sizeof(float) * (MR + 1) * ldc);
                        u->fn(kc, a, b, c, ldc, alpha, beta, m, n);
                        if (u->fn_ua) { /* A in place: the same bits from A row-major */
                            const int lda = kc + 3;
                            float *ar = tu_xcalloc((size_t)m * lda, sizeof(float));
                            float *cu = tu_xcalloc((size_t)(MR + 1) * ldc, sizeof(float));
                            for (int i = 0; i < m; i++)
                                for (int k = 0; k < kc; k++) ar[i * lda + k] = a[k * MR + i];
                            memcpy(cu, c0, sizeof(float) * (MR + 1) * ldc);
                            u->fn_ua(kc, ar, lda, b, cu, ldc, alpha, beta, m, n);
                            CHECK(!memcmp(cu, c, sizeof(float) * (MR + 1) * ldc),
                                  "%s kc %d m %d n %d: A in place differs from packed", u->name,
                                  kc, m, n);
                            free(ar), free(cu);
                        }
                        if (u->fn_uat) { /* transposed A in place: column k at a + k * lda */
                            const int lda = m + 3;
                            float *at = tu_xcalloc((size_t)kc * lda, sizeof(float));
                            float *cu = tu_xcalloc((size_t)(MR + 1) * ldc, sizeof(float));
                            for (int k = 0; k < kc; k++)
                                for (int i = 0; i < m; i++) at[k * lda + i] = a[k * MR + i];
                            memcpy(cu, c0, sizeof(float) * (MR + 1) * ldc);
                            u->fn_uat(kc, at, lda, b, cu, ldc, alpha, beta, m, n);
                            CHECK(!memcmp(cu, c, sizeof(float) * (MR + 1) * ldc),
                                  "%s kc %d m %d n %d: A^T in place differs from packed",
                                  u->name, kc, m, n);
                            free(at), free(cu);
                        }
                        int bad = 0;
                        const double g = gamma_n(kc + 3);
                        for (int i = 0; i <= MR && !bad; i++)
                            for (int j = 0; j < ldc && !bad; j++) {
                                const float got = c[i * ldc + j];
                                if (i >= m || j >= n) {
                                    if (got != GUARD) bad = 1;
                                    CHECK(got == GUARD,
                                          "%s kc %d m %d n %d: wrote outside the tile at "
                                          "[%d][%d] (%g)",
                                          u->name, kc, m, n, i, j, got);
                                    continue;
                                }
                                double s = 0, sa = 0;
                                for (int k = 0; k < kc; k++) {
                                    const double t = (double)a[k * MR + i] * b[k * NR + j];
                                    s += t, sa += fabs(t);
                                }
                                const double cz = beta == 0 ? 0 : c0[i * ldc + j];
                                const double ref = alpha * s + beta * cz;
                                const double tol = g * (fabs(alpha) * sa + fabs(beta * cz));
                                if (!(fabs(got - ref) <= tol)) bad = 1;
                                CHECK(fabs(got - ref) <= tol,
                                      "%s kc %d m %d n %d alpha %g beta %g: [%d][%d] = %.9g, "
                                      "want %.9g (tol %.3g)",
                                      u->name, kc, m, n, alpha, beta, i, j, got, ref, tol);
                            }
                    }
            free(a), free(b), free(c), free(c0);
        }
    }
    /* The any-size reference kernel at a shape no path uses. */
    float a[5 * 9], b[3 * 9], c[5 * 3];
    for (int i = 0; i < 45; i++) a[i] = frand(&r);
    for (int i = 0; i < 27; i++) b[i] = frand(&r);
    bt_ukr_ref_any(5, 3, 9, a, b, c, 3, 1.0f, 0.0f, 5, 3);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 3; j++) {
            double s = 0;
            for (int k = 0; k < 9; k++) s += (double)a[k * 5 + i] * b[k * 3 + j];
            CHECK(fabs(c[i * 3 + j] - s) <= gamma_n(12) * 9, "ref 5x3 [%d][%d]", i, j);
        }
}

/* Shapes around every kernel's tile and blocking edges, all transposes, padded strides. */
static void test_sgemm_shapes(void) {
    const int sizes[] = {1, 2, 5, 6, 7, 13, 14, 15, 16, 17, 31, 32, 33, 47, 65};
    const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -1.5f}, {-1, 0}};
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!isa_begin((bt_isa)p)) continue;
        tu_rng r = {100 + p};
        char what[64];
        snprintf(what, sizeof what, "path %s", bt_isa_name((bt_isa)p));
        int bad = 0;
        for (int t = 0; t < 4; t++)
            for (int mi = 0; mi < 15; mi += 2)
                for (int ni = 1; ni < 15; ni += 3)
                    for (int v = 0; v < 4; v++) {
                        const int K = sizes[(mi + ni + v) % 15] * 3;
                        gcase c = mk(sizes[mi], sizes[ni], K, t & 1, t >> 1, (mi + v) % 3,
                                     ab[v][0], ab[v][1]);
                        bad += run_case(what, &c, &r);
                    }
        /* Larger, random shapes: several MC/KC/NC blocks and threads. */
        for (int i = 0; i < 12 && !bad; i++) {
            const int M = 1 + (int)(tu_uniform(&r) * 300), N = 1 + (int)(tu_uniform(&r) * 300);
            const int K = 1 + (int)(tu_uniform(&r) * 700);
            gcase c = mk(M, N, K, i & 1, (i >> 1) & 1, i % 4, ab[i % 4][0], ab[i % 4][1]);
            bad += run_case(what, &c, &r);
        }
        /* Blocking forced small: many KC slices, row blocks and column blocks per call, each
         * slice adding to the previous (beta = 1 after the first). */
        bt_gemm_set_blocking(1, 64, 1);
        for (int i = 0; i < 4 && !bad; i++) {
            gcase c = mk(70 + i, 90 - i, 300 + 7 * i, i & 1, i >> 1, 3, 1.0f, i == 0 ? 0 : 0.5f);
            bad += run_case(what, &c, &r);
        }
        bt_gemm_set_blocking(0, 0, 0);
        /* A in place forced on and off (the default rule picks by N): the same bits. */
        for (int i = 0; i < 8 && !bad; i++) {
            gcase c = mk(20 + 37 * i, 9 + 61 * i, 33 + 50 * i, (i >> 1) & 1, i & 1, i % 3, 1.0f,
                         i % 2 ? 0.5f : 0.0f);
            float *A, *B, *C0, *C;
            make_case(&c, &r, &A, &B, &C0, &C);
            float *C1 = tu_xcalloc((size_t)c.M * c.ldc + 1, sizeof(float));
            memcpy(C1, C0, ((size_t)c.M * c.ldc + 1) * sizeof(float));
            bt_gemm_set_a_in_place(1);
            const bt_trans ta = c.ta ? BT_TRANS : BT_NOTRANS, tb = c.tb ? BT_TRANS : BT_NOTRANS;
            bt_sgemm(ta, tb, c.M, c.N, c.K, 1.0f, A, c.lda, B, c.ldb, c.beta, C, c.ldc);
            bt_gemm_set_a_in_place(0);
            bt_sgemm(ta, tb, c.M, c.N, c.K, 1.0f, A, c.lda, B, c.ldb, c.beta, C1, c.ldc);
            bt_gemm_set_a_in_place(-1);
            bad += check_gemm(what, &c, A, B, C0, C);
            if (memcmp(C, C1, ((size_t)c.M * c.ldc + 1) * sizeof(float)) && !bad++)
                CHECK(0, "%s: M %d N %d K %d: A in place differs from packed", what, c.M, c.N,
                      c.K);
            free(A), free(B), free(C0), free(C), free(C1);
        }
        CHECK(!bad, "%s: %d wrong elements", what, bad);
    }
    bt_isa_set(isa_start);
}

/* K = 0 and alpha = 0: C = beta C (0 without reading C); M or N = 0: nothing touched. */
static void test_degenerate(void) {
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!isa_begin((bt_isa)p)) continue;
        float C[6] = {NAN, NAN, NAN, 1, 2, 3}, A[4] = {1, 2, 3, 4}, B[4] = {1, 2, 3, 4};
        bt_sgemm(BT_NOTRANS, BT_NOTRANS, 1, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);
        CHECK(C[0] == 0 && C[1] == 0 && C[2] == 0 && C[3] == 1, "K=0 beta=0: %g %g %g %g", C[0],
              C[1], C[2], C[3]);
        bt_sgemm(BT_NOTRANS, BT_NOTRANS, 2, 3, 0, 1.0f, A, 1, B, 3, 2.0f, C, 3);
        CHECK(C[3] == 2 && C[4] == 4 && C[5] == 6, "K=0 beta=2: %g %g %g", C[3], C[4], C[5]);
        float D[4] = {NAN, NAN, NAN, NAN};
        bt_sgemm(BT_NOTRANS, BT_NOTRANS, 2, 2, 2, 0.0f, A, 2, B, 2, 0.0f, D, 2);
        CHECK(D[0] == 0 && D[3] == 0, "alpha=0 beta=0: %g %g", D[0], D[3]);
        float E[2] = {7, 8};
        bt_sgemm(BT_NOTRANS, BT_NOTRANS, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, E, 2);
        bt_sgemm(BT_NOTRANS, BT_NOTRANS, 1, 0, 2, 1.0f, A, 2, B, 1, 0.0f, E, 1);
        CHECK(E[0] == 7 && E[1] == 8, "M=0 / N=0 wrote C");
    }
    bt_isa_set(isa_start);
}

/* Each path's result is the same bit for bit on 1, 2 and 3 threads and on a second run. */
static void test_deterministic(void) {
    const int M = 333, N = 517, K = 611;
    tu_rng r = {7};
    float *A = tu_xcalloc((size_t)M * K, sizeof(float)), *B = tu_xcalloc((size_t)K * N, 4);
    float *C1 = tu_xcalloc((size_t)M * N, 4), *C2 = tu_xcalloc((size_t)M * N, 4);
    tu_fill_f32(A, (size_t)M * K, &r, 1.0);
    tu_fill_f32(B, (size_t)K * N, &r, 1.0);
    const int saved = bt_threads();
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!isa_begin((bt_isa)p)) continue;
        bt_set_threads(1);
        bt_sgemm(BT_NOTRANS, BT_TRANS, M, N, K, 1.0f, A, K, B, K, 0.0f, C1, N);
        const int nts[] = {2, 3, 1};
        for (int i = 0; i < 3; i++) {
            bt_set_threads(nts[i]);
            bt_sgemm(BT_NOTRANS, BT_TRANS, M, N, K, 1.0f, A, K, B, K, 0.0f, C2, N);
            CHECK(!memcmp(C1, C2, sizeof(float) * M * N), "path %s: %d threads differ from 1",
                  bt_isa_name((bt_isa)p), nts[i]);
        }
    }
    bt_set_threads(saved);
    bt_isa_set(isa_start);
    free(A), free(B), free(C1), free(C2);
}

/* The batched entry point: strided products, each checked, and equal bit for bit to single
 * calls, from the top level (threads across products) and inside a parallel region. */
static void test_batch(void) {
    const int cnt = 7, M = 45, N = 40, K = 37, lda = 48, ldb = 50, ldc = 44; /* A^T, B */
    const ptrdiff_t sa = (ptrdiff_t)K * lda + 3, sb = (ptrdiff_t)K * ldb + 5,
                    sc = (ptrdiff_t)M * ldc + 1;
    tu_rng r = {5};
    float *A = tu_xcalloc((size_t)sa * cnt, 4), *B = tu_xcalloc((size_t)sb * cnt, 4);
    float *C0 = tu_xcalloc((size_t)sc * cnt, 4), *C = tu_xcalloc((size_t)sc * cnt, 4);
    float *Cs = tu_xcalloc((size_t)sc * cnt, 4);
    tu_fill_f32(A, (size_t)sa * cnt, &r, 1.0);
    tu_fill_f32(B, (size_t)sb * cnt, &r, 1.0);
    for (size_t i = 0; i < (size_t)sc * cnt; i++) C0[i] = (i % sc) % ldc >= N ? GUARD : frand(&r);
    gcase c = {M, N, K, 1, 0, lda, ldb, ldc, 0.5f, 0.25f};
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!isa_begin((bt_isa)p)) continue;
        for (int inside = 0; inside < 2; inside++) {
            memcpy(C, C0, sizeof(float) * sc * cnt);
            memcpy(Cs, C0, sizeof(float) * sc * cnt);
            if (inside) {
#pragma omp parallel num_threads(2)
                {
#pragma omp single
                    bt_sgemm_batch(cnt, BT_TRANS, BT_NOTRANS, M, N, K, 0.5f, A, lda, sa, B, ldb,
                                   sb, 0.25f, C, ldc, sc);
                }
            } else {
                bt_sgemm_batch(cnt, BT_TRANS, BT_NOTRANS, M, N, K, 0.5f, A, lda, sa, B, ldb, sb,
                               0.25f, C, ldc, sc);
            }
            for (int i = 0; i < cnt; i++) {
                bt_sgemm(BT_TRANS, BT_NOTRANS, M, N, K, 0.5f, A + i * sa, lda, B + i * sb, ldb,
                         0.25f, Cs + i * sc, ldc);
                check_gemm("batch", &c, A + i * sa, B + i * sb, C0 + i * sc, C + i * sc);
            }
            CHECK(!memcmp(C, Cs, sizeof(float) * (sc * cnt - 1)),
                  "path %s: batch (inside %d) differs from single calls", bt_isa_name((bt_isa)p),
                  inside);
        }
    }
    bt_isa_set(isa_start);
    free(A), free(B), free(C0), free(C), free(Cs);
}

/* Prepacked op(B) (bt_sgemm_pack_b, bt_sgemm_pb, bt_sgemm_batch_pb): the same bits as
 * bt_sgemm / bt_sgemm_batch on the unpacked B, on random shapes with either op(B), with the
 * derived blocking and with blocking forced small (several KC slices of the packed B, several
 * NC blocks, partial last panels), on 1 and 2 threads and inside a parallel region; checked
 * against the reference bound as well. The packed B's slack must not be needed: it is
 * allocated to bt_sgemm_packed_b_floats exactly (ASan catches a read past it). Then the same
 * products with the packing buffers unavailable (the fallback loops read the packed B). */
static void test_prepacked(void) {
    const int saved = bt_threads();
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!isa_begin((bt_isa)p)) continue;
        tu_rng r = {300 + p};
        char what[64];
        int bad = 0;
        for (int i = 0; i < 16 && !bad; i++) {
            const int small = i >= 10, unpacked = i >= 14;
            if (small) bt_gemm_set_blocking(1, 64, 1);
            bt_gemm_force_unpacked(unpacked);
            bt_set_threads(1 + i % 2);
            const int M = 1 + (int)(tu_uniform(&r) * 200), N = 1 + (int)(tu_uniform(&r) * 150);
            const int K = 1 + (int)(tu_uniform(&r) * (small ? 300 : 700));
            gcase c = mk(M, N, K, i & 1, (i >> 1) & 1, i % 3, i % 4 ? 0.75f : 1.0f,
                         i % 3 ? 0.5f : 0.0f);
            snprintf(what, sizeof what, "path %s prepacked case %d", bt_isa_name((bt_isa)p), i);
            float *A, *B, *C0, *C;
            make_case(&c, &r, &A, &B, &C0, &C);
            const size_t pn = bt_sgemm_packed_b_floats(N, K);
            float *Bp = tu_xcalloc(pn, sizeof(float)), *Cs = tu_xcalloc((size_t)M * c.ldc + 1, 4);
            memcpy(Cs, C0, ((size_t)M * c.ldc + 1) * sizeof(float));
            const bt_trans ta = c.ta ? BT_TRANS : BT_NOTRANS, tb = c.tb ? BT_TRANS : BT_NOTRANS;
            bt_sgemm_pack_b(Bp, tb, N, K, B, c.ldb);
            bt_sgemm_pb(ta, M, N, K, c.alpha, A, c.lda, Bp, c.beta, C, c.ldc);
            bt_sgemm(ta, tb, M, N, K, c.alpha, A, c.lda, B, c.ldb, c.beta, Cs, c.ldc);
            bad += check_gemm(what, &c, A, B, C0, C);
            for (int e = 0; e < M * c.ldc && !bad; e++)
                if (memcmp(&C[e], &Cs[e], sizeof(float)) && !bad++)
                    CHECK(0, "%s: M %d N %d K %d: element %d %.9g, bt_sgemm %.9g", what, M, N,
                          K, e, C[e], Cs[e]);
            free(A), free(B), free(C0), free(C), free(Bp), free(Cs);
        }
        bt_gemm_force_unpacked(0);
        bt_gemm_set_blocking(0, 0, 0);
        bt_set_threads(2);
        /* Batched: 5 products, each B packed, from the top level and inside a region. */
        gbatch gb = gbatch_make(&r);
        const int cnt = gb.cnt, M = gb.M, N = gb.N, K = gb.K, lda = gb.lda, ldc = gb.ldc;
        const ptrdiff_t sa = gb.sa, sc = gb.sc;
        const size_t pn = gb.pn;
        float *A = gb.A, *B = gb.B, *Bp = gb.Bp, *C = gb.C, *Cs = gb.Cs;
        for (int inside = 0; inside < 2; inside++) {
            memset(C, 0, sizeof(float) * sc * cnt);
            memset(Cs, 0, sizeof(float) * sc * cnt);
            if (inside) {
#pragma omp parallel num_threads(2)
                {
#pragma omp single
                    bt_sgemm_batch_pb(cnt, BT_NOTRANS, M, N, K, 1.0f, A, lda, sa, Bp,
                                      (ptrdiff_t)pn, 0.0f, C, ldc, sc);
                }
            } else {
                bt_sgemm_batch_pb(cnt, BT_NOTRANS, M, N, K, 1.0f, A, lda, sa, Bp, (ptrdiff_t)pn,
                                  0.0f, C, ldc, sc);
            }
            bt_sgemm_batch(cnt, BT_NOTRANS, BT_TRANS, M, N, K, 1.0f, A, lda, sa, B, K,
                           (ptrdiff_t)N * K, 0.0f, Cs, ldc, sc);
            CHECK(!memcmp(C, Cs, sizeof(float) * sc * cnt),
                  "path %s: batch_pb (inside %d) differs from bt_sgemm_batch",
                  bt_isa_name((bt_isa)p), inside);
        }
        gbatch_free(&gb);
        CHECK(!bad, "path %s: %d prepacked products wrong", bt_isa_name((bt_isa)p), bad);
    }
    bt_set_threads(saved);
    bt_isa_set(isa_start);
}

/* bt_ssyrk: the upper triangle (what the contract promises) of alpha A A^T + beta C, and C's
 * padding untouched. */
static void test_ssyrk(void) {
    tu_rng r = {9};
    const int Ns[] = {1, 13, 64, 65, 200}, K = 150, pad = 3;
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        if (!isa_begin((bt_isa)p)) continue;
        for (int t = 0; t < 5; t++) {
            const int N = Ns[t], lda = K + pad, ldc = N + pad;
            float *A = tu_xcalloc((size_t)N * lda, 4), *C = tu_xcalloc((size_t)N * ldc, 4);
            float *C0 = tu_xcalloc((size_t)N * ldc, 4);
            tu_fill_f32(A, (size_t)N * lda, &r, 1.0);
            for (int i = 0; i < N * ldc; i++) C0[i] = i % ldc >= N ? GUARD : frand(&r);
            memcpy(C, C0, sizeof(float) * N * ldc);
            const float beta = t % 2 ? 0.5f : 1.0f;
            bt_ssyrk(N, K, 0.75f, A, lda, beta, C, ldc);
            int bad = 0;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < ldc; j++) {
                    if (j >= N) {
                        if (C[i * ldc + j] != GUARD) bad++;
                        continue;
                    }
                    if (j < i) continue;
                    double s = 0, sa = 0;
                    for (int k = 0; k < K; k++) {
                        const double q = (double)A[i * lda + k] * A[j * lda + k];
                        s += q, sa += fabs(q);
                    }
                    const double ref = 0.75 * s + beta * C0[i * ldc + j];
                    const double tol =
                        gamma_n(K + K / 64.0 + 4) * (0.75 * sa + fabs(beta * C0[i * ldc + j]));
                    if (!(fabs(C[i * ldc + j] - ref) <= tol)) bad++;
                }
            CHECK(!bad, "path %s: ssyrk N %d: %d bad entries", bt_isa_name((bt_isa)p), N, bad);
            free(A), free(C), free(C0);
        }
    }
    bt_isa_set(isa_start);
}

/* The double-precision products against long double sums, all transposes. */
static void test_dgemm(void) {
    tu_rng r = {3};
    const int M = 37, N = 29, K = 41;
    for (int t = 0; t < 4; t++) {
        const int ta = t & 1, tb = t >> 1, lda = (ta ? M : K) + 2, ldb = (tb ? K : N) + 1,
                  ldc = N + 3;
        double *A = tu_xcalloc((size_t)(ta ? K : M) * lda, 8);
        double *B = tu_xcalloc((size_t)(tb ? N : K) * ldb, 8);
        double *C = tu_xcalloc((size_t)M * ldc, 8), *C0 = tu_xcalloc((size_t)M * ldc, 8);
        tu_fill_f64(A, (size_t)(ta ? K : M) * lda, &r, 1.0);
        tu_fill_f64(B, (size_t)(tb ? N : K) * ldb, &r, 1.0);
        tu_fill_f64(C0, (size_t)M * ldc, &r, 1.0);
        memcpy(C, C0, sizeof(double) * M * ldc);
        bt_dgemm(ta ? BT_TRANS : BT_NOTRANS, tb ? BT_TRANS : BT_NOTRANS, M, N, K, -0.5, A, lda,
                 B, ldb, 2.0, C, ldc);
        double worst = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < ldc; j++) {
                if (j >= N) {
                    CHECK(C[i * ldc + j] == C0[i * ldc + j], "dgemm wrote padding");
                    continue;
                }
                long double s = 0, sa = 0;
                for (int k = 0; k < K; k++) {
                    const long double q = (long double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                                          (tb ? B[j * ldb + k] : B[k * ldb + j]);
                    s += q, sa += fabsl(q);
                }
                const long double ref = -0.5L * s + 2.0L * C0[i * ldc + j];
                const double tol = (K + 4) * ldexp(1.0, -52) *
                                   (double)(0.5L * sa + 2 * fabs(C0[i * ldc + j]));
                const double e = fabs((double)(C[i * ldc + j] - ref)) / tol;
                if (e > worst) worst = e;
            }
        CHECK(worst <= 1, "dgemm ta %d tb %d: error %.3g x the bound", ta, tb, worst);
        free(A), free(B), free(C), free(C0);
    }
    const int N2 = 23;
    double *A = tu_xcalloc((size_t)N2 * K, 8), *C = tu_xcalloc((size_t)N2 * N2, 8);
    tu_fill_f64(A, (size_t)N2 * K, &r, 1.0);
    for (int i = 0; i < N2 * N2; i++) C[i] = NAN;
    bt_dsyrk(N2, K, 1.0, A, K, 0.0, C, N2);
    for (int i = 0; i < N2; i++)
        for (int j = i; j < N2; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += A[i * K + k] * A[j * K + k];
            CHECK(fabs(C[i * N2 + j] - s) <= 1e-13 * K, "dsyrk [%d][%d]", i, j);
        }
    free(A), free(C);
}

/* Path selection: names, errors, and the best path being supported. Runs first. */
static void test_isa_api(void) {
    isa_start = bt_isa_current(); /* the harness has applied BARLOW_ISA by now */
    CHECK(bt_isa_supported(BT_ISA_GENERIC), "generic must always be supported");
    CHECK(bt_isa_supported(bt_isa_best()), "best path not supported");
    CHECK(bt_isa_select("bogus") == BT_EINVAL && strstr(bt_error(), "bogus"),
          "unknown name accepted (%s)", bt_error());
    for (int p = 0; p < BT_ISA_COUNT; p++) {
        const int rc = bt_isa_select(bt_isa_name((bt_isa)p));
        if (bt_isa_supported((bt_isa)p))
            CHECK(rc == BT_OK && bt_isa_current() == (bt_isa)p, "select %s failed",
                  bt_isa_name((bt_isa)p));
        else
            CHECK(rc == BT_EINVAL && strstr(bt_error(), "not supported"),
                  "unsupported %s accepted (%s)", bt_isa_name((bt_isa)p), bt_error());
    }
    CHECK(bt_isa_select("auto") == BT_OK && bt_isa_current() == bt_isa_best(), "auto");
    CHECK(bt_isa_select(NULL) == BT_OK && bt_isa_current() == bt_isa_best(), "NULL");
    bt_isa_set(isa_start);
}

int main(void) {
    report_paths();
    TEST_RUN(test_isa_api);
    TEST_RUN(test_ukernels);
    TEST_RUN(test_sgemm_shapes);
    TEST_RUN(test_degenerate);
    TEST_RUN(test_deterministic);
    TEST_RUN(test_batch);
    TEST_RUN(test_prepacked);
    TEST_RUN(test_ssyrk);
    TEST_RUN(test_dgemm);
    return tu_finish();
}
