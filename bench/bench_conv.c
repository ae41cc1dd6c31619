/* Benchmark of the optimised conv2d (forward, backward) on ResNet-18/CIFAR-like layers, with a
 * 1024^3 cblas_sgemm as the machine's attainable rate. 3x3 stride-1 layers are timed with
 * Winograd on and off in the same run (interleaved, so a neighbour's load hits both alike),
 * and, on maps of 8x8 and more, the opt-in F(4x4) tile against the default F(2x2).
 * Usage: bench_conv [threads] [batch] [layer] (defaults 2, 64, all; layer 1-9 picks one line
 * of the list in main, e.g. 6 for the 4x4-map layer). Environment: BENCH_CPU_TIME, BENCH_A_IN_PLACE,
 * BENCH_WINO_TILES, BENCH_PHASE_PLANES (see main). */
#include "barlow/cpu.h"
#include "barlow/error.h"
#include "barlow/ops.h"
#include "barlow/scratch.h"
#include "ops/conv_internal.h"
#include "ops/gemm/gemm_internal.h"
#include "ops/winograd_internal.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* BENCH_CPU_TIME=1: process CPU time instead of wall time (with one thread, time the OS
 * gave to other jobs is then not counted; for comparing builds on a busy machine). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float *rand_buf(size_t n, unsigned *seed) {
    float *p = bt_alloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "%s\n", bt_error());
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)((double)rand_r(seed) / RAND_MAX - 0.5);
    return p;
}

/* Best of `reps` timings of fn(ctx), after one warm-up call (which also sizes the scratch
 * arena, as the first training step would). */
static double best_of(int reps, void (*fn)(void *), void *ctx) {
    fn(ctx);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        fn(ctx);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    bt_conv2d_desc d;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db; /* shapes as in ops.h */
    int n;                                    /* sgemm size */
} bench_ctx;

static void run_forward(void *p) {
    bench_ctx *c = p;
    if (bt_conv2d_forward(c->y, c->x, c->w, c->b, &c->d)) fprintf(stderr, "%s\n", bt_error());
}
static void run_backward(void *p) {
    bench_ctx *c = p;
    if (bt_conv2d_backward(c->dx, c->dw, c->db, c->dy, c->x, c->w, &c->d))
        fprintf(stderr, "%s\n", bt_error());
}
static void run_sgemm(void *p) {
    bench_ctx *c = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->n, c->n, c->n, 1.0f, c->x, c->n, c->w,
                c->n, 0.0f, c->y, c->n);
}

/* Best times of fn(ctx) with Winograd on (*t_on) and off (*t_off), the two alternating. */
static void best_on_off(int reps, void (*fn)(void *), void *ctx, double *t_on, double *t_off) {
    *t_on = *t_off = 1e30;
    for (int r = 0; r <= reps; r++)
        for (int on = 1; on >= 0; on--) {
            bt_wino_set_enabled(on);
            double t0 = now();
            fn(ctx);
            double t = now() - t0;
            double *best = on ? t_on : t_off;
            if (r > 0 && t < *best) *best = t; /* r == 0 warms up (and sizes the arena) */
        }
    bt_wino_set_enabled(1);
}

/* Best times of fn(ctx) with the F(4x4) tile (*t4) and the F(2x2) tile (*t2), alternating. */
static void best_tiles(int reps, void (*fn)(void *), void *ctx, double *t4, double *t2) {
    *t4 = *t2 = 1e30;
    for (int r = 0; r <= reps; r++)
        for (int m = 4; m >= 2; m -= 2) {
            bt_wino_set_tile(m);
            double t0 = now();
            fn(ctx);
            double t = now() - t0;
            double *best = m == 4 ? t4 : t2;
            if (r > 0 && t < *best) *best = t;
        }
    bt_wino_set_tile(2);
}

static void run_backward_data(void *p) {
    bench_ctx *c = p;
    if (bt_conv2d_backward(c->dx, NULL, NULL, c->dy, c->x, c->w, &c->d))
        fprintf(stderr, "%s\n", bt_error());
}

static void run_backward_weights(void *p) {
    bench_ctx *c = p;
    if (bt_conv2d_backward(NULL, c->dw, NULL, c->dy, c->x, c->w, &c->d))
        fprintf(stderr, "%s\n", bt_error());
}

static void bench_layer(int N, int C, int H, int K, int R, int stride, int pad) {
    bench_ctx c = {0};
    if (bt_conv2d_desc_init(&c.d, N, C, H, H, K, R, R, stride, pad)) {
        fprintf(stderr, "%s\n", bt_error());
        exit(1);
    }
    const bt_conv2d_desc *d = &c.d;
    unsigned seed = 1;
    size_t ni = (size_t)N * C * H * H, nw = (size_t)K * C * R * R;
    size_t no = (size_t)N * K * d->OH * d->OW;
    c.x = rand_buf(ni, &seed), c.w = rand_buf(nw, &seed), c.b = rand_buf(K, &seed);
    c.y = rand_buf(no, &seed), c.dy = rand_buf(no, &seed), c.dx = rand_buf(ni, &seed);
    c.dw = rand_buf(nw, &seed), c.db = rand_buf(K, &seed);
    double flops = 2.0 * N * K * d->OH * d->OW * (double)C * R * R; /* one GEMM's worth */
    if (!bt_wino_applicable(d)) {
        double tf = best_of(5, run_forward, &c);
        double tb = best_of(3, run_backward, &c);
        printf("conv N=%d C=%d %dx%d K=%d %dx%d s%d p%d: forward %.2f ms %.1f GFLOP/s, backward "
               "(dx+dw+db) %.2f ms %.1f GFLOP/s\n",
               N, C, H, H, K, R, R, stride, pad, tf * 1e3, flops / tf * 1e-9, tb * 1e3,
               2 * flops / tb * 1e-9);
    } else {
        /* GFLOP/s are nominal (direct-conv FLOPs) so the two paths compare directly. */
        double f1, f0, b1, b0, x1, x0, w1, w0;
        best_on_off(5, run_forward, &c, &f1, &f0);
        best_on_off(3, run_backward, &c, &b1, &b0);
        best_on_off(3, run_backward_data, &c, &x1, &x0);
        best_on_off(3, run_backward_weights, &c, &w1, &w0);
        printf("conv N=%d C=%d %dx%d K=%d %dx%d s%d p%d (nominal GFLOP/s; Winograd on / off):\n"
               "  forward          %7.2f / %7.2f ms  %6.1f / %6.1f GFLOP/s  speed-up %.2fx\n"
               "  backward dx      %7.2f / %7.2f ms  %6.1f / %6.1f GFLOP/s  speed-up %.2fx\n"
               "  backward dw      %7.2f / %7.2f ms  %6.1f / %6.1f GFLOP/s  speed-up %.2fx\n"
               "  backward dx+dw+db %6.2f / %7.2f ms  %6.1f / %6.1f GFLOP/s  speed-up %.2fx\n",
               N, C, H, H, K, R, R, stride, pad, f1 * 1e3, f0 * 1e3, flops / f1 * 1e-9,
               flops / f0 * 1e-9, f0 / f1, x1 * 1e3, x0 * 1e3, flops / x1 * 1e-9,
               flops / x0 * 1e-9, x0 / x1, w1 * 1e3, w0 * 1e3, flops / w1 * 1e-9,
               flops / w0 * 1e-9, w0 / w1, b1 * 1e3, b0 * 1e3, 2 * flops / b1 * 1e-9,
               2 * flops / b0 * 1e-9, b0 / b1);
        if (H >= 8) { /* the opt-in F(4x4) tile (BT_CONV_WINOGRAD=4) against F(2x2) */
            double f4, f2, x4, x2, w4, w2;
            best_tiles(5, run_forward, &c, &f4, &f2);
            best_tiles(3, run_backward_data, &c, &x4, &x2);
            best_tiles(3, run_backward_weights, &c, &w4, &w2);
            printf("  F(4x4) vs F(2x2): forward %.2f / %.2f ms (%.2fx), backward dx %.2f / %.2f ms "
                   "(%.2fx), backward dw %.2f / %.2f ms (%.2fx)\n",
                   f4 * 1e3, f2 * 1e3, f2 / f4, x4 * 1e3, x2 * 1e3, x2 / x4, w4 * 1e3, w2 * 1e3,
                   w2 / w4);
        }
    }
    bt_free(c.x), bt_free(c.w), bt_free(c.b), bt_free(c.y), bt_free(c.dy), bt_free(c.dx);
    bt_free(c.dw), bt_free(c.db);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    bt_set_threads(threads);
    printf("threads: %d\n", bt_threads());
    {
        /* BARLOW_ISA forces the kernels' path, as in the barlow program. */
        const char *isa = getenv("BARLOW_ISA");
        if (isa && *isa && bt_isa_select(isa) != BT_OK) {
            fprintf(stderr, "bench_conv: BARLOW_ISA=%s: %s\n", isa, bt_error());
            return 1;
        }
        printf("kernels: path %s\n", bt_isa_name(bt_isa_current()));
    }
    unsigned seed = 2;
    bench_ctx g = {.n = 1024};
    size_t nn = (size_t)g.n * g.n;
    g.x = rand_buf(nn, &seed), g.w = rand_buf(nn, &seed), g.y = rand_buf(nn, &seed);
    double t = best_of(3, run_sgemm, &g);
    printf("sgemm %d^3: %.2f ms %.1f GFLOP/s\n", g.n, t * 1e3, 2.0 * nn * g.n / t * 1e-9);
    bt_free(g.x), bt_free(g.w), bt_free(g.y);
    const int N = argc > 2 ? atoi(argv[2]) : 64, only = argc > 3 ? atoi(argv[3]) : 0;
    /* BENCH_WINO_TILES=T: Winograd chunks of T tiles instead of the derived size (tuning). */
    const char *ct = getenv("BENCH_CPU_TIME");
    if (ct && atoi(ct) > 0) {
        bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        printf("timing: process CPU time\n");
    }
    const char *ai = getenv("BENCH_A_IN_PLACE"); /* 1, 0 or -1: as bench_gemm --a-in-place */
    if (ai && *ai) {
        bt_gemm_set_a_in_place(atoi(ai));
        printf("GEMM A in place: %d\n", atoi(ai));
    }
    const char *pp = getenv("BENCH_PHASE_PLANES"); /* 0: stride 2 through the direct loops */
    if (pp && *pp) {
        bt_conv_set_phase_planes(atoi(pp));
        printf("stride-2 phase planes: %d\n", atoi(pp) != 0);
    }
    const char *wt = getenv("BENCH_WINO_TILES");
    if (wt && atoi(wt) > 0) {
        bt_wino_set_chunk_tiles((size_t)atoi(wt));
        printf("Winograd chunks: %d tiles\n", atoi(wt));
    }
    if (N < 1 || only < 0 || only > 9) {
        fprintf(stderr, "usage: bench_conv [threads] [batch >= 1] [layer 1-9]\n");
        return 2;
    }
    const int layers[9][6] = {
        {64, 32, 64, 3, 1, 1},   /* layer1 3x3 */
        {128, 16, 128, 3, 1, 1}, /* layer2 3x3 */
        {256, 8, 256, 3, 1, 1},  /* layer3 3x3 */
        {128, 16, 256, 3, 2, 1}, /* layer3 first conv, stride 2 */
        {128, 16, 256, 1, 2, 0}, /* layer3 downsample 1x1 s2 */
        {512, 4, 512, 3, 1, 1},  /* layer4 3x3 on 4x4 maps: batched GEMMs */
        {3, 32, 64, 3, 1, 1},    /* CIFAR stem */
        {64, 32, 128, 3, 2, 1},  /* layer2 first conv, stride 2 */
        {256, 8, 512, 3, 2, 1},  /* layer4 first conv, stride 2 */
    };
    for (int i = 0; i < 9; i++)
        if (!only || only == i + 1)
            bench_layer(N, layers[i][0], layers[i][1], layers[i][2], layers[i][3], layers[i][4],
                        layers[i][5]);
    bt_scratch_release();
    return 0;
}
