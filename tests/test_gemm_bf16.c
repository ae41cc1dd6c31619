/* Tests of the bf16 products (bt_gemm_set_precision(BT_PREC_BF16), include/barlow/gemm.h) on
 * the current path (tests/run.sh runs every path), with the AVX512_BF16 kernel where this CPU
 * has one and the plain C kernel in the same panel layout (forced) everywhere:
 *  - the rounding: bt_bf16_bits on exact cases (ties to even, overflow to infinity, subnormals
 *    to signed zero, NaN kept quiet); the portable panel conversion and the AVX512_BF16 packs
 *    (hardware conversion) equal to it word for word, those cases mixed into their inputs;
 *  - bt_sgemm against alpha bf16(op(A)) bf16(op(B)) + beta C0 in double, element by element,
 *    with float32's bound for a K-term sum (test_gemm.c's, Higham 3.1: the products of two
 *    bf16 are exact in float, so only the sums round), on edge and random shapes, all four
 *    transposes, odd K (the last pair half empty), padding untouched, many KC slices;
 *  - and that the rounding happened: the same result is outside float32's bound of the
 *    unrounded product (a kernel that ignored the precision would pass the check above only
 *    if it could not fail);
 *  - prepacked B (bt_sgemm_pb), batches and the no-memory path: the same products;
 *  - the same bits on 1 and 2 threads; BT_PREC_FP32 afterwards: the float result again. */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/gemm.h"
#include "barlow/scratch.h"
#include "ops/gemm/gemm_internal.h"
#include "gemm_case.h"
#include "testutil.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static float bf(float x) { return from_bits((uint32_t)bt_bf16_bits(x) << 16); }

static const struct {
    uint32_t in;
    uint16_t out;
} cases[] = { /* exact cases of the rounding */
    {0x3f800000u, 0x3f80}, /* 1 */
    {0x3f808000u, 0x3f80}, /* halfway, even below */
    {0x3f818000u, 0x3f82}, /* halfway, even above */
    {0x3f808001u, 0x3f81}, /* just above halfway */
    {0x3f807fffu, 0x3f80}, /* just below */
    {0xbf818000u, 0xbf82}, /* negative */
    {0x7f7fffffu, 0x7f80}, /* FLT_MAX: to infinity */
    {0xff7f8000u, 0xff80}, /* halfway to -infinity, 0x7f7f odd: up */
    {0x7f7f7fffu, 0x7f7f},
    {0x7f800000u, 0x7f80}, /* inf */
    {0xff800000u, 0xff80},
    {0x7fc00001u, 0x7fc0}, /* quiet NaN */
    {0x7f800001u, 0x7fc0}, /* signalling NaN: quieted */
    {0xffa00000u, 0xffe0},
    {0x00000001u, 0x0000}, /* subnormals: to signed zero */
    {0x807fffffu, 0x8000},
    {0x00800000u, 0x0080}, /* smallest normal */
    {0x00000000u, 0x0000},
    {0x80000000u, 0x8000},
};

#define NCASES (sizeof cases / sizeof *cases)

/* n values of magnitudes 2^-30 to 2^30, one in twenty of them one of the exact cases. */
static void fill_mixed(float *x, size_t n, tu_rng *r) {
    for (size_t i = 0; i < n; i++) {
        const double u = tu_uniform(r);
        x[i] = u < 0.05 ? from_bits(cases[i % NCASES].in)
                        : (float)((2 * tu_uniform(r) - 1) * ldexp(1.0, (int)(u * 60) - 30));
    }
}

static void test_rounding(void) {
    for (size_t i = 0; i < NCASES; i++) {
        const uint16_t got = bt_bf16_bits(from_bits(cases[i].in));
        CHECK(got == cases[i].out, "bt_bf16_bits(0x%08x) = 0x%04x, want 0x%04x", cases[i].in,
              got, cases[i].out);
    }
    /* The portable conversion, in place on panels of every width the kernels use and odd
     * depths: the words bt_bf16_bits gives. */
    tu_rng r = {7};
    int bad = 0;
    for (int width = 1; width <= 32 && !bad; width += width < 8 ? 1 : 5)
        for (int kc = 1; kc <= 9 && !bad; kc++) {
            const size_t n = (size_t)width * kc;
            float *src = tu_xcalloc(n, sizeof(float)), *p0 = tu_xcalloc(n, sizeof(float));
            fill_mixed(src, n, &r);
            memcpy(p0, src, n * sizeof(float));
            bt_cvt_bf16_ref(p0, width, kc);
            for (int p = 0; p < (kc + 1) / 2 && !bad; p++)
                for (int c = 0; c < width; c++) {
                    const uint32_t lo = bt_bf16_bits(src[2 * p * width + c]);
                    const uint32_t hi = 2 * p + 1 < kc ? bt_bf16_bits(src[(2 * p + 1) * width + c]) : 0;
                    const uint32_t want = lo | hi << 16, w0 = to_bits(p0[p * width + c]);
                    if (w0 != want && !bad++)
                        CHECK(0, "bt_cvt_bf16_ref width %d kc %d word (%d, %d): 0x%08x, want 0x%08x",
                              width, kc, p, c, w0, want);
                }
            free(src), free(p0);
        }
}

/* The avx512 path's packs straight into converted panels (VCVTNE2PS2BF16) against the float
 * panel (plain loops) converted by bt_cvt_bf16_ref: the same words, for both layouts of the
 * source, partial panels (nrows < width), depths across the 32-float blocks and odd, the
 * rounding's exact cases among the values. */
static void test_packs(void) {
    if (!(bt_cpu()->avx512_bf16 && bt_pack_t_avx512_bf16)) {
        printf("  SKIPPED: this CPU has no AVX512_BF16 packs to test\n");
        tu_skip("no AVX512_BF16");
        return;
    }
    tu_rng r = {9};
    int bad = 0;
    const int widths[] = {14, 32, 16, 5};
    for (int wi = 0; wi < 4; wi++)
        for (int kc = 1; kc <= 70 && !bad; kc += kc < 8 ? 1 : 7)
            for (int nrows = widths[wi]; nrows >= 1 && !bad; nrows -= 3)
                for (int trans = 0; trans < 2 && !bad; trans++) {
                    const int width = widths[wi];
                    const size_t ld = (size_t)(trans ? kc : width) + 3; /* past the minimum */
                    const size_t n = ld * (trans ? width : kc) + 1;
                    float *src = tu_xcalloc(n, 4), *want = tu_xcalloc((size_t)width * kc, 4);
                    float *got = tu_xcalloc((size_t)width * kc, 4);
                    fill_mixed(src, n, &r);
                    for (int k = 0; k < kc; k++)
                        for (int c = 0; c < width; c++)
                            want[k * width + c] = c >= nrows ? 0.0f
                                                  : trans ? src[c * ld + k]
                                                          : src[k * ld + c];
                    bt_cvt_bf16_ref(want, width, kc);
                    (trans ? bt_pack_t_avx512_bf16 : bt_pack_n_avx512_bf16)(got, width, src, ld,
                                                                           nrows, kc);
                    if (memcmp(got, want, (size_t)width * ((kc + 1) / 2) * 4) && !bad++)
                        CHECK(0, "pack_%s_avx512_bf16 width %d nrows %d kc %d: words differ",
                              trans ? "t" : "n", width, nrows, kc);
                    free(src), free(want), free(got);
                }
}

/* Failures of C against the double reference of the rounded (round = 1) or the given operands,
 * with float32's bound for K terms; *far: elements outside it (counted, not reported, when
 * report is 0). */
static int check(const char *what, const gcase *c, const float *A, const float *B,
                 const float *C0, const float *C, int round, int report) {
    int bad = 0;
    const double g = gamma_n(c->K + c->K / 64.0 + 4);
    for (int i = 0; i < c->M; i++)
        for (int j = 0; j < c->ldc; j++) {
            const float got = C[(size_t)i * c->ldc + j];
            if (j >= c->N) {
                if (got != GUARD && report && !bad++)
                    CHECK(0, "%s: C[%d][%d] (padding) written: %g", what, i, j, got);
                continue;
            }
            double s = 0, sa = 0;
            for (int k = 0; k < c->K; k++) {
                const float a = aget(A, c, i, k), b = bget(B, c, k, j);
                const double p = round ? (double)bf(a) * bf(b) : (double)a * b;
                s += p, sa += fabs(p);
            }
            const double c0 = c->beta == 0 ? 0 : C0[(size_t)i * c->ldc + j];
            const double ref = c->alpha * s + c->beta * c0;
            const double tol = g * (fabs(c->alpha) * sa + fabs(c->beta * c0)) + 1e-30;
            if (!(fabs(got - ref) <= tol)) {
                if (report && !bad)
                    CHECK(0,
                          "%s: M %d N %d K %d ta %d tb %d alpha %g beta %g: C[%d][%d] = %.9g, "
                          "want %.9g (tol %.3g)",
                          what, c->M, c->N, c->K, c->ta, c->tb, c->alpha, c->beta, i, j, got,
                          ref, tol);
                bad++;
            }
        }
    return bad;
}

/* One case under bf16: within the bound of the rounded reference; returns failures. Adds to
 * *far the elements outside the unrounded reference's bound, to *tot those checked. */
static int run_case(const char *what, const gcase *c, tu_rng *r, long *far, long *tot) {
    float *A, *B, *C0, *C;
    make_case(c, r, &A, &B, &C0, &C);
    bt_sgemm(c->ta ? BT_TRANS : BT_NOTRANS, c->tb ? BT_TRANS : BT_NOTRANS, c->M, c->N, c->K,
             c->alpha, A, c->lda, B, c->ldb, c->beta, C, c->ldc);
    const int bad = check(what, c, A, B, C0, C, 1, 1);
    if (c->K >= 8 && c->alpha != 0) {
        *far += check(what, c, A, B, C0, C, 0, 0);
        *tot += (long)c->M * c->N;
    }
    free(A), free(B), free(C0), free(C);
    return bad;
}

static void shapes(const char *kernel) {
    const int sizes[] = {1, 2, 5, 6, 7, 13, 14, 15, 16, 17, 31, 32, 33, 47, 65};
    const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -1.5f}, {-1, 0}};
    tu_rng r = {100};
    char what[96];
    snprintf(what, sizeof what, "path %s, %s", bt_isa_name(bt_isa_current()), kernel);
    int bad = 0;
    long far = 0, tot = 0;
    for (int t = 0; t < 4; t++)
        for (int mi = 0; mi < 15; mi += 2)
            for (int ni = 1; ni < 15; ni += 3)
                for (int v = 0; v < 4; v++) {
                    const int K = sizes[(mi + ni + v) % 15] * 3; /* odd and even */
                    gcase c = mk(sizes[mi], sizes[ni], K, t & 1, t >> 1, (mi + v) % 3, ab[v][0],
                                 ab[v][1]);
                    bad += run_case(what, &c, &r, &far, &tot);
                }
    for (int i = 0; i < 10 && !bad; i++) { /* several MC/KC/NC blocks, threads */
        const int M = 1 + (int)(tu_uniform(&r) * 300), N = 1 + (int)(tu_uniform(&r) * 300);
        const int K = 1 + (int)(tu_uniform(&r) * 700);
        gcase c = mk(M, N, K, i & 1, (i >> 1) & 1, i % 4, ab[i % 4][0], ab[i % 4][1]);
        bad += run_case(what, &c, &r, &far, &tot);
    }
    bt_gemm_set_blocking(1, 64, 1); /* many KC slices; K odd: the last slice's pair half empty */
    for (int i = 0; i < 4 && !bad; i++) {
        gcase c = mk(70 + i, 90 - i, 301 + 8 * i, i & 1, i >> 1, 3, 1.0f, i == 0 ? 0 : 0.5f);
        bad += run_case(what, &c, &r, &far, &tot);
    }
    bt_gemm_set_blocking(0, 0, 0);
    CHECK(!bad, "%s: %d wrong elements", what, bad);
    /* Operands uniform in [-1, 1] lose about 2^-9 of each value to the rounding: most sums
     * move by far more than float32's bound. */
    CHECK(far > tot / 2, "%s: only %ld of %ld elements differ from the unrounded product beyond "
          "float32's bound: were the operands rounded?", what, far, tot);
    printf("  %s: %ld of %ld elements outside float32's bound of the unrounded product\n", what,
           far, tot);
}

static void test_shapes(void) {
    bt_gemm_set_precision(BT_PREC_BF16);
    CHECK(bt_gemm_precision() == BT_PREC_BF16, "precision not set");
    if (bt_gemm_bf16_native()) shapes("AVX512_BF16 kernel");
    else printf("  no AVX512_BF16 kernel on this path/CPU\n");
    bt_gemm_force_bf16_emulated(1);
    shapes("plain C bf16 kernel");
    bt_gemm_force_bf16_emulated(0);
    bt_gemm_set_precision(BT_PREC_FP32);
}

/* Prepacked B, batches, the no-memory path, thread counts, and fp32 restored. */
static void test_paths(void) {
    const int saved = bt_threads();
    tu_rng r = {300};
    for (int emu = 0; emu < 2; emu++) {
        if (!emu && !bt_gemm_bf16_native()) continue;
        bt_gemm_force_bf16_emulated(emu);
        int bad = 0;
        for (int i = 0; i < 12 && !bad; i++) {
            const int small = i >= 8, unpacked = i >= 10;
            bt_gemm_set_precision(BT_PREC_BF16);
            if (small) bt_gemm_set_blocking(1, 64, 1);
            const int M = 1 + (int)(tu_uniform(&r) * 200), N = 1 + (int)(tu_uniform(&r) * 150);
            const int K = 1 + (int)(tu_uniform(&r) * (small ? 300 : 700));
            gcase c = mk(M, N, K, i & 1, (i >> 1) & 1, i % 3, i % 4 ? 0.75f : 1.0f,
                         i % 3 ? 0.5f : 0.0f);
            char what[96];
            snprintf(what, sizeof what, "%s case %d", emu ? "plain C" : "AVX512_BF16", i);
            float *A, *B, *C0, *C;
            make_case(&c, &r, &A, &B, &C0, &C);
            const size_t cn = (size_t)M * c.ldc + 1;
            float *Bp = tu_xcalloc(bt_sgemm_packed_b_floats(N, K), sizeof(float));
            float *Cs = tu_xcalloc(cn, 4), *C1 = tu_xcalloc(cn, 4), *Cf = tu_xcalloc(cn, 4);
            memcpy(Cs, C0, cn * 4), memcpy(C1, C0, cn * 4), memcpy(Cf, C0, cn * 4);
            const bt_trans ta = c.ta ? BT_TRANS : BT_NOTRANS, tb = c.tb ? BT_TRANS : BT_NOTRANS;
            bt_set_threads(2);
            bt_sgemm_pack_b(Bp, tb, N, K, B, c.ldb);
            bt_gemm_force_unpacked(unpacked);
            bt_sgemm_pb(ta, M, N, K, c.alpha, A, c.lda, Bp, c.beta, C, c.ldc);
            bt_sgemm(ta, tb, M, N, K, c.alpha, A, c.lda, B, c.ldb, c.beta, Cs, c.ldc);
            bt_set_threads(1);
            bt_sgemm(ta, tb, M, N, K, c.alpha, A, c.lda, B, c.ldb, c.beta, C1, c.ldc);
            bt_gemm_force_unpacked(0);
            bad += check(what, &c, A, B, C0, C, 1, 1);
            if (!unpacked && memcmp(C, Cs, cn * 4) && !bad++)
                CHECK(0, "%s: bt_sgemm_pb differs from bt_sgemm (M %d N %d K %d)", what, M, N, K);
            if (memcmp(Cs, C1, cn * 4) && !bad++)
                CHECK(0, "%s: 1 and 2 threads differ (M %d N %d K %d)", what, M, N, K);
            /* fp32 again: the float product (test_gemm.c checks its bits), not the bf16 one */
            bt_gemm_set_precision(BT_PREC_FP32);
            bt_sgemm(ta, tb, M, N, K, c.alpha, A, c.lda, B, c.ldb, c.beta, Cf, c.ldc);
            if (K >= 8 && check(what, &c, A, B, C0, Cf, 0, 0) && !bad++)
                CHECK(0, "%s: after BT_PREC_FP32 the product is not float32's", what);
            bt_gemm_set_blocking(0, 0, 0);
            free(A), free(B), free(C0), free(C), free(Bp), free(Cs), free(C1), free(Cf);
        }
        /* A batch of prepacked products against the batch of plain ones. */
        bt_gemm_set_precision(BT_PREC_BF16);
        bt_set_threads(2);
        gbatch gb = gbatch_make(&r);
        const int cnt = gb.cnt, M = gb.M, N = gb.N, K = gb.K, lda = gb.lda, ldc = gb.ldc;
        const ptrdiff_t sa = gb.sa, sc = gb.sc;
        const size_t pn = gb.pn;
        float *A = gb.A, *B = gb.B, *Bp = gb.Bp, *C = gb.C, *Cs = gb.Cs;
        bt_sgemm_batch_pb(cnt, BT_NOTRANS, M, N, K, 1.0f, A, lda, sa, Bp, (ptrdiff_t)pn, 0.0f, C,
                          ldc, sc);
        bt_sgemm_batch(cnt, BT_NOTRANS, BT_TRANS, M, N, K, 1.0f, A, lda, sa, B, K,
                       (ptrdiff_t)N * K, 0.0f, Cs, ldc, sc);
        CHECK(!memcmp(C, Cs, sizeof(float) * sc * cnt), "%s: batch_pb differs from batch",
              emu ? "plain C" : "AVX512_BF16");
        gcase c0 = mk(M, N, K, 0, 1, 0, 1.0f, 0.0f);
        c0.lda = lda, c0.ldc = ldc;
        float *C0 = tu_xcalloc((size_t)sc, 4);
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldc; j++) C0[(size_t)i * ldc + j] = 0.0f;
        /* product 2 against the rounded reference (padding of C is zero here) */
        gcase c2 = c0;
        c2.ldc = N; /* check columns < N only: copy them out */
        float *C2 = tu_xcalloc((size_t)M * N, 4);
        for (int i = 0; i < M; i++) memcpy(C2 + (size_t)i * N, C + 2 * sc + (size_t)i * ldc, N * 4);
        bad += check("batch product 2", &c2, A + 2 * sa, B + (size_t)2 * N * K, C0, C2, 1, 1);
        gbatch_free(&gb);
        free(C0), free(C2);
        CHECK(!bad, "%s: %d failures", emu ? "plain C" : "AVX512_BF16", bad);
    }
    bt_gemm_force_bf16_emulated(0);
    bt_gemm_set_precision(BT_PREC_FP32);
    bt_set_threads(saved);
}

static void test_report(void) { /* after the harness has applied BARLOW_ISA */
    const bt_cpu_info *ci = bt_cpu();
    printf("  cpu %s family %d model %d, AVX512_BF16 %s; path %s, bf16 kernel %s\n", ci->vendor,
           ci->family, ci->model, ci->avx512_bf16 ? "yes" : "no", bt_isa_name(bt_isa_current()),
           bt_gemm_bf16_native() ? "AVX512_BF16" : "plain C");
    CHECK(bt_gemm_precision() == BT_PREC_FP32, "the default precision is not fp32");
    CHECK(bt_gemm_bf16_native() == (bt_isa_current() == BT_ISA_AVX512 && ci->avx512_bf16),
          "bt_gemm_bf16_native disagrees with the path and CPU");
}

int main(void) {
    TEST_RUN(test_report);
    TEST_RUN(test_rounding);
    TEST_RUN(test_packs);
    TEST_RUN(test_shapes);
    TEST_RUN(test_paths);
    return tu_finish();
}
