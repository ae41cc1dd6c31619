/* Tests of conv2d and linear: finite differences on the double reference, the optimised f32
 * ops against the f32 reference (forward, all gradients, += semantics, NULL gradients, several
 * thread counts and batching regimes), parity with PyTorch run live, and descriptor checks. */
#include "barlow/error.h"
#include "barlow/ops.h"
#include "barlow/ops_ref.h"
#include "barlow/scratch.h"
#include "ops/conv_internal.h"
#include "barlow/backend.h"
#include "barlow/gemm.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    int N, C, H, W, K, R, S, stride, pad, bias;
} conv_shape;

static size_t in_size(const bt_conv2d_desc *d) { return (size_t)d->N * d->C * d->H * d->W; }
static size_t w_size(const bt_conv2d_desc *d) { return (size_t)d->K * d->C * d->R * d->S; }
static size_t out_size(const bt_conv2d_desc *d) { return (size_t)d->N * d->K * d->OH * d->OW; }

/* ---- 1. finite differences on the f64 reference -------------------------------------- */

/* Loss = sum(out * g) with random g, so every output element carries weight and
 * dloss/dout = g exactly. */
typedef struct {
    const bt_conv2d_desc *d;
    const double *x, *w, *b, *g; /* (N,C,H,W), (K,C,R,S), (K) or NULL, (N,K,OH,OW) */
    double *out;                 /* (N,K,OH,OW) */
    int N, I, O;                 /* linear sizes */
} fd_ctx;

static double conv_loss(void *p) {
    fd_ctx *c = p;
    bt_conv2d_forward_ref_f64(c->out, c->x, c->w, c->b, c->d);
    double s = 0;
    for (size_t i = 0; i < out_size(c->d); i++) s += c->out[i] * c->g[i];
    return s;
}

static double linear_loss(void *p) {
    fd_ctx *c = p;
    bt_linear_forward_ref_f64(c->out, c->x, c->w, c->b, c->N, c->I, c->O);
    double s = 0;
    for (size_t i = 0; i < (size_t)c->N * c->O; i++) s += c->out[i] * c->g[i];
    return s;
}

static void test_conv_fd_f64(void) {
    static const conv_shape shapes[] = {
        {2, 3, 5, 5, 4, 3, 3, 1, 1, 1},   /* 3x3 s1 p1 */
        {2, 3, 7, 7, 4, 3, 3, 2, 1, 1},   /* 3x3 s2 p1 on an odd size */
        {2, 4, 7, 7, 3, 1, 1, 2, 0, 0},   /* 1x1 s2 p0: ResNet downsample */
        {1, 3, 11, 11, 2, 7, 7, 2, 3, 1}, /* 7x7 s2 p3 stem */
        {2, 2, 5, 6, 3, 3, 3, 1, 0, 1},   /* no padding, H != W */
        {1, 3, 6, 5, 2, 3, 2, 1, 1, 0},   /* R != S */
        {1, 2, 8, 7, 2, 2, 4, 3, 2, 1},   /* stride 3, pad > R/2 */
    };
    tu_rng rng = {11};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const conv_shape *s = &shapes[t];
        bt_conv2d_desc d;
        int rc =
            bt_conv2d_desc_init(&d, s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
        CHECK(rc == BT_OK, "shape %zu: %s", t, bt_error());
        if (rc) continue;
        double *x = tu_xcalloc(in_size(&d), 8), *w = tu_xcalloc(w_size(&d), 8);
        double *b = s->bias ? tu_xcalloc(d.K, 8) : NULL, *g = tu_xcalloc(out_size(&d), 8);
        double *out = tu_xcalloc(out_size(&d), 8), *dx = tu_xcalloc(in_size(&d), 8);
        double *dw = tu_xcalloc(w_size(&d), 8), *db = tu_xcalloc(d.K, 8);
        tu_fill_f64(x, in_size(&d), &rng, 1.0);
        tu_fill_f64(w, w_size(&d), &rng, 0.5);
        if (b) tu_fill_f64(b, d.K, &rng, 1.0);
        tu_fill_f64(g, out_size(&d), &rng, 1.0);
        rc = bt_conv2d_backward_ref_f64(dx, dw, b ? db : NULL, g, x, w, &d);
        CHECK(rc == BT_OK, "backward: %s", bt_error());
        fd_ctx c = {.d = &d, .x = x, .w = w, .b = b, .g = g, .out = out};
        double ex = tu_fd_check(conv_loss, &c, x, dx, in_size(&d), 1e-5, 400);
        double ew = tu_fd_check(conv_loss, &c, w, dw, w_size(&d), 1e-5, 400);
        double eb = b ? tu_fd_check(conv_loss, &c, b, db, d.K, 1e-5, 400) : 0;
        CHECK(ex < 1e-6 && ew < 1e-6 && eb < 1e-6,
              "shape %zu (%dx%d s%d p%d): rel err dx %.2e dw %.2e db %.2e", t, s->R, s->S,
              s->stride, s->pad, ex, ew, eb);
        /* Without bias the bias gradient must be left alone. */
        if (!b) CHECK(tu_maxabs_f64(db, d.K) == 0, "db written though NULL");
        free(x), free(w), free(b), free(g), free(out), free(dx), free(dw), free(db);
    }
}

static void test_linear_fd_f64(void) {
    static const int shapes[][4] = {{3, 5, 4, 1}, {1, 7, 2, 0}, {4, 1, 3, 1}, {6, 9, 1, 0}};
    tu_rng rng = {12};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int N = shapes[t][0], I = shapes[t][1], O = shapes[t][2], bias = shapes[t][3];
        double *x = tu_xcalloc((size_t)N * I, 8), *w = tu_xcalloc((size_t)O * I, 8);
        double *b = bias ? tu_xcalloc(O, 8) : NULL, *g = tu_xcalloc((size_t)N * O, 8);
        double *out = tu_xcalloc((size_t)N * O, 8), *dx = tu_xcalloc((size_t)N * I, 8);
        double *dw = tu_xcalloc((size_t)O * I, 8), *db = tu_xcalloc(O, 8);
        tu_fill_f64(x, (size_t)N * I, &rng, 1.0);
        tu_fill_f64(w, (size_t)O * I, &rng, 0.5);
        if (b) tu_fill_f64(b, O, &rng, 1.0);
        tu_fill_f64(g, (size_t)N * O, &rng, 1.0);
        bt_linear_backward_ref_f64(dx, dw, b ? db : NULL, g, x, w, N, I, O);
        fd_ctx c = {.x = x, .w = w, .b = b, .g = g, .out = out, .N = N, .I = I, .O = O};
        double ex = tu_fd_check(linear_loss, &c, x, dx, (size_t)N * I, 1e-5, 400);
        double ew = tu_fd_check(linear_loss, &c, w, dw, (size_t)O * I, 1e-5, 400);
        double eb = b ? tu_fd_check(linear_loss, &c, b, db, O, 1e-5, 400) : 0;
        CHECK(ex < 1e-6 && ew < 1e-6 && eb < 1e-6, "linear %d,%d,%d: dx %.2e dw %.2e db %.2e", N, I,
              O, ex, ew, eb);
        free(x), free(w), free(b), free(g), free(out), free(dx), free(dw), free(db);
    }
}

/* ---- 2. optimised f32 against the f32 reference -------------------------------------- */

static double rel(const float *a, const float *ref, size_t n) {
    double m = tu_maxabs_f32(ref, n);
    return tu_maxabsdiff_f32(a, ref, n) / (m > 1e-30 ? m : 1e-30);
}

/* mask: bit 0 dinp, bit 1 dw, bit 2 db requested. Returns 0 if all matched. */
static int conv_vs_ref(const conv_shape *s, int mask, tu_rng *rng) {
    bt_conv2d_desc d;
    int rc = bt_conv2d_desc_init(&d, s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
    CHECK(rc == BT_OK, "%s", bt_error());
    if (rc) return 1;
    size_t ni = in_size(&d), nw = w_size(&d), no = out_size(&d);
    float *x = tu_xcalloc(ni, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(d.K, 4);
    float *y = tu_xcalloc(no, 4), *yr = tu_xcalloc(no, 4), *dy = tu_xcalloc(no, 4);
    float *dx = tu_xcalloc(ni, 4), *dxr = tu_xcalloc(ni, 4), *dw = tu_xcalloc(nw, 4);
    float *dwr = tu_xcalloc(nw, 4), *db = tu_xcalloc(d.K, 4), *dbr = tu_xcalloc(d.K, 4);
    tu_fill_f32(x, ni, rng, 1.0);
    tu_fill_f32(w, nw, rng, 0.5);
    tu_fill_f32(b, d.K, rng, 1.0);
    tu_fill_f32(dy, no, rng, 1.0);
    /* Non-zero starting gradients: the backward must add to them, not overwrite. */
    tu_fill_f32(dx, ni, rng, 1.0);
    tu_fill_f32(dw, nw, rng, 1.0);
    tu_fill_f32(db, d.K, rng, 1.0);
    memcpy(dxr, dx, ni * 4), memcpy(dwr, dw, nw * 4), memcpy(dbr, db, d.K * 4);
    const float *bb = s->bias ? b : NULL;
    int bad = 0;
    rc = bt_conv2d_forward(y, x, w, bb, &d);
    CHECK(rc == BT_OK, "%s", bt_error());
    bt_conv2d_forward_ref_f32(yr, x, w, bb, &d);
    double ey = rel(y, yr, no);
    rc = bt_conv2d_backward(mask & 1 ? dx : NULL, mask & 2 ? dw : NULL, mask & 4 ? db : NULL, dy, x,
                            w, &d);
    CHECK(rc == BT_OK, "%s", bt_error());
    bt_conv2d_backward_ref_f32(mask & 1 ? dxr : NULL, mask & 2 ? dwr : NULL, mask & 4 ? dbr : NULL,
                               dy, x, w, &d);
    /* Gradients not requested must be untouched: compare against the prefilled copies. */
    double ex = rel(dx, dxr, ni), ew = rel(dw, dwr, nw), eb = rel(db, dbr, d.K);
    if (!(ey < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5)) bad = 1;
    CHECK(!bad,
          "N%d C%d %dx%d K%d %dx%d s%d p%d bias%d mask%d threads%d: y %.2e dx %.2e dw %.2e "
          "db %.2e",
          s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, s->bias, mask, bt_threads(),
          ey, ex, ew, eb);
    free(x), free(w), free(b), free(y), free(yr), free(dy), free(dx), free(dxr), free(dw);
    free(dwr), free(db), free(dbr);
    return bad;
}

static void test_conv_opt_vs_ref(void) {
    static const conv_shape fixed[] = {
        {2, 3, 8, 8, 4, 3, 3, 1, 1, 1},   /* 3x3 s1 p1 */
        {3, 5, 7, 7, 6, 3, 3, 2, 1, 0},   /* 3x3 s2 p1, odd */
        {3, 4, 9, 9, 5, 1, 1, 2, 0, 0},   /* 1x1 s2 */
        {1, 6, 5, 7, 3, 1, 1, 1, 0, 1},   /* 1x1 s1 p0 single image: GEMM on the input */
        {9, 6, 3, 4, 5, 1, 1, 1, 0, 1},   /* 1x1 s1 p0, tiny maps: batched images */
        {2, 3, 23, 23, 4, 7, 7, 2, 3, 0}, /* stem */
        {2, 3, 37, 38, 4, 3, 3, 2, 1, 1}, /* 3x3 s2, 19 output columns: 8-wide blocks + rest */
        {2, 5, 34, 33, 3, 1, 1, 2, 0, 0}, /* 1x1 s2, 17 output columns */
        {9, 8, 4, 4, 7, 3, 3, 1, 1, 1},   /* small maps: several images per GEMM */
        {7, 5, 3, 3, 4, 3, 3, 2, 1, 1},   /* 2x2 output, odd N: uneven groups */
        {2, 3, 6, 9, 2, 2, 5, 3, 2, 1},   /* R != S, stride 3 */
        {1, 2, 20, 20, 3, 3, 3, 1, 1, 0}, /* single image, larger map */
        {2, 3, 4, 4, 2, 6, 6, 1, 1, 1},   /* kernel bigger than the input */
        {4, 16, 6, 7, 17, 3, 3, 1, 1, 1}, /* 3x3 s1 p1 big enough for Winograd, odd width */
        {2, 16, 9, 8, 17, 3, 3, 1, 1, 1}, /* the same on a 9x8 map: the F(4x4) input gradient */
    };
    tu_rng rng = {21};
    int saved = bt_threads();
    static const int threads[] = {1, 2, 3};
    for (size_t ti = 0; ti < 3; ti++) {
        bt_set_threads(threads[ti]);
        for (size_t t = 0; t < sizeof fixed / sizeof fixed[0]; t++) {
            conv_vs_ref(&fixed[t], 7, &rng);
            if (ti == 1) /* each gradient alone, with the others NULL */
                for (int m = 1; m <= 4; m <<= 1) conv_vs_ref(&fixed[t], m, &rng);
        }
    }
    bt_set_threads(saved);
    /* Random shapes, including odd sizes and every stride/pad combination that fits. */
    for (int t = 0; t < 40;) {
        conv_shape s;
        s.N = 1 + (int)(tu_next(&rng) % 6);
        s.C = 1 + (int)(tu_next(&rng) % 6);
        s.H = 1 + (int)(tu_next(&rng) % 13);
        s.W = 1 + (int)(tu_next(&rng) % 13);
        s.K = 1 + (int)(tu_next(&rng) % 7);
        s.R = 1 + (int)(tu_next(&rng) % 5);
        s.S = 1 + (int)(tu_next(&rng) % 5);
        s.stride = 1 + (int)(tu_next(&rng) % 3);
        s.pad = (int)(tu_next(&rng) % 3);
        s.bias = (int)(tu_next(&rng) % 2);
        if (s.H + 2 * s.pad < s.R || s.W + 2 * s.pad < s.S) continue;
        conv_vs_ref(&s, 7, &rng);
        t++;
    }
}

/* Stride-2 columns through phase planes against the direct strided loops: the same bits for
 * the output and all three gradients (the backward adds into non-zero gradients, so the order
 * of the sums matters too), on 1 and 2 threads. The shapes cover 4-, 8- and 16-wide outputs
 * (the vector widths), odd sizes, 19 columns, pad 0 to 3, R != S, 1-row kernels and a stem. */
static void test_conv_phase_planes_bits(void) {
    static const conv_shape shapes[] = {
        {4, 8, 8, 8, 6, 3, 3, 2, 1, 0},    /* 4x4 output */
        {2, 5, 16, 16, 7, 3, 3, 2, 1, 1},  /* 8x8 */
        {2, 3, 32, 32, 4, 3, 3, 2, 1, 0},  /* 16x16 */
        {2, 3, 37, 38, 4, 3, 3, 2, 1, 1},  /* 19 columns, odd rows */
        {3, 4, 9, 7, 3, 3, 3, 2, 0, 0},    /* pad 0, odd */
        {2, 3, 23, 23, 4, 7, 7, 2, 3, 0},  /* stem */
        {2, 3, 11, 13, 5, 2, 5, 2, 2, 1},  /* R != S, pad 2 */
        {2, 4, 10, 12, 3, 1, 3, 2, 1, 0},  /* one kernel row */
        {2, 4, 12, 10, 3, 4, 1, 2, 1, 0},  /* one kernel column */
        {1, 2, 3, 3, 2, 3, 3, 2, 1, 1},    /* 2x2 output from a 3x3 map */
    };
    tu_rng rng = {77};
    const int saved = bt_threads();
    for (int nt = 1; nt <= 2; nt++) {
        bt_set_threads(nt);
        for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
            const conv_shape *s = &shapes[t];
            bt_conv2d_desc d;
            int rc = bt_conv2d_desc_init(&d, s->N, s->C, s->H, s->W, s->K, s->R, s->S,
                                         s->stride, s->pad);
            CHECK(rc == BT_OK, "%s", bt_error());
            if (rc) continue;
            const size_t ni = in_size(&d), nw = w_size(&d), no = out_size(&d);
            float *x = tu_xcalloc(ni, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(d.K, 4);
            float *dy = tu_xcalloc(no, 4), *y[2], *dx[2], *dw[2], *db[2];
            tu_fill_f32(x, ni, &rng, 1.0);
            tu_fill_f32(w, nw, &rng, 0.5);
            tu_fill_f32(b, d.K, &rng, 1.0);
            tu_fill_f32(dy, no, &rng, 1.0);
            y[0] = tu_xcalloc(no, 4), dx[0] = tu_xcalloc(ni, 4), dw[0] = tu_xcalloc(nw, 4);
            db[0] = tu_xcalloc(d.K, 4);
            tu_fill_f32(dx[0], ni, &rng, 1.0);
            tu_fill_f32(dw[0], nw, &rng, 1.0);
            y[1] = tu_xcalloc(no, 4), dx[1] = tu_xcalloc(ni, 4), dw[1] = tu_xcalloc(nw, 4);
            db[1] = tu_xcalloc(d.K, 4);
            memcpy(dx[1], dx[0], ni * 4), memcpy(dw[1], dw[0], nw * 4);
            for (int v = 0; v < 2; v++) {
                bt_conv_set_phase_planes(v == 0);
                rc = bt_conv2d_forward(y[v], x, w, s->bias ? b : NULL, &d);
                if (!rc) rc = bt_conv2d_backward(dx[v], dw[v], db[v], dy, x, w, &d);
                CHECK(rc == BT_OK, "%s", bt_error());
            }
            bt_conv_set_phase_planes(1);
            CHECK(!memcmp(y[0], y[1], no * 4) && !memcmp(dx[0], dx[1], ni * 4) &&
                      !memcmp(dw[0], dw[1], nw * 4) && !memcmp(db[0], db[1], d.K * 4),
                  "N%d C%d %dx%d K%d %dx%d s%d p%d threads %d: phase planes differ from the "
                  "direct loops (y %.2e dx %.2e dw %.2e)",
                  s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad, nt,
                  tu_maxabsdiff_f32(y[0], y[1], no), tu_maxabsdiff_f32(dx[0], dx[1], ni),
                  tu_maxabsdiff_f32(dw[0], dw[1], nw));
            free(x), free(w), free(b), free(dy);
            for (int v = 0; v < 2; v++) free(y[v]), free(dx[v]), free(dw[v]), free(db[v]);
        }
    }
    bt_set_threads(saved);
}

static void test_linear_opt_vs_ref(void) {
    static const int shapes[][4] = {{1, 1, 1, 1},     {5, 7, 3, 0},     {33, 65, 17, 1},
                                    {64, 256, 96, 1}, {3, 128, 200, 0}, {17, 3, 5, 1}};
    tu_rng rng = {31};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int N = shapes[t][0], I = shapes[t][1], O = shapes[t][2], bias = shapes[t][3];
        size_t nx = (size_t)N * I, nw = (size_t)O * I, ny = (size_t)N * O;
        float *x = tu_xcalloc(nx, 4), *w = tu_xcalloc(nw, 4), *b = tu_xcalloc(O, 4);
        float *y = tu_xcalloc(ny, 4), *yr = tu_xcalloc(ny, 4), *dy = tu_xcalloc(ny, 4);
        float *dx = tu_xcalloc(nx, 4), *dxr = tu_xcalloc(nx, 4), *dw = tu_xcalloc(nw, 4);
        float *dwr = tu_xcalloc(nw, 4), *db = tu_xcalloc(O, 4), *dbr = tu_xcalloc(O, 4);
        tu_fill_f32(x, nx, &rng, 1.0);
        tu_fill_f32(w, nw, &rng, 0.5);
        tu_fill_f32(b, O, &rng, 1.0);
        tu_fill_f32(dy, ny, &rng, 1.0);
        tu_fill_f32(dx, nx, &rng, 1.0);
        tu_fill_f32(dw, nw, &rng, 1.0);
        tu_fill_f32(db, O, &rng, 1.0);
        memcpy(dxr, dx, nx * 4), memcpy(dwr, dw, nw * 4), memcpy(dbr, db, O * 4);
        const float *bb = bias ? b : NULL;
        bt_linear_forward(y, x, w, bb, N, I, O);
        bt_linear_forward_ref_f32(yr, x, w, bb, N, I, O);
        bt_linear_backward(dx, dw, db, dy, x, w, N, I, O);
        bt_linear_backward_ref_f32(dxr, dwr, dbr, dy, x, w, N, I, O);
        double ey = rel(y, yr, ny), ex = rel(dx, dxr, nx), ew = rel(dw, dwr, nw);
        double eb = rel(db, dbr, O);
        CHECK(ey < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
              "linear %d,%d,%d bias%d: y %.2e dx %.2e dw %.2e db %.2e", N, I, O, bias, ey, ex, ew,
              eb);
        /* NULL gradients are skipped and the others still accumulate. */
        bt_linear_backward(NULL, dw, NULL, dy, x, w, N, I, O);
        bt_linear_backward_ref_f32(NULL, dwr, NULL, dy, x, w, N, I, O);
        bt_linear_backward(dx, NULL, NULL, dy, x, w, N, I, O);
        bt_linear_backward_ref_f32(dxr, NULL, NULL, dy, x, w, N, I, O);
        bt_linear_backward(NULL, NULL, db, dy, x, w, N, I, O);
        bt_linear_backward_ref_f32(NULL, NULL, dbr, dy, x, w, N, I, O);
        ex = rel(dx, dxr, nx), ew = rel(dw, dwr, nw), eb = rel(db, dbr, O);
        CHECK(ex < 1e-5 && ew < 1e-5 && eb < 1e-5, "linear NULL grads %d,%d,%d: %.2e %.2e %.2e", N,
              I, O, ex, ew, eb);
        free(x), free(w), free(b), free(y), free(yr), free(dy), free(dx), free(dxr), free(dw);
        free(dwr), free(db), free(dbr);
    }
}

/* ---- 3. PyTorch parity ---------------------------------------------------------------- */

static int write_f32(const char *dir, const char *name, const float *a, size_t n) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return -1;
    size_t k = fwrite(a, 4, n, f);
    return (fclose(f) == 0 && k == n) ? 0 : -1;
}

/* Reads exactly n values of `size` bytes from dir/name; 0, or -1 if missing, short or longer. */
static int read_vals(const char *dir, const char *name, void *a, size_t size, size_t n) {
    char p[1100];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    size_t k = fread(a, size, n, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    return k == n && !extra ? 0 : -1;
}

static const char *case_dir(int i) {
    static char dir[1024];
    snprintf(dir, sizeof dir, "%s/case%d", tu_tmpdir(), i);
    mkdir(dir, 0700);
    return dir;
}

/* Judges our result against torch's float64 `name`64.bin by torch's own float32 error
 * (`name`.bin), tu_parity_check with groups g(i) = (i / inner) % ng; missing or short files
 * fail. Returns the ratio. With `peer_suffix` (bf16: "b"), the peer is `name`<suffix>.bin
 * instead (PyTorch's bf16 autocast result); with check 0, the ratio is only returned. */
static double cmp_file_as(const char *dir, const char *name, const char *peer_suffix,
                          const float *ours, size_t n, size_t inner, size_t ng, const char *what,
                          int check) {
    float *peer = tu_xcalloc(n, 4);
    double *ref = tu_xcalloc(n, 8), q = 0;
    char n64[64], np[64], label[300];
    snprintf(n64, sizeof n64, "%.*s64.bin", (int)(strlen(name) - 4), name);
    snprintf(np, sizeof np, "%.*s%s.bin", (int)(strlen(name) - 4), name, peer_suffix);
    int rc = read_vals(dir, np, peer, 4, n), rc64 = read_vals(dir, n64, ref, 8, n);
    CHECK(rc == 0 && rc64 == 0, "%s: could not read %s/%s and %s (%zu values)", what, dir, np,
          n64, n);
    if (rc == 0 && rc64 == 0) {
        snprintf(label, sizeof label, "%s %s", what, np);
        q = check ? tu_parity_check(label, ours, ref, peer, n, inner, ng, TU_PARITY_K)
                  : tu_parity_eval(ours, ref, peer, n, inner, ng).q;
    }
    free(peer);
    free(ref);
    return q;
}

/* One parity case: a conv (lin == 0) or linear layer with its inputs. */
typedef struct {
    int lin;
    conv_shape s;      /* conv */
    int N, I, O, bias; /* linear */
    bt_conv2d_desc d;
    size_t nx, nw, ny, nb;
    float *x, *w, *b, *dy; /* inputs written for torch */
    char dir[1024], args[128];
} parity_case;

static void parity_prepare(parity_case *c, int idx, tu_rng *rng, FILE *manifest) {
    if (c->lin) {
        c->nx = (size_t)c->N * c->I, c->nw = (size_t)c->O * c->I, c->ny = (size_t)c->N * c->O;
        c->nb = c->O;
        snprintf(c->args, sizeof c->args, "linear %d %d %d %d", c->N, c->I, c->O, c->bias);
    } else {
        const conv_shape *s = &c->s;
        int rc =
            bt_conv2d_desc_init(&c->d, s->N, s->C, s->H, s->W, s->K, s->R, s->S, s->stride, s->pad);
        CHECK(rc == BT_OK, "%s", bt_error());
        if (rc) exit(1);
        c->nx = in_size(&c->d), c->nw = w_size(&c->d), c->ny = out_size(&c->d);
        c->nb = c->d.K;
        c->bias = s->bias;
        snprintf(c->args, sizeof c->args, "conv %d %d %d %d %d %d %d %d %d %d", s->N, s->C, s->H,
                 s->W, s->K, s->R, s->S, s->stride, s->pad, s->bias);
    }
    c->x = tu_xcalloc(c->nx, 4), c->w = tu_xcalloc(c->nw, 4), c->b = tu_xcalloc(c->nb, 4);
    c->dy = tu_xcalloc(c->ny, 4);
    tu_fill_f32(c->x, c->nx, rng, 1.0);
    tu_fill_f32(c->w, c->nw, rng, 0.3);
    tu_fill_f32(c->b, c->nb, rng, 1.0);
    tu_fill_f32(c->dy, c->ny, rng, 1.0);
    snprintf(c->dir, sizeof c->dir, "%s", case_dir(idx));
    int wr = write_f32(c->dir, "x.bin", c->x, c->nx) | write_f32(c->dir, "w.bin", c->w, c->nw) |
             write_f32(c->dir, "dy.bin", c->dy, c->ny) |
             (c->bias ? write_f32(c->dir, "b.bin", c->b, c->nb) : 0);
    CHECK(wr == 0, "writing inputs to %s", c->dir);
    fprintf(manifest, "%s %s\n", c->dir, c->args);
}

/* Compares our op with the peer files of `suffix` ("": PyTorch float32; "b": its bf16
 * autocast, our products then in bf16 too); returns the worst ratio against PyTorch's float32
 * error (for bf16: computed, not checked: the rounding must show there). */
static double parity_compare_as(parity_case *c, const char *suffix, bt_backend *be) {
    const int bf16 = suffix[0] != 0;
    float *y = tu_xcalloc(c->ny, 4), *dx = tu_xcalloc(c->nx, 4), *dw = tu_xcalloc(c->nw, 4);
    float *db = tu_xcalloc(c->nb, 4);
    const float *b = c->bias ? c->b : NULL;
    if (be && c->lin) { /* the backend: its precision, its convolution algorithms */
        CHECK(be->ops->linear_forward(be, NULL, y, c->x, c->w, b, c->N, c->I, c->O) == BT_OK &&
                  be->ops->linear_backward(be, NULL, dx, dw, c->bias ? db : NULL, c->dy, c->x,
                                           c->w, c->N, c->I, c->O) == BT_OK,
              "%s", bt_error());
    } else if (be) {
        CHECK(be->ops->conv2d_forward(be, NULL, y, c->x, c->w, b, &c->d) == BT_OK &&
                  be->ops->conv2d_backward(be, NULL, dx, dw, c->bias ? db : NULL, c->dy, c->x,
                                           c->w, &c->d, 0) == BT_OK,
              "%s", bt_error());
    } else if (c->lin) {
        bt_linear_forward(y, c->x, c->w, b, c->N, c->I, c->O);
        bt_linear_backward(dx, dw, c->bias ? db : NULL, c->dy, c->x, c->w, c->N, c->I, c->O);
    } else {
        CHECK(bt_conv2d_forward(y, c->x, c->w, b, &c->d) == BT_OK, "%s", bt_error());
        CHECK(bt_conv2d_backward(dx, dw, c->bias ? db : NULL, c->dy, c->x, c->w, &c->d) == BT_OK,
              "%s", bt_error());
    }
    /* Groups: an output channel of y and of dw, an input channel of dx (for the linear
     * layer: an output / input feature). */
    double q = 0, q32 = INFINITY;
    const char *names[4] = {"y.bin", "dx.bin", "dw.bin", "db.bin"};
    const float *vals[4] = {y, dx, dw, db};
    size_t nn[4], inner[4], ng[4];
    if (c->lin) {
        nn[0] = c->ny, inner[0] = 1, ng[0] = c->O;
        nn[1] = c->nx, inner[1] = 1, ng[1] = c->I;
        nn[2] = c->nw, inner[2] = c->I, ng[2] = c->O;
    } else {
        const bt_conv2d_desc *d = &c->d;
        nn[0] = c->ny, inner[0] = (size_t)d->OH * d->OW, ng[0] = d->K;
        nn[1] = c->nx, inner[1] = (size_t)d->H * d->W, ng[1] = d->C;
        nn[2] = c->nw, inner[2] = (size_t)d->C * d->R * d->S, ng[2] = d->K;
    }
    nn[3] = c->nb, inner[3] = c->nb, ng[3] = 1;
    for (int t = 0; t < (c->bias ? 4 : 3); t++) {
        q = fmax(q, cmp_file_as(c->dir, names[t], suffix, vals[t], nn[t], inner[t], ng[t],
                                c->args, 1));
        /* db is a plain sum of dy, no product: it stays float32 in bf16 too */
        if (bf16 && t < 3)
            q32 = fmin(q32, cmp_file_as(c->dir, names[t], "", vals[t], nn[t], inner[t], ng[t],
                                        c->args, 0));
    }
    printf("  %-34s error %.2f x PyTorch's %s error", c->args, q, bf16 ? "bf16 autocast" : "float32");
    if (bf16) printf(" (%.0f x its float32 error)", q32);
    printf("\n");
    free(y), free(dx), free(dw), free(db);
    return q32;
}

static void parity_compare(parity_case *c) { parity_compare_as(c, "", NULL); }

static void parity_free(parity_case *c) { free(c->x), free(c->w), free(c->b), free(c->dy); }

/* The parity cases: every conv shape class of the ResNets and its Winograd paths, and linear
 * layers. */
static const parity_case parity_cases[] = {
    {.s = {2, 3, 8, 8, 4, 3, 3, 1, 1, 1}},   /* 3x3 s1 p1 */
    {.s = {2, 4, 7, 7, 5, 3, 3, 2, 1, 0}},   /* 3x3 s2 p1, odd */
    {.s = {2, 4, 7, 7, 6, 1, 1, 2, 0, 0}},   /* 1x1 s2 */
    {.s = {1, 3, 15, 15, 4, 7, 7, 2, 3, 1}}, /* 7x7 s2 p3 stem */
    {.s = {2, 3, 6, 9, 3, 3, 5, 1, 2, 1}},   /* R != S, H != W */
    {.s = {8, 8, 4, 4, 8, 3, 3, 1, 1, 0}},   /* batched small maps */
    {.s = {3, 5, 5, 5, 4, 1, 1, 1, 0, 1}},   /* 1x1 s1 p0 */
    {.s = {4, 16, 6, 7, 17, 3, 3, 1, 1, 1}}, /* 3x3 s1 p1 on the Winograd path */
    {.s = {2, 16, 8, 9, 17, 3, 3, 1, 1, 1}}, /* Winograd, maps >= 8x8: F(4x4) input gradient */
    {.lin = 1, .N = 5, .I = 12, .O = 7, .bias = 1},
    {.lin = 1, .N = 16, .I = 64, .O = 32, .bias = 0},
    {.lin = 1, .N = 1, .I = 3, .O = 9, .bias = 1},
};
#define NPARITY (int)(sizeof parity_cases / sizeof parity_cases[0])

/* Inputs for every parity case (drawn from `seed`, in case directories from `dir0` on), then
 * PyTorch's results for all of them in one Python run (torch takes seconds to import); with
 * bf16, its bf16 autocast results too. 0 when the run succeeded. */
static int parity_torch(parity_case *cases, uint64_t seed, int dir0, int bf16) {
    memcpy(cases, parity_cases, sizeof parity_cases);
    tu_rng rng = {seed};
    char mpath[1100], cmd[2400];
    snprintf(mpath, sizeof mpath, "%s/manifest%d.txt", tu_tmpdir(), dir0);
    FILE *m = fopen(mpath, "w");
    CHECK(m != NULL, "cannot write %s", mpath);
    if (!m) return -1;
    for (int i = 0; i < NPARITY; i++) parity_prepare(&cases[i], dir0 + i, &rng, m);
    fclose(m);
    snprintf(cmd, sizeof cmd, "%s tests/py/parity_conv_linear.py%s --batch '%s'", tu_python(),
             bf16 ? " --bf16" : "", mpath);
    int rc = system(cmd);
    CHECK(rc == 0, "'%s' exited with %d", cmd, rc);
    return rc;
}

static void test_torch_parity(void) {
    if (tu_skip_without_torch()) return;
    parity_case cases[NPARITY];
    parity_torch(cases, 41, 0, 0);
    for (int i = 0; i < NPARITY; i++) parity_compare(&cases[i]), parity_free(&cases[i]);
}

/* The bf16 products as pretrain --precision bf16 runs them (a CPU backend made with precision
 * BT_PREC_BF16: its convolutions and linear layers, with the Winograd choice it makes for
 * bf16) judged by PyTorch's bf16 autocast on the same inputs: our error against float64
 * within K times PyTorch's bf16 error, group by group; and far outside float32's (the
 * operands were rounded: a product left in float32 would fail this). On every path (the
 * plain C bf16 kernel where the CPU has no AVX512_BF16). */
static void test_torch_parity_bf16(void) {
    if (tu_skip_without_torch()) return;
    parity_case cases[NPARITY];
    const int n = NPARITY;
    parity_torch(cases, 43, 100, 1);
    printf("  products: %s\n", bt_gemm_bf16_native() ? "AVX512_BF16" : "plain C bf16 kernel");
    bt_backend_cfg bc;
    bt_backend_cfg_default(&bc);
    bc.threads = bt_threads();
    bc.precision = BT_PREC_BF16;
    bt_backend *be = NULL;
    CHECK(bt_backend_cpu_new(&be, &bc) == BT_OK, "%s", bt_error());
    if (!be) return;
    for (int i = 0; i < n; i++) {
        const double q32 = parity_compare_as(&cases[i], "b", be);
        CHECK(q32 > 100 * TU_PARITY_K, "%s: bf16 result within %.1f x float32's error: were the "
              "operands rounded?", cases[i].args, q32);
        parity_free(&cases[i]);
    }
    CHECK(bt_gemm_precision() == BT_PREC_FP32, "the backend left the GEMM in bf16");
    bt_backend_free(be);
}

/* ---- 4. descriptor validation --------------------------------------------------------- */

static void expect_fail(int rc, const char *needle, const char *what) {
    CHECK(rc == BT_EINVAL, "%s: rc %d, expected BT_EINVAL", what, rc);
    CHECK(bt_error()[0] != 0, "%s: empty error message", what);
    CHECK(strstr(bt_error(), needle) != NULL, "%s: message '%s' lacks '%s'", what, bt_error(),
          needle);
    bt_clear_error();
}

static void test_conv_desc_validation(void) {
    bt_conv2d_desc d;
    /* Output sizes match PyTorch's formula on the ResNet shapes. */
    CHECK(bt_conv2d_desc_init(&d, 1, 3, 7, 7, 4, 3, 3, 2, 1) == BT_OK && d.OH == 4 && d.OW == 4,
          "3x3 s2 p1 on 7: %dx%d", d.OH, d.OW);
    CHECK(bt_conv2d_desc_init(&d, 1, 3, 7, 8, 4, 1, 1, 2, 0) == BT_OK && d.OH == 4 && d.OW == 4,
          "1x1 s2 on 7x8: %dx%d", d.OH, d.OW);
    CHECK(bt_conv2d_desc_init(&d, 1, 3, 224, 224, 64, 7, 7, 2, 3) == BT_OK && d.OH == 112 &&
              d.OW == 112,
          "stem: %dx%d", d.OH, d.OW);
    CHECK(bt_conv2d_desc_init(&d, 1, 3, 3, 3, 4, 5, 5, 1, 1) == BT_OK && d.OH == 1 && d.OW == 1,
          "exact fit: %dx%d", d.OH, d.OW);
    bt_clear_error();
    expect_fail(bt_conv2d_desc_init(&d, 0, 3, 8, 8, 4, 3, 3, 1, 1), "positive", "N=0");
    expect_fail(bt_conv2d_desc_init(&d, 1, -1, 8, 8, 4, 3, 3, 1, 1), "C=-1", "C=-1");
    expect_fail(bt_conv2d_desc_init(&d, 1, 3, 8, 8, 0, 3, 3, 1, 1), "K=0", "K=0");
    expect_fail(bt_conv2d_desc_init(&d, 1, 3, 8, 8, 4, 3, 0, 1, 1), "S=0", "S=0");
    expect_fail(bt_conv2d_desc_init(&d, 1, 3, 8, 8, 4, 3, 3, 0, 1), "stride", "stride 0");
    expect_fail(bt_conv2d_desc_init(&d, 1, 3, 8, 8, 4, 3, 3, 1, -1), "pad", "pad -1");
    expect_fail(bt_conv2d_desc_init(&d, 1, 3, 3, 3, 4, 5, 5, 1, 0), "does not fit", "5x5 on 3x3");
    expect_fail(bt_conv2d_desc_init(&d, 1, 3, 8, 4, 4, 3, 7, 1, 1), "kernel 3x7", "S too wide");
    expect_fail(bt_conv2d_desc_init(NULL, 1, 3, 8, 8, 4, 3, 3, 1, 1), "NULL", "NULL desc");
    expect_fail(bt_conv2d_desc_init(&d, 1 << 20, 1 << 10, 1 << 10, 1 << 10, 4, 3, 3, 1, 1),
                "too large", "overflowing sizes");

    /* Ops refuse bad descriptors and buffers, fast path and reference alike. */
    float buf[4096] = {0};
    double dbuf[512] = {0};
    CHECK(bt_conv2d_desc_init(&d, 1, 2, 5, 5, 2, 3, 3, 1, 1) == BT_OK, "%s", bt_error());
    expect_fail(bt_conv2d_forward(buf, buf, buf, NULL, NULL), "NULL", "forward NULL desc");
    expect_fail(bt_conv2d_forward(NULL, buf, buf, NULL, &d), "NULL", "forward NULL out");
    expect_fail(bt_conv2d_backward(buf, buf, buf, NULL, buf, buf, &d), "NULL",
                "backward NULL dout");
    bt_conv2d_desc bad = d;
    bad.OH = 7; /* inconsistent with H, R, stride, pad */
    expect_fail(bt_conv2d_forward(buf, buf, buf, NULL, &bad), "does not match", "forward OH");
    expect_fail(bt_conv2d_backward(buf, buf, buf, buf, buf, buf, &bad), "does not match",
                "backward OH");
    expect_fail(bt_conv2d_forward_ref_f32(buf, buf, buf, NULL, &bad), "does not match",
                "ref f32 OH");
    expect_fail(bt_conv2d_forward_ref_f64(dbuf, dbuf, dbuf, NULL, &bad), "does not match",
                "ref f64 OH");
    bad = d;
    bad.stride = 0;
    expect_fail(bt_conv2d_forward(buf, buf, buf, NULL, &bad), "stride", "forward stride 0");
    expect_fail(bt_conv2d_backward_ref_f64(dbuf, dbuf, dbuf, dbuf, dbuf, dbuf, &bad), "stride",
                "ref backward stride 0");
    bad = d;
    bad.R = 9;
    expect_fail(bt_conv2d_forward_ref_f64(dbuf, dbuf, dbuf, NULL, &bad), "does not fit",
                "ref f64 R too big");
    expect_fail(bt_conv2d_forward_ref_f32(buf, buf, buf, NULL, NULL), "NULL", "ref NULL desc");
}

int main(void) {
    TEST_RUN(test_conv_fd_f64);
    TEST_RUN(test_linear_fd_f64);
    TEST_RUN(test_conv_opt_vs_ref);
    TEST_RUN(test_conv_phase_planes_bits);
    TEST_RUN(test_linear_opt_vs_ref);
    TEST_RUN(test_torch_parity);
    TEST_RUN(test_torch_parity_bf16);
    TEST_RUN(test_conv_desc_validation);
    bt_scratch_release();
    return tu_finish();
}
